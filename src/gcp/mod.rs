//! Google REST APIs on the wire: serde types and reqwest calls, nothing else.
//!
//! One file per API ([`run`], [`monitoring`], [`metadata`]) plus the pieces they share here:
//! the `google.rpc.Status` error body, the classification of failures into transient /
//! conflict / permanent, and the retry loop. Base URLs are injected, which is the seam the fakes
//! plug into. Nothing here knows about rollouts.

pub mod metadata;
pub mod monitoring;
pub mod run;
pub mod token;

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

pub use token::TokenSource;

/// Timeout for a single HTTP attempt; the per-event deadline bounds the whole exchange.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// A failed Google API call.
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
    #[error("{method} {path}: {message}")]
    Transport {
        method: &'static str,
        path: String,
        message: String,
    },
    /// An answer that does not parse as the API's documented shape.
    #[error("{method} {path}: unreadable response: {message}")]
    Decode {
        method: &'static str,
        path: String,
        message: String,
    },
    /// No access token could be obtained.
    #[error("no access token: {0}")]
    Token(String),
    /// The per-event deadline passed.
    #[error("deadline exceeded after {attempts} attempt(s); last error: {last}")]
    Deadline { attempts: u32, last: String },
}

impl ApiError {
    /// Worth retrying later: throttling, server errors, no answer, no token yet, deadline, and
    /// answers that did not come from the API itself (a non-JSON error page from a front end or
    /// proxy) or arrived garbled (truncated JSON). Redelivery costs little; dropping a build or
    /// an alert because one answer was mangled would lose it.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Status { http, status, .. } => {
                matches!(http, 429 | 500 | 502 | 503 | 504) || status == NOT_FROM_THE_API
            }
            ApiError::Transport { .. }
            | ApiError::Token(_)
            | ApiError::Deadline { .. }
            | ApiError::Decode { .. } => true,
        }
    }

    /// Someone else wrote first (stale etag): re-read and decide again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ApiError::Status { http: 409, status, .. } if status == "ABORTED")
    }

    /// The resource does not exist: the API itself said `NOT_FOUND` (an HTML 404 from a front
    /// end says nothing about the resource).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { http: 404, status, .. } if status == "NOT_FOUND")
    }
}

/// `status` of an error whose body was not a `google.rpc.Status` (an HTML page, say).
pub const NOT_FROM_THE_API: &str = "NOT_FROM_THE_API";

/// The standard error envelope `{"error": {"code", "message", "status", "details"}}`.
#[derive(Deserialize)]
struct ErrorEnvelope {
    error: RpcStatus,
}

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
            if e.error.status.is_empty() {
                "UNKNOWN".to_string()
            } else {
                e.error.status
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

/// An authenticated JSON client for Google REST APIs.
#[derive(Clone)]
pub struct Google {
    pub http: reqwest::Client,
    pub tokens: TokenSource,
}

impl Google {
    pub fn new(http: reqwest::Client, tokens: TokenSource) -> Self {
        Google { http, tokens }
    }

    /// Sends a request built by `build` and decodes the JSON answer, retrying transient
    /// failures with backoff until `deadline`. Conflicts and other client errors are returned at
    /// once: retrying a stale write would be wrong.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        url: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let path = redact_query(url);
        let mut attempt = 0u32;
        loop {
            let err = match self.attempt(method, &path, &build, deadline).await {
                // A garbled answer (truncated JSON) is retried like any transient failure.
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(v) => return Ok(v),
                    Err(e) => ApiError::Decode {
                        method,
                        path: path.clone(),
                        message: e.to_string(),
                    },
                },
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => e,
            };
            attempt += 1;
            let pause = backoff(attempt);
            if Instant::now() + pause >= deadline {
                return Err(ApiError::Deadline {
                    attempts: attempt,
                    last: err.to_string(),
                });
            }
            tracing::debug!(error = %err, attempt, "retrying Google API call");
            tokio::time::sleep(pause).await;
        }
    }

    async fn attempt(
        &self,
        method: &'static str,
        path: &str,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<Vec<u8>, ApiError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ApiError::Deadline {
                attempts: 0,
                last: "no time left".into(),
            });
        }
        let mut req = build(&self.http).timeout(left.min(ATTEMPT_TIMEOUT));
        if let Some(token) = self.tokens.token().await? {
            req = req.bearer_auth(token);
        }
        let transport = |e: reqwest::Error| ApiError::Transport {
            method,
            path: path.to_string(),
            message: without_url(&e),
        };
        let resp = req.send().await.map_err(transport)?;
        let http = resp.status().as_u16();
        let body = resp.bytes().await.map_err(transport)?;
        if (200..300).contains(&http) {
            Ok(body.to_vec())
        } else {
            Err(status_error(method, path, http, &body))
        }
    }
}

/// The URL without its query string, for error messages and logs.
fn redact_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// reqwest's error text without the URL it appends (which can be long and carries queries).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_classified() {
        let e = status_error(
            "PATCH",
            "/v2/x",
            409,
            br#"{"error":{"code":409,"message":"etag mismatch","status":"ABORTED"}}"#,
        );
        assert!(e.is_conflict() && !e.is_transient());
        let e = status_error(
            "GET",
            "/v2/x",
            503,
            br#"{"error":{"code":503,"message":"down","status":"UNAVAILABLE"}}"#,
        );
        assert!(e.is_transient() && !e.is_conflict());
        let e = status_error(
            "GET",
            "/v2/nope",
            404,
            b"<!DOCTYPE html><html>Error 404 (Not Found)!!1</html>",
        );
        assert!(
            !e.is_not_found(),
            "an HTML page says nothing about the resource"
        );
        assert!(e.is_transient(), "a front end's page is worth a retry");
        assert!(e.to_string().contains("non-JSON error body"));
        let e = status_error(
            "GET",
            "/v2/x",
            404,
            br#"{"error":{"code":404,"message":"no","status":"NOT_FOUND"}}"#,
        );
        assert!(e.is_not_found() && !e.is_transient());
        let e = status_error(
            "GET",
            "/v2/x",
            403,
            br#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#,
        );
        assert!(!e.is_transient());
        let e = status_error(
            "GET",
            "/v2/x",
            409,
            br#"{"error":{"code":409,"message":"exists","status":"ALREADY_EXISTS"}}"#,
        );
        assert!(!e.is_conflict(), "only ABORTED is an etag conflict");
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
