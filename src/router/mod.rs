//! Traffic routing: the seam between decisions and a serving platform.
//!
//! A router observes a service (who serves what, which revisions are ready, cutover's record,
//! and a version token) and applies a [`Write`] conditionally on that token. Writing the split
//! and the record in one guarded call is what makes duplicate deliveries, reordering and several
//! cutover instances harmless: whoever writes second with a stale version is refused and decides
//! again on fresh state. Cloud Run is the one backend today ([`cloud_run`]).

pub mod cloud_run;

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use crate::decision::{Observed, Write};
use crate::failure::{Cause, ErrorKind};
use crate::target::ServiceRef;

/// What a router needs to write conditionally: the version token and the object as read.
#[derive(Clone, Debug, Default)]
pub struct Version {
    /// The platform's concurrency token (Cloud Run's `etag`).
    pub etag: String,
    /// The object exactly as read, sent back with only traffic and cutover's annotations
    /// changed.
    pub body: Arc<serde_json::Value>,
}

/// Why a router call failed: the platform's error, as its source, under the kind the platform's
/// client gave it (see [`crate::failure`]).
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The service does not exist.
    #[error("service not found")]
    NotFound(#[source] Cause),
    /// Someone else wrote since we read: observe again and decide again.
    #[error("concurrent update")]
    Conflict(#[source] Cause),
    /// Worth retrying later.
    #[error(transparent)]
    Transient(Cause),
    /// Will not succeed by retrying.
    #[error(transparent)]
    Permanent(Cause),
}

impl RouterError {
    /// The router error for a failure of kind `kind`.
    pub fn new(kind: ErrorKind, source: impl Into<Cause>) -> Self {
        let source = source.into();
        match kind {
            ErrorKind::NotFound => RouterError::NotFound(source),
            ErrorKind::Conflict => RouterError::Conflict(source),
            ErrorKind::Transient => RouterError::Transient(source),
            ErrorKind::Permanent => RouterError::Permanent(source),
        }
    }

    /// What the failure means.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RouterError::NotFound(_) => ErrorKind::NotFound,
            RouterError::Conflict(_) => ErrorKind::Conflict,
            RouterError::Transient(_) => ErrorKind::Transient,
            RouterError::Permanent(_) => ErrorKind::Permanent,
        }
    }
}

/// A platform that serves revisions and splits traffic between them.
///
/// # Guarantees
/// `apply` writes nothing unless the service is still at `observed.version`; it changes only
/// traffic and cutover's own record, never anything that would create a revision.
pub trait TrafficRouter: Send + Sync + 'static {
    /// Reads one service.
    fn observe(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> impl Future<Output = Result<Observed, RouterError>> + Send;

    /// Reads every service of a region (one listing, no per-service calls).
    fn list(
        &self,
        project: &str,
        region: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<Observed>, RouterError>> + Send;

    /// Writes traffic and record, conditional on `observed.version`, and returns the service
    /// as it is once the platform has applied the change.
    fn apply(
        &self,
        observed: &Observed,
        write: &Write,
        deadline: Instant,
    ) -> impl Future<Output = Result<Observed, RouterError>> + Send;
}
