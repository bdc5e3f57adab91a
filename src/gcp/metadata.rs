//! The metadata server: project id and region when they are not configured.
//!
//! On Cloud Run neither is in the environment (`docs/gcp-wire.md` §7). Requests carry
//! `Metadata-Flavor: Google`; answers are trimmed (whether they end in a newline is not
//! documented). The host comes from `GCE_METADATA_HOST`, like Google's own libraries.

use std::time::Duration;

/// Default metadata host.
pub const DEFAULT_HOST: &str = "metadata.google.internal";

/// Reads one metadata value (`project/project-id`, `instance/region`, …).
pub async fn get(http: &reqwest::Client, host: &str, path: &str) -> Result<String, String> {
    let url = format!("http://{host}/computeMetadata/v1/{path}");
    let resp = http
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("metadata server at {host} unreachable ({e})"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "metadata server answered {} for {path}",
            resp.status()
        ));
    }
    let text = resp
        .text()
        .await
        .map_err(|e| format!("metadata {path}: {e}"))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(format!("metadata {path} is empty"));
    }
    Ok(text)
}

/// The project id this instance runs in.
pub async fn project_id(http: &reqwest::Client, host: &str) -> Result<String, String> {
    get(http, host, "project/project-id").await
}

/// The region this instance runs in (`projects/123/regions/us-central1` → `us-central1`).
pub async fn region(http: &reqwest::Client, host: &str) -> Result<String, String> {
    let v = get(http, host, "instance/region").await?;
    Ok(v.rsplit('/').next().unwrap_or(&v).to_string())
}
