//! Fan-out through the real Pub/Sub emulator: a tick publishes one evaluation per running
//! rollout of every project in `CUTOVER_PROJECTS`, the emulator pushes each to
//! `/pubsub/evaluations`, and two cutover instances evaluating the same services at once
//! still move each one step, once: the etag-guarded write is the only lock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cutover_fakes::RevisionProfile;
use cutover_fakes::emulator::Emulator;
use cutover_fakes::pusher::Pusher;
use google_cloud_pubsub::model::PushConfig;

use crate::helpers::*;

const OTHER: &str = "second-project";

/// Steps the candidate of `service` in `project` has had, in order (0 first).
fn steps_in(t: &TestApp, project: &str, service: &str) -> Vec<u8> {
    crate::support::candidate_steps_of(&t.fake, project, REGION, service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_fans_out_over_every_project_and_two_instances_move_each_rollout_once() {
    let Some(emu) = Emulator::for_test(PROJECT).await else {
        return;
    };
    let endpoint = format!("http://{}", emu.host);
    let suffix = std::process::id();
    let topic = format!("projects/{PROJECT}/topics/evaluations-{suffix}");
    let (topics, subs) = emulator_admins(&endpoint).await;
    topics
        .create_topic()
        .set_name(&topic)
        .send()
        .await
        .expect("create topic");
    let projects = format!("{PROJECT},{OTHER}");
    let flags = [
        "--projects",
        &projects,
        "--evaluations-topic",
        &topic,
        "--fanout-threshold",
        "0",
        "--pubsub-emulator-host",
        &emu.host,
        // Both instances share a key: each decides on the sealed read the tick carried.
        "--evaluation-key",
        "fan-out test evaluation key, 32 bytes",
    ];
    let mut a = spawn_app(&flags).await;
    let mut b = spawn_on(a.fake.clone(), a.clock.clone(), &flags).await;

    // Each instance has its own subscription: every evaluation reaches both, at about the same
    // time, as when Pub/Sub redelivers one to a second instance while the first still works.
    for (name, t) in [("a", &a), ("b", &b)] {
        subs.create_subscription()
            .set_name(format!(
                "projects/{PROJECT}/subscriptions/evaluations-{name}-{suffix}"
            ))
            .set_topic(&topic)
            .set_ack_deadline_seconds(60)
            .set_push_config(
                PushConfig::new()
                    .set_push_endpoint(format!("{}/pubsub/evaluations", t.push.base())),
            )
            .send()
            .await
            .expect("create push subscription");
    }

    let other_project = Pusher::new(a.push.base(), OTHER);
    let mut services = Vec::new();
    for i in 0..3 {
        let name = format!("own-{i}");
        a.service(&name, 200.0);
        assert_eq!(
            a.release(&name, RevisionProfile::healthy()).await.status,
            200
        );
        services.push((PROJECT, name));
        let name = format!("other-{i}");
        a.deployed_in(OTHER, REGION, &name);
        a.fake.set_rps(OTHER, REGION, &name, 200.0);
        let started = other_project
            .build(&name, REGION, "SUCCESS", a.clock.now())
            .await
            .unwrap();
        assert_eq!(started.status, 200, "{:?}", started.body);
        services.push((OTHER, name));
    }
    for (project, name) in &services {
        assert_eq!(steps_in(&a, project, name), [0, 10], "{project}/{name}");
    }
    // A project outside CUTOVER_PROJECTS is refused, as an unknown region is.
    a.deployed_in("third-project", REGION, "elsewhere");
    let refused = Pusher::new(a.push.base(), "third-project")
        .build("elsewhere", REGION, "SUCCESS", a.clock.now())
        .await
        .unwrap();
    assert_eq!(refused.status, 200);
    assert_eq!(refused.body["decisions"][0]["decision"], "refused");
    assert!(
        refused.body["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("CUTOVER_PROJECTS"),
        "{:?}",
        refused.body
    );
    assert_eq!(steps_in(&a, "third-project", "elsewhere"), [0]);
    a.drain();
    b.drain();

    // Two minutes in, every 10% step still soaks: the tick decides those holds itself, as an
    // evaluation would, and publishes nothing (a message would only come back to that hold).
    a.clock.advance(jiff::SignedDuration::from_mins(2));
    let soaking = a.push.tick(a.clock.now()).await.unwrap();
    assert_eq!(soaking.status, 200, "{:?}", soaking.body);
    assert_eq!(soaking.body["active"], 6, "{:?}", soaking.body);
    assert_eq!(soaking.body["settled"], 6, "{:?}", soaking.body);
    assert_eq!(soaking.body["published"], 0, "{:?}", soaking.body);
    let held = a.drain();
    assert_eq!(held.len(), 6, "{held:?}");
    assert!(
        held.iter()
            .all(|d| d.decision == cutover::decision::Kind::Hold),
        "{held:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.drain().is_empty(), "nothing reached the other instance");

    // The 10% steps are due: the tick lists both projects and publishes, evaluating nothing.
    a.clock.advance(jiff::SignedDuration::from_mins(7));
    let tick = a.push.tick(a.clock.now()).await.unwrap();
    assert_eq!(tick.status, 200, "{:?}", tick.body);
    assert_eq!(tick.body["active"], 6, "{:?}", tick.body);
    assert_eq!(tick.body["published"], 6, "{:?}", tick.body);
    assert_eq!(tick.body["decisions"], serde_json::json!([]));

    // Both instances evaluate every service; only one write per service lands.
    let mut seen: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut applied: BTreeMap<String, usize> = BTreeMap::new();
    let mut reasons = Vec::new();
    let started = Instant::now();
    while seen.values().map(BTreeSet::len).sum::<usize>() < 2 * services.len() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not every evaluation reached both instances: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (who, t) in [("a", &mut a), ("b", &mut b)] {
            for d in t.drain() {
                reasons.push(format!(
                    "{who} {}: {:?} {} ({})",
                    d.service, d.decision, d.reason, d.write
                ));
                if d.write == "applied" {
                    *applied.entry(d.service.clone()).or_default() += 1;
                }
                seen.entry(who).or_default().insert(d.service);
            }
        }
    }
    // The judge may hold a step (inconclusive) or advance it; either way each service was
    // judged, moved at most one step, and had at most one write land.
    let mut advanced = 0;
    for (project, name) in &services {
        let key = format!("{project}/{REGION}/{name}");
        let writes = applied.get(&key).copied().unwrap_or(0);
        let steps = steps_in(&a, project, name);
        match writes {
            0 => assert_eq!(steps, [0, 10], "{key} held: {reasons:#?}"),
            1 => {
                assert_eq!(steps, [0, 10, 50], "{key} moved one step: {reasons:#?}");
                advanced += 1;
            }
            n => panic!("{key}: {n} writes landed: {reasons:#?}"),
        }
    }
    assert!(advanced > 0, "some step advanced: {reasons:#?}");
}

/// `/pubsub/evaluations` answers like the other endpoints: a message that names no service is
/// acknowledged with its reason (redelivering would not help); an evaluation that could not run
/// is answered 503, so Pub/Sub redelivers it rather than losing it.
#[tokio::test]
async fn an_evaluation_that_cannot_run_is_redelivered_and_a_malformed_one_is_acknowledged() {
    let t = spawn_app(&["--event-deadline", "2s"]).await;
    t.service("api", 200.0);
    assert_eq!(
        t.release("api", RevisionProfile::healthy()).await.status,
        200
    );
    let push = |data: Vec<u8>| {
        let push = &t.push;
        let now = t.clock.now();
        async move {
            push.push(
                "/pubsub/evaluations",
                "cutover-evaluations",
                &data,
                &BTreeMap::new(),
                now,
            )
            .await
            .unwrap()
        }
    };
    let malformed = push(br#"{"service":"api"}"#.to_vec()).await;
    assert_eq!(malformed.status, 200, "{:?}", malformed.body);
    assert_eq!(malformed.body["outcome"], "ignored");
    assert!(
        malformed.body["reason"]
            .as_str()
            .unwrap()
            .contains("not a fanned-out evaluation: \"api\" is not projects/PROJECT/locations/REGION/services/SERVICE"),
        "{:?}",
        malformed.body
    );

    let service = format!("projects/{PROJECT}/locations/{REGION}/services/api");
    let data = serde_json::to_vec(&serde_json::json!({ "service": service })).unwrap();
    t.fake.faults().run_errors(1000, 503);
    let failed = push(data.clone()).await;
    assert_eq!(failed.status, 503, "{:?}", failed.body);
    t.fake.faults().clear();
    let ok = push(data).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
}

/// An instance whose Run write budget is spent does not hold an evaluation that needs a write
/// until a slot frees (a minute here, inside its 120 s deadline): it answers 503 at once, having
/// written nothing, so Pub/Sub redelivers the message, and an instance with budget left
/// completes it. Nothing is lost, and the spent instance stays within its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_with_no_write_budget_left_is_given_back_and_completes_elsewhere() {
    let spent = spawn_app(&["--event-deadline", "120s", "--run-writes-per-minute", "1"]).await;
    let with_budget = spawn_on(
        spent.fake.clone(),
        spent.clock.clone(),
        &["--event-deadline", "120s"],
    )
    .await;
    spent.service("payments", 20.0);
    // Starting the rollout is the spent instance's one write of this minute.
    let started = spent
        .release(
            "payments",
            RevisionProfile::healthy().with_error_ratio(0.20),
        )
        .await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!(steps_in(&spent, PROJECT, "payments"), [0, 10]);
    // Its step is judged now: the candidate's 20% 5xx asks for a rollback, a write.
    spent.clock.advance(jiff::SignedDuration::from_mins(8));
    let service = format!("projects/{PROJECT}/locations/{REGION}/services/payments");
    let data = serde_json::to_vec(&serde_json::json!({ "service": service })).unwrap();
    let evaluate = async |t: &TestApp| {
        t.push
            .push(
                "/pubsub/evaluations",
                "cutover-evaluations",
                &data,
                &BTreeMap::new(),
                t.clock.now(),
            )
            .await
            .unwrap()
    };
    let given_back = evaluate(&spent).await;
    assert_eq!(given_back.status, 503, "{:?}", given_back.body);
    assert_eq!(
        steps_in(&spent, PROJECT, "payments"),
        [0, 10],
        "nothing written by the instance without budget"
    );
    // Pub/Sub redelivers it, here to the other instance: the rollback is written.
    let redelivered = evaluate(&with_budget).await;
    assert_eq!(redelivered.status, 200, "{:?}", redelivered.body);
    assert_eq!(steps_in(&spent, PROJECT, "payments"), [0, 10, 0]);
    assert_eq!(
        spent.split("payments"),
        vec![(crate::support::stable_of("payments"), 100)]
    );
}
