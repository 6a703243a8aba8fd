//! The writing side of a convert: de-duplication against the lake, buffering per partition within a memory budget,
//! and Parquet encoding on the blocking pool; at the end, compaction of small files (`compact.rs`).

use std::collections::HashMap;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use futures::StreamExt;
use tokio::task::JoinSet;

use super::record::PartBatch;
use crate::compact::{Compacted, Source, Staged, merge, plan_compaction, split_groups};
use crate::error::{Error, Result};
use crate::format::encode;
use crate::index::{EventId, PartIndex, Seen, decode_ids};
use crate::layout::{PartitionKey, data_path, index_dir, index_path, staging_path};
use crate::store::Lake;

#[derive(Default)]
struct Part {
    pending: Vec<RecordBatch>,
    pending_ids: Vec<EventId>,
    pending_bytes: usize,
    index: Option<PartIndex>,
    last_used: u64,
    inflight: usize,
    staged: Vec<Staged>,
}

/// Settings of the writing side.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub run: String,
    /// Bytes of rows buffered before the largest partitions are written out.
    pub memory_budget: usize,
    /// Entries of de-duplication indexes kept in memory before idle partitions' indexes are dropped.
    pub index_budget: usize,
    /// Data files smaller than this are merged with their partition's other small files.
    pub compact_below: u64,
    /// Files written at the same time.
    pub parallel: usize,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct WriteStats {
    pub rows_written: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    pub files_compacted: u64,
}

struct Flushed {
    key: PartitionKey,
    staged: Staged,
    rows: u64,
}

pub struct Writer {
    lake: Lake,
    cfg: WriterConfig,
    parts: HashMap<PartitionKey, Part>,
    pending_bytes: usize,
    index_entries: usize,
    tick: u64,
    next_file: u64,
    inflight: JoinSet<Result<Flushed>>,
    pub stats: WriteStats,
}

/// What a finished writer leaves for the commit record.
pub struct Written {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub stats: WriteStats,
}

impl Writer {
    pub fn new(lake: Lake, cfg: WriterConfig) -> Writer {
        Writer {
            lake,
            cfg,
            parts: HashMap::new(),
            pending_bytes: 0,
            index_entries: 0,
            tick: 0,
            next_file: 0,
            inflight: JoinSet::new(),
            stats: WriteStats::default(),
        }
    }

    /// Loads the event IDs of a partition: committed files and this run's staged ones.
    async fn load_index(&self, key: &PartitionKey) -> Result<PartIndex> {
        let mut index = PartIndex::default();
        let committed = self.lake.list(&index_dir(key)).await?;
        let staged = self.lake.list(&staging_path(&self.cfg.run, &index_dir(key))).await?;
        for (path, _) in committed.into_iter().chain(staged) {
            if !path.ends_with(".ids") {
                continue;
            }
            let data = self.lake.get(&path).await?;
            let ids = decode_ids(&data).ok_or_else(|| Error::Lake {
                lake: self.lake.name.clone(),
                message: format!("unreadable index file {path}"),
            })?;
            for e in ids {
                index.insert(e);
            }
        }
        Ok(index)
    }

    /// Adds a file's rows of one partition, minus the duplicates. Returns (duplicates, conflicts).
    pub async fn add(&mut self, pb: PartBatch) -> Result<(u64, u64)> {
        self.tick += 1;
        let needs_index = self.parts.get(&pb.key).is_none_or(|p| p.index.is_none());
        if needs_index {
            let index = self.load_index(&pb.key).await?;
            self.index_entries += index.len();
            self.parts.entry(pb.key.clone()).or_default().index = Some(index);
        }
        let part = self.parts.get_mut(&pb.key).expect("inserted above");
        part.last_used = self.tick;
        let index = part.index.as_mut().expect("loaded above");
        let (mut dups, mut conflicts) = (0u64, 0u64);
        let mut keep = Vec::with_capacity(pb.ids.len());
        for id in &pb.ids {
            let k = match id {
                None => true,
                Some(e) => match index.insert(*e) {
                    Seen::New => {
                        part.pending_ids.push(*e);
                        true
                    }
                    Seen::Conflict => {
                        conflicts += 1;
                        part.pending_ids.push(*e);
                        true
                    }
                    Seen::Duplicate => {
                        dups += 1;
                        false
                    }
                },
            };
            keep.push(k);
        }
        self.index_entries += pb.ids.len() - dups as usize;
        let batch = if dups > 0 { filter_record_batch(&pb.batch, &BooleanArray::from(keep))? } else { pb.batch };
        if batch.num_rows() > 0 {
            let bytes = batch.get_array_memory_size();
            part.pending_bytes += bytes;
            part.pending.push(batch);
            self.pending_bytes += bytes;
        }
        self.keep_in_budget().await?;
        Ok((dups, conflicts))
    }

    async fn keep_in_budget(&mut self) -> Result<()> {
        if self.pending_bytes > self.cfg.memory_budget {
            let mut by_size: Vec<(usize, PartitionKey)> = self
                .parts
                .iter()
                .filter(|(_, p)| p.pending_bytes > 0)
                .map(|(k, p)| (p.pending_bytes, k.clone()))
                .collect();
            by_size.sort_by_key(|b| std::cmp::Reverse(b.0));
            for (_, key) in by_size {
                if self.pending_bytes <= self.cfg.memory_budget / 2 {
                    break;
                }
                self.flush(key).await?;
            }
        }
        if self.index_entries > self.cfg.index_budget {
            let mut idle: Vec<(u64, PartitionKey)> = self
                .parts
                .iter()
                .filter(|(_, p)| p.index.is_some() && p.pending.is_empty() && p.inflight == 0)
                .map(|(k, p)| (p.last_used, k.clone()))
                .collect();
            idle.sort();
            for (_, key) in idle {
                if self.index_entries <= self.cfg.index_budget / 2 {
                    break;
                }
                if let Some(index) = self.parts.get_mut(&key).and_then(|p| p.index.take()) {
                    self.index_entries -= index.len();
                }
            }
        }
        Ok(())
    }

    fn stem(&mut self) -> String {
        self.next_file += 1;
        format!("part-{}-{:05}", self.cfg.run, self.next_file)
    }

    /// Writes a partition's buffered rows to a staged file, in the background.
    async fn flush(&mut self, key: PartitionKey) -> Result<()> {
        while self.inflight.len() >= self.cfg.parallel.max(1) {
            self.join_one().await?;
        }
        let stem = self.stem();
        let part = self.parts.get_mut(&key).expect("flushing a known partition");
        let batches = std::mem::take(&mut part.pending);
        let ids = std::mem::take(&mut part.pending_ids);
        self.pending_bytes -= std::mem::take(&mut part.pending_bytes);
        if batches.is_empty() {
            return Ok(());
        }
        part.inflight += 1;
        let lake = self.lake.clone();
        let run = self.cfg.run.clone();
        self.inflight.spawn(async move {
            let (data, ids_file, rows) = tokio::task::spawn_blocking(move || encode(&batches, &ids))
                .await
                .map_err(|e| Error::Other(format!("encoder task failed: {e}")))??;
            let size = data.len() as u64;
            lake.put(&staging_path(&run, &data_path(&key, &stem)), data).await?;
            lake.put(&staging_path(&run, &index_path(&key, &stem)), ids_file).await?;
            Ok(Flushed { key, staged: Staged { stem, size }, rows })
        });
        Ok(())
    }

    async fn join_one(&mut self) -> Result<()> {
        if let Some(done) = self.inflight.join_next().await {
            let f = done.map_err(|e| Error::Other(format!("writer task failed: {e}")))??;
            self.stats.rows_written += f.rows;
            self.stats.files_written += 1;
            self.stats.bytes_written += f.staged.size;
            let part = self.parts.get_mut(&f.key).expect("flushed a known partition");
            part.inflight -= 1;
            part.staged.push(f.staged);
        }
        Ok(())
    }

    /// Writes what is buffered, compacts small files, and lists the files to commit.
    pub async fn finish(mut self) -> Result<Written> {
        let keys: Vec<PartitionKey> =
            self.parts.iter().filter(|(_, p)| !p.pending.is_empty()).map(|(k, _)| k.clone()).collect();
        for key in keys {
            self.flush(key).await?;
        }
        while !self.inflight.is_empty() {
            self.join_one().await?;
        }
        let mut keys: Vec<PartitionKey> =
            self.parts.iter().filter(|(_, p)| !p.staged.is_empty()).map(|(k, _)| k.clone()).collect();
        keys.sort();
        let removed = self.compact(&keys).await?;
        let mut added = Vec::new();
        for key in &keys {
            for s in &self.parts[key].staged {
                added.push(data_path(key, &s.stem));
                added.push(index_path(key, &s.stem));
            }
        }
        Ok(Written { added, removed, stats: self.stats })
    }

    /// Merges the small files of each partition written to, staged or committed; gives the committed files the
    /// merges replace, to be removed at the commit.
    async fn compact(&mut self, keys: &[PartitionKey]) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let lake = self.lake.clone();
        let run = self.cfg.run.clone();
        let compact_below = self.cfg.compact_below;
        let plans: Vec<(PartitionKey, Vec<(Source, u64)>)> = futures::stream::iter(keys.to_vec())
            .then(|key| {
                let lake = lake.clone();
                let staged = self.parts[&key].staged.clone();
                async move { plan_compaction(&lake, &key, &staged, compact_below).await.map(|p| (key, p)) }
            })
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        // A merge holds its group decoded, about ten times its Parquet size: the merges running at once stay within
        // the memory limit.
        let parallel = self.cfg.parallel.max(1);
        let by_memory = u64::try_from(self.cfg.memory_budget / (10 * parallel)).unwrap_or(u64::MAX);
        let group_bytes = compact_below.saturating_mul(4).min(by_memory).max(1 << 20);
        let mut jobs = Vec::new();
        for (key, groups) in plans {
            for group in split_groups(groups, group_bytes) {
                let stem = self.stem();
                jobs.push((key.clone(), group, stem));
            }
        }
        let results: Vec<Result<Compacted>> = futures::stream::iter(jobs)
            .map(|(key, group, stem)| {
                let lake = lake.clone();
                let run = run.clone();
                async move { merge(&lake, &run, &key, group, stem).await }
            })
            .buffer_unordered(self.cfg.parallel.max(1))
            .collect()
            .await;
        for r in results {
            let (key, group, staged, _rows) = r?;
            self.stats.files_compacted += group.len() as u64;
            self.stats.bytes_written += staged.size;
            let part = self.parts.get_mut(&key).expect("compacted a known partition");
            for src in group {
                match src {
                    Source::Committed(stem) => {
                        removed.push(data_path(&key, &stem));
                        removed.push(index_path(&key, &stem));
                    }
                    Source::Staged(stem) => {
                        part.staged.retain(|s| s.stem != stem);
                        self.lake.delete(&staging_path(&run, &data_path(&key, &stem))).await?;
                        self.lake.delete(&staging_path(&run, &index_path(&key, &stem))).await?;
                    }
                }
            }
            part.staged.push(staged);
        }
        Ok(removed)
    }
}
