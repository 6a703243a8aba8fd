//! `trailsql repl` (and `trailsql` alone): the session and the REPL's settings.

use std::sync::Arc;

use trailsql_lake::storage::{Storage, open_lake};

use super::{lake_location, session_options};
use crate::cli::{Cli, ReplArgs};
use crate::error::Result;
use crate::outcome::Outcome;
use crate::print::PrintOptions;
use crate::session;

pub async fn run(cli: &Cli, args: &ReplArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    let lake = open_lake(&lake_location(cli)?, false, storage).await?;
    let opts = session::SessionOptions { metadata_cache: session::LASTING_METADATA_CACHE, ..session_options(cli)? };
    let session = session::build(&lake, &opts, storage.clone()).await?;
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
