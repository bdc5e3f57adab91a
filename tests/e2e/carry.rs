//! A fanned-out evaluation decides on the read its tick listed (`reconcile::fanout`): the
//! message carries the service resource, so the instance that gets the push makes no GET. The
//! calls are counted at the fakes. A carried read made stale by a write after the listing loses
//! the etag race and the evaluation decides again on a fresh read; a message without a usable
//! read (an older instance's, an over-age one, another service's, one that does not parse) is
//! evaluated on a fresh read, as before.

use std::collections::BTreeMap;

use cutover_fakes::RevisionProfile;
use cutover_fakes::emulator::Emulator;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::notify::Topic;

/// The 10% step is due (5-minute soak + 3-minute delay) a minute after this.
const DUE_AFTER: i64 = 9;

/// The API calls a set of requests to the fakes made, by kind.
#[derive(Debug, Default, PartialEq)]
struct Calls {
    /// `GET` of a service.
    gets: usize,
    /// Monitoring `timeSeries.list`.
    queries: usize,
    patches: usize,
    /// `operations:wait` (and any `GET` of an operation).
    waits: usize,
    /// Listings and anything else.
    other: usize,
}

/// The calls the fakes received since the `since`th request.
fn calls_since(t: &TestApp, since: usize) -> Calls {
    let mut c = Calls::default();
    for r in &t.fake.requests()[since..] {
        let service = r.path.starts_with("/v2/") && r.path.contains("/services/");
        match r.method.as_str() {
            _ if r.path.contains("/operations/") => c.waits += 1,
            "GET" if r.path.ends_with("/timeSeries") => c.queries += 1,
            "GET" if service => c.gets += 1,
            "PATCH" if service => c.patches += 1,
            _ => c.other += 1,
        }
    }
    c
}

fn calls(gets: usize, queries: usize, patches: usize, waits: usize) -> Calls {
    Calls {
        gets,
        queries,
        patches,
        waits,
        other: 0,
    }
}

/// A push of `data` to `/pubsub/evaluations`, as Pub/Sub delivers it now.
async fn push_evaluation(t: &TestApp, data: &[u8]) -> cutover_fakes::pusher::Pushed {
    let p = t
        .push
        .push(
            "/pubsub/evaluations",
            "cutover-evaluations",
            data,
            &BTreeMap::new(),
            t.clock.now(),
        )
        .await
        .expect("cutover answers");
    assert_eq!(p.status, 200, "{:?}", p.body);
    p
}

/// An instance that fans out every tick on a fresh topic of `emu`, with a pull subscription to
/// it (the test delivers what the tick published).
async fn fanning_out(emu: &Emulator, name: &str) -> (TestApp, Topic) {
    let topic = Topic::create(emu, &format!("carry-{name}-{}", std::process::id())).await;
    let flags = [
        "--evaluations-topic",
        &topic.topic,
        "--fanout-threshold",
        "0",
        "--pubsub-emulator-host",
        &emu.host,
    ];
    (spawn_app(&flags).await, topic)
}

/// The data of the `n` evaluations published on `topic`, by service name.
async fn published(topic: &Topic, n: usize) -> BTreeMap<String, Vec<u8>> {
    let pulled = topic.pull_n(n).await;
    assert_eq!(pulled.len(), n, "{pulled:?}");
    pulled
        .iter()
        .map(|m| {
            let data = serde_json::to_vec(&m.data).unwrap();
            (m.attr("service").to_string(), data)
        })
        .collect()
}

/// Pushes `data` to `/pubsub/evaluations`; the calls its evaluation made, once its first
/// decision was checked to be `decision`.
async fn evaluation_calls(t: &TestApp, data: &[u8], decision: &str, case: &str) -> Calls {
    let before = t.fake.requests().len();
    let answer = push_evaluation(t, data).await;
    assert_eq!(
        answer.body["decisions"][0]["decision"], decision,
        "{case}: {:?}",
        answer.body
    );
    calls_since(t, before)
}

/// Ticks once the 10% steps are due; every running rollout is published, none evaluated.
async fn tick_publishes(t: &TestApp, n: usize) {
    t.clock.advance(jiff::SignedDuration::from_mins(DUE_AFTER));
    let tick = t.push.tick(t.clock.now()).await.unwrap();
    assert_eq!(tick.status, 200, "{:?}", tick.body);
    assert_eq!(tick.body["published"], n, "{:?}", tick.body);
}

#[tokio::test]
async fn a_fanned_out_step_that_holds_costs_its_query_and_one_that_advances_three_calls() {
    let Some(emu) = Emulator::for_test(PROJECT).await else {
        return;
    };
    let (t, topic) = fanning_out(&emu, "cost").await;
    // Too few requests to judge at 10% holds; 20 requests a second advances.
    t.service("quiet", 0.2);
    t.service("busy", 20.0);
    for s in ["quiet", "busy"] {
        assert_eq!(t.release(s, RevisionProfile::healthy()).await.status, 200);
    }
    tick_publishes(&t, 2).await;
    let published = published(&topic, 2).await;

    assert_eq!(
        evaluation_calls(&t, &published["quiet"], "hold", "quiet").await,
        calls(0, 1, 0, 0),
        "a step that holds: its query, no GET"
    );
    assert_eq!(t.candidate_steps("quiet"), [0, 10]);
    assert_eq!(
        evaluation_calls(&t, &published["busy"], "advance", "busy").await,
        calls(0, 1, 1, 1),
        "a step that advances: query, PATCH, wait; no GET"
    );
    assert_eq!(t.candidate_steps("busy"), [0, 10, 50]);
}

#[tokio::test]
async fn a_carried_read_made_stale_by_a_rollback_loses_the_etag_race_and_nothing_moves() {
    let Some(emu) = Emulator::for_test(PROJECT).await else {
        return;
    };
    let (mut t, topic) = fanning_out(&emu, "stale").await;
    // The fakes' traffic is seeded by service: this one's 10% step is judged healthy.
    t.service("busy", 20.0);
    assert_eq!(
        t.release("busy", RevisionProfile::healthy()).await.status,
        200
    );
    tick_publishes(&t, 1).await;
    let published = published(&topic, 1).await;

    // An alert rolls the rollout back after the listing and before the evaluation arrives.
    let alert = t
        .push
        .alert("busy", &candidate_of("busy"), REGION, "open", t.clock.now())
        .await
        .unwrap();
    assert_eq!(alert.status, 200, "{:?}", alert.body);
    assert_eq!(t.candidate_steps("busy"), [0, 10, 0]);
    t.drain();

    let before = t.fake.requests().len();
    let answer = push_evaluation(&t, &published["busy"]).await;
    let decisions = t.drain();
    let trail: Vec<_> = decisions
        .iter()
        .map(|d| format!("{:?}: {} ({})", d.decision, d.reason, d.write))
        .collect();
    // Decided on the carried read (the step was due and healthy): advance, refused by the etag.
    assert_eq!(decisions[0].decision, "advance", "{trail:#?}");
    assert!(decisions[0].write.starts_with("conflict"), "{trail:#?}");
    // Then read afresh: the rollback stands, nothing is written.
    assert_eq!(decisions.len(), 2, "{trail:#?} {:?}", answer.body);
    assert_eq!(decisions[1].write, "none", "{trail:#?}");
    assert_eq!(
        decisions[1].phase,
        Some(cutover::decision::Phase::RolledBack),
        "{trail:#?}"
    );
    let c = calls_since(&t, before);
    assert_eq!(
        (c.gets, c.patches),
        (1, 1),
        "one refused PATCH, one fresh read: {c:?}"
    );
    assert_eq!(t.candidate_steps("busy"), [0, 10, 0], "nothing moved");
    assert_eq!(t.split("busy"), [(stable_of("busy"), 100)]);
}

#[tokio::test]
async fn an_evaluation_without_a_usable_carried_read_reads_the_service_afresh() {
    let t = spawn_app(&[]).await;
    // Too few requests to judge: every evaluation holds and leaves the step as it is.
    t.service("api", 0.2);
    t.service("web", 0.2);
    for s in ["api", "web"] {
        assert_eq!(t.release(s, RevisionProfile::healthy()).await.status, 200);
    }
    t.clock.advance(jiff::SignedDuration::from_mins(DUE_AFTER));
    let name = format!("projects/{PROJECT}/locations/{REGION}/services/api");
    let read = t.fake.service_json(PROJECT, REGION, "api");
    let now = t.clock.now();
    let carrying = |listed_at: jiff::Timestamp, read: &Value| {
        serde_json::to_vec(&json!({ "service": name, "listedAt": listed_at, "read": read }))
            .unwrap()
    };
    let mut unguarded = read.clone();
    unguarded.as_object_mut().unwrap().remove("etag");
    let cases: [(&str, Vec<u8>, usize); 7] = [
        ("a fresh read is decided on", carrying(now, &read), 0),
        (
            "an older instance's message names the service only",
            serde_json::to_vec(&json!({ "service": name })).unwrap(),
            1,
        ),
        (
            "listed more than a minute ago",
            carrying(now - jiff::SignedDuration::from_secs(61), &read),
            1,
        ),
        (
            "a read of another service",
            carrying(now, &t.fake.service_json(PROJECT, REGION, "web")),
            1,
        ),
        (
            "a read that is not a service",
            carrying(now, &json!("garbage")),
            1,
        ),
        ("a read without an etag", carrying(now, &unguarded), 1),
        (
            "a read without a listing time",
            serde_json::to_vec(&json!({ "service": name, "read": read })).unwrap(),
            1,
        ),
    ];
    for (case, data, gets) in cases {
        assert_eq!(
            evaluation_calls(&t, &data, "hold", case).await,
            calls(gets, 1, 0, 0),
            "{case}: {gets} GET"
        );
    }
    assert_eq!(t.candidate_steps("api"), [0, 10]);
}
