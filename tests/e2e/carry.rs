//! A fanned-out evaluation decides on the read its tick listed (`reconcile::fanout`): the
//! message carries the service resource, sealed with the evaluation key, so the instance that
//! gets the push makes no GET. The calls are counted at the fakes. A carried read made stale by
//! a write after the listing loses the etag race and the evaluation decides again on a fresh
//! read; a message without a usable read (an older instance's, an over-age one, another
//! service's, one that does not parse) is evaluated on a fresh read, as before. A read whose
//! seal does not verify (forged, or sealed with another key) is never decided on, so its body
//! never reaches the service; without a key nothing is carried; the previous key still verifies.

use std::collections::BTreeMap;

use cutover::reconcile::fanout::seal::SealKeys;
use cutover::reconcile::fanout::{Carried, Evaluation, encode};
use cutover::target::ServiceRef;
use cutover_fakes::RevisionProfile;
use cutover_fakes::emulator::Emulator;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::notify::Topic;

/// The 10% step is due (5-minute soak + 3-minute delay) a minute after this.
const DUE_AFTER: i64 = 9;

/// The evaluation key the instances share (32 bytes).
const KEY: &str = "the evaluation key of this test!";
/// The key before it, in the rotation test; and one no instance has.
const OLD_KEY: &str = "the key this test had before it.";
const FOREIGN_KEY: &str = "a key that no cutover instance has";

/// The flags of an instance sealing and checking with [`KEY`].
const KEYED: [&str; 2] = ["--evaluation-key", KEY];

/// Message data for an evaluation of `service` carrying `read` listed at `listed_at`, sealed
/// with `key` as a tick holding it seals.
fn sealed(key: &str, service: &str, listed_at: jiff::Timestamp, read: &Value) -> Vec<u8> {
    let evaluation = Evaluation {
        service: ServiceRef::checked(PROJECT, REGION, service).unwrap(),
        carried: Some(Carried {
            listed_at,
            read: read.clone(),
        }),
    };
    encode(&evaluation, Some(&SealKeys::new(key.as_bytes(), None)))
}

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
/// it (the test delivers what the tick published), and the `extra` flags (its key).
async fn fanning_out(emu: &Emulator, name: &str, extra: &[&str]) -> (TestApp, Topic) {
    let topic = Topic::create(emu, &format!("carry-{name}-{}", std::process::id())).await;
    let mut flags = vec![
        "--evaluations-topic",
        &topic.topic,
        "--fanout-threshold",
        "0",
        "--pubsub-emulator-host",
        &emu.host,
    ];
    flags.extend_from_slice(extra);
    (spawn_app(&flags).await, topic)
}

/// The data of the `n` evaluations published on `topic`, by service name, byte for byte.
async fn published(topic: &Topic, n: usize) -> BTreeMap<String, Vec<u8>> {
    let pulled = topic.pull_n(n).await;
    assert_eq!(pulled.len(), n, "{pulled:?}");
    pulled
        .iter()
        .map(|m| (m.attr("service").to_string(), m.bytes.clone()))
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

/// Starts a rollout of each service, given its requests a second (the fakes' traffic is seeded
/// by service name: at 0.2 the 10% step holds, too few requests to judge; at 20 or more it
/// is judged healthy and advances).
async fn rolling_out(t: &TestApp, services: &[(&str, f64)]) {
    for (s, rate) in services {
        t.service(s, *rate);
        assert_eq!(t.release(s, RevisionProfile::healthy()).await.status, 200);
    }
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
    let (t, topic) = fanning_out(&emu, "cost", &KEYED).await;
    rolling_out(&t, &[("quiet", 0.2), ("busy", 20.0)]).await;
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
    let (mut t, topic) = fanning_out(&emu, "stale", &KEYED).await;
    // This one's 10% step is judged healthy.
    rolling_out(&t, &[("busy", 20.0)]).await;
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
    // The key was rotated: OLD_KEY is the previous one.
    let t = spawn_app(&[
        "--evaluation-key",
        KEY,
        "--evaluation-key-previous",
        OLD_KEY,
    ])
    .await;
    // Too few requests to judge: every evaluation holds and leaves the step as it is.
    rolling_out(&t, &[("api", 0.2), ("web", 0.2)]).await;
    t.clock.advance(jiff::SignedDuration::from_mins(DUE_AFTER));
    let name = format!("projects/{PROJECT}/locations/{REGION}/services/api");
    let read = t.fake.service_json(PROJECT, REGION, "api");
    let now = t.clock.now();
    let carrying = |listed_at: jiff::Timestamp, read: &Value| sealed(KEY, "api", listed_at, read);
    let mut unguarded = read.clone();
    unguarded.as_object_mut().unwrap().remove("etag");
    let mut unsealed: Value = serde_json::from_slice(&carrying(now, &read)).unwrap();
    unsealed.as_object_mut().unwrap().remove("seal");
    let cases: [(&str, Vec<u8>, usize); 11] = [
        ("a fresh read is decided on", carrying(now, &read), 0),
        (
            "a read sealed with the previous key is decided on",
            sealed(OLD_KEY, "api", now, &read),
            0,
        ),
        (
            "a read sealed with a key this instance does not have",
            sealed(FOREIGN_KEY, "api", now, &read),
            1,
        ),
        (
            "a read without a seal",
            serde_json::to_vec(&unsealed).unwrap(),
            1,
        ),
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
        ("the fresh read again", carrying(now, &read), 0),
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

#[tokio::test]
async fn a_forged_read_is_never_decided_on_and_its_body_never_reaches_the_service() {
    let Some(emu) = Emulator::for_test(PROJECT).await else {
        return;
    };
    let (t, topic) = fanning_out(&emu, "forged", &KEYED).await;
    // Both 10% steps are judged healthy: each evaluation advances and PATCHes.
    rolling_out(&t, &[("tampered", 60.0), ("foreign", 60.0)]).await;
    tick_publishes(&t, 2).await;
    let published = published(&topic, 2).await;
    let before: BTreeMap<&str, Value> = ["tampered", "foreign"]
        .into_iter()
        .map(|s| (s, t.fake.service_json(PROJECT, REGION, s)))
        .collect();
    // A body of the publisher's making, with the service's current etag: another image (under
    // a revision name of the platform's choosing), a label.
    let forge = |read: &mut Value| {
        read["template"]["containers"][0]["image"] = json!("evil.example/backdoor:1");
        read["template"].as_object_mut().unwrap().remove("revision");
        read["labels"]["forged"] = json!("yes");
    };

    // The tick's own message, its read changed after sealing.
    let mut tampered: Value = serde_json::from_slice(&published["tampered"]).unwrap();
    assert!(
        tampered["seal"].is_string(),
        "the tick sealed it: {tampered}"
    );
    assert_eq!(tampered["read"]["etag"], before["tampered"]["etag"]);
    forge(&mut tampered["read"]);
    // A read sealed by a cutover that is not this one (another key).
    let mut foreign = before["foreign"].clone();
    forge(&mut foreign);
    let foreign = sealed(FOREIGN_KEY, "foreign", t.clock.now(), &foreign);

    for (service, data) in [
        ("tampered", serde_json::to_vec(&tampered).unwrap()),
        ("foreign", foreign),
    ] {
        assert_eq!(
            evaluation_calls(&t, &data, "advance", service).await,
            calls(1, 1, 1, 1),
            "{service}: the carried read ignored, the service read afresh"
        );
        assert_eq!(t.candidate_steps(service), [0, 10, 50]);
        let after = t.fake.service_json(PROJECT, REGION, service);
        assert_eq!(after["template"], before[service]["template"], "{service}");
        assert_eq!(after["labels"], before[service]["labels"], "{service}");
        let text = after.to_string();
        assert!(
            !text.contains("backdoor") && !text.contains("forged"),
            "{service}: {text}"
        );
    }
}

#[tokio::test]
async fn without_a_key_a_tick_carries_no_read_and_an_evaluation_takes_none() {
    let Some(emu) = Emulator::for_test(PROJECT).await else {
        return;
    };
    let (t, topic) = fanning_out(&emu, "keyless", &[]).await;
    rolling_out(&t, &[("quiet", 0.2)]).await;
    tick_publishes(&t, 1).await;
    let published = published(&topic, 1).await;
    let data: Value = serde_json::from_slice(&published["quiet"]).unwrap();
    assert_eq!(
        data,
        json!({ "service": format!("projects/{PROJECT}/locations/{REGION}/services/quiet") }),
        "the service named, nothing carried"
    );
    assert_eq!(
        evaluation_calls(&t, &published["quiet"], "hold", "named only").await,
        calls(1, 1, 0, 0),
        "a GET and the query"
    );
    // A read sealed by a keyed instance is not taken either: there is nothing to check it with.
    let read = t.fake.service_json(PROJECT, REGION, "quiet");
    let data = sealed(KEY, "quiet", t.clock.now(), &read);
    assert_eq!(
        evaluation_calls(&t, &data, "hold", "sealed").await,
        calls(1, 1, 0, 0),
        "a GET and the query"
    );
}
