//! Realistic CloudTrail corpora in the delivery layout: the bundled sample-data (with every trap the views must get
//! right) and large corpora for benchmarks. Deterministic: the same settings give the same bytes.

use std::io::{Result, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use flate2::Compression;
use serde_json::{Value, json};

/// An I/O error that names its path.
fn named(path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// SplitMix64: small, fast and good enough for synthetic logs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
    /// An access key ID: `AKIA` or `ASIA` and 16 upper-case letters and digits.
    pub fn key(&mut self, prefix: &str) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut s = prefix.to_string();
        for _ in 0..16 {
            s.push(CHARS[self.below(CHARS.len() as u64) as usize] as char);
        }
        s
    }
    pub fn ip(&mut self) -> String {
        let pools = [[198, 51, 100], [203, 0, 113], [192, 0, 2]];
        let p = self.pick(&pools);
        format!("{}.{}.{}.{}", p[0], p[1], p[2], 1 + self.below(254))
    }
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// STS's credential expiration format: `Oct 25, 2024, 9:07:11 PM`.
pub fn sts_time(t: DateTime<Utc>) -> String {
    t.format("%b %-d, %Y, %-I:%M:%S %p").to_string()
}

const USER_AGENTS: &[&str] = &[
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.ubuntu.22 prompt/off command/s3.ls",
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.5.0 md/arch#x86_64 lang/python#3.11.8 cfg/retry-mode#legacy Botocore/1.34.69",
    "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.42.0 aws-sdk-go-v2/1.25.3 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.152.0",
    "aws-sdk-go-v2/1.25.3 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/s3#1.51.4",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "AWS Internal",
];

/// One ordinary API call of an account: the noise around what the views look for.
pub fn noise_event(rng: &mut Rng, account: &str, region: &str, t: DateTime<Utc>) -> Value {
    let users = ["alice", "bob", "ci-deploy", "carol"];
    let roles = ["AdminRole", "ReadOnly", "lambda-exec", "ec2-app"];
    let kind = rng.below(10);
    let (identity, ua) = if kind < 3 {
        let user = rng.pick(&users);
        (
            json!({"type": "IAMUser", "principalId": format!("AIDA{}", &rng.key("")[..16]), "arn": format!("arn:aws:iam::{account}:user/{user}"),
                   "accountId": account, "accessKeyId": rng.key("AKIA"), "userName": user}),
            *rng.pick(&USER_AGENTS[..4]),
        )
    } else if kind < 9 {
        let role = rng.pick(&roles);
        let session = format!("{}-{}", role.to_lowercase(), rng.below(1000));
        let created = t - Duration::seconds(rng.below(3000) as i64);
        (
            json!({"type": "AssumedRole", "principalId": format!("AROA{}:{session}", &rng.key("")[..16]),
                   "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"), "accountId": account,
                   "accessKeyId": rng.key("ASIA"),
                   "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": format!("AROA{}", &rng.key("")[..16]),
                        "arn": format!("arn:aws:iam::{account}:role/{role}"), "accountId": account, "userName": role},
                        "webIdFederationData": {}, "attributes": {"creationDate": ts(created), "mfaAuthenticated": "false"}}}),
            *rng.pick(USER_AGENTS),
        )
    } else {
        (json!({"type": "AWSService", "invokedBy": "cloudtrail.amazonaws.com"}), "cloudtrail.amazonaws.com")
    };
    let calls: &[(&str, &str, bool)] = &[
        ("ec2.amazonaws.com", "DescribeInstances", true),
        ("ec2.amazonaws.com", "DescribeSecurityGroups", true),
        ("s3.amazonaws.com", "ListBuckets", true),
        ("s3.amazonaws.com", "GetBucketAcl", true),
        ("sts.amazonaws.com", "GetCallerIdentity", true),
        ("iam.amazonaws.com", "ListRoles", true),
        ("kms.amazonaws.com", "Decrypt", true),
        ("logs.amazonaws.com", "CreateLogStream", false),
        ("lambda.amazonaws.com", "Invoke", false),
        ("ssm.amazonaws.com", "GetParameter", true),
        ("ec2.amazonaws.com", "RunInstances", false),
        ("iam.amazonaws.com", "CreateAccessKey", false),
    ];
    let (source, name, read_only) = *rng.pick(calls);
    let request = match name {
        "DescribeInstances" => {
            json!({"instancesSet": {}, "filterSet": {"items": [{"name": "tag:env", "valueSet": {"items": [{"value": "prod"}]}}]}})
        }
        "GetBucketAcl" => {
            json!({"bucketName": format!("data-{account}-{}", rng.below(5)), "Host": "s3.amazonaws.com", "acl": ""})
        }
        "Decrypt" => {
            json!({"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": {"aws:lambda:FunctionArn": format!("arn:aws:lambda:{region}:{account}:function:app")}})
        }
        "CreateLogStream" => {
            json!({"logGroupName": "/aws/lambda/app", "logStreamName": format!("2024/10/25/[$LATEST]{:x}", rng.next_u64())})
        }
        "GetParameter" => json!({"name": "/app/db/password", "withDecryption": true}),
        "RunInstances" => {
            json!({"instanceType": "t3.micro", "minCount": 1, "maxCount": 1, "tagSpecificationSet": {"items": [{"resourceType": "instance", "tags": [{"key": "env", "value": "prod"}]}]}})
        }
        "CreateAccessKey" => json!({"userName": rng.pick(&users)}),
        _ => Value::Null,
    };
    let mut e = json!({
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": ts(t),
        "eventSource": source,
        "eventName": name,
        "awsRegion": if source == "iam.amazonaws.com" { "us-east-1" } else { region },
        "sourceIPAddress": if kind == 9 { "cloudtrail.amazonaws.com".to_string() } else { rng.ip() },
        "userAgent": ua,
        "requestParameters": request,
        "responseElements": if read_only { Value::Null } else { json!({"requestId": rng.uuid()}) },
        "requestID": rng.uuid(),
        "eventID": rng.uuid(),
        "readOnly": read_only,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                       "clientProvidedHostHeader": format!("{}.{region}.amazonaws.com", source.trim_end_matches(".amazonaws.com"))},
    });
    if rng.below(25) == 0 {
        e["errorCode"] = json!("AccessDenied");
        e["errorMessage"] =
            json!(format!("User is not authorized to perform: {}:{name}", source.trim_end_matches(".amazonaws.com")));
        e["responseElements"] = Value::Null;
    }
    if name == "GetBucketAcl" {
        e["resources"] =
            json!([{"accountId": account, "type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::data-{account}")}]);
    }
    e
}

/// The `sts:AssumeRoot` call of a management account, as the IAM documentation shows it.
#[expect(clippy::too_many_arguments, reason = "every field of the call, as the documentation example shows it")]
pub fn assume_root(
    rng: &mut Rng,
    mgmt: &str,
    target_principal: &str,
    task: &str,
    region: &str,
    t: DateTime<Utc>,
    duration: Option<i64>,
    error: Option<&str>,
    key: &str,
) -> Value {
    let mut request = json!({"targetPrincipal": target_principal, "taskPolicyArn": {"arn": format!("arn:aws:iam::aws:policy/root-task/{task}")}});
    if let Some(d) = duration {
        request["durationSeconds"] = json!(d);
    }
    let created = t - Duration::seconds(400);
    let mut e = json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLEMGMT00001:security-admin",
            "arn": format!("arn:aws:sts::{mgmt}:assumed-role/SecurityAdmin/security-admin"), "accountId": mgmt,
            "accessKeyId": rng.key("ASIA"),
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLEMGMT00001",
                "arn": format!("arn:aws:iam::{mgmt}:role/SecurityAdmin"), "accountId": mgmt, "userName": "SecurityAdmin"},
                "webIdFederationData": {}, "attributes": {"creationDate": ts(created), "mfaAuthenticated": "true"}}},
        "eventTime": ts(t),
        "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRoot",
        "awsRegion": region,
        "sourceIPAddress": "192.0.2.10",
        "userAgent": USER_AGENTS[0],
        "requestParameters": request,
        "responseElements": null,
        "requestID": rng.uuid(),
        "eventID": rng.uuid(),
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": mgmt,
        "eventCategory": "Management",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": format!("sts.{region}.amazonaws.com")},
    });
    match error {
        Some(code) => {
            e["errorCode"] = json!(code);
            e["errorMessage"] = json!(format!(
                "User: arn:aws:sts::{mgmt}:assumed-role/SecurityAdmin/security-admin is not authorized to perform: sts:AssumeRoot"
            ));
        }
        None => {
            let expiry = t + Duration::seconds(duration.unwrap_or(900));
            e["responseElements"] = json!({"credentials": {"accessKeyId": key,
                "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLETOKEN", "expiration": sts_time(expiry)}});
        }
    }
    e
}

/// An action of a root session in the member account: `type = Root`, the session's key.
#[expect(clippy::too_many_arguments, reason = "every field of the action, as CloudTrail records it")]
pub fn root_action(
    rng: &mut Rng,
    account: &str,
    key: &str,
    created: DateTime<Utc>,
    t: DateTime<Utc>,
    region: &str,
    call: (&str, &str, Value),
    error: Option<&str>,
) -> Value {
    let (source, name, request) = call;
    let mut e = json!({
        "eventVersion": "1.10",
        "userIdentity": {"type": "Root", "principalId": account, "arn": format!("arn:aws:iam::{account}:root"),
            "accountId": account, "accessKeyId": key,
            "sessionContext": {"attributes": {"creationDate": ts(created), "mfaAuthenticated": "false"}}},
        "eventTime": ts(t),
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": "192.0.2.10",
        "userAgent": USER_AGENTS[0],
        "requestParameters": request,
        "responseElements": null,
        "requestID": rng.uuid(),
        "eventID": rng.uuid(),
        "readOnly": name.starts_with("Get") || name.starts_with("List"),
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": format!("{}.amazonaws.com", source.trim_end_matches(".amazonaws.com"))},
    });
    if let Some(code) = error {
        e["errorCode"] = json!(code);
        e["errorMessage"] = json!("Access denied");
    }
    e
}

/// Writes `{"Records":[...]}` gzipped at a delivery-layout path; returns the path.
pub fn write_delivery(
    root: &Path,
    org: Option<&str>,
    account: &str,
    region: &str,
    delivered: DateTime<Utc>,
    unique: &str,
    records: &[Value],
) -> Result<PathBuf> {
    let mut dir = root.join("AWSLogs");
    if let Some(o) = org {
        dir = dir.join(o);
    }
    dir = dir.join(account).join("CloudTrail").join(region).join(delivered.format("%Y/%m/%d").to_string());
    std::fs::create_dir_all(&dir).map_err(named(&dir))?;
    let name = format!("{account}_CloudTrail_{region}_{}_{unique}.json.gz", delivered.format("%Y%m%dT%H%MZ"));
    let path = dir.join(name);
    let body = serde_json::to_vec(&json!({ "Records": records })).expect("events serialise");
    write_gz(&path, &body)?;
    Ok(path)
}

pub fn write_gz(path: &Path, body: &[u8]) -> Result<()> {
    let f = std::fs::File::create(path).map_err(named(path))?;
    // mtime 0 in the gzip header keeps the output byte-identical between runs.
    let mut gz = flate2::GzBuilder::new().mtime(0).write(f, Compression::new(6));
    gz.write_all(body).and_then(|()| gz.finish().map(drop)).map_err(named(path))
}

/// Settings of a large corpus.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    pub accounts: usize,
    pub regions: usize,
    pub days: usize,
    /// Delivery files per account, region and day.
    pub files_per_day: usize,
    pub events_per_file: usize,
    /// AssumeRoot sessions per member account and day.
    pub sessions_per_day: usize,
    pub seed: u64,
}

const REGIONS: &[&str] = &["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "ca-central-1"];

pub fn account_id(i: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + i as u64 * 1_111)
}

/// What [`write_corpus`] wrote, with its own record of the privileged sessions in it.
#[derive(Debug, Default)]
pub struct Written {
    pub files: usize,
    pub events: usize,
    /// For every action taken with the credentials of an AssumeRoot: (the AssumeRoot's eventID, the action's
    /// eventID), sorted. `privileged_sessions` must give exactly these pairs.
    pub session_actions: Vec<(String, String)>,
}

/// The eventID of an event this module wrote.
fn event_id(e: &Value) -> String {
    e["eventID"].as_str().expect("every generated event has an eventID").to_string()
}

/// Writes a large corpus in the organization-trail delivery layout.
pub fn write_corpus(root: &Path, spec: &CorpusSpec) -> Result<Written> {
    let mut rng = Rng::new(spec.seed);
    let start = Utc.with_ymd_and_hms(2024, 10, 1, 0, 0, 0).single().expect("valid date");
    let mgmt = account_id(0);
    let tasks = [
        "S3UnlockBucketPolicy",
        "SQSUnlockQueuePolicy",
        "IAMAuditRootUserCredentials",
        "IAMDeleteRootUserCredentials",
        "IAMCreateRootUserPassword",
    ];
    let mut written = Written::default();
    for day in 0..spec.days {
        let day_start = start + Duration::days(day as i64);
        // Privileged sessions of the day: the AssumeRoot goes in the management account's files, the actions in
        // the member's.
        let mut mgmt_extra: Vec<Value> = Vec::new();
        let mut member_extra: Vec<(usize, Value)> = Vec::new();
        for a in 1..spec.accounts {
            let member = account_id(a);
            for _ in 0..spec.sessions_per_day {
                let t = day_start + Duration::seconds(rng.below(86_000) as i64);
                let key = rng.key("ASIA");
                let task = *rng.pick(&tasks);
                let region = REGIONS[rng.below(spec.regions.min(REGIONS.len()) as u64) as usize];
                let session = assume_root(&mut rng, &mgmt, &member, task, region, t, None, None, &key);
                let session_id = event_id(&session);
                mgmt_extra.push(session);
                for k in 0..(1 + rng.below(4)) {
                    let at = t + Duration::seconds(20 + 60 * k as i64);
                    let call = match task {
                        "S3UnlockBucketPolicy" => (
                            "s3.amazonaws.com",
                            "DeleteBucketPolicy",
                            json!({"bucketName": format!("locked-{member}")}),
                        ),
                        "SQSUnlockQueuePolicy" => (
                            "sqs.amazonaws.com",
                            "SetQueueAttributes",
                            json!({"queueUrl": format!("https://sqs.{region}.amazonaws.com/{member}/q")}),
                        ),
                        "IAMCreateRootUserPassword" => ("iam.amazonaws.com", "CreateLoginProfile", Value::Null),
                        "IAMDeleteRootUserCredentials" => ("iam.amazonaws.com", "DeleteLoginProfile", Value::Null),
                        _ => ("iam.amazonaws.com", "ListAccessKeys", Value::Null),
                    };
                    let action = root_action(&mut rng, &member, &key, t, at, region, call, None);
                    written.session_actions.push((session_id.clone(), event_id(&action)));
                    member_extra.push((a, action));
                }
            }
        }
        for a in 0..spec.accounts {
            let account = account_id(a);
            for (r, region) in REGIONS.iter().copied().enumerate().take(spec.regions) {
                for f in 0..spec.files_per_day {
                    let file_start = day_start + Duration::seconds((f * 86_400 / spec.files_per_day) as i64);
                    let mut records: Vec<Value> = (0..spec.events_per_file)
                        .map(|_| {
                            let t =
                                file_start + Duration::seconds(rng.below((86_400 / spec.files_per_day) as u64) as i64);
                            noise_event(&mut rng, &account, region, t)
                        })
                        .collect();
                    if r == 0 && f == 0 {
                        if a == 0 {
                            records.append(&mut mgmt_extra);
                        }
                        records.extend(member_extra.iter().filter(|(m, _)| *m == a).map(|(_, e)| e.clone()));
                    }
                    written.events += records.len();
                    let delivered = file_start + Duration::minutes(5);
                    let unique = format!("{:016X}", rng.next_u64());
                    write_delivery(root, Some("o-bench00001"), &account, region, delivered, &unique[..16], &records)?;
                    written.files += 1;
                }
            }
        }
    }
    written.session_actions.sort();
    Ok(written)
}

/// The accounts of the sample organization.
pub mod sample {
    pub const MGMT: &str = "111111111111";
    /// A member whose logs come from the organization trail.
    pub const MEMBER_A: &str = "222222222222";
    pub const MEMBER_B: &str = "333333333333";
    /// An ordinary member account, where the root user signs in with its own credentials.
    pub const MEMBER_C: &str = "444444444444";
    /// A member whose logs are not in the sample.
    pub const MEMBER_D: &str = "555555555555";
    pub const ORG: &str = "o-a1b2c3d4e5";
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
}

/// One event placed in the sample, with the account whose trail holds it.
struct Placed {
    account: &'static str,
    region: String,
    time: DateTime<Utc>,
    event: Value,
}

/// Writes the bundled sample corpus: see `sample-data/README.md` for what it holds and why.
pub fn write_sample(root: &Path) -> Result<usize> {
    use sample::*;
    let mut rng = Rng::new(20241025);
    let mut placed: Vec<Placed> = Vec::new();
    let mut put = |account: &'static str, event: Value| {
        let region = event["awsRegion"].as_str().unwrap_or("us-east-1").to_string();
        let time = at(event["eventTime"].as_str().expect("events have a time"));
        placed.push(Placed { account, region, time, event });
    };

    // Session 1, the IAM documentation's example: S3UnlockBucketPolicy on 222222222222, default duration.
    let t1 = at("2024-10-25T20:52:11Z");
    let mut ar1 = assume_root(
        &mut rng,
        MGMT,
        MEMBER_A,
        "S3UnlockBucketPolicy",
        "us-west-2",
        t1,
        None,
        None,
        "ASIAIOSFODNN7EXAMPLE",
    );
    ar1["userIdentity"]["arn"] = json!(format!("arn:aws:sts::{MGMT}:assumed-role/JohnDoe/JohnRole1"));
    ar1["userIdentity"]["principalId"] = json!("AIDACKCEVSQ6C2EXAMPLE:JohnRole1");
    ar1["userIdentity"]["sessionContext"]["assumedRoot"] = json!("true");
    put(MGMT, ar1);
    let bucket = "resource-policy-JohnDoe";
    put(
        MEMBER_A,
        root_action(
            &mut rng,
            MEMBER_A,
            "ASIAIOSFODNN7EXAMPLE",
            t1,
            at("2024-10-25T20:52:40Z"),
            "us-west-2",
            (
                "s3.amazonaws.com",
                "GetBucketPolicy",
                json!({"bucketName": bucket, "Host": format!("{bucket}.s3.amazonaws.com"), "policy": ""}),
            ),
            None,
        ),
    );
    let mut delete = root_action(
        &mut rng,
        MEMBER_A,
        "ASIAIOSFODNN7EXAMPLE",
        t1,
        at("2024-10-25T20:53:47Z"),
        "us-west-2",
        (
            "s3.amazonaws.com",
            "DeleteBucketPolicy",
            json!({"bucketName": bucket, "Host": format!("{bucket}.s3.amazonaws.com"), "policy": ""}),
        ),
        None,
    );
    delete["eventID"] = json!("a1b2c3d4-5678-90ab-cdef-EXAMPLE11111");
    delete["requestID"] = json!("1234567890abcdef0");
    delete["resources"] =
        json!([{"accountId": MEMBER_A, "type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{bucket}")}]);
    put(MEMBER_A, delete);

    // Session 2 crosses midnight; the target is given as an ARN.
    let t2 = at("2024-10-25T23:55:30Z");
    let k2 = "ASIAQNOONMIDNIGHT002";
    put(
        MGMT,
        assume_root(
            &mut rng,
            MGMT,
            &format!("arn:aws:iam::{MEMBER_B}:root"),
            "SQSUnlockQueuePolicy",
            "us-east-1",
            t2,
            Some(900),
            None,
            k2,
        ),
    );
    let queue = json!({"queueUrl": format!("https://sqs.us-east-1.amazonaws.com/{MEMBER_B}/orders"), "attributeNames": ["Policy"]});
    put(
        MEMBER_B,
        root_action(
            &mut rng,
            MEMBER_B,
            k2,
            t2,
            at("2024-10-25T23:57:05Z"),
            "us-east-1",
            ("sqs.amazonaws.com", "GetQueueAttributes", queue.clone()),
            None,
        ),
    );
    put(
        MEMBER_B,
        root_action(
            &mut rng,
            MEMBER_B,
            k2,
            t2,
            at("2024-10-26T00:02:10Z"),
            "us-east-1",
            (
                "sqs.amazonaws.com",
                "SetQueueAttributes",
                json!({"queueUrl": format!("https://sqs.us-east-1.amazonaws.com/{MEMBER_B}/orders"), "attributes": {"Policy": ""}}),
            ),
            None,
        ),
    );
    put(
        MEMBER_B,
        root_action(
            &mut rng,
            MEMBER_B,
            k2,
            t2,
            at("2024-10-26T00:04:00Z"),
            "us-east-1",
            ("sqs.amazonaws.com", "ListQueues", json!({})),
            None,
        ),
    );

    // Session 3 is refused: no credentials, no actions.
    put(
        MGMT,
        assume_root(
            &mut rng,
            MGMT,
            MEMBER_A,
            "IAMDeleteRootUserCredentials",
            "eu-west-1",
            at("2024-10-25T18:30:00Z"),
            None,
            Some("AccessDenied"),
            "",
        ),
    );

    // Session 4 calls AssumeRoot in eu-west-1; IAM logs its actions in us-east-1.
    let t4 = at("2024-10-25T09:15:00Z");
    let k4 = "ASIAQIAMGLOBAL000004";
    put(
        MGMT,
        assume_root(&mut rng, MGMT, MEMBER_A, "IAMDeleteRootUserCredentials", "eu-west-1", t4, Some(600), None, k4),
    );
    for (secs, name) in [
        (40, "GetLoginProfile"),
        (65, "DeleteLoginProfile"),
        (90, "ListAccessKeys"),
        (120, "DeleteAccessKey"),
        (150, "ListMFADevices"),
        (180, "DeactivateMFADevice"),
    ] {
        let request = match name {
            "DeleteAccessKey" => json!({"accessKeyId": "AKIAROOTOLDKEY000001"}),
            "DeactivateMFADevice" => {
                json!({"serialNumber": format!("arn:aws:iam::{MEMBER_A}:mfa/root-account-mfa-device")})
            }
            _ => Value::Null,
        };
        put(
            MEMBER_A,
            root_action(
                &mut rng,
                MEMBER_A,
                k4,
                t4,
                t4 + Duration::seconds(secs),
                "us-east-1",
                ("iam.amazonaws.com", name, request),
                None,
            ),
        );
    }

    // Session 5 audits, tries something its task policy does not allow, and uses its key after expiry.
    let t5 = at("2024-10-26T14:00:00Z");
    let k5 = "ASIAQAUDITOUTSIDE005";
    put(
        MGMT,
        assume_root(&mut rng, MGMT, MEMBER_B, "IAMAuditRootUserCredentials", "us-east-1", t5, Some(300), None, k5),
    );
    put(
        MEMBER_B,
        root_action(
            &mut rng,
            MEMBER_B,
            k5,
            t5,
            at("2024-10-26T14:00:30Z"),
            "us-east-1",
            ("iam.amazonaws.com", "GetAccountSummary", Value::Null),
            None,
        ),
    );
    put(
        MEMBER_B,
        root_action(
            &mut rng,
            MEMBER_B,
            k5,
            t5,
            at("2024-10-26T14:01:00Z"),
            "us-east-1",
            ("iam.amazonaws.com", "ListAccessKeys", Value::Null),
            None,
        ),
    );
    put(
        MEMBER_B,
        root_action(
            &mut rng,
            MEMBER_B,
            k5,
            t5,
            at("2024-10-26T14:01:30Z"),
            "us-east-1",
            ("iam.amazonaws.com", "CreateAccessKey", Value::Null),
            Some("AccessDenied"),
        ),
    );
    put(
        MEMBER_B,
        root_action(
            &mut rng,
            MEMBER_B,
            k5,
            t5,
            at("2024-10-26T14:07:00Z"),
            "us-east-1",
            ("iam.amazonaws.com", "GetLoginProfile", Value::Null),
            Some("ExpiredToken"),
        ),
    );

    // Session 6 targets an account whose logs are not here; session 7 is opened and never used.
    put(
        MGMT,
        assume_root(
            &mut rng,
            MGMT,
            MEMBER_D,
            "S3UnlockBucketPolicy",
            "us-west-2",
            at("2024-10-26T10:00:00Z"),
            None,
            None,
            "ASIAQNOLOGSHERE00006",
        ),
    );
    put(
        MGMT,
        assume_root(
            &mut rng,
            MGMT,
            MEMBER_A,
            "IAMCreateRootUserPassword",
            "us-east-1",
            at("2024-10-26T16:20:00Z"),
            Some(120),
            None,
            "ASIAQNEVERUSED000007",
        ),
    );

    // The root user of 444444444444 signs in with its own password: type Root with an ASIA key, not AssumeRoot.
    let login = at("2024-10-25T11:00:00Z");
    put(
        MEMBER_C,
        json!({
            "eventVersion": "1.09",
            "userIdentity": {"type": "Root", "principalId": MEMBER_C, "arn": format!("arn:aws:iam::{MEMBER_C}:root"), "accountId": MEMBER_C, "accessKeyId": ""},
            "eventTime": ts(login), "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.77", "userAgent": USER_AGENTS[4], "requestParameters": null,
            "responseElements": {"ConsoleLogin": "Success"},
            "additionalEventData": {"LoginTo": "https://console.aws.amazon.com/console/home", "MobileVersion": "No", "MFAUsed": "No"},
            "eventID": rng.uuid(), "readOnly": false, "eventType": "AwsConsoleSignIn", "managementEvent": true,
            "recipientAccountId": MEMBER_C, "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "signin.aws.amazon.com"}
        }),
    );
    let kc = "ASIAQROOTCONSOLE0044";
    for (secs, source, name, region) in [
        (70, "ec2.amazonaws.com", "DescribeInstances", "us-east-1"),
        (120, "s3.amazonaws.com", "ListBuckets", "us-east-1"),
        (180, "iam.amazonaws.com", "GetAccountSummary", "us-east-1"),
    ] {
        let mut e = root_action(
            &mut rng,
            MEMBER_C,
            kc,
            login,
            login + Duration::seconds(secs),
            region,
            (source, name, Value::Null),
            None,
        );
        e["userIdentity"]["sessionContext"]["attributes"]["mfaAuthenticated"] = json!("false");
        e["sourceIPAddress"] = json!("203.0.113.77");
        e["userAgent"] = json!(USER_AGENTS[4]);
        e["sessionCredentialFromConsole"] = json!("true");
        put(MEMBER_C, e);
    }

    // An IAM user signs in without MFA, and a burst of AccessDenied from one principal.
    put(
        MEMBER_C,
        json!({
            "eventVersion": "1.09",
            "userIdentity": {"type": "IAMUser", "principalId": "AIDAQCONSOLENOMFA001", "arn": format!("arn:aws:iam::{MEMBER_C}:user/dave"), "accountId": MEMBER_C, "userName": "dave"},
            "eventTime": "2024-10-25T12:30:00Z", "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "awsRegion": "us-east-1",
            "sourceIPAddress": "198.51.100.23", "userAgent": USER_AGENTS[4], "requestParameters": null,
            "responseElements": {"ConsoleLogin": "Success"},
            "additionalEventData": {"LoginTo": "https://console.aws.amazon.com/console/home", "MobileVersion": "No", "MFAUsed": "No"},
            "eventID": rng.uuid(), "readOnly": false, "eventType": "AwsConsoleSignIn", "managementEvent": true,
            "recipientAccountId": MEMBER_C, "eventCategory": "Management"
        }),
    );
    for i in 0..12 {
        let t = at("2024-10-26T03:10:00Z") + Duration::seconds(i * 7);
        let mut e = noise_event(&mut rng, MEMBER_C, "eu-west-1", t);
        e["userIdentity"] = json!({"type": "IAMUser", "principalId": "AIDAQSCANNER00000001", "arn": format!("arn:aws:iam::{MEMBER_C}:user/scanner"),
            "accountId": MEMBER_C, "accessKeyId": "AKIAQSCANNERLEAKED01", "userName": "scanner"});
        e["eventSource"] = json!("iam.amazonaws.com");
        e["eventName"] =
            json!(["ListUsers", "ListRoles", "GetAccountAuthorizationDetails", "ListPolicies"][i as usize % 4]);
        e["awsRegion"] = json!("us-east-1");
        e["errorCode"] = json!("AccessDenied");
        e["errorMessage"] = json!("User: scanner is not authorized");
        e["responseElements"] = Value::Null;
        e["sourceIPAddress"] = json!("185.220.101.4");
        put(MEMBER_C, e);
    }

    // The ordinary noise of every account over the two days.
    for (account, regions) in [
        (MGMT, &["us-east-1", "us-west-2"][..]),
        (MEMBER_A, &["us-east-1", "us-west-2"][..]),
        (MEMBER_B, &["us-east-1"][..]),
        (MEMBER_C, &["us-east-1", "eu-west-1"][..]),
    ] {
        for region in regions {
            for i in 0..40 {
                let t =
                    at("2024-10-25T00:00:00Z") + Duration::seconds((i * 4321 + rng.below(3000) as i64) % (2 * 86_400));
                put(account, noise_event(&mut rng, account, region, t));
            }
        }
    }

    // Delivery: one file per account, region and hour, delivered a few minutes after the hour ends, so that the
    // folder date of late events is the next day. Sorted for stable output.
    placed.sort_by(|a, b| (a.account, &a.region, a.time).cmp(&(b.account, &b.region, b.time)));
    let mut groups: std::collections::BTreeMap<(&str, String, String), Vec<Value>> = std::collections::BTreeMap::new();
    for p in &placed {
        let hour = p.time.format("%Y-%m-%dT%H:00:00Z").to_string();
        groups.entry((p.account, p.region.clone(), hour)).or_default().push(p.event.clone());
    }
    let mut files = 0;
    for ((account, region, hour), records) in &groups {
        let delivered = at(hour) + Duration::minutes(65);
        let org = (*account == MEMBER_A).then_some(ORG);
        let unique = format!("{:016X}", rng.next_u64());
        write_delivery(root, org, account, region, delivered, &unique[..16], records)?;
        files += 1;
    }
    // CloudTrail delivers some events twice: the bucket policy deletion arrives again in a later file.
    let dup = placed.iter().find(|p| p.event["eventName"] == "DeleteBucketPolicy").expect("session 1 deletes a policy");
    write_delivery(
        root,
        Some(ORG),
        MEMBER_A,
        "us-west-2",
        at("2024-10-25T22:35:00Z"),
        "REDELIVERED00001",
        std::slice::from_ref(&dup.event),
    )?;
    // A file with no records, which CloudTrail writes for quiet periods.
    write_delivery(root, None, MEMBER_C, "eu-west-1", at("2024-10-25T06:05:00Z"), "EMPTYRECORDS0001", &[])?;
    // A digest file: integrity metadata, not events.
    let digest_dir = root.join(format!("AWSLogs/{MGMT}/CloudTrail-Digest/us-east-1/2024/10/26"));
    std::fs::create_dir_all(&digest_dir).map_err(named(&digest_dir))?;
    let digest = json!({
        "awsAccountId": MGMT, "digestStartTime": "2024-10-25T23:00:00Z", "digestEndTime": "2024-10-26T00:00:00Z",
        "digestS3Bucket": "org-cloudtrail-logs", "digestS3Object": format!("AWSLogs/{MGMT}/CloudTrail-Digest/us-east-1/2024/10/26/{MGMT}_CloudTrail-Digest_us-east-1_org-trail_us-east-1_20241026T000000Z.json.gz"),
        "digestPublicKeyFingerprint": "0123456789abcdef0123456789abcdef", "digestSignatureAlgorithm": "SHA256withRSA",
        "newestEventTime": "2024-10-25T23:59:58Z", "oldestEventTime": "2024-10-25T23:00:03Z",
        "previousDigestS3Bucket": "org-cloudtrail-logs", "previousDigestHashValue": "00aa", "previousDigestHashAlgorithm": "SHA-256",
        "previousDigestSignature": "00bb",
        "logFiles": [{"s3Bucket": "org-cloudtrail-logs", "s3Object": "AWSLogs/111111111111/CloudTrail/us-east-1/2024/10/26/x.json.gz",
                      "hashValue": "00cc", "hashAlgorithm": "SHA-256", "newestEventTime": "2024-10-25T23:59:58Z", "oldestEventTime": "2024-10-25T23:00:03Z"}]
    });
    write_gz(
        &digest_dir.join(format!("{MGMT}_CloudTrail-Digest_us-east-1_org-trail_us-east-1_20241026T000000Z.json.gz")),
        &serde_json::to_vec(&digest).expect("digest serialises"),
    )?;
    Ok(files + 2)
}
