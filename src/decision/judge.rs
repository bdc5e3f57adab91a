//! Judging one step from the candidate's own metrics.
//!
//! Three outcomes, and "not enough data" is one of them: cutover never promotes on missing data
//! and never rolls back on it either. The judgement carries every number it used so the decision
//! record can show a person exactly why.

use crate::metrics::{RevisionStats, Window};

use super::policy::Policy;

/// The outcome of judging a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Healthy: move on.
    Pass,
    /// Unhealthy: roll back. The text says which limit was broken.
    Fail(String),
    /// Not enough evidence either way: hold.
    Inconclusive(String),
}

/// What a step was judged on, and the verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub window: Window,
    pub requests: u64,
    pub errors_5xx: u64,
    pub error_rate: f64,
    pub p99_ms: Option<f64>,
    pub min_requests: u64,
    pub max_error_rate: f64,
    pub max_p99_ms: f64,
    pub verdict: Verdict,
}

/// Judges the candidate's stats over `window` against `policy`. `None` stats mean the candidate
/// served nothing in the window.
pub fn judge(stats: Option<&RevisionStats>, window: Window, policy: &Policy) -> Judgement {
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
    }
}

impl Judgement {
    /// One line for people: the numbers behind the verdict.
    pub fn summary(&self) -> String {
        let p99 = self
            .p99_ms
            .map(|p| format!("{p:.0} ms"))
            .unwrap_or_else(|| "n/a".into());
        format!(
            "{} requests, 5xx {} (limit {}), p99 {p99} (limit {:.0} ms)",
            self.requests,
            pct(self.error_rate),
            pct(self.max_error_rate),
            self.max_p99_ms
        )
    }
}

/// A ratio as a percentage with sensible precision.
pub fn pct(r: f64) -> String {
    let p = r * 100.0;
    if p == 0.0 || p >= 10.0 {
        format!("{p:.0}%")
    } else if p >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Histogram;

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

    #[test]
    fn too_few_requests_is_inconclusive_even_if_all_failed() {
        let j = judge(Some(&stats(20, 20, 1)), window(), &Policy::default());
        assert!(matches!(j.verdict, Verdict::Inconclusive(_)));
        let j = judge(None, window(), &Policy::default());
        assert!(matches!(j.verdict, Verdict::Inconclusive(_)));
        assert_eq!(j.requests, 0);
    }

    #[test]
    fn errors_and_latency_above_limits_fail() {
        let j = judge(Some(&stats(1000, 200, 1)), window(), &Policy::default());
        assert!(matches!(&j.verdict, Verdict::Fail(r) if r.contains("5xx")));
        let j = judge(Some(&stats(1000, 1, 4)), window(), &Policy::default());
        assert!(
            matches!(&j.verdict, Verdict::Fail(r) if r.contains("p99")),
            "{j:?}"
        );
    }

    #[test]
    fn healthy_numbers_pass_and_are_reported() {
        let j = judge(Some(&stats(1000, 5, 1)), window(), &Policy::default());
        assert_eq!(j.verdict, Verdict::Pass);
        assert_eq!(j.errors_5xx, 5);
        assert!(j.p99_ms.unwrap() <= 200.0);
        assert!(j.summary().contains("1000 requests"));
    }

    #[test]
    fn percentages_read_well() {
        assert_eq!(pct(0.2), "20%");
        assert_eq!(pct(0.01), "1.0%");
        assert_eq!(pct(0.005), "0.50%");
        assert_eq!(pct(0.0), "0%");
    }
}
