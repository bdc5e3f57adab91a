//! `lab simulate`: Monte Carlo of whole rollouts, on a simulated clock, through the same
//! decision code that runs in production ([`cutover::decision::decide`]).
//!
//! Each run is one rollout of one candidate on one service under one traffic scenario: the
//! build starts it, a tick comes every simulated minute, and metrics for a window are what the
//! simulated revisions served in it, as Monitoring answers a read: per revision a `2xx` and a
//! `5xx` series, one point per minute, written `metrics_delay` late (later for late points, see
//! [`series`]). Requests arrive as a Poisson process split by the traffic allocation in
//! force, scaled by the scenario's volume drift; each request answers 5xx with its revision's
//! probability that minute (bursts, drift and load-dependent candidates move it) and takes a
//! latency from its revision's law that minute (log-normal given p50 and p99, or a mixture for
//! tail and slow-burst effects), counted into Cloud Run's `request_latencies` buckets
//! (exponential, growth 1.4, scale 1 ms, 64 finite buckets). A run ends when the rollout
//! completes, rolls back or pauses. Candidates: [`candidate`]; scenarios:
//! [`scenario`]; goals: [`goals`].
//!
//! The same runs are made with cutover's judge and with the naive absolute-threshold judge
//! (the candidate's own point estimates against `CUTOVER_MAX_ERROR_RATE` and
//! `CUTOVER_MAX_P99_MS`), with the same seeds, and printed side by side. See
//! `docs/judgement.md` for the benchmark and how to read it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

pub mod candidate;
pub mod goals;
pub mod scenario;
pub mod series;

use crate::cli::{Grid, SimulateArgs};
use candidate::{Baseline, Candidate, Law, Limits, Pair};
use cutover::decision::record::RECORD_KEYS;
use cutover::decision::{
    Action, Decision, Evidence, JudgeKind, Kind, Need, Observed, Phase, Policy, Record, Trigger,
    decide,
};
use cutover::target::ServiceRef;
use cutover_fakes::traffic::{self, Behaviour};
use goals::{Goals, num, pct};
use scenario::{BurstClock, Scenario};
use series::{Minute, Served, window_stats};

const STABLE: &str = "sim-00001-stb";
const CANDIDATE: &str = "sim-00002-cnd";
/// A run that has not ended after this long is reported as unfinished (cannot happen with a
/// finite max hold, but a simulation must terminate).
const MAX_MINUTES: u32 = 24 * 60;

/// The rows of `--grid robustness` (scenario, candidate), simulated at 10, 100 and 1,000 req/s:
/// issue 13's conditions, each against the reference row it departs from.
pub const ROBUSTNESS: &[(&str, &str)] = &[
    ("poisson", "healthy"),
    ("poisson", "5xx-x2"),
    ("bursts-20", "healthy"),
    ("bursts-50", "healthy"),
    ("bursts-20", "5xx-x2"),
    ("bursts-50", "5xx-x2"),
    ("common-bursts-50", "healthy"),
    ("slow-bursts-20", "healthy"),
    ("slow-bursts-50", "healthy"),
    ("diurnal-rising", "healthy"),
    ("diurnal-falling", "healthy"),
    ("ramp-x3", "healthy"),
    ("late-30", "healthy"),
    ("lag-30", "healthy"),
    ("poisson", "near-5xx-x0.6"),
    ("poisson", "near-p99-x0.6"),
    ("poisson", "near-5xx-x1.3"),
    ("poisson", "near-p99-x1.3"),
    ("poisson", "tail-x3"),
    ("poisson", "full-latency-x1.5"),
    ("poisson", "full-5xx-x2"),
];
/// Traffic levels of `--grid robustness`.
pub const ROBUSTNESS_RPS: &[f64] = &[10.0, 100.0, 1000.0];

/// Why the simulation could not run.
#[derive(Debug, thiserror::Error)]
#[error("simulate: {0}")]
pub struct SimulateError(String);

/// One cell of the grid.
#[derive(Clone, Debug)]
pub struct Cell {
    pub rps: f64,
    pub candidate: Candidate,
    pub scenario: Scenario,
}

impl Cell {
    /// The cell of a candidate and a scenario given by name.
    pub fn parse(rps: f64, candidate: &str, scenario: &str) -> Result<Cell, SimulateError> {
        Ok(Cell {
            rps,
            candidate: Candidate::parse(candidate).map_err(SimulateError)?,
            scenario: Scenario::parse(scenario).map_err(SimulateError)?,
        })
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
    /// Ticks (one a minute) the rollout saw, and those whose decision needed a call (evidence
    /// or a write): with fan-out only those are published as evaluations, the others the tick
    /// decides itself.
    pub ticks: u32,
    pub ticks_with_calls: u32,
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

/// The traffic laws of one cell, minute by minute: each (revision, latency scale, slow share)
/// built once per cell. Keys are quantized (latency to 0.01%, slow share to 1e-6) and the law
/// is built from the quantized values, so a run does not depend on what was cached before it.
#[derive(Default)]
pub struct Laws {
    cache: HashMap<(usize, i64, i64), Behaviour>,
}

impl Laws {
    fn get(&mut self, rev: usize, law: &Law, scale: f64, slow: f64) -> &Behaviour {
        let key = (
            rev,
            (scale * 1e4).round() as i64,
            (slow * 1e6).round() as i64,
        );
        self.cache.entry(key).or_insert_with(|| {
            let (scale, slow) = (key.1 as f64 / 1e4, key.2 as f64 / 1e6);
            let mut parts: Vec<_> = law
                .parts
                .iter()
                .map(|(w, l)| (w * (1.0 - slow), l.scaled(scale)))
                .collect();
            if slow > 0.0 {
                parts.extend(
                    law.parts
                        .iter()
                        .map(|(w, l)| (w * slow, l.scaled(scale * scenario::SLOW_FACTOR))),
                );
            }
            Behaviour::mixture(law.error_rate, &parts)
        })
    }
}

/// The random schedules of one stretch of a run: the requests, the scenario's bursts (per
/// revision and common) and its late points, each from its own stream.
struct Streams {
    rng: fastrand::Rng,
    /// Per revision: 5xx bursts, slow bursts.
    bursts: [Option<BurstClock>; 2],
    slow: [Option<BurstClock>; 2],
    common: Option<BurstClock>,
    late: fastrand::Rng,
}

impl Streams {
    fn new(s: &Scenario, rng: fastrand::Rng, seeder: &mut fastrand::Rng) -> Streams {
        let mut clock = |on: bool| on.then(|| BurstClock::new(seeder.u64(..)));
        Streams {
            rng,
            bursts: [clock(s.bursts.is_some()), clock(s.bursts.is_some())],
            slow: [
                clock(s.slow_bursts.is_some()),
                clock(s.slow_bursts.is_some()),
            ],
            common: clock(s.common_bursts.is_some()),
            late: fastrand::Rng::with_seed(seeder.u64(..)),
        }
    }
}

/// The traffic of one run: the stable revision's hour before the rollout starts
/// ([`BEFORE_MINUTES`], which the judge reads as its baseline at 100%), then the rollout. Each
/// stretch draws from its own streams, so the rollout's requests and schedules are drawn
/// exactly as when the simulator had no hour before.
struct Traffic<'a> {
    cell: &'a Cell,
    pair: &'a Pair,
    rollout: Streams,
    before: Streams,
    /// Per revision, every minute served: `minutes[k]` ends at `t0 − BEFORE_MINUTES + k + 1`
    /// once the hour before has been served ([`Traffic::serve_before`]).
    served: [Served; 2],
}

/// Minutes of the stable revision's own traffic simulated before the rollout starts: as far
/// back as the judge's baseline reaches.
const BEFORE_MINUTES: i64 = cutover::decision::judge::window::BASELINE_LOOKBACK.as_mins();

impl<'a> Traffic<'a> {
    fn new(cell: &'a Cell, pair: &'a Pair, seed: u64) -> Traffic<'a> {
        let mut seeder = fastrand::Rng::with_seed(seed ^ 0x5eed_b0a5_7c1a_93e1);
        let rollout = Streams::new(&cell.scenario, fastrand::Rng::with_seed(seed), &mut seeder);
        let before_rng = fastrand::Rng::with_seed(seeder.u64(..));
        let before = Streams::new(&cell.scenario, before_rng, &mut seeder);
        Traffic {
            cell,
            pair,
            rollout,
            before,
            served: [Served::default(), Served::default()],
        }
    }

    /// Serves the hour before the rollout: stable alone, at full traffic.
    fn serve_before(&mut self, laws: &mut Laws) {
        for i in -BEFORE_MINUTES..0 {
            self.minute(i, [1.0, 0.0], laws);
        }
    }

    /// Serves minute `i` (ending at `t0 + i + 1`; negative before the rollout) with the
    /// revisions' shares (stable, candidate; 0..=1).
    fn minute(&mut self, i: i64, shares: [f64; 2], laws: &mut Laws) {
        let s = &self.cell.scenario;
        let streams = if i < 0 {
            &mut self.before
        } else {
            &mut self.rollout
        };
        let t = i as f64 + 0.5;
        let volume = s.drift.map_or(1.0, |d| d.volume(t));
        let (e_load, l_load) = if s.drift.is_some() {
            scenario::load_coupling(volume)
        } else {
            (1.0, 1.0)
        };
        let common = streams.common.as_mut().map(BurstClock::next_minute);
        for (rev, share) in shares.into_iter().enumerate() {
            let law = if rev == 0 {
                &self.pair.stable
            } else {
                &self.pair.candidate
            };
            let (mut ef, mut lf) = (e_load, l_load);
            if rev == 1
                && let Some((e, l, growing)) = self.pair.load
            {
                let k = |x: f64| {
                    if growing {
                        1.0 + (x - 1.0) * share
                    } else if share >= 1.0 {
                        x
                    } else {
                        1.0
                    }
                };
                ef *= k(e);
                lf *= k(l);
            }
            let mut rate = law.error_rate * ef;
            if let (Some(b), Some(c)) = (s.bursts, streams.bursts[rev].as_mut()) {
                rate = b.rate(rate, c.next_minute());
            }
            if let (Some(b), Some(a)) = (s.common_bursts, common) {
                rate = b.rate(rate, a);
            }
            let slow = match (s.slow_bursts, streams.slow[rev].as_mut()) {
                (Some(b), Some(c)) => b.rate(scenario::SLOW_SHARE, c.next_minute()).min(1.0),
                _ => 0.0,
            };
            let lam = self.cell.rps * 60.0 * volume * share;
            let behaviour = laws.get(rev, law, lf, slow);
            let mut m = Minute::empty();
            let [ok, err] = &mut m.counts;
            let (n_ok, n_err) = behaviour.sample_split(&mut streams.rng, lam, rate, ok, err);
            m.requests = [n_ok, n_err];
            if let Some(late) = s.late {
                let mut lag = || {
                    if streams.late.f64() < late.probability {
                        1 + streams.late.u8(0..2)
                    } else {
                        0
                    }
                };
                let first = lag();
                m.lag = [first, if late.per_series { lag() } else { first }];
            }
            self.served[rev].minutes.push(m);
        }
    }
}

/// One rollout of `cell`'s candidate under `policy` (whose overrides are `overrides`).
pub fn run_once(
    cell: &Cell,
    pair: &Pair,
    policy: &Policy,
    overrides: &BTreeMap<String, String>,
    seed: u64,
    laws: &mut Laws,
) -> RunResult {
    let mut traffic = Traffic::new(cell, pair, seed);
    traffic.serve_before(laws);
    let bounds = traffic::bounds();
    let t0 = start_time();
    let origin = t0 - SignedDuration::from_mins(BEFORE_MINUTES);
    let mut allocation = BTreeMap::from([(STABLE.to_string(), 100u8)]);
    let mut annotations = overrides.clone();
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
        traffic.minute(
            i64::from(minute) - 1,
            [share(STABLE), share(CANDIDATE)],
            laws,
        );

        let now = t0 + SignedDuration::from_mins(i64::from(minute));
        let obs = observed(&allocation, &annotations);
        let mut d = decide(&obs, &Trigger::Tick, &Evidence::None, policy, now);
        result.ticks += 1;
        if !matches!(d.action, Action::Stay(_)) {
            result.ticks_with_calls += 1;
        }
        if let Action::Gather(Need::Metrics(w)) = &d.action {
            let [stable, candidate] = &traffic.served;
            let stats = window_stats(
                *w,
                now,
                origin,
                policy.metrics_delay,
                &[(STABLE, stable), (CANDIDATE, candidate)],
                &bounds,
            );
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
        let wrote = d.write().is_some();
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
        // The phase only changes with a write: no need to read the record back otherwise.
        if !wrote {
            continue;
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
                // The share just before the rollback wrote 0%.
                let at = obs.allocation.get(CANDIDATE).copied().unwrap_or(0);
                result.rolled_back_at = d.record.as_ref().map(|_| at);
                for c in &mut result.failed_checks {
                    *c = format!("{c} at {at}%");
                }
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

/// The outcome rates of one cell under one judge.
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// Ticks over all runs, and those that needed a call ([`RunResult::ticks_with_calls`]).
    pub ticks: u64,
    pub ticks_with_calls: u64,
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
        ticks: results.iter().map(|r| u64::from(r.ticks)).sum(),
        ticks_with_calls: results.iter().map(|r| u64::from(r.ticks_with_calls)).sum(),
    }
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
    pub baseline: Baseline,
}

impl Setup {
    /// The policy with the `--set` overrides applied (limits, goals).
    pub fn effective(&self) -> Policy {
        self.policy
            .with_overrides(&self.overrides)
            .unwrap_or_else(|_| self.policy.clone())
    }

    /// Both revisions' laws for `cell`.
    pub fn pair(&self, cell: &Cell) -> Pair {
        let p = self.effective();
        cell.candidate.pair(
            self.baseline,
            Limits {
                max_error_rate: p.max_error_rate,
                max_p99_ms: p.max_p99_ms,
            },
        )
    }
}

/// A stable seed per (simulation seed, cell, run): the same for both judges (and, for the
/// `poisson` scenario, the same as before scenarios existed).
fn run_seed(seed: u64, cell: &Cell, run: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    let mut key = format!("{}|{}|{run}", cell.rps, cell.candidate.name);
    if cell.scenario != Scenario::poisson() {
        key.push('|');
        key.push_str(&cell.scenario.name);
    }
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ (h >> 29)
}

/// Simulates `runs` rollouts of `cell` under one judge.
pub fn simulate_cell(cell: &Cell, setup: &Setup, judge: JudgeKind) -> Summary {
    let pair = setup.pair(cell);
    let policy = Policy {
        judge,
        ..setup.policy.clone()
    };
    let mut laws = Laws::default();
    let results: Vec<RunResult> = (0..setup.runs)
        .map(|i| {
            run_once(
                cell,
                &pair,
                &policy,
                &setup.overrides,
                run_seed(setup.seed, cell, i),
                &mut laws,
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
    let policy = setup.effective();
    cells
        .iter()
        .enumerate()
        .map(|(i, cell)| CellResult {
            cell: cell.clone(),
            cutover: done.remove(&(i, true)).expect("simulated"),
            naive: done.remove(&(i, false)).expect("simulated"),
            goals: Goals::of(cell, &policy),
        })
        .collect()
}

/// The grid (or the one cell) the arguments ask for.
pub fn cells(args: &SimulateArgs) -> Result<Vec<Cell>, SimulateError> {
    let level = |what: &str, r: &str| {
        r.trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| SimulateError(format!("{what}: {r:?} is not a traffic level")))
    };
    if let Some(c) = &args.cell {
        let (rps, rest) = c.split_once(':').ok_or_else(|| {
            SimulateError(format!(
                "--cell {c:?}: expected RPS:CANDIDATE[@SCENARIO], e.g. 100:5xx-x2@bursts-20"
            ))
        })?;
        let (cand, scen) = rest.split_once('@').unwrap_or((rest, "poisson"));
        return Ok(vec![Cell::parse(
            level(&format!("--cell {c:?}"), rps)?,
            cand,
            scen,
        )?]);
    }
    let rows: Vec<(String, String)> = match args.grid {
        Some(Grid::Robustness) => ROBUSTNESS
            .iter()
            .map(|(s, c)| (s.to_string(), c.to_string()))
            .collect(),
        None => args
            .scenarios
            .iter()
            .flat_map(|s| args.candidates.iter().map(|c| (s.clone(), c.clone())))
            .collect(),
    };
    let rps: Vec<f64> = match (&args.rps, args.grid) {
        (Some(r), _) => r.clone(),
        (None, Some(Grid::Robustness)) => ROBUSTNESS_RPS.to_vec(),
        (None, None) => vec![1.0, 10.0, 100.0, 1000.0],
    };
    let mut out = Vec::new();
    for &r in &rps {
        level("--rps", &r.to_string())?;
        for (s, c) in &rows {
            out.push(Cell::parse(r, c, s)?);
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
        baseline: Baseline {
            error_rate: args.baseline_error_rate,
            p50_ms: args.baseline_p50_ms,
            p99_ms: args.baseline_p99_ms.max(args.baseline_p50_ms),
        },
    })
}

/// A share of runs in %, with as many decimals as `runs` resolves (one per 1,000 runs).
fn rate(x: f64, runs: u32) -> String {
    let decimals = ((f64::from(runs.max(1))).log10().ceil() as usize).saturating_sub(2);
    format!("{:.*}", decimals.max(1), x * 100.0)
}

/// The side-by-side table (rates in % of runs).
pub fn table(results: &[CellResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6} {:<16} {:<17} | {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} {:>6} | goals",
        "", "", "", "cutover", "", "", "", "", "", "", "naive", "", "", "", ""
    );
    let _ = writeln!(
        out,
        "{:>6} {:<16} {:<17} | {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} {:>6} |",
        "rps",
        "scenario",
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
        let (rc, rn) = (|x| rate(x, c.runs), |x| rate(x, n.runs));
        let _ = writeln!(
            out,
            "{:>6} {:<16} {:<17} | {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} {:>6} | {}",
            r.cell.rps,
            r.cell.scenario.name,
            r.cell.candidate.name,
            rc(c.rolled_back),
            rc(c.rolled_back_before_50),
            rc(c.reached_100),
            rc(c.completed),
            rc(c.paused),
            c.median_minutes,
            c.promoted_without_min_data,
            rn(n.rolled_back),
            rn(n.rolled_back_before_50),
            rn(n.reached_100),
            n.median_minutes,
            n.promoted_without_min_data,
            r.goals.status(c),
        );
    }
    out
}

/// The same numbers as CSV, one line per cell and judge (rates as fractions, unrounded).
pub fn csv(results: &[CellResult]) -> String {
    let mut out = String::from(
        "rps,scenario,candidate,judge,runs,rolled_back,rolled_back_before_50,reached_100,completed,paused,median_minutes,promoted_without_min_data,goals\n",
    );
    for r in results {
        for (judge, s) in [("cutover", &r.cutover), ("naive", &r.naive)] {
            let goals = if judge == "cutover" {
                format!("\"{}\"", r.goals.status(s).replace('"', "\"\""))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{},{},{},{judge},{},{},{},{},{},{},{},{},{goals}",
                r.cell.rps,
                r.cell.scenario.name,
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
            r#"<text x="{lx:.1}" y="{ly:.1}" transform="rotate(60 {lx:.1} {ly:.1})">{} rps {} {}</text>"#,
            r.cell.rps, r.cell.scenario.name, r.cell.candidate.name
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
        pct(setup.baseline.error_rate),
        num(setup.baseline.p50_ms),
        num(setup.baseline.p99_ms),
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
                        "{:>6} {:<16} {:<17} {}",
                        r.cell.rps,
                        r.cell.scenario.name,
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
                if r.cell.candidate.is_no_worse() {
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
    let (ticks, with_calls) = results.iter().fold((0u64, 0u64), |(t, c), r| {
        (t + r.cutover.ticks, c + r.cutover.ticks_with_calls)
    });
    println!(
        "cutover's ticks: {with_calls} of {ticks} ({:.1}%) needed a call (evidence or a write); with fan-out only those are published, the others are decided by the tick",
        100.0 * with_calls as f64 / ticks.max(1) as f64
    );
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
    use super::candidate::{BASE, LIMITS};
    use super::*;

    fn cell(rps: f64, c: &str, s: &str) -> Cell {
        Cell::parse(rps, c, s).unwrap()
    }

    #[test]
    fn the_latency_model_reproduces_its_percentiles() {
        let served = Behaviour::new(0.01, 50.0, 200.0).expected(1_000_000);
        let h = cutover::decision::evidence::Histogram {
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
        let p = Policy::default();
        let bad = cell(100.0, "5xx-x10", "poisson");
        let pair = bad.candidate.pair(BASE, LIMITS);
        let run = |c: &Cell, pair: &Pair, seed| {
            run_once(c, pair, &p, &BTreeMap::new(), seed, &mut Laws::default())
        };
        let a = run(&bad, &pair, 3);
        assert_eq!(a, run(&bad, &pair, 3));
        assert!(a.rolled_back && a.rolled_back_at == Some(10), "{a:?}");
        let good = cell(100.0, "healthy", "poisson");
        let g = run(&good, &good.candidate.pair(BASE, LIMITS), 4);
        assert!(!g.rolled_back, "{g:?}");
        assert_eq!(g.promoted_without_min_data, 0);
    }

    /// Serves `minutes` minutes of `cell` at the candidate's `share` and returns both
    /// revisions' minutes.
    fn serve(c: &Cell, share: f64, minutes: usize, seed: u64) -> [Served; 2] {
        serve_shares(c, [1.0 - share, share], minutes, seed)
    }

    fn serve_shares(c: &Cell, shares: [f64; 2], minutes: usize, seed: u64) -> [Served; 2] {
        let pair = c.candidate.pair(BASE, LIMITS);
        let mut t = Traffic::new(c, &pair, seed);
        let mut laws = Laws::default();
        for i in 0..minutes {
            t.minute(i as i64, shares, &mut laws);
        }
        t.served
    }

    fn totals(s: &Served) -> (f64, f64) {
        let n: u64 = s
            .minutes
            .iter()
            .map(|m| m.requests[0] + m.requests[1])
            .sum();
        let e: u64 = s.minutes.iter().map(|m| m.requests[1]).sum();
        (n as f64, e as f64)
    }

    #[test]
    fn minutes_split_requests_into_2xx_and_5xx_points_with_their_latencies() {
        let [stable, _] = serve(&cell(100.0, "healthy", "poisson"), 0.1, 20, 1);
        for m in &stable.minutes {
            assert_eq!(m.counts[0].iter().sum::<u64>(), m.requests[0]);
            assert_eq!(m.counts[1].iter().sum::<u64>(), m.requests[1]);
        }
        let (n, e) = totals(&stable);
        assert!((n / (20.0 * 5400.0) - 1.0).abs() < 0.02, "{n}");
        assert!((e / n / 0.005 - 1.0).abs() < 0.15, "{}", e / n);
    }

    #[test]
    fn bursts_keep_the_mean_5xx_rate_and_concentrate_errors_in_few_minutes() {
        let dispersion = |s: &Served| {
            let e: Vec<f64> = s.minutes.iter().map(|m| m.requests[1] as f64).collect();
            let mean = e.iter().sum::<f64>() / e.len() as f64;
            e.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / e.len() as f64 / mean
        };
        let plain = serve(&cell(100.0, "healthy", "poisson"), 0.5, 3000, 2);
        for s in ["bursts-20", "bursts-50", "common-bursts-50"] {
            let served = serve(&cell(100.0, "healthy", s), 0.5, 3000, 2);
            for rev in &served {
                let (n, e) = totals(rev);
                assert!((e / n / 0.005 - 1.0).abs() < 0.08, "{s}: rate {}", e / n);
                assert!(dispersion(rev) > 3.0 * dispersion(&plain[0]), "{s}");
            }
            // Local bursts hit the revisions in different minutes, common ones together.
            let burst = |rev: &Served| -> Vec<bool> {
                rev.minutes.iter().map(|m| m.requests[1] > 60).collect()
            };
            let (a, b) = (burst(&served[0]), burst(&served[1]));
            let both = a.iter().zip(&b).filter(|(x, y)| **x && **y).count();
            let either = a.iter().zip(&b).filter(|(x, y)| **x || **y).count();
            let common = both as f64 / either.max(1) as f64;
            if s.starts_with("common") {
                assert!(common > 0.8, "{s}: {common}");
            } else {
                assert!(common < 0.3, "{s}: {common}");
            }
        }
    }

    /// The hour before the rollout is stable alone at full traffic, drawn from the same
    /// traffic model (its mean 5xx ratio, its bursts) but from streams of its own: the rollout's
    /// minutes are drawn exactly as without it.
    #[test]
    fn the_hour_before_is_stable_alone_and_leaves_the_rollout_unchanged() {
        let c = cell(100.0, "healthy", "bursts-50");
        let pair = c.candidate.pair(BASE, LIMITS);
        let (mut errors, mut requests, mut burst_minutes) = (0u64, 0u64, 0usize);
        for seed in 0..40 {
            let mut with = Traffic::new(&c, &pair, seed);
            let mut laws = Laws::default();
            with.serve_before(&mut laws);
            let before = BEFORE_MINUTES as usize;
            let [stable, candidate] = &with.served;
            assert_eq!(stable.minutes.len(), before);
            assert!(candidate.minutes.iter().all(|m| m.requests == [0, 0]));
            for m in &stable.minutes {
                requests += m.requests[0] + m.requests[1];
                errors += m.requests[1];
                burst_minutes += usize::from(m.requests[1] > 60);
            }
            for i in 0..20 {
                with.minute(i, [0.9, 0.1], &mut laws);
            }
            let without = serve_shares(&c, [0.9, 0.1], 20, seed);
            for (w, wo) in with.served.iter().zip(&without) {
                assert_eq!(w.minutes[before..], wo.minutes[..]);
            }
        }
        let rate = errors as f64 / requests as f64;
        assert!((rate / 0.005 - 1.0).abs() < 0.1, "rate {rate}");
        assert!(
            burst_minutes > 40,
            "{burst_minutes} burst minutes in 40 hours"
        );
    }

    #[test]
    fn slow_bursts_keep_the_mean_slow_share() {
        let c = cell(100.0, "healthy", "slow-bursts-50");
        let [stable, _] = serve(&c, 0.0, 3000, 5);
        // Slower than 1 s: essentially only slow requests (3× a law with p99 200 ms).
        let slow_bucket = traffic::bounds().iter().position(|b| *b >= 1000.0).unwrap();
        let slow: u64 = stable
            .minutes
            .iter()
            .map(|m| m.counts[0][slow_bucket..].iter().sum::<u64>())
            .sum();
        let (n, _) = totals(&stable);
        let law = cutover_fakes::traffic::LogNormal::new(150.0, 600.0);
        let expected = scenario::SLOW_SHARE * law.survival(traffic::bounds()[slow_bucket - 1]);
        assert!(
            (slow as f64 / n / expected - 1.0).abs() < 0.1,
            "{} vs {expected}",
            slow as f64 / n
        );
    }

    #[test]
    fn drift_moves_volume_errors_and_latency_together() {
        let [stable, _] = serve(&cell(100.0, "healthy", "ramp-x3"), 0.0, 40, 3);
        let n = |i: usize| (stable.minutes[i].requests[0] + stable.minutes[i].requests[1]) as f64;
        let expected_0 = 6000.0 * scenario::Drift::Ramp { factor: 3.0 }.volume(0.5);
        assert!((n(0) / expected_0 - 1.0).abs() < 0.05, "{}", n(0));
        assert!((n(35) / 18000.0 - 1.0).abs() < 0.05, "{}", n(35));
        let (first, last) = (&stable.minutes[..5], &stable.minutes[30..]);
        let rate = |ms: &[Minute]| {
            ms.iter().map(|m| m.requests[1]).sum::<u64>() as f64
                / ms.iter()
                    .map(|m| m.requests[0] + m.requests[1])
                    .sum::<u64>() as f64
        };
        let ratio = rate(last) / rate(first);
        assert!(ratio > 1.2 && ratio < 1.9, "5xx ×{ratio}, expected ×1.5");
    }

    #[test]
    fn a_full_load_candidate_is_slower_only_at_100_percent() {
        let c = cell(100.0, "full-latency-x1.5", "poisson");
        let median = |s: &Served| {
            let mut h = cutover::decision::evidence::Histogram::empty(traffic::bounds());
            for m in &s.minutes {
                for (a, b) in h.counts.iter_mut().zip(&m.counts[0]) {
                    *a += b;
                }
            }
            h.quantile(0.5).unwrap()
        };
        let [_, half] = serve(&c, 0.5, 20, 4);
        let [_, full] = serve(&c, 1.0, 20, 4);
        let (h, f) = (median(&half), median(&full));
        assert!((h / 50.0 - 1.0).abs() < 0.1, "{h}");
        assert!((f / 75.0 - 1.0).abs() < 0.1, "{f}");
    }

    #[test]
    fn late_points_are_missing_at_read_time_and_present_later() {
        let c = cell(100.0, "healthy", "late-30");
        let [stable, candidate] = serve(&c, 0.5, 400, 6);
        let t0 = start_time();
        let delay = SignedDuration::from_mins(3);
        let at = |m: i64| t0 + SignedDuration::from_mins(m);
        let bounds = traffic::bounds();
        let (mut missing, mut reads) = (0, 0);
        for now in 10..390 {
            let read = |now: i64| {
                window_stats(
                    cutover::decision::evidence::Window {
                        start: at(now - 8),
                        end: at(now - 3),
                    },
                    at(now),
                    t0,
                    delay,
                    &[(STABLE, &stable), (CANDIDATE, &candidate)],
                    &bounds,
                )
            };
            let first = read(now).minutes(CANDIDATE).unwrap();
            reads += 1;
            if !first.contains_key(&at(now - 3)) {
                missing += 1;
                // Present two minutes later, whatever its lag, and the 2xx and 5xx together.
                let later = read(now + 2).minutes(CANDIDATE).unwrap();
                assert_eq!(
                    later[&at(now - 3)].requests,
                    candidate.minutes[now as usize - 4]
                        .requests
                        .iter()
                        .sum::<u64>()
                );
            }
        }
        let share = f64::from(missing) / f64::from(reads);
        assert!(
            (share - 0.3).abs() < 0.08,
            "newest minute missing in {share}"
        );
    }

    #[test]
    fn old_grid_cells_draw_the_same_requests_as_before_scenarios() {
        // The requests of a poisson cell are those of Behaviour::sample_into with the same
        // seed, stable first then candidate, minute by minute (the old grid reproduces).
        let c = cell(10.0, "5xx-x2", "poisson");
        let [stable, candidate] = serve(&c, 0.1, 5, 9);
        let mut rng = fastrand::Rng::with_seed(9);
        let (s, k) = (
            Behaviour::new(0.005, 50.0, 200.0),
            Behaviour::new(0.01, 50.0, 200.0),
        );
        for i in 0..5 {
            let mut counts = vec![0; traffic::BUCKETS];
            let (n, e) = s.sample_into(&mut rng, 600.0 * 0.9, &mut counts);
            assert_eq!(stable.minutes[i].requests, [n - e, e]);
            let (n, e) = k.sample_into(&mut rng, 600.0 * 0.1, &mut counts);
            assert_eq!(candidate.minutes[i].requests, [n - e, e]);
        }
    }

    #[test]
    fn cells_come_from_the_grid_the_cell_or_the_preset() {
        use clap::Parser;
        let args = |a: &[&str]| {
            let mut v = vec!["lab", "simulate"];
            v.extend_from_slice(a);
            match crate::cli::Cli::parse_from(v).command {
                crate::cli::Command::Simulate(a) => *a,
                _ => unreachable!(),
            }
        };
        let c = cells(&args(&["--cell", "100:5xx-x2@bursts-20+late-30"])).unwrap();
        assert_eq!(c[0].scenario.name, "bursts-20+late-30");
        assert_eq!(cells(&args(&[])).unwrap().len(), 24);
        let r = cells(&args(&["--grid", "robustness"])).unwrap();
        assert_eq!(r.len(), 3 * ROBUSTNESS.len());
        assert!(cells(&args(&["--scenarios", "bursts"])).is_err());
    }
}
