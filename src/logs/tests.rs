//! The JSON line layer, checked the way Cloud Logging reads a line: parsed as JSON.

use tracing_subscriber::prelude::*;

use super::*;

/// Runs `f` with `out` as the only subscriber's output.
fn during<T>(out: &Memory, f: impl FnOnce() -> T) -> T {
    let subscriber = tracing_subscriber::registry().with(CloudLogging::new(out.clone()));
    tracing::subscriber::with_default(subscriber, f)
}

#[test]
fn numbers_stay_numbers_and_json_fields_nest() {
    let out = Memory::default();
    during(&out, || {
        tracing::warn!(
            target: "cutover::decision",
            error_rate = 0.25,
            requests = 1200u64,
            shadow = false,
            reason = %"5xx above limit",
            statistics_json = r#"{"checks":[{"llr":3.5}]}"#,
            broken_json = "{not json",
            "decision"
        );
    });
    let line = &out.lines()[0];
    assert_eq!(line["severity"], "WARNING");
    assert_eq!(line["message"], "decision");
    assert!(
        line["time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    assert!(line["error_rate"].is_f64(), "{line}");
    assert_eq!(line["requests"], 1200);
    assert_eq!(line["shadow"], false);
    assert_eq!(line["reason"], "5xx above limit");
    assert_eq!(line["statistics"]["checks"][0]["llr"], 3.5);
    assert_eq!(line["broken"], "{not json", "unparsable JSON stays as text");
    assert!(line.get(TRACE).is_none(), "no request, no trace");
}

#[test]
fn lines_inside_a_traced_span_carry_its_trace() {
    let out = Memory::default();
    during(&out, || {
        let span = tracing::info_span!(
            "push",
            cloud_trace = "projects/p/traces/0123456789abcdef0123456789abcdef",
            cloud_span_id = "000000000000004a",
            cloud_trace_sampled = true
        );
        let _in = span.enter();
        let inner = tracing::info_span!("inner", other = 1);
        let _inner = inner.enter();
        tracing::info!("inside");
    });
    tracing::info!("outside, not captured");
    let line = &out.lines()[0];
    assert_eq!(
        line[TRACE],
        "projects/p/traces/0123456789abcdef0123456789abcdef"
    );
    assert_eq!(line[SPAN_ID], "000000000000004a");
    assert_eq!(line[TRACE_SAMPLED], true);
}

#[test]
fn a_fields_object_is_spread_over_the_line_without_its_nulls() {
    let out = Memory::default();
    during(&out, || {
        tracing::info!(
            fields_json = r#"{"service":"api","p99_ms":150.5,"stable":null}"#,
            "decision"
        );
    });
    let line = &out.lines()[0];
    assert_eq!(line["service"], "api");
    assert_eq!(line["p99_ms"], 150.5);
    assert!(line.get("stable").is_none());
    assert!(line.get("fields").is_none());
}
