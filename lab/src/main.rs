//! The `lab` binary: `lab demo` and `lab simulate` (`cargo run --release -- demo` at the
//! repository root runs it).

use clap::Parser;

use cutover_lab::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(args) => Ok(cutover_lab::demo::run(args.scenario, args.screenshot).await?),
        Command::Simulate(args) => Ok(cutover_lab::simulate::run(&args)?),
    }
}
