//! The ack/nack policy, in one place.
//!
//! Pub/Sub acknowledges a push on 102/200/201/202/204 and redelivers on anything else, so the
//! status code of each answer *is* the error-handling policy:
//! - handled, duplicate, irrelevant, or a message that can never be used (bad base64, wrong
//!   JSON, a service that does not exist) → 200 with a JSON body saying which, and a log line
//!   with the message id and reason: redelivering it would never help;
//! - a transient failure (Google API throttled, unavailable, timed out) → 503, so Pub/Sub's
//!   retry policy is the backoff;
//! - a body that is not a push envelope → 400; above 1 MiB → 413 (the body limit layer);
//! - push authentication failed → 401 (503 if the signing keys could not be fetched).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::events::AuthError;

/// A push that was not handled.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push authentication failed: {0}")]
    Unauthorized(AuthError),
    #[error("push authentication unavailable: {0}")]
    AuthUnavailable(AuthError),
    #[error("not a Pub/Sub push envelope: {0}")]
    NotAnEnvelope(String),
    #[error("transient failure handling message {message_id}: {reason}")]
    Transient { message_id: String, reason: String },
}

impl IntoResponse for PushError {
    fn into_response(self) -> Response {
        let status = match &self {
            PushError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            PushError::AuthUnavailable(_) | PushError::Transient { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            PushError::NotAnEnvelope(_) => StatusCode::BAD_REQUEST,
        };
        match &self {
            PushError::Unauthorized(e) => tracing::warn!(error = %e, "push refused"),
            PushError::AuthUnavailable(e) => tracing::warn!(error = %e, "push not verifiable now"),
            PushError::NotAnEnvelope(e) => tracing::warn!(error = %e, "push body refused"),
            PushError::Transient { message_id, reason } => {
                tracing::warn!(message_id = %message_id, reason = %reason, "transient failure, asking Pub/Sub to redeliver")
            }
        }
        (status, Json(json!({"error": self.to_string()}))).into_response()
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
}

impl IntoResponse for Acked {
    fn into_response(self) -> Response {
        match self {
            Acked::Handled {
                message_id,
                mut body,
            } => {
                body["messageId"] = json!(message_id);
                body["outcome"] = json!("handled");
                (StatusCode::OK, Json(body)).into_response()
            }
            Acked::Ignored { message_id, reason } => {
                tracing::info!(message_id = %message_id, reason = %reason, "message acknowledged and ignored");
                (
                    StatusCode::OK,
                    Json(json!({"messageId": message_id, "outcome": "ignored", "reason": reason})),
                )
                    .into_response()
            }
        }
    }
}
