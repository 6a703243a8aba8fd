//! Running SQL text: every input (a `query` argument, a `run` file, a REPL line) ends here.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::session::Session;

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
pub async fn execute(session: &Session, sql: &str) -> Result<Output> {
    Ok(statement(session, sql, Vec::new()).await?)
}

type Params = Vec<(String, datafusion::common::ScalarValue)>;

/// Plans and runs one statement with its parameter values.
///
/// DataFusion 55's push-down of struct-field expressions fails on some compositions of our views in one statement
/// ("Optimizer rule 'optimize_projections' failed … No field named …", apache/datafusion#22895 and its family).
/// Turning it off everywhere costs `privileged_sessions` about a fifth of its speed, so only a statement that
/// fails that way is planned again without it. The failure comes while optimizing, before anything runs, so the
/// retry repeats no side effect.
async fn statement(session: &Session, sql: &str, values: Params) -> datafusion::error::Result<Output> {
    match plan_and_collect(&session.ctx, sql, values.clone()).await {
        Err(e) if e.to_string().contains("Optimizer rule 'optimize_projections' failed") => {
            let mut state = session.ctx.state();
            state.config_mut().options_mut().optimizer.enable_leaf_expression_pushdown = false;
            plan_and_collect(&datafusion::prelude::SessionContext::new_with_state(state), sql, values).await
        }
        other => other,
    }
}

async fn plan_and_collect(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    values: Params,
) -> datafusion::error::Result<Output> {
    let mut df = ctx.sql(sql).await?;
    if !values.is_empty() {
        df = df.with_param_values(values)?;
    }
    let schema = df.schema().inner().clone();
    let batches = df.collect().await?;
    Ok(Output { schema, batches })
}

/// Runs every statement of a SQL file (or saved query) with bound parameters, handing each result to `sink`.
/// Returns the row count of the last statement that returned rows.
///
/// Parameters are bound as values (`$name` placeholders), never spliced into the SQL text. A statement's
/// parameter comes from `params`, else from the query's declared default; a missing one is an error that names it.
pub async fn run_script(
    session: &Session,
    query: &crate::queries::SavedQuery,
    params: &std::collections::BTreeMap<String, String>,
    sink: &mut dyn FnMut(&Output) -> Result<()>,
) -> Result<Option<usize>> {
    use crate::error::Error;
    let statements = crate::sqltext::split_statements(&query.sql);
    let mut used = std::collections::BTreeSet::new();
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
    let mut last_rows = None;
    for stmt in &statements {
        let at = |message: String| Error::Query { file: query.origin_name(), line: stmt.line, message };
        let mut values = Vec::new();
        for name in crate::sqltext::placeholders(&stmt.sql) {
            let value = params
                .get(&name)
                .cloned()
                .or_else(|| query.params.iter().find(|p| p.name == name).and_then(|p| p.default.clone()))
                .ok_or_else(|| at(format!("missing parameter ${name}: give --param {name}=VALUE")))?;
            used.insert(name.clone());
            values.push((name, datafusion::common::ScalarValue::Utf8(Some(value))));
        }
        let out = statement(session, &stmt.sql, values)
            .await
            .map_err(|e| relocate(e.to_string(), stmt.line, &query.origin_name()))?;
        if !out.schema.fields().is_empty() {
            last_rows = Some(out.rows());
            sink(&out)?;
        }
    }
    Ok(last_rows)
}

/// An error of a statement, with the line numbers of SQL syntax errors turned into lines of the file.
fn relocate(message: String, stmt_line: usize, file: &str) -> crate::error::Error {
    let line = message
        .find("Line: ")
        .and_then(|i| message[i + 6..].split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
        .map_or(stmt_line, |l| stmt_line + l.saturating_sub(1));
    crate::error::Error::Query { file: file.to_string(), line, message }
}
