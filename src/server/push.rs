//! The verified-push extractor: a push request becomes a [`VerifiedPush`] only once its
//! `Authorization` header has been checked for the endpoint it was sent to and its body has
//! been unwrapped as a Pub/Sub push envelope.
//!
//! The order is the point. Authentication reads the headers alone, so a forged or misdirected
//! push is answered (401, or 503 if the signing keys could not be fetched) before a byte of its
//! body is read, and its connection is closed rather than drained: it costs no memory however
//! large a body it announces. Only then is the body read, within [`super::MAX_BODY_BYTES`]
//! (413 beyond). A body that is not an envelope is answered 400; an envelope whose data is not
//! base64 is acknowledged with its reason, as redelivering it would never help.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};

use super::App;
use crate::error::{Acked, PushError};
use crate::events::auth::PushEndpoint;
use crate::events::{AuthError, DecodeError, EnvelopeError, PushIdentity, PushMessage};

/// A push authenticated for its endpoint, with its envelope decoded.
#[derive(Clone, Debug)]
pub struct VerifiedPush {
    /// The endpoint it was sent to, and authenticated for.
    pub endpoint: PushEndpoint,
    /// Who sent it, when push authentication is on.
    pub identity: Option<PushIdentity>,
    pub message: PushMessage,
}

impl VerifiedPush {
    /// The message id, as the answer names it.
    pub fn message_id(&self) -> String {
        self.message.message_id.to_string()
    }

    /// The message's data decoded by `decode`, or, when it is not a `what`, the acknowledgement
    /// saying why (redelivering it would not help).
    pub fn decode<T>(
        &self,
        what: &str,
        decode: impl FnOnce(&PushMessage) -> Result<T, DecodeError>,
    ) -> Result<T, Acked> {
        decode(&self.message)
            .map_err(|e| Acked::ignored(self.message_id(), format!("not a {what}: {e}")))
    }
}

impl FromRequest<Arc<App>> for VerifiedPush {
    /// The whole answer: a refusal, a nack, or the acknowledgement of an unusable message.
    type Rejection = Response;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let Some(endpoint) = PushEndpoint::from_path(req.uri().path()) else {
            return Err(PushError::Unauthorized(AuthError::Malformed(
                "no push endpoint here".into(),
            ))
            .into_response());
        };
        let authorization = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let identity = app
            .auth
            .check(authorization, endpoint, app.clock.now())
            .await
            .map_err(|e| PushError::refused(e).into_response())?;
        let body = Bytes::from_request(req, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let message = PushMessage::from_body(&body).map_err(|e| match e {
            EnvelopeError::NotAnEnvelope(why) => PushError::NotAnEnvelope(why).into_response(),
            EnvelopeError::BadData { message_id, reason } => Acked::ignored(
                message_id,
                format!("message data is not valid base64: {reason}"),
            )
            .into_response(),
        })?;
        Ok(VerifiedPush {
            endpoint,
            identity,
            message,
        })
    }
}
