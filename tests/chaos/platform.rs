//! The platform a seed runs on (issue 15): the same plan played on Cloud Run services, App Engine
//! services (the plan's revisions are versions) or URL maps (the plan's revisions are backend
//! services behind the map's default route). This module is the only place that knows how each
//! platform is set up, told about a deploy, judged and read back, so that the runs
//! (`inproc.rs`, `process.rs`) and the judge (`judge.rs`) stay the same for all three.
//!
//! Cloud Run keeps its record on the service; the two others in Firestore (the real emulator,
//! one for the whole run, one collection per seed), read back here with cutover's own store.
//! Their split histories are turned into the Cloud Run history type so that one checker
//! (`invariants.rs`) judges every platform: shares become percents (an exact sum other than
//! 1 is reported on its own, [`World::split_sums`]); App Engine has no write guard, so its writes
//! are not held to the etag invariant (the gap `src/router/recorded.rs` documents); the
//! concurrent writer's changes are checked on the target itself ([`World::concurrent_lost`]).

use std::collections::BTreeMap;
use std::time::Duration;

use cutover::gcp::{Google, TokenSource};
use cutover::ids::{ProjectId, ServiceName};
use cutover::router::firestore::Firestore;
use cutover::router::recorded::INTENT_SPLIT;
use cutover::router::store::RecordStore;
use cutover::target::{Platform, ServiceRef};
use cutover_fakes::encode::{
    build_attributes, encode_app_engine_build, encode_build, encode_url_map_build,
};
use cutover_fakes::pusher::{app_engine_incident, incident, url_map_incident};
use cutover_fakes::{FakeGcp, RevisionProfile, TargetKey, TrafficChange};
use jiff::Timestamp;

use crate::plan::{Health, RevisionPlan, ServicePlan};
use crate::{PROJECT, REGION};

/// The platforms `CHAOS_PLATFORMS` names (comma separated; default: all three).
pub fn selected() -> Vec<Platform> {
    match std::env::var("CHAOS_PLATFORMS") {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|p| {
                Platform::parse(p.trim())
                    .unwrap_or_else(|| panic!("CHAOS_PLATFORMS: {p:?} is not a platform"))
            })
            .collect(),
        _ => Platform::ALL.to_vec(),
    }
}

/// A seed's label: the seed for Cloud Run (as before issue 15), prefixed `ae`/`lb` otherwise.
pub fn label(platform: Platform, seed: &str) -> String {
    match platform {
        Platform::CloudRun => seed.to_string(),
        Platform::AppEngine => format!("ae{seed}"),
        Platform::LoadBalancer => format!("lb{seed}"),
    }
}

/// One seed's world: the fake, the platform its services are on, and where their records live.
pub struct World {
    pub platform: Platform,
    pub fake: FakeGcp,
    /// Firestore (split platforms only) and its endpoint and collection.
    store: Option<(Firestore, String, String)>,
}

impl World {
    /// `fake`'s targets on `platform`; records of a split platform in `collection` of the
    /// Firestore emulator at `firestore` (`host:port`).
    pub fn new(
        platform: Platform,
        fake: FakeGcp,
        firestore: Option<&str>,
        collection: &str,
    ) -> World {
        let store = (platform != Platform::CloudRun).then(|| {
            let host = firestore.expect("a split platform runs with the Firestore emulator");
            let endpoint = format!("http://{host}");
            let google = Google::new(reqwest::Client::new(), TokenSource::None);
            let store = Firestore::new(google, &endpoint, PROJECT, "(default)", collection);
            (store, endpoint, collection.to_string())
        });
        World {
            platform,
            fake,
            store,
        }
    }

    /// The `cutover serve` flags this world needs beyond the fake's (platforms, endpoints,
    /// the seed's collection).
    pub fn flags(&self) -> Vec<String> {
        let Some((_, endpoint, collection)) = &self.store else {
            return Vec::new();
        };
        let mut out = cutover_fakes::flags::platform_flags(&self.fake);
        out.extend([
            "--platforms".to_string(),
            self.platform.as_str().to_string(),
            "--firestore-endpoint".to_string(),
            endpoint.clone(),
            "--firestore-collection".to_string(),
            collection.clone(),
        ]);
        out
    }

    pub fn key(&self, service: &str) -> TargetKey {
        match self.platform {
            Platform::CloudRun => FakeGcp::cloud_run(PROJECT, REGION, service),
            Platform::AppEngine => FakeGcp::app_engine(PROJECT, service),
            Platform::LoadBalancer => FakeGcp::url_map(PROJECT, service),
        }
    }

    /// The target cutover knows `service` by.
    pub fn target(&self, service: &str) -> ServiceRef {
        match self.platform {
            Platform::CloudRun => ServiceRef::checked(PROJECT, REGION, service).expect("valid ids"),
            p => ServiceRef::global(
                p,
                ProjectId::parse(PROJECT).expect("a valid project"),
                ServiceName::parse(service).expect("a valid name"),
            ),
        }
    }

    /// Puts the plan's services on the fake, each serving 100 % on its stable revision at its
    /// planned rate times `rps_factor`.
    pub fn add_services(&self, services: &[ServicePlan], rps_factor: f64) {
        for s in services {
            let rps = s.rps * rps_factor;
            match self.platform {
                Platform::CloudRun => self.fake.add_service(
                    PROJECT,
                    REGION,
                    &s.name,
                    &s.stable,
                    RevisionProfile::healthy(),
                    rps,
                ),
                Platform::AppEngine => self
                    .fake
                    .add_app_engine_service(PROJECT, &s.name, &s.stable),
                Platform::LoadBalancer => self.fake.add_url_map(PROJECT, &s.name, &s.stable),
            }
            self.fake.set_rps_of(&self.key(&s.name), rps);
        }
    }

    /// Deploys `r` as the plan says: a revision, a version (`--no-promote`; one that never
    /// becomes ready is `STOPPED`), or a backend service joining the map at weight 0 (one that
    /// never becomes ready is unhealthy). Whether it was deployed: a URL map's pipeline refuses
    /// a release while two backends serve (a rollout is under way: no backend is idle).
    pub fn deploy(&self, service: &str, r: &RevisionPlan) -> bool {
        let unready = r.health == Health::Unready;
        if self.platform == Platform::LoadBalancer && self.serving_backends(service) > 1 {
            return false;
        }
        match self.platform {
            Platform::CloudRun if unready => {
                self.fake.deploy_unready(PROJECT, REGION, service, &r.name)
            }
            Platform::CloudRun => {
                self.fake
                    .deploy(PROJECT, REGION, service, &r.name, r.health.profile())
            }
            Platform::AppEngine => {
                self.fake.deploy_version(PROJECT, service, &r.name);
                if unready {
                    self.fake
                        .set_version_serving(PROJECT, service, &r.name, false);
                }
            }
            Platform::LoadBalancer => {
                // The route holds the serving backend and an idle one, which receives the next
                // release (docs/platforms.md): the pipeline takes the idle backend (a
                // rolled-back candidate, the stable a rollout replaced) out of the route and
                // brings the release up on a new backend service in its place.
                for idle in self.idle_backends(service) {
                    self.fake.detach_backend(PROJECT, service, &idle);
                }
                self.fake.add_backend(PROJECT, service, &r.name);
                if unready {
                    self.fake.set_backend_healthy(PROJECT, &r.name, false);
                }
            }
        }
        if self.platform != Platform::CloudRun {
            self.set_profile(service, &r.name, r.health.profile());
        }
        true
    }

    /// The backend services in the default route of URL map `map`, with their weights.
    fn backends(&self, map: &str) -> Vec<(String, u64)> {
        let json = self.fake.target_json(&self.key(map));
        json["defaultRouteAction"]["weightedBackendServices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let name = e["backendService"].as_str()?.rsplit('/').next()?;
                Some((name.to_string(), e["weight"].as_u64().unwrap_or(0)))
            })
            .collect()
    }

    fn idle_backends(&self, map: &str) -> Vec<String> {
        let all = self.backends(map).into_iter();
        all.filter(|(_, w)| *w == 0).map(|(b, _)| b).collect()
    }

    fn serving_backends(&self, map: &str) -> usize {
        self.backends(map).iter().filter(|(_, w)| *w > 0).count()
    }

    pub fn set_profile(&self, service: &str, member: &str, profile: RevisionProfile) {
        self.fake
            .set_profile_of(&self.key(service), member, profile);
    }

    /// The Cloud Build notification (data, attributes) of the deploy of `revision`.
    pub fn build(
        &self,
        build_id: &str,
        service: &str,
        revision: &str,
        at: Timestamp,
    ) -> (Vec<u8>, BTreeMap<String, String>) {
        let data = match self.platform {
            Platform::CloudRun => encode_build(build_id, "SUCCESS", PROJECT, service, REGION, at),
            Platform::AppEngine => {
                encode_app_engine_build(build_id, "SUCCESS", PROJECT, service, revision, at)
            }
            Platform::LoadBalancer => {
                encode_url_map_build(build_id, "SUCCESS", PROJECT, service, revision, at)
            }
        };
        (data, build_attributes(build_id, "SUCCESS"))
    }

    /// A Monitoring incident about `revision` of `service` (`open` or `closed`).
    pub fn incident(
        &self,
        service: &str,
        revision: &str,
        state: &str,
        at: Timestamp,
    ) -> serde_json::Value {
        match self.platform {
            Platform::CloudRun => incident(PROJECT, service, revision, REGION, state, at),
            Platform::AppEngine => app_engine_incident(PROJECT, service, revision, state, at),
            Platform::LoadBalancer => url_map_incident(PROJECT, service, revision, state, at),
        }
    }

    /// Every accepted change of `service`'s traffic, as the checker reads them.
    pub fn history(&self, service: &str) -> Vec<TrafficChange> {
        if self.platform == Platform::CloudRun {
            return self.fake.history(PROJECT, REGION, service);
        }
        let unguarded = self.platform == Platform::AppEngine;
        self.fake
            .split_history(&self.key(service))
            .into_iter()
            .map(|c| TrafficChange {
                at: c.at,
                allocation: c
                    .shares
                    .iter()
                    .map(|(m, s)| (m.clone(), (s * 100.0).round() as u8))
                    .collect(),
                // Split platforms have no tags: the checker infers rollbacks without them.
                tags: Vec::new(),
                by_hand: c.by_hand,
                etag_matched: c.guard_matched || unguarded,
                template_changed: false,
                labels_preserved: true,
                foreign_annotations_preserved: true,
                traffic_changed: true,
                routes_unready: c.routes_unready,
            })
            .collect()
    }

    /// Writes by cutover whose exact shares do not sum to 1 (the percents of
    /// [`history`](Self::history) are rounded), described.
    pub fn split_sums(&self, service: &str) -> Vec<String> {
        if self.platform == Platform::CloudRun {
            return Vec::new();
        }
        self.fake
            .split_history(&self.key(service))
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.by_hand && (c.share_sum() - 1.0).abs() > 1e-9)
            .map(|(i, c)| {
                format!(
                    "write {i} shares sum to {}: written {:?}",
                    c.share_sum(),
                    c.written
                )
            })
            .collect()
    }

    /// How the concurrent writer's changes went missing from `service`, if they did.
    pub fn concurrent_lost(&self, service: &str) -> Option<String> {
        let json = self.fake.target_json(&self.key(service));
        let (expected, shown) = match self.platform {
            Platform::CloudRun => {
                let (labels, annotations) = self.fake.concurrent_writes(PROJECT, REGION, service);
                let count = |v: &serde_json::Value| {
                    v.as_str().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
                };
                let shown = (
                    count(&json["labels"]["concurrent-writes"]),
                    count(&json["annotations"]["concurrent.example.com/writes"]),
                );
                return ((labels, annotations) != shown).then(|| {
                    format!(
                        "{labels} label and {annotations} annotation writes by others, the service shows {} and {}",
                        shown.0, shown.1
                    )
                });
            }
            Platform::AppEngine => (
                self.fake.concurrent_writes_of(&self.key(service)),
                json["labels"]["concurrent-writes"]
                    .as_str()
                    .map(String::from),
            ),
            Platform::LoadBalancer => (
                self.fake.concurrent_writes_of(&self.key(service)),
                json["description"].as_str().map(String::from),
            ),
        };
        let want = match (self.platform, expected) {
            (_, 0) => None,
            (Platform::AppEngine, n) => Some(n.to_string()),
            (_, n) => Some(format!("edited elsewhere ({n})")),
        };
        match (&want, &shown) {
            (None, _) => None,
            (Some(w), Some(s)) if w == s => None,
            _ => Some(format!(
                "{expected} writes by others, the target shows {shown:?} (expected {want:?})"
            )),
        }
    }

    /// The rollout record of `service` (`cutover.dev/*` and, mid-write, `cutover.intent/*`).
    pub async fn record(&self, service: &str) -> Result<BTreeMap<String, String>, String> {
        match &self.store {
            None => {
                let json = self.fake.service_json(PROJECT, REGION, service);
                Ok(json["annotations"]
                    .as_object()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default())
            }
            Some((store, _, _)) => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                store
                    .read(&self.target(service), deadline)
                    .await
                    .map(|s| s.annotations)
                    .map_err(|e| format!("its record could not be read from Firestore: {e}"))
            }
        }
    }

    /// How many of `services` have a record with an unsettled intent (a write between its
    /// intent and its settle: see `src/router/recorded.rs`).
    pub async fn open_intents(&self, services: &[ServicePlan]) -> u64 {
        if self.store.is_none() {
            return 0;
        }
        let mut n = 0;
        for s in services {
            if self
                .record(&s.name)
                .await
                .is_ok_and(|r| r.contains_key(INTENT_SPLIT))
            {
                n += 1;
            }
        }
        n
    }
}
