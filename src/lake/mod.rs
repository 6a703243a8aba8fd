//! The lake's layout and bookkeeping: partition paths, the manifest of converted sources, commit records, the
//! writer lock, crash recovery and the de-duplication index.
//!
//! ```text
//! account_id=<id>/event_date=<YYYY-MM-DD>/part-<run>-<n>.parquet   data, visible to every reader
//! _index/account_id=…/event_date=…/part-<run>-<n>.ids             (eventID, content) hashes of each data file
//! _manifest/<seq>-<run>.json                                       commit records: sources taken, files added/removed
//! _rejects/<run>.ndjson                                            what could not be placed, with its raw text
//! _staging/<run>/…                                                 files of a run before its commit
//! _lock                                                            held by the one writer
//! ```
//!
//! A run writes everything under `_staging/<run>/`, then writes its commit record (one atomic put), then moves the
//! files into place and deletes what compaction replaced. Readers skip names starting with `_`. A run killed before
//! its commit record leaves only staging, which the next run deletes; one killed after it is finished by the next
//! run from the record. Either way every event is in the lake once.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::convert::record::EventId;
use crate::error::{Error, Result};

mod lock;
pub use lock::{LockGuard, LockTiming};

/// The partition an event goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// A 12-digit account ID, or [`PartitionKey::UNKNOWN_ACCOUNT`].
    pub account: String,
    /// Days since 1970-01-01 of the UTC date of eventTime.
    pub day: i32,
}

impl PartitionKey {
    /// The partition of events whose account is missing or is not a 12-digit account ID. The raw value stays in
    /// `recipientaccountid`.
    pub const UNKNOWN_ACCOUNT: &'static str = "unknown";

    /// Whether a value may be an `account_id` path segment: exactly 12 ASCII digits, as AWS account IDs are.
    pub fn is_valid_account(s: &str) -> bool {
        s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
    }

    pub fn account_or_fallback(value: Option<&str>) -> String {
        match value {
            Some(v) if Self::is_valid_account(v) => v.to_string(),
            _ => Self::UNKNOWN_ACCOUNT.to_string(),
        }
    }

    pub fn date(&self) -> String {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
        (epoch + chrono::Duration::days(i64::from(self.day))).format("%Y-%m-%d").to_string()
    }

    /// `account_id=<id>/event_date=<date>`.
    pub fn dir(&self) -> String {
        format!("account_id={}/event_date={}", self.account, self.date())
    }

    /// The key of a partition directory, from a path that contains `account_id=…/event_date=…`.
    pub fn from_path(path: &str) -> Option<PartitionKey> {
        let mut parts = path.split('/');
        while let Some(p) = parts.next() {
            if let Some(account) = p.strip_prefix("account_id=") {
                let date = parts.next()?.strip_prefix("event_date=")?;
                let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
                if !(Self::is_valid_account(account) || account == Self::UNKNOWN_ACCOUNT) {
                    return None;
                }
                let day = i32::try_from((date - epoch).num_days()).ok()?;
                return Some(PartitionKey { account: account.to_string(), day });
            }
        }
        None
    }
}

/// The account of a CloudTrail object key: `…/AWSLogs/[o-org/]<account>/CloudTrail…/…`, or a file name
/// `<account>_CloudTrail_<region>_…`. Only a 12-digit ID is returned.
pub fn account_from_key(key: &str) -> Option<&str> {
    let segments: Vec<&str> = key.split(['/', '\\']).collect();
    if let Some(i) = segments.iter().position(|s| *s == "AWSLogs") {
        let mut rest = segments[i + 1..].iter();
        let mut next = rest.next();
        if next.is_some_and(|s| s.starts_with("o-")) {
            next = rest.next();
        }
        if let Some(acct) = next.filter(|s| PartitionKey::is_valid_account(s)) {
            return Some(acct);
        }
    }
    let name = segments.last()?;
    let (acct, rest) = name.split_once('_')?;
    (PartitionKey::is_valid_account(acct) && rest.starts_with("CloudTrail")).then_some(acct)
}

pub const DATA_EXT: &str = "parquet";
/// What fills a lake, for the messages about a missing or empty one.
pub const FILL_HINT: &str = "`trailsql convert SOURCE... --lake DIR`";
const INDEX_DIR: &str = "_index";
const MANIFEST_DIR: &str = "_manifest";
const REJECTS_DIR: &str = "_rejects";
const STAGING_DIR: &str = "_staging";

pub fn data_path(key: &PartitionKey, stem: &str) -> String {
    format!("{}/{stem}.{DATA_EXT}", key.dir())
}

pub fn index_path(key: &PartitionKey, stem: &str) -> String {
    format!("{}/{stem}.ids", index_dir(key))
}

/// The directory of a partition's de-duplication index files.
pub fn index_dir(key: &PartitionKey) -> String {
    format!("{INDEX_DIR}/{}", key.dir())
}

pub fn rejects_path(run: &str) -> String {
    format!("{REJECTS_DIR}/{run}.ndjson")
}

pub fn staging_path(run: &str, final_path: &str) -> String {
    format!("{STAGING_DIR}/{run}/{final_path}")
}

/// What one source object contributed, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceEntry {
    pub source: String,
    pub size: u64,
    /// Modification time in nanoseconds, for local files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    /// ETag, for objects in S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Content hash (xxh3-64 of the bytes as stored, or the CRC-32 of a zip member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default)]
    pub events: u64,
    #[serde(default)]
    pub duplicates: u64,
    #[serde(default)]
    pub conflicts: u64,
    #[serde(default)]
    pub rejects: u64,
    /// Set for a digest file or another object that holds no events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub events: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub rejects: u64,
}

/// A commit record: everything one run changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit {
    pub version: u32,
    pub run: String,
    pub tool: String,
    pub started: String,
    pub finished: String,
    pub sources: Vec<SourceEntry>,
    /// Final paths of the files the run adds; each is staged under `_staging/<run>/` until the commit is applied.
    pub added: Vec<String>,
    /// Files the run replaces (compaction).
    pub removed: Vec<String>,
    pub totals: Totals,
}

/// The sources already in the lake, by source name.
pub type Manifest = HashMap<String, SourceEntry>;

/// A lake: an object store rooted at the lake's location.
#[derive(Clone)]
pub struct Lake {
    pub store: Arc<dyn ObjectStore>,
    /// How the user named it, for messages.
    pub name: String,
    /// The directory of a local lake, whose empty directories are removed after a commit (object stores have
    /// none to remove).
    pub local_root: Option<std::path::PathBuf>,
    /// How an object-store lake's lock is kept alive and judged stale (see `lock.rs`).
    pub lock_timing: LockTiming,
}

impl Lake {
    pub fn new(store: Arc<dyn ObjectStore>, name: impl Into<String>) -> Lake {
        Lake { store, name: name.into(), local_root: None, lock_timing: LockTiming::default() }
    }

    pub fn with_local_root(mut self, root: std::path::PathBuf) -> Lake {
        self.local_root = Some(root);
        self
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Lake { lake: self.name.clone(), message: message.into() }
    }

    /// Writes an object whole: readers see all of it or none. Big objects go up in parts (S3 shows a multipart
    /// upload only once it is complete).
    pub async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        const PART: usize = 32 << 20;
        let location = Path::from(path);
        if data.len() <= PART {
            self.store.put(&location, PutPayload::from_bytes(data)).await?;
            return Ok(());
        }
        let upload = self.store.put_multipart(&location).await?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        writer.put(data);
        writer.finish().await?;
        Ok(())
    }

    /// Writes an object from a local file, a part at a time, so that its size never has to fit in memory.
    pub async fn put_file(&self, path: &str, mut file: std::fs::File) -> Result<()> {
        use std::io::Read;
        const PART: usize = 32 << 20;
        let upload = self.store.put_multipart(&Path::from(path)).await?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(std::env::temp_dir(), e))?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(2).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(())
    }

    pub async fn get(&self, path: &str) -> Result<Bytes> {
        Ok(self.store.get(&Path::from(path)).await?.bytes().await?)
    }

    /// Every object under a prefix, with its size.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let prefix = Path::from(prefix);
        let items: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        let mut out: Vec<(String, u64)> = items.into_iter().map(|m| (m.location.to_string(), m.size)).collect();
        out.sort();
        Ok(out)
    }

    /// All commit records, oldest first, with their sequence numbers.
    pub async fn commits(&self) -> Result<Vec<(u64, Commit)>> {
        let mut out = Vec::new();
        for (path, _) in self.list(MANIFEST_DIR).await? {
            let Some(name) = path.rsplit('/').next().and_then(|n| n.strip_suffix(".json")) else { continue };
            let Some(seq) = name.split('-').next().and_then(|s| s.parse::<u64>().ok()) else { continue };
            let body = self.get(&path).await?;
            let commit: Commit =
                serde_json::from_slice(&body).map_err(|e| self.err(format!("unreadable commit record {path}: {e}")))?;
            out.push((seq, commit));
        }
        out.sort_by_key(|(seq, _)| *seq);
        Ok(out)
    }

    /// The sources already converted.
    pub fn manifest(commits: &[(u64, Commit)]) -> Manifest {
        let mut m = Manifest::new();
        for (_, c) in commits {
            for s in &c.sources {
                m.insert(s.source.clone(), s.clone());
            }
        }
        m
    }

    /// Writes a commit record: the point at which a run's changes become part of the lake.
    pub async fn write_commit(&self, seq: u64, commit: &Commit) -> Result<()> {
        let body = serde_json::to_vec_pretty(commit).expect("commit serialises");
        self.put(&format!("{MANIFEST_DIR}/{seq:010}-{}.json", commit.run), Bytes::from(body)).await
    }

    /// Moves a committed run's staged files into place and deletes what it replaced. Safe to repeat.
    pub async fn apply(&self, commit: &Commit) -> Result<()> {
        for path in &commit.added {
            let staged = Path::from(staging_path(&commit.run, path));
            match self.store.rename(&staged, &Path::from(path.as_str())).await {
                Ok(()) => {}
                // Already moved by an earlier, interrupted apply.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for path in &commit.removed {
            self.delete(path).await?;
        }
        self.delete_prefix(&format!("{STAGING_DIR}/{}", commit.run)).await
    }

    /// Deletes one object; one already gone is fine.
    pub async fn delete(&self, path: &str) -> Result<()> {
        match self.store.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object under a directory-like prefix (not a file's path: object stores list `prefix/`).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for (path, _) in self.list(prefix).await? {
            self.delete(&path).await?;
        }
        if let Some(root) = &self.local_root {
            remove_empty_dirs(&root.join(prefix));
        }
        Ok(())
    }

    /// Finishes committed runs that were interrupted and deletes the staging of runs that never committed.
    /// Returns the number of runs finished and discarded.
    ///
    /// Only the lock holder recovers, and every run recovers before it commits, so only the newest commit can be
    /// unfinished without staging left to show it: an object store keeps no empty staging "directory" once all of
    /// a run's files are moved, so a run killed while deleting what its compaction replaced is visible only in its
    /// record. Those deletions are repeated (deleting what is gone is free).
    pub async fn recover(&self, commits: &[(u64, Commit)]) -> Result<(usize, usize)> {
        let staged = self.list(STAGING_DIR).await?;
        let mut runs: Vec<String> = staged
            .iter()
            .filter_map(|(p, _)| p.strip_prefix(&format!("{STAGING_DIR}/"))?.split('/').next().map(String::from))
            .collect();
        // A run killed in the middle of a write leaves the store's partial file (`name#N`), which listings skip:
        // a local lake's staging directories are read as well, so that such a run is found and removed.
        if let Some(root) = &self.local_root
            && let Ok(entries) = std::fs::read_dir(root.join(STAGING_DIR))
        {
            runs.extend(entries.flatten().filter_map(|e| e.file_name().into_string().ok()));
        }
        runs.sort();
        runs.dedup();
        let (mut finished, mut discarded) = (0, 0);
        for run in runs {
            match commits.iter().find(|(_, c)| c.run == run) {
                Some((_, c)) => {
                    self.apply(c).await?;
                    finished += 1;
                }
                None => {
                    self.delete_prefix(&format!("{STAGING_DIR}/{run}")).await?;
                    if let Some(root) = &self.local_root {
                        match std::fs::remove_dir_all(root.join(STAGING_DIR).join(&run)) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(Error::io(root.join(STAGING_DIR).join(&run), e)),
                        }
                    }
                    discarded += 1;
                }
            }
        }
        if let Some((_, last)) = commits.last() {
            for path in &last.removed {
                self.delete(path).await?;
            }
        }
        Ok((finished, discarded))
    }

    /// The data files of a partition, with their sizes.
    pub async fn data_files(&self, key: &PartitionKey) -> Result<Vec<(String, u64)>> {
        Ok(self
            .list(&key.dir())
            .await?
            .into_iter()
            .filter(|(p, _)| {
                p.ends_with(&format!(".{DATA_EXT}")) && !p.rsplit('/').next().unwrap_or("").starts_with(['.', '_'])
            })
            .collect())
    }

    /// Whether the lake holds any data file. It stops at the first, under the first account directory that has
    /// one, where [`Lake::partitions`] lists every object (the index files too).
    pub async fn has_data(&self) -> Result<bool> {
        let top = self.store.list_with_delimiter(None).await?;
        for dir in top.common_prefixes.iter().filter(|d| d.as_ref().starts_with("account_id=")) {
            let mut objects = self.store.list(Some(dir));
            while let Some(o) = objects.try_next().await? {
                if o.location.extension() == Some(DATA_EXT) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The partitions of the lake, from its directory names.
    pub async fn partitions(&self) -> Result<Vec<PartitionKey>> {
        let mut out: Vec<PartitionKey> = Vec::new();
        for (path, _) in self.list("").await? {
            if path.starts_with('_') || !path.ends_with(&format!(".{DATA_EXT}")) {
                continue;
            }
            if let Some(k) = PartitionKey::from_path(&path)
                && out.last() != Some(&k)
            {
                out.push(k);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Removes a directory tree that holds no files, bottom up; what still holds files stays.
fn remove_empty_dirs(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&e.path());
        }
    }
    // Fails, as it should, when the directory is not empty.
    let _ = std::fs::remove_dir(dir);
}

/// The (eventID, content) hashes of a data file's rows, stored beside it so that later runs can drop duplicates
/// without reading the data.
pub fn encode_ids(ids: &[EventId]) -> Bytes {
    let mut sorted: Vec<EventId> = ids.to_vec();
    sorted.sort_by_key(|e| (e.id, e.content));
    let mut out = Vec::with_capacity(16 + sorted.len() * 16);
    out.extend_from_slice(b"TSQIDS01");
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    for e in sorted {
        out.extend_from_slice(&e.id.to_le_bytes());
        out.extend_from_slice(&e.content.to_le_bytes());
    }
    Bytes::from(out)
}

pub fn decode_ids(data: &[u8]) -> Option<Vec<EventId>> {
    let body = data.strip_prefix(b"TSQIDS01")?;
    let n = usize::try_from(u64::from_le_bytes(body.get(..8)?.try_into().ok()?)).ok()?;
    let rows = body.get(8..)?;
    if rows.len() != n.checked_mul(16)? {
        return None;
    }
    Some(
        rows.chunks_exact(16)
            .map(|c| EventId {
                id: u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
                content: u64::from_le_bytes(c[8..].try_into().expect("8 bytes")),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_validated_before_becoming_paths() {
        for ok in ["123456789012", "012345678901"] {
            assert_eq!(PartitionKey::account_or_fallback(Some(ok)), ok);
        }
        for bad in [
            "",
            "../../etc",
            "1234567890123",
            "12345678901",
            "ACCOUNT_ID",
            "123456789012/",
            "12345678901\0",
            "１２３４５６７８９０１２",
            "1234567890 2",
            "..",
            "/",
        ] {
            assert_eq!(PartitionKey::account_or_fallback(Some(bad)), "unknown", "{bad:?}");
        }
        assert_eq!(PartitionKey::account_or_fallback(None), "unknown");
    }

    #[test]
    fn partition_dirs_round_trip() {
        let k = PartitionKey { account: "012345678901".into(), day: 20021 };
        assert_eq!(k.dir(), "account_id=012345678901/event_date=2024-10-25");
        assert_eq!(PartitionKey::from_path(&data_path(&k, "part-x")), Some(k.clone()));
        assert_eq!(PartitionKey::from_path("_staging/r/account_id=012345678901/event_date=2024-10-25/x"), Some(k));
        assert_eq!(PartitionKey::from_path("account_id=../event_date=2024-10-25/x"), None);
    }

    #[test]
    fn accounts_from_object_keys() {
        let cases = [
            ("AWSLogs/111122223333/CloudTrail/us-east-1/2024/10/25/x.json.gz", Some("111122223333")),
            ("bucket/AWSLogs/o-abc123/111122223333/CloudTrail/eu-west-1/2024/10/25/x.json.gz", Some("111122223333")),
            ("/data/218007301253_CloudTrail_us-east-1_20230710T1220Z_WMiH.json", Some("218007301253")),
            ("AWSLogs/o-abc/../../etc/CloudTrail/x.json", None),
            ("AWSLogs/ACCOUNT_ID/CloudTrail/x.json", None),
            ("logs/events.json", None),
            ("12345_CloudTrail_x.json", None),
        ];
        for (key, want) in cases {
            assert_eq!(account_from_key(key), want, "{key}");
        }
    }

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let ids = vec![EventId { id: 3, content: 4 }, EventId { id: 1, content: 2 }];
        let back = decode_ids(&encode_ids(&ids)).unwrap();
        assert_eq!(back, vec![EventId { id: 1, content: 2 }, EventId { id: 3, content: 4 }]);
        assert_eq!(decode_ids(b"garbage"), None);
        assert_eq!(decode_ids(&encode_ids(&ids)[..20]), None);
    }
}
