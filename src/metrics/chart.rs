//! A rollout minute by minute, for the status page's chart: each revision's requests, 5xx and
//! p99 per minute since the rollout started.
//!
//! It is the judge's own query ([`super::cloud_monitoring::query`]: `request_latencies`,
//! aligned to a minute, grouped by revision and response code class) over the rollout instead
//! of a step, read point by point instead of summed: one `timeSeries.list` call per service
//! gives every revision's curve, counts and latency alike. Not part of [`super::MetricsSource`]:
//! nothing decides on it, it is only shown.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;
use tokio::time::Instant;

use super::MetricsError;
use super::cloud_monitoring::query;
use crate::decision::evidence::{Histogram, Window};
use crate::gcp::monitoring::{MonitoringClient, TimeSeries};
use crate::target::ServiceRef;

/// One revision's minute.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Minute {
    /// The end of the minute.
    pub at: Timestamp,
    pub requests: u64,
    pub errors_5xx: u64,
    /// 5xx / requests (0 without requests).
    pub error_rate: f64,
    /// From the minute's latency histogram; none without requests.
    pub p99_ms: Option<f64>,
}

/// Every revision's minutes, oldest first, by revision name.
pub type Minutes = BTreeMap<String, Vec<Minute>>;

/// Reads `target`'s revisions minute by minute over `window`, in one query.
pub async fn per_minute(
    client: &MonitoringClient,
    target: &ServiceRef,
    window: Window,
    deadline: Instant,
) -> Result<Minutes, MetricsError> {
    let series = client
        .list_time_series(&target.project, &query(target, window), deadline)
        .await
        .map_err(|e| MetricsError::new(e.kind(), e))?;
    fold(&series).map_err(|e| MetricsError::Permanent(e.into()))
}

/// Per revision and minute end: requests, 5xx and the latency histogram.
type Tally = BTreeMap<String, BTreeMap<Timestamp, (u64, u64, Histogram)>>;

/// Folds the answer (one series per revision and response code class) into minutes.
pub fn fold(series: &[TimeSeries]) -> Result<Minutes, String> {
    let mut tally = Tally::new();
    for s in series {
        let Some(rev) = s
            .resource
            .labels
            .get("revision_name")
            .filter(|r| !r.is_empty())
        else {
            continue;
        };
        let is_5xx = s
            .metric
            .labels
            .get("response_code_class")
            .is_some_and(|c| c == "5xx");
        for p in &s.points {
            let (Some(at), Some(d)) = (p.interval.end_time, &p.value.distribution_value) else {
                continue;
            };
            let b = d.buckets()?;
            let n = d.count.max(0) as u64;
            let minute = tally.entry(rev.clone()).or_default().entry(at).or_default();
            minute.0 = minute.0.saturating_add(n);
            if is_5xx {
                minute.1 = minute.1.saturating_add(n);
            }
            minute.2.merge(&Histogram {
                bounds: b.bounds,
                counts: b.counts,
            })?;
        }
    }
    Ok(tally
        .into_iter()
        .map(|(rev, minutes)| {
            let points = minutes
                .into_iter()
                .map(|(at, (requests, errors_5xx, h))| Minute {
                    at,
                    requests,
                    errors_5xx,
                    error_rate: if requests == 0 {
                        0.0
                    } else {
                        errors_5xx as f64 / requests as f64
                    },
                    p99_ms: h.quantile(0.99),
                })
                .collect();
            (rev, points)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(end: &str, count: u64, buckets: &[u64]) -> serde_json::Value {
        serde_json::json!({
            "interval": {"endTime": end},
            "value": {"distributionValue": {
                "count": count.to_string(),
                "bucketOptions": {"explicitBuckets": {"bounds": [100, 1000]}},
                "bucketCounts": buckets.iter().map(|b| b.to_string()).collect::<Vec<_>>()
            }}
        })
    }

    #[test]
    fn each_minute_of_each_revision_gets_its_requests_5xx_and_p99() {
        let series: Vec<TimeSeries> = serde_json::from_value(serde_json::json!([
            {"metric": {"labels": {"response_code_class": "2xx"}},
             "resource": {"labels": {"revision_name": "api-2"}},
             "points": [point("2026-08-20T10:02:00Z", 90, &[90]), point("2026-08-20T10:01:00Z", 100, &[0, 100])]},
            {"metric": {"labels": {"response_code_class": "5xx"}},
             "resource": {"labels": {"revision_name": "api-2"}},
             "points": [point("2026-08-20T10:02:00Z", 10, &[10])]},
            {"metric": {"labels": {"response_code_class": "2xx"}},
             "resource": {"labels": {"revision_name": "api-1"}},
             "points": [point("2026-08-20T10:01:00Z", 900, &[900])]}
        ]))
        .unwrap();
        let m = fold(&series).unwrap();
        let c = &m["api-2"];
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0].at,
            "2026-08-20T10:01:00Z".parse::<Timestamp>().unwrap(),
            "oldest first"
        );
        assert_eq!((c[0].requests, c[0].errors_5xx), (100, 0));
        assert!(c[0].p99_ms.unwrap() > 100.0, "all in 100..1000 ms");
        assert_eq!((c[1].requests, c[1].errors_5xx), (100, 10));
        assert!((c[1].error_rate - 0.1).abs() < 1e-12);
        assert!(c[1].p99_ms.unwrap() < 100.0);
        assert_eq!(m["api-1"][0].requests, 900);
    }
}
