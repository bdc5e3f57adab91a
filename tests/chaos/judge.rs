//! After a seed: reads each service's history and final state back from the fake, runs the
//! invariants on them, and records the outcome, the figures and, for a service with a
//! violation, the evidence (plan, every write, the final record).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use cutover_fakes::FakeGcp;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::invariants::{self, Subject, Violation};
use crate::plan::{Health, Plan, ServicePlan};
use crate::pubsub::{Message, Subscription};
use crate::{PROJECT, REGION, STEPS, SeedReport};

/// What happened to a service during the run, beyond what the fake recorded.
#[derive(Debug, Default)]
pub struct Facts {
    /// Revision → when it was deployed.
    pub deployed_at: BTreeMap<String, Timestamp>,
    /// Revision → when it turned bad (revisions that were healthy first).
    pub turned_bad_at: BTreeMap<String, Timestamp>,
    /// When open incidents were published.
    pub open_incidents: Vec<Timestamp>,
}

/// The rollout's end as the record on the service says, or why it has not ended.
pub fn outcome(fake: &FakeGcp, s: &ServicePlan) -> Result<String, String> {
    let service = fake.service_json(PROJECT, REGION, &s.name);
    let a = &service["annotations"];
    let get = |k: &str| {
        a[format!("cutover.dev/{k}")]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let Some(expected) = s.final_candidate() else {
        return Ok("nothing to roll out".into());
    };
    let (phase, candidate, reason) = (get("phase"), get("candidate"), get("reason"));
    if candidate != expected.name {
        return Err(format!(
            "the record is about {:?} ({phase}), not {}, the last revision deployed",
            candidate, expected.name
        ));
    }
    match phase.as_str() {
        "completed" | "rolled-back" if !reason.is_empty() => Ok(phase),
        "paused" if !get("paused-by").is_empty() && !reason.is_empty() => {
            Ok(format!("paused ({})", get("paused-by")))
        }
        _ => Err(format!(
            "{phase:?}, paused-by {:?}: {reason}",
            get("paused-by")
        )),
    }
}

fn record_text(fake: &FakeGcp, service: &str) -> String {
    let json = fake.service_json(PROJECT, REGION, service);
    let mut out = String::new();
    if let Some(Value::Object(a)) = json.get("annotations") {
        for (k, v) in a {
            let _ = writeln!(out, "    {k} = {}", v.as_str().unwrap_or_default());
        }
    }
    out
}

/// Judges every service of `plan` on `fake` into `report`.
/// Judges a finished seed, and notes any published message that was never acknowledged.
pub fn conclude(
    fake: &FakeGcp,
    plan: &Plan,
    facts: &BTreeMap<String, Facts>,
    sub: &Subscription,
    published: &[Arc<Message>],
    report: &mut SeedReport,
) {
    judge(fake, plan, facts, report);
    let lost: Vec<String> = sub
        .unacked(published)
        .iter()
        .map(|m| format!("{} ({})", m.what, m.id))
        .collect();
    if !lost.is_empty() {
        report
            .evidence
            .push_str(&format!("  never acked: {}\n", lost.join(", ")));
    }
}

pub fn judge(
    fake: &FakeGcp,
    plan: &Plan,
    facts: &BTreeMap<String, Facts>,
    report: &mut SeedReport,
) {
    let empty = Facts::default();
    for s in &plan.services {
        let f = facts.get(&s.name).unwrap_or(&empty);
        let history = fake.history(PROJECT, REGION, &s.name);
        let order = s.creation_order();
        let mut judged_bad_from = BTreeMap::new();
        let mut healthy = BTreeSet::new();
        for r in &s.revisions {
            match (&r.health, f.deployed_at.get(&r.name)) {
                (Health::Errors(_) | Health::Slow(_), Some(at)) => {
                    judged_bad_from.insert(r.name.clone(), *at);
                }
                (Health::TurnsBad { .. }, _) => {
                    // A step starting a minute after the turn is judged on bad minutes only.
                    if let Some(at) = f.turned_bad_at.get(&r.name) {
                        judged_bad_from.insert(r.name.clone(), *at + SignedDuration::from_mins(1));
                    }
                }
                (Health::Healthy, _) => {
                    healthy.insert(r.name.clone());
                }
                _ => {}
            }
        }
        let subject = Subject {
            service: &s.name,
            history: &history,
            creation_order: &order,
            steps: STEPS,
            judged_bad_from: &judged_bad_from,
            healthy: &healthy,
            open_incidents: &f.open_incidents,
        };
        let mut v: Vec<Violation> = Vec::new();
        subject.check(&mut v);

        let service = fake.service_json(PROJECT, REGION, &s.name);
        let (labels, annotations) = fake.concurrent_writes(PROJECT, REGION, &s.name);
        let label = service["labels"]["concurrent-writes"]
            .as_str()
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0);
        let annotation = service["annotations"]["concurrent.example.com/writes"]
            .as_str()
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0);
        if (label, annotation) != (labels, annotations) {
            v.push(Violation {
                service: s.name.clone(),
                invariant: invariants::CONCURRENT_KEPT,
                detail: format!(
                    "{labels} label and {annotations} annotation writes by others, the service shows {label} and {annotation}"
                ),
            });
        }
        match outcome(fake, s) {
            Ok(o) => *report.outcomes.entry(o).or_insert(0) += 1,
            Err(why) => v.push(Violation {
                service: s.name.clone(),
                invariant: invariants::ENDS,
                detail: format!("not ended within the bound: {why}"),
            }),
        }
        report.rollouts += s
            .revisions
            .iter()
            .filter(|r| r.health != Health::Unready)
            .count();
        if !v.is_empty() {
            let _ = writeln!(
                report.evidence,
                "  {}: history (every accepted write):\n{}\n  final record:\n{}",
                s.name,
                invariants::dump(&history),
                record_text(fake, &s.name)
            );
        }
        report.violations.extend(v);
    }
    let invalid: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.status == 400)
        .map(|r| format!("{} at {}", r.path, r.at))
        .collect();
    if !invalid.is_empty() {
        report.violations.push(Violation {
            service: "*".into(),
            invariant: invariants::VALID_WRITES,
            detail: format!(
                "{} PATCHes answered 400: {}",
                invalid.len(),
                invalid.join("; ")
            ),
        });
    }
    for r in fake.requests() {
        if r.method == "PATCH" {
            match r.status {
                200 => report.writes += 1,
                409 => report.conflicts_answered += 1,
                _ => {}
            }
        }
    }
    report.services += plan.services.len();
    report.faults.add(&fake.faults().counts());
    if !report.violations.is_empty() {
        report.evidence = format!("{}\n{}", plan.describe(), report.evidence);
    }
}
