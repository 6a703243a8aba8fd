//! What each command does, from parsed arguments to an outcome, one file per command; `main.rs` only maps the
//! outcome to an exit code.

#[cfg(feature = "ballista")]
mod ballista;
mod convert;
mod ddl;
mod queries;
mod query;
mod repl;
mod run;
mod schema;
mod sigma;

use std::io::Write;
use std::sync::Arc;

use trailsql_lake::storage::{Location, S3Options, Storage};

use crate::cli::{Cli, Command, DEFAULT_LAKE, OutputArgs, ReplArgs};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::print::{Format, PrintOptions};
use crate::session::{self, SessionOptions};

fn lake_location(cli: &Cli) -> Result<Location> {
    Ok(Location::parse(cli.lake.as_deref().unwrap_or(DEFAULT_LAKE))?)
}

/// Session settings from the global flags.
fn session_options(cli: &Cli) -> Result<SessionOptions> {
    let ballista = match cli.ballista.as_deref() {
        None => None,
        Some(url) => Some(session::Cluster::parse(url)?),
    };
    let ballista_wait = std::time::Duration::from_secs(cli.ballista_wait);
    let memory_limit = session::memory::limit(cli.memory_limit);
    Ok(SessionOptions { ballista, ballista_wait, memory_limit, ..SessionOptions::default() })
}

pub async fn run(cli: Cli) -> Result<Outcome> {
    // Settings are resolved once, here, and passed down.
    let storage = Arc::new(Storage::new(S3Options::from_env()));
    let cli = &cli;
    let storage = &storage;
    match &cli.command {
        Some(Command::Convert(args)) => convert::run(cli, args, storage).await,
        Some(Command::Query(args)) => query::run(cli, args, storage).await,
        Some(Command::Run(args)) => run::run(cli, args, storage).await,
        Some(Command::Queries(args)) => queries::run(cli, args).await,
        Some(Command::Sigma(args)) => sigma::run(cli, args, storage).await,
        Some(Command::Schema(args)) => schema::run(args),
        Some(Command::Repl(args)) => repl::run(cli, args, storage).await,
        Some(Command::Ddl(args)) => ddl::run(cli, args, storage).await,
        #[cfg(feature = "ballista")]
        Some(Command::BallistaScheduler(args)) => ballista::scheduler(args, storage).await,
        #[cfg(feature = "ballista")]
        Some(Command::BallistaExecutor(args)) => ballista::executor(args, storage).await,
        #[cfg(not(feature = "ballista"))]
        Some(Command::BallistaScheduler(_) | Command::BallistaExecutor(_)) => Err(session::without_ballista()),
        None => repl::run(cli, &ReplArgs::default(), storage).await,
    }
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

/// Says so on standard error when a query found nothing because the lake holds nothing: "no privileged
/// sessions" and "no logs" must not look alike. The lake is only looked at when no rows came back.
pub(crate) async fn note_if_empty(cli: &Cli, session: &session::Session, rows: Option<usize>) {
    if cli.quiet || rows.unwrap_or(0) > 0 {
        return;
    }
    if let Ok(false) = session.lake.lake.has_data().await {
        let (lake, hint) = (&session.lake.location, trailsql_lake::layout::FILL_HINT);
        eprintln!("trailsql: note: the lake {lake} holds no events; fill it with {hint}");
    }
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
