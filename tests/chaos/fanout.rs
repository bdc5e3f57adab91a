//! Fan-out seeds (issue 16): the chaos suite with ticks fanning out, so that several real
//! `cutover serve` processes evaluate the same services at once and the etag-guarded write is
//! the only thing keeping each rollout on its rails.
//!
//! Per seed: 20–40 services (`CHAOS_FANOUT_SERVICES`, default 30) roll out at once, some
//! regressing, some alerted; `CHAOS_FANOUT_PROCESSES` (default 3) processes of the binary share
//! one fake with the fault mix of the other seeds (errors, 429s, lost answers, conflicts,
//! latency). Builds, incidents, ticks and the evaluations the ticks publish all go through the
//! real Pub/Sub emulator, with the fan-out threshold at 0 so every tick publishes one evaluation
//! per running rollout. Every push subscription pushes to a front in this test that hands each
//! delivery to a random live process, holds some back (reordering them), sends extra copies to
//! other processes (duplicates), and answers the emulator what the process answered (503 when
//! none did, so it redelivers). The loop kills processes with SIGKILL at random moments and
//! starts them again on new ports. Time is real, on `process.rs`'s scale (a plan minute is five
//! seconds).
//!
//! Then every service's history is judged by `invariants.rs` (`judge.rs`), and the processes'
//! decision logs are read back to count how often two processes tried to write the same service
//! within the same second: the figure that says the concurrency was real.
//!
//! Knobs: `CHAOS_FANOUT_SEEDS=N` seeds (default 0: the mode is opt-in, like process seeds),
//! `CHAOS_FANOUT_SEED=k` seed `k` alone, `CHAOS_FIRST_SEED`, `CHAOS_FANOUT_PROCESSES`,
//! `CHAOS_FANOUT_SERVICES`, `CHAOS_FANOUT_PARALLEL` seeds at once (default 2). Figures go to
//! stderr and `target/chaos-fanout-figures.txt`. Cloud Run services only.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cutover::target::Platform;
use cutover_fakes::RevisionProfile;
use cutover_fakes::emulator::Emulator;
use futures::StreamExt;
use google_cloud_pubsub::client::{Publisher, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::{Message, PushConfig};
use jiff::Timestamp;

use crate::judge::{self, Facts};
use crate::plan::{Health, Plan, ServicePlan};
use crate::process::{Proc, real_clock_world, spawn};
use crate::{PROJECT, SeedReport, env_u64, target_dir};

/// One plan minute, in wall time (as for process seeds).
const UNIT: Duration = Duration::from_secs(5);
/// How long after the last scheduled event every rollout must have ended.
const BOUND: Duration = Duration::from_secs(7 * 60);
/// How often the loop looks at the world.
const ROUND: Duration = Duration::from_millis(250);
/// How often Cloud Scheduler ticks.
const TICK_EVERY: Duration = Duration::from_secs(2);
/// cutover's push endpoints, each fed by a topic of its own.
const KINDS: [&str; 4] = ["builds", "alerts", "ticks", "evaluations"];

/// What the front and the processes' logs show about one seed's concurrency.
#[derive(Clone, Debug, Default)]
pub struct FanoutFigures {
    pub processes: usize,
    /// Pushes the emulator made to the front, by endpoint.
    pub pushed: BTreeMap<String, u64>,
    /// Evaluations the ticks published (their answers' `published`).
    pub fanned_out: u64,
    /// Extra copies the front sent to another (or the same) process.
    pub duplicates: u64,
    /// Deliveries the front held back before passing them on.
    pub held_back: u64,
    /// Pushes of a message the front had already seen (the emulator redelivering).
    pub redeliveries: u64,
    /// Pushes answered non-2xx, and of those, the ones no process answered.
    pub nacks: u64,
    pub unreachable: u64,
    /// Writes cutover's processes tried (decision records with a write), and of those the ones
    /// answered "someone wrote first".
    pub write_attempts: u64,
    pub conflicts: u64,
    /// (service, second) pairs in which two or more processes tried to write the service.
    pub same_second: u64,
    /// Services written (or tried) by two processes or more over the seed.
    pub shared_services: u64,
}

impl FanoutFigures {
    fn add(&mut self, o: &FanoutFigures) {
        self.processes = self.processes.max(o.processes);
        for (k, n) in &o.pushed {
            *self.pushed.entry(k.clone()).or_insert(0) += n;
        }
        self.fanned_out += o.fanned_out;
        self.duplicates += o.duplicates;
        self.held_back += o.held_back;
        self.redeliveries += o.redeliveries;
        self.nacks += o.nacks;
        self.unreachable += o.unreachable;
        self.write_attempts += o.write_attempts;
        self.conflicts += o.conflicts;
        self.same_second += o.same_second;
        self.shared_services += o.shared_services;
    }
}

/// The test's stand-in for Pub/Sub's choice of instance: the emulator pushes here, the front
/// passes each delivery on to a random live process, sometimes late, sometimes twice.
struct Front {
    /// Slot → the base URL of the process in it, `None` while it is dead.
    live: Mutex<Vec<Option<String>>>,
    rng: Mutex<fastrand::Rng>,
    figures: Mutex<FanoutFigures>,
    seen: Mutex<HashSet<String>>,
    /// Message ids some process answered 2xx.
    acked: Mutex<HashSet<String>>,
    http: reqwest::Client,
    /// Deliveries and copies not answered yet.
    in_flight: AtomicUsize,
}

/// Counts a delivery or copy in flight until dropped.
struct InFlight(Arc<Front>);

impl InFlight {
    fn new(front: &Arc<Front>) -> InFlight {
        front.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(front.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Front {
    fn new(seed: u64, slots: usize) -> Arc<Front> {
        Arc::new(Front {
            live: Mutex::new(vec![None; slots]),
            rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x000f_40a7)),
            figures: Mutex::new(FanoutFigures::default()),
            seen: Mutex::new(HashSet::new()),
            acked: Mutex::new(HashSet::new()),
            http: reqwest::Client::new(),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn set_live(&self, slot: usize, base: Option<String>) {
        self.live.lock().unwrap()[slot] = base;
    }

    /// A random live process, if any.
    fn pick(&self) -> Option<String> {
        let live: Vec<String> = self
            .live
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .cloned()
            .collect();
        (!live.is_empty()).then(|| live[self.rng.lock().unwrap().usize(0..live.len())].clone())
    }

    /// Passes `body` to a random live process's `/pubsub/KIND`; its status, `None` if nobody
    /// answered.
    async fn forward(&self, kind: &str, body: Bytes) -> Option<u16> {
        let base = self.pick()?;
        let answer = self
            .http
            .post(format!("{base}/pubsub/{kind}"))
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .ok()?;
        let status = answer.status().as_u16();
        if kind == "ticks" && answer.status().is_success() {
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            let published = body["published"].as_u64().unwrap_or(0);
            self.figures.lock().unwrap().fanned_out += published;
        }
        Some(status)
    }
}

/// The `message.messageId` of a push envelope.
fn message_id(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    v["message"]["messageId"].as_str().unwrap_or("").to_string()
}

async fn push(
    State(front): State<Arc<Front>>,
    Path(kind): Path<String>,
    body: Bytes,
) -> StatusCode {
    let _counted = InFlight::new(&front);
    let id = message_id(&body);
    let (hold, copy) = {
        let mut rng = front.rng.lock().unwrap();
        let hold = (rng.u32(0..100) < 30).then(|| Duration::from_millis(rng.u64(0..1500)));
        // Half the copies go out at once (two processes evaluate together), half later.
        let lag = match rng.bool() {
            true => rng.u64(0..50),
            false => rng.u64(0..2500),
        };
        let copy = (rng.u32(0..100) < 25).then(|| Duration::from_millis(lag));
        (hold, copy)
    };
    {
        let mut f = front.figures.lock().unwrap();
        *f.pushed.entry(kind.clone()).or_insert(0) += 1;
        if !front.seen.lock().unwrap().insert(id.clone()) {
            f.redeliveries += 1;
        }
        f.held_back += u64::from(hold.is_some());
        f.duplicates += u64::from(copy.is_some());
    }
    if let Some(lag) = copy {
        let (front, kind, body) = (front.clone(), kind.clone(), body.clone());
        let counted = InFlight::new(&front);
        tokio::spawn(async move {
            tokio::time::sleep(lag).await;
            front.forward(&kind, body).await;
            drop(counted);
        });
    }
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    let status = front.forward(&kind, body).await;
    match status {
        Some(s) if (200..300).contains(&s) => {
            front.acked.lock().unwrap().insert(id);
        }
        other => {
            let mut f = front.figures.lock().unwrap();
            f.nacks += 1;
            f.unreachable += u64::from(other.is_none());
        }
    }
    StatusCode::from_u16(status.unwrap_or(503)).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// Serves `front` on a free loopback port; its base URL.
async fn serve_front(front: Arc<Front>) -> String {
    let app = axum::Router::new()
        .route("/{kind}", axum::routing::post(push))
        .with_state(front);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the front");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

/// The seed's topics and push subscriptions on the emulator at `host`, every subscription
/// pushing to `front`; the publishers of the topics the test publishes on, and the full name
/// of the evaluations topic.
async fn topics(
    host: &str,
    suffix: &str,
    front: &str,
) -> (BTreeMap<&'static str, Publisher>, String) {
    let endpoint = format!("http://{host}");
    let topics = TopicAdmin::builder()
        .with_endpoint(&endpoint)
        .with_credentials(anonymous())
        .build()
        .await
        .expect("topic admin");
    let subs = SubscriptionAdmin::builder()
        .with_endpoint(&endpoint)
        .with_credentials(anonymous())
        .build()
        .await
        .expect("subscription admin");
    let mut publishers = BTreeMap::new();
    let mut evaluations = String::new();
    for kind in KINDS {
        let topic = format!("projects/{PROJECT}/topics/fan-{kind}-{suffix}");
        topics
            .create_topic()
            .set_name(&topic)
            .send()
            .await
            .expect("create topic");
        subs.create_subscription()
            .set_name(format!(
                "projects/{PROJECT}/subscriptions/fan-{kind}-{suffix}"
            ))
            .set_topic(&topic)
            .set_ack_deadline_seconds(10)
            .set_push_config(PushConfig::new().set_push_endpoint(format!("{front}/{kind}")))
            .send()
            .await
            .expect("create push subscription");
        if kind == "evaluations" {
            evaluations = topic;
            continue;
        }
        let publisher = Publisher::builder(&topic)
            .with_endpoint(&endpoint)
            .with_credentials(anonymous())
            .build()
            .await
            .expect("a publisher");
        publishers.insert(kind, publisher);
    }
    (publishers, evaluations)
}

/// `services` services: plans of six drawn from the seed, their names numbered apart
/// (`api`, `api1`, …, revisions `api1-00002-cuv`, …).
fn draw(seed: u64, services: usize) -> Plan {
    let mut out = Plan {
        seed,
        services: Vec::new(),
        horizon: 0,
    };
    for group in 0.. {
        if out.services.len() >= services {
            break;
        }
        let plan = Plan::draw(
            seed.wrapping_mul(1_000).wrapping_add(group) ^ 0xfa0,
            6..=6,
            2,
        );
        out.horizon = out.horizon.max(plan.horizon);
        let take = (services - out.services.len()).min(plan.services.len());
        out.services
            .extend(plan.services.into_iter().take(take).map(|s| {
                let name = match group {
                    0 => s.name.clone(),
                    g => format!("{}{g}", s.name),
                };
                rename(s, &name)
            }));
    }
    out
}

fn rename(s: ServicePlan, name: &str) -> ServicePlan {
    let from = format!("{}-", s.name);
    let to = format!("{name}-");
    let re = |r: &str| r.replacen(&from, &to, 1);
    ServicePlan {
        name: name.to_string(),
        stable: re(&s.stable),
        revisions: s
            .revisions
            .into_iter()
            .map(|mut r| {
                r.name = re(&r.name);
                r
            })
            .collect(),
        alerts: s
            .alerts
            .into_iter()
            .map(|mut a| {
                a.revision = re(&a.revision);
                a
            })
            .collect(),
        rps: s.rps,
    }
}

/// Something the plan makes happen at a moment of the run.
enum Event {
    Deploy { service: usize, revision: usize },
    TurnsBad { service: usize, revision: usize },
    Alert { service: usize, alert: usize },
}

/// The plan's events in the order they happen, each with its offset from the start.
fn schedule(plan: &Plan) -> Vec<(Duration, Event)> {
    let mut out = Vec::new();
    for (si, s) in plan.services.iter().enumerate() {
        for (ri, r) in s.revisions.iter().enumerate() {
            let (service, revision) = (si, ri);
            out.push((UNIT * r.at, Event::Deploy { service, revision }));
            if let Health::TurnsBad { after, .. } = r.health {
                let at = UNIT * r.at + UNIT * 2 * after;
                out.push((at, Event::TurnsBad { service, revision }));
            }
        }
        for (ai, a) in s.alerts.iter().enumerate() {
            let alert = ai;
            out.push((UNIT * a.at, Event::Alert { service: si, alert }));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out.reverse();
    out
}

/// What the processes' decision logs say: write attempts per (service, second) per process.
fn read_logs(labels: &[(usize, String)], figures: &mut FanoutFigures) {
    let dir = target_dir().join("chaos-logs");
    // (service, second) → processes that tried to write; service → processes.
    let mut by_second: BTreeMap<(String, String), BTreeSet<usize>> = BTreeMap::new();
    let mut by_service: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (slot, label) in labels {
        let text = std::fs::read_to_string(dir.join(format!("{label}.log"))).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let write = v["write"].as_str().unwrap_or("");
            if v["message"] != "decision"
                || !["applied", "conflict", "failed"]
                    .iter()
                    .any(|w| write.starts_with(w))
            {
                continue;
            }
            let service = v["service"].as_str().unwrap_or("").to_string();
            let second: String = v["at"].as_str().unwrap_or("").chars().take(19).collect();
            figures.write_attempts += 1;
            figures.conflicts += u64::from(write.starts_with("conflict"));
            by_second
                .entry((service.clone(), second))
                .or_default()
                .insert(*slot);
            by_service.entry(service).or_default().insert(*slot);
        }
    }
    figures.same_second += by_second.values().filter(|s| s.len() > 1).count() as u64;
    figures.shared_services += by_service.values().filter(|s| s.len() > 1).count() as u64;
}

/// The flags that turn fan-out on for one process.
fn fanout_flags(evaluations: &str, emulator: &str) -> Vec<String> {
    [
        "--evaluations-topic",
        evaluations,
        "--fanout-threshold",
        "0",
        "--pubsub-emulator-host",
        emulator,
        // A key all processes share: evaluations decide on the sealed reads their ticks carry.
        "--evaluation-key",
        "chaos evaluation key, 32 bytes or more",
        // One JSON object a line: the decision records are read back from the logs.
        "--log-format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs fan-out seed `seed` with `processes` processes over `services` services, through the
/// emulator at `emulator`.
pub async fn run_seed(
    seed: u64,
    processes: usize,
    services: usize,
    emulator: String,
) -> (SeedReport, FanoutFigures) {
    let started = Instant::now();
    let plan = draw(seed, services);
    let label = format!("fan{seed}");
    let mut report = SeedReport {
        label: label.clone(),
        platform: Platform::CloudRun,
        process: true,
        ..SeedReport::default()
    };
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x00fa_20a7);
    let world = real_clock_world(Platform::CloudRun, &plan, seed, None, "").await;

    let front = Front::new(seed, processes);
    let front_url = serve_front(front.clone()).await;
    let suffix = format!("{}-{seed}", std::process::id());
    let (publishers, evaluations) = topics(&emulator, &suffix, &front_url).await;
    let flags = fanout_flags(&evaluations, &emulator);
    let mut labels: Vec<(usize, String)> = Vec::new();
    let mut procs: Vec<Option<Proc>> = Vec::new();
    for slot in 0..processes {
        let l = format!("{label}-{slot}-0");
        let p = spawn(&world, &l, &flags).await;
        front.set_live(slot, Some(p.process.base.clone()));
        procs.push(Some(p));
        labels.push((slot, l));
    }
    let mut dead_until: Vec<Option<Instant>> = vec![None; processes];

    let mut events = schedule(&plan);
    let mut facts: BTreeMap<String, Facts> = BTreeMap::new();
    let mut published: Vec<(String, String)> = Vec::new();
    let begin = Instant::now();
    let horizon = begin + UNIT * plan.horizon;
    let mut next_tick = begin;
    let (mut generation, mut ticks) = (0, 0);
    loop {
        let now = Timestamp::now();
        while events
            .last()
            .is_some_and(|(at, _)| begin + *at <= Instant::now())
        {
            let (_, event) = events.pop().expect("an event");
            let (topic, msg, what) = match event {
                Event::Deploy { service, revision } => {
                    let (s, r) = (
                        &plan.services[service],
                        &plan.services[service].revisions[revision],
                    );
                    // Cloud Run always takes a deploy (only a URL map refuses one).
                    assert!(world.deploy(&s.name, r), "{} deployed", r.name);
                    let f = facts.entry(s.name.clone()).or_default();
                    f.deployed_at.insert(r.name.clone(), now);
                    let build_id = format!("b-{label}-{}", r.name);
                    let (data, attrs) = world.build(&build_id, &s.name, &r.name, now);
                    let msg = Message::new().set_data(data).set_attributes(attrs);
                    ("builds", msg, format!("build of {}", r.name))
                }
                Event::TurnsBad { service, revision } => {
                    let (s, r) = (
                        &plan.services[service],
                        &plan.services[service].revisions[revision],
                    );
                    if let Health::TurnsBad { error_ratio, .. } = r.health {
                        let bad = RevisionProfile::healthy().with_error_ratio(error_ratio);
                        world.set_profile(&s.name, &r.name, bad);
                    }
                    let f = facts.entry(s.name.clone()).or_default();
                    f.turned_bad_at.insert(r.name.clone(), now);
                    continue;
                }
                Event::Alert { service, alert } => {
                    let (s, a) = (
                        &plan.services[service],
                        &plan.services[service].alerts[alert],
                    );
                    if a.open {
                        facts
                            .entry(s.name.clone())
                            .or_default()
                            .open_incidents
                            .push(now);
                    }
                    let state = if a.open { "open" } else { "closed" };
                    let incident = world.incident(&s.name, &a.revision, state, now);
                    let data = serde_json::to_vec(&incident).expect("an incident");
                    (
                        "alerts",
                        Message::new().set_data(data),
                        format!("{state} incident on {}", a.revision),
                    )
                }
            };
            match publishers[topic].publish(msg).await {
                Ok(id) => published.push((id, what)),
                Err(e) => panic!("publishing {what} to the emulator: {e}"),
            }
        }
        if Instant::now() >= next_tick {
            let attrs = [("source", "scheduler")];
            let tick = Message::new()
                .set_data(br#"{"kind":"tick"}"#.to_vec())
                .set_attributes(attrs);
            publishers["ticks"]
                .publish(tick)
                .await
                .expect("publishing a tick");
            ticks += 1;
            next_tick = Instant::now() + TICK_EVERY;
        }
        // Kill -9 now and then, while deliveries are in flight.
        if rng.u32(0..100) < 3 {
            let slot = rng.usize(0..processes);
            if dead_until[slot].is_none() {
                front.set_live(slot, None);
                tokio::time::sleep(Duration::from_micros(rng.u64(0..30_000))).await;
                drop(procs[slot].take());
                report.sigkills += 1;
                dead_until[slot] = Some(Instant::now() + Duration::from_millis(rng.u64(300..1500)));
            }
        }
        for slot in 0..processes {
            if dead_until[slot].is_some_and(|t| t <= Instant::now()) {
                generation += 1;
                let l = format!("{label}-{slot}-{generation}");
                let p = spawn(&world, &l, &flags).await;
                front.set_live(slot, Some(p.process.base.clone()));
                procs[slot] = Some(p);
                labels.push((slot, l));
                dead_until[slot] = None;
            }
        }
        if events.is_empty() && Instant::now() >= horizon {
            let ended = judge::all_ended(&world, &plan).await;
            if ended || Instant::now() >= horizon + BOUND {
                break;
            }
        }
        tokio::time::sleep(ROUND).await;
    }
    // Let what is in flight finish before judging, so the history is complete.
    let settle = Instant::now();
    while front.in_flight.load(Ordering::SeqCst) > 0 && settle.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for slot in 0..processes {
        front.set_live(slot, None);
    }
    drop(procs);
    report.scenario_minutes = (begin.elapsed().as_secs() / 60) as u32;
    judge::judge(&world, &plan, &facts, &mut report).await;
    let acked = front.acked.lock().unwrap().clone();
    let lost: Vec<String> = published
        .iter()
        .filter(|(id, _)| !acked.contains(id))
        .map(|(id, what)| format!("{what} ({id})"))
        .collect();
    if !lost.is_empty() {
        let _ = writeln!(report.evidence, "  never acked: {}", lost.join(", "));
    }
    let mut figures = front.figures.lock().unwrap().clone();
    figures.processes = processes;
    read_logs(&labels, &mut figures);
    let d = &mut report.delivery;
    d.published = published.len() as u64 + ticks + figures.fanned_out;
    d.deliveries = figures.pushed.values().sum::<u64>() + figures.duplicates;
    d.duplicates = figures.duplicates;
    d.nacks = figures.nacks;
    d.unreachable = figures.unreachable;
    d.redeliveries = figures.redeliveries;
    report.elapsed = started.elapsed();
    (report, figures)
}

/// The fan-out lines of the figures.
fn fanout_lines(f: &FanoutFigures) -> String {
    let pushed: Vec<String> = f.pushed.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<30} {v}");
    };
    line("processes per seed", f.processes.to_string());
    line("pushes by the emulator", pushed.join(", "));
    line("evaluations fanned out", f.fanned_out.to_string());
    line(
        "front: copies / held back",
        format!(
            "{} duplicated, {} held back (reordered)",
            f.duplicates, f.held_back
        ),
    );
    line("redelivered by the emulator", f.redeliveries.to_string());
    line(
        "write attempts (logged)",
        format!(
            "{} ({} answered: someone wrote first)",
            f.write_attempts, f.conflicts
        ),
    );
    line(
        "two processes, one service",
        format!(
            "{} times within the same second; {} services written by several processes",
            f.same_second, f.shared_services
        ),
    );
    out
}

/// Runs the fan-out seeds the environment asks for and fails on any violation.
#[test]
fn chaos_fanout() {
    let first = env_u64("CHAOS_FIRST_SEED").unwrap_or(1);
    let seeds: Vec<u64> = match env_u64("CHAOS_FANOUT_SEED") {
        Some(k) => vec![k],
        None => (first..first + env_u64("CHAOS_FANOUT_SEEDS").unwrap_or(0)).collect(),
    };
    if seeds.is_empty() {
        eprintln!("chaos_fanout: no seeds asked for (CHAOS_FANOUT_SEEDS=N to run some)");
        return;
    }
    let processes = env_u64("CHAOS_FANOUT_PROCESSES").unwrap_or(3).max(2) as usize;
    let services = env_u64("CHAOS_FANOUT_SERVICES").unwrap_or(30).max(1) as usize;
    let parallel = env_u64("CHAOS_FANOUT_PARALLEL").unwrap_or(2).max(1) as usize;
    let runtime = crate::runtime();
    let started = Instant::now();
    let runs = runtime.block_on(async {
        let emulator = Emulator::for_test(PROJECT).await?;
        let runs = futures::stream::iter(seeds.clone())
            .map(|s| run_seed(s, processes, services, emulator.host.clone()))
            .buffer_unordered(parallel)
            .collect::<Vec<_>>()
            .await;
        drop(emulator);
        Some(runs)
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    let Some(runs) = runs else {
        return;
    };
    let wall = started.elapsed();
    let mut fan = FanoutFigures::default();
    for (_, f) in &runs {
        fan.add(f);
    }
    let reports: Vec<&SeedReport> = runs.iter().map(|(r, _)| r).collect();
    let mut text = String::from("chaos figures, fan-out seeds\n");
    text.push_str(&crate::figures(&reports, wall));
    text.push_str(&fanout_lines(&fan));
    // A 409 the fake's concurrent writer did not cause is a stale etag: another process wrote
    // the service since this one read it (or, more rarely, a retry of a write whose answer was
    // cut after it landed).
    let races: u64 = reports
        .iter()
        .map(|r| r.conflicts_answered.saturating_sub(r.faults.conflicts))
        .sum();
    let _ = writeln!(text, "  {:<30} {races}", "409s on a stale etag");
    let mut failures = String::new();
    let mut per_seed = Vec::new();
    for (r, f) in &runs {
        per_seed.push(format!(
            "  seed {:>6}: {} services, {} deliveries, {} faults, {} kills, {} same-second writes, {} violations, {:.1} s",
            r.label,
            r.services,
            r.delivery.deliveries,
            r.faults.total(),
            r.sigkills,
            f.same_second,
            r.violations.len(),
            r.elapsed.as_secs_f64()
        ));
        if !r.violations.is_empty() {
            let seed = r.label.trim_start_matches("fan");
            let _ = writeln!(
                failures,
                "\nfan-out seed {seed} FAILED (re-run it alone: CHAOS_FANOUT_SEED={seed} CHAOS_FANOUT_PROCESSES={processes} CHAOS_FANOUT_SERVICES={services} cargo test --test chaos fanout:: -- --nocapture; logs in target/chaos-logs/{}-*.log):",
                r.label
            );
            for v in &r.violations {
                let _ = writeln!(failures, "  - {v}");
            }
            failures.push_str(&r.evidence);
        }
    }
    let violations: usize = reports.iter().map(|r| r.violations.len()).sum();
    crate::conclude_run(
        "chaos-fanout-figures.txt",
        &text,
        &per_seed,
        &failures,
        violations,
    );
}
