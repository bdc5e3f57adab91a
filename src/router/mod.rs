//! Traffic routing: the seam between decisions and a serving platform.
//!
//! A router observes a service (who serves what, which revisions are ready, cutover's record)
//! together with its own version of it, and applies a [`Write`] conditionally on that version. Writing the split
//! and the record in one guarded call is what makes duplicate deliveries, reordering and several
//! cutover instances harmless: whoever writes second with a stale version is refused and decides
//! again on fresh state. Cloud Run is the router that carries its own record ([`cloud_run`]); App
//! Engine ([`app_engine`]) and URL maps ([`load_balancer`]) only split ([`split`]); their record
//! lives in Firestore ([`firestore`]), joined to the split by [`recorded`]; [`any`] dispatches on
//! the target's platform.

pub mod any;
pub mod app_engine;
pub mod cloud_run;
pub mod firestore;
pub mod load_balancer;
pub mod recorded;
pub mod shares;
pub mod split;
pub mod store;
#[cfg(test)]
pub(crate) mod stub;

use std::future::Future;

use tokio::time::Instant;

use crate::decision::{Observed, Write};
use crate::failure::{Cause, ErrorKind};
use crate::target::ServiceRef;

/// One read of a service: what decisions need, and what the router needs to write after it.
#[derive(Clone, Debug)]
pub struct Observation<V> {
    /// The service as the decision core sees it.
    pub observed: Observed,
    /// The router's own version of what it read ([`TrafficRouter::Version`]), handed back to
    /// [`TrafficRouter::apply`].
    pub version: V,
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
/// `apply` writes nothing unless the service is still at the version it was read at; it changes
/// only traffic and cutover's own record, never anything that would create a revision.
pub trait TrafficRouter: Send + Sync + 'static {
    /// What a conditional write needs of the read it follows (Cloud Run: the `etag` and the
    /// service as read). Opaque to everyone but the router.
    type Version: Send + Sync + 'static;

    /// Reads one service.
    fn observe(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> impl Future<Output = Result<Observation<Self::Version>, RouterError>> + Send;

    /// Reads every service of a region (one listing, no per-service calls).
    fn list(
        &self,
        project: &str,
        region: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<Observation<Self::Version>>, RouterError>> + Send;

    /// `read` as a message can carry it to another instance, which turns it back into the same
    /// read with [`TrafficRouter::resume`] instead of reading the service again (a fanned-out
    /// evaluation, `reconcile::fanout`); `None`, the default, when this router cannot carry its
    /// reads, and the other instance then observes the service itself.
    fn carry(&self, read: &Observation<Self::Version>) -> Option<serde_json::Value> {
        let _ = read;
        None
    }

    /// The read of `target` that [`TrafficRouter::carry`] made, back; `None` when `carried` is
    /// not one (another service's, not a read of this router's, one that could not guard a
    /// write), and the service must be observed afresh. A resumed read guards a write exactly
    /// as the read it was carried from: a stale one loses the race like any other.
    fn resume(
        &self,
        target: &ServiceRef,
        carried: serde_json::Value,
    ) -> Option<Observation<Self::Version>> {
        let _ = (target, carried);
        None
    }

    /// Writes traffic and record, conditional on the version `read` was made at, and returns
    /// the service as it is once the platform has applied the change.
    fn apply(
        &self,
        read: &Observation<Self::Version>,
        write: &Write,
        deadline: Instant,
    ) -> impl Future<Output = Result<Observation<Self::Version>, RouterError>> + Send;
}
