//! The push edge in-process, against a Google that never answers: what each kind of push is
//! answered, and the log line each answer leaves (written by the trace layer, not by handlers).

use std::fmt;
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::http::Request;
use clap::Parser;
use tracing::field::Field;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use super::*;
use crate::config::{Cli, Command};

/// Every event logged while a guard from [`Logs::capture`] lives, one line each: its level,
/// then each field as `name=value` (the message as `message=…`).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Logs {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut line = event.metadata().level().to_string();
        event.record(&mut |field: &Field, value: &dyn fmt::Debug| {
            line.push_str(&format!(" {}={value:?}", field.name()));
        });
        self.0.lock().expect("log lines").push(line);
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    /// The first line containing `what`.
    fn line(&self, what: &str) -> String {
        let lines = self.0.lock().expect("log lines");
        lines
            .iter()
            .find(|l| l.contains(what))
            .cloned()
            .unwrap_or_default()
    }
}

/// The routes of a cutover whose Google endpoints (and key server) are a closed port.
async fn routes(extra: &[&str]) -> Router {
    let nowhere = "http://127.0.0.1:1";
    let mut argv = vec![
        "cutover",
        "serve",
        "--project",
        "acme-prod",
        "--region",
        "europe-west1",
        "--run-endpoint",
        nowhere,
        "--monitoring-endpoint",
        nowhere,
        "--metadata-host",
        "127.0.0.1:1",
        "--auth",
        "none",
        "--push-auth",
        "none",
        "--event-deadline",
        "1s",
    ];
    argv.extend_from_slice(extra);
    let Command::Serve(args) = Cli::try_parse_from(argv).expect("flags parse").command else {
        unreachable!("the flags name serve")
    };
    app(build(&args, Clock::System).await.expect("cutover starts"))
}

/// A push envelope whose `data` field is `data` as given (base64, or not).
fn envelope(data: &str) -> Body {
    Body::from(format!(
        r#"{{"message":{{"data":"{data}","messageId":"7"}},"subscription":"projects/p/subscriptions/ticks"}}"#
    ))
}

async fn post(routes: &mut Router, path: &str, body: Body) -> (u16, serde_json::Value) {
    let req = Request::post(path).body(body).expect("request");
    let response = tower_service::Service::call(routes, req)
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn a_message_whose_data_is_not_base64_is_acknowledged_and_its_reason_logged() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let mut routes = routes(&[]).await;
    let (status, body) = post(&mut routes, "/pubsub/ticks", envelope("%%%")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "ignored");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("message data is not valid base64"),
        "{body}"
    );
    let line = logs.line("message acknowledged and ignored");
    assert!(line.contains("INFO"), "{line:?}");
    assert!(line.contains("message_id=7"), "{line:?}");
    assert!(line.contains("not valid base64"), "{line:?}");
}

#[tokio::test]
async fn a_google_that_does_not_answer_is_a_nack_whose_log_shows_every_cause() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let mut routes = routes(&[]).await;
    // "e30=" is `{}`: a tick, which lists the services of every region.
    let (status, body) = post(&mut routes, "/pubsub/ticks", envelope("e30=")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        json!({"error": "temporarily unavailable", "messageId": "7"}),
        "no cause in the body"
    );
    let line = logs.line("asking Pub/Sub to redeliver");
    assert!(line.contains("WARN"), "{line:?}");
    assert!(
        line.contains("deadline exceeded after") && line.contains("connection failed"),
        "the reason is the whole chain: {line:?}"
    );
}

#[tokio::test]
async fn a_push_without_a_token_is_refused_before_its_body_is_read() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let mut routes = routes(&[
        "--push-auth",
        "google",
        "--push-audience",
        "https://cutover.example",
        "--push-service-accounts",
        "pusher@acme-prod.iam.gserviceaccount.com",
        "--jwks-url",
        "http://127.0.0.1:1/certs",
    ])
    .await;
    // A body that never arrives: reading it would hang this request.
    let never = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        post(&mut routes, "/pubsub/builds", never),
    )
    .await;
    let (status, body) = answered.expect("answered without reading the body");
    assert_eq!(status, 401);
    assert_eq!(body, json!({"error": "unauthorized"}));
    let line = logs.line("push refused");
    assert!(line.contains("WARN"), "{line:?}");
}
