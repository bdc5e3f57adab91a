//! Lifecycle events on Pub/Sub: each event a CloudEvent in the binary mode of the Pub/Sub
//! binding (`ce-*` attributes, the decision record as JSON data), published with Google's
//! official client, in order per service.
//!
//! Publishing happens in one background task behind a bounded queue: a decision only ever
//! hands an event over ([`EventSink::offer`], which never waits). The task publishes events one
//! at a time, so they leave in the order they were decided, and each carries its service as
//! the ordering key so a subscription with message ordering delivers them in that order. A
//! failed publish is retried with backoff ([`ATTEMPTS`] in all, each with the client's own
//! retries of transient errors for up to [`CLIENT_RETRY_LIMIT`]); what still fails, or finds
//! the queue full, is lost: logged as one line (`notify="lost"`) and counted in [`Stats`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::lifecycle::EventType;
use super::{Stats, Tag, Worker};
use crate::reconcile::DecisionRecord;

/// Events waiting to be published; beyond this a decision's event is lost (and counted).
pub const QUEUE: usize = 1024;

/// Tries per event, the first included.
const ATTEMPTS: u32 = 3;

/// How long the client keeps retrying transient errors within one try.
const CLIENT_RETRY_LIMIT: Duration = Duration::from_secs(10);

/// Where events go and how they are named.
#[derive(Clone, Debug)]
pub struct EventsSettings {
    /// `projects/P/topics/T`.
    pub topic: String,
    /// `ce-source`: the cutover deployment that decided.
    pub source: String,
    /// `host:port` of the Pub/Sub emulator, if set: no credentials, plain HTTP/2.
    pub emulator_host: Option<String>,
}

/// `CUTOVER_EVENTS_TOPIC` as a full topic name: a bare id is a topic of `project`.
pub fn topic_name(setting: &str, project: &str) -> String {
    if setting.starts_with("projects/") {
        setting.to_string()
    } else {
        format!("projects/{project}/topics/{setting}")
    }
}

/// `ce-source`: cutover's own Cloud Run service (`K_SERVICE`, which Cloud Run sets; `cutover`
/// elsewhere) in its project and default region. Every instance of one deployment names the
/// same source, so (source, id) identifies a decision whichever instance published it.
pub fn source(project: &str, region: &str, own_service: Option<&str>) -> String {
    let name = own_service
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("cutover");
    format!("//run.googleapis.com/projects/{project}/locations/{region}/services/{name}")
}

/// One event, ready to publish.
#[derive(Clone, Debug)]
pub struct Event {
    /// Its type, id and service (the ordering key).
    pub tag: Tag,
    pub attributes: BTreeMap<String, String>,
    pub data: Vec<u8>,
}

/// The event for `rec`: CloudEvents attributes (`ce-*`, binary mode) and plain ones for
/// filters (`service`, `region`, `project`, `candidate`, `kind`), the record as JSON data.
pub fn event(rec: &DecisionRecord, ty: EventType, ce_id: String, source: &str) -> Event {
    let parts = super::ServiceParts::of(&rec.service);
    let mut a = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        a.insert(k.to_string(), v);
    };
    set("ce-specversion", "1.0".into());
    set("ce-type", ty.ce_type());
    set("ce-source", source.to_string());
    set("ce-subject", parts.resource_name());
    set("ce-id", ce_id.clone());
    set("ce-time", rec.at.to_string());
    set("ce-datacontenttype", "application/json".into());
    set("content-type", "application/json".into());
    set("service", parts.name.clone());
    set("region", parts.region.clone());
    set("project", parts.project.clone());
    set("kind", ty.as_str().into());
    if let Some(c) = &rec.candidate {
        set("candidate", c.clone());
    }
    Event {
        tag: Tag {
            event_type: ty,
            service: rec.service.clone(),
            ce_id,
        },
        attributes: a,
        data: serde_json::to_vec(rec).unwrap_or_default(),
    }
}

/// The queue in front of the publishing task.
pub struct EventSink {
    tx: mpsc::Sender<Event>,
    stats: Arc<Stats>,
}

impl EventSink {
    /// A publisher for `settings.topic` and its task. Fails only if the client cannot be built
    /// (no credentials, say): a start-up error.
    pub async fn start(
        settings: &EventsSettings,
        stats: Arc<Stats>,
        worker: &Worker,
    ) -> Result<EventSink, String> {
        let builder = crate::gcp::pubsub::publisher(
            &settings.topic,
            settings.emulator_host.as_deref(),
            CLIENT_RETRY_LIMIT,
            Duration::from_millis(5),
        );
        let publisher = builder
            .build()
            .await
            .map_err(|e| format!("Pub/Sub publisher for {}: {e}", settings.topic))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        worker.spawn(run(publisher, rx, Arc::clone(&stats), worker.clone()));
        Ok(EventSink { tx, stats })
    }

    /// Queues `event` without waiting; a full queue loses it (logged, counted).
    pub fn offer(&self, event: Event) {
        if let Err(e) = self.tx.try_send(event) {
            let tag = &e.into_inner().tag;
            tag.lost(CHANNEL, &self.stats.events_lost, "the queue is full");
        }
    }
}

/// How log lines name this channel.
const CHANNEL: &str = "events";

/// The publishing task: one event at a time, in queue order, until the queue closes; at
/// shutdown, what is left once the worker's deadline passes is lost.
async fn run(publisher: Publisher, mut rx: mpsc::Receiver<Event>, stats: Arc<Stats>, w: Worker) {
    while let Some(event) = rx.recv().await {
        match publish(&publisher, &event, &w).await {
            Ok(id) => {
                stats.events_published.fetch_add(1, Relaxed);
                event.tag.published(CHANNEL, &format!("message id {id}"));
            }
            Err(why) => event.tag.lost(CHANNEL, &stats.events_lost, &why),
        }
    }
}

async fn publish(publisher: &Publisher, e: &Event, w: &Worker) -> Result<String, String> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            let pause = Duration::from_millis(500) * 2u32.pow(attempt - 1);
            if w.past(Instant::now() + pause) {
                return Err(format!("shutting down; {last}"));
            }
            tokio::time::sleep(pause).await;
        }
        if w.past(Instant::now()) {
            return Err("shutting down".into());
        }
        let msg = Message::new()
            .set_data(e.data.clone())
            .set_attributes(e.attributes.clone())
            .set_ordering_key(e.tag.service.clone());
        match w.bounded(publisher.publish(msg)).await {
            Some(Ok(id)) => return Ok(id),
            Some(Err(err)) => {
                last = format!("publish failed: {err}");
                // A failure pauses the service's ordering key; the next try resumes it.
                publisher.resume_publish(e.tag.service.clone());
            }
            None => return Err(format!("shutting down; {last}")),
        }
    }
    Err(format!("{last} ({ATTEMPTS} tries)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Kind;

    #[test]
    fn a_bare_topic_id_is_in_cutovers_project_and_a_full_name_is_kept() {
        assert_eq!(
            topic_name("rollouts", "p-1"),
            "projects/p-1/topics/rollouts"
        );
        assert_eq!(
            topic_name("projects/other/topics/rollouts", "p-1"),
            "projects/other/topics/rollouts"
        );
    }

    #[test]
    fn an_event_carries_the_cloudevents_attributes_and_the_filterable_ones() {
        let rec = DecisionRecord {
            at: "2026-08-20T10:08:00Z".parse().unwrap(),
            service: "p-1/europe-west1/api".into(),
            decision: Kind::Rollback,
            candidate: Some("api-00002-def".into()),
            write: "applied".into(),
            ..DecisionRecord::default()
        };
        let src = source("p-1", "europe-west1", None);
        let e = event(&rec, EventType::RolledBack, "abc".into(), &src);
        let a = |k: &str| e.attributes.get(k).map(String::as_str);
        assert_eq!(a("ce-specversion"), Some("1.0"));
        assert_eq!(a("ce-type"), Some("dev.cutover.rollout.v1.rolledback"));
        assert_eq!(
            a("ce-source"),
            Some("//run.googleapis.com/projects/p-1/locations/europe-west1/services/cutover")
        );
        assert_eq!(
            a("ce-subject"),
            Some("projects/p-1/locations/europe-west1/services/api")
        );
        assert_eq!(a("ce-id"), Some("abc"));
        assert_eq!(a("ce-time"), Some("2026-08-20T10:08:00Z"));
        assert_eq!(a("ce-datacontenttype"), Some("application/json"));
        assert_eq!(a("service"), Some("api"));
        assert_eq!(a("region"), Some("europe-west1"));
        assert_eq!(a("project"), Some("p-1"));
        assert_eq!(a("candidate"), Some("api-00002-def"));
        assert_eq!(a("kind"), Some("rolledback"));
        let body: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
        assert_eq!(body["decision"], "rollback");
        assert_eq!(e.tag.service, "p-1/europe-west1/api", "the ordering key");
    }
}
