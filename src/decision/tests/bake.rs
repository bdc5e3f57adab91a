//! The bake: after the last step, the previous stable stays tagged and an alert or a failed
//! absolute check rolls back to it, until the bake ends and the rollout completes.

use super::*;

/// The default bake (10 minutes), started when the 100% step was judged healthy at `due()`.
fn baking() -> Record {
    Record {
        phase: Phase::Baking,
        percent: 100,
        step_started: due(),
        ..running(100, t0())
    }
}

fn baking_service(r: &Record) -> Observed {
    observed(&[(STABLE, 0), (CANDIDATE, 100)], CANDIDATE, Some(r))
}

fn bake_ends() -> Timestamp {
    due() + Policy::default().bake
}

/// The window the bake asks for: from an hour before the rollout's start (stable's data from
/// then and from the earlier steps is the baseline the candidate is compared with) to now less
/// the metrics delay; the candidate's own data is judged from where the last step's window
/// ended.
fn bake_window(now: Timestamp) -> Window {
    let delay = Policy::default().metrics_delay;
    Window {
        start: t0() - mins(60),
        end: now - delay,
    }
}

/// The 100% step of `obs` judged healthy when it is due.
fn healthy_last_step(obs: &Observed, policy: &Policy) -> Decision {
    // 5000 requests at 0.2%: the 1% limit's confidence sequence shows it within at β (1000
    // requests are too few for the step to 100%, which needs its upper bound below 1%).
    let evidence = stats(judged_window(), 5000, 10, 150.0);
    decide(obs, &tick(), &evidence, policy, due())
}

#[test]
fn a_healthy_last_step_bakes_with_the_previous_stable_still_tagged() {
    let r = running(100, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let d = healthy_last_step(&obs, &Policy::default());
    assert_eq!(d.kind(), Kind::Bake, "{}", d.reason);
    let w = d.write().cloned().unwrap();
    assert_eq!(w.record.phase, Phase::Baking);
    assert_eq!(w.record.step_started, due(), "the bake starts now");
    assert_eq!(
        w.traffic.unwrap(),
        vec![
            Target {
                revision: STABLE.into(),
                percent: 0,
                tag: Some(STABLE_TAG.into()),
            },
            Target {
                revision: CANDIDATE.into(),
                percent: 100,
                tag: Some(CANDIDATE_TAG.into()),
            },
        ],
        "the revision a rollback goes to keeps its tag"
    );
    assert!(d.reason.contains("baking for 10m"), "{}", d.reason);
}

#[test]
fn an_alert_during_the_bake_rolls_back_to_the_previous_stable() {
    let r = baking();
    let d = decide(
        &baking_service(&r),
        &alert(),
        &Evidence::None,
        &Policy::default(),
        due() + mins(4),
    );
    assert_eq!(d.kind(), Kind::Rollback, "{}", d.reason);
    let w = d.write().cloned().unwrap();
    assert_eq!(percents(&w), BTreeMap::from([(STABLE.into(), 100)]));
    assert_eq!(tags(&w)[STABLE_TAG], STABLE);
    assert_eq!(w.record.phase, Phase::RolledBack);
    assert_eq!(w.record.rolled_back, vec![CANDIDATE.to_string()]);
    assert!(
        d.reason.contains("0.abc") && d.reason.contains("during the bake"),
        "{}",
        d.reason
    );
}

#[test]
fn a_failed_absolute_check_during_the_bake_rolls_back() {
    let r = baking();
    let obs = baking_service(&r);
    let now = due() + mins(5);
    let d = decide(&obs, &tick(), &Evidence::None, &Policy::default(), now);
    assert_eq!(
        d.action,
        Action::Gather(Need::Metrics(bake_window(now))),
        "the candidate's data since the last step's window ended"
    );
    let d = decide(
        &obs,
        &tick(),
        &stats(bake_window(now), 2000, 200, 150.0),
        &Policy::default(),
        now,
    );
    assert_eq!(d.kind(), Kind::Rollback, "{}", d.reason);
    assert_eq!(
        percents(d.write().unwrap()),
        BTreeMap::from([(STABLE.into(), 100)])
    );
    assert!(d.reason.contains("during the bake"), "{}", d.reason);
    assert!(d.judgement.is_some(), "the record carries the numbers");
}

#[test]
fn after_the_bake_the_rollout_completes_and_the_old_stable_loses_its_tag() {
    let r = baking();
    let obs = baking_service(&r);
    let healthy = |now| stats(bake_window(now), 2000, 2, 150.0);
    let before = bake_ends() - SignedDuration::from_secs(1);
    let d = decide(&obs, &tick(), &healthy(before), &Policy::default(), before);
    assert_eq!(d.kind(), Kind::Hold, "{}", d.reason);

    let d = decide(
        &obs,
        &tick(),
        &healthy(bake_ends()),
        &Policy::default(),
        bake_ends(),
    );
    assert_eq!(d.kind(), Kind::Complete, "{}", d.reason);
    let w = d.write().cloned().unwrap();
    assert_eq!(w.record.phase, Phase::Completed);
    assert_eq!(
        w.traffic.unwrap(),
        vec![Target {
            revision: CANDIDATE.into(),
            percent: 100,
            tag: Some(STABLE_TAG.into()),
        }],
        "only the new stable is named: the old one's tag is gone"
    );
    assert!(d.reason.contains("bake of 10m over"), "{}", d.reason);

    // Missing metrics do not hold a rollout whose last step was judged healthy.
    let d = decide(
        &obs,
        &tick(),
        &Evidence::Metrics(Err("unavailable".into())),
        &Policy::default(),
        bake_ends(),
    );
    assert_eq!(d.kind(), Kind::Complete, "{}", d.reason);
}

#[test]
fn an_alert_after_the_bake_changes_nothing() {
    let mut r = baking();
    r.phase = Phase::Completed;
    let obs = observed(&[(CANDIDATE, 100)], CANDIDATE, Some(&r));
    let d = decide(
        &obs,
        &alert(),
        &Evidence::None,
        &Policy::default(),
        bake_ends() + mins(1),
    );
    assert_eq!(d.kind(), Kind::Nothing, "{}", d.reason);
    assert!(d.write().is_none());
}

#[test]
fn a_bake_of_zero_completes_at_the_last_step_as_before() {
    let r = running(100, t0());
    let obs = observed(&split_of(&r), CANDIDATE, Some(&r));
    let policy = Policy {
        bake: SignedDuration::ZERO,
        ..Policy::default()
    };
    let d = healthy_last_step(&obs, &policy);
    assert_eq!(d.kind(), Kind::Complete, "{}", d.reason);
    let mut overridden = obs.clone();
    overridden
        .annotations
        .insert("cutover.dev/bake".into(), "0".into());
    let d = healthy_last_step(&overridden, &Policy::default());
    assert_eq!(
        d.kind(),
        Kind::Complete,
        "a service's own bake of 0: {}",
        d.reason
    );
}

#[test]
fn during_the_bake_a_newer_build_starts_from_the_baking_revision_and_a_manual_change_pauses() {
    let r = baking();
    let mut obs = baking_service(&r);
    obs.latest_ready = Some(NEWER.into());
    let d = decide(
        &obs,
        &build(),
        &Evidence::None,
        &Policy::default(),
        due() + mins(2),
    );
    assert_eq!(d.kind(), Kind::Start, "{}", d.reason);
    let w = d.write().cloned().unwrap();
    assert_eq!(w.record.stable, CANDIDATE, "the revision serving 100%");
    assert_eq!(
        percents(&w),
        BTreeMap::from([(CANDIDATE.into(), 90), (NEWER.into(), 10)])
    );

    let obs = observed(&[(STABLE, 50), (CANDIDATE, 50)], CANDIDATE, Some(&r));
    let d = decide(
        &obs,
        &tick(),
        &Evidence::None,
        &Policy::default(),
        due() + mins(2),
    );
    assert_eq!(d.kind(), Kind::Pause, "{}", d.reason);
    assert_eq!(
        d.write().unwrap().record.phase,
        Phase::Paused(PauseCause::ManualChange)
    );
}
