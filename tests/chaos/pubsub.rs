//! A stand-in for Pub/Sub push delivery, as unkind as the real one is allowed to be: every
//! message is delivered one to five times, copies arrive late and out of order, a delivery that
//! is not answered 2xx (or finds no server) is redelivered later, and a copy may still arrive
//! after the message was acked. Messages carry real envelopes (same `messageId` on every copy),
//! built with cutover's own encoders.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cutover_fakes::encode::encode_push;
use jiff::Timestamp;

use crate::PROJECT;
use crate::platform::World;

/// One published message.
#[derive(Debug)]
pub struct Message {
    pub id: String,
    /// `/pubsub/builds`, `/pubsub/alerts` or `/pubsub/ticks`.
    pub path: &'static str,
    pub body: Vec<u8>,
    pub what: String,
}

fn envelope(
    data: &[u8],
    attributes: &BTreeMap<String, String>,
    id: &str,
    at: Timestamp,
    sub: &str,
) -> Vec<u8> {
    let sub = format!("projects/{PROJECT}/subscriptions/{sub}");
    serde_json::to_vec(&encode_push(data, attributes, id, at, &sub)).expect("an envelope")
}

/// Builds messages with increasing ids.
#[derive(Default)]
pub struct Publisher {
    next: u64,
}

impl Publisher {
    fn id(&mut self) -> String {
        self.next += 1;
        format!("{}", 7_000_000 + self.next)
    }

    /// The Cloud Build notification of a successful deploy of `revision` of `service` on
    /// `world`'s platform (`gcloud run deploy`, `gcloud app deploy --no-promote`, a MIG rolled
    /// behind a new backend service).
    pub fn build(
        &mut self,
        world: &World,
        service: &str,
        revision: &str,
        at: Timestamp,
    ) -> Message {
        let id = self.id();
        let build_id = format!("b{id}-chaos");
        let (data, attrs) = world.build(&build_id, service, revision, at);
        Message {
            body: envelope(&data, &attrs, &id, at, "cutover-builds"),
            id,
            path: "/pubsub/builds",
            what: format!("build of {service}"),
        }
    }

    /// A Cloud Scheduler tick.
    pub fn tick(&mut self, at: Timestamp) -> Message {
        let id = self.id();
        let attrs = BTreeMap::from([("source".to_string(), "scheduler".to_string())]);
        Message {
            body: envelope(br#"{"kind":"tick"}"#, &attrs, &id, at, "cutover-ticks"),
            id,
            path: "/pubsub/ticks",
            what: "tick".into(),
        }
    }

    /// A Monitoring incident about `revision` of `service` on `world`'s platform.
    pub fn alert(
        &mut self,
        world: &World,
        service: &str,
        revision: &str,
        open: bool,
        at: Timestamp,
    ) -> Message {
        let id = self.id();
        let state = if open { "open" } else { "closed" };
        let incident = world.incident(service, revision, state, at);
        let data = serde_json::to_vec(&incident).expect("an incident");
        Message {
            body: envelope(&data, &BTreeMap::new(), &id, at, "cutover-alerts"),
            id,
            path: "/pubsub/alerts",
            what: format!("{state} incident on {revision}"),
        }
    }
}

/// What the subscription did, summed.
#[derive(Clone, Debug, Default)]
pub struct DeliveryStats {
    pub published: u64,
    pub deliveries: u64,
    /// Copies beyond the first of a message (at-least-once duplicates, not redeliveries).
    pub duplicates: u64,
    /// Deliveries answered with something else than 2xx, or by nobody.
    pub nacks: u64,
    /// Of those, how many found no server (killed instance).
    pub unreachable: u64,
    /// New deliveries scheduled because of a nack.
    pub redeliveries: u64,
}

impl DeliveryStats {
    pub fn add(&mut self, o: &DeliveryStats) {
        self.published += o.published;
        self.deliveries += o.deliveries;
        self.duplicates += o.duplicates;
        self.nacks += o.nacks;
        self.unreachable += o.unreachable;
        self.redeliveries += o.redeliveries;
    }
}

/// The subscription: pending deliveries, due at a time in milliseconds of whatever clock the
/// run uses.
pub struct Subscription {
    pending: Vec<(i64, Arc<Message>)>,
    acked: HashSet<String>,
    pub stats: DeliveryStats,
    /// The longest a duplicate copy lags behind the first one.
    pub max_lag_ms: i64,
    /// How long a nacked message waits before its redelivery.
    pub retry_ms: i64,
}

impl Subscription {
    pub fn new(max_lag_ms: i64, retry_ms: i64) -> Self {
        Subscription {
            pending: Vec::new(),
            acked: HashSet::new(),
            stats: DeliveryStats::default(),
            max_lag_ms,
            retry_ms,
        }
    }

    /// Publishes `msg` at `now`: 1 to 5 copies, the first due now, the others up to
    /// `max_lag_ms` later.
    pub fn publish(&mut self, msg: Message, now: i64, rng: &mut fastrand::Rng) -> Arc<Message> {
        let msg = Arc::new(msg);
        self.stats.published += 1;
        let copies = if rng.bool() { 1 } else { rng.u32(2..=5) };
        self.pending.push((now, msg.clone()));
        for _ in 1..copies {
            self.stats.duplicates += 1;
            self.pending
                .push((now + rng.i64(0..=self.max_lag_ms), msg.clone()));
        }
        msg
    }

    /// Every delivery due by `now`, shuffled (the order Pub/Sub pushes in is not the order of
    /// publication).
    pub fn due(&mut self, now: i64, rng: &mut fastrand::Rng) -> Vec<Arc<Message>> {
        let (due, later): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|(t, _)| *t <= now);
        self.pending = later;
        let mut out: Vec<Arc<Message>> = due.into_iter().map(|(_, m)| m).collect();
        rng.shuffle(&mut out);
        self.stats.deliveries += out.len() as u64;
        out
    }

    /// What the push endpoint answered (`None`: nobody answered).
    pub fn answered(&mut self, msg: &Arc<Message>, status: Option<u16>, now: i64) {
        match status {
            Some(s) if (200..300).contains(&s) => {
                self.acked.insert(msg.id.clone());
            }
            other => {
                self.stats.nacks += 1;
                if other.is_none() {
                    self.stats.unreachable += 1;
                }
                if !self.acked.contains(&msg.id) {
                    self.stats.redeliveries += 1;
                    self.pending.push((now + self.retry_ms, msg.clone()));
                }
            }
        }
    }

    /// Messages never acked (builds and incidents that cutover never took in).
    pub fn unacked<'a>(&self, published: &'a [Arc<Message>]) -> Vec<&'a Message> {
        published
            .iter()
            .filter(|m| !self.acked.contains(&m.id))
            .map(|m| m.as_ref())
            .collect()
    }
}
