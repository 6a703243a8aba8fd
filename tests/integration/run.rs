//! `trailsql run` and the saved queries: formats, parameters, exit codes, errors, and each saved query's rows on
//! sample-data.

use std::path::PathBuf;

use crate::common::*;

fn expected_dir() -> PathBuf {
    root().join("tests/expected/queries")
}

/// Parameters some saved queries need on the sample.
fn params_for(name: &str) -> Vec<String> {
    match name {
        "access_key_activity" => vec!["-p".into(), "key=ASIAQROOTCONSOLE0044".into()],
        _ => vec![],
    }
}

#[test]
fn every_saved_query_returns_its_expected_rows_on_sample_data() {
    let lake = sample_lake();
    let update = std::env::var_os("TRAILSQL_UPDATE_EXPECTED").is_some();
    let names: Vec<String> = trailsql::queries::builtin().into_iter().map(|q| q.name).collect();
    assert!(names.len() >= 10);
    for name in names {
        let out = run(bin().args(["run", &name, "--format", "csv", "--lake"]).arg(lake).args(params_for(&name)));
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let got = stdout(&out);
        let file = expected_dir().join(format!("{name}.csv"));
        if update {
            std::fs::create_dir_all(expected_dir()).unwrap();
            std::fs::write(&file, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("{} is missing", file.display()));
        assert_eq!(got, want, "{name}: rows differ from {}", file.display());
        assert!(got.lines().count() > 1, "{name} finds something in the sample");
    }
}

#[test]
fn parameters_are_bound_and_checked() {
    let lake = sample_lake();
    let missing = run(bin().args(["run", "access_key_activity", "--lake"]).arg(lake));
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("missing parameter $key: give --param key=VALUE"), "{}", stderr(&missing));
    let unknown = run(bin().args(["run", "failed_assume_root", "-p", "nope=1", "--lake"]).arg(lake));
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("no parameter nope"), "{}", stderr(&unknown));
    // A value is data, never SQL: a quote in it cannot change the query.
    let injection = run(bin()
        .args(["run", "access_key_activity", "--format", "csv", "-p", "key=x' OR '1'='1", "--lake"])
        .arg(lake));
    assert!(injection.status.success(), "{}", stderr(&injection));
    assert_eq!(stdout(&injection).lines().count(), 1, "only the header: {}", stdout(&injection));
    let window = run(bin().args(["run", "privileged_sessions_window", "--format", "csv", "--lake"]).arg(lake).args([
        "-p",
        "from=2024-10-26T00:00:00Z",
        "-p",
        "to=2024-10-26T23:59:59Z",
    ]));
    let rows = stdout(&window);
    assert_eq!(rows.lines().count(), 4, "{rows}");
    assert!(rows.lines().skip(1).all(|l| l.starts_with("2024-10-26T14:00:00Z")), "{rows}");
}

#[test]
fn files_with_several_statements_errors_name_the_line_and_fail_on_rows_gates() {
    let lake = sample_lake();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hunt.sql");
    std::fs::write(
        &file,
        "-- name: hunt\n-- description: a test\n-- param: account = 444444444444 -- the account\n\
         CREATE VIEW mine AS SELECT * FROM cloudtrail WHERE recipientaccountid = '444444444444';\n\
         SELECT count(*) AS n FROM mine WHERE recipientaccountid = $account;\n",
    )
    .unwrap();
    let ok = run(bin().args(["run", "--format", "csv", "--fail-on-rows", "--lake"]).arg(lake).arg(&file));
    assert_eq!(ok.status.code(), Some(1), "rows came back: {}", stderr(&ok));
    assert!(stdout(&ok).starts_with("n\n"), "{}", stdout(&ok));
    let none = run(bin().args(["run", "failed_assume_root", "--fail-on-rows", "--lake"]).arg(lake).args(["-p", "x=1"]));
    assert_eq!(none.status.code(), Some(2));
    let clean = dir.path().join("clean.sql");
    std::fs::write(&clean, "SELECT * FROM cloudtrail WHERE eventname = 'NoSuchEvent';").unwrap();
    let gate = run(bin().args(["run", "--fail-on-rows", "--lake"]).arg(lake).arg(&clean));
    assert_eq!(gate.status.code(), Some(0), "{}", stderr(&gate));

    let bad = dir.path().join("bad.sql");
    std::fs::write(&bad, "SELECT 1;\n\n-- the next one is broken\nSELECT eventname\nFROM no_such_table;\n").unwrap();
    let err = run(bin().args(["run", "--lake"]).arg(lake).arg(&bad));
    assert_eq!(err.status.code(), Some(2));
    assert!(stderr(&err).contains("bad.sql, line 4:"), "{}", stderr(&err));
    assert!(stderr(&err).contains("no_such_table"), "{}", stderr(&err));
    let typo = run(bin().args(["run", "no_such_query", "--lake"]).arg(lake));
    assert_eq!(typo.status.code(), Some(2));
    assert!(stderr(&typo).contains("no such file or saved query"), "{}", stderr(&typo));
}

/// SQL files as editors on Windows save them: a UTF-8 byte-order mark and CRLF line ends, or UTF-16; a file that is
/// not text is a usage error that names it.
#[test]
fn sql_files_with_a_byte_order_mark_or_in_utf16_run() {
    let lake = sample_lake();
    let dir = tempfile::tempdir().unwrap();
    let sql = "SELECT count(*) AS n FROM cloudtrail;\r\nSELECT 2 AS two;\r\n";
    let bom = dir.path().join("bom.sql");
    std::fs::write(&bom, [&b"\xEF\xBB\xBF"[..], sql.as_bytes()].concat()).unwrap();
    let wide = dir.path().join("wide.sql");
    std::fs::write(
        &wide,
        [0xFF, 0xFE].into_iter().chain(sql.encode_utf16().flat_map(u16::to_le_bytes)).collect::<Vec<u8>>(),
    )
    .unwrap();
    let want = format!("n\n{}\ntwo\n2\n", count(lake, "SELECT count(*) FROM cloudtrail"));
    for file in [&bom, &wide] {
        let out = run(bin().args(["run", "--format", "csv", "--lake"]).arg(lake).arg(file));
        assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
        assert_eq!(stdout(&out).replace("\n\n", "\n"), want, "{}", file.display());
    }
    // The REPL reading a file from its standard input.
    let piped = run_with_stdin(bin().args(["--lake"]).arg(lake), &std::fs::read(&bom).unwrap());
    assert!(piped.status.success() && stdout(&piped).contains("| two |"), "{}", stderr(&piped));
    let binary = dir.path().join("binary.sql");
    std::fs::write(&binary, b"SELECT \xC3\x28;").unwrap();
    let out = run(bin().args(["run", "--lake"]).arg(lake).arg(&binary));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("binary.sql: not UTF-8 text (invalid utf-8 sequence"), "{}", stderr(&out));
}

#[test]
fn output_formats_and_files() {
    let lake = sample_lake();
    let dir = tempfile::tempdir().unwrap();
    let q = |fmt: &str| {
        let o = run(bin().args(["run", "failed_assume_root", "--format", fmt, "--lake"]).arg(lake));
        assert!(o.status.success(), "{fmt}: {}", stderr(&o));
        stdout(&o)
    };
    assert!(q("tsv").starts_with("event_time\tcaller_arn\t"));
    let line: serde_json::Value = serde_json::from_str(q("ndjson").lines().next().unwrap()).unwrap();
    assert_eq!(line["error_code"], "AccessDenied");
    let json: serde_json::Value = serde_json::from_str(&q("json")).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    // An empty result is one JSON document too, and a CSV header.
    for (format, want) in [("json", "[]\n"), ("csv", "n\n")] {
        let empty = run(bin()
            .args(["query", "--format", format, "--lake"])
            .arg(lake)
            .arg("SELECT count(*) AS n FROM cloudtrail HAVING false"));
        assert_eq!(stdout(&empty), want, "{format}: {}", stderr(&empty));
    }
    let pq = dir.path().join("out.parquet");
    let o =
        run(bin().args(["run", "failed_assume_root", "--format", "parquet", "-o"]).arg(&pq).arg("--lake").arg(lake));
    assert!(o.status.success(), "{}", stderr(&o));
    let reader =
        datafusion::parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&pq).unwrap()).unwrap();
    use datafusion::parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().file_metadata().num_rows(), 1);
    let no_file = run(bin().args(["run", "failed_assume_root", "--format", "parquet", "--lake"]).arg(lake));
    assert_eq!(no_file.status.code(), Some(2));
    assert!(stderr(&no_file).contains("-o FILE"));
    let list = run(bin().args(["queries", "--format", "csv"]));
    assert!(stdout(&list).contains("access_key_activity,\"Everything one access key did"), "{}", stdout(&list));
}

/// Results stream: the first rows of a result far too large to hold (ten billion rows) are printed while it is
/// computed, and a reader that stops early (`| head -1`) ends the run cleanly. Collecting the result first, as
/// before, never printed anything here.
#[test]
fn results_stream_to_a_reader_that_stops_early() {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = bin()
        .args(["query", "--format", "ndjson", "--lake"])
        .arg(sample_lake())
        .arg("SELECT value FROM generate_series(1, 10000000000)")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first.trim(), r#"{"value":1}"#);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the run went on after its reader had stopped");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
}

/// A query over an empty lake answers with no rows, as it should, and says on standard error that the lake holds
/// nothing, so that "no privileged sessions" and "no logs converted yet" do not look alike.
#[test]
fn an_empty_lake_is_named_when_nothing_is_found() {
    let empty = tempfile::tempdir().unwrap();
    let note = "holds no events; fill it with `trailsql convert";
    let q =
        run(bin().args(["query", "--format", "csv", "SELECT * FROM privileged_sessions", "--lake"]).arg(empty.path()));
    assert!(q.status.success(), "{}", stderr(&q));
    assert_eq!(stdout(&q).lines().count(), 1, "the header alone: {}", stdout(&q));
    assert!(stderr(&q).contains(note), "{}", stderr(&q));
    let gate = run(bin().args(["run", "sessions_without_activity", "--fail-on-rows", "--lake"]).arg(empty.path()));
    assert_eq!(gate.status.code(), Some(0), "{}", stderr(&gate));
    assert!(stderr(&gate).contains(note), "{}", stderr(&gate));
    let quiet = run(bin().args(["query", "-q", "SELECT * FROM cloudtrail", "--lake"]).arg(empty.path()));
    assert!(quiet.status.success() && stderr(&quiet).is_empty(), "{}", stderr(&quiet));
    // A lake with events says nothing when a query finds no rows there.
    let none = run(bin().args(["query", "SELECT * FROM cloudtrail WHERE false", "--lake"]).arg(sample_lake()));
    assert!(none.status.success() && stderr(&none).is_empty(), "{}", stderr(&none));
}

/// A command that runs once keeps no Parquet footers (their upkeep cost a third of a GROUP BY over a wide lake);
/// the sessions that serve query after query (the REPL, Ballista's processes) keep them for the next query.
#[test]
fn only_lasting_sessions_keep_parquet_footers() {
    use trailsql::session::{LASTING_METADATA_CACHE, SessionOptions};

    // The lake is converted (in a runtime of its own) before any session's runtime starts.
    let lake = sample_lake();
    for (metadata_cache, kept) in [(0, false), (LASTING_METADATA_CACHE, true)] {
        let footers = rt().block_on(async {
            let s = session_over(lake, &SessionOptions { metadata_cache, ..SessionOptions::default() }).await;
            let sql = "SELECT count(*) FROM cloudtrail WHERE errorcode IS NOT NULL";
            trailsql::exec::execute(&s, sql).await.unwrap().collect().await.unwrap();
            s.ctx.runtime_env().cache_manager.get_file_metadata_cache().len()
        });
        assert_eq!(footers > 0, kept, "cache of {metadata_cache} bytes holds {footers} footers");
    }
}

/// The physical plan of `sql` in `s`, as EXPLAIN shows it, and its rows as a table.
async fn plan_and_rows(s: &trailsql::session::Session, sql: &str) -> (String, String) {
    let plan = s.ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
    let shown = datafusion::physical_plan::displayable(plan.as_ref()).indent(true).to_string();
    let rows = trailsql::exec::execute(s, sql).await.unwrap().collect().await.unwrap();
    (shown, datafusion::arrow::util::pretty::pretty_format_batches(&rows).unwrap().to_string())
}

/// Joins hand no dynamic filter to the lake's scan: planned again for every file opened, it was a quarter of
/// privileged_sessions' CPU on a lake of 2,700 files and pruned nothing. `SET` brings it back, with the same rows.
#[test]
fn joins_give_the_lake_scan_no_dynamic_filter_unless_asked() {
    use trailsql::session::SessionOptions;

    let lake = sample_lake();
    rt().block_on(async {
        let s = session_over(lake, &SessionOptions::default()).await;
        let sql = "SELECT * FROM privileged_sessions ORDER BY action_event_id";
        let mut seen = Vec::new();
        for pushdown in [false, true] {
            if pushdown {
                let set = "SET datafusion.optimizer.enable_join_dynamic_filter_pushdown = true";
                trailsql::exec::execute(&s, set).await.unwrap().collect().await.unwrap();
            }
            let (shown, rows) = plan_and_rows(&s, sql).await;
            assert_eq!(shown.contains("DynamicFilter"), pushdown, "{shown}");
            seen.push(rows);
        }
        assert!(seen[0].lines().count() > 4, "the sample data has privileged sessions: {}", seen[0]);
        assert_eq!(seen[0], seen[1]);
    });
}

/// Filters go into the Parquet decoder unless the session says otherwise (`trailsql sigma`'s does), with the same
/// rows either way.
#[test]
fn filters_are_pushed_into_the_parquet_scan_unless_the_session_says_not() {
    use trailsql::session::SessionOptions;

    let lake = sample_lake();
    rt().block_on(async {
        let sql = "SELECT eventid, eventname FROM cloudtrail WHERE lower(eventname) IN ('assumeroot', 'consolelogin') \
                   ORDER BY eventid";
        let mut seen = Vec::new();
        for no_filter_pushdown in [false, true] {
            let s = session_over(lake, &SessionOptions { no_filter_pushdown, ..SessionOptions::default() }).await;
            let (shown, rows) = plan_and_rows(&s, sql).await;
            assert_eq!(shown.contains("FilterExec"), no_filter_pushdown, "{shown}");
            seen.push(rows);
        }
        assert!(seen[0].lines().count() > 4, "the sample data has such events: {}", seen[0]);
        assert_eq!(seen[0], seen[1]);
    });
}

/// `privileged_sessions` gives exactly the sessions the generator wrote into a corpus of several accounts, days and
/// sessions a day: every action taken with an AssumeRoot's credentials, paired with that AssumeRoot, and nothing else.
#[test]
fn privileged_sessions_are_the_generators_own_record() {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let spec = trailsql_corpus::CorpusSpec {
        accounts: 5,
        regions: 2,
        days: 3,
        files_per_day: 2,
        events_per_file: 20,
        sessions_per_day: 2,
        seed: 11,
    };
    let written = trailsql_corpus::write_corpus(&src, &spec).unwrap();
    assert!(written.session_actions.len() >= 4 * 3 * 2, "a session has one action or more");
    let summary = convert_lib(&[&src], &lake);
    assert!(summary.ok(), "{}", summary.render());
    let mut found = Vec::new();
    for b in query(&lake, "SELECT assume_root_event_id, action_event_id FROM privileged_sessions") {
        let (s, a) = (cast(b.column(0), &DataType::Utf8).unwrap(), cast(b.column(1), &DataType::Utf8).unwrap());
        let (s, a) = (s.as_string::<i32>(), a.as_string::<i32>());
        found.extend((0..b.num_rows()).map(|i| (s.value(i).to_string(), a.value(i).to_string())));
    }
    found.sort();
    assert_eq!(found, written.session_actions);
}

/// A lake's files are small (a file per account, Region and day), and the scan gives each file's rows as a batch
/// of their own: the operators above the scan get them put together to the session's batch size, in every kind of
/// session, and a LIMIT still stops the scan as early (nothing gathers rows past it).
#[test]
fn the_operators_above_the_lake_scan_get_full_batches() {
    use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
    use trailsql::session::SessionOptions;

    /// (batches the scans gave, batches their parents got) over the executed plan.
    fn batches(plan: &dyn ExecutionPlan) -> (usize, usize) {
        let output = |p: &dyn ExecutionPlan| {
            let metrics = p.metrics().unwrap_or_default();
            metrics.iter().filter(|m| m.value().name() == "output_batches").map(|m| m.value().as_usize()).sum::<usize>()
        };
        let mut seen = (0, 0);
        if plan.name() == "CoalesceBatchesExec" {
            seen = (output(plan.children()[0].as_ref()), output(plan));
        }
        plan.children().iter().map(|c| batches(c.as_ref())).fold(seen, |a, b| (a.0 + b.0, a.1 + b.1))
    }

    let lake = sample_lake();
    rt().block_on(async {
        for no_filter_pushdown in [false, true] {
            let opts = SessionOptions { no_filter_pushdown, target_partitions: Some(2), ..SessionOptions::default() };
            let s = session_over(lake, &opts).await;
            let sql = "SELECT eventname, count(*) FROM cloudtrail WHERE eventname <> 'x' GROUP BY eventname";
            let plan = s.ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
            let shown = displayable(plan.as_ref()).indent(true).to_string();
            let lines: Vec<&str> = shown.lines().collect();
            for (i, _) in lines.iter().enumerate().filter(|(_, l)| l.contains("DataSourceExec")) {
                assert!(lines[i - 1].contains("CoalesceBatchesExec: target_batch_size=8192"), "{shown}");
            }
            collect(plan.clone(), s.ctx.task_ctx()).await.unwrap();
            let (scanned, coalesced) = batches(plan.as_ref());
            assert!(scanned >= 8, "a batch per file of the sample lake (8 files): {scanned}");
            assert!(coalesced <= 2, "a batch per partition: {coalesced}");

            let sql = "SELECT eventid FROM cloudtrail WHERE eventname <> 'x' LIMIT 3";
            let (shown, rows) = plan_and_rows(&s, sql).await;
            let coalesced: Vec<&str> = shown.lines().filter(|l| l.contains("CoalesceBatchesExec")).collect();
            assert!(coalesced.iter().all(|l| l.ends_with("fetch=3")), "{shown}");
            assert_eq!(rows.lines().count(), 3 + 4, "{rows}");
        }
    });
}

/// Past `--memory-limit`, a sort spills to the temporary directory and gives the same rows; a join, which cannot
/// spill, fails with the error and what to do about it, in `query` and in the REPL.
#[test]
fn queries_spill_or_fail_clearly_past_the_memory_limit() {
    let lake = sample_lake();
    let tmp = tempfile::tempdir().unwrap();
    // 6,000,000 rows of two 8-byte columns: 96 MB to sort in a pool of 48 MiB.
    let sorted = "SELECT value, value * 7919 % 1000003 AS k FROM range(6000000) ORDER BY k, value";
    let spilled = run(bin()
        .args(["query", "--memory-limit", "48MiB", "--format", "csv", "--lake"])
        .arg(lake)
        .arg(format!("EXPLAIN ANALYZE {sorted}"))
        .env("TMPDIR", tmp.path()));
    assert!(spilled.status.success(), "{}", stderr(&spilled));
    let spills = |plan: &str| -> u64 {
        plan.split("spill_count=")
            .skip(1)
            .map(|s| s.split(|c: char| !c.is_ascii_digit()).next().unwrap())
            .map(|n| n.parse::<u64>().unwrap())
            .sum()
    };
    assert!(spills(&stdout(&spilled)) > 0, "the sort spilled: {}", stdout(&spilled));
    let unlimited =
        run(bin().args(["query", "--format", "csv", "--lake"]).arg(lake).arg(format!("EXPLAIN ANALYZE {sorted}")));
    assert_eq!(spills(&stdout(&unlimited)), 0, "by default it fits: {}", stdout(&unlimited));
    let no_pool = run(bin()
        .args(["query", "--memory-limit", "0", "--format", "csv", "--lake"])
        .arg(lake)
        .arg(format!("EXPLAIN ANALYZE {sorted}")));
    assert!(no_pool.status.success(), "0 is no limit, not no memory: {}", stderr(&no_pool));
    assert_eq!(spills(&stdout(&no_pool)), 0, "{}", stdout(&no_pool));

    // The rows are those of a sort in memory: in order, every row once.
    let rows = run(bin()
        .args(["query", "--memory-limit", "48MiB", "--format", "csv", "--lake"])
        .arg(lake)
        .arg(sorted)
        .env("TMPDIR", tmp.path()));
    assert!(rows.status.success(), "{}", stderr(&rows));
    let mut previous = (i64::MIN, i64::MIN);
    let mut n = 0i64;
    let mut total = 0i64;
    for line in stdout(&rows).lines().skip(1) {
        let (v, k) = line.split_once(',').unwrap();
        let row = (k.parse::<i64>().unwrap(), v.parse::<i64>().unwrap());
        assert!(row > previous, "{row:?} after {previous:?}");
        previous = row;
        n += 1;
        total += row.1;
    }
    assert_eq!((n, total), (6_000_000, 6_000_000 * 5_999_999 / 2));

    let join = "SELECT count(*) FROM range(4000000) a JOIN range(4000000) b ON a.value = b.value";
    let failed = run(bin().args(["query", "--memory-limit", "16MiB", "--lake"]).arg(lake).arg(join));
    assert_eq!(failed.status.code(), Some(2), "{}", stderr(&failed));
    let err = stderr(&failed);
    assert!(err.contains("Resources exhausted") && err.contains("raise --memory-limit"), "{err}");
    let repl =
        run_with_stdin(bin().args(["--memory-limit", "16MiB", "--lake"]).arg(lake), format!("{join};\n").as_bytes());
    assert!(stderr(&repl).contains("raise --memory-limit"), "{}", stderr(&repl));
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none(), "spill files are removed");
}
