//! `kept_in_place(x)`: `x` itself, computed where it is written; the optimizer neither moves nor copies it.
//!
//! DataFusion pushes a filter below the projection that computes the columns it reads by writing those columns'
//! expressions into it: a condition named in a subquery and read both by the filter above and by the projection
//! over that filter's rows is then computed twice, over every row and again over the rows kept. A Sigma
//! directory's fused query names the conditions of the rules that name no event (a keyword searched in every text
//! column among them) so: computed once per event, read by its filter and by its list of matches. Volatile
//! expressions are the ones the optimizer leaves where they are; this one is volatile in name only.

use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::doc;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct KeptInPlace {
    signature: Signature,
}

impl Default for KeptInPlace {
    fn default() -> Self {
        KeptInPlace { signature: Signature::any(1, Volatility::Volatile) }
    }
}

impl ScalarUDFImpl for KeptInPlace {
    fn name(&self) -> &str {
        "kept_in_place"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match <[ColumnarValue; 1]>::try_from(args.args) {
            Ok([x]) => Ok(x),
            Err(args) => exec_err!("kept_in_place takes one argument, not {}", args.len()),
        }
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "Its argument, computed where it is written: the optimizer does not copy it into a filter that \
                 reads its column (which would compute it twice). How `trailsql sigma` computes a costly condition \
                 once for its filter and its matches.",
                "kept_in_place(expression)",
                "SELECT eventid FROM (SELECT eventid, kept_in_place(icontains(useragent, 'kali')) AS k FROM cloudtrail) \
                 WHERE k",
            )
            .with_argument("expression", "Any expression")
            .build()
        });
        Some(&DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::call;
    use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
    use std::sync::Arc;

    #[test]
    fn gives_its_argument_unchanged() {
        let a: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)]));
        assert_eq!(call(&KeptInPlace::default(), vec![a.clone()]).to_data(), a.to_data());
    }
}
