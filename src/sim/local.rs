//! cutover settings for running against the fakes on this machine.
//!
//! The demo, the bench and the tests all start the real server (in-process, or as the binary)
//! pointed at a [`FakeGcp`]: every Google endpoint and the metadata server on the fake, no
//! credentials, no push auth. Every setting that matters is passed explicitly, so the caller's
//! environment (`CUTOVER_*` variables) cannot change what runs; `extra` flags come last and win.

use clap::Parser;

use super::FakeGcp;
use crate::config::{Cli, Command, ServeArgs};

/// The `cutover serve` flags that point it at `fake` for `project`/`region`.
pub fn flags(fake: &FakeGcp, project: &str, region: &str) -> Vec<String> {
    let base = fake.base_url();
    let metadata = fake.metadata_host();
    [
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
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `cutover serve` settings for `project`/`region` on `fake`, plus `extra` flags.
pub fn serve_args<S: AsRef<str>>(
    fake: &FakeGcp,
    project: &str,
    region: &str,
    extra: &[S],
) -> Result<ServeArgs, String> {
    let argv = ["cutover".to_string(), "serve".to_string()]
        .into_iter()
        .chain(flags(fake, project, region))
        .chain(extra.iter().map(|s| s.as_ref().to_string()));
    match Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .command
    {
        Command::Serve(args) => Ok(*args),
        _ => Err("not a serve command".into()),
    }
}
