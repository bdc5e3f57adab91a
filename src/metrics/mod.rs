//! Where evidence about revisions comes from.
//!
//! This is the second of cutover's two seams (the first is the router, src/router/). The decision core
//! asks for request counts, 5xx counts and a latency histogram per revision over a window (its
//! [`evidence`](crate::decision::evidence) types); [`MetricsSource`] is how a backend answers.
//! A transport failure is an error and never reads as healthy.

pub mod cloud_monitoring;

use std::future::Future;

use crate::decision::evidence::{ServiceStats, Window};
use crate::failure::{Cause, ErrorKind};
use crate::target::ServiceRef;

/// Why evidence could not be gathered, with the backend's error as its source. Never read as
/// "healthy".
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Worth trying again later (throttling, 5xx, timeouts).
    #[error("metrics unavailable")]
    Transient(#[source] Cause),
    /// Will not get better by retrying (bad query, permissions, unreadable answer).
    #[error("metrics query failed")]
    Permanent(#[source] Cause),
}

impl MetricsError {
    /// The metrics error for a failure of kind `kind`: only a transient failure is worth asking
    /// again.
    pub fn new(kind: ErrorKind, source: impl Into<Cause>) -> Self {
        match kind {
            ErrorKind::Transient => MetricsError::Transient(source.into()),
            ErrorKind::Conflict | ErrorKind::NotFound | ErrorKind::Permanent => {
                MetricsError::Permanent(source.into())
            }
        }
    }

    /// What the failure means.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetricsError::Transient(_) => ErrorKind::Transient,
            MetricsError::Permanent(_) => ErrorKind::Permanent,
        }
    }
}

/// Where revision metrics come from.
///
/// # Guarantees
/// One call returns every revision of the service over the same window, so a candidate and its
/// stable revision are always compared on equal terms.
pub trait MetricsSource: Send + Sync + 'static {
    fn service_stats(
        &self,
        target: &ServiceRef,
        window: Window,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Result<ServiceStats, MetricsError>> + Send;
}
