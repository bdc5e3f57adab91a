//! App Engine as a [`SplitPlatform`]: a service's `split` ↔ cutover's percents by version.
//!
//! Decisions made here, and why:
//!
//! - **Fractions ↔ percents.** Cutover writes whole percents as fractions `p / 100` (two
//!   decimals: exact for every shard mode, IP splits allowing no more). A split someone else
//!   set may carry three decimals (cookie splits): it reads as whole percents by largest
//!   remainder ([`super::shares`]), so they always sum to 100. A version at 0% is left out of
//!   `allocations` (App Engine takes only shares in (0, 1]).
//! - **`shardBy`.** The service's own mode is kept: it is the per-service choice, set with
//!   `gcloud app services set-traffic --split-by`, and changing how users are assigned in the
//!   middle of a rollout would move users that no step moved. A service without one
//!   (`UNSPECIFIED`) gets the router's default, [`ShardBy::Random`] unless configured
//!   (`CUTOVER_APPENGINE_SHARD_BY`): the only mode that always diverts, request by request,
//!   in proportion to the split, which is also what the judge's statistics assume. `COOKIE`
//!   keeps a user on one version, but the API's own enum says the `GOOGAPPUID` cookie "must be
//!   set by the application itself or no diversion will occur": for an application that does
//!   not set it the candidate would get no requests and every step would hold for lack of
//!   data. `IP` moves whole offices behind one NAT address at once. A team that wants
//!   stickiness sets `cookie` or `ip` on the service (kept, see above) or as the default.
//! - **Ready and latest ready.** Ready versions are those `SERVING`; the latest ready one (the
//!   candidate a build rolls out) is the newest `SERVING` version by `createTime` (ties by id).
//!   A `STOPPED` version is never given traffic: a write that would is refused here, before
//!   any call.
//! - **Revision names.** The version id. `gcloud app deploy` names each deploy anew (a
//!   timestamp) unless told `--version`; redeploying an id that was rolled back needs an
//!   operator's `start` naming it, as for any revision cutover rolled back.
//! - **Smoke URL.** Each `SERVING` version's `versionUrl`, which answers whatever its share.
//! - **Concurrency.** App Engine has no etag and `services.patch` no precondition. The write
//!   reads the split again just before patching and refuses with a conflict if it is no
//!   longer the one decided on; a change landing between that read and the patch is
//!   overwritten (the API offers nothing narrower). The record's store guards the rest.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::RouterError;
use super::shares::percents;
use super::split::{SplitPlatform, SplitRead};
use crate::decision::Target;
use crate::failure::ErrorKind;
use crate::gcp::ApiError;
use crate::gcp::appengine::{AppEngineClient, Service, ServingStatus, ShardBy, TrafficSplit};
use crate::target::{Platform, ServiceRef};

/// What a write needs of the read it follows: the split exactly as read.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitAsRead {
    pub split: TrafficSplit,
}

/// Moves traffic between the versions of App Engine services.
#[derive(Clone)]
pub struct AppEngineSplit {
    client: AppEngineClient,
    default_shard_by: ShardBy,
}

/// A write cutover refuses to send.
#[derive(Debug, thiserror::Error)]
pub enum RefusedSplit {
    /// The shares do not add up to 100.
    #[error("the shares sum to {0}%, not 100%")]
    NotWhole(u32),
    /// A version that is not serving would get traffic.
    #[error("version {0} is not SERVING and cannot receive traffic")]
    NotServing(String),
    /// The split changed since it was read.
    #[error("the split changed since it was read")]
    Changed,
}

impl AppEngineSplit {
    /// A router whose default shard mode (for services without one) is `RANDOM`.
    pub fn new(client: AppEngineClient) -> Self {
        AppEngineSplit {
            client,
            default_shard_by: ShardBy::Random,
        }
    }

    /// The shard mode written for services that have none (`UNSPECIFIED`); `UNSPECIFIED`
    /// itself leaves the choice to App Engine.
    pub fn with_default_shard_by(mut self, shard_by: ShardBy) -> Self {
        self.default_shard_by = shard_by;
        self
    }

    /// The split to send for `traffic`, keeping the service's shard mode.
    pub fn split_for(&self, read: &TrafficSplit, traffic: &[Target]) -> TrafficSplit {
        let shard_by = match read.shard_by {
            ShardBy::Cookie | ShardBy::Ip | ShardBy::Random => read.shard_by,
            ShardBy::Unspecified | ShardBy::Other => self.default_shard_by,
        };
        let mut allocations = BTreeMap::new();
        for t in traffic.iter().filter(|t| t.percent > 0) {
            *allocations.entry(t.revision.clone()).or_insert(0.0) += f64::from(t.percent);
        }
        for share in allocations.values_mut() {
            *share /= 100.0;
        }
        TrafficSplit {
            shard_by,
            allocations,
        }
    }
}

fn api(e: ApiError) -> RouterError {
    RouterError::new(e.kind(), e)
}

/// A service and its versions as a [`SplitRead`].
pub fn split_read(
    service: &Service,
    versions: &[crate::gcp::appengine::Version],
) -> SplitRead<SplitAsRead> {
    let serving: Vec<_> = versions
        .iter()
        .filter(|v| v.serving_status == ServingStatus::Serving && !v.id.is_empty())
        .collect();
    let latest_ready = serving
        .iter()
        .max_by(|a, b| a.create_time.cmp(&b.create_time).then(a.id.cmp(&b.id)))
        .map(|v| v.id.clone());
    let ready: BTreeSet<String> = serving.iter().map(|v| v.id.clone()).collect();
    let urls = serving
        .iter()
        .filter(|v| !v.version_url.is_empty())
        .map(|v| (v.id.clone(), v.version_url.clone()))
        .collect();
    let allocation = percents(
        service
            .split
            .allocations
            .iter()
            .map(|(v, share)| (v.as_str(), *share)),
    );
    SplitRead {
        latest_ready,
        allocation,
        ready,
        urls,
        version: SplitAsRead {
            split: service.split.clone(),
        },
    }
}

/// Refuses traffic that does not sum to 100 or gives a share to a version not serving.
fn check(read: &SplitRead<SplitAsRead>, traffic: &[Target]) -> Result<(), RefusedSplit> {
    let sum: u32 = traffic.iter().map(|t| u32::from(t.percent)).sum();
    if sum != 100 {
        return Err(RefusedSplit::NotWhole(sum));
    }
    if let Some(t) = traffic
        .iter()
        .find(|t| t.percent > 0 && !read.ready.contains(&t.revision))
    {
        return Err(RefusedSplit::NotServing(t.revision.clone()));
    }
    Ok(())
}

impl SplitPlatform for AppEngineSplit {
    type Version = SplitAsRead;

    const PLATFORM: Platform = Platform::AppEngine;

    async fn read(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> Result<SplitRead<SplitAsRead>, RouterError> {
        let (service, versions) = tokio::try_join!(
            self.client.get_service(target, deadline),
            self.client.list_versions(target, deadline)
        )
        .map_err(api)?;
        Ok(split_read(&service, &versions))
    }

    async fn write(
        &self,
        target: &ServiceRef,
        read: &SplitRead<SplitAsRead>,
        traffic: &[Target],
        deadline: Instant,
    ) -> Result<SplitRead<SplitAsRead>, RouterError> {
        check(read, traffic).map_err(|e| RouterError::new(ErrorKind::Permanent, e))?;
        let now = self
            .client
            .get_service(target, deadline)
            .await
            .map_err(api)?;
        if now.split != read.version.split {
            return Err(RouterError::new(ErrorKind::Conflict, RefusedSplit::Changed));
        }
        let split = self.split_for(&read.version.split, traffic);
        let op = self
            .client
            .patch_split(target, &split, deadline)
            .await
            .map_err(api)?;
        let done = match self.client.wait(op, deadline).await.map_err(api)? {
            Some(service) => service,
            None => self
                .client
                .get_service(target, deadline)
                .await
                .map_err(api)?,
        };
        // A split write changes no version: the versions as read still hold.
        let mut after = read.clone();
        let fresh = split_read(&done, &[]);
        after.allocation = fresh.allocation;
        after.version = fresh.version;
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::appengine::Version;

    fn version(id: &str, status: ServingStatus, created: &str) -> Version {
        Version {
            name: format!("apps/p/services/web/versions/{id}"),
            id: id.into(),
            serving_status: status,
            create_time: Some(created.parse().unwrap()),
            version_url: format!("https://{id}-dot-web-dot-p.uc.r.appspot.com"),
        }
    }

    fn service(allocations: &[(&str, f64)], shard_by: ShardBy) -> Service {
        serde_json::from_value(serde_json::json!({
            "name": "apps/p/services/web",
            "id": "web",
            "split": {
                "shardBy": shard_by.as_str(),
                "allocations": allocations.iter().map(|(v, s)| (v.to_string(), *s)).collect::<BTreeMap<_, _>>()
            }
        }))
        .unwrap()
    }

    fn target(revision: &str, percent: u8) -> Target {
        Target {
            revision: revision.into(),
            percent,
            tag: None,
        }
    }

    #[test]
    fn the_candidate_is_the_newest_serving_version_and_each_has_its_url() {
        let versions = [
            version("v1", ServingStatus::Serving, "2026-12-01T00:00:00Z"),
            version("v2", ServingStatus::Serving, "2026-12-04T00:00:00Z"),
            // Newer but stopped: not a candidate, not ready, no smoke URL.
            version("v3", ServingStatus::Stopped, "2026-12-05T00:00:00Z"),
        ];
        let r = split_read(&service(&[("v1", 1.0)], ShardBy::Ip), &versions);
        assert_eq!(r.latest_ready.as_deref(), Some("v2"));
        assert_eq!(r.ready, BTreeSet::from(["v1".into(), "v2".into()]));
        assert_eq!(r.allocation, BTreeMap::from([("v1".into(), 100)]));
        assert_eq!(r.urls["v2"], "https://v2-dot-web-dot-p.uc.r.appspot.com");
        assert!(!r.urls.contains_key("v3"));
    }

    #[test]
    fn percents_become_two_decimal_fractions_and_the_services_shard_mode_is_kept() {
        let router = AppEngineSplit::new(AppEngineClient::new(
            crate::gcp::Google::new(reqwest::Client::new(), crate::gcp::TokenSource::None),
            "http://127.0.0.1:1",
        ));
        let ip = service(&[("v1", 1.0)], ShardBy::Ip).split;
        let s = router.split_for(&ip, &[target("v1", 90), target("v2", 10)]);
        assert_eq!(
            s.shard_by,
            ShardBy::Ip,
            "a service's own mode is its override"
        );
        assert_eq!(
            serde_json::to_value(&s.allocations).unwrap(),
            serde_json::json!({"v1": 0.9, "v2": 0.1})
        );
        // At 0% a version leaves the allocations (App Engine takes shares in (0, 1] only).
        let unset = service(&[("v1", 1.0)], ShardBy::Unspecified).split;
        let s = router.split_for(&unset, &[target("v1", 100), target("v2", 0)]);
        assert_eq!(
            s.shard_by,
            ShardBy::Random,
            "the default when the service has none"
        );
        assert_eq!(s.allocations, BTreeMap::from([("v1".into(), 1.0)]));
        let s = router
            .clone()
            .with_default_shard_by(ShardBy::Cookie)
            .split_for(&unset, &[target("v1", 100)]);
        assert_eq!(s.shard_by, ShardBy::Cookie);
        // Every whole percent reads back as itself.
        for p in 0..=100u8 {
            let s = router.split_for(&ip, &[target("v1", 100 - p), target("v2", p)]);
            let pairs: Vec<(&str, f64)> = s
                .allocations
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect();
            let back = percents(pairs);
            assert_eq!(back.get("v2").copied().unwrap_or(0), p);
        }
    }

    #[test]
    fn a_stopped_version_or_a_bad_sum_is_refused_before_any_call() {
        let versions = [
            version("v1", ServingStatus::Serving, "2026-12-01T00:00:00Z"),
            version("v2", ServingStatus::Stopped, "2026-12-04T00:00:00Z"),
        ];
        let r = split_read(&service(&[("v1", 1.0)], ShardBy::Cookie), &versions);
        assert!(matches!(
            check(&r, &[target("v1", 90), target("v2", 10)]),
            Err(RefusedSplit::NotServing(v)) if v == "v2"
        ));
        assert!(check(&r, &[target("v1", 100), target("v2", 0)]).is_ok());
        assert!(matches!(
            check(&r, &[target("v1", 90)]),
            Err(RefusedSplit::NotWhole(90))
        ));
    }

    fn web() -> ServiceRef {
        ServiceRef::global(
            Platform::AppEngine,
            crate::ids::ProjectId::parse("acme-prod").unwrap(),
            crate::ids::ServiceName::parse("web").unwrap(),
        )
    }

    fn far() -> Instant {
        Instant::now() + std::time::Duration::from_secs(10)
    }

    const SVC: &str = "/v1/apps/acme-prod/services/web";

    fn versions() -> serde_json::Value {
        serde_json::json!({"versions": [
            {"id": "v1", "servingStatus": "SERVING", "createTime": "2026-12-01T00:00:00Z", "versionUrl": "https://v1-dot-web"},
            {"id": "v2", "servingStatus": "SERVING", "createTime": "2026-12-04T00:00:00Z", "versionUrl": "https://v2-dot-web"}
        ]})
    }

    fn with_split(allocations: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"name": "apps/acme-prod/services/web", "id": "web",
            "split": {"shardBy": "IP", "allocations": allocations}})
    }

    #[tokio::test]
    async fn a_write_sends_only_the_split_and_returns_once_its_operation_is_done() {
        use crate::router::stub::Stub;
        let stub = Stub::serve(|r, _| match (r.method.as_str(), r.uri.as_str()) {
            ("GET", SVC) => (200, with_split(serde_json::json!({"v1": 1}))),
            ("GET", u) if u.starts_with(&format!("{SVC}/versions")) => (200, versions()),
            ("PATCH", _) => (
                200,
                serde_json::json!({"name": "apps/acme-prod/operations/op-1"}),
            ),
            ("GET", "/v1/apps/acme-prod/operations/op-1") => (
                200,
                serde_json::json!({"name": "apps/acme-prod/operations/op-1", "done": true,
                    "response": with_split(serde_json::json!({"v1": 0.9, "v2": 0.1}))}),
            ),
            _ => (
                404,
                serde_json::json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "no"}}),
            ),
        })
        .await;
        let router = AppEngineSplit::new(AppEngineClient::new(Stub::google(), &stub.base));
        let read = router.read(&web(), far()).await.unwrap();
        assert_eq!(read.latest_ready.as_deref(), Some("v2"));
        assert_eq!(read.urls["v2"], "https://v2-dot-web");
        let after = router
            .write(&web(), &read, &[target("v1", 90), target("v2", 10)], far())
            .await
            .unwrap();
        assert_eq!(
            after.allocation,
            BTreeMap::from([("v1".into(), 90), ("v2".into(), 10)])
        );
        assert_eq!(after.latest_ready.as_deref(), Some("v2"));
        let seen = stub.seen();
        assert!(
            seen.iter()
                .any(|s| s.uri == format!("{SVC}/versions?view=BASIC")),
            "{seen:?}"
        );
        let patch = seen.iter().find(|s| s.method == "PATCH").expect("a patch");
        assert_eq!(patch.uri, format!("{SVC}?updateMask=split"));
        assert_eq!(
            patch.body,
            serde_json::json!({"split": {"shardBy": "IP", "allocations": {"v1": 0.9, "v2": 0.1}}})
        );
        assert!(
            seen.iter().any(|s| s.uri.ends_with("/operations/op-1")),
            "the operation was polled: {seen:?}"
        );
    }

    #[tokio::test]
    async fn a_split_changed_since_the_read_is_a_conflict_and_nothing_is_sent() {
        use crate::router::stub::Stub;
        // The first read sees v1 alone; by the write someone has moved traffic by hand.
        let stub = Stub::serve(|r, n| match (r.method.as_str(), r.uri.as_str()) {
            ("GET", SVC) if n < 2 => (200, with_split(serde_json::json!({"v1": 1}))),
            ("GET", SVC) => (200, with_split(serde_json::json!({"v1": 0.5, "v2": 0.5}))),
            ("GET", _) => (200, versions()),
            _ => (500, serde_json::json!({})),
        })
        .await;
        let router = AppEngineSplit::new(AppEngineClient::new(Stub::google(), &stub.base));
        let read = router.read(&web(), far()).await.unwrap();
        let e = router
            .write(&web(), &read, &[target("v1", 90), target("v2", 10)], far())
            .await
            .expect_err("the split changed");
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert!(stub.seen().iter().all(|s| s.method == "GET"));
    }
}
