//! Revision metrics from Cloud Monitoring, for every platform.
//!
//! One `timeSeries.list` call per judged step, on the platform's latency distribution (one
//! sample per request that reached a revision) grouped by revision and response code (class).
//! Each group's distribution count is its number of requests, so one answer gives every
//! revision's requests, 5xx and latency histogram, candidate and stable alike, over the same
//! window. The platform's request count metric counts the same population, so a second query
//! would only repeat the counts at the price of another call per rollout.
//!
//! | platform | metric | resource (filter) | revision label | code label |
//! |---|---|---|---|---|
//! | Cloud Run | `run.googleapis.com/request_latencies` | `cloud_run_revision` (`service_name`, `location`) | `revision_name` | `response_code_class` (`5xx`) |
//! | App Engine | `appengine.googleapis.com/http/server/response_latencies` | `gae_app` (`module_id`) | `version_id` | `response_code` (int64: `503`) |
//! | load balancer | `loadbalancing.googleapis.com/https/backend_latencies` | `https_lb_rule` (`url_map_name`) | `backend_target_name` | `response_code_class` (int64: `500`) |
//!
//! Codes become the judge's classes (`503` and `500` → `5xx`) here, so the decision core sees
//! one shape whatever the platform. Behind a load balancer, a backend service that other
//! routes of the same URL map also use is measured with their requests too: give a rollout's
//! backends to its route alone.
//!
//! Points are aligned to minutes; the first minute of a step can include up to a minute from
//! before traffic moved, which only dilutes a difference and never invents one.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::{MetricsError, MetricsSource};
use crate::decision::evidence::{Histogram, Series, ServiceStats, Window};
use crate::gcp::monitoring::{Distribution, MonitoringClient, Query, TimeSeries};
use crate::target::{Platform, ServiceRef};

const REQUEST_LATENCIES: &str = "run.googleapis.com/request_latencies";

/// How one platform's requests appear in Cloud Monitoring.
struct Shape {
    /// The latency distribution metric.
    metric: &'static str,
    /// The monitored resource type.
    resource: &'static str,
    /// The resource label naming the revision (version, backend service).
    revision_label: &'static str,
    /// The metric label carrying the response code or its class.
    code_label: &'static str,
    /// The two labels above as `groupByFields`.
    group_by: [&'static str; 2],
}

const CLOUD_RUN: Shape = Shape {
    metric: REQUEST_LATENCIES,
    resource: "cloud_run_revision",
    revision_label: "revision_name",
    code_label: "response_code_class",
    group_by: [
        "resource.label.revision_name",
        "metric.label.response_code_class",
    ],
};

const APP_ENGINE: Shape = Shape {
    metric: "appengine.googleapis.com/http/server/response_latencies",
    resource: "gae_app",
    revision_label: "version_id",
    code_label: "response_code",
    group_by: ["resource.label.version_id", "metric.label.response_code"],
};

const LOAD_BALANCER: Shape = Shape {
    metric: "loadbalancing.googleapis.com/https/backend_latencies",
    resource: "https_lb_rule",
    revision_label: "backend_target_name",
    code_label: "response_code_class",
    group_by: [
        "resource.label.backend_target_name",
        "metric.label.response_code_class",
    ],
};

fn shape(platform: Platform) -> &'static Shape {
    match platform {
        Platform::CloudRun => &CLOUD_RUN,
        Platform::AppEngine => &APP_ENGINE,
        Platform::LoadBalancer => &LOAD_BALANCER,
    }
}

/// Reads revision metrics from Cloud Monitoring.
#[derive(Clone)]
pub struct CloudMonitoring {
    client: MonitoringClient,
}

impl CloudMonitoring {
    pub fn new(client: MonitoringClient) -> Self {
        CloudMonitoring { client }
    }
}

/// The filter for one metric of one target's revisions, pinned to the target's resource.
pub fn filter(metric: &str, target: &ServiceRef) -> String {
    let resource = shape(target.platform).resource;
    let pin = match target.platform {
        Platform::CloudRun => format!(
            "resource.labels.service_name = \"{}\" AND resource.labels.location = \"{}\"",
            target.name, target.region
        ),
        Platform::AppEngine => format!("resource.labels.module_id = \"{}\"", target.name),
        Platform::LoadBalancer => format!("resource.labels.url_map_name = \"{}\"", target.name),
    };
    format!("metric.type = \"{metric}\" AND resource.type = \"{resource}\" AND {pin}")
}

/// The one query a judged step needs.
pub fn query(target: &ServiceRef, window: Window) -> Query {
    let shape = shape(target.platform);
    Query {
        filter: filter(shape.metric, target),
        start: window.start,
        end: window.end,
        alignment_period_secs: 60,
        aligner: "ALIGN_DELTA",
        reducer: "REDUCE_SUM",
        group_by: shape.group_by.to_vec(),
    }
}

/// The judge's class of a code label: classes (`5xx`) as they are, an HTTP status or the
/// load balancer's numeric class (`503`, `500`) as its hundreds (`5xx`).
fn class_of(code: &str) -> String {
    match code.parse::<u16>() {
        Ok(n @ 100..=599) => format!("{}xx", n / 100),
        _ => code.to_string(),
    }
}

fn revision_of<'a>(shape: &Shape, s: &'a TimeSeries) -> Option<&'a str> {
    s.resource
        .labels
        .get(shape.revision_label)
        .or_else(|| s.metric.labels.get(shape.revision_label))
        .map(String::as_str)
        .filter(|r| !r.is_empty())
}

/// A distribution as the judge reads it.
fn histogram(d: &Distribution) -> Result<Histogram, String> {
    let b = d.buckets()?;
    Ok(Histogram {
        bounds: b.bounds,
        counts: b.counts,
    })
}

/// Keeps the answer of a `platform` query series by series and minute by minute (keyed by
/// each point's interval end, or the window's end for a point without one), as the decision
/// core reads it; series of codes of one class are one series.
pub fn fold(
    platform: Platform,
    window: Window,
    series: &[TimeSeries],
) -> Result<ServiceStats, String> {
    let shape = shape(platform);
    let mut out: BTreeMap<(String, String), Series> = BTreeMap::new();
    for s in series {
        let Some(rev) = revision_of(shape, s) else {
            continue;
        };
        let class = s
            .metric
            .labels
            .get(shape.code_label)
            .map(|c| class_of(c))
            .unwrap_or_default();
        let e = out
            .entry((rev.to_string(), class.clone()))
            .or_insert_with(|| Series {
                revision: rev.to_string(),
                class,
                points: BTreeMap::new(),
            });
        for p in &s.points {
            let Some(d) = &p.value.distribution_value else {
                continue;
            };
            let end = p.interval.end_time.unwrap_or(window.end);
            let point = e.points.entry(end).or_default();
            // The count is authoritative; bucket counts may be trimmed or absent.
            point.count = point.count.saturating_add(d.count.max(0) as u64);
            point.latency.merge(&histogram(d)?)?;
        }
    }
    let series = out
        .into_values()
        .filter(|s| s.points.values().any(|p| p.count > 0))
        .collect();
    Ok(ServiceStats { window, series })
}

impl MetricsSource for CloudMonitoring {
    async fn service_stats(
        &self,
        target: &ServiceRef,
        window: Window,
        deadline: Instant,
    ) -> Result<ServiceStats, MetricsError> {
        let series = self
            .client
            .list_time_series(&target.project, &query(target, window), deadline)
            .await
            .map_err(|e| MetricsError::new(e.kind(), e))?;
        fold(target.platform, window, &series).map_err(|e| MetricsError::Permanent(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(count: u64, buckets: &[u64]) -> serde_json::Value {
        serde_json::json!({"distributionValue": {
            "count": count.to_string(),
            "bucketOptions": {"explicitBuckets": {"bounds": [10, 100]}},
            "bucketCounts": buckets.iter().map(|b| b.to_string()).collect::<Vec<_>>()
        }})
    }

    #[test]
    fn a_captured_distribution_reads_as_a_histogram() {
        let r: crate::gcp::monitoring::ListTimeSeriesResponse =
            serde_json::from_slice(cutover_fakes::fixture!("payloads/timeseries-1.json")).unwrap();
        let d = r.time_series[0].points[0].value.distribution_value.as_ref();
        let h = histogram(d.unwrap()).unwrap();
        assert_eq!(h.total(), 1878, "bucket counts add up to count");
        let p99 = h.quantile(0.99).unwrap();
        assert!((250.0..=650.0).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn one_query_gives_requests_errors_and_latency_per_revision() {
        let series: Vec<TimeSeries> = serde_json::from_value(serde_json::json!([
            {"metric": {"type": REQUEST_LATENCIES, "labels": {"response_code_class": "2xx"}},
             "resource": {"type": "cloud_run_revision", "labels": {"revision_name": "api-2"}},
             "points": [{"value": dist(400, &[0, 400])}, {"value": dist(500, &[0, 499, 1])}]},
            {"metric": {"type": REQUEST_LATENCIES, "labels": {"response_code_class": "5xx"}},
             "resource": {"type": "cloud_run_revision", "labels": {"revision_name": "api-2"}},
             "points": [{"value": dist(100, &[100])}]},
            {"metric": {"type": REQUEST_LATENCIES, "labels": {"response_code_class": "2xx"}},
             "resource": {"type": "cloud_run_revision", "labels": {"revision_name": "api-1"}},
             "points": [{"value": dist(9000, &[0, 9000])}]},
            {"metric": {"type": REQUEST_LATENCIES, "labels": {"response_code_class": "2xx"}},
             "resource": {"type": "cloud_run_revision", "labels": {"revision_name": "api-0"}},
             "points": []}
        ]))
        .unwrap();
        let w = Window {
            start: "2026-08-20T10:00:00Z".parse().unwrap(),
            end: "2026-08-20T10:05:00Z".parse().unwrap(),
        };
        let s = fold(Platform::CloudRun, w, &series).unwrap();
        let c = s.revision("api-2").unwrap().unwrap();
        assert_eq!((c.requests, c.errors_5xx), (1000, 100));
        assert_eq!(c.latency.counts, vec![100, 899, 1]);
        assert_eq!(s.revision("api-1").unwrap().unwrap().requests, 9000);
        assert!(
            !s.revision_names().contains("api-0"),
            "no requests, no entry"
        );
    }

    #[test]
    fn the_query_pins_metric_service_and_region_and_groups_by_revision() {
        let w = Window {
            start: "2026-08-20T10:00:00Z".parse().unwrap(),
            end: "2026-08-20T10:05:00Z".parse().unwrap(),
        };
        let q = query(
            &ServiceRef::checked("p", "us-central1", "api").expect("valid ids"),
            w,
        );
        assert!(
            q.filter
                .contains(r#"metric.type = "run.googleapis.com/request_latencies""#)
        );
        assert!(q.filter.contains(r#"resource.labels.service_name = "api""#));
        assert!(
            q.filter
                .contains(r#"resource.labels.location = "us-central1""#)
        );
        assert!(q.group_by.contains(&"resource.label.revision_name"));
    }

    fn ids(platform: Platform, name: &str) -> ServiceRef {
        ServiceRef::global(
            platform,
            crate::ids::ProjectId::parse("acme-prod").unwrap(),
            crate::ids::ServiceName::parse(name).unwrap(),
        )
    }

    fn window() -> Window {
        Window {
            start: "2026-08-20T10:00:00Z".parse().unwrap(),
            end: "2026-08-20T10:05:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn each_platform_queries_its_own_metric_resource_and_labels() {
        let q = query(&ids(Platform::AppEngine, "web"), window());
        assert_eq!(
            q.filter,
            r#"metric.type = "appengine.googleapis.com/http/server/response_latencies" AND resource.type = "gae_app" AND resource.labels.module_id = "web""#
        );
        assert_eq!(
            q.group_by,
            vec!["resource.label.version_id", "metric.label.response_code"]
        );
        let q = query(&ids(Platform::LoadBalancer, "web-map"), window());
        assert_eq!(
            q.filter,
            r#"metric.type = "loadbalancing.googleapis.com/https/backend_latencies" AND resource.type = "https_lb_rule" AND resource.labels.url_map_name = "web-map""#
        );
        assert_eq!(
            q.group_by,
            vec![
                "resource.label.backend_target_name",
                "metric.label.response_code_class"
            ]
        );
    }

    #[test]
    fn app_engine_codes_and_load_balancer_classes_read_as_the_judges_classes() {
        // App Engine: one series per version and status code (int64 labels arrive as text).
        let gae = |version: &str, code: &str, n: u64| {
            serde_json::json!({
                "metric": {"type": APP_ENGINE.metric, "labels": {"response_code": code}},
                "resource": {"type": "gae_app", "labels": {"module_id": "web", "version_id": version, "zone": "us-central1-f"}},
                "points": [{"value": dist(n, &[0, n])}]
            })
        };
        let series: Vec<TimeSeries> = serde_json::from_value(serde_json::json!([
            gae("v2", "200", 880),
            gae("v2", "503", 70),
            gae("v2", "500", 30),
            gae("v2", "404", 20),
            gae("v1", "200", 9000),
        ]))
        .unwrap();
        let s = fold(Platform::AppEngine, window(), &series).unwrap();
        let c = s.revision("v2").unwrap().unwrap();
        assert_eq!((c.requests, c.errors_5xx), (1000, 100));
        assert_eq!(s.revision("v1").unwrap().unwrap().errors_5xx, 0);

        // Load balancer: one series per backend service and numeric class.
        let lb = |backend: &str, class: &str, n: u64| {
            serde_json::json!({
                "metric": {"type": LOAD_BALANCER.metric, "labels": {"response_code_class": class, "proxy_continent": "America"}},
                "resource": {"type": "https_lb_rule", "labels": {"url_map_name": "web-map", "backend_target_name": backend, "backend_name": format!("{backend}-mig"), "backend_type": "INSTANCE_GROUP"}},
                "points": [{"value": dist(n, &[n])}]
            })
        };
        let series: Vec<TimeSeries> = serde_json::from_value(serde_json::json!([
            lb("green", "200", 450),
            lb("green", "500", 50),
            lb("blue", "200", 4500),
            lb("blue", "400", 10),
        ]))
        .unwrap();
        let s = fold(Platform::LoadBalancer, window(), &series).unwrap();
        let g = s.revision("green").unwrap().unwrap();
        assert_eq!((g.requests, g.errors_5xx), (500, 50));
        let b = s.revision("blue").unwrap().unwrap();
        assert_eq!((b.requests, b.errors_5xx), (4510, 0));
        assert_eq!(
            class_of("5xx"),
            "5xx",
            "Cloud Run's classes stay as they are"
        );
    }
}
