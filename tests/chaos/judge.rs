//! After a seed: reads each service's history and final state back from the fake, runs the
//! invariants on them, and records the outcome, the figures and, for a service with a
//! violation, the evidence (plan, every write, the final record).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use crate::invariants::{self, Subject, Violation};
use crate::plan::{Health, Plan, ServicePlan};
use crate::platform::World;
use crate::pubsub::{Message, Subscription};
use crate::{STEPS, SeedReport};

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

/// The rollout's end as the service's record says, or why it has not ended.
pub async fn outcome(world: &World, s: &ServicePlan) -> Result<String, String> {
    let a = world.record(&s.name).await?;
    let get = |k: &str| {
        a.get(&format!("cutover.dev/{k}"))
            .cloned()
            .unwrap_or_default()
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

/// Whether every service of `plan` has ended.
pub async fn all_ended(world: &World, plan: &Plan) -> bool {
    for s in &plan.services {
        if outcome(world, s).await.is_err() {
            return false;
        }
    }
    true
}

async fn record_text(world: &World, service: &str) -> String {
    let mut out = String::new();
    match world.record(service).await {
        Ok(record) => {
            for (k, v) in record {
                let _ = writeln!(out, "    {k} = {v}");
            }
        }
        Err(why) => {
            let _ = writeln!(out, "    ({why})");
        }
    }
    out
}

/// Judges every service of `plan` on `fake` into `report`.
/// Judges a finished seed, and notes any published message that was never acknowledged.
pub async fn conclude(
    world: &World,
    plan: &Plan,
    facts: &BTreeMap<String, Facts>,
    sub: &Subscription,
    published: &[Arc<Message>],
    report: &mut SeedReport,
) {
    judge(world, plan, facts, report).await;
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

pub async fn judge(
    world: &World,
    plan: &Plan,
    facts: &BTreeMap<String, Facts>,
    report: &mut SeedReport,
) {
    let empty = Facts::default();
    for s in &plan.services {
        let f = facts.get(&s.name).unwrap_or(&empty);
        let history = world.history(&s.name);
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

        for detail in world.split_sums(&s.name) {
            v.push(Violation {
                service: s.name.clone(),
                invariant: invariants::SUMS_TO_100,
                detail,
            });
        }
        if let Some(detail) = world.concurrent_lost(&s.name) {
            v.push(Violation {
                service: s.name.clone(),
                invariant: invariants::CONCURRENT_KEPT,
                detail,
            });
        }
        match outcome(world, s).await {
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
                record_text(world, &s.name).await
            );
        }
        report.violations.extend(v);
    }
    let fake = &world.fake;
    let writes = |m: &str| m == "PATCH" || m == "PUT";
    let invalid: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| writes(&r.method) && r.status == 400)
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
        if writes(&r.method) {
            match r.status {
                200 => report.writes += 1,
                // A URL map's stale fingerprint is 412 conditionNotMet.
                409 | 412 => report.conflicts_answered += 1,
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
