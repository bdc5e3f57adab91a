//! What Cloud Logging receives from a push: every line of it carries the request's trace from
//! Cloud Run's header, and its decision is one JSON line with typed fields, the message id and
//! the build's log URL.

use std::sync::OnceLock;

use cutover::logs::{CloudLogging, Memory, SPAN_ID, TRACE, TRACE_SAMPLED};
use cutover_fakes::encode::{build_attributes, encode_build, encode_push};
use serde_json::Value;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

use crate::support::TestApp;

/// A project no other test uses, so this test's decisions are its own.
const PROJECT: &str = "acme-logging";
const REGION: &str = "us-central1";
const TRACE_ID: &str = "105445aa7843bc8bf206b12000100000";

/// The decision lines of `decision` logged so far.
fn decisions(lines: &Memory, decision: &str) -> Vec<Value> {
    let ours = format!("{PROJECT}/{REGION}/api");
    lines
        .lines()
        .into_iter()
        .filter(|l| l["message"] == "decision" && l["decision"] == decision && l["service"] == ours)
        .collect()
}

/// Every line logged in this test binary from now on, at info and above. A subscriber of the
/// whole process, not of this test's thread: tracing caches whether a call site is of interest
/// per process, and a test on another thread that reaches a call site first, with no subscriber,
/// would otherwise leave it switched off for this test's subscriber too. Other tests' lines land
/// here as well; this test picks its own by message id and service.
fn captured() -> &'static Memory {
    static LINES: OnceLock<Memory> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines = Memory::default();
        let layer = CloudLogging::new(lines.clone()).with_filter(LevelFilter::INFO);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other test of this binary sets the process's subscriber");
        lines
    })
}

#[tokio::test]
async fn a_pushs_lines_carry_its_trace_and_its_decision_is_typed_json() {
    let lines = captured();

    let t = TestApp::start(PROJECT, REGION, &[]).await;
    t.deployed_in(PROJECT, REGION, "api");
    let build_id = "b-trace-0001";
    let data = encode_build(build_id, "SUCCESS", PROJECT, "api", REGION, t.clock.now());
    let envelope = encode_push(
        &data,
        &build_attributes(build_id, "SUCCESS"),
        "424242",
        t.clock.now(),
        "projects/acme-logging/subscriptions/cutover-builds",
    );
    let answer = reqwest::Client::new()
        .post(format!("{}/pubsub/builds", t.push.base()))
        .header("x-cloud-trace-context", format!("{TRACE_ID}/74;o=1"))
        .json(&envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let start = &decisions(lines, "start")
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no start decision among {:?}", lines.lines()));
    assert_eq!(
        start[TRACE],
        format!("projects/{PROJECT}/traces/{TRACE_ID}"),
        "{start}"
    );
    assert_eq!(start[SPAN_ID], "000000000000004a");
    assert_eq!(start[TRACE_SAMPLED], true);
    assert_eq!(start["message_id"], "424242");
    let log_url = start["log_url"].as_str().unwrap_or_default();
    assert!(
        log_url.starts_with(&format!(
            "https://console.cloud.google.com/cloud-build/builds;region={REGION}/{build_id}?project="
        )),
        "the build's logUrl: {start}"
    );
    assert_eq!(start["severity"], "INFO");
    let all = lines.lines();
    let trace = format!("projects/{PROJECT}/traces/{TRACE_ID}");
    let of_the_push: Vec<&Value> = all.iter().filter(|l| l[TRACE] == trace.as_str()).collect();
    assert!(
        of_the_push.len() >= 2,
        "the build's other lines are grouped too: {all:?}"
    );
    assert!(
        of_the_push
            .iter()
            .any(|l| l["message"] == "build finished" && l["message_id"] == "424242")
    );

    // The 10% step is judged at 5 + 3 minutes: its record's numbers are numbers.
    t.tick_minutes(9).await;
    let judged = &decisions(lines, "advance")[0];
    assert!(judged["error_rate"].is_f64(), "{judged}");
    assert!(judged["p99_ms"].is_f64(), "{judged}");
    assert!(judged["requests"].is_u64(), "{judged}");
    assert!(judged["max_error_rate"].is_f64(), "{judged}");
    assert_eq!(judged["percent"], 50);
    assert!(judged["statistics"].is_object(), "{judged}");
    for time in ["window_start", "window_end", "at", "time"] {
        let text = judged[time]
            .as_str()
            .unwrap_or_else(|| panic!("{time}: {judged}"));
        assert!(
            text.parse::<jiff::Timestamp>().is_ok(),
            "{time} is RFC 3339: {text}"
        );
    }
    assert!(judged.get(TRACE).is_none(), "the tick came without a trace");
    assert!(judged["message_id"].is_string(), "the tick's message id");
    assert!(judged.get("log_url").is_none());
}
