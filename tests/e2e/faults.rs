//! Google APIs misbehaving: conflicts, unavailability, server errors, and outbound auth.

use cutover_fakes::RevisionProfile;

use crate::helpers::*;

#[tokio::test]
async fn an_etag_conflict_is_re_read_and_decided_again_without_losing_the_other_write() {
    let t = spawn_app(&[]).await;
    t.service("race", 20.0);
    t.fake.faults().conflict_next_patches(1);
    let p = t.release("race", RevisionProfile::healthy()).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(
        t.candidate_steps("race"),
        vec![0, 10],
        "the rollout started after the conflict"
    );
    let history = t.fake.history(PROJECT, REGION, "race");
    let last = history.last().unwrap();
    assert!(
        last.etag_matched && last.labels_preserved && last.foreign_annotations_preserved,
        "{last:?}"
    );
    let conflicts = t
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.status == 409)
        .count();
    assert_eq!(conflicts, 1);
    let decisions = p.body["decisions"].as_array().unwrap();
    assert!(
        decisions
            .iter()
            .any(|d| d["write"].as_str().unwrap().starts_with("conflict")),
        "{decisions:?}"
    );
}

#[tokio::test]
async fn a_burst_of_run_api_503s_is_retried_within_the_event() {
    let t = spawn_app(&[]).await;
    t.service("flaky", 20.0);
    t.fake.faults().run_errors(3, 503);
    let p = t.release("flaky", RevisionProfile::healthy()).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(t.candidate_steps("flaky"), vec![0, 10]);
}

#[tokio::test]
async fn a_run_api_that_stays_down_makes_pubsub_redeliver() {
    let t = spawn_app(&["--event-deadline", "2s"]).await;
    t.service("down", 20.0);
    t.fake.faults().run_errors(10_000, 503);
    let p = t.release("down", RevisionProfile::healthy()).await;
    assert_eq!(p.status, 503, "a transient failure is a nack: {}", p.body);
    t.fake.faults().clear();
    let p = t
        .push
        .build("down", REGION, "SUCCESS", t.clock.now())
        .await
        .unwrap();
    assert_eq!(p.status, 200, "the redelivery succeeds: {}", p.body);
    assert_eq!(t.candidate_steps("down"), vec![0, 10]);
}

#[tokio::test]
async fn monitoring_500s_hold_the_step_and_never_roll_back() {
    let t = spawn_app(&["--event-deadline", "2s"]).await;
    t.service("blind", 20.0);
    t.release("blind", RevisionProfile::healthy()).await;
    t.fake.faults().monitoring_errors(10_000, 500);
    t.tick_minutes(12).await;
    assert_eq!(
        t.candidate_steps("blind"),
        vec![0, 10],
        "no verdict without metrics"
    );
    assert_eq!(
        t.annotation("blind", "cutover.dev/phase").as_deref(),
        Some("progressing")
    );
    t.fake.faults().clear();
    t.tick_minutes(1).await;
    assert_eq!(
        t.candidate_steps("blind"),
        vec![0, 10, 50],
        "judged as soon as metrics are back"
    );
}

#[tokio::test]
async fn operations_that_take_a_while_are_polled_until_done() {
    let t = spawn_app(&[]).await;
    t.service("slowop", 20.0);
    t.fake.faults().op_polls_before_done(3);
    let p = t.release("slowop", RevisionProfile::healthy()).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let polls = t
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/operations/"))
        .count();
    assert!(polls >= 4, "{polls} polls");
    assert_eq!(t.candidate_steps("slowop"), vec![0, 10]);
}

#[tokio::test]
async fn with_metadata_credentials_every_google_call_carries_a_bearer_token() {
    let t = spawn_app(&["--auth", "metadata"]).await;
    t.service("authed", 20.0);
    t.release("authed", RevisionProfile::healthy()).await;
    t.tick_minutes(8).await;
    let api_calls: Vec<_> = t
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v2/") || r.path.starts_with("/v3/"))
        .collect();
    assert!(
        api_calls.iter().any(|r| r.path.starts_with("/v3/")),
        "metrics were read"
    );
    for r in &api_calls {
        let auth = r.authorization.as_deref().unwrap_or_default();
        assert!(
            auth.starts_with("Bearer fake-token-"),
            "{} {} carried {auth:?}",
            r.method,
            r.path
        );
    }
    assert!(t.fake.tokens_issued() >= 1);
    assert!(
        t.fake.tokens_issued() < api_calls.len(),
        "tokens are cached, not fetched per call"
    );
}

#[tokio::test]
async fn with_no_credentials_no_authorization_header_is_sent() {
    let t = spawn_app(&[]).await;
    t.service("anon", 20.0);
    t.release("anon", RevisionProfile::healthy()).await;
    assert!(
        t.fake
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/v2/"))
            .all(|r| r.authorization.is_none())
    );
}

#[tokio::test]
async fn project_and_region_come_from_the_metadata_server_when_not_configured() {
    use clap::Parser;
    let clock = cutover::clock::Clock::manual(t0());
    let fake = cutover_fakes::FakeGcp::start(fake_clock(&clock)).await;
    fake.set_metadata("meta-project", "asia-northeast1");
    let base = fake.base_url();
    let host = fake.metadata_host();
    let cli = cutover::config::Cli::try_parse_from([
        "cutover",
        "serve",
        "--run-endpoint",
        &base,
        "--monitoring-endpoint",
        &base,
        "--metadata-host",
        &host,
        "--auth",
        "none",
        "--push-auth",
        "none",
    ])
    .unwrap();
    let cutover::config::Command::Serve(args) = cli.command else {
        unreachable!("the flags name serve")
    };
    let app = cutover::server::build(&args, clock).await.expect("starts");
    assert_eq!(app.project, "meta-project");
    assert_eq!(app.default_region, "asia-northeast1");
    assert_eq!(app.regions, vec!["asia-northeast1".to_string()]);
}

#[tokio::test]
async fn ticks_list_each_configured_region_once_and_touch_only_services_with_a_rollout() {
    let t = spawn_app(&[]).await;
    t.service("busy", 20.0);
    for i in 0..5 {
        t.service(&format!("calm{i}"), 20.0);
    }
    t.release("busy", RevisionProfile::healthy()).await;
    let before = t.fake.requests().len();
    let p = t.tick_minutes(1).await;
    assert_eq!(p.body["services"], 6);
    assert_eq!(p.body["active"], 1);
    let during: Vec<_> = t.fake.requests().into_iter().skip(before).collect();
    assert_eq!(
        during.len(),
        1,
        "a soaking step needs only the listing: {during:?}"
    );
    assert!(
        during[0]
            .path
            .ends_with(&format!("/locations/{REGION}/services"))
    );
    assert_eq!(t.app.regions, vec![REGION.to_string()]);
}
