//! App Engine Admin API v1: a service's traffic split, its versions, and the operations a
//! split update returns.
//!
//! Wire facts (Google's discovery document `appengine.v1.json`): `Service {name, id, split:
//! {shardBy, allocations}}` where `allocations` maps version ids to fractions in (0, 1] (JSON
//! numbers) that must sum to 1, with at most two decimals for IP splits and three for cookie
//! splits; `services.patch` takes `updateMask` and answers a `google.longrunning.Operation`
//! named `apps/{app}/operations/{id}`; versions carry `servingStatus` (`SERVING`, `STOPPED`),
//! `createTime` and `versionUrl`. A service has no etag and the patch no precondition.
//! Every call waits for the app's App Engine bucket (`CUTOVER_APPENGINE_CALLS_PER_MINUTE`,
//! [`super::quota`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::run::{Operation, wait_done};
use super::{ApiError, Google};
use crate::target::ServiceRef;

/// `TrafficSplit.shardBy`: how App Engine picks a version for a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShardBy {
    /// Not set: App Engine chooses.
    #[default]
    Unspecified,
    /// By the `GOOGAPPUID` cookie: a client keeps its version while the split stands.
    Cookie,
    /// By client IP address: clients behind one address share a version.
    Ip,
    /// Per request, at random.
    Random,
    /// A value this client does not know yet: it cannot be sent back as read, so it is
    /// written as `UNSPECIFIED` (the router replaces it with its default first).
    #[serde(other)]
    Other,
}

impl Serialize for ShardBy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl ShardBy {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardBy::Unspecified | ShardBy::Other => "UNSPECIFIED",
            ShardBy::Cookie => "COOKIE",
            ShardBy::Ip => "IP",
            ShardBy::Random => "RANDOM",
        }
    }

    /// The shard mode spelled `s` (`cookie`, `ip`, `random`, any case).
    pub fn parse(s: &str) -> Option<ShardBy> {
        match s.to_ascii_uppercase().as_str() {
            "COOKIE" => Some(ShardBy::Cookie),
            "IP" => Some(ShardBy::Ip),
            "RANDOM" => Some(ShardBy::Random),
            _ => None,
        }
    }
}

/// `TrafficSplit`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TrafficSplit {
    pub shard_by: ShardBy,
    /// Version id → fraction of traffic in (0, 1].
    pub allocations: BTreeMap<String, f64>,
}

/// The fields of a `Service` cutover reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Service {
    /// `apps/{app}/services/{id}`.
    pub name: String,
    pub id: String,
    pub split: TrafficSplit,
}

/// `Version.servingStatus`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServingStatus {
    #[default]
    ServingStatusUnspecified,
    Serving,
    Stopped,
    #[serde(other)]
    Other,
}

/// The fields of a `Version` cutover reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Version {
    /// `apps/{app}/services/{service}/versions/{id}`.
    pub name: String,
    pub id: String,
    pub serving_status: ServingStatus,
    pub create_time: Option<jiff::Timestamp>,
    /// Where this version answers on its own, whatever its share of traffic.
    pub version_url: String,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ListVersionsResponse {
    versions: Vec<Version>,
    next_page_token: String,
}

/// App Engine Admin API v1 client.
#[derive(Clone)]
pub struct AppEngineClient {
    google: Google,
    base: String,
}

impl AppEngineClient {
    /// `base` is `https://appengine.googleapis.com` or a fake's URL.
    pub fn new(google: Google, base: &str) -> Self {
        AppEngineClient {
            google,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    fn url(&self, target: &ServiceRef) -> String {
        format!("{}/v1/{}", self.base, target.resource_name())
    }

    /// `GET v1/apps/{app}/services/{service}`.
    pub async fn get_service(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> Result<Service, ApiError> {
        let url = self.url(target);
        self.google.get(&url, deadline).await
    }

    /// Every version of the service (`view=BASIC`), following `nextPageToken`.
    pub async fn list_versions(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> Result<Vec<Version>, ApiError> {
        let url = format!("{}/versions", self.url(target));
        let mut out = Vec::new();
        let query = [("view", "BASIC".to_string())];
        self.google
            .pages(
                &url,
                &query,
                |page: ListVersionsResponse| {
                    out.extend(page.versions);
                    Ok(page.next_page_token)
                },
                deadline,
            )
            .await?;
        Ok(out)
    }

    /// `PATCH v1/apps/{app}/services/{service}?updateMask=split` with `split` as the body's
    /// only field. Returns the operation; see [`AppEngineClient::wait`].
    pub async fn patch_split(
        &self,
        target: &ServiceRef,
        split: &TrafficSplit,
        deadline: Instant,
    ) -> Result<Operation, ApiError> {
        let url = self.url(target);
        let body = serde_json::json!({ "split": split });
        self.google
            .call(
                "PATCH",
                &url,
                |c| c.patch(&url).query(&[("updateMask", "split")]).json(&body),
                deadline,
            )
            .await
    }

    /// `GET v1/{operation name}` (`apps/{app}/operations/{id}`).
    pub async fn get_operation(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Operation, ApiError> {
        let url = format!("{}/v1/{}", self.base, name);
        self.google.get(&url, deadline).await
    }

    /// Polls `op` until it is done and returns the service it produced, when it says (an
    /// answer without one is read again by the caller).
    pub async fn wait(
        &self,
        op: Operation,
        deadline: Instant,
    ) -> Result<Option<Service>, ApiError> {
        let response = wait_done(
            op,
            super::POLL_PAUSE,
            |name| async move { self.get_operation(&name, deadline).await },
            deadline,
        )
        .await?;
        Ok(response.and_then(|v| Service::deserialize(v).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_and_its_versions_decode_as_the_discovery_document_describes() {
        let s: Service = serde_json::from_value(serde_json::json!({
            "name": "apps/acme-prod/services/default",
            "id": "default",
            "split": {"shardBy": "COOKIE", "allocations": {"v1": 0.9, "v2": 0.1}},
            "networkSettings": {"ingressTrafficAllowed": "INGRESS_TRAFFIC_ALLOWED_ALL"},
            "labels": {"team": "web"}
        }))
        .unwrap();
        assert_eq!(s.split.shard_by, ShardBy::Cookie);
        assert_eq!(s.split.allocations["v2"], 0.1);
        let v: ListVersionsResponse = serde_json::from_value(serde_json::json!({
            "versions": [{
                "name": "apps/acme-prod/services/default/versions/v2",
                "id": "v2",
                "servingStatus": "SERVING",
                "createTime": "2026-12-05T02:00:00Z",
                "versionUrl": "https://v2-dot-acme-prod.uc.r.appspot.com",
                "runtime": "python312",
                "env": "standard"
            }, {"id": "v0", "servingStatus": "STOPPED"}, {"id": "vx", "servingStatus": "SOMETHING_NEW"}],
            "nextPageToken": "t"
        }))
        .unwrap();
        assert_eq!(v.versions[0].serving_status, ServingStatus::Serving);
        assert!(v.versions[0].create_time.is_some());
        assert_eq!(v.versions[1].serving_status, ServingStatus::Stopped);
        assert_eq!(v.versions[2].serving_status, ServingStatus::Other);
        assert_eq!(v.next_page_token, "t");
    }

    #[test]
    fn a_split_is_written_with_wire_names_and_fractions() {
        let split = TrafficSplit {
            shard_by: ShardBy::Ip,
            allocations: BTreeMap::from([("v1".into(), 0.9), ("v2".into(), 0.1)]),
        };
        assert_eq!(
            serde_json::to_value(&split).unwrap(),
            serde_json::json!({"shardBy": "IP", "allocations": {"v1": 0.9, "v2": 0.1}})
        );
        let unknown: TrafficSplit = serde_json::from_str(r#"{"shardBy":"BY_MOON"}"#).unwrap();
        assert_eq!(unknown.shard_by, ShardBy::Other);
        assert_eq!(ShardBy::parse("cookie"), Some(ShardBy::Cookie));
        assert_eq!(ShardBy::parse("unspecified"), None);
    }
}
