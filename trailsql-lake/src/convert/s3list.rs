//! Listing CloudTrail's objects in S3 without listing the whole bucket: the delivery layout
//! (`AWSLogs/[o-org/]<account>/CloudTrail/<region>/YYYY/MM/DD/`) is walked level by level with delimiter listings,
//! and the filters on accounts, Regions and dates become key prefixes.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;

use super::source::{Filters, Origin, SourceFile};
use crate::error::Result;
use crate::storage::{S3Options, explain_s3};

/// The objects of `s3://bucket/prefix` that pass the filters, in key order.
pub async fn list(
    store: Arc<dyn ObjectStore>,
    bucket: &str,
    prefix: &str,
    filters: &Filters,
    s3: &S3Options,
) -> Result<Vec<SourceFile>> {
    let what = format!("s3://{bucket}/{prefix}");
    let err = |e: object_store::Error| explain_s3(&what, s3, &e.to_string());
    let mut prefixes = Vec::new();
    match awslogs_root(&store, prefix).await.map_err(err)? {
        Some(root) if !filters.is_empty() => {
            for p in plan(&store, &root, filters).await.map_err(err)? {
                prefixes.push(p);
            }
        }
        _ => prefixes.push(Path::from(prefix)),
    }
    let mut out = Vec::new();
    for p in prefixes {
        let objects: Vec<_> = store.list(Some(&p)).try_collect().await.map_err(err)?;
        for meta in objects {
            let key = meta.location.to_string();
            let name = key.rsplit('/').next().unwrap_or("");
            if name.starts_with('.') || !filters.matches(&key) {
                continue;
            }
            out.push(SourceFile {
                name: format!("s3://{bucket}/{key}"),
                origin: Origin::S3 { store: store.clone(), key: meta.location },
                size: meta.size,
                mtime: meta.last_modified.timestamp_nanos_opt(),
                etag: meta.e_tag,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

/// The `AWSLogs` folder at or just under the prefix, if the prefix does not already point inside it.
async fn awslogs_root(store: &Arc<dyn ObjectStore>, prefix: &str) -> object_store::Result<Option<Path>> {
    let base = Path::from(prefix);
    if base.parts().next_back().is_some_and(|p| p.as_ref() == "AWSLogs") {
        return Ok(Some(base));
    }
    if base.parts().any(|p| p.as_ref() == "AWSLogs") {
        return Ok(None);
    }
    let listing = store.list_with_delimiter(Some(&base)).await?;
    Ok(listing.common_prefixes.into_iter().find(|p| p.filename() == Some("AWSLogs")))
}

async fn children(store: &Arc<dyn ObjectStore>, p: &Path) -> object_store::Result<Vec<Path>> {
    Ok(store.list_with_delimiter(Some(p)).await?.common_prefixes)
}

/// The key prefixes that hold what the filters select.
async fn plan(store: &Arc<dyn ObjectStore>, awslogs: &Path, filters: &Filters) -> object_store::Result<Vec<Path>> {
    let mut accounts = Vec::new();
    for p in children(store, awslogs).await? {
        if p.filename().is_some_and(|n| n.starts_with("o-")) {
            accounts.extend(children(store, &p).await?);
        } else {
            accounts.push(p);
        }
    }
    let mut out = Vec::new();
    for account in accounts.into_iter().filter(|a| a.filename().is_some_and(|n| filters.account(n))) {
        // CloudTrail holds the events and CloudTrail-Insight the insight events; digests are not events.
        for kind in children(store, &account).await? {
            if !matches!(kind.filename(), Some("CloudTrail" | "CloudTrail-Insight")) {
                continue;
            }
            for region in children(store, &kind).await? {
                if !region.filename().is_some_and(|r| filters.region(r)) {
                    continue;
                }
                match (filters.from, filters.to) {
                    (Some(from), Some(to)) if to >= from && (to - from).num_days() <= 3660 => {
                        let mut d = from;
                        while d <= to {
                            out.push(Path::from(format!("{region}/{}", d.format("%Y/%m/%d"))));
                            d = d.succ_opt().expect("a date before 9999");
                        }
                    }
                    _ => out.push(region),
                }
            }
        }
    }
    Ok(out)
}
