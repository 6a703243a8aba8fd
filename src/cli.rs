//! Command-line arguments, parsed once into plain structs; `app.rs` turns them into settings.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::print::Format;

/// The default lake, used when neither `--lake` nor `TRAILSQL_LAKE` says otherwise.
pub const DEFAULT_LAKE: &str = "lake";

#[derive(Debug, Parser)]
#[command(name = "trailsql", version, about = "SQL over AWS CloudTrail logs", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The lake: a directory or s3://bucket/prefix [default: ./lake]
    #[arg(long, global = true, env = "TRAILSQL_LAKE")]
    pub lake: Option<String>,

    /// No progress bar or banner
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Run queries on a Ballista cluster: df://host:port of its scheduler, or `standalone` for one in this process
    #[arg(long, global = true, env = "TRAILSQL_BALLISTA", value_name = "URL")]
    pub ballista: Option<String>,

    /// Seconds a query waits for the Ballista cluster to have an executor before it fails (0: check once)
    #[arg(long, global = true, env = "TRAILSQL_BALLISTA_WAIT", value_name = "SECONDS", default_value_t = 30)]
    pub ballista_wait: u64,

    /// Directories of your own saved queries (.sql files with a header), beside the builtin ones
    #[arg(long = "queries-dir", global = true, env = "TRAILSQL_QUERIES", value_delimiter = ':')]
    pub queries_dirs: Vec<PathBuf>,

    /// Memory for rows. convert: rows read, buffered and written (peak memory stays within it plus 160 MB)
    /// [default: 512MiB]. Queries: what sorts, aggregations, joins and windows hold; past it sorts and
    /// aggregations spill to the temporary directory and the rest fail; 0 for no limit [default: 80% of the
    /// machine's memory, or of the container's limit]
    #[arg(long, global = true, env = "TRAILSQL_MEMORY_LIMIT", value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert CloudTrail JSON (files, directories, .gz, .zip) into the Parquet lake
    Convert(ConvertArgs),
    /// Run one SQL statement and print its result
    Query(QueryArgs),
    /// Run SQL files or saved queries (by name), with parameters
    Run(RunArgs),
    /// List the saved queries and their parameters
    Queries(QueriesArgs),
    /// Run Sigma rules (YAML files or directories) for CloudTrail over the lake: one row per rule and matching event
    Sigma(SigmaArgs),
    /// The interactive SQL shell (also what `trailsql` alone starts)
    Repl(ReplArgs),
    /// Print the CREATE TABLE and the views of the lake for Athena, Trino or Spark
    Ddl(DdlArgs),
    /// Print the lake's schema
    Schema(SchemaArgs),
    /// Run a Ballista scheduler that knows trailsql's functions (built with the `ballista` feature)
    #[command(name = "ballista-scheduler")]
    BallistaScheduler(SchedulerArgs),
    /// Run a Ballista executor with trailsql's functions and object stores (built with the `ballista` feature)
    #[command(name = "ballista-executor")]
    BallistaExecutor(ExecutorArgs),
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Address to listen on
    #[arg(long, default_value = "0.0.0.0:50050")]
    pub bind: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler, host:port
    #[arg(long, default_value = "localhost:50050")]
    pub scheduler: String,

    /// Host to listen on
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_host: String,

    /// Host name the scheduler and other executors reach this executor at [default: the bind host]
    #[arg(long)]
    pub external_host: Option<String>,

    /// Arrow Flight port, which serves shuffle data
    #[arg(long, default_value_t = 50051)]
    pub port: u16,

    /// gRPC port
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,

    /// Tasks run at once [default: one per core]
    #[arg(long)]
    pub concurrent_tasks: Option<usize>,

    /// Directory for shuffle files [default: a temporary directory]
    #[arg(long)]
    pub work_dir: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Files or directories of CloudTrail logs, or s3://bucket/prefix
    #[arg(required = true)]
    pub sources: Vec<String>,

    /// Only this account (repeatable); listing in S3 goes straight to its folders
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,

    /// Only this Region (repeatable)
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,

    /// Only folders (delivery dates) from this date, YYYY-MM-DD
    #[arg(long)]
    pub from: Option<chrono::NaiveDate>,

    /// Only folders (delivery dates) up to this date, YYYY-MM-DD
    #[arg(long)]
    pub to: Option<chrono::NaiveDate>,

    /// Reader threads [default: one per core]
    #[arg(long)]
    pub threads: Option<usize>,

    /// Largest single record; a larger one is rejected with its first bytes
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub max_record_size: u64,

    /// Largest decompressed size of one file; a larger one fails (decompression bombs)
    #[arg(long, default_value = "8GiB", value_parser = parse_size)]
    pub max_file_size: u64,

    /// Files below this size are merged with the other small files of their partition
    #[arg(long, default_value = "32MiB", value_parser = parse_size)]
    pub compact_below: u64,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Rows shown in table format (0 for all)
    #[arg(long, default_value_t = 1000)]
    pub maxrows: usize,

    /// Write the result to this file instead of standard output
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL statement
    pub sql: String,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// SQL files, or names of saved queries (see `trailsql queries`)
    #[arg(required = true)]
    pub targets: Vec<String>,

    /// A parameter value, bound to $NAME in the SQL (repeatable)
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,

    /// Exit with 1 when the last query returns rows (for alerting and CI gates)
    #[arg(long)]
    pub fail_on_rows: bool,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SigmaArgs {
    /// Sigma rule files, or directories of them (.yml, .yaml, searched recursively)
    #[arg(required = true)]
    pub rules: Vec<PathBuf>,

    /// Run only the rules of this level or above: informational, low, medium, high, critical
    #[arg(long)]
    pub level: Option<String>,

    /// Print the SQL of each rule instead of running the rules
    #[arg(long)]
    pub explain: bool,

    /// Run the supported rules and exit 0 even if some rules use constructs that are not supported (they are
    /// still listed); without it such rules make the exit code 2
    #[arg(long)]
    pub skip_unsupported: bool,

    /// Only events at or after this time: 2026-12-04T18:00:00Z (RFC 3339), 2026-12-04 (its start, in UTC), or a
    /// span back from now (90m, 24h, 7d). A correlation still counts the events of its timespan before it
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,

    /// Only events before this time (the same forms)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,

    /// Only the events of this account (repeatable); the other accounts' partitions are not read
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,

    /// For a scheduler: a file (or s3://bucket/key) that keeps what the runs have read and given. Each run reads
    /// the partitions whose files changed since the last successful one and gives only rows no earlier run gave, so
    /// that every match is given once, however late its event was delivered; correlations give a row per group and
    /// day. --since starts the first run only; no --until
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<String>,

    /// Exit with 1 when any rule matches (for alerting and CI gates)
    #[arg(long)]
    pub fail_on_rows: bool,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args, Default)]
pub struct ReplArgs {
    /// Where the history is kept [default: the user's data directory, trailsql/history]
    #[arg(long, env = "TRAILSQL_HISTORY")]
    pub history_file: Option<PathBuf>,

    /// Keep no history
    #[arg(long)]
    pub no_history: bool,

    /// Rows shown in table format (0 for all)
    #[arg(long, default_value_t = 1000)]
    pub maxrows: usize,
}

#[derive(Debug, Args)]
pub struct DdlArgs {
    /// The engine whose SQL to print
    #[arg(long, value_enum)]
    pub engine: crate::ddl::Engine,

    /// Accounts for Athena's partition projection (repeatable); read from the lake when it is a local directory
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct QueriesArgs {
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `NAME=VALUE` of `--param`.
pub fn parse_param(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("{s:?}: a parameter is NAME=VALUE"))?;
    let name = name.trim().trim_start_matches('$');
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{name:?}: a parameter name is letters, digits and _"));
    }
    Ok((name.to_string(), value.to_string()))
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// text, markdown (the README's table) or duckdb (the JSON type DuckDB reads an event with)
    #[arg(long, default_value = "text")]
    pub format: String,
}

/// Sizes like `16MiB`, `2GB`, `512k` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    Ok((n * mult) as u64)
}

/// A moment: an RFC 3339 time, a date (its first instant, in UTC, as CloudTrail's times are), or a span back from
/// now (`90m`, `24h`, `7d`, as humantime reads spans).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    parse_time_at(s, Utc::now())
}

fn parse_time_at(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(t) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    humantime::parse_duration(t)
        .ok()
        .and_then(|span| chrono::Duration::from_std(span).ok())
        .and_then(|span| now.checked_sub_signed(span))
        .ok_or_else(|| {
            format!("{s:?}: expected a time (2026-12-04T18:00:00Z), a date (2026-12-04) or a span back from now (24h)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_moments_dates_or_spans_back_from_now() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T18:30:00Z").unwrap().with_timezone(&Utc);
        let at = |s| parse_time_at(s, now).map(|t| t.to_rfc3339());
        assert_eq!(at("2026-12-04T18:00:00Z"), Ok("2026-12-04T18:00:00+00:00".into()));
        assert_eq!(at("2026-12-04T20:00:00+02:00"), Ok("2026-12-04T18:00:00+00:00".into()));
        assert_eq!(at("2026-12-01"), Ok("2026-12-01T00:00:00+00:00".into()));
        assert_eq!(at("90m"), Ok("2026-12-04T17:00:00+00:00".into()));
        assert_eq!(at("7d"), Ok("2026-11-27T18:30:00+00:00".into()));
        for bad in ["yesterday", "2026-13-01", "12/04/2026", "", "-1h", "99999999999999999999d"] {
            let err = at(bad).unwrap_err();
            assert!(err.contains("expected a time"), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("1.5k"), Ok(1500));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
