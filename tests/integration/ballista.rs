//! The same SQL on Ballista: an in-process standalone cluster (scheduler and executor on loopback) runs the views
//! and every saved query over the sample lake, and returns the rows of a local run.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

fn expected(name: &str) -> String {
    let file = root().join(format!("tests/expected/queries/{name}.csv"));
    std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("{} is missing", file.display()))
}

fn csv(args: &[&str], ballista: bool) -> String {
    let mut cmd = bin();
    if ballista {
        cmd.args(["--ballista", "standalone"]);
    }
    let out = run(cmd.args(args).args(["--format", "csv", "--lake"]).arg(sample_lake()));
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn saved_queries_on_a_standalone_cluster_return_the_local_rows() {
    // All the saved queries in one run (one cluster), but the one that needs a parameter the others refuse.
    let names: Vec<String> =
        trailsql::queries::builtin().into_iter().map(|q| q.name).filter(|n| n != "access_key_activity").collect();
    assert!(names.len() >= 10);
    let mut args = vec!["run"];
    args.extend(names.iter().map(String::as_str));
    let want: String = names.iter().map(|n| expected(n)).collect();
    assert_eq!(csv(&args, true), want);
    assert_eq!(
        csv(&["run", "access_key_activity", "-p", "key=ASIAQROOTCONSOLE0044"], true),
        expected("access_key_activity")
    );
}

#[test]
fn views_on_a_standalone_cluster_return_the_local_rows() {
    let dir = tempfile::tempdir().unwrap();
    let script: PathBuf = dir.path().join("views.sql");
    std::fs::write(
        &script,
        "SELECT * FROM privileged_sessions ORDER BY action_time, action_event_id;\n\
         SELECT * FROM privileged_session_summary ORDER BY session_start, assume_root_event_id;\n\
         SELECT * FROM root_activity ORDER BY event_time, event_id;\n\
         SELECT account_id, event_date, count(*) AS n, count(DISTINCT principal_name(useridentity)) AS who \
         FROM cloudtrail GROUP BY 1, 2 ORDER BY 1, 2;\n",
    )
    .unwrap();
    let script = script.to_str().unwrap();
    let local = csv(&["run", script], false);
    assert!(local.lines().count() > 40, "the sample has privileged sessions: {local}");
    assert_eq!(csv(&["run", script], true), local);
}

/// Sigma rules with correlations (an event count and an old aggregation over the same field, and a detection) give
/// the local rows on a cluster. A correlation's group was once the same column twice in the stream, which
/// Ballista's executors could not run windows over.
#[test]
fn sigma_correlations_on_a_standalone_cluster_return_the_local_rows() {
    let dir = tempfile::tempdir().unwrap();
    let head = "logsource:\n  product: aws\n  service: cloudtrail\n";
    let rules = [
        (
            "errors",
            "detection:\n  sel:\n    errorCode|exists: true\n  timeframe: 1h\n  condition: sel | count() by sourceIPAddress > 1\n",
        ),
        ("root", "detection:\n  sel:\n    userIdentity.type: Root\n  condition: sel\n"),
        (
            "roots",
            "correlation:\n  type: event_count\n  rules: [root]\n  group-by: [sourceIPAddress]\n  timespan: 1d\n  generate: true\n  condition:\n    gte: 2\n",
        ),
        // Our own window aggregate (`window_percentile`), which the executors must know.
        (
            "median_version",
            "correlation:\n  type: value_median\n  rules: [root]\n  group-by: [sourceIPAddress]\n  timespan: 1d\n  condition:\n    field: eventVersion\n    gte: 1\n",
        ),
        ("signin", "detection:\n  sel:\n    eventName: ConsoleLogin\n  condition: sel\n"),
        // An event a row for each group its rules give it (`unnest`), and the alerts of a correlation counted (a
        // `UNION ALL` of the stream's readers).
        (
            "by_who",
            "correlation:\n  type: event_count\n  rules: [root, signin]\n  group-by: [who]\n  aliases:\n    who:\n      root: sourceIPAddress\n      signin: userIdentity.type\n  timespan: 1d\n  condition:\n    gte: 2\n",
        ),
        (
            "roots_again",
            "correlation:\n  type: event_count\n  rules: [roots]\n  group-by: [sourceIPAddress]\n  timespan: 1d\n  condition:\n    gte: 2\n",
        ),
        // Alerts and events in one window: each a reader of the stream under a `UNION ALL`, beside the other
        // correlations' branches (Ballista's scheduler once failed the result's order, and the job never ended).
        (
            "roots_and_signin",
            "correlation:\n  type: temporal\n  rules: [roots, signin]\n  group-by: [sourceIPAddress]\n  timespan: 30d\n",
        ),
    ];
    for (id, body) in rules {
        let head = if body.starts_with("correlation:") { "" } else { head };
        std::fs::write(
            dir.path().join(format!("{id}.yml")),
            format!("title: {id}\nid: {id}\nname: {id}\n{head}{body}"),
        )
        .unwrap();
    }
    let args = ["sigma", dir.path().to_str().unwrap()];
    let local = csv(&args, false);
    assert!(local.contains(",errors,") && local.contains("sourceIPAddress="), "a correlation's row: {local}");
    assert!(local.contains("median_version,"), "the median's row: {local}");
    for rule in ["by_who,", "roots_again,", "roots_and_signin,"] {
        assert!(local.contains(rule), "aliases', and chains', rows: {local}");
    }
    assert_eq!(csv(&args, true), local);
}

#[test]
fn a_bad_cluster_url_is_a_usage_error() {
    let out = run(bin().args(["--ballista", "http://x:1", "query", "SELECT 1", "--lake"]).arg(sample_lake()));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("expected df://host:port"), "{}", stderr(&out));
}

/// A port free on loopback now (the OS may hand it out again, but not within the test's few seconds).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16) {
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing listens on port {port} after 30 s");
}

/// Child processes killed when the test ends, passed or not, and the directory of their logs.
struct Children(Vec<std::process::Child>, tempfile::TempDir);

impl Children {
    /// What a process logged to stderr so far: `scheduler` or `executor`.
    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.1.path().join(format!("{name}.log"))).unwrap()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A scheduler and an executor, trailsql's own, on loopback; `bin` gives each its environment.
fn start_cluster(bin: &dyn Fn() -> Command) -> (Children, String) {
    start_cluster_in_order(bin, Order::SchedulerFirst)
}

/// How a test cluster starts.
#[derive(PartialEq)]
enum Order {
    SchedulerFirst,
    /// The executor a second before the scheduler, as in a cluster started all together.
    ExecutorFirst,
    /// A scheduler alone.
    NoExecutor,
}

/// A scheduler and an executor on loopback, started in `order`.
fn start_cluster_in_order(bin: &dyn Fn() -> Command, order: Order) -> (Children, String) {
    let executor_first = order == Order::ExecutorFirst;
    let (sched, flight, grpc) = (free_port(), free_port(), free_port());
    let quiet = || std::process::Stdio::null();
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| std::fs::File::create(logs.path().join(format!("{name}.log"))).unwrap();
    let scheduler = || {
        bin()
            .args(["ballista-scheduler", "--bind", &format!("127.0.0.1:{sched}")])
            .stdout(quiet())
            .stderr(log("scheduler"))
            .spawn()
            .unwrap()
    };
    let executor = || {
        bin()
            .args(["ballista-executor", "--scheduler", &format!("127.0.0.1:{sched}"), "--bind-host", "127.0.0.1"])
            .args(["--port", &flight.to_string(), "--grpc-port", &grpc.to_string(), "--concurrent-tasks", "2"])
            .stdout(quiet())
            .stderr(log("executor"))
            .spawn()
            .unwrap()
    };
    let mut children = Vec::new();
    if executor_first {
        children.push(executor());
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    children.push(scheduler());
    wait_for_port(sched);
    if executor_first {
        // An executor that gave up would leave a query waiting forever: fail here instead.
        std::thread::sleep(std::time::Duration::from_secs(2));
        assert!(children[0].try_wait().unwrap().is_none(), "the executor exited before its scheduler listened");
    } else if order == Order::SchedulerFirst {
        children.push(executor());
    }
    (Children(children, logs), format!("df://127.0.0.1:{sched}"))
}

/// The query's CSV from the cluster, retried while the executor registers with the scheduler.
fn on_cluster(bin: &dyn Fn() -> Command, url: &str, lake: &std::ffi::OsStr, sql: &str) -> String {
    let mut last = String::new();
    for _ in 0..60 {
        let out = run(bin().args(["--ballista", url, "query", sql, "--format", "csv", "--lake"]).arg(lake));
        if out.status.success() {
            return stdout(&out);
        }
        last = stderr(&out);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("the cluster never answered: {last}");
}

const BY_TASK: &str = "SELECT task_policy, count(*) AS n, min(arn_account(caller_arn)) AS caller, \
                       sum(CAST(allowed_by_task_policy AS INT)) AS allowed FROM privileged_sessions GROUP BY 1 ORDER BY 1";

#[test]
fn trailsql_scheduler_and_executor_processes_run_our_functions() {
    let (cluster, url) = start_cluster(&bin);
    assert_eq!(on_cluster(&bin, &url, sample_lake().as_os_str(), BY_TASK), csv(&["query", BY_TASK], false));
    // Unattended processes say what they do on stderr without RUST_LOG: start-up, registration, jobs.
    let (scheduler, executor) = (cluster.log("scheduler"), cluster.log("executor"));
    assert!(scheduler.contains("INFO") && scheduler.contains("listening on"), "scheduler log:\n{scheduler}");
    assert!(scheduler.contains("Job finished successfully"), "the scheduler logs the query's job:\n{scheduler}");
    assert!(executor.contains("INFO") && executor.contains("Executor id"), "executor log:\n{executor}");
}

#[test]
fn rust_log_chooses_what_the_processes_log() {
    let quiet = || {
        let mut c = bin();
        c.env("RUST_LOG", "error");
        c
    };
    let (cluster, url) = start_cluster(&quiet);
    assert_eq!(on_cluster(&quiet, &url, sample_lake().as_os_str(), BY_TASK), csv(&["query", BY_TASK], false));
    assert_eq!(cluster.log("scheduler"), "", "RUST_LOG=error: nothing to say");
}

#[test]
fn executors_read_an_s3_lake_with_the_aws_settings_of_their_environment() {
    let s3 = crate::s3::S3Server::start(&["lake"]);
    crate::s3::ok(&run(s3.bin().args(["convert", "--quiet"]).arg(sample_data()).args(["--lake", "s3://lake/x"])));
    let bin = || s3.bin();
    let (_cluster, url) = start_cluster(&bin);
    let lake = std::ffi::OsString::from("s3://lake/x");
    assert_eq!(on_cluster(&bin, &url, &lake, BY_TASK), csv(&["query", BY_TASK], false));
}

/// An executor started before its scheduler waits for it, instead of exiting and leaving queries waiting forever.
#[test]
fn an_executor_started_before_its_scheduler_waits_for_it() {
    let (_cluster, url) = start_cluster_in_order(&bin, Order::ExecutorFirst);
    assert_eq!(on_cluster(&bin, &url, sample_lake().as_os_str(), BY_TASK), csv(&["query", BY_TASK], false));
}

#[test]
fn the_repl_runs_on_a_standalone_cluster() {
    use std::io::Write;
    let sql = "SELECT task_policy, count(*) AS n FROM privileged_sessions GROUP BY 1 ORDER BY 1;\n";
    let repl = |ballista: bool| {
        let mut cmd = bin();
        if ballista {
            cmd.args(["--ballista", "standalone"]);
        }
        let mut child = cmd
            .args(["repl", "--no-history", "--lake"])
            .arg(sample_lake())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        // The table, without the timing line that follows it.
        stdout(&out).lines().filter(|l| !l.contains(" in ")).collect::<Vec<_>>().join("\n")
    };
    let local = repl(false);
    assert!(local.contains("S3UnlockBucketPolicy"), "{local}");
    assert_eq!(repl(true), local);
}

/// A job sent to a scheduler without executors would wait forever in Ballista's queue: the client waits
/// `--ballista-wait` seconds for one to register, then fails and says what to start.
#[test]
fn a_query_on_a_cluster_without_executors_fails_and_says_why() {
    let (_cluster, url) = start_cluster_in_order(&bin, Order::NoExecutor);
    let started = std::time::Instant::now();
    let out =
        run(bin().args(["--ballista", &url, "--ballista-wait", "2", "query", "SELECT 1", "--lake"]).arg(sample_lake()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("has no executor after 2 s") && err.contains("0/1 executors registered"), "{err}");
    assert!(err.contains("trailsql ballista-executor --scheduler 127.0.0.1:"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "it waited {:?}", started.elapsed());
}
