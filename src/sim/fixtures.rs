//! The one way tests reach the payload files the repository carries in `tests/fixtures/`
//! (`payloads/`: real captures from Google, provenance in `payloads/SOURCES.md`; `events/`:
//! constructed examples). Files are embedded at compile time, so a missing one is a build error
//! naming its path, and nothing reads beside the checkout at run time.

/// The bytes of `tests/fixtures/<path>` as a `&'static [u8]`, embedded at compile time; usable
/// in `const` items: `const PUSH: &[u8] = cutover::fixture!("payloads/pubsub-push-1.json");`
/// (`crate::fixture!` inside this crate).
///
/// The path resolves against the calling crate's `CARGO_MANIFEST_DIR`, so only this package's own
/// code (unit tests in `src/`, `tests/`, `src/bin/`) can use it.
#[macro_export]
macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $path
        )) as &'static [u8]
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every vendored capture says where it came from, and SOURCES.md describes no missing file.
    #[test]
    fn every_captured_payload_has_its_provenance_in_sources_md() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/payloads");
        let files: BTreeSet<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != "SOURCES.md")
            .collect();
        let sources = std::str::from_utf8(crate::fixture!("payloads/SOURCES.md")).unwrap();
        let described: BTreeSet<String> = sources
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .map(|h| h.split_whitespace().next().unwrap_or_default().to_string())
            .collect();
        assert!(!files.is_empty(), "no payloads in {dir}");
        assert_eq!(files, described, "files in {dir} vs `### <file>` sections");
    }
}
