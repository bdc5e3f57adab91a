//! `lab demo --screenshot FILE`: the demo's status page, as headless Chromium shows it, for
//! `docs/status.png` (the picture in the README).
//!
//! The demo's two scenarios leave a completed and a rolled-back rollout; a third service is
//! then left mid-rollout (at 50%, a few minutes into the step) so that the picture also shows
//! a running rollout with its chart. Everything runs on the demo's manual clock, so the same
//! command draws the same page.

use std::path::Path;
use std::process::Command;

/// Debian's Chromium, or why not.
fn chromium() -> Result<String, String> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_string)
        .ok_or_else(|| "chromium is not installed (apt-get install chromium)".to_string())
}

/// Renders `url` in headless Chromium, 1280 pixels wide and `height` high, into `file`.
pub async fn render(url: &str, file: &Path, height: u32) -> Result<(), String> {
    let bin = chromium()?;
    let profile =
        std::env::temp_dir().join(format!("cutover-demo-chromium-{}", std::process::id()));
    let args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-background-networking".into(),
        "--disable-gpu".into(),
        "--hide-scrollbars".into(),
        "--no-first-run".into(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size=1280,{height}"),
        format!("--screenshot={}", file.display()),
        url.to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new(bin).args(args).output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("chromium: {e}"))?;
    let _ = std::fs::remove_dir_all(&profile);
    if !out.status.success() || !file.exists() {
        return Err(format!(
            "chromium could not take the screenshot: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}
