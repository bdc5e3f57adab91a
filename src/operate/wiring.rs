//! The router of every platform, built from the settings the same way for `cutover serve` and
//! the operator verbs.
//!
//! Cloud Run's router is always built (a Cloud Run target of a disabled platform is refused by
//! `Scope::resolve` before it reaches a router). App Engine services and URL maps are each a
//! split platform joined to the Firestore records by `router::recorded::Recorded`; their types
//! are [`AppEngineRouter`] and [`LoadBalancerRouter`], and [`platform_routers`] is the one
//! function that builds them.

use anyhow::Context;

use crate::clock::Clock;
use crate::config::{GoogleArgs, PlatformArgs};
use crate::gcp::Google;
use crate::gcp::appengine::{AppEngineClient, ShardBy};
use crate::gcp::compute::ComputeClient;
use crate::gcp::run::RunClient;
use crate::router::any::AnyRouter;
use crate::router::app_engine::AppEngineSplit;
use crate::router::cloud_run::CloudRunRouter;
use crate::router::firestore::Firestore;
use crate::router::load_balancer::{Route, UrlMapSplit};
use crate::router::recorded::Recorded;
use crate::target::Platform;

/// The App Engine router this binary serves: versions' split, records in Firestore.
pub type AppEngineRouter = Recorded<AppEngineSplit, Firestore>;
/// The load-balancer router this binary serves: a URL map's weights, records in Firestore.
pub type LoadBalancerRouter = Recorded<UrlMapSplit, Firestore>;
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
    google: &Google,
    endpoints: &GoogleArgs,
    p: &PlatformArgs,
    store: Firestore,
    clock: &Clock,
) -> anyhow::Result<(Option<AppEngineRouter>, Option<LoadBalancerRouter>)> {
    let app_engine = if p.platforms.contains(&Platform::AppEngine) {
        let shard_by = ShardBy::parse(p.appengine_shard_by.trim())
            .context("CUTOVER_APPENGINE_SHARD_BY: not cookie, ip or random")?;
        let client = AppEngineClient::new(google.clone(), &endpoints.appengine_endpoint);
        let split = AppEngineSplit::new(client).with_default_shard_by(shard_by);
        Some(Recorded::new(split, store.clone(), clock.clone()))
    } else {
        None
    };
    let load_balancer = if p.platforms.contains(&Platform::LoadBalancer) {
        let client = ComputeClient::new(google.clone(), &endpoints.compute_endpoint);
        let mut split = UrlMapSplit::new(client);
        for (map, route) in p.url_map_routes() {
            let route = Route::parse(route)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("CUTOVER_URL_MAP_ROUTES: {map}"))?;
            split = split.with_route(map, route);
        }
        Some(Recorded::new(split, store, clock.clone()))
    } else {
        None
    };
    Ok((app_engine, load_balancer))
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
