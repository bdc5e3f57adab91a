//! The traffic and metrics model behind the fake Cloud Monitoring.
//!
//! cutover judges a rollout step from `run.googleapis.com/request_count` and `request_latencies`,
//! so the fake must produce numbers that *follow the traffic split it was given*, that change when
//! a revision's behaviour changes, and that are exactly reproducible from test to test. This file
//! is that model and nothing else: no HTTP, no JSON, no locks.
//!
//! # The model
//! * A service receives `rps(t)` requests per second; a revision receives `rps(t) × share(t)`,
//!   where `share` comes from the accepted traffic history (see `world.rs`).
//! * Per aligned minute the expected number of requests is the integral of that rate; the expected
//!   5xx count is the integral of `rate × error_ratio(t)`; latencies follow the log-normal of
//!   `traffic.rs` with the profile's p50 and p99, in Cloud Run's buckets. A minute that straddles
//!   a change is a weighted mixture of the pieces.
//! * Expected values become integers by *randomized rounding* seeded with a hash of
//!   (service, revision, minute): reproducible, not perfectly smooth, and exact where it matters —
//!   5xx + the rest = total, and the bucket counts of a distribution sum to its count.
//! * Mean and sum of squared deviation are computed from the sampled bucket counts and the
//!   log-normal's conditional moments inside each bucket, so they agree with the buckets.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::traffic::{BUCKETS, LogNormal, bucket_lower, bucket_midpoint, bucket_upper};

/// How one revision behaves: what fraction of its requests fail, how fast it answers, and what
/// its tagged URL answers to a smoke check.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionProfile {
    /// Fraction of requests answering 5xx, in `0.0..=1.0`.
    pub error_ratio: f64,
    /// Median latency in milliseconds.
    pub p50_ms: f64,
    /// 99th-percentile latency in milliseconds (≥ `p50_ms`; smaller values mean "no spread").
    pub p99_ms: f64,
    /// Status that `GET` on the revision's tag URL answers.
    pub smoke_status: u16,
}

impl RevisionProfile {
    /// A revision in good health: 0.2 % 5xx, p50 40 ms, p99 180 ms, smoke check 200.
    pub fn healthy() -> Self {
        RevisionProfile {
            error_ratio: 0.002,
            p50_ms: 40.0,
            p99_ms: 180.0,
            smoke_status: 200,
        }
    }

    /// The same profile with another 5xx fraction.
    pub fn with_error_ratio(self, error_ratio: f64) -> Self {
        RevisionProfile {
            error_ratio,
            ..self
        }
    }

    /// The same profile with another median latency.
    pub fn with_p50_ms(self, p50_ms: f64) -> Self {
        RevisionProfile { p50_ms, ..self }
    }

    /// The same profile with another p99 latency.
    pub fn with_p99_ms(self, p99_ms: f64) -> Self {
        RevisionProfile { p99_ms, ..self }
    }

    /// The same profile answering `status` on its tag URL.
    pub fn with_smoke_status(self, smoke_status: u16) -> Self {
        RevisionProfile {
            smoke_status,
            ..self
        }
    }

    /// The error ratio as a usable probability (NaN and out-of-range values are clamped).
    fn error_probability(&self) -> f64 {
        if self.error_ratio.is_nan() {
            0.0
        } else {
            self.error_ratio.clamp(0.0, 1.0)
        }
    }
}

impl Default for RevisionProfile {
    fn default() -> Self {
        RevisionProfile::healthy()
    }
}

/// A value that changes at known instants (milliseconds since the epoch); before the first
/// instant it does not exist (the service or revision had not been created).
#[derive(Clone, Debug)]
pub(crate) struct Timeline<T> {
    changes: Vec<(i64, T)>,
}

impl<T> Timeline<T> {
    /// A timeline whose value is `value` from `at` on.
    pub(crate) fn starting(at: Timestamp, value: T) -> Self {
        Timeline {
            changes: vec![(at.as_millisecond(), value)],
        }
    }

    /// From `at` on, the value is `value`. Earlier instants keep their values, so numbers already
    /// reported for the past never change.
    pub(crate) fn set(&mut self, at: Timestamp, value: T) {
        let at = at.as_millisecond();
        let index = self.changes.partition_point(|(t, _)| *t <= at);
        self.changes.insert(index, (at, value));
    }

    /// The value in force at `t_ms`, if the timeline had started by then.
    pub(crate) fn at_ms(&self, t_ms: i64) -> Option<&T> {
        let index = self.changes.partition_point(|(t, _)| *t <= t_ms);
        index.checked_sub(1).map(|i| &self.changes[i].1)
    }

    /// When the timeline starts.
    pub(crate) fn start_ms(&self) -> i64 {
        self.changes.first().map_or(i64::MAX, |(t, _)| *t)
    }

    fn change_times(&self) -> impl Iterator<Item = i64> + '_ {
        self.changes.iter().map(|(t, _)| *t)
    }
}

/// The sampled requests of one response-code class in one stretch of time: what one
/// distribution point carries (and, through `count`, one request_count point).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ClassDist {
    pub(crate) count: u64,
    pub(crate) mean: f64,
    pub(crate) sum_of_squared_deviation: f64,
    pub(crate) buckets: [u64; BUCKETS],
}

impl Default for ClassDist {
    fn default() -> Self {
        ClassDist {
            count: 0,
            mean: 0.0,
            sum_of_squared_deviation: 0.0,
            buckets: [0; BUCKETS],
        }
    }
}

impl ClassDist {
    /// Adds `other`'s requests to these (alignment over several minutes, cross-series sums).
    pub(crate) fn merge(&mut self, other: &ClassDist) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let (n1, n2) = (self.count as f64, other.count as f64);
        let mean = (self.mean * n1 + other.mean * n2) / (n1 + n2);
        self.sum_of_squared_deviation += other.sum_of_squared_deviation
            + n1 * (self.mean - mean).powi(2)
            + n2 * (other.mean - mean).powi(2);
        self.mean = mean;
        self.count += other.count;
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
    }
}

/// One revision's requests in one minute, split by response-code class.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct MinuteStats {
    /// Requests that did not answer 5xx (reported as response_code_class "2xx").
    pub(crate) ok: ClassDist,
    /// Requests that answered 5xx.
    pub(crate) errors: ClassDist,
}

/// Everything the model needs to know about one revision.
pub(crate) struct RevisionInputs<'a> {
    /// The service's requests per second.
    pub(crate) rps: &'a Timeline<f64>,
    /// The revision's share of the service's traffic, `0.0..=1.0`.
    pub(crate) share: &'a Timeline<f64>,
    /// The revision's behaviour.
    pub(crate) profile: &'a Timeline<RevisionProfile>,
    /// Stable per-revision seed (see [`seed`]).
    pub(crate) seed: u64,
}

/// A stable 64-bit hash (FNV-1a) of `parts`, used to seed the randomized rounding. The standard
/// library's hasher is not guaranteed to be stable across Rust releases; this one is.
pub(crate) fn seed(parts: &[&str]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// Turns minutes of a revision into [`MinuteStats`]. Holds a cache of per-bucket moments of
/// each log-normal seen, because a query asks for many minutes of the same few profiles.
#[derive(Default)]
pub(crate) struct Sampler {
    shapes: HashMap<(u64, u64), Box<Shape>>,
}

impl Sampler {
    /// The requests of the revision described by `inputs` in `[minute_ms, minute_ms + 60 s)`.
    pub(crate) fn minute(&mut self, inputs: &RevisionInputs<'_>, minute_ms: i64) -> MinuteStats {
        const MINUTE_MS: i64 = 60_000;
        let end_ms = minute_ms.saturating_add(MINUTE_MS);

        let mut cuts: Vec<i64> = inputs
            .rps
            .change_times()
            .chain(inputs.share.change_times())
            .chain(inputs.profile.change_times())
            .filter(|t| *t > minute_ms && *t < end_ms)
            .collect();
        cuts.push(minute_ms);
        cuts.push(end_ms);
        cuts.sort_unstable();
        cuts.dedup();

        // (expected non-5xx requests, expected 5xx requests, latency law) per constant piece.
        let mut pieces: Vec<(f64, f64, LogNormal)> = Vec::new();
        for window in cuts.windows(2) {
            let (from, to) = (window[0], window[1]);
            let (Some(rps), Some(share), Some(profile)) = (
                inputs.rps.at_ms(from),
                inputs.share.at_ms(from),
                inputs.profile.at_ms(from),
            ) else {
                continue;
            };
            let expected = rps.max(0.0) * share.clamp(0.0, 1.0) * (to - from) as f64 / 1000.0;
            if !(expected.is_finite() && expected > 0.0) {
                continue;
            }
            let e = profile.error_probability();
            pieces.push((
                expected * (1.0 - e),
                expected * e,
                LogNormal::new(profile.p50_ms, profile.p99_ms),
            ));
        }

        let expected_ok: f64 = pieces.iter().map(|p| p.0).sum();
        let expected_errors: f64 = pieces.iter().map(|p| p.1).sum();
        let expected_total = expected_ok + expected_errors;

        let minute_index = minute_ms.div_euclid(MINUTE_MS).to_string();
        let mut rng = fastrand::Rng::with_seed(seed(&[&inputs.seed.to_string(), &minute_index]));
        let total = randomized_round(expected_total, rng.f64());
        let errors = if expected_errors <= 0.0 {
            0
        } else if expected_ok <= 0.0 {
            total
        } else {
            randomized_round(total as f64 * expected_errors / expected_total, rng.f64()).min(total)
        };
        let (u_ok, u_errors) = (rng.f64(), rng.f64());
        let ok_parts: Vec<(f64, LogNormal)> = pieces.iter().map(|p| (p.0, p.2)).collect();
        let error_parts: Vec<(f64, LogNormal)> = pieces.iter().map(|p| (p.1, p.2)).collect();
        MinuteStats {
            ok: self.sample(total - errors, &ok_parts, u_ok),
            errors: self.sample(errors, &error_parts, u_errors),
        }
    }

    /// Spreads `count` requests over the buckets of the mixture `parts` (weight, law) by
    /// systematic randomized rounding with offset `u`, so the counts sum to `count` exactly.
    fn sample(&mut self, count: u64, parts: &[(f64, LogNormal)], u: f64) -> ClassDist {
        if count == 0 {
            return ClassDist::default();
        }
        let mut mass = [[0.0_f64; BUCKETS]; 3];
        for (weight, law) in parts.iter().filter(|(w, _)| *w > 0.0) {
            let shape = self
                .shapes
                .entry(law.key())
                .or_insert_with(|| Box::new(Shape::of(law)));
            for (row, moments) in mass.iter_mut().zip(shape.moments.iter()) {
                for (cell, moment) in row.iter_mut().zip(moments.iter()) {
                    *cell += weight * moment;
                }
            }
        }
        let total_mass: f64 = mass[0].iter().sum();

        let mut buckets = [0_u64; BUCKETS];
        if !(total_mass.is_finite() && total_mass > 0.0) {
            // Cannot happen for counts derived from positive weights; keep the invariant anyway.
            buckets[0] = count;
        } else {
            let mut cumulative = 0.0;
            let mut previous = 0_u64;
            for (b, bucket) in buckets.iter_mut().enumerate() {
                cumulative += mass[0][b] / total_mass * count as f64;
                let upto = if b == BUCKETS - 1 {
                    count
                } else {
                    ((cumulative + u).floor() as u64).clamp(previous, count)
                };
                *bucket = upto - previous;
                previous = upto;
            }
        }

        let mut first = 0.0;
        let mut second = 0.0;
        for (b, &n) in buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let (m1, m2) = if mass[0][b] > 0.0 {
                (mass[1][b] / mass[0][b], mass[2][b] / mass[0][b])
            } else {
                let x = bucket_midpoint(b);
                (x, x * x)
            };
            first += n as f64 * m1;
            second += n as f64 * m2;
        }
        let n = count as f64;
        let mean = first / n;
        ClassDist {
            count,
            mean,
            sum_of_squared_deviation: (second - n * mean * mean).max(0.0),
            buckets,
        }
    }
}

/// `floor(x + u)`: an integer whose expectation is `x` when `u` is uniform on `[0, 1)`.
fn randomized_round(x: f64, u: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        (x + u).floor() as u64
    } else {
        0
    }
}

/// The zeroth, first and second partial moments of one log-normal in every bucket.
struct Shape {
    moments: [[f64; BUCKETS]; 3],
}

impl Shape {
    fn of(law: &LogNormal) -> Self {
        let mut moments = [[0.0; BUCKETS]; 3];
        for (k, row) in moments.iter_mut().enumerate() {
            for (b, cell) in row.iter_mut().enumerate() {
                *cell = law.partial_moment(k as i32, bucket_lower(b), bucket_upper(b));
            }
        }
        Shape { moments }
    }
}

/// The latency below which `q` of the requests in `buckets` fall, interpolating geometrically
/// inside the bucket (the way a client would estimate a percentile from a distribution point).
#[cfg(test)]
pub(crate) fn percentile_from_buckets(buckets: &[u64], q: f64) -> f64 {
    let total: u64 = buckets.iter().sum();
    let rank = q * total as f64;
    let mut below = 0.0;
    for (b, &n) in buckets.iter().enumerate() {
        let n = n as f64;
        if n > 0.0 && below + n >= rank {
            let fraction = (rank - below) / n;
            let (lo, hi) = (
                bucket_lower(b).max(crate::traffic::SCALE / 2.0),
                bucket_upper(b),
            );
            if !hi.is_finite() {
                return lo;
            }
            return lo * (hi / lo).powf(fraction);
        }
        below += n;
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ms(s: &str) -> i64 {
        t(s).as_millisecond()
    }

    struct Fixture {
        rps: Timeline<f64>,
        share: Timeline<f64>,
        profile: Timeline<RevisionProfile>,
    }

    impl Fixture {
        fn new(rps: f64, share: f64, profile: RevisionProfile) -> Self {
            let start = t("2026-08-20T10:00:00Z");
            Fixture {
                rps: Timeline::starting(start, rps),
                share: Timeline::starting(start, share),
                profile: Timeline::starting(start, profile),
            }
        }

        fn inputs(&self) -> RevisionInputs<'_> {
            RevisionInputs {
                rps: &self.rps,
                share: &self.share,
                profile: &self.profile,
                seed: seed(&["p", "r", "svc", "rev"]),
            }
        }
    }

    /// A timeline answers the value in force, and nothing before it started.
    #[test]
    fn timelines_answer_the_value_in_force() {
        let mut line = Timeline::starting(t("2026-08-20T10:00:00Z"), 1);
        line.set(t("2026-08-20T10:05:00Z"), 2);
        assert_eq!(line.at_ms(ms("2026-08-20T09:59:59Z")), None);
        assert_eq!(line.at_ms(ms("2026-08-20T10:00:00Z")), Some(&1));
        assert_eq!(line.at_ms(ms("2026-08-20T10:04:59Z")), Some(&1));
        assert_eq!(line.at_ms(ms("2026-08-20T10:05:00Z")), Some(&2));
    }

    /// 100 rps at a 10 % share is 600 requests a minute, give or take the rounding.
    #[test]
    fn a_minute_holds_rate_times_share_times_sixty() {
        let fixture = Fixture::new(100.0, 0.1, RevisionProfile::healthy());
        let mut sampler = Sampler::default();
        let minute = sampler.minute(&fixture.inputs(), ms("2026-08-20T10:01:00Z"));
        let total = minute.ok.count + minute.errors.count;
        assert!((599..=601).contains(&total), "{total}");
    }

    /// The same minute always gives the same numbers; another minute gives other ones.
    #[test]
    fn numbers_are_reproducible_but_not_constant() {
        // 7.3 rps × 0.5 × 60 s = 219 expected requests, 21.9 expected 5xx: fractions to round.
        let fixture = Fixture::new(7.3, 0.5, RevisionProfile::healthy().with_error_ratio(0.1));
        let mut sampler = Sampler::default();
        let a = sampler.minute(&fixture.inputs(), ms("2026-08-20T10:01:00Z"));
        let b = sampler.minute(&fixture.inputs(), ms("2026-08-20T10:01:00Z"));
        assert_eq!(a, b);
        let distinct: std::collections::BTreeSet<(u64, u64)> = (1..20)
            .map(|m| {
                let s = sampler.minute(&fixture.inputs(), ms("2026-08-20T10:00:00Z") + m * 60_000);
                (s.ok.count, s.errors.count)
            })
            .collect();
        assert!(
            distinct.len() > 1,
            "randomized rounding should vary: {distinct:?}"
        );
    }

    /// A profile change in the middle of a minute weighs both halves.
    #[test]
    fn a_change_mid_minute_mixes_both_profiles() {
        let mut fixture =
            Fixture::new(100.0, 1.0, RevisionProfile::healthy().with_error_ratio(0.0));
        fixture.profile.set(
            t("2026-08-20T10:01:30Z"),
            RevisionProfile::healthy().with_error_ratio(1.0),
        );
        let mut sampler = Sampler::default();
        let minute = sampler.minute(&fixture.inputs(), ms("2026-08-20T10:01:00Z"));
        assert!((2999..=3001).contains(&minute.errors.count), "{minute:?}");
        assert!((2999..=3001).contains(&minute.ok.count), "{minute:?}");
    }

    /// Enough requests reproduce the profile's p99 within the resolution of the buckets.
    #[test]
    fn p99_from_buckets_tracks_the_profile() {
        let fixture = Fixture::new(50.0, 1.0, RevisionProfile::healthy().with_p99_ms(400.0));
        let mut sampler = Sampler::default();
        let minute = sampler.minute(&fixture.inputs(), ms("2026-08-20T10:02:00Z"));
        let p99 = percentile_from_buckets(&minute.ok.buckets, 0.99);
        assert!((p99 / 400.0 - 1.0).abs() < 0.15, "p99 {p99}");
        let p50 = percentile_from_buckets(&minute.ok.buckets, 0.5);
        assert!((p50 / 40.0 - 1.0).abs() < 0.15, "p50 {p50}");
        // The log-normal's mean is exp(μ + σ²/2).
        let sigma = (400.0_f64 / 40.0).ln() / crate::traffic::Z99;
        let mean = 40.0 * (sigma * sigma / 2.0).exp();
        assert!(
            (minute.ok.mean / mean - 1.0).abs() < 0.1,
            "{} vs {mean}",
            minute.ok.mean
        );
    }

    /// Merging two distributions is the same as having sampled them as one.
    #[test]
    fn merging_distributions_keeps_mean_and_deviation_exact() {
        let mut a = ClassDist {
            count: 2,
            mean: 1.0,
            sum_of_squared_deviation: 0.0,
            ..ClassDist::default()
        };
        a.buckets[1] = 2;
        let mut b = ClassDist {
            count: 2,
            mean: 3.0,
            sum_of_squared_deviation: 0.0,
            ..ClassDist::default()
        };
        b.buckets[4] = 2;
        a.merge(&b);
        assert_eq!(a.count, 4);
        assert_eq!(a.mean, 2.0);
        // values 1, 1, 3, 3 around mean 2
        assert_eq!(a.sum_of_squared_deviation, 4.0);
        assert_eq!(a.buckets[1] + a.buckets[4], 4);
    }

    proptest! {
        /// Whatever the inputs, the split and the buckets are exact and the numbers finite.
        #[test]
        fn counts_always_add_up(
            rps in 0.0_f64..5000.0,
            share in 0.0_f64..=1.0,
            error_ratio in -0.5_f64..1.5,
            p50 in 0.0_f64..5000.0,
            p99 in 0.0_f64..50000.0,
            minute in 0_i64..10_000,
        ) {
            let profile = RevisionProfile { error_ratio, p50_ms: p50, p99_ms: p99, smoke_status: 200 };
            let fixture = Fixture::new(rps, share, profile);
            let mut sampler = Sampler::default();
            let stats = sampler.minute(&fixture.inputs(), ms("2026-08-20T10:00:00Z") + minute * 60_000);
            for class in [&stats.ok, &stats.errors] {
                prop_assert_eq!(class.buckets.iter().sum::<u64>(), class.count);
                prop_assert!(class.mean.is_finite() && class.sum_of_squared_deviation.is_finite());
            }
            let expected = rps * share * 60.0;
            let total = (stats.ok.count + stats.errors.count) as f64;
            prop_assert!((total - expected).abs() <= 1.0, "{} vs {}", total, expected);
        }
    }
}
