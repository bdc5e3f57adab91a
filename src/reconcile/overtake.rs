//! An alert overtakes the evaluation in flight (`flight`), against the Cloud Run fake: the
//! rollback lands while the evaluation is still inside its Monitoring query, and the
//! evaluation, which had not asked to write, stops there and writes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::SignedDuration;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::*;
use crate::decision::Write;
use crate::decision::evidence::{ServiceStats, Window};
use crate::gcp::monitoring::MonitoringClient;
use crate::gcp::run::RunClient;
use crate::gcp::{Google, TokenSource};
use crate::metrics::MetricsError;
use crate::metrics::cloud_monitoring::CloudMonitoring;
use crate::router::cloud_run::CloudRunRouter;
use cutover_fakes::FakeGcp;
use cutover_fakes::testkit::{PROJECT, REGION, fake_with_candidate};

/// Cloud Monitoring whose answer reaches cutover only when the test says so: the query is
/// sent (the fake answers it), then held, as a slow query would be.
struct HeldMonitoring {
    inner: CloudMonitoring,
    answered: Arc<Notify>,
    release: Arc<Notify>,
}

impl MetricsSource for HeldMonitoring {
    async fn service_stats(
        &self,
        target: &ServiceRef,
        window: Window,
        deadline: Instant,
    ) -> Result<ServiceStats, MetricsError> {
        let stats = self.inner.service_stats(target, window, deadline).await;
        self.answered.notify_one();
        self.release.notified().await;
        stats
    }
}

fn target() -> ServiceRef {
    ServiceRef::checked(PROJECT, REGION, "api").expect("valid ids")
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

fn alert() -> Trigger {
    Trigger::Alert {
        incident_id: "0.incident".into(),
        summary: "5xx above threshold".into(),
    }
}

/// `trigger` for the test's service, handled by `reconciler` in a task of its own.
fn spawn_reconcile<R: TrafficRouter, M: MetricsSource>(
    reconciler: &Arc<Reconciler<R, M>>,
    trigger: Trigger,
) -> tokio::task::JoinHandle<Result<Vec<DecisionRecord>, ReconcileError>> {
    let reconciler = Arc::clone(reconciler);
    tokio::spawn(async move { reconciler.reconcile(&target(), trigger, deadline()).await })
}

fn annotation(fake: &FakeGcp, key: &str) -> String {
    fake.service_json(PROJECT, REGION, "api")["annotations"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The fake with `api` rolled out to 10 % by a build, and the clock where that step is due
/// (its judgement queries Monitoring).
async fn due_at_ten_percent<M: MetricsSource>(
    metrics: impl FnOnce(Google, String) -> M,
) -> (FakeGcp, Clock, Arc<Reconciler<CloudRunRouter, M>>) {
    due_at_ten_percent_through(
        |google, fake| CloudRunRouter::new(RunClient::new(google.clone(), &fake.base_url())),
        metrics,
    )
    .await
}

/// [`due_at_ten_percent`] with the router `router` makes.
async fn due_at_ten_percent_through<R: TrafficRouter, M: MetricsSource>(
    router: impl FnOnce(&Google, &FakeGcp) -> R,
    metrics: impl FnOnce(Google, String) -> M,
) -> (FakeGcp, Clock, Arc<Reconciler<R, M>>) {
    let (fake, fake_clock) = fake_with_candidate().await;
    let clock = Clock::Manual(fake_clock.shared().expect("a manual clock"));
    let google = Google::new(reqwest::Client::new(), TokenSource::None);
    let reconciler = Arc::new(Reconciler::new(
        router(&google, &fake),
        metrics(google, fake.base_url()),
        SmokeCheck::new(None).expect("an HTTP client"),
        Policy::default(),
        clock.clone(),
    ));
    let build = Trigger::Build {
        build_id: "b-1".into(),
    };
    reconciler
        .reconcile(&target(), build, deadline())
        .await
        .expect("the build starts the rollout");
    assert_eq!(annotation(&fake, "cutover.dev/percent"), "10");
    clock.set(clock.now() + SignedDuration::from_mins(8));
    (fake, clock, reconciler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_rolls_back_while_the_evaluation_is_inside_its_query_which_then_stops_unwritten() {
    let answered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (a, r) = (answered.clone(), release.clone());
    let (fake, _clock, reconciler) = due_at_ten_percent(move |google, base| HeldMonitoring {
        inner: CloudMonitoring::new(MonitoringClient::new(google, &base)),
        answered: a,
        release: r,
    })
    .await;
    let mut records = reconciler.subscribe();
    let before = fake.requests().len();

    // The tick's evaluation reads the service and sends its query, whose answer is held.
    let evaluation = spawn_reconcile(&reconciler, Trigger::Tick);
    answered.notified().await;

    // The alert arrives meanwhile: it does not wait for the evaluation in flight.
    let rolled_back = tokio::time::timeout(
        Duration::from_secs(60),
        reconciler.reconcile(&target(), alert(), deadline()),
    )
    .await
    .expect("the alert went ahead instead of waiting for the evaluation in flight")
    .expect("the alert is handled");
    assert_eq!(rolled_back.last().unwrap().decision, "rollback");
    assert_eq!(rolled_back.last().unwrap().write, "applied");
    assert_eq!(annotation(&fake, "cutover.dev/phase"), "rolled-back");

    // The evaluation, which had not asked to write, left the service to the alert: it
    // stopped inside its query, decided nothing and wrote nothing, though its query's answer
    // never came.
    let stopped = tokio::time::timeout(Duration::from_secs(60), evaluation)
        .await
        .expect("the evaluation stopped instead of waiting for its query")
        .unwrap()
        .expect("the evaluation ends");
    assert!(stopped.is_empty(), "{stopped:?}");

    // At the fake: the query, then the rollback, the one write, on the etag it read: the
    // alert did not lose a race to the evaluation's write and read again.
    let requests = fake.requests()[before..].to_vec();
    let query = requests
        .iter()
        .position(|r| r.path.contains("/timeSeries"))
        .expect("the evaluation's query");
    let patches: Vec<usize> = (0..requests.len())
        .filter(|i| requests[*i].method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1, "the rollback alone: {requests:#?}");
    assert!(query < patches[0], "the query was sent before the rollback");
    assert_eq!(requests[patches[0]].status, 200);
    let history = fake.history(PROJECT, REGION, "api");
    let last = history.last().unwrap();
    assert!(last.etag_matched);
    assert_eq!(last.allocation, vec![("api-00001-abc".to_string(), 100)]);
    let mut seen = Vec::new();
    while let Ok(r) = records.try_recv() {
        seen.push((r.trigger, r.decision.to_string()));
    }
    assert_eq!(
        seen,
        [("alert", "rollback".to_string())],
        "the rollback is the one decision: {seen:?}"
    );
    release.notify_one();
}

/// A router around Cloud Run's that behaves as the recorded platforms do while a write is in
/// flight: the write it holds leaves an intent, and observing the service meanwhile fails as
/// transient ("another write is in flight"), as `router::recorded` does.
struct IntentRouter {
    inner: CloudRunRouter,
    hold_next_write: AtomicBool,
    /// Hold the next write once the platform has accepted it instead (as while its operation
    /// is waited for), leaving observations alone.
    hold_after_next_write: AtomicBool,
    in_flight: AtomicBool,
    writing: Arc<Notify>,
    release: Arc<Notify>,
    /// Told when an observation was refused because of the write in flight.
    refused: Arc<Notify>,
}

impl IntentRouter {
    /// Around Cloud Run's router on `fake`, holding nothing until told.
    fn around(google: &Google, fake: &FakeGcp) -> Self {
        IntentRouter {
            inner: CloudRunRouter::new(RunClient::new(google.clone(), &fake.base_url())),
            hold_next_write: AtomicBool::new(false),
            hold_after_next_write: AtomicBool::new(false),
            in_flight: AtomicBool::new(false),
            writing: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
            refused: Arc::new(Notify::new()),
        }
    }
}

impl TrafficRouter for IntentRouter {
    type Version = <CloudRunRouter as TrafficRouter>::Version;

    async fn observe(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> Result<Observation<Self::Version>, RouterError> {
        if self.in_flight.load(Ordering::SeqCst) {
            self.refused.notify_one();
            return Err(RouterError::new(
                ErrorKind::Transient,
                format!("{target}: another write is in flight"),
            ));
        }
        self.inner.observe(target, deadline).await
    }

    async fn list(
        &self,
        project: &str,
        region: &str,
        deadline: Instant,
    ) -> Result<Vec<Observation<Self::Version>>, RouterError> {
        self.inner.list(project, region, deadline).await
    }

    async fn apply(
        &self,
        read: &Observation<Self::Version>,
        write: &Write,
        deadline: Instant,
    ) -> Result<Observation<Self::Version>, RouterError> {
        if self.hold_after_next_write.swap(false, Ordering::SeqCst) {
            let done = self.inner.apply(read, write, deadline).await;
            self.writing.notify_one();
            self.release.notified().await;
            return done;
        }
        if self.hold_next_write.swap(false, Ordering::SeqCst) {
            self.in_flight.store(true, Ordering::SeqCst);
            self.writing.notify_one();
            self.release.notified().await;
            let done = self.inner.apply(read, write, deadline).await;
            self.in_flight.store(false, Ordering::SeqCst);
            return done;
        }
        self.inner.apply(read, write, deadline).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_finds_the_write_in_flight_waits_for_it_instead_of_failing() {
    let (fake, fake_clock) = fake_with_candidate().await;
    let clock = Clock::Manual(fake_clock.shared().expect("a manual clock"));
    let google = Google::new(reqwest::Client::new(), TokenSource::None);
    let router = IntentRouter::around(&google, &fake);
    router.hold_next_write.store(true, Ordering::SeqCst);
    let (writing, release, refused) = (
        router.writing.clone(),
        router.release.clone(),
        router.refused.clone(),
    );
    let reconciler = Arc::new(Reconciler::new(
        router,
        CloudMonitoring::new(MonitoringClient::new(google, &fake.base_url())),
        SmokeCheck::new(None).expect("an HTTP client"),
        Policy::default(),
        clock.clone(),
    ));

    // A build's write (its first step to 10 %) is in flight when the alert comes.
    let build = spawn_reconcile(
        &reconciler,
        Trigger::Build {
            build_id: "b-1".into(),
        },
    );
    writing.notified().await;
    let alert = spawn_reconcile(&reconciler, alert());
    // The alert reads and finds the intent; it waits for this instance's write to finish.
    tokio::time::timeout(Duration::from_secs(60), refused.notified())
        .await
        .expect("the alert read the service while the write was in flight");
    release.notify_one();
    build.await.unwrap().expect("the build's step is written");
    let rolled_back = alert
        .await
        .unwrap()
        .expect("the alert is handled once the write in flight is done, not answered 503");
    assert_eq!(rolled_back.last().unwrap().decision, "rollback");
    assert_eq!(annotation(&fake, "cutover.dev/phase"), "rolled-back");
    let history = fake.history(PROJECT, REGION, "api");
    assert_eq!(
        history.last().unwrap().allocation,
        vec![("api-00001-abc".to_string(), 100)]
    );
}

/// An evaluation that has asked to write when the alert comes is not stopped: its write may
/// have landed, so it runs to its end and its decision is recorded; the alert rolls back after
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_that_has_written_runs_to_its_end_when_an_alert_comes() {
    let (fake, _clock, reconciler) = due_at_ten_percent_through(IntentRouter::around, |g, base| {
        CloudMonitoring::new(MonitoringClient::new(g, &base))
    })
    .await;
    let (written, release) = (
        reconciler.router.writing.clone(),
        reconciler.router.release.clone(),
    );
    reconciler
        .router
        .hold_after_next_write
        .store(true, Ordering::SeqCst);

    let evaluation = spawn_reconcile(&reconciler, Trigger::Tick);
    written.notified().await;
    assert_eq!(annotation(&fake, "cutover.dev/percent"), "50");
    let rolled_back = reconciler
        .reconcile(&target(), alert(), deadline())
        .await
        .expect("the alert is handled");
    assert_eq!(rolled_back.last().unwrap().decision, "rollback");
    release.notify_one();
    let advanced = evaluation.await.unwrap().expect("the evaluation ends");
    assert_eq!(
        advanced
            .iter()
            .map(|r| (r.decision.to_string(), r.write.as_str()))
            .collect::<Vec<_>>(),
        [("advance".to_string(), "applied")],
        "the write that landed is recorded"
    );
    assert_eq!(annotation(&fake, "cutover.dev/phase"), "rolled-back");
}
