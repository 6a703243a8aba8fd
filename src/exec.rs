//! Running SQL text: every input (a `query` argument, a `run` file, a REPL line) ends here.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{Error, Result};
use crate::session::Session;

/// The result of one statement: its schema, and its batches as they are computed.
pub struct Output {
    pub schema: SchemaRef,
    pub batches: BoxStream<'static, Result<RecordBatch>>,
}

impl Output {
    /// Every batch, for callers that need the whole result (tests, small lookups).
    pub async fn collect(self) -> Result<Vec<RecordBatch>> {
        futures::TryStreamExt::try_collect(self.batches).await
    }
}

/// Plans one SQL statement and starts it.
pub async fn execute(session: &Session, sql: &str) -> Result<Output> {
    let (schema, stream) = statement(session, sql, Vec::new()).await?;
    Ok(Output { schema, batches: stream.map(|b| b.map_err(Error::from)).boxed() })
}

type Params = Vec<(String, datafusion::common::ScalarValue)>;

/// Plans and runs one statement with its parameter values.
///
/// DataFusion 55's push-down of struct-field expressions fails on some compositions of our views in one statement
/// ("Optimizer rule 'optimize_projections' failed … No field named …", apache/datafusion#22895 and its family).
/// Turning it off everywhere costs `privileged_sessions` about a fifth of its speed, so only a statement that
/// fails that way is planned again without it. The failure comes while optimizing, before anything runs, so the
/// retry repeats no side effect.
async fn statement(session: &Session, sql: &str, values: Params) -> datafusion::error::Result<Started> {
    match plan_and_start(&session.ctx, sql, values.clone()).await {
        Err(e) if e.to_string().contains("Optimizer rule 'optimize_projections' failed") => {
            let mut state = session.ctx.state();
            state.config_mut().options_mut().optimizer.enable_leaf_expression_pushdown = false;
            plan_and_start(&datafusion::prelude::SessionContext::new_with_state(state), sql, values).await
        }
        other => other,
    }
}

type Started = (SchemaRef, datafusion::execution::SendableRecordBatchStream);

async fn plan_and_start(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    values: Params,
) -> datafusion::error::Result<Started> {
    let mut df = ctx.sql(sql).await?;
    if !values.is_empty() {
        df = df.with_param_values(values)?;
    }
    let schema = df.schema().inner().clone();
    Ok((schema, df.execute_stream().await?))
}

/// A statement of a SQL file (or saved query), its parameters bound, ready to run.
pub struct Bound {
    pub sql: String,
    /// 1-based line of the statement in its file.
    pub line: usize,
    file: String,
    values: Params,
}

/// The statements of a SQL file (or saved query) with their parameters bound.
///
/// Parameters are bound as values (`$name` placeholders), never spliced into the SQL text. A statement's
/// parameter comes from `params`, else from the query's declared default; a missing one is an error that names it.
pub fn bind(
    query: &crate::queries::SavedQuery,
    params: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<Bound>> {
    let statements = crate::sqltext::split_statements(&query.sql);
    for name in params.keys() {
        if !query.params.iter().any(|p| &p.name == name)
            && !statements.iter().any(|s| crate::sqltext::placeholders(&s.sql).contains(name))
        {
            let known: Vec<String> = query.params.iter().map(|p| p.name.clone()).collect();
            return Err(Error::Usage(format!(
                "{}: no parameter {name} (its parameters: {})",
                query.origin_name(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        }
    }
    statements
        .into_iter()
        .map(|stmt| {
            let mut values = Vec::new();
            for name in crate::sqltext::placeholders(&stmt.sql) {
                let value = params
                    .get(&name)
                    .cloned()
                    .or_else(|| query.params.iter().find(|p| p.name == name).and_then(|p| p.default.clone()))
                    .ok_or_else(|| Error::Query {
                        file: query.origin_name(),
                        line: stmt.line,
                        message: format!("missing parameter ${name}: give --param {name}=VALUE"),
                    })?;
                values.push((name, datafusion::common::ScalarValue::Utf8(Some(value))));
            }
            Ok(Bound { sql: stmt.sql, line: stmt.line, file: query.origin_name(), values })
        })
        .collect()
}

impl Bound {
    /// Plans and starts the statement; errors, planning's and those of its batches, name the file and line. A
    /// statement that returns no columns (`CREATE VIEW`, `SET`) gives `None`, once it has run.
    pub async fn execute(&self, session: &Session) -> Result<Option<Output>> {
        let (schema, mut stream) = statement(session, &self.sql, self.values.clone())
            .await
            .map_err(|e| relocate(e.to_string(), self.line, &self.file))?;
        if schema.fields().is_empty() {
            while let Some(b) = stream.next().await {
                b.map_err(|e| relocate(e.to_string(), self.line, &self.file))?;
            }
            return Ok(None);
        }
        let (line, file) = (self.line, self.file.clone());
        let batches = stream.map(move |b| b.map_err(|e| relocate(e.to_string(), line, &file))).boxed();
        Ok(Some(Output { schema, batches }))
    }
}

/// An error of a statement, with the line numbers of SQL syntax errors turned into lines of the file.
fn relocate(message: String, stmt_line: usize, file: &str) -> Error {
    let line = message
        .find("Line: ")
        .and_then(|i| message[i + 6..].split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
        .map_or(stmt_line, |l| stmt_line + l.saturating_sub(1));
    Error::Query { file: file.to_string(), line, message }
}
