//! Helpers shared by the integration tests: running the binary, temporary lakes, reading a lake back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use datafusion::arrow::array::RecordBatch;
use trailsql::session::{self, SessionOptions};
use trailsql_lake::convert::{self, ConvertOptions, Summary};
use trailsql_lake::storage::{Location, Storage, open_lake};

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trailsql"));
    c.env_remove("TRAILSQL_LAKE").env("NO_COLOR", "1");
    c
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample_data() -> PathBuf {
    root().join("sample-data")
}

/// The shared folder of real CloudTrail data: `TRAILSQL_REALDATA`, else `../shared/realdata` beside the
/// repository. `None`, with a message saying what is skipped and how to run it, when neither exists (that folder is
/// not part of the repository and must not be copied into it).
pub fn realdata() -> Option<PathBuf> {
    let candidates =
        [std::env::var_os("TRAILSQL_REALDATA").map(PathBuf::from), Some(root().join("../shared/realdata"))];
    let found = candidates.into_iter().flatten().find(|p| p.is_dir());
    if found.is_none() {
        eprintln!(
            "SKIPPED: the real-data conformance test needs ../shared/realdata beside the repository, or \
             TRAILSQL_REALDATA=/path/to/realdata"
        );
    }
    found
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the binary runs")
}

/// Runs the binary with `input` on its standard input.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Converts with the library, as `trailsql convert` does.
pub fn convert_lib(sources: &[&Path], lake: &Path) -> Summary {
    let opts = ConvertOptions {
        sources: sources.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
        ..ConvertOptions::default()
    };
    rt().block_on(async {
        let storage = Storage::default();
        let lake = open_lake(&Location::Local(lake.to_path_buf()), true, &storage).await.unwrap();
        convert::convert(&lake.lake, &opts, &storage).await.unwrap()
    })
}

/// A library session over a local lake, as the commands build it.
pub async fn session_over(lake: &Path, opts: &SessionOptions) -> session::Session {
    let storage = std::sync::Arc::new(Storage::default());
    let lake = open_lake(&Location::Local(lake.to_path_buf()), false, &storage).await.unwrap();
    session::build(&lake, opts, storage).await.unwrap()
}

/// Runs SQL over a lake with the library.
pub fn query(lake: &Path, sql: &str) -> Vec<RecordBatch> {
    rt().block_on(async {
        let s = session_over(lake, &SessionOptions { target_partitions: Some(2), ..SessionOptions::default() }).await;
        trailsql::exec::execute(&s, sql).await.unwrap().collect().await.unwrap()
    })
}

pub fn count(lake: &Path, sql: &str) -> i64 {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    let b = query(lake, sql);
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// Copies a lake, or any directory tree, file by file.
pub fn copy_lake(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Every file under a directory, relative, with size and modification time.
pub fn listing(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let m = e.metadata().unwrap();
            out.push((e.path().strip_prefix(dir).unwrap().display().to_string(), m.len(), m.modified().unwrap()));
        }
    }
    out
}

/// The reject lines of a lake.
pub fn rejects(lake: &Path) -> Vec<serde_json::Value> {
    let dir = lake.join("_rejects");
    let mut out = Vec::new();
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            out.extend(text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()));
        }
    }
    out
}

/// Writes bytes gzipped.
pub fn gz(path: &Path, body: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    trailsql_corpus::write_gz(path, body).unwrap();
}

/// The sample-data converted once for the whole test binary.
pub fn sample_lake() -> &'static Path {
    static LAKE: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &LAKE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let lake = dir.path().join("lake");
            let summary = convert_lib(&[&sample_data()], &lake);
            assert!(summary.ok(), "{}", summary.render());
            (dir, lake)
        })
        .1
}

/// The packages of the tests that run other engines and readers: the DDL on DuckDB and Spark (`engines`), Sigma
/// rules through pySigma's SQLite backend (`sigma`).
const PACKAGES: [&str; 5] =
    ["duckdb==2.0.1", "pyspark==4.3.0", "sqlglot==30.31.0", "pysigma==2.0.1", "pysigma-backend-sqlite==2.1.1"];

/// A Python with the engines' packages: `TRAILSQL_PYTHON`, else a virtual environment in the user's cache, made
/// here when it is missing.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("TRAILSQL_PYTHON") {
                return PathBuf::from(p);
            }
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
            let venv = home.join(".cache/trailsql-venv");
            let py = venv.join("bin/python");
            let ready = |py: &Path| {
                Command::new(py)
                    .args(["-c", "import duckdb, pyspark, sqlglot, sigma.backends.sqlite"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if !ready(&py) {
                let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
                assert!(
                    made.is_ok_and(|s| s.success()),
                    "the engine and Sigma tests need python3 with venv (Debian: apt-get install python3 python3-venv)"
                );
                let pip = Command::new(&py).args(["-m", "pip", "install", "-q"]).args(PACKAGES).status();
                assert!(pip.is_ok_and(|s| s.success()), "pip could not install {PACKAGES:?} into {}", venv.display());
            }
            py
        })
        .clone()
}
