//! One evaluation per service at a time inside an instance, with alerts ahead of routine work.
//!
//! Across instances the etag guard keeps writes safe; inside one instance this gate keeps a burst
//! of deliveries for the same service from doing the same reads, metric queries and losing
//! writes many times over. Ticks are routine: if the service is being evaluated already, the tick
//! skips it (the running evaluation does the same work, and the next tick comes a minute later).
//! Builds and alerts wait. Since ticks never wait, they never queue in front of an alert: an alert
//! waits only for the evaluation in flight (and a build already waiting).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::target::ServiceRef;

type Gate = Arc<tokio::sync::Mutex<()>>;

/// Per-service gates, created on demand and dropped when nobody holds or waits for them.
#[derive(Default)]
pub struct Gates {
    gates: Mutex<HashMap<ServiceRef, Gate>>,
}

/// Held while a service is evaluated.
pub struct Pass {
    guard: tokio::sync::OwnedMutexGuard<()>,
    service: ServiceRef,
    gates: Arc<Gates>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut map = self.gates.gates.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and this pass's. Nobody else waits: forget the gate.
        if Arc::strong_count(tokio::sync::OwnedMutexGuard::mutex(&self.guard)) <= 2 {
            map.remove(&self.service);
        }
    }
}

/// How an evaluation takes the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// A tick: skip if the service is busy.
    Routine,
    /// A build or an alert: wait for the evaluation in flight.
    Waits,
}

impl Gates {
    fn gate(&self, service: &ServiceRef) -> Gate {
        let mut map = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(service.clone()).or_default())
    }

    /// Takes the service's gate, or `None` for routine work when the service is busy.
    pub async fn enter(self: &Arc<Self>, service: &ServiceRef, urgency: Urgency) -> Option<Pass> {
        let gate = self.gate(service);
        let guard = match urgency {
            Urgency::Routine => gate.try_lock_owned().ok()?,
            Urgency::Waits => gate.lock_owned().await,
        };
        Some(Pass {
            guard,
            service: service.clone(),
            gates: Arc::clone(self),
        })
    }

    /// Services with a gate right now (for tests: gates do not leak).
    pub fn len(&self) -> usize {
        self.gates.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    async fn an_alert_waits_only_for_the_evaluation_in_flight() {
        let gates = Arc::new(Gates::default());
        let held = gates.enter(&svc(), Urgency::Routine).await.unwrap();
        let g = Arc::clone(&gates);
        let alert = tokio::spawn(async move { g.enter(&svc(), Urgency::Waits).await.is_some() });
        tokio::task::yield_now().await;
        // While the alert waits, routine work does not queue in front of it.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(gates.enter(&svc(), Urgency::Routine).await.is_none());
        drop(held);
        assert!(alert.await.unwrap());
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

    #[tokio::test]
    async fn gates_are_forgotten_when_idle() {
        let gates = Arc::new(Gates::default());
        for i in 0..100 {
            let _p = gates
                .enter(
                    &ServiceRef::checked("p", "r", &format!("s{i}")).expect("valid ids"),
                    Urgency::Waits,
                )
                .await;
        }
        assert!(gates.is_empty());
    }
}
