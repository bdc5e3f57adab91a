//! The seam of platforms that split traffic but cannot carry cutover's record.
//!
//! Cloud Run keeps the record in the service's annotations, written in the same etag-guarded
//! call as the traffic. App Engine services and URL maps have nowhere to put it, so their
//! routers are two parts: a [`SplitPlatform`], which only reads and writes the split (this
//! file's trait, one implementation per platform), and a [`RecordStore`](super::store), which
//! keeps the record with its own optimistic concurrency. `router::recorded` joins the two into
//! a [`TrafficRouter`](super::TrafficRouter), and is where the order of the two writes, and the
//! window between them, is decided and documented.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use tokio::time::Instant;

use super::RouterError;
use crate::decision::Target;
use crate::target::{Platform, ServiceRef};

/// One read of a target's split, without any record.
#[derive(Clone, Debug)]
pub struct SplitRead<V> {
    /// The newest revision (App Engine version, backend service) that may receive traffic: the
    /// candidate a build rolls out.
    pub latest_ready: Option<String>,
    /// Who serves what now: revision → percent, only shares above 0; the shares sum to 100.
    pub allocation: BTreeMap<String, u8>,
    /// Revisions that may receive traffic now (App Engine: `SERVING`; backends: every
    /// backend healthy).
    pub ready: BTreeSet<String>,
    /// Where each revision answers on its own, for the smoke check (App Engine's version URL),
    /// when the platform has such an address.
    pub urls: BTreeMap<String, String>,
    /// The platform's own version of what was read (what its guarded write needs).
    pub version: V,
}

/// A platform whose traffic split cutover moves, with no room for cutover's record.
///
/// # Guarantees
/// `write` sets the split to exactly the shares given (they sum to 100) and nothing else; where
/// the platform has a concurrency token (a URL map's `fingerprint`) the write is conditional on
/// the one `read` carries and a stale one is [`RouterError::Conflict`]. It returns once the
/// platform has applied the change (its operation is done).
pub trait SplitPlatform: Send + Sync + 'static {
    /// What a guarded write needs of the read it follows.
    type Version: Clone + Send + Sync + 'static;

    /// Which platform this is (targets of other platforms are never passed to it).
    const PLATFORM: Platform;

    /// Reads one target's split.
    fn read(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> impl Future<Output = Result<SplitRead<Self::Version>, RouterError>> + Send;

    /// Sets the split of `target` to `traffic` (revision → percent; tags are Cloud Run's and
    /// ignored here), conditional on `read` where the platform allows it, and returns the
    /// split as it is afterwards.
    fn write(
        &self,
        target: &ServiceRef,
        read: &SplitRead<Self::Version>,
        traffic: &[Target],
        deadline: Instant,
    ) -> impl Future<Output = Result<SplitRead<Self::Version>, RouterError>> + Send;
}
