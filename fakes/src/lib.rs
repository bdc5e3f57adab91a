//! cutover-fakes: in-process fakes of the Google APIs cutover talks to, speaking their real wire
//! formats on one axum server bound to `127.0.0.1:0`, and the means to drive cutover as Google
//! would (Pub/Sub push with its OIDC token, the Pub/Sub emulator).
//!
//! cutover's tests, the demo and the bench cannot reach Google, so these fakes *are* Google for
//! them: they are written from a digest of Google's API documentation (`docs/gcp-wire.md`) and the
//! captured payloads in `tests/fixtures/payloads/`, against the JSON on the wire. This crate does
//! not depend on cutover at all, so it cannot borrow cutover's client types; where a fake and the
//! reference disagree the fake is wrong. Everything time-related follows the [`FakeClock`] the
//! fake was started with, so a five-minute soak on a manual clock takes milliseconds.
//!
//! # One world, three platforms
//! Cloud Run services, App Engine services and URL maps of a global external Application Load
//! Balancer are targets of the same world, with the same traffic model: a target receives
//! requests per second, each member (revision / version / backend service) its share of them
//! from the split the platform's fake serves, behaving like its [`RevisionProfile`]; the fake
//! Monitoring answers `cloud_run_revision`, `gae_app` and `https_lb_rule` queries from it, with
//! the same faults (lag, missing points, odd answers).
//!
//! A target is named by a [`TargetKey`]: [`FakeGcp::cloud_run`]`(project, region, service)`,
//! [`FakeGcp::app_engine`]`(project, service)` or [`FakeGcp::url_map`]`(project, map)`. The
//! platform-neutral scenario methods take one: `set_profile_of`, `set_rps_of`,
//! `set_split_by_hand` (a person editing the split, in percents), `touch` (a concurrent writer),
//! `split_of`, `split_history` ([`SplitChange`]s: shares, what was written, by hand or not, guard
//! matched, members routed while not ready), `target_json`, `concurrent_writes_of`. The
//! platform's own set-up: `add_app_engine_service`, `deploy_version`, `set_version_serving`;
//! `add_url_map`, `add_backend`, `set_backend_healthy`, `redeploy_backend`. The Cloud Run methods
//! by `(project, region, service)` are unchanged.
//!
//! # Layout
//! * `fake_run.rs`: Cloud Run Admin v2 — services, revisions, PATCH + operations, tag URLs.
//! * `fake_appengine.rs`: App Engine Admin v1 (`/v1/apps/…`) — services get/list/patch
//!   (`updateMask=split`), versions, operations, version URLs (`/__appengine/…`).
//! * `fake_compute.rs`: Compute v1 (`/compute/v1/projects/…`) — URL maps get/patch/update with the
//!   fingerprint guard, backend services get/getHealth, the groups' managers (instance template),
//!   global operations get/wait.
//! * `split_targets.rs`: the App Engine services, URL maps and backend services of the world.
//! * `fake_monitoring.rs`: Cloud Monitoring v3 `timeSeries.list` for the request metrics of
//!   Cloud Run, App Engine and the load balancer.
//! * `fake_metadata.rs`: the metadata server (token, project, region).
//! * `traffic.rs`: the one traffic model (log-normal latency, Cloud Run's latency buckets,
//!   Poisson counts), shared by the fake Monitoring, the simulator and cutover's decision tests.
//! * `model.rs`: how traffic and revision profiles turn into per-minute metrics.
//! * `world.rs`: the shared state and its scenario-level transitions.
//! * `faults.rs`: injected failures (error bursts, etag races, garbled answers, failing or stuck
//!   operations, odd Monitoring answers, latency, late metrics), scheduled or seeded chaos.
//! * `wire.rs`: googleapis conventions shared by all fakes (error envelope, HTML 404, …).
//! * `clock.rs`: [`FakeClock`], the time shared with cutover's manual clock.
//! * `encode.rs`: Pub/Sub push envelopes and Cloud Build notifications as their producers send them.
//! * `oidc.rs`: the test-only signing key, its JWKS and Google-shaped push tokens.
//! * `pusher.rs`: sends Pub/Sub push requests to a cutover server (tests, demo).
//! * `emulator.rs`: starts the real Pub/Sub emulator on a free port.
//! * `firestore_emulator.rs`: starts the real Firestore emulator on a free port (rollout records).
//! * `flags.rs`: the `cutover serve` flags that point cutover at a fake.
//! * `fixtures.rs`: [`fixture!`](crate::fixture), access to the repository's `tests/fixtures/`.
//!
//! # Use
//! ```no_run
//! # async fn demo() {
//! use cutover_fakes::{FakeClock, FakeGcp, RevisionProfile};
//! let clock = FakeClock::manual("2026-08-20T10:00:00Z".parse().unwrap());
//! let fake = FakeGcp::start(clock.clone()).await;
//! fake.add_service("acme-prod", "us-central1", "api", "api-00001-abc", RevisionProfile::healthy(), 100.0);
//! fake.deploy("acme-prod", "us-central1", "api", "api-00002-def", RevisionProfile::healthy().with_error_ratio(0.2));
//! // point CUTOVER_RUN_ENDPOINT / CUTOVER_MONITORING_ENDPOINT at fake.base_url(),
//! // GCE_METADATA_HOST at fake.metadata_host(), run cutover on `clock.shared()` and advance it.
//! # }
//! ```

pub mod clock;
pub mod emulator;
pub mod encode;
mod fake_appengine;
mod fake_compute;
mod fake_metadata;
mod fake_monitoring;
mod fake_run;
mod faults;
pub mod firestore_emulator;
mod fixtures;
pub mod flags;
mod model;
pub mod oidc;
pub mod pusher;
mod split_targets;
pub mod traffic;
mod wire;
mod world;

use std::net::SocketAddr;

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{Uri, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::Value;

pub use clock::FakeClock;
pub use faults::{Chaos, ConcurrentChange, FaultCounts, FaultHandle, Garble};
pub use model::RevisionProfile;
pub use split_targets::{FakePlatform, SplitChange, TargetKey};
pub use world::{RecordedRequest, TrafficChange};

use fake_metadata::MetadataConfig;
use wire::RpcError;
use world::{ServiceKey, Shared, World, lock};

/// Larger request bodies are refused (a Service is a few KiB).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The fake Google Cloud: Cloud Run Admin v2, App Engine Admin v1, Compute v1 (URL maps, backend
/// services, global operations), Cloud Monitoring v3 and the metadata server on one local port, plus a Rust API to set scenarios up and to inspect what happened. Clones share
/// the same world.
///
/// The scenario methods panic when they name a service or revision that does not exist: that is
/// a broken test, not an input to cope with. Nothing reachable over HTTP panics.
#[derive(Clone)]
pub struct FakeGcp {
    shared: Shared,
    addr: SocketAddr,
}

impl std::fmt::Debug for FakeGcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGcp")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl FakeGcp {
    /// Binds `127.0.0.1:0` and serves in a background tokio task, for as long as the runtime
    /// lives.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start(clock: FakeClock) -> FakeGcp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("FakeGcp: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("FakeGcp: bound socket has no address");
        let world = World::new(clock, format!("http://{addr}"));
        let shared: Shared = std::sync::Arc::new(std::sync::Mutex::new(world));
        let app = app(shared.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "FakeGcp server stopped");
            }
        });
        FakeGcp { shared, addr }
    }

    /// `http://127.0.0.1:PORT`: the Run, App Engine Admin, Compute and Monitoring endpoint
    /// (paths `/v2/projects/…`, `/v1/apps/…`, `/compute/v1/projects/…`, `/v3/projects/…`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`: the value for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        self.addr.to_string()
    }

    /// The clock the fake reads.
    pub fn clock(&self) -> FakeClock {
        lock(&self.shared).clock.clone()
    }

    /// A service serving 100 % on `first_revision` (one REVISION traffic entry), receiving
    /// `requests_per_second`.
    pub fn add_service(
        &self,
        project: &str,
        region: &str,
        service: &str,
        first_revision: &str,
        profile: RevisionProfile,
        requests_per_second: f64,
    ) {
        lock(&self.shared).add_service(
            ServiceKey::new(project, region, service),
            first_revision,
            profile,
            requests_per_second,
        );
    }

    /// Like `gcloud run deploy --no-traffic`: `revision` becomes the latest ready and latest
    /// created revision, `template.revision` and the image tag become `revision`, LATEST traffic
    /// entries are pinned to the revision they were serving; generation and etag change.
    pub fn deploy(
        &self,
        project: &str,
        region: &str,
        service: &str,
        revision: &str,
        profile: RevisionProfile,
    ) {
        lock(&self.shared).deploy(
            &ServiceKey::new(project, region, service),
            revision,
            profile,
        );
    }

    /// A deploy whose revision never becomes Ready (its container does not start): `revision`
    /// becomes the latest *created* revision with a failed `Ready` condition, the latest ready
    /// revision stays as it was, and the template changes as with [`deploy`](Self::deploy).
    pub fn deploy_unready(&self, project: &str, region: &str, service: &str, revision: &str) {
        lock(&self.shared).deploy_unready(&ServiceKey::new(project, region, service), revision);
    }

    /// How many times a concurrent writer (a conflicting PATCH, [`touch_labels`](Self::touch_labels))
    /// changed the service: `(label, annotation)` writes. As long as no later write lost them,
    /// the service's `concurrent-writes` label and `concurrent.example.com/writes` annotation
    /// carry exactly these counts.
    pub fn concurrent_writes(&self, project: &str, region: &str, service: &str) -> (u64, u64) {
        lock(&self.shared)
            .service(&ServiceKey::new(project, region, service))
            .concurrent_writes
    }

    /// From now on, `revision` behaves like `profile` (metrics, smoke status).
    pub fn set_profile(
        &self,
        project: &str,
        region: &str,
        service: &str,
        revision: &str,
        profile: RevisionProfile,
    ) {
        lock(&self.shared).set_profile(
            &ServiceKey::new(project, region, service),
            revision,
            profile,
        );
    }

    /// From now on, the service receives `rps` requests per second.
    pub fn set_rps(&self, project: &str, region: &str, service: &str, rps: f64) {
        lock(&self.shared).set_rps(&ServiceKey::new(project, region, service), rps);
    }

    /// A human editing traffic: the split becomes `alloc` (tags stay on their revisions), with a
    /// new etag and generation, rolled out at once, recorded in the history as `by_hand`.
    pub fn set_traffic_by_hand(
        &self,
        project: &str,
        region: &str,
        service: &str,
        alloc: &[(&str, u8)],
    ) {
        lock(&self.shared).set_traffic_by_hand(&ServiceKey::new(project, region, service), alloc);
    }

    /// A concurrent writer changing an unrelated label (new etag).
    pub fn touch_labels(&self, project: &str, region: &str, service: &str) {
        lock(&self.shared).touch_labels(&ServiceKey::new(project, region, service));
    }

    /// A human setting an annotation (new etag).
    pub fn set_annotation(
        &self,
        project: &str,
        region: &str,
        service: &str,
        key: &str,
        value: &str,
    ) {
        lock(&self.shared).set_annotation(&ServiceKey::new(project, region, service), key, value);
    }

    /// Exactly what `GET …/services/{service}` answers now.
    pub fn service_json(&self, project: &str, region: &str, service: &str) -> Value {
        let mut w = lock(&self.shared);
        fake_run::settle_due(&mut w);
        fake_run::render_service(
            w.service(&ServiceKey::new(project, region, service)),
            &w.base_url,
        )
    }

    /// The desired traffic (`traffic`): `(revision, percent, tag)` per entry, LATEST entries
    /// resolved to the latest ready revision.
    pub fn traffic(
        &self,
        project: &str,
        region: &str,
        service: &str,
    ) -> Vec<(String, u8, Option<String>)> {
        let w = lock(&self.shared);
        let s = w.service(&ServiceKey::new(project, region, service));
        s.traffic
            .iter()
            .map(|t| (s.resolve(t).to_string(), t.percent, t.tag.clone()))
            .collect()
    }

    /// Every accepted write that could change traffic, oldest first.
    pub fn history(&self, project: &str, region: &str, service: &str) -> Vec<TrafficChange> {
        lock(&self.shared)
            .service(&ServiceKey::new(project, region, service))
            .history
            .clone()
    }

    /// Every HTTP request received so far (all APIs), in the order they were answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests.clone()
    }

    /// Failure injection.
    pub fn faults(&self) -> FaultHandle {
        FaultHandle {
            shared: self.shared.clone(),
        }
    }

    /// What the metadata server reports as this instance's project and region.
    pub fn set_metadata(&self, project_id: &str, region: &str) {
        lock(&self.shared).metadata = MetadataConfig::new(project_id, region);
    }

    /// How many access tokens the metadata server has handed out.
    pub fn tokens_issued(&self) -> usize {
        lock(&self.shared).tokens_issued
    }

    // ---- Every platform: a target by key -------------------------------------------------

    /// The key of Cloud Run service `service` (for the platform-neutral methods below).
    pub fn cloud_run(project: &str, region: &str, service: &str) -> TargetKey {
        TargetKey::new(FakePlatform::CloudRun, project, region, service)
    }

    /// The key of App Engine service `service` of app `project`.
    pub fn app_engine(project: &str, service: &str) -> TargetKey {
        fake_appengine::key(project, service)
    }

    /// The key of URL map `map` of `project`.
    pub fn url_map(project: &str, map: &str) -> TargetKey {
        fake_compute::key(project, map)
    }

    /// From now on, `member` (revision, version or backend service) behaves like `profile`
    /// (metrics; for Cloud Run and App Engine also the smoke status of its URL).
    pub fn set_profile_of(&self, target: &TargetKey, member: &str, profile: RevisionProfile) {
        match target.platform {
            FakePlatform::CloudRun => self.set_profile(
                &target.project,
                &target.region,
                &target.name,
                member,
                profile,
            ),
            _ => lock(&self.shared).set_member_profile(target, member, profile),
        }
    }

    /// From now on, the target receives `rps` requests per second (new App Engine services and
    /// URL maps start at 100).
    pub fn set_rps_of(&self, target: &TargetKey, rps: f64) {
        match target.platform {
            FakePlatform::CloudRun => {
                self.set_rps(&target.project, &target.region, &target.name, rps)
            }
            _ => lock(&self.shared).set_target_rps(target, rps),
        }
    }

    /// A person editing the split by hand (percents summing to 100): Cloud Run as
    /// [`set_traffic_by_hand`](Self::set_traffic_by_hand); App Engine allocations become
    /// `percent / 100` (shardBy kept); the URL map's default route becomes these backends at
    /// weight `percent × 10` (other backends of the map stay at weight 0), new fingerprint.
    pub fn set_split_by_hand(&self, target: &TargetKey, split: &[(&str, u8)]) {
        match target.platform {
            FakePlatform::CloudRun => {
                self.set_traffic_by_hand(&target.project, &target.region, &target.name, split)
            }
            _ => lock(&self.shared).set_split_by_hand(target, split),
        }
    }

    /// A concurrent writer changing something unrelated: Cloud Run labels (new etag), App
    /// Engine labels, the URL map's description (new fingerprint).
    pub fn touch(&self, target: &TargetKey) {
        match target.platform {
            FakePlatform::CloudRun => {
                self.touch_labels(&target.project, &target.region, &target.name)
            }
            _ => {
                let mut w = lock(&self.shared);
                let i = w.expect_target(target);
                w.touch_target_at(i);
            }
        }
    }

    /// Each member's share of the target's requests now (`0.0..=1.0`, above 0 only).
    pub fn split_of(&self, target: &TargetKey) -> Vec<(String, f64)> {
        match target.platform {
            FakePlatform::CloudRun => self
                .traffic(&target.project, &target.region, &target.name)
                .into_iter()
                .filter(|(_, p, _)| *p > 0)
                .map(|(r, p, _)| (r, f64::from(p) / 100.0))
                .fold(Vec::new(), |mut out: Vec<(String, f64)>, (r, s)| {
                    match out.iter_mut().find(|(m, _)| *m == r) {
                        Some((_, x)) => *x += s,
                        None => out.push((r, s)),
                    }
                    out
                }),
            _ => {
                let w = lock(&self.shared);
                w.split_now(w.expect_target(target)).0
            }
        }
    }

    /// Every accepted change of the target's split, oldest first (for Cloud Run, converted
    /// from [`history`](Self::history): `guard_matched` is `etag_matched`).
    pub fn split_history(&self, target: &TargetKey) -> Vec<SplitChange> {
        match target.platform {
            FakePlatform::CloudRun => self
                .history(&target.project, &target.region, &target.name)
                .into_iter()
                .map(|c| SplitChange {
                    at: c.at,
                    shares: c
                        .allocation
                        .iter()
                        .map(|(r, p)| (r.clone(), f64::from(*p) / 100.0))
                        .collect(),
                    written: c
                        .allocation
                        .iter()
                        .map(|(r, p)| (r.clone(), f64::from(*p)))
                        .collect(),
                    by_hand: c.by_hand,
                    guard_matched: c.etag_matched,
                    routes_unready: c.routes_unready,
                })
                .collect(),
            _ => {
                let w = lock(&self.shared);
                w.split_targets[w.expect_target(target)]
                    .core
                    .history
                    .clone()
            }
        }
    }

    /// Exactly what a GET of the target answers now (Run service, App Engine service, URL map).
    pub fn target_json(&self, target: &TargetKey) -> Value {
        match target.platform {
            FakePlatform::CloudRun => {
                self.service_json(&target.project, &target.region, &target.name)
            }
            FakePlatform::AppEngine => {
                let mut w = lock(&self.shared);
                w.settle_platform_ops();
                fake_appengine::render_service(&w.split_targets[w.expect_target(target)])
            }
            FakePlatform::LoadBalancer => {
                let mut w = lock(&self.shared);
                w.settle_platform_ops();
                fake_compute::render_url_map(&w.base_url, &w.split_targets[w.expect_target(target)])
            }
        }
    }

    /// How many times a concurrent writer (a conflicting write, [`touch`](Self::touch)) changed
    /// an App Engine service or URL map.
    pub fn concurrent_writes_of(&self, target: &TargetKey) -> u64 {
        match target.platform {
            FakePlatform::CloudRun => {
                let (l, a) = self.concurrent_writes(&target.project, &target.region, &target.name);
                l + a
            }
            _ => {
                let w = lock(&self.shared);
                w.split_targets[w.expect_target(target)]
                    .core
                    .concurrent_writes
            }
        }
    }

    // ---- App Engine ----------------------------------------------------------------------

    /// App Engine service `service` of app `project` serving 100 % on `version` (SERVING,
    /// healthy profile), 100 requests per second, shardBy unspecified.
    pub fn add_app_engine_service(&self, project: &str, service: &str, version: &str) {
        lock(&self.shared).add_app_engine_service(Self::app_engine(project, service), version);
    }

    /// Like `gcloud app deploy --no-promote`: a new SERVING version (healthy profile) without
    /// traffic. Give it another behaviour with [`set_profile_of`](Self::set_profile_of).
    pub fn deploy_version(&self, project: &str, service: &str, version: &str) {
        lock(&self.shared).deploy_version(&Self::app_engine(project, service), version);
    }

    /// Starts (`true`: `SERVING`) or stops (`STOPPED`) a version. The split is not touched: a
    /// stopped version keeps any allocation it has (flagged in the history's `routes_unready`
    /// of later writes), and its URL answers 503.
    pub fn set_version_serving(&self, project: &str, service: &str, version: &str, serving: bool) {
        lock(&self.shared).set_version_serving(
            &Self::app_engine(project, service),
            version,
            serving,
        );
    }

    // ---- Load balancer ---------------------------------------------------------------------

    /// URL map `map` whose default route sends everything to backend service `stable_backend`
    /// (weight 1000; the backend service is created healthy if `project` does not have it), 100
    /// requests per second.
    pub fn add_url_map(&self, project: &str, map: &str, stable_backend: &str) {
        lock(&self.shared).add_url_map(Self::url_map(project, map), stable_backend);
    }

    /// Backend service `backend` (created healthy if missing) joins the default route of `map`
    /// at weight 0 (new fingerprint), like a second MIG behind a new backend service.
    pub fn add_backend(&self, project: &str, map: &str, backend: &str) {
        lock(&self.shared).add_backend(&Self::url_map(project, map), backend);
    }

    /// The MIG behind `backend` rolled to a new instance template (a new deploy of a backend
    /// service that recurs, blue/green): its instances get new names in `getHealth` and the
    /// backend service a new fingerprint; weights, health and profile stay as they were.
    pub fn redeploy_backend(&self, project: &str, backend: &str) {
        lock(&self.shared).redeploy_backend(project, backend, None);
    }

    /// The same, naming the new instance template (`instanceGroupManagers.get` answers it:
    /// `instanceTemplate`, `versions[0].instanceTemplate`), as a pipeline does with
    /// `{map}-{BUILD_ID}`. The first template of a backend service is `{backend}-t1`, a
    /// [`redeploy_backend`](Self::redeploy_backend) makes it `{backend}-t{n}`.
    pub fn redeploy_backend_to(&self, project: &str, backend: &str, template: &str) {
        lock(&self.shared).redeploy_backend(project, backend, Some(template));
    }

    /// Every instance of `backend` healthy, or its first instance `UNHEALTHY` in `getHealth`.
    pub fn set_backend_healthy(&self, project: &str, backend: &str, healthy: bool) {
        lock(&self.shared).set_backend_healthy(project, backend, healthy);
    }
}

fn app(shared: Shared) -> Router {
    let run = Router::new()
        .route(
            "/v2/projects/{project}/locations/{location}/services",
            get(fake_run::list_services),
        )
        .route(
            "/v2/projects/{project}/locations/{location}/services/{service}",
            get(fake_run::get_service).patch(fake_run::patch_service),
        )
        .route(
            "/v2/projects/{project}/locations/{location}/services/{service}/revisions",
            get(fake_run::list_revisions),
        )
        .route(
            "/v2/projects/{project}/locations/{location}/services/{service}/revisions/{revision}",
            get(fake_run::get_revision),
        )
        .route(
            "/v2/projects/{project}/locations/{location}/operations/{operation}",
            get(fake_run::get_operation).post(fake_run::wait_operation),
        )
        .route_layer(middleware::from_fn_with_state(shared.clone(), run_gate));
    let monitoring = Router::new()
        .route(
            "/v3/projects/{project}/timeSeries",
            get(fake_monitoring::list_time_series),
        )
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            monitoring_gate,
        ));
    let appengine = Router::new()
        .route(
            "/v1/apps/{app}/services",
            get(fake_appengine::list_services),
        )
        .route(
            "/v1/apps/{app}/services/{service}",
            get(fake_appengine::get_service).patch(fake_appengine::patch_service),
        )
        .route(
            "/v1/apps/{app}/services/{service}/versions",
            get(fake_appengine::list_versions),
        )
        .route(
            "/v1/apps/{app}/services/{service}/versions/{version}",
            get(fake_appengine::get_version),
        )
        .route(
            "/v1/apps/{app}/operations/{operation}",
            get(fake_appengine::get_operation),
        )
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            appengine_gate,
        ));
    let compute = Router::new()
        .route(
            "/compute/v1/projects/{project}/global/urlMaps/{map}",
            get(fake_compute::get_url_map)
                .patch(fake_compute::patch_url_map)
                .put(fake_compute::update_url_map),
        )
        .route(
            "/compute/v1/projects/{project}/global/backendServices/{backend}",
            get(fake_compute::get_backend_service),
        )
        .route(
            "/compute/v1/projects/{project}/global/backendServices/{backend}/getHealth",
            post(fake_compute::get_health),
        )
        .route(
            "/compute/v1/projects/{project}/zones/{zone}/instanceGroupManagers/{manager}",
            get(fake_compute::get_instance_group_manager),
        )
        .route(
            "/compute/v1/projects/{project}/global/operations/{operation}",
            get(fake_compute::get_operation),
        )
        .route(
            "/compute/v1/projects/{project}/global/operations/{operation}/wait",
            post(fake_compute::wait_operation),
        )
        .route_layer(middleware::from_fn_with_state(shared.clone(), compute_gate));
    Router::new()
        .merge(run)
        .merge(monitoring)
        .merge(appengine)
        .merge(compute)
        .route(
            "/__appengine/{app}/{service}/{version}",
            get(fake_appengine::version_page),
        )
        .route(
            "/__appengine/{app}/{service}/{version}/{*path}",
            get(fake_appengine::version_subpage),
        )
        .merge(fake_metadata::router())
        .route("/__tag/{host}", get(fake_run::tag))
        .route("/__tag/{host}/{*path}", get(fake_run::tag_path))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

async fn not_found(uri: Uri) -> Response {
    wire::html_not_found(uri.path())
}

/// Injected latency and failures in front of every known Run route (see `faults.rs`).
async fn run_gate(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    faults::gate(&shared, faults::Api::Run, request, next).await
}

/// The same in front of every known Monitoring route.
async fn monitoring_gate(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    faults::gate(&shared, faults::Api::Monitoring, request, next).await
}

/// The same in front of every known App Engine Admin route.
async fn appengine_gate(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    faults::gate(&shared, faults::Api::AppEngine, request, next).await
}

/// The same in front of every known Compute route.
async fn compute_gate(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    faults::gate(&shared, faults::Api::Compute, request, next).await
}

/// Records every request with the status it got.
async fn record(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let at = lock(&shared).clock.now();
    let (parts, body) = request.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (response, body) = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => {
            let json = serde_json::from_slice::<Value>(&bytes).ok();
            let request = Request::from_parts(parts, Body::from(bytes));
            (next.run(request).await, json)
        }
        Err(_) => (
            RpcError::invalid_argument("The request body is too large or could not be read.")
                .into_response(),
            None,
        ),
    };
    lock(&shared).requests.push(RecordedRequest {
        method,
        path,
        query,
        authorization,
        body,
        status: response.status().as_u16(),
        at,
    });
    response
}

/// A fake with one service (and a candidate) at a fixed time: the fakes' own tests and cutover's
/// unit tests start from it.
pub mod testkit {
    use super::{FakeClock, FakeGcp, RevisionProfile};

    pub const PROJECT: &str = "acme-prod";
    pub const REGION: &str = "us-central1";
    pub const T0: &str = "2026-08-20T10:00:00Z";

    /// Service `api` serving 100 % on `api-00001-abc` at 100 rps, at `T0` on a manual clock.
    pub async fn fake_with_service() -> (FakeGcp, FakeClock) {
        let clock = FakeClock::manual(T0.parse().unwrap());
        let fake = FakeGcp::start(clock.clone()).await;
        fake.add_service(
            PROJECT,
            REGION,
            "api",
            "api-00001-abc",
            RevisionProfile::healthy(),
            100.0,
        );
        (fake, clock)
    }

    /// The same, with candidate `api-00002-def` deployed without traffic.
    pub async fn fake_with_candidate() -> (FakeGcp, FakeClock) {
        let (fake, clock) = fake_with_service().await;
        fake.deploy(
            PROJECT,
            REGION,
            "api",
            "api-00002-def",
            RevisionProfile::healthy(),
        );
        (fake, clock)
    }

    /// App Engine service `web` of app `acme-prod` on version `v1` (100 rps), with version `v2`
    /// deployed without traffic, at `T0` on a manual clock.
    pub async fn fake_with_app_engine() -> (FakeGcp, FakeClock) {
        let clock = FakeClock::manual(T0.parse().unwrap());
        let fake = FakeGcp::start(clock.clone()).await;
        fake.add_app_engine_service(PROJECT, "web", "v1");
        fake.deploy_version(PROJECT, "web", "v2");
        (fake, clock)
    }

    /// URL map `web` of `acme-prod` on backend service `blue` (100 rps), with backend service
    /// `green` joined at weight 0, at `T0` on a manual clock.
    pub async fn fake_with_url_map() -> (FakeGcp, FakeClock) {
        let clock = FakeClock::manual(T0.parse().unwrap());
        let fake = FakeGcp::start(clock.clone()).await;
        fake.add_url_map(PROJECT, "web", "blue");
        fake.add_backend(PROJECT, "web", "green");
        (fake, clock)
    }

    /// `method path` on the fake with an optional JSON body: (status, JSON answer; `null` when
    /// the answer is not JSON).
    pub async fn call(
        fake: &FakeGcp,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = http().request(method, format!("{}{path}", fake.base_url()));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the fake answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    /// A plain HTTP client for talking to the fake.
    pub fn http() -> reqwest::Client {
        reqwest::Client::new()
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;

    /// Requests are recorded with query, auth header, JSON body and the status they got.
    #[tokio::test]
    async fn requests_are_recorded() {
        let (fake, _clock) = fake_with_service().await;
        let url = format!(
            "{}/v2/projects/acme-prod/locations/us-central1/services/api?updateMask=traffic",
            fake.base_url()
        );
        http()
            .patch(&url)
            .bearer_auth("t")
            .json(&serde_json::json!({"traffic": []}))
            .send()
            .await
            .unwrap();
        let recorded = fake.requests();
        assert_eq!(recorded.len(), 1);
        let r = &recorded[0];
        assert_eq!((r.method.as_str(), r.status), ("PATCH", 200));
        assert_eq!(
            r.path,
            "/v2/projects/acme-prod/locations/us-central1/services/api"
        );
        assert_eq!(r.query_param("updateMask").as_deref(), Some("traffic"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer t"));
        assert_eq!(r.body, Some(serde_json::json!({"traffic": []})));
        assert_eq!(r.at.to_string(), T0);
    }

    /// Methods nobody serves get the googleapis HTML 404, not axum's empty 405.
    #[tokio::test]
    async fn unknown_methods_are_html_404() {
        let (fake, _clock) = fake_with_service().await;
        let response = http()
            .delete(format!(
                "{}/v2/projects/acme-prod/locations/us-central1/services/api",
                fake.base_url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404);
        assert!(response.text().await.unwrap().contains("<!DOCTYPE html>"));
    }
}
