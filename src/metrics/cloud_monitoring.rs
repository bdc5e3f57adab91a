//! Revision metrics from Cloud Monitoring.
//!
//! One `timeSeries.list` call per judged step: `run.googleapis.com/request_latencies` (a
//! distribution per request that reached the revision) grouped by revision and response code
//! class. Each group's distribution count is its number of requests, so one answer gives every
//! revision's requests, 5xx and latency histogram, candidate and stable alike, over the same
//! window. `request_count` counts the same population (requests that reached an instance), so a
//! second query would only repeat the counts at the price of another call per rollout.
//!
//! Points are aligned to minutes; the first minute of a step can include up to a minute from
//! before traffic moved, which only dilutes a difference and never invents one.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::{MetricsError, MetricsSource};
use crate::decision::evidence::{Histogram, Series, ServiceStats, Window};
use crate::gcp::monitoring::{Distribution, MonitoringClient, Query, TimeSeries};
use crate::target::ServiceRef;

const REQUEST_LATENCIES: &str = "run.googleapis.com/request_latencies";

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

/// The filter for one metric of one service's revisions.
pub fn filter(metric: &str, target: &ServiceRef) -> String {
    format!(
        "metric.type = \"{metric}\" AND resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"{}\" AND resource.labels.location = \"{}\"",
        target.name, target.region
    )
}

/// The one query a judged step needs.
pub fn query(target: &ServiceRef, window: Window) -> Query {
    Query {
        filter: filter(REQUEST_LATENCIES, target),
        start: window.start,
        end: window.end,
        alignment_period_secs: 60,
        aligner: "ALIGN_DELTA",
        reducer: "REDUCE_SUM",
        group_by: vec![
            "resource.label.revision_name",
            "metric.label.response_code_class",
        ],
    }
}

fn revision_of(s: &TimeSeries) -> Option<&str> {
    s.resource
        .labels
        .get("revision_name")
        .or_else(|| s.metric.labels.get("revision_name"))
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

/// Keeps the answer series by series and minute by minute (keyed by each point's interval end,
/// or the window's end for a point without one), as the decision core reads it.
pub fn fold(window: Window, series: &[TimeSeries]) -> Result<ServiceStats, String> {
    let mut out: BTreeMap<(String, String), Series> = BTreeMap::new();
    for s in series {
        let Some(rev) = revision_of(s) else { continue };
        let class = s
            .metric
            .labels
            .get("response_code_class")
            .cloned()
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
        fold(window, &series).map_err(|e| MetricsError::Permanent(e.into()))
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
        let s = fold(w, &series).unwrap();
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
}
