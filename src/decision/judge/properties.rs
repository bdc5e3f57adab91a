//! Property tests of the judge's new bounds: the confidence sequences of the absolute limits
//! cover the true rate at every look, the bucket rule never counts a straddling bucket toward a
//! failure, the completeness rule never admits a minute a late series lacks, and the dispersion
//! estimate is about 1 on independent requests and above 1 on bursts.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::window::{self, Step};
use super::*;
use crate::decision::evidence::{self, Point, Series};

/// Events in `n` independent trials at rate `p`.
fn binomial(rng: &mut fastrand::Rng, n: u64, p: f64) -> u64 {
    (0..n).filter(|_| rng.f64() < p).count() as u64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Looked at every 250 requests up to 25,000, each confidence sequence of an absolute limit
    /// (the fail side's prior above the limit, the pass side's below it) excludes the true rate
    /// at some look in at most α of runs, whatever the true rate is relative to the limit.
    #[test]
    fn confidence_sequences_cover_the_true_rate_at_every_look(
        limit in prop::sample::select(vec![0.005, 0.01, 0.02]),
        relative in 0.3f64..2.0,
        seed in 0u64..1_000_000,
    ) {
        let alpha = 0.05;
        let threshold = (1.0_f64 / alpha).ln();
        let p = limit * relative;
        let strength = PRIOR_STRENGTH / limit;
        let priors = [
            stats::BetaPrior::new(1.5 * limit, strength),
            stats::BetaPrior::new(0.5 * limit, strength),
        ];
        let mut rng = fastrand::Rng::with_seed(seed);
        let runs = 400;
        let mut missed = [0u32; 2];
        for _ in 0..runs {
            let (mut x, mut n) = (0u64, 0u64);
            let mut out = [false; 2];
            for _ in 0..100 {
                x += binomial(&mut rng, 250, p);
                n += 250;
                for (i, prior) in priors.iter().enumerate() {
                    // The true rate is outside the sequence exactly when its e-value reached 1/α.
                    out[i] |= stats::ln_mixture_evalue(x as f64, n as f64, p, *prior) >= threshold;
                }
            }
            for i in 0..2 {
                missed[i] += u32::from(out[i]);
            }
        }
        // α of 400 runs is 20; three binomial standard deviations above it is 33.
        for m in missed {
            prop_assert!(m <= 33, "true rate {p} left the sequence in {m} of {runs} runs");
        }
    }

    /// The bounds `cs_bounds` reports are the sequence: a rate inside them has an e-value below
    /// the threshold, just outside them at or above it.
    #[test]
    fn reported_bounds_are_the_edges_of_the_sequence(
        x in 0u32..200,
        extra in 100u32..50_000,
        mean in 0.001f64..0.05,
    ) {
        let (x, n) = (f64::from(x), f64::from(x + extra));
        let prior = stats::BetaPrior::new(mean, 10.0 / mean);
        let t = (1.0_f64 / 0.001).ln();
        let (lo, hi) = stats::cs_bounds(x, n, prior, t);
        prop_assert!(lo <= x / n && x / n <= hi);
        let e = |p: f64| stats::ln_mixture_evalue(x, n, p, prior);
        prop_assert!(e((lo + hi) / 2.0) < t);
        if lo > 1e-9 {
            prop_assert!(e(lo * 0.999) >= t - 1e-6, "below the lower bound");
        }
        if hi < 1.0 - 1e-9 {
            prop_assert!(e(hi * 1.001) >= t - 1e-6, "above the upper bound");
        }
    }

    /// Requests in the bucket that holds the p99 limit never count toward failing it: however
    /// many there are, the check does not fail on them; they do count against passing.
    #[test]
    fn the_bucket_rule_never_counts_a_straddling_bucket_toward_fail(
        counts in prop::collection::vec(0u64..5000, 6),
        limit in 1.0f64..2000.0,
        straddling in 0u64..1_000_000,
    ) {
        let bounds = vec![10.0, 50.0, 200.0, 800.0, 1500.0];
        let mut counts = counts;
        let h = evidence::hist(&bounds, &counts);
        let tc = stats::tail_count(&h, limit);
        let at_or_above: u64 = counts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i > 0 && bounds[i - 1] >= limit)
            .map(|(_, c)| *c)
            .sum();
        prop_assert_eq!(tc.surely, at_or_above);
        prop_assert_eq!(tc.possibly, tc.surely + tc.straddling.map_or(0, |s| s.2));
        // Pile requests into the straddling bucket only: the check never fails on them.
        if let Some(i) = (0..counts.len()).find(|&i| {
            let lo = if i == 0 { 0.0 } else { bounds[i - 1] };
            let hi = bounds.get(i).copied().unwrap_or(f64::INFINITY);
            lo < limit && limit < hi
        }) {
            counts.iter_mut().for_each(|c| *c = 0);
            counts[i] = straddling + 200;
            let c = RevisionStats {
                requests: straddling + 200,
                errors_5xx: 0,
                latency: evidence::hist(&bounds, &counts),
            };
            let policy = Policy { max_p99_ms: limit, ..Policy::default() };
            let j = judge(Some(&c), None, tests_window(), 100, &policy);
            let p99 = j.statistics.as_ref().unwrap().checks.iter().find(|c| c.name == "p99").unwrap();
            prop_assert_ne!(p99.outcome, Outcome::Fail, "{}", p99.note);
            prop_assert_ne!(p99.outcome, Outcome::Pass, "{}", p99.note);
        }
    }

    /// A revision whose newest points have not landed holds back every later minute until the
    /// data wait has passed: no admitted minute is one the late revision has not written past,
    /// unless it ended at least the wait ago.
    #[test]
    fn completeness_never_admits_a_minute_a_late_series_lacks(
        minutes in 6i64..30,
        late in 1i64..5,
        late_is_stable in any::<bool>(),
        extra_wait in 0i64..6,
    ) {
        let t = |m: i64| Timestamp::from_second(1_800_000_000 + 60 * m).unwrap();
        let policy = Policy::default();
        let point = |n| Point { count: n, latency: evidence::hist(&[100.0], &[n, 0]) };
        let series = |rev: &str, upto: i64| Series {
            revision: rev.into(),
            class: "2xx".into(),
            points: (1..=upto).map(|m| (t(m), point(100))).collect::<BTreeMap<_, _>>(),
        };
        let (c_upto, s_upto) = if late_is_stable { (minutes, minutes - late) } else { (minutes - late, minutes) };
        let stats = ServiceStats {
            window: Window { start: t(0), end: t(minutes) },
            series: vec![series("cand", c_upto), series("stab", s_upto)],
        };
        // Now: the window's end plus the metrics delay, plus some more minutes.
        let now = t(minutes) + policy.metrics_delay + SignedDuration::from_mins(extra_wait);
        let step = Step { candidate: "cand", stable: "stab", percent: 10, since: t(0), now, last_look: false };
        let input = window::gather(&stats, &step, &policy).unwrap();
        let newest_late = t(c_upto.min(s_upto));
        let waited = now - policy.data_wait;
        for m in input.candidate.by_minute.keys() {
            prop_assert!(*m <= newest_late || *m <= waited, "minute {m} admitted, late revision's newest {newest_late}, waited until {waited}");
        }
        let coverage = input.coverage.unwrap();
        let admitted = coverage.minutes as i64;
        prop_assert!(coverage.held_back as i64 + admitted >= c_upto.min(s_upto));
    }
}

fn tests_window() -> Window {
    Window {
        start: Timestamp::from_second(0).unwrap(),
        end: Timestamp::from_second(300).unwrap(),
    }
}

/// Minutes of a candidate and a stable revision at 10% / 90% of `rps`, both at 5xx rate `rate`;
/// `burst` extra 5xx land on the candidate in one minute of every five.
fn minutes_pair(
    rng: &mut fastrand::Rng,
    rps: f64,
    rate: f64,
    burst: u64,
    count: i64,
) -> (Minutes, Minutes) {
    let t = |m: i64| Timestamp::from_second(60 * m).unwrap();
    let mut c = BTreeMap::new();
    let mut s = BTreeMap::new();
    for m in 1..=count {
        let (nc, ns) = ((rps * 6.0) as u64, (rps * 54.0) as u64);
        let extra = if m % 5 == 3 { burst } else { 0 };
        let minute = |n: u64, x: u64| RevisionStats {
            requests: n,
            errors_5xx: x.min(n),
            latency: Histogram::default(),
        };
        c.insert(t(m), minute(nc, binomial(rng, nc, rate) + extra));
        s.insert(t(m), minute(ns, binomial(rng, ns, rate)));
    }
    (Minutes::of(c).unwrap(), Minutes::of(s).unwrap())
}

/// Pearson's dispersion of the 5xx comparison, before it is floored at 1, is about 1 on
/// independent requests (its average over many windows) and well above 1 when the candidate's
/// 5xx come partly in bursts; the absolute limit's dispersion too.
#[test]
fn dispersion_is_about_one_on_independent_requests_and_above_one_on_bursts() {
    let mut rng = fastrand::Rng::with_seed(7);
    let count: Count<'_> = &|s: &RevisionStats| (s.errors_5xx as f64, s.requests as f64);
    let raw = |d: stats::Dispersion| d.pearson / d.df;
    for rps in [100.0, 1000.0] {
        let (mut calm, mut calm_own, mut bursty, mut bursty_own) = (0.0, 0.0, 0.0, 0.0);
        let windows = 300;
        for _ in 0..windows {
            let (c, s) = minutes_pair(&mut rng, rps, 0.005, 0, 10);
            calm += raw(comparison_dispersion(&c, &Reference::Concurrent(s), count));
            calm_own += raw(stats::dispersion(own_dispersion(&c, count), 1));
            let burst = (rps * 6.0 * 0.005 * 3.0) as u64;
            let (c, s) = minutes_pair(&mut rng, rps, 0.005, burst, 10);
            bursty += raw(comparison_dispersion(&c, &Reference::Concurrent(s), count));
            bursty_own += raw(stats::dispersion(own_dispersion(&c, count), 1));
        }
        let n = f64::from(windows);
        let (calm, calm_own, bursty, bursty_own) =
            (calm / n, calm_own / n, bursty / n, bursty_own / n);
        assert!(
            (0.85..1.15).contains(&calm),
            "{rps} rps: independent 5xx, X²/df averages {calm}"
        );
        assert!(
            (0.85..1.15).contains(&calm_own),
            "{rps} rps: own minutes, X²/df averages {calm_own}"
        );
        assert!(
            bursty > 2.0,
            "{rps} rps: bursty 5xx, X²/df averages {bursty}"
        );
        assert!(
            bursty_own > 2.0,
            "{rps} rps: own minutes with bursts, X²/df averages {bursty_own}"
        );
    }
}

/// Bounds of an absolute limit at level `alpha` per check, as [`Bounds::of`] splits it between
/// the confidence sequence and the last look.
fn limit_bounds(alpha: f64, last_look: bool) -> Bounds {
    Bounds {
        alpha,
        fail: (1.0 / alpha).ln(),
        limits_pass: (1.0_f64 / 0.01).ln(),
        comparisons_pass: (1.0_f64 / 0.01).ln(),
        lean: 4.0_f64.ln(),
        limits_fail: (1.0 / (alpha * (1.0 - LAST_LOOK_SHARE))).ln(),
        last_look_alpha: alpha * LAST_LOOK_SHARE,
        last_look,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    /// A step at exactly the limit, looked at every 5 minutes for an hour (as a step held to its
    /// maximum hold is) and then once more at its last look: the confidence sequence at every
    /// look and the last look's fixed-sample test together roll it back in at most α of runs.
    /// And a rate 1.3× the limit over the same hour is rolled back far more often at the last
    /// look than by the sequence alone (the point of the last look).
    #[test]
    fn the_last_look_adds_power_and_keeps_the_false_alarm_rate(
        limit in prop::sample::select(vec![0.005, 0.01]),
        per_minute in prop::sample::select(vec![100u64, 200]),
        seed in 0u64..1_000_000,
    ) {
        let alpha = 0.05;
        let mut rng = fastrand::Rng::with_seed(seed);
        let runs = 200;
        // Rolled back: at the limit (any look), and 1.3× over it (sequence only, with the last look).
        let (mut at_limit, mut over_seq, mut over_last) = (0u32, 0u32, 0u32);
        for _ in 0..runs {
            for (rate, over) in [(limit, false), (1.3 * limit, true)] {
                let (mut x, mut n) = (0u64, 0u64);
                let mut failed = (false, false);
                for look in 1..=12 {
                    x += binomial(&mut rng, 5 * per_minute, rate);
                    n += 5 * per_minute;
                    let last = look == 12;
                    let t = limit_test(x as f64, x as f64, n as f64, limit, limit / 4.0, &limit_bounds(alpha, last));
                    match t.outcome {
                        Outcome::Fail => {
                            failed = (failed.0 || !t.failed_at_last_look(), true);
                            break;
                        }
                        Outcome::Pass => break,
                        _ => {}
                    }
                }
                match over {
                    false => at_limit += u32::from(failed.1),
                    true => {
                        over_seq += u32::from(failed.0);
                        over_last += u32::from(failed.1);
                    }
                }
            }
        }
        // α of 200 runs is 10; three binomial standard deviations above it is 19.
        prop_assert!(at_limit <= 19, "at the limit: rolled back in {at_limit} of {runs}");
        prop_assert!(
            over_last >= over_seq + runs / 20,
            "1.3× the limit: {over_seq} by the sequence, {over_last} with the last look"
        );
    }
}

/// Coverage of the tail comparison under repeated looks: a candidate identical to stable,
/// judged minute by minute on its 10% step at 1,000 req/s (where the p99.9 comparison is
/// informative within minutes) at every look from the fifth minute to the fortieth, reads
/// `regressed` at some look in no more than the check's α of runs, although its threshold (×ρ
/// the pooled p99.9, at a bucket edge) moves with the pooled data between looks. α is raised
/// (a false-alarm budget of 0.5) so that the bound is not trivially far; two laws, stable's own
/// and one whose p99.9 lies in a far tail of very slow requests.
#[test]
fn the_tail_comparison_keeps_its_false_alarm_rate_under_repeated_looks() {
    use cutover_fakes::traffic::{Behaviour, LogNormal};
    let policy = Policy {
        latency_percentiles: vec![0.999],
        false_alarm_rate: 0.5,
        ..Policy::default()
    };
    let alpha = Bounds::of(&policy, StepRole::Canary).alpha;
    let body = LogNormal::new(50.0, 200.0);
    let slow = LogNormal::with_sigma(1.5 * 3.0 * body.quantile(0.999), 0.1);
    let laws = [
        Behaviour::new(0.005, 50.0, 200.0),
        Behaviour::mixture(0.005, &[(0.999, body), (0.001, slow)]),
    ];
    let t = |m: i64| Timestamp::from_second(60 * m).unwrap();
    let runs = 100;
    for (l, law) in laws.iter().enumerate() {
        let mut rng = fastrand::Rng::with_seed(13 + l as u64);
        let mut failed = 0;
        for _ in 0..runs {
            let (mut c, mut s) = (BTreeMap::new(), BTreeMap::new());
            for m in 1..=40 {
                c.insert(t(m), law.sample(&mut rng, 6_000.0).into());
                s.insert(t(m), law.sample(&mut rng, 54_000.0).into());
                if m < 5 {
                    continue;
                }
                let input = Input {
                    window: Window {
                        start: t(0),
                        end: t(m),
                    },
                    percent: 10,
                    candidate: Minutes::of(c.clone()).unwrap(),
                    reference: Some(Reference::Concurrent(Minutes::of(s.clone()).unwrap())),
                    coverage: None,
                    no_reference: None,
                    last_look: false,
                };
                let j = judge_input(input, &policy);
                let tail = j
                    .statistics
                    .as_ref()
                    .unwrap()
                    .checks
                    .iter()
                    .find(|c| c.name == "p99.9 vs stable");
                if tail.is_some_and(|c| c.outcome == Outcome::Fail) {
                    failed += 1;
                    break;
                }
            }
        }
        // α of `runs`, and three binomial standard deviations above it.
        let n = f64::from(runs);
        let bound = alpha * n + 3.0 * (alpha * (1.0 - alpha) * n).sqrt();
        assert!(
            f64::from(failed) <= bound,
            "law {l}: {failed} of {runs} identical candidates failed p99.9 at some look (α = {alpha:.3})"
        );
    }
}
