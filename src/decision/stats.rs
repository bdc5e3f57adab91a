//! The few statistical functions the judge needs, written out so every number in a decision
//! record can be traced to a formula: likelihood ratios of the sequential tests (SPRT), the
//! normal distribution, Wilson intervals, and what can be read from a bucketed latency
//! histogram (tail counts, the Mann-Whitney rank statistic).
//!
//! Pure functions of their arguments; no allocation beyond what a result needs.

use super::evidence::Histogram;

/// Keeps a probability strictly inside (0, 1) so logarithms stay finite.
fn clamp_p(p: f64) -> f64 {
    p.clamp(1e-12, 1.0 - 1e-12)
}

/// Log-likelihood ratio of `x` successes in `n` Bernoulli trials under `p1` against `p0`:
/// `x ln(p1/p0) + (n-x) ln((1-p1)/(1-p0))`. `x` may be fractional (interpolated counts).
pub fn llr_bernoulli(x: f64, n: f64, p0: f64, p1: f64) -> f64 {
    let (p0, p1) = (clamp_p(p0), clamp_p(p1));
    x * (p1 / p0).ln() + (n - x).max(0.0) * ((1.0 - p1) / (1.0 - p0)).ln()
}

/// Kullback-Leibler divergence of Bernoulli(`p`) from Bernoulli(`q`), in nats.
pub fn kl_bernoulli(p: f64, q: f64) -> f64 {
    let (p, q) = (clamp_p(p), clamp_p(q));
    p * (p / q).ln() + (1.0 - p) * ((1.0 - p) / (1.0 - q)).ln()
}

/// Share of events expected on the candidate when it has `exposure` (its requests over the
/// stable revision's) and an event rate `ratio` times stable's: `ratio·w / (1 + ratio·w)`.
pub fn attribution(ratio: f64, exposure: f64) -> f64 {
    let rw = ratio * exposure;
    clamp_p(rw / (1.0 + rw))
}

/// Φ(z), the standard normal distribution function (Abramowitz & Stegun 7.1.26, absolute error
/// below 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = ((((1.061_405_429 * t - 1.453_152_027) * t + 1.421_413_741) * t - 0.284_496_736)
        * t
        + 0.254_829_592)
        * t;
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// Wilson score interval for `x` successes in `n` trials at z = 1.96 (95%, one look). Shown in
/// decision records for people; the decisions themselves use the sequential tests.
pub fn wilson95(x: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let z = 1.96_f64;
    let p = (x / n).clamp(0.0, 1.0);
    let z2n = z * z / n;
    let centre = (p + z2n / 2.0) / (1.0 + z2n);
    let half = z * (p * (1.0 - p) / n + z2n / (4.0 * n)).sqrt() / (1.0 + z2n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Lower and upper edge (ms) of bucket `i`: the underflow bucket starts at 0 (latencies are not
/// negative), the overflow bucket ends at infinity.
fn bucket_edges(h: &Histogram, i: usize) -> (f64, f64) {
    let lower = if i == 0 { 0.0 } else { h.bounds[i - 1] };
    let upper = h.bounds.get(i).copied().unwrap_or(f64::INFINITY);
    (lower.min(upper), upper)
}

/// Requests slower than `t` ms, interpolating linearly inside the bucket that holds `t` (the
/// same assumption as [`Histogram::quantile`]). Overflow requests count as slower.
pub fn count_above(h: &Histogram, t: f64) -> f64 {
    let mut above = 0.0;
    for (i, &c) in h.counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let (lower, upper) = bucket_edges(h, i);
        let c = c as f64;
        if lower >= t {
            above += c;
        } else if upper > t {
            if upper.is_finite() && upper > lower {
                above += c * (upper - t) / (upper - lower);
            } else {
                above += c;
            }
        }
    }
    above
}

/// Share of requests slower than `t` ms (0 without samples).
pub fn fraction_above(h: &Histogram, t: f64) -> f64 {
    let n = h.total();
    if n == 0 {
        0.0
    } else {
        count_above(h, t) / n as f64
    }
}

/// Approximate mean latency (ms): each request at its bucket's midpoint (the upper edge's half
/// for the underflow bucket, the lower edge for the overflow bucket). `None` without samples.
pub fn mean_ms(h: &Histogram) -> Option<f64> {
    let n = h.total();
    if n == 0 {
        return None;
    }
    let mut sum = 0.0;
    for (i, &c) in h.counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let (lower, upper) = bucket_edges(h, i);
        let mid = if !upper.is_finite() {
            lower
        } else if lower <= 0.0 {
            upper / 2.0
        } else {
            (lower + upper) / 2.0
        };
        sum += c as f64 * mid;
    }
    Some(sum / n as f64)
}

/// The two histograms together (same layout required).
pub fn pooled(a: &Histogram, b: &Histogram) -> Option<Histogram> {
    let mut p = a.clone();
    p.merge(b).ok()?;
    Some(p)
}

/// Mann-Whitney comparison of two bucketed samples: requests in the same bucket are ties.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankTest {
    /// P(candidate slower than stable) + ½ P(same bucket): 0.5 when they do not differ.
    pub auc: f64,
    /// Standard error of `auc` under "no difference", with the tie correction.
    pub se: f64,
}

/// The rank statistic of `candidate` against `stable`; `None` when either is empty or the
/// layouts differ.
pub fn rank_test(candidate: &Histogram, stable: &Histogram) -> Option<RankTest> {
    if candidate.bounds != stable.bounds || candidate.counts.len() != stable.counts.len() {
        return None;
    }
    let (nc, ns) = (candidate.total() as f64, stable.total() as f64);
    if nc == 0.0 || ns == 0.0 {
        return None;
    }
    let mut below = 0.0; // stable requests in lower buckets
    let mut u = 0.0;
    let mut ties = 0.0;
    for (&c, &s) in candidate.counts.iter().zip(&stable.counts) {
        let (c, s) = (c as f64, s as f64);
        u += c * (below + 0.5 * s);
        below += s;
        let t = c + s;
        ties += t * t * t - t;
    }
    let n = nc + ns;
    let var_u = nc * ns / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)).max(1.0));
    Some(RankTest {
        auc: u / (nc * ns),
        se: var_u.max(0.0).sqrt() / (nc * ns),
    })
}

/// Log-likelihood ratio of a normally distributed estimate `theta` (standard error `se`) under
/// mean `delta` against mean 0: `(delta·theta − delta²/2) / se²`.
pub fn llr_normal(theta: f64, se: f64, delta: f64) -> f64 {
    if se <= 0.0 {
        return if theta > delta / 2.0 {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        };
    }
    (delta * theta - delta * delta / 2.0) / (se * se)
}

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, nine coefficients; relative error below
/// 1e-13 over the range the judge uses), with the reflection formula below ½.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin().abs()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln B(a, b), the Beta function.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// A Beta(a, b) prior over a rate, for the mixture martingales of the absolute limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BetaPrior {
    pub a: f64,
    pub b: f64,
}

impl BetaPrior {
    /// The prior with mean `mean` worth `strength` trials: a = mean·strength, b = (1−mean)·strength.
    pub fn new(mean: f64, strength: f64) -> BetaPrior {
        let mean = clamp_p(mean);
        BetaPrior {
            a: mean * strength,
            b: (1.0 - mean) * strength,
        }
    }
}

/// The beta-binomial mixture e-value against "the rate is `p0`", in logs, after `x` events in `n`
/// trials (fractional counts allowed, for dispersion-scaled data):
///
/// `ln M(p0) = ln B(a + x, b + n − x) − ln B(a, b) − x ln p0 − (n − x) ln(1 − p0)`.
///
/// `M(p0)` is the likelihood of the data averaged over rates drawn from the prior, divided by
/// their likelihood at `p0`. Under independent trials at rate `p0` it is a non-negative
/// martingale with mean 1, so by Ville's inequality `P(ever M(p0) ≥ 1/α) ≤ α`: the set of rates
/// with `M(p) < 1/α` is a confidence sequence, covering the true rate at every look at once
/// with probability ≥ 1 − α. `ln M(p)` is convex in `p` with its minimum at `x/n`, so that set
/// is an interval ([`cs_bounds`]).
pub fn ln_mixture_evalue(x: f64, n: f64, p0: f64, prior: BetaPrior) -> f64 {
    let p0 = clamp_p(p0);
    let (x, n) = (x.max(0.0), n.max(0.0));
    let rest = (n - x).max(0.0);
    ln_beta(prior.a + x, prior.b + rest)
        - ln_beta(prior.a, prior.b)
        - x * p0.ln()
        - rest * (1.0 - p0).ln()
}

/// The confidence sequence of level `1 − α` (`threshold` = ln(1/α)) after `x` events in `n`
/// trials: the rates `p` with `ln M(p) < threshold`, as `(lower, upper)`. Found by bisection on
/// each side of `x/n` (the function is convex), to 1e-9.
pub fn cs_bounds(x: f64, n: f64, prior: BetaPrior, threshold: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let centre = (x / n).clamp(0.0, 1.0);
    let inside = |p: f64| ln_mixture_evalue(x, n, p, prior) < threshold;
    let edge = |mut inn: f64, mut out: f64| {
        for _ in 0..80 {
            let mid = 0.5 * (inn + out);
            if inside(mid) {
                inn = mid;
            } else {
                out = mid;
            }
        }
        inn
    };
    let lower = if inside(1e-12) {
        0.0
    } else {
        edge(centre, 1e-12)
    };
    let upper = if inside(1.0 - 1e-12) {
        1.0
    } else {
        edge(centre, 1.0 - 1e-12)
    };
    (lower, upper)
}

/// ln P(X ≥ `k`) for X ~ Binomial(`n`, `p`): the one-sided p-value of `k` events in `n` trials
/// against "the rate is at most `p`" (a larger rate only makes `k` likelier, so the rate `p`
/// itself is the worst case). Summed exactly from the term at `k` upwards, each term from the
/// last by `(n − j)/(j + 1) · p/(1 − p)`, until the rest is negligible. For `k` at or below the
/// mean it answers 0 (a p-value of at most 1): the test is only ever read at small levels.
pub fn ln_binomial_upper_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 0.0;
    }
    if k > n {
        return f64::NEG_INFINITY;
    }
    let p = clamp_p(p);
    let (kf, nf) = (k as f64, n as f64);
    if kf <= nf * p {
        return 0.0;
    }
    let first = ln_gamma(nf + 1.0) - ln_gamma(kf + 1.0) - ln_gamma(nf - kf + 1.0)
        + kf * p.ln()
        + (nf - kf) * (1.0 - p).ln();
    // Terms relative to the first: 1, r_k, r_k r_{k+1}, … (decreasing, since k > n p).
    let odds = p / (1.0 - p);
    let (mut sum, mut term) = (1.0_f64, 1.0_f64);
    let mut j = k;
    while j < n {
        term *= (n - j) as f64 / (j + 1) as f64 * odds;
        sum += term;
        if term < sum * 1e-16 {
            break;
        }
        j += 1;
    }
    (first + sum.ln()).min(0.0)
}

/// How sure the dispersion estimate must be that cells vary more than independent trials would
/// before it scales the evidence down: φ̂ is the lower bound of this one-sided confidence level.
pub const DISPERSION_CONFIDENCE: f64 = 0.9;

/// The `p` quantile of the χ² distribution with `df` degrees of freedom (Wilson–Hilferty:
/// `df (1 − 2/(9 df) + z_p √(2/(9 df)))³`, within 2% of the exact value from 2 degrees of
/// freedom on, which is all a dispersion bound needs).
pub fn chi2_quantile(df: f64, p: f64) -> f64 {
    let z = normal_quantile(p);
    let k = 2.0 / (9.0 * df);
    (df * (1.0 - k + z * k.sqrt()).powi(3)).max(1e-9)
}

/// Φ⁻¹(p) by bisection on [`normal_cdf`] (to 1e-9; only a few fixed levels are ever asked).
pub fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0_f64, 10.0_f64);
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Pearson's dispersion of counts `x_i` out of `n_i` trials around fitted probabilities `p_i`:
/// `X² = Σ (x_i − n_i p_i)² / (n_i p_i (1 − p_i))` over the `k` cells with
/// `n_i p_i (1 − p_i) > 0`, `df = k − params`. Under over-dispersion φ (variance φ times the
/// binomial one), `X²/φ` is about χ²(df), so `φ̂ = X² / χ²_df(0.9)` is a 90% lower confidence
/// bound for φ; it is never below 1. Dividing the evidence by it is the quasi-likelihood: on
/// independent requests φ̂ = 1 in about 90% of windows (the rest lose a little power), on
/// bursty data it follows X² (a burst minute counts fully). 1 without a degree of freedom.
pub fn dispersion(cells: impl IntoIterator<Item = (f64, f64, f64)>, params: usize) -> Dispersion {
    let mut x2 = 0.0;
    let mut k = 0usize;
    for (x, n, p) in cells {
        let v = n * p * (1.0 - p);
        if v > 0.0 {
            x2 += (x - n * p).powi(2) / v;
            k += 1;
        }
    }
    let df = k.saturating_sub(params);
    let phi = if df == 0 {
        1.0
    } else {
        (x2 / df as f64).max(1.0)
    };
    Dispersion {
        phi,
        pearson: x2,
        df: df as f64,
    }
}

/// A dispersion estimate and what it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dispersion {
    /// φ̂ ≥ 1: the evidence is divided by it.
    pub phi: f64,
    /// Pearson's X².
    pub pearson: f64,
    /// Its degrees of freedom (cells less fitted parameters).
    pub df: f64,
}

impl Dispersion {
    /// No over-dispersion (φ = 1), nothing estimated.
    pub const NONE: Dispersion = Dispersion {
        phi: 1.0,
        pearson: 0.0,
        df: 0.0,
    };

    /// The larger of two estimates.
    pub fn max(self, other: Dispersion) -> Dispersion {
        if other.phi > self.phi { other } else { self }
    }
}

/// The bucket edge of `h` nearest to `t`, so that counts above it are exact.
pub fn snap_to_edge(h: &Histogram, t: f64) -> f64 {
    h.bounds
        .iter()
        .copied()
        .min_by(|a, b| (a - t).abs().total_cmp(&(b - t).abs()))
        .unwrap_or(t)
}

/// Requests counted against a latency limit `t` that may fall inside a bucket `[lo, hi)`:
/// `surely` counts only buckets entirely at or above `t` (evidence to fail), `possibly` every
/// request that could be slower, the straddling bucket included (evidence to pass). No
/// interpolation: a decision never rests on where inside a bucket requests are assumed to be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TailCount {
    pub surely: u64,
    pub possibly: u64,
    /// The bucket holding `t` strictly inside it, as (lower edge, upper edge, requests).
    pub straddling: Option<(f64, f64, u64)>,
}

/// See [`TailCount`].
pub fn tail_count(h: &Histogram, t: f64) -> TailCount {
    let mut out = TailCount {
        surely: 0,
        possibly: 0,
        straddling: None,
    };
    for (i, &c) in h.counts.iter().enumerate() {
        let (lower, upper) = bucket_edges(h, i);
        if lower >= t {
            out.surely += c;
            out.possibly += c;
        } else if upper > t {
            out.possibly += c;
            out.straddling = Some((lower, upper, c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::evidence::hist;

    #[test]
    fn normal_cdf_matches_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-2.326_348) - 0.01).abs() < 1e-6);
    }

    #[test]
    fn likelihood_ratios_favour_the_closer_hypothesis() {
        // 2 errors in 600: closer to 0.25% than to 1%.
        assert!(llr_bernoulli(2.0, 600.0, 0.01, 0.0025) > 0.0);
        // 12 in 600 (2%): closer to 2% than to 1%.
        assert!(llr_bernoulli(12.0, 600.0, 0.01, 0.02) > 0.0);
        assert!(kl_bernoulli(0.2, 0.1) > 0.0 && kl_bernoulli(0.1, 0.1).abs() < 1e-12);
        assert!((attribution(1.0, 1.0 / 9.0) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn binomial_upper_tail_matches_a_direct_sum() {
        // P(Bin(20, 0.1) ≥ 6), summed term by term from the binomial coefficients.
        let choose = |n: u64, k: u64| (0..k).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64);
        let direct: f64 = (6..=20)
            .map(|k| choose(20, k) * 0.1f64.powi(k as i32) * 0.9f64.powi(20 - k as i32))
            .sum();
        assert!((ln_binomial_upper_tail(6, 20, 0.1) - direct.ln()).abs() < 1e-9);
        // 430 in 36,000 at 1% (z = 3.7 above the mean) and 468 (z = 5.7), against the same sums
        // done independently in double precision: 1.7107e-4 and 2.4885e-8.
        let p = ln_binomial_upper_tail(430, 36_000, 0.01).exp();
        assert!((p / 1.710_675_755_6e-4 - 1.0).abs() < 1e-6, "{p}");
        let p = ln_binomial_upper_tail(468, 36_000, 0.01).exp();
        assert!((p / 2.488_483_105_6e-8 - 1.0).abs() < 1e-6, "{p}");
        assert_eq!(
            ln_binomial_upper_tail(300, 36_000, 0.01),
            0.0,
            "below the mean"
        );
        assert_eq!(ln_binomial_upper_tail(0, 10, 0.5), 0.0);
        assert_eq!(ln_binomial_upper_tail(11, 10, 0.5), f64::NEG_INFINITY);
    }

    #[test]
    fn wilson_interval_brackets_the_rate() {
        let (lo, hi) = wilson95(5.0, 1000.0);
        assert!(lo < 0.005 && 0.005 < hi && hi < 0.012, "{lo} {hi}");
        assert_eq!(wilson95(0.0, 0.0), (0.0, 1.0));
    }

    #[test]
    fn tail_counts_interpolate_inside_a_bucket() {
        let h = hist(&[10.0, 20.0, 40.0], &[0, 100, 10, 1]);
        assert_eq!(count_above(&h, 20.0), 11.0);
        assert_eq!(count_above(&h, 15.0), 61.0);
        assert_eq!(count_above(&h, 100.0), 1.0, "overflow counts as slower");
        assert!((fraction_above(&h, 20.0) - 11.0 / 111.0).abs() < 1e-12);
    }

    #[test]
    fn mean_uses_bucket_midpoints() {
        let h = hist(&[10.0, 20.0, 40.0], &[2, 0, 2, 0]);
        assert_eq!(mean_ms(&h), Some((5.0 * 2.0 + 30.0 * 2.0) / 4.0));
        assert_eq!(mean_ms(&hist(&[1.0], &[0, 0])), None);
    }

    #[test]
    fn rank_test_is_centred_for_identical_samples_and_sees_a_shift() {
        let a = hist(&[10.0, 20.0, 40.0], &[10, 50, 30, 10]);
        let r = rank_test(&a, &a).unwrap();
        assert!((r.auc - 0.5).abs() < 1e-12 && r.se > 0.0);
        let slower = hist(&[10.0, 20.0, 40.0], &[0, 10, 50, 40]);
        let r = rank_test(&slower, &a).unwrap();
        assert!(r.auc > 0.7, "{r:?}");
        assert!(rank_test(&a, &hist(&[1.0], &[1, 1])).is_none());
    }
}
