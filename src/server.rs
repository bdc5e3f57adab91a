//! The HTTP edge: Pub/Sub push endpoints and health, and start-up wiring.
//!
//! - `POST /pubsub/builds`: Cloud Build notifications; a `SUCCESS` naming `_SERVICE_NAME` starts a
//!   rollout of that service.
//! - `POST /pubsub/alerts`: Monitoring incidents; an open one for a service under rollout rolls
//!   it back at once. Each push is its own request, so an alert never waits behind tick work for
//!   other services.
//! - `POST /pubsub/ticks`: evaluate every running rollout in `CUTOVER_REGIONS`.
//! - `GET /healthz`: 200.
//!
//! Every push endpoint is behind [`authenticate`], a layer that checks the `Authorization`
//! header against that endpoint's audience before any of the body is read: an unauthenticated
//! request is answered 401 from its headers alone and its connection closed, so it costs no
//! memory however large a body it announces. Handlers take an [`Authenticated`] proof, which
//! only that layer produces. Connections themselves (timeouts, the connection cap) are
//! [`transport`]'s.
//!
//! Handlers translate outcomes into [`Acked`] or [`PushError`]; `crate::error` alone decides
//! which status code each becomes, and what a caller is told.

pub mod transport;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower_http::timeout::TimeoutLayer;

use crate::clock::Clock;
use crate::config::{PushAuthMode, ServeArgs};
use crate::decision::Trigger;
use crate::error::{Acked, PushError};
use crate::events::auth::PushEndpoint;
use crate::events::{
    AuthError, BuildNotification, BuildStatus, EnvelopeError, GoogleVerifier, GoogleVerifierConfig,
    Incident, IncidentState, PushAuth, PushIdentity, PushMessage, Scope,
};
use crate::gcp::monitoring::MonitoringClient;
use crate::gcp::run::RunClient;
use crate::gcp::{Google, TokenSource, metadata};
use crate::metrics::cloud_monitoring::CloudMonitoring;
use crate::reconcile::{DecisionRecord, ReconcileError, Reconciler, SmokeCheck};
use crate::router::cloud_run::CloudRunRouter;

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

/// The reconciler the server runs: Cloud Run traffic, Cloud Monitoring evidence.
pub type LiveReconciler = Reconciler<CloudRunRouter, CloudMonitoring>;

/// Shared server state.
pub struct App {
    pub reconciler: Arc<LiveReconciler>,
    pub auth: PushAuth,
    pub project: String,
    pub default_region: String,
    pub regions: Vec<String>,
    pub event_deadline: Duration,
    pub clock: Clock,
    /// Builds this instance handled recently: their redeliveries cost no API call.
    pub handled_builds: crate::flight::Recent,
    /// Timeouts and the connection cap of the listening socket.
    pub transport: transport::Limits,
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
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| StartError::Setup(format!("HTTP client: {e}")))?;
    let metadata_host = args.metadata_host.trim();
    let project = match args
        .project
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        Some(p) => p.to_string(),
        None => metadata::project_id(&http, metadata_host)
            .await
            .map_err(|e| StartError::Setup(format!("GOOGLE_CLOUD_PROJECT is not set and {e}")))?,
    };
    let default_region = match args
        .region
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        Some(r) => r.to_string(),
        None => metadata::region(&http, metadata_host)
            .await
            .map_err(|e| StartError::Setup(format!("CUTOVER_REGION is not set and {e}")))?,
    };
    let mut regions: Vec<String> = args
        .regions
        .iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    if regions.is_empty() {
        regions.push(default_region.clone());
    }
    check_scope(&project, &default_region, &regions)?;
    let tokens = TokenSource::new(args.auth, metadata_host)
        .map_err(|e| StartError::Setup(format!("CUTOVER_AUTH: {e}")))?;
    let google = Google::new(http.clone(), tokens);
    let router = CloudRunRouter::new(RunClient::new(google.clone(), &args.run_endpoint));
    let metrics = CloudMonitoring::new(MonitoringClient::new(google, &args.monitoring_endpoint));
    // The smoke check and the key fetch have clients of their own that follow no redirect.
    let smoke = SmokeCheck::new(policy.smoke_path.clone()).map_err(StartError::Setup)?;
    let reconciler = Reconciler::new(router, metrics, smoke, policy, clock.clone());
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
        project,
        default_region,
        regions,
        event_deadline: args.event_deadline(),
        clock,
        handled_builds: crate::flight::Recent::new(HANDLED_BUILDS_MEMORY),
        transport: args.transport_limits(),
    }))
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
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            backstop,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .merge(push)
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish,
/// for at most [`SHUTDOWN_GRACE`].
pub async fn run(
    listener: TcpListener,
    state: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };
    let limits = state.transport;
    let server = transport::serve(listener, app(state), limits, signal);
    let grace = async move {
        if stopped.wait_for(|s| *s).await.is_err() {
            // The server ended on its own; nothing to time.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = server => r,
        () = grace => {
            tracing::warn!("in-flight requests still running after the shutdown grace period; exiting");
            Ok(())
        }
    }
}

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

/// Proof that a request passed [`authenticate`]: the endpoint it was checked for and, when push
/// authentication is on, who sent it.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub endpoint: PushEndpoint,
    pub identity: Option<PushIdentity>,
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Response;

    /// Fails closed (401) if the layer did not run, which only a wiring mistake can cause.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Authenticated>()
            .cloned()
            .ok_or_else(|| PushError::Unauthorized(AuthError::MissingToken).into_response())
    }
}

/// Checks a push request's `Authorization` header for its endpoint, from the headers alone: a
/// refused request is answered before its body is read (and its connection is then closed, not
/// drained: see [`PushError`]'s response).
async fn authenticate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let Some(endpoint) = PushEndpoint::from_path(req.uri().path()) else {
        return PushError::Unauthorized(AuthError::Malformed("no push endpoint here".into()))
            .into_response();
    };
    let checked = {
        let authorization = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        app.auth
            .check(authorization, endpoint, app.clock.now())
            .await
    };
    match checked {
        Ok(identity) => {
            req.extensions_mut()
                .insert(Authenticated { endpoint, identity });
            next.run(req).await
        }
        Err(e) if e.is_transient() => PushError::AuthUnavailable(e).into_response(),
        Err(e) => PushError::Unauthorized(e).into_response(),
    }
}

/// Unwraps an (already authenticated) push.
fn receive(body: &[u8]) -> Result<Result<PushMessage, Acked>, PushError> {
    match PushMessage::from_body(body) {
        Ok(m) => Ok(Ok(m)),
        Err(EnvelopeError::NotAnEnvelope(why)) => Err(PushError::NotAnEnvelope(why)),
        Err(EnvelopeError::BadData { message_id, reason }) => Ok(Err(Acked::Ignored {
            message_id,
            reason: format!("message data is not valid base64: {reason}"),
        })),
    }
}

fn deadline(app: &App) -> Instant {
    Instant::now() + app.event_deadline
}

/// Maps a reconcile result for one message.
fn outcome(
    message_id: String,
    result: Result<Vec<DecisionRecord>, ReconcileError>,
) -> Result<Acked, PushError> {
    match result {
        Ok(decisions) => Ok(Acked::Handled {
            message_id,
            body: json!({ "decisions": decisions }),
        }),
        Err(ReconcileError::NotFound(reason)) => Ok(Acked::Ignored { message_id, reason }),
        Err(ReconcileError::Permanent(reason)) => {
            tracing::error!(message_id = %message_id, reason = %reason, "message cannot be handled");
            Ok(Acked::Ignored { message_id, reason })
        }
        Err(ReconcileError::Transient(reason)) => Err(PushError::Transient { message_id, reason }),
    }
}

async fn builds(State(app): State<Arc<App>>, _push: Authenticated, body: Bytes) -> Response {
    respond(handle_build(&app, &body).await)
}

async fn handle_build(app: &App, body: &[u8]) -> Result<Acked, PushError> {
    let msg = match receive(body)? {
        Ok(m) => m,
        Err(acked) => return Ok(acked),
    };
    let id = msg.message_id.to_string();
    let build = match BuildNotification::from_message(&msg) {
        Ok(b) => b,
        Err(e) => {
            return Ok(Acked::Ignored {
                message_id: id,
                reason: format!("not a Cloud Build notification: {e}"),
            });
        }
    };
    if build.status != BuildStatus::Success {
        return Ok(Acked::Ignored {
            message_id: id,
            reason: format!("build {} is {}", build.build_id, build.status.as_str()),
        });
    }
    let Some(named) = build.named() else {
        return Ok(Acked::Ignored {
            message_id: id,
            reason: format!("build {} has no _SERVICE_NAME substitution", build.build_id),
        });
    };
    let trigger = Trigger::Build {
        build_id: build.build_id.to_string(),
    };
    let target = match scope(app).resolve(named) {
        Ok(t) => t,
        Err(refusal) => {
            let event = format!("build {}", build.build_id);
            return Ok(refusal.acked(id, &event, &trigger, app.clock.now()));
        }
    };
    tracing::info!(message_id = %id, build_id = %build.build_id, service = %target, "build finished");
    let key = format!("{target}#{}", build.build_id);
    if app.handled_builds.contains(&key) {
        return Ok(Acked::Ignored {
            message_id: id,
            reason: format!(
                "build {} was handled by this instance already (redelivery)",
                build.build_id
            ),
        });
    }
    let acked = outcome(
        id,
        app.reconciler
            .reconcile(&target, trigger, deadline(app))
            .await,
    )?;
    app.handled_builds.insert(&key);
    Ok(acked)
}

async fn alerts(State(app): State<Arc<App>>, _push: Authenticated, body: Bytes) -> Response {
    respond(handle_alert(&app, &body).await)
}

async fn handle_alert(app: &App, body: &[u8]) -> Result<Acked, PushError> {
    let msg = match receive(body)? {
        Ok(m) => m,
        Err(acked) => return Ok(acked),
    };
    let id = msg.message_id.to_string();
    let incident = match Incident::from_message(&msg) {
        Ok(i) => i,
        Err(e) => {
            return Ok(Acked::Ignored {
                message_id: id,
                reason: format!("not a Monitoring incident: {e}"),
            });
        }
    };
    if incident.is_test {
        return Ok(Acked::Ignored {
            message_id: id,
            reason: "test notification".into(),
        });
    }
    if incident.state != IncidentState::Open {
        return Ok(Acked::Ignored {
            message_id: id,
            reason: format!("incident {} is not open", incident.incident_id),
        });
    }
    let Some(named) = incident.named() else {
        return Ok(Acked::Ignored {
            message_id: id,
            reason: format!(
                "incident {} names no Cloud Run service (no cloud_run_revision service_name, no cutover-service label)",
                incident.incident_id
            ),
        });
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
    let target = match scope(app).resolve(named) {
        Ok(t) => t,
        Err(refusal) => {
            let event = format!("incident {}", incident.incident_id);
            return Ok(refusal.acked(id, &event, &trigger, app.clock.now()));
        }
    };
    tracing::warn!(message_id = %id, incident = %incident.incident_id, service = %target, "alert opened");
    outcome(
        id,
        app.reconciler
            .reconcile(&target, trigger, deadline(app))
            .await,
    )
}

async fn ticks(State(app): State<Arc<App>>, _push: Authenticated, body: Bytes) -> Response {
    respond(handle_tick(&app, &body).await)
}

async fn handle_tick(app: &App, body: &[u8]) -> Result<Acked, PushError> {
    let msg = match receive(body)? {
        Ok(m) => m,
        Err(acked) => return Ok(acked),
    };
    let id = msg.message_id.to_string();
    match app
        .reconciler
        .tick(&app.project, &app.regions, deadline(app))
        .await
    {
        Ok(report) if report.transient => Err(PushError::Transient {
            message_id: id,
            reason: report.failures.join("; "),
        }),
        Ok(report) => Ok(Acked::Handled {
            message_id: id,
            body: serde_json::to_value(&report).unwrap_or_default(),
        }),
        Err(e) => outcome(id, Err(e)),
    }
}

fn respond(r: Result<Acked, PushError>) -> Response {
    match r {
        Ok(a) => a.into_response(),
        Err(e) => e.into_response(),
    }
}

/// What cutover evaluates: the project and regions its ticks list (see `crate::events::resolve`).
fn scope(app: &App) -> Scope<'_> {
    Scope {
        project: &app.project,
        default_region: &app.default_region,
        regions: &app.regions,
    }
}

/// The project and regions cutover evaluates, whether set or read from the metadata server,
/// obey Google's rules: a malformed setting stops start-up here instead of refusing every event.
fn check_scope(project: &str, default_region: &str, regions: &[String]) -> Result<(), StartError> {
    use crate::events::ids::{ProjectId, Region};
    let bad = |var: &str, e: crate::events::ids::IdError| StartError::Setup(format!("{var}: {e}"));
    ProjectId::parse(project).map_err(|e| bad("GOOGLE_CLOUD_PROJECT", e))?;
    Region::parse(default_region).map_err(|e| bad("CUTOVER_REGION", e))?;
    for r in regions {
        Region::parse(r).map_err(|e| bad("CUTOVER_REGIONS", e))?;
    }
    Ok(())
}
