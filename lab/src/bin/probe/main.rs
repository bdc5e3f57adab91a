//! `cargo run --release --bin probe -- <probe>`: black-box probes of the real `cutover` binary,
//! on loopback against the in-process fakes, that print what they measured (the figures
//! `docs/reliability.md` quotes).
//!
//! Each probe is a subcommand in a module of its own:
//! - `inputs`: memory and log volume under valid pushes with enormous ids and summaries;
//! - `transport`: slow and half-sent connections against `/healthz` and valid pushes, the
//!   server's descriptors, and unauthenticated near-1 MiB bodies against its memory.

use clap::{Parser, Subcommand};

mod inputs;
mod process;
mod transport;

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
    /// Half-sent connections vs /healthz and pushes; unauthenticated bodies vs memory.
    Transport(transport::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().probe {
        Probe::Inputs(args) => inputs::run(args).await,
        Probe::Transport(args) => transport::run(args).await,
    }
}
