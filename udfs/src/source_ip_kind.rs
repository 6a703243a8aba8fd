//! `source_ip_kind(source)`: what a sourceIPAddress holds, since it is not always an address.

use std::net::IpAddr;
use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{doc, map_to_string};

/// `ipv4`, `ipv6`, `aws-internal` (`AWS Internal`), `aws-service` (a host under amazonaws.com, the service that
/// called on the user's behalf), `hostname`, `list` (a JSON list of addresses); NULL for empty or other text.
pub fn source_ip_kind(s: &str) -> Option<&'static str> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(if ip.is_ipv4() { "ipv4" } else { "ipv6" });
    }
    if s.eq_ignore_ascii_case("AWS Internal") {
        return Some("aws-internal");
    }
    if s.starts_with('[') && s.ends_with(']') {
        return Some("list");
    }
    let is_host = s.contains('.')
        && s.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if is_host {
        let lower = s.to_ascii_lowercase();
        return Some(if lower == "amazonaws.com" || lower.ends_with(".amazonaws.com") {
            "aws-service"
        } else {
            "hostname"
        });
    }
    None
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SourceIpKind {
    signature: Signature,
}

impl Default for SourceIpKind {
    fn default() -> Self {
        SourceIpKind { signature: Signature::string(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for SourceIpKind {
    fn name(&self) -> &str {
        "source_ip_kind"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_to_string(&args.args, args.number_rows, |s, r| s.get(0, r).and_then(source_ip_kind).map(String::from))
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "What a sourceIPAddress holds: 'ipv4', 'ipv6', 'aws-internal' (AWS Internal), 'aws-service' (a \
                 service host such as s3.amazonaws.com calling on the user's behalf), 'hostname', 'list'. NULL for \
                 anything else.",
                "source_ip_kind(source)",
                "SELECT source_ip_kind(sourceipaddress), count(*) FROM cloudtrail GROUP BY 1",
            )
            .with_argument("source", "A sourceIPAddress value")
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
            &SourceIpKind::default(),
            &[
                (Some("192.0.2.1"), Some("ipv4")),
                (Some("2001:db8::1"), Some("ipv6")),
                (Some("AWS Internal"), Some("aws-internal")),
                (Some("s3.amazonaws.com"), Some("aws-service")),
                (Some("example.com"), Some("hostname")),
                (Some("[\"192.0.2.1\",\"192.0.2.2\"]"), Some("list")),
                (Some("not an address"), None),
                (Some(""), None),
                (None, None),
            ],
        );
    }
}
