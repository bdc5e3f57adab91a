//! The invariants of issue 4, checked on the fake's full traffic history of one service (every
//! accepted write, in order) and on the service's final state. A violation is a bug in cutover
//! (or in the fakes), never something to retry away: each one names the write at fault.

use std::collections::{BTreeMap, BTreeSet};

use cutover_fakes::TrafficChange;
use jiff::Timestamp;

/// What is known about one service when its history is judged.
pub struct Subject<'a> {
    pub service: &'a str,
    pub history: &'a [TrafficChange],
    /// Every revision in creation order (a later one is newer).
    pub creation_order: &'a [String],
    /// The policy's steps.
    pub steps: &'a [u8],
    /// Revision → the instant from which any step that *starts* then is judged on bad data only.
    pub judged_bad_from: &'a BTreeMap<String, Timestamp>,
    /// Revisions that are healthy throughout.
    pub healthy: &'a BTreeSet<String>,
    /// When open incidents were published for the service (an incident rolls back whatever
    /// rollout the service is in, whichever revision it names).
    pub open_incidents: &'a [Timestamp],
}

/// One broken invariant.
#[derive(Clone, Debug)]
pub struct Violation {
    pub service: String,
    pub invariant: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.service, self.invariant, self.detail)
    }
}

pub const SUMS_TO_100: &str = "traffic always sums to 100";
pub const ONLY_READY: &str = "traffic only names Ready revisions";
pub const NO_SKIPPED_STEP: &str = "the candidate's share never skips a step";
pub const NO_RETURN: &str =
    "a revision that lost all its traffic gets it back only from a rollback that names it";
pub const ETAG: &str = "no write without the etag read";
pub const TEMPLATE: &str = "no write changes the template";
pub const CONCURRENT_KEPT: &str = "concurrent writers' changes are never lost";
pub const ENDS: &str = "every rollout ends completed, rolled back, or paused for a stated reason";
pub const REGRESSED: &str =
    "a regressed candidate never reaches the step after the one where it was first judged bad";
pub const NO_FALSE_ROLLBACK: &str = "a healthy candidate is rolled back only on an incident";
pub const VALID_WRITES: &str = "cutover never sends a write the API refuses as invalid";

fn share(c: &TrafficChange, revision: &str) -> u8 {
    c.allocation
        .iter()
        .filter(|(r, _)| r == revision)
        .map(|(_, p)| *p)
        .sum()
}

/// `allocation` as `rev=p%, …`.
pub fn describe(c: &TrafficChange) -> String {
    let alloc: Vec<String> = c
        .allocation
        .iter()
        .map(|(r, p)| format!("{r}={p}%"))
        .collect();
    let mut flags = Vec::new();
    if c.by_hand {
        flags.push("outside");
    }
    if !c.by_hand && !c.etag_matched {
        flags.push("NO-ETAG");
    }
    if c.template_changed {
        flags.push("TEMPLATE");
    }
    if !c.labels_preserved {
        flags.push("LABELS-LOST");
    }
    if !c.foreign_annotations_preserved {
        flags.push("ANNOTATIONS-LOST");
    }
    if !c.traffic_changed {
        flags.push("record only");
    }
    format!(
        "{} {}{}",
        c.at,
        alloc.join(", "),
        if flags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", flags.join(", "))
        }
    )
}

/// The revision whose traffic went to the only revision serving after `c`, if one serves all.
fn sole(c: &TrafficChange) -> Option<&str> {
    match c.allocation.as_slice() {
        [(r, 100)] => Some(r),
        _ => None,
    }
}

/// `(back_to, from)` when `c` is a rollback: all traffic to `back_to`, tagged `stable`, from the
/// `candidate`-tagged revision `from`, which served in `prev` and has nothing now. A split
/// platform's write has no tags (App Engine versions, URL-map backends): there `from` is
/// `newest_before`, the newest revision serving in `prev`.
fn rollback(
    prev: &TrafficChange,
    c: &TrafficChange,
    newest_before: Option<&str>,
) -> Option<(String, String)> {
    let back_to = sole(c)?;
    let tagged = |tag: &str| {
        c.tags
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, r)| r.as_str())
    };
    let (from, stable) = match c.tags.is_empty() {
        true => (newest_before?, back_to),
        false => (tagged("candidate")?, tagged("stable")?),
    };
    (stable == back_to && from != back_to && share(prev, from) > 0)
        .then(|| (back_to.to_string(), from.to_string()))
}

impl Subject<'_> {
    fn rank(&self, revision: &str) -> usize {
        self.creation_order
            .iter()
            .position(|r| r == revision)
            .unwrap_or(usize::MAX)
    }

    /// The newest revision among those with a share in `changes`.
    fn newest<'c>(&self, changes: &[&'c TrafficChange]) -> Option<&'c str> {
        changes
            .iter()
            .flat_map(|c| c.allocation.iter())
            .map(|(r, _)| r.as_str())
            .max_by_key(|r| self.rank(r))
    }

    fn next_step(&self, from: u8) -> Option<u8> {
        self.steps.iter().copied().find(|s| *s > from)
    }

    /// Every history invariant; `v` collects the violations.
    pub fn check(&self, v: &mut Vec<Violation>) {
        let mut fail = |invariant: &'static str, detail: String| {
            v.push(Violation {
                service: self.service.to_string(),
                invariant,
                detail,
            })
        };
        // Revisions that lost all their traffic → the revision that then served everything, if
        // one did (the only one a rollback to them can undo).
        let mut lost: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (i, c) in self.history.iter().enumerate() {
            let sum: u32 = c.allocation.iter().map(|(_, p)| u32::from(*p)).sum();
            if sum != 100 {
                fail(
                    SUMS_TO_100,
                    format!("write {i} sums to {sum}: {}", describe(c)),
                );
            }
            if !c.routes_unready.is_empty() {
                fail(
                    ONLY_READY,
                    format!(
                        "write {i} routes to {:?}: {}",
                        c.routes_unready,
                        describe(c)
                    ),
                );
            }
            if let Some(prev) = i.checked_sub(1).map(|j| &self.history[j]) {
                let undone = rollback(prev, c, self.newest(&[prev]));
                for (revision, p) in &c.allocation {
                    let Some(took) = lost.remove(revision) else {
                        continue;
                    };
                    // A person may give traffic to whatever they like; cutover only by a
                    // rollback that sends everything back from the revision that took it.
                    let named = undone.as_ref().is_some_and(|(back_to, from)| {
                        back_to == revision && took.as_deref() == Some(from.as_str())
                    });
                    if !c.by_hand && !named {
                        fail(
                            NO_RETURN,
                            format!(
                                "write {i}: {revision} back to {p}% after losing all its traffic{}: {} -> {}",
                                took.map(|t| format!(" to {t}")).unwrap_or_default(),
                                describe(prev),
                                describe(c)
                            ),
                        );
                    }
                }
                for (revision, _) in &prev.allocation {
                    if share(c, revision) == 0 {
                        lost.insert(revision.clone(), sole(c).map(String::from));
                    }
                }
            }
            if c.by_hand {
                continue;
            }
            if !c.etag_matched {
                fail(ETAG, format!("write {i}: {}", describe(c)));
            }
            if c.template_changed {
                fail(TEMPLATE, format!("write {i}: {}", describe(c)));
            }
            if !c.labels_preserved || !c.foreign_annotations_preserved {
                fail(CONCURRENT_KEPT, format!("write {i}: {}", describe(c)));
            }
            let Some(prev) = i.checked_sub(1).map(|j| &self.history[j]) else {
                continue;
            };
            // The candidate of this write is the newest revision either side of it.
            if let Some(candidate) = self.newest(&[prev, c]) {
                let (before, after) = (share(prev, candidate), share(c, candidate));
                if after > before {
                    let allowed = if before == 0 {
                        self.steps.first().copied()
                    } else {
                        self.next_step(before)
                    };
                    if allowed != Some(after) {
                        fail(
                            NO_SKIPPED_STEP,
                            format!(
                                "write {i}: {candidate} {before}% -> {after}% (allowed: {allowed:?}): {} -> {}",
                                describe(prev),
                                describe(c)
                            ),
                        );
                    }
                }
            }
            // The candidate before this write lost all its traffic: rolled back, or replaced
            // by a newer candidate.
            if let Some(was) = self.newest(&[prev])
                && share(prev, was) > 0
                && share(c, was) == 0
            {
                let superseded = c
                    .allocation
                    .iter()
                    .any(|(r, _)| self.rank(r) > self.rank(was));
                let incident = self.open_incidents.iter().any(|t| *t <= c.at);
                if !superseded && self.healthy.contains(was) && !incident {
                    fail(
                        NO_FALSE_ROLLBACK,
                        format!("write {i} rolled back healthy {was}: {}", describe(c)),
                    );
                }
            }
        }
        for (revision, from) in self.judged_bad_from {
            let mut limit: Option<u8> = None;
            let mut last = 0u8;
            for (i, c) in self.history.iter().enumerate() {
                let p = share(c, revision);
                if let Some(l) = limit
                    && p > l
                {
                    fail(
                        REGRESSED,
                        format!(
                            "write {i}: {revision} (bad from {from}) reached {p}% after the {l}% step that started on bad data: {}",
                            describe(c)
                        ),
                    );
                    break;
                }
                if limit.is_none() && p > last && c.at >= *from {
                    limit = Some(p);
                }
                last = p;
            }
        }
    }
}

/// The history as text, one write a line, for a violation report.
pub fn dump(history: &[TrafficChange]) -> String {
    history
        .iter()
        .enumerate()
        .map(|(i, c)| format!("    {i:>3} {}", describe(c)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The checker itself: each invariant must catch the history that breaks it, and pass the
/// histories cutover is supposed to write.
mod checker {
    use super::*;

    fn at(min: i64) -> Timestamp {
        Timestamp::from_second(1_787_220_000 + min * 60).expect("a time")
    }

    fn write(min: i64, alloc: &[(&str, u8)]) -> TrafficChange {
        TrafficChange {
            at: at(min),
            allocation: alloc.iter().map(|(r, p)| (r.to_string(), *p)).collect(),
            tags: Vec::new(),
            by_hand: false,
            etag_matched: true,
            template_changed: false,
            labels_preserved: true,
            foreign_annotations_preserved: true,
            traffic_changed: true,
            routes_unready: Vec::new(),
        }
    }

    /// A write as cutover makes it: the first revision tagged `stable`, the second (at any
    /// share, 0 included) `candidate`.
    fn tagged(min: i64, stable: (&str, u8), candidate: (&str, u8)) -> TrafficChange {
        let alloc: Vec<(&str, u8)> = [stable, candidate]
            .into_iter()
            .filter(|(_, p)| *p > 0)
            .collect();
        TrafficChange {
            tags: vec![
                ("stable".into(), stable.0.into()),
                ("candidate".into(), candidate.0.into()),
            ],
            ..write(min, &alloc)
        }
    }

    /// The same writes as a split platform makes them: no tags.
    fn untagged(history: &[TrafficChange]) -> Vec<TrafficChange> {
        let strip = |c: &TrafficChange| TrafficChange {
            tags: Vec::new(),
            ..c.clone()
        };
        history.iter().map(strip).collect()
    }

    fn creation() -> TrafficChange {
        TrafficChange {
            by_hand: true,
            etag_matched: false,
            ..write(0, &[("s", 100)])
        }
    }

    fn violations(
        history: &[TrafficChange],
        bad: &[(&str, i64)],
        incidents: &[i64],
    ) -> Vec<&'static str> {
        let order: Vec<String> = ["s", "a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let judged: BTreeMap<String, Timestamp> =
            bad.iter().map(|(r, m)| (r.to_string(), at(*m))).collect();
        let healthy: BTreeSet<String> = ["a", "b", "c"]
            .iter()
            .filter(|r| !judged.contains_key(**r))
            .map(|s| s.to_string())
            .collect();
        let incidents: Vec<Timestamp> = incidents.iter().map(|m| at(*m)).collect();
        let subject = Subject {
            service: "api",
            history,
            creation_order: &order,
            steps: &[10, 50, 100],
            judged_bad_from: &judged,
            healthy: &healthy,
            open_incidents: &incidents,
        };
        let mut v = Vec::new();
        subject.check(&mut v);
        v.into_iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn good_histories_pass() {
        let completed = [
            creation(),
            write(1, &[("s", 90), ("a", 10)]),
            write(5, &[("s", 50), ("a", 50)]),
            write(9, &[("a", 100)]),
            write(9, &[("a", 100)]),
            write(20, &[("a", 90), ("b", 10)]),
            write(24, &[("a", 100)]),
        ];
        assert_eq!(
            violations(&completed, &[("b", 20)], &[]),
            Vec::<&str>::new()
        );
        let superseded = [
            creation(),
            write(1, &[("s", 90), ("a", 10)]),
            write(5, &[("s", 50), ("a", 50)]),
            write(6, &[("s", 90), ("b", 10)]),
            write(7, &[("s", 90), ("b", 10)]),
        ];
        assert_eq!(violations(&superseded, &[], &[]), Vec::<&str>::new());
        let on_incident = [
            creation(),
            write(1, &[("s", 90), ("a", 10)]),
            write(2, &[("s", 100)]),
        ];
        assert_eq!(violations(&on_incident, &[], &[2]), Vec::<&str>::new());
        // A candidate failing its 100% step gives everything back to the stable it took it from.
        let failed_at_100 = [
            creation(),
            tagged(1, ("s", 90), ("a", 10)),
            tagged(5, ("s", 50), ("a", 50)),
            tagged(9, ("s", 0), ("a", 100)),
            tagged(13, ("s", 100), ("a", 0)),
        ];
        assert_eq!(
            violations(&failed_at_100, &[("a", 9)], &[]),
            Vec::<&str>::new()
        );
        // The same on a split platform, whose writes carry no tags.
        assert_eq!(
            violations(&untagged(&failed_at_100), &[("a", 9)], &[]),
            Vec::<&str>::new()
        );
        // Superseded during the 100% soak: the newer one starts beside the revision serving
        // 100%, and goes back to it when it fails.
        let superseded_at_100 = [
            creation(),
            tagged(1, ("s", 90), ("a", 10)),
            tagged(5, ("s", 50), ("a", 50)),
            tagged(9, ("s", 0), ("a", 100)),
            tagged(10, ("a", 90), ("b", 10)),
            tagged(14, ("a", 100), ("b", 0)),
        ];
        assert_eq!(
            violations(&superseded_at_100, &[("b", 10)], &[]),
            Vec::<&str>::new()
        );
        // A person may give traffic back to anything.
        let by_hand = [
            creation(),
            tagged(1, ("s", 90), ("a", 10)),
            tagged(5, ("s", 50), ("a", 50)),
            tagged(9, ("s", 0), ("a", 100)),
            TrafficChange {
                by_hand: true,
                etag_matched: false,
                ..write(10, &[("s", 100)])
            },
        ];
        assert_eq!(violations(&by_hand, &[], &[]), Vec::<&str>::new());
    }

    #[test]
    fn each_invariant_catches_its_breach() {
        let skip = [
            creation(),
            write(1, &[("s", 90), ("a", 10)]),
            write(5, &[("a", 100)]),
        ];
        assert_eq!(violations(&skip, &[], &[]), vec![NO_SKIPPED_STEP]);
        let jump_start = [creation(), write(1, &[("s", 50), ("a", 50)])];
        assert_eq!(violations(&jump_start, &[], &[]), vec![NO_SKIPPED_STEP]);
        let back = [
            creation(),
            write(1, &[("s", 90), ("a", 10)]),
            write(2, &[("s", 100)]),
            write(3, &[("s", 90), ("a", 10)]),
        ];
        assert_eq!(violations(&back, &[("a", 0)], &[]), vec![NO_RETURN]);
        // Issue 10: a newer candidate during the 100% soak sent the traffic back two releases.
        let two_back = [
            creation(),
            tagged(1, ("s", 90), ("a", 10)),
            tagged(5, ("s", 50), ("a", 50)),
            tagged(9, ("s", 0), ("a", 100)),
            tagged(10, ("s", 90), ("b", 10)),
        ];
        assert_eq!(violations(&two_back, &[], &[]), vec![NO_RETURN]);
        // A rollback may only name the revision whose traffic the rolled-back one took.
        let wrong_rollback = [
            creation(),
            tagged(1, ("s", 90), ("a", 10)),
            tagged(2, ("s", 90), ("b", 10)),
            tagged(3, ("a", 100), ("b", 0)),
        ];
        assert_eq!(
            violations(&wrong_rollback, &[("b", 2)], &[]),
            vec![NO_RETURN]
        );
        assert_eq!(
            violations(&untagged(&wrong_rollback), &[("b", 2)], &[]),
            vec![NO_RETURN],
            "without tags too"
        );
        let regressed = [
            creation(),
            write(1, &[("s", 90), ("b", 10)]),
            write(5, &[("s", 50), ("b", 50)]),
        ];
        assert_eq!(violations(&regressed, &[("b", 0)], &[]), vec![REGRESSED]);
        let late = [
            creation(),
            write(1, &[("s", 90), ("b", 10)]),
            write(5, &[("s", 50), ("b", 50)]),
            write(9, &[("b", 100)]),
        ];
        assert_eq!(
            violations(&late, &[("b", 3)], &[]),
            vec![REGRESSED],
            "bad from minute 3: the 50% step starting at 5 is judged bad"
        );
        let false_rollback = [
            creation(),
            write(1, &[("s", 90), ("a", 10)]),
            write(2, &[("s", 100)]),
        ];
        assert_eq!(
            violations(&false_rollback, &[], &[]),
            vec![NO_FALSE_ROLLBACK]
        );

        let mut broken = write(1, &[("s", 90), ("a", 10)]);
        broken.etag_matched = false;
        broken.template_changed = true;
        broken.labels_preserved = false;
        broken.routes_unready = vec!["a".into()];
        broken.allocation.push(("c".into(), 5));
        let mut found = violations(&[creation(), broken], &[], &[]);
        found.sort();
        let mut expected = vec![
            SUMS_TO_100,
            ONLY_READY,
            ETAG,
            TEMPLATE,
            CONCURRENT_KEPT,
            NO_SKIPPED_STEP,
        ];
        expected.sort();
        assert_eq!(found, expected);
    }
}
