//! The status page as a person sees it: served by the real server over a real rollout against
//! the fakes, rendered by headless Chromium (Debian's `chromium`, installed by `.ci/run`), and
//! checked for what it shows and for basic accessibility (a language, table headers, an
//! accessible name on every chart and bar, and a WCAG contrast ratio of at least 4.5:1 for
//! every text colour pair its CSS declares). Without Chromium the rendering test says it did not
//! run, and why; under `CUTOVER_REQUIRE_CHROMIUM=1` (set by `.ci/run`) it fails instead.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

use cutover_fakes::RevisionProfile;
use serde_json::Value;

use crate::support::TestApp;

const PROJECT: &str = "acme-prod";
const REGION: &str = "us-central1";

/// `api` at 50% with two judged steps' worth of minutes, `payments` rolled back, `legacy`
/// with a record nobody can read.
async fn three_services() -> TestApp {
    let t = TestApp::start(PROJECT, REGION, &[]).await;
    t.service("api", 50.0);
    t.service("payments", 50.0);
    t.release("api", RevisionProfile::healthy()).await;
    t.release("payments", RevisionProfile::healthy().with_error_ratio(0.2))
        .await;
    t.tick_minutes(11).await;
    t.service("legacy", 5.0);
    t.fake
        .set_annotation(PROJECT, REGION, "legacy", "cutover.dev/phase", "sideways");
    t
}

async fn get(t: &TestApp, path: &str) -> reqwest::Response {
    reqwest::get(format!("{}{path}", t.push.base()))
        .await
        .unwrap()
}

#[tokio::test]
async fn status_json_has_every_rollout_its_steps_numbers_and_chart() {
    let t = three_services().await;
    let answer = get(&t, "/status.json").await;
    assert_eq!(answer.status(), 200);
    let page: Value = answer.json().await.unwrap();
    let rollouts = page["rollouts"].as_array().unwrap();
    let api = rollouts.iter().find(|r| r["service"] == "api").unwrap();
    assert_eq!(api["phase"], "progressing");
    assert_eq!(api["active"], true);
    assert_eq!(api["traffic"]["api-00002-def"], 50);
    let steps: Vec<String> = api["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["label"].as_str().unwrap(),
                s["state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(steps, ["10% done", "50% current", "100% next", "bake next"]);
    assert_eq!(api["last_judged"]["decision"], "advance");
    assert!(api["last_judged"]["requests"].as_u64().unwrap() >= 100);
    assert_eq!(api["last_judged"]["max_error_rate"], 0.01);
    let series = api["chart"]["series"].as_array().unwrap();
    assert_eq!(series[0]["role"], "candidate");
    assert_eq!(series[1]["revision"], "api-00001-abc");
    assert!(
        series[0]["minutes"].as_array().unwrap().len() >= 5,
        "a point per minute since the rollout started: {}",
        series[0]
    );
    let payments = rollouts
        .iter()
        .find(|r| r["service"] == "payments")
        .unwrap();
    assert_eq!(payments["phase"], "rolled-back");
    assert!(
        payments["chart"].is_null(),
        "finished rollouts have no chart"
    );
    assert_eq!(payments["steps"][0]["state"], "failed");
    let problems = page["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["service"], "legacy");
    assert!(
        problems[0]["error"]
            .as_str()
            .unwrap()
            .contains("cutover.dev/phase")
    );
}

#[tokio::test]
async fn a_failing_monitoring_query_costs_only_that_chart() {
    let t = three_services().await;
    t.fake.faults().monitoring_errors(10, 400);
    let answer = get(&t, "/status").await;
    assert_eq!(answer.status(), 200);
    let html = answer.text().await.unwrap();
    assert!(
        html.contains("No chart: Cloud Monitoring could not be read"),
        "{html}"
    );
    assert!(html.contains("candidate 50% · stable 50%"));
}

/// Set to `1` (as `.ci/run` does) to make a missing Chromium a failure instead of a skip.
const REQUIRE_CHROMIUM: &str = "CUTOVER_REQUIRE_CHROMIUM";

/// Debian's Chromium. Without it the test says on stderr that it did not run and why (so a
/// fresh machine's `cargo test` passes without a browser), and fails under
/// `CUTOVER_REQUIRE_CHROMIUM=1`, so CI never skips it silently.
fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    let why = "chromium is not installed: this test renders the status page in headless \
               Chromium. Install Debian's package (`apt-get install chromium`; .ci/run does it)";
    if std::env::var(REQUIRE_CHROMIUM).as_deref() == Ok("1") {
        panic!("{REQUIRE_CHROMIUM}=1 and {why}");
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // Straight to the stderr handle: the harness captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: did not run, {why} (set {REQUIRE_CHROMIUM}=1 to make this a failure)"
    );
    None
}

/// Runs headless Chromium on `url` with `extra` flags; its standard output.
async fn headless(bin: PathBuf, url: String, extra: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let profile = tempdir("chromium-profile");
        let out = Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .args(&extra)
            .arg(&url)
            .output()
            .expect("chromium runs");
        let _ = std::fs::remove_dir_all(&profile);
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

fn tempdir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cutover-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// Several threads: the server answers Chromium while the test waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_rollouts_their_traffic_and_charts() {
    let Some(bin) = chromium() else { return };
    let t = three_services().await;
    let url = format!("{}/status", t.push.base());
    let dom = headless(bin.clone(), url.clone(), vec!["--dump-dom".into()]).await;
    assert!(dom.contains("<h1>cutover rollouts</h1>"), "{dom}");
    for service in ["api", "payments", "legacy"] {
        assert!(
            dom.contains(&format!("<th scope=\"row\">{service}<")),
            "{service} row"
        );
    }
    assert!(
        dom.contains("candidate 50% · stable 50%"),
        "the api bar's text"
    );
    assert!(
        dom.contains("candidate 0% · stable 100%"),
        "payments, rolled back"
    );
    assert!(dom.contains("50% <span class=\"state\">current</span>"));
    assert!(dom.contains("Cannot be shown: its cutover record cannot be read"));
    assert_eq!(
        dom.matches("<svg").count(),
        2,
        "api's two charts, and only api's"
    );
    assert!(dom.contains("<polyline class=\"series-candidate\""));

    let shots = tempdir("screenshot");
    let png = shots.join("status.png");
    headless(
        bin,
        url,
        vec![
            format!("--screenshot={}", png.display()),
            "--window-size=1280,900".into(),
        ],
    )
    .await;
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "a real picture"
    );
    let _ = std::fs::remove_dir_all(&shots);
}

#[tokio::test]
async fn the_page_passes_a_basic_accessibility_check() {
    let t = three_services().await;
    let html = get(&t, "/status").await.text().await.unwrap();
    assert!(html.contains("<html lang=\"en\">"), "a language");
    assert!(html.contains("<caption>"), "the table says what it holds");
    assert_eq!(
        html.matches("<th scope=\"col\">").count(),
        6,
        "column headers"
    );
    // Every chart names itself and describes its data in words.
    for svg in html.split("<svg").skip(1) {
        let open = &svg[..svg.find('>').unwrap()];
        assert!(open.contains("role=\"img\""), "{open}");
        let ids = open.split("aria-labelledby=\"").nth(1).unwrap();
        for id in ids[..ids.find('"').unwrap()].split(' ') {
            let element = svg.split(&format!("id=\"{id}\">")).nth(1).unwrap();
            let text = &element[..element.find('<').unwrap()];
            assert!(text.trim().len() > 10, "{id} names the chart: {text:?}");
        }
    }
    // Every traffic bar has its split as its name.
    let bars = html
        .matches("class=\"bar\" role=\"img\" aria-label=\"Traffic: candidate")
        .count();
    assert_eq!(bars, 2);
    // Every text colour the CSS declares is readable on its background.
    let css = &html[html.find("<style>").unwrap() + 7..html.find("</style>").unwrap()];
    let pairs = colour_pairs(css);
    assert!(pairs.len() >= 15, "{pairs:?}");
    for (rule, fg, bg) in pairs {
        let ratio = contrast(fg, bg);
        assert!(ratio >= 4.5, "{rule}: {fg} on {bg} is {ratio:.2}:1");
    }
}

/// Each CSS rule that sets `color`, with its background (its own, else the body's).
fn colour_pairs(css: &str) -> Vec<(String, &str, &str)> {
    fn prop<'a>(body: &'a str, name: &str) -> Option<&'a str> {
        body.split(';').find_map(|d| {
            let (k, v) = d.split_once(':')?;
            (k.trim() == name).then(|| v.trim())
        })
    }
    let rules: Vec<(&str, &str)> = css
        .split('}')
        .filter_map(|r| r.split_once('{'))
        .map(|(sel, body)| (sel.trim(), body))
        .collect();
    let body_bg = rules
        .iter()
        .find(|(sel, _)| *sel == "body")
        .and_then(|(_, b)| prop(b, "background"))
        .expect("body background");
    rules
        .iter()
        .filter_map(|(sel, body)| {
            let fg = prop(body, "color")?;
            let bg = prop(body, "background")
                .or_else(|| prop(body, "background-color"))
                .unwrap_or(body_bg);
            Some((sel.to_string(), fg, bg))
        })
        .collect()
}

/// The WCAG 2 contrast ratio of two `#rrggbb` colours.
fn contrast(a: &str, b: &str) -> f64 {
    let luminance = |hex: &str| {
        let hex = hex.trim_start_matches('#');
        assert_eq!(hex.len(), 6, "a #rrggbb colour: {hex}");
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4)
    };
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}
