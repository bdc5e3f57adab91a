//! From an event to the one service it is about, inside what cutover evaluates.
//!
//! Builds and alerts name a service and, perhaps, its project and region; cutover fills in
//! the rest from its settings and then asks one question before touching anything: would a
//! tick ever look at this service again? Ticks list only `CUTOVER_PROJECTS` (by default
//! `GOOGLE_CLOUD_PROJECT`) × `CUTOVER_REGIONS` (`Reconciler::tick` in src/reconcile.rs). A rollout started anywhere else
//! would take its first step and then never be judged: its candidate would keep that share of
//! the traffic for ever. So an event outside that scope is refused: nothing is read or
//! written, the message is acknowledged, and the server records the [`Refusal`] as an
//! error-level decision naming the setting to change. Both push handlers resolve through
//! [`Scope::resolve`], so the defaults, the checks and the refusal are the same for both.
//!
//! Targets of the global platforms (App Engine services, URL maps) have no region: only their
//! project is checked, and their platform must be one of `CUTOVER_PLATFORMS` (otherwise no
//! router would read them and no tick list them).

use crate::ids::{IdError, ProjectId, Region, ServiceName};
use crate::target::{Platform, ServiceRef};

/// The setting naming cutover's own project (the default of events that name none).
pub const PROJECT_SETTING: &str = "GOOGLE_CLOUD_PROJECT";
/// The setting listing the projects cutover evaluates.
pub const PROJECTS_SETTING: &str = "CUTOVER_PROJECTS";
/// The setting listing the regions cutover evaluates.
pub const REGIONS_SETTING: &str = "CUTOVER_REGIONS";
/// The setting giving the region of events that name none.
pub const DEFAULT_REGION_SETTING: &str = "CUTOVER_REGION";
/// The setting listing the platforms cutover rolls out.
pub const PLATFORMS_SETTING: &str = "CUTOVER_PLATFORMS";

/// What cutover evaluates, as configured: the project and regions ticks list, and the region
/// an event that names none is about. Made once, at start-up, from checked settings.
#[derive(Clone, Debug)]
pub struct Scope {
    /// `GOOGLE_CLOUD_PROJECT`.
    pub project: ProjectId,
    /// `CUTOVER_PROJECTS` (by default `GOOGLE_CLOUD_PROJECT` alone).
    pub projects: Vec<ProjectId>,
    /// `CUTOVER_REGION`.
    pub default_region: Region,
    /// `CUTOVER_REGIONS`.
    pub regions: Vec<Region>,
    /// `CUTOVER_PLATFORMS` (Cloud Run alone unless [`Scope::with_platforms`] says otherwise).
    pub platforms: Vec<Platform>,
}

/// The service an event names, and where, as far as the event says.
#[derive(Clone, Copy, Debug)]
pub struct Named<'a> {
    /// The platform the event is about (Cloud Run unless it named an App Engine service or a
    /// URL map); its region is ignored unless the platform is regional.
    pub platform: Platform,
    pub project: Option<&'a ProjectId>,
    pub region: Option<&'a Region>,
    pub service: &'a ServiceName,
}

/// Why cutover will not act on an event: acting would start (or touch) a rollout that no tick
/// ever evaluates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The service as the event named it (`project/region/name`).
    pub service: String,
    /// The setting an operator changes to have cutover evaluate it.
    pub setting: &'static str,
    /// What is out of scope, and what to do, for people.
    pub why: String,
}

impl Scope {
    /// The scope of these settings, each checked against Google's rules; the setting that is not
    /// a valid id, and why, otherwise.
    pub fn new(
        project: &str,
        default_region: &str,
        regions: &[String],
    ) -> Result<Scope, (&'static str, IdError)> {
        let region = |setting, r: &str| Region::parse(r).map_err(|e| (setting, e));
        let project = ProjectId::parse(project).map_err(|e| (PROJECT_SETTING, e))?;
        Ok(Scope {
            projects: vec![project.clone()],
            project,
            default_region: region(DEFAULT_REGION_SETTING, default_region)?,
            regions: regions
                .iter()
                .map(|r| region(REGIONS_SETTING, r))
                .collect::<Result<_, _>>()?,
            platforms: vec![Platform::CloudRun],
        })
    }

    /// The same scope serving `platforms` (`CUTOVER_PLATFORMS`).
    pub fn with_platforms(mut self, platforms: &[Platform]) -> Scope {
        self.platforms = platforms.to_vec();
        self
    }

    /// The same scope over `projects` (`CUTOVER_PROJECTS`; empty keeps `GOOGLE_CLOUD_PROJECT`
    /// alone), each checked.
    pub fn with_projects(mut self, projects: &[String]) -> Result<Scope, (&'static str, IdError)> {
        if !projects.is_empty() {
            let mut checked: Vec<ProjectId> = Vec::new();
            for p in projects {
                let p = ProjectId::parse(p).map_err(|e| (PROJECTS_SETTING, e))?;
                // Named twice, a project would be listed twice per tick.
                if !checked.contains(&p) {
                    checked.push(p);
                }
            }
            self.projects = checked;
        }
        Ok(self)
    }

    /// The service `named` is about (its project, else cutover's; its region, else the default
    /// region), if cutover evaluates it.
    pub fn resolve(&self, named: Named<'_>) -> Result<ServiceRef, Refusal> {
        let project = named.project.unwrap_or(&self.project);
        let region = named.region.unwrap_or(&self.default_region);
        let platform = named.platform;
        let refuse = |setting: &'static str, why: String| Refusal {
            service: match platform {
                Platform::CloudRun => format!("{project}/{region}/{}", named.service),
                p => format!("{p}:{project}/{}", named.service),
            },
            setting,
            why,
        };
        if !self.platforms.contains(&platform) {
            let platforms: Vec<&str> = self.platforms.iter().map(|p| p.as_str()).collect();
            return Err(refuse(
                PLATFORMS_SETTING,
                format!(
                    "platform {platform} is not one cutover rolls out ({PLATFORMS_SETTING}={}); add {platform} to {PLATFORMS_SETTING}",
                    platforms.join(",")
                ),
            ));
        }
        if !self.projects.contains(project) {
            let projects: Vec<&str> = self.projects.iter().map(|p| p.as_str()).collect();
            return Err(refuse(
                PROJECTS_SETTING,
                format!(
                    "project {project} is not one cutover evaluates ({PROJECTS_SETTING}={}; unset, it is {PROJECT_SETTING} alone): no tick would ever judge a rollout there; add {project} to {PROJECTS_SETTING}",
                    projects.join(",")
                ),
            ));
        }
        if !platform.is_regional() {
            return Ok(ServiceRef::global(
                platform,
                project.clone(),
                named.service.clone(),
            ));
        }
        if !self.regions.contains(region) {
            let regions: Vec<&str> = self.regions.iter().map(|r| r.as_str()).collect();
            return Err(refuse(
                REGIONS_SETTING,
                format!(
                    "region {region} is not one cutover evaluates ({REGIONS_SETTING}={}): no tick would ever judge a rollout there; add {region} to {REGIONS_SETTING}",
                    regions.join(",")
                ),
            ));
        }
        Ok(ServiceRef::from_ids(
            project.clone(),
            region.clone(),
            named.service.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<String> {
        vec!["europe-west1".into(), "us-central1".into()]
    }

    fn scope(regions: &[String]) -> Scope {
        Scope::new("acme-prod", "europe-west1", regions).expect("valid settings")
    }

    fn ids(project: &str, region: &str) -> (ProjectId, Region, ServiceName) {
        (
            ProjectId::parse(project).unwrap(),
            Region::parse(region).unwrap(),
            ServiceName::parse("api").unwrap(),
        )
    }

    #[test]
    fn defaults_fill_in_what_the_event_does_not_say() {
        let regions = regions();
        let (_, _, api) = ids("x", "x");
        let named = Named {
            platform: Platform::CloudRun,
            project: None,
            region: None,
            service: &api,
        };
        assert_eq!(
            scope(&regions).resolve(named),
            Ok(ServiceRef::checked("acme-prod", "europe-west1", "api").expect("valid ids"))
        );
        let (p, r, api) = ids("acme-prod", "us-central1");
        let named = Named {
            platform: Platform::CloudRun,
            project: Some(&p),
            region: Some(&r),
            service: &api,
        };
        assert_eq!(
            scope(&regions).resolve(named),
            Ok(ServiceRef::checked("acme-prod", "us-central1", "api").expect("valid ids"))
        );
    }

    #[test]
    fn a_region_or_project_ticks_never_list_is_refused_naming_the_setting() {
        let regions = regions();
        let (p, r, api) = ids("acme-prod", "asia-east1");
        let refusal = scope(&regions)
            .resolve(Named {
                platform: Platform::CloudRun,
                project: Some(&p),
                region: Some(&r),
                service: &api,
            })
            .expect_err("region out of scope");
        assert_eq!(refusal.setting, REGIONS_SETTING);
        assert_eq!(refusal.service, "acme-prod/asia-east1/api");
        assert!(refusal.why.contains("asia-east1"), "{}", refusal.why);

        let (p, _, api) = ids("other-proj", "x");
        let refusal = scope(&regions)
            .resolve(Named {
                platform: Platform::CloudRun,
                project: Some(&p),
                region: None,
                service: &api,
            })
            .expect_err("project out of scope");
        assert_eq!(refusal.setting, PROJECTS_SETTING);
        assert!(refusal.why.contains("other-proj"), "{}", refusal.why);

        // The default region itself may be outside CUTOVER_REGIONS.
        let only_us = vec!["us-central1".to_owned()];
        let refusal = scope(&only_us)
            .resolve(Named {
                platform: Platform::CloudRun,
                project: None,
                region: None,
                service: &api,
            })
            .expect_err("default region not evaluated");
        assert_eq!(refusal.setting, REGIONS_SETTING);
    }

    #[test]
    fn a_global_target_needs_its_platform_enabled_and_no_region() {
        let regions = regions();
        let (p, r, web) = ids("acme-prod", "asia-east1");
        let named = |platform| Named {
            platform,
            project: Some(&p),
            region: Some(&r),
            service: &web,
        };
        let refusal = scope(&regions)
            .resolve(named(Platform::AppEngine))
            .expect_err("app-engine is not enabled");
        assert_eq!(refusal.setting, PLATFORMS_SETTING);
        assert_eq!(refusal.service, "app-engine:acme-prod/api");

        let both = scope(&regions).with_platforms(&[Platform::AppEngine, Platform::LoadBalancer]);
        let ae = both.resolve(named(Platform::AppEngine)).expect("in scope");
        assert_eq!(ae.to_string(), "app-engine:acme-prod/api");
        assert_eq!(
            ae.region.as_str(),
            crate::target::GLOBAL,
            "its region is not the event's"
        );
        let refusal = both
            .resolve(named(Platform::CloudRun))
            .expect_err("cloud-run is not enabled");
        assert_eq!(refusal.setting, PLATFORMS_SETTING);

        let (other, _, _) = ids("other-proj", "x");
        let refusal = both
            .resolve(Named {
                platform: Platform::LoadBalancer,
                project: Some(&other),
                region: None,
                service: &web,
            })
            .expect_err("project out of scope");
        assert_eq!(refusal.setting, PROJECTS_SETTING);
    }

    #[test]
    fn every_project_of_cutover_projects_is_evaluated_and_no_other() {
        let regions = regions();
        let many = scope(&regions)
            .with_projects(&["acme-prod".into(), "acme-data".into()])
            .expect("valid projects");
        let (data, _, api) = ids("acme-data", "x");
        let named = |p| Named {
            platform: Platform::CloudRun,
            project: Some(p),
            region: None,
            service: &api,
        };
        assert_eq!(
            many.resolve(named(&data)),
            Ok(ServiceRef::checked("acme-data", "europe-west1", "api").expect("valid ids"))
        );
        let (other, _, _) = ids("acme-web", "x");
        let refusal = many.resolve(named(&other)).expect_err("not listed");
        assert_eq!(refusal.setting, PROJECTS_SETTING);
        assert!(
            refusal.why.contains("acme-prod,acme-data"),
            "{}",
            refusal.why
        );
        assert!(
            scope(&regions)
                .with_projects(&["Bad_Project".into()])
                .is_err()
        );
    }
}
