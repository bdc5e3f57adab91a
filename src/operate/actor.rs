//! Who is acting when a person runs a verb: recorded in the decision record, the
//! `cutover.dev/actor` annotation and the rollout's history.
//!
//! The credentials' own account is used when cutover can know it without another API call: a
//! service account key's `client_email` (application default credentials), or the metadata
//! server's account. User credentials (`gcloud auth application-default login`) carry no email
//! cutover can read offline, and `CUTOVER_AUTH=none` carries none at all: then `--actor NAME` is
//! required. A change to production traffic with nobody's name on it is what the history exists
//! to prevent; the name is informational (Cloud Audit Logs keep the principal of every PATCH),
//! which is why a given `--actor` is accepted as is, but never overrides a known account.

use std::path::PathBuf;

use anyhow::bail;

use crate::gcp::metadata;
use crate::gcp::token::AuthMode;

/// The account of the credentials, when known.
pub async fn account(
    mode: AuthMode,
    http: &reqwest::Client,
    metadata_host: &str,
) -> Option<String> {
    match mode {
        AuthMode::None => None,
        AuthMode::Metadata => metadata_email(http, metadata_host).await,
        AuthMode::Auto => match adc_file() {
            // A credentials file decides: its account, or none (user credentials).
            Some(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|v| v["client_email"].as_str().map(String::from)),
            None => metadata_email(http, metadata_host).await,
        },
    }
}

async fn metadata_email(http: &reqwest::Client, host: &str) -> Option<String> {
    metadata::get(http, host, "instance/service-accounts/default/email")
        .await
        .ok()
}

/// Where application default credentials are read from, if there is such a file.
fn adc_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        return Some(PathBuf::from(p));
    }
    let config = std::env::var_os("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/gcloud")))?;
    let path = config.join("application_default_credentials.json");
    path.exists().then_some(path)
}

/// The actor of a verb: the account when known, else `given`; an error when neither.
pub async fn resolve(
    mode: AuthMode,
    http: &reqwest::Client,
    metadata_host: &str,
    given: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(account) = account(mode, http, metadata_host).await {
        return Ok(account);
    }
    match given.map(str::trim).filter(|g| !g.is_empty()) {
        Some(name) => Ok(name.to_string()),
        None => bail!(
            "cannot tell who is acting from these credentials; pass --actor NAME (it is recorded with the change)"
        ),
    }
}
