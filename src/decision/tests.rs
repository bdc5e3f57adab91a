//! The decision core's rules, case by case and as properties over generated states.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::evidence::{Histogram, RevisionStats, ServiceStats, Window};
use super::policy::Mode;
use super::*;

const STABLE: &str = "api-00001-abc";
const CANDIDATE: &str = "api-00002-def";
const NEWER: &str = "api-00003-ghi";

fn t0() -> Timestamp {
    "2026-08-20T10:00:00Z".parse().unwrap()
}

fn mins(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

/// A service serving `alloc`, with `latest` as its latest ready revision and `record` on it.
fn observed(alloc: &[(&str, u8)], latest: &str, record: Option<&Record>) -> Observed {
    let allocation: BTreeMap<String, u8> = alloc
        .iter()
        .filter(|(_, p)| *p > 0)
        .map(|(r, p)| (r.to_string(), *p))
        .collect();
    let mut ready: BTreeSet<String> = alloc.iter().map(|(r, _)| r.to_string()).collect();
    ready.insert(latest.to_string());
    ready.insert(STABLE.to_string());
    let mut annotations =
        BTreeMap::from([("team.example.com/owner".to_string(), "payments".to_string())]);
    if let Some(r) = record {
        annotations.extend(r.to_annotations());
    }
    Observed {
        service: ServiceRef::checked("p", "us-central1", "api").expect("valid ids"),
        latest_ready: Some(latest.to_string()),
        allocation,
        ready,
        tag_urls: BTreeMap::from([(
            CANDIDATE_TAG.to_string(),
            "http://candidate.test".to_string(),
        )]),
        annotations,
    }
}

fn running(percent: u8, step_started: Timestamp) -> Record {
    Record {
        phase: if percent == 0 {
            Phase::Smoke
        } else {
            Phase::Progressing
        },
        candidate: CANDIDATE.into(),
        stable: STABLE.into(),
        percent,
        started: t0(),
        step_started,
        reason: String::new(),
        rolled_back: vec![],
        history: Default::default(),
        build: None,
    }
}

fn split_of(r: &Record) -> Vec<(&'static str, u8)> {
    vec![(STABLE, 100 - r.percent), (CANDIDATE, r.percent)]
}

fn stats(window: Window, requests: u64, errors: u64, latency_ms: f64) -> Evidence {
    let bounds = vec![50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];
    let mut counts = vec![0u64; bounds.len() + 1];
    let bucket = bounds
        .iter()
        .position(|b| latency_ms < *b)
        .unwrap_or(bounds.len());
    counts[bucket] = requests;
    let mut revisions = BTreeMap::new();
    if requests > 0 {
        revisions.insert(
            CANDIDATE.to_string(),
            RevisionStats {
                requests,
                errors_5xx: errors,
                latency: Histogram { bounds, counts },
            },
        );
    }
    Evidence::Metrics(Ok(ServiceStats::from_totals(window, revisions)))
}

fn tick() -> Trigger {
    Trigger::Tick
}

fn build() -> Trigger {
    Trigger::Build {
        build_id: "b-1".into(),
    }
}

fn alert() -> Trigger {
    Trigger::Alert {
        incident_id: "0.abc".into(),
        summary: "5xx above 5/min".into(),
    }
}

fn percents(w: &Write) -> BTreeMap<String, u8> {
    w.traffic
        .as_ref()
        .unwrap()
        .iter()
        .filter(|t| t.percent > 0)
        .map(|t| (t.revision.clone(), t.percent))
        .collect()
}

/// Judged once step 10% has soaked 5 minutes and metrics had 3 minutes to land.
fn due() -> Timestamp {
    t0() + mins(8)
}

fn judged_window() -> Window {
    Window {
        start: t0(),
        end: t0() + mins(5),
    }
}

#[test]
fn a_build_starts_at_the_first_step_with_both_revisions_tagged() {
    let obs = observed(&[(STABLE, 100)], CANDIDATE, None);
    let d = decide(&obs, &build(), &Evidence::None, &Policy::default(), t0());
    assert_eq!(d.kind(), Kind::Start);
    let w = d.write().cloned().unwrap();
    assert_eq!(
        percents(&w),
        BTreeMap::from([(STABLE.into(), 90), (CANDIDATE.into(), 10)])
    );
    let tags: Vec<_> = w
        .traffic
        .unwrap()
        .iter()
        .map(|t| t.tag.clone().unwrap())
        .collect();
    assert_eq!(tags, vec![STABLE_TAG, CANDIDATE_TAG]);
    assert_eq!(w.record.phase, Phase::Progressing);
    assert_eq!(w.record.step_started, t0());
}

#[test]
fn the_build_that_started_a_rollout_never_starts_another() {
    // Blue/green names recur: after green completed, blue is idle, ready and the "latest"
    // a router can offer. The finished build delivered again must not roll traffic back to
    // blue; a new build (new code deployed to blue) must start it.
    let d = decide(
        &observed(&[(STABLE, 100)], CANDIDATE, None),
        &build(),
        &Evidence::None,
        &Policy::default(),
        t0(),
    );
    let started = d
        .write()
        .cloned()
        .expect("the build starts a rollout")
        .record;
    assert_eq!(started.build.as_deref(), Some("b-1"));
    let completed = Record {
        phase: Phase::Completed,
        percent: 100,
        ..started
    };
    let (done_stable, idle) = (CANDIDATE, STABLE);
    let obs = observed(&[(done_stable, 100), (idle, 0)], idle, Some(&completed));
    let again = decide(
        &obs,
        &build(),
        &Evidence::None,
        &Policy::default(),
        t0() + mins(90),
    );
    assert_eq!(again.kind(), Kind::Nothing, "{}", again.reason);
    assert!(
        again.reason.contains("b-1 already started"),
        "{}",
        again.reason
    );

    let next = Trigger::Build {
        build_id: "b-2".into(),
    };
    let d = decide(
        &obs,
        &next,
        &Evidence::None,
        &Policy::default(),
        t0() + mins(90),
    );
    assert_eq!(d.kind(), Kind::Start, "{}", d.reason);
    let w = d.write().unwrap();
    assert_eq!(w.record.candidate, idle);
    assert_eq!(w.record.build.as_deref(), Some("b-2"));
    assert_eq!(
        Record::from_annotations(&w.record.to_annotations())
            .unwrap()
            .unwrap()
            .build
            .as_deref(),
        Some("b-2"),
        "the build id travels in the record's annotations"
    );
}

#[test]
fn with_a_smoke_path_the_candidate_is_tagged_at_zero_first() {
    let policy = Policy {
        smoke_path: Some("/healthz".into()),
        ..Policy::default()
    };
    let obs = observed(&[(STABLE, 100)], CANDIDATE, None);
    let d = decide(&obs, &build(), &Evidence::None, &policy, t0());
    assert_eq!(d.kind(), Kind::Start);
    assert!(
        d.write().is_some_and(Write::continues),
        "the smoke check follows at once"
    );
    let w = d.write().cloned().unwrap();
    assert_eq!(percents(&w), BTreeMap::from([(STABLE.into(), 100)]));
    assert_eq!(w.record.phase, Phase::Smoke);

    let r = w.record;
    let obs = observed(&[(STABLE, 100), (CANDIDATE, 0)], CANDIDATE, Some(&r));
    let d = decide(&obs, &tick(), &Evidence::None, &policy, t0());
    assert_eq!(
        d.action,
        Action::Gather(Need::Smoke("http://candidate.test/healthz".into()))
    );
    let d = decide(
        &obs,
        &tick(),
        &Evidence::Smoke(Err("GET answered 500".into())),
        &policy,
        t0(),
    );
    assert_eq!(d.kind(), Kind::Rollback);
    assert_eq!(
        d.write().unwrap().record.rolled_back,
        vec![CANDIDATE.to_string()]
    );
    let d = decide(&obs, &tick(), &Evidence::Smoke(Ok(())), &policy, t0());
    assert_eq!(d.kind(), Kind::Advance);
    assert_eq!(d.write().cloned().unwrap().record.percent, 10);
}

#[test]
fn nothing_starts_without_a_single_stable_revision() {
    let obs = observed(&[(STABLE, 60), (NEWER, 40)], CANDIDATE, None);
    let d = decide(&obs, &build(), &Evidence::None, &Policy::default(), t0());
    assert_eq!(d.kind(), Kind::Nothing);
    assert!(d.reason.contains("no stable revision"), "{}", d.reason);

    let obs = observed(&[(CANDIDATE, 100)], CANDIDATE, None);
    let d = decide(&obs, &build(), &Evidence::None, &Policy::default(), t0());
    assert_eq!(d.kind(), Kind::Nothing);
    assert!(d.reason.contains("already serves all traffic"));
}

#[test]
fn a_rolled_back_revision_is_not_rolled_out_again_but_a_newer_one_is() {
    let mut r = running(0, t0());
    r.phase = Phase::RolledBack;
    r.rolled_back = vec![CANDIDATE.into()];
    let obs = observed(&[(STABLE, 100), (CANDIDATE, 0)], CANDIDATE, Some(&r));
    let d = decide(&obs, &build(), &Evidence::None, &Policy::default(), t0());
    assert_eq!(d.kind(), Kind::Nothing);
    assert!(d.reason.contains("rolled back before"));

    let obs = observed(&[(STABLE, 100), (CANDIDATE, 0)], NEWER, Some(&r));
    let d = decide(&obs, &build(), &Evidence::None, &Policy::default(), t0());
    assert_eq!(d.kind(), Kind::Start);
    let w = d.write().cloned().unwrap();
    assert_eq!(w.record.candidate, NEWER);
    assert_eq!(
        w.record.rolled_back,
        vec![CANDIDATE.to_string()],
        "the memory is kept"
    );
}

/// The write a build of `NEWER` makes while `r` is on the service with its traffic as written.
fn supersede(r: &Record, policy: &Policy, stable_ready: bool) -> Decision {
    let alloc: Vec<(&str, u8)> = split_of(r).into_iter().filter(|(_, p)| *p > 0).collect();
    let mut obs = observed(&alloc, NEWER, Some(r));
    if !stable_ready {
        assert!(
            !obs.allocation.contains_key(STABLE),
            "a serving revision is ready"
        );
        obs.ready.remove(STABLE);
    }
    decide(
        &obs,
        &build(),
        &Evidence::None,
        policy,
        r.step_started + mins(2),
    )
}

fn tags(w: &Write) -> BTreeMap<String, String> {
    w.traffic
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|t| Some((t.tag.clone()?, t.revision.clone())))
        .collect()
}

#[test]
fn a_newer_candidate_below_100_percent_starts_from_the_recorded_stable() {
    for percent in [0u8, 10, 50] {
        let r = running(percent, t0());
        let d = supersede(&r, &Policy::default(), true);
        assert_eq!(d.kind(), Kind::Start, "at {percent}%: {}", d.reason);
        let w = d.write().cloned().unwrap();
        assert_eq!(
            percents(&w),
            BTreeMap::from([(STABLE.into(), 90), (NEWER.into(), 10)]),
            "at {percent}%: the stable never lost its traffic and takes the old candidate's share"
        );
        assert_eq!(w.record.stable, STABLE);
        assert_eq!(w.record.candidate, NEWER);
        assert!(
            !w.traffic.unwrap().iter().any(|t| t.revision == CANDIDATE),
            "the superseded candidate loses its traffic and its tag"
        );
        assert!(w.record.rolled_back.is_empty(), "replaced, not failed");
    }
}

#[test]
fn a_newer_candidate_during_the_100_percent_soak_starts_from_the_revision_serving_it() {
    let r = running(100, t0());
    assert_eq!(
        r.phase,
        Phase::Progressing,
        "the last step is still soaking"
    );
    let d = supersede(&r, &Policy::default(), true);
    assert_eq!(d.kind(), Kind::Start, "{}", d.reason);
    assert!(d.reason.contains("serves all traffic"), "{}", d.reason);
    let w = d.write().cloned().unwrap();
    assert_eq!(
        percents(&w),
        BTreeMap::from([(CANDIDATE.into(), 90), (NEWER.into(), 10)]),
        "the revision serving 100% keeps 90%; the idle old stable gets nothing back"
    );
    assert_eq!(w.record.stable, CANDIDATE);
    assert_eq!(
        tags(&w),
        BTreeMap::from([
            (STABLE_TAG.into(), CANDIDATE.into()),
            (CANDIDATE_TAG.into(), NEWER.into())
        ])
    );

    // A failing newer candidate then goes back to the revision that served 100% before it.
    let next = w.record;
    let obs = observed(&[(CANDIDATE, 90), (NEWER, 10)], NEWER, Some(&next));
    let d = decide(&obs, &alert(), &Evidence::None, &Policy::default(), due());
    assert_eq!(d.kind(), Kind::Rollback);
    assert_eq!(
        percents(&d.write().cloned().unwrap()),
        BTreeMap::from([(CANDIDATE.into(), 100)])
    );
}

#[test]
fn a_supersede_at_100_percent_needs_no_ready_old_stable() {
    let d = supersede(&running(100, t0()), &Policy::default(), false);
    assert_eq!(d.kind(), Kind::Start, "{}", d.reason);
    assert_eq!(
        percents(&d.write().cloned().unwrap()),
        BTreeMap::from([(CANDIDATE.into(), 90), (NEWER.into(), 10)])
    );
}

#[test]
fn a_supersede_with_a_smoke_check_tags_the_newer_one_beside_what_serves_now() {
    let policy = Policy {
        smoke_path: Some("/healthz".into()),
        ..Policy::default()
    };
    let d = supersede(&running(100, t0()), &policy, true);
    assert_eq!(d.kind(), Kind::Start);
    let w = d.write().cloned().unwrap();
    assert_eq!(percents(&w), BTreeMap::from([(CANDIDATE.into(), 100)]));
    assert_eq!(w.record.phase, Phase::Smoke);
    assert_eq!(w.record.stable, CANDIDATE);
}

#[test]
fn a_paused_rollout_is_superseded_by_the_same_rule() {
    for (cause, stable_ready) in [
        (PauseCause::MaxHold, true),
        (PauseCause::InvalidPolicy, true),
        (PauseCause::StableNotReady, false),
    ] {
        for percent in [10u8, 50, 100] {
            if !stable_ready && percent < 100 {
                continue; // a revision serving traffic is ready
            }
            let mut r = running(percent, t0());
            r.phase = Phase::Paused(cause);
            // (An invalid-policy pause whose override has been fixed since.)
            let d = supersede(&r, &Policy::default(), stable_ready);
            assert_eq!(
                d.kind(),
                Kind::Start,
                "{cause:?} at {percent}%: {}",
                d.reason
            );
            let w = d.write().cloned().unwrap();
            let from = if percent == 100 { CANDIDATE } else { STABLE };
            assert_eq!(
                percents(&w),
                BTreeMap::from([(from.into(), 90), (NEWER.into(), 10)]),
                "{cause:?} at {percent}%"
            );
            assert_eq!(w.record.stable, from);
        }
    }
}

#[test]
fn a_step_soaks_before_it_is_judged() {
    let r = running(10, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let d = decide(
        &obs,
        &tick(),
        &Evidence::None,
        &Policy::default(),
        due() - SignedDuration::from_secs(1),
    );
    assert_eq!(d.kind(), Kind::Hold);
    let d = decide(&obs, &tick(), &Evidence::None, &Policy::default(), due());
    assert_eq!(d.action, Action::Gather(Need::Metrics(judged_window())));
}

/// At 100% the query reaches an hour before the rollout started, so stable's baseline holds
/// its own hour at full traffic besides its minutes during the earlier steps; canary steps
/// still start at their own start.
#[test]
fn at_100_percent_the_window_reaches_an_hour_before_the_rollout() {
    let r = Record {
        started: t0() - mins(20),
        ..running(100, t0())
    };
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let d = decide(&obs, &tick(), &Evidence::None, &Policy::default(), due());
    assert_eq!(
        d.action,
        Action::Gather(Need::Metrics(Window {
            start: t0() - mins(80),
            end: judged_window().end,
        }))
    );
    let r = Record {
        started: t0() - mins(20),
        ..running(50, t0())
    };
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let d = decide(&obs, &tick(), &Evidence::None, &Policy::default(), due());
    assert_eq!(d.action, Action::Gather(Need::Metrics(judged_window())));
}

#[test]
fn a_healthy_step_advances_and_the_last_one_completes() {
    // Without a bake, the rollout completes as soon as its last step is healthy.
    let policy = Policy {
        bake: SignedDuration::ZERO,
        ..Policy::default()
    };
    let mut r = running(10, t0());
    for (from, to) in [(10u8, Some(50u8)), (50, Some(100)), (100, None)] {
        r.percent = from;
        let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
        let d = decide(
            &obs,
            &tick(),
            &stats(judged_window(), 5000, 10, 150.0),
            &policy,
            due(),
        );
        let w = d.write().cloned().unwrap();
        match to {
            Some(to) => {
                assert_eq!(d.kind(), Kind::Advance);
                assert_eq!(w.record.percent, to);
                assert_eq!(percents(&w)[CANDIDATE], to);
                assert_eq!(w.record.step_started, due(), "the next step starts now");
            }
            None => {
                assert_eq!(d.kind(), Kind::Complete);
                assert_eq!(w.record.phase, Phase::Completed);
                let t = w.traffic.unwrap();
                assert_eq!(
                    t,
                    vec![Target {
                        revision: CANDIDATE.into(),
                        percent: 100,
                        tag: Some(STABLE_TAG.into())
                    }]
                );
            }
        }
        assert_eq!(d.judgement.unwrap().requests, 5000);
    }
}

#[test]
fn errors_or_latency_above_the_limits_roll_back() {
    let r = running(10, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    for ev in [
        stats(judged_window(), 1000, 200, 150.0),
        stats(judged_window(), 1000, 0, 3000.0),
    ] {
        let d = decide(&obs, &tick(), &ev, &Policy::default(), due());
        assert_eq!(d.kind(), Kind::Rollback, "{}", d.reason);
        let w = d.write().cloned().unwrap();
        assert_eq!(percents(&w), BTreeMap::from([(STABLE.into(), 100)]));
        assert_eq!(w.record.phase, Phase::RolledBack);
        assert!(
            w.traffic
                .unwrap()
                .iter()
                .any(|t| t.revision == CANDIDATE && t.tag.as_deref() == Some(CANDIDATE_TAG)),
            "tag kept"
        );
    }
}

#[test]
fn too_little_data_holds_then_pauses_after_the_max_hold() {
    let r = running(10, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let policy = Policy::default();
    let d = decide(
        &obs,
        &tick(),
        &stats(judged_window(), 20, 20, 150.0),
        &policy,
        due(),
    );
    assert_eq!(
        d.kind(),
        Kind::Hold,
        "20 failing requests are still too few to judge"
    );
    let late = due() + policy.max_hold;
    let d = decide(
        &obs,
        &tick(),
        &stats(judged_window(), 20, 0, 150.0),
        &policy,
        late,
    );
    assert_eq!(d.kind(), Kind::Pause);
    let w = d.write().cloned().unwrap();
    assert_eq!(w.traffic, None, "a pause does not move traffic");
    assert_eq!(w.record.phase, Phase::Paused(PauseCause::MaxHold));
}

#[test]
fn unavailable_metrics_hold_and_never_roll_back() {
    let r = running(10, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let d = decide(
        &obs,
        &tick(),
        &Evidence::Metrics(Err("HTTP 500".into())),
        &Policy::default(),
        due(),
    );
    assert_eq!(d.kind(), Kind::Hold);
    assert!(d.write().is_none());
}

#[test]
fn traffic_changed_by_hand_pauses_and_is_left_alone() {
    let r = running(10, t0());
    let obs = observed(&[(STABLE, 70), (CANDIDATE, 30)], CANDIDATE, Some(&r));
    let d = decide(&obs, &tick(), &Evidence::None, &Policy::default(), due());
    assert_eq!(d.kind(), Kind::Pause);
    let w = d.write().cloned().unwrap();
    assert_eq!(w.traffic, None);
    assert_eq!(w.record.phase, Phase::Paused(PauseCause::ManualChange));
    // An alert does not override the person either.
    let paused = w.record;
    let obs = observed(&[(STABLE, 70), (CANDIDATE, 30)], CANDIDATE, Some(&paused));
    let d = decide(&obs, &alert(), &Evidence::None, &Policy::default(), due());
    assert_eq!(d.kind(), Kind::Nothing);
}

#[test]
fn an_alert_rolls_back_a_running_rollout_at_once() {
    let r = running(10, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let d = decide(
        &obs,
        &alert(),
        &Evidence::None,
        &Policy::default(),
        t0() + mins(1),
    );
    assert_eq!(d.kind(), Kind::Rollback);
    assert!(d.reason.contains("0.abc"));
    let obs = observed(&[(STABLE, 100)], CANDIDATE, None);
    let d = decide(&obs, &alert(), &Evidence::None, &Policy::default(), t0());
    assert_eq!(d.kind(), Kind::Nothing);
}

#[test]
fn an_invalid_override_pauses_a_running_rollout_and_blocks_a_new_one() {
    let r = running(10, t0());
    let mut obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    obs.annotations
        .insert("cutover.dev/steps".into(), "50,10".into());
    let d = decide(&obs, &tick(), &Evidence::None, &Policy::default(), due());
    assert_eq!(d.kind(), Kind::Pause);
    assert!(d.reason.contains("cutover.dev/steps"), "{}", d.reason);
    let mut obs = observed(&[(STABLE, 100)], CANDIDATE, None);
    obs.annotations
        .insert("cutover.dev/max-error-rate".into(), "lots".into());
    let d = decide(&obs, &build(), &Evidence::None, &Policy::default(), t0());
    assert_eq!(d.kind(), Kind::Error);
    assert!(d.reason.contains("cutover.dev/max-error-rate"));
}

#[test]
fn overrides_change_the_steps_and_limits() {
    let mut obs = observed(&[(STABLE, 100)], CANDIDATE, None);
    obs.annotations
        .insert("cutover.dev/steps".into(), "25,100".into());
    let d = decide(&obs, &build(), &Evidence::None, &Policy::default(), t0());
    assert_eq!(d.write().cloned().unwrap().record.percent, 25);

    let r = running(10, t0());
    let mut obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    obs.annotations
        .insert("cutover.dev/max-p99-ms".into(), "100".into());
    let d = decide(
        &obs,
        &tick(),
        &stats(judged_window(), 1000, 0, 150.0),
        &Policy::default(),
        due(),
    );
    assert_eq!(d.kind(), Kind::Rollback, "150 ms breaks a 100 ms override");
}

#[test]
fn a_stable_revision_that_is_not_ready_cannot_be_rolled_back_to() {
    let r = running(10, t0());
    let mut obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    obs.ready.remove(STABLE);
    let d = decide(&obs, &alert(), &Evidence::None, &Policy::default(), due());
    assert_eq!(d.kind(), Kind::Pause);
    assert_eq!(
        d.write().cloned().unwrap().record.phase,
        Phase::Paused(PauseCause::StableNotReady)
    );
}

#[test]
fn an_unreadable_record_is_an_error_not_a_guess() {
    let mut obs = observed(&[(STABLE, 100)], CANDIDATE, None);
    obs.annotations
        .insert("cutover.dev/phase".into(), "progressing".into());
    let d = decide(&obs, &tick(), &Evidence::None, &Policy::default(), t0());
    assert_eq!(d.kind(), Kind::Error);
    assert!(d.write().is_none());
}

/// Metrics for both revisions over `window`, as one query grouped by revision returns them.
fn both(window: Window, candidate: RevisionStats, stable: RevisionStats) -> Evidence {
    Evidence::Metrics(Ok(ServiceStats::from_totals(
        window,
        BTreeMap::from([
            (CANDIDATE.to_string(), candidate),
            (STABLE.to_string(), stable),
        ]),
    )))
}

fn expected(n: u64, error_rate: f64, p50: f64, p99: f64) -> RevisionStats {
    cutover_fakes::traffic::Behaviour::new(error_rate, p50, p99)
        .expected(n)
        .into()
}

/// The traffic model's counts (in Cloud Run's buckets) as the evidence the judge reads.
impl From<cutover_fakes::traffic::Served> for RevisionStats {
    fn from(served: cutover_fakes::traffic::Served) -> RevisionStats {
        RevisionStats {
            requests: served.requests,
            errors_5xx: served.errors_5xx,
            latency: Histogram {
                bounds: cutover_fakes::traffic::bounds(),
                counts: served.counts,
            },
        }
    }
}

#[test]
fn a_candidate_worse_than_stable_is_rolled_back_though_within_the_limits() {
    let r = running(10, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    // 0.4% 5xx is within the 1% limit, and four times the stable revision's 0.1%.
    let ev = both(
        judged_window(),
        expected(30_000, 0.004, 50.0, 200.0),
        expected(270_000, 0.001, 50.0, 200.0),
    );
    let d = decide(&obs, &tick(), &ev, &Policy::default(), due());
    assert_eq!(d.kind(), Kind::Rollback, "{}", d.reason);
    assert!(d.reason.contains("vs stable"), "{}", d.reason);
    let s = d.judgement.unwrap().statistics.unwrap();
    assert!(s.compared_with_stable);
    assert_eq!(s.stable.unwrap().requests, 270_000);
}

#[test]
fn a_candidate_like_stable_advances_and_the_record_shows_the_comparison() {
    let r = running(10, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let ev = both(
        judged_window(),
        expected(3_000, 0.002, 40.0, 180.0),
        expected(27_000, 0.002, 40.0, 180.0),
    );
    let d = decide(&obs, &tick(), &ev, &Policy::default(), due());
    assert_eq!(d.kind(), Kind::Advance, "{}", d.reason);
    assert!(d.reason.contains("; stable 26999 requests"), "{}", d.reason);
    let j = d.judgement.unwrap();
    let v = j.statistics_json().unwrap();
    assert_eq!(v["compared_with_stable"], true);
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"] == "pass")
    );
}

#[test]
fn without_stable_traffic_a_step_is_judged_on_the_limits_alone_and_says_so() {
    let r = running(10, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let d = decide(
        &obs,
        &tick(),
        &stats(judged_window(), 1000, 2, 150.0),
        &Policy::default(),
        due(),
    );
    assert_eq!(d.kind(), Kind::Advance, "{}", d.reason);
    assert!(d.reason.contains("no stable traffic"), "{}", d.reason);
    let s = d.judgement.unwrap().statistics.unwrap();
    assert!(!s.compared_with_stable);
    assert!(
        s.checks
            .iter()
            .any(|c| c.note.contains("judged on the absolute limits only"))
    );
}

#[test]
fn a_step_that_stays_unsure_holds_from_its_start_and_pauses_after_the_max_hold() {
    // ×1.4 of stable's 5xx with plenty of data: neither "no different" nor "×2" yet.
    let r = running(50, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let policy = Policy::default();
    let ev = both(
        judged_window(),
        expected(250_000, 0.0028, 50.0, 200.0),
        expected(250_000, 0.002, 50.0, 200.0),
    );
    let d = decide(&obs, &tick(), &ev, &policy, due());
    assert_eq!(d.kind(), Kind::Hold, "{}", d.reason);
    assert!(d.reason.contains("not yet told apart"), "{}", d.reason);
    let d = decide(&obs, &tick(), &Evidence::None, &policy, due() + mins(7));
    assert_eq!(
        d.action,
        Action::Gather(Need::Metrics(Window {
            start: t0(),
            end: t0() + mins(12),
        })),
        "the window keeps growing from the step's start"
    );
    let d = decide(&obs, &tick(), &ev, &policy, due() + policy.max_hold);
    assert_eq!(d.kind(), Kind::Pause);
}

#[test]
fn a_candidate_over_the_limit_is_rolled_back_at_its_last_look_instead_of_paused() {
    // 1.22% 5xx against the 1% limit on 36,000 requests (z ≈ 4.2): too little for the
    // confidence sequence, enough for one exact test at the end of the maximum hold. Stable is
    // at the limit too, so the comparison cannot catch it.
    let r = running(10, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let policy = Policy::default();
    let ev = both(
        judged_window(),
        expected(36_000, 0.0122, 50.0, 200.0),
        expected(324_000, 0.01, 50.0, 200.0),
    );
    let d = decide(&obs, &tick(), &ev, &policy, due());
    assert_eq!(d.kind(), Kind::Hold, "{}", d.reason);
    let d = decide(&obs, &tick(), &ev, &policy, due() + policy.max_hold);
    assert_eq!(d.kind(), Kind::Rollback, "{}", d.reason);
    assert!(d.reason.contains("last look"), "{}", d.reason);
}

// ---- properties over generated states ----

#[derive(Debug, Clone)]
struct Case {
    obs: Observed,
    trigger: Trigger,
    evidence: Evidence,
    policy: Policy,
    now: Timestamp,
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Smoke),
        Just(Phase::Progressing),
        Just(Phase::Baking),
        Just(Phase::RolledBack),
        Just(Phase::Completed),
        Just(Phase::Paused(PauseCause::ManualChange)),
        Just(Phase::Paused(PauseCause::MaxHold)),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let record = proptest::option::weighted(
        0.85,
        (
            phase(),
            prop::sample::select(vec![0u8, 10, 50, 100]),
            0i64..120,
            proptest::bool::weighted(0.2),
        ),
    );
    (
        record,
        prop::sample::select(vec![STABLE, CANDIDATE, NEWER]),
        proptest::bool::weighted(0.2), // drifted traffic
        proptest::bool::weighted(0.1), // stable not ready
        prop_oneof![Just(tick()), Just(build()), Just(alert())],
        (
            0u64..5000,
            0u64..100,
            1u32..4000,
            proptest::bool::weighted(0.1),
        ),
        0i64..180, // minutes after the step started
        proptest::bool::weighted(0.3),
    )
        .prop_map(
            |(
                rec,
                latest,
                drifted,
                unready,
                trigger,
                (req, err_pct, lat, metrics_fail),
                after,
                smoke,
            )| {
                let record = rec.map(|(phase, percent, started_ago, failed_before)| {
                    let percent = match phase {
                        Phase::Smoke | Phase::RolledBack => 0,
                        Phase::Completed | Phase::Baking => 100,
                        Phase::Progressing if percent == 0 => 10,
                        _ => percent,
                    };
                    Record {
                        phase,
                        candidate: CANDIDATE.into(),
                        stable: STABLE.into(),
                        percent,
                        started: t0() - mins(started_ago),
                        step_started: t0(),
                        reason: String::new(),
                        rolled_back: if failed_before {
                            vec![NEWER.into()]
                        } else {
                            vec![]
                        },
                        history: Default::default(),
                        build: None,
                    }
                });
                let alloc: Vec<(&str, u8)> = match (&record, drifted) {
                    (_, true) => vec![(STABLE, 35), (CANDIDATE, 65)],
                    (Some(r), false) if r.phase == Phase::Completed => vec![(CANDIDATE, 100)],
                    (Some(r), false) => split_of(r),
                    (None, false) => vec![(STABLE, 100)],
                };
                let mut obs = observed(&alloc, latest, record.as_ref());
                // A revision that serves traffic is ready by definition; one at 0% may not be.
                if unready && !obs.allocation.contains_key(STABLE) && latest != STABLE {
                    obs.ready.remove(STABLE);
                }
                let now = t0() + mins(after);
                let policy = Policy {
                    smoke_path: smoke.then(|| "/ready".to_string()),
                    ..Policy::default()
                };
                let window = Window {
                    start: t0(),
                    end: now - policy.metrics_delay,
                };
                let evidence = if metrics_fail {
                    Evidence::Metrics(Err("unavailable".into()))
                } else {
                    stats(window, req, req * err_pct / 100 / 10, f64::from(lat))
                };
                Case {
                    obs,
                    trigger,
                    evidence,
                    policy,
                    now,
                }
            },
        )
}

mod bake;

/// Decides, answering evidence requests from the case, as the reconciler would.
fn decide_fully(c: &Case, obs: &Observed) -> Decision {
    let d = decide(obs, &c.trigger, &Evidence::None, &c.policy, c.now);
    match &d.action {
        Action::Gather(Need::Metrics(_)) => decide(obs, &c.trigger, &c.evidence, &c.policy, c.now),
        Action::Gather(Need::Smoke(_)) => {
            decide(obs, &c.trigger, &Evidence::Smoke(Ok(())), &c.policy, c.now)
        }
        _ => d,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn traffic_always_sums_to_100_and_names_known_revisions(c in case()) {
        let d = decide_fully(&c, &c.obs);
        if let Some(Write { traffic: Some(t), .. }) = d.write() {
            let sum: u32 = t.iter().map(|t| u32::from(t.percent)).sum();
            prop_assert_eq!(sum, 100);
            for target in t {
                prop_assert!(target.percent == 0 || c.obs.ready.contains(&target.revision), "{} is not ready", target.revision);
            }
        }
    }

    #[test]
    fn at_most_one_step_per_decision(c in case()) {
        let d = decide_fully(&c, &c.obs);
        let before = Record::from_annotations(&c.obs.annotations).unwrap();
        if let (Some(w), Some(b)) = (d.write(), before)
            && w.record.candidate == b.candidate
            && w.traffic.is_some()
        {
            let now = w.record.percent;
            let allowed = now == 0 || now == b.percent || Some(now) == c.policy.next_step(b.percent);
            prop_assert!(allowed, "{}% → {}%: {}", b.percent, now, d.reason);
        }
    }

    #[test]
    fn inconclusive_evidence_never_advances(c in case()) {
        let d = decide_fully(&c, &c.obs);
        // The end of a bake moves no traffic: the last step was judged before the bake began.
        let bake_over = Record::from_annotations(&c.obs.annotations)
            .unwrap()
            .is_some_and(|r| r.phase == Phase::Baking)
            && d.kind() == Kind::Complete;
        if let Some(j) = &d.judgement
            && j.requests < c.policy.min_requests
            && !bake_over
        {
            prop_assert!(!matches!(d.kind(), Kind::Advance | Kind::Complete | Kind::Rollback), "{:?}: {}", d.kind(), d.reason);
        }
        if let Evidence::Metrics(Err(_)) = c.evidence {
            prop_assert!(!matches!(d.kind(), Kind::Advance | Kind::Complete) || d.judgement.is_none());
        }
    }

    #[test]
    fn rollback_gives_everything_to_a_ready_stable_revision(c in case()) {
        let d = decide_fully(&c, &c.obs);
        if d.kind() == Kind::Rollback {
            let w = d.write().unwrap();
            let p = percents(w);
            prop_assert_eq!(p.len(), 1);
            let (rev, pct) = p.iter().next().unwrap();
            prop_assert_eq!(*pct, 100);
            prop_assert_eq!(rev, &w.record.stable);
            prop_assert!(c.obs.ready.contains(rev));
        }
    }

    #[test]
    fn the_same_event_twice_changes_nothing_the_second_time(c in case()) {
        let first = decide_fully(&c, &c.obs);
        let Some(w) = first.write() else { return Ok(()) };
        let after = c.obs.after(w);
        let second = decide_fully(&c, &after);
        if first.write().is_some_and(Write::continues) {
            // A start with a smoke check continues on the next round (as a tick), by design.
            prop_assert_eq!(first.kind(), Kind::Start);
        }
        prop_assert!(second.write().is_none(), "first {:?} ({}), then {:?} ({})", first.kind(), first.reason, second.kind(), second.reason);
    }
}

// ---- a property over generated histories ----

/// The `n`-th revision of the service (a later one is newer).
fn revision(n: usize) -> String {
    format!("api-{n:05}-x")
}

/// What a judged step sees in a generated history.
#[derive(Clone, Copy, Debug)]
enum Health {
    Pass,
    Fail,
    TooFew,
    Unavailable,
}

/// One thing that happens to the service.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// A newer revision is deployed with no traffic and its build arrives.
    Deploy,
    /// `minutes` pass and a tick arrives; a due step is judged on `health`.
    Tick { minutes: i64, health: Health },
    /// A Monitoring incident opens for the service.
    Alert,
    /// Revisions with no traffic scale away and stop being ready (the latest one stays).
    IdleUnready,
    /// A person gives all traffic to the revision serving the most.
    ByHand,
}

fn event() -> impl Strategy<Value = Event> {
    let health = prop_oneof![
        5 => Just(Health::Pass),
        2 => Just(Health::Fail),
        1 => Just(Health::TooFew),
        1 => Just(Health::Unavailable),
    ];
    prop_oneof![
        3 => Just(Event::Deploy),
        10 => (prop::sample::select(vec![1i64, 4, 8, 9, 30, 70]), health)
            .prop_map(|(minutes, health)| Event::Tick { minutes, health }),
        1 => Just(Event::Alert),
        1 => Just(Event::IdleUnready),
        1 => Just(Event::ByHand),
    ]
}

/// Metrics of the record's candidate over `window`, as healthy or failing as `health` says.
fn evidence_for(obs: &Observed, window: Window, health: Health) -> Evidence {
    let (requests, errors) = match health {
        Health::Pass => (1000, 2),
        Health::Fail => (1000, 200),
        Health::TooFew => (20, 0),
        Health::Unavailable => return Evidence::Metrics(Err("unavailable".into())),
    };
    let candidate = Record::from_annotations(&obs.annotations)
        .unwrap()
        .map(|r| r.candidate)
        .unwrap_or_default();
    let Evidence::Metrics(Ok(mut s)) = stats(window, requests, errors, 150.0) else {
        unreachable!()
    };
    for series in &mut s.series {
        series.revision = candidate.clone();
    }
    Evidence::Metrics(Ok(s))
}

/// Checks one traffic write against "a revision that lost all its traffic gets it back only
/// from a rollback to it", then notes who lost their traffic in it.
fn check_no_return(
    lost: &mut BTreeSet<String>,
    before: &BTreeMap<String, u8>,
    after: &BTreeMap<String, u8>,
    rollback_to: Option<&str>,
) -> Result<(), TestCaseError> {
    for rev in after.keys() {
        if lost.contains(rev) {
            prop_assert_eq!(
                Some(rev.as_str()),
                rollback_to,
                "{} lost all its traffic and gets {}% back: {:?} -> {:?}",
                rev,
                after[rev],
                before,
                after
            );
            lost.remove(rev);
        }
    }
    lost.extend(before.keys().filter(|r| !after.contains_key(*r)).cloned());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn a_revision_that_lost_its_traffic_gets_it_back_only_from_a_rollback(
        events in prop::collection::vec(event(), 1..40),
        smoke in proptest::bool::weighted(0.3),
    ) {
        let policy = Policy {
            smoke_path: smoke.then(|| "/ready".to_string()),
            ..Policy::default()
        };
        let mut deployed = 1;
        let mut obs = observed(&[(&revision(1), 100)], &revision(1), None);
        obs.ready = BTreeSet::from([revision(1)]);
        let mut now = t0();
        let mut lost: BTreeSet<String> = BTreeSet::new();
        for e in events {
            let (mut trigger, health) = match e {
                Event::Deploy => {
                    deployed += 1;
                    obs.latest_ready = Some(revision(deployed));
                    obs.ready.insert(revision(deployed));
                    (build(), Health::Pass)
                }
                Event::Tick { minutes, health } => {
                    now += mins(minutes);
                    (tick(), health)
                }
                Event::Alert => (alert(), Health::Pass),
                Event::IdleUnready => {
                    let (alloc, latest) = (&obs.allocation, &obs.latest_ready);
                    obs.ready
                        .retain(|r| alloc.contains_key(r) || latest.as_ref() == Some(r));
                    continue;
                }
                Event::ByHand => {
                    let top = obs.allocation.iter().max_by_key(|(_, p)| **p).map(|(r, _)| r.clone());
                    let after = BTreeMap::from([(top.unwrap(), 100u8)]);
                    check_no_return(&mut lost, &obs.allocation, &after, None)?;
                    obs.allocation = after;
                    continue;
                }
            };
            // As the reconciler does: gather what is asked for, write, go on if asked to.
            for _ in 0..3 {
                let mut d = decide(&obs, &trigger, &Evidence::None, &policy, now);
                d = match &d.action {
                    Action::Gather(Need::Metrics(w)) => {
                        decide(&obs, &trigger, &evidence_for(&obs, *w, health), &policy, now)
                    }
                    Action::Gather(Need::Smoke(_)) => {
                        decide(&obs, &trigger, &Evidence::Smoke(Ok(())), &policy, now)
                    }
                    _ => d,
                };
                let Some(w) = d.write() else { break };
                let next = obs.after(w);
                let to = (d.kind() == Kind::Rollback).then_some(w.record.stable.as_str());
                check_no_return(&mut lost, &obs.allocation, &next.allocation, to)?;
                obs = next;
                if !d.write().is_some_and(Write::continues) {
                    break;
                }
                trigger = tick();
            }
        }
    }
}

#[test]
fn a_kind_reads_as_its_name_in_records_logs_and_tables() {
    assert_eq!(
        serde_json::to_value(Kind::Rollback).unwrap(),
        serde_json::json!("rollback")
    );
    assert!(Kind::Hold == "hold" && Kind::Refused == "refused");
    // The demo's timeline pads the name into a column.
    assert_eq!(format!("{:<9}|", Kind::Start), "start    |");
    assert!(Kind::Pause.is_warning() && !Kind::Advance.is_warning());
}

/// The operator verbs: each allowed where it makes sense, refused (with its reason) elsewhere.
mod operator_verbs {
    use super::*;

    fn op(action: OperatorAction) -> Trigger {
        Trigger::Operator {
            action,
            actor: "alice@example.com".into(),
        }
    }

    fn verb(obs: &Observed, action: OperatorAction) -> Decision {
        decide(obs, &op(action), &Evidence::None, &Policy::default(), due())
    }

    fn with_phase(percent: u8, phase: Phase) -> Record {
        let mut r = running(percent, t0());
        r.phase = phase;
        r
    }

    fn refused(d: &Decision, says: &str) {
        assert_eq!(d.kind(), Kind::Refused, "{}", d.reason);
        assert!(d.write().is_none());
        assert!(
            d.reason.contains(says),
            "{:?} should say {says:?}",
            d.reason
        );
    }

    #[test]
    fn every_verb_on_a_service_without_a_rollout_but_start_is_refused() {
        let obs = observed(&[(STABLE, 100)], STABLE, None);
        for a in [
            OperatorAction::Promote { to: None },
            OperatorAction::Rollback,
            OperatorAction::Pause,
            OperatorAction::Resume,
        ] {
            refused(&verb(&obs, a), "no rollout");
        }
    }

    #[test]
    fn every_verb_on_a_shadowed_service_is_refused_and_writes_nothing() {
        let r = running(10, t0());
        let mut obs = observed(&split_of(&r), CANDIDATE, Some(&r));
        for action in [
            OperatorAction::Start { revision: None },
            OperatorAction::Promote { to: None },
            OperatorAction::Rollback,
            OperatorAction::Pause,
            OperatorAction::Resume,
        ] {
            // Shadowed by its annotation, and by cutover's own setting.
            obs.annotations
                .insert("cutover.dev/mode".into(), "shadow".into());
            refused(&verb(&obs, action.clone()), "shadow mode");
            obs.annotations.remove("cutover.dev/mode");
            let shadow = Policy {
                mode: Mode::Shadow,
                ..Policy::default()
            };
            let d = decide(&obs, &op(action.clone()), &Evidence::None, &shadow, due());
            refused(&d, "shadow mode");
            // Live, the same verb is not refused for being shadowed.
            assert!(!verb(&obs, action).reason.contains("shadow"));
        }
    }

    #[test]
    fn start_rolls_out_the_latest_ready_revision_and_names_the_actor() {
        let obs = observed(&[(STABLE, 100)], CANDIDATE, None);
        let d = verb(&obs, OperatorAction::Start { revision: None });
        assert_eq!(d.kind(), Kind::Start);
        let w = d.write().unwrap();
        assert_eq!(percents(w)[CANDIDATE], 10);
        assert!(w.record.reason.starts_with("started by alice@example.com"));
        assert_eq!(w.record.history.actor.as_deref(), Some("alice@example.com"));
        let e = w.record.history.entries.last().unwrap();
        assert_eq!(
            (e.decision.as_str(), e.trigger.as_str()),
            ("start", "cutover start")
        );
    }

    #[test]
    fn start_is_refused_over_another_candidate_unless_the_revision_is_named() {
        let r = running(10, t0());
        let obs = observed(&split_of(&r), NEWER, Some(&r));
        refused(
            &verb(&obs, OperatorAction::Start { revision: None }),
            "--revision api-00003-ghi",
        );
        let d = verb(
            &obs,
            OperatorAction::Start {
                revision: Some(NEWER.into()),
            },
        );
        assert_eq!(d.kind(), Kind::Start, "{}", d.reason);
        assert_eq!(d.write().unwrap().record.candidate, NEWER);
        refused(
            &verb(
                &obs,
                OperatorAction::Start {
                    revision: Some("api-00009-zzz".into()),
                },
            ),
            "neither the latest ready revision",
        );
    }

    #[test]
    fn a_rolled_back_revision_is_started_again_only_when_named() {
        let mut r = with_phase(0, Phase::RolledBack);
        r.rolled_back = vec![CANDIDATE.into()];
        let obs = observed(&[(STABLE, 100)], CANDIDATE, Some(&r));
        refused(
            &verb(&obs, OperatorAction::Start { revision: None }),
            "was rolled back",
        );
        let d = verb(
            &obs,
            OperatorAction::Start {
                revision: Some(CANDIDATE.into()),
            },
        );
        assert_eq!(d.kind(), Kind::Start, "{}", d.reason);
        // A build still never restarts it on its own.
        let again = decide(&obs, &build(), &Evidence::None, &Policy::default(), due());
        assert_eq!(again.kind(), Kind::Nothing);
    }

    #[test]
    fn promote_full_bakes_then_completes_and_to_percent_advances_but_never_backwards() {
        let r = running(10, t0());
        let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
        let d = verb(&obs, OperatorAction::Promote { to: None });
        assert_eq!(d.kind(), Kind::Bake, "{}", d.reason);
        let w = d.write().unwrap();
        assert_eq!(w.record.phase, Phase::Baking);
        assert_eq!(percents(w)[CANDIDATE], 100);
        // Promoted again during the bake: it ends the bake.
        let baking = w.record.clone();
        let obs_baking = observed(&split_of(&baking), CANDIDATE, Some(&baking));
        let d = verb(&obs_baking, OperatorAction::Promote { to: None });
        assert_eq!(d.kind(), Kind::Complete, "{}", d.reason);
        assert_eq!(d.write().unwrap().record.phase, Phase::Completed);
        // Without a bake, --full completes at once.
        let no_bake = Policy {
            bake: SignedDuration::ZERO,
            ..Policy::default()
        };
        let d = decide(
            &obs,
            &op(OperatorAction::Promote { to: None }),
            &Evidence::None,
            &no_bake,
            due(),
        );
        assert_eq!(d.kind(), Kind::Complete, "{}", d.reason);

        let d = verb(&obs, OperatorAction::Promote { to: Some(75) });
        assert_eq!(d.kind(), Kind::Advance);
        let w = d.write().unwrap();
        assert_eq!(percents(w)[CANDIDATE], 75);
        assert_eq!(w.record.phase, Phase::Progressing);
        assert_eq!(
            w.record.step_started,
            due(),
            "the new step is judged from now"
        );

        refused(
            &verb(&obs, OperatorAction::Promote { to: Some(10) }),
            "cannot promote to 10%",
        );
    }

    #[test]
    fn promote_is_refused_when_rolled_back_completed_or_changed_by_hand() {
        for phase in [Phase::RolledBack, Phase::Completed] {
            let r = with_phase(0, phase);
            let obs = observed(&[(STABLE, 100)], CANDIDATE, Some(&r));
            refused(
                &verb(&obs, OperatorAction::Promote { to: None }),
                "nothing to promote",
            );
        }
        let r = with_phase(10, Phase::Paused(PauseCause::ManualChange));
        let obs = observed(&[(STABLE, 70), (CANDIDATE, 30)], CANDIDATE, Some(&r));
        refused(
            &verb(&obs, OperatorAction::Promote { to: None }),
            "cutover resume",
        );
    }

    #[test]
    fn a_paused_rollout_is_promoted_from_where_it_stopped() {
        let r = with_phase(50, Phase::Paused(PauseCause::MaxHold));
        let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
        let d = verb(&obs, OperatorAction::Promote { to: None });
        assert_eq!(d.kind(), Kind::Bake, "{}", d.reason);
        assert_eq!(percents(d.write().unwrap())[CANDIDATE], 100);
    }

    #[test]
    fn rollback_marks_the_candidate_and_is_refused_when_nothing_is_left_to_undo() {
        let r = running(50, t0());
        let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
        let d = verb(&obs, OperatorAction::Rollback);
        assert_eq!(d.kind(), Kind::Rollback);
        let w = d.write().unwrap();
        assert_eq!(percents(w)[STABLE], 100);
        assert_eq!(w.record.rolled_back, vec![CANDIDATE.to_string()]);
        assert!(w.record.reason.contains("rolled back by alice@example.com"));

        let done = with_phase(100, Phase::Completed);
        let obs = observed(&[(CANDIDATE, 100)], CANDIDATE, Some(&done));
        refused(
            &verb(&obs, OperatorAction::Rollback),
            "--revision api-00001-abc",
        );

        let mut unready = observed(&split_of(&r), CANDIDATE, Some(&r));
        unready.ready.remove(STABLE);
        refused(&verb(&unready, OperatorAction::Rollback), "not ready");
    }

    #[test]
    fn pause_stops_a_running_rollout_without_moving_traffic_and_only_once() {
        let r = running(10, t0());
        let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
        let d = verb(&obs, OperatorAction::Pause);
        assert_eq!(d.kind(), Kind::Pause);
        let w = d.write().unwrap();
        assert_eq!(w.traffic, None);
        assert_eq!(w.record.phase, Phase::Paused(PauseCause::Operator));
        // A tick leaves it alone; a second pause is refused.
        let paused = obs.after(w);
        let tick = decide(&paused, &tick(), &Evidence::None, &Policy::default(), due());
        assert_eq!(tick.kind(), Kind::Nothing);
        refused(&verb(&paused, OperatorAction::Pause), "already paused");
    }

    #[test]
    fn resume_is_refused_unless_paused() {
        for r in [
            running(10, t0()),
            with_phase(0, Phase::RolledBack),
            with_phase(100, Phase::Completed),
        ] {
            let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
            refused(
                &verb(&obs, OperatorAction::Resume),
                "only a paused rollout resumes",
            );
        }
    }

    #[test]
    fn resume_after_a_max_hold_judges_the_same_step_afresh() {
        let r = with_phase(50, Phase::Paused(PauseCause::MaxHold));
        let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
        let d = verb(&obs, OperatorAction::Resume);
        assert_eq!(d.kind(), Kind::Resume);
        let w = d.write().unwrap();
        assert_eq!(percents(w)[CANDIDATE], 50);
        assert_eq!(w.record.phase, Phase::Progressing);
        assert_eq!(w.record.step_started, due());
    }

    #[test]
    fn resume_after_a_manual_change_adopts_the_persons_split_as_the_step() {
        let r = with_phase(10, Phase::Paused(PauseCause::ManualChange));
        let obs = observed(&[(STABLE, 70), (CANDIDATE, 30)], CANDIDATE, Some(&r));
        let d = verb(&obs, OperatorAction::Resume);
        assert_eq!(d.kind(), Kind::Resume, "{}", d.reason);
        let w = d.write().unwrap();
        assert_eq!(
            percents(w),
            BTreeMap::from([(STABLE.into(), 70), (CANDIDATE.into(), 30)])
        );
        assert_eq!(w.record.percent, 30);
        // The next tick sees no drift and, once due, judges 30% and moves to 50%.
        let resumed = obs.after(w);
        let hold = decide(
            &resumed,
            &tick(),
            &Evidence::None,
            &Policy::default(),
            due(),
        );
        assert_eq!(hold.kind(), Kind::Hold, "{}", hold.reason);
    }

    #[test]
    fn resume_refuses_a_split_that_is_not_a_step_of_this_rollout() {
        let r = with_phase(10, Phase::Paused(PauseCause::ManualChange));
        let other = observed(&[(STABLE, 60), (NEWER, 40)], CANDIDATE, Some(&r));
        refused(
            &verb(&other, OperatorAction::Resume),
            "outside this rollout",
        );
        let none = observed(&[(STABLE, 100)], CANDIDATE, Some(&r));
        refused(&verb(&none, OperatorAction::Resume), "serves nothing");
    }

    #[test]
    fn every_write_is_remembered_in_a_bounded_history() {
        let mut r = running(10, t0());
        for i in 0..(record::HISTORY_MEMORY + 5) {
            r.history.push(record::Entry {
                at: t0(),
                decision: "hold".into(),
                trigger: "tick".into(),
                actor: "cutover".into(),
                percent: 10,
                reason: format!("old {i}"),
                judged: None,
            });
        }
        assert_eq!(r.history.entries.len(), record::HISTORY_MEMORY);
        let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
        let d = decide(
            &obs,
            &tick(),
            &stats(judged_window(), 5000, 0, 80.0),
            &Policy::default(),
            due(),
        );
        assert_eq!(d.kind(), Kind::Advance, "{}", d.reason);
        let h = &d.write().unwrap().record.history;
        assert_eq!(
            h.entries.len(),
            record::HISTORY_MEMORY,
            "oldest dropped first"
        );
        let last = h.entries.last().unwrap();
        assert_eq!(
            (last.decision.as_str(), last.actor.as_str()),
            ("advance", "cutover")
        );
        let j = last
            .judged
            .as_ref()
            .expect("a judged step keeps its numbers");
        assert_eq!((j.n, j.e), (5000, 0));
        assert_eq!(j.max_er, Policy::default().max_error_rate);
        assert_eq!(h.entries[0].reason, "old 6");
        // And it reads back from the annotations as written.
        let back = Record::from_annotations(&d.write().unwrap().record.to_annotations()).unwrap();
        assert_eq!(back.unwrap().history, *h);
    }
}
