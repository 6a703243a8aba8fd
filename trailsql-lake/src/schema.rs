//! The one definition of the CloudTrail schema: the converter writes it, the table reads it, the docs print it.
//!
//! Every column is described once, in [`EVENT`], with CloudTrail's own spelling of the key. Column names are that
//! spelling in lower case (Athena's convention), so `userIdentity.accessKeyId` is the column path
//! `useridentity.accesskeyid`, which DataFusion's identifier normalisation reaches from either spelling.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field as ArrowField, Fields, Schema, SchemaRef, TimeUnit};

/// How a boolean is spelled in CloudTrail's own output. Both forms are accepted on input; the canonical one is
/// what a rebuilt event uses, and an input in the other form is kept verbatim in `unmapped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoolForm {
    /// A JSON boolean: `"readOnly": true`.
    Json,
    /// A JSON string: `"mfaAuthenticated": "true"`.
    Text,
}

/// The type of one field of the event tree.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// UTF-8 text. A number or boolean is stored as its JSON text.
    Text,
    /// Any JSON value, stored as compact JSON text (`requestParameters` and the other payloads without a schema).
    Json,
    /// A boolean, accepted as a JSON boolean or as the strings `"true"`/`"false"`.
    Bool(BoolForm),
    /// A UTC timestamp in microseconds, parsed from CloudTrail's ISO 8601 text.
    Time,
    /// A JSON object with known members.
    Struct(&'static [Field]),
    /// A JSON array of objects with known members.
    List(&'static [Field]),
}

/// One member of a CloudTrail JSON object.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The key as CloudTrail spells it.
    pub key: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
}

const fn f(key: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field { key, kind, doc }
}

use Kind::{Bool, Json, List, Struct, Text, Time};

const SESSION_ISSUER: &[Field] = &[
    f("type", Text, "Source of the temporary credentials: Root, IAMUser or Role"),
    f("principalId", Text, "Internal ID of the issuer"),
    f("arn", Text, "ARN of the issuer"),
    f("accountId", Text, "Account that owns the issuer"),
    f("userName", Text, "Friendly name of the issuer"),
];

const WEB_ID_FEDERATION_DATA: &[Field] = &[
    f("federatedProvider", Text, "Identity provider of a web identity federation"),
    f("attributes", Json, "Provider attributes, as JSON text"),
];

const SESSION_ATTRIBUTES: &[Field] = &[
    f("creationDate", Time, "When the temporary credentials were issued"),
    f("mfaAuthenticated", Bool(BoolForm::Text), "Whether the issuing identity signed in with MFA"),
];

const SESSION_CONTEXT: &[Field] = &[
    f("attributes", Struct(SESSION_ATTRIBUTES), "Issue time and MFA state of the session"),
    f("sessionIssuer", Struct(SESSION_ISSUER), "The identity the temporary credentials came from"),
    f("webIdFederationData", Struct(WEB_ID_FEDERATION_DATA), "Web identity federation details"),
    f("sourceIdentity", Text, "Source identity set when the role was assumed"),
    f("ec2RoleDelivery", Text, "IMDS version that delivered EC2 role credentials (1.0 or 2.0)"),
    f("ec2IssuedInVpc", Text, "VPC of the EC2 instance the credentials were issued to"),
    f("assumedRoot", Bool(BoolForm::Text), "Set when the session came from sts:AssumeRoot"),
];

const ON_BEHALF_OF: &[Field] = &[
    f("userId", Text, "IAM Identity Center user the call was made for"),
    f("identityStoreArn", Text, "Identity store of that user"),
];

const IN_SCOPE_OF: &[Field] = &[
    f("issuerType", Text, "Resource type that the credentials were issued to"),
    f("credentialsIssuedTo", Text, "ARN of the resource the credentials were issued to"),
    f("sourceArn", Text, "ARN of the resource that caused the credentials to be issued"),
    f("sourceAccount", Text, "Account of that resource"),
];

const USER_IDENTITY: &[Field] = &[
    f("type", Text, "Root, IAMUser, AssumedRole, Role, FederatedUser, AWSAccount, AWSService, IdentityCenterUser, ..."),
    f("principalId", Text, "Unique ID of the caller"),
    f("arn", Text, "ARN of the caller"),
    f("accountId", Text, "Account that owns the caller's credentials"),
    f("accessKeyId", Text, "Access key used to sign the request (AKIA long-term, ASIA temporary)"),
    f("userName", Text, "Friendly name of the caller"),
    f("invokedBy", Text, "AWS service that made the request on the caller's behalf"),
    f("identityProvider", Text, "Identity provider of a SAML or web identity caller"),
    f("credentialId", Text, "ID of the bearer-token credential"),
    f("onBehalfOf", Struct(ON_BEHALF_OF), "IAM Identity Center user the call was made for"),
    f("inScopeOf", Struct(IN_SCOPE_OF), "Scope of credentials issued to an AWS resource"),
    f("sessionContext", Struct(SESSION_CONTEXT), "Temporary-credential session details"),
];

const RESOURCE: &[Field] = &[
    f("ARN", Text, "ARN of the resource"),
    f("ARNPrefix", Text, "ARN prefix, for resources identified by prefix"),
    f("accountId", Text, "Account that owns the resource"),
    f("type", Text, "Resource type, such as AWS::S3::Bucket"),
];

const TLS_DETAILS: &[Field] = &[
    f("tlsVersion", Text, "TLS version of the request"),
    f("cipherSuite", Text, "Cipher suite of the request"),
    f("clientProvidedHostHeader", Text, "Host name the client asked for"),
];

/// The members of one CloudTrail event, in the order of the Parquet columns.
pub const EVENT: &[Field] = &[
    f("eventVersion", Text, "Version of the event format"),
    f("userIdentity", Struct(USER_IDENTITY), "Who made the request, with which credentials"),
    f("eventTime", Time, "When the request completed, UTC"),
    f("eventSource", Text, "Service the request went to, such as sts.amazonaws.com"),
    f("eventName", Text, "API action, such as AssumeRoot"),
    f("awsRegion", Text, "Region the request went to"),
    f("sourceIPAddress", Text, "Caller IP address, or a service name, or AWS Internal"),
    f("userAgent", Text, "Client the request came from"),
    f("errorCode", Text, "AWS error code of a failed request"),
    f("errorMessage", Text, "Error message of a failed request"),
    f("requestParameters", Json, "Request parameters, as JSON text"),
    f("responseElements", Json, "Response elements, as JSON text"),
    f("additionalEventData", Json, "Additional data, as JSON text"),
    f("requestID", Text, "ID of the request"),
    f("eventID", Text, "Unique ID of the event"),
    f("readOnly", Bool(BoolForm::Json), "Whether the request only reads"),
    f("resources", List(RESOURCE), "Resources the request touched"),
    f("eventType", Text, "AwsApiCall, AwsServiceEvent, AwsConsoleSignIn, AwsCloudTrailInsight, ..."),
    f("apiVersion", Text, "API version of the request"),
    f("managementEvent", Bool(BoolForm::Json), "Whether this is a management event"),
    f("recipientAccountId", Text, "Account that received the event"),
    f("sharedEventID", Text, "ID shared by the copies of an event delivered to several accounts"),
    f("annotation", Text, "Annotation set by the service"),
    f("vpcEndpointId", Text, "VPC endpoint the request came through"),
    f("vpcEndpointAccountId", Text, "Account that owns that VPC endpoint"),
    f("eventCategory", Text, "Management, Data, NetworkActivity or Insight"),
    f("serviceEventDetails", Json, "Details of a service event, as JSON text"),
    f("sessionCredentialFromConsole", Bool(BoolForm::Text), "Whether the credentials came from a console session"),
    f("edgeDeviceDetails", Json, "Details of an edge device request, as JSON text"),
    f("insightDetails", Json, "Details of an Insights event, as JSON text"),
    f("addendum", Json, "Why and what was changed in a late-delivered event, as JSON text"),
    f("tlsDetails", Struct(TLS_DETAILS), "TLS details of the request"),
];

/// The catch-all column: a JSON object with every key the schema does not know, at any depth, and the verbatim
/// value of every known key whose input could not be stored in its column exactly as it came.
pub const UNMAPPED: &str = "unmapped";
pub const UNMAPPED_DOC: &str = "JSON object of the input that the typed columns do not hold exactly";

/// Hive partition columns of the lake, in path order. They are in the paths, not in the files.
pub const ACCOUNT_ID: &str = "account_id";
pub const EVENT_DATE: &str = "event_date";

/// The time of an event, which every data file is sorted by.
pub const EVENT_TIME: &str = "eventtime";

/// Column name of a CloudTrail key: its lower-case spelling.
pub fn column_name(key: &str) -> String {
    key.to_ascii_lowercase()
}

fn arrow_type(kind: Kind) -> DataType {
    match kind {
        Kind::Text | Kind::Json => DataType::Utf8,
        Kind::Bool(_) => DataType::Boolean,
        Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Struct(members) => DataType::Struct(arrow_fields(members)),
        Kind::List(members) => {
            DataType::List(Arc::new(ArrowField::new("item", DataType::Struct(arrow_fields(members)), true)))
        }
    }
}

/// The Arrow fields of a level of the tree.
pub fn arrow_fields(members: &[Field]) -> Fields {
    members.iter().map(|m| ArrowField::new(column_name(m.key), arrow_type(m.kind), true)).collect()
}

/// The schema of the Parquet files: [`EVENT`] then [`UNMAPPED`].
pub fn file_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut fields: Vec<ArrowField> = arrow_fields(EVENT).iter().map(|f| f.as_ref().clone()).collect();
        fields.push(ArrowField::new(UNMAPPED, DataType::Utf8, true));
        Arc::new(Schema::new(fields))
    });
    SCHEMA.clone()
}

/// The partition columns as the table declares them: the account as text (leading zeros matter), the day as a date.
pub fn partition_columns() -> Vec<(String, DataType)> {
    vec![(ACCOUNT_ID.to_string(), DataType::Utf8), (EVENT_DATE.to_string(), DataType::Date32)]
}

/// Index of the `eventTime` column in the file schema.
pub fn event_time_index() -> usize {
    EVENT.iter().position(|f| f.key == "eventTime").expect("eventTime is in the schema")
}

/// One row of the schema documentation: dotted column path, SQL type, description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRow {
    pub path: String,
    pub sql_type: String,
    pub doc: String,
}

fn sql_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "string",
        Kind::Json => "string (JSON)",
        Kind::Bool(_) => "boolean",
        Kind::Time => "timestamp (UTC, µs)",
        Kind::Struct(_) => "struct",
        Kind::List(_) => "list of struct",
    }
}

fn doc_rows_into(prefix: &str, members: &[Field], out: &mut Vec<DocRow>) {
    for m in members {
        let path = format!("{prefix}{}", column_name(m.key));
        out.push(DocRow { path: path.clone(), sql_type: sql_type(m.kind).into(), doc: m.doc.into() });
        match m.kind {
            Kind::Struct(inner) => doc_rows_into(&format!("{path}."), inner, out),
            Kind::List(inner) => doc_rows_into(&format!("{path}[]."), inner, out),
            _ => {}
        }
    }
}

/// Every column and nested field, in schema order, with the partition columns first.
pub fn doc_rows() -> Vec<DocRow> {
    let mut out = vec![
        DocRow {
            path: ACCOUNT_ID.into(),
            sql_type: "string (partition)".into(),
            doc: "recipientAccountId, or the account in the object key; `unknown` when neither is a 12-digit ID".into(),
        },
        DocRow { path: EVENT_DATE.into(), sql_type: "date (partition)".into(), doc: "UTC date of eventTime".into() },
    ];
    doc_rows_into("", EVENT, &mut out);
    out.push(DocRow { path: UNMAPPED.into(), sql_type: "string (JSON)".into(), doc: UNMAPPED_DOC.into() });
    out
}

/// The schema documentation as a Markdown table, as the README carries it.
pub fn markdown() -> String {
    let mut s = String::from("| column | type | meaning |\n|---|---|---|\n");
    for r in doc_rows() {
        s.push_str(&format!("| `{}` | {} | {} |\n", r.path, r.sql_type, r.doc));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_lower_case_and_unique_per_level() {
        fn check(members: &[Field]) {
            let mut seen = std::collections::HashSet::new();
            for m in members {
                assert!(seen.insert(column_name(m.key)), "duplicate column {}", m.key);
                if let Kind::Struct(inner) | Kind::List(inner) = m.kind {
                    check(inner);
                }
            }
        }
        check(EVENT);
        for f in file_schema().fields() {
            assert_eq!(f.name(), &f.name().to_ascii_lowercase());
        }
    }

    #[test]
    fn documented_fields_are_present() {
        let paths: Vec<String> = doc_rows().into_iter().map(|r| r.path).collect();
        for p in [
            "eventtime",
            "useridentity.accesskeyid",
            "useridentity.onbehalfof",
            "useridentity.inscopeof",
            "useridentity.credentialid",
            "useridentity.sessioncontext.assumedroot",
            "useridentity.sessioncontext.sourceidentity",
            "useridentity.sessioncontext.ec2roledelivery",
            "useridentity.sessioncontext.ec2issuedinvpc",
            "useridentity.sessioncontext.attributes.creationdate",
            "resources[].arn",
            "tlsdetails.ciphersuite",
            "unmapped",
        ] {
            assert!(paths.iter().any(|x| x == p), "{p} missing");
        }
    }

    #[test]
    fn event_time_is_utc_microseconds() {
        let schema = file_schema();
        assert_eq!(
            schema.field(event_time_index()).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }
}
