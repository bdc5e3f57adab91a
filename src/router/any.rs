//! One [`TrafficRouter`] for every platform: each call goes to the router of its target's
//! platform.
//!
//! The reconciler holds one router; targets of three platforms reach it. [`AnyRouter`] holds a
//! router per platform (generic over them, so the reconciler's table tests and the server use
//! the same dispatch) and refuses, as a permanent error, a target of a platform that is not
//! enabled (`CUTOVER_PLATFORMS`). Listings follow regions: a Cloud Run region lists Cloud Run
//! services, the region [`GLOBAL`] lists the records of every enabled global platform (App
//! Engine, load balancers), each with one read of its split.

use tokio::time::Instant;

use super::{Observation, RouterError, TrafficRouter};
use crate::decision::Write;
use crate::failure::ErrorKind;
use crate::target::{GLOBAL, Platform, ServiceRef};

/// A router for a platform this process does not serve: it cannot be built, so an
/// `Option<Disabled>` is always `None` (the type of an absent platform's router).
#[derive(Debug)]
pub enum Disabled {}

impl TrafficRouter for Disabled {
    type Version = Disabled;

    async fn observe(
        &self,
        _: &ServiceRef,
        _: Instant,
    ) -> Result<Observation<Disabled>, RouterError> {
        match *self {}
    }

    async fn list(
        &self,
        _: &str,
        _: &str,
        _: Instant,
    ) -> Result<Vec<Observation<Disabled>>, RouterError> {
        match *self {}
    }

    async fn apply(
        &self,
        _: &Observation<Disabled>,
        _: &Write,
        _: Instant,
    ) -> Result<Observation<Disabled>, RouterError> {
        match *self {}
    }
}

impl Clone for Disabled {
    fn clone(&self) -> Self {
        match *self {}
    }
}

/// The version of a read, tagged with the platform that made it.
#[derive(Clone, Debug)]
pub enum AnyVersion<C, A, L> {
    CloudRun(C),
    AppEngine(A),
    LoadBalancer(L),
}

/// Cloud Run, App Engine and load-balancer routers behind one [`TrafficRouter`]; a platform
/// whose router is `None` is not enabled.
pub struct AnyRouter<C, A, L> {
    pub cloud_run: Option<C>,
    pub app_engine: Option<A>,
    pub load_balancer: Option<L>,
}

impl<C, A, L> AnyRouter<C, A, L> {
    /// The platforms that have a router, in [`Platform::ALL`]'s order.
    pub fn platforms(&self) -> Vec<Platform> {
        Platform::ALL
            .into_iter()
            .filter(|p| match p {
                Platform::CloudRun => self.cloud_run.is_some(),
                Platform::AppEngine => self.app_engine.is_some(),
                Platform::LoadBalancer => self.load_balancer.is_some(),
            })
            .collect()
    }
}

/// The router of `platform` when it has one, else a permanent refusal naming the setting.
fn enabled<R>(router: &Option<R>, platform: Platform) -> Result<&R, RouterError> {
    router.as_ref().ok_or_else(|| {
        RouterError::new(
            ErrorKind::Permanent,
            format!("platform {platform} is not enabled (CUTOVER_PLATFORMS)"),
        )
    })
}

/// The same observation with its version tagged.
fn tagged<V, W>(o: Observation<V>, tag: impl Fn(V) -> W) -> Observation<W> {
    Observation {
        observed: o.observed,
        version: tag(o.version),
    }
}

/// A read tagged for another platform than its target's: a programming error, never retried.
fn mismatch(target: &ServiceRef) -> RouterError {
    RouterError::new(
        ErrorKind::Permanent,
        format!("{target}: a read of another platform cannot guard this write"),
    )
}

impl<C, A, L> TrafficRouter for AnyRouter<C, A, L>
where
    C: TrafficRouter,
    A: TrafficRouter,
    L: TrafficRouter,
    C::Version: Clone,
    A::Version: Clone,
    L::Version: Clone,
{
    type Version = AnyVersion<C::Version, A::Version, L::Version>;

    async fn observe(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> Result<Observation<Self::Version>, RouterError> {
        Ok(match target.platform {
            Platform::CloudRun => tagged(
                enabled(&self.cloud_run, target.platform)?
                    .observe(target, deadline)
                    .await?,
                AnyVersion::CloudRun,
            ),
            Platform::AppEngine => tagged(
                enabled(&self.app_engine, target.platform)?
                    .observe(target, deadline)
                    .await?,
                AnyVersion::AppEngine,
            ),
            Platform::LoadBalancer => tagged(
                enabled(&self.load_balancer, target.platform)?
                    .observe(target, deadline)
                    .await?,
                AnyVersion::LoadBalancer,
            ),
        })
    }

    async fn list(
        &self,
        project: &str,
        region: &str,
        deadline: Instant,
    ) -> Result<Vec<Observation<Self::Version>>, RouterError> {
        let mut all = Vec::new();
        if region != GLOBAL {
            if let Some(r) = &self.cloud_run {
                let found = r.list(project, region, deadline).await?;
                all.extend(found.into_iter().map(|o| tagged(o, AnyVersion::CloudRun)));
            }
            return Ok(all);
        }
        if let Some(r) = &self.app_engine {
            let found = r.list(project, region, deadline).await?;
            all.extend(found.into_iter().map(|o| tagged(o, AnyVersion::AppEngine)));
        }
        if let Some(r) = &self.load_balancer {
            let found = r.list(project, region, deadline).await?;
            all.extend(
                found
                    .into_iter()
                    .map(|o| tagged(o, AnyVersion::LoadBalancer)),
            );
        }
        Ok(all)
    }

    /// The read carried by the router of its platform, if that router carries reads.
    fn carry(&self, read: &Observation<Self::Version>) -> Option<serde_json::Value> {
        let observed = read.observed.clone();
        match &read.version {
            AnyVersion::CloudRun(v) => self.cloud_run.as_ref()?.carry(&Observation {
                observed,
                version: v.clone(),
            }),
            AnyVersion::AppEngine(v) => self.app_engine.as_ref()?.carry(&Observation {
                observed,
                version: v.clone(),
            }),
            AnyVersion::LoadBalancer(v) => self.load_balancer.as_ref()?.carry(&Observation {
                observed,
                version: v.clone(),
            }),
        }
    }

    /// Resumed by the router of the target's platform (none for a platform not enabled).
    fn resume(
        &self,
        target: &ServiceRef,
        carried: serde_json::Value,
    ) -> Option<Observation<Self::Version>> {
        Some(match target.platform {
            Platform::CloudRun => tagged(
                self.cloud_run.as_ref()?.resume(target, carried)?,
                AnyVersion::CloudRun,
            ),
            Platform::AppEngine => tagged(
                self.app_engine.as_ref()?.resume(target, carried)?,
                AnyVersion::AppEngine,
            ),
            Platform::LoadBalancer => tagged(
                self.load_balancer.as_ref()?.resume(target, carried)?,
                AnyVersion::LoadBalancer,
            ),
        })
    }

    async fn apply(
        &self,
        read: &Observation<Self::Version>,
        write: &Write,
        deadline: Instant,
    ) -> Result<Observation<Self::Version>, RouterError> {
        let target = &read.observed.service;
        let observed = read.observed.clone();
        Ok(match (&read.version, target.platform) {
            (AnyVersion::CloudRun(v), Platform::CloudRun) => {
                let r = enabled(&self.cloud_run, target.platform)?;
                let read = Observation {
                    observed,
                    version: v.clone(),
                };
                tagged(r.apply(&read, write, deadline).await?, AnyVersion::CloudRun)
            }
            (AnyVersion::AppEngine(v), Platform::AppEngine) => {
                let r = enabled(&self.app_engine, target.platform)?;
                let read = Observation {
                    observed,
                    version: v.clone(),
                };
                tagged(
                    r.apply(&read, write, deadline).await?,
                    AnyVersion::AppEngine,
                )
            }
            (AnyVersion::LoadBalancer(v), Platform::LoadBalancer) => {
                let r = enabled(&self.load_balancer, target.platform)?;
                let read = Observation {
                    observed,
                    version: v.clone(),
                };
                tagged(
                    r.apply(&read, write, deadline).await?,
                    AnyVersion::LoadBalancer,
                )
            }
            _ => return Err(mismatch(target)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::decision::Observed;
    use crate::ids::{ProjectId, ServiceName};

    /// A router that answers every read with its own name as the version and logs its calls.
    struct Named {
        name: &'static str,
        calls: Mutex<Vec<String>>,
    }

    impl Named {
        fn new(name: &'static str) -> Self {
            Named {
                name,
                calls: Mutex::new(Vec::new()),
            }
        }

        fn read(&self, target: &ServiceRef) -> Observation<&'static str> {
            Observation {
                observed: Observed {
                    service: target.clone(),
                    latest_ready: None,
                    allocation: BTreeMap::new(),
                    ready: Default::default(),
                    tag_urls: BTreeMap::new(),
                    annotations: BTreeMap::new(),
                },
                version: self.name,
            }
        }
    }

    impl TrafficRouter for Named {
        type Version = &'static str;

        async fn observe(
            &self,
            target: &ServiceRef,
            _: Instant,
        ) -> Result<Observation<&'static str>, RouterError> {
            self.calls.lock().unwrap().push(format!("observe {target}"));
            Ok(self.read(target))
        }

        async fn list(
            &self,
            project: &str,
            region: &str,
            _: Instant,
        ) -> Result<Vec<Observation<&'static str>>, RouterError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("list {project} {region}"));
            let target = match self.name {
                "run" => ServiceRef::checked(project, region, "api").unwrap(),
                "ae" => global(Platform::AppEngine),
                _ => global(Platform::LoadBalancer),
            };
            Ok(vec![self.read(&target)])
        }

        async fn apply(
            &self,
            read: &Observation<&'static str>,
            _: &Write,
            _: Instant,
        ) -> Result<Observation<&'static str>, RouterError> {
            assert_eq!(
                read.version, self.name,
                "a write reaches the router that read"
            );
            self.calls
                .lock()
                .unwrap()
                .push(format!("apply {}", read.observed.service));
            Ok(self.read(&read.observed.service))
        }
    }

    fn global(p: Platform) -> ServiceRef {
        ServiceRef::global(
            p,
            ProjectId::parse("acme").unwrap(),
            ServiceName::parse("web").unwrap(),
        )
    }

    fn deadline() -> Instant {
        Instant::now() + std::time::Duration::from_secs(5)
    }

    fn write() -> Write {
        Write {
            traffic: None,
            record: crate::decision::Record::from_annotations(&BTreeMap::from([
                ("cutover.dev/phase".to_string(), "completed".to_string()),
                ("cutover.dev/candidate".to_string(), "v2".to_string()),
                ("cutover.dev/stable".to_string(), "v1".to_string()),
                ("cutover.dev/percent".to_string(), "100".to_string()),
                (
                    "cutover.dev/started".to_string(),
                    "2026-12-05T03:00:00Z".to_string(),
                ),
                (
                    "cutover.dev/step-started".to_string(),
                    "2026-12-05T03:00:00Z".to_string(),
                ),
            ]))
            .unwrap()
            .unwrap(),
        }
    }

    #[tokio::test]
    async fn each_target_reaches_its_platforms_router_and_a_disabled_one_is_refused() {
        let all = AnyRouter {
            cloud_run: Some(Named::new("run")),
            app_engine: Some(Named::new("ae")),
            load_balancer: Some(Named::new("lb")),
        };
        for (target, name) in [
            (
                ServiceRef::checked("acme", "us-central1", "api").unwrap(),
                "run",
            ),
            (global(Platform::AppEngine), "ae"),
            (global(Platform::LoadBalancer), "lb"),
        ] {
            let read = all.observe(&target, deadline()).await.unwrap();
            let after = all.apply(&read, &write(), deadline()).await.unwrap();
            let version = match after.version {
                AnyVersion::CloudRun(v)
                | AnyVersion::AppEngine(v)
                | AnyVersion::LoadBalancer(v) => v,
            };
            assert_eq!(version, name, "{target}");
        }
        assert_eq!(
            all.app_engine
                .as_ref()
                .unwrap()
                .calls
                .lock()
                .unwrap()
                .as_slice(),
            ["observe app-engine:acme/web", "apply app-engine:acme/web"]
        );

        let run_only: AnyRouter<Named, Disabled, Disabled> = AnyRouter {
            cloud_run: Some(Named::new("run")),
            app_engine: None,
            load_balancer: None,
        };
        let err = run_only
            .observe(&global(Platform::AppEngine), deadline())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(err.to_string().contains("CUTOVER_PLATFORMS"), "{err}");
        assert_eq!(run_only.platforms(), [Platform::CloudRun]);
    }

    #[tokio::test]
    async fn a_region_lists_cloud_run_and_global_lists_the_recorded_platforms() {
        let all = AnyRouter {
            cloud_run: Some(Named::new("run")),
            app_engine: Some(Named::new("ae")),
            load_balancer: Some(Named::new("lb")),
        };
        let regional = all.list("acme", "us-central1", deadline()).await.unwrap();
        assert_eq!(regional.len(), 1);
        assert!(matches!(regional[0].version, AnyVersion::CloudRun("run")));
        let global = all.list("acme", GLOBAL, deadline()).await.unwrap();
        let names: Vec<String> = global
            .iter()
            .map(|o| o.observed.service.to_string())
            .collect();
        assert_eq!(names, ["app-engine:acme/web", "load-balancer:acme/web"]);
        assert!(all.cloud_run.as_ref().unwrap().calls.lock().unwrap().len() == 1);
    }
}
