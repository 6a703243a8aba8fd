//! The writing side of a convert: de-duplication against the lake, buffering per partition within a memory budget,
//! Parquet encoding on the blocking pool, and compaction of small files.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use bytes::Bytes;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, new_null_array};
use datafusion::arrow::compute::{
    SortOptions, cast, concat, filter_record_batch, interleave_record_batch, sort_to_indices,
};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::{KeyValue, SortingColumn};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use datafusion::parquet::schema::types::ColumnPath;
use futures::StreamExt;
use rustc_hash::FxBuildHasher;
use tokio::task::JoinSet;

use super::record::{EventId, PartBatch};
use crate::error::{Error, Result};
use crate::lake::{Lake, PartitionKey, data_path, decode_ids, encode_ids, index_dir, index_path, staging_path};
use crate::schema;

/// A compacted group: its partition, the sources it replaces, the staged file and its rows.
type Compacted = (PartitionKey, Vec<Source>, Staged, u64);

/// Rows per row group: sorted by eventtime, each row group covers a stretch of time that its statistics prune.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Columns looked up by equality, which get bloom filters.
pub const BLOOM_COLUMNS: [&[&str]; 3] = [&["useridentity", "accesskeyid"], &["eventname"], &["eventid"]];

/// Rows per data page. Hunting queries keep a few rows of a file (the Root events of privileged_sessions, one
/// key's calls) and the reader decompresses every page that holds a kept row, so small pages are what late
/// materialisation saves. On the query benchmark 1024 rows did better than the default (20k rows or 1 MB) and
/// no worse than 256 or 512; with the dictionaries dropped below, files came out no larger than before.
pub const PAGE_ROWS: usize = 1024;

/// Columns whose values are nearly all distinct. Dictionary encoding gains them nothing on disk, and the reader
/// decodes a column chunk's whole dictionary page (up to 1 MB of strings) before it can skip to the rows it
/// keeps, which cost privileged_sessions more time than anything else.
pub const PLAIN_COLUMNS: [&[&str]; 10] = [
    &["eventid"],
    &["requestid"],
    &["sharedeventid"],
    &["eventtime"],
    &["useridentity", "accesskeyid"],
    &["useridentity", "principalid"],
    &["useridentity", "sessioncontext", "attributes", "creationdate"],
    &["requestparameters"],
    &["responseelements"],
    &["additionaleventdata"],
];

fn column_path(path: &[&str]) -> ColumnPath {
    ColumnPath::new(path.iter().map(|s| s.to_string()).collect())
}

/// The properties of a file of `rows` rows.
fn writer_properties(rows: usize) -> WriterProperties {
    static BASE: LazyLock<WriterPropertiesBuilder> = LazyLock::new(|| {
        let mut b = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid zstd level")))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_data_page_row_count_limit(PAGE_ROWS)
            .set_write_batch_size(PAGE_ROWS)
            .set_sorting_columns(Some(vec![SortingColumn {
                column_idx: u32::try_from(schema::event_time_index()).expect("small index") as i32,
                descending: false,
                nulls_first: false,
            }]))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "trailsql.version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]));
        for path in BLOOM_COLUMNS {
            let col = column_path(path);
            b = b.set_column_bloom_filter_enabled(col.clone(), true).set_column_bloom_filter_fpp(col, 0.01);
        }
        for path in PLAIN_COLUMNS {
            b = b.set_column_dictionary_enabled(column_path(path), false);
        }
        b
    });
    // A bloom filter starts sized for its row group's distinct values and is folded down when the row group ends.
    // Sized for a whole row group (128k rows: 160 KB, zeroed and folded, three per file), the filters of a lake's
    // many small files cost more than their rows.
    let ndv = rows.clamp(1, ROW_GROUP_ROWS) as u64;
    let mut b = BASE.clone();
    for path in BLOOM_COLUMNS {
        b = b.set_column_bloom_filter_max_ndv(column_path(path), ndv);
    }
    b.build()
}

/// Rows of one sorted slice handed to the Parquet writer at a time.
const ENCODE_CHUNK_ROWS: usize = 16 * 1024;
/// Bytes of rows in one slice, at most (about).
const ENCODE_CHUNK_BYTES: usize = 256 << 20;

/// Sorts rows by eventtime and encodes them as one Parquet file, with the sidecar of their event IDs.
///
/// The batches are never concatenated: a partition's rows can hold more than the 2 GiB of text that one Arrow
/// string array can address, so only the time column is gathered to sort, and the rows go out in small
/// interleaved slices.
pub fn encode(batches: &[RecordBatch], ids: &[EventId]) -> Result<(Bytes, Bytes, u64)> {
    let schema = schema::file_schema();
    let time = schema::event_time_index();
    let times: Vec<&dyn Array> = batches.iter().map(|b| b.column(time).as_ref()).collect();
    let all_times = concat(&times)?;
    let order = sort_to_indices(&all_times, Some(SortOptions { descending: false, nulls_first: false }), None)?;
    let mut origin: Vec<(usize, usize)> = Vec::with_capacity(all_times.len());
    for (bi, b) in batches.iter().enumerate() {
        origin.extend((0..b.num_rows()).map(|r| (bi, r)));
    }
    // A slice is cut by rows and by bytes (each batch's average row size), so that no slice nears 2 GiB even when
    // the rows are large.
    let row_bytes: Vec<usize> = batches.iter().map(|b| b.get_array_memory_size() / b.num_rows().max(1)).collect();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let rows = order.len();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema, Some(writer_properties(rows)))?;
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(ENCODE_CHUNK_ROWS);
    let mut bytes = 0usize;
    for &i in order.values() {
        let (b, r) = origin[i as usize];
        picks.push((b, r));
        bytes += row_bytes[b];
        if picks.len() >= ENCODE_CHUNK_ROWS || bytes >= ENCODE_CHUNK_BYTES {
            writer.write(&interleave_record_batch(&refs, &picks)?)?;
            picks.clear();
            bytes = 0;
        }
    }
    if !picks.is_empty() {
        writer.write(&interleave_record_batch(&refs, &picks)?)?;
    }
    writer.close()?;
    Ok((Bytes::from(buf), encode_ids(ids), rows as u64))
}

/// Reads a data file back, shaped to the current schema (a lake written by an older version may lack columns).
pub fn decode(data: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)?.with_batch_size(64 * 1024).build()?;
    let target = schema::file_schema();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        if batch.schema().fields() == target.fields() {
            out.push(batch);
            continue;
        }
        let columns: Vec<ArrayRef> = target
            .fields()
            .iter()
            .map(|f| match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
                Some(c) => cast(c, f.data_type()),
                None => Ok(new_null_array(f.data_type(), batch.num_rows())),
            })
            .collect::<Result<_, _>>()?;
        out.push(RecordBatch::try_new(target.clone(), columns)?);
    }
    Ok(out)
}

/// The event IDs of one partition already in the lake or written by this run.
#[derive(Default)]
struct PartIndex {
    /// ID → content of its first copy.
    first: HashMap<u64, u64, FxBuildHasher>,
    /// Further (ID, content) pairs: events kept as ID conflicts.
    extra: HashSet<(u64, u64), FxBuildHasher>,
}

impl PartIndex {
    fn len(&self) -> usize {
        self.first.len() + self.extra.len()
    }

    /// Records an event; tells whether it is a duplicate, a conflict, or new.
    fn insert(&mut self, e: EventId) -> Seen {
        match self.first.get(&e.id) {
            None => {
                self.first.insert(e.id, e.content);
                Seen::New
            }
            Some(&c) if c == e.content => Seen::Duplicate,
            Some(_) => {
                if self.extra.insert((e.id, e.content)) {
                    Seen::Conflict
                } else {
                    Seen::Duplicate
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    New,
    Duplicate,
    Conflict,
}

/// A file this run wrote into staging.
#[derive(Debug, Clone)]
struct Staged {
    stem: String,
    size: u64,
}

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
        let mut removed = Vec::new();
        let mut keys: Vec<PartitionKey> =
            self.parts.iter().filter(|(_, p)| !p.staged.is_empty()).map(|(k, _)| k.clone()).collect();
        keys.sort();
        let lake = self.lake.clone();
        let run = self.cfg.run.clone();
        let compact_below = self.cfg.compact_below;
        let plans: Vec<(PartitionKey, Vec<(Source, u64)>)> = futures::stream::iter(keys.clone())
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
        let mut added = Vec::new();
        for key in keys {
            for s in &self.parts[&key].staged {
                added.push(data_path(&key, &s.stem));
                added.push(index_path(&key, &s.stem));
            }
        }
        Ok(Written { added, removed, stats: self.stats })
    }
}

/// A file taking part in a compaction, by stem.
#[derive(Debug, Clone)]
enum Source {
    Committed(String),
    Staged(String),
}

/// The small files of a partition that should be merged: all of them, when there are at least two.
async fn plan_compaction(lake: &Lake, key: &PartitionKey, staged: &[Staged], below: u64) -> Result<Vec<(Source, u64)>> {
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
fn split_groups(files: Vec<(Source, u64)>, max_bytes: u64) -> Vec<Vec<Source>> {
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

async fn merge(
    lake: &Lake,
    run: &str,
    key: &PartitionKey,
    group: Vec<Source>,
    stem: String,
) -> Result<(PartitionKey, Vec<Source>, Staged, u64)> {
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
    fn index_tells_duplicates_from_conflicts() {
        let mut ix = PartIndex::default();
        let a = EventId { id: 1, content: 10 };
        let b = EventId { id: 1, content: 11 };
        assert_eq!(ix.insert(a), Seen::New);
        assert_eq!(ix.insert(a), Seen::Duplicate);
        assert_eq!(ix.insert(b), Seen::Conflict);
        assert_eq!(ix.insert(b), Seen::Duplicate);
        assert_eq!(ix.insert(EventId { id: 2, content: 10 }), Seen::New);
    }

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

    #[test]
    fn encoded_files_are_sorted_by_time_and_read_back() {
        let empty = RecordBatch::new_empty(schema::file_schema());
        let (data, _, rows) = encode(&[empty], &[]).unwrap();
        assert_eq!(rows, 0);
        assert_eq!(decode(data).unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    }

    /// Issue 10, item 10: a partition holding more text than one Arrow string array can address (2 GiB) is
    /// written, where concatenating its batches failed with "Offset overflow" and left the partition stuck.
    #[test]
    fn a_partition_of_more_than_2_gib_of_text_is_written() {
        use datafusion::arrow::array::{StringArray, TimestampMicrosecondArray};
        use std::sync::Arc;
        let schema = schema::file_schema();
        let payload = "x".repeat(1 << 20);
        let batch = |first: i64| {
            let rows = 800;
            let columns = schema
                .fields()
                .iter()
                .map(|f| -> ArrayRef {
                    match f.name().as_str() {
                        "eventtime" => Arc::new(
                            TimestampMicrosecondArray::from_iter_values((0..rows).map(|i| (first + i) * 1_000_000))
                                .with_timezone("UTC"),
                        ),
                        "requestparameters" => Arc::new(StringArray::from_iter_values((0..rows).map(|_| &payload))),
                        _ => new_null_array(f.data_type(), rows as usize),
                    }
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        // Three batches of 800 MiB of payload each, interleaved in time.
        let batches = [batch(0), batch(400), batch(200)];
        let (data, _, rows) = encode(&batches, &[]).unwrap();
        assert_eq!(rows, 2400);
        let back = ParquetRecordBatchReaderBuilder::try_new(data).unwrap().with_batch_size(512).build().unwrap();
        let mut last = i64::MIN;
        let mut n = 0;
        for b in back {
            let b = b.unwrap();
            let t = b.column(schema::event_time_index()).as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
            for v in t.values() {
                assert!(*v >= last, "sorted by time");
                last = *v;
            }
            n += b.num_rows();
        }
        assert_eq!(n, 2400);
    }

    /// The layout late materialisation depends on: small pages with an offset index, and no dictionary on the
    /// nearly unique columns (a path that names no column would be ignored by the writer without a word).
    #[test]
    fn unique_columns_are_plain_and_pages_are_small() {
        use std::sync::Arc;

        use datafusion::arrow::array::{StringArray, TimestampMicrosecondArray};
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
        use datafusion::parquet::file::serialized_reader::ReadOptionsBuilder;

        let schema = schema::file_schema();
        let rows = 3 * PAGE_ROWS;
        let columns = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    "eventid" => Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("id-{i:08}")))),
                    "eventtime" => Arc::new(
                        TimestampMicrosecondArray::from_iter_values((0..rows).map(|i| i as i64 * 1_000_000))
                            .with_timezone("UTC"),
                    ),
                    "eventname" => Arc::new(StringArray::from_iter_values((0..rows).map(|i| ["A", "B"][i % 2]))),
                    _ => new_null_array(f.data_type(), rows),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(schema, columns).unwrap();
        let (data, _, _) = encode(&[batch], &[]).unwrap();
        let options = ReadOptionsBuilder::new().with_page_index().build();
        let reader = SerializedFileReader::new_with_options(data, options).unwrap();
        let meta = reader.metadata();
        let group = meta.row_group(0);
        let find = |path: &[&str]| {
            (0..group.num_columns())
                .find(|&i| group.column(i).column_path().parts() == path)
                .unwrap_or_else(|| panic!("no column {path:?}"))
        };
        for path in PLAIN_COLUMNS {
            assert!(group.column(find(path)).dictionary_page_offset().is_none(), "{path:?} has a dictionary");
        }
        for path in BLOOM_COLUMNS {
            assert!(group.column(find(path)).bloom_filter_offset().is_some(), "{path:?} has no bloom filter");
        }
        assert!(group.column(find(&["eventname"])).dictionary_page_offset().is_some());
        let pages = &meta.offset_index().expect("offset index")[0][find(&["eventid"])];
        assert_eq!(pages.page_locations().len(), 3);
    }
}
