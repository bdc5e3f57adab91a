//! Spawning cutover against fresh fakes, and reading the outcome back from the fakes.

use std::sync::Arc;

use cutover::clock::Clock;
use cutover::config::ServeArgs;
use cutover::events::BuildStatus;
use cutover::reconcile::DecisionRecord;
use cutover::server::{self, App};
use cutover::sim::pusher::{Pushed, Pusher};
use cutover::sim::{FakeGcp, RevisionProfile};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::broadcast;

pub const PROJECT: &str = "test-project";
pub const REGION: &str = "europe-west1";

pub fn t0() -> Timestamp {
    "2026-08-20T10:00:00Z".parse().unwrap()
}

/// cutover settings pointing at `fake`, with `extra` flags appended (later flags win).
pub fn args(fake: &FakeGcp, extra: &[&str]) -> ServeArgs {
    let mut flags = vec!["--event-deadline", "10s"];
    flags.extend_from_slice(extra);
    cutover::sim::local::serve_args(fake, PROJECT, REGION, &flags).expect("test flags parse")
}

/// One running cutover instance and the fakes it talks to.
pub struct TestApp {
    pub clock: Clock,
    pub fake: FakeGcp,
    pub push: Pusher,
    pub app: Arc<App>,
    pub decisions: broadcast::Receiver<DecisionRecord>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A cutover instance against fresh fakes on a manual clock.
pub async fn spawn_app(extra: &[&str]) -> TestApp {
    let clock = Clock::manual(t0());
    let fake = FakeGcp::start(clock.clone()).await;
    spawn_on(fake, clock, extra).await
}

/// A cutover instance against existing fakes (a second instance, or a restarted one).
pub async fn spawn_on(fake: FakeGcp, clock: Clock, extra: &[&str]) -> TestApp {
    let app = server::build(&args(&fake, extra), clock.clone())
        .await
        .expect("cutover starts");
    let decisions = app.reconciler.subscribe();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(server::run(
        listener,
        Arc::clone(&app),
        std::future::pending(),
    ));
    TestApp {
        clock,
        fake,
        push: Pusher::new(&format!("http://{addr}"), PROJECT),
        app,
        decisions,
        server,
    }
}

pub fn stable_of(service: &str) -> String {
    format!("{service}-00001-abc")
}

pub fn candidate_of(service: &str) -> String {
    format!("{service}-00002-def")
}

impl TestApp {
    /// A service serving 100% on a healthy stable revision at `rps` requests per second.
    pub fn service(&self, service: &str, rps: f64) {
        self.fake.add_service(
            PROJECT,
            REGION,
            service,
            &stable_of(service),
            RevisionProfile::healthy(),
            rps,
        );
    }

    /// Deploys the candidate with `--no-traffic` and sends the build's completion message.
    pub async fn release(&self, service: &str, profile: RevisionProfile) -> Pushed {
        self.fake
            .deploy(PROJECT, REGION, service, &candidate_of(service), profile);
        self.push
            .build(service, REGION, BuildStatus::Success, self.clock.now())
            .await
            .unwrap()
    }

    /// Advances the clock one minute and ticks, `n` times; returns the last answer.
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
        let candidate = candidate_of(service);
        let mut out: Vec<u8> = Vec::new();
        for change in self.fake.history(PROJECT, REGION, service) {
            let p = change
                .allocation
                .iter()
                .find(|(r, _)| *r == candidate)
                .map(|(_, p)| *p)
                .unwrap_or(0);
            if out.last() != Some(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Current spec traffic as (revision, percent) with percent > 0.
    pub fn split(&self, service: &str) -> Vec<(String, u8)> {
        let mut v: Vec<(String, u8)> = self
            .fake
            .traffic(PROJECT, REGION, service)
            .into_iter()
            .filter(|(_, p, _)| *p > 0)
            .map(|(r, p, _)| (r, p))
            .collect();
        v.sort();
        v
    }

    /// A cutover annotation on the service.
    pub fn annotation(&self, service: &str, key: &str) -> Option<String> {
        self.fake.service_json(PROJECT, REGION, service)["annotations"][key]
            .as_str()
            .map(String::from)
    }

    /// Every decision published so far.
    pub fn drain(&mut self) -> Vec<DecisionRecord> {
        let mut out = Vec::new();
        while let Ok(d) = self.decisions.try_recv() {
            out.push(d);
        }
        out
    }
}
