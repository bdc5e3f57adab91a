//! Fake Cloud Run Admin API v2: services (get, list, patch), their revisions, long-running
//! operations, and the tag URLs a smoke check hits.
//!
//! Written from docs/gcp-wire.md §0/§1/§9 and the real capture `run-service-1.json`, against the JSON
//! wire format only (no client types from the rest of the crate), because it is the ground truth
//! cutover's tests run against: int64 as strings, defaults omitted (`percent` 0, `reconciling`
//! false, `done` false), etags with embedded quotes, full resource names in
//! `latestReadyRevision`, PATCH answering 200 with an Operation that completes when polled (or
//! after a while on the fake clock), 409 `ABORTED` on a stale etag, 400 on a bad split.
//!
//! Deliberate simplifications (each noted where it happens): every revision is Ready; a changed
//! template is stored but creates no revision; creating services (`allowMissing`) is not
//! modelled; tag and service URLs point back into this fake.

use std::collections::{BTreeMap, HashSet};

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
use super::wire::{self, RpcError, int64, micros};
use super::world::{Revision, Service, ServiceKey, Shared, Target, World, Writer, lock};

/// `@type` of the Service carried in Operation metadata and response.
const SERVICE_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Service";

const TRAFFIC_TYPES: &[(&str, i64)] = &[
    ("TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED", 0),
    ("TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", 1),
    ("TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", 2),
];
const LATEST: i64 = 1;
const REVISION: i64 = 2;

const INGRESS: &[(&str, i64)] = &[
    ("INGRESS_TRAFFIC_UNSPECIFIED", 0),
    ("INGRESS_TRAFFIC_ALL", 1),
    ("INGRESS_TRAFFIC_INTERNAL_ONLY", 2),
    ("INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", 3),
    ("INGRESS_TRAFFIC_NONE", 4),
];

/// `google.api.LaunchStage`.
const LAUNCH_STAGES: &[(&str, i64)] = &[
    ("LAUNCH_STAGE_UNSPECIFIED", 0),
    ("UNIMPLEMENTED", 6),
    ("PRELAUNCH", 7),
    ("EARLY_ACCESS", 1),
    ("ALPHA", 2),
    ("BETA", 3),
    ("GA", 4),
    ("DEPRECATED", 5),
];

/// Service fields a client may write (docs/gcp-wire.md §1.2); everything else is output only.
const WRITABLE_FIELDS: &[&str] = &[
    "description",
    "labels",
    "annotations",
    "client",
    "clientVersion",
    "ingress",
    "launchStage",
    "binaryAuthorization",
    "template",
    "traffic",
    "scaling",
    "invokerIamDisabled",
    "defaultUriDisabled",
    "iapEnabled",
    "customAudiences",
    "multiRegionSettings",
    "buildConfig",
];

/// Label/annotation namespaces Cloud Run v2 reserves for itself.
const SYSTEM_PREFIXES: &[&str] = &[
    "run.googleapis.com",
    "cloud.googleapis.com",
    "serving.knative.dev",
    "autoscaling.knative.dev",
];

/// A long-running operation started by a PATCH.
#[derive(Clone, Debug)]
pub(crate) struct Operation {
    /// `projects/{p}/locations/{l}/operations/{uuid}`.
    pub(crate) name: String,
    pub(crate) service: ServiceKey,
    /// The service generation this operation rolls out.
    pub(crate) generation: u64,
    /// Fake-clock instant at which it completes on its own, if any.
    pub(crate) settle_at: Option<Timestamp>,
    /// Polls still to answer without `done`.
    pub(crate) polls_left: u32,
    /// The Service as accepted (reconciling), with `@type`.
    pub(crate) metadata: Value,
    /// Once done: the Service as rolled out, with `@type`.
    pub(crate) response: Option<Value>,
    /// Set when the operation is to end (or has ended) with this `google.rpc.Status`
    /// (numeric code, message) instead of a response.
    pub(crate) error: Option<(i32, String)>,
    /// Whether it has finished (with its response or its error).
    pub(crate) done: bool,
    /// Never finishes (an injected fault).
    pub(crate) stuck: bool,
}

impl Operation {
    fn to_json(&self) -> Value {
        let mut op = json!({"name": self.name, "metadata": self.metadata});
        if !self.done {
            return op;
        }
        op["done"] = json!(true);
        match (&self.error, &self.response) {
            (Some((code, message)), _) => {
                op["error"] = json!({"code": code, "message": message});
            }
            (None, Some(response)) => op["response"] = response.clone(),
            (None, None) => {}
        }
        op
    }
}

/// `projects/{p}/locations/{l}/operations/{id}`, `{p}` as the client named it.
fn operation_name(project: &str, region: &str, id: &str) -> String {
    format!("projects/{project}/locations/{region}/operations/{id}")
}

/// `value` as a `google.protobuf.Any` of a Service.
fn as_service_any(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.insert("@type".into(), json!(SERVICE_TYPE));
    }
    value
}

fn service_not_found(key: &ServiceKey) -> RpcError {
    RpcError::not_found(format!(
        "Resource '{}' of kind 'SERVICE' in region '{}' in project '{}' does not exist.",
        key.service, key.region, key.project
    ))
}

/// Where a tagged revision answers. Real tag URLs are
/// `https://{tag}---{service}-{hash}-{region}.a.run.app`, which nothing here can reach, so the
/// fake hands out URLs into itself with the same `{tag}---{service}` label.
pub(crate) fn tag_url(base_url: &str, tag: &str, service: &str) -> String {
    format!("{base_url}/__tag/{tag}---{service}")
}

fn render_target(target: &Target, uri: Option<String>) -> Value {
    let mut t = Map::new();
    match &target.revision {
        None => {
            t.insert(
                "type".into(),
                json!("TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"),
            );
        }
        Some(revision) => {
            t.insert(
                "type".into(),
                json!("TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"),
            );
            t.insert("revision".into(), json!(revision));
        }
    }
    if target.percent > 0 {
        t.insert("percent".into(), json!(target.percent));
    }
    if let Some(tag) = &target.tag {
        t.insert("tag".into(), json!(tag));
    }
    if let Some(uri) = uri {
        t.insert("uri".into(), json!(uri));
    }
    Value::Object(t)
}

fn condition(kind: &str, state: &str, at: Timestamp) -> Value {
    json!({"type": kind, "state": state, "lastTransitionTime": micros(at)})
}

/// A failed condition, with the message and reason Cloud Run gives one.
fn failed_condition(kind: &str, message: &str, at: Timestamp) -> Value {
    json!({
        "type": kind,
        "state": "CONDITION_FAILED",
        "message": message,
        "lastTransitionTime": micros(at),
        "reason": "FAILED",
    })
}

/// What a revision whose container never started says in its `Ready` condition.
const UNREADY_MESSAGE: &str = "The user-provided container failed to start and listen on the \
     port provided by the PORT=8080 environment variable within the allocated timeout.";

/// The Service exactly as GET returns it.
pub(crate) fn render_service(s: &Service, base_url: &str) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(s.key.full_name()));
    o.insert("uid".into(), json!(s.uid));
    o.insert("generation".into(), int64(s.generation));
    if !s.labels.is_empty() {
        o.insert("labels".into(), json!(s.labels));
    }
    if !s.annotations.is_empty() {
        o.insert("annotations".into(), json!(s.annotations));
    }
    o.insert("createTime".into(), json!(micros(s.created)));
    o.insert("updateTime".into(), json!(micros(s.updated)));
    o.insert("creator".into(), json!(s.creator));
    o.insert("lastModifier".into(), json!(s.last_modifier));
    for (k, v) in &s.extra {
        o.insert(k.clone(), v.clone());
    }
    o.insert("template".into(), s.template.clone());
    o.insert(
        "traffic".into(),
        Value::Array(s.traffic.iter().map(|t| render_target(t, None)).collect()),
    );
    o.insert("observedGeneration".into(), int64(s.observed_generation));
    let ready = if s.reconciling {
        "CONDITION_RECONCILING"
    } else {
        "CONDITION_SUCCEEDED"
    };
    let routes = match (&s.failure, s.reconciling) {
        (Some(why), false) => failed_condition("RoutesReady", why, s.settled_at),
        _ => condition("RoutesReady", ready, s.settled_at),
    };
    let latest_created = s.revisions.iter().find(|r| r.name == s.latest_created);
    let configured_at = latest_created.map_or(s.created, |revision| revision.created);
    let configurations = match latest_created {
        Some(r) if !r.ready => failed_condition(
            "ConfigurationsReady",
            &format!(
                "Revision '{}' is not ready and cannot serve traffic. {UNREADY_MESSAGE}",
                r.name
            ),
            configured_at,
        ),
        _ => condition("ConfigurationsReady", "CONDITION_SUCCEEDED", configured_at),
    };
    let terminal = if routes["state"] == "CONDITION_FAILED" {
        let mut t = routes.clone();
        t["type"] = json!("Ready");
        t
    } else if configurations["state"] == "CONDITION_FAILED" {
        let mut t = configurations.clone();
        t["type"] = json!("Ready");
        t
    } else {
        condition("Ready", ready, s.settled_at)
    };
    o.insert("terminalCondition".into(), terminal);
    o.insert("conditions".into(), json!([routes, configurations]));
    o.insert(
        "latestReadyRevision".into(),
        json!(s.key.revision_name(&s.latest_ready)),
    );
    o.insert(
        "latestCreatedRevision".into(),
        json!(s.key.revision_name(&s.latest_created)),
    );
    o.insert(
        "trafficStatuses".into(),
        Value::Array(
            s.traffic_statuses
                .iter()
                .map(|t| {
                    let uri = t
                        .tag
                        .as_ref()
                        .map(|tag| tag_url(base_url, tag, &s.key.service));
                    render_target(t, uri)
                })
                .collect(),
        ),
    );
    // The real main URL (`https://{service}-{hash}-{region}.a.run.app`) is unreachable from
    // tests; this one points into the fake and is not served.
    let uri = format!("{base_url}/__svc/{}", s.key.service);
    o.insert("urls".into(), json!([uri]));
    o.insert("uri".into(), json!(uri));
    if s.reconciling {
        o.insert("reconciling".into(), json!(true));
    }
    o.insert("etag".into(), json!(s.etag));
    Value::Object(o)
}

fn render_revision(s: &Service, r: &Revision) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(s.key.revision_name(&r.name)));
    o.insert("uid".into(), json!(r.uid));
    o.insert("generation".into(), int64(1));
    o.insert("createTime".into(), json!(micros(r.created)));
    o.insert("updateTime".into(), json!(micros(r.created)));
    o.insert("launchStage".into(), json!("GA"));
    o.insert("service".into(), json!(s.key.service));
    if let Value::Object(template) = &r.template {
        for (k, v) in template {
            if k != "revision" {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    let ready = if r.ready {
        condition("Ready", "CONDITION_SUCCEEDED", r.created)
    } else {
        failed_condition("Ready", UNREADY_MESSAGE, r.created)
    };
    o.insert("conditions".into(), json!([ready]));
    o.insert("observedGeneration".into(), int64(1));
    o.insert("creator".into(), json!(s.creator));
    o.insert(
        "etag".into(),
        json!(format!("\"{}\"", r.uid.replace('-', ""))),
    );
    Value::Object(o)
}

/// Completes operation `name`: the service's observed state catches up if this operation carries
/// its newest generation (or, for an operation that fails, the service reports the failure).
fn complete(w: &mut World, name: &str) {
    let now = w.clock.now();
    let Some((key, generation, error)) = w
        .operations
        .get(name)
        .filter(|op| !op.stuck && !op.done)
        .map(|op| (op.service.clone(), op.generation, op.error.clone()))
    else {
        return;
    };
    let response = match w.find(&key) {
        Some(i) => {
            let base_url = &w.base_url;
            let service = &mut w.services[i];
            service.observed_generation = service.observed_generation.max(generation);
            if generation == service.generation && service.reconciling {
                match &error {
                    Some((_, why)) => service.fail(now, why),
                    None => service.settle(now),
                }
            }
            as_service_any(render_service(service, base_url))
        }
        None => w.operations[name].metadata.clone(),
    };
    if let Some(op) = w.operations.get_mut(name) {
        op.done = true;
        if op.error.is_none() {
            op.response = Some(response);
        }
    }
}

/// Completes every operation whose time has come. Run before anything reads Run state.
pub(crate) fn settle_due(w: &mut World) {
    let now = w.clock.now();
    let due: Vec<String> = w
        .operations
        .values()
        .filter(|op| !op.done && !op.stuck && op.settle_at.is_some_and(|at| at <= now))
        .map(|op| op.name.clone())
        .collect();
    for name in due {
        complete(w, &name);
    }
}

fn settled(shared: &Shared) -> std::sync::MutexGuard<'_, World> {
    let mut w = lock(shared);
    settle_due(&mut w);
    w
}

pub(crate) async fn get_service(
    State(shared): State<Shared>,
    Path((project, region, service)): Path<(String, String, String)>,
) -> Result<Json<Value>, RpcError> {
    let w = settled(&shared);
    let key = ServiceKey::new(&project, &region, &service);
    let i = w.find(&key).ok_or_else(|| service_not_found(&key))?;
    Ok(Json(render_service(&w.services[i], &w.base_url)))
}

/// `pageSize` ≤ 0 means "everything".
fn page<T>(
    items: Vec<T>,
    pairs: &[(String, String)],
) -> Result<(Vec<T>, Option<String>), RpcError> {
    let size = wire::int_param(pairs, "pageSize")?;
    let size = if size <= 0 { usize::MAX } else { size as usize };
    let offset = wire::page_offset(wire::param(pairs, "pageToken"))?;
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(size).collect();
    let next = (offset.saturating_add(size) < total).then(|| wire::page_token(offset + size));
    Ok((page, next))
}

fn list_response(key: &str, items: Vec<Value>, next: Option<String>) -> Json<Value> {
    let mut o = Map::new();
    if !items.is_empty() {
        o.insert(key.into(), Value::Array(items));
    }
    if let Some(next) = next {
        o.insert("nextPageToken".into(), json!(next));
    }
    Json(Value::Object(o))
}

/// Newest first; location `-` lists every location of the project.
pub(crate) async fn list_services(
    State(shared): State<Shared>,
    Path((project, region)): Path<(String, String)>,
    uri: Uri,
) -> Result<Json<Value>, RpcError> {
    let pairs = wire::query_pairs(&uri)?;
    let w = settled(&shared);
    let services: Vec<&Service> = w
        .in_project(&project)
        .rev()
        .filter(|s| region == "-" || s.key.region == region)
        .collect();
    // Only the page is rendered: a region can hold 1,000 services, a page 500 or fewer.
    let (items, next) = page(services, &pairs)?;
    let items = items
        .into_iter()
        .map(|s| render_service(s, &w.base_url))
        .collect();
    Ok(list_response("services", items, next))
}

pub(crate) async fn list_revisions(
    State(shared): State<Shared>,
    Path((project, region, service)): Path<(String, String, String)>,
    uri: Uri,
) -> Result<Json<Value>, RpcError> {
    let pairs = wire::query_pairs(&uri)?;
    let w = settled(&shared);
    let key = ServiceKey::new(&project, &region, &service);
    let s = &w.services[w.find(&key).ok_or_else(|| service_not_found(&key))?];
    let revisions: Vec<Value> = s
        .revisions
        .iter()
        .rev()
        .map(|r| render_revision(s, r))
        .collect();
    let (items, next) = page(revisions, &pairs)?;
    Ok(list_response("revisions", items, next))
}

pub(crate) async fn get_revision(
    State(shared): State<Shared>,
    Path((project, region, service, revision)): Path<(String, String, String, String)>,
) -> Result<Json<Value>, RpcError> {
    let w = settled(&shared);
    let key = ServiceKey::new(&project, &region, &service);
    let s = &w.services[w.find(&key).ok_or_else(|| service_not_found(&key))?];
    let r = s.revision(&revision).ok_or_else(|| {
        RpcError::not_found(format!(
            "Resource '{revision}' of kind 'REVISION' in region '{region}' in project \
             '{project}' does not exist."
        ))
    })?;
    Ok(Json(render_revision(s, r)))
}

pub(crate) async fn get_operation(
    State(shared): State<Shared>,
    Path((project, region, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, RpcError> {
    let name = operation_name(&project, &region, &id);
    poll(&mut settled(&shared), &name).map(Json)
}

/// `POST …/operations/{id}:wait`: answered like a poll (the fake never blocks).
pub(crate) async fn wait_operation(
    State(shared): State<Shared>,
    Path((project, region, id)): Path<(String, String, String)>,
    uri: Uri,
) -> Response {
    let Some(id) = id.strip_suffix(":wait") else {
        return wire::html_not_found(uri.path());
    };
    let name = operation_name(&project, &region, id);
    match poll(&mut settled(&shared), &name) {
        Ok(op) => Json(op).into_response(),
        Err(e) => e.into_response(),
    }
}

fn poll(w: &mut World, name: &str) -> Result<Value, RpcError> {
    let finish = match w.operations.get_mut(name) {
        None => {
            return Err(RpcError::not_found(format!(
                "Operation '{name}' does not exist."
            )));
        }
        Some(op) if op.done || op.stuck => false,
        Some(op) if op.polls_left > 0 => {
            op.polls_left -= 1;
            false
        }
        Some(_) => true,
    };
    if finish {
        complete(w, name);
    }
    Ok(w.operations[name].to_json())
}

pub(crate) async fn patch_service(
    State(shared): State<Shared>,
    Path((project, region, service)): Path<(String, String, String)>,
    uri: Uri,
    body: Bytes,
) -> Result<Json<Value>, RpcError> {
    let pairs = wire::query_pairs(&uri)?;
    let key = ServiceKey::new(&project, &region, &service);
    patch(&mut settled(&shared), &key, &pairs, &body).map(Json)
}

/// The update mask, if one was sent (comma-separated, possibly repeated).
fn update_mask(pairs: &[(String, String)]) -> Option<Vec<String>> {
    let paths: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "updateMask")
        .flat_map(|(_, v)| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    (!paths.is_empty()).then_some(paths)
}

fn patch(
    w: &mut World,
    key: &ServiceKey,
    pairs: &[(String, String)],
    body: &[u8],
) -> Result<Value, RpcError> {
    let mask = update_mask(pairs);
    let validate_only = wire::bool_param(pairs, "validateOnly")?;
    // Accepted, but creating a missing service is not modelled: an unknown service stays 404.
    wire::bool_param(pairs, "allowMissing")?;
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| RpcError::invalid_argument(format!("Invalid JSON payload received. {e}")))?;
    let Value::Object(body) = body else {
        return Err(RpcError::invalid_argument(
            "Invalid JSON payload received. Expected an object (a Service).",
        ));
    };

    let i = w.find(key).ok_or_else(|| service_not_found(key))?;
    if let Some(labels) = w.faults.take_conflict() {
        if labels {
            w.touch_labels_at(i);
        } else {
            w.touch_annotation_at(i);
        }
        return Err(RpcError::aborted(format!(
            "The service '{}' was modified concurrently; re-read it and retry.",
            key.service
        )));
    }
    let service = &w.services[i];
    let sent_etag = body.get("etag").and_then(Value::as_str).unwrap_or("");
    if !sent_etag.is_empty() && sent_etag != service.etag {
        return Err(RpcError::aborted(format!(
            "The etag of service '{}' does not match: it was modified after it was read.",
            key.service
        )));
    }

    let update = Update::parse(merged_spec(service, &body, mask.as_deref())?, service)?;
    let template_changed = update.template != service.template;
    if template_changed
        && let Some(name) = update.template.get("revision").and_then(Value::as_str)
        && service.revision(name).is_some()
    {
        // docs/gcp-wire.md §1.5 / §9.5: reusing a revision name with a different template is
        // refused (status string UNVERIFIED; ALREADY_EXISTS is the likeliest).
        return Err(RpcError::already_exists(format!(
            "Revision named '{name}' with different configuration already exists."
        )));
    }

    let now = w.clock.now();
    let modifier = w.metadata.email.clone();
    if validate_only {
        // Validated and defaulted, not persisted: the answer is already done (docs/gcp-wire.md §1.4
        // leaves open whether such an operation can be polled; this fake does not keep it).
        let mut preview = service.clone();
        update.apply(&mut preview, modifier);
        preview.generation += 1;
        let name = operation_name(&key.project, &key.region, &w.uuid());
        let rendered = as_service_any(render_service(&preview, &w.base_url));
        return Ok(json!({"name": name, "metadata": rendered, "done": true, "response": rendered}));
    }

    let before = service.before_write();
    update.apply(&mut w.services[i], modifier);
    w.bump(i);
    let service = &mut w.services[i];
    service.reconciling = true;
    let writer = Writer::Api {
        etag_matched: !sent_etag.is_empty(),
        template_changed,
    };
    let change = service.change_since(now, &before, writer);
    service.history.push(change);
    let generation = service.generation;
    let metadata = as_service_any(render_service(&w.services[i], &w.base_url));

    let name = operation_name(&key.project, &key.region, &w.uuid());
    let fate = w.faults.take_op_fate();
    let stuck = fate == OpFate::Stuck;
    let op = Operation {
        name: name.clone(),
        service: key.clone(),
        generation,
        settle_at: w
            .faults
            .op_settle_after
            .and_then(|after| now.checked_add(after).ok()),
        polls_left: w.faults.op_polls_before_done,
        metadata,
        response: None,
        error: match fate {
            OpFate::Fails(code, message) => Some((code, message)),
            _ => None,
        },
        done: false,
        stuck,
    };
    let answer = op.to_json();
    w.operations.insert(name, op);
    Ok(answer)
}

/// The writable fields as they will be after the write, still as JSON.
///
/// Without an update mask (or with `*`) a PATCH replaces every writable field with what the body
/// carries — an absent `annotations` key empties the annotations, as a PUT would. With a mask,
/// only the listed paths change (`labels`, `traffic`, `template.containers`, `labels.team`, …).
fn merged_spec(
    service: &Service,
    body: &Map<String, Value>,
    mask: Option<&[String]>,
) -> Result<Map<String, Value>, RpcError> {
    let replace_all = mask.is_none_or(|paths| paths.iter().any(|p| p == "*"));
    if replace_all {
        let mut spec: Map<String, Value> = WRITABLE_FIELDS
            .iter()
            .filter_map(|f| Some((f.to_string(), body.get(*f)?.clone())))
            .collect();
        // Server-side defaults a real Cloud Run fills in when a write leaves them out.
        spec.entry("ingress")
            .or_insert_with(|| json!("INGRESS_TRAFFIC_ALL"));
        spec.entry("launchStage").or_insert_with(|| json!("GA"));
        return Ok(spec);
    }
    let mut spec = service.extra.clone();
    spec.insert("labels".into(), json!(service.labels));
    spec.insert("annotations".into(), json!(service.annotations));
    spec.insert("template".into(), service.template.clone());
    spec.insert(
        "traffic".into(),
        Value::Array(
            service
                .traffic
                .iter()
                .map(|t| render_target(t, None))
                .collect(),
        ),
    );
    for path in mask.unwrap_or_default() {
        let segments: Vec<&str> = path.split('.').collect();
        if !WRITABLE_FIELDS.contains(&segments[0]) || segments.iter().any(|s| s.is_empty()) {
            return Err(RpcError::bad_field(
                "update_mask",
                format!("Invalid update mask path: '{path}'."),
            ));
        }
        copy_path(&mut spec, body, &segments);
    }
    Ok(spec)
}

/// Sets `target[path]` to `source[path]`, or removes it where `source` has nothing there.
fn copy_path(target: &mut Map<String, Value>, source: &Map<String, Value>, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        match source.get(*first) {
            Some(value) => {
                target.insert(first.to_string(), value.clone());
            }
            None => {
                target.remove(*first);
            }
        }
        return;
    }
    let empty = Map::new();
    let source = match source.get(*first) {
        Some(Value::Object(inner)) => inner,
        _ => &empty,
    };
    let entry = target
        .entry(first.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(inner) = entry {
        copy_path(inner, source, rest);
    }
}

/// A validated write.
struct Update {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    template: Value,
    traffic: Vec<Target>,
    extra: Map<String, Value>,
}

impl Update {
    fn parse(mut spec: Map<String, Value>, service: &Service) -> Result<Self, RpcError> {
        let labels = string_map(spec.remove("labels"), "labels")?;
        if let Some(key) = labels
            .keys()
            .find(|k| SYSTEM_PREFIXES.iter().any(|p| k.starts_with(p)))
        {
            return Err(RpcError::bad_field(
                "service.labels",
                format!("Label key '{key}' uses a reserved prefix."),
            ));
        }
        let annotations = string_map(spec.remove("annotations"), "annotations")?;
        if let Some(key) = annotations.keys().find(|k| {
            !service.annotations.contains_key(*k)
                && SYSTEM_PREFIXES.iter().any(|p| k.starts_with(p))
        }) {
            return Err(RpcError::bad_field(
                "service.annotations",
                format!("Annotation key '{key}' uses a reserved prefix."),
            ));
        }
        let template = match spec.remove("template") {
            Some(Value::Object(t)) => Value::Object(t),
            Some(_) => {
                return Err(RpcError::bad_field(
                    "service.template",
                    "Invalid value at 'service.template'.",
                ));
            }
            None => {
                return Err(RpcError::bad_field(
                    "service.template",
                    "service.template is required.",
                ));
            }
        };
        let traffic = parse_traffic(spec.remove("traffic"), service)?;
        for (field, table) in [("ingress", INGRESS), ("launchStage", LAUNCH_STAGES)] {
            if let Some(value) = spec.get_mut(field) {
                let name = wire::decode_enum(value, table)
                    .and_then(|n| wire::enum_name(table, n))
                    .ok_or_else(|| {
                        RpcError::bad_field(
                            &format!("service.{field}"),
                            format!("Invalid value at 'service.{field}': {value}"),
                        )
                    })?;
                *value = json!(name);
            }
        }
        Ok(Update {
            labels,
            annotations,
            template,
            traffic,
            extra: spec,
        })
    }

    fn apply(self, service: &mut Service, modifier: String) {
        service.labels = self.labels;
        service.annotations = self.annotations;
        service.template = self.template;
        service.traffic = self.traffic;
        service.extra = self.extra;
        service.last_modifier = modifier;
    }
}

fn string_map(value: Option<Value>, field: &str) -> Result<BTreeMap<String, String>, RpcError> {
    let invalid = || {
        RpcError::bad_field(
            &format!("service.{field}"),
            format!("Invalid value at 'service.{field}': expected a map of strings."),
        )
    };
    match value {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                _ => Err(invalid()),
            })
            .collect(),
        Some(_) => Err(invalid()),
    }
}

/// Lowercase letters, digits and hyphens; starting with a letter, not ending with a hyphen.
fn valid_tag(tag: &str) -> bool {
    tag.starts_with(|c: char| c.is_ascii_lowercase())
        && !tag.ends_with('-')
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Parses and validates `traffic` against the service's revisions.
fn parse_traffic(value: Option<Value>, service: &Service) -> Result<Vec<Target>, RpcError> {
    let entries = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(RpcError::bad_field(
                "service.traffic",
                "Invalid value at 'service.traffic': expected a list of TrafficTarget.",
            ));
        }
    };
    if entries.is_empty() {
        // An empty list means 100 % to the latest ready revision.
        return Ok(vec![Target {
            revision: None,
            percent: 100,
            tag: None,
        }]);
    }
    let mut targets = Vec::new();
    let mut tags = HashSet::new();
    let mut sum: i64 = 0;
    for (n, entry) in entries.iter().enumerate() {
        let field = format!("service.traffic[{n}]");
        let bad = |what: &str| RpcError::bad_field(&field, format!("{field}: {what}"));
        let Value::Object(entry) = entry else {
            return Err(bad(&format!(
                "Invalid value (type.googleapis.com/google.cloud.run.v2.TrafficTarget), {entry}"
            )));
        };
        let kind = match entry.get("type") {
            None | Some(Value::Null) => 0,
            Some(v) => wire::decode_enum(v, TRAFFIC_TYPES)
                .ok_or_else(|| bad(&format!("invalid type {v}")))?,
        };
        let revision = match entry.get("revision") {
            None | Some(Value::Null) => None,
            // Full resource names are accepted too: the last path segment is the revision.
            Some(Value::String(r)) => r.rsplit('/').next().filter(|r| !r.is_empty()),
            Some(v) => return Err(bad(&format!("invalid revision {v}"))),
        };
        let percent = match entry.get("percent") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(p)) => p
                .as_i64()
                .ok_or_else(|| bad("percent must be an integer"))?,
            Some(Value::String(p)) => p.parse().map_err(|_| bad("percent must be an integer"))?,
            Some(v) => return Err(bad(&format!("invalid percent {v}"))),
        };
        if !(0..=100).contains(&percent) {
            return Err(bad(&format!(
                "percent must be between 0 and 100, got {percent}"
            )));
        }
        let tag = match entry.get("tag") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if t.is_empty() => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(v) => return Err(bad(&format!("invalid tag {v}"))),
        };
        let revision = match (kind, revision) {
            (LATEST, None) => None,
            (LATEST, Some(_)) => {
                return Err(bad("a LATEST traffic target must not name a revision"));
            }
            (REVISION, Some(r)) | (0, Some(r)) => Some(r.to_string()),
            _ => return Err(bad("a REVISION traffic target must name a revision")),
        };
        if let Some(r) = &revision
            && service.revision(r).is_none()
        {
            // Refused synchronously with 400. A real Cloud Run may instead accept the write and
            // fail the operation ("Revision '…' does not exist or is deleted", rpc code 13);
            // which one happens is UNVERIFIED (docs/gcp-wire.md §1.4). The synchronous variant is the
            // stricter one for tests: the bad write never lands.
            return Err(RpcError::bad_field(
                &format!("{field}.revision"),
                format!(
                    "Revision '{r}' does not exist or is deleted. Update all traffic to route to \
                     currently available revisions."
                ),
            ));
        }
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(RpcError::bad_field(
                    &format!("{field}.tag"),
                    format!(
                        "Invalid tag '{t}': use lowercase letters, digits and hyphens, starting \
                         with a letter."
                    ),
                ));
            }
            if !tags.insert(t.clone()) {
                return Err(RpcError::bad_field(
                    &format!("{field}.tag"),
                    format!("Tag '{t}' is used by more than one traffic target."),
                ));
            }
        }
        sum += percent;
        targets.push(Target {
            revision,
            // 0..=100 was checked above.
            percent: percent as u8,
            tag,
        });
    }
    if sum != 100 {
        return Err(RpcError::bad_field(
            "service.traffic",
            format!("Traffic targets must sum to 100 percent; these sum to {sum}."),
        ));
    }
    Ok(targets)
}

/// `GET /__tag/{tag}---{service}`: the tagged revision answers its profile's smoke status.
/// Routing follows the *observed* traffic, so a tag exists only once its rollout completed.
pub(crate) async fn tag(
    State(shared): State<Shared>,
    Path(host): Path<String>,
    uri: Uri,
) -> Response {
    answer_tag(&shared, &host, &uri)
}

/// `GET /__tag/{tag}---{service}/{path…}`: any path of a tag URL (a smoke check appends its own,
/// e.g. `/healthz`) answers like the tag URL itself.
pub(crate) async fn tag_path(
    State(shared): State<Shared>,
    Path((host, _path)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    answer_tag(&shared, &host, &uri)
}

fn answer_tag(shared: &Shared, host: &str, uri: &Uri) -> Response {
    let w = settled(shared);
    let now = w.clock.now().as_millisecond();
    let answer = host.split_once("---").and_then(|(tag, service)| {
        w.services
            .iter()
            .filter(|s| s.key.service == service)
            .find_map(|s| {
                let target = s
                    .traffic_statuses
                    .iter()
                    .find(|t| t.tag.as_deref() == Some(tag))?;
                let revision = s.revision(s.resolve(target))?;
                Some(revision.profile.at_ms(now)?.smoke_status)
            })
    });
    match answer {
        None => wire::html_not_found(uri.path()),
        Some(status) => wire::smoke_answer(status),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::RevisionProfile;

    const SVC: &str = "/v2/projects/acme-prod/locations/us-central1/services/api";

    async fn get_json(fake: &crate::FakeGcp, path: &str) -> (u16, Value) {
        let response = http()
            .get(format!("{}{path}", fake.base_url()))
            .bearer_auth("fake-token-1")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn patch_json(fake: &crate::FakeGcp, query: &str, body: &Value) -> (u16, Value) {
        let response = http()
            .patch(format!("{}{SVC}{query}", fake.base_url()))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    fn canary_traffic() -> Value {
        json!([
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00001-abc", "percent": 90},
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00002-def", "percent": 10, "tag": "canary"},
        ])
    }

    /// GET speaks the wire format of the real capture: strings for int64, quoted etag, full
    /// revision names, no `reconciling` when settled, no `percent` key for a 0 % target.
    #[tokio::test]
    async fn get_has_the_real_shape() {
        let (fake, _clock) = fake_with_candidate().await;
        let mut service = fake.service_json(PROJECT, REGION, "api");
        service["traffic"] = json!([
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00001-abc", "percent": 100},
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00002-def", "tag": "canary"},
        ]);
        let (status, op) = patch_json(&fake, "", &service).await;
        assert_eq!(status, 200, "{op}");
        assert!(
            op.get("done").is_none(),
            "a pending operation has no done key: {op}"
        );
        let (_, _) = get_json(&fake, &format!("/v2/{}", op["name"].as_str().unwrap())).await;

        let (status, got) = get_json(&fake, SVC).await;
        assert_eq!(status, 200);
        assert_eq!(got, fake.service_json(PROJECT, REGION, "api"));
        assert!(got["generation"].is_string() && got["observedGeneration"].is_string());
        assert_eq!(got["generation"], got["observedGeneration"]);
        let etag = got["etag"].as_str().unwrap();
        assert!(etag.starts_with("\"C") && etag.ends_with('"'), "{etag}");
        assert_eq!(
            got["latestReadyRevision"],
            "projects/acme-prod/locations/us-central1/services/api/revisions/api-00002-def"
        );
        assert_eq!(got["latestCreatedRevision"], got["latestReadyRevision"]);
        assert!(got.get("reconciling").is_none());
        assert!(
            got["traffic"][1].get("percent").is_none(),
            "{}",
            got["traffic"]
        );
        assert_eq!(got["traffic"][0]["percent"], 100);
        let canary = &got["trafficStatuses"][1];
        assert_eq!(canary["tag"], "canary");
        assert_eq!(
            canary["uri"],
            format!("{}/__tag/canary---api", fake.base_url())
        );
        assert_eq!(got["template"]["revision"], "api-00002-def");
        assert!(
            got["template"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .ends_with("/api:api-00002-def")
        );
        assert_eq!(got["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
        // Every top-level key of the real capture that this fake models is present.
        for key in [
            "name",
            "uid",
            "generation",
            "createTime",
            "updateTime",
            "creator",
            "lastModifier",
            "ingress",
            "launchStage",
            "template",
            "traffic",
            "observedGeneration",
            "terminalCondition",
            "conditions",
            "latestReadyRevision",
            "latestCreatedRevision",
            "trafficStatuses",
            "uri",
            "urls",
            "etag",
        ] {
            assert!(got.get(key).is_some(), "missing {key}");
        }
    }

    /// Unknown services answer the JSON error envelope; unknown paths an HTML page.
    #[tokio::test]
    async fn not_found_is_json_for_resources_and_html_for_paths() {
        let (fake, _clock) = fake_with_service().await;
        let (status, body) = get_json(
            &fake,
            "/v2/projects/acme-prod/locations/us-central1/services/nope",
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["status"], "NOT_FOUND");
        assert_eq!(body["error"]["code"], 404);

        let response = http()
            .get(format!("{}/v2/nonsense", fake.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Error 404 (Not Found)!!1")
        );
    }

    /// Listing is newest first and pages with pageSize/pageToken; an empty list is `{}`.
    #[tokio::test]
    async fn list_pages_newest_first() {
        let (fake, clock) = fake_with_service().await;
        for name in ["web", "worker"] {
            clock.advance(jiff::SignedDuration::from_secs(1));
            fake.add_service(
                PROJECT,
                REGION,
                name,
                &format!("{name}-00001-aaa"),
                RevisionProfile::healthy(),
                1.0,
            );
        }
        let base = "/v2/projects/acme-prod/locations/us-central1/services";
        let (_, first) = get_json(&fake, &format!("{base}?pageSize=2")).await;
        let names: Vec<&str> = first["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["worker", "web"]);
        let token = first["nextPageToken"].as_str().unwrap();
        let (_, second) = get_json(&fake, &format!("{base}?pageSize=2&pageToken={token}")).await;
        assert_eq!(second["services"].as_array().unwrap().len(), 1);
        assert_eq!(
            second["services"][0]["name"],
            "projects/acme-prod/locations/us-central1/services/api"
        );
        assert!(second.get("nextPageToken").is_none());

        let (_, all) = get_json(&fake, base).await;
        assert_eq!(all["services"].as_array().unwrap().len(), 3);
        let (status, empty) = get_json(
            &fake,
            "/v2/projects/acme-prod/locations/europe-west1/services",
        )
        .await;
        assert_eq!((status, empty), (200, json!({})));
        let (status, bad) = get_json(&fake, &format!("{base}?pageToken=garbage")).await;
        assert_eq!(
            (status, bad["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
    }

    /// PATCH answers a pending Operation; polling completes it with the full Service; the write
    /// lands with a new generation and etag, and is recorded in the history.
    #[tokio::test]
    async fn patch_then_poll_until_done() {
        let (fake, _clock) = fake_with_candidate().await;
        let before = fake.service_json(PROJECT, REGION, "api");
        let mut body = before.clone();
        body["traffic"] = canary_traffic();
        body["annotations"] = json!({"cutover.dev/state": "step-1"});
        let (status, op) = patch_json(&fake, "?updateMask=traffic,annotations", &body).await;
        assert_eq!(status, 200, "{op}");
        let name = op["name"].as_str().unwrap();
        assert!(name.starts_with("projects/acme-prod/locations/us-central1/operations/"));
        assert!(op.get("done").is_none());
        assert_eq!(op["metadata"]["@type"], SERVICE_TYPE);
        assert_eq!(op["metadata"]["reconciling"], true);

        let during = fake.service_json(PROJECT, REGION, "api");
        assert_eq!(during["reconciling"], true);
        assert_eq!(during["generation"], "3");
        assert_eq!(during["observedGeneration"], "2");
        assert_ne!(during["etag"], before["etag"]);
        assert_eq!(
            during["trafficStatuses"], before["trafficStatuses"],
            "observed state lags"
        );

        let (status, done) = get_json(&fake, &format!("/v2/{name}")).await;
        assert_eq!(status, 200);
        assert_eq!(done["done"], true);
        assert_eq!(done["response"]["@type"], SERVICE_TYPE);
        assert_eq!(done["response"]["observedGeneration"], "3");
        assert!(done["response"].get("reconciling").is_none());
        let after = fake.service_json(PROJECT, REGION, "api");
        assert_eq!(after["trafficStatuses"][1]["percent"], 10);
        assert_eq!(after["annotations"]["cutover.dev/state"], "step-1");
        assert_eq!(
            fake.traffic(PROJECT, REGION, "api"),
            vec![
                ("api-00001-abc".to_string(), 90, None),
                ("api-00002-def".to_string(), 10, Some("canary".to_string())),
            ]
        );

        let history = fake.history(PROJECT, REGION, "api");
        assert_eq!(history.len(), 2, "the creation, then this write");
        assert!(history[0].by_hand);
        assert_eq!(
            history[0].allocation,
            vec![("api-00001-abc".to_string(), 100)]
        );
        let change = &history[1];
        assert_eq!(
            change.allocation,
            vec![
                ("api-00001-abc".to_string(), 90),
                ("api-00002-def".to_string(), 10)
            ]
        );
        assert_eq!(
            change.tags,
            vec![("canary".to_string(), "api-00002-def".to_string())]
        );
        assert!(
            change.etag_matched && change.labels_preserved && change.foreign_annotations_preserved
        );
        assert!(change.traffic_changed && !change.template_changed && !change.by_hand);

        let (status, missing) = get_json(
            &fake,
            "/v2/projects/acme-prod/locations/us-central1/operations/nope",
        )
        .await;
        assert_eq!(
            (status, missing["error"]["status"].as_str()),
            (404, Some("NOT_FOUND"))
        );
    }

    /// The official SDK sends enums as numbers and may name revisions in full.
    #[tokio::test]
    async fn numeric_enums_and_full_revision_names_are_accepted() {
        let (fake, _clock) = fake_with_candidate().await;
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["traffic"] = json!([
            {"type": 2, "revision": "api-00001-abc", "percent": 50},
            {"type": 2, "revision": "projects/acme-prod/locations/us-central1/services/api/revisions/api-00002-def", "percent": 50},
        ]);
        body["ingress"] = json!(1);
        body["launchStage"] = json!(4);
        let (status, op) = patch_json(&fake, "?validateOnly=false&allowMissing=false", &body).await;
        assert_eq!(status, 200, "{op}");
        let got = fake.service_json(PROJECT, REGION, "api");
        assert_eq!(got["traffic"][1]["revision"], "api-00002-def");
        assert_eq!(
            got["traffic"][1]["type"],
            "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
        );
        assert_eq!(got["ingress"], "INGRESS_TRAFFIC_ALL");
        assert_eq!(got["launchStage"], "GA");
    }

    /// A write carrying an old etag loses: 409 ABORTED, nothing changes.
    #[tokio::test]
    async fn a_stale_etag_is_aborted() {
        let (fake, _clock) = fake_with_candidate().await;
        let mut body = fake.service_json(PROJECT, REGION, "api");
        fake.touch_labels(PROJECT, REGION, "api");
        body["traffic"] = canary_traffic();
        let (status, error) = patch_json(&fake, "", &body).await;
        assert_eq!(status, 409);
        assert_eq!(error["error"]["status"], "ABORTED");
        assert_eq!(error["error"]["code"], 409);
        assert_eq!(
            fake.history(PROJECT, REGION, "api").len(),
            1,
            "only the creation"
        );
    }

    /// Splits that do not sum to 100, unknown revisions, and bad or duplicate tags are 400.
    #[tokio::test]
    async fn invalid_traffic_is_rejected() {
        let (fake, _clock) = fake_with_candidate().await;
        let service = fake.service_json(PROJECT, REGION, "api");
        let cases = [
            (
                json!([{"type": 2, "revision": "api-00001-abc", "percent": 90}, {"type": 2, "revision": "api-00002-def", "percent": 20}]),
                "sum to 110",
            ),
            (
                json!([{"type": 2, "revision": "api-00009-zzz", "percent": 100}]),
                "api-00009-zzz",
            ),
            (
                json!([{"type": 2, "revision": "api-00001-abc", "percent": 100, "tag": "Canary"}]),
                "Invalid tag",
            ),
            (
                json!([{"type": 2, "revision": "api-00001-abc", "percent": 100, "tag": "c"}, {"type": 2, "revision": "api-00002-def", "tag": "c"}]),
                "more than one",
            ),
            (
                json!([{"type": 2, "revision": "api-00001-abc", "percent": 101}, {"type": 2, "revision": "api-00002-def", "percent": -1}]),
                "between 0 and 100",
            ),
            (
                json!([{"type": 7, "revision": "api-00001-abc", "percent": 100}]),
                "invalid type",
            ),
            (json!(42), "TrafficTarget"),
        ];
        for (traffic, needle) in cases {
            let mut body = service.clone();
            body["traffic"] = traffic.clone();
            let (status, error) = patch_json(&fake, "", &body).await;
            assert_eq!(status, 400, "{traffic}: {error}");
            assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
            let message = error["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(needle),
                "{message} should mention {needle}"
            );
        }
        let response = http()
            .patch(format!("{}{SVC}", fake.base_url()))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        assert_eq!(
            fake.history(PROJECT, REGION, "api").len(),
            1,
            "only the creation"
        );
    }

    /// A changed template is accepted and flagged; reusing the revision name for it is not.
    #[tokio::test]
    async fn template_changes_are_recorded() {
        let (fake, _clock) = fake_with_candidate().await;
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["template"]["containers"][0]["image"] =
            json!("us-central1-docker.pkg.dev/acme-prod/app/api:other");
        let (status, error) = patch_json(&fake, "", &body).await;
        assert_eq!(status, 409, "{error}");
        assert_eq!(error["error"]["status"], "ALREADY_EXISTS");

        body["template"].as_object_mut().unwrap().remove("revision");
        let (status, op) = patch_json(&fake, "", &body).await;
        assert_eq!(status, 200, "{op}");
        let history = fake.history(PROJECT, REGION, "api");
        assert!(history[1].template_changed && !history[1].traffic_changed);

        // With a mask that leaves the template out, whatever template is sent is ignored.
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["template"] = json!({"containers": [{"image": "elsewhere"}]});
        let (status, _) = patch_json(&fake, "?updateMask=traffic", &body).await;
        assert_eq!(status, 200);
        assert!(!fake.history(PROJECT, REGION, "api")[2].template_changed);
    }

    /// Without an update mask a PATCH replaces labels and annotations with what it carries.
    #[tokio::test]
    async fn without_a_mask_absent_annotations_are_cleared() {
        let (fake, _clock) = fake_with_candidate().await;
        fake.set_annotation(
            PROJECT,
            REGION,
            "api",
            "deploy.example.com/commit",
            "a017b5e",
        );
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body.as_object_mut().unwrap().remove("annotations");
        body["traffic"] = canary_traffic();
        let (status, _) = patch_json(&fake, "", &body).await;
        assert_eq!(status, 200);
        let change = fake.history(PROJECT, REGION, "api").pop().unwrap();
        assert!(!change.foreign_annotations_preserved && change.labels_preserved);
        assert!(
            fake.service_json(PROJECT, REGION, "api")
                .get("annotations")
                .is_none()
        );

        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["labels"] = json!({"team": "payments"});
        let (status, _) = patch_json(&fake, "?updateMask=labels.team", &body).await;
        assert_eq!(status, 200);
        assert_eq!(
            fake.service_json(PROJECT, REGION, "api")["labels"]["team"],
            "payments"
        );
        assert!(
            !fake
                .history(PROJECT, REGION, "api")
                .pop()
                .unwrap()
                .labels_preserved
        );

        body.as_object_mut().unwrap().remove("etag");
        let (status, error) = patch_json(&fake, "?updateMask=etag", &body).await;
        assert_eq!(
            (status, error["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
    }

    /// `deploy` pins a LATEST target to the revision that was serving, like `--no-traffic`.
    #[tokio::test]
    async fn deploy_pins_latest() {
        let (fake, _clock) = fake_with_service().await;
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["traffic"] =
            json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]);
        let (status, op) = patch_json(&fake, "?updateMask=traffic", &body).await;
        assert_eq!(status, 200);
        get_json(&fake, &format!("/v2/{}", op["name"].as_str().unwrap())).await;
        let before = fake.service_json(PROJECT, REGION, "api");
        assert_eq!(
            before["trafficStatuses"],
            json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}])
        );

        fake.deploy(
            PROJECT,
            REGION,
            "api",
            "api-00002-def",
            RevisionProfile::healthy(),
        );
        let after = fake.service_json(PROJECT, REGION, "api");
        assert_eq!(
            after["traffic"],
            json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00001-abc", "percent": 100}])
        );
        assert_eq!(
            after["latestReadyRevision"],
            "projects/acme-prod/locations/us-central1/services/api/revisions/api-00002-def"
        );
        assert_eq!(after["template"]["revision"], "api-00002-def");
        assert_ne!(after["etag"], before["etag"]);
        let generation = |v: &Value| v["generation"].as_str().unwrap().parse::<u64>().unwrap();
        assert_eq!(generation(&after), generation(&before) + 1);
        let pinned = fake.history(PROJECT, REGION, "api").pop().unwrap();
        assert!(pinned.by_hand && pinned.traffic_changed && !pinned.template_changed);
        assert_eq!(pinned.allocation, vec![("api-00001-abc".to_string(), 100)]);
        let (_, revisions) = get_json(&fake, &format!("{SVC}/revisions")).await;
        assert_eq!(
            revisions["revisions"][0]["name"],
            after["latestReadyRevision"]
        );
        let (status, revision) = get_json(&fake, &format!("{SVC}/revisions/api-00001-abc")).await;
        assert_eq!(status, 200);
        assert!(
            revision["containers"][0]["image"]
                .as_str()
                .unwrap()
                .ends_with(":api-00001-abc")
        );
    }

    /// Humans and concurrent writers change the etag; a by-hand split is recorded as such.
    #[tokio::test]
    async fn outside_writers_change_the_etag() {
        let (fake, _clock) = fake_with_candidate().await;
        let etag = |f: &crate::FakeGcp| f.service_json(PROJECT, REGION, "api")["etag"].clone();
        let e0 = etag(&fake);
        fake.touch_labels(PROJECT, REGION, "api");
        let e1 = etag(&fake);
        fake.set_annotation(PROJECT, REGION, "api", "owner", "alice");
        let e2 = etag(&fake);
        fake.set_traffic_by_hand(
            PROJECT,
            REGION,
            "api",
            &[("api-00001-abc", 70), ("api-00002-def", 30)],
        );
        let e3 = etag(&fake);
        assert!(e0 != e1 && e1 != e2 && e2 != e3);
        let change = fake.history(PROJECT, REGION, "api").pop().unwrap();
        assert!(change.by_hand && !change.etag_matched);
        assert_eq!(change.allocation[1], ("api-00002-def".to_string(), 30));
        assert_eq!(
            fake.service_json(PROJECT, REGION, "api")["trafficStatuses"][1]["percent"],
            30
        );
    }

    /// Injected 503s answer the proper envelope, then the API recovers.
    #[tokio::test]
    async fn a_burst_of_503_then_recovery() {
        let (fake, _clock) = fake_with_service().await;
        fake.faults().run_errors(2, 503);
        for _ in 0..2 {
            let (status, body) = get_json(&fake, SVC).await;
            assert_eq!(status, 503);
            assert_eq!(body["error"]["status"], "UNAVAILABLE");
        }
        let (status, _) = get_json(&fake, SVC).await;
        assert_eq!(status, 200);
        fake.faults().run_errors(1, 429);
        let (status, body) = get_json(&fake, SVC).await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (429, Some("RESOURCE_EXHAUSTED"))
        );
        let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [503, 503, 200, 429]);
        assert_eq!(
            fake.requests()[0].authorization.as_deref(),
            Some("Bearer fake-token-1")
        );
    }

    /// A conflicting PATCH finds the labels changed by someone else and answers 409 ABORTED; the
    /// retry with the fresh etag goes through.
    #[tokio::test]
    async fn a_conflicting_patch_changes_labels_first() {
        let (fake, _clock) = fake_with_candidate().await;
        fake.faults().conflict_next_patches(1);
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["traffic"] = canary_traffic();
        let (status, error) = patch_json(&fake, "", &body).await;
        assert_eq!(
            (status, error["error"]["status"].as_str()),
            (409, Some("ABORTED"))
        );
        let now = fake.service_json(PROJECT, REGION, "api");
        assert_ne!(now["etag"], body["etag"]);
        assert_eq!(now["labels"]["concurrent-writes"], "1");

        let mut retry = now.clone();
        retry["traffic"] = canary_traffic();
        let (status, _) = patch_json(&fake, "", &retry).await;
        assert_eq!(status, 200);
        let last = fake.history(PROJECT, REGION, "api").pop().unwrap();
        assert!(last.labels_preserved && last.etag_matched);
    }

    /// With `op_polls_before_done(2)` the third poll is the first to see `done`; with time
    /// settling disabled, nothing else completes it.
    #[tokio::test]
    async fn operations_can_take_several_polls() {
        let (fake, clock) = fake_with_candidate().await;
        fake.faults().op_polls_before_done(2).op_settle_after(None);
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["traffic"] = canary_traffic();
        let (_, op) = patch_json(&fake, "", &body).await;
        let path = format!("/v2/{}", op["name"].as_str().unwrap());
        clock.advance(jiff::SignedDuration::from_secs(600));
        for _ in 0..2 {
            let (_, pending) = get_json(&fake, &path).await;
            assert!(pending.get("done").is_none(), "{pending}");
        }
        let response = http()
            .post(format!("{}{path}:wait", fake.base_url()))
            .json(&json!({"timeout": "60s"}))
            .send()
            .await
            .unwrap();
        let done: Value = response.json().await.unwrap();
        assert_eq!(done["done"], true);
    }

    /// Without polling, an operation completes after `op_settle_after` of fake time.
    #[tokio::test]
    async fn operations_settle_on_the_fake_clock() {
        let (fake, clock) = fake_with_candidate().await;
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["traffic"] = canary_traffic();
        patch_json(&fake, "", &body).await;
        assert_eq!(
            fake.service_json(PROJECT, REGION, "api")["reconciling"],
            true
        );
        clock.advance(jiff::SignedDuration::from_secs(10));
        let got = fake.service_json(PROJECT, REGION, "api");
        assert!(got.get("reconciling").is_none());
        assert_eq!(got["trafficStatuses"][1]["percent"], 10);
    }

    /// The tag URL answers the tagged revision's smoke status once the tag is live.
    #[tokio::test]
    async fn tag_urls_answer_the_smoke_status() {
        let (fake, _clock) = fake_with_candidate().await;
        fake.set_profile(
            PROJECT,
            REGION,
            "api",
            "api-00002-def",
            RevisionProfile::healthy().with_smoke_status(503),
        );
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["traffic"] = canary_traffic();
        let (_, op) = patch_json(&fake, "", &body).await;
        let url = format!("{}/__tag/canary---api", fake.base_url());
        assert_eq!(
            http().get(&url).send().await.unwrap().status().as_u16(),
            404,
            "not live yet"
        );
        get_json(&fake, &format!("/v2/{}", op["name"].as_str().unwrap())).await;
        assert_eq!(
            http().get(&url).send().await.unwrap().status().as_u16(),
            503
        );
        fake.set_profile(
            PROJECT,
            REGION,
            "api",
            "api-00002-def",
            RevisionProfile::healthy(),
        );
        let response = http().get(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
        let healthz = http().get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(
            healthz.status().as_u16(),
            200,
            "a smoke path under the tag URL"
        );
        let unknown = format!("{}/__tag/nope---api/healthz", fake.base_url());
        assert_eq!(
            http().get(&unknown).send().await.unwrap().status().as_u16(),
            404
        );
    }

    /// An HTML 404 replaces the answer (the call is not handled); truncated JSON and a cut
    /// connection garble the answer of a call that *was* handled.
    #[tokio::test]
    async fn run_answers_can_be_garbled() {
        use crate::Garble;
        let (fake, _clock) = fake_with_candidate().await;
        fake.faults().run_garbled(1, Garble::Html404);
        let r = http()
            .get(format!("{}{SVC}", fake.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
        assert!(r.text().await.unwrap().contains("<!DOCTYPE html>"));

        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["traffic"] = canary_traffic();
        fake.faults().run_garbled(1, Garble::TruncatedJson);
        let r = http()
            .patch(format!("{}{SVC}", fake.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let text = r.text().await.unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
        assert_eq!(
            fake.history(PROJECT, REGION, "api").len(),
            2,
            "the PATCH landed even though its answer was cut"
        );

        fake.faults().run_garbled(1, Garble::CutConnection);
        // The connection drops mid-answer: depending on how much hyper had flushed, the client
        // fails reading the head or the body.
        let cut = match http().get(format!("{}{SVC}", fake.base_url())).send().await {
            Ok(r) => r.bytes().await.is_err(),
            Err(_) => true,
        };
        assert!(cut, "the answer never completes");
        let (status, _) = get_json(&fake, SVC).await;
        assert_eq!(status, 200, "the next call is fine");
        let counts = fake.faults().counts();
        assert_eq!(
            (
                counts.html_404,
                counts.truncated_json,
                counts.cut_connections
            ),
            (1, 1, 1)
        );
    }

    /// A failing operation ends with an `error`; the spec keeps the write, the routes do not
    /// move, and the service says why until a later write succeeds.
    #[tokio::test]
    async fn operations_can_end_with_an_error() {
        let (fake, _clock) = fake_with_candidate().await;
        fake.faults().failing_operations(1, 13, "routing failed");
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["traffic"] = canary_traffic();
        let (status, op) = patch_json(&fake, "", &body).await;
        assert_eq!(status, 200, "{op}");
        let (_, done) = get_json(&fake, &format!("/v2/{}", op["name"].as_str().unwrap())).await;
        assert_eq!(done["done"], true);
        assert_eq!(
            done["error"],
            json!({"code": 13, "message": "routing failed"})
        );
        assert!(done.get("response").is_none());
        let service = fake.service_json(PROJECT, REGION, "api");
        assert_eq!(service["terminalCondition"]["state"], "CONDITION_FAILED");
        assert_eq!(service["terminalCondition"]["message"], "routing failed");
        assert_eq!(
            service["traffic"][1]["percent"], 10,
            "the spec keeps the write"
        );
        assert_eq!(
            service["trafficStatuses"],
            json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00001-abc", "percent": 100}]),
            "the routes did not move"
        );

        let mut retry = service.clone();
        retry["traffic"] = canary_traffic();
        let (_, op) = patch_json(&fake, "", &retry).await;
        get_json(&fake, &format!("/v2/{}", op["name"].as_str().unwrap())).await;
        let service = fake.service_json(PROJECT, REGION, "api");
        assert_eq!(service["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
        assert_eq!(service["trafficStatuses"][1]["percent"], 10);
        assert_eq!(fake.faults().counts().failed_operations, 1);
    }

    /// A late write is answered 504 at once and lands afterwards; its retries meanwhile find
    /// the backend busy (503): the write cutover gave up on that the platform applies anyway.
    #[tokio::test]
    async fn a_late_write_is_answered_504_and_lands_afterwards() {
        let (fake, _clock) = fake_with_candidate().await;
        fake.faults().late_writes(1);
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["traffic"] = canary_traffic();
        let (status, answer) = patch_json(&fake, "", &body).await;
        assert_eq!(status, 504, "{answer}");
        assert_eq!(fake.faults().counts().late_writes, 1);
        assert_ne!(
            fake.service_json(PROJECT, REGION, "api")["traffic"],
            canary_traffic(),
            "not applied yet"
        );
        let (status, _) = patch_json(&fake, "", &body).await;
        assert_eq!(status, 503, "its retry times out too");
        let landed = async {
            while fake.service_json(PROJECT, REGION, "api")["traffic"] != canary_traffic() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(15), landed)
            .await
            .expect("the write landed after its 504");
    }

    /// A stuck operation is never done, by polls or by time; the next write's operation is.
    #[tokio::test]
    async fn operations_can_get_stuck() {
        let (fake, clock) = fake_with_candidate().await;
        fake.faults().stuck_operations(1);
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["traffic"] = canary_traffic();
        let (_, op) = patch_json(&fake, "", &body).await;
        let path = format!("/v2/{}", op["name"].as_str().unwrap());
        clock.advance(jiff::SignedDuration::from_hours(1));
        for _ in 0..3 {
            let (_, pending) = get_json(&fake, &path).await;
            assert!(pending.get("done").is_none(), "{pending}");
        }
        assert_eq!(
            fake.service_json(PROJECT, REGION, "api")["reconciling"],
            true
        );
        let mut next = fake.service_json(PROJECT, REGION, "api");
        next["traffic"] = canary_traffic();
        let (_, op) = patch_json(&fake, "", &next).await;
        let (_, done) = get_json(&fake, &format!("/v2/{}", op["name"].as_str().unwrap())).await;
        assert_eq!(done["done"], true);
        assert!(
            fake.service_json(PROJECT, REGION, "api")
                .get("reconciling")
                .is_none()
        );
        let (_, still) = get_json(&fake, &path).await;
        assert!(still.get("done").is_none(), "the stuck one stays stuck");
    }

    /// The concurrent writer can change an annotation that is not cutover's instead of a label.
    #[tokio::test]
    async fn a_conflicting_writer_can_change_an_annotation() {
        let (fake, _clock) = fake_with_candidate().await;
        fake.faults()
            .concurrent_change(crate::ConcurrentChange::Annotation)
            .conflict_next_patches(1);
        let mut body = fake.service_json(PROJECT, REGION, "api");
        body["traffic"] = canary_traffic();
        let (status, _) = patch_json(&fake, "", &body).await;
        assert_eq!(status, 409);
        let now = fake.service_json(PROJECT, REGION, "api");
        assert_eq!(now["annotations"]["concurrent.example.com/writes"], "1");
        assert!(now.get("labels").is_none());
        assert_eq!(fake.concurrent_writes(PROJECT, REGION, "api"), (0, 1));
        assert_eq!(fake.faults().counts().conflicts, 1);
    }

    /// A revision that never became Ready is the latest created, not the latest ready, says so
    /// in its condition, and routing to it is recorded as such.
    #[tokio::test]
    async fn unready_revisions_are_visible_and_flagged_when_routed() {
        let (fake, _clock) = fake_with_candidate().await;
        fake.deploy_unready(PROJECT, REGION, "api", "api-00003-bad");
        let service = fake.service_json(PROJECT, REGION, "api");
        assert!(
            service["latestReadyRevision"]
                .as_str()
                .unwrap()
                .ends_with("/api-00002-def")
        );
        assert!(
            service["latestCreatedRevision"]
                .as_str()
                .unwrap()
                .ends_with("/api-00003-bad")
        );
        assert_eq!(service["conditions"][1]["state"], "CONDITION_FAILED");
        assert_eq!(service["terminalCondition"]["state"], "CONDITION_FAILED");
        let (_, revision) = get_json(&fake, &format!("{SVC}/revisions/api-00003-bad")).await;
        assert_eq!(revision["conditions"][0]["state"], "CONDITION_FAILED");

        let mut body = service.clone();
        body["traffic"] = json!([
            {"type": 2, "revision": "api-00001-abc", "percent": 90},
            {"type": 2, "revision": "api-00003-bad", "percent": 10},
        ]);
        let (status, _) = patch_json(&fake, "", &body).await;
        assert_eq!(status, 200);
        let change = fake.history(PROJECT, REGION, "api").pop().unwrap();
        assert_eq!(change.routes_unready, vec!["api-00003-bad".to_string()]);
        assert!(
            fake.history(PROJECT, REGION, "api")[0]
                .routes_unready
                .is_empty()
        );
    }

    /// Chaos draws from its seed: the same seed and the same calls give the same answers, at
    /// about the configured ratio.
    #[tokio::test]
    async fn chaos_is_seeded_and_counted() {
        async fn statuses(seed: u64) -> (Vec<u16>, crate::FaultCounts) {
            let (fake, _clock) = fake_with_service().await;
            let mut chaos = crate::Chaos::new(seed);
            chaos.transient_ratio = 0.3;
            chaos.latency = (
                std::time::Duration::ZERO,
                std::time::Duration::from_micros(200),
            );
            fake.faults().chaos(Some(chaos));
            let mut out = Vec::new();
            let client = http();
            for _ in 0..200 {
                let status = match client.get(format!("{}{SVC}", fake.base_url())).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        if r.bytes().await.is_ok() { status } else { 0 }
                    }
                    Err(_) => 0,
                };
                out.push(status);
            }
            (out, fake.faults().counts())
        }
        let (a, counts) = statuses(7).await;
        let (b, _) = statuses(7).await;
        let (c, _) = statuses(8).await;
        assert_eq!(a, b, "same seed, same faults");
        assert_ne!(a, c, "another seed, other faults");
        let failed = a.iter().filter(|s| **s != 200).count() as u64;
        assert!(
            (30..=90).contains(&failed),
            "{failed} of 200 failed at 30 %"
        );
        assert_eq!(failed, counts.total());
        assert!(counts.statuses.contains_key(&503) && counts.cut_connections > 0);
        assert!(counts.delayed_calls > 100);
    }

    /// Latency is injected on API calls.
    #[tokio::test]
    async fn latency_delays_api_calls() {
        let (fake, _clock) = fake_with_service().await;
        fake.faults().latency(std::time::Duration::from_millis(60));
        let started = std::time::Instant::now();
        let (status, _) = get_json(&fake, SVC).await;
        assert_eq!(status, 200);
        assert!(started.elapsed() >= std::time::Duration::from_millis(60));
    }
}
