//! The writing side of a convert: de-duplication against the lake, buffering per partition within a memory budget,
//! and Parquet encoding on the blocking pool; at the end, compaction of small files (`compact.rs`).

use std::collections::HashMap;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use futures::StreamExt;
use tokio::task::JoinSet;

use super::record::PartBatch;
use crate::compact::{Compacted, Source, Staged, merge, plan_compaction, split_groups};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::format::encode;
use crate::index::{EventId, PartIndex, Seen, decode_ids};
use crate::layout::{PartitionKey, data_path, index_dir, index_path, staging_path};
use crate::store::Lake;

/// Batches of fewer rows than this are merged once as many of them gather in a partition.
///
/// A wide lake delivers a file per account, Region and five minutes, so a file's rows of one partition are often a
/// single event. Each such batch costs a hundred small allocations that its Arrow size does not show, and the
/// encoder gathers rows from every batch of a partition at once, with a set-up per batch.
const TINY_ROWS: usize = 64;

/// Tiny batches holding more than this are left as they are: a merged batch must stay far from the 2 GiB an Arrow
/// string array can address.
const TINY_MERGE_BYTES: usize = 64 << 20;

#[derive(Default)]
struct Part {
    pending: Vec<RecordBatch>,
    pending_ids: Vec<EventId>,
    pending_bytes: usize,
    /// Batches in `pending` of fewer than `TINY_ROWS` rows.
    tiny: usize,
    index: Option<PartIndex>,
    last_used: u64,
    inflight: usize,
    staged: Vec<Staged>,
}

impl Part {
    /// Buffers a batch, merging the tiny ones once there are `TINY_ROWS` of them.
    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        self.tiny += usize::from(batch.num_rows() < TINY_ROWS);
        self.pending_bytes += batch.get_array_memory_size();
        self.pending.push(batch);
        if self.tiny >= TINY_ROWS {
            self.merge_tiny()?;
        }
        Ok(())
    }

    /// The buffered rows, their event IDs and their memory, leaving the partition's buffer empty.
    fn take(&mut self) -> (Vec<RecordBatch>, Vec<EventId>, usize) {
        self.tiny = 0;
        (
            std::mem::take(&mut self.pending),
            std::mem::take(&mut self.pending_ids),
            std::mem::take(&mut self.pending_bytes),
        )
    }

    /// Merges the pending tiny batches into one; gives their memory before and after.
    fn merge_tiny(&mut self) -> Result<(usize, usize)> {
        let (tiny, rest): (Vec<RecordBatch>, Vec<RecordBatch>) =
            std::mem::take(&mut self.pending).into_iter().partition(|b| b.num_rows() < TINY_ROWS);
        self.pending = rest;
        self.tiny = 0;
        let before: usize = tiny.iter().map(RecordBatch::get_array_memory_size).sum();
        if before > TINY_MERGE_BYTES {
            self.pending.extend(tiny);
            return Ok((0, 0));
        }
        let merged = concat_batches(&tiny[0].schema(), &tiny)?;
        let after = merged.get_array_memory_size();
        self.pending.push(merged);
        self.pending_bytes = self.pending_bytes - before + after;
        Ok((before, after))
    }
}

/// Gives the memory freed inside the allocator's heaps back to the system.
///
/// glibc's malloc keeps resident what its arenas once held when small allocations that live on pin their pages:
/// rows of thousands of small files, built by a reader thread and freed by an encoder, left 200 MB resident around
/// 72 MB of live heap (heap profile of 5,000 one-event accounts at `--memory-limit 64MiB`). `malloc_trim` returns
/// the free pages of every arena; it runs once per quarter of the rows budget encoded and after each compaction
/// merge, a few milliseconds each.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only walks glibc's own free lists, under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Settings of the writing side.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub run: String,
    /// The run's memory limit. Rows buffered and rows being encoded take half of it (the readers hold the other
    /// half); compaction, which runs once the readers are done, all of it.
    pub memory_limit: usize,
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
    /// Memory of the rows it encoded.
    bytes: usize,
}

pub struct Writer {
    lake: Lake,
    cfg: WriterConfig,
    parts: HashMap<PartitionKey, Part>,
    pending_bytes: usize,
    /// Memory of the rows being encoded.
    encoding_bytes: usize,
    /// Memory of rows encoded since the allocator last gave memory back.
    freed_bytes: usize,
    index_entries: usize,
    tick: u64,
    next_file: u64,
    inflight: JoinSet<Result<Flushed>>,
    /// The values of the digest's columns in what this run writes.
    digest: Digest,
    pub stats: WriteStats,
}

/// What a finished writer leaves for the commit record.
pub struct Written {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub digest: Digest,
    pub stats: WriteStats,
}

impl Writer {
    pub fn new(lake: Lake, cfg: WriterConfig) -> Writer {
        Writer {
            lake,
            cfg,
            parts: HashMap::new(),
            pending_bytes: 0,
            encoding_bytes: 0,
            freed_bytes: 0,
            index_entries: 0,
            tick: 0,
            next_file: 0,
            inflight: JoinSet::new(),
            digest: Digest::default(),
            stats: WriteStats::default(),
        }
    }

    /// Loads the event IDs of a partition: committed files and this run's staged ones.
    async fn load_index(&mut self, key: &PartitionKey) -> Result<PartIndex> {
        let mut index = PartIndex::default();
        let committed = self.lake.list(&index_dir(key)).await?;
        if !committed.is_empty() {
            self.digest.mark_existing(key);
        }
        // This run's staged files of the partition, when its index was set aside to keep within the budget.
        let staged = self.parts.get(key).into_iter().flat_map(|p| &p.staged);
        let staged = staged.map(|s| staging_path(&self.cfg.run, &index_path(key, &s.stem)));
        let committed = committed.into_iter().map(|(path, _)| path).filter(|path| path.ends_with(".ids"));
        for path in committed.chain(staged) {
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
            self.digest.add_batch(&pb.key, &batch);
            let before = part.pending_bytes;
            part.push(batch)?;
            self.pending_bytes = self.pending_bytes - before + part.pending_bytes;
        }
        self.keep_in_budget().await?;
        Ok((dups, conflicts))
    }

    /// Bytes of rows buffered and being encoded, at most.
    fn rows_budget(&self) -> usize {
        self.cfg.memory_limit / 2
    }

    async fn keep_in_budget(&mut self) -> Result<()> {
        let budget = self.rows_budget();
        if self.pending_bytes + self.encoding_bytes > budget {
            let mut by_size: Vec<(usize, PartitionKey)> = self
                .parts
                .iter()
                .filter(|(_, p)| p.pending_bytes > 0)
                .map(|(k, p)| (p.pending_bytes, k.clone()))
                .collect();
            by_size.sort_by_key(|b| std::cmp::Reverse(b.0));
            for (_, key) in by_size {
                if self.pending_bytes <= budget / 2 {
                    break;
                }
                self.flush(key).await?;
            }
            // An encode holds its rows until it is done: wait for encodes rather than read more.
            while self.pending_bytes + self.encoding_bytes > budget && !self.inflight.is_empty() {
                self.join_one().await?;
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
        let (batches, ids, bytes) = part.take();
        self.pending_bytes -= bytes;
        self.encoding_bytes += bytes;
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
            Ok(Flushed { key, staged: Staged { stem, size }, rows, bytes })
        });
        Ok(())
    }

    async fn join_one(&mut self) -> Result<()> {
        if let Some(done) = self.inflight.join_next().await {
            let f = done.map_err(|e| Error::Other(format!("writer task failed: {e}")))??;
            self.encoding_bytes -= f.bytes;
            self.freed_bytes += f.bytes;
            if self.freed_bytes > self.rows_budget() / 4 {
                self.freed_bytes = 0;
                release_freed_memory();
            }
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
        Ok(Written { added, removed, digest: self.digest, stats: self.stats })
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
        let by_memory = u64::try_from(self.cfg.memory_limit / (10 * parallel)).unwrap_or(u64::MAX);
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
                async move {
                    let merged = merge(&lake, &run, &key, group, stem).await;
                    release_freed_memory();
                    merged
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::new_null_array;
    use std::sync::Arc;

    fn rows(n: usize) -> RecordBatch {
        let schema = crate::schema::file_schema();
        let columns = schema.fields().iter().map(|f| new_null_array(f.data_type(), n)).collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn tiny_batches_are_merged_into_one_and_counted_once() {
        let mut part = Part::default();
        for n in [1, 500, 3, 1, 70, 2] {
            part.push(rows(n)).unwrap();
        }
        let total = part.pending_bytes;
        let (before, after) = part.merge_tiny().unwrap();
        let sizes: Vec<usize> = part.pending.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [500, 70, 7], "the big batches stay, the tiny ones become one");
        assert_eq!(part.tiny, 0);
        assert_eq!(part.pending_bytes, total - before + after);
        assert_eq!(part.pending_bytes, part.pending.iter().map(RecordBatch::get_array_memory_size).sum::<usize>());
    }

    /// A partition whose index was set aside (no memory budget for indexes here) reads it back from the files
    /// this run staged, so that an event seen again later in the run is still a duplicate.
    #[tokio::test]
    async fn an_index_set_aside_is_read_back_from_the_staged_files() {
        let lake = Lake::new(Arc::new(object_store::memory::InMemory::new()), "memory");
        let cfg = WriterConfig { run: "run1".into(), memory_limit: 0, index_budget: 0, compact_below: 0, parallel: 1 };
        let mut writer = Writer::new(lake, cfg);
        let key = PartitionKey { account: "123456789012".into(), day: 20_000 };
        let id = |n: u64| Some(EventId { id: n, content: n * 7 });
        let part = |ids: Vec<Option<EventId>>| PartBatch { key: key.clone(), batch: rows(ids.len()), ids };
        assert_eq!(writer.add(part(vec![id(1), id(2)])).await.unwrap(), (0, 0));
        assert!(writer.parts[&key].index.is_none() && writer.parts[&key].staged.len() == 1, "set aside once staged");
        let changed = Some(EventId { id: 2, content: 1 });
        assert_eq!(writer.add(part(vec![id(1), id(3), changed])).await.unwrap(), (1, 1));
        let written = writer.finish().await.unwrap();
        assert_eq!(written.stats.rows_written, 4);
    }
}
