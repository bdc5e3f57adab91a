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

/// A Monitoring incident about a Cloud Run revision, shaped like real schema 1.2 notifications.
pub fn incident(
    project: &str,
    service: &str,
    revision: &str,
    region: &str,
    state: &str,
    at: Timestamp,
) -> Value {
    let started = at.as_second();
    json!({
        "incident": {
            "incident_id": format!("0.{}{}", service, started),
            "scoping_project_id": project,
            "scoping_project_number": 123456789012u64,
            "url": format!("https://console.cloud.google.com/monitoring/alerting/alerts/0.{service}?channelType=cloud-pubsub&project={project}"),
            "started_at": started,
            "ended_at": if state == "closed" { json!(started + 300) } else { Value::Null },
            "state": state,
            "summary": format!("Request Count for {project} Cloud Run Revision labels {{revision_name={revision}, service_name={service}}} with metric labels {{response_code_class=5xx}} is above the threshold of 5.000 with a value of 17.000."),
            "observed_value": "17.000",
            "threshold_value": "5",
            "resource": {"type": "cloud_run_revision", "labels": {
                "project_id": project, "service_name": service, "revision_name": revision,
                "location": region, "configuration_name": service}},
            "resource_type_display_name": "Cloud Run Revision",
            "resource_id": "",
            "resource_display_name": revision,
            "resource_name": format!("{project} Cloud Run Revision labels {{revision_name={revision}, service_name={service}}}"),
            "metric": {"type": "run.googleapis.com/request_count", "displayName": "Request Count", "labels": {"response_code_class": "5xx"}},
            "metadata": {"system_labels": {}, "user_labels": {}},
            "policy_name": format!("{service} 5xx ratio"),
            "policy_user_labels": {"cutover-service": service},
            "documentation": {"content": "The revision is answering 5xx.", "mime_type": "text/markdown", "subject": format!("{service} 5xx")},
            "condition": {
                "name": "projects/p/alertPolicies/1130251226664066904/conditions/1130251226664063323",
                "displayName": "5xx > 5/min",
                "conditionThreshold": {
                    "filter": format!("resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"{service}\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\""),
                    "comparison": "COMPARISON_GT", "thresholdValue": 5, "duration": "0s", "trigger": {"count": 1}
                }
            },
            "condition_name": "5xx > 5/min",
            "severity": "Error"
        },
        "version": "1.2"
    })
}
