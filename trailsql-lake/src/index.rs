//! The de-duplication index: each data file's (eventID, content) hashes, stored beside it under `_index/`, and the
//! per-partition set a run checks new events against.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use rustc_hash::FxBuildHasher;

/// The identity of an event for de-duplication: a hash of (recipientAccountId, eventID) and one of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId {
    pub id: u64,
    pub content: u64,
}

/// The event IDs of one partition already in the lake or written by this run.
#[derive(Default)]
pub(crate) struct PartIndex {
    /// ID → content of its first copy.
    first: HashMap<u64, u64, FxBuildHasher>,
    /// Further (ID, content) pairs: events kept as ID conflicts.
    extra: HashSet<(u64, u64), FxBuildHasher>,
}

impl PartIndex {
    pub(crate) fn len(&self) -> usize {
        self.first.len() + self.extra.len()
    }

    /// Records an event; tells whether it is a duplicate, a conflict, or new.
    pub(crate) fn insert(&mut self, e: EventId) -> Seen {
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
pub(crate) enum Seen {
    New,
    Duplicate,
    Conflict,
}

/// The (eventID, content) hashes of a data file's rows, stored beside it so that later runs can drop duplicates
/// without reading the data.
pub fn encode_ids(ids: &[EventId]) -> Bytes {
    let mut sorted: Vec<EventId> = ids.to_vec();
    sorted.sort_by_key(|e| (e.id, e.content));
    let mut out = Vec::with_capacity(16 + sorted.len() * 16);
    out.extend_from_slice(b"TSQIDS01");
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    for e in sorted {
        out.extend_from_slice(&e.id.to_le_bytes());
        out.extend_from_slice(&e.content.to_le_bytes());
    }
    Bytes::from(out)
}

pub fn decode_ids(data: &[u8]) -> Option<Vec<EventId>> {
    let body = data.strip_prefix(b"TSQIDS01")?;
    let n = usize::try_from(u64::from_le_bytes(body.get(..8)?.try_into().ok()?)).ok()?;
    let rows = body.get(8..)?;
    if rows.len() != n.checked_mul(16)? {
        return None;
    }
    Some(
        rows.chunks_exact(16)
            .map(|c| EventId {
                id: u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
                content: u64::from_le_bytes(c[8..].try_into().expect("8 bytes")),
            })
            .collect(),
    )
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
    fn ids_round_trip_and_reject_garbage() {
        let ids = vec![EventId { id: 3, content: 4 }, EventId { id: 1, content: 2 }];
        let back = decode_ids(&encode_ids(&ids)).unwrap();
        assert_eq!(back, vec![EventId { id: 1, content: 2 }, EventId { id: 3, content: 4 }]);
        assert_eq!(decode_ids(b"garbage"), None);
        assert_eq!(decode_ids(&encode_ids(&ids)[..20]), None);
    }
}
