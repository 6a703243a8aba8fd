//! Rebuilding input events from lake rows: the inverse of `convert::rows`, and the proof that nothing is lost.
//!
//! A member comes from its typed column unless `unmapped` holds its key (in any letter case): one such key gives
//! the spelling, and either the whole value or, for an object, the parts to merge; several keys are all kept
//! verbatim. Keys of `unmapped` that match no member are added as they are.

use std::collections::HashSet;

use crate::time::format_cloudtrail_time;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::schema::{self, BoolForm, EVENT, Field, Kind};

/// The events of a batch of lake rows, as JSON objects.
pub fn rebuild(batch: &RecordBatch) -> Result<Vec<Value>> {
    let columns: Vec<&dyn Array> = EVENT
        .iter()
        .map(|m| {
            batch
                .column_by_name(&schema::column_name(m.key))
                .map(|c| c.as_ref())
                .ok_or_else(|| Error::Other(format!("column {} missing", schema::column_name(m.key))))
        })
        .collect::<Result<_>>()?;
    let unmapped = batch
        .column_by_name(schema::UNMAPPED)
        .ok_or_else(|| Error::Other("column unmapped missing".into()))?
        .as_string::<i32>();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let u: Map<String, Value> = if unmapped.is_valid(row) {
            serde_json::from_str(unmapped.value(row)).map_err(|e| Error::Other(format!("unmapped is not JSON: {e}")))?
        } else {
            Map::new()
        };
        out.push(Value::Object(level(EVENT, &columns, row, &u)));
    }
    Ok(out)
}

fn level(members: &[Field], columns: &[&dyn Array], row: usize, u: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut used: HashSet<&str> = HashSet::new();
    for (m, col) in members.iter().zip(columns) {
        let keys: Vec<&String> = u.keys().filter(|k| k.eq_ignore_ascii_case(m.key)).collect();
        match keys.as_slice() {
            [] => {
                if col.is_valid(row) {
                    out.insert(m.key.to_string(), typed(m, *col, row));
                }
            }
            [k] => {
                used.insert(k.as_str());
                let value = match (m.kind, &u[*k]) {
                    (Kind::Struct(inner), Value::Object(partial)) if col.is_valid(row) => {
                        let s = col.as_struct();
                        let children: Vec<&dyn Array> = s.columns().iter().map(|c| c.as_ref()).collect();
                        Value::Object(level(inner, &children, row, partial))
                    }
                    (_, v) => v.clone(),
                };
                out.insert((*k).clone(), value);
            }
            many => {
                for k in many {
                    used.insert(k.as_str());
                    out.insert((*k).clone(), u[*k].clone());
                }
            }
        }
    }
    for (k, v) in u {
        if !used.contains(k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn typed(m: &Field, col: &dyn Array, row: usize) -> Value {
    match m.kind {
        Kind::Text => Value::String(col.as_string::<i32>().value(row).to_string()),
        Kind::Json => {
            let text = col.as_string::<i32>().value(row);
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
        }
        Kind::Bool(form) => {
            let b = col.as_boolean().value(row);
            match form {
                BoolForm::Json => Value::Bool(b),
                BoolForm::Text => Value::String(b.to_string()),
            }
        }
        Kind::Time => {
            let t = col.as_primitive::<TimestampMicrosecondType>().value(row);
            format_cloudtrail_time(t).map_or(Value::Null, Value::String)
        }
        Kind::Struct(inner) => {
            let s = col.as_struct();
            let children: Vec<&dyn Array> = s.columns().iter().map(|c| c.as_ref()).collect();
            Value::Object(level(inner, &children, row, &Map::new()))
        }
        Kind::List(inner) => {
            let list = col.as_list::<i32>();
            let items = list.value(row);
            let s = items.as_struct();
            let children: Vec<&dyn Array> = s.columns().iter().map(|c| c.as_ref()).collect();
            Value::Array(
                (0..s.len())
                    .map(|i| {
                        if s.is_valid(i) { Value::Object(level(inner, &children, i, &Map::new())) } else { Value::Null }
                    })
                    .collect(),
            )
        }
    }
}
