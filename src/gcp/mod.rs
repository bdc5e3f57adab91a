//! Google REST APIs on the wire: serde types and reqwest calls, nothing else.
//!
//! One file per API ([`run`], [`appengine`], [`compute`], [`monitoring`], [`metadata`]) plus the pieces they share here:
//! the `google.rpc.Status` error body, the classification of failures into transient /
//! conflict / not found / permanent ([`ApiError::kind`], the only place cutover decides what a
//! failure means), and the retry loop. Base URLs are injected, which is the seam the fakes
//! plug into. Nothing here knows about rollouts.

pub mod appengine;
pub mod compute;
pub mod metadata;
pub mod monitoring;
pub mod pubsub;
pub mod quota;
pub mod run;
pub mod token;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

pub use quota::Quota;
pub use token::TokenSource;

use crate::failure::{ErrorKind, chain};

/// Timeout for a single HTTP attempt; the per-event deadline bounds the whole exchange.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// A failed Google API call. Its [`kind`](ApiError::kind) is the one classification of
/// failures in cutover (see [`crate::failure`]).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error status.
    #[error("{method} {path}: HTTP {http} {status}: {message}")]
    Status {
        method: &'static str,
        path: String,
        http: u16,
        /// `google.rpc.Code` name (`ABORTED`, `UNAVAILABLE`, …), or `UNKNOWN` when the body was
        /// not a JSON error (unknown paths answer with an HTML page).
        status: String,
        message: String,
    },
    /// No answer: connection refused, reset, timed out.
    #[error("{method} {path}")]
    Transport {
        method: &'static str,
        path: String,
        #[source]
        source: TransportFailure,
    },
    /// An answer that does not parse as the API's documented shape.
    #[error("{method} {path}: unreadable response{}", expected.map(|e| format!(": not a {e}")).unwrap_or_default())]
    Decode {
        method: &'static str,
        path: String,
        /// The resource the answer should have been, when the error says more than JSON's.
        expected: Option<&'static str>,
        #[source]
        source: serde_json::Error,
    },
    /// No access token could be obtained.
    #[error("no access token")]
    Token(#[source] google_cloud_auth::errors::CredentialsError),
    /// The per-event deadline passed while retrying.
    #[error("deadline exceeded after {attempts} attempt(s); last error")]
    Deadline {
        attempts: u32,
        #[source]
        last: Box<ApiError>,
    },
    /// The per-event deadline passed before there was anything to retry.
    #[error("deadline exceeded after 0 attempt(s); last error: {waiting_for}")]
    OutOfTime { waiting_for: String },
    /// A routine call's quota slot is further away than it waits (`quota::ROUTINE_PATIENCE`):
    /// its event is given back for redelivery rather than held.
    #[error("given back for redelivery: {waiting_for}")]
    NoSlotSoon { waiting_for: String },
}

impl ApiError {
    /// What the failure means. Worth retrying later: throttling, server errors, no answer, no
    /// token yet, deadline, and answers that did not come from the API itself (a non-JSON error
    /// page from a front end or proxy) or arrived garbled (truncated JSON): redelivery costs
    /// little; dropping a build or an alert because one answer was mangled would lose it. A
    /// conflict is a stale etag (`ABORTED`) or a stale Compute `fingerprint` (HTTP 412
    /// `conditionNotMet`, whose body has no `status`); not found is the API itself saying `NOT_FOUND` (an
    /// HTML 404 from a front end says nothing about the resource).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::Status { http, status, .. } => match (*http, status.as_str()) {
                (409, "ABORTED") | (412, _) => ErrorKind::Conflict,
                (404, "NOT_FOUND") => ErrorKind::NotFound,
                (429 | 500 | 502 | 503 | 504, _) | (_, NOT_FROM_THE_API | "RESOURCE_EXHAUSTED") => {
                    ErrorKind::Transient
                }
                _ => ErrorKind::Permanent,
            },
            ApiError::Transport { .. }
            | ApiError::Token(_)
            | ApiError::Deadline { .. }
            | ApiError::OutOfTime { .. }
            | ApiError::NoSlotSoon { .. }
            | ApiError::Decode { .. } => ErrorKind::Transient,
        }
    }
}

/// A request that got no answer: what went wrong, in reqwest's words less the URL it names
/// (which can be long and carries queries); its sources are reqwest's.
#[derive(Debug)]
pub struct TransportFailure(reqwest::Error);

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        f.write_str(if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else if e.is_body() || e.is_decode() {
            "response body failed"
        } else {
            "request failed"
        })
    }
}

impl std::error::Error for TransportFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

impl TransportFailure {
    /// The reqwest error itself.
    pub fn reqwest(&self) -> &reqwest::Error {
        &self.0
    }
}

/// `status` of an error whose body was not a `google.rpc.Status` (an HTML page, say).
pub const NOT_FROM_THE_API: &str = "NOT_FROM_THE_API";

/// The standard error envelope `{"error": {"code", "message", "status", "details"}}`, and
/// Compute's `errors[].reason` beside them.
#[derive(Deserialize)]
struct ErrorEnvelope {
    error: RpcStatusWithReasons,
}

/// A `google.rpc.Status` in an error body, with the legacy `errors[]` list Compute sends.
#[derive(Default, Deserialize)]
#[serde(default)]
struct RpcStatusWithReasons {
    message: String,
    status: String,
    errors: Vec<ErrorReason>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ErrorReason {
    reason: String,
}

/// `errors[].reason` values that mean a rate quota was exceeded (Compute answers them with
/// HTTP 403 or 429).
const RATE_LIMITED: [&str; 2] = ["rateLimitExceeded", "userRateLimitExceeded"];

/// `google.rpc.Status` as it appears in HTTP error bodies and in `Operation.error`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RpcStatus {
    /// HTTP status in error bodies; the numeric rpc code inside an Operation.
    pub code: i32,
    pub message: String,
    /// Code name; absent inside Operations.
    pub status: String,
}

/// Reads an error response into [`ApiError::Status`], coping with non-JSON bodies.
pub(crate) fn status_error(method: &'static str, path: &str, http: u16, body: &[u8]) -> ApiError {
    let (status, message) = match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(e) => (
            if !e.error.status.is_empty() {
                e.error.status
            } else if e
                .error
                .errors
                .iter()
                .any(|r| RATE_LIMITED.contains(&r.reason.as_str()))
            {
                // Compute's envelope has no `status`; its rate quotas answer 403 (or 429) with
                // this reason (`gcp::quota`).
                "RESOURCE_EXHAUSTED".to_string()
            } else {
                "UNKNOWN".to_string()
            },
            e.error.message,
        ),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let snippet: String = text.chars().filter(|c| !c.is_control()).take(120).collect();
            (
                NOT_FROM_THE_API.to_string(),
                format!("non-JSON error body: {snippet}"),
            )
        }
    };
    ApiError::Status {
        method,
        path: path.to_string(),
        http,
        status,
        message,
    }
}

/// Exponential backoff with full jitter: 100 ms, 200 ms, … capped at 3.2 s.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 100u64 << attempt.min(5);
    Duration::from_millis(fastrand::u64(cap / 2..=cap))
}

/// How long a `429` without `Retry-After` holds its bucket back, by how many times this call
/// was refused: Google asks for truncated exponential backoff on `RESOURCE_EXHAUSTED`, so the
/// pause grows with each refusal (0.4–0.8 s, then 0.8–1.6 s, … up to 3.2 s) instead of a fixed
/// wait that would outlast an event's deadline after a short burst.
fn throttled_pause(attempt: u32) -> Duration {
    backoff(attempt + 2)
}

/// An authenticated JSON client for Google REST APIs.
#[derive(Clone)]
pub struct Google {
    pub http: reqwest::Client,
    pub tokens: TokenSource,
    /// The client-side rate limits every call waits for ([`quota`]).
    pub quota: Arc<Quota>,
    /// The client of alerts' calls ([`quota::urgent`]): a connection pool of their own, so an
    /// alert never queues for a connection the evaluations hold, and its connections are
    /// driven by the runtime it runs on (`flight::on_alert_thread`). `None`: `http`.
    urgent_http: Option<reqwest::Client>,
}

/// One failed attempt: a `429` (`throttled`), and how long it asked to be left alone
/// (`Retry-After`, when it said).
struct Failed {
    error: ApiError,
    throttled: bool,
    retry_after: Option<Duration>,
}

impl From<ApiError> for Failed {
    fn from(error: ApiError) -> Self {
        Failed {
            error,
            throttled: false,
            retry_after: None,
        }
    }
}

impl Google {
    /// A client with no rate limit (see [`Google::with_quota`]).
    pub fn new(http: reqwest::Client, tokens: TokenSource) -> Self {
        Google {
            http,
            tokens,
            quota: Arc::new(Quota::unlimited()),
            urgent_http: None,
        }
    }

    /// The same client, alerts' calls going through `http` instead (its own pool).
    pub fn with_urgent_client(self, http: reqwest::Client) -> Self {
        Google {
            urgent_http: Some(http),
            ..self
        }
    }

    /// The same client, its calls waiting for `quota`.
    pub fn with_quota(self, quota: Arc<Quota>) -> Self {
        Google { quota, ..self }
    }

    /// Sends a request built by `build` and decodes the JSON answer, retrying transient
    /// failures with backoff until `deadline`. Conflicts and other client errors are returned at
    /// once: retrying a stale write would be wrong. Every attempt first waits for its quota
    /// bucket ([`quota`]); a `429` (`RESOURCE_EXHAUSTED`) holds the whole bucket back for its
    /// `Retry-After` (else a growing backoff), and this call retries after it if the deadline
    /// allows.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        url: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let path = redact_query(url);
        let bucket = quota::Bucket::of(method, url);
        let mut attempt = 0u32;
        loop {
            if let Some(bucket) = &bucket {
                self.quota.acquire(bucket, deadline).await?;
            }
            let mut told_to_wait = None;
            let err = match self.attempt(method, &path, &build, deadline).await {
                // A garbled answer (truncated JSON) is retried like any transient failure.
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(v) => return Ok(v),
                    Err(source) => ApiError::Decode {
                        method,
                        path: path.clone(),
                        expected: None,
                        source,
                    },
                },
                Err(f) if f.error.kind() != ErrorKind::Transient => return Err(f.error),
                Err(f) => {
                    if f.throttled {
                        let wait = f.retry_after.unwrap_or_else(|| throttled_pause(attempt));
                        if let Some(bucket) = &bucket {
                            self.quota.back_off(bucket, wait);
                        }
                        told_to_wait = Some(wait);
                    }
                    f.error
                }
            };
            attempt += 1;
            let pause = told_to_wait.map_or_else(|| backoff(attempt), |w| w.max(backoff(attempt)));
            if Instant::now() + pause >= deadline {
                return Err(ApiError::Deadline {
                    attempts: attempt,
                    last: Box::new(err),
                });
            }
            tracing::debug!(error = %chain(&err), attempt, "retrying Google API call");
            tokio::time::sleep(pause).await;
        }
    }

    /// `GET url`, decoded (see [`Google::call`]).
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        self.call("GET", url, |c| c.get(url), deadline).await
    }

    /// Every page of a list call: `query` is the call's own parameters (`pageToken` is added
    /// from the second page on); `take` keeps a page's items and returns its
    /// `nextPageToken` (empty on the last page).
    pub async fn pages<P: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        query: &[(&str, String)],
        mut take: impl FnMut(P) -> Result<String, ApiError>,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        let mut token = String::new();
        loop {
            let page: P = self
                .call(
                    "GET",
                    url,
                    |c| {
                        let mut q = query.to_vec();
                        if !token.is_empty() {
                            q.push(("pageToken", token.clone()));
                        }
                        c.get(url).query(&q)
                    },
                    deadline,
                )
                .await?;
            token = take(page)?;
            if token.is_empty() {
                return Ok(());
            }
        }
    }

    async fn attempt(
        &self,
        method: &'static str,
        path: &str,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<Vec<u8>, Failed> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ApiError::OutOfTime {
                waiting_for: "no time left".into(),
            }
            .into());
        }
        let http = match &self.urgent_http {
            Some(urgent) if quota::is_urgent() => urgent,
            _ => &self.http,
        };
        let mut req = build(http).timeout(left.min(ATTEMPT_TIMEOUT));
        if let Some(token) = self.tokens.token().await.map_err(Failed::from)? {
            req = req.bearer_auth(token);
        }
        let transport = |e: reqwest::Error| ApiError::Transport {
            method,
            path: path.to_string(),
            source: TransportFailure(e),
        };
        let resp = req.send().await.map_err(transport)?;
        let http = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| quota::retry_after(v, jiff::Timestamp::now()));
        let body = resp.bytes().await.map_err(transport)?;
        if (200..300).contains(&http) {
            return Ok(body.to_vec());
        }
        let error = status_error(method, path, http, &body);
        // A 429, or Compute's 403 `rateLimitExceeded`: a rate quota said no.
        let throttled = http == 429
            || matches!(&error, ApiError::Status { status, .. } if status == "RESOURCE_EXHAUSTED");
        Err(Failed {
            retry_after: retry_after.filter(|_| throttled),
            error,
            throttled,
        })
    }
}

/// The pause before reading a running operation again with a plain `GET`; pauses double from
/// it up to [`POLL_PAUSE_MAX`].
pub(crate) const POLL_PAUSE: Duration = Duration::from_millis(100);

/// The longest pause between two reads of a running operation.
const POLL_PAUSE_MAX: Duration = Duration::from_secs(2);

/// Polls a long-running operation until it is finished: `finished` gives the outcome of a
/// finished one (`None` while it runs), `name` the name to read it again by, `fetch` reads it
/// again. The first read comes `first_pause` after the write: [`POLL_PAUSE`] for a plain `GET`,
/// zero when `fetch` itself waits for the operation server-side (Run's `operations:wait`), so
/// the answer comes as soon as the operation is done, not at a timer's next tick. Pauses grow from
/// [`POLL_PAUSE`] to 2 s (a `:wait` may answer early, still running); a deadline that would pass
/// during the next pause ends the wait ([`ApiError::OutOfTime`]).
pub(crate) async fn poll<Op, T, Fut>(
    first_pause: Duration,
    mut op: Op,
    finished: impl Fn(&mut Op) -> Option<Result<T, ApiError>>,
    name: impl Fn(&Op) -> &str,
    fetch: impl Fn(String) -> Fut,
    deadline: Instant,
) -> Result<T, ApiError>
where
    Fut: std::future::Future<Output = Result<Op, ApiError>>,
{
    let mut pause = first_pause;
    loop {
        if let Some(outcome) = finished(&mut op) {
            return outcome;
        }
        let name = name(&op).to_string();
        if name.is_empty() {
            return Err(ApiError::Decode {
                method: "PATCH",
                path: String::new(),
                expected: Some("running Operation"),
                source: serde::de::Error::missing_field("name"),
            });
        }
        if Instant::now() + pause >= deadline {
            return Err(ApiError::OutOfTime {
                waiting_for: format!("operation {name} still running"),
            });
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        pause = (pause * 2).clamp(POLL_PAUSE, POLL_PAUSE_MAX);
        op = fetch(name).await?;
    }
}

/// The URL without its query string, for error messages and logs.
fn redact_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// Deserializes an int64 sent as a JSON string (proto3 JSON), also accepting a number.
pub(crate) fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        N(i64),
    }
    match Either::deserialize(d)? {
        Either::N(n) => Ok(n),
        Either::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// Like [`int64`] for repeated fields.
pub(crate) fn int64_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "int64")] i64);
    let v: Vec<W> = Vec::deserialize(d)?;
    Ok(v.into_iter().map(|w| w.0).collect())
}

/// Whether the URL's host is a loopback address or `localhost`.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_answer_has_one_kind() {
        use ErrorKind::*;
        let json = |http: u16, status: &str| {
            format!(r#"{{"error":{{"code":{http},"message":"m","status":"{status}"}}}}"#)
        };
        let html = b"<!DOCTYPE html><html>Error 404 (Not Found)!!1</html>".to_vec();
        for (http, body, kind) in [
            (409, json(409, "ABORTED").into_bytes(), Conflict),
            // Only ABORTED is an etag conflict.
            (409, json(409, "ALREADY_EXISTS").into_bytes(), Permanent),
            (404, json(404, "NOT_FOUND").into_bytes(), NotFound),
            // An HTML page says nothing about the resource, and a front end's page is worth a
            // retry.
            (404, html.clone(), Transient),
            (502, html, Transient),
            (429, json(429, "RESOURCE_EXHAUSTED").into_bytes(), Transient),
            (500, json(500, "INTERNAL").into_bytes(), Transient),
            (503, json(503, "UNAVAILABLE").into_bytes(), Transient),
            (504, json(504, "DEADLINE_EXCEEDED").into_bytes(), Transient),
            (400, json(400, "INVALID_ARGUMENT").into_bytes(), Permanent),
            (403, json(403, "PERMISSION_DENIED").into_bytes(), Permanent),
            (
                400,
                json(400, "FAILED_PRECONDITION").into_bytes(),
                Permanent,
            ),
        ] {
            let e = status_error("GET", "/v2/x", http, &body);
            assert_eq!(e.kind(), kind, "{e}");
        }
        let e = status_error("GET", "/v2/nope", 404, b"<html>x</html>");
        assert!(e.to_string().contains("non-JSON error body"), "{e}");
    }

    /// A client whose calls fail at once (no token, nothing listening on port 1).
    fn unreachable() -> (Google, String) {
        let google = Google::new(reqwest::Client::new(), TokenSource::None);
        (google, "http://127.0.0.1:1/v2/x?secret=1".to_string())
    }

    #[tokio::test]
    async fn no_answer_is_transient_and_keeps_reqwests_error() {
        let (google, url) = unreachable();
        let e = google
            .attempt(
                "GET",
                "/v2/x",
                &|c: &reqwest::Client| c.get(&url),
                deadline_in(5_000),
            )
            .await
            .map_err(|f| f.error)
            .expect_err("nothing listens");
        assert_eq!(e.kind(), ErrorKind::Transient);
        let source = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<TransportFailure>())
            .expect("the transport failure is the source");
        assert!(source.reqwest().is_connect(), "{source:?}");
        let shown = chain(&e).to_string();
        assert!(shown.starts_with("GET /v2/x: connection failed"), "{shown}");
        assert!(!shown.contains("secret"), "no query in the text: {shown}");
    }

    #[tokio::test]
    async fn a_deadline_keeps_the_last_failure_as_its_source() {
        let (google, url) = unreachable();
        let e = google
            .call::<serde_json::Value>("GET", &url, |c| c.get(&url), deadline_in(30))
            .await
            .expect_err("nothing listens");
        assert_eq!(e.kind(), ErrorKind::Transient);
        let ApiError::Deadline { last, .. } = &e else {
            panic!("not a deadline: {e:?}")
        };
        assert!(matches!(**last, ApiError::Transport { .. }), "{last:?}");
        let shown = chain(&e).to_string();
        assert!(
            shown
                .contains("attempt(s); last error: GET http://127.0.0.1:1/v2/x: connection failed"),
            "{shown}"
        );
        assert!(!shown.contains("secret"), "no query in the text: {shown}");
    }

    #[test]
    fn unreadable_answers_and_missing_tokens_are_transient_with_their_source() {
        let source = serde_json::from_slice::<serde_json::Value>(b"{\"trunc").expect_err("bad");
        let e = ApiError::Decode {
            method: "GET",
            path: "/v2/x".into(),
            expected: Some("Service"),
            source,
        };
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(
            chain(&e)
                .to_string()
                .starts_with("GET /v2/x: unreadable response: not a Service: EOF"),
            "{}",
            chain(&e)
        );
        let e = ApiError::Token(google_cloud_auth::errors::CredentialsError::from_msg(
            true,
            "metadata server down",
        ));
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(
            chain(&e).to_string().contains("metadata server down"),
            "{}",
            chain(&e)
        );
    }

    fn deadline_in(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..20 {
            let b = backoff(attempt);
            assert!(b <= Duration::from_millis(3200), "{b:?}");
            assert!(b >= Duration::from_millis(50));
        }
    }

    #[test]
    fn int64_accepts_strings_and_numbers() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "int64")]
            a: i64,
            #[serde(deserialize_with = "int64_list")]
            b: Vec<i64>,
        }
        let t: T = serde_json::from_str(r#"{"a":"42","b":["1",2]}"#).unwrap();
        assert_eq!((t.a, t.b), (42, vec![1, 2]));
    }
}
