//! Which decisions become lifecycle events, and each event's id: pure functions of a decision
//! record, table-tested, shared by the Pub/Sub events and the chat messages.
//!
//! A decision is an event only if it happened: a write must have been applied (a write that
//! lost its race or failed is decided again, and that decision is the one that counts), and a
//! shadow-mode decision changed nothing, so it is no event. `held` is a due step that was
//! judged and settled nothing (the record carries the judged window); a step soaking before it
//! is due, a bake in progress and a smoke check waiting for its URL hold too, but those are
//! the rollout going as planned, not news. Its id comes from the step (service, candidate,
//! share and the step's start, which is the judged window's start), so every hold of one step,
//! on any instance, has the same id; [`HeldOnce`] keeps an instance from sending it twice.

use std::collections::HashMap;

use crate::decision::Kind;
use crate::decision::policy::Mode;
use crate::reconcile::DecisionRecord;

/// A rollout's lifecycle event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Started,
    Advanced,
    Held,
    Paused,
    Resumed,
    Promoted,
    RolledBack,
    Completed,
    Baked,
    Refused,
}

impl EventType {
    /// Every event type, in the README's order.
    pub const ALL: [EventType; 10] = [
        EventType::Started,
        EventType::Advanced,
        EventType::Held,
        EventType::Paused,
        EventType::Resumed,
        EventType::Promoted,
        EventType::RolledBack,
        EventType::Completed,
        EventType::Baked,
        EventType::Refused,
    ];

    /// The short name (`rolledback`), as the `kind` attribute carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Started => "started",
            EventType::Advanced => "advanced",
            EventType::Held => "held",
            EventType::Paused => "paused",
            EventType::Resumed => "resumed",
            EventType::Promoted => "promoted",
            EventType::RolledBack => "rolledback",
            EventType::Completed => "completed",
            EventType::Baked => "baked",
            EventType::Refused => "refused",
        }
    }

    /// The CloudEvents type (`dev.cutover.rollout.v1.rolledback`).
    pub fn ce_type(self) -> String {
        format!("dev.cutover.rollout.v1.{}", self.as_str())
    }

    /// Whether people are told in chat: rollbacks, pauses, refusals of builds and alerts, and
    /// completions. A person's refused verb is not: that person sees the refusal already.
    pub fn is_chat_worthy(self, rec: &DecisionRecord) -> bool {
        match self {
            EventType::RolledBack | EventType::Paused | EventType::Completed => true,
            EventType::Refused => !rec.trigger.starts_with("cutover "),
            _ => false,
        }
    }
}

/// The trigger of a person's `cutover promote`, as records name it.
const PROMOTE: &str = "cutover promote";

/// The event a decision record is, if any (before [`HeldOnce`]).
pub fn event_of(rec: &DecisionRecord) -> Option<EventType> {
    if rec.mode == Mode::Shadow {
        return None;
    }
    let applied = rec.write == "applied";
    let promoted = rec.trigger == PROMOTE;
    match rec.decision {
        Kind::Start if applied => Some(EventType::Started),
        Kind::Advance | Kind::Bake if applied && promoted => Some(EventType::Promoted),
        Kind::Advance if applied => Some(EventType::Advanced),
        Kind::Bake if applied => Some(EventType::Baked),
        Kind::Complete if applied => Some(EventType::Completed),
        Kind::Rollback if applied => Some(EventType::RolledBack),
        Kind::Pause if applied => Some(EventType::Paused),
        Kind::Resume if applied => Some(EventType::Resumed),
        Kind::Hold if is_judged_hold(rec) => Some(EventType::Held),
        Kind::Refused => Some(EventType::Refused),
        _ => None,
    }
}

/// A due step judged without a verdict: the rollout progresses (not baking, not smoke-checking)
/// and the record carries the window that was judged.
fn is_judged_hold(rec: &DecisionRecord) -> bool {
    let progressing = rec
        .phase
        .is_some_and(|p| p == crate::decision::Phase::Progressing);
    progressing && rec.window_start.is_some()
}

/// What pins an event down beside its service, candidate, type and share: for `held`, the
/// step's start (the judged window's start, the same for every hold of the step); for a
/// `refused` event, the Pub/Sub message refused (a redelivery is refused again, with the same
/// id); for any other event, the decision's own time (for a write, the step start it wrote; a
/// write is applied once, whichever instance sends it).
fn anchor(rec: &DecisionRecord, ty: EventType) -> String {
    match (ty, rec.window_start, &rec.message_id) {
        (EventType::Held, Some(start), _) => start.to_string(),
        (EventType::Refused, _, Some(message)) => format!("message {message}"),
        _ => rec.at.to_string(),
    }
}

/// The event's id (`ce-id`): the same for the same decision, whoever delivers it and however
/// often. A hash of the service, candidate, event type, the candidate's share and the
/// [`anchor`] time, as 32 hex digits (FNV-1a, 128 bits: stable across builds and machines,
/// unlike std's hasher).
pub fn ce_id(rec: &DecisionRecord, ty: EventType) -> String {
    let parts = [
        rec.service.as_str(),
        rec.candidate.as_deref().unwrap_or(""),
        ty.as_str(),
        &rec.percent.map(|p| p.to_string()).unwrap_or_default(),
        &anchor(rec, ty),
    ];
    format!("{:032x}", fnv1a_128(&parts.join("\u{1f}")))
}

fn fnv1a_128(s: &str) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    s.bytes()
        .fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

/// Remembers, per service, the last `held` event sent, so each step's hold goes out once.
#[derive(Debug, Default)]
pub struct HeldOnce {
    last: HashMap<String, String>,
}

impl HeldOnce {
    /// Whether the event `id` of type `ty` for `service` should go out. Any other event of the
    /// service ends its step, so a later hold (after a resume at the same share, say) is news.
    pub fn admit(&mut self, service: &str, ty: EventType, id: &str) -> bool {
        if ty != EventType::Held {
            self.last.remove(service);
            return true;
        }
        if self.last.get(service).is_some_and(|last| last == id) {
            return false;
        }
        self.last.insert(service.to_string(), id.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{PauseCause, Phase};

    fn rec(kind: Kind, trigger: &'static str, write: &str) -> DecisionRecord {
        DecisionRecord {
            at: "2026-08-20T10:08:00Z".parse().unwrap(),
            service: "p/europe-west1/api".into(),
            trigger,
            decision: kind,
            candidate: Some("api-00002-def".into()),
            stable: Some("api-00001-abc".into()),
            percent: Some(10),
            phase: Some(Phase::Progressing),
            write: write.into(),
            ..DecisionRecord::default()
        }
    }

    fn judged(mut r: DecisionRecord) -> DecisionRecord {
        r.window_start = Some("2026-08-20T10:00:00Z".parse().unwrap());
        r.window_end = Some("2026-08-20T10:05:00Z".parse().unwrap());
        r
    }

    #[test]
    fn every_kind_and_trigger_maps_to_its_event_or_none() {
        use EventType::*;
        let kinds = [
            Kind::Gather,
            Kind::Start,
            Kind::Advance,
            Kind::Bake,
            Kind::Complete,
            Kind::Hold,
            Kind::Rollback,
            Kind::Pause,
            Kind::Resume,
            Kind::Nothing,
            Kind::Error,
            Kind::Refused,
        ];
        let triggers = [
            "build",
            "tick",
            "alert",
            "cutover start",
            "cutover promote",
            "cutover rollback",
            "cutover pause",
            "cutover resume",
        ];
        for kind in kinds {
            for trigger in triggers {
                let write = match kind {
                    Kind::Hold | Kind::Nothing | Kind::Error | Kind::Refused | Kind::Gather => {
                        "none"
                    }
                    _ => "applied",
                };
                let r = judged(rec(kind, trigger, write));
                let expected = match kind {
                    Kind::Start => Some(Started),
                    Kind::Advance | Kind::Bake if trigger == "cutover promote" => Some(Promoted),
                    Kind::Advance => Some(Advanced),
                    Kind::Bake => Some(Baked),
                    Kind::Complete => Some(Completed),
                    Kind::Hold => Some(Held),
                    Kind::Rollback => Some(RolledBack),
                    Kind::Pause => Some(Paused),
                    Kind::Resume => Some(Resumed),
                    Kind::Refused => Some(Refused),
                    Kind::Gather | Kind::Nothing | Kind::Error => None,
                };
                assert_eq!(event_of(&r), expected, "{kind} by {trigger}");
                // A write that did not happen is no event; nor is anything in shadow mode.
                for failed in [
                    "conflict: someone wrote first; deciding again",
                    "failed: 500",
                ] {
                    let mut r = r.clone();
                    r.write = failed.into();
                    if write == "applied" {
                        assert_eq!(event_of(&r), None, "{kind} by {trigger}, {failed}");
                    }
                }
                let mut shadow = r.clone();
                shadow.mode = Mode::Shadow;
                shadow.write = "shadow: not written".into();
                assert_eq!(
                    event_of(&shadow),
                    None,
                    "{kind} by {trigger} in shadow mode"
                );
            }
        }
    }

    #[test]
    fn only_a_judged_hold_of_a_progressing_step_is_held() {
        let soaking = rec(Kind::Hold, "tick", "none");
        assert_eq!(event_of(&soaking), None, "soaking before the step is due");
        let mut baking = judged(rec(Kind::Hold, "tick", "none"));
        baking.phase = Some(Phase::Baking);
        assert_eq!(event_of(&baking), None, "baking");
        let mut smoke = rec(Kind::Hold, "tick", "none");
        smoke.phase = Some(Phase::Smoke);
        assert_eq!(event_of(&smoke), None, "waiting for the smoke check");
        let mut paused = judged(rec(Kind::Hold, "tick", "none"));
        paused.phase = Some(Phase::Paused(PauseCause::MaxHold));
        assert_eq!(event_of(&paused), None);
        assert_eq!(
            event_of(&judged(rec(Kind::Hold, "tick", "none"))),
            Some(EventType::Held)
        );
    }

    #[test]
    fn chat_hears_rollbacks_pauses_completions_and_refused_events_only() {
        let build = rec(Kind::Refused, "build", "none");
        let verb = rec(Kind::Refused, "cutover resume", "none");
        for ty in EventType::ALL {
            let expected = matches!(
                ty,
                EventType::RolledBack
                    | EventType::Paused
                    | EventType::Completed
                    | EventType::Refused
            );
            assert_eq!(ty.is_chat_worthy(&build), expected, "{ty:?}");
        }
        assert!(!EventType::Refused.is_chat_worthy(&verb));
    }

    #[test]
    fn the_id_is_the_same_for_the_same_decision_and_differs_otherwise() {
        let a = rec(Kind::Advance, "tick", "applied");
        assert_eq!(
            ce_id(&a, EventType::Advanced),
            ce_id(&a.clone(), EventType::Advanced)
        );
        // Fixed forever: consumers dedupe on it across instances and versions.
        assert_eq!(ce_id(&a, EventType::Advanced).len(), 32);
        let mut later = a.clone();
        later.at = "2026-08-20T10:09:00Z".parse().unwrap();
        let mut other_candidate = a.clone();
        other_candidate.candidate = Some("api-00003-ghi".into());
        let mut other_share = a.clone();
        other_share.percent = Some(50);
        let mut other_service = a.clone();
        other_service.service = "p/europe-west1/web".into();
        let id = ce_id(&a, EventType::Advanced);
        for (what, r) in [
            ("time", &later),
            ("candidate", &other_candidate),
            ("share", &other_share),
            ("service", &other_service),
        ] {
            assert_ne!(ce_id(r, EventType::Advanced), id, "{what}");
        }
        assert_ne!(ce_id(&a, EventType::Promoted), id, "type");
    }

    #[test]
    fn a_refused_message_has_the_same_id_however_often_it_is_delivered() {
        let mut first = rec(Kind::Refused, "build", "none");
        first.message_id = Some("4242".into());
        let mut again = first.clone();
        again.at = "2026-08-20T10:09:30Z".parse().unwrap();
        let id = ce_id(&first, EventType::Refused);
        assert_eq!(ce_id(&again, EventType::Refused), id, "a redelivery");
        let mut other = again.clone();
        other.message_id = Some("4243".into());
        assert_ne!(ce_id(&other, EventType::Refused), id, "another message");
    }

    #[test]
    fn every_hold_of_a_step_has_one_id_and_goes_out_once() {
        let first = judged(rec(Kind::Hold, "tick", "none"));
        let mut again = first.clone();
        again.at = "2026-08-20T10:09:00Z".parse().unwrap();
        again.window_end = Some("2026-08-20T10:06:00Z".parse().unwrap());
        let id = ce_id(&first, EventType::Held);
        assert_eq!(ce_id(&again, EventType::Held), id, "same step, later tick");

        let mut held = HeldOnce::default();
        assert!(held.admit(&first.service, EventType::Held, &id));
        assert!(!held.admit(&again.service, EventType::Held, &id));
        // Another service's hold is its own.
        assert!(held.admit("p/europe-west1/web", EventType::Held, &id));
        // The next step's hold is news.
        let mut next = first.clone();
        next.percent = Some(50);
        next.window_start = Some("2026-08-20T10:08:00Z".parse().unwrap());
        let next_id = ce_id(&next, EventType::Held);
        assert_ne!(next_id, id);
        assert!(held.admit(&next.service, EventType::Held, &next_id));
        // After a pause and a resume at the same share, the same step's hold goes out again.
        assert!(held.admit(&next.service, EventType::Paused, "x"));
        assert!(held.admit(&next.service, EventType::Held, &next_id));
    }
}
