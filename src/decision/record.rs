//! cutover's record of a rollout, kept as annotations on the target service.
//!
//! There is no database: the record travels in the same etag-guarded write as the traffic it
//! describes, so the service itself always says which rollout it is in, and any cutover instance
//! (or a restarted one) continues from it. Parse and emit live side by side here; nothing else
//! knows the annotation keys.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;

/// Prefix of every annotation cutover owns or reads.
pub const PREFIX: &str = "cutover.dev/";

const PHASE: &str = "cutover.dev/phase";
const PAUSED_BY: &str = "cutover.dev/paused-by";
const CANDIDATE: &str = "cutover.dev/candidate";
const STABLE: &str = "cutover.dev/stable";
const PERCENT: &str = "cutover.dev/percent";
const STARTED: &str = "cutover.dev/started";
const STEP_STARTED: &str = "cutover.dev/step-started";
const REASON: &str = "cutover.dev/reason";
const ROLLED_BACK: &str = "cutover.dev/rolled-back";
const ACTOR: &str = "cutover.dev/actor";
const HISTORY: &str = "cutover.dev/history";
const BUILD: &str = "cutover.dev/build";

/// The annotations that make up the record (written and removed by cutover alone). Other
/// `cutover.dev/*` keys are a person's policy overrides and are never touched.
pub const RECORD_KEYS: &[&str] = &[
    PHASE,
    PAUSED_BY,
    CANDIDATE,
    STABLE,
    PERCENT,
    STARTED,
    STEP_STARTED,
    REASON,
    ROLLED_BACK,
    ACTOR,
    HISTORY,
    BUILD,
];

/// How many rolled-back revisions are remembered (oldest forgotten first). Revisions only get
/// newer, so a short memory is enough to never retry a recent failure automatically.
pub const ROLLED_BACK_MEMORY: usize = 10;

/// Annotation values are limited in size by Cloud Run (Run v2 follows Kubernetes' rules: 256 KiB
/// for all of a service's annotations together); reasons are human text and are cut well below
/// that. The largest record cutover can write is measured by
/// `worst_case_record_fits_cloud_runs_annotation_limit` below (28,538 bytes).
const MAX_REASON_CHARS: usize = 1000;

/// Build ids are at most 64 characters where they enter (`ids::BuildId`); a hand-edited
/// annotation is cut to the same.
const MAX_BUILD_CHARS: usize = 64;

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The candidate is tagged at 0% and its smoke check has not passed yet.
    Smoke,
    /// The candidate has `percent` of traffic and is being judged.
    Progressing,
    /// cutover stopped and waits for a person (or a newer revision).
    Paused(PauseCause),
    /// The candidate serves 100% and passed its last step; for the bake (`CUTOVER_BAKE`, from
    /// `step_started`) the previous stable keeps its `stable` tag, and an alert or a failed
    /// absolute check rolls back to it.
    Baking,
    /// All traffic went back to stable.
    RolledBack,
    /// The candidate serves 100% and is the new stable revision.
    Completed,
}

/// Why a rollout paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseCause {
    /// Someone changed traffic by hand; cutover never overwrites that.
    ManualChange,
    /// A due step stayed inconclusive for longer than the maximum hold.
    MaxHold,
    /// A `cutover.dev/*` override cannot be used.
    InvalidPolicy,
    /// The stable revision is not ready, so there is nothing safe to roll back to.
    StableNotReady,
    /// A person paused it (`cutover pause`).
    Operator,
}

impl PauseCause {
    fn as_str(self) -> &'static str {
        match self {
            PauseCause::ManualChange => "manual-change",
            PauseCause::MaxHold => "max-hold",
            PauseCause::InvalidPolicy => "invalid-policy",
            PauseCause::StableNotReady => "stable-not-ready",
            PauseCause::Operator => "operator",
        }
    }

    fn parse(s: &str) -> Option<PauseCause> {
        Some(match s {
            "manual-change" => PauseCause::ManualChange,
            "max-hold" => PauseCause::MaxHold,
            "invalid-policy" => PauseCause::InvalidPolicy,
            "stable-not-ready" => PauseCause::StableNotReady,
            "operator" => PauseCause::Operator,
            _ => return None,
        })
    }
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Smoke => "smoke",
            Phase::Progressing => "progressing",
            Phase::Paused(_) => "paused",
            Phase::Baking => "baking",
            Phase::RolledBack => "rolled-back",
            Phase::Completed => "completed",
        }
    }

    /// Smoke, progressing or baking: ticks keep evaluating it, and an alert rolls it back.
    pub fn is_running(self) -> bool {
        matches!(self, Phase::Smoke | Phase::Progressing | Phase::Baking)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Paused(c) => write!(f, "paused ({})", c.as_str()),
            p => f.write_str(p.as_str()),
        }
    }
}

/// Decision records show a phase as people read it (`paused (max-hold)`).
impl serde::Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One rollout, as recorded on its service.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub phase: Phase,
    /// The revision being rolled out.
    pub candidate: String,
    /// The revision that served 100% when the rollout started.
    pub stable: String,
    /// The candidate's share of traffic as cutover last wrote it.
    pub percent: u8,
    /// When the rollout started.
    pub started: Timestamp,
    /// When traffic last moved (the current step's start).
    pub step_started: Timestamp,
    /// Why the record last changed, for people.
    pub reason: String,
    /// Revisions rolled back recently, newest last; never rolled out again automatically.
    pub rolled_back: Vec<String>,
    /// Who made the last change, and the rollout's recent decisions.
    pub history: History,
    /// The build that started this rollout, when a build did. The same build delivered again
    /// (to another instance, after a restart, or redelivered days later) starts nothing: where
    /// revision names recur (blue/green), the idle revision after a completed rollout is the
    /// previous stable, and only this tells a duplicate of the finished build from a new one.
    pub build: Option<String>,
}

/// The record on a service cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {reason}")]
pub struct RecordError {
    pub key: &'static str,
    pub reason: String,
}

impl Record {
    /// Reads the record from a service's annotations; `Ok(None)` when cutover has never
    /// touched the service.
    pub fn from_annotations(a: &BTreeMap<String, String>) -> Result<Option<Record>, RecordError> {
        let Some(phase) = a.get(PHASE) else {
            return Ok(None);
        };
        let err = |key: &'static str, reason: String| RecordError { key, reason };
        let need = |key: &'static str| -> Result<&str, RecordError> {
            a.get(key)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| err(key, "missing".into()))
        };
        let time = |key: &'static str| -> Result<Timestamp, RecordError> {
            need(key)?
                .parse()
                .map_err(|e| err(key, format!("not an RFC 3339 time: {e}")))
        };
        let phase = match phase.as_str() {
            "smoke" => Phase::Smoke,
            "progressing" => Phase::Progressing,
            "baking" => Phase::Baking,
            "rolled-back" => Phase::RolledBack,
            "completed" => Phase::Completed,
            "paused" => {
                let cause = need(PAUSED_BY)?;
                Phase::Paused(
                    PauseCause::parse(cause)
                        .ok_or_else(|| err(PAUSED_BY, format!("unknown cause {cause:?}")))?,
                )
            }
            other => return Err(err(PHASE, format!("unknown phase {other:?}"))),
        };
        let percent: u8 = need(PERCENT)?
            .parse()
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| err(PERCENT, "not a percentage from 0 to 100".into()))?;
        let candidate = need(CANDIDATE)?;
        let stable = need(STABLE)?;
        // cutover never writes such a record (a build for the stable revision starts nothing);
        // acting on a hand-edited one would write a split naming one revision twice and then
        // read its own write back as a manual change (finding F3, docs/reliability.md).
        if candidate == stable {
            return Err(err(
                CANDIDATE,
                format!("names {candidate}, which is also the stable revision"),
            ));
        }
        Ok(Some(Record {
            phase,
            candidate: candidate.to_string(),
            stable: stable.to_string(),
            percent,
            started: time(STARTED)?,
            step_started: time(STEP_STARTED)?,
            reason: a.get(REASON).cloned().unwrap_or_default(),
            rolled_back: a
                .get(ROLLED_BACK)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            history: History {
                // Read as it would be written (printable, bounded): anyone can edit the
                // annotation, and what is read must survive being written back unchanged.
                actor: a
                    .get(ACTOR)
                    .map(|v| crate::ids::text::printable(v, MAX_ACTOR_CHARS))
                    .filter(|v| !v.is_empty()),
                // The history only informs people, it never decides: a damaged one is dropped
                // (and rewritten with the next decision) rather than stopping the rollout.
                entries: a
                    .get(HISTORY)
                    .and_then(|v| serde_json::from_str(v).ok())
                    .unwrap_or_default(),
            },
            build: a
                .get(BUILD)
                .map(|v| crate::ids::text::printable(v, MAX_BUILD_CHARS))
                .filter(|v| !v.is_empty()),
        }))
    }

    /// The annotations that represent this record. Keys of [`RECORD_KEYS`] that are absent
    /// here must be removed from the service.
    pub fn to_annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            a.insert(k.to_string(), v);
        };
        put(PHASE, self.phase.as_str().to_string());
        if let Phase::Paused(cause) = self.phase {
            put(PAUSED_BY, cause.as_str().to_string());
        }
        put(CANDIDATE, self.candidate.clone());
        put(STABLE, self.stable.clone());
        put(PERCENT, self.percent.to_string());
        put(STARTED, self.started.to_string());
        put(STEP_STARTED, self.step_started.to_string());
        let reason = crate::ids::text::printable(&self.reason, MAX_REASON_CHARS);
        put(REASON, reason);
        if !self.rolled_back.is_empty() {
            put(ROLLED_BACK, self.rolled_back.join(","));
        }
        if let Some(actor) = &self.history.actor {
            put(ACTOR, crate::ids::text::printable(actor, MAX_ACTOR_CHARS));
        }
        if !self.history.entries.is_empty() {
            put(HISTORY, self.history.to_json());
        }
        if let Some(build) = &self.build {
            put(BUILD, crate::ids::text::printable(build, MAX_BUILD_CHARS));
        }
        a
    }

    /// Remembers a rolled-back revision, forgetting the oldest beyond the memory size.
    pub fn remember_rolled_back(&mut self, revision: &str) {
        if !self.rolled_back.iter().any(|r| r == revision) {
            self.rolled_back.push(revision.to_string());
        }
        let excess = self.rolled_back.len().saturating_sub(ROLLED_BACK_MEMORY);
        self.rolled_back.drain(..excess);
    }
}

/// How many decisions the history annotation keeps (oldest dropped first).
pub const HISTORY_MEMORY: usize = 16;

/// A history entry's reason is cut to this many characters (the full reason of the latest
/// decision is in `cutover.dev/reason`, and every decision's in cutover's log).
pub const HISTORY_REASON_CHARS: usize = 160;

/// Longest actor name kept.
const MAX_ACTOR_CHARS: usize = 128;

/// Who changed the rollout last, and its recent decisions: the `cutover.dev/actor` and
/// `cutover.dev/history` annotations, written in the same guarded write as the rest of the
/// record, so that `cutover history` needs nothing but the service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The person (or `cutover` itself) who made the last change.
    pub actor: Option<String>,
    /// Newest last, at most [`HISTORY_MEMORY`].
    pub entries: Vec<Entry>,
}

/// One decision that changed the rollout, compactly (short keys: the annotation is bounded).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub at: Timestamp,
    /// The decision's kind (`start`, `advance`, `rollback`, …).
    #[serde(rename = "d")]
    pub decision: String,
    /// What asked for it: `build`, `tick`, `alert`, or a verb (`cutover promote`).
    #[serde(rename = "t")]
    pub trigger: String,
    /// Who: `cutover` for its own decisions, else the person's account or name.
    #[serde(rename = "by")]
    pub actor: String,
    /// The candidate's share after the decision.
    #[serde(rename = "p")]
    pub percent: u8,
    #[serde(rename = "r")]
    pub reason: String,
    /// A judged step's numbers and the thresholds it was judged against.
    #[serde(rename = "j", default, skip_serializing_if = "Option::is_none")]
    pub judged: Option<Judged>,
}

/// The numbers of a judged step, as the history keeps them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Judged {
    /// Candidate requests and 5xx in the window.
    pub n: u64,
    pub e: u64,
    /// Candidate p99 in ms, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    /// Thresholds: minimum requests, maximum 5xx rate, maximum p99 (ms).
    pub min: u64,
    pub max_er: f64,
    pub max_p99: f64,
}

impl History {
    /// Appends an entry, dropping the oldest beyond [`HISTORY_MEMORY`]; the reason is made
    /// printable and cut to [`HISTORY_REASON_CHARS`].
    pub fn push(&mut self, mut entry: Entry) {
        entry.reason = crate::ids::text::printable(&entry.reason, HISTORY_REASON_CHARS);
        entry.actor = crate::ids::text::printable(&entry.actor, MAX_ACTOR_CHARS);
        self.actor = Some(entry.actor.clone());
        self.entries.push(entry);
        let excess = self.entries.len().saturating_sub(HISTORY_MEMORY);
        self.entries.drain(..excess);
    }

    /// The annotation's value: a JSON array, newest last.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.entries).unwrap_or_else(|_| "[]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(phase: Phase) -> Record {
        Record {
            phase,
            candidate: "api-00002-def".into(),
            stable: "api-00001-abc".into(),
            percent: 10,
            started: "2026-08-20T10:00:00Z".parse().unwrap(),
            step_started: "2026-08-20T10:05:00Z".parse().unwrap(),
            reason: "step 10% passed".into(),
            rolled_back: vec!["api-00000-old".into()],
            history: History::default(),
            build: None,
        }
    }

    #[test]
    fn every_phase_round_trips_through_annotations() {
        for phase in [
            Phase::Smoke,
            Phase::Progressing,
            Phase::Baking,
            Phase::RolledBack,
            Phase::Completed,
            Phase::Paused(PauseCause::ManualChange),
            Phase::Paused(PauseCause::MaxHold),
            Phase::Paused(PauseCause::InvalidPolicy),
            Phase::Paused(PauseCause::StableNotReady),
            Phase::Paused(PauseCause::Operator),
        ] {
            let r = record(phase);
            let a = r.to_annotations();
            assert!(a.keys().all(|k| RECORD_KEYS.contains(&k.as_str())));
            assert_eq!(Record::from_annotations(&a).unwrap(), Some(r));
        }
    }

    #[test]
    fn no_phase_means_no_record_and_damage_is_reported() {
        assert_eq!(Record::from_annotations(&BTreeMap::new()).unwrap(), None);
        let mut a = record(Phase::Progressing).to_annotations();
        a.insert(PERCENT.into(), "250".into());
        assert_eq!(Record::from_annotations(&a).unwrap_err().key, PERCENT);
        let mut a = record(Phase::Progressing).to_annotations();
        a.insert(PHASE.into(), "dancing".into());
        assert_eq!(Record::from_annotations(&a).unwrap_err().key, PHASE);
        let mut a = record(Phase::Progressing).to_annotations();
        a.remove(STABLE);
        assert_eq!(Record::from_annotations(&a).unwrap_err().key, STABLE);
    }

    #[test]
    fn a_record_whose_candidate_is_its_stable_is_refused() {
        let r = record(Phase::Progressing);
        let mut a = r.to_annotations();
        a.insert(CANDIDATE.into(), r.stable.clone());
        let e = Record::from_annotations(&a).unwrap_err();
        assert_eq!(e.key, CANDIDATE);
        assert!(e.reason.contains(&r.stable), "{}", e.reason);
    }

    #[test]
    fn rolled_back_memory_is_bounded() {
        let mut r = record(Phase::RolledBack);
        for i in 0..25 {
            r.remember_rolled_back(&format!("api-{i:05}-x"));
        }
        r.remember_rolled_back("api-00024-x");
        assert_eq!(r.rolled_back.len(), ROLLED_BACK_MEMORY);
        assert_eq!(r.rolled_back.last().unwrap(), "api-00024-x");
    }

    #[test]
    fn the_reason_annotation_is_printable_whatever_wrote_the_reason() {
        // A reason may quote an API's error text or a smoke check's answer, not only checked
        // event fields: the annotation is made printable where it is written.
        let record = Record {
            phase: Phase::RolledBack,
            candidate: "api-00002-def".into(),
            stable: "api-00001-abc".into(),
            percent: 0,
            started: jiff::Timestamp::UNIX_EPOCH,
            step_started: jiff::Timestamp::UNIX_EPOCH,
            reason: format!("alert opened: 5xx\r\nforged\u{1b}[31m {}", "x".repeat(5000)),
            rolled_back: Vec::new(),
            history: History::default(),
            build: None,
        };
        let a = record.to_annotations();
        let reason = &a["cutover.dev/reason"];
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
        assert!(
            reason.starts_with("alert opened: 5xx  forged [31m x"),
            "{reason}"
        );
        assert_eq!(reason.chars().count(), 1000);
    }
    /// The largest record cutover can write, measured against Cloud Run's annotation limit
    /// (Run v2 follows Kubernetes' rules: 256 KiB for all of a resource's annotations together;
    /// this file keeps the record under a quarter of that). Every free-text field at its cut,
    /// in 4-byte characters, every number at its longest. Prints the figure:
    /// `cargo test --lib worst_case_record -- --nocapture`.
    #[test]
    fn worst_case_record_fits_cloud_runs_annotation_limit() {
        let wide = |n: usize| "\u{1d11e}".repeat(n);
        let revision = |i: usize| format!("{}-{i:05}-abc", "s".repeat(49));
        let mut r = Record {
            phase: Phase::Paused(PauseCause::StableNotReady),
            candidate: revision(2),
            stable: revision(1),
            percent: 100,
            started: Timestamp::MAX,
            step_started: Timestamp::MAX,
            reason: wide(5000),
            rolled_back: Vec::new(),
            history: History::default(),
            build: Some("b".repeat(MAX_BUILD_CHARS)),
        };
        for i in 0..ROLLED_BACK_MEMORY + 3 {
            r.remember_rolled_back(&revision(100 + i));
        }
        for _ in 0..HISTORY_MEMORY + 3 {
            r.history.push(Entry {
                at: Timestamp::MAX,
                decision: "rollback".into(),
                trigger: "cutover promote".into(),
                actor: wide(500),
                percent: 100,
                reason: wide(500),
                judged: Some(Judged {
                    n: u64::MAX,
                    e: u64::MAX,
                    p99: Some(-f64::MIN_POSITIVE),
                    min: u64::MAX,
                    max_er: -f64::MIN_POSITIVE,
                    max_p99: -f64::MIN_POSITIVE,
                }),
            });
        }
        let a = r.to_annotations();
        let bytes: usize = a.iter().map(|(k, v)| k.len() + v.len()).sum();
        let history = a[HISTORY].len();
        println!(
            "worst-case cutover record: {bytes} bytes of annotations ({history} of them the history of {HISTORY_MEMORY} decisions); Cloud Run (Kubernetes rules) allows 262144 for all annotations"
        );
        assert!(bytes < 64 * 1024, "{bytes} bytes");
        assert_eq!(
            Record::from_annotations(&a).unwrap().unwrap().history,
            r.history
        );
    }

    #[test]
    fn an_actor_edited_by_hand_reads_as_it_would_be_written_back() {
        let mut a = record(Phase::Progressing).to_annotations();
        a.insert(ACTOR.into(), "5,2\u{3}\u{3}\0\0 alice\n".into());
        let r = Record::from_annotations(&a).unwrap().unwrap();
        assert_eq!(r.history.actor.as_deref(), Some("5,2     alice"));
        assert_eq!(
            Record::from_annotations(&r.to_annotations()),
            Ok(Some(r)),
            "what was read survives being written back"
        );
        a.insert(ACTOR.into(), " \n\t".into());
        let r = Record::from_annotations(&a).unwrap().unwrap();
        assert_eq!(r.history.actor, None, "nothing printable is no actor");
    }
}
