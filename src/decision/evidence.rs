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

/// One point of one series: what a revision served in one aligned minute, in one response code
/// class. `count` is the distribution's count (authoritative: Monitoring may trim bucket counts,
/// so `latency.total()` can be smaller).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Point {
    pub count: u64,
    pub latency: Histogram,
}

/// One time series as Cloud Monitoring returns it for a service: one revision, one response code
/// class (`2xx`, `4xx`, `5xx`, …), its points keyed by the end of their aligned minute. A minute
/// in which the series served nothing has no point, exactly like Monitoring's answer: an absent
/// point means "nothing" or "not written yet", and only the decision core's completeness rule
/// tells which.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub revision: String,
    pub class: String,
    pub points: BTreeMap<Timestamp, Point>,
}

impl Series {
    /// Whether this series counts 5xx answers.
    pub fn is_5xx(&self) -> bool {
        self.class == "5xx"
    }
}

/// Every revision of a service over one window, minute by minute and series by series, as one
/// Monitoring query grouped by revision and response code class returns it. Totals are derived
/// from the series ([`ServiceStats::revision`]), so they can never disagree with the minutes.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceStats {
    pub window: Window,
    pub series: Vec<Series>,
}

impl ServiceStats {
    /// A window whose every revision served what `totals` says, as one point per revision and
    /// class at the window's end (tests and fakes that do not care about minutes).
    pub fn from_totals(window: Window, totals: BTreeMap<String, RevisionStats>) -> ServiceStats {
        let mut series = Vec::new();
        for (revision, t) in totals {
            let ok = t.requests.saturating_sub(t.errors_5xx);
            for (class, count, latency) in [
                ("2xx", ok, t.latency.clone()),
                ("5xx", t.errors_5xx, Histogram::default()),
            ] {
                if count == 0 && latency.total() == 0 {
                    continue;
                }
                series.push(Series {
                    revision: revision.clone(),
                    class: class.to_string(),
                    points: BTreeMap::from([(window.end, Point { count, latency })]),
                });
            }
        }
        ServiceStats { window, series }
    }

    /// The revisions that served anything in the window.
    pub fn revision_names(&self) -> std::collections::BTreeSet<&str> {
        self.series
            .iter()
            .filter(|s| s.points.values().any(|p| p.count > 0))
            .map(|s| s.revision.as_str())
            .collect()
    }

    /// What `revision` served over the whole window; `None` if it served nothing.
    pub fn revision(&self, revision: &str) -> Result<Option<RevisionStats>, String> {
        self.revision_between(revision, Timestamp::MIN, Timestamp::MAX)
    }

    /// What `revision` served in the minutes ending in `(after, until]`; `None` if nothing.
    pub fn revision_between(
        &self,
        revision: &str,
        after: Timestamp,
        until: Timestamp,
    ) -> Result<Option<RevisionStats>, String> {
        let mut total = RevisionStats::default();
        for s in self.series.iter().filter(|s| s.revision == revision) {
            for (_, p) in s.points.range(..=until).filter(|(end, _)| **end > after) {
                total.add(p, s.is_5xx())?;
            }
        }
        Ok((total.requests > 0).then_some(total))
    }

    /// What `revision` served, minute by minute (keyed by each minute's end). A minute in which no
    /// series of the revision has a point is absent.
    pub fn minutes(&self, revision: &str) -> Result<BTreeMap<Timestamp, RevisionStats>, String> {
        let mut out: BTreeMap<Timestamp, RevisionStats> = BTreeMap::new();
        for s in self.series.iter().filter(|s| s.revision == revision) {
            for (end, p) in &s.points {
                out.entry(*end).or_default().add(p, s.is_5xx())?;
            }
        }
        Ok(out)
    }
}

impl RevisionStats {
    /// Adds one point of a series (`is_5xx`: of the 5xx class).
    fn add(&mut self, p: &Point, is_5xx: bool) -> Result<(), String> {
        self.requests = self.requests.saturating_add(p.count);
        if is_5xx {
            self.errors_5xx = self.errors_5xx.saturating_add(p.count);
        }
        self.latency.merge(&p.latency)
    }
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

    #[test]
    fn totals_and_minutes_come_from_the_same_series() {
        let t = |m: i64| Timestamp::from_second(60 * m).unwrap();
        let point = |count, counts: &[u64]| Point {
            count,
            latency: hist(&[10.0], counts),
        };
        let stats = ServiceStats {
            window: Window {
                start: t(0),
                end: t(3),
            },
            series: vec![
                Series {
                    revision: "a".into(),
                    class: "2xx".into(),
                    points: BTreeMap::from([(t(1), point(9, &[9, 0])), (t(2), point(5, &[4, 1]))]),
                },
                Series {
                    revision: "a".into(),
                    class: "5xx".into(),
                    points: BTreeMap::from([(t(2), point(2, &[0, 2]))]),
                },
            ],
        };
        let all = stats.revision("a").unwrap().unwrap();
        assert_eq!((all.requests, all.errors_5xx), (16, 2));
        assert_eq!(all.latency.counts, vec![13, 3]);
        let minutes = stats.minutes("a").unwrap();
        assert_eq!(minutes[&t(2)].requests, 7);
        assert_eq!(minutes[&t(2)].errors_5xx, 2);
        let late = stats.revision_between("a", t(1), t(3)).unwrap().unwrap();
        assert_eq!((late.requests, late.errors_5xx), (7, 2));
        assert_eq!(stats.revision("b").unwrap(), None);
    }
}
