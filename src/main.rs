//! The `cutover` binary: parse settings, start logging, run a subcommand.
//!
//! Kept thin so that tests and the lab's demo drive the same library entry points. `serve` runs
//! the server; the operator verbs (`status`, `promote`, …) are `cutover::operate`'s. The demo
//! and the simulator are the lab's (`lab/`).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use cutover::clock::Clock;
use cutover::config::{Cli, Command, LogFormat, PushAuthMode};
use cutover::notify::{Notifier, Settings};

fn init_logging(format: LogFormat) {
    use tracing_subscriber::prelude::*;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(cutover::logs::CloudLogging::new(std::io::stdout))
            .init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .init(),
    }
}

/// How long a verb waits, once done, for its events and chat messages to be delivered.
const VERB_NOTIFY_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// The notifier of a verb that changes a rollout (none configured: one that tells nothing):
/// events in the verb's project, with the verb's region in their source.
async fn verb_notifier(verb: &Command) -> anyhow::Result<Arc<Notifier>> {
    let client = match verb {
        Command::Start(a) => Some(&a.client),
        Command::Promote(a) => Some(&a.client),
        Command::Rollback(a) | Command::Pause(a) | Command::Resume(a) => Some(&a.client),
        _ => None,
    };
    let settings = match client {
        Some(c) => {
            let project = c.project.as_deref().unwrap_or_default().trim();
            let region = c.region.first().map_or("", |r| r.trim());
            Settings::from_args(&c.notify, project, region, None)?
        }
        None => Settings::default(),
    };
    Notifier::start(settings).await.map_err(anyhow::Error::msg)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let fd_limit = cutover::server::transport::raise_fd_limit();
            // Alerts on a thread of their own, evaluations below them (`flight`).
            cutover::flight::start_lanes();
            let app = cutover::server::build(&args, Clock::System).await?;
            if args.push_auth == PushAuthMode::None {
                tracing::warn!(
                    "CUTOVER_PUSH_AUTH=none: push requests are not authenticated, so anyone who can reach this port can start rollouts and trigger rollbacks; use it only with the Pub/Sub emulator or behind an authenticating front end"
                );
            }
            let addr = std::net::SocketAddr::from(([0, 0, 0, 0], args.port));
            let listener = cutover::server::transport::listen(addr)
                .with_context(|| format!("listening on {addr}"))?;
            tracing::info!(%addr, project = %app.project, regions = ?app.regions, fd_limit, "cutover serving");
            cutover::server::run(listener, app, cutover::server::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        verb => {
            // A verb prints its own result on stdout; only warnings of the layers below go to
            // stderr (its decisions are printed, not logged).
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,cutover::decision=off".into());
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(filter)
                .with_target(false)
                .init();
            let notifier = match verb_notifier(&verb).await {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("cutover: {e:#}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let told = |rec: &cutover::reconcile::DecisionRecord| notifier.handle(rec);
            let outcome = cutover::operate::run(verb, Clock::System, &told).await;
            // What the verb decided is told before the process ends, within a bound.
            notifier
                .shutdown(tokio::time::Instant::now() + VERB_NOTIFY_FLUSH)
                .await;
            match outcome {
                Ok(code) => Ok(ExitCode::from(code)),
                Err(e) => {
                    eprintln!("cutover: {e:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
