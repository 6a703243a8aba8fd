//! `trailsql sigma`: Sigma rules for CloudTrail, compiled and run in one scan, or their SQL with `--explain`.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use futures::StreamExt;

use trailsql_lake::storage::{Storage, open_lake};

use super::{lake_location, output_sink, print_options, session_options, write_stdout};
use crate::cli::{Cli, SigmaArgs};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::sigma::checkpoint::{self, Checkpoint, Place, Previous};
use crate::sigma::{Changed, Scope};
use crate::{print, session};

pub async fn run(cli: &Cli, args: &SigmaArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    if args.checkpoint.is_some() && args.until.is_some() {
        return Err(Error::Usage(
            "--checkpoint takes no --until: each run gives what is new in the lake since the last one, whatever its \
             events' times"
                .into(),
        ));
    }
    let place = match &args.checkpoint {
        Some(location) => Some(Place::of(location, storage).await?),
        None => None,
    };
    // Taken before the checkpoint is read, and held until the run ends.
    let _lock = place.as_ref().map(checkpoint::lock).transpose()?;
    let previous = match &place {
        Some(place) => Checkpoint::read(place).await?,
        None => Previous::None,
    };
    // A checkpoint keeps its first run's start; one written before checkpoints kept partitions, the time its
    // runs had reached.
    let since = match &previous {
        Previous::State(c, _) => c.since(),
        Previous::Time(t, _) => Some(*t),
        Previous::None => args.since,
    };
    let mut scope = Scope::new(since, args.until, args.accounts.clone())?;
    if args.checkpoint.is_some() {
        scope.changed = Some(Changed::All);
    }
    let mut set = crate::sigma::load(&args.rules, args.level.as_deref(), scope.clone())?;
    let mut tally = crate::sigma::Tally::default();
    let mut state = None;
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
        let mut checkpoint = None;
        if let Some(file) = &place {
            let (mut read, version) = match previous {
                Previous::State(c, version) => (*c, version),
                Previous::Time(_, version) => (Checkpoint::new(since)?, version),
                Previous::None => (Checkpoint::new(since)?, None),
            };
            // Listed before the query lists them: a partition that changes meanwhile is read again next time.
            let now = partitions_now(&lake.lake, &set.scope, crate::sigma::reach_days(&set.rules)).await?;
            // After the listing: a merged file that it shows has its commit record written already.
            let commits = lake.lake.commits_from(read.commit()).await?;
            let newest = commits.last().map(|(name, _)| name.clone());
            let merged = commits.into_iter().flat_map(|(_, c)| c.removed).collect();
            read.commits(checkpoint::Commits { newest, merged });
            let rules = checkpoint::query_hash(&crate::sigma::query(&set));
            if let Some(new) = read.new_files(&now, &rules) {
                if new.is_empty() {
                    if !cli.quiet {
                        eprintln!("sigma: nothing new in the lake since the last run ({file})");
                    }
                    return refusal(&set, args).map_or(Ok(Outcome::Success), Err);
                }
                if !cli.quiet {
                    let (n, of) = (new.len(), now.len());
                    let files = new.values().map(Vec::len).sum::<usize>();
                    eprintln!("sigma: {files} new data files in {n} of {of} partitions since the last run ({file})");
                }
                scope.changed = Some(Changed::only(new));
                set = crate::sigma::load(&args.rules, args.level.as_deref(), scope)?;
            }
            checkpoint = Some((read, version, rules, now));
        }
        let mut session_opts = session::SessionOptions { no_filter_pushdown: true, ..session_options(cli)? };
        // The new files are read twice, for their hours and for the detections: their footers once.
        let read_hours = matches!(set.scope.changed, Some(Changed::Only { .. })) && set.counts_around().is_some();
        if read_hours {
            session_opts.metadata_cache = session::LASTING_METADATA_CACHE;
        }
        let session = session::build(&lake, &session_opts, storage.clone()).await?;
        if let Some(changed) = &set.scope.changed {
            register_new_files(&session, changed).await?;
        }
        if read_hours {
            let new_hours = new_hours(&session).await?;
            if let Some(h) = new_hours.as_ref().filter(|_| !cli.quiet) {
                eprintln!("sigma: the correlations read the events around the {} hours of the new ones", h.len());
            }
            if let Some(Changed::Only { hours, .. }) = &mut set.scope.changed {
                *hours = new_hours;
            }
        }
        let opts = print_options(&args.output)?;
        let out = crate::exec::execute(&session, &crate::sigma::query(&set)).await?;
        let mut sink = output_sink(args.output.output.as_deref())?;
        let mut seen = checkpoint::Seen::new();
        let mut left_out = 0;
        let batches = out.batches.map(|b| {
            let b = match &checkpoint {
                Some((c, ..)) => b.and_then(|b| {
                    let n = b.num_rows();
                    let kept = c.leave_out_given(&mut seen, b)?;
                    left_out += n - kept.num_rows();
                    Ok(kept)
                }),
                None => b,
            };
            b.and_then(|b| tally.add(&b).map(|()| b))
        });
        let rows = print::print_stream(&mut sink, &out.schema, batches, &opts).await?;
        sink.flush().map_err(|e| Error::io("output", e))?;
        if let Some((c, version, rules, now)) = checkpoint {
            if !cli.quiet && left_out > 0 {
                eprintln!("sigma: {left_out} rows given by earlier runs left out");
            }
            state = Some((c.after(rules, &now, seen, &set.scope.accounts), version));
        }
        rows
    };
    if !cli.quiet || !set.unsupported.is_empty() {
        eprint!("{}", crate::sigma::summary(&set, (!args.explain).then_some(rows)));
    }
    if !cli.quiet {
        eprint!("{}", tally.report(&set));
    }
    if let Some(e) = refusal(&set, args) {
        return Err(e);
    }
    // Only after the output is written and the run succeeded.
    if let (Some(place), Some((state, version))) = (&place, state) {
        state.write(place, version).await?;
    }
    Ok(if args.fail_on_rows && rows > 0 { Outcome::Found } else { Outcome::Success })
}

/// The partitions a run with a checkpoint may read, each with its data files: those of its accounts,
/// from the day of its start less the days its correlations look back (a late event there changes windows after
/// the start).
async fn partitions_now(lake: &trailsql_lake::Lake, scope: &Scope, reach: i32) -> Result<checkpoint::Partitions> {
    let first_day = scope.since.map(|t| t.timestamp().div_euclid(86_400) - i64::from(reach));
    Ok(lake
        .data_files_by_partition(&scope.accounts)
        .await?
        .into_iter()
        .filter(|(k, _)| first_day.is_none_or(|d| i64::from(k.day) >= d))
        .map(|(k, files)| {
            let files = files.into_iter().map(|(path, size)| (path.rsplit('/').next().unwrap_or("").to_string(), size));
            (k, files.collect())
        })
        .collect())
}

/// Registers the table of a scheduler's run's new data files ([`crate::sigma::NEW_FILES`]): the lake's table
/// narrowed to them, or a view of their partitions where the session's table cannot be narrowed (Ballista's).
async fn register_new_files(session: &session::Session, changed: &Changed) -> Result<()> {
    let Changed::Only { files, .. } = changed else { return Ok(()) };
    if !session.register_files(crate::sigma::NEW_FILES, files.iter().cloned().collect()).await?
        && let Some(view) = changed.partitions_view()
    {
        session.ctx.sql(&view).await?;
    }
    Ok(())
}

/// The hours of the new data files' events ([`crate::sigma::new_hours_query`]); `None` if an event has no time.
async fn new_hours(session: &session::Session) -> Result<Option<BTreeSet<i64>>> {
    let batches = crate::exec::execute(session, &crate::sigma::new_hours_query()).await?.collect().await?;
    let mut hours = BTreeSet::new();
    for b in &batches {
        let column = b.column(0).as_primitive::<Int64Type>();
        if column.null_count() > 0 {
            return Ok(None);
        }
        hours.extend(column.values().iter().copied());
    }
    Ok(Some(hours))
}

/// The error that ends a run with rules that were not run, unless `--skip-unsupported`.
fn refusal(set: &crate::sigma::RuleSet, args: &SigmaArgs) -> Option<Error> {
    crate::sigma::refused(set).filter(|_| !args.skip_unsupported)
}
