//! What cutover does with what a message names: services outside the scope ticks evaluate are
//! refused before anything moves (issue 9), and identifiers and free text from messages are
//! bounded and printable before they reach a response, a log line or an annotation (issue 10).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use cutover_fakes::RevisionProfile;
use cutover_fakes::pusher::{Pushed, Pusher, incident};
use serde_json::Value;

use crate::helpers::*;

const OTHER_REGION: &str = "us-east1";
const OTHER_PROJECT: &str = "other-project";

/// Everything the server logs while the guard lives (the tests run on one thread, server
/// included, so a thread-local subscriber sees all of it).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let me = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || me.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Run API calls the fakes have answered so far.
fn run_calls(t: &TestApp) -> usize {
    t.fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v2/"))
        .count()
}

fn refused(p: &Pushed) -> &Value {
    assert_eq!(p.status, 200, "acknowledged: {}", p.body);
    let d = &p.body["decisions"][0];
    assert_eq!(d["decision"], "refused", "{}", p.body);
    assert_eq!(d["write"], "none", "{}", p.body);
    d
}

/// A service with a freshly deployed, untouched candidate (0%) in `project`/`region`.
fn deployed(t: &TestApp, project: &str, region: &str, service: &str) {
    t.deployed_in(project, region, service);
}

fn candidate_share(t: &TestApp, project: &str, region: &str, service: &str) -> u8 {
    t.fake
        .traffic(project, region, service)
        .iter()
        .filter(|(r, _, _)| *r == candidate_of(service))
        .map(|(_, p, _)| *p)
        .sum()
}

#[tokio::test]
async fn a_build_for_a_region_ticks_never_evaluate_moves_no_traffic_and_is_refused() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let t = spawn_app(&[]).await;
    deployed(&t, PROJECT, OTHER_REGION, "far");
    let p = t
        .push
        .build("far", OTHER_REGION, "SUCCESS", t.clock.now())
        .await
        .unwrap();
    let d = refused(&p);
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains(OTHER_REGION) && reason.contains("CUTOVER_REGIONS"),
        "{reason}"
    );
    assert_eq!(d["trigger"], "build");
    assert_eq!(candidate_share(&t, PROJECT, OTHER_REGION, "far"), 0);
    assert_eq!(run_calls(&t), 0, "not even a read");
    let line = logs
        .text()
        .lines()
        .find(|l| l.contains("refused"))
        .map(String::from)
        .unwrap_or_default();
    assert!(
        line.contains("ERROR") && line.contains("cutover::decision"),
        "an error-level decision record: {line:?}"
    );
}

#[tokio::test]
async fn a_build_for_another_project_moves_no_traffic_and_is_refused() {
    let t = spawn_app(&[]).await;
    deployed(&t, OTHER_PROJECT, REGION, "elsewhere");
    // The build ran in (and names) the other project.
    let other = Pusher::new(t.push.base(), OTHER_PROJECT);
    let p = other
        .build("elsewhere", REGION, "SUCCESS", t.clock.now())
        .await
        .unwrap();
    let d = refused(&p);
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains(OTHER_PROJECT) && reason.contains("GOOGLE_CLOUD_PROJECT"),
        "{reason}"
    );
    assert_eq!(candidate_share(&t, OTHER_PROJECT, REGION, "elsewhere"), 0);
    assert_eq!(run_calls(&t), 0);
}

/// An instance evaluating both regions, with `service`'s rollout started in the non-default one.
async fn rolling_in_other_region(service: &str) -> TestApp {
    let t = spawn_app(&["--regions", &format!("{REGION},{OTHER_REGION}")]).await;
    deployed(&t, PROJECT, OTHER_REGION, service);
    let p = t
        .push
        .build(service, OTHER_REGION, "SUCCESS", t.clock.now())
        .await
        .unwrap();
    assert_eq!(
        (p.status, p.body["outcome"].as_str()),
        (200, Some("handled")),
        "{}",
        p.body
    );
    t
}

#[tokio::test]
async fn a_build_for_a_listed_region_other_than_the_default_still_rolls_out() {
    let t = rolling_in_other_region("near").await;
    assert_eq!(candidate_share(&t, PROJECT, OTHER_REGION, "near"), 10);
}

#[tokio::test]
async fn an_alert_for_a_region_outside_the_scope_is_refused_and_changes_nothing() {
    // A rollout in us-east1 started while that region was evaluated; then an instance that no
    // longer evaluates it receives an alert for it.
    let wide = rolling_in_other_region("far").await;
    assert_eq!(candidate_share(&wide, PROJECT, OTHER_REGION, "far"), 10);

    let narrow = spawn_on(wide.fake.clone(), wide.clock.clone(), &[]).await;
    let before = run_calls(&narrow);
    let p = narrow
        .push
        .alert(
            "far",
            &candidate_of("far"),
            OTHER_REGION,
            "open",
            narrow.clock.now(),
        )
        .await
        .unwrap();
    let d = refused(&p);
    assert_eq!(d["trigger"], "alert");
    assert!(
        d["reason"].as_str().unwrap().contains("CUTOVER_REGIONS"),
        "{}",
        d["reason"]
    );
    assert_eq!(run_calls(&narrow), before, "nothing read or written");
    assert_eq!(candidate_share(&narrow, PROJECT, OTHER_REGION, "far"), 10);
}

#[tokio::test]
async fn an_alert_for_another_project_is_refused() {
    let t = spawn_app(&[]).await;
    deployed(&t, OTHER_PROJECT, REGION, "elsewhere");
    let other = Pusher::new(t.push.base(), OTHER_PROJECT);
    let p = other
        .alert(
            "elsewhere",
            &candidate_of("elsewhere"),
            REGION,
            "open",
            t.clock.now(),
        )
        .await
        .unwrap();
    let d = refused(&p);
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("GOOGLE_CLOUD_PROJECT"),
        "{}",
        d["reason"]
    );
    assert_eq!(run_calls(&t), 0);
}

/// A successful build of `service` in cutover's project and region, with `build_id`, in as few
/// bytes as Cloud Build's message allows (so a big id still fits the body limit).
async fn build_with_id(t: &TestApp, service: &str, build_id: &str) -> Pushed {
    let data = serde_json::json!({
        "id": build_id,
        "status": "SUCCESS",
        "projectId": PROJECT,
        "substitutions": {"_SERVICE_NAME": service, "_DEPLOY_REGION": REGION},
    });
    t.push
        .push(
            "/pubsub/builds",
            "cutover-builds",
            &serde_json::to_vec(&data).unwrap(),
            &BTreeMap::new(),
            t.clock.now(),
        )
        .await
        .unwrap()
}

/// The probe's 700 KB, or as much as the body limit lets through once base64-encoded.
fn huge_id_len() -> usize {
    (700 * 1024).min((cutover::server::MAX_BODY_BYTES - 1024) / 4 * 3)
}

#[tokio::test]
async fn a_huge_or_line_breaking_build_id_is_refused_in_a_few_bytes() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let t = spawn_app(&["--log-format", "text"]).await;
    deployed(&t, PROJECT, REGION, "api");
    for id in [
        "f".repeat(huge_id_len()),
        "b-1\n2026-08-20T10:00:00Z  INFO cutover: forged line".to_owned(),
        "b-1\u{1b}[2J".to_owned(),
    ] {
        let logged_before = logs.text().len();
        let p = build_with_id(&t, "api", &id).await;
        assert_eq!(
            (p.status, p.body["outcome"].as_str()),
            (200, Some("ignored")),
            "{}",
            p.body
        );
        let answer = p.body.to_string();
        assert!(answer.len() < 400, "{} bytes answered", answer.len());
        assert!(answer.contains("build id"), "{answer}");
        let logged = &logs.text()[logged_before..];
        assert!(logged.len() < 1000, "{} bytes logged", logged.len());
        assert!(!logged.contains("forged line\n"), "{logged}");
        assert!(!logged.contains('\u{1b}'), "{logged:?}");
    }
    assert_eq!(candidate_share(&t, PROJECT, REGION, "api"), 0);
}

#[tokio::test]
async fn a_huge_incident_summary_is_cut_and_made_printable_everywhere() {
    let t = spawn_app(&[]).await;
    t.service("api", 20.0);
    t.release("api", RevisionProfile::healthy()).await;
    assert_eq!(t.candidate_steps("api"), vec![0, 10]);
    let mut alert = incident(
        PROJECT,
        "api",
        &candidate_of("api"),
        REGION,
        "open",
        t.clock.now(),
    );
    alert["incident"]["summary"] =
        format!("5xx\r\nINFO forged\u{1b}[31m {}", "x".repeat(200 * 1024)).into();
    let p = t
        .push
        .push(
            "/pubsub/alerts",
            "cutover-alerts",
            &serde_json::to_vec(&alert).unwrap(),
            &BTreeMap::new(),
            t.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["decisions"][0]["decision"], "rollback", "{}", p.body);
    let answer = p.body.to_string();
    assert!(answer.len() < 4096, "{} bytes answered", answer.len());
    assert_eq!(t.split("api"), vec![(stable_of("api"), 100)]);
    let reason = t.annotation("api", "cutover.dev/reason").unwrap();
    assert!(reason.contains("5xx  INFO forged [31m x"), "{reason}");
    assert!(!reason.chars().any(char::is_control), "{reason:?}");
    assert!(reason.chars().count() <= 1000);
}

#[tokio::test]
async fn a_build_naming_a_platform_cutover_does_not_roll_out_is_refused_naming_the_setting() {
    let t = spawn_app(&[]).await;
    let data = serde_json::json!({
        "id": "b0000ae1-demo",
        "projectId": PROJECT,
        "status": "SUCCESS",
        "substitutions": {"_APPENGINE_SERVICE": "default", "_APPENGINE_VERSION": "20261205t030000"},
    });
    let p = t
        .push
        .push(
            "/pubsub/builds",
            "cutover-builds",
            &serde_json::to_vec(&data).unwrap(),
            &BTreeMap::new(),
            t.clock.now(),
        )
        .await
        .unwrap();
    let d = refused(&p);
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains("app-engine") && reason.contains("CUTOVER_PLATFORMS"),
        "{reason}"
    );
    assert_eq!(d["service"], format!("app-engine:{PROJECT}/default"), "{d}");
    assert!(
        t.fake.requests().is_empty(),
        "nothing read, nothing written"
    );
}
