//! Push authentication: only Pub/Sub's own OIDC tokens for the configured audience and
//! service accounts get through.

use axum::Router;
use axum::routing::get;
use cutover::events::testing;

use crate::helpers::*;

const AUDIENCE: &str = "https://cutover-123456789012.europe-west1.run.app";
const PUSHER: &str = "cutover-push@test-project.iam.gserviceaccount.com";

async fn jwks_server() -> String {
    let app = Router::new().route("/certs", get(|| async { axum::Json(testing::jwks_json()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/certs")
}

async fn secured() -> TestApp {
    let jwks = jwks_server().await;
    spawn_app(&[
        "--push-auth",
        "google",
        "--jwks-url",
        &jwks,
        "--push-audience",
        AUDIENCE,
        "--push-service-accounts",
        PUSHER,
    ])
    .await
}

fn claims(t: &TestApp, aud: &str, email: &str, exp_in: i64) -> serde_json::Value {
    let now = t.clock.now().as_second();
    testing::google_claims(aud, email, now - 60, now + exp_in)
}

async fn tick_with(t: &mut TestApp, authorization: Option<String>) -> u16 {
    t.push.authorization = authorization;
    t.push.tick(t.clock.now()).await.unwrap().status
}

#[tokio::test]
async fn a_valid_pubsub_token_is_accepted() {
    let mut t = secured().await;
    let token = testing::sign(&claims(&t, AUDIENCE, PUSHER, 3600));
    assert_eq!(
        tick_with(&mut t, Some(format!("Bearer {token}"))).await,
        200
    );
}

#[tokio::test]
async fn forged_or_misdirected_pushes_are_refused_with_401() {
    let mut t = secured().await;
    let cases = [
        ("no token", None),
        ("not a bearer token", Some("Basic dXNlcjpwYXNz".to_string())),
        ("garbage", Some("Bearer not.a.jwt".to_string())),
        (
            "bad signature",
            Some(format!(
                "Bearer {}",
                testing::sign_with_other_key(&claims(&t, AUDIENCE, PUSHER, 3600))
            )),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                testing::sign(&claims(&t, "https://elsewhere.example", PUSHER, 3600))
            )),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                testing::sign(&claims(&t, AUDIENCE, PUSHER, -600))
            )),
        ),
        (
            "wrong email",
            Some(format!(
                "Bearer {}",
                testing::sign(&claims(&t, AUDIENCE, "intruder@evil.example", 3600))
            )),
        ),
    ];
    for (what, auth) in cases {
        assert_eq!(tick_with(&mut t, auth).await, 401, "{what}");
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
    let mut c = claims(&t, AUDIENCE, PUSHER, 3600);
    c["email_verified"] = serde_json::json!(false);
    assert_eq!(
        tick_with(&mut t, Some(format!("Bearer {}", testing::sign(&c)))).await,
        401
    );
}
