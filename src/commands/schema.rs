//! `trailsql schema`: the lake's columns as text, Markdown, or DuckDB's type of an event.

use super::write_stdout;
use crate::cli::SchemaArgs;
use crate::error::{Error, Result};
use crate::outcome::Outcome;

pub fn run(args: &SchemaArgs) -> Result<Outcome> {
    let text = match args.format.as_str() {
        "markdown" => trailsql_lake::schema::markdown(),
        "duckdb" => format!("{}\n", crate::ddl::duckdb_event_type()),
        "text" => {
            trailsql_lake::schema::doc_rows().into_iter().map(|r| format!("{:<55} {}\n", r.path, r.sql_type)).collect()
        }
        other => {
            return Err(Error::Usage(format!("unknown schema format {other:?}: text, markdown or duckdb")));
        }
    };
    write_stdout(text.as_bytes())?;
    Ok(Outcome::Success)
}
