//! Where a rollout's record lives when its platform cannot carry it (see [`super::split`]).
//!
//! The record is the same map of `cutover.dev/*` keys the Cloud Run router keeps in annotations,
//! so the decision core reads it the same way whatever the platform. A store gives each
//! target's record a version and writes conditionally on it: the same "whoever writes second
//! with a stale version is refused" guarantee as Cloud Run's etag.

use std::collections::BTreeMap;
use std::future::Future;

use tokio::time::Instant;

use super::RouterError;
use crate::target::{Platform, ServiceRef};

/// A target's record as stored, with the version a conditional write needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stored {
    /// The record (`cutover.dev/*` keys) and any per-target policy overrides.
    pub annotations: BTreeMap<String, String>,
    /// The store's version of the record (Firestore: the document's `updateTime`); `None`
    /// when the target has no record yet.
    pub version: Option<String>,
}

/// A store of rollout records with optimistic concurrency.
///
/// # Guarantees
/// `write` succeeds only if the record is still at `expected` (`None`: it still does not
/// exist); otherwise it is [`RouterError::Conflict`] and nothing is written.
pub trait RecordStore: Send + Sync + 'static {
    /// Reads one target's record (an absent record is `Stored::default()`).
    fn read(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> impl Future<Output = Result<Stored, RouterError>> + Send;

    /// Every record of `platform` in `project` (one listing; the ticks' view).
    fn list(
        &self,
        project: &str,
        platform: Platform,
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<(ServiceRef, Stored)>, RouterError>> + Send;

    /// Replaces the record of `target`, conditional on `expected`; returns it as stored.
    fn write(
        &self,
        target: &ServiceRef,
        annotations: &BTreeMap<String, String>,
        expected: Option<&str>,
        deadline: Instant,
    ) -> impl Future<Output = Result<Stored, RouterError>> + Send;
}
