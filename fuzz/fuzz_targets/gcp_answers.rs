//! Fuzz target: answers from the Google APIs, which cutover reads but does not control.
//!
//! The first input byte picks the API. Cloud Monitoring: a `timeSeries.list` page is decoded and
//! folded into per-revision stats, as a step judgement reads it (judging itself is fuzzed through
//! `decide` in `annotations_policy`). Cloud Run: a `Service`
//! is decoded, reduced to what decisions see, and turned into the guarded write body. Never
//! panics; folded stats never count more 5xx than requests; a quantile lies within the
//! histogram's bounds; and the write body keeps the template, the labels and the etag exactly as
//! read, whatever the service looked like.
#![no_main]

use std::collections::BTreeMap;

use cutover::decision::evidence::{Histogram, Window};
use cutover::decision::{Phase, Record, Target, Write};
use cutover::gcp::monitoring::ListTimeSeriesResponse;
use cutover::gcp::run::{Fetched, Service};
use cutover::metrics::cloud_monitoring::fold;
use cutover::router::cloud_run::{observed, patch_body};
use cutover::target::{Platform, ServiceRef};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn monitoring(data: &[u8]) {
    let Ok(page) = serde_json::from_slice::<ListTimeSeriesResponse>(data) else {
        return;
    };
    let start = Timestamp::from_second(1_787_220_000).expect("a valid time");
    let window = Window {
        start,
        end: start + jiff::SignedDuration::from_mins(5),
    };
    for series in &page.time_series {
        for point in &series.points {
            let _ = point.value.as_count();
            if let Some(d) = &point.value.distribution_value
                && let Ok(b) = d.buckets()
            {
                let top = b.bounds.last().copied().unwrap_or(0.0).max(0.0);
                let h = Histogram {
                    bounds: b.bounds,
                    counts: b.counts,
                };
                let Some(q) = h.quantile(0.99) else { continue };
                assert!(q >= 0.0 && q <= top, "p99 {q} outside [0, {top}]");
            }
        }
    }
    // Every platform's answer is folded the same way, its 5xx read from its own labels.
    for platform in Platform::ALL {
        let Ok(stats) = fold(platform, window, &page.time_series) else {
            continue;
        };
        for revision in stats.revision_names() {
            // Bucket layouts may disagree between points of a fuzzed answer: that is an error the
            // decision core holds on, never a panic.
            let Ok(Some(s)) = stats.revision(revision) else {
                continue;
            };
            assert!(
                s.errors_5xx <= s.requests,
                "{revision}: more 5xx than requests"
            );
            assert!(s.error_rate().is_finite(), "{revision}: error rate");
            let _ = s.latency.quantile(0.99);
            let minutes = stats.minutes(revision).unwrap_or_default();
            let by_minute: u64 = minutes.values().map(|m| m.requests).sum();
            assert_eq!(
                by_minute, s.requests,
                "{revision}: minutes add up to the window"
            );
        }
    }
}

fn run(data: &[u8]) {
    let Ok(raw) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(service) = serde_json::from_value::<Service>(raw.clone()) else {
        return;
    };
    let seen = observed(
        ServiceRef::checked("p", "us-central1", "api").expect("valid ids"),
        Fetched {
            service,
            raw: raw.clone(),
        },
    );
    let obs = &seen.observed;
    let stable = obs
        .allocation
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| "api-00001-abc".into());
    let candidate = obs
        .latest_ready
        .clone()
        .unwrap_or_else(|| "api-00002-def".into());
    let at = Timestamp::from_second(1_787_220_000).expect("a valid time");
    let write = Write {
        traffic: Some(vec![
            Target {
                revision: stable.clone(),
                percent: 90,
                tag: Some("stable".into()),
            },
            Target {
                revision: candidate.clone(),
                percent: 10,
                tag: Some("candidate".into()),
            },
        ]),
        record: Record {
            phase: Phase::Progressing,
            candidate,
            stable,
            percent: 10,
            started: at,
            step_started: at,
            reason: "fuzz".into(),
            rolled_back: vec![],
            history: Default::default(),
            build: None,
        },
    };
    let body = patch_body(&seen, &write);
    if let Value::Object(read) = &raw {
        assert_eq!(
            body.get("template"),
            read.get("template"),
            "template changed"
        );
        assert_eq!(body.get("labels"), read.get("labels"), "labels changed");
        assert_eq!(
            body.get("etag").and_then(Value::as_str),
            Some(seen.version.etag.as_str()),
            "etag not sent back"
        );
        let foreign = |v: Option<&Value>| -> BTreeMap<String, Value> {
            v.and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| !k.starts_with("cutover.dev/"))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            foreign(body.get("annotations")),
            foreign(read.get("annotations")),
            "someone else's annotations changed"
        );
    }
}

fuzz_target!(|input: &[u8]| {
    match input.split_first() {
        Some((b, rest)) if b & 1 == 0 => monitoring(rest),
        Some((_, rest)) => run(rest),
        None => {}
    }
});
