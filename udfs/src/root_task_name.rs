//! `root_task_name(policy)`: the short name of an AssumeRoot task policy.

use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{doc, map_to_string};
use crate::root_task::root_task_name;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RootTaskName {
    signature: Signature,
}

impl Default for RootTaskName {
    fn default() -> Self {
        RootTaskName { signature: Signature::string(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for RootTaskName {
    fn name(&self) -> &str {
        "root_task_name"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_to_string(&args.args, args.number_rows, |s, r| s.get(0, r).and_then(root_task_name).map(String::from))
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "The short name of a root-task policy (S3UnlockBucketPolicy, SQSUnlockQueuePolicy, \
                 IAMAuditRootUserCredentials, IAMCreateRootUserPassword, IAMDeleteRootUserCredentials) from its ARN \
                 or from AssumeRoot's taskPolicyArn object. NULL for any other policy.",
                "root_task_name(policy)",
                "SELECT root_task_name(requestparameters->'taskPolicyArn'->>'arn') FROM cloudtrail WHERE eventname = 'AssumeRoot'",
            )
            .with_argument("policy", "A policy ARN, or the {\"arn\": ...} object as JSON text")
            .build()
        });
        Some(&DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::check_strings;

    #[test]
    fn names_over_every_encoding() {
        check_strings(
            &RootTaskName::default(),
            &[
                (Some("arn:aws:iam::aws:policy/root-task/S3UnlockBucketPolicy"), Some("S3UnlockBucketPolicy")),
                (Some("arn:aws:iam::aws:policy/ReadOnlyAccess"), None),
                (Some(""), None),
                (None, None),
            ],
        );
    }
}
