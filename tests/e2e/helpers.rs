//! The end-to-end tests' project and region, over the shared support (`tests/support/`).

use cutover::clock::Clock;
use cutover::config::ServeArgs;
use cutover_fakes::FakeGcp;

pub use crate::support::{TestApp, candidate_of, fake_clock, stable_of, t0};

pub const PROJECT: &str = "test-project";
pub const REGION: &str = "europe-west1";

/// cutover settings pointing at `fake`, with `extra` flags appended (later flags win).
pub fn args(fake: &FakeGcp, extra: &[&str]) -> ServeArgs {
    let mut flags = vec!["--event-deadline", "10s"];
    flags.extend_from_slice(extra);
    crate::support::serve_args(fake, PROJECT, REGION, &flags)
}

/// A cutover instance against fresh fakes on a manual clock.
pub async fn spawn_app(extra: &[&str]) -> TestApp {
    TestApp::start(PROJECT, REGION, extra).await
}

/// A cutover instance against existing fakes (a second instance, or a restarted one).
pub async fn spawn_on(fake: FakeGcp, clock: Clock, extra: &[&str]) -> TestApp {
    TestApp::start_on(PROJECT, REGION, fake, clock, extra).await
}

/// No credentials, as the Pub/Sub emulator wants.
pub fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

/// Topic and subscription admin clients of the emulator at `endpoint` (`http://host:port`).
pub async fn emulator_admins(
    endpoint: &str,
) -> (
    google_cloud_pubsub::client::TopicAdmin,
    google_cloud_pubsub::client::SubscriptionAdmin,
) {
    let topics = google_cloud_pubsub::client::TopicAdmin::builder()
        .with_endpoint(endpoint)
        .with_credentials(anonymous())
        .build()
        .await
        .expect("topic admin");
    let subs = google_cloud_pubsub::client::SubscriptionAdmin::builder()
        .with_endpoint(endpoint)
        .with_credentials(anonymous())
        .build()
        .await
        .expect("subscription admin");
    (topics, subs)
}
