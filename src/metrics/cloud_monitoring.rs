//! Revision metrics from Cloud Monitoring.
//!
//! Two `timeSeries.list` calls per judged step, each grouped by revision so that every revision
//! of the service (candidate and stable alike) comes back from the same query over the same
//! window: `run.googleapis.com/request_count` split by response code class, and
//! `run.googleapis.com/request_latencies` summed into one histogram per revision. Points are
//! aligned to minutes; the first minute of a step can include up to a minute from before traffic
//! moved, which only dilutes a difference and never invents one.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::{Histogram, MetricsError, MetricsSource, RevisionStats, ServiceStats, Window};
use crate::gcp::monitoring::{MonitoringClient, Query, TimeSeries};
use crate::target::ServiceRef;

const REQUEST_COUNT: &str = "run.googleapis.com/request_count";
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

fn query(metric: &str, target: &ServiceRef, window: Window, group_by: Vec<&'static str>) -> Query {
    Query {
        filter: filter(metric, target),
        start: window.start,
        end: window.end,
        alignment_period_secs: 60,
        aligner: "ALIGN_DELTA",
        reducer: "REDUCE_SUM",
        group_by,
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

/// Folds both answers into per-revision stats.
pub fn fold(
    window: Window,
    counts: &[TimeSeries],
    latencies: &[TimeSeries],
) -> Result<ServiceStats, String> {
    let mut revisions: BTreeMap<String, RevisionStats> = BTreeMap::new();
    for s in counts {
        let Some(rev) = revision_of(s) else { continue };
        let is_5xx = s
            .metric
            .labels
            .get("response_code_class")
            .is_some_and(|c| c == "5xx");
        let n: u64 = s.points.iter().filter_map(|p| p.value.as_count()).sum();
        let e = revisions.entry(rev.to_string()).or_default();
        e.requests = e.requests.saturating_add(n);
        if is_5xx {
            e.errors_5xx = e.errors_5xx.saturating_add(n);
        }
    }
    for s in latencies {
        let Some(rev) = revision_of(s) else { continue };
        let mut h = Histogram::default();
        for p in &s.points {
            if let Some(d) = &p.value.distribution_value {
                h.merge(&d.histogram()?)?;
            }
        }
        revisions
            .entry(rev.to_string())
            .or_default()
            .latency
            .merge(&h)?;
    }
    revisions.retain(|_, r| r.requests > 0 || r.latency.total() > 0);
    Ok(ServiceStats { window, revisions })
}

impl MetricsSource for CloudMonitoring {
    async fn service_stats(
        &self,
        target: &ServiceRef,
        window: Window,
        deadline: Instant,
    ) -> Result<ServiceStats, MetricsError> {
        let counts = query(
            REQUEST_COUNT,
            target,
            window,
            vec![
                "resource.label.revision_name",
                "metric.label.response_code_class",
            ],
        );
        let latencies = query(
            REQUEST_LATENCIES,
            target,
            window,
            vec!["resource.label.revision_name"],
        );
        let (counts, latencies) = tokio::join!(
            self.client
                .list_time_series(&target.project, &counts, deadline),
            self.client
                .list_time_series(&target.project, &latencies, deadline),
        );
        let classify = |e: crate::gcp::ApiError| {
            if e.is_transient() {
                MetricsError::Transient(e.to_string())
            } else {
                MetricsError::Permanent(e.to_string())
            }
        };
        let counts = counts.map_err(classify)?;
        let latencies = latencies.map_err(classify)?;
        fold(window, &counts, &latencies).map_err(MetricsError::Permanent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_latencies_fold_per_revision() {
        let counts: Vec<TimeSeries> = serde_json::from_value(serde_json::json!([
            {"metric": {"type": REQUEST_COUNT, "labels": {"response_code_class": "2xx"}},
             "resource": {"type": "cloud_run_revision", "labels": {"revision_name": "api-2"}},
             "points": [{"value": {"int64Value": "400"}}, {"value": {"int64Value": "500"}}]},
            {"metric": {"type": REQUEST_COUNT, "labels": {"response_code_class": "5xx"}},
             "resource": {"type": "cloud_run_revision", "labels": {"revision_name": "api-2"}},
             "points": [{"value": {"int64Value": "100"}}]},
            {"metric": {"type": REQUEST_COUNT, "labels": {"response_code_class": "2xx"}},
             "resource": {"type": "cloud_run_revision", "labels": {"revision_name": "api-1"}},
             "points": [{"value": {"int64Value": "9000"}}]}
        ]))
        .unwrap();
        let lat: Vec<TimeSeries> = serde_json::from_value(serde_json::json!([
            {"resource": {"labels": {"revision_name": "api-2"}},
             "points": [
               {"value": {"distributionValue": {"count": "2", "bucketOptions": {"explicitBuckets": {"bounds": [10, 100]}}, "bucketCounts": ["0", "2"]}}},
               {"value": {"distributionValue": {"count": "1", "bucketOptions": {"explicitBuckets": {"bounds": [10, 100]}}, "bucketCounts": ["0", "0", "1"]}}}
             ]}
        ]))
        .unwrap();
        let w = Window {
            start: "2026-08-20T10:00:00Z".parse().unwrap(),
            end: "2026-08-20T10:05:00Z".parse().unwrap(),
        };
        let s = fold(w, &counts, &lat).unwrap();
        let c = &s.revisions["api-2"];
        assert_eq!((c.requests, c.errors_5xx), (1000, 100));
        assert_eq!(c.latency.counts, vec![0, 2, 1]);
        assert_eq!(s.revisions["api-1"].requests, 9000);
    }

    #[test]
    fn the_filter_pins_metric_service_and_region() {
        let f = filter(REQUEST_COUNT, &ServiceRef::new("p", "us-central1", "api"));
        assert!(f.contains(r#"metric.type = "run.googleapis.com/request_count""#));
        assert!(f.contains(r#"resource.labels.service_name = "api""#));
        assert!(f.contains(r#"resource.labels.location = "us-central1""#));
    }
}
