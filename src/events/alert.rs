//! Cloud Monitoring alert notifications delivered through a Pub/Sub notification channel.
//!
//! An alerting policy with a Pub/Sub channel publishes `{"incident": {...}, "version": "1.2"}`
//! when an incident opens and again when it closes; "Send test notification" publishes a fixed
//! body with `version: "test"`. cutover uses an open incident on the service under rollout as
//! a signal to roll back, so the decoder extracts which Cloud Run service (and revision) the
//! incident is about, either from the monitored resource (`cloud_run_revision`) or from the
//! policy user label `cutover-service` (for policies on other resource types).
//!
//! The other platforms' resources name their targets too: `gae_app` (labels `project_id`,
//! `module_id`: the App Engine service, `version_id`) and `https_lb_rule` (labels `project_id`,
//! `url_map_name`: the URL map, `backend_target_name`: the backend service). An incident on
//! either is about that App Engine service or URL map, whatever its location label says.
//!
//! The payload is loosely typed in practice: key casing is mixed, numbers arrive as strings and
//! strings as numbers, `ended_at` is `null` or `0`, `documentation` is an object or a string,
//! `severity` may be missing, and `observed_value` can be free text. The decoder reads only what
//! it needs, through tolerant accessors, and never interprets `observed_value`.

use serde_json::{Map, Value};

use super::DecodeError;
use super::envelope::PushMessage;
use super::lenient;
use super::resolve::Named;
use crate::ids::text::excerpt;
use crate::ids::text::printable;
use crate::ids::{self, IncidentId, ProjectId, Region, RevisionName, ServiceName};
use crate::target::Platform;

/// Policy user label naming the Cloud Run service an alert is about, for policies whose
/// monitored resource is not a Cloud Run revision.
pub const SERVICE_LABEL: &str = "cutover-service";

/// Monitored resource type of Cloud Run revisions.
pub const CLOUD_RUN_REVISION: &str = "cloud_run_revision";
/// Monitored resource type of App Engine versions.
pub const GAE_APP: &str = "gae_app";
/// Monitored resource type of the global external Application Load Balancer's rules.
pub const HTTPS_LB_RULE: &str = "https_lb_rule";

/// Longest incident summary kept, in characters. Google's summaries are one sentence (about
/// 200 characters for a Cloud Run metric alert); the summary ends up in the rollback reason,
/// whose annotation cutover caps at 1,000 characters, so this leaves room for the rest.
pub const MAX_SUMMARY_CHARS: usize = 512;

/// Longest policy name kept, in characters (display names are short; test notifications put a
/// resource path there).
pub const MAX_POLICY_NAME_CHARS: usize = 256;

/// Longest monitored resource type kept (real ones are like `cloud_run_revision`).
const MAX_RESOURCE_TYPE_CHARS: usize = 128;

/// A decoded alert incident: every id checked, free text bounded and printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// Incident id (e.g. `0.nrwotmyokd9n`); shared by the open and closed notifications.
    pub incident_id: IncidentId,
    /// Whether the incident opened or closed.
    pub state: IncidentState,
    /// `true` for Google's "Send test notification" payload (`version: "test"`).
    pub is_test: bool,
    /// The platform of the target it names: App Engine for a `gae_app` resource, the load
    /// balancer for an `https_lb_rule` one, Cloud Run otherwise.
    pub platform: Platform,
    /// The Cloud Run service (App Engine service, URL map) concerned, if the incident names one.
    pub service: Option<ServiceName>,
    /// The Cloud Run revision concerned (resource label `revision_name`), if any.
    pub revision: Option<RevisionName>,
    /// Project id: resource label `project_id`, else `scoping_project_id`.
    pub project: Option<ProjectId>,
    /// Resource label `location` (the Cloud Run region), if any.
    pub location: Option<Region>,
    /// The policy's display name (a resource path in test notifications); never parse it. At
    /// most [`MAX_POLICY_NAME_CHARS`], printable.
    pub policy_name: String,
    /// Google's human-readable summary, at most [`MAX_SUMMARY_CHARS`], printable.
    pub summary: String,
    /// Epoch seconds the incident started; `None` when absent or 0.
    pub started_at: Option<i64>,
    /// Monitored resource type (e.g. `cloud_run_revision`, `gce_instance`), or empty.
    pub resource_type: String,
}

/// Incident state, compared case-insensitively (real incidents say `open`, tests `OPEN`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IncidentState {
    /// The condition is firing.
    Open,
    /// The condition stopped firing (or the incident was cancelled).
    Closed,
    /// Anything else, as sent (empty when the state was missing).
    Other(String),
}

impl IncidentState {
    fn parse(s: &str) -> IncidentState {
        let s = s.trim();
        if s.eq_ignore_ascii_case("open") {
            IncidentState::Open
        } else if s.eq_ignore_ascii_case("closed") {
            IncidentState::Closed
        } else {
            IncidentState::Other(excerpt(s, 64))
        }
    }
}

impl Incident {
    /// Decodes an alert notification from a push message.
    ///
    /// Fails when the data is not a JSON object with an `incident` object carrying a valid
    /// `incident_id`, or when the named service is not a valid Cloud Run service name. For an
    /// incident that names a service, its project, location and revision must be valid too;
    /// for one that does not (it is ignored anyway), invalid ones are dropped.
    pub fn from_message(msg: &PushMessage) -> Result<Incident, DecodeError> {
        let root = msg.json_object()?;
        let incident = lenient::object(&root, "incident")
            .ok_or_else(|| DecodeError::new("alert notification has no `incident` object"))?;
        let is_test =
            lenient::text(&root, "version").is_some_and(|v| v.trim().eq_ignore_ascii_case("test"));

        let raw_id = lenient::non_empty_text(incident, "incident_id")
            .ok_or_else(|| DecodeError::new("incident has no incident_id"))?;
        let incident_id =
            IncidentId::parse(&raw_id).map_err(|e| DecodeError::new(e.to_string()))?;
        let state = lenient::text(incident, "state")
            .map(|s| IncidentState::parse(&s))
            .unwrap_or(IncidentState::Other(String::new()));

        let empty = Map::new();
        let resource = lenient::object(incident, "resource").unwrap_or(&empty);
        let resource_type = lenient::text(resource, "type")
            .map(|s| printable(&s, MAX_RESOURCE_TYPE_CHARS))
            .unwrap_or_default();
        let labels = lenient::object(resource, "labels").unwrap_or(&empty);
        let label = |key: &str| lenient::non_empty_text(labels, key);

        let invalid = |e: ids::IdError| DecodeError::new(format!("incident {incident_id}: {e}"));
        let (platform, service_label, revision_label) = match resource_type.as_str() {
            GAE_APP => (Platform::AppEngine, "module_id", "version_id"),
            HTTPS_LB_RULE => (
                Platform::LoadBalancer,
                "url_map_name",
                "backend_target_name",
            ),
            _ => (Platform::CloudRun, "service_name", "revision_name"),
        };
        let service =
            resolve_service(incident, &resource_type, labels, service_label).map_err(invalid)?;
        let named = service.is_some();
        let project =
            label("project_id").or_else(|| lenient::non_empty_text(incident, "scoping_project_id"));
        // A version or backend id need not follow Cloud Run's revision rules (App Engine's
        // timestamp versions start with a digit): kept when it does, else left out (the
        // rollback does not need it).
        let revision = match platform {
            Platform::CloudRun => {
                ids::optional(label(revision_label).as_deref(), named).map_err(invalid)?
            }
            _ => label(revision_label).and_then(|r| RevisionName::parse(&r).ok()),
        };

        Ok(Incident {
            platform,
            service,
            revision,
            project: ids::optional(project.as_deref(), named).map_err(invalid)?,
            location: match platform {
                Platform::CloudRun => {
                    ids::optional(label("location").as_deref(), named).map_err(invalid)?
                }
                _ => None,
            },
            policy_name: lenient::text(incident, "policy_name")
                .map(|s| printable(&s, MAX_POLICY_NAME_CHARS))
                .unwrap_or_default(),
            summary: lenient::text(incident, "summary")
                .map(|s| printable(&s, MAX_SUMMARY_CHARS))
                .unwrap_or_default(),
            started_at: lenient::field(incident, "started_at")
                .and_then(lenient::integer)
                .filter(|t| *t != 0),
            resource_type,
            state,
            is_test,
            incident_id,
        })
    }

    /// The service this incident names, and where, for
    /// [`Scope::resolve`](super::Scope::resolve); `None` when it names no service.
    pub fn named(&self) -> Option<Named<'_>> {
        Some(Named {
            platform: self.platform,
            project: self.project.as_ref(),
            region: self.location.as_ref(),
            service: self.service.as_ref()?,
        })
    }
}

/// The service an incident is about: the `service_name` label of a Cloud Run revision resource,
/// else the `cutover-service` policy user label (also accepted under `metadata.user_labels`).
fn resolve_service(
    incident: &Map<String, Value>,
    resource_type: &str,
    labels: &Map<String, Value>,
    service_label: &str,
) -> Result<Option<ServiceName>, ids::IdError> {
    let from_resource = [CLOUD_RUN_REVISION, GAE_APP, HTTPS_LB_RULE]
        .contains(&resource_type)
        .then(|| lenient::non_empty_text(labels, service_label))
        .flatten();
    let from_policy_label = || {
        let policy_labels = lenient::object(incident, "policy_user_labels");
        let metadata_labels =
            lenient::object(incident, "metadata").and_then(|m| lenient::object(m, "user_labels"));
        [policy_labels, metadata_labels]
            .into_iter()
            .flatten()
            .find_map(|l| l.get(SERVICE_LABEL).and_then(lenient::scalar_text))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    from_resource
        .or_else(from_policy_label)
        .map(|s| ServiceName::parse(&s))
        .transpose()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use cutover_fakes::encode::encode_push;

    const ALERT_1: &[u8] = cutover_fakes::fixture!("payloads/monitoring-alert-1.json");
    const ALERT_2: &[u8] = cutover_fakes::fixture!("payloads/monitoring-alert-2.json");
    const ALERT_3: &[u8] = cutover_fakes::fixture!("payloads/monitoring-alert-3.json");
    const CLOUD_RUN_ALERT: &[u8] =
        cutover_fakes::fixture!("events/monitoring-alert-cloud-run.json");

    fn decode(data: &[u8]) -> Result<Incident, DecodeError> {
        let t = "2026-08-20T10:04:03.509Z".parse().expect("timestamp");
        let body = encode_push(
            data,
            &BTreeMap::new(),
            "4711",
            t,
            "projects/p/subscriptions/alerts-push",
        );
        let msg = PushMessage::from_body(&serde_json::to_vec(&body).expect("serialize"))
            .expect("envelope");
        Incident::from_message(&msg)
    }

    fn decode_json(v: Value) -> Result<Incident, DecodeError> {
        decode(&serde_json::to_vec(&v).expect("serialize"))
    }

    #[test]
    fn real_open_incident_on_a_vm() {
        let i = decode(ALERT_1).expect("decodes");
        assert_eq!(i.incident_id, "0.nrwotmyokd9n");
        assert_eq!(i.state, IncidentState::Open);
        assert!(!i.is_test);
        assert_eq!(i.resource_type, "gce_instance");
        assert_eq!(i.service, None);
        assert_eq!(i.revision, None);
        assert_eq!(i.project.as_deref(), Some("flanksource-sandbox"));
        assert_eq!(i.location, None);
        assert_eq!(i.policy_name, "Test-incident-canary");
        assert!(
            i.summary
                .starts_with("Sent packets for flanksource-sandbox")
        );
        assert_eq!(i.started_at, Some(1_746_178_794));
    }

    #[test]
    fn real_closed_incident_with_free_text_observed_value() {
        let i = decode(ALERT_2).expect("decodes");
        assert_eq!(i.incident_id, "0.nrwo9fe1a4wg");
        assert_eq!(i.state, IncidentState::Closed);
        assert!(!i.is_test);
        assert_eq!(i.started_at, Some(1_746_177_319));
        assert!(i.summary.ends_with(".."));
    }

    #[test]
    fn google_test_notification() {
        let i = decode(ALERT_3).expect("decodes");
        assert_eq!(i.incident_id, "12345");
        assert_eq!(i.state, IncidentState::Open);
        assert!(i.is_test);
        assert_eq!(i.resource_type, "example_resource");
        assert_eq!(i.service, None);
        assert_eq!(i.project.as_deref(), Some("12345"));
        assert_eq!(i.policy_name, "projects/12345/alertPolicies/12345");
        assert_eq!(i.summary, "Test Incident");
        assert_eq!(i.started_at, None, "0 means unset");
    }

    #[test]
    fn cloud_run_revision_incident() {
        let i = decode(CLOUD_RUN_ALERT).expect("decodes");
        assert_eq!(i.incident_id, "0.nq1x7d4k9a00");
        assert_eq!(i.state, IncidentState::Open);
        assert_eq!(i.resource_type, CLOUD_RUN_REVISION);
        assert_eq!(i.service.as_deref(), Some("api"));
        assert_eq!(i.revision.as_deref(), Some("api-00007-kip"));
        assert_eq!(i.project.as_deref(), Some("acme-prod"));
        assert_eq!(i.location.as_deref(), Some("us-central1"));
        assert_eq!(i.policy_name, "api canary 5xx");
        assert_eq!(i.started_at, Some(1_787_220_180));
    }

    fn with_incident(patch: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut v: Value = serde_json::from_slice(ALERT_1).expect("json");
        if let Some(incident) = v.get_mut("incident").and_then(Value::as_object_mut) {
            patch(incident);
        }
        v
    }

    #[test]
    fn policy_user_label_names_the_service() {
        let v = with_incident(|i| {
            i.insert(
                "policy_user_labels".into(),
                json!({"cutover-service": "checkout", "team": "x"}),
            );
        });
        assert_eq!(
            decode_json(v).expect("decodes").service.as_deref(),
            Some("checkout")
        );

        let v = with_incident(|i| {
            i.insert(
                "metadata".into(),
                json!({"system_labels": {}, "user_labels": {"cutover-service": "billing"}}),
            );
        });
        assert_eq!(
            decode_json(v).expect("decodes").service.as_deref(),
            Some("billing")
        );

        // The resource label wins over the policy label for Cloud Run revisions.
        let mut v: Value = serde_json::from_slice(CLOUD_RUN_ALERT).expect("json");
        v["incident"]["policy_user_labels"] = json!({"cutover-service": "other"});
        assert_eq!(
            decode_json(v).expect("decodes").service.as_deref(),
            Some("api")
        );
    }

    #[test]
    fn app_engine_and_load_balancer_resources_name_their_targets() {
        let on = |resource: Value| {
            let mut v: Value = serde_json::from_slice(CLOUD_RUN_ALERT).expect("json");
            v["incident"]["resource"] = resource;
            decode_json(v).expect("decodes")
        };
        let i = on(json!({"type": "gae_app", "labels": {
            "project_id": "acme-prod", "module_id": "default",
            "version_id": "20261205t030000", "zone": "us-central1-f"}}));
        assert_eq!(i.platform, Platform::AppEngine);
        assert_eq!(i.service.as_deref(), Some("default"));
        assert_eq!(i.location, None, "an App Engine service has no region");
        let named = i.named().expect("names a target");
        assert_eq!(named.platform, Platform::AppEngine);

        let i = on(json!({"type": "https_lb_rule", "labels": {
            "project_id": "acme-prod", "url_map_name": "web-map",
            "backend_target_name": "web-green", "region": "global",
            "forwarding_rule_name": "web-fr"}}));
        assert_eq!(i.platform, Platform::LoadBalancer);
        assert_eq!(i.service.as_deref(), Some("web-map"));
        assert_eq!(i.revision.as_deref(), Some("web-green"));

        // A Cloud Run label on them names nothing.
        let i = on(json!({"type": "gae_app", "labels": {"service_name": "api"}}));
        assert_eq!(i.service, None);
    }

    #[test]
    fn service_name_label_on_other_resources_is_ignored() {
        let v = with_incident(|i| {
            i.insert(
                "resource".into(),
                json!({"type": "gce_instance", "labels": {"service_name": "api"}}),
            );
        });
        assert_eq!(decode_json(v).expect("decodes").service, None);
    }

    #[test]
    fn invalid_service_label_is_rejected() {
        let v = with_incident(|i| {
            i.insert(
                "policy_user_labels".into(),
                json!({"cutover-service": "Not_A_Service"}),
            );
        });
        let err = decode_json(v).expect_err("invalid service");
        assert!(
            err.reason()
                .contains("Cloud Run service name \"Not_A_Service\" is not valid"),
            "{err}"
        );
    }

    #[test]
    fn free_text_is_bounded_and_printable() {
        let v = with_incident(|i| {
            i.insert(
                "summary".into(),
                json!(format!(
                    "5xx\r\nINFO forged line\u{1b}[31m {}",
                    "x".repeat(200_000)
                )),
            );
            i.insert("policy_name".into(), json!("p\n".repeat(1000)));
        });
        let i = decode_json(v).expect("decodes");
        assert_eq!(i.summary.chars().count(), MAX_SUMMARY_CHARS);
        assert!(
            i.summary.starts_with("5xx  INFO forged line [31m x"),
            "{}",
            i.summary
        );
        assert!(i.summary.ends_with('…'));
        assert!(i.policy_name.chars().count() <= MAX_POLICY_NAME_CHARS);
        for text in [&i.summary, &i.policy_name] {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }

    #[test]
    fn ids_that_cannot_be_valid_are_refused() {
        for id in ["0.abc\nforged".to_owned(), "9".repeat(100_000)] {
            let v = with_incident(|i| {
                i.insert("incident_id".into(), json!(id));
            });
            let err = decode_json(v).expect_err("bad id");
            assert!(err.reason().starts_with("incident id "), "{err}");
            assert!(err.reason().len() < 200 && !err.reason().contains('\n'));
        }
        // Where the incident names a service, where it is must be usable too.
        let mut v: Value = serde_json::from_slice(CLOUD_RUN_ALERT).expect("json");
        v["incident"]["resource"]["labels"]["location"] = json!("us-central1/../../x");
        let err = decode_json(v).expect_err("bad location");
        assert!(err.reason().contains("region"), "{err}");
        // Where it names none, an odd label is dropped: the incident is ignored anyway.
        let mut v: Value = serde_json::from_slice(ALERT_1).expect("json");
        v["incident"]["resource"]["labels"]["project_id"] = json!("Not A Project");
        assert_eq!(decode_json(v).expect("decodes").project, None);
    }

    #[test]
    fn tolerates_oddities() {
        let v = json!({
            "version": 1.2,
            "incident": {
                "incidentId": 987,
                "state": " Closed ",
                "started_at": "1746178794",
                "ended_at": 0,
                "documentation": "plain",
                "observed_value": "Incident cancelled because…",
                "scoping_project_id": "proj-x",
                "resource": {"type": "cloud_run_revision", "labels": {"service_name": "api", "revision_name": "api-00001-abc", "project_id": ""}},
                "severity": null
            }
        });
        let i = decode_json(v).expect("decodes");
        assert_eq!(i.incident_id, "987");
        assert_eq!(i.state, IncidentState::Closed);
        assert_eq!(i.started_at, Some(1_746_178_794));
        assert_eq!(i.project.as_deref(), Some("proj-x"));
        assert_eq!(i.service.as_deref(), Some("api"));
        assert_eq!(i.policy_name, "");
        assert!(!i.is_test);

        let i = decode_json(json!({"incident": {"incident_id": "1", "state": "ACKNOWLEDGED"}}))
            .expect("decodes");
        assert_eq!(i.state, IncidentState::Other("ACKNOWLEDGED".into()));
        assert_eq!(i.resource_type, "");
        let i = decode_json(json!({"incident": {"incident_id": "1"}})).expect("decodes");
        assert_eq!(i.state, IncidentState::Other(String::new()));
    }

    #[test]
    fn rejects_non_alerts() {
        assert!(
            decode(b"ckmcslkmcsiocm")
                .expect_err("not json")
                .reason()
                .starts_with("message data is not JSON")
        );
        assert!(decode_json(json!({"version": "1.2"})).is_err());
        assert!(decode_json(json!({"incident": "x"})).is_err());
        assert_eq!(
            decode_json(json!({"incident": {"state": "open"}}))
                .expect_err("no id")
                .reason(),
            "incident has no incident_id"
        );
    }

    proptest! {
        #[test]
        fn never_panics(v in crate::events::envelope::tests::arb_json()) {
            let _ = decode_json(json!({"incident": v.clone(), "version": v.clone()}));
            let _ = decode_json(json!({"incident": {"incident_id": "1", "resource": v.clone(), "policy_user_labels": v.clone(), "metadata": {"user_labels": v.clone()}, "started_at": v.clone(), "state": v}}));
        }
    }
}
