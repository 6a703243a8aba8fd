//! `task_policy_allows(policy, event_source, event_name)`: whether a root-task policy allows an event's action.

use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{doc, map_to_bool};
use crate::root_task::task_policy_allows;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TaskPolicyAllows {
    signature: Signature,
}

impl Default for TaskPolicyAllows {
    fn default() -> Self {
        TaskPolicyAllows { signature: Signature::string(3, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for TaskPolicyAllows {
    fn name(&self) -> &str {
        "task_policy_allows"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_to_bool(&args.args, args.number_rows, |s, r| task_policy_allows(s.get(0, r)?, s.get(1, r)?, s.get(2, r)?))
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "Whether a root-task policy allows the action of an event (its event source's service and its event \
                 name, such as s3:DeleteBucketPolicy). The allowed actions of the five AWS managed root-task policies \
                 ship with trailsql. NULL when the policy is not a root-task policy.",
                "task_policy_allows(policy, event_source, event_name)",
                "SELECT task_policy_allows('S3UnlockBucketPolicy', 's3.amazonaws.com', 'DeleteBucketPolicy') -- true",
            )
            .with_argument("policy", "A root-task policy: its ARN or short name")
            .with_argument("event_source", "The eventsource of the event, such as s3.amazonaws.com")
            .with_argument("event_name", "The eventname of the event")
            .build()
        });
        Some(&DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{call, encodings};
    use datafusion::arrow::array::{Array, AsArray};

    #[test]
    fn over_every_encoding() {
        let policies = [Some("S3UnlockBucketPolicy"), Some("S3UnlockBucketPolicy"), Some("Nope"), None];
        let sources = [Some("s3.amazonaws.com"); 4];
        let names = [Some("DeleteBucketPolicy"), Some("GetObject"), Some("GetObject"), Some("GetObject")];
        for ((p, s), n) in encodings(&policies).into_iter().zip(encodings(&sources)).zip(encodings(&names)) {
            let out = call(&TaskPolicyAllows::default(), vec![p, s, n]);
            let out = out.as_boolean();
            assert!(out.value(0));
            assert!(!out.value(1));
            assert!(out.is_null(2) && out.is_null(3));
        }
    }
}
