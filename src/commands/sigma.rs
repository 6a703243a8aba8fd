//! `trailsql sigma`: Sigma rules for CloudTrail, compiled and run in one scan, or their SQL with `--explain`.

use std::io::Write;
use std::sync::Arc;

use futures::StreamExt;

use trailsql_lake::storage::{Storage, open_lake};

use super::{lake_location, output_sink, print_options, session_options, write_stdout};
use crate::cli::{Cli, SigmaArgs};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::{print, session};

pub async fn run(cli: &Cli, args: &SigmaArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    let scope = crate::sigma::Scope::new(args.since, args.until, args.accounts.clone())?;
    let set = crate::sigma::load(&args.rules, args.level.as_deref(), scope)?;
    let mut tally = crate::sigma::Tally::default();
    let rows = if args.explain {
        let mut text = String::new();
        for r in &set.rules {
            text.push_str(&format!(
                "-- {}: {} ({})\n{};\n\n",
                r.file,
                r.title,
                r.id,
                crate::sigma::rule_sql(r, &set.scope)
            ));
        }
        if set.rules.len() > 1 {
            text.push_str(&format!("-- all of them, as they run: one query\n{};\n", crate::sigma::query(&set)));
        }
        write_stdout(text.as_bytes())?;
        0
    } else {
        let lake = open_lake(&lake_location(cli)?, false, storage).await?;
        let session_opts = session::SessionOptions { no_filter_pushdown: true, ..session_options(cli)? };
        let session = session::build(&lake, &session_opts, storage.clone()).await?;
        let opts = print_options(&args.output)?;
        let out = crate::exec::execute(&session, &crate::sigma::query(&set)).await?;
        let mut sink = output_sink(args.output.output.as_deref())?;
        let mut tallied = None;
        let batches = out.batches.inspect(|b| {
            if let Ok(b) = b
                && let Err(e) = tally.add(b)
            {
                tallied.get_or_insert(e);
            }
        });
        let rows = print::print_stream(&mut sink, &out.schema, batches, &opts).await?;
        if let Some(e) = tallied {
            return Err(e);
        }
        sink.flush().map_err(|e| Error::io("output", e))?;
        rows
    };
    if !cli.quiet || !set.unsupported.is_empty() {
        eprint!("{}", crate::sigma::summary(&set, (!args.explain).then_some(rows)));
    }
    if !cli.quiet {
        eprint!("{}", tally.report(&set));
    }
    if let Some(e) = crate::sigma::refused(&set).filter(|_| !args.skip_unsupported) {
        return Err(e);
    }
    Ok(if args.fail_on_rows && rows > 0 { Outcome::Found } else { Outcome::Success })
}
