//! Fake Cloud Monitoring v3 `projects.timeSeries.list` for the two Cloud Run metrics cutover
//! judges a step by: `run.googleapis.com/request_count` and `run.googleapis.com/request_latencies`.
//!
//! It parses the query the way the real API takes it (docs/gcp-wire.md §2: a conjunction filter,
//! `interval.*`, `aggregation.*` with repeated `groupByFields`, `view`, paging by points), asks
//! the model (`model.rs`) for per-minute numbers of every revision, aligns and reduces them, and
//! answers in the real shape: one series per group, points newest first, int64 as strings, `unit`
//! at the top, `{}` when nothing matched. Points show up only `ingest_lag` after their period
//! ends, because Cloud Run metrics land late and cutover must cope with that.
//!
//! Injected oddities (`faults.rs`): `executionErrors` with part of the data, empty pages whose
//! `nextPageToken` points at the same place, and series missing their newest point.
//!
//! Not modelled (answered 400, saying so): aligners other than ALIGN_NONE/DELTA/SUM, reducers
//! other than REDUCE_NONE/SUM, secondary aggregation, filter operators other than `=` and `AND`.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
    http::Uri,
};
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::faults::Oddity;
use super::model::{self, ClassDist, RevisionInputs, Sampler};
use super::model::{RevisionProfile, Timeline};
use super::split_targets::{BACKEND_ZONE, FakePlatform, SplitCore};
use super::traffic::{GROWTH_FACTOR, NUM_FINITE_BUCKETS, SCALE};
use super::wire::{self, RpcError, int64};
use super::world::{Revision, Service, Shared, World, lock};

const REQUEST_COUNT: &str = "run.googleapis.com/request_count";
const REQUEST_LATENCIES: &str = "run.googleapis.com/request_latencies";
const AE_RESPONSE_COUNT: &str = "appengine.googleapis.com/http/server/response_count";
const AE_RESPONSE_LATENCIES: &str = "appengine.googleapis.com/http/server/response_latencies";
const LB_REQUEST_COUNT: &str = "loadbalancing.googleapis.com/https/backend_request_count";
const LB_LATENCIES: &str = "loadbalancing.googleapis.com/https/backend_latencies";
const MINUTE_MS: i64 = 60_000;
/// Cloud Monitoring keeps these metrics six weeks; older periods are never computed.
const RETENTION_MS: i64 = 42 * 24 * 3600 * 1000;
/// "> 100000 or empty ⇒ 100000" (docs/gcp-wire.md §2.1).
const MAX_PAGE_SIZE: usize = 100_000;

const ALIGNERS: &[(&str, i64)] = &[
    ("ALIGN_NONE", 0),
    ("ALIGN_DELTA", 1),
    ("ALIGN_RATE", 2),
    ("ALIGN_INTERPOLATE", 3),
    ("ALIGN_NEXT_OLDER", 4),
    ("ALIGN_MIN", 10),
    ("ALIGN_MAX", 11),
    ("ALIGN_MEAN", 12),
    ("ALIGN_COUNT", 13),
    ("ALIGN_SUM", 14),
    ("ALIGN_STDDEV", 15),
    ("ALIGN_COUNT_TRUE", 16),
    ("ALIGN_COUNT_FALSE", 24),
    ("ALIGN_FRACTION_TRUE", 17),
    ("ALIGN_PERCENTILE_99", 18),
    ("ALIGN_PERCENTILE_95", 19),
    ("ALIGN_PERCENTILE_50", 20),
    ("ALIGN_PERCENTILE_05", 21),
    ("ALIGN_PERCENT_CHANGE", 23),
];
const ALIGN_NONE: i64 = 0;
const ALIGN_DELTA: i64 = 1;
const ALIGN_SUM: i64 = 14;

const REDUCERS: &[(&str, i64)] = &[
    ("REDUCE_NONE", 0),
    ("REDUCE_MEAN", 1),
    ("REDUCE_MIN", 2),
    ("REDUCE_MAX", 3),
    ("REDUCE_SUM", 4),
    ("REDUCE_STDDEV", 5),
    ("REDUCE_COUNT", 6),
    ("REDUCE_COUNT_TRUE", 7),
    ("REDUCE_COUNT_FALSE", 15),
    ("REDUCE_FRACTION_TRUE", 8),
    ("REDUCE_PERCENTILE_99", 9),
    ("REDUCE_PERCENTILE_95", 10),
    ("REDUCE_PERCENTILE_50", 11),
    ("REDUCE_PERCENTILE_05", 12),
];
const REDUCE_NONE: i64 = 0;
const REDUCE_SUM: i64 = 4;

/// The platform whose targets a metric describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Run,
    AppEngine,
    LoadBalancer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    RequestCount,
    RequestLatencies,
    AeResponseCount,
    AeResponseLatencies,
    LbRequestCount,
    LbLatencies,
}

impl Metric {
    fn parse(metric_type: &str) -> Option<Self> {
        match metric_type {
            REQUEST_COUNT => Some(Metric::RequestCount),
            REQUEST_LATENCIES => Some(Metric::RequestLatencies),
            AE_RESPONSE_COUNT => Some(Metric::AeResponseCount),
            AE_RESPONSE_LATENCIES => Some(Metric::AeResponseLatencies),
            LB_REQUEST_COUNT => Some(Metric::LbRequestCount),
            LB_LATENCIES => Some(Metric::LbLatencies),
            _ => None,
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Metric::RequestCount => REQUEST_COUNT,
            Metric::RequestLatencies => REQUEST_LATENCIES,
            Metric::AeResponseCount => AE_RESPONSE_COUNT,
            Metric::AeResponseLatencies => AE_RESPONSE_LATENCIES,
            Metric::LbRequestCount => LB_REQUEST_COUNT,
            Metric::LbLatencies => LB_LATENCIES,
        }
    }

    fn is_count(self) -> bool {
        matches!(
            self,
            Metric::RequestCount | Metric::AeResponseCount | Metric::LbRequestCount
        )
    }

    fn source(self) -> Source {
        match self {
            Metric::RequestCount | Metric::RequestLatencies => Source::Run,
            Metric::AeResponseCount | Metric::AeResponseLatencies => Source::AppEngine,
            Metric::LbRequestCount | Metric::LbLatencies => Source::LoadBalancer,
        }
    }

    fn resource_type(self) -> &'static str {
        match self.source() {
            Source::Run => "cloud_run_revision",
            Source::AppEngine => "gae_app",
            Source::LoadBalancer => "https_lb_rule",
        }
    }

    fn unit(self) -> &'static str {
        if self.is_count() { "1" } else { "ms" }
    }

    fn value_type(self) -> &'static str {
        if self.is_count() {
            "INT64"
        } else {
            "DISTRIBUTION"
        }
    }
}

/// The two response-code classes the model produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Ok,
    Errors,
}

impl Class {
    fn code_class(self) -> &'static str {
        match self {
            Class::Ok => "2xx",
            Class::Errors => "5xx",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Class::Ok => "200",
            Class::Errors => "500",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Resource,
    Metric,
}

/// `resource.labels.X` or `metric.labels.X` (the singular `label` is accepted too).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LabelRef {
    scope: Scope,
    name: String,
}

fn parse_label_ref(field: &str) -> Option<LabelRef> {
    let (scope, rest) = if let Some(rest) = field.strip_prefix("resource.") {
        (Scope::Resource, rest)
    } else if let Some(rest) = field.strip_prefix("metric.") {
        (Scope::Metric, rest)
    } else {
        return None;
    };
    let name = rest
        .strip_prefix("labels.")
        .or_else(|| rest.strip_prefix("label."))?;
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then(|| LabelRef {
        scope,
        name: name.to_string(),
    })
}

#[derive(Debug, PartialEq)]
struct Filter {
    metric_type: String,
    resource_type: Option<String>,
    labels: Vec<(LabelRef, String)>,
}

/// Parses `key = "value" AND key = "value" …` (spaces around `=` optional).
fn parse_filter(input: &str) -> Result<Filter, String> {
    let mut clauses: Vec<(String, String)> = Vec::new();
    let mut rest = input.trim_start();
    loop {
        let key_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        if key_len == 0 {
            return Err(format!("expected a field name at '{rest}'"));
        }
        let (key, after_key) = rest.split_at(key_len);
        let after_eq = after_key
            .trim_start()
            .strip_prefix('=')
            .ok_or_else(|| format!("expected '=' after '{key}'"))?;
        let quoted = after_eq
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("expected a double-quoted value for '{key}'"))?;
        let mut value = String::new();
        let mut end = None;
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, escaped)) => value.push(escaped),
                    None => break,
                },
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("unterminated string for '{key}'"))?;
        clauses.push((key.to_string(), value));
        let after_value = quoted[end..].trim_start();
        if after_value.is_empty() {
            break;
        }
        rest = after_value
            .strip_prefix("AND")
            .filter(|r| r.starts_with(char::is_whitespace))
            .ok_or_else(|| format!("expected AND at '{after_value}'"))?
            .trim_start();
    }

    let mut metric_type: Option<String> = None;
    let mut resource_type: Option<String> = None;
    let mut labels = Vec::new();
    for (key, value) in clauses {
        match key.as_str() {
            "metric.type" => {
                if metric_type.as_ref().is_some_and(|m| *m != value) {
                    return Err("the filter must name exactly one metric.type".to_string());
                }
                metric_type = Some(value);
            }
            "resource.type" => {
                if resource_type.as_ref().is_some_and(|r| *r != value) {
                    // Two different resource types can never both hold: nothing matches.
                    resource_type = Some(String::new());
                } else {
                    resource_type = Some(value);
                }
            }
            field => {
                let label =
                    parse_label_ref(field).ok_or_else(|| format!("unsupported field '{field}'"))?;
                labels.push((label, value));
            }
        }
    }
    Ok(Filter {
        metric_type: metric_type.ok_or("the filter must name a metric.type")?,
        resource_type,
        labels,
    })
}

struct Query {
    metric: Metric,
    filter: Filter,
    start_ms: i64,
    end_ms: i64,
    period_ms: i64,
    /// REDUCE_SUM over `group_by` (otherwise every series stands alone).
    reduce: bool,
    group_by: Vec<LabelRef>,
    headers_only: bool,
    page_size: usize,
    offset: usize,
}

fn enum_param(
    pairs: &[(String, String)],
    key: &str,
    table: &[(&str, i64)],
) -> Result<Option<i64>, RpcError> {
    let Some(raw) = wire::param(pairs, key).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let value = match raw.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(raw),
    };
    wire::decode_enum(&value, table)
        .map(Some)
        .ok_or_else(|| RpcError::bad_field(key, format!("Invalid value at '{key}' ({raw}).")))
}

fn not_modelled(key: &str, table: &[(&'static str, i64)], n: i64, supported: &str) -> RpcError {
    let name = wire::enum_name(table, n).unwrap_or("?");
    RpcError::bad_field(
        key,
        format!(
            "{key} {name} is not modelled by cutover's fake Monitoring (supported: {supported})."
        ),
    )
}

/// `"60s"` → 60 000 ms; must be a positive whole multiple of a minute.
fn parse_period(raw: &str) -> Result<i64, RpcError> {
    let bad = || {
        RpcError::bad_field(
            "aggregation.alignmentPeriod",
            format!("The alignment period must be a positive multiple of 60s, got '{raw}'."),
        )
    };
    let seconds: f64 = raw
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    if !((60.0..=1e9).contains(&seconds) && seconds % 60.0 == 0.0) {
        return Err(bad());
    }
    Ok(seconds as i64 * 1000)
}

fn parse_query(pairs: &[(String, String)]) -> Result<Query, RpcError> {
    let text = wire::param(pairs, "filter")
        .filter(|f| !f.trim().is_empty())
        .ok_or_else(|| RpcError::bad_field("filter", "The filter is required."))?;
    let filter = parse_filter(text).map_err(|why| {
        RpcError::bad_field(
            "filter",
            format!("Field filter had an invalid value of \"{text}\": {why}."),
        )
    })?;
    let metric = Metric::parse(&filter.metric_type).ok_or_else(|| {
        RpcError::not_found(format!(
            "Cannot find metric(s) that match type = \"{}\".",
            filter.metric_type
        ))
    })?;

    let time = |key: &str| -> Result<i64, RpcError> {
        let raw = wire::param(pairs, key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| RpcError::bad_field(key, format!("Field {key} is required.")))?;
        raw.parse::<Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|e| RpcError::bad_field(key, format!("Invalid value at '{key}' ({raw}): {e}")))
    };
    let start_ms = time("interval.startTime")?;
    let end_ms = time("interval.endTime")?;
    if start_ms > end_ms {
        return Err(RpcError::invalid_argument(
            "The start time must be before the end time.",
        ));
    }

    let aligner_key = "aggregation.perSeriesAligner";
    let reducer_key = "aggregation.crossSeriesReducer";
    let aligner = enum_param(pairs, aligner_key, ALIGNERS)?.unwrap_or(ALIGN_NONE);
    let reducer = enum_param(pairs, reducer_key, REDUCERS)?.unwrap_or(REDUCE_NONE);
    if ![ALIGN_NONE, ALIGN_DELTA, ALIGN_SUM].contains(&aligner) {
        return Err(not_modelled(
            aligner_key,
            ALIGNERS,
            aligner,
            "ALIGN_NONE, ALIGN_DELTA, ALIGN_SUM",
        ));
    }
    if ![REDUCE_NONE, REDUCE_SUM].contains(&reducer) {
        return Err(not_modelled(
            reducer_key,
            REDUCERS,
            reducer,
            "REDUCE_NONE, REDUCE_SUM",
        ));
    }
    for (key, table) in [
        ("secondaryAggregation.perSeriesAligner", ALIGNERS),
        ("secondaryAggregation.crossSeriesReducer", REDUCERS),
    ] {
        if let Some(n) = enum_param(pairs, key, table)?.filter(|n| *n != 0) {
            return Err(not_modelled(key, table, n, "none"));
        }
    }
    let period = wire::param(pairs, "aggregation.alignmentPeriod")
        .filter(|p| !p.is_empty())
        .map(parse_period)
        .transpose()?;
    let period_ms = if aligner == ALIGN_NONE {
        if reducer != REDUCE_NONE {
            return Err(RpcError::bad_field(
                reducer_key,
                "A crossSeriesReducer needs a perSeriesAligner other than ALIGN_NONE.",
            ));
        }
        // Raw DELTA points: Cloud Run samples every 60 s.
        MINUTE_MS
    } else {
        period.ok_or_else(|| {
            RpcError::bad_field(
                "aggregation.alignmentPeriod",
                "The alignment period is required when perSeriesAligner is not ALIGN_NONE.",
            )
        })?
    };

    let mut group_by = Vec::new();
    for (_, field) in pairs
        .iter()
        .filter(|(k, _)| k == "aggregation.groupByFields")
    {
        if field == "resource.type" {
            continue; // always implicit
        }
        group_by.push(parse_label_ref(field).ok_or_else(|| {
            RpcError::bad_field(
                "aggregation.groupByFields",
                format!("Invalid group-by field '{field}'."),
            )
        })?);
    }

    let headers_only = match wire::param(pairs, "view") {
        None | Some("") | Some("FULL") | Some("0") => false,
        Some("HEADERS") | Some("1") => true,
        Some(other) => {
            return Err(RpcError::bad_field(
                "view",
                format!("Invalid value at 'view' ({other})."),
            ));
        }
    };
    let page_size = match wire::int_param(pairs, "pageSize")? {
        n if n <= 0 => MAX_PAGE_SIZE,
        n => (n as usize).min(MAX_PAGE_SIZE),
    };
    let offset = wire::page_offset(wire::param(pairs, "pageToken"))?;
    Ok(Query {
        metric,
        filter,
        start_ms,
        end_ms,
        period_ms,
        reduce: reducer == REDUCE_SUM,
        group_by,
        headers_only,
        page_size,
        offset,
    })
}

pub(crate) async fn list_time_series(
    State(shared): State<Shared>,
    Path(project): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, RpcError> {
    let pairs = wire::query_pairs(&uri)?;
    let query = parse_query(&pairs)?;
    let mut w = lock(&shared);
    let oddity = w.faults.take_oddity();
    if oddity == Some(Oddity::EmptyPage) {
        // An empty page that says "there is more, from the same place".
        return Ok(Json(
            json!({"nextPageToken": wire::page_token(query.offset)}),
        ));
    }
    let mut response = answer(&w, &project, &query);
    match oddity {
        Some(Oddity::ExecutionErrors) => {
            // Some of the data, and the errors that kept the rest out.
            if let Some(Value::Array(series)) = response.get_mut("timeSeries") {
                let keep = w.faults.draw(series.len() + 1).min(series.len());
                series.truncate(keep);
            }
            if let Value::Object(o) = &mut response {
                if o.get("timeSeries")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty)
                {
                    o.remove("timeSeries");
                }
                o.insert(
                    "executionErrors".into(),
                    json!([{
                        "code": 14,
                        "message": "Some time series could not be read from one of the \
                                    storage backends; the result may be incomplete."
                    }]),
                );
            }
        }
        Some(Oddity::PartialSeries) => {
            // The newest minute of every series has not landed yet.
            if let Some(Value::Array(series)) = response.get_mut("timeSeries") {
                for s in series.iter_mut() {
                    if let Some(Value::Array(points)) = s.get_mut("points")
                        && !points.is_empty()
                    {
                        points.remove(0);
                    }
                }
                series.retain(|s| {
                    s.get("points")
                        .and_then(Value::as_array)
                        .is_none_or(|p| !p.is_empty())
                });
                if series.is_empty()
                    && let Value::Object(o) = &mut response
                {
                    o.remove("timeSeries");
                    o.remove("unit");
                }
            }
        }
        _ => {}
    }
    Ok(Json(response))
}

fn resource(name: &str) -> LabelRef {
    LabelRef {
        scope: Scope::Resource,
        name: name.to_string(),
    }
}

fn metric_label(name: &str) -> LabelRef {
    LabelRef {
        scope: Scope::Metric,
        name: name.to_string(),
    }
}

/// Every label a raw Cloud Run series carries.
fn raw_labels(service: &Service, revision: &Revision, class: Class) -> BTreeMap<LabelRef, String> {
    BTreeMap::from([
        (resource("project_id"), service.key.project.clone()),
        (resource("service_name"), service.key.service.clone()),
        (resource("revision_name"), revision.name.clone()),
        (resource("location"), service.key.region.clone()),
        (resource("configuration_name"), service.key.service.clone()),
        (
            metric_label("response_code_class"),
            class.code_class().to_string(),
        ),
        (metric_label("response_code"), class.code().to_string()),
    ])
}

/// Every label a raw `gae_app` series carries (docs/gcp-wire.md §13.1).
fn gae_labels(
    project: &str,
    service: &str,
    version: &str,
    class: Class,
) -> BTreeMap<LabelRef, String> {
    BTreeMap::from([
        (resource("project_id"), project.to_string()),
        (resource("module_id"), service.to_string()),
        (resource("version_id"), version.to_string()),
        (resource("zone"), "us-central1".to_string()),
        (metric_label("response_code"), class.code().to_string()),
        (metric_label("loading"), "false".to_string()),
    ])
}

/// Every label a raw `https_lb_rule` series carries (docs/gcp-wire.md §13.2).
fn lb_labels(project: &str, map: &str, backend: &str, class: Class) -> BTreeMap<LabelRef, String> {
    BTreeMap::from([
        (resource("project_id"), project.to_string()),
        (resource("region"), "global".to_string()),
        (resource("url_map_name"), map.to_string()),
        (resource("forwarding_rule_name"), format!("{map}-https")),
        (resource("target_proxy_name"), format!("{map}-proxy")),
        (resource("matched_url_path_rule"), "UNMATCHED".to_string()),
        (resource("backend_target_name"), backend.to_string()),
        (
            resource("backend_target_type"),
            "BACKEND_SERVICE".to_string(),
        ),
        (resource("backend_name"), format!("{backend}-mig")),
        (resource("backend_type"), "INSTANCE_GROUP".to_string()),
        (resource("backend_scope"), BACKEND_ZONE.to_string()),
        (resource("backend_scope_type"), "ZONE".to_string()),
        (metric_label("response_code"), class.code().to_string()),
        (
            metric_label("response_code_class"),
            class.code().to_string(),
        ),
        (metric_label("proxy_continent"), "America".to_string()),
        (metric_label("cache_result"), "DISABLED".to_string()),
        (metric_label("protocol"), "HTTP/1.1".to_string()),
    ])
}

/// One member (revision, version, backend) of one target whose series may match: its inputs
/// to the model and its raw labels per class.
struct Candidate<'a> {
    rps: &'a Timeline<f64>,
    /// Where its share of the target's requests comes from (computed for matching members only).
    share: ShareOf<'a>,
    profile: &'a Timeline<RevisionProfile>,
    seed: u64,
    born_ms: i64,
    labels: [(Class, BTreeMap<LabelRef, String>); 2],
}

/// A member's share of its target's requests, from the target's history.
#[derive(Clone, Copy)]
enum ShareOf<'a> {
    Run(&'a Service, &'a str),
    Split(&'a SplitCore, &'a str),
}

/// Every member of every target of `project` that `metric` describes.
fn candidates<'a>(
    w: &'a World,
    project: &str,
    metric: Metric,
    named: Option<&String>,
) -> Vec<Candidate<'a>> {
    let mut out = Vec::new();
    let classes = |f: &dyn Fn(Class) -> BTreeMap<LabelRef, String>| {
        [(Class::Ok, f(Class::Ok)), (Class::Errors, f(Class::Errors))]
    };
    match metric.source() {
        Source::Run => {
            // A query naming its service (cutover's always do) only looks at that name: the
            // filter below would drop every other service's series anyway.
            let named = named.map(|n| n.as_str());
            for service in w
                .in_project(project)
                .filter(|s| named.is_none_or(|n| s.key.service == n))
            {
                for revision in &service.revisions {
                    let key = &service.key;
                    out.push(Candidate {
                        rps: &service.rps,
                        share: ShareOf::Run(service, &revision.name),
                        profile: &revision.profile,
                        seed: model::seed(&[
                            &key.project,
                            &key.region,
                            &key.service,
                            &revision.name,
                        ]),
                        born_ms: service.rps.start_ms(),
                        labels: classes(&|c| raw_labels(service, revision, c)),
                    });
                }
            }
        }
        Source::AppEngine | Source::LoadBalancer => {
            let platform = if metric.source() == Source::AppEngine {
                FakePlatform::AppEngine
            } else {
                FakePlatform::LoadBalancer
            };
            for t in w
                .split_targets
                .iter()
                .filter(|t| t.core.key.platform == platform && t.core.key.project == project)
            {
                let key = &t.core.key;
                for m in &t.core.members {
                    let labels = |c| match platform {
                        FakePlatform::AppEngine => gae_labels(&key.project, &key.name, &m.name, c),
                        _ => lb_labels(&key.project, &key.name, &m.name, c),
                    };
                    out.push(Candidate {
                        rps: &t.core.rps,
                        share: ShareOf::Split(&t.core, &m.name),
                        profile: &m.profile,
                        seed: model::seed(&[&key.to_string(), &m.name]),
                        born_ms: t.core.rps.start_ms(),
                        labels: classes(&labels),
                    });
                }
            }
        }
    }
    out
}

/// One member whose series matched, with the output series each of its classes feeds.
struct Matched<'a> {
    candidate: Candidate<'a>,
    feeds: Vec<(Class, BTreeMap<LabelRef, String>)>,
}

fn answer(w: &World, project: &str, q: &Query) -> Value {
    let now_ms = w.clock.now().as_millisecond();
    let lag_ms = i64::try_from(w.faults.ingest_lag.as_millis()).unwrap_or(i64::MAX);
    let visible_end = q.end_ms.min(now_ms.saturating_sub(lag_ms));

    let resource_matches = q
        .filter
        .resource_type
        .as_deref()
        .is_none_or(|t| t == q.metric.resource_type());
    let mut sources = Vec::new();
    let all = if resource_matches {
        let named = q
            .filter
            .labels
            .iter()
            .find(|(label, _)| *label == resource("service_name"))
            .map(|(_, name)| name);
        candidates(w, project, q.metric, named)
    } else {
        Vec::new()
    };
    for candidate in all {
        let feeds: Vec<_> = candidate
            .labels
            .iter()
            .filter_map(|(class, labels)| {
                let wanted = q
                    .filter
                    .labels
                    .iter()
                    .all(|(label, value)| labels.get(label) == Some(value));
                if !wanted {
                    return None;
                }
                let key = if q.reduce {
                    q.group_by
                        .iter()
                        .filter_map(|g| Some((g.clone(), labels.get(g)?.clone())))
                        .collect()
                } else {
                    labels.clone()
                };
                Some((*class, key))
            })
            .collect();
        if !feeds.is_empty() {
            sources.push(Matched { candidate, feeds });
        }
    }

    // Period ends, newest first: aligned to the period, inside (start, end], visible after the
    // ingest lag, overlapping the life of some matching member, within retention.
    let born = sources
        .iter()
        .map(|s| s.candidate.born_ms)
        .min()
        .unwrap_or(i64::MAX);
    let lower = q
        .start_ms
        .max(born)
        .max(now_ms.saturating_sub(RETENTION_MS));
    let mut ends = Vec::new();
    let mut end = visible_end.div_euclid(q.period_ms) * q.period_ms;
    while end > lower {
        ends.push(end);
        end -= q.period_ms;
    }

    let mut groups: BTreeMap<BTreeMap<LabelRef, String>, Vec<ClassDist>> = BTreeMap::new();
    let mut sampler = Sampler::default();
    for source in &sources {
        let c = &source.candidate;
        let share = match c.share {
            ShareOf::Run(service, revision) => service.share_timeline(revision),
            ShareOf::Split(core, member) => core.share_timeline(member),
        };
        let inputs = RevisionInputs {
            rps: c.rps,
            share: &share,
            profile: c.profile,
            seed: c.seed,
        };
        for (_, group) in &source.feeds {
            groups
                .entry(group.clone())
                .or_insert_with(|| vec![ClassDist::default(); ends.len()]);
        }
        for (k, &period_end) in ends.iter().enumerate() {
            let mut minute = period_end - q.period_ms;
            while minute < period_end {
                let stats = sampler.minute(&inputs, minute);
                for (class, group) in &source.feeds {
                    let dist = match class {
                        Class::Ok => &stats.ok,
                        Class::Errors => &stats.errors,
                    };
                    if let Some(values) = groups.get_mut(group) {
                        values[k].merge(dist);
                    }
                }
                minute += MINUTE_MS;
            }
        }
    }

    let series: Vec<(Value, Vec<Value>)> = groups
        .into_iter()
        .filter(|(_, values)| values.iter().any(|v| v.count > 0))
        .map(|(labels, values)| {
            let points = ends
                .iter()
                .zip(&values)
                .filter(|(_, v)| v.count > 0 || w.faults.zero_points)
                .filter_map(|(&end, v)| point(end - q.period_ms, end, q.metric, v))
                .collect();
            (header(q.metric, &labels), points)
        })
        .collect();

    let (page, next) = paginate(series, q);
    if page.is_empty() {
        return json!({});
    }
    let mut response = json!({"timeSeries": page, "unit": q.metric.unit()});
    if let Some(next) = next {
        response["nextPageToken"] = json!(next);
    }
    response
}

fn header(metric: Metric, labels: &BTreeMap<LabelRef, String>) -> Value {
    let of_scope = |scope: Scope| -> Map<String, Value> {
        labels
            .iter()
            .filter(|(l, _)| l.scope == scope)
            .map(|(l, v)| (l.name.clone(), json!(v)))
            .collect()
    };
    let mut metric_part = json!({"type": metric.type_name()});
    let metric_labels = of_scope(Scope::Metric);
    if !metric_labels.is_empty() {
        metric_part["labels"] = Value::Object(metric_labels);
    }
    let mut resource_part = json!({"type": metric.resource_type()});
    let resource_labels = of_scope(Scope::Resource);
    if !resource_labels.is_empty() {
        resource_part["labels"] = Value::Object(resource_labels);
    }
    json!({
        "metric": metric_part,
        "resource": resource_part,
        "metricKind": "DELTA",
        "valueType": metric.value_type(),
    })
}

fn point(start_ms: i64, end_ms: i64, metric: Metric, value: &ClassDist) -> Option<Value> {
    let start = Timestamp::from_millisecond(start_ms).ok()?;
    let end = Timestamp::from_millisecond(end_ms).ok()?;
    let value = if metric.is_count() {
        json!({"int64Value": int64(value.count)})
    } else {
        json!({"distributionValue": distribution(value)})
    };
    Some(json!({
        "interval": {"startTime": start.to_string(), "endTime": end.to_string()},
        "value": value,
    }))
}

/// A JSON number, integral values without a fraction (`1`, not `1.0`), as proto3 JSON prints.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

fn distribution(d: &ClassDist) -> Value {
    let mut o = Map::new();
    if d.count > 0 {
        o.insert("count".into(), int64(d.count));
        o.insert("mean".into(), number(d.mean));
        if d.sum_of_squared_deviation > 0.0 {
            o.insert(
                "sumOfSquaredDeviation".into(),
                number(d.sum_of_squared_deviation),
            );
        }
    }
    o.insert(
        "bucketOptions".into(),
        json!({"exponentialBuckets": {
            "numFiniteBuckets": NUM_FINITE_BUCKETS,
            "growthFactor": number(GROWTH_FACTOR),
            "scale": number(SCALE),
        }}),
    );
    // Trailing empty buckets are left out, as the API allows.
    if let Some(last) = d.buckets.iter().rposition(|&n| n > 0) {
        o.insert(
            "bucketCounts".into(),
            Value::Array(d.buckets[..=last].iter().map(|&n| int64(n)).collect()),
        );
    }
    Value::Object(o)
}

/// One page: `pageSize` counts points (FULL) or series (HEADERS). A series cut by a page
/// boundary continues, header repeated, on the next page.
fn paginate(series: Vec<(Value, Vec<Value>)>, q: &Query) -> (Vec<Value>, Option<String>) {
    let until = q.offset.saturating_add(q.page_size);
    if q.headers_only {
        let total = series.len();
        let page = series
            .into_iter()
            .skip(q.offset)
            .take(q.page_size)
            .map(|(h, _)| h)
            .collect();
        return (page, (until < total).then(|| wire::page_token(until)));
    }
    let total: usize = series.iter().map(|(_, points)| points.len()).sum();
    let mut page = Vec::new();
    let mut seen = 0;
    for (mut header, points) in series {
        let n = points.len();
        let from = q.offset.saturating_sub(seen).min(n);
        let to = until.saturating_sub(seen).min(n);
        seen += n;
        if from < to {
            header["points"] = Value::Array(points[from..to].to_vec());
            page.push(header);
        }
    }
    (page, (until < total).then(|| wire::page_token(until)))
}

#[cfg(test)]
mod tests {
    use super::super::model::percentile_from_buckets;
    use super::super::testkit::*;
    use super::*;
    use crate::{FakeGcp, RevisionProfile};
    use jiff::SignedDuration;
    use proptest::prelude::*;

    const COUNT_BY_REVISION: &[(&str, &str)] = &[
        ("aggregation.alignmentPeriod", "60s"),
        ("aggregation.perSeriesAligner", "ALIGN_DELTA"),
        ("aggregation.crossSeriesReducer", "REDUCE_SUM"),
        ("aggregation.groupByFields", "resource.label.revision_name"),
    ];

    async fn list(
        fake: &FakeGcp,
        filter: &str,
        from: &str,
        to: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut query = vec![
            ("filter", filter.to_string()),
            ("interval.startTime", from.to_string()),
            ("interval.endTime", to.to_string()),
        ];
        query.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let response = http()
            .get(format!(
                "{}/v3/projects/acme-prod/timeSeries",
                fake.base_url()
            ))
            .query(&query)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    fn count_filter(extra: &str) -> String {
        format!(
            "metric.type=\"run.googleapis.com/request_count\" AND resource.type = \"cloud_run_revision\" AND resource.labels.service_name=\"api\"{extra}"
        )
    }

    /// The series whose `resource.labels.revision_name` is `revision`.
    fn series_of<'a>(response: &'a Value, revision: &str) -> &'a Value {
        response["timeSeries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["resource"]["labels"]["revision_name"] == revision)
            .unwrap_or_else(|| panic!("no series for {revision} in {response}"))
    }

    fn counts(series: &Value) -> Vec<u64> {
        series["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"]["int64Value"].as_str().unwrap().parse().unwrap())
            .collect()
    }

    fn ends(series: &Value) -> Vec<String> {
        series["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["interval"]["endTime"].as_str().unwrap().to_string())
            .collect()
    }

    /// 100 rps with 10 % on the candidate for five minutes is ~3000 candidate requests; after
    /// moving to 50 % it is ~3000 a minute. Points are newest first, one per minute.
    #[tokio::test]
    async fn metrics_follow_traffic() {
        let (fake, clock) = fake_with_candidate().await;
        fake.set_traffic_by_hand(
            PROJECT,
            REGION,
            "api",
            &[("api-00001-abc", 90), ("api-00002-def", 10)],
        );
        clock.advance(SignedDuration::from_mins(5));
        fake.set_traffic_by_hand(
            PROJECT,
            REGION,
            "api",
            &[("api-00001-abc", 50), ("api-00002-def", 50)],
        );
        clock.advance(SignedDuration::from_mins(7));

        let (status, first) = list(
            &fake,
            &count_filter(""),
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:05:00Z",
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["unit"], "1");
        let candidate = series_of(&first, "api-00002-def");
        assert_eq!(candidate["metricKind"], "DELTA");
        assert_eq!(candidate["valueType"], "INT64");
        assert_eq!(candidate["metric"]["type"], REQUEST_COUNT);
        assert_eq!(candidate["resource"]["type"], "cloud_run_revision");
        assert_eq!(
            ends(candidate),
            ["10:05", "10:04", "10:03", "10:02", "10:01"].map(|m| format!("2026-08-20T{m}:00Z"))
        );
        assert_eq!(
            candidate["points"][0]["interval"]["startTime"],
            "2026-08-20T10:04:00Z"
        );
        let total: u64 = counts(candidate).iter().sum();
        assert!((2995..=3005).contains(&total), "candidate got {total}");
        let stable: u64 = counts(series_of(&first, "api-00001-abc")).iter().sum();
        assert!((26_995..=27_005).contains(&stable), "stable got {stable}");

        let (_, second) = list(
            &fake,
            &count_filter(""),
            "2026-08-20T10:05:00Z",
            "2026-08-20T10:10:00Z",
            COUNT_BY_REVISION,
        )
        .await;
        for n in counts(series_of(&second, "api-00002-def")) {
            assert!((2999..=3001).contains(&n), "{n} a minute at 50 %");
        }
    }

    /// The 5xx share of a revision matches its profile, split by response_code_class.
    #[tokio::test]
    async fn five_xx_fraction_follows_the_profile() {
        let (fake, clock) = fake_with_candidate().await;
        fake.set_profile(
            PROJECT,
            REGION,
            "api",
            "api-00002-def",
            RevisionProfile::healthy().with_error_ratio(0.05),
        );
        fake.set_traffic_by_hand(
            PROJECT,
            REGION,
            "api",
            &[("api-00001-abc", 50), ("api-00002-def", 50)],
        );
        clock.advance(SignedDuration::from_mins(12));
        let by_class = [
            ("aggregation.alignmentPeriod", "600s"),
            ("aggregation.perSeriesAligner", "ALIGN_SUM"),
            ("aggregation.crossSeriesReducer", "REDUCE_SUM"),
            (
                "aggregation.groupByFields",
                "metric.labels.response_code_class",
            ),
        ];
        let filter = count_filter(" AND resource.labels.revision_name = \"api-00002-def\"");
        let (_, response) = list(
            &fake,
            &filter,
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:10:00Z",
            &by_class,
        )
        .await;
        let class_total = |class: &str| -> u64 {
            let series = response["timeSeries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["metric"]["labels"]["response_code_class"] == class)
                .unwrap();
            assert!(
                series["resource"].get("labels").is_none(),
                "only grouped labels: {series}"
            );
            counts(series).iter().sum()
        };
        let (errors, ok) = (class_total("5xx"), class_total("2xx"));
        let fraction = errors as f64 / (errors + ok) as f64;
        assert!(
            (29_990..=30_010).contains(&(errors + ok)),
            "{}",
            errors + ok
        );
        assert!((fraction - 0.05).abs() < 0.002, "5xx fraction {fraction}");

        // A 5xx-only filter sees only the 5xx series.
        let (_, only) = list(
            &fake,
            &format!("{filter} AND metric.label.response_code_class=\"5xx\""),
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:10:00Z",
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!(only["timeSeries"].as_array().unwrap().len(), 1);
        assert_eq!(counts(&only["timeSeries"][0]).iter().sum::<u64>(), errors);
    }

    /// A profile change applies from that moment on.
    #[tokio::test]
    async fn profile_changes_apply_from_then_on() {
        let (fake, clock) = fake_with_service().await;
        fake.set_profile(
            PROJECT,
            REGION,
            "api",
            "api-00001-abc",
            RevisionProfile::healthy().with_error_ratio(0.0),
        );
        clock.advance(SignedDuration::from_mins(2));
        fake.set_profile(
            PROJECT,
            REGION,
            "api",
            "api-00001-abc",
            RevisionProfile::healthy().with_error_ratio(1.0),
        );
        clock.advance(SignedDuration::from_mins(5));
        let filter = count_filter(" AND metric.labels.response_code_class=\"5xx\"");
        let (_, response) = list(
            &fake,
            &filter,
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:04:00Z",
            COUNT_BY_REVISION,
        )
        .await;
        let series = &response["timeSeries"][0];
        assert_eq!(
            ends(series),
            ["2026-08-20T10:04:00Z", "2026-08-20T10:03:00Z"]
        );
        assert_eq!(counts(series), [6000, 6000]);
    }

    /// Distributions: bucket counts sum to the count, the p99 read from the buckets is close to
    /// the profile's, and the keys are those of the real payload timeseries-1.json.
    #[tokio::test]
    async fn latency_distributions_are_consistent() {
        let (fake, clock) = fake_with_candidate().await;
        fake.set_traffic_by_hand(
            PROJECT,
            REGION,
            "api",
            &[("api-00001-abc", 90), ("api-00002-def", 10)],
        );
        fake.set_profile(
            PROJECT,
            REGION,
            "api",
            "api-00002-def",
            RevisionProfile::healthy().with_p99_ms(350.0),
        );
        clock.advance(SignedDuration::from_mins(7));
        let filter = "metric.type = \"run.googleapis.com/request_latencies\" AND resource.labels.service_name = \"api\" AND metric.labels.response_code_class = \"2xx\"";
        let aggregation = [
            ("aggregation.alignmentPeriod", "300s"),
            ("aggregation.perSeriesAligner", "ALIGN_DELTA"),
            ("aggregation.crossSeriesReducer", "REDUCE_SUM"),
            ("aggregation.groupByFields", "resource.labels.revision_name"),
        ];
        let (status, response) = list(
            &fake,
            filter,
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:05:00Z",
            &aggregation,
        )
        .await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(response["unit"], "ms");
        let series = series_of(&response, "api-00002-def");
        assert_eq!(series["valueType"], "DISTRIBUTION");
        let points = series["points"].as_array().unwrap();
        assert_eq!(points.len(), 1);
        let d = &points[0]["value"]["distributionValue"];
        let count: u64 = d["count"].as_str().unwrap().parse().unwrap();
        let buckets: Vec<u64> = d["bucketCounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(buckets.iter().sum::<u64>(), count);
        assert!((2900..=3000).contains(&count), "{count} non-5xx of ~3000");
        let p99 = percentile_from_buckets(&buckets, 0.99);
        assert!((p99 / 350.0 - 1.0).abs() < 0.15, "p99 {p99}");
        assert_eq!(
            d["bucketOptions"],
            json!({"exponentialBuckets": {"numFiniteBuckets": 64, "growthFactor": 1.4, "scale": 1}})
        );
        assert!(
            d["mean"].as_f64().unwrap() > 40.0
                && d["sumOfSquaredDeviation"].as_f64().unwrap() > 0.0
        );
        assert_ne!(buckets.last(), Some(&0), "trailing zeros are trimmed");

        // Same keys as the real capture (kept here as key names only) …
        let ours = key_skeleton(series);
        let expected = json!({
            "metric": {"type": null}, "resource": {"type": null, "labels": {}},
            "metricKind": null, "valueType": null,
            "points": {"interval": {"startTime": null, "endTime": null},
                       "value": {"distributionValue": {"count": null, "mean": null, "sumOfSquaredDeviation": null,
                                                       "bucketOptions": {}, "bucketCounts": null}}},
        });
        assert_eq!(ours, expected);
        // … and as the capture itself.
        let real: Value = serde_json::from_slice(include_bytes!(
            "../../tests/fixtures/payloads/timeseries-1.json"
        ))
        .unwrap();
        assert_eq!(
            key_skeleton(&real["timeSeries"][0]),
            expected,
            "the real payload changed?"
        );
    }

    /// Object keys, recursively; label maps and bucket options are compared as "present".
    fn key_skeleton(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let inner = match k.as_str() {
                            "labels" | "bucketOptions" => json!({}),
                            "points" => key_skeleton(&v[0]),
                            _ => key_skeleton(v),
                        };
                        (k.clone(), inner)
                    })
                    .collect(),
            ),
            _ => Value::Null,
        }
    }

    /// Points of the newest minutes are hidden until the ingest lag has passed.
    #[tokio::test]
    async fn ingest_lag_hides_the_newest_minutes() {
        let (fake, clock) = fake_with_service().await;
        clock.advance(SignedDuration::from_mins(10));
        let window = ("2026-08-20T10:00:00Z", "2026-08-20T10:10:00Z");
        let (_, lagged) = list(
            &fake,
            &count_filter(""),
            window.0,
            window.1,
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!(ends(&lagged["timeSeries"][0])[0], "2026-08-20T10:08:00Z");
        assert_eq!(
            lagged["timeSeries"][0]["points"].as_array().unwrap().len(),
            8
        );
        fake.faults().ingest_lag(SignedDuration::ZERO);
        let (_, fresh) = list(
            &fake,
            &count_filter(""),
            window.0,
            window.1,
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!(ends(&fresh["timeSeries"][0])[0], "2026-08-20T10:10:00Z");
        fake.faults().ingest_lag(SignedDuration::from_mins(30));
        let (status, hidden) = list(
            &fake,
            &count_filter(""),
            window.0,
            window.1,
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!((status, hidden), (200, json!({})));
    }

    /// No data is `{}`: a revision without traffic, another service, another resource type.
    #[tokio::test]
    async fn no_data_is_an_empty_object() {
        let (fake, clock) = fake_with_candidate().await;
        clock.advance(SignedDuration::from_mins(10));
        let window = ("2026-08-20T10:00:00Z", "2026-08-20T10:08:00Z");
        for filter in [
            count_filter(" AND resource.labels.revision_name=\"api-00002-def\""),
            "metric.type=\"run.googleapis.com/request_count\" AND resource.labels.service_name=\"other\"".to_string(),
            "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"gce_instance\"".to_string(),
        ] {
            let (status, body) = list(&fake, &filter, window.0, window.1, COUNT_BY_REVISION).await;
            assert_eq!((status, &body), (200, &json!({})), "{filter}");
        }
        // A window before the service existed.
        let (_, before) = list(
            &fake,
            &count_filter(""),
            "2026-08-20T09:00:00Z",
            "2026-08-20T10:00:00Z",
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!(before, json!({}));
    }

    /// Without aggregation every raw series stands alone with all its labels.
    #[tokio::test]
    async fn raw_series_carry_every_label() {
        let (fake, clock) = fake_with_service().await;
        clock.advance(SignedDuration::from_mins(5));
        let (_, raw) = list(
            &fake,
            &count_filter(""),
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:03:00Z",
            &[],
        )
        .await;
        let all = raw["timeSeries"].as_array().unwrap();
        assert_eq!(all.len(), 2, "2xx and 5xx of one revision");
        let labels = &all[0]["resource"]["labels"];
        for key in [
            "project_id",
            "service_name",
            "revision_name",
            "location",
            "configuration_name",
        ] {
            assert!(labels.get(key).is_some(), "{key} missing in {labels}");
        }
        assert!(all[0]["metric"]["labels"]["response_code_class"].is_string());
        assert_eq!(all[0]["points"].as_array().unwrap().len(), 3);
    }

    /// Paging by points reassembles the whole answer; HEADERS pages by series, without points.
    #[tokio::test]
    async fn pages_split_points() {
        let (fake, clock) = fake_with_candidate().await;
        fake.set_traffic_by_hand(
            PROJECT,
            REGION,
            "api",
            &[("api-00001-abc", 50), ("api-00002-def", 50)],
        );
        clock.advance(SignedDuration::from_mins(7));
        let window = ("2026-08-20T10:00:00Z", "2026-08-20T10:05:00Z");
        let (_, whole) = list(
            &fake,
            &count_filter(""),
            window.0,
            window.1,
            COUNT_BY_REVISION,
        )
        .await;
        let mut points = 0;
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let mut extra = COUNT_BY_REVISION.to_vec();
            extra.push(("pageSize", "3"));
            extra.push(("pageToken", &token));
            let (_, page) = list(&fake, &count_filter(""), window.0, window.1, &extra).await;
            pages += 1;
            for series in page["timeSeries"].as_array().unwrap() {
                let n = series["points"].as_array().unwrap().len();
                assert!(n <= 3);
                points += n;
            }
            match page.get("nextPageToken") {
                Some(next) => token = next.as_str().unwrap().to_string(),
                None => break,
            }
        }
        assert_eq!((pages, points), (4, 10));
        assert_eq!(whole["timeSeries"].as_array().unwrap().len(), 2);

        let mut extra = COUNT_BY_REVISION.to_vec();
        extra.push(("view", "HEADERS"));
        let (_, headers) = list(&fake, &count_filter(""), window.0, window.1, &extra).await;
        assert!(headers["timeSeries"][0].get("points").is_none());
        assert_eq!(headers["timeSeries"].as_array().unwrap().len(), 2);
    }

    /// With zero points switched on, a quiet minute of a series shows as an explicit 0.
    #[tokio::test]
    async fn zero_points_are_optional() {
        let (fake, clock) = fake_with_candidate().await;
        fake.set_traffic_by_hand(
            PROJECT,
            REGION,
            "api",
            &[("api-00001-abc", 50), ("api-00002-def", 50)],
        );
        clock.advance(SignedDuration::from_mins(1));
        fake.set_traffic_by_hand(PROJECT, REGION, "api", &[("api-00001-abc", 100)]);
        clock.advance(SignedDuration::from_mins(5));
        let filter = count_filter(
            " AND resource.labels.revision_name=\"api-00002-def\" AND metric.labels.response_code_class=\"2xx\"",
        );
        let window = ("2026-08-20T10:00:00Z", "2026-08-20T10:03:00Z");
        let (_, sparse) = list(&fake, &filter, window.0, window.1, COUNT_BY_REVISION).await;
        assert_eq!(counts(&sparse["timeSeries"][0]).len(), 1);
        fake.faults().zero_points(true);
        let (_, dense) = list(&fake, &filter, window.0, window.1, COUNT_BY_REVISION).await;
        let dense = counts(&dense["timeSeries"][0]);
        assert_eq!(dense.len(), 3);
        assert_eq!(&dense[..2], &[0, 0]);
    }

    /// Malformed queries are 400 INVALID_ARGUMENT; an unknown metric type is 404.
    #[tokio::test]
    async fn bad_queries_are_rejected() {
        let (fake, _clock) = fake_with_service().await;
        let window = ("2026-08-20T10:00:00Z", "2026-08-20T10:05:00Z");
        let bad_filters = [
            "metric.type=\"run.googleapis.com/request_count\" OR resource.type=\"x\"",
            "metric.type=run.googleapis.com/request_count",
            "resource.labels.service_name=\"api\"",
            "metric.type=\"run.googleapis.com/request_count\" AND starts_with(resource.labels.service_name, \"a\")",
            "metric.type=\"run.googleapis.com/request_count",
            "metric.type=\"run.googleapis.com/request_count\" AND metric.type=\"run.googleapis.com/request_latencies\"",
        ];
        for filter in bad_filters {
            let (status, body) = list(&fake, filter, window.0, window.1, COUNT_BY_REVISION).await;
            assert_eq!(
                (status, body["error"]["status"].as_str()),
                (400, Some("INVALID_ARGUMENT")),
                "{filter}: {body}"
            );
        }
        let bad_params: [&[(&str, &str)]; 5] = [
            &[
                ("aggregation.perSeriesAligner", "ALIGN_RATE"),
                ("aggregation.alignmentPeriod", "60s"),
            ],
            &[
                ("aggregation.perSeriesAligner", "ALIGN_DELTA"),
                ("aggregation.alignmentPeriod", "90s"),
            ],
            &[("aggregation.perSeriesAligner", "ALIGN_DELTA")],
            &[("aggregation.crossSeriesReducer", "REDUCE_SUM")],
            &[
                ("aggregation.perSeriesAligner", "1"),
                ("aggregation.alignmentPeriod", "60s"),
                ("aggregation.groupByFields", "revision_name"),
            ],
        ];
        for params in bad_params {
            let (status, body) = list(&fake, &count_filter(""), window.0, window.1, params).await;
            assert_eq!(status, 400, "{params:?}: {body}");
        }
        let (status, body) = list(
            &fake,
            &count_filter(""),
            "yesterday",
            window.1,
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
        let (status, _) = list(
            &fake,
            &count_filter(""),
            window.1,
            window.0,
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!(status, 400);
        let response = http()
            .get(format!(
                "{}/v3/projects/acme-prod/timeSeries",
                fake.base_url()
            ))
            .query(&[("filter", count_filter(""))])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "interval is required");
        let (status, body) = list(
            &fake,
            "metric.type=\"run.googleapis.com/nope\"",
            window.0,
            window.1,
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (404, Some("NOT_FOUND"))
        );
        // Integer enums, as the official SDK sends them, are fine.
        let ints = [
            ("aggregation.perSeriesAligner", "1"),
            ("aggregation.crossSeriesReducer", "4"),
            ("aggregation.alignmentPeriod", "60s"),
            ("view", "0"),
            ("pageSize", "0"),
        ];
        assert_eq!(
            list(&fake, &count_filter(""), window.0, window.1, &ints)
                .await
                .0,
            200
        );
    }

    /// `executionErrors`, empty pages and partial series, each for the next answer only; the
    /// counts say what was injected.
    #[tokio::test]
    async fn odd_answers_are_injected_once_each() {
        let (fake, clock) = fake_with_service().await;
        clock.advance(SignedDuration::from_mins(10));
        let window = ("2026-08-20T10:00:00Z", "2026-08-20T10:06:00Z");
        let filter = count_filter("");
        let query = || list(&fake, &filter, window.0, window.1, COUNT_BY_REVISION);
        let (_, plain) = query().await;
        let plain_points = plain["timeSeries"][0]["points"].as_array().unwrap().len();
        assert_eq!(plain_points, 6);

        fake.faults().execution_errors(1);
        let (status, partial) = query().await;
        assert_eq!(status, 200);
        assert_eq!(partial["executionErrors"][0]["code"], 14, "{partial}");
        assert!(partial["executionErrors"][0]["message"].is_string());

        fake.faults().empty_pages(1);
        let (status, empty) = query().await;
        assert_eq!(status, 200);
        assert!(empty.get("timeSeries").is_none(), "{empty}");
        let token = empty["nextPageToken"].as_str().unwrap().to_string();
        let (_, resumed) = list(
            &fake,
            &count_filter(""),
            window.0,
            window.1,
            &[COUNT_BY_REVISION, &[("pageToken", token.as_str())]].concat(),
        )
        .await;
        assert_eq!(resumed, plain, "the token points at the same place");

        fake.faults().partial_series(1);
        let (_, short) = query().await;
        let points = short["timeSeries"][0]["points"].as_array().unwrap();
        assert_eq!(points.len(), plain_points - 1);
        assert_eq!(
            points[0]["interval"]["endTime"], "2026-08-20T10:05:00Z",
            "the newest minute is the one missing"
        );
        assert_eq!(query().await.1, plain, "back to normal");

        let counts = fake.faults().counts();
        assert_eq!(
            (
                counts.execution_errors,
                counts.empty_pages,
                counts.partial_series
            ),
            (1, 1, 1)
        );
        assert_eq!(counts.total(), 3);
    }

    /// Garbled answers: an HTML 404 instead of the API, or JSON cut in half.
    #[tokio::test]
    async fn monitoring_answers_can_be_garbled() {
        use crate::Garble;
        let (fake, clock) = fake_with_service().await;
        clock.advance(SignedDuration::from_mins(5));
        let url = format!("{}/v3/projects/acme-prod/timeSeries", fake.base_url());
        let query = [
            ("filter", count_filter("")),
            ("interval.startTime", "2026-08-20T10:00:00Z".to_string()),
            ("interval.endTime", "2026-08-20T10:03:00Z".to_string()),
        ];
        fake.faults().monitoring_garbled(1, Garble::Html404);
        let r = http().get(&url).query(&query).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404);
        assert!(r.text().await.unwrap().contains("That\u{2019}s an error"));
        fake.faults().monitoring_garbled(1, Garble::TruncatedJson);
        let r = http().get(&url).query(&query).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let text = r.text().await.unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
        assert!(text.starts_with("{\"timeSeries\""), "{text}");
    }

    /// Injected Monitoring errors come first, then the API recovers.
    #[tokio::test]
    async fn monitoring_errors_then_recovery() {
        let (fake, clock) = fake_with_service().await;
        clock.advance(SignedDuration::from_mins(5));
        fake.faults().monitoring_errors(1, 429);
        let window = ("2026-08-20T10:00:00Z", "2026-08-20T10:03:00Z");
        let (status, body) = list(
            &fake,
            &count_filter(""),
            window.0,
            window.1,
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (429, Some("RESOURCE_EXHAUSTED"))
        );
        let (status, _) = list(
            &fake,
            &count_filter(""),
            window.0,
            window.1,
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!(status, 200);
    }

    #[test]
    fn filters_parse_with_or_without_spaces() {
        let parsed = parse_filter("metric.type=\"run.googleapis.com/request_count\"   AND resource.label.revision_name = \"a\\\"b\"").unwrap();
        assert_eq!(parsed.metric_type, REQUEST_COUNT);
        assert_eq!(
            parsed.labels,
            vec![(
                LabelRef {
                    scope: Scope::Resource,
                    name: "revision_name".into()
                },
                "a\"b".into()
            )]
        );
    }

    proptest! {
        /// Whatever text arrives as a filter, parsing answers (Ok or Err) and never panics.
        #[test]
        fn filter_parsing_never_panics(input in "\\PC{0,80}") {
            let _ = parse_filter(&input);
        }

        #[test]
        fn filter_parsing_never_panics_on_near_misses(
            key in "(metric|resource)\\.(type|labels?\\.[a-z_]{0,12})",
            sep in "[ =\"]{0,4}",
            value in "[a-z\"\\\\ ]{0,10}",
            tail in "( AND| OR|AND)?[ a-z=\"]{0,10}",
        ) {
            let _ = parse_filter(&format!("{key}{sep}{value}{tail}"));
        }
    }

    fn series_by<'a>(response: &'a Value, label: &str, value: &str) -> &'a Value {
        response["timeSeries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["resource"]["labels"][label] == value)
            .unwrap_or_else(|| panic!("no series with {label}={value} in {response}"))
    }

    /// App Engine: `response_count` on `gae_app` follows the split the App Engine fake serves
    /// (10 % of 100 rps for a minute is ~600 requests), by `version_id`, and a failing version's
    /// 5xx show under `response_code` 500; Cloud Run's metric does not see App Engine targets.
    #[tokio::test]
    async fn app_engine_metrics_follow_the_split() {
        let (fake, clock) = fake_with_service().await;
        fake.add_app_engine_service(PROJECT, "web", "v1");
        fake.deploy_version(PROJECT, "web", "v2");
        let key = FakeGcp::app_engine(PROJECT, "web");
        fake.set_profile_of(&key, "v2", RevisionProfile::healthy().with_error_ratio(0.5));
        fake.set_split_by_hand(&key, &[("v1", 90), ("v2", 10)]);
        clock.advance(SignedDuration::from_mins(4));
        let by_version = [
            ("aggregation.alignmentPeriod", "60s"),
            ("aggregation.perSeriesAligner", "ALIGN_DELTA"),
            ("aggregation.crossSeriesReducer", "REDUCE_SUM"),
            ("aggregation.groupByFields", "resource.label.version_id"),
        ];
        let (status, all) = list(
            &fake,
            "metric.type = \"appengine.googleapis.com/http/server/response_count\" AND resource.type = \"gae_app\" AND resource.labels.module_id = \"web\"",
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:04:00Z",
            &by_version,
        )
        .await;
        assert_eq!(status, 200, "{all}");
        let v2 = counts(series_by(&all, "version_id", "v2"));
        assert!(v2.iter().all(|n| (560..=640).contains(n)), "{v2:?}");
        let v1 = counts(series_by(&all, "version_id", "v1"));
        assert!(v1.iter().all(|n| (5300..=5500).contains(n)), "{v1:?}");
        let (_, errors) = list(
            &fake,
            "metric.type = \"appengine.googleapis.com/http/server/response_count\" AND resource.labels.version_id = \"v2\" AND metric.labels.response_code = \"500\"",
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:04:00Z",
            &by_version,
        )
        .await;
        let e = counts(series_by(&errors, "version_id", "v2"));
        assert!(e.iter().all(|n| (240..=360).contains(n)), "{e:?}");
        let (_, latencies) = list(
            &fake,
            "metric.type = \"appengine.googleapis.com/http/server/response_latencies\" AND resource.labels.version_id = \"v1\"",
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:04:00Z",
            &by_version,
        )
        .await;
        assert_eq!(latencies["unit"], "ms");
        let v1 = series_by(&latencies, "version_id", "v1");
        assert_eq!(
            (v1["valueType"].as_str(), v1["resource"]["type"].as_str()),
            (Some("DISTRIBUTION"), Some("gae_app"))
        );
        let (_, run_only) = list(
            &fake,
            "metric.type = \"run.googleapis.com/request_count\" AND resource.labels.service_name = \"web\"",
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:04:00Z",
            COUNT_BY_REVISION,
        )
        .await;
        assert_eq!(run_only, json!({}));
    }

    /// Load balancer: `backend_request_count` on `https_lb_rule` follows the URL map's weights
    /// by `backend_target_name`, with `response_code_class` as an int (500 for 5xx), and the
    /// ingest lag holds back the newest minutes like Cloud Run's.
    #[tokio::test]
    async fn load_balancer_metrics_follow_the_weights() {
        let (fake, clock) = fake_with_service().await;
        fake.add_url_map(PROJECT, "web", "blue");
        fake.add_backend(PROJECT, "web", "green");
        let key = FakeGcp::url_map(PROJECT, "web");
        fake.set_rps_of(&key, 50.0);
        fake.set_profile_of(
            &key,
            "green",
            RevisionProfile::healthy().with_error_ratio(1.0),
        );
        fake.set_split_by_hand(&key, &[("blue", 50), ("green", 50)]);
        clock.advance(SignedDuration::from_mins(4));
        let by_backend = [
            ("aggregation.alignmentPeriod", "60s"),
            ("aggregation.perSeriesAligner", "ALIGN_DELTA"),
            ("aggregation.crossSeriesReducer", "REDUCE_SUM"),
            (
                "aggregation.groupByFields",
                "resource.label.backend_target_name",
            ),
            (
                "aggregation.groupByFields",
                "metric.label.response_code_class",
            ),
        ];
        let (status, all) = list(
            &fake,
            "metric.type = \"loadbalancing.googleapis.com/https/backend_request_count\" AND resource.type = \"https_lb_rule\" AND resource.labels.url_map_name = \"web\"",
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:04:00Z",
            &by_backend,
        )
        .await;
        assert_eq!(status, 200, "{all}");
        let series = all["timeSeries"].as_array().unwrap();
        let green = series
            .iter()
            .find(|s| s["resource"]["labels"]["backend_target_name"] == "green")
            .unwrap();
        assert_eq!(green["metric"]["labels"]["response_code_class"], "500");
        // Minutes 10:01 and 10:02 are visible (two minutes of ingest lag at 10:04).
        assert_eq!(counts(green).len(), 2, "{green}");
        assert!(
            counts(green).iter().all(|n| (1450..=1550).contains(n)),
            "{green}"
        );
        assert!(
            series.iter().all(
                |s| s["resource"]["labels"]["backend_target_name"] != "green"
                    || s["metric"]["labels"]["response_code_class"] == "500"
            ),
            "green only fails"
        );
        let (status, wrong_resource) = list(
            &fake,
            "metric.type = \"loadbalancing.googleapis.com/https/backend_request_count\" AND resource.type = \"gae_app\"",
            "2026-08-20T10:00:00Z",
            "2026-08-20T10:04:00Z",
            &by_backend,
        )
        .await;
        assert_eq!((status, wrong_resource), (200, json!({})));
    }
}
