//! The one-writer lock of a lake: who may convert into it now, and how a dead writer's lock is told from a live
//! one's without ever mistaking the two.
//!
//! A local lake is locked with the operating system's file lock (`flock` on `_lock`, through
//! [`std::fs::File::try_lock`]). The kernel releases it when the holder ends, however it ends (kill -9, a
//! container stopped, PID 1 restarted), and it works across PID namespaces on one kernel and, through NFS's own
//! locks, across hosts: nothing is judged from process IDs or host names, so a live writer is never declared dead.
//!
//! An object store has no such lock, so an S3 lake's `_lock` object carries a heartbeat: its holder rewrites it
//! every [`LockTiming::heartbeat`] with a conditional put on the version it last wrote, and checks it still holds
//! the lock (one more conditional put) right before it commits. A contender takes a lock over only after watching
//! its version stay unchanged for [`LockTiming::stale_after`] on its own clock (no clock of another host is
//! trusted), and then only with a conditional put on that version, so two contenders can never both win. A holder
//! that was paused for longer than that finds its lock gone at its commit and fails without committing.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::Lake;

pub(super) const LOCK: &str = "_lock";

/// How often an object-store lock is refreshed, and after how long without a refresh it is taken for dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockTiming {
    pub heartbeat: Duration,
    pub stale_after: Duration,
}

impl Default for LockTiming {
    fn default() -> Self {
        // Six missed refreshes: a slow store or a busy machine is not a dead writer.
        LockTiming { heartbeat: Duration::from_secs(10), stale_after: Duration::from_secs(60) }
    }
}

/// What the lock says of its holder, for messages (never for deciding who is alive).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockInfo {
    host: String,
    pid: u32,
    run: String,
    since: String,
    #[serde(default)]
    heartbeat: Option<String>,
}

impl LockInfo {
    fn new(run: &str) -> LockInfo {
        let now = chrono::Utc::now().to_rfc3339();
        LockInfo {
            host: host_name(),
            pid: std::process::id(),
            run: run.to_string(),
            since: now.clone(),
            heartbeat: None,
        }
    }

    /// The lock's text, stamped with the time of this write.
    fn body(&self) -> Bytes {
        let stamped = LockInfo { heartbeat: Some(chrono::Utc::now().to_rfc3339()), ..self.clone() };
        Bytes::from(serde_json::to_vec(&stamped).unwrap_or_default())
    }

    fn describe(bytes: &[u8]) -> String {
        match serde_json::from_slice::<LockInfo>(bytes) {
            Ok(h) => format!("run {} by pid {} on {} since {}", h.run, h.pid, h.host, h.since),
            Err(_) => "a holder that left no readable note".into(),
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

/// The lock held by a running convert. Release it with [`Lake::unlock`]; dropped, a local lock is released by the
/// operating system and an object-store lock stops its heartbeat and goes stale.
pub struct LockGuard {
    kind: GuardKind,
}

enum GuardKind {
    Local { file: File, path: PathBuf },
    Store(Arc<StoreLock>),
}

/// The state of an object-store lock, shared with its heartbeat task.
struct StoreLock {
    store: Arc<dyn ObjectStore>,
    info: LockInfo,
    /// The version of `_lock` this holder wrote last; `None` once the lock is known to be lost.
    version: tokio::sync::Mutex<Option<UpdateVersion>>,
    heartbeat: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl StoreLock {
    /// Rewrites the lock if it is still the version this holder wrote. Returns false when another run holds it.
    async fn refresh(&self) -> Result<bool> {
        let mut version = self.version.lock().await;
        let Some(v) = version.clone() else { return Ok(false) };
        let opts = PutOptions { mode: PutMode::Update(v), ..Default::default() };
        match self.store.put_opts(&Path::from(LOCK), PutPayload::from_bytes(self.info.body()), opts).await {
            Ok(r) => {
                *version = Some(UpdateVersion { e_tag: r.e_tag, version: r.version });
                Ok(true)
            }
            Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
                *version = None;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl LockGuard {
    /// Proves the lock is still held, right before a commit. A local lock cannot be lost while its holder lives.
    pub async fn check(&self, lake: &Lake) -> Result<()> {
        match &self.kind {
            GuardKind::Local { .. } => Ok(()),
            GuardKind::Store(s) => {
                if s.refresh().await? {
                    Ok(())
                } else {
                    Err(lake.err(format!(
                        "this run ({}) lost the lake's lock: it was not refreshed for {:?} and another run took it \
                         over; nothing of this run was committed, run it again",
                        s.info.run, lake.lock_timing.stale_after
                    )))
                }
            }
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let GuardKind::Store(s) = &self.kind
            && let Some(task) = s.heartbeat.lock().take()
        {
            task.abort();
        }
    }
}

impl Lake {
    /// Takes the writer lock, or says who holds it.
    pub async fn lock(&self, run: &str) -> Result<LockGuard> {
        match &self.local_root {
            Some(root) => {
                let root = root.clone();
                let run = run.to_string();
                let name = self.name.clone();
                tokio::task::spawn_blocking(move || lock_local(&root, &run, &name))
                    .await
                    .map_err(|e| Error::Other(format!("lock task failed: {e}")))?
            }
            None => self.lock_store(run).await,
        }
    }

    /// Releases the lock. A run removes only its own lock: an object-store lock that another run took over is left
    /// to that run.
    pub async fn unlock(&self, guard: LockGuard) -> Result<()> {
        match &guard.kind {
            GuardKind::Local { file, path } => {
                // Removed while still held, so that a contender that opened the old file sees it is gone (and
                // retries) instead of taking a lock on a file nobody else will look at.
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(path.clone(), e)),
                }
                let _ = file.unlock();
            }
            GuardKind::Store(s) => {
                if let Some(task) = s.heartbeat.lock().take() {
                    task.abort();
                }
                let version = s.version.lock().await.take();
                let path = Path::from(LOCK);
                // No store offers a conditional delete: the lock is deleted only while it is still the version
                // this run wrote, which no contender can replace before it has been unchanged for stale_after.
                if let Some(v) = version
                    && let Ok(meta) = self.store.head(&path).await
                    && meta.e_tag.is_some()
                    && meta.e_tag == v.e_tag
                {
                    match self.store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }

    async fn lock_store(&self, run: &str) -> Result<LockGuard> {
        let info = LockInfo::new(run);
        let path = Path::from(LOCK);
        let timing = self.lock_timing;
        loop {
            let create = PutOptions { mode: PutMode::Create, ..Default::default() };
            let held = match self.store.put_opts(&path, PutPayload::from_bytes(info.body()), create).await {
                Ok(r) => return Ok(self.store_guard(info, UpdateVersion { e_tag: r.e_tag, version: r.version })),
                Err(object_store::Error::AlreadyExists { .. }) => match self.store.get(&path).await {
                    Ok(got) => {
                        let version =
                            UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
                        (version, got.bytes().await?)
                    }
                    // Released between our put and our read: try again.
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            };
            let (version, body) = held;
            if !self.unchanged_for(&version, timing).await? {
                return Err(self.locked(&body));
            }
            let takeover = PutOptions { mode: PutMode::Update(version), ..Default::default() };
            match self.store.put_opts(&path, PutPayload::from_bytes(info.body()), takeover).await {
                Ok(r) => return Ok(self.store_guard(info, UpdateVersion { e_tag: r.e_tag, version: r.version })),
                // Another contender took it over first, or its holder released it: look again.
                Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the lock stays at `version` for `stale_after`, watched on this machine's clock. A holder that is
    /// alive refreshes it well before then.
    async fn unchanged_for(&self, version: &UpdateVersion, timing: LockTiming) -> Result<bool> {
        let start = Instant::now();
        let poll = (timing.heartbeat / 2).max(Duration::from_millis(10));
        loop {
            match self.store.head(&Path::from(LOCK)).await {
                Ok(meta) if meta.e_tag == version.e_tag && meta.version == version.version => {}
                Ok(_) | Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
            if start.elapsed() >= timing.stale_after {
                return Ok(true);
            }
            tokio::time::sleep(poll).await;
        }
    }

    fn store_guard(&self, info: LockInfo, version: UpdateVersion) -> LockGuard {
        let state = Arc::new(StoreLock {
            store: self.store.clone(),
            info,
            version: tokio::sync::Mutex::new(Some(version)),
            heartbeat: parking_lot::Mutex::new(None),
        });
        let beat = Arc::downgrade(&state);
        let every = self.lock_timing.heartbeat;
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(state) = beat.upgrade() else { return };
                // A failed refresh is retried at the next beat; the check before the commit is what decides.
                if let Ok(false) = state.refresh().await {
                    return;
                }
            }
        });
        *state.heartbeat.lock() = Some(task);
        LockGuard { kind: GuardKind::Store(state) }
    }

    fn locked(&self, holder: &[u8]) -> Error {
        Error::Locked {
            lake: self.name.clone(),
            holder: LockInfo::describe(holder),
            lock: format!("{}/{LOCK}", self.name.trim_end_matches('/')),
        }
    }
}

/// Takes the operating system's lock on `<root>/_lock`.
fn lock_local(root: &FsPath, run: &str, name: &str) -> Result<LockGuard> {
    let path = root.join(LOCK);
    let info = LockInfo::new(run);
    loop {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut held = Vec::new();
                let _ = file.read_to_end(&mut held);
                return Err(Error::Locked {
                    lake: name.to_string(),
                    holder: LockInfo::describe(&held),
                    lock: path.display().to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        // The holder before us removes the file before it lets go: a lock on a file that is no longer at the path
        // guards nothing, so open the path again.
        if !same_file(&file, &path) {
            continue;
        }
        let note = info.body();
        let written = file.set_len(0).and_then(|()| file.seek(SeekFrom::Start(0))).and_then(|_| file.write_all(&note));
        written.map_err(|e| Error::io(&path, e))?;
        return Ok(LockGuard { kind: GuardKind::Local { file, path } });
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &FsPath) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &FsPath) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn store_lake(store: &Arc<InMemory>) -> Lake {
        let mut lake = Lake::new(store.clone(), "mem://lake");
        lake.lock_timing = LockTiming { heartbeat: Duration::from_millis(40), stale_after: Duration::from_millis(400) };
        lake
    }

    fn is_locked(r: &Result<LockGuard>) -> bool {
        matches!(r, Err(Error::Locked { .. }))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_holder_keeps_its_lock_and_a_dead_ones_is_taken_over() {
        let store = Arc::new(InMemory::new());
        let lake = store_lake(&store);
        let a = lake.lock("run-a").await.unwrap();
        // Watched for longer than stale_after, the live holder's heartbeat shows it alive.
        assert!(is_locked(&lake.lock("run-b").await));
        a.check(&lake).await.unwrap();
        // Dropped without unlock, as when its process dies: no more heartbeats, and after stale_after it is taken.
        drop(a);
        let b = lake.lock("run-b").await.unwrap();
        b.check(&lake).await.unwrap();
        lake.unlock(b).await.unwrap();
        assert!(store.head(&Path::from(LOCK)).await.is_err(), "released");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holder_whose_lock_was_taken_over_cannot_commit_nor_remove_the_new_lock() {
        let store = Arc::new(InMemory::new());
        let lake = store_lake(&store);
        let a = lake.lock("run-a").await.unwrap();
        // Another run takes the lock over (as it would after run-a was paused longer than stale_after).
        store
            .put(
                &Path::from(LOCK),
                PutPayload::from_static(b"{\"host\":\"h\",\"pid\":2,\"run\":\"run-b\",\"since\":\"x\"}"),
            )
            .await
            .unwrap();
        let err = a.check(&lake).await.unwrap_err();
        assert!(err.to_string().contains("lost the lake's lock"), "{err}");
        lake.unlock(a).await.unwrap();
        let kept = store.get(&Path::from(LOCK)).await.unwrap().bytes().await.unwrap();
        assert!(kept.starts_with(b"{\"host\":\"h\",\"pid\":2,\"run\":\"run-b\""), "the new holder's lock stays");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contenders_over_a_stale_lock_never_both_win() {
        for _ in 0..5 {
            let store = Arc::new(InMemory::new());
            store.put(&Path::from(LOCK), PutPayload::from_static(b"{\"run\":\"dead\"}")).await.unwrap();
            let lakes: Vec<Lake> = (0..3).map(|_| store_lake(&store)).collect();
            let results =
                futures::future::join_all(lakes.iter().enumerate().map(|(i, l)| l.lock(["x", "y", "z"][i]))).await;
            let winners = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(winners, 1, "exactly one contender takes a stale lock");
            assert!(results.iter().filter(|r| r.is_err()).all(is_locked));
        }
    }

    #[test]
    fn local_locks_exclude_each_other_and_are_released_with_their_holder() {
        let dir = tempfile::tempdir().unwrap();
        let a = lock_local(dir.path(), "run-a", "lake").unwrap();
        let held = lock_local(dir.path(), "run-b", "lake");
        match held {
            Err(Error::Locked { holder, .. }) => assert!(holder.contains("run run-a"), "{holder}"),
            _ => panic!("a second local lock was granted"),
        }
        drop(a);
        // The file stays, its lock is gone: the next run takes it.
        lock_local(dir.path(), "run-c", "lake").unwrap();
    }
}
