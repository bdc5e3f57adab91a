//! Hardening: single flight per service, bounded outbound calls, graceful shutdown, header
//! limits, no credentials in logs, a warning when pushes are not authenticated, and `/healthz`
//! answering when slow connections would exhaust the descriptors. Each test fails if its
//! mechanism is removed.

use std::process::{Command, Stdio};
use std::time::Duration;

use cutover_fakes::oidc as testing;
use cutover_fakes::pusher::Pusher;
use cutover_fakes::{FakeGcp, RevisionProfile};
use futures::future::join_all;

use crate::helpers::*;

#[tokio::test]
async fn a_burst_of_ticks_for_one_service_evaluates_it_once() {
    let t = spawn_app(&[]).await;
    t.service("burst", 20.0);
    t.release("burst", RevisionProfile::healthy()).await;
    t.clock.advance(jiff::SignedDuration::from_mins(8));
    // Slow APIs make the burst overlap: without a per-service gate every tick would query
    // metrics and race to write.
    t.fake.faults().latency(Duration::from_millis(150));
    let now = t.clock.now();
    let answers = join_all((0..20).map(|_| t.push.tick(now))).await;
    assert!(answers.iter().all(|a| a.as_ref().unwrap().status == 200));
    let metric_queries = t
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/timeSeries"))
        .count();
    assert_eq!(metric_queries, 1, "one evaluation, one metrics query");
    // One tick evaluated; the others found a tick (or the service) busy and stood down.
    let stood_down = answers
        .iter()
        .map(|a| &a.as_ref().unwrap().body)
        .filter(|b| b["skipped"] == true || b["coalesced"] == 1)
        .count();
    assert_eq!(stood_down, 19);
    assert_eq!(t.candidate_steps("burst"), vec![0, 10, 50]);
}

#[tokio::test]
async fn an_alert_does_not_queue_behind_ticks_for_the_same_service() {
    let t = spawn_app(&[]).await;
    t.service("hot", 20.0);
    t.release("hot", RevisionProfile::healthy()).await;
    t.clock.advance(jiff::SignedDuration::from_mins(8));
    t.fake.faults().latency(Duration::from_millis(150));
    let now = t.clock.now();
    let ticks = join_all((0..10).map(|_| t.push.tick(now)));
    let alert = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        t.push
            .alert("hot", &candidate_of("hot"), REGION, "open", now)
            .await
            .unwrap()
    };
    let (ticks, alert) = tokio::join!(ticks, alert);
    assert_eq!(alert.status, 200, "{}", alert.body);
    assert!(ticks.iter().all(|a| a.as_ref().unwrap().status == 200));
    // At most the evaluation already in flight ran before the alert; the rollout ends rolled back.
    let metric_queries = t
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/timeSeries"))
        .count();
    assert!(
        metric_queries <= 1,
        "{metric_queries} metric queries: ticks queued in front of the alert"
    );
    assert_eq!(t.split("hot"), vec![(stable_of("hot"), 100)]);
    assert_eq!(
        t.annotation("hot", "cutover.dev/phase").as_deref(),
        Some("rolled-back")
    );
}

#[tokio::test]
async fn a_hanging_api_is_cut_off_at_the_event_deadline_and_nacked() {
    let t = spawn_app(&["--event-deadline", "2s"]).await;
    t.service("hang", 20.0);
    t.fake.faults().latency(Duration::from_secs(60));
    t.fake.deploy(
        PROJECT,
        REGION,
        "hang",
        &candidate_of("hang"),
        RevisionProfile::healthy(),
    );
    let p = t
        .push
        .build("hang", REGION, "SUCCESS", t.clock.now())
        .await
        .unwrap();
    assert_eq!(p.status, 503, "a timed-out call is transient: {}", p.body);
    // The caller learns that it is transient and for which message; the cause (with the Run
    // API's URL) stays in the log.
    assert_eq!(p.body["error"], "temporarily unavailable", "{}", p.body);
    assert!(p.body["messageId"].is_string(), "{}", p.body);
    assert!(!p.body.to_string().contains("http"), "{}", p.body);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let t = spawn_app(&[]).await;
    let huge = "x".repeat(512 * 1024);
    let r = reqwest::Client::new()
        .post(format!("{}/pubsub/ticks", t.push.base()))
        .header("x-padding", huge)
        .body("{}")
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status().as_u16(), 431),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    // The server is still fine.
    let ok = reqwest::get(format!("{}/healthz", t.push.base()))
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

// ---- the real binary ----

use crate::support::{Process as Cutover, free_port};

async fn start_binary(fake: &FakeGcp, extra: &[(&str, &str)]) -> Cutover {
    start_binary_with(fake, extra, None).await
}

/// Starts `cutover serve`, with its descriptor limit (soft and hard) set to `fd_limit` if given.
async fn start_binary_with(
    fake: &FakeGcp,
    extra: &[(&str, &str)],
    fd_limit: Option<u32>,
) -> Cutover {
    let port = free_port();
    let mut cmd = match fd_limit {
        None => Command::new(env!("CARGO_BIN_EXE_cutover")),
        Some(n) => {
            let mut sh = Command::new("sh");
            sh.args([
                "-c",
                &format!("ulimit -n {n} && exec \"$0\" serve"),
                env!("CARGO_BIN_EXE_cutover"),
            ]);
            sh
        }
    };
    if fd_limit.is_none() {
        cmd.arg("serve");
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("CUTOVER_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("PORT", port.to_string())
        .env("GOOGLE_CLOUD_PROJECT", PROJECT)
        .env("CUTOVER_REGION", REGION)
        .env("CUTOVER_RUN_ENDPOINT", fake.base_url())
        .env("CUTOVER_MONITORING_ENDPOINT", fake.base_url())
        .env("GCE_METADATA_HOST", fake.metadata_host())
        .env("CUTOVER_AUTH", "none")
        .env("CUTOVER_PUSH_AUTH", "none");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let base = format!("http://127.0.0.1:{port}");
    // Owned at once, so that it is killed and reaped on every path.
    let cutover = Cutover {
        child: Some(cmd.spawn().unwrap()),
        base,
    };
    assert!(
        cutover.healthy(Duration::from_secs(5)).await,
        "cutover did not start"
    );
    cutover
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits() {
    let fake = FakeGcp::start(cutover_fakes::FakeClock::System).await;
    fake.add_service(
        PROJECT,
        REGION,
        "term",
        &stable_of("term"),
        RevisionProfile::healthy(),
        20.0,
    );
    fake.deploy(
        PROJECT,
        REGION,
        "term",
        &candidate_of("term"),
        RevisionProfile::healthy(),
    );
    fake.faults().latency(Duration::from_millis(700));
    let mut cutover = start_binary(&fake, &[]).await;
    let mut child = cutover.take();
    let push = Pusher::new(&cutover.base, PROJECT);
    let in_flight = tokio::spawn(async move {
        push.build("term", REGION, "SUCCESS", jiff::Timestamp::now())
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        fake.traffic(PROJECT, REGION, "term")
            .iter()
            .find(|(r, _, _)| *r == candidate_of("term"))
            .map(|t| t.1),
        Some(10)
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_logs() {
    // A JWKS for push auth, served by the test.
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(|| async { axum::Json(testing::jwks_json()) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks = format!("http://{}/certs", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let fake = FakeGcp::start(cutover_fakes::FakeClock::System).await;
    fake.add_service(
        PROJECT,
        REGION,
        "logs",
        &stable_of("logs"),
        RevisionProfile::healthy(),
        20.0,
    );
    fake.deploy(
        PROJECT,
        REGION,
        "logs",
        &candidate_of("logs"),
        RevisionProfile::healthy(),
    );
    let audience = "cutover-push/test";
    let builds_audience = "cutover-push/test/builds";
    let pusher_sa = "push@test-project.iam.gserviceaccount.com";
    let mut cutover = start_binary(
        &fake,
        &[
            ("CUTOVER_AUTH", "metadata"),
            ("CUTOVER_PUSH_AUTH", "google"),
            ("CUTOVER_JWKS_URL", &jwks),
            ("CUTOVER_PUSH_AUDIENCE", audience),
            ("CUTOVER_PUSH_SERVICE_ACCOUNTS", pusher_sa),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    let now = jiff::Timestamp::now().as_second();
    let good = testing::sign(&testing::google_claims(
        builds_audience,
        pusher_sa,
        now - 10,
        now + 3590,
    ));
    let wrong = testing::sign(&testing::google_claims(
        "elsewhere",
        pusher_sa,
        now - 10,
        now + 3590,
    ));
    let mut push = Pusher::new(&cutover.base, PROJECT);
    push.authorization = Some(format!("Bearer {good}"));
    assert_eq!(
        push.build("logs", REGION, "SUCCESS", jiff::Timestamp::now())
            .await
            .unwrap()
            .status,
        200
    );
    push.authorization = Some(format!("Bearer {wrong}"));
    assert_eq!(push.tick(jiff::Timestamp::now()).await.unwrap().status, 401);
    assert!(
        fake.tokens_issued() >= 1,
        "outbound calls used metadata tokens"
    );

    let mut child = cutover.take();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        logs.contains("decision"),
        "the logs were captured: {} bytes",
        logs.len()
    );
    for secret in [good.as_str(), wrong.as_str()] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a push token reached the logs");
    }
    assert!(
        !logs.contains("fake-token-"),
        "an access token reached the logs"
    );
}

/// Kills the process and returns everything it wrote.
fn logs_of(mut cutover: Cutover) -> String {
    let mut child = cutover.take();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_without_push_authentication_warns_once() {
    let fake = FakeGcp::start(cutover_fakes::FakeClock::System).await;
    let open = logs_of(start_binary(&fake, &[]).await);
    let warnings: Vec<&str> = open
        .lines()
        .filter(|l| l.contains("CUTOVER_PUSH_AUTH=none"))
        .collect();
    assert_eq!(warnings.len(), 1, "{open}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("anyone"),
        "the risk is named: {}",
        warnings[0]
    );

    // With authentication on, no such line.
    let jwks = "http://127.0.0.1:9/certs";
    let secured = logs_of(
        start_binary(
            &fake,
            &[
                ("CUTOVER_PUSH_AUTH", "google"),
                ("CUTOVER_JWKS_URL", jwks),
                ("CUTOVER_PUSH_AUDIENCE", "cutover-push/test"),
                (
                    "CUTOVER_PUSH_SERVICE_ACCOUNTS",
                    "push@test-project.iam.gserviceaccount.com",
                ),
            ],
        )
        .await,
    );
    assert!(secured.contains("cutover serving"), "{secured}");
    assert!(!secured.contains("CUTOVER_PUSH_AUTH=none"), "{secured}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_when_slow_connections_outnumber_the_descriptors() {
    use tokio::io::AsyncWriteExt;
    let fake = FakeGcp::start(cutover_fakes::FakeClock::System).await;
    // 128 descriptors in all, and four times as many connections that never finish their head.
    let cutover = start_binary_with(&fake, &[], Some(128)).await;
    let addr = cutover.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..512 {
        // A saturated backlog drops new handshakes: stop there rather than wait.
        let connect = tokio::net::TcpStream::connect(&addr);
        let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
            break;
        };
        let _ = c
            .write_all(b"POST /pubsub/ticks HTTP/1.1\r\nhost: x\r\n")
            .await;
        slow.push(c);
    }
    // Without the cap, every descriptor is held by a slow connection and `/healthz` waits in
    // the backlog; the bound only keeps that from hanging the suite.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let health = client
        .get(format!("{}/healthz", cutover.base))
        .send()
        .await
        .expect("/healthz answered");
    assert_eq!(health.status().as_u16(), 200);
    let push = Pusher::new(&cutover.base, PROJECT);
    let tick = tokio::time::timeout(Duration::from_secs(20), push.tick(jiff::Timestamp::now()))
        .await
        .expect("a push answered")
        .unwrap();
    assert_eq!(tick.status, 200, "{}", tick.body);
    drop(slow);
}
