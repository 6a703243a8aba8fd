//! `trailsql ddl`: the lake's table and views for Athena, Trino, Spark and DuckDB, so a lake can outgrow one machine
//! (and so that DuckDB, in the benchmarks, runs the very same views).
//!
//! The table comes from the lake crate's schema; the views are our own view files, parsed and rewritten: the JSON functions, our
//! UDFs, time arithmetic and intervals become each engine's own, then the statement is printed back.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Statement, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::{Dialect, DuckDbDialect, GenericDialect, SparkSqlDialect};
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{Error, Result};
use trailsql_lake::schema::{self, EVENT, Field, Kind};

/// The CREATE TABLE statement of the lake at `location` (an `s3://` URL). For Athena, partition projection lists
/// `accounts` (the lake's own, when known) and every day from 2015.
pub fn table(engine: Engine, location: &str, accounts: &[String]) -> String {
    let location = format!("{}/", location.trim_end_matches('/'));
    let mut cols: Vec<(String, String)> =
        EVENT.iter().map(|m| (schema::column_name(m.key), engine_type(m.kind, engine))).collect();
    cols.push((schema::UNMAPPED.into(), engine_type(Kind::Text, engine)));
    let list = |cols: &[(String, String)], sep: &str| {
        cols.iter().map(|(n, t)| format!("  {n}{sep}{t}")).collect::<Vec<_>>().join(",\n")
    };
    match engine {
        Engine::Athena => {
            // Known accounts are listed; otherwise queries must name the account (`injected` projection).
            let account_projection = if accounts.is_empty() {
                "'projection.account_id.type' = 'injected'".to_string()
            } else {
                format!(
                    "'projection.account_id.type' = 'enum',\n  'projection.account_id.values' = '{}'",
                    accounts.join(",")
                )
            };
            format!(
                "CREATE EXTERNAL TABLE cloudtrail (\n{}\n)\nPARTITIONED BY (account_id string, event_date date)\n\
                 STORED AS PARQUET\nLOCATION '{location}'\nTBLPROPERTIES (\n  'projection.enabled' = 'true',\n  \
                 {account_projection},\n  'projection.event_date.type' = 'date',\n  'projection.event_date.format' = 'yyyy-MM-dd',\n  \
                 'projection.event_date.range' = '2015-01-01,NOW',\n  'projection.event_date.interval' = '1',\n  \
                 'projection.event_date.interval.unit' = 'DAYS',\n  'storage.location.template' = \
                 '{location}account_id=${{account_id}}/event_date=${{event_date}}/'\n)",
                list(&cols, " ")
            )
        }
        Engine::Trino => {
            cols.push(("account_id".into(), "varchar".into()));
            cols.push(("event_date".into(), "date".into()));
            format!(
                "CREATE TABLE cloudtrail (\n{}\n)\nWITH (\n  format = 'PARQUET',\n  external_location = '{location}',\n  \
                 partitioned_by = ARRAY['account_id', 'event_date']\n)",
                list(&cols, " ")
            )
        }
        // The Hive-format table (Spark with a Hive metastore: EMR, Glue, Databricks): sqlparser reads it, where it
        // cannot read Spark's `USING parquet PARTITIONED BY (…)` order.
        Engine::Spark => format!(
            "CREATE EXTERNAL TABLE cloudtrail (\n{}\n)\nPARTITIONED BY (account_id string, event_date date)\n\
             STORED AS PARQUET\nLOCATION '{location}'",
            list(&cols, " ")
        ),
        Engine::Duckdb => format!(
            "CREATE VIEW cloudtrail AS SELECT * FROM read_parquet('{location}account_id=*/event_date=*/*.parquet', \
             hive_partitioning = true, hive_types = {{'account_id': VARCHAR, 'event_date': DATE}})"
        ),
    }
}

/// What an engine needs after the table, to find the partitions already in the lake.
pub fn after_table(engine: Engine) -> Option<&'static str> {
    match engine {
        Engine::Trino => Some("CALL system.sync_partition_metadata(current_schema, 'cloudtrail', 'ADD')"),
        Engine::Spark => Some("MSCK REPAIR TABLE cloudtrail"),
        Engine::Athena | Engine::Duckdb => None,
    }
}

fn dialect(engine: Engine) -> Box<dyn Dialect> {
    match engine {
        Engine::Spark => Box::new(SparkSqlDialect),
        Engine::Duckdb => Box::new(DuckDbDialect),
        Engine::Athena | Engine::Trino => Box::new(GenericDialect {}),
    }
}

fn parse_expr(engine: Engine, text: &str) -> Expr {
    let d = dialect(engine);
    Parser::new(d.as_ref())
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .unwrap_or_else(|e| panic!("a rewrite template does not parse ({e}): {text}"))
}

fn args(f: &Function) -> Vec<String> {
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => e.to_string(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The text of a string literal argument.
fn literal(arg: &str) -> Option<String> {
    let inner = arg.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(inner.replace("''", "'"))
}

fn json_path(keys: &[String]) -> String {
    let path: Vec<String> = keys.iter().map(|k| literal(k).unwrap_or_else(|| k.clone())).collect();
    format!("'$.{}'", path.join("."))
}

/// The allowed actions of the root-task policies, as an engine expression over policy, source and name.
fn task_policy_allows(engine: Engine, p: &str, s: &str, n: &str) -> String {
    let service = match engine {
        Engine::Spark => format!("split({s}, '\\\\.')[0]"),
        _ => format!("split_part({s}, '.', 1)"),
    };
    let action = format!(
        "concat({service}, ':', CASE WHEN {s} = 's3.amazonaws.com' AND {n} = 'ListBuckets' THEN 'ListAllMyBuckets' ELSE {n} END)"
    );
    let mut cases = format!(
        "CASE WHEN {p} IS NULL OR {s} IS NULL OR {n} IS NULL THEN NULL WHEN {action} = 'sts:GetCallerIdentity' THEN true"
    );
    for (name, actions) in trailsql_udfs::root_task::POLICIES.iter() {
        let list: Vec<String> = actions.iter().map(|a| format!("'{a}'")).collect();
        cases.push_str(&format!(
            " WHEN {p} IN ('{name}', 'arn:aws:iam::aws:policy/root-task/{name}') THEN {action} IN ({})",
            list.join(", ")
        ));
    }
    cases.push_str(" END");
    cases
}

/// Rewrites our functions and DataFusion's spellings into an engine's SQL.
struct Rewrite {
    engine: Engine,
}

impl Rewrite {
    fn function(&self, f: &Function) -> Option<String> {
        let name = f.name.to_string().to_ascii_lowercase();
        let a = args(f);
        let spark = self.engine == Engine::Spark;
        let duckdb = self.engine == Engine::Duckdb;
        let json = |keys: &[String]| match self.engine {
            Engine::Spark => format!("get_json_object({}, {})", a[0], json_path(keys)),
            Engine::Duckdb => format!("json_extract_string({}, {})", a[0], json_path(keys)),
            Engine::Athena | Engine::Trino => format!("json_extract_scalar({}, {})", a[0], json_path(keys)),
        };
        Some(match name.as_str() {
            "json_get_str" => json(&a[1..]),
            // Text that is not a number is NULL, as in DataFusion, never an error (Spark's ANSI mode).
            "json_get_int" => format!("TRY_CAST({} AS BIGINT)", json(&a[1..])),
            // The same formats as trailsql-trailsql-lake/src/time.rs: ISO 8601, and the STS form with or without its second comma.
            // try_to_timestamp, not to_timestamp: in Spark's default ANSI mode the latter raises on text it cannot
            // parse; the session time zone must be UTC (the README says so).
            "cloudtrail_time" if spark => format!(
                "coalesce(try_to_timestamp({0}), try_to_timestamp({0}, 'MMM d, yyyy, h:mm:ss a'), \
                 try_to_timestamp({0}, 'MMM d, yyyy h:mm:ss a'))",
                a[0]
            ),
            "cloudtrail_time" if duckdb => format!(
                "coalesce(TRY_CAST({0} AS TIMESTAMPTZ), try_strptime({0}, ['%b %-d, %Y, %-I:%M:%S %p', \
                 '%b %-d, %Y %-I:%M:%S %p']) AT TIME ZONE 'UTC')",
                a[0]
            ),
            "cloudtrail_time" => format!(
                "coalesce(try(from_iso8601_timestamp({0})), try(with_timezone(date_parse({0}, '%b %e, %Y, %l:%i:%s %p'), 'UTC')), \
                 try(with_timezone(date_parse({0}, '%b %e, %Y %l:%i:%s %p'), 'UTC')))",
                a[0]
            ),
            "arn_account" if spark => {
                // try_element_at: an ARN of fewer parts is NULL, where `[4]` raises in ANSI mode.
                format!("CASE WHEN {0} LIKE 'arn:%' THEN nullif(try_element_at(split({0}, ':'), 5), '') END", a[0])
            }
            "arn_account" => format!("CASE WHEN {0} LIKE 'arn:%' THEN nullif(split_part({0}, ':', 5), '') END", a[0]),
            "root_task_name" => format!("nullif(regexp_extract({}, 'root-task/([A-Za-z0-9]+)$', 1), '')", a[0]),
            "task_policy_allows" => task_policy_allows(self.engine, &a[0], &a[1], &a[2]),
            "access_key_kind" => format!(
                "CASE WHEN {0} LIKE 'AKIA%' THEN 'long-term' WHEN {0} LIKE 'ASIA%' THEN 'temporary' \
                 WHEN {0} LIKE 'ABIA%' THEN 'bearer-token' WHEN {0} LIKE 'ACCA%' THEN 'context-specific' \
                 WHEN {0} IS NULL OR {0} = '' THEN NULL ELSE 'unknown' END",
                a[0]
            ),
            "arrow_cast" if literal(&a[1]).as_deref() == Some("Duration(Second)") => match self.engine {
                Engine::Spark => format!("make_interval(0, 0, 0, 0, 0, 0, {})", a[0]),
                Engine::Duckdb => format!("to_seconds({})", a[0]),
                Engine::Athena | Engine::Trino => format!("({} * INTERVAL '1' SECOND)", a[0]),
            },
            "array_agg" if spark => return self.spark_ordered_array_agg(f),
            _ => return None,
        })
    }

    /// Spark has no `array_agg(x ORDER BY k)`: collect (k, x) pairs, sort them, keep x.
    fn spark_ordered_array_agg(&self, f: &Function) -> Option<String> {
        let FunctionArguments::List(list) = &f.args else { return None };
        let order = list.clauses.iter().find_map(|c| match c {
            ast::FunctionArgumentClause::OrderBy(o) => Some(o.clone()),
            _ => None,
        })?;
        let value = args(f).into_iter().next()?;
        let keys: Vec<String> = order.iter().enumerate().map(|(i, o)| format!("'k{i}', {}", o.expr)).collect();
        Some(format!("transform(array_sort(collect_list(named_struct({}, 'v', {value}))), e -> e.v)", keys.join(", ")))
    }

    fn interval(&self, value: &Expr) -> Option<String> {
        // DataFusion's INTERVAL '60 seconds' is INTERVAL '60' SECOND in Trino and Spark; DuckDB reads it as it is.
        if self.engine == Engine::Duckdb {
            return None;
        }
        let Expr::Value(v) = value else { return None };
        let Value::SingleQuotedString(s) = &v.value else { return None };
        let (n, unit) = s.split_once(' ')?;
        let unit = unit.trim_end_matches('s').to_ascii_uppercase();
        Some(format!("INTERVAL '{n}' {unit}"))
    }
}

impl VisitorMut for Rewrite {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let replacement = match expr {
            Expr::Function(f) => self.function(f),
            Expr::Interval(i) if i.leading_field.is_none() => self.interval(&i.value),
            Expr::Cast { data_type: ast::DataType::Varchar(_), expr: inner, .. } if self.engine == Engine::Spark => {
                Some(format!("CAST({inner} AS STRING)"))
            }
            _ => None,
        };
        if let Some(text) = replacement {
            *expr = parse_expr(self.engine, &text);
        }
        ControlFlow::Continue(())
    }
}

/// Our views in an engine's SQL, in the order they depend on each other.
pub fn views(engine: Engine) -> Result<Vec<(String, String)>> {
    let order = [
        "assume_root_events",
        "assume_root_key_use",
        "privileged_sessions",
        "privileged_session_summary",
        "root_activity",
    ];
    let mut out = Vec::new();
    for name in order {
        let (_, sql) = crate::embedded::VIEWS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::Other(format!("view {name} is not embedded")))?;
        let mut statements = Parser::parse_sql(&GenericDialect {}, sql)
            .map_err(|e| Error::Other(format!("view {name} does not parse: {e}")))?;
        for s in &mut statements {
            let _ = s.visit(&mut Rewrite { engine });
        }
        let text: Vec<String> = statements.iter().map(Statement::to_string).collect();
        out.push((name.to_string(), text.join(";\n")));
    }
    Ok(out)
}

/// Everything `trailsql ddl` prints: the table, what finds its partitions, and the views.
pub fn script(engine: Engine, location: &str, accounts: &[String]) -> Result<String> {
    let mut s = format!("-- trailsql {} lake at {location}, for {engine:?}\n\n", env!("CARGO_PKG_VERSION"));
    s.push_str(&table(engine, location, accounts));
    s.push_str(";\n\n");
    if let Some(after) = after_table(engine) {
        s.push_str(after);
        s.push_str(";\n\n");
    }
    for (name, sql) in views(engine)? {
        s.push_str(&format!("-- {name}\n{sql};\n\n"));
    }
    Ok(s)
}

/// SQL engines whose DDL is printed from this schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Athena,
    Trino,
    Spark,
    /// DuckDB's type of the JSON as CloudTrail writes it (CloudTrail's key spelling), for `read_json`.
    Duckdb,
}

/// The engine's type of a member of the tree.
pub fn engine_type(kind: Kind, engine: Engine) -> String {
    let fields = |members: &[Field]| {
        members
            .iter()
            .map(|m| match engine {
                Engine::Athena | Engine::Spark => {
                    format!("{}:{}", schema::column_name(m.key), engine_type(m.kind, engine))
                }
                Engine::Trino => format!("{} {}", schema::column_name(m.key), engine_type(m.kind, engine)),
                Engine::Duckdb => format!("\"{}\" {}", m.key, engine_type(m.kind, engine)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (kind, engine) {
        (Kind::Text, Engine::Trino) => "varchar".into(),
        (Kind::Text | Kind::Json, Engine::Athena | Engine::Spark) => "string".into(),
        (Kind::Text, Engine::Duckdb) => "VARCHAR".into(),
        (Kind::Json, Engine::Trino) => "varchar".into(),
        (Kind::Json, Engine::Duckdb) => "JSON".into(),
        (Kind::Bool(_), Engine::Duckdb) => "BOOLEAN".into(),
        (Kind::Bool(_), _) => "boolean".into(),
        (Kind::Time, Engine::Trino) => "timestamp(6) with time zone".into(),
        (Kind::Time, Engine::Duckdb) => "TIMESTAMPTZ".into(),
        (Kind::Time, _) => "timestamp".into(),
        (Kind::Struct(m), Engine::Trino) => format!("row({})", fields(m)),
        (Kind::Struct(m), Engine::Duckdb) => format!("STRUCT({})", fields(m)),
        (Kind::Struct(m), _) => format!("struct<{}>", fields(m)),
        (Kind::List(m), Engine::Trino) => format!("array(row({}))", fields(m)),
        (Kind::List(m), Engine::Duckdb) => format!("STRUCT({})[]", fields(m)),
        (Kind::List(m), _) => format!("array<struct<{}>>", fields(m)),
    }
}

/// DuckDB's type of one CloudTrail event, for reading the JSON with a typed column list.
pub fn duckdb_event_type() -> String {
    engine_type(Kind::Struct(EVENT), Engine::Duckdb)
}
