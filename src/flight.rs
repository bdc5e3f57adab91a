//! One evaluation per service at a time inside an instance, with alerts overtaking it.
//!
//! Across instances the etag guard keeps writes safe; inside one instance this gate keeps a burst
//! of deliveries for the same service from doing the same reads, metric queries and losing
//! writes many times over. Each service has two lanes:
//! - the **evaluation** lane: ticks, builds and operators' verbs. Ticks are routine: if the
//!   service is being evaluated already (or an alert is being handled), the tick skips it (the
//!   work in flight covers it, and the next tick comes a minute later). Builds and verbs wait for
//!   the evaluation in flight.
//! - the **alert** lane: an alert does not wait for the evaluation in flight. It reads, decides
//!   and writes at once, beside it. Alerts coalesce with each other: an alert waits only for the
//!   alert in flight, and one that finds another alert already waiting is covered by it (the
//!   waiting one reads the service after the one in flight has finished) and returns at once.
//!
//! Overtaking is safe because both writes are guarded by the version of the read they were
//! decided on, on every platform: whichever lands second is refused as a conflict, re-reads and
//! decides again on what the first one left (`reconcile`'s loop). Cloud Run: the service's
//! `etag` on the PATCH that carries traffic and record together (`router::cloud_run`). App
//! Engine and URL maps (`router::recorded`): the write intent is committed to Firestore
//! conditional on the record's `updateTime`, and that commit decides between racing writers
//! before either split is touched; a URL map's split write is further guarded by its
//! `fingerprint`. So an evaluation that was inside its Monitoring query when the alert rolled
//! back loses its write and, reading the rolled-back service, changes nothing. One case makes
//! the alert wait after all: on the recorded platforms a write in flight leaves an intent that
//! an observer cannot settle until it lapses, and observing fails ("another write is in
//! flight"); then the alert waits for this instance's evaluation to finish ([`Gates::settled`])
//! and tries once more, instead of failing and waiting for Pub/Sub's redelivery.
//!
//! Alerts overtake on the CPU too: an alert is handled on a thread of its own
//! ([`on_alert_thread`]: its own runtime, its calls on a connection pool of their own), and
//! evaluations on a runtime whose workers run at a lower OS priority ([`on_routine_runtime`]),
//! below the threads that answer pushes. Under a burst of evaluations an alert's tasks then
//! never wait in a run queue behind hundreds of evaluations in flight, nor its calls for a
//! pooled connection they hold, and its push is read while evaluations wait for the CPU.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::target::ServiceRef;

type Lane = Arc<tokio::sync::Mutex<()>>;

/// One service's two lanes, and whether an alert waits for the alert lane.
#[derive(Default)]
struct Gate {
    evaluation: Lane,
    alert: Lane,
    alert_waiting: AtomicBool,
    /// Told whenever an alert for the service arrives ([`Pass::alert_arrives`]).
    alert_arrived: tokio::sync::Notify,
}

/// Per-service gates, created on demand and dropped when nobody holds or waits for them.
#[derive(Default)]
pub struct Gates {
    gates: Mutex<HashMap<ServiceRef, Arc<Gate>>>,
}

/// Held while a service is evaluated (or, for an alert, while the alert is handled).
pub struct Pass {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    gate: Arc<Gate>,
    service: ServiceRef,
    gates: Arc<Gates>,
}

impl Pass {
    /// Resolves when an alert for the service arrives in this instance after this call (an
    /// evaluation in flight can then leave the service to it: `reconcile`).
    pub fn alert_arrives(&self) -> tokio::sync::futures::Notified<'_> {
        self.gate.alert_arrived.notified()
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut map = self.gates.gates.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and this pass's. Nobody else holds or waits: forget the gate.
        if Arc::strong_count(&self.gate) <= 2 {
            map.remove(&self.service);
        }
    }
}

/// How an event takes the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// A tick: skip if the service is busy (an evaluation or an alert in flight).
    Routine,
    /// A build or a verb: wait for the evaluation in flight.
    Waits,
    /// An alert: go at once, beside any evaluation in flight; wait only for the alert in
    /// flight, and skip if another alert already waits (that one covers this one).
    Overtakes,
}

/// Marks an alert as waiting for its service's alert lane until dropped (taken, or given up
/// because its request went away).
struct Waiting<'a>(&'a AtomicBool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Gates {
    fn gate(&self, service: &ServiceRef) -> Arc<Gate> {
        let mut map = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(service.clone()).or_default())
    }

    /// Takes the service's lane for `urgency`, or `None` when the work is covered by work in
    /// flight: routine work when the service is busy, an alert when another alert waits.
    pub async fn enter(self: &Arc<Self>, service: &ServiceRef, urgency: Urgency) -> Option<Pass> {
        let gate = self.gate(service);
        if urgency == Urgency::Overtakes {
            // An evaluation in flight may leave the service to this alert (`reconcile`).
            gate.alert_arrived.notify_waiters();
        }
        let guard = match urgency {
            Urgency::Routine => {
                let guard = Arc::clone(&gate.evaluation).try_lock_owned().ok()?;
                // An alert in flight is rolling the service back: nothing routine to add.
                if gate.alert.try_lock().is_err() {
                    return None;
                }
                guard
            }
            Urgency::Waits => Arc::clone(&gate.evaluation).lock_owned().await,
            Urgency::Overtakes => match Arc::clone(&gate.alert).try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => {
                    // One alert waits at most: it reads after the one in flight, so it sees
                    // whatever any later alert would.
                    gate.alert_waiting
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                        .ok()?;
                    let _waiting = Waiting(&gate.alert_waiting);
                    Arc::clone(&gate.alert).lock_owned().await
                }
            },
        };
        Some(Pass {
            _guard: guard,
            gate,
            service: service.clone(),
            gates: Arc::clone(self),
        })
    }

    /// Whether the service is being evaluated in this instance right now.
    pub fn evaluating(&self, service: &ServiceRef) -> bool {
        let map = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        map.get(service)
            .is_some_and(|g| g.evaluation.try_lock().is_err())
    }

    /// Returns once no evaluation of the service is in flight in this instance (at once if
    /// none is), without holding the lane afterwards.
    pub async fn settled(&self, service: &ServiceRef) {
        let lane = {
            let map = self.gates.lock().unwrap_or_else(|p| p.into_inner());
            map.get(service).map(|g| Arc::clone(&g.evaluation))
        };
        if let Some(lane) = lane {
            drop(lane.lock().await);
        }
    }

    /// Services with a gate right now (for tests: gates do not leak).
    pub fn len(&self) -> usize {
        self.gates.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How much lower than the server's other threads the evaluations' workers run (`nice`,
/// 0–19): at 10 a busy worker gets about a tenth of the CPU share of a busy thread at 0 (Linux's
/// CFS weights 110 against 1024), so the threads that answer pushes and handle alerts are
/// scheduled ahead of evaluations, and evaluations still run at full speed whenever nothing
/// else does. Only relative: in a container where cutover runs alone, it orders cutover's own
/// threads.
pub const ROUTINE_NICENESS: i32 = 10;

static ALERTS: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
static ROUTINE: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();

/// Starts the alerts' and the evaluations' runtimes, each on threads of its own for the life of
/// the process. `cutover serve` calls it once at start-up; until then (a library user, the
/// in-process instances of the tests and the chaos suite, whose "crash" shuts one instance's
/// runtime down and must drop that instance's work with it) [`on_alert_thread`] and
/// [`on_routine_runtime`] run their work where they are called. Best effort: a runtime that
/// cannot be started leaves its work where it is called.
pub fn start_lanes() {
    kept(&ALERTS, "cutover-alerts", || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    });
    kept(&ROUTINE, "cutover-routine", || {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("cutover-evaluations")
            .on_thread_start(routine_priority)
            .enable_all()
            .build()
    });
}

/// A runtime kept on its own threads for the life of the process (started on first call), or
/// `None` if it could not be started.
fn kept(
    cell: &'static OnceLock<Option<tokio::runtime::Handle>>,
    name: &str,
    build: impl FnOnce() -> std::io::Result<tokio::runtime::Runtime>,
) -> Option<&'static tokio::runtime::Handle> {
    cell.get_or_init(|| {
        let runtime = build().ok()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .ok()?;
        Some(handle)
    })
    .as_ref()
}

/// The runtime `cell` holds, if [`start_lanes`] started it.
fn started(
    cell: &'static OnceLock<Option<tokio::runtime::Handle>>,
) -> Option<&'static tokio::runtime::Handle> {
    cell.get().and_then(Option::as_ref)
}

/// Lowers the calling thread's OS priority by [`ROUTINE_NICENESS`] (Linux: a thread's own
/// `nice`). Best effort: where it cannot, every thread keeps the same priority.
fn routine_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its arguments; with `who` 0 Linux applies it to the
    // calling thread alone.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, ROUTINE_NICENESS);
    }
}

/// Runs `work` on `runtime` (here if there is none) and returns its output; a panic inside it
/// is carried on to the caller, as if it had run here.
async fn run_on<F>(runtime: Option<&tokio::runtime::Handle>, work: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let Some(runtime) = runtime else {
        return work.await;
    };
    match runtime.spawn(work).await {
        Ok(output) => output,
        // The runtime lives as long as the process: the task can only have panicked.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Runs an alert's handling on the alerts' own thread (its own runtime, at the server's
/// priority; its calls use a connection pool of their own, `gcp::Google::with_urgent_client`):
/// it never waits in a run queue behind the evaluations in flight. Here, if [`start_lanes`] has
/// not run.
pub async fn on_alert_thread<F>(work: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    run_on(started(&ALERTS), work).await
}

/// Runs an evaluation on the evaluations' runtime: as many workers as cores, each at
/// [`ROUTINE_NICENESS`] below the threads that answer pushes and handle alerts. Here, if
/// [`start_lanes`] has not run.
pub async fn on_routine_runtime<F>(work: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    run_on(started(&ROUTINE), work).await
}

/// At most one of something at a time; others skip rather than wait.
#[derive(Default)]
pub struct Once {
    busy: std::sync::atomic::AtomicBool,
}

/// Held while the one thing runs.
pub struct OnceGuard<'a>(&'a Once);

impl Drop for OnceGuard<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

impl Once {
    /// Starts the thing, or `None` if it is running already.
    pub fn try_enter(&self) -> Option<OnceGuard<'_>> {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| OnceGuard(self))
    }
}

/// Remembers recently handled keys (`service#build`), so a redelivery of one is acknowledged
/// without reading anything. Bounded twice over: at most `capacity` entries (the oldest is
/// forgotten first, after which a redelivery is simply handled again, which is harmless since
/// deciding is idempotent), and each entry is a fixed 8-byte digest of its key, never the key
/// itself, so the memory is at most about 16 bytes × `capacity` plus the set's overhead (some
/// 100 KiB for 4,096 entries) whatever the keys' size.
///
/// The digest is SipHash-1-3 under a key drawn at random per process ([`RandomState`]), 64 bits.
/// Two different keys share a digest with probability 2⁻⁶⁴, and a new key collides with one of
/// the `capacity` remembered ones with probability `capacity`/2⁶⁴ (2⁻⁵² for 4,096): over a
/// billion builds, about one chance in four million. A collision would make this instance take a
/// new build for a redelivery and acknowledge it without starting its rollout (the candidate
/// keeps 0%: a missed rollout, never an unjudged one). The random key means nobody outside the
/// process can search for colliding ids in advance.
pub struct Recent {
    inner: Mutex<(VecDeque<u64>, HashSet<u64>)>,
    hasher: RandomState,
    capacity: usize,
}

impl Recent {
    pub fn new(capacity: usize) -> Self {
        Recent {
            inner: Mutex::default(),
            hasher: RandomState::new(),
            capacity: capacity.max(1),
        }
    }

    fn digest(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        let d = self.digest(key);
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .contains(&d)
    }

    pub fn insert(&self, key: &str) {
        let d = self.digest(key);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (order, set) = &mut *g;
        if set.insert(d) {
            order.push_back(d);
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn svc() -> ServiceRef {
        ServiceRef::checked("p", "r", "s").expect("valid ids")
    }

    #[tokio::test]
    async fn routine_work_skips_a_busy_service() {
        let gates = Arc::new(Gates::default());
        let held = gates.enter(&svc(), Urgency::Waits).await.unwrap();
        assert!(gates.enter(&svc(), Urgency::Routine).await.is_none());
        assert!(
            gates
                .enter(
                    &ServiceRef::checked("p", "r", "other").expect("valid ids"),
                    Urgency::Routine
                )
                .await
                .is_some()
        );
        drop(held);
        assert!(gates.enter(&svc(), Urgency::Routine).await.is_some());
    }

    #[tokio::test]
    async fn a_build_waits_only_for_the_evaluation_in_flight() {
        let gates = Arc::new(Gates::default());
        let held = gates.enter(&svc(), Urgency::Routine).await.unwrap();
        let g = Arc::clone(&gates);
        let build = tokio::spawn(async move { g.enter(&svc(), Urgency::Waits).await.is_some() });
        // While the build waits, routine work does not queue in front of it.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!build.is_finished());
        assert!(gates.enter(&svc(), Urgency::Routine).await.is_none());
        drop(held);
        assert!(build.await.unwrap());
    }

    #[tokio::test]
    async fn an_alert_goes_at_once_beside_the_evaluation_in_flight() {
        let gates = Arc::new(Gates::default());
        for urgency in [Urgency::Routine, Urgency::Waits] {
            let evaluation = gates.enter(&svc(), urgency).await.unwrap();
            assert!(gates.evaluating(&svc()));
            let alert = gates.enter(&svc(), Urgency::Overtakes).now_or_never();
            assert!(
                matches!(alert, Some(Some(_))),
                "the alert did not wait for the {urgency:?} evaluation in flight"
            );
            drop(evaluation);
        }
        assert!(gates.is_empty());
    }

    #[tokio::test]
    async fn routine_work_skips_a_service_an_alert_is_handling() {
        let gates = Arc::new(Gates::default());
        let alert = gates.enter(&svc(), Urgency::Overtakes).await.unwrap();
        assert!(gates.enter(&svc(), Urgency::Routine).await.is_none());
        // A build is not routine: it still runs (its write is guarded like the alert's).
        assert!(gates.enter(&svc(), Urgency::Waits).now_or_never().is_some());
        drop(alert);
        assert!(gates.enter(&svc(), Urgency::Routine).await.is_some());
    }

    #[tokio::test]
    async fn alerts_coalesce_one_waits_behind_the_one_in_flight_and_later_ones_are_covered() {
        let gates = Arc::new(Gates::default());
        let first = gates.enter(&svc(), Urgency::Overtakes).await.unwrap();
        let g = Arc::clone(&gates);
        let second =
            tokio::spawn(async move { g.enter(&svc(), Urgency::Overtakes).await.is_some() });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !second.is_finished(),
            "the second alert waits for the first"
        );
        // A third finds the second waiting: the second reads after the first, it covers this.
        assert!(gates.enter(&svc(), Urgency::Overtakes).await.is_none());
        drop(first);
        assert!(
            second.await.unwrap(),
            "the waiting alert runs once the first is done"
        );
        assert!(gates.is_empty());
    }

    #[tokio::test]
    async fn an_alert_given_up_while_waiting_leaves_the_next_one_its_turn() {
        let gates = Arc::new(Gates::default());
        let first = gates.enter(&svc(), Urgency::Overtakes).await.unwrap();
        let g = Arc::clone(&gates);
        let gone = tokio::spawn(async move { g.enter(&svc(), Urgency::Overtakes).await.is_some() });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // Its push request went away (the connection closed): its future is dropped.
        gone.abort();
        assert!(gone.await.is_err());
        let g = Arc::clone(&gates);
        let next = tokio::spawn(async move { g.enter(&svc(), Urgency::Overtakes).await.is_some() });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert!(
            next.await.unwrap(),
            "the next alert waited and ran, it was not skipped"
        );
    }

    #[tokio::test]
    async fn settled_returns_once_the_evaluation_in_flight_is_done() {
        let gates = Arc::new(Gates::default());
        assert!(
            gates.settled(&svc()).now_or_never().is_some(),
            "nothing in flight"
        );
        let evaluation = gates.enter(&svc(), Urgency::Waits).await.unwrap();
        let g = Arc::clone(&gates);
        let waiting = tokio::spawn(async move { g.settled(&svc()).await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        drop(evaluation);
        waiting.await.unwrap();
        assert!(!gates.evaluating(&svc()));
    }

    #[test]
    fn once_lets_one_through_at_a_time() {
        let once = Once::default();
        let g = once.try_enter().unwrap();
        assert!(once.try_enter().is_none());
        drop(g);
        assert!(once.try_enter().is_some());
    }

    #[test]
    fn recent_keys_are_bounded() {
        let r = Recent::new(3);
        for k in ["a", "b", "c", "d"] {
            r.insert(k);
        }
        assert!(!r.contains("a"), "the oldest is forgotten");
        assert!(r.contains("b") && r.contains("d"));
        r.insert("d");
        assert!(r.contains("b"), "re-inserting does not evict");
    }

    #[test]
    fn recent_keys_cost_the_same_whatever_their_size() {
        let r = Recent::new(4);
        let huge = "x".repeat(1 << 20);
        r.insert(&huge);
        assert!(r.contains(&huge));
        assert!(!r.contains(&huge[1..]));
        let g = r.inner.lock().unwrap();
        // Only digests are kept: nothing of the megabyte key.
        assert_eq!((g.0.len(), g.1.len()), (1, 1));
        assert_eq!(size_of_val(&g.0[0]), 8);
    }

    /// The nice value of the calling thread (Linux).
    fn own_niceness() -> Option<i32> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .nth(16)?
            .parse()
            .ok()
    }

    /// Every evaluation worker busy (blocked here) does not delay an alert: it runs on its own
    /// thread, and the evaluations' workers run at a lower OS priority than it.
    #[tokio::test]
    async fn an_alert_runs_while_every_evaluation_worker_is_busy_and_above_them() {
        start_lanes();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let (started, mut busy) = tokio::sync::mpsc::unbounded_channel();
        let mut blockers = Vec::new();
        for _ in 0..workers {
            let (released, started) = (Arc::clone(&released), started.clone());
            blockers.push(tokio::spawn(on_routine_runtime(async move {
                let _ = started.send(own_niceness());
                // Holds its worker thread until the test lets go.
                let _ = released.lock().unwrap().recv();
            })));
        }
        let routine = busy.recv().await.flatten();
        let alert = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            on_alert_thread(async { own_niceness() }),
        )
        .await;
        for _ in 0..workers {
            let _ = release.send(());
        }
        for b in blockers {
            b.await.unwrap();
        }
        let alert = alert.expect("the alert ran while the evaluations' workers were busy");
        if let (Some(alert), Some(routine)) = (alert, routine) {
            assert_eq!(
                routine - alert,
                ROUTINE_NICENESS,
                "evaluations run below alerts"
            );
        }
    }

    #[tokio::test]
    async fn gates_are_forgotten_when_idle() {
        let gates = Arc::new(Gates::default());
        for i in 0..100 {
            let _p = gates
                .enter(
                    &ServiceRef::checked("p", "r", &format!("s{i}")).expect("valid ids"),
                    if i % 2 == 0 {
                        Urgency::Waits
                    } else {
                        Urgency::Overtakes
                    },
                )
                .await;
        }
        assert!(gates.is_empty());
    }
}
