//! `trailsql queries`: the saved queries, their descriptions and parameters.

use std::io::Write;
use std::sync::Arc;

use super::{output_sink, print_options};
use crate::cli::{Cli, QueriesArgs};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::print;

pub async fn run(cli: &Cli, args: &QueriesArgs) -> Result<Outcome> {
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
