//! The status page: `GET /status` (HTML) and `GET /status.json` (the same data), every rollout
//! in cutover's project × `CUTOVER_REGIONS` as people want to see it at a glance.
//!
//! What a row holds: `cutover status`'s own reading of the service ([`show::Row`]: phase,
//! revisions, traffic, step, next judgement, last decision and its reason), plus the step
//! timeline of the service's policy (done, current, next), the last judged step's numbers
//! against its thresholds (from the history annotation), and for a rollout that is running or
//! paused a chart of 5xx rate and p99 per revision per minute since it started: the judge's own
//! reading ([`MetricsSource::service_stats`], one Monitoring query grouped by revision and
//! response code class, kept minute by minute) over the rollout instead of a step, cached a
//! minute per service ([`cache`]).
//!
//! It only reads. Services are listed as a tick lists them (every page, every region); a region
//! that cannot be listed, a service whose record cannot be read and a chart whose query failed
//! are shown as such, in their own row or cell, and the page is still 200: one bad service must
//! not hide the others. Who may see it is Cloud Run IAM's decision, as for every route of the
//! service (`roles/run.invoker` on cutover); push authentication is for Pub/Sub's pushes only.

mod cache;
mod html;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use tokio::time::Instant;

pub use cache::ChartCache;

use super::App;
use crate::decision::evidence::{ServiceStats, Window};
use crate::decision::{Observed, Phase, Policy, Record};
use crate::failure::chain;
use crate::metrics::MetricsSource;
use crate::operate::show::Row;
use crate::router::TrafficRouter;

/// Longest time the page waits for Cloud Run and Monitoring (a person is waiting).
const DEADLINE: Duration = Duration::from_secs(20);

/// How far back a chart looks: a rollout paused for days would otherwise ask for thousands of
/// minutes; three hours covers a default rollout (three 5-minute steps, their delays, the
/// bake and an hour of hold) several times over.
const CHART_LOOKBACK: SignedDuration = SignedDuration::from_hours(3);

/// How many services' charts are read at once.
const CHART_CONCURRENCY: usize = 8;

/// Everything the page shows.
#[derive(Clone, Debug, Serialize)]
pub struct StatusPage {
    pub project: String,
    pub regions: Vec<String>,
    pub generated_at: Timestamp,
    /// Running and paused rollouts first, then finished ones; by region and service.
    pub rollouts: Vec<Rollout>,
    /// What could not be read: a region's list, or a service's record.
    pub problems: Vec<Problem>,
    /// Lifecycle events and chat messages delivered and lost by this instance since it started.
    pub notifications: crate::notify::Snapshot,
}

/// One service's rollout.
#[derive(Clone, Debug, Serialize)]
pub struct Rollout {
    #[serde(flatten)]
    pub row: Row,
    /// Running or paused.
    pub active: bool,
    pub steps: Vec<Step>,
    pub last_judged: Option<LastJudged>,
    /// Active rollouts only.
    pub chart: Option<Chart>,
}

/// One step of the rollout's policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// `smoke`, `10%`, …, `bake`.
    pub label: String,
    pub state: StepState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Done,
    Current,
    Next,
    /// The step the rollout was rolled back at.
    Failed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Done => "done",
            StepState::Current => "current",
            StepState::Next => "next",
            StepState::Failed => "failed",
        }
    }
}

/// The last judged step: its numbers and the thresholds it was judged against.
#[derive(Clone, Debug, Serialize)]
pub struct LastJudged {
    pub at: Timestamp,
    pub decision: String,
    pub requests: u64,
    pub errors_5xx: u64,
    pub error_rate: f64,
    pub p99_ms: Option<f64>,
    pub min_requests: u64,
    pub max_error_rate: f64,
    pub max_p99_ms: f64,
}

/// 5xx rate and p99 per revision per minute since the rollout started.
#[derive(Clone, Debug, Serialize)]
pub struct Chart {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Candidate first, then stable.
    pub series: Vec<Series>,
    /// Why there is no data (the query failed), if so.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Series {
    pub revision: String,
    /// `candidate` or `stable`.
    pub role: &'static str,
    pub minutes: Vec<Minute>,
}

/// One revision's minute.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Minute {
    /// The end of the minute.
    pub at: Timestamp,
    pub requests: u64,
    pub errors_5xx: u64,
    /// 5xx / requests.
    pub error_rate: f64,
    /// From the minute's latency histogram, when it has samples.
    pub p99_ms: Option<f64>,
}

/// `revision`'s minutes in `stats`, oldest first (a minute it served nothing in is absent).
pub fn minutes_of(stats: &ServiceStats, revision: &str) -> Result<Vec<Minute>, String> {
    Ok(stats
        .minutes(revision)?
        .into_iter()
        .filter(|(_, m)| m.requests > 0)
        .map(|(at, m)| Minute {
            at,
            requests: m.requests,
            errors_5xx: m.errors_5xx,
            error_rate: m.error_rate(),
            p99_ms: m.latency.quantile(0.99),
        })
        .collect())
}

/// Something the page could not read.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub region: String,
    pub service: Option<String>,
    pub error: String,
}

/// `GET /status`.
pub async fn page(State(app): State<Arc<App>>) -> Html<String> {
    Html(html::render(&gather(&app).await))
}

/// `GET /status.json`.
pub async fn json(State(app): State<Arc<App>>) -> Json<StatusPage> {
    Json(gather(&app).await)
}

/// Reads every service of every region, and the charts of the active rollouts.
pub async fn gather(app: &App) -> StatusPage {
    let deadline = Instant::now() + DEADLINE.min(app.event_deadline);
    let now = app.clock.now();
    let policy = &app.reconciler.policy;
    let mut rollouts = Vec::new();
    let mut problems = Vec::new();
    for region in &app.regions {
        match app
            .reconciler
            .router
            .list(&app.project, region, deadline)
            .await
        {
            Ok(all) => {
                for read in all {
                    match rollout(&read.observed, policy, now) {
                        Ok(Some(r)) => rollouts.push((r, read.observed)),
                        Ok(None) => {}
                        Err(error) => problems.push(Problem {
                            region: region.clone(),
                            service: Some(crate::operate::show::target_name(
                                &read.observed.service,
                            )),
                            error,
                        }),
                    }
                }
            }
            Err(e) => problems.push(Problem {
                region: region.clone(),
                service: None,
                error: format!("cannot list services: {}", chain(&e)),
            }),
        }
    }
    let mut rollouts: Vec<Rollout> = futures::stream::iter(rollouts)
        .map(|(mut r, obs)| async move {
            if r.active {
                r.chart = Some(chart(app, &obs, &r, now, deadline).await);
            }
            r
        })
        .buffered(CHART_CONCURRENCY)
        .collect()
        .await;
    rollouts.sort_by(|a, b| {
        (!a.active, &a.row.region, &a.row.service).cmp(&(!b.active, &b.row.region, &b.row.service))
    });
    StatusPage {
        project: app.project.clone(),
        regions: app.regions.clone(),
        generated_at: now,
        rollouts,
        problems,
        notifications: app.notify.stats().snapshot(),
    }
}

/// The rollout of one observed service: none when cutover never touched it, an error when its
/// record cannot be read.
fn rollout(obs: &Observed, defaults: &Policy, now: Timestamp) -> Result<Option<Rollout>, String> {
    let record = match Record::from_annotations(&obs.annotations) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("its cutover record cannot be read: {e}")),
    };
    let row = Row::of(obs, defaults, now);
    let policy = defaults.with_overrides(&obs.annotations);
    let (steps, bake, smoke) = match &policy {
        Ok(p) => (
            p.steps.clone(),
            p.bake.is_positive(),
            p.smoke_path.is_some(),
        ),
        Err(_) => (defaults.steps.clone(), defaults.bake.is_positive(), false),
    };
    Ok(Some(Rollout {
        active: row.is_active(),
        steps: timeline(&record, &steps, smoke, bake),
        last_judged: last_judged(&record),
        chart: None,
        row,
    }))
}

/// The policy's steps, each done, current, next or failed, from the record and its history.
pub fn timeline(record: &Record, steps: &[u8], smoke: bool, bake: bool) -> Vec<Step> {
    let reached = record
        .history
        .entries
        .iter()
        .map(|e| e.percent)
        .chain([record.percent])
        .max()
        .unwrap_or(0);
    let mut percents: Vec<u8> = steps.to_vec();
    // A share chosen by hand (a resumed manual split) is a step of this rollout too.
    if record.percent > 0 && !percents.contains(&record.percent) {
        percents.push(record.percent);
        percents.sort_unstable();
    }
    let step = |label: String, state: StepState| Step { label, state };
    let mut out = Vec::new();
    if smoke || record.phase == Phase::Smoke {
        let state = match record.phase {
            Phase::Smoke => StepState::Current,
            Phase::RolledBack if reached == 0 => StepState::Failed,
            _ => StepState::Done,
        };
        out.push(step("smoke".into(), state));
    }
    for p in percents {
        let state = match record.phase {
            Phase::Completed | Phase::Baking => StepState::Done,
            Phase::Smoke => StepState::Next,
            Phase::RolledBack => match p.cmp(&reached) {
                std::cmp::Ordering::Less => StepState::Done,
                std::cmp::Ordering::Equal => StepState::Failed,
                std::cmp::Ordering::Greater => StepState::Next,
            },
            Phase::Progressing | Phase::Paused(_) => match p.cmp(&record.percent) {
                std::cmp::Ordering::Less => StepState::Done,
                std::cmp::Ordering::Equal => StepState::Current,
                std::cmp::Ordering::Greater => StepState::Next,
            },
        };
        out.push(step(format!("{p}%"), state));
    }
    if bake {
        let state = match record.phase {
            Phase::Completed => StepState::Done,
            Phase::Baking => StepState::Current,
            _ => StepState::Next,
        };
        out.push(step("bake".into(), state));
    }
    out
}

/// The newest judged entry of the history, with its numbers.
fn last_judged(record: &Record) -> Option<LastJudged> {
    record.history.entries.iter().rev().find_map(|e| {
        let j = e.judged.as_ref()?;
        Some(LastJudged {
            at: e.at,
            decision: e.decision.clone(),
            requests: j.n,
            errors_5xx: j.e,
            error_rate: if j.n == 0 {
                0.0
            } else {
                j.e as f64 / j.n as f64
            },
            p99_ms: j.p99,
            min_requests: j.min,
            max_error_rate: j.max_er,
            max_p99_ms: j.max_p99,
        })
    })
}

/// The chart of an active rollout: its candidate's and stable's minutes since it started (at
/// most [`CHART_LOOKBACK`]), from the cache or one Monitoring query.
async fn chart(app: &App, obs: &Observed, r: &Rollout, now: Timestamp, deadline: Instant) -> Chart {
    let (Some(candidate), Some(stable)) = (&r.row.candidate, &r.row.stable) else {
        return Chart {
            from: now,
            to: now,
            series: Vec::new(),
            error: Some("no candidate and stable revisions recorded".into()),
        };
    };
    let started = Record::from_annotations(&obs.annotations)
        .ok()
        .flatten()
        .map_or(now, |rec| rec.started);
    let from = started.max(now - CHART_LOOKBACK);
    if now.duration_since(from) < SignedDuration::from_mins(1) {
        // Not a whole minute yet: nothing Monitoring could show.
        return Chart {
            from,
            to: now,
            series: Vec::new(),
            error: None,
        };
    }
    let window = Window {
        start: from,
        end: now,
    };
    let stats = app
        .status_charts
        .get_or_read(&obs.service, started, now, || async {
            app.reconciler
                .metrics
                .service_stats(&obs.service, window, deadline)
                .await
                .map_err(|e| chain(&e).to_string())
        })
        .await;
    let series: Result<Vec<Series>, String> = stats.and_then(|stats| {
        [(candidate, "candidate"), (stable, "stable")]
            .into_iter()
            .map(|(rev, role)| {
                Ok(Series {
                    revision: rev.clone(),
                    role,
                    minutes: minutes_of(&stats, rev)?,
                })
            })
            .collect()
    });
    let (series, error) = match series {
        Ok(s) => (s, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    Chart {
        from,
        to: now,
        series,
        error,
    }
}

#[cfg(test)]
mod tests;
