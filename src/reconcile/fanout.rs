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
//! **The tick's read travels with the message.** The listing has every service's resource,
//! etag and record in hand; when the router can carry its reads ([`TrafficRouter::carry`]:
//! Cloud Run carries the service resource exactly as listed), the message carries it and the
//! instance that gets the push decides on it, as an in-process tick decides on the listing,
//! without reading the service again: a step that holds costs its Monitoring query, one that
//! advances the query, the PATCH and its wait. Safety is the etag, as everywhere: the write
//! built from a carried read is guarded by the etag it was listed with, so if anyone wrote in
//! between (an alert's rollback, another instance, a person) the write is refused as a conflict
//! and `Reconciler::run` observes the service afresh and decides on what is there. A decision
//! that writes nothing on a stale read (a hold) is what the in-process tick would have made on
//! its listing; the next tick reads again. A carried read is ignored, and the service read
//! afresh, when it is not a read of the service the message names, does not parse, has no etag
//! to guard a write, or is older than [`MAX_CARRIED_AGE`]. A message naming only the service
//! (from an instance before this change, during a rolling deploy; a read above
//! [`MAX_CARRIED_BYTES`]; a router that cannot carry) is evaluated on a fresh read as before.
//!
//! A carried read is trusted as cutover's own listing: whoever can publish on the evaluations
//! topic can now have cutover decide on, and write back, a service body of their making (a
//! write needs the service's current etag, which anyone who can read the service has).
//! Publishing there must stay cutover's alone (`infra/iam.tf` grants it to the runtime account
//! on that topic only; a project-wide `roles/pubsub.publisher` would also reach it).
//!
//! A small tick (at most [`Fanout::threshold`] due rollouts, `CUTOVER_FANOUT_THRESHOLD`) still
//! evaluates in-process: one round of concurrent evaluations is then as fast as the publish and
//! push hop, and costs no extra instance or message.

use std::time::Duration;

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tokio::time::Instant;

use super::{DecisionRecord, Origin, ReconcileError, Reconciler};
use crate::decision::Trigger;
use crate::flight::Urgency;
use crate::metrics::MetricsSource;
use crate::router::{Observation, TrafficRouter};
use crate::target::ServiceRef;

/// How long the Pub/Sub client keeps retrying a transient publish error.
const CLIENT_RETRY_LIMIT: Duration = Duration::from_secs(10);

/// Publishes per batch: Pub/Sub takes up to 1,000 messages per publish request.
const BATCH_MESSAGES: u32 = 1000;

/// Bytes per batch, as the client counts them. Pub/Sub takes 10 MB per publish request. The
/// official client counts a message as its data, ordering key and attributes (not the
/// request's framing), sends the batch it holds before adding a message that would take it
/// over this threshold, and sends a message larger than the threshold alone. With messages of
/// at most [`MAX_CARRIED_BYTES`] and a few hundred bytes more, a request is then at most 1 MB
/// plus the framing of 1,000 messages (tens of bytes each): a tenth of the limit, and under
/// the 4 MiB a gRPC server takes by default (the emulator). Set here, not left to the client's
/// default, so that a change of default cannot take it past the limit.
const BATCH_BYTES: u32 = 1_000_000;

/// Largest message data that carries a read, in bytes of JSON; a read that would make it larger
/// is not carried (the message names the service only, and the evaluation reads it). A Cloud Run service resource is a few KB (the
/// captured one, 5 KB) and grows with env vars, secrets, volumes and tags to tens of KB; 64
/// KiB carries all of those. The push endpoint takes 512 KiB (`server::MAX_BODY_BYTES`), the
/// data base64-encoded (4/3), so this is far inside it; and Pub/Sub bills every byte published
/// and delivered, so a resource larger than this costs more carried than read again.
pub const MAX_CARRIED_BYTES: usize = 64 * 1024;

/// Oldest carried read an evaluation decides on, from the start of the tick's listing; an
/// older one is ignored and the service read afresh. One tick period (Cloud Scheduler ticks
/// once a minute, its finest schedule): a read within it is no older than what an in-process
/// tick decides on when its evaluations queue behind each other or wait for quota, while an
/// older one is older than the next tick's own listing. A delivery that took longer than that
/// (a redelivery after a 503, Pub/Sub's backoff, a backlog) gets a fresh read, so a decision
/// that writes nothing, which no etag checks, is never made on a read minutes old.
pub const MAX_CARRIED_AGE: SignedDuration = SignedDuration::from_secs(60);

/// How far ahead of this instance's clock a listing's time may be (clocks of instances differ
/// by milliseconds); a stamp further ahead is not believed, and the service is read afresh.
const MAX_CLOCK_AHEAD: SignedDuration = SignedDuration::from_secs(1);

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

/// One evaluation, as a message carries it: the service, and the tick's read of it when the
/// message carries one.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub service: ServiceRef,
    pub carried: Option<Carried>,
}

/// A tick's read of a service, in its router's form ([`TrafficRouter::carry`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Carried {
    /// When the listing it came from started: the read is no older.
    pub listed_at: Timestamp,
    pub read: Value,
}

/// The message data of one evaluation: `{"service": NAME}`, and with a carried read
/// `"listedAt"` and `"read"`, unless the read is larger than [`MAX_CARRIED_BYTES`].
pub fn encode(evaluation: &Evaluation) -> Vec<u8> {
    let service = evaluation.service.resource_name();
    if let Some(c) = &evaluation.carried {
        let data = serde_json::json!({
            "service": service,
            "listedAt": c.listed_at,
            "read": c.read,
        })
        .to_string()
        .into_bytes();
        if data.len() <= MAX_CARRIED_BYTES {
            return data;
        }
    }
    serde_json::json!({ "service": service })
        .to_string()
        .into_bytes()
}

/// The evaluation a message asks for, or why it names no service. A carried read without a
/// listing time is dropped here (the service is then read afresh); whether the read itself is
/// usable is for the router to say ([`TrafficRouter::resume`]).
pub fn decode(data: &[u8]) -> Result<Evaluation, String> {
    let value: Value =
        serde_json::from_slice(data).map_err(|e| format!("message data is not JSON: {e}"))?;
    let name = value
        .get("service")
        .and_then(|s| s.as_str())
        .ok_or("message data has no \"service\"")?;
    let service = ServiceRef::from_resource_name(name).ok_or_else(|| {
        format!(
            "{name:?} is not projects/PROJECT/locations/REGION/services/SERVICE, apps/PROJECT/services/SERVICE or projects/PROJECT/global/urlMaps/MAP"
        )
    })?;
    let listed_at = value
        .get("listedAt")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<Timestamp>().ok());
    let carried = match (value.get("read"), listed_at) {
        (None | Some(Value::Null), _) => None,
        (Some(read), Some(listed_at)) => Some(Carried {
            listed_at,
            read: read.clone(),
        }),
        (Some(_), None) => {
            tracing::info!(service = %service, "carried read without a valid listedAt: reading the service afresh");
            None
        }
    };
    Ok(Evaluation { service, carried })
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
        .set_message_count_threshold(BATCH_MESSAGES)
        .set_byte_threshold(BATCH_BYTES);
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

    /// Publishes each evaluation, batched by the client; returns how many were published and
    /// a description of each failure (the tick is then redelivered, and the services published
    /// twice are evaluated twice, which the etag makes harmless).
    pub async fn publish(
        &self,
        evaluations: &[Evaluation],
        deadline: Instant,
    ) -> (usize, Vec<String>) {
        let sent: Vec<_> = evaluations
            .iter()
            .map(|e| {
                let s = &e.service;
                let msg = Message::new().set_data(encode(e)).set_attributes([
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
                        evaluations.len(),
                        self.topic
                    )],
                );
            }
        };
        let mut published = 0;
        let mut failures = Vec::new();
        for (e, r) in evaluations.iter().zip(results) {
            match r {
                Ok(_) => published += 1,
                Err(err) => {
                    failures.push(format!("{}: publishing its evaluation: {err}", e.service))
                }
            }
        }
        (published, failures)
    }
}

impl<R: TrafficRouter, M: MetricsSource> Reconciler<R, M> {
    /// The evaluations a tick publishes for `active`, the reads of its listing that started at
    /// `listed_at`: each carries its read when the router can carry it.
    pub(super) fn evaluations(
        &self,
        active: &[Observation<R::Version>],
        listed_at: Timestamp,
    ) -> Vec<Evaluation> {
        active
            .iter()
            .map(|read| Evaluation {
                service: read.observed.service.clone(),
                carried: self
                    .router
                    .carry(read)
                    .map(|read| Carried { listed_at, read }),
            })
            .collect()
    }

    /// A fanned-out evaluation of `target` (resolved from the message's service), `origin`'s:
    /// decided as a tick decides, on the read the message carries when it is usable, else on a
    /// fresh one. If this instance is already evaluating the service, that evaluation covers it.
    pub async fn evaluate(
        &self,
        target: &ServiceRef,
        carried: Option<Carried>,
        deadline: Instant,
        origin: &Origin,
    ) -> Result<Vec<DecisionRecord>, ReconcileError> {
        let read = carried.and_then(|c| match self.resumed(target, c) {
            Ok(read) => Some(read),
            Err(why) => {
                tracing::info!(service = %target, why, "carried read not used: reading the service afresh");
                None
            }
        });
        let Some(read) = read else {
            return self
                .reconcile_from(target, Trigger::Tick, deadline, origin)
                .await;
        };
        let Some(_pass) = self.gates.enter(target, Urgency::Routine).await else {
            return Ok(Vec::new());
        };
        self.run(self.overlay(read), Trigger::Tick, deadline, origin)
            .await
    }

    /// The carried read of `target` as the router's read, or why it cannot be decided on.
    fn resumed(
        &self,
        target: &ServiceRef,
        carried: Carried,
    ) -> Result<Observation<R::Version>, String> {
        let age = self.clock.now().duration_since(carried.listed_at);
        if age > MAX_CARRIED_AGE {
            return Err(format!(
                "listed {}s ago, more than {}s",
                age.as_secs(),
                MAX_CARRIED_AGE.as_secs()
            ));
        }
        if age < -MAX_CLOCK_AHEAD {
            return Err(format!(
                "listed {}s in the future",
                age.unsigned_abs().as_secs()
            ));
        }
        self.router
            .resume(target, carried.read)
            .ok_or_else(|| format!("not a read of {target} that can guard a write"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> Timestamp {
        "2026-12-05T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn an_evaluation_names_one_service_and_nothing_else_decodes() {
        let s = ServiceRef::checked("p-1", "europe-west1", "api").unwrap();
        let bare = Evaluation {
            service: s.clone(),
            carried: None,
        };
        assert_eq!(decode(&encode(&bare)), Ok(bare));
        assert!(decode(b"{}").is_err());
        assert!(decode(b"not json").is_err());
        assert!(decode(br#"{"service":"projects/P_/locations/r/services/s"}"#).is_err());
    }

    #[test]
    fn a_carried_read_travels_with_its_listing_time() {
        let s = ServiceRef::checked("p-1", "europe-west1", "api").unwrap();
        let e = Evaluation {
            service: s.clone(),
            carried: Some(Carried {
                listed_at: listed(),
                read: serde_json::json!({"name": s.resource_name(), "etag": "\"e1\""}),
            }),
        };
        assert_eq!(decode(&encode(&e)), Ok(e));
    }

    #[test]
    fn an_older_message_naming_only_the_service_decodes_without_a_read() {
        let old = br#"{"service":"projects/p-1/locations/europe-west1/services/api"}"#;
        let e = decode(old).unwrap();
        assert_eq!(e.service.name.to_string(), "api");
        assert_eq!(e.carried, None);
    }

    #[test]
    fn a_read_without_a_listing_time_is_dropped_and_the_service_kept() {
        for data in [
            br#"{"service":"projects/p-1/locations/europe-west1/services/api","read":{}}"#.to_vec(),
            br#"{"service":"projects/p-1/locations/europe-west1/services/api","listedAt":"yesterday","read":{}}"#.to_vec(),
            br#"{"service":"projects/p-1/locations/europe-west1/services/api","listedAt":"2026-12-05T10:00:00Z","read":null}"#.to_vec(),
        ] {
            let e = decode(&data).unwrap();
            assert_eq!(e.service.name.to_string(), "api");
            assert_eq!(e.carried, None, "{}", String::from_utf8_lossy(&data));
        }
    }

    #[test]
    fn a_read_above_the_cap_is_not_carried() {
        let s = ServiceRef::checked("p-1", "europe-west1", "api").unwrap();
        let big = |bytes: usize| Evaluation {
            service: s.clone(),
            carried: Some(Carried {
                listed_at: listed(),
                read: serde_json::json!({"annotations": {"x": "a".repeat(bytes)}}),
            }),
        };
        let fits = encode(&big(MAX_CARRIED_BYTES - 200));
        assert!(fits.len() <= MAX_CARRIED_BYTES);
        assert!(decode(&fits).unwrap().carried.is_some());
        let over = encode(&big(MAX_CARRIED_BYTES));
        assert!(over.len() < 200, "names the service only");
        assert_eq!(decode(&over).unwrap().carried, None);
    }
}
