//! `cargo run --release --bin probe -- <probe>`: black-box probes of the real `cutover` binary,
//! on loopback against the in-process fakes, that print what they measured.
//!
//! - `inputs`: memory and log volume under valid pushes with enormous ids and summaries.

use clap::{Parser, Subcommand};

mod inputs;

#[derive(Parser, Debug)]
#[command(about = "Black-box probes of the cutover binary, on loopback against the fakes")]
struct Cli {
    #[command(subcommand)]
    probe: Probe,
}

#[derive(Subcommand, Debug)]
enum Probe {
    /// Valid pushes with 700 KB ids and 200 KB summaries: RSS and log bytes against idle.
    Inputs(inputs::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().probe {
        Probe::Inputs(args) => inputs::run(args).await,
    }
}
