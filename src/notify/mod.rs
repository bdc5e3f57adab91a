//! Telling people and programs what rollouts do: lifecycle events on Pub/Sub
//! (`CUTOVER_EVENTS_TOPIC`, [`events`]) and chat messages (`CUTOVER_NOTIFY_URL`, [`chat`]).
//!
//! Why a module of its own, beside the decision's path rather than on it: a decision is made,
//! written and logged by the reconciler (its log line is the record of truth); this module
//! only listens to the reconciler's stream of decision records in a background task
//! ([`Notifier::listen`]), maps each to an event or none ([`lifecycle`]), and hands it to each
//! sink's bounded queue without waiting. Publishing and posting happen in the sinks' own tasks,
//! with retries; a slow or dead Pub/Sub or webhook never delays a decision or an answer to a
//! push, and what cannot be delivered is logged (`notify="lost"`) and counted ([`Stats`]).
//!
//! Shutdown: [`Notifier::shutdown`] stops listening, lets the sinks deliver what is queued
//! until the deadline it is given (the rest of Cloud Run's 10 s after SIGTERM), and logs
//! whatever is still undelivered then as lost. Nothing is kept across restarts: a decision's
//! log line stays its record.

pub mod chat;
pub mod events;
pub mod lifecycle;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{ConfigError, NotifyArgs};
use crate::reconcile::DecisionRecord;
use chat::{ChatSettings, ChatSink};
use events::{EventSink, EventsSettings};
use lifecycle::{EventType, HeldOnce};

/// Counters of what was delivered and lost, per channel, since start-up (for the status page
/// and tests).
#[derive(Debug, Default)]
pub struct Stats {
    pub events_published: AtomicU64,
    pub events_lost: AtomicU64,
    pub chat_sent: AtomicU64,
    pub chat_lost: AtomicU64,
}

/// What one channel delivered and lost since start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Delivered {
    pub delivered: u64,
    pub lost: u64,
}

/// The counters at one moment, per channel (the status page's `notifications`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub events: Delivered,
    pub chat: Delivered,
}

impl Stats {
    /// The counters as they stand.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            events: Delivered {
                delivered: self.events_published.load(Relaxed),
                lost: self.events_lost.load(Relaxed),
            },
            chat: Delivered {
                delivered: self.chat_sent.load(Relaxed),
                lost: self.chat_lost.load(Relaxed),
            },
        }
    }
}

/// What names a notification in the log: its event type, service and id.
#[derive(Clone, Debug)]
pub struct Tag {
    pub event_type: EventType,
    /// As the record names it (`project/region/name`).
    pub service: String,
    pub ce_id: String,
}

impl Tag {
    /// Logs the notification as lost on `channel` (one line, with the channel's running count)
    /// and counts it in `counter`.
    fn lost(&self, channel: &'static str, counter: &AtomicU64, why: &str) {
        let total = counter.fetch_add(1, Relaxed) + 1;
        tracing::warn!(
            notify = "lost",
            channel,
            event_type = %self.event_type.ce_type(),
            service = %self.service,
            ce_id = %self.ce_id,
            lost_total = total,
            reason = %why,
            "notification lost"
        );
    }

    /// Logs the notification as delivered on `channel` (debug).
    fn published(&self, channel: &'static str, detail: &str) {
        tracing::debug!(
            notify = "published",
            channel,
            event_type = %self.event_type.ce_type(),
            service = %self.service,
            ce_id = %self.ce_id,
            detail,
            "notification delivered"
        );
    }
}

/// A decision record's service (`project/region/name`) in its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceParts {
    pub project: String,
    pub region: String,
    pub name: String,
}

impl ServiceParts {
    pub fn of(service: &str) -> ServiceParts {
        match service.split('/').collect::<Vec<_>>().as_slice() {
            [p, r, n] => ServiceParts {
                project: (*p).into(),
                region: (*r).into(),
                name: (*n).into(),
            },
            _ => ServiceParts {
                project: String::new(),
                region: String::new(),
                name: service.into(),
            },
        }
    }

    /// `projects/P/locations/R/services/S`.
    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/services/{}",
            self.project, self.region, self.name
        )
    }

    /// `--project P --region R`, as the operator verbs take them.
    pub fn flags(&self) -> String {
        format!("--project {} --region {}", self.project, self.region)
    }
}

/// The background tasks of the sinks, and the deadline they stop by at shutdown.
#[derive(Clone)]
pub struct Worker {
    deadline: watch::Sender<Option<Instant>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Default for Worker {
    fn default() -> Self {
        Worker {
            deadline: watch::channel(None).0,
            tasks: Arc::default(),
        }
    }
}

impl Worker {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Whether `at` is past the shutdown deadline (never before shutdown).
    fn past(&self, at: Instant) -> bool {
        self.deadline.borrow().is_some_and(|d| at >= d)
    }

    /// `fut`, or `None` if the shutdown deadline passes first.
    async fn bounded<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        let mut deadline = self.deadline.subscribe();
        let passes = async move {
            let d = match deadline.wait_for(Option::is_some).await {
                Ok(d) => *d,
                Err(_) => None,
            };
            match d {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            v = fut => Some(v),
            () = passes => None,
        }
    }
}

/// What to tell, and where: from `cutover serve`'s settings.
#[derive(Debug, Default)]
pub struct Settings {
    pub events: Option<EventsSettings>,
    pub chat: Option<ChatSettings>,
}

impl Settings {
    /// The settings of `args`, with cutover's `project` and default `region` (for a bare topic
    /// id and the events' source) and its own service name (`K_SERVICE`, if Cloud Run set it).
    pub fn from_args(
        args: &NotifyArgs,
        project: &str,
        region: &str,
        own_service: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        args.validate()?;
        let events = args.events_topic().map(|topic| EventsSettings {
            topic: events::topic_name(topic, project),
            source: events::source(project, region, own_service),
            emulator_host: args
                .pubsub_emulator_host
                .as_deref()
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(String::from),
        });
        let chat = match args.notify_url() {
            None => None,
            Some(url) => Some(
                ChatSettings::new(url, args.notify_format).map_err(|reason| ConfigError {
                    var: "CUTOVER_NOTIFY_FORMAT",
                    reason,
                })?,
            ),
        };
        Ok(Settings { events, chat })
    }
}

/// The listener and its sinks.
pub struct Notifier {
    events: Mutex<Option<EventSink>>,
    events_source: String,
    chat: Mutex<Option<ChatSink>>,
    held: Mutex<HeldOnce>,
    stats: Arc<Stats>,
    worker: Worker,
    listener: Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

impl Notifier {
    /// The sinks `settings` asks for, their tasks started (none when nothing is configured).
    /// Fails if a client cannot be built.
    pub async fn start(settings: Settings) -> Result<Arc<Notifier>, String> {
        let stats = Arc::new(Stats::default());
        let worker = Worker::default();
        let mut events_source = String::new();
        let events = match &settings.events {
            Some(s) => {
                events_source = s.source.clone();
                tracing::info!(topic = %s.topic, emulator = ?s.emulator_host, "lifecycle events on");
                Some(EventSink::start(s, Arc::clone(&stats), &worker).await?)
            }
            None => None,
        };
        let chat = match settings.chat {
            Some(s) => {
                tracing::info!(host = %s.host(), format = ?s.format, "chat notifications on");
                Some(ChatSink::start(s, Arc::clone(&stats), &worker)?)
            }
            None => None,
        };
        Ok(Arc::new(Notifier {
            events: Mutex::new(events),
            events_source,
            chat: Mutex::new(chat),
            held: Mutex::default(),
            stats,
            worker,
            listener: Mutex::default(),
        }))
    }

    /// The delivery counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    fn is_on(&self) -> bool {
        lock(&self.events).is_some() || lock(&self.chat).is_some()
    }

    /// Hands every record of `decisions` to [`Notifier::handle`] in a background task, until
    /// [`Notifier::shutdown`]. Nothing is started when no sink is configured.
    pub fn listen(self: &Arc<Self>, mut decisions: broadcast::Receiver<DecisionRecord>) {
        if !self.is_on() {
            return;
        }
        let (stop, mut stopping) = watch::channel(false);
        let me = Arc::clone(self);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    r = decisions.recv() => match r {
                        Ok(rec) => me.handle(&rec),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(
                                notify = "lost",
                                channel = "all",
                                skipped = n,
                                "notifications lost: the listener fell behind the decisions"
                            );
                            me.stats.events_lost.fetch_add(n, Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = stopping.wait_for(|s| *s) => {
                        while let Ok(rec) = decisions.try_recv() {
                            me.handle(&rec);
                        }
                        return;
                    }
                }
            }
        });
        *lock(&self.listener) = Some((stop, task));
    }

    /// Turns one decision record into its event, if any, and queues it for each sink. Never
    /// waits. Also called directly by the operator verbs, which run without a listener.
    pub fn handle(&self, rec: &DecisionRecord) {
        let Some(ty) = lifecycle::event_of(rec) else {
            return;
        };
        let id = lifecycle::ce_id(rec, ty);
        if !lock(&self.held).admit(&rec.service, ty, &id) {
            return;
        }
        if let Some(sink) = lock(&self.events).as_ref() {
            sink.offer(events::event(rec, ty, id.clone(), &self.events_source));
        }
        if ty.is_chat_worthy(rec)
            && let Some(sink) = lock(&self.chat).as_ref()
        {
            sink.offer(rec, ty, id);
        }
    }

    /// Stops listening, delivers what is queued until `by`, and logs what is left as lost.
    pub async fn shutdown(&self, by: Instant) {
        let listener = lock(&self.listener).take();
        if let Some((stop, task)) = listener {
            let _ = stop.send(true);
            let _ = task.await;
        }
        let _ = self.worker.deadline.send(Some(by));
        // Closing the queues ends each task once it has worked through its queue.
        lock(&self.events).take();
        lock(&self.chat).take();
        let tasks = std::mem::take(&mut *lock(&self.worker.tasks));
        for task in tasks {
            // Each task gives up at `by` on its own; the margin covers its last log lines.
            let abort = task.abort_handle();
            if tokio::time::timeout_at(by + std::time::Duration::from_millis(200), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NotifyFormat;
    use crate::decision::Kind;

    /// A webhook that accepts connections and never answers.
    async fn silent_webhook() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let _silent = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn);
            }
        });
        url
    }

    #[tokio::test]
    async fn shutdown_gives_up_on_a_webhook_that_never_answers_by_its_deadline_and_counts_it_lost()
    {
        let url = silent_webhook().await;
        let settings = Settings {
            events: None,
            chat: Some(ChatSettings::new(&url, NotifyFormat::Slack).unwrap()),
        };
        let notifier = Notifier::start(settings).await.unwrap();
        let (tx, rx) = broadcast::channel(8);
        notifier.listen(rx);
        let rec = DecisionRecord {
            service: "p/europe-west1/api".into(),
            trigger: "tick",
            decision: Kind::Rollback,
            candidate: Some("api-00002-def".into()),
            write: "applied".into(),
            ..DecisionRecord::default()
        };
        tx.send(rec).unwrap();
        // The record is handed over even if shutdown comes right after it was decided.
        notifier
            .shutdown(Instant::now() + std::time::Duration::from_millis(300))
            .await;
        let stats = notifier.stats();
        assert_eq!(stats.chat_lost.load(Relaxed), 1, "{:?}", stats.snapshot());
        assert_eq!(stats.chat_sent.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn a_full_queue_loses_and_counts_what_does_not_fit_without_waiting() {
        let url = silent_webhook().await;
        let settings = Settings {
            events: None,
            chat: Some(ChatSettings::new(&url, NotifyFormat::GoogleChat).unwrap()),
        };
        let notifier = Notifier::start(settings).await.unwrap();
        let pause = |n: usize| DecisionRecord {
            at: jiff::Timestamp::from_second(1_800_000_000 + n as i64).unwrap(),
            service: "p/europe-west1/api".into(),
            trigger: "tick",
            decision: Kind::Pause,
            candidate: Some("api-00002-def".into()),
            write: "applied".into(),
            ..DecisionRecord::default()
        };
        // Handed over one after the other, with no await between: nothing is sent meanwhile.
        let offered = 2 * chat::QUEUE;
        for n in 0..offered {
            notifier.handle(&pause(n));
        }
        let stats = notifier.stats();
        assert_eq!(
            stats.chat_lost.load(Relaxed) as usize,
            offered - chat::QUEUE,
            "what the queue cannot hold is lost at once: {:?}",
            stats.snapshot()
        );
    }

    #[test]
    fn a_records_service_splits_into_its_parts() {
        let p = ServiceParts::of("p-1/europe-west1/api");
        assert_eq!(
            p.resource_name(),
            "projects/p-1/locations/europe-west1/services/api"
        );
        assert_eq!(p.flags(), "--project p-1 --region europe-west1");
    }
}
