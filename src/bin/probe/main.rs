//! `cargo run --release --bin probe -- <probe>`: black-box probes of the real `cutover` binary,
//! run on loopback against the in-process fakes, that print the figures `docs/reliability.md`
//! quotes.
//!
//! Each probe is a subcommand in a module of its own:
//! - `transport`: slow and half-sent connections against `/healthz` and valid pushes, the
//!   server's descriptors, and unauthenticated near-1 MiB bodies against its memory.

mod transport;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "Black-box probes of the cutover binary, on loopback against the fakes")]
struct Cli {
    #[command(subcommand)]
    probe: Probe,
}

#[derive(Subcommand, Debug)]
enum Probe {
    /// Half-sent connections vs /healthz and pushes; unauthenticated bodies vs memory.
    Transport(transport::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().probe {
        Probe::Transport(args) => transport::run(args).await,
    }
}
