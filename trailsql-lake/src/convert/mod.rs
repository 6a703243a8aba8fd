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

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout::{rejects_path, staging_path};
use crate::manifest::{Commit, Counts, Manifest, SourceEntry};
use crate::storage::{Location, Storage};
use crate::store::Lake;
use record::{Converter, FileOutput, Reject};
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
    /// Bytes of rows the run holds at once: half for the readers' pieces, half for the rows buffered and being
    /// encoded; compaction, at the end, all of it.
    pub memory_limit: usize,
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
            memory_limit: 512 << 20,
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
    /// Events read from the sources, and what became of them.
    pub counts: Counts,
    pub events_written: u64,
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
        line("events read", group(self.counts.events));
        line("events written", group(self.events_written));
        line("duplicates dropped", group(self.counts.duplicates));
        line("id conflicts kept", group(self.counts.conflicts));
        line(
            "rejected",
            match &self.rejects_file {
                Some(f) if self.counts.rejects > 0 => format!("{} (in {f})", group(self.counts.rejects)),
                _ => group(self.counts.rejects),
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
                group((self.counts.events as f64 / secs) as u64),
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

/// A run, once it holds the lock: finish or discard interrupted runs, read every source into the writer, then
/// commit what was written.
async fn convert_locked(
    lake: &Lake,
    opts: &ConvertOptions,
    found: source::Walked,
    start: &RunStart,
    guard: &crate::lock::LockGuard,
) -> Result<Summary> {
    let commits = lake.commits().await?;
    let recovered = lake.recover(&commits).await?;
    let manifest = Arc::new(Lake::manifest(&commits));
    let next_seq = commits.last().map_or(1, |(s, _)| s + 1);

    let source::Walked { files, hidden, failed: unreadable } = found;
    let bar = progress_bar(opts.progress, files.iter().map(|f| f.size).sum());
    let mut gather = Gather::new(lake, opts, &start.id, files.len(), bar.clone())?;
    gather.summary.recovered = recovered;
    if hidden > 0 {
        gather.summary.files_skipped.insert("hidden".into(), hidden);
    }
    for (path, why) in unreadable {
        gather.failed(path, format!("unreadable: {why}"), why)?;
    }
    let (mut rx, readers) = start_readers(files, opts, manifest, &bar);
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Output { unit, out } => gather.output(unit, out).await?,
            Msg::Done { entry, status, json_bytes, stored_bytes } => {
                gather.done(entry, status, json_bytes, stored_bytes)?
            }
        }
    }
    for r in readers {
        r.join().map_err(|_| Error::Other("a reader thread panicked".into()))?;
    }
    bar.finish_and_clear();

    let (mut summary, commit, digest) = gather.finish(lake, start).await?;
    if let Some(commit) = commit {
        failpoint("before-commit");
        guard.check(lake).await?;
        // Before the commit record: a committed file's values are in the digest before any reader can see it.
        lake.update_digest(&digest).await?;
        lake.write_commit(next_seq, &commit).await?;
        failpoint("after-commit");
        lake.apply(&commit).await?;
    }
    summary.elapsed = start.clock.elapsed();
    Ok(summary)
}

fn progress_bar(enabled: bool, total_bytes: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Reader threads: each reads, decompresses and parses one file at a time and sends what it found.
fn start_readers(
    files: Vec<source::SourceFile>,
    opts: &ConvertOptions,
    manifest: Arc<Manifest>,
    bar: &ProgressBar,
) -> (tokio::sync::mpsc::Receiver<Msg>, Vec<std::thread::JoinHandle<()>>) {
    let threads = opts.threads.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(threads);
    let queue = Arc::new(std::sync::Mutex::new(files.into_iter()));
    let mut conv = Converter::new(opts.max_record);
    // The readers' rows count against the memory limit too: half of it, for the pieces being built and those
    // waiting in the channel (one per reader).
    conv.chunk_bytes = opts.piece_bytes.min(opts.memory_limit / (4 * threads)).max(64 << 10);
    let conv = Arc::new(conv);
    let rt = tokio::runtime::Handle::current();
    let readers = (0..threads)
        .map(|_| {
            let (tx, queue, conv, manifest, bar, rt) =
                (tx.clone(), queue.clone(), conv.clone(), manifest.clone(), bar.clone(), rt.clone());
            let limits = opts.limits;
            std::thread::spawn(move || {
                loop {
                    let next = queue.lock().expect("queue lock").next();
                    let Some(file) = next else { break };
                    let progress = |n: u64| bar.inc(n);
                    let mut send = |m: Msg| {
                        // The receiver only goes away when the run has failed; then there is nothing left to do.
                        let _ = tx.blocking_send(m);
                    };
                    let reader =
                        source::Reader { conv: &conv, manifest: &manifest, limits, rt: &rt, progress: &progress };
                    reader.process_file(&file, &mut send);
                }
            })
        })
        .collect();
    (rx, readers)
}

/// What the run gathers from its readers: rows into the writer, rejects into their file, counts into the summary
/// and the manifest's entries.
struct Gather {
    writer: Writer,
    rejects: RejectsFile,
    /// Counts of the source objects still being read.
    open: HashMap<String, Counts>,
    /// Earlier pieces of large files, held back until the file is read to its end.
    spools: HashMap<String, spool::Spool>,
    entries: Vec<SourceEntry>,
    summary: Summary,
    bar: ProgressBar,
    files: usize,
    files_done: usize,
}

impl Gather {
    fn new(lake: &Lake, opts: &ConvertOptions, run: &str, files: usize, bar: ProgressBar) -> Result<Gather> {
        let writer = Writer::new(
            lake.clone(),
            WriterConfig {
                run: run.to_string(),
                memory_limit: opts.memory_limit,
                index_budget: 8_000_000,
                compact_below: opts.compact_below,
                parallel: opts.threads.max(1),
            },
        );
        Ok(Gather {
            writer,
            rejects: RejectsFile::new()?,
            open: HashMap::new(),
            spools: HashMap::new(),
            entries: Vec::new(),
            summary: Summary::default(),
            bar,
            files,
            files_done: 0,
        })
    }

    /// Rows and rejects of a source object, or of one piece of a large one.
    async fn output(&mut self, unit: String, out: FileOutput) -> Result<()> {
        for r in &out.rejects {
            self.rejects.write(r)?;
        }
        if out.partial {
            // `or_insert_with` cannot pass on the error of creating the spool's file.
            let spool = match self.spools.entry(unit.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(spool::Spool::new()?),
            };
            spool.push(out.parts)?;
        } else {
            // The file was read to its end: its earlier pieces may now enter the lake, then its last.
            let earlier = self.spools.remove(&unit).map(spool::Spool::replay).transpose()?;
            let c = self.open.entry(unit.clone()).or_default();
            for part in earlier.into_iter().flatten().chain(out.parts.into_iter().map(Ok)) {
                let (d, k) = self.writer.add(part?).await?;
                c.duplicates += d;
                c.conflicts += k;
            }
        }
        *self.open.entry(unit).or_default() +=
            Counts { events: out.events, rejects: out.rejects.len() as u64, ..Counts::default() };
        Ok(())
    }

    /// A source object is done: its counts go into its manifest entry and the summary.
    fn done(&mut self, mut entry: SourceEntry, status: Status, json_bytes: u64, stored_bytes: u64) -> Result<()> {
        // Pieces of a file that failed before its end are dropped with their spool: nothing of a failed file enters
        // the lake.
        self.spools.remove(&entry.source);
        entry.counts = self.open.remove(&entry.source).unwrap_or_default();
        let summary = &mut self.summary;
        summary.counts += entry.counts;
        summary.json_bytes += json_bytes;
        summary.stored_bytes += stored_bytes;
        let is_member = entry.source.contains('!');
        if !is_member && status != Status::Archive {
            self.files_done += 1;
        }
        match status {
            Status::Converted => {
                summary.files_read += 1;
                self.entries.push(entry);
            }
            Status::Skipped(why) => {
                *summary.files_skipped.entry(why).or_default() += 1;
                self.entries.push(entry);
            }
            Status::Archive => self.entries.push(entry),
            Status::Unchanged => summary.files_unchanged += 1,
            Status::Failed(why) => self.failed(entry.source, format!("unreadable file: {why}"), why)?,
        }
        let events = group(self.summary.counts.events);
        self.bar.set_message(format!("files {}/{}, events {events}", self.files_done, self.files));
        Ok(())
    }

    /// A file of which nothing was converted: a reject line, and a failure in the summary.
    fn failed(&mut self, source: String, reason: String, why: String) -> Result<()> {
        self.rejects.write(&Reject { source: source.clone(), reason, raw: None })?;
        self.summary.files_failed.push((source, why));
        Ok(())
    }

    /// Writes what is buffered and compacts, stages the rejects, and returns the summary and the commit record
    /// (none when the run changed nothing).
    async fn finish(self, lake: &Lake, start: &RunStart) -> Result<(Summary, Option<Commit>, Digest)> {
        let Gather { writer, rejects, entries, mut summary, .. } = self;
        let written = writer.finish().await?;
        summary.events_written = written.stats.rows_written;
        summary.bytes_out = written.stats.bytes_written;
        summary.files_written = written.stats.files_written;
        summary.files_compacted = written.stats.files_compacted;
        let mut added = written.added;
        let rejects_written = rejects.lines;
        if let Some(path) = rejects.stage(lake, &start.id).await? {
            summary.rejects_file = Some(format!("{}/{path}", lake.name.trim_end_matches('/')));
            added.push(path);
        }
        if entries.is_empty() && added.is_empty() && written.removed.is_empty() {
            return Ok((summary, None, written.digest));
        }
        let commit = Commit {
            version: 1,
            run: start.id.clone(),
            tool: format!("trailsql {}", env!("CARGO_PKG_VERSION")),
            started: start.at.clone(),
            finished: chrono::Utc::now().to_rfc3339(),
            sources: entries,
            added,
            removed: written.removed,
            totals: Counts { events: summary.events_written, rejects: rejects_written, ..summary.counts },
        };
        Ok((summary, Some(commit), written.digest))
    }
}

/// The run's rejects, one JSON line each, in a temporary file until they are staged with the commit.
struct RejectsFile {
    out: std::io::BufWriter<std::fs::File>,
    lines: u64,
}

impl RejectsFile {
    fn new() -> Result<RejectsFile> {
        let file = tempfile::tempfile().map_err(tmp_err)?;
        Ok(RejectsFile { out: std::io::BufWriter::new(file), lines: 0 })
    }

    fn write(&mut self, r: &Reject) -> Result<()> {
        let line = serde_json::to_string(r).expect("a reject serialises");
        writeln!(self.out, "{line}").map_err(tmp_err)?;
        self.lines += 1;
        Ok(())
    }

    /// Stages the file when it holds anything; returns its path in the lake.
    async fn stage(self, lake: &Lake, run: &str) -> Result<Option<String>> {
        use std::io::Seek;
        if self.lines == 0 {
            return Ok(None);
        }
        let mut file = self.out.into_inner().map_err(|e| tmp_err(e.into_error()))?;
        file.seek(std::io::SeekFrom::Start(0)).map_err(tmp_err)?;
        let path = rejects_path(run);
        lake.put_file(&staging_path(run, &path), file).await?;
        Ok(Some(path))
    }
}

fn tmp_err(e: std::io::Error) -> Error {
    Error::io(std::env::temp_dir(), e)
}

/// Crashes the process at a named point when `TRAILSQL_FAILPOINT` names it: how the tests prove that a run
/// killed there is recovered. Debug builds only: a release build never aborts on an environment variable.
fn failpoint(name: &str) {
    if cfg!(debug_assertions) && std::env::var("TRAILSQL_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("trailsql: failpoint {name}");
        std::process::abort();
    }
}
