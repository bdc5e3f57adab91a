//! A router for platforms whose split and record live apart: a [`SplitPlatform`] joined to a
//! [`RecordStore`], and the protocol that keeps the two from telling different stories.
//!
//! Cloud Run writes traffic and record in one guarded call. Here they are two writes to two
//! systems, so one of them goes first and a process can die between them. The protocol:
//!
//! 1. **Intent.** The record is written first, conditional on the store version the decision
//!    was made on, *keeping the old record* and adding an intent: the split about to be written
//!    ([`INTENT_SPLIT`]), the record that goes with it ([`INTENT_RECORD`]) and when the intent
//!    lapses ([`INTENT_EXPIRES`]: the write's deadline plus [`LEASE_MARGIN`]). This is the
//!    write that decides between racing cutover instances: the second one is refused by the
//!    store's precondition ([`RouterError::Conflict`]) and decides again.
//! 2. **Split.** The split is written conditional on the decision's read, by the platform's
//!    own guard ([`SplitPlatform::write`]: a URL map's `fingerprint`; App Engine has none, so
//!    its router re-reads the split just before the patch, and a change made between that read
//!    and the patch, milliseconds, is overwritten, the one unguarded gap on that platform). A
//!    split that moved since the decision's read (someone changed it by hand) is a conflict:
//!    the intent is withdrawn, and remembered as lapsed (below) in case the refusal was not the
//!    last word: a URL map's 412 can answer the retry of this write's own PATCH. A conflict
//!    whose split cannot then be read is an unknown outcome: the intent stays.
//! 3. **Settle.** The intent's record replaces the old one and the intent is cleared,
//!    conditional on the version step 1 wrote.
//!
//! Between 1 and 3 the split and the record disagree: that is the window. Whoever observes a
//! target with an intent settles it before deciding anything:
//! - the split is the intent's: the write happened, **finish** it (step 3);
//! - the split is not the intent's and the intent has lapsed: the writer died or gave up before
//!   its split write took effect, **undo** it (drop the intent, the old record stands); if the
//!   split is neither the old record's nor the intent's, the decision core then sees a manual
//!   change against the old record and pauses, which is also what a person's edit inside the
//!   window deserves;
//! - the intent is still live: another writer is inside its window, the observation fails as
//!   transient ("in flight") and is retried later (Pub/Sub redelivers, the next tick comes).
//!
//! The record and the split are two reads, record first: a whole write (intent, split, settle)
//! of another writer can fall between them, and the pair then shows the old record beside the
//! new split, with no intent to tell. An observation ([`Recorded::observe`]) therefore reads
//! the record again after the split and is taken only if the record did not change (a split
//! write always follows its intent, so an unchanged record means no cutover write moved the
//! split between the reads); otherwise it reads again. Decisions that write are guarded by the
//! record's version anyway; this protects those that write nothing, such as a build or an
//! alert answered "nothing to do", which would otherwise be acknowledged and lost. A tick's
//! listing skips the second read: a tick that decided on such a pair writes nothing or loses
//! its guarded write, and the next tick reads again.
//!
//! A process killed inside the window therefore leaves a target that the next observer (any
//! instance, or the restarted one) brings back to "record and split agree", at once if the
//! split was written, after the lease otherwise; nothing is lost and nothing is applied twice.
//!
//! A write can also land *after* its intent was undone: a split write whose outcome was unknown
//! (its process died with the request sent, or its answer timed out) that the platform applies
//! later than the lease. An undo therefore keeps what the intent was setting ([`LAPSED_SPLIT`],
//! [`LAPSED_RECORD`]) beside the old record, and an observer that later finds exactly that split
//! finishes the late write as it would a live one. The memory goes with cutover's next write of
//! the record: a late write is finished only on the record it was decided on (after a rollback
//! recorded meanwhile, a late step is a change against the record and pauses the rollout, as
//! before; after a split write, a URL map's fingerprint no longer lets it land). Without
//! it the split would differ from the record and the rollout would pause as a manual change, a
//! rollout stopped for nothing (found by the chaos suite on URL maps, where a killed process's
//! PATCH reached the fake after the lease, under CI's load). Only a person setting exactly the
//! lapsed split by hand is taken for the late write, and then cutover records what is there.
//! `tests` kill the process (drop the `apply` future) at each point of the window and show what
//! the next observer does.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

use super::split::{SplitPlatform, SplitRead};
use super::store::{RecordStore, Stored};
use super::{Observation, RouterError, TrafficRouter};
use crate::clock::Clock;
use crate::decision::record::RECORD_KEYS;
use crate::decision::{CANDIDATE_TAG, Observed, Record, STABLE_TAG, Target, Write};
use crate::failure::ErrorKind;
use crate::target::{GLOBAL, ServiceRef};

/// The split an unfinished write is setting (`rev=percent,rev=percent`, shares above 0).
pub const INTENT_SPLIT: &str = "cutover.intent/split";
/// The record that goes with [`INTENT_SPLIT`], as a JSON object of its annotations.
pub const INTENT_RECORD: &str = "cutover.intent/record";
/// When the intent lapses (RFC 3339): after it, an observer that finds the split not written
/// undoes the intent.
pub const INTENT_EXPIRES: &str = "cutover.intent/expires";
const INTENT_KEYS: [&str; 3] = [INTENT_SPLIT, INTENT_RECORD, INTENT_EXPIRES];
/// The split of an intent that was undone when its lease lapsed, kept in case its write lands
/// late (see the module's protocol).
pub const LAPSED_SPLIT: &str = "cutover.lapsed/split";
/// The record that goes with [`LAPSED_SPLIT`], as a JSON object of its annotations.
pub const LAPSED_RECORD: &str = "cutover.lapsed/record";
const LAPSED_KEYS: [&str; 2] = [LAPSED_SPLIT, LAPSED_RECORD];

/// How long an intent outlives the deadline of the write that made it: room for clock skew
/// between instances and for a platform operation that finishes just after its caller gave up.
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// What a guarded write needs of a read: the split as read (with the platform's token) and
/// the record as stored (with the store's version).
#[derive(Clone, Debug)]
pub struct Version<V> {
    pub split: SplitRead<V>,
    pub stored: Stored,
}

/// A [`TrafficRouter`] over a split platform and a record store (see the module's protocol).
pub struct Recorded<P, S> {
    split: P,
    store: S,
    clock: Clock,
}

impl<P: SplitPlatform, S: RecordStore> Recorded<P, S> {
    /// The router of `split`'s platform, its records in `store`; `clock` dates intents.
    pub fn new(split: P, store: S, clock: Clock) -> Self {
        Recorded {
            split,
            store,
            clock,
        }
    }

    /// Reads the split beside `stored` and settles any intent found (finish, undo, or
    /// "in flight"), re-reading a few times if another writer moves the record meanwhile.
    async fn settle(
        &self,
        target: &ServiceRef,
        mut stored: Stored,
        deadline: Instant,
    ) -> Result<Observation<Version<P::Version>>, RouterError> {
        for _ in 0..3 {
            let split = self.split.read(target, deadline).await?;
            let Some(settled) = self.settled(target, &stored, &split)? else {
                return Ok(observation(target, split, stored));
            };
            match self
                .store
                .write(target, &settled, stored.version.as_deref(), deadline)
                .await
            {
                Ok(now) => return Ok(observation(target, split, now)),
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    stored = self.store.read(target, deadline).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(RouterError::new(
            ErrorKind::Conflict,
            format!("{target}: its record kept changing while settling a write intent"),
        ))
    }

    /// What `stored` must become beside `split` before anything is decided on the pair: the
    /// intent's record (its write landed), the old record remembering the lapsed intent (undo),
    /// a lapsed write's record (it landed late), or `None` when the pair stands as it is. A live
    /// intent whose split is not there yet is another write in flight (transient).
    fn settled(
        &self,
        target: &ServiceRef,
        stored: &Stored,
        split: &SplitRead<P::Version>,
    ) -> Result<Option<BTreeMap<String, String>>, RouterError> {
        let Some(intent) = Intent::of(&stored.annotations) else {
            return Ok(lapsed(&stored.annotations)
                .filter(|(s, _)| *s == split.allocation)
                .map(|(_, record)| record));
        };
        let intent = intent.map_err(|why| {
            RouterError::new(
                ErrorKind::Permanent,
                format!("{target}: unreadable write intent in its record: {why}"),
            )
        })?;
        if intent.split == split.allocation {
            return Ok(Some(intent.record));
        }
        if self.clock.now() < intent.expires {
            return Err(RouterError::new(
                ErrorKind::Transient,
                format!(
                    "{target}: another write is in flight (its intent lapses at {})",
                    intent.expires
                ),
            ));
        }
        // Undo, remembering what the intent was setting in case its write lands late.
        let mut undone = without_intent(&stored.annotations);
        undone.extend(intent.lapsed());
        Ok(Some(undone))
    }

    /// Drops the intent `pending` carries (best effort: if it fails, the lease ends it), and
    /// remembers it as lapsed, as an undo does: a refusal is not always the last word on a
    /// split write. A URL map's 412 can answer the client's retry of its own PATCH whose
    /// operation is still running, so the split read just after shows the old weights and the
    /// write lands a moment later; an error after the PATCH was accepted (its operation's
    /// poll, the read of the result) says nothing of the operation. Without the memory such a
    /// write moves the split under an old record, or under none on a first step: a rollout
    /// nobody continues (found by the chaos suite on URL maps, under CI's load). With it, the
    /// next observer that finds exactly that split finishes the write; a write truly refused
    /// costs nothing, the memory goes with cutover's next record write.
    async fn withdraw(
        &self,
        target: &ServiceRef,
        pending: &Stored,
        intent: &Intent,
        deadline: Instant,
    ) {
        let mut old = without_intent(&pending.annotations);
        old.extend(intent.lapsed());
        if let Err(e) = self
            .store
            .write(target, &old, pending.version.as_deref(), deadline)
            .await
        {
            tracing::warn!(%target, error = %crate::failure::chain(&e), "could not withdraw a write intent; it lapses on its own");
        }
    }
}

/// Reads are not carried to another instance ([`TrafficRouter::carry`]'s default "cannot"): a
/// fanned-out evaluation of these targets observes them afresh. A read here is two reads from
/// two systems (the record with its store version, the split with the platform's own guard),
/// each of which would need a wire form of its own; App Engine's split write re-reads the split
/// anyway (it has no guard), so a carried split would save it nothing; and these targets are
/// global, a few per project against up to a thousand Cloud Run services per region, so their
/// one read more weighs little in a tick's calls.
impl<P: SplitPlatform, S: RecordStore> TrafficRouter for Recorded<P, S> {
    type Version = Version<P::Version>;

    async fn observe(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> Result<Observation<Self::Version>, RouterError> {
        let mut stored = self.store.read(target, deadline).await?;
        for _ in 0..3 {
            let read = self.settle(target, stored, deadline).await?;
            // The split was read after the record: a writer whose intent came after that read
            // may have moved the split since, and the pair would show a record one step behind
            // its split (a "manual change", or with no record a split "not on one revision"),
            // on which a build or an alert decides to do nothing and is acknowledged: lost.
            // Every split write follows its intent, so a record unchanged after the split was
            // read vouches that no cutover write moved the split in between.
            let again = self.store.read(target, deadline).await?;
            if again.version == read.version.stored.version {
                return Ok(read);
            }
            stored = again;
        }
        Err(RouterError::new(
            ErrorKind::Conflict,
            format!("{target}: its record kept changing while it was read"),
        ))
    }

    /// The targets of this platform that have a record (a target cutover never touched has
    /// nothing to tick), each with one read of its split. Only the region [`GLOBAL`] has any.
    async fn list(
        &self,
        project: &str,
        region: &str,
        deadline: Instant,
    ) -> Result<Vec<Observation<Self::Version>>, RouterError> {
        if region != GLOBAL {
            return Ok(Vec::new());
        }
        let mut all = Vec::new();
        for (target, stored) in self.store.list(project, P::PLATFORM, deadline).await? {
            match self.settle(&target, stored, deadline).await {
                Ok(o) => all.push(o),
                // A target deleted since its rollout: nothing to evaluate.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }

    async fn apply(
        &self,
        read: &Observation<Self::Version>,
        write: &Write,
        deadline: Instant,
    ) -> Result<Observation<Self::Version>, RouterError> {
        let target = &read.observed.service;
        let v = &read.version;
        let record = with_record(&v.stored.annotations, write);
        let expected = v.stored.version.as_deref();
        let wanted = write.traffic.as_deref().map(allocation);
        let Some(wanted) = wanted.filter(|w| *w != v.split.allocation) else {
            // The split stays as it is: one guarded write of the record.
            let stored = self
                .store
                .write(target, &record, expected, deadline)
                .await?;
            return Ok(observation(target, v.split.clone(), stored));
        };

        let traffic = write.traffic.as_deref().unwrap_or_default();

        // 1. Intent, under the store's precondition.
        let left = deadline.saturating_duration_since(Instant::now()) + LEASE_MARGIN;
        let expires = self
            .clock
            .now()
            .saturating_add(SignedDuration::try_from(left).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        let intent = Intent {
            split: wanted,
            record: record.clone(),
            expires,
        };
        let mut pending = v.stored.annotations.clone();
        pending.extend(intent.to_annotations());
        let pending = self
            .store
            .write(target, &pending, expected, deadline)
            .await?;

        // 2. The split, conditional on the decision's read (the platform's guard).
        let after = match self.split.write(target, &v.split, traffic, deadline).await {
            Ok(after) => after,
            // Someone moved the split since the decision's read, or the conflict is this
            // write's own: the call landed, its answer was lost, and the client's retry found
            // the guard the write itself had changed (a URL map's fingerprint). If the split now
            // is the intent's, the write happened: settle it; otherwise withdraw. A split that
            // cannot be read now leaves the outcome unknown: the intent stays for the next
            // observer, as for a transient failure of the write itself.
            Err(e) if e.kind() == ErrorKind::Conflict => {
                match self.split.read(target, deadline).await {
                    Ok(now) if now.allocation == intent.split => now,
                    Ok(_) => {
                        self.withdraw(target, &pending, &intent, deadline).await;
                        return Err(e);
                    }
                    Err(read) => {
                        return Err(RouterError::new(
                            ErrorKind::Transient,
                            format!(
                                "{target}: the split write met a conflict ({e}) and the split \
                                 could not be read to tell whether it was its own: {read}"
                            ),
                        ));
                    }
                }
            }
            // Refused: nothing was written, the intent goes.
            Err(e) if e.kind() != ErrorKind::Transient => {
                self.withdraw(target, &pending, &intent, deadline).await;
                return Err(e);
            }
            // Unknown outcome: the intent stays, the next observer settles it.
            Err(e) => return Err(e),
        };

        // 3. Settle: the new record, no intent, conditional on the intent's version.
        let stored = self
            .store
            .write(target, &record, pending.version.as_deref(), deadline)
            .await?;
        Ok(observation(target, after, stored))
    }
}

/// A pending write found in a record.
#[derive(Clone, Debug, PartialEq)]
struct Intent {
    split: BTreeMap<String, u8>,
    record: BTreeMap<String, String>,
    expires: Timestamp,
}

impl Intent {
    /// The intent in `a`, if there is one (`Some(Err)` when it cannot be read).
    fn of(a: &BTreeMap<String, String>) -> Option<Result<Intent, String>> {
        if !INTENT_KEYS.iter().any(|k| a.contains_key(*k)) {
            return None;
        }
        let get = |k: &str| a.get(k).ok_or_else(|| format!("{k} missing"));
        Some((|| {
            Ok(Intent {
                split: decode_split(get(INTENT_SPLIT)?)?,
                record: serde_json::from_str(get(INTENT_RECORD)?)
                    .map_err(|e| format!("{INTENT_RECORD}: {e}"))?,
                expires: get(INTENT_EXPIRES)?
                    .parse()
                    .map_err(|e| format!("{INTENT_EXPIRES}: {e}"))?,
            })
        })())
    }

    fn to_annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (INTENT_SPLIT.to_string(), encode_split(&self.split)),
            (
                INTENT_RECORD.to_string(),
                serde_json::to_string(&self.record).expect("a string map serializes"),
            ),
            (INTENT_EXPIRES.to_string(), self.expires.to_string()),
        ])
    }

    /// What an undo keeps of this intent, in case its write lands late.
    fn lapsed(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LAPSED_SPLIT.to_string(), encode_split(&self.split)),
            (
                LAPSED_RECORD.to_string(),
                serde_json::to_string(&self.record).expect("a string map serializes"),
            ),
        ])
    }
}

/// The shares above 0 of a write's traffic.
fn allocation(traffic: &[Target]) -> BTreeMap<String, u8> {
    traffic
        .iter()
        .filter(|t| t.percent > 0)
        .map(|t| (t.revision.clone(), t.percent))
        .collect()
}

fn encode_split(split: &BTreeMap<String, u8>) -> String {
    split
        .iter()
        .map(|(rev, pct)| format!("{rev}={pct}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_split(s: &str) -> Result<BTreeMap<String, u8>, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (rev, pct) = part
                .split_once('=')
                .ok_or_else(|| format!("{INTENT_SPLIT}: {part:?} is not rev=percent"))?;
            let pct = pct
                .parse()
                .map_err(|e| format!("{INTENT_SPLIT}: {part:?}: {e}"))?;
            Ok((rev.to_string(), pct))
        })
        .collect()
}

/// The stored map without the intent (what an undo leaves: the old record).
fn without_intent(a: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut a = a.clone();
    a.retain(|k, _| !INTENT_KEYS.contains(&k.as_str()));
    a
}

/// The stored map without the memory of a lapsed intent.
fn without_lapsed(a: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut a = a.clone();
    a.retain(|k, _| !LAPSED_KEYS.contains(&k.as_str()));
    a
}

/// The split and the record of an intent that lapsed unwritten, if `a` remembers one that can
/// be read (one that cannot is ignored: it only ever helps to finish a late write).
fn lapsed(
    a: &BTreeMap<String, String>,
) -> Option<(BTreeMap<String, u8>, BTreeMap<String, String>)> {
    let split = decode_split(a.get(LAPSED_SPLIT)?).ok()?;
    let record = serde_json::from_str(a.get(LAPSED_RECORD)?).ok()?;
    Some((split, record))
}

/// The stored map with `write`'s record in place of the old one; other keys (a person's
/// `cutover.dev/*` policy overrides) are kept, any intent dropped, live or lapsed: a lapsed
/// write is finished only on the record it was decided on.
fn with_record(a: &BTreeMap<String, String>, write: &Write) -> BTreeMap<String, String> {
    let mut a = without_lapsed(&without_intent(a));
    a.retain(|k, _| !RECORD_KEYS.contains(&k.as_str()));
    a.extend(write.record.to_annotations());
    a
}

/// The target as the decision core sees it: the split, and the record without any intent
/// (live or lapsed).
/// The candidate's and the stable's own URLs (where the platform has them) become the tags'.
fn observation<V>(
    target: &ServiceRef,
    split: SplitRead<V>,
    stored: Stored,
) -> Observation<Version<V>> {
    let annotations = without_lapsed(&without_intent(&stored.annotations));
    let record = Record::from_annotations(&annotations).ok().flatten();
    let candidate = record
        .as_ref()
        .map(|r| r.candidate.clone())
        .or_else(|| split.latest_ready.clone());
    let stable = record.as_ref().map(|r| r.stable.clone());
    let mut tag_urls = BTreeMap::new();
    for (tag, rev) in [(CANDIDATE_TAG, candidate), (STABLE_TAG, stable)] {
        if let Some(url) = rev.and_then(|r| split.urls.get(&r)) {
            tag_urls.insert(tag.to_string(), url.clone());
        }
    }
    let observed = Observed {
        service: target.clone(),
        latest_ready: split.latest_ready.clone(),
        allocation: split.allocation.clone(),
        ready: split.ready.clone(),
        tag_urls,
        annotations,
    };
    Observation {
        observed,
        version: Version { split, stored },
    }
}

#[cfg(test)]
mod tests;
