//! Fake App Engine Admin API v1: `apps.services.get/list/patch`, `apps.services.versions.get/list`
//! and `apps.operations.get`, as digested in docs/gcp-wire.md §11 from Google's discovery
//! document. cutover moves traffic between versions by `PATCH …/services/{s}?updateMask=split`,
//! and the fake holds it to the API's rules: allocations in (0, 1] summing to 1, at most two
//! decimals for IP splits and three for cookie (or random) ones, versions that exist. App Engine
//! has no etag or precondition on a service: the last writer wins, which is why cutover keeps its
//! record elsewhere.
//!
//! An accepted PATCH answers a pending `google.longrunning.Operation` (`apps/{app}/operations/…`)
//! that is done after the configured polls or fake time (`faults.rs`); the split is live from
//! the moment the write is accepted. An operation fated to fail leaves the split as it was.
//! Each version's `versionUrl` points back at the fake (`/__appengine/…`), answering the
//! version's smoke status.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::Uri,
    response::Response,
};
use serde_json::{Map, Value, json};

use super::faults::OpFate;
use super::split_targets::{FakePlatform, PlatformOp, PlatformState, SplitTarget, TargetKey};
use super::wire::{self, RpcError};
use super::world::{Shared, World, lock};

const SERVICE_TYPE: &str = "type.googleapis.com/google.appengine.v1.Service";
const METADATA_TYPE: &str = "type.googleapis.com/google.appengine.v1.OperationMetadataV1";
const SHARD_BY: &[(&str, i64)] = &[("UNSPECIFIED", 0), ("COOKIE", 1), ("IP", 2), ("RANDOM", 3)];

pub(crate) fn key(app: &str, service: &str) -> TargetKey {
    TargetKey::new(FakePlatform::AppEngine, app, "global", service)
}

fn not_found(app: &str, service: &str) -> RpcError {
    RpcError::not_found(format!("Service not found: apps/{app}/services/{service}"))
}

/// The service's index, once due operations are settled.
fn find(w: &mut World, app: &str, service: &str) -> Result<usize, RpcError> {
    w.settle_platform_ops();
    w.find_target(&key(app, service))
        .ok_or_else(|| not_found(app, service))
}

/// A JSON number for thousandths (`100` → `0.1`, `1000` → `1`).
fn fraction(thousandths: u32) -> Value {
    if thousandths.is_multiple_of(1000) {
        json!(thousandths / 1000)
    } else {
        json!(f64::from(thousandths) / 1000.0)
    }
}

/// `GET v1/apps/{app}/services/{service}` as the API answers it.
pub(crate) fn render_service(t: &SplitTarget) -> Value {
    let PlatformState::AppEngine(ae) = &t.state else {
        return json!({});
    };
    let key = &t.core.key;
    let allocations: Map<String, Value> = ae
        .allocations
        .iter()
        .map(|(v, th)| (v.clone(), fraction(*th)))
        .collect();
    let mut split = json!({"allocations": allocations});
    if ae.shard_by != "UNSPECIFIED" {
        split["shardBy"] = json!(ae.shard_by);
    }
    let mut service = json!({
        "name": format!("apps/{}/services/{}", key.project, key.name),
        "id": key.name,
        "split": split,
    });
    if !ae.labels.is_empty() {
        service["labels"] = json!(ae.labels);
    }
    service
}

fn version_url(base_url: &str, key: &TargetKey, version: &str) -> String {
    format!(
        "{base_url}/__appengine/{}/{}/{version}",
        key.project, key.name
    )
}

fn render_version(w: &World, t: &SplitTarget, version: &str, full: bool) -> Value {
    let key = &t.core.key;
    let Some(m) = t.core.member(version) else {
        return json!({});
    };
    let mut v = json!({
        "name": format!("apps/{}/services/{}/versions/{version}", key.project, key.name),
        "id": version,
        "servingStatus": if m.serving { "SERVING" } else { "STOPPED" },
        "createTime": m.created.to_string(),
        "createdBy": format!("ci@{}.iam.gserviceaccount.com", key.project),
        "versionUrl": version_url(&w.base_url, key, version),
        "env": "standard",
        "runtime": "python312",
    });
    if full {
        v["instanceClass"] = json!("F1");
        v["automaticScaling"] = json!({"maxConcurrentRequests": 10});
        v["inboundServices"] = json!(["INBOUND_SERVICE_WARMUP"]);
    }
    v
}

fn render_op(w: &World, op: &PlatformOp) -> Value {
    let mut metadata = json!({
        "@type": METADATA_TYPE,
        "method": "google.appengine.v1.Services.UpdateService",
        "insertTime": wire::micros(op.created),
        "user": op.user,
        "target": format!("apps/{}/services/{}", op.target.project, op.target.name),
    });
    let mut o = json!({"name": op.name});
    if let Some(done_at) = op.done_at {
        metadata["endTime"] = json!(wire::micros(done_at));
        o["done"] = json!(true);
        match &op.error {
            Some((code, message)) => o["error"] = json!({"code": code, "message": message}),
            None => {
                if let Some(i) = w.find_target(&op.target) {
                    let mut service = render_service(&w.split_targets[i]);
                    if let Value::Object(s) = &mut service {
                        s.insert("@type".into(), json!(SERVICE_TYPE));
                    }
                    o["response"] = service;
                }
            }
        }
    }
    o["metadata"] = metadata;
    o
}

pub(crate) async fn get_service(
    State(shared): State<Shared>,
    Path((app, service)): Path<(String, String)>,
) -> Result<Json<Value>, RpcError> {
    let mut w = lock(&shared);
    let i = find(&mut w, &app, &service)?;
    Ok(Json(render_service(&w.split_targets[i])))
}

/// A page of `items` from `pageToken`, `pageSize` of them (≤ 0: all).
fn page(items: Vec<Value>, pairs: &[(String, String)], key: &str) -> Result<Value, RpcError> {
    let size = wire::int_param(pairs, "pageSize")?;
    let size = if size <= 0 { usize::MAX } else { size as usize };
    let offset = wire::page_offset(wire::param(pairs, "pageToken"))?;
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(offset).take(size).collect();
    let mut o = Map::new();
    if !page.is_empty() {
        o.insert(key.into(), Value::Array(page));
    }
    if offset.saturating_add(size) < total {
        o.insert(
            "nextPageToken".into(),
            json!(wire::page_token(offset + size)),
        );
    }
    Ok(Value::Object(o))
}

pub(crate) async fn list_services(
    State(shared): State<Shared>,
    Path(app): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, RpcError> {
    let pairs = wire::query_pairs(&uri)?;
    let mut w = lock(&shared);
    w.settle_platform_ops();
    let items = w
        .split_targets
        .iter()
        .filter(|t| t.core.key.platform == FakePlatform::AppEngine && t.core.key.project == app)
        .map(render_service)
        .collect();
    page(items, &pairs, "services").map(Json)
}

fn view_is_full(pairs: &[(String, String)]) -> Result<bool, RpcError> {
    match wire::param(pairs, "view") {
        None | Some("") | Some("BASIC") | Some("0") => Ok(false),
        Some("FULL") | Some("1") => Ok(true),
        Some(other) => Err(RpcError::bad_field(
            "view",
            format!(
                "Invalid value at 'view' (type.googleapis.com/google.appengine.v1.VersionView), \"{other}\""
            ),
        )),
    }
}

/// Versions in creation order.
pub(crate) async fn list_versions(
    State(shared): State<Shared>,
    Path((app, service)): Path<(String, String)>,
    uri: Uri,
) -> Result<Json<Value>, RpcError> {
    let pairs = wire::query_pairs(&uri)?;
    let full = view_is_full(&pairs)?;
    let mut w = lock(&shared);
    let i = find(&mut w, &app, &service)?;
    let t = &w.split_targets[i];
    let items = t
        .core
        .members
        .iter()
        .map(|m| render_version(&w, t, &m.name, full))
        .collect();
    page(items, &pairs, "versions").map(Json)
}

pub(crate) async fn get_version(
    State(shared): State<Shared>,
    Path((app, service, version)): Path<(String, String, String)>,
    uri: Uri,
) -> Result<Json<Value>, RpcError> {
    let pairs = wire::query_pairs(&uri)?;
    let full = view_is_full(&pairs)?;
    let mut w = lock(&shared);
    let i = find(&mut w, &app, &service)?;
    let t = &w.split_targets[i];
    if t.core.member(&version).is_none() {
        return Err(RpcError::not_found(format!(
            "Version not found: apps/{app}/services/{service}/versions/{version}"
        )));
    }
    Ok(Json(render_version(&w, t, &version, full)))
}

pub(crate) async fn get_operation(
    State(shared): State<Shared>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<Value>, RpcError> {
    let name = format!("apps/{app}/operations/{id}");
    let mut w = lock(&shared);
    let now = w.clock.now();
    let Some(op) = w.platform_ops.get_mut(&name) else {
        return Err(RpcError::not_found(format!("Operation not found: {name}")));
    };
    op.poll(now);
    let op = op.clone();
    Ok(Json(render_op(&w, &op)))
}

/// The update mask's paths (comma-separated, possibly repeated).
fn mask(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == "updateMask")
        .flat_map(|(_, v)| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The split a PATCH asks for: (allocations in thousandths, shardBy name).
fn parse_split(
    split: Option<&Value>,
    t: &SplitTarget,
) -> Result<(Vec<(String, u32)>, String), RpcError> {
    let Some(Value::Object(split)) = split else {
        return Err(RpcError::bad_field(
            "service.split",
            "The update mask names split, but the request carries no split.",
        ));
    };
    let shard_by = match split.get("shardBy") {
        None | Some(Value::Null) => "UNSPECIFIED",
        Some(v) => wire::decode_enum(v, SHARD_BY)
            .and_then(|n| wire::enum_name(SHARD_BY, n))
            .ok_or_else(|| {
                RpcError::bad_field(
                    "service.split.shard_by",
                    format!("Invalid value at 'service.split.shard_by' (type.googleapis.com/google.appengine.v1.TrafficSplit.ShardBy), {v}"),
                )
            })?,
    };
    // IP splits keep two decimals; cookie and random splits three (docs/gcp-wire.md §11.3).
    let step = if shard_by == "COOKIE" || shard_by == "RANDOM" {
        1
    } else {
        10
    };
    let Some(Value::Object(allocations)) = split.get("allocations") else {
        return Err(RpcError::bad_field(
            "service.split.allocations",
            "Traffic allocations must not be empty.",
        ));
    };
    if allocations.is_empty() {
        return Err(RpcError::bad_field(
            "service.split.allocations",
            "Traffic allocations must not be empty.",
        ));
    }
    let mut out = Vec::new();
    for (version, value) in allocations {
        let field = format!("service.split.allocations[{version}]");
        let x = value.as_f64().ok_or_else(|| {
            RpcError::bad_field(
                &field,
                format!("Invalid value for allocation of version '{version}': {value}"),
            )
        })?;
        if !(x > 0.0 && x <= 1.0) {
            return Err(RpcError::bad_field(
                &field,
                format!("Allocation of version '{version}' must be in (0, 1], got {x}."),
            ));
        }
        let thousandths = (x * 1000.0).round();
        if (x * 1000.0 - thousandths).abs() > 1e-6 || !(thousandths as u32).is_multiple_of(step) {
            let places = if step == 1 { "three" } else { "two" };
            return Err(RpcError::bad_field(
                &field,
                format!(
                    "Allocation of version '{version}' ({x}) has more than {places} decimal places, \
                     the most a {} split supports.",
                    if step == 1 { "cookie or random" } else { "IP" }
                ),
            ));
        }
        if t.core.member(version).is_none() {
            return Err(RpcError::bad_field(
                &field,
                format!("Version '{version}' does not exist."),
            ));
        }
        out.push((version.clone(), thousandths as u32));
    }
    let sum: u32 = out.iter().map(|(_, t)| t).sum();
    if sum != 1000 {
        return Err(RpcError::bad_field(
            "service.split.allocations",
            format!(
                "Traffic allocations must sum to 1, got {}.",
                f64::from(sum) / 1000.0
            ),
        ));
    }
    Ok((out, shard_by.to_string()))
}

pub(crate) async fn patch_service(
    State(shared): State<Shared>,
    Path((app, service)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Result<Json<Value>, RpcError> {
    let pairs = wire::query_pairs(&uri)?;
    let paths = mask(&pairs);
    if paths.is_empty() {
        return Err(RpcError::bad_field(
            "update_mask",
            "Update mask must be set and name at least one field.",
        ));
    }
    wire::bool_param(&pairs, "migrateTraffic")?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| RpcError::invalid_argument(format!("Invalid JSON payload received. {e}")))?;
    let Value::Object(body) = body else {
        return Err(RpcError::invalid_argument(
            "Invalid JSON payload received. Expected an object (a Service).",
        ));
    };
    let mut w = lock(&shared);
    let i = find(&mut w, &app, &service)?;
    let mut new_split = None;
    let mut new_labels = None;
    for path in &paths {
        match path.as_str() {
            "split" | "split.allocations" | "split.shardBy" | "split.shard_by" => {
                new_split = Some(parse_split(body.get("split"), &w.split_targets[i])?);
            }
            "labels" => {
                let labels = match body.get("labels") {
                    None | Some(Value::Null) => Default::default(),
                    Some(Value::Object(o)) => o
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect(),
                    Some(_) => {
                        return Err(RpcError::bad_field(
                            "service.labels",
                            "labels must be a map.",
                        ));
                    }
                };
                new_labels = Some(labels);
            }
            other => {
                return Err(RpcError::bad_field(
                    "update_mask",
                    format!(
                        "Unsupported update mask path '{other}' (this fake updates split and labels)."
                    ),
                ));
            }
        }
    }

    let now = w.clock.now();
    let fate = w.faults.take_op_fate();
    let failed = matches!(fate, OpFate::Fails(..));
    if !failed {
        let PlatformState::AppEngine(ae) = &mut w.split_targets[i].state else {
            return Err(not_found(&app, &service));
        };
        let split_written = new_split.is_some();
        if let Some((allocations, shard_by)) = new_split {
            ae.allocations = allocations;
            ae.shard_by = shard_by;
        }
        if let Some(labels) = new_labels {
            ae.labels = labels;
        }
        if split_written {
            w.record_split(i, false, false);
        }
        w.split_targets[i].core.updated = now;
    }
    let id = w.uuid();
    let op = w.new_platform_op(
        format!("apps/{app}/operations/{id}"),
        key(&app, &service),
        fate,
    );
    let answer = render_op(&w, &op);
    w.platform_ops.insert(op.name.clone(), op);
    Ok(Json(answer))
}

/// `GET /__appengine/{app}/{service}/{version}[/…]`: the version's URL answers its profile's
/// smoke status while the version is serving (a stopped version answers 503).
pub(crate) async fn version_page(
    State(shared): State<Shared>,
    Path((app, service, version)): Path<(String, String, String)>,
    uri: Uri,
) -> Response {
    answer_version(&shared, &app, &service, &version, &uri)
}

pub(crate) async fn version_subpage(
    State(shared): State<Shared>,
    Path((app, service, version, _path)): Path<(String, String, String, String)>,
    uri: Uri,
) -> Response {
    answer_version(&shared, &app, &service, &version, &uri)
}

fn answer_version(shared: &Shared, app: &str, service: &str, version: &str, uri: &Uri) -> Response {
    let w = lock(shared);
    let now = w.clock.now().as_millisecond();
    let status = w.find_target(&key(app, service)).and_then(|i| {
        let m = w.split_targets[i].core.member(version)?;
        Some(if m.serving {
            m.profile.at_ms(now)?.smoke_status
        } else {
            503
        })
    });
    match status {
        None => wire::html_not_found(uri.path()),
        Some(status) => wire::smoke_answer(status),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::{FakeGcp, RevisionProfile};

    const SVC: &str = "/v1/apps/acme-prod/services/web";

    async fn get(fake: &FakeGcp, path: &str) -> (u16, Value) {
        call(fake, "GET", path, None).await
    }

    async fn patch(fake: &FakeGcp, query: &str, body: &Value) -> (u16, Value) {
        call(fake, "PATCH", &format!("{SVC}{query}"), Some(body)).await
    }

    fn split(allocations: Value, shard_by: Option<&str>) -> Value {
        let mut split = json!({"allocations": allocations});
        if let Some(s) = shard_by {
            split["shardBy"] = json!(s);
        }
        json!({"split": split})
    }

    /// GET answers the Service of the discovery document: full name, id, fractions as numbers,
    /// no `shardBy` while it is UNSPECIFIED; versions list both, with status and URL.
    #[tokio::test]
    async fn get_and_list_have_the_api_shape() {
        let (fake, _clock) = fake_with_app_engine().await;
        let (status, service) = get(&fake, SVC).await;
        assert_eq!(status, 200);
        assert_eq!(
            service,
            json!({"name": "apps/acme-prod/services/web", "id": "web", "split": {"allocations": {"v1": 1}}})
        );
        let (status, list) = get(&fake, &format!("{SVC}/versions?view=FULL")).await;
        assert_eq!(status, 200);
        let versions = list["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(
            versions[1]["name"],
            "apps/acme-prod/services/web/versions/v2"
        );
        assert_eq!(versions[1]["servingStatus"], "SERVING");
        assert!(
            versions[1]["versionUrl"]
                .as_str()
                .unwrap()
                .starts_with(&fake.base_url())
        );
        let (status, _) = get(&fake, &format!("{SVC}/versions?view=SIDEWAYS")).await;
        assert_eq!(status, 400);
        let (status, missing) = get(&fake, "/v1/apps/acme-prod/services/nope").await;
        assert_eq!(
            (status, missing["error"]["status"].as_str()),
            (404, Some("NOT_FOUND"))
        );
    }

    /// A PATCH with `updateMask=split` answers a pending operation, the split is live at once,
    /// the operation is done on the next poll, and the history records an unguarded API write.
    #[tokio::test]
    async fn patch_split_then_poll_the_operation() {
        let (fake, _clock) = fake_with_app_engine().await;
        fake.faults().op_polls_before_done(1);
        let (status, op) = patch(
            &fake,
            "?updateMask=split",
            &split(json!({"v1": 0.9, "v2": 0.1}), Some("COOKIE")),
        )
        .await;
        assert_eq!(status, 200, "{op}");
        let name = op["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("apps/acme-prod/operations/"), "{name}");
        assert_eq!(op.get("done"), None);
        assert_eq!(op["metadata"]["@type"], METADATA_TYPE);
        let key = FakeGcp::app_engine(PROJECT, "web");
        assert_eq!(
            fake.split_of(&key),
            [("v1".to_string(), 0.9), ("v2".to_string(), 0.1)]
        );
        assert_eq!(fake.target_json(&key)["split"]["shardBy"], "COOKIE");
        let (_, first) = get(&fake, &format!("/v1/{name}")).await;
        assert_eq!(first.get("done"), None);
        let (_, second) = get(&fake, &format!("/v1/{name}")).await;
        assert_eq!(second["done"], true);
        assert_eq!(second["response"]["@type"], SERVICE_TYPE);
        assert_eq!(second["response"]["split"]["allocations"]["v2"], 0.1);
        let history = fake.split_history(&key);
        assert_eq!(history.len(), 2);
        let last = history.last().unwrap();
        assert!(!last.by_hand && !last.guard_matched);
        assert_eq!(
            last.written,
            [("v1".to_string(), 0.9), ("v2".to_string(), 0.1)]
        );
        // `updateMask=split` replaces the whole split: without shardBy it is unspecified again.
        let (status, _) = patch(
            &fake,
            "?updateMask=split",
            &split(json!({"v1": 0.5, "v2": 0.5}), None),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(fake.target_json(&key)["split"].get("shardBy"), None);
    }

    /// The API's rules: a mask, a split that sums to 1, fractions in (0, 1], two decimals for
    /// IP splits and three for cookie splits, versions that exist. A refused write changes
    /// nothing.
    #[tokio::test]
    async fn invalid_splits_are_refused() {
        let (fake, _clock) = fake_with_app_engine().await;
        let cases = [
            ("", split(json!({"v1": 0.5, "v2": 0.5}), None)),
            (
                "?updateMask=split",
                split(json!({"v1": 0.5, "v2": 0.4}), None),
            ),
            (
                "?updateMask=split",
                split(json!({"v1": 0.875, "v2": 0.125}), Some("IP")),
            ),
            (
                "?updateMask=split",
                split(json!({"v1": 1.5, "v2": -0.5}), None),
            ),
            (
                "?updateMask=split",
                split(json!({"v1": 0.5, "v3": 0.5}), None),
            ),
            ("?updateMask=split", split(json!({}), None)),
            (
                "?updateMask=split",
                split(json!({"v1": 1}), Some("SIDEWAYS")),
            ),
            ("?updateMask=id", split(json!({"v1": 1}), None)),
        ];
        for (query, body) in cases {
            let (status, error) = patch(&fake, query, &body).await;
            assert_eq!(status, 400, "{query} {body}: {error}");
            assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
        }
        let key = FakeGcp::app_engine(PROJECT, "web");
        assert_eq!(fake.split_history(&key).len(), 1);
        let (status, _) = patch(
            &fake,
            "?updateMask=split",
            &split(json!({"v1": 0.875, "v2": 0.125}), Some("COOKIE")),
        )
        .await;
        assert_eq!(status, 200, "three decimals are fine for a cookie split");
    }

    /// A version stopped by hand is listed STOPPED and its URL answers 503; a serving one
    /// answers its profile's smoke status.
    #[tokio::test]
    async fn stopped_versions_and_version_urls() {
        let (fake, _clock) = fake_with_app_engine().await;
        let key = FakeGcp::app_engine(PROJECT, "web");
        fake.set_profile_of(
            &key,
            "v2",
            RevisionProfile::healthy().with_smoke_status(500),
        );
        let (_, v2) = get(&fake, &format!("{SVC}/versions/v2")).await;
        let url = v2["versionUrl"].as_str().unwrap().to_string();
        let smoke =
            |url: String| async move { http().get(url).send().await.unwrap().status().as_u16() };
        assert_eq!(smoke(url.clone()).await, 500);
        assert_eq!(smoke(format!("{url}/healthz")).await, 500);
        fake.set_version_serving(PROJECT, "web", "v2", false);
        let (_, v2) = get(&fake, &format!("{SVC}/versions/v2")).await;
        assert_eq!(v2["servingStatus"], "STOPPED");
        assert_eq!(smoke(url).await, 503);
        // Traffic given to it anyway is flagged in the history.
        let (status, _) = patch(
            &fake,
            "?updateMask=split",
            &split(json!({"v1": 0.9, "v2": 0.1}), None),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            fake.split_history(&key).last().unwrap().routes_unready,
            ["v2"]
        );
    }

    /// An operation fated to fail ends with its error and leaves the split as it was; injected
    /// 503s come in the `google.rpc` shape.
    #[tokio::test]
    async fn failing_operations_and_injected_errors() {
        let (fake, _clock) = fake_with_app_engine().await;
        let key = FakeGcp::app_engine(PROJECT, "web");
        fake.faults()
            .failing_operations(1, 13, "Internal error while updating traffic.");
        let (status, op) = patch(
            &fake,
            "?updateMask=split",
            &split(json!({"v1": 0.5, "v2": 0.5}), None),
        )
        .await;
        assert_eq!(status, 200);
        let (_, polled) = get(&fake, &format!("/v1/{}", op["name"].as_str().unwrap())).await;
        assert_eq!(polled["done"], true);
        assert_eq!(polled["error"]["code"], 13);
        assert_eq!(fake.split_of(&key), [("v1".to_string(), 1.0)]);
        fake.faults().run_errors(1, 503);
        let (status, error) = get(&fake, SVC).await;
        assert_eq!(
            (status, error["error"]["status"].as_str()),
            (503, Some("UNAVAILABLE"))
        );
    }

    /// A person editing the split: allocations become the percents, recorded by hand.
    #[tokio::test]
    async fn a_person_edits_the_split() {
        let (fake, _clock) = fake_with_app_engine().await;
        let key = FakeGcp::app_engine(PROJECT, "web");
        fake.set_split_by_hand(&key, &[("v1", 70), ("v2", 30)]);
        let (_, service) = get(&fake, SVC).await;
        assert_eq!(
            service["split"]["allocations"],
            json!({"v1": 0.7, "v2": 0.3})
        );
        assert!(fake.split_history(&key).last().unwrap().by_hand);
        fake.touch(&key);
        assert_eq!(fake.concurrent_writes_of(&key), 1);
        let (_, service) = get(&fake, SVC).await;
        assert_eq!(service["labels"]["concurrent-writes"], "1");
    }
}
