//! The chaos suite of issue 4: seeded, repeatable runs of several cutover instances against
//! fakes that misbehave in every way the Google APIs and Pub/Sub are allowed to, with the
//! rollout invariants checked on the fake's full traffic history after each seed.
//!
//! Per seed (see `plan.rs`), for several services at once: two cutover instances share one
//! [`FakeGcp`]; every push is delivered 1–5 times and out of order
//! (`pubsub.rs`); 20 % of API calls fail transiently and 10 % of writes conflict with a
//! concurrent writer that changes labels or annotations (`cutover_fakes::Chaos`); 2 % of answers
//! are garbled (truncated JSON, an HTML 404); 3 % of Run and URL-map writes are answered 504
//! and land 1–6 s later (minutes of the manual clock: after cutover gave up on them);
//! operations fail or hang, Monitoring answers are partial or empty; instances are killed at
//! random points
//! and restarted; candidates are healthy or regressed at random. Two kinds of seeds:
//! * in-process (`inproc.rs`): instances run in their own tokio runtimes on a manual clock;
//!   a kill shuts an instance's runtime down mid-request (every task dropped at its next await,
//!   like a process dying) or aborts a reconcile it is running;
//! * process (`process.rs`): the real `cutover serve` binary on the system clock, killed with
//!   SIGKILL mid-run.
//!
//! Every seed runs on each platform (issue 15, `platform.rs`): its services as Cloud Run
//! services, as App Engine services (revisions are versions) and as URL maps (revisions are
//! backend services), the latter two with their records in one Firestore emulator for the whole
//! run (a collection per seed; `CUTOVER_REQUIRE_FIRESTORE_EMULATOR=1` makes a missing emulator a
//! failure, otherwise those platforms are left out with a note).
//!
//! Then `invariants.rs` judges each service's history. The figures (seeds, deliveries,
//! duplicates, faults, kills, violations), over all seeds and per platform, are printed to
//! stderr and written to `target/chaos-figures.txt`.
//!
//! Knobs (environment): `CHAOS_SEEDS=N` in-process seeds per platform (default 4),
//! `CHAOS_SEED=k` runs seed `k` alone, `CHAOS_FIRST_SEED` (default 1), `CHAOS_PROCESS_SEEDS=M`
//! process seeds per platform (default 0), `CHAOS_PROCESS_SEED=k` runs process seed `k` alone,
//! `CHAOS_PLATFORMS` (comma separated: `cloud-run`, `app-engine`, `load-balancer`; default all),
//! `CHAOS_PARALLEL` seeds at once (default 6), `CHAOS_GARBLED` the ratio of garbled answers
//! (default 0.02), `CHAOS_TRACE` a tracing filter (`info`: every decision) for cutover's log,
//! written to `target/trace.log`.
//!
//! `fanout.rs` (issue 16) runs seeds with fan-out on and several processes of the binary behind
//! the real Pub/Sub emulator (`CHAOS_FANOUT_SEEDS=N`, test `fanout::chaos_fanout`).
//!
//! `faults.rs` holds deterministic tests of single faults against one cutover instance.

#[path = "../support/mod.rs"]
mod support;

mod fanout;
mod faults;
mod inproc;
mod invariants;
mod judge;
mod plan;
mod platform;
mod process;
mod pubsub;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cutover::config::ServeArgs;
use cutover::target::Platform;
use cutover_fakes::firestore_emulator::FirestoreEmulator;
use cutover_fakes::{Chaos, FakeGcp, FaultCounts};
use futures::StreamExt;

use invariants::Violation;
use pubsub::DeliveryStats;

pub const PROJECT: &str = "chaos-project";
pub const REGION: &str = "europe-west1";
/// The policy's steps (cutover's default).
pub const STEPS: &[u8] = &[10, 50, 100];
/// Steps judged 3 minutes after they start on a manual clock (2-minute soak, 1-minute delay),
/// on at least 50 requests.
pub const QUICK_STEPS: &[&str] = &[
    "--step-interval",
    "2m",
    "--metrics-delay",
    "1m",
    "--min-requests",
    "50",
];

/// cutover settings pointing at `fake`, with `extra` flags appended (later flags win).
pub fn serve_args(fake: &FakeGcp, extra: &[String]) -> ServeArgs {
    support::serve_args(fake, PROJECT, REGION, extra)
}

/// The flags that point cutover at `fake` without credentials.
pub fn cli_flags(fake: &FakeGcp) -> Vec<String> {
    cutover_fakes::flags::flags(fake, PROJECT, REGION)
}

/// The fake's misbehaviour for `seed`: issue 4's mix (`Chaos::new`) plus garbled answers
/// (truncated JSON, an HTML 404 from a front end) for `CHAOS_GARBLED` of the calls (default 2 %;
/// `0` turns them off).
pub fn chaos_mix(seed: u64) -> Chaos {
    let mut chaos = Chaos::new(seed);
    // Writes that land after cutover gave up on them (Run and URL maps, whose writes are
    // guarded): on the manual clock, minutes later, past a recorded platform's intent lease.
    chaos.late_write_ratio = 0.03;
    chaos.garbled_ratio = match std::env::var("CHAOS_GARBLED") {
        Ok(v) => v.trim().parse().expect("CHAOS_GARBLED is a ratio"),
        Err(_) => 0.02,
    };
    chaos
}

/// What one seed did and found.
#[derive(Debug, Default)]
pub struct SeedReport {
    pub label: String,
    pub platform: Platform,
    /// A process seed (the real binary, kill -9).
    pub process: bool,
    pub services: usize,
    pub rollouts: usize,
    pub delivery: DeliveryStats,
    pub faults: FaultCounts,
    pub writes: u64,
    pub conflicts_answered: u64,
    pub aborted_reconciles: u64,
    pub runtime_kills: u64,
    pub sigkills: u64,
    /// Kills after which a record held an unsettled intent (split platforms, in-process seeds:
    /// nothing else is in flight when it is looked at).
    pub intent_kills: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub violations: Vec<Violation>,
    /// Plan, histories and records of the services with a violation.
    pub evidence: String,
    pub elapsed: Duration,
    pub scenario_minutes: u32,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// Where the figures go: `$CARGO_TARGET_DIR` or the package's `target/`.
fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/target").into())
}

/// The table of figures over all seeds.
fn figures<R: std::borrow::Borrow<SeedReport>>(reports: &[R], wall: Duration) -> String {
    let mut d = DeliveryStats::default();
    let mut f = FaultCounts::default();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let (mut writes, mut conflicts, mut aborts, mut rt_kills, mut sigkills) = (0, 0, 0, 0, 0);
    let mut intent_kills = 0;
    let (mut services, mut rollouts, mut minutes) = (0, 0, 0u64);
    let mut violations = 0;
    for r in reports.iter().map(|r| r.borrow()) {
        d.add(&r.delivery);
        f.add(&r.faults);
        writes += r.writes;
        conflicts += r.conflicts_answered;
        aborts += r.aborted_reconciles;
        rt_kills += r.runtime_kills;
        sigkills += r.sigkills;
        intent_kills += r.intent_kills;
        services += r.services;
        rollouts += r.rollouts;
        minutes += u64::from(r.scenario_minutes);
        violations += r.violations.len();
        for (k, n) in &r.outcomes {
            *outcomes.entry(k.clone()).or_insert(0) += n;
        }
    }
    let process = reports.iter().filter(|r| r.borrow().process).count();
    let statuses: Vec<String> = f
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    let outcomes: Vec<String> = outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<30} {v}");
    };
    line(
        "seeds",
        format!(
            "{} ({} in-process, {} with the real binary and kill -9)",
            reports.len(),
            reports.len() - process,
            process
        ),
    );
    line("services / rollouts", format!("{services} / {rollouts}"));
    line("scenario minutes", minutes.to_string());
    line("messages published", d.published.to_string());
    line("deliveries", d.deliveries.to_string());
    line("duplicates", d.duplicates.to_string());
    line(
        "nacks / redeliveries",
        format!(
            "{} ({} unreachable) / {}",
            d.nacks, d.unreachable, d.redeliveries
        ),
    );
    line(
        "faults injected",
        format!(
            "{} (statuses {}; cut connections {}; truncated JSON {}; HTML 404 {}; conflicts {}; failed operations {}; stuck operations {}; late writes {}; executionErrors {}; empty pages {}; partial series {})",
            f.total(),
            statuses.join(", "),
            f.cut_connections,
            f.truncated_json,
            f.html_404,
            f.conflicts,
            f.failed_operations,
            f.stuck_operations,
            f.late_writes,
            f.execution_errors,
            f.empty_pages,
            f.partial_series
        ),
    );
    line("calls with injected latency", f.delayed_calls.to_string());
    line("writes accepted", writes.to_string());
    line("409s answered to cutover", conflicts.to_string());
    line(
        "kills",
        format!(
            "{} (instance runtimes killed {rt_kills}, reconciles aborted {aborts}, kill -9 {sigkills})",
            rt_kills + aborts + sigkills
        ),
    );
    line(
        "kills inside the intent window",
        format!("{intent_kills} (an unsettled intent left in a record)"),
    );
    line("outcomes", outcomes.join(", "));
    line("invariant violations", violations.to_string());
    line("wall time", format!("{:.1} s", wall.as_secs_f64()));
    out
}

/// The runtime a run of seeds drives its fakes, emulators and deliveries on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// With `CHAOS_TRACE` set (a tracing filter), cutover's log, every decision with its reason at
/// `info`, goes to `target/trace.log`: how a failed seed's path is read.
fn trace_to_file() {
    let Ok(filter) = std::env::var("CHAOS_TRACE") else {
        return;
    };
    let dir = target_dir();
    let _ = std::fs::create_dir_all(&dir);
    let file = std::fs::File::create(dir.join("trace.log")).expect("target/trace.log");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .try_init();
}

/// Runs the seeds the environment asks for and fails on any violation.
#[test]
fn chaos() {
    trace_to_file();
    let first = env_u64("CHAOS_FIRST_SEED").unwrap_or(1);
    let (seeds, process_seeds): (Vec<u64>, Vec<u64>) = match env_u64("CHAOS_SEED") {
        Some(k) => (vec![k], Vec::new()),
        None => {
            let n = env_u64("CHAOS_SEEDS").unwrap_or(4);
            let m = env_u64("CHAOS_PROCESS_SEEDS").unwrap_or(0);
            ((first..first + n).collect(), (first..first + m).collect())
        }
    };
    let process_only = env_u64("CHAOS_PROCESS_SEED");
    let (seeds, process_seeds) = match process_only {
        Some(k) => (Vec::new(), vec![k]),
        None => (seeds, process_seeds),
    };
    let parallel = env_u64("CHAOS_PARALLEL").unwrap_or(6).max(1) as usize;
    let mut platforms = platform::selected();
    let runtime = runtime();
    let started = Instant::now();
    let reports: Vec<SeedReport> = runtime.block_on(async {
        // One Firestore emulator for the whole run (a collection per seed), for the platforms
        // whose records live there; without one they are left out (or fail, in CI).
        let emulator = match platforms.iter().any(|p| !p.is_regional()) {
            true => FirestoreEmulator::for_test().await,
            false => None,
        };
        if emulator.is_none() {
            platforms.retain(|p| p.is_regional());
        }
        let host = emulator.as_ref().map(|e| e.host.clone());
        let runs = |seeds: &[u64]| {
            let mut out = Vec::new();
            for p in &platforms {
                out.extend(seeds.iter().map(|s| (*p, *s, host.clone())));
            }
            out
        };
        // Process seeds run beside the in-process ones: they spend most of their time waiting
        // for the wall clock to cross minute boundaries.
        let process = futures::stream::iter(runs(&process_seeds))
            .map(|(p, s, h)| process::run_seed(p, s, h))
            .buffer_unordered(3)
            .collect::<Vec<_>>();
        let inproc = futures::stream::iter(runs(&seeds))
            .map(|(p, s, h)| inproc::run_seed(p, s, h))
            .buffer_unordered(parallel)
            .collect::<Vec<_>>();
        let (mut a, b) = tokio::join!(inproc, process);
        a.extend(b);
        drop(emulator);
        a
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    let wall = started.elapsed();

    let mut text = String::from("chaos figures\n");
    text.push_str(&figures(&reports, wall));
    for p in &platforms {
        let of: Vec<&SeedReport> = reports.iter().filter(|r| r.platform == *p).collect();
        let busy: Duration = of.iter().map(|r| r.elapsed).sum();
        let _ = writeln!(text, "{p} (seed time summed {:.1} s):", busy.as_secs_f64());
        text.push_str(&figures(&of, wall));
    }
    let mut failures = String::new();
    for r in &reports {
        if !r.violations.is_empty() {
            let _ = writeln!(failures, "\nseed {} FAILED:", r.label);
            for v in &r.violations {
                let _ = writeln!(failures, "  - {v}");
            }
            failures.push_str(&r.evidence);
        }
    }
    let per_seed: Vec<String> = reports
        .iter()
        .map(|r| {
            format!(
                "  seed {:>5}: {} services, {} deliveries, {} faults, {} kills, {} violations, {:.1} s",
                r.label,
                r.services,
                r.delivery.deliveries,
                r.faults.total(),
                r.runtime_kills + r.aborted_reconciles + r.sigkills,
                r.violations.len(),
                r.elapsed.as_secs_f64()
            )
        })
        .collect();
    let violations: usize = reports.iter().map(|r| r.violations.len()).sum();
    conclude_run("chaos-figures.txt", &text, &per_seed, &failures, violations);
}

/// Writes the figures, a line per seed and the failures to `target/FILE`, prints the figures
/// (and any failure) to stderr, and fails the test on any violation.
pub fn conclude_run(
    file: &str,
    text: &str,
    per_seed: &[String],
    failures: &str,
    violations: usize,
) {
    let full = format!("{text}\nper seed:\n{}\n{failures}", per_seed.join("\n"));
    let dir = target_dir();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(file);
    if let Err(e) = std::fs::write(&path, &full) {
        eprintln!("could not write {}: {e}", path.display());
    }
    eprintln!("{text}(per seed and any failure: {})", path.display());
    if !failures.is_empty() {
        eprintln!("{failures}");
    }
    assert_eq!(
        violations,
        0,
        "invariant violations; see {}",
        path.display()
    );
}
