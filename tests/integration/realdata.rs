//! All of ../shared/realdata: every event accounted for, counted by an independent reader, and every event in the
//! lake rebuilt from its row equal to its input.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::common::*;

/// Events of the readable files, read the plain way (whole documents with serde_json::Value), and the files that
/// could not be read.
pub fn independent_events(root: &Path) -> (Vec<Value>, Vec<String>) {
    let mut events = Vec::new();
    let mut unreadable = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.file_type().is_file() || name.starts_with('.') || name.ends_with(".md") || name.ends_with(".tsv") {
            continue;
        }
        let bytes = std::fs::read(e.path()).unwrap();
        if name.ends_with(".zip") {
            let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
            for i in 0..z.len() {
                let mut m = z.by_index(i).unwrap();
                let mut body = Vec::new();
                m.read_to_end(&mut body).unwrap();
                if !values(&body, &mut events) {
                    unreadable.push(format!("{}!{}", e.path().display(), m.name()));
                }
            }
        } else if !values(&bytes, &mut events) {
            unreadable.push(e.path().display().to_string());
        }
    }
    (events, unreadable)
}

/// Every top-level value of a document (one, or one per line), unwrapped to events.
fn values(bytes: &[u8], out: &mut Vec<Value>) -> bool {
    let mut found = Vec::new();
    for v in serde_json::Deserializer::from_slice(bytes).into_iter::<Value>() {
        match v {
            Ok(v) => unwrap(v, &mut found),
            Err(_) => return false,
        }
    }
    out.extend(found);
    true
}

fn unwrap(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.into_iter().for_each(|i| unwrap(i, out)),
        Value::Object(mut o) => {
            if let Some(Value::Array(records)) = o.remove("Records") {
                out.extend(records);
            } else if let Some(Value::Array(events)) = o.remove("Events") {
                out.extend(
                    events.iter().map(|e| serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap()),
                );
            } else if let Some(Value::Array(events)) = o.remove("logEvents") {
                out.extend(events.iter().map(|e| serde_json::from_str(e["message"].as_str().unwrap()).unwrap()));
            } else if o.contains_key("detail-type") {
                out.push(o.remove("detail").unwrap());
            } else {
                out.push(Value::Object(o));
            }
        }
        other => out.push(other),
    }
}

/// A member of an event by its CloudTrail spelling, or another case of it (some exporters lower-case keys).
pub fn member<'a>(e: &'a Value, key: &str) -> Option<&'a Value> {
    let o = e.as_object()?;
    o.get(key).or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// Whether an event has a time the lake can place it by.
pub fn placeable(e: &Value) -> bool {
    member(e, "eventTime").and_then(Value::as_str).and_then(trailsql_lake::time::parse_cloudtrail_time).is_some()
}

#[test]
fn realdata_is_converted_with_nothing_lost_and_rebuilds_exactly() {
    let Some(root) = realdata() else { return };
    let (input, unreadable) = independent_events(&root);
    assert!(input.len() > 3800, "the real data has thousands of events, found {}", input.len());
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    assert!(unreadable[0].ends_with("cloudtrail.zip!aws.execution.ec2-user-data.json"));

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary = convert_lib(&[&root], &lake);

    // The one broken member is reported, with its place in the archive.
    assert_eq!(summary.files_failed.len(), 1, "{:?}", summary.files_failed);
    assert!(summary.files_failed[0].0.ends_with("cloudtrail.zip!aws.execution.ec2-user-data.json"));
    let rejects = rejects(&lake);
    let event_rejects =
        rejects.iter().filter(|r| !r["reason"].as_str().unwrap().starts_with("unreadable file")).count() as u64;
    let rows = count(&lake, "SELECT count(*) FROM cloudtrail") as u64;
    assert_eq!(
        rows + event_rejects + summary.counts.duplicates,
        input.len() as u64,
        "lake + rejects + duplicates = input"
    );
    assert_eq!(event_rejects, input.iter().filter(|e| !placeable(e)).count() as u64);
    assert!(summary.counts.duplicates > 0 && summary.counts.conflicts > 0, "the real data has both: {summary:?}");

    // Each event in the lake, rebuilt from its row, is one of the input events, as often as it came (identical
    // copies of one (recipientAccountId, eventID) once).
    let mut want: HashMap<String, i64> = HashMap::new();
    let mut seen_ids: HashMap<(String, String), Vec<String>> = HashMap::new();
    for e in input.iter().filter(|e| placeable(e)) {
        let text = e.to_string();
        if let Some(id) = member(e, "eventID").and_then(Value::as_str) {
            let key =
                (member(e, "recipientAccountId").and_then(Value::as_str).unwrap_or("").to_string(), id.to_string());
            let copies = seen_ids.entry(key).or_default();
            if copies.contains(&text) {
                continue;
            }
            copies.push(text.clone());
        }
        *want.entry(text).or_default() += 1;
    }
    let mut got: HashMap<String, i64> = HashMap::new();
    for batch in query(&lake, "SELECT * EXCLUDE (account_id, event_date) FROM cloudtrail") {
        for e in trailsql_lake::rebuild::rebuild(&batch).unwrap() {
            *got.entry(e.to_string()).or_default() += 1;
        }
    }
    let missing: Vec<&String> = want.keys().filter(|k| got.get(*k) != want.get(*k)).take(3).collect();
    assert!(missing.is_empty(), "events not rebuilt exactly: {missing:#?}");
    assert_eq!(got.values().sum::<i64>(), want.values().sum::<i64>());
}
