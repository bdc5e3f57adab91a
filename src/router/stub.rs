//! A scripted HTTP API for the split platforms' tests: every request is recorded (method, path
//! with query, JSON body) and answered by the test's function, so a test checks both what a
//! router sends on the wire and what it makes of each answer, without the fakes crate (whose
//! App Engine and Compute views are exercised end to end by the e2e suites).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request as the stub received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    /// The JSON body (`Null` when there was none).
    pub body: Value,
}

type Answer = dyn Fn(&Seen, usize) -> (u16, Value) + Send + Sync;

/// A running stub: its base URL and what it received.
pub struct Stub {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    /// Serves `answer(request, how many requests came before)` on a loopback port.
    pub async fn serve(
        answer: impl Fn(&Seen, usize) -> (u16, Value) + Send + Sync + 'static,
    ) -> Stub {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
            let log = log.clone();
            let answer = answer.clone();
            async move {
                let s = Seen {
                    method: method.to_string(),
                    uri: uri.to_string(),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                };
                let n = {
                    let mut log = log.lock().expect("lock");
                    log.push(s.clone());
                    log.len() - 1
                };
                let (status, json) = answer(&s, n);
                let status = StatusCode::from_u16(status).expect("a status");
                let r: Response = (status, axum::Json(json)).into_response();
                r
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Stub {
            base: format!("http://{addr}"),
            seen,
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// A Google client with no credentials, for this stub.
    pub fn google() -> crate::gcp::Google {
        crate::gcp::Google::new(reqwest::Client::new(), crate::gcp::TokenSource::None)
    }
}
