//! `arn_account`, `arn_service`, `arn_region`, `arn_resource`: one part of an ARN as text.

use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::arn_parse::parse_arn;
use crate::common::{doc, map_to_string};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Account,
    Service,
    Region,
    Resource,
}

/// One function per ARN part; they differ only in the part they return.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArnPart {
    part: Part,
    signature: Signature,
}

impl ArnPart {
    pub fn new(part: Part) -> ArnPart {
        ArnPart { part, signature: Signature::string(1, Volatility::Immutable) }
    }
}

/// The part of an ARN; NULL for text that is not an ARN and for an empty part.
pub fn arn_part(s: &str, part: Part) -> Option<&str> {
    let a = parse_arn(s)?;
    let v = match part {
        Part::Account => a.account,
        Part::Service => a.service,
        Part::Region => a.region,
        Part::Resource => a.resource,
    };
    (!v.is_empty()).then_some(v)
}

impl ScalarUDFImpl for ArnPart {
    fn name(&self) -> &str {
        match self.part {
            Part::Account => "arn_account",
            Part::Service => "arn_service",
            Part::Region => "arn_region",
            Part::Resource => "arn_resource",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_to_string(&args.args, args.number_rows, |s, r| {
            s.get(0, r).and_then(|v| arn_part(v, self.part)).map(String::from)
        })
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOCS: LazyLock<[Documentation; 4]> = LazyLock::new(|| {
            [
                ("account", "arn_account", "SELECT arn_account('arn:aws:iam::222222222222:root') -- 222222222222"),
                ("service", "arn_service", "SELECT arn_service('arn:aws:sts::111111111111:assumed-role/R/s') -- sts"),
                (
                    "region",
                    "arn_region",
                    "SELECT arn_region('arn:aws:lambda:us-east-1:123456789012:function:f') -- us-east-1",
                ),
                ("resource", "arn_resource", "SELECT arn_resource('arn:aws:iam::222222222222:root') -- root"),
            ]
            .map(|(part, name, example)| {
                doc(
                    &format!("The {part} of an ARN. NULL when the text is not an ARN or the part is empty."),
                    &format!("{name}(arn)"),
                    example,
                )
                .with_argument("arn", "An ARN")
                .build()
            })
        });
        Some(&DOCS[self.part as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::check_strings;

    #[test]
    fn parts_over_every_encoding() {
        check_strings(
            &ArnPart::new(Part::Account),
            &[
                (Some("arn:aws:iam::222222222222:root"), Some("222222222222")),
                (Some("arn:aws:s3:::bucket"), None),
                (Some("222222222222"), None),
                (None, None),
            ],
        );
        check_strings(&ArnPart::new(Part::Service), &[(Some("arn:aws:sts::1:assumed-role/R/s"), Some("sts"))]);
        check_strings(&ArnPart::new(Part::Region), &[(Some("arn:aws:iam::1:root"), None)]);
        check_strings(&ArnPart::new(Part::Resource), &[(Some("arn:aws:iam::1:user/a/b"), Some("user/a/b"))]);
    }
}
