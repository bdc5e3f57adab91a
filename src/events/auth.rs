//! Push authentication: verifying the OIDC token Pub/Sub attaches to each push request.
//!
//! With `pushConfig.oidcToken` set, every push request carries `Authorization: Bearer <jwt>`, an
//! RS256 ID token Google signed for the subscription's service account. The token is what stops
//! anyone who learns the endpoint URL from injecting fake "build succeeded" or "incident closed"
//! events, so the rules are strict and fixed: RS256 only (no algorithm taken on the token's
//! word), a key from Google's JWKS chosen by `kid`, a Google issuer, the exact audience of the
//! endpoint, unexpired, not issued in the future, living no longer than Google's push tokens do,
//! and an allowed, verified service-account email.
//!
//! **One audience per endpoint.** `/pubsub/builds` expects `<CUTOVER_PUSH_AUDIENCE>/builds`,
//! `/pubsub/alerts` `<…>/alerts` and `/pubsub/ticks` `<…>/ticks` (each push subscription sets
//! its own `oidcToken.audience`), so a token captured on one endpoint cannot be replayed on
//! another, e.g. a tick's token used to post a forged incident. Checking the envelope's
//! `subscription` field instead would bind nothing: the field is in the request body, which
//! the token's signature does not cover, so whoever holds a token can write any subscription
//! name next to it.
//!
//! **Bounded lifetime.** Pub/Sub's tokens are valid for one hour (`exp − iat` = 3600 s). A token
//! claiming a longer life (`exp` ten years, or 1e300 seconds, ahead), or one without `iat`, is
//! refused, as is one whose `exp` is more than an hour (plus leeway) from now: a leaked token
//! stays usable for at most the hour Google gives it.
//!
//! Google's signing keys are cached. A cold cache or an unknown `kid` triggers a fetch, but only
//! one fetch runs at a time and requests that waited for it reuse its result (single flight), so
//! 50 simultaneous first requests cost one fetch. Unknown-`kid` refetches are rate-limited, so
//! tokens with random key ids cannot make cutover hammer the JWKS endpoint. All time checks use
//! the caller's `now`, so tests control time.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::ids::text::excerpt;

/// Google's JWKS endpoint for the keys that sign ID tokens.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// The issuers Google puts in ID tokens.
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// Largest clock-skew leeway accepted; larger configured values are clamped to this.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// Longest life (`exp − iat`, and `exp − now`) of an accepted token, before leeway: what Google
/// gives the ID tokens Pub/Sub attaches to pushes.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The push endpoints, each with its own token audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PushEndpoint {
    /// `POST /pubsub/builds`.
    Builds,
    /// `POST /pubsub/alerts`.
    Alerts,
    /// `POST /pubsub/ticks`.
    Ticks,
    /// `POST /pubsub/evaluations`: one service per message, fanned out by a tick.
    Evaluations,
}

impl PushEndpoint {
    /// Every endpoint.
    pub const ALL: [PushEndpoint; 4] = [
        PushEndpoint::Builds,
        PushEndpoint::Alerts,
        PushEndpoint::Ticks,
        PushEndpoint::Evaluations,
    ];

    /// The last segment of the endpoint's path and of its audience (`builds`, `alerts`,
    /// `ticks`).
    pub fn name(self) -> &'static str {
        match self {
            PushEndpoint::Builds => "builds",
            PushEndpoint::Alerts => "alerts",
            PushEndpoint::Ticks => "ticks",
            PushEndpoint::Evaluations => "evaluations",
        }
    }

    /// The request path the endpoint is served at.
    pub fn path(self) -> &'static str {
        match self {
            PushEndpoint::Builds => "/pubsub/builds",
            PushEndpoint::Alerts => "/pubsub/alerts",
            PushEndpoint::Ticks => "/pubsub/ticks",
            PushEndpoint::Evaluations => "/pubsub/evaluations",
        }
    }

    /// The endpoint served at `path`, if any.
    pub fn from_path(path: &str) -> Option<PushEndpoint> {
        PushEndpoint::ALL.into_iter().find(|e| e.path() == path)
    }

    /// The audience tokens for this endpoint carry: `<base>/<name>` (a trailing `/` of `base`
    /// is ignored).
    pub fn audience(self, base: &str) -> String {
        format!("{}/{}", base.trim_end_matches('/'), self.name())
    }
}

/// Whether `url` may serve Google's signing keys: `https`, or plain `http` to a loopback
/// address only (the in-process key servers of tests and the demo; nothing on a network path
/// can tamper with loopback traffic).
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if crate::gcp::is_loopback(&parsed) => Ok(()),
        _ => Err(format!(
            "{url:?} must be an https URL (plain http is accepted only for a loopback address)"
        )),
    }
}

/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document read (Google's is about 2 KB).
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Longest `Authorization` token considered (Google's are about 1 KB).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Upper bound on how long keys are trusted without a successful refresh, whatever
/// `Cache-Control` says.
const MAX_KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// When a refresh of expired keys fails, the old keys stay usable this much longer: Google keeps
/// retired keys published for days, and a JWKS outage should not stop all pushes at once.
const STALE_GRACE: Duration = Duration::from_secs(6 * 3600);
/// Minimum pause between fetch attempts after a failed one (capped at `min_refresh_interval`).
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(2);
/// Longest attacker-controlled excerpt (key id, issuer, …) put in an error message.
const MAX_EXCERPT: usize = 96;

/// How push requests are authenticated.
#[derive(Debug, Clone)]
pub enum PushAuth {
    /// No authentication: for the Pub/Sub emulator (which sends no token) and local demos.
    None,
    /// Require a Google-signed OIDC token.
    Google(GoogleVerifier),
}

impl PushAuth {
    /// Checks a request's `Authorization` header value.
    ///
    /// `Ok(None)` when authentication is disabled (the header is then ignored), `Ok(Some(id))`
    /// for a valid token for `endpoint`.
    pub async fn check(
        &self,
        authorization: Option<&str>,
        endpoint: PushEndpoint,
        now: jiff::Timestamp,
    ) -> Result<Option<PushIdentity>, AuthError> {
        match self {
            PushAuth::None => Ok(None),
            PushAuth::Google(v) => v.verify(authorization, endpoint, now).await.map(Some),
        }
    }
}

/// Who sent a push request, according to its verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushIdentity {
    /// The service account email (`email` claim), as spelled in the token.
    pub email: String,
    /// The account's unique numeric id (`sub` claim).
    pub subject: String,
}

/// Why a push request's token was rejected.
///
/// Messages never include the token; attacker-chosen claim values are quoted, truncated and
/// stripped of control characters. Everything except [`AuthError::KeysUnavailable`] means "not
/// authenticated" (answer 401); see [`AuthError::is_transient`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or an empty bearer token.
    #[error("no bearer token in the Authorization header")]
    MissingToken,
    /// Not `Bearer <jwt>`, not a JWT, a disallowed algorithm, or a missing/mistyped claim.
    #[error("malformed push token: {0}")]
    Malformed(String),
    /// The token's `kid` is not in Google's current key set.
    #[error("push token is signed with unknown key id {0:?}")]
    UnknownKey(String),
    /// The signature does not verify with the key named by `kid`.
    #[error("push token signature is invalid")]
    BadSignature,
    /// `iss` is not Google.
    #[error("push token issuer {0:?} is not Google")]
    WrongIssuer(String),
    /// `aud` is not the endpoint's audience.
    #[error("push token audience {0:?} is not this endpoint's audience")]
    WrongAudience(String),
    /// `exp` is in the past (beyond the leeway).
    #[error("push token has expired")]
    Expired,
    /// `exp` is further from `iat`, or from now, than [`MAX_TOKEN_LIFETIME`] plus the leeway.
    #[error("push token lives longer than Google's push tokens do")]
    TooLongLived,
    /// `iat` or `nbf` is in the future (beyond the leeway).
    #[error("push token is not valid yet (issued in the future)")]
    NotYetValid,
    /// `email` is not one of the allowed push service accounts.
    #[error("push token email {0:?} is not an allowed push service account")]
    WrongEmail(String),
    /// `email_verified` is not true.
    #[error("push token email is not verified")]
    EmailNotVerified,
    /// Google's keys could not be fetched and none usable are cached. Transient.
    #[error("Google signing keys are unavailable: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    /// Whether the failure is on cutover's side and may go away by itself (answer 503 so
    /// Pub/Sub redelivers), rather than a bad token (answer 401).
    pub fn is_transient(&self) -> bool {
        matches!(self, AuthError::KeysUnavailable(_))
    }
}

/// Settings for [`GoogleVerifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleVerifierConfig {
    /// Where Google's signing keys are published ([`GOOGLE_JWKS_URL`]; a local fake in tests).
    pub jwks_url: String,
    /// The base of the audiences required: a token for `/pubsub/<name>` must carry exactly
    /// `<audience>/<name>` (see [`PushEndpoint::audience`]), as set in each push subscription's
    /// `oidcToken.audience`.
    pub audience: String,
    /// Service-account emails allowed to push (compared case-insensitively). Empty allows
    /// nobody.
    pub service_accounts: Vec<String>,
    /// Clock-skew allowance for `exp`, `iat` and `nbf`; at most [`MAX_LEEWAY`]. Default 30 s.
    pub leeway: Duration,
    /// Minimum time between key-set fetches caused by an unknown `kid`. Default 30 s.
    pub min_refresh_interval: Duration,
    /// How long fetched keys are trusted when the response has no `Cache-Control: max-age`.
    /// Default 1 h.
    pub key_ttl: Duration,
}

impl Default for GoogleVerifierConfig {
    /// Google's key set and default timings, with an empty audience and no allowed accounts
    /// (which rejects every token until both are set).
    fn default() -> Self {
        GoogleVerifierConfig {
            jwks_url: GOOGLE_JWKS_URL.to_owned(),
            audience: String::new(),
            service_accounts: Vec::new(),
            leeway: Duration::from_secs(30),
            min_refresh_interval: Duration::from_secs(30),
            key_ttl: Duration::from_secs(3600),
        }
    }
}

impl GoogleVerifierConfig {
    /// Defaults (Google's key set, 30 s leeway, 30 s refresh interval, 1 h TTL) for the given
    /// audience and allowed service accounts.
    pub fn new(audience: impl Into<String>, service_accounts: Vec<String>) -> Self {
        GoogleVerifierConfig {
            audience: audience.into(),
            service_accounts,
            ..GoogleVerifierConfig::default()
        }
    }
}

/// Verifies Google-signed push tokens against a cached copy of Google's keys.
///
/// Cheap to clone; clones share the key cache.
#[derive(Clone)]
pub struct GoogleVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: GoogleVerifierConfig,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Held while fetching, so at most one fetch runs at a time.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// When the keys stop being fresh; `None` until the first successful fetch.
    expires_at: Option<Instant>,
    /// When the last fetch attempt (successful or not) finished.
    last_attempt: Option<Instant>,
    /// Why the last attempt failed; `None` after a success.
    last_error: Option<String>,
    /// Number of fetch attempts so far; lets a waiter see that someone fetched meanwhile.
    attempts: u64,
}

/// What the cache can say about a key id without fetching.
enum Lookup {
    Found(Arc<DecodingKey>),
    Unknown,
    Unavailable(String),
    NeedFetch,
}

impl fmt::Debug for GoogleVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleVerifier")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl GoogleVerifier {
    /// A verifier with an empty key cache (keys are fetched on first use). `leeway` is clamped
    /// to [`MAX_LEEWAY`].
    ///
    /// The verifier fetches keys with a client of its own that follows no redirect: the key set
    /// is trusted for where it was fetched from, so an answer pointing elsewhere is a failure
    /// (a transient one: [`AuthError::KeysUnavailable`]), never a second fetch from wherever it
    /// points. Fails only if no HTTP client can be built (no TLS backend).
    pub fn new(cfg: GoogleVerifierConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client for the signing keys: {e}"))?;
        let mut cfg = cfg;
        if cfg.leeway > MAX_LEEWAY {
            tracing::warn!(
                configured_secs = cfg.leeway.as_secs(),
                "push token leeway clamped to {} s",
                MAX_LEEWAY.as_secs()
            );
            cfg.leeway = MAX_LEEWAY;
        }
        Ok(GoogleVerifier {
            inner: Arc::new(Inner {
                cfg,
                http,
                cache: RwLock::new(KeyCache::default()),
                refresh: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The configuration in effect (after clamping).
    pub fn config(&self) -> &GoogleVerifierConfig {
        &self.inner.cfg
    }

    /// Verifies the `Authorization` header value of a push request to `endpoint` at time `now`.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        endpoint: PushEndpoint,
        now: jiff::Timestamp,
    ) -> Result<PushIdentity, AuthError> {
        let token = bearer_token(authorization)?;
        let kid = rs256_kid(token)?;
        let key = self.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        // Claims are checked below against the caller's `now`, not the system clock.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| jwt_error(e.kind()))?;
        let audience = endpoint.audience(&self.inner.cfg.audience);
        check_claims(&data.claims, &self.inner.cfg, &audience, now)
    }

    /// The key for `kid`, fetching Google's key set if needed (one fetch at a time).
    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        let seen_attempts = {
            let cache = self.read_cache();
            match self.lookup(&cache, kid, Instant::now()) {
                Lookup::NeedFetch => cache.attempts,
                other => return answer(other, kid),
            }
        };

        let _single_flight = self.inner.refresh.lock().await;
        {
            let cache = self.read_cache();
            if cache.attempts != seen_attempts {
                // Someone fetched while we waited: use that result rather than fetch again.
                return answer_from(&cache, kid, Instant::now());
            }
            match self.lookup(&cache, kid, Instant::now()) {
                Lookup::NeedFetch => {}
                other => return answer(other, kid),
            }
        }

        let outcome = self.fetch_keys().await;
        let finished = Instant::now();
        let mut cache = self.write_cache();
        cache.attempts = cache.attempts.wrapping_add(1);
        cache.last_attempt = Some(finished);
        match outcome {
            Ok((keys, ttl)) => {
                tracing::debug!(
                    keys = keys.len(),
                    ttl_secs = ttl.as_secs(),
                    "fetched push token keys"
                );
                cache.keys = keys;
                cache.expires_at = Some(finished.checked_add(ttl).unwrap_or(finished));
                cache.last_error = None;
            }
            Err(reason) => {
                tracing::warn!(%reason, "fetching push token keys failed");
                cache.last_error = Some(reason);
            }
        }
        answer_from(&cache, kid, finished)
    }

    fn lookup(&self, cache: &KeyCache, kid: &str, now: Instant) -> Lookup {
        let fresh = cache.expires_at.is_some_and(|e| now < e);
        if fresh && let Some(key) = cache.keys.get(kid) {
            return Lookup::Found(Arc::clone(key));
        }
        // Either the keys are stale (or were never fetched) or the kid is unknown.
        let window = if fresh {
            self.inner.cfg.min_refresh_interval
        } else if cache.last_error.is_some() {
            FAILED_FETCH_BACKOFF.min(self.inner.cfg.min_refresh_interval)
        } else {
            Duration::ZERO
        };
        let throttled = cache
            .last_attempt
            .is_some_and(|t| now.saturating_duration_since(t) < window);
        if !throttled {
            return Lookup::NeedFetch;
        }
        if let Some(key) = usable_key(cache, kid, now) {
            return Lookup::Found(key);
        }
        match &cache.last_error {
            Some(e) => Lookup::Unavailable(e.clone()),
            None => Lookup::Unknown,
        }
    }

    fn read_cache(&self) -> RwLockReadGuard<'_, KeyCache> {
        // The cache is always left consistent, so a poisoned lock is still usable.
        self.inner
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_cache(&self) -> RwLockWriteGuard<'_, KeyCache> {
        self.inner
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fetches and parses the key set; returns the usable RS256 keys and how long to trust them.
    async fn fetch_keys(&self) -> Result<(HashMap<String, Arc<DecodingKey>>, Duration), String> {
        let cfg = &self.inner.cfg;
        let url = &cfg.jwks_url;
        let mut resp = self
            .inner
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(format!(
                "{url} answered HTTP {status}; redirects are not followed"
            ));
        }
        if !status.is_success() {
            return Err(format!("{url} answered HTTP {status}"));
        }
        let ttl = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .map(|age| age.clamp(cfg.min_refresh_interval, MAX_KEY_TTL))
            .unwrap_or(cfg.key_ttl.min(MAX_KEY_TTL));

        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("{url} sent more than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse_jwks(&body).map_err(|e| format!("{url}: {e}"))?;
        Ok((keys, ttl))
    }
}

/// Turns a cache verdict into the verifier's answer.
fn answer(lookup: Lookup, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
    match lookup {
        Lookup::Found(key) => Ok(key),
        Lookup::Unavailable(reason) => Err(AuthError::KeysUnavailable(reason)),
        Lookup::Unknown | Lookup::NeedFetch => {
            Err(AuthError::UnknownKey(excerpt(kid, MAX_EXCERPT)))
        }
    }
}

/// The answer after a fetch (ours or a concurrent one): no further fetching.
fn answer_from(cache: &KeyCache, kid: &str, now: Instant) -> Result<Arc<DecodingKey>, AuthError> {
    if let Some(key) = usable_key(cache, kid, now) {
        return Ok(key);
    }
    match &cache.last_error {
        Some(reason) => Err(AuthError::KeysUnavailable(reason.clone())),
        None => Err(AuthError::UnknownKey(excerpt(kid, MAX_EXCERPT))),
    }
}

/// A cached key that may still be used: fresh, or stale within [`STALE_GRACE`].
fn usable_key(cache: &KeyCache, kid: &str, now: Instant) -> Option<Arc<DecodingKey>> {
    let expires_at = cache.expires_at?;
    let usable_until = expires_at.checked_add(STALE_GRACE).unwrap_or(expires_at);
    (now < usable_until)
        .then(|| cache.keys.get(kid).map(Arc::clone))
        .flatten()
}

/// The `max-age` of a `Cache-Control` header value, if any.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

/// The RS256 keys of a JWKS document, by key id. Entries for other key types or algorithms, or
/// that do not parse, are skipped; a document with no usable key is an error.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("key set is not JSON: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("key set has no `keys` array")?;
    let mut keys = HashMap::new();
    for entry in entries {
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        let rsa = field("kty") == Some("RSA");
        let rs256 = field("alg").is_none_or(|a| a == "RS256");
        let signing = field("use").is_none_or(|u| u == "sig");
        let (Some(kid), Some(n), Some(e)) = (field("kid"), field("n"), field("e")) else {
            continue;
        };
        if !(rsa && rs256 && signing) || kid.is_empty() {
            continue;
        }
        match DecodingKey::from_rsa_components(n, e) {
            Ok(key) => {
                keys.insert(kid.to_owned(), Arc::new(key));
            }
            Err(err) => {
                tracing::warn!(kid = %excerpt(kid, MAX_EXCERPT), %err, "skipping unusable key")
            }
        }
    }
    if keys.is_empty() {
        return Err("key set has no usable RS256 key".to_owned());
    }
    Ok(keys)
}

/// The token in `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(AuthError::MissingToken)?;
    if value.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        AuthError::Malformed("Authorization header is not `Bearer <token>`".to_owned())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed(
            "Authorization scheme is not Bearer".to_owned(),
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Malformed(format!(
            "token is longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    Ok(token)
}

/// Checks the token's header and returns its key id. Only `alg: RS256` is accepted, whatever
/// the key could do, so a token cannot pick a weaker or keyless algorithm (`none`, `HS256`).
fn rs256_kid(token: &str) -> Result<String, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_claims), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "token is not a JWT (three dot-separated parts)".to_owned(),
        ));
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed("token header is not base64url".to_owned()))?;
    let header: Map<String, Value> = serde_json::from_slice(&header)
        .map_err(|_| AuthError::Malformed("token header is not a JSON object".to_owned()))?;
    match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => {}
        Some(alg) => {
            return Err(AuthError::Malformed(format!(
                "token algorithm {:?} is not RS256",
                excerpt(alg, 16)
            )));
        }
        None => return Err(AuthError::Malformed("token header has no alg".to_owned())),
    }
    if header.contains_key("crit") {
        return Err(AuthError::Malformed(
            "token header has critical extensions".to_owned(),
        ));
    }
    match header.get("kid").and_then(Value::as_str) {
        Some(kid) if !kid.is_empty() => Ok(kid.to_owned()),
        _ => Err(AuthError::Malformed("token header has no kid".to_owned())),
    }
}

/// Maps a `jsonwebtoken` failure to an [`AuthError`] without echoing any token content.
fn jwt_error(kind: &ErrorKind) -> AuthError {
    let why = match kind {
        ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            return AuthError::BadSignature;
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not allowed",
        ErrorKind::Base64(_) => "token is not base64url",
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => "token claims are not a JSON object",
        ErrorKind::InvalidToken => "token is not a JWT",
        _ => "token could not be verified",
    };
    AuthError::Malformed(why.to_owned())
}

/// Checks the verified claims against the configuration and the endpoint's `audience` at time
/// `now`.
fn check_claims(
    claims: &Map<String, Value>,
    cfg: &GoogleVerifierConfig,
    audience: &str,
    now: jiff::Timestamp,
) -> Result<PushIdentity, AuthError> {
    let string = |name: &str| claims.get(name).and_then(Value::as_str);
    let missing = |name: &str| AuthError::Malformed(format!("token has no `{name}` claim"));

    let iss = string("iss").ok_or_else(|| missing("iss"))?;
    if !GOOGLE_ISSUERS.contains(&iss) {
        return Err(AuthError::WrongIssuer(excerpt(iss, MAX_EXCERPT)));
    }

    match claims.get("aud") {
        Some(Value::String(aud)) if aud == audience => {}
        Some(Value::String(aud)) => {
            return Err(AuthError::WrongAudience(excerpt(aud, MAX_EXCERPT)));
        }
        Some(other) => {
            return Err(AuthError::WrongAudience(excerpt(
                &other.to_string(),
                MAX_EXCERPT,
            )));
        }
        None => return Err(missing("aud")),
    }

    let time = |name: &str| -> Result<Option<i64>, AuthError> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => numeric_date(v).map(Some).ok_or_else(|| {
                AuthError::Malformed(format!("token claim `{name}` is not a number"))
            }),
        }
    };
    let now = now.as_second();
    let leeway = i64::try_from(cfg.leeway.as_secs()).unwrap_or(i64::MAX);
    let exp = time("exp")?.ok_or_else(|| missing("exp"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(AuthError::Expired);
    }
    let iat = time("iat")?.ok_or_else(|| missing("iat"))?;
    let nbf = time("nbf")?;
    if [Some(iat), nbf]
        .into_iter()
        .flatten()
        .any(|t| t > now.saturating_add(leeway))
    {
        return Err(AuthError::NotYetValid);
    }
    let longest = i64::try_from(MAX_TOKEN_LIFETIME.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_add(leeway);
    if exp.saturating_sub(iat) > longest || exp.saturating_sub(now) > longest {
        return Err(AuthError::TooLongLived);
    }

    let email = string("email").ok_or_else(|| missing("email"))?;
    if !cfg
        .service_accounts
        .iter()
        .any(|sa| sa.trim().eq_ignore_ascii_case(email))
    {
        return Err(AuthError::WrongEmail(excerpt(email, MAX_EXCERPT)));
    }
    let verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    if !verified {
        return Err(AuthError::EmailNotVerified);
    }

    let subject = string("sub").ok_or_else(|| missing("sub"))?;
    Ok(PushIdentity {
        email: email.to_owned(),
        subject: subject.to_owned(),
    })
}

/// A JWT NumericDate: integer seconds, or a finite float (truncated).
fn numeric_date(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite())
            // `as` saturates at the i64 bounds, which is the right answer for absurd dates.
            .map(|f| f as i64)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use cutover_fakes::oidc::{self as testing, KID, bearer};

    const NOW: i64 = 1_787_220_000;
    /// The base audience (`CUTOVER_PUSH_AUDIENCE`).
    const BASE: &str = "https://cutover-3f2a1b-uc.a.run.app/push";
    /// The audience of `/pubsub/builds`, where [`check`] sends its tokens.
    const AUD: &str = "https://cutover-3f2a1b-uc.a.run.app/push/builds";
    const SA: &str = "pubsub-push@acme-prod.iam.gserviceaccount.com";

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::from_second(NOW).expect("valid time")
    }

    fn claims() -> Value {
        testing::google_claims(AUD, SA, NOW - 60, NOW + 3540)
    }

    fn claims_with(patch: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut c = claims();
        if let Some(m) = c.as_object_mut() {
            patch(m);
        }
        c
    }

    #[derive(Clone)]
    struct ServerState {
        hits: Arc<AtomicUsize>,
        body: Arc<Mutex<Value>>,
        fail: Arc<AtomicBool>,
        delay: Duration,
        cache_control: Option<&'static str>,
    }

    /// An in-process JWKS endpoint that counts how often it is fetched.
    struct JwksServer {
        url: String,
        state: ServerState,
    }

    impl JwksServer {
        async fn start() -> JwksServer {
            JwksServer::start_with(Duration::ZERO, None).await
        }

        async fn start_with(delay: Duration, cache_control: Option<&'static str>) -> JwksServer {
            let state = ServerState {
                hits: Arc::new(AtomicUsize::new(0)),
                body: Arc::new(Mutex::new(testing::jwks_json())),
                fail: Arc::new(AtomicBool::new(false)),
                delay,
                cache_control,
            };
            let app = axum::Router::new()
                .route("/oauth2/v3/certs", axum::routing::get(certs))
                .with_state(state.clone());
            JwksServer {
                url: format!("{}/oauth2/v3/certs", serve_locally(app).await),
                state,
            }
        }

        fn hits(&self) -> usize {
            self.state.hits.load(Ordering::SeqCst)
        }

        fn set_body(&self, body: Value) {
            *self.state.body.lock().expect("lock") = body;
        }

        fn set_failing(&self, fail: bool) {
            self.state.fail.store(fail, Ordering::SeqCst);
        }
    }

    /// Serves `app` on a loopback port; its base URL.
    async fn serve_locally(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    async fn certs(State(s): State<ServerState>) -> Response {
        s.hits.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(s.delay).await;
        if s.fail.load(Ordering::SeqCst) {
            return (StatusCode::INTERNAL_SERVER_ERROR, "backend error").into_response();
        }
        let body = s.body.lock().expect("lock").clone();
        let mut resp = axum::Json(body).into_response();
        if let Some(cc) = s.cache_control {
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
        }
        resp
    }

    fn config(url: &str) -> GoogleVerifierConfig {
        GoogleVerifierConfig {
            jwks_url: url.to_owned(),
            ..GoogleVerifierConfig::new(BASE, vec![SA.to_owned()])
        }
    }

    fn verifier(url: &str) -> GoogleVerifier {
        GoogleVerifier::new(config(url)).expect("a client")
    }

    fn verifier_with(url: &str, tweak: impl FnOnce(&mut GoogleVerifierConfig)) -> GoogleVerifier {
        let mut cfg = config(url);
        tweak(&mut cfg);
        GoogleVerifier::new(cfg).expect("a client")
    }

    async fn check(v: &GoogleVerifier, token: &str) -> Result<PushIdentity, AuthError> {
        v.verify(Some(&bearer(token)), PushEndpoint::Builds, now())
            .await
    }

    /// A token with a hand-made header and signature (for algorithm-confusion tests).
    fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"));
        format!(
            "{}.{}.{}",
            enc(header),
            enc(claims),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    #[tokio::test]
    async fn valid_token_is_accepted() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        let id = check(&v, &testing::sign(&claims())).await.expect("valid");
        assert_eq!(
            id,
            PushIdentity {
                email: SA.to_owned(),
                subject: testing::TEST_SUBJECT.to_owned()
            }
        );
        assert_eq!(server.hits(), 1);

        // Second verification is served from the cache.
        check(&v, &testing::sign(&claims())).await.expect("valid");
        assert_eq!(server.hits(), 1);

        // Through PushAuth, with a lowercase scheme.
        let auth = PushAuth::Google(v.clone());
        let header = format!("bearer {}", testing::sign(&claims()));
        let id = auth
            .check(Some(&header), PushEndpoint::Builds, now())
            .await
            .expect("valid");
        assert_eq!(id.map(|i| i.email), Some(SA.to_owned()));
    }

    #[tokio::test]
    async fn accepted_claim_variants() {
        let server = JwksServer::start().await;
        let v = verifier_with(&server.url, |c| {
            c.service_accounts = vec!["someone@else.example".into(), SA.to_uppercase()];
        });
        for c in [
            claims_with(|c| {
                c.insert("iss".into(), json!("accounts.google.com"));
            }),
            claims_with(|c| {
                c.insert("email_verified".into(), json!("true"));
            }),
            claims_with(|c| {
                c.insert(
                    "email".into(),
                    json!("PubSub-Push@acme-prod.iam.gserviceaccount.com"),
                );
            }),
            claims_with(|c| {
                c.insert("exp".into(), json!((NOW + 100) as f64 + 0.5));
            }),
        ] {
            check(&v, &testing::sign(&c)).await.expect("accepted");
        }
    }

    #[tokio::test]
    async fn push_auth_none_ignores_the_header() {
        assert_eq!(
            PushAuth::None.check(None, PushEndpoint::Ticks, now()).await,
            Ok(None)
        );
        assert_eq!(
            PushAuth::None
                .check(Some("garbage"), PushEndpoint::Alerts, now())
                .await,
            Ok(None)
        );
    }

    #[tokio::test]
    async fn missing_or_non_bearer_header() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        for h in [
            None,
            Some(""),
            Some("   "),
            Some("Bearer "),
            Some("Bearer    "),
        ] {
            assert_eq!(
                v.verify(h, PushEndpoint::Builds, now()).await,
                Err(AuthError::MissingToken),
                "{h:?}"
            );
        }
        let token = testing::sign(&claims());
        for h in [
            format!("Basic {token}"),
            format!("Token {token}"),
            token.clone(),
            format!("Bearer{token}"),
        ] {
            assert!(
                matches!(
                    v.verify(Some(&h), PushEndpoint::Builds, now()).await,
                    Err(AuthError::Malformed(_))
                ),
                "{h}"
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert!(matches!(
            v.verify(Some(&long), PushEndpoint::Builds, now()).await,
            Err(AuthError::Malformed(_))
        ));
        assert_eq!(server.hits(), 0, "no key fetch for unusable headers");
    }

    #[tokio::test]
    async fn garbage_tokens_are_malformed() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        let good = testing::sign(&claims());
        let mut parts = good.split('.');
        let (h, c) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        for token in [
            "garbage".to_owned(),
            "a.b".to_owned(),
            "a.b.c".to_owned(),
            "..".to_owned(),
            "a.b.c.d".to_owned(),
            format!("{h}.{c}"),
            format!("{h}.{c}.sig.extra"),
            format!("{h}.!!!.AAAA"),
            format!("{h}.{c}.***"),
            format!("{}.{c}.AAAA", URL_SAFE_NO_PAD.encode(b"[1,2]")),
            format!("{}.{c}.AAAA", URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#)),
            format!("{h}.{}.AAAA", URL_SAFE_NO_PAD.encode(b"not json")),
        ] {
            match check(&v, &token).await {
                Err(AuthError::Malformed(_) | AuthError::BadSignature) => {}
                other => panic!("{token}: expected Malformed, got {other:?}"),
            }
        }
        assert!(matches!(
            check(&v, "garbage").await,
            Err(AuthError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn bad_signature_is_rejected() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        assert_eq!(
            check(&v, &testing::sign_with_other_key(&claims())).await,
            Err(AuthError::BadSignature)
        );
        // A genuine signature over different claims.
        let good = testing::sign(&claims());
        let other = testing::sign(&claims_with(|c| {
            c.insert("email".into(), json!("attacker@evil.example"));
        }));
        let (Some((head_and_claims, _)), Some((_, sig))) =
            (other.rsplit_once('.'), good.rsplit_once('.'))
        else {
            panic!("tokens have three parts");
        };
        let spliced = format!("{head_and_claims}.{sig}");
        assert_eq!(check(&v, &spliced).await, Err(AuthError::BadSignature));
    }

    #[tokio::test]
    async fn other_algorithms_are_rejected_without_fetching() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        let c = claims();

        // HS256 keyed with the public modulus: the classic RS/HS confusion.
        let jwks = testing::jwks_json();
        let n = jwks["keys"][0]["n"].as_str().unwrap_or_default().to_owned();
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(KID.to_owned());
        let hs256 =
            jsonwebtoken::encode(&hs, &c, &EncodingKey::from_secret(n.as_bytes())).expect("hs256");

        let none = forge(&json!({"alg": "none", "kid": KID, "typ": "JWT"}), &c, b"");
        let none_upper = forge(&json!({"alg": "NONE", "kid": KID}), &c, b"");
        let no_alg = forge(&json!({"kid": KID}), &c, b"sig");
        let rs512 = testing::sign_raw(
            testing::TEST_ONLY_PRIVATE_KEY_PEM,
            Some(KID),
            Algorithm::RS512,
            &c,
        );
        let ps256 = testing::sign_raw(
            testing::TEST_ONLY_PRIVATE_KEY_PEM,
            Some(KID),
            Algorithm::PS256,
            &c,
        );

        for token in [hs256, none, none_upper, no_alg, rs512, ps256] {
            match check(&v, &token).await {
                Err(AuthError::Malformed(why)) => assert!(why.contains("alg"), "{why}"),
                other => panic!("expected Malformed, got {other:?}"),
            }
        }
        assert_eq!(server.hits(), 0);

        let no_kid = testing::sign_raw(
            testing::TEST_ONLY_PRIVATE_KEY_PEM,
            None,
            Algorithm::RS256,
            &c,
        );
        assert!(matches!(
            check(&v, &no_kid).await,
            Err(AuthError::Malformed(_))
        ));
        let crit = forge(
            &json!({"alg": "RS256", "kid": KID, "crit": ["exp"]}),
            &c,
            b"sig",
        );
        assert!(matches!(
            check(&v, &crit).await,
            Err(AuthError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn wrong_audience() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        for aud in [
            json!("https://other.example/push"),
            json!(format!("{AUD}/")),
            json!([AUD]),
            json!(""),
        ] {
            let c = claims_with(|c| {
                c.insert("aud".into(), aud.clone());
            });
            assert!(
                matches!(
                    check(&v, &testing::sign(&c)).await,
                    Err(AuthError::WrongAudience(_))
                ),
                "{aud}"
            );
        }
        let c = claims_with(|c| {
            c.remove("aud");
        });
        assert!(matches!(
            check(&v, &testing::sign(&c)).await,
            Err(AuthError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn expiry_with_leeway() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url); // leeway 30 s
        let token = |exp: i64| testing::sign(&testing::google_claims(AUD, SA, exp - 3600, exp));
        assert_eq!(check(&v, &token(NOW - 31)).await, Err(AuthError::Expired));
        assert_eq!(check(&v, &token(NOW - 30)).await, Err(AuthError::Expired));
        check(&v, &token(NOW - 29)).await.expect("within leeway");
        check(&v, &token(NOW + 1)).await.expect("not expired");

        let c = claims_with(|c| {
            c.remove("exp");
        });
        assert!(matches!(
            check(&v, &testing::sign(&c)).await,
            Err(AuthError::Malformed(_))
        ));
        let c = claims_with(|c| {
            c.insert("exp".into(), json!("soon"));
        });
        assert!(matches!(
            check(&v, &testing::sign(&c)).await,
            Err(AuthError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn issued_in_the_future() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        let token = |iat: i64| testing::sign(&testing::google_claims(AUD, SA, iat, iat + 3600));
        assert_eq!(
            check(&v, &token(NOW + 31)).await,
            Err(AuthError::NotYetValid)
        );
        check(&v, &token(NOW + 29)).await.expect("within leeway");
        let c = claims_with(|c| {
            c.insert("nbf".into(), json!(NOW + 120));
        });
        assert_eq!(
            check(&v, &testing::sign(&c)).await,
            Err(AuthError::NotYetValid)
        );
        let c = claims_with(|c| {
            c.remove("iat");
        });
        assert!(matches!(
            check(&v, &testing::sign(&c)).await,
            Err(AuthError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn tokens_living_longer_than_googles_are_refused() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url); // leeway 30 s
        let token = |iat: i64, exp: i64| testing::sign(&testing::google_claims(AUD, SA, iat, exp));
        let year = 365 * 86_400;
        for (what, iat, exp) in [
            ("ten years ahead", NOW - 60, NOW + 10 * year),
            ("an hour and 31 s", NOW - 100, NOW - 100 + 3631),
            ("issued in 1970, expiring soon", 0, NOW + 10),
            ("exp over an hour from now", NOW + 29, NOW + 29 + 3602),
        ] {
            assert_eq!(
                check(&v, &token(iat, exp)).await,
                Err(AuthError::TooLongLived),
                "{what}"
            );
        }
        let c = claims_with(|c| {
            c.insert("exp".into(), json!(1e300));
        });
        assert_eq!(
            check(&v, &testing::sign(&c)).await,
            Err(AuthError::TooLongLived),
            "exp 1e300"
        );
        // Google's own shape, and the leeway's edge.
        check(&v, &token(NOW - 60, NOW + 3540))
            .await
            .expect("a one-hour token");
        check(&v, &token(NOW - 100, NOW - 100 + 3630))
            .await
            .expect("an hour plus the leeway");
    }

    #[tokio::test]
    async fn each_endpoint_has_its_own_audience() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        for signed_for in PushEndpoint::ALL {
            let c = testing::google_claims(&signed_for.audience(BASE), SA, NOW - 60, NOW + 3540);
            let header = bearer(&testing::sign(&c));
            for endpoint in PushEndpoint::ALL {
                let r = v.verify(Some(&header), endpoint, now()).await;
                if endpoint == signed_for {
                    r.expect("the endpoint's own audience");
                } else {
                    assert!(
                        matches!(r, Err(AuthError::WrongAudience(_))),
                        "a {signed_for:?} token on {endpoint:?}: {r:?}"
                    );
                }
            }
        }
        // The bare base audience is no endpoint's.
        let c = testing::google_claims(BASE, SA, NOW - 60, NOW + 3540);
        assert!(matches!(
            check(&v, &testing::sign(&c)).await,
            Err(AuthError::WrongAudience(_))
        ));
        assert_eq!(PushEndpoint::Ticks.audience("base/"), "base/ticks");
        assert_eq!(
            PushEndpoint::from_path("/pubsub/alerts"),
            Some(PushEndpoint::Alerts)
        );
        assert_eq!(PushEndpoint::from_path("/pubsub/alerts/"), None);
    }

    #[tokio::test]
    async fn a_redirecting_key_server_is_not_followed() {
        let server = JwksServer::start().await;
        let target = server.url.clone();
        let app = axum::Router::new().route(
            "/certs",
            axum::routing::get(move || {
                let target = target.clone();
                async move { axum::response::Redirect::temporary(&target) }
            }),
        );
        let v = verifier(&format!("{}/certs", serve_locally(app).await));
        let err = check(&v, &testing::sign(&claims()))
            .await
            .expect_err("a redirect is no key set");
        assert!(
            matches!(&err, AuthError::KeysUnavailable(why) if why.contains("redirect")),
            "{err:?}"
        );
        assert_eq!(server.hits(), 0, "the redirect's target was never fetched");
    }

    #[test]
    fn key_urls_must_be_https_except_on_loopback() {
        for ok in [
            GOOGLE_JWKS_URL,
            "http://127.0.0.1:8080/certs",
            "http://127.9.9.9/certs",
            "http://localhost:1/certs",
            "http://[::1]:80/certs",
        ] {
            assert_eq!(check_jwks_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://www.googleapis.com/oauth2/v3/certs",
            "http://127.0.0.1.evil.example/certs",
            "http://10.0.0.1/certs",
            "ftp://127.0.0.1/certs",
            "www.googleapis.com/oauth2/v3/certs",
            "",
        ] {
            assert!(check_jwks_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn leeway_is_clamped() {
        let server = JwksServer::start().await;
        let v = verifier_with(&server.url, |c| c.leeway = Duration::from_secs(600));
        assert_eq!(v.config().leeway, MAX_LEEWAY);
        let c = testing::google_claims(AUD, SA, NOW - 3690, NOW - 90);
        assert_eq!(check(&v, &testing::sign(&c)).await, Err(AuthError::Expired));
    }

    #[tokio::test]
    async fn wrong_email_and_unverified_email() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        let c = testing::google_claims(
            AUD,
            "intruder@evil.iam.gserviceaccount.com",
            NOW - 60,
            NOW + 3540,
        );
        assert!(matches!(
            check(&v, &testing::sign(&c)).await,
            Err(AuthError::WrongEmail(_))
        ));
        let c = claims_with(|c| {
            c.remove("email");
        });
        assert!(matches!(
            check(&v, &testing::sign(&c)).await,
            Err(AuthError::Malformed(_))
        ));

        for verified in [json!(false), json!("false"), json!(1), json!(null)] {
            let c = claims_with(|c| {
                c.insert("email_verified".into(), verified.clone());
            });
            assert_eq!(
                check(&v, &testing::sign(&c)).await,
                Err(AuthError::EmailNotVerified),
                "{verified}"
            );
        }
        let c = claims_with(|c| {
            c.remove("email_verified");
        });
        assert_eq!(
            check(&v, &testing::sign(&c)).await,
            Err(AuthError::EmailNotVerified)
        );

        // No allowed accounts configured: nobody gets in.
        let v = verifier_with(&server.url, |c| c.service_accounts.clear());
        assert!(matches!(
            check(&v, &testing::sign(&claims())).await,
            Err(AuthError::WrongEmail(_))
        ));
    }

    #[tokio::test]
    async fn wrong_issuer() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        for iss in [
            "https://evil.example",
            "https://accounts.google.com/",
            "http://accounts.google.com",
        ] {
            let c = claims_with(|c| {
                c.insert("iss".into(), json!(iss));
            });
            assert_eq!(
                check(&v, &testing::sign(&c)).await,
                Err(AuthError::WrongIssuer(iss.to_owned()))
            );
        }
        let c = claims_with(|c| {
            c.remove("iss");
        });
        assert!(matches!(
            check(&v, &testing::sign(&c)).await,
            Err(AuthError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn unknown_kid_triggers_one_refresh_then_fails() {
        let server = JwksServer::start().await;
        let v = verifier_with(&server.url, |c| {
            c.min_refresh_interval = Duration::from_millis(500)
        });
        check(&v, &testing::sign(&claims())).await.expect("warm");
        assert_eq!(server.hits(), 1);

        // Within the refresh interval: no refetch.
        let unknown = testing::sign_with_kid(&claims(), "rotated-key");
        assert_eq!(
            check(&v, &unknown).await,
            Err(AuthError::UnknownKey("rotated-key".into()))
        );
        assert_eq!(server.hits(), 1);

        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            check(&v, &unknown).await,
            Err(AuthError::UnknownKey("rotated-key".into()))
        );
        assert_eq!(server.hits(), 2, "one refresh for the unknown kid");
        assert_eq!(
            check(&v, &unknown).await,
            Err(AuthError::UnknownKey("rotated-key".into()))
        );
        assert_eq!(server.hits(), 2, "refresh is rate-limited");
        check(&v, &testing::sign(&claims()))
            .await
            .expect("known key still fine");
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn rotated_key_is_picked_up() {
        let server = JwksServer::start().await;
        let v = verifier_with(&server.url, |c| {
            c.min_refresh_interval = Duration::from_millis(50)
        });
        check(&v, &testing::sign(&claims())).await.expect("warm");
        server.set_body(
            json!({"keys": [testing::jwk(KID), testing::other_jwk("cutover-test-key-2")]}),
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        let token = testing::sign_with_other_key_as(&claims(), "cutover-test-key-2");
        check(&v, &token).await.expect("new key fetched");
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_cold_cache_fetches_once() {
        let server = JwksServer::start_with(Duration::from_millis(200), None).await;
        let v = verifier(&server.url);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let v = v.clone();
                let token = testing::sign(&claims());
                tokio::spawn(async move { check(&v, &token).await })
            })
            .collect();
        for result in futures::future::join_all(tasks).await {
            result.expect("task").expect("verified");
        }
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_kids_do_not_hammer_the_endpoint() {
        // Cold cache, all at once.
        let server = JwksServer::start_with(Duration::from_millis(50), None).await;
        let v = verifier(&server.url);
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let v = v.clone();
                let kid = format!("kid-{}", fastrand::u64(..));
                let token = testing::sign_with_kid(&claims(), &kid);
                tokio::spawn(async move { check(&v, &token).await })
            })
            .collect();
        for result in futures::future::join_all(tasks).await {
            assert!(matches!(
                result.expect("task"),
                Err(AuthError::UnknownKey(_))
            ));
        }
        assert!(server.hits() <= 2, "{} fetches", server.hits());

        // Warm cache, one after another.
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        check(&v, &testing::sign(&claims())).await.expect("warm");
        for _ in 0..200 {
            let kid = format!("kid-{}", fastrand::u64(..));
            let r = check(&v, &testing::sign_with_kid(&claims(), &kid)).await;
            assert!(matches!(r, Err(AuthError::UnknownKey(_))));
        }
        assert!(server.hits() <= 2, "{} fetches", server.hits());
    }

    #[tokio::test]
    async fn jwks_down_with_cold_cache_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let v = verifier(&format!("http://{addr}/certs"));
        let token = testing::sign(&claims());
        for _ in 0..2 {
            let err = check(&v, &token).await.expect_err("no keys");
            assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
            assert!(err.is_transient());
        }
    }

    #[tokio::test]
    async fn jwks_errors_then_recovers() {
        let server = JwksServer::start().await;
        server.set_failing(true);
        let v = verifier_with(&server.url, |c| {
            c.min_refresh_interval = Duration::from_millis(500)
        });
        let token = testing::sign(&claims());
        let err = check(&v, &token).await.expect_err("500");
        assert!(err.is_transient(), "{err:?}");
        assert!(err.to_string().contains("500"), "{err}");
        // Backed off: no second fetch right away.
        assert!(check(&v, &token).await.expect_err("backoff").is_transient());
        assert_eq!(server.hits(), 1);

        server.set_failing(false);
        tokio::time::sleep(Duration::from_millis(600)).await;
        check(&v, &token).await.expect("recovered");
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn unusable_key_sets() {
        let server = JwksServer::start().await;
        server.set_body(json!({"keys": [
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "alg": "RS512", "kid": "rs512", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "no-n", "e": "AQAB"},
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
            "junk",
            testing::jwk(KID),
        ]}));
        let v = verifier(&server.url);
        check(&v, &testing::sign(&claims()))
            .await
            .expect("usable key found among junk");

        for body in [
            json!({"keys": []}),
            json!({"nokeys": 1}),
            json!([1]),
            json!({"keys": [{"kty": "EC", "kid": "x"}]}),
        ] {
            let server = JwksServer::start().await;
            server.set_body(body.clone());
            let v = verifier(&server.url);
            let err = check(&v, &testing::sign(&claims()))
                .await
                .expect_err("no usable key");
            assert!(
                matches!(err, AuthError::KeysUnavailable(_)),
                "{body}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn keys_expire_after_ttl() {
        let server = JwksServer::start().await;
        let v = verifier_with(&server.url, |c| {
            c.key_ttl = Duration::from_millis(100);
            c.min_refresh_interval = Duration::from_millis(10);
        });
        check(&v, &testing::sign(&claims())).await.expect("warm");
        tokio::time::sleep(Duration::from_millis(150)).await;
        check(&v, &testing::sign(&claims()))
            .await
            .expect("refetched");
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn cache_control_max_age_is_honoured() {
        // max-age shorter than key_ttl (clamped up to min_refresh_interval).
        let server =
            JwksServer::start_with(Duration::ZERO, Some("public, max-age=0, must-revalidate"))
                .await;
        let v = verifier_with(&server.url, |c| {
            c.key_ttl = Duration::from_secs(3600);
            c.min_refresh_interval = Duration::from_millis(50);
        });
        check(&v, &testing::sign(&claims())).await.expect("warm");
        tokio::time::sleep(Duration::from_millis(100)).await;
        check(&v, &testing::sign(&claims()))
            .await
            .expect("refetched");
        assert_eq!(server.hits(), 2);

        // max-age longer than key_ttl.
        let server = JwksServer::start_with(
            Duration::ZERO,
            Some("public, max-age=19845, must-revalidate, no-transform"),
        )
        .await;
        let v = verifier_with(&server.url, |c| {
            c.key_ttl = Duration::from_millis(20);
            c.min_refresh_interval = Duration::from_millis(10);
        });
        check(&v, &testing::sign(&claims())).await.expect("warm");
        tokio::time::sleep(Duration::from_millis(60)).await;
        check(&v, &testing::sign(&claims())).await.expect("cached");
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn stale_keys_are_used_when_refresh_fails() {
        let server = JwksServer::start().await;
        let v = verifier_with(&server.url, |c| {
            c.key_ttl = Duration::from_millis(50);
            c.min_refresh_interval = Duration::from_millis(10);
        });
        check(&v, &testing::sign(&claims())).await.expect("warm");
        server.set_failing(true);
        tokio::time::sleep(Duration::from_millis(80)).await;
        check(&v, &testing::sign(&claims()))
            .await
            .expect("stale key still usable");
        assert_eq!(server.hits(), 2);
        // An unknown kid during the outage is a transient failure, not a forged token.
        let err = check(&v, &testing::sign_with_kid(&claims(), "new-key"))
            .await
            .expect_err("unknown");
        assert!(err.is_transient(), "{err:?}");
    }

    #[tokio::test]
    async fn error_messages_never_contain_the_token() {
        let server = JwksServer::start().await;
        let v = verifier(&server.url);
        let c = claims();
        let tokens = vec![
            testing::sign_with_other_key(&c),
            testing::sign_with_kid(&c, "unknown-kid"),
            testing::sign(&testing::google_claims(
                "https://wrong.example",
                SA,
                NOW - 60,
                NOW + 3540,
            )),
            testing::sign(&testing::google_claims(
                AUD,
                "x@evil.example",
                NOW - 60,
                NOW + 3540,
            )),
            testing::sign(&testing::google_claims(AUD, SA, NOW - 7200, NOW - 3600)),
            testing::sign(&testing::google_claims(AUD, SA, NOW + 600, NOW + 4200)),
            testing::sign(&claims_with(|c| {
                c.insert("iss".into(), json!("https://evil.example"));
            })),
            testing::sign(&claims_with(|c| {
                c.insert("email_verified".into(), json!(false));
            })),
            forge(&json!({"alg": "none", "kid": KID}), &c, b""),
            "not-a-jwt".to_owned(),
            format!("{}.x.y", URL_SAFE_NO_PAD.encode(b"{}")),
        ];
        let mut seen = 0;
        for token in &tokens {
            for header in [bearer(token), format!("Basic {token}"), token.clone()] {
                let err = v
                    .verify(Some(&header), PushEndpoint::Builds, now())
                    .await
                    .expect_err("rejected");
                for shown in [err.to_string(), format!("{err:?}")] {
                    assert!(!shown.contains(token.as_str()), "{shown}");
                    for part in token.split('.').filter(|p| p.len() > 8) {
                        assert!(!shown.contains(part), "{shown} contains a token segment");
                    }
                }
                seen += 1;
            }
        }
        assert_eq!(seen, tokens.len() * 3);

        let down = verifier("http://127.0.0.1:1/certs");
        let token = testing::sign(&c);
        let err = check(&down, &token).await.expect_err("down");
        assert!(!err.to_string().contains(&token));
    }

    #[test]
    fn only_key_fetch_failures_are_transient() {
        let all = [
            AuthError::MissingToken,
            AuthError::Malformed("x".into()),
            AuthError::UnknownKey("k".into()),
            AuthError::BadSignature,
            AuthError::WrongIssuer("i".into()),
            AuthError::WrongAudience("a".into()),
            AuthError::Expired,
            AuthError::TooLongLived,
            AuthError::NotYetValid,
            AuthError::WrongEmail("e".into()),
            AuthError::EmailNotVerified,
        ];
        assert!(all.iter().all(|e| !e.is_transient()));
        assert!(AuthError::KeysUnavailable("down".into()).is_transient());
    }

    #[test]
    fn attacker_strings_are_shortened() {
        let e = AuthError::UnknownKey(excerpt(&"k\n".repeat(100), MAX_EXCERPT));
        let shown = e.to_string();
        assert!(shown.len() < 400, "{shown}");
        assert!(!shown.contains('\n'));
    }

    #[test]
    fn max_age_parsing() {
        assert_eq!(
            max_age("public, max-age=19845, must-revalidate"),
            Some(Duration::from_secs(19845))
        );
        assert_eq!(max_age("MAX-AGE = 5"), Some(Duration::from_secs(5)));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=soon"), None);
        assert_eq!(max_age("s-maxage=9"), None);
    }

    #[test]
    fn default_config() {
        let c = GoogleVerifierConfig::default();
        assert_eq!(c.jwks_url, GOOGLE_JWKS_URL);
        assert_eq!(c.leeway, Duration::from_secs(30));
        assert_eq!(c.min_refresh_interval, Duration::from_secs(30));
        assert_eq!(c.key_ttl, Duration::from_secs(3600));
        assert!(c.service_accounts.is_empty());
    }
}
