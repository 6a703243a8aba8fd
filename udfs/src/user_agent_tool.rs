//! `user_agent_tool(ua)`: the client that made a request, from its user agent.

use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{doc, map_to_string};

/// Markers in user agents, most specific first (Terraform's agent also names the Go SDK it uses).
const MARKERS: &[(&str, &str)] = &[
    ("terraform", "terraform"),
    ("pulumi", "pulumi"),
    ("aws-cdk", "cdk"),
    ("cloudformation", "cloudformation"),
    ("aws-cli/", "aws-cli"),
    ("aws-powershell", "powershell"),
    ("awspowershell", "powershell"),
    ("boto3/", "boto3"),
    ("botocore/", "botocore"),
    ("aws-sdk-go", "sdk-go"),
    ("aws-sdk-java", "sdk-java"),
    ("aws-sdk-js", "sdk-js"),
    ("aws-sdk-nodejs", "sdk-js"),
    ("aws-sdk-dotnet", "sdk-dotnet"),
    ("aws-sdk-ruby", "sdk-ruby"),
    ("aws-sdk-php", "sdk-php"),
    ("aws-sdk-rust", "sdk-rust"),
    ("aws-sdk-cpp", "sdk-cpp"),
    ("aws-sdk-swift", "sdk-swift"),
    ("aws-sdk-kotlin", "sdk-kotlin"),
    ("console.amazonaws.com", "console"),
    ("signin.amazonaws.com", "console"),
    ("mozilla/", "console"),
    ("curl/", "curl"),
    ("python-requests", "python-requests"),
];

/// The tool of a user agent: `aws-cli`, `boto3`, `terraform`, `sdk-go`, `console` (a browser), `aws-internal`,
/// `aws-service` (a service host name), … ; `other` when none is recognised; NULL for an empty one.
pub fn user_agent_tool(ua: &str) -> Option<&'static str> {
    let ua = ua.trim();
    if ua.is_empty() {
        return None;
    }
    if ua.eq_ignore_ascii_case("AWS Internal") {
        return Some("aws-internal");
    }
    let lower = ua.to_ascii_lowercase();
    if let Some((_, tool)) = MARKERS.iter().find(|(m, _)| lower.contains(m)) {
        return Some(tool);
    }
    if !lower.contains(' ') && lower.ends_with(".amazonaws.com") {
        return Some("aws-service");
    }
    Some("other")
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UserAgentTool {
    signature: Signature,
}

impl Default for UserAgentTool {
    fn default() -> Self {
        UserAgentTool { signature: Signature::string(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for UserAgentTool {
    fn name(&self) -> &str {
        "user_agent_tool"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_to_string(&args.args, args.number_rows, |s, r| s.get(0, r).and_then(user_agent_tool).map(String::from))
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "The client a request came from: aws-cli, boto3, botocore, terraform, pulumi, cdk, cloudformation, \
                 powershell, sdk-go, sdk-java, sdk-js, sdk-dotnet, sdk-ruby, sdk-php, sdk-rust, console (a browser), \
                 aws-internal, aws-service, curl; 'other' when none is recognised; NULL for an empty agent.",
                "user_agent_tool(ua)",
                "SELECT user_agent_tool(useragent), count(*) FROM cloudtrail GROUP BY 1",
            )
            .with_argument("ua", "A userAgent value")
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
    fn tools_over_every_encoding() {
        check_strings(
            &UserAgentTool::default(),
            &[
                (Some("aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.ubuntu.22"), Some("aws-cli")),
                (Some("Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 Botocore/1.34.69"), Some("boto3")),
                (
                    Some("APN/1.0 HashiCorp/1.0 Terraform/1.7.5 terraform-provider-aws/5.42.0 aws-sdk-go-v2/1.25.3"),
                    Some("terraform"),
                ),
                (Some("aws-sdk-go-v2/1.25.3 os/linux lang/go#1.22.1"), Some("sdk-go")),
                (Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"), Some("console")),
                (Some("AWS Internal"), Some("aws-internal")),
                (Some("cloudtrail.amazonaws.com"), Some("aws-service")),
                (Some("something/1.0"), Some("other")),
                (Some(""), None),
                (None, None),
            ],
        );
    }
}
