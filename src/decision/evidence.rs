//! The evidence a decision is made on: what revisions served over a window.
//!
//! The decision core asks for request counts, 5xx counts and a latency histogram per revision
//! over a window, and judges on these types alone; where they come from (Cloud Monitoring
//! today, see src/metrics/) is not its concern. Zero traffic is a value (an empty
//! [`RevisionStats`]), which the judge reads as "inconclusive".

use std::collections::BTreeMap;

use jiff::Timestamp;

/// A half-open time window `(start, end]`, as Cloud Monitoring reads intervals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// A latency histogram: `counts[i]` requests fell in bucket `i`.
///
/// `bounds` are the finite bucket boundaries in milliseconds, ascending. Bucket 0 is the
/// underflow bucket `(-inf, bounds[0])`, bucket `i` is `[bounds[i-1], bounds[i])`, and the last
/// bucket is the overflow `[bounds[last], +inf)`, so `counts.len() == bounds.len() + 1`. This is
/// the layout of a Cloud Monitoring `Distribution`, kept as is so no precision is lost before the
/// judge reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
}

impl Histogram {
    /// A histogram with the given boundaries and no samples.
    pub fn empty(bounds: Vec<f64>) -> Self {
        let n = bounds.len() + 1;
        Histogram {
            bounds,
            counts: vec![0; n],
        }
    }

    /// Number of samples.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another histogram's samples. Both must share bucket boundaries; an empty histogram
    /// (no boundaries yet) adopts the other's.
    pub fn merge(&mut self, other: &Histogram) -> Result<(), String> {
        if self.bounds.is_empty() && self.counts.iter().all(|c| *c == 0) {
            *self = other.clone();
            return Ok(());
        }
        if other.bounds.is_empty() && other.counts.iter().all(|c| *c == 0) {
            return Ok(());
        }
        if self.bounds != other.bounds {
            return Err("latency distributions use different bucket layouts".into());
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        Ok(())
    }

    /// The `q` quantile (0 < q ≤ 1) in milliseconds, interpolated linearly inside the bucket
    /// that holds it; `None` without samples. The underflow bucket starts at 0 ms (latencies are
    /// not negative); a quantile in the overflow bucket reports that bucket's lower bound, the
    /// most the data can say.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 || !(q > 0.0 && q <= 1.0) {
            return None;
        }
        let rank = q * total as f64;
        let mut seen = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let next = seen + c as f64;
            if next >= rank {
                let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let Some(&upper) = self.bounds.get(i) else {
                    return Some(lower);
                };
                let lower = lower.min(upper);
                let frac = ((rank - seen) / c as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * frac);
            }
            seen = next;
        }
        self.bounds.last().copied()
    }
}

/// What one revision did over a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevisionStats {
    /// Requests that reached the revision.
    pub requests: u64,
    /// Of those, the ones answered with a 5xx status.
    pub errors_5xx: u64,
    /// Latency of those requests.
    pub latency: Histogram,
}

impl RevisionStats {
    /// 5xx / all, or 0 without requests.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors_5xx as f64 / self.requests as f64
        }
    }
}

/// Every revision of a service over one window. A revision with no requests is absent.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceStats {
    pub window: Window,
    pub revisions: BTreeMap<String, RevisionStats>,
}

/// A histogram from literal bounds and counts, for tests.
#[cfg(test)]
pub(crate) fn hist(bounds: &[f64], counts: &[u64]) -> Histogram {
    Histogram {
        bounds: bounds.to_vec(),
        counts: counts.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 100 samples spread over [10, 20): the median sits half way.
        let h = hist(&[10.0, 20.0, 40.0], &[0, 100, 0, 0]);
        assert_eq!(h.quantile(0.5), Some(15.0));
        assert_eq!(h.quantile(1.0), Some(20.0));
        // 99 fast, 1 slow: p99 is at the top of the fast bucket, p100 in the slow one.
        let h = hist(&[10.0, 20.0, 40.0], &[0, 99, 0, 1]);
        assert_eq!(h.quantile(0.99), Some(20.0));
        assert_eq!(
            h.quantile(1.0),
            Some(40.0),
            "overflow reports its lower bound"
        );
        assert_eq!(Histogram::empty(vec![1.0]).quantile(0.99), None);
    }

    #[test]
    fn merging_needs_the_same_layout() {
        let mut a = Histogram::default();
        a.merge(&hist(&[1.0, 2.0], &[1, 2, 3])).unwrap();
        a.merge(&hist(&[1.0, 2.0], &[1, 0, 1])).unwrap();
        assert_eq!(a.counts, vec![2, 2, 4]);
        assert!(a.merge(&hist(&[1.0, 3.0], &[1, 0, 1])).is_err());
    }
}
