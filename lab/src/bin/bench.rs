//! `cargo run --release --bin bench`: cutover's performance figures, measured on loopback.
//!
//! Five figures, each against the in-process fakes (and the real Pub/Sub emulator for the
//! first), printed as one table with the goal beside each:
//! 1. alert → rollback, end to end through the emulator, while ticks keep arriving for 50 other
//!    services mid-rollout; the emulator's own publish→push latency is measured apart;
//! 2. controller overhead: push received → PATCH sent, against a zero-latency fake;
//! 3. footprint: process start → `/healthz` 200, idle RSS, stripped binary size;
//! 4. scale: one tick over 1,000 services with 100/200/400 mid-rollout and 50 ms on every API
//!    call: wall time and API calls per active rollout;
//! 5. push throughput with `wrk`: duplicate builds and no-op ticks acknowledged per second;
//! 6. fan-out (`--only fanout`, not in the default run; [`fanout`]): 150,000 services, 5,000
//!    due, one tick fanned out through the emulator to 1, 2 and 4 `cutover serve` processes
//!    behind a round-robin front (as Cloud Run's), 50 ms per API call: time until every due
//!    rollout is judged, calls per judged rollout, the busiest minute against the quotas, CPU
//!    per evaluation, and alert → rollback for evaluations in flight.
//!
//! `--quick` runs every figure with small counts (CI uses it to check the bench works; its
//! numbers are not the ones to quote). `--only NAME` runs one figure.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use axum::extract::Request;
use axum::middleware::Next;
use base64::Engine;
use clap::Parser;
use cutover::clock::Clock;
use cutover::config::ServeArgs;
use cutover::server::{self, App};
use cutover_fakes::pusher::Pusher;
use cutover_fakes::{FakeGcp, RevisionProfile};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

// Figure 6, issue 16 at its size with the real binary.
#[path = "bench/fanout.rs"]
mod fanout;

// The probes' helpers for running the real server; the bench uses the binary and memory ones.
#[path = "probe/process.rs"]
#[allow(
    dead_code,
    reason = "the loopback key server is for the probes, which run with push auth on"
)]
mod process;

const PROJECT: &str = "bench-project";
const REGION: &str = "us-central1";

#[derive(Parser, Debug)]
#[command(about = "cutover's performance figures, measured on loopback")]
struct Args {
    /// Small counts, to check the bench runs (CI).
    #[arg(long)]
    quick: bool,
    /// Run one figure: alert, overhead, footprint, scale, throughput.
    #[arg(long)]
    only: Option<String>,
}

/// One row of the results table.
struct Row {
    figure: String,
    value: String,
    goal: String,
    met: Option<bool>,
}

fn row(
    figure: impl Into<String>,
    value: impl Into<String>,
    goal: impl Into<String>,
    met: Option<bool>,
) -> Row {
    Row {
        figure: figure.into(),
        value: value.into(),
        goal: goal.into(),
        met,
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `p50 … / p99 …` of sorted milliseconds.
fn p50_p99(sorted: &[f64]) -> String {
    format!(
        "p50 {} / p99 {}",
        ms(percentile(sorted, 0.5)),
        ms(percentile(sorted, 0.99))
    )
}

fn ms(d: f64) -> String {
    if d < 10.0 {
        format!("{d:.2} ms")
    } else {
        format!("{d:.0} ms")
    }
}

fn since_ms(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64() * 1000.0
}

/// The client-side rate limits (`src/gcp/quota.rs`) stand for Google's quotas, which the fakes
/// do not have: every figure but the fan-out one measures cutover's own cost, so it lifts them
/// (dozens of rollouts started at once in one project and region would otherwise wait for
/// Cloud Run's write budget, as they should in production). Figure 6 sets its own.
const UNLIMITED: &[(&str, &str)] = &[
    ("--run-reads-per-minute", "1000000"),
    ("--run-writes-per-minute", "1000000"),
    ("--monitoring-queries-per-minute", "1000000"),
    ("--appengine-calls-per-minute", "1000000"),
    ("--compute-reads-per-minute", "1000000"),
    ("--compute-writes-per-minute", "1000000"),
    ("--firestore-calls-per-minute", "1000000"),
];

fn serve_args(fake: &FakeGcp, extra: &[&str]) -> Result<ServeArgs> {
    let mut args: Vec<&str> = extra.to_vec();
    for (flag, value) in UNLIMITED {
        if !extra.contains(flag) {
            args.extend([*flag, *value]);
        }
    }
    cutover_lab::local::serve_args(fake, PROJECT, REGION, &args).map_err(|e| anyhow!(e))
}

/// An in-process cutover whose push arrivals on `/pubsub/alerts` are timestamped.
struct Instance {
    app: Arc<App>,
    base: String,
    alert_arrivals: Arc<Mutex<Vec<Timestamp>>>,
}

async fn instance(fake: &FakeGcp, clock: Clock, extra: &[&str]) -> Result<Instance> {
    let app = server::build(&serve_args(fake, extra)?, clock).await?;
    let arrivals: Arc<Mutex<Vec<Timestamp>>> = Arc::default();
    let a = Arc::clone(&arrivals);
    let router = server::app(Arc::clone(&app)).layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let a = Arc::clone(&a);
            async move {
                if req.uri().path() == "/pubsub/alerts" {
                    a.lock().unwrap().push(Timestamp::now());
                }
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(Instance {
        app,
        base,
        alert_arrivals: arrivals,
    })
}

fn stable(s: &str) -> String {
    format!("{s}-00001-abc")
}

fn candidate(s: &str) -> String {
    format!("{s}-00002-def")
}

/// Puts `services` mid-rollout (candidate at 10%), `concurrency` builds at a time.
async fn start_rollouts(
    fake: &FakeGcp,
    push: &Pusher,
    services: &[String],
    at: Timestamp,
) -> Result<()> {
    for s in services {
        fake.add_service(
            PROJECT,
            REGION,
            s,
            &stable(s),
            RevisionProfile::healthy(),
            20.0,
        );
        fake.deploy(
            PROJECT,
            REGION,
            s,
            &candidate(s),
            RevisionProfile::healthy(),
        );
    }
    for chunk in services.chunks(50) {
        let answers =
            futures::future::join_all(chunk.iter().map(|s| push.build(s, REGION, "SUCCESS", at)))
                .await;
        for a in answers {
            let a = a.map_err(|e| anyhow!(e))?;
            if a.status != 200 {
                bail!("build push answered {}: {}", a.status, a.body);
            }
        }
    }
    Ok(())
}

/// When the fake accepted the PATCH that rolled `service` back.
fn rollback_patch_at(fake: &FakeGcp, service: &str) -> Option<Timestamp> {
    let stable = stable(service);
    fake.history(PROJECT, REGION, service)
        .into_iter()
        .rev()
        .find(|c| !c.by_hand && c.allocation == vec![(stable.clone(), 100)])
        .map(|c| c.at)
}

// ---- the Pub/Sub emulator over REST ----

/// The emulator's REST surface: topics, push subscriptions, publish.
struct Rest {
    host: String,
    http: reqwest::Client,
}

impl Rest {
    fn new(host: &str) -> Rest {
        Rest {
            host: host.to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn put(&self, path: &str, body: serde_json::Value) -> Result<()> {
        let r = self
            .http
            .put(format!("http://{}/v1/{path}", self.host))
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("PUT {path}: {}", r.text().await?);
        }
        Ok(())
    }

    /// A topic with one push subscription to `endpoint`.
    async fn push_topic(&self, topic: &str, endpoint: &str) -> Result<()> {
        self.put(&format!("projects/{PROJECT}/topics/{topic}"), json!({}))
            .await?;
        self.put(
            &format!("projects/{PROJECT}/subscriptions/{topic}-push"),
            json!({"topic": format!("projects/{PROJECT}/topics/{topic}"), "ackDeadlineSeconds": 60, "pushConfig": {"pushEndpoint": endpoint}}),
        )
        .await
    }

    async fn publish(
        &self,
        topic: &str,
        data: &[u8],
        attributes: &BTreeMap<String, String>,
    ) -> Result<()> {
        let body = json!({"messages": [{"data": base64::engine::general_purpose::STANDARD.encode(data), "attributes": attributes}]});
        let r = self
            .http
            .post(format!(
                "http://{}/v1/projects/{PROJECT}/topics/{topic}:publish",
                self.host
            ))
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("publish to {topic}: {}", r.text().await?);
        }
        Ok(())
    }
}

/// The emulator's own publish → push time: `n` messages published 25 ms apart to a push
/// subscription of `topic` whose endpoint only notes when each arrives. Its push loop looks at a
/// subscription's backlog every 100 ms (`PushLoop` is built with a 100 ms check interval in
/// cloud-pubsub-emulator 0.8.20), so a push waits 0–100 ms for it before anything else: the
/// floor under every "emulator's part" here. Google's push has no such loop. (Publishing each
/// message only once the one before had arrived, as this did before, fell into step with that
/// loop and read p99 70 ms where messages at any moment, as alerts are, read p99 109 ms.)
async fn emulator_alone(emu: &Rest, topic: &str, n: usize) -> Result<Vec<f64>> {
    let arrived: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let sink = {
        let arrived = Arc::clone(&arrived);
        axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let arrived = Arc::clone(&arrived);
            async move {
                let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if let Some(k) = envelope["message"]["attributes"]["probe"].as_str() {
                    arrived
                        .lock()
                        .unwrap()
                        .entry(k.to_string())
                        .or_insert_with(Instant::now);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_url = format!("http://{}/sink", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, sink).await });
    emu.push_topic(topic, &sink_url).await?;
    let mut sent = Vec::new();
    for i in 0..n {
        let key = i.to_string();
        sent.push((key.clone(), Instant::now()));
        emu.publish(
            topic,
            b"ping",
            &BTreeMap::from([("probe".to_string(), key)]),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let waited = Instant::now();
    while arrived.lock().unwrap().len() < n {
        if waited.elapsed() > Duration::from_secs(30) {
            server.abort();
            bail!("the emulator never pushed some messages to the baseline endpoint");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.abort();
    let arrived = arrived.lock().unwrap();
    Ok(sent
        .iter()
        .filter_map(|(k, at)| Some(arrived.get(k)?.duration_since(*at).as_secs_f64() * 1000.0))
        .collect())
}

// ---- 1. alert → rollback through the emulator ----

async fn alert_end_to_end(quick: bool) -> Result<Vec<Row>> {
    let alerts = if quick { 3 } else { 20 };
    let process = cutover_fakes::emulator::Emulator::start(PROJECT)
        .await
        .map_err(|e| anyhow!(e))?;
    let emu = Rest::new(&process.host);
    let suffix = std::process::id();

    // The emulator's own publish → push latency, to a trivial endpoint.
    let mut baseline = emulator_alone(&emu, &format!("baseline-{suffix}"), alerts.max(10)).await?;

    // cutover with 50 background rollouts and `alerts` target rollouts, all mid-rollout.
    let fake = FakeGcp::start(cutover_fakes::FakeClock::System).await;
    let inst = instance(&fake, Clock::System, &["--event-deadline", "20s"]).await?;
    let push = Pusher::new(&inst.base, PROJECT);
    let background: Vec<String> = (0..50).map(|i| format!("bg{i:02}")).collect();
    let targets: Vec<String> = (0..alerts).map(|i| format!("target{i:02}")).collect();
    start_rollouts(&fake, &push, &background, Timestamp::now()).await?;
    start_rollouts(&fake, &push, &targets, Timestamp::now()).await?;
    emu.push_topic(
        &format!("alerts-{suffix}"),
        &format!("{}/pubsub/alerts", inst.base),
    )
    .await?;
    emu.push_topic(
        &format!("ticks-{suffix}"),
        &format!("{}/pubsub/ticks", inst.base),
    )
    .await?;

    // Ticks keep arriving every 100 ms throughout.
    let ticking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ticks_sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ticker = {
        let (ticking, ticks_sent) = (Arc::clone(&ticking), Arc::clone(&ticks_sent));
        let emu_host = emu.host.clone();
        tokio::spawn(async move {
            let emu = Rest::new(&emu_host);
            while ticking.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = emu
                    .publish(
                        &format!("ticks-{suffix}"),
                        br#"{"kind":"tick"}"#,
                        &BTreeMap::new(),
                    )
                    .await;
                ticks_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (mut e2e, mut share, mut emu_part) = (Vec::new(), Vec::new(), Vec::new());
    for s in &targets {
        let before = inst.alert_arrivals.lock().unwrap().len();
        let incident = cutover_fakes::pusher::incident(
            PROJECT,
            s,
            &candidate(s),
            REGION,
            "open",
            Timestamp::now(),
        );
        let t0 = Timestamp::now();
        emu.publish(
            &format!("alerts-{suffix}"),
            &serde_json::to_vec(&incident)?,
            &BTreeMap::new(),
        )
        .await?;
        let waited = Instant::now();
        let flipped = loop {
            if let Some(at) = rollback_patch_at(&fake, s) {
                break at;
            }
            if waited.elapsed() > Duration::from_secs(30) {
                bail!("{s} was not rolled back within 30 s of its alert");
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        };
        let arrived = inst
            .alert_arrivals
            .lock()
            .unwrap()
            .get(before)
            .copied()
            .unwrap_or(t0);
        e2e.push(since_ms(t0, flipped));
        share.push(since_ms(arrived, flipped));
        emu_part.push(since_ms(t0, arrived));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    ticking.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = ticker.await;
    let active_after = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/services"))
        .count();
    for v in [&mut e2e, &mut share, &mut emu_part, &mut baseline] {
        v.sort_by(f64::total_cmp);
    }
    let p99 = percentile(&e2e, 0.99);
    Ok(vec![
        row(
            format!(
                "1. alert → rollback, end to end ({} alerts, {} ticks for 50 other rollouts meanwhile, {active_after} listings)",
                e2e.len(),
                ticks_sent.load(std::sync::atomic::Ordering::Relaxed)
            ),
            p50_p99(&e2e),
            "p99 ≤ 250 ms",
            Some(p99 <= 250.0),
        ),
        row(
            "   of which publish → push to cutover (emulator)",
            p50_p99(&emu_part),
            "measured, not ours",
            None,
        ),
        row(
            "   of which push received → traffic flipped (cutover)",
            p50_p99(&share),
            "",
            None,
        ),
        row(
            format!(
                "   emulator alone: publish → push to an empty endpoint ({} messages)",
                baseline.len()
            ),
            p50_p99(&baseline),
            "≈ 60 ms here (issue)",
            None,
        ),
    ])
}

// ---- 2. controller overhead ----

async fn controller_overhead(quick: bool) -> Result<Vec<Row>> {
    let n = if quick { 20 } else { 500 };
    let fake = FakeGcp::start(cutover_fakes::FakeClock::System).await;
    let inst = instance(&fake, Clock::System, &[]).await?;
    let push = Pusher::new(&inst.base, PROJECT);
    let services: Vec<String> = (0..n).map(|i| format!("svc{i:04}")).collect();
    start_rollouts(&fake, &push, &services, Timestamp::now()).await?;
    let mut overhead = Vec::new();
    for s in &services {
        let before = inst.alert_arrivals.lock().unwrap().len();
        let a = push
            .alert(s, &candidate(s), REGION, "open", Timestamp::now())
            .await
            .map_err(|e| anyhow!(e))?;
        if a.status != 200 {
            bail!("alert answered {}", a.status);
        }
        let arrived = inst.alert_arrivals.lock().unwrap()[before];
        let patched = fake
            .requests()
            .iter()
            .rev()
            .find(|r| r.method == "PATCH" && r.path.ends_with(&format!("/services/{s}")))
            .map(|r| r.at)
            .ok_or_else(|| anyhow!("no PATCH for {s}"))?;
        overhead.push(since_ms(arrived, patched));
    }
    overhead.sort_by(f64::total_cmp);
    let p99 = percentile(&overhead, 0.99);
    drop(inst.app);
    Ok(vec![row(
        format!(
            "2. controller overhead: push received → PATCH sent ({} alerts, zero-latency fake, one GET included)",
            overhead.len()
        ),
        p50_p99(&overhead),
        "p99 ≤ 2 ms",
        Some(p99 <= 2.0),
    )])
}

// ---- 3. footprint ----

fn spawn_cutover(
    bin: &std::path::Path,
    port: u16,
    run_endpoint: &str,
) -> Result<std::process::Child> {
    let mut cmd = serve_command(bin);
    cmd.env("PORT", port.to_string())
        .env("GOOGLE_CLOUD_PROJECT", PROJECT)
        .env("CUTOVER_REGION", REGION)
        .env("CUTOVER_RUN_ENDPOINT", run_endpoint)
        .env("CUTOVER_MONITORING_ENDPOINT", run_endpoint)
        .env("CUTOVER_AUTH", "none")
        .env("CUTOVER_PUSH_AUTH", "none")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // As in-process (UNLIMITED): the fakes have no quota, and a flood of ticks (one listing
    // each) would otherwise measure the Run read budget, answered 503 once spent.
    cmd.args(UNLIMITED.iter().flat_map(|(flag, value)| [*flag, *value]));
    Ok(cmd.spawn()?)
}

/// `cutover serve` of `bin`, with nothing from the caller's environment that would change what
/// it runs with (`CUTOVER_*`, `RUST_LOG`, `PUBSUB_EMULATOR_HOST`): every figure sets its own,
/// but for the evaluation key all of them share.
fn serve_command(bin: &std::path::Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("serve");
    for (k, _) in std::env::vars() {
        if k.starts_with("CUTOVER_") || k == "RUST_LOG" || k == "PUBSUB_EMULATOR_HOST" {
            cmd.env_remove(k);
        }
    }
    // The evaluation key every process shares, so that fanned-out evaluations decide on the
    // sealed read their message carries (the path production takes with a key configured).
    cmd.env(
        "CUTOVER_EVALUATION_KEY",
        "bench evaluation key, 32 bytes or more",
    );
    cmd
}

/// A port free on loopback now, for a process to listen on.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One raw HTTP/1.1 GET; true on a 200.
fn healthz(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    if c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    c.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
}

async fn footprint(quick: bool) -> Result<Vec<Row>> {
    let starts = if quick { 3 } else { 25 };
    let bin = process::cutover_binary()?;
    let size = std::fs::metadata(&bin)?.len();
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..starts {
        let port = free_port()?;
        let t0 = Instant::now();
        let mut child = spawn_cutover(&bin, port, "http://127.0.0.1:9")?;
        let up = loop {
            if healthz(port) {
                break t0.elapsed();
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("cutover did not answer /healthz within 10 s");
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        times.push(up.as_secs_f64() * 1000.0);
        for _ in 0..20 {
            healthz(port);
        }
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(k) = process::vm_rss_kib(child.id()) {
            rss.push(k as f64);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort_by(f64::total_cmp);
    rss.sort_by(f64::total_cmp);
    let median = percentile(&times, 0.5);
    let rss_mib = percentile(&rss, 0.5) / 1024.0;
    let size_mib = size as f64 / 1024.0 / 1024.0;
    Ok(vec![
        row(
            format!("3. start → /healthz 200 (median of {starts})"),
            ms(median),
            "≤ 20 ms",
            Some(median <= 20.0),
        ),
        row(
            "   idle RSS (after 20 requests)",
            format!("{rss_mib:.1} MiB"),
            "≤ 10 MiB",
            Some(rss_mib <= 10.0),
        ),
        row(
            "   stripped release binary",
            format!("{size_mib:.1} MiB ({size} bytes)"),
            "≤ 15 MiB",
            Some(size_mib <= 15.0),
        ),
    ])
}

// ---- 4. scale ----

async fn scale(quick: bool) -> Result<Vec<Row>> {
    let sizes: &[usize] = if quick { &[20] } else { &[100, 200, 400] };
    let total = if quick { 100 } else { 1000 };
    let mut rows = Vec::new();
    for &active in sizes {
        let fake_clock = cutover_fakes::FakeClock::manual("2026-12-01T09:00:00Z".parse()?);
        let clock = cutover_lab::local::clock(&fake_clock);
        let fake = FakeGcp::start(fake_clock).await;
        let inst = instance(&fake, clock.clone(), &["--event-deadline", "60s"]).await?;
        let push = Pusher::new(&inst.base, PROJECT);
        let rolling: Vec<String> = (0..active).map(|i| format!("roll{i:04}")).collect();
        start_rollouts(&fake, &push, &rolling, clock.now()).await?;
        for i in 0..(total - active) {
            let s = format!("idle{i:04}");
            fake.add_service(
                PROJECT,
                REGION,
                &s,
                &stable(&s),
                RevisionProfile::healthy(),
                20.0,
            );
        }
        fake.faults().latency(Duration::from_millis(50));

        // A tick while every step soaks: the listing is all it costs.
        clock.advance(SignedDuration::from_mins(1));
        let before = fake.requests().len();
        let t0 = Instant::now();
        let p = push.tick(clock.now()).await.map_err(|e| anyhow!(e))?;
        let soak_wall = t0.elapsed();
        let soak_calls = fake.requests().len() - before;
        if p.status != 200 {
            bail!("tick answered {}: {}", p.status, p.body);
        }

        // A tick where every step is due: judge and advance each one.
        clock.advance(SignedDuration::from_mins(8));
        let before = fake.requests().len();
        let t0 = Instant::now();
        let p = push.tick(clock.now()).await.map_err(|e| anyhow!(e))?;
        let wall = t0.elapsed();
        if p.status != 200 {
            bail!("tick answered {}: {}", p.status, p.body);
        }
        let calls: Vec<_> = fake.requests().into_iter().skip(before).collect();
        let listing = calls
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/services"))
            .count();
        let per_active = (calls.len() - listing) as f64 / active as f64;
        let advanced = (0..active)
            .filter(|i| {
                fake.traffic(PROJECT, REGION, &format!("roll{i:04}"))
                    .iter()
                    .any(|(_, p, _)| *p == 50)
            })
            .count();
        // Every due step was judged; a step the judge finds inconclusive holds (one query).
        let held = active - advanced;
        let goal_wall = active <= 100;
        rows.push(row(
            format!("4. tick over {total} services, {active} due mid-rollout, 50 ms per API call"),
            format!(
                "{:.2} s; {per_active:.1} calls per active rollout + {listing} listing calls; {advanced} advanced, {held} held (soaking tick: {:.2} s, {soak_calls} calls)",
                wall.as_secs_f64(),
                soak_wall.as_secs_f64()
            ),
            if goal_wall { "≤ 3 s at 100 active; ≤ 3 calls each" } else { "≤ 3 calls each" },
            Some(per_active <= 3.0 && (!goal_wall || wall.as_secs_f64() <= 3.0)),
        ));
        drop(inst.app);
    }
    Ok(rows)
}

// ---- 5. push throughput ----

fn wrk_available() -> bool {
    if Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
    {
        return true;
    }
    eprintln!("bench: installing wrk (Debian package)…");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    apt(&["install", "-y", "-qq", "wrk"])
        || (apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "wrk"]))
}

fn wrk(url: &str, body: &str, seconds: u32) -> Result<(f64, String)> {
    let dir = std::env::temp_dir().join(format!("cutover-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("post.lua");
    let lua_body = body.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = \"{lua_body}\"\n\
             done = function(summary, latency, requests)\n  io.write(string.format(\"non2xx=%d\\n\", summary.errors.status))\nend\n"
        ),
    )?;
    let out = Command::new("wrk")
        .args(["-t1", "-c64", &format!("-d{seconds}s"), "-s"])
        .arg(&script)
        .arg(url)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| anyhow!("unexpected wrk output: {text}"))?;
    let non2xx = text
        .lines()
        .find_map(|l| l.strip_prefix("non2xx="))
        .unwrap_or("?")
        .to_string();
    Ok((rps, non2xx))
}

async fn throughput(quick: bool) -> Result<Vec<Row>> {
    if !wrk_available() {
        return Ok(vec![row(
            "5. push throughput",
            "not measured: wrk could not be installed",
            "≥ 5,000/s",
            None,
        )]);
    }
    let seconds = if quick { 1 } else { 10 };
    let bin = process::cutover_binary()?;
    let fake = FakeGcp::start(cutover_fakes::FakeClock::System).await;
    // The server under load is the real binary, a separate process.
    let port = free_port()?;
    let mut child = spawn_cutover(&bin, port, &fake.base_url())?;
    let base = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    while !healthz(port) {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            bail!("cutover did not start");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let push = Pusher::new(&base, PROJECT);
    start_rollouts(&fake, &push, &["dup".to_string()], Timestamp::now()).await?;
    for i in 0..9 {
        let s = format!("calm{i}");
        fake.add_service(
            PROJECT,
            REGION,
            &s,
            &stable(&s),
            RevisionProfile::healthy(),
            20.0,
        );
    }
    let build_data = cutover_fakes::encode::encode_build(
        "b-dup",
        "SUCCESS",
        PROJECT,
        "dup",
        REGION,
        Timestamp::now(),
    );
    let build = cutover_fakes::encode::encode_push(
        &build_data,
        &cutover_fakes::encode::build_attributes("b-dup", "SUCCESS"),
        "42",
        Timestamp::now(),
        "projects/p/subscriptions/builds",
    );
    let tick = cutover_fakes::encode::encode_push(
        br#"{"kind":"tick"}"#,
        &BTreeMap::new(),
        "43",
        Timestamp::now(),
        "projects/p/subscriptions/ticks",
    );
    let (dup_rps, dup_err) = wrk(
        &format!("{base}/pubsub/builds"),
        &build.to_string(),
        seconds,
    )?;
    // No-op ticks: the rollout above is finished first, so nothing is active.
    let r = push
        .alert("dup", &candidate("dup"), REGION, "open", Timestamp::now())
        .await
        .map_err(|e| anyhow!(e))?;
    if r.status != 200 {
        bail!("could not end the rollout before the tick load");
    }
    let (tick_rps, tick_err) = wrk(&format!("{base}/pubsub/ticks"), &tick.to_string(), seconds)?;
    let _ = child.kill();
    let _ = child.wait();
    Ok(vec![
        row(
            format!(
                "5. duplicate builds acknowledged ({seconds} s, 64 connections, wrk; non-2xx: {dup_err})"
            ),
            format!("{dup_rps:.0}/s"),
            "≥ 5,000/s",
            Some(dup_rps >= 5000.0 && dup_err == "0"),
        ),
        row(
            format!("   no-op ticks over 10 services acknowledged (non-2xx: {tick_err})"),
            format!("{tick_rps:.0}/s"),
            "≥ 5,000/s",
            Some(tick_rps >= 5000.0 && tick_err == "0"),
        ),
    ])
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let want = |name: &str| args.only.as_deref().is_none_or(|o| o == name);
    let started = Instant::now();
    let mut rows = Vec::new();
    if want("alert") {
        rows.extend(
            alert_end_to_end(args.quick)
                .await
                .context("figure 1 (alert → rollback)")?,
        );
    }
    if want("overhead") {
        rows.extend(
            controller_overhead(args.quick)
                .await
                .context("figure 2 (controller overhead)")?,
        );
    }
    if want("footprint") {
        rows.extend(
            footprint(args.quick)
                .await
                .context("figure 3 (footprint)")?,
        );
    }
    if want("scale") {
        rows.extend(scale(args.quick).await.context("figure 4 (scale)")?);
    }
    if args.only.as_deref() == Some("fanout") {
        rows.extend(
            fanout::fanout(args.quick)
                .await
                .context("figure 6 (fan-out)")?,
        );
    }
    if want("throughput") {
        rows.extend(
            throughput(args.quick)
                .await
                .context("figure 5 (throughput)")?,
        );
    }
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "\ncutover bench{} — {} cores, {machine}",
        if args.quick {
            " (quick: counts too small to quote)"
        } else {
            ""
        },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let w = rows
        .iter()
        .map(|r| r.figure.chars().count())
        .max()
        .unwrap_or(10);
    for r in &rows {
        let met = match r.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!("{:<w$}  {:<40}  {:<36} {met}", r.figure, r.value, r.goal);
    }
    println!("({:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}
