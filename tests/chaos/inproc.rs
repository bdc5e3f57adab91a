//! In-process seeds: two cutover instances, each in its own tokio runtime, against one fake on
//! a manual clock that moves a minute per round.
//!
//! Each round publishes what the plan schedules (deploys and their build notifications,
//! incidents, the minute's tick), delivers everything due, all at once, to random instances,
//! and sometimes kills: an instance's runtime is shut down while its requests are in flight
//! (every task is dropped at its next await, sockets close: what a crash looks like from
//! outside) and a fresh instance takes its place, or an instance's reconcile of a service is
//! aborted at a random moment. The run ends when every service's rollout has ended, or fails
//! the "ends within a bound" invariant when it has not after `BOUND_MINUTES`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::clock::Clock;
use cutover::decision::Trigger;
use cutover::server::{self, App};
use cutover::target::Platform;
use cutover_fakes::pusher::Pusher;
use cutover_fakes::{ConcurrentChange, FakeGcp, RevisionProfile};
use jiff::SignedDuration;

use crate::judge::{self, Facts};
use crate::plan::{Health, Plan};
use crate::platform::World;
use crate::pubsub::{Message, Publisher, Subscription};
use crate::{PROJECT, SeedReport, serve_args};

/// How long after the last scheduled event every rollout must have ended (scenario minutes):
/// three steps of 2 + 1 minutes, plus holds, conflicts, redeliveries, up to a 30-minute hold.
const BOUND_MINUTES: u32 = 90;

fn flags() -> Vec<String> {
    crate::QUICK_STEPS
        .iter()
        .chain(&["--max-hold", "30m", "--event-deadline", "4s"])
        .map(|s| s.to_string())
        .collect()
}

pub use crate::support::t0;

/// One cutover instance in its own runtime.
pub struct Instance {
    rt: Option<tokio::runtime::Runtime>,
    pub app: Arc<App>,
    pub push: Arc<Pusher>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Instance {
    pub async fn start(world: &World, clock: &Clock) -> Instance {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("an instance runtime");
        let mut extra = flags();
        extra.extend(world.flags());
        let args = serve_args(&world.fake, &extra);
        let clock = clock.clone();
        let (app, addr) = rt
            .spawn(async move {
                let app = server::build(&args, clock).await.expect("cutover starts");
                let (addr, _server) = crate::support::serve(&app).await;
                (app, addr)
            })
            .await
            .expect("the instance started");
        Instance {
            rt: Some(rt),
            app,
            push: Arc::new(Pusher::new(&format!("http://{addr}"), PROJECT)),
        }
    }
}

/// Sends `msg` to `push`; `None` when nobody answered.
pub async fn deliver(push: Arc<Pusher>, msg: Arc<Message>) -> (Arc<Message>, Option<u16>) {
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        push.post_raw(msg.path, msg.body.clone()),
    )
    .await;
    let status = match answer {
        Ok(Ok(p)) => Some(p.status),
        _ => None,
    };
    (msg, status)
}

/// A kill planned for this round.
enum Kill {
    /// Shut instance `slot`'s runtime down after `after`, while the round's deliveries run.
    Runtime { slot: usize, after: Duration },
    /// Make instance `slot` reconcile (or tick) directly and abort that after `after`.
    Abort {
        slot: usize,
        service: Option<String>,
        after: Duration,
    },
}

/// Runs in-process seed `seed` on `platform`; records of a split platform go to a collection of
/// their own in the Firestore emulator at `firestore`.
pub async fn run_seed(platform: Platform, seed: u64, firestore: Option<String>) -> SeedReport {
    let started = Instant::now();
    let mut plan = Plan::draw(seed, 2..=4, 10);
    let label = crate::platform::label(platform, &seed.to_string());
    let mut report = SeedReport {
        label: label.clone(),
        platform,
        ..SeedReport::default()
    };
    // The same plan on every platform; kills and deliveries drawn apart per platform.
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x00de_11ce ^ ((platform as u64) << 40));
    let clock = Clock::manual(t0());
    let fake = FakeGcp::start(crate::support::fake_clock(&clock)).await;
    let collection = format!("chaos-{label}-{}", std::process::id());
    let world = World::new(platform, fake.clone(), firestore.as_deref(), &collection);
    world.add_services(&plan.services, 1.0);
    fake.faults()
        .ingest_lag(SignedDuration::from_mins(1))
        .concurrent_change(ConcurrentChange::Either)
        .chaos(Some(crate::chaos_mix(seed)));
    let mut instances = vec![
        Instance::start(&world, &clock).await,
        Instance::start(&world, &clock).await,
    ];
    let mut publisher = Publisher::default();
    let mut sub = Subscription::new(3 * 60_000, 60_000);
    let mut published: Vec<Arc<Message>> = Vec::new();
    let mut facts: BTreeMap<String, Facts> = BTreeMap::new();

    let mut minute = 0u32;
    loop {
        if minute > 0 {
            clock.advance(SignedDuration::from_mins(1));
        }
        let now = clock.now();
        let now_ms = now.as_millisecond();
        let mut refused = Vec::new();
        for s in &plan.services {
            let f = facts.entry(s.name.clone()).or_default();
            for r in s.revisions.iter().filter(|r| r.at == minute) {
                if !world.deploy(&s.name, r) {
                    refused.push((s.name.clone(), r.name.clone()));
                    continue;
                }
                f.deployed_at.insert(r.name.clone(), now);
                let m = sub.publish(
                    publisher.build(&world, &s.name, &r.name, now),
                    now_ms,
                    &mut rng,
                );
                published.push(m);
            }
            for r in &s.revisions {
                if let Health::TurnsBad { after, error_ratio } = r.health
                    && r.at + after == minute
                {
                    let bad = RevisionProfile::healthy().with_error_ratio(error_ratio);
                    world.set_profile(&s.name, &r.name, bad);
                    f.turned_bad_at.insert(r.name.clone(), now);
                }
            }
            for a in s.alerts.iter().filter(|a| a.at == minute) {
                if a.open {
                    f.open_incidents.push(now);
                }
                let m = sub.publish(
                    publisher.alert(&world, &s.name, &a.revision, a.open, now),
                    now_ms,
                    &mut rng,
                );
                published.push(m);
            }
        }
        for (service, revision) in refused {
            plan.withdraw(&service, &revision);
            *report
                .outcomes
                .entry("release refused (no idle backend)".into())
                .or_insert(0) += 1;
        }
        sub.publish(publisher.tick(now), now_ms, &mut rng);

        let kill = match rng.u32(0..100) {
            0..=7 => Some(Kill::Runtime {
                slot: rng.usize(0..2),
                after: Duration::from_micros(rng.u64(0..25_000)),
            }),
            8..=22 => Some(Kill::Abort {
                slot: rng.usize(0..2),
                service: (rng.u8(0..4) != 0).then(|| {
                    plan.services[rng.usize(0..plan.services.len())]
                        .name
                        .clone()
                }),
                after: Duration::from_micros(rng.u64(0..12_000)),
            }),
            _ => None,
        };
        let due = sub.due(now_ms, &mut rng);
        let sends: Vec<_> = due
            .into_iter()
            .map(|m| deliver(instances[rng.usize(0..2)].push.clone(), m))
            .collect();
        let mut restart = None;
        let killer = match kill {
            Some(Kill::Runtime { slot, after }) => {
                restart = Some(slot);
                report.runtime_kills += 1;
                let doomed = instances[slot].rt.take();
                Some(tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    if let Some(rt) = doomed {
                        rt.shutdown_background();
                    }
                }))
            }
            Some(Kill::Abort {
                slot,
                service,
                after,
            }) => {
                report.aborted_reconciles += 1;
                let app = instances[slot].app.clone();
                let target = service.map(|name| world.target(&name));
                let work = async move {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
                    match target {
                        Some(target) => {
                            let trigger = Trigger::Build {
                                build_id: "chaos-direct".into(),
                            };
                            let _ = app.reconciler.reconcile(&target, trigger, deadline).await;
                        }
                        None => {
                            let _ = app
                                .reconciler
                                .tick(&app.project, &app.regions, deadline)
                                .await;
                        }
                    }
                };
                let handle = instances[slot].rt.as_ref().map(|rt| rt.spawn(work));
                Some(tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    if let Some(h) = handle {
                        h.abort();
                    }
                }))
            }
            None => None,
        };
        let answers = futures::future::join_all(sends).await;
        if let Some(k) = killer {
            let _ = k.await;
            // A kill inside the intent window leaves a record with an unsettled intent.
            report.intent_kills += world.open_intents(&plan.services).await;
        }
        for (msg, status) in answers {
            sub.answered(&msg, status, now_ms);
        }
        if let Some(slot) = restart {
            instances[slot] = Instance::start(&world, &clock).await;
        }

        if minute >= plan.horizon {
            let ended = judge::all_ended(&world, &plan).await;
            if ended || minute >= plan.horizon + BOUND_MINUTES {
                break;
            }
        }
        minute += 1;
    }
    drop(instances);
    report.scenario_minutes = minute;
    report.delivery = sub.stats.clone();
    judge::conclude(&world, &plan, &facts, &sub, &published, &mut report).await;
    report.elapsed = started.elapsed();
    report
}
