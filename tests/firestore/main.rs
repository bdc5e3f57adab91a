//! `router::firestore::Firestore` against the real Firestore emulator: the record store's
//! guarantees (a stale or missing version is refused, nothing is lost between racing writers,
//! listings find a platform's records of a project) as Firestore itself enforces them; and
//! `router::recorded::Recorded` over it, its writer killed inside the window between the
//! record's intent and the split.

use std::collections::BTreeMap;
use std::time::Duration;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use cutover::clock::Clock;
use cutover::decision::record::History;
use cutover::decision::{Phase, Record, Target, Write};
use cutover::failure::ErrorKind;
use cutover::gcp::{Google, TokenSource};
use cutover::ids::{ProjectId, ServiceName};
use cutover::router::firestore::Firestore;
use cutover::router::recorded::{LEASE_MARGIN, Recorded};
use cutover::router::split::{SplitPlatform, SplitRead};
use cutover::router::store::RecordStore;
use cutover::router::{RouterError, TrafficRouter};
use cutover::target::{Platform, ServiceRef};
use cutover_fakes::firestore_emulator::FirestoreEmulator;
use tokio::sync::Notify;
use tokio::time::Instant;

fn target(platform: Platform, project: &str, name: &str) -> ServiceRef {
    ServiceRef::global(
        platform,
        ProjectId::parse(project).unwrap(),
        ServiceName::parse(name).unwrap(),
    )
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

fn record(phase: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("cutover.dev/phase".to_string(), phase.to_string())])
}

fn store(e: &FirestoreEmulator, collection: &str) -> Firestore {
    let google = Google::new(reqwest::Client::new(), TokenSource::None);
    let endpoint = format!("http://{}", e.host);
    Firestore::new(google, &endpoint, "cutover-test", "(default)", collection)
}

#[tokio::test]
async fn firestore_keeps_records_with_optimistic_concurrency() {
    let Some(emulator) = FirestoreEmulator::for_test().await else {
        return;
    };
    let collection = format!("rollouts-{}", std::process::id());
    let s = store(&emulator, &collection);
    let web = target(Platform::AppEngine, "acme", "web");

    // No record yet: an empty one, and only a create may write it.
    let none = s.read(&web, deadline()).await.unwrap();
    assert_eq!(none.version, None);
    assert!(none.annotations.is_empty());
    let first = s
        .write(&web, &record("smoke"), None, deadline())
        .await
        .unwrap();
    let again = s
        .write(&web, &record("smoke"), None, deadline())
        .await
        .unwrap_err();
    assert_eq!(
        again.kind(),
        ErrorKind::Conflict,
        "a second create is refused"
    );

    // Written at the version read: accepted, and the version moves.
    let read = s.read(&web, deadline()).await.unwrap();
    assert_eq!(
        read, first,
        "read back exactly as written, with its update time"
    );
    let second = s
        .write(
            &web,
            &record("progressing"),
            read.version.as_deref(),
            deadline(),
        )
        .await
        .unwrap();
    assert_ne!(second.version, first.version);
    // Written at a stale version: refused, nothing written.
    let stale = s
        .write(
            &web,
            &record("rolled-back"),
            first.version.as_deref(),
            deadline(),
        )
        .await
        .unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::Conflict);
    assert_eq!(s.read(&web, deadline()).await.unwrap(), second);

    // Keys with dots and slashes (every record key has them) survive as map keys.
    let mut full = record("paused");
    full.insert("cutover.intent/split".into(), "v1=90,v2=10".into());
    full.insert("cutover.dev/max-p99-ms".into(), "500".into());
    let third = s
        .write(&web, &full, second.version.as_deref(), deadline())
        .await
        .unwrap();
    assert_eq!(s.read(&web, deadline()).await.unwrap().annotations, full);

    // Racing read-modify-write loops: every increment lands once.
    let writers = 6;
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let s = s.clone();
        let web = web.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let read = s.read(&web, deadline()).await.unwrap();
                let n: u32 = read
                    .annotations
                    .get("count")
                    .map(|c| c.parse().unwrap())
                    .unwrap_or(0);
                let mut next = read.annotations.clone();
                next.insert("count".into(), (n + 1).to_string());
                match s
                    .write(&web, &next, read.version.as_deref(), deadline())
                    .await
                {
                    Ok(_) => return,
                    Err(e) if e.kind() == ErrorKind::Conflict => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counted = s.read(&web, deadline()).await.unwrap();
    assert_eq!(
        counted.annotations["count"],
        writers.to_string(),
        "no write was lost"
    );
    assert_ne!(counted.version, third.version);

    // A listing: this platform's records of this project, nothing else.
    let lb = target(Platform::LoadBalancer, "acme", "web");
    let other = target(Platform::AppEngine, "other-proj", "web");
    let api = target(Platform::AppEngine, "acme", "api");
    for t in [&lb, &other, &api] {
        s.write(t, &record("smoke"), None, deadline())
            .await
            .unwrap();
    }
    let listed = s
        .list("acme", Platform::AppEngine, deadline())
        .await
        .unwrap();
    let mut names: Vec<String> = listed.iter().map(|(t, _)| t.to_string()).collect();
    names.sort();
    assert_eq!(names, ["app-engine:acme/api", "app-engine:acme/web"]);
    let (_, web_listed) = listed.iter().find(|(t, _)| *t == web).unwrap();
    assert_eq!(
        web_listed, &counted,
        "a listing carries the version a write needs"
    );
    let lbs = s
        .list("acme", Platform::LoadBalancer, deadline())
        .await
        .unwrap();
    assert_eq!(lbs.len(), 1);
    assert_eq!(lbs[0].0, lb);
}

/// A split that applies what it is given, and can hang before applying it (the writer is
/// killed there).
#[derive(Clone)]
struct HangingSplit {
    allocation: Arc<Mutex<BTreeMap<String, u8>>>,
    hang: Arc<Mutex<bool>>,
    reached: Arc<Notify>,
}

impl SplitPlatform for HangingSplit {
    type Version = ();
    const PLATFORM: Platform = Platform::LoadBalancer;

    async fn read(&self, _: &ServiceRef, _: Instant) -> Result<SplitRead<()>, RouterError> {
        Ok(SplitRead {
            latest_ready: Some("green".into()),
            allocation: self.allocation.lock().unwrap().clone(),
            ready: BTreeSet::from(["blue".into(), "green".into()]),
            urls: BTreeMap::new(),
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
        if *self.hang.lock().unwrap() {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        // The trait's guard: a split moved since `read` is not overwritten.
        if *self.allocation.lock().unwrap() != read.allocation {
            return Err(RouterError::new(ErrorKind::Conflict, "split changed"));
        }
        *self.allocation.lock().unwrap() = traffic
            .iter()
            .filter(|t| t.percent > 0)
            .map(|t| (t.revision.clone(), t.percent))
            .collect();
        self.read(target, deadline).await
    }
}

fn step(percent: u8) -> Write {
    let t0 = "2026-12-05T03:00:00Z".parse().unwrap();
    let record = Record {
        phase: Phase::Progressing,
        candidate: "green".into(),
        stable: "blue".into(),
        percent,
        started: t0,
        step_started: t0,
        reason: format!("step to {percent}%"),
        rolled_back: Vec::new(),
        history: History::default(),
        build: None,
    };
    let traffic = [("blue", 100 - percent), ("green", percent)]
        .into_iter()
        .map(|(r, p)| Target {
            revision: r.into(),
            percent: p,
            tag: None,
        })
        .collect();
    Write {
        traffic: Some(traffic),
        record,
    }
}

fn recorded_percent(annotations: &BTreeMap<String, String>) -> Option<u8> {
    Record::from_annotations(annotations)
        .unwrap()
        .map(|r| r.percent)
}

#[tokio::test]
async fn a_writer_killed_between_the_intent_and_the_split_leaves_nothing_half_done_in_firestore() {
    let Some(emulator) = FirestoreEmulator::for_test().await else {
        return;
    };
    let collection = format!("recorded-{}", std::process::id());
    let store = store(&emulator, &collection);
    let map = target(Platform::LoadBalancer, "acme", "shop");
    let split = HangingSplit {
        allocation: Arc::new(Mutex::new(BTreeMap::from([("blue".into(), 100)]))),
        hang: Arc::new(Mutex::new(false)),
        reached: Arc::new(Notify::new()),
    };
    let clock = Clock::manual("2026-12-05T03:00:00Z".parse().unwrap());
    let first = Recorded::new(split.clone(), store.clone(), clock.clone());

    // A first step goes through: split and record agree.
    let read = first.observe(&map, deadline()).await.unwrap();
    first.apply(&read, &step(10), deadline()).await.unwrap();
    let stored = store.read(&map, deadline()).await.unwrap();
    assert_eq!(recorded_percent(&stored.annotations), Some(10));

    // The next one dies after its intent reached Firestore, before the split moved.
    *split.hang.lock().unwrap() = true;
    let read = first.observe(&map, deadline()).await.unwrap();
    let half = step(50);
    tokio::select! {
        res = first.apply(&read, &half, deadline()) => panic!("finished: {res:?}"),
        () = split.reached.notified() => {}
    }
    drop(first);
    *split.hang.lock().unwrap() = false;
    let stored = store.read(&map, deadline()).await.unwrap();
    assert!(
        stored.annotations.contains_key("cutover.intent/split"),
        "the intent is in Firestore"
    );

    // Another process: waits out the lease, then undoes the intent; the old record stands and
    // the step can be taken again, once.
    let next = Recorded::new(split.clone(), store.clone(), clock.clone());
    let err = next.observe(&map, deadline()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    clock.advance(jiff::SignedDuration::try_from(Duration::from_secs(21) + LEASE_MARGIN).unwrap());
    let read = next.observe(&map, deadline()).await.unwrap();
    assert_eq!(
        read.observed.allocation,
        BTreeMap::from([("blue".into(), 90), ("green".into(), 10)])
    );
    let stored = store.read(&map, deadline()).await.unwrap();
    assert_eq!(recorded_percent(&stored.annotations), Some(10));
    assert!(!stored.annotations.contains_key("cutover.intent/split"));
    next.apply(&read, &step(50), deadline()).await.unwrap();
    let stored = store.read(&map, deadline()).await.unwrap();
    assert_eq!(recorded_percent(&stored.annotations), Some(50));
    assert_eq!(
        *split.allocation.lock().unwrap(),
        BTreeMap::from([("blue".into(), 50), ("green".into(), 50)])
    );
}
