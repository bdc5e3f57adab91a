//! The lab's command line: `lab demo` and `lab simulate`.

use clap::{Args, Parser, Subcommand};
use cutover::decision::policy;
use jiff::SignedDuration;

/// cutover's lab: the embedded demo and the rollout simulator (nothing here ships).
#[derive(Debug, Parser)]
#[command(name = "lab", about, long_about = None, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an embedded end-to-end rollout against in-process fakes (no cloud account needed).
    Demo(DemoArgs),
    /// Monte Carlo of whole rollouts through cutover's decision code on a simulated clock:
    /// cutover's judge and the naive absolute-threshold judge, side by side.
    Simulate(Box<SimulateArgs>),
}

/// Settings of `lab demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Which scenario to run.
    #[arg(long, value_enum, default_value = "all")]
    pub scenario: Scenario,

    /// Afterwards, leave one more rollout at 50% and write the status page, as headless
    /// Chromium shows it, to this PNG file (`docs/status.png`).
    #[arg(long, value_name = "FILE")]
    pub screenshot: Option<std::path::PathBuf>,
}

/// Demo scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Both rollouts, one after the other.
    All,
    /// A healthy candidate goes 10 → 50 → 100.
    Healthy,
    /// A candidate with 20% 5xx is rolled back at 10%.
    Regressed,
}

/// Preset grids of `lab simulate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Grid {
    /// Issue 13's rows at 10, 100 and 1,000 req/s (see `simulate::ROBUSTNESS`).
    Robustness,
}

/// Settings of `lab simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Service traffic levels to simulate, requests per second, comma separated
    /// [default: 1,10,100,1000; with --grid robustness: 10,100,1000].
    #[arg(long, value_delimiter = ',')]
    pub rps: Option<Vec<f64>>,

    /// Candidates, comma separated: healthy; 5xx-xK (K times the baseline 5xx ratio); p99-xK
    /// (p99 K times the baseline, median unchanged); latency-xK (every request K times slower);
    /// tail-xK (p99.9 K times, p99 nearly unchanged); full-5xx-xK, full-latency-xK (only while
    /// the candidate serves 100%); grow-5xx-xK, grow-latency-xK (growing with its share);
    /// near-5xx-xF, near-p99-xF (the candidate at F times the absolute limit).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "healthy,5xx-x2,5xx-x5,5xx-x10,p99-x1.5,p99-x3"
    )]
    pub candidates: Vec<String>,

    /// Traffic scenarios, comma separated, each crossed with every candidate: poisson;
    /// bursts-S, common-bursts-S, slow-bursts-S (S% of the 5xx / slow requests in 1-3 minute
    /// bursts, same mean); diurnal-rising, diurnal-falling; ramp-xK (traffic K times over 30
    /// minutes); late-P, lag-P (P% of reads miss the newest 1-2 minutes of a revision / of a
    /// series). Join effects with + (bursts-20+late-30).
    #[arg(long, value_delimiter = ',', default_value = "poisson")]
    pub scenarios: Vec<String>,

    /// A preset grid instead of --scenarios and --candidates: robustness = issue 13's rows
    /// (bursts, drift, late minutes, near-limit, tail-only and load-dependent candidates).
    #[arg(long, value_enum)]
    pub grid: Option<Grid>,

    /// Simulate one cell only, as `RPS:CANDIDATE[@SCENARIO]` (for example `100:5xx-x2@bursts-20`).
    #[arg(long, value_name = "RPS:CANDIDATE[@SCENARIO]")]
    pub cell: Option<String>,

    /// Rollouts per cell and judge.
    #[arg(long, default_value_t = 1000)]
    pub runs: u32,

    /// Seed of the simulation (the same seed gives the same table).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// 5xx ratio of the stable revision (and of a healthy candidate).
    #[arg(long, default_value_t = 0.005, value_parser = policy::parse_rate)]
    pub baseline_error_rate: f64,

    /// Median latency of the stable revision, ms.
    #[arg(long, default_value_t = 50.0, value_parser = policy::parse_ms)]
    pub baseline_p50_ms: f64,

    /// p99 latency of the stable revision, ms.
    #[arg(long, default_value_t = 200.0, value_parser = policy::parse_ms)]
    pub baseline_p99_ms: f64,

    /// A policy setting, as the per-service annotation would set it (repeatable), for example
    /// `--set cutover.dev/steps=5,25,100` or `--set cutover.dev/max-error-ratio=3`.
    #[arg(long = "set", value_name = "ANNOTATION=VALUE")]
    pub overrides: Vec<String>,

    /// How late metrics land in the simulation (as CUTOVER_METRICS_DELAY).
    #[arg(long, default_value = "3m", value_parser = policy::parse_duration)]
    pub metrics_delay: SignedDuration,

    /// How long a due step may stay inconclusive before the rollout pauses (as CUTOVER_MAX_HOLD).
    #[arg(long, default_value = "1h", value_parser = policy::parse_interval)]
    pub max_hold: SignedDuration,

    /// Also write the table as CSV to this file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<std::path::PathBuf>,

    /// Also draw the table as an SVG chart in this file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<std::path::PathBuf>,

    /// Worker threads [default: the machine's parallelism].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Also list, per cell, which checks failed when cutover rolled back.
    #[arg(long)]
    pub explain: bool,
}
