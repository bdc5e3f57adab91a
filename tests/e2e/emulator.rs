//! The whole loop through the real Pub/Sub emulator: a build message published like Cloud
//! Build publishes it is pushed by the emulator to cutover, and ticks published the way Cloud
//! Scheduler publishes them drive the rollout to completion on the fake Cloud Run.
//!
//! Uses `PUBSUB_EMULATOR_HOST` when set (`.ci/run` starts the emulator); otherwise starts its
//! own emulator with `gcloud beta emulators pubsub start` on a free port and stops it after.
//! Without gcloud, its emulator component or Java it says it did not run and passes, unless
//! `CUTOVER_REQUIRE_EMULATOR=1` (see `cutover_fakes::emulator`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cutover_fakes::RevisionProfile;
use cutover_fakes::emulator::Emulator;
use cutover_fakes::encode::{build_attributes, encode_build};
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::{Message, PushConfig};

use crate::helpers::*;

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_published_through_the_emulator_rolls_out_to_completion() {
    let Some(emu) = Emulator::for_test(PROJECT).await else {
        return;
    };
    let endpoint = format!("http://{}", emu.host);
    let mut t = spawn_app(&[]).await;
    let cutover_url = t.push.base().to_string();
    let suffix = std::process::id();

    let (topics, subs) = emulator_admins(&endpoint).await;
    let mut publishers = HashMap::new();
    for (topic, path) in [
        ("cloud-builds", "/pubsub/builds"),
        ("cutover-ticks", "/pubsub/ticks"),
    ] {
        let topic_name = format!("projects/{PROJECT}/topics/{topic}-{suffix}");
        topics
            .create_topic()
            .set_name(&topic_name)
            .send()
            .await
            .expect("create topic");
        subs.create_subscription()
            .set_name(format!(
                "projects/{PROJECT}/subscriptions/{topic}-push-{suffix}"
            ))
            .set_topic(&topic_name)
            .set_ack_deadline_seconds(60)
            .set_push_config(PushConfig::new().set_push_endpoint(format!("{cutover_url}{path}")))
            .send()
            .await
            .expect("create push subscription");
        let publisher = Publisher::builder(&topic_name)
            .with_endpoint(&endpoint)
            .with_credentials(anonymous())
            .build()
            .await
            .unwrap();
        publishers.insert(topic, publisher);
    }

    t.service("shop", 20.0);
    t.fake.deploy(
        PROJECT,
        REGION,
        "shop",
        &candidate_of("shop"),
        RevisionProfile::healthy(),
    );
    let build = encode_build(
        "5d6c1b2a-emulator",
        "SUCCESS",
        PROJECT,
        "shop",
        REGION,
        t.clock.now(),
    );
    let msg = Message::new()
        .set_data(build)
        .set_attributes(build_attributes("5d6c1b2a-emulator", "SUCCESS"));
    publishers["cloud-builds"]
        .publish(msg)
        .await
        .expect("publish build");
    wait_until("the build push to start the rollout", || {
        t.candidate_steps("shop") == vec![0, 10]
    })
    .await;

    for minute in 1..=40 {
        t.clock.advance(jiff::SignedDuration::from_mins(1));
        let now = t.clock.now();
        // A tick that finds the service busy (the previous evaluation still finishing) skips it,
        // as it should; publish again until this minute's evaluation is seen, as the next
        // Scheduler tick would.
        let started = Instant::now();
        let mut seen = false;
        while !seen {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "tick {minute} was never evaluated"
            );
            let msg = Message::new()
                .set_data(r#"{"kind":"tick"}"#)
                .set_attributes([("source", "scheduler")]);
            publishers["cutover-ticks"]
                .publish(msg)
                .await
                .expect("publish tick");
            let wait = Instant::now();
            while !seen && wait.elapsed() < Duration::from_secs(3) {
                if let Ok(Ok(d)) =
                    tokio::time::timeout(Duration::from_millis(200), t.decisions.recv()).await
                {
                    seen = d.at >= now;
                }
            }
        }
        if t.annotation("shop", "cutover.dev/phase").as_deref() == Some("completed") {
            break;
        }
    }
    assert_eq!(t.candidate_steps("shop"), vec![0, 10, 50, 100]);
    assert_eq!(
        t.annotation("shop", "cutover.dev/phase").as_deref(),
        Some("completed")
    );
    drop(emu);
}
