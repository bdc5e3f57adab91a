//! The operator verbs of the real `cutover` binary (`status`, `history`, `plan`, `start`,
//! `promote`, `rollback`, `pause`, `resume`) against the fakes, beside an in-process server
//! whose ticks keep running: a verb is one more writer through the same guarded update.

use std::collections::{BTreeMap, BTreeSet};

use cutover_fakes::RevisionProfile;

use crate::helpers::*;
use crate::support::TestApp;

#[path = "../chaos/invariants.rs"]
#[allow(
    dead_code,
    reason = "the chaos suite's checks, of which this test uses the history's"
)]
mod invariants;

/// A step is judged 8 minutes after traffic moved (5-minute soak + 3-minute metrics delay).
const JUDGED_AFTER: u32 = 8;
/// The default bake after the last step (`CUTOVER_BAKE`).
const BAKE: u32 = 10;

async fn app() -> TestApp {
    TestApp::start_now(PROJECT, REGION, &[]).await
}

/// Ticks a minute at a time, up to `max` minutes, until `done`. These tests run on a clock
/// started at the wall-clock time (their verbs are the real binary), and the fake's traffic is
/// drawn per minute of it: a healthy step may need a few more looks on an unlucky draw, which is
/// not what these tests are about.
async fn tick_until(t: &TestApp, max: u32, done: impl Fn(&TestApp) -> bool) {
    for _ in 0..max {
        if done(t) {
            return;
        }
        t.tick_minutes(1).await;
    }
}

fn history_entries(t: &TestApp, service: &str) -> Vec<serde_json::Value> {
    let h = t
        .annotation(service, "cutover.dev/history")
        .expect("a history annotation");
    serde_json::from_str(&h).expect("the history is a JSON array")
}

#[tokio::test]
async fn a_rollout_paused_by_a_manual_change_resumes_from_that_split_and_completes() {
    let t = app().await;
    t.service("manual", 20.0);
    t.release("manual", RevisionProfile::healthy()).await;
    t.tick_minutes(2).await;

    let refused = t.verb("resume", &["manual"]).await;
    assert_eq!(
        refused.code, 2,
        "a running rollout is not resumed: {refused:?}"
    );
    assert!(
        refused.stdout.contains("only a paused rollout resumes"),
        "{refused:?}"
    );

    t.change_traffic_by_hand("manual").await;

    let r = t.verb("resume", &["manual"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("resume (applied)"), "{r:?}");
    assert_eq!(
        t.split("manual"),
        vec![(stable_of("manual"), 70), (candidate_of("manual"), 30)],
        "resume keeps the person's split"
    );
    assert_eq!(
        t.annotation("manual", "cutover.dev/phase").as_deref(),
        Some("progressing")
    );
    assert_eq!(
        t.annotation("manual", "cutover.dev/percent").as_deref(),
        Some("30")
    );
    assert_eq!(
        t.annotation("manual", "cutover.dev/actor").as_deref(),
        Some("alice")
    );
    let last = history_entries(&t, "manual").pop().unwrap();
    assert_eq!(
        (last["d"].as_str(), last["by"].as_str()),
        (Some("resume"), Some("alice"))
    );

    // Judged from 30%: the next configured step above it, then 100%, then complete.
    t.tick_minutes(JUDGED_AFTER).await;
    tick_until(&t, 30, |t| t.candidate_steps("manual").last() == Some(&50)).await;
    assert_eq!(
        t.split("manual"),
        vec![(stable_of("manual"), 50), (candidate_of("manual"), 50)]
    );
    t.tick_minutes(JUDGED_AFTER).await;
    t.tick_minutes(JUDGED_AFTER + BAKE).await;
    tick_until(&t, 30, |t| {
        t.annotation("manual", "cutover.dev/phase").as_deref() == Some("completed")
    })
    .await;
    assert_eq!(
        t.annotation("manual", "cutover.dev/phase").as_deref(),
        Some("completed")
    );
    assert_eq!(t.split("manual"), vec![(candidate_of("manual"), 100)]);
}

#[tokio::test]
async fn promote_full_moves_a_held_rollout_to_100_percent_and_completes_it_after_the_bake() {
    let t = app().await;
    // 3 requests a minute: never enough to judge, so the 10% step holds.
    t.service("quiet", 0.05);
    t.release("quiet", RevisionProfile::healthy()).await;
    t.tick_minutes(JUDGED_AFTER + 2).await;
    assert_eq!(t.candidate_steps("quiet"), vec![0, 10], "held at 10%");

    let r = t.verb("promote", &["quiet", "--full"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(t.split("quiet"), vec![(candidate_of("quiet"), 100)]);
    assert_eq!(
        t.annotation("quiet", "cutover.dev/phase").as_deref(),
        Some("baking"),
        "a promotion is guarded by the bake like a last step that passed"
    );
    assert!(
        t.annotation("quiet", "cutover.dev/reason")
            .unwrap()
            .contains("promoted by alice")
    );
    t.tick_minutes(BAKE).await;
    assert_eq!(
        t.annotation("quiet", "cutover.dev/phase").as_deref(),
        Some("completed")
    );

    let again = t.verb("promote", &["quiet"]).await;
    assert_eq!(
        again.code, 2,
        "a completed rollout is not promoted: {again:?}"
    );
}

#[tokio::test]
async fn rollback_of_a_healthy_rollout_returns_everything_to_stable_for_good() {
    let t = app().await;
    t.service("undo", 20.0);
    t.release("undo", RevisionProfile::healthy()).await;
    t.tick_minutes(JUDGED_AFTER).await;
    tick_until(&t, 30, |t| t.candidate_steps("undo").last() == Some(&50)).await;
    assert_eq!(t.candidate_steps("undo"), vec![0, 10, 50]);

    let r = t.verb("rollback", &["undo"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(t.split("undo"), vec![(stable_of("undo"), 100)]);
    assert_eq!(
        t.annotation("undo", "cutover.dev/rolled-back").as_deref(),
        Some(candidate_of("undo").as_str())
    );

    // The same build delivered again, and an hour of ticks: the revision stays out.
    let p = t.build("undo").await;
    assert_eq!(p.status, 200, "{}", p.body);
    t.tick_minutes(60).await;
    assert_eq!(t.split("undo"), vec![(stable_of("undo"), 100)]);
    assert_eq!(
        t.annotation("undo", "cutover.dev/phase").as_deref(),
        Some("rolled-back")
    );

    for (verb, args) in [
        ("promote", vec!["undo"]),
        ("rollback", vec!["undo"]),
        ("start", vec!["undo"]),
    ] {
        let r = t.verb(verb, &args).await;
        assert_eq!(r.code, 2, "{verb} is refused after a rollback: {r:?}");
    }
    // Naming the revision is a person's explicit choice.
    let candidate = candidate_of("undo");
    let r = t.verb("start", &["undo", "--revision", &candidate]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(t.candidate_steps("undo").last(), Some(&10));
}

#[tokio::test]
async fn status_json_names_every_active_rollout_and_a_missing_service_fails() {
    let t = app().await;
    for s in ["alpha", "beta", "idle"] {
        t.service(s, 20.0);
    }
    t.release("alpha", RevisionProfile::healthy()).await;
    t.release("beta", RevisionProfile::healthy()).await;
    t.tick_minutes(1).await;
    let p = t.verb("pause", &["beta"]).await;
    assert_eq!(p.code, 0, "{p:?}");

    let r = t.verb("status", &["--output", "json"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).expect("valid JSON");
    let by_name: BTreeMap<&str, &serde_json::Value> = rows
        .iter()
        .map(|row| (row["service"].as_str().unwrap(), row))
        .collect();
    assert_eq!(
        by_name.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(["alpha", "beta"]),
        "every active rollout, no idle service: {}",
        r.stdout
    );
    assert_eq!(by_name["alpha"]["phase"], "progressing");
    assert_eq!(by_name["alpha"]["step"], 10);
    assert!(by_name["alpha"]["next_judgement"].is_string());
    assert_eq!(by_name["beta"]["phase"], "paused (operator)");
    assert_eq!(by_name["beta"]["last_actor"], "alice");

    let missing = t.verb("status", &["nosuch"]).await;
    assert_ne!(missing.code, 0, "{missing:?}");
    assert!(missing.stderr.contains("does not exist"), "{missing:?}");

    let h = t.verb("history", &["beta"]).await;
    assert_eq!(h.code, 0, "{h:?}");
    assert!(h.stdout.contains("cutover pause"), "{}", h.stdout);
    assert!(h.stdout.contains("start"), "{}", h.stdout);

    let plan = t.verb("plan", &["alpha"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(plan.stdout.contains("would decide hold"), "{}", plan.stdout);
    let written = t.fake.history(PROJECT, REGION, "alpha").len();
    t.verb("plan", &["alpha"]).await;
    assert_eq!(
        t.fake.history(PROJECT, REGION, "alpha").len(),
        written,
        "plan writes nothing"
    );
}

#[tokio::test]
async fn a_verb_racing_twenty_ticks_keeps_every_traffic_invariant() {
    let t = app().await;
    t.service("race", 20.0);
    t.release("race", RevisionProfile::healthy()).await;
    let verb = t.verb("promote", &["race", "--to", "50"]);
    let ticks = async {
        for _ in 0..20 {
            t.ticks(1).await;
        }
    };
    let (r, ()) = tokio::join!(verb, ticks);
    assert!(
        r.code == 0 || (r.code == 2 && r.stdout.contains("cannot promote")),
        "applied, or refused because the ticks got there first: {r:?}"
    );
    t.tick_minutes(4 * JUDGED_AFTER).await;
    assert_eq!(
        t.annotation("race", "cutover.dev/phase").as_deref(),
        Some("completed")
    );

    let history = t.fake.history(PROJECT, REGION, "race");
    let order = [stable_of("race"), candidate_of("race")];
    let subject = invariants::Subject {
        service: "race",
        history: &history,
        creation_order: &order,
        steps: &[10, 50, 100],
        judged_bad_from: &BTreeMap::new(),
        healthy: &BTreeSet::from([candidate_of("race")]),
        open_incidents: &[],
    };
    let mut violations = Vec::new();
    subject.check(&mut violations);
    assert!(
        violations.is_empty(),
        "{violations:#?}\n{}",
        invariants::dump(&history)
    );
}

#[tokio::test]
async fn the_actor_is_the_credentials_account_when_known_and_a_name_is_required_otherwise() {
    let t = app().await;
    t.service("who", 20.0);
    t.release("who", RevisionProfile::healthy()).await;
    let mut flags = t.verb_flags();
    flags.retain(|f| f != "--actor" && f != "alice");
    let verb = |extra: &[&str], flags: &[String]| {
        let mut argv: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        argv.extend_from_slice(flags);
        crate::support::run_verb(argv)
    };

    // No credentials, no name: nothing is written.
    let anonymous = verb(&["pause", "who"], &flags).await;
    assert_eq!(anonymous.code, 1, "{anonymous:?}");
    assert!(anonymous.stderr.contains("--actor NAME"), "{anonymous:?}");
    assert_eq!(
        t.annotation("who", "cutover.dev/phase").as_deref(),
        Some("progressing")
    );

    // The metadata server's account is known: it is the actor, whatever name is given.
    let auth = flags.iter().position(|f| f == "none").expect("--auth none");
    flags[auth] = "metadata".into();
    let r = verb(&["pause", "who", "--actor", "mallory"], &flags).await;
    assert_eq!(r.code, 0, "{r:?}");
    let actor = t.annotation("who", "cutover.dev/actor").unwrap();
    assert!(actor.ends_with(".iam.gserviceaccount.com"), "{actor}");
    assert!(r.stdout.contains(&format!("paused by {actor}")), "{r:?}");
}

#[tokio::test]
async fn a_verb_on_a_platform_cutover_does_not_serve_says_which_setting_enables_it() {
    let t = app().await;
    t.service("alpha", 20.0);
    t.release("alpha", RevisionProfile::healthy()).await;

    let r = t.verb("status", &["web", "--platform", "app-engine"]).await;
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("app-engine") && r.stderr.contains("CUTOVER_PLATFORMS"),
        "{r:?}"
    );
    let bad = t.verb("status", &["--platform", "gke"]).await;
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stderr.contains("not a platform"), "{bad:?}");

    let r = t
        .verb("status", &["--platform", "cloud-run", "--output", "json"])
        .await;
    assert_eq!(r.code, 0, "{r:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).expect("valid JSON");
    assert_eq!(rows.len(), 1, "{}", r.stdout);
    assert_eq!(rows[0]["platform"], "cloud-run");
}
