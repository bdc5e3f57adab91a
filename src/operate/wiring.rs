//! The router of every platform, built from the settings the same way for `cutover serve` and
//! the operator verbs.
//!
//! Cloud Run's router is always built (a Cloud Run target of a disabled platform is refused by
//! `Scope::resolve` before it reaches a router). App Engine services and URL maps are each a
//! split platform joined to the Firestore records by `router::recorded::Recorded`; their types
//! are [`AppEngineRouter`] and [`LoadBalancerRouter`], and [`platform_routers`] is the one
//! function that builds them.

use anyhow::bail;

use crate::clock::Clock;
use crate::config::{GoogleArgs, PlatformArgs};
use crate::gcp::Google;
use crate::gcp::run::RunClient;
use crate::router::any::{AnyRouter, Disabled};
use crate::router::cloud_run::CloudRunRouter;
use crate::router::firestore::Firestore;
use crate::target::Platform;

/// The App Engine router this binary serves.
pub type AppEngineRouter = Disabled;
/// The load-balancer (URL map) router this binary serves.
pub type LoadBalancerRouter = Disabled;
/// Every platform's router behind one [`crate::router::TrafficRouter`].
pub type LiveRouter = AnyRouter<CloudRunRouter, AppEngineRouter, LoadBalancerRouter>;

/// The store of the records of App Engine and load-balancer targets.
pub fn firestore(
    google: &Google,
    endpoints: &GoogleArgs,
    p: &PlatformArgs,
    project: &str,
) -> Firestore {
    Firestore::new(
        google.clone(),
        &endpoints.firestore_endpoint,
        p.firestore_project(project),
        p.firestore_database.trim(),
        p.firestore_collection.trim(),
    )
}

/// The routers of the enabled global platforms, their records in `store`.
pub fn platform_routers(
    _google: &Google,
    _endpoints: &GoogleArgs,
    p: &PlatformArgs,
    _store: Firestore,
    _clock: &Clock,
) -> anyhow::Result<(Option<AppEngineRouter>, Option<LoadBalancerRouter>)> {
    for platform in [Platform::AppEngine, Platform::LoadBalancer] {
        if p.platforms.contains(&platform) {
            bail!("CUTOVER_PLATFORMS: {platform} is not built into this cutover yet");
        }
    }
    Ok((None, None))
}

/// Every enabled platform's router.
pub fn live_router(
    google: &Google,
    endpoints: &GoogleArgs,
    p: &PlatformArgs,
    project: &str,
    clock: &Clock,
) -> anyhow::Result<LiveRouter> {
    let cloud_run = CloudRunRouter::new(RunClient::new(google.clone(), &endpoints.run_endpoint));
    let store = firestore(google, endpoints, p, project);
    let (app_engine, load_balancer) = platform_routers(google, endpoints, p, store, clock)?;
    Ok(AnyRouter {
        cloud_run: Some(cloud_run),
        app_engine,
        load_balancer,
    })
}

/// The regions ticks and listings cover: the Cloud Run regions, and [`crate::target::GLOBAL`]
/// when a platform without regions is enabled.
pub fn listed_regions(regions: &[String], p: &PlatformArgs) -> Vec<String> {
    let mut all = regions.to_vec();
    if p.needs_firestore() && !all.iter().any(|r| r == crate::target::GLOBAL) {
        all.push(crate::target::GLOBAL.to_string());
    }
    all
}
