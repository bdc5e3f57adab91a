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
//! **A carried read is sealed.** The write is built from the carried resource, so a read taken
//! on trust would let whoever can publish on the evaluations topic (a project-wide
//! `roles/pubsub.publisher` reaches it) and read the service's etag have cutover write a
//! service body of their making. The tick therefore seals what it carries with an HMAC under
//! a key every instance shares (`CUTOVER_EVALUATION_KEY`, [`seal`]), and a read is decided on
//! only if its seal verifies; a read with a missing or wrong seal is ignored (a wrong one is
//! logged as a warning: a forged or foreign message) and the service read afresh, so a message
//! of anyone else's can only ask for an evaluation. Without a key, ticks carry nothing and
//! every fanned-out evaluation reads its service (one call more).
//!
//! **Only rollouts that need a call are published.** Before publishing, the tick runs the
//! decision core on each listed read with no evidence: a rollout whose decision is then to stay
//! (its step still soaking, the metrics delay not passed, waiting for a person) is decided by
//! the tick itself, with the record an evaluation would have made, and costs no message
//! (`TickReport::settled`). Only a rollout whose decision asks for evidence or a write is
//! published. With the default 5-minute steps and 3-minute metrics delay most ticks of a
//! rollout are of the first kind (`lab simulate` prints the share, docs/performance.md).
//!
//! A small tick (at most [`Fanout::threshold`] rollouts left to evaluate,
//! `CUTOVER_FANOUT_THRESHOLD`) still evaluates in-process: one round of concurrent evaluations
//! is then as fast as the publish and push hop, and costs no extra instance or message.

pub mod seal;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::time::Instant;

use self::seal::{SealKeys, Sealed};

use super::{DecisionRecord, Origin, ReconcileError, Reconciler};
use crate::decision::Trigger;
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
    /// Seals the reads the messages carry; `None`: the messages carry none.
    keys: Option<Arc<SealKeys>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("topic", &self.topic)
            .field("threshold", &self.threshold)
            .field("carries_reads", &self.keys.is_some())
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

/// The message data of an evaluation that carries a read, as [`encode`] writes it.
#[derive(Serialize)]
struct Carrying<'a> {
    service: &'a str,
    #[serde(rename = "listedAt")]
    listed_at: &'a str,
    read: &'a RawValue,
    /// The HMAC of the three fields above ([`seal`]), base64.
    seal: String,
}

/// The message data of one evaluation: `{"service": NAME}`, and with a carried read and `keys`
/// to seal it, `"listedAt"`, `"read"` and its `"seal"`, unless that is larger than
/// [`MAX_CARRIED_BYTES`]. Without keys the read is not carried.
pub fn encode(evaluation: &Evaluation, keys: Option<&SealKeys>) -> Vec<u8> {
    let service = evaluation.service.resource_name();
    if let (Some(c), Some(keys)) = (&evaluation.carried, keys)
        && let Ok(read) = serde_json::value::to_raw_value(&c.read)
    {
        let listed_at = c.listed_at.to_string();
        let sealed = Sealed {
            service: &service,
            listed_at: &listed_at,
            read: read.get(),
        };
        let data = serde_json::to_vec(&Carrying {
            service: &service,
            listed_at: &listed_at,
            read: &read,
            seal: base64::engine::general_purpose::STANDARD.encode(keys.seal(sealed)),
        });
        if let Ok(data) = data
            && data.len() <= MAX_CARRIED_BYTES
        {
            return data;
        }
    }
    serde_json::json!({ "service": service })
        .to_string()
        .into_bytes()
}

/// A message's data as it arrives: the read is kept as written, which is what its seal covers.
#[derive(Deserialize)]
struct Received<'a> {
    #[serde(default)]
    service: Value,
    #[serde(rename = "listedAt", default)]
    listed_at: Value,
    #[serde(borrow, default)]
    read: Option<&'a RawValue>,
    #[serde(default)]
    seal: Value,
}

/// The evaluation a message asks for, or why it names no service. A carried read is kept only
/// if its seal verifies under `keys` (and it has a listing time); otherwise it is dropped here,
/// and the service read afresh. Whether a kept read is usable is for the router to say
/// ([`TrafficRouter::resume`]).
pub fn decode(data: &[u8], keys: Option<&SealKeys>) -> Result<Evaluation, String> {
    let received: Received<'_> =
        serde_json::from_slice(data).map_err(|e| format!("message data is not JSON: {e}"))?;
    let name = received
        .service
        .as_str()
        .ok_or("message data has no \"service\"")?;
    let service = ServiceRef::from_resource_name(name).ok_or_else(|| {
        format!(
            "{name:?} is not projects/PROJECT/locations/REGION/services/SERVICE, apps/PROJECT/services/SERVICE or projects/PROJECT/global/urlMaps/MAP"
        )
    })?;
    let carried = received
        .read
        .and_then(|read| unsealed(&service, name, &received, read, keys));
    Ok(Evaluation { service, carried })
}

/// The carried `read` of `service` (named `name` in the message), if its seal verifies.
fn unsealed(
    service: &ServiceRef,
    name: &str,
    received: &Received<'_>,
    read: &RawValue,
    keys: Option<&SealKeys>,
) -> Option<Carried> {
    let afresh = "reading the service afresh";
    let Some(keys) = keys else {
        tracing::info!(service = %service, "carried read, but no CUTOVER_EVALUATION_KEY to check its seal: {afresh}");
        return None;
    };
    let listed = received.listed_at.as_str();
    let Some((listed_at, at)) = listed.and_then(|t| Some((t, t.parse::<Timestamp>().ok()?))) else {
        tracing::info!(service = %service, "carried read without a valid listedAt: {afresh}");
        return None;
    };
    let Some(tag) = received
        .seal
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    else {
        tracing::info!(service = %service, "carried read without a seal: {afresh}");
        return None;
    };
    let sealed = Sealed {
        service: name,
        listed_at,
        read: read.get(),
    };
    if !keys.verify(sealed, &tag) {
        tracing::warn!(service = %service, "carried read whose seal does not verify (a forged message, or one sealed with another key): {afresh}");
        return None;
    }
    let read = serde_json::from_str(read.get()).ok()?;
    Some(Carried {
        listed_at: at,
        read,
    })
}

impl Fanout {
    /// A publisher for `topic` (`projects/P/topics/T`), through the emulator at `emulator_host`
    /// when set. Fails only if the client cannot be built (a start-up error).
    pub async fn start(
        topic: &str,
        emulator_host: Option<&str>,
        threshold: usize,
        keys: Option<Arc<SealKeys>>,
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
            keys,
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
                let msg = Message::new()
                    .set_data(encode(e, self.keys.as_deref()))
                    .set_attributes([
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
    /// The evaluations a tick publishes on `fanout` for `active`, the reads of its listing that
    /// started at `listed_at`: each carries its read when the router can carry it and `fanout`
    /// has a key to seal it with.
    pub(super) fn evaluations(
        &self,
        fanout: &Fanout,
        active: &[Observation<R::Version>],
        listed_at: Timestamp,
    ) -> Vec<Evaluation> {
        let carrying = fanout.keys.is_some();
        active
            .iter()
            .map(|read| Evaluation {
                service: read.observed.service.clone(),
                carried: carrying
                    .then(|| self.router.carry(read))
                    .flatten()
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
        // The same path as any event's (single flight, and an alert arriving meanwhile takes
        // the service over), on the carried read when there is one.
        Box::pin(self.reconcile_read(target, Trigger::Tick, read, deadline, origin)).await
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

    fn keys() -> SealKeys {
        SealKeys::new(b"0123456789abcdef0123456789abcdef", None)
    }

    fn carrying(s: &ServiceRef) -> Evaluation {
        Evaluation {
            service: s.clone(),
            carried: Some(Carried {
                listed_at: listed(),
                read: serde_json::json!({"name": s.resource_name(), "etag": "\"e1\"", "template": {"containers": [{"image": "app:1"}]}}),
            }),
        }
    }

    #[test]
    fn an_evaluation_names_one_service_and_nothing_else_decodes() {
        let s = ServiceRef::checked("p-1", "europe-west1", "api").unwrap();
        let bare = Evaluation {
            service: s.clone(),
            carried: None,
        };
        assert_eq!(
            decode(&encode(&bare, Some(&keys())), Some(&keys())),
            Ok(bare)
        );
        assert!(decode(b"{}", None).is_err());
        assert!(decode(b"not json", None).is_err());
        assert!(decode(br#"{"service":"projects/P_/locations/r/services/s"}"#, None).is_err());
    }

    #[test]
    fn a_sealed_read_travels_with_its_listing_time() {
        let s = ServiceRef::checked("p-1", "europe-west1", "api").unwrap();
        let e = carrying(&s);
        assert_eq!(decode(&encode(&e, Some(&keys())), Some(&keys())), Ok(e));
    }

    #[test]
    fn without_a_key_no_read_is_carried_nor_taken() {
        let s = ServiceRef::checked("p-1", "europe-west1", "api").unwrap();
        let e = carrying(&s);
        let bare = encode(&e, None);
        assert_eq!(
            serde_json::from_slice::<Value>(&bare).unwrap(),
            serde_json::json!({"service": s.resource_name()}),
            "names the service only"
        );
        let sealed = encode(&e, Some(&keys()));
        assert_eq!(decode(&sealed, None).unwrap().carried, None);
    }

    #[test]
    fn a_read_with_a_changed_body_or_a_missing_or_foreign_seal_is_dropped() {
        let s = ServiceRef::checked("p-1", "europe-west1", "api").unwrap();
        let e = carrying(&s);
        let sealed = String::from_utf8(encode(&e, Some(&keys()))).unwrap();
        assert!(sealed.contains("app:1"), "{sealed}");
        let mut unsealed: Value = serde_json::from_str(&sealed).unwrap();
        unsealed.as_object_mut().unwrap().remove("seal");
        let foreign = SealKeys::new(b"another key of thirty-two bytes!", None);
        for (case, data) in [
            ("a changed image", sealed.replace("app:1", "evil:1")),
            (
                "a changed listing time",
                sealed.replace("10:00:00Z", "10:00:30Z"),
            ),
            (
                "another service's name",
                sealed.replace("services/api\",", "services/web\","),
            ),
            ("no seal", unsealed.to_string()),
            (
                "a seal that is not base64",
                sealed.replace("\"seal\":\"", "\"seal\":\"!"),
            ),
            (
                "another key's seal",
                String::from_utf8(encode(&e, Some(&foreign))).unwrap(),
            ),
        ] {
            assert_ne!(data, sealed, "{case}: the case changes the message");
            let d = decode(data.as_bytes(), Some(&keys())).unwrap();
            assert_eq!(d.carried, None, "{case}: {data}");
        }
    }

    #[test]
    fn an_older_message_naming_only_the_service_decodes_without_a_read() {
        let old = br#"{"service":"projects/p-1/locations/europe-west1/services/api"}"#;
        let e = decode(old, Some(&keys())).unwrap();
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
            let e = decode(&data, Some(&keys())).unwrap();
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
        let k = Some(&keys());
        let fits = encode(&big(MAX_CARRIED_BYTES - 300), k);
        assert!(fits.len() <= MAX_CARRIED_BYTES);
        assert!(decode(&fits, k).unwrap().carried.is_some());
        let over = encode(&big(MAX_CARRIED_BYTES), k);
        assert!(over.len() < 200, "names the service only");
        assert_eq!(decode(&over, k).unwrap().carried, None);
    }
}
