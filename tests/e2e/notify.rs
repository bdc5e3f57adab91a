//! Lifecycle events and chat notifications as their consumers see them: events pulled from the
//! real Pub/Sub emulator (published by the official client, in process and from the real
//! binary through `PUBSUB_EMULATOR_HOST`), events lost to a deleted topic, and chat messages
//! received by a local webhook that fails the way real ones do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine;
use cutover::reconcile::DecisionRecord;
use cutover_fakes::emulator::Emulator;
use cutover_fakes::pusher::Pusher;
use cutover_fakes::{FakeGcp, RevisionProfile};
use google_cloud_pubsub::client::{SubscriptionAdmin, TopicAdmin};
use serde_json::Value;

use crate::helpers::*;
use crate::support::{Process, REAL_CLOCK_TIMING, TestApp, free_port};

/// The default policy judges a step 8 minutes after traffic moved; the bake is 10 minutes.
const JUDGED_AFTER: u32 = 8;

fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

async fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A topic and a pull subscription with message ordering on the emulator.
pub(crate) struct Topic {
    endpoint: String,
    host: String,
    pub(crate) topic: String,
    subscription: String,
}

impl Topic {
    pub(crate) async fn create(emu: &Emulator, id: &str) -> Topic {
        let endpoint = format!("http://{}", emu.host);
        let topic = format!("projects/{PROJECT}/topics/{id}");
        let subscription = format!("projects/{PROJECT}/subscriptions/{id}-pull");
        let admin = TopicAdmin::builder()
            .with_endpoint(&endpoint)
            .with_credentials(anonymous())
            .build()
            .await
            .unwrap();
        admin
            .create_topic()
            .set_name(&topic)
            .send()
            .await
            .expect("create topic");
        SubscriptionAdmin::builder()
            .with_endpoint(&endpoint)
            .with_credentials(anonymous())
            .build()
            .await
            .unwrap()
            .create_subscription()
            .set_name(&subscription)
            .set_topic(&topic)
            .set_enable_message_ordering(true)
            .send()
            .await
            .expect("create subscription");
        Topic {
            endpoint,
            host: emu.host.clone(),
            topic,
            subscription,
        }
    }

    async fn delete(&self) {
        TopicAdmin::builder()
            .with_endpoint(&self.endpoint)
            .with_credentials(anonymous())
            .build()
            .await
            .unwrap()
            .delete_topic()
            .set_topic(&self.topic)
            .send()
            .await
            .expect("delete topic");
    }

    /// Pulls (through the emulator's REST API) and acknowledges what is there now.
    async fn pull(&self) -> Vec<Pulled> {
        let http = reqwest::Client::new();
        let base = format!("http://{}/v1/{}", self.host, self.subscription);
        let answer: Value = http
            .post(format!("{base}:pull"))
            .json(&serde_json::json!({ "maxMessages": 1000, "returnImmediately": true }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut acks = Vec::new();
        for m in answer["receivedMessages"].as_array().into_iter().flatten() {
            acks.push(m["ackId"].clone());
            let msg = &m["message"];
            let data = base64::engine::general_purpose::STANDARD
                .decode(msg["data"].as_str().unwrap_or(""))
                .unwrap();
            out.push(Pulled {
                attributes: serde_json::from_value(msg["attributes"].clone()).unwrap_or_default(),
                ordering_key: msg["orderingKey"].as_str().unwrap_or("").to_string(),
                data: serde_json::from_slice(&data).expect("JSON data"),
                bytes: data,
            });
        }
        if !acks.is_empty() {
            http.post(format!("{base}:acknowledge"))
                .json(&serde_json::json!({ "ackIds": acks }))
                .send()
                .await
                .unwrap();
        }
        out
    }

    /// Pulls until `n` messages arrived (or 30 s passed).
    pub(crate) async fn pull_n(&self, n: usize) -> Vec<Pulled> {
        let started = Instant::now();
        let mut all = Vec::new();
        while all.len() < n && started.elapsed() < Duration::from_secs(30) {
            all.extend(self.pull().await);
            if all.len() < n {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        all
    }
}

/// One pulled message.
#[derive(Debug)]
pub(crate) struct Pulled {
    attributes: BTreeMap<String, String>,
    ordering_key: String,
    pub(crate) data: Value,
    /// The data exactly as published.
    pub(crate) bytes: Vec<u8>,
}

impl Pulled {
    pub(crate) fn attr(&self, k: &str) -> &str {
        self.attributes.get(k).map_or("", String::as_str)
    }
    fn kind(&self) -> &str {
        self.attr("kind")
    }
}

/// The events a run of decisions must give, by this test's own reading of the README's table:
/// every applied start, advance, bake, completion and rollback, and the first judged hold of
/// each step (a hold whose record carries the judged window).
fn expected_events(records: &[DecisionRecord]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut holds = BTreeSet::new();
    for r in records {
        let name = r.service.rsplit('/').next().unwrap().to_string();
        let kind = match r.decision.as_str() {
            "start" | "advance" | "bake" | "complete" | "rollback" | "pause" | "resume"
                if r.write == "applied" =>
            {
                match r.decision.as_str() {
                    "start" => "started",
                    "advance" => "advanced",
                    "bake" => "baked",
                    "complete" => "completed",
                    "rollback" => "rolledback",
                    "pause" => "paused",
                    _ => "resumed",
                }
            }
            "hold"
                if r.window_start.is_some()
                    && r.phase.is_some_and(|p| p.to_string() == "progressing") =>
            {
                if !holds.insert((name.clone(), r.percent, r.window_start)) {
                    continue;
                }
                "held"
            }
            _ => continue,
        };
        out.entry(name).or_default().push(kind.to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_publish_each_lifecycle_event_once_in_order_with_cloudevents_attributes() {
    let Some(emu) = Emulator::for_test(PROJECT).await else {
        return;
    };
    let topic = Topic::create(&emu, &format!("rollouts-{}", std::process::id())).await;
    let mut t = spawn_app(&[
        "--events-topic",
        &topic.topic,
        "--pubsub-emulator-host",
        &emu.host,
        "--min-requests",
        "100",
    ])
    .await;
    // Healthy, failing, and so little traffic that its first step holds for a while.
    t.service("shop", 20.0);
    t.service("cart", 20.0);
    t.service("slow", 2.0);
    t.release("shop", RevisionProfile::healthy()).await;
    t.release("cart", RevisionProfile::healthy().with_error_ratio(0.2))
        .await;
    t.release("slow", RevisionProfile::healthy()).await;
    for _ in 0..4 * JUDGED_AFTER + 20 {
        t.tick_minutes(1).await;
        if t.annotation("shop", "cutover.dev/phase").as_deref() == Some("completed")
            && t.candidate_steps("slow").contains(&50)
        {
            break;
        }
    }
    assert_eq!(
        t.annotation("shop", "cutover.dev/phase").as_deref(),
        Some("completed")
    );
    assert_eq!(
        t.annotation("cart", "cutover.dev/phase").as_deref(),
        Some("rolled-back")
    );
    let records = t.drain();
    let expected = expected_events(&records);
    assert_eq!(
        expected["shop"],
        ["started", "advanced", "advanced", "baked", "completed"],
        "10% at the start, then 50, 100, the bake and its end"
    );
    assert_eq!(expected["cart"], ["started", "rolledback"]);
    let slow_holds_at_10 = records
        .iter()
        .filter(|r| {
            r.service.ends_with("/slow")
                && r.decision == "hold"
                && r.percent == Some(10)
                && r.window_start.is_some()
        })
        .count();
    assert!(
        slow_holds_at_10 >= 2,
        "the slow service's first step is judged inconclusive more than once ({slow_holds_at_10})"
    );
    assert_eq!(
        expected["slow"][..3],
        ["started", "held", "advanced"],
        "one held for the 10% step, however many ticks held it"
    );
    let total: usize = expected.values().map(Vec::len).sum();

    let stats = t.app.notify.stats();
    wait_until(
        "every event to be published",
        Duration::from_secs(30),
        || stats.events_published.load(Relaxed) as usize >= total,
    )
    .await;
    let pulled = topic.pull_n(total).await;
    assert_eq!(stats.events_lost.load(Relaxed), 0);
    assert_eq!(
        pulled.len(),
        total,
        "exactly the expected events, each once"
    );

    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for m in &pulled {
        let name = m.attr("service").to_string();
        got.entry(name.clone())
            .or_default()
            .push(m.kind().to_string());
        assert_eq!(m.attr("ce-specversion"), "1.0");
        assert_eq!(
            m.attr("ce-type"),
            format!("dev.cutover.rollout.v1.{}", m.kind())
        );
        assert_eq!(
            m.attr("ce-source"),
            format!("//run.googleapis.com/projects/{PROJECT}/locations/{REGION}/services/cutover")
        );
        assert_eq!(
            m.attr("ce-subject"),
            format!("projects/{PROJECT}/locations/{REGION}/services/{name}")
        );
        assert!(
            m.attr("ce-id").len() == 32 && ids.insert(m.attr("ce-id").to_string()),
            "a distinct 32-hex id: {:?}",
            m.attributes
        );
        let time: jiff::Timestamp = m.attr("ce-time").parse().expect("an RFC 3339 ce-time");
        assert_eq!(m.attr("ce-datacontenttype"), "application/json");
        assert_eq!(m.attr("project"), PROJECT);
        assert_eq!(m.attr("region"), REGION);
        assert_eq!(m.attr("candidate"), candidate_of(&name));
        assert_eq!(m.ordering_key, format!("{PROJECT}/{REGION}/{name}"));
        // The data is the decision record.
        assert_eq!(m.data["service"], format!("{PROJECT}/{REGION}/{name}"));
        assert_eq!(
            m.data["at"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap(),
            time
        );
        assert_eq!(m.data["candidate"], candidate_of(&name));
    }
    assert_eq!(got, expected, "in order per service");
    drop(emu);
}

/// The log lines of a `cutover serve` process, as JSON.
fn log_lines(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_topic_deleted_mid_rollout_the_rollout_completes_and_the_lost_events_are_logged_and_counted()
 {
    let Some(emu) = Emulator::for_test(PROJECT).await else {
        return;
    };
    let id = format!("deleted-{}", std::process::id());
    let topic = Topic::create(&emu, &id).await;
    let fake = FakeGcp::start(cutover_fakes::FakeClock::System).await;
    fake.add_service(
        PROJECT,
        REGION,
        "solo",
        &stable_of("solo"),
        RevisionProfile::healthy(),
        // Busy enough that one complete minute shows the 100% step within its limits (the
        // test runs on the real clock, so each judged minute costs a minute of wall time).
        200.0,
    );
    fake.deploy(
        PROJECT,
        REGION,
        "solo",
        &candidate_of("solo"),
        RevisionProfile::healthy(),
    );
    fake.faults().ingest_lag(jiff::SignedDuration::ZERO);
    let port = free_port();
    let log = std::env::temp_dir().join(format!("cutover-notify-{id}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CUTOVER_") || k == "RUST_LOG" || k == "PUBSUB_EMULATOR_HOST" {
            cmd.env_remove(k);
        }
    }
    cmd.arg("serve")
        .args(cutover_fakes::flags::flags(&fake, PROJECT, REGION))
        .args(REAL_CLOCK_TIMING)
        .args([
            "--port",
            &port.to_string(),
            "--steps",
            "100",
            "--bake",
            "0s",
            "--log-format",
            "json",
        ])
        // As Cloud Run would pass them: environment variables, a bare topic id (in the
        // project cutover serves, --project here).
        .env("CUTOVER_EVENTS_TOPIC", &id)
        .env("PUBSUB_EMULATOR_HOST", &emu.host)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file));
    let cutover = Process {
        child: Some(cmd.spawn().expect("cutover serve starts")),
        base: format!("http://127.0.0.1:{port}"),
    };
    assert!(
        cutover.healthy(Duration::from_secs(20)).await,
        "cutover did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let push = Pusher::new(&cutover.base, PROJECT);
    let p = push
        .build("solo", REGION, "SUCCESS", jiff::Timestamp::now())
        .await
        .unwrap();
    assert_eq!(p.status, 200, "{}", p.body);
    let before: Vec<String> = topic
        .pull_n(1)
        .await
        .iter()
        .map(|m| m.kind().to_string())
        .collect();
    assert_eq!(before, ["started"], "published while the topic exists");

    topic.delete().await;
    let started = Instant::now();
    let phase = || {
        fake.service_json(PROJECT, REGION, "solo")["annotations"]["cutover.dev/phase"]
            .as_str()
            .map(String::from)
    };
    while phase().as_deref() != Some("completed") {
        assert!(
            started.elapsed() < Duration::from_secs(360),
            "the rollout did not complete: phase {:?}",
            phase()
        );
        push.tick(jiff::Timestamp::now()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let lost_lines = || -> Vec<Value> {
        log_lines(&log)
            .into_iter()
            .filter(|l| l["notify"] == "lost")
            .collect()
    };
    wait_until(
        "the completion's event to be logged as lost",
        Duration::from_secs(30),
        || {
            lost_lines()
                .iter()
                .any(|l| l["event_type"] == "dev.cutover.rollout.v1.completed")
        },
    )
    .await;
    let lost = lost_lines();
    for (n, l) in lost.iter().enumerate() {
        assert_eq!(l["channel"], "events", "{l}");
        assert!(l["service"].as_str().unwrap().ends_with("/solo"), "{l}");
        assert_eq!(l["ce_id"].as_str().map(str::len), Some(32), "{l}");
        assert_eq!(
            l["lost_total"].as_u64(),
            Some(n as u64 + 1),
            "the running count: {l}"
        );
    }
    // The status page shows the same count, for whoever looks rather than queries logs.
    let status: Value = reqwest::get(format!("{}/status.json", cutover.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["notifications"]["events"]["lost"].as_u64(),
        Some(lost.len() as u64),
        "{}",
        status["notifications"]
    );
    assert_eq!(
        status["notifications"]["events"]["delivered"], 1,
        "started only"
    );
    let _ = std::fs::remove_file(&log);
    drop(emu);
}

/// A local webhook: answers the scripted statuses in turn (then 200) and keeps every body.
struct Webhook {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

async fn webhook(script: Vec<(u16, Option<&'static str>)>) -> Webhook {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(script.into_iter()));
    let seen = Arc::clone(&bodies);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let seen = Arc::clone(&seen);
            let script = Arc::clone(&script);
            async move {
                seen.lock().unwrap().push(body);
                let (status, retry_after) = script.lock().unwrap().next().unwrap_or((200, None));
                let mut r = axum::response::Response::new(axum::body::Body::from("ok"));
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                if let Some(s) = retry_after {
                    r.headers_mut().insert("retry-after", s.parse().unwrap());
                }
                r
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Webhook { url, bodies }
}

#[tokio::test]
async fn a_rollback_reaches_slack_after_a_503_as_one_readable_message() {
    let hook = webhook(vec![(503, Some("1"))]).await;
    let t = spawn_app(&["--notify-url", &hook.url, "--notify-format", "slack"]).await;
    t.service("pay", 20.0);
    t.release("pay", RevisionProfile::healthy().with_error_ratio(0.2))
        .await;
    t.tick_minutes(JUDGED_AFTER).await;
    assert_eq!(
        t.annotation("pay", "cutover.dev/phase").as_deref(),
        Some("rolled-back")
    );
    let stats = t.app.notify.stats();
    wait_until("the message to be sent", Duration::from_secs(20), || {
        stats.chat_sent.load(Relaxed) == 1
    })
    .await;
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(
        bodies.len(),
        2,
        "one 503, then the same message again: {bodies:?}"
    );
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(stats.chat_lost.load(Relaxed), 0);
    let b = &bodies[1];
    let candidate = candidate_of("pay");
    let stable = stable_of("pay");
    assert_eq!(
        b["text"],
        format!("pay rolled back: {candidate} → {stable}"),
        "the fallback text"
    );
    assert_eq!(b["blocks"][0]["type"], "section");
    assert_eq!(b["blocks"][0]["text"]["type"], "mrkdwn");
    let section = b["blocks"][0]["text"]["text"].as_str().unwrap();
    for part in [
        format!("*pay* rolled back: {candidate} → {stable}"),
        format!("Service pay in {REGION} (project {PROJECT})"),
        format!("Candidate {candidate} with 0% of traffic, phase rolled-back; stable {stable}"),
        "(max 1.00%)".to_string(),
        "(max 1000 ms)".to_string(),
        "(min 100)".to_string(),
        "Reason: ".to_string(),
    ] {
        assert!(section.contains(&part), "{part:?} missing from {section}");
    }
    assert_eq!(b["blocks"][1]["type"], "context");
    let commands = b["blocks"][1]["elements"][0]["text"].as_str().unwrap();
    assert!(
        commands.contains(&format!(
            "`cutover history pay --project {PROJECT} --region {REGION}`"
        )),
        "{commands}"
    );
}

#[tokio::test]
async fn a_webhook_answering_400_gets_google_chat_text_once_and_the_message_is_counted_lost() {
    let hook = webhook(vec![(400, None)]).await;
    let t = spawn_app(&["--notify-url", &hook.url, "--notify-format", "google-chat"]).await;
    t.service("pay", 20.0);
    t.release("pay", RevisionProfile::healthy().with_error_ratio(0.2))
        .await;
    t.tick_minutes(JUDGED_AFTER).await;
    let stats = t.app.notify.stats();
    wait_until(
        "the message to be given up",
        Duration::from_secs(20),
        || stats.chat_lost.load(Relaxed) == 1,
    )
    .await;
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "a 400 is not retried: {bodies:?}");
    let b = bodies[0].as_object().unwrap();
    assert_eq!(
        b.keys().collect::<Vec<_>>(),
        ["text"],
        "Google Chat's simple message"
    );
    let text = b["text"].as_str().unwrap();
    let candidate = candidate_of("pay");
    for part in [
        format!("*pay* rolled back: {candidate} → {}", stable_of("pay")),
        format!("Service pay in {REGION} (project {PROJECT})"),
        "5xx rate ".to_string(),
        "(max 1.00%)".to_string(),
        format!("`cutover history pay --project {PROJECT} --region {REGION}`"),
        format!("`cutover start pay --revision {candidate} --project {PROJECT} --region {REGION}`"),
    ] {
        assert!(text.contains(&part), "{part:?} missing from {text}");
    }
    assert_eq!(stats.chat_sent.load(Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_verbs_are_published_as_events_beside_the_servers() {
    let Some(emu) = Emulator::for_test(PROJECT).await else {
        return;
    };
    let topic = Topic::create(&emu, &format!("verbs-{}", std::process::id())).await;
    let to_emulator = [
        "--events-topic",
        &topic.topic,
        "--pubsub-emulator-host",
        &emu.host,
    ];
    let t = TestApp::start_now(PROJECT, REGION, &to_emulator).await;
    t.service("ops", 20.0);
    t.release("ops", RevisionProfile::healthy()).await;
    for verb in [
        vec!["pause", "ops"],
        vec!["resume", "ops"],
        vec!["promote", "ops", "--to", "60"],
        vec!["resume", "ops"],
    ] {
        let mut args = verb.clone();
        args.extend_from_slice(&to_emulator);
        let run = t.verb(verb[0], &args[1..]).await;
        assert!(run.code == 0 || run.code == 2, "{verb:?}: {run:?}");
    }
    let got: Vec<(String, String)> = topic
        .pull_n(5)
        .await
        .iter()
        .map(|m| {
            (
                m.kind().to_string(),
                m.data["trigger"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("started".to_string(), "build".to_string()),
            ("paused".into(), "cutover pause".into()),
            ("resumed".into(), "cutover resume".into()),
            ("promoted".into(), "cutover promote".into()),
            ("refused".into(), "cutover resume".into()),
        ],
        "the server's start, then each verb's decision (resuming a running rollout is refused)"
    );
    drop(emu);
}
