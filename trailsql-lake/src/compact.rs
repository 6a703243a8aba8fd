//! Compaction: a partition's small files, committed and staged, merged into bounded groups so that a lake fed
//! every five minutes does not become millions of tiny files.

use crate::error::{Error, Result};
use crate::format::{decode, encode};
use crate::index::decode_ids;
use crate::layout::{PartitionKey, data_path, index_path, staging_path};
use crate::store::Lake;

/// A file this run wrote into staging.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    pub(crate) stem: String,
    pub(crate) size: u64,
}

/// A compacted group: its partition, the sources it replaces, the staged file and its rows.
pub(crate) type Compacted = (PartitionKey, Vec<Source>, Staged, u64);

/// A file taking part in a compaction, by stem.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Committed(String),
    Staged(String),
}

/// The small files of a partition that should be merged: all of them, when there are at least two.
pub(crate) async fn plan_compaction(
    lake: &Lake,
    key: &PartitionKey,
    staged: &[Staged],
    below: u64,
) -> Result<Vec<(Source, u64)>> {
    let mut small: Vec<(Source, u64)> = Vec::new();
    for (path, size) in lake.data_files(key).await? {
        if size < below {
            let stem = path.rsplit('/').next().and_then(|n| n.strip_suffix(".parquet")).unwrap_or_default();
            small.push((Source::Committed(stem.to_string()), size));
        }
    }
    small.extend(staged.iter().filter(|s| s.size < below).map(|s| (Source::Staged(s.stem.clone()), s.size)));
    if small.len() < 2 {
        small.clear();
    }
    Ok(small)
}

/// Groups files so that each merge reads a bounded amount; a group of one is left alone.
pub(crate) fn split_groups(files: Vec<(Source, u64)>, max_bytes: u64) -> Vec<Vec<Source>> {
    let mut groups: Vec<Vec<Source>> = Vec::new();
    let mut current: Vec<Source> = Vec::new();
    let mut bytes = 0u64;
    for (src, size) in files {
        if !current.is_empty() && bytes + size > max_bytes {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(src);
    }
    groups.push(current);
    groups.retain(|g| g.len() >= 2);
    groups
}

pub(crate) async fn merge(
    lake: &Lake,
    run: &str,
    key: &PartitionKey,
    group: Vec<Source>,
    stem: String,
) -> Result<Compacted> {
    let mut batches = Vec::new();
    let mut ids = Vec::new();
    for src in &group {
        let (data, index) = match src {
            Source::Committed(s) => (data_path(key, s), index_path(key, s)),
            Source::Staged(s) => (staging_path(run, &data_path(key, s)), staging_path(run, &index_path(key, s))),
        };
        let data = lake.get(&data).await?;
        batches
            .extend(tokio::task::spawn_blocking(move || decode(data)).await.map_err(|e| Error::Other(e.to_string()))??);
        match lake.get(&index).await {
            Ok(b) => ids.extend(decode_ids(&b).unwrap_or_default()),
            Err(Error::Store(object_store::Error::NotFound { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    let (data, ids_file, rows) = tokio::task::spawn_blocking(move || encode(&batches, &ids))
        .await
        .map_err(|e| Error::Other(e.to_string()))??;
    let size = data.len() as u64;
    lake.put(&staging_path(run, &data_path(key, &stem)), data).await?;
    lake.put(&staging_path(run, &index_path(key, &stem)), ids_file).await?;
    Ok((key.clone(), group, Staged { stem, size }, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_bounded_and_singletons_left_alone() {
        let files = vec![
            (Source::Staged("a".into()), 10),
            (Source::Staged("b".into()), 10),
            (Source::Staged("c".into()), 95),
            (Source::Staged("d".into()), 10),
        ];
        let g = split_groups(files, 100);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].len(), 2);
    }
}
