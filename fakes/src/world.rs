//! The fake Google Cloud's state, shared by every fake behind one lock: services with their
//! revisions, traffic, labels, annotations and etags; pending operations; the traffic history
//! that drives the metrics model; the recorded requests; the fault knobs; the metadata settings.
//!
//! This file holds state and the state transitions the scenario API needs (add a service, deploy,
//! a human editing traffic, a concurrent writer). How that state looks on the wire is the business
//! of `fake_run.rs`, `fake_monitoring.rs` and `fake_metadata.rs`. Every timestamp comes from the
//! [`FakeClock`] the fake was started with.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::fake_metadata::MetadataConfig;
use super::fake_run::Operation;
use super::faults::Faults;
use super::model::{RevisionProfile, Timeline};
use super::split_targets::{Backend, PlatformOp, SplitTarget};
use super::wire::uuid4;
use crate::clock::FakeClock;

/// The world behind one lock. A std mutex is enough: nothing holds it across an `.await`.
pub(crate) type Shared = Arc<Mutex<World>>;

/// Locks the world. A panic while holding the lock cannot leave it half-updated in a way later
/// requests could not cope with, so a poisoned lock is simply taken over.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, World> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Annotations under this prefix are cutover's own; everything else belongs to someone else.
pub(crate) const CUTOVER_ANNOTATION_PREFIX: &str = "cutover.dev/";

/// The label a concurrent writer bumps (see [`World::touch_labels_at`]).
pub(crate) const CONCURRENT_LABEL: &str = "concurrent-writes";

/// The annotation a concurrent writer bumps (see [`World::touch_annotation_at`]).
pub(crate) const CONCURRENT_ANNOTATION: &str = "concurrent.example.com/writes";

/// One accepted write that could change a service's traffic, in the order they happened: the
/// service's creation (its initial allocation), every accepted PATCH (even one that leaves the
/// traffic alone), every [`set_traffic_by_hand`](super::FakeGcp::set_traffic_by_hand), and a
/// [`deploy`](super::FakeGcp::deploy) that pinned a LATEST target.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficChange {
    /// When the write was accepted (fake clock).
    pub at: Timestamp,
    /// Revisions with a share above 0 %, in the order of the traffic list (LATEST resolved to
    /// the latest ready revision, duplicates summed).
    pub allocation: Vec<(String, u8)>,
    /// `(tag, revision)` for every tagged target.
    pub tags: Vec<(String, String)>,
    /// Written by someone other than an API client (a human or CI through the scenario API:
    /// creation, deploy, by-hand traffic edits).
    pub by_hand: bool,
    /// The write carried the etag current at the time (always false for `by_hand`).
    pub etag_matched: bool,
    /// A PATCH changed `template` (a real Cloud Run would have created a revision; always false
    /// for `by_hand` entries).
    pub template_changed: bool,
    /// Labels after the write equal labels before.
    pub labels_preserved: bool,
    /// Annotations not starting with `cutover.dev/` are unchanged.
    pub foreign_annotations_preserved: bool,
    /// The traffic list itself changed (false for e.g. an annotations-only PATCH).
    pub traffic_changed: bool,
    /// Revisions given a share above 0 % that were not Ready at the time (empty when every
    /// routed revision was Ready).
    pub routes_unready: Vec<String>,
}

/// One HTTP request the fake received, as the fake saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// The path, still percent-encoded.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body, if it was JSON.
    pub body: Option<Value>,
    /// The status the fake answered.
    pub status: u16,
    /// When it arrived (fake clock).
    pub at: Timestamp,
}

impl RecordedRequest {
    /// The decoded query parameters, repeated keys kept.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let uri = format!("/?{}", self.query.as_deref().unwrap_or(""));
        uri.parse()
            .ok()
            .and_then(|uri| super::wire::query_pairs(&uri).ok())
            .unwrap_or_default()
    }

    /// The last value of query parameter `key`, decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// Which service: `{project}` exactly as given in URLs and in the scenario API.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ServiceKey {
    pub(crate) project: String,
    pub(crate) region: String,
    pub(crate) service: String,
}

impl ServiceKey {
    pub(crate) fn new(project: &str, region: &str, service: &str) -> Self {
        ServiceKey {
            project: project.to_string(),
            region: region.to_string(),
            service: service.to_string(),
        }
    }

    /// `projects/{p}/locations/{l}/services/{s}`.
    pub(crate) fn full_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/services/{}",
            self.project, self.region, self.service
        )
    }

    /// The full resource name of one of the service's revisions.
    pub(crate) fn revision_name(&self, revision: &str) -> String {
        format!("{}/revisions/{revision}", self.full_name())
    }
}

/// One traffic target: `revision: None` is a LATEST target.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Target {
    pub(crate) revision: Option<String>,
    pub(crate) percent: u8,
    pub(crate) tag: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Revision {
    /// Short id, e.g. `api-00002-kip`.
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) created: Timestamp,
    /// The service template this revision was created from.
    pub(crate) template: Value,
    pub(crate) profile: Timeline<RevisionProfile>,
    /// Whether the revision became Ready (a revision whose container never started is not).
    pub(crate) ready: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Service {
    pub(crate) key: ServiceKey,
    pub(crate) uid: String,
    pub(crate) created: Timestamp,
    pub(crate) updated: Timestamp,
    pub(crate) generation: u64,
    pub(crate) observed_generation: u64,
    /// A write was accepted and its operation has not completed yet.
    pub(crate) reconciling: bool,
    /// When the service last finished converging (condition transition time).
    pub(crate) settled_at: Timestamp,
    pub(crate) creator: String,
    pub(crate) last_modifier: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) template: Value,
    /// Other writable fields (ingress, launchStage, description, …), echoed back as stored.
    pub(crate) extra: Map<String, Value>,
    /// Desired traffic (`traffic`).
    pub(crate) traffic: Vec<Target>,
    /// Observed traffic (`trafficStatuses`): catches up with `traffic` when a rollout completes.
    pub(crate) traffic_statuses: Vec<Target>,
    /// In creation order.
    pub(crate) revisions: Vec<Revision>,
    /// Short id of the latest ready revision.
    pub(crate) latest_ready: String,
    /// Short id of the latest created revision (differs from `latest_ready` after a deploy
    /// whose revision never became Ready).
    pub(crate) latest_created: String,
    /// Why the last rollout of the service failed, until a later one succeeds (an operation
    /// that ended with an error).
    pub(crate) failure: Option<String>,
    /// How many times a concurrent writer changed the `concurrent-writes` label, and the
    /// `concurrent.example.com/writes` annotation, of this service.
    pub(crate) concurrent_writes: (u64, u64),
    pub(crate) etag: String,
    pub(crate) rps: Timeline<f64>,
    /// Starts with the creation; drives the metrics model.
    pub(crate) history: Vec<TrafficChange>,
}

impl Service {
    pub(crate) fn revision(&self, name: &str) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.name == name)
    }

    fn revision_mut(&mut self, name: &str) -> Option<&mut Revision> {
        self.revisions.iter_mut().find(|r| r.name == name)
    }

    /// The revision a target routes to (LATEST: the latest ready revision).
    pub(crate) fn resolve<'a>(&'a self, target: &'a Target) -> &'a str {
        target.revision.as_deref().unwrap_or(&self.latest_ready)
    }

    /// Revisions with a share above 0 % in `traffic`, in list order, duplicates summed.
    pub(crate) fn allocation(&self, traffic: &[Target]) -> Vec<(String, u8)> {
        let mut out: Vec<(String, u8)> = Vec::new();
        for target in traffic.iter().filter(|t| t.percent > 0) {
            let revision = self.resolve(target);
            match out.iter_mut().find(|(r, _)| r == revision) {
                Some((_, percent)) => *percent = percent.saturating_add(target.percent),
                None => out.push((revision.to_string(), target.percent)),
            }
        }
        out
    }

    /// `(tag, revision)` of every tagged target in `traffic`.
    pub(crate) fn tags(&self, traffic: &[Target]) -> Vec<(String, String)> {
        traffic
            .iter()
            .filter_map(|t| Some((t.tag.clone()?, self.resolve(t).to_string())))
            .collect()
    }

    /// A revision's share of the traffic over time, from the history (which starts with the
    /// creation, so there is no traffic before it).
    pub(crate) fn share_timeline(&self, revision: &str) -> Timeline<f64> {
        let share = |allocation: &[(String, u8)]| {
            allocation
                .iter()
                .filter(|(r, _)| r == revision)
                .map(|(_, p)| f64::from(*p) / 100.0)
                .sum::<f64>()
        };
        let mut line = Timeline::starting(self.created, 0.0);
        for change in &self.history {
            line.set(change.at, share(&change.allocation));
        }
        line
    }

    /// The rollout finished: observed state catches up with desired state.
    pub(crate) fn settle(&mut self, now: Timestamp) {
        self.observed_generation = self.generation;
        self.traffic_statuses = self.traffic.clone();
        self.reconciling = false;
        self.failure = None;
        self.settled_at = now;
    }

    /// The rollout failed: the spec stays as written, routes stay as they were, and the `Ready`
    /// condition says why.
    pub(crate) fn fail(&mut self, now: Timestamp, why: &str) {
        self.observed_generation = self.generation;
        self.reconciling = false;
        self.failure = Some(why.to_string());
        self.settled_at = now;
    }

    /// The history entry for a write that turned `before` into the service's current state.
    pub(crate) fn change_since(
        &self,
        at: Timestamp,
        before: &Before,
        writer: Writer,
    ) -> TrafficChange {
        let foreign = |a: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            a.iter()
                .filter(|(k, _)| !k.starts_with(CUTOVER_ANNOTATION_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let (by_hand, etag_matched, template_changed) = match writer {
            Writer::Outside => (true, false, false),
            Writer::Api {
                etag_matched,
                template_changed,
            } => (false, etag_matched, template_changed),
        };
        let allocation = self.allocation(&self.traffic);
        let routes_unready = allocation
            .iter()
            .filter(|(r, _)| !self.revision(r).is_some_and(|r| r.ready))
            .map(|(r, _)| r.clone())
            .collect();
        TrafficChange {
            at,
            allocation,
            tags: self.tags(&self.traffic),
            by_hand,
            etag_matched,
            template_changed,
            labels_preserved: self.labels == before.labels,
            foreign_annotations_preserved: foreign(&self.annotations)
                == foreign(&before.annotations),
            traffic_changed: self.traffic != before.traffic,
            routes_unready,
        }
    }

    /// What a write is compared against.
    pub(crate) fn before_write(&self) -> Before {
        Before {
            traffic: self.traffic.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// The parts of a service a history entry compares before and after a write.
pub(crate) struct Before {
    traffic: Vec<Target>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// Who wrote, for the history.
pub(crate) enum Writer {
    /// A human or CI through the scenario API.
    Outside,
    /// A client through the Run API.
    Api {
        etag_matched: bool,
        template_changed: bool,
    },
}

/// The template of a freshly deployed service: realistic fields, image tagged with the revision.
fn initial_template(key: &ServiceKey, revision: &str) -> Value {
    json!({
        "revision": revision,
        "serviceAccount": format!("{}-runtime@{}.iam.gserviceaccount.com", key.service, key.project),
        "scaling": {"maxInstanceCount": 20},
        "timeout": "300s",
        "maxInstanceRequestConcurrency": 80,
        "containers": [{
            "image": format!("{}-docker.pkg.dev/{}/app/{}:{revision}", key.region, key.project, key.service),
            "ports": [{"name": "http1", "containerPort": 8080}],
            "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "cpuIdle": true, "startupCpuBoost": true},
        }],
    })
}

/// `template` as `gcloud run deploy` of image tag `revision` would leave it.
fn template_for_deploy(template: &Value, key: &ServiceKey, revision: &str) -> Value {
    let mut template = match template {
        Value::Object(_) => template.clone(),
        _ => initial_template(key, revision),
    };
    template["revision"] = json!(revision);
    let image_base = template
        .pointer("/containers/0/image")
        .and_then(Value::as_str)
        .map(|image| {
            // Strip the tag: the last ':' after the last '/' (a registry host may carry a port).
            let slash = image.rfind('/').map_or(0, |i| i + 1);
            match image[slash..].rfind(':') {
                Some(colon) => image[..slash + colon].to_string(),
                None => image.to_string(),
            }
        })
        .unwrap_or_else(|| {
            format!(
                "{}-docker.pkg.dev/{}/app/{}",
                key.region, key.project, key.service
            )
        });
    let image = format!("{image_base}:{revision}");
    match template.pointer_mut("/containers/0") {
        Some(Value::Object(container)) => {
            container.insert("image".into(), json!(image));
        }
        _ => template["containers"] = json!([{ "image": image }]),
    }
    template
}

pub(crate) struct World {
    pub(crate) clock: FakeClock,
    /// `http://127.0.0.1:PORT`, for URLs the fake hands out.
    pub(crate) base_url: String,
    /// In creation order; never removed from, so an index stays valid. Look one up with
    /// [`World::find`], a project's with [`World::in_project`] (both indexed below).
    pub(crate) services: Vec<Service>,
    /// Where each service is in `services`: a bench world holds 150,000 of them, and every Run
    /// call names one.
    index: HashMap<ServiceKey, usize>,
    /// Each project's services (`services` indices, creation order), for listings and
    /// Monitoring queries, which look at one project.
    by_project: HashMap<String, Vec<usize>>,
    /// By full operation name.
    pub(crate) operations: HashMap<String, Operation>,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) faults: Faults,
    pub(crate) metadata: MetadataConfig,
    pub(crate) tokens_issued: usize,
    /// App Engine services and URL maps, in creation order (`split_targets.rs`).
    pub(crate) split_targets: Vec<SplitTarget>,
    /// The projects' backend services, in creation order.
    pub(crate) backends: Vec<Backend>,
    /// App Engine and Compute operations, by full name.
    pub(crate) platform_ops: HashMap<String, PlatformOp>,
    /// Seeded, so uids and operation ids are the same from run to run.
    pub(crate) rng: fastrand::Rng,
    /// Counts writes, so every write gets a distinct etag.
    writes: u64,
}

impl World {
    pub(crate) fn new(clock: FakeClock, base_url: String) -> Self {
        World {
            clock,
            base_url,
            services: Vec::new(),
            index: HashMap::new(),
            by_project: HashMap::new(),
            operations: HashMap::new(),
            requests: Vec::new(),
            faults: Faults::default(),
            metadata: MetadataConfig::default(),
            tokens_issued: 0,
            split_targets: Vec::new(),
            backends: Vec::new(),
            platform_ops: HashMap::new(),
            rng: fastrand::Rng::with_seed(0x00c0_ffee),
            writes: 0,
        }
    }

    pub(crate) fn uuid(&mut self) -> String {
        uuid4(&mut self.rng)
    }

    pub(crate) fn find(&self, key: &ServiceKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// `project`'s services, in creation order.
    pub(crate) fn in_project<'a>(
        &'a self,
        project: &str,
    ) -> impl DoubleEndedIterator<Item = &'a Service> {
        self.by_project
            .get(project)
            .into_iter()
            .flatten()
            .map(|&i| &self.services[i])
    }

    /// The index of a service named in the scenario API.
    ///
    /// # Panics
    /// If the service does not exist: a test naming an unknown service is a broken test.
    fn expect(&self, key: &ServiceKey) -> usize {
        self.find(key)
            .unwrap_or_else(|| panic!("FakeGcp: no service {}", key.full_name()))
    }

    /// A fresh opaque etag with embedded quotes, like `"\"C…/…\""` in the real capture.
    fn next_etag(&mut self, key: &ServiceKey, generation: u64) -> String {
        self.writes += 1;
        let version = format!("{generation}.{}.{}", self.writes, self.rng.u64(..));
        format!(
            "\"C{}/{}\"",
            STANDARD_NO_PAD.encode(version),
            STANDARD_NO_PAD.encode(key.full_name())
        )
    }

    /// Records that service `i` changed: generation + 1, new etag, new updateTime.
    pub(crate) fn bump(&mut self, i: usize) {
        let now = self.clock.now();
        let key = self.services[i].key.clone();
        let generation = self.services[i].generation + 1;
        let etag = self.next_etag(&key, generation);
        let service = &mut self.services[i];
        service.generation = generation;
        service.etag = etag;
        service.updated = now;
    }

    /// A change made outside the API (console, gcloud, the scenario): applied and rolled out
    /// at once.
    fn bump_and_settle(&mut self, i: usize) {
        self.bump(i);
        let now = self.clock.now();
        self.services[i].settle(now);
    }

    pub(crate) fn add_service(
        &mut self,
        key: ServiceKey,
        first_revision: &str,
        profile: RevisionProfile,
        requests_per_second: f64,
    ) {
        assert!(
            self.find(&key).is_none(),
            "FakeGcp: service {} already exists",
            key.full_name()
        );
        let now = self.clock.now();
        let template = initial_template(&key, first_revision);
        let revision = Revision {
            name: first_revision.to_string(),
            uid: self.uuid(),
            created: now,
            template: template.clone(),
            profile: Timeline::starting(now, profile),
            ready: true,
        };
        let traffic = vec![Target {
            revision: Some(first_revision.to_string()),
            percent: 100,
            tag: None,
        }];
        let mut extra = Map::new();
        extra.insert("ingress".into(), json!("INGRESS_TRAFFIC_ALL"));
        extra.insert("launchStage".into(), json!("GA"));
        let deployer = format!("ci@{}.iam.gserviceaccount.com", key.project);
        let service = Service {
            uid: self.uuid(),
            created: now,
            updated: now,
            generation: 0,
            observed_generation: 0,
            reconciling: false,
            settled_at: now,
            creator: deployer.clone(),
            last_modifier: deployer,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            template,
            extra,
            traffic_statuses: traffic.clone(),
            traffic,
            revisions: vec![revision],
            latest_ready: first_revision.to_string(),
            latest_created: first_revision.to_string(),
            failure: None,
            concurrent_writes: (0, 0),
            etag: String::new(),
            rps: Timeline::starting(now, requests_per_second),
            history: Vec::new(),
            key,
        };
        let mut before = service.before_write();
        before.traffic.clear();
        let creation = service.change_since(now, &before, Writer::Outside);
        let i = self.services.len();
        self.index.insert(service.key.clone(), i);
        self.by_project
            .entry(service.key.project.clone())
            .or_default()
            .push(i);
        self.services.push(service);
        self.services[i].history.push(creation);
        self.bump_and_settle(i);
    }

    /// `gcloud run deploy --no-traffic`: a new Ready revision becomes the latest; LATEST targets
    /// are pinned to the revision that was serving them, so no traffic moves.
    pub(crate) fn deploy(&mut self, key: &ServiceKey, revision: &str, profile: RevisionProfile) {
        self.create_revision(key, revision, profile, true);
    }

    /// A deploy whose revision never becomes Ready (its container fails to start): it is the
    /// latest *created* revision, the latest ready one stays as it was.
    pub(crate) fn deploy_unready(&mut self, key: &ServiceKey, revision: &str) {
        self.create_revision(key, revision, RevisionProfile::healthy(), false);
    }

    fn create_revision(
        &mut self,
        key: &ServiceKey,
        revision: &str,
        profile: RevisionProfile,
        ready: bool,
    ) {
        let i = self.expect(key);
        let now = self.clock.now();
        let uid = self.uuid();
        let service = &mut self.services[i];
        assert!(
            service.revision(revision).is_none(),
            "FakeGcp: revision {revision} already exists"
        );
        let before = service.before_write();
        let previous = service.latest_ready.clone();
        for target in service.traffic.iter_mut().filter(|t| t.revision.is_none()) {
            target.revision = Some(previous.clone());
        }
        if service.traffic != before.traffic {
            let change = service.change_since(now, &before, Writer::Outside);
            service.history.push(change);
        }
        service.template = template_for_deploy(&service.template, key, revision);
        service.revisions.push(Revision {
            name: revision.to_string(),
            uid,
            created: now,
            template: service.template.clone(),
            profile: Timeline::starting(now, profile),
            ready,
        });
        if ready {
            service.latest_ready = revision.to_string();
        }
        service.latest_created = revision.to_string();
        service.last_modifier = format!("ci@{}.iam.gserviceaccount.com", key.project);
        self.bump_and_settle(i);
    }

    pub(crate) fn set_profile(
        &mut self,
        key: &ServiceKey,
        revision: &str,
        profile: RevisionProfile,
    ) {
        let i = self.expect(key);
        let now = self.clock.now();
        self.services[i]
            .revision_mut(revision)
            .unwrap_or_else(|| panic!("FakeGcp: no revision {revision} in {}", key.full_name()))
            .profile
            .set(now, profile);
    }

    pub(crate) fn set_rps(&mut self, key: &ServiceKey, rps: f64) {
        let i = self.expect(key);
        let now = self.clock.now();
        self.services[i].rps.set(now, rps);
    }

    /// A human moving traffic (`gcloud run services update-traffic --to-revisions=…`): the split
    /// is replaced, existing tags stay on their revisions.
    pub(crate) fn set_traffic_by_hand(&mut self, key: &ServiceKey, allocation: &[(&str, u8)]) {
        let i = self.expect(key);
        let now = self.clock.now();
        let service = &self.services[i];
        let sum: u32 = allocation.iter().map(|(_, p)| u32::from(*p)).sum();
        assert_eq!(sum, 100, "FakeGcp: a traffic split must sum to 100");
        for (revision, _) in allocation {
            assert!(
                service.revision(revision).is_some(),
                "FakeGcp: no revision {revision} in {}",
                key.full_name()
            );
        }
        let mut traffic: Vec<Target> = allocation
            .iter()
            .map(|(revision, percent)| Target {
                revision: Some(revision.to_string()),
                percent: *percent,
                tag: None,
            })
            .collect();
        for (tag, revision) in service.tags(&service.traffic) {
            match traffic
                .iter_mut()
                .find(|t| t.tag.is_none() && t.revision.as_deref() == Some(revision.as_str()))
            {
                Some(target) => target.tag = Some(tag),
                None => traffic.push(Target {
                    revision: Some(revision),
                    percent: 0,
                    tag: Some(tag),
                }),
            }
        }
        let before = service.before_write();
        let service = &mut self.services[i];
        service.traffic = traffic;
        service.last_modifier = "operator@example.com".to_string();
        let change = service.change_since(now, &before, Writer::Outside);
        service.history.push(change);
        self.bump_and_settle(i);
    }

    /// Someone else writes the service: an unrelated label changes, and with it the etag.
    pub(crate) fn touch_labels(&mut self, key: &ServiceKey) {
        let i = self.expect(key);
        self.touch_labels_at(i);
    }

    pub(crate) fn touch_labels_at(&mut self, i: usize) {
        let service = &mut self.services[i];
        let writes = service
            .labels
            .get(CONCURRENT_LABEL)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        service
            .labels
            .insert(CONCURRENT_LABEL.into(), (writes + 1).to_string());
        service.concurrent_writes.0 += 1;
        service.last_modifier = "someone-else@example.com".to_string();
        self.bump_and_settle(i);
    }

    /// Someone else writes the service: an annotation that is not cutover's changes, and with it
    /// the etag.
    pub(crate) fn touch_annotation_at(&mut self, i: usize) {
        let service = &mut self.services[i];
        let writes = service
            .annotations
            .get(CONCURRENT_ANNOTATION)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        service
            .annotations
            .insert(CONCURRENT_ANNOTATION.into(), (writes + 1).to_string());
        service.concurrent_writes.1 += 1;
        service.last_modifier = "someone-else@example.com".to_string();
        self.bump_and_settle(i);
    }

    pub(crate) fn set_annotation(&mut self, key: &ServiceKey, name: &str, value: &str) {
        let i = self.expect(key);
        let service = &mut self.services[i];
        service.annotations.insert(name.into(), value.into());
        service.last_modifier = "operator@example.com".to_string();
        self.bump_and_settle(i);
    }

    /// The service named in the scenario API.
    ///
    /// # Panics
    /// If it does not exist.
    pub(crate) fn service(&self, key: &ServiceKey) -> &Service {
        &self.services[self.expect(key)]
    }
}
