//! The step timeline, from a record and its history, for each phase.

use super::*;
use crate::decision::evidence::Window;
use crate::decision::record::{Entry, History, PauseCause};

fn record(phase: Phase, percent: u8, reached: &[u8]) -> Record {
    let at: Timestamp = "2026-08-20T10:00:00Z".parse().unwrap();
    Record {
        phase,
        candidate: "api-2".into(),
        stable: "api-1".into(),
        percent,
        started: at,
        step_started: at,
        reason: String::new(),
        rolled_back: Vec::new(),
        history: History {
            actor: None,
            entries: reached
                .iter()
                .map(|p| Entry {
                    at,
                    decision: "advance".into(),
                    trigger: "tick".into(),
                    actor: "cutover".into(),
                    percent: *p,
                    reason: String::new(),
                    judged: None,
                })
                .collect(),
        },
        build: None,
    }
}

fn states(r: &Record, smoke: bool, bake: bool) -> Vec<String> {
    timeline(r, &[10, 50, 100], smoke, bake)
        .into_iter()
        .map(|s| format!("{} {}", s.label, s.state.as_str()))
        .collect()
}

#[test]
fn the_timeline_marks_done_current_next_and_failed_steps() {
    let at_50 = record(Phase::Progressing, 50, &[10, 50]);
    assert_eq!(
        states(&at_50, true, true),
        [
            "smoke done",
            "10% done",
            "50% current",
            "100% next",
            "bake next"
        ]
    );
    let paused = record(Phase::Paused(PauseCause::MaxHold), 10, &[10]);
    assert_eq!(
        states(&paused, false, false),
        ["10% current", "50% next", "100% next"]
    );
    let rolled_back = record(Phase::RolledBack, 0, &[10, 50, 0]);
    assert_eq!(
        states(&rolled_back, false, true),
        ["10% done", "50% failed", "100% next", "bake next"]
    );
    let baking = record(Phase::Baking, 100, &[10, 50, 100]);
    assert_eq!(
        states(&baking, false, true),
        ["10% done", "50% done", "100% done", "bake current"]
    );
    let done = record(Phase::Completed, 100, &[10, 50, 100]);
    assert!(
        states(&done, false, true)
            .iter()
            .all(|s| s.ends_with("done"))
    );
    let by_hand = record(Phase::Progressing, 30, &[10, 30]);
    assert_eq!(
        states(&by_hand, false, false),
        ["10% done", "30% current", "50% next", "100% next"],
        "a split chosen by hand is the current step"
    );
}

#[test]
fn each_minute_of_a_revision_gets_its_requests_5xx_rate_and_p99() {
    use std::collections::BTreeMap;

    use crate::decision::evidence::{Histogram, Point, Series};

    let t = |m: i64| Timestamp::from_second(60 * m).unwrap();
    let point = |count, counts: &[u64]| Point {
        count,
        latency: Histogram {
            bounds: vec![100.0, 1000.0],
            counts: counts.to_vec(),
        },
    };
    let series = |revision: &str, class: &str, points: Vec<(i64, Point)>| Series {
        revision: revision.into(),
        class: class.into(),
        points: points
            .into_iter()
            .map(|(m, p)| (t(m), p))
            .collect::<BTreeMap<_, _>>(),
    };
    let stats = ServiceStats {
        window: Window {
            start: t(0),
            end: t(2),
        },
        series: vec![
            series(
                "api-2",
                "2xx",
                vec![(1, point(100, &[0, 100, 0])), (2, point(90, &[90, 0, 0]))],
            ),
            series("api-2", "5xx", vec![(2, point(10, &[10, 0, 0]))]),
            series("api-1", "2xx", vec![(1, point(900, &[900, 0, 0]))]),
        ],
    };
    let m = minutes_of(&stats, "api-2").unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].at, t(1), "oldest first");
    assert_eq!((m[0].requests, m[0].errors_5xx), (100, 0));
    assert!(m[0].p99_ms.unwrap() > 100.0, "all between 100 and 1000 ms");
    assert_eq!((m[1].requests, m[1].errors_5xx), (100, 10));
    assert!((m[1].error_rate - 0.1).abs() < 1e-12);
    assert!(m[1].p99_ms.unwrap() < 100.0);
    assert_eq!(minutes_of(&stats, "api-1").unwrap()[0].requests, 900);
    assert!(minutes_of(&stats, "api-0").unwrap().is_empty());
}
