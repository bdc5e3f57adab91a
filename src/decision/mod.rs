//! The decision core: observed service + evidence + policy + now → decision.
//!
//! Everything here is pure: no I/O, no clock, no logging. [`decide`] is called by the
//! reconciler (src/reconcile.rs) with what it observed; when a decision needs evidence it
//! does not have (metrics for a window, a smoke check), it says so with [`Action::Gather`] and is
//! called again with the evidence. That keeps every rule in one place and makes the rules
//! testable exhaustively.
//!
//! # Guarantees
//! - Every traffic write sums to 100 and names only the stable and candidate revisions.
//! - At most one step per decision; never a step forward on inconclusive or missing evidence.
//! - A rollback gives 100% to the recorded stable revision, and only if it is ready.
//! - A revision that lost all its traffic gets it back only from a rollback to it: a newer
//!   candidate starts from what serves traffic now (see `superseded`).
//! - Traffic changed by hand is never overwritten: the rollout pauses instead.
//! - Deciding again on the state a decision produced changes nothing (duplicates are harmless).

pub mod evidence;
pub mod judge;
pub mod operator;
pub mod policy;
pub mod record;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use serde::Serialize;

use crate::target::ServiceRef;
use evidence::{ServiceStats, Window};

pub use judge::{Judgement, Verdict};
pub use operator::OperatorAction;
pub use policy::JudgeKind;
pub use policy::{Policy, PolicyError};
pub use record::{PauseCause, Phase, Record};

/// Tag cutover puts on the candidate revision (its URL lets people try it).
pub const CANDIDATE_TAG: &str = "candidate";
/// Tag cutover keeps on the stable revision.
pub const STABLE_TAG: &str = "stable";

/// A service as a traffic router sees it, reduced to what decisions need.
#[derive(Clone, Debug)]
pub struct Observed {
    pub service: ServiceRef,
    /// The newest revision that is ready to serve.
    pub latest_ready: Option<String>,
    /// Who serves what now: revision → percent, only revisions with a share above 0.
    pub allocation: BTreeMap<String, u8>,
    /// Revisions known to be ready (the latest ready one and those routed to).
    pub ready: BTreeSet<String>,
    /// URL of each traffic tag, once the platform has assigned one.
    pub tag_urls: BTreeMap<String, String>,
    /// The service's annotations: cutover's record and any policy overrides.
    pub annotations: BTreeMap<String, String>,
}

#[cfg(test)]
impl Observed {
    /// The service after `w` is applied, as a router would observe it next.
    pub(crate) fn after(&self, w: &Write) -> Observed {
        let mut next = self.clone();
        if let Some(traffic) = &w.traffic {
            next.allocation = traffic
                .iter()
                .filter(|t| t.percent > 0)
                .map(|t| (t.revision.clone(), t.percent))
                .collect();
            next.ready
                .extend(traffic.iter().map(|t| t.revision.clone()));
        }
        next.annotations
            .retain(|k, _| !record::RECORD_KEYS.contains(&k.as_str()));
        next.annotations.extend(w.record.to_annotations());
        next
    }
}

/// What woke the reconciler. It says which service, never what to do; `decide` works that out
/// from the observed state.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// A build that deployed a new revision finished: roll out the latest ready revision.
    Build { build_id: String },
    /// Periodic evaluation.
    Tick,
    /// A Monitoring incident opened for this service: roll back at once.
    Alert {
        incident_id: String,
        summary: String,
    },
    /// A person asked for something with a `cutover` verb (see [`operator`]): the action is
    /// checked against the rollout's state like any other trigger, and refused where it makes
    /// no sense.
    Operator {
        action: OperatorAction,
        actor: String,
    },
}

impl Trigger {
    /// How decision records name the trigger.
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Build { .. } => "build",
            Trigger::Tick => "tick",
            Trigger::Alert { .. } => "alert",
            Trigger::Operator { action, .. } => action.name(),
        }
    }

    /// Who asked: the person behind an operator trigger, else cutover itself.
    pub fn actor(&self) -> &str {
        match self {
            Trigger::Operator { actor, .. } => actor,
            _ => "cutover",
        }
    }
}

/// Evidence gathered on the decision core's request.
#[derive(Clone, Debug, Default)]
pub enum Evidence {
    /// Nothing gathered (yet).
    #[default]
    None,
    /// Metrics for the requested window, or why they could not be read.
    Metrics(Result<ServiceStats, String>),
    /// The smoke check's result.
    Smoke(Result<(), String>),
}

/// Evidence the decision core asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Need {
    /// Every revision's metrics over this window.
    Metrics(Window),
    /// `GET` this URL; 2xx passes.
    Smoke(String),
}

/// What a decision writes: traffic and the record, or (a pause) the record alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new rollout begins (or replaces an older candidate's).
    Start,
    /// Smoke check passed or a step was healthy: the candidate gets the next step.
    Advance,
    /// The last step was healthy: the candidate keeps 100% and bakes, the previous stable
    /// still tagged.
    Bake,
    /// The candidate serves 100% and becomes stable.
    Complete,
    /// All traffic back to stable.
    Rollback,
    /// The rollout stops and waits for a person (traffic stays as it is).
    Pause,
    /// A paused rollout runs again (a person's `cutover resume`).
    Resume,
}

/// Why a decision writes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stay {
    /// Waiting: soaking, or not enough data yet.
    Hold,
    /// Nothing to do for this service.
    Nothing,
    /// The service cannot be handled as it is (unreadable record, invalid policy).
    Error,
    /// A person's request that makes no sense in the rollout's state (the reason says why).
    Refused,
}

/// What the reconciler does with a decision; each case carries exactly what it needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Write the split and the record in one conditional update.
    Write(Change, Write),
    /// Gather this evidence, then decide again.
    Gather(Need),
    /// Write nothing.
    Stay(Stay),
}

/// The kind of decision, as decision records name it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Gather,
    Start,
    Advance,
    Bake,
    Complete,
    Hold,
    Rollback,
    Pause,
    Resume,
    #[default]
    Nothing,
    Error,
    /// An event naming a service cutover does not evaluate, refused before anything is read
    /// (see src/events/resolve.rs), or a person's request that [`decide`] refuses.
    Refused,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gather => "gather",
            Kind::Start => "start",
            Kind::Advance => "advance",
            Kind::Bake => "bake",
            Kind::Complete => "complete",
            Kind::Hold => "hold",
            Kind::Rollback => "rollback",
            Kind::Pause => "pause",
            Kind::Resume => "resume",
            Kind::Nothing => "nothing",
            Kind::Error => "error",
            Kind::Refused => "refused",
        }
    }

    /// A decision a person should look at (logged as a warning).
    pub fn is_warning(self) -> bool {
        matches!(self, Kind::Rollback | Kind::Pause | Kind::Error)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` keeps width and alignment working, as for the name itself.
        f.pad(self.as_str())
    }
}

/// A kind compares with its name, as records are read (`decision == "rollback"`).
impl PartialEq<&str> for Kind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One traffic target as cutover wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub revision: String,
    pub percent: u8,
    pub tag: Option<String>,
}

/// A conditional write: traffic (unless unchanged) and the record, together.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// `None` leaves traffic exactly as it is (pausing on a manual change).
    pub traffic: Option<Vec<Target>>,
    pub record: Record,
}

impl Write {
    /// A write that leaves the candidate in its smoke phase is followed at once by the next
    /// decision (its smoke check), without waiting for a tick.
    pub fn continues(&self) -> bool {
        self.record.phase == Phase::Smoke
    }
}

/// What to do, and why: the action, and the facts a decision record shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub reason: String,
    /// The numbers a judged step used.
    pub judgement: Option<Judgement>,
    /// The rollout this decision is about, as it stands after the decision.
    pub record: Option<Record>,
    /// Thresholds in force.
    pub policy: Option<Policy>,
}

impl Decision {
    fn new(action: Action, reason: impl Into<String>) -> Decision {
        Decision {
            action,
            reason: reason.into(),
            judgement: None,
            record: None,
            policy: None,
        }
    }

    pub(crate) fn stay(stay: Stay, reason: impl Into<String>) -> Decision {
        Decision::new(Action::Stay(stay), reason)
    }

    fn gather(need: Need, reason: impl Into<String>) -> Decision {
        Decision::new(Action::Gather(need), reason)
    }

    pub(crate) fn writing(
        change: Change,
        reason: String,
        traffic: Option<Vec<Target>>,
        mut record: Record,
    ) -> Decision {
        record.reason = reason.clone();
        let mut d = Decision::new(
            Action::Write(
                change,
                Write {
                    traffic,
                    record: record.clone(),
                },
            ),
            reason,
        );
        d.record = Some(record);
        d
    }

    fn about(mut self, record: Option<&Record>, policy: Option<&Policy>) -> Decision {
        if self.record.is_none() {
            self.record = record.cloned();
        }
        if self.policy.is_none() {
            self.policy = policy.cloned();
        }
        self
    }

    /// The kind of decision, for records and logs.
    pub fn kind(&self) -> Kind {
        match &self.action {
            Action::Write(Change::Start, _) => Kind::Start,
            Action::Write(Change::Advance, _) => Kind::Advance,
            Action::Write(Change::Bake, _) => Kind::Bake,
            Action::Write(Change::Complete, _) => Kind::Complete,
            Action::Write(Change::Rollback, _) => Kind::Rollback,
            Action::Write(Change::Pause, _) => Kind::Pause,
            Action::Write(Change::Resume, _) => Kind::Resume,
            Action::Gather(_) => Kind::Gather,
            Action::Stay(Stay::Hold) => Kind::Hold,
            Action::Stay(Stay::Nothing) => Kind::Nothing,
            Action::Stay(Stay::Error) => Kind::Error,
            Action::Stay(Stay::Refused) => Kind::Refused,
        }
    }

    /// The write to apply, if any.
    pub fn write(&self) -> Option<&Write> {
        match &self.action {
            Action::Write(_, w) => Some(w),
            _ => None,
        }
    }

    /// The evidence asked for, if any.
    pub fn need(&self) -> Option<&Need> {
        match &self.action {
            Action::Gather(n) => Some(n),
            _ => None,
        }
    }
}

/// Decides what to do with one service.
///
/// `defaults` is cutover's configured policy; the service's overrides are applied here.
pub fn decide(
    obs: &Observed,
    trigger: &Trigger,
    evidence: &Evidence,
    defaults: &Policy,
    now: Timestamp,
) -> Decision {
    let record = match Record::from_annotations(&obs.annotations) {
        Ok(r) => r,
        Err(e) => {
            return Decision::stay(
                Stay::Error,
                format!(
                    "cutover's record on the service is unreadable ({e}); fix or remove the cutover.dev/ annotations"
                ),
            );
        }
    };
    let policy = defaults.with_overrides(&obs.annotations);
    let d = match trigger {
        Trigger::Alert {
            incident_id,
            summary,
        } => on_alert(obs, record.as_ref(), incident_id, summary, now),
        Trigger::Build { build_id } => on_build(obs, record.as_ref(), &policy, build_id, now),
        Trigger::Tick => match &record {
            Some(r) if r.phase.is_running() => progress(obs, r, &policy, evidence, now),
            Some(r) => Decision::stay(
                Stay::Nothing,
                format!("rollout of {} is {}", r.candidate, r.phase),
            ),
            None => Decision::stay(Stay::Nothing, "no rollout on this service"),
        },
        Trigger::Operator { action, actor } => {
            operator::decide(obs, record.as_ref(), &policy, action, actor, now)
        }
    };
    let mut d = d.about(record.as_ref(), policy.as_ref().ok());
    remember(&mut d, trigger, now);
    d
}

/// Adds a decision that writes to the rollout's history (and names its actor), so that the
/// history travels in the same guarded write as the change it describes.
fn remember(d: &mut Decision, trigger: &Trigger, now: Timestamp) {
    let kind = d.kind();
    let judged = d
        .judgement
        .as_ref()
        .zip(d.policy.as_ref())
        .map(|(j, p)| record::Judged {
            n: j.requests,
            e: j.errors_5xx,
            p99: j.p99_ms,
            min: p.min_requests,
            max_er: p.max_error_rate,
            max_p99: p.max_p99_ms,
        });
    let Action::Write(_, w) = &mut d.action else {
        return;
    };
    w.record.history.push(record::Entry {
        at: now,
        decision: kind.as_str().to_string(),
        trigger: trigger.name().to_string(),
        actor: trigger.actor().to_string(),
        percent: w.record.percent,
        reason: d.reason.clone(),
        judged,
    });
    d.record = Some(w.record.clone());
}

/// The allocation cutover's record implies.
fn expected_allocation(r: &Record) -> BTreeMap<String, u8> {
    let mut a = BTreeMap::new();
    if r.percent < 100 {
        a.insert(r.stable.clone(), 100 - r.percent);
    }
    if r.percent > 0 {
        a.insert(r.candidate.clone(), r.percent);
    }
    a
}

/// An allocation as people read it: `rev-a=90%, rev-b=10%`, or `nothing`.
pub fn describe(a: &BTreeMap<String, u8>) -> String {
    if a.is_empty() {
        return "nothing".into();
    }
    a.iter()
        .map(|(r, p)| format!("{r}={p}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Traffic no longer matches what cutover last wrote: someone changed it by hand.
pub(crate) fn drift(obs: &Observed, r: &Record) -> Option<String> {
    let expected = expected_allocation(r);
    (expected != obs.allocation).then(|| {
        format!(
            "traffic was changed outside cutover: cutover set {}, the service now routes {}",
            describe(&expected),
            describe(&obs.allocation)
        )
    })
}

pub(crate) fn split(r: &Record, percent: u8) -> Vec<Target> {
    vec![
        Target {
            revision: r.stable.clone(),
            percent: 100 - percent,
            tag: Some(STABLE_TAG.into()),
        },
        Target {
            revision: r.candidate.clone(),
            percent,
            tag: Some(CANDIDATE_TAG.into()),
        },
    ]
}

fn on_alert(
    obs: &Observed,
    record: Option<&Record>,
    incident: &str,
    summary: &str,
    now: Timestamp,
) -> Decision {
    let Some(r) = record else {
        return Decision::stay(
            Stay::Nothing,
            format!("alert {incident}: no rollout on this service"),
        );
    };
    let live = r.phase.is_running()
        || matches!(r.phase, Phase::Paused(c) if c != PauseCause::ManualChange);
    if !live {
        return Decision::stay(
            Stay::Nothing,
            format!(
                "alert {incident}: rollout of {} is {}",
                r.candidate, r.phase
            ),
        );
    }
    if let Some(d) = drift(obs, r) {
        return Decision::stay(
            Stay::Nothing,
            format!(
                "alert {incident}: not rolling back, {d}; the person who changed it owns the traffic"
            ),
        );
    }
    let summary = summary.trim();
    let mut why = if summary.is_empty() {
        format!("alert {incident} opened")
    } else {
        format!("alert {incident} opened: {summary}")
    };
    if r.phase == Phase::Baking {
        why = format!(
            "{why} during the bake of {}; back to the previous stable {}",
            r.candidate, r.stable
        );
    }
    rollback(obs, r, why, now)
}

pub(crate) fn on_build(
    obs: &Observed,
    record: Option<&Record>,
    policy: &Result<Policy, PolicyError>,
    build_id: &str,
    now: Timestamp,
) -> Decision {
    if let Some(r) = record.filter(|r| r.build.as_deref() == Some(build_id)) {
        return Decision::stay(
            Stay::Nothing,
            format!(
                "build {build_id} already started the rollout of {} (now {})",
                r.candidate, r.phase
            ),
        );
    }
    let Some(candidate) = obs.latest_ready.clone() else {
        return Decision::stay(Stay::Nothing, "the service has no ready revision");
    };
    let mut d = begin(obs, record, policy, candidate, false, now);
    // Every write `begin` decides starts a rollout: this build is the one that started it.
    if let Action::Write(_, w) = &mut d.action {
        w.record.build = Some(build_id.to_string());
    }
    d
}

/// Starts a rollout of `candidate` (a build's latest ready revision, or the one a person
/// named), unless the service's state says otherwise. A revision that was rolled back is
/// started again only when a person names it (`explicit`).
pub(crate) fn begin(
    obs: &Observed,
    record: Option<&Record>,
    policy: &Result<Policy, PolicyError>,
    candidate: String,
    explicit: bool,
    now: Timestamp,
) -> Decision {
    let rolled_back: &[String] = record.map(|r| r.rolled_back.as_slice()).unwrap_or(&[]);
    if !explicit && rolled_back.contains(&candidate) {
        return Decision::stay(
            Stay::Nothing,
            format!(
                "{candidate} was rolled back before and is not rolled out again automatically; deploy a newer revision"
            ),
        );
    }
    // A rollout still holding traffic: the build either repeats it or brings a newer candidate.
    if let Some(r) = record.filter(|r| r.phase.is_running() || matches!(r.phase, Phase::Paused(_)))
    {
        if r.candidate == candidate {
            return Decision::stay(
                Stay::Nothing,
                format!("rollout of {candidate} is already {}", r.phase),
            );
        }
        if r.stable == candidate {
            return Decision::stay(Stay::Nothing, format!("{candidate} is the stable revision"));
        }
        if drift(obs, r).is_none() {
            let (stable, why) = superseded(r, &candidate);
            return start(
                obs,
                candidate,
                stable,
                r.rolled_back.clone(),
                policy,
                why,
                now,
            );
        }
        // Traffic was changed by hand: start fresh only if it is back on a single revision.
    }
    let mut serving = obs.allocation.iter().filter(|(_, p)| **p == 100);
    let Some((stable, _)) = serving.next() else {
        return Decision::stay(
            Stay::Nothing,
            format!(
                "no stable revision: traffic is split ({}); a rollout starts only from one revision serving 100%",
                describe(&obs.allocation)
            ),
        );
    };
    if *stable == candidate {
        return Decision::stay(
            Stay::Nothing,
            format!("{candidate} already serves all traffic"),
        );
    }
    let why = format!("new revision {candidate}; {stable} is stable");
    start(
        obs,
        candidate,
        stable.clone(),
        rolled_back.to_vec(),
        policy,
        why,
        now,
    )
}

/// The stable revision of the rollout that replaces `r` (still running or paused, its traffic
/// as cutover wrote it), and why.
///
/// A newer rollout starts from what serves traffic now, as the README defines the stable (the
/// revision serving 100%), never from a revision that lost its traffic:
///
/// - **At 100%** (the old candidate soaks its last step, bakes, or paused there) the old candidate
///   serves everything: it is the new stable and keeps 90%. The recorded stable has had nothing
///   since the last step's write; it may be scaled to zero, and giving it 90% in one write
///   would be a rollback that no evidence asked for, with no way back to the revision that had
///   passed every earlier step (a failing newer candidate would then be rolled back to the idle
///   one). The old stable may also no longer be ready; that does not matter here.
/// - **Below 100%** (10%, 50%, the smoke phase at 0%) the recorded stable never lost its traffic
///   and is the last revision that served all of it; the old candidate, which has not, gives
///   its share back to it, as a rollback would, without being marked as failed (it was replaced,
///   not judged). At 10% or 50% the stable still serves most or half of the traffic and is warm
///   for the rest. With overridden steps such as `75,100` the stable is the smaller share, and
///   still the one proven at 100%: moving the candidate's share back to it is exactly what any
///   rollback of that step does.
/// - **Paused** rollouts follow the same rule by their percent: a pause (maximum hold, invalid
///   override, stable not ready) leaves the traffic where the last step put it. Paused at 100%
///   because the old stable is not ready, the rollout is no longer stuck: the newer one starts
///   beside the old candidate, which serves and so is ready. Traffic that differs from the
///   record (a manual change) never reaches this: it starts over from whatever serves 100%, or
///   not at all.
///
/// Finishing the old rollout first was the alternative: it delays a release (often the fix of
/// the one in flight) by up to the remaining steps and maximum hold, needs a queue of pending
/// builds that cutover does not have (the record holds one rollout, and a build message is
/// acknowledged once), and at 100% it ends where this starts: on the old candidate.
fn superseded(r: &Record, candidate: &str) -> (String, String) {
    if r.percent == 100 {
        let why = format!(
            "{candidate} supersedes {}, which serves all traffic and is now the stable revision",
            r.candidate
        );
        (r.candidate.clone(), why)
    } else {
        let why = format!(
            "{candidate} supersedes {}, which had {}% and gives it back to stable {}",
            r.candidate, r.percent, r.stable
        );
        (r.stable.clone(), why)
    }
}

pub(crate) fn start(
    obs: &Observed,
    candidate: String,
    stable: String,
    rolled_back: Vec<String>,
    policy: &Result<Policy, PolicyError>,
    why: String,
    now: Timestamp,
) -> Decision {
    let policy = match policy {
        Ok(p) => p,
        Err(e) => {
            return Decision::stay(
                Stay::Error,
                format!("not starting a rollout of {candidate}: {e}"),
            );
        }
    };
    if !obs.ready.contains(&stable) {
        return Decision::stay(
            Stay::Nothing,
            format!("not starting a rollout of {candidate}: stable revision {stable} is not ready"),
        );
    }
    let mut r = Record {
        phase: Phase::Smoke,
        candidate,
        stable,
        percent: 0,
        started: now,
        step_started: now,
        reason: String::new(),
        rolled_back,
        history: record::History::default(),
        build: None,
    };
    if policy.smoke_path.is_some() {
        let traffic = split(&r, 0);
        return Decision::writing(
            Change::Start,
            format!("{why}: tagging it for a smoke check"),
            Some(traffic),
            r,
        );
    }
    let first = policy.steps[0];
    r.phase = Phase::Progressing;
    r.percent = first;
    let traffic = split(&r, first);
    Decision::writing(
        Change::Start,
        format!("{why}: candidate gets {first}%"),
        Some(traffic),
        r,
    )
}

pub(crate) fn pause(r: &Record, cause: PauseCause, why: String) -> Decision {
    if r.phase == Phase::Paused(cause) {
        return Decision::stay(Stay::Nothing, format!("{why} (already paused)"));
    }
    let mut next = r.clone();
    next.phase = Phase::Paused(cause);
    Decision::writing(Change::Pause, why, None, next)
}

pub(crate) fn rollback(obs: &Observed, r: &Record, why: String, now: Timestamp) -> Decision {
    if !obs.ready.contains(&r.stable) {
        return pause(
            r,
            PauseCause::StableNotReady,
            format!(
                "{why}; but stable revision {} is not ready, so there is nothing safe to roll back to",
                r.stable
            ),
        );
    }
    let mut next = r.clone();
    next.phase = Phase::RolledBack;
    next.percent = 0;
    next.step_started = now;
    next.remember_rolled_back(&r.candidate);
    let traffic = split(&next, 0);
    Decision::writing(Change::Rollback, why, Some(traffic), next)
}

pub(crate) fn advance(r: &Record, to: u8, why: String, now: Timestamp) -> Decision {
    let mut next = r.clone();
    next.phase = Phase::Progressing;
    next.percent = to;
    next.step_started = now;
    let traffic = split(&next, to);
    Decision::writing(
        Change::Advance,
        format!("{why}: candidate gets {to}%"),
        Some(traffic),
        next,
    )
}

pub(crate) fn complete(r: &Record, why: String, now: Timestamp) -> Decision {
    let mut next = r.clone();
    next.phase = Phase::Completed;
    next.percent = 100;
    next.step_started = now;
    let traffic = vec![Target {
        revision: r.candidate.clone(),
        percent: 100,
        tag: Some(STABLE_TAG.into()),
    }];
    Decision::writing(
        Change::Complete,
        format!("{why}: {} is now stable", r.candidate),
        Some(traffic),
        next,
    )
}

/// The last step passed with a bake configured: the candidate keeps 100%, and the split is
/// written again as it stands (the previous stable at 0% with its `stable` tag, the candidate
/// with its own), so the revision a rollback goes to stays tagged, and so routable and ready
/// in the service's traffic, for the whole bake.
fn start_bake(r: &Record, why: String, policy: &Policy, now: Timestamp) -> Decision {
    let mut next = r.clone();
    next.phase = Phase::Baking;
    next.percent = 100;
    next.step_started = now;
    let ends = now.saturating_add(policy.bake).unwrap_or(Timestamp::MAX);
    let traffic = split(&next, 100);
    Decision::writing(
        Change::Bake,
        format!(
            "{why}: baking for {} until {ends}; an alert or a failed absolute check until then rolls back to {}",
            policy::format_duration(policy.bake),
            r.stable
        ),
        Some(traffic),
        next,
    )
}

/// A tick during the bake: the candidate serves everything, so there is no stable traffic to
/// compare with and its own data is judged against the absolute limits alone, over the window
/// that follows the last step's (from the bake's start less the metrics delay, when that step's
/// judged window ended). A failed check rolls back at once; anything else waits for the bake
/// to end, and then completes (the last step was already judged healthy: missing or
/// inconclusive data during the bake is no reason to hold the rollout, and alerts still
/// watch). No maximum hold applies: the bake ends by itself.
fn baking(
    obs: &Observed,
    r: &Record,
    policy: &Policy,
    evidence: &Evidence,
    now: Timestamp,
) -> Decision {
    let ends = r
        .step_started
        .saturating_add(policy.bake)
        .unwrap_or(Timestamp::MAX);
    let since = r
        .step_started
        .saturating_sub(policy.metrics_delay)
        .unwrap_or(r.step_started);
    // From before the rollout's start: stable's data from then and from the earlier steps is
    // the baseline.
    let window = Window {
        start: judge::window::baseline_start(r.started).min(since),
        end: now.saturating_sub(policy.metrics_delay).unwrap_or(now),
    };
    let (judgement, unjudged) = match evidence {
        Evidence::Metrics(Ok(stats)) => {
            let step = judge::window::Step {
                candidate: &r.candidate,
                stable: &r.stable,
                percent: 100,
                since,
                now,
                // No maximum hold during the bake: it ends by itself.
                last_look: false,
            };
            (Some(judge::judge_step(stats, &step, policy)), None)
        }
        Evidence::Metrics(Err(e)) => (None, Some(format!("metrics unavailable ({e})"))),
        _ if window.end > since => {
            return Decision::gather(Need::Metrics(window), "baking: checking the candidate");
        }
        _ => (None, Some("no data yet".to_string())),
    };
    let status = match (&judgement, unjudged) {
        (Some(j), _) => match &j.verdict {
            Verdict::Fail(why) => {
                let mut d = rollback(
                    obs,
                    r,
                    format!(
                        "failed during the bake of {}: {why}; back to the previous stable {}",
                        r.candidate, r.stable
                    ),
                    now,
                );
                d.judgement = judgement;
                return d;
            }
            Verdict::Inconclusive(why) => format!("no verdict yet ({why})"),
            Verdict::Pass => format!("within the limits ({})", j.summary()),
        },
        (None, Some(why)) => why,
        (None, None) => String::new(),
    };
    let mut d = if now >= ends {
        complete(
            r,
            format!(
                "bake of {} over without an alert or a failed check, {status}",
                policy::format_duration(policy.bake)
            ),
            now,
        )
    } else {
        Decision::stay(
            Stay::Hold,
            format!("baking at 100%, {status}; complete at {ends}"),
        )
    };
    d.judgement = judgement;
    d
}

fn progress(
    obs: &Observed,
    r: &Record,
    policy: &Result<Policy, PolicyError>,
    evidence: &Evidence,
    now: Timestamp,
) -> Decision {
    if let Some(d) = drift(obs, r) {
        return pause(
            r,
            PauseCause::ManualChange,
            format!("{d}; pausing and leaving it as it is"),
        );
    }
    let policy = match policy {
        Ok(p) => p,
        Err(e) => {
            return pause(
                r,
                PauseCause::InvalidPolicy,
                format!("invalid policy override, {e}"),
            );
        }
    };
    if r.phase == Phase::Baking {
        return baking(obs, r, policy, evidence, now);
    }
    if r.phase == Phase::Smoke {
        let Some(path) = &policy.smoke_path else {
            return advance(r, policy.steps[0], "no smoke check configured".into(), now);
        };
        return match evidence {
            Evidence::Smoke(Ok(())) => {
                advance(r, policy.steps[0], "smoke check passed".into(), now)
            }
            Evidence::Smoke(Err(e)) => rollback(obs, r, format!("smoke check failed: {e}"), now),
            _ => match obs.tag_urls.get(CANDIDATE_TAG) {
                Some(url) => Decision::gather(
                    Need::Smoke(format!("{}{path}", url.trim_end_matches('/'))),
                    "smoke check",
                ),
                None => Decision::stay(Stay::Hold, "waiting for the candidate's tag URL"),
            },
        };
    }

    let due = r
        .step_started
        .saturating_add(policy.step_interval)
        .and_then(|t| t.saturating_add(policy.metrics_delay));
    let due = due.unwrap_or(Timestamp::MAX);
    if now < due {
        return Decision::stay(
            Stay::Hold,
            format!("soaking at {}%: judged from {due}", r.percent),
        );
    }
    // At 100% the window reaches back to before the rollout's start: stable's data from then
    // and from the earlier steps is the baseline the candidate is compared with.
    let window = Window {
        start: if r.percent >= 100 {
            judge::window::baseline_start(r.started).min(r.step_started)
        } else {
            r.step_started
        },
        end: now.saturating_sub(policy.metrics_delay).unwrap_or(now),
    };
    let held_too_long = now.duration_since(due) >= policy.max_hold;
    let hold = |why: String, judgement: Option<Judgement>| {
        let mut d = if held_too_long {
            pause(
                r,
                PauseCause::MaxHold,
                format!(
                    "{why}; still no verdict {} after the step was due, pausing",
                    policy::format_duration(policy.max_hold)
                ),
            )
        } else {
            Decision::stay(Stay::Hold, why)
        };
        d.judgement = judgement;
        d
    };
    let stats = match evidence {
        Evidence::Metrics(Ok(stats)) => stats,
        Evidence::Metrics(Err(e)) => {
            return hold(format!("metrics unavailable ({e}), not judging"), None);
        }
        _ => return Decision::gather(Need::Metrics(window), "step is due"),
    };
    // Both revisions come from the same query over the same window, minute by minute.
    let step = judge::window::Step {
        candidate: &r.candidate,
        stable: &r.stable,
        percent: r.percent,
        since: r.step_started,
        now,
        last_look: held_too_long,
    };
    let j = judge::judge_step(stats, &step, policy);
    let mut d = match &j.verdict {
        Verdict::Fail(why) => rollback(obs, r, format!("step {}% failed: {why}", r.percent), now),
        Verdict::Inconclusive(why) => {
            return hold(format!("step {}% inconclusive: {why}", r.percent), Some(j));
        }
        Verdict::Pass => {
            let why = format!("step {}% healthy ({})", r.percent, j.summary());
            match policy.next_step(r.percent) {
                Some(next) => advance(r, next, why, now),
                None if policy.bake.is_positive() => start_bake(r, why, policy, now),
                None => complete(r, why, now),
            }
        }
    };
    d.judgement = Some(j);
    d
}

#[cfg(test)]
mod tests;
