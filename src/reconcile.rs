//! The imperative shell around the decision core: observe → gather → decide → apply.
//!
//! For one service and one trigger, [`Reconciler::reconcile`] reads the service, asks
//! [`decide`] what to do, gathers the evidence it asks for (metrics, a smoke check), and applies
//! the write conditionally. A conflict means another writer (a second cutover instance, a
//! duplicated delivery, a person) got there first: observe again and decide again on fresh state,
//! never re-send the stale write. Every decision becomes one [`DecisionRecord`], logged as one
//! structured line and broadcast to whoever listens (the demo's timeline, tests).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::decision::policy::Mode;
use crate::decision::{
    Action, Decision, Evidence, Kind, Need, Observed, Phase, Policy, Record, Trigger, decide,
};
use crate::failure::{ErrorKind, chain};
use crate::flight::{Gates, Urgency};
use crate::metrics::MetricsSource;
use crate::router::{Observation, RouterError, TrafficRouter};
use crate::target::{Platform, ServiceRef};

/// How many times one event re-observes after losing a write race before giving up (and
/// letting Pub/Sub redeliver). Each conflict means someone else made progress.
const MAX_CONFLICTS: u32 = 5;

/// How many services one tick evaluates at once.
const TICK_CONCURRENCY: usize = 16;

/// How many project × region listings one tick runs at once.
const LIST_CONCURRENCY: usize = 8;

/// Why an event could not be handled: the router's error, as its source.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Every write lost its race, [`MAX_CONFLICTS`] times over: Pub/Sub redelivers.
    #[error("still conflicting after {MAX_CONFLICTS} retries")]
    Conflicts(#[source] RouterError),
    /// Observing or writing failed.
    #[error(transparent)]
    Router(#[from] RouterError),
}

impl ReconcileError {
    /// What the failure means: losing every race is transient (someone else is making
    /// progress); anything else is what the router said.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ReconcileError::Conflicts(_) => ErrorKind::Transient,
            ReconcileError::Router(e) => e.kind(),
        }
    }
}

/// One decision, as logged: everything a person needs to see why. One serialisation serves tick
/// answers, listeners, `/status.json` and the decision's log line (`crate::logs` spreads it over
/// the line, so numbers stay numbers and `statistics` stays an object). `at` is the decision's
/// own time.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DecisionRecord {
    pub at: Timestamp,
    pub service: String,
    /// `shadow`: the decision was made and recorded, and nothing was written.
    pub mode: Mode,
    pub trigger: &'static str,
    /// Who asked: `cutover` itself, or the person behind a verb.
    pub actor: Option<String>,
    pub decision: Kind,
    pub reason: String,
    pub candidate: Option<String>,
    pub stable: Option<String>,
    /// The candidate's share after this decision.
    pub percent: Option<u8>,
    pub phase: Option<Phase>,
    pub window_start: Option<Timestamp>,
    pub window_end: Option<Timestamp>,
    pub requests: Option<u64>,
    pub errors_5xx: Option<u64>,
    pub error_rate: Option<f64>,
    pub p99_ms: Option<f64>,
    pub min_requests: Option<u64>,
    pub max_error_rate: Option<f64>,
    pub max_p99_ms: Option<f64>,
    /// Everything a judged step computed: both revisions' counts, rates and percentiles, and
    /// each check's test statistic, bounds and outcome (see `docs/judgement.md`).
    pub statistics: Option<serde_json::Value>,
    /// `applied`, `conflict`, `failed: …`, or `none` when nothing was to be written.
    pub write: String,
    /// The Pub/Sub message that asked for the decision (none for a verb).
    pub message_id: Option<String>,
    /// For a build, its log in the console (the build message's `logUrl`).
    pub log_url: Option<String>,
}

impl DecisionRecord {
    /// The record as one JSON object (what its log line carries).
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            serde_json::json!({ "service": self.service, "unserialisable": e.to_string() })
                .to_string()
        })
    }

    /// Logs a refusal (decision `refused`) at error level, naming the `setting` to change.
    pub fn log_refusal(&self, setting: &str) {
        let record = self.json();
        tracing::error!(target: "cutover::decision", fields_json = record.as_str(), setting, "decision");
    }

    /// Logs the record as one structured line (`target: cutover::decision`).
    fn log(&self) {
        let record = self.json();
        if self.decision.is_warning() {
            tracing::warn!(target: "cutover::decision", fields_json = record.as_str(), "decision");
        } else {
            tracing::info!(target: "cutover::decision", fields_json = record.as_str(), "decision");
        }
    }

    fn new(service: &ServiceRef, trigger: &Trigger, d: &Decision, at: Timestamp) -> Self {
        let r = d.record.as_ref();
        let j = d.judgement.as_ref();
        let p = d.policy.as_ref();
        DecisionRecord {
            at,
            service: service.to_string(),
            mode: Mode::Live,
            trigger: trigger.name(),
            actor: Some(trigger.actor().to_string()),
            decision: d.kind(),
            reason: d.reason.clone(),
            candidate: r.map(|r| r.candidate.clone()),
            stable: r.map(|r| r.stable.clone()),
            percent: r.map(|r| r.percent),
            phase: r.map(|r| r.phase),
            window_start: j.map(|j| j.window.start),
            window_end: j.map(|j| j.window.end),
            requests: j.map(|j| j.requests),
            errors_5xx: j.map(|j| j.errors_5xx),
            error_rate: j.map(|j| j.error_rate),
            p99_ms: j.and_then(|j| j.p99_ms),
            min_requests: p.map(|p| p.min_requests),
            max_error_rate: p.map(|p| p.max_error_rate),
            max_p99_ms: p.map(|p| p.max_p99_ms),
            statistics: j.and_then(|j| j.statistics_json()),
            write: if d.write().is_some() {
                "pending".into()
            } else {
                "none".into()
            },
            message_id: None,
            log_url: None,
        }
    }

    /// A build or alert cutover refuses without reading or writing anything (decision
    /// `refused`): it names a service cutover does not evaluate. See `events/resolve.rs`.
    pub fn refused(service: &str, trigger: &Trigger, reason: String, at: Timestamp) -> Self {
        DecisionRecord {
            at,
            service: service.to_string(),
            trigger: trigger.name(),
            decision: Kind::Refused,
            reason,
            write: "none".into(),
            ..DecisionRecord::default()
        }
    }
}
/// Checks that a candidate answers before it gets traffic.
///
/// The URL comes from the decision core: the candidate's tag URL (from Cloud Run) followed by
/// `CUTOVER_SMOKE_PATH` (validated at start-up to be an absolute path that cannot change the
/// authority). Before anything is sent, the check makes sure the request goes to the tag URL's
/// host: the URL must be some base followed by exactly the configured path, and the whole URL
/// must have the same scheme, host and port as that base, with no user info. It sends
/// no credentials and follows no redirect: a 3xx fails the check (a candidate answering a
/// redirect must not make cutover fetch, and count as healthy, whatever it points at, such as
/// the metadata server).
#[derive(Clone)]
pub struct SmokeCheck {
    http: reqwest::Client,
    path: Option<String>,
}

impl SmokeCheck {
    /// A smoke check for `path` (`CUTOVER_SMOKE_PATH`, already validated; `None` when no smoke
    /// check is configured, in which case every check fails). Fails only if no HTTP client can
    /// be built.
    pub fn new(path: Option<String>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client for smoke checks: {e}"))?;
        Ok(SmokeCheck { http, path })
    }

    /// `GET url` must answer 2xx. Connection failures and 5xx are retried a few times (a new
    /// revision may be starting); any other answer fails at once, a redirect included.
    pub async fn check(&self, url: &str, deadline: Instant) -> Result<(), String> {
        let target = self.target(url)?;
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                let pause = crate::gcp::backoff(attempt + 2);
                if Instant::now() + pause >= deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(10));
            match self.http.get(target.clone()).timeout(left).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_server_error() => {
                    last = format!("GET {url} answered {}", r.status())
                }
                Ok(r) if r.status().is_redirection() => {
                    return Err(format!(
                        "GET {url} answered {} (a redirect; redirects are not followed)",
                        r.status()
                    ));
                }
                Ok(r) => return Err(format!("GET {url} answered {}", r.status())),
                Err(e) => last = format!("GET {url} failed: {e}"),
            }
        }
        Err(last)
    }

    /// The URL to request, if it is the configured path on the tag URL's host.
    fn target(&self, url: &str) -> Result<reqwest::Url, String> {
        let refuse = |why: &str| Err(format!("smoke check of {url:?} not sent: {why}"));
        let Some(path) = self.path.as_deref() else {
            return refuse("no smoke path is configured");
        };
        let Some(base) = url.strip_suffix(path) else {
            return refuse("it does not end with the configured smoke path");
        };
        let (Ok(base), Ok(full)) = (reqwest::Url::parse(base), reqwest::Url::parse(url)) else {
            return refuse("not a URL");
        };
        let same_origin = base.scheme() == full.scheme()
            && base.host_str() == full.host_str()
            && base.port_or_known_default() == full.port_or_known_default();
        if !same_origin || base.query().is_some() || base.fragment().is_some() {
            return refuse("it does not go to the candidate's tag URL");
        }
        if !full.username().is_empty() || full.password().is_some() {
            return refuse("it carries user info");
        }
        match full.scheme() {
            "https" => Ok(full),
            "http" if crate::gcp::is_loopback(&full) => Ok(full),
            _ => refuse("tag URLs are https"),
        }
    }
}

/// Where an event came from, for the records of the decisions it causes: the Pub/Sub message,
/// and for a build its log in the console. Verbs have none.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub message_id: Option<String>,
    pub log_url: Option<String>,
}

impl Origin {
    /// Names this origin in `rec`.
    pub fn stamp(&self, rec: &mut DecisionRecord) {
        rec.message_id.clone_from(&self.message_id);
        rec.log_url.clone_from(&self.log_url);
    }
}

/// What a tick did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TickReport {
    pub services: usize,
    pub active: usize,
    pub decisions: Vec<DecisionRecord>,
    pub failures: Vec<String>,
    /// Whether any failure is worth a redelivery.
    pub transient: bool,
    /// Services skipped because this instance was already evaluating them.
    pub coalesced: usize,
    /// The whole tick was skipped: another tick was running in this instance.
    pub skipped: bool,
    /// Listing calls (pages) the tick made.
    pub list_calls: usize,
    /// Evaluations published on the evaluations topic instead of evaluated here (fan-out).
    pub published: usize,
    /// Running rollouts a fanned-out tick decided itself, because their decision needed
    /// neither evidence nor a write (a step still soaking, a rollout waiting for a person):
    /// no message was published for them. Their records are logged and announced as usual.
    pub settled: usize,
}

/// Observes, decides and applies, for any router and metrics source.
pub struct Reconciler<R, M> {
    pub router: R,
    pub metrics: M,
    pub smoke: SmokeCheck,
    pub policy: Policy,
    pub clock: Clock,
    decisions: broadcast::Sender<DecisionRecord>,
    gates: Arc<Gates>,
    ticks: crate::flight::Once,
    shadow: shadow::ShadowBook,
    fanout: Option<fanout::Fanout>,
}

impl<R: TrafficRouter, M: MetricsSource> Reconciler<R, M> {
    pub fn new(router: R, metrics: M, smoke: SmokeCheck, policy: Policy, clock: Clock) -> Self {
        let (decisions, _) = broadcast::channel(1024);
        Reconciler {
            router,
            metrics,
            smoke,
            policy,
            clock,
            decisions,
            gates: Arc::new(Gates::default()),
            ticks: crate::flight::Once::default(),
            shadow: shadow::ShadowBook::default(),
            fanout: None,
        }
    }

    /// The same reconciler, its ticks fanning out on `fanout` ([`fanout`]).
    pub fn with_fanout(mut self, fanout: Option<fanout::Fanout>) -> Self {
        self.fanout = fanout;
        self
    }

    /// Every decision from now on (lagging receivers lose the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<DecisionRecord> {
        self.decisions.subscribe()
    }

    /// Handles one trigger for one service.
    pub async fn reconcile(
        &self,
        target: &ServiceRef,
        trigger: Trigger,
        deadline: Instant,
    ) -> Result<Vec<DecisionRecord>, ReconcileError> {
        self.reconcile_from(target, trigger, deadline, &Origin::default())
            .await
    }

    /// [`Reconciler::reconcile`] for an event from `origin`, which its records name.
    pub async fn reconcile_from(
        &self,
        target: &ServiceRef,
        trigger: Trigger,
        deadline: Instant,
        origin: &Origin,
    ) -> Result<Vec<DecisionRecord>, ReconcileError> {
        // On the heap: the handling of an event is a deep future.
        Box::pin(self.reconcile_read(target, trigger, None, deadline, origin)).await
    }

    /// [`Reconciler::reconcile_from`], deciding first on `read` when there is one (a fanned-out
    /// evaluation's carried read, `fanout`) instead of observing the service.
    pub(crate) async fn reconcile_read(
        &self,
        target: &ServiceRef,
        trigger: Trigger,
        read: Option<Observation<R::Version>>,
        deadline: Instant,
        origin: &Origin,
    ) -> Result<Vec<DecisionRecord>, ReconcileError> {
        let urgency = match trigger {
            Trigger::Alert { .. } => Urgency::Overtakes,
            Trigger::Build { .. } | Trigger::Operator { .. } => Urgency::Waits,
            Trigger::Tick => Urgency::Routine,
        };
        let alert = urgency == Urgency::Overtakes;
        let work = async {
            let Some(pass) = self.gates.enter(target, urgency).await else {
                return Ok(Vec::new());
            };
            let first = std::sync::Mutex::new(read);
            let once = || async {
                let given = first.lock().unwrap_or_else(|p| p.into_inner()).take();
                let obs = match given {
                    Some(read) => read,
                    None => self.router.observe(target, deadline).await?,
                };
                self.run(self.overlay(obs), trigger.clone(), deadline, origin)
                    .await
            };
            // A routine evaluation of a Cloud Run service that has not asked to write yet leaves
            // the service to an alert that arrives meanwhile: it stops where it is (most often
            // inside its Monitoring query), so its write cannot land between the alert's read
            // and write and send the rollback round again (a conflict: one more read and
            // write). Before its write it has changed nothing and published no decision; the
            // alert's decision covers the service, and the next tick evaluates it again. One
            // that has asked to write runs to its end, so a write that lands is always
            // recorded. (The recorded platforms' writes are several steps: they run to their
            // end too.)
            if urgency == Urgency::Routine && target.platform == Platform::CloudRun {
                let wrote = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let evaluation = crate::gcp::quota::noting_writes(Arc::clone(&wrote), once());
                let mut evaluation = std::pin::pin!(evaluation);
                let arrived = pass.alert_arrives();
                let mut arrived = std::pin::pin!(arrived);
                arrived.as_mut().enable();
                return tokio::select! {
                    done = evaluation.as_mut() => done,
                    () = arrived => {
                        if wrote.load(std::sync::atomic::Ordering::Acquire) {
                            evaluation.await
                        } else {
                            Ok(Vec::new())
                        }
                    }
                };
            }
            match once().await {
                // An alert that found this instance's evaluation inside its write (a recorded
                // platform's intent, which nobody else can settle yet): that write is done in
                // moments, so wait for it and try again rather than answer 503 and wait for
                // Pub/Sub's redelivery (`flight`).
                Err(e)
                    if alert
                        && e.kind() == ErrorKind::Transient
                        && self.gates.evaluating(target) =>
                {
                    self.gates.settled(target).await;
                    once().await
                }
                done => done,
            }
        };
        // An alert's calls take the next free slot of every quota bucket, and the slots kept
        // for alerts (`gcp::quota`).
        if alert {
            crate::gcp::quota::urgent(work).await
        } else {
            work.await
        }
    }

    /// What `trigger` would decide for `target` now, with the evidence it needs, writing
    /// nothing and publishing nothing (`cutover plan`).
    pub async fn plan(
        &self,
        target: &ServiceRef,
        trigger: Trigger,
        deadline: Instant,
    ) -> Result<(Decision, Observed), ReconcileError> {
        let read = self.router.observe(target, deadline).await?;
        let (d, _) = self
            .decide_with_evidence(&read.observed, &trigger, deadline)
            .await;
        Ok((d, read.observed))
    }

    /// Evaluates every service in `project` × `regions` whose rollout is running.
    pub async fn tick(
        self: &Arc<Self>,
        project: &str,
        regions: &[String],
        deadline: Instant,
    ) -> Result<TickReport, ReconcileError> {
        self.tick_from(
            &[project.to_string()],
            regions,
            deadline,
            &Origin::default(),
        )
        .await
    }

    /// [`Reconciler::tick`] over every project of `projects`, for a tick from `origin`, which
    /// its records name. With fan-out ([`Reconciler::with_fanout`]) and more running rollouts
    /// than its threshold, each is published as an evaluation instead of evaluated here.
    pub async fn tick_from(
        self: &Arc<Self>,
        projects: &[String],
        regions: &[String],
        deadline: Instant,
        origin: &Origin,
    ) -> Result<TickReport, ReconcileError> {
        let mut report = TickReport::default();
        // A tick that arrives while another runs would list the same services and find them
        // being evaluated: the running one covers it (a backlog of redelivered ticks costs one).
        let Some(_running) = self.ticks.try_enter() else {
            report.skipped = true;
            return Ok(report);
        };
        let mut active = Vec::new();
        // No read of the listings is older than this (what a fanned-out evaluation checks).
        let listed_at = self.clock.now();
        // Every project × region is listed, a few at once (each one's pages in turn).
        let places: Vec<(String, String)> = projects
            .iter()
            .flat_map(|p| regions.iter().map(move |r| (p.clone(), r.clone())))
            .collect();
        let mut listings =
            futures::stream::iter(places)
                .map(|(project, region)| async move {
                    self.router.list(&project, &region, deadline).await
                })
                .buffer_unordered(LIST_CONCURRENCY);
        while let Some(all) = listings.next().await {
            let all = all?;
            report.services += all.len();
            report.list_calls += all
                .len()
                .div_ceil(crate::gcp::run::LIST_PAGE_SIZE as usize)
                .max(1);
            active.extend(
                all.into_iter()
                    .map(|read| self.overlay(read))
                    .filter(|read| is_active(&read.observed)),
            );
        }
        report.active = active.len();
        if self.fanout.is_some() {
            // A rollout whose decision needs no call is decided here: a message would cost a
            // publish, a push and an instance's time to reach the same `hold`.
            active.retain(|read| match self.decided_without_calls(read, origin) {
                Some(rec) => {
                    self.publish(rec);
                    report.settled += 1;
                    false
                }
                None => true,
            });
        }
        if let Some(fanout) = self.fanout.as_ref().filter(|f| active.len() > f.threshold) {
            let evaluations = self.evaluations(fanout, &active, listed_at);
            let (published, failures) = fanout.publish(&evaluations, deadline).await;
            report.published = published;
            report.transient = !failures.is_empty();
            report.failures = failures;
            return Ok(report);
        }
        let results: Vec<_> = futures::stream::iter(active)
            .map(|read| {
                let name = read.observed.service.to_string();
                async move {
                    // Busy (or an alert waits): the evaluation in flight does this work.
                    let service = &read.observed.service;
                    let Some(_pass) = self.gates.enter(service, Urgency::Routine).await else {
                        return (name, Ok(Vec::new()), true);
                    };
                    let result = self.run(read, Trigger::Tick, deadline, origin).await;
                    (name, result, false)
                }
            })
            .buffer_unordered(TICK_CONCURRENCY)
            .collect()
            .await;
        for (name, result, skipped) in results {
            if skipped {
                report.coalesced += 1;
                continue;
            }
            match result {
                Ok(d) => report.decisions.extend(d),
                Err(e) => {
                    report.transient |= e.kind().worth_retrying();
                    tracing::warn!(service = %name, error = %chain(&e), "tick evaluation failed");
                    report.failures.push(format!("{name}: {}", chain(&e)));
                }
            }
        }
        Ok(report)
    }

    async fn run(
        &self,
        mut read: Observation<R::Version>,
        mut trigger: Trigger,
        deadline: Instant,
        origin: &Origin,
    ) -> Result<Vec<DecisionRecord>, ReconcileError> {
        let mut out = Vec::new();
        let mut conflicts = 0;
        loop {
            let obs = &read.observed;
            let (d, now) = self.decide_with_evidence(obs, &trigger, deadline).await;
            let mut rec = self.record(obs, &trigger, &d, now, origin);
            let Some(write) = d.write() else {
                self.publish(rec.clone());
                out.push(rec);
                return Ok(out);
            };
            if rec.mode == Mode::Shadow {
                rec.write = "shadow: not written".into();
                self.publish(rec.clone());
                out.push(rec);
                let after = self.shadow.remember(obs, write);
                if !write.continues() {
                    return Ok(out);
                }
                read = Observation {
                    observed: after,
                    version: read.version,
                };
                trigger = Trigger::Tick;
                continue;
            }
            let result = self.router.apply(&read, write, deadline).await;
            rec.write = match &result {
                Ok(_) => "applied".into(),
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    "conflict: someone wrote first; deciding again".into()
                }
                Err(e) => format!("failed: {}", chain(e)),
            };
            self.publish(rec.clone());
            out.push(rec);
            match result {
                Ok(after) if write.continues() => {
                    read = after;
                    trigger = Trigger::Tick;
                }
                Ok(_) => return Ok(out),
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    if conflicts == MAX_CONFLICTS {
                        return Err(ReconcileError::Conflicts(e));
                    }
                    conflicts += 1;
                    read = self.overlay(
                        self.router
                            .observe(&read.observed.service, deadline)
                            .await?,
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Decides, gathering the evidence the decision core asks for; returns the decision and the
    /// time it was made at.
    ///
    /// Each call to `decide` reads the clock afresh, so the final decision, the one whose write
    /// is sent next, is made at the time the write goes out, after any evidence gathering. A
    /// step's start (`step-started`, the start of the window it is judged on) is that time:
    /// stamping the event's arrival instead would count a slow Monitoring answer or smoke check
    /// (seconds when Monitoring is retried) as soaking time at a split that was not written
    /// yet, and shorten every step by as much. Re-deciding is safe: a later `now` leaves a due
    /// step due and only adds to how long it has waited, and the judged window comes with the
    /// evidence. What remains between this time and the platform accepting the write is the
    /// write itself (its retries on 429/503 included); the record cannot carry a time later
    /// than the request that carries it, and a step that starts a little early in the record
    /// only lets its window begin with those seconds of the previous split, which dilutes a
    /// difference and never invents one.
    async fn decide_with_evidence(
        &self,
        obs: &Observed,
        trigger: &Trigger,
        deadline: Instant,
    ) -> (Decision, Timestamp) {
        let mut evidence = Evidence::None;
        let policy = self.policy_for(&obs.service);
        // Each kind of evidence is asked for at most once per decision.
        for _ in 0..3 {
            let now = self.clock.now();
            let d = decide(obs, trigger, &evidence, &policy, now);
            evidence = match &d.action {
                Action::Gather(Need::Metrics(w)) if matches!(evidence, Evidence::None) => {
                    Evidence::Metrics(
                        self.metrics
                            .service_stats(&obs.service, *w, deadline)
                            .await
                            .map_err(|e| chain(&e).to_string()),
                    )
                }
                Action::Gather(Need::Smoke(url)) if matches!(evidence, Evidence::None) => {
                    Evidence::Smoke(self.smoke.check(url, deadline).await)
                }
                _ => return (d, now),
            };
        }
        let now = self.clock.now();
        (decide(obs, trigger, &evidence, &policy, now), now)
    }

    /// The record of `read`'s decision on a tick, if it needs neither evidence nor a write
    /// (the decision core stays): the same record an evaluation of that read would make.
    fn decided_without_calls(
        &self,
        read: &Observation<R::Version>,
        origin: &Origin,
    ) -> Option<DecisionRecord> {
        let obs = &read.observed;
        let now = self.clock.now();
        let d = decide(
            obs,
            &Trigger::Tick,
            &Evidence::None,
            &self.policy_for(&obs.service),
            now,
        );
        if !matches!(d.action, Action::Stay(_)) {
            return None;
        }
        Some(self.record(obs, &Trigger::Tick, &d, now, origin))
    }

    /// The record of decision `d` on `obs`: its mode and where the event came from.
    fn record(
        &self,
        obs: &Observed,
        trigger: &Trigger,
        d: &Decision,
        now: Timestamp,
        origin: &Origin,
    ) -> DecisionRecord {
        let mut rec = DecisionRecord::new(&obs.service, trigger, d, now);
        rec.mode = self.policy.mode_for(&obs.annotations);
        origin.stamp(&mut rec);
        rec
    }

    /// The policy for `target`: the configured one, without a smoke path on a platform whose
    /// revisions have no address of their own (their readiness is the platform's health
    /// check; see `Platform::has_revision_urls`).
    fn policy_for(&self, target: &ServiceRef) -> std::borrow::Cow<'_, Policy> {
        if self.policy.smoke_path.is_some() && !target.platform.has_revision_urls() {
            let mut p = self.policy.clone();
            p.smoke_path = None;
            return std::borrow::Cow::Owned(p);
        }
        std::borrow::Cow::Borrowed(&self.policy)
    }

    /// The read as a shadow rollout of its service would have left it; a service in live mode
    /// is read as it is (and any shadow rollout it had is forgotten).
    fn overlay(&self, mut read: Observation<R::Version>) -> Observation<R::Version> {
        if self.policy.mode_for(&read.observed.annotations) == Mode::Shadow {
            read.observed = self.shadow.overlay(read.observed);
        } else {
            self.shadow.forget(&read.observed.service);
        }
        read
    }

    fn publish(&self, rec: DecisionRecord) {
        rec.log();
        self.announce(rec);
    }

    /// Tells every listener of [`Reconciler::subscribe`] about a record decided before the
    /// reconciler was reached (a refused event, which its caller has logged), so listeners see
    /// every decision through one stream. No listener is fine: the log line is the record of truth.
    pub fn announce(&self, rec: DecisionRecord) {
        let _ = self.decisions.send(rec);
    }
}

/// A service a tick must look at: its rollout is running, or its record needs a person.
fn is_active(obs: &Observed) -> bool {
    match Record::from_annotations(&obs.annotations) {
        Ok(Some(r)) => r.phase.is_running(),
        Ok(None) => false,
        Err(_) => true,
    }
}

pub mod fanout;
mod shadow;

#[cfg(test)]
mod overtake;

#[cfg(test)]
mod table;

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::decision::evidence::{ServiceStats, Window};
    use crate::gcp::monitoring::MonitoringClient;
    use crate::gcp::run::RunClient;
    use crate::gcp::{Google, TokenSource};
    use crate::metrics::MetricsError;
    use crate::metrics::cloud_monitoring::CloudMonitoring;
    use crate::router::cloud_run::CloudRunRouter;
    use cutover_fakes::testkit::{PROJECT, REGION, fake_with_candidate};

    /// Cloud Monitoring that answers only after `takes` of (simulated) time, as during an outage
    /// that the client's retries ride out.
    struct SlowMonitoring {
        inner: CloudMonitoring,
        clock: Clock,
        takes: SignedDuration,
    }

    impl MetricsSource for SlowMonitoring {
        async fn service_stats(
            &self,
            target: &ServiceRef,
            window: Window,
            deadline: Instant,
        ) -> Result<ServiceStats, MetricsError> {
            self.clock.advance(self.takes);
            self.inner.service_stats(target, window, deadline).await
        }
    }

    #[tokio::test]
    async fn a_step_starts_when_its_write_is_sent_not_when_the_event_arrived() {
        let (fake, fake_clock) = fake_with_candidate().await;
        let clock = Clock::Manual(fake_clock.shared().expect("a manual clock"));
        let t0 = clock.now();
        let http = reqwest::Client::new();
        let google = Google::new(http.clone(), TokenSource::None);
        let outage = SignedDuration::from_secs(90);
        let reconciler = Reconciler::new(
            CloudRunRouter::new(RunClient::new(google.clone(), &fake.base_url())),
            SlowMonitoring {
                inner: CloudMonitoring::new(MonitoringClient::new(google, &fake.base_url())),
                clock: clock.clone(),
                takes: outage,
            },
            SmokeCheck::new(None).expect("an HTTP client"),
            Policy::default(),
            clock.clone(),
        );
        let target = ServiceRef::checked(PROJECT, REGION, "api").expect("valid ids");
        let deadline = || Instant::now() + Duration::from_secs(10);
        let step_started = || {
            fake.service_json(PROJECT, REGION, "api")["annotations"]["cutover.dev/step-started"]
                .as_str()
                .unwrap()
                .parse::<Timestamp>()
                .unwrap()
        };
        let percent = || {
            fake.service_json(PROJECT, REGION, "api")["annotations"]["cutover.dev/percent"]
                .as_str()
                .unwrap()
                .to_string()
        };

        let build = Trigger::Build {
            build_id: "b-1".into(),
        };
        reconciler
            .reconcile(&target, build, deadline())
            .await
            .unwrap();
        assert_eq!(percent(), "10");

        // The 10% step is due (5-minute soak + 3-minute delay); reading its metrics takes 90 s.
        let due = t0 + SignedDuration::from_mins(8);
        clock.set(due);
        let d = reconciler
            .reconcile(&target, Trigger::Tick, deadline())
            .await
            .unwrap();
        assert_eq!(d.last().unwrap().decision, "advance");
        assert_eq!(percent(), "50");
        let written = fake.history(PROJECT, REGION, "api").last().unwrap().at;
        assert_eq!(written, due + outage, "the write went out after the outage");
        assert_eq!(
            step_started(),
            written,
            "the 50% step starts when its traffic was written, not when the tick arrived"
        );
        assert_eq!(d.last().unwrap().at, written);

        // So the 50% step soaks its full interval: one second short of it, it still holds.
        clock.set(written + SignedDuration::from_mins(8) - SignedDuration::from_secs(1));
        let d = reconciler
            .reconcile(&target, Trigger::Tick, deadline())
            .await
            .unwrap();
        assert_eq!(d.last().unwrap().decision, "hold", "{}", d[0].reason);
        assert_eq!(percent(), "50");
    }
}
