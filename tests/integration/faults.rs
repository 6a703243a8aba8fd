//! Faults, concurrency and hostile input (issue 10): every regression here lost, duplicated or leaked something
//! before it was fixed. Each test is named after what it guarantees.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use trailsql_corpus::{CorpusSpec, write_corpus};

use crate::common::*;
use crate::convert::{event, ids, write, zip_file};

const ACCT: &str = "123456789012";

fn convert_cmd(src: &Path, lake: &Path) -> Command {
    let mut c = bin();
    c.args(["convert", "--quiet"]).arg(src).arg("--lake").arg(lake);
    c
}

fn small_corpus(src: &Path, seed: u64) -> usize {
    let spec = CorpusSpec {
        accounts: 2,
        regions: 2,
        days: 2,
        files_per_day: 6,
        events_per_file: 40,
        sessions_per_day: 1,
        seed,
    };
    write_corpus(src, &spec).unwrap().events
}

fn assert_each_event_once(lake: &Path, events: usize) {
    assert_eq!(count(lake, "SELECT count(*) FROM cloudtrail"), events as i64, "rows");
    assert_eq!(count(lake, "SELECT count(DISTINCT eventid) FROM cloudtrail"), events as i64, "distinct event IDs");
}

/// A lock note as an earlier version wrote it, naming a process that is gone.
fn plant_lock_note(lake: &Path, pid: u32) {
    std::fs::create_dir_all(lake).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let note = json!({"host": host, "pid": pid, "run": "20240101T000000Z-dead", "since": "2024-01-01T00:00:00Z"});
    std::fs::write(lake.join("_lock"), note.to_string()).unwrap();
}

// Items 1 and 3: a lock left behind, then two converts at once.
#[test]
fn two_converts_over_a_stale_lock_commit_each_event_once() {
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
        let events = small_corpus(&src, round);
        plant_lock_note(&lake, 4_000_000 + round as u32);
        let a = convert_cmd(&src, &lake).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let b = convert_cmd(&src, &lake).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        for o in [&a, &b] {
            // Each run either converted, or was told another holds the lock: never a failure after a commit.
            let locked = stderr(o).contains("is locked by another convert");
            assert!(o.status.success() || (o.status.code() == Some(2) && locked), "{}\n{}", stdout(o), stderr(o));
        }
        assert!(a.status.success() || b.status.success(), "one of the two converts");
        assert_eq!(std::fs::read_dir(lake.join("_manifest")).unwrap().count(), 1, "one commit");
        assert_each_event_once(&lake, events);
        let again = run(&mut convert_cmd(&src, &lake));
        assert!(stdout(&again).contains("converted 0 files"), "{}", stdout(&again));
        assert_each_event_once(&lake, events);
    }
}

// Item 3: containers run convert as PID 1; a lock that names PID 1 does not block the next run.
#[test]
fn a_lock_note_naming_pid_1_does_not_block_a_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let events = small_corpus(&src, 3);
    plant_lock_note(&lake, 1);
    let out = run(&mut convert_cmd(&src, &lake));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_each_event_once(&lake, events);
    assert!(!lake.join("_lock").exists(), "the run removes its own lock");
}

// Item 2: a writer whose process this machine cannot see (another PID namespace, another host on NFS) holds the
// operating system's lock; its note names a PID that does not exist here. It is never taken for dead.
#[test]
fn a_live_writer_in_another_pid_namespace_keeps_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    small_corpus(&src, 4);
    plant_lock_note(&lake, 4_123_456);
    let staged = lake.join("_staging/20240101T000000Z-live/account_id=111111111111/event_date=2024-10-25");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("part-live.parquet"), b"staged by the live writer").unwrap();
    let held = std::fs::OpenOptions::new().read(true).write(true).open(lake.join("_lock")).unwrap();
    held.try_lock().unwrap();
    let out = run(&mut convert_cmd(&src, &lake));
    assert_eq!(out.status.code(), Some(2), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("is locked by another convert (run 20240101T000000Z-dead"), "{}", stderr(&out));
    assert!(staged.join("part-live.parquet").exists(), "the live writer's staging is untouched");
    drop(held);
    // Once the holder is gone (its lock released by the kernel), the next run takes over.
    let out = run(&mut convert_cmd(&src, &lake));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(!staged.exists(), "the dead run's staging is removed");
}

// The concurrency test of the issue: four converts on one lake per round, one of them over a stale lock note and
// one killed mid-run, for many rounds, over a growing set of sources.
#[test]
fn four_writers_a_stale_lock_and_a_kill_leave_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut sources = Vec::new();
    let mut events = 0;
    for round in 0..6u64 {
        let src = dir.path().join(format!("src{round}"));
        events += small_corpus(&src, 100 + round);
        sources.push(src);
        if round % 2 == 0 {
            plant_lock_note(&lake, 4_100_000 + round as u32);
        }
        let mut children = Vec::new();
        for w in 0..4 {
            let mut c = bin();
            c.args(["convert", "--quiet", "--threads", "1", "--memory-limit", "1MiB", "--lake"]).arg(&lake);
            c.args(&sources).stdout(Stdio::null()).stderr(Stdio::null());
            children.push((w, c.spawn().unwrap()));
        }
        std::thread::sleep(Duration::from_millis(50 + 70 * round));
        let _ = children[(round as usize) % 4].1.kill();
        for (_, mut c) in children {
            c.wait().unwrap();
        }
    }
    let mut last = bin();
    last.args(["convert", "--quiet", "--lake"]).arg(&lake).args(&sources);
    let out = run(&mut last);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_each_event_once(&lake, events);
}

// Item 5: a file that fails part-way contributes nothing, even when pieces of it were handed on before its end.
#[test]
fn a_file_that_fails_after_its_first_pieces_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let records: Vec<_> = (0..3000).map(|i| event(&format!("t-{i:05}"), ACCT, "2024-10-25T10:00:00Z")).collect();
    let mut full = Vec::new();
    {
        let mut e = flate2::write::GzEncoder::new(&mut full, flate2::Compression::default());
        e.write_all(json!({ "Records": records }).to_string().as_bytes()).unwrap();
        e.finish().unwrap();
    }
    write(&src.join("truncated.json.gz"), &full[..full.len() * 3 / 4]);
    write(&src.join("good.json"), event("good-1", ACCT, "2024-10-25T11:00:00Z").to_string().as_bytes());
    let opts = trailsql_lake::convert::ConvertOptions {
        sources: vec![src.display().to_string()],
        piece_bytes: 64 << 10,
        ..Default::default()
    };
    let summary = rt().block_on(async {
        let storage = trailsql_lake::storage::Storage::default();
        let loc = trailsql_lake::storage::Location::Local(lake.clone());
        let lake = trailsql_lake::storage::open_lake(&loc, true, &storage).await.unwrap();
        trailsql_lake::convert::convert(&lake.lake, &opts, &storage).await.unwrap()
    });
    assert_eq!(summary.files_failed.len(), 1, "{}", summary.render());
    assert_eq!(ids(&lake), ["good-1"]);
    assert_eq!(summary.events_written, 1, "{}", summary.render());
}

// Item 6: every record array of a document, and every member of a zip.
#[test]
fn documents_with_two_record_arrays_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let ev = |i: u32| event(&format!("two-{i}"), ACCT, "2024-10-25T10:00:00Z").to_string();
    write(&src.join("twice.json"), format!(r#"{{"Records":[{}],"Records":[{}]}}"#, ev(1), ev(2)).as_bytes());
    let lookup = json!({"CloudTrailEvent": ev(4)}).to_string();
    write(
        &src.join("mixed.json"),
        format!(r#"{{"Records":[{}], "NextToken": "x", "Events":[{lookup}]}}"#, ev(3)).as_bytes(),
    );
    let out = run(&mut convert_cmd(&src, &lake));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(ids(&lake), ["two-1", "two-2", "two-3", "two-4"]);
}

#[test]
fn a_zip_whose_members_share_a_name_is_refused_not_half_read() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    std::fs::create_dir_all(&src).unwrap();
    let path = src.join("dup.zip");
    let ev = |i: u32| event(&format!("zip-{i}"), ACCT, "2024-10-25T10:00:00Z").to_string().into_bytes();
    zip_file(&path, &[("a.json", ev(1)), ("b.json", ev(2))]);
    // The zip writer refuses two members of one name; rename the second in place (same length, CRCs cover data).
    let mut bytes = std::fs::read(&path).unwrap();
    for i in 0..bytes.len() - 6 {
        if &bytes[i..i + 6] == b"b.json" {
            bytes[i] = b'a';
        }
    }
    std::fs::write(&path, bytes).unwrap();
    let out = run(&mut convert_cmd(&src, &lake));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("share a name"), "{}", stdout(&out));
    assert!(ids(&lake).is_empty());
}

// Item 7: same eventID, different content, where the content cannot be hashed as JSON values.
#[test]
fn unhashable_content_under_one_event_id_is_a_conflict_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let base = event("same-id", ACCT, "2024-10-25T10:00:00Z").to_string();
    let with = |payload: &str| base.replacen('{', &format!("{{\"requestParameters\": {payload}, "), 1);
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let lines = [with("1e400"), with("2e400"), with(&deep(200)), with(&deep(201)), with("1e400")];
    write(&src.join("conflicts.ndjson"), lines.join("\n").as_bytes());
    let out = run(&mut convert_cmd(&src, &lake));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail"), 4, "the exact copy is the only duplicate");
    assert!(stdout(&out).contains("duplicates dropped   1"), "{}", stdout(&out));
}

// Item 8: a key given twice puts the event in the partition its column shows.
#[test]
fn a_key_given_twice_places_the_event_where_its_column_says() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let ev = event("twice-keyed", ACCT, "2024-10-25T10:00:00Z").to_string();
    let ev = ev.replacen('{', r#"{"eventTime": "2023-01-01T00:00:00Z", "recipientAccountId": "210987654321", "#, 1);
    write(&src.join("twice.json"), ev.as_bytes());
    let out = run(&mut convert_cmd(&src, &lake));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let disagree = "SELECT count(*) FROM cloudtrail WHERE CAST(eventtime AS DATE) <> event_date \
                    OR recipientaccountid <> account_id";
    assert_eq!(count(&lake, disagree), 0);
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail"), 1);
}

// Item 9: a lone surrogate does not panic a reader, and the value is kept verbatim.
#[test]
fn a_lone_surrogate_is_kept_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let ev = event("surrogate", ACCT, "2024-10-25T10:00:00Z").to_string().replace("aws-cli/2.15.30", r"curl \udfff");
    write(&src.join("a.json"), ev.as_bytes());
    write(&src.join("b.json"), event("other", ACCT, "2024-10-25T10:00:00Z").to_string().as_bytes());
    let out = run(&mut convert_cmd(&src, &lake));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(ids(&lake), ["other", "surrogate"]);
    let kept = "SELECT count(*) FROM cloudtrail WHERE useragent IS NULL AND unmapped LIKE '%curl \\\\udfff%'";
    assert_eq!(count(&lake, kept), 1);
}

// Item 11: what cannot be walked is reported like an unreadable file; the rest converts.
#[test]
fn dangling_symlinks_and_loops_are_reported_and_the_rest_converts() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    write(&src.join("ok.json"), event("walked", ACCT, "2024-10-25T10:00:00Z").to_string().as_bytes());
    std::os::unix::fs::symlink(dir.path().join("nowhere"), src.join("dangling.json")).unwrap();
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::os::unix::fs::symlink(&src, src.join("sub/loop")).unwrap();
    let out = run(&mut convert_cmd(&src, &lake));
    let summary = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{summary}\n{}", stderr(&out));
    assert!(summary.contains("failed:") && summary.contains("dangling.json"), "{summary}");
    assert!(summary.contains("symlink loop"), "{summary}");
    assert_eq!(ids(&lake), ["walked"]);
}

// Item 20: a lake inside a source directory is not read as a source.
#[test]
fn a_lake_inside_its_source_is_not_read_as_input() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let lake = src.join("lake");
    write(&src.join("ok.json"), event("inside", ACCT, "2024-10-25T10:00:00Z").to_string().as_bytes());
    for _ in 0..3 {
        let out = run(&mut convert_cmd(&src, &lake));
        assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("rejected             0"), "{}", stdout(&out));
    }
    assert_eq!(ids(&lake), ["inside"]);
    assert!(!lake.join("_rejects").exists());
}

// Item 21: UTF-16 is reported, not skipped as "not JSON" with exit 0.
#[test]
fn utf16_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let text = event("utf16", ACCT, "2024-10-25T10:00:00Z").to_string();
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    write(&src.join("export.json"), &bytes);
    let out = run(&mut convert_cmd(&src, &lake));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("UTF-16"), "{}", stdout(&out));
}

// Item 16: the limits hold for a zip as a whole, not only member by member.
#[test]
fn zip_members_together_stay_within_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    std::fs::create_dir_all(&src).unwrap();
    let member = |i: u32| {
        let mut e = event(&format!("zip-{i}"), ACCT, "2024-10-25T10:00:00Z");
        e["requestParameters"] = json!({ "pad": "x".repeat(700 << 10) });
        e.to_string().into_bytes()
    };
    zip_file(&src.join("two.zip"), &[("a.json", member(1)), ("b.json", member(2))]);
    let out = run(convert_cmd(&src, &lake).args(["--max-file-size", "1MiB"]));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("inflate past the limit"), "{}", stdout(&out));
}

// Item 12: a file that includes itself stops with an error, not a stack overflow.
#[test]
fn repl_include_of_itself_stops_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("self.sql");
    std::fs::write(&file, format!("SELECT 1 AS one;\n\\i {}\n", file.display())).unwrap();
    let input = format!("\\i {}\nSELECT 'after' AS still;\n", file.display());
    let out = run_with_stdin(bin().args(["repl", "--lake"]).arg(sample_lake()), input.as_bytes());
    assert!(out.status.code().is_some(), "ended by a signal: {:?}", out.status);
    assert!(stderr(&out).contains("include one another more than 16 deep"), "{}", stderr(&out));
    assert!(stdout(&out).contains("after"), "the REPL goes on: {}", stdout(&out));
}

// Item 13: any two views compose in one statement.
#[test]
fn every_pair_of_views_composes_in_one_statement() {
    let views = [
        "assume_root_events",
        "assume_root_key_use",
        "privileged_sessions",
        "privileged_session_summary",
        "root_activity",
    ];
    for a in views {
        for b in views {
            let sql = format!("SELECT (SELECT count(*) FROM {a}) AS a, (SELECT count(*) FROM {b}) AS b");
            let out = run(bin().args(["query", "--format", "csv", "--lake"]).arg(sample_lake()).arg(&sql));
            assert!(out.status.success(), "{sql}: {}", stderr(&out));
        }
    }
}

// Item 17: table output never sends control characters to the terminal; csv keeps the exact value.
#[test]
fn control_characters_are_escaped_in_tables_and_kept_in_csv() {
    let sql = "SELECT 'curl' || chr(27) || ']0;owned' || chr(7) || chr(27) || '[2J' || chr(8238) AS ua";
    let table = run(bin().args(["query", "--lake"]).arg(sample_lake()).arg(sql));
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(!table.stdout.contains(&0x1b) && !table.stdout.contains(&0x07), "{}", stdout(&table));
    assert!(stdout(&table).contains(r"curl\u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}"), "{}", stdout(&table));
    let csv = run(bin().args(["query", "--format", "csv", "--lake"]).arg(sample_lake()).arg(sql));
    assert!(csv.stdout.windows(3).any(|w| w == b"\x1b]0"), "csv keeps the value: {}", stdout(&csv));
}

// Item 18: credentials in an endpoint URL are never printed back.
#[test]
fn credentials_in_the_endpoint_url_are_not_printed() {
    let out = run(bin()
        .env("AWS_ENDPOINT_URL", "http://someone:hunter2-secret@127.0.0.1:9/")
        .env_remove("AWS_ALLOW_HTTP")
        .args(["query", "--lake", "s3://bucket/lake", "SELECT 1"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("http://***@127.0.0.1:9/"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

// Item 19: a closed stdout is a normal end, for every format.
#[test]
fn a_closed_pipe_ends_quietly_for_every_format() {
    for format in ["table", "csv", "tsv", "json", "ndjson"] {
        let mut child = bin()
            .args(["query", "--maxrows", "0", "--format", format, "--lake"])
            .arg(sample_lake())
            .arg("SELECT value, repeat('x', 200) AS pad FROM range(100000)")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{format}: {}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{format}: {}", stderr(&out));
    }
}

/// Every event ID in the data files of a lake held in an object store.
fn store_event_ids(lake: &trailsql_lake::Lake) -> Vec<String> {
    use datafusion::arrow::array::{Array, AsArray};
    rt().block_on(async {
        let mut out = Vec::new();
        for (path, _) in lake.list("").await.unwrap() {
            if path.starts_with('_') || !path.ends_with(".parquet") {
                continue;
            }
            for b in trailsql_lake::format::decode(lake.get(&path).await.unwrap()).unwrap() {
                let ids = b.column_by_name("eventid").unwrap().as_string::<i32>();
                out.extend((0..ids.len()).map(|i| ids.value(i).to_string()));
            }
        }
        out.sort();
        out
    })
}

// Item 4: in an object store, a compaction run killed after its renames, while deleting the files it replaced,
// leaves no staging behind; the next run still finishes it from its commit record.
#[test]
fn an_object_store_compaction_killed_during_its_deletes_is_finished_by_the_next_run() {
    use object_store::ObjectStoreExt;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    let lake = trailsql_lake::Lake::new(store.clone(), "mem://lake");
    let convert = |src: &Path| {
        let opts =
            trailsql_lake::convert::ConvertOptions { sources: vec![src.display().to_string()], ..Default::default() };
        rt().block_on(trailsql_lake::convert::convert(&lake, &opts, &trailsql_lake::storage::Storage::default()))
            .unwrap()
    };
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    for (src, from) in [(&first, 0), (&second, 100)] {
        let lines: Vec<String> =
            (from..from + 50).map(|i| event(&format!("c-{i:03}"), ACCT, "2024-10-25T10:00:00Z").to_string()).collect();
        write(&src.join("events.ndjson"), lines.join("\n").as_bytes());
    }
    convert(&first);
    let before: Vec<(String, bytes::Bytes)> = rt().block_on(async {
        let mut v = Vec::new();
        for (p, _) in lake.list("").await.unwrap() {
            if p.starts_with("account_id=") || p.starts_with("_index/") {
                v.push((p.clone(), lake.get(&p).await.unwrap()));
            }
        }
        v
    });
    let summary = convert(&second);
    assert!(summary.files_compacted >= 2, "{}", summary.render());
    // Undo the deletions of the compaction, as a kill between its renames and its deletes leaves the lake.
    rt().block_on(async {
        for (p, body) in &before {
            store.put(&object_store::path::Path::from(p.as_str()), body.clone().into()).await.unwrap();
        }
    });
    assert_eq!(store_event_ids(&lake).len(), 150, "the replaced files are back: 50 events twice");
    convert(&second);
    let ids = store_event_ids(&lake);
    assert_eq!(ids.len(), 100, "each event once");
    assert_eq!(ids.iter().collect::<std::collections::BTreeSet<_>>().len(), 100);
}

/// A compaction caught between moving its merged file in and deleting the files it merged, as a kill or a slow
/// object store leaves it: readers see each partition once, as before the commit or after it, never both. The
/// next run finishes it.
#[test]
fn a_query_during_a_compaction_sees_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    for (src, from) in [(&first, 0), (&second, 100)] {
        let lines: Vec<String> =
            (from..from + 50).map(|i| event(&format!("c-{i:03}"), ACCT, "2024-10-25T10:00:00Z").to_string()).collect();
        write(&src.join("events.ndjson"), lines.join("\n").as_bytes());
    }
    convert_lib(&[&first], &lake);
    let before: Vec<(std::path::PathBuf, Vec<u8>)> = walkdir::WalkDir::new(&lake)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.is_file() && p.strip_prefix(&lake).unwrap().to_str().unwrap().starts_with("account_id="))
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let summary = convert_lib(&[&second], &lake);
    assert!(summary.files_compacted >= 1, "{}", summary.render());
    let counted = |sql: &str| {
        let out = run(bin().args(["query", "--format", "csv", "--lake"]).arg(&lake).arg(sql));
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).lines().nth(1).unwrap().to_string()
    };
    let all = "SELECT count(*), count(DISTINCT eventid) FROM cloudtrail";
    assert_eq!(counted(all), "100,100");
    // The deletions undone, the record of the commit in `_applying.json`: as the run leaves the lake between them.
    for (path, body) in &before {
        std::fs::write(path, body).unwrap();
    }
    let record = std::fs::read_dir(lake.join("_manifest")).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    std::fs::copy(&record, lake.join("_applying.json")).unwrap();
    assert_eq!(counted(all), "100,100", "after the commit: the merged file, not what it merged");
    // Before the merged file is moved in, the partition is as it was.
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let merged: Vec<&str> = record["added"].as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
    let moved_away = dir.path().join("moved");
    for p in merged.iter().filter(|p| p.ends_with(".parquet")) {
        std::fs::rename(lake.join(p), &moved_away).unwrap();
        assert_eq!(counted(all), "50,50", "before the commit: what it merged, not its other files");
        std::fs::rename(&moved_away, lake.join(p)).unwrap();
    }
    convert_lib(&[&second], &lake);
    assert!(!lake.join("_applying.json").exists(), "the next run finishes the commit");
    assert_eq!(counted(all), "100,100");
}

/// A small deterministic generator (xorshift64*), so that a failing input can be made again from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// JSON text of a value an attacker could put into a field: escapes, controls, surrogates, odd numbers, nesting.
fn hostile_value(rng: &mut Rng) -> String {
    let texts = [
        r#""curl \udfff""#,
        r#""\ud83d\ude00 emoji""#,
        r#""\u001b]0;title\u0007\u001b[2J""#,
        r#""quote \" backslash \\ slash \/""#,
        r#""\u202egnp.exe""#,
        r#""""#,
        r#""a\u0000b""#,
        "1e400",
        "-0",
        "123456789012345678901234567890",
        "true",
        "null",
        "{}",
        "[]",
        r#"{"Records": [1, 2]}"#,
        r#"{"eventTime": "2024-10-25T10:00:00Z"}"#,
    ];
    match rng.below(4) {
        0 => {
            let depth = 1 + rng.below(160);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        }
        1 => format!("\"{}\"", "x".repeat(rng.below(5000))),
        _ => rng.pick(&texts).to_string(),
    }
}

/// An event as text, with hostile members spliced in (some of them keys the schema knows, given twice).
fn hostile_event(rng: &mut Rng, id: &str, day: u32) -> String {
    let mut text = event(id, ACCT, &format!("2024-10-{:02}T{:02}:00:00Z", 10 + day, rng.below(24))).to_string();
    for _ in 0..rng.below(4) {
        let key = rng.pick(&[
            "userAgent",
            "requestParameters",
            "x-vendor",
            "useragent",
            "errorMessage",
            "additionalEventData",
        ]);
        let member = format!("\"{key}\": {}, ", hostile_value(rng));
        text.insert_str(1, &member);
    }
    text
}

/// The events of a file in one of the shapes CloudTrail arrives in.
fn shaped(rng: &mut Rng, events: &[String]) -> String {
    match rng.below(5) {
        0 => format!("{{\"Records\":[{}]}}", events.join(",")),
        1 => format!("[{}]", events.join(",\n")),
        2 => events.join("\n"),
        3 => {
            let wrapped: Vec<String> = events.iter().map(|e| json!({ "CloudTrailEvent": e }).to_string()).collect();
            format!("{{\"Events\":[{}],\"NextToken\":\"t\"}}", wrapped.join(","))
        }
        _ => {
            let half = events.len() / 2;
            format!("{{\"Records\":[{}],\"Records\":[{}]}}", events[..half].join(","), events[half..].join(","))
        }
    }
}

/// Random bytes changed, cut or inserted.
fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(6) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(5) {
            0 => bytes[at] = rng.next() as u8,
            1 => bytes.truncate(at),
            2 => bytes.insert(at, *[b'{', b'[', b'"', b'\\', b',', b'\n', 0xFF, 0xC3].get(rng.below(8)).unwrap()),
            3 => {
                let end = (at + rng.below(64)).min(bytes.len());
                bytes.drain(at..end);
            }
            _ => {
                let piece: Vec<u8> = bytes[at..(at + 200).min(bytes.len())].to_vec();
                bytes.splice(at..at, piece);
            }
        }
    }
    bytes
}

fn convert_summary(src: &Path, lake: &Path) -> trailsql_lake::convert::Summary {
    let opts = trailsql_lake::convert::ConvertOptions {
        sources: vec![src.display().to_string()],
        max_record: 64 << 10,
        ..Default::default()
    };
    rt().block_on(async {
        let storage = trailsql_lake::storage::Storage::default();
        let loc = trailsql_lake::storage::Location::Local(lake.to_path_buf());
        let lake = trailsql_lake::storage::open_lake(&loc, true, &storage).await.unwrap();
        trailsql_lake::convert::convert(&lake.lake, &opts, &storage).await.unwrap()
    })
}

// The property test of the scanner and record path: generated files in every shape, full of hostile values, are
// accounted for exactly (every event a row or a reject); the same files with random bytes changed never panic a
// run, and whatever they give is still accounted for.
#[test]
fn generated_hostile_files_are_accounted_for_and_mutated_ones_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, broken) = (dir.path().join("clean"), dir.path().join("mutated"));
    let mut rng = Rng(0x7472_6169_6c73_716c);
    let mut expected = 0u64;
    for f in 0..240 {
        let n = 1 + rng.below(8);
        let events: Vec<String> =
            (0..n).map(|i| hostile_event(&mut rng, &format!("p-{f:03}-{i}"), (f % 3) as u32)).collect();
        expected += n as u64;
        let body = shaped(&mut rng, &events);
        write(&clean.join(format!("f{f:03}.json")), body.as_bytes());
        let mutated = mutate(&mut rng, body.into_bytes());
        if rng.below(3) == 0 {
            gz(&broken.join(format!("m{f:03}.json.gz")), &mutated);
        } else {
            write(&broken.join(format!("m{f:03}.json")), &mutated);
        }
    }
    let s = convert_summary(&clean, &dir.path().join("lake-clean"));
    assert!(s.ok(), "{}", s.render());
    assert_eq!(s.events_written + s.counts.rejects, expected, "{}", s.render());
    assert_eq!(s.counts.duplicates, 0);
    assert_eq!(count(&dir.path().join("lake-clean"), "SELECT count(*) FROM cloudtrail"), s.events_written as i64);

    let lake = dir.path().join("lake-mutated");
    let s = convert_summary(&broken, &lake);
    assert_eq!(s.counts.events, s.events_written + s.counts.duplicates, "{}", s.render());
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail"), s.events_written as i64);
    let failed = s.files_failed.len() as u64;
    assert_eq!(rejects(&lake).len() as u64, s.counts.rejects + failed, "every reject and failed file has its line");
}

// Item 15: thousands of partitions in one run cost what their rows cost, not a set of column builders each.
#[test]
fn thousands_of_partitions_stay_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let lines: Vec<String> = (0..3000u64)
        .map(|i| event(&format!("acct-{i}"), &format!("{}", 100_000_000_000 + i), "2024-10-25T10:00:00Z").to_string())
        .collect();
    write(&src.join("wide.ndjson"), lines.join("\n").as_bytes());
    let peak = convert_measuring_peak(&src, &lake, "1", "64MiB");
    assert_eq!(count(&lake, "SELECT count(DISTINCT account_id) FROM cloudtrail"), 3000);
    // d5f3256 peaked at 1,170 MB here (a ~370 KB set of column builders per partition); 96b6f7b about 220 MB.
    assert!(peak < (64 << 20) + FIXED_OVERHEAD, "peak memory {} MB for 3,000 one-event partitions", peak >> 20);
}

/// The README's memory promise: peak resident memory at most `--memory-limit` plus this.
const FIXED_OVERHEAD: u64 = 160 << 20;

const ONE_EVENT_FILES: usize = 10_000;

/// Converts `src` into `lake` with `--threads` and `--memory-limit`, which must succeed; gives the peak memory.
fn convert_measuring_peak(src: &Path, lake: &Path, threads: &str, limit: &str) -> u64 {
    let (out, peak) = crate::convert::run_measuring_peak(convert_cmd(src, lake).args([
        "--threads",
        threads,
        "--memory-limit",
        limit,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    peak
}

/// One account's day of generated delivery files in `src`: (files, events).
fn one_day(src: &Path, files_per_day: usize, events_per_file: usize, seed: u64) -> (usize, usize) {
    let spec =
        CorpusSpec { accounts: 1, regions: 1, days: 1, files_per_day, events_per_file, sessions_per_day: 0, seed };
    let written = write_corpus(src, &spec).unwrap();
    (written.files, written.events)
}

// Item 15: thousands of one-event files into one partition (a wide lake's deliveries, each a five-minute file
// holding one event) cost what their rows cost, not a batch's set-up each.
#[test]
fn thousands_of_one_event_files_stay_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let (files, events) = one_day(&src, ONE_EVENT_FILES, 1, 15);
    assert_eq!(files, ONE_EVENT_FILES);
    let peak = convert_measuring_peak(&src, &lake, "2", "64MiB");
    assert_each_event_once(&lake, events);
    // 96b6f7b peaked at 308 MB here (one thread), growing with the number of files; now about 80 MB.
    assert!(peak < (64 << 20) + FIXED_OVERHEAD, "peak memory {} MB for {files} one-event files", peak >> 20);
}

// Item 15: one large file at a small limit: the readers' pieces, the writer's rows, the encoder and the compaction
// of its pieces all fit in the limit, plus the fixed overhead.
#[test]
fn a_large_file_converts_within_a_small_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let (_, events) = one_day(&src, 1, 100_000, 16);
    let peak = convert_measuring_peak(&src, &lake, "1", "16MiB");
    assert_each_event_once(&lake, events);
    // d5f3256 peaked at 486 MB on a file of 250 MB; this one (115 MB) now at about 70 MB.
    assert!(peak < (16 << 20) + FIXED_OVERHEAD, "peak memory {} MB for one file of {events} events", peak >> 20);
}

// Item 14: a flood of rejects goes to disk as it comes and to the lake in parts, never held whole.
#[test]
fn a_flood_of_rejects_stays_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    let body = b"{}\n".repeat(1_000_000);
    gz(&src.join("empty-objects.ndjson.gz"), &body);
    let (out, peak) = crate::convert::run_measuring_peak(convert_cmd(&src, &lake).args(["--threads", "1"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("rejected             1,000,000"), "{}", stdout(&out));
    assert_eq!(rejects(&lake).len(), 1_000_000);
    // d5f3256 peaked at 414 MB here, and grew with the number of rejects; now about 130 MB, flat to 2,000,000.
    assert!(peak < 200 << 20, "peak memory {} MB for 1,000,000 rejects", peak >> 20);
}
