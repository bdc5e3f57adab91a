//! App Engine services and load-balancer URL maps rolled out end to end: the real `cutover serve`
//! binary, on the system clock, against the fakes of App Engine Admin v1, Compute v1 and
//! Monitoring, with its records in the real Firestore emulator.
//!
//! Real time makes every judged step cost a Monitoring minute or two, so one world holds a
//! target per behaviour on both platforms and one run of cutover serves them all at once (both
//! platforms enabled): a healthy candidate (10 → 50 → 100, the bake, completed), a 5xx and a
//! latency regression, a target without traffic, an alert, a manual change, a candidate that is
//! not ready, and an operator's verbs. Every build is delivered to two instances at once and
//! again; a concurrent writer touches the healthy targets; both instances are killed with
//! SIGKILL mid-rollout and a third finishes it; the healthy builds are delivered again after
//! completion. `CUTOVER_SMOKE_PATH` is set: App Engine versions are smoke-checked on their own
//! URL, backend services have none and their health is the gate.

use std::collections::BTreeMap;
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cutover::gcp::{Google, TokenSource};
use cutover::ids::{ProjectId, ServiceName};
use cutover::router::firestore::Firestore;
use cutover::router::store::RecordStore;
use cutover::target::{Platform, ServiceRef};
use cutover_fakes::firestore_emulator::FirestoreEmulator;
use cutover_fakes::pusher::{Pushed, Pusher};
use cutover_fakes::{FakeClock, FakeGcp, RevisionProfile, SplitChange, TargetKey, encode, pusher};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::helpers::{PROJECT, REGION};
use crate::support::{Process, REAL_CLOCK_TIMING, VerbRun, free_port, run_verb};

/// The two platforms whose targets keep their record in Firestore.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    AppEngine,
    LoadBalancer,
}

impl Kind {
    fn platform(self) -> Platform {
        match self {
            Kind::AppEngine => Platform::AppEngine,
            Kind::LoadBalancer => Platform::LoadBalancer,
        }
    }

    fn key(self, name: &str) -> TargetKey {
        match self {
            Kind::AppEngine => FakeGcp::app_engine(PROJECT, name),
            Kind::LoadBalancer => FakeGcp::url_map(PROJECT, name),
        }
    }

    /// The version or backend service serving 100% before the release.
    fn stable(self, name: &str) -> String {
        match self {
            Kind::AppEngine => format!("{name}-v1"),
            Kind::LoadBalancer => format!("{name}-blue"),
        }
    }

    /// The version deployed with `--no-promote`, or the idle backend service the release
    /// brought up.
    fn candidate(self, name: &str) -> String {
        match self {
            Kind::AppEngine => format!("{name}-v2"),
            Kind::LoadBalancer => format!("{name}-green"),
        }
    }

    /// The target serving 100% on its stable member, its candidate deployed without traffic
    /// and behaving like `profile`, `rps` requests per second.
    fn deploy(self, fake: &FakeGcp, name: &str, profile: RevisionProfile, rps: f64) {
        let (stable, candidate) = (self.stable(name), self.candidate(name));
        match self {
            Kind::AppEngine => {
                fake.add_app_engine_service(PROJECT, name, &stable);
                fake.deploy_version(PROJECT, name, &candidate);
            }
            Kind::LoadBalancer => {
                fake.add_url_map(PROJECT, name, &stable);
                fake.add_backend(PROJECT, name, &candidate);
            }
        }
        fake.set_profile_of(&self.key(name), &candidate, profile);
        fake.set_rps_of(&self.key(name), rps);
    }

    /// The candidate not ready (a stopped version, an unhealthy backend) or ready again.
    fn set_candidate_ready(self, fake: &FakeGcp, name: &str, ready: bool) {
        let candidate = self.candidate(name);
        match self {
            Kind::AppEngine => fake.set_version_serving(PROJECT, name, &candidate, ready),
            Kind::LoadBalancer => fake.set_backend_healthy(PROJECT, &candidate, ready),
        }
    }

    /// The Cloud Build notification of the build `build_id` that deployed `name`'s candidate.
    fn build(self, build_id: &str, name: &str, at: Timestamp) -> Vec<u8> {
        let candidate = self.candidate(name);
        match self {
            Kind::AppEngine => {
                encode::encode_app_engine_build(build_id, "SUCCESS", PROJECT, name, &candidate, at)
            }
            Kind::LoadBalancer => {
                encode::encode_url_map_build(build_id, "SUCCESS", PROJECT, name, &candidate, at)
            }
        }
    }

    /// An open Monitoring incident on `name`'s candidate (`gae_app`, `https_lb_rule`).
    fn incident(self, name: &str, at: Timestamp) -> Value {
        let candidate = self.candidate(name);
        match self {
            Kind::AppEngine => pusher::app_engine_incident(PROJECT, name, &candidate, "open", at),
            Kind::LoadBalancer => pusher::url_map_incident(PROJECT, name, &candidate, "open", at),
        }
    }
}

/// One target of the world: its platform and name.
#[derive(Clone, Copy, Debug)]
struct T {
    kind: Kind,
    name: &'static str,
}

const AE: Kind = Kind::AppEngine;
const LB: Kind = Kind::LoadBalancer;

/// Bounds on real time: a judged step needs a complete Monitoring minute after it began.
const STEP_BOUND: Duration = Duration::from_secs(5 * 60);
const ROLLOUT_BOUND: Duration = Duration::from_secs(12 * 60);

/// The policy of this run, beside [`REAL_CLOCK_TIMING`] (the server's and the verbs'): the bake
/// on the same real-time scale, and no pause for lack of traffic within the run.
const POLICY: [&str; 4] = ["--bake", "20s", "--max-hold", "1h"];

/// The fake world, the Firestore emulator, and the `cutover serve` processes of this run.
struct World {
    fake: FakeGcp,
    emulator: FirestoreEmulator,
    collection: String,
    store: Firestore,
    procs: Vec<Process>,
    /// Processes started so far (names their logs).
    started: u32,
    /// Ticks sent so far (they alternate between the live processes).
    ticks: u64,
}

impl World {
    fn firestore_endpoint(&self) -> String {
        format!("http://{}", self.emulator.host)
    }

    /// Settings shared by the server and the verbs: the fakes, both platforms, the emulator.
    fn platform_flags(&self) -> Vec<String> {
        let mut flags = cutover_fakes::flags::platform_flags(&self.fake);
        flags.extend(
            [
                "--platforms",
                "app-engine,load-balancer",
                "--firestore-endpoint",
                &self.firestore_endpoint(),
                "--firestore-collection",
                &self.collection,
                "--smoke-path",
                "/healthz",
            ]
            .map(String::from),
        );
        flags
    }

    /// Starts one more `cutover serve` on a fresh port, its output in a log file.
    async fn spawn(&mut self) {
        let port = free_port();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("platforms-logs");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{}-{}.log", std::process::id(), self.started));
        self.started += 1;
        let log = File::create(&path).expect("a log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
        for (k, _) in std::env::vars() {
            if k.starts_with("CUTOVER_") || k == "RUST_LOG" || k.starts_with("GOOGLE_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .args(["--port", &port.to_string()])
            .args(cutover_fakes::flags::flags(&self.fake, PROJECT, REGION))
            .args(self.platform_flags())
            .args(REAL_CLOCK_TIMING)
            .args(POLICY)
            .args(["--event-deadline", "10s"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("a log file")))
            .stderr(Stdio::from(log));
        let process = Process {
            child: Some(cmd.spawn().expect("cutover serve starts")),
            base: format!("http://127.0.0.1:{port}"),
        };
        assert!(
            process.healthy(Duration::from_secs(20)).await,
            "cutover did not start: {}",
            std::fs::read_to_string(&path).unwrap_or_default()
        );
        self.procs.push(process);
    }

    fn pusher(&self, proc: usize) -> Pusher {
        Pusher::new(&self.procs[proc].base, PROJECT)
    }

    /// Pushes to process `proc` as Pub/Sub does: again after a non-2xx answer, a few times.
    async fn deliver(
        &self,
        proc: usize,
        path: &str,
        data: &[u8],
        attributes: &BTreeMap<String, String>,
    ) -> Pushed {
        deliver(self.pusher(proc), path, data, attributes).await
    }

    /// The build `build_id` of `t` delivered to `proc`; answered 200.
    async fn build(&self, proc: usize, t: T, build_id: &str) {
        let data = t.kind.build(build_id, t.name, Timestamp::now());
        let attributes = encode::build_attributes(build_id, "SUCCESS");
        let p = self
            .deliver(proc, "/pubsub/builds", &data, &attributes)
            .await;
        assert_eq!(p.status, 200, "{t:?}'s build: {}", p.body);
    }

    /// One tick, to the next live process in turn (its answer does not matter here: a tick
    /// that meets another writer's intent is answered 503 and the next one comes).
    async fn tick(&mut self) {
        let proc = (self.ticks % self.procs.len() as u64) as usize;
        self.ticks += 1;
        let _ = self.pusher(proc).tick(Timestamp::now()).await;
    }

    /// Ticks once a second until `done` holds; fails after `within`.
    async fn tick_until(&mut self, what: &str, within: Duration, done: impl Fn(&World) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(start.elapsed() < within, "{what}: not within {within:?}");
            self.tick().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn service_ref(&self, t: T) -> ServiceRef {
        ServiceRef::global(
            t.kind.platform(),
            ProjectId::parse(PROJECT).unwrap(),
            ServiceName::parse(t.name).unwrap(),
        )
    }

    /// `t`'s record in Firestore, as cutover keeps it.
    async fn record(&self, t: T) -> BTreeMap<String, String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        self.store
            .read(&self.service_ref(t), deadline)
            .await
            .expect("the record reads")
            .annotations
    }

    async fn field(&self, t: T, key: &str) -> Option<String> {
        self.record(t)
            .await
            .get(&format!("cutover.dev/{key}"))
            .cloned()
    }

    /// The candidate's share of `t`'s requests now, in percent.
    fn share(&self, t: T) -> u8 {
        let candidate = t.kind.candidate(t.name);
        let s: f64 = self
            .fake
            .split_of(&t.kind.key(t.name))
            .iter()
            .filter(|(m, _)| *m == candidate)
            .map(|(_, s)| s)
            .sum();
        (s * 100.0).round() as u8
    }

    fn history(&self, t: T) -> Vec<SplitChange> {
        self.fake.split_history(&t.kind.key(t.name))
    }

    /// The candidate's share after each change of the split, repeats folded.
    fn steps(&self, t: T) -> Vec<u8> {
        let candidate = t.kind.candidate(t.name);
        let mut out: Vec<u8> = Vec::new();
        for change in self.history(t) {
            let p = (change.share_of(&candidate) * 100.0).round() as u8;
            if out.last() != Some(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Writes through the platform's API (not a person's edits, not set-up).
    fn api_writes(&self, t: T) -> usize {
        self.history(t).iter().filter(|c| !c.by_hand).count()
    }

    /// Runs `cutover VERB ARGS…` (the real binary) against this world, as `alice`.
    async fn verb(&self, verb: &str, args: &[&str]) -> VerbRun {
        let mut argv: Vec<String> = vec![verb.to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let (base, metadata) = (self.fake.base_url(), self.fake.metadata_host());
        let client = [
            ("--project", PROJECT),
            ("--run-endpoint", &base),
            ("--monitoring-endpoint", &base),
            ("--metadata-host", &metadata),
            ("--auth", "none"),
            ("--actor", "alice"),
        ];
        for (flag, value) in client {
            argv.extend([flag.to_string(), value.to_string()]);
        }
        argv.extend(self.platform_flags());
        argv.extend(
            REAL_CLOCK_TIMING
                .iter()
                .chain(POLICY.iter())
                .map(|s| s.to_string()),
        );
        run_verb(argv).await
    }
}

/// Pushes `data` to `path` until it is answered 2xx, ten tries at most, as Pub/Sub redelivers.
async fn deliver(
    push: Pusher,
    path: &str,
    data: &[u8],
    attributes: &BTreeMap<String, String>,
) -> Pushed {
    let sub = format!("cutover-{}", path.trim_start_matches("/pubsub/"));
    let mut last = None;
    for _ in 0..10 {
        match push
            .push(path, &sub, data, attributes, Timestamp::now())
            .await
        {
            Ok(p) if (200..300).contains(&p.status) => return p,
            Ok(p) => last = Some(p),
            Err(e) => {
                last = Some(Pushed {
                    status: 0,
                    body: Value::String(e),
                })
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    last.expect("at least one try")
}

/// Every change of every target's split kept the platform's rules: shares summing to 100%, no
/// share for a member that was not ready, and (URL maps) every API write carrying the current
/// fingerprint.
fn check_histories(w: &World, targets: &[T]) {
    for t in targets {
        for c in w.history(*t) {
            assert!(
                (c.share_sum() - 1.0).abs() < 1e-9,
                "{t:?}: shares sum to {}: {c:?}",
                c.share_sum()
            );
            assert!(c.routes_unready.is_empty(), "{t:?}: {c:?}");
            if t.kind == LB && !c.by_hand {
                assert!(
                    c.guard_matched,
                    "{t:?}: a write without the fingerprint: {c:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_engine_and_load_balancer_rollouts_end_to_end_with_the_real_binary() {
    let Some(emulator) = FirestoreEmulator::for_test().await else {
        return;
    };
    let fake = FakeGcp::start(FakeClock::System).await;
    fake.faults().ingest_lag(SignedDuration::ZERO);
    let collection = format!("e2e-platforms-{}", std::process::id());
    let store = Firestore::new(
        Google::new(reqwest::Client::new(), TokenSource::None),
        &format!("http://{}", emulator.host),
        PROJECT,
        "(default)",
        &collection,
    );
    let mut w = World {
        fake,
        emulator,
        collection,
        store,
        procs: Vec::new(),
        started: 0,
        ticks: 0,
    };

    let healthy = |kind| T {
        kind,
        name: if kind == AE { "shop" } else { "edge" },
    };
    let target = |kind, name| T { kind, name };
    let errors = |k| target(k, "errors");
    let slow = |k| target(k, "slow");
    let quiet = |k| target(k, "quiet");
    let alerted = |k| target(k, "alerted");
    let manual = |k| target(k, "manual");
    let unready = |k| target(k, "unready");
    let ops = target(AE, "ops");
    let mut all = Vec::new();
    for k in [AE, LB] {
        let ok = RevisionProfile::healthy();
        k.deploy(&w.fake, healthy(k).name, ok.clone(), 100.0);
        k.deploy(&w.fake, "errors", ok.clone().with_error_ratio(0.2), 100.0);
        let slow_profile = ok.clone().with_p50_ms(900.0).with_p99_ms(3000.0);
        k.deploy(&w.fake, "slow", slow_profile, 100.0);
        k.deploy(&w.fake, "quiet", ok.clone(), 0.0);
        k.deploy(&w.fake, "alerted", ok.clone(), 100.0);
        k.deploy(&w.fake, "manual", ok.clone(), 100.0);
        k.deploy(&w.fake, "unready", ok.clone(), 100.0);
        k.set_candidate_ready(&w.fake, "unready", false);
        all.extend([
            healthy(k),
            errors(k),
            slow(k),
            quiet(k),
            alerted(k),
            manual(k),
            unready(k),
        ]);
    }
    AE.deploy(&w.fake, ops.name, RevisionProfile::healthy(), 100.0);
    all.push(ops);
    let build_id = |t: T| format!("b{:07x}-{}", t.kind as u32, t.name);

    // Two instances. Every build is delivered to both at once, then once more: one start.
    w.spawn().await;
    w.spawn().await;
    for &t in &all {
        let id = build_id(t);
        tokio::join!(w.build(0, t, &id), w.build(1, t, &id));
        w.build(0, t, &id).await;
    }
    for &t in all.iter().filter(|t| t.name != "unready") {
        assert_eq!(w.steps(t), vec![0, 10], "{t:?} starts at 10%");
        assert_eq!(
            w.api_writes(t),
            1,
            "{t:?}: three deliveries to two instances, one write: {:?}",
            w.history(t)
        );
        assert_eq!(w.field(t, "phase").await.as_deref(), Some("progressing"));
    }
    for k in [AE, LB] {
        assert_eq!(
            w.steps(unready(k)),
            vec![0],
            "{k:?}: a candidate that is not ready gets no weight"
        );
    }

    // An open incident on the candidate: rolled back by the push itself, no tick needed.
    for k in [AE, LB] {
        let incident = serde_json::to_vec(&k.incident("alerted", Timestamp::now())).unwrap();
        let p = w
            .deliver(1, "/pubsub/alerts", &incident, &BTreeMap::new())
            .await;
        assert_eq!(p.status, 200, "{k:?}'s alert: {}", p.body);
        assert_eq!(
            w.steps(alerted(k)),
            vec![0, 10, 0],
            "{k:?}: rolled back at once"
        );
        let reason = w.field(alerted(k), "reason").await.unwrap_or_default();
        assert!(reason.contains("alert"), "{k:?}: {reason}");
    }

    // A person changes a split: the next tick pauses that rollout.
    for k in [AE, LB] {
        let m = manual(k);
        let (stable, candidate) = (k.stable(m.name), k.candidate(m.name));
        w.fake
            .set_split_by_hand(&k.key(m.name), &[(&stable, 70), (&candidate, 30)]);
    }
    let start = Instant::now();
    for k in [AE, LB] {
        while w.field(manual(k), "paused-by").await.as_deref() != Some("manual-change") {
            assert!(
                start.elapsed() < STEP_BOUND,
                "{k:?}: the manual change never paused"
            );
            w.tick().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The operator verbs on an App Engine target.
    let status = w
        .verb("status", &["--platform", "app-engine", "--output", "json"])
        .await;
    assert_eq!(status.code, 0, "{status:?}");
    let rows: Vec<Value> = serde_json::from_str(&status.stdout).expect("status prints JSON");
    let row = rows
        .iter()
        .find(|r| r["service"] == "app-engine:ops")
        .unwrap_or_else(|| panic!("ops is listed: {}", status.stdout));
    assert_eq!(row["platform"], "app-engine", "{row}");
    assert_eq!(row["step"], 10, "{row}");
    assert!(
        rows.iter().all(|r| r["platform"] == "app-engine"),
        "only App Engine targets: {}",
        status.stdout
    );
    let pause = w.verb("pause", &["ops", "--platform", "app-engine"]).await;
    assert_eq!(pause.code, 0, "{pause:?}");
    assert_eq!(w.field(ops, "phase").await.as_deref(), Some("paused"));
    let resume = w.verb("resume", &["ops", "--platform", "app-engine"]).await;
    assert_eq!(resume.code, 0, "{resume:?}");
    assert_eq!(w.field(ops, "phase").await.as_deref(), Some("progressing"));
    assert_eq!(w.field(ops, "actor").await.as_deref(), Some("alice"));
    let rollback = w
        .verb("rollback", &["ops", "--platform", "app-engine"])
        .await;
    assert_eq!(rollback.code, 0, "{rollback:?}");
    assert_eq!(w.steps(ops), vec![0, 10, 0], "the operator's rollback");
    assert_eq!(w.field(ops, "phase").await.as_deref(), Some("rolled-back"));

    // A concurrent writer changes something else on the healthy targets.
    for k in [AE, LB] {
        w.fake.touch(&k.key(healthy(k).name));
    }

    // The first judged step: the healthy candidates advance, both regressions go back to 0.
    // (One platform's healthy step may be judged a minute later than the other's.)
    w.tick_until("the first judged step", STEP_BOUND, |w| {
        [AE, LB].iter().all(|&k| {
            w.steps(healthy(k)).starts_with(&[0, 10, 50])
                && w.share(errors(k)) == 0
                && w.share(slow(k)) == 0
        })
    })
    .await;
    for k in [AE, LB] {
        assert_eq!(w.steps(errors(k)), vec![0, 10, 0], "{k:?}");
        let reason = w.field(errors(k), "reason").await.unwrap_or_default();
        assert!(reason.contains("5xx rate"), "{k:?}: {reason}");
        assert_eq!(w.steps(slow(k)), vec![0, 10, 0], "{k:?}");
        let reason = w.field(slow(k), "reason").await.unwrap_or_default();
        assert!(reason.contains("p99"), "{k:?}: {reason}");
        assert_eq!(
            w.field(errors(k), "phase").await.as_deref(),
            Some("rolled-back")
        );
    }

    // kill -9 both instances mid-rollout, with ticks in flight; a new process carries on.
    for k in [AE, LB] {
        let phase = w.field(healthy(k), "phase").await;
        assert_ne!(
            phase.as_deref(),
            Some("completed"),
            "{k:?}: killed mid-rollout"
        );
    }
    let in_flight: Vec<_> = (0..2)
        .map(|p| {
            let push = w.pusher(p);
            tokio::spawn(async move { push.tick(Timestamp::now()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..40))).await;
    for mut p in w.procs.drain(..) {
        let mut child = p.take();
        let _ = child.kill();
        let _ = child.wait();
    }
    for h in in_flight {
        let _ = h.await;
    }
    w.spawn().await;
    for k in [AE, LB] {
        w.fake.touch(&k.key(healthy(k).name));
    }

    // Every (platform, phase) the healthy targets were seen in.
    let mut phases = std::collections::BTreeSet::new();
    let start = Instant::now();
    loop {
        let mut done = true;
        for k in [AE, LB] {
            let phase = w.field(healthy(k), "phase").await.unwrap_or_default();
            done &= phase == "completed";
            phases.insert(format!("{k:?} {phase}"));
        }
        if done {
            break;
        }
        assert!(
            start.elapsed() < ROLLOUT_BOUND,
            "the healthy rollouts did not complete: {phases:?}"
        );
        w.tick().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for k in [AE, LB] {
        let h = healthy(k);
        assert_eq!(
            w.steps(h),
            vec![0, 10, 50, 100],
            "{k:?}: exactly 10 → 50 → 100"
        );
        assert!(
            phases.contains(&format!("{k:?} baking")),
            "{k:?}: the bake came between the last step and completion: {phases:?}"
        );
        assert_eq!(
            w.fake.split_of(&k.key(h.name)),
            vec![(k.candidate(h.name), 1.0)]
        );
        assert!(w.fake.concurrent_writes_of(&k.key(h.name)) >= 2, "{k:?}");
    }

    // The same builds delivered again after completion: nothing moves.
    let writes: Vec<usize> = [AE, LB].map(|k| w.api_writes(healthy(k))).to_vec();
    for k in [AE, LB] {
        w.build(0, healthy(k), &build_id(healthy(k))).await;
    }
    for _ in 0..3 {
        w.tick().await;
    }
    for (i, k) in [AE, LB].into_iter().enumerate() {
        let h = healthy(k);
        assert_eq!(
            w.api_writes(h),
            writes[i],
            "{k:?}: a completed build delivered again writes nothing: {:?}",
            w.history(h)
        );
        assert_eq!(w.field(h, "phase").await.as_deref(), Some("completed"));
    }

    // What the others look like at the end.
    for k in [AE, LB] {
        assert_eq!(w.steps(quiet(k)), vec![0, 10], "{k:?}: no traffic, held");
        assert_eq!(
            w.field(quiet(k), "phase").await.as_deref(),
            Some("progressing")
        );
        let m = manual(k);
        assert_eq!(w.share(m), 30, "{k:?}: the person's split stands");
        assert_eq!(w.field(m, "phase").await.as_deref(), Some("paused"));
        assert_eq!(w.steps(alerted(k)), vec![0, 10, 0], "{k:?}");
        assert_eq!(w.steps(unready(k)), vec![0], "{k:?}");
    }
    check_histories(&w, &all);
}
