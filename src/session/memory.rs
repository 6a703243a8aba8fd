//! The memory a session's queries may hold: the pool their operators reserve from, and its default size.
//!
//! Without a pool DataFusion never spills: a sort or a grouping over a year of an organization's events grows until
//! the kernel kills the process, with no message. With one, sorts and aggregations write their runs to the
//! temporary directory (`TMPDIR`) when the pool is spent, and an operator that cannot spill (a join's build side,
//! a window's partition) fails with an error that names the largest consumers.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool, TrackConsumersPool};

/// The share of the machine's (or the container's) memory that queries get by default, as DuckDB gives them:
/// the rest is for what the pool does not count (decoded Parquet pages, output buffers, the allocator's slack).
const DEFAULT_SHARE: f64 = 0.8;

/// A pool of `limit` bytes. Fair rather than greedy: an operator that cannot spill gets its memory first, and the
/// spillable ones share the rest, so that one partition's sort cannot take everything a join then needs.
pub fn pool(limit: usize) -> Arc<dyn MemoryPool> {
    let top = NonZeroUsize::new(5).expect("five is not zero");
    Arc::new(TrackConsumersPool::new(FairSpillPool::new(limit), top))
}

/// The pool's size from `--memory-limit`: the default without it, and 0 for no pool at all (an escape for a machine
/// whose limits are misread; queries then never spill).
pub fn limit(flag: Option<u64>) -> Option<usize> {
    match flag {
        Some(0) => None,
        Some(bytes) => Some(usize::try_from(bytes).unwrap_or(usize::MAX)),
        None => default_limit(),
    }
}

/// 80% of the memory this process can have: the smaller of the machine's and the container's limit (cgroup v2,
/// then v1), as a scheduler's container is the usual place for a batch run. `None` where neither can be read
/// (not Linux): no limit, as before there was a pool.
fn default_limit() -> Option<usize> {
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| mem_total(&m));
    let container = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().and_then(|t| cgroup_limit(&t)));
    let bytes = match (machine, container) {
        (Some(m), Some(c)) => m.min(c),
        (m, c) => m.or(c)?,
    };
    Some((bytes as f64 * DEFAULT_SHARE) as usize)
}

/// `MemTotal:  24567890 kB` of /proc/meminfo, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.trim_start_matches("MemTotal:").trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// A cgroup's memory limit: `max` (v2) or a number near `i64::MAX` (v1's "none") are no limit.
fn cgroup_limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    (n < 1 << 60).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_from_the_machine_and_the_container() {
        assert_eq!(mem_total("MemTotal:       24567890 kB\nMemFree: 1 kB\n"), Some(24_567_890 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(cgroup_limit("2147483648\n"), Some(2 << 30));
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("9223372036854771712\n"), None);
        // On the machines this runs on (Linux), there is always a default.
        assert!(default_limit().is_some_and(|l| l > 0));
    }
}
