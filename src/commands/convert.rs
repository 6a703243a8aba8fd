//! `trailsql convert`: the convert flags resolved into the lake crate's options, and its summary printed.

use std::sync::Arc;

use trailsql_lake::convert::source::{Filters, Limits};
use trailsql_lake::convert::{self, ConvertOptions};
use trailsql_lake::storage::{Storage, open_lake};

use super::{lake_location, write_stdout};
use crate::cli::{Cli, ConvertArgs};
use crate::error::Result;
use crate::outcome::Outcome;

pub async fn run(cli: &Cli, args: &ConvertArgs, storage: &Arc<Storage>) -> Result<Outcome> {
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
        memory_limit: cli.memory_limit.map_or(defaults.memory_limit, |m| usize::try_from(m).unwrap_or(usize::MAX)),
        compact_below: args.compact_below,
        progress: !cli.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ..defaults
    };
    let summary = convert::convert(&lake.lake, &opts, storage).await?;
    // It names the files that failed: a source's file names are anyone's.
    write_stdout(crate::print::terminal_safe_lines(&summary.render()).as_bytes())?;
    Ok(if summary.ok() { Outcome::Success } else { Outcome::Found })
}
