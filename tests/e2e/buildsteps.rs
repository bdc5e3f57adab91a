//! Builds that name their services only in their deploy steps (`gcloud run deploy NAME
//! --region R --no-traffic`, no `_SERVICE_NAME`): each such step starts that service's rollout,
//! in its own region, and a step that already gave its revision all traffic starts none.

use cutover_fakes::encode::build_attributes;
use cutover_fakes::pusher::Pushed;
use serde_json::{Value, json};

use crate::helpers::*;

/// The second region these tests' cutover evaluates, beside [`REGION`] (its default).
const OTHER_REGION: &str = "us-central1";

/// cutover evaluating both regions, the default one being [`REGION`].
async fn app() -> TestApp {
    let regions = format!("{REGION},{OTHER_REGION}");
    spawn_app(&["--regions", &regions]).await
}

/// The captured Cloud Build notification (no `_SERVICE_NAME`; its last step
/// `gcloud run deploy distributor-service-dev --image … --region us-central1`), moved to the
/// tests' project, with `deploy_args` as that step's arguments.
fn captured_build(build_id: &str, deploy_args: Value) -> Value {
    let mut build: Value =
        serde_json::from_slice(cutover_fakes::fixture!("payloads/cloudbuild-1.json"))
            .expect("the capture is JSON");
    build["id"] = json!(build_id);
    build["projectId"] = json!(PROJECT);
    build["steps"][2]["args"] = deploy_args;
    build
}

/// The captured deploy step's own arguments, with `extra` appended.
fn captured_args(extra: &[&str]) -> Value {
    let mut args = json!([
        "run",
        "deploy",
        "distributor-service-dev",
        "--image",
        "us-central1-docker.pkg.dev/checkpoint-distributor/distributor-docker-dev/distributor:latest",
        "--region",
        "us-central1"
    ]);
    let list = args.as_array_mut().expect("an array");
    list.extend(extra.iter().map(|a| json!(a)));
    args
}

async fn push_build(t: &TestApp, build: &Value) -> Pushed {
    let data = serde_json::to_vec(build).expect("serialize");
    let id = build["id"].as_str().expect("an id");
    t.push
        .push(
            "/pubsub/builds",
            "cutover-builds",
            &data,
            &build_attributes(id, "SUCCESS"),
            t.clock.now(),
        )
        .await
        .expect("cutover answers")
}

/// A service in `region` serving 100% on its stable revision, with a candidate deployed
/// without traffic.
fn deployed(t: &TestApp, region: &str, service: &str) {
    t.deployed_in(PROJECT, region, service);
}

/// The candidate's share after each traffic change of `service` in `region`, from 0.
fn steps(t: &TestApp, region: &str, service: &str) -> Vec<u8> {
    let mut out = t.candidate_steps_in(region, service);
    if out.first() != Some(&0) {
        out.insert(0, 0);
    }
    out
}

/// Asserts that `p` was acknowledged (200) with `outcome` (`handled`, `ignored`).
fn assert_acked(p: &Pushed, outcome: &str) {
    assert_eq!(
        (p.status, p.body["outcome"].as_str()),
        (200, Some(outcome)),
        "{}",
        p.body
    );
}

#[tokio::test]
async fn a_build_shaped_like_the_captured_one_starts_the_rollout_in_the_steps_region() {
    let t = app().await;
    // The same service name in the default region: the step's --region must be the one used.
    deployed(&t, OTHER_REGION, "distributor-service-dev");
    deployed(&t, REGION, "distributor-service-dev");
    let build = captured_build("b-captured-1", captured_args(&["--no-traffic"]));
    let p = push_build(&t, &build).await;
    assert_acked(&p, "handled");
    assert_eq!(steps(&t, OTHER_REGION, "distributor-service-dev"), [0, 10]);
    assert_eq!(
        steps(&t, REGION, "distributor-service-dev"),
        [0],
        "the default region is untouched"
    );
    let decisions = p.body["decisions"].as_array().expect("decisions");
    assert!(
        decisions.iter().any(|d| d["service"]
            .as_str()
            .is_some_and(|s| s.contains("us-central1") && s.contains("distributor-service-dev"))),
        "{}",
        p.body
    );
}

#[tokio::test]
async fn a_build_with_two_deploy_steps_starts_two_rollouts() {
    let t = app().await;
    deployed(&t, REGION, "api");
    deployed(&t, OTHER_REGION, "worker");
    let mut build = captured_build("b-two-1", captured_args(&["--no-traffic"]));
    build["substitutions"]["_DEPLOY_REGION"] = json!(REGION);
    build["steps"] = json!([
        {"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", "img", "."]},
        // No --region: the build's _DEPLOY_REGION.
        {"name": "gcr.io/google.com/cloudsdktool/cloud-sdk:slim", "entrypoint": "gcloud",
         "args": ["run", "deploy", "api", "--image", "img", "--no-traffic"]},
        {"name": "gcr.io/google.com/cloudsdktool/cloud-sdk:slim", "entrypoint": "bash",
         "args": ["-c", format!("gcloud run services update worker \\\n  --region={OTHER_REGION} \\\n  --image=img --no-traffic")]}
    ]);
    let p = push_build(&t, &build).await;
    assert_acked(&p, "handled");
    assert_eq!(steps(&t, REGION, "api"), [0, 10]);
    assert_eq!(steps(&t, OTHER_REGION, "worker"), [0, 10]);
    // A redelivery to this instance starts nothing twice.
    let p = push_build(&t, &build).await;
    assert_acked(&p, "ignored");
    assert!(
        p.body["reason"].as_str().unwrap().contains("redelivery"),
        "{}",
        p.body
    );
    assert_eq!(steps(&t, REGION, "api"), [0, 10]);
    assert_eq!(steps(&t, OTHER_REGION, "worker"), [0, 10]);
}

#[tokio::test]
async fn a_deploy_step_without_no_traffic_starts_nothing_and_the_ack_says_why() {
    let t = app().await;
    deployed(&t, OTHER_REGION, "distributor-service-dev");
    // The captured build exactly as Cloud Build sent it: its deploy has no --no-traffic.
    let build = captured_build("b-captured-2", captured_args(&[]));
    let p = push_build(&t, &build).await;
    assert_acked(&p, "ignored");
    let reason = p.body["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("`gcloud run deploy distributor-service-dev`: no --no-traffic"),
        "{reason}"
    );
    assert_eq!(steps(&t, OTHER_REGION, "distributor-service-dev"), [0]);
}

#[tokio::test]
async fn each_target_is_resolved_and_answered_on_its_own() {
    let t = app().await;
    deployed(&t, REGION, "api");
    let mut build = captured_build("b-mixed-1", captured_args(&["--no-traffic"]));
    build["steps"] = json!([
        {"name": "gcr.io/cloud-builders/gcloud", "args": ["run", "deploy", "api", "--region", REGION, "--no-traffic"]},
        // Outside CUTOVER_REGIONS: refused, recorded, nothing read.
        {"name": "gcr.io/cloud-builders/gcloud", "args": ["run", "deploy", "api", "--region", "asia-east1", "--no-traffic"]},
        // Does not exist: failed for good, acknowledged.
        {"name": "gcr.io/cloud-builders/gcloud", "args": ["run", "deploy", "ghost", "--region", REGION, "--no-traffic"]},
        // Already serves everything: skipped.
        {"name": "gcr.io/cloud-builders/gcloud", "args": ["run", "deploy", "web", "--region", REGION]}
    ]);
    let p = push_build(&t, &build).await;
    assert_acked(&p, "handled");
    assert_eq!(steps(&t, REGION, "api"), [0, 10]);
    let decisions = p.body["decisions"].as_array().expect("decisions");
    assert!(
        decisions.iter().any(|d| d["decision"] == "refused"
            && d["service"]
                .as_str()
                .is_some_and(|s| s.contains("asia-east1"))),
        "{}",
        p.body
    );
    let failed = p.body["failed"].to_string();
    assert!(failed.contains("ghost"), "{}", p.body);
    let skipped = p.body["skipped"].to_string();
    assert!(
        skipped.contains("`gcloud run deploy web`: no --no-traffic"),
        "{}",
        p.body
    );
}

#[tokio::test]
async fn a_transient_failure_of_the_targets_is_a_nack_and_the_redelivery_starts_them() {
    let t = spawn_app(&[
        "--regions",
        &format!("{REGION},{OTHER_REGION}"),
        "--event-deadline",
        "2s",
    ])
    .await;
    deployed(&t, REGION, "api");
    deployed(&t, REGION, "worker");
    let mut build = captured_build("b-down-1", captured_args(&["--no-traffic"]));
    build["steps"] = json!([
        {"name": "gcr.io/cloud-builders/gcloud", "args": ["run", "deploy", "api", "--region", REGION, "--no-traffic"]},
        {"name": "gcr.io/cloud-builders/gcloud", "args": ["run", "deploy", "worker", "--region", REGION, "--no-traffic"]}
    ]);
    t.fake.faults().run_errors(10_000, 503);
    let p = push_build(&t, &build).await;
    assert_eq!(p.status, 503, "a transient failure is a nack: {}", p.body);
    t.fake.faults().clear();
    let p = push_build(&t, &build).await;
    assert_acked(&p, "handled");
    assert_eq!(steps(&t, REGION, "api"), [0, 10]);
    assert_eq!(steps(&t, REGION, "worker"), [0, 10]);
}
