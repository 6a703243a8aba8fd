//! Running SQL text: every input (a `query` argument, a `run` file, a REPL line) ends here.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;

use crate::error::Result;

/// The result of one statement.
pub struct Output {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Output {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Plans and runs one SQL statement.
pub async fn execute(ctx: &SessionContext, sql: &str) -> Result<Output> {
    let df = ctx.sql(sql).await?;
    let schema = df.schema().inner().clone();
    let batches = df.collect().await?;
    Ok(Output { schema, batches })
}
