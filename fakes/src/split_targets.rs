//! The targets of the fake world whose traffic is a *split* and which cannot carry cutover's
//! record: App Engine services (the split is `split.allocations` between versions) and URL maps
//! of a global external Application Load Balancer (the split is the `weightedBackendServices`
//! of their routes). They live in the same [`World`](super::world::World) as the Cloud Run
//! services, with the same traffic model: a target receives `rps(t)` requests per second, each
//! member (version / backend service) its share of them, and behaves like its
//! [`RevisionProfile`]; so the fake Monitoring answers `gae_app` and `https_lb_rule` queries from
//! the split each fake serves, with the same faults.
//!
//! State and scenario transitions only: how it looks on the wire is `fake_appengine.rs` and
//! `fake_compute.rs`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::model::{RevisionProfile, Timeline};

/// `(member, value)` in a platform's order: shares, weights or allocations.
pub(crate) type Split = Vec<(String, f64)>;

/// The three kinds of target the fake world holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FakePlatform {
    CloudRun,
    AppEngine,
    LoadBalancer,
}

/// Names one target of the fake world, whatever its platform: built by
/// [`FakeGcp::cloud_run`](crate::FakeGcp::cloud_run), [`FakeGcp::app_engine`](crate::FakeGcp::app_engine)
/// or [`FakeGcp::url_map`](crate::FakeGcp::url_map), and taken by the platform-neutral scenario
/// methods (`set_profile_of`, `set_rps_of`, `split_of`, `split_history`, `set_split_by_hand`, …).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    pub(crate) platform: FakePlatform,
    pub(crate) project: String,
    /// The Cloud Run region; `global` for the two others.
    pub(crate) region: String,
    /// Cloud Run service, App Engine service or URL map.
    pub(crate) name: String,
}

impl TargetKey {
    pub(crate) fn new(platform: FakePlatform, project: &str, region: &str, name: &str) -> Self {
        TargetKey {
            platform,
            project: project.to_string(),
            region: region.to_string(),
            name: name.to_string(),
        }
    }

    pub fn platform(&self) -> FakePlatform {
        self.platform
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for TargetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.platform {
            FakePlatform::CloudRun => write!(
                f,
                "cloud-run:{}/{}/{}",
                self.project, self.region, self.name
            ),
            FakePlatform::AppEngine => write!(f, "app-engine:{}/{}", self.project, self.name),
            FakePlatform::LoadBalancer => write!(f, "load-balancer:{}/{}", self.project, self.name),
        }
    }
}

/// One accepted change of a target's split, oldest first: the creation, every accepted write
/// through the API (App Engine `services.patch`, URL map `patch`/`update`), every scenario edit
/// (a person editing the split, a backend joining a route).
#[derive(Clone, Debug, PartialEq)]
pub struct SplitChange {
    /// When the change was accepted (fake clock).
    pub at: Timestamp,
    /// Each member's share of the target's requests, `0.0..=1.0`, members above 0 only, in the
    /// order the platform lists them. For Cloud Run: percent / 100.
    pub shares: Vec<(String, f64)>,
    /// What was written, in the platform's own unit: App Engine allocations (fractions), URL
    /// map weights (`0..=1000`, every weighted backend of every route, zeros included, summed
    /// per backend), Cloud Run percents.
    pub written: Vec<(String, f64)>,
    /// Written by a person or CI through the scenario API, not by an API client.
    pub by_hand: bool,
    /// The write carried the current guard (URL map fingerprint; Cloud Run etag). App Engine has
    /// no guard: always false for its API writes.
    pub guard_matched: bool,
    /// Members given a share above 0 that were not ready at the time (App Engine: not
    /// `SERVING`; load balancer: backend not healthy; Cloud Run: revision not Ready).
    pub routes_unready: Vec<String>,
}

impl SplitChange {
    /// The sum of the shares (1 when traffic flows anywhere at all).
    pub fn share_sum(&self) -> f64 {
        self.shares.iter().map(|(_, s)| s).sum()
    }

    /// The share of `member` (0 when absent).
    pub fn share_of(&self, member: &str) -> f64 {
        self.shares
            .iter()
            .filter(|(m, _)| m == member)
            .map(|(_, s)| s)
            .sum()
    }
}

/// A version of an App Engine service, or a backend service as one URL map sees it.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) created: Timestamp,
    pub(crate) profile: Timeline<RevisionProfile>,
    /// App Engine: `servingStatus` is `SERVING` (load balancer health is per backend service,
    /// in [`Backend`]).
    pub(crate) serving: bool,
}

/// What every split target has, whatever its platform.
#[derive(Clone, Debug)]
pub(crate) struct SplitCore {
    pub(crate) key: TargetKey,
    pub(crate) id: u64,
    pub(crate) created: Timestamp,
    pub(crate) updated: Timestamp,
    /// In creation order.
    pub(crate) members: Vec<Member>,
    pub(crate) rps: Timeline<f64>,
    /// Starts with the creation; drives the metrics model.
    pub(crate) history: Vec<SplitChange>,
    /// Writes by a concurrent writer (an unrelated field changed: App Engine labels, URL map
    /// description).
    pub(crate) concurrent_writes: u64,
}

impl SplitCore {
    pub(crate) fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    pub(crate) fn member_mut(&mut self, name: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.name == name)
    }

    /// A member's share of the target's requests over time, from the history.
    pub(crate) fn share_timeline(&self, member: &str) -> Timeline<f64> {
        let mut line = Timeline::starting(self.created, 0.0);
        for change in &self.history {
            line.set(change.at, change.share_of(member));
        }
        line
    }
}

/// App Engine's part of a service.
#[derive(Clone, Debug)]
pub(crate) struct AppEngineState {
    /// `split.allocations` in thousandths (the finest precision the API accepts), in the order
    /// written.
    pub(crate) allocations: Vec<(String, u32)>,
    /// `split.shardBy` (`UNSPECIFIED` is omitted on the wire).
    pub(crate) shard_by: String,
    pub(crate) labels: BTreeMap<String, String>,
}

/// The Compute part of a URL map: its configuration as JSON (what clients read and write) and
/// its fingerprint.
#[derive(Clone, Debug)]
pub(crate) struct UrlMapState {
    /// The writable fields (`defaultRouteAction`, `defaultService`, `pathMatchers`, `hostRules`,
    /// `description`, …) as stored; backend references are full URLs.
    pub(crate) config: serde_json::Map<String, Value>,
    pub(crate) fingerprint: String,
}

#[derive(Clone, Debug)]
pub(crate) enum PlatformState {
    AppEngine(AppEngineState),
    UrlMap(UrlMapState),
}

/// An App Engine service or a URL map.
#[derive(Clone, Debug)]
pub(crate) struct SplitTarget {
    pub(crate) core: SplitCore,
    pub(crate) state: PlatformState,
}

/// A backend service of a project: its health is what `getHealth` reports for every instance
/// of its one instance group.
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    pub(crate) project: String,
    pub(crate) name: String,
    pub(crate) id: u64,
    pub(crate) created: Timestamp,
    pub(crate) healthy: bool,
    pub(crate) fingerprint: String,
    /// Bumped by every redeploy (a MIG rolled to a new instance template): its instances get
    /// new names and the backend service a new fingerprint.
    pub(crate) generation: u32,
    /// The instance template the group's manager runs (`{backend}-t1` at first).
    pub(crate) template: String,
}

/// The one zone the fake puts instance groups in.
pub(crate) const BACKEND_ZONE: &str = "us-central1-a";

impl Backend {
    /// The instance group's name (`{backend}-mig`).
    pub(crate) fn group_name(&self) -> String {
        format!("{}-mig", self.name)
    }
}

/// The routes of a URL map configuration, each a list of `(backend service URL, weight)`:
/// `defaultRouteAction.weightedBackendServices`, or `defaultService` as one backend at weight 1;
/// then each path matcher's likewise, and each of its route rules' (`routeAction.…`, `service`).
/// Routes with no backend (a redirect) are left out.
pub(crate) fn url_map_routes(config: &serde_json::Map<String, Value>) -> Vec<Vec<(String, u64)>> {
    fn route(holder: &Value, action: &str, service: &str) -> Option<Vec<(String, u64)>> {
        if let Some(Value::Array(weighted)) =
            holder.pointer(&format!("/{action}/weightedBackendServices"))
            && !weighted.is_empty()
        {
            return Some(
                weighted
                    .iter()
                    .map(|w| {
                        (
                            w.get("backendService")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            w.get("weight").and_then(Value::as_u64).unwrap_or(0),
                        )
                    })
                    .collect(),
            );
        }
        let service = holder.get(service).and_then(Value::as_str)?;
        Some(vec![(service.to_string(), 1)])
    }
    const DEFAULT: (&str, &str) = ("defaultRouteAction", "defaultService");
    let top = Value::Object(config.clone());
    let mut routes: Vec<Vec<(String, u64)>> =
        route(&top, DEFAULT.0, DEFAULT.1).into_iter().collect();
    if let Some(Value::Array(matchers)) = config.get("pathMatchers") {
        for matcher in matchers {
            routes.extend(route(matcher, DEFAULT.0, DEFAULT.1));
            if let Some(Value::Array(rules)) = matcher.get("routeRules") {
                routes.extend(
                    rules
                        .iter()
                        .filter_map(|r| route(r, "routeAction", "service")),
                );
            }
        }
    }
    routes
}

/// The last path segment of a resource URL or partial URL (`…/backendServices/blue` → `blue`).
pub(crate) fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Each backend's share of a URL map's requests: every route gets an equal part of them, split
/// in proportion to its weights (`weight / sum of the route's weights`).
pub(crate) fn url_map_shares(config: &serde_json::Map<String, Value>) -> Vec<(String, f64)> {
    let routes = url_map_routes(config);
    let mut out: Vec<(String, f64)> = Vec::new();
    let n = routes.len() as f64;
    for route in &routes {
        let sum: u64 = route.iter().map(|(_, w)| w).sum();
        if sum == 0 {
            continue;
        }
        for (url, weight) in route {
            let share = *weight as f64 / sum as f64 / n;
            if share <= 0.0 {
                continue;
            }
            let name = last_segment(url).to_string();
            match out.iter_mut().find(|(b, _)| *b == name) {
                Some((_, s)) => *s += share,
                None => out.push((name, share)),
            }
        }
    }
    out
}

/// Every weighted backend of every route with its weight, summed per backend (zeros kept).
pub(crate) fn url_map_weights(config: &serde_json::Map<String, Value>) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (url, weight) in url_map_routes(config).into_iter().flatten() {
        let name = last_segment(&url).to_string();
        match out.iter_mut().find(|(b, _)| *b == name) {
            Some((_, w)) => *w += weight as f64,
            None => out.push((name, weight as f64)),
        }
    }
    out
}

/// An App Engine split as shares (thousandths / 1000), members above 0 only.
pub(crate) fn allocation_shares(allocations: &[(String, u32)]) -> Vec<(String, f64)> {
    allocations
        .iter()
        .filter(|(_, t)| *t > 0)
        .map(|(v, t)| (v.clone(), f64::from(*t) / 1000.0))
        .collect()
}

/// A fresh Compute fingerprint: 8 random bytes, base64 (`"WxAdIhqVHjI="`-like).
pub(crate) fn fingerprint(rng: &mut fastrand::Rng) -> String {
    use base64::{Engine, engine::general_purpose::STANDARD};
    STANDARD.encode(rng.u64(..).to_be_bytes())
}

/// A weighted backend entry as stored (full URL of the backend service).
pub(crate) fn weighted(base_url: &str, project: &str, backend: &str, weight: u64) -> Value {
    json!({"backendService": backend_url(base_url, project, backend), "weight": weight})
}

/// `{base}/compute/v1/projects/{p}/global/backendServices/{b}`: the selfLink the fake hands out.
pub(crate) fn backend_url(base_url: &str, project: &str, backend: &str) -> String {
    format!("{base_url}/compute/v1/projects/{project}/global/backendServices/{backend}")
}

/// An App Engine or Compute long-running operation started by an accepted write.
#[derive(Clone, Debug)]
pub(crate) struct PlatformOp {
    /// App Engine: `apps/{app}/operations/{id}`; Compute: `operation-…` (short name).
    pub(crate) name: String,
    pub(crate) target: TargetKey,
    pub(crate) id: u64,
    pub(crate) created: Timestamp,
    /// Fake-clock instant at which it is done even if nobody polls it.
    pub(crate) settle_at: Option<Timestamp>,
    /// Polls still to answer without being done.
    pub(crate) polls_left: u32,
    pub(crate) done_at: Option<Timestamp>,
    /// Never finishes (an injected fault).
    pub(crate) stuck: bool,
    /// Ends with this `google.rpc` code and message; the write was not applied.
    pub(crate) error: Option<(i32, String)>,
    /// The client that started it (the metadata server's service account).
    pub(crate) user: String,
    /// Compute's `operationType` (`patch`, `update`); unused by App Engine.
    pub(crate) kind: &'static str,
    /// Compute's `requestId` of the write that started it: a retry with the same id gets this
    /// operation back instead of writing again.
    pub(crate) request_id: Option<String>,
}

impl PlatformOp {
    pub(crate) fn done(&self) -> bool {
        self.done_at.is_some()
    }

    /// Done once its time has come (nobody needs to poll).
    pub(crate) fn settle(&mut self, now: Timestamp) {
        if !self.done() && !self.stuck && self.settle_at.is_some_and(|at| at <= now) {
            self.done_at = Some(now);
        }
    }

    /// One poll: done when no poll is left to answer pending, or when its time has come.
    pub(crate) fn poll(&mut self, now: Timestamp) {
        self.settle(now);
        if self.done() || self.stuck {
            return;
        }
        if self.polls_left == 0 {
            self.done_at = Some(now);
        } else {
            self.polls_left -= 1;
        }
    }
}

impl super::world::World {
    /// The index of a split target, if it exists.
    pub(crate) fn find_target(&self, key: &TargetKey) -> Option<usize> {
        self.split_targets.iter().position(|t| &t.core.key == key)
    }

    /// The index of a split target named in the scenario API.
    ///
    /// # Panics
    /// If it does not exist (a broken test).
    pub(crate) fn expect_target(&self, key: &TargetKey) -> usize {
        self.find_target(key)
            .unwrap_or_else(|| panic!("FakeGcp: no target {key}"))
    }

    pub(crate) fn find_backend(&self, project: &str, name: &str) -> Option<usize> {
        self.backends
            .iter()
            .position(|b| b.project == project && b.name == name)
    }

    /// A fresh numeric resource id (Compute ids are uint64, sent as strings).
    pub(crate) fn next_id(&mut self) -> u64 {
        self.rng.u64(1_000_000_000_000_000..9_000_000_000_000_000)
    }

    /// A new operation `name` for a write of `target` that will end as `fate`, polls and
    /// settle time from the fault knobs (not stored yet).
    pub(crate) fn new_platform_op(
        &mut self,
        name: String,
        target: TargetKey,
        fate: super::faults::OpFate,
    ) -> PlatformOp {
        use super::faults::OpFate;
        let now = self.clock.now();
        PlatformOp {
            name,
            target,
            id: self.next_id(),
            created: now,
            settle_at: self
                .faults
                .op_settle_after
                .and_then(|a| now.checked_add(a).ok()),
            polls_left: self.faults.op_polls_before_done,
            done_at: None,
            stuck: fate == OpFate::Stuck,
            error: match fate {
                OpFate::Fails(code, message) => Some((code, message)),
                _ => None,
            },
            user: self.metadata.email.clone(),
            kind: "patch",
            request_id: None,
        }
    }

    /// Completes every platform operation whose time has come.
    pub(crate) fn settle_platform_ops(&mut self) {
        let now = self.clock.now();
        for op in self.platform_ops.values_mut() {
            op.settle(now);
        }
    }

    /// Whether member `name` of target `i` may receive traffic now.
    pub(crate) fn member_ready(&self, i: usize, name: &str) -> bool {
        let t = &self.split_targets[i];
        match &t.state {
            PlatformState::AppEngine(_) => t.core.member(name).is_some_and(|m| m.serving),
            PlatformState::UrlMap(_) => self
                .find_backend(&t.core.key.project, name)
                .is_some_and(|b| self.backends[b].healthy),
        }
    }

    /// The split of target `i` as it is now: (shares, written).
    pub(crate) fn split_now(&self, i: usize) -> (Split, Split) {
        match &self.split_targets[i].state {
            PlatformState::AppEngine(ae) => (
                allocation_shares(&ae.allocations),
                ae.allocations
                    .iter()
                    .map(|(v, t)| (v.clone(), f64::from(*t) / 1000.0))
                    .collect(),
            ),
            PlatformState::UrlMap(m) => (url_map_shares(&m.config), url_map_weights(&m.config)),
        }
    }

    /// Appends the history entry for target `i`'s current split (written by `by_hand` or an API
    /// client whose guard matched or not), and makes the target updated now.
    pub(crate) fn record_split(&mut self, i: usize, by_hand: bool, guard_matched: bool) {
        let now = self.clock.now();
        let (shares, written) = self.split_now(i);
        let routes_unready = shares
            .iter()
            .filter(|(m, _)| !self.member_ready(i, m))
            .map(|(m, _)| m.clone())
            .collect();
        let core = &mut self.split_targets[i].core;
        core.updated = now;
        core.history.push(SplitChange {
            at: now,
            shares,
            written,
            by_hand,
            guard_matched,
            routes_unready,
        });
    }

    /// Adds member `name` to target `i` if it is not there yet (a backend a write names for the
    /// first time behaves like a healthy one).
    pub(crate) fn ensure_member(&mut self, i: usize, name: &str) {
        let now = self.clock.now();
        let core = &mut self.split_targets[i].core;
        if core.member(name).is_none() {
            core.members.push(Member {
                name: name.to_string(),
                created: now,
                profile: Timeline::starting(now, RevisionProfile::healthy()),
                serving: true,
            });
        }
    }

    fn new_core(&mut self, key: TargetKey, first: &str) -> SplitCore {
        let now = self.clock.now();
        SplitCore {
            key,
            id: self.next_id(),
            created: now,
            updated: now,
            members: vec![Member {
                name: first.to_string(),
                created: now,
                profile: Timeline::starting(now, RevisionProfile::healthy()),
                serving: true,
            }],
            rps: Timeline::starting(now, 100.0),
            history: Vec::new(),
            concurrent_writes: 0,
        }
    }

    pub(crate) fn add_app_engine_service(&mut self, key: TargetKey, version: &str) {
        assert!(
            self.find_target(&key).is_none(),
            "FakeGcp: {key} already exists"
        );
        let core = self.new_core(key, version);
        self.split_targets.push(SplitTarget {
            core,
            state: PlatformState::AppEngine(AppEngineState {
                allocations: vec![(version.to_string(), 1000)],
                shard_by: "UNSPECIFIED".to_string(),
                labels: BTreeMap::new(),
            }),
        });
        let i = self.split_targets.len() - 1;
        self.record_split(i, true, false);
    }

    /// `gcloud app deploy --no-promote`: a new SERVING version without traffic.
    pub(crate) fn deploy_version(&mut self, key: &TargetKey, version: &str) {
        let i = self.expect_target(key);
        assert!(
            self.split_targets[i].core.member(version).is_none(),
            "FakeGcp: version {version} already exists in {key}"
        );
        self.ensure_member(i, version);
        self.split_targets[i].core.updated = self.clock.now();
    }

    pub(crate) fn set_version_serving(&mut self, key: &TargetKey, version: &str, serving: bool) {
        let i = self.expect_target(key);
        self.split_targets[i]
            .core
            .member_mut(version)
            .unwrap_or_else(|| panic!("FakeGcp: no version {version} in {key}"))
            .serving = serving;
    }

    /// A backend service of `project` with one healthy instance group, created if missing.
    pub(crate) fn ensure_backend(&mut self, project: &str, name: &str) {
        if self.find_backend(project, name).is_some() {
            return;
        }
        let now = self.clock.now();
        let id = self.next_id();
        let fingerprint = fingerprint(&mut self.rng);
        self.backends.push(Backend {
            project: project.to_string(),
            name: name.to_string(),
            id,
            created: now,
            healthy: true,
            fingerprint,
            generation: 1,
            template: format!("{name}-t1"),
        });
    }

    /// The MIG behind `backend` rolled to a new instance template: new instances (new names in
    /// `getHealth`), a new backend-service fingerprint. Weights and health are unchanged.
    pub(crate) fn redeploy_backend(
        &mut self,
        project: &str,
        backend: &str,
        template: Option<&str>,
    ) {
        let b = self
            .find_backend(project, backend)
            .unwrap_or_else(|| panic!("FakeGcp: no backend service {backend} in {project}"));
        let fresh = fingerprint(&mut self.rng);
        let backend = &mut self.backends[b];
        backend.generation += 1;
        backend.fingerprint = fresh;
        backend.template = match template {
            Some(t) => t.to_string(),
            None => format!("{}-t{}", backend.name, backend.generation),
        };
    }

    pub(crate) fn add_url_map(&mut self, key: TargetKey, stable_backend: &str) {
        assert!(
            self.find_target(&key).is_none(),
            "FakeGcp: {key} already exists"
        );
        self.ensure_backend(&key.project, stable_backend);
        let mut config = serde_json::Map::new();
        config.insert(
            "defaultRouteAction".into(),
            json!({"weightedBackendServices": [weighted(&self.base_url, &key.project, stable_backend, 1000)]}),
        );
        let fingerprint = fingerprint(&mut self.rng);
        let core = self.new_core(key, stable_backend);
        self.split_targets.push(SplitTarget {
            core,
            state: PlatformState::UrlMap(UrlMapState {
                config,
                fingerprint,
            }),
        });
        let i = self.split_targets.len() - 1;
        self.record_split(i, true, false);
    }

    /// `backend` joins the default route of URL map `key` at weight 0 (created healthy if the
    /// project does not have it yet); new fingerprint.
    pub(crate) fn add_backend(&mut self, key: &TargetKey, backend: &str) {
        let i = self.expect_target(key);
        self.ensure_backend(&key.project, backend);
        self.ensure_member(i, backend);
        let entry = weighted(&self.base_url, &key.project, backend, 0);
        let fresh = fingerprint(&mut self.rng);
        let PlatformState::UrlMap(m) = &mut self.split_targets[i].state else {
            panic!("FakeGcp: {key} is not a URL map");
        };
        let already = url_map_weights(&m.config).iter().any(|(b, _)| b == backend);
        if !already {
            match m
                .config
                .get_mut("defaultRouteAction")
                .and_then(|a| a.get_mut("weightedBackendServices"))
            {
                Some(Value::Array(list)) => list.push(entry),
                _ => {
                    m.config.insert(
                        "defaultRouteAction".into(),
                        json!({"weightedBackendServices": [entry]}),
                    );
                }
            }
            m.fingerprint = fresh;
            self.record_split(i, true, false);
        }
    }

    pub(crate) fn detach_backend(&mut self, key: &TargetKey, backend: &str) {
        let i = self.expect_target(key);
        let fresh = fingerprint(&mut self.rng);
        let PlatformState::UrlMap(m) = &mut self.split_targets[i].state else {
            panic!("FakeGcp: {key} is not a URL map");
        };
        let Some(Value::Array(list)) = m
            .config
            .get_mut("defaultRouteAction")
            .and_then(|a| a.get_mut("weightedBackendServices"))
        else {
            panic!("FakeGcp: {key} has no weighted default route");
        };
        let is_it = |e: &Value| {
            e["backendService"]
                .as_str()
                .is_some_and(|u| u.rsplit('/').next() == Some(backend))
        };
        if let Some(e) = list.iter().find(|e| is_it(e))
            && e["weight"].as_u64().unwrap_or(0) > 0
        {
            panic!("FakeGcp: {backend} still has weight in {key}: detach only an idle backend");
        }
        let before = list.len();
        list.retain(|e| !is_it(e));
        if list.len() != before {
            m.fingerprint = fresh;
            self.record_split(i, true, false);
        }
    }

    pub(crate) fn set_backend_healthy(&mut self, project: &str, backend: &str, healthy: bool) {
        let b = self
            .find_backend(project, backend)
            .unwrap_or_else(|| panic!("FakeGcp: no backend service {backend} in {project}"));
        self.backends[b].healthy = healthy;
    }

    pub(crate) fn set_member_profile(
        &mut self,
        key: &TargetKey,
        member: &str,
        profile: RevisionProfile,
    ) {
        let i = self.expect_target(key);
        let now = self.clock.now();
        self.split_targets[i]
            .core
            .member_mut(member)
            .unwrap_or_else(|| panic!("FakeGcp: no member {member} in {key}"))
            .profile
            .set(now, profile);
    }

    pub(crate) fn set_target_rps(&mut self, key: &TargetKey, rps: f64) {
        let i = self.expect_target(key);
        let now = self.clock.now();
        self.split_targets[i].core.rps.set(now, rps);
    }

    /// A person editing the split in the console: App Engine allocations become `percent / 100`
    /// (shardBy kept); the URL map's default route becomes these backends at weight
    /// `percent × 10` (a member not listed keeps its entry at weight 0), with a new fingerprint.
    pub(crate) fn set_split_by_hand(&mut self, key: &TargetKey, split: &[(&str, u8)]) {
        let i = self.expect_target(key);
        let sum: u32 = split.iter().map(|(_, p)| u32::from(*p)).sum();
        assert_eq!(sum, 100, "FakeGcp: a split must sum to 100");
        let base_url = self.base_url.clone();
        let fresh = fingerprint(&mut self.rng);
        let t = &mut self.split_targets[i];
        for (member, _) in split {
            assert!(
                t.core.member(member).is_some(),
                "FakeGcp: no member {member} in {key}"
            );
        }
        match &mut t.state {
            PlatformState::AppEngine(ae) => {
                ae.allocations = split
                    .iter()
                    .filter(|(_, p)| *p > 0)
                    .map(|(v, p)| (v.to_string(), u32::from(*p) * 10))
                    .collect();
            }
            PlatformState::UrlMap(m) => {
                let mut list: Vec<Value> = split
                    .iter()
                    .map(|(b, p)| weighted(&base_url, &key.project, b, u64::from(*p) * 10))
                    .collect();
                for (b, _) in url_map_weights(&m.config) {
                    if !split.iter().any(|(s, _)| *s == b) {
                        list.push(weighted(&base_url, &key.project, &b, 0));
                    }
                }
                m.config.remove("defaultService");
                m.config.insert(
                    "defaultRouteAction".into(),
                    json!({"weightedBackendServices": list}),
                );
                m.fingerprint = fresh;
            }
        }
        self.record_split(i, true, false);
    }

    /// A concurrent writer changing an unrelated field: App Engine labels, the URL map's
    /// description (new fingerprint).
    pub(crate) fn touch_target_at(&mut self, i: usize) {
        let fresh = fingerprint(&mut self.rng);
        let now = self.clock.now();
        let t = &mut self.split_targets[i];
        t.core.concurrent_writes += 1;
        t.core.updated = now;
        let n = t.core.concurrent_writes;
        match &mut t.state {
            PlatformState::AppEngine(ae) => {
                ae.labels
                    .insert(super::world::CONCURRENT_LABEL.into(), n.to_string());
            }
            PlatformState::UrlMap(m) => {
                m.config.insert(
                    "description".into(),
                    json!(format!("edited elsewhere ({n})")),
                );
                m.fingerprint = fresh;
            }
        }
    }
}
