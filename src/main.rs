//! The `cutover` binary: parse settings, start logging, run a subcommand.
//!
//! Kept thin so that tests and the lab's demo drive the same library entry points. `serve` runs
//! the server; the operator verbs (`status`, `promote`, …) are `cutover::operate`'s. The demo
//! and the simulator are the lab's (`lab/`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use cutover::clock::Clock;
use cutover::config::{Cli, Command, LogFormat, PushAuthMode};

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

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let fd_limit = cutover::server::transport::raise_fd_limit();
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
            match cutover::operate::run(verb, Clock::System).await {
                Ok(code) => Ok(ExitCode::from(code)),
                Err(e) => {
                    eprintln!("cutover: {e:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
