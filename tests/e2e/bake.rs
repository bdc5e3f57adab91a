//! After the last step: the bake keeps the previous stable tagged, an alert during it rolls back
//! to that revision, and once it is over an alert changes nothing.

use cutover_fakes::RevisionProfile;

use crate::helpers::*;

/// Three steps of the default policy, each judged 8 minutes after traffic moved: the bake
/// starts when the 100% step is judged healthy.
const BAKE_STARTS_AFTER: u32 = 3 * 8;
/// The default `CUTOVER_BAKE`.
const BAKE: u32 = 10;

/// Whether `revision` carries `tag` in the service's traffic.
fn tagged(t: &TestApp, service: &str, revision: &str, tag: &str) -> bool {
    t.fake
        .traffic(PROJECT, REGION, service)
        .iter()
        .any(|(r, _, g)| r == revision && g.as_deref() == Some(tag))
}

#[tokio::test]
async fn an_alert_during_the_bake_rolls_back_to_the_previous_stable() {
    let t = spawn_app(&[]).await;
    t.service("cart", 20.0);
    t.release("cart", RevisionProfile::healthy()).await;
    t.tick_minutes(BAKE_STARTS_AFTER).await;
    assert_eq!(t.split("cart"), vec![(candidate_of("cart"), 100)]);
    assert_eq!(
        t.annotation("cart", "cutover.dev/phase").as_deref(),
        Some("baking")
    );
    assert!(
        tagged(&t, "cart", &stable_of("cart"), "stable"),
        "the previous stable keeps its tag during the bake"
    );

    t.tick_minutes(BAKE - 2).await;
    let open = t
        .push
        .alert("cart", &candidate_of("cart"), REGION, "open", t.clock.now())
        .await
        .unwrap();
    assert_eq!(open.status, 200, "{}", open.body);
    assert_eq!(
        t.split("cart"),
        vec![(stable_of("cart"), 100)],
        "all traffic back to the previous stable at once"
    );
    assert_eq!(
        t.annotation("cart", "cutover.dev/phase").as_deref(),
        Some("rolled-back")
    );
    let reason = t.annotation("cart", "cutover.dev/reason").unwrap();
    assert!(reason.contains("during the bake"), "{reason}");
    assert_eq!(t.candidate_steps("cart"), vec![0, 10, 50, 100, 0]);
}

#[tokio::test]
async fn after_the_bake_the_rollout_is_complete_and_an_alert_does_nothing() {
    let mut t = spawn_app(&[]).await;
    t.service("shop", 20.0);
    t.release("shop", RevisionProfile::healthy()).await;
    t.tick_minutes(BAKE_STARTS_AFTER + BAKE).await;
    assert_eq!(
        t.annotation("shop", "cutover.dev/phase").as_deref(),
        Some("completed")
    );
    assert!(tagged(&t, "shop", &candidate_of("shop"), "stable"));
    assert!(
        !t.fake
            .traffic(PROJECT, REGION, "shop")
            .iter()
            .any(|(r, _, _)| *r == stable_of("shop")),
        "the previous stable's tag is removed"
    );
    let kinds: Vec<String> = t
        .drain()
        .into_iter()
        .filter(|d| d.decision != "hold")
        .map(|d| d.decision.to_string())
        .collect();
    assert_eq!(
        kinds,
        ["start", "advance", "advance", "bake", "complete"],
        "the bake follows the last step"
    );

    let writes = t.fake.history(PROJECT, REGION, "shop").len();
    let open = t
        .push
        .alert("shop", &candidate_of("shop"), REGION, "open", t.clock.now())
        .await
        .unwrap();
    assert_eq!(open.status, 200, "{}", open.body);
    assert_eq!(t.split("shop"), vec![(candidate_of("shop"), 100)]);
    assert_eq!(t.fake.history(PROJECT, REGION, "shop").len(), writes);
    assert_eq!(
        t.annotation("shop", "cutover.dev/phase").as_deref(),
        Some("completed")
    );
}

#[tokio::test]
async fn with_no_bake_the_rollout_completes_at_its_last_step() {
    let t = spawn_app(&["--bake", "0"]).await;
    t.service("lean", 20.0);
    t.release("lean", RevisionProfile::healthy()).await;
    t.tick_minutes(BAKE_STARTS_AFTER).await;
    assert_eq!(
        t.annotation("lean", "cutover.dev/phase").as_deref(),
        Some("completed")
    );
    assert!(tagged(&t, "lean", &candidate_of("lean"), "stable"));
}
