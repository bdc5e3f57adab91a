//! Which minutes a step is judged on: Monitoring's per-minute answer cut down to the contiguous
//! run of complete minutes, and the stable revision's data the candidate is compared with (the
//! same minutes on a canary step, the baseline of the earlier steps at 100%).
//!
//! A point not yet written looks exactly like a minute without traffic, and judging a minute in
//! which one revision's point has landed and the other's has not shows a difference that is not
//! there. A minute therefore enters only when every revision the step needs has a point at that
//! minute or a later one in its busiest series (proof its writer got past it), or when it ended
//! at least
//! `CUTOVER_DATA_WAIT` ago (Cloud Run samples every 60 s and a sample may take up to 180 s more
//! to become visible, so a minute's point lands at most about four minutes after it ends).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::{Coverage, Input, Minutes, Reference};
use crate::decision::evidence::{RevisionStats, Series, ServiceStats};
use crate::decision::policy::{self, Policy};

/// How far before the rollout's start stable's baseline reaches: at 100% (and during the bake)
/// the window starts this long before the rollout did, so the baseline holds stable's own hour
/// at full traffic as well as its minutes during the earlier steps.
///
/// Why: the earlier steps alone last 10 to 20 minutes, and a baseline that short misses what
/// happens a couple of times an hour (a bad instance, a dependency blip): its mean is then
/// below stable's true one and its minutes look calmer than they are, so the candidate's first
/// burst at 100% reads as a regression. An hour holds a couple of such bursts, which raise the
/// baseline's mean to the true one and its per-minute dispersion (which scales the evidence,
/// `comparison_dispersion`) to what the service really does. Read again from Monitoring on every
/// tick at 100% (its points stay for six weeks): nothing is stored in the record, at the price
/// of a query 60 minutes longer at 100%. An hour and not a day: a longer baseline spans more of
/// the daily curve, which the comparison across time cannot cancel (the squared regression
/// size leaves room for an hour's drift, measured with `diurnal-*` and `ramp-x3`).
pub const BASELINE_LOOKBACK: SignedDuration = SignedDuration::from_mins(60);

/// Where the window of a step judged against stable's baseline starts, for a rollout that
/// started at `started`.
pub fn baseline_start(started: Timestamp) -> Timestamp {
    started.saturating_sub(BASELINE_LOOKBACK).unwrap_or(started)
}

/// The step being judged.
#[derive(Clone, Copy, Debug)]
pub struct Step<'a> {
    pub candidate: &'a str,
    pub stable: &'a str,
    /// The candidate's current share, in percent.
    pub percent: u8,
    /// The candidate's data starts after this (the step's start; during the bake, where the
    /// last step's judged window ended).
    pub since: Timestamp,
    pub now: Timestamp,
    /// The step's last look: its maximum hold runs out at this tick, so an inconclusive verdict
    /// pauses the rollout. The absolute limits then also run their fixed-sample test.
    pub last_look: bool,
}

/// The last minute (end) every needed revision has proved complete, or has waited long enough
/// for: for each revision with a point in the window, its newest point or `now − wait`,
/// whichever is later; the earliest of those over the revisions. Never past the window's end.
/// Also says why later minutes were held back.
pub fn complete_until(
    stats: &ServiceStats,
    needed: &[&str],
    now: Timestamp,
    wait: SignedDuration,
) -> (Timestamp, Option<String>) {
    let waited = now.saturating_sub(wait).unwrap_or(now);
    let mut until = stats.window.end;
    let mut why = None;
    for rev in needed {
        // Proof comes from the revision's busiest series (its 2xx, as a rule): a sparse series
        // (5xx) is often silent, and a 5xx point that has landed says nothing of the 2xx
        // point of the same minute, which would make that minute read as all errors.
        let in_window = |s: &Series| -> u64 {
            s.points
                .range(..=stats.window.end)
                .filter(|(t, _)| **t > stats.window.start)
                .map(|(_, p)| p.count)
                .sum()
        };
        let newest = stats
            .series
            .iter()
            .filter(|s| s.revision == *rev)
            .max_by_key(|s| in_window(s))
            .and_then(|s| {
                s.points
                    .range(..=stats.window.end)
                    .next_back()
                    .map(|(t, _)| *t)
            });
        // A revision without a single point in the window served nothing in it (the window
        // spans at least a step's soak time): nothing of it is late.
        let Some(newest) = newest.filter(|t| *t > stats.window.start) else {
            continue;
        };
        let proved = newest.max(waited);
        if proved < until {
            until = proved;
            why = Some(format!(
                "no point yet from {rev} after {}, and later minutes ended less than {} ago",
                newest,
                policy::format_duration(wait)
            ));
        }
    }
    (until, why)
}

/// `revision`'s minutes ending in `(after, until]`.
fn minutes_between(
    stats: &ServiceStats,
    revision: &str,
    after: Timestamp,
    until: Timestamp,
) -> Result<Minutes, String> {
    let all = stats.minutes(revision)?;
    let kept: BTreeMap<Timestamp, RevisionStats> = all
        .range(..=until)
        .filter(|(t, _)| **t > after)
        .map(|(t, s)| (*t, s.clone()))
        .collect();
    Minutes::of(kept)
}

/// Cuts `stats` down to what the step is judged on.
pub fn gather(stats: &ServiceStats, step: &Step<'_>, policy: &Policy) -> Result<Input, String> {
    let full = step.percent >= 100;
    let needed: Vec<&str> = if full {
        vec![step.candidate]
    } else {
        vec![step.candidate, step.stable]
    };
    let (until, why) = complete_until(stats, &needed, step.now, policy.data_wait);
    let candidate = minutes_between(stats, step.candidate, step.since, until)?;
    let held_back = stats
        .series
        .iter()
        .filter(|s| needed.contains(&s.revision.as_str()))
        .flat_map(|s| s.points.range(..=stats.window.end).map(|(t, _)| *t))
        .filter(|t| *t > until)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let whole_minutes = stats.window.end.duration_since(until).as_secs().max(0) as usize / 60;
    let held_back = held_back.max(whole_minutes);
    // At 100% every point of stable's in the window comes from the rollout's earlier steps.
    let (after, why_none) = if full {
        (
            stats.window.start,
            "the candidate serves 100% and the stable revision served nothing earlier in the window: judged on the absolute limits only",
        )
    } else {
        (
            step.since,
            "the stable revision served no requests in the judged minutes: judged on the absolute limits only",
        )
    };
    let s = minutes_between(stats, step.stable, after, until)?;
    let baseline = match (s.by_minute.keys().next(), s.by_minute.keys().next_back()) {
        (Some(a), Some(b)) if full => Some((*a, *b, s.by_minute.len())),
        _ => None,
    };
    let (reference, no_reference) = match (s.total.requests > 0, full) {
        (true, true) => (Some(Reference::Baseline(s)), None),
        (true, false) => (Some(Reference::Concurrent(s)), None),
        (false, _) => (None, Some(why_none.to_string())),
    };
    let coverage = Coverage {
        first_minute_end: candidate.by_minute.keys().next().copied(),
        last_minute_end: candidate.by_minute.keys().next_back().copied(),
        minutes: candidate.by_minute.len(),
        held_back,
        held_back_why: if held_back > 0 { why } else { None },
        baseline,
    };
    Ok(Input {
        window: stats.window,
        percent: step.percent,
        candidate,
        reference,
        coverage: Some(coverage),
        no_reference,
        last_look: step.last_look,
    })
}
