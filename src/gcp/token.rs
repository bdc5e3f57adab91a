//! Access tokens for outbound Google API calls.
//!
//! Tokens come from Google's own `google-cloud-auth` (application default credentials, or the
//! metadata server on Cloud Run), which caches and refreshes them. `None` sends no
//! Authorization header at all, for the fakes and emulators.

use google_cloud_auth::credentials::{self, AccessTokenCredentials};

use super::ApiError;

/// Where bearer tokens come from.
#[derive(Clone)]
pub enum TokenSource {
    /// No Authorization header (fakes, emulators).
    None,
    /// Google credentials (cached and refreshed by `google-cloud-auth`).
    Google(AccessTokenCredentials),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenSource::None => "TokenSource::None",
            TokenSource::Google(_) => "TokenSource::Google",
        })
    }
}

/// Which credentials to use (`CUTOVER_AUTH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Application default credentials if present, else the metadata server.
    Auto,
    /// The metadata server only (`GCE_METADATA_HOST` overrides its host).
    Metadata,
    /// No credentials.
    None,
}

impl TokenSource {
    /// Builds the token source for `mode`; `metadata_host` is where the metadata server is
    /// (`GCE_METADATA_HOST`).
    pub fn new(mode: AuthMode, metadata_host: &str) -> Result<TokenSource, String> {
        let scopes = ["https://www.googleapis.com/auth/cloud-platform"];
        match mode {
            AuthMode::None => Ok(TokenSource::None),
            AuthMode::Auto => credentials::Builder::default()
                .with_scopes(scopes)
                .build_access_token_credentials()
                .map(TokenSource::Google)
                .map_err(|e| format!("application default credentials: {e}")),
            AuthMode::Metadata => credentials::mds::Builder::default()
                .with_endpoint(format!("http://{metadata_host}"))
                .with_scopes(scopes)
                .build_access_token_credentials()
                .map(TokenSource::Google)
                .map_err(|e| format!("metadata server credentials: {e}")),
        }
    }

    /// The current token, or `None` when no header is to be sent.
    pub async fn token(&self) -> Result<Option<String>, ApiError> {
        match self {
            TokenSource::None => Ok(None),
            TokenSource::Google(c) => c
                .access_token()
                .await
                .map(|t| Some(t.token))
                .map_err(ApiError::Token),
        }
    }
}
