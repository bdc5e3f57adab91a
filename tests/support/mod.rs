//! What the end-to-end tests (`tests/e2e/`) and the chaos suite (`tests/chaos/`) share: cutover
//! started against fresh fakes, in-process or as the real binary, on a clock shared with the
//! fakes; pushes of builds and ticks; and reading back what happened (traffic history,
//! annotations, decision records). Included by both with `#[path = "../support/mod.rs"]`.
#![allow(
    dead_code,
    reason = "each test binary uses its own part of the shared support"
)]

use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use cutover::clock::Clock;
use cutover::config::ServeArgs;
use cutover::reconcile::DecisionRecord;
use cutover::server::{self, App};
use cutover_fakes::pusher::{Pushed, Pusher};
use cutover_fakes::{FakeClock, FakeGcp, RevisionProfile};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::broadcast;

/// Where the tests' clocks start.
pub fn t0() -> Timestamp {
    "2026-08-20T10:00:00Z".parse().expect("a time")
}

/// The fakes' view of `clock`: the same time, moved by whichever side advances it.
pub fn fake_clock(clock: &Clock) -> FakeClock {
    match clock {
        Clock::System => FakeClock::System,
        Clock::Manual(time) => FakeClock::Manual(Arc::clone(time)),
    }
}

/// The candidate's share of `service` in `project`/`region` after each write that changed it,
/// oldest first (0 before the rollout).
pub fn candidate_steps_of(fake: &FakeGcp, project: &str, region: &str, service: &str) -> Vec<u8> {
    let candidate = candidate_of(service);
    let mut out: Vec<u8> = Vec::new();
    for change in fake.history(project, region, service) {
        let p = change
            .allocation
            .iter()
            .find(|(r, _)| *r == candidate)
            .map_or(0, |(_, p)| *p);
        if out.last() != Some(&p) {
            out.push(p);
        }
    }
    out
}

/// cutover settings pointing at `fake` for `project`/`region`, with `extra` flags appended
/// (later flags win), or clap's refusal.
pub fn try_serve_args<S: AsRef<str>>(
    fake: &FakeGcp,
    project: &str,
    region: &str,
    extra: &[S],
) -> Result<ServeArgs, String> {
    ServeArgs::from_flags(cutover_fakes::flags::flags_with(
        fake, project, region, extra,
    ))
    .map_err(|e| e.to_string())
}

/// [`try_serve_args`] for flags that must parse.
pub fn serve_args<S: AsRef<str>>(
    fake: &FakeGcp,
    project: &str,
    region: &str,
    extra: &[S],
) -> ServeArgs {
    try_serve_args(fake, project, region, extra).expect("test flags parse")
}

/// Serves `app` on a fresh loopback port in a task of the current runtime.
pub async fn serve(app: &Arc<App>) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let server = tokio::spawn(server::run(
        listener,
        Arc::clone(app),
        std::future::pending(),
    ));
    (addr, server)
}

/// Every decision published so far on `decisions`.
pub fn drain(decisions: &mut broadcast::Receiver<DecisionRecord>) -> Vec<DecisionRecord> {
    let mut out = Vec::new();
    while let Ok(d) = decisions.try_recv() {
        out.push(d);
    }
    out
}

/// The stable revision of `service` in these tests.
pub fn stable_of(service: &str) -> String {
    format!("{service}-00001-abc")
}

/// The candidate revision of `service` in these tests.
pub fn candidate_of(service: &str) -> String {
    format!("{service}-00002-def")
}

/// One in-process cutover instance and the fakes it talks to, for one project and region.
pub struct TestApp {
    pub clock: Clock,
    pub fake: FakeGcp,
    pub push: Pusher,
    pub app: Arc<App>,
    pub decisions: broadcast::Receiver<DecisionRecord>,
    pub project: String,
    pub region: String,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    /// A cutover instance against fresh fakes on a manual clock at [`t0`].
    pub async fn start(project: &str, region: &str, extra: &[&str]) -> TestApp {
        let clock = Clock::manual(t0());
        let fake = FakeGcp::start(fake_clock(&clock)).await;
        TestApp::start_on(project, region, fake, clock, extra).await
    }

    /// A cutover instance against existing fakes (a second instance, or a restarted one);
    /// events get 10 s unless `extra` says otherwise.
    pub async fn start_on(
        project: &str,
        region: &str,
        fake: FakeGcp,
        clock: Clock,
        extra: &[&str],
    ) -> TestApp {
        let mut flags = vec!["--event-deadline", "10s"];
        flags.extend_from_slice(extra);
        let args = serve_args(&fake, project, region, &flags);
        let app = server::build(&args, clock.clone())
            .await
            .expect("cutover starts");
        let decisions = app.reconciler.subscribe();
        let (addr, server) = serve(&app).await;
        TestApp {
            clock,
            fake,
            push: Pusher::new(&format!("http://{addr}"), project),
            app,
            decisions,
            project: project.to_string(),
            region: region.to_string(),
            server,
        }
    }

    /// A service serving 100% on a healthy stable revision at `rps` requests per second.
    pub fn service(&self, service: &str, rps: f64) {
        self.fake.add_service(
            &self.project,
            &self.region,
            service,
            &stable_of(service),
            RevisionProfile::healthy(),
            rps,
        );
    }

    /// A service in `project`/`region` serving 100% on its healthy stable revision at 20
    /// requests per second, with a candidate freshly deployed without traffic.
    pub fn deployed_in(&self, project: &str, region: &str, service: &str) {
        self.fake.add_service(
            project,
            region,
            service,
            &stable_of(service),
            RevisionProfile::healthy(),
            20.0,
        );
        self.fake.deploy(
            project,
            region,
            service,
            &candidate_of(service),
            RevisionProfile::healthy(),
        );
    }

    /// The build notification of a successful deploy of `service`.
    pub async fn build(&self, service: &str) -> Pushed {
        self.push
            .build(service, &self.region, "SUCCESS", self.clock.now())
            .await
            .expect("cutover answers")
    }

    /// Deploys the candidate with `--no-traffic` and sends the build's completion message.
    pub async fn release(&self, service: &str, profile: RevisionProfile) -> Pushed {
        self.fake.deploy(
            &self.project,
            &self.region,
            service,
            &candidate_of(service),
            profile,
        );
        self.build(service).await
    }

    /// Advances the clock one minute and ticks, `n` times, whatever the answers.
    pub async fn ticks(&self, n: u32) {
        for _ in 0..n {
            self.clock.advance(SignedDuration::from_mins(1));
            self.push
                .tick(self.clock.now())
                .await
                .expect("cutover answers");
        }
    }

    /// Advances the clock one minute and ticks, `n` times, each answered 200; the last answer.
    pub async fn tick_minutes(&self, n: u32) -> Pushed {
        let mut last = None;
        for _ in 0..n {
            self.clock.advance(SignedDuration::from_mins(1));
            let p = self.push.tick(self.clock.now()).await.unwrap();
            assert_eq!(p.status, 200, "tick answered {}: {}", p.status, p.body);
            last = Some(p);
        }
        last.expect("at least one tick")
    }

    /// The candidate's share after each accepted traffic change, repeats folded.
    pub fn candidate_steps(&self, service: &str) -> Vec<u8> {
        self.candidate_steps_in(&self.region, service)
    }

    /// [`TestApp::candidate_steps`] of a service in `region`.
    pub fn candidate_steps_in(&self, region: &str, service: &str) -> Vec<u8> {
        candidate_steps_of(&self.fake, &self.project, region, service)
    }

    /// Current spec traffic as (revision, percent) with percent > 0.
    pub fn split(&self, service: &str) -> Vec<(String, u8)> {
        let mut v: Vec<(String, u8)> = self
            .fake
            .traffic(&self.project, &self.region, service)
            .into_iter()
            .filter(|(_, p, _)| *p > 0)
            .map(|(r, p, _)| (r, p))
            .collect();
        v.sort();
        v
    }

    /// An annotation on the service (full key, e.g. `cutover.dev/phase`).
    pub fn annotation(&self, service: &str, key: &str) -> Option<String> {
        self.fake.service_json(&self.project, &self.region, service)["annotations"][key]
            .as_str()
            .map(String::from)
    }

    /// A person sets `service`'s split to 70% stable / 30% candidate by hand, and the next tick
    /// sees it: the rollout must now be paused for a manual change.
    pub async fn change_traffic_by_hand(&self, service: &str) {
        self.fake.set_traffic_by_hand(
            &self.project,
            &self.region,
            service,
            &[(&stable_of(service), 70), (&candidate_of(service), 30)],
        );
        self.tick_minutes(1).await;
        assert_eq!(
            self.annotation(service, "cutover.dev/paused-by").as_deref(),
            Some("manual-change"),
            "a split changed by hand pauses the rollout"
        );
    }

    /// Every decision published so far.
    pub fn drain(&mut self) -> Vec<DecisionRecord> {
        drain(&mut self.decisions)
    }
}

/// A loopback port nobody listens on now.
/// Timing flags for the real binary on the real clock: steps judged after 2 s, metrics read
/// as they land, and 20 requests enough to judge, so a whole rollout takes seconds.
pub const REAL_CLOCK_TIMING: [&str; 6] = [
    "--step-interval",
    "2s",
    "--metrics-delay",
    "0s",
    "--min-requests",
    "20",
];

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `cutover serve` process: killed and reaped when dropped.
pub struct Process {
    pub child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Process {
    /// The child, now the caller's to wait for.
    pub fn take(&mut self) -> Child {
        self.child.take().expect("the process is still ours")
    }

    /// Waits up to `within` for `/healthz` to answer 2xx; whether it did.
    pub async fn healthy(&self, within: Duration) -> bool {
        let http = reqwest::Client::new();
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What one run of an operator verb (`cutover status`, `promote`, …) of the real binary did.
#[derive(Debug)]
pub struct VerbRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl TestApp {
    /// A cutover instance against fresh fakes on a manual clock that starts at the machine's
    /// time, for tests that also run the real binary's operator verbs (which read the system
    /// clock): the manual clock only moves forward from there, so a verb's `now` is never later
    /// than the server's.
    pub async fn start_now(project: &str, region: &str, extra: &[&str]) -> TestApp {
        let clock = Clock::manual(Timestamp::now());
        let fake = FakeGcp::start(fake_clock(&clock)).await;
        TestApp::start_on(project, region, fake, clock, extra).await
    }

    /// The flags that point an operator verb at this instance's fakes, as `alice`.
    pub fn verb_flags(&self) -> Vec<String> {
        let base = self.fake.base_url();
        [
            "--project",
            &self.project,
            "--region",
            &self.region,
            "--run-endpoint",
            &base,
            "--monitoring-endpoint",
            &base,
            "--metadata-host",
            &self.fake.metadata_host(),
            "--auth",
            "none",
            "--actor",
            "alice",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Runs `cutover VERB ARGS… FLAGS…` (the real binary, with the fakes' flags of
    /// [`TestApp::verb_flags`] and `flags`, no `CUTOVER_*` from the environment) to its end.
    pub async fn verb(&self, verb: &str, args: &[&str]) -> VerbRun {
        let mut argv: Vec<String> = vec![verb.to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        argv.extend(self.verb_flags());
        run_verb(argv).await
    }
}

/// Runs the real `cutover` binary with `argv`, off the async runtime (the fakes it talks to
/// run on it), with no `CUTOVER_*` or Google variable inherited.
pub async fn run_verb(argv: Vec<String>) -> VerbRun {
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().to_string();
            if k.starts_with("CUTOVER_") || k.starts_with("GOOGLE_") || k == "GCE_METADATA_HOST" {
                cmd.env_remove(k);
            }
        }
        cmd.args(&argv).output().expect("the cutover binary runs")
    })
    .await
    .expect("the verb's thread");
    VerbRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
