//! What the simulated revisions served, minute by minute, and how a read of Cloud Monitoring
//! sees it: per revision a `2xx` and a `5xx` series, one point per minute keyed by the minute's
//! end, absent when the series served nothing that minute or when the point is not written yet.
//!
//! A point of the minute ending at `e` is written at `e + metrics_delay + lag`: `lag` is 0
//! unless the scenario makes points late (`late-P`, `lag-P`), so a read at `now` of a window
//! ending at `now − metrics_delay` sees every point, except the late ones, which a later read
//! sees.

use jiff::{SignedDuration, Timestamp};

use cutover::decision::evidence::{Histogram, Point, Series, ServiceStats, Window};
use cutover_fakes::traffic::BUCKETS;

/// The two response code classes the simulator serves.
pub const CLASSES: [&str; 2] = ["2xx", "5xx"];

/// One minute of one revision: per class, its latency counts and how late its point lands.
#[derive(Clone, Debug, PartialEq)]
pub struct Minute {
    /// `counts[class][bucket]`, class 0 = 2xx, 1 = 5xx.
    pub counts: [Vec<u64>; 2],
    pub requests: [u64; 2],
    /// Extra minutes before each class's point is visible.
    pub lag: [u8; 2],
}

impl Minute {
    pub fn empty() -> Minute {
        Minute {
            counts: [vec![0; BUCKETS], vec![0; BUCKETS]],
            requests: [0, 0],
            lag: [0, 0],
        }
    }
}

/// Everything one revision served, minute by minute from the simulation's origin (an hour
/// before the rollout's start, see `Traffic::serve_before`): `minutes[i]` is the minute ending
/// at `origin + i + 1` minutes.
#[derive(Clone, Debug, Default)]
pub struct Served {
    pub minutes: Vec<Minute>,
}

/// The answer of one Monitoring read at `now` for window `w`, grouped by revision and class.
pub fn window_stats(
    w: Window,
    now: Timestamp,
    origin: Timestamp,
    metrics_delay: SignedDuration,
    revisions: &[(&str, &Served)],
    bounds: &[f64],
) -> ServiceStats {
    let mut series = Vec::new();
    for (name, served) in revisions {
        for (class, label) in CLASSES.iter().enumerate() {
            let mut points = std::collections::BTreeMap::new();
            for (i, m) in served.minutes.iter().enumerate() {
                let end = origin + SignedDuration::from_mins(i as i64 + 1);
                if end <= w.start || end > w.end || m.requests[class] == 0 {
                    continue;
                }
                let visible = end + metrics_delay + SignedDuration::from_mins(m.lag[class].into());
                if visible > now {
                    continue;
                }
                points.insert(
                    end,
                    Point {
                        count: m.requests[class],
                        latency: Histogram {
                            bounds: bounds.to_vec(),
                            counts: m.counts[class].clone(),
                        },
                    },
                );
            }
            if !points.is_empty() {
                series.push(Series {
                    revision: name.to_string(),
                    class: label.to_string(),
                    points,
                });
            }
        }
    }
    ServiceStats { window: w, series }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(ok: u64, err: u64, lag: [u8; 2]) -> Minute {
        let mut m = Minute::empty();
        m.counts[0][10] = ok;
        m.counts[1][12] = err;
        m.requests = [ok, err];
        m.lag = lag;
        m
    }

    #[test]
    fn points_are_per_minute_per_class_and_late_ones_appear_later() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |m: i64| t0 + SignedDuration::from_mins(m);
        let served = Served {
            minutes: vec![
                minute(100, 1, [0, 0]),
                minute(90, 0, [0, 0]),
                minute(80, 2, [0, 0]),
                minute(70, 5, [2, 0]),
            ],
        };
        let bounds = cutover_fakes::traffic::bounds();
        let delay = SignedDuration::from_mins(3);
        let read = |now: i64| {
            window_stats(
                Window {
                    start: at(0),
                    end: at(now - 3),
                },
                at(now),
                t0,
                delay,
                &[("r", &served)],
                &bounds,
            )
        };
        let s = read(7);
        let ok = s.series.iter().find(|x| x.class == "2xx").unwrap();
        let err = s.series.iter().find(|x| x.class == "5xx").unwrap();
        // Minute 4's 2xx point is two minutes late: only its 5xx point is there.
        assert_eq!(
            ok.points.keys().copied().collect::<Vec<_>>(),
            vec![at(1), at(2), at(3)]
        );
        assert_eq!(
            err.points.keys().copied().collect::<Vec<_>>(),
            vec![at(1), at(3), at(4)],
            "no point for a minute without 5xx"
        );
        assert_eq!(err.points[&at(4)].latency.counts[12], 5);
        // Two minutes later the late point is there; the window ends later too.
        let later = read(9);
        let m = later.minutes("r").unwrap();
        assert_eq!(m[&at(4)].requests, 75);
        assert_eq!(later.revision("r").unwrap().unwrap().requests, 348);
        assert_eq!(s.revision("r").unwrap().unwrap().requests, 278);
    }
}
