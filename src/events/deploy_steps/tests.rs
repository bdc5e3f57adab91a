//! The deploy commands of real `cloudbuild.yaml` shapes, written as Cloud Build puts them in the
//! notification (`steps[].name/entrypoint/args/script/env`, substitutions expanded), and of the
//! captured notification.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::events::{BuildNotification, MessageId, PushMessage};

const CAPTURED: &[u8] = cutover_fakes::fixture!("payloads/cloudbuild-1.json");

/// The targets of `steps` as `service@region` (`-` for no region), and the skip reasons.
fn read(steps: Value) -> (Vec<String>, Vec<String>) {
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for command in deploy_commands(Some(&steps)) {
        match command.outcome {
            Ok(t) => targets.push(format!(
                "{}@{}{}",
                t.service,
                t.region.as_deref().unwrap_or("-"),
                t.project.map(|p| format!("/{p}")).unwrap_or_default()
            )),
            Err(why) => skipped.push(format!("{}: {why}", command.step)),
        }
    }
    (targets, skipped)
}

fn targets(steps: Value) -> Vec<String> {
    let (targets, skipped) = read(steps);
    assert!(skipped.is_empty(), "{skipped:?}");
    targets
}

/// `build` as the data of a push message, without attributes.
fn message(build: &Value) -> PushMessage {
    PushMessage {
        message_id: MessageId::parse("1").expect("a message id"),
        publish_time: None,
        data: serde_json::to_vec(build).expect("serialize"),
        attributes: Default::default(),
        subscription: "projects/p/subscriptions/cutover-builds".into(),
        delivery_attempt: None,
        ordering_key: None,
    }
}

fn decode(build: &Value) -> BuildNotification {
    BuildNotification::from_message(&message(build)).expect("decodes")
}

fn captured() -> Value {
    serde_json::from_slice(CAPTURED).expect("the capture is JSON")
}

#[test]
fn gcloud_as_the_entrypoint_of_the_cloud_sdk_image() {
    let steps = json!([{
        "name": "gcr.io/google.com/cloudsdktool/cloud-sdk",
        "entrypoint": "gcloud",
        "args": ["run", "deploy", "api", "--image", "europe-west1-docker.pkg.dev/acme-prod/apps/api:3c1f0a9",
                 "--region", "europe-west1", "--no-traffic"]
    }]);
    assert_eq!(targets(steps), ["api@europe-west1"]);
}

#[test]
fn the_gcloud_builder_runs_gcloud_without_an_entrypoint() {
    for image in [
        "gcr.io/cloud-builders/gcloud",
        "gcr.io/cloud-builders/gcloud:latest",
        "us-docker.pkg.dev/cloud-builders/ga/v1/gcloud-slim",
    ] {
        let steps = json!([{"name": image,
            "args": ["run", "deploy", "api", "--region=us-central1", "--no-traffic", "--quiet"]}]);
        assert_eq!(targets(steps), ["api@us-central1"], "{image}");
    }
    // Another image without an entrypoint runs its own: its args are not a gcloud command line.
    let steps = json!([{"name": "gcr.io/google.com/cloudsdktool/cloud-sdk:slim",
        "args": ["run", "deploy", "api", "--no-traffic"]}]);
    assert_eq!(read(steps), (vec![], vec![]));
    // Unless they start with gcloud.
    let steps = json!([{"name": "gcr.io/google.com/cloudsdktool/google-cloud-cli:latest",
        "args": ["gcloud", "run", "deploy", "api", "--no-traffic", "--region", "asia-east1"]}]);
    assert_eq!(targets(steps), ["api@asia-east1"]);
}

#[test]
fn a_bash_script_with_line_continuations() {
    let script = "gcloud run deploy api \\\n  --image=europe-west1-docker.pkg.dev/acme-prod/apps/api:3c1f0a9 \\\n  --region=europe-west1 \\\n  --no-traffic \\\n  --quiet\n";
    for (image, entrypoint) in [
        ("gcr.io/google.com/cloudsdktool/cloud-sdk:slim", "bash"),
        ("google/cloud-sdk:latest", "/bin/sh"),
        ("gcr.io/cloud-builders/gcloud", "bash"),
    ] {
        let steps = json!([{"name": image, "entrypoint": entrypoint, "args": ["-c", script]}]);
        assert_eq!(targets(steps), ["api@europe-west1"], "{image} {entrypoint}");
    }
    // Shell options before -c, and -c grouped with them.
    for args in [
        json!(["-euo", "pipefail", "-c", script]),
        json!(["-ec", script]),
    ] {
        let steps = json!([{"name": "gcr.io/google.com/cloudsdktool/cloud-sdk", "entrypoint": "bash", "args": args}]);
        assert_eq!(targets(steps), ["api@europe-west1"]);
    }
}

#[test]
fn every_command_of_a_script_is_read() {
    let script = r#"set -euo pipefail
gcloud config set run/platform managed && gcloud run services update web --region us-east1 --no-traffic --image "us-docker.pkg.dev/acme-prod/apps/web:v2"; echo "deployed web"
# gcloud run deploy old --no-traffic --region us-east1
gcloud run deploy worker --no-traffic --region=us-east1 2>&1 | tee deploy.log
gcloud run services update-traffic web --to-tags=candidate=10
gcloud run services describe web --region us-east1 --format='value(status.url)' > url.txt
"#;
    let steps = json!([{"name": "gcr.io/google.com/cloudsdktool/cloud-sdk", "entrypoint": "bash", "args": ["-c", script]}]);
    assert_eq!(targets(steps), ["web@us-east1", "worker@us-east1"]);
}

#[test]
fn cloud_builds_script_field_is_read_like_bash_c() {
    let steps = json!([{
        "name": "gcr.io/google.com/cloudsdktool/cloud-sdk:slim",
        "script": "#!/usr/bin/env bash\nset -e\ngcloud beta run deploy api --no-traffic --project=acme-prod \\\n  --region=europe-west1 --platform managed\n"
    }]);
    assert_eq!(targets(steps), ["api@europe-west1/acme-prod"]);
}

#[test]
fn the_example_pipeline_rolls_out_its_no_traffic_branch_only() {
    // examples/app-cloudbuild.yaml's deploy step, substitutions expanded.
    let script = "if gcloud run services describe my-service --region=europe-west1 >/dev/null 2>describe.err; then\n  gcloud run deploy my-service --no-traffic --region=europe-west1 --image=europe-west1-docker.pkg.dev/acme-prod/apps/my-service:b1 --service-account=my-service-run@acme-prod.iam.gserviceaccount.com --quiet\nelif grep -q 'Cannot find service' describe.err; then\n  gcloud run deploy my-service --region=europe-west1 --image=europe-west1-docker.pkg.dev/acme-prod/apps/my-service:b1 --service-account=my-service-run@acme-prod.iam.gserviceaccount.com --quiet\nelse\n  cat describe.err >&2\n  exit 1\nfi\n";
    let steps = json!([{"id": "deploy", "name": "gcr.io/google.com/cloudsdktool/cloud-sdk:slim",
        "entrypoint": "bash", "args": ["-euo", "pipefail", "-c", script]}]);
    let (targets, skipped) = read(steps);
    assert_eq!(targets, ["my-service@europe-west1"]);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].starts_with("step #0 (deploy): `gcloud run deploy my-service`: no --no-traffic"),
        "{skipped:?}"
    );
}

#[test]
fn the_service_is_the_one_operand_wherever_it_stands() {
    let steps = json!([{"name": "gcr.io/cloud-builders/gcloud", "args": [
        "--project", "acme-prod", "run", "deploy", "--allow-unauthenticated", "--image", "img:1",
        "--no-traffic", "-q", "--region", "europe-west1", "api"]}]);
    assert_eq!(targets(steps), ["api@europe-west1/acme-prod"]);
    let (targets, skipped) = read(json!([{"name": "gcr.io/cloud-builders/gcloud",
        "args": ["run", "deploy", "--image", "img:1", "--no-traffic"]}]));
    assert!(targets.is_empty());
    assert!(skipped[0].contains("names no service"), "{skipped:?}");
}

#[test]
fn the_steps_environment_gives_gclouds_properties() {
    let steps = json!([{"name": "gcr.io/cloud-builders/gcloud",
        "env": ["CLOUDSDK_RUN_REGION=asia-east1", "CLOUDSDK_CORE_PROJECT=acme-prod"],
        "args": ["run", "deploy", "api", "--no-traffic"]}]);
    assert_eq!(targets(steps), ["api@asia-east1/acme-prod"]);
    // A flag wins over the environment.
    let steps = json!([{"name": "gcr.io/cloud-builders/gcloud",
        "env": ["CLOUDSDK_RUN_REGION=asia-east1"],
        "args": ["run", "deploy", "api", "--no-traffic", "--region=us-central1"]}]);
    assert_eq!(targets(steps), ["api@us-central1"]);
}

#[test]
fn commands_that_start_no_rollout_say_why() {
    // gcloud's arguments, split on spaces, and what the reason must say.
    let not_managed = "not Cloud Run (fully managed)";
    let cases = [
        ("run deploy api --region europe-west1", "no --no-traffic"),
        (
            "run deploy api --no-traffic --platform gke --cluster c1",
            not_managed,
        ),
        (
            "run deploy api --no-traffic --platform=kubernetes",
            not_managed,
        ),
        (
            "run deploy api --no-traffic --cluster=c1 --cluster-location=us-central1-a",
            not_managed,
        ),
        (
            "run deploy $SERVICE --no-traffic",
            "is a variable the build message does not expand",
        ),
        (
            "run deploy api --no-traffic --region=${_REGION}",
            "the region `${_REGION}`",
        ),
        (
            "run deploy API_Service --no-traffic",
            "Cloud Run service name",
        ),
        ("run deploy api --no-traffic --region Europe/West", "region"),
        (
            "beta run deploy api --no-traffic --regions=us-central1,europe-west1",
            "several regions",
        ),
        ("run deploy api extra --no-traffic", "2 operands"),
    ];
    for (args, why) in cases {
        let args: Vec<&str> = args.split(' ').collect();
        let steps = json!([{"id": "deploy", "name": "gcr.io/cloud-builders/gcloud", "args": args}]);
        let (targets, skipped) = read(steps);
        assert!(targets.is_empty(), "{args:?}: {targets:?}");
        assert_eq!(skipped.len(), 1, "{args:?}");
        assert!(
            skipped[0].starts_with("step #0 (deploy): `gcloud run"),
            "{skipped:?}"
        );
        assert!(
            skipped[0].contains(why),
            "{args:?}: {skipped:?} lacks {why:?}"
        );
    }
}

#[test]
fn other_commands_and_steps_are_not_deploys() {
    let steps = json!([
        {"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", "img", "."]},
        {"name": "gcr.io/cloud-builders/gcloud", "args": ["run", "services", "update-traffic", "api", "--to-latest"]},
        {"name": "gcr.io/cloud-builders/gcloud", "args": ["run", "jobs", "deploy", "job", "--image", "img"]},
        {"name": "gcr.io/cloud-builders/gcloud", "args": ["functions", "deploy", "fn", "--no-traffic"]},
        {"name": "gcr.io/cloud-builders/gcloud", "entrypoint": "python3", "args": ["-c", "print('gcloud run deploy x --no-traffic')"]},
        {"name": "ubuntu", "entrypoint": "bash", "args": ["-c", "echo 'gcloud run deploy api --no-traffic'"]},
        "not a step",
        {"name": "gcr.io/cloud-builders/gcloud", "args": "run deploy api --no-traffic"}
    ]);
    assert_eq!(read(steps), (vec![], vec![]));
    assert!(deploy_commands(None).is_empty());
    assert!(deploy_commands(Some(&json!({"steps": 1}))).is_empty());
}

#[test]
fn the_commands_read_are_bounded() {
    let script = "gcloud run deploy api --no-traffic\n".repeat(MAX_COMMANDS + 5);
    let commands = deploy_commands(Some(&json!([{"name": "x", "script": script}])));
    assert_eq!(commands.len(), MAX_COMMANDS + 1);
    let last = commands.last().expect("the overflow note");
    assert!(
        last.outcome
            .as_ref()
            .is_err_and(|why| why.starts_with("5 more deploy commands")),
        "{last:?}"
    );
}

#[test]
fn the_captured_build_deploys_without_no_traffic_so_it_starts_nothing() {
    // The real notification: no _SERVICE_NAME, and its deploy step has no --no-traffic.
    let build = decode(&captured());
    assert!(build.targets().is_empty());
    let why = build.why_no_target();
    assert!(why.contains("no _SERVICE_NAME substitution"), "{why}");
    assert!(
        why.contains("step #2: `gcloud run deploy distributor-service-dev`: no --no-traffic"),
        "{why}"
    );
}

#[test]
fn the_captured_build_with_no_traffic_names_its_service_region_and_project() {
    let mut data = captured();
    data["steps"][2]["args"]
        .as_array_mut()
        .expect("args")
        .push(json!("--no-traffic"));
    let build = decode(&data);
    let targets = build.targets();
    assert_eq!(targets.len(), 1);
    assert_eq!(*targets[0].service, "distributor-service-dev");
    assert_eq!(targets[0].region.map(|r| r.as_str()), Some("us-central1"));
    assert_eq!(
        targets[0].project.map(|p| p.as_str()),
        Some("checkpoint-distributor")
    );
    assert!(build.skipped().is_empty());
}

#[test]
fn a_step_without_region_takes_the_builds_region_substitution() {
    let build = |subs: Value| {
        decode(
            &json!({"id": "b1", "status": "SUCCESS", "projectId": "acme-prod", "substitutions": subs,
            "steps": [{"name": "gcr.io/cloud-builders/gcloud", "args": ["run", "deploy", "api", "--no-traffic"]},
                      {"name": "gcr.io/cloud-builders/gcloud", "args": ["run", "deploy", "web", "--no-traffic", "--region=asia-east1"]}]}),
        )
    };
    let regions = |b: &BuildNotification| -> Vec<Option<String>> {
        b.targets()
            .iter()
            .map(|n| n.region.map(|r| r.to_string()))
            .collect()
    };
    let b = build(json!({"_DEPLOY_REGION": "europe-west1", "_REGION": "us-central1"}));
    assert_eq!(
        regions(&b),
        [Some("europe-west1".into()), Some("asia-east1".into())]
    );
    let b = build(json!({"_REGION": "us-central1"}));
    assert_eq!(
        regions(&b),
        [Some("us-central1".into()), Some("asia-east1".into())]
    );
    // Nothing says: Scope::resolve's default region applies.
    let b = build(json!({}));
    assert_eq!(regions(&b), [None, Some("asia-east1".into())]);
}

#[test]
fn service_name_substitution_comes_first() {
    let b = decode(
        &json!({"id": "b1", "status": "SUCCESS", "substitutions": {"_SERVICE_NAME": "api"},
        "steps": [{"name": "gcr.io/cloud-builders/gcloud", "args": ["run", "deploy", "web", "--no-traffic"]}]}),
    );
    let names: Vec<&str> = b.targets().iter().map(|n| n.service.as_str()).collect();
    assert_eq!(names, ["api"]);
    assert!(b.deploys.is_empty());
}

#[test]
fn a_bad_region_substitution_refuses_the_build_only_when_a_step_needs_it() {
    let data = |args: Value| {
        json!({"id": "b1", "status": "SUCCESS", "substitutions": {"_REGION": "Europe/West"},
            "steps": [{"name": "gcr.io/cloud-builders/gcloud", "args": args}]})
    };
    let err = BuildNotification::from_message(&message(&data(json!([
        "run",
        "deploy",
        "api",
        "--no-traffic"
    ]))))
    .expect_err("the step needs the substitution");
    assert!(err.reason().contains("_REGION"), "{err}");
    let b = BuildNotification::from_message(&message(&data(json!([
        "run",
        "deploy",
        "api",
        "--no-traffic",
        "--region",
        "us-central1"
    ]))))
    .expect("the step names its region");
    assert_eq!(b.targets().len(), 1);
}

proptest! {
    #[test]
    fn never_panics_and_reasons_stay_short(script in ".{0,300}", args in prop::collection::vec("[-a-z=$ ]{0,12}", 0..12)) {
        let mut all = args.clone();
        all.insert(0, "deploy".into());
        all.insert(0, "run".into());
        let steps = json!([
            {"name": "x", "script": script.clone()},
            {"name": "x", "entrypoint": "bash", "args": ["-c", script]},
            {"name": "gcr.io/cloud-builders/gcloud", "args": all},
        ]);
        for command in deploy_commands(Some(&steps)) {
            if let Err(why) = command.outcome {
                prop_assert!(why.chars().count() < 400, "{why}");
                prop_assert!(!why.chars().any(char::is_control), "{why:?}");
            }
        }
    }
}
