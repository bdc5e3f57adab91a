//! The ack/nack policy, and what callers are told, in one place.
//!
//! Pub/Sub acknowledges a push on 102/200/201/202/204 and redelivers on anything else, so the
//! status code of each answer *is* the error-handling policy:
//! - handled, duplicate, irrelevant, or a message that can never be used (bad base64, wrong
//!   JSON, a service that does not exist) → 200 with a JSON body saying which, and a log line
//!   with the message id and reason: redelivering it would never help;
//! - a transient failure (Google API throttled, unavailable, timed out) or writes that kept
//!   losing their race → 503, so Pub/Sub's retry policy is the backoff;
//! - a body that is not a push envelope → 400; above [`crate::server::MAX_BODY_BYTES`] → 413
//!   (the body limit layer);
//! - push authentication failed → 401 (503 if the signing keys could not be fetched), answered
//!   from the headers alone, before any of the body is read.
//!
//! Which of these a failed reconciliation gets is decided by [`answer`] from the failure's
//! [`ErrorKind`] (decided where the Google API's answer was read, see [`crate::failure`]), never
//! from its text.
//!
//! **What the log says.** Each answer carries a [`Logged`] in its extensions, and the server's
//! trace layer writes it once the answer is out: a refusal or a nack at warn with the whole
//! chain of causes, an acknowledged-and-ignored message at info with its reason (preceded by an
//! error line when it failed for good). Nothing here logs while building a response.
//!
//! **What the body says.** An error answer says only what kind of failure it was
//! (`{"error": "unauthorized"}`, `{"error": "temporarily unavailable", "messageId": …}`): the
//! caller may be anyone who can reach the port, and the detail (which claim failed, the key
//! server's or a Google API's URL, an upstream error text) helps an attacker more than it helps
//! Pub/Sub, which ignores the body. The detail goes to the log, one warn line per refusal.
//!
//! Acknowledged answers (200) keep their reasons and decisions: they go only to a caller whose
//! push was authenticated (or to anyone when push authentication is off, which already lets
//! them act), and they say, in cutover's own words, what was decided about the caller's own
//! message — what a person replaying a message by hand, or the tests, need to see. Pub/Sub
//! itself keeps no response body. They never carry token claims (authentication is over by
//! then), and every URL in them (an upstream error naming the Run API, a tag URL in a smoke
//! check's reason) is replaced by [`REDACTED_URL`], so internal endpoints are not disclosed even
//! to that caller.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::events::AuthError;
use crate::failure::{Cause, ErrorKind, chain};
use crate::reconcile::{DecisionRecord, ReconcileError};

/// What replaces a URL in a caller-facing body.
pub const REDACTED_URL: &str = "<url>";

/// A push that was not handled.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push authentication failed")]
    Unauthorized(#[source] AuthError),
    #[error("push authentication unavailable")]
    AuthUnavailable(#[source] AuthError),
    #[error("not a Pub/Sub push envelope: {0}")]
    NotAnEnvelope(String),
    #[error("transient failure handling message {message_id}")]
    Transient {
        message_id: String,
        #[source]
        source: Cause,
    },
}

impl PushError {
    /// A push whose authentication failed: 503 if the keys could not be fetched (Pub/Sub
    /// retries), else 401.
    pub fn refused(e: AuthError) -> Self {
        if e.is_transient() {
            PushError::AuthUnavailable(e)
        } else {
            PushError::Unauthorized(e)
        }
    }
}

/// The answer to a message whose handling ended in `result`: the one place where what a failure
/// means ([`ErrorKind`]) becomes an ack or a nack. Transient failures and lost races are
/// answered 503 so that Pub/Sub redelivers; a service that does not exist, or a failure that
/// retrying cannot cure, is acknowledged with its reason.
pub fn answer(
    message_id: String,
    result: Result<Vec<DecisionRecord>, ReconcileError>,
) -> Result<Acked, PushError> {
    match result {
        Ok(decisions) => Ok(Acked::Handled {
            message_id,
            body: json!({ "decisions": decisions }),
        }),
        Err(error) if error.kind().worth_retrying() => Err(PushError::Transient {
            message_id,
            source: error.into(),
        }),
        Err(error) => Ok(Acked::Failed { message_id, error }),
    }
}

impl IntoResponse for PushError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            PushError::Unauthorized(_) => {
                (StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}))
            }
            PushError::AuthUnavailable(_) | PushError::Transient { .. } => {
                let mut body = json!({"error": "temporarily unavailable"});
                if let PushError::Transient { message_id, .. } = &self {
                    body["messageId"] = json!(message_id);
                }
                (StatusCode::SERVICE_UNAVAILABLE, body)
            }
            PushError::NotAnEnvelope(_) => (
                StatusCode::BAD_REQUEST,
                json!({"error": "not a Pub/Sub push envelope"}),
            ),
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(
            self,
            PushError::Unauthorized(_) | PushError::AuthUnavailable(_)
        ) {
            // The body of a refused push is never read: close rather than drain it.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
            .extensions_mut()
            .insert(Logged::Refused(Arc::new(self)));
        response
    }
}

/// A push that was acknowledged.
#[derive(Debug)]
pub enum Acked {
    /// Acted on (which may mean deciding there is nothing to do).
    Handled {
        message_id: String,
        body: serde_json::Value,
    },
    /// Acknowledged without acting: irrelevant, or unusable forever.
    Ignored { message_id: String, reason: String },
    /// Acknowledged because acting failed for good: the service does not exist, or the
    /// platform refused in a way no retry cures (see [`answer`]).
    Failed {
        message_id: String,
        error: ReconcileError,
    },
}

impl Acked {
    /// An acknowledgement without action, for `reason`.
    pub fn ignored(message_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Acked::Ignored {
            message_id: message_id.into(),
            reason: reason.into(),
        }
    }
}

impl IntoResponse for Acked {
    fn into_response(self) -> Response {
        let (mut body, logged) = match self {
            Acked::Handled {
                message_id,
                mut body,
            } => {
                body["messageId"] = json!(message_id);
                body["outcome"] = json!("handled");
                (body, None)
            }
            Acked::Ignored { message_id, reason } => (
                json!({"messageId": message_id, "outcome": "ignored", "reason": reason}),
                Some(Logged::Ignored {
                    message_id,
                    reason,
                    cannot_be_handled: false,
                }),
            ),
            Acked::Failed { message_id, error } => {
                let reason = chain(&error).to_string();
                (
                    json!({"messageId": message_id, "outcome": "ignored", "reason": reason}),
                    Some(Logged::Ignored {
                        message_id,
                        reason,
                        cannot_be_handled: error.kind() != ErrorKind::NotFound,
                    }),
                )
            }
        };
        redact_json(&mut body);
        let mut response = (StatusCode::OK, Json(body)).into_response();
        if let Some(logged) = logged {
            response.extensions_mut().insert(logged);
        }
        response
    }
}

/// What the log says about an answer. `into_response` attaches it to the response; the
/// server's trace layer writes it ([`Logged::log`]) once the answer is out, so handlers and
/// responses never log themselves.
#[derive(Clone, Debug)]
pub enum Logged {
    /// Not handled: refused, or to be redelivered.
    Refused(Arc<PushError>),
    /// Acknowledged without acting.
    Ignored {
        message_id: String,
        reason: String,
        /// Acting failed for good: also an error line, for someone to look at.
        cannot_be_handled: bool,
    },
}

impl Logged {
    /// Writes the log lines for the answer: a refusal or a nack at warn with its full chain of
    /// causes, an acknowledged message at info with its reason (and at error first when it
    /// cannot be handled).
    pub fn log(&self) {
        match self {
            Logged::Refused(e) => match &**e {
                PushError::Unauthorized(e) => tracing::warn!(error = %e, "push refused"),
                PushError::AuthUnavailable(e) => {
                    tracing::warn!(error = %e, "push not verifiable now");
                }
                PushError::NotAnEnvelope(e) => tracing::warn!(error = %e, "push body refused"),
                PushError::Transient { message_id, source } => {
                    tracing::warn!(message_id = %message_id, reason = %chain(&**source), "transient failure, asking Pub/Sub to redeliver");
                }
            },
            Logged::Ignored {
                message_id,
                reason,
                cannot_be_handled,
            } => {
                if *cannot_be_handled {
                    tracing::error!(message_id = %message_id, reason = %reason, "message cannot be handled");
                }
                tracing::info!(message_id = %message_id, reason = %reason, "message acknowledged and ignored");
            }
        }
    }
}

/// `text` with every `http://…` and `https://…` URL (up to the next whitespace, quote or angle
/// bracket, less trailing punctuation) replaced by [`REDACTED_URL`]. Matching is
/// case-insensitive.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_scheme(rest) {
        out.push_str(&rest[..start]);
        out.push_str(REDACTED_URL);
        let url = &rest[start..];
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(url.len());
        // Punctuation ending the sentence around the URL stays.
        let kept = url[..end].trim_end_matches([':', ',', '.', ';', ')']).len();
        rest = &url[kept.max(1)..];
    }
    out.push_str(rest);
    out
}

/// Byte offset of the first `http://` or `https://` in `text`, any case.
fn find_scheme(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    [lower.find("http://"), lower.find("https://")]
        .into_iter()
        .flatten()
        .min()
}

/// Applies [`redact_urls`] to every string (and object key) in `value`.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::String(s) => {
            if find_scheme(s).is_some() {
                *s = redact_urls(s);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            let keys: Vec<String> = map
                .keys()
                .filter(|k| find_scheme(k).is_some())
                .cloned()
                .collect();
            for key in keys {
                if let Some(v) = map.remove(&key) {
                    map.insert(redact_urls(&key), v);
                }
            }
            map.values_mut().for_each(redact_json);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> (u16, String) {
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn urls_are_redacted_in_any_case_and_position() {
        assert_eq!(
            redact_urls("GET https://run.googleapis.com/v2/projects/p: HTTP 503"),
            "GET <url>: HTTP 503"
        );
        assert_eq!(
            redact_urls("HTTP://a.example/x and \"http://b.example\""),
            "<url> and \"<url>\""
        );
        assert_eq!(
            redact_urls("no url here, http:/ nor https"),
            "no url here, http:/ nor https"
        );
        assert_eq!(redact_urls("ends with https://"), "ends with <url>");
    }

    #[test]
    fn json_bodies_are_redacted_throughout() {
        let mut v = json!({
            "decisions": [{"reason": "smoke check failed: GET http://127.0.0.1:9/__tag/x answered 302", "n": 1}],
            "failures": ["GET https://run.googleapis.com/v2/x: timed out"],
            "https://key.example": true,
        });
        redact_json(&mut v);
        let shown = v.to_string();
        assert!(!shown.contains("http"), "{shown}");
        assert_eq!(v["decisions"][0]["n"], 1);
    }

    #[tokio::test]
    async fn error_bodies_are_generic() {
        let cases = [
            PushError::Unauthorized(AuthError::WrongAudience(
                "https://elsewhere.example/builds".into(),
            )),
            PushError::Unauthorized(AuthError::WrongEmail("intruder@evil.example".into())),
            PushError::AuthUnavailable(AuthError::KeysUnavailable(
                "https://www.googleapis.com/oauth2/v3/certs answered HTTP 500".into(),
            )),
            PushError::NotAnEnvelope("missing field `message` at line 1".into()),
            PushError::Transient {
                message_id: "42".into(),
                source:
                    "GET https://run.googleapis.com/v2/projects/p/locations/r/services/s: HTTP 503"
                        .into(),
            },
        ];
        for e in cases {
            let shown = e.to_string();
            let (status, body) = body_of(e.into_response()).await;
            assert!(status >= 400, "{shown}");
            for secret in ["http", "aud", "email", "intruder", "googleapis", "field"] {
                assert!(!body.contains(secret), "{shown} → {body}");
            }
        }
        let (status, body) = body_of(
            PushError::Transient {
                message_id: "42".into(),
                source: "x".into(),
            }
            .into_response(),
        )
        .await;
        assert_eq!(status, 503);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap_or_default(),
            json!({"error": "temporarily unavailable", "messageId": "42"})
        );
    }

    /// A Run API answer, read where the gcp client reads it.
    fn run_api(http: u16, status: &str) -> ReconcileError {
        let body = format!(r#"{{"error":{{"code":{http},"message":"m","status":"{status}"}}}}"#);
        let path = "https://run.googleapis.com/v2/projects/p/locations/r/services/s";
        let api = crate::gcp::status_error("GET", path, http, body.as_bytes());
        crate::router::RouterError::new(api.kind(), api).into()
    }

    #[tokio::test]
    async fn each_kind_of_failure_gets_its_answer_with_the_whole_chain_as_reason() {
        let lost = crate::router::RouterError::new(ErrorKind::Conflict, "etag");
        for (error, status, reason) in [
            (
                run_api(404, "NOT_FOUND"),
                200,
                "service not found: GET <url>: HTTP 404 NOT_FOUND: m",
            ),
            (
                run_api(403, "PERMISSION_DENIED"),
                200,
                "GET <url>: HTTP 403 PERMISSION_DENIED: m",
            ),
            (run_api(503, "UNAVAILABLE"), 503, ""),
            (ReconcileError::Conflicts(lost), 503, ""),
        ] {
            let shown = chain(&error).to_string();
            let response = match answer("9".into(), Err(error)) {
                Ok(acked) => acked.into_response(),
                Err(nack) => nack.into_response(),
            };
            let (got, body) = body_of(response).await;
            assert_eq!(got, status, "{shown}");
            let body: Value = serde_json::from_str(&body).unwrap_or_default();
            if status == 200 {
                assert_eq!(body["reason"], reason, "{shown}");
            } else {
                assert_eq!(
                    body,
                    json!({"error": "temporarily unavailable", "messageId": "9"})
                );
            }
        }
    }

    #[test]
    fn kinds_survive_every_layer_and_the_api_error_stays_the_source() {
        for (http, status, kind) in [
            (404, "NOT_FOUND", ErrorKind::NotFound),
            (409, "ABORTED", ErrorKind::Conflict),
            (503, "UNAVAILABLE", ErrorKind::Transient),
            (400, "INVALID_ARGUMENT", ErrorKind::Permanent),
        ] {
            let e = run_api(http, status);
            assert_eq!(e.kind(), kind);
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut found = false;
            while let Some(s) = source {
                found |= s.downcast_ref::<crate::gcp::ApiError>().is_some();
                source = s.source();
            }
            // A transparent layer shows the API error as itself rather than as a source.
            let itself = matches!(kind, ErrorKind::Transient | ErrorKind::Permanent);
            assert!(found || itself, "{kind:?}: {}", chain(&e));
            assert!(
                chain(&e)
                    .to_string()
                    .contains(&format!("HTTP {http} {status}"))
            );
        }
        let lost =
            ReconcileError::Conflicts(crate::router::RouterError::new(ErrorKind::Conflict, "etag"));
        assert_eq!(
            lost.kind(),
            ErrorKind::Transient,
            "losing every race is retried"
        );
    }

    #[tokio::test]
    async fn acknowledged_bodies_keep_reasons_without_urls() {
        let (status, body) = body_of(
            Acked::Ignored {
                message_id: "7".into(),
                reason:
                    "service not found: GET https://run.googleapis.com/v2/x: HTTP 404 NOT_FOUND"
                        .into(),
            }
            .into_response(),
        )
        .await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(
            v["reason"],
            "service not found: GET <url>: HTTP 404 NOT_FOUND"
        );
    }
}
