//! Client-side rate limits in front of Google's own quotas, so that a burst of evaluations never
//! spends the budget operators need for their own `gcloud` calls.
//!
//! Google counts requests per minute per consumer project (and Cloud Run per region too). The
//! quotas, as published (looked up for issue 16; the console's Quotas page of each API shows a
//! project's own figures, which may have been raised):
//! - Cloud Run Admin API: "Read requests per minute per region" (1,200 per project and region
//!   in the consoles we checked) and "Write requests per minute per region" (60 per project and
//!   region, `run.googleapis.com` write requests; PATCH of a service counts here);
//! - Cloud Monitoring API: "Time series queries per minute" (`monitoring.googleapis.com/query_requests`,
//!   limit `QueryRequestsPerMinutePerProject`, 6,000 per project);
//! - Compute Engine API (<https://cloud.google.com/compute/api-quota>, global methods, per
//!   project): "Read requests" (`compute.googleapis.com/read_requests`, `*.get`,
//!   `ReadRequestsPerMinutePerProject` 1,500), "Queries" (`compute.googleapis.com/default`,
//!   mutations such as `urlMaps.patch`, `defaultPerMinutePerProject` 1,500) and "Operation read
//!   requests" (`globalOperations.get`, 1,500). Compute refuses an excess with **403**
//!   `rateLimitExceeded` (or 429), which [`super::status_error`] reads as `RESOURCE_EXHAUSTED`;
//! - App Engine Admin API: no per-method rate quota is published (its reference and quota
//!   pages list none; the daily "safety limits" of `appengine/quotas` concern the apps, not the
//!   Admin API). One bucket per project for every call, 600 a minute by default, a budget of
//!   cutover's own: ten calls a second is far more than the few a rollout step needs, and an
//!   operator who finds a lower figure on the console's Quotas page sets it;
//! - Firestore (<https://cloud.google.com/firestore/quotas>): no per-minute request quota; its
//!   limits are daily free-tier amounts (50,000 reads, 20,000 writes a day without billing) and
//!   write-rate guidance (about one sustained write a second per document, formerly 10,000
//!   writes a second per database). One bucket per project of the database, 1,200 calls a
//!   minute by default: a recorded rollout step costs a read and up to three commits, so the
//!   budget bounds cutover's share of a shared database, never a rollout.
//!
//! Every call through [`super::Google::call`] is classified from its URL ([`Bucket::of`]):
//! `GET /v2/projects/P/locations/R/…` (and an operation's `:wait`) is a Run read of (P, R), any
//! other method there a Run write, `/v3/projects/P/…` a Monitoring query of P,
//! `/compute/v1/projects/P/…` a Compute read (`GET`) or write (any other method; `getHealth` is
//! a `POST` and counts with the writes, the smaller share of the two), `/v1/apps/P/…` an App
//! Engine call and `/v1/projects/P/databases/…` a Firestore call of P; anything else (metadata,
//! tokens) is not limited. A call waits until its bucket has had fewer than its limit of calls
//! in the last [`WINDOW`] (a sliding window: no 60-second span, however aligned, holds more),
//! and until any `Retry-After` the API asked for has passed. Calls made in [`urgent`] (alerts)
//! take the next free slot ahead of routine ones waiting on the same bucket, and a tenth of
//! every bucket, at least two calls ([`reserved`]), is theirs alone: routine calls stop short of
//! it, so an alert finds a slot even when routine work has spent its share of the window. A call that
//! cannot get a slot before its deadline fails as [`super::ApiError::OutOfTime`], and a routine
//! one whose slot is more than [`ROUTINE_PATIENCE`] away fails at once
//! ([`super::ApiError::NoSlotSoon`]) rather than holding its event: both are transient
//! failures, the push is answered non-2xx and Pub/Sub redelivers it (to any instance, one with
//! budget left perhaps), so waiting for quota never drops work.
//!
//! The limits are per cutover instance; Terraform divides the project's budget by the maximum
//! number of instances (`infra/`), so all instances together stay below it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

use super::ApiError;
use crate::clock::Clock;

/// The span Google's rate quotas count over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How many calls per [`WINDOW`] each bucket allows (per instance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Cloud Run Admin API reads, per project × region.
    pub run_reads: u32,
    /// Cloud Run Admin API writes, per project × region.
    pub run_writes: u32,
    /// Cloud Monitoring time series queries, per project.
    pub monitoring_queries: u32,
    /// App Engine Admin API calls, per project (app).
    pub appengine_calls: u32,
    /// Compute Engine API reads (`GET`), per project.
    pub compute_reads: u32,
    /// Compute Engine API writes and other calls (`PATCH`, `getHealth`), per project.
    pub compute_writes: u32,
    /// Firestore API calls, per project of the database.
    pub firestore_calls: u32,
}

impl Limits {
    /// No limit at all (tests and tools that talk to the fakes only).
    pub const UNLIMITED: Limits = Limits {
        run_reads: u32::MAX,
        run_writes: u32::MAX,
        monitoring_queries: u32::MAX,
        appengine_calls: u32::MAX,
        compute_reads: u32::MAX,
        compute_writes: u32::MAX,
        firestore_calls: u32::MAX,
    };
}

/// The longest a routine call waits for a slot; one whose slot is further away gives its event
/// back at once ([`super::ApiError::NoSlotSoon`], transient: the push is answered 503 and
/// Pub/Sub redelivers it, likely to an instance with budget left).
///
/// The bound is Pub/Sub's shortest redelivery backoff (`push_minimum_backoff` in `infra/`, 10 s
/// by default): a slot that comes sooner than that comes sooner than any redelivery could, so
/// waiting for it is the quicker way to a judgement; one that comes later is better looked for
/// on another instance, which the redelivery gives the message a chance of, instead of the
/// message holding this instance's push slot (and its budget's place in the queue) up to its
/// event deadline while the other instances' budgets go unused. A given-back evaluation costs
/// its reads again on redelivery (a Run read and a Monitoring query, from budgets 20 and 100
/// times the writes'); and if no instance has a slot, Pub/Sub's growing backoff spaces the
/// retries, and the next tick publishes the evaluation again anyway. Alerts never give back:
/// they wait up to their deadline, with the reserved slots ([`reserved`]) theirs alone.
pub const ROUTINE_PATIENCE: Duration = Duration::from_secs(10);

/// How many alerts' calls a bucket keeps for them whatever routine work has spent
/// ([`reserved`]), where the bucket is big enough to spare them.
pub const ALERT_BURST: usize = 2;

/// How many of a bucket's `limit` calls per window are kept for alerts: a tenth, and never
/// fewer than [`ALERT_BURST`] where that leaves routine work at least half the bucket (a limit of
/// 4 or more; 1 of 2 or 3; none of 1).
///
/// A tenth alone kept nothing in the buckets Terraform actually gives an instance: the Run write
/// budget (50 a minute per project × region) divided among up to 10 instances is 5, and with 4
/// processes 12, a tenth of which is one call. The fan-out bench then had two alerts of one
/// project and region land on one process within a second, after the evaluations had spent
/// that process's routine writes: the second rollback waited 58 s for the window to turn. Alerts
/// come in small bursts, because candidates that share something (a database, a region's
/// network) fail together, and each rollback is one write; two per instance and window cover a
/// burst spread over the instances, at a cost of at most two routine writes a minute in the
/// busiest pairs (a routine call that finds no slot gives its event back for redelivery).
pub fn reserved(limit: usize) -> usize {
    (limit / 10).max(ALERT_BURST.min(limit / 2))
}

/// Which of Google's quotas a call counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    RunRead,
    RunWrite,
    MonitoringQuery,
    AppEngine,
    ComputeRead,
    ComputeWrite,
    Firestore,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::RunRead => "Cloud Run reads",
            Class::RunWrite => "Cloud Run writes",
            Class::MonitoringQuery => "Monitoring queries",
            Class::AppEngine => "App Engine Admin calls",
            Class::ComputeRead => "Compute reads",
            Class::ComputeWrite => "Compute writes",
            Class::Firestore => "Firestore calls",
        }
    }
}

/// One quota bucket: a class of calls in a project (and, for Cloud Run, a region).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bucket {
    pub class: Class,
    pub project: String,
    /// `None` for every API but Cloud Run (their quotas are per project).
    pub region: Option<String>,
}

impl Bucket {
    /// The bucket a call to `url` with `method` counts against, if any.
    pub fn of(method: &str, url: &str) -> Option<Bucket> {
        let path = url.split('?').next().unwrap_or(url);
        if let Some((_, rest)) = path.split_once("/v2/projects/") {
            let mut parts = rest.split('/');
            let (project, locations, region) = (parts.next()?, parts.next()?, parts.next()?);
            if locations != "locations" || project.is_empty() || region.is_empty() {
                return None;
            }
            // `operations:wait` reads: it changes nothing, however long it waits.
            let class =
                if method == "GET" || (path.contains("/operations/") && path.ends_with(":wait")) {
                    Class::RunRead
                } else {
                    Class::RunWrite
                };
            return Some(Bucket {
                class,
                project: project.to_string(),
                region: Some(region.to_string()),
            });
        }
        let per_project = |class, rest: &str| {
            let project = rest.split('/').next().filter(|p| !p.is_empty())?;
            Some(Bucket {
                class,
                project: project.to_string(),
                region: None,
            })
        };
        if let Some((_, rest)) = path.split_once("/v3/projects/") {
            return per_project(Class::MonitoringQuery, rest);
        }
        // Before Firestore's `/v1/projects/`, which this path contains too.
        if let Some((_, rest)) = path.split_once("/compute/v1/projects/") {
            let class = if method == "GET" {
                Class::ComputeRead
            } else {
                Class::ComputeWrite
            };
            return per_project(class, rest);
        }
        if let Some((_, rest)) = path.split_once("/v1/apps/") {
            return per_project(Class::AppEngine, rest);
        }
        if let Some((_, rest)) = path.split_once("/v1/projects/") {
            let mut parts = rest.splitn(3, '/');
            let (project, databases) = (parts.next()?, parts.next()?);
            if databases == "databases" {
                return per_project(Class::Firestore, project);
            }
        }
        None
    }
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.region {
            Some(r) => write!(f, "{} in {}/{r}", self.class.name(), self.project),
            None => write!(f, "{} in {}", self.class.name(), self.project),
        }
    }
}

tokio::task_local! {
    static URGENT: bool;
    static WRITES: std::sync::Arc<std::sync::atomic::AtomicBool>;
}

/// Runs `work`, noting in `wrote` when any of its calls first asks to write (a Cloud Run or
/// Compute write, limited or not): from then on it may have changed something.
pub async fn noting_writes<F: std::future::Future>(
    wrote: std::sync::Arc<std::sync::atomic::AtomicBool>,
    work: F,
) -> F::Output {
    WRITES.scope(wrote, work).await
}

/// Runs `work` with its Google calls ahead of routine ones in every quota bucket (alerts).
pub async fn urgent<F: std::future::Future>(work: F) -> F::Output {
    URGENT.scope(true, work).await
}

/// Whether the calling task runs in [`urgent`].
pub(crate) fn is_urgent() -> bool {
    URGENT.try_with(|u| *u).unwrap_or(false)
}

#[derive(Default)]
struct State {
    /// When each call of the last window was let through, oldest first.
    granted: VecDeque<Timestamp>,
    /// No call before this (the API's `Retry-After`).
    blocked_until: Option<Timestamp>,
    /// Urgent calls waiting: routine ones wait behind them.
    urgent_waiting: usize,
    /// Routine calls waiting: a new one's slot comes after theirs.
    routine_waiting: usize,
}

impl State {
    /// When the `ahead`-th call waiting for one of `allowed` slots (0: the first) gets one,
    /// going by the calls granted in the window; `None` if not within this window's calls
    /// (more than a window away).
    fn slot_for(&self, allowed: usize, ahead: usize, now: Timestamp) -> Option<Timestamp> {
        let open = allowed.saturating_sub(self.granted.len());
        if ahead < open {
            return Some(now);
        }
        // The (ahead - open)-th oldest call of the window leaves it first for this one.
        let frees = self.granted.get(self.granted.len() + ahead - allowed)?;
        Some(*frees + WINDOW)
    }
}

/// The rate limiter shared by every call of one cutover instance.
pub struct Quota {
    limits: Limits,
    clock: Clock,
    buckets: Mutex<HashMap<Bucket, State>>,
    waits: AtomicU64,
    granted: AtomicU64,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota")
            .field("limits", &self.limits)
            .finish()
    }
}

/// A call among its bucket's waiters (urgent or routine), for as long as it waits.
struct Queue<'a> {
    quota: &'a Quota,
    bucket: &'a Bucket,
    urgent: bool,
    waiting: bool,
}

impl Queue<'_> {
    fn count<'s>(&self, state: &'s mut State) -> &'s mut usize {
        if self.urgent {
            &mut state.urgent_waiting
        } else {
            &mut state.routine_waiting
        }
    }

    fn join(&mut self, state: &mut State) {
        if !self.waiting {
            *self.count(state) += 1;
            self.waiting = true;
            self.quota.waits.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn leave(&mut self, state: &mut State) {
        if self.waiting {
            *self.count(state) -= 1;
            self.waiting = false;
        }
    }
}

impl Drop for Queue<'_> {
    fn drop(&mut self) {
        if self.waiting {
            let mut map = self.quota.buckets.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(state) = map.get_mut(self.bucket) {
                self.leave(state);
            }
        }
    }
}

/// What a waiting call does next.
enum Next {
    Go,
    Wait(Duration),
    /// A routine call whose slot is further than [`ROUTINE_PATIENCE`] away.
    GiveBack,
}

impl Quota {
    /// A limiter with `limits`, counting windows on `clock` (the system clock in production:
    /// Google's minutes are real ones, whatever time rollouts are simulated in).
    pub fn new(limits: Limits, clock: Clock) -> Self {
        Quota {
            limits,
            clock,
            buckets: Mutex::new(HashMap::new()),
            waits: AtomicU64::new(0),
            granted: AtomicU64::new(0),
        }
    }

    /// No limits.
    pub fn unlimited() -> Self {
        Quota::new(Limits::UNLIMITED, Clock::System)
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many limited calls were let through so far.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    /// How many calls had to wait for a slot so far.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    fn limit(&self, class: Class) -> usize {
        let l = match class {
            Class::RunRead => self.limits.run_reads,
            Class::RunWrite => self.limits.run_writes,
            Class::MonitoringQuery => self.limits.monitoring_queries,
            Class::AppEngine => self.limits.appengine_calls,
            Class::ComputeRead => self.limits.compute_reads,
            Class::ComputeWrite => self.limits.compute_writes,
            Class::Firestore => self.limits.firestore_calls,
        };
        usize::try_from(l).unwrap_or(usize::MAX)
    }

    /// Waits for a slot in `bucket`, or fails (transient) if none comes before `deadline`; a
    /// routine call also if none comes within [`ROUTINE_PATIENCE`].
    pub async fn acquire(&self, bucket: &Bucket, deadline: Instant) -> Result<(), ApiError> {
        if matches!(bucket.class, Class::RunWrite | Class::ComputeWrite) {
            let _ = WRITES.try_with(|w| w.store(true, Ordering::Release));
        }
        let limit = self.limit(bucket.class);
        if limit == usize::MAX {
            return Ok(());
        }
        let urgent = is_urgent();
        // Routine calls leave the reserved slots to alerts.
        let allowed = if urgent {
            limit
        } else {
            limit - reserved(limit)
        };
        // Counted among the bucket's waiters from its first wait until it goes or gives up
        // (its future dropped included: a push whose request went away).
        let mut queue = Queue {
            quota: self,
            bucket,
            urgent,
            waiting: false,
        };
        loop {
            let next = {
                let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let state = map.entry(bucket.clone()).or_default();
                let now = self.clock.now();
                let start = now - SignedDuration::try_from(WINDOW).unwrap_or_default();
                while state.granted.front().is_some_and(|t| *t <= start) {
                    state.granted.pop_front();
                }
                let blocked = state.blocked_until.filter(|b| *b > now);
                let full = state.granted.len() >= allowed;
                let behind_urgent = !urgent && state.urgent_waiting > 0;
                if blocked.is_none() && !full && !behind_urgent {
                    state.granted.push_back(now);
                    self.granted.fetch_add(1, Ordering::Relaxed);
                    queue.leave(state);
                    Next::Go
                } else if !urgent && !queue.waiting && {
                    // A routine call decides once, on arrival: wait for a slot that comes
                    // within `ROUTINE_PATIENCE` (after the routine calls already waiting), or
                    // give its event back now.
                    let slot = state.slot_for(allowed, state.routine_waiting, now);
                    let ready = match (slot, blocked) {
                        (Some(s), Some(b)) => Some(s.max(b)),
                        (slot, _) => slot,
                    };
                    ready.is_none_or(|r| r.duration_since(now).unsigned_abs() > ROUTINE_PATIENCE)
                } {
                    Next::GiveBack
                } else {
                    queue.join(state);
                    let until = match (blocked, full) {
                        (Some(b), _) => b,
                        (None, true) => state.granted[state.granted.len() - allowed] + WINDOW,
                        // Behind an urgent call that is itself about to go.
                        (None, false) => now + Duration::from_millis(5),
                    };
                    Next::Wait(until.duration_since(now).unsigned_abs())
                }
            };
            let wait = match next {
                Next::Go => return Ok(()),
                Next::GiveBack => {
                    return Err(ApiError::NoSlotSoon {
                        waiting_for: format!(
                            "client-side quota: {bucket} (limit {limit} per minute) has no slot within {}s",
                            ROUTINE_PATIENCE.as_secs()
                        ),
                    });
                }
                Next::Wait(w) => w,
            };
            // A manual clock moves when its test says so: look again soon.
            let pause = match self.clock {
                Clock::System => wait.max(Duration::from_millis(1)),
                Clock::Manual(_) => Duration::from_millis(2),
            };
            let too_late = match self.clock {
                Clock::System => Instant::now() + wait > deadline,
                Clock::Manual(_) => Instant::now() + pause > deadline,
            };
            if too_late {
                return Err(ApiError::OutOfTime {
                    waiting_for: format!(
                        "client-side quota: {bucket} is at its limit of {limit} per minute"
                    ),
                });
            }
            tokio::time::sleep(pause.min(Duration::from_secs(1))).await;
        }
    }

    /// The API answered 429 for `bucket`: no call to it before `after` from now.
    pub fn back_off(&self, bucket: &Bucket, after: Duration) {
        let until = self.clock.now() + after;
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let state = map.entry(bucket.clone()).or_default();
        if state.blocked_until.is_none_or(|b| b < until) {
            state.blocked_until = Some(until);
        }
    }
}

/// How long a `Retry-After` header asks to wait: seconds, or an HTTP date.
pub fn retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(at.duration_since(now).unsigned_abs()).filter(|_| at > now)
}

#[cfg(test)]
pub(crate) mod platforms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_where_google_counts_them() {
        let run = "https://run.googleapis.com/v2/projects/p1/locations/europe-west1/services/api";
        let b = Bucket::of("GET", run).unwrap();
        assert_eq!(
            (b.class, b.project.as_str(), b.region.as_deref()),
            (Class::RunRead, "p1", Some("europe-west1"))
        );
        assert_eq!(Bucket::of("PATCH", run).unwrap().class, Class::RunWrite);
        let op = "http://127.0.0.1:9/v2/projects/p1/locations/r1/operations/o-1";
        assert_eq!(Bucket::of("GET", op).unwrap().class, Class::RunRead);
        let wait = format!("{op}:wait");
        assert_eq!(Bucket::of("POST", &wait).unwrap().class, Class::RunRead);
        let m = Bucket::of("GET", "http://x/v3/projects/p2/timeSeries?filter=a").unwrap();
        assert_eq!(
            (m.class, m.project.as_str(), m.region),
            (Class::MonitoringQuery, "p2", None)
        );
        assert_eq!(
            Bucket::of("GET", "http://169.254.169.254/computeMetadata/v1/project"),
            None
        );
        let class = |method, url: &str| {
            let b = Bucket::of(method, url).unwrap();
            (b.class, b.project, b.region)
        };
        let ae = "https://appengine.googleapis.com/v1/apps/p3/services/web";
        assert_eq!(class("PATCH", ae), (Class::AppEngine, "p3".into(), None));
        let op = "https://appengine.googleapis.com/v1/apps/p3/operations/o";
        assert_eq!(class("GET", op).0, Class::AppEngine);
        let map = "https://compute.googleapis.com/compute/v1/projects/p4/global/urlMaps/m";
        assert_eq!(class("GET", map), (Class::ComputeRead, "p4".into(), None));
        assert_eq!(class("PATCH", map).0, Class::ComputeWrite);
        let health = "http://x/compute/v1/projects/p4/global/backendServices/b/getHealth";
        assert_eq!(class("POST", health).0, Class::ComputeWrite);
        let doc =
            "https://firestore.googleapis.com/v1/projects/p5/databases/(default)/documents/c/d";
        assert_eq!(class("GET", doc), (Class::Firestore, "p5".into(), None));
        let commit = "http://x/v1/projects/p5/databases/db/documents:commit";
        assert_eq!(class("POST", commit).0, Class::Firestore);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now: Timestamp = "2026-08-20T10:00:00Z".parse().unwrap();
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Thu, 20 Aug 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after("soon", now), None);
    }

    fn manual() -> Clock {
        Clock::manual("2026-08-20T10:00:00Z".parse().unwrap())
    }

    fn bucket() -> Bucket {
        Bucket::of("PATCH", "/v2/projects/p/locations/r/services/s").unwrap()
    }

    /// Counted where Google would count them, at the (fake) API: no 60-second span holds more
    /// calls of one bucket than its limit, and every call still gets through.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_window_at_the_api_holds_more_calls_than_the_limit() {
        use cutover_fakes::testkit::{PROJECT, REGION, fake_with_candidate};
        let (fake, fake_clock) = fake_with_candidate().await;
        let before = fake.requests().len();
        let clock = Clock::Manual(fake_clock.shared().expect("a manual clock"));
        let limit = 5;
        let quota = std::sync::Arc::new(Quota::new(
            Limits {
                run_reads: limit,
                ..Limits::UNLIMITED
            },
            clock.clone(),
        ));
        let google =
            super::super::Google::new(reqwest::Client::new(), super::super::TokenSource::None)
                .with_quota(quota.clone());
        let run = super::super::run::RunClient::new(google, &fake.base_url());
        let target = crate::target::ServiceRef::checked(PROJECT, REGION, "api").unwrap();
        let calls = 12;
        let deadline = Instant::now() + Duration::from_secs(60);
        // As an alert's: they wait for the window however long it takes.
        let all = tokio::spawn(urgent(async move {
            let reads = (0..calls).map(|_| run.get_service(&target, deadline));
            futures::future::join_all(reads).await
        }));
        while !all.is_finished() {
            // Time moves only once every call let through has reached the API.
            let arrived = || (fake.requests().len() - before) as u64;
            while arrived() < quota.granted() {
                tokio::task::yield_now().await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if arrived() >= quota.granted() {
                clock.advance(SignedDuration::from_secs(20));
            }
        }
        for r in all.await.unwrap() {
            r.expect("every call got through in the end");
        }
        let at: Vec<Timestamp> = fake.requests()[before..].iter().map(|r| r.at).collect();
        assert_eq!(at.len(), calls);
        for start in &at {
            let end = *start + SignedDuration::from_secs(60);
            let inside = at.iter().filter(|t| *t >= start && **t < end).count();
            assert!(
                inside <= limit as usize,
                "{inside} calls in the minute from {start}: {at:?}"
            );
        }
        assert!(
            at.last() > at.first(),
            "the calls were spread over time: {at:?}"
        );
    }

    #[tokio::test]
    async fn a_full_bucket_fails_transiently_at_the_deadline_instead_of_dropping_the_call() {
        let quota = Quota::new(
            Limits {
                run_writes: 3,
                ..Limits::UNLIMITED
            },
            manual(),
        );
        let soon = || Instant::now() + Duration::from_millis(50);
        // Routine work has two of the three slots; the third is an alert's.
        quota.acquire(&bucket(), soon()).await.unwrap();
        quota.acquire(&bucket(), soon()).await.unwrap();
        let e = quota.acquire(&bucket(), soon()).await.unwrap_err();
        assert_eq!(e.kind(), crate::failure::ErrorKind::Transient, "{e}");
        assert!(e.to_string().contains("Cloud Run writes in p/r"), "{e}");
    }

    /// A routine call whose slot is a window away gives its event back at once (transient: its
    /// push is answered 503 and redelivered) instead of holding it until its deadline; an
    /// alert's call in the same bucket still takes the reserved slot, and then waits.
    #[tokio::test]
    async fn a_routine_call_with_no_slot_soon_gives_its_event_back_and_an_alert_waits() {
        use futures::FutureExt;
        let quota = Quota::new(
            Limits {
                run_writes: 10,
                ..Limits::UNLIMITED
            },
            manual(),
        );
        let far = || Instant::now() + Duration::from_secs(600);
        for _ in 0..8 {
            quota.acquire(&bucket(), far()).await.unwrap();
        }
        let given_back = quota.acquire(&bucket(), far()).now_or_never();
        let Some(Err(e)) = given_back else {
            panic!("the routine call held on for a slot a minute away");
        };
        assert_eq!(e.kind(), crate::failure::ErrorKind::Transient, "{e}");
        assert!(
            e.to_string()
                .contains("given back for redelivery: client-side quota: Cloud Run writes in p/r"),
            "{e}"
        );
        // Two alerts at once: both find a slot routine work could not take.
        urgent(quota.acquire(&bucket(), far())).await.unwrap();
        urgent(quota.acquire(&bucket(), far())).await.unwrap();
        assert!(
            urgent(quota.acquire(&bucket(), far()))
                .now_or_never()
                .is_none(),
            "a third alert waits for its slot, however far"
        );
    }

    /// A routine call waits for a slot that frees within `ROUTINE_PATIENCE`, and the calls
    /// already waiting come first: the next one's slot is the one after theirs.
    #[tokio::test]
    async fn a_routine_call_waits_for_a_slot_soon_counting_the_calls_waiting_before_it() {
        let clock = manual();
        let quota = std::sync::Arc::new(Quota::new(
            Limits {
                run_writes: 11,
                ..Limits::UNLIMITED
            },
            clock.clone(),
        ));
        let far = || Instant::now() + Duration::from_secs(600);
        // Routine work has 9 of the 11 slots (two are kept for alerts).
        // One call at 10:00:00, eight at 10:00:30: slots free at 10:01:00, then 10:01:30.
        quota.acquire(&bucket(), far()).await.unwrap();
        clock.advance(SignedDuration::from_secs(30));
        for _ in 0..8 {
            quota.acquire(&bucket(), far()).await.unwrap();
        }
        clock.advance(SignedDuration::from_secs(25));
        let first = {
            let quota = quota.clone();
            tokio::spawn(async move { quota.acquire(&bucket(), far()).await })
        };
        while quota.waits() == 0 {
            tokio::task::yield_now().await;
        }
        // Its slot is 5 s away: it waits. The next call's is 35 s away: it gives back.
        let second = quota.acquire(&bucket(), far()).await.unwrap_err();
        assert!(second.to_string().contains("given back"), "{second}");
        assert!(!first.is_finished());
        clock.advance(SignedDuration::from_secs(6));
        first
            .await
            .unwrap()
            .expect("the first got the slot it waited for");
    }

    /// The buckets Terraform gives an instance are small (50 Run writes a minute shared by up
    /// to 10 instances is 5 each): a tenth of them would keep no slot for a rollback.
    #[test]
    fn every_bucket_of_two_or_more_keeps_slots_for_alerts_and_routine_keeps_at_least_half() {
        let kept: Vec<usize> = [1, 2, 3, 4, 5, 12, 25, 30, 50, 1000]
            .into_iter()
            .map(reserved)
            .collect();
        assert_eq!(kept, [0, 1, 1, 2, 2, 2, 2, 3, 5, 100]);
        for limit in 1..=200 {
            assert!(limit - reserved(limit) >= limit.div_ceil(2), "{limit}");
        }
    }

    #[tokio::test]
    async fn urgent_calls_go_before_routine_ones_waiting_on_the_same_bucket() {
        let clock = manual();
        let quota = std::sync::Arc::new(Quota::new(
            Limits {
                run_writes: 1,
                ..Limits::UNLIMITED
            },
            clock.clone(),
        ));
        let later = || Instant::now() + Duration::from_secs(20);
        quota.acquire(&bucket(), later()).await.unwrap();
        // The slot frees in 5 s: the routine call waits for it (`ROUTINE_PATIENCE`).
        clock.advance(SignedDuration::from_secs(55));
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let spawn = |name: &'static str, is_urgent: bool| {
            let (quota, order) = (quota.clone(), order.clone());
            tokio::spawn(async move {
                let b = bucket();
                let go = quota.acquire(&b, later());
                if is_urgent {
                    urgent(go).await.unwrap();
                } else {
                    go.await.unwrap();
                }
                order.lock().unwrap().push(name);
            })
        };
        let routine = spawn("routine", false);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let alert = spawn("alert", true);
        tokio::time::sleep(Duration::from_millis(20)).await;
        clock.advance(SignedDuration::from_secs(6));
        alert.await.unwrap();
        clock.advance(SignedDuration::from_secs(61));
        routine.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["alert", "routine"]);
    }
}
