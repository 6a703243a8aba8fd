//! Where data lives: local directories and S3. Locations are parsed once; S3 stores are built once per bucket with
//! the AWS credential chain (environment, profiles with SSO, assume-role and credential_process, web identity,
//! ECS, IMDS) bridged into object_store, the bucket's own region, and an optional S3-compatible endpoint.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, CredentialProvider};

use crate::error::{Error, Result};
use crate::store::Lake;

/// A location as the user gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    pub fn parse(s: &str) -> Result<Location> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::Usage(format!("{s}: an S3 location needs a bucket (s3://bucket/prefix)")));
            }
            return Ok(Location::S3 { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(Error::Usage(format!("{s}: unsupported scheme {scheme}:// (use a local path or s3://)")));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// S3 settings, from the environment as the AWS CLI reads it, resolved once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`: an S3-compatible store.
    pub endpoint: Option<String>,
    /// `AWS_ALLOW_HTTP=true`: plain http to the endpoint. Refused otherwise.
    pub allow_http: bool,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`; with no endpoint, each bucket's own region is looked up.
    pub region: Option<String>,
}

impl S3Options {
    pub fn from_env() -> S3Options {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        S3Options {
            endpoint: var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")),
            allow_http: var("AWS_ALLOW_HTTP").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
        }
    }
}

/// The AWS credential chain of aws-config, as object_store's credential provider. Credentials are cached until
/// five minutes before they expire.
#[derive(Debug)]
struct AwsChain {
    provider: aws_credential_types::provider::SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

#[async_trait::async_trait]
impl CredentialProvider for AwsChain {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        use aws_credential_types::provider::ProvideCredentials;
        let mut cached = self.cached.lock().await;
        if let Some((c, expiry)) = cached.as_ref()
            && expiry.is_none_or(|e| e > SystemTime::now() + Duration::from_secs(300))
        {
            return Ok(c.clone());
        }
        let creds = self.provider.provide_credentials().await.map_err(|e| object_store::Error::Generic {
            store: "S3",
            // The chain's error names what it tried; it never holds a secret.
            source: format!(
                "no usable AWS credentials ({e}); set AWS_PROFILE (after `aws sso login` for SSO profiles) or \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
            .into(),
        })?;
        let c = Arc::new(AwsCredential {
            key_id: creds.access_key_id().to_string(),
            secret_key: creds.secret_access_key().to_string(),
            token: creds.session_token().map(String::from),
        });
        *cached = Some((c.clone(), creds.expiry()));
        Ok(c)
    }
}

/// Object stores for S3 buckets, built once each.
#[derive(Debug, Default)]
pub struct Storage {
    pub s3: S3Options,
    sdk: tokio::sync::OnceCell<aws_types::SdkConfig>,
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Storage {
    pub fn new(s3: S3Options) -> Storage {
        Storage { s3, sdk: tokio::sync::OnceCell::new(), buckets: Mutex::new(HashMap::new()) }
    }

    async fn sdk(&self) -> &aws_types::SdkConfig {
        self.sdk
            .get_or_init(|| async {
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).load().await
            })
            .await
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions::new().with_allow_http(self.s3.allow_http).with_timeout(Duration::from_secs(60))
    }

    /// The store of a bucket (the whole bucket, not a prefix of it).
    pub async fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        if let Some(s) = self.buckets.lock().expect("bucket stores").get(bucket) {
            return Ok(s.clone());
        }
        if let Some(endpoint) = &self.s3.endpoint
            && endpoint.starts_with("http://")
            && !self.s3.allow_http
        {
            let endpoint = crate::error::redact_credentials(endpoint);
            return Err(Error::Usage(format!(
                "the S3 endpoint {endpoint} is plain http: allow it with AWS_ALLOW_HTTP=true, or use https"
            )));
        }
        let sdk = self.sdk().await;
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| Error::Usage("no AWS credential provider: set AWS_PROFILE or AWS_ACCESS_KEY_ID".into()))?;
        let configured_region = self.s3.region.clone().or_else(|| sdk.region().map(|r| r.to_string()));
        let region = match &self.s3.endpoint {
            // An S3-compatible store: the configured region, which it usually ignores.
            Some(_) => configured_region.unwrap_or_else(|| "us-east-1".into()),
            // AWS: the bucket's own region, as S3 reports it, so that any bucket works from any default region.
            None => match object_store::aws::resolve_bucket_region(bucket, &self.client_options()).await {
                Ok(r) => r,
                Err(e) => match configured_region {
                    Some(r) => r,
                    None => return Err(explain_s3(&format!("s3://{bucket}"), &self.s3, &e.to_string())),
                },
            },
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_credentials(Arc::new(AwsChain { provider, cached: tokio::sync::Mutex::new(None) }))
            .with_client_options(self.client_options());
        if let Some(endpoint) = &self.s3.endpoint {
            builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
        self.buckets.lock().expect("bucket stores").insert(bucket.to_string(), store.clone());
        Ok(store)
    }
}

/// An S3 failure in words that name what to fix. Credentials are never part of it.
pub fn explain_s3(what: &str, s3: &S3Options, message: &str) -> Error {
    let m = message.to_ascii_lowercase();
    let endpoint = s3.endpoint.as_deref().unwrap_or("AWS S3");
    let hint = if m.contains("nosuchbucket") || m.contains("bucket does not exist") {
        "the bucket does not exist (check its name, and AWS_ENDPOINT_URL for S3-compatible stores)".to_string()
    } else if m.contains("invalidaccesskeyid")
        || m.contains("signaturedoesnotmatch")
        || m.contains("accessdenied")
        || m.contains("forbidden")
        || m.contains("403")
        || m.contains("credentials")
    {
        "access denied: check the AWS credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) and \
         the bucket's policy"
            .to_string()
    } else if m.contains("connect")
        || m.contains("dns")
        || m.contains("error sending request")
        || m.contains("timed out")
    {
        format!("cannot reach {endpoint}: check AWS_ENDPOINT_URL and the network")
    } else {
        "S3 request failed".to_string()
    };
    let message = crate::error::redact_credentials(&format!("{hint} ({message})")).into_owned();
    Error::Lake { lake: what.to_string(), message }
}

/// A lake opened for use: our handle, and what DataFusion needs to read it.
#[derive(Clone)]
pub struct OpenLake {
    pub lake: Lake,
    pub location: Location,
    /// The URL DataFusion lists the table from, ending in `/`.
    pub table_url: String,
}

/// Opens a lake; `create` makes a missing local directory (for convert), otherwise a missing lake is an error.
pub async fn open_lake(location: &Location, create: bool, storage: &Storage) -> Result<OpenLake> {
    match location {
        Location::Local(path) => {
            if create {
                std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
            } else if !path.is_dir() {
                return Err(Error::Lake {
                    lake: path.display().to_string(),
                    message: format!("no such directory; create it with {}", crate::layout::FILL_HINT),
                });
            }
            let abs = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
            let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&abs)?);
            let mut table_url = url::Url::from_directory_path(&abs)
                .map_err(|()| Error::Usage(format!("{}: not an absolute path", abs.display())))?
                .to_string();
            if !table_url.ends_with('/') {
                table_url.push('/');
            }
            let lake = Lake::new(store, path.display().to_string()).with_local_root(abs);
            Ok(OpenLake { lake, location: location.clone(), table_url })
        }
        Location::S3 { bucket, prefix } => {
            let store = storage.bucket(bucket).await?;
            let name = location.to_string();
            // Touch the lake's prefix once, so that a wrong bucket or credential is reported here, in words.
            let probe = object_store::path::Path::from(prefix.as_str());
            if let Err(e) = store.list_with_delimiter(Some(&probe)).await {
                return Err(explain_s3(&name, &storage.s3, &e.to_string()));
            }
            let lake_store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                store.clone()
            } else {
                Arc::new(PrefixStore::new(store.clone(), prefix.as_str()))
            };
            let table_url =
                if prefix.is_empty() { format!("s3://{bucket}/") } else { format!("s3://{bucket}/{prefix}/") };
            Ok(OpenLake { lake: Lake::new(lake_store, name), location: location.clone(), table_url })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(Location::parse("lake").unwrap(), Location::Local("lake".into()));
        assert_eq!(Location::parse("s3://b/p/q/").unwrap(), Location::S3 { bucket: "b".into(), prefix: "p/q".into() });
        assert_eq!(Location::parse("s3://b").unwrap(), Location::S3 { bucket: "b".into(), prefix: String::new() });
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("gs://b/x").is_err());
    }

    #[test]
    fn errors_name_what_to_fix() {
        let s3 = S3Options { endpoint: Some("http://127.0.0.1:1".into()), ..Default::default() };
        let e = explain_s3("s3://b", &s3, "NoSuchBucket: The specified bucket does not exist").to_string();
        assert!(e.contains("bucket does not exist"), "{e}");
        let e = explain_s3("s3://b", &s3, "Client error with status 403 Forbidden: SignatureDoesNotMatch").to_string();
        assert!(e.contains("check the AWS credentials"), "{e}");
        let e = explain_s3("s3://b", &s3, "error sending request: Connection refused").to_string();
        assert!(e.contains("cannot reach http://127.0.0.1:1"), "{e}");
    }
}
