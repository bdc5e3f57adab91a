//! Publishers of Google's official Pub/Sub client, configured one way for every topic cutover
//! publishes on (lifecycle events, fanned-out evaluations): transient errors retried for a
//! bounded time, and the emulator reached without credentials when `PUBSUB_EMULATOR_HOST` is set.

use std::time::Duration;

use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_pubsub::builder::publisher::PublisherBuilder;
use google_cloud_pubsub::client::Publisher;

/// A publisher builder for `topic` (`projects/P/topics/T`) that retries transient errors for
/// up to `retry_limit` and sends a batch at the latest `delay` after its first message; through
/// the emulator at `emulator_host` (plain HTTP/2, no credentials) when set.
pub fn publisher(
    topic: &str,
    emulator_host: Option<&str>,
    retry_limit: Duration,
    delay: Duration,
) -> PublisherBuilder {
    let retry = google_cloud_pubsub::retry_policy::RetryableErrors.with_time_limit(retry_limit);
    let builder = Publisher::builder(topic.to_string())
        .with_retry_policy(retry)
        .set_delay_threshold(delay);
    match emulator_host {
        Some(host) => builder
            .with_endpoint(format!("http://{host}"))
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build()),
        None => builder,
    }
}
