//! Which service a rollout is about.
//!
//! A Cloud Run service is named by project, region and service id; everything that names a
//! service (events, the decision record, the API clients) uses this one type so that the three
//! parts never travel separately.

use std::fmt;

/// A Cloud Run service: `projects/{project}/locations/{region}/services/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    pub project: String,
    pub region: String,
    pub name: String,
}

impl ServiceRef {
    pub fn new(
        project: impl Into<String>,
        region: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        ServiceRef {
            project: project.into(),
            region: region.into(),
            name: name.into(),
        }
    }

    /// A service named by an event: every part must be safe in a URL path, so a message cannot
    /// point cutover at another resource than the one it names (`p/locations/x/services/y#`).
    pub fn checked(project: &str, region: &str, name: &str) -> Result<ServiceRef, String> {
        for (what, v) in [("project", project), ("region", region), ("service", name)] {
            // Starting with a letter or digit also rules out `.` and `..` segments.
            let safe = v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && v.len() <= 63
                && v.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == ':'
                });
            if !safe {
                return Err(format!("{what} {v:?} is not a valid {what} id"));
            }
        }
        Ok(ServiceRef::new(project, region, name))
    }

    /// The full resource name used by the Run Admin API v2.
    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/services/{}",
            self.project, self.region, self.name
        )
    }

    /// Parses `projects/{p}/locations/{l}/services/{s}`.
    pub fn from_resource_name(name: &str) -> Option<ServiceRef> {
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            ["projects", p, "locations", l, "services", s]
                if !p.is_empty() && !l.is_empty() && !s.is_empty() =>
            {
                Some(ServiceRef::new(*p, *l, *s))
            }
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
        ] {
            assert!(ServiceRef::checked(p, r, s).is_err(), "{p} {r} {s}");
        }
    }

    #[test]
    fn resource_names_round_trip() {
        let s = ServiceRef::new("acme-prod", "us-central1", "api");
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
    }
}
