//! Which service a rollout is about.
//!
//! A Cloud Run service is named by project, region and service id; everything that names a
//! service (events, the decision record, the API clients) uses this one type so that the three
//! parts never travel separately.

use std::fmt;

use crate::ids::{IdError, ProjectId, Region, ServiceName};

/// A Cloud Run service: `projects/{project}/locations/{region}/services/{name}`. Made only
/// from checked ids, so none of its parts can point cutover at another resource than the one
/// it names (`p/locations/x/services/y#`) nor carry a control character.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    pub project: ProjectId,
    pub region: Region,
    pub name: ServiceName,
}

impl ServiceRef {
    /// A service from ids checked where they entered (see [`crate::ids`]).
    pub fn from_ids(project: ProjectId, region: Region, name: ServiceName) -> ServiceRef {
        ServiceRef {
            project,
            region,
            name,
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

    /// The full resource name used by the Run Admin API v2.
    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/services/{}",
            self.project, self.region, self.name
        )
    }

    /// Parses `projects/{p}/locations/{l}/services/{s}`; `None` unless each part is a valid id.
    pub fn from_resource_name(name: &str) -> Option<ServiceRef> {
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            ["projects", p, "locations", l, "services", s] => ServiceRef::checked(p, l, s).ok(),
            _ => None,
        }
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.region, self.name)
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
