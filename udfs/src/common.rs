//! What every function of the crate shares: reading string arguments in any encoding, returning scalars for
//! scalar calls, lists of texts, and the documentation section.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, DocSection, Documentation};

/// The documentation section of our functions in `SHOW FUNCTIONS` and `\h`.
pub const DOC_SECTION: DocSection =
    DocSection { include: true, label: "CloudTrail Functions", description: Some("Functions for AWS CloudTrail data") };

/// A list of texts: what `json_values` and `field_values` give, and what `any_element` tests with `element()`.
pub fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

/// Starts the documentation of one of our functions.
pub fn doc(description: &str, syntax: &str, example: &str) -> datafusion::logical_expr::DocumentationBuilder {
    Documentation::builder(DOC_SECTION, description, syntax).with_sql_example(example)
}

/// String arguments of one call, whatever their encoding (Utf8, LargeUtf8, Utf8View, dictionaries), read row by
/// row. Scalars are read at every row.
pub struct Strings {
    columns: Vec<StringArray>,
    scalar: Vec<bool>,
    rows: usize,
}

impl Strings {
    pub fn new(args: &[ColumnarValue], number_rows: usize) -> Result<Strings> {
        let mut columns = Vec::with_capacity(args.len());
        let mut scalar = Vec::with_capacity(args.len());
        for arg in args {
            let (array, is_scalar) = match arg {
                ColumnarValue::Array(a) => (a.clone(), false),
                ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
            };
            columns.push(to_utf8(&array)?);
            scalar.push(is_scalar);
        }
        let all_scalar = scalar.iter().all(|s| *s);
        Ok(Strings { columns, scalar, rows: if all_scalar { 1 } else { number_rows } })
    }

    /// Rows to compute: one when every argument is a scalar.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether argument `arg` was one value for every row.
    pub fn is_scalar(&self, arg: usize) -> bool {
        self.scalar[arg]
    }

    pub fn all_scalar(&self) -> bool {
        self.scalar.iter().all(|s| *s)
    }

    /// Argument `arg` at `row`.
    pub fn get(&self, arg: usize, row: usize) -> Option<&str> {
        let col = &self.columns[arg];
        let r = if self.scalar[arg] { 0 } else { row };
        col.is_valid(r).then(|| col.value(r))
    }
}

/// Any string array as Utf8.
pub fn to_utf8(array: &ArrayRef) -> Result<StringArray> {
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().clone(),
        _ => cast(array, &DataType::Utf8)?.as_string::<i32>().clone(),
    })
}

/// The result of a call: a scalar when every argument was one.
pub fn finish(array: ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    if scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?))
    } else {
        Ok(ColumnarValue::Array(array))
    }
}

/// Applies a per-row function of string arguments that returns text.
pub fn map_to_string(
    args: &[ColumnarValue],
    rows: usize,
    f: impl Fn(&Strings, usize) -> Option<String>,
) -> Result<ColumnarValue> {
    let s = Strings::new(args, rows)?;
    let out: StringArray = (0..s.rows()).map(|r| f(&s, r)).collect();
    finish(Arc::new(out), s.all_scalar())
}

/// Applies a per-row function of string arguments that returns a boolean.
pub fn map_to_bool(
    args: &[ColumnarValue],
    rows: usize,
    f: impl Fn(&Strings, usize) -> Option<bool>,
) -> Result<ColumnarValue> {
    let s = Strings::new(args, rows)?;
    let out: datafusion::arrow::array::BooleanArray = (0..s.rows()).map(|r| f(&s, r)).collect();
    finish(Arc::new(out), s.all_scalar())
}

#[cfg(test)]
pub mod testing {
    //! Calls a function over the same strings in every encoding, so each test checks them all.

    use std::sync::Arc;

    use datafusion::arrow::array::{Array, ArrayRef, DictionaryArray, LargeStringArray, StringArray, StringViewArray};
    use datafusion::arrow::datatypes::{Field, Int32Type};
    use datafusion::common::config::ConfigOptions;
    use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl};

    /// The four encodings of a column of optional strings.
    pub fn encodings(values: &[Option<&str>]) -> Vec<ArrayRef> {
        vec![
            Arc::new(StringArray::from(values.to_vec())),
            Arc::new(LargeStringArray::from(values.to_vec())),
            Arc::new(StringViewArray::from(values.to_vec())),
            Arc::new(values.iter().copied().collect::<DictionaryArray<Int32Type>>()),
        ]
    }

    /// Calls `f` with array arguments; returns the output array.
    pub fn call(f: &dyn ScalarUDFImpl, args: Vec<ArrayRef>) -> ArrayRef {
        let rows = args[0].len();
        let arg_fields = args.iter().map(|a| Arc::new(Field::new("a", a.data_type().clone(), true))).collect();
        let types: Vec<_> = args.iter().map(|a| a.data_type().clone()).collect();
        let return_type = f.return_type(&types).unwrap();
        let out = f
            .invoke_with_args(ScalarFunctionArgs {
                args: args.into_iter().map(ColumnarValue::Array).collect(),
                arg_fields,
                number_rows: rows,
                return_field: Arc::new(Field::new("out", return_type, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap();
        match out {
            ColumnarValue::Array(a) => a,
            ColumnarValue::Scalar(s) => s.to_array().unwrap(),
        }
    }

    /// A generator of pseudo-random numbers (xorshift), so that tests of many values need no crate and give the same
    /// values on every run.
    pub fn numbers() -> impl FnMut() -> u64 {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// Calls a one-argument string function on every encoding of `inputs`; checks the text results.
    pub fn check_strings(f: &dyn ScalarUDFImpl, cases: &[(Option<&str>, Option<&str>)]) {
        let inputs: Vec<Option<&str>> = cases.iter().map(|c| c.0).collect();
        for array in encodings(&inputs) {
            let encoding = array.data_type().clone();
            let out = call(f, vec![array]);
            let out = super::to_utf8(&out).unwrap();
            for (i, (input, want)) in cases.iter().enumerate() {
                let got = out.is_valid(i).then(|| out.value(i));
                assert_eq!(got, *want, "{}({input:?}) as {encoding}", f.name());
            }
        }
    }
}
