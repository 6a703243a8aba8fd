//! The DDL that `trailsql ddl` prints, run on real engines (DuckDB, and Spark 4 with its default ANSI mode): every
//! view holds exactly trailsql's rows, on the sample data and on a generated organization.
//!
//! The engines come from PyPI into a virtual environment under `~/.cache` (made on first use, or given as
//! `TRAILSQL_PYTHON`); Spark needs a Java runtime. When one is missing the test fails and says what to install: it
//! never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use trailsql_corpus::{CorpusSpec, write_corpus};

use crate::common::*;

const VIEWS: [&str; 5] =
    ["assume_root_events", "assume_root_key_use", "privileged_sessions", "privileged_session_summary", "root_activity"];
fn java_present() {
    let java = Command::new("java").arg("-version").output();
    assert!(
        java.is_ok_and(|o| o.status.success()),
        "the Spark test needs a Java runtime (17 or newer): apt-get install openjdk-17-jre-headless"
    );
}

/// A directory with each view's rows from trailsql as Parquet and the DDL of every engine, for one lake.
fn case(dir: &Path, name: &str, lake: &Path) -> PathBuf {
    let case = dir.join(name);
    std::fs::create_dir_all(&case).unwrap();
    for view in VIEWS {
        let out = case.join(format!("{view}.parquet"));
        let o = run(bin()
            .args(["query", "--format", "parquet", "-o"])
            .arg(&out)
            .arg("--lake")
            .arg(lake)
            .arg(format!("SELECT * FROM {view}")));
        assert!(o.status.success(), "{view}: {}", stderr(&o));
    }
    for engine in ["duckdb", "spark", "athena", "trino"] {
        let o = run(bin().args(["ddl", "--engine", engine, "--lake"]).arg(lake));
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::write(case.join(format!("{engine}.sql")), &o.stdout).unwrap();
    }
    case
}

/// The cases, made once: the sample organization, and a generated one with sessions in several accounts.
fn cases() -> &'static [PathBuf] {
    static CASES: OnceLock<(tempfile::TempDir, Vec<PathBuf>)> = OnceLock::new();
    &CASES
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("corpus");
            let spec = CorpusSpec {
                accounts: 4,
                regions: 2,
                days: 3,
                files_per_day: 4,
                events_per_file: 50,
                sessions_per_day: 2,
                seed: 13,
            };
            write_corpus(&src, &spec).unwrap();
            let lake = dir.path().join("corpus-lake");
            let s = convert_lib(&[&src], &lake);
            assert!(s.ok(), "{}", s.render());
            let cases = vec![case(dir.path(), "sample", sample_lake()), case(dir.path(), "generated", &lake)];
            (dir, cases)
        })
        .1
}

fn compare(engine: &str) -> String {
    let out = Command::new(python())
        .arg(root().join("tests/engines/compare.py"))
        .arg(engine)
        .args(cases())
        .output()
        .expect("python runs");
    let report = stdout(&out);
    assert!(out.status.success(), "{engine} differs from trailsql:\n{report}\n{}", stderr(&out));
    report
}

fn compare_rows(engine: &str) {
    let report = compare(engine);
    assert_eq!(report.lines().filter(|l| l.contains(": same")).count(), 2 * VIEWS.len(), "{report}");
    // The generated organization has privileged sessions, so the comparison is of rows, not of empty views.
    assert!(!report.contains("generated privileged_sessions: same (trailsql 0 rows"), "{report}");
}

#[test]
fn duckdb_runs_the_ddl_and_every_view_equals_trailsql() {
    compare_rows("duckdb");
}

#[test]
fn spark_runs_the_ddl_in_ansi_mode_and_every_view_equals_trailsql() {
    java_present();
    compare_rows("spark");
}

/// No Trino server can be had here: its views are parsed as Trino SQL (sqlglot), each function they call is checked
/// against Trino's, and Athena's table is parsed as the Hive DDL it is.
#[test]
fn trino_and_athena_ddl_parse_and_call_only_trino_functions() {
    let report = compare("trino");
    assert_eq!(report.lines().filter(|l| l.contains(": parses")).count(), 2 * 2 * VIEWS.len(), "{report}");
}
