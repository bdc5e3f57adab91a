//! Which service a rollout is about.
//!
//! A rollout target is named by its platform, project, region and name; everything that names a
//! target (events, the decision record, the API clients) uses this one type so that the parts
//! never travel separately. On Cloud Run the name is the service; on App Engine it is the
//! service of the project's one app; behind a load balancer it is the URL map whose weighted
//! backend services are moved. The last two are not regional: their region is [`GLOBAL`].

use std::fmt;

use crate::ids::{IdError, ProjectId, Region, ServiceName};

/// The region of targets that have none (App Engine services, global URL maps).
pub const GLOBAL: &str = "global";

/// Where a target's traffic is split. The decision core never looks at it: only routers,
/// metrics sources and the edges that name targets do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// Cloud Run revisions of a service (`projects/P/locations/R/services/S`).
    #[default]
    CloudRun,
    /// App Engine versions of a service (`apps/P/services/S`).
    AppEngine,
    /// Weighted backend services of a global URL map (`projects/P/global/urlMaps/M`).
    LoadBalancer,
}

impl Platform {
    /// Every platform, in the order tables list them.
    pub const ALL: [Platform; 3] = [
        Platform::CloudRun,
        Platform::AppEngine,
        Platform::LoadBalancer,
    ];

    /// How settings, flags and records spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::CloudRun => "cloud-run",
            Platform::AppEngine => "app-engine",
            Platform::LoadBalancer => "load-balancer",
        }
    }

    /// The platform spelled `s` (see [`Platform::as_str`]).
    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether each revision has an address of its own that a smoke check can call (Cloud
    /// Run's tag URLs, App Engine's version URLs). A URL map's backend services have none:
    /// their health check, which every instance must pass before any weight moves, is the
    /// only check, and `CUTOVER_SMOKE_PATH` does not apply to them.
    pub fn has_revision_urls(self) -> bool {
        self != Platform::LoadBalancer
    }

    /// Whether its targets live in a region (else their region is [`GLOBAL`]).
    pub fn is_regional(self) -> bool {
        self == Platform::CloudRun
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rollout target, e.g. the Cloud Run service
/// `projects/{project}/locations/{region}/services/{name}`. Made only from checked ids, so none
/// of its parts can point cutover at another resource than the one it names
/// (`p/locations/x/services/y#`) nor carry a control character.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    pub project: ProjectId,
    pub region: Region,
    pub name: ServiceName,
    pub platform: Platform,
}

impl ServiceRef {
    /// A Cloud Run service from ids checked where they entered (see [`crate::ids`]).
    pub fn from_ids(project: ProjectId, region: Region, name: ServiceName) -> ServiceRef {
        ServiceRef {
            project,
            region,
            name,
            platform: Platform::CloudRun,
        }
    }

    /// A target of a platform without regions (App Engine, a global URL map): its region is
    /// [`GLOBAL`].
    pub fn global(platform: Platform, project: ProjectId, name: ServiceName) -> ServiceRef {
        ServiceRef {
            project,
            region: Region::parse(GLOBAL).expect("\"global\" is a valid region id"),
            name,
            platform,
        }
    }

    /// A service named by text: each part must be a valid id of its kind (the rules the event
    /// decoders apply).
    pub fn checked(project: &str, region: &str, name: &str) -> Result<ServiceRef, IdError> {
        Ok(ServiceRef::from_ids(
            ProjectId::parse(project)?,
            Region::parse(region)?,
            ServiceName::parse(name)?,
        ))
    }

    /// The full resource name of the target in its platform's API: Run Admin API v2
    /// `projects/P/locations/R/services/S`, App Engine Admin API v1 `apps/P/services/S`,
    /// Compute Engine `projects/P/global/urlMaps/M`.
    pub fn resource_name(&self) -> String {
        match self.platform {
            Platform::CloudRun => format!(
                "projects/{}/locations/{}/services/{}",
                self.project, self.region, self.name
            ),
            Platform::AppEngine => format!("apps/{}/services/{}", self.project, self.name),
            Platform::LoadBalancer => {
                format!("projects/{}/global/urlMaps/{}", self.project, self.name)
            }
        }
    }

    /// Parses a [`ServiceRef::resource_name`] of any platform (the three shapes differ):
    /// `projects/{p}/locations/{l}/services/{s}`, `apps/{p}/services/{s}` or
    /// `projects/{p}/global/urlMaps/{m}`; `None` unless each part is a valid id.
    pub fn from_resource_name(name: &str) -> Option<ServiceRef> {
        let parts: Vec<&str> = name.split('/').collect();
        let global = |platform, p: &str, s: &str| {
            Some(ServiceRef::global(
                platform,
                ProjectId::parse(p).ok()?,
                ServiceName::parse(s).ok()?,
            ))
        };
        match parts.as_slice() {
            ["projects", p, "locations", l, "services", s] => ServiceRef::checked(p, l, s).ok(),
            ["apps", p, "services", s] => global(Platform::AppEngine, p, s),
            ["projects", p, "global", "urlMaps", m] => global(Platform::LoadBalancer, p, m),
            _ => None,
        }
    }
}

impl fmt::Display for ServiceRef {
    /// `project/region/service` for Cloud Run (as always), `platform:project/name` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.platform {
            Platform::CloudRun => write!(f, "{}/{}/{}", self.project, self.region, self.name),
            p => write!(f, "{p}:{}/{}", self.project, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_events_must_be_path_safe() {
        assert!(ServiceRef::checked("acme-prod", "us-central1", "api").is_ok());
        assert!(ServiceRef::checked("123456789012", "europe-west1", "api").is_ok());
        assert!(ServiceRef::checked("example.com:proj", "us-east1", "api").is_ok());
        for (p, r, s) in [
            ("p/locations/l/services/web#", "r", "api"),
            ("p", "r/x", "api"),
            ("p", "r", "a?b"),
            ("", "r", "api"),
            ("P", "r", "api"),
            ("..", "r", "api"),
            ("p", ".", "api"),
            // One rule for service names, Cloud Run's: a letter first, at most 49 characters.
            ("p", "r", "9lives"),
            ("p", "r", "a.b"),
            ("p", "r", &"a".repeat(50)),
            ("p", "r", "api\n"),
        ] {
            assert!(ServiceRef::checked(p, r, s).is_err(), "{p} {r} {s}");
        }
    }

    #[test]
    fn each_platform_names_its_targets_in_its_own_api() {
        let project = ProjectId::parse("acme-prod").unwrap();
        let name = ServiceName::parse("web").unwrap();
        let ae = ServiceRef::global(Platform::AppEngine, project.clone(), name.clone());
        assert_eq!(ae.resource_name(), "apps/acme-prod/services/web");
        assert_eq!(ae.to_string(), "app-engine:acme-prod/web");
        let lb = ServiceRef::global(Platform::LoadBalancer, project, name);
        assert_eq!(lb.resource_name(), "projects/acme-prod/global/urlMaps/web");
        assert_eq!(lb.region.as_str(), GLOBAL);
        assert_ne!(ae, lb, "the same name on two platforms is two targets");
        for t in [&ae, &lb] {
            assert_eq!(
                ServiceRef::from_resource_name(&t.resource_name()).as_ref(),
                Some(t)
            );
        }
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn resource_names_round_trip() {
        let s = ServiceRef::checked("acme-prod", "us-central1", "api").expect("valid ids");
        assert_eq!(
            s.resource_name(),
            "projects/acme-prod/locations/us-central1/services/api"
        );
        assert_eq!(ServiceRef::from_resource_name(&s.resource_name()), Some(s));
        assert_eq!(
            ServiceRef::from_resource_name("projects/p/services/s"),
            None
        );
        assert_eq!(
            ServiceRef::from_resource_name("projects//locations/l/services/s"),
            None
        );
        assert_eq!(
            ServiceRef::from_resource_name("projects/p/locations/l/services/Bad_Name"),
            None,
            "a listing's names pass the same rule as an event's"
        );
    }
}
