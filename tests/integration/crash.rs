//! A convert killed at any moment and run again leaves every event in the lake exactly once.

use std::time::Duration;

use trailsql_corpus::{CorpusSpec, write_corpus};

use crate::common::*;

#[test]
#[cfg_attr(not(debug_assertions), ignore = "failpoints exist in debug builds only")]
fn killed_runs_leave_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let lake = dir.path().join("lake");
    let spec = CorpusSpec {
        accounts: 3,
        regions: 2,
        days: 2,
        files_per_day: 12,
        events_per_file: 60,
        sessions_per_day: 1,
        seed: 7,
    };
    let events = write_corpus(&src, &spec).unwrap().events;
    let convert = || {
        let mut c = bin();
        c.args(["convert", "--quiet", "--threads", "2", "--memory-limit", "2MiB"]).arg(&src).arg("--lake").arg(&lake);
        c
    };
    // Crashes at the two points that matter most, then kills at whatever point the clock lands on.
    for point in ["before-commit", "after-commit"] {
        let out = run(convert().env("TRAILSQL_FAILPOINT", point));
        assert!(!out.status.success(), "the failpoint {point} stops the run");
    }
    for ms in [40, 120, 250, 400, 700, 1000, 1500] {
        let mut child = convert().stdout(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        child.wait().unwrap();
    }
    let out = run(&mut convert());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail"), events as i64);
    assert_eq!(count(&lake, "SELECT count(DISTINCT eventid) FROM cloudtrail"), events as i64);
    assert!(!lake.join("_staging").exists() || std::fs::read_dir(lake.join("_staging")).unwrap().count() == 0);
    assert!(!lake.join("_lock").exists());

    let before = listing(&lake);
    let again = run(&mut convert());
    assert!(again.status.success());
    assert!(stdout(&again).contains("converted 0 files"), "{}", stdout(&again));
    assert_eq!(listing(&lake), before);
}

/// A run killed in the middle of writing a staged file leaves the store's partial file (`name#N`), which object
/// listings do not show; the next run still finds that run's staging and removes it.
#[test]
fn a_partial_staged_file_is_removed_by_the_next_run() {
    let lake = tempfile::tempdir().unwrap();
    let partial = lake.path().join("_staging/20240101T000000Z-deadbeef/account_id=111111111111/event_date=2024-10-25");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("part-20240101T000000Z-deadbeef-00001.parquet#7"), b"half a file").unwrap();
    let out = run(bin().args(["convert", "--quiet"]).arg(sample_data()).arg("--lake").arg(lake.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let staging = lake.path().join("_staging");
    assert!(!staging.exists() || std::fs::read_dir(&staging).unwrap().count() == 0);
}
