//! Process seeds: the real `cutover serve` binary, two processes sharing one fake on the system
//! clock, killed with SIGKILL at random moments (right after pushes were sent, so that most
//! kills land mid-request) and started again a moment later on a new port.
//!
//! Time is real here, so the policy is shortened (`--step-interval 2s --metrics-delay 0s`) and
//! the fake's metrics land at once; a step is still judged on whole Monitoring minutes, so a
//! rollout takes two to three minutes of wall time. The plan's minutes are read as 5-second
//! units, so deploys, supersedes and incidents all happen in the first minute or so.

use std::collections::BTreeMap;
use std::fs::File;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::target::Platform;
use cutover_fakes::pusher::Pusher;
use cutover_fakes::{ConcurrentChange, FakeGcp, RevisionProfile};
use jiff::{SignedDuration, Timestamp};

use crate::inproc::deliver;
use crate::judge::{self, Facts};
use crate::plan::{Health, Plan};
use crate::platform::World;
use crate::pubsub::{Message, Publisher, Subscription};
use crate::support::Process;
use crate::{PROJECT, SeedReport, cli_flags, target_dir};

/// One plan minute, in wall time.
const UNIT: Duration = Duration::from_secs(5);
/// How long after the last scheduled event every rollout must have ended.
const BOUND: Duration = Duration::from_secs(7 * 60);
/// How often the loop looks at the world.
const ROUND: Duration = Duration::from_millis(250);

/// One `cutover serve` process and the pusher that reaches it.
pub struct Proc {
    pub process: Process,
    pub push: Arc<Pusher>,
}

/// Starts `cutover serve` on `world` with the real-clock policy, `extra` flags last (they win),
/// logging to `target/chaos-logs/LABEL.log`; returns once it answers `/healthz`.
pub async fn spawn(world: &World, label: &str, extra: &[String]) -> Proc {
    let port = crate::support::free_port();
    let dir = target_dir().join("chaos-logs");
    let _ = std::fs::create_dir_all(&dir);
    let log = File::create(dir.join(format!("{label}.log"))).expect("a log file");
    let mut args = vec!["serve".to_string(), "--port".into(), port.to_string()];
    args.extend(cli_flags(&world.fake));
    args.extend(world.flags());
    args.extend(crate::support::REAL_CLOCK_TIMING.map(String::from));
    args.extend(
        [
            "--max-hold",
            "4m",
            // The bake on the same real-time scale: it ends well within the bound.
            "--bake",
            "20s",
            "--event-deadline",
            "5s",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    args.extend(extra.iter().cloned());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(&args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("a log file")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("cutover serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let process = Process {
        child: Some(child),
        base: base.clone(),
    };
    process.healthy(Duration::from_secs(20)).await;
    Proc {
        process,
        push: Arc::new(Pusher::new(&base, PROJECT)),
    }
}

/// A fake on the system clock holding `plan`'s services, with `seed`'s faults (1–20 ms of latency
/// per call) and metrics that land at once; records of a split platform in `collection` of the
/// Firestore emulator at `firestore`.
pub async fn real_clock_world(
    platform: Platform,
    plan: &Plan,
    seed: u64,
    firestore: Option<&str>,
    collection: &str,
) -> World {
    let fake = FakeGcp::start(cutover_fakes::FakeClock::System).await;
    let world = World::new(platform, fake.clone(), firestore, collection);
    // Enough requests that a few seconds at 10 % already make a judgeable minute.
    world.add_services(&plan.services, 8.0);
    let mut chaos = crate::chaos_mix(seed);
    chaos.latency = (Duration::from_millis(1), Duration::from_millis(20));
    fake.faults()
        .ingest_lag(SignedDuration::ZERO)
        .concurrent_change(ConcurrentChange::Either)
        .chaos(Some(chaos));
    world
}

/// Runs process seed `seed` on `platform` (records of a split platform in a collection of their
/// own in the Firestore emulator at `firestore`).
pub async fn run_seed(platform: Platform, seed: u64, firestore: Option<String>) -> SeedReport {
    let started = Instant::now();
    let mut plan = Plan::draw(seed.wrapping_add(50_000), 2..=3, 2);
    let label = crate::platform::label(platform, &format!("p{seed}"));
    let mut report = SeedReport {
        label: label.clone(),
        platform,
        process: true,
        ..SeedReport::default()
    };
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x0b1a_5e9d ^ ((platform as u64) << 40));
    let collection = format!("chaos-{label}-{}", std::process::id());
    let world = real_clock_world(platform, &plan, seed, firestore.as_deref(), &collection).await;
    let mut generation = 0;
    let mut procs = Vec::new();
    for slot in 0..2 {
        procs.push(spawn(&world, &format!("{label}-{slot}-{generation}"), &[]).await);
    }
    let mut dead_until: [Option<Instant>; 2] = [None, None];
    let mut publisher = Publisher::default();
    let mut sub = Subscription::new(3_000, 2_000);
    let mut published: Vec<Arc<Message>> = Vec::new();
    let mut facts: BTreeMap<String, Facts> = BTreeMap::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Arc<Message>, Option<u16>)>();
    let begin = Instant::now();
    let at = |units: u32| begin + UNIT * units;
    let horizon = at(plan.horizon);
    let mut done_events: std::collections::BTreeSet<String> = Default::default();
    let mut next_tick = begin;
    let mut in_flight = 0usize;

    loop {
        let now_i = Instant::now();
        let now: Timestamp = Timestamp::now();
        let now_ms = now.as_millisecond();
        let mut refused = Vec::new();
        for s in &plan.services {
            let f = facts.entry(s.name.clone()).or_default();
            for r in &s.revisions {
                if at(r.at) <= now_i && done_events.insert(format!("deploy {}", r.name)) {
                    if !world.deploy(&s.name, r) {
                        refused.push((s.name.clone(), r.name.clone()));
                        continue;
                    }
                    f.deployed_at.insert(r.name.clone(), now);
                    let m = publisher.build(&world, &s.name, &r.name, now);
                    published.push(sub.publish(m, now_ms, &mut rng));
                }
                if let Health::TurnsBad { after, error_ratio } = r.health
                    && begin + UNIT * r.at + UNIT * 2 * after <= now_i
                    && done_events.insert(format!("bad {}", r.name))
                {
                    let bad = RevisionProfile::healthy().with_error_ratio(error_ratio);
                    world.set_profile(&s.name, &r.name, bad);
                    f.turned_bad_at.insert(r.name.clone(), now);
                }
            }
            for (i, a) in s.alerts.iter().enumerate() {
                if at(a.at) <= now_i && done_events.insert(format!("alert {} {i}", s.name)) {
                    if a.open {
                        f.open_incidents.push(now);
                    }
                    let m = publisher.alert(&world, &s.name, &a.revision, a.open, now);
                    published.push(sub.publish(m, now_ms, &mut rng));
                }
            }
        }
        for (service, revision) in refused {
            plan.withdraw(&service, &revision);
            *report
                .outcomes
                .entry("release refused (no idle backend)".into())
                .or_insert(0) += 1;
        }
        if now_i >= next_tick {
            sub.publish(publisher.tick(now), now_ms, &mut rng);
            next_tick = now_i + Duration::from_millis(1500);
        }
        for msg in sub.due(now_ms, &mut rng) {
            let slot = rng.usize(0..2);
            let push = procs[slot].push.clone();
            let tx = tx.clone();
            in_flight += 1;
            tokio::spawn(async move {
                let answer = deliver(push, msg).await;
                let _ = tx.send(answer);
            });
        }
        // Kill -9 now and then, a moment after pushes went out.
        if rng.u32(0..100) < 3 {
            let slot = rng.usize(0..2);
            if dead_until[slot].is_none() {
                tokio::time::sleep(Duration::from_micros(rng.u64(0..30_000))).await;
                if let Some(child) = procs[slot].process.child.as_mut() {
                    let _ = child.kill();
                    let _ = child.wait();
                    report.sigkills += 1;
                }
                procs[slot].process.child = None;
                dead_until[slot] = Some(Instant::now() + Duration::from_millis(rng.u64(300..1500)));
            }
        }
        for slot in 0..2 {
            if dead_until[slot].is_some_and(|t| t <= Instant::now()) {
                generation += 1;
                procs[slot] = spawn(&world, &format!("{label}-{slot}-{generation}"), &[]).await;
                dead_until[slot] = None;
            }
        }
        while let Ok((msg, status)) = rx.try_recv() {
            in_flight -= 1;
            sub.answered(&msg, status, Timestamp::now().as_millisecond());
        }
        if Instant::now() >= horizon {
            let ended = judge::all_ended(&world, &plan).await;
            if ended || Instant::now() >= horizon + BOUND {
                break;
            }
        }
        tokio::time::sleep(ROUND).await;
    }
    // Let what is in flight finish before judging, so the history is complete.
    let settle = Instant::now();
    while in_flight > 0 && settle.elapsed() < Duration::from_secs(40) {
        if let Ok(Some((msg, status))) =
            tokio::time::timeout(Duration::from_secs(1), rx.recv()).await
        {
            in_flight -= 1;
            sub.answered(&msg, status, Timestamp::now().as_millisecond());
        }
    }
    drop(procs);
    report.scenario_minutes = (begin.elapsed().as_secs() / 60) as u32;
    report.delivery = sub.stats.clone();
    judge::conclude(&world, &plan, &facts, &sub, &published, &mut report).await;
    report.elapsed = started.elapsed();
    report
}
