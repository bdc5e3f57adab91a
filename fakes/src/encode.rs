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
    const COMMIT: &str = "3c1f0a9e5d27b84f6a0c9e1d2b3a4f5e6d7c8b9a";
    const TRIGGER: &str = "6b1e2f4a-9c3d-4e5f-8a7b-0c1d2e3f4a5b";
    const PROJECT_NUMBER: &str = "123456789012";
    let image = format!(
        "{region}-docker.pkg.dev/{project_id}/apps/{service}:{}",
        &COMMIT[..7]
    );
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
    build.insert(
        "steps".to_owned(),
        json!([
            {"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", image, "."]},
            {"name": "gcr.io/cloud-builders/docker", "args": ["push", image]},
            {"name": "gcr.io/google.com/cloudsdktool/cloud-sdk", "entrypoint": "gcloud",
             "args": ["run", "deploy", service, "--image", image, "--region", region, "--no-traffic"]}
        ]),
    );
    if status == "SUCCESS" {
        build.insert(
            "results".to_owned(),
            json!({"images": [{"name": image, "digest": "sha256:5b7af4208063e6db28a20a096b0694b5b7af4208063e6db28a20a096b0694b00"}],
                   "buildStepImages": ["", "", ""]}),
        );
    }
    build.insert("timeout".to_owned(), json!("600s"));
    build.insert("images".to_owned(), json!([image]));
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
    build.insert(
        "substitutions".to_owned(),
        json!({
            "TRIGGER_NAME": format!("deploy-{service}"),
            "COMMIT_SHA": COMMIT,
            "SHORT_SHA": &COMMIT[..7],
            "REVISION_ID": COMMIT,
            "BRANCH_NAME": "main",
            "REF_NAME": "main",
            "REPO_NAME": service,
            "REPO_FULL_NAME": format!("example/{service}"),
            "TRIGGER_BUILD_CONFIG_PATH": "cloudbuild.yaml",
            "_SERVICE_NAME": service,
            "_DEPLOY_REGION": region,
        }),
    );
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
