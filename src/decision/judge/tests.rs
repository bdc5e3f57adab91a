//! The judge's checks, case by case, and as properties: more data never turns a failing
//! candidate into a passing one, and a candidate identical to stable is rolled back no more
//! often than the stated false-alarm rate, however often it is looked at.

use proptest::prelude::*;

use super::*;
use cutover_fakes::traffic::Behaviour;

fn window() -> Window {
    Window {
        start: "2026-08-20T10:00:00Z".parse().unwrap(),
        end: "2026-08-20T10:05:00Z".parse().unwrap(),
    }
}

fn stats(requests: u64, errors: u64, p99_bucket: usize) -> RevisionStats {
    // Buckets: <100, [100,200), [200,500), [500,2000), [2000,5000), >=5000.
    let mut counts = vec![0; 6];
    counts[p99_bucket] = requests;
    RevisionStats {
        requests,
        errors_5xx: errors,
        latency: Histogram {
            bounds: vec![100.0, 200.0, 500.0, 2000.0, 5000.0],
            counts,
        },
    }
}

/// Expected (noise-free) stats of `n` requests with a 5xx ratio and log-normal latency.
fn expected(n: u64, error_rate: f64, p50: f64, p99: f64) -> RevisionStats {
    Behaviour::new(error_rate, p50, p99).expected(n).into()
}

fn verdict_kind(j: &Judgement) -> &'static str {
    match j.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail(_) => "fail",
        Verdict::Inconclusive(_) => "inconclusive",
    }
}

fn check<'a>(j: &'a Judgement, name: &str) -> &'a Check {
    j.statistics
        .as_ref()
        .unwrap()
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {j:#?}"))
}

#[test]
fn too_few_requests_is_inconclusive_even_if_all_failed() {
    let p = Policy::default();
    let j = judge(Some(&stats(20, 20, 1)), None, window(), 10, &p);
    assert!(matches!(j.verdict, Verdict::Inconclusive(_)));
    let j = judge(None, None, window(), 10, &p);
    assert!(matches!(j.verdict, Verdict::Inconclusive(_)));
    assert_eq!(j.requests, 0);
    // Plenty of stable data changes nothing: the candidate's own data is what is missing.
    let stable = expected(100_000, 0.005, 50.0, 200.0);
    let j = judge(Some(&stats(99, 99, 5)), Some(&stable), window(), 10, &p);
    assert!(
        matches!(&j.verdict, Verdict::Inconclusive(r) if r.contains("fewer than the 100")),
        "{j:?}"
    );
}

#[test]
fn errors_and_latency_above_limits_fail() {
    let p = Policy::default();
    let j = judge(Some(&stats(1000, 200, 1)), None, window(), 10, &p);
    assert!(
        matches!(&j.verdict, Verdict::Fail(r) if r.contains("5xx rate")),
        "{j:?}"
    );
    let j = judge(Some(&stats(1000, 1, 4)), None, window(), 10, &p);
    assert!(
        matches!(&j.verdict, Verdict::Fail(r) if r.contains("p99")),
        "{j:?}"
    );
}

#[test]
fn healthy_numbers_pass_and_are_reported() {
    let j = judge(
        Some(&stats(2000, 4, 1)),
        None,
        window(),
        10,
        &Policy::default(),
    );
    assert_eq!(j.verdict, Verdict::Pass, "{j:#?}");
    assert_eq!(j.errors_5xx, 4);
    assert!(j.p99_ms.unwrap() <= 200.0);
    assert!(j.summary().contains("2000 requests"));
    assert!(j.summary().contains("no stable traffic"));
}

#[test]
fn a_point_estimate_above_the_limit_is_not_yet_a_failure() {
    // 2 of 100 is "2%", but a healthy 0.5% revision shows that 9% of the time: hold instead.
    let stable = expected(900, 0.005, 50.0, 200.0);
    let mut c = expected(100, 0.005, 50.0, 200.0);
    c.errors_5xx = 2;
    let j = judge(Some(&c), Some(&stable), window(), 10, &Policy::default());
    assert_eq!(verdict_kind(&j), "inconclusive", "{j:#?}");
}

#[test]
fn an_absolute_limit_needs_more_confidence_at_the_step_that_leads_to_100() {
    // 2 errors in 600 against a 1% limit: enough for the canary step, not to go to 100%.
    let c = stats(600, 2, 1);
    let p = Policy::default();
    assert_eq!(
        verdict_kind(&judge(Some(&c), None, window(), 10, &p)),
        "pass"
    );
    let j = judge(Some(&c), None, window(), 50, &p);
    assert_eq!(verdict_kind(&j), "inconclusive", "{j:#?}");
    assert_eq!(check(&j, "5xx").outcome, Outcome::Inconclusive);
    let j = judge(Some(&stats(6000, 20, 1)), None, window(), 50, &p);
    assert_eq!(verdict_kind(&j), "pass", "{j:#?}");
}

#[test]
fn a_5xx_rate_within_the_limit_but_three_times_stables_fails_at_high_traffic() {
    let stable = expected(900_000, 0.001, 50.0, 200.0);
    let c = expected(100_000, 0.003, 50.0, 200.0);
    let j = judge(Some(&c), Some(&stable), window(), 10, &Policy::default());
    assert!(
        matches!(&j.verdict, Verdict::Fail(r) if r.contains("vs stable")),
        "{j:#?}"
    );
    assert_eq!(check(&j, "5xx").outcome, Outcome::Pass, "within 1%");
    let c = check(&j, "5xx vs stable");
    assert!(c.values["llr"] >= j.statistics.as_ref().unwrap().fail_at);
    assert!((c.values["observed_ratio"] - 3.0).abs() < 0.1);
}

#[test]
fn a_tiny_but_significant_difference_at_huge_traffic_does_not_roll_back() {
    // 0.55% against 0.50% over ten million requests is significant, and not a regression.
    let stable = expected(9_000_000, 0.005, 50.0, 200.0);
    let c = expected(1_000_000, 0.0055, 50.0, 200.0);
    let j = judge(Some(&c), Some(&stable), window(), 10, &Policy::default());
    assert_eq!(verdict_kind(&j), "pass", "{j:#?}");
    assert_eq!(check(&j, "5xx vs stable").outcome, Outcome::Pass);
    // The same for a 3 ms slow-down of a 4 ms service: below the 10 ms floor.
    let stable = expected(900_000, 0.005, 4.0, 12.0);
    let c = expected(100_000, 0.005, 7.0, 21.0);
    let j = judge(Some(&c), Some(&stable), window(), 10, &Policy::default());
    assert_eq!(verdict_kind(&j), "pass", "{j:#?}");
}

#[test]
fn a_longer_latency_tail_than_stables_fails_though_within_the_limit() {
    // p99 200 → 300 ms with the median unchanged: far below the 1000 ms limit.
    let stable = expected(270_000, 0.005, 50.0, 200.0);
    let c = expected(30_000, 0.005, 50.0, 300.0);
    let j = judge(Some(&c), Some(&stable), window(), 10, &Policy::default());
    assert!(
        matches!(&j.verdict, Verdict::Fail(r) if r.contains("p95 latency")),
        "{j:#?}"
    );
    assert_eq!(check(&j, "p99").outcome, Outcome::Pass);
}

#[test]
fn the_rank_test_sees_a_shift_the_compared_percentiles_miss() {
    // Every request faster than the median slows down to it; the median and the tail (so p95
    // and p99) are unchanged, but half the requests are slower.
    let stable = expected(90_000, 0.005, 200.0, 800.0);
    let mut c = expected(10_000, 0.005, 200.0, 800.0);
    let h = &mut c.latency;
    let total = h.total();
    let mut seen = 0;
    let median_bucket = (0..h.counts.len())
        .find(|&i| {
            seen += h.counts[i];
            seen * 2 >= total
        })
        .unwrap();
    let moved: u64 = h.counts[..median_bucket].iter().sum();
    for n in &mut h.counts[..median_bucket] {
        *n = 0;
    }
    h.counts[median_bucket] += moved;
    let j = judge(Some(&c), Some(&stable), window(), 10, &Policy::default());
    assert_eq!(check(&j, "p95 vs stable").outcome, Outcome::Pass, "{j:#?}");
    assert_eq!(check(&j, "rank vs stable").outcome, Outcome::Fail, "{j:#?}");
}

#[test]
fn without_stable_traffic_the_limits_decide_and_the_record_says_so() {
    let c = expected(10_000, 0.002, 40.0, 180.0);
    let j = judge(Some(&c), None, window(), 10, &Policy::default());
    assert_eq!(j.verdict, Verdict::Pass);
    let s = j.statistics.as_ref().unwrap();
    assert!(!s.compared_with_stable);
    let skipped = check(&j, "5xx vs stable");
    assert_eq!(skipped.outcome, Outcome::Skipped);
    assert!(skipped.note.contains("absolute limits only"), "{skipped:?}");
    // At 100% the stable revision's leftovers are not compared with either.
    let stable = expected(50, 0.5, 900.0, 3000.0);
    let j = judge(Some(&c), Some(&stable), window(), 100, &Policy::default());
    assert_eq!(j.verdict, Verdict::Pass);
    assert_eq!(j.statistics.as_ref().unwrap().role, StepRole::Final);
    assert!(check(&j, "5xx vs stable").note.contains("100%"));
}

#[test]
fn an_informative_comparison_that_is_not_settled_holds_the_step() {
    // ×1.4 of stable's 5xx: between "no different" and "×2", with lots of data: neither yet.
    let stable = expected(250_000, 0.002, 50.0, 200.0);
    let c = expected(250_000, 0.0028, 50.0, 200.0);
    let j = judge(Some(&c), Some(&stable), window(), 50, &Policy::default());
    assert_eq!(verdict_kind(&j), "inconclusive", "{j:#?}");
    let r = check(&j, "5xx vs stable");
    assert_eq!(r.outcome, Outcome::Inconclusive);
    assert!(r.values["information"] >= j.statistics.as_ref().unwrap().comparisons_pass_at);
}

#[test]
fn every_judgement_carries_its_statistics_as_json() {
    let stable = expected(5_400, 0.002, 40.0, 180.0);
    let c = expected(600, 0.002, 40.0, 180.0);
    let j = judge(Some(&c), Some(&stable), window(), 10, &Policy::default());
    let v = j.statistics_json().unwrap();
    assert_eq!(v["method"], "sequential");
    assert_eq!(v["role"], "canary");
    assert_eq!(v["candidate"]["requests"], c.requests);
    assert_eq!(v["stable"]["requests"], stable.requests);
    let checks = v["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "5xx",
            "5xx vs stable",
            "p99",
            "p95 vs stable",
            "rank vs stable"
        ]
    );
    for c in checks {
        assert!(c["note"].as_str().is_some_and(|n| !n.is_empty()));
        assert!(
            c["values"].as_object().is_some_and(|o| !o.is_empty()),
            "{c}"
        );
    }
    assert!(v["fail_at"].as_f64().unwrap() > v["comparisons_pass_at"].as_f64().unwrap());
}

#[test]
fn the_absolute_baseline_judge_is_the_old_one() {
    let p = Policy {
        judge: JudgeKind::Absolute,
        ..Policy::default()
    };
    // 2 of 100 is "2%": the naive judge rolls back.
    let j = judge(Some(&stats(100, 2, 1)), None, window(), 10, &p);
    assert!(matches!(j.verdict, Verdict::Fail(_)));
    assert!(j.statistics.is_none());
}

#[test]
fn percentages_read_well() {
    assert_eq!(pct(0.2), "20%");
    assert_eq!(pct(0.01), "1.0%");
    assert_eq!(pct(0.005), "0.50%");
    assert_eq!(pct(0.0), "0%");
}

/// Stable's law (p50 50 ms, p99 200 ms) and the `tail-x3` candidate of `lab simulate`: 0.1% of
/// requests replaced by very slow ones (about 1.4 s), so p99.9 is three times stable's while
/// p99 moves by 2% and the body not at all.
fn tail_only(n_candidate: u64, n_stable: u64) -> (RevisionStats, RevisionStats) {
    use cutover_fakes::traffic::LogNormal;
    let body = LogNormal::new(50.0, 200.0);
    let slow = LogNormal::with_sigma(1.5 * 3.0 * body.quantile(0.999), 0.1);
    let c = Behaviour::mixture(0.005, &[(0.999, body), (0.001, slow)]).expected(n_candidate);
    (c.into(), expected(n_stable, 0.005, 50.0, 200.0))
}

fn with_percentiles(qs: &[f64]) -> Policy {
    Policy {
        latency_percentiles: qs.to_vec(),
        ..Policy::default()
    }
}

#[test]
fn a_regression_only_in_p99_9_is_rolled_back_by_the_p99_9_comparison() {
    // The 10% step at 1,000 req/s after 5 minutes: 30,000 candidate requests, 270,000 stable.
    let (c, s) = tail_only(30_000, 270_000);
    let policy = with_percentiles(&[0.95, 0.999]);
    let j = judge(Some(&c), Some(&s), window(), 10, &policy);
    let tail = check(&j, "p99.9 vs stable");
    assert_eq!(tail.reading, Some("regressed"), "{tail:#?}");
    assert!(matches!(j.verdict, Verdict::Fail(_)), "{:?}", j.verdict);
    // Counted above ×1.25 the pooled p99.9 (about 315 ms), at a bucket edge: 427 ms.
    let v = &tail.values;
    assert!(v["threshold_ms"] > 1.25 * v["pooled_quantile_ms"] / 1.4_f64.sqrt());
    assert!(v["threshold_ms"] >= v["threshold_target_ms"] / 1.4_f64.sqrt());
    // p95 and the rank test see nothing: only the tail percentile can catch it.
    for name in ["p95 vs stable", "rank vs stable"] {
        assert_ne!(check(&j, name).outcome, Outcome::Fail, "{name}");
    }
}

/// The p99.9 comparison of a candidate identical to stable, with `n_c` and `n_s` requests, on a
/// canary step (10%) or against the baseline of earlier steps (at 100%).
fn identical_p99_9(n_c: u64, n_s: u64, baseline: bool) -> Check {
    let (c, s) = (
        expected(n_c, 0.005, 50.0, 200.0),
        expected(n_s, 0.005, 50.0, 200.0),
    );
    let s = Minutes::single(window().end, &s);
    let input = Input {
        window: window(),
        percent: if baseline { 100 } else { 10 },
        candidate: Minutes::single(window().end, &c),
        reference: Some(if baseline {
            Reference::Baseline(s)
        } else {
            Reference::Concurrent(s)
        }),
        coverage: None,
        no_reference: None,
        last_look: false,
    };
    let j = judge_input(input, &with_percentiles(&[0.999]));
    check(&j, "p99.9 vs stable").clone()
}

#[test]
fn an_identical_candidate_is_confirmed_by_the_p99_9_comparison_with_enough_traffic() {
    assert_eq!(
        identical_p99_9(30_000, 270_000, false).reading,
        Some("confirmed")
    );
    // With a hundredth of the traffic the same comparison cannot tell, and says so.
    let tail = identical_p99_9(300, 2_700, false);
    assert_eq!(tail.reading, Some("not-informative"), "{tail:#?}");
    assert!(tail.note.contains("too few slow requests"), "{}", tail.note);
}

/// At 100%, an hour of a healthy candidate (360,000 requests) against a baseline of 10,000
/// holding one request above the far edge: no amount of candidate data could show it equal, so
/// the comparison must not stay open (it would hold the rollout until the maximum hold pauses
/// it) but say it cannot decide, and leave the decision to the rest.
#[test]
fn a_far_percentile_against_a_thin_baseline_is_not_informative_rather_than_open() {
    let tail = identical_p99_9(360_000, 10_000, true);
    assert_eq!(tail.reading, Some("not-informative"), "{tail:#?}");
    assert_eq!(tail.outcome, Outcome::Pass);
    assert!(tail.values["information_if_regressed"] >= 4.6, "{tail:#?}");
    assert!(tail.values["information_if_equal"] < 4.6, "{tail:#?}");
}

/// Exhaustive over Cloud Run's bucket layout and pooled quantiles between two edges: the
/// threshold is a bucket edge above the pooled quantile, within half a bucket (on a log scale)
/// of the quantile slowed down by the regression size, and the requests counted above it are
/// whole buckets, never a guessed part of one.
#[test]
fn the_tail_threshold_is_the_bucket_edge_nearest_the_slowed_down_percentile() {
    let bounds = cutover_fakes::traffic::bounds();
    let half_bucket = cutover_fakes::traffic::GROWTH_FACTOR.ln() / 2.0 + 1e-12;
    let counts: Vec<u64> = (0..=bounds.len() as u64).map(|i| 1 + i % 7).collect();
    let h = Histogram {
        bounds: bounds.clone(),
        counts: counts.clone(),
    };
    for ratio in [1.25, 1.5625, 2.0] {
        for k in 0..bounds.len() - 3 {
            for j in 0..20 {
                let q = bounds[k] * cutover_fakes::traffic::GROWTH_FACTOR.powf(f64::from(j) / 20.0);
                let t = tail_edge(&bounds, q, ratio * q);
                let i = bounds.iter().position(|e| *e == t).expect("an edge");
                assert!(t > q, "ratio {ratio}, q {q}: edge {t}");
                assert!(
                    (t / (ratio * q)).ln().abs() <= half_bucket,
                    "ratio {ratio}, q {q}: {t}"
                );
                let whole: u64 = counts[i + 1..].iter().sum();
                assert_eq!(stats::count_above(&h, t), whole as f64);
            }
        }
    }
}

/// Mood's argument: the threshold depends on the pooled histogram only, so every way of
/// splitting the same requests between the two revisions is counted above the same edge.
/// Exhaustive over the splits of a small pooled histogram.
#[test]
fn the_tail_threshold_depends_on_the_pooled_requests_only() {
    let bounds = vec![100.0, 140.0, 196.0, 274.4, 384.2];
    let pooled = [3u64, 2, 2, 1, 1, 1];
    let policy = with_percentiles(&[0.9]);
    let mut thresholds = std::collections::BTreeSet::new();
    let splits: u64 = pooled.iter().map(|c| c + 1).product();
    for code in 0..splits {
        let (mut rest, mut cand) = (code, Vec::new());
        for c in pooled {
            cand.push(rest % (c + 1));
            rest /= c + 1;
        }
        let stable: Vec<u64> = pooled.iter().zip(&cand).map(|(p, c)| p - c).collect();
        let (nc, ns) = (cand.iter().sum::<u64>(), stable.iter().sum::<u64>());
        if nc == 0 || ns == 0 {
            continue;
        }
        let rev = |counts: Vec<u64>, n| RevisionStats {
            requests: n,
            errors_5xx: 0,
            latency: Histogram {
                bounds: bounds.clone(),
                counts,
            },
        };
        let policy = Policy {
            min_requests: 1,
            ..policy.clone()
        };
        let j = judge(
            Some(&rev(cand, nc)),
            Some(&rev(stable, ns)),
            window(),
            10,
            &policy,
        );
        thresholds.insert(check(&j, "p90 vs stable").values["threshold_ms"].to_bits());
    }
    assert_eq!(thresholds.len(), 1, "{thresholds:?}");
}

// ---- properties ----

/// A regression of one kind, as noise-free stats of the candidate and of stable.
fn regression(kind: u8, factor: f64, n: u64, percent: u8) -> (RevisionStats, RevisionStats) {
    let share = f64::from(percent) / 100.0;
    let nc = n;
    let ns = ((n as f64) * (1.0 - share) / share).round() as u64;
    let stable = |e, p50, p99| expected(ns, e, p50, p99);
    let cand = |e, p50, p99| expected(nc, e, p50, p99);
    match kind {
        // 5xx above the absolute limit (2% to 10% against 1%).
        0 => (cand(0.01 * factor, 50.0, 200.0), stable(0.005, 50.0, 200.0)),
        // Every request slower, p99 above the 1000 ms limit.
        1 => (
            cand(0.005, 300.0 * factor, 1200.0 * factor),
            stable(0.005, 50.0, 200.0),
        ),
        // Every request 1.5× to 3× slower, within the limit: only the comparison sees it.
        2 => {
            let k = 1.5 + (factor - 2.0) / 5.0;
            (cand(0.005, 50.0 * k, 200.0 * k), stable(0.005, 50.0, 200.0))
        }
        // 5xx 4× to 12× stable's, within the absolute limit.
        _ => (
            cand(0.0005 * (2.0 + factor), 50.0, 200.0),
            stable(0.0005, 50.0, 200.0),
        ),
    }
}

/// `s` with every count multiplied by `k`: the same rates, `k` times the data.
fn scaled(s: &RevisionStats, k: u64) -> RevisionStats {
    RevisionStats {
        requests: s.requests * k,
        errors_5xx: s.errors_5xx * k,
        latency: Histogram {
            bounds: s.latency.bounds.clone(),
            counts: s.latency.counts.iter().map(|c| c * k).collect(),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Once a regressed candidate fails, more of the same data keeps it failing; one above an
    /// absolute limit never passes on any amount of data; and enough data always fails it.
    #[test]
    fn more_data_never_makes_a_failing_candidate_pass(
        kind in 0u8..4,
        factor in 2.0f64..10.0,
        n in 2000u64..20_000,
        percent in prop::sample::select(vec![10u8, 25, 50]),
    ) {
        let policy = Policy::default();
        let (c, s) = regression(kind, factor, n, percent);
        let mut failed_at = None;
        for k in [1u64, 2, 4, 8, 16, 32, 64] {
            let j = judge(Some(&scaled(&c, k)), Some(&scaled(&s, k)), window(), percent, &policy);
            if kind < 2 {
                prop_assert!(j.verdict != Verdict::Pass, "kind {kind} passed at ×{k}: {j:#?}");
            }
            if let Some(at) = failed_at {
                prop_assert!(matches!(j.verdict, Verdict::Fail(_)), "failed at ×{at}, then {:?} at ×{k}", j.verdict);
            } else if matches!(j.verdict, Verdict::Fail(_)) {
                failed_at = Some(k);
            }
        }
        prop_assert!(failed_at.is_some(), "kind {kind} ×{factor} never failed");
    }
}

/// One step judged every minute from its due time, on data accumulating minute by minute,
/// until it passes, fails or reaches the max hold. `true` when it failed.
fn step_fails(
    rng: &mut fastrand::Rng,
    b: &Behaviour,
    rps: f64,
    percent: u8,
    policy: &Policy,
) -> bool {
    let share = f64::from(percent) / 100.0;
    let mut c = RevisionStats::default();
    let mut s = RevisionStats::default();
    let add = |into: &mut RevisionStats, more: RevisionStats| {
        into.requests += more.requests;
        into.errors_5xx += more.errors_5xx;
        into.latency.merge(&more.latency).unwrap();
    };
    for minute in 1..=65 {
        add(&mut c, b.sample(rng, rps * 60.0 * share).into());
        add(&mut s, b.sample(rng, rps * 60.0 * (1.0 - share)).into());
        if minute < 5 {
            continue;
        }
        let j = judge(Some(&c), Some(&s), window(), percent, policy);
        match j.verdict {
            Verdict::Fail(_) => return true,
            Verdict::Pass => return false,
            Verdict::Inconclusive(_) => {}
        }
    }
    false
}

/// A candidate identical to stable, judged on every look over many seeds: the share of steps
/// that fail stays within the stated rate (the rollout's false-alarm rate spread over its
/// steps), at the default rate and at a looser one where the bound is not trivially far.
#[test]
fn an_identical_candidate_fails_no_more_often_than_the_stated_false_alarm_rate() {
    let b = Behaviour::new(0.005, 50.0, 200.0);
    for false_alarm_rate in [0.005, 0.1] {
        let policy = Policy {
            false_alarm_rate,
            ..Policy::default()
        };
        let per_step = false_alarm_rate / policy.steps.len() as f64;
        for (rps, percent) in [(2.0, 10u8), (20.0, 10), (20.0, 50), (200.0, 10)] {
            let seeds = 1500u64;
            let mut rng = fastrand::Rng::with_seed(rps as u64 * 1000 + u64::from(percent));
            let fails = (0..seeds)
                .filter(|_| step_fails(&mut rng, &b, rps, percent, &policy))
                .count();
            let rate = fails as f64 / seeds as f64;
            assert!(
                rate <= per_step,
                "{rps} rps at {percent}%: {fails} of {seeds} identical candidates failed, {rate} > {per_step}"
            );
        }
    }
}

/// Per-minute data of one revision: `(requests, 5xx)` for each minute, ending one minute apart
/// from the end of `window()`'s first minute.
fn minutes_of(counts: &[(u64, u64)], first: i64) -> Minutes {
    let start = window().start;
    Minutes::of(
        counts
            .iter()
            .enumerate()
            .map(|(i, &(n, x))| {
                let end = start + jiff::SignedDuration::from_mins(first + i as i64 + 1);
                (end, stats(n, x, 0))
            })
            .collect(),
    )
    .unwrap()
}

fn minutes_input(candidate: Minutes, reference: Reference, percent: u8) -> Input {
    Input {
        window: window(),
        percent,
        candidate,
        reference: Some(reference),
        coverage: None,
        no_reference: None,
        last_look: false,
    }
}

/// At 10 req/s a revision sees a 5xx every minute or two, so stable's own minute often has
/// none. A healthy candidate whose single 5xx fall in such minutes, plus one 3-minute burst:
/// the minutes left out of a rollback are the burst's, not the single errors (scored against
/// stable's empty minute, each of them looked thousands of deviations out, and the burst stayed
/// in the evidence to roll back).
#[test]
fn at_low_traffic_the_minutes_left_out_are_the_burst_not_single_errors() {
    let (mut c, mut s) = (Vec::new(), Vec::new());
    for m in 0..40 {
        let burst = (10..13).contains(&m);
        let odd = m % 2 == 1;
        c.push((300, if burst { 12 } else { u64::from(odd) }));
        s.push((300, u64::from(!odd)));
    }
    let c = minutes_of(&c, 0);
    let s = minutes_of(&s, 0);
    let j = judge_input(
        minutes_input(c, Reference::Concurrent(s), 50),
        &Policy::default(),
    );
    let check = check(&j, "5xx vs stable");
    let trimmed = check.values["llr_without_worst_minutes"];
    assert!(
        trimmed < 0.0,
        "without the burst the candidate is stable's equal, the evidence to roll back is {trimmed}: {check:#?}"
    );
    assert_ne!(verdict_kind(&j), "fail", "{:?}", j.verdict);
}

/// At 100% nothing cancels a burst: a window in which bursts spoiled 6 of the candidate's 14
/// minutes (a step held open at 100% is held because of them) leaves all of them out of the
/// evidence to roll back against stable's baseline and is scaled by its own minutes'
/// dispersion, while a regression present in every minute is still rolled back.
#[test]
fn against_the_baseline_every_burst_minute_may_go_but_a_steady_regression_fails() {
    let baseline: Vec<(u64, u64)> = (0..76)
        .map(|m| (60_000, if m == 30 { 400 } else { 150 }))
        .collect();
    let bursts: Vec<(u64, u64)> = (0..14)
        .map(|m| (60_000, if m % 7 < 3 { 2_400 } else { 150 }))
        .collect();
    let steady: Vec<(u64, u64)> = (0..14).map(|_| (60_000, 600)).collect();
    let judge = |c: &[(u64, u64)]| {
        judge_input(
            minutes_input(
                minutes_of(c, 76),
                Reference::Baseline(minutes_of(&baseline, 0)),
                100,
            ),
            &Policy::default(),
        )
    };
    let j = judge(&bursts);
    let bursty = check(&j, "5xx vs stable");
    let trimmed = bursty.values["llr_without_worst_minutes"];
    assert!(
        trimmed <= 0.0,
        "without its burst minutes the candidate is its baseline's equal, evidence {trimmed}: {bursty:#?}"
    );
    assert_ne!(bursty.outcome, Outcome::Fail, "{}", bursty.note);
    // Pooled with 76 calm baseline minutes the candidate's 14 would read far calmer than they
    // are: the comparison's dispersion is never below what the candidate's own minutes show
    // (the same estimate as its absolute limit's).
    let own = check(&j, "5xx").values["dispersion"];
    assert!(
        bursty.values["dispersion"] >= own && own > 100.0,
        "dispersion {} against the candidate's own {own}",
        bursty.values["dispersion"]
    );
    let j = judge(&steady);
    assert_eq!(
        check(&j, "5xx vs stable").outcome,
        Outcome::Fail,
        "{:?}",
        j.verdict
    );
}

/// At 100% stable's baseline is every minute of its in the window, which starts an hour before
/// the rollout did: its own hour at full traffic and its minutes during the earlier steps, and
/// the record says which.
#[test]
fn the_baseline_holds_stables_hour_before_the_rollout() {
    use crate::decision::evidence::{Point, Series};
    let started: Timestamp = "2026-08-20T10:00:00Z".parse().unwrap();
    let t = |m: i64| started + jiff::SignedDuration::from_mins(m);
    let point = |n| Point {
        count: n,
        latency: Histogram {
            bounds: vec![100.0],
            counts: vec![n, 0],
        },
    };
    let series = |rev: &str, from: i64, to: i64| Series {
        revision: rev.into(),
        class: "2xx".into(),
        points: (from..=to).map(|m| (t(m), point(100))).collect(),
    };
    let now = t(33);
    let stats = ServiceStats {
        window: Window {
            start: window::baseline_start(started),
            end: t(30),
        },
        // Stable served alone until the rollout, then beside the candidate until minute 20.
        series: vec![series("stab", -59, 20), series("cand", 1, 30)],
    };
    let step = window::Step {
        candidate: "cand",
        stable: "stab",
        percent: 100,
        since: t(20),
        now,
        last_look: false,
    };
    let input = window::gather(&stats, &step, &Policy::default()).unwrap();
    let Some(Reference::Baseline(baseline)) = &input.reference else {
        panic!("compared with the baseline: {:?}", input.reference);
    };
    assert_eq!(
        baseline.by_minute.len(),
        80,
        "an hour before and 20 minutes during"
    );
    assert_eq!(
        input.candidate.by_minute.len(),
        10,
        "the candidate from its step's start"
    );
    assert_eq!(input.coverage.unwrap().baseline, Some((t(-59), t(20), 80)));
}
