//! Judging one step: the candidate against the stable revision over the same window, with
//! sequential tests that stay honest however often a step is looked at.
//!
//! Three outcomes, and "not enough evidence" is one of them: cutover never promotes on missing
//! data and never rolls back on it either. Every judgement carries the numbers it used (counts,
//! rates, quantiles, likelihood ratios and the boundaries they were held against) so the
//! decision record shows a person exactly why. The method and its guarantees are explained in
//! `docs/judgement.md`; in short:
//!
//! * Each check is a Wald sequential probability ratio test (SPRT). Its log-likelihood ratio
//!   (LLR) is compared with `ln(1/α)` to fail and `ln(1/β)` to pass. Under the null hypothesis
//!   the likelihood ratio is a martingale, so by Ville's inequality the chance it *ever* crosses
//!   `1/α` is at most α: looking again on every tick as data accumulates does not inflate false
//!   alarms. α is the rollout's false-alarm budget split evenly over every check of every step.
//! * **Absolute limits** (5xx rate, p99): "above the limit" (fail) against "at the limit", and
//!   "at the limit" against "comfortably within" (pass).
//! * **Comparisons with stable** (5xx, each configured percentile, and a rank test over the whole
//!   latency histogram): "no different from stable" against "worse by the configured ratio (or
//!   the practical floor, if larger)". The 5xx and percentile tests condition on the events (a
//!   5xx, a request slower than the pooled percentile): under "no difference" each event lands on
//!   the candidate with a probability fixed by the traffic split, whatever stable's own rate is.
//!   A comparison that is clearly different but by less than the practical floor passes.
//! * A comparison that has too few events to tell the two hypotheses apart (its expected
//!   evidence under the regression is below `ln(1/β)`) is reported as *not informative* and
//!   leaves the decision to the absolute limits, unless it already leans towards a regression
//!   (LLR ≥ `ln(1/β_canary)`), which holds the step.
//! * An absolute limit must be confirmed at `β` on the step that gives the candidate 100% (and
//!   at 100%), at the looser `β_canary` on earlier steps: a regression has to slip through every
//!   step to reach 100%, each judged on fresh data.
//! * If the stable revision served nothing in the window (at 100% it serves nothing at all), the
//!   step is judged on the absolute limits alone, and the record says so.

use std::collections::BTreeMap;

use serde::Serialize;

use jiff::Timestamp;

use super::evidence::{Histogram, RevisionStats, ServiceStats, Window};

use super::policy::{self, JudgeKind, Policy};
use super::stats;

/// The outcome of judging a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Healthy: move on.
    Pass,
    /// Unhealthy: roll back. The text says which limit or comparison was broken.
    Fail(String),
    /// Not enough evidence either way: hold.
    Inconclusive(String),
}

/// What a step was judged on, and the verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub window: Window,
    /// The candidate's requests, 5xx, 5xx ratio and p99 over the window.
    pub requests: u64,
    pub errors_5xx: u64,
    pub error_rate: f64,
    pub p99_ms: Option<f64>,
    pub min_requests: u64,
    pub max_error_rate: f64,
    pub max_p99_ms: f64,
    pub verdict: Verdict,
    /// Every check with its numbers (`None` only for the absolute-threshold baseline judge).
    pub statistics: Option<Statistics>,
}

/// Where a step sits in the rollout, which decides how sure a pass must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepRole {
    /// A step whose next step still leaves traffic on stable: a wrong pass is judged again.
    Canary,
    /// The step whose pass gives the candidate 100%.
    Promotion,
    /// The candidate already serves 100%: a pass completes the rollout.
    Final,
}

impl StepRole {
    pub fn of(policy: &Policy, percent: u8) -> StepRole {
        if percent >= 100 {
            StepRole::Final
        } else if policy.next_step(percent).is_none_or(|n| n >= 100) {
            StepRole::Promotion
        } else {
            StepRole::Canary
        }
    }
}

/// One check's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
    /// Not run (no stable traffic to compare with); never blocks, and says why.
    Skipped,
}

/// One check: its outcome, a sentence for people, and the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    /// For a comparison with stable, how it was read: `regressed`, `below-floor`, `confirmed`,
    /// `not-informative`, `leaning` or `open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reading: Option<&'static str>,
    pub note: String,
    pub values: BTreeMap<&'static str, f64>,
}

/// One revision over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub requests: u64,
    pub errors_5xx: u64,
    pub error_rate: f64,
    pub latency_samples: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Sample {
    fn of(s: &RevisionStats) -> Sample {
        Sample {
            requests: s.requests,
            errors_5xx: s.errors_5xx,
            error_rate: s.error_rate(),
            latency_samples: s.latency.total(),
            p50_ms: s.latency.quantile(0.5),
            p95_ms: s.latency.quantile(0.95),
            p99_ms: s.latency.quantile(0.99),
        }
    }
}

/// Everything the sequential judge computed for a step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Statistics {
    pub method: &'static str,
    pub step_percent: u8,
    pub role: StepRole,
    pub candidate: Sample,
    pub stable: Option<Sample>,
    /// Whether the stable revision could be compared with (else: absolute limits only).
    pub compared_with_stable: bool,
    /// Whether it was stable's baseline from the rollout's earlier steps (the candidate serves
    /// 100%) rather than stable over the same minutes.
    pub stable_is_baseline: bool,
    /// Which minutes were judged (absent when judged from totals alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minutes: Option<Coverage>,
    /// False-alarm probability allowed to each check of each step.
    pub alpha_per_check: f64,
    /// LLR at or above which a check fails: ln(1/α).
    pub fail_at: f64,
    /// LLR at or above which an absolute limit passes at this step: ln(1/β) (canary β early).
    pub limits_pass_at: f64,
    /// LLR (in favour of "no regression") at which a comparison passes: ln(1/β).
    pub comparisons_pass_at: f64,
    pub checks: Vec<Check>,
}

/// Boundaries of the sequential tests for one step.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    alpha: f64,
    /// ln(1/α).
    fail: f64,
    /// ln(1/β) for the absolute limits at this step.
    limits_pass: f64,
    /// ln(1/β) for comparisons; also the information a comparison needs to count.
    comparisons_pass: f64,
    /// Evidence for a regression (ln(1/β_canary), 4:1 by default) at which a comparison too
    /// thin to settle anything still holds the step.
    lean: f64,
    /// ln(1/α_sequence): the absolute limits' confidence sequences get `1 − LAST_LOOK_SHARE` of
    /// their check's α, the test at the last look the rest.
    limits_fail: f64,
    /// The level of the fixed-sample test of an absolute limit at the last look.
    last_look_alpha: f64,
    /// Whether this is the step's last look: the maximum hold runs out at this tick, and an
    /// inconclusive step pauses.
    last_look: bool,
}

/// The share of an absolute limit's α spent on the one fixed-sample test at the step's last
/// look (the tick at which the maximum hold runs out and an inconclusive step would pause); the
/// confidence sequence, which may be read at every tick, gets the rest. Half: the sequence's
/// boundary moves by ln 2 = 0.69 nats, while the last look, one test on the whole hold's data,
/// needs about z = 3.7 instead of the z ≈ 5.7 at which the sequence settles a rate 1.3× the
/// limit (docs/judgement.md, "The last look").
const LAST_LOOK_SHARE: f64 = 0.5;

impl Bounds {
    fn of(policy: &Policy, role: StepRole) -> Bounds {
        // Every check of every step, and of the bake (judged like a last step) when there is one.
        let judged_steps = policy.steps.len().max(1) + usize::from(policy.bake.is_positive());
        let checks = (4 + policy.latency_percentiles.len()) * judged_steps;
        let alpha = policy.false_alarm_rate / checks as f64;
        let limits_beta = match role {
            StepRole::Canary => policy.canary_miss_rate,
            StepRole::Promotion | StepRole::Final => policy.miss_rate,
        };
        Bounds {
            alpha,
            fail: (1.0 / alpha).ln(),
            limits_pass: (1.0 / limits_beta).ln(),
            comparisons_pass: (1.0 / policy.miss_rate).ln(),
            lean: (1.0 / policy.canary_miss_rate).ln(),
            limits_fail: (1.0 / (alpha * (1.0 - LAST_LOOK_SHARE))).ln(),
            last_look_alpha: alpha * LAST_LOOK_SHARE,
            last_look: false,
        }
    }
}

/// One revision over the judged minutes: its totals, and the same data minute by minute (keyed
/// by each minute's end), which the dispersion estimates and the per-minute comparisons read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Minutes {
    pub total: RevisionStats,
    pub by_minute: BTreeMap<Timestamp, RevisionStats>,
}

impl Minutes {
    /// A revision's minutes as they are.
    pub fn of(by_minute: BTreeMap<Timestamp, RevisionStats>) -> Result<Minutes, String> {
        let mut total = RevisionStats::default();
        for m in by_minute.values() {
            total.requests += m.requests;
            total.errors_5xx += m.errors_5xx;
            total.latency.merge(&m.latency)?;
        }
        Ok(Minutes { total, by_minute })
    }

    /// Totals known only as one block (ending at `end`).
    pub fn single(end: Timestamp, total: &RevisionStats) -> Minutes {
        Minutes {
            total: total.clone(),
            by_minute: BTreeMap::from([(end, total.clone())]),
        }
    }
}

/// What the candidate is compared with.
#[derive(Clone, Debug, PartialEq)]
pub enum Reference {
    /// The stable revision over the same minutes (a canary step): compared minute by minute.
    Concurrent(Minutes),
    /// The stable revision as it served during the rollout's earlier steps (the candidate
    /// serves 100%): the baseline the rollout started from, compared over the totals.
    Baseline(Minutes),
}

impl Reference {
    fn minutes(&self) -> &Minutes {
        match self {
            Reference::Concurrent(m) | Reference::Baseline(m) => m,
        }
    }
}

/// Which minutes a step was judged on, for the record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Coverage {
    /// End of the first and the last minute judged (the contiguous run of complete minutes).
    pub first_minute_end: Option<Timestamp>,
    pub last_minute_end: Option<Timestamp>,
    /// Minutes with candidate data judged.
    pub minutes: usize,
    /// Minutes of the window left out because not every series the judge needs had landed.
    pub held_back: usize,
    /// Why they were held back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_back_why: Option<String>,
    /// For a comparison with the stable baseline: the end of its first and last minute, and
    /// how many minutes it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<(Timestamp, Timestamp, usize)>,
}

/// Everything a step is judged on.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub window: Window,
    pub percent: u8,
    pub candidate: Minutes,
    pub reference: Option<Reference>,
    pub coverage: Option<Coverage>,
    /// Why the candidate has nothing to be compared with, if so.
    pub no_reference: Option<String>,
    /// The step's last look: the maximum hold runs out at this tick (see [`window::Step`]).
    pub last_look: bool,
}

/// Judges a step from totals alone: the candidate's stats against the limits and against the
/// stable revision's stats over the same `window` (one block, no minutes: tests and callers that
/// have no per-minute data). `None` stats mean that revision served nothing in the window.
/// `percent` is the candidate's current step; at 100% there is nothing to compare with.
pub fn judge(
    candidate: Option<&RevisionStats>,
    stable: Option<&RevisionStats>,
    window: Window,
    percent: u8,
    policy: &Policy,
) -> Judgement {
    if policy.judge == JudgeKind::Absolute {
        return absolute_only(candidate, window, policy);
    }
    let empty = RevisionStats::default();
    let c = Minutes::single(window.end, candidate.unwrap_or(&empty));
    let final_step = StepRole::of(policy, percent) == StepRole::Final;
    let stable = stable.filter(|s| s.requests > 0 && !final_step);
    let no_reference = if final_step {
        "the candidate serves 100%, there is no stable traffic to compare with: judged on the absolute limits only"
    } else {
        "the stable revision served no requests in the window: judged on the absolute limits only"
    };
    judge_input(
        Input {
            window,
            percent,
            candidate: c,
            reference: stable.map(|s| Reference::Concurrent(Minutes::single(window.end, s))),
            coverage: None,
            no_reference: stable.is_none().then(|| no_reference.to_string()),
            last_look: false,
        },
        policy,
    )
}

/// Judges a step on Monitoring's per-minute answer: only complete minutes, compared minute by
/// minute with stable on canary steps and with stable's baseline from the earlier steps at 100%
/// (see [`window::gather`]).
pub fn judge_step(stats: &ServiceStats, step: &window::Step<'_>, policy: &Policy) -> Judgement {
    if policy.judge == JudgeKind::Absolute {
        let c = stats
            .revision_between(step.candidate, step.since, stats.window.end)
            .ok()
            .flatten();
        return absolute_only(c.as_ref(), stats.window, policy);
    }
    match window::gather(stats, step, policy) {
        Ok(input) => judge_input(input, policy),
        Err(e) => {
            let mut j = judge_input(
                Input {
                    window: stats.window,
                    percent: step.percent,
                    candidate: Minutes::default(),
                    reference: None,
                    coverage: None,
                    no_reference: None,
                    last_look: step.last_look,
                },
                policy,
            );
            j.verdict = Verdict::Inconclusive(format!("metrics unreadable ({e})"));
            j
        }
    }
}

/// Judges what [`Input`] holds.
pub fn judge_input(input: Input, policy: &Policy) -> Judgement {
    let c = &input.candidate.total;
    let role = StepRole::of(policy, input.percent);
    let bounds = Bounds {
        last_look: input.last_look,
        ..Bounds::of(policy, role)
    };
    let reference = input
        .reference
        .as_ref()
        .filter(|r| r.minutes().total.requests > 0);
    let compare = reference.is_some();
    let mut stats = Statistics {
        method: "sequential",
        step_percent: input.percent,
        role,
        candidate: Sample::of(c),
        stable: reference.map(|r| Sample::of(&r.minutes().total)),
        compared_with_stable: compare,
        stable_is_baseline: matches!(reference, Some(Reference::Baseline(_))),
        minutes: input.coverage.clone(),
        alpha_per_check: bounds.alpha,
        fail_at: bounds.fail,
        limits_pass_at: bounds.limits_pass,
        comparisons_pass_at: bounds.comparisons_pass,
        checks: Vec::new(),
    };
    let mut j = Judgement {
        window: input.window,
        requests: c.requests,
        errors_5xx: c.errors_5xx,
        error_rate: c.error_rate(),
        p99_ms: c.latency.quantile(0.99),
        min_requests: policy.min_requests,
        max_error_rate: policy.max_error_rate,
        max_p99_ms: policy.max_p99_ms,
        verdict: Verdict::Pass,
        statistics: None,
    };
    if c.requests < policy.min_requests {
        let held = input
            .coverage
            .as_ref()
            .and_then(|c| c.held_back_why.as_ref())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        j.verdict = Verdict::Inconclusive(format!(
            "{} requests, fewer than the {} needed to judge{held}",
            c.requests, policy.min_requests
        ));
        j.statistics = Some(stats);
        return j;
    }
    let no_stable = input.no_reference.clone().unwrap_or_else(|| {
        "the stable revision served no requests: judged on the absolute limits only".into()
    });

    let cm = &input.candidate;
    let checks = &mut stats.checks;
    // The stable revision is the reference for "comfortably within the limit" when it has
    // enough data of its own.
    let good_ref = reference
        .map(|r| &r.minutes().total)
        .filter(|s| s.requests >= policy.min_requests.max(1));
    checks.push(errors_absolute(cm, good_ref, policy, &bounds));
    match reference {
        Some(r) => checks.push(errors_relative(cm, r, policy, &bounds)),
        None => checks.push(skipped("5xx vs stable", &no_stable)),
    }
    if c.latency.total() == 0 {
        checks.push(Check {
            name: "latency".into(),
            outcome: Outcome::Inconclusive,
            reading: None,
            note: "no latency data for the candidate yet".into(),
            values: BTreeMap::new(),
        });
    } else {
        checks.push(latency_absolute(cm, good_ref, policy, &bounds));
        let with_latency = reference.filter(|r| r.minutes().total.latency.total() > 0);
        match with_latency {
            Some(r) if r.minutes().total.latency.bounds == c.latency.bounds => {
                for &q in &policy.latency_percentiles {
                    checks.push(tail_relative(cm, r, q, policy, &bounds));
                }
                checks.push(rank_relative(cm, r, policy, &bounds));
            }
            Some(_) => checks.push(skipped(
                "latency vs stable",
                "the two revisions report latency in different bucket layouts: compared with the absolute limit only",
            )),
            None if compare => checks.push(skipped(
                "latency vs stable",
                "the stable revision reported no latency in the window: compared with the absolute limit only",
            )),
            None => checks.push(skipped("latency vs stable", &no_stable)),
        }
    }

    let notes = |o: Outcome| {
        stats
            .checks
            .iter()
            .filter(|c| c.outcome == o)
            .map(|c| c.note.as_str())
            .collect::<Vec<_>>()
    };
    let failed = notes(Outcome::Fail);
    let open = notes(Outcome::Inconclusive);
    j.verdict = if !failed.is_empty() {
        Verdict::Fail(failed.join("; "))
    } else if !open.is_empty() {
        Verdict::Inconclusive(open.join("; "))
    } else {
        Verdict::Pass
    };
    j.statistics = Some(stats);
    j
}

fn skipped(name: &str, why: &str) -> Check {
    Check {
        name: name.into(),
        outcome: Outcome::Skipped,
        reading: None,
        note: why.into(),
        values: BTreeMap::new(),
    }
}

/// The note of an absolute limit's check: `what` against `limit`, with `detail` (what the fail
/// and the open outcome say before their bounds), the confidence sequences' bounds and the
/// dispersion the counts were divided by.
fn limit_note(
    outcome: Outcome,
    what: &str,
    limit: &str,
    detail: (&str, &str),
    lt: &LimitTest,
    d: stats::Dispersion,
    b: &Bounds,
) -> String {
    let scaled = if d.phi > 1.0 {
        format!(", counts divided by the dispersion {:.1}", d.phi)
    } else {
        String::new()
    };
    let alpha = b.alpha;
    let beta = (-b.limits_pass).exp();
    let alpha = alpha * (1.0 - LAST_LOOK_SHARE);
    match outcome {
        Outcome::Fail if lt.failed_at_last_look() => format!(
            "{what} is above the limit {limit} at the step's last look before the maximum hold pauses it ({}one-sided binomial test p = {:.1e} ≤ {:.1e}{scaled})",
            detail.0,
            lt.ln_p_last_look.unwrap_or(0.0).exp(),
            b.last_look_alpha
        ),
        Outcome::Fail => format!(
            "{what} is above the limit {limit} ({}lower bound {} at α = {alpha:.1e}{scaled})",
            detail.0,
            pct(lt.lower)
        ),
        Outcome::Pass => format!(
            "{what} is within the limit {limit} (evidence {:.1} ≥ {:.1}, β = {beta:.2}; upper bound {}{scaled})",
            lt.e_pass,
            b.limits_pass,
            pct(lt.upper)
        ),
        _ => format!(
            "{what} is not yet shown to be within the limit {limit} ({}evidence {:.1}, {:.1} needed; bounds {} … {}{scaled})",
            detail.1,
            lt.e_pass,
            b.limits_pass,
            pct(lt.lower),
            pct(lt.upper)
        ),
    }
}

/// How a comparison with stable ended, before it is worded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    Regressed,
    /// Clearly different, but by less than the practical floor.
    BelowFloor,
    Confirmed,
    NotInformative,
    Leaning,
    Open,
}

impl Reading {
    fn name(self) -> &'static str {
        match self {
            Reading::Regressed => "regressed",
            Reading::BelowFloor => "below-floor",
            Reading::Confirmed => "confirmed",
            Reading::NotInformative => "not-informative",
            Reading::Leaning => "leaning",
            Reading::Open => "open",
        }
    }

    fn outcome(self) -> Outcome {
        match self {
            Reading::Regressed => Outcome::Fail,
            Reading::BelowFloor | Reading::Confirmed | Reading::NotInformative => Outcome::Pass,
            Reading::Leaning | Reading::Open => Outcome::Inconclusive,
        }
    }
}

/// A comparison with stable: `llr` is the evidence for "worse by the regression size" against
/// "no different", `llr_fail` the same without the candidate's most incriminating minutes (what
/// a rollback needs, see [`without_worst`]), `info` the evidence a true regression would have
/// produced on average.
fn relative_reading(llr_fail: f64, llr: f64, info: f64, practical: bool, b: &Bounds) -> Reading {
    if llr_fail >= b.fail {
        if practical {
            Reading::Regressed
        } else {
            Reading::BelowFloor
        }
    } else if llr <= -b.comparisons_pass {
        Reading::Confirmed
    } else if info < b.comparisons_pass {
        if llr < b.lean {
            Reading::NotInformative
        } else {
            Reading::Leaning
        }
    } else {
        Reading::Open
    }
}

/// The evidence a reading is worded with: the trimmed one for a rollback, else the whole.
fn shown(reading: Reading, llr_fail: f64, llr: f64) -> f64 {
    match reading {
        Reading::Regressed | Reading::BelowFloor => llr_fail,
        _ => llr,
    }
}

/// How many of the candidate's `minutes` bursts may spoil without rolling it back:
/// [`BURST_MINUTES`] (one burst), and one more per ten minutes of window (a long hold sees
/// more of them), but never more than half of them (a regression must show in most minutes),
/// except that one whole burst may always go as long as two minutes stay: a step's first look
/// has five minutes, and a three-minute burst in it left one burst minute behind, enough to
/// roll a healthy candidate back against its baseline at 100%.
fn burst_minutes(minutes: usize) -> usize {
    let cap = (minutes / 2).max(BURST_MINUTES.min(minutes.saturating_sub(2)));
    (BURST_MINUTES + minutes.div_ceil(10)).min(cap)
}

/// How many of the candidate's `minutes` may be left out of a rollback against stable's
/// baseline (at 100%, in the bake): every outlier, up to half of them ([`burst_minutes`] when
/// that is more). Nothing cancels there: a burst of a shared dependency while the candidate
/// serves everything lands on it alone, and how many of a window's minutes bursts spoil is not
/// bounded by a share of the window (a step held open at 100% is held *because* bursts keep
/// its limit open). A regression that appears at full load is in every minute: at high traffic
/// every minute is an outlier and half of them still show it; at moderate traffic few are
/// outliers and it loses little. Either way the comparison needs the regression in most
/// minutes, which is what tells it from bursts.
fn baseline_outliers(minutes: usize) -> usize {
    (minutes / 2).max(burst_minutes(minutes))
}

/// A burst (one bad instance, a dependency blip) lasts one to three minutes.
const BURST_MINUTES: usize = 3;

/// A minute is left out of the evidence to roll back only if its events exceed the expected
/// count by more than this many standard deviations: an outlier, not the steady excess of a
/// regression at moderate traffic.
const OUTLIER_Z: f64 = 3.0;

/// The candidate's minutes without the [`burst_minutes`] ones that incriminate it most for
/// `count`: those whose events exceed what `expected_rate` (from stable's same minute, or a
/// fixed rate) predicts by the most standard deviations, above [`OUTLIER_Z`]. The evidence to roll back is computed
/// on what is left, so that a burst of a few minutes (one bad instance, a dependency blip)
/// cannot roll a candidate back by itself, while a regression, present in every minute, still
/// does. Leaving data out only lowers the likelihood ratio under "no difference", so the
/// false-alarm bound of independent requests still holds; under bursts, it holds as long as
/// bursts spoil no more minutes than were left out (plus what the dispersion absorbs).
fn without_worst(
    c: &Minutes,
    count: Count<'_>,
    expected_rate: &dyn Fn(Timestamp) -> Option<f64>,
) -> Minutes {
    without_worst_up_to(c, count, expected_rate, burst_minutes(c.by_minute.len()))
}

/// [`without_worst`], leaving out at most `k` minutes.
fn without_worst_up_to(
    c: &Minutes,
    count: Count<'_>,
    expected_rate: &dyn Fn(Timestamp) -> Option<f64>,
    k: usize,
) -> Minutes {
    let mut scored: Vec<(f64, Timestamp)> = c
        .by_minute
        .iter()
        .filter_map(|(t, m)| {
            let (x, n) = count(m);
            let p = expected_rate(*t)?.clamp(1e-9, 1.0 - 1e-9);
            let z = (x - n * p) / (n * p * (1.0 - p)).max(1e-9).sqrt();
            (z > OUTLIER_Z).then_some((z, *t))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut kept = c.by_minute.clone();
    for (_, t) in scored.into_iter().take(k) {
        kept.remove(&t);
    }
    Minutes::of(kept).unwrap_or_default()
}

/// The dispersion the evidence without the worst minutes is divided by: the larger of the
/// whole window's and the trimmed window's. The minutes left out were chosen for being extreme,
/// so the X² of what is left underestimates how much the minutes of this window vary (dropping
/// the largest residuals biases it low): the whole window's estimate is the honest one, and the
/// trimmed one can only be larger when leaving minutes out changed the fitted rate.
fn trimmed_dispersion(whole: stats::Dispersion, trimmed: stats::Dispersion) -> stats::Dispersion {
    whole.max(trimmed)
}

/// [`without_worst`] for a comparison with stable: a minute's expected rate is the larger of
/// stable's in the same minute and stable's over the window (canary step), or stable's
/// baseline rate. Stable's own minute alone predicted nothing at low traffic: at 10 req/s a
/// revision sees a 5xx every minute or two, so stable's minute often had none, any candidate
/// 5xx in it scored as an outlier thousands of deviations out, and the minutes left out were
/// single errors instead of the burst (which then rolled healthy candidates back after long
/// holds). Stable's own minute still raises the prediction when both burst together (a shared
/// dependency), so a common-mode burst is not mistaken for the candidate's.
fn trimmed_for(c: &Minutes, r: &Reference, count: Count<'_>) -> Minutes {
    let rate = |m: &RevisionStats| {
        let (x, n) = count(m);
        (n > 0.0).then(|| x / n)
    };
    match r {
        Reference::Concurrent(s) => {
            let overall = rate(&s.total).unwrap_or(0.0);
            without_worst(c, count, &|t| {
                s.by_minute
                    .get(&t)
                    .and_then(rate)
                    .map(|minute| minute.max(overall))
            })
        }
        Reference::Baseline(s) => {
            let p = rate(&s.total);
            without_worst_up_to(c, count, &|_| p, baseline_outliers(c.by_minute.len()))
        }
    }
}

/// The regression size against `r`: as configured on a canary step; against the baseline of
/// earlier steps, squared (twice as large in logs), leaving room for the drift between then and
/// now (a daily curve, a ramp of load) that a comparison over the same minutes cancels.
fn sized_for(ratio: f64, r: &Reference) -> f64 {
    match r {
        Reference::Concurrent(_) => ratio,
        Reference::Baseline(_) => (ratio * ratio).min(1000.0),
    }
}

/// How one comparison with stable words each [`Reading`]. `{what}` and the comparison's own
/// names are filled in by the caller, `{ratio}` and `{e}` (the evidence the reading rests on, as
/// a parenthesis) by [`Wording::note`].
struct Wording {
    regressed: &'static str,
    below_floor: &'static str,
    confirmed: &'static str,
    not_informative: &'static str,
    leaning: &'static str,
    open: &'static str,
}

impl Wording {
    /// The note for `reading`: its wording with `words`, the regression `ratio` and the
    /// evidence filled in.
    fn note(
        &self,
        reading: Reading,
        words: &[(&str, &str)],
        ratio: f64,
        llr: f64,
        info: f64,
        b: &Bounds,
    ) -> String {
        let (wording, evidence) = match reading {
            Reading::Regressed => (self.regressed, format!("evidence {llr:.1} ≥ {:.1}", b.fail)),
            Reading::BelowFloor => (self.below_floor, format!("evidence {llr:.1}")),
            Reading::Confirmed => (
                self.confirmed,
                format!("evidence {:.1} ≥ {:.1}", -llr, b.comparisons_pass),
            ),
            Reading::NotInformative => (
                self.not_informative,
                format!("information {info:.1} < {:.1}", b.comparisons_pass),
            ),
            Reading::Leaning => (self.leaning, format!("evidence {llr:.1} ≥ {:.1}", b.lean)),
            Reading::Open => (
                self.open,
                format!(
                    "evidence {llr:.1}: passes at ≤ −{:.1}, rolls back at ≥ {:.1}",
                    b.comparisons_pass, b.fail
                ),
            ),
        };
        let ratio = format!("{ratio:.2}");
        let mut all = vec![("ratio", ratio.as_str()), ("e", evidence.as_str())];
        all.extend_from_slice(words);
        fill(wording, &all)
    }
}

/// `template` with each `{name}` replaced by its value in `words`, in one pass (a value is never
/// read as a template itself).
fn fill(template: &str, words: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let name = &after[..close];
            let value = words.iter().find(|(n, _)| *n == name)?.1;
            Some((value, close))
        });
        match value {
            Some((value, close)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

const ERRORS_VS_STABLE: Wording = Wording {
    regressed: "{what} is worse than stable ({e} for ×{ratio} over ×1)",
    below_floor: "{what}: worse than stable, but by less than the floor of {floor} ({e})",
    confirmed: "{what}: no ×{ratio} regression ({e})",
    not_informative: "{what}: {events} 5xx in all are too few to tell ×{ratio} from ×1 ({e}), the absolute limit decides",
    leaning: "{what} leans towards a ×{ratio} regression ({e}) on too few 5xx to settle it",
    open: "{what} is not yet told apart from a ×{ratio} regression ({e})",
};

const TAIL_VS_STABLE: Wording = Wording {
    regressed: "{what}: the candidate is slower ({e} for ×{ratio} slower over ×1)",
    below_floor: "{what}: slower than stable, but by less than the floor of {floor} ms ({e})",
    confirmed: "{what}: not ×{ratio} slower ({e})",
    not_informative: "{what}: too few slow requests to tell ×{ratio} slower from ×1 ({e}), the absolute limit decides",
    leaning: "{what} leans towards ×{ratio} slower ({e}) on too few slow requests to settle it",
    open: "{what} is not yet told apart from ×{ratio} slower ({e})",
};

const RANK_VS_STABLE: Wording = Wording {
    regressed: "latency shifted: {what} (rank test, {e} for ×{ratio} slower over ×1)",
    below_floor: "latency distribution: {what}, slower on average by {shift} ms, less than the floor of {floor} ms ({e})",
    confirmed: "latency distribution: {what}, not ×{ratio} slower ({e})",
    not_informative: "latency distribution: {what}, too few requests to tell ×{ratio} slower from ×1 ({e})",
    leaning: "latency distribution: {what} leans towards ×{ratio} slower ({e}) on too few requests to settle it",
    open: "latency distribution: {what}, not yet told apart from ×{ratio} slower ({e})",
};

/// A comparison with stable as a check.
fn compared(
    name: String,
    reading: Reading,
    note: String,
    values: BTreeMap<&'static str, f64>,
) -> Check {
    Check {
        name,
        outcome: reading.outcome(),
        reading: Some(reading.name()),
        note,
        values,
    }
}

/// One block of a comparison with stable: each revision's events (5xx, slow requests) and
/// exposure (requests, latency samples). A minute on canary steps; the totals against the
/// baseline.
#[derive(Clone, Copy, Debug)]
struct Stratum {
    xc: f64,
    nc: f64,
    xs: f64,
    ns: f64,
}

/// What a comparison counts in one revision's minute (or totals): `(events, exposure)`.
type Count<'a> = &'a dyn Fn(&RevisionStats) -> (f64, f64);

/// The strata of a comparison: the minutes both revisions served on a canary step (a minute only
/// one of them served says nothing about their ratio), the totals against a baseline.
fn strata(c: &Minutes, r: &Reference, count: Count<'_>) -> Vec<Stratum> {
    let pair = |a: &RevisionStats, b: &RevisionStats| {
        let ((xc, nc), (xs, ns)) = (count(a), count(b));
        (nc > 0.0 && ns > 0.0).then_some(Stratum { xc, nc, xs, ns })
    };
    match r {
        Reference::Concurrent(s) => c
            .by_minute
            .iter()
            .filter_map(|(t, cm)| pair(cm, s.by_minute.get(t)?))
            .collect(),
        Reference::Baseline(s) => pair(&c.total, &s.total).into_iter().collect(),
    }
}

/// Dispersion of one revision's per-minute counts around its own rate over the window.
fn own_dispersion(m: &Minutes, count: Count<'_>) -> Vec<(f64, f64, f64)> {
    let (x, n) = count(&m.total);
    let p = if n > 0.0 { x / n } else { 0.0 };
    m.by_minute
        .values()
        .map(|s| {
            let (x, n) = count(s);
            (x, n, p)
        })
        .collect()
}

/// Dispersion of a comparison, estimated around the fitted model (never around "no
/// difference", so a real regression does not inflate it): on a canary step, each minute's
/// candidate events against its share of that minute's events under one common fitted ratio;
/// against a baseline, each revision's minutes around its own rate (so drift inside the
/// baseline counts as noise), and never less than the candidate's own minutes show.
///
/// Why the candidate's own: against an hour's baseline the candidate's few minutes carry most
/// of the comparison's variance, and pooled with the baseline's many minutes their X² was
/// diluted: a 7-minute window at 100% with bursts in 4 of its minutes showed φ̂ ≈ 100 on its
/// own and 8 pooled with a calm baseline, and was rolled back. A regression that appears at
/// full load raises every minute alike, so its own minutes vary no more than independent
/// requests would (φ̂ = 1 in about 90% of windows): it loses nothing.
fn comparison_dispersion(c: &Minutes, r: &Reference, count: Count<'_>) -> stats::Dispersion {
    match r {
        Reference::Concurrent(_) => {
            let cells = strata(c, r, count);
            let ratio = fitted_ratio(&cells);
            stats::dispersion(
                cells
                    .iter()
                    .map(|s| (s.xc, s.xc + s.xs, stats::attribution(ratio, s.nc / s.ns))),
                1,
            )
        }
        Reference::Baseline(s) => {
            let own = own_dispersion(c, count);
            let candidate = stats::dispersion(own.iter().copied(), 1);
            let mut cells = own;
            cells.extend(own_dispersion(s, count));
            stats::dispersion(cells, 2).max(candidate)
        }
    }
}

/// The common ratio of event rates (candidate over stable) that gives the candidate exactly its
/// events across `cells`: Σ e·π(r, w) = Σ x_c, solved by bisection on ln r.
fn fitted_ratio(cells: &[Stratum]) -> f64 {
    let xc: f64 = cells.iter().map(|s| s.xc).sum();
    let expected = |r: f64| -> f64 {
        cells
            .iter()
            .map(|s| (s.xc + s.xs) * stats::attribution(r, s.nc / s.ns))
            .sum()
    };
    let (mut lo, mut hi) = (-20.0_f64, 20.0_f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if expected(mid.exp()) < xc {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (0.5 * (lo + hi)).exp()
}

/// The sequential test of a comparison that conditions on events (5xx, slow requests): under
/// "no difference" each event of a stratum lands on the candidate with the share its exposure
/// `w` (its requests over stable's) gives it, under the regression with the share an event rate
/// `rho` times stable's gives it. The evidence is summed over the strata and divided by the
/// dispersion (quasi-likelihood).
struct Attributed {
    /// The candidate's share of events if equal, and if regressed (over the totals).
    pi0: f64,
    pi1: f64,
    /// Evidence for the regression against "no difference", scaled by 1/φ̂.
    llr: f64,
    /// The evidence a true regression would produce on average, scaled by 1/φ̂.
    info: f64,
}

/// `rate` is the pooled event rate: a regression brings `rate·(n_c·rho + n_s)` events.
fn attributed(cells: &[Stratum], rho: f64, rate: f64, phi: f64) -> Attributed {
    let (mut llr, mut info) = (0.0, 0.0);
    let (mut nc, mut ns) = (0.0, 0.0);
    for s in cells {
        let w = s.nc / s.ns;
        let (pi0, pi1) = (stats::attribution(1.0, w), stats::attribution(rho, w));
        llr += s.xc * (pi1 / pi0).ln() + s.xs * ((1.0 - pi1) / (1.0 - pi0)).ln();
        info += rate * (s.nc * rho + s.ns) * stats::kl_bernoulli(pi1, pi0);
        nc += s.nc;
        ns += s.ns;
    }
    let w = if ns > 0.0 { nc / ns } else { 0.0 };
    Attributed {
        pi0: stats::attribution(1.0, w),
        pi1: stats::attribution(rho, w),
        llr: llr / phi,
        info: info / phi,
    }
}

fn dispersion_values(values: &mut BTreeMap<&'static str, f64>, d: stats::Dispersion) {
    values.extend([
        ("dispersion", d.phi),
        ("dispersion_pearson", d.pearson),
        ("dispersion_df", d.df),
    ]);
}

/// Mixture priors of the absolute limits' confidence sequences, worth `PRIOR_STRENGTH / limit`
/// trials: the fail side centred at 1.5× the limit, the pass side at half of it (fixed by the
/// limit, never by the data, so each is a valid confidence sequence at every look).
const PRIOR_STRENGTH: f64 = 10.0;

/// Weight of the likelihood ratio against "comfortably within" in the pass side's e-value (the
/// beta mixture has the rest): 3/4 costs a candidate like stable ln(4/3) = 0.29 of evidence,
/// one near the limit ln 4 = 1.39.
const PASS_WEIGHT: f64 = 0.75;

/// The two sides of an absolute limit on a rate, over effective counts (events and trials
/// divided by the dispersion).
///
/// * **Fail** when the lower bound of the (1 − α) confidence sequence (beta-binomial mixture,
///   prior centred at 1.5× the limit) is above `limit`.
/// * **Pass** when the e-value against "the rate is at the limit" reaches 1/β, the e-value
///   being a mixture of two ([`PASS_WEIGHT`]): the likelihood ratio of `good` (stable's own rate, clamped
///   to [limit/10, limit/2], as the sequential test had it) against the limit, and the
///   beta-binomial mixture with its prior centred at half the limit. Each is a martingale
///   with mean 1 at the limit, so their weighted average is too; the first settles a candidate
///   like stable almost as fast as the old test did, the second passes any rate clearly below
///   the limit (0.6× included) given enough data, where the first alone had a dead zone.
///
/// * **At the last look** ([`Bounds::last_look`]), a limit still open also fails when the
///   one-sided exact binomial test of "the rate is at most the limit" rejects at
///   [`Bounds::last_look_alpha`] (the counts rounded towards the limit). It is read once, at a
///   time the clock fixes, so no correction for repeated looks is needed.
struct LimitTest {
    e_fail: f64,
    e_pass: f64,
    lower: f64,
    upper: f64,
    outcome: Outcome,
    /// ln of the last look's p-value, when this was the last look and the limit was still open.
    ln_p_last_look: Option<f64>,
}

impl LimitTest {
    /// Whether the rollback came from the last look's test rather than the sequence.
    fn failed_at_last_look(&self) -> bool {
        self.outcome == Outcome::Fail && self.ln_p_last_look.is_some()
    }
}

/// The last look's test: ln P(Binomial(⌈n⌉, limit) ≥ ⌊x⌋), the effective counts rounded so
/// the p-value can only grow.
fn last_look_ln_p(x: f64, n: f64, limit: f64) -> f64 {
    stats::ln_binomial_upper_tail(x.max(0.0).floor() as u64, n.max(0.0).ceil() as u64, limit)
}

fn limit_test(x_fail: f64, x_pass: f64, n: f64, limit: f64, good: f64, b: &Bounds) -> LimitTest {
    let strength = PRIOR_STRENGTH / limit;
    let above = stats::BetaPrior::new((1.5 * limit).min((1.0 + limit) / 2.0), strength);
    let within = stats::BetaPrior::new(0.5 * limit, strength);
    let e_fail = stats::ln_mixture_evalue(x_fail, n, limit, above);
    let e_pass = {
        let sprt = stats::llr_bernoulli(x_pass, n, limit, good);
        let mixture = stats::ln_mixture_evalue(x_pass, n, limit, within);
        let top = sprt.max(mixture);
        top + (PASS_WEIGHT * (sprt - top).exp() + (1.0 - PASS_WEIGHT) * (mixture - top).exp()).ln()
    };
    let (lower, _) = stats::cs_bounds(x_fail, n, above, b.limits_fail);
    let (_, upper) = stats::cs_bounds(x_pass, n, within, b.limits_pass);
    let mut ln_p_last_look = None;
    let outcome = if lower > limit {
        Outcome::Fail
    } else if x_pass < limit * n && e_pass >= b.limits_pass {
        Outcome::Pass
    } else if b.last_look {
        let ln_p = last_look_ln_p(x_fail, n, limit);
        ln_p_last_look = Some(ln_p);
        if ln_p <= b.last_look_alpha.ln() {
            Outcome::Fail
        } else {
            Outcome::Inconclusive
        }
    } else {
        Outcome::Inconclusive
    };
    LimitTest {
        e_fail,
        e_pass,
        lower,
        upper,
        outcome,
        ln_p_last_look,
    }
}

/// The rate an absolute limit's minutes are scored against when the worst are left out of a
/// rollback: the limit itself; at the last look, the candidate's own rate over the whole hold
/// when that is higher. A burst stands out against either; a candidate steadily over the
/// limit (1.3×) has minutes that stand out only against the limit, and leaving those out cost
/// the last look its power on exactly the candidates it is for. Any rule is valid here: the
/// rollback needs the whole window to fail too.
fn outlier_rate(own: f64, limit: f64, b: &Bounds) -> f64 {
    if b.last_look { own.max(limit) } else { limit }
}

/// The "comfortably within" rate of an absolute limit's pass side: the reference's own rate
/// when it has enough data, clamped to [limit/10, limit/2]; limit/4 without one.
fn comfortably_within(reference: Option<f64>, limit: f64) -> f64 {
    match reference {
        Some(r) => r.clamp(limit / 10.0, limit / 2.0),
        None => limit / 4.0,
    }
}

fn errors_absolute(
    c: &Minutes,
    reference: Option<&RevisionStats>,
    policy: &Policy,
    b: &Bounds,
) -> Check {
    let limit = policy.max_error_rate;
    let t = &c.total;
    let (n, x) = (t.requests as f64, t.errors_5xx as f64);
    let rate = t.error_rate();
    let count: Count<'_> = &|s: &RevisionStats| (s.errors_5xx as f64, s.requests as f64);
    let d = stats::dispersion(own_dispersion(c, count), 1);
    let mut values = BTreeMap::from([
        ("requests", n),
        ("errors_5xx", x),
        ("rate", rate),
        ("limit", limit),
    ]);
    dispersion_values(&mut values, d);
    let what = format!(
        "5xx rate {} ({} of {})",
        pct(rate),
        t.errors_5xx,
        t.requests
    );
    let (outcome, note) = if limit <= 0.0 {
        if x > 0.0 {
            (Outcome::Fail, format!("{what} is above the limit 0%"))
        } else {
            (Outcome::Pass, format!("{what} is within the limit 0%"))
        }
    } else if limit >= 1.0 {
        (Outcome::Pass, format!("{what}: the limit is 100%"))
    } else {
        let (xe, ne) = (x / d.phi, n / d.phi);
        let good = comfortably_within(reference.map(RevisionStats::error_rate), limit);
        let mut lt = limit_test(xe, xe, ne, limit, good, b);
        // A rollback needs the limit broken without the candidate's worst minutes too.
        if lt.outcome == Outcome::Fail {
            let expected = outlier_rate(x / n, limit, b);
            let trimmed = without_worst(c, count, &|_| Some(expected));
            let dt = trimmed_dispersion(d, stats::dispersion(own_dispersion(&trimmed, count), 1));
            let t = &trimmed.total;
            let (xt, nt) = (t.errors_5xx as f64 / dt.phi, t.requests as f64 / dt.phi);
            let kept = limit_test(xt, xt, nt, limit, good, b);
            if kept.outcome != Outcome::Fail {
                lt.outcome = Outcome::Inconclusive;
            }
            values.insert("rate_low_without_worst_minutes", kept.lower);
        }
        values.extend([
            ("rate_low", lt.lower),
            ("rate_high", lt.upper),
            ("evidence_fail", lt.e_fail),
            ("evidence_pass", lt.e_pass),
        ]);
        if let Some(ln_p) = lt.ln_p_last_look {
            values.insert("last_look_p_value", ln_p.exp());
        }
        let note = limit_note(lt.outcome, &what, &pct(limit), ("", ""), &lt, d, b);
        (lt.outcome, note)
    };
    Check {
        name: "5xx".into(),
        outcome,
        reading: None,
        note,
        values,
    }
}

fn errors_relative(c: &Minutes, r: &Reference, policy: &Policy, b: &Bounds) -> Check {
    let s = &r.minutes().total;
    let ct = &c.total;
    let (nc, ns) = (ct.requests as f64, s.requests as f64);
    let (xc, xs) = (ct.errors_5xx as f64, s.errors_5xx as f64);
    let (rc, rs) = (ct.error_rate(), s.error_rate());
    let pooled = (xc + xs) / (nc + ns);
    let ratio = if pooled > 0.0 {
        policy
            .max_error_ratio
            .max(1.0 + policy.error_rate_floor / pooled)
            .min(1000.0)
    } else {
        policy.max_error_ratio
    };
    let ratio = sized_for(ratio, r);
    let count: Count<'_> = &|s: &RevisionStats| (s.errors_5xx as f64, s.requests as f64);
    let d = comparison_dispersion(c, r, count);
    let test = attributed(&strata(c, r, count), ratio, pooled, d.phi);
    let (pi0, pi1, llr, info) = (test.pi0, test.pi1, test.llr, test.info);
    let trimmed = trimmed_for(c, r, count);
    let d_fail = trimmed_dispersion(d, comparison_dispersion(&trimmed, r, count));
    let llr_fail = attributed(&strata(&trimmed, r, count), ratio, pooled, d_fail.phi).llr;
    let observed = if rs > 0.0 { rc / rs } else { f64::NAN };
    let reading = relative_reading(llr_fail, llr, info, rc - rs >= policy.error_rate_floor, b);
    let times = if observed.is_finite() {
        format!("×{observed:.2}")
    } else {
        "stable has none".to_string()
    };
    let whose = match r {
        Reference::Concurrent(_) => "stable's",
        Reference::Baseline(_) => "stable's baseline",
    };
    let what = format!(
        "5xx rate {} ({} of {}) vs {whose} {} ({} of {}, {times}{})",
        pct(rc),
        ct.errors_5xx,
        ct.requests,
        pct(rs),
        s.errors_5xx,
        s.requests,
        dispersed(d)
    );
    let events = format!("{:.0}", xc + xs);
    let floor = pct(policy.error_rate_floor);
    let note = ERRORS_VS_STABLE.note(
        reading,
        &[("what", &what), ("events", &events), ("floor", &floor)],
        ratio,
        shown(reading, llr_fail, llr),
        info,
        b,
    );
    let mut values = BTreeMap::from([
        ("candidate_rate", rc),
        ("stable_rate", rs),
        ("observed_ratio", observed),
        ("regression_ratio", ratio),
        ("floor", policy.error_rate_floor),
        ("candidate_share_if_equal", pi0),
        ("candidate_share_if_regressed", pi1),
        ("llr", llr),
        ("llr_without_worst_minutes", llr_fail),
        ("information", info),
    ]);
    dispersion_values(&mut values, d);
    compared("5xx vs stable".into(), reading, note, values)
}

/// ", dispersion ×φ" when the evidence was scaled down, else nothing.
fn dispersed(d: stats::Dispersion) -> String {
    if d.phi > 1.0 {
        format!(
            ", minutes vary ×{:.1} more than independent requests would",
            d.phi
        )
    } else {
        String::new()
    }
}

fn latency_absolute(
    c: &Minutes,
    reference: Option<&RevisionStats>,
    policy: &Policy,
    b: &Bounds,
) -> Check {
    let limit = policy.max_p99_ms;
    let h = &c.total.latency;
    let n = h.total() as f64;
    let tc = stats::tail_count(h, limit);
    let p99 = h.quantile(0.99).unwrap_or(0.0);
    // p99 ≤ limit ⟺ at most 1% of requests are slower than the limit.
    let tail = 0.01;
    let surely: Count<'_> = &|s: &RevisionStats| {
        (
            stats::tail_count(&s.latency, limit).surely as f64,
            s.latency.total() as f64,
        )
    };
    let possibly: Count<'_> = &|s: &RevisionStats| {
        (
            stats::tail_count(&s.latency, limit).possibly as f64,
            s.latency.total() as f64,
        )
    };
    let d = stats::dispersion(own_dispersion(c, surely), 1)
        .max(stats::dispersion(own_dispersion(c, possibly), 1));
    let good = comfortably_within(
        reference
            .map(|r| &r.latency)
            .filter(|h| h.total() > 0)
            .map(|h| stats::tail_count(h, limit).possibly as f64 / h.total() as f64),
        tail,
    );
    let lt = limit_test(
        tc.surely as f64 / d.phi,
        tc.possibly as f64 / d.phi,
        n / d.phi,
        tail,
        good,
        b,
    );
    let mut lt = lt;
    let mut kept_low = None;
    if lt.outcome == Outcome::Fail {
        let expected = outlier_rate(tc.surely as f64 / n, tail, b);
        let trimmed = without_worst(c, surely, &|_| Some(expected));
        let dt = trimmed_dispersion(d, stats::dispersion(own_dispersion(&trimmed, surely), 1));
        let (xt, nt) = surely(&trimmed.total);
        let kept = limit_test(xt / dt.phi, xt / dt.phi, nt / dt.phi, tail, good, b);
        if kept.outcome != Outcome::Fail {
            lt.outcome = Outcome::Inconclusive;
        }
        kept_low = Some(kept.lower);
    }
    let what = format!("p99 latency {p99:.0} ms");
    let bucket = match tc.straddling {
        Some((lo, hi, k)) => format!(
            "; the bucket [{lo:.0}, {hi:.0}) ms holding the limit has {k} requests, counted slower only to show it within"
        ),
        None => String::new(),
    };
    let detail = (
        format!(
            "{} of {n:.0} requests surely slower than {limit:.0} ms, ",
            tc.surely
        ),
        format!("{} of {n:.0} possibly slower, ", tc.possibly),
    );
    let mut note = limit_note(
        lt.outcome,
        &what,
        &format!("{limit:.0} ms"),
        (&detail.0, &detail.1),
        &lt,
        d,
        b,
    );
    note.push_str(&bucket);
    let mut values = BTreeMap::from([
        ("samples", n),
        ("p99_ms", p99),
        ("limit_ms", limit),
        ("surely_slower", tc.surely as f64),
        ("possibly_slower", tc.possibly as f64),
        ("share_slower_low", lt.lower),
        ("share_slower_high", lt.upper),
        ("evidence_fail", lt.e_fail),
        ("evidence_pass", lt.e_pass),
    ]);
    if let Some(low) = kept_low {
        values.insert("share_slower_low_without_worst_minutes", low);
    }
    if let Some(ln_p) = lt.ln_p_last_look {
        values.insert("last_look_p_value", ln_p.exp());
    }
    if let Some((lo, hi, k)) = tc.straddling {
        values.extend([
            ("straddling_bucket_low_ms", lo),
            ("straddling_bucket_high_ms", hi),
            ("straddling_bucket_requests", k as f64),
        ]);
    }
    dispersion_values(&mut values, d);
    Check {
        name: "p99".into(),
        outcome: lt.outcome,
        reading: None,
        note,
        values,
    }
}

/// The regression size a latency comparison must catch at latency `at_ms`: the configured ratio,
/// or more when the practical floor (in ms) is larger.
fn latency_ratio(policy: &Policy, at_ms: f64) -> f64 {
    let floor = if at_ms > 0.0 {
        1.0 + policy.latency_floor_ms / at_ms
    } else {
        1000.0
    };
    policy.max_latency_ratio.max(floor).min(1000.0)
}

/// Requests slower than bucket edge `t` and latency samples, in one revision's minute.
fn slower_than(t: f64) -> impl Fn(&RevisionStats) -> (f64, f64) {
    move |s: &RevisionStats| (stats::count_above(&s.latency, t), s.latency.total() as f64)
}

/// Percentile `q`: the share of each revision's requests slower than the regression size times
/// the pooled `q` quantile, at a bucket edge ([`tail_edge`]) so the counts are exact. Under "no
/// difference" those slow requests split like the traffic; under "the candidate is `ratio` times
/// slower" the candidate's share is what the stable histogram, slowed down by `ratio`, would put
/// above the same threshold. Counting above the slowed-down percentile rather than at it is what
/// lets a tail-only regression show: its slow requests are all far out, where a uniform
/// slow-down multiplies the share less than they do (docs/judgement.md, "Tail percentiles").
fn tail_relative(c: &Minutes, r: &Reference, q: f64, policy: &Policy, b: &Bounds) -> Check {
    let name = format!("p{} vs stable", policy::fmt_percentile(q));
    let (ch, sh) = (&c.total.latency, &r.minutes().total.latency);
    let Some(pooled_q) = stats::pooled(ch, sh).and_then(|p| p.quantile(q)) else {
        return skipped(&name, "no latency samples to compare");
    };
    let (nc, ns) = (ch.total() as f64, sh.total() as f64);
    let target = sized_for(latency_ratio(policy, pooled_q), r) * pooled_q;
    let t = tail_edge(&ch.bounds, pooled_q, target);
    let (xc, xs) = (stats::count_above(ch, t), stats::count_above(sh, t));
    let (qc, qs) = (ch.quantile(q).unwrap_or(0.0), sh.quantile(q).unwrap_or(0.0));
    let ratio = sized_for(latency_ratio(policy, t), r);
    let f0 = stats::fraction_above(sh, t);
    let f1 = stats::fraction_above(sh, t / ratio);
    let rho = if f0 > 0.0 { f1 / f0 } else { 50.0 }.clamp(1.1, 50.0);
    let pooled_tail = (xc + xs) / (nc + ns);
    let count = slower_than(t);
    let d = comparison_dispersion(c, r, &count);
    let cells = strata(c, r, &count);
    let test = attributed(&cells, rho, pooled_tail, d.phi);
    let if_equal = information_if_equal(&cells, rho, pooled_tail, d.phi);
    let (llr, info) = (test.llr, test.info.min(if_equal));
    let trimmed = trimmed_for(c, r, &count);
    let d_fail = trimmed_dispersion(d, comparison_dispersion(&trimmed, r, &count));
    let llr_fail = attributed(&strata(&trimmed, r, &count), rho, pooled_tail, d_fail.phi).llr;
    let reading = relative_reading(llr_fail, llr, info, qc - qs >= policy.latency_floor_ms, b);
    let p = policy::fmt_percentile(q);
    let whose = match r {
        Reference::Concurrent(_) => "stable's",
        Reference::Baseline(_) => "stable's baseline",
    };
    let what = format!(
        "p{p} latency {qc:.0} ms vs {whose} {qs:.0} ms ({} vs {} of requests slower than {t:.0} ms, the bucket edge nearest ×{:.2} the pooled p{p} {pooled_q:.0} ms{})",
        pct(xc / nc),
        pct(xs / ns),
        target / pooled_q,
        dispersed(d)
    );
    let floor = format!("{:.0}", policy.latency_floor_ms);
    let note = TAIL_VS_STABLE.note(
        reading,
        &[("what", &what), ("floor", &floor)],
        ratio,
        shown(reading, llr_fail, llr),
        info,
        b,
    );
    let mut values = BTreeMap::from([
        ("quantile", q),
        ("candidate_ms", qc),
        ("stable_ms", qs),
        ("pooled_quantile_ms", pooled_q),
        ("threshold_target_ms", target),
        ("threshold_ms", t),
        ("candidate_slower", xc),
        ("stable_slower", xs),
        ("candidate_samples", nc),
        ("stable_samples", ns),
        ("regression_ratio", ratio),
        ("tail_ratio_if_regressed", rho),
        ("llr", llr),
        ("llr_without_worst_minutes", llr_fail),
        ("information", info),
        ("information_if_regressed", test.info),
        ("information_if_equal", if_equal),
    ]);
    dispersion_values(&mut values, d);
    compared(name, reading, note, values)
}

/// The evidence for "no difference" a candidate no different from stable would bring on
/// average (scaled by 1/φ̂): `rate·(n_c + n_s)` events per stratum, each worth KL(π₀‖π₁). A tail
/// comparison is informative only when this too reaches ln(1/β): far in the tail against a
/// fixed baseline (at 100%), a handful of the baseline's slow requests bound what the
/// candidate can ever show, however many requests it serves, and a comparison that could
/// only fail or stay open would hold a healthy candidate until the maximum hold pauses it.
fn information_if_equal(cells: &[Stratum], rho: f64, rate: f64, phi: f64) -> f64 {
    let info: f64 = cells
        .iter()
        .map(|s| {
            let w = s.nc / s.ns;
            let (pi0, pi1) = (stats::attribution(1.0, w), stats::attribution(rho, w));
            rate * (s.nc + s.ns) * stats::kl_bernoulli(pi0, pi1)
        })
        .sum();
    info / phi
}

/// The threshold of a tail comparison: the bucket edge (of `bounds`) nearest to `target_ms` (the
/// pooled quantile `q_ms` slowed down by the regression size) on a log scale, among the edges
/// above `q_ms`; the highest edge when none is above it. It is a function of the pooled
/// quantile and the bucket layout alone, so it is the same whichever revision the slow requests
/// came from (Mood's argument), and being an edge, no request is counted on a guess of where
/// inside its bucket it lies.
fn tail_edge(bounds: &[f64], q_ms: f64, target_ms: f64) -> f64 {
    let distance = |e: f64| (e / target_ms).ln().abs();
    bounds
        .iter()
        .copied()
        .filter(|e| *e > q_ms)
        .min_by(|a, b| distance(*a).total_cmp(&distance(*b)))
        .or_else(|| bounds.last().copied())
        .unwrap_or(q_ms)
}

/// The whole distribution: Mann-Whitney's P(candidate slower than stable), tested sequentially
/// as a normal estimate, against the value a `ratio` times slower candidate would have (from the
/// spread of stable's own histogram). Its variance is inflated by the dispersion of the requests
/// slower than the pooled median (minute to minute), the same quasi-likelihood scaling.
fn rank_relative(c: &Minutes, r: &Reference, policy: &Policy, b: &Bounds) -> Check {
    let name = "rank vs stable";
    let (ch, s) = (&c.total.latency, &r.minutes().total.latency);
    let Some(rt) = stats::rank_test(ch, s) else {
        return skipped(name, "no latency samples to compare");
    };
    let q = |h: &Histogram, p: f64| h.quantile(p).unwrap_or(0.0).max(1e-3);
    let (q25, q50, q75) = (q(s, 0.25), q(s, 0.5), q(s, 0.75));
    let sigma = ((q75 / q25).ln() / 1.349).max(1e-3);
    let ratio = sized_for(latency_ratio(policy, q50), r);
    let delta = (stats::normal_cdf(ratio.ln() / (sigma * std::f64::consts::SQRT_2)) - 0.5)
        .clamp(0.01, 0.49);
    let median = stats::pooled(ch, s)
        .and_then(|p| p.quantile(0.5))
        .map(|m| stats::snap_to_edge(ch, m))
        .unwrap_or(q50);
    let count = slower_than(median);
    let d = comparison_dispersion(c, r, &count);
    let se = rt.se * d.phi.sqrt();
    let theta = rt.auc - 0.5;
    let llr = stats::llr_normal(theta, se, delta);
    let trimmed = trimmed_for(c, r, &count);
    let llr_fail = match stats::rank_test(&trimmed.total.latency, s) {
        Some(t) => {
            let d = comparison_dispersion(&trimmed, r, &count);
            stats::llr_normal(t.auc - 0.5, t.se * d.phi.sqrt(), delta)
        }
        None => f64::NEG_INFINITY,
    };
    let info = if se > 0.0 {
        delta * delta / (2.0 * se * se)
    } else {
        f64::INFINITY
    };
    let median_shift = q(ch, 0.5) - q50;
    // Practical floor: on average the candidate must be slower by at least the floor.
    let mean_shift = stats::mean_ms(ch).unwrap_or(0.0) - stats::mean_ms(s).unwrap_or(0.0);
    let reading = relative_reading(
        llr_fail,
        llr,
        info,
        mean_shift >= policy.latency_floor_ms,
        b,
    );
    let what = format!(
        "candidate slower than stable in {} of request pairs (median {:.0} vs {q50:.0} ms{})",
        pct(rt.auc),
        q(ch, 0.5),
        dispersed(d)
    );
    let shift = format!("{mean_shift:.1}");
    let floor = format!("{:.0}", policy.latency_floor_ms);
    let note = RANK_VS_STABLE.note(
        reading,
        &[("what", &what), ("shift", &shift), ("floor", &floor)],
        ratio,
        shown(reading, llr_fail, llr),
        info,
        b,
    );
    let mut values = BTreeMap::from([
        ("p_candidate_slower", rt.auc),
        ("standard_error", se),
        ("p_if_regressed", 0.5 + delta),
        ("regression_ratio", ratio),
        ("stable_log_spread", sigma),
        ("median_shift_ms", median_shift),
        ("mean_shift_ms", mean_shift),
        ("llr", llr),
        ("llr_without_worst_minutes", llr_fail),
        ("information", info),
    ]);
    dispersion_values(&mut values, d);
    compared(name.into(), reading, note, values)
}

/// The judge cutover had before comparing with stable: the candidate's point estimates against
/// the absolute limits. Kept as the baseline `lab simulate` measures against.
fn absolute_only(stats: Option<&RevisionStats>, window: Window, policy: &Policy) -> Judgement {
    let empty = RevisionStats::default();
    let s = stats.unwrap_or(&empty);
    let p99 = s.latency.quantile(0.99);
    let error_rate = s.error_rate();
    let verdict = if s.requests < policy.min_requests {
        Verdict::Inconclusive(format!(
            "{} requests, fewer than the {} needed to judge",
            s.requests, policy.min_requests
        ))
    } else if error_rate > policy.max_error_rate {
        Verdict::Fail(format!(
            "5xx rate {} ({} of {}) is above the limit {}",
            pct(error_rate),
            s.errors_5xx,
            s.requests,
            pct(policy.max_error_rate)
        ))
    } else {
        match p99 {
            Some(p) if p > policy.max_p99_ms => Verdict::Fail(format!(
                "p99 latency {p:.0} ms is above the limit {:.0} ms",
                policy.max_p99_ms
            )),
            Some(_) => Verdict::Pass,
            None => Verdict::Inconclusive("no latency data for the candidate yet".into()),
        }
    };
    Judgement {
        window,
        requests: s.requests,
        errors_5xx: s.errors_5xx,
        error_rate,
        p99_ms: p99,
        min_requests: policy.min_requests,
        max_error_rate: policy.max_error_rate,
        max_p99_ms: policy.max_p99_ms,
        verdict,
        statistics: None,
    }
}

impl Judgement {
    /// One line for people: the numbers behind the verdict.
    pub fn summary(&self) -> String {
        let ms = |p: Option<f64>| {
            p.map(|p| format!("{p:.0} ms"))
                .unwrap_or_else(|| "n/a".into())
        };
        let mut out = format!(
            "{} requests, 5xx {} (limit {}), p99 {} (limit {:.0} ms)",
            self.requests,
            pct(self.error_rate),
            pct(self.max_error_rate),
            ms(self.p99_ms),
            self.max_p99_ms
        );
        if let Some(s) = &self.statistics {
            match &s.stable {
                Some(st) if s.compared_with_stable => out.push_str(&format!(
                    "; stable {} requests, 5xx {}, p99 {}",
                    st.requests,
                    pct(st.error_rate),
                    ms(st.p99_ms)
                )),
                _ => out.push_str("; no stable traffic to compare with"),
            }
        }
        out
    }

    /// The statistics as JSON, for the decision record.
    pub fn statistics_json(&self) -> Option<serde_json::Value> {
        self.statistics
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
    }
}

/// A ratio as a percentage with sensible precision.
pub fn pct(r: f64) -> String {
    let p = r * 100.0;
    if !p.is_finite() {
        "n/a".into()
    } else if p == 0.0 || p >= 10.0 {
        format!("{p:.0}%")
    } else if p >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}

pub mod window;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
