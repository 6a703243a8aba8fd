//! Embeds the SQL of the views (src/views/*.sql) and the saved queries (queries/*.sql) at build time, so that the
//! binary carries them and users can still read them in the repository.

use std::fmt::Write;
use std::path::Path;

fn embed(dir: &str, out: &mut String, name: &str) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "sql")).collect()
        })
        .unwrap_or_default();
    files.sort();
    writeln!(out, "pub const {name}: &[(&str, &str)] = &[").unwrap();
    for f in &files {
        let stem = f.file_stem().unwrap().to_string_lossy();
        // Relative to the manifest directory as the crate sees it when it compiles, not as this script saw it:
        // a shared target directory may reuse this output for a checkout elsewhere.
        let rel = f.to_string_lossy().replace('\\', "/");
        writeln!(out, "    ({stem:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{rel}\"))),").unwrap();
    }
    writeln!(out, "];").unwrap();
    println!("cargo:rerun-if-changed={dir}");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
}

fn main() {
    let mut out = String::new();
    embed("src/views", &mut out, "VIEWS");
    embed("queries", &mut out, "QUERIES");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(dest, out).unwrap();
}
