//! Pub/Sub push deliveries and Cloud Build notifications, encoded the way their producers encode
//! them, for whatever drives cutover over HTTP (tests, the pusher, the demo, the fuzz targets).
//! Written from the wire (docs/gcp-wire.md and the captures in `tests/fixtures/payloads/`):
//! statuses are Cloud Build's enum names (`"SUCCESS"`, `"WORKING"`, …).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

/// Cloud Build statuses after which a build no longer changes.
const TERMINAL: [&str; 6] = [
    "SUCCESS",
    "FAILURE",
    "INTERNAL_ERROR",
    "TIMEOUT",
    "CANCELLED",
    "EXPIRED",
];

/// Builds a push request body in the exact shape Pub/Sub sends (for tests, fakes and the demo).
///
/// Both id spellings and both time spellings are present, as in real deliveries; the time has
/// Google's protobuf JSON precision (no fraction, or exactly 3 digits, truncated to the
/// millisecond); `attributes` and `data` are omitted when empty; `data` is standard base64 with
/// padding.
pub fn encode_push(
    data: &[u8],
    attributes: &BTreeMap<String, String>,
    message_id: &str,
    publish_time: Timestamp,
    subscription: &str,
) -> Value {
    let time = format_publish_time(publish_time);
    let mut message = Map::new();
    if !attributes.is_empty() {
        message.insert("attributes".to_owned(), json!(attributes));
    }
    if !data.is_empty() {
        message.insert("data".to_owned(), json!(STANDARD.encode(data)));
    }
    message.insert("messageId".to_owned(), json!(message_id));
    message.insert("message_id".to_owned(), json!(message_id));
    message.insert("publishTime".to_owned(), json!(time));
    message.insert("publish_time".to_owned(), json!(time));
    json!({ "message": message, "subscription": subscription })
}

fn format_publish_time(t: Timestamp) -> String {
    let precision = if t.subsec_millisecond() == 0 { 0 } else { 3 };
    jiff::fmt::temporal::DateTimePrinter::new()
        .precision(Some(precision))
        .timestamp_to_string(&t)
}

/// The attributes Cloud Build puts on its notifications (`buildId`, `status`), for building
/// realistic envelopes with [`encode_push`].
pub fn build_attributes(build_id: &str, status: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("buildId".to_owned(), build_id.to_owned()),
        ("status".to_owned(), status.to_owned()),
    ])
}

/// What a build deploys, for [`encode_build_with`]: its repository and trigger name, where it
/// runs, its steps, the image it pushes (if any) and the substitutions it adds to the trigger's
/// usual ones.
#[derive(Clone, Debug)]
pub struct BuildSpec {
    /// Repository and trigger name (`deploy-{name}`).
    pub name: String,
    /// The build's region (`global` for a build that runs in no region).
    pub region: String,
    pub steps: Value,
    /// The image the build pushes (`images`, `results.images`), if any.
    pub image: Option<String>,
    /// Added to the trigger's built-in substitutions (`_SERVICE_NAME`, `_APPENGINE_SERVICE`, …).
    pub substitutions: Vec<(String, String)>,
}

const COMMIT: &str = "3c1f0a9e5d27b84f6a0c9e1d2b3a4f5e6d7c8b9a";

/// Builds a realistic Cloud Build `Build` JSON (the shape of a real trigger build that ends in
/// `gcloud run deploy --no-traffic`) for tests, fakes and the demo.
///
/// `projectId` is `project_id`, the substitutions include `_SERVICE_NAME` = `service` and
/// `_DEPLOY_REGION` = `region` next to the usual trigger substitutions, and `createTime` is
/// `create_time`. `startTime` is present once the build has started and `finishTime` and
/// `results` once it is terminal, as in real notifications.
pub fn encode_build(
    build_id: &str,
    status: &str,
    project_id: &str,
    service: &str,
    region: &str,
    create_time: Timestamp,
) -> Vec<u8> {
    let image = format!(
        "{region}-docker.pkg.dev/{project_id}/apps/{service}:{}",
        &COMMIT[..7]
    );
    let spec = BuildSpec {
        name: service.to_string(),
        region: region.to_string(),
        steps: json!([
            {"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", image, "."]},
            {"name": "gcr.io/cloud-builders/docker", "args": ["push", image]},
            {"name": "gcr.io/google.com/cloudsdktool/cloud-sdk", "entrypoint": "gcloud",
             "args": ["run", "deploy", service, "--image", image, "--region", region, "--no-traffic"]}
        ]),
        image: Some(image),
        substitutions: vec![
            ("_SERVICE_NAME".into(), service.into()),
            ("_DEPLOY_REGION".into(), region.into()),
        ],
    };
    encode_build_with(build_id, status, project_id, &spec, create_time)
}

/// A build that ends in `gcloud app deploy --no-promote --version={version}` of App Engine
/// service `service`, with substitutions `_APPENGINE_SERVICE` and `_APPENGINE_VERSION` (the names
/// issue 15 suggests; cutover's events decide which it reads).
pub fn encode_app_engine_build(
    build_id: &str,
    status: &str,
    project_id: &str,
    service: &str,
    version: &str,
    create_time: Timestamp,
) -> Vec<u8> {
    let spec = BuildSpec {
        name: service.to_string(),
        region: "global".to_string(),
        steps: json!([
            {"name": "gcr.io/google.com/cloudsdktool/cloud-sdk", "entrypoint": "gcloud",
             "args": ["app", "deploy", "app.yaml", "--project", project_id, "--version", version, "--no-promote", "--quiet"]}
        ]),
        image: None,
        substitutions: vec![
            ("_APPENGINE_SERVICE".into(), service.into()),
            ("_APPENGINE_VERSION".into(), version.into()),
        ],
    };
    encode_build_with(build_id, status, project_id, &spec, create_time)
}

/// A build that rolls the managed instance group behind backend service `backend` to a new
/// instance template `{map}-{build_id}` (as `examples/mig-cloudbuild.yaml` names them), with
/// substitutions `_URL_MAP` and `_CANDIDATE_BACKEND` (docs/platforms.md; an empty candidate means
/// "the backend at weight 0").
pub fn encode_url_map_build(
    build_id: &str,
    status: &str,
    project_id: &str,
    map: &str,
    backend: &str,
    create_time: Timestamp,
) -> Vec<u8> {
    let template = format!("{map}-{build_id}");
    let spec = BuildSpec {
        name: map.to_string(),
        region: "global".to_string(),
        steps: json!([
            {"name": "gcr.io/google.com/cloudsdktool/cloud-sdk", "entrypoint": "gcloud",
             "args": ["compute", "instance-templates", "create", template, "--project", project_id,
                      "--machine-type", "e2-small", "--image-family", "debian-12", "--image-project", "debian-cloud"]},
            {"name": "gcr.io/google.com/cloudsdktool/cloud-sdk", "entrypoint": "gcloud",
             "args": ["compute", "instance-groups", "managed", "rolling-action", "start-update",
                      format!("{backend}-mig"), "--version", format!("template={template}"),
                      "--zone", "us-central1-a", "--project", project_id]}
        ]),
        image: None,
        substitutions: vec![
            ("_URL_MAP".into(), map.into()),
            ("_CANDIDATE_BACKEND".into(), backend.into()),
        ],
    };
    encode_build_with(build_id, status, project_id, &spec, create_time)
}

/// The `Build` JSON of a trigger build of `spec` (see [`encode_build`] for the fields that follow
/// `status` and `create_time`).
pub fn encode_build_with(
    build_id: &str,
    status: &str,
    project_id: &str,
    spec: &BuildSpec,
    create_time: Timestamp,
) -> Vec<u8> {
    const TRIGGER: &str = "6b1e2f4a-9c3d-4e5f-8a7b-0c1d2e3f4a5b";
    const PROJECT_NUMBER: &str = "123456789012";
    let (service, region) = (spec.name.as_str(), spec.region.as_str());
    let at = |secs: i64| {
        create_time
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .unwrap_or(create_time)
            .to_string()
    };

    let mut build = Map::new();
    build.insert(
        "name".to_owned(),
        json!(format!(
            "projects/{PROJECT_NUMBER}/locations/{region}/builds/{build_id}"
        )),
    );
    build.insert("id".to_owned(), json!(build_id));
    build.insert("projectId".to_owned(), json!(project_id));
    build.insert("status".to_owned(), json!(status));
    build.insert(
        "source".to_owned(),
        json!({"gitSource": {"url": format!("https://github.com/example/{service}.git"), "revision": COMMIT}}),
    );
    build.insert("createTime".to_owned(), json!(at(0)));
    let started = !matches!(status, "PENDING" | "QUEUED" | "EXPIRED");
    if started {
        build.insert("startTime".to_owned(), json!(at(2)));
    }
    if TERMINAL.contains(&status) && started {
        build.insert("finishTime".to_owned(), json!(at(146)));
    }
    build.insert("steps".to_owned(), spec.steps.clone());
    if status == "SUCCESS" {
        let steps = spec.steps.as_array().map_or(0, Vec::len);
        let mut results = json!({"buildStepImages": vec![""; steps]});
        if let Some(image) = &spec.image {
            results["images"] = json!([{"name": image, "digest": "sha256:5b7af4208063e6db28a20a096b0694b5b7af4208063e6db28a20a096b0694b00"}]);
        }
        build.insert("results".to_owned(), results);
    }
    build.insert("timeout".to_owned(), json!("600s"));
    if let Some(image) = &spec.image {
        build.insert("images".to_owned(), json!([image]));
    }
    build.insert("queueTtl".to_owned(), json!("3600s"));
    build.insert("buildTriggerId".to_owned(), json!(TRIGGER));
    build.insert(
        "options".to_owned(),
        json!({"substitutionOption": "ALLOW_LOOSE", "logging": "CLOUD_LOGGING_ONLY", "dynamicSubstitutions": true, "pool": {}}),
    );
    build.insert(
        "logUrl".to_owned(),
        json!(format!(
            "https://console.cloud.google.com/cloud-build/builds;region={region}/{build_id}?project={PROJECT_NUMBER}"
        )),
    );
    let mut substitutions = json!({
        "TRIGGER_NAME": format!("deploy-{service}"),
        "COMMIT_SHA": COMMIT,
        "SHORT_SHA": &COMMIT[..7],
        "REVISION_ID": COMMIT,
        "BRANCH_NAME": "main",
        "REF_NAME": "main",
        "REPO_NAME": service,
        "REPO_FULL_NAME": format!("example/{service}"),
        "TRIGGER_BUILD_CONFIG_PATH": "cloudbuild.yaml",
    });
    for (key, value) in &spec.substitutions {
        substitutions[key.as_str()] = json!(value);
    }
    build.insert("substitutions".to_owned(), substitutions);
    build.insert("tags".to_owned(), json!([format!("trigger-{TRIGGER}")]));
    build.insert(
        "serviceAccount".to_owned(),
        json!(format!(
            "projects/{project_id}/serviceAccounts/cloudbuild-deployer@{project_id}.iam.gserviceaccount.com"
        )),
    );
    // Serializing a `Value` cannot fail; an empty body would be rejected downstream anyway.
    serde_json::to_vec(&Value::Object(build)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn at() -> Timestamp {
        "2026-08-20T10:00:00Z".parse().unwrap()
    }

    /// A Cloud Run build deploys with `--no-traffic` and names service and region.
    #[test]
    fn a_cloud_run_build() {
        let b = build(&encode_build(
            "b1",
            "SUCCESS",
            "acme-prod",
            "api",
            "us-central1",
            at(),
        ));
        assert_eq!(b["substitutions"]["_SERVICE_NAME"], "api");
        assert_eq!(b["substitutions"]["_DEPLOY_REGION"], "us-central1");
        assert_eq!(b["steps"][2]["args"][7], "--no-traffic");
        assert_eq!(b["results"]["buildStepImages"].as_array().unwrap().len(), 3);
        assert!(b["images"][0].as_str().unwrap().ends_with("/api:3c1f0a9"));
    }

    /// The App Engine and load-balancer builds carry their substitutions, push no image, and
    /// keep the trigger's built-in substitutions.
    #[test]
    fn builds_of_the_other_platforms() {
        let ae = build(&encode_app_engine_build(
            "b2",
            "SUCCESS",
            "acme-prod",
            "web",
            "v2",
            at(),
        ));
        assert_eq!(ae["substitutions"]["_APPENGINE_SERVICE"], "web");
        assert_eq!(ae["substitutions"]["_APPENGINE_VERSION"], "v2");
        assert_eq!(ae["substitutions"]["SHORT_SHA"], "3c1f0a9");
        assert!(
            ae["steps"][0]["args"]
                .as_array()
                .unwrap()
                .contains(&json!("--no-promote"))
        );
        assert_eq!(ae.get("images"), None);
        assert_eq!(ae["results"].get("images"), None);
        let lb = build(&encode_url_map_build(
            "b3",
            "WORKING",
            "acme-prod",
            "web",
            "green",
            at(),
        ));
        assert_eq!(lb["substitutions"]["_URL_MAP"], "web");
        assert_eq!(lb["substitutions"]["_CANDIDATE_BACKEND"], "green");
        assert_eq!(lb["steps"][0]["args"][3], "web-b3");
        assert_eq!(lb.get("results"), None);
        assert_eq!(lb["steps"][1]["args"][5], "green-mig");
    }
}
