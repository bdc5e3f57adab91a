//! cutover settings for running against the fakes on this machine.
//!
//! The demo, the bench and the tests all start the real server pointed at a [`FakeGcp`]: every
//! Google endpoint and the metadata server on the fake, no credentials, no push auth. Every
//! setting that matters is passed explicitly, so the caller's environment (`CUTOVER_*` variables)
//! cannot change what runs; `extra` flags come last and win.

use clap::Parser;

use super::FakeGcp;
use crate::config::{Cli, Command, ServeArgs};

/// `cutover serve` settings for `project`/`region` on `fake`, plus `extra` flags.
pub fn serve_args(
    fake: &FakeGcp,
    project: &str,
    region: &str,
    extra: &[&str],
) -> Result<ServeArgs, String> {
    let base = fake.base_url();
    let metadata = fake.metadata_host();
    let mut argv: Vec<&str> = vec![
        "cutover",
        "serve",
        "--project",
        project,
        "--region",
        region,
        "--regions",
        region,
        "--run-endpoint",
        &base,
        "--monitoring-endpoint",
        &base,
        "--metadata-host",
        &metadata,
        "--auth",
        "none",
        "--push-auth",
        "none",
        "--log-format",
        "text",
    ];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .command
    {
        Command::Serve(args) => Ok(*args),
        _ => Err("not a serve command".into()),
    }
}
