//! Cloud Build notifications: the `Build` resource Cloud Build publishes on every status change.
//!
//! Cloud Build publishes to the `cloud-builds` topic whenever a build changes state; the message
//! `data` is the `Build` resource as camelCase JSON and the attributes repeat `buildId` and
//! `status`. cutover only needs a handful of fields: the id, the status, the project, the user
//! substitutions through which a build names the Cloud Run service (`_SERVICE_NAME`) and region
//! (`_DEPLOY_REGION` or `_REGION`) it deployed and, for a build without `_SERVICE_NAME`, the
//! deploy commands of its steps ([`super::deploy_steps`]). Everything else in the resource
//! (timings, results, provenance) varies between builds and is ignored.
//!
//! How a build names its targets: `_SERVICE_NAME` first (one service, its region from the
//! substitutions); else each `gcloud run deploy NAME … --no-traffic` (or `run services update`)
//! of its steps, its region from `--region`, else from the substitutions; the project from
//! `--project`, else the build's. What is still missing is `Scope::resolve`'s to fill in.
//!
//! The other platforms are named by their own substitutions, each one more target of the
//! build: `_APPENGINE_SERVICE` (an App Engine service; `_APPENGINE_VERSION` the version
//! `gcloud app deploy --no-promote` created) and `_URL_MAP` (a global URL map;
//! `_CANDIDATE_BACKEND` the candidate backend service). The version or backend is kept as the
//! build's candidate for records; the rollout itself takes the router's latest ready revision,
//! as for Cloud Run.

use std::fmt;

use serde_json::Value;

use super::DecodeError;
use super::deploy_steps::{self, DeployCommand};
use super::envelope::PushMessage;
use super::lenient;
use super::resolve::Named;
use crate::ids::text::excerpt;
use crate::ids::{self, BuildId, ProjectId, Region, ServiceName};
use crate::target::Platform;

/// Substitution naming the Cloud Run service a build deployed.
pub const SERVICE_SUBSTITUTION: &str = "_SERVICE_NAME";
/// Preferred substitution naming the region the service was deployed to.
pub const DEPLOY_REGION_SUBSTITUTION: &str = "_DEPLOY_REGION";
/// Fallback region substitution, used when `_DEPLOY_REGION` is absent or empty.
pub const REGION_SUBSTITUTION: &str = "_REGION";
/// Substitution naming the App Engine service a build deployed a version of.
pub const APPENGINE_SERVICE_SUBSTITUTION: &str = "_APPENGINE_SERVICE";
/// Substitution naming that version (`gcloud app deploy --version=… --no-promote`).
pub const APPENGINE_VERSION_SUBSTITUTION: &str = "_APPENGINE_VERSION";
/// Substitution naming the global URL map whose weighted backends a build's rollout moves.
pub const URL_MAP_SUBSTITUTION: &str = "_URL_MAP";
/// Substitution naming the candidate backend service behind that URL map.
pub const CANDIDATE_BACKEND_SUBSTITUTION: &str = "_CANDIDATE_BACKEND";

/// A target of a platform without regions that a build names by substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalTarget {
    pub platform: Platform,
    /// The App Engine service or URL map.
    pub name: ServiceName,
    /// The version or backend service the build made, when it says (a lowercase id).
    pub candidate: Option<String>,
}

/// A decoded Cloud Build notification: only what cutover uses, every id checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildNotification {
    /// The build id (`id`, or the `buildId` attribute when the resource lacks one).
    pub build_id: BuildId,
    /// The build status at the time of publishing.
    pub status: BuildStatus,
    /// The project **id** (not number) the build ran in, when present (and, when no target of
    /// the build needs it, valid: otherwise it is dropped, as nothing would use it).
    pub project_id: Option<ProjectId>,
    /// The Cloud Run service the build deployed: substitution `_SERVICE_NAME`, trimmed.
    pub service: Option<ServiceName>,
    /// The region it deployed to: `_DEPLOY_REGION`, else `_REGION` (trimmed, non-empty); like
    /// the project, kept only when valid unless a target of the build needs it.
    pub region: Option<Region>,
    /// Without `_SERVICE_NAME`: the `gcloud run deploy` and `run services update` commands of
    /// its steps, each the service it rolls out or why it starts no rollout (empty otherwise).
    pub deploys: Vec<DeployCommand>,
    /// The App Engine service and URL map it names (`_APPENGINE_SERVICE`, `_URL_MAP`).
    pub global: Vec<GlobalTarget>,
    /// The build's log in the console (`logUrl`), for decision records: an `https://` URL,
    /// printable and at most [`MAX_LOG_URL_CHARS`] long, else none.
    pub log_url: Option<String>,
}

/// Longest `logUrl` kept (real ones are about 150 characters).
pub const MAX_LOG_URL_CHARS: usize = 512;

/// `Build.Status`, decoded from the enum name (`"SUCCESS"`) or, leniently, its number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BuildStatus {
    /// Created, waiting for approval or resources (`PENDING`).
    Pending,
    /// Queued for execution (`QUEUED`).
    Queued,
    /// Running (`WORKING`).
    Working,
    /// Finished successfully (`SUCCESS`).
    Success,
    /// A step failed (`FAILURE`).
    Failure,
    /// Cloud Build itself failed (`INTERNAL_ERROR`).
    InternalError,
    /// Exceeded its timeout (`TIMEOUT`).
    Timeout,
    /// Cancelled by a user (`CANCELLED`).
    Cancelled,
    /// Sat in the queue longer than its `queueTtl` (`EXPIRED`).
    Expired,
    /// Any other name, including `STATUS_UNKNOWN` and statuses added after this was written.
    Unknown(String),
}

impl BuildStatus {
    /// Decodes an enum name (surrounding whitespace and letter case are ignored).
    pub fn from_name(name: &str) -> BuildStatus {
        let name = name.trim();
        match name.to_ascii_uppercase().as_str() {
            "PENDING" => BuildStatus::Pending,
            "QUEUED" => BuildStatus::Queued,
            "WORKING" => BuildStatus::Working,
            "SUCCESS" => BuildStatus::Success,
            "FAILURE" => BuildStatus::Failure,
            "INTERNAL_ERROR" => BuildStatus::InternalError,
            "TIMEOUT" => BuildStatus::Timeout,
            "CANCELLED" => BuildStatus::Cancelled,
            "EXPIRED" => BuildStatus::Expired,
            _ => BuildStatus::Unknown(excerpt(name, 64)),
        }
    }

    /// Decodes the proto enum number (as sent by clients using integer enum encoding).
    pub fn from_number(n: i64) -> BuildStatus {
        match n {
            10 => BuildStatus::Pending,
            1 => BuildStatus::Queued,
            2 => BuildStatus::Working,
            3 => BuildStatus::Success,
            4 => BuildStatus::Failure,
            5 => BuildStatus::InternalError,
            6 => BuildStatus::Timeout,
            7 => BuildStatus::Cancelled,
            9 => BuildStatus::Expired,
            0 => BuildStatus::Unknown("STATUS_UNKNOWN".to_owned()),
            other => BuildStatus::Unknown(other.to_string()),
        }
    }

    /// The enum name as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            BuildStatus::Pending => "PENDING",
            BuildStatus::Queued => "QUEUED",
            BuildStatus::Working => "WORKING",
            BuildStatus::Success => "SUCCESS",
            BuildStatus::Failure => "FAILURE",
            BuildStatus::InternalError => "INTERNAL_ERROR",
            BuildStatus::Timeout => "TIMEOUT",
            BuildStatus::Cancelled => "CANCELLED",
            BuildStatus::Expired => "EXPIRED",
            BuildStatus::Unknown(s) => s,
        }
    }

    /// Whether the build has finished (successfully or not) and will not change status again.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            BuildStatus::Success
                | BuildStatus::Failure
                | BuildStatus::InternalError
                | BuildStatus::Timeout
                | BuildStatus::Cancelled
                | BuildStatus::Expired
        )
    }

    fn from_json(v: &Value) -> Option<BuildStatus> {
        match v {
            Value::String(s) if !s.trim().is_empty() => Some(BuildStatus::from_name(s)),
            Value::Number(_) => lenient::integer(v).map(BuildStatus::from_number),
            _ => None,
        }
    }
}

impl fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BuildNotification {
    /// Decodes a Cloud Build notification from a push message.
    ///
    /// The data must be a JSON `Build` object. Its `id` and `status` win; the `buildId` and
    /// `status` attributes are used only when the resource lacks them. A build with neither
    /// status has the proto default, `Unknown("STATUS_UNKNOWN")`. The id must be a valid
    /// [`BuildId`] whatever the build is. When `_SERVICE_NAME` is set it must be a valid Cloud Run
    /// service name, and then the project and the region substitution, if set, must be valid
    /// too; otherwise the message is rejected (a typo'd substitution must not silently skip a
    /// rollout, nor reach a URL path or a log line). Without `_SERVICE_NAME` its steps are read
    /// for deploy commands ([`deploy_steps`]); the project and region substitution are then held
    /// to the same rule when a `--no-traffic` deploy leaves its project or region to them, and a
    /// deploy command that starts no rollout is kept with its reason, not rejected.
    pub fn from_message(msg: &PushMessage) -> Result<BuildNotification, DecodeError> {
        let build = msg.json_object()?;

        let raw_id = lenient::non_empty_text(&build, "id")
            .or_else(|| attribute(msg, "buildId"))
            .ok_or_else(|| DecodeError::new("build has no id"))?;
        let build_id = BuildId::parse(&raw_id).map_err(|e| DecodeError::new(e.to_string()))?;

        let status = lenient::field(&build, "status")
            .and_then(BuildStatus::from_json)
            .or_else(|| attribute(msg, "status").map(|s| BuildStatus::from_name(&s)))
            .unwrap_or_else(|| BuildStatus::Unknown("STATUS_UNKNOWN".to_owned()));

        let substitutions = lenient::string_map(lenient::field(&build, "substitutions"));
        let substitution = |key: &str| {
            substitutions
                .get(key)
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
        };
        let service = substitution(SERVICE_SUBSTITUTION)
            .map(ServiceName::parse)
            .transpose()
            .map_err(|e| invalid_substitution(&build_id, SERVICE_SUBSTITUTION, e))?;
        let mut global = Vec::new();
        for (platform, key, candidate_key) in [
            (
                Platform::AppEngine,
                APPENGINE_SERVICE_SUBSTITUTION,
                APPENGINE_VERSION_SUBSTITUTION,
            ),
            (
                Platform::LoadBalancer,
                URL_MAP_SUBSTITUTION,
                CANDIDATE_BACKEND_SUBSTITUTION,
            ),
        ] {
            let Some(name) = substitution(key) else {
                continue;
            };
            let name =
                ServiceName::parse(name).map_err(|e| invalid_substitution(&build_id, key, e))?;
            let candidate = substitution(candidate_key)
                .map(|c| candidate_id(&build_id, candidate_key, c))
                .transpose()?;
            global.push(GlobalTarget {
                platform,
                name,
                candidate,
            });
        }
        let deploys = match service {
            Some(_) => Vec::new(),
            None => deploy_steps::deploy_commands(lenient::field(&build, "steps")),
        };
        let step_targets = || deploys.iter().filter_map(|d| d.outcome.as_ref().ok());
        // The region and project matter when a target leaves them to the build.
        let named = service.is_some();
        let region_needed = named || step_targets().any(|t| t.region.is_none());
        let project_needed =
            named || !global.is_empty() || step_targets().any(|t| t.project.is_none());
        let region_key = [DEPLOY_REGION_SUBSTITUTION, REGION_SUBSTITUTION]
            .into_iter()
            .find(|k| substitution(k).is_some());
        let region = ids::optional(region_key.and_then(substitution), region_needed)
            .map_err(|e| invalid_substitution(&build_id, region_key.unwrap_or_default(), e))?;
        let project_id = ids::optional(
            lenient::non_empty_text(&build, "projectId").as_deref(),
            project_needed,
        )
        .map_err(|e| DecodeError::new(format!("build {build_id}: {e}")))?;

        let log_url = lenient::non_empty_text(&build, "logUrl")
            .filter(|u| u.starts_with("https://") && u.chars().count() <= MAX_LOG_URL_CHARS)
            .map(|u| crate::ids::text::printable(&u, MAX_LOG_URL_CHARS))
            .filter(|u| !u.contains(char::is_whitespace));

        Ok(BuildNotification {
            build_id,
            status,
            project_id,
            service,
            region,
            deploys,
            global,
            log_url,
        })
    }

    /// The services this build rolls out, and where as far as it says, each for
    /// [`Scope::resolve`](super::Scope::resolve): the `_SERVICE_NAME` one, else one per deploy
    /// command with `--no-traffic` (its own `--region` and `--project` first, then the build's).
    /// Empty when it names none ([`BuildNotification::why_no_target`] says why).
    /// The App Engine service and URL map of `_APPENGINE_SERVICE` / `_URL_MAP` come after them.
    pub fn targets(&self) -> Vec<Named<'_>> {
        let global = self.global.iter().map(|g| Named {
            platform: g.platform,
            project: self.project_id.as_ref(),
            region: None,
            service: &g.name,
        });
        if let Some(service) = &self.service {
            let run = Named {
                platform: Platform::CloudRun,
                project: self.project_id.as_ref(),
                region: self.region.as_ref(),
                service,
            };
            return std::iter::once(run).chain(global).collect();
        }
        self.deploys
            .iter()
            .filter_map(|d| d.outcome.as_ref().ok())
            .map(|t| Named {
                platform: Platform::CloudRun,
                project: t.project.as_ref().or(self.project_id.as_ref()),
                region: t.region.as_ref().or(self.region.as_ref()),
                service: &t.service,
            })
            .chain(global)
            .collect()
    }

    /// Why each deploy command that starts no rollout does not (`step #2 (deploy): …`).
    pub fn skipped(&self) -> Vec<String> {
        self.deploys
            .iter()
            .filter_map(|d| {
                d.outcome
                    .as_ref()
                    .err()
                    .map(|why| format!("{}: {why}", d.step))
            })
            .collect()
    }

    /// For a build without targets: why, for people (what it lacks and what each deploy
    /// command did instead).
    pub fn why_no_target(&self) -> String {
        let skipped = self.skipped();
        let steps = if skipped.is_empty() {
            "no step runs `gcloud run deploy` or `gcloud run services update`".to_owned()
        } else {
            format!("no deploy step starts a rollout: {}", skipped.join("; "))
        };
        format!(
            "build {} has no {SERVICE_SUBSTITUTION} substitution (nor {APPENGINE_SERVICE_SUBSTITUTION}, {URL_MAP_SUBSTITUTION}) and {steps}",
            self.build_id
        )
    }
}

/// A version or backend service id: lowercase letters, digits and hyphens, at most 63
/// (App Engine version ids and Compute resource names both fit; timestamps such as
/// `20261205t030000` that gcloud gives versions too).
fn candidate_id(build: &BuildId, key: &str, id: &str) -> Result<String, DecodeError> {
    let ok = id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(id.to_string())
    } else {
        Err(DecodeError::new(format!(
            "build {build}: substitution {key}: {:?} is not a version or backend service id (lowercase letters, digits, hyphens, at most 63)",
            excerpt(id, 80)
        )))
    }
}

fn invalid_substitution(build: &BuildId, key: &str, e: ids::IdError) -> DecodeError {
    DecodeError::new(format!("build {build}: substitution {key}: {e}"))
}

fn attribute(msg: &PushMessage, key: &str) -> Option<String> {
    msg.attributes
        .get(key)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use std::collections::BTreeMap;

    use jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use cutover_fakes::encode::encode_push;

    fn build_attributes(build_id: &str, status: &BuildStatus) -> BTreeMap<String, String> {
        cutover_fakes::encode::build_attributes(build_id, status.as_str())
    }

    fn encode_build(
        id: &str,
        status: &BuildStatus,
        project: &str,
        service: &str,
        region: &str,
        at: Timestamp,
    ) -> Vec<u8> {
        cutover_fakes::encode::encode_build(id, status.as_str(), project, service, region, at)
    }

    const BUILD_1: &[u8] = cutover_fakes::fixture!("payloads/cloudbuild-1.json");
    const BUILD_2: &[u8] = cutover_fakes::fixture!("payloads/cloudbuild-2.json");
    const BUILD_WITH_SERVICE: &[u8] = cutover_fakes::fixture!("events/cloudbuild-service.json");

    fn t0() -> Timestamp {
        "2026-08-20T10:04:03.509Z".parse().expect("timestamp")
    }

    /// Wraps `data` in a real-shaped envelope and decodes it again, as the push handler would.
    fn delivered(data: &[u8], attributes: BTreeMap<String, String>) -> PushMessage {
        let body = encode_push(
            data,
            &attributes,
            "9876543210123456",
            t0(),
            "projects/p/subscriptions/cloud-builds-push",
        );
        PushMessage::from_body(&serde_json::to_vec(&body).expect("serialize")).expect("envelope")
    }

    fn decode(data: &[u8]) -> Result<BuildNotification, DecodeError> {
        BuildNotification::from_message(&delivered(data, BTreeMap::new()))
    }

    #[test]
    fn decodes_real_capture_1() {
        let attrs = build_attributes(
            "0d97c63e-a349-4bf7-80d0-8f6e21786d87",
            &BuildStatus::Success,
        );
        let b = BuildNotification::from_message(&delivered(BUILD_1, attrs)).expect("decodes");
        assert_eq!(b.build_id, "0d97c63e-a349-4bf7-80d0-8f6e21786d87");
        assert_eq!(b.status, BuildStatus::Success);
        assert_eq!(b.project_id.unwrap(), "checkpoint-distributor");
        assert_eq!(b.service, None);
        assert_eq!(b.region, None);
        assert_eq!(
            b.log_url.as_deref(),
            Some(
                "https://console.cloud.google.com/cloud-build/builds;region=us-central1/0d97c63e-a349-4bf7-80d0-8f6e21786d87?project=39300730911"
            ),
            "the build's log URL is kept for its decision records"
        );
    }

    #[test]
    fn decodes_real_capture_2() {
        let b = decode(BUILD_2).expect("decodes");
        assert_eq!(b.build_id, "BUILD_ID");
        assert_eq!(b.status, BuildStatus::Success);
        // The capture's placeholder project is not a project id; a build naming no service
        // needs none, so it is dropped rather than refused.
        assert_eq!(b.project_id, None);
        assert_eq!(b.service, None);
    }

    #[test]
    fn decodes_wire_reference_example_with_service() {
        let b = decode(BUILD_WITH_SERVICE).expect("decodes");
        assert_eq!(b.service.unwrap(), "api");
        assert_eq!(b.project_id.unwrap(), "acme-prod");
        assert_eq!(b.region, None);
    }

    #[test]
    fn app_engine_and_url_map_substitutions_name_global_targets() {
        let with = |subs: Value| {
            let data = json!({"id": "b1", "projectId": "acme", "status": "SUCCESS", "substitutions": subs});
            decode(&serde_json::to_vec(&data).expect("serialize"))
        };
        let b = with(json!({
            "_APPENGINE_SERVICE": "default", "_APPENGINE_VERSION": "20261205t030000",
            "_URL_MAP": "web-map", "_CANDIDATE_BACKEND": "web-green",
        }))
        .expect("decodes");
        let targets: Vec<String> = b
            .targets()
            .iter()
            .map(|n| format!("{}:{}:{:?}", n.platform, n.service, n.region))
            .collect();
        assert_eq!(
            targets,
            ["app-engine:default:None", "load-balancer:web-map:None"]
        );
        assert_eq!(b.global[0].candidate.as_deref(), Some("20261205t030000"));
        assert_eq!(b.global[1].candidate.as_deref(), Some("web-green"));

        // Beside a Cloud Run service: both are targets.
        let b = with(json!({"_SERVICE_NAME": "api", "_REGION": "us-east4", "_URL_MAP": "web-map"}))
            .expect("decodes");
        assert_eq!(b.targets().len(), 2);
        assert_eq!(b.targets()[0].platform, Platform::CloudRun);

        for bad in [
            json!({"_APPENGINE_SERVICE": "Bad_Service"}),
            json!({"_URL_MAP": "web-map", "_CANDIDATE_BACKEND": "web green"}),
            json!({"_APPENGINE_SERVICE": "default", "_APPENGINE_VERSION": "V1"}),
        ] {
            let e = with(bad.clone()).expect_err("a typo'd substitution is refused");
            assert!(e.to_string().contains("substitution _"), "{bad}: {e}");
        }
        let data = json!({"id": "b1", "projectId": "Evil/Project", "status": "SUCCESS", "substitutions": {"_URL_MAP": "m"}});
        assert!(
            decode(&serde_json::to_vec(&data).unwrap()).is_err(),
            "its project is checked"
        );
    }

    #[test]
    fn service_and_region_precedence() {
        let with = |subs: Value| {
            let data = json!({"id": "b1", "status": "SUCCESS", "substitutions": subs});
            decode(&serde_json::to_vec(&data).expect("serialize")).expect("decodes")
        };
        let b = with(
            json!({"_SERVICE_NAME": " api ", "_DEPLOY_REGION": "europe-west1", "_REGION": "us-central1"}),
        );
        assert_eq!(b.service.unwrap(), "api");
        assert_eq!(b.region.unwrap(), "europe-west1");

        let b =
            with(json!({"_SERVICE_NAME": "api", "_DEPLOY_REGION": "  ", "_REGION": "us-central1"}));
        assert_eq!(b.region.unwrap(), "us-central1");

        let b = with(json!({"_SERVICE_NAME": "api", "_REGION": "us-east4"}));
        assert_eq!(b.region.unwrap(), "us-east4");

        let b = with(json!({"_SERVICE_NAME": "   "}));
        assert_eq!(b.service, None);
        assert_eq!(b.region, None);
    }

    #[test]
    fn non_json_data_is_rejected() {
        let err = decode(b"ckmcslkmcsiocm").expect_err("not json");
        assert!(
            err.reason().starts_with("message data is not JSON"),
            "{err}"
        );
        let err = decode(b"").expect_err("empty");
        assert!(
            err.reason().starts_with("message data is not JSON"),
            "{err}"
        );
        let err = decode(b"[1]").expect_err("array");
        assert_eq!(err.reason(), "message data is not a JSON object");
    }

    #[test]
    fn missing_id_is_rejected_unless_attribute_has_it() {
        let data = br#"{"status":"WORKING"}"#;
        assert_eq!(decode(data).expect_err("no id").reason(), "build has no id");
        let attrs = build_attributes("from-attr", &BuildStatus::Working);
        let b = BuildNotification::from_message(&delivered(data, attrs)).expect("decodes");
        assert_eq!(b.build_id, "from-attr");
        assert_eq!(b.status, BuildStatus::Working);
    }

    #[test]
    fn an_id_that_cannot_be_a_build_id_is_refused_with_a_short_preview() {
        for id in [
            "x".repeat(700_000),
            "b-1\n2026-08-20T10:00:00Z INFO forged".to_owned(),
            "b-1\u{1b}[2J".to_owned(),
        ] {
            let data =
                json!({"id": id, "status": "SUCCESS", "substitutions": {"_SERVICE_NAME": "api"}});
            let err = decode(&serde_json::to_vec(&data).expect("serialize")).expect_err("refused");
            assert!(err.reason().starts_with("build id "), "{err}");
            assert!(err.reason().len() < 200, "{} bytes", err.reason().len());
            assert!(!err.reason().chars().any(char::is_control), "{err:?}");
        }
        // The attribute is held to the same rule.
        let attrs = build_attributes("b 1", &BuildStatus::Success);
        assert!(BuildNotification::from_message(&delivered(b"{}", attrs)).is_err());
    }

    #[test]
    fn a_build_naming_a_service_needs_a_valid_project() {
        let data = json!({"id": "b1", "projectId": "Evil/Project", "status": "SUCCESS", "substitutions": {"_SERVICE_NAME": "api"}});
        let err = decode(&serde_json::to_vec(&data).expect("serialize")).expect_err("bad project");
        assert!(err.reason().contains("project id"), "{err}");
    }

    #[test]
    fn status_falls_back_to_attribute_then_default() {
        let data = br#"{"id":"b1"}"#;
        let b = BuildNotification::from_message(&delivered(
            data,
            build_attributes("b1", &BuildStatus::Queued),
        ))
        .expect("decodes");
        assert_eq!(b.status, BuildStatus::Queued);
        let b = decode(data).expect("decodes");
        assert_eq!(b.status, BuildStatus::Unknown("STATUS_UNKNOWN".to_owned()));
    }

    #[test]
    fn invalid_service_name_is_rejected() {
        for bad in [
            "API",
            "my_service",
            "-api",
            "api-",
            "9lives",
            &"a".repeat(50),
            "a/../../b",
        ] {
            let data =
                json!({"id": "b1", "status": "SUCCESS", "substitutions": {"_SERVICE_NAME": bad}});
            let err = decode(&serde_json::to_vec(&data).expect("serialize")).expect_err(bad);
            assert!(
                err.reason().contains("Cloud Run service name")
                    && err.reason().contains("is not valid"),
                "{err}"
            );
        }
    }

    #[test]
    fn invalid_region_is_rejected_only_with_a_service() {
        let data = json!({"id": "b1", "status": "SUCCESS", "substitutions": {"_SERVICE_NAME": "api", "_DEPLOY_REGION": "us-central1/../x"}});
        let err = decode(&serde_json::to_vec(&data).expect("serialize")).expect_err("bad region");
        assert!(err.reason().contains("region"), "{err}");
        assert!(err.reason().contains("_DEPLOY_REGION"), "{err}");
        let data = json!({"id": "b1", "status": "SUCCESS", "substitutions": {"_REGION": "EU"}});
        let b = decode(&serde_json::to_vec(&data).expect("serialize")).expect("no service");
        assert_eq!(
            b.region, None,
            "an unusable region is dropped when nothing uses it"
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(BuildStatus::from_name("SUCCESS"), BuildStatus::Success);
        assert_eq!(
            BuildStatus::from_name("internal_error"),
            BuildStatus::InternalError
        );
        assert_eq!(
            BuildStatus::from_name("APPROVAL_REQUIRED"),
            BuildStatus::Unknown("APPROVAL_REQUIRED".to_owned())
        );
        let b = decode(br#"{"id":"b1","status":"FLUMMOXED"}"#).expect("decodes");
        assert_eq!(b.status, BuildStatus::Unknown("FLUMMOXED".to_owned()));
        let b = decode(br#"{"id":"b1","status":4}"#).expect("decodes");
        assert_eq!(b.status, BuildStatus::Failure);
        for s in [
            BuildStatus::Pending,
            BuildStatus::Queued,
            BuildStatus::Working,
            BuildStatus::Success,
            BuildStatus::Failure,
            BuildStatus::InternalError,
            BuildStatus::Timeout,
            BuildStatus::Cancelled,
            BuildStatus::Expired,
        ] {
            assert_eq!(BuildStatus::from_name(s.as_str()), s);
            assert_eq!(s.to_string(), s.as_str());
        }
        assert!(BuildStatus::Success.is_terminal());
        assert!(BuildStatus::Expired.is_terminal());
        assert!(!BuildStatus::Working.is_terminal());
        assert!(!BuildStatus::Unknown("X".to_owned()).is_terminal());
    }

    #[test]
    fn encode_build_round_trips() {
        for status in [
            BuildStatus::Queued,
            BuildStatus::Working,
            BuildStatus::Success,
            BuildStatus::Failure,
        ] {
            let data = encode_build("b-42", &status, "acme-prod", "api", "us-central1", t0());
            let msg = delivered(&data, build_attributes("b-42", &status));
            let b = BuildNotification::from_message(&msg).expect("decodes");
            assert_eq!(b.build_id, "b-42");
            assert_eq!(b.status, status);
            assert_eq!(b.project_id.unwrap(), "acme-prod");
            assert_eq!(b.service.unwrap(), "api");
            assert_eq!(b.region.unwrap(), "us-central1");
            let v: Value = serde_json::from_slice(&data).expect("json");
            assert_eq!(v["finishTime"].is_string(), status.is_terminal());
            assert_eq!(v["createTime"], "2026-08-20T10:04:03.509Z");
        }
    }

    proptest! {
        #[test]
        fn never_panics(data in crate::events::envelope::tests::arb_json(), attrs in prop::collection::btree_map("buildId|status|x", ".{0,8}", 0..3)) {
            let bytes = serde_json::to_vec(&json!({"id": data.clone(), "status": data.clone(), "substitutions": data.clone()})).expect("serialize");
            let _ = BuildNotification::from_message(&delivered(&bytes, attrs.clone()));
            let bytes = serde_json::to_vec(&data).expect("serialize");
            let _ = BuildNotification::from_message(&delivered(&bytes, attrs));
        }
    }
}
