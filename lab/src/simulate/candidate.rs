//! The candidates `lab simulate` rolls out (`--candidates`), and the two revisions' traffic laws
//! each one implies: how the candidate differs from stable, and, for the rows near an absolute
//! limit, what stable itself looks like.
//!
//! Names (K, F: numbers):
//! - `healthy`: identical to stable;
//! - `5xx-xK`: K × stable's 5xx ratio; `p99-xK`: p99 K × stable's, median unchanged (a longer
//!   tail); `latency-xK`: every request K × slower;
//! - `tail-xK`: p99.9 K × stable's with p99 nearly unchanged (a small share of requests very
//!   slow: see [`heavier_tail`]);
//! - `full-5xx-xK`, `full-latency-xK`: the regression appears only in the minutes the
//!   candidate serves 100%; `grow-5xx-xK`, `grow-latency-xK`: it grows with the candidate's
//!   share (×(1 + (K − 1) × share));
//! - `near-5xx-xF`, `near-p99-xF`: the candidate at F × `max_error_rate` (`max_p99_ms`). For
//!   F ≤ 1 stable is identical (a healthy service working near its limit); for F > 1 stable sits
//!   at the limit, so the candidate is F × stable: for 5xx a ratio below `max_error_ratio` and
//!   below the point where the relative test leans to "regressed" ((ρ − 1)/ln ρ ≈ 1.44 for
//!   ρ = 2), for p99 a tail only beyond stable's p95 (see [`heavier_tail`]): only the absolute
//!   limit can catch them.

use cutover_fakes::traffic::{LogNormal, mixture_quantile};

/// z-scores of the 95th and 99th percentiles of a standard normal distribution.
const Z95: f64 = 1.644_853_627;
const Z99: f64 = 2.326_347_874;

/// How a candidate differs from the stable revision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    Healthy,
    Errors(f64),
    P99(f64),
    Latency(f64),
    Tail(f64),
    /// Only at 100% (`growing`: with the share).
    Load {
        errors: f64,
        latency: f64,
        growing: bool,
    },
    NearErrors(f64),
    NearP99(f64),
}

/// A candidate of the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub change: Change,
}

/// What a revision serves: its 5xx ratio and its latency law (a mixture of log-normals).
#[derive(Clone, Debug, PartialEq)]
pub struct Law {
    pub error_rate: f64,
    pub parts: Vec<(f64, LogNormal)>,
}

impl Law {
    fn plain(error_rate: f64, latency: LogNormal) -> Law {
        Law {
            error_rate,
            parts: vec![(1.0, latency)],
        }
    }

    /// The `q` quantile of the latency, ms.
    pub fn quantile(&self, q: f64) -> f64 {
        mixture_quantile(&self.parts, q)
    }
}

/// The stable revision of the grid: its 5xx ratio and latency percentiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Baseline {
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The absolute limits in force (`max_error_rate`, `max_p99_ms`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub max_error_rate: f64,
    pub max_p99_ms: f64,
}

/// Both revisions of one rollout, and the candidate's load-dependent part.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub stable: Law,
    pub candidate: Law,
    /// (5xx factor, latency factor, growing with the share) applied in the minutes it says.
    pub load: Option<(f64, f64, bool)>,
}

impl Candidate {
    /// Parses a candidate name (see the module documentation).
    pub fn parse(s: &str) -> Result<Candidate, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "{s:?} is not a candidate (healthy, 5xx-xK, p99-xK, latency-xK, tail-xK, \
                 full-5xx-xK, full-latency-xK, grow-5xx-xK, grow-latency-xK, near-5xx-xF, \
                 near-p99-xF; e.g. 5xx-x2)"
            )
        };
        let change = if s == "healthy" {
            Change::Healthy
        } else {
            let (kind, k) = s.rsplit_once("-x").ok_or_else(bad)?;
            let k: f64 = k.parse().map_err(|_| bad())?;
            if !(k.is_finite() && k > 0.0) {
                return Err(bad());
            }
            match kind {
                "5xx" => Change::Errors(k),
                "p99" => Change::P99(k),
                "latency" => Change::Latency(k),
                "tail" => Change::Tail(k),
                "full-5xx" | "grow-5xx" => Change::Load {
                    errors: k,
                    latency: 1.0,
                    growing: kind.starts_with("grow"),
                },
                "full-latency" | "grow-latency" => Change::Load {
                    errors: 1.0,
                    latency: k,
                    growing: kind.starts_with("grow"),
                },
                "near-5xx" => Change::NearErrors(k),
                "near-p99" => Change::NearP99(k),
                _ => return Err(bad()),
            }
        };
        Ok(Candidate {
            name: s.into(),
            change,
        })
    }

    /// No worse than stable (a rollback is a false alarm).
    pub fn is_no_worse(&self) -> bool {
        match self.change {
            Change::Healthy => true,
            Change::Errors(k) | Change::P99(k) | Change::Latency(k) | Change::Tail(k) => k <= 1.0,
            Change::Load {
                errors, latency, ..
            } => errors <= 1.0 && latency <= 1.0,
            Change::NearErrors(f) | Change::NearP99(f) => f <= 1.0,
        }
    }

    /// The candidate's slow-down of stable's p95 (the default compared percentile) and 5xx
    /// factor, for the rows the relative comparison is meant to catch: `p99-xK` moves p95 by
    /// `K^(z95/z99)` (p99 ×1.5 is p95 ×1.33).
    pub fn relative_size(&self) -> Option<(f64, f64)> {
        match self.change {
            Change::Errors(k) => Some((k, 1.0)),
            Change::P99(k) => Some((1.0, k.powf(Z95 / Z99))),
            Change::Latency(k) => Some((1.0, k)),
            _ => None,
        }
    }

    /// Both revisions' laws for this candidate.
    pub fn pair(&self, base: Baseline, limits: Limits) -> Pair {
        let law = LogNormal::new(base.p50_ms, base.p99_ms.max(base.p50_ms));
        let stable = Law::plain(base.error_rate, law);
        let with = |candidate: Law| Pair {
            stable: stable.clone(),
            candidate,
            load: None,
        };
        match self.change {
            Change::Healthy => with(stable.clone()),
            Change::Errors(k) => with(Law::plain(base.error_rate * k, law)),
            Change::P99(k) => with(Law::plain(
                base.error_rate,
                LogNormal::new(base.p50_ms, base.p99_ms * k),
            )),
            Change::Latency(k) => with(Law::plain(base.error_rate, law.scaled(k))),
            Change::Tail(k) => {
                let x = k * law.quantile(0.999);
                with(Law {
                    error_rate: base.error_rate,
                    parts: heavier_tail(law, x, 0.001),
                })
            }
            Change::Load {
                errors,
                latency,
                growing,
            } => Pair {
                load: Some((errors, latency, growing)),
                ..with(stable.clone())
            },
            Change::NearErrors(f) => {
                let s = Law::plain(limits.max_error_rate * f.min(1.0), law);
                Pair {
                    candidate: Law::plain(limits.max_error_rate * f, law),
                    stable: s,
                    load: None,
                }
            }
            Change::NearP99(f) => {
                let at = law.scaled(limits.max_p99_ms * f.min(1.0) / law.quantile(0.99));
                let candidate = if f <= 1.0 {
                    Law::plain(base.error_rate, at)
                } else {
                    Law {
                        error_rate: base.error_rate,
                        parts: heavier_tail(at, limits.max_p99_ms * f, 0.01),
                    }
                };
                Pair {
                    stable: Law::plain(base.error_rate, at),
                    candidate,
                    load: None,
                }
            }
        }
    }
}

/// `law` with a share `w` of its requests replaced by very slow ones (a narrow log-normal,
/// σ 0.1, with median 1.5 × `x`), `w` chosen so exactly `survival` of all requests are slower
/// than `x`: the quantile `1 − survival` moves to `x` while the body of the distribution, and
/// so its median and p95, barely move (`w` is about `survival`).
pub fn heavier_tail(law: LogNormal, x: f64, survival: f64) -> Vec<(f64, LogNormal)> {
    let slow = LogNormal::with_sigma(1.5 * x, 0.1);
    let (sl, ss) = (law.survival(x), slow.survival(x));
    let w = ((survival - sl) / (ss - sl)).clamp(0.0, 1.0);
    vec![(1.0 - w, law), (w, slow)]
}

/// The grid's default stable revision (tests).
#[cfg(test)]
pub(crate) const BASE: Baseline = Baseline {
    error_rate: 0.005,
    p50_ms: 50.0,
    p99_ms: 200.0,
};

/// The default absolute limits (tests).
#[cfg(test)]
pub(crate) const LIMITS: Limits = Limits {
    max_error_rate: 0.01,
    max_p99_ms: 1000.0,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_parse() {
        let p = |s| Candidate::parse(s).unwrap().change;
        assert_eq!(p("5xx-x2"), Change::Errors(2.0));
        assert_eq!(p("p99-x1.5"), Change::P99(1.5));
        assert_eq!(p("latency-x2"), Change::Latency(2.0));
        assert_eq!(p("tail-x3"), Change::Tail(3.0));
        assert_eq!(
            p("full-latency-x1.5"),
            Change::Load {
                errors: 1.0,
                latency: 1.5,
                growing: false
            }
        );
        assert_eq!(p("near-5xx-x1.3"), Change::NearErrors(1.3));
        assert!(Candidate::parse("healthy").unwrap().is_no_worse());
        assert!(Candidate::parse("near-p99-x0.6").unwrap().is_no_worse());
        assert!(!Candidate::parse("near-p99-x1.3").unwrap().is_no_worse());
        for bad in ["sick", "5xx-x", "5xx-x0", "cpu-x2", "full-x2"] {
            assert!(Candidate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tail_only_regression_moves_p99_9_and_keeps_p99() {
        let pair = Candidate::parse("tail-x3").unwrap().pair(BASE, LIMITS);
        let (s, c) = (&pair.stable, &pair.candidate);
        let ratio = |q| c.quantile(q) / s.quantile(q);
        assert!((ratio(0.999) - 3.0).abs() < 0.01, "p99.9 ×{}", ratio(0.999));
        assert!(ratio(0.99) < 1.03, "p99 ×{}", ratio(0.99));
        assert!(ratio(0.95) < 1.01 && ratio(0.5) < 1.001);
    }

    #[test]
    fn near_limit_rows_put_the_candidate_at_its_multiple_of_the_limit() {
        let pair = |s| Candidate::parse(s).unwrap().pair(BASE, LIMITS);
        let p = pair("near-5xx-x0.6");
        assert_eq!(p.stable, p.candidate);
        assert!((p.candidate.error_rate - 0.006).abs() < 1e-12);
        let p = pair("near-5xx-x1.3");
        assert!((p.candidate.error_rate - 0.013).abs() < 1e-12);
        assert!((p.stable.error_rate - 0.01).abs() < 1e-12, "ratio 1.3 < ρ");
        let p = pair("near-p99-x0.6");
        assert_eq!(p.stable, p.candidate);
        assert!((p.candidate.quantile(0.99) / 600.0 - 1.0).abs() < 1e-6);
        let p = pair("near-p99-x1.3");
        assert!((p.candidate.quantile(0.99) / 1300.0 - 1.0).abs() < 1e-3);
        assert!((p.stable.quantile(0.99) / 1000.0 - 1.0).abs() < 1e-6);
        // Only the tail beyond p99 differs (0.7% of requests moved there): p95 within 5%,
        // far below ×1.25, the median within 1%.
        let p95 = p.candidate.quantile(0.95) / p.stable.quantile(0.95);
        assert!(p95 < 1.05, "p95 ×{p95}");
        let p50 = p.candidate.quantile(0.5) / p.stable.quantile(0.5);
        assert!(p50 < 1.01, "p50 ×{p50}");
    }
}
