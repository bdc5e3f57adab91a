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

/// The README's configuration table: each variable and, where the table gives one as a code
/// span (`` `8080` ``), its default. A cell naming another variable (`CUTOVER_REGIONS` defaults
/// to `CUTOVER_REGION`) or a source ("metadata server", "unset") is no literal default.
fn documented_settings() -> Vec<(String, Option<String>)> {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let table = readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|t| t.split("\n### ").next())
        .expect("README has a Configuration section");
    let code = |cell: &str| {
        let cell = cell.trim();
        (cell.len() > 2
            && cell.starts_with('`')
            && cell.ends_with('`')
            && cell.matches('`').count() == 2)
            .then(|| cell[1..cell.len() - 1].to_string())
    };
    let rows: Vec<(String, Option<String>)> = table
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            let var = code(cells.get(1)?)?;
            Some((var, cells.get(2).and_then(|c| code(c))))
        })
        .collect();
    let names: Vec<String> = rows.iter().map(|(v, _)| v.clone()).collect();
    rows.into_iter()
        .map(|(var, default)| (var, default.filter(|d| !names.contains(d))))
        .collect()
}

#[test]
fn serve_help_lists_every_variable_with_its_default() {
    let (ok, help) = cutover(&["serve", "--help"], &[]);
    assert!(ok, "{help}");
    let settings = documented_settings();
    assert!(settings.len() >= 30, "README table not found: {settings:?}");
    for (var, default) in settings {
        // clap prints `[env: VAR=]` (`[env: VAR]` for a secret, whose value it hides) and, on
        // the next line, `[default: …]`.
        let block: Vec<&str> = help
            .lines()
            .skip_while(|l| {
                !(l.contains(&format!("[env: {var}=")) || l.contains(&format!("[env: {var}]")))
            })
            .take(2)
            .collect();
        assert!(!block.is_empty(), "{var} missing from --help:\n{help}");
        if let Some(d) = default {
            assert!(
                block.iter().any(|l| l.contains(&format!("[default: {d}]"))),
                "{var}: the README documents {d}, --help says {block:?}"
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
        ("CUTOVER_EVENTS_TOPIC", "projects/p/subscriptions/x"),
        ("CUTOVER_EVENTS_TOPIC", "goog-events"),
        ("CUTOVER_NOTIFY_URL", "ftp://hooks.slack.com/x"),
        ("CUTOVER_NOTIFY_FORMAT", "teams"),
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

#[test]
fn a_webhook_of_an_unknown_kind_stops_start_up_asking_for_its_format_without_showing_it() {
    let env = [
        ("CUTOVER_PUSH_AUTH", "none"),
        ("GOOGLE_CLOUD_PROJECT", "p"),
        ("CUTOVER_REGION", "r"),
        (
            "CUTOVER_NOTIFY_URL",
            "https://hooks.example.com/services/SECRET",
        ),
    ];
    let (ok, out) = cutover(&["serve"], &env);
    assert!(!ok, "an unknown webhook host was accepted");
    assert!(out.contains("CUTOVER_NOTIFY_FORMAT"), "{out}");
    assert!(out.contains("hooks.example.com"), "{out}");
    assert!(!out.contains("SECRET"), "the URL is a secret: {out}");
}
