//! Failure injection for the fakes: the ways real Google APIs misbehave that cutover must survive.
//!
//! Two ways to misbehave, both through a [`FaultHandle`]:
//! * **Scheduled** faults for a test that wants one thing to go wrong at a known moment: the next
//!   `n` calls answer 503 or 429, an HTML 404, truncated JSON or a connection cut mid-answer; the
//!   next `n` PATCHes lose the etag race against a concurrent writer (who changes labels or an
//!   annotation that is not cutover's); the next operations end with an `error` or never finish;
//!   the next Monitoring answers carry `executionErrors`, are empty pages, or lack their newest
//!   points; every call waits a (jittered) latency; metrics land late; the next writes are
//!   answered `504` at once and applied later, after their caller gave up (a Run or Compute
//!   PATCH whose outcome the client cannot know).
//! * **Chaos**: with [`Chaos`] set, every call rolls a seeded die against configured ratios and
//!   misbehaves in any of the ways above. The chaos suite (`tests/chaos.rs`) runs cutover against
//!   it and checks invariants on the fake's traffic history.
//!
//! Every fault injected is counted ([`FaultCounts`]), so a test can say what it survived. The
//! request gate that applies call-level faults in front of the Run and Monitoring routes lives
//! here too ([`gate`]); PATCH conflicts, operation fates and Monitoring oddities are consulted by
//! `fake_run.rs` and `fake_monitoring.rs` through the `take_*` methods.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::{
    body::{Body, Bytes, to_bytes},
    extract::Request,
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use jiff::SignedDuration;

use super::wire::{self, RpcError};
use super::world::{Shared, lock};

/// Largest answer body the gate will buffer to garble it.
const MAX_GARBLED_BODY: usize = 16 * 1024 * 1024;

/// Which fake API a call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    Run,
    Monitoring,
    /// App Engine Admin v1: shares the Run knobs (`run_errors`, `run_garbled`, operations).
    AppEngine,
    /// Compute v1: shares the Run knobs too, and answers errors in Compute's own shape.
    Compute,
}

impl Api {
    fn service(self) -> &'static str {
        match self {
            Api::Run => "run.googleapis.com",
            Api::Monitoring => "monitoring.googleapis.com",
            Api::AppEngine => "appengine.googleapis.com",
            Api::Compute => "compute.googleapis.com",
        }
    }
}

/// An answer that is not a proper API answer at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Garble {
    /// The googleapis front end's HTML "404. That's an error." page instead of the API's answer
    /// (the call is not handled).
    Html404,
    /// The API handles the call (a PATCH lands), but the JSON answer is cut in half, with a
    /// `Content-Length` that matches the cut body: the client reads a complete but unparseable
    /// answer.
    TruncatedJson,
    /// The API handles the call, then the connection drops halfway through the answer's body.
    CutConnection,
}

/// What the concurrent writer of a conflicting PATCH changes before answering 409.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConcurrentChange {
    /// The `concurrent-writes` label (the default).
    #[default]
    Labels,
    /// The `concurrent.example.com/writes` annotation (not one of cutover's).
    Annotation,
    /// Either of the two, at random.
    Either,
}

/// Probabilistic misbehaviour, seeded so that the same seed draws the same faults for the same
/// sequence of calls. All ratios are per call (per PATCH, per operation, per `timeSeries.list`).
#[derive(Clone, Debug, PartialEq)]
pub struct Chaos {
    pub seed: u64,
    /// Run and Monitoring calls that fail transiently: 429, 500, 503, 504, or a connection cut
    /// in the middle of the answer (for which the call *was* handled).
    pub transient_ratio: f64,
    /// PATCHes that find a concurrent writer got there first (labels or an annotation change,
    /// then 409 `ABORTED`).
    pub conflict_ratio: f64,
    /// Operations that end with an `error`.
    pub failed_operation_ratio: f64,
    /// Operations that never finish.
    pub stuck_operation_ratio: f64,
    /// `timeSeries.list` answers that carry `executionErrors`, are an empty page with a
    /// `nextPageToken`, or lack their newest points (a third each).
    pub monitoring_oddity_ratio: f64,
    /// Calls answered with an HTML 404 or truncated JSON (half each), which cutover reads as
    /// permanent failures. Off by default: the chaos suite turns it on explicitly.
    pub garbled_ratio: f64,
    /// Every call waits a latency drawn uniformly from this range (real time).
    pub latency: (Duration, Duration),
    /// Run and Compute PATCHes answered `504` at once and applied [`LATE_WRITE_DELAY`] later
    /// (other PATCHes of the resource answered `503` meanwhile): writes whose outcome cutover
    /// cannot know, that land after it gave up on them (on a manual clock, minutes later). Only the guarded APIs (etag, fingerprint): an App Engine
    /// patch that lands late overwrites whatever came meanwhile, cutover's acknowledged gap.
    pub late_write_ratio: f64,
}

/// How much later (real time, uniformly) a late write is applied.
pub const LATE_WRITE_DELAY: (Duration, Duration) =
    (Duration::from_millis(1000), Duration::from_millis(6000));

impl Chaos {
    /// The mix of issue 4: 20 % of calls fail transiently, 10 % of writes conflict, a few
    /// operations fail or hang, 5 % of Monitoring answers are odd, 0–3 ms latency per call.
    pub fn new(seed: u64) -> Self {
        Chaos {
            seed,
            transient_ratio: 0.2,
            conflict_ratio: 0.1,
            failed_operation_ratio: 0.01,
            stuck_operation_ratio: 0.005,
            monitoring_oddity_ratio: 0.05,
            garbled_ratio: 0.0,
            latency: (Duration::ZERO, Duration::from_millis(3)),
            late_write_ratio: 0.0,
        }
    }
}

/// How many faults of each kind were injected so far (scheduled and chaos alike).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Error statuses answered instead of the API's answer, by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    pub html_404: u64,
    pub truncated_json: u64,
    pub cut_connections: u64,
    /// PATCHes that lost the race against a concurrent writer.
    pub conflicts: u64,
    pub failed_operations: u64,
    pub stuck_operations: u64,
    pub execution_errors: u64,
    pub empty_pages: u64,
    pub partial_series: u64,
    /// Calls that waited an injected latency.
    pub delayed_calls: u64,
    /// Writes answered `504` and applied later.
    pub late_writes: u64,
}

impl FaultCounts {
    /// Every injected failure (latency is not a failure and is not included).
    pub fn total(&self) -> u64 {
        self.statuses.values().sum::<u64>()
            + self.html_404
            + self.truncated_json
            + self.cut_connections
            + self.conflicts
            + self.failed_operations
            + self.stuck_operations
            + self.execution_errors
            + self.empty_pages
            + self.partial_series
            + self.late_writes
    }

    /// Adds `other`'s counts to these (summing over several fakes).
    pub fn add(&mut self, other: &FaultCounts) {
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_insert(0) += n;
        }
        self.html_404 += other.html_404;
        self.truncated_json += other.truncated_json;
        self.cut_connections += other.cut_connections;
        self.conflicts += other.conflicts;
        self.failed_operations += other.failed_operations;
        self.stuck_operations += other.stuck_operations;
        self.execution_errors += other.execution_errors;
        self.empty_pages += other.empty_pages;
        self.partial_series += other.partial_series;
        self.delayed_calls += other.delayed_calls;
        self.late_writes += other.late_writes;
    }
}

/// How an operation created by an accepted PATCH ends.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum OpFate {
    /// Done when polled enough or when its time has come.
    Normal,
    /// Done, with this `google.rpc.Status` (numeric code, message) as its `error`.
    Fails(i32, String),
    /// Never done.
    Stuck,
}

/// A Monitoring answer that is not the plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Oddity {
    /// Part of the data, plus `executionErrors` saying so.
    ExecutionErrors,
    /// No series, but a `nextPageToken` for the same place.
    EmptyPage,
    /// Each series without its newest point.
    PartialSeries,
}

/// What the gate does with one call.
enum Verdict {
    /// Pass the call on.
    Pass,
    /// Answer `504` at once, and handle the call this much later (real time).
    Late(Duration),
    /// Answer this instead, without handling the call.
    Status(u16),
    Html404,
    /// Handle the call, then garble the answer.
    After(Garble),
}

/// The knobs, with the defaults a well-behaved Google Cloud shows.
#[derive(Clone, Debug)]
pub(crate) struct Faults {
    /// (calls left, HTTP status) for the next Run Admin API calls.
    pub(crate) run_errors: (usize, u16),
    /// (calls left, HTTP status) for the next Monitoring API calls.
    pub(crate) monitoring_errors: (usize, u16),
    /// (calls left, how) for the next Run Admin API answers.
    pub(crate) run_garbled: (usize, Garble),
    /// (calls left, how) for the next Monitoring answers.
    pub(crate) monitoring_garbled: (usize, Garble),
    /// How many of the next PATCHes lose the race against a concurrent writer.
    pub(crate) conflicting_patches: usize,
    /// What that concurrent writer changes.
    pub(crate) concurrent_change: ConcurrentChange,
    /// How many polls an operation created from now on answers without `done`.
    pub(crate) op_polls_before_done: u32,
    /// Fake-clock time after which an operation is done even if nobody polled it (a real rollout
    /// converges on its own); `None`: only polling completes operations.
    pub(crate) op_settle_after: Option<SignedDuration>,
    /// (operations left, rpc code, message) for the next operations, which end with an error.
    pub(crate) failing_operations: (usize, i32, String),
    /// How many of the next operations never finish.
    pub(crate) stuck_operations: usize,
    /// How many of the next Run or Compute PATCHes are answered `504` and applied later.
    pub(crate) late_writes: usize,
    /// Resources with a late write on its way, and when it lands (real time): until then the
    /// backend is busy with it, and further PATCHes of the resource are answered `503`.
    pub(crate) landing: BTreeMap<String, std::time::Instant>,
    /// How many of the next `timeSeries.list` answers carry `executionErrors`.
    pub(crate) execution_errors: usize,
    /// How many of the next `timeSeries.list` answers are empty pages.
    pub(crate) empty_pages: usize,
    /// How many of the next `timeSeries.list` answers lack each series' newest point.
    pub(crate) partial_series: usize,
    /// Real (tokio) time every Run and Monitoring call waits before being answered: drawn
    /// uniformly from `latency..=latency_max`.
    pub(crate) latency: Duration,
    pub(crate) latency_max: Duration,
    /// How long after a minute ends its metric points become visible.
    pub(crate) ingest_lag: SignedDuration,
    /// Emit zero-valued points for empty periods of a series that has data elsewhere in the
    /// window (how Monitoring fills gaps is UNVERIFIED, docs/gcp-wire.md §2.4; default: omit them).
    pub(crate) zero_points: bool,
    /// Probabilistic faults on top of the scheduled ones.
    pub(crate) chaos: Option<Chaos>,
    /// Draws for jitter and chaos (seeded by [`Chaos::seed`], else fixed).
    rng: fastrand::Rng,
    /// What was injected so far; survives [`FaultHandle::clear`].
    pub(crate) counts: FaultCounts,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            run_errors: (0, 503),
            monitoring_errors: (0, 503),
            run_garbled: (0, Garble::Html404),
            monitoring_garbled: (0, Garble::Html404),
            conflicting_patches: 0,
            concurrent_change: ConcurrentChange::Labels,
            op_polls_before_done: 0,
            op_settle_after: Some(SignedDuration::from_secs(10)),
            failing_operations: (0, 13, String::new()),
            stuck_operations: 0,
            late_writes: 0,
            landing: BTreeMap::new(),
            execution_errors: 0,
            empty_pages: 0,
            partial_series: 0,
            latency: Duration::ZERO,
            latency_max: Duration::ZERO,
            ingest_lag: SignedDuration::from_secs(120),
            zero_points: false,
            chaos: None,
            rng: fastrand::Rng::with_seed(0x0fa1_7500),
            counts: FaultCounts::default(),
        }
    }
}

/// Consumes one from a counter of scheduled faults.
fn take_one(counter: &mut usize) -> bool {
    if *counter == 0 {
        return false;
    }
    *counter -= 1;
    true
}

impl Faults {
    /// Consumes one injected error from `counter`, if any is left.
    pub(crate) fn take(counter: &mut (usize, u16)) -> Option<u16> {
        if counter.0 == 0 {
            return None;
        }
        counter.0 -= 1;
        Some(counter.1)
    }

    /// Whether a draw falls under `ratio` (never for 0, always for ≥ 1).
    fn roll(&mut self, ratio: f64) -> bool {
        ratio > 0.0 && self.rng.f64() < ratio
    }

    /// The latency this call waits.
    fn draw_latency(&mut self) -> Duration {
        let (lo, hi) = match &self.chaos {
            Some(c) => (
                c.latency.0.max(self.latency),
                c.latency.1.max(self.latency_max),
            ),
            None => (self.latency, self.latency_max),
        };
        let hi = hi.max(lo);
        if hi.is_zero() {
            return Duration::ZERO;
        }
        let span = (hi - lo).as_micros() as u64;
        let extra = if span == 0 { 0 } else { self.rng.u64(0..=span) };
        lo + Duration::from_micros(extra)
    }

    /// What happens to one call (`write`: the path of a PATCH): scheduled faults first, then
    /// chaos.
    fn verdict(&mut self, api: Api, write: Option<&str>) -> Verdict {
        if let Some(path) = write.filter(|_| matches!(api, Api::Run | Api::Compute)) {
            let now = std::time::Instant::now();
            self.landing.retain(|_, at| *at > now);
            // The retries of a write that is on its way time out too.
            if self.landing.contains_key(path) {
                return Verdict::Status(503);
            }
            let ratio = self.chaos.as_ref().map_or(0.0, |c| c.late_write_ratio);
            if take_one(&mut self.late_writes) || self.roll(ratio) {
                let (lo, hi) = LATE_WRITE_DELAY;
                let span = (hi - lo).as_millis() as u64;
                let after = lo + Duration::from_millis(self.rng.u64(0..=span));
                self.landing.insert(path.to_string(), now + after);
                return Verdict::Late(after);
            }
        }
        let (errors, garbled) = match api {
            Api::Run | Api::AppEngine | Api::Compute => {
                (&mut self.run_errors, &mut self.run_garbled)
            }
            Api::Monitoring => (&mut self.monitoring_errors, &mut self.monitoring_garbled),
        };
        if let Some(status) = Faults::take(errors) {
            return Verdict::Status(status);
        }
        if take_one(&mut garbled.0) {
            return match garbled.1 {
                Garble::Html404 => Verdict::Html404,
                g => Verdict::After(g),
            };
        }
        let Some(chaos) = self.chaos.clone() else {
            return Verdict::Pass;
        };
        if self.roll(chaos.transient_ratio) {
            return match self.rng.u8(0..10) {
                0..=1 => Verdict::Status(429),
                2..=4 => Verdict::Status(503),
                5..=6 => Verdict::Status(500),
                7 => Verdict::Status(504),
                _ => Verdict::After(Garble::CutConnection),
            };
        }
        if self.roll(chaos.garbled_ratio) {
            return if self.rng.bool() {
                Verdict::Html404
            } else {
                Verdict::After(Garble::TruncatedJson)
            };
        }
        Verdict::Pass
    }

    fn count_verdict(&mut self, v: &Verdict) {
        match v {
            Verdict::Pass => {}
            Verdict::Late(_) => self.counts.late_writes += 1,
            Verdict::Status(s) => *self.counts.statuses.entry(*s).or_insert(0) += 1,
            Verdict::Html404 => self.counts.html_404 += 1,
            Verdict::After(Garble::Html404) => self.counts.html_404 += 1,
            Verdict::After(Garble::TruncatedJson) => self.counts.truncated_json += 1,
            Verdict::After(Garble::CutConnection) => self.counts.cut_connections += 1,
        }
    }

    /// Whether this PATCH loses the race against a concurrent writer, and if so what that
    /// writer changes (`true`: labels, `false`: an annotation).
    pub(crate) fn take_conflict(&mut self) -> Option<bool> {
        let chaos_ratio = self.chaos.as_ref().map_or(0.0, |c| c.conflict_ratio);
        if !(take_one(&mut self.conflicting_patches) || self.roll(chaos_ratio)) {
            return None;
        }
        self.counts.conflicts += 1;
        Some(match self.concurrent_change {
            ConcurrentChange::Labels => true,
            ConcurrentChange::Annotation => false,
            ConcurrentChange::Either => self.rng.bool(),
        })
    }

    /// How the operation of an accepted PATCH will end.
    pub(crate) fn take_op_fate(&mut self) -> OpFate {
        if take_one(&mut self.failing_operations.0) {
            self.counts.failed_operations += 1;
            let (code, message) = (self.failing_operations.1, self.failing_operations.2.clone());
            return OpFate::Fails(code, message);
        }
        if take_one(&mut self.stuck_operations) {
            self.counts.stuck_operations += 1;
            return OpFate::Stuck;
        }
        let Some(chaos) = self.chaos.clone() else {
            return OpFate::Normal;
        };
        if self.roll(chaos.failed_operation_ratio) {
            self.counts.failed_operations += 1;
            // Codes a traffic update's operation has been seen to end with: INTERNAL,
            // UNAVAILABLE, ABORTED (a concurrent update), DEADLINE_EXCEEDED.
            let (code, message) = match self.rng.u8(0..4) {
                0 => (
                    13,
                    "Internal error while routing traffic; the change was not applied.",
                ),
                1 => (
                    14,
                    "The service is currently unavailable; retry the operation.",
                ),
                2 => (
                    10,
                    "Operation aborted by a concurrent update of the service.",
                ),
                _ => (
                    4,
                    "Operation timed out while waiting for routes to become ready.",
                ),
            };
            return OpFate::Fails(code, message.to_string());
        }
        if self.roll(chaos.stuck_operation_ratio) {
            self.counts.stuck_operations += 1;
            return OpFate::Stuck;
        }
        OpFate::Normal
    }

    /// Whether this `timeSeries.list` answer is odd, and how.
    pub(crate) fn take_oddity(&mut self) -> Option<Oddity> {
        let oddity = if take_one(&mut self.execution_errors) {
            Some(Oddity::ExecutionErrors)
        } else if take_one(&mut self.empty_pages) {
            Some(Oddity::EmptyPage)
        } else if take_one(&mut self.partial_series) {
            Some(Oddity::PartialSeries)
        } else {
            let ratio = self
                .chaos
                .as_ref()
                .map_or(0.0, |c| c.monitoring_oddity_ratio);
            self.roll(ratio).then(|| match self.rng.u8(0..3) {
                0 => Oddity::ExecutionErrors,
                1 => Oddity::EmptyPage,
                _ => Oddity::PartialSeries,
            })
        };
        match oddity {
            Some(Oddity::ExecutionErrors) => self.counts.execution_errors += 1,
            Some(Oddity::EmptyPage) => self.counts.empty_pages += 1,
            Some(Oddity::PartialSeries) => self.counts.partial_series += 1,
            None => {}
        }
        oddity
    }

    /// A draw for the fakes' own random choices under chaos (which series to drop, …).
    pub(crate) fn draw(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.rng.usize(0..n) }
    }
}

/// Injected latency and failures, in front of every known Run or Monitoring route.
pub(crate) async fn gate(shared: &Shared, api: Api, request: Request, next: Next) -> Response {
    let (delay, verdict) = {
        let mut w = lock(shared);
        let delay = w.faults.draw_latency();
        if !delay.is_zero() {
            w.faults.counts.delayed_calls += 1;
        }
        let write = (request.method() == axum::http::Method::PATCH).then(|| request.uri().path());
        let verdict = w.faults.verdict(api, write);
        w.faults.count_verdict(&verdict);
        (delay, verdict)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match verdict {
        Verdict::Pass => next.run(request).await,
        Verdict::Late(after) => {
            // The caller hears "504" now; the write itself is handled later, whatever the
            // caller does meanwhile (a real front end may time out while the backend goes on).
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = next.run(request).await;
            });
            match api {
                Api::Compute => wire::compute_injected(504),
                _ => RpcError::injected(504, api.service()).into_response(),
            }
        }
        Verdict::Status(status) if api == Api::Compute => wire::compute_injected(status),
        Verdict::Status(status) => RpcError::injected(status, api.service()).into_response(),
        Verdict::Html404 | Verdict::After(Garble::Html404) => {
            wire::html_not_found(request.uri().path())
        }
        Verdict::After(garble) => {
            let response = next.run(request).await;
            garbled(response, garble).await
        }
    }
}

/// `response` with its body cut in half, either as a complete (but unparseable) answer or as a
/// connection that drops mid-body.
async fn garbled(response: Response, garble: Garble) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, MAX_GARBLED_BODY).await.unwrap_or_default();
    let half = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
    parts.headers.remove(header::CONTENT_LENGTH);
    match garble {
        Garble::CutConnection => {
            // The declared length promises the whole body; the stream fails halfway, so the
            // server drops the connection and the client sees an incomplete message.
            if let Ok(v) = HeaderValue::from_str(&bytes.len().max(1).to_string()) {
                parts.headers.insert(header::CONTENT_LENGTH, v);
            }
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(half),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected: connection cut mid-answer",
                )),
            ];
            Response::from_parts(parts, Body::from_stream(futures::stream::iter(chunks)))
        }
        _ => Response::from_parts(parts, Body::from(half)),
    }
}

/// Changes how the fakes misbehave. Every setter replaces the previous value of its knob and
/// returns the handle, so calls chain: `fake.faults().run_errors(2, 503).latency(ms(50))`.
#[derive(Clone)]
pub struct FaultHandle {
    pub(crate) shared: Shared,
}

impl FaultHandle {
    fn with(&self, f: impl FnOnce(&mut Faults)) -> &Self {
        f(&mut lock(&self.shared).faults);
        self
    }

    /// The next `n` Run Admin API calls (any method, known paths) answer `status` with a proper
    /// `google.rpc` error body, e.g. 503 `UNAVAILABLE` or 429 `RESOURCE_EXHAUSTED`. The App
    /// Engine Admin and Compute fakes count against the same knob (Compute answers in its own
    /// error shape).
    pub fn run_errors(&self, n: usize, status: u16) -> &Self {
        self.with(|f| f.run_errors = (n, status))
    }

    /// The next `n` Monitoring API calls answer `status`.
    pub fn monitoring_errors(&self, n: usize, status: u16) -> &Self {
        self.with(|f| f.monitoring_errors = (n, status))
    }

    /// The next `n` Run Admin API answers are garbled `how` (after any scheduled error status).
    pub fn run_garbled(&self, n: usize, how: Garble) -> &Self {
        self.with(|f| f.run_garbled = (n, how))
    }

    /// The next `n` Monitoring answers are garbled `how`.
    pub fn monitoring_garbled(&self, n: usize, how: Garble) -> &Self {
        self.with(|f| f.monitoring_garbled = (n, how))
    }

    /// The next `n` PATCHes of an existing service hit a concurrent writer: the fake first
    /// changes a label of the service (new etag, new generation), then answers 409 `ABORTED`.
    pub fn conflict_next_patches(&self, n: usize) -> &Self {
        self.with(|f| f.conflicting_patches = n)
    }

    /// What the concurrent writer of a conflicting PATCH changes (default: a label).
    pub fn concurrent_change(&self, what: ConcurrentChange) -> &Self {
        self.with(|f| f.concurrent_change = what)
    }

    /// Operations created from now on answer their first `k` polls without `done` (default 0:
    /// the first GET of an operation finds it done).
    pub fn op_polls_before_done(&self, k: u32) -> &Self {
        self.with(|f| f.op_polls_before_done = k)
    }

    /// Operations created from now on are done once `after` has passed on the fake's clock even
    /// if nobody polls them (default 10 s, like a traffic-only rollout); `None` disables that, so
    /// only polling completes them. Whichever comes first, polls or time, completes the operation.
    pub fn op_settle_after(&self, after: Option<SignedDuration>) -> &Self {
        self.with(|f| f.op_settle_after = after)
    }

    /// The operations of the next `n` accepted PATCHes end with `error` `{code, message}`
    /// (`code` a `google.rpc.Code` number: 13 INTERNAL, 14 UNAVAILABLE, 10 ABORTED, …). The
    /// write itself stays accepted: the service keeps the new spec, its routes stay as they
    /// were, and its `Ready` condition reports the failure until a later write succeeds.
    pub fn failing_operations(&self, n: usize, code: i32, message: &str) -> &Self {
        self.with(|f| f.failing_operations = (n, code, message.to_string()))
    }

    /// The operations of the next `n` accepted PATCHes never finish (the service stays
    /// reconciling until a later write's operation completes).
    pub fn stuck_operations(&self, n: usize) -> &Self {
        self.with(|f| f.stuck_operations = n)
    }

    /// The next `n` Run or Compute PATCHes are answered `504` at once and applied 1–6 s
    /// later (real time), after their caller gave up on them; until it lands, further PATCHes
    /// of the same resource are answered `503` (its retries time out too).
    pub fn late_writes(&self, n: usize) -> &Self {
        self.with(|f| f.late_writes = n)
    }

    /// The next `n` `timeSeries.list` answers return part of the data plus `executionErrors`.
    pub fn execution_errors(&self, n: usize) -> &Self {
        self.with(|f| f.execution_errors = n)
    }

    /// The next `n` `timeSeries.list` answers are empty pages whose `nextPageToken` points at
    /// the same place (the API may return empty pages mid-listing).
    pub fn empty_pages(&self, n: usize) -> &Self {
        self.with(|f| f.empty_pages = n)
    }

    /// The next `n` `timeSeries.list` answers lack the newest point of every series (the latest
    /// minute not fully ingested yet).
    pub fn partial_series(&self, n: usize) -> &Self {
        self.with(|f| f.partial_series = n)
    }

    /// Every Run and Monitoring call waits `delay` of real time before it is answered.
    pub fn latency(&self, delay: Duration) -> &Self {
        self.with(|f| {
            f.latency = delay;
            f.latency_max = delay;
        })
    }

    /// Every Run and Monitoring call waits a real-time latency drawn uniformly from
    /// `min..=max`.
    pub fn latency_between(&self, min: Duration, max: Duration) -> &Self {
        self.with(|f| {
            f.latency = min;
            f.latency_max = max.max(min);
        })
    }

    /// Metric points become visible `lag` after their period ends (default 120 s).
    pub fn ingest_lag(&self, lag: SignedDuration) -> &Self {
        self.with(|f| f.ingest_lag = lag)
    }

    /// Whether series carry zero-valued points for periods without requests (default false).
    pub fn zero_points(&self, on: bool) -> &Self {
        self.with(|f| f.zero_points = on)
    }

    /// Probabilistic faults from now on (`None`: off). Reseeds the fault draws with
    /// [`Chaos::seed`].
    pub fn chaos(&self, chaos: Option<Chaos>) -> &Self {
        self.with(|f| {
            if let Some(c) = &chaos {
                f.rng = fastrand::Rng::with_seed(c.seed);
            }
            f.chaos = chaos;
        })
    }

    /// Every fault injected so far.
    pub fn counts(&self) -> FaultCounts {
        lock(&self.shared).faults.counts.clone()
    }

    /// Back to a well-behaved cloud (the counts of what was injected are kept).
    pub fn clear(&self) -> &Self {
        self.with(|f| {
            let counts = std::mem::take(&mut f.counts);
            *f = Faults::default();
            f.counts = counts;
        })
    }
}

impl std::fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FaultHandle")
            .field(&lock(&self.shared).faults)
            .finish()
    }
}
