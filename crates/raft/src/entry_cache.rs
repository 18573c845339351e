//! A bounded in-memory cache of the most recent log entries, so replication reads on the leader
//! are copies of decoded entries instead of sled reads and decodes.
//!
//! Invariant: the cached entries have consecutive indices `[first, last]` and are exactly the
//! log's entries at those indices. The log store keeps it by filling the cache on `append`
//! (an entry at or below `last` first drops every cached entry from its index on: an overwrite
//! after a conflict never leaves a stale successor; an entry after a gap restarts the cache), by
//! dropping the cached suffix on `truncate` before it deletes the entries from sled, and the
//! cached prefix on `purge`. Bounded by a count and by the entries' stored sizes: the oldest
//! entries go first.
//!
//! Each entry also keeps the storage record it was written as ([`crate::codec`]), which the
//! binary AppendEntries body carries as is (`rpc_codec`): the leader encodes an entry
//! once, for its log, not once more per follower.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;

use crate::types::{Entry, LogId};

/// The cache shared by the log store, its readers and the network (records for replication).
pub type SharedCache = Arc<Mutex<EntryCache>>;

/// Default number of cached entries (a batch entry holds many commands).
pub const DEFAULT_CACHE_ENTRIES: usize = 8192;
/// Default byte bound of the cache (stored sizes).
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

struct Cached {
    entry: Entry,
    /// Stored (encoded) size, what replication budgets count.
    size: usize,
    /// The stored record, when the writer handed it over.
    record: Option<Bytes>,
}

/// The cache (wrap it in a lock to share it between the store and its readers).
pub struct EntryCache {
    entries: VecDeque<Cached>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for EntryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryCache")
            .field("first", &self.first_index())
            .field("last", &self.last_index())
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// What a cached read returned.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheRead {
    /// The cache does not hold the first index asked for (read the log instead).
    Miss,
    /// Entries from the first index asked for; `next` is the first index not returned (the
    /// range's end, the byte budget's cut, or the cache's last index + 1).
    Hit {
        /// The first index not returned.
        next: u64,
        /// True when the byte budget stopped the read (nothing more to read now).
        budget_hit: bool,
    },
}

impl EntryCache {
    /// An empty cache holding at most `max_entries` entries and `max_bytes` stored bytes (0
    /// entries: caching is off).
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        EntryCache {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// Index of the oldest cached entry.
    pub fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|c| c.entry.log_id.index)
    }

    /// Index of the newest cached entry.
    pub fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|c| c.entry.log_id.index)
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Caches `entry` (just written to the log, `size` bytes stored).
    pub fn insert(&mut self, entry: Entry, size: usize) {
        self.push(entry, size, None);
    }

    /// Caches `entry` with the record it was stored as.
    pub fn insert_with_record(&mut self, entry: Entry, record: Bytes) {
        self.push(entry, record.len(), Some(record));
    }

    /// The stored record of the entry `id`, if it is cached with one (same log id: same entry).
    pub fn record(&self, id: &LogId) -> Option<Bytes> {
        let first = self.first_index()?;
        let at = usize::try_from(id.index.checked_sub(first)?).ok()?;
        let cached = self.entries.get(at)?;
        (cached.entry.log_id == *id)
            .then(|| cached.record.clone())
            .flatten()
    }

    fn push(&mut self, entry: Entry, size: usize, record: Option<Bytes>) {
        if self.max_entries == 0 {
            return;
        }
        let index = entry.log_id.index;
        match (self.first_index(), self.last_index()) {
            (Some(first), Some(last)) if index >= first && index <= last => {
                self.truncate_from(index)
            }
            (Some(_), Some(last)) if Some(index) != last.checked_add(1) => self.clear(),
            _ => {}
        }
        self.bytes = self.bytes.saturating_add(size);
        self.entries.push_back(Cached {
            entry,
            size,
            record,
        });
        while self.entries.len() > self.max_entries
            || (self.bytes > self.max_bytes && self.entries.len() > 1)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(c) = self.entries.pop_front() {
            self.bytes = self.bytes.saturating_sub(c.size);
        }
    }

    /// Drops every cached entry at `index` or above (a truncation of the log).
    pub fn truncate_from(&mut self, index: u64) {
        while self.last_index().is_some_and(|last| last >= index) {
            if let Some(c) = self.entries.pop_back() {
                self.bytes = self.bytes.saturating_sub(c.size);
            }
        }
    }

    /// Drops every cached entry at `index` or below (a purge of the log).
    pub fn purge_to(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            self.pop_front();
        }
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Appends copies of the cached entries of `[start, end)` to `out`, in order, if the cache
    /// holds `start`. With a byte budget, stops before the entry that takes `*bytes` (the
    /// running total, shared with the caller) above it, but returns at least one entry overall.
    pub fn read(
        &self,
        start: u64,
        end: Option<u64>,
        budget: Option<usize>,
        bytes: &mut usize,
        out: &mut Vec<Entry>,
    ) -> CacheRead {
        let (Some(first), Some(last)) = (self.first_index(), self.last_index()) else {
            return CacheRead::Miss;
        };
        if start < first || start > last {
            return CacheRead::Miss;
        }
        let Ok(skip) = usize::try_from(start - first) else {
            return CacheRead::Miss;
        };
        let mut next = start;
        for cached in self.entries.iter().skip(skip) {
            let index = cached.entry.log_id.index;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            let total = bytes.saturating_add(cached.size);
            if budget.is_some_and(|max| total > max) && !out.is_empty() {
                return CacheRead::Hit {
                    next,
                    budget_hit: true,
                };
            }
            *bytes = total;
            out.push(cached.entry.clone());
            next = index + 1;
        }
        CacheRead::Hit {
            next,
            budget_hit: false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::types::LogId;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn read_all(c: &EntryCache, start: u64, end: Option<u64>) -> (CacheRead, Vec<(u64, u64)>) {
        let mut out = Vec::new();
        let r = c.read(start, end, None, &mut 0, &mut out);
        let ids = out
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect();
        (r, ids)
    }

    #[test]
    fn overwrites_drop_the_stale_suffix_and_gaps_restart() {
        let mut c = EntryCache::new(100, 1 << 20);
        for i in 1..=5 {
            c.insert(entry(1, i), 10);
        }
        // A conflicting entry at 3 (new term): 4 and 5 of term 1 must never be served again.
        c.insert(entry(2, 3), 10);
        let (r, ids) = read_all(&c, 1, None);
        assert_eq!(ids, vec![(1, 1), (1, 2), (2, 3)]);
        assert_eq!(
            r,
            CacheRead::Hit {
                next: 4,
                budget_hit: false
            }
        );
        assert_eq!(read_all(&c, 4, None).0, CacheRead::Miss);
        // A gap (entries after a snapshot install) restarts the cache.
        c.insert(entry(2, 10), 10);
        assert_eq!((c.first_index(), c.last_index()), (Some(10), Some(10)));
        assert_eq!(read_all(&c, 3, None).0, CacheRead::Miss);
        // Before the first cached entry: restart too.
        c.insert(entry(3, 2), 10);
        assert_eq!((c.first_index(), c.last_index()), (Some(2), Some(2)));
    }

    #[test]
    fn records_are_found_by_log_id_only() {
        let mut c = EntryCache::new(100, 1 << 20);
        for i in 1..=3 {
            c.insert_with_record(entry(1, i), Bytes::from(vec![i as u8; 4]));
        }
        c.insert(entry(1, 4), 4);
        assert_eq!(
            c.record(&entry(1, 2).log_id).as_deref(),
            Some(&[2u8; 4][..])
        );
        // Another term at the same index is another entry; no record stored, none handed out.
        assert_eq!(c.record(&entry(2, 2).log_id), None);
        assert_eq!(c.record(&entry(1, 4).log_id), None);
        assert_eq!(c.record(&entry(1, 9).log_id), None);
        assert_eq!(c.record(&entry(1, 0).log_id), None);
        c.insert_with_record(entry(2, 2), Bytes::from_static(b"new"));
        assert_eq!(c.record(&entry(1, 2).log_id), None);
        assert_eq!(c.record(&entry(2, 2).log_id).as_deref(), Some(&b"new"[..]));
        assert_eq!(
            c.record(&entry(1, 3).log_id),
            None,
            "the overwritten suffix is gone"
        );
    }

    #[test]
    fn truncate_and_purge_trim_and_nothing_truncated_is_served() {
        let mut c = EntryCache::new(100, 1 << 20);
        for i in 1..=10 {
            c.insert(entry(1, i), 10);
        }
        c.truncate_from(7);
        assert_eq!(c.last_index(), Some(6));
        assert_eq!(read_all(&c, 7, None).0, CacheRead::Miss);
        let (_, ids) = read_all(&c, 5, Some(100));
        assert_eq!(ids, vec![(1, 5), (1, 6)]);
        c.purge_to(3);
        assert_eq!(c.first_index(), Some(4));
        assert_eq!(read_all(&c, 3, None).0, CacheRead::Miss);
        c.truncate_from(0);
        assert!(c.is_empty());
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn bounds_evict_the_oldest_and_budgets_cut_reads() {
        let mut c = EntryCache::new(4, 1 << 20);
        for i in 1..=6 {
            c.insert(entry(1, i), 10);
        }
        assert_eq!(
            (c.first_index(), c.last_index(), c.len()),
            (Some(3), Some(6), 4)
        );
        let mut c = EntryCache::new(100, 25);
        for i in 1..=6 {
            c.insert(entry(1, i), 10);
        }
        assert_eq!((c.first_index(), c.len(), c.bytes), (Some(5), 2, 20));
        // One entry larger than the whole bound is still cached alone.
        c.insert(entry(1, 7), 100);
        assert_eq!((c.first_index(), c.len()), (Some(7), 1));

        let mut c = EntryCache::new(100, 1 << 20);
        for i in 1..=6 {
            c.insert(entry(1, i), 10);
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let r = c.read(2, Some(6), Some(25), &mut bytes, &mut out);
        assert_eq!(
            r,
            CacheRead::Hit {
                next: 4,
                budget_hit: true
            }
        );
        assert_eq!(out.len(), 2);
        // At least one entry, however small the budget.
        let mut out = Vec::new();
        c.read(2, None, Some(1), &mut 0, &mut out);
        assert_eq!(out.len(), 1);
        // Caching off.
        let mut off = EntryCache::new(0, 0);
        off.insert(entry(1, 1), 1);
        assert!(off.is_empty());
    }
}
