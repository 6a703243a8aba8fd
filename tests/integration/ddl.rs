//! `trailsql ddl`: the printed table and views parse in each engine's dialect, and say what they must.

use datafusion::sql::sqlparser::dialect::{Dialect, DuckDbDialect, GenericDialect, SparkSqlDialect};
use datafusion::sql::sqlparser::parser::Parser;

use crate::common::*;

fn ddl(engine: &str) -> String {
    let out = run(bin().args([
        "ddl",
        "--engine",
        engine,
        "--lake",
        "s3://org-trail-lake/lake",
        "--account",
        "111111111111",
        "--account",
        "222222222222",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// The statements of a script, without its comment lines.
fn statements(script: &str) -> Vec<String> {
    trailsql::sqltext::split_statements(script)
        .into_iter()
        .map(|s| {
            s.sql
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string()
        })
        .collect()
}

fn parses(dialect: &dyn Dialect, sql: &str) {
    if let Err(e) = Parser::parse_sql(dialect, sql) {
        panic!("does not parse in {dialect:?}: {e}\n{sql}");
    }
}

#[test]
fn athena_ddl_parses_as_hive_and_its_views_as_trino_sql() {
    let script = ddl("athena");
    let s = statements(&script);
    assert!(s[0].starts_with("CREATE EXTERNAL TABLE cloudtrail"), "{}", s[0]);
    assert!(s[0].contains("'projection.account_id.values' = '111111111111,222222222222'"));
    assert!(s[0].contains("useridentity struct<type:string,"), "{}", s[0]);
    assert!(s[0].contains(
        "storage.location.template' = 's3://org-trail-lake/lake/account_id=${account_id}/event_date=${event_date}/'"
    ));
    // Athena's DDL is Hive's; sqlparser's Hive dialect has no struct<…> type, and Spark's Hive-format DDL is the
    // same grammar.
    parses(&SparkSqlDialect {}, &s[0]);
    assert_eq!(s.len(), 6, "the table and five views");
    for v in &s[1..] {
        parses(&GenericDialect {}, v);
        assert!(!v.contains("json_get_str") && !v.contains("arrow_cast") && !v.contains("cloudtrail_time"), "{v}");
    }
    let events = &s[1];
    assert!(events.contains("json_extract_scalar(requestparameters, '$.taskPolicyArn.arn')"), "{events}");
    assert!(events.contains("date_parse("), "{events}");
}

#[test]
fn trino_ddl_parses() {
    let script = ddl("trino");
    let s = statements(&script);
    assert!(s[0].contains("partitioned_by = ARRAY['account_id', 'event_date']"));
    assert!(s[1].starts_with("CALL system.sync_partition_metadata"));
    assert!(s[0].contains("sessioncontext row(attributes row(creationdate timestamp(6) with time zone"), "{}", s[0]);
    // sqlparser has no Trino dialect and no ROW(…) type; DuckDB's STRUCT(…) and ARRAY<…> have the same shape, so
    // the table is checked in that form, and the views in the generic dialect.
    parses(&DuckDbDialect {}, &trino_types_as_duckdb(&s[0]));
    for st in &s[1..] {
        parses(&GenericDialect {}, st);
    }
    assert!(script.contains("INTERVAL '60' SECOND"), "{script}");
}

#[test]
fn spark_ddl_parses() {
    let script = ddl("spark");
    let s = statements(&script);
    assert!(s[0].contains("PARTITIONED BY (account_id string, event_date date)\nSTORED AS PARQUET"), "{}", s[0]);
    assert_eq!(s[1], "MSCK REPAIR TABLE cloudtrail");
    for st in &s {
        parses(&SparkSqlDialect, st);
    }
    assert!(script.contains("get_json_object("), "{script}");
    assert!(script.contains("collect_list(named_struct("), "ordered array_agg is rewritten: {script}");
}

/// `row(…)` as `STRUCT(…)` and `array(…)` as `ARRAY<…>`, matching each parenthesis with its own.
fn trino_types_as_duckdb(sql: &str) -> String {
    let mut out = String::new();
    let mut closers = Vec::new();
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("array(") {
            out.push_str("ARRAY<");
            closers.push('>');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("row(") {
            out.push_str("STRUCT(");
            closers.push(')');
            rest = after;
        } else {
            match c {
                '(' => closers.push(')'),
                ')' => {
                    out.push(closers.pop().expect("balanced parentheses"));
                    rest = &rest[1..];
                    continue;
                }
                _ => {}
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    assert!(closers.is_empty(), "unbalanced parentheses: {sql}");
    out
}
