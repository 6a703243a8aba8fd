//! `trailsql run`: SQL files, saved queries and Sigma rule files, with parameters; `--fail-on-rows` for gates.

use std::io::Write;
use std::sync::Arc;

use trailsql_lake::storage::{Storage, open_lake};

use super::{lake_location, note_if_empty, output_sink, print_options, session_options};
use crate::cli::{Cli, RunArgs};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::print::{self, Format};
use crate::session;

pub async fn run(cli: &Cli, args: &RunArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    // Resolve every target before opening the lake: a typo is reported at once.
    // A target ending in .yml or .yaml is Sigma rules, run as one query of them all.
    let mut rule_sets = Vec::new();
    let mut targets = Vec::new();
    for t in &args.targets {
        if crate::sigma::is_rule_file(t) {
            let set = crate::sigma::load(&[t.into()], None, crate::sigma::Scope::default())?;
            targets.push(crate::queries::SavedQuery::parse(&crate::sigma::query(&set), "sigma", t));
            rule_sets.push(set);
        } else {
            targets.push(crate::queries::resolve(t, &cli.queries_dirs)?);
        }
    }
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
    for set in &rule_sets {
        eprint!("{}", crate::sigma::summary(set, None));
    }
    if let Some(e) = rule_sets.iter().find_map(crate::sigma::refused) {
        return Err(e);
    }
    Ok(if args.fail_on_rows && last_rows.unwrap_or(0) > 0 { Outcome::Found } else { Outcome::Success })
}
