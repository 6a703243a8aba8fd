//! `field_values(list, member)`: one member of every structure in a list, as a list of texts.
//!
//! CloudTrail's `resources` is a list of `{ARN, accountId, type}`; a Sigma rule over `resources.ARN` means the ARN
//! of any of them, which [`crate::any_element`] tests once the ARNs are a list of their own. The member is read
//! from the structures' column as it is, under the list's own offsets; structures without it, and NULL members,
//! are left out (as `json_values` leaves JSON nulls out), so that an empty list means the field is absent.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, ListBuilder, StringBuilder};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
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
        let out = sharing(lists, structs.nulls(), &member).unwrap_or_else(|| built(lists, structs.nulls(), &member));
        finish(Arc::new(out), scalar)
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

/// The member's values copied list by list, NULL structures and members left out.
fn built(lists: &ListArray, structs: Option<&NullBuffer>, member: &ArrayRef) -> ListArray {
    let member = member.as_string::<i32>();
    let mut out = ListBuilder::new(StringBuilder::new());
    for (row, range) in lists.offsets().windows(2).enumerate() {
        if lists.is_null(row) {
            out.append_null();
            continue;
        }
        for i in range[0] as usize..range[1] as usize {
            if structs.is_none_or(|n| n.is_valid(i)) && member.is_valid(i) {
                out.values().append_value(member.value(i));
            }
        }
        out.append(true);
    }
    out.finish()
}

/// The member's column under the lists' own offsets, copied from nothing, when there is nothing to leave out: no
/// NULL structure or member in the lists, and no NULL list over values. A Sigma keyword searches `resources[].ARN`
/// and its three other members in every event, and building each list value by value was a tenth of that search.
fn sharing(lists: &ListArray, structs: Option<&NullBuffer>, member: &ArrayRef) -> Option<ListArray> {
    let offsets = lists.offsets();
    let (start, end) = (*offsets.first()? as usize, *offsets.last()? as usize);
    let none_null = |nulls: Option<&NullBuffer>| nulls.is_none_or(|n| n.slice(start, end - start).null_count() == 0);
    let empty_when_null =
        lists.nulls().is_none_or(|n| n.iter().zip(offsets.windows(2)).all(|(v, w)| v || w[0] == w[1]));
    (none_null(structs) && none_null(member.nulls()) && empty_when_null).then(|| {
        let item = Arc::new(Field::new_list_field(DataType::Utf8, true));
        ListArray::new(item, offsets.clone(), member.clone(), lists.nulls().cloned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{StringArray, StructArray};
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::datatypes::Fields;

    /// Lists of `{arn}` over `arns`, `lengths` long each, `valid` saying which lists are not NULL.
    fn lists(arns: Vec<Option<&str>>, lengths: &[usize], valid: Option<Vec<bool>>) -> ListArray {
        let arns: ArrayRef = Arc::new(StringArray::from(arns));
        let fields = Fields::from(vec![Field::new("arn", DataType::Utf8, true)]);
        let structs = StructArray::new(fields.clone(), vec![arns], None);
        let item = Arc::new(Field::new_list_field(DataType::Struct(fields), true));
        ListArray::new(
            item,
            OffsetBuffer::from_lengths(lengths.iter().copied()),
            Arc::new(structs),
            valid.map(NullBuffer::from),
        )
    }

    fn member(lists: &ListArray) -> ArrayRef {
        lists.values().as_struct().column(0).clone()
    }

    /// Shared or built, the same lists; shared only when nothing is to be left out, and from a slice too.
    #[test]
    fn shared_lists_are_the_built_ones() {
        let full =
            lists(vec![Some("a"), Some("b"), Some("c"), Some("d")], &[1, 0, 2, 1], Some(vec![true, false, true, true]));
        for l in [full.clone(), full.slice(1, 3), full.slice(2, 1)] {
            let shared = sharing(&l, None, &member(&l)).expect("nothing to leave out");
            assert_eq!(shared, built(&l, None, &member(&l)));
        }
        let with_null = lists(vec![Some("a"), None, Some("c")], &[2, 1], None);
        assert!(sharing(&with_null, None, &member(&with_null)).is_none());
        let built_lists = built(&with_null, None, &member(&with_null));
        assert_eq!(built_lists.value(0).as_string::<i32>(), &StringArray::from(vec!["a"]));
        // A NULL member outside the lists' values does not count; a NULL list over values does.
        let outside = lists(vec![Some("a"), None], &[1], None).slice(0, 1);
        assert!(sharing(&outside, None, &member(&outside)).is_some());
        let over_values = lists(vec![Some("a"), Some("b")], &[1, 1], Some(vec![true, false]));
        assert!(sharing(&over_values, None, &member(&over_values)).is_none());
    }
}
