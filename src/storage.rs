//! Where a lake lives: a local directory or an S3 prefix, resolved once into an object store for our own reads and
//! writes and a table URL for DataFusion.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

use crate::error::{Error, Result};
use crate::lake::Lake;

/// A lake location as the user gave it.
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

/// A lake opened for use: our handle, and what DataFusion needs to read it.
#[derive(Clone)]
pub struct OpenLake {
    pub lake: Lake,
    pub location: Location,
    /// The URL DataFusion lists the table from, ending in `/`.
    pub table_url: String,
    /// An object store DataFusion must know for `table_url`, with the URL it is registered under.
    pub register: Option<(url::Url, Arc<dyn ObjectStore>)>,
}

/// Opens a lake; `create` makes a missing local directory (for convert), otherwise a missing lake is an error.
pub fn open_lake(location: &Location, create: bool) -> Result<OpenLake> {
    match location {
        Location::Local(path) => {
            if create {
                std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
            } else if !path.is_dir() {
                return Err(Error::Lake {
                    lake: path.display().to_string(),
                    message: "no such directory; create it with `trailsql convert SOURCE... --lake DIR`".into(),
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
            Ok(OpenLake { lake, location: location.clone(), table_url, register: None })
        }
        Location::S3 { .. } => Err(Error::Usage(format!("{location}: S3 lakes are not available in this build"))),
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
}
