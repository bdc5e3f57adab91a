//! cutover settings for running against the fakes on this machine.
//!
//! The demo, the bench and the tests all start the real server (in-process, or as the binary)
//! pointed at a [`FakeGcp`]: every Google endpoint and the metadata server on the fake, no
//! credentials, no push auth. Every setting that matters is passed explicitly, so the caller's
//! environment (`CUTOVER_*` variables) cannot change what runs. These are strings only: parsing
//! them is cutover's business (its `Cli`), and extra flags appended after them win.

use super::FakeGcp;

/// The `cutover serve` flags that point it at `fake` for `project`/`region`.
pub fn flags(fake: &FakeGcp, project: &str, region: &str) -> Vec<String> {
    let base = fake.base_url();
    let metadata = fake.metadata_host();
    [
        "--project",
        project,
        "--region",
        region,
        "--regions",
        region,
        "--run-endpoint",
        &base,
        "--monitoring-endpoint",
        &base,
        "--metadata-host",
        &metadata,
        "--auth",
        "none",
        "--push-auth",
        "none",
        "--log-format",
        "text",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// [`flags`], then `extra` flags (which win, coming later).
pub fn flags_with<S: AsRef<str>>(
    fake: &FakeGcp,
    project: &str,
    region: &str,
    extra: &[S],
) -> Vec<String> {
    let mut all = flags(fake, project, region);
    all.extend(extra.iter().map(|s| s.as_ref().to_string()));
    all
}

/// The flags that point cutover's App Engine and Compute clients at `fake`
/// (`--appengine-endpoint`, `--compute-endpoint`, the names issue 15 gives them). Not part of
/// [`flags`] until cutover's configuration has them: append them with [`flags_with`].
pub fn platform_flags(fake: &FakeGcp) -> Vec<String> {
    let base = fake.base_url();
    vec![
        "--appengine-endpoint".to_string(),
        base.clone(),
        "--compute-endpoint".to_string(),
        base,
    ]
}
