//! `arn_parse(arn)`: the parts of an ARN as a struct; and the parser the other ARN functions use.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, StringBuilder, StructArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{Strings, doc, finish};

/// The parts of `arn:partition:service:region:account:resource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// The resource type: what precedes the first `/` or `:` of the resource, if anything does.
    pub fn resource_type(&self) -> Option<&'a str> {
        self.resource.find(['/', ':']).map(|i| &self.resource[..i])
    }
}

/// Parses an ARN; `None` when the text is not one.
pub fn parse_arn(s: &str) -> Option<Arn<'_>> {
    let rest = s.strip_prefix("arn:")?;
    let mut it = rest.splitn(5, ':');
    let arn = Arn {
        partition: it.next()?,
        service: it.next()?,
        region: it.next()?,
        account: it.next()?,
        resource: it.next()?,
    };
    let ok = !arn.partition.is_empty()
        && !arn.service.is_empty()
        && arn.partition.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && arn.service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then_some(arn)
}

fn fields() -> Fields {
    ["partition", "service", "region", "account", "resource_type", "resource"]
        .into_iter()
        .map(|n| Field::new(n, DataType::Utf8, true))
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArnParse {
    signature: Signature,
}

impl Default for ArnParse {
    fn default() -> Self {
        ArnParse { signature: Signature::string(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for ArnParse {
    fn name(&self) -> &str {
        "arn_parse"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(fields()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let s = Strings::new(&args.args, args.number_rows)?;
        let mut builders: Vec<StringBuilder> = (0..6).map(|_| StringBuilder::new()).collect();
        let mut valid = Vec::with_capacity(s.rows());
        for r in 0..s.rows() {
            let parsed = s.get(0, r).and_then(parse_arn);
            valid.push(parsed.is_some());
            let parts = parsed.map(|a| {
                [
                    Some(a.partition),
                    Some(a.service),
                    Some(a.region),
                    Some(a.account),
                    a.resource_type(),
                    Some(a.resource),
                ]
                .map(|p| p.filter(|v| !v.is_empty()))
            });
            for (i, b) in builders.iter_mut().enumerate() {
                b.append_option(parts.and_then(|p| p[i]));
            }
        }
        let columns: Vec<ArrayRef> = builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let out = StructArray::new(fields(), columns, Some(NullBuffer::from(valid)));
        finish(Arc::new(out), s.all_scalar())
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "The parts of an ARN as a struct: partition, service, region, account, resource_type, resource. Empty \
                 parts are NULL; text that is not an ARN gives NULL.",
                "arn_parse(arn)",
                "SELECT arn_parse(useridentity.arn).account FROM cloudtrail",
            )
            .with_argument("arn", "An ARN, such as arn:aws:iam::222222222222:root")
            .build()
        });
        Some(&DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};

    #[test]
    fn parses_arns() {
        let a = parse_arn("arn:aws:sts::111111111111:assumed-role/JohnDoe/JohnRole1").unwrap();
        assert_eq!((a.service, a.region, a.account), ("sts", "", "111111111111"));
        assert_eq!(a.resource, "assumed-role/JohnDoe/JohnRole1");
        assert_eq!(a.resource_type(), Some("assumed-role"));
        let f = parse_arn("arn:aws:lambda:us-east-1:123456789012:function:app:1").unwrap();
        assert_eq!((f.region, f.resource, f.resource_type()), ("us-east-1", "function:app:1", Some("function")));
        assert_eq!(parse_arn("arn:aws:s3:::bucket").unwrap().resource_type(), None);
        for bad in ["222222222222", "arn:aws", "arn::s3:::b", "ARN:aws:s3:::b", "arn:a b:s3:::x", ""] {
            assert_eq!(parse_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn struct_over_every_encoding() {
        let inputs = [Some("arn:aws:iam::222222222222:root"), Some("not an arn"), None];
        for array in crate::common::testing::encodings(&inputs) {
            let out = crate::common::testing::call(&ArnParse::default(), vec![array]);
            let s = out.as_struct();
            assert!(s.is_valid(0) && s.is_null(1) && s.is_null(2));
            assert_eq!(s.column_by_name("account").unwrap().as_string::<i32>().value(0), "222222222222");
            assert!(s.column_by_name("region").unwrap().is_null(0));
        }
    }
}
