//! What every probe needs to run the real server: the release `cutover` binary, its memory
//! as the kernel counts it, and a loopback key server so it can run with push authentication
//! on.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use axum::routing::get;
use cutover_fakes::oidc;

/// The product's `cutover` binary next to this one (the workspace's `target/release/`), built
/// first with `cargo build --release -p cutover --bin cutover` so it matches the source: the
/// lab's binaries do not depend on it, so `cargo run --bin bench` alone would not build it.
pub(crate) fn cutover_binary() -> Result<PathBuf> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "cutover", "--bin", "cutover"])
        .status()
        .context("running cargo build")?;
    let bin = std::env::current_exe()?.with_file_name("cutover");
    if !status.success() || !bin.exists() {
        bail!(
            "could not build the server ({}): cargo build --release -p cutover --bin cutover",
            bin.display()
        );
    }
    Ok(bin)
}

pub(crate) fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for process {pid}"))
}

/// A local JWKS endpoint publishing the test signing key; its URL.
pub(crate) async fn jwks() -> Result<String> {
    let app = axum::Router::new().route("/certs", get(|| async { axum::Json(oidc::jwks_json()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/certs"))
}
