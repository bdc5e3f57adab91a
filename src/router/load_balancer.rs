//! A global external Application Load Balancer's URL map as a [`SplitPlatform`]: the
//! `weightedBackendServices` of one route ↔ cutover's percents by backend service.
//!
//! Decisions made here, and why:
//!
//! - **Which route.** A target names a URL map, and a map may hold weighted backends in its
//!   `defaultRouteAction`, in each path matcher's `defaultRouteAction` and in each route rule's
//!   `routeAction`. A target name cannot also carry a path (map names are RFC 1035 names, the
//!   same alphabet as the separator would be), so the route is either configured per map
//!   ([`UrlMapSplit::with_route`], [`Route::parse`]: `default`, `MATCHER` or
//!   `MATCHER/PRIORITY`) or found: the one route of the map that has weighted backends. A
//!   map with none or several, and no configured route, is refused with a message naming
//!   them, never guessed at.
//! - **Weights ↔ percents.** Cutover writes `weight = percent × 10` (0..=1000, summing to
//!   1000). A backend's share is weight / sum of the route's weights, so weights someone else
//!   set read as whole percents by largest remainder ([`super::shares`]).
//! - **Ready.** A backend service is ready when it has backends and every instance or
//!   endpoint of every one of them is `HEALTHY` in `backendServices.getHealth` (one call per
//!   group, in the project the backend's URL names); a write giving weight to a backend that was not ready at the read is refused
//!   before any call. This covers instance groups (MIGs) and network endpoint groups (GKE)
//!   alike; what differs is outside the split: connection draining applies to instances
//!   leaving a MIG (a weight change drains nothing: in-flight requests finish where they
//!   are), and session affinity on the backend services keeps a client on its instance only
//!   within the backend service the weighted split chose for it: the split itself is decided
//!   per new request (Google's documentation of `weight`).
//! - **The candidate** (`latest_ready`) is the one ready backend of the route at weight 0: the
//!   backend a deploy brought up beside the one serving. With none or several at weight 0,
//!   there is none (a build then has nothing to roll out on its own; an operator names one).
//! - **Revision names** are the backend services' names, which is also how Monitoring
//!   (`backend_target_name`) and alerts name them. Blue/green backends recur, and nothing on
//!   the Compute side changes when a MIG or a GKE deployment behind a backend moves to new
//!   code, so a name cannot be unique per deploy; the consequences are in the crate's report
//!   of this platform: a backend that was rolled back is rolled out again only when a person
//!   names it, and a backend at weight 0 that is healthy is a candidate whether or not it was
//!   redeployed.
//! - **No smoke URL.** A backend service has no address of its own: `urls` is empty. The
//!   backend's health check, which must pass on every instance before any weight moves, is
//!   this platform's smoke check: `Platform::has_revision_urls` is false, and the reconciler
//!   judges these targets with no smoke path whatever `CUTOVER_SMOKE_PATH` says.
//! - **Concurrency.** The write is the map as read with only the route's weights changed,
//!   carrying the read's `fingerprint`; a stale one is a 412, a [`RouterError::Conflict`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;

use super::RouterError;
use super::shares::percents;
use super::split::{SplitPlatform, SplitRead};
use crate::decision::{STABLE_TAG, Target};
use crate::failure::ErrorKind;
use crate::gcp::ApiError;
use crate::gcp::compute::{ComputeClient, FetchedUrlMap, RouteAction, UrlMap, last_segment};
use crate::target::{Platform, ServiceRef};

/// The route of a URL map whose weighted backends cutover moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The map's `defaultRouteAction`.
    Default,
    /// The `defaultRouteAction` of the path matcher with this name.
    PathMatcher(String),
    /// The `routeAction` of the route rule with this priority in this path matcher.
    RouteRule { matcher: String, priority: i64 },
}

impl Route {
    /// `default`, `MATCHER` or `MATCHER/PRIORITY`.
    pub fn parse(s: &str) -> Result<Route, String> {
        let s = s.trim();
        if s == "default" {
            return Ok(Route::Default);
        }
        let (matcher, priority) = match s.split_once('/') {
            Some((m, p)) => {
                let p = p
                    .parse::<i64>()
                    .map_err(|_| format!("{s:?}: a route rule is MATCHER/PRIORITY (a number)"))?;
                (m, Some(p))
            }
            None => (s, None),
        };
        if matcher.is_empty() || matcher.contains(char::is_whitespace) {
            return Err(format!(
                "{s:?} is not a route: default, MATCHER or MATCHER/PRIORITY"
            ));
        }
        Ok(match priority {
            Some(priority) => Route::RouteRule {
                matcher: matcher.to_string(),
                priority,
            },
            None => Route::PathMatcher(matcher.to_string()),
        })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Default => f.write_str("default"),
            Route::PathMatcher(m) => f.write_str(m),
            Route::RouteRule { matcher, priority } => write!(f, "{matcher}/{priority}"),
        }
    }
}

/// What a write needs of the read it follows.
#[derive(Clone, Debug)]
pub struct MapAsRead {
    /// The map's concurrency token.
    pub fingerprint: String,
    /// The map exactly as read, sent back with only the route's weights changed.
    pub body: Arc<Value>,
    /// The route read, as a JSON pointer to its `weightedBackendServices`.
    pub pointer: String,
    /// The route read.
    pub route: Route,
}

/// Why a map or a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefusedRoute {
    #[error("URL map has no route with weighted backend services")]
    NoWeightedRoute,
    #[error(
        "URL map has {0} routes with weighted backend services ({1}); configure which one cutover moves"
    )]
    Ambiguous(usize, String),
    #[error("URL map has no route {0} with weighted backend services")]
    Missing(Route),
    #[error("the shares sum to {0}%, not 100%")]
    NotWhole(u32),
    #[error("backend service {0} is not in the route")]
    NotInRoute(String),
    #[error("backend service {0} is not healthy and cannot receive traffic")]
    NotHealthy(String),
}

/// Moves weight between the backend services of one route of global URL maps.
#[derive(Clone)]
pub struct UrlMapSplit {
    client: ComputeClient,
    routes: BTreeMap<String, Route>,
}

impl UrlMapSplit {
    /// A router that finds each map's one weighted route.
    pub fn new(client: ComputeClient) -> Self {
        UrlMapSplit {
            client,
            routes: BTreeMap::new(),
        }
    }

    /// Moves `route` of the map named `map` (in any project).
    pub fn with_route(mut self, map: &str, route: Route) -> Self {
        self.routes.insert(map.to_string(), route);
        self
    }

    /// The route of `map` cutover moves, with the JSON pointer to its weighted backends.
    pub fn locate(&self, map: &UrlMap) -> Result<(Route, String), RefusedRoute> {
        let weighted = |a: &Option<RouteAction>| {
            a.as_ref()
                .is_some_and(|a| !a.weighted_backend_services.is_empty())
        };
        let mut all: Vec<(Route, String)> = Vec::new();
        if weighted(&map.default_route_action) {
            all.push((
                Route::Default,
                "/defaultRouteAction/weightedBackendServices".into(),
            ));
        }
        for (i, m) in map.path_matchers.iter().enumerate() {
            if weighted(&m.default_route_action) {
                all.push((
                    Route::PathMatcher(m.name.clone()),
                    format!("/pathMatchers/{i}/defaultRouteAction/weightedBackendServices"),
                ));
            }
            for (j, r) in m.route_rules.iter().enumerate() {
                if weighted(&r.route_action) {
                    all.push((
                        Route::RouteRule {
                            matcher: m.name.clone(),
                            priority: r.priority,
                        },
                        format!(
                            "/pathMatchers/{i}/routeRules/{j}/routeAction/weightedBackendServices"
                        ),
                    ));
                }
            }
        }
        if let Some(want) = self.routes.get(&map.name) {
            return all
                .into_iter()
                .find(|(r, _)| r == want)
                .ok_or_else(|| RefusedRoute::Missing(want.clone()));
        }
        match all.len() {
            0 => Err(RefusedRoute::NoWeightedRoute),
            1 => Ok(all.remove(0)),
            n => Err(RefusedRoute::Ambiguous(
                n,
                all.iter()
                    .map(|(r, _)| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// Which backend services are ready: they have backends, each with members, all healthy.
    /// `backends` maps each name to the project it lives in.
    async fn health(
        &self,
        backends: &BTreeMap<String, String>,
        deadline: Instant,
    ) -> Result<BTreeSet<String>, ApiError> {
        let mut ready = BTreeSet::new();
        for (name, project) in backends {
            let service = self
                .client
                .get_backend_service(project, name, deadline)
                .await?;
            let mut healthy = !service.backends.is_empty();
            for b in &service.backends {
                if !healthy {
                    break;
                }
                healthy = self
                    .client
                    .get_health(project, name, &b.group, deadline)
                    .await?
                    .all_healthy();
            }
            if healthy {
                ready.insert(name.clone());
            }
        }
        Ok(ready)
    }
}

fn api(e: ApiError) -> RouterError {
    RouterError::new(e.kind(), e)
}

fn refused(kind: ErrorKind, e: RefusedRoute) -> RouterError {
    RouterError::new(kind, e)
}

/// The project a resource URL names (`…/projects/{p}/global/…`), if it names one: a URL map
/// may route to a backend service of another project (cross-project service referencing).
fn project_in(url: &str) -> Option<&str> {
    let mut parts = url.split('/');
    parts.find(|p| *p == "projects")?;
    parts.next().filter(|p| !p.is_empty())
}

/// The route's backend services: name → the project it lives in (`project` unless its URL
/// names another).
fn backend_projects(raw: &Value, pointer: &str, project: &str) -> BTreeMap<String, String> {
    raw.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|w| w.get("backendService").and_then(Value::as_str))
        .filter(|url| !last_segment(url).is_empty())
        .map(|url| {
            let p = project_in(url).unwrap_or(project);
            (last_segment(url).to_string(), p.to_string())
        })
        .collect()
}

/// The route's entries as read: backend service name → weight, in the route's order.
fn entries(raw: &Value, pointer: &str) -> Vec<(String, u32)> {
    raw.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|w| {
                    let url = w
                        .get("backendService")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let weight = w.get("weight").and_then(Value::as_u64).unwrap_or(0);
                    (last_segment(url).to_string(), weight.min(1000) as u32)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A map, its located route and its backends' readiness as a [`SplitRead`].
pub fn split_read(
    fetched: FetchedUrlMap,
    route: Route,
    pointer: String,
    ready: BTreeSet<String>,
) -> SplitRead<MapAsRead> {
    let route_entries = entries(&fetched.raw, &pointer);
    let allocation = percents(
        route_entries
            .iter()
            .map(|(n, w)| (n.as_str(), f64::from(*w))),
    );
    let idle: BTreeSet<&String> = route_entries
        .iter()
        .filter(|(n, _)| ready.contains(n) && !allocation.contains_key(n))
        .map(|(n, _)| n)
        .collect();
    let latest_ready = match idle.len() {
        1 => idle.into_iter().next().cloned(),
        _ => None,
    };
    SplitRead {
        latest_ready,
        allocation,
        ready,
        urls: BTreeMap::new(),
        version: MapAsRead {
            fingerprint: fetched.map.fingerprint,
            body: Arc::new(fetched.raw),
            pointer,
            route,
        },
    }
}

/// The body of the guarded write: the map as read, the route's weights set to
/// `percent × 10` (0 for backends `traffic` leaves out), the read's fingerprint.
///
/// A backend that was not ready at the read may not gain weight, except the stable one
/// (tagged [`STABLE_TAG`]): giving traffic back to the backend that served it all is a
/// rollback, and a health-check blip on it must not keep traffic on a failing candidate.
pub fn patch_body(read: &SplitRead<MapAsRead>, traffic: &[Target]) -> Result<Value, RefusedRoute> {
    let sum: u32 = traffic.iter().map(|t| u32::from(t.percent)).sum();
    if sum != 100 {
        return Err(RefusedRoute::NotWhole(sum));
    }
    let v = &read.version;
    let in_route: BTreeSet<String> = entries(&v.body, &v.pointer)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut want: BTreeMap<&str, u32> = BTreeMap::new();
    for t in traffic {
        if !in_route.contains(&t.revision) {
            return Err(RefusedRoute::NotInRoute(t.revision.clone()));
        }
        let gains = t.percent > read.allocation.get(&t.revision).copied().unwrap_or(0);
        let stable = t.tag.as_deref() == Some(STABLE_TAG);
        if gains && !stable && !read.ready.contains(&t.revision) {
            return Err(RefusedRoute::NotHealthy(t.revision.clone()));
        }
        *want.entry(t.revision.as_str()).or_default() += u32::from(t.percent) * 10;
    }
    let mut body = (*v.body).clone();
    if let Some(list) = body.pointer_mut(&v.pointer).and_then(Value::as_array_mut) {
        for w in list {
            let name = w
                .get("backendService")
                .and_then(Value::as_str)
                .map(|u| last_segment(u).to_string())
                .unwrap_or_default();
            // A backend listed twice gets its weight once, at its first entry.
            let weight = want.remove(name.as_str()).unwrap_or(0);
            if let Some(obj) = w.as_object_mut() {
                obj.insert("weight".into(), Value::from(weight));
            }
        }
    }
    if let Some(obj) = body.as_object_mut() {
        obj.insert("fingerprint".into(), Value::String(v.fingerprint.clone()));
    }
    Ok(body)
}

impl SplitPlatform for UrlMapSplit {
    type Version = MapAsRead;

    const PLATFORM: Platform = Platform::LoadBalancer;

    async fn read(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> Result<SplitRead<MapAsRead>, RouterError> {
        let fetched = self
            .client
            .get_url_map(target, deadline)
            .await
            .map_err(api)?;
        let (route, pointer) = self
            .locate(&fetched.map)
            .map_err(|e| refused(ErrorKind::Permanent, e))?;
        let backends = backend_projects(&fetched.raw, &pointer, &target.project);
        let ready = self.health(&backends, deadline).await.map_err(api)?;
        Ok(split_read(fetched, route, pointer, ready))
    }

    async fn write(
        &self,
        target: &ServiceRef,
        read: &SplitRead<MapAsRead>,
        traffic: &[Target],
        deadline: Instant,
    ) -> Result<SplitRead<MapAsRead>, RouterError> {
        let body = patch_body(read, traffic).map_err(|e| refused(ErrorKind::Permanent, e))?;
        let op = self
            .client
            .patch_url_map(target, &body, deadline)
            .await
            .map_err(api)?;
        self.client
            .wait(&target.project, op, deadline)
            .await
            .map_err(api)?;
        let fetched = self
            .client
            .get_url_map(target, deadline)
            .await
            .map_err(api)?;
        // The route is found again: someone may have edited the map since the operation ended.
        let (route, pointer) = self
            .locate(&fetched.map)
            .map_err(|e| refused(ErrorKind::Permanent, e))?;
        // A weight change moves no instance: the health as read still holds.
        Ok(split_read(fetched, route, pointer, read.ready.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const BS: &str = "https://www.googleapis.com/compute/v1/projects/p/global/backendServices";

    fn map(route_in_matcher: bool, weights: &[(&str, u32)]) -> FetchedUrlMap {
        let wbs: Vec<Value> = weights
            .iter()
            .map(|(b, w)| serde_json::json!({"backendService": format!("{BS}/{b}"), "weight": w,
                "headerAction": {"requestHeadersToAdd": [{"headerName": "x-backend", "headerValue": b}]}}))
            .collect();
        let raw = if route_in_matcher {
            serde_json::json!({
                "name": "web", "fingerprint": "fp1=",
                "defaultService": format!("{BS}/blue"),
                "hostRules": [{"hosts": ["api.example.com"], "pathMatcher": "api"}],
                "pathMatchers": [
                    {"name": "static", "defaultService": format!("{BS}/assets")},
                    {"name": "api", "defaultService": format!("{BS}/blue"),
                     "routeRules": [{"priority": 5, "matchRules": [{"prefixMatch": "/v2"}],
                                     "routeAction": {"weightedBackendServices": wbs}}]}
                ]
            })
        } else {
            serde_json::json!({
                "name": "web", "fingerprint": "fp1=",
                "defaultRouteAction": {"weightedBackendServices": wbs, "timeout": {"seconds": "30"}},
                "pathMatchers": []
            })
        };
        FetchedUrlMap {
            map: UrlMap::deserialize(&raw).unwrap(),
            raw,
        }
    }

    fn router() -> UrlMapSplit {
        UrlMapSplit::new(ComputeClient::new(
            crate::gcp::Google::new(reqwest::Client::new(), crate::gcp::TokenSource::None),
            "http://127.0.0.1:1",
        ))
    }

    fn read_of(r: &UrlMapSplit, f: FetchedUrlMap, ready: &[&str]) -> SplitRead<MapAsRead> {
        let (route, pointer) = r.locate(&f.map).unwrap();
        split_read(
            f,
            route,
            pointer,
            ready.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn t(revision: &str, percent: u8) -> Target {
        Target {
            revision: revision.into(),
            percent,
            tag: None,
        }
    }

    #[test]
    fn the_one_weighted_route_is_found_wherever_it_is() {
        let r = router();
        assert_eq!(
            r.locate(&map(false, &[("blue", 1000)]).map).unwrap().0,
            Route::Default
        );
        let (route, pointer) = r.locate(&map(true, &[("blue", 1000)]).map).unwrap();
        assert_eq!(
            route,
            Route::RouteRule {
                matcher: "api".into(),
                priority: 5
            }
        );
        assert_eq!(
            pointer,
            "/pathMatchers/1/routeRules/0/routeAction/weightedBackendServices"
        );
        // Both a default route and a rule carry weights: ambiguous unless configured.
        let mut both = map(true, &[("blue", 1000)]);
        both.map.default_route_action = both.map.path_matchers[1].route_rules[0]
            .route_action
            .clone();
        assert!(matches!(
            r.locate(&both.map),
            Err(RefusedRoute::Ambiguous(2, _))
        ));
        let chosen = router().with_route("web", Route::parse("default").unwrap());
        assert_eq!(chosen.locate(&both.map).unwrap().0, Route::Default);
        let missing = router().with_route("web", Route::parse("api/7").unwrap());
        assert!(matches!(
            missing.locate(&both.map),
            Err(RefusedRoute::Missing(_))
        ));
        let plain = map(false, &[]);
        assert!(matches!(
            r.locate(&plain.map),
            Err(RefusedRoute::NoWeightedRoute)
        ));
    }

    #[test]
    fn a_backend_of_another_project_is_asked_about_in_its_own() {
        let raw = serde_json::json!({"defaultRouteAction": {"weightedBackendServices": [
            {"backendService": format!("{BS}/blue"), "weight": 1000},
            {"backendService": "https://www.googleapis.com/compute/v1/projects/shared-svc/global/backendServices/green"},
            {"backendService": "global/backendServices/red"}]}});
        let got = backend_projects(
            &raw,
            "/defaultRouteAction/weightedBackendServices",
            "acme-prod",
        );
        assert_eq!(
            got,
            BTreeMap::from([
                ("blue".to_string(), "p".to_string()),
                ("green".to_string(), "shared-svc".to_string()),
                ("red".to_string(), "acme-prod".to_string()),
            ])
        );
    }

    #[test]
    fn routes_parse_and_print_alike() {
        for s in ["default", "api", "api/5"] {
            assert_eq!(Route::parse(s).unwrap().to_string(), s);
        }
        assert!(Route::parse("api/x").is_err());
        assert!(Route::parse("").is_err());
    }

    #[test]
    fn weights_read_as_percents_and_the_idle_healthy_backend_is_the_candidate() {
        let r = router();
        let read = read_of(
            &r,
            map(false, &[("blue", 1000), ("green", 0)]),
            &["blue", "green"],
        );
        assert_eq!(read.allocation, BTreeMap::from([("blue".into(), 100)]));
        assert_eq!(read.latest_ready.as_deref(), Some("green"));
        assert!(
            read.urls.is_empty(),
            "a backend service has no address of its own"
        );
        // Not healthy: not a candidate.
        let read = read_of(&r, map(false, &[("blue", 1000), ("green", 0)]), &["blue"]);
        assert_eq!(read.latest_ready, None);
        // Two idle healthy backends: no guess.
        let read = read_of(
            &r,
            map(false, &[("blue", 1000), ("green", 0), ("red", 0)]),
            &["blue", "green", "red"],
        );
        assert_eq!(read.latest_ready, None);
        // Relative weights someone else set.
        let read = read_of(
            &r,
            map(false, &[("blue", 3), ("green", 1)]),
            &["blue", "green"],
        );
        assert_eq!(
            read.allocation,
            BTreeMap::from([("blue".into(), 75), ("green".into(), 25)])
        );
    }

    #[test]
    fn a_write_changes_only_the_routes_weights_and_carries_the_fingerprint() {
        let r = router();
        let read = read_of(
            &r,
            map(true, &[("blue", 1000), ("green", 0)]),
            &["blue", "green"],
        );
        let body = patch_body(&read, &[t("blue", 90), t("green", 10)]).unwrap();
        let mut expected = (*read.version.body).clone();
        let list = expected
            .pointer_mut("/pathMatchers/1/routeRules/0/routeAction/weightedBackendServices")
            .unwrap();
        list[0]["weight"] = 900.into();
        list[1]["weight"] = 100.into();
        assert_eq!(
            body, expected,
            "everything else as read, header actions included"
        );
        assert_eq!(body["fingerprint"], "fp1=");
        // What was written reads back as the same percents.
        let again = FetchedUrlMap {
            map: UrlMap::deserialize(&body).unwrap(),
            raw: body,
        };
        let back = read_of(&r, again, &["blue", "green"]);
        assert_eq!(
            back.allocation,
            BTreeMap::from([("blue".into(), 90), ("green".into(), 10)])
        );
    }

    #[test]
    fn weight_on_an_unhealthy_or_unknown_backend_is_refused() {
        let r = router();
        let read = read_of(&r, map(false, &[("blue", 1000), ("green", 0)]), &["blue"]);
        assert!(matches!(
            patch_body(&read, &[t("blue", 90), t("green", 10)]),
            Err(RefusedRoute::NotHealthy(b)) if b == "green"
        ));
        // Taking weight away from an unhealthy backend is always allowed.
        assert!(patch_body(&read, &[t("blue", 100), t("green", 0)]).is_ok());
        // Giving it back to an unhealthy stable is a rollback, and allowed; to anyone else not.
        let sick_stable = read_of(&r, map(false, &[("blue", 900), ("green", 100)]), &["green"]);
        let back = |tag: &str| Target {
            tag: Some(tag.into()),
            ..t("blue", 100)
        };
        assert!(patch_body(&sick_stable, &[back(STABLE_TAG), t("green", 0)]).is_ok());
        assert!(matches!(
            patch_body(&sick_stable, &[back("candidate"), t("green", 0)]),
            Err(RefusedRoute::NotHealthy(b)) if b == "blue"
        ));
        assert!(matches!(
            patch_body(&read, &[t("blue", 90), t("red", 10)]),
            Err(RefusedRoute::NotInRoute(b)) if b == "red"
        ));
        assert!(matches!(
            patch_body(&read, &[t("blue", 90)]),
            Err(RefusedRoute::NotWhole(90))
        ));
    }

    mod wire {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};

        use serde_json::{Value, json};

        use super::*;
        use crate::router::stub::{Seen, Stub};

        const G: &str = "/compute/v1/projects/acme-prod/global";

        fn web() -> ServiceRef {
            ServiceRef::global(
                Platform::LoadBalancer,
                crate::ids::ProjectId::parse("acme-prod").unwrap(),
                crate::ids::ServiceName::parse("web").unwrap(),
            )
        }

        fn far() -> Instant {
            Instant::now() + std::time::Duration::from_secs(10)
        }

        fn url_map(fingerprint: &str, blue: u32, green: u32) -> Value {
            json!({"kind": "compute#urlMap", "name": "web", "fingerprint": fingerprint,
                "defaultRouteAction": {"weightedBackendServices": [
                    {"backendService": format!("https://www.googleapis.com/compute/v1/projects/acme-prod/global/backendServices/blue"), "weight": blue},
                    {"backendService": format!("https://www.googleapis.com/compute/v1/projects/acme-prod/global/backendServices/green"), "weight": green}]}})
        }

        /// Blue has one group, green two (a MIG in each of two zones); `sick` is a group whose
        /// second member fails its health check.
        fn answer(r: &Seen, patched: &AtomicBool, sick: Option<&str>) -> (u16, Value) {
            let group = |b: &str, z: &str| {
                format!(
                    "https://www.googleapis.com/compute/v1/projects/acme-prod/zones/{z}/instanceGroups/{b}-mig"
                )
            };
            match (r.method.as_str(), r.uri.as_str()) {
                ("GET", u) if u == format!("{G}/urlMaps/web") => {
                    if patched.load(Ordering::SeqCst) {
                        (200, url_map("f2", 900, 100))
                    } else {
                        (200, url_map("f1", 1000, 0))
                    }
                }
                ("GET", u) if u == format!("{G}/backendServices/blue") => (
                    200,
                    json!({"name": "blue", "backends": [{"group": group("blue", "us-central1-a")}]}),
                ),
                ("GET", u) if u == format!("{G}/backendServices/green") => (
                    200,
                    json!({"name": "green", "backends": [
                        {"group": group("green", "us-central1-a")}, {"group": group("green", "us-central1-b")}]}),
                ),
                ("POST", u) if u.ends_with("/getHealth") => {
                    let g = r.body["group"].as_str().unwrap_or_default();
                    let second = if sick == Some(g) {
                        "UNHEALTHY"
                    } else {
                        "HEALTHY"
                    };
                    (
                        200,
                        json!({"kind": "compute#backendServiceGroupHealth", "healthStatus": [
                        {"instance": format!("{g}/i-1"), "ipAddress": "10.0.0.2", "port": 80, "healthState": "HEALTHY"},
                        {"instance": format!("{g}/i-2"), "ipAddress": "10.0.0.3", "port": 80, "healthState": second}]}),
                    )
                }
                ("PATCH", _) if r.body["fingerprint"] == "f1" => {
                    patched.store(true, Ordering::SeqCst);
                    (
                        200,
                        json!({"kind": "compute#operation", "name": "operation-1", "status": "RUNNING"}),
                    )
                }
                ("PATCH", _) => (
                    412,
                    json!({"error": {"code": 412, "message": "Invalid fingerprint.",
                    "errors": [{"domain": "global", "reason": "conditionNotMet", "message": "Invalid fingerprint."}]}}),
                ),
                ("GET", u) if u == format!("{G}/operations/operation-1") => (
                    200,
                    json!({"kind": "compute#operation", "name": "operation-1", "status": "DONE"}),
                ),
                _ => (
                    404,
                    json!({"error": {"code": 404, "message": "not found", "errors": [{"reason": "notFound"}]}}),
                ),
            }
        }

        #[tokio::test]
        async fn a_read_checks_every_group_and_a_write_waits_for_the_global_operation() {
            let patched = Arc::new(AtomicBool::new(false));
            let p = patched.clone();
            let stub = Stub::serve(move |r, _| answer(r, &p, None)).await;
            let router = UrlMapSplit::new(ComputeClient::new(Stub::google(), &stub.base));
            let read = router.read(&web(), far()).await.unwrap();
            assert_eq!(read.latest_ready.as_deref(), Some("green"));
            let health: Vec<Value> = stub
                .seen()
                .into_iter()
                .filter(|s| s.uri.ends_with("/getHealth"))
                .map(|s| s.body)
                .collect();
            assert_eq!(health.len(), 3, "one getHealth per group: {health:?}");
            let after = router
                .write(&web(), &read, &[t("blue", 90), t("green", 10)], far())
                .await
                .unwrap();
            assert_eq!(
                after.allocation,
                BTreeMap::from([("blue".into(), 90), ("green".into(), 10)])
            );
            assert_eq!(
                after.version.fingerprint, "f2",
                "the map as it is after the write"
            );
            let seen = stub.seen();
            let patch = seen.iter().find(|s| s.method == "PATCH").unwrap();
            assert_eq!(patch.uri, format!("{G}/urlMaps/web"));
            let weights: Vec<&Value> = patch.body["defaultRouteAction"]["weightedBackendServices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| &w["weight"])
                .collect();
            assert_eq!(weights, [&json!(900), &json!(100)]);
            assert!(
                seen.iter()
                    .any(|s| s.uri.ends_with("/operations/operation-1"))
            );
        }

        #[tokio::test]
        async fn one_unhealthy_member_of_any_group_keeps_a_backend_from_being_ready() {
            let sick = "https://www.googleapis.com/compute/v1/projects/acme-prod/zones/us-central1-b/instanceGroups/green-mig";
            let stub =
                Stub::serve(move |r, _| answer(r, &AtomicBool::new(false), Some(sick))).await;
            let router = UrlMapSplit::new(ComputeClient::new(Stub::google(), &stub.base));
            let read = router.read(&web(), far()).await.unwrap();
            assert_eq!(read.ready, BTreeSet::from(["blue".to_string()]));
            assert_eq!(
                read.latest_ready, None,
                "no healthy idle backend, no candidate"
            );
            let e = router
                .write(&web(), &read, &[t("blue", 90), t("green", 10)], far())
                .await
                .expect_err("green is not healthy");
            assert_eq!(e.kind(), ErrorKind::Permanent, "{e}");
            assert!(stub.seen().iter().all(|s| s.method != "PATCH"));
        }

        #[tokio::test]
        async fn a_stale_fingerprint_is_a_conflict() {
            let patched = Arc::new(AtomicBool::new(false));
            let p = patched.clone();
            let stub = Stub::serve(move |r, _| answer(r, &p, None)).await;
            let router = UrlMapSplit::new(ComputeClient::new(Stub::google(), &stub.base));
            let mut read = router.read(&web(), far()).await.unwrap();
            read.version.fingerprint = "f0".into();
            let e = router
                .write(&web(), &read, &[t("blue", 90), t("green", 10)], far())
                .await
                .expect_err("stale");
            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            assert!(!stub.seen().iter().any(|s| s.uri.contains("/operations/")));
        }
    }
}
