//! Tells `fixture!` where the repository's `tests/fixtures/` folder is.
//!
//! `fixture!` expands inside the calling crate (cutover's unit tests, its integration tests, the
//! lab, the fuzz targets), where `CARGO_MANIFEST_DIR` names that crate's folder, not this one's.
//! So the folder is resolved here, once, against this crate's manifest (`../tests/fixtures/`),
//! and written as a string literal that the macro pastes into `include_bytes!`.

use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("../tests/fixtures");
    let dir = dir
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let literal = format!("{:?}", format!("{}/", dir.display()));
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let code = format!(
        "/// `tests/fixtures/` of the repository, with a trailing slash.\n\
         #[doc(hidden)]\n\
         #[macro_export]\n\
         macro_rules! __fixtures_dir {{\n    () => {{\n        {literal}\n    }};\n}}\n"
    );
    std::fs::write(Path::new(&out).join("fixtures_dir.rs"), code).expect("write OUT_DIR");
}
