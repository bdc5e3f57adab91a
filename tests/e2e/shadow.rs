//! Shadow mode: the same decisions as live mode, and not one write reaches Cloud Run.
//!
//! A shadowed candidate gets traffic only if someone routes it. Here the person does what each
//! shadow decision says, by hand (the fake's own edit, not a request from cutover), so the
//! candidate is measured on the traffic live mode would have given it.

use cutover::decision::policy::Mode;
use cutover::reconcile::DecisionRecord;
use cutover_fakes::RevisionProfile;

use crate::helpers::*;

/// Long enough for the whole default rollout and its bake.
const MINUTES: u32 = 40;

/// What must be equal between live and shadow: everything a decision says but how it was
/// written.
fn seen(d: &DecisionRecord) -> String {
    format!(
        "{} {} {} {:?} {:?} {:?} {:?} | {}",
        d.at, d.trigger, d.decision, d.candidate, d.stable, d.percent, d.phase, d.reason
    )
}

/// The service's decisions in live mode, a minute at a time.
async fn live(service: &str, profile: RevisionProfile) -> Vec<String> {
    let mut t = spawn_app(&[]).await;
    t.service(service, 20.0);
    t.release(service, profile).await;
    t.ticks(MINUTES).await;
    let decisions = t.drain();
    assert!(decisions.iter().all(|d| d.mode == Mode::Live));
    decisions.iter().map(seen).collect()
}

/// The same in shadow mode, with a person following each decision's traffic by hand; checks
/// that cutover sent no write.
async fn shadow(service: &str, profile: RevisionProfile) -> Vec<String> {
    let mut t = spawn_app(&["--mode", "shadow"]).await;
    t.service(service, 20.0);
    let mut out = Vec::new();
    let p = t.release(service, profile).await;
    assert_eq!(p.status, 200, "{}", p.body);
    for minute in 0..=MINUTES {
        if minute > 0 {
            t.ticks(1).await;
        }
        for d in t.drain() {
            assert_eq!(d.mode, Mode::Shadow, "{d:?}");
            if d.write != "none" {
                assert_eq!(d.write, "shadow: not written");
                follow(&t, service, &d);
            }
            out.push(seen(&d));
        }
    }
    let writes: Vec<_> = t
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "no write reaches Cloud Run");
    assert_eq!(t.annotation(service, "cutover.dev/phase"), None);
    out
}

/// A person routing traffic as a shadow decision would have.
fn follow(t: &TestApp, service: &str, d: &DecisionRecord) {
    let (Some(candidate), Some(stable), Some(p)) = (&d.candidate, &d.stable, d.percent) else {
        return;
    };
    let split: Vec<(&str, u8)> = match p {
        0 => vec![(stable.as_str(), 100)],
        100 => vec![(candidate.as_str(), 100)],
        p => vec![(stable.as_str(), 100 - p), (candidate.as_str(), p)],
    };
    let now: Vec<(String, u8)> = t.split(service);
    let mut wanted: Vec<(String, u8)> = split.iter().map(|(r, p)| (r.to_string(), *p)).collect();
    wanted.sort();
    if now != wanted {
        t.fake.set_traffic_by_hand(PROJECT, REGION, service, &split);
    }
}

#[tokio::test]
async fn a_healthy_rollout_in_shadow_makes_the_decisions_of_live_mode_and_writes_nothing() {
    let profile = RevisionProfile::healthy();
    let live = live("checkout", profile.clone()).await;
    assert!(
        live.iter().any(|d| d.contains(" complete ")),
        "the live rollout completes: {live:#?}"
    );
    assert_eq!(shadow("checkout", profile).await, live);
}

#[tokio::test]
async fn a_failing_rollout_in_shadow_makes_the_decisions_of_live_mode_and_writes_nothing() {
    let profile = RevisionProfile::healthy().with_error_ratio(0.20);
    let live = live("payments", profile.clone()).await;
    assert!(
        live.iter().any(|d| d.contains(" rollback ")),
        "the live rollout rolls back: {live:#?}"
    );
    assert_eq!(shadow("payments", profile).await, live);
}

#[tokio::test]
async fn one_service_can_be_shadowed_while_the_others_go_live() {
    let mut t = spawn_app(&[]).await;
    t.service("watched", 20.0);
    t.service("trusted", 20.0);
    t.fake
        .set_annotation(PROJECT, REGION, "watched", "cutover.dev/mode", "shadow");
    t.release("watched", RevisionProfile::healthy()).await;
    t.release("trusted", RevisionProfile::healthy()).await;
    t.tick_minutes(8).await;
    let patched: Vec<String> = t
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.path)
        .collect();
    assert!(!patched.is_empty() && patched.iter().all(|p| p.ends_with("/services/trusted")));
    assert_eq!(t.split("watched"), vec![(stable_of("watched"), 100)]);
    assert_eq!(t.annotation("watched", "cutover.dev/phase"), None);
    assert_eq!(t.candidate_steps("trusted"), vec![0, 10, 50]);
    let decisions = t.drain();
    let watched: Vec<_> = decisions
        .iter()
        .filter(|d| d.service.ends_with("/watched"))
        .collect();
    assert!(watched.iter().any(|d| d.decision == "start"), "{watched:?}");
    assert!(watched.iter().all(|d| d.mode == Mode::Shadow));
    assert!(
        decisions
            .iter()
            .filter(|d| d.service.ends_with("/trusted"))
            .all(|d| d.mode == Mode::Live)
    );
}
