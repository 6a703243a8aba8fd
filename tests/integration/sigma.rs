//! `trailsql sigma`: rules of our own, one or more per construct, run over ../shared/realdata; each rule's matches
//! must be exactly the events an independent reader of the raw JSON finds with the rule's meaning written in Rust.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::realdata::{independent_events, member, placeable};

/// A value at a path: top-level keys and `userIdentity` members in any case (as the lake reads them), payload keys
/// as written.
fn at<'a>(e: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut v = member(e, path[0])?;
    for key in &path[1..] {
        let o = v.as_object()?;
        v = if path[0].eq_ignore_ascii_case("userIdentity") {
            o.get(*key).or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))?
        } else {
            o.get(*key)?
        };
    }
    Some(v)
}

fn text<'a>(e: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(e, path).and_then(Value::as_str)
}

fn is(e: &Value, path: &[&str], want: &str) -> bool {
    text(e, path).is_some_and(|v| v.eq_ignore_ascii_case(want))
}

fn ipv4_in(ip: &str, net: [u8; 4], bits: u32) -> bool {
    let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() else { return false };
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(std::net::Ipv4Addr::from(net)) & mask
}

/// The event's text the way keywords search it: its top-level values that are text or JSON payloads.
fn searchable(e: &Value) -> String {
    use trailsql_lake::schema::{EVENT, Kind};
    let Some(o) = e.as_object() else { return String::new() };
    o.iter()
        .filter(|(k, _)| {
            EVENT
                .iter()
                .find(|f| f.key.eq_ignore_ascii_case(k))
                .is_none_or(|f| matches!(f.kind, Kind::Text | Kind::Json))
        })
        .map(|(_, v)| v.as_str().map_or_else(|| v.to_string(), String::from))
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

type Meaning = fn(&Value) -> bool;

/// Rules of our own, each with its meaning.
fn rules() -> Vec<(&'static str, &'static str, Meaning)> {
    vec![
        (
            "trail_tampering",
            "detection:\n  sel:\n    eventSource: cloudtrail.amazonaws.com\n    eventName:\n      - StopLogging\n      - DeleteTrail\n      - UpdateTrail\n      - PutEventSelectors\n  condition: sel\nlevel: high\n",
            |e| {
                is(e, &["eventSource"], "cloudtrail.amazonaws.com")
                    && ["StopLogging", "DeleteTrail", "UpdateTrail", "PutEventSelectors"]
                        .iter()
                        .any(|n| is(e, &["eventName"], n))
            },
        ),
        (
            "ingress_opened_case_insensitive",
            "detection:\n  sel:\n    eventName|startswith: 'authorizesecuritygroup'\n    eventName|endswith: INGRESS\n  condition: sel\nlevel: medium\n",
            |e| {
                text(e, &["eventName"]).is_some_and(|n| {
                    let n = n.to_lowercase();
                    n.starts_with("authorizesecuritygroup") && n.ends_with("ingress")
                })
            },
        ),
        (
            "snapshot_shared",
            "detection:\n  sel:\n    eventName: ModifySnapshotAttribute\n    requestParameters.attributeType: CREATE_VOLUME_PERMISSION\n  condition: sel\nlevel: high\n",
            |e| {
                is(e, &["eventName"], "ModifySnapshotAttribute")
                    && is(e, &["requestParameters", "attributeType"], "CREATE_VOLUME_PERMISSION")
            },
        ),
        (
            "console_login_without_mfa",
            "detection:\n  sel:\n    eventName: ConsoleLogin\n    additionalEventData.MFAUsed: 'No'\n    responseElements.ConsoleLogin: Success\n  condition: sel\nlevel: medium\n",
            |e| {
                is(e, &["eventName"], "ConsoleLogin")
                    && is(e, &["additionalEventData", "MFAUsed"], "No")
                    && is(e, &["responseElements", "ConsoleLogin"], "Success")
            },
        ),
        (
            "access_key_for_another_user",
            "detection:\n  sel:\n    eventName: CreateAccessKey\n  filter_self:\n    requestParameters.userName|fieldref: userIdentity.userName\n  filter_none:\n    requestParameters.userName: null\n  condition: sel and not 1 of filter_*\nlevel: medium\n",
            |e| {
                let target = text(e, &["requestParameters", "userName"]);
                is(e, &["eventName"], "CreateAccessKey")
                    && target.is_some()
                    && text(e, &["userIdentity", "userName"])
                        .is_none_or(|u| Some(u.to_lowercase()) != target.map(str::to_lowercase))
            },
        ),
        (
            "secrets_by_regex",
            "detection:\n  sel:\n    eventName|re|i: '^get(secret|parameter)'\n  condition: sel\nlevel: low\n",
            |e| {
                text(e, &["eventName"]).is_some_and(|n| {
                    let n = n.to_lowercase();
                    n.starts_with("getsecret") || n.starts_with("getparameter")
                })
            },
        ),
        (
            "s3_errors_exist",
            "detection:\n  sel:\n    eventSource: s3.amazonaws.com\n    errorCode|exists: true\n  condition: sel\nlevel: low\n",
            |e| is(e, &["eventSource"], "s3.amazonaws.com") && at(e, &["errorCode"]).is_some_and(|v| !v.is_null()),
        ),
        ("ssm_keyword", "detection:\n  keywords:\n    - SendCommand\n  condition: keywords\nlevel: low\n", |e| {
            searchable(e).contains("sendcommand")
        }),
        (
            "private_networks_cidr",
            "detection:\n  sel:\n    sourceIPAddress|cidr:\n      - 10.0.0.0/8\n      - 172.16.0.0/12\n      - 192.168.0.0/16\n  condition: sel\nlevel: informational\n",
            |e| {
                text(e, &["sourceIPAddress"]).is_some_and(|ip| {
                    ipv4_in(ip, [10, 0, 0, 0], 8)
                        || ipv4_in(ip, [172, 16, 0, 0], 12)
                        || ipv4_in(ip, [192, 168, 0, 0], 16)
                })
            },
        ),
        (
            "secret_read_without_error",
            "detection:\n  sel:\n    eventName: GetSecretValue\n    errorCode: null\n  condition: sel\nlevel: low\n",
            |e| is(e, &["eventName"], "GetSecretValue") && at(e, &["errorCode"]).is_none_or(Value::is_null),
        ),
        (
            "two_of_three",
            "detection:\n  sel_iam:\n    eventSource: iam.amazonaws.com\n  sel_policy:\n    eventName|contains: policy\n  sel_region:\n    awsRegion: us-east-1\n  condition: 2 of sel_*\nlevel: low\n",
            |e| {
                let hits = [
                    is(e, &["eventSource"], "iam.amazonaws.com"),
                    text(e, &["eventName"]).is_some_and(|n| n.to_lowercase().contains("policy")),
                    is(e, &["awsRegion"], "us-east-1"),
                ];
                hits.iter().filter(|h| **h).count() >= 2
            },
        ),
        (
            "all_of_a_list_in_the_payload_text",
            "detection:\n  sel:\n    eventName: PutBucketPolicy\n    requestParameters|contains|all:\n      - 'Effect'\n      - 'Principal'\n  condition: sel\nlevel: medium\n",
            |e| {
                is(e, &["eventName"], "PutBucketPolicy")
                    && at(e, &["requestParameters"]).is_some_and(|p| {
                        let t = p.to_string().to_lowercase();
                        t.contains("effect") && t.contains("principal")
                    })
            },
        ),
    ]
}

fn write_rules(dir: &Path) {
    for (name, detection, _) in rules() {
        let yml = format!("title: {name}\nid: {name}\nlogsource:\n  product: aws\n  service: cloudtrail\n{detection}");
        std::fs::write(dir.join(format!("{name}.yml")), yml).unwrap();
    }
}

#[test]
fn rules_match_exactly_what_an_independent_reader_finds_in_the_real_data() {
    let Some(root) = realdata() else { return };
    let (input, _) = independent_events(&root);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    assert!(convert_lib(&[&root], &lake).counts.events > 3000);
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    write_rules(&rules_dir);

    let out = run(bin().args(["sigma", "--format", "ndjson", "--lake"]).arg(&lake).arg(&rules_dir));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in stdout(&out).lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        for key in ["rule_title", "level", "eventtime", "eventsource", "eventname"] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
        if let Some(id) = row["eventid"].as_str() {
            got.entry(row["rule_id"].as_str().unwrap().to_string()).or_default().insert(id.to_string());
        }
    }
    for (name, _, meaning) in rules() {
        let want: BTreeSet<String> = input
            .iter()
            .filter(|e| placeable(e) && meaning(e))
            .filter_map(|e| text(e, &["eventID"]).map(String::from))
            .collect();
        assert!(!want.is_empty(), "{name}: the real data holds no event for this rule; choose another");
        assert_eq!(got.get(name).cloned().unwrap_or_default(), want, "{name}");
    }
    assert!(stderr(&out).contains(&format!("sigma: {} rules run", rules().len())), "{}", stderr(&out));
}

#[test]
fn unsupported_constructs_and_other_sources_are_reported_and_the_rest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let write = |name: &str, body: &str| std::fs::write(rules.join(name), body).unwrap();
    write(
        "ok.yml",
        "title: Root console sign-in\nid: r1\nlevel: high\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventName: ConsoleLogin\n    userIdentity.type: Root\n  condition: sel\n",
    );
    write(
        "windash.yml",
        "title: Dash\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    userAgent|windash: '-x'\n  condition: sel\n",
    );
    write(
        "count.yml",
        "title: Burst\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    errorCode: AccessDenied\n  timeframe: 5m\n  condition: sel | count() by sourceIPAddress > 10\n",
    );
    write(
        "windows.yml",
        "title: Not ours\nlogsource:\n  product: windows\n  service: security\ndetection:\n  sel:\n    EventID: 4624\n  condition: sel\n",
    );
    write("notes.txt", "not a rule");
    let lake = sample_lake();

    let out = run(bin().args(["sigma", "--format", "csv", "--lake"]).arg(lake).arg(&rules));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("sigma: 1 rule run"), "{err}");
    assert!(err.contains("2 not supported") && err.contains("1 for other log sources"), "{err}");
    assert!(err.contains("windash.yml: Dash: modifier |windash"), "{err}");
    assert!(err.contains("sigma: not supported: ") && err.contains("count.yml"), "{err}");
    assert!(stdout(&out).starts_with("rule_id,rule_title,level,eventtime,account_id,"), "{}", stdout(&out));
    let root_logins =
        count(lake, "SELECT count(*) FROM cloudtrail WHERE eventname = 'ConsoleLogin' AND useridentity.type = 'Root'");
    assert!(root_logins > 0);
    assert_eq!(stdout(&out).lines().count() as i64, 1 + root_logins, "{}", stdout(&out));

    let skip = run(bin()
        .args(["sigma", "--skip-unsupported", "--fail-on-rows", "--level", "high", "--lake"])
        .arg(lake)
        .arg(&rules));
    assert_eq!(skip.status.code(), Some(1), "rows found: {}", stderr(&skip));

    // `run` takes rule files beside SQL, and the REPL has \sigma.
    let ok = rules.join("ok.yml");
    let via_run = run(bin().args(["run", "--format", "csv", "--lake"]).arg(lake).arg(&ok));
    assert!(via_run.status.success(), "{}", stderr(&via_run));
    assert_eq!(stdout(&via_run), stdout(&out), "run and sigma give the same rows");
    let mut input = b"\\format csv\n\\sigma ".to_vec();
    input.extend_from_slice(ok.to_str().unwrap().as_bytes());
    input.push(b'\n');
    let repl = run_with_stdin(bin().args(["--lake"]).arg(lake), &input);
    assert!(stdout(&repl).contains("r1,Root console sign-in,high,"), "{}\n{}", stdout(&repl), stderr(&repl));
    assert!(stderr(&repl).contains("sigma: 1 rule run"), "{}", stderr(&repl));

    let explain = run(bin().args(["sigma", "--explain", "--skip-unsupported"]).arg(&ok));
    assert!(explain.status.success(), "{}", stderr(&explain));
    assert!(stdout(&explain).contains("(lower(useridentity['type']) = 'root')"), "{}", stdout(&explain));

    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "title: [unclosed\n").unwrap();
    let out = run(bin().args(["sigma", "--lake"]).arg(lake).arg(&broken));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("broken.yml"), "{}", stderr(&out));
}
