//! Single faults, one at a time, against one cutover instance on a manual clock: what cutover
//! does with each kind of misbehaviour that the chaos suite mixes together. Each test states the
//! behaviour it pins (see also docs/reliability.md, "Findings").

use std::time::Duration;

use cutover::clock::Clock;
use cutover_fakes::pusher::Pushed;
use cutover_fakes::{FakeGcp, Garble, RevisionProfile};
use jiff::SignedDuration;

use crate::support::TestApp;
use crate::{PROJECT, REGION};

/// One cutover instance and its fake, on a manual clock, judging steps 3 minutes after they
/// start (2-minute soak, 1-minute delay), with service `api` at 30 requests per second.
struct Solo(TestApp);

impl std::ops::Deref for Solo {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.0
    }
}

impl Solo {
    async fn start(extra: &[&str]) -> Solo {
        let clock = Clock::manual(crate::support::t0());
        let fake = FakeGcp::start(crate::support::fake_clock(&clock)).await;
        fake.faults().ingest_lag(SignedDuration::from_mins(1));
        let mut flags = crate::QUICK_STEPS.to_vec();
        flags.extend_from_slice(&["--event-deadline", "3s"]);
        flags.extend_from_slice(extra);
        let app = TestApp::start_on(PROJECT, REGION, fake, clock, &flags).await;
        app.service("api", 30.0);
        Solo(app)
    }

    async fn build(&self) -> Pushed {
        self.0.build("api").await
    }

    async fn release(&self, profile: RevisionProfile) -> Pushed {
        self.0.release("api", profile).await
    }

    /// Ticks a minute at a time until `done` holds (at most `max` minutes); whether it did.
    async fn ticks_until(&self, max: u32, done: impl Fn(&Solo) -> bool) -> bool {
        for _ in 0..max {
            if done(self) {
                return true;
            }
            self.ticks(1).await;
        }
        done(self)
    }

    fn ended(&self) -> bool {
        matches!(
            self.annotation("phase").as_str(),
            "completed" | "rolled-back" | "paused"
        )
    }

    fn annotation(&self, key: &str) -> String {
        self.0
            .annotation("api", &format!("cutover.dev/{key}"))
            .unwrap_or_default()
    }

    /// The candidate's share after each accepted write, repeats folded.
    fn steps(&self) -> Vec<u8> {
        self.candidate_steps("api")
    }
}

/// 429 bursts are throttling: retried with backoff inside the event.
#[tokio::test]
async fn a_burst_of_429_is_retried_within_the_event() {
    let t = Solo::start(&[]).await;
    t.fake.faults().run_errors(3, 429);
    let p = t.release(RevisionProfile::healthy()).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(t.steps(), vec![0, 10]);
}

/// A connection cut in the middle of the PATCH's answer: the write landed, cutover retries it
/// with the same etag, gets 409, re-reads and finds its own write. One step, no duplicate.
#[tokio::test]
async fn a_connection_cut_after_the_write_landed_is_not_a_second_step() {
    let t = Solo::start(&[]).await;
    t.fake.deploy(
        PROJECT,
        REGION,
        "api",
        "api-00002-def",
        RevisionProfile::healthy(),
    );
    // The GET answers normally; the call after it, the PATCH, is cut.
    let fake = t.fake.clone();
    let watcher = tokio::spawn(async move {
        loop {
            if fake.requests().iter().any(|r| r.method == "GET") {
                fake.faults().run_garbled(1, Garble::CutConnection);
                return;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    });
    t.fake.faults().latency(Duration::from_millis(20));
    let p = t.build().await;
    watcher.await.unwrap();
    assert!(
        p.status == 200 || p.status == 503,
        "{} {}",
        p.status,
        p.body
    );
    assert_eq!(
        t.fake.faults().counts().cut_connections,
        1,
        "the PATCH's answer was cut"
    );
    assert!(
        t.fake
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.status == 200),
        "and it had landed"
    );
    t.fake.faults().clear();
    t.build().await;
    t.ticks(1).await;
    assert_eq!(
        t.steps(),
        vec![0, 10],
        "{:?}",
        t.fake.history(PROJECT, REGION, "api")
    );
    assert_eq!(t.annotation("percent"), "10");
}

/// An operation that ends with an error: the event is redelivered, and the redelivery finds
/// the write in place and carries on from it.
#[tokio::test]
async fn an_operation_ending_in_error_is_picked_up_on_redelivery() {
    let t = Solo::start(&[]).await;
    t.fake
        .faults()
        .failing_operations(1, 13, "Internal error while routing traffic.");
    let p = t.release(RevisionProfile::healthy()).await;
    assert_eq!(
        p.status, 503,
        "a failed operation is worth a redelivery: {}",
        p.body
    );
    let p = t.build().await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(t.ticks_until(60, Solo::ended).await);
    assert_eq!(t.steps(), vec![0, 10, 50, 100]);
    assert_eq!(t.annotation("phase"), "completed");
}

/// An operation that never finishes: the event runs out of time and is redelivered; the
/// rollout goes on once a later write's operation completes.
#[tokio::test]
async fn a_stuck_operation_costs_the_event_not_the_rollout() {
    let t = Solo::start(&[]).await;
    t.fake.faults().stuck_operations(1);
    let p = t.release(RevisionProfile::healthy()).await;
    assert_eq!(p.status, 503, "{}", p.body);
    assert!(t.ticks_until(60, Solo::ended).await);
    assert_eq!(t.steps(), vec![0, 10, 50, 100]);
    assert_eq!(t.annotation("phase"), "completed");
}

/// Monitoring answering with `executionErrors` is no verdict: the step holds, then the rollout
/// pauses after the maximum hold, saying why; it never rolls back and never advances.
#[tokio::test]
async fn execution_errors_hold_then_pause_never_judge() {
    let t = Solo::start(&["--max-hold", "10m"]).await;
    t.release(RevisionProfile::healthy().with_error_ratio(0.5))
        .await;
    t.fake.faults().execution_errors(100_000);
    assert!(t.ticks_until(60, Solo::ended).await);
    assert_eq!(t.steps(), vec![0, 10], "no verdict on partial data");
    assert_eq!(t.annotation("phase"), "paused");
    assert_eq!(t.annotation("paused-by"), "max-hold");
    assert!(
        t.annotation("reason").contains("partial result"),
        "{}",
        t.annotation("reason")
    );
}

/// Empty pages with a `nextPageToken` are followed; partial series (the newest minute
/// missing) still judge a failing candidate as failing.
#[tokio::test]
async fn empty_pages_are_followed_and_partial_series_still_fail_a_bad_candidate() {
    let t = Solo::start(&[]).await;
    t.release(RevisionProfile::healthy()).await;
    t.fake.faults().empty_pages(6);
    assert!(t.ticks_until(60, |t| t.steps().len() > 2).await);
    assert_eq!(t.steps(), vec![0, 10, 50], "judged through the empty pages");
    assert_eq!(t.fake.faults().counts().empty_pages, 6);

    let bad = Solo::start(&[]).await;
    bad.release(RevisionProfile::healthy().with_error_ratio(0.3))
        .await;
    bad.fake.faults().partial_series(100_000);
    assert!(bad.ticks_until(60, Solo::ended).await);
    assert_eq!(bad.steps(), vec![0, 10, 0]);
    assert_eq!(bad.annotation("phase"), "rolled-back");
}

/// A revision that never became Ready is never given traffic, even when a build names it.
#[tokio::test]
async fn an_unready_revision_never_gets_traffic() {
    let t = Solo::start(&[]).await;
    t.fake
        .deploy_unready(PROJECT, REGION, "api", "api-00002-def");
    let p = t.build().await;
    assert_eq!(p.status, 200, "{}", p.body);
    t.ticks(5).await;
    for c in t.fake.history(PROJECT, REGION, "api") {
        assert!(c.routes_unready.is_empty(), "{c:?}");
    }
    assert_eq!(
        t.annotation("phase"),
        "",
        "no rollout of an unready revision"
    );
}

/// Garbled answers from the Run API (truncated JSON, an HTML 404 from a front end that does not
/// know the path) are transient: retried within the event, never read as "the service does not
/// exist", so the build is not lost (finding F1 in docs/reliability.md, fixed).
#[tokio::test]
async fn garbled_run_answers_are_retried_and_the_build_is_not_lost() {
    for garble in [Garble::TruncatedJson, Garble::Html404] {
        let t = Solo::start(&[]).await;
        t.fake.faults().run_garbled(1, garble);
        let p = t.release(RevisionProfile::healthy()).await;
        assert_eq!(p.status, 200, "{garble:?}: {}", p.body);
        assert_eq!(t.steps(), vec![0, 10], "{garble:?}: the rollout started");
    }
}

/// A Run API that keeps answering garbage makes Pub/Sub redeliver, rather than acking.
#[tokio::test]
async fn a_run_api_that_keeps_answering_garbage_is_nacked() {
    let t = Solo::start(&["--event-deadline", "2s"]).await;
    t.fake.faults().run_garbled(10_000, Garble::Html404);
    let p = t.release(RevisionProfile::healthy()).await;
    assert_eq!(p.status, 503, "worth a redelivery: {}", p.body);
    assert_eq!(t.steps(), vec![0], "nothing written");
}

/// A build whose `projectId` smuggles a path (`…/services/web#`) must not make cutover touch a
/// service the build does not name.
///
/// Finding F2 (docs/reliability.md), fixed: the project id of a build (and the project and
/// location of an incident) reached the Run API URL unvalidated; now every part of the service
/// an event names must be path-safe, or the message is acknowledged and ignored.
#[tokio::test]
async fn a_project_id_cannot_retarget_another_service() {
    let t = Solo::start(&[]).await;
    t.fake.add_service(
        PROJECT,
        REGION,
        "web",
        "web-00001-abc",
        RevisionProfile::healthy(),
        30.0,
    );
    t.fake.deploy(
        PROJECT,
        REGION,
        "web",
        "web-00002-def",
        RevisionProfile::healthy(),
    );
    t.fake.deploy(
        PROJECT,
        REGION,
        "api",
        "api-00002-def",
        RevisionProfile::healthy(),
    );
    let sneaky = format!("{PROJECT}/locations/{REGION}/services/web#");
    let data = cutover_fakes::encode::encode_build(
        "b-sneaky",
        "SUCCESS",
        &sneaky,
        "api",
        REGION,
        t.clock.now(),
    );
    let attrs = cutover_fakes::encode::build_attributes("b-sneaky", "SUCCESS");
    let p = t
        .push
        .push(
            "/pubsub/builds",
            "cutover-builds",
            &data,
            &attrs,
            t.clock.now(),
        )
        .await
        .expect("cutover answers");
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(
        t.fake.history(PROJECT, REGION, "web").len(),
        1,
        "web was written: {:?}",
        t.fake.history(PROJECT, REGION, "web")
    );
}

/// Issue 10, item 0, alone (one instance, no fault, no duplicate): a newer revision arriving
/// while the candidate soaks at 100%, then failing, must not send traffic back to the revision
/// the candidate replaced. Judged by the suite's own invariants, which must find nothing; before
/// the fix they found the write `{old stable: 90, newer: 10}`.
#[tokio::test]
async fn a_newer_revision_during_the_100_percent_soak_gives_no_traffic_back() {
    use std::collections::{BTreeMap, BTreeSet};

    use crate::invariants::{Subject, dump};

    let t = Solo::start(&[]).await;
    t.release(RevisionProfile::healthy()).await;
    assert!(
        t.ticks_until(30, |t| t.annotation("percent") == "100")
            .await,
        "the candidate reached 100%"
    );
    assert_eq!(t.annotation("phase"), "progressing", "still soaking");
    let newer = "api-00003-ghi";
    t.fake.deploy(
        PROJECT,
        REGION,
        "api",
        newer,
        RevisionProfile::healthy().with_error_ratio(0.3),
    );
    let deployed = t.clock.now();
    assert_eq!(t.build().await.status, 200);
    assert!(t.ticks_until(60, Solo::ended).await);
    assert_eq!(t.annotation("phase"), "rolled-back");

    let history = t.fake.history(PROJECT, REGION, "api");
    let order = ["api-00001-abc", "api-00002-def", newer].map(String::from);
    let subject = Subject {
        service: "api",
        history: &history,
        creation_order: &order,
        steps: crate::STEPS,
        judged_bad_from: &BTreeMap::from([(newer.to_string(), deployed)]),
        healthy: &BTreeSet::from(["api-00002-def".to_string()]),
        open_incidents: &[],
    };
    let mut violations = Vec::new();
    subject.check(&mut violations);
    assert!(violations.is_empty(), "{violations:#?}\n{}", dump(&history));
    let last = history.last().expect("writes");
    assert_eq!(
        last.allocation,
        vec![("api-00002-def".to_string(), 100)],
        "back on the revision that served 100% before the newer one"
    );
}
