//! The limiter in front of the App Engine Admin and Compute APIs, counted where Google would
//! count the calls: at the fake API, per 60-second window (Firestore's is counted in
//! `router::firestore`'s tests, with these helpers), and Compute's own way of saying "rate
//! quota exceeded".

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;
use crate::gcp::Google;
use crate::gcp::appengine::AppEngineClient;
use crate::gcp::compute::ComputeClient;
use crate::ids::{ProjectId, ServiceName};
use crate::target::{Platform, ServiceRef};
use cutover_fakes::testkit::{PROJECT, fake_with_app_engine, fake_with_url_map};

fn global(platform: Platform, name: &str) -> ServiceRef {
    ServiceRef::global(
        platform,
        ProjectId::parse(PROJECT).expect("a project id"),
        ServiceName::parse(name).expect("a name"),
    )
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// Runs `calls` to completion, moving `clock` on 20 s whenever every call `quota` let through
/// has reached the API (`arrived` counts them there): the limiter is the only thing that
/// spreads the calls over time. They run as an alert's ([`urgent`]), which waits for a slot
/// however far away it is (a routine call would give its event back instead).
pub(crate) async fn spread<T: Send + 'static>(
    clock: &Clock,
    quota: &Quota,
    calls: impl Future<Output = T> + Send + 'static,
    arrived: impl Fn() -> u64,
) -> T {
    let all = tokio::spawn(urgent(calls));
    while !all.is_finished() {
        while arrived() < quota.granted() {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if arrived() >= quota.granted() {
            clock.advance(SignedDuration::from_secs(20));
        }
    }
    all.await.expect("the calls ran")
}

/// No 60-second span of `at` holds more than `limit` calls, and they did not all go at once.
pub(crate) fn at_most_per_window(at: &[Timestamp], limit: usize) {
    for start in at {
        let end = *start + SignedDuration::from_secs(60);
        let inside = at.iter().filter(|t| *t >= start && **t < end).count();
        assert!(
            inside <= limit,
            "{inside} calls in the minute from {start}: {at:?}"
        );
    }
    assert!(at.last() > at.first(), "spread over time: {at:?}");
}

pub(crate) fn limited(limits: Limits, clock: &Clock) -> (Arc<Quota>, Google) {
    let quota = Arc::new(Quota::new(limits, clock.clone()));
    let google = Google::new(reqwest::Client::new(), crate::gcp::TokenSource::None)
        .with_quota(quota.clone());
    (quota, google)
}

/// Runs `calls` ([`spread`]) against `fake`; every call must get through. Returns when each
/// reached the fake (its clock).
async fn at_the_fake<T: Send + 'static, E: std::fmt::Debug + Send + 'static>(
    fake: &cutover_fakes::FakeGcp,
    clock: &Clock,
    quota: &Quota,
    calls: impl Future<Output = Vec<Result<T, E>>> + Send + 'static,
) -> Vec<Timestamp> {
    let before = fake.requests().len();
    let arrived = || (fake.requests().len() - before) as u64;
    for r in spread(clock, quota, calls, arrived).await {
        r.expect("every call got through in the end");
    }
    fake.requests()[before..].iter().map(|r| r.at).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_engine_admin_calls_stay_within_their_budget_per_window() {
    let (fake, fake_clock) = fake_with_app_engine().await;
    let clock = Clock::Manual(fake_clock.shared().expect("a manual clock"));
    let limit = 4;
    let (quota, google) = limited(
        Limits {
            appengine_calls: limit,
            ..Limits::UNLIMITED
        },
        &clock,
    );
    let client = AppEngineClient::new(google, &fake.base_url());
    let at = at_the_fake(&fake, &clock, &quota, async move {
        let web = global(Platform::AppEngine, "web");
        let reads = (0..10).map(|_| client.get_service(&web, far()));
        futures::future::join_all(reads).await
    })
    .await;
    assert_eq!(at.len(), 10);
    at_most_per_window(&at, limit as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_reads_stay_within_their_budget_per_window_and_writes_have_their_own() {
    let (fake, fake_clock) = fake_with_url_map().await;
    let clock = Clock::Manual(fake_clock.shared().expect("a manual clock"));
    let limit = 3;
    let (quota, google) = limited(
        Limits {
            compute_reads: limit,
            compute_writes: 1,
            ..Limits::UNLIMITED
        },
        &clock,
    );
    let client = ComputeClient::new(google, &fake.base_url());
    let at = at_the_fake(&fake, &clock, &quota, async move {
        let web = global(Platform::LoadBalancer, "web");
        let reads = (0..8).map(|_| client.get_url_map(&web, far()));
        futures::future::join_all(reads).await
    })
    .await;
    assert_eq!(at.len(), 8);
    at_most_per_window(&at, limit as usize);
    // The reads spent nothing of the write budget: a write still goes at once.
    let write = Bucket::of(
        "PATCH",
        &format!(
            "{}/compute/v1/projects/p/global/urlMaps/web",
            fake.base_url()
        ),
    );
    let soon = Instant::now() + Duration::from_millis(50);
    quota
        .acquire(&write.expect("a Compute write"), soon)
        .await
        .unwrap();
}

#[tokio::test]
async fn routine_calls_leave_each_buckets_reserve_to_alerts() {
    let quota = Quota::new(
        Limits {
            compute_writes: 10,
            ..Limits::UNLIMITED
        },
        Clock::manual("2026-08-20T10:00:00Z".parse().unwrap()),
    );
    let write = Bucket::of("PATCH", "http://x/compute/v1/projects/p/global/urlMaps/m").unwrap();
    let soon = || Instant::now() + Duration::from_millis(30);
    for _ in 0..8 {
        quota.acquire(&write, soon()).await.unwrap();
    }
    let e = quota.acquire(&write, soon()).await.unwrap_err();
    assert_eq!(e.kind(), crate::failure::ErrorKind::Transient, "{e}");
    // The last two slots of the window are alerts'.
    urgent(quota.acquire(&write, soon())).await.unwrap();
    urgent(quota.acquire(&write, soon())).await.unwrap();
    assert!(
        urgent(quota.acquire(&write, soon())).await.is_err(),
        "and no more"
    );
}

/// Serves Compute's `403 rateLimitExceeded` to the first request and a URL map to the others;
/// returns its base URL and how many requests it got.
async fn rate_limited_once() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move || {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                let limited = json!({"error": {"code": 403, "message": "Rate Limit Exceeded",
                    "errors": [{"message": "Rate Limit Exceeded", "domain": "usageLimits", "reason": "rateLimitExceeded"}]}});
                (axum::http::StatusCode::FORBIDDEN, axum::Json(limited))
            } else {
                let map = json!({"name": "web", "fingerprint": "f1"});
                (axum::http::StatusCode::OK, axum::Json(map))
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, count)
}

#[tokio::test]
async fn compute_rate_limit_403_is_retried_after_holding_its_bucket() {
    let (base, count) = rate_limited_once().await;
    let google = Google::new(reqwest::Client::new(), crate::gcp::TokenSource::None);
    let url = format!("{base}/compute/v1/projects/p/global/urlMaps/web");
    let got: Value = google.get(&url, far()).await.expect("retried, not refused");
    assert_eq!(got["name"], "web");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Other 403s are still permissions, not worth a retry.
    let denied = crate::gcp::status_error(
        "GET",
        "/compute/v1/projects/p/global/urlMaps/web",
        403,
        br#"{"error": {"code": 403, "message": "Required 'compute.urlMaps.get' permission", "errors": [{"reason": "forbidden"}]}}"#,
    );
    assert_eq!(denied.kind(), crate::failure::ErrorKind::Permanent);
}
