//! `lab demo`: a whole rollout loop on one machine, no cloud account needed.
//!
//! Starts the fake Google APIs and the real cutover server in-process on loopback, then drives
//! them only through real HTTP push requests, on a manual clock so that 5-minute soaks take
//! milliseconds: a healthy candidate goes 10 → 50 → 100, and a regressed one (20% 5xx) is
//! rolled back after its first judged step. Each decision is printed as one timeline line. The
//! demo checks its own outcome and fails if a scenario did not end as it should.

use std::fmt::Write as _;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::broadcast;

use cutover::clock::Clock;
use cutover::reconcile::DecisionRecord;
use cutover::server;
use cutover_fakes::pusher::Pusher;
use cutover_fakes::{FakeClock, FakeGcp, RevisionProfile};

use crate::cli::Scenario;

const PROJECT: &str = "demo-project";
const REGION: &str = "us-central1";
/// How long a scenario may run on the simulated clock before the demo gives up.
const MAX_MINUTES: i64 = 90;

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[error("demo failed: {0}")]
pub struct DemoError(String);

/// Settings for the in-process server: everything explicit, so the caller's environment cannot
/// change the demo.
pub fn serve_args(fake: &FakeGcp) -> Result<cutover::config::ServeArgs, DemoError> {
    let extra = [
        "--smoke-path",
        "/healthz",
        "--steps",
        "10,50,100",
        "--step-interval",
        "5m",
        "--metrics-delay",
        "3m",
        "--min-requests",
        "100",
        "--max-hold",
        "1h",
        "--max-error-rate",
        "0.01",
        "--max-p99-ms",
        "1000",
        "--event-deadline",
        "20s",
    ];
    crate::local::serve_args(fake, PROJECT, REGION, &extra).map_err(DemoError)
}

struct Run {
    clock: Clock,
    fake: FakeGcp,
    pusher: Pusher,
    decisions: broadcast::Receiver<DecisionRecord>,
}

/// Runs the chosen scenarios and prints their timelines; with `screenshot`, then leaves a third
/// rollout at 50% and writes the status page's picture there.
pub async fn run(
    scenario: Scenario,
    screenshot: Option<std::path::PathBuf>,
) -> Result<(), DemoError> {
    let start: Timestamp = "2026-12-01T09:00:00Z"
        .parse()
        .map_err(|e| DemoError(format!("{e}")))?;
    let fake_clock = FakeClock::manual(start);
    let clock = crate::local::clock(&fake_clock);
    let fake = FakeGcp::start(fake_clock).await;
    let args = serve_args(&fake)?;
    let app = server::build(&args, clock.clone())
        .await
        .map_err(|e| DemoError(e.to_string()))?;
    let decisions = app.reconciler.subscribe();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| DemoError(format!("bind: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DemoError(e.to_string()))?;
    tokio::spawn(server::run(
        listener,
        Arc::clone(&app),
        std::future::pending(),
    ));
    let pusher = Pusher::new(&format!("http://{addr}"), PROJECT);
    let mut run = Run {
        clock,
        fake,
        pusher,
        decisions,
    };

    println!(
        "cutover demo: fake Cloud Run + Cloud Monitoring at {}, cutover at http://{addr}",
        run.fake.base_url()
    );
    println!(
        "policy: steps 10% → 50% → 100%, 5m soak, 3m metrics delay, ≥100 requests, 5xx ≤ 1%, p99 ≤ 1000 ms, smoke GET /healthz\n"
    );
    let wall = std::time::Instant::now();
    if matches!(scenario, Scenario::All | Scenario::Healthy) {
        let end = run
            .scenario(
                "checkout",
                "a healthy candidate",
                RevisionProfile::healthy(),
            )
            .await?;
        expect(
            &end,
            "complete",
            100,
            "the healthy candidate should reach 100% and become stable",
        )?;
    }
    if matches!(scenario, Scenario::All | Scenario::Regressed) {
        let end = run
            .scenario(
                "payments",
                "a candidate answering 20% 5xx",
                RevisionProfile::healthy().with_error_ratio(0.20),
            )
            .await?;
        expect(
            &end,
            "rollback",
            0,
            "the regressed candidate should be rolled back",
        )?;
    }
    if let Some(file) = screenshot {
        run.in_flight("search").await?;
        crate::screenshot::render(&format!("http://{addr}/status"), &file, 1000)
            .await
            .map_err(DemoError)?;
        println!("status page of this state written to {}", file.display());
    }
    println!(
        "demo finished in {:.1} s of wall time",
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}

fn expect(end: &DecisionRecord, decision: &str, percent: u8, what: &str) -> Result<(), DemoError> {
    if end.decision == decision && end.percent == Some(percent) {
        Ok(())
    } else {
        Err(DemoError(format!(
            "{what}; it ended with {} at {:?}%: {}",
            end.decision, end.percent, end.reason
        )))
    }
}

impl Run {
    /// Starts a healthy rollout of `service` and ticks until it has been at 50% for a few
    /// minutes: a running rollout for the status page's picture.
    async fn in_flight(&mut self, service: &str) -> Result<(), DemoError> {
        self.fake.add_service(
            PROJECT,
            REGION,
            service,
            &format!("{service}-00001-abc"),
            RevisionProfile::healthy(),
            40.0,
        );
        let candidate = format!("{service}-00002-def");
        self.fake.deploy(
            PROJECT,
            REGION,
            service,
            &candidate,
            RevisionProfile::healthy(),
        );
        self.pusher
            .build(service, REGION, "SUCCESS", self.clock.now())
            .await
            .map_err(DemoError)?;
        for _ in 0..12 {
            self.clock.advance(SignedDuration::from_mins(1));
            self.pusher
                .tick(self.clock.now())
                .await
                .map_err(DemoError)?;
        }
        println!(
            "── {service}: a healthy candidate ({candidate}), left running for the status page"
        );
        let _ = self.drain(service, self.clock.now());
        let percent =
            self.fake.service_json(PROJECT, REGION, service)["annotations"]["cutover.dev/percent"]
                .as_str()
                .map(str::to_string);
        match percent.as_deref() {
            Some("50") => Ok(()),
            other => Err(DemoError(format!(
                "{service} should be at 50% for the picture, not {other:?}"
            ))),
        }
    }

    /// Deploys a new revision of `service` with `profile`, sends the build notification, then
    /// ticks once a simulated minute until the rollout ends.
    async fn scenario(
        &mut self,
        service: &str,
        what: &str,
        profile: RevisionProfile,
    ) -> Result<DecisionRecord, DemoError> {
        let began = self.clock.now();
        let stable = format!("{service}-00001-abc");
        let candidate = format!("{service}-00002-def");
        self.fake.add_service(
            PROJECT,
            REGION,
            service,
            &stable,
            RevisionProfile::healthy(),
            20.0,
        );
        self.fake
            .deploy(PROJECT, REGION, service, &candidate, profile);
        println!("── {service}: {what} ({candidate}), stable {stable}, 20 requests/s");
        println!(
            "   {:>6}  {:>15}  {:>8}  {:>6}  {:>7}  {:<9} why",
            "time", "stable/candidate", "requests", "5xx", "p99", "decision"
        );
        let pushed = self
            .pusher
            .build(service, REGION, "SUCCESS", self.clock.now())
            .await
            .map_err(DemoError)?;
        if pushed.status != 200 {
            return Err(DemoError(format!(
                "build push answered {}: {}",
                pushed.status, pushed.body
            )));
        }
        let mut last = self.drain(service, began);
        for _ in 0..MAX_MINUTES {
            if let Some(end) = last
                .as_ref()
                .filter(|d| matches!(d.decision.as_str(), "complete" | "rollback" | "pause"))
            {
                println!();
                return Ok(end.clone());
            }
            self.clock.advance(SignedDuration::from_mins(1));
            let pushed = self
                .pusher
                .tick(self.clock.now())
                .await
                .map_err(DemoError)?;
            if pushed.status != 200 {
                return Err(DemoError(format!(
                    "tick answered {}: {}",
                    pushed.status, pushed.body
                )));
            }
            if let Some(d) = self.drain(service, began) {
                last = Some(d);
            }
        }
        Err(DemoError(format!(
            "{service}: no outcome after {MAX_MINUTES} simulated minutes"
        )))
    }

    /// Prints the decisions made so far about `service`; returns the last one.
    fn drain(&mut self, service: &str, began: Timestamp) -> Option<DecisionRecord> {
        let mut last = None;
        while let Ok(d) = self.decisions.try_recv() {
            if !d.service.ends_with(&format!("/{service}")) {
                continue;
            }
            // A soaking step is silent; everything else is worth a line.
            let quiet = d.decision == "hold" && d.requests.is_none();
            if !quiet {
                println!("{}", line(&d, began));
            }
            last = Some(d);
        }
        last
    }
}

/// One timeline line.
pub fn line(d: &DecisionRecord, began: Timestamp) -> String {
    let secs = d.at.duration_since(began).as_secs().max(0);
    let mut out = String::new();
    let split = d
        .percent
        .map(|p| format!("{}/{}", 100 - p, p))
        .unwrap_or_else(|| "-".into());
    let requests = d
        .requests
        .map(|r| r.to_string())
        .unwrap_or_else(|| "-".into());
    let errors = d
        .error_rate
        .map(cutover::decision::judge::pct)
        .unwrap_or_else(|| "-".into());
    let p99 = d
        .p99_ms
        .map(|p| format!("{p:.0} ms"))
        .unwrap_or_else(|| "-".into());
    let _ = write!(
        out,
        "   {:>3}:{:02}  {:>15}  {:>8}  {:>6}  {:>7}  {:<9} {}",
        secs / 60,
        secs % 60,
        split,
        requests,
        errors,
        p99,
        d.decision,
        d.reason
    );
    out
}
