//! The HTTP edge: Pub/Sub push endpoints and health, and start-up wiring.
//!
//! - `POST /pubsub/builds`: Cloud Build notifications; a `SUCCESS` naming `_SERVICE_NAME` starts a
//!   rollout of that service; without it, each `gcloud run deploy NAME … --no-traffic` of its
//!   steps starts one.
//! - `POST /pubsub/alerts`: Monitoring incidents; an open one for a service under rollout rolls
//!   it back at once. Each push is its own request, so an alert never waits behind tick work for
//!   other services, nor for the evaluation in flight of its own (`flight`: it overtakes it), and
//!   it runs on a thread of its own, evaluations below it (`flight::on_alert_thread`).
//! - `POST /pubsub/ticks`: evaluate every running rollout in `CUTOVER_PROJECTS` ×
//!   `CUTOVER_REGIONS`; with `CUTOVER_EVALUATIONS_TOPIC`, decide those that need no call and
//!   publish one evaluation per remaining rollout instead (above `CUTOVER_FANOUT_THRESHOLD`).
//! - `POST /pubsub/evaluations`: one service per message (from a tick's fan-out): evaluate it.
//! - `GET /healthz`: 200.
//! - `GET /status`, `GET /status.json`: every rollout, its traffic, steps, last judgement and a
//!   chart ([`status`]); reads only.
//!
//! Every push handler takes a [`VerifiedPush`], an extractor that checks the `Authorization`
//! header against that endpoint's audience before any of the body is read (an unauthenticated
//! request is answered 401 from its headers alone and its connection closed, so it costs no
//! memory however large a body it announces), then decodes the push envelope. Connections
//! themselves (timeouts, the connection cap) are [`transport`]'s.
//!
//! Handlers return `Result<Acked, PushError>`; `crate::error` alone decides which status code
//! each becomes, what a caller is told and what the log says, and the trace layer of [`app`]
//! writes that log line once the answer is out.

mod push;
pub mod status;
pub mod trace;
pub mod transport;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Response, StatusCode};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{OnResponse, TraceLayer};

pub use push::VerifiedPush;

use crate::clock::Clock;
use crate::config::{PushAuthMode, ServeArgs};
use crate::decision::Trigger;
use crate::error::{Acked, Logged, PushError, answer};
use crate::events::auth::PushEndpoint;
use crate::events::{
    BuildNotification, BuildStatus, GoogleVerifier, GoogleVerifierConfig, Incident, IncidentState,
    Named, PushAuth, Refusal, Scope,
};
use crate::gcp::monitoring::MonitoringClient;
use crate::gcp::{Google, Quota, TokenSource, metadata};
use crate::metrics::cloud_monitoring::CloudMonitoring;
use crate::notify::Notifier;
use crate::notify::events::topic_name;
use crate::operate::wiring::{LiveRouter, listed_regions, live_router};
use crate::reconcile::fanout::seal::SealKeys;
use crate::reconcile::fanout::{self, Fanout};
use crate::reconcile::{DecisionRecord, Origin, Reconciler, SmokeCheck};
use crate::target::ServiceRef;

/// Largest push body accepted (from an authenticated caller; others are refused before their
/// body is read).
///
/// Pub/Sub allows 10 MB messages, but what is published on cutover's topics is far smaller. The
/// largest real messages captured are Cloud Build notifications of 2.3 and 3.1 KB (one step)
/// and Monitoring incidents of 1.6 to 2.6 KB. A build's message grows with its steps: about
/// 0.6 KB per step (name, args, timings, status, step image digest) plus any inline `script`
/// and the step's `$BUILDER_OUTPUT` (empty for the usual builders); an incident is bounded by
/// its policy's documentation text (a few KB). In the push envelope the data is base64, 4/3 of
/// its size, plus about 300 bytes. 512 KiB therefore holds about 380 KiB of JSON: a build of
/// several hundred steps, or a hundred steps each with a few KB of inline script, over 100
/// times the largest message seen, with half the memory per request of the former 1 MiB. A
/// larger message is answered 413, redelivered by Pub/Sub and, after the subscription's
/// delivery attempts, kept in the dead-letter topic: refused loudly, not lost.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// How many handled build ids an instance remembers to short-cut redeliveries.
const HANDLED_BUILDS_MEMORY: usize = 4096;

/// The reconciler the server runs: every enabled platform's traffic (`operate::wiring`),
/// Cloud Monitoring evidence.
pub type LiveReconciler = Reconciler<LiveRouter, CloudMonitoring>;

/// Shared server state.
pub struct App {
    pub reconciler: Arc<LiveReconciler>,
    pub auth: PushAuth,
    /// What cutover evaluates, checked: where events are resolved ([`Scope::resolve`]).
    pub scope: Scope,
    /// The same settings as text, for ticks and logs.
    pub project: String,
    /// `CUTOVER_PROJECTS` (by default `project` alone): what ticks list.
    pub projects: Vec<String>,
    pub default_region: String,
    pub regions: Vec<String>,
    pub event_deadline: Duration,
    pub clock: Clock,
    /// Builds this instance handled recently: their redeliveries cost no API call.
    pub handled_builds: crate::flight::Recent,
    /// Timeouts and the connection cap of the listening socket.
    pub transport: transport::Limits,
    /// Lifecycle events and chat messages, fed from the reconciler's decisions.
    pub notify: Arc<Notifier>,
    /// The status page's charts, a minute per service.
    pub status_charts: status::ChartCache,
    /// `CUTOVER_EVALUATION_KEY` (and the previous one): what a carried read's seal is checked
    /// against; `None`: carried reads are ignored.
    pub seal_keys: Option<Arc<SealKeys>>,
}

/// Why cutover could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Setup(String),
}

/// Builds the server state from settings: clients, credentials, project and region.
pub async fn build(args: &ServeArgs, clock: Clock) -> Result<Arc<App>, StartError> {
    args.validate()?;
    let policy = args.policy()?;
    let client = || {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StartError::Setup(format!("HTTP client: {e}")))
    };
    let http = client()?;
    let metadata_host = args.google.metadata_host.trim();
    let project = set_or_read(
        "GOOGLE_CLOUD_PROJECT",
        args.project.as_deref(),
        metadata::project_id(&http, metadata_host),
    )
    .await?;
    let default_region = set_or_read(
        "CUTOVER_REGION",
        args.region.as_deref(),
        metadata::region(&http, metadata_host),
    )
    .await?;
    let mut regions: Vec<String> = args
        .regions
        .iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    if regions.is_empty() {
        regions.push(default_region.clone());
    }
    // A region named twice would be listed, and its rollouts evaluated, twice per tick.
    let mut seen = std::collections::HashSet::new();
    regions.retain(|r| seen.insert(r.clone()));
    let scope = Scope::new(&project, &default_region, &regions)
        .and_then(|s| s.with_projects(&args.scale.projects))
        .map_err(|(var, e)| StartError::Setup(format!("{var}: {e}")))?
        .with_platforms(&args.platforms.enabled());
    let projects: Vec<String> = scope.projects.iter().map(|p| p.to_string()).collect();
    let tokens = TokenSource::new(args.google.auth, metadata_host)
        .map_err(|e| StartError::Setup(format!("CUTOVER_AUTH: {e}")))?;
    // Google's rate quotas count real minutes, whatever clock rollouts are judged on.
    let quota = Arc::new(Quota::new(args.scale.limits(), Clock::System));
    // Alerts' calls have a connection pool of their own (`flight::on_alert_thread`).
    let google = Google::new(http.clone(), tokens)
        .with_quota(quota)
        .with_urgent_client(client()?);
    let router = live_router(&google, &args.google, &args.platforms, &project, &clock)
        .map_err(|e| StartError::Setup(format!("{e:#}")))?;
    let metrics = CloudMonitoring::new(MonitoringClient::new(
        google,
        &args.google.monitoring_endpoint,
    ));
    // The smoke check and the key fetch have clients of their own that follow no redirect.
    let smoke = SmokeCheck::new(policy.smoke_path.clone()).map_err(StartError::Setup)?;
    let seal_keys = args
        .scale
        .evaluation_keys()?
        .map(|k| Arc::new(SealKeys::new(&k.current, k.previous.as_deref())));
    let fanout = match args.scale.evaluations_topic() {
        Some(topic) => Some(
            Fanout::start(
                &topic_name(topic, &project),
                args.notify.pubsub_emulator_host.as_deref(),
                args.scale.fanout_threshold,
                seal_keys.clone(),
            )
            .await
            .map_err(StartError::Setup)?,
        ),
        None => None,
    };
    let reconciler =
        Reconciler::new(router, metrics, smoke, policy, clock.clone()).with_fanout(fanout);
    let own_service = std::env::var("K_SERVICE").ok();
    let notify_settings = crate::notify::Settings::from_args(
        &args.notify,
        &project,
        &default_region,
        own_service.as_deref(),
    )?;
    let notify = Notifier::start(notify_settings)
        .await
        .map_err(StartError::Setup)?;
    notify.listen(reconciler.subscribe());
    let auth = match args.push_auth {
        PushAuthMode::None => PushAuth::None,
        PushAuthMode::Google => PushAuth::Google(
            GoogleVerifier::new(GoogleVerifierConfig {
                jwks_url: args.jwks_url.trim().to_string(),
                audience: args.push_audience.clone().unwrap_or_default(),
                service_accounts: args
                    .push_service_accounts
                    .iter()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                ..GoogleVerifierConfig::default()
            })
            .map_err(StartError::Setup)?,
        ),
    };
    Ok(Arc::new(App {
        reconciler: Arc::new(reconciler),
        auth,
        scope,
        project,
        projects,
        default_region,
        regions: listed_regions(&regions, &args.platforms),
        event_deadline: args.event_deadline(),
        clock,
        handled_builds: crate::flight::Recent::new(HANDLED_BUILDS_MEMORY),
        transport: transport::Limits::from_args(args),
        notify,
        status_charts: status::ChartCache::default(),
        seal_keys,
    }))
}

/// The setting `var` when it is set (trimmed, non-empty), else what the metadata server says
/// (`read`, awaited only then).
async fn set_or_read(
    var: &str,
    set: Option<&str>,
    read: impl Future<Output = Result<String, String>>,
) -> Result<String, StartError> {
    match set.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Ok(s.to_string()),
        None => read
            .await
            .map_err(|e| StartError::Setup(format!("{var} is not set and {e}"))),
    }
}

/// Time Cloud Run allows between SIGTERM and SIGKILL is 10 s; in-flight work gets this much of it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);

/// The routes, ready to serve.
pub fn app(state: Arc<App>) -> Router {
    // A backstop above the per-event deadline: outbound calls are bounded by it already, this
    // bounds everything else. 408 is a nack, so Pub/Sub redelivers.
    let backstop = state.event_deadline + Duration::from_secs(5);
    let push = Router::new()
        .route(PushEndpoint::Builds.path(), post(builds))
        .route(PushEndpoint::Alerts.path(), post(alerts))
        .route(PushEndpoint::Ticks.path(), post(ticks))
        .route(PushEndpoint::Evaluations.path(), post(evaluations))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            backstop,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(trace::PushSpan {
                    project: state.project.clone(),
                })
                .on_request(())
                .on_response(LogAnswer)
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        );
    Router::new()
        .merge(push)
        .route("/healthz", get(|| async { "ok" }))
        .route("/status", get(status::page))
        .route("/status.json", get(status::json))
        .with_state(state)
}

/// Writes the log lines an answer carries ([`Logged`], attached by `crate::error`), once it is
/// out: the one place push outcomes are logged. Other responses (health, 408, 413) log nothing.
#[derive(Clone, Copy, Debug)]
struct LogAnswer;

impl<B> OnResponse<B> for LogAnswer {
    fn on_response(self, response: &Response<B>, _latency: Duration, _span: &tracing::Span) {
        if let Some(logged) = response.extensions().get::<Logged>() {
            logged.log();
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish,
/// for at most [`SHUTDOWN_GRACE`].
pub async fn run(
    listener: TcpListener,
    state: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    // When the shutdown signal came: the grace period, and the notifications' flush, count
    // from it.
    let signalled = Arc::new(std::sync::OnceLock::new());
    let signal = {
        let signalled = Arc::clone(&signalled);
        async move {
            shutdown.await;
            let _ = signalled.set(Instant::now());
            let _ = stopping.send(true);
        }
    };
    let limits = state.transport;
    let notify = Arc::clone(&state.notify);
    let server = transport::serve(listener, app(state), limits, signal);
    let grace = async move {
        if stopped.wait_for(|s| *s).await.is_err() {
            // The server ended on its own; nothing to time.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let served = tokio::select! {
        r = server => r,
        () = grace => {
            tracing::warn!("in-flight requests still running after the shutdown grace period; exiting");
            Ok(())
        }
    };
    // Notifications still queued get what is left of the grace period, at least a moment.
    let by = signalled
        .get()
        .map_or_else(Instant::now, |at| *at + SHUTDOWN_GRACE)
        .max(Instant::now() + NOTIFY_FLUSH_MIN);
    notify.shutdown(by).await;
    served
}

/// The least time queued notifications get at shutdown, even after a full grace period.
const NOTIFY_FLUSH_MIN: Duration = Duration::from_millis(300);

/// Resolves on SIGTERM (what Cloud Run sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn deadline(app: &App) -> Instant {
    Instant::now() + app.event_deadline
}

/// Hands one service's event to the reconciler and answers for the outcome: an alert on the
/// alerts' own thread, an evaluation on the evaluations' runtime, below the threads that answer
/// pushes (`flight`): a rollback never waits for the CPU behind the evaluations in flight.
async fn reconcile(
    app: &Arc<App>,
    message_id: String,
    target: &ServiceRef,
    trigger: Trigger,
) -> Result<Acked, PushError> {
    let origin = Origin {
        message_id: Some(message_id.clone()),
        log_url: None,
    };
    let alert = matches!(trigger, Trigger::Alert { .. });
    let (app, target, until) = (Arc::clone(app), target.clone(), deadline(app));
    let work = async move {
        app.reconciler
            .reconcile_from(&target, trigger, until, &origin)
            .await
    };
    let outcome = if alert {
        crate::flight::on_alert_thread(work).await
    } else {
        crate::flight::on_routine_runtime(work).await
    };
    answer(message_id, outcome)
}

/// The service an event names, inside what cutover evaluates; or the acknowledgement that
/// refuses the event (`event` says which, e.g. `build 0d97c63e-…`), logged and recorded as an
/// error-level decision.
fn target(
    app: &App,
    message_id: &str,
    named: Named<'_>,
    trigger: &Trigger,
    event: &str,
) -> Result<ServiceRef, Acked> {
    let origin = Origin {
        message_id: Some(message_id.to_owned()),
        log_url: None,
    };
    resolve(app, named, trigger, event, &origin).map_err(|record| Acked::Handled {
        message_id: message_id.to_owned(),
        body: json!({ "decisions": [record] }),
    })
}

/// The service an event names, inside what cutover evaluates; or its refusal as a decision
/// record, logged.
fn resolve(
    app: &App,
    named: Named<'_>,
    trigger: &Trigger,
    event: &str,
    origin: &Origin,
) -> Result<ServiceRef, Box<DecisionRecord>> {
    app.scope.resolve(named).map_err(|refusal| {
        let mut rec = refused(&refusal, event, trigger, app.clock.now());
        origin.stamp(&mut rec);
        rec.log_refusal(refusal.setting);
        app.reconciler.announce(rec.clone());
        Box::new(rec)
    })
}

/// A refusal as a decision record (decision `refused`, nothing written); the caller logs it
/// at error level ([`DecisionRecord::log_refusal`]): an operator must change a setting, or a
/// build or alert policy, for it to stop.
fn refused(refusal: &Refusal, event: &str, trigger: &Trigger, at: Timestamp) -> DecisionRecord {
    DecisionRecord::refused(
        &refusal.service,
        trigger,
        format!("{event} refused: {}", refusal.why),
        at,
    )
}

/// `POST /pubsub/builds`: a `SUCCESS` build starts a rollout of each service it names
/// ([`BuildNotification::targets`]: `_SERVICE_NAME`, else its `--no-traffic` deploy steps).
///
/// Each target is resolved and refused on its own ([`Scope::resolve`]), and the services in
/// scope are reconciled together, within one event deadline. The answer is an ack when every
/// target was handled (started, refused, or failed for good), and a nack (503) when any failed
/// transiently. Pub/Sub then redelivers the whole message, targets already handled included:
/// this instance remembers those (`handled_builds`) and skips them; another instance reconciles
/// them again, which finds each rollout already started for that candidate and writes nothing.
/// So a partial success never starts a rollout twice, and the failed target is retried until it
/// is handled or the message is dead-lettered.
async fn builds(State(app): State<Arc<App>>, push: VerifiedPush) -> Result<Acked, PushError> {
    let id = push.message_id();
    let build = match push.decode("Cloud Build notification", BuildNotification::from_message) {
        Ok(b) => b,
        Err(ignored) => return Ok(ignored),
    };
    if build.status != BuildStatus::Success {
        let reason = format!("build {} is {}", build.build_id, build.status.as_str());
        return Ok(Acked::ignored(id, reason));
    }
    let named = build.targets();
    if named.is_empty() {
        return Ok(Acked::ignored(id, build.why_no_target()));
    }
    let trigger = Trigger::Build {
        build_id: build.build_id.to_string(),
    };
    let event = format!("build {}", build.build_id);
    let origin = Origin {
        message_id: Some(id.clone()),
        log_url: build.log_url.clone(),
    };
    let mut refusals = Vec::new();
    let mut targets: Vec<ServiceRef> = Vec::new();
    for named in named {
        match resolve(&app, named, &trigger, &event, &origin) {
            Ok(t) if !targets.contains(&t) => targets.push(t),
            Ok(_) => {}
            Err(refusal) => refusals.push(*refusal),
        }
    }
    let skipped = build.skipped();
    let mut redelivered = Vec::new();
    targets.retain(|target| {
        let seen = app.handled_builds.contains(&handled_key(target, &build));
        if seen {
            redelivered.push(format!(
                "build {} was handled by this instance already for {target} (redelivery)",
                build.build_id
            ));
        }
        !seen
    });
    if targets.is_empty() && refusals.is_empty() {
        return Ok(Acked::ignored(id, redelivered.join("; ")));
    }
    for target in &targets {
        tracing::info!(message_id = %id, build_id = %build.build_id, service = %target, "build finished");
    }
    let until = deadline(&app);
    let mut outcomes = futures::future::join_all(targets.iter().map(|target| {
        app.reconciler
            .reconcile_from(target, trigger.clone(), until, &origin)
    }))
    .await;
    for (target, outcome) in targets.iter().zip(&outcomes) {
        let transient = matches!(outcome, Err(e) if e.kind().worth_retrying());
        if !transient {
            app.handled_builds.insert(&handled_key(target, &build));
        }
    }
    // One target and nothing else to say: the answer of that one reconciliation, as for alerts.
    if targets.len() == 1
        && refusals.is_empty()
        && skipped.is_empty()
        && redelivered.is_empty()
        && let Some(outcome) = outcomes.pop()
    {
        return answer(id, outcome);
    }
    several_answered(id, &targets, outcomes, refusals, skipped, redelivered)
}

/// The one answer to a build with several targets (or with refusals, skipped steps or
/// redeliveries beside its one): a nack if any reconciliation failed transiently, else an ack
/// listing every decision, every target that failed for good and every step that started none.
fn several_answered(
    id: String,
    targets: &[ServiceRef],
    outcomes: Vec<Result<Vec<DecisionRecord>, crate::reconcile::ReconcileError>>,
    mut decisions: Vec<DecisionRecord>,
    skipped: Vec<String>,
    redelivered: Vec<String>,
) -> Result<Acked, PushError> {
    let mut transient = Vec::new();
    let mut failed = Vec::new();
    for (target, outcome) in targets.iter().zip(outcomes) {
        match outcome {
            Ok(records) => decisions.extend(records),
            Err(e) if e.kind().worth_retrying() => {
                transient.push(format!("{target}: {}", crate::failure::chain(&e)));
            }
            Err(e) => {
                let reason = format!("{target}: {}", crate::failure::chain(&e));
                tracing::error!(message_id = %id, reason = %reason, "build target cannot be handled");
                failed.push(reason);
            }
        }
    }
    if !transient.is_empty() {
        return Err(PushError::Transient {
            message_id: id,
            source: transient.join("; ").into(),
        });
    }
    Ok(Acked::Handled {
        message_id: id,
        body: json!({
            "decisions": decisions,
            "failed": failed,
            "skipped": skipped,
            "redelivered": redelivered,
        }),
    })
}

/// What `handled_builds` remembers of a build handled for `target`.
fn handled_key(target: &ServiceRef, build: &BuildNotification) -> String {
    format!("{target}#{}", build.build_id)
}

async fn alerts(State(app): State<Arc<App>>, push: VerifiedPush) -> Result<Acked, PushError> {
    let id = push.message_id();
    let incident = match push.decode("Monitoring incident", Incident::from_message) {
        Ok(i) => i,
        Err(ignored) => return Ok(ignored),
    };
    if incident.is_test {
        return Ok(Acked::ignored(id, "test notification"));
    }
    if incident.state != IncidentState::Open {
        let reason = format!("incident {} is not open", incident.incident_id);
        return Ok(Acked::ignored(id, reason));
    }
    let Some(named) = incident.named() else {
        let reason = format!(
            "incident {} names no target (no cloud_run_revision service_name, gae_app module_id or https_lb_rule url_map_name, no cutover-service label)",
            incident.incident_id
        );
        return Ok(Acked::ignored(id, reason));
    };
    let trigger = Trigger::Alert {
        incident_id: incident.incident_id.to_string(),
        summary: incident.summary.clone(),
    };
    // An alert outside the evaluated scope is refused like a build there, and that is right
    // only because no rollout of cutover's can be running there: every build outside the scope
    // is refused before it moves traffic, so an alert there has nothing to roll back. (A rollout
    // left behind by narrowing CUTOVER_REGIONS or changing GOOGLE_CLOUD_PROJECT is stalled
    // already, ticks no longer look at it; this error record is then what tells the operator.)
    // Refusing also spares a read of a project cutover may hold no permission in, and names an
    // alert policy that is routed to the wrong cutover.
    let event = format!("incident {}", incident.incident_id);
    let target = match target(&app, &id, named, &trigger, &event) {
        Ok(t) => t,
        Err(refusal) => return Ok(refusal),
    };
    tracing::warn!(message_id = %id, incident = %incident.incident_id, service = %target, "alert opened");
    reconcile(&app, id, &target, trigger).await
}

async fn ticks(State(app): State<Arc<App>>, push: VerifiedPush) -> Result<Acked, PushError> {
    let id = push.message_id();
    let origin = Origin {
        message_id: Some(id.clone()),
        log_url: None,
    };
    let tick = app
        .reconciler
        .tick_from(&app.projects, &app.regions, deadline(&app), &origin)
        .await;
    match tick {
        Ok(report) if report.transient => Err(PushError::Transient {
            message_id: id,
            source: report.failures.join("; ").into(),
        }),
        Ok(report) => Ok(Acked::Handled {
            message_id: id,
            body: serde_json::to_value(&report).unwrap_or_default(),
        }),
        Err(e) => answer(id, Err(e)),
    }
}

/// `POST /pubsub/evaluations`: one service a tick fanned out ([`fanout`]), evaluated as a tick
/// would, on the tick's read of it when the message carries a usable one sealed with the
/// evaluation key (else on a fresh read). The service is resolved like any event (a project or region no longer evaluated is
/// refused); the answer follows the same rules: a transient failure is a 503 and Pub/Sub
/// redelivers, so an evaluation that could not run (no quota left before the deadline, say)
/// is never lost. If this instance is already evaluating the service, that evaluation covers
/// the message.
async fn evaluations(State(app): State<Arc<App>>, push: VerifiedPush) -> Result<Acked, PushError> {
    let id = push.message_id();
    let evaluation = match push.decode("fanned-out evaluation", |m| {
        fanout::decode(&m.data, app.seal_keys.as_deref()).map_err(crate::events::DecodeError::new)
    }) {
        Ok(e) => e,
        Err(ignored) => return Ok(ignored),
    };
    let service = &evaluation.service;
    let named = Named {
        platform: service.platform,
        project: Some(&service.project),
        region: Some(&service.region),
        service: &service.name,
    };
    let event = format!("evaluation of {service}");
    let target = match target(&app, &id, named, &Trigger::Tick, &event) {
        Ok(t) => t,
        Err(refusal) => return Ok(refusal),
    };
    let origin = Origin {
        message_id: Some(id.clone()),
        log_url: None,
    };
    // On the evaluations' runtime, below alerts, like every routine event (`reconcile`).
    let (until, carried) = (deadline(&app), evaluation.carried);
    let work = async move {
        app.reconciler
            .evaluate(&target, carried, until, &origin)
            .await
    };
    answer(id, crate::flight::on_routine_runtime(work).await)
}

#[cfg(test)]
mod tests;
