//! Failure injection for the fakes: the ways real Google APIs misbehave that cutover must survive
//! (bursts of 503/429, a concurrent writer winning the etag race, slow operations, late metrics,
//! slow answers). Tests flip these through a [`FaultHandle`]; the fakes consult [`Faults`].

use std::time::Duration;

use jiff::SignedDuration;

use super::world::{Shared, lock};

/// The knobs, with the defaults a well-behaved Google Cloud shows.
#[derive(Clone, Debug)]
pub(crate) struct Faults {
    /// (calls left, HTTP status) for the next Run Admin API calls.
    pub(crate) run_errors: (usize, u16),
    /// (calls left, HTTP status) for the next Monitoring API calls.
    pub(crate) monitoring_errors: (usize, u16),
    /// How many of the next PATCHes lose the race against a concurrent writer.
    pub(crate) conflicting_patches: usize,
    /// How many polls an operation created from now on answers without `done`.
    pub(crate) op_polls_before_done: u32,
    /// Fake-clock time after which an operation is done even if nobody polled it (a real rollout
    /// converges on its own); `None`: only polling completes operations.
    pub(crate) op_settle_after: Option<SignedDuration>,
    /// Real (tokio) time every Run and Monitoring call waits before being answered.
    pub(crate) latency: Duration,
    /// How long after a minute ends its metric points become visible.
    pub(crate) ingest_lag: SignedDuration,
    /// Emit zero-valued points for empty periods of a series that has data elsewhere in the
    /// window (how Monitoring fills gaps is UNVERIFIED, gcp-wire.md §2.4; default: omit them).
    pub(crate) zero_points: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            run_errors: (0, 503),
            monitoring_errors: (0, 503),
            conflicting_patches: 0,
            op_polls_before_done: 0,
            op_settle_after: Some(SignedDuration::from_secs(10)),
            latency: Duration::ZERO,
            ingest_lag: SignedDuration::from_secs(120),
            zero_points: false,
        }
    }
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
    /// `google.rpc` error body, e.g. 503 `UNAVAILABLE` or 429 `RESOURCE_EXHAUSTED`.
    pub fn run_errors(&self, n: usize, status: u16) -> &Self {
        self.with(|f| f.run_errors = (n, status))
    }

    /// The next `n` Monitoring API calls answer `status`.
    pub fn monitoring_errors(&self, n: usize, status: u16) -> &Self {
        self.with(|f| f.monitoring_errors = (n, status))
    }

    /// The next `n` PATCHes of an existing service hit a concurrent writer: the fake first
    /// changes a label of the service (new etag, new generation), then answers 409 `ABORTED`.
    pub fn conflict_next_patches(&self, n: usize) -> &Self {
        self.with(|f| f.conflicting_patches = n)
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

    /// Every Run and Monitoring call waits `delay` of real time before it is answered.
    pub fn latency(&self, delay: Duration) -> &Self {
        self.with(|f| f.latency = delay)
    }

    /// Metric points become visible `lag` after their period ends (default 120 s).
    pub fn ingest_lag(&self, lag: SignedDuration) -> &Self {
        self.with(|f| f.ingest_lag = lag)
    }

    /// Whether series carry zero-valued points for periods without requests (default false).
    pub fn zero_points(&self, on: bool) -> &Self {
        self.with(|f| f.zero_points = on)
    }

    /// Back to a well-behaved cloud.
    pub fn clear(&self) -> &Self {
        self.with(|f| *f = Faults::default())
    }
}

impl std::fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FaultHandle")
            .field(&lock(&self.shared).faults)
            .finish()
    }
}
