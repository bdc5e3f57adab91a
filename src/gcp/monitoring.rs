//! Cloud Monitoring API v3: `projects.timeSeries.list`.
//!
//! Wire shapes follow `docs/gcp-wire.md` §2: `int64Value`, distribution `count` and `bucketCounts`
//! arrive as strings, points newest first, an empty answer is `{}`. Buckets are converted to
//! explicit bounds here ([`Buckets`]), once, so nothing above this file knows the three bucket
//! layouts.

use std::collections::BTreeMap;

use serde::Deserialize;
use tokio::time::Instant;

use super::{ApiError, Google, RpcStatus};

/// The query parameters of one `timeSeries.list` call.
#[derive(Clone, Debug)]
pub struct Query {
    pub filter: String,
    pub start: jiff::Timestamp,
    pub end: jiff::Timestamp,
    pub alignment_period_secs: i64,
    pub aligner: &'static str,
    pub reducer: &'static str,
    pub group_by: Vec<&'static str>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Labeled {
    #[serde(rename = "type")]
    pub kind: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TimeSeries {
    pub metric: Labeled,
    pub resource: Labeled,
    pub metric_kind: String,
    pub value_type: String,
    pub points: Vec<Point>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Point {
    pub interval: Interval,
    pub value: TypedValue,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Interval {
    pub start_time: Option<jiff::Timestamp>,
    pub end_time: Option<jiff::Timestamp>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TypedValue {
    pub int64_value: Option<String>,
    pub double_value: Option<serde_json::Value>,
    pub distribution_value: Option<Distribution>,
}

impl TypedValue {
    /// The value as a count: `int64Value`, or a finite non-negative `doubleValue` rounded.
    pub fn as_count(&self) -> Option<u64> {
        if let Some(s) = &self.int64_value {
            return s.parse::<i64>().ok().map(|v| v.max(0) as u64);
        }
        self.double_value
            .as_ref()
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v.round() as u64)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Distribution {
    #[serde(deserialize_with = "super::int64")]
    pub count: i64,
    pub mean: f64,
    pub bucket_options: BucketOptions,
    #[serde(deserialize_with = "super::int64_list")]
    pub bucket_counts: Vec<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BucketOptions {
    pub linear_buckets: Option<Linear>,
    pub exponential_buckets: Option<Exponential>,
    pub explicit_buckets: Option<Explicit>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Linear {
    pub num_finite_buckets: u32,
    pub width: f64,
    pub offset: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Exponential {
    pub num_finite_buckets: u32,
    pub growth_factor: f64,
    pub scale: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Explicit {
    pub bounds: Vec<f64>,
}

/// Upper bound on finite buckets accepted from the wire (Cloud Monitoring allows far fewer);
/// a larger claim is a malformed answer, not a reason to allocate.
const MAX_BUCKETS: u32 = 10_000;

/// A distribution's buckets with explicit bounds: `counts[i]` values fell in bucket `i`, bucket
/// 0 is the underflow `(-inf, bounds[0])`, the last the overflow `[bounds[last], +inf)`, so
/// `counts.len() == bounds.len() + 1` (empty without options and samples).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
}

impl Distribution {
    /// The distribution's buckets with explicit bounds, whichever layout the wire used.
    pub fn buckets(&self) -> Result<Buckets, String> {
        let o = &self.bucket_options;
        let bounds: Vec<f64> = if let Some(e) = &o.explicit_buckets {
            e.bounds.clone()
        } else if let Some(x) = &o.exponential_buckets {
            if x.num_finite_buckets > MAX_BUCKETS || x.growth_factor <= 1.0 || x.scale <= 0.0 {
                return Err("invalid exponential bucket options".into());
            }
            (0..=x.num_finite_buckets)
                .map(|i| x.scale * x.growth_factor.powi(i as i32))
                .collect()
        } else if let Some(l) = &o.linear_buckets {
            if l.num_finite_buckets > MAX_BUCKETS || l.width <= 0.0 {
                return Err("invalid linear bucket options".into());
            }
            (0..=l.num_finite_buckets)
                .map(|i| l.offset + l.width * f64::from(i))
                .collect()
        } else if self.bucket_counts.len() <= 1 {
            Vec::new()
        } else {
            return Err("distribution has bucket counts but no bucket options".into());
        };
        if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err("bucket bounds are not increasing".into());
        }
        let n = bounds.len() + 1;
        if self.bucket_counts.len() > n {
            return Err(format!(
                "{} bucket counts for {n} buckets",
                self.bucket_counts.len()
            ));
        }
        let mut counts = vec![0u64; n];
        for (c, v) in counts.iter_mut().zip(&self.bucket_counts) {
            *c = (*v).max(0) as u64;
        }
        Ok(Buckets { bounds, counts })
    }
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListTimeSeriesResponse {
    pub time_series: Vec<TimeSeries>,
    pub next_page_token: String,
    pub execution_errors: Vec<RpcStatus>,
    pub unit: String,
}

/// Cloud Monitoring API v3 client.
#[derive(Clone)]
pub struct MonitoringClient {
    google: Google,
    base: String,
}

impl MonitoringClient {
    /// `base` is `https://monitoring.googleapis.com` or a fake's URL.
    pub fn new(google: Google, base: &str) -> Self {
        MonitoringClient {
            google,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// Every series of `query`, following `nextPageToken`. Execution errors (partial data) are
    /// an error: judging a step on part of its data would be judging on the wrong data.
    pub async fn list_time_series(
        &self,
        project: &str,
        q: &Query,
        deadline: Instant,
    ) -> Result<Vec<TimeSeries>, ApiError> {
        let url = format!("{}/v3/projects/{project}/timeSeries", self.base);
        let mut params: Vec<(&str, String)> = vec![
            ("filter", q.filter.clone()),
            ("interval.startTime", q.start.to_string()),
            ("interval.endTime", q.end.to_string()),
            (
                "aggregation.alignmentPeriod",
                format!("{}s", q.alignment_period_secs),
            ),
            ("aggregation.perSeriesAligner", q.aligner.to_string()),
            ("aggregation.crossSeriesReducer", q.reducer.to_string()),
        ];
        for g in &q.group_by {
            params.push(("aggregation.groupByFields", g.to_string()));
        }
        let mut out = Vec::new();
        self.google
            .pages(
                &url,
                &params,
                |page: ListTimeSeriesResponse| {
                    if let Some(e) = page.execution_errors.first() {
                        return Err(ApiError::Status {
                            method: "GET",
                            path: url.clone(),
                            http: 503,
                            status: "UNAVAILABLE".into(),
                            message: format!("partial result: {}", e.message),
                        });
                    }
                    out.extend(page.time_series);
                    Ok(page.next_page_token)
                },
                deadline,
            )
            .await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_captured_distribution_response() {
        let r: ListTimeSeriesResponse =
            serde_json::from_slice(cutover_fakes::fixture!("payloads/timeseries-1.json")).unwrap();
        assert_eq!(r.time_series.len(), 1);
        let s = &r.time_series[0];
        assert_eq!(s.value_type, "DISTRIBUTION");
        assert_eq!(s.points.len(), 2);
        assert!(
            s.points[0].interval.end_time > s.points[1].interval.end_time,
            "newest first"
        );
        let d = s.points[0].value.distribution_value.as_ref().unwrap();
        assert_eq!(d.count, 1878);
        let h = d.buckets().unwrap();
        assert_eq!(h.counts.len(), 42);
        assert_eq!(
            h.counts.iter().sum::<u64>(),
            1878,
            "bucket counts add up to count"
        );
        assert!(h.bounds.windows(2).all(|w| w[0] < w[1]), "{:?}", h.bounds);
    }

    #[test]
    fn decodes_a_captured_double_gauge() {
        let r: ListTimeSeriesResponse =
            serde_json::from_slice(cutover_fakes::fixture!("payloads/timeseries-2.json")).unwrap();
        let p = &r.time_series[0].points[0];
        assert_eq!(p.value.as_count(), Some(1));
        assert_eq!(p.interval.start_time, p.interval.end_time);
    }

    #[test]
    fn empty_answer_is_an_empty_object() {
        let r: ListTimeSeriesResponse = serde_json::from_str("{}").unwrap();
        assert!(r.time_series.is_empty() && r.next_page_token.is_empty());
    }

    #[test]
    fn exponential_buckets_become_bounds_and_short_counts_pad() {
        let d: Distribution = serde_json::from_str(
            r#"{"count":"412","mean":48.2,"bucketOptions":{"exponentialBuckets":{"numFiniteBuckets":64,"growthFactor":1.4,"scale":1}},
                "bucketCounts":["0","3","10","25","77","120","98","50","20","6","3"]}"#,
        )
        .unwrap();
        let h = d.buckets().unwrap();
        assert_eq!(h.bounds.len(), 65);
        assert_eq!(h.counts.len(), 66);
        assert_eq!(h.counts.iter().sum::<u64>(), 412);
        assert!((h.bounds[1] - 1.4).abs() < 1e-9);
        let bad: Distribution = serde_json::from_str(
            r#"{"count":"1","bucketOptions":{"exponentialBuckets":{"numFiniteBuckets":4000000000,"growthFactor":1.4,"scale":1}}}"#,
        )
        .unwrap();
        assert!(bad.buckets().is_err());
    }
}
