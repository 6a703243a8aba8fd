//! Lakes and sources in S3, against a real S3 server (s3s-fs) on loopback, started by the test: round trips,
//! incremental conversion with ETags, pruning proved by counting requests, and clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;

use crate::common::*;

const KEY: &str = "AKIATRAILSQLTEST0001";
const SECRET: &str = "trailsql-test-secret-do-not-print";

/// An S3 server on 127.0.0.1, serving a temporary directory (one folder per bucket), that records every request.
pub(crate) struct S3Server {
    endpoint: String,
    root: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl S3Server {
    pub(crate) fn start(buckets: &[&str]) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for b in buckets {
            std::fs::create_dir_all(root.join(b)).unwrap();
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let fs = s3s_fs::FileSystem::new(&root).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(KEY, SECRET));
        let service = builder.build();
        let log = requests.clone();
        rt.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let service = service.clone();
                let log = log.clone();
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    log.lock().unwrap().push(format!("{} {}", req.method(), req.uri()));
                    let service = service.clone();
                    async move { hyper::service::Service::call(&service, req).await }
                });
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new()).serve_connection(TokioIo::new(socket), svc).await;
                });
            }
        });
        S3Server { endpoint, root, requests, _dir: dir, _rt: rt }
    }

    /// The binary, with credentials and the endpoint in its environment, and nothing of the user's AWS setup.
    pub(crate) fn bin(&self) -> Command {
        let mut c = bin();
        c.env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/trailsql-test-config")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/trailsql-test-credentials")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
        c
    }

    /// Copies a local tree into a bucket, object by object.
    fn upload(&self, bucket: &str, prefix: &str, from: &Path) {
        for e in walkdir::WalkDir::new(from).sort_by_file_name() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy();
            if e.file_type().is_file() && !name.starts_with('.') && name != "README.md" {
                let rel = e.path().strip_prefix(from).unwrap();
                let dest = self.root.join(bucket).join(prefix).join(rel);
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(e.path(), dest).unwrap();
            }
        }
    }

    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

pub(crate) fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}\n{}", stdout(out), stderr(out));
    stdout(out)
}

fn saved_query_csv(s3: &S3Server, lake: &str, name: &str) -> String {
    let extra: Vec<&str> = if name == "access_key_activity" { vec!["-p", "key=ASIAQROOTCONSOLE0044"] } else { vec![] };
    ok(&run(s3.bin().args(["run", name, "--format", "csv", "--lake", lake]).args(extra)))
}

#[test]
fn local_sources_to_an_s3_lake_and_back_give_the_local_results() {
    let s3 = S3Server::start(&["lake", "trail"]);
    // Local source, S3 lake.
    let summary =
        ok(&run(s3.bin().args(["convert", "--quiet"]).arg(sample_data()).args(["--lake", "s3://lake/sample"])));
    assert!(squeeze(&summary).contains("events written 319"), "{summary}");
    assert!(std::fs::read_dir(s3.root.join("lake/sample/_manifest")).unwrap().count() == 1);
    for q in trailsql::queries::builtin() {
        let want = std::fs::read_to_string(root().join(format!("tests/expected/queries/{}.csv", q.name))).unwrap();
        assert_eq!(saved_query_csv(&s3, "s3://lake/sample", &q.name), want, "{} over the S3 lake", q.name);
    }
    // A re-run changes nothing in S3 either.
    let again = ok(&run(s3.bin().args(["convert", "--quiet"]).arg(sample_data()).args(["--lake", "s3://lake/sample"])));
    assert!(again.contains("converted 0 files"), "{again}");

    // S3 source (the CloudTrail bucket layout), local lake.
    s3.upload("trail", "", &sample_data());
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("lake");
    ok(&run(s3.bin().args(["convert", "--quiet", "s3://trail", "--lake"]).arg(&local)));
    for q in trailsql::queries::builtin() {
        let want = std::fs::read_to_string(root().join(format!("tests/expected/queries/{}.csv", q.name))).unwrap();
        assert_eq!(saved_query_csv(&s3, local.to_str().unwrap(), &q.name), want, "{} from S3 sources", q.name);
    }
    // Incremental from S3: ETags in the manifest make a re-run read nothing.
    let again = ok(&run(s3.bin().args(["convert", "--quiet", "s3://trail", "--lake"]).arg(&local)));
    assert!(again.contains("converted 0 files (257 unchanged"), "{again}");
    let manifest = std::fs::read_dir(local.join("_manifest")).unwrap().next().unwrap().unwrap().path();
    assert!(std::fs::read_to_string(manifest).unwrap().contains("\"etag\""));
}

#[test]
fn filters_become_key_prefixes_and_queries_prune_partitions() {
    let s3 = S3Server::start(&["trail", "lake"]);
    s3.upload("trail", "", &sample_data());
    s3.take_requests();
    let out = ok(&run(s3.bin().args([
        "convert",
        "--quiet",
        "s3://trail",
        "--account",
        "222222222222",
        "--region",
        "us-west-2",
        "--from",
        "2024-10-25",
        "--to",
        "2024-10-25",
        "--lake",
        "s3://lake/filtered",
    ])));
    let requests = s3.take_requests();
    let lists: Vec<&String> =
        requests.iter().filter(|r| r.starts_with("GET /trail") && r.contains("list-type=2")).collect();
    // The bucket is walked level by level with delimiters; the only recursive listing is the one day folder.
    for l in &lists {
        assert!(
            l.contains("delimiter=%2F")
                || l.contains("prefix=AWSLogs%2Fo-a1b2c3d4e5%2F222222222222%2FCloudTrail%2Fus-west-2%2F2024%2F10%2F25"),
            "{l}"
        );
    }
    assert!(!lists.iter().any(|l| l.contains("prefix=AWSLogs%2F111111111111%2FCloudTrail%2F")), "{lists:#?}");
    let n = count_csv(&s3, "s3://lake/filtered", "SELECT count(DISTINCT recipientaccountid) FROM cloudtrail");
    assert_eq!(n, "1");
    assert!(out.contains("converted"), "{out}");

    // Reading an S3 lake with a filter on both partition columns fetches only that partition's objects.
    ok(&run(s3.bin().args(["convert", "--quiet"]).arg(sample_data()).args(["--lake", "s3://lake/all"])));
    s3.take_requests();
    let sql = "SELECT count(*) FROM cloudtrail WHERE account_id = '333333333333' AND event_date = DATE '2024-10-26' \
               AND eventname <> ''";
    let n = count_csv(&s3, "s3://lake/all", sql);
    let dir = tempfile::tempdir().unwrap();
    convert_lib(&[&sample_data()], &dir.path().join("lake"));
    let local = query(&dir.path().join("lake"), sql);
    let local = local[0].column(0).as_primitive::<Int64Type>().value(0);
    assert_eq!(n, local.to_string(), "the S3 lake answers as the local one");
    let requests = s3.take_requests();
    let data_reads: Vec<&String> = requests.iter().filter(|r| r.contains(".parquet")).collect();
    assert!(!data_reads.is_empty());
    for r in &data_reads {
        let r = r.replace("%3D", "=");
        assert!(r.contains("account_id=333333333333/event_date=2024-10-26/"), "a read outside the partition: {r}");
    }
    let lists: Vec<&String> =
        requests.iter().filter(|r| r.contains("list-type=2") && r.contains("prefix=all%2Faccount_id")).collect();
    for l in &lists {
        assert!(l.contains("333333333333"), "a listing outside the account: {l}");
    }
    assert!(!lists.is_empty(), "the partitions were listed under their prefix: {requests:#?}");
    let whole = requests
        .iter()
        .filter(|r| r.contains("list-type=2") && !r.contains("delimiter") && r.ends_with("prefix=all%2F"));
    assert_eq!(whole.count(), 0, "the whole lake was listed: {requests:#?}");

    // The lake's digest works in S3 too: a filter on eventname reads only the data of the partitions that hold it
    // (the management account's, where the AssumeRoot calls are).
    let sql = "SELECT count(*) FROM cloudtrail WHERE eventname = 'AssumeRoot'";
    assert_eq!(count_csv(&s3, "s3://lake/all", sql), "7");
    let requests = s3.take_requests();
    assert!(requests.iter().any(|r| r.contains("_digest.json")), "the digest was not read: {requests:#?}");
    let data_reads: Vec<&String> = requests.iter().filter(|r| r.contains(".parquet")).collect();
    assert!(!data_reads.is_empty());
    for r in &data_reads {
        assert!(r.replace("%3D", "=").contains("account_id=111111111111/"), "a partition without AssumeRoot: {r}");
    }
}

fn count_csv(s3: &S3Server, lake: &str, sql: &str) -> String {
    let out = ok(&run(s3.bin().args(["query", "--format", "csv", "--lake", lake, sql])));
    out.lines().nth(1).unwrap_or_default().to_string()
}

#[test]
fn sql_reads_s3_paths_with_the_same_credentials() {
    let s3 = S3Server::start(&["lake"]);
    ok(&run(s3.bin().args(["convert", "--quiet"]).arg(sample_data()).args(["--lake", "s3://lake/x"])));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ext.sql");
    std::fs::write(
        &script,
        "CREATE EXTERNAL TABLE ext STORED AS PARQUET LOCATION 's3://lake/x/account_id=444444444444/';\n\
         SELECT count(*) AS n FROM ext;\n",
    )
    .unwrap();
    let out = ok(&run(s3.bin().args(["run", "--format", "csv", "--lake", "s3://lake/x"]).arg(&script)));
    assert_eq!(out, "n\n97\n");
    let file = std::fs::read_dir(s3.root.join("lake/x/account_id=111111111111/event_date=2024-10-25"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let sql = format!(
        "SELECT count(*) FROM 's3://lake/x/account_id=111111111111/event_date=2024-10-25/{}'",
        file.to_string_lossy()
    );
    assert_eq!(count_csv(&s3, "s3://lake/x", &sql), "44");
}

#[test]
fn realdata_through_s3_matches_the_local_conversion() {
    let Some(real) = realdata() else { return };
    let s3 = S3Server::start(&["real", "lake"]);
    s3.upload("real", "data", &real);
    let from_s3 = run(s3.bin().args(["convert", "--quiet", "s3://real/data", "--lake", "s3://lake/real"]));
    assert_eq!(from_s3.status.code(), Some(1), "the broken zip member is reported: {}", stdout(&from_s3));
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("lake");
    let summary = convert_lib(&[&real], &local);
    let count = |lake: &str| count_csv(&s3, lake, "SELECT count(*) FROM cloudtrail");
    assert_eq!(count("s3://lake/real"), summary.events_written.to_string());
    let s3_summary = stdout(&from_s3);
    let written = summary.render().lines().find(|l| l.contains("events written")).map(squeeze).unwrap();
    assert!(squeeze(&s3_summary).contains(&written), "{s3_summary}");
    // Every row, every column, is the same in both lakes (rows compared as sorted JSON lines: ids can repeat).
    let rows = |lake: &str| {
        let out = ok(&run(s3.bin().args(["query", "--format", "ndjson", "--lake", lake, "SELECT * FROM cloudtrail"])));
        let mut lines: Vec<String> = out.lines().map(String::from).collect();
        lines.sort();
        lines
    };
    let (in_s3, in_local) = (rows("s3://lake/real"), rows(local.to_str().unwrap()));
    assert_eq!(in_s3.len() as u64, summary.events_written);
    assert!(in_s3 == in_local, "the S3 lake's rows differ from the local lake's");
}

/// The text with runs of spaces made one, so that checks do not depend on the summary's alignment.
fn squeeze(s: &str) -> String {
    s.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

#[test]
fn wrong_credentials_missing_bucket_and_bad_endpoint_say_what_to_fix() {
    let s3 = S3Server::start(&["lake"]);
    let wrong = run(s3.bin().env("AWS_SECRET_ACCESS_KEY", "not-the-secret").args([
        "query",
        "--lake",
        "s3://lake/x",
        "SELECT 1",
    ]));
    assert_eq!(wrong.status.code(), Some(2));
    let e = stderr(&wrong);
    assert!(e.contains("check the AWS credentials"), "{e}");
    assert!(!e.contains("not-the-secret") && !e.contains(SECRET), "a secret was printed: {e}");

    let missing = run(s3.bin().args(["query", "--lake", "s3://no-such-bucket/x", "SELECT 1"]));
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("bucket does not exist"), "{}", stderr(&missing));

    let unreachable = run(s3.bin().env("AWS_ENDPOINT_URL", "http://127.0.0.1:9").args([
        "query",
        "--lake",
        "s3://lake/x",
        "SELECT 1",
    ]));
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(stderr(&unreachable).contains("cannot reach http://127.0.0.1:9"), "{}", stderr(&unreachable));

    let plain = run(s3.bin().env_remove("AWS_ALLOW_HTTP").args(["query", "--lake", "s3://lake/x", "SELECT 1"]));
    assert_eq!(plain.status.code(), Some(2));
    assert!(stderr(&plain).contains("AWS_ALLOW_HTTP=true"), "{}", stderr(&plain));
}

/// `sigma --checkpoint` over a lake in S3, the checkpoint a local file or an S3 object: the partitions are listed
/// through the object store; the first run gives what a run without a checkpoint gives, the next finds nothing new,
/// and one after a conversion that adds events to a partition it read gives those.
#[test]
fn a_sigma_checkpoint_follows_an_s3_lake() {
    let s3 = S3Server::start(&["lake", "state"]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("state");
    for (n, checkpoint) in [local.to_str().unwrap(), "s3://state/sigma/ck.json"].into_iter().enumerate() {
        let lake = format!("s3://lake/ck{n}");
        ok(&run(s3.bin().args(["convert", "--quiet"]).arg(sample_data()).args(["--lake", &lake])));
        let rules = dir.path().join("r.yml");
        std::fs::write(
            &rules,
            "title: errors\nid: errors\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    \
             errorCode|exists: true\n  condition: sel\n",
        )
        .unwrap();
        let sigma = |with_checkpoint: bool| {
            let mut cmd = s3.bin();
            cmd.args(["sigma", "--format", "csv", "--lake", &lake]);
            if with_checkpoint {
                cmd.args(["--checkpoint", checkpoint]);
            }
            run(cmd.arg(&rules))
        };
        let whole = ok(&sigma(false));
        assert!(whole.lines().count() > 2, "{whole}");
        assert_eq!(ok(&sigma(true)), whole, "{checkpoint}");
        let again = sigma(true);
        assert!(ok(&again).is_empty() && stderr(&again).contains("nothing new in the lake"), "{}", stderr(&again));

        // A late event of an account and day the lake holds.
        let first = whole.lines().nth(1).unwrap().split(',').collect::<Vec<_>>();
        let (time, account) = (first[3], first[4]);
        let late = dir.path().join(format!("late{n}"));
        std::fs::create_dir(&late).unwrap();
        let event = format!(
            r#"{{"Records":[{{"eventVersion":"1.08","eventTime":"{time}","eventID":"late-1","recipientAccountId":"{account}","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","errorCode":"AccessDenied","sourceIPAddress":"203.0.113.9","eventType":"AwsApiCall"}}]}}"#
        );
        std::fs::write(late.join("late.json"), event).unwrap();
        ok(&run(s3.bin().args(["convert", "--quiet"]).arg(&late).args(["--lake", &lake])));
        let out = sigma(true);
        let rows = ok(&out);
        assert_eq!(rows.lines().count(), 2, "{rows}");
        assert!(rows.contains(",late-1,"), "{rows}");
        assert!(stderr(&out).contains("1 of "), "{}", stderr(&out));
    }
    assert!(s3.root.join("state/sigma/ck.json").is_file());
}
