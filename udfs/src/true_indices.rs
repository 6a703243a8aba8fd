//! `true_indices(c0, c1, …)`: for each row, the positions (from 0) of the conditions that hold.
//!
//! Sigma rules run fused: one scan tests every event against all their conditions, and each (rule, event) match is
//! a row, by `unnest(true_indices(…))`. `unnest(make_array(CASE WHEN c0 THEN 0 END, …))` says the same but builds a
//! row per rule for every event (fifty rules made fifty times the events, a sixth of the scan's time), and leaves
//! NULLs to be joined away.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Int32Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
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
        let mut offsets = Vec::with_capacity(rows + 1);
        let mut indices = Vec::new();
        offsets.push(0i32);
        for row in 0..rows {
            for (i, c) in conditions.iter().enumerate() {
                // NULL is not true: a condition that cannot be decided does not match.
                if c.is_valid(row) && c.value(row) {
                    indices.push(i as i32);
                }
            }
            offsets.push(indices.len() as i32);
        }
        let list = ListArray::new(item(), OffsetBuffer::new(offsets.into()), Arc::new(Int32Array::from(indices)), None);
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
    use crate::common::testing::call;
    use datafusion::arrow::array::ArrayRef;

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
}
