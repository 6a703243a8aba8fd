//! `trailsql query`: one statement, its result streamed in the chosen format.

use std::io::Write;
use std::sync::Arc;

use trailsql_lake::storage::{Storage, open_lake};

use super::{lake_location, note_if_empty, output_sink, print_options, session_options};
use crate::cli::{Cli, QueryArgs};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::{print, session};

pub async fn run(cli: &Cli, args: &QueryArgs, storage: &Arc<Storage>) -> Result<Outcome> {
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
