//! The one way tests reach the payload files the repository carries in `tests/fixtures/`
//! (`payloads/`: real captures from Google, provenance in `payloads/SOURCES.md`; `events/`:
//! constructed examples). Files are embedded at compile time, so a missing one is a build error
//! naming its path, and nothing reads beside the checkout at run time.

// `__fixtures_dir!`, written by build.rs. (This crate's own tests reach the folder through its
// manifest instead: a macro exported from an `include!` cannot be named by path in its own crate.)
include!(concat!(env!("OUT_DIR"), "/fixtures_dir.rs"));

/// The bytes of `tests/fixtures/<path>` as a `&'static [u8]`, embedded at compile time; usable
/// in `const` items: `const PUSH: &[u8] = cutover_fakes::fixture!("payloads/pubsub-push-1.json");`
///
/// The folder is the repository's, whichever crate calls this (`build.rs` resolves it).
#[macro_export]
macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!($crate::__fixtures_dir!(), $path)) as &'static [u8]
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every vendored capture says where it came from, and SOURCES.md describes no missing file.
    #[test]
    fn every_captured_payload_has_its_provenance_in_sources_md() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/payloads");
        let files: BTreeSet<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != "SOURCES.md")
            .collect();
        let sources = std::fs::read_to_string(format!("{dir}/SOURCES.md")).unwrap();
        let described: BTreeSet<String> = sources
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .map(|h| h.split_whitespace().next().unwrap_or_default().to_string())
            .collect();
        assert!(!files.is_empty(), "no payloads in {dir}");
        assert_eq!(files, described, "files in {dir} vs `### <file>` sections");
    }
}
