//! A scheduler's state between `trailsql sigma --checkpoint` runs: the lake's partitions as the last run read
//! them and the rows it gave, so that each run reads only the partitions that changed and gives only new rows.
//!
//! CloudTrail delivers an event minutes to hours after it happened, and `convert` puts it in the partition of its
//! own day, so a window over event times misses what arrives after it closed. A partition's data files are
//! immutable and uniquely named (a conversion that adds events to a partition writes a new file, or a new merged
//! file in place of old ones), so the files a run has not seen hold every event it has not seen. A run's detections
//! read those files alone (not a partition of gigabytes for a delivery of a few events), its correlations the days
//! those can change, and it leaves out the rows an earlier run gave (a merged file holds them again).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use trailsql_lake::layout::{PartitionKey, day_date};
use trailsql_lake::storage::{Location, Storage};

use crate::error::{Error, Result};

/// The first field of a checkpoint file, naming its format.
const FORMAT: &str = "trailsql sigma checkpoint 2";

/// The format before, whose partitions are a hash of their files (read, and written again as [`FORMAT`]).
const FORMAT_HASHED: &str = "trailsql sigma checkpoint 1";

/// What the runs with one checkpoint file have read and given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    format: String,
    /// The first run's start (`--since`, RFC 3339), kept for every later run.
    since: Option<String>,
    /// A hash of the query the partitions below were read with: other rules, or another scope, read every
    /// partition again (the rows already given are still left out).
    rules: String,
    /// The key of the rows' hashes, random for each checkpoint. A row's identity holds strings an attacker chose
    /// (a correlation's group); without the key nobody can make a new row's hash equal one already given.
    key: String,
    /// Each partition read (`account/YYYY-MM-DD`): its data files then, by name, with their sizes.
    partitions: BTreeMap<String, Known>,
    /// The rows given, by where they are (a detection's partition, `account/YYYY-MM-DD`; a correlation's UTC day,
    /// `YYYY-MM-DD`), then by identity (a keyed hash of a detection's row, less its rule's title and level; of a
    /// correlation's rule, group and day): how many rows of it. Two events may share every value a row shows (an
    /// event ID given twice, with other content, is kept as a conflict): the second is given when it arrives. The
    /// rows of partitions and days the lake no longer holds are forgotten, so that FILE is as big as the rows of
    /// the lake it has given.
    given: BTreeMap<String, BTreeMap<String, u32>>,
    /// The name of the lake's newest commit record the last run saw: the next reads the records from it on, for the
    /// files that conversions merged since (see [`Commits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
    /// This run's partitions that conversions only added files to (none of their files went), by name: it reads
    /// their new files alone, and every row of those is new (two events may show the same values, and the other is
    /// in a file it does not read). Where a file went, its rows may be in a new merged file: the run reads the whole
    /// partition, and leaves out as many rows of each identity as were given.
    #[serde(skip)]
    added: BTreeSet<String>,
    /// The data files this run's commit records say were merged into others ([`Commits`]).
    #[serde(skip)]
    merged: BTreeSet<String>,
}

/// A partition's data files as a run saw them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Known {
    Files(Files),
    /// A hash of the files' names and sizes ([`FORMAT_HASHED`]): if they are the same now, none is new; if not,
    /// every one is read again.
    Hashed(String),
}

/// Where a checkpoint is kept: a local file, or an object in S3 (for a scheduler in a container without a disk
/// that lasts).
pub enum Place {
    Local(PathBuf),
    S3 { store: Arc<dyn ObjectStore>, key: ObjectPath, name: String },
}

impl Place {
    /// `s3://bucket/key` or a local path.
    pub async fn of(location: &str, storage: &Storage) -> Result<Place> {
        Ok(match Location::parse(location)? {
            Location::Local(path) => Place::Local(path),
            Location::S3 { bucket, prefix } if !prefix.is_empty() => Place::S3 {
                store: storage.bucket(&bucket).await?,
                key: ObjectPath::from(prefix),
                name: location.into(),
            },
            Location::S3 { .. } => {
                return Err(Error::Usage(format!("{location}: a checkpoint in S3 needs a key (s3://bucket/key)")));
            }
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Other(format!("{self}: {e}"))
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Local(path) => write!(f, "{}", path.display()),
            Place::S3 { name, .. } => write!(f, "{name}"),
        }
    }
}

/// What a checkpoint held, with the version of an S3 object as read.
pub enum Previous {
    /// No checkpoint yet: the first run.
    None,
    /// A time, as runs before checkpoints kept partitions wrote: the events before it were reported.
    Time(DateTime<Utc>, Option<UpdateVersion>),
    State(Box<Checkpoint>, Option<UpdateVersion>),
}

impl Checkpoint {
    /// A new checkpoint for runs from `since`.
    pub fn new(since: Option<DateTime<Utc>>) -> Result<Checkpoint> {
        let mut key = [0u8; 32];
        getrandom_02::getrandom(&mut key)
            .map_err(|e| Error::Usage(format!("no random key for the checkpoint: {e}")))?;
        Ok(Checkpoint {
            format: FORMAT.to_string(),
            since: since.map(|t| t.to_rfc3339()),
            rules: String::new(),
            key: hex(&key),
            partitions: BTreeMap::new(),
            given: BTreeMap::new(),
            commit: None,
            added: BTreeSet::new(),
            merged: BTreeSet::new(),
        })
    }

    pub fn since(&self) -> Option<DateTime<Utc>> {
        self.since.as_deref().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
    }

    /// Reads a checkpoint; a missing one is the first run's.
    pub async fn read(place: &Place) -> Result<Previous> {
        let (bytes, version) = match place {
            Place::Local(file) => match std::fs::read(file) {
                Ok(bytes) => (bytes, None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Previous::None),
                Err(e) => return Err(Error::io(file, e)),
            },
            Place::S3 { store, key, .. } => match store.get(key).await {
                Ok(got) => {
                    let version = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
                    (got.bytes().await.map_err(|e| place.error(e))?.to_vec(), Some(version))
                }
                Err(object_store::Error::NotFound { .. }) => return Ok(Previous::None),
                Err(e) => return Err(place.error(e)),
            },
        };
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
            return Ok(Previous::Time(t.with_timezone(&Utc), version));
        }
        match serde_json::from_str::<Checkpoint>(&text) {
            Ok(mut c)
                if (c.format == FORMAT || c.format == FORMAT_HASHED)
                    && c.since.is_none() == c.since().is_none()
                    && c.key.len() == 64
                    && c.key.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                c.format = FORMAT.to_string();
                Ok(Previous::State(Box::new(c), version))
            }
            _ => Err(Error::Usage(format!(
                "{place}: not a checkpoint (written by `trailsql sigma --checkpoint`): {:?}",
                text.chars().take(60).collect::<String>()
            ))),
        }
    }

    /// Records the state after a run that succeeded, so that a run killed at any moment leaves the old state or
    /// the new one, and what it read is read again rather than skipped: a local file is written beside itself and
    /// renamed over itself; an S3 object is put whole, only if it is still the version the run read (`version`;
    /// none: only if there is none yet), so that of two runs at once the second to finish fails.
    pub async fn write(&self, place: &Place, version: Option<UpdateVersion>) -> Result<()> {
        let mut text = serde_json::to_vec(self).map_err(|e| Error::Other(format!("{place}: {e}")))?;
        text.push(b'\n');
        match place {
            Place::Local(file) => {
                let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let mut temporary = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(file, e))?;
                temporary
                    .write_all(&text)
                    .and_then(|()| temporary.as_file().sync_all())
                    .map_err(|e| Error::io(file, e))?;
                // A temporary file that is not renamed is deleted when dropped.
                temporary.persist(file).map(drop).map_err(|e| Error::io(file, e.error))
            }
            Place::S3 { store, key, .. } => {
                let mode = version.map_or(PutMode::Create, PutMode::Update);
                let opts = PutOptions { mode, ..Default::default() };
                match store.put_opts(key, PutPayload::from(text), opts).await {
                    Ok(_) => Ok(()),
                    Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => {
                        Err(Error::Usage(format!(
                            "{place}: another run updated the checkpoint while this one ran; the rows of this run \
                             that it did not give come again with the next run"
                        )))
                    }
                    Err(e) => Err(place.error(e)),
                }
            }
        }
    }

    /// The data files a run reads, by partition, as the lake lists them from its root: those earlier runs have not
    /// read (a file of the same name and another size is another file); all of a partition's where a file they
    /// read went or was merged into another (its rows may be in a new merged file: see `added`); never a file that
    /// was merged ([`Checkpoint::commits`]). `None` when they read other rules, and every file is to be read. A
    /// partition with no new file has nothing new.
    pub fn new_files(&mut self, now: &Partitions, rules: &str) -> Option<BTreeMap<PartitionKey, Vec<String>>> {
        if self.rules != rules {
            return None;
        }
        self.added.clear();
        let mut read = BTreeMap::new();
        for (k, files) in now {
            let (name, dir) = (partition_name(k), k.dir());
            let merged = |file: &String| self.merged.contains(&format!("{dir}/{file}"));
            let kept: Vec<&String> = files.keys().filter(|f| !merged(f)).collect();
            let new: Vec<&String> = match self.partitions.get(&name) {
                Some(Known::Hashed(h)) if *h == fingerprint(k, files) => Vec::new(),
                Some(Known::Files(known)) => {
                    let new: Vec<&String> = kept.iter().copied().filter(|f| known.get(*f) != files.get(*f)).collect();
                    let went = known.iter().any(|(f, size)| files.get(f) != Some(size) || merged(f))
                        || files.keys().any(merged);
                    match (new.is_empty(), went) {
                        (true, _) => new,
                        (false, false) => {
                            self.added.insert(name);
                            new
                        }
                        (false, true) => kept,
                    }
                }
                _ => kept,
            };
            if !new.is_empty() {
                read.insert(k.clone(), new.into_iter().map(|f| format!("{dir}/{f}")).collect());
            }
        }
        Some(read)
    }

    /// Leaves out of a batch of the run's rows those an earlier run gave, counting in `seen` the run's rows by
    /// identity: the n-th row of an identity is new when earlier runs gave fewer than n.
    pub fn leave_out_given(&self, seen: &mut Seen, batch: RecordBatch) -> Result<RecordBatch> {
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(self.key.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
        }
        let columns = |names: &[&str]| -> Result<Vec<ArrayRef>> {
            (names.iter())
                .map(|n| {
                    let c =
                        batch.column_by_name(n).ok_or_else(|| Error::Other(format!("no column {n} in the rows")))?;
                    Ok(cast(c, &DataType::Utf8)?)
                })
                .collect()
        };
        let detection = columns(&DETECTION_IDENTITY)?;
        let correlation = columns(&["rule_id", "correlation_group"])?;
        let times = cast(
            batch.column_by_name("eventtime").ok_or_else(|| Error::Other("no column eventtime in the rows".into()))?,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )?;
        let times = times.as_primitive::<TimestampMicrosecondType>();
        let group = correlation[1].as_string::<i32>();
        let account = detection[2].as_string::<i32>();
        let mut keep = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let mut h = blake3::Hasher::new_keyed(&key);
            let day = (!times.is_null(i)).then(|| times.value(i).div_euclid(super::correlate::MICROS_PER_DAY));
            let date = day.and_then(|d| i32::try_from(d).ok()).map_or_else(|| "unknown".to_string(), day_date);
            let place = if group.is_null(i) {
                h.update(b"detection");
                detection.iter().for_each(|c| part(&mut h, c.as_string::<i32>(), i));
                format!("{}/{date}", if account.is_null(i) { "" } else { account.value(i) })
            } else {
                h.update(b"correlation");
                correlation.iter().for_each(|c| part(&mut h, c.as_string::<i32>(), i));
                h.update(&day.unwrap_or(i64::MIN).to_le_bytes());
                date
            };
            let id = hex(&h.finalize().as_bytes()[..16]);
            let given = match self.added.contains(&place) {
                true => 0,
                false => self.given.get(&place).and_then(|g| g.get(&id)).copied().unwrap_or(0),
            };
            let n = seen.entry(place).or_default().entry(id).or_default();
            *n += 1;
            keep.push(*n > given);
        }
        Ok(filter_record_batch(&batch, &BooleanArray::from(keep))?)
    }

    /// The state after a successful run: the partitions as read (those of the run's accounts, all when it names
    /// none), the rows it gave; the rows of partitions and days the lake no longer holds forgotten.
    pub fn after(mut self, rules: String, partitions: &Partitions, seen: Seen, accounts: &[String]) -> Self {
        let partitions: BTreeMap<String, Known> =
            partitions.iter().map(|(k, f)| (partition_name(k), Known::Files(f.clone()))).collect();
        for (place, ids) in seen {
            let added = self.added.contains(&place);
            let given = self.given.entry(place).or_default();
            for (id, n) in ids {
                let g = given.entry(id).or_default();
                *g = if added { g.saturating_add(n) } else { (*g).max(n) };
            }
        }
        let days: BTreeSet<&str> = partitions.keys().filter_map(|p| p.split_once('/')).map(|(_, d)| d).collect();
        self.given.retain(|place, _| match place.split_once('/') {
            // A partition of an account the run did not list, or of no date, is not known to be gone.
            Some((account, date)) => {
                partitions.contains_key(place)
                    || !(accounts.is_empty() || accounts.iter().any(|a| a == account))
                    || chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err()
            }
            // A day: gone when no partition of any account holds it (known only when the run listed them all).
            None => {
                !accounts.is_empty()
                    || days.contains(place.as_str())
                    || chrono::NaiveDate::parse_from_str(place, "%Y-%m-%d").is_err()
            }
        });
        self.rules = rules;
        self.partitions = partitions;
        self
    }
}

/// What the lake's commit records since the last run say: the newest record's name, and the data files that
/// conversions merged into others (compaction; named as the lake lists them). A conversion moves its merged file in
/// before it deletes what it merged, so a listing between the two shows both: those files are left out of the
/// partitions a run reads (their rows are in the new file), and their partitions read whole.
#[derive(Debug, Default)]
pub struct Commits {
    pub newest: Option<String>,
    pub merged: BTreeSet<String>,
}

impl Checkpoint {
    /// The name of the newest commit record the last run saw.
    pub fn commit(&self) -> Option<&str> {
        self.commit.as_deref()
    }

    /// What the lake's commit records since the last run say, for [`Checkpoint::new_files`]; the newest is kept for
    /// the next run.
    pub fn commits(&mut self, commits: Commits) {
        self.merged = commits.merged;
        self.commit = commits.newest.or(self.commit.take());
    }
}

/// Holds `FILE.lock` for the run, so that a run started while another with the same local checkpoint is still
/// going (a scheduler's run that outlasts its interval) stops at once instead of giving that run's rows again. The
/// lock is the operating system's (`flock`): it ends with its holder, however it ends. The file is left in place.
/// (In S3 the checkpoint is put only if it is still the version the run read: see [`Checkpoint::write`].)
pub fn lock(place: &Place) -> Result<Option<std::fs::File>> {
    let Place::Local(file) = place else { return Ok(None) };
    let mut name = file.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Usage(format!(
            "{}: another `trailsql sigma --checkpoint` run is using it (it holds {})",
            file.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// A partition's data files: name, size.
pub type Files = BTreeMap<String, u64>;

/// A lake's partitions, each with its data files.
pub type Partitions = BTreeMap<PartitionKey, Files>;

/// The rows a run has seen, by where they are, then by identity: how many of each.
pub type Seen = HashMap<String, HashMap<String, u32>>;

/// The name of a partition in a checkpoint.
pub fn partition_name(key: &PartitionKey) -> String {
    format!("{}/{}", key.account, key.date())
}

/// A hash of a partition's data files, names and sizes, as [`FORMAT_HASHED`] kept them: the lake's paths from its
/// root.
fn fingerprint(key: &PartitionKey, files: &Files) -> String {
    let mut h = blake3::Hasher::new();
    for (name, size) in files {
        let path = format!("{}/{name}", key.dir());
        h.update(&(path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update(&size.to_le_bytes());
    }
    hex(&h.finalize().as_bytes()[..16])
}

/// A hash of the query a run makes, for [`Checkpoint::rules`].
pub fn query_hash(sql: &str) -> String {
    hex(&blake3::hash(sql.as_bytes()).as_bytes()[..16])
}

/// The columns of a detection's row that say which match it is.
const DETECTION_IDENTITY: [&str; 9] = [
    "rule_id",
    "eventid",
    "account_id",
    "eventtime",
    "awsregion",
    "eventsource",
    "eventname",
    "principal",
    "sourceipaddress",
];

/// Adds a value of a row's identity to its hash: its length first (a null's is none of a string's), so that no
/// two lists of values hash the same bytes.
fn part(h: &mut blake3::Hasher, column: &datafusion::arrow::array::StringArray, i: usize) {
    if column.is_null(i) {
        h.update(&u64::MAX.to_le_bytes());
    } else {
        h.update(&(column.value(i).len() as u64).to_le_bytes());
        h.update(column.value(i).as_bytes());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    /// A row: rule, event ID, source IP, correlation group, time.
    type Row<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, i64);

    fn rows(rows: &[Row]) -> RecordBatch {
        let text =
            |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef { Arc::new(rows.iter().map(f).collect::<StringArray>()) };
        let mut columns: Vec<(&str, ArrayRef)> = vec![
            ("rule_id", text(&|r| Some(r.0.to_string()))),
            ("eventid", text(&|r| Some(r.1.to_string()))),
            ("sourceipaddress", text(&|r| Some(r.2.to_string()))),
            ("correlation_group", text(&|r| r.3.map(str::to_string))),
            ("eventtime", Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.4)))),
        ];
        for name in ["account_id", "awsregion", "eventsource", "eventname", "principal"] {
            columns.push((name, text(&|_| Some("x".to_string()))));
        }
        let schema =
            Schema::new(columns.iter().map(|(n, c)| Field::new(*n, c.data_type().clone(), true)).collect::<Vec<_>>());
        RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, c)| c).collect()).unwrap()
    }

    /// The partition of account `x` on a day since the epoch.
    fn x_on(day: i32) -> PartitionKey {
        PartitionKey { account: "x".into(), day }
    }

    /// The event IDs of the rows a run gives, and the checkpoint after it.
    fn given(c: &Checkpoint, batch: &[Row]) -> (Vec<String>, Checkpoint) {
        let mut seen = HashMap::new();
        let kept = c.leave_out_given(&mut seen, rows(batch)).unwrap();
        let ids = kept.column_by_name("eventid").unwrap().as_string::<i32>();
        let ids = ids.iter().map(|v| v.unwrap().to_string()).collect();
        let now = Partitions::from([(x_on(0), Files::new()), (x_on(1), Files::new())]);
        (ids, c.clone().after(String::new(), &now, seen, &[]))
    }

    /// In S3 a checkpoint is put only if it is still the version the run read: of two runs at once, the second
    /// to finish fails, and a first run fails if another created it meanwhile.
    #[tokio::test]
    async fn a_checkpoint_in_an_object_store_is_not_overwritten_by_a_run_that_read_an_older_one() {
        let place = Place::S3 {
            store: Arc::new(object_store::memory::InMemory::new()),
            key: "ck".into(),
            name: "s3://b/ck".into(),
        };
        assert!(matches!(Checkpoint::read(&place).await.unwrap(), Previous::None));
        let c = Checkpoint::new(None).unwrap();
        c.write(&place, None).await.unwrap();
        let Previous::State(read, version) = Checkpoint::read(&place).await.unwrap() else { panic!("a checkpoint") };
        assert!(c.write(&place, None).await.is_err(), "created by another run meanwhile");
        read.write(&place, version.clone()).await.unwrap();
        let e = read.write(&place, version).await.unwrap_err().to_string();
        assert!(e.contains("another run updated the checkpoint while this one ran"), "{e}");
    }

    /// A file is new when no earlier run saw it by that name and size. A partition that files were only added to
    /// is read by its new files, every row of which is new; one where a file went or was merged into another is
    /// read whole, less the files merged, and its rows are left out as many times as they were given. A partition
    /// whose files only went has nothing new. A checkpoint of the format before (a hash per partition) is read: a
    /// partition whose files hash the same has nothing new, another is read whole; the next write keeps the files.
    #[tokio::test]
    async fn the_files_earlier_runs_did_not_see_are_new() {
        let files = |f: &[(&str, u64)]| -> Files { f.iter().map(|(n, s)| (n.to_string(), *s)).collect() };
        let names = |new: Option<BTreeMap<PartitionKey, Vec<String>>>| -> Vec<(i32, Vec<String>)> {
            let new = new.expect("the same rules");
            new.into_iter()
                .map(|(k, f)| (k.day, f.iter().map(|p| p.rsplit('/').next().unwrap().into()).collect()))
                .collect()
        };
        let v = |names: &[&str]| -> Vec<String> { names.iter().map(|n| n.to_string()).collect() };
        let mut c = Checkpoint::new(None).unwrap();
        let seen = Partitions::from([(x_on(0), files(&[("a", 10), ("b", 5)])), (x_on(1), files(&[("c", 1)]))]);
        assert_eq!(names(c.new_files(&seen, "")), [(0, v(&["a", "b"])), (1, v(&["c"]))]);
        let mut c = c.after("q".into(), &seen, Seen::new(), &[]);
        assert!(c.new_files(&seen, "other rules").is_none());
        assert!(names(c.new_files(&seen, "q")).is_empty());
        let now = Partitions::from([
            (x_on(0), files(&[("a", 10), ("b", 5), ("d", 7)])),
            (x_on(1), files(&[("c", 2)])),
            (x_on(2), files(&[("e", 3)])),
        ]);
        let new = c.new_files(&now, "q");
        assert_eq!(new.as_ref().unwrap()[&x_on(0)], ["account_id=x/event_date=1970-01-01/d"], "named from the root");
        assert_eq!(names(new), [(0, v(&["d"])), (1, v(&["c"])), (2, v(&["e"]))]);
        assert_eq!(c.added, BTreeSet::from(["x/1970-01-01".to_string()]), "c changed: x1 is read whole");
        // The rows of a partition that files were only added to are all new, and add to those given.
        let e1 = ("r", "e1", "1.2.3.4", None, 0);
        let mut given_once = Seen::new();
        c.leave_out_given(&mut given_once, rows(&[e1])).unwrap();
        let mut c = c.after("q".into(), &seen, given_once, &[]);
        assert!(names(c.new_files(&now, "q")).len() == 3);
        let mut twice = Seen::new();
        assert_eq!(c.leave_out_given(&mut twice, rows(&[e1])).unwrap().num_rows(), 1, "another event, same values");
        let c2 = c.clone().after("q".into(), &now, twice, &[]);
        assert_eq!(c2.given["x/1970-01-01"].values().collect::<Vec<_>>(), [&2]);

        // A file went: the partition is read whole.
        let went = Partitions::from([(x_on(0), files(&[("a", 10), ("d", 7)]))]);
        assert_eq!(names(c.new_files(&went, "q")), [(0, v(&["a", "d"]))]);
        assert!(c.added.is_empty());
        // b was merged into f, whose conversion has not deleted it yet: whole, less b.
        c.commits(Commits { newest: Some("9".into()), merged: BTreeSet::from([format!("{}/b", x_on(0).dir())]) });
        let merging = Partitions::from([(x_on(0), files(&[("a", 10), ("b", 5), ("f", 9)]))]);
        assert_eq!(names(c.new_files(&merging, "q")), [(0, v(&["a", "f"]))]);
        assert_eq!(c.commit(), Some("9"));
        let gone = Partitions::from([(x_on(0), files(&[("a", 10)])), (x_on(1), files(&[("c", 1)]))]);
        c.commits(Commits::default());
        assert!(names(c.new_files(&gone, "q")).is_empty(), "b went: nothing is new");
        assert_eq!(c.commit(), Some("9"), "kept until a newer one");

        let dir = tempfile::tempdir().unwrap();
        let place = Place::Local(dir.path().join("ck"));
        let mut old = serde_json::to_value(&c).unwrap();
        old["format"] = FORMAT_HASHED.into();
        old["partitions"] = serde_json::json!({
            "x/1970-01-01": fingerprint(&x_on(0), &seen[&x_on(0)]),
            "x/1970-01-02": fingerprint(&x_on(1), &files(&[("c", 9)])),
        });
        std::fs::write(dir.path().join("ck"), old.to_string()).unwrap();
        let Previous::State(mut read, _) = Checkpoint::read(&place).await.unwrap() else { panic!("a checkpoint") };
        assert_eq!(names(read.new_files(&seen, "q")), [(1, vec!["c".into()])]);
        read.after("q".into(), &seen, Seen::new(), &[]).write(&place, None).await.unwrap();
        let Previous::State(mut read, _) = Checkpoint::read(&place).await.unwrap() else { panic!("a checkpoint") };
        assert_eq!(read.format, FORMAT);
        assert!(names(read.new_files(&seen, "q")).is_empty());
    }

    #[test]
    fn rows_given_once_are_left_out_and_each_identity_is_counted() {
        const DAY: i64 = 86_400_000_000;
        let c = Checkpoint::new(None).unwrap();
        let (ids, c) = given(&c, &[("r", "e1", "1.2.3.4", None, 0), ("r", "e2", "1.2.3.4", None, 0)]);
        assert_eq!(ids, ["e1", "e2"]);
        // The same rows again, a second event that shows the same values as e1, another rule's row of e1.
        let (ids, c) = given(
            &c,
            &[
                ("r", "e1", "1.2.3.4", None, 0),
                ("r", "e1", "1.2.3.4", None, 0),
                ("r", "e2", "1.2.3.4", None, 0),
                ("s", "e1", "1.2.3.4", None, 0),
            ],
        );
        assert_eq!(ids, ["e1", "e1"], "the second e1 and rule s's row");
        // A correlation's row is its rule, group and day, whatever event it is at.
        let (ids, c) = given(&c, &[("n", "e1", "", Some("ip=1"), 0)]);
        assert_eq!(ids, ["e1"]);
        let (ids, c) = given(&c, &[("n", "e9", "", Some("ip=1"), DAY - 1), ("n", "e8", "", Some("ip=1"), DAY)]);
        assert_eq!(ids, ["e8"], "the first day's row was given; the next day's is new");
        // Values are not run together: rule `nip=1` of group `` is not rule `n` of group `ip=1`.
        let (ids, c) = given(&c, &[("nip=1", "e7", "", Some(""), 0)]);
        assert_eq!(ids, ["e7"]);

        // The first day's partition leaves the lake (retention): its rows and its day's correlations are forgotten;
        // the second day's are kept. A run over other accounts forgets nothing of this one's.
        let day_two = Partitions::from([(x_on(1), Files::new())]);
        let other = c.clone().after(String::new(), &Partitions::new(), Seen::new(), &["y".to_string()]);
        assert_eq!(other.given.len(), c.given.len());
        let c = c.after(String::new(), &day_two, Seen::new(), &[]);
        assert_eq!(c.given.keys().collect::<Vec<_>>(), ["1970-01-02"], "{:?}", c.given);
        let mut seen = Seen::new();
        let back =
            [("r", "e1", "1.2.3.4", None, 0), ("n", "e8", "", Some("ip=1"), DAY), ("n", "e1", "", Some("ip=1"), 0)];
        let kept = c.leave_out_given(&mut seen, rows(&back)).unwrap();
        let ids: Vec<_> = kept.column_by_name("eventid").unwrap().as_string::<i32>().iter().flatten().collect();
        assert_eq!(ids, ["e1", "e1"]);
    }
}
