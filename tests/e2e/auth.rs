//! Push authentication: only Pub/Sub's own OIDC tokens, for the endpoint's own audience and the
//! configured service accounts, get through; a refusal comes from the headers alone, before any
//! of the body is read, and says nothing about why.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use cutover::events::auth::PushEndpoint;
use cutover_fakes::oidc as testing;
use cutover_fakes::pusher::PushSigner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// `CUTOVER_PUSH_AUDIENCE`: the base of the three endpoints' audiences.
const AUDIENCE: &str = "https://cutover-123456789012.europe-west1.run.app";
const PUSHER: &str = "cutover-push@test-project.iam.gserviceaccount.com";

/// Serves the test key set; counts how often it is fetched.
async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = Router::new().route(
        "/certs",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { axum::Json(testing::jwks_json()) }
        }),
    );
    (serve(app).await + "/certs", hits)
}

/// Serves `app` on a loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn secured_with(jwks: &str) -> TestApp {
    spawn_app(&[
        "--push-auth",
        "google",
        "--jwks-url",
        jwks,
        "--push-audience",
        AUDIENCE,
        "--push-service-accounts",
        PUSHER,
    ])
    .await
}

async fn secured() -> TestApp {
    secured_with(&jwks_server().await.0).await
}

/// Google-shaped claims for `aud`, expiring `exp_in` seconds from now, living one hour.
fn claims(t: &TestApp, aud: &str, email: &str, exp_in: i64) -> serde_json::Value {
    let now = t.clock.now().as_second();
    testing::google_claims(aud, email, now + exp_in - 3600, now + exp_in)
}

fn ticks_audience() -> String {
    PushEndpoint::Ticks.audience(AUDIENCE)
}

/// A tick pushed with `authorization`; its status and body.
async fn tick_with(t: &mut TestApp, authorization: Option<String>) -> (u16, serde_json::Value) {
    t.push.authorization = authorization;
    let p = t.push.tick(t.clock.now()).await.unwrap();
    (p.status, p.body)
}

#[tokio::test]
async fn a_valid_pubsub_token_is_accepted() {
    let mut t = secured().await;
    let token = testing::sign(&claims(&t, &ticks_audience(), PUSHER, 3540));
    assert_eq!(
        tick_with(&mut t, Some(format!("Bearer {token}"))).await.0,
        200
    );
}

#[tokio::test]
async fn forged_or_misdirected_pushes_are_refused_with_401_and_a_generic_body() {
    let mut t = secured().await;
    let aud = ticks_audience();
    let now = t.clock.now().as_second();
    let cases = [
        ("no token", None),
        ("not a bearer token", Some("Basic dXNlcjpwYXNz".to_string())),
        ("garbage", Some("Bearer not.a.jwt".to_string())),
        (
            "bad signature",
            Some(format!(
                "Bearer {}",
                testing::sign_with_other_key(&claims(&t, &aud, PUSHER, 3540))
            )),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                testing::sign(&claims(&t, "https://elsewhere.example", PUSHER, 3540))
            )),
        ),
        (
            "the base audience, no endpoint's",
            Some(format!(
                "Bearer {}",
                testing::sign(&claims(&t, AUDIENCE, PUSHER, 3540))
            )),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                testing::sign(&claims(&t, &aud, PUSHER, -600))
            )),
        ),
        (
            "valid for ten years",
            Some(format!(
                "Bearer {}",
                testing::sign(&testing::google_claims(
                    &aud,
                    PUSHER,
                    now - 60,
                    now + 10 * 365 * 86_400
                ))
            )),
        ),
        (
            "wrong email",
            Some(format!(
                "Bearer {}",
                testing::sign(&claims(&t, &aud, "intruder@evil.example", 3540))
            )),
        ),
    ];
    for (what, auth) in cases {
        let (status, body) = tick_with(&mut t, auth).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(body, serde_json::json!({"error": "unauthorized"}), "{what}");
    }
    // Refused before anything was read or written.
    assert!(
        t.fake
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("/v2/"))
    );
}

#[tokio::test]
async fn an_unverified_email_is_refused() {
    let mut t = secured().await;
    let mut c = claims(&t, &ticks_audience(), PUSHER, 3540);
    c["email_verified"] = serde_json::json!(false);
    assert_eq!(
        tick_with(&mut t, Some(format!("Bearer {}", testing::sign(&c))))
            .await
            .0,
        401
    );
}

/// The status of an incident (`open` or `closed`) about `replay`'s stable revision.
async fn alert_status(t: &TestApp, state: &str) -> u16 {
    let now = t.clock.now();
    let stable = stable_of("replay");
    let p = t.push.alert("replay", &stable, REGION, state, now).await;
    p.unwrap().status
}

#[tokio::test]
async fn a_token_for_one_endpoint_is_refused_on_the_others() {
    let mut t = secured().await;
    t.service("replay", 20.0);
    let signer = PushSigner {
        audience: AUDIENCE.to_string(),
        email: PUSHER.to_string(),
        clock: fake_clock(&t.clock),
    };
    // Each endpoint accepts its own token…
    t.push.signer = Some(signer.clone());
    assert_eq!(t.push.tick(t.clock.now()).await.unwrap().status, 200);
    assert_eq!(alert_status(&t, "closed").await, 200);
    // …and none accepts another's: a captured tick token cannot post an incident or a build.
    t.push.authorization = Some(signer.authorization("ticks"));
    assert_eq!(alert_status(&t, "open").await, 401);
    let build = t
        .push
        .build("replay", REGION, "SUCCESS", t.clock.now())
        .await
        .unwrap();
    assert_eq!(build.status, 401);
    t.push.authorization = Some(signer.authorization("builds"));
    assert_eq!(t.push.tick(t.clock.now()).await.unwrap().status, 401);
}

#[tokio::test]
async fn an_unauthenticated_request_is_answered_before_its_body_is_sent() {
    let t = secured().await;
    let addr = t.push.base().trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Announces just under 1 MiB, sends 100 bytes of it, and waits.
    let head = format!(
        "POST /pubsub/builds HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1048575\r\n\r\n{}",
        "x".repeat(100)
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // Without authentication first, the server would wait for the other 1,048,475 bytes: the
    // bound below only keeps a regression from hanging the suite.
    let read = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "no answer while the body was unsent");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.ends_with(r#"{"error":"unauthorized"}"#), "{answer}");
}

#[tokio::test]
async fn unreachable_or_redirected_keys_answer_503_without_naming_them() {
    // The key server is down: 503, and the body names no URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}/certs", closed.local_addr().unwrap());
    drop(closed);
    let mut t = secured_with(&down).await;
    let token = testing::sign(&claims(&t, &ticks_audience(), PUSHER, 3540));
    let (status, body) = tick_with(&mut t, Some(format!("Bearer {token}"))).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        serde_json::json!({"error": "temporarily unavailable"})
    );

    // The key URL answers a redirect to a genuine key set: not followed.
    let (jwks, hits) = jwks_server().await;
    let redirector = serve(Router::new().route(
        "/certs",
        get(move || {
            let to = jwks.clone();
            async move { axum::response::Redirect::temporary(&to) }
        }),
    ))
    .await;
    let mut t = secured_with(&format!("{redirector}/certs")).await;
    let token = testing::sign(&claims(&t, &ticks_audience(), PUSHER, 3540));
    let (status, body) = tick_with(&mut t, Some(format!("Bearer {token}"))).await;
    assert_eq!(status, 503, "{body}");
    assert!(!body.to_string().contains("http"), "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
}

#[tokio::test]
async fn plain_http_key_urls_are_refused_outside_loopback() {
    let fake = cutover_fakes::FakeGcp::start(cutover_fakes::FakeClock::manual(t0())).await;
    let with_jwks = |jwks: &str| {
        args(
            &fake,
            &[
                "--push-auth",
                "google",
                "--push-audience",
                AUDIENCE,
                "--push-service-accounts",
                PUSHER,
                "--jwks-url",
                jwks,
            ],
        )
    };
    let refused = with_jwks("http://keys.example.net/certs")
        .validate()
        .unwrap_err();
    assert_eq!(refused.var, "CUTOVER_JWKS_URL");
    with_jwks("https://keys.example.net/certs")
        .validate()
        .unwrap();
    with_jwks("http://127.0.0.1:8081/certs").validate().unwrap();
}
