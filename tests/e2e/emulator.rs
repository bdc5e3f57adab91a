//! The whole loop through the real Pub/Sub emulator: a build message published like Cloud
//! Build publishes it is pushed by the emulator to cutover, and ticks published the way Cloud
//! Scheduler publishes them drive the rollout to completion on the fake Cloud Run.
//!
//! Uses `PUBSUB_EMULATOR_HOST` when set (`.ci/run` starts the emulator); otherwise starts its
//! own emulator with `gcloud beta emulators pubsub start` on a free port and stops it after.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cutover::events::{BuildStatus, build_attributes, encode_build};
use cutover::sim::RevisionProfile;
use google_cloud_pubsub::client::{Publisher, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::{Message, PushConfig};

use crate::helpers::*;

/// An emulator this test started (stopped on drop), or one that was already running.
struct Emulator {
    host: String,
    child: Option<Child>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // gcloud starts the Java emulator as a child: stop the whole process group.
            let _ = Command::new("kill")
                .arg("--")
                .arg(format!("-{}", child.id()))
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn emulator() -> Emulator {
    if let Ok(host) = std::env::var("PUBSUB_EMULATOR_HOST")
        && !host.is_empty()
    {
        return Emulator { host, child: None };
    }
    let host = format!("127.0.0.1:{}", free_port());
    use std::os::unix::process::CommandExt;
    let child = Command::new("gcloud")
        .args([
            "beta",
            "emulators",
            "pubsub",
            "start",
            &format!("--host-port={host}"),
            &format!("--project={PROJECT}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("gcloud is installed (the Pub/Sub emulator ships with it)");
    let emu = Emulator {
        host,
        child: Some(child),
    };
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("http://{}/", emu.host)).await
            && r.status().is_success()
        {
            return emu;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the Pub/Sub emulator did not start on {}",
            emu.host
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

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
    let emu = emulator().await;
    let endpoint = format!("http://{}", emu.host);
    let mut t = spawn_app(&[]).await;
    let cutover_url = t.push.base().to_string();
    let suffix = std::process::id();

    let topics = TopicAdmin::builder()
        .with_endpoint(&endpoint)
        .with_credentials(anonymous())
        .build()
        .await
        .unwrap();
    let subs = SubscriptionAdmin::builder()
        .with_endpoint(&endpoint)
        .with_credentials(anonymous())
        .build()
        .await
        .unwrap();
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
        &BuildStatus::Success,
        PROJECT,
        "shop",
        REGION,
        t.clock.now(),
    );
    let msg = Message::new()
        .set_data(build)
        .set_attributes(build_attributes("5d6c1b2a-emulator", &BuildStatus::Success));
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
