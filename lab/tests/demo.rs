//! `lab demo` (what the README's first command runs) still ends as it should: the healthy
//! candidate reaches 100% and the regressed one is rolled back. The demo checks its own outcome
//! and fails otherwise, so running it is the test.

use cutover_lab::cli::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_demo_scenarios_end_as_they_should() {
    cutover_lab::demo::run(Scenario::All, None)
        .await
        .expect("the demo's rollouts end as the demo says they should");
}
