//! `trailsql convert`: every input shape, bad input, re-runs, hostile values, bombs.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::common::*;

pub(crate) fn event(id: &str, account: &str, time: &str) -> Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": format!("arn:aws:iam::{account}:user/alice"),
                         "accountId": account, "accessKeyId": "AKIAEXAMPLEKEY000001", "userName": "alice"},
        "eventTime": time,
        "eventSource": "ec2.amazonaws.com",
        "eventName": "DescribeInstances",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.1",
        "userAgent": "aws-cli/2.15.30",
        "requestParameters": {"instancesSet": {}},
        "responseElements": null,
        "requestID": format!("req-{id}"),
        "eventID": id,
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management"
    })
}

pub(crate) fn write(path: &Path, body: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

pub(crate) fn ids(lake: &Path) -> Vec<String> {
    use datafusion::arrow::array::{Array, AsArray};
    let mut out = Vec::new();
    for b in query(lake, "SELECT eventid FROM cloudtrail ORDER BY eventid") {
        let c = b.column(0).as_string::<i32>();
        out.extend((0..c.len()).map(|i| c.value(i).to_string()));
    }
    out
}

pub(crate) fn zip_file(path: &Path, members: &[(&str, Vec<u8>)]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    for (name, body) in members {
        z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(body).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn every_shape_is_read_from_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let lake = dir.path().join("lake");
    let acct = "123456789012";
    let t = |s: u32| format!("2024-10-25T10:00:{s:02}Z");
    let ev = |i: u32| event(&format!("shape-{i:02}"), acct, &t(i));
    let to = |v: &Value| serde_json::to_vec(v).unwrap();

    let delivery = src.join(format!(
        "AWSLogs/{acct}/CloudTrail/us-east-1/2024/10/25/{acct}_CloudTrail_us-east-1_20241025T1005Z_abc.json.gz"
    ));
    std::fs::create_dir_all(delivery.parent().unwrap()).unwrap();
    gz(&delivery, &to(&json!({"Records": [ev(1), ev(2)]})));
    write(&src.join("array.json"), &to(&json!([ev(3), ev(4)])));
    write(&src.join("lines.ndjson"), format!("{}\n{}\n", ev(5), ev(6)).as_bytes());
    write(&src.join("single.txt"), serde_json::to_string_pretty(&ev(7)).unwrap().as_bytes());
    write(
        &src.join("lookup.json"),
        &to(
            &json!({"Events": [{"EventId": "shape-08", "EventName": "DescribeInstances", "CloudTrailEvent": ev(8).to_string()}], "NextToken": "t"}),
        ),
    );
    gz(
        &src.join("cw.gz"),
        &to(
            &json!({"messageType": "DATA_MESSAGE", "owner": acct, "logGroup": "g", "logStream": "s", "subscriptionFilters": ["f"],
                    "logEvents": [{"id": "1", "timestamp": 1, "message": ev(9).to_string()}]}),
        ),
    );
    let eb = |e: Value| {
        json!({"version": "0", "id": "x", "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2", "account": acct,
                                "time": "2024-10-25T10:00:00Z", "region": "us-east-1", "resources": [], "detail": e})
    };
    write(&src.join("eventbridge.jsonl"), format!("{}\n{}\n", eb(ev(10)), eb(ev(11))).as_bytes());
    let mut gz13 = Vec::new();
    {
        let mut e = flate2::write::GzEncoder::new(&mut gz13, flate2::Compression::fast());
        e.write_all(&to(&json!([ev(13)]))).unwrap();
        e.finish().unwrap();
    }
    zip_file(&src.join("archive.zip"), &[("a.json", to(&json!({"Records": [ev(12)]}))), ("nested/b.json.gz", gz13)]);
    let insight = json!({"eventVersion": "1.08", "eventTime": t(14), "awsRegion": "us-east-1", "eventID": "shape-14",
        "eventType": "AwsCloudTrailInsight", "recipientAccountId": acct, "sharedEventID": "s", "eventCategory": "Insight",
        "insightDetails": {"state": "Start", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "insightType": "ApiCallRateInsight"}});
    write(
        &src.join(format!("AWSLogs/{acct}/CloudTrail-Insight/us-east-1/2024/10/25/i.json")),
        &to(&json!({"Records": [insight]})),
    );
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(to(&ev(15)));
    write(&src.join("bom.json"), &bom);
    // An organization trail's event without recipientAccountId takes the account of its object key.
    let mut no_recipient = ev(16);
    no_recipient.as_object_mut().unwrap().remove("recipientAccountId");
    write(
        &src.join("AWSLogs/o-abc123/210987654321/CloudTrail/us-east-1/2024/10/25/x.json"),
        &to(&json!({"Records": [no_recipient]})),
    );
    gz(
        &src.join(format!("AWSLogs/{acct}/CloudTrail-Digest/us-east-1/2024/10/25/d.json.gz")),
        &to(&json!({"awsAccountId": acct, "digestStartTime": t(0), "digestEndTime": t(59), "logFiles": []})),
    );
    write(&src.join("README.md"), b"# notes\n");

    let out = run(bin().args(["convert"]).arg(&src).arg("--lake").arg(&lake));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("1 CloudTrail digest"), "{summary}");
    assert!(summary.contains("1 not JSON"), "{summary}");
    let want: Vec<String> = (1..=16).map(|i| format!("shape-{i:02}")).collect();
    assert_eq!(ids(&lake), want);
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM cloudtrail WHERE account_id = '210987654321' AND recipientaccountid IS NULL"
        ),
        1
    );
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail WHERE insightdetails IS NOT NULL"), 1);
}

#[test]
fn bad_input_is_reported_with_reasons_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let lake = dir.path().join("lake");
    let acct = "123456789012";
    let ev = |i: u32| event(&format!("bad-{i:02}"), acct, "2024-10-25T10:00:00Z");
    write(&src.join("good.json"), ev(1).to_string().as_bytes());
    let mut full = Vec::new();
    {
        let mut e = flate2::write::GzEncoder::new(&mut full, flate2::Compression::default());
        e.write_all(json!({"Records": (2..40).map(ev).collect::<Vec<_>>()}).to_string().as_bytes()).unwrap();
        e.finish().unwrap();
    }
    // A file name is anyone's: the summary names it as the terminal may show it.
    write(&src.join("truncated\u{1b}[2J.json.gz"), &full[..full.len() / 2]);
    write(&src.join("missing-comma.json"), format!("{{\"Records\": [\n{}\n{}\n]}}", ev(50), ev(51)).as_bytes());
    let mut no_time = ev(60);
    no_time.as_object_mut().unwrap().remove("eventTime");
    write(
        &src.join("lines.ndjson"),
        format!("{}\n{{\"eventID\": \"broken\n{}\n{}\n42\n", ev(61), no_time, ev(62)).as_bytes(),
    );
    zip_file(
        &src.join("z.zip"),
        &[("ok.json", ev(70).to_string().into_bytes()), ("broken.json", b"{\"Records\": [".to_vec())],
    );

    let out = run(bin().args(["convert", "--quiet"]).arg(&src).arg("--lake").arg(&lake));
    let summary = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{summary}\n{}", stderr(&out));
    assert!(summary.contains("3 failed") && !summary.contains('\u{1b}'), "{summary}");
    for (file, why) in [
        (r"truncated\u{1b}[2J.json.gz", "gzip: incomplete deflate stream"),
        ("missing-comma.json", "expected ',' or ']'"),
        ("z.zip!broken.json", "unexpected end of input"),
    ] {
        assert!(
            summary.lines().any(|l| l.starts_with("failed:") && l.contains(file) && l.contains(why)),
            "{file}: {summary}"
        );
    }
    assert_eq!(ids(&lake), vec!["bad-01", "bad-61", "bad-62", "bad-70"]);
    let rejects = rejects(&lake);
    let reason = |needle: &str| rejects.iter().filter(|r| r["reason"].as_str().unwrap().contains(needle)).count();
    assert_eq!(reason("no eventTime"), 1, "{rejects:#?}");
    assert_eq!(reason("not valid JSON"), 1);
    assert_eq!(reason("not a JSON object"), 1);
    assert_eq!(reason("unreadable file"), 3);
    let no_time_line = rejects.iter().find(|r| r["reason"].as_str().unwrap().contains("no eventTime")).unwrap();
    let raw: Value = serde_json::from_str(no_time_line["raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw, no_time, "the rejected event is kept whole");
    assert!(no_time_line["source"].as_str().unwrap().contains("lines.ndjson (line 3"), "{no_time_line}");
    let bad_line = rejects.iter().find(|r| r["reason"].as_str().unwrap().contains("not valid JSON")).unwrap();
    assert_eq!(bad_line["raw"], "{\"eventID\": \"broken");

    // The failed files are not in the manifest: a second run tries them again and still reports them.
    let again = run(bin().args(["convert", "--quiet"]).arg(&src).arg("--lake").arg(&lake));
    assert_eq!(again.status.code(), Some(1));
    assert!(stdout(&again).contains("3 failed"), "{}", stdout(&again));
    assert_eq!(ids(&lake).len(), 4);
}

#[test]
fn missing_source_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(bin().args(["convert", "/no/such/dir", "--lake"]).arg(dir.path().join("lake")));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/no/such/dir"), "{}", stderr(&out));
}

#[test]
fn rerun_changes_nothing_and_new_files_convert_alone() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let lake = dir.path().join("lake");
    let acct = "123456789012";
    for f in 0..5 {
        let evs: Vec<Value> =
            (0..20).map(|i| event(&format!("f{f}-e{i}"), acct, &format!("2024-10-25T1{f}:00:{i:02}Z"))).collect();
        write(&src.join(format!("f{f}.json")), json!({"Records": evs}).to_string().as_bytes());
    }
    let first = convert_lib(&[&src], &lake);
    assert_eq!((first.files_read, first.events_written), (5, 100));
    let before = listing(&lake);
    let second = convert_lib(&[&src], &lake);
    assert_eq!((second.files_read, second.files_unchanged, second.events_written), (0, 5, 0));
    assert_eq!(listing(&lake), before, "a re-run with no change writes nothing");

    let evs: Vec<Value> =
        (0..20).map(|i| event(&format!("new-e{i}"), acct, &format!("2024-10-25T12:30:{i:02}Z"))).collect();
    write(&src.join("new.json"), json!({"Records": evs}).to_string().as_bytes());
    let third = convert_lib(&[&src], &lake);
    assert_eq!((third.files_read, third.files_unchanged, third.events_written), (1, 5, 20));
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail"), 120);
    // Small runs into one partition do not pile up files: compaction keeps one small file.
    assert_eq!(std::fs::read_dir(lake.join(format!("account_id={acct}/event_date=2024-10-25"))).unwrap().count(), 1);
    // A file rewritten with events seen before adds only the new ones.
    let mut evs: Vec<Value> =
        (0..20).map(|i| event(&format!("f0-e{i}"), acct, &format!("2024-10-25T10:00:{i:02}Z"))).collect();
    evs.push(event("f0-extra", acct, "2024-10-25T10:01:00Z"));
    write(&src.join("f0.json"), json!({"Records": evs}).to_string().as_bytes());
    let fourth = convert_lib(&[&src], &lake);
    assert_eq!((fourth.files_read, fourth.counts.duplicates, fourth.events_written), (1, 20, 1));
}

#[test]
fn duplicates_are_dropped_and_conflicts_kept() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let lake = dir.path().join("lake");
    let acct = "123456789012";
    let a = event("same-id", acct, "2024-10-25T10:00:00Z");
    let mut b = a.clone();
    b["eventName"] = json!("RunInstances");
    write(&src.join("1.json"), json!({"Records": [a.clone(), a.clone()]}).to_string().as_bytes());
    write(&src.join("2.json"), json!({"Records": [a, b]}).to_string().as_bytes());
    let s = convert_lib(&[&src], &lake);
    assert_eq!((s.counts.events, s.counts.duplicates, s.counts.conflicts, s.events_written), (4, 2, 1, 2));
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail WHERE eventid = 'same-id'"), 2);
}

#[test]
fn hostile_account_ids_never_leave_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let lake = dir.path().join("lake");
    let hostile = [
        "../../../../tmp/evil",
        "a/b",
        "x\u{0}y",
        "123456789012/../..",
        ".",
        "..",
        "%2e%2e",
        "1234567890123",
        "ACCOUNT_ID",
    ];
    let evs: Vec<Value> =
        hostile.iter().enumerate().map(|(i, a)| event(&format!("h{i}"), a, "2024-10-25T10:00:00Z")).collect();
    write(&src.join("AWSLogs/../x/h.json"), json!({"Records": evs}).to_string().as_bytes());
    let mut keyless = event("k1", "1", "2024-10-25T10:00:00Z");
    keyless.as_object_mut().unwrap().remove("recipientAccountId");
    write(
        &src.join("AWSLogs/%2e%2e%2fetc/CloudTrail/us-east-1/k.json"),
        json!({"Records": [keyless]}).to_string().as_bytes(),
    );
    let s = convert_lib(&[&src], &lake);
    assert_eq!(s.events_written, hostile.len() as u64 + 1);
    let mut entries: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    entries.sort();
    assert_eq!(entries, vec!["lake", "src"], "nothing written outside the lake");
    let partitions: Vec<String> = std::fs::read_dir(&lake)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .collect();
    assert_eq!(partitions, vec!["account_id=unknown"]);
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail WHERE recipientaccountid = '../../../../tmp/evil'"), 1);
    assert_eq!(count(&lake, "SELECT count(DISTINCT recipientaccountid) FROM cloudtrail"), hostile.len() as i64);
}

#[test]
fn a_payload_nested_past_the_json_readers_limits_hides_nothing_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let (src, lake) = (dir.path().join("src"), dir.path().join("lake"));
    // JSON readers give up on a text nested past their limit (200 levels for DataFusion's JSON functions): an
    // attacker's 300 levels ahead of `bucketName` hid it from every query and rule.
    let deep = |n: usize| format!("{}\"needle\"{}", "[".repeat(n), "]".repeat(n));
    let mut text = event("d1", "123456789012", "2024-10-25T10:00:00Z").to_string();
    text = text.replace(
        r#""requestParameters":{"instancesSet":{}}"#,
        &format!(r#""requestParameters":{{"x":{},"bucketName":"evil"}}"#, deep(300)),
    );
    text.insert_str(1, &format!(r#""someNewKey":{{"y":{},"z":"kept"}},"#, deep(100_000)));
    write(&src.join("d.json"), format!(r#"{{"Records":[{text}]}}"#).as_bytes());
    assert_eq!(convert_lib(&[&src], &lake).events_written, 1);
    for (what, sql) in [
        ("a member beside the deep part", "json_get_str(requestparameters, 'bucketName') = 'evil'"),
        (
            "through json_values, as Sigma reads payloads",
            "array_has(json_values(requestparameters, 'bucketName'), 'evil')",
        ),
        ("in what no column holds", "json_get_str(unmapped, 'someNewKey', 'z') = 'kept'"),
        ("the deep part, as text", "icontains(requestparameters, '[[[[\\\"needle\\\"]]]]')"),
        ("the deep part of unmapped, as text", "icontains(unmapped, '[[[[\\\"needle\\\"]]]]')"),
    ] {
        assert_eq!(count(&lake, &format!("SELECT count(*) FROM cloudtrail WHERE {sql}")), 1, "{what}: {sql}");
    }
}

/// Runs the binary and samples its peak resident memory (VmHWM) until it exits.
pub(crate) fn run_measuring_peak(cmd: &mut std::process::Command) -> (std::process::Output, u64) {
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (p, path) = (peak.clone(), status_path.clone());
    let sampler = std::thread::spawn(move || {
        while let Ok(s) = std::fs::read_to_string(&path) {
            if let Some(kb) = s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)) {
                p.fetch_max(kb.parse::<u64>().unwrap_or(0) * 1024, std::sync::atomic::Ordering::Relaxed);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    let out = child.wait_with_output().unwrap();
    sampler.join().unwrap();
    (out, peak.load(std::sync::atomic::Ordering::Relaxed))
}

#[test]
fn gzip_bomb_fails_fast_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let f = std::fs::File::create(src.join("bomb.json.gz")).unwrap();
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::best());
    e.write_all(br#"{"Records":[{"eventTime":"2024-10-25T10:00:00Z","eventID":"b","requestParameters":{"a":""#)
        .unwrap();
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..1024 {
        e.write_all(&chunk).unwrap();
    }
    e.write_all(br#""}}]}"#).unwrap();
    e.finish().unwrap();
    let (out, peak) =
        run_measuring_peak(bin().args(["convert", "--quiet"]).arg(&src).arg("--lake").arg(dir.path().join("lake")));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("decompression bomb"), "{}", stdout(&out));
    assert!(peak < 400 << 20, "peak memory {} MB", peak >> 20);
}

#[test]
fn huge_record_is_rejected_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&src).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(src.join("huge.json")).unwrap());
    write!(f, "{{\"Records\":[{},", event("before", "123456789012", "2024-10-25T10:00:00Z")).unwrap();
    write!(f, r#"{{"eventTime":"2024-10-25T10:00:00Z","eventID":"huge","requestParameters":{{"blob":""#).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..200 {
        f.write_all(&chunk).unwrap();
    }
    write!(f, "\"}}}},{}]}}", event("after", "123456789012", "2024-10-25T10:00:01Z")).unwrap();
    f.flush().unwrap();
    drop(f);
    let (out, peak) = run_measuring_peak(
        bin().args(["convert", "--quiet", "--max-record-size", "8MiB"]).arg(&src).arg("--lake").arg(&lake),
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(ids(&lake), vec!["after", "before"]);
    let r = rejects(&lake);
    assert_eq!(r.len(), 1);
    assert!(r[0]["reason"].as_str().unwrap().contains("larger than the limit"), "{}", r[0]);
    assert!(r[0]["raw"].as_str().unwrap().starts_with(r#"{"eventTime":"2024-10-25T10:00:00Z","eventID":"huge""#));
    assert!(peak < 300 << 20, "peak memory {} MB", peak >> 20);
}

#[test]
fn query_prints_table_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let lake = dir.path().join("lake");
    write(&src.join("e.json"), event("q1", "123456789012", "2024-10-25T10:00:00Z").to_string().as_bytes());
    convert_lib(&[&src], &lake);
    let sql = "SELECT eventid, eventtime, useridentity.username AS who FROM cloudtrail";
    let q = |fmt: &str| {
        let o = run(bin().args(["query", "--lake"]).arg(&lake).args(["--format", fmt, sql]));
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(q("csv"), "eventid,eventtime,who\nq1,2024-10-25T10:00:00Z,alice\n");
    let json: Value = serde_json::from_str(&q("json")).unwrap();
    assert_eq!(json, json!([{"eventid": "q1", "eventtime": "2024-10-25T10:00:00Z", "who": "alice"}]));
    let table = q("table");
    assert!(table.contains("| q1") && table.contains("alice"), "{table}");
    let bad = run(bin().args(["query", "--lake"]).arg(&lake).arg("SELEC 1"));
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("SELEC"), "{}", stderr(&bad));
    let missing = run(bin().args(["query", "--lake"]).arg(dir.path().join("nope")).arg("SELECT 1"));
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("trailsql convert"), "{}", stderr(&missing));
}
