//! Cloud Run Admin API v2: services get / list / patch and the operations a patch returns.
//!
//! Wire shapes follow `docs/gcp-wire.md` §1: int64 as strings, defaults omitted (a 0% target has no
//! `percent`, a pending operation no `done`), revision names short in `traffic[]` and full in
//! `latestReadyRevision`. Services are kept both typed (for reading) and raw (so a write sends
//! back every field exactly as read, template included: changing the template would create a
//! revision).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::{ApiError, Google, RpcStatus};
use crate::target::ServiceRef;

/// `TrafficTarget` and `TrafficTargetStatus` (the status adds `uri`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TrafficTarget {
    #[serde(rename = "type", deserialize_with = "allocation_type")]
    pub kind: AllocationType,
    pub revision: String,
    pub percent: u8,
    pub tag: String,
    pub uri: String,
}

/// `TrafficTargetAllocationType`; the official SDKs send it as a number, the API as a name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AllocationType {
    #[default]
    Unspecified,
    Latest,
    Revision,
}

impl AllocationType {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocationType::Unspecified => "TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED",
            AllocationType::Latest => "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST",
            AllocationType::Revision => "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
        }
    }
}

fn allocation_type<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AllocationType, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) if s == "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST" => AllocationType::Latest,
        Value::String(s) if s == "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION" => {
            AllocationType::Revision
        }
        Value::Number(n) if n.as_u64() == Some(1) => AllocationType::Latest,
        Value::Number(n) if n.as_u64() == Some(2) => AllocationType::Revision,
        _ => AllocationType::Unspecified,
    })
}

/// `Condition`, reduced to what cutover reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub state: String,
    pub message: String,
}

/// The fields of a `Service` cutover reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Service {
    pub name: String,
    pub etag: String,
    #[serde(deserialize_with = "super::int64")]
    pub generation: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub traffic: Vec<TrafficTarget>,
    pub traffic_statuses: Vec<TrafficTarget>,
    pub latest_ready_revision: String,
    pub latest_created_revision: String,
    pub reconciling: bool,
    pub terminal_condition: Option<Condition>,
    pub uri: String,
}

/// A service as read: typed view plus the exact JSON, for read-modify-write.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub service: Service,
    pub raw: Value,
}

impl Fetched {
    fn from_value(raw: Value, method: &'static str, path: &str) -> Result<Fetched, ApiError> {
        let service = Service::deserialize(&raw).map_err(|source| ApiError::Decode {
            method,
            path: path.to_string(),
            expected: Some("Service"),
            source,
        })?;
        Ok(Fetched { service, raw })
    }
}

/// `google.longrunning.Operation`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Operation {
    pub name: String,
    pub done: bool,
    pub error: Option<RpcStatus>,
    pub response: Option<Value>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ListServicesResponse {
    services: Vec<Value>,
    next_page_token: String,
}

/// The last path segment: revision names come short in traffic and full elsewhere.
pub fn short_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The rpc code inside a failed Operation, as the HTTP status an API call would have used.
fn operation_error(op: &str, e: &RpcStatus) -> ApiError {
    let (http, status) = match e.code {
        3 => (400, "INVALID_ARGUMENT"),
        4 => (504, "DEADLINE_EXCEEDED"),
        5 => (404, "NOT_FOUND"),
        7 => (403, "PERMISSION_DENIED"),
        8 => (429, "RESOURCE_EXHAUSTED"),
        9 => (400, "FAILED_PRECONDITION"),
        10 => (409, "ABORTED"),
        13 => (500, "INTERNAL"),
        14 => (503, "UNAVAILABLE"),
        _ => (500, "UNKNOWN"),
    };
    ApiError::Status {
        method: "operation",
        path: op.to_string(),
        http,
        status: status.to_string(),
        message: e.message.clone(),
    }
}

/// Cloud Run Admin API v2 client.
#[derive(Clone)]
pub struct RunClient {
    google: Google,
    base: String,
}

/// Page size for listing services: large pages keep a tick over many services to few calls.
pub const LIST_PAGE_SIZE: u32 = 500;

impl RunClient {
    /// `base` is `https://run.googleapis.com` or a fake's URL.
    pub fn new(google: Google, base: &str) -> Self {
        RunClient {
            google,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// `GET /v2/projects/{p}/locations/{l}/services/{s}`.
    pub async fn get_service(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> Result<Fetched, ApiError> {
        let url = format!("{}/v2/{}", self.base, target.resource_name());
        let raw: Value = self.google.get(&url, deadline).await?;
        Fetched::from_value(raw, "GET", &url)
    }

    /// Every service in a region, following `nextPageToken`.
    pub async fn list_services(
        &self,
        project: &str,
        region: &str,
        deadline: Instant,
    ) -> Result<Vec<Fetched>, ApiError> {
        let url = format!(
            "{}/v2/projects/{project}/locations/{region}/services",
            self.base
        );
        let mut out = Vec::new();
        let query = [("pageSize", LIST_PAGE_SIZE.to_string())];
        self.google
            .pages(
                &url,
                &query,
                |page: ListServicesResponse| {
                    for raw in page.services {
                        out.push(Fetched::from_value(raw, "GET", &url)?);
                    }
                    Ok(page.next_page_token)
                },
                deadline,
            )
            .await?;
        Ok(out)
    }

    /// `PATCH` the whole service (as read, with changes) guarded by the `etag` it carries.
    /// Returns the operation; see [`RunClient::wait`].
    pub async fn patch_service(
        &self,
        target: &ServiceRef,
        body: &Value,
        deadline: Instant,
    ) -> Result<Operation, ApiError> {
        let url = format!("{}/v2/{}", self.base, target.resource_name());
        self.google
            .call("PATCH", &url, |c| c.patch(&url).json(body), deadline)
            .await
    }

    /// `GET /v2/{operation name}`.
    pub async fn get_operation(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Operation, ApiError> {
        let url = format!("{}/v2/{}", self.base, name);
        self.google.get(&url, deadline).await
    }

    /// `POST /v2/{operation name}:wait`: the API answers when the operation is done or its
    /// `timeout` has passed (best effort: it may answer earlier, still running). The timeout
    /// leaves the attempt's own HTTP timeout and the deadline room to read the answer.
    pub async fn wait_operation(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Operation, ApiError> {
        let url = format!("{}/v2/{}:wait", self.base, name);
        let left = deadline.saturating_duration_since(Instant::now());
        let body = serde_json::json!({ "timeout": wait_timeout(left) });
        self.google
            .call("POST", &url, |c| c.post(&url).json(&body), deadline)
            .await
    }

    /// Waits for `op` until it is done (`operations:wait`, asked at once: it answers as soon as
    /// the operation is done, with no polling timer between) and returns the service it produced.
    pub async fn wait(&self, op: Operation, deadline: Instant) -> Result<Fetched, ApiError> {
        let name = op.name.clone();
        let response = wait_done(
            op,
            Duration::ZERO,
            |name| async move { self.wait_operation(&name, deadline).await },
            deadline,
        )
        .await?;
        Fetched::from_value(response.unwrap_or(Value::Null), "GET", &name)
    }
}

/// The `timeout` asked of `operations:wait` with `left` until the deadline: a second short of
/// it, at most 10 s (under [`super::ATTEMPT_TIMEOUT`]), as a proto3 JSON `Duration`.
fn wait_timeout(left: Duration) -> String {
    let t = left
        .saturating_sub(Duration::from_secs(1))
        .min(Duration::from_secs(10));
    format!("{}.{:03}s", t.as_secs(), t.subsec_millis())
}

/// Polls a `google.longrunning.Operation` (Run v2, App Engine v1) with `fetch` until it is
/// done, the first read `first_pause` after the write (see [`super::poll`]); its
/// `response`, if it has one, or its error.
pub(crate) async fn wait_done<Fut>(
    op: Operation,
    first_pause: Duration,
    fetch: impl Fn(String) -> Fut,
    deadline: Instant,
) -> Result<Option<Value>, ApiError>
where
    Fut: std::future::Future<Output = Result<Operation, ApiError>>,
{
    super::poll(
        first_pause,
        op,
        |op| {
            op.done.then(|| match &op.error {
                Some(e) => Err(operation_error(&op.name, e)),
                None => Ok(op.response.take()),
            })
        },
        |op| &op.name,
        fetch,
        deadline,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write is confirmed by asking the API to wait for its operation, at once and as often as
    /// the API answers early: no `GET` on a timer, so the confirmation comes as soon as the
    /// operation is done (an alert's rollback was a 100 ms pause slower).
    #[tokio::test]
    async fn a_write_is_confirmed_by_waiting_for_its_operation_at_once() {
        use cutover_fakes::testkit::{PROJECT, REGION, fake_with_candidate};
        let (fake, _clock) = fake_with_candidate().await;
        fake.faults().op_polls_before_done(2).op_settle_after(None);
        let google = Google::new(reqwest::Client::new(), super::super::TokenSource::None);
        let run = RunClient::new(google, &fake.base_url());
        let target = ServiceRef::checked(PROJECT, REGION, "api").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let read = run.get_service(&target, deadline).await.unwrap();
        let op = run
            .patch_service(&target, &read.raw, deadline)
            .await
            .unwrap();
        let before = fake.requests().len();
        let done = run.wait(op, deadline).await.unwrap();
        assert_eq!(done.service.generation, read.service.generation + 1);
        let after: Vec<_> = fake.requests()[before..]
            .iter()
            .map(|r| (r.method.clone(), r.path.ends_with(":wait"), r.body.clone()))
            .collect();
        assert_eq!(after.len(), 3, "two early answers, then done: {after:?}");
        for (method, is_wait, body) in after {
            assert_eq!((method.as_str(), is_wait), ("POST", true));
            let timeout = body.unwrap()["timeout"].as_str().unwrap().to_string();
            assert!(timeout.ends_with('s') && timeout != "0.000s", "{timeout}");
        }
    }

    #[test]
    fn the_wait_asks_a_second_short_of_the_deadline_and_at_most_10_s() {
        assert_eq!(wait_timeout(Duration::from_millis(4_250)), "3.250s");
        assert_eq!(wait_timeout(Duration::from_secs(120)), "10.000s");
        assert_eq!(wait_timeout(Duration::from_millis(300)), "0.000s");
    }

    #[test]
    fn decodes_a_captured_service() {
        let raw: Value =
            serde_json::from_slice(cutover_fakes::fixture!("payloads/run-service-1.json")).unwrap();
        let f = Fetched::from_value(raw, "GET", "/").unwrap();
        let s = &f.service;
        assert_eq!(s.generation, 2);
        assert!(
            s.etag.starts_with('"') && s.etag.ends_with('"'),
            "etag keeps its quotes"
        );
        assert_eq!(
            short_name(&s.latest_ready_revision),
            "ejectrequest-00002-ruh"
        );
        assert_eq!(s.traffic.len(), 1);
        assert_eq!(s.traffic[0].kind, AllocationType::Latest);
        assert_eq!(s.traffic[0].percent, 100);
        assert!(!s.reconciling);
        assert_eq!(
            s.terminal_condition.as_ref().unwrap().state,
            "CONDITION_SUCCEEDED"
        );
    }

    #[test]
    fn omitted_percent_is_zero_and_numeric_enums_decode() {
        let t: Vec<TrafficTarget> = serde_json::from_str(
            r#"[{"type":"TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION","revision":"a","tag":"candidate"},
                {"type":2,"revision":"b","percent":100},{"type":1,"percent":0},{"type":"SOMETHING_NEW"}]"#,
        )
        .unwrap();
        assert_eq!(t[0].percent, 0);
        assert_eq!(t[1].kind, AllocationType::Revision);
        assert_eq!(t[2].kind, AllocationType::Latest);
        assert_eq!(t[3].kind, AllocationType::Unspecified);
    }

    #[test]
    fn pending_operation_has_no_done_key() {
        let op: Operation = serde_json::from_str(
            r#"{"name":"projects/p/locations/l/operations/1","metadata":{"@type":"type.googleapis.com/google.cloud.run.v2.Service"}}"#,
        )
        .unwrap();
        assert!(!op.done);
        let op: Operation = serde_json::from_str(
            r#"{"name":"n","done":true,"error":{"code":10,"message":"concurrent update"}}"#,
        )
        .unwrap();
        assert_eq!(
            operation_error(&op.name, op.error.as_ref().unwrap()).kind(),
            crate::failure::ErrorKind::Conflict
        );
    }
}
