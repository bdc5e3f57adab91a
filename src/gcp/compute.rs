//! Compute Engine API v1: global URL maps (get, patch guarded by `fingerprint`), the global
//! operations a patch returns, and backend services with their health.
//!
//! Wire facts (Google's discovery document `compute.v1.json`): a `UrlMap` has a `fingerprint`
//! that an update must carry, else it fails with HTTP 412 `conditionNotMet`; routes split
//! traffic in `routeAction.weightedBackendServices[]` (`backendService` URL, `weight` 0..=1000,
//! the share being weight / sum of the route's weights) in the map's `defaultRouteAction`, a
//! path matcher's `defaultRouteAction` or a route rule's `routeAction`; uint64 ids come as
//! strings; `Operation.status` is `PENDING`, `RUNNING` or `DONE`, a failed one carrying
//! `error.errors[]` and `httpErrorStatusCode`; `backendServices.getHealth` takes `{group}` and
//! answers `healthStatus[].healthState` (`HEALTHY`, `UNHEALTHY`). Maps are kept typed (for
//! reading) and raw (a write sends back every field as read, only weights changed). Every call
//! waits for the project's Compute bucket, reads (`GET`) or writes (the rest, `getHealth`
//! included) ([`super::quota`]); Compute's `403 rateLimitExceeded` is read as
//! `RESOURCE_EXHAUSTED` and holds the bucket like a `429`.

use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::{ApiError, Google};
use crate::target::ServiceRef;

/// `WeightedBackendService`, reduced to what cutover reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WeightedBackendService {
    /// The backend service's URL (full or partial).
    pub backend_service: String,
    pub weight: u32,
}

/// `HttpRouteAction`, reduced to its weighted backends.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteAction {
    pub weighted_backend_services: Vec<WeightedBackendService>,
}

/// `HttpRouteRule`, reduced.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteRule {
    pub priority: i64,
    pub route_action: Option<RouteAction>,
}

/// `PathMatcher`, reduced.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PathMatcher {
    pub name: String,
    pub default_route_action: Option<RouteAction>,
    pub route_rules: Vec<RouteRule>,
}

/// The fields of a `UrlMap` cutover reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UrlMap {
    pub name: String,
    pub fingerprint: String,
    pub default_route_action: Option<RouteAction>,
    pub path_matchers: Vec<PathMatcher>,
}

/// A URL map as read: typed view plus the exact JSON, for read-modify-write.
#[derive(Clone, Debug)]
pub struct FetchedUrlMap {
    pub map: UrlMap,
    pub raw: Value,
}

/// `Backend`, reduced to its group (an instance group or a network endpoint group URL).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Backend {
    pub group: String,
}

/// The fields of a `BackendService` cutover reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendService {
    pub name: String,
    pub backends: Vec<Backend>,
}

/// `HealthStatus`, reduced.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HealthStatus {
    /// The instance URL (instance groups); absent for network endpoints.
    pub instance: String,
    pub ip_address: String,
    pub port: Option<u32>,
    pub health_state: String,
}

/// `BackendServiceGroupHealth`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GroupHealth {
    pub health_status: Vec<HealthStatus>,
}

impl GroupHealth {
    /// Whether the group has members and every one of them is `HEALTHY`.
    pub fn all_healthy(&self) -> bool {
        !self.health_status.is_empty()
            && self
                .health_status
                .iter()
                .all(|h| h.health_state == "HEALTHY")
    }
}

/// One entry of `Operation.error.errors[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct OperationErrorItem {
    pub code: String,
    pub message: String,
}

/// `Operation.error`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct OperationError {
    pub errors: Vec<OperationErrorItem>,
}

/// A Compute `Operation` (global).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Operation {
    pub name: String,
    /// `PENDING`, `RUNNING` or `DONE`.
    pub status: String,
    pub error: Option<OperationError>,
    pub http_error_status_code: Option<u16>,
    pub http_error_message: String,
    pub target_link: String,
}

impl Operation {
    /// The failure a done operation reports, as the HTTP answer the call would have been: its
    /// `httpErrorStatusCode` (412 a stale fingerprint, 5xx worth retrying), else 500 (a failed
    /// write of unknown cause is read again and decided again, never assumed applied).
    fn failure(&self) -> Option<ApiError> {
        let errors = self.error.as_ref().map(|e| e.errors.as_slice())?;
        let first = errors.first().cloned().unwrap_or_default();
        Some(ApiError::Status {
            method: "operation",
            path: self.name.clone(),
            http: self.http_error_status_code.unwrap_or(500),
            status: first.code,
            message: if first.message.is_empty() {
                self.http_error_message.clone()
            } else {
                first.message
            },
        })
    }
}

/// The last segment of a resource URL: backend services are named by URL in routes.
pub fn last_segment(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

/// Compute Engine API v1 client.
#[derive(Clone)]
pub struct ComputeClient {
    google: Google,
    base: String,
}

impl ComputeClient {
    /// `base` is `https://compute.googleapis.com` or a fake's URL.
    pub fn new(google: Google, base: &str) -> Self {
        ComputeClient {
            google,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    fn global(&self, project: &str) -> String {
        format!("{}/compute/v1/projects/{project}/global", self.base)
    }

    /// `GET compute/v1/projects/{p}/global/urlMaps/{map}`.
    pub async fn get_url_map(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> Result<FetchedUrlMap, ApiError> {
        let url = format!("{}/compute/v1/{}", self.base, target.resource_name());
        let raw: Value = self.google.get(&url, deadline).await?;
        let map = UrlMap::deserialize(&raw).map_err(|source| ApiError::Decode {
            method: "GET",
            path: url.clone(),
            expected: Some("UrlMap"),
            source,
        })?;
        Ok(FetchedUrlMap { map, raw })
    }

    /// `PATCH` the URL map with `body` (the map as read, weights changed, with the fingerprint
    /// of the read). Returns the operation; see [`ComputeClient::wait`].
    pub async fn patch_url_map(
        &self,
        target: &ServiceRef,
        body: &Value,
        deadline: Instant,
    ) -> Result<Operation, ApiError> {
        let url = format!("{}/compute/v1/{}", self.base, target.resource_name());
        self.google
            .call("PATCH", &url, |c| c.patch(&url).json(body), deadline)
            .await
    }

    /// `GET compute/v1/projects/{p}/global/operations/{op}`.
    pub async fn get_operation(
        &self,
        project: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<Operation, ApiError> {
        let url = format!("{}/operations/{name}", self.global(project));
        self.google.get(&url, deadline).await
    }

    /// Polls the global operation `op` of `project` until it is `DONE`.
    pub async fn wait(
        &self,
        project: &str,
        op: Operation,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        super::poll(
            super::POLL_PAUSE,
            op,
            |op| (op.status == "DONE").then(|| op.failure().map_or(Ok(()), Err)),
            |op| &op.name,
            |name| async move { self.get_operation(project, &name, deadline).await },
            deadline,
        )
        .await
    }

    /// `GET compute/v1/projects/{p}/global/backendServices/{name}`.
    pub async fn get_backend_service(
        &self,
        project: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<BackendService, ApiError> {
        let url = format!("{}/backendServices/{name}", self.global(project));
        self.google.get(&url, deadline).await
    }

    /// `POST compute/v1/projects/{p}/global/backendServices/{name}/getHealth` for one of its
    /// groups.
    pub async fn get_health(
        &self,
        project: &str,
        name: &str,
        group: &str,
        deadline: Instant,
    ) -> Result<GroupHealth, ApiError> {
        let url = format!("{}/backendServices/{name}/getHealth", self.global(project));
        let body = serde_json::json!({ "group": group });
        self.google
            .call("POST", &url, |c| c.post(&url).json(&body), deadline)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::ErrorKind;

    #[test]
    fn a_url_map_decodes_with_its_weighted_routes() {
        let m: UrlMap = serde_json::from_value(serde_json::json!({
            "kind": "compute#urlMap",
            "id": "4379214712398734",
            "name": "web-map",
            "fingerprint": "yRcv3HE4Q9w=",
            "selfLink": "https://www.googleapis.com/compute/v1/projects/p/global/urlMaps/web-map",
            "defaultRouteAction": {"weightedBackendServices": [
                {"backendService": "https://www.googleapis.com/compute/v1/projects/p/global/backendServices/blue", "weight": 1000},
                {"backendService": "projects/p/global/backendServices/green"}
            ]},
            "hostRules": [{"hosts": ["*"], "pathMatcher": "api"}],
            "pathMatchers": [{"name": "api", "defaultService": "x",
                "routeRules": [{"priority": 10, "routeAction": {"weightedBackendServices": []}}]}]
        }))
        .unwrap();
        let w = &m
            .default_route_action
            .as_ref()
            .unwrap()
            .weighted_backend_services;
        assert_eq!(last_segment(&w[0].backend_service), "blue");
        assert_eq!(
            (w[0].weight, w[1].weight),
            (1000, 0),
            "an omitted weight is 0"
        );
        assert_eq!(m.path_matchers[0].route_rules[0].priority, 10);
    }

    #[test]
    fn health_needs_every_member_healthy() {
        let h: GroupHealth = serde_json::from_value(serde_json::json!({
            "kind": "compute#backendServiceGroupHealth",
            "healthStatus": [
                {"instance": "https://www.googleapis.com/compute/v1/projects/p/zones/z/instances/a", "ipAddress": "10.0.0.2", "port": 80, "healthState": "HEALTHY"},
                {"ipAddress": "10.4.0.7", "port": 8080, "healthState": "UNHEALTHY"}
            ]
        }))
        .unwrap();
        assert!(!h.all_healthy());
        let empty: GroupHealth =
            serde_json::from_str(r#"{"kind":"compute#backendServiceGroupHealth"}"#).unwrap();
        assert!(
            !empty.all_healthy(),
            "a group with no members serves nothing"
        );
    }

    #[test]
    fn a_failed_operation_keeps_its_http_status() {
        let op: Operation = serde_json::from_value(serde_json::json!({
            "kind": "compute#operation", "name": "operation-1", "status": "DONE",
            "httpErrorStatusCode": 412, "httpErrorMessage": "PRECONDITION FAILED",
            "error": {"errors": [{"code": "CONDITION_NOT_MET", "message": "Invalid fingerprint."}]}
        }))
        .unwrap();
        let e = op.failure().unwrap();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        let ok: Operation =
            serde_json::from_str(r#"{"name":"operation-2","status":"DONE"}"#).unwrap();
        assert!(ok.failure().is_none());
    }

    #[test]
    fn a_stale_fingerprint_is_a_conflict() {
        let body = br#"{"error":{"code":412,"message":"Invalid fingerprint.","errors":[{"message":"Invalid fingerprint.","domain":"global","reason":"conditionNotMet","location":"If-Match","locationType":"header"}]}}"#;
        let e = super::super::status_error("PATCH", "/compute/v1/x", 412, body);
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    }
}
