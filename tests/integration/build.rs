//! `cargo run` then `cargo test` must share one build of DataFusion: the test tools may not turn on features of a
//! crate that the normal build leaves off, or cargo compiles that crate and everything above it a second time.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::root;

/// The features of every package, as `cargo tree` resolves them for a build (`no_dev`) or for the tests.
fn resolved_features(no_dev: bool) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(root()).args(["tree", "--workspace", "--offline", "--prefix", "none", "-f", "{p} {f}"]);
    if no_dev {
        cmd.args(["-e", "no-dev"]);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `name vX.Y.Z [(path)] [features] [(*)]`
        let tokens: Vec<&str> = line.split(' ').filter(|t| !t.is_empty() && !t.starts_with('(')).collect();
        if tokens.len() < 2 {
            continue;
        }
        let features = map.entry(format!("{} {}", tokens[0], tokens[1])).or_default();
        if let Some(list) = tokens.get(2) {
            features.extend(list.split(',').filter(|f| !f.is_empty()).map(String::from));
        }
    }
    map
}

#[test]
fn tests_turn_on_no_feature_the_build_leaves_off() {
    let build = resolved_features(true);
    let test = resolved_features(false);
    let mut differ = Vec::new();
    for (package, features) in &build {
        let with_tests = &test[package];
        if with_tests != features {
            let extra: Vec<&String> = with_tests.difference(features).collect();
            differ.push(format!("{package}: the tests add {extra:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "`cargo test` would rebuild these crates (and DataFusion above them) with other features than `cargo run`; \
         pin the features in Cargo.toml's [dependencies], as done for the others:\n{}",
        differ.join("\n")
    );
}

/// The lake crate is for converters deployed on their own: it must build without a query engine.
#[test]
fn the_lake_crate_depends_on_no_query_engine() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(root())
        .args(["tree", "-p", "trailsql-lake", "--offline", "-e", "normal,build", "--prefix", "none", "-f", "{p}"])
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.lines().any(|l| l.starts_with("parquet ")), "the tree lists the lake's dependencies:\n{tree}");
    let engines: Vec<&str> =
        tree.lines().filter(|l| l.starts_with("datafusion") || l.starts_with("ballista")).collect();
    assert!(engines.is_empty(), "trailsql-lake depends on {engines:?}");
}
