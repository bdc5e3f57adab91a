//! Sends Pub/Sub push requests to a cutover server, the way Pub/Sub would.
//!
//! The demo and the tests drive cutover only through its real HTTP endpoints with real push
//! envelopes: Cloud Build notifications, Monitoring incidents and Scheduler ticks, encoded as
//! their producers encode them. With a [`PushSigner`], each push also carries the OIDC token
//! Pub/Sub would attach: signed with the test key, for the audience of the endpoint it is sent
//! to (`<base>/builds`, `<base>/alerts`, `<base>/ticks`), valid for one hour.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::clock::FakeClock;
use crate::encode::{build_attributes, encode_build, encode_push};
use crate::oidc;

/// The answer to one push.
#[derive(Debug)]
pub struct Pushed {
    pub status: u16,
    pub body: Value,
}

/// Mints the token Pub/Sub attaches to a push, with the test key (see [`oidc`]).
#[derive(Clone, Debug)]
pub struct PushSigner {
    /// The base audience (`CUTOVER_PUSH_AUDIENCE`); each endpoint's is `<base>/<endpoint>`.
    pub audience: String,
    /// The push service account (`email` claim).
    pub email: String,
    /// Tokens are issued at this clock's now and expire an hour later.
    pub clock: FakeClock,
}

impl PushSigner {
    /// `Bearer <token>` for a push to the endpoint named `endpoint` (`builds`, `alerts`,
    /// `ticks`): its audience is `<base>/<endpoint>`.
    pub fn authorization(&self, endpoint: &str) -> String {
        let now = self.clock.now().as_second();
        let audience = format!("{}/{endpoint}", self.audience.trim_end_matches('/'));
        let claims = oidc::google_claims(&audience, &self.email, now, now + 3600);
        oidc::bearer(&oidc::sign(&claims))
    }
}

/// Posts push envelopes to one cutover server.
pub struct Pusher {
    http: reqwest::Client,
    base: String,
    project: String,
    next_id: AtomicU64,
    /// Sent as `Authorization` on every push when set (it wins over `signer`).
    pub authorization: Option<String>,
    /// Signs every push to a push endpoint, for that endpoint, when set.
    pub signer: Option<PushSigner>,
}

impl Pusher {
    /// A pusher for the server at `base` (`http://127.0.0.1:PORT`), naming subscriptions in
    /// `project`.
    pub fn new(base: &str, project: &str) -> Self {
        Pusher {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            project: project.to_string(),
            next_id: AtomicU64::new(1_000_000),
            authorization: None,
            signer: None,
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn message_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// Posts a raw body to `path`.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Result<Pushed, String> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        let signed = self
            .signer
            .as_ref()
            .and_then(|s| push_endpoint(path).map(|endpoint| s.authorization(endpoint)));
        if let Some(a) = self.authorization.clone().or(signed) {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.map_err(|e| format!("POST {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| format!("POST {path}: {e}"))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Pushed { status, body })
    }

    /// Posts a push envelope carrying `data` and `attributes`.
    pub async fn push(
        &self,
        path: &str,
        subscription: &str,
        data: &[u8],
        attributes: &BTreeMap<String, String>,
        at: Timestamp,
    ) -> Result<Pushed, String> {
        let sub = format!("projects/{}/subscriptions/{subscription}", self.project);
        let envelope = encode_push(data, attributes, &self.message_id(), at, &sub);
        self.post_raw(path, serde_json::to_vec(&envelope).unwrap_or_default())
            .await
    }

    /// A Cloud Build notification for a build that deployed `service` in `region`.
    pub async fn build(
        &self,
        service: &str,
        region: &str,
        status: &str,
        at: Timestamp,
    ) -> Result<Pushed, String> {
        let build_id = format!("b{:07x}-demo", self.next_id.load(Ordering::Relaxed));
        let data = encode_build(&build_id, status, &self.project, service, region, at);
        self.push(
            "/pubsub/builds",
            "cutover-builds",
            &data,
            &build_attributes(&build_id, status),
            at,
        )
        .await
    }

    /// A Cloud Scheduler tick.
    pub async fn tick(&self, at: Timestamp) -> Result<Pushed, String> {
        let attrs = BTreeMap::from([("source".to_string(), "scheduler".to_string())]);
        self.push(
            "/pubsub/ticks",
            "cutover-ticks",
            br#"{"kind":"tick"}"#,
            &attrs,
            at,
        )
        .await
    }

    /// A Monitoring incident (schema 1.2) on a Cloud Run revision, `open` or `closed`.
    pub async fn alert(
        &self,
        service: &str,
        revision: &str,
        region: &str,
        state: &str,
        at: Timestamp,
    ) -> Result<Pushed, String> {
        let data = incident(&self.project, service, revision, region, state, at);
        self.push(
            "/pubsub/alerts",
            "cutover-alerts",
            &serde_json::to_vec(&data).unwrap_or_default(),
            &BTreeMap::new(),
            at,
        )
        .await
    }
}

/// The push endpoint served at `path` (`/pubsub/builds` → `builds`), if it is one.
fn push_endpoint(path: &str) -> Option<&str> {
    path.strip_prefix("/pubsub/")
        .filter(|name| ["builds", "alerts", "ticks"].contains(name))
}

/// A schema-1.2 Monitoring incident (the decoded `data` of an alert push) about `revision` of
/// Cloud Run service `service`, opened at `at` (`state` `open` or `closed`).
pub fn incident(
    project: &str,
    service: &str,
    revision: &str,
    region: &str,
    state: &str,
    at: Timestamp,
) -> Value {
    incident_on(
        &AlertSubject {
            project,
            resource_type: "cloud_run_revision",
            resource_labels: &[
                ("project_id", project),
                ("service_name", service),
                ("revision_name", revision),
                ("location", region),
                ("configuration_name", service),
            ],
            resource_type_display_name: "Cloud Run Revision",
            metric: ("run.googleapis.com/request_count", "Request Count"),
            metric_labels: &[("response_code_class", "5xx")],
            name_labels: &[("revision_name", revision), ("service_name", service)],
            policy_label: ("service_name", service),
            service,
            member: revision,
        },
        state,
        at,
    )
}

/// The same about `version` of App Engine service `service` (resource `gae_app`, metric
/// `appengine.googleapis.com/http/server/response_count`, `response_code` 500).
pub fn app_engine_incident(
    project: &str,
    service: &str,
    version: &str,
    state: &str,
    at: Timestamp,
) -> Value {
    incident_on(
        &AlertSubject {
            project,
            resource_type: "gae_app",
            resource_labels: &[
                ("project_id", project),
                ("module_id", service),
                ("version_id", version),
                ("zone", "us-central1"),
            ],
            resource_type_display_name: "GAE Application",
            metric: (
                "appengine.googleapis.com/http/server/response_count",
                "Response count",
            ),
            metric_labels: &[("response_code", "500")],
            name_labels: &[("module_id", service), ("version_id", version)],
            policy_label: ("module_id", service),
            service,
            member: version,
        },
        state,
        at,
    )
}

/// The same about backend service `backend` behind URL map `map` (resource `https_lb_rule`,
/// metric `loadbalancing.googleapis.com/https/backend_request_count`, `response_code_class`
/// 500).
pub fn url_map_incident(
    project: &str,
    map: &str,
    backend: &str,
    state: &str,
    at: Timestamp,
) -> Value {
    let forwarding_rule = format!("{map}-https");
    let proxy = format!("{map}-proxy");
    incident_on(
        &AlertSubject {
            project,
            resource_type: "https_lb_rule",
            resource_labels: &[
                ("project_id", project),
                ("region", "global"),
                ("url_map_name", map),
                ("forwarding_rule_name", &forwarding_rule),
                ("target_proxy_name", &proxy),
                ("matched_url_path_rule", "UNMATCHED"),
                ("backend_target_name", backend),
                ("backend_target_type", "BACKEND_SERVICE"),
            ],
            resource_type_display_name: "Application Load Balancer Rule",
            metric: (
                "loadbalancing.googleapis.com/https/backend_request_count",
                "Backend request count",
            ),
            metric_labels: &[("response_code_class", "500")],
            name_labels: &[("backend_target_name", backend), ("url_map_name", map)],
            policy_label: ("url_map_name", map),
            service: map,
            member: backend,
        },
        state,
        at,
    )
}

/// What an incident is about.
struct AlertSubject<'a> {
    project: &'a str,
    resource_type: &'a str,
    resource_labels: &'a [(&'a str, &'a str)],
    resource_type_display_name: &'a str,
    /// (type, display name).
    metric: (&'a str, &'a str),
    metric_labels: &'a [(&'a str, &'a str)],
    /// The labels a resource's name shows (`… labels {k=v, …}`).
    name_labels: &'a [(&'a str, &'a str)],
    /// The resource label the alert policy filters on.
    policy_label: (&'a str, &'a str),
    /// The target (service or URL map) the policy watches, and the member that fails.
    service: &'a str,
    member: &'a str,
}

fn incident_on(subject: &AlertSubject<'_>, state: &str, at: Timestamp) -> Value {
    let AlertSubject {
        project, service, ..
    } = *subject;
    let started = at.as_second();
    let labels = |pairs: &[(&str, &str)]| -> serde_json::Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect()
    };
    let braces = |pairs: &[(&str, &str)]| -> String {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let resource_name = format!(
        "{project} {} labels {{{}}}",
        subject.resource_type_display_name,
        braces(subject.name_labels)
    );
    let (policy_key, policy_value) = subject.policy_label;
    let filter = [
        format!("resource.type = \"{}\"", subject.resource_type),
        format!("resource.labels.{policy_key} = \"{policy_value}\""),
        format!("metric.type = \"{}\"", subject.metric.0),
    ]
    .into_iter()
    .chain(
        subject
            .metric_labels
            .iter()
            .map(|(k, v)| format!("metric.labels.{k} = \"{v}\"")),
    )
    .collect::<Vec<_>>()
    .join(" AND ");
    json!({
        "incident": {
            "incident_id": format!("0.{}{}", service, started),
            "scoping_project_id": project,
            "scoping_project_number": 123456789012u64,
            "url": format!("https://console.cloud.google.com/monitoring/alerting/alerts/0.{service}?channelType=cloud-pubsub&project={project}"),
            "started_at": started,
            "ended_at": if state == "closed" { json!(started + 300) } else { Value::Null },
            "state": state,
            "summary": format!("{} for {resource_name} with metric labels {{{}}} is above the threshold of 5.000 with a value of 17.000.", subject.metric.1, braces(subject.metric_labels)),
            "observed_value": "17.000",
            "threshold_value": "5",
            "resource": {"type": subject.resource_type, "labels": labels(subject.resource_labels)},
            "resource_type_display_name": subject.resource_type_display_name,
            "resource_id": "",
            "resource_display_name": subject.member,
            "resource_name": resource_name,
            "metric": {"type": subject.metric.0, "displayName": subject.metric.1, "labels": labels(subject.metric_labels)},
            "metadata": {"system_labels": {}, "user_labels": {}},
            "policy_name": format!("{service} 5xx ratio"),
            "policy_user_labels": {"cutover-service": service},
            "documentation": {"content": "The revision is answering 5xx.", "mime_type": "text/markdown", "subject": format!("{service} 5xx")},
            "condition": {
                "name": "projects/p/alertPolicies/1130251226664066904/conditions/1130251226664063323",
                "displayName": "5xx > 5/min",
                "conditionThreshold": {
                    "filter": filter,
                    "comparison": "COMPARISON_GT", "thresholdValue": 5, "duration": "0s", "trigger": {"count": 1}
                }
            },
            "condition_name": "5xx > 5/min",
            "severity": "Error"
        },
        "version": "1.2"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        "2026-08-20T10:00:00Z".parse().unwrap()
    }

    /// The Cloud Run incident names the revision and filters by service, as real policies do.
    #[test]
    fn a_cloud_run_incident() {
        let i = &incident(
            "acme-prod",
            "api",
            "api-00002-def",
            "us-central1",
            "open",
            at(),
        )["incident"];
        assert_eq!(i["resource"]["type"], "cloud_run_revision");
        assert_eq!(i["resource"]["labels"]["revision_name"], "api-00002-def");
        assert_eq!(
            i["summary"],
            "Request Count for acme-prod Cloud Run Revision labels {revision_name=api-00002-def, \
             service_name=api} with metric labels {response_code_class=5xx} is above the \
             threshold of 5.000 with a value of 17.000."
        );
        assert_eq!(
            i["condition"]["conditionThreshold"]["filter"],
            "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"api\" AND \
             metric.type = \"run.googleapis.com/request_count\" AND \
             metric.labels.response_code_class = \"5xx\""
        );
        assert_eq!(i["ended_at"], Value::Null);
    }

    /// The App Engine and load-balancer incidents carry their resources' labels.
    #[test]
    fn incidents_of_the_other_platforms() {
        let ae = &app_engine_incident("acme-prod", "web", "v2", "closed", at())["incident"];
        assert_eq!(ae["resource"]["type"], "gae_app");
        assert_eq!(ae["resource"]["labels"]["module_id"], "web");
        assert_eq!(ae["resource"]["labels"]["version_id"], "v2");
        assert!(ae["ended_at"].is_number());
        let lb = &url_map_incident("acme-prod", "web", "green", "open", at())["incident"];
        assert_eq!(lb["resource"]["type"], "https_lb_rule");
        assert_eq!(lb["resource"]["labels"]["url_map_name"], "web");
        assert_eq!(lb["resource"]["labels"]["backend_target_name"], "green");
        assert_eq!(lb["metric"]["labels"]["response_code_class"], "500");
        assert!(
            lb["condition"]["conditionThreshold"]["filter"]
                .as_str()
                .unwrap()
                .contains("resource.labels.url_map_name = \"web\"")
        );
    }
}
