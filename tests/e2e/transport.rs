//! The HTTP edge under slow, idle, numerous or redirecting peers: the connection cap keeps
//! `/healthz` and pushes served, header-read and idle timeouts close what is left hanging, the
//! body limit holds, the smoke check reaches only the candidate's tag URL and follows no
//! redirect, and acknowledged bodies carry no URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use cutover_fakes::RevisionProfile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Longest wait for something the server should do at once (or after a 1 s timeout); it only
/// keeps a regression from hanging the suite.
const BOUND: Duration = Duration::from_secs(15);

fn addr_of(t: &TestApp) -> String {
    t.push.base().trim_start_matches("http://").to_string()
}

/// Whether the server closes `conn` within [`BOUND`] (whatever it sends first is discarded).
async fn closed_by_server(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let drained = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(BOUND, drained).await.is_ok()
}

/// A connection that sent the start of a request head and nothing more.
async fn half_sent(addr: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST /pubsub/ticks HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    c
}

#[tokio::test]
async fn at_the_cap_the_oldest_idle_connections_make_room_for_whole_requests() {
    let t = spawn_app(&["--max-connections", "8"]).await;
    let addr = addr_of(&t);
    let mut slow = Vec::new();
    for _ in 0..30 {
        slow.push(half_sent(&addr).await);
    }
    // A whole request on a new connection is served however many slow ones wait…
    let health = reqwest::Client::new()
        .get(format!("{}/healthz", t.push.base()))
        .timeout(BOUND)
        .send()
        .await
        .expect("/healthz answered");
    assert_eq!(health.status().as_u16(), 200);
    let tick = tokio::time::timeout(BOUND, t.push.tick(t.clock.now()))
        .await
        .expect("a push answered")
        .unwrap();
    assert_eq!(tick.status, 200, "{}", tick.body);
    // …because the oldest of them were closed to keep 8 open.
    for (i, conn) in slow.iter_mut().take(20).enumerate() {
        assert!(
            closed_by_server(conn).await,
            "slow connection {i} is still open"
        );
    }
}

#[tokio::test]
async fn a_request_head_dribbled_a_byte_at_a_time_is_cut_off() {
    let t = spawn_app(&["--header-read-timeout", "1s", "--idle-timeout", "60s"]).await;
    let mut conn = TcpStream::connect(addr_of(&t)).await.unwrap();
    conn.write_all(b"POST /pubsub/ticks HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 256];
    // One header byte every 100 ms: each keeps the connection busy, none completes the head.
    let closed = loop {
        if started.elapsed() > BOUND {
            break false;
        }
        if conn.write_all(b"x").await.is_err() {
            break true;
        }
        let read = tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            break true;
        }
    };
    assert!(closed, "a head dribbled for {BOUND:?} is still being read");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let t = spawn_app(&["--idle-timeout", "1s", "--header-read-timeout", "60s"]).await;
    let addr = addr_of(&t);
    // One that never sends a byte.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    // One that sends a request, gets its answer, and keeps the connection.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    kept.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    assert!(
        closed_by_server(&mut silent).await,
        "a silent connection stayed open"
    );
    assert!(
        closed_by_server(&mut kept).await,
        "an idle keep-alive connection stayed open"
    );
}

#[tokio::test]
async fn a_body_over_512_kib_is_refused() {
    let t = spawn_app(&[]).await;
    let p = t
        .push
        .post_raw("/pubsub/builds", vec![b' '; 600 * 1024])
        .await
        .unwrap();
    assert_eq!(p.status, 413);
}

/// A candidate that answers `302` towards a server that would answer 200; counts that server's
/// hits. Returns (the candidate's smoke URL, the hits).
async fn redirecting_candidate() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let target = serve(Router::new().route(
        "/computeMetadata/v1/",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        }),
    ))
    .await;
    let to = format!("{target}/computeMetadata/v1/");
    let candidate = serve(Router::new().route(
        "/healthz",
        get(move || {
            let to = to.clone();
            async move { (StatusCode::FOUND, [(header::LOCATION, to)]) }
        }),
    ))
    .await;
    (format!("{candidate}/healthz"), hits)
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_redirect_fails_the_smoke_check_and_is_not_followed() {
    let t = spawn_app(&["--smoke-path", "/healthz"]).await;
    let (url, hits) = redirecting_candidate().await;
    let deadline = tokio::time::Instant::now() + BOUND;
    let err = t
        .app
        .reconciler
        .smoke
        .check(&url, deadline)
        .await
        .expect_err("a 302 is no pass");
    assert!(err.contains("302") && err.contains("redirect"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
}

#[tokio::test]
async fn a_candidate_answering_302_is_rolled_back_before_any_traffic() {
    let t = spawn_app(&["--smoke-path", "/healthz"]).await;
    t.service("hop", 20.0);
    let p = t
        .release("hop", RevisionProfile::healthy().with_smoke_status(302))
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(t.candidate_steps("hop"), vec![0], "never any traffic");
    assert_eq!(
        t.annotation("hop", "cutover.dev/phase").as_deref(),
        Some("rolled-back")
    );
    let reason = t.annotation("hop", "cutover.dev/reason").unwrap();
    assert!(reason.contains("redirect"), "{reason}");
    // The caller's body keeps the reason but not the tag URL.
    assert!(!p.body.to_string().contains("http"), "{}", p.body);
}

#[tokio::test]
async fn the_smoke_check_requests_only_the_configured_path_on_the_tag_urls_host() {
    let t = spawn_app(&["--smoke-path", "/healthz"]).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let host = serve(Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "ok" }
    }))
    .await;
    let deadline = tokio::time::Instant::now() + BOUND;
    let smoke = &t.app.reconciler.smoke;
    let authority = host.trim_start_matches("http://");
    for url in [
        format!("{host}/other"),
        format!("http://evil@{authority}/healthz"),
        format!("{host}?x=/healthz"),
        format!("{host}#/healthz"),
        format!("http://127.0.0.1@{authority}/healthz"),
    ] {
        let err = smoke.check(&url, deadline).await.expect_err(&url);
        assert!(err.contains("not sent"), "{url}: {err}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing was sent");
    smoke
        .check(&format!("{host}/healthz"), deadline)
        .await
        .expect("the tag URL's own path");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn smoke_paths_that_could_change_the_host_stop_start_up() {
    let fake = cutover_fakes::FakeGcp::start(cutover_fakes::FakeClock::manual(t0())).await;
    let parse = |path: &str| {
        crate::support::try_serve_args(&fake, PROJECT, REGION, &["--smoke-path", path])
            .map(|a| a.smoke_path)
    };
    for bad in [
        "//evil.example/",
        "@evil.example",
        "/x@evil.example",
        "/\\evil.example",
        "/health z",
        "/healthz#frag",
        ".evil.example",
        "/h\u{e9}alth",
    ] {
        let err = parse(bad).expect_err(bad);
        assert!(err.contains("CUTOVER_SMOKE_PATH"), "{bad}: {err}");
    }
    assert_eq!(parse("healthz").unwrap().as_deref(), Some("/healthz"));
    assert_eq!(
        parse("/ready?probe=cutover").unwrap().as_deref(),
        Some("/ready?probe=cutover")
    );
}

#[tokio::test]
async fn acknowledged_answers_name_no_url() {
    let t = spawn_app(&[]).await;
    // A build for a service Cloud Run does not know: acknowledged, with the API's answer as the
    // reason, minus the API's URL.
    let p = t
        .push
        .build("ghost", REGION, "SUCCESS", t.clock.now())
        .await
        .unwrap();
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["outcome"], "ignored");
    assert!(
        p.body["reason"].as_str().unwrap().contains("not found"),
        "{}",
        p.body
    );
    assert!(!p.body.to_string().contains("http"), "{}", p.body);
}
