//! What each endpoint answers for bad, irrelevant and real-world inputs: the ack/nack policy.

use std::collections::BTreeMap;

use cutover_fakes::RevisionProfile;

use crate::helpers::*;

#[tokio::test]
async fn a_body_that_is_not_a_push_envelope_is_refused_with_400() {
    let t = spawn_app(&[]).await;
    for body in [
        &b"not json"[..],
        b"{}",
        br#"{"subscription":"s"}"#,
        br#"{"message":"nope"}"#,
    ] {
        for path in ["/pubsub/builds", "/pubsub/alerts", "/pubsub/ticks"] {
            let p = t.push.post_raw(path, body.to_vec()).await.unwrap();
            assert_eq!(
                p.status,
                400,
                "{path} {:?}: {}",
                String::from_utf8_lossy(body),
                p.body
            );
        }
    }
}

#[tokio::test]
async fn the_body_limit_is_exact_a_body_at_it_is_read_one_byte_over_is_413() {
    let t = spawn_app(&[]).await;
    let limit = cutover::server::MAX_BODY_BYTES;
    // At the limit the body is read, and refused for what it is (not an envelope).
    let at = t
        .push
        .post_raw("/pubsub/builds", vec![b' '; limit])
        .await
        .unwrap();
    assert_eq!(at.status, 400, "{}", at.body);
    let over = t
        .push
        .post_raw("/pubsub/builds", vec![b' '; limit + 1])
        .await
        .unwrap();
    assert_eq!(over.status, 413);
}

#[tokio::test]
async fn messages_that_can_never_be_used_are_acknowledged_and_explained() {
    let t = spawn_app(&[]).await;
    t.service("real", 20.0);
    // Bad base64.
    let p = t
        .push
        .post_raw(
            "/pubsub/builds",
            br#"{"message":{"data":"%%%not base64","messageId":"77"},"subscription":"s"}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(
        (p.status, p.body["outcome"].as_str()),
        (200, Some("ignored")),
        "{}",
        p.body
    );
    assert_eq!(p.body["messageId"], "77");
    // Data that is not a build.
    let p = t
        .push
        .push(
            "/pubsub/builds",
            "b",
            b"ckmcslkmcsiocm",
            &BTreeMap::new(),
            t.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        (p.status, p.body["outcome"].as_str()),
        (200, Some("ignored"))
    );
    // A build for a service that does not exist.
    let p = t
        .push
        .build("ghost", REGION, "SUCCESS", t.clock.now())
        .await
        .unwrap();
    assert_eq!(
        (p.status, p.body["outcome"].as_str()),
        (200, Some("ignored")),
        "{}",
        p.body
    );
    assert!(
        p.body["reason"].as_str().unwrap().contains("not found"),
        "{}",
        p.body
    );
    // Alert data that is not an incident.
    let p = t
        .push
        .push(
            "/pubsub/alerts",
            "a",
            b"[1,2,3]",
            &BTreeMap::new(),
            t.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        (p.status, p.body["outcome"].as_str()),
        (200, Some("ignored"))
    );
    assert_eq!(t.candidate_steps("real"), vec![0], "nothing moved");
}

#[tokio::test]
async fn only_successful_builds_naming_a_service_start_rollouts() {
    let t = spawn_app(&[]).await;
    t.service("svc", 20.0);
    t.fake.deploy(
        PROJECT,
        REGION,
        "svc",
        &candidate_of("svc"),
        RevisionProfile::healthy(),
    );
    for status in ["QUEUED", "WORKING", "FAILURE", "CANCELLED"] {
        let p = t
            .push
            .build("svc", REGION, status, t.clock.now())
            .await
            .unwrap();
        assert_eq!(
            (p.status, p.body["outcome"].as_str()),
            (200, Some("ignored"))
        );
    }
    assert_eq!(t.candidate_steps("svc"), vec![0]);
    // A real captured Cloud Build notification has no _SERVICE_NAME: acknowledged, ignored.
    let p = t
        .push
        .push(
            "/pubsub/builds",
            "b",
            cutover_fakes::fixture!("payloads/cloudbuild-1.json"),
            &BTreeMap::new(),
            t.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        (p.status, p.body["outcome"].as_str()),
        (200, Some("ignored"))
    );
    assert!(p.body["reason"].as_str().unwrap().contains("_SERVICE_NAME"));
    let p = t
        .push
        .build("svc", REGION, "SUCCESS", t.clock.now())
        .await
        .unwrap();
    assert_eq!(
        (p.status, p.body["outcome"].as_str()),
        (200, Some("handled"))
    );
    assert_eq!(t.candidate_steps("svc"), vec![0, 10]);
}

#[tokio::test]
async fn captured_alert_payloads_are_handled_as_google_sends_them() {
    let t = spawn_app(&[]).await;
    for (file, data, why) in [
        (
            "monitoring-alert-1.json",
            cutover_fakes::fixture!("payloads/monitoring-alert-1.json"),
            "names no target",
        ),
        (
            "monitoring-alert-2.json",
            cutover_fakes::fixture!("payloads/monitoring-alert-2.json"),
            "not open",
        ),
        (
            "monitoring-alert-3.json",
            cutover_fakes::fixture!("payloads/monitoring-alert-3.json"),
            "test notification",
        ),
    ] {
        let p = t
            .push
            .push("/pubsub/alerts", "a", data, &BTreeMap::new(), t.clock.now())
            .await
            .unwrap();
        assert_eq!(
            (p.status, p.body["outcome"].as_str()),
            (200, Some("ignored")),
            "{file}"
        );
        assert!(
            p.body["reason"].as_str().unwrap().contains(why),
            "{file}: {}",
            p.body
        );
    }
}

#[tokio::test]
async fn the_captured_push_envelope_decodes() {
    let t = spawn_app(&[]).await;
    // Real envelope, no attributes, data is free text: a tick does not read its data.
    let p = t
        .push
        .post_raw(
            "/pubsub/ticks",
            cutover_fakes::fixture!("payloads/pubsub-push-1.json").to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["messageId"], "2451898607221267");
}

#[tokio::test]
async fn healthz_answers_200() {
    let t = spawn_app(&[]).await;
    let r = reqwest::get(format!("{}/healthz", t.push.base()))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
