//! `field_values(list, member)`: one member of every structure in a list, as a list of texts.
//!
//! CloudTrail's `resources` is a list of `{ARN, accountId, type}`; a Sigma rule over `resources.ARN` means the ARN
//! of any of them, which [`crate::any_element`] tests once the ARNs are a list of their own. The member is read
//! from the structures' column as it is, under the list's own offsets; structures without it, and NULL members,
//! are left out (as `json_values` leaves JSON nulls out), so that an empty list means the field is absent.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{doc, finish, text_list};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FieldValues {
    signature: Signature,
}

impl Default for FieldValues {
    fn default() -> Self {
        FieldValues { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for FieldValues {
    fn name(&self) -> &str {
        "field_values"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(text_list())
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [list @ DataType::List(item), name]
                if matches!(item.data_type(), DataType::Struct(_)) && name.is_string() =>
            {
                Ok(vec![list.clone(), name.clone()])
            }
            _ => plan_err!("field_values takes a list of structures and the name of a member, not {args:?}"),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = match &args.args[1] {
            ColumnarValue::Scalar(s) => match s.try_as_str() {
                Some(Some(name)) => name.to_string(),
                _ => return Ok(ColumnarValue::Scalar(ScalarValue::try_from(args.return_field.data_type())?)),
            },
            ColumnarValue::Array(_) => return exec_err!("field_values: the member's name must be a constant"),
        };
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let lists = args.args[0].to_array(args.number_rows)?;
        let lists = lists.as_list::<i32>();
        let structs = lists.values().as_struct();
        let Some(at) = structs.fields().iter().position(|f| f.name().eq_ignore_ascii_case(&name)) else {
            return exec_err!("field_values: the structures have no member {name}");
        };
        let member = cast(structs.column(at), &DataType::Utf8)?;
        let member = member.as_string::<i32>();
        let mut out = ListBuilder::new(StringBuilder::new());
        for (row, range) in lists.offsets().windows(2).enumerate() {
            if lists.is_null(row) {
                out.append_null();
                continue;
            }
            for i in range[0] as usize..range[1] as usize {
                if structs.is_valid(i) && member.is_valid(i) {
                    out.values().append_value(member.value(i));
                }
            }
            out.append(true);
        }
        finish(Arc::new(out.finish()), scalar)
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "One member of every structure in a list, as a list of texts; structures without it and NULL \
                 members are left out.",
                "field_values(list, member)",
                "SELECT eventname FROM cloudtrail WHERE array_has(field_values(resources, 'type'), 'AWS::KMS::Key')",
            )
            .with_argument("list", "A list of structures, such as `resources`")
            .with_argument("member", "The name of a member of the structures (any case)")
            .build()
        });
        Some(&DOC)
    }
}
