//! Shadow mode's memory: the rollouts cutover would be running, kept in this process only.
//!
//! In shadow mode (`CUTOVER_MODE=shadow`, or `cutover.dev/mode: shadow` on a service) nothing is
//! written, so the service never carries the record a live rollout keeps in its annotations. To
//! let a shadow rollout progress across events as a live one would, each write that is not sent
//! is remembered here per service: the record it would have written and the split it would have
//! set. Every later read of that service is overlaid with them before the decision core sees it,
//! so the core decides on the state its own earlier decisions would have produced, and judges
//! the candidate on the metrics it really has.
//!
//! The split is overlaid only while the shadow rollout runs or is paused; once it completed or
//! rolled back, the next build starts from what really serves (the record stays, for its memory
//! of rolled-back revisions). Limits: the memory is per process (a restart, or another instance
//! receiving the next push, starts the shadow over: run one instance while shadowing), and a
//! candidate that really serves nothing has no data, so its steps hold and pause after the
//! maximum hold: shadow decisions equal live ones when the candidate really gets the traffic
//! the decisions name (a team routing its canary by hand, say).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::decision::record::RECORD_KEYS;
use crate::decision::{Observed, Phase, Write};
use crate::target::ServiceRef;

/// What one unsent write would have left on its service.
#[derive(Clone, Debug)]
struct Would {
    record: BTreeMap<String, String>,
    allocation: BTreeMap<String, u8>,
    /// The rollout runs or is paused: its split is still the one it set.
    holds_traffic: bool,
}

/// The shadow rollouts of this process, one per service.
#[derive(Debug, Default)]
pub struct ShadowBook {
    services: Mutex<BTreeMap<ServiceRef, Would>>,
}

impl ShadowBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ServiceRef, Would>> {
        self.services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `obs` as the shadow rollout of its service would have left it (unchanged when there is
    /// none).
    pub fn overlay(&self, mut obs: Observed) -> Observed {
        if let Some(w) = self.lock().get(&obs.service) {
            apply(&mut obs, w);
        }
        obs
    }

    /// Forgets the shadow rollout of a service that is live again: its own record rules.
    pub fn forget(&self, service: &ServiceRef) {
        self.lock().remove(service);
    }

    /// Remembers `write` as made on `obs`; returns the service as it would be after it.
    pub fn remember(&self, obs: &Observed, write: &Write) -> Observed {
        let allocation = match &write.traffic {
            Some(t) => t
                .iter()
                .filter(|t| t.percent > 0)
                .map(|t| (t.revision.clone(), t.percent))
                .collect(),
            None => obs.allocation.clone(),
        };
        let phase = write.record.phase;
        let w = Would {
            record: write.record.to_annotations(),
            allocation,
            holds_traffic: phase.is_running() || matches!(phase, Phase::Paused(_)),
        };
        let mut after = obs.clone();
        apply(&mut after, &w);
        self.lock().insert(obs.service.clone(), w);
        after
    }
}

fn apply(obs: &mut Observed, w: &Would) {
    obs.annotations
        .retain(|k, _| !RECORD_KEYS.contains(&k.as_str()));
    obs.annotations
        .extend(w.record.iter().map(|(k, v)| (k.clone(), v.clone())));
    if w.holds_traffic {
        obs.allocation = w.allocation.clone();
    }
}
