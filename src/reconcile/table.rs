//! Table tests of the reconciler against a scripted router and metrics source: what a person
//! would notice (whether the write reached the service, the decision records, the error an
//! event ends with) when writes conflict, fail, are overtaken, or evidence is missing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

use super::*;
use crate::decision::evidence::{Histogram, RevisionStats, ServiceStats, Window};
use crate::decision::{Phase, Write};
use crate::metrics::{MetricsError, MetricsSource};

const STABLE: &str = "api-00001-abc";
const CANDIDATE: &str = "api-00002-def";

fn t0() -> Timestamp {
    "2026-08-20T10:00:00Z".parse().unwrap()
}

fn target() -> ServiceRef {
    ServiceRef::checked("p", "us-central1", "api").expect("valid ids")
}

/// How the scripted platform answers one write.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Someone else wrote first (HTTP 409 or 412).
    Conflict,
    /// Worth retrying later (HTTP 429, 503).
    Transient,
    /// Will not succeed by retrying (HTTP 400, 403).
    Permanent,
    /// Another cutover instance applies the same write just before this one arrives, so this
    /// one carries a stale version.
    Overtaken,
}

/// The router error the platform's refusal becomes.
fn refusal(a: Answer) -> RouterError {
    match a {
        Answer::Conflict => RouterError::new(ErrorKind::Conflict, "etag mismatch"),
        Answer::Transient => RouterError::new(ErrorKind::Transient, "HTTP 503"),
        Answer::Permanent => RouterError::new(ErrorKind::Permanent, "HTTP 403: permission denied"),
        Answer::Overtaken => unreachable!("an overtaken write is refused by its version"),
    }
}

/// The scripted platform: one service, its version, and how the next writes are answered.
struct Platform {
    observed: Observed,
    version: u64,
    /// Answers to the next writes; a write beyond them is accepted.
    answers: VecDeque<Answer>,
    /// Writes that reached the service, from anyone.
    applied: Vec<Write>,
}

impl Platform {
    /// Applies `w` as the platform would, moving to a new version.
    fn accept(&mut self, w: &Write) {
        self.observed = self.observed.after(w);
        self.version += 1;
        self.applied.push(w.clone());
    }
}

#[derive(Clone)]
struct ScriptedRouter(Arc<Mutex<Platform>>);

impl TrafficRouter for ScriptedRouter {
    type Version = u64;

    async fn observe(
        &self,
        _target: &ServiceRef,
        _deadline: Instant,
    ) -> Result<Observation<u64>, RouterError> {
        let p = self.0.lock().unwrap();
        Ok(Observation {
            observed: p.observed.clone(),
            version: p.version,
        })
    }

    async fn list(
        &self,
        _project: &str,
        _region: &str,
        deadline: Instant,
    ) -> Result<Vec<Observation<u64>>, RouterError> {
        Ok(vec![self.observe(&target(), deadline).await?])
    }

    async fn apply(
        &self,
        read: &Observation<u64>,
        write: &Write,
        deadline: Instant,
    ) -> Result<Observation<u64>, RouterError> {
        {
            let mut p = self.0.lock().unwrap();
            match p.answers.pop_front() {
                Some(Answer::Overtaken) => p.accept(write),
                Some(a) => return Err(refusal(a)),
                None => {}
            }
            if p.version != read.version {
                return Err(refusal(Answer::Conflict));
            }
            p.accept(write);
        }
        self.observe(&read.observed.service, deadline).await
    }
}

/// Metrics answered from a script; every window asked for is kept.
#[derive(Clone, Default)]
struct ScriptedMetrics(Arc<Mutex<(VecDeque<Evidence>, Vec<Window>)>>);

/// What the scripted metrics source answers for one window.
#[derive(Clone, Copy, Debug)]
enum Evidence {
    /// 1,000 requests, 0.2% 5xx, fast: a healthy candidate.
    Healthy,
    /// 20 requests: too few to judge.
    TooFew,
    /// Monitoring answers 503 beyond its retries.
    Unavailable,
}

impl MetricsSource for ScriptedMetrics {
    async fn service_stats(
        &self,
        _target: &ServiceRef,
        window: Window,
        _deadline: Instant,
    ) -> Result<ServiceStats, MetricsError> {
        let mut script = self.0.lock().unwrap();
        script.1.push(window);
        let (requests, errors_5xx) = match script.0.pop_front().expect("an answer scripted") {
            Evidence::Healthy => (1000, 2),
            Evidence::TooFew => (20, 0),
            Evidence::Unavailable => {
                return Err(MetricsError::new(ErrorKind::Transient, "HTTP 503"));
            }
        };
        let bounds = vec![100.0, 200.0, 1000.0];
        let latency = Histogram {
            counts: vec![0, requests, 0, 0],
            bounds,
        };
        let stats = RevisionStats {
            requests,
            errors_5xx,
            latency,
        };
        Ok(ServiceStats::from_totals(
            window,
            BTreeMap::from([(CANDIDATE.to_string(), stats)]),
        ))
    }
}

/// Where the service starts.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// The stable revision serves 100%; a new revision is ready and untouched.
    Deployed,
    /// The candidate has had 10% since `t0`.
    AtTenPercent,
}

fn service(start: Start) -> Observed {
    let mut o = Observed {
        service: target(),
        latest_ready: Some(CANDIDATE.into()),
        allocation: BTreeMap::from([(STABLE.to_string(), 100)]),
        ready: BTreeSet::from([STABLE.to_string(), CANDIDATE.to_string()]),
        tag_urls: BTreeMap::new(),
        annotations: BTreeMap::new(),
    };
    if let Start::AtTenPercent = start {
        o.allocation = BTreeMap::from([(STABLE.to_string(), 90), (CANDIDATE.to_string(), 10)]);
        let record = Record {
            phase: Phase::Progressing,
            candidate: CANDIDATE.into(),
            stable: STABLE.into(),
            percent: 10,
            started: t0(),
            step_started: t0(),
            reason: "started".into(),
            rolled_back: Vec::new(),
            history: Default::default(),
            build: None,
        };
        o.annotations = record.to_annotations();
    }
    o
}

fn build() -> Trigger {
    Trigger::Build {
        build_id: "b-1".into(),
    }
}

/// Minutes after `t0` when the 10% step is due (5-minute soak, 3-minute metrics delay).
const DUE: i64 = 8;

/// One case: a service, the events that arrive (minutes after `t0`, trigger), how the platform
/// answers writes and Monitoring answers windows; then what a person sees.
struct Row {
    name: &'static str,
    start: Start,
    events: Vec<(i64, Trigger)>,
    writes: Vec<Answer>,
    metrics: Vec<Evidence>,
    /// Every decision record, in order: (decision, how its write went, a word of its reason).
    records: Vec<(&'static str, &'static str, &'static str)>,
    /// Writes that reached the service (from this instance or another).
    applied: usize,
    /// The candidate's share at the end.
    share: u8,
    /// The error the last event ends with (`transient`, `permanent`), if any.
    error: Option<&'static str>,
}

/// What an event's error means to Pub/Sub: redeliver (transient) or not.
fn class(e: &ReconcileError) -> &'static str {
    if e.kind().worth_retrying() {
        "transient"
    } else {
        "permanent"
    }
}

fn rows() -> Vec<Row> {
    let conflict = ("start", "conflict", "new revision");
    vec![
        Row {
            name: "a write that goes through",
            start: Start::Deployed,
            events: vec![(0, build())],
            writes: vec![],
            metrics: vec![],
            records: vec![("start", "applied", "candidate gets 10%")],
            applied: 1,
            share: 10,
            error: None,
        },
        Row {
            name: "conflicts until the retry budget is spent: nothing written, redelivery asked for",
            start: Start::Deployed,
            events: vec![(0, build())],
            writes: vec![Answer::Conflict; 6],
            metrics: vec![],
            records: vec![conflict; 6],
            applied: 0,
            share: 0,
            error: Some("transient"),
        },
        Row {
            name: "two conflicts, then the write decided again on fresh state",
            start: Start::Deployed,
            events: vec![(0, build())],
            writes: vec![Answer::Conflict, Answer::Conflict],
            metrics: vec![],
            records: vec![conflict, conflict, ("start", "applied", "new revision")],
            applied: 1,
            share: 10,
            error: None,
        },
        Row {
            name: "a read overtaken by another instance's advance: no second step",
            start: Start::AtTenPercent,
            events: vec![(DUE, Trigger::Tick)],
            writes: vec![Answer::Overtaken],
            metrics: vec![Evidence::Healthy],
            records: vec![
                ("advance", "conflict", "step 10% healthy"),
                ("hold", "none", "soaking at 50%"),
            ],
            applied: 1,
            share: 50,
            error: None,
        },
        Row {
            name: "a transient failure of the write: nothing written, redelivery asked for",
            start: Start::Deployed,
            events: vec![(0, build())],
            writes: vec![Answer::Transient],
            metrics: vec![],
            records: vec![("start", "failed", "new revision")],
            applied: 0,
            share: 0,
            error: Some("transient"),
        },
        Row {
            name: "a permanent failure of the write: nothing written, no redelivery",
            start: Start::Deployed,
            events: vec![(0, build())],
            writes: vec![Answer::Permanent],
            metrics: vec![],
            records: vec![("start", "failed", "new revision")],
            applied: 0,
            share: 0,
            error: Some("permanent"),
        },
        Row {
            name: "metrics unavailable: the step holds, never rolls back",
            start: Start::AtTenPercent,
            events: vec![(DUE, Trigger::Tick)],
            writes: vec![],
            metrics: vec![Evidence::Unavailable],
            records: vec![("hold", "none", "metrics unavailable")],
            applied: 0,
            share: 10,
            error: None,
        },
        Row {
            name: "metrics unavailable past the maximum hold: a pause, traffic left as it is",
            start: Start::AtTenPercent,
            events: vec![(DUE + 60, Trigger::Tick)],
            writes: vec![],
            metrics: vec![Evidence::Unavailable],
            records: vec![("pause", "applied", "metrics unavailable")],
            applied: 1,
            share: 10,
            error: None,
        },
        Row {
            name: "too few requests, then a second gather over a longer window advances",
            start: Start::AtTenPercent,
            events: vec![(DUE, Trigger::Tick), (DUE + 7, Trigger::Tick)],
            writes: vec![],
            metrics: vec![Evidence::TooFew, Evidence::Healthy],
            records: vec![
                ("hold", "none", "fewer than the 100 needed"),
                ("advance", "applied", "candidate gets 50%"),
            ],
            applied: 1,
            share: 50,
            error: None,
        },
    ]
}

#[tokio::test]
async fn what_a_person_sees_when_writes_conflict_fail_or_evidence_is_missing() {
    for row in rows() {
        let platform = Arc::new(Mutex::new(Platform {
            observed: service(row.start),
            version: 1,
            answers: row.writes.iter().copied().collect(),
            applied: Vec::new(),
        }));
        let metrics = ScriptedMetrics::default();
        metrics.0.lock().unwrap().0 = row.metrics.iter().copied().collect();
        let clock = Clock::manual(t0());
        let reconciler = Reconciler::new(
            ScriptedRouter(platform.clone()),
            metrics.clone(),
            SmokeCheck::new(None).expect("an HTTP client"),
            Policy::default(),
            clock.clone(),
        );
        // Every record is published (and logged) as it is made, also on the way to an error.
        let mut published = reconciler.subscribe();
        let mut records = Vec::new();
        let mut last = Ok(Vec::new());
        for (minutes, trigger) in &row.events {
            clock.set(t0() + SignedDuration::from_mins(*minutes));
            let deadline = Instant::now() + Duration::from_secs(10);
            last = reconciler
                .reconcile(&target(), trigger.clone(), deadline)
                .await;
            while let Ok(r) = published.try_recv() {
                records.push(r);
            }
        }
        let name = row.name;
        let seen: Vec<_> = records
            .iter()
            .map(|r| (r.decision.as_str(), r.write.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(seen.len(), row.records.len(), "{name}: {seen:#?}");
        for ((decision, write, reason), want) in seen.iter().zip(&row.records) {
            assert_eq!(*decision, want.0, "{name}: {seen:#?}");
            assert!(write.starts_with(want.1), "{name}: {seen:#?}");
            assert!(reason.contains(want.2), "{name}: {seen:#?}");
        }
        let p = platform.lock().unwrap();
        assert_eq!(p.applied.len(), row.applied, "{name}: writes applied");
        let share = p.observed.allocation.get(CANDIDATE).copied().unwrap_or(0);
        assert_eq!(share, row.share, "{name}: the candidate's share");
        assert_eq!(
            last.as_ref().err().map(class),
            row.error,
            "{name}: {last:?}"
        );
        // A gather asks for the step's window, which only grows from the step's start.
        let windows = &metrics.0.lock().unwrap().1;
        assert_eq!(windows.len(), row.metrics.len(), "{name}: metrics asked");
        assert!(windows.iter().all(|w| w.start == t0()), "{name}");
        assert!(windows.windows(2).all(|w| w[0].end < w[1].end), "{name}");
    }
}
