//! A lake's storage: one object store rooted at the lake, and the reads, whole-object writes, listings and deletes
//! every other part goes through.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::layout::{ACCOUNT_DIR_PREFIX, DATA_EXT, PartitionKey, is_data_file};
use crate::lock::LockTiming;
use crate::manifest::Applying;

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

    pub(crate) fn err(&self, message: impl Into<String>) -> Error {
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

    /// The data files of a partition, with their sizes.
    pub async fn data_files(&self, key: &PartitionKey) -> Result<Vec<(String, u64)>> {
        Ok(self
            .list(&key.dir())
            .await?
            .into_iter()
            .filter(|(p, _)| is_data_file(p.rsplit('/').next().unwrap_or("")))
            .collect())
    }

    /// The data files of every partition of these accounts (all when none are named), with their sizes, by
    /// partition. Each account directory is one listing, several at once.
    pub async fn data_files_by_partition(
        &self,
        accounts: &[String],
    ) -> Result<BTreeMap<PartitionKey, Vec<(String, u64)>>> {
        let dirs: Vec<String> = if accounts.is_empty() {
            let top = self.store.list_with_delimiter(None).await?;
            (top.common_prefixes.iter())
                .filter(|d| d.as_ref().starts_with(ACCOUNT_DIR_PREFIX))
                .map(|d| format!("{d}/"))
                .collect()
        } else {
            accounts.iter().map(|a| format!("{ACCOUNT_DIR_PREFIX}{a}/")).collect()
        };
        let listing = futures::stream::iter(dirs.iter().map(|d| self.list(d))).buffer_unordered(8).try_collect();
        let (listings, applying): (Vec<Vec<(String, u64)>>, _) = self.while_applying(listing).await?;
        let files: Vec<(String, u64)> =
            listings.into_iter().flatten().filter(|(p, _)| is_data_file(p.rsplit('/').next().unwrap_or(""))).collect();
        let mut out: BTreeMap<PartitionKey, Vec<(String, u64)>> = BTreeMap::new();
        for (path, size) in Applying::visible(applying.as_ref(), files) {
            if let Some(key) = PartitionKey::from_path(&path) {
                out.entry(key).or_default().push((path, size));
            }
        }
        Ok(out)
    }

    /// Whether the lake holds any data file. It stops at the first, under the first account directory that has
    /// one, where [`Lake::partitions`] lists every object (the index files too).
    pub async fn has_data(&self) -> Result<bool> {
        let top = self.store.list_with_delimiter(None).await?;
        for dir in top.common_prefixes.iter().filter(|d| d.as_ref().starts_with(ACCOUNT_DIR_PREFIX)) {
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
