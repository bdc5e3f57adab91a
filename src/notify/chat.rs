//! Chat notifications: one readable message per rollback, pause, refusal and completion, to a
//! Google Chat or Slack incoming webhook (`CUTOVER_NOTIFY_URL`, `CUTOVER_NOTIFY_FORMAT`).
//!
//! A message says which service, region and revisions, the step, the judged numbers against
//! their thresholds, the reason, and the `cutover` command to act. It is posted by a background
//! task behind a bounded queue (a decision never waits for it), retried with backoff on 429,
//! 5xx, timeouts and connection failures, honouring `Retry-After`, and never on another 4xx
//! (the same body would be refused again). The webhook URL carries its credential, so it is
//! never logged, not even in an error: only its host is.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::lifecycle::EventType;
use super::{ServiceParts, Stats, Tag, Worker};
use crate::config::NotifyFormat;
use crate::reconcile::DecisionRecord;

/// Messages waiting to be posted; beyond this one is lost (and counted).
pub const QUEUE: usize = 256;

/// Posts per message, the first included.
const ATTEMPTS: u32 = 4;

/// Longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Longest wait for one answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook's message format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFormat {
    GoogleChat,
    Slack,
}

/// The format `configured`, or for `auto` the one `url`'s host implies; an unknown host with
/// `auto` is an error asking for the format.
pub fn detect(url: &reqwest::Url, configured: NotifyFormat) -> Result<ChatFormat, String> {
    match configured {
        NotifyFormat::GoogleChat => Ok(ChatFormat::GoogleChat),
        NotifyFormat::Slack => Ok(ChatFormat::Slack),
        NotifyFormat::Auto => match url.host_str() {
            Some("chat.googleapis.com") => Ok(ChatFormat::GoogleChat),
            Some("hooks.slack.com") => Ok(ChatFormat::Slack),
            host => Err(format!(
                "cannot tell the message format of CUTOVER_NOTIFY_URL from its host {}: set CUTOVER_NOTIFY_FORMAT to google-chat or slack",
                host.unwrap_or("(none)")
            )),
        },
    }
}

/// Where messages go. `Debug` shows the host only.
#[derive(Clone)]
pub struct ChatSettings {
    url: reqwest::Url,
    pub format: ChatFormat,
}

impl std::fmt::Debug for ChatSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatSettings")
            .field("host", &self.host())
            .field("format", &self.format)
            .finish()
    }
}

impl ChatSettings {
    /// `url` (checked by `config::check_notify_url` already) in `format`.
    pub fn new(url: &str, format: NotifyFormat) -> Result<ChatSettings, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("CUTOVER_NOTIFY_URL: {e}"))?;
        let format = detect(&url, format)?;
        Ok(ChatSettings { url, format })
    }

    /// The webhook's host: all a log line may say of it.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or("")
    }
}

/// The `cutover` commands that act on what `ty` says.
pub fn commands(rec: &DecisionRecord, ty: EventType) -> Vec<String> {
    let s = ServiceParts::of(&rec.service);
    let (name, flags) = (&s.name, s.flags());
    match ty {
        EventType::Paused => vec![
            format!("cutover resume {name} {flags}"),
            format!("cutover rollback {name} {flags}"),
        ],
        EventType::RolledBack => {
            let mut v = vec![format!("cutover history {name} {flags}")];
            if let Some(c) = &rec.candidate {
                v.push(format!("cutover start {name} --revision {c} {flags}"));
            }
            v
        }
        EventType::Refused => vec![format!("cutover status {name} {flags}")],
        _ => vec![format!("cutover history {name} {flags}")],
    }
}

/// What happened, in a few words.
fn headline(rec: &DecisionRecord, ty: EventType) -> String {
    let candidate = rec.candidate.as_deref().unwrap_or("the candidate");
    let stable = rec.stable.as_deref().unwrap_or("the stable revision");
    let share = rec.percent.map(|p| format!(" at {p}%")).unwrap_or_default();
    match ty {
        EventType::RolledBack => format!("rolled back: {candidate} → {stable}"),
        EventType::Paused => format!("paused{share}: waiting for a person"),
        EventType::Completed => format!("completed: {candidate} is the new stable revision"),
        EventType::Refused => format!("{} refused", rec.trigger),
        other => other.as_str().to_string(),
    }
}

fn percent(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

/// The judged numbers against their thresholds, when the decision judged a step.
pub fn numbers(rec: &DecisionRecord) -> Option<String> {
    let requests = rec.requests?;
    let mut parts = Vec::new();
    if let Some(rate) = rec.error_rate {
        let max = rec
            .max_error_rate
            .map(|m| format!(" (max {})", percent(m)))
            .unwrap_or_default();
        let n = rec
            .errors_5xx
            .map(|n| format!(", {n} 5xx"))
            .unwrap_or_default();
        parts.push(format!("5xx rate {}{max}{n}", percent(rate)));
    }
    if let Some(p99) = rec.p99_ms {
        let max = rec
            .max_p99_ms
            .map(|m| format!(" (max {m:.0} ms)"))
            .unwrap_or_default();
        parts.push(format!("p99 {p99:.0} ms{max}"));
    }
    let min = rec
        .min_requests
        .map(|m| format!(" (min {m})"))
        .unwrap_or_default();
    parts.push(format!("{requests} requests{min}"));
    Some(parts.join(" · "))
}

/// The message's lines (without the commands): headline, where, revisions, numbers, reason.
fn lines(rec: &DecisionRecord, ty: EventType) -> Vec<String> {
    let s = ServiceParts::of(&rec.service);
    let mut v = vec![format!("*{}* {}", s.name, headline(rec, ty))];
    v.push(format!(
        "Service {} in {} (project {})",
        s.name, s.region, s.project
    ));
    if let Some(c) = &rec.candidate {
        let share = rec
            .percent
            .map(|p| format!(" with {p}% of traffic"))
            .unwrap_or_default();
        let phase = rec
            .phase
            .map(|p| format!(", phase {p}"))
            .unwrap_or_default();
        let stable = rec.stable.as_deref().unwrap_or("-");
        v.push(format!("Candidate {c}{share}{phase}; stable {stable}"));
    }
    if let Some(n) = numbers(rec) {
        v.push(n);
    }
    v.push(format!("Reason: {}", rec.reason));
    v
}

/// Google Chat's simple text message (`*bold*`, `` `code` ``).
pub fn google_chat_body(rec: &DecisionRecord, ty: EventType) -> Value {
    let mut text = lines(rec, ty);
    for c in commands(rec, ty) {
        text.push(format!("`{c}`"));
    }
    json!({ "text": text.join("\n") })
}

/// Slack's `&`, `<` and `>`, escaped as its mrkdwn requires.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack's message: a plain fallback `text` and `blocks` in mrkdwn (the message, then the
/// commands as context).
pub fn slack_body(rec: &DecisionRecord, ty: EventType) -> Value {
    let lines = lines(rec, ty);
    let fallback = lines[0].replace('*', "");
    let commands: Vec<String> = commands(rec, ty)
        .iter()
        .map(|c| format!("`{}`", slack_escape(c)))
        .collect();
    json!({
        "text": slack_escape(&fallback),
        "blocks": [
            {
                "type": "section",
                "text": { "type": "mrkdwn", "text": slack_escape(&lines.join("\n")) },
            },
            {
                "type": "context",
                "elements": [{ "type": "mrkdwn", "text": commands.join("  ") }],
            },
        ],
    })
}

struct Post {
    tag: Tag,
    body: Value,
}

/// How log lines name this channel.
const CHANNEL: &str = "chat";

/// The queue in front of the posting task.
pub struct ChatSink {
    tx: mpsc::Sender<Post>,
    format: ChatFormat,
    stats: Arc<Stats>,
}

impl ChatSink {
    pub fn start(
        settings: ChatSettings,
        stats: Arc<Stats>,
        worker: &Worker,
    ) -> Result<ChatSink, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client for chat notifications: {e}"))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let format = settings.format;
        worker.spawn(run(http, settings, rx, Arc::clone(&stats), worker.clone()));
        Ok(ChatSink { tx, format, stats })
    }

    /// Queues the message for `rec` without waiting; a full queue loses it (logged, counted).
    pub fn offer(&self, rec: &DecisionRecord, ty: EventType, ce_id: String) {
        let body = match self.format {
            ChatFormat::GoogleChat => google_chat_body(rec, ty),
            ChatFormat::Slack => slack_body(rec, ty),
        };
        let post = Post {
            tag: Tag {
                event_type: ty,
                service: rec.service.clone(),
                ce_id,
            },
            body,
        };
        if let Err(e) = self.tx.try_send(post) {
            let tag = &e.into_inner().tag;
            tag.lost(CHANNEL, &self.stats.chat_lost, "the queue is full");
        }
    }
}

async fn run(
    http: reqwest::Client,
    settings: ChatSettings,
    mut rx: mpsc::Receiver<Post>,
    stats: Arc<Stats>,
    w: Worker,
) {
    while let Some(post) = rx.recv().await {
        match send(&http, &settings, &post.body, &w).await {
            Ok(tries) => {
                stats.chat_sent.fetch_add(1, Relaxed);
                let detail = format!("to {} in {tries} tries", settings.host());
                post.tag.published(CHANNEL, &detail);
            }
            Err(why) => post.tag.lost(CHANNEL, &stats.chat_lost, &why),
        }
    }
}

/// Posts `body`, retrying what may pass later; the number of posts it took, or why it failed
/// (naming the host, never the URL).
async fn send(
    http: &reqwest::Client,
    settings: &ChatSettings,
    body: &Value,
    w: &Worker,
) -> Result<u32, String> {
    let host = settings.host();
    let mut last = String::new();
    let mut pause = Duration::ZERO;
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            if w.past(Instant::now() + pause) {
                return Err(format!("shutting down; {last}"));
            }
            tokio::time::sleep(pause).await;
        }
        let backoff = Duration::from_secs(1) * 2u32.pow(attempt - 1);
        let sent = w
            .bounded(
                http.post(settings.url.clone())
                    .json(body)
                    .timeout(TIMEOUT)
                    .send(),
            )
            .await;
        match sent {
            None => return Err(format!("shutting down; {last}")),
            Some(Ok(r)) if r.status().is_success() => return Ok(attempt),
            Some(Ok(r)) => {
                let status = r.status();
                last = format!("{host} answered {status}");
                if !(status.as_u16() == 429 || status.is_server_error()) {
                    return Err(last);
                }
                pause = retry_after(r.headers()).unwrap_or(backoff);
            }
            Some(Err(e)) => {
                // Without the URL: it is a secret.
                last = format!("{host}: {}", e.without_url());
                pause = backoff;
            }
        }
    }
    Err(format!("{last} ({ATTEMPTS} tries)"))
}

/// `Retry-After` in seconds, at most [`MAX_RETRY_AFTER`] (an HTTP date is not honoured: the
/// backoff applies).
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = h
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Kind, PauseCause, Phase};

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn the_format_comes_from_the_host_or_must_be_named() {
        let chat = url("https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t");
        let slack = url("https://hooks.slack.com/services/T/B/X");
        let other = url("https://hooks.example.com/x");
        assert_eq!(
            detect(&chat, NotifyFormat::Auto),
            Ok(ChatFormat::GoogleChat)
        );
        assert_eq!(detect(&slack, NotifyFormat::Auto), Ok(ChatFormat::Slack));
        let e = detect(&other, NotifyFormat::Auto).unwrap_err();
        assert!(
            e.contains("CUTOVER_NOTIFY_FORMAT") && e.contains("hooks.example.com"),
            "{e}"
        );
        assert_eq!(detect(&other, NotifyFormat::Slack), Ok(ChatFormat::Slack));
        assert_eq!(
            detect(&slack, NotifyFormat::GoogleChat),
            Ok(ChatFormat::GoogleChat)
        );
    }

    #[test]
    fn settings_never_show_the_url() {
        let s = ChatSettings::new(
            "https://hooks.slack.com/services/T/B/SECRET",
            NotifyFormat::Auto,
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("hooks.slack.com"), "{shown}");
    }

    fn rollback() -> DecisionRecord {
        DecisionRecord {
            service: "p-1/europe-west1/api".into(),
            trigger: "tick",
            decision: Kind::Rollback,
            reason: "5xx ratio shown above 1%".into(),
            candidate: Some("api-00002-def".into()),
            stable: Some("api-00001-abc".into()),
            percent: Some(0),
            phase: Some(Phase::RolledBack),
            requests: Some(1200),
            errors_5xx: Some(150),
            error_rate: Some(0.125),
            p99_ms: Some(230.4),
            min_requests: Some(100),
            max_error_rate: Some(0.01),
            max_p99_ms: Some(1000.0),
            write: "applied".into(),
            ..DecisionRecord::default()
        }
    }

    #[test]
    fn a_message_has_the_numbers_against_the_thresholds_and_the_command() {
        let text = google_chat_body(&rollback(), EventType::RolledBack)["text"]
            .as_str()
            .unwrap()
            .to_string();
        for part in [
            "*api* rolled back: api-00002-def → api-00001-abc",
            "in europe-west1 (project p-1)",
            "5xx rate 12.50% (max 1.00%), 150 5xx",
            "p99 230 ms (max 1000 ms)",
            "1200 requests (min 100)",
            "Reason: 5xx ratio shown above 1%",
            "`cutover history api --project p-1 --region europe-west1`",
            "`cutover start api --revision api-00002-def --project p-1 --region europe-west1`",
        ] {
            assert!(text.contains(part), "{part:?} missing from:\n{text}");
        }
        let mut paused = rollback();
        paused.decision = Kind::Pause;
        paused.percent = Some(10);
        paused.phase = Some(Phase::Paused(PauseCause::MaxHold));
        let text = google_chat_body(&paused, EventType::Paused)["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.contains("paused at 10%"), "{text}");
        assert!(text.contains("phase paused (max-hold)"), "{text}");
        assert!(
            text.contains("`cutover resume api --project p-1 --region europe-west1`"),
            "{text}"
        );
    }

    #[test]
    fn slack_gets_a_fallback_and_mrkdwn_blocks_escaped() {
        let mut rec = rollback();
        rec.reason = "alert <incident 7> & more".into();
        let body = slack_body(&rec, EventType::RolledBack);
        assert_eq!(
            body["text"],
            "api rolled back: api-00002-def → api-00001-abc"
        );
        assert_eq!(body["blocks"][0]["type"], "section");
        assert_eq!(body["blocks"][0]["text"]["type"], "mrkdwn");
        let section = body["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            section.contains("Reason: alert &lt;incident 7&gt; &amp; more"),
            "{section}"
        );
        assert!(section.contains("5xx rate 12.50% (max 1.00%)"), "{section}");
        assert_eq!(body["blocks"][1]["type"], "context");
        let context = body["blocks"][1]["elements"][0]["text"].as_str().unwrap();
        assert!(
            context.contains("`cutover history api --project p-1 --region europe-west1`"),
            "{context}"
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(reqwest::header::RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
    }
}
