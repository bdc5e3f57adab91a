//! The write protocol of [`Recorded`] against an in-memory split and store, including a
//! process killed (its `apply` future dropped) at each point of the window.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::*;
use crate::decision::record::History;
use crate::decision::{Phase, Record};
use crate::ids::{ProjectId, ServiceName};
use crate::target::Platform;

/// Where a scripted split write stops, as if the process died there.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Die {
    Never,
    /// Before the platform applied the split.
    BeforeSplit,
    /// After the platform applied it, before the write returned.
    AfterSplit,
}

#[derive(Default)]
struct SplitState {
    allocation: BTreeMap<String, u8>,
    writes: u32,
    /// The next write fails with this kind, nothing applied.
    refuse: Option<ErrorKind>,
    /// The next write is applied, then answered with a conflict (its answer was lost and the
    /// retry found the guard the write had changed).
    lost_answer: bool,
    /// The next read fails, transiently.
    read_fails: bool,
}

/// Something another writer does, run by the next split read.
type Hook = Box<dyn FnOnce() + Send>;

/// An App Engine-like split: no token, applies what it is given.
#[derive(Clone)]
struct MemSplit {
    state: Arc<Mutex<SplitState>>,
    die: Arc<Mutex<Die>>,
    reached: Arc<Notify>,
    /// Runs once at the start of the next read (another writer acting meanwhile).
    before_read: Arc<Mutex<Option<Hook>>>,
}

impl MemSplit {
    fn new(allocation: &[(&str, u8)]) -> Self {
        let state = SplitState {
            allocation: alloc(allocation),
            ..SplitState::default()
        };
        MemSplit {
            state: Arc::new(Mutex::new(state)),
            die: Arc::new(Mutex::new(Die::Never)),
            reached: Arc::new(Notify::new()),
            before_read: Arc::default(),
        }
    }

    fn allocation(&self) -> BTreeMap<String, u8> {
        self.state.lock().unwrap().allocation.clone()
    }

    fn set_by_hand(&self, allocation: &[(&str, u8)]) {
        self.state.lock().unwrap().allocation = alloc(allocation);
    }
}

impl SplitPlatform for MemSplit {
    type Version = ();
    const PLATFORM: Platform = Platform::AppEngine;

    async fn read(&self, _: &ServiceRef, _: Instant) -> Result<SplitRead<()>, RouterError> {
        let hook = self.before_read.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        if std::mem::take(&mut self.state.lock().unwrap().read_fails) {
            return Err(RouterError::new(
                ErrorKind::Transient,
                "503 from the platform",
            ));
        }
        let allocation = self.allocation();
        Ok(SplitRead {
            latest_ready: Some("v2".into()),
            ready: BTreeSet::from(["v1".into(), "v2".into()]),
            urls: BTreeMap::from([
                ("v1".into(), "https://v1-dot-web.example".into()),
                ("v2".into(), "https://v2-dot-web.example".into()),
            ]),
            allocation,
            version: (),
        })
    }

    async fn write(
        &self,
        target: &ServiceRef,
        read: &SplitRead<()>,
        traffic: &[Target],
        deadline: Instant,
    ) -> Result<SplitRead<()>, RouterError> {
        let die = *self.die.lock().unwrap();
        if die == Die::BeforeSplit {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        {
            let mut s = self.state.lock().unwrap();
            if let Some(kind) = s.refuse.take() {
                return Err(RouterError::new(kind, "refused by the platform"));
            }
            // The trait's guard: a split moved since `read` is not overwritten.
            if s.allocation != read.allocation {
                return Err(RouterError::new(ErrorKind::Conflict, "split changed"));
            }
            s.allocation = allocation(traffic);
            s.writes += 1;
            if std::mem::take(&mut s.lost_answer) {
                return Err(RouterError::new(ErrorKind::Conflict, "stale fingerprint"));
            }
        }
        if die == Die::AfterSplit {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        self.read(target, deadline).await
    }
}

/// Each target's record and its version.
type Records = HashMap<ServiceRef, (BTreeMap<String, String>, u64)>;

/// A store with a counter as each record's version.
#[derive(Clone, Default)]
struct MemStore {
    records: Arc<Mutex<Records>>,
    next: Arc<Mutex<u64>>,
}

impl MemStore {
    fn annotations(&self, target: &ServiceRef) -> BTreeMap<String, String> {
        let records = self.records.lock().unwrap();
        records.get(target).map(|r| r.0.clone()).unwrap_or_default()
    }

    /// Replaces `target`'s record under a new version, as another writer would.
    fn put(&self, target: &ServiceRef, annotations: BTreeMap<String, String>) {
        let mut next = self.next.lock().unwrap();
        *next += 1;
        let mut records = self.records.lock().unwrap();
        records.insert(target.clone(), (annotations, *next));
    }
}

impl RecordStore for MemStore {
    async fn read(&self, target: &ServiceRef, _: Instant) -> Result<Stored, RouterError> {
        let records = self.records.lock().unwrap();
        Ok(match records.get(target) {
            Some((a, v)) => Stored {
                annotations: a.clone(),
                version: Some(v.to_string()),
            },
            None => Stored::default(),
        })
    }

    async fn list(
        &self,
        _: &str,
        _: Platform,
        _: Instant,
    ) -> Result<Vec<(ServiceRef, Stored)>, RouterError> {
        let records = self.records.lock().unwrap();
        Ok(records
            .iter()
            .map(|(t, (a, v))| {
                let stored = Stored {
                    annotations: a.clone(),
                    version: Some(v.to_string()),
                };
                (t.clone(), stored)
            })
            .collect())
    }

    async fn write(
        &self,
        target: &ServiceRef,
        annotations: &BTreeMap<String, String>,
        expected: Option<&str>,
        _: Instant,
    ) -> Result<Stored, RouterError> {
        let mut records = self.records.lock().unwrap();
        let current = records.get(target).map(|r| r.1.to_string());
        if current.as_deref() != expected {
            return Err(RouterError::new(
                ErrorKind::Conflict,
                "stale record version",
            ));
        }
        let mut next = self.next.lock().unwrap();
        *next += 1;
        records.insert(target.clone(), (annotations.clone(), *next));
        Ok(Stored {
            annotations: annotations.clone(),
            version: Some(next.to_string()),
        })
    }
}

fn alloc(a: &[(&str, u8)]) -> BTreeMap<String, u8> {
    a.iter().map(|(r, p)| (r.to_string(), *p)).collect()
}

fn web() -> ServiceRef {
    ServiceRef::global(
        Platform::AppEngine,
        ProjectId::parse("acme").unwrap(),
        ServiceName::parse("web").unwrap(),
    )
}

fn t0() -> Timestamp {
    "2026-12-05T03:00:00Z".parse().unwrap()
}

fn record(percent: u8) -> Record {
    Record {
        phase: Phase::Progressing,
        candidate: "v2".into(),
        stable: "v1".into(),
        percent,
        started: t0(),
        step_started: t0(),
        reason: format!("step to {percent}%"),
        rolled_back: Vec::new(),
        history: History::default(),
        build: None,
    }
}

/// The rollout's step to `percent`: v1 keeps the rest.
fn step(percent: u8) -> Write {
    let r = record(percent);
    Write {
        traffic: Some(crate::decision::split(&r, percent)),
        record: r,
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// A target at v1 100% with a rollout recorded at 0% (smoke) and a person's policy override.
fn world() -> (MemSplit, MemStore, Clock) {
    let split = MemSplit::new(&[("v1", 100)]);
    let store = MemStore::default();
    let mut a = record(0).to_annotations();
    a.insert("cutover.dev/max-p99-ms".into(), "500".into());
    store.records.lock().unwrap().insert(web(), (a, 1));
    (split, store, Clock::manual(t0()))
}

fn router(split: &MemSplit, store: &MemStore, clock: &Clock) -> Recorded<MemSplit, MemStore> {
    Recorded::new(split.clone(), store.clone(), clock.clone())
}

fn percent_recorded(store: &MemStore) -> Option<u8> {
    Record::from_annotations(&store.annotations(&web()))
        .unwrap()
        .map(|r| r.percent)
}

fn has_intent(store: &MemStore) -> bool {
    store
        .annotations(&web())
        .keys()
        .any(|k| k.starts_with("cutover.intent/"))
}

/// Runs `apply` until the split write reaches `die`, then drops it: the process is gone.
async fn killed_inside(r: &Recorded<MemSplit, MemStore>, split: &MemSplit, die: Die, w: &Write) {
    *split.die.lock().unwrap() = die;
    let read = r.observe(&web(), deadline()).await.unwrap();
    tokio::select! {
        res = r.apply(&read, w, deadline()) => panic!("the write finished: {res:?}"),
        () = split.reached.notified() => {}
    }
    *split.die.lock().unwrap() = Die::Never;
}

/// The world after a process died at `die` while taking the step to 10%.
async fn crashed(die: Die) -> (MemSplit, MemStore, Clock) {
    let (split, store, clock) = world();
    killed_inside(&router(&split, &store, &clock), &split, die, &step(10)).await;
    (split, store, clock)
}

#[tokio::test]
async fn a_step_moves_the_split_and_its_record_and_leaves_no_intent() {
    let (split, store, clock) = world();
    let r = router(&split, &store, &clock);
    let read = r.observe(&web(), deadline()).await.unwrap();
    assert_eq!(
        read.observed
            .tag_urls
            .get(CANDIDATE_TAG)
            .map(String::as_str),
        Some("https://v2-dot-web.example"),
        "the candidate's own URL is where the smoke check goes"
    );
    let after = r.apply(&read, &step(10), deadline()).await.unwrap();
    assert_eq!(split.allocation(), alloc(&[("v1", 90), ("v2", 10)]));
    assert_eq!(percent_recorded(&store), Some(10));
    assert!(!has_intent(&store));
    assert_eq!(
        store.annotations(&web()).get("cutover.dev/max-p99-ms"),
        Some(&"500".to_string()),
        "a person's override survives cutover's writes"
    );
    assert_eq!(after.observed.allocation, split.allocation());
    assert!(
        after
            .observed
            .annotations
            .keys()
            .all(|k| !k.starts_with("cutover.intent/")),
        "the decision core never sees an intent"
    );
}

/// Another instance takes a whole step (intent, split, settle) between this observer's read of
/// the record and its read of the split, as when a build arrives while a tick advances the
/// rollout. The observation must not pair the old record with the new split: on that pair the
/// build of a newer version decides nothing ("traffic is split", the record one step behind
/// looks like a manual change), is acknowledged, and its rollout never starts.
#[tokio::test]
async fn a_step_landing_between_the_record_and_split_reads_is_seen_whole() {
    let (split, store, clock) = world();
    let r = router(&split, &store, &clock);
    let read = r.observe(&web(), deadline()).await.unwrap();
    r.apply(&read, &step(10), deadline()).await.unwrap();
    let (other_split, other_store) = (split.clone(), store.clone());
    *split.before_read.lock().unwrap() = Some(Box::new(move || {
        other_split.set_by_hand(&[("v1", 50), ("v2", 50)]);
        other_store.put(&web(), step(50).record.to_annotations());
    }));

    let seen = r.observe(&web(), deadline()).await.unwrap();
    assert_eq!(seen.observed.allocation, alloc(&[("v1", 50), ("v2", 50)]));
    let recorded = Record::from_annotations(&seen.observed.annotations)
        .unwrap()
        .map(|r| r.percent);
    assert_eq!(
        recorded,
        Some(50),
        "the record read with the split it goes with"
    );

    // A build of v3 arriving now supersedes v2.
    let mut obs = seen.observed.clone();
    obs.latest_ready = Some("v3".into());
    obs.ready.insert("v3".into());
    let build = crate::decision::Trigger::Build {
        build_id: "b-3".into(),
    };
    let policy = crate::decision::Policy::default();
    let evidence = crate::decision::Evidence::None;
    let d = crate::decision::decide(&obs, &build, &evidence, &policy, clock.now());
    let started = d.write().map(|w| w.record.candidate.clone());
    assert_eq!(started.as_deref(), Some("v3"), "{}", d.reason);
}

#[tokio::test]
async fn killed_after_the_intent_before_the_split_is_undone_once_the_lease_lapses() {
    let (split, store, clock) = crashed(Die::BeforeSplit).await;
    assert!(has_intent(&store), "the window: intent written, split not");

    // A new process, same store and platform.
    let next = router(&split, &store, &clock);
    let err = next.observe(&web(), deadline()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Transient,
        "a live intent may be another instance's write in progress: retry later"
    );
    clock.advance(SignedDuration::try_from(Duration::from_secs(11) + LEASE_MARGIN).unwrap());
    let read = next.observe(&web(), deadline()).await.unwrap();
    assert_eq!(read.observed.allocation, alloc(&[("v1", 100)]));
    assert_eq!(percent_recorded(&store), Some(0), "the old record stands");
    assert!(!has_intent(&store));
    assert!(
        crate::decision::drift(&read.observed, &record(0)).is_none(),
        "split and record agree again"
    );
    // And the same step then goes through.
    next.apply(&read, &step(10), deadline()).await.unwrap();
    assert_eq!(split.allocation(), alloc(&[("v1", 90), ("v2", 10)]));
    assert_eq!(
        split.state.lock().unwrap().writes,
        1,
        "written once, not twice"
    );
}

/// Found by the chaos suite on URL maps: a process died with its split write sent; the
/// platform applied it only after the intent's lease, when another observer had already undone
/// the intent. The split then moved with nobody's record to match, and the rollout paused as a
/// "manual change", with the build that started it acknowledged long before: a rollout stopped
/// for nothing. The undo remembers the lapsed write, and the late split is finished instead.
#[tokio::test]
async fn a_write_landing_after_its_intent_lapsed_is_finished_not_read_as_a_manual_change() {
    let (split, store, clock) = crashed(Die::BeforeSplit).await;
    clock.advance(SignedDuration::try_from(Duration::from_secs(11) + LEASE_MARGIN).unwrap());
    let next = router(&split, &store, &clock);
    let undone = next.observe(&web(), deadline()).await.unwrap();
    assert_eq!(
        percent_recorded(&store),
        Some(0),
        "undone: the old record stands"
    );
    assert!(!has_intent(&store));
    assert!(
        undone
            .observed
            .annotations
            .keys()
            .all(|k| !k.starts_with("cutover.lapsed/")),
        "the decision core never sees the memory of a lapsed write"
    );

    // The dead process's request reaches the platform now.
    split.set_by_hand(&[("v1", 90), ("v2", 10)]);
    let read = next.observe(&web(), deadline()).await.unwrap();
    assert_eq!(
        percent_recorded(&store),
        Some(10),
        "the late write is finished"
    );
    assert!(
        crate::decision::drift(&read.observed, &record(10)).is_none(),
        "split and record agree: no manual change to pause on"
    );
    assert!(
        store
            .annotations(&web())
            .keys()
            .all(|k| !k.starts_with("cutover.lapsed/")),
        "finished, the memory goes"
    );
    assert_eq!(
        store.annotations(&web()).get("cutover.dev/max-p99-ms"),
        Some(&"500".to_string()),
        "a person's override survives"
    );
}

/// A lapsed write is remembered only until cutover writes the record again (here the same step
/// taken afresh), and a person's different split after a lapse is still a manual change.
#[tokio::test]
async fn the_memory_of_a_lapsed_write_goes_with_the_next_record_write_and_never_hides_a_persons_edit()
 {
    let (split, store, clock) = crashed(Die::BeforeSplit).await;
    clock.advance(SignedDuration::try_from(Duration::from_secs(11) + LEASE_MARGIN).unwrap());
    let next = router(&split, &store, &clock);
    let read = next.observe(&web(), deadline()).await.unwrap();
    assert!(store.annotations(&web()).contains_key(LAPSED_SPLIT));

    split.set_by_hand(&[("v1", 50), ("v3", 50)]);
    let edited = next.observe(&web(), deadline()).await.unwrap();
    assert_eq!(percent_recorded(&store), Some(0));
    assert!(
        crate::decision::drift(&edited.observed, &record(0)).is_some(),
        "a split other than the lapsed one is a manual change, as before"
    );

    split.set_by_hand(&[("v1", 100)]);
    let read = next.observe(&web(), deadline()).await.unwrap_or(read);
    next.apply(&read, &step(10), deadline()).await.unwrap();
    assert_eq!(percent_recorded(&store), Some(10));
    assert!(
        !store.annotations(&web()).contains_key(LAPSED_SPLIT),
        "cutover's next write ends the memory"
    );
}

#[tokio::test]
async fn killed_after_the_split_before_the_record_is_finished_by_the_next_observer() {
    let (split, store, clock) = crashed(Die::AfterSplit).await;
    assert_eq!(split.allocation(), alloc(&[("v1", 90), ("v2", 10)]));
    assert_eq!(
        percent_recorded(&store),
        Some(0),
        "the window: split written, record not"
    );

    // No lease to wait for: the split shows the write happened.
    let read = router(&split, &store, &clock)
        .observe(&web(), deadline())
        .await
        .unwrap();
    assert_eq!(percent_recorded(&store), Some(10));
    assert!(!has_intent(&store));
    assert!(crate::decision::drift(&read.observed, &record(10)).is_none());
    assert_eq!(split.state.lock().unwrap().writes, 1);
}

#[tokio::test]
async fn a_person_editing_the_split_inside_the_window_pauses_the_rollout_instead_of_being_undone() {
    let (split, store, clock) = crashed(Die::BeforeSplit).await;
    split.set_by_hand(&[("v1", 50), ("v3", 50)]);
    clock.advance(SignedDuration::try_from(Duration::from_secs(11) + LEASE_MARGIN).unwrap());
    let read = router(&split, &store, &clock)
        .observe(&web(), deadline())
        .await
        .unwrap();
    assert_eq!(
        split.allocation(),
        alloc(&[("v1", 50), ("v3", 50)]),
        "left as the person set it"
    );
    assert!(
        crate::decision::drift(&read.observed, &record(0)).is_some(),
        "the decision core sees a manual change against the old record"
    );
}

#[tokio::test]
async fn of_two_writers_deciding_on_the_same_read_the_second_is_refused() {
    let (split, store, clock) = world();
    let a = router(&split, &store, &clock);
    let b = router(&split, &store, &clock);
    let read_a = a.observe(&web(), deadline()).await.unwrap();
    let read_b = b.observe(&web(), deadline()).await.unwrap();
    a.apply(&read_a, &step(10), deadline()).await.unwrap();
    let err = b.apply(&read_b, &step(50), deadline()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(split.allocation(), alloc(&[("v1", 90), ("v2", 10)]));
    assert_eq!(percent_recorded(&store), Some(10));
    assert_eq!(split.state.lock().unwrap().writes, 1);
}

#[tokio::test]
async fn a_split_changed_by_hand_after_the_read_is_not_overwritten() {
    let (split, store, clock) = world();
    let r = router(&split, &store, &clock);
    let read = r.observe(&web(), deadline()).await.unwrap();
    split.set_by_hand(&[("v1", 70), ("v3", 30)]);
    let err = r.apply(&read, &step(10), deadline()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(split.allocation(), alloc(&[("v1", 70), ("v3", 30)]));
    assert_eq!(percent_recorded(&store), Some(0));
    assert!(!has_intent(&store), "the intent is withdrawn at once");
}

/// Takes the step to 10% with its split write refused as a conflict: the intent is withdrawn
/// and the old record stands.
async fn refused_step(r: &Recorded<MemSplit, MemStore>, split: &MemSplit, store: &MemStore) {
    split.state.lock().unwrap().refuse = Some(ErrorKind::Conflict);
    let read = r.observe(&web(), deadline()).await.unwrap();
    let err = r.apply(&read, &step(10), deadline()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(!has_intent(store));
    assert_eq!(percent_recorded(store), Some(0));
}

#[tokio::test]
async fn a_refused_split_write_withdraws_its_intent_and_an_unknown_one_keeps_it() {
    let (split, store, clock) = world();
    let r = router(&split, &store, &clock);
    refused_step(&r, &split, &store).await;

    split.state.lock().unwrap().refuse = Some(ErrorKind::Transient);
    let read = r.observe(&web(), deadline()).await.unwrap();
    let err = r.apply(&read, &step(10), deadline()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(
        has_intent(&store),
        "a write that may still land keeps its intent for the next observer to settle"
    );
}

/// Found by the chaos suite on URL maps: a PATCH that landed but whose answer was cut is
/// retried with the same fingerprint and refused (412). Withdrawing the intent then left the
/// split moved and the record not, a rollout that nobody would ever continue.
#[tokio::test]
async fn a_conflict_from_its_own_landed_write_settles_instead_of_withdrawing() {
    let (split, store, clock) = world();
    let r = router(&split, &store, &clock);
    split.state.lock().unwrap().lost_answer = true;
    let read = r.observe(&web(), deadline()).await.unwrap();
    let after = r.apply(&read, &step(10), deadline()).await.unwrap();
    assert_eq!(split.allocation(), alloc(&[("v1", 90), ("v2", 10)]));
    assert_eq!(
        percent_recorded(&store),
        Some(10),
        "the record follows the split"
    );
    assert!(!has_intent(&store));
    assert_eq!(after.observed.allocation, split.allocation());
}

/// Found by the chaos suite on URL maps under CI's load: the retry of a landed PATCH was refused
/// (412) and the read that would have told whose write it was failed. The intent was withdrawn
/// and the first step of a rollout stood in the split with no record at all. The outcome is
/// unknown, so the intent stays and the next observer after the lease finishes the write.
#[tokio::test]
async fn a_conflict_that_cannot_be_told_apart_keeps_its_intent_for_the_next_observer() {
    let (split, store, clock) = world();
    let r = router(&split, &store, &clock);
    let read = r.observe(&web(), deadline()).await.unwrap();
    {
        let mut s = split.state.lock().unwrap();
        s.lost_answer = true;
        s.read_fails = true;
    }
    let err = r.apply(&read, &step(10), deadline()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Transient,
        "retried, never acknowledged"
    );
    assert!(
        has_intent(&store),
        "the write may have landed: its intent stays"
    );

    clock.advance(SignedDuration::try_from(Duration::from_secs(11) + LEASE_MARGIN).unwrap());
    let next = router(&split, &store, &clock)
        .observe(&web(), deadline())
        .await
        .unwrap();
    assert_eq!(percent_recorded(&store), Some(10), "the write is finished");
    assert!(crate::decision::drift(&next.observed, &record(10)).is_none());
}

/// A URL map's 412 can answer the retry of the write's own PATCH while its operation still
/// runs: the split read just after shows the old weights, and the write lands a moment later.
/// The withdrawn intent is remembered as lapsed, so the late split is finished, not paused on
/// as a person's change; a write that was truly refused leaves only that memory, which
/// cutover's next record write clears.
#[tokio::test]
async fn a_withdrawn_write_that_lands_anyway_is_finished_by_the_next_observer() {
    let (split, store, clock) = world();
    let r = router(&split, &store, &clock);
    refused_step(&r, &split, &store).await;

    // Its operation completes now.
    split.set_by_hand(&[("v1", 90), ("v2", 10)]);
    let next = r.observe(&web(), deadline()).await.unwrap();
    assert_eq!(percent_recorded(&store), Some(10));
    assert!(crate::decision::drift(&next.observed, &record(10)).is_none());
    assert!(!store.annotations(&web()).contains_key(LAPSED_SPLIT));
}

#[tokio::test]
async fn a_record_only_write_touches_no_split() {
    let (split, store, clock) = world();
    let r = router(&split, &store, &clock);
    let read = r.observe(&web(), deadline()).await.unwrap();
    let mut paused = record(0);
    paused.phase = Phase::Paused(crate::decision::PauseCause::Operator);
    let w = Write {
        traffic: None,
        record: paused,
    };
    r.apply(&read, &w, deadline()).await.unwrap();
    assert_eq!(split.state.lock().unwrap().writes, 0);
    let stored = Record::from_annotations(&store.annotations(&web()))
        .unwrap()
        .unwrap();
    assert!(matches!(stored.phase, Phase::Paused(_)));
}

#[tokio::test]
async fn list_ticks_only_the_global_region_and_settles_what_it_finds() {
    let (split, store, clock) = crashed(Die::AfterSplit).await;
    let r = router(&split, &store, &clock);
    assert!(
        r.list("acme", "us-central1", deadline())
            .await
            .unwrap()
            .is_empty()
    );
    let all = r.list("acme", GLOBAL, deadline()).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(percent_recorded(&store), Some(10));
}
