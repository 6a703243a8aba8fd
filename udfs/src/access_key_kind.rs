//! `access_key_kind(key)`: what kind of credential an access key ID is, from its prefix.

use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{doc, map_to_string};

/// The kind of an access key ID: `long-term` (AKIA), `temporary` (ASIA), `bearer-token` (ABIA),
/// `context-specific` (ACCA); `unknown` for another well-formed ID; NULL for an empty or malformed one.
pub fn access_key_kind(key: &str) -> Option<&'static str> {
    let key = key.trim();
    let well_formed =
        (16..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !well_formed {
        return None;
    }
    Some(match &key[..4] {
        "AKIA" => "long-term",
        "ASIA" => "temporary",
        "ABIA" => "bearer-token",
        "ACCA" => "context-specific",
        _ => "unknown",
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AccessKeyKind {
    signature: Signature,
}

impl Default for AccessKeyKind {
    fn default() -> Self {
        AccessKeyKind { signature: Signature::string(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for AccessKeyKind {
    fn name(&self) -> &str {
        "access_key_kind"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_to_string(&args.args, args.number_rows, |s, r| s.get(0, r).and_then(access_key_kind).map(String::from))
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "The kind of credential an access key ID is: 'long-term' (AKIA, an IAM user's key), 'temporary' \
                 (ASIA, from STS), 'bearer-token' (ABIA), 'context-specific' (ACCA), 'unknown' for another prefix. \
                 NULL for an empty or malformed key.",
                "access_key_kind(key)",
                "SELECT access_key_kind(useridentity.accesskeyid), count(*) FROM cloudtrail GROUP BY 1",
            )
            .with_argument("key", "An access key ID")
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
    fn kinds_over_every_encoding() {
        check_strings(
            &AccessKeyKind::default(),
            &[
                (Some("AKIAIOSFODNN7EXAMPLE"), Some("long-term")),
                (Some("ASIAIOSFODNN7EXAMPLE"), Some("temporary")),
                (Some("ABIAIOSFODNN7EXAMPLE"), Some("bearer-token")),
                (Some("AIDACKCEVSQ6C2EXAMPLE"), Some("unknown")),
                (Some(""), None),
                (Some("akiaiosfodnn7example"), None),
                (Some("ASIA"), None),
                (None, None),
            ],
        );
    }
}
