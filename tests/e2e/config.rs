//! Start-up: settings are listed, validated, and bad values stop cutover with a clear message.

use std::process::Command;

fn cutover(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CUTOVER_") || k == "GOOGLE_CLOUD_PROJECT" || k == "PORT" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cutover runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn serve_help_lists_every_variable_with_its_default() {
    let (ok, help) = cutover(&["serve", "--help"], &[]);
    assert!(ok, "{help}");
    for (var, default) in [
        ("PORT", Some("8080")),
        ("GOOGLE_CLOUD_PROJECT", None),
        ("CUTOVER_REGION", None),
        ("CUTOVER_REGIONS", None),
        ("CUTOVER_RUN_ENDPOINT", Some("https://run.googleapis.com")),
        (
            "CUTOVER_MONITORING_ENDPOINT",
            Some("https://monitoring.googleapis.com"),
        ),
        ("CUTOVER_AUTH", Some("auto")),
        ("GCE_METADATA_HOST", Some("metadata.google.internal")),
        ("CUTOVER_SMOKE_PATH", None),
        ("CUTOVER_STEPS", Some("10,50,100")),
        ("CUTOVER_STEP_INTERVAL", Some("5m")),
        ("CUTOVER_METRICS_DELAY", Some("3m")),
        ("CUTOVER_MIN_REQUESTS", Some("100")),
        ("CUTOVER_MAX_HOLD", Some("1h")),
        ("CUTOVER_MAX_ERROR_RATE", Some("0.01")),
        ("CUTOVER_MAX_P99_MS", Some("1000")),
        ("CUTOVER_PUSH_AUTH", Some("google")),
        (
            "CUTOVER_JWKS_URL",
            Some("https://www.googleapis.com/oauth2/v3/certs"),
        ),
        ("CUTOVER_PUSH_AUDIENCE", None),
        ("CUTOVER_PUSH_SERVICE_ACCOUNTS", None),
        ("CUTOVER_EVENT_DEADLINE", Some("50s")),
    ] {
        // clap prints `[env: VAR=]` and, on the next line, `[default: …]`.
        let block: Vec<&str> = help
            .lines()
            .skip_while(|l| !l.contains(&format!("[env: {var}=")))
            .take(2)
            .collect();
        assert!(!block.is_empty(), "{var} missing from --help:\n{help}");
        if let Some(d) = default {
            assert!(
                block.iter().any(|l| l.contains(&format!("[default: {d}]"))),
                "{var}: {block:?}"
            );
        }
    }
}

#[test]
fn a_bad_value_stops_start_up_naming_the_variable() {
    for (var, value) in [
        ("CUTOVER_STEP_INTERVAL", "5 minutes"),
        ("CUTOVER_STEPS", "50,10"),
        ("CUTOVER_MAX_ERROR_RATE", "5%"),
        ("CUTOVER_MIN_REQUESTS", "many"),
        ("CUTOVER_AUTH", "magic"),
        ("PORT", "http"),
        ("GOOGLE_CLOUD_PROJECT", "p/locations/x"),
        ("CUTOVER_REGION", "Europe West"),
        ("CUTOVER_REGIONS", "us-central1,../x"),
    ] {
        let (ok, out) = cutover(
            &["serve"],
            &[
                ("CUTOVER_PUSH_AUTH", "none"),
                ("GOOGLE_CLOUD_PROJECT", "p"),
                ("CUTOVER_REGION", "r"),
                (var, value),
            ],
        );
        assert!(!ok, "{var}={value} was accepted");
        assert!(
            out.contains(var),
            "{var}={value}: the message should name the variable:\n{out}"
        );
    }
}

#[test]
fn google_push_auth_without_an_audience_refuses_to_start() {
    let (ok, out) = cutover(
        &["serve"],
        &[("GOOGLE_CLOUD_PROJECT", "p"), ("CUTOVER_REGION", "r")],
    );
    assert!(!ok);
    assert!(out.contains("CUTOVER_PUSH_AUDIENCE"), "{out}");
}
