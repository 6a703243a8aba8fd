//! The REPL, driven in a pseudo-terminal as a user would, and through piped stdin.

use std::path::Path;
use std::process::Command;

use rexpect::session::{PtySession, spawn_command};

use crate::common::*;

/// Sends a line, waits for `want` in the output, then for the next prompt (input typed while a statement runs
/// may be dropped by the terminal, as in any shell).
fn line(p: &mut PtySession, text: &str, want: &str) {
    p.send_line(text).unwrap();
    p.exp_string(want).unwrap();
    p.exp_string("trailsql> ").unwrap();
}

fn repl(lake: &Path, history: &Path) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trailsql"));
    cmd.args(["repl", "--lake"]).arg(lake).arg("--history-file").arg(history).env("NO_COLOR", "1").env("TERM", "xterm");
    spawn_command(cmd, Some(30_000)).expect("the REPL starts in a pty")
}

#[test]
fn multi_line_entry_banner_and_errors_that_do_not_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = repl(sample_lake(), &dir.path().join("history"));
    p.exp_string("4 accounts, 2024-10-25 to 2024-10-26, 319 events").unwrap();
    p.exp_string("trailsql> ").unwrap();
    p.send_line("SELECT count(*) AS n").unwrap();
    p.send_line("FROM cloudtrail;").unwrap();
    p.exp_string("319").unwrap();
    p.exp_string("1 row in").unwrap();
    p.exp_string("trailsql> ").unwrap();
    line(&mut p, "SELECT * FROM no_such_table;", "no_such_table");
    line(&mut p, "SELECT 'still here' AS alive;", "still here");
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn tab_completes_nested_columns_functions_and_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = repl(sample_lake(), &dir.path().join("history"));
    p.exp_string("trailsql> ").unwrap();
    p.send("SELECT useridentity.sessioncontext.attr").unwrap();
    p.send("\t").unwrap();
    p.flush().unwrap();
    p.exp_string("attributes").unwrap();
    p.send(".mfa\t").unwrap();
    p.flush().unwrap();
    p.exp_string("mfaauthenticated").unwrap();
    line(
        &mut p,
        " AS mfa FROM cloudtrail WHERE eventname = 'AssumeRoot' AND useridentity.arn LIKE '%JohnRole1';",
        "1 row in",
    );
    p.send("SELECT task_policy_al\t").unwrap();
    p.flush().unwrap();
    p.exp_string("task_policy_allows").unwrap();
    line(&mut p, "('S3UnlockBucketPolicy', 's3.amazonaws.com', 'GetBucketPolicy') AS ok;", "true");
    p.send("\\quer\t").unwrap();
    p.flush().unwrap();
    p.exp_string("\\queries").unwrap();
    line(&mut p, "", "access_key_activity");
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn history_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("nested/dir/history");
    let mut p = repl(sample_lake(), &history);
    p.exp_string("trailsql> ").unwrap();
    line(&mut p, "SELECT 4242 AS remembered;", "1 row in");
    line(&mut p, "SELECT 4242 AS remembered;", "1 row in");
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
    let saved = std::fs::read_to_string(&history).unwrap();
    assert_eq!(saved.matches("SELECT 4242 AS remembered;").count(), 1, "duplicates are skipped: {saved}");

    let mut p = repl(sample_lake(), &history);
    p.exp_string("trailsql> ").unwrap();
    // Up arrow recalls the last entry of the previous session.
    p.send("\x1b[A").unwrap();
    p.flush().unwrap();
    p.exp_string("SELECT 4242 AS remembered;").unwrap();
    line(&mut p, "", "1 row in");
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn ctrl_c_cancels_a_running_query_and_returns_to_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = repl(sample_lake(), &dir.path().join("history"));
    p.exp_string("trailsql> ").unwrap();
    p.send_line("SELECT count(*) FROM generate_series(1, 50000000000) AS t(v) WHERE v % 7 = 3;").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    p.send_control('c').unwrap();
    p.exp_string("cancelled after").unwrap();
    p.exp_string("trailsql> ").unwrap();
    line(&mut p, "SELECT 'back' AS state;", "back");
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn describe_and_function_help() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = repl(sample_lake(), &dir.path().join("history"));
    p.exp_string("trailsql> ").unwrap();
    line(&mut p, "\\d", "| privileged_session_summary | view  |");
    // The tree's glyphs are UTF-8; the pty reader sees bytes, so the nesting is checked by indentation.
    p.send_line("\\d cloudtrail").unwrap();
    p.exp_string(" attributes             | struct").unwrap();
    p.exp_string(" creationdate        | timestamp (UTC)").unwrap();
    p.exp_string("trailsql> ").unwrap();
    p.send_line("\\h task_policy_allows").unwrap();
    p.exp_string("task_policy_allows(policy, event_source, event_name)").unwrap();
    p.exp_string("root-task policy").unwrap();
    p.exp_string("trailsql> ").unwrap();
    line(&mut p, "\\?", "\\maxrows");
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn piped_stdin_runs_statements_without_prompt_or_color() {
    let out = run_with_stdin(
        bin().args(["--lake"]).arg(sample_lake()),
        b"\\format csv\nSELECT count(*) AS n\n  FROM privileged_sessions;\nSELECT nope;\n\\run failed_assume_root\n",
    );
    let text = stdout(&out);
    assert!(!text.contains("trailsql>") && !text.contains('\x1b'), "{text}");
    assert!(text.starts_with("n\n14\n"), "{text}");
    assert!(text.contains("AccessDenied"), "{text}");
    assert!(stderr(&out).contains("error:"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1), "an error in a script is reported in the exit code");
}
