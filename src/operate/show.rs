//! What `status`, `history`, `plan` and the state-changing verbs print: aligned columns for
//! people (gcloud-like), or one JSON document (`status --output json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;

use crate::config::Output;
use crate::decision::record::Entry;
use crate::decision::{Decision, Observed, Phase, Policy, Record, describe};
use crate::reconcile::DecisionRecord;
use crate::target::{Platform, ServiceRef};

/// One service's rollout, as `status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The service's name; a target of another platform than Cloud Run is prefixed with its
    /// platform (`app-engine:web`, `load-balancer:web-map`).
    pub service: String,
    /// `cloud-run`, `app-engine` or `load-balancer`.
    pub platform: String,
    pub project: String,
    pub region: String,
    /// `progressing`, `paused (max-hold)`, …, `none`, or why the record is unreadable.
    pub phase: String,
    pub candidate: Option<String>,
    pub stable: Option<String>,
    /// Who serves what now (revision → percent).
    pub traffic: BTreeMap<String, u8>,
    /// The candidate's share as cutover last wrote it, and when that step started.
    pub step: Option<u8>,
    pub step_started: Option<Timestamp>,
    /// When the running step is judged next (a running rollout only).
    pub next_judgement: Option<Timestamp>,
    pub last_decision: Option<String>,
    pub last_actor: Option<String>,
    pub reason: Option<String>,
    #[serde(skip)]
    active: bool,
}

/// How tables name a target: a Cloud Run service by its name, others by platform and name.
pub fn target_name(target: &ServiceRef) -> String {
    match target.platform {
        Platform::CloudRun => target.name.to_string(),
        p => format!("{p}:{}", target.name),
    }
}

impl Row {
    /// The row of one observed service; `defaults` with the service's overrides give when the
    /// step is due.
    pub fn of(obs: &Observed, defaults: &Policy, now: Timestamp) -> Row {
        let mut row = Row {
            service: target_name(&obs.service),
            platform: obs.service.platform.to_string(),
            project: obs.service.project.to_string(),
            region: obs.service.region.to_string(),
            phase: "none".into(),
            candidate: None,
            stable: None,
            traffic: obs.allocation.clone(),
            step: None,
            step_started: None,
            next_judgement: None,
            last_decision: None,
            last_actor: None,
            reason: None,
            active: false,
        };
        let r = match Record::from_annotations(&obs.annotations) {
            Ok(Some(r)) => r,
            Ok(None) => return row,
            Err(e) => {
                row.phase = format!("unreadable record ({e})");
                row.active = true;
                return row;
            }
        };
        row.active = r.phase.is_running() || matches!(r.phase, Phase::Paused(_));
        row.phase = r.phase.to_string();
        if r.phase == Phase::Progressing
            && let Ok(p) = defaults.with_overrides(&obs.annotations)
        {
            let due = r
                .step_started
                .saturating_add(p.step_interval)
                .and_then(|t| t.saturating_add(p.metrics_delay))
                .ok();
            row.next_judgement = due.map(|d| d.max(now));
        } else if r.phase == Phase::Smoke {
            row.next_judgement = Some(now);
        }
        let last = r.history.entries.last();
        row.last_decision = last.map(|e| e.decision.clone());
        row.last_actor = r.history.actor.clone();
        row.candidate = Some(r.candidate);
        row.stable = Some(r.stable);
        row.step = Some(r.percent);
        row.step_started = Some(r.step_started);
        row.reason = Some(r.reason);
        row
    }

    /// Running, paused, or in need of a person (an unreadable record).
    pub fn is_active(&self) -> bool {
        self.active
    }
}

fn or_dash<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), ToString::to_string)
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                let _ = write!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        out.push('\n');
    };
    line(&mut out, header.to_vec());
    for row in rows {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    out
}

/// `cutover status`.
pub fn status(rows: &[Row], output: Output) -> anyhow::Result<String> {
    if output == Output::Json {
        return Ok(serde_json::to_string_pretty(rows)? + "\n");
    }
    if rows.is_empty() {
        return Ok("no active rollout\n".into());
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.service.clone(),
                r.region.clone(),
                r.phase.clone(),
                or_dash(&r.candidate),
                or_dash(&r.stable),
                describe(&r.traffic),
                r.step.map_or_else(|| "-".into(), |p| format!("{p}%")),
                or_dash(&r.step_started),
                or_dash(&r.next_judgement),
                match (&r.last_decision, &r.last_actor) {
                    (Some(d), Some(a)) => format!("{d} by {a}"),
                    (d, _) => or_dash(d),
                },
                or_dash(&r.reason),
            ]
        })
        .collect();
    Ok(table(
        &[
            "SERVICE",
            "REGION",
            "PHASE",
            "CANDIDATE",
            "STABLE",
            "TRAFFIC",
            "STEP",
            "SINCE",
            "NEXT JUDGEMENT",
            "LAST",
            "REASON",
        ],
        &cells,
    ))
}

fn judged_cells(e: &Entry) -> [String; 4] {
    match &e.judged {
        Some(j) => [
            j.n.to_string(),
            j.e.to_string(),
            j.p99.map_or_else(|| "-".into(), |p| format!("{p:.0}ms")),
            format!(
                "min {} req, 5xx <= {}, p99 <= {}ms",
                j.min, j.max_er, j.max_p99
            ),
        ],
        None => ["-".into(), "-".into(), "-".into(), "-".into()],
    }
}

/// `cutover history SERVICE`: the decisions kept on the service, oldest first.
pub fn history(obs: &Observed) -> anyhow::Result<String> {
    let Some(r) = Record::from_annotations(&obs.annotations)? else {
        return Ok(format!("no rollout on {}\n", obs.service));
    };
    let mut out = format!(
        "{}: rollout of {} (stable {}) is {}\n",
        obs.service, r.candidate, r.stable, r.phase
    );
    let rows: Vec<Vec<String>> = r
        .history
        .entries
        .iter()
        .map(|e| {
            let [n, errors, p99, limits] = judged_cells(e);
            vec![
                e.at.to_string(),
                e.actor.clone(),
                e.trigger.clone(),
                e.decision.clone(),
                format!("{}%", e.percent),
                n,
                errors,
                p99,
                limits,
                e.reason.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "AT",
            "BY",
            "TRIGGER",
            "DECISION",
            "CANDIDATE",
            "REQUESTS",
            "5XX",
            "P99",
            "LIMITS",
            "REASON",
        ],
        &rows,
    ));
    Ok(out)
}

/// `cutover plan SERVICE`: what a tick would decide now, with its numbers.
pub fn plan(target: &ServiceRef, d: &Decision) -> String {
    let mut out = format!(
        "{target}: the next tick would decide {}: {}\n",
        d.kind(),
        d.reason
    );
    if let Some(j) = &d.judgement {
        let _ = writeln!(
            out,
            "  window {} .. {}: {} requests, {} 5xx (rate {:.4}), p99 {}",
            j.window.start,
            j.window.end,
            j.requests,
            j.errors_5xx,
            j.error_rate,
            j.p99_ms.map_or_else(|| "-".into(), |p| format!("{p:.0}ms"))
        );
    }
    if let Some(p) = &d.policy {
        let _ = writeln!(
            out,
            "  limits: at least {} requests, 5xx rate <= {}, p99 <= {}ms, steps {:?}",
            p.min_requests, p.max_error_rate, p.max_p99_ms, p.steps
        );
    }
    if let Some(w) = d.write() {
        let split = w.traffic.as_ref().map_or_else(
            || "traffic unchanged".to_string(),
            |t| {
                t.iter()
                    .map(|t| format!("{}={}%", t.revision, t.percent))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        let _ = writeln!(out, "  it would write: {split}; phase {}", w.record.phase);
    }
    out
}

/// One decision a verb made, and what became of its write.
pub fn outcome(r: &DecisionRecord) -> String {
    let state = match (r.phase, r.percent) {
        (Some(phase), Some(p)) => format!(" [{phase}, candidate {p}%]"),
        _ => String::new(),
    };
    format!(
        "{}: {} ({}){state}: {}",
        r.service, r.decision, r.write, r.reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ProjectId, ServiceName};

    #[test]
    fn a_row_names_the_platform_of_a_target_that_is_not_cloud_run() {
        let observed = |service: ServiceRef| Observed {
            service,
            latest_ready: None,
            allocation: BTreeMap::from([("v1".to_string(), 100)]),
            ready: Default::default(),
            tag_urls: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        let now = "2026-12-05T03:00:00Z".parse().unwrap();
        let ae = ServiceRef::global(
            Platform::AppEngine,
            ProjectId::parse("acme").unwrap(),
            ServiceName::parse("web").unwrap(),
        );
        let row = Row::of(&observed(ae), &Policy::default(), now);
        assert_eq!(row.service, "app-engine:web");
        assert_eq!(row.platform, "app-engine");
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["platform"], "app-engine");
        let run = ServiceRef::checked("acme", "us-central1", "api").unwrap();
        let row = Row::of(&observed(run), &Policy::default(), now);
        assert_eq!(
            (row.service.as_str(), row.platform.as_str()),
            ("api", "cloud-run")
        );
    }
}
