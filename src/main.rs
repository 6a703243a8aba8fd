//! The `trailsql` binary: parse arguments, run, map the outcome to an exit code (0 ok, 1 found, 2 error).

use std::process::ExitCode;

use clap::Parser;
use trailsql::cli::Cli;
use trailsql::error::Error;
use trailsql::{commands, outcome};

/// The stack of the thread that parses and plans statements. SQL is parsed and planned by recursion, and the
/// query of a Sigma rule directory nests three subqueries per correlation: sixty correlations overflowed the main
/// thread's 8 MiB in a debug build. The memory is only reserved; pages are used as the recursion reaches them.
const PLANNING_STACK: usize = 256 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // See `trailsql::allocator`: converting keeps glibc's allocator, for its bounded memory.
    if !matches!(cli.command, Some(trailsql::cli::Command::Convert(_))) {
        trailsql::allocator::use_mimalloc();
    }
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return outcome::exit_code(Err(Error::Other(format!("cannot start the runtime: {e}")))),
    };
    let planner = std::thread::Builder::new().name("trailsql".into()).stack_size(PLANNING_STACK);
    match planner.spawn(move || runtime.block_on(commands::run(cli))) {
        Ok(thread) => {
            outcome::exit_code(thread.join().unwrap_or_else(|_| Err(Error::Other("the run panicked".into()))))
        }
        Err(e) => outcome::exit_code(Err(Error::Other(format!("cannot start a thread: {e}")))),
    }
}

/// Logs go to stderr as `RUST_LOG` says (`RUST_LOG=info`, `RUST_LOG=ballista=debug`). The Ballista processes run
/// unattended, so they log at `info` (executors joining and lost, jobs, task failures) when it is unset; the other
/// commands print their own errors and stay quiet.
#[cfg(feature = "ballista")]
fn init_logging(cli: &Cli) {
    let server = matches!(
        cli.command,
        Some(trailsql::cli::Command::BallistaScheduler(_) | trailsql::cli::Command::BallistaExecutor(_))
    );
    let env = env_logger::Env::default().default_filter_or(if server { "info" } else { "off" });
    env_logger::Builder::from_env(env).format_timestamp_millis().init();
}

#[cfg(not(feature = "ballista"))]
fn init_logging(_: &Cli) {}
