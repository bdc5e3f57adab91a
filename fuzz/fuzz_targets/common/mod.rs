//! What the event fuzz targets check of everything the server would act on or log: each
//! string is bounded and printable, and each service it would act on is inside the scope its
//! ticks evaluate and safe in a Run API URL path. Shared by the targets (not a target itself).
#![allow(dead_code)]

use cutover::events::{Named, Scope};
use cutover::target::{GLOBAL, Platform, ServiceRef};

/// cutover's settings in these targets: `GOOGLE_CLOUD_PROJECT`, `CUTOVER_REGION`,
/// `CUTOVER_REGIONS`.
pub const PROJECT: &str = "acme-prod";
pub const DEFAULT_REGION: &str = "us-central1";
pub fn regions() -> Vec<String> {
    vec![DEFAULT_REGION.to_owned(), "europe-west1".to_owned()]
}

/// A URL path segment that means only itself: no separators, queries, fragments or escapes,
/// and no dot segments (which a URL parser folds away).
pub fn path_safe(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// `s` (what the server would log or answer as `what`) has at most `max` characters and no
/// control or line-separator character.
pub fn assert_loggable(what: &str, s: &str, max: usize) {
    assert!(
        s.chars().count() <= max,
        "{what}: {} characters (at most {max})",
        s.chars().count()
    );
    assert!(
        !s.chars()
            .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')),
        "{what} {s:?} has a control character"
    );
}

/// Resolves `named` as the push handlers do and checks the outcome: a service acted on is in
/// the evaluated scope and path-safe; a refusal is bounded, printable and names a setting.
pub fn check_resolution(named: Named<'_>) {
    let regions = regions();
    let scope = Scope::new(PROJECT, DEFAULT_REGION, &regions)
        .expect("valid settings")
        .with_platforms(&Platform::ALL);
    match scope.resolve(named) {
        Ok(ServiceRef {
            project,
            region,
            name,
            platform,
        }) => {
            assert_eq!(project, PROJECT, "acted on another project");
            if platform.is_regional() {
                assert!(
                    regions.iter().any(|r| region == r.as_str()),
                    "acted on region {region:?}"
                );
            } else {
                assert_eq!(region.as_str(), GLOBAL, "a {platform} target has no region");
            }
            for part in [project.as_str(), region.as_str(), name.as_str()] {
                assert!(path_safe(part), "{part:?} reaches a URL path");
                assert_loggable("service part", part, 63);
            }
        }
        Err(refusal) => {
            assert!(!refusal.setting.is_empty());
            assert_loggable("refused service", &refusal.service, 63 * 3 + 2);
            assert_loggable("refusal", &refusal.why, 1024);
        }
    }
}
