//! What each command does, from parsed arguments to an outcome; `main.rs` only maps the outcome to an exit code.

use std::io::Write;
use std::sync::Arc;

use crate::cli::{Cli, Command, ConvertArgs, DEFAULT_LAKE, OutputArgs, QueriesArgs, QueryArgs, ReplArgs, RunArgs};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::print::{self, Format, PrintOptions};
use crate::session::{self, SessionOptions};
use trailsql_lake::convert::source::Filters;
use trailsql_lake::convert::{self, ConvertOptions, source::Limits};
use trailsql_lake::storage::{Location, S3Options, Storage, open_lake};

/// How a command ended, when it did not fail.
fn lake_location(cli: &Cli) -> Result<Location> {
    Ok(Location::parse(cli.lake.as_deref().unwrap_or(DEFAULT_LAKE))?)
}

/// Session settings from the global flags.
fn session_options(cli: &Cli) -> Result<SessionOptions> {
    let ballista = match cli.ballista.as_deref() {
        None => None,
        Some(url) => Some(session::Cluster::parse(url)?),
    };
    Ok(SessionOptions { ballista, ..SessionOptions::default() })
}

pub async fn run(cli: Cli) -> Result<Outcome> {
    // Settings are resolved once, here, and passed down.
    let storage = Arc::new(Storage::new(S3Options::from_env()));
    let cli = &cli;
    let storage = &storage;
    match &cli.command {
        Some(Command::Convert(args)) => run_convert(cli, args, storage).await,
        Some(Command::Query(args)) => run_query(cli, args, storage).await,
        Some(Command::Run(args)) => run_files(cli, args, storage).await,
        Some(Command::Queries(args)) => list_queries(cli, args).await,
        Some(Command::Schema(args)) => {
            let text = match args.format.as_str() {
                "markdown" => trailsql_lake::schema::markdown(),
                "duckdb" => format!("{}\n", crate::ddl::duckdb_event_type()),
                "text" => trailsql_lake::schema::doc_rows()
                    .into_iter()
                    .map(|r| format!("{:<55} {}\n", r.path, r.sql_type))
                    .collect(),
                other => {
                    return Err(Error::Usage(format!("unknown schema format {other:?}: text, markdown or duckdb")));
                }
            };
            write_stdout(text.as_bytes())?;
            Ok(Outcome::Success)
        }
        Some(Command::Repl(args)) => run_repl(cli, args, storage).await,
        Some(Command::Ddl(args)) => {
            let location = lake_location(cli)?;
            let mut accounts = args.accounts.clone();
            if let (true, Location::Local(_)) = (accounts.is_empty(), &location) {
                let lake = open_lake(&location, false, storage).await?;
                accounts = lake.lake.partitions().await?.into_iter().map(|p| p.account).collect();
                accounts.dedup();
            }
            let shown = match &location {
                Location::Local(p) => {
                    std::fs::canonicalize(p).map_or_else(|_| p.display().to_string(), |p| p.display().to_string())
                }
                s3 => s3.to_string(),
            };
            write_stdout(crate::ddl::script(args.engine, &shown, &accounts)?.as_bytes())?;
            Ok(Outcome::Success)
        }
        #[cfg(feature = "ballista")]
        Some(Command::BallistaScheduler(args)) => {
            crate::session::ballista::run_scheduler(
                &crate::session::ballista::SchedulerOptions { bind: args.bind },
                storage.clone(),
            )
            .await?;
            Ok(Outcome::Success)
        }
        #[cfg(feature = "ballista")]
        Some(Command::BallistaExecutor(args)) => {
            let (host, port) = match args.scheduler.rsplit_once(':') {
                Some((h, p)) => {
                    (h, p.parse().map_err(|_| Error::Usage(format!("--scheduler {}: bad port", args.scheduler)))?)
                }
                None => (args.scheduler.as_str(), 50050),
            };
            let opts = crate::session::ballista::ExecutorOptions {
                scheduler_host: host.to_string(),
                scheduler_port: port,
                bind_host: args.bind_host.clone(),
                external_host: args.external_host.clone(),
                port: args.port,
                grpc_port: args.grpc_port,
                concurrent_tasks: args
                    .concurrent_tasks
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                work_dir: args.work_dir.clone(),
            };
            crate::session::ballista::run_executor(&opts, storage.clone()).await?;
            Ok(Outcome::Success)
        }
        #[cfg(not(feature = "ballista"))]
        Some(Command::BallistaScheduler(_) | Command::BallistaExecutor(_)) => Err(session::without_ballista()),
        None => run_repl(cli, &ReplArgs::default(), storage).await,
    }
}

async fn run_convert(cli: &Cli, args: &ConvertArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    let location = lake_location(cli)?;
    let lake = open_lake(&location, true, storage).await?;
    let defaults = ConvertOptions::default();
    let opts = ConvertOptions {
        sources: args.sources.clone(),
        filters: Filters {
            accounts: args.accounts.clone(),
            regions: args.regions.clone(),
            from: args.from,
            to: args.to,
        },
        threads: args.threads.unwrap_or(defaults.threads).max(1),
        max_record: usize::try_from(args.max_record_size).unwrap_or(usize::MAX),
        limits: Limits { max_file_bytes: args.max_file_size, ..defaults.limits },
        memory_budget: usize::try_from(args.memory_limit).unwrap_or(usize::MAX),
        compact_below: args.compact_below,
        progress: !cli.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ..defaults
    };
    let summary = convert::convert(&lake.lake, &opts, storage).await?;
    write_stdout(summary.render().as_bytes())?;
    Ok(if summary.ok() { Outcome::Success } else { Outcome::Found })
}

/// Print settings from the output flags.
pub fn print_options(args: &OutputArgs) -> Result<PrintOptions> {
    if args.format == Format::Parquet && args.output.is_none() {
        return Err(Error::Usage("--format parquet needs an output file (-o FILE)".into()));
    }
    Ok(PrintOptions {
        format: args.format,
        maxrows: (args.maxrows > 0).then_some(args.maxrows),
        ..PrintOptions::default()
    })
}

async fn run_query(cli: &Cli, args: &QueryArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    let lake = open_lake(&lake_location(cli)?, false, storage).await?;
    let session = session::build(&lake, &session_options(cli)?, storage.clone()).await?;
    let opts = print_options(&args.output)?;
    let out = crate::exec::execute(&session, &args.sql).await?;
    let mut sink = output_sink(args.output.output.as_deref())?;
    let rows = print::print_stream(&mut sink, &out.schema, out.batches, &opts).await?;
    sink.flush().map_err(|e| Error::io("output", e))?;
    note_if_empty(cli, &session, Some(rows)).await;
    Ok(Outcome::Success)
}

/// Says so on standard error when a query found nothing because the lake holds nothing: "no privileged
/// sessions" and "no logs" must not look alike. The lake is only looked at when no rows came back.
async fn note_if_empty(cli: &Cli, session: &session::Session, rows: Option<usize>) {
    if cli.quiet || rows.unwrap_or(0) > 0 {
        return;
    }
    if let Ok(false) = session.lake.lake.has_data().await {
        let (lake, hint) = (&session.lake.location, trailsql_lake::layout::FILL_HINT);
        eprintln!("trailsql: note: the lake {lake} holds no events; fill it with {hint}");
    }
}

async fn run_files(cli: &Cli, args: &RunArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    // Resolve every target before opening the lake: a typo is reported at once.
    let targets: Vec<_> =
        args.targets.iter().map(|t| crate::queries::resolve(t, &cli.queries_dirs)).collect::<Result<_>>()?;
    let lake = open_lake(&lake_location(cli)?, false, storage).await?;
    let session = session::build(&lake, &session_options(cli)?, storage.clone()).await?;
    let opts = print_options(&args.output)?;
    let params: std::collections::BTreeMap<String, String> = args.params.iter().cloned().collect();
    let mut sink = output_sink(args.output.output.as_deref())?;
    let mut printed = 0usize;
    let mut last_rows = None;
    for query in &targets {
        for stmt in crate::exec::bind(query, &params)? {
            let Some(out) = stmt.execute(&session).await? else { continue };
            if printed > 0 && opts.format == Format::Table {
                writeln!(sink).map_err(|e| Error::io("output", e))?;
            }
            printed += 1;
            last_rows = Some(print::print_stream(&mut sink, &out.schema, out.batches, &opts).await?);
        }
    }
    sink.flush().map_err(|e| Error::io("output", e))?;
    note_if_empty(cli, &session, last_rows).await;
    Ok(if args.fail_on_rows && last_rows.unwrap_or(0) > 0 { Outcome::Found } else { Outcome::Success })
}

async fn list_queries(cli: &Cli, args: &QueriesArgs) -> Result<Outcome> {
    use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
    let all = crate::queries::all(&cli.queries_dirs)?;
    let column = |f: &dyn Fn(&crate::queries::SavedQuery) -> String| -> ArrayRef {
        Arc::new(StringArray::from(all.iter().map(f).collect::<Vec<_>>()))
    };
    let batch = RecordBatch::try_from_iter(vec![
        ("name", column(&|q| q.name.clone())),
        ("description", column(&|q| q.description.clone())),
        ("parameters", column(&crate::queries::SavedQuery::params_summary)),
        ("origin", column(&|q| q.origin.clone())),
    ])?;
    let mut opts = print_options(&args.output)?;
    opts.max_cell_width = 80;
    let mut sink = output_sink(args.output.output.as_deref())?;
    print::print_batches(&mut sink, &batch.schema(), &[batch], &opts)?;
    sink.flush().map_err(|e| Error::io("output", e))?;
    Ok(Outcome::Success)
}

async fn run_repl(cli: &Cli, args: &ReplArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    let lake = open_lake(&lake_location(cli)?, false, storage).await?;
    let session = session::build(&lake, &session_options(cli)?, storage.clone()).await?;
    let history = if args.no_history {
        None
    } else {
        args.history_file
            .clone()
            .or_else(|| std::env::var_os("TRAILSQL_HISTORY").map(Into::into))
            .or_else(crate::repl::default_history)
    };
    let opts = crate::repl::ReplOptions {
        history,
        print: PrintOptions { maxrows: (args.maxrows > 0).then_some(args.maxrows), ..PrintOptions::default() },
        banner: !cli.quiet,
        queries_dirs: cli.queries_dirs.clone(),
    };
    crate::repl::run(session, opts).await
}

/// Standard output, or a file.
pub fn output_sink(path: Option<&std::path::Path>) -> Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(|e| Error::io(p, e))?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).map_err(|e| Error::io("standard output", e))
}
