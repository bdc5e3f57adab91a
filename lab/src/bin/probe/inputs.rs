//! `probe inputs`: does a valid push with an enormous identifier or summary cost cutover memory
//! or log volume? (Issue 10, item 1.)
//!
//! Starts the real `cutover` binary (release build) against the in-process fakes, with push
//! authentication on (a local JWKS serving the test key) and its log going to a file; measures
//! its idle RSS; then sends, all validly signed:
//! 1. 600 Cloud Build notifications whose ids are 700 KB (or as much as the body limit lets
//!    through, when that is lower: the body limit would refuse 700 KB before cutover reads it);
//! 2. when the body limit is above that, 600 more with ids just under the limit;
//! 3. 600 Monitoring incidents about a service under rollout, each with a 200 KB summary.
//!
//! and reports RSS against idle and the log bytes each batch wrote. Acceptance (the issue's,
//! for each batch): RSS within 2× idle, under 1 MB of logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cutover::server::MAX_BODY_BYTES;
use cutover_fakes::pusher::{PushSigner, Pusher, incident};
use cutover_fakes::{FakeGcp, RevisionProfile};
use futures::StreamExt;
use jiff::Timestamp;
use serde_json::json;

use crate::process::{cutover_binary, jwks, vm_rss_kib};

const PROJECT: &str = "probe-project";
const REGION: &str = "us-central1";
const AUDIENCE: &str = "https://cutover-probe.example.com";
const PUSHER: &str = "cutover-push@probe-project.iam.gserviceaccount.com";
const MESSAGES: usize = 600;
const ID_BYTES: usize = 700 * 1024;
const SUMMARY_BYTES: usize = 200 * 1024;
/// Pushes in flight at once (Pub/Sub pushes concurrently too).
const CONCURRENCY: usize = 4;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Messages per kind (600 reproduces the issue).
    #[arg(long, default_value_t = MESSAGES)]
    messages: usize,
    /// Keep the server's log file here instead of a temporary directory.
    #[arg(long)]
    log: Option<PathBuf>,
}

/// The server process; killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(bin: &Path, fake: &FakeGcp, log: PathBuf) -> Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let jwks = jwks().await?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .args(cutover_fakes::flags::flags(fake, PROJECT, REGION))
            .args(["--port", &port.to_string(), "--log-format", "json"])
            .args(["--push-auth", "google", "--jwks-url", &jwks])
            .args(["--push-audience", AUDIENCE])
            .args(["--push-service-accounts", PUSHER]);
        for (k, _) in std::env::vars() {
            if k.starts_with("CUTOVER_") || k == "RUST_LOG" || k == "PORT" {
                cmd.env_remove(k);
            }
        }
        let out = std::fs::File::create(&log)?;
        cmd.stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null());
        let server = Server {
            child: cmd.spawn().context("starting cutover")?,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{}/healthz", server.base)).send().await
                && r.status().is_success()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!(
            "cutover did not answer /healthz within 5 s (log: {:?})",
            server.log
        )
    }

    fn rss_kib(&self) -> Result<u64> {
        vm_rss_kib(self.child.id())
    }

    fn log_bytes(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.log)?.len())
    }
}

/// A pusher that signs every push as Pub/Sub would (a token for each endpoint's audience).
fn signed_pusher(base: &str) -> Pusher {
    let mut p = Pusher::new(base, PROJECT);
    p.signer = Some(PushSigner {
        audience: AUDIENCE.to_string(),
        email: PUSHER.to_string(),
        clock: cutover_fakes::FakeClock::System,
    });
    p
}

/// What one batch of pushes got back.
#[derive(Default)]
struct Answers {
    by_status: std::collections::BTreeMap<u16, usize>,
    largest_body: usize,
}

/// Sends `count` pushes made by `body(i)` to `path`, `CONCURRENCY` at a time.
async fn send(
    push: &Pusher,
    path: &str,
    count: usize,
    body: impl Fn(usize) -> Vec<u8>,
) -> Result<Answers> {
    let mut answers = Answers::default();
    let mut results = futures::stream::iter(0..count)
        .map(|i| push.post_raw(path, body(i)))
        .buffer_unordered(CONCURRENCY);
    while let Some(r) = results.next().await {
        let r = r.map_err(|e| anyhow!(e))?;
        *answers.by_status.entry(r.status).or_default() += 1;
        answers.largest_body = answers.largest_body.max(r.body.to_string().len());
    }
    Ok(answers)
}

/// A signed-envelope body for a successful build of `api` whose id is `id_bytes` of `x`s
/// (unique per `i`), with nothing else that could make it large.
fn build_body(i: usize, id_bytes: usize) -> Vec<u8> {
    let mut id = format!("{i:06}-");
    id.push_str(&"x".repeat(id_bytes.saturating_sub(id.len())));
    let data = json!({
        "id": id,
        "status": "SUCCESS",
        "projectId": PROJECT,
        "substitutions": {"_SERVICE_NAME": "api", "_DEPLOY_REGION": REGION},
    });
    envelope(
        &serde_json::to_vec(&data).unwrap_or_default(),
        i,
        "cutover-builds",
    )
}

fn envelope(data: &[u8], i: usize, subscription: &str) -> Vec<u8> {
    let sub = format!("projects/{PROJECT}/subscriptions/{subscription}");
    let v = cutover_fakes::encode::encode_push(
        data,
        &Default::default(),
        &(5_000_000 + i).to_string(),
        Timestamp::now(),
        &sub,
    );
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The largest id whose build push fits the body limit (base64 grows data by 4/3).
fn id_bytes_at_limit() -> usize {
    (MAX_BODY_BYTES.saturating_sub(1024)) / 4 * 3 - 256
}

struct Row {
    what: String,
    answers: Answers,
    rss_kib: u64,
    /// Log bytes this batch wrote.
    log_bytes: u64,
}

pub async fn run(args: Args) -> Result<()> {
    let bin = cutover_binary()?;
    let dir = std::env::temp_dir().join(format!("cutover-probe-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = args.log.clone().unwrap_or_else(|| dir.join("cutover.log"));
    let fake = FakeGcp::start(cutover_fakes::FakeClock::System).await;
    fake.add_service(
        PROJECT,
        REGION,
        "api",
        "api-00001-abc",
        RevisionProfile::healthy(),
        20.0,
    );
    fake.deploy(
        PROJECT,
        REGION,
        "api",
        "api-00002-def",
        RevisionProfile::healthy(),
    );
    let server = Server::start(&bin, &fake, log).await?;
    let push = signed_pusher(&server.base);

    // Idle: started, a rollout under way (the alerts below need one), a few requests served.
    let started = push
        .build("api", REGION, "SUCCESS", Timestamp::now())
        .await
        .map_err(|e| anyhow!(e))?;
    if started.status != 200 {
        bail!(
            "a valid signed build was answered {}: {}",
            started.status,
            started.body
        );
    }
    for _ in 0..20 {
        let _ = push.tick(Timestamp::now()).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_kib = server.rss_kib()?;
    let mut logged = server.log_bytes()?;
    let mut logged_since = |server: &Server| -> Result<u64> {
        let now = server.log_bytes()?;
        let batch = now - logged;
        logged = now;
        Ok(batch)
    };

    let mut rows = Vec::new();
    let mut variants = vec![ID_BYTES.min(id_bytes_at_limit())];
    if id_bytes_at_limit() > ID_BYTES {
        variants.push(id_bytes_at_limit());
    }
    let n = args.messages;
    for id_bytes in variants {
        let answers = send(&push, "/pubsub/builds", n, |i| build_body(i, id_bytes)).await?;
        rows.push(Row {
            what: format!("{n} builds, {} KB ids", id_bytes / 1024),
            answers,
            rss_kib: server.rss_kib()?,
            log_bytes: logged_since(&server)?,
        });
    }
    let summary = "s".repeat(SUMMARY_BYTES);
    let answers = send(&push, "/pubsub/alerts", n, |i| {
        let mut alert = incident(
            PROJECT,
            "api",
            "api-00002-def",
            REGION,
            "open",
            Timestamp::now(),
        );
        alert["incident"]["incident_id"] = json!(format!("0.probe{i}"));
        alert["incident"]["summary"] = json!(summary);
        envelope(
            &serde_json::to_vec(&alert).unwrap_or_default(),
            n + i,
            "cutover-alerts",
        )
    })
    .await?;
    rows.push(Row {
        what: format!("+ {n} alerts, {} KB summaries", SUMMARY_BYTES / 1024),
        answers,
        rss_kib: server.rss_kib()?,
        log_bytes: logged_since(&server)?,
    });

    println!(
        "probe inputs: real cutover binary ({}), push auth on, JSON logs to {:?}, body limit {} bytes, {CONCURRENCY} pushes in flight",
        bin.display(),
        server.log,
        MAX_BODY_BYTES
    );
    println!("idle RSS: {:.1} MiB", idle_kib as f64 / 1024.0);
    println!(
        "{:<34} {:>22} {:>14} {:>12} {:>16}",
        "after", "answers", "largest answer", "RSS", "log written"
    );
    let mut met = true;
    for r in &rows {
        let statuses: Vec<String> = r
            .answers
            .by_status
            .iter()
            .map(|(s, c)| format!("{c}×{s}"))
            .collect();
        let ratio = r.rss_kib as f64 / idle_kib as f64;
        met &= ratio <= 2.0 && r.log_bytes < 1_000_000;
        println!(
            "{:<34} {:>22} {:>12} B {:>6.1} MiB ({ratio:.2}× idle) {:>10} B",
            r.what,
            statuses.join(" "),
            r.answers.largest_body,
            r.rss_kib as f64 / 1024.0,
            r.log_bytes,
        );
    }
    println!(
        "acceptance (after each batch RSS ≤ 2× idle, each batch's log < 1 MB): {}",
        if met { "met" } else { "NOT met" }
    );
    if !met {
        bail!("acceptance not met");
    }
    Ok(())
}
