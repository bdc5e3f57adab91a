//! The step timeline, from a record and its history, for each phase.

use super::*;
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
