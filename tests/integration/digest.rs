//! The lake's digest: partitions skipped by it lose no row, whatever state the digest is in.

use std::path::Path;

use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::common::{convert_lib, copy_lake, count, gz, query, sample_data};

/// Queries whose filters the digest checks, and the views built on them.
const QUERIES: &[&str] = &[
    "SELECT * FROM privileged_sessions ORDER BY action_event_id",
    "SELECT * FROM root_activity ORDER BY event_id",
    "SELECT * FROM privileged_session_summary ORDER BY session_id",
    "SELECT eventid FROM cloudtrail WHERE eventname = 'AssumeRoot' ORDER BY eventid",
    "SELECT eventid FROM cloudtrail WHERE lower(eventname) IN ('assumeroot', 'createaccesskey') ORDER BY eventid",
    "SELECT eventid FROM cloudtrail WHERE useridentity.type = 'Root' OR errorcode = 'AccessDenied' ORDER BY eventid",
    "SELECT eventid FROM cloudtrail WHERE eventsource = 'iam.amazonaws.com' AND errorcode IS NULL ORDER BY eventid",
];

fn answers(lake: &Path) -> Vec<String> {
    QUERIES.iter().map(|q| pretty_format_batches(&query(lake, q)).unwrap().to_string()).collect()
}

/// A delivery file of one AssumeRoot call, recorded in a partition the sample lake already holds.
fn late_assume_root(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("late/222222222222_CloudTrail_us-east-1_20241025T1200Z_late.json.gz");
    let record = r#"{"Records":[{"eventVersion":"1.11","eventTime":"2024-10-25T12:00:00Z","eventSource":"sts.amazonaws.com",
        "eventName":"AssumeRoot","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2",
        "userIdentity":{"type":"AssumedRole","accountId":"222222222222"},"eventID":"0d1e2f3a-late-assume-root",
        "eventType":"AwsApiCall","recipientAccountId":"222222222222"}]}"#;
    gz(&path, record.as_bytes());
    path.parent().unwrap().to_path_buf()
}

#[test]
fn every_state_of_the_digest_gives_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (with, without) = (dir.path().join("with"), dir.path().join("without"));
    convert_lib(&[&sample_data()], &with);
    assert!(with.join("_digest.json").is_file(), "a convert writes the digest");
    let expected = answers(&with);
    assert!(expected.iter().all(|a| a.lines().count() > 4), "every query has rows: {expected:?}");

    // A lake converted before the digest existed: nothing is skipped.
    copy_lake(&with, &without);
    std::fs::remove_file(without.join("_digest.json")).unwrap();
    assert_eq!(answers(&without), expected);

    // A run into a partition that held files before the digest: that partition becomes unknown, never skipped,
    // though the run's digest knows only the one event it wrote there.
    let late = late_assume_root(dir.path());
    convert_lib(&[&late], &without);
    convert_lib(&[&late], &with);
    let q = "SELECT count(*) FROM cloudtrail WHERE eventname = 'AssumeRoot'";
    assert_eq!(count(&without, q), 8);
    assert_eq!(count(&with, q), 8);
    let root = "SELECT count(*) FROM cloudtrail WHERE useridentity.type = 'Root' AND account_id = '222222222222'";
    assert_eq!(count(&without, root), count(&with, root));
    assert!(count(&with, root) > 0, "the partition's earlier files are still read");

    // A digest that cannot be read skips nothing, and the next run writes a usable one.
    let expected = answers(&with);
    std::fs::write(with.join("_digest.json"), b"{\"version\":1,\"columns\":[").unwrap();
    assert_eq!(answers(&with), expected);
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    std::fs::copy(late.join("222222222222_CloudTrail_us-east-1_20241025T1200Z_late.json.gz"), again.join("x.json.gz"))
        .unwrap();
    convert_lib(&[&again], &with);
    let text = std::fs::read_to_string(with.join("_digest.json")).unwrap();
    assert!(text.starts_with("{\"version\":1"), "{text}");
    assert_eq!(answers(&with), expected);
}
