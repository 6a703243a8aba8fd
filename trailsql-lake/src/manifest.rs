//! The commit protocol: commit records, the manifest of converted sources they add up to, and crash recovery.
//!
//! A run writes everything under `_staging/<run>/`, then writes its commit record (one atomic put), then moves the
//! files into place and deletes what compaction replaced. Readers skip names starting with `_`. A run killed before
//! its commit record leaves only staging, which the next run deletes; one killed after it is finished by the next
//! run from the record. Either way every event is in the lake once.
//!
//! While a run moves its files in and deletes what they replace (a merged file holds the rows of the files it
//! replaces), a listing shows both. The run keeps its record at `_applying.json` meanwhile, until it or the next
//! run has finished it, and readers see each partition as it was before the commit or after it ([`Applying`]).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{APPLYING_PATH, MANIFEST_DIR, STAGING_DIR, staging_path};
use crate::store::Lake;

/// What one source object contributed, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceEntry {
    pub source: String,
    pub size: u64,
    /// Modification time in nanoseconds, for local files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    /// ETag, for objects in S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Content hash (xxh3-64 of the bytes as stored, or the CRC-32 of a zip member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    /// Set for a digest file or another object that holds no events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl SourceEntry {
    /// The entry of a source object before it is read: nothing counted, no hash yet.
    pub fn new(source: String, size: u64) -> SourceEntry {
        SourceEntry { source, size, mtime: None, etag: None, hash: None, counts: Counts::default(), skipped: None }
    }
}

/// The events of a source object, of a run, or of a commit: the one set of counters every report adds up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Read from the source; in a commit's totals, written to the lake.
    #[serde(default)]
    pub events: u64,
    #[serde(default)]
    pub duplicates: u64,
    #[serde(default)]
    pub conflicts: u64,
    #[serde(default)]
    pub rejects: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.events += o.events;
        self.duplicates += o.duplicates;
        self.conflicts += o.conflicts;
        self.rejects += o.rejects;
    }
}

/// A commit record: everything one run changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit {
    pub version: u32,
    pub run: String,
    pub tool: String,
    pub started: String,
    pub finished: String,
    pub sources: Vec<SourceEntry>,
    /// Final paths of the files the run adds; each is staged under `_staging/<run>/` until the commit is applied.
    pub added: Vec<String>,
    /// Files the run replaces (compaction).
    pub removed: Vec<String>,
    pub totals: Counts,
}

/// The files of a commit being applied. A run moves every file it adds into place before it deletes any it
/// replaces, so while one of a partition's added files is missing all of those it replaces are there: the partition
/// as it was before the commit, less the added files already moved; once all are there, the partition as it is
/// after, less the replaced files not deleted yet.
#[derive(Debug, Clone, Default)]
pub struct Applying {
    added: HashSet<String>,
    removed: HashSet<String>,
}

impl Applying {
    /// The commits being applied when a listing began and when it ended (a run may begin or end applying one while
    /// a listing goes on): what either adds or replaces.
    pub fn either(before: Option<Applying>, after: Option<Applying>) -> Option<Applying> {
        match (before, after) {
            (Some(mut a), Some(b)) => {
                a.added.extend(b.added);
                a.removed.extend(b.removed);
                Some(a)
            }
            (a, b) => a.or(b),
        }
    }

    /// The files of a listing (paths from the lake's root, with anything) a reader keeps, for each partition to be
    /// seen in one state: all of them when no commit was being applied.
    pub fn visible<T>(applying: Option<&Applying>, listed: Vec<(String, T)>) -> Vec<(String, T)> {
        let Some(applying) = applying else { return listed };
        let hidden = applying.hidden(&listed.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>());
        listed.into_iter().filter(|(p, _)| !hidden.contains(p)).collect()
    }

    /// Of the paths of a listing (from the lake's root), those a reader leaves out for each partition to be seen
    /// in one state.
    fn hidden(&self, listed: &[&str]) -> HashSet<String> {
        let dir = |p: &str| p.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_string());
        let present: HashSet<&str> = listed.iter().copied().collect();
        let incomplete: HashSet<String> =
            self.added.iter().filter(|p| !present.contains(p.as_str())).map(|p| dir(p)).collect();
        listed
            .iter()
            .filter(|p| match incomplete.contains(&dir(p)) {
                true => self.added.contains(**p),
                false => self.removed.contains(**p),
            })
            .map(|p| p.to_string())
            .collect()
    }
}

/// The sources already in the lake, by source name.
pub type Manifest = HashMap<String, SourceEntry>;

impl Lake {
    /// All commit records, oldest first, with their sequence numbers.
    pub async fn commits(&self) -> Result<Vec<(u64, Commit)>> {
        let seq = |name: &str| name.split('-').next()?.parse::<u64>().ok();
        Ok(self.commits_from(None).await?.into_iter().filter_map(|(name, c)| Some((seq(&name)?, c))).collect())
    }

    /// The commit records from the one named `from` (included) on, oldest first, by name; all of them without
    /// `from`. A reader that keeps the name of the newest it saw lists only those since (S3 lists from a key on)
    /// rather than the lake's whole history. The newest record is the only one a run may still be applying: every
    /// run finishes an interrupted one before it commits.
    pub async fn commits_from(&self, from: Option<&str>) -> Result<Vec<(String, Commit)>> {
        let mut paths: Vec<String> = match from {
            None => self.list(MANIFEST_DIR).await?.into_iter().map(|(p, _)| p).collect(),
            Some(name) => {
                let (prefix, from) = (Path::from(MANIFEST_DIR), Path::from(format!("{MANIFEST_DIR}/{name}")));
                let mut after: Vec<String> = (self.store.list_with_offset(Some(&prefix), &from))
                    .map_ok(|m| m.location.to_string())
                    .try_collect()
                    .await?;
                after.push(from.to_string());
                after
            }
        };
        paths.sort();
        paths.dedup();
        let mut out = Vec::new();
        for path in paths {
            let Some(name) = path.rsplit('/').next().filter(|n| n.ends_with(".json")) else { continue };
            match self.commit(&path).await {
                Ok(c) => out.push((name.to_string(), c)),
                // `from` gone: a lake emptied and converted again.
                Err(Error::Store(object_store::Error::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn commit(&self, path: &str) -> Result<Commit> {
        let body = self.get(path).await?;
        serde_json::from_slice(&body).map_err(|e| self.err(format!("unreadable commit record {path}: {e}")))
    }

    /// The sources already converted.
    pub fn manifest(commits: &[(u64, Commit)]) -> Manifest {
        let mut m = Manifest::new();
        for (_, c) in commits {
            for s in &c.sources {
                m.insert(s.source.clone(), s.clone());
            }
        }
        m
    }

    /// Writes a commit record: the point at which a run's changes become part of the lake.
    pub async fn write_commit(&self, seq: u64, commit: &Commit) -> Result<()> {
        let body = serde_json::to_vec_pretty(commit).expect("commit serialises");
        self.put(&format!("{MANIFEST_DIR}/{seq:010}-{}.json", commit.run), Bytes::from(body)).await
    }

    /// Moves a committed run's staged files into place and deletes what it replaced. Safe to repeat. Readers see
    /// the partitions it changes as they were or as they will be, never both ([`Applying`]).
    pub async fn apply(&self, commit: &Commit) -> Result<()> {
        self.put(APPLYING_PATH, Bytes::from(serde_json::to_vec(commit).expect("commit serialises"))).await?;
        for path in &commit.added {
            let staged = Path::from(staging_path(&commit.run, path));
            match self.store.rename(&staged, &Path::from(path.as_str())).await {
                Ok(()) => {}
                // Already moved by an earlier, interrupted apply.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for path in &commit.removed {
            self.delete(path).await?;
        }
        self.delete_prefix(&format!("{STAGING_DIR}/{}", commit.run)).await?;
        self.delete(APPLYING_PATH).await
    }

    /// A listing of the lake's data files, with the commits being applied when it began and when it ended (a run
    /// may begin or end applying one while a listing goes on), for [`Applying::visible`].
    pub async fn while_applying<T>(&self, listing: impl Future<Output = Result<T>>) -> Result<(T, Option<Applying>)> {
        let before = self.applying().await?;
        let listed = listing.await?;
        Ok((listed, Applying::either(before, self.applying().await?)))
    }

    /// The commit a run is applying, if one is.
    async fn applying(&self) -> Result<Option<Applying>> {
        match self.commit(APPLYING_PATH).await {
            Ok(c) => {
                Ok(Some(Applying { added: c.added.into_iter().collect(), removed: c.removed.into_iter().collect() }))
            }
            Err(Error::Store(object_store::Error::NotFound { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Finishes committed runs that were interrupted and deletes the staging of runs that never committed.
    /// Returns the number of runs finished and discarded.
    ///
    /// Only the lock holder recovers, and every run recovers before it commits, so only the newest commit can be
    /// unfinished without staging left to show it: an object store keeps no empty staging "directory" once all of
    /// a run's files are moved, so a run killed while deleting what its compaction replaced is visible only in its
    /// record. Those deletions are repeated (deleting what is gone is free).
    pub async fn recover(&self, commits: &[(u64, Commit)]) -> Result<(usize, usize)> {
        let staged = self.list(STAGING_DIR).await?;
        let mut runs: Vec<String> = staged
            .iter()
            .filter_map(|(p, _)| p.strip_prefix(&format!("{STAGING_DIR}/"))?.split('/').next().map(String::from))
            .collect();
        // A run killed in the middle of a write leaves the store's partial file (`name#N`), which listings skip:
        // a local lake's staging directories are read as well, so that such a run is found and removed.
        if let Some(root) = &self.local_root
            && let Ok(entries) = std::fs::read_dir(root.join(STAGING_DIR))
        {
            runs.extend(entries.flatten().filter_map(|e| e.file_name().into_string().ok()));
        }
        runs.sort();
        runs.dedup();
        let (mut finished, mut discarded) = (0, 0);
        for run in runs {
            match commits.iter().find(|(_, c)| c.run == run) {
                Some((_, c)) => {
                    self.apply(c).await?;
                    finished += 1;
                }
                None => {
                    self.delete_prefix(&format!("{STAGING_DIR}/{run}")).await?;
                    if let Some(root) = &self.local_root {
                        match std::fs::remove_dir_all(root.join(STAGING_DIR).join(&run)) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(Error::io(root.join(STAGING_DIR).join(&run), e)),
                        }
                    }
                    discarded += 1;
                }
            }
        }
        if let Some((_, last)) = commits.last() {
            for path in &last.removed {
                self.delete(path).await?;
            }
        }
        self.delete(APPLYING_PATH).await?;
        Ok((finished, discarded))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;

    use super::*;

    fn commit(run: &str) -> Commit {
        Commit {
            version: 1,
            run: run.into(),
            tool: String::new(),
            started: String::new(),
            finished: String::new(),
            sources: Vec::new(),
            added: Vec::new(),
            removed: vec![format!("{run}.parquet")],
            totals: Counts::default(),
        }
    }

    /// While a commit is applied, each partition is seen as it was before it (until every file it adds is in
    /// place) or as it is after it (less the files it replaces, not deleted yet); other partitions as they are.
    #[test]
    fn a_commit_being_applied_hides_one_state_of_each_partition() {
        let applying = Applying {
            added: ["a/1/m", "a/1/n", "b/1/m", "_index/a/1/m.ids"].map(String::from).into(),
            removed: ["a/1/x", "b/1/x", "b/1/y"].map(String::from).into(),
        };
        let listed = ["a/1/m", "a/1/n", "a/1/x", "a/1/old", "b/1/m", "b/1/x", "b/1/y", "c/1/z"];
        let mut hidden: Vec<String> = applying.hidden(&listed).into_iter().collect();
        hidden.sort();
        assert_eq!(hidden, ["a/1/x", "b/1/x", "b/1/y"], "all added files in place: after");
        let listed = ["a/1/m", "a/1/x", "a/1/old", "b/1/m", "b/1/y"];
        let mut hidden: Vec<String> = applying.hidden(&listed).into_iter().collect();
        hidden.sort();
        assert_eq!(hidden, ["a/1/m", "b/1/y"], "a/1/n not in place yet: a as before");
        let either = Applying::either(Some(applying), Some(Applying::default())).unwrap();
        assert_eq!(either.added.len(), 4);
    }

    /// A reader that keeps the newest record's name reads it and those after it again, never the ones before.
    #[tokio::test]
    async fn commit_records_are_read_from_a_name_on() {
        let lake = Lake::new(Arc::new(InMemory::new()), "mem");
        for (seq, run) in [(1, "a"), (2, "b"), (10, "c")] {
            lake.write_commit(seq, &commit(run)).await.unwrap();
        }
        let runs = |c: Vec<(String, Commit)>| c.into_iter().map(|(n, c)| (n, c.run)).collect::<Vec<_>>();
        let all = runs(lake.commits_from(None).await.unwrap());
        assert_eq!(all.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        let (b, _) = &all[1];
        assert_eq!(b, "0000000002-b.json");
        let from_b = runs(lake.commits_from(Some(b)).await.unwrap());
        assert_eq!(from_b.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(runs(lake.commits_from(Some("0000000099-z.json")).await.unwrap()), [], "a name no longer there");
    }
}
