//! Turning Pub/Sub push requests into typed cutover events.
//!
//! cutover learns about the world only through Pub/Sub push deliveries. This module is the
//! boundary where those untrusted HTTP bodies become typed values; nothing past it sees raw JSON.
//! It never panics on input: every oddity in a body is either tolerated or reported as an error.
//!
//! # Layers
//!
//! 1. **Authentication** ([`auth`]): each push request may carry an OIDC token
//!    (`Authorization: Bearer <jwt>`) minted by Google for the subscription's service account.
//!    [`PushAuth::check`] verifies it (RS256 only, Google issuer, exact audience, allowed
//!    service-account email) against Google's published keys, cached with single-flight refresh.
//!    An [`AuthError`] is answered 401, except [`AuthError::is_transient`] ones (503).
//! 2. **Envelope** ([`envelope`]): [`PushMessage::from_body`] unwraps the push envelope
//!    (`{"message": {...}, "subscription": ...}`) and base64-decodes `data`. A body that is not an
//!    envelope at all is [`EnvelopeError::NotAnEnvelope`] (answer 400); an envelope whose `data` is
//!    not base64 is [`EnvelopeError::BadData`] (ack it and log: redelivery would not help).
//! 3. **Event payloads**, decoded from [`PushMessage::data`] according to which subscription the
//!    message arrived on:
//!    * [`BuildNotification`] ([`build`]): a Cloud Build `Build` resource published to the
//!      `cloud-builds` topic on every status change. A successful build that names a Cloud Run
//!      service (substitution `_SERVICE_NAME`, else the `gcloud run deploy … --no-traffic`
//!      commands of its steps, read by [`deploy_steps`]) is what starts a rollout.
//!    * [`Incident`] ([`alert`]): a Cloud Monitoring alert notification (schema `1.2`, or Google's
//!      `version: "test"` notification). An open incident on the service under rollout is what
//!      aborts it.
//!    * Cloud Scheduler ticks need no decoder here: Scheduler publishes exactly the job's
//!      configured `data` and `attributes`, with no Scheduler-specific fields, so a tick is just a
//!      [`PushMessage`] whose data the receiver interprets itself.
//!
//!    Each decoder fails with a [`DecodeError`] carrying a human-readable reason. Such a message
//!    is well-formed Pub/Sub but useless to cutover, so it should be acked and logged, not retried.
//! 4. **Ids and text** ([`crate::ids`], [`crate::ids::text`]): every identifier a decoder
//!    returns (message, build and incident ids, service, revision, project, region) is a checked
//!    [`crate::ids::Id`], made once,
//!    where it enters, with a known shape and length; free text (an incident's summary) is
//!    bounded and stripped of control characters. Nothing past this module can log, echo or
//!    keep an unbounded or line-breaking string from a message.
//! 5. **Scope** ([`resolve`]): [`Scope::resolve`] turns what an event names into the service to
//!    act on, or refuses it when no tick would ever evaluate that service (another project, a
//!    region outside `CUTOVER_REGIONS`).
//!
//! Pub/Sub delivers at least once and may reorder, so every event here can arrive twice or out of
//! order (a `QUEUED` build notification after `WORKING`, a `closed` incident before `open`);
//! consumers key on the ids ([`PushMessage::message_id`], [`BuildNotification::build_id`],
//! [`Incident::incident_id`]) and must be idempotent.

pub mod alert;
pub mod auth;
pub mod build;
pub mod deploy_steps;
pub mod envelope;
mod lenient;
pub mod resolve;

pub use crate::ids::{
    BuildId, IdError, IncidentId, MessageId, ProjectId, Region, RevisionName, ServiceName,
};
pub use alert::{Incident, IncidentState};
pub use auth::{AuthError, GoogleVerifier, GoogleVerifierConfig, PushAuth, PushIdentity};
pub use build::{BuildNotification, BuildStatus};
pub use deploy_steps::{DeployCommand, DeployTarget};
pub use envelope::{EnvelopeError, PushMessage};
pub use resolve::{Named, Refusal, Scope};

/// Why a well-formed push message could not be decoded into a cutover event.
///
/// The reason is written for humans (operators reading logs), e.g. `message data is not JSON: …`
/// or `build has no id`. It never contains the message data itself beyond short, quoted excerpts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DecodeError {
    reason: String,
}

impl DecodeError {
    /// An error with the given human-readable reason.
    pub fn new(reason: impl Into<String>) -> Self {
        DecodeError {
            reason: reason.into(),
        }
    }

    /// The human-readable reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_error_displays_its_reason() {
        let e = DecodeError::new("build has no id");
        assert_eq!(e.to_string(), "build has no id");
        assert_eq!(e.reason(), "build has no id");
    }
}
