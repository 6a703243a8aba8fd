//! Finding the source objects of a convert and opening them: directories walked, gzip and zip unpacked, with limits
//! that stop decompression bombs.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};

use flate2::read::MultiGzDecoder;
use xxhash_rust::xxh3::Xxh3;

use super::record::{Converter, FileOutput};
use crate::error::{Error, Result};
use crate::layout::{Delivery, account_from_key};
use crate::manifest::{Manifest, SourceEntry};

/// Where a source object is.
#[derive(Debug, Clone)]
pub enum Origin {
    Local(PathBuf),
    S3 { store: Arc<dyn ObjectStore>, key: object_store::path::Path },
}

/// A source object to convert.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub origin: Origin,
    /// The manifest key: the absolute path, or `s3://bucket/key`.
    pub name: String,
    pub size: u64,
    pub mtime: Option<i64>,
    pub etag: Option<String>,
}

/// Something a source can be read and, for zip archives, seeked in.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

impl SourceFile {
    /// Opens the object, with the ETag the store gave on the fetch. An S3 object is fetched whole: CloudTrail
    /// objects are small, and a zip member needs to seek.
    pub fn open(&self, rt: &tokio::runtime::Handle) -> std::io::Result<(Box<dyn ReadSeek>, Option<String>)> {
        match &self.origin {
            Origin::Local(path) => Ok((Box::new(File::open(path)?), None)),
            Origin::S3 { store, key } => {
                let (bytes, etag) = rt
                    .block_on(async {
                        let got = store.get(key).await?;
                        let etag = got.meta.e_tag.clone();
                        Ok::<_, object_store::Error>((got.bytes().await?, etag))
                    })
                    .map_err(|e| std::io::Error::other(format!("cannot fetch from S3: {e}")))?;
                Ok((Box::new(std::io::Cursor::new(bytes)), etag))
            }
        }
    }

    /// Whether the manifest says this object is already converted, unchanged. In S3, the ETag decides when the
    /// listing gives one (AWS does; some S3-compatible stores do not), else the last-modified time.
    fn unchanged(&self, done: &SourceEntry) -> bool {
        if done.size != self.size {
            return false;
        }
        match (&self.origin, &self.etag, &done.etag) {
            (Origin::S3 { .. }, Some(now), Some(then)) => now == then,
            _ => self.mtime.is_some() && done.mtime == self.mtime,
        }
    }
}

/// Which parts of a CloudTrail layout to convert: accounts, Regions and a range of delivery dates (the folder
/// dates). Empty means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub from: Option<chrono::NaiveDate>,
    pub to: Option<chrono::NaiveDate>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self == &Filters::default()
    }

    pub fn account(&self, a: &str) -> bool {
        self.accounts.is_empty() || self.accounts.iter().any(|x| x == a)
    }

    pub fn region(&self, r: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|x| x == r)
    }

    pub fn date(&self, d: chrono::NaiveDate) -> bool {
        self.from.is_none_or(|f| d >= f) && self.to.is_none_or(|t| d <= t)
    }

    /// Whether an object key passes the filters; a key outside the delivery layout passes only when there are
    /// none.
    pub fn matches(&self, key: &str) -> bool {
        if self.is_empty() {
            return true;
        }
        Delivery::of(key)
            .and_then(|d| Some((d.account, d.region_date?)))
            .is_some_and(|(a, (r, d))| self.account(a) && self.region(r) && self.date(d))
    }
}

/// What walking the local sources found.
#[derive(Debug, Default)]
pub struct Walked {
    pub files: Vec<SourceFile>,
    /// Hidden files and directories passed over.
    pub hidden: u64,
    /// Entries that could not be read (a dangling symlink, a symlink loop, an unreadable directory), with why: they
    /// are reported like unreadable files, and the rest is converted.
    pub failed: Vec<(String, String)>,
}

/// The files under the given local paths, in path order. `skip` is a directory never read (the lake itself, when
/// it lies inside a source: its own files are not CloudTrail input).
pub fn walk(inputs: &[PathBuf], filters: &Filters, skip: Option<&Path>) -> Result<Walked> {
    let mut out = Walked::default();
    let skip = skip.and_then(|p| std::fs::canonicalize(p).ok());
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| Error::io(input, e))?;
        if meta.is_file() {
            out.files.push(source_file(input, &meta)?);
            continue;
        }
        let mut it = walkdir::WalkDir::new(input).follow_links(true).sort_by_file_name().into_iter();
        while let Some(entry) = it.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let path = e.path().unwrap_or(input).display().to_string();
                    let why = match (e.loop_ancestor(), e.io_error()) {
                        (Some(a), _) => format!("a symlink loop back to {}", a.display()),
                        (None, Some(io)) => io.to_string(),
                        (None, None) => e.to_string(),
                    };
                    out.failed.push((path, why));
                    continue;
                }
            };
            let is_hidden = entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.');
            if is_hidden {
                if entry.file_type().is_dir() {
                    it.skip_current_dir();
                }
                out.hidden += 1;
                continue;
            }
            if entry.file_type().is_dir() {
                if skip.is_some() && std::fs::canonicalize(entry.path()).ok() == skip {
                    it.skip_current_dir();
                }
                continue;
            }
            if entry.file_type().is_file() && filters.matches(&entry.path().to_string_lossy()) {
                match entry
                    .metadata()
                    .map_err(|e| Error::io(entry.path(), e.into()))
                    .and_then(|m| source_file(entry.path(), &m))
                {
                    Ok(f) => out.files.push(f),
                    Err(e) => out.failed.push((entry.path().display().to_string(), e.to_string())),
                }
            }
        }
    }
    out.files.sort_by(|a, b| a.name.cmp(&b.name));
    out.files.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

fn source_file(path: &Path, meta: &std::fs::Metadata) -> Result<SourceFile> {
    let abs = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok());
    Ok(SourceFile {
        name: abs.to_string_lossy().into_owned(),
        origin: Origin::Local(abs),
        size: meta.len(),
        mtime,
        etag: None,
    })
}

/// Limits on what one source may make us read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Decompressed bytes of one source object.
    pub max_file_bytes: u64,
    /// Decompressed/compressed ratio above which a gzip stream is taken for a bomb (checked past 64 MiB).
    pub max_ratio: u64,
}

/// How one source object ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Converted,
    /// Holds no events (a digest, an empty or non-JSON file): recorded in the manifest so it is not read again.
    Skipped(String),
    /// Already in the manifest, unchanged.
    Unchanged,
    Failed(String),
    /// A zip archive all of whose members are in: recorded so that an unchanged archive is not opened again.
    Archive,
}

/// What a worker reports.
#[derive(Debug)]
pub enum Msg {
    /// Rows and rejects of the source object `unit` (possibly one piece of several).
    Output { unit: String, out: FileOutput },
    /// The source object `unit` is done.
    Done { entry: SourceEntry, status: Status, json_bytes: u64, stored_bytes: u64 },
}

impl Msg {
    /// A source object that could not be read: nothing of it was converted.
    fn failed(entry: SourceEntry, why: String) -> Msg {
        Msg::Done { entry, status: Status::Failed(why), json_bytes: 0, stored_bytes: 0 }
    }
}

/// Counts the bytes read through it, and hashes them.
struct Counting<'a, R> {
    inner: R,
    count: &'a Cell<u64>,
    hash: Option<&'a mut Xxh3>,
    progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        if let Some(h) = self.hash.as_deref_mut() {
            h.update(&buf[..n]);
        }
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// Stops a decompressed stream that grows beyond the limits.
struct Limited<'a, R> {
    inner: R,
    out: u64,
    compressed: Option<&'a Cell<u64>>,
    limits: Limits,
    /// For a zip member: the archive's budget, shared by all its members.
    archive: Option<&'a ZipBudget>,
}

/// What the members of one zip archive may inflate to: the limits hold for the archive as a whole, not only for
/// each member (eight members of 1 GiB each are one 8 GiB bomb).
struct ZipBudget {
    /// Bytes inflated so far, all members together.
    out: Cell<u64>,
    /// The archive's own size.
    size: u64,
    /// The compressed size of the member being read.
    member_compressed: Cell<u64>,
}

/// Past this much output, a compression ratio above the limit is taken for a bomb.
const RATIO_AFTER: u64 = 64 << 20;

fn over_ratio(out: u64, compressed: u64, limits: Limits) -> Option<std::io::Error> {
    let ratio = out / compressed.max(1);
    (out > RATIO_AFTER && ratio > limits.max_ratio).then(|| {
        std::io::Error::other(format!(
            "compression ratio above {ratio}:1 after {} MiB: not CloudTrail JSON, likely a decompression bomb",
            out >> 20
        ))
    })
}

impl<R: Read> Read for Limited<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let gzip = self.compressed.is_some();
        let n = self
            .inner
            .read(buf)
            .map_err(|e| if gzip { std::io::Error::new(e.kind(), format!("gzip: {e}")) } else { e })?;
        self.out += n as u64;
        if self.out > self.limits.max_file_bytes {
            return Err(std::io::Error::other(format!(
                "decompressed size passed the limit of {} bytes (--max-file-size); a decompression bomb?",
                self.limits.max_file_bytes
            )));
        }
        if let Some(c) = self.compressed
            && let Some(e) = over_ratio(self.out, c.get(), self.limits)
        {
            return Err(e);
        }
        if let Some(zip) = self.archive {
            let total = zip.out.get() + n as u64;
            zip.out.set(total);
            if total > self.limits.max_file_bytes {
                return Err(std::io::Error::other(format!(
                    "the zip's members inflate past the limit of {} bytes (--max-file-size); a decompression bomb?",
                    self.limits.max_file_bytes
                )));
            }
            if let Some(e) = over_ratio(self.out, zip.member_compressed.get(), self.limits)
                .or_else(|| over_ratio(total, zip.size, self.limits))
            {
                return Err(e);
            }
        }
        Ok(n)
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZIP_MAGIC: [u8; 4] = *b"PK\x03\x04";
const ZIP_EMPTY_MAGIC: [u8; 4] = *b"PK\x05\x06";

/// The byte-order mark of a UTF-16 stream, if it starts with one.
fn utf16_bom<R: BufRead>(r: &mut R) -> Option<&'static str> {
    match r.fill_buf().ok()? {
        [0xFF, 0xFE, ..] => Some("FF FE"),
        [0xFE, 0xFF, ..] => Some("FE FF"),
        _ => None,
    }
}

/// What a stream starts with, after whitespace and a byte-order mark.
fn sniff_json<R: BufRead>(r: &mut R) -> std::io::Result<Option<u8>> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        let skip = buf
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0xEF | 0xBB | 0xBF))
            .unwrap_or(buf.len());
        if skip < buf.len() {
            return Ok(Some(buf[skip]));
        }
        let n = buf.len();
        r.consume(n);
    }
}

/// One stream to convert (a file, or a zip member) and what its limits are counted against.
struct Object<'a> {
    /// The manifest name of the file or member.
    unit: &'a str,
    /// The account in its object key, for events without a recipientAccountId.
    key_account: Option<&'a str>,
    gzip: bool,
    /// Stored (compressed) bytes read so far, for the ratio limit.
    stored: &'a Cell<u64>,
    /// For a zip member, the archive's budget.
    archive: Option<&'a ZipBudget>,
}

/// What a worker reads source objects with: shared by every object it takes.
pub struct Reader<'a> {
    pub conv: &'a Converter,
    pub manifest: &'a Manifest,
    pub limits: Limits,
    /// Fetches S3 objects from the worker thread.
    pub rt: &'a tokio::runtime::Handle,
    /// Called with the stored bytes as they are read.
    pub progress: &'a dyn Fn(u64),
}

impl Reader<'_> {
    /// Converts one source object (each member, for a zip), reporting through `send`.
    pub fn process_file(&self, file: &SourceFile, send: &mut dyn FnMut(Msg)) {
        let Reader { manifest, rt, progress, .. } = *self;
        let entry = SourceEntry {
            mtime: file.mtime,
            etag: file.etag.clone(),
            ..SourceEntry::new(file.name.clone(), file.size)
        };
        if manifest.get(&file.name).is_some_and(|done| file.unchanged(done)) {
            progress(file.size);
            send(Msg::Done { entry, status: Status::Unchanged, json_bytes: 0, stored_bytes: 0 });
            return;
        }
        let (mut f, fetched_etag) = match file.open(rt) {
            Ok(opened) => opened,
            Err(e) => {
                progress(file.size);
                return send(Msg::failed(entry, format!("cannot open: {e}")));
            }
        };
        let entry = SourceEntry { etag: entry.etag.or(fetched_etag), ..entry };
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut f, &mut magic);
        if let Err(e) = f.seek(SeekFrom::Start(0)) {
            return send(Msg::failed(entry, format!("cannot read: {e}")));
        }
        if got == 4 && (magic == ZIP_MAGIC || magic == ZIP_EMPTY_MAGIC) {
            return self.process_zip(file, f, entry, send);
        }
        let stored = Cell::new(0u64);
        let mut hasher = Xxh3::new();
        let counting = Counting { inner: f, count: &stored, hash: Some(&mut hasher), progress };
        let key_account = account_from_key(&file.name);
        let gzip = got >= 2 && magic[..2] == GZIP_MAGIC;
        let object = Object { unit: &file.name, key_account, gzip, stored: &stored, archive: None };
        let (status, json_bytes) = self.convert_object(counting, object, send);
        let mut entry = entry;
        entry.hash = Some(format!("{:016x}", hasher.digest()));
        if let Status::Skipped(why) = &status {
            entry.skipped = Some(why.clone());
        }
        if file.size > stored.get() {
            progress(file.size - stored.get());
        }
        send(Msg::Done { entry, status, json_bytes, stored_bytes: stored.get() });
    }

    /// Converts one stream (a file, or a zip member): gunzipped when it is gzip, read when it is JSON, skipped when
    /// it is neither. Returns the status and the JSON bytes read.
    fn convert_object<R: Read>(&self, raw: R, object: Object<'_>, send: &mut dyn FnMut(Msg)) -> (Status, u64) {
        let Object { unit, key_account, gzip, stored, archive } = object;
        let limits = self.limits;
        let limited: Box<dyn Read + '_> = if gzip {
            Box::new(Limited {
                inner: MultiGzDecoder::new(BufReader::with_capacity(1 << 16, raw)),
                out: 0,
                compressed: Some(stored),
                limits,
                archive,
            })
        } else {
            Box::new(Limited { inner: raw, out: 0, compressed: None, limits, archive })
        };
        let json_count = Cell::new(0u64);
        let counted = Counting { inner: limited, count: &json_count, hash: None, progress: &|_| {} };
        let mut reader = BufReader::with_capacity(1 << 16, counted);
        if let Some(bom) = utf16_bom(&mut reader) {
            // Without this, the NUL bytes between the characters make it look like "not JSON", skipped quietly.
            let why = format!(
                "UTF-16 text (byte-order mark {bom}): CloudTrail JSON is UTF-8; convert it first, e.g. with iconv -f UTF-16 -t UTF-8"
            );
            return (Status::Failed(why), json_count.get());
        }
        match sniff_json(&mut reader) {
            Err(e) => return (Status::Failed(e.to_string()), json_count.get()),
            Ok(None) => return (Status::Skipped("empty".into()), json_count.get()),
            Ok(Some(b'{' | b'[')) => {}
            Ok(Some(_)) => return (Status::Skipped("not JSON".into()), json_count.get()),
        }
        let mut digest = false;
        let mut any = false;
        let result = self.conv.convert_stream(&mut reader, unit, key_account, &mut |out: FileOutput| {
            digest |= out.digest;
            any |= out.events > 0 || !out.rejects.is_empty();
            send(Msg::Output { unit: unit.to_string(), out });
        });
        let json_bytes = json_count.get();
        match result {
            Err(failure) => (Status::Failed(failure.reason), json_bytes),
            Ok(()) if digest && !any => (Status::Skipped("CloudTrail digest".into()), json_bytes),
            Ok(()) => (Status::Converted, json_bytes),
        }
    }

    fn process_zip(&self, file: &SourceFile, reader: Box<dyn ReadSeek>, entry: SourceEntry, send: &mut dyn FnMut(Msg)) {
        let progress = self.progress;
        let mut archive = match open_zip(reader) {
            Ok(a) => a,
            Err(why) => {
                progress(file.size);
                return send(Msg::failed(entry, why));
            }
        };
        let budget = ZipBudget { out: Cell::new(0), size: file.size, member_compressed: Cell::new(0) };
        let mut all_ok = true;
        for i in 0..archive.len() {
            all_ok &= self.process_member(file, &mut archive, i, &entry, &budget, send);
        }
        progress(file.size);
        // The archive itself is recorded only when every member is in, so that an archive with a broken member is
        // opened again on the next run (its good members are then found unchanged).
        if all_ok {
            let entry = SourceEntry { skipped: Some("zip archive".into()), ..entry };
            send(Msg::Done { entry, status: Status::Archive, json_bytes: 0, stored_bytes: 0 });
        }
    }

    /// One member of an archive, converted unless the manifest has it unchanged; false when it failed.
    fn process_member(
        &self,
        file: &SourceFile,
        archive: &mut Zip,
        i: usize,
        entry: &SourceEntry,
        budget: &ZipBudget,
        send: &mut dyn FnMut(Msg),
    ) -> bool {
        let mut member = match archive.by_index(i) {
            Ok(m) => m,
            Err(e) => {
                let mut m = entry.clone();
                m.source = format!("{}!#{i}", file.name);
                send(Msg::failed(m, format!("zip member {i}: {e}")));
                return false;
            }
        };
        if member.is_dir() {
            return true;
        }
        let name = member.name().to_string();
        let unit = format!("{}!{name}", file.name);
        let mut m_entry = SourceEntry {
            hash: Some(format!("crc32:{:08x}", member.crc32())),
            ..SourceEntry::new(unit.clone(), member.size())
        };
        if self.manifest.get(&unit).is_some_and(|d| d.size == m_entry.size && d.hash == m_entry.hash) {
            send(Msg::Done { entry: m_entry, status: Status::Unchanged, json_bytes: 0, stored_bytes: 0 });
            return true;
        }
        budget.member_compressed.set(member.compressed_size());
        let mut buffered = BufReader::new(&mut member);
        let gzip = buffered.fill_buf().map(|b| b.starts_with(&GZIP_MAGIC)).unwrap_or(false);
        let stored = Cell::new(0u64);
        let counting = Counting { inner: buffered, count: &stored, hash: None, progress: &|_| {} };
        let key_account = account_from_key(&name).or_else(|| account_from_key(&file.name));
        let (status, json_bytes) = self.convert_object(
            counting,
            Object { unit: &unit, key_account, gzip, stored: &stored, archive: Some(budget) },
            send,
        );
        if let Status::Skipped(why) = &status {
            m_entry.skipped = Some(why.clone());
        }
        let ok = !matches!(status, Status::Failed(_));
        send(Msg::Done { entry: m_entry, status, json_bytes, stored_bytes: stored.get() });
        ok
    }
}

type Zip = zip::ZipArchive<BufReader<Box<dyn ReadSeek>>>;

/// Opens an archive, refusing one whose members share a name: the zip crate keeps one entry per name, so the
/// others would be lost behind the one read.
fn open_zip(reader: Box<dyn ReadSeek>) -> Result<Zip, String> {
    let archive = zip::ZipArchive::new(BufReader::new(reader)).map_err(|e| format!("not a readable zip: {e}"))?;
    let (start, names) = (archive.central_directory_start() + archive.offset(), archive.len());
    let mut reader = archive.into_inner();
    match has_duplicate_members(&mut reader, start, names) {
        Ok(false) => {}
        Ok(true) => {
            return Err("members of the zip share a name: the others would be lost behind the one read, so none is \
                        read"
                .into());
        }
        Err(e) => return Err(format!("cannot read the zip's directory: {e}")),
    }
    reader
        .seek(SeekFrom::Start(0))
        .map_err(zip::result::ZipError::from)
        .and_then(|_| zip::ZipArchive::new(reader))
        .map_err(|e| format!("not a readable zip: {e}"))
}

/// Whether members share a name: the central directory at `start` lists more entries than the archive has names.
fn has_duplicate_members<R: Read + Seek>(reader: &mut R, start: u64, names: usize) -> std::io::Result<bool> {
    const HEADER: [u8; 4] = *b"PK\x01\x02";
    reader.seek(SeekFrom::Start(start))?;
    let mut listed = 0usize;
    let mut fixed = [0u8; 46];
    while listed <= names {
        if read_up_to(reader, &mut fixed) < 46 || fixed[..4] != HEADER {
            break;
        }
        let len = |at: usize| i64::from(u16::from_le_bytes([fixed[at], fixed[at + 1]]));
        reader.seek(SeekFrom::Current(len(28) + len(30) + len(32)))?;
        listed += 1;
    }
    Ok(listed > names)
}

fn read_up_to<R: Read + ?Sized>(f: &mut R, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}
