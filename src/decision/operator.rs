//! A person's verbs (`cutover start`, `promote`, `rollback`, `pause`, `resume`) as decisions.
//!
//! An operator trigger is decided like any other: from the observed service and its record,
//! with the same helpers that build the server's writes, so a verb's write is exactly the kind of
//! write a tick makes (same split, same tags, same record) and goes through the same guarded
//! update. What makes no sense in the rollout's state is refused ([`Stay::Refused`]) with a
//! reason that says what would make sense instead.
//!
//! `resume` and traffic set by hand: a rollout paused because someone changed its traffic
//! resumes from that traffic. When it still routes only the stable and candidate revisions and
//! gives the candidate a share, that share becomes the current step, judged afresh from now
//! (a healthy judgement moves on to the next configured step above it). The person chose that
//! split on purpose; re-applying cutover's old split would undo their change without asking,
//! and refusing would leave `resume` useless exactly when it is needed. A split that routes
//! other revisions, or none to the candidate, is not a step of this rollout: refused, with the
//! ways out (`rollback`, or setting the split back).

use jiff::Timestamp;

use super::{
    Action, Change, Decision, Observed, PauseCause, Phase, Policy, PolicyError, Record, Stay,
    advance, begin, complete, describe, drift, pause, rollback, split, start_bake,
};
use crate::decision::policy::Mode;

/// What a person asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorAction {
    /// Start a rollout of this revision, or of the latest ready one.
    Start { revision: Option<String> },
    /// Give the candidate this share (`None`: 100% at once, completing the rollout).
    Promote { to: Option<u8> },
    /// All traffic back to stable; the candidate is never rolled out again automatically.
    Rollback,
    /// Stop judging; traffic stays as it is.
    Pause,
    /// Judge again, from the traffic as it is now.
    Resume,
}

impl OperatorAction {
    /// The verb, as decision records and the history name it.
    pub fn name(&self) -> &'static str {
        match self {
            OperatorAction::Start { .. } => "cutover start",
            OperatorAction::Promote { .. } => "cutover promote",
            OperatorAction::Rollback => "cutover rollback",
            OperatorAction::Pause => "cutover pause",
            OperatorAction::Resume => "cutover resume",
        }
    }
}

fn refuse(why: String) -> Decision {
    Decision::stay(Stay::Refused, why)
}

/// A rollout that still holds traffic (running or paused).
fn holding(r: &Record) -> bool {
    r.phase.is_running() || matches!(r.phase, Phase::Paused(_))
}

/// Decides what `action` does to this service now.
pub(crate) fn decide(
    obs: &Observed,
    record: Option<&Record>,
    policy: &Result<Policy, PolicyError>,
    action: &OperatorAction,
    actor: &str,
    now: Timestamp,
) -> Decision {
    // Shadow mode promises that cutover writes nothing to the service: a person's verb is no
    // exception, and doing nothing while saying "done" would mislead. Traffic of a shadowed
    // service is the people's to set (with gcloud), or the mode changes to live first.
    if let Ok(p) = policy
        && p.mode_for(&obs.annotations) == Mode::Shadow
    {
        return refuse(format!(
            "{} is in shadow mode: cutover writes nothing to it, verbs included; set traffic with gcloud, or make it live first (cutover.dev/mode=live, or CUTOVER_MODE=live)",
            obs.service
        ));
    }
    let d = match action {
        OperatorAction::Start { revision } => start(obs, record, policy, revision, actor, now),
        _ => {
            let Some(r) = record else {
                return refuse(format!(
                    "no rollout on {}; `cutover start` begins one",
                    obs.service
                ));
            };
            match action {
                OperatorAction::Promote { to } => promote(obs, r, policy, *to, actor, now),
                OperatorAction::Rollback => roll_back(obs, r, actor, now),
                OperatorAction::Pause => match r.phase {
                    p if p.is_running() => pause(
                        r,
                        PauseCause::Operator,
                        format!("paused by {actor} at {}%", r.percent),
                    ),
                    Phase::Paused(_) => {
                        refuse(format!("rollout of {} is already {}", r.candidate, r.phase))
                    }
                    _ => refuse(format!(
                        "rollout of {} is {}; nothing to pause",
                        r.candidate, r.phase
                    )),
                },
                OperatorAction::Resume => resume(obs, r, policy, actor, now),
                OperatorAction::Start { .. } => unreachable!("handled above"),
            }
        }
    };
    match d.action {
        // What the shared rules decline (a build's "nothing to do") is a refusal to a person.
        Action::Stay(Stay::Nothing | Stay::Hold) => Decision {
            action: Action::Stay(Stay::Refused),
            ..d
        },
        _ => d,
    }
}

fn start(
    obs: &Observed,
    record: Option<&Record>,
    policy: &Result<Policy, PolicyError>,
    revision: &Option<String>,
    actor: &str,
    now: Timestamp,
) -> Decision {
    let candidate = match (revision, &obs.latest_ready) {
        (Some(r), _) => r.clone(),
        (None, Some(latest)) => latest.clone(),
        (None, None) => return refuse("the service has no ready revision".into()),
    };
    if !obs.ready.contains(&candidate) && obs.latest_ready.as_ref() != Some(&candidate) {
        return refuse(format!(
            "{candidate} is neither the latest ready revision of {} nor one serving traffic",
            obs.service
        ));
    }
    if revision.is_none() {
        if let Some(r) = record.filter(|r| holding(r) && r.candidate != candidate) {
            return refuse(format!(
                "a rollout of {} is {}; to replace it with {candidate}, name it: --revision {candidate}",
                r.candidate, r.phase
            ));
        }
        if record.is_some_and(|r| r.rolled_back.contains(&candidate)) {
            return refuse(format!(
                "{candidate} was rolled back; to roll it out again anyway, name it: --revision {candidate}"
            ));
        }
    }
    let mut d = begin(obs, record, policy, candidate, revision.is_some(), now);
    if let Action::Write(_, w) = &mut d.action {
        let why = format!("started by {actor}: {}", d.reason);
        w.record.reason = why.clone();
        d.record = Some(w.record.clone());
        d.reason = why;
    }
    d
}

/// `--full` gives the candidate 100% and bakes it like a last step that passed (the bake, if
/// any, still guards the promotion); during the bake it ends the bake and completes.
fn promote(
    obs: &Observed,
    r: &Record,
    policy: &Result<Policy, PolicyError>,
    to: Option<u8>,
    actor: &str,
    now: Timestamp,
) -> Decision {
    if !holding(r) {
        return refuse(format!(
            "rollout of {} is {}; nothing to promote",
            r.candidate, r.phase
        ));
    }
    if let Some(d) = drift(obs, r) {
        return refuse(format!("{d}; `cutover resume` adopts that split first"));
    }
    match to {
        None if r.phase == Phase::Baking => complete(
            r,
            format!("promoted by {actor}, ending the bake early"),
            now,
        ),
        None => match policy {
            Ok(p) if p.bake.is_positive() => start_bake(r, format!("promoted by {actor}"), p, now),
            _ => complete(r, format!("promoted by {actor}"), now),
        },
        Some(p) if p > 100 || p <= r.percent => refuse(format!(
            "cannot promote to {p}%: the candidate has {}%, a promotion goes above that and at most to 100%",
            r.percent
        )),
        Some(p) => advance(r, p, format!("promoted by {actor}"), now),
    }
}

fn roll_back(obs: &Observed, r: &Record, actor: &str, now: Timestamp) -> Decision {
    if !holding(r) {
        let hint = if r.phase == Phase::Completed {
            format!(
                "; to go back, start a rollout of the previous revision: --revision {}",
                r.stable
            )
        } else {
            String::new()
        };
        return refuse(format!(
            "rollout of {} is {}; nothing to roll back{hint}",
            r.candidate, r.phase
        ));
    }
    if !obs.ready.contains(&r.stable) {
        return refuse(format!(
            "stable revision {} is not ready: there is nothing safe to roll back to",
            r.stable
        ));
    }
    rollback(obs, r, format!("rolled back by {actor}"), now)
}

fn resume(
    obs: &Observed,
    r: &Record,
    policy: &Result<Policy, PolicyError>,
    actor: &str,
    now: Timestamp,
) -> Decision {
    if !matches!(r.phase, Phase::Paused(_)) {
        return refuse(format!(
            "rollout of {} is {}; only a paused rollout resumes",
            r.candidate, r.phase
        ));
    }
    if let Err(e) = policy {
        return refuse(format!(
            "the service's policy override is invalid ({e}); fix it, then resume"
        ));
    }
    if !obs.ready.contains(&r.stable) {
        return refuse(format!(
            "stable revision {} is still not ready: nothing safe to roll back to if the candidate fails",
            r.stable
        ));
    }
    let (percent, why) = match drift(obs, r) {
        None => (
            r.percent,
            format!(
                "resumed by {actor} at {}%, judged afresh from now",
                r.percent
            ),
        ),
        Some(_) => {
            let others: Vec<&str> = obs
                .allocation
                .keys()
                .filter(|k| **k != r.stable && **k != r.candidate)
                .map(String::as_str)
                .collect();
            if !others.is_empty() {
                return refuse(format!(
                    "traffic now goes to {} too ({}), outside this rollout; set it back to {} and {} or roll back",
                    others.join(", "),
                    describe(&obs.allocation),
                    r.stable,
                    r.candidate
                ));
            }
            let share = obs.allocation.get(&r.candidate).copied().unwrap_or(0);
            if share == 0 {
                return refuse(format!(
                    "the candidate {} serves nothing now ({}); give it a share by hand and resume, or end the rollout with `cutover rollback`",
                    r.candidate,
                    describe(&obs.allocation)
                ));
            }
            let why = format!(
                "resumed by {actor}, adopting the split set by hand ({}): {share}% is the step, judged from now",
                describe(&obs.allocation)
            );
            (share, why)
        }
    };
    let mut next = r.clone();
    next.phase = if percent == 0 {
        Phase::Smoke
    } else {
        Phase::Progressing
    };
    next.percent = percent;
    next.step_started = now;
    let traffic = split(&next, percent);
    Decision::writing(Change::Resume, why, Some(traffic), next)
}
