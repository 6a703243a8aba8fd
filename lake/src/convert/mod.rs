//! `trailsql convert`: CloudTrail JSON in any of its shapes to the partitioned Parquet lake.
//!
//! Worker threads read, decompress and parse files into Arrow rows (one file at a time each, so memory does not
//! grow with the number of files); one task de-duplicates against the lake and buffers rows per partition; the
//! blocking pool encodes Parquet. Everything a run writes is staged, then committed at once (see `manifest.rs`).

pub mod json;
pub mod record;
pub mod rows;
pub mod s3list;
pub mod scan;
pub mod source;
mod spool;
pub mod writer;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::layout::{rejects_path, staging_path};
use crate::manifest::{Commit, SourceEntry, Totals};
use crate::storage::{Location, Storage};
use crate::store::Lake;
use record::{Converter, Reject};
use source::{Filters, Limits, Msg, Status};
use writer::{Writer, WriterConfig};

/// Everything a convert run is told.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Local paths and `s3://bucket/prefix` locations.
    pub sources: Vec<String>,
    /// Accounts, Regions and delivery dates to take (empty: all).
    pub filters: Filters,
    /// Threads reading and parsing.
    pub threads: usize,
    /// Largest single record, in bytes.
    pub max_record: usize,
    pub limits: Limits,
    /// Bytes of rows buffered before the largest partitions are written.
    pub memory_budget: usize,
    /// Files below this size are compacted with the other small files of their partition.
    pub compact_below: u64,
    /// Show a progress bar.
    pub progress: bool,
    /// Bytes of records of one file after which its rows are handed on before the file ends (kept on disk until
    /// the file is read whole).
    pub piece_bytes: usize,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            sources: Vec::new(),
            filters: Filters::default(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_record: 16 << 20,
            limits: Limits { max_file_bytes: 8 << 30, max_ratio: 200 },
            memory_budget: 512 << 20,
            compact_below: 32 << 20,
            progress: false,
            piece_bytes: 256 << 20,
        }
    }
}

/// What a convert run did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub files_read: u64,
    pub files_unchanged: u64,
    /// Files skipped, by reason (digest, empty, not JSON, hidden).
    pub files_skipped: BTreeMap<String, u64>,
    /// Files that could not be read, with the reason.
    pub files_failed: Vec<(String, String)>,
    pub events_read: u64,
    pub events_written: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub rejects: u64,
    pub stored_bytes: u64,
    pub json_bytes: u64,
    pub bytes_out: u64,
    pub files_written: u64,
    pub files_compacted: u64,
    pub elapsed: Duration,
    /// Where this run's rejects are, when there are any.
    pub rejects_file: Option<String>,
    /// Interrupted runs found at start: finished from their commit record, and discarded.
    pub recovered: (usize, usize),
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.files_failed.is_empty()
    }

    /// The human summary, as printed at the end of a run.
    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-6);
        let skipped: u64 = self.files_skipped.values().sum();
        let mut s = format!(
            "converted {} files ({} unchanged, {} skipped, {} failed) in {:.2} s\n",
            self.files_read,
            self.files_unchanged,
            skipped,
            self.files_failed.len(),
            secs
        );
        let mut line = |k: &str, v: String| s.push_str(&format!("  {k:<20} {v}\n"));
        line("events read", group(self.events_read));
        line("events written", group(self.events_written));
        line("duplicates dropped", group(self.duplicates));
        line("id conflicts kept", group(self.conflicts));
        line(
            "rejected",
            match &self.rejects_file {
                Some(f) if self.rejects > 0 => format!("{} (in {f})", group(self.rejects)),
                _ => group(self.rejects),
            },
        );
        line("bytes in", format!("{} stored, {} JSON", human_bytes(self.stored_bytes), human_bytes(self.json_bytes)));
        line(
            "bytes out",
            format!(
                "{} in {} files{}",
                human_bytes(self.bytes_out),
                self.files_written,
                if self.files_compacted > 0 {
                    format!(" ({} small files compacted)", self.files_compacted)
                } else {
                    String::new()
                }
            ),
        );
        line(
            "throughput",
            format!(
                "{} events/s, {}/s of JSON",
                group((self.events_read as f64 / secs) as u64),
                human_bytes((self.json_bytes as f64 / secs) as u64)
            ),
        );
        if !self.files_skipped.is_empty() {
            let reasons: Vec<String> = self.files_skipped.iter().map(|(k, v)| format!("{v} {k}")).collect();
            line("skipped", reasons.join(", "));
        }
        if self.recovered != (0, 0) {
            line(
                "recovered",
                format!("{} interrupted run(s) finished, {} discarded", self.recovered.0, self.recovered.1),
            );
        }
        for (file, why) in &self.files_failed {
            s.push_str(&format!("failed: {file}: {why}\n"));
        }
        s
    }
}

fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let nonce = xxhash_rust::xxh3::xxh3_64(format!("{}{:?}{}", std::process::id(), now, rand_seed()).as_bytes());
    format!("{}-{:08x}", now.format("%Y%m%dT%H%M%SZ"), nonce as u32)
}

fn rand_seed() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

/// Counts of one source object, gathered from its outputs until it is done.
#[derive(Default)]
struct UnitCounts {
    events: u64,
    duplicates: u64,
    conflicts: u64,
    rejects: u64,
}

/// The source objects of the run: local files walked, S3 prefixes listed, in order.
async fn find_sources(lake: &Lake, opts: &ConvertOptions, storage: &Storage) -> Result<source::Walked> {
    let mut files = Vec::new();
    let mut local = Vec::new();
    for s in &opts.sources {
        match Location::parse(s)? {
            Location::Local(p) => local.push(p),
            Location::S3 { bucket, prefix } => {
                let store = storage.bucket(&bucket).await?;
                files.extend(s3list::list(store, &bucket, &prefix, &opts.filters, &storage.s3).await?);
            }
        }
    }
    let filters = opts.filters.clone();
    let skip = lake.local_root.clone();
    let mut walked = tokio::task::spawn_blocking(move || source::walk(&local, &filters, skip.as_deref()))
        .await
        .map_err(|e| Error::Other(e.to_string()))??;
    files.append(&mut walked.files);
    walked.files = files;
    Ok(walked)
}

/// Converts the sources into the lake.
pub async fn convert(lake: &Lake, opts: &ConvertOptions, storage: &Storage) -> Result<Summary> {
    let run = RunStart { id: new_run_id(), clock: Instant::now(), at: chrono::Utc::now().to_rfc3339() };
    let found = find_sources(lake, opts, storage).await?;
    let guard = lake.lock(&run.id).await?;
    let result = convert_locked(lake, opts, found, &run, &guard).await;
    let unlocked = lake.unlock(guard).await;
    let summary = result?;
    unlocked?;
    Ok(summary)
}

/// When and under which id a run started; the listing of the sources counts in its time.
struct RunStart {
    id: String,
    clock: Instant,
    at: String,
}

async fn convert_locked(
    lake: &Lake,
    opts: &ConvertOptions,
    found: source::Walked,
    start: &RunStart,
    guard: &crate::lock::LockGuard,
) -> Result<Summary> {
    let run = start.id.as_str();
    let commits = lake.commits().await?;
    let recovered = lake.recover(&commits).await?;
    let manifest = Arc::new(Lake::manifest(&commits));
    let next_seq = commits.last().map_or(1, |(s, _)| s + 1);

    let mut summary = Summary { recovered, ..Summary::default() };
    let source::Walked { files, hidden, failed: unreadable } = found;
    if hidden > 0 {
        summary.files_skipped.insert("hidden".into(), hidden);
    }

    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let bar = if opts.progress {
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let file_count = files.len();

    // Workers: threads that read and parse, one file at a time each.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(opts.threads.max(1) * 2);
    let queue = Arc::new(std::sync::Mutex::new(files.into_iter()));
    let mut conv = Converter::new(opts.max_record);
    // What the readers hold of a large file counts against the memory limit too: half of it, shared by them.
    conv.chunk_bytes = opts.piece_bytes.min(opts.memory_budget / (2 * opts.threads.max(1))).max(64 << 10);
    let conv = Arc::new(conv);
    let rt = tokio::runtime::Handle::current();
    let mut workers = Vec::new();
    for _ in 0..opts.threads.max(1) {
        let (tx, queue, conv, manifest, bar, rt) =
            (tx.clone(), queue.clone(), conv.clone(), manifest.clone(), bar.clone(), rt.clone());
        let limits = opts.limits;
        workers.push(std::thread::spawn(move || {
            loop {
                let next = queue.lock().expect("queue lock").next();
                let Some(file) = next else { break };
                let progress = |n: u64| bar.inc(n);
                let mut send = |m: Msg| {
                    // The receiver only goes away when the run has failed; then there is nothing left to do.
                    let _ = tx.blocking_send(m);
                };
                let reader = source::Reader { conv: &conv, manifest: &manifest, limits, rt: &rt, progress: &progress };
                reader.process_file(&file, &mut send);
            }
        }));
    }
    drop(tx);

    let mut writer = Writer::new(
        lake.clone(),
        WriterConfig {
            run: run.to_string(),
            memory_budget: opts.memory_budget,
            index_budget: 8_000_000,
            compact_below: opts.compact_below,
            parallel: opts.threads.max(1),
        },
    );
    let mut rejects_file = tempfile::tempfile().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut rejects_out = std::io::BufWriter::new(&mut rejects_file);
    let mut counts: HashMap<String, UnitCounts> = HashMap::new();
    let mut spools: HashMap<String, spool::Spool> = HashMap::new();
    let mut entries: Vec<SourceEntry> = Vec::new();
    let mut done_files = 0usize;
    for (path, why) in unreadable {
        write_reject(
            &mut rejects_out,
            &Reject { source: path.clone(), reason: format!("unreadable: {why}"), raw: None },
        )?;
        summary.files_failed.push((path, why));
    }

    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Output { unit, out } => {
                for r in &out.rejects {
                    write_reject(&mut rejects_out, r)?;
                }
                if out.partial {
                    // `or_insert_with` cannot pass on the error of creating the spool's file.
                    let spool = match spools.entry(unit.clone()) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => e.insert(spool::Spool::new()?),
                    };
                    spool.push(out.parts)?;
                } else {
                    // The file was read to its end: its earlier pieces may now enter the lake, then its last.
                    let earlier = spools.remove(&unit).map(spool::Spool::replay).transpose()?;
                    let c = counts.entry(unit.clone()).or_default();
                    for part in earlier.into_iter().flatten().chain(out.parts.into_iter().map(Ok)) {
                        let (d, k) = writer.add(part?).await?;
                        c.duplicates += d;
                        c.conflicts += k;
                    }
                }
                let c = counts.entry(unit).or_default();
                c.events += out.events;
                c.rejects += out.rejects.len() as u64;
            }
            Msg::Done { mut entry, status, json_bytes, stored_bytes } => {
                // Pieces of a file that failed before its end are dropped with their spool: nothing of a failed
                // file enters the lake.
                spools.remove(&entry.source);
                let c = counts.remove(&entry.source).unwrap_or_default();
                summary.events_read += c.events;
                summary.duplicates += c.duplicates;
                summary.conflicts += c.conflicts;
                summary.rejects += c.rejects;
                summary.json_bytes += json_bytes;
                summary.stored_bytes += stored_bytes;
                entry.events = c.events;
                entry.duplicates = c.duplicates;
                entry.conflicts = c.conflicts;
                entry.rejects = c.rejects;
                let is_member = entry.source.contains('!');
                if !is_member && status != Status::Archive {
                    done_files += 1;
                }
                match status {
                    Status::Converted => {
                        summary.files_read += 1;
                        entries.push(entry);
                    }
                    Status::Skipped(why) => {
                        *summary.files_skipped.entry(why).or_default() += 1;
                        entries.push(entry);
                    }
                    Status::Archive => entries.push(entry),
                    Status::Unchanged => summary.files_unchanged += 1,
                    Status::Failed(why) => {
                        let reject = Reject {
                            source: entry.source.clone(),
                            reason: format!("unreadable file: {why}"),
                            raw: None,
                        };
                        write_reject(&mut rejects_out, &reject)?;
                        summary.files_failed.push((entry.source, why));
                    }
                }
                bar.set_message(format!("files {done_files}/{file_count}, events {}", group(summary.events_read)));
            }
        }
    }
    for w in workers {
        w.join().map_err(|_| Error::Other("a reader thread panicked".into()))?;
    }
    bar.finish_and_clear();

    let written = writer.finish().await?;
    summary.events_written = written.stats.rows_written;
    summary.bytes_out = written.stats.bytes_written;
    summary.files_written = written.stats.files_written;
    summary.files_compacted = written.stats.files_compacted;
    let mut added = written.added;

    rejects_out.flush().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    drop(rejects_out);
    let rejects_written = summary.rejects + summary.files_failed.len() as u64;
    if rejects_written > 0 {
        use std::io::Seek;
        rejects_file.seek(std::io::SeekFrom::Start(0)).map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let path = rejects_path(run);
        lake.put_file(&staging_path(run, &path), rejects_file).await?;
        summary.rejects_file = Some(format!("{}/{path}", lake.name.trim_end_matches('/')));
        added.push(path);
    }

    if !entries.is_empty() || !added.is_empty() || !written.removed.is_empty() {
        let commit = Commit {
            version: 1,
            run: run.to_string(),
            tool: format!("trailsql {}", env!("CARGO_PKG_VERSION")),
            started: start.at.clone(),
            finished: chrono::Utc::now().to_rfc3339(),
            sources: entries,
            added,
            removed: written.removed,
            totals: Totals {
                events: summary.events_written,
                duplicates: summary.duplicates,
                conflicts: summary.conflicts,
                rejects: rejects_written,
            },
        };
        failpoint("before-commit");
        guard.check(lake).await?;
        lake.write_commit(next_seq, &commit).await?;
        failpoint("after-commit");
        lake.apply(&commit).await?;
    }
    summary.elapsed = start.clock.elapsed();
    Ok(summary)
}

/// Crashes the process at a named point when `TRAILSQL_FAILPOINT` names it: how the tests prove that a run
/// killed there is recovered.
fn failpoint(name: &str) {
    if std::env::var("TRAILSQL_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("trailsql: failpoint {name}");
        std::process::abort();
    }
}

fn write_reject(out: &mut impl Write, r: &Reject) -> Result<()> {
    let line = serde_json::to_string(r).expect("a reject serialises");
    writeln!(out, "{line}").map_err(|e| Error::io(std::env::temp_dir(), e))
}
