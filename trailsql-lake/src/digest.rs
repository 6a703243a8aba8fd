//! The lake's digest (`_digest.json`): for each partition, the distinct values of the few columns that hunting
//! queries select on, so that a query skips the partitions that cannot hold a match without opening their files.
//!
//! An organization's lake holds a file per account and day, and opening a file (footer, schema, pruning set-up)
//! costs about as much as reading a small one; `privileged_sessions` looks for `AssumeRoot` calls and Root events,
//! which a few partitions in a hundred hold. The digest answers "which partitions may hold `eventname =
//! 'AssumeRoot'`" from one small file.
//!
//! It is only ever a superset, which is what makes skipping safe:
//! - a run writes the digest before its commit record, so every committed file's values are in it before the file
//!   is visible (a run killed after the digest and before its commit leaves values of rows that never arrived:
//!   harmless);
//! - compaction only moves rows, and values are never removed;
//! - a partition that held files before the digest existed (lakes converted by an earlier trailsql) is recorded as
//!   unknown when a run next writes to it, and a partition that is absent is never skipped;
//! - a column of more than [`MAX_VALUES`] distinct values, or with a value longer than [`MAX_LEN`] bytes, is unknown
//!   for that partition (an attacker chooses some of these strings; the digest stays small whatever they are).
//!
//! A reader that reads the digest and then lists the lake sees every file committed before the digest was read with
//! its values in it; a file committed in between may be skipped, as if the partition had been listed a moment
//! earlier: the same view of a concurrent commit that a listing gives.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::{Array, AsArray, RecordBatch, StructArray};
use arrow::datatypes::DataType;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{DIGEST_PATH, PartitionKey};
use crate::store::Lake;

/// The columns the digest records, as dotted paths.
pub const COLUMNS: [&str; 4] = ["eventsource", "eventname", "errorcode", "useridentity.type"];

/// Distinct values of a column in one partition beyond which the column is unknown there.
pub const MAX_VALUES: usize = 4096;

/// A value longer than this makes its column unknown in its partition.
pub const MAX_LEN: usize = 256;

/// 2: partitions named by their directory (`account_id=…/event_date=…`).
const VERSION: u32 = 2;

/// Per column, the IDs (into [`Digest::values`]) of the values a partition holds, sorted; `None` when unknown.
pub type PartValues = Vec<Option<Vec<u32>>>;

/// The digest of a lake, or of what one run wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Digest {
    version: u32,
    columns: Vec<String>,
    /// Per column, every value seen in the lake; a partition refers to them by position.
    values: Vec<Vec<String>>,
    /// Partition directory ([`PartitionKey::dir`]) → values per column.
    partitions: BTreeMap<String, PartValues>,
    #[serde(skip)]
    ids: Vec<HashMap<String, u32>>,
    /// Partitions this run wrote to that already held files (a run's digest only).
    #[serde(skip)]
    existing: HashSet<String>,
}

impl Default for Digest {
    fn default() -> Digest {
        Digest {
            version: VERSION,
            columns: COLUMNS.iter().map(|c| c.to_string()).collect(),
            values: vec![Vec::new(); COLUMNS.len()],
            partitions: BTreeMap::new(),
            ids: vec![HashMap::new(); COLUMNS.len()],
            existing: HashSet::new(),
        }
    }
}

impl Digest {
    /// Reads a digest; `None` for one of another version or other columns, which is then not used.
    pub fn from_json(data: &[u8]) -> Result<Option<Digest>> {
        let mut d: Digest =
            serde_json::from_slice(data).map_err(|e| Error::Other(format!("unreadable lake digest: {e}")))?;
        if d.version != VERSION || d.columns != COLUMNS || d.values.len() != COLUMNS.len() {
            return Ok(None);
        }
        let in_range = d.partitions.values().all(|p| {
            p.len() == COLUMNS.len()
                && p.iter().zip(&d.values).all(|(ids, values)| {
                    ids.as_ref().is_none_or(|ids| ids.iter().all(|&i| (i as usize) < values.len()))
                })
        });
        if !in_range {
            return Err(Error::Other("unreadable lake digest: a value ID out of range".into()));
        }
        d.ids = d.values.iter().map(|v| v.iter().cloned().zip(0..).collect()).collect();
        Ok(Some(d))
    }

    pub fn to_json(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a digest serialises"))
    }

    /// Every value seen of column `col` (an index into [`COLUMNS`]).
    pub fn values(&self, col: usize) -> &[String] {
        &self.values[col]
    }

    /// The partitions, with their values per column.
    pub fn partitions(&self) -> impl Iterator<Item = (PartitionKey, &PartValues)> {
        self.partitions.iter().filter_map(|(dir, v)| Some((PartitionKey::from_path(dir)?, v)))
    }

    fn part(&mut self, name: &str) -> &mut PartValues {
        part(&mut self.partitions, name)
    }

    fn insert(&mut self, name: &str, col: usize, value: &str) {
        let slot = &mut part(&mut self.partitions, name)[col];
        let Some(ids) = slot else { return };
        if value.len() > MAX_LEN {
            *slot = None;
            return;
        }
        let id = match self.ids[col].get(value) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(self.values[col].len()).expect("fewer than 2^32 values");
                self.values[col].push(value.to_string());
                self.ids[col].insert(value.to_string(), id);
                id
            }
        };
        if let Err(at) = ids.binary_search(&id) {
            if ids.len() >= MAX_VALUES {
                *slot = None;
            } else {
                ids.insert(at, id);
            }
        }
    }

    /// Records the values of a batch of one partition's rows (in the lake's file schema).
    pub fn add_batch(&mut self, key: &PartitionKey, batch: &RecordBatch) {
        let name = key.dir();
        self.part(&name);
        for (col, path) in COLUMNS.iter().enumerate() {
            match column(batch, path) {
                // A batch holds few distinct values: each is looked up in the digest once.
                Some(values) => {
                    for v in values.flatten().collect::<HashSet<&str>>() {
                        self.insert(&name, col, v);
                    }
                }
                None => self.part(&name)[col] = None,
            }
        }
    }

    /// Notes that a partition this run writes to already held files before it.
    pub fn mark_existing(&mut self, key: &PartitionKey) {
        self.existing.insert(key.dir());
    }

    /// Adds what a run wrote to the lake's digest.
    pub fn merge(&mut self, run: &Digest) {
        for (name, values) in &run.partitions {
            if !self.partitions.contains_key(name) && run.existing.contains(name) {
                self.partitions.insert(name.clone(), vec![None; COLUMNS.len()]);
                continue;
            }
            for (col, ids) in values.iter().enumerate() {
                match ids {
                    None => self.part(name)[col] = None,
                    Some(ids) => {
                        self.part(name);
                        for &id in ids {
                            self.insert(name, col, &run.values[col][id as usize]);
                        }
                    }
                }
            }
        }
    }
}

/// A partition's values, made known and empty when it is new.
fn part<'a>(partitions: &'a mut BTreeMap<String, PartValues>, name: &str) -> &'a mut PartValues {
    if !partitions.contains_key(name) {
        partitions.insert(name.to_string(), vec![Some(Vec::new()); COLUMNS.len()]);
    }
    partitions.get_mut(name).expect("inserted above")
}

/// The string values of a column (a dotted path into structs); `None` where the column is not plain text.
fn column<'a>(batch: &'a RecordBatch, path: &str) -> Option<impl Iterator<Item = Option<&'a str>>> {
    let mut parts = path.split('.');
    let mut array: &'a dyn Array = batch.column_by_name(parts.next()?)?.as_ref();
    for field in parts {
        let s: &StructArray = array.as_struct_opt()?;
        array = s.column_by_name(field)?.as_ref();
    }
    // A struct's NULL rows hide their children's values; a child value under a NULL parent is only ever a superset.
    (array.data_type() == &DataType::Utf8).then(|| array.as_string::<i32>().iter())
}

impl Lake {
    /// The lake's digest; `None` when it has none, or one this version cannot use.
    pub async fn digest(&self) -> Result<Option<Digest>> {
        match self.get(DIGEST_PATH).await {
            Ok(data) => Digest::from_json(&data),
            Err(Error::Store(object_store::Error::NotFound { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What changes whenever the digest is rewritten (its ETag, time and size), without reading it; `None` when
    /// there is none.
    pub async fn digest_version(&self) -> Result<Option<String>> {
        match self.store.head(&object_store::path::Path::from(DIGEST_PATH)).await {
            Ok(m) => Ok(Some(format!("{:?}/{}/{}", m.e_tag, m.last_modified, m.size))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a run's values to the lake's digest. Called under the lock, before the run's commit record.
    pub async fn update_digest(&self, run: &Digest) -> Result<()> {
        if run.partitions.is_empty() {
            return Ok(());
        }
        // An unreadable digest is replaced: the partitions it knew become unknown, which skips less and loses
        // nothing.
        let mut digest = self.digest().await.ok().flatten().unwrap_or_default();
        digest.merge(run);
        self.put(DIGEST_PATH, digest.to_json()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(account: &str, day: i32) -> PartitionKey {
        PartitionKey { account: account.into(), day }
    }

    fn ids_of<'a>(d: &'a Digest, name: &str, col: usize) -> Option<Vec<&'a str>> {
        let part = d.partitions.get(name)?;
        part[col].as_ref().map(|ids| ids.iter().map(|&i| d.values[col][i as usize].as_str()).collect())
    }

    #[test]
    fn a_runs_values_are_added_and_existing_partitions_become_unknown() {
        let mut lake = Digest::default();
        let mut run = Digest::default();
        let k = key("111111111111", 0);
        run.part(&k.dir());
        run.insert(&k.dir(), 1, "AssumeRoot");
        run.insert(&k.dir(), 1, "AssumeRoot");
        run.insert(&k.dir(), 1, "GetObject");
        let old = key("222222222222", 0);
        run.insert(&old.dir(), 1, "ListBuckets");
        run.mark_existing(&old);
        lake.merge(&run);
        assert_eq!(
            ids_of(&lake, "account_id=111111111111/event_date=1970-01-01", 1),
            Some(vec!["AssumeRoot", "GetObject"])
        );
        assert_eq!(ids_of(&lake, "account_id=222222222222/event_date=1970-01-01", 1), None);
        assert!(lake.partitions.contains_key("account_id=222222222222/event_date=1970-01-01"));

        // Known partitions take the union; a partition once unknown stays so.
        let mut next = Digest::default();
        next.insert(&k.dir(), 1, "PutObject");
        next.insert(&old.dir(), 1, "GetObject");
        next.mark_existing(&k);
        next.mark_existing(&old);
        lake.merge(&next);
        let back = Digest::from_json(&lake.to_json()).unwrap().unwrap();
        assert_eq!(
            ids_of(&back, "account_id=111111111111/event_date=1970-01-01", 1),
            Some(vec!["AssumeRoot", "GetObject", "PutObject"])
        );
        assert_eq!(ids_of(&back, "account_id=222222222222/event_date=1970-01-01", 1), None);
    }

    #[test]
    fn too_many_or_too_long_values_make_a_column_unknown() {
        let mut d = Digest::default();
        let name = "account_id=111111111111/event_date=1970-01-01";
        for i in 0..MAX_VALUES {
            d.insert(name, 1, &format!("Event{i}"));
        }
        assert!(d.partitions[name][1].is_some());
        d.insert(name, 1, "OneMore");
        assert!(d.partitions[name][1].is_none());
        d.insert(name, 0, &"x".repeat(MAX_LEN + 1));
        assert!(d.partitions[name][0].is_none());
        d.insert(name, 2, "AccessDenied");
        assert_eq!(ids_of(&d, name, 2), Some(vec!["AccessDenied"]));
    }

    #[test]
    fn digests_of_other_versions_are_not_used_and_corrupt_ones_are_errors() {
        let mut d = Digest::default();
        d.insert("account_id=111111111111/event_date=1970-01-01", 1, "AssumeRoot");
        let mut other = d.clone();
        other.version = 99;
        assert!(Digest::from_json(&other.to_json()).unwrap().is_none());
        let mut bad = d.clone();
        bad.partitions.get_mut("account_id=111111111111/event_date=1970-01-01").unwrap()[1] = Some(vec![7]);
        assert!(Digest::from_json(&bad.to_json()).is_err());
        assert!(Digest::from_json(b"{not json").is_err());
    }
}
