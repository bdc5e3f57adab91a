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

use super::evidence::{Histogram, RevisionStats, Window};

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
}

impl Bounds {
    fn of(policy: &Policy, role: StepRole) -> Bounds {
        let checks = (4 + policy.latency_percentiles.len()) * policy.steps.len().max(1);
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
        }
    }
}

/// Judges a step: the candidate's stats against the limits and against the stable revision's
/// stats over the same `window`. `None` stats mean that revision served nothing in the window.
/// `percent` is the candidate's current step.
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
    let c = candidate.unwrap_or(&empty);
    let role = StepRole::of(policy, percent);
    let bounds = Bounds::of(policy, role);
    let stable = stable.filter(|s| s.requests > 0 || s.latency.total() > 0);
    let compare = role != StepRole::Final && stable.is_some_and(|s| s.requests > 0);
    let mut stats = Statistics {
        method: "sequential",
        step_percent: percent,
        role,
        candidate: Sample::of(c),
        stable: stable.map(Sample::of),
        compared_with_stable: compare,
        alpha_per_check: bounds.alpha,
        fail_at: bounds.fail,
        limits_pass_at: bounds.limits_pass,
        comparisons_pass_at: bounds.comparisons_pass,
        checks: Vec::new(),
    };
    let mut j = Judgement {
        window,
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
        j.verdict = Verdict::Inconclusive(format!(
            "{} requests, fewer than the {} needed to judge",
            c.requests, policy.min_requests
        ));
        j.statistics = Some(stats);
        return j;
    }
    // The stable revision is the reference for "comfortably within the limit" when it has
    // enough data of its own (also at 100%, where it no longer serves but may still show).
    let reference = stable.filter(|s| s.requests >= policy.min_requests.max(1));
    let no_stable = if role == StepRole::Final {
        "the candidate serves 100%, there is no stable traffic to compare with: judged on the absolute limits only"
    } else {
        "the stable revision served no requests in the window: judged on the absolute limits only"
    };

    let checks = &mut stats.checks;
    checks.push(errors_absolute(c, reference, policy, &bounds));
    match stable.filter(|_| compare) {
        Some(s) => checks.push(errors_relative(c, s, policy, &bounds)),
        None => checks.push(skipped("5xx vs stable", no_stable)),
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
        checks.push(latency_absolute(c, reference, policy, &bounds));
        let stable_latency = stable
            .filter(|_| compare)
            .map(|s| &s.latency)
            .filter(|h| h.total() > 0);
        match stable_latency {
            Some(h) if h.bounds == c.latency.bounds => {
                for &q in &policy.latency_percentiles {
                    checks.push(tail_relative(&c.latency, h, q, policy, &bounds));
                }
                checks.push(rank_relative(&c.latency, h, policy, &bounds));
            }
            Some(_) => checks.push(skipped(
                "latency vs stable",
                "the two revisions report latency in different bucket layouts: compared with the absolute limit only",
            )),
            None if compare => checks.push(skipped(
                "latency vs stable",
                "the stable revision reported no latency in the window: compared with the absolute limit only",
            )),
            None => checks.push(skipped("latency vs stable", no_stable)),
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

/// An absolute limit: fail on evidence of "above" against "at"; pass on evidence of
/// "comfortably within" against "at".
fn absolute_outcome(llr_fail: f64, llr_pass: f64, b: &Bounds) -> Outcome {
    if llr_fail >= b.fail {
        Outcome::Fail
    } else if llr_pass >= b.limits_pass {
        Outcome::Pass
    } else {
        Outcome::Inconclusive
    }
}

/// The note of an absolute limit's check: `what` against `limit`, with `detail` (what the fail
/// and the open outcome say before their evidence) and the two likelihood ratios.
fn limit_note(
    outcome: Outcome,
    what: &str,
    limit: &str,
    detail: (&str, &str),
    (llr_fail, llr_pass): (f64, f64),
    b: &Bounds,
) -> String {
    match outcome {
        Outcome::Fail => format!(
            "{what} is above the limit {limit} ({}evidence {llr_fail:.1} ≥ {:.1})",
            detail.0, b.fail
        ),
        Outcome::Pass => format!(
            "{what} is within the limit {limit} (evidence {llr_pass:.1} ≥ {:.1})",
            b.limits_pass
        ),
        _ => format!(
            "{what} is not yet shown to be within the limit {limit} ({}evidence {llr_pass:.1}, {:.1} needed)",
            detail.1, b.limits_pass
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
/// "no different", `info` the evidence a true regression would have produced on average.
fn relative_reading(llr: f64, info: f64, practical: bool, b: &Bounds) -> Reading {
    if llr >= b.fail {
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

/// The sequential test of a comparison that conditions on events (5xx, slow requests): under
/// "no difference" each event lands on the candidate with the share its exposure `w` (its
/// requests over stable's) gives it, under the regression with the share an event rate `rho`
/// times stable's gives it.
struct Attributed {
    /// The candidate's share of events if equal, and if regressed.
    pi0: f64,
    pi1: f64,
    /// Evidence for the regression against "no difference".
    llr: f64,
    /// The evidence a true regression would produce on average.
    info: f64,
}

/// `xc` and `xs` events on candidate and stable; `events_if_regressed` is how many events the
/// regression would bring in all.
fn attributed(xc: f64, xs: f64, w: f64, rho: f64, events_if_regressed: f64) -> Attributed {
    let (pi0, pi1) = (stats::attribution(1.0, w), stats::attribution(rho, w));
    Attributed {
        pi0,
        pi1,
        llr: xc * (pi1 / pi0).ln() + xs * ((1.0 - pi1) / (1.0 - pi0)).ln(),
        info: events_if_regressed * stats::kl_bernoulli(pi1, pi0),
    }
}

fn errors_absolute(
    c: &RevisionStats,
    reference: Option<&RevisionStats>,
    policy: &Policy,
    b: &Bounds,
) -> Check {
    let limit = policy.max_error_rate;
    let (n, x) = (c.requests as f64, c.errors_5xx as f64);
    let rate = c.error_rate();
    let (lo, hi) = stats::wilson95(x, n);
    let mut values = BTreeMap::from([
        ("requests", n),
        ("errors_5xx", x),
        ("rate", rate),
        ("rate_ci95_low", lo),
        ("rate_ci95_high", hi),
        ("limit", limit),
    ]);
    let what = format!(
        "5xx rate {} ({} of {})",
        pct(rate),
        c.errors_5xx,
        c.requests
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
        let above = (2.0 * limit).min((1.0 + limit) / 2.0);
        let good = match reference {
            Some(s) => s.error_rate().clamp(limit / 10.0, limit / 2.0),
            None => limit / 4.0,
        };
        let llr_fail = stats::llr_bernoulli(x, n, limit, above);
        let llr_pass = stats::llr_bernoulli(x, n, limit, good);
        values.extend([
            ("fail_alternative", above),
            ("pass_alternative", good),
            ("llr_fail", llr_fail),
            ("llr_pass", llr_pass),
        ]);
        let outcome = absolute_outcome(llr_fail, llr_pass, b);
        let note = limit_note(
            outcome,
            &what,
            &pct(limit),
            ("", ""),
            (llr_fail, llr_pass),
            b,
        );
        (outcome, note)
    };
    Check {
        name: "5xx".into(),
        outcome,
        reading: None,
        note,
        values,
    }
}

fn errors_relative(c: &RevisionStats, s: &RevisionStats, policy: &Policy, b: &Bounds) -> Check {
    let (nc, ns) = (c.requests as f64, s.requests as f64);
    let (xc, xs) = (c.errors_5xx as f64, s.errors_5xx as f64);
    let (rc, rs) = (c.error_rate(), s.error_rate());
    let w = nc / ns;
    let pooled = (xc + xs) / (nc + ns);
    let ratio = if pooled > 0.0 {
        policy
            .max_error_ratio
            .max(1.0 + policy.error_rate_floor / pooled)
            .min(1000.0)
    } else {
        policy.max_error_ratio
    };
    let test = attributed(xc, xs, w, ratio, pooled * (nc * ratio + ns));
    let (pi0, pi1, llr, info) = (test.pi0, test.pi1, test.llr, test.info);
    let observed = if rs > 0.0 { rc / rs } else { f64::NAN };
    let reading = relative_reading(llr, info, rc - rs >= policy.error_rate_floor, b);
    let times = if observed.is_finite() {
        format!("×{observed:.2}")
    } else {
        "stable has none".to_string()
    };
    let what = format!(
        "5xx rate {} ({} of {}) vs stable's {} ({} of {}, {times})",
        pct(rc),
        c.errors_5xx,
        c.requests,
        pct(rs),
        s.errors_5xx,
        s.requests
    );
    let events = format!("{:.0}", xc + xs);
    let floor = pct(policy.error_rate_floor);
    let note = ERRORS_VS_STABLE.note(
        reading,
        &[("what", &what), ("events", &events), ("floor", &floor)],
        ratio,
        llr,
        info,
        b,
    );
    compared(
        "5xx vs stable".into(),
        reading,
        note,
        BTreeMap::from([
            ("candidate_rate", rc),
            ("stable_rate", rs),
            ("observed_ratio", observed),
            ("regression_ratio", ratio),
            ("floor", policy.error_rate_floor),
            ("candidate_share_if_equal", pi0),
            ("candidate_share_if_regressed", pi1),
            ("llr", llr),
            ("information", info),
        ]),
    )
}

fn latency_absolute(
    c: &RevisionStats,
    reference: Option<&RevisionStats>,
    policy: &Policy,
    b: &Bounds,
) -> Check {
    let limit = policy.max_p99_ms;
    let h = &c.latency;
    let n = h.total() as f64;
    let x = stats::count_above(h, limit);
    let share = x / n;
    let p99 = h.quantile(0.99).unwrap_or(0.0);
    // p99 ≤ limit ⟺ at most 1% of requests are slower than the limit.
    let tail = 0.01;
    let good = match reference.map(|s| &s.latency).filter(|h| h.total() > 0) {
        Some(s) => stats::fraction_above(s, limit).clamp(tail / 10.0, tail / 2.0),
        None => tail / 4.0,
    };
    let llr_fail = stats::llr_bernoulli(x, n, tail, 2.0 * tail);
    let llr_pass = stats::llr_bernoulli(x, n, tail, good);
    let outcome = absolute_outcome(llr_fail, llr_pass, b);
    let what = format!("p99 latency {p99:.0} ms");
    let detail = (
        format!("{} of requests slower than {limit:.0} ms, ", pct(share)),
        format!("{x:.0} of {n:.0} slower, "),
    );
    let note = limit_note(
        outcome,
        &what,
        &format!("{limit:.0} ms"),
        (&detail.0, &detail.1),
        (llr_fail, llr_pass),
        b,
    );
    Check {
        name: "p99".into(),
        outcome,
        reading: None,
        note,
        values: BTreeMap::from([
            ("samples", n),
            ("p99_ms", p99),
            ("limit_ms", limit),
            ("slower_than_limit", x),
            ("share_slower", share),
            ("fail_alternative", 2.0 * tail),
            ("pass_alternative", good),
            ("llr_fail", llr_fail),
            ("llr_pass", llr_pass),
        ]),
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

/// Percentile `q`: the share of each revision's requests slower than the pooled `q` quantile.
/// Under "no difference" those slow requests split like the traffic; under "the candidate is
/// `ratio` times slower" the candidate's share is what the stable histogram, slowed down by
/// `ratio`, would put above the same threshold.
fn tail_relative(c: &Histogram, s: &Histogram, q: f64, policy: &Policy, b: &Bounds) -> Check {
    let name = format!("p{} vs stable", policy::fmt_percentile(q));
    let Some(t) = stats::pooled(c, s).and_then(|p| p.quantile(q)) else {
        return skipped(&name, "no latency samples to compare");
    };
    let (nc, ns) = (c.total() as f64, s.total() as f64);
    let (xc, xs) = (stats::count_above(c, t), stats::count_above(s, t));
    let (qc, qs) = (c.quantile(q).unwrap_or(0.0), s.quantile(q).unwrap_or(0.0));
    let ratio = latency_ratio(policy, t);
    let f0 = stats::fraction_above(s, t);
    let f1 = stats::fraction_above(s, t / ratio);
    let rho = if f0 > 0.0 { f1 / f0 } else { 50.0 }.clamp(1.1, 50.0);
    let pooled_tail = (xc + xs) / (nc + ns);
    let test = attributed(xc, xs, nc / ns, rho, pooled_tail * (nc * rho + ns));
    let (llr, info) = (test.llr, test.info);
    let reading = relative_reading(llr, info, qc - qs >= policy.latency_floor_ms, b);
    let p = policy::fmt_percentile(q);
    let what = format!(
        "p{p} latency {qc:.0} ms vs stable's {qs:.0} ms ({} vs {} of requests slower than {t:.0} ms)",
        pct(xc / nc),
        pct(xs / ns)
    );
    let floor = format!("{:.0}", policy.latency_floor_ms);
    let note = TAIL_VS_STABLE.note(
        reading,
        &[("what", &what), ("floor", &floor)],
        ratio,
        llr,
        info,
        b,
    );
    compared(
        name,
        reading,
        note,
        BTreeMap::from([
            ("quantile", q),
            ("candidate_ms", qc),
            ("stable_ms", qs),
            ("threshold_ms", t),
            ("candidate_slower", xc),
            ("stable_slower", xs),
            ("candidate_samples", nc),
            ("stable_samples", ns),
            ("regression_ratio", ratio),
            ("tail_ratio_if_regressed", rho),
            ("llr", llr),
            ("information", info),
        ]),
    )
}

/// The whole distribution: Mann-Whitney's P(candidate slower than stable), tested sequentially
/// as a normal estimate, against the value a `ratio` times slower candidate would have (from the
/// spread of stable's own histogram).
fn rank_relative(c: &Histogram, s: &Histogram, policy: &Policy, b: &Bounds) -> Check {
    let name = "rank vs stable";
    let Some(rt) = stats::rank_test(c, s) else {
        return skipped(name, "no latency samples to compare");
    };
    let q = |h: &Histogram, p: f64| h.quantile(p).unwrap_or(0.0).max(1e-3);
    let (q25, q50, q75) = (q(s, 0.25), q(s, 0.5), q(s, 0.75));
    let sigma = ((q75 / q25).ln() / 1.349).max(1e-3);
    let ratio = latency_ratio(policy, q50);
    let delta = (stats::normal_cdf(ratio.ln() / (sigma * std::f64::consts::SQRT_2)) - 0.5)
        .clamp(0.01, 0.49);
    let theta = rt.auc - 0.5;
    let llr = stats::llr_normal(theta, rt.se, delta);
    let info = if rt.se > 0.0 {
        delta * delta / (2.0 * rt.se * rt.se)
    } else {
        f64::INFINITY
    };
    let median_shift = q(c, 0.5) - q50;
    // Practical floor: on average the candidate must be slower by at least the floor.
    let mean_shift = stats::mean_ms(c).unwrap_or(0.0) - stats::mean_ms(s).unwrap_or(0.0);
    let reading = relative_reading(llr, info, mean_shift >= policy.latency_floor_ms, b);
    let what = format!(
        "candidate slower than stable in {} of request pairs (median {:.0} vs {q50:.0} ms)",
        pct(rt.auc),
        q(c, 0.5)
    );
    let shift = format!("{mean_shift:.1}");
    let floor = format!("{:.0}", policy.latency_floor_ms);
    let note = RANK_VS_STABLE.note(
        reading,
        &[("what", &what), ("shift", &shift), ("floor", &floor)],
        ratio,
        llr,
        info,
        b,
    );
    compared(
        name.into(),
        reading,
        note,
        BTreeMap::from([
            ("p_candidate_slower", rt.auc),
            ("standard_error", rt.se),
            ("p_if_regressed", 0.5 + delta),
            ("regression_ratio", ratio),
            ("stable_log_spread", sigma),
            ("median_shift_ms", median_shift),
            ("mean_shift_ms", mean_shift),
            ("llr", llr),
            ("information", info),
        ]),
    )
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

#[cfg(test)]
mod tests;
