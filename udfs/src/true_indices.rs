//! `true_indices(c0, c1, …)`: for each row, the positions (from 0) of the conditions that hold.
//!
//! Sigma rules run fused: one scan tests every event against all their conditions, and each (rule, event) match is
//! a row, by `unnest(true_indices(…))`. `unnest(make_array(CASE WHEN c0 THEN 0 END, …))` says the same but builds a
//! row per rule for every event (fifty rules made fifty times the events, a sixth of the scan's time), and leaves
//! NULLs to be joined away.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Int32Array, ListArray};
use datafusion::arrow::buffer::{BooleanBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{doc, finish};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TrueIndices {
    signature: Signature,
}

impl Default for TrueIndices {
    fn default() -> Self {
        TrueIndices { signature: Signature::variadic(vec![DataType::Boolean], Volatility::Immutable) }
    }
}

fn item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Int32, false))
}

impl ScalarUDFImpl for TrueIndices {
    fn name(&self) -> &str {
        "true_indices"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(item()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let conditions: Vec<BooleanArray> = args
            .args
            .iter()
            .map(|a| {
                let array = a.to_array(rows)?;
                match array.data_type() {
                    DataType::Boolean => Ok(array.as_boolean().clone()),
                    DataType::Null => Ok(BooleanArray::new_null(rows)),
                    other => exec_err!("true_indices takes booleans, not {other}"),
                }
            })
            .collect::<Result<_>>()?;
        // Each condition's true rows (NULL is not true: a condition that cannot be decided does not match), as
        // bits. Matches are sparse (a fused Sigma run: 60 conditions over 155,000 kept events, 98,000 matches), so
        // the lists are built from the set bits, counted first and then placed, rather than by testing every
        // condition of every row.
        let holds: Vec<BooleanBuffer> = conditions
            .iter()
            .map(|c| match c.nulls() {
                Some(nulls) => c.values() & nulls.inner(),
                None => c.values().clone(),
            })
            .collect();
        let mut lengths = vec![0usize; rows];
        for row in holds.iter().flat_map(|h| h.set_indices()) {
            lengths[row] += 1;
        }
        let offsets = OffsetBuffer::<i32>::from_lengths(lengths);
        // Conditions in their order, each row's next free place moving on: a row's list is in the order of its
        // conditions.
        let mut next: Vec<usize> = offsets[..rows].iter().map(|&o| o as usize).collect();
        let mut indices = vec![0i32; offsets[rows] as usize];
        for (i, h) in holds.iter().enumerate() {
            for row in h.set_indices() {
                indices[next[row]] = i as i32;
                next[row] += 1;
            }
        }
        let list = ListArray::new(item(), offsets, Arc::new(Int32Array::from(indices)), None);
        finish(Arc::new(list), scalar)
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "The positions (from 0) of the arguments that are true, as a list; NULL counts as false. With \
                 unnest, one row per condition an event meets: how `trailsql sigma` runs many rules in one scan.",
                "true_indices(condition, ...)",
                "SELECT eventid, unnest(true_indices(eventname = 'StopLogging', errorcode IS NOT NULL)) FROM cloudtrail",
            )
            .with_argument("condition", "Boolean expressions, any number")
            .build()
        });
        Some(&DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{call, numbers};
    use datafusion::arrow::array::ArrayRef;
    use datafusion::arrow::buffer::NullBuffer;

    #[test]
    fn positions_of_the_true_conditions_null_is_false() {
        let a: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), Some(false), None, Some(true)]));
        let b: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), None, Some(false), Some(false)]));
        let c: ArrayRef = Arc::new(BooleanArray::from(vec![Some(false), Some(false), Some(true), Some(true)]));
        let out = call(&TrueIndices::default(), vec![a, b, c]);
        let out = out.as_list::<i32>();
        let rows: Vec<Vec<i32>> = (0..out.len())
            .map(|r| out.value(r).as_primitive::<datafusion::arrow::datatypes::Int32Type>().values().to_vec())
            .collect();
        assert_eq!(rows, vec![vec![0, 1], vec![], vec![2], vec![0, 2]]);
        assert_eq!(out.null_count(), 0);
    }

    /// The lists built from the conditions' bits are the ones a test of every condition of every row gives: many
    /// conditions, NULLs, and columns that are slices starting inside a byte of their bitmaps.
    #[test]
    fn lists_from_bits_are_the_row_by_row_ones() {
        let mut next = numbers();
        let rows = 1000;
        let conditions: Vec<BooleanArray> = (0..70)
            .map(|c| {
                // Some conditions true nowhere, some almost everywhere, most sparse; a NULL's value bit is as
                // likely set as any other.
                let density = [0, 1, 5, 50, 95][c % 5];
                let values: BooleanBuffer = (0..rows + 13).map(|_| next() % 100 < density).collect();
                let valid: BooleanBuffer = (0..rows + 13).map(|_| !next().is_multiple_of(10)).collect();
                BooleanArray::new(values, Some(NullBuffer::new(valid))).slice(c % 13, rows)
            })
            .collect();
        let want: Vec<Vec<i32>> = (0..rows)
            .map(|r| {
                let holds = |c: &&BooleanArray| c.is_valid(r) && c.value(r);
                conditions.iter().enumerate().filter(|(_, c)| holds(c)).map(|(i, _)| i as i32).collect()
            })
            .collect();
        let args = conditions.iter().map(|c| Arc::new(c.clone()) as ArrayRef).collect();
        let out = call(&TrueIndices::default(), args);
        let out = out.as_list::<i32>();
        let got: Vec<Vec<i32>> = (0..out.len())
            .map(|r| out.value(r).as_primitive::<datafusion::arrow::datatypes::Int32Type>().values().to_vec())
            .collect();
        assert_eq!(got, want);
        // Rows meet different numbers of conditions: the data exercises the counting, not one length for all.
        let lengths: std::collections::HashSet<usize> = want.iter().map(Vec::len).collect();
        assert!(lengths.len() > 5, "{lengths:?}");
    }
}
