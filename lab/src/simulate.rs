//! `lab simulate`: Monte Carlo of whole rollouts, on a simulated clock, through the same
//! decision code that runs in production ([`cutover::decision::decide`]).
//!
//! Each run is one rollout of one candidate on one service: the build starts it, a tick comes
//! every simulated minute, and metrics for a window are what the simulated revisions served in
//! it, visible `metrics_delay` late, exactly as the reconciler would gather them. Requests
//! arrive as a Poisson process split by the traffic allocation in force; each request answers
//! 5xx with its revision's probability and takes a log-normal latency (given p50 and p99),
//! counted into Cloud Run's `request_latencies` buckets (exponential, growth 1.4, scale 1 ms,
//! 64 finite buckets). A run ends when the rollout completes, rolls back or pauses.
//!
//! The same runs are made with cutover's judge and with the naive absolute-threshold judge
//! (the candidate's own point estimates against `CUTOVER_MAX_ERROR_RATE` and
//! `CUTOVER_MAX_P99_MS`), with the same seeds, and printed side by side. See
//! `docs/judgement.md` for the benchmark and how to read it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

use crate::cli::SimulateArgs;
use cutover::decision::evidence::{Histogram, RevisionStats, ServiceStats, Window};
use cutover::decision::record::RECORD_KEYS;
use cutover::decision::{
    Action, Decision, Evidence, JudgeKind, Kind, Need, Observed, Phase, Policy, Record, Trigger,
    decide,
};
use cutover::target::ServiceRef;
use cutover_fakes::traffic::{self, Behaviour};

const STABLE: &str = "sim-00001-stb";
const CANDIDATE: &str = "sim-00002-cnd";
/// A run that has not ended after this long is reported as unfinished (cannot happen with a
/// finite max hold, but a simulation must terminate).
const MAX_MINUTES: u32 = 24 * 60;

/// Why the simulation could not run.
#[derive(Debug, thiserror::Error)]
#[error("simulate: {0}")]
pub struct SimulateError(String);

/// How a candidate differs from the stable revision.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub name: String,
    /// Multiplies the baseline 5xx ratio.
    pub error_factor: f64,
    /// Multiplies the baseline median latency.
    pub p50_factor: f64,
    /// Multiplies the baseline p99 latency.
    pub p99_factor: f64,
}

impl Candidate {
    /// `healthy`, `5xx-xK`, `p99-xK` (median unchanged: a longer tail) or `latency-xK` (every
    /// request K times slower).
    pub fn parse(s: &str) -> Result<Candidate, String> {
        let s = s.trim();
        let bad = || {
            format!("{s:?} is not a candidate (healthy, 5xx-xK, p99-xK or latency-xK, e.g. 5xx-x2)")
        };
        if s == "healthy" {
            return Ok(Candidate {
                name: s.into(),
                error_factor: 1.0,
                p50_factor: 1.0,
                p99_factor: 1.0,
            });
        }
        let (kind, k) = s.split_once("-x").ok_or_else(bad)?;
        let k: f64 = k.parse().map_err(|_| bad())?;
        if !(k.is_finite() && k > 0.0) {
            return Err(bad());
        }
        let (e, m, t) = match kind {
            "5xx" => (k, 1.0, 1.0),
            "p99" => (1.0, 1.0, k),
            "latency" => (1.0, k, k),
            _ => return Err(bad()),
        };
        Ok(Candidate {
            name: s.into(),
            error_factor: e,
            p50_factor: m,
            p99_factor: t,
        })
    }

    fn is_healthy(&self) -> bool {
        self.error_factor <= 1.0 && self.p50_factor <= 1.0 && self.p99_factor <= 1.0
    }
}

/// One cell of the grid.
#[derive(Clone, Debug)]
pub struct Cell {
    pub rps: f64,
    pub candidate: Candidate,
}

/// What one revision served, minute by minute, as running totals.
struct Served {
    /// `requests[m]`, `errors[m]`, `counts[m]`: totals over minutes `0..m`.
    requests: Vec<u64>,
    errors: Vec<u64>,
    counts: Vec<Vec<u64>>,
}

impl Served {
    fn new(buckets: usize) -> Served {
        Served {
            requests: vec![0],
            errors: vec![0],
            counts: vec![vec![0; buckets]],
        }
    }

    /// One more minute at `lam` expected requests.
    fn minute(&mut self, rng: &mut fastrand::Rng, lam: f64, b: &Behaviour) {
        let mut counts = self.counts.last().expect("never empty").clone();
        let (n, e) = b.sample_into(rng, lam, &mut counts);
        self.requests
            .push(self.requests.last().expect("never empty") + n);
        self.errors
            .push(self.errors.last().expect("never empty") + e);
        self.counts.push(counts);
    }

    /// What was served in minutes `from..to`.
    fn between(&self, from: usize, to: usize, bounds: &[f64]) -> RevisionStats {
        let to = to.min(self.requests.len() - 1);
        let from = from.min(to);
        RevisionStats {
            requests: self.requests[to] - self.requests[from],
            errors_5xx: self.errors[to] - self.errors[from],
            latency: Histogram {
                bounds: bounds.to_vec(),
                counts: self.counts[to]
                    .iter()
                    .zip(&self.counts[from])
                    .map(|(a, b)| a - b)
                    .collect(),
            },
        }
    }
}

/// How one simulated rollout ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunResult {
    pub rolled_back: bool,
    /// The candidate's share when it was rolled back.
    pub rolled_back_at: Option<u8>,
    pub reached_100: bool,
    pub completed: bool,
    pub paused: bool,
    /// Simulated minutes from the build to the rollout's end.
    pub minutes: u32,
    /// Advances or completions on a window with fewer than the minimum requests.
    pub promoted_without_min_data: u32,
    /// The checks that failed when the rollout was rolled back.
    pub failed_checks: Vec<String>,
    /// The candidate's share when the rollout paused.
    pub paused_at: Option<u8>,
    /// How each comparison with stable read on the step whose pass gave the candidate 100%.
    pub promoted_on: Vec<String>,
}

fn start_time() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("valid timestamp")
}

fn observed(allocation: &BTreeMap<String, u8>, annotations: &BTreeMap<String, String>) -> Observed {
    Observed {
        service: ServiceRef::checked("sim", "sim-region", "sim").expect("valid ids"),
        latest_ready: Some(CANDIDATE.to_string()),
        allocation: allocation.clone(),
        ready: BTreeSet::from([STABLE.to_string(), CANDIDATE.to_string()]),
        tag_urls: BTreeMap::new(),
        annotations: annotations.clone(),
    }
}

/// One rollout of `cell`'s candidate under `policy` (whose overrides are `annotations`).
pub fn run_once(
    cell: &Cell,
    stable: &Behaviour,
    candidate: &Behaviour,
    policy: &Policy,
    overrides: &BTreeMap<String, String>,
    seed: u64,
) -> RunResult {
    let mut rng = fastrand::Rng::with_seed(seed);
    let bounds = traffic::bounds();
    let buckets = bounds.len() + 1;
    let t0 = start_time();
    let mut allocation = BTreeMap::from([(STABLE.to_string(), 100u8)]);
    let mut annotations = overrides.clone();
    let mut served_stable = Served::new(buckets);
    let mut served_candidate = Served::new(buckets);
    let mut result = RunResult::default();
    let effective = policy
        .with_overrides(overrides)
        .unwrap_or_else(|_| policy.clone());

    let apply = |d: &Decision,
                 allocation: &mut BTreeMap<String, u8>,
                 annotations: &mut BTreeMap<String, String>| {
        if let Some(w) = d.write() {
            if let Some(t) = &w.traffic {
                *allocation = t
                    .iter()
                    .filter(|t| t.percent > 0)
                    .map(|t| (t.revision.clone(), t.percent))
                    .collect();
            }
            annotations.retain(|k, _| !RECORD_KEYS.contains(&k.as_str()));
            annotations.extend(w.record.to_annotations());
        }
    };

    let d = decide(
        &observed(&allocation, &annotations),
        &Trigger::Build {
            build_id: "sim".into(),
        },
        &Evidence::None,
        policy,
        t0,
    );
    apply(&d, &mut allocation, &mut annotations);
    for minute in 1..=MAX_MINUTES {
        // The minute that just ended was served with the allocation in force during it.
        let share = |r: &str| f64::from(allocation.get(r).copied().unwrap_or(0)) / 100.0;
        let per_minute = cell.rps * 60.0;
        served_stable.minute(&mut rng, per_minute * share(STABLE), stable);
        served_candidate.minute(&mut rng, per_minute * share(CANDIDATE), candidate);

        let now = t0 + SignedDuration::from_mins(i64::from(minute));
        let obs = observed(&allocation, &annotations);
        let mut d = decide(&obs, &Trigger::Tick, &Evidence::None, policy, now);
        if let Action::Gather(Need::Metrics(w)) = &d.action {
            let stats = window_stats(*w, t0, &served_stable, &served_candidate, &bounds);
            d = decide(
                &obs,
                &Trigger::Tick,
                &Evidence::Metrics(Ok(stats)),
                policy,
                now,
            );
        }
        if matches!(d.kind(), Kind::Advance | Kind::Complete)
            && d.judgement
                .as_ref()
                .is_some_and(|j| j.requests < effective.min_requests)
        {
            result.promoted_without_min_data += 1;
        }
        let before = obs.allocation.get(CANDIDATE).copied().unwrap_or(0);
        apply(&d, &mut allocation, &mut annotations);
        if allocation.get(CANDIDATE) == Some(&100) {
            if !result.reached_100 && before < 100 {
                result.promoted_on = d
                    .judgement
                    .as_ref()
                    .and_then(|j| j.statistics.as_ref())
                    .map(|s| {
                        s.checks
                            .iter()
                            .filter_map(|c| c.reading.map(|r| format!("{} {r}", c.name)))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            result.reached_100 = true;
        }
        let record = Record::from_annotations(&annotations).ok().flatten();
        let Some(r) = record else { continue };
        let done = match r.phase {
            Phase::RolledBack => {
                result.rolled_back = true;
                result.failed_checks = d
                    .judgement
                    .as_ref()
                    .and_then(|j| j.statistics.as_ref())
                    .map(|s| {
                        s.checks
                            .iter()
                            .filter(|c| c.outcome == cutover::decision::judge::Outcome::Fail)
                            .map(|c| c.name.clone())
                            .collect()
                    })
                    .unwrap_or_else(|| vec!["absolute limit".to_string()]);
                result.rolled_back_at = d.record.as_ref().map(|_| {
                    // The share just before the rollback wrote 0%.
                    obs.allocation.get(CANDIDATE).copied().unwrap_or(0)
                });
                true
            }
            Phase::Completed => {
                result.completed = true;
                true
            }
            Phase::Paused(_) => {
                result.paused = true;
                result.paused_at = Some(r.percent);
                true
            }
            _ => false,
        };
        if done {
            result.minutes = minute;
            return result;
        }
    }
    result.minutes = MAX_MINUTES;
    result
}

/// Both revisions over `w`, as one Monitoring query grouped by revision would return them.
fn window_stats(
    w: Window,
    t0: Timestamp,
    stable: &Served,
    candidate: &Served,
    bounds: &[f64],
) -> ServiceStats {
    let minute_of = |t: Timestamp| (t.duration_since(t0).as_secs().max(0) / 60) as usize;
    let (from, to) = (minute_of(w.start), minute_of(w.end));
    let mut revisions = BTreeMap::new();
    for (name, served) in [(STABLE, stable), (CANDIDATE, candidate)] {
        let s = served.between(from, to, bounds);
        if s.requests > 0 {
            revisions.insert(name.to_string(), s);
        }
    }
    ServiceStats::from_totals(w, revisions)
}

/// The outcome rates of one cell under one judge.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub runs: u32,
    pub rolled_back: f64,
    pub rolled_back_before_50: f64,
    pub reached_100: f64,
    pub completed: f64,
    pub paused: f64,
    pub median_minutes: f64,
    pub promoted_without_min_data: u32,
    /// How often each check was among those that failed at a rollback.
    pub failed_checks: BTreeMap<String, u32>,
    /// Paused runs by the candidate's share when they paused.
    pub paused_at: BTreeMap<u8, u32>,
    /// For runs that reached 100%: how each comparison read on the promoting step.
    pub promoted_on: BTreeMap<String, u32>,
}

fn summarize(results: &[RunResult]) -> Summary {
    let mut failed_checks = BTreeMap::new();
    let mut paused_at = BTreeMap::new();
    let mut promoted_on = BTreeMap::new();
    for r in results {
        for c in &r.failed_checks {
            *failed_checks.entry(c.clone()).or_insert(0) += 1;
        }
        if let Some(p) = r.paused_at {
            *paused_at.entry(p).or_insert(0) += 1;
        }
        for c in &r.promoted_on {
            *promoted_on.entry(c.clone()).or_insert(0) += 1;
        }
    }
    let n = results.len().max(1) as f64;
    let share = |f: &dyn Fn(&RunResult) -> bool| results.iter().filter(|r| f(r)).count() as f64 / n;
    let mut minutes: Vec<u32> = results.iter().map(|r| r.minutes).collect();
    minutes.sort_unstable();
    let median = match minutes.len() {
        0 => 0.0,
        l if l % 2 == 1 => f64::from(minutes[l / 2]),
        l => (f64::from(minutes[l / 2 - 1]) + f64::from(minutes[l / 2])) / 2.0,
    };
    Summary {
        runs: results.len() as u32,
        rolled_back: share(&|r| r.rolled_back),
        rolled_back_before_50: share(&|r| r.rolled_back_at.is_some_and(|p| p < 50)),
        reached_100: share(&|r| r.reached_100),
        completed: share(&|r| r.completed),
        paused: share(&|r| r.paused),
        median_minutes: median,
        promoted_without_min_data: results.iter().map(|r| r.promoted_without_min_data).sum(),
        failed_checks,
        paused_at,
        promoted_on,
    }
}

/// The goals of issue 5 that apply to a cell, and whether cutover's judge met them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Goals {
    pub max_rolled_back: Option<f64>,
    pub min_rolled_back_before_50: Option<f64>,
    pub max_reached_100: Option<f64>,
}

impl Goals {
    pub fn of(cell: &Cell) -> Goals {
        let c = &cell.candidate;
        if c.is_healthy() {
            return Goals {
                max_rolled_back: Some(0.005),
                ..Goals::default()
            };
        }
        let latency = c.p99_factor.max(c.p50_factor);
        let detect = (c.error_factor >= 5.0 && cell.rps >= 10.0)
            || ((c.error_factor >= 2.0 || latency >= 1.5) && cell.rps >= 100.0);
        Goals {
            max_rolled_back: None,
            min_rolled_back_before_50: detect.then_some(0.99),
            max_reached_100: Some(0.01),
        }
    }

    /// Which goals `s` misses (empty: all met), with the zero-promotions-without-data goal.
    pub fn missed(&self, s: &Summary) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(m) = self.max_rolled_back
            && s.rolled_back > m
        {
            out.push(format!("rolled back {} > {}", pct(s.rolled_back), pct(m)));
        }
        if let Some(m) = self.min_rolled_back_before_50
            && s.rolled_back_before_50 < m
        {
            out.push(format!(
                "rolled back before 50% {} < {}",
                pct(s.rolled_back_before_50),
                pct(m)
            ));
        }
        if let Some(m) = self.max_reached_100
            && s.reached_100 > m
        {
            out.push(format!("reached 100% {} > {}", pct(s.reached_100), pct(m)));
        }
        if s.promoted_without_min_data > 0 {
            out.push(format!(
                "{} promotions without the minimum data",
                s.promoted_without_min_data
            ));
        }
        out
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// One simulated cell: both judges.
#[derive(Clone, Debug)]
pub struct CellResult {
    pub cell: Cell,
    pub cutover: Summary,
    pub naive: Summary,
    pub goals: Goals,
}

/// Everything the simulation needs besides the grid.
#[derive(Clone, Debug)]
pub struct Setup {
    pub policy: Policy,
    pub overrides: BTreeMap<String, String>,
    pub runs: u32,
    pub seed: u64,
    pub baseline_error_rate: f64,
    pub baseline_p50_ms: f64,
    pub baseline_p99_ms: f64,
}

/// A stable seed per (simulation seed, cell, run): the same for both judges.
fn run_seed(seed: u64, cell: &Cell, run: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    let key = format!("{}|{}|{run}", cell.rps, cell.candidate.name);
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ (h >> 29)
}

/// Simulates `runs` rollouts of `cell` under one judge.
pub fn simulate_cell(cell: &Cell, setup: &Setup, judge: JudgeKind) -> Summary {
    let stable = Behaviour::new(
        setup.baseline_error_rate,
        setup.baseline_p50_ms,
        setup.baseline_p99_ms,
    );
    let c = &cell.candidate;
    let candidate = Behaviour::new(
        setup.baseline_error_rate * c.error_factor,
        setup.baseline_p50_ms * c.p50_factor,
        setup.baseline_p99_ms * c.p99_factor,
    );
    let policy = Policy {
        judge,
        ..setup.policy.clone()
    };
    let results: Vec<RunResult> = (0..setup.runs)
        .map(|i| {
            run_once(
                cell,
                &stable,
                &candidate,
                &policy,
                &setup.overrides,
                run_seed(setup.seed, cell, i),
            )
        })
        .collect();
    summarize(&results)
}

/// Simulates every cell with both judges on `threads` threads.
pub fn simulate(cells: &[Cell], setup: &Setup, threads: usize) -> Vec<CellResult> {
    let jobs: Vec<(usize, JudgeKind)> = (0..cells.len())
        .flat_map(|i| [(i, JudgeKind::Sequential), (i, JudgeKind::Absolute)])
        .collect();
    let next = AtomicUsize::new(0);
    let done: Mutex<BTreeMap<(usize, bool), Summary>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(i, judge)) = jobs.get(k) else {
                        break;
                    };
                    let summary = simulate_cell(&cells[i], setup, judge);
                    done.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((i, judge == JudgeKind::Sequential), summary);
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    cells
        .iter()
        .enumerate()
        .map(|(i, cell)| CellResult {
            cell: cell.clone(),
            cutover: done.remove(&(i, true)).expect("simulated"),
            naive: done.remove(&(i, false)).expect("simulated"),
            goals: Goals::of(cell),
        })
        .collect()
}

/// The grid (or the one cell) the arguments ask for.
pub fn cells(args: &SimulateArgs) -> Result<Vec<Cell>, SimulateError> {
    let parse = |s: &str| Candidate::parse(s).map_err(SimulateError);
    if let Some(c) = &args.cell {
        let (rps, cand) = c.split_once(':').ok_or_else(|| {
            SimulateError(format!(
                "--cell {c:?}: expected RPS:CANDIDATE, e.g. 100:5xx-x2"
            ))
        })?;
        let rps: f64 = rps
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| {
                SimulateError(format!("--cell {c:?}: {rps:?} is not a traffic level"))
            })?;
        return Ok(vec![Cell {
            rps,
            candidate: parse(cand)?,
        }]);
    }
    let mut out = Vec::new();
    for &rps in &args.rps {
        if !(rps.is_finite() && rps >= 0.0) {
            return Err(SimulateError(format!(
                "--rps: {rps} is not a traffic level"
            )));
        }
        for c in &args.candidates {
            out.push(Cell {
                rps,
                candidate: parse(c)?,
            });
        }
    }
    if out.is_empty() {
        return Err(SimulateError("no cells to simulate".into()));
    }
    Ok(out)
}

fn setup(args: &SimulateArgs) -> Result<Setup, SimulateError> {
    let mut overrides = BTreeMap::new();
    for o in &args.overrides {
        let (k, v) = o.split_once('=').ok_or_else(|| {
            SimulateError(format!(
                "--set {o:?}: expected ANNOTATION=VALUE, e.g. cutover.dev/steps=10,50,100"
            ))
        })?;
        let k = k.trim();
        let k = if k.starts_with(cutover::decision::record::PREFIX) {
            k.to_string()
        } else {
            format!("{}{k}", cutover::decision::record::PREFIX)
        };
        if !cutover::decision::policy::OVERRIDE_KEYS.contains(&k.as_str()) {
            return Err(SimulateError(format!(
                "--set {o:?}: {k} is not a policy annotation (one of {})",
                cutover::decision::policy::OVERRIDE_KEYS.join(", ")
            )));
        }
        overrides.insert(k, v.trim().to_string());
    }
    // No bake: the simulator measures the judgement of steps, and "completed" is the last
    // step passing, as in docs/judgement.md. A `--set cutover.dev/bake=…` still adds one (the
    // rollout then ends when the bake does).
    let policy = Policy {
        metrics_delay: args.metrics_delay,
        max_hold: args.max_hold,
        bake: SignedDuration::ZERO,
        ..Policy::default()
    };
    policy
        .with_overrides(&overrides)
        .map_err(|e| SimulateError(e.to_string()))?;
    if args.runs == 0 {
        return Err(SimulateError("--runs must be at least 1".into()));
    }
    Ok(Setup {
        policy,
        overrides,
        runs: args.runs,
        seed: args.seed,
        baseline_error_rate: args.baseline_error_rate,
        baseline_p50_ms: args.baseline_p50_ms,
        baseline_p99_ms: args.baseline_p99_ms.max(args.baseline_p50_ms),
    })
}

fn rate(x: f64) -> String {
    format!("{:.1}", x * 100.0)
}

/// The side-by-side table (rates in % of runs).
pub fn table(results: &[CellResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6} {:<13} | {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} {:>6} | goals",
        "", "", "cutover", "", "", "", "", "", "", "naive", "", "", "", ""
    );
    let _ = writeln!(
        out,
        "{:>6} {:<13} | {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} {:>6} |",
        "rps",
        "candidate",
        "rb%",
        "rb<50%",
        "100%",
        "done%",
        "pause%",
        "med.m",
        "nodata",
        "rb%",
        "rb<50%",
        "100%",
        "med.m",
        "nodata"
    );
    for r in results {
        let (c, n) = (&r.cutover, &r.naive);
        let missed = r.goals.missed(c);
        let goals = if missed.is_empty() {
            "met".to_string()
        } else {
            format!("MISSED: {}", missed.join(", "))
        };
        let _ = writeln!(
            out,
            "{:>6} {:<13} | {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} {:>6} | {goals}",
            r.cell.rps,
            r.cell.candidate.name,
            rate(c.rolled_back),
            rate(c.rolled_back_before_50),
            rate(c.reached_100),
            rate(c.completed),
            rate(c.paused),
            c.median_minutes,
            c.promoted_without_min_data,
            rate(n.rolled_back),
            rate(n.rolled_back_before_50),
            rate(n.reached_100),
            n.median_minutes,
            n.promoted_without_min_data,
        );
    }
    out
}

/// The same numbers as CSV, one line per cell and judge.
pub fn csv(results: &[CellResult]) -> String {
    let mut out = String::from(
        "rps,candidate,judge,runs,rolled_back,rolled_back_before_50,reached_100,completed,paused,median_minutes,promoted_without_min_data,goals\n",
    );
    for r in results {
        for (judge, s) in [("cutover", &r.cutover), ("naive", &r.naive)] {
            let goals = if judge == "cutover" {
                let m = r.goals.missed(s);
                if m.is_empty() {
                    "met".to_string()
                } else {
                    format!("\"missed: {}\"", m.join("; "))
                }
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{},{},{judge},{},{:.4},{:.4},{:.4},{:.4},{:.4},{},{},{goals}",
                r.cell.rps,
                r.cell.candidate.name,
                s.runs,
                s.rolled_back,
                s.rolled_back_before_50,
                s.reached_100,
                s.completed,
                s.paused,
                s.median_minutes,
                s.promoted_without_min_data
            );
        }
    }
    out
}

/// A bar chart: for each cell, the share of runs rolled back before 50% and the share that
/// reached 100%, cutover's judge next to the naive one.
pub fn svg(results: &[CellResult]) -> String {
    let (bar, gap, top, height) = (9.0, 14.0, 40.0, 200.0);
    let group = 4.0 * bar + gap;
    let width = 60.0 + group * results.len() as f64 + 20.0;
    let total_h = top + height + 120.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{total_h:.0}" font-family="sans-serif" font-size="10">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="16" font-size="13">cutover simulate: share of runs (cutover judge solid, naive judge pale)</text>"#
    );
    let legend = [
        ("#1f77b4", "rolled back before 50%"),
        ("#d62728", "reached 100%"),
    ];
    for (i, (colour, label)) in legend.iter().enumerate() {
        let x = 10.0 + i as f64 * 170.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="24" width="10" height="10" fill="{colour}"/><text x="{:.0}" y="33">{label}</text>"#,
            x + 14.0
        );
    }
    for p in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = top + height * (1.0 - p);
        let _ = writeln!(
            s,
            r##"<line x1="50" x2="{:.0}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="45" y="{:.1}" text-anchor="end">{:.0}%</text>"##,
            width - 20.0,
            y + 3.0,
            p * 100.0
        );
    }
    for (i, r) in results.iter().enumerate() {
        let x0 = 60.0 + group * i as f64;
        let bars = [
            (r.cutover.rolled_back_before_50, "#1f77b4", 1.0),
            (r.naive.rolled_back_before_50, "#1f77b4", 0.35),
            (r.cutover.reached_100, "#d62728", 1.0),
            (r.naive.reached_100, "#d62728", 0.35),
        ];
        for (j, (v, colour, opacity)) in bars.iter().enumerate() {
            let h = height * v;
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{bar}" height="{h:.1}" fill="{colour}" fill-opacity="{opacity}"/>"#,
                x0 + j as f64 * bar,
                top + height - h
            );
        }
        let lx = x0 + 2.0 * bar;
        let ly = top + height + 8.0;
        let _ = writeln!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" transform="rotate(60 {lx:.1} {ly:.1})">{} rps {}</text>"#,
            r.cell.rps, r.cell.candidate.name
        );
    }
    s.push_str("</svg>\n");
    s
}

/// `lab simulate`.
pub fn run(args: &SimulateArgs) -> Result<(), SimulateError> {
    let cells = cells(args)?;
    let setup = setup(args)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let results = simulate(&cells, &setup, threads);
    let elapsed = started.elapsed();
    println!(
        "cutover simulate: {} runs per cell and judge, seed {}, baseline 5xx {}, p50 {} ms, p99 {} ms, steps {}{}",
        setup.runs,
        setup.seed,
        pct(setup.baseline_error_rate),
        setup.baseline_p50_ms,
        setup.baseline_p99_ms,
        cutover::decision::policy::format_duration(setup.policy.step_interval),
        if setup.overrides.is_empty() {
            String::new()
        } else {
            format!(
                ", overrides {}",
                setup
                    .overrides
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    );
    println!(
        "rb = rolled back, rb<50 = rolled back before 50%, 100 = reached 100%, done = completed, med.m = median minutes to the rollout's end, nodata = promotions without the minimum data"
    );
    print!("{}", table(&results));
    if args.explain {
        let explain = |title: &str, pick: &dyn Fn(&CellResult) -> Vec<String>| {
            println!("{title}");
            for r in &results {
                let list = pick(r);
                if !list.is_empty() {
                    println!(
                        "{:>6} {:<13} {}",
                        r.cell.rps,
                        r.cell.candidate.name,
                        list.join(", ")
                    );
                }
            }
        };
        explain("checks that failed at cutover's rollbacks (runs):", &|r| {
            r.cutover
                .failed_checks
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect()
        });
        explain("where cutover's rollouts paused (runs):", &|r| {
            r.cutover
                .paused_at
                .iter()
                .map(|(k, v)| format!("at {k}% {v}"))
                .collect()
        });
        explain(
            "regressed candidates that reached 100%: how the comparisons read on the promoting step (runs):",
            &|r| {
                if r.cell.candidate.is_healthy() {
                    return Vec::new();
                }
                r.cutover
                    .promoted_on
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect()
            },
        );
    }
    println!(
        "{} rollouts simulated in {:.1} s on {threads} threads",
        2 * cells.len() as u64 * u64::from(setup.runs),
        elapsed.as_secs_f64()
    );
    let write = |path: &std::path::Path, text: String| {
        std::fs::write(path, text)
            .map_err(|e| SimulateError(format!("writing {}: {e}", path.display())))
    };
    if let Some(p) = &args.csv {
        write(p, csv(&results))?;
    }
    if let Some(p) = &args.plot {
        write(p, svg(&results))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_parse() {
        assert_eq!(Candidate::parse("5xx-x2").unwrap().error_factor, 2.0);
        let c = Candidate::parse("p99-x1.5").unwrap();
        assert_eq!((c.p50_factor, c.p99_factor), (1.0, 1.5));
        let c = Candidate::parse("latency-x2").unwrap();
        assert_eq!((c.p50_factor, c.p99_factor), (2.0, 2.0));
        assert!(Candidate::parse("healthy").unwrap().is_healthy());
        for bad in ["sick", "5xx-x", "5xx-x0", "cpu-x2"] {
            assert!(Candidate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_latency_model_reproduces_its_percentiles() {
        let served = Behaviour::new(0.01, 50.0, 200.0).expected(1_000_000);
        let h = Histogram {
            bounds: traffic::bounds(),
            counts: served.counts,
        };
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((p50 / 50.0 - 1.0).abs() < 0.1, "p50 {p50}");
        assert!((p99 / 200.0 - 1.0).abs() < 0.1, "p99 {p99}");
    }

    #[test]
    fn a_run_ends_and_is_reproducible() {
        let cell = Cell {
            rps: 100.0,
            candidate: Candidate::parse("5xx-x10").unwrap(),
        };
        let stable = Behaviour::new(0.005, 50.0, 200.0);
        let bad = Behaviour::new(0.05, 50.0, 200.0);
        let p = Policy::default();
        let a = run_once(&cell, &stable, &bad, &p, &BTreeMap::new(), 3);
        assert_eq!(a, run_once(&cell, &stable, &bad, &p, &BTreeMap::new(), 3));
        assert!(a.rolled_back && a.rolled_back_at == Some(10), "{a:?}");
        let good = run_once(&cell, &stable, &stable, &p, &BTreeMap::new(), 4);
        assert!(!good.rolled_back, "{good:?}");
        assert_eq!(good.promoted_without_min_data, 0);
    }
}
