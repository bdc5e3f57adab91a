//! `probe transport`: what slow and unauthenticated clients can do to a running cutover.
//!
//! Starts the release `cutover` binary with push authentication on (keys from a loopback key
//! server run here, Google APIs on the in-process fakes), measures its idle RSS, then:
//! - **(a) half-sent connections**: opens `--connections` connections that each send the start
//!   of a request head and then one more header byte a second, reopening any the server closes
//!   after `--reconnect-ms`, for `--hold`; meanwhile a fresh connection asks `/healthz` every 100 ms (2 s timeout) and a
//!   signed tick is pushed every second (5 s timeout). Reports `/healthz` latency and failures,
//!   pushes served, and the server's open descriptors. Run once with the server's own descriptor
//!   limit and once with `--fd-limit` (256: the limit the original report used).
//! - **(b) unauthenticated bodies**: `--bodies` requests at once, each announcing
//!   `Content-Length: 1048575` and sending 64 KiB of it, no token. Counts those answered 401
//!   before the rest of their body was sent, and reports the server's RSS while they are open
//!   and after, against idle.
//!
//! Everything stays on 127.0.0.1 and is bounded in count and time.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cutover_fakes::FakeGcp;
use cutover_fakes::pusher::{PushSigner, Pusher};

use crate::process::{cutover_binary, jwks, vm_rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const PROJECT: &str = "probe-project";
const REGION: &str = "us-central1";
const AUDIENCE: &str = "https://cutover-probe.example.com";
const PUSHER: &str = "cutover-push@probe-project.iam.gserviceaccount.com";
/// The start of a request head, never finished.
const HALF_HEAD: &[u8] = b"POST /pubsub/builds HTTP/1.1\r\nhost: probe\r\nx-slow: ";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Half-sent connections held open in (a).
    #[arg(long, default_value_t = 3000)]
    connections: usize,
    /// How long (a) holds them, in seconds.
    #[arg(long, default_value_t = 20)]
    hold: u64,
    /// How long a slow client whose connection was closed waits before opening another, in
    /// milliseconds (0: at once, a connection flood rather than a slowloris).
    #[arg(long, default_value_t = 1000)]
    reconnect_ms: u64,
    /// The descriptor limit of the second run of (a); 0 skips it.
    #[arg(long, default_value_t = 256)]
    fd_limit: u32,
    /// Unauthenticated near-1 MiB requests in (b).
    #[arg(long, default_value_t = 300)]
    bodies: usize,
}

pub async fn run(args: Args) -> Result<()> {
    let own_limit = cutover::server::transport::raise_fd_limit();
    println!(
        "probe transport: descriptor limit of the probe {}",
        own_limit.map_or("unknown".into(), |l| l.to_string())
    );
    let bin = cutover_binary()?;
    let fake = FakeGcp::start(cutover_fakes::FakeClock::System).await;
    let jwks = jwks().await?;

    // (b) first, on a fresh server, so that its memory is compared with a true idle figure.
    let server = Server::start(&bin, &fake, &jwks, None).await?;
    let idle = server.rss_kib();
    println!(
        "idle: RSS {} KiB, {} open descriptors",
        show(idle),
        show(server.fds())
    );
    unauthenticated_bodies(&server, &args, idle).await;
    drop(server);

    let mut limits = vec![None];
    if args.fd_limit > 0 {
        limits.push(Some(args.fd_limit));
    }
    for limit in limits {
        let server = Server::start(&bin, &fake, &jwks, limit).await?;
        let idle = server.rss_kib();
        let described = limit.map_or("the server's own descriptor limit".to_string(), |n| {
            format!("a limit of {n} descriptors")
        });
        half_sent(&server, &args, &described).await;
        println!(
            "    server RSS: {} KiB idle, {} KiB at the end",
            show(idle),
            show(server.rss_kib())
        );
    }
    Ok(())
}

fn show(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

/// A running `cutover serve` with push authentication on.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(
        bin: &PathBuf,
        fake: &FakeGcp,
        jwks: &str,
        fd_limit: Option<u32>,
    ) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut flags = cutover_fakes::flags::flags(fake, PROJECT, REGION);
        flags.extend(["--port".to_string(), port.to_string()]);
        // Push authentication on: the later settings win over the fakes' `--push-auth none`.
        let auth = [
            ("--push-auth", "google"),
            ("--jwks-url", jwks),
            ("--push-audience", AUDIENCE),
            ("--push-service-accounts", PUSHER),
        ];
        flags.extend(
            auth.iter()
                .flat_map(|(k, v)| [k.to_string(), v.to_string()]),
        );
        let mut cmd = match fd_limit {
            None => {
                let mut c = Command::new(bin);
                c.arg("serve");
                c
            }
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" serve \"$@\""))
                    .arg(bin);
                c
            }
        };
        cmd.args(&flags)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("CUTOVER_") {
                cmd.env_remove(k);
            }
        }
        let server = Server {
            child: cmd.spawn().context("starting cutover")?,
            port,
        };
        let started = Instant::now();
        while healthz(port).await.is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("cutover did not answer /healthz within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Warm the key cache with one valid push, as a running instance would have.
        if let Err(e) = signed_tick(port).await {
            bail!("a valid push was not served at start: {e}");
        }
        Ok(server)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn rss_kib(&self) -> Option<u64> {
        vm_rss_kib(self.child.id()).ok()
    }

    fn fds(&self) -> Option<u64> {
        let dir = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).ok()?;
        Some(dir.count() as u64)
    }
}

/// `GET /healthz` on a fresh connection: the latency of a 200, or `None`.
async fn healthz(port: u16) -> Option<Duration> {
    let started = Instant::now();
    let exchange = async {
        let mut c = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut status = [0u8; 12];
        c.read_exact(&mut status).await.ok()?;
        (&status == b"HTTP/1.1 200").then(|| started.elapsed())
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

/// One tick pushed with a valid token for `/pubsub/ticks`: `Ok` if answered 200, else what
/// happened.
async fn signed_tick(port: u16) -> Result<(), String> {
    let mut push = Pusher::new(&format!("http://127.0.0.1:{port}"), PROJECT);
    push.signer = Some(PushSigner {
        audience: AUDIENCE.to_string(),
        email: PUSHER.to_string(),
        clock: cutover_fakes::FakeClock::System,
    });
    let tick = tokio::time::timeout(Duration::from_secs(5), push.tick(jiff::Timestamp::now()));
    match tick.await {
        Ok(Ok(p)) if p.status == 200 => Ok(()),
        Ok(Ok(p)) => Err(format!("HTTP {}", p.status)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// (a): half-sent connections held for `--hold` while `/healthz` and pushes are measured.
async fn half_sent(server: &Server, args: &Args, limit: &str) {
    println!(
        "\n(a) {} half-sent connections for {} s (reopened {} ms after the server closes one), with {limit}",
        args.connections, args.hold, args.reconnect_ms
    );
    let until = Instant::now() + Duration::from_secs(args.hold);
    let opened = Arc::new(AtomicUsize::new(0));
    let closed_by_server = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..args.connections)
        .map(|_| {
            let addr = server.addr();
            let opened = Arc::clone(&opened);
            let closed = Arc::clone(&closed_by_server);
            let pause = Duration::from_millis(args.reconnect_ms);
            tokio::spawn(async move { slow_client(&addr, until, pause, &opened, &closed).await })
        })
        .collect();

    let port = server.port;
    let pushes = tokio::spawn(async move {
        let (mut served, mut failed) = (0usize, Vec::new());
        let mut every = tokio::time::interval(Duration::from_secs(1));
        while Instant::now() < until {
            every.tick().await;
            match signed_tick(port).await {
                Ok(()) => served += 1,
                Err(e) => failed.push(e),
            }
        }
        (served, failed)
    });
    let mut latencies = Vec::new();
    let mut failures = 0usize;
    let mut max_fds = 0u64;
    let mut every = tokio::time::interval(Duration::from_millis(100));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        every.tick().await;
        match healthz(port).await {
            Some(d) => latencies.push(d),
            None => failures += 1,
        }
        max_fds = max_fds.max(server.fds().unwrap_or(0));
    }
    let pushes = pushes.await.unwrap_or_default();
    for a in attackers {
        let _ = a.await;
    }
    latencies.sort();
    let max = latencies.last().copied().unwrap_or_default();
    let p50 = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    println!(
        "    connections opened {} (the server closed {} of them)",
        opened.load(Ordering::Relaxed),
        closed_by_server.load(Ordering::Relaxed)
    );
    println!(
        "    /healthz: {} answered, {failures} failed; latency p50 {:.1} ms, max {:.1} ms",
        latencies.len(),
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    let (served, failed) = pushes;
    println!(
        "    signed pushes served: {served} of {}{}",
        served + failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" (failed: {})", failed.join("; "))
        }
    );
    println!("    server descriptors: at most {max_fds} open");
}

/// One slowloris client: a head that never ends, one byte a second, reopened when closed.
async fn slow_client(
    addr: &str,
    until: Instant,
    pause: Duration,
    opened: &AtomicUsize,
    closed: &AtomicUsize,
) {
    let mut first = true;
    while Instant::now() < until {
        if !std::mem::take(&mut first) {
            tokio::time::sleep(pause).await;
        }
        let connect = TcpStream::connect(addr);
        let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        if c.write_all(HALF_HEAD).await.is_err() {
            closed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut buf = [0u8; 512];
        let alive = loop {
            if Instant::now() >= until {
                break true;
            }
            match tokio::time::timeout(Duration::from_secs(1), c.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break false,
                Ok(Ok(_)) => {}
                Err(_) => {
                    if c.write_all(b"x").await.is_err() {
                        break false;
                    }
                }
            }
        };
        if !alive {
            closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// (b): unauthenticated near-1 MiB bodies, all at once.
async fn unauthenticated_bodies(server: &Server, args: &Args, idle: Option<u64>) {
    println!(
        "\n(b) {} unauthenticated requests announcing 1,048,575 bytes, 64 KiB of it sent",
        args.bodies
    );
    let answered = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let clients: Vec<_> = (0..args.bodies)
        .map(|_| {
            let addr = server.addr();
            let answered = Arc::clone(&answered);
            let mut done = done_rx.clone();
            tokio::spawn(async move {
                let mut conn = None;
                let refused = async {
                    let c = conn.insert(TcpStream::connect(&addr).await.ok()?);
                    c.write_all(UNAUTHENTICATED_HEAD).await.ok()?;
                    let _ = c.write_all(&vec![b'x'; 64 * 1024]).await;
                    let mut status = [0u8; 12];
                    let read = c.read_exact(&mut status);
                    let read = tokio::time::timeout(Duration::from_secs(10), read).await;
                    Some(matches!(read, Ok(Ok(_))) && &status == b"HTTP/1.1 401")
                }
                .await;
                answered.fetch_add(1, Ordering::Relaxed);
                // Hold the connection until every client has its answer.
                let _ = done.wait_for(|d| *d).await;
                drop(conn);
                refused == Some(true)
            })
        })
        .collect();
    let mut peak = idle.unwrap_or(0);
    let started = Instant::now();
    while answered.load(Ordering::Relaxed) < args.bodies
        && started.elapsed() < Duration::from_secs(15)
    {
        peak = peak.max(server.rss_kib().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = server.rss_kib();
    peak = peak.max(held.unwrap_or(0));
    let _ = done_tx.send(true);
    let mut refused = 0usize;
    for c in clients {
        if matches!(c.await, Ok(true)) {
            refused += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    let ratio = |v: Option<u64>| match (v, idle) {
        (Some(v), Some(i)) if i > 0 => format!("{:.2}× idle", v as f64 / i as f64),
        _ => "?".into(),
    };
    println!(
        "    refused with 401 before the body was sent: {refused} of {}",
        args.bodies
    );
    println!(
        "    server RSS: idle {} KiB; peak {peak} KiB ({}) while the {} connections were open; {} KiB ({}) after they closed",
        show(idle),
        ratio(Some(peak)),
        args.bodies,
        show(after),
        ratio(after)
    );
}

/// The head of an unauthenticated push announcing just under 1 MiB.
const UNAUTHENTICATED_HEAD: &[u8] = b"POST /pubsub/builds HTTP/1.1\r\nhost: probe\r\ncontent-type: application/json\r\ncontent-length: 1048575\r\n\r\n";
