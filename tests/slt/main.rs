//! Runs every `.slt` file under tests/slt/ against the sample lake, each in a fresh session with two target
//! partitions, under a Tokio runtime (which the sqllogictest crate's own harness lacks).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use libtest_mimic::{Arguments, Failed, Trial};
use sqllogictest::{DBOutput, DefaultColumnType};
use trailsql::session::Session;
use trailsql::session::{self, SessionOptions};
use trailsql_lake::storage::{Location, Storage, open_lake};

struct Db {
    session: Arc<Session>,
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

/// Cells that do not change between runs: the lake's place and the run IDs in file names are masked.
fn stable(cell: String) -> String {
    let lake = sample_lake().display().to_string();
    let mut s = cell.replace(lake.trim_start_matches('/'), "LAKE");
    while let Some(i) = s.find("part-20") {
        let end = s[i..].find(".parquet").map_or(s.len(), |e| i + e);
        s.replace_range(i..end, "part-RUN");
    }
    // Plans end with a line break; a trailing blank line would be an invisible part of the expected text.
    s.trim_end().to_string()
}

fn cells(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, DbError> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let flat = trailsql::print::flatten(b).map_err(|e| DbError(e.to_string()))?;
        let fmts: Vec<ArrayFormatter> = flat
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()
            .map_err(|e| DbError(e.to_string()))?;
        for r in 0..flat.num_rows() {
            let row: Vec<String> = fmts
                .iter()
                .map(|f| {
                    let v = stable(f.value(r).to_string());
                    if v.is_empty() { "(empty)".to_string() } else { v }
                })
                .collect();
            // A cell over several lines (a plan) continues on rows of its own, as the expected text shows it.
            let mut first: Vec<String> = Vec::new();
            let mut more: Vec<Vec<String>> = Vec::new();
            for cell in row {
                let mut lines = cell.lines();
                first.push(lines.next().unwrap_or_default().to_string());
                more.extend(lines.map(|l| vec![l.to_string()]));
            }
            rows.push(first);
            rows.extend(more);
        }
    }
    Ok(rows)
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let out = trailsql::exec::execute(&self.session, sql).await.map_err(|e| DbError(e.to_string()))?;
        let columns = out.schema.fields().len();
        let batches = out.collect().await.map_err(|e| DbError(e.to_string()))?;
        if columns == 0 {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; columns], rows: cells(&batches)? })
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// The sample-data converted once for all files.
fn sample_lake() -> &'static Path {
    static LAKE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &LAKE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let lake = dir.path().join("lake");
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let sources = vec![root.join("sample-data").to_string_lossy().into_owned()];
            let opts = trailsql_lake::convert::ConvertOptions { sources, ..Default::default() };
            let rt = tokio::runtime::Runtime::new().unwrap();
            let summary = rt.block_on(async {
                let storage = Storage::default();
                let open = open_lake(&Location::Local(lake.clone()), true, &storage).await.unwrap();
                trailsql_lake::convert::convert(&open.lake, &opts, &storage).await.unwrap()
            });
            assert!(summary.ok(), "{}", summary.render());
            (dir, lake)
        })
        .1
}

fn run_file(path: PathBuf) -> Result<(), Failed> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // Converted outside the runtime below: the conversion runs a runtime of its own.
    let sample = Location::Local(sample_lake().to_path_buf());
    rt.block_on(async move {
        let storage = Arc::new(Storage::default());
        let lake = open_lake(&sample, false, &storage).await.map_err(|e| e.to_string())?;
        let s =
            session::build(&lake, &SessionOptions { target_partitions: Some(2), ..SessionOptions::default() }, storage)
                .await
                .map_err(|e| e.to_string())?;
        let session = Arc::new(s);
        let mut runner = sqllogictest::Runner::new(move || {
            let session = session.clone();
            async move { Ok(Db { session }) }
        });
        if std::env::var_os("TRAILSQL_SLT_COMPLETE").is_some() {
            // Rewrites the expected results: review the diff before committing it.
            return runner
                .update_test_file(
                    &path,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .map_err(|e| Failed::from(e.to_string()));
        }
        runner.run_file_async(&path).await.map_err(|e| Failed::from(e.display(true).to_string()))
    })
}

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    let trials = files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            Trial::test(name, move || run_file(p))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
