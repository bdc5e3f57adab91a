//! The one traffic model: how a revision with a 5xx ratio and a log-normal latency (given its
//! p50 and p99) fills Cloud Run's `request_latencies` buckets.
//!
//! The fake Monitoring (`model.rs`: per-minute points from the traffic history), the simulator
//! (`lab simulate`: Poisson counts per simulated minute) and cutover's decision tests (expected
//! counts of `n` requests) all draw from here, so they agree on the bucket layout and on the
//! latency law. Everything is plain numbers: bucket bounds and counts; callers wrap them into
//! their own types.

/// Cloud Run's latency layout as cutover sees it on the wire: exponential, 64 finite buckets,
/// growth factor 1.4, scale 1 ms (plus underflow and overflow buckets).
pub const NUM_FINITE_BUCKETS: usize = 64;
/// Each bucket's upper bound is this many times its lower one.
pub const GROWTH_FACTOR: f64 = 1.4;
/// The first finite bucket's lower bound, ms.
pub const SCALE: f64 = 1.0;
/// Finite buckets plus underflow (index 0) and overflow (last index).
pub const BUCKETS: usize = NUM_FINITE_BUCKETS + 2;

/// z-score of the 99th percentile of a standard normal distribution.
pub(crate) const Z99: f64 = 2.326_347_874;

/// The bucket bounds, ms: `SCALE × GROWTH_FACTOR^i` for `i` in `0..=64` (65 bounds, 66 buckets).
pub fn bounds() -> Vec<f64> {
    (0..=NUM_FINITE_BUCKETS)
        .map(|i| SCALE * GROWTH_FACTOR.powi(i as i32))
        .collect()
}

/// Lower edge of bucket `b` (0 for the underflow bucket).
pub fn bucket_lower(b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        SCALE * GROWTH_FACTOR.powi(b as i32 - 1)
    }
}

/// Upper edge of bucket `b` (infinite for the overflow bucket).
pub fn bucket_upper(b: usize) -> f64 {
    if b >= BUCKETS - 1 {
        f64::INFINITY
    } else {
        SCALE * GROWTH_FACTOR.powi(b as i32)
    }
}

/// A representative latency of bucket `b` (its geometric middle).
pub fn bucket_midpoint(b: usize) -> f64 {
    match b {
        0 => SCALE / 2.0,
        b if b >= BUCKETS - 1 => bucket_lower(b),
        b => (bucket_lower(b) * bucket_upper(b)).sqrt(),
    }
}

/// A log-normal latency law in milliseconds (σ = 0 means every request takes exactly the median).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogNormal {
    mu: f64,
    sigma: f64,
}

impl LogNormal {
    /// The law with median `p50_ms` and 99th percentile `p99_ms` (`σ = ln(p99/p50) / z₀.₉₉`); a
    /// p99 below the median means no spread, and non-finite or tiny values are clamped.
    pub fn new(p50_ms: f64, p99_ms: f64) -> LogNormal {
        let sane = |x: f64| {
            if x.is_finite() {
                x.clamp(1e-3, 1e9)
            } else {
                1e-3
            }
        };
        let p50 = sane(p50_ms);
        let p99 = sane(p99_ms).max(p50);
        LogNormal {
            mu: p50.ln(),
            sigma: (p99 / p50).ln() / Z99,
        }
    }

    /// A key that tells laws apart exactly (for caches).
    pub fn key(&self) -> (u64, u64) {
        (self.mu.to_bits(), self.sigma.to_bits())
    }

    /// `E[X^k; lo ≤ X < hi]`: for `k = 0` the probability of `[lo, hi)`.
    pub fn partial_moment(&self, k: i32, lo: f64, hi: f64) -> f64 {
        if self.sigma < 1e-9 {
            let x = self.mu.exp();
            return if lo <= x && x < hi { x.powi(k) } else { 0.0 };
        }
        let k = f64::from(k);
        let s2 = self.sigma * self.sigma;
        let shift = self.mu + k * s2;
        let z = |x: f64| {
            if x <= 0.0 {
                f64::NEG_INFINITY
            } else {
                (x.ln() - shift) / self.sigma
            }
        };
        let scale = (k * self.mu + k * k * s2 / 2.0).exp();
        scale * (std_normal_cdf(z(hi)) - std_normal_cdf(z(lo))).max(0.0)
    }

    /// The probability of each of the [`BUCKETS`] buckets.
    pub fn bucket_probabilities(&self) -> [f64; BUCKETS] {
        std::array::from_fn(|b| self.partial_moment(0, bucket_lower(b), bucket_upper(b)))
    }

    /// The same law with every latency `k` times longer.
    pub fn scaled(&self, k: f64) -> LogNormal {
        LogNormal {
            mu: self.mu + k.max(1e-9).ln(),
            sigma: self.sigma,
        }
    }

    /// The same shape (σ) with median `median_ms` and spread `sigma` (log scale).
    pub fn with_sigma(median_ms: f64, sigma: f64) -> LogNormal {
        LogNormal {
            mu: median_ms.max(1e-3).ln(),
            sigma: sigma.max(0.0),
        }
    }

    /// P(X > x).
    pub fn survival(&self, x: f64) -> f64 {
        self.partial_moment(0, x, f64::INFINITY)
    }

    /// The `q` quantile (0 < q < 1), ms, found by bisection on [`LogNormal::survival`].
    pub fn quantile(&self, q: f64) -> f64 {
        mixture_quantile(&[(1.0, *self)], q)
    }
}

/// The `q` quantile (0 < q < 1) of a mixture of log-normal laws (weights summing to 1), ms.
pub fn mixture_quantile(parts: &[(f64, LogNormal)], q: f64) -> f64 {
    let above = |x: f64| parts.iter().map(|(w, l)| w * l.survival(x)).sum::<f64>();
    let (mut lo, mut hi) = (1e-3_f64, 1e9_f64);
    for _ in 0..200 {
        let mid = (lo * hi).sqrt();
        if above(mid) > 1.0 - q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo * hi).sqrt()
}

/// Φ(z) for the standard normal distribution (±∞ give 0 and 1).
fn std_normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2))
}

/// What some requests of one revision were: counts in Cloud Run's buckets (see [`bounds`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    pub requests: u64,
    pub errors_5xx: u64,
    /// One count per bucket ([`BUCKETS`] of them).
    pub counts: Vec<u64>,
}

/// What a revision does with each request: its 5xx ratio and a log-normal latency.
#[derive(Clone, Debug)]
pub struct Behaviour {
    error_rate: f64,
    /// (bucket index, probability) for the buckets a request can land in.
    buckets: Vec<(usize, f64)>,
}

impl Behaviour {
    /// A revision answering 5xx with probability `error_rate` and taking a log-normal time with
    /// median `p50_ms` and 99th percentile `p99_ms`.
    pub fn new(error_rate: f64, p50_ms: f64, p99_ms: f64) -> Behaviour {
        let buckets = LogNormal::new(p50_ms, p99_ms)
            .bucket_probabilities()
            .into_iter()
            .enumerate()
            .filter(|(_, p)| *p > 1e-15)
            .collect();
        Behaviour {
            error_rate: error_rate.clamp(0.0, 1.0),
            buckets,
        }
    }

    /// A revision answering 5xx with probability `error_rate` whose latency follows a mixture
    /// of log-normal laws (`(weight, law)`, weights summing to 1): a tail that only some
    /// requests take (a slow dependency, one slow instance).
    pub fn mixture(error_rate: f64, parts: &[(f64, LogNormal)]) -> Behaviour {
        let mut probs = [0.0; BUCKETS];
        for (w, law) in parts {
            for (p, q) in probs.iter_mut().zip(law.bucket_probabilities()) {
                *p += w * q;
            }
        }
        Behaviour {
            error_rate: error_rate.clamp(0.0, 1.0),
            buckets: probs
                .into_iter()
                .enumerate()
                .filter(|(_, p)| *p > 1e-15)
                .collect(),
        }
    }

    /// The 5xx ratio.
    pub fn error_rate(&self) -> f64 {
        self.error_rate
    }

    /// Requests in one stretch of time with `lam` expected requests, split into (5xx or not) ×
    /// latency bucket cells, each an independent Poisson count: exactly a thinned Poisson
    /// process. Adds them to `counts` ([`BUCKETS`] of them) and returns (requests, 5xx).
    pub fn sample_into(&self, rng: &mut fastrand::Rng, lam: f64, counts: &mut [u64]) -> (u64, u64) {
        let (mut n, mut e) = (0, 0);
        if lam > 0.0 {
            for &(i, p) in &self.buckets {
                let ok = poisson(rng, lam * p * (1.0 - self.error_rate));
                let err = poisson(rng, lam * p * self.error_rate);
                counts[i] += ok + err;
                n += ok + err;
                e += err;
            }
        }
        (n, e)
    }

    /// The same draws as [`Behaviour::sample_into`] (same order, so the same seed gives the
    /// same requests) with the 5xx ratio `error_rate` instead of the revision's own, kept
    /// apart by class: the non-5xx requests' latencies into `ok`, the 5xx ones' into `err`
    /// (errors take their latency from the same law). Returns (non-5xx, 5xx).
    pub fn sample_split(
        &self,
        rng: &mut fastrand::Rng,
        lam: f64,
        error_rate: f64,
        ok: &mut [u64],
        err: &mut [u64],
    ) -> (u64, u64) {
        let r = error_rate.clamp(0.0, 1.0);
        let (mut n_ok, mut n_err) = (0, 0);
        if lam > 0.0 {
            for &(i, p) in &self.buckets {
                let o = poisson(rng, lam * p * (1.0 - r));
                let e = poisson(rng, lam * p * r);
                ok[i] += o;
                err[i] += e;
                n_ok += o;
                n_err += e;
            }
        }
        (n_ok, n_err)
    }

    /// What this revision serves with `lam` expected requests.
    pub fn sample(&self, rng: &mut fastrand::Rng, lam: f64) -> Served {
        let mut counts = vec![0; BUCKETS];
        let (requests, errors_5xx) = self.sample_into(rng, lam, &mut counts);
        Served {
            requests,
            errors_5xx,
            counts,
        }
    }

    /// The expected counts of `n` requests, rounded (deterministic).
    pub fn expected(&self, n: u64) -> Served {
        let mut counts = vec![0; BUCKETS];
        for &(i, p) in &self.buckets {
            counts[i] = (n as f64 * p).round() as u64;
        }
        let requests = counts.iter().sum();
        Served {
            requests,
            errors_5xx: (requests as f64 * self.error_rate).round() as u64,
            counts,
        }
    }
}

/// ln k! (exact below 10, Stirling's series above: error below 1e-10).
fn ln_factorial(k: u64) -> f64 {
    const SMALL: [f64; 10] = [
        1.0, 1.0, 2.0, 6.0, 24.0, 120.0, 720.0, 5040.0, 40320.0, 362880.0,
    ];
    if k < 10 {
        return SMALL[k as usize].ln();
    }
    let k = k as f64;
    let k2 = k * k;
    k * k.ln() - k + 0.5 * (2.0 * std::f64::consts::PI * k).ln() + 1.0 / (12.0 * k)
        - 1.0 / (360.0 * k * k2)
        + 1.0 / (1260.0 * k * k2 * k2)
}

/// A Poisson draw: inversion for small means, Hörmann's PTRS (transformed rejection) above.
pub fn poisson(rng: &mut fastrand::Rng, lam: f64) -> u64 {
    if lam.is_nan() || lam <= 0.0 {
        return 0;
    }
    if lam < 10.0 {
        let u = rng.f64();
        let mut k = 0u64;
        let mut p = (-lam).exp();
        let mut s = p;
        while u > s && k < 10_000 {
            k += 1;
            p *= lam / k as f64;
            s += p;
        }
        return k;
    }
    let slam = lam.sqrt();
    let loglam = lam.ln();
    let b = 0.931 + 2.53 * slam;
    let a = -0.059 + 0.02483 * b;
    let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let vr = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = rng.f64() - 0.5;
        let v = rng.f64();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + lam + 0.43).floor();
        if us >= 0.07 && v <= vr {
            return k as u64;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        let lhs = v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln();
        if lhs <= -lam + k * loglam - ln_factorial(k as u64) {
            return k as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_cloud_runs() {
        let b = bounds();
        assert_eq!(b.len(), NUM_FINITE_BUCKETS + 1);
        assert_eq!((b[0], b[1]), (1.0, 1.4));
        assert_eq!((bucket_lower(1), bucket_upper(1)), (b[0], b[1]));
        assert_eq!(bucket_upper(BUCKETS - 1), f64::INFINITY);
    }

    #[test]
    fn a_log_normal_puts_half_its_mass_below_the_median_and_1_percent_above_p99() {
        let law = LogNormal::new(50.0, 200.0);
        let below = |x: f64| law.partial_moment(0, 0.0, x);
        assert!((below(50.0) - 0.5).abs() < 1e-9);
        assert!((below(200.0) - 0.99).abs() < 1e-9);
        let total: f64 = law.bucket_probabilities().iter().sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn expected_counts_follow_the_error_rate() {
        let served = Behaviour::new(0.01, 50.0, 200.0).expected(10_000);
        assert_eq!(served.counts.iter().sum::<u64>(), served.requests);
        assert!(served.requests.abs_diff(10_000) <= 20);
        assert_eq!(
            served.errors_5xx,
            (served.requests as f64 * 0.01).round() as u64
        );
    }

    #[test]
    fn split_draws_are_the_same_requests_kept_by_class() {
        let b = Behaviour::new(0.05, 50.0, 200.0);
        let mut counts = vec![0; BUCKETS];
        let (n, e) = b.sample_into(&mut fastrand::Rng::with_seed(3), 5000.0, &mut counts);
        let (mut ok, mut err) = (vec![0; BUCKETS], vec![0; BUCKETS]);
        let (o, x) = b.sample_split(
            &mut fastrand::Rng::with_seed(3),
            5000.0,
            b.error_rate(),
            &mut ok,
            &mut err,
        );
        assert_eq!((o + x, x), (n, e));
        let merged: Vec<u64> = ok.iter().zip(&err).map(|(a, b)| a + b).collect();
        assert_eq!(merged, counts);
        assert_eq!(err.iter().sum::<u64>(), e);
    }

    #[test]
    fn quantiles_of_a_law_and_of_a_mixture() {
        let law = LogNormal::new(50.0, 200.0);
        assert!((law.quantile(0.99) / 200.0 - 1.0).abs() < 1e-6);
        assert!((law.scaled(3.0).quantile(0.5) / 150.0 - 1.0).abs() < 1e-6);
        // Half the requests 10× slower: by symmetry (same σ) the median is the geometric
        // middle of the two medians, √(50 × 500).
        let m = mixture_quantile(&[(0.5, law), (0.5, law.scaled(10.0))], 0.5);
        assert!((m / (50.0_f64 * 500.0).sqrt() - 1.0).abs() < 1e-6, "{m}");
    }

    #[test]
    fn poisson_draws_have_the_right_mean_and_variance() {
        let mut rng = fastrand::Rng::with_seed(7);
        for lam in [0.3, 4.0, 25.0, 900.0] {
            let n = 20_000;
            let xs: Vec<f64> = (0..n).map(|_| poisson(&mut rng, lam) as f64).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            let se = (lam / n as f64).sqrt();
            assert!((mean - lam).abs() < 5.0 * se, "λ {lam}: mean {mean}");
            assert!((var / lam - 1.0).abs() < 0.08, "λ {lam}: variance {var}");
        }
    }
}
