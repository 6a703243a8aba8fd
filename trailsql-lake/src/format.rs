//! The lake's Parquet files: events sorted by time, row groups and pages sized for pruning, bloom filters and plain
//! encoding where they pay; written from a partition's batches and read back in the current schema.

use std::sync::LazyLock;

use arrow::array::{Array, ArrayRef, RecordBatch, new_null_array};
use arrow::compute::{SortOptions, cast, concat, interleave_record_batch, sort_to_indices};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;

use crate::error::Result;
use crate::index::{EventId, encode_ids};
use crate::schema;

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

/// Files of fewer rows are compressed with Snappy, bigger ones with zstd.
///
/// The Parquet writer sets up a zstd compressor and decompressor for every column chunk: on a file of a few hundred
/// events (a wide lake's account-day, before compaction merges it) that set-up, and the allocations behind it, cost
/// more than the compression, about a fifth of a convert of 2,700 such partitions. Snappy has no set-up; its
/// files are about 10% larger, and every engine reads it.
pub const SNAPPY_BELOW_ROWS: usize = 8 * PAGE_ROWS;

/// The properties of a file of `rows` rows.
fn writer_properties(rows: usize) -> WriterProperties {
    static BASE: LazyLock<WriterPropertiesBuilder> = LazyLock::new(|| {
        // zstd's level 1 rather than 3: 3% less convert time on the narrow benchmark, and a lake of the same size
        // (67 MB against 68), the data pages being small and dictionary-encoded already.
        let mut b = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid zstd level")))
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
    if rows < SNAPPY_BELOW_ROWS {
        b = b.set_compression(Compression::SNAPPY);
    }
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
    // No `ARROW:schema` in the footer: the Parquet types alone give the lake's Arrow schema back, and the embedded
    // copy (5 KB of base64 in a 15 KB footer) was decoded again by every reader of every file.
    let options = ArrowWriterOptions::new().with_properties(writer_properties(rows)).with_skip_arrow_metadata(true);
    let mut writer = ArrowWriter::try_new_with_options(&mut buf, schema, options)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        use arrow::array::{StringArray, TimestampMicrosecondArray};
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

    /// Files carry no `ARROW:schema` (every reader decoded it again), and their Parquet types alone read back as
    /// the lake's schema, field by field: time zones, nesting and nullability included.
    #[test]
    fn files_read_back_as_the_lake_schema_without_an_embedded_arrow_schema() {
        let (data, _, _) = encode(&[distinct_ids(10)], &[]).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(data).unwrap();
        let kv = builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
        assert!(kv.iter().all(|e| e.key != "ARROW:schema"), "{kv:?}");
        assert_eq!(builder.schema().fields(), schema::file_schema().fields());
    }

    /// The layout late materialisation depends on: small pages with an offset index, and no dictionary on the
    /// nearly unique columns (a path that names no column would be ignored by the writer without a word).
    #[test]
    fn unique_columns_are_plain_and_pages_are_small() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::file::serialized_reader::ReadOptionsBuilder;

        let batch = distinct_ids(3 * PAGE_ROWS);
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

    /// Rows with distinct event IDs and times, two event names, and nulls elsewhere.
    fn distinct_ids(rows: usize) -> RecordBatch {
        use std::sync::Arc;

        use arrow::array::{StringArray, TimestampMicrosecondArray};

        let schema = schema::file_schema();
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
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn small_files_are_snappy_and_big_ones_zstd() {
        use parquet::file::reader::{FileReader, SerializedFileReader};

        for (rows, want) in [(100, Compression::SNAPPY), (SNAPPY_BELOW_ROWS, Compression::ZSTD(ZstdLevel::default()))] {
            let (data, _, _) = encode(&[distinct_ids(rows)], &[]).unwrap();
            let reader = SerializedFileReader::new(data.clone()).unwrap();
            let group = reader.metadata().row_group(0);
            for c in group.columns() {
                let got = match c.compression() {
                    Compression::ZSTD(_) => Compression::ZSTD(ZstdLevel::default()),
                    other => other,
                };
                assert_eq!(got, want, "{} of a file of {rows} rows", c.column_path());
            }
            let back: usize = decode(data).unwrap().iter().map(|b| b.num_rows()).sum();
            assert_eq!(back, rows);
        }
    }
}
