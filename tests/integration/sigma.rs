//! `trailsql sigma`: rules of our own, one or more per construct, run over ../shared/realdata; each rule's matches
//! must be exactly the events an independent reader of the raw JSON finds with the rule's meaning written in Rust,
//! and those pySigma's SQLite backend finds with the rule as it is (`tests/sigma/pysigma_oracle.py`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

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

/// The values at a path into a payload, every array on the way or at its end looked through (as search engines
/// flatten lists); nulls left out.
fn each<'a>(v: &'a Value, keys: &[&str], out: &mut Vec<&'a Value>) {
    match (v, keys) {
        (Value::Array(items), _) => items.iter().for_each(|i| each(i, keys, out)),
        (Value::Object(o), [k, rest @ ..]) => {
            if let Some(v) = o.get(*k) {
                each(v, rest, out)
            }
        }
        (Value::Null, _) | (_, [_, ..]) => {}
        (v, []) => out.push(v),
    }
}

fn payload_values<'a>(e: &'a Value, path: &[&str]) -> Vec<&'a Value> {
    let mut out = Vec::new();
    if let Some(payload) = member(e, path[0]) {
        each(payload, &path[1..], &mut out);
    }
    out
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

/// The event's text the way keywords search it: its top-level values that are text or JSON payloads (the payloads
/// as JSON text), and the text members of the structures and lists (`userIdentity`, `resources`, …) at any depth.
fn searchable(e: &Value) -> String {
    use trailsql_lake::schema::{EVENT, Field, Kind};
    fn texts(v: &Value, kind: Option<Kind>, out: &mut Vec<String>) {
        match (v, kind) {
            (Value::Null, _) | (_, Some(Kind::Bool(_) | Kind::Time)) => {}
            (Value::Array(items), Some(Kind::List(members))) => {
                items.iter().for_each(|i| texts(i, Some(Kind::Struct(members)), out))
            }
            (Value::Object(o), Some(Kind::Struct(members))) => {
                for (k, v) in o {
                    let member = members.iter().find(|f: &&Field| f.key.eq_ignore_ascii_case(k));
                    texts(v, Some(member.map_or(Kind::Json, |f| f.kind)), out);
                }
            }
            _ => out.push(v.as_str().map_or_else(|| v.to_string(), String::from)),
        }
    }
    let mut out = Vec::new();
    texts(e, Some(Kind::Struct(EVENT)), &mut out);
    out.join(" ").to_lowercase()
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
            // A path through two lists (permissions, then their ranges) means any range of any permission.
            "ingress_or_egress_open_to_the_world",
            "detection:\n  sel:\n    eventName|startswith: AuthorizeSecurityGroup\n    requestParameters.ipPermissions.items.ipRanges.items.cidrIp: '0.0.0.0/0'\n  ports:\n    requestParameters.ipPermissions.items.fromPort|exists: true\n  condition: sel and ports\nlevel: high\n",
            |e| {
                text(e, &["eventName"]).is_some_and(|n| n.to_lowercase().starts_with("authorizesecuritygroup"))
                    && payload_values(
                        e,
                        &["requestParameters", "ipPermissions", "items", "ipRanges", "items", "cidrIp"],
                    )
                    .iter()
                    .any(|v| v.as_str() == Some("0.0.0.0/0"))
                    && !payload_values(e, &["requestParameters", "ipPermissions", "items", "fromPort"]).is_empty()
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
            // A hunt for a leaked access key: its ID is in the callers' identity, and in no payload.
            "leaked_access_key_keyword",
            "detection:\n  keywords:\n    - AKIAW9X2Q2U25SK79UCX\n  condition: keywords\nlevel: high\n",
            |e| searchable(e).contains("akiaw9x2q2u25sk79ucx"),
        ),
        (
            // A number and a boolean as YAML writes them match the text CloudTrail writes ("1.08") and its booleans.
            "typed_values",
            "detection:\n  sel:\n    eventSource: iam.amazonaws.com\n    eventVersion: 1.08\n    readOnly: false\n  condition: sel\nlevel: low\n",
            |e| {
                is(e, &["eventSource"], "iam.amazonaws.com")
                    && at(e, &["eventVersion"]).is_some_and(|v| v.as_str() == Some("1.08") || v.as_f64() == Some(1.08))
                    && at(e, &["readOnly"]).is_some_and(|v| {
                        *v == Value::Bool(false) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("false"))
                    })
            },
        ),
        (
            // YAML reads 1.10 as the number 1.1, its last zero lost: compared as a number, CloudTrail's "1.10" is it.
            "version_read_as_a_number",
            "detection:\n  sel:\n    eventVersion: 1.10\n  condition: sel\nlevel: low\n",
            |e| {
                at(e, &["eventVersion"])
                    .and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
                    .is_some_and(|n| n == 1.1)
            },
        ),
        (
            // `null` among other values: the field is absent, or one of them.
            "sts_denied_or_no_error",
            "detection:\n  sel:\n    eventSource: sts.amazonaws.com\n    errorCode:\n      - AccessDenied\n      - null\n  condition: sel\nlevel: low\n",
            |e| {
                is(e, &["eventSource"], "sts.amazonaws.com")
                    && text(e, &["errorCode"]).is_none_or(|c| c.eq_ignore_ascii_case("AccessDenied"))
            },
        ),
        (
            "iam_neither_listing_nor_failing",
            "detection:\n  a:\n    eventSource: iam.amazonaws.com\n  b:\n    eventName|startswith: List\n  c:\n    errorCode|exists: true\n  condition: a and not (b or c)\nlevel: low\n",
            |e| {
                is(e, &["eventSource"], "iam.amazonaws.com")
                    && !text(e, &["eventName"]).is_some_and(|n| n.to_lowercase().starts_with("list"))
                    && at(e, &["errorCode"]).is_none_or(Value::is_null)
            },
        ),
        (
            // A number compared as a number: text would put "900" after "3600".
            "long_sessions_requested",
            "detection:\n  sel:\n    requestParameters.durationSeconds|gte: 3600\n  condition: sel\nlevel: low\n",
            |e| {
                payload_values(e, &["requestParameters", "durationSeconds"]).iter().any(|v| {
                    v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())).is_some_and(|n| n >= 3600.0)
                })
            },
        ),
        (
            // Quotes in a keyword: found in a policy document, a string inside the payload, where JSON writes them `\"`.
            "quoted_keyword",
            "detection:\n  keywords:\n    - '\"Effect\": \"Allow\"'\n  condition: keywords\nlevel: low\n",
            |e| {
                let text = searchable(e);
                text.contains(r#"\"effect\": \"allow\""#) || text.contains(r#""effect": "allow""#)
            },
        ),
        (
            // A resource's ARN, in the event's `resources` list alone.
            "resource_keyword",
            "detection:\n  keywords:\n    - 'arn:aws:ssm:cn-west-3r:933175858973:parameter/credentials/stratus-red-team/credentials-15'\n  condition: keywords\nlevel: low\n",
            |e| {
                searchable(e).contains(
                    "arn:aws:ssm:cn-west-3r:933175858973:parameter/credentials/stratus-red-team/credentials-15",
                )
            },
        ),
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
            // An empty list is no value, as pySigma reads it: `|neq: []`, a value there.
            "secret_read_failed",
            "detection:\n  sel:\n    eventName: GetSecretValue\n    errorCode|neq: []\n  condition: sel\nlevel: low\n",
            |e| is(e, &["eventName"], "GetSecretValue") && at(e, &["errorCode"]).is_some_and(|v| !v.is_null()),
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
            // Quotes in a payload's value: the JSON's own in an S3 bucket policy (an object), escaped in an IAM policy
            // document (a string); either is found.
            "policy_text_in_either_form",
            "detection:\n  sel:\n    eventName:\n      - PutBucketPolicy\n      - PutUserPolicy\n      - PutRolePolicy\n    requestParameters|contains: '\"Effect\":\"Allow\"'\n  condition: sel\nlevel: low\n",
            |e| {
                ["PutBucketPolicy", "PutUserPolicy", "PutRolePolicy"].iter().any(|n| is(e, &["eventName"], n))
                    && at(e, &["requestParameters"]).is_some_and(|p| {
                        let t = p.to_string().to_lowercase();
                        t.contains(r#""effect":"allow""#) || t.contains(r#"\"effect\":\"allow\""#)
                    })
            },
        ),
        (
            // AWS writes `<` as `\u003c` in this payload (a Stratus detonation's userData): its text is searched as
            // the event says it, not as it was escaped.
            "escaped_in_the_payload_text",
            "detection:\n  sel:\n    requestParameters|contains: '<sensitiveDataRemoved>'\n  condition: sel\nlevel: low\n",
            |e| {
                at(e, &["requestParameters"])
                    .is_some_and(|p| p.to_string().to_lowercase().contains("<sensitivedataremoved>"))
            },
        ),
        (
            // `&` as `\u0026`, in an SSM session's stream URL.
            "escaped_keyword",
            "detection:\n  keywords:\n    - 'role=publish_subscribe&cell-number='\n  condition: keywords\nlevel: low\n",
            |e| searchable(e).contains("role=publish_subscribe&cell-number="),
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
        (
            "wildcards_and_case",
            "detection:\n  any_case:\n    userAgent: '?oto3*'\n  exact_case:\n    userAgent|cased|startswith: 'Boto3'\n  condition: all of them\nlevel: low\n",
            |e| {
                text(e, &["userAgent"]).is_some_and(|u| {
                    let rest: String = u.chars().skip(1).take(4).collect();
                    u.chars().count() >= 5 && rest.to_lowercase() == "oto3" && u.starts_with("Boto3")
                })
            },
        ),
        (
            // `|neq` negates the item: an S3 call without an error code is one "different from" AccessDenied.
            "s3_calls_other_than_denied",
            "detection:\n  sel:\n    eventSource: s3.amazonaws.com\n    errorCode|neq: accessdenied\n  condition: sel\nlevel: low\n",
            |e| {
                is(e, &["eventSource"], "s3.amazonaws.com")
                    && !text(e, &["errorCode"]).is_some_and(|c| c.eq_ignore_ascii_case("AccessDenied"))
            },
        ),
        (
            // Different from every value of the list.
            "iam_calls_but_the_usual_reads",
            "detection:\n  sel:\n    eventSource: iam.amazonaws.com\n    eventName|neq:\n      - GetUser\n      - ListRolePolicies\n      - GetRole\n  condition: sel\nlevel: low\n",
            |e| {
                is(e, &["eventSource"], "iam.amazonaws.com")
                    && !text(e, &["eventName"]).is_some_and(|n| {
                        ["GetUser", "ListRolePolicies", "GetRole"].iter().any(|u| n.eq_ignore_ascii_case(u))
                    })
            },
        ),
        (
            // With `|all`, not all of them at once: a user agent may name one of the two, not both.
            "iam_calls_not_from_the_cli_through_botocore",
            "detection:\n  sel:\n    eventSource: iam.amazonaws.com\n    userAgent|neq|contains|all:\n      - aws-cli\n      - botocore\n  condition: sel\nlevel: low\n",
            |e| {
                is(e, &["eventSource"], "iam.amazonaws.com")
                    && !text(e, &["userAgent"]).is_some_and(|a| {
                        let a = a.to_lowercase();
                        a.contains("aws-cli") && a.contains("botocore")
                    })
            },
        ),
        (
            // No value of the request's user name is the caller's: also where the caller has none (a role), or the
            // request names none (the caller's own key), as pySigma reads `|neq`.
            "access_key_for_another_named_user",
            "detection:\n  sel:\n    eventName: CreateAccessKey\n    requestParameters.userName|neq|fieldref: userIdentity.userName\n  condition: sel\nlevel: medium\n",
            |e| {
                is(e, &["eventName"], "CreateAccessKey")
                    && !text(e, &["userIdentity", "userName"]).is_some_and(|caller| {
                        payload_values(e, &["requestParameters", "userName"])
                            .iter()
                            .filter_map(|v| v.as_str())
                            .any(|target| target.eq_ignore_ascii_case(caller))
                    })
            },
        ),
        (
            "console_logins_before_six_utc",
            "detection:\n  sel:\n    eventName: ConsoleLogin\n    eventTime|hour|lt: 6\n  condition: sel\nlevel: low\n",
            |e| {
                is(e, &["eventName"], "ConsoleLogin")
                    && text(e, &["eventTime"]).and_then(|t| t.get(11..13)?.parse::<u32>().ok()).is_some_and(|h| h < 6)
            },
        ),
        (
            "cli_with_any_dash",
            "detection:\n  sel:\n    userAgent|windash|startswith: 'aws-cli/'\n  condition: sel\nlevel: informational\n",
            |e| {
                const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
                text(e, &["userAgent"]).is_some_and(|u| {
                    let c: Vec<char> = u.to_lowercase().chars().take(8).collect();
                    c.len() == 8
                        && c[..3] == ['a', 'w', 's']
                        && DASHES.contains(&c[3])
                        && c[4..7] == ['c', 'l', 'i']
                        && DASHES.contains(&c[7])
                })
            },
        ),
        (
            // A member of the `resources` list: any of the event's resources.
            "a_role_among_the_resources",
            "detection:\n  sel:\n    resources.type: aws::iam::role\n    resources.ARN|contains: ':role/'\n  condition: sel\nlevel: low\n",
            |e| {
                let resources: Vec<&Value> =
                    at(e, &["resources"]).and_then(Value::as_array).map(|r| r.iter().collect()).unwrap_or_default();
                // Members in any case, as the lake reads them (some producers write `arn`).
                let member = |r: &Value, k: &str| {
                    let o = r.as_object()?;
                    o.iter()
                        .find(|(m, _)| m.eq_ignore_ascii_case(k))
                        .and_then(|(_, v)| v.as_str())
                        .map(str::to_lowercase)
                };
                resources.iter().any(|r| member(r, "type").as_deref() == Some("aws::iam::role"))
                    && resources.iter().any(|r| member(r, "ARN").is_some_and(|a| a.contains(":role/")))
            },
        ),
        (
            "old_event_versions",
            "detection:\n  sel:\n    eventVersion|lt: 1.05\n  condition: sel\nlevel: informational\n",
            |e| text(e, &["eventVersion"]).and_then(|v| v.trim().parse::<f64>().ok()).is_some_and(|v| v < 1.05),
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

/// What `tests/sigma/pysigma_oracle.py` prints for the events (written to `dir`, one JSON object a line) and the
/// rule directory.
fn pysigma<'a>(events: impl IntoIterator<Item = &'a Value>, dir: &Path, rules: &Path) -> String {
    let file = dir.join("events.ndjson");
    std::fs::write(&file, events.into_iter().map(Value::to_string).collect::<Vec<_>>().join("\n")).unwrap();
    let script = crate::common::root().join("tests/sigma/pysigma_oracle.py");
    let out = run(Command::new(python()).arg(script).arg(&file).arg(rules));
    assert!(out.status.success(), "pysigma_oracle.py: {}", stderr(&out));
    stdout(&out)
}

/// The same rules read by pySigma's SQLite backend, the Sigma project's own library (`pysigma_oracle.py`), over the
/// same events: each detection finds exactly the events it finds. A second reader that shares nothing with ours,
/// not even our reading of the specification, which the meanings above are written from.
#[test]
fn detections_match_what_pysigmas_sqlite_backend_finds_in_the_real_data() {
    let Some(root) = realdata() else { return };
    let (input, _) = independent_events(&root);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    convert_lib(&[&root], &lake);
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    write_rules(&rules_dir);

    let out = run(bin().args(["sigma", "--format", "ndjson", "--lake"]).arg(&lake).arg(&rules_dir));
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = matches_by_rule(&stdout(&out));
    let oracle = pysigma(input.iter().filter(|e| placeable(e)), dir.path(), &rules_dir);
    let mut theirs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut refused = Vec::new();
    for line in oracle.lines() {
        match line.split('\t').collect::<Vec<_>>()[..] {
            ["match", rule, id] => {
                theirs.entry(rule.to_string()).or_default().insert(id.to_string());
            }
            ["unsupported", rule, why] => refused.push(format!("{rule}: {why}")),
            _ => panic!("pysigma_oracle.py printed {line:?}"),
        }
    }
    let mut differ = Vec::new();
    for (name, _, _) in rules() {
        if refused.iter().any(|r| r.starts_with(&format!("{name}: "))) {
            continue;
        }
        let (a, b) = (ours.get(name).cloned().unwrap_or_default(), theirs.get(name).cloned().unwrap_or_default());
        // pySigma searches a payload's text for quotes as written, not for the escaped ones of a policy document
        // held as a string: it finds the bucket policies and none of the IAM ones (the first reader checks both).
        if name == "policy_text_in_either_form" {
            assert!(b.is_subset(&a) && a.len() > b.len() && !b.is_empty(), "{name}: {a:?} {b:?}");
            continue;
        }
        if a != b {
            let only =
                |x: &BTreeSet<String>, y: &BTreeSet<String>| x.difference(y).take(3).cloned().collect::<Vec<_>>();
            differ.push(format!(
                "{name}: trailsql {} events, pySigma {}; only trailsql {:?}, only pySigma {:?}",
                a.len(),
                b.len(),
                only(&a, &b),
                only(&b, &a)
            ));
        }
    }
    // pySigma's parser reads `1 of` and `all of`, not `2 of`: that rule is checked by the reader above alone.
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(refused[0].starts_with("two_of_three: SigmaConditionError"), "{refused:#?}");
    assert!(differ.is_empty(), "{differ:#?}");
    assert!(theirs.len() + 1 >= rules().len(), "{} of {} rules matched in pySigma", theirs.len(), rules().len());
}

/// Event IDs by rule, from `trailsql sigma --format ndjson`'s output.
/// The seed of the random rules: 1, or `TRAILSQL_SIGMA_SEED` to draw others by hand.
fn seed() -> String {
    std::env::var("TRAILSQL_SIGMA_SEED").unwrap_or_else(|_| "1".into())
}

fn matches_by_rule(ndjson: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_rule: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in ndjson.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        if let Some(id) = row["eventid"].as_str() {
            by_rule.entry(row["rule_id"].as_str().unwrap().to_string()).or_default().insert(id.to_string());
        }
    }
    by_rule
}

/// Two hundred rules drawn at random (`tests/sigma/random_rules.py`: the values of the real events, whole, cut and
/// recased, under every modifier and condition shape the two readers read alike) find the same events in trailsql
/// and in pySigma's SQLite backend. The rules of `rules()` were written by someone who knew the answer; these were
/// not. Two thousand of them, with other seeds, agreed too (2026-12-05).
#[test]
fn random_rules_match_what_pysigmas_sqlite_backend_finds_in_the_real_data() {
    const RULES: usize = 200;
    let Some(root) = realdata() else { return };
    let (input, _) = independent_events(&root);
    let input: Vec<&Value> = input.iter().filter(|e| placeable(e)).collect();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    convert_lib(&[&root], &lake);
    let (events, rules_dir) = (dir.path().join("drawn_from.ndjson"), dir.path().join("rules"));
    std::fs::write(&events, input.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")).unwrap();
    let script = crate::common::root().join("tests/sigma/random_rules.py");
    let out = run(Command::new(python()).arg(script).arg(&events).args([&seed(), &RULES.to_string()]).arg(&rules_dir));
    assert!(out.status.success(), "random_rules.py: {}", stderr(&out));

    let out = run(bin().args(["sigma", "--format", "ndjson", "--lake"]).arg(&lake).arg(&rules_dir));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("sigma: {RULES} rules run")), "{}", stderr(&out));
    let ours = matches_by_rule(&stdout(&out));
    let mut theirs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in pysigma(input.iter().copied(), dir.path(), &rules_dir).lines() {
        match line.split('\t').collect::<Vec<_>>()[..] {
            ["match", rule, id] => {
                theirs.entry(rule.to_string()).or_default().insert(id.to_string());
            }
            _ => panic!("pysigma_oracle.py printed {line:?}"),
        }
    }
    let differ: Vec<String> = (ours.keys().chain(theirs.keys()).collect::<BTreeSet<_>>())
        .into_iter()
        .filter(|rule| ours.get(*rule) != theirs.get(*rule))
        .map(|rule| {
            let (a, b) = (ours.get(rule).cloned().unwrap_or_default(), theirs.get(rule).cloned().unwrap_or_default());
            let rules_file = std::fs::read_dir(&rules_dir)
                .unwrap()
                .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
                .find(|text| text.contains(rule.as_str()))
                .unwrap_or_default();
            format!("{} events in trailsql, {} in pySigma:\n{rules_file}", a.len(), b.len())
        })
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // Not vacuous: most rules match something, and many neither nothing nor every event.
    let some = ours.values().filter(|ids| !ids.is_empty()).count();
    let between = ours.values().filter(|ids| !ids.is_empty() && ids.len() < input.len() / 2).count();
    assert!(some >= RULES / 2 && between >= RULES / 5, "{some} rules match, {between} of them a part of the events");
}

/// Rule files as editors on Windows save them: a UTF-8 byte-order mark and CRLF line ends, or UTF-16 (PowerShell's
/// `>`). A file that is not text is reported for itself, and the other rules run.
#[test]
fn rule_files_with_a_byte_order_mark_or_in_utf16_run_and_one_that_is_not_text_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let rule = |id: &str| {
        format!(
            "title: Root sign-in {id}\nid: {id}\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventName: ConsoleLogin\n    userIdentity.type: Root\n  condition: sel\n"
        )
    };
    let bom = [&b"\xEF\xBB\xBF"[..], rule("bom").replace('\n', "\r\n").as_bytes()].concat();
    std::fs::write(dir.path().join("bom.yml"), bom).unwrap();
    let utf16: Vec<u8> =
        [0xFF, 0xFE].into_iter().chain(rule("wide").encode_utf16().flat_map(u16::to_le_bytes)).collect();
    std::fs::write(dir.path().join("wide.yml"), utf16).unwrap();
    std::fs::write(dir.path().join("binary.yml"), b"title: x\n\xC3\x28\x00\xFF").unwrap();
    let lake = sample_lake();
    let out = run(bin().args(["sigma", "--format", "csv", "--lake"]).arg(lake).arg(dir.path()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("sigma: 2 rules run") && err.contains("1 not supported"), "{err}");
    assert!(err.contains("binary.yml: (rule not parsed): not UTF-8 text (invalid utf-8 sequence"), "{err}");
    let root_logins =
        count(lake, "SELECT count(*) FROM cloudtrail WHERE eventname = 'ConsoleLogin' AND useridentity.type = 'Root'");
    for id in ["bom", "wide"] {
        let rows = stdout(&out).lines().filter(|l| l.starts_with(&format!("{id},"))).count();
        assert_eq!(rows as i64, root_logins, "{id}: {}", stdout(&out));
    }
}

/// A rule file from a shared repository can carry escape sequences in its title, its id, its fields or its name:
/// the summary, the tally and the errors show them escaped, as the table shows an event's strings.
#[test]
fn rule_titles_and_file_names_reach_the_terminal_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let head = "logsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n";
    std::fs::write(
        dir.path().join("a.yml"),
        format!(
            "title: \"evil\\e]0;pwned\\a\"\nid: \"r\\e[2J\"\n{head}    eventName: ConsoleLogin\n  condition: sel\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b\u{1b}[31m.yml"),
        format!("title: \"bad\\e[31m\"\n{head}    \"eventName\\e[31m\": x\n  condition: sel\n"),
    )
    .unwrap();
    let out = run(bin()
        .args(["sigma", "--lake"])
        .arg(sample_lake())
        .arg("-o")
        .arg(dir.path().join("out.csv"))
        .arg(dir.path()));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains(r"r\u{1b}[2J: evil\u{1b}]0;pwned\u{7}"), "{err}");
    assert!(err.contains(r"b\u{1b}[31m.yml: bad\u{1b}[31m: unknown field eventName\u{1b}"), "{err}");
    // An error names a file as the terminal may show it too.
    let missing = run(bin().args(["run", "--lake"]).arg(sample_lake()).arg("no\u{1b}[2Jsuch.sql"));
    assert!(
        !stderr(&missing).contains('\u{1b}') && stderr(&missing).contains(r"no\u{1b}[2Jsuch.sql"),
        "{}",
        stderr(&missing)
    );
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
        "expand.yml",
        "title: Placeholders\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    userAgent|expand: '%agents%'\n  condition: sel\n",
    );
    write(
        "count.yml",
        "title: Burst\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    errorCode: AccessDenied\n  timeframe: 5m\n  condition: sel | sum(eventVersion) by sourceIPAddress > 10\n",
    );
    write(
        "ordered.yml",
        "title: In order\ncorrelation:\n  type: temporal_ordered\n  rules: [r1, r1]\n  timespan: 5m\n  condition:\n    lt: 2\n---\ntitle: Counts a rule not loaded\ncorrelation:\n  type: event_count\n  rules: [nosuch]\n  timespan: 5m\n  condition:\n    gte: 2\n---\ntitle: Forever\nname: forever\ncorrelation:\n  type: event_count\n  rules: [r1]\n  timespan: 366000d\n  window: tumbling\n  condition:\n    gte: 2\n---\ntitle: Misspelt alias\ncorrelation:\n  type: event_count\n  rules: [r1]\n  group-by: [who]\n  aliases:\n    who:\n      r2: sourceIPAddress\n  timespan: 5m\n  condition:\n    gte: 2\n---\ntitle: Chained\ncorrelation:\n  type: event_count\n  rules: [forever]\n  timespan: 5m\n  condition:\n    gte: 2\n---\ntitle: Ping\nname: ping\ncorrelation:\n  type: event_count\n  rules: [pong]\n  timespan: 5m\n  condition:\n    gte: 2\n---\ntitle: Pong\nname: pong\ncorrelation:\n  type: event_count\n  rules: [ping]\n  timespan: 5m\n  condition:\n    gte: 2\n",
    );
    write(
        "windows.yml",
        "title: Not ours\nlogsource:\n  product: windows\n  service: security\ndetection:\n  sel:\n    EventID: 4624\n  condition: sel\n",
    );
    // A pattern that does not compile, or a network that is not one, would fail the fused query of every rule, or
    // never match: each is its own rule's report.
    write(
        "regex.yml",
        "title: Bad pattern\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    userAgent|re: '(unclosed'\n  condition: sel\n",
    );
    write(
        "cidr.yml",
        "title: Bad network\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    sourceIPAddress|cidr: 10.0.0.0/99\n  condition: sel\n",
    );
    write(
        "nan.yml",
        "title: Not a number\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventVersion|lt: NaN\n  condition: sel\n",
    );
    write("notes.txt", "not a rule");
    let lake = sample_lake();

    let out = run(bin().args(["sigma", "--format", "csv", "--lake"]).arg(lake).arg(&rules));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("sigma: 1 rule run"), "{err}");
    assert!(err.contains("12 not supported") && err.contains("1 for other log sources"), "{err}");
    assert!(err.contains("nan.yml: Not a number: eventVersion|< with a value that is not a number"), "{err}");
    assert!(
        err.contains("regex.yml: Bad pattern: userAgent|re: a pattern that does not compile (error: unclosed group)"),
        "{err}"
    );
    assert!(
        err.contains("cidr.yml: Bad network: sourceIPAddress|cidr with \"10.0.0.0/99\", which is not a network"),
        "{err}"
    );
    assert!(err.contains("expand.yml: Placeholders: modifier |expand"), "{err}");
    assert!(err.contains("count.yml: Burst: aggregation `sum(eventVersion)"), "{err}");
    assert!(
        err.contains("ordered.yml: In order: temporal_ordered with a condition other than gte or gt (rules in order)"),
        "{err}"
    );
    // A window of centuries would overflow in the query (a tumbling one's interval past 292 years) and fail every
    // rule of the run.
    assert!(err.contains("ordered.yml: Forever: a timespan of 366000d (more than 100 years)"), "{err}");
    // A name an alias maps that the correlation does not count would fall back to the alias as a field.
    assert!(
        err.contains("ordered.yml: Misspelt alias: the alias who maps rule r2, which the correlation does not count"),
        "{err}"
    );
    // A correlation counts another only if that one runs; in a cycle, neither can.
    assert!(
        err.contains("ordered.yml: Chained: it counts forever: a timespan of 366000d (more than 100 years)"),
        "{err}"
    );
    assert!(
        err.contains("ordered.yml: Ping: it counts pong: it counts ping, which counts it (a cycle of correlations)"),
        "{err}"
    );
    assert!(
        err.contains("ordered.yml: Pong: it counts ping: it counts pong, which counts it (a cycle of correlations)"),
        "{err}"
    );
    assert!(
        err.contains("Counts a rule not loaded: it counts rule nosuch, which is not a CloudTrail rule loaded"),
        "{err}"
    );
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
    // The same from the middle match on, by both.
    let all = stdout(&via_run);
    let mut times: Vec<&str> = all.lines().skip(1).map(|l| l.split(',').nth(3).unwrap()).collect();
    times.sort();
    let since = times[times.len() / 2].to_string();
    let ranged = run(bin().args(["sigma", "--format", "csv", "--since", &since, "--lake"]).arg(lake).arg(&ok));
    assert!(ranged.status.success(), "{}", stderr(&ranged));
    let rows = stdout(&ranged).lines().count() - 1;
    assert_eq!(rows, times.iter().filter(|t| **t >= since.as_str()).count(), "{}", stdout(&ranged));
    let input = format!("\\format csv\n\\sigma {} since={since}\n", ok.display());
    let repl = run_with_stdin(bin().args(["--lake"]).arg(lake), input.as_bytes());
    assert_eq!(stdout(&repl), stdout(&ranged), "{}", stderr(&repl));
    assert!(stderr(&repl).contains(&format!("events from {since} on")), "{}", stderr(&repl));

    let explain = run(bin().args(["sigma", "--explain", "--skip-unsupported"]).arg(&ok));
    assert!(explain.status.success(), "{}", stderr(&explain));
    assert!(stdout(&explain).contains("(lower(useridentity['type']) = 'root')"), "{}", stdout(&explain));

    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "title: [unclosed\n").unwrap();
    let out = run(bin().args(["sigma", "--lake"]).arg(lake).arg(&broken));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("broken.yml"), "{}", stderr(&out));
}

/// How an independent count over a window sees a correlation.
enum Measure {
    Events,
    Values(&'static [&'static str]),
    /// Which of the rules matched; the test gets how many and which.
    Rules,
    /// Whether the rules matched in their order, each strictly later than the one before: all of them, or none.
    Ordered,
    /// The sum, or the mean, of a field's values that are numbers, if there is one.
    Sum(&'static [&'static str]),
    Mean(&'static [&'static str]),
    /// A percentile of them, interpolated between the two nearest ranks.
    Percentile(&'static [&'static str], f64),
}

enum Window {
    Sliding(i64),
    Tumbling(i64),
    Unbounded,
}

struct Correlation {
    id: &'static str,
    /// The rule file after its title and id: a correlation of the base rules, or a rule with an old aggregation.
    yaml: &'static str,
    rules: Vec<Meaning>,
    group_by: &'static [&'static str],
    /// Under field aliases, the field each rule names for each group-by field, rule by rule.
    aliased: Option<&'static [&'static [&'static str]]>,
    /// The correlations it counts (a correlation of correlations), by their place among its rules (whose meaning
    /// there matches no event): their alerts, each group and instant where their condition holds.
    chained: Vec<(usize, Correlation)>,
    measure: Measure,
    window: Window,
    test: fn(f64, &[bool]) -> bool,
}

fn detection(id: &str, body: &str) -> String {
    format!("title: {id}\nid: {id}\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n{body}")
}

fn correlations() -> Vec<Correlation> {
    let errors: Meaning = |e| at(e, &["errorCode"]).is_some_and(|v| !v.is_null());
    let reads: Meaning = |e| {
        text(e, &["eventName"]).is_some_and(|n| {
            let n = n.to_lowercase();
            n.starts_with("describe") || n.starts_with("list") || n.starts_with("get")
        })
    };
    let iam: Meaning = |e| is(e, &["eventSource"], "iam.amazonaws.com");
    let s3: Meaning = |e| is(e, &["eventSource"], "s3.amazonaws.com");
    let user_changed: Meaning = |e| {
        let changes = ["CreateUser", "CreateAccessKey", "CreateLoginProfile", "AttachUserPolicy", "PutUserPolicy"];
        text(e, &["eventName"]).is_some_and(|n| changes.iter().any(|c| c.eq_ignore_ascii_case(n)))
    };
    let iam_user: Meaning = |e| is(e, &["userIdentity", "type"], "IAMUser");
    let signed_in: Meaning =
        |e| is(e, &["eventName"], "ConsoleLogin") && is(e, &["responseElements", "ConsoleLogin"], "Success");
    let sign_in_failed: Meaning =
        |e| is(e, &["eventName"], "ConsoleLogin") && is(e, &["responseElements", "ConsoleLogin"], "Failure");
    // The user a change is made to, and the user who acts: one group-by field, a field of each rule.
    const USER: &[&[&str]] = &[&["requestParameters.userName"], &["userIdentity.userName"]];
    let user_aliases = "  group-by: [user]\n  aliases:\n    user:\n      ct_user_changed: requestParameters.userName\n      \
                        ct_iam_user: userIdentity.userName\n";
    vec![
        Correlation {
            id: "error_burst",
            yaml: "correlation:\n  type: event_count\n  rules: [ct_errors]\n  group-by: [sourceIPAddress]\n  timespan: 10m\n  condition:\n    gte: 10\n",
            rules: vec![errors],
            aliased: None,
            chained: vec![],
            group_by: &["sourceIPAddress"],
            measure: Measure::Events,
            window: Window::Sliding(600),
            test: |n, _| n >= 10.0,
        },
        Correlation {
            id: "error_hours",
            yaml: "correlation:\n  type: event_count\n  rules: [ct_errors]\n  group-by: [sourceIPAddress, awsRegion]\n  timespan: 1h\n  window: tumbling\n  condition:\n    gte: 5\n    lt: 100\n",
            rules: vec![errors],
            aliased: None,
            chained: vec![],
            group_by: &["sourceIPAddress", "awsRegion"],
            measure: Measure::Events,
            window: Window::Tumbling(3600),
            test: |n, _| (5.0..100.0).contains(&n),
        },
        Correlation {
            id: "recon",
            yaml: "correlation:\n  type: value_count\n  rules: [ct_reads]\n  group-by: [userIdentity.arn]\n  timespan: 1h\n  condition:\n    field: eventName\n    gte: 8\n",
            rules: vec![reads],
            aliased: None,
            chained: vec![],
            group_by: &["userIdentity.arn"],
            measure: Measure::Values(&["eventName"]),
            window: Window::Sliding(3600),
            test: |n, _| n >= 8.0,
        },
        Correlation {
            id: "errors_and_iam",
            yaml: "correlation:\n  type: temporal\n  rules: [ct_errors, ct_iam]\n  group-by: [userIdentity.arn]\n  timespan: 30m\n",
            rules: vec![errors, iam],
            aliased: None,
            chained: vec![],
            group_by: &["userIdentity.arn"],
            measure: Measure::Rules,
            window: Window::Sliding(1800),
            test: |_, p| p.iter().all(|x| *x),
        },
        Correlation {
            id: "s3_bytes_in",
            yaml: "correlation:\n  type: value_sum\n  rules: [ct_s3]\n  group-by: [userIdentity.arn]\n  timespan: 10m\n  condition:\n    field: additionalEventData.bytesTransferredIn\n    gte: 1000\n",
            rules: vec![s3],
            aliased: None,
            chained: vec![],
            group_by: &["userIdentity.arn"],
            measure: Measure::Sum(&["additionalEventData", "bytesTransferredIn"]),
            window: Window::Sliding(600),
            test: |n, _| n >= 1000.0,
        },
        Correlation {
            id: "s3_mean_bytes_in",
            yaml: "correlation:\n  type: value_avg\n  rules: [ct_s3]\n  group-by: [userIdentity.arn]\n  timespan: 10m\n  condition:\n    field: additionalEventData.bytesTransferredIn\n    gte: 100\n",
            rules: vec![s3],
            aliased: None,
            chained: vec![],
            group_by: &["userIdentity.arn"],
            measure: Measure::Mean(&["additionalEventData", "bytesTransferredIn"]),
            window: Window::Sliding(600),
            test: |n, _| n >= 100.0,
        },
        Correlation {
            id: "s3_median_bytes_in",
            yaml: "correlation:\n  type: value_median\n  rules: [ct_s3]\n  group-by: [userIdentity.arn]\n  timespan: 10m\n  condition:\n    field: additionalEventData.bytesTransferredIn\n    gte: 100\n",
            rules: vec![s3],
            aliased: None,
            chained: vec![],
            group_by: &["userIdentity.arn"],
            measure: Measure::Percentile(&["additionalEventData", "bytesTransferredIn"], 50.0),
            window: Window::Sliding(600),
            test: |n, _| n >= 100.0,
        },
        Correlation {
            id: "s3_p90_bytes_in",
            yaml: "correlation:\n  type: value_percentile\n  rules: [ct_s3]\n  group-by: [userIdentity.arn]\n  timespan: 1h\n  condition:\n    field: additionalEventData.bytesTransferredIn\n    percentile: 90\n    gt: 200\n",
            rules: vec![s3],
            aliased: None,
            chained: vec![],
            group_by: &["userIdentity.arn"],
            measure: Measure::Percentile(&["additionalEventData", "bytesTransferredIn"], 90.0),
            window: Window::Sliding(3600),
            test: |n, _| n > 200.0,
        },
        Correlation {
            id: "iam_then_errors",
            yaml: "correlation:\n  type: temporal_ordered\n  rules: [ct_iam, ct_errors]\n  group-by: [userIdentity.arn]\n  timespan: 30m\n",
            rules: vec![iam, errors],
            aliased: None,
            chained: vec![],
            group_by: &["userIdentity.arn"],
            measure: Measure::Ordered,
            window: Window::Sliding(1800),
            test: |n, _| n == 2.0,
        },
        Correlation {
            id: "iam_without_errors",
            yaml: "correlation:\n  type: temporal\n  rules: [ct_errors, ct_iam]\n  group-by: [awsRegion]\n  timespan: 5m\n  condition: ct_iam and not ct_errors\n",
            rules: vec![errors, iam],
            aliased: None,
            chained: vec![],
            group_by: &["awsRegion"],
            measure: Measure::Rules,
            window: Window::Sliding(300),
            test: |_, p| p[1] && !p[0],
        },
        // A user changed (created, given a key, a password or a policy), then acting within the hour: Stratus's
        // login profile given to a new user, then its console sign-in.
        Correlation {
            id: "changed_user_acts",
            yaml: format!("correlation:\n  type: temporal_ordered\n  rules: [ct_user_changed, ct_iam_user]\n{user_aliases}  timespan: 1h\n").leak(),
            rules: vec![user_changed, iam_user],
            group_by: &["user"],
            aliased: Some(USER),
            chained: vec![],
            measure: Measure::Ordered,
            window: Window::Sliding(3600),
            test: |n, _| n == 2.0,
        },
        // A user's own change to itself meets both rules with the same user: one event, counted once.
        Correlation {
            id: "user_touched",
            yaml: format!("correlation:\n  type: event_count\n  rules: [ct_user_changed, ct_iam_user]\n{user_aliases}  timespan: 1d\n  condition:\n    gte: 3\n").leak(),
            rules: vec![user_changed, iam_user],
            group_by: &["user"],
            aliased: Some(USER),
            chained: vec![],
            measure: Measure::Events,
            window: Window::Sliding(86_400),
            test: |n, _| n >= 3.0,
        },
        // The specification's example of a correlation of correlations: failed sign-ins from an address (an
        // event_count of its own, which gives no rows alone), then a successful one from there (root's password
        // guessed over a day in the real data).
        Correlation {
            id: "failures_then_sign_in",
            yaml: "correlation:\n  type: temporal_ordered\n  rules: [failed_sign_ins, ct_signed_in]\n  group-by: [sourceIPAddress]\n  timespan: 1d\n",
            rules: vec![|_| false, signed_in],
            group_by: &["sourceIPAddress"],
            aliased: None,
            chained: vec![(
                0,
                Correlation {
                    id: "failed_sign_ins",
                    yaml: "",
                    rules: vec![sign_in_failed],
                    group_by: &["sourceIPAddress"],
                    aliased: None,
                    chained: vec![],
                    measure: Measure::Events,
                    window: Window::Sliding(86_400),
                    test: |n, _| n >= 2.0,
                },
            )],
            measure: Measure::Ordered,
            window: Window::Sliding(86_400),
            test: |n, _| n == 2.0,
        },
        Correlation {
            id: "regions_with_many_error_codes",
            yaml: "logsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    errorCode|exists: true\n  condition: sel | count(errorCode) by awsRegion >= 3\n",
            rules: vec![errors],
            aliased: None,
            chained: vec![],
            group_by: &["awsRegion"],
            measure: Measure::Values(&["errorCode"]),
            window: Window::Unbounded,
            test: |n, _| n >= 3.0,
        },
    ]
}

/// The base rules the correlations count, in one file with a rule of its own that `generate: true` keeps.
fn base_rules() -> String {
    [
        detection("ct_errors", "  sel:\n    errorCode|exists: true\n  condition: sel\nlevel: low\n"),
        detection("ct_reads", "  sel:\n    eventName|startswith: [Describe, List, Get]\n  condition: sel\n"),
        detection("ct_iam", "  sel:\n    eventSource: iam.amazonaws.com\n  condition: sel\n"),
        detection("ct_s3", "  sel:\n    eventSource: s3.amazonaws.com\n  condition: sel\n"),
        detection("ct_denied", "  sel:\n    errorCode: AccessDenied\n  condition: sel\n"),
        detection(
            "ct_user_changed",
            "  sel:\n    eventName: [CreateUser, CreateAccessKey, CreateLoginProfile, AttachUserPolicy, PutUserPolicy]\n  \
             condition: sel\n",
        ),
        detection("ct_iam_user", "  sel:\n    userIdentity.type: IAMUser\n  condition: sel\n"),
        detection("ct_signed_in", "  sel:\n    eventName: ConsoleLogin\n    responseElements.ConsoleLogin: Success\n  condition: sel\n"),
        detection("ct_sign_in_failed", "  sel:\n    eventName: ConsoleLogin\n    responseElements.ConsoleLogin: Failure\n  condition: sel\n"),
        "title: failed sign-ins\nid: failed_sign_ins\ncorrelation:\n  type: event_count\n  rules: [ct_sign_in_failed]\n  group-by: [sourceIPAddress]\n  timespan: 1d\n  condition:\n    gte: 2\n".to_string(),
        "title: denied, and alone too\nid: denied_twice\ncorrelation:\n  type: event_count\n  rules: [ct_denied]\n  timespan: 1d\n  generate: true\n  condition:\n    gte: 2\n".to_string(),
    ]
    .join("---\n")
}

type Found = BTreeMap<String, (String, i64)>;

/// The events a run reports, in microseconds since the epoch: from the first (included) to the second (excluded).
type Range = (Option<i64>, Option<i64>);

fn in_range(t: i64, (since, until): Range) -> bool {
    since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
}

/// The groups a correlation fires for, each with the event where its condition first held and the largest count
/// among the windows where it held, read from the raw events; in a time range, among the range's events, each
/// window still counting all of the events of its timespan, except that a window without one starts at the range.
fn independent_correlation(events: &[(i64, &Value)], c: &Correlation, range: Range) -> Found {
    let mut found = Found::new();
    for (key, held) in held(events, c, range) {
        if let Some((first, _)) = held.first() {
            let peak = held.iter().map(|(_, n)| n.round() as i64).max().unwrap_or(0);
            found.insert(key, (first.1.clone(), peak));
        }
    }
    found
}

/// Per group: (time, event id, event, which rules it matched).
type Row<'a> = (i64, String, &'a Value, Vec<bool>);

/// The rows of each group where the correlation's condition holds, among the range's, in order, with the measure.
fn held<'a>(events: &[(i64, &'a Value)], c: &Correlation, range: Range) -> BTreeMap<String, Vec<(Row<'a>, f64)>> {
    let mut groups: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    // The alerts of the correlations it counts: the first event of each group and instant where theirs holds.
    for (j, child) in &c.chained {
        for (key, held) in held(events, child, (None, range.1)) {
            let mut last = None;
            for ((t, id, e, _), _) in held {
                if last.replace(t) != Some(t) {
                    let hits = (0..c.rules.len()).map(|k| k == *j).collect();
                    groups.entry(key.clone()).or_default().push((t, id, e, hits));
                }
            }
        }
    }
    for (t, e) in events {
        let counted = match c.window {
            Window::Unbounded => in_range(*t, range),
            Window::Sliding(_) | Window::Tumbling(_) => range.1.is_none_or(|u| *t < u),
        };
        if !counted {
            continue;
        }
        let hits: Vec<bool> = c.rules.iter().map(|m| m(e)).collect();
        // The group each rule it meets puts it in (under aliases, each rule's own fields); an event without a value
        // for a group-by field is in no group.
        let keys: Vec<Option<String>> = (0..c.rules.len())
            .map(|j| {
                let fields = c.group_by.iter().enumerate().map(|(i, g)| (g, c.aliased.map_or(*g, |a| a[j][i])));
                let values = fields.map(|(g, field)| {
                    let path: Vec<&str> = field.split('.').collect();
                    text(e, &path).map(|v| format!("{g}={v}"))
                });
                hits[j].then(|| values.collect::<Option<Vec<String>>>().map(|v| v.join(", "))).flatten()
            })
            .collect();
        // Once in each of them, with the rules that put it there.
        let id = text(e, &["eventID"]).unwrap_or_default().to_string();
        for key in keys.iter().flatten().collect::<BTreeSet<_>>() {
            let hits = keys.iter().map(|k| k.as_ref() == Some(key)).collect();
            groups.entry(key.clone()).or_default().push((*t, id.clone(), e, hits));
        }
    }
    let mut found = BTreeMap::new();
    for (key, mut rows) in groups {
        // By time, then event ID, an event without one last (as SQL orders a NULL).
        rows.sort_by(|a, b| (a.0, a.1.is_empty(), &a.1).cmp(&(b.0, b.1.is_empty(), &b.1)));
        let mut held = Vec::new();
        for row @ (t, ..) in rows.iter().filter(|(t, ..)| in_range(*t, range)) {
            let window = rows.iter().filter(|(u, ..)| {
                *u <= *t
                    && match c.window {
                        Window::Sliding(s) => *u >= t - s * 1_000_000,
                        Window::Tumbling(s) => u.div_euclid(s * 1_000_000) == t.div_euclid(s * 1_000_000),
                        Window::Unbounded => true,
                    }
            });
            let present: Vec<bool> = (0..c.rules.len()).map(|i| window.clone().any(|(.., hits)| hits[i])).collect();
            let n = match c.measure {
                Measure::Sum(path) | Measure::Mean(path) | Measure::Percentile(path, _) => {
                    let mut numbers: Vec<f64> = window
                        .clone()
                        .filter_map(|(_, _, e, _)| at(e, path))
                        .filter_map(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
                        .collect();
                    if numbers.is_empty() {
                        continue;
                    }
                    let sum = numbers.iter().sum::<f64>();
                    match c.measure {
                        Measure::Mean(_) => sum / numbers.len() as f64,
                        Measure::Percentile(_, p) => {
                            numbers.sort_by(f64::total_cmp);
                            let at = (numbers.len() - 1) as f64 * p / 100.0;
                            let (low, high) = (at.floor() as usize, at.ceil() as usize);
                            numbers[low] + (numbers[high] - numbers[low]) * (at - low as f64)
                        }
                        _ => sum,
                    }
                }
                Measure::Events => window.count() as f64,
                Measure::Values(path) => {
                    window.filter_map(|(_, _, e, _)| text(e, path)).collect::<BTreeSet<_>>().len() as f64
                }
                Measure::Rules => present.iter().filter(|p| **p).count() as f64,
                Measure::Ordered => {
                    // The earliest event of each rule after the one chosen for the rule before.
                    let mut after: Option<i64> = None;
                    let chained = (0..c.rules.len()).all(|i| {
                        let next = window.clone().find(|(u, .., hits)| hits[i] && after.is_none_or(|a| *u > a));
                        after = next.map(|(u, ..)| *u);
                        next.is_some()
                    });
                    if chained { c.rules.len() as f64 } else { 0.0 }
                }
            };
            if (c.test)(n, &present) {
                held.push((row.clone(), n));
            }
        }
        found.insert(key, held);
    }
    found
}

/// The real data converted, the correlations' rules written, and the events as the lake holds them, with their
/// times.
struct CorrelationCase {
    _dir: tempfile::TempDir,
    lake: std::path::PathBuf,
    rules: std::path::PathBuf,
    events: Vec<(i64, Value)>,
}

impl CorrelationCase {
    fn new(root: &Path) -> Self {
        let (input, _) = independent_events(root);
        // The lake keeps one copy of an event delivered twice, known by its ID (every copy of one without an ID).
        let mut events: Vec<(i64, Value)> = Vec::new();
        let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for e in input {
            let Some(t) = text(&e, &["eventTime"]).and_then(trailsql_lake::time::parse_cloudtrail_time) else {
                continue;
            };
            let Some(id) = text(&e, &["eventID"]) else {
                events.push((t, e));
                continue;
            };
            let copies = seen.entry(id.to_string()).or_default();
            if !copies.iter().any(|&i| events[i].1 == e) {
                copies.push(events.len());
                events.push((t, e));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        convert_lib(&[root], &lake);
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        std::fs::write(rules.join("base.yml"), base_rules()).unwrap();
        for c in correlations() {
            let rule = format!("title: {}\nid: {}\n{}", c.id, c.id, c.yaml);
            std::fs::write(rules.join(format!("{}.yml", c.id)), rule).unwrap();
        }
        // The older form of the first: an aggregation after the condition, with a timeframe.
        std::fs::write(
            rules.join("legacy.yml"),
            detection(
                "legacy_error_burst",
                "  sel:\n    errorCode|exists: true\n  timeframe: 10m\n  condition: sel | count() by sourceIPAddress > 9\n",
            ),
        )
        .unwrap();
        CorrelationCase { _dir: dir, lake, rules, events }
    }

    fn events(&self) -> Vec<(i64, &Value)> {
        self.events.iter().map(|(t, e)| (*t, e)).collect()
    }

    /// Runs the rules with `args`: the correlations' rows, by rule and group, and the event IDs of the rows of
    /// `ct_denied`, the one rule that gives rows alone.
    fn run(&self, args: &[&str]) -> (BTreeMap<String, Found>, Vec<String>, String) {
        let out =
            run(bin().args(["sigma", "--format", "ndjson"]).args(args).arg("--lake").arg(&self.lake).arg(&self.rules));
        assert!(out.status.success(), "{}", stderr(&out));
        let mut got: BTreeMap<String, Found> = BTreeMap::new();
        let mut denied = Vec::new();
        for line in stdout(&out).lines() {
            let row: Value = serde_json::from_str(line).unwrap();
            let rule = row["rule_id"].as_str().unwrap().to_string();
            let event = row["eventid"].as_str().unwrap_or_default().to_string();
            match row["correlation_group"].as_str() {
                Some(group) => {
                    let n = row["correlation_count"].as_i64().unwrap();
                    assert!(got.entry(rule).or_default().insert(group.to_string(), (event, n)).is_none(), "{line}");
                }
                None => {
                    assert!(row["correlation_count"].is_null(), "{line}");
                    assert_eq!(rule, "ct_denied", "only the rule with generate: true gives rows alone: {line}");
                    denied.push(event);
                }
            }
        }
        denied.sort();
        (got, denied, stderr(&out))
    }

    /// The IDs of the events `ct_denied` matches in a range.
    fn denied(&self, range: Range) -> Vec<String> {
        let mut ids: Vec<String> = (self.events.iter())
            .filter(|(t, e)| in_range(*t, range) && is(e, &["errorCode"], "AccessDenied"))
            .map(|(_, e)| text(e, &["eventID"]).unwrap_or_default().to_string())
            .collect();
        ids.sort();
        ids
    }
}

#[test]
fn correlations_fire_for_exactly_the_groups_an_independent_count_finds() {
    let Some(root) = realdata() else { return };
    let case = CorrelationCase::new(&root);
    let (got, denied, err) = case.run(&[]);
    for c in correlations() {
        let want = independent_correlation(&case.events(), &c, (None, None));
        assert!(!want.is_empty(), "{}: the real data has no group for it; choose another", c.id);
        assert_eq!(got.get(c.id).cloned().unwrap_or_default(), want, "{}", c.id);
    }
    assert_eq!(got.get("legacy_error_burst"), got.get("error_burst"), "`| count() by … > 9` is `gte: 10`");
    assert_eq!(denied, case.denied((None, None)));
    assert_eq!(got["denied_twice"].len(), 1, "no group-by: one group");
    assert!(err.contains("sigma: 17 rules run (16 correlations)"), "{err}");
    // The tally of matches by rule, ten at most: a row per group for a correlation.
    assert!(err.contains(&format!("\n{:>10}  ct_denied: ct_denied\n", denied.len())), "{err}");
    let listed = got.iter().filter(|(rule, groups)| err.contains(&format!("\n{:>10}  {rule}: ", groups.len())));
    assert_eq!(listed.count(), 9, "{err}");
    assert!(err.contains(&format!("{:>10}  and 7 more rules\n", "…")), "{err}");
}

/// The correlations read by pySigma's SQLite backend over the same events (`pysigma_oracle.py`): each fires for the
/// same groups, with the same largest count, first holding at the same time. pySigma gives an absence (`not`
/// in a temporal condition) when its window has passed, a timespan after the event where trailsql gives it.
#[test]
fn correlations_fire_for_the_groups_pysigmas_sqlite_backend_finds() {
    let Some(root) = realdata() else { return };
    let case = CorrelationCase::new(&root);
    let (ours, theirs, mut refused) = correlation_groups(&case, &case.rules);
    // pySigma reads neither the older `| count()` form nor a condition with two bounds (`gte` and `lt`): those
    // rules are checked by the independent count above alone.
    refused.sort();
    let why: Vec<&str> = refused.iter().map(|r| r.split(": ").next().unwrap()).collect();
    assert_eq!(why, ["error_hours", "legacy_error_burst", "regions_with_many_error_codes"], "{refused:#?}");
    let mut differ = Vec::new();
    for (rule, groups) in &ours {
        if why.contains(&rule.as_str()) {
            continue;
        }
        let later = if *rule == "iam_without_errors" { 300.0 } else { 0.0 };
        let theirs = theirs.get(rule).cloned().unwrap_or_default();
        for g in groups.keys().chain(theirs.keys()).collect::<BTreeSet<_>>() {
            let same = match (groups.get(g), theirs.get(g)) {
                (Some((n, at)), Some((m, first))) => n == m && (at + later - first).abs() < 1e-3,
                _ => false,
            };
            if !same {
                differ.push(format!("{rule} {g}: trailsql {:?}, pySigma {:?}", groups.get(g), theirs.get(g)));
            }
        }
    }
    assert!(differ.is_empty(), "{differ:#?}");
    assert_eq!(ours.len(), why.len() + 13, "every other correlation compared: {:?}", ours.keys());
}

/// Groups by correlation: (largest count, time of the first alert in seconds), from `trailsql sigma` and from
/// pySigma over the case's events, group values in lower case (pySigma compares them without regard to case);
/// and the rules pySigma refused, with its reason.
type Groups = BTreeMap<String, BTreeMap<String, (i64, f64)>>;

fn correlation_groups(case: &CorrelationCase, rules: &Path) -> (Groups, Groups, Vec<String>) {
    let out = run(bin().args(["sigma", "--format", "ndjson", "--lake"]).arg(&case.lake).arg(rules));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut ours = Groups::new();
    for line in stdout(&out).lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let Some(group) = row["correlation_group"].as_str() else { continue };
        let at = trailsql_lake::time::parse_cloudtrail_time(row["eventtime"].as_str().unwrap()).unwrap();
        let seen = (row["correlation_count"].as_i64().unwrap(), at as f64 / 1e6);
        ours.entry(row["rule_id"].as_str().unwrap().to_string()).or_default().insert(group.to_lowercase(), seen);
    }
    let oracle = pysigma(case.events.iter().map(|(_, e)| e), case._dir.path(), rules);
    let (mut theirs, mut refused) = (Groups::new(), Vec::new());
    for line in oracle.lines() {
        match line.split('\t').collect::<Vec<_>>()[..] {
            ["group", rule, group, count, first] => {
                // A sum or a mean is a number with a fraction in pySigma; trailsql's row gives it rounded.
                let seen = (count.parse::<f64>().unwrap().round() as i64, first.parse().unwrap());
                theirs.entry(rule.to_string()).or_default().insert(group.to_lowercase(), seen);
            }
            ["unsupported", rule, why] => refused.push(format!("{rule}: {why}")),
            ["match", ..] => {}
            _ => panic!("pysigma_oracle.py printed {line:?}"),
        }
    }
    (ours, theirs, refused)
}

/// Sixty correlations drawn at random (`random_rules.py --correlations`: every type but the old aggregations, one
/// or two group-by fields, timespans from 30 seconds to 30 days) fire for the same groups in trailsql and in
/// pySigma, with the same largest count, first at the same time. Several hundred more, with other seeds, agreed
/// too (2026-12-05).
#[test]
fn random_correlations_fire_for_the_groups_pysigmas_sqlite_backend_finds() {
    const RULES: usize = 60;
    let Some(root) = realdata() else { return };
    let case = CorrelationCase::new(&root);
    let rules = case._dir.path().join("random");
    let script = crate::common::root().join("tests/sigma/random_rules.py");
    let out = run(Command::new(python())
        .arg(script)
        .args(["-", &seed(), &RULES.to_string()])
        .arg(&rules)
        .arg("--correlations"));
    assert!(out.status.success(), "random_rules.py: {}", stderr(&out));
    let (ours, theirs, refused) = correlation_groups(&case, &rules);
    assert!(refused.is_empty(), "{refused:#?}");
    let differ: Vec<String> = (ours.keys().chain(theirs.keys()).collect::<BTreeSet<_>>())
        .into_iter()
        .filter(|rule| {
            let (a, b) = (ours.get(*rule).cloned().unwrap_or_default(), theirs.get(*rule).cloned().unwrap_or_default());
            a.len() != b.len()
                || a.iter().any(|(g, (n, at))| b.get(g).is_none_or(|(m, first)| n != m || (at - first).abs() > 1e-3))
        })
        .map(|rule| format!("{rule}: trailsql {:?}\npySigma {:?}", ours.get(rule), theirs.get(rule)))
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    let (fired, groups) = (ours.len(), ours.values().map(BTreeMap::len).sum::<usize>());
    assert!(fired >= RULES / 3 && groups > RULES * 2, "{fired} correlations fired, {groups} groups");
}

/// `--since` and `--until`: the detections give the range's events; a correlation gives a row at an event of the
/// range, but its windows there count every event of their timespan, before the start too, as a run over all of
/// the lake would (and a window without a timespan starts at the start).
#[test]
fn a_time_range_gives_its_events_and_correlations_count_back_their_timespan() {
    let Some(root) = realdata() else { return };
    let case = CorrelationCase::new(&root);
    let (since, until) = ("2023-07-10T12:00:00Z", "2024-01-16T00:00:00Z");
    let at = |s| trailsql_lake::time::parse_cloudtrail_time(s).unwrap();
    let range = (Some(at(since)), Some(at(until)));
    let (got, denied, err) = case.run(&["--since", since, "--until", "2024-01-16"]);
    let events = case.events();
    let within: Vec<(i64, &Value)> = events.iter().filter(|(t, _)| in_range(*t, range)).copied().collect();
    let (mut fired, mut looked_back) = (false, false);
    for c in correlations() {
        let want = independent_correlation(&events, &c, range);
        fired |= !want.is_empty();
        // Windows over the range's events alone would differ: the start cuts through a burst.
        looked_back |= independent_correlation(&within, &c, (None, None)) != want;
        assert_eq!(got.get(c.id).cloned().unwrap_or_default(), want, "{}", c.id);
    }
    assert!(fired && looked_back, "choose a range that holds a group, and starts inside one");
    let want = case.denied(range);
    assert!(!want.is_empty() && want.len() < case.denied((None, None)).len());
    assert_eq!(denied, want);
    assert!(err.contains(&format!("events from {since} until {until}")), "{err}");
}

/// `--account`: the rules run as over a lake of those accounts alone; the detections give the rows a whole run
/// gives for them, and a correlation counts their events only.
#[test]
fn accounts_scope_a_run_to_their_events() {
    let Some(root) = realdata() else { return };
    let case = CorrelationCase::new(&root);
    let rows = |args: &[&str]| -> Vec<Value> {
        let out =
            run(bin().args(["sigma", "--format", "ndjson"]).args(args).arg("--lake").arg(&case.lake).arg(&case.rules));
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let accounts = ["123456789012", "111111111111"];
    let all = rows(&[]);
    let scoped = rows(&["--account", accounts[0], "--account", accounts[1]]);
    let of_accounts = |r: &&Value| accounts.contains(&r["account_id"].as_str().unwrap());
    assert!(scoped.iter().all(|r| of_accounts(&r)), "{scoped:?}");
    let detections = |rows: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = (rows.iter())
            .filter(|r| r["correlation_group"].is_null() && of_accounts(r))
            .map(|r| r["eventid"].to_string())
            .collect();
        v.sort();
        v
    };
    let want = detections(&all);
    assert!(!want.is_empty() && want.len() < all.iter().filter(|r| r["correlation_group"].is_null()).count());
    assert_eq!(detections(&scoped), want);
    let denied_twice =
        |rows: &[Value]| rows.iter().find(|r| r["rule_id"] == "denied_twice").map(|r| r["correlation_count"].clone());
    assert_ne!(denied_twice(&scoped), denied_twice(&all), "the correlation counts the accounts' events only");
}

/// A correlation's rows by (rule, group, UTC day), each with the event of its row.
type DayRows = BTreeMap<(String, String, i64), String>;

/// The rows of a run, from its ndjson: each detection's (rule, event ID), and the correlations'.
fn rows_of(out: &std::process::Output) -> (Vec<(String, String)>, DayRows) {
    assert!(out.status.success(), "{}", stderr(out));
    let (mut detections, mut correlations) = (Vec::new(), BTreeMap::new());
    for line in stdout(out).lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let rule = row["rule_id"].as_str().unwrap().to_string();
        let event = row["eventid"].as_str().unwrap_or_default().to_string();
        match row["correlation_group"].as_str() {
            None => detections.push((rule, event)),
            Some(group) => {
                let t = trailsql_lake::time::parse_cloudtrail_time(row["eventtime"].as_str().unwrap()).unwrap();
                let key = (rule, group.to_string(), t.div_euclid(DAY));
                assert!(correlations.insert(key, event).is_none(), "a row per group and day: {line}");
            }
        }
    }
    detections.sort();
    (detections, correlations)
}

const DAY: i64 = 86_400_000_000;

/// `--checkpoint FILE`, for a scheduler: each run reads the partitions whose files changed since the last one and
/// gives the rows no earlier run gave, so that every match is given once, however late its event reached the lake;
/// a correlation gives a row per group and day. A run that fails leaves the checkpoint as it was.
#[test]
fn a_checkpoint_gives_every_match_once_however_late_its_event_arrives() {
    let Some(root) = realdata() else { return };
    let case = CorrelationCase::new(&root);
    let dir = tempfile::tempdir().unwrap();
    // The events of half of the accounts arrive in two deliveries, the second holding every other event of the
    // first's days: late events, into partitions a run has read.
    let late = |i: usize, e: &Value| {
        i % 2 == 1 && text(e, &["recipientAccountId"]).is_some_and(|a| a.ends_with(['0', '2', '4', '6', '8']))
    };
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (i, (_, e)) in case.events.iter().enumerate() {
        if late(i, e) { second.push(e.clone()) } else { first.push(e.clone()) }
    }
    for (name, events) in [("first", &first), ("second", &second)] {
        std::fs::create_dir(dir.path().join(name)).unwrap();
        let records = serde_json::json!({ "Records": events });
        std::fs::write(dir.path().join(name).join("delivery.json"), records.to_string()).unwrap();
    }
    // All the correlations, some of whose conditions more events can undo (`lt`, `not`): the run reads whole days
    // for them. Then those whose counts only grow, the late events converted beside the partitions' files: the run
    // reads the hours around the new events.
    let growing = dir.path().join("growing");
    std::fs::create_dir(&growing).unwrap();
    for name in ["base", "error_burst", "recon", "errors_and_iam", "legacy"] {
        std::fs::copy(case.rules.join(format!("{name}.yml")), growing.join(format!("{name}.yml"))).unwrap();
    }
    for (round, rules) in [&case.rules, &growing].into_iter().enumerate() {
        let lake = dir.path().join(format!("lake{round}"));
        let checkpoint = dir.path().join(format!("state{round}"));
        let sigma = |checkpoint: &Path, extra: &[&str]| {
            run(bin()
                .args(["sigma", "--format", "ndjson", "--checkpoint"])
                .arg(checkpoint)
                .args(extra)
                .arg("--lake")
                .arg(&lake)
                .arg(rules))
        };

        convert_lib(&[&dir.path().join("first")], &lake);
        let one = sigma(&checkpoint, &[]);
        let (mut detections, mut groups) = rows_of(&one);
        assert!(!detections.is_empty() && !groups.is_empty());
        let again = sigma(&checkpoint, &[]);
        assert!(stdout(&again).is_empty() && stderr(&again).contains("nothing new in the lake since the last run"));

        if round == 0 {
            convert_lib(&[&dir.path().join("second")], &lake);
        } else {
            // Beside the partitions' files rather than merged with them, as in a lake of big partitions: the new
            // files are a small part of the days, and the run reads the hours of their events first.
            let out = run(bin()
                .arg("convert")
                .arg(dir.path().join("second"))
                .arg("--lake")
                .arg(&lake)
                .args(["--compact-below", "1"]));
            assert!(out.status.success(), "{}", stderr(&out));
        }
        // A run that fails (its output cannot be written) leaves the checkpoint as it was.
        let before = std::fs::read(&checkpoint).unwrap();
        let failed = sigma(&checkpoint, &["-o", dir.path().join("no-such-dir/out").to_str().unwrap()]);
        assert_eq!(failed.status.code(), Some(2), "{}", stderr(&failed));
        assert_eq!(std::fs::read(&checkpoint).unwrap(), before);
        let two = sigma(&checkpoint, &[]);
        let err = stderr(&two);
        let around = "the correlations read the events around the ";
        assert_eq!(
            err.contains(around),
            round == 1,
            "only the windows of growing counts read around the new events: {err}"
        );
        let changed = err.lines().find(|l| l.contains("partitions since the last run")).unwrap();
        let (n, of) = changed.split_once(" new data files in ").unwrap().1.split_once(" of ").unwrap();
        let of: usize = of.split(' ').next().unwrap().parse().unwrap();
        assert!(n.parse::<usize>().unwrap() < of, "only the partitions of the late events are read: {changed}");
        assert!(err.contains("rows given by earlier runs left out"), "{err}");
        let (d2, c2) = rows_of(&two);
        assert!(!d2.is_empty() && !c2.is_empty(), "{err}");
        detections.extend(d2);
        detections.sort();
        for (k, v) in c2 {
            assert!(groups.insert(k.clone(), v).is_none(), "given twice: {k:?}");
        }

        // Every detection's row once: what one run over the whole lake gives.
        let whole = run(bin().args(["sigma", "--format", "ndjson", "--lake"]).arg(&lake).arg(rules));
        assert_eq!(detections, rows_of(&whole).0);
        // Every (group, day) of the correlations: what a first run over the whole lake gives, each at the event where
        // an independent count finds its condition first held that day.
        let fresh = rows_of(&sigma(&dir.path().join(format!("fresh{round}")), &[])).1;
        assert_eq!(groups.keys().collect::<Vec<_>>(), fresh.keys().collect::<Vec<_>>());
        let events = case.events();
        let days: BTreeSet<i64> = events.iter().map(|(t, _)| t.div_euclid(DAY)).collect();
        let mut want = BTreeMap::new();
        for c in correlations().into_iter().filter(|c| rules.join(format!("{}.yml", c.id)).exists()) {
            for d in &days {
                for (group, (event, _)) in independent_correlation(&events, &c, (Some(d * DAY), Some((d + 1) * DAY))) {
                    want.insert((c.id.to_string(), group, *d), event);
                }
            }
        }
        let of = |rule: &str| -> Vec<_> {
            fresh.iter().filter(|((r, ..), _)| r == rule).map(|((_, g, d), e)| (g, d, e)).collect()
        };
        assert_eq!(of("legacy_error_burst"), of("error_burst"), "`| count() by … > 9` is `gte: 10`");
        // The rules the independent count does not read alone (`failed_sign_ins` gives rows of its own where the
        // correlation that counts it is not among the rules).
        let fresh: BTreeMap<_, _> = (fresh.iter())
            .filter(|((rule, ..), _)| {
                !["denied_twice", "legacy_error_burst", "failed_sign_ins"].contains(&rule.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let differ: Vec<_> = (fresh.iter().filter(|(k, v)| want.get(*k) != Some(v)))
            .chain(want.iter().filter(|(k, v)| fresh.get(*k) != Some(v)))
            .collect();
        assert!(differ.is_empty(), "the run's rows or the independent count's, not both: {differ:?}");
    }
}

/// A late event changes the windows after it, on its day and on the days its timespan reaches, in partitions no
/// delivery touched: a run with a checkpoint gives the row of a window it completes there.
#[test]
fn a_late_event_completes_a_window_in_a_partition_that_did_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let event = |id: &str, account: &str, time: &str| {
        serde_json::json!({
            "eventVersion": "1.08", "eventTime": time, "eventID": id, "recipientAccountId": account,
            "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "awsRegion": "us-east-1",
            "errorCode": "AccessDenied", "sourceIPAddress": "203.0.113.9", "eventType": "AwsApiCall",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111111111111:user/x"}
        })
    };
    let deliver = |name: &str, events: Vec<Value>| {
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("d.json"), serde_json::json!({ "Records": events }).to_string()).unwrap();
        path
    };
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        [
            detection("denied", "  sel:\n    errorCode: AccessDenied\n  condition: sel\n"),
            "title: twice\nid: twice\ncorrelation:\n  type: event_count\n  rules: [denied]\n  group-by: [sourceIPAddress]\n  timespan: 1d\n  condition:\n    gte: 2\n".to_string(),
        ]
        .join("---\n"),
    )
    .unwrap();
    let lake = dir.path().join("lake");
    let checkpoint = dir.path().join("state");
    // With the checkpoint above, unless `args` name another.
    let sigma = |args: &[String]| {
        let mut cmd = bin();
        cmd.args(["sigma", "--format", "ndjson"]);
        if args.is_empty() {
            cmd.arg("--checkpoint").arg(&checkpoint);
        }
        rows_of(&run(cmd.args(args).arg("--lake").arg(&lake).arg(&rules))).1
    };
    convert_lib(&[&deliver("first", vec![event("a", "111111111111", "2024-03-02T00:10:00Z")])], &lake);
    assert!(sigma(&[]).is_empty());
    // Runs from the start of that day, with a checkpoint of their own.
    let since = ["--since", "2024-03-02", "--checkpoint", dir.path().join("since").to_str().unwrap()].map(String::from);
    assert!(sigma(&since).is_empty());
    // Another account's event, twenty minutes before, delivered late: a partition of the day before.
    convert_lib(&[&deliver("late", vec![event("b", "222222222222", "2024-03-01T23:50:00Z")])], &lake);
    let day = trailsql_lake::time::parse_cloudtrail_time("2024-03-02T00:00:00Z").unwrap().div_euclid(DAY);
    let want =
        BTreeMap::from([(("twice".to_string(), "sourceIPAddress=203.0.113.9".to_string(), day), "a".to_string())]);
    assert_eq!(sigma(&[]), want);
    // Before the start, but within the timespan the window looks back: the runs from the start see it too.
    assert_eq!(sigma(&since), want);
}

/// A delivery that adds a file to a partition of gigabytes: a run with a checkpoint reads that file for its
/// detections, not the partition. The old file here is damaged in place (same name, same size): a run that opened it
/// would fail, as a run without a checkpoint does.
#[test]
fn a_scheduler_run_opens_only_the_data_files_that_are_new() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, detection("denied", "  sel:\n    errorCode: AccessDenied\n  condition: sel\n")).unwrap();
    let lake = dir.path().join("lake");
    let checkpoint = dir.path().join("state");
    let deliver = |name: &str, ids: &[&str]| {
        let events: Vec<Value> = (ids.iter())
            .map(|id| {
                serde_json::json!({
                    "eventVersion": "1.08", "eventID": id, "eventTime": "2024-03-01T10:00:00Z",
                    "recipientAccountId": "111111111111", "eventSource": "s3.amazonaws.com",
                    "eventName": "GetObject", "awsRegion": "us-east-1", "errorCode": "AccessDenied",
                    "sourceIPAddress": "203.0.113.9", "eventType": "AwsApiCall"
                })
            })
            .collect();
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("d.json"), serde_json::json!({ "Records": events }).to_string()).unwrap();
        // Big files are not merged: below one byte, none is small.
        let out = run(bin().arg("convert").arg(&path).arg("--lake").arg(&lake).args(["--compact-below", "1"]));
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let sigma = |with_checkpoint: bool| {
        let mut cmd = bin();
        cmd.args(["sigma", "--format", "ndjson", "--lake"]).arg(&lake).arg(&rules);
        if with_checkpoint {
            cmd.arg("--checkpoint").arg(&checkpoint);
        }
        run(&mut cmd)
    };
    deliver("first", &["a1", "a2"]);
    let ids = |out: &std::process::Output| rows_of(out).0.into_iter().map(|(_, e)| e).collect::<Vec<_>>();
    assert_eq!(ids(&sigma(true)), ["a1", "a2"]);
    let partition = lake.join("account_id=111111111111/event_date=2024-03-01");
    let old: Vec<_> = std::fs::read_dir(&partition).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(old.len(), 1, "{old:?}");
    deliver("second", &["b1"]);
    assert_eq!(std::fs::read_dir(&partition).unwrap().count(), 2, "the delivery added a file");
    let size = std::fs::metadata(&old[0]).unwrap().len();
    std::fs::write(&old[0], vec![b'x'; size as usize]).unwrap();

    let out = sigma(true);
    assert!(stderr(&out).contains("1 new data files in 1 of 1 partitions since the last run"), "{}", stderr(&out));
    assert_eq!(ids(&out), ["b1"]);
    let whole = sigma(false);
    assert_eq!(whole.status.code(), Some(2), "a run that reads the damaged file fails: {}", stderr(&whole));
    let again = sigma(true);
    assert!(again.status.success() && stdout(&again).is_empty(), "{}", stderr(&again));
}

/// Runs with a checkpoint while conversions commit: whatever each run saw, every match is given once by the runs
/// together, the last one after the conversions.
#[test]
fn checkpoint_runs_beside_a_converting_writer_give_every_match_once() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, detection("denied", "  sel:\n    errorCode: AccessDenied\n  condition: sel\n")).unwrap();
    let lake = dir.path().join("lake");
    let checkpoint = dir.path().join("state");
    // Twelve deliveries of forty events each, over two accounts and three days: each adds to partitions that
    // earlier runs read.
    let deliveries: Vec<std::path::PathBuf> = (0..12)
        .map(|n| {
            let events: Vec<Value> = (0..40)
                .map(|i| {
                    serde_json::json!({
                        "eventVersion": "1.08", "eventID": format!("{n}-{i}"),
                        "eventTime": format!("2024-03-0{}T{:02}:{:02}:00Z", 1 + i % 3, n, i),
                        "recipientAccountId": if i % 2 == 0 { "111111111111" } else { "222222222222" },
                        "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "awsRegion": "us-east-1",
                        "errorCode": if i % 4 == 0 { "AccessDenied" } else { "NoSuchKey" },
                        "sourceIPAddress": "203.0.113.9", "eventType": "AwsApiCall"
                    })
                })
                .collect();
            let path = dir.path().join(format!("d{n}"));
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("d.json"), serde_json::json!({ "Records": events }).to_string()).unwrap();
            path
        })
        .collect();
    // A run fails when a conversion deletes a file it listed (the file's events are in the one that replaced
    // it): it says so, and leaves the checkpoint, so that the next run gives its rows.
    let sigma = || {
        let out = run(bin()
            .args(["sigma", "--format", "ndjson", "--checkpoint"])
            .arg(&checkpoint)
            .arg("--lake")
            .arg(&lake)
            .arg(&rules));
        match out.status.code() {
            Some(2) => {
                assert!(
                    stderr(&out).contains("while the query read them; nothing is lost: run it again"),
                    "{}",
                    stderr(&out)
                );
                Vec::new()
            }
            _ => rows_of(&out).0,
        }
    };
    convert_lib(&[&deliveries[0]], &lake);
    let mut given = sigma();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for d in &deliveries[1..] {
                let out = run(bin().args(["convert", "--quiet"]).arg(d).arg("--lake").arg(&lake));
                assert!(out.status.success(), "{}", stderr(&out));
            }
        });
        while !writer.is_finished() {
            given.extend(sigma());
        }
    });
    given.extend(sigma());
    given.sort();
    let want: Vec<(String, String)> = (0..12)
        .flat_map(|n| (0..40).step_by(4).map(move |i| ("denied".to_string(), format!("{n}-{i}"))))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(given, want);
}

/// A checkpoint written before checkpoints kept partitions (one time) starts the runs there; `--until` has no
/// meaning with a checkpoint, a file that is not one is an error that names it, and a run while another holds
/// the checkpoint stops.
#[test]
fn a_checkpoint_of_one_time_starts_there_and_other_files_are_refused() {
    let Some(root) = realdata() else { return };
    let case = CorrelationCase::new(&root);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("state");
    let t1 = "2023-07-10T12:00:00Z";
    std::fs::write(&checkpoint, format!("{t1}\n")).unwrap();
    let out = run(bin()
        .args(["sigma", "--format", "ndjson", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--lake")
        .arg(&case.lake)
        .arg(&case.rules));
    let denied: Vec<String> =
        rows_of(&out).0.into_iter().filter(|(rule, _)| rule == "ct_denied").map(|(_, event)| event).collect();
    let since = trailsql_lake::time::parse_cloudtrail_time(t1).unwrap();
    assert_eq!(denied, case.denied((Some(since), None)));
    let state: Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    assert_eq!(state["since"], "2023-07-10T12:00:00+00:00", "{state}");

    let sigma = |args: &[&str]| run(bin().args(["sigma"]).args(args).arg("--lake").arg(&case.lake).arg(&case.rules));
    let out = sigma(&["--checkpoint", checkpoint.to_str().unwrap(), "--until", "1h"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--checkpoint takes no --until"), "{}", stderr(&out));
    std::fs::write(&checkpoint, "yesterday\n").unwrap();
    let out = sigma(&["--checkpoint", checkpoint.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("state: not a checkpoint (written by `trailsql sigma --checkpoint`)"),
        "{}",
        stderr(&out)
    );
    let mut left: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["state", "state.lock"], "no temporary file is left");

    // A run while another holds the checkpoint stops at once, naming it.
    std::fs::remove_file(&checkpoint).unwrap();
    let held = std::fs::OpenOptions::new().write(true).open(dir.path().join("state.lock")).unwrap();
    held.lock().unwrap();
    let out = sigma(&["--checkpoint", checkpoint.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("another `trailsql sigma --checkpoint` run is using it"), "{}", stderr(&out));
    assert!(!checkpoint.exists());
    drop(held);
    assert!(sigma(&["--checkpoint", checkpoint.to_str().unwrap()]).status.success());
}

/// A time that is not one, or a range that holds none, is a usage error that names it, before any lake is read.
#[test]
fn a_time_that_cannot_be_read_or_an_empty_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.yml");
    std::fs::write(&rules, detection("a", "  sel:\n    eventName: StopLogging\n  condition: sel\n")).unwrap();
    let missing = dir.path().join("no-lake");
    let out = run(bin().args(["sigma", "--since", "yesterday", "--lake"]).arg(&missing).arg(&rules));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"yesterday\": expected a time (2026-12-04T18:00:00Z), a date"), "{}", stderr(&out));
    let out = run(bin()
        .args(["sigma", "--since", "2024-01-02", "--until", "2024-01-01", "--lake"])
        .arg(&missing)
        .arg(&rules));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let want = "--since 2024-01-02T00:00:00Z is not before --until 2024-01-01T00:00:00Z";
    assert!(stderr(&out).contains(want), "{}", stderr(&out));
    assert!(!missing.exists(), "no lake was made");
}

/// Correlations share the rules' one scan, each nesting its windows in the query: sixty of them run, and each
/// gives its own row (a threshold of k over the whole data fires when the data holds at least k events).
#[test]
fn sixty_correlations_run_in_one_query_each_with_its_own_rows() {
    let Some(root) = realdata() else { return };
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    convert_lib(&[&root], &lake);
    let denied = count(&lake, "SELECT count(*) FROM cloudtrail WHERE errorcode = 'AccessDenied'");
    assert!((2..60).contains(&denied), "choose a rule that the real data matches between 2 and 59 times: {denied}");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let mut docs = vec![detection("ct_denied", "  sel:\n    errorCode: AccessDenied\n  condition: sel\n")];
    for k in 1..=60 {
        docs.push(format!(
            "title: at least {k}\nid: n{k}\ncorrelation:\n  type: event_count\n  rules: [ct_denied]\n  timespan: \
             36500d\n  condition:\n    gte: {k}\n"
        ));
    }
    std::fs::write(rules.join("rules.yml"), docs.join("---\n")).unwrap();
    let out = run(bin().args(["sigma", "--format", "ndjson", "--lake"]).arg(&lake).arg(&rules));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut fired = BTreeSet::new();
    for line in stdout(&out).lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["correlation_count"].as_i64(), Some(denied), "{line}");
        assert!(fired.insert(row["rule_id"].as_str().unwrap().to_string()), "one row per correlation: {line}");
    }
    let want: BTreeSet<String> = (1..=denied).map(|k| format!("n{k}")).collect();
    assert_eq!(fired, want);
    // The tally on standard error names ten of them (one row each: by ID), and counts the others.
    let err = stderr(&out);
    assert!(err.contains("sigma: matches by rule, most first:\n         1  n1: at least 1\n"), "{err}");
    assert!(err.contains(&format!("         …  and {} more rules\n", denied - 10)), "{err}");
}

/// Each script twice: in UTF-8 (events `e…`) and in UTF-16LE, as PowerShell's `-EncodedCommand` takes it (`w…`).
#[test]
fn base64_modifiers_find_a_value_at_every_offset_or_only_aligned() {
    use base64::Engine as _;
    let encode = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let utf16le = |s: &str| s.encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>();
    let scripts = ["/bin/bash -c id", "#!/bin/bash\ncurl x | sh", "x/bin/bash", "/bin/sh", "ab /bin/bash"];
    let encodings = [("e", scripts.map(|s| encode(s.as_bytes()))), ("w", scripts.map(|s| encode(&utf16le(s))))];
    let records: Vec<Value> = encodings
        .iter()
        .flat_map(|(prefix, encoded)| encoded.iter().enumerate().map(move |(i, data)| (format!("{prefix}{i}"), data)))
        .map(|(id, data)| {
            serde_json::json!({"eventVersion": "1.08", "eventTime": "2024-05-01T10:00:00Z", "eventID": id,
                "eventSource": "ec2.amazonaws.com", "eventName": "ModifyInstanceAttribute", "awsRegion": "us-east-1",
                "recipientAccountId": "111122223333", "userIdentity": {"type": "IAMUser", "userName": "u"},
                "requestParameters": {"instanceId": "i-1", "userData": data}})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("events.json");
    std::fs::write(&src, serde_json::to_vec(&serde_json::json!({ "Records": records })).unwrap()).unwrap();
    let lake = dir.path().join("lake");
    convert_lib(&[&src], &lake);
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for (id, modifiers) in [
        ("offsets", "base64offset|contains"),
        ("aligned", "base64|contains"),
        ("wide_offsets", "wide|base64offset|contains"),
        ("wide_aligned", "wide|base64|contains"),
    ] {
        let body = format!("  sel:\n    requestParameters.userData|{modifiers}: /bin/bash\n  condition: sel\n");
        std::fs::write(rules.join(format!("{id}.yml")), detection(id, &body)).unwrap();
    }
    let out = run(bin().args(["sigma", "--format", "csv", "--lake"]).arg(&lake).arg(&rules));
    assert!(out.status.success(), "{}", stderr(&out));
    let found = |rule: &str| -> BTreeSet<String> {
        stdout(&out)
            .lines()
            .filter(|l| l.starts_with(&format!("{rule},")))
            .map(|l| l.split(',').nth(10).unwrap().to_string())
            .collect()
    };
    // Base64 of a text holds the encoding of a part of it when the part starts at a multiple of three bytes; in
    // UTF-16 the part at character `at` starts at byte `2 * at`.
    let want = |aligned: bool, prefix: &str, width: usize| -> BTreeSet<String> {
        scripts
            .iter()
            .enumerate()
            .filter(|(_, s)| s.match_indices("/bin/bash").any(|(at, _)| !aligned || (width * at).is_multiple_of(3)))
            .map(|(i, _)| format!("{prefix}{i}"))
            .collect()
    };
    assert_eq!(found("offsets"), want(false, "e", 1));
    assert_eq!(found("aligned"), want(true, "e", 1));
    assert_eq!(found("wide_offsets"), want(false, "w", 2));
    assert_eq!(found("wide_aligned"), want(true, "w", 2));
    assert!(want(true, "e", 1).len() < want(false, "e", 1).len(), "the scripts must tell the two apart");
    // The encodings as pySigma, which the specification follows, makes them.
    let oracle = pysigma(&records, dir.path(), &rules);
    for rule in ["offsets", "aligned", "wide_offsets", "wide_aligned"] {
        let prefix = format!("match\t{rule}\t");
        let theirs: BTreeSet<String> =
            oracle.lines().filter_map(|l| l.strip_prefix(&prefix)).map(String::from).collect();
        assert_eq!(found(rule), theirs, "{rule}: trailsql and pySigma");
    }
}

/// A subquery named `sigma_stream` that several parts of a statement read is computed once, and every reader gets
/// all of it, to its end, though the plan is dropped once its streams start: `EXPLAIN` shows the subquery under its
/// first reader only. An error in it reaches the statement.
#[test]
fn the_shared_stream_is_computed_once_and_read_whole_by_every_reader() {
    let lake = sample_lake();
    // Hundreds of batches: a reader that lost the end of the stream gives a smaller count.
    let sql = "WITH sigma_stream AS (SELECT value, value % 3 AS r FROM range(2000000)) \
               SELECT 'a all' AS k, count(*) AS n FROM sigma_stream \
               UNION ALL SELECT 'b r0', count(*) FROM sigma_stream WHERE r = 0 \
               UNION ALL SELECT 'c max', max(value) FROM sigma_stream ORDER BY k";
    for _ in 0..3 {
        let out = run(bin().args(["-q", "query", "--format", "csv", "--lake"]).arg(lake).arg(sql));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "k,n\na all,2000000\nb r0,666667\nc max,1999999\n");
    }
    let out = run(bin().args(["-q", "query", "--format", "csv", "--lake"]).arg(lake).arg(format!("EXPLAIN {sql}")));
    let plan = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    for reader in 1..=3 {
        assert!(plan.contains(&format!("SharedExec: sigma_stream, reader {reader}\n")), "{plan}");
    }
    assert_eq!(plan.matches("LazyMemoryExec").count(), 1, "{plan}");

    // Its copies are made one before the other analyzer rules go over each (with 510 rules, planning took three
    // times as long with the rule last).
    let session = rt().block_on(session_over(lake, &Default::default()));
    assert_eq!(session.ctx.state().analyzer().rules[0].name(), "share_stream");

    let failing = "WITH sigma_stream AS (SELECT 1 / (value - 1500000) AS x FROM range(2000000)) \
                   SELECT count(*) FROM sigma_stream UNION ALL SELECT count(x) FROM sigma_stream";
    let out = run(bin().args(["-q", "query", "--lake"]).arg(lake).arg(failing));
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("Divide by zero"), "{}", stderr(&out));
}

/// Each `AND` and `OR` copies only the columns it reads when it evaluates its right side over some rows
/// (`session::selection`): the rule is the last of the physical optimizer's, after every rule that moves
/// expressions. (What it gives is tested against DataFusion's own operators in the module's tests.)
#[test]
fn boolean_operators_are_narrowed_last() {
    let session = rt().block_on(session_over(sample_lake(), &Default::default()));
    let physical = session.ctx.state().physical_optimizers().iter().map(|r| r.name().to_string()).collect::<Vec<_>>();
    assert_eq!(physical.last().map(String::as_str), Some("NarrowSelections"), "{physical:?}");
}

/// A rule directory's query scans the lake once: its detections and its correlation read one shared stream.
#[test]
fn detections_and_correlations_read_one_scan_of_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path();
    let head = "logsource:\n  product: aws\n  service: cloudtrail\n";
    std::fs::write(
        rules.join("a.yml"),
        format!("title: a\nid: a\n{head}detection:\n  sel:\n    eventName: AssumeRoot\n  condition: sel\n"),
    )
    .unwrap();
    std::fs::write(
        rules.join("n.yml"),
        format!(
            "title: n\nid: n\n{head}detection:\n  sel:\n    errorCode: AccessDenied\n  condition: sel | count() by \
             sourceIPAddress > 1\n"
        ),
    )
    .unwrap();
    let out = run(bin().args(["-q", "sigma", "--explain"]).arg(rules));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let all = text.split("-- all of them, as they run: one query\n").nth(1).expect("the fused query").trim_end();
    let out = run(bin()
        .args(["-q", "query", "--format", "csv", "--lake"])
        .arg(sample_lake())
        .arg(format!("EXPLAIN {}", all.trim_end_matches(';'))));
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert_eq!(plan.matches("DataSourceExec: file_groups").count(), 1, "{plan}");
    assert_eq!(plan.matches("SharedExec: sigma_stream").count(), 2, "{plan}");
}

/// The Parquet scan of a rule directory's query gives `useridentity` cut down to the fields the rules and
/// `principal_name` read (DataFusion left the whole struct to the scan there), with the same matches; a query that
/// gives the struct itself reads it whole. The conditions of the rules that name no events are computed once.
#[test]
fn scans_give_only_the_identity_fields_that_are_read() {
    use datafusion::physical_plan::displayable;
    use trailsql::session::SessionOptions;
    let dir = tempfile::tempdir().unwrap();
    let head = "logsource:\n  product: aws\n  service: cloudtrail\n";
    let rules = [
        ("a", "  sel:\n    eventName: AssumeRoot\n  condition: sel\n"),
        (
            "b",
            "  sel:\n    eventName: CreateAccessKey\n    requestParameters.userName|fieldref: userIdentity.userName\n  condition: sel\n",
        ),
        ("c", "  sel:\n    userIdentity.sessionContext.sessionIssuer.type: Role\n  condition: sel\n"),
        (
            "d",
            "  sel:\n    eventSource: sts.amazonaws.com\n    eventName: [AssumeRole, GetCallerIdentity]\n  condition: sel\n",
        ),
        (
            "e",
            "  sel:\n    userIdentity.type: Root\n  filter:\n    eventType: AwsServiceEvent\n  condition: sel and not filter\n",
        ),
        (
            "f",
            "  sel:\n    userIdentity.arn|re: '.+:assumed-role/.+'\n  filter:\n    - eventSource: ssm.amazonaws.com\n    - sourceIPAddress: AWS Internal\n  condition: sel and not 1 of filter*\n",
        ),
        ("g", "  sel:\n    userAgent|contains: [kali, Pacu]\n  condition: sel\n"),
        (
            "h",
            "  sel:\n    eventName: RunInstances\n    requestParameters.instanceType|startswith: t\n  condition: sel\n",
        ),
        (
            "j",
            "  sel:\n    eventSource: ec2.amazonaws.com\n    eventName: [RunInstances, CreateKeyPair]\n  condition: sel\n",
        ),
        (
            "k",
            "  sel:\n    eventSource: iam.amazonaws.com\n    eventName: [CreateAccessKey, CreateUser]\n  condition: sel\n",
        ),
        (
            "l",
            "  sel:\n    eventSource: cloudtrail.amazonaws.com\n    eventName: [StopLogging, DeleteTrail]\n  condition: sel\n",
        ),
        ("m", "  sel:\n    errorCode: AccessDenied\n  condition: sel | count() by sourceIPAddress > 1\n"),
        (
            "i",
            "  sel:\n    eventName: PutBucketPolicy\n    requestParameters|contains|all: ['\"Effect\"', '\"Principal\"']\n  condition: sel\n",
        ),
    ];
    for (id, body) in rules {
        std::fs::write(
            dir.path().join(format!("{id}.yml")),
            format!("title: {id}\nid: {id}\n{head}detection:\n{body}"),
        )
        .unwrap();
    }
    let set = trailsql::sigma::load(&[dir.path().to_path_buf()], None, Default::default()).unwrap();
    let sql = trailsql::sigma::query(&set);
    let lake = sample_lake();
    rt().block_on(async {
        let sigma =
            SessionOptions { no_filter_pushdown: true, target_partitions: Some(2), ..SessionOptions::default() };
        let sigma = session_over(lake, &sigma).await;
        let plan_of = |sql: String| {
            let ctx = sigma.ctx.clone();
            async move {
                let plan = ctx.sql(&sql).await.unwrap().create_physical_plan().await.unwrap();
                displayable(plan.as_ref()).indent(true).to_string()
            }
        };
        let scan_of = |sql: String| async {
            let text = plan_of(sql).await;
            text.lines().find(|l| l.contains("DataSourceExec: file_groups")).expect("a scan").to_string()
        };
        // The JSON paths of rules b and h are computed in their conditions, behind the test of their event names,
        // not for every event of the stream.
        let plan = plan_of(sql.clone()).await;
        assert!(plan.matches("json_values(requestparameters").count() >= 2, "{plan}");
        assert!(!plan.contains("__datafusion_extracted"), "{plan}");
        // The conditions of the four rules that name no events (c, e, f, g) are computed once each, below the
        // scan's filter, which reads them as the list of matches does: not written back into the filter.
        assert_eq!(plan.matches("kept_in_place(").count(), 4, "{plan}");
        assert_eq!(plan.matches("matches_regex(").count(), 1, "{plan}");
        assert_eq!(plan.matches("icontains(useragent").count(), 2, "{plan}");
        let scan = scan_of(sql.clone()).await;
        let read_whole = |scan: &str| {
            [", useridentity,", "[useridentity,", ", useridentity]", "[useridentity]"].iter().any(|w| scan.contains(w))
        };
        assert!(scan.contains(") as useridentity,") && !read_whole(&scan), "{scan}");
        for field in ["get_field(useridentity@1, type)", "get_field(useridentity@1, username)", "sessionissuer"] {
            assert!(scan.contains(field), "{field}: {scan}");
        }
        assert!(!scan.contains("accesskeyid") && !scan.contains("webidfederationdata"), "{scan}");
        let whole = scan_of("SELECT useridentity FROM cloudtrail WHERE useridentity['type'] = 'Root'".into()).await;
        assert!(read_whole(&whole) && !whole.contains("named_struct"), "{whole}");

        let rows = |s: &trailsql::session::Session, sql: String| {
            let ctx = s.ctx.clone();
            async move {
                let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                let mut lines: Vec<String> = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string()
                    .lines()
                    .map(String::from)
                    .collect();
                lines.sort();
                lines
            }
        };
        let plain = session_over(lake, &SessionOptions::default()).await;
        let (narrowed, read_whole) = (rows(&sigma, sql.clone()).await, rows(&plain, sql).await);
        assert!(narrowed.len() > 5, "{narrowed:?}");
        assert_eq!(narrowed, read_whole);
    });
}
