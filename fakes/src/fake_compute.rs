//! Fake Compute Engine API v1, the parts a global external Application Load Balancer's weighted
//! split needs (docs/gcp-wire.md §12): `urlMaps.get`, `urlMaps.patch` (JSON merge patch) and
//! `urlMaps.update` (PUT), `backendServices.get`, `backendServices.getHealth`, and
//! `globalOperations.get`/`wait`.
//!
//! The URL map's `fingerprint` is its guard: a write must carry the current one or it fails with
//! 412 `conditionNotMet` (Google's field documentation), which is also what a concurrent writer
//! (`faults.rs` conflicts) causes. Writes are validated as the API documents them: weights in
//! `0..=1000`, at least one non-zero weight per route, backend services that exist,
//! `defaultService` and weighted backends not both set. An accepted write answers a global
//! `compute#operation` that is `DONE` after the configured polls or fake time; the split is live
//! from acceptance, and an operation fated to fail leaves the map as it was. Errors come in
//! Compute's own shape (`errors[].reason`, no `status`), see `wire::compute_error`.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::Uri,
    response::{IntoResponse, Response},
};
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::faults::OpFate;
use super::split_targets::{
    BACKEND_ZONE, Backend, FakePlatform, PlatformOp, PlatformState, SplitTarget, TargetKey,
    backend_url, fingerprint, last_segment,
};
use super::wire::{self, ComputeError, compute_error};
use super::world::{Shared, World, lock};

/// Fields the API sets itself: ignored in a write's body.
const OUTPUT_ONLY: &[&str] = &[
    "kind",
    "id",
    "creationTimestamp",
    "selfLink",
    "fingerprint",
    "name",
];

pub(crate) fn key(project: &str, map: &str) -> TargetKey {
    TargetKey::new(FakePlatform::LoadBalancer, project, "global", map)
}

fn v1(base_url: &str, project: &str) -> String {
    format!("{base_url}/compute/v1/projects/{project}")
}

fn not_found(what: &str) -> ComputeError {
    ComputeError::new(
        404,
        "notFound",
        format!("The resource '{what}' was not found"),
    )
}

fn invalid(message: &str) -> ComputeError {
    ComputeError::new(400, "invalid", message)
}

/// Compute timestamps: RFC 3339 with milliseconds.
fn stamp(t: Timestamp) -> String {
    format!("{t:.3}")
}

pub(crate) fn render_url_map(base_url: &str, t: &SplitTarget) -> Value {
    let PlatformState::UrlMap(m) = &t.state else {
        return json!({});
    };
    let key = &t.core.key;
    let mut o = Map::new();
    o.insert("kind".into(), json!("compute#urlMap"));
    o.insert("id".into(), json!(t.core.id.to_string()));
    o.insert("creationTimestamp".into(), json!(stamp(t.core.created)));
    o.insert("name".into(), json!(key.name));
    o.insert(
        "selfLink".into(),
        json!(format!(
            "{}/global/urlMaps/{}",
            v1(base_url, &key.project),
            key.name
        )),
    );
    for (k, v) in &m.config {
        o.insert(k.clone(), v.clone());
    }
    o.insert("fingerprint".into(), json!(m.fingerprint));
    Value::Object(o)
}

fn find_map(w: &mut World, project: &str, map: &str) -> Result<usize, ComputeError> {
    w.settle_platform_ops();
    w.find_target(&key(project, map))
        .ok_or_else(|| not_found(&format!("projects/{project}/global/urlMaps/{map}")))
}

pub(crate) async fn get_url_map(
    State(shared): State<Shared>,
    Path((project, map)): Path<(String, String)>,
) -> Response {
    let mut w = lock(&shared);
    match find_map(&mut w, &project, &map) {
        Ok(i) => Json(render_url_map(&w.base_url, &w.split_targets[i])).into_response(),
        Err(e) => e.into_response(),
    }
}

/// RFC 7396 JSON merge patch of `patch` into `target`.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Checks one route holder at `at` (`resource`, `resource.pathMatchers[i]` with keys
/// `defaultRouteAction`/`defaultService`; `….routeRules[k]` with `routeAction`/`service`),
/// turning backend references into full URLs. A route rule may route neither way (a redirect).
fn check_route(
    w: &World,
    project: &str,
    holder: &mut Value,
    at: &str,
    (action, service_key): (&str, &str),
) -> Result<(), ComputeError> {
    let has_service = holder.get(service_key).is_some_and(|s| !s.is_null());
    let weighted = holder
        .pointer_mut(&format!("/{action}/weightedBackendServices"))
        .and_then(Value::as_array_mut);
    let Some(list) = weighted.filter(|l| !l.is_empty()) else {
        if has_service {
            let service = holder[service_key].as_str().unwrap_or_default().to_string();
            let name = last_segment(&service).to_string();
            if w.find_backend(project, &name).is_none() {
                return Err(not_found(&format!(
                    "projects/{project}/global/backendServices/{name}"
                )));
            }
            holder[service_key] = json!(backend_url(&w.base_url, project, &name));
            return Ok(());
        }
        if service_key == "service" {
            return Ok(());
        }
        return Err(invalid(&format!(
            "Invalid value for field '{at}': either {service_key} or \
             {action}.weightedBackendServices must be set."
        )));
    };
    if has_service {
        return Err(invalid(&format!(
            "Invalid value for field '{at}.{service_key}': {service_key} must not be set when \
             {action}.weightedBackendServices is set."
        )));
    }
    let mut nonzero = false;
    for (j, entry) in list.iter_mut().enumerate() {
        let field = format!("{at}.{action}.weightedBackendServices[{j}]");
        let weight = match entry.get("weight") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_u64().filter(|w| *w <= 1000).ok_or_else(|| {
                invalid(&format!(
                    "Invalid value for field '{field}.weight': '{v}'. The weight must be an \
                     integer from 0 to 1000."
                ))
            })?,
        };
        nonzero |= weight > 0;
        let service = entry
            .get("backendService")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                invalid(&format!(
                    "Invalid value for field '{field}.backendService': ''."
                ))
            })?
            .to_string();
        let name = last_segment(&service).to_string();
        if w.find_backend(project, &name).is_none() {
            return Err(not_found(&format!(
                "projects/{project}/global/backendServices/{name}"
            )));
        }
        entry["backendService"] = json!(backend_url(&w.base_url, project, &name));
        entry["weight"] = json!(weight);
    }
    if !nonzero {
        return Err(invalid(&format!(
            "Invalid value for field '{at}.{action}.weightedBackendServices': at least one \
             weighted backend service must have a non-zero weight."
        )));
    }
    Ok(())
}

/// The configuration a write leaves, validated.
fn checked_config(
    w: &World,
    project: &str,
    mut config: Value,
) -> Result<Map<String, Value>, ComputeError> {
    const DEFAULT: (&str, &str) = ("defaultRouteAction", "defaultService");
    check_route(w, project, &mut config, "resource", DEFAULT)?;
    if let Some(Value::Array(matchers)) = config.get_mut("pathMatchers") {
        for (j, matcher) in matchers.iter_mut().enumerate() {
            let at = format!("resource.pathMatchers[{j}]");
            check_route(w, project, matcher, &at, DEFAULT)?;
            if let Some(Value::Array(rules)) = matcher.get_mut("routeRules") {
                for (k, rule) in rules.iter_mut().enumerate() {
                    let at = format!("{at}.routeRules[{k}]");
                    check_route(w, project, rule, &at, ("routeAction", "service"))?;
                }
            }
        }
    }
    match config {
        Value::Object(o) => Ok(o),
        _ => Err(invalid(
            "Invalid value for field 'resource': not an object.",
        )),
    }
}

pub(crate) async fn patch_url_map(
    State(shared): State<Shared>,
    Path((project, map)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Response {
    write_url_map(&shared, &project, &map, &uri, &body, true)
}

pub(crate) async fn update_url_map(
    State(shared): State<Shared>,
    Path((project, map)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Response {
    write_url_map(&shared, &project, &map, &uri, &body, false)
}

/// The `requestId` query parameter: a UUID other than the zero one, if sent.
fn request_id(uri: &Uri) -> Result<Option<String>, ComputeError> {
    let pairs = wire::query_pairs(uri)
        .map_err(|_| ComputeError::new(400, "invalid", "Invalid query string."))?;
    let Some(id) = wire::param(&pairs, "requestId").filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    let hex = id.replace('-', "");
    let uuid = id.len() == 36
        && hex.len() == 32
        && hex.chars().all(|c| c.is_ascii_hexdigit())
        && hex.chars().any(|c| c != '0');
    if !uuid {
        return Err(invalid(&format!(
            "Invalid value for field 'requestId': '{id}'. The request ID must be a valid UUID \
             other than the zero UUID."
        )));
    }
    Ok(Some(id.to_ascii_lowercase()))
}

fn write_url_map(
    shared: &Shared,
    project: &str,
    map: &str,
    uri: &Uri,
    body: &[u8],
    merge_patch: bool,
) -> Response {
    let request_id = match request_id(uri) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return compute_error(
            400,
            "parseError",
            "This API does not support parsing form-encoded input.",
        );
    };
    let mut w = lock(shared);
    if let Some(id) = &request_id {
        // A retry of a write that was already accepted: its operation, nothing written again.
        let earlier = w
            .platform_ops
            .values()
            .find(|op| op.target.project == project && op.request_id.as_ref() == Some(id))
            .cloned();
        if let Some(op) = earlier {
            return Json(render_op(&w, &op, false)).into_response();
        }
    }
    let i = match find_map(&mut w, project, map) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    if let Some(name) = body.get("name").and_then(Value::as_str)
        && name != map
    {
        return invalid(&format!(
            "Invalid value for field 'resource.name': '{name}'. The name of a URL map cannot change."
        ))
        .into_response();
    }
    if w.faults.take_conflict().is_some() {
        // Someone else wrote the map between this client's read and its write.
        w.touch_target_at(i);
    }
    let PlatformState::UrlMap(current) = &w.split_targets[i].state else {
        return not_found(&format!("projects/{project}/global/urlMaps/{map}")).into_response();
    };
    let sent = body
        .get("fingerprint")
        .and_then(Value::as_str)
        .unwrap_or("");
    if sent != current.fingerprint {
        return compute_error(
            412,
            "conditionNotMet",
            "Invalid fingerprint: the URL map was modified after it was read.",
        );
    }
    let mut fields: Map<String, Value> = body
        .into_iter()
        .filter(|(k, _)| !OUTPUT_ONLY.contains(&k.as_str()))
        .collect();
    let config = if merge_patch {
        let mut merged = Value::Object(current.config.clone());
        merge(&mut merged, &Value::Object(std::mem::take(&mut fields)));
        merged
    } else {
        Value::Object(fields)
    };
    let config = match checked_config(&w, project, config) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };

    let now = w.clock.now();
    let fate = w.faults.take_op_fate();
    if !matches!(fate, OpFate::Fails(..)) {
        let fresh = fingerprint(&mut w.rng);
        let members: Vec<String> = super::split_targets::url_map_weights(&config)
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        if let PlatformState::UrlMap(m) = &mut w.split_targets[i].state {
            m.config = config;
            m.fingerprint = fresh;
        }
        for b in members {
            w.ensure_member(i, &b);
        }
        w.record_split(i, false, true);
    }
    let name = format!(
        "operation-{}-{:013x}-{:08x}-{:08x}",
        now.as_millisecond(),
        w.rng.u64(..) & 0x1f_ffff_ffff_ffff,
        w.rng.u32(..),
        w.rng.u32(..)
    );
    let mut op = w.new_platform_op(
        format!("projects/{project}/global/operations/{name}"),
        key(project, map),
        fate,
    );
    op.kind = if merge_patch { "patch" } else { "update" };
    op.request_id = request_id;
    let answer = render_op(&w, &op, true);
    w.platform_ops.insert(op.name.clone(), op);
    Json(answer).into_response()
}

fn render_op(w: &World, op: &PlatformOp, first: bool) -> Value {
    let project = &op.target.project;
    let short = last_segment(&op.name);
    let target_id = w
        .find_target(&op.target)
        .map(|i| w.split_targets[i].core.id.to_string())
        .unwrap_or_default();
    let mut o = json!({
        "kind": "compute#operation",
        "id": op.id.to_string(),
        "name": short,
        "operationType": op.kind,
        "targetLink": format!("{}/global/urlMaps/{}", v1(&w.base_url, project), op.target.name),
        "targetId": target_id,
        "user": op.user,
        "insertTime": stamp(op.created),
        "selfLink": format!("{}/global/operations/{short}", v1(&w.base_url, project)),
    });
    match op.done_at {
        None => {
            o["status"] = json!(if first { "PENDING" } else { "RUNNING" });
            if !first {
                o["startTime"] = json!(stamp(op.created));
            }
        }
        Some(done) => {
            o["status"] = json!("DONE");
            o["progress"] = json!(100);
            o["startTime"] = json!(stamp(op.created));
            o["endTime"] = json!(stamp(done));
            if let Some((_, message)) = &op.error {
                o["error"] = json!({"errors": [{"code": "INTERNAL_ERROR", "message": message}]});
                o["httpErrorStatusCode"] = json!(500);
                o["httpErrorMessage"] = json!("INTERNAL SERVER ERROR");
            }
        }
    }
    o
}

fn poll(shared: &Shared, project: &str, operation: &str) -> Response {
    let name = format!("projects/{project}/global/operations/{operation}");
    let mut w = lock(shared);
    let now = w.clock.now();
    let Some(op) = w.platform_ops.get_mut(&name) else {
        return not_found(&name).into_response();
    };
    op.poll(now);
    let op = op.clone();
    Json(render_op(&w, &op, false)).into_response()
}

pub(crate) async fn get_operation(
    State(shared): State<Shared>,
    Path((project, operation)): Path<(String, String)>,
) -> Response {
    poll(&shared, &project, &operation)
}

/// `POST …/global/operations/{op}/wait`: answered like a poll (the fake never blocks).
pub(crate) async fn wait_operation(
    State(shared): State<Shared>,
    Path((project, operation)): Path<(String, String)>,
) -> Response {
    poll(&shared, &project, &operation)
}

fn group_url(base_url: &str, b: &Backend) -> String {
    format!(
        "{}/zones/{BACKEND_ZONE}/instanceGroups/{}",
        v1(base_url, &b.project),
        b.group_name()
    )
}

fn find_backend(w: &World, project: &str, backend: &str) -> Result<usize, ComputeError> {
    w.find_backend(project, backend).ok_or_else(|| {
        not_found(&format!(
            "projects/{project}/global/backendServices/{backend}"
        ))
    })
}

pub(crate) async fn get_backend_service(
    State(shared): State<Shared>,
    Path((project, backend)): Path<(String, String)>,
) -> Response {
    let w = lock(&shared);
    let b = match find_backend(&w, &project, &backend) {
        Ok(b) => &w.backends[b],
        Err(e) => return e.into_response(),
    };
    let base = v1(&w.base_url, &project);
    Json(json!({
        "kind": "compute#backendService",
        "id": b.id.to_string(),
        "creationTimestamp": stamp(b.created),
        "name": b.name,
        "selfLink": backend_url(&w.base_url, &project, &b.name),
        "backends": [{
            "group": group_url(&w.base_url, b),
            "balancingMode": "UTILIZATION",
            "maxUtilization": 0.8,
            "capacityScaler": 1,
        }],
        "healthChecks": [format!("{base}/global/healthChecks/{}-hc", b.name)],
        "timeoutSec": 30,
        "port": 80,
        "protocol": "HTTP",
        "portName": "http",
        "loadBalancingScheme": "EXTERNAL_MANAGED",
        "sessionAffinity": "NONE",
        "connectionDraining": {"drainingTimeoutSec": 300},
        "fingerprint": b.fingerprint,
    }))
    .into_response()
}

/// `POST …/backendServices/{b}/getHealth` with `{"group": URL}`: one entry per instance of the
/// group (two, named after the group's generation). An unhealthy backend has its first instance
/// `UNHEALTHY`, the other `HEALTHY`.
pub(crate) async fn get_health(
    State(shared): State<Shared>,
    Path((project, backend)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let w = lock(&shared);
    let b = match find_backend(&w, &project, &backend) {
        Ok(b) => &w.backends[b],
        Err(e) => return e.into_response(),
    };
    let group = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("group").and_then(Value::as_str).map(str::to_string));
    let Some(group) = group else {
        return compute_error(
            400,
            "required",
            "Required field 'resource.group' not specified",
        );
    };
    let wanted = format!("zones/{BACKEND_ZONE}/instanceGroups/{}", b.group_name());
    if !group.ends_with(&wanted) {
        return invalid(&format!(
            "Invalid value for field 'resource.group': '{group}'. The group is not a backend of \
             backend service '{backend}'."
        ))
        .into_response();
    }
    let base = v1(&w.base_url, &project);
    let status: Vec<Value> = (0..2)
        .map(|n| {
            let healthy = b.healthy || n > 0;
            json!({
                "instance": format!(
                    "{base}/zones/{BACKEND_ZONE}/instances/{}-g{}-{n:04}",
                    b.group_name(),
                    b.generation
                ),
                "ipAddress": format!("10.128.0.{}", 10 + n),
                "port": 80,
                "healthState": if healthy { "HEALTHY" } else { "UNHEALTHY" },
            })
        })
        .collect();
    Json(json!({"kind": "compute#backendServiceGroupHealth", "healthStatus": status}))
        .into_response()
}

/// `GET …/zones/{zone}/instanceGroupManagers/{manager}`: the MIG behind a backend service
/// (`{backend}-mig`), with the instance template it runs and a stable status (the fake's rolling
/// updates finish at once).
pub(crate) async fn get_instance_group_manager(
    State(shared): State<Shared>,
    Path((project, zone, manager)): Path<(String, String, String)>,
) -> Response {
    let w = lock(&shared);
    let base = v1(&w.base_url, &project);
    let name = format!("projects/{project}/zones/{zone}/instanceGroupManagers/{manager}");
    let found = w
        .backends
        .iter()
        .find(|b| b.project == project && b.group_name() == manager && zone == BACKEND_ZONE);
    let Some(b) = found else {
        return not_found(&name).into_response();
    };
    let template = format!("{base}/global/instanceTemplates/{}", b.template);
    Json(json!({
        "kind": "compute#instanceGroupManager",
        "id": b.id.to_string(),
        "creationTimestamp": stamp(b.created),
        "name": manager,
        "zone": format!("{base}/zones/{zone}"),
        "selfLink": format!("{base}/zones/{zone}/instanceGroupManagers/{manager}"),
        "instanceGroup": group_url(&w.base_url, b),
        "baseInstanceName": format!("{}-g{}", b.group_name(), b.generation),
        "instanceTemplate": template,
        "versions": [{"instanceTemplate": template}],
        "targetSize": 2,
        "currentActions": {"none": 2, "creating": 0, "recreating": 0, "deleting": 0,
                           "abandoning": 0, "restarting": 0, "refreshing": 0, "verifying": 0},
        "status": {"isStable": true, "versionTarget": {"isReached": true}},
        "fingerprint": b.fingerprint,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::FakeGcp;

    const MAP: &str = "/compute/v1/projects/acme-prod/global/urlMaps/web";

    async fn send(fake: &FakeGcp, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        call(fake, method, path, body).await
    }

    /// The weighted route as a body for PATCH: blue and green at these weights.
    fn route(fingerprint: &str, blue: u64, green: u64) -> Value {
        json!({
            "fingerprint": fingerprint,
            "defaultRouteAction": {"weightedBackendServices": [
                {"backendService": "projects/acme-prod/global/backendServices/blue", "weight": blue},
                {"backendService": "global/backendServices/green", "weight": green},
            ]},
        })
    }

    /// A pipeline detaching the idle backend: the route no longer names it and the map has a
    /// new fingerprint, so a write built on the old read is refused; a serving backend cannot
    /// be detached.
    #[tokio::test]
    async fn detaching_the_idle_backend_changes_the_route_and_the_fingerprint() {
        let (fake, _clock) = fake_with_url_map().await;
        let (_, before) = send(&fake, "GET", MAP, None).await;
        fake.detach_backend("acme-prod", "web", "green");
        let (_, after) = send(&fake, "GET", MAP, None).await;
        let weighted = after["defaultRouteAction"]["weightedBackendServices"]
            .as_array()
            .unwrap();
        assert_eq!(weighted.len(), 1, "{after}");
        assert!(
            weighted[0]["backendService"]
                .as_str()
                .unwrap()
                .ends_with("/blue")
        );
        assert_ne!(after["fingerprint"], before["fingerprint"]);
        let stale = route(before["fingerprint"].as_str().unwrap(), 900, 100);
        let (status, _) = send(&fake, "PATCH", MAP, Some(&stale)).await;
        assert_eq!(status, 412, "the old read's fingerprint");
        let serving = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fake.detach_backend("acme-prod", "web", "blue")
        }));
        assert!(serving.is_err(), "blue serves 100%");
    }

    /// GET answers a `compute#urlMap` with a fingerprint and full backend URLs; the backend that
    /// joined is there at weight 0 (no `defaultService`).
    #[tokio::test]
    async fn get_has_the_api_shape() {
        let (fake, _clock) = fake_with_url_map().await;
        let (status, map) = send(&fake, "GET", MAP, None).await;
        assert_eq!(status, 200);
        assert_eq!(map["kind"], "compute#urlMap");
        assert_eq!(map["name"], "web");
        assert!(map["id"].is_string());
        assert!(!map["fingerprint"].as_str().unwrap().is_empty());
        let weighted = map["defaultRouteAction"]["weightedBackendServices"]
            .as_array()
            .unwrap();
        assert_eq!(weighted.len(), 2);
        assert_eq!(
            weighted[1]["backendService"],
            format!(
                "{}/compute/v1/projects/acme-prod/global/backendServices/green",
                fake.base_url()
            )
        );
        assert_eq!(
            (
                weighted[0]["weight"].as_u64(),
                weighted[1]["weight"].as_u64()
            ),
            (Some(1000), Some(0))
        );
        assert_eq!(map.get("defaultService"), None);
        let (status, missing) = send(
            &fake,
            "GET",
            "/compute/v1/projects/acme-prod/global/urlMaps/nope",
            None,
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(missing["error"]["errors"][0]["reason"], "notFound");
    }

    /// A PATCH carrying the current fingerprint moves the weights, changes the fingerprint and
    /// answers a PENDING global operation that is DONE when polled (GET or `wait`).
    #[tokio::test]
    async fn patch_with_the_fingerprint_then_wait() {
        let (fake, _clock) = fake_with_url_map().await;
        fake.faults().op_polls_before_done(1);
        let (_, map) = send(&fake, "GET", MAP, None).await;
        let fingerprint = map["fingerprint"].as_str().unwrap().to_string();
        let (status, op) = send(&fake, "PATCH", MAP, Some(&route(&fingerprint, 900, 100))).await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(
            (op["kind"].as_str(), op["status"].as_str()),
            (Some("compute#operation"), Some("PENDING"))
        );
        assert!(
            op["targetLink"]
                .as_str()
                .unwrap()
                .ends_with("/global/urlMaps/web")
        );
        let op_path = format!(
            "/compute/v1/projects/acme-prod/global/operations/{}",
            op["name"].as_str().unwrap()
        );
        assert!(op["selfLink"].as_str().unwrap().ends_with(&op_path));
        let (_, running) = send(&fake, "GET", &op_path, None).await;
        assert_eq!(running["status"], "RUNNING");
        let (_, done) = send(&fake, "POST", &format!("{op_path}/wait"), None).await;
        assert_eq!(done["status"], "DONE");
        assert_eq!(done.get("error"), None);
        let key = FakeGcp::url_map(PROJECT, "web");
        assert_eq!(
            fake.split_of(&key),
            [("blue".to_string(), 0.9), ("green".to_string(), 0.1)]
        );
        let last = fake.split_history(&key).last().unwrap().clone();
        assert!(last.guard_matched && !last.by_hand);
        assert_eq!(
            last.written,
            [("blue".to_string(), 900.0), ("green".to_string(), 100.0)]
        );
        let (_, after) = send(&fake, "GET", MAP, None).await;
        assert_ne!(after["fingerprint"], map["fingerprint"]);
        // Merge patch: fields the body leaves out are kept.
        assert!(after["defaultRouteAction"]["weightedBackendServices"].is_array());
    }

    /// A stale or missing fingerprint is 412 `conditionNotMet`, in Compute's error shape; so is
    /// a write that a concurrent writer beat (who changed the map's description first).
    #[tokio::test]
    async fn stale_fingerprints_are_refused() {
        let (fake, _clock) = fake_with_url_map().await;
        let key = FakeGcp::url_map(PROJECT, "web");
        let (_, map) = send(&fake, "GET", MAP, None).await;
        let fingerprint = map["fingerprint"].as_str().unwrap().to_string();
        fake.set_split_by_hand(&key, &[("blue", 50), ("green", 50)]);
        let (status, error) = send(&fake, "PATCH", MAP, Some(&route(&fingerprint, 900, 100))).await;
        assert_eq!(status, 412, "{error}");
        assert_eq!(error["error"]["code"], 412);
        assert_eq!(error["error"]["errors"][0]["reason"], "conditionNotMet");
        assert_eq!(error["error"].get("status"), None);
        let mut no_fingerprint = route("", 900, 100);
        no_fingerprint
            .as_object_mut()
            .unwrap()
            .remove("fingerprint");
        let (status, _) = send(&fake, "PATCH", MAP, Some(&no_fingerprint)).await;
        assert_eq!(status, 412);
        assert_eq!(
            fake.split_of(&key),
            [("blue".to_string(), 0.5), ("green".to_string(), 0.5)]
        );

        let (_, map) = send(&fake, "GET", MAP, None).await;
        fake.faults().conflict_next_patches(1);
        let current = map["fingerprint"].as_str().unwrap();
        let (status, _) = send(&fake, "PATCH", MAP, Some(&route(current, 900, 100))).await;
        assert_eq!(status, 412);
        assert_eq!(fake.concurrent_writes_of(&key), 1);
        let (_, edited) = send(&fake, "GET", MAP, None).await;
        assert!(edited["description"].is_string());
        let fresh = edited["fingerprint"].as_str().unwrap();
        let (status, _) = send(&fake, "PATCH", MAP, Some(&route(fresh, 900, 100))).await;
        assert_eq!(status, 200, "a re-read fingerprint succeeds");
    }

    /// A retried write with the same `requestId` gets the first write's operation back and
    /// writes nothing again (even though its fingerprint is stale by then); a malformed
    /// `requestId` is refused.
    #[tokio::test]
    async fn a_request_id_makes_a_retry_harmless() {
        let (fake, _clock) = fake_with_url_map().await;
        let key = FakeGcp::url_map(PROJECT, "web");
        let (_, map) = send(&fake, "GET", MAP, None).await;
        let body = route(map["fingerprint"].as_str().unwrap(), 900, 100);
        let path = format!("{MAP}?requestId=8a1c8e2e-5f4b-4c3d-9e2f-0a1b2c3d4e5f");
        let (status, first) = send(&fake, "PATCH", &path, Some(&body)).await;
        assert_eq!(status, 200, "{first}");
        let (status, again) = send(&fake, "PATCH", &path, Some(&body)).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["name"], first["name"]);
        assert_eq!(
            fake.split_history(&key).len(),
            3,
            "creation, join, one write"
        );
        let (status, stale) = send(&fake, "PATCH", MAP, Some(&body)).await;
        assert_eq!(
            status, 412,
            "without the id the retry is a stale write: {stale}"
        );
        let bad = format!("{MAP}?requestId=not-a-uuid");
        let (status, _) = send(&fake, "PATCH", &bad, Some(&body)).await;
        assert_eq!(status, 400);
    }

    /// Writes are held to the documented rules: weights 0..=1000, one non-zero weight per
    /// route, existing backend services, not both `defaultService` and weighted backends.
    #[tokio::test]
    async fn invalid_routes_are_refused() {
        let (fake, _clock) = fake_with_url_map().await;
        let (_, map) = send(&fake, "GET", MAP, None).await;
        let fp = map["fingerprint"].as_str().unwrap().to_string();
        let mut with_service = route(&fp, 500, 500);
        with_service["defaultService"] = json!("global/backendServices/blue");
        let mut unknown = route(&fp, 500, 500);
        unknown["defaultRouteAction"]["weightedBackendServices"][1]["backendService"] =
            json!("global/backendServices/purple");
        let cases = [
            (route(&fp, 1001, 0), 400, "invalid"),
            (route(&fp, 0, 0), 400, "invalid"),
            (with_service, 400, "invalid"),
            (unknown, 404, "notFound"),
        ];
        for (body, status, reason) in cases {
            let (got, error) = send(&fake, "PATCH", MAP, Some(&body)).await;
            assert_eq!(got, status, "{body}: {error}");
            assert_eq!(error["error"]["errors"][0]["reason"], reason);
        }
        let key = FakeGcp::url_map(PROJECT, "web");
        assert_eq!(
            fake.split_history(&key).len(),
            2,
            "creation and the joining backend only"
        );
    }

    /// PUT replaces the whole configuration (here: the default route on blue, a path matcher on
    /// green, one of its route rules half and half); each route weighs equally in the shares.
    #[tokio::test]
    async fn update_replaces_the_map() {
        let (fake, _clock) = fake_with_url_map().await;
        let (_, map) = send(&fake, "GET", MAP, None).await;
        let mut body = route(map["fingerprint"].as_str().unwrap(), 1000, 0);
        body["hostRules"] = json!([{"hosts": ["api.example.com"], "pathMatcher": "api"}]);
        body["pathMatchers"] = json!([{"name": "api", "defaultRouteAction": {"weightedBackendServices": [
            {"backendService": "global/backendServices/green", "weight": 1}
        ]}, "routeRules": [{"priority": 1, "matchRules": [{"prefixMatch": "/v2/"}],
            "routeAction": {"weightedBackendServices": [
                {"backendService": "global/backendServices/blue", "weight": 1001},
                {"backendService": "global/backendServices/green", "weight": 1}]}}]}]);
        body["name"] = json!("web");
        let (status, error) = send(&fake, "PUT", MAP, Some(&body)).await;
        assert_eq!(status, 400, "route rules are checked too: {error}");
        body["pathMatchers"][0]["routeRules"][0]["routeAction"]["weightedBackendServices"][0]["weight"] =
            json!(1);
        let (status, op) = send(&fake, "PUT", MAP, Some(&body)).await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(op["operationType"], "update");
        let key = FakeGcp::url_map(PROJECT, "web");
        assert_eq!(
            fake.split_of(&key),
            [("blue".to_string(), 0.5), ("green".to_string(), 0.5)]
        );
        let (_, after) = send(&fake, "GET", MAP, None).await;
        assert_eq!(after["pathMatchers"][0]["name"], "api");
    }

    /// getHealth reports every instance of the backend's group; an unhealthy backend has one
    /// UNHEALTHY instance; a group that is not the backend's is refused.
    #[tokio::test]
    async fn backend_health() {
        let (fake, _clock) = fake_with_url_map().await;
        let svc = "/compute/v1/projects/acme-prod/global/backendServices/green";
        let (status, backend) = send(&fake, "GET", svc, None).await;
        assert_eq!(status, 200);
        assert_eq!(backend["kind"], "compute#backendService");
        let group = backend["backends"][0]["group"].clone();
        let states = |health: &Value| -> Vec<String> {
            health["healthStatus"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["healthState"].as_str().unwrap().to_string())
                .collect()
        };
        let body = json!({"group": group});
        let (status, health) = send(&fake, "POST", &format!("{svc}/getHealth"), Some(&body)).await;
        assert_eq!(status, 200, "{health}");
        assert_eq!(states(&health), ["HEALTHY", "HEALTHY"]);
        fake.set_backend_healthy(PROJECT, "green", false);
        let (_, health) = send(&fake, "POST", &format!("{svc}/getHealth"), Some(&body)).await;
        assert_eq!(states(&health), ["UNHEALTHY", "HEALTHY"]);
        let wrong = json!({"group": "zones/us-central1-a/instanceGroups/blue-mig"});
        let (status, _) = send(&fake, "POST", &format!("{svc}/getHealth"), Some(&wrong)).await;
        assert_eq!(status, 400);
        // A redeploy (the MIG rolled to a new template) shows as new instances.
        let instances = |health: &Value| -> Vec<String> {
            health["healthStatus"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["instance"].as_str().unwrap().to_string())
                .collect()
        };
        let before = instances(&health);
        fake.redeploy_backend(PROJECT, "green");
        let (_, health) = send(&fake, "POST", &format!("{svc}/getHealth"), Some(&body)).await;
        assert!(
            instances(&health).iter().all(|i| !before.contains(i)),
            "{health}"
        );
        let (_, redeployed) = send(&fake, "GET", svc, None).await;
        assert_ne!(redeployed["fingerprint"], backend["fingerprint"]);
        let group = group.as_str().unwrap();
        let manager = group
            .strip_prefix(&fake.base_url())
            .unwrap()
            .replace("/instanceGroups/", "/instanceGroupManagers/");
        let (status, mig) = send(&fake, "GET", &manager, None).await;
        assert_eq!(status, 200, "{mig}");
        assert!(
            mig["instanceTemplate"]
                .as_str()
                .unwrap()
                .ends_with("/green-t2")
        );
        fake.redeploy_backend_to(PROJECT, "green", "web-b7");
        let (_, mig) = send(&fake, "GET", &manager, None).await;
        assert!(
            mig["versions"][0]["instanceTemplate"]
                .as_str()
                .unwrap()
                .ends_with("/instanceTemplates/web-b7")
        );
        // Weight given to it anyway is flagged in the history.
        let key = FakeGcp::url_map(PROJECT, "web");
        fake.set_split_by_hand(&key, &[("blue", 90), ("green", 10)]);
        assert_eq!(
            fake.split_history(&key).last().unwrap().routes_unready,
            ["green"]
        );
    }

    /// A failing operation ends DONE with `error.errors` and leaves the map as it was; an
    /// injected 503 comes in Compute's shape.
    #[tokio::test]
    async fn failing_operations_and_injected_errors() {
        let (fake, _clock) = fake_with_url_map().await;
        let (_, map) = send(&fake, "GET", MAP, None).await;
        fake.faults().failing_operations(1, 13, "Internal error.");
        let (status, op) = send(
            &fake,
            "PATCH",
            MAP,
            Some(&route(map["fingerprint"].as_str().unwrap(), 500, 500)),
        )
        .await;
        assert_eq!(status, 200);
        let path = format!(
            "/compute/v1/projects/acme-prod/global/operations/{}",
            op["name"].as_str().unwrap()
        );
        let (_, done) = send(&fake, "GET", &path, None).await;
        assert_eq!(done["status"], "DONE");
        assert_eq!(done["error"]["errors"][0]["code"], "INTERNAL_ERROR");
        let (_, after) = send(&fake, "GET", MAP, None).await;
        assert_eq!(after["fingerprint"], map["fingerprint"]);
        fake.faults().run_errors(1, 503);
        let (status, error) = send(&fake, "GET", MAP, None).await;
        assert_eq!(status, 503);
        assert_eq!(error["error"]["errors"][0]["reason"], "backendError");
    }
}
