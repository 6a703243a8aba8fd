//! `trailsql sigma`: Sigma rules for CloudTrail, compiled and run in one scan, or their SQL with `--explain`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use trailsql_lake::storage::{Storage, open_lake};

use super::{lake_location, output_sink, print_options, session_options, write_stdout};
use crate::cli::{Cli, SigmaArgs};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::{print, session};

pub async fn run(cli: &Cli, args: &SigmaArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    let (since, until) = match &args.checkpoint {
        None => (args.since, args.until),
        Some(file) => {
            // Without an end of its own, the run ends where it starts: what arrives meanwhile is the next run's.
            let until = args.until.unwrap_or_else(Utc::now);
            let since = read_checkpoint(file)?.or(args.since);
            if since.is_some_and(|s| s >= until) {
                eprintln!(
                    "sigma: nothing to run: {} already covers the time to {}",
                    file.display(),
                    until.to_rfc3339()
                );
                return Ok(Outcome::Success);
            }
            (since, Some(until))
        }
    };
    let scope = crate::sigma::Scope::new(since, until, args.accounts.clone())?;
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
        let batches = out.batches.map(|b| b.and_then(|b| tally.add(&b).map(|()| b)));
        let rows = print::print_stream(&mut sink, &out.schema, batches, &opts).await?;
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
    if let (Some(file), Some(until), false) = (&args.checkpoint, set.scope.until, args.explain) {
        write_checkpoint(file, until)?;
    }
    Ok(if args.fail_on_rows && rows > 0 { Outcome::Found } else { Outcome::Success })
}

/// Where the last successful run ended, if a run has recorded it.
fn read_checkpoint(file: &Path) -> Result<Option<DateTime<Utc>>> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(file, e)),
    };
    DateTime::parse_from_rfc3339(text.trim()).map(|t| Some(t.with_timezone(&Utc))).map_err(|_| {
        Error::Usage(format!(
            "{}: not a checkpoint (one RFC 3339 time, written by `trailsql sigma --checkpoint`): {:?}",
            file.display(),
            text.chars().take(60).collect::<String>()
        ))
    })
}

/// Records the end of a run that succeeded: written beside the file and renamed over it, so that a run killed at
/// any moment leaves the old checkpoint or the new one, and its window is run again rather than skipped.
fn write_checkpoint(file: &Path, until: DateTime<Utc>) -> Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temporary = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(file, e))?;
    temporary
        .write_all(format!("{}\n", until.to_rfc3339()).as_bytes())
        .and_then(|()| temporary.as_file().sync_all())
        .map_err(|e| Error::io(file, e))?;
    // A temporary file that is not renamed is deleted when dropped.
    temporary.persist(file).map(drop).map_err(|e| Error::io(file, e.error))
}
