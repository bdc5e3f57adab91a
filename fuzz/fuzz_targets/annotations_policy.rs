//! Fuzz target: cutover's record and policy annotations, and the decision taken on them.
//!
//! Annotations on a service are written by cutover *and* by people (`gcloud run services update
//! --update-annotations`), so the record parser, the override parsers and the decision core see
//! arbitrary text. Input layout: up to 8 control bytes (trigger, traffic, readiness, evidence,
//! clock), then `key=value` lines; a key `@N` names the N-th known `cutover.dev/*` key.
//!
//! Checked, besides "never panics": a parsed record survives `to_annotations` → `from_annotations`
//! (its reason as `ids::text::printable` makes it: at most 1,000 characters, no control one);
//! an accepted override yields a policy that validates; a decision's traffic sums to 100 and
//! names only the record's stable and candidate revisions; a rollback targets a ready stable
//! revision; an advance moves one step; and deciding again on the state a decision wrote, for the
//! same event, writes nothing.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use cutover::decision::evidence::{Histogram, RevisionStats, ServiceStats, Window};
use cutover::decision::policy::OVERRIDE_KEYS;
use cutover::decision::record::RECORD_KEYS;
use cutover::decision::{Evidence, Kind, Observed, Phase, Policy, Record, Trigger, Write, decide};
use cutover::target::ServiceRef;
use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;

const STABLE: &str = "api-00001-abc";
const CANDIDATE: &str = "api-00002-def";
const OTHER: &str = "api-00003-ghi";

fn known_key(i: usize) -> String {
    let all: Vec<&str> = RECORD_KEYS.iter().chain(OVERRIDE_KEYS).copied().collect();
    all[i % all.len()].to_string()
}

fn annotations(text: &str) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    for line in text.split('\n') {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        let key = match k
            .strip_prefix('@')
            .and_then(|n| n.trim().parse::<usize>().ok())
        {
            Some(i) => known_key(i),
            None => k.to_string(),
        };
        a.insert(key, v.to_string());
    }
    a
}

fn control(input: &[u8]) -> ([u8; 8], &[u8]) {
    let mut c = [0u8; 8];
    let n = input.len().min(8);
    c[..n].copy_from_slice(&input[..n]);
    (c, &input[n..])
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_787_220_000).expect("a valid time")
}

fuzz_target!(|input: &[u8]| {
    let (c, rest) = control(input);
    let text = String::from_utf8_lossy(rest);
    let a = annotations(&text);

    let record = Record::from_annotations(&a);
    if let Ok(Some(r)) = &record {
        let mut expected = r.clone();
        // What cutover writes is the printable form: bounded, no control character (issue 10).
        expected.reason = cutover::ids::text::printable(&r.reason, 1000);
        let back = Record::from_annotations(&r.to_annotations());
        assert_eq!(back, Ok(Some(expected)), "record round trip");
    }
    let defaults = Policy::default();
    let policy = defaults.with_overrides(&a);
    if let Ok(p) = &policy {
        assert_eq!(p.validate(), Ok(()), "an accepted override must validate");
    }

    // The service as observed.
    let (stable, candidate) = match &record {
        Ok(Some(r)) if c[1] & 1 == 0 => (r.stable.clone(), r.candidate.clone()),
        _ => (STABLE.to_string(), CANDIDATE.to_string()),
    };
    let percent = c[2].min(100);
    let mut allocation = BTreeMap::new();
    match c[1] >> 1 & 3 {
        0 => {
            if percent < 100 {
                allocation.insert(stable.clone(), 100 - percent);
            }
            if percent > 0 {
                *allocation.entry(candidate.clone()).or_insert(0) += percent;
            }
        }
        1 => {
            allocation.insert(stable.clone(), 100);
        }
        2 => {
            allocation.insert(OTHER.to_string(), 100 - percent / 2);
            if percent / 2 > 0 {
                allocation.insert(stable.clone(), percent / 2);
            }
        }
        _ => {}
    }
    let mut ready = BTreeSet::new();
    if c[3] & 1 == 1 {
        ready.insert(stable.clone());
    }
    if c[3] & 2 == 2 {
        ready.insert(candidate.clone());
    }
    let latest_ready = match c[3] >> 2 & 3 {
        0 => Some(candidate.clone()),
        1 => Some(stable.clone()),
        2 => Some(OTHER.to_string()),
        _ => None,
    };
    ready.extend(latest_ready.iter().cloned());
    let obs = Observed {
        service: ServiceRef::checked("p", "us-central1", "api").expect("valid ids"),
        latest_ready,
        allocation,
        ready,
        tag_urls: BTreeMap::new(),
        annotations: a.clone(),
    };
    let trigger = match c[0] % 3 {
        0 => Trigger::Tick,
        1 => Trigger::Build {
            build_id: "b".into(),
        },
        _ => Trigger::Alert {
            incident_id: "i".into(),
            summary: text.chars().take(40).collect(),
        },
    };
    let now = match &record {
        Ok(Some(r)) if c[6] & 0x80 == 0 => r
            .step_started
            .saturating_add(SignedDuration::from_mins(i64::from(c[6]) * 3))
            .unwrap_or(r.step_started),
        _ => t0(),
    };
    let window = Window {
        start: now
            .saturating_sub(SignedDuration::from_mins(5))
            .unwrap_or(now),
        end: now,
    };
    let requests = u64::from(c[5]) * 37;
    let errors = (u64::from(c[7]) * requests / 255).min(requests);
    let stats = RevisionStats {
        requests,
        errors_5xx: errors,
        latency: Histogram {
            bounds: vec![10.0, 100.0, 1000.0],
            counts: vec![
                0,
                requests / 2,
                requests - requests / 2,
                u64::from(c[7] & 3),
            ],
        },
    };
    // The stable revision served the rest, with its own (usually lower) error count.
    let stable_requests = requests.saturating_mul(u64::from(c[4] >> 4) + 1);
    let stable_stats = RevisionStats {
        requests: stable_requests,
        errors_5xx: (u64::from(c[6] & 0x0f) * stable_requests / 255).min(stable_requests),
        latency: Histogram {
            bounds: vec![10.0, 100.0, 1000.0],
            counts: vec![0, stable_requests, 0, 0],
        },
    };
    let evidence = match c[4] % 5 {
        0 => Evidence::None,
        1 => Evidence::Metrics(Ok(ServiceStats::from_totals(
            window,
            BTreeMap::from([(candidate.clone(), stats), (stable.clone(), stable_stats)]),
        ))),
        2 => Evidence::Metrics(Err("unavailable".into())),
        3 => Evidence::Smoke(Ok(())),
        _ => Evidence::Smoke(Err("503".into())),
    };

    let d = decide(&obs, &trigger, &evidence, &defaults, now);
    let Some(write) = d.write() else {
        return;
    };
    if let Some(traffic) = &write.traffic {
        let sum: u32 = traffic.iter().map(|t| u32::from(t.percent)).sum();
        assert_eq!(sum, 100, "traffic sums to {sum}: {traffic:?}");
        for t in traffic {
            assert!(
                t.revision == write.record.stable || t.revision == write.record.candidate,
                "{} is neither stable nor candidate",
                t.revision
            );
        }
    }
    if d.kind() == Kind::Rollback {
        assert!(
            obs.ready.contains(&write.record.stable),
            "rollback to an unready stable"
        );
    }
    if d.kind() == Kind::Advance
        && let (Ok(Some(before)), Ok(p)) = (&record, &policy)
    {
        let expected = if before.phase == Phase::Smoke {
            p.steps.first().copied()
        } else {
            p.next_step(before.percent)
        };
        assert_eq!(Some(write.record.percent), expected, "advance skips a step");
    }

    // The same event again, on the state this decision wrote, writes nothing.
    let mut after = a.clone();
    after.retain(|k, _| !RECORD_KEYS.contains(&k.as_str()));
    after.extend(write.record.to_annotations());
    let allocation = match &write.traffic {
        Some(traffic) => {
            let mut m = BTreeMap::new();
            for t in traffic.iter().filter(|t| t.percent > 0) {
                *m.entry(t.revision.clone()).or_insert(0u8) += t.percent;
            }
            m
        }
        None => obs.allocation.clone(),
    };
    let obs2 = Observed {
        allocation,
        annotations: after,
        ..obs.clone()
    };
    if d.write().is_some_and(Write::continues) {
        return;
    }
    let d2 = decide(&obs2, &trigger, &evidence, &defaults, now);
    assert!(
        d2.write().is_none(),
        "the same event twice wrote twice: {:?} then {:?} ({})",
        d.kind(),
        d2.kind(),
        d2.reason
    );
});
