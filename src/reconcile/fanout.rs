//! Fan-out: a tick that finds many running rollouts publishes one "evaluate this service"
//! message per rollout on the evaluations topic instead of evaluating them itself; Pub/Sub
//! pushes each to `POST /pubsub/evaluations` of whichever cutover instance Cloud Run picks.
//!
//! Ticks then cost a listing and a batch of publishes however many rollouts are due, and the
//! evaluations spread over as many instances as Cloud Run starts. Nothing new has to hold
//! single flight across instances: within an instance [`crate::flight`] keeps one evaluation per
//! service; across instances each write is guarded by the etag read just before it, so of two
//! instances evaluating one service at once only one write lands and the other observes again
//! and decides on what the first wrote (`Reconciler::run`), as with duplicated deliveries today.
//!
//! A small tick (at most [`Fanout::threshold`] due rollouts, `CUTOVER_FANOUT_THRESHOLD`) still
//! evaluates in-process: one round of concurrent evaluations is then as fast as the publish and
//! push hop, and costs no extra instance or message.

use std::time::Duration;

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use tokio::time::Instant;

use crate::target::ServiceRef;

/// How long the Pub/Sub client keeps retrying a transient publish error.
const CLIENT_RETRY_LIMIT: Duration = Duration::from_secs(10);

/// Publishes per batch: Pub/Sub takes up to 1,000 messages per publish request.
const BATCH_MESSAGES: u32 = 1000;

/// Where evaluations are published, and from how many due rollouts on.
pub struct Fanout {
    publisher: Publisher,
    /// Ticks with at most this many due rollouts evaluate them in-process.
    pub threshold: usize,
    topic: String,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("topic", &self.topic)
            .field("threshold", &self.threshold)
            .finish()
    }
}

/// The message data of one evaluation: the service's full resource name.
pub fn encode(service: &ServiceRef) -> Vec<u8> {
    serde_json::json!({ "service": service.resource_name() })
        .to_string()
        .into_bytes()
}

/// The service an evaluation message names, or why it names none.
pub fn decode(data: &[u8]) -> Result<ServiceRef, String> {
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("message data is not JSON: {e}"))?;
    let name = value
        .get("service")
        .and_then(|s| s.as_str())
        .ok_or("message data has no \"service\"")?;
    ServiceRef::from_resource_name(name).ok_or_else(|| {
        format!(
            "{name:?} is not projects/PROJECT/locations/REGION/services/SERVICE, apps/PROJECT/services/SERVICE or projects/PROJECT/global/urlMaps/MAP"
        )
    })
}

impl Fanout {
    /// A publisher for `topic` (`projects/P/topics/T`), through the emulator at `emulator_host`
    /// when set. Fails only if the client cannot be built (a start-up error).
    pub async fn start(
        topic: &str,
        emulator_host: Option<&str>,
        threshold: usize,
    ) -> Result<Fanout, String> {
        let builder = crate::gcp::pubsub::publisher(
            topic,
            emulator_host,
            CLIENT_RETRY_LIMIT,
            Duration::from_millis(10),
        )
        .set_message_count_threshold(BATCH_MESSAGES);
        let publisher = builder
            .build()
            .await
            .map_err(|e| format!("Pub/Sub publisher for {topic}: {e}"))?;
        Ok(Fanout {
            publisher,
            threshold,
            topic: topic.to_string(),
        })
    }

    /// Publishes one evaluation per service, batched by the client; returns how many were
    /// published and a description of each failure (the tick is then redelivered, and the
    /// services published twice are evaluated twice, which the etag makes harmless).
    pub async fn publish(
        &self,
        services: &[ServiceRef],
        deadline: Instant,
    ) -> (usize, Vec<String>) {
        let sent: Vec<_> = services
            .iter()
            .map(|s| {
                let msg = Message::new().set_data(encode(s)).set_attributes([
                    ("project", s.project.to_string()),
                    ("region", s.region.to_string()),
                    ("service", s.name.to_string()),
                ]);
                self.publisher.publish(msg)
            })
            .collect();
        let all = futures::future::join_all(sent);
        let results = match tokio::time::timeout_at(deadline, all).await {
            Ok(r) => r,
            Err(_) => {
                return (
                    0,
                    vec![format!(
                        "publishing {} evaluations to {} did not finish before the deadline",
                        services.len(),
                        self.topic
                    )],
                );
            }
        };
        let mut published = 0;
        let mut failures = Vec::new();
        for (service, r) in services.iter().zip(results) {
            match r {
                Ok(_) => published += 1,
                Err(e) => failures.push(format!("{service}: publishing its evaluation: {e}")),
            }
        }
        (published, failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evaluation_names_one_service_and_nothing_else_decodes() {
        let s = ServiceRef::checked("p-1", "europe-west1", "api").unwrap();
        assert_eq!(decode(&encode(&s)), Ok(s));
        assert!(decode(b"{}").is_err());
        assert!(decode(b"not json").is_err());
        assert!(decode(br#"{"service":"projects/P_/locations/r/services/s"}"#).is_err());
    }
}
