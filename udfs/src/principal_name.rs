//! `principal_name(useridentity)`: the human-readable actor of an event.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray, StructArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::functions::core::expr_fn::{get_field, named_struct};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, lit,
};

use crate::arn_parse::parse_arn;
use crate::common::{doc, finish, to_utf8};

/// The fields of a userIdentity that name the actor, as plain strings.
#[derive(Debug, Default, Clone, Copy)]
pub struct Identity<'a> {
    pub kind: Option<&'a str>,
    pub arn: Option<&'a str>,
    pub user_name: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub principal_id: Option<&'a str>,
    pub invoked_by: Option<&'a str>,
    pub on_behalf_of: Option<&'a str>,
}

/// The actor: `root`, the user name, `Role/session` of an assumed role, the service of an AWSService call, the
/// Identity Center user ID; falling back to the ARN's resource, then the principal ID.
pub fn principal_name(id: &Identity) -> Option<String> {
    let non_empty = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(String::from);
    let arn_resource = id.arn.and_then(parse_arn).map(|a| a.resource);
    let named = match id.kind.unwrap_or("") {
        "Root" => Some("root".to_string()),
        "AssumedRole" => arn_resource.and_then(|r| r.strip_prefix("assumed-role/")).map(String::from),
        "Role" => arn_resource.and_then(|r| r.rsplit('/').next()).map(String::from),
        "FederatedUser" => arn_resource.and_then(|r| r.strip_prefix("federated-user/")).map(String::from),
        "AWSService" => non_empty(id.invoked_by),
        "AWSAccount" => non_empty(id.account_id).map(|a| format!("account {a}")),
        "IdentityCenterUser" => non_empty(id.on_behalf_of).or_else(|| non_empty(id.user_name)),
        _ => non_empty(id.user_name),
    };
    named
        .or_else(|| non_empty(id.user_name))
        .or_else(|| arn_resource.map(String::from))
        .or_else(|| non_empty(id.principal_id))
        .or_else(|| non_empty(id.invoked_by))
}

/// A text field of a struct by name, or of a struct inside it (`a.b`), as Utf8.
fn field(s: &StructArray, path: &str) -> Result<Option<StringArray>> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let Some(col) = s.column_by_name(head) else { return Ok(None) };
    match (rest, col.data_type()) {
        (Some(r), DataType::Struct(_)) => field(col.as_struct(), r),
        (None, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..)) => {
            Ok(Some(to_utf8(col)?))
        }
        _ => Ok(None),
    }
}

/// The fields of the useridentity struct the name is made from (`a.b`: field `b` of struct `a`), in the order of
/// [`Identity`]'s members.
const FIELDS: [&str; 7] = ["type", "arn", "username", "accountid", "principalid", "invokedby", "onbehalfof.userid"];

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PrincipalName {
    signature: Signature,
}

impl Default for PrincipalName {
    fn default() -> Self {
        PrincipalName { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for PrincipalName {
    fn name(&self) -> &str {
        "principal_name"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (array, scalar): (ArrayRef, bool) = match &args.args[0] {
            ColumnarValue::Array(a) => (a.clone(), false),
            ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
        };
        if array.data_type() == &DataType::Null {
            return finish(Arc::new(StringArray::new_null(array.len())), scalar);
        }
        let DataType::Struct(_) = array.data_type() else {
            return exec_err!("principal_name takes the useridentity struct, not {}", array.data_type());
        };
        let s = array.as_struct();
        let cols = FIELDS.map(|p| field(s, p)).into_iter().collect::<Result<Vec<_>>>()?;
        let get = |c: usize, r: usize| cols[c].as_ref().and_then(|a| a.is_valid(r).then(|| a.value(r)));
        let out: StringArray = (0..s.len())
            .map(|r| {
                if s.is_null(r) {
                    return None;
                }
                principal_name(&Identity {
                    kind: get(0, r),
                    arn: get(1, r),
                    user_name: get(2, r),
                    account_id: get(3, r),
                    principal_id: get(4, r),
                    invoked_by: get(5, r),
                    on_behalf_of: get(6, r),
                })
            })
            .collect();
        finish(Arc::new(out), scalar)
    }
    /// Given a column, the call takes a struct of only the fields it reads: handed the whole useridentity, a
    /// scan decodes all of it (session context, issuer, web identity, …) for each event it names.
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let [column @ Expr::Column(_)] = args.as_slice() else { return Ok(ExprSimplifyResult::Original(args)) };
        let DataType::Struct(fields) = info.get_data_type(column)? else {
            return Ok(ExprSimplifyResult::Original(args));
        };
        let mut narrow = Vec::new();
        for path in FIELDS {
            match path.split_once('.') {
                None if fields.find(path).is_some() => narrow.extend([lit(path), get_field(column.clone(), path)]),
                Some((outer, inner)) => {
                    if let Some((_, f)) = fields.find(outer)
                        && let DataType::Struct(members) = f.data_type()
                        && members.find(inner).is_some()
                    {
                        let value = get_field(get_field(column.clone(), outer), inner);
                        narrow.extend([lit(outer), named_struct(vec![lit(inner), value])]);
                    }
                }
                None => {}
            }
        }
        if narrow.is_empty() {
            return Ok(ExprSimplifyResult::Original(args));
        }
        let udf = Arc::new(ScalarUDF::new_from_impl(PrincipalName::default()));
        Ok(ExprSimplifyResult::Simplified(Expr::ScalarFunction(ScalarFunction::new_udf(
            udf,
            vec![named_struct(narrow)],
        ))))
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "The human-readable actor of an event, from its userIdentity: 'root', an IAM user's name, \
                 'Role/session' for an assumed role, the service for AWSService calls, the user ID of an Identity \
                 Center user; else the ARN's resource or the principal ID.",
                "principal_name(useridentity)",
                "SELECT principal_name(useridentity), count(*) FROM cloudtrail GROUP BY 1",
            )
            .with_argument("useridentity", "The useridentity struct column")
            .build()
        });
        Some(&DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;

    #[test]
    fn names() {
        let cases = [
            (Identity { kind: Some("Root"), arn: Some("arn:aws:iam::2:root"), ..Default::default() }, Some("root")),
            (Identity { kind: Some("IAMUser"), user_name: Some("alice"), ..Default::default() }, Some("alice")),
            (
                Identity {
                    kind: Some("AssumedRole"),
                    arn: Some("arn:aws:sts::1:assumed-role/Admin/bob"),
                    ..Default::default()
                },
                Some("Admin/bob"),
            ),
            (
                Identity { kind: Some("AWSService"), invoked_by: Some("s3.amazonaws.com"), ..Default::default() },
                Some("s3.amazonaws.com"),
            ),
            (
                Identity { kind: Some("IdentityCenterUser"), on_behalf_of: Some("u-123"), ..Default::default() },
                Some("u-123"),
            ),
            (Identity { kind: None, principal_id: Some("AIDAX"), ..Default::default() }, Some("AIDAX")),
            (Identity::default(), None),
        ];
        for (id, want) in cases {
            assert_eq!(principal_name(&id).as_deref(), want, "{id:?}");
        }
    }

    #[test]
    fn over_a_struct_column() {
        let kind: ArrayRef = Arc::new(StringArray::from(vec![Some("Root"), Some("IAMUser"), None]));
        let user: ArrayRef = Arc::new(StringArray::from(vec![None, Some("alice"), None]));
        let s = StructArray::from(vec![
            (Arc::new(Field::new("type", DataType::Utf8, true)), kind),
            (Arc::new(Field::new("username", DataType::Utf8, true)), user),
        ]);
        let out = crate::common::testing::call(&PrincipalName::default(), vec![Arc::new(s)]);
        let out = out.as_string::<i32>();
        assert_eq!(out.value(0), "root");
        assert_eq!(out.value(1), "alice");
        assert!(out.is_null(2));
    }
}
