//! Raft log storage (openraft `storage-v2` [`RaftLogStorage`]): entries in the log's own
//! segment files, metadata in sled.
//!
//! Layout (storage layout 3, `layout::LAYOUT_WAL`):
//! - `<raft dir>/wal/`: the entries, in segment files ([`crate::wal`]); each record holds the
//!   entry's log id and the [`Entry`] in the versioned storage format of [`crate::codec`].
//! - the `raft_meta` tree of the node's sled database: `vote`, `committed`, `last_purged`, in a
//!   restored data dir `cluster_id`, and the `format` marker ([`crate::migrate`]).
//!
//! Opening a data dir of layout 2 or older (the entries in sled's `raft_log` tree, JSON records
//! first converted by [`crate::migrate`]) copies the entries into fresh segment files, syncs them,
//! sets the marker to 3, and only then empties the tree; a crash before the marker redoes the copy
//! from the tree. A marker above 3 is refused (written by a newer binary), and a binary older
//! than layout 3 refuses this data dir in turn (its marker is newer than it knows).
//!
//! Durability: `append` writes its whole batch with one `write` and `fdatasync`s it (on the
//! [`crate::flusher`] thread) before calling `log_io_completed`; a lost acknowledged entry could
//! lose a committed write. `save_vote` flushes sled before answering: a lost vote could let a node
//! vote twice in a term (two leaders). `purge` records the purge point (flushed) before the
//! segment files below it are deleted, so a crash in between leaves extra entries, never a hole.
//!
//! Records are encoded once: the leader's entry cache keeps the record each entry was stored
//! as, which replication sends as is (wire format 2, `rpc_codec`), and a follower stores
//! the records it received in a version-2 AppendEntries ([`Received`]: matched by log id, which
//! names one entry in a Raft log) instead of encoding the decoded entries again.
//!
//! Replication reads are served from an [`EntryCache`] of the most recent entries (filled by
//! `append`, trimmed by `truncate` and `purge`) and fall back to the segment files below it.
//! [`RaftLogReader::limited_get_log_entries`] stops once the entries read reach
//! `max_append_bytes` (their stored sizes; the command bodies, the bulk of what travels): one
//! AppendEntries then carries a bounded number of bytes, not only openraft's bounded number of
//! entries (at least one entry, however large, so replication always progresses).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};

use crate::codec::{self, CodecError};
use crate::entry_cache::{
    CacheRead, EntryCache, SharedCache, DEFAULT_CACHE_BYTES, DEFAULT_CACHE_ENTRIES,
};
use crate::error::sto_err;
use crate::flusher::Flusher;
use crate::layout::{
    KEY_CLUSTER_ID, KEY_COMMITTED, KEY_FORMAT, KEY_LAST_PURGED, KEY_VOTE, LAYOUT_WAL, LOG_TREE,
    META_TREE,
};
use crate::purger::Purger;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};
use crate::wal::{Wal, WalError};

/// Entries copied per append when a sled log is moved into segment files.
const IMPORT_BATCH: usize = 1024;

/// The Raft log. Cheap to clone: clones share the same files, trees and entry cache (the clone
/// is also the log reader used by replication tasks).
#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Mutex<Wal>>,
    /// The segment files' directory (also holds the vote, `vote_file.rs`).
    wal_dir: Arc<Path>,
    meta: sled::Tree,
    /// The most recent entries, decoded, with their records (see [`crate::entry_cache`]).
    cache: SharedCache,
    /// Records received from the leader, waiting for their entries' append.
    received: Arc<Mutex<Received>>,
    /// Byte budget of one replication read (one AppendEntries).
    max_append_bytes: usize,
    /// Makes the writes durable ([`crate::flusher`]).
    flusher: Flusher,
    /// Deletes purged entries in the background, one purge at a time.
    purger: Purger,
    /// Index of the first entry above the purge point: reads start here, so an entry the
    /// background deletion has not reached yet is never served.
    first_kept: Arc<AtomicU64>,
    /// This node's id, when its own (leader) appends return before their sync
    /// ([`LogStore::with_leader_flush_overlap`]).
    overlap_for: Option<NodeId>,
    /// Own appends whose sync on the flusher thread has not answered yet.
    outstanding: Arc<AtomicUsize>,
}

/// Default byte budget of one AppendEntries (`RaftConfig::max_append_bytes`).
pub const DEFAULT_MAX_APPEND_BYTES: usize = 1024 * 1024;

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the log: its metadata in `db`, its entries in segment files under
    /// `wal_dir`. The database is first brought to the current storage format
    /// ([`crate::migrate`]; a newer format is refused with a clear error), and a log still in
    /// sled is moved into segment files (module docs).
    pub fn open(db: &sled::Db, wal_dir: &Path) -> Result<Self, StorageError> {
        let store_err = |e: &dyn std::fmt::Display| {
            sto_err(
                ErrorSubject::Store,
                ErrorVerb::Read,
                std::io::Error::other(e.to_string()),
            )
        };
        let migrated = crate::migrate::ensure_current(db).map_err(|e| store_err(&e))?;
        let log = db.open_tree(LOG_TREE).map_err(|e| store_err(&e))?;
        let meta = db.open_tree(META_TREE).map_err(|e| store_err(&e))?;
        let mut wal = if migrated.layout < LAYOUT_WAL {
            import_sled_log(db, &log, &meta, wal_dir).map_err(|e| store_err(&e))?
        } else {
            // Layout 3 names segment files: without their directory this node would start over
            // an empty log after having voted and acknowledged entries.
            if !wal_dir.is_dir() {
                return Err(store_err(&format!(
                    "the raft data dir is in storage layout {LAYOUT_WAL} but its log directory {} \
                     is missing (a copy without it?); refusing to start over an empty log",
                    wal_dir.display()
                )));
            }
            let wal = Wal::open(wal_dir).map_err(|e| store_err(&e))?;
            if !log.is_empty() {
                // Left by a crash after the copy into segment files was made durable.
                log.clear().map_err(|e| store_err(&e))?;
            }
            wal
        };
        let last_purged = match meta.get(KEY_LAST_PURGED).map_err(|e| store_err(&e))? {
            Some(bytes) => Some(codec::decode_log_id(&bytes).map_err(|e| store_err(&e))?),
            None => None,
        };
        let first_kept = last_purged.map_or(0, |p| p.index.saturating_add(1));
        // Entries at or below the purge point whose deletion a crash interrupted.
        if let Some(p) = last_purged {
            for path in wal.purge_to(p.index) {
                std::fs::remove_file(&path)
                    .map_err(|e| store_err(&format!("{}: {e}", path.display())))?;
            }
        }
        // A log never purged may start anywhere (openraft's first entry is not always index 0).
        if let (Some(first), Some(_)) = (wal.first_index(), last_purged) {
            if first > first_kept {
                return Err(store_err(&format!(
                    "the raft log in {} starts at index {first} but the purge point is {}: entries are missing (refusing to guess; restore this node from a backup or wipe its data dir and let it rejoin)",
                    wal_dir.display(),
                    first_kept.saturating_sub(1)
                )));
            }
        }
        Ok(Self {
            wal: Arc::new(Mutex::new(wal)),
            wal_dir: Arc::from(wal_dir),
            meta,
            cache: Arc::new(Mutex::new(EntryCache::new(
                DEFAULT_CACHE_ENTRIES,
                DEFAULT_CACHE_BYTES,
            ))),
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
            received: Arc::default(),
            flusher: Flusher::start(db),
            purger: Purger::default(),
            first_kept: Arc::new(AtomicU64::new(first_kept)),
            overlap_for: None,
            outstanding: Arc::default(),
        })
    }

    /// Syncs `pending` before returning: on the calling thread, unless a leader's own appends
    /// still wait for their syncs on the flusher thread (a node that just stopped leading);
    /// then behind them on that thread, so that this sync's success also covers everything
    /// they wrote (a segment or the directory this sync does not name).
    async fn sync_after_queued(&self, pending: crate::wal::Pending) -> Result<(), String> {
        if self.outstanding.load(Ordering::SeqCst) == 0 {
            return self.flusher.sync_files(pending).await;
        }
        match self.flusher.queue_files(pending) {
            Ok(answer) => answer.wait().await,
            Err(pending) => self.flusher.sync_files(pending).await,
        }
    }

    /// Appends of entries that node `id` proposed as leader return once the entries are
    /// written and readable, and report them durable (the flush callback) when their sync on
    /// the flusher thread finished: the consensus core replicates them meanwhile (the
    /// vendored openraft's leader path, docs/raft.md "The leader's flush overlaps
    /// replication"). Other appends (a follower's) still sync before returning. `None` turns
    /// it off (every append syncs before returning).
    pub fn with_leader_flush_overlap(mut self, id: Option<NodeId>) -> Self {
        self.overlap_for = id;
        self
    }

    /// Waits until every purge requested so far has deleted its entries (tests, shutdown).
    pub async fn purges_settled(&self) {
        self.purger.settled().await;
    }

    /// The store's background purges (shared): [`crate::RaftNode::shutdown`] waits for them, so
    /// no deletion still holds the database once a node has shut down.
    pub(crate) fn purger(&self) -> Purger {
        self.purger.clone()
    }

    /// The entry cache (shared: the network sends the records it holds).
    pub fn shared_cache(&self) -> SharedCache {
        self.cache.clone()
    }

    /// Where the `/raft/append` route leaves the records of a version-2 AppendEntries.
    pub fn received(&self) -> Arc<Mutex<Received>> {
        self.received.clone()
    }

    /// The same store whose replication reads stop at `bytes` (at least one entry).
    pub fn with_max_append_bytes(mut self, bytes: usize) -> Self {
        self.max_append_bytes = bytes.max(1);
        self
    }

    /// The same store with an entry cache of at most `entries` entries and `bytes` stored bytes
    /// (`entries = 0`: no cache, every read decodes from sled).
    pub fn with_cache_limits(mut self, entries: usize, bytes: usize) -> Self {
        self.cache = Arc::new(Mutex::new(EntryCache::new(entries, bytes)));
        self
    }

    fn cache(&self) -> MutexGuard<'_, EntryCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The vote: from its file, else (a data dir from before layout 3 that has not voted since)
    /// from sled.
    fn vote(&self) -> Result<Option<Vote>, StorageError> {
        match crate::vote_file::read(&self.wal_dir) {
            Ok(Some(vote)) => Ok(Some(vote)),
            Ok(None) => self.get_meta(KEY_VOTE, ErrorSubject::Vote, codec::decode_vote),
            Err(e) => Err(sto_err(
                ErrorSubject::Vote,
                ErrorVerb::Read,
                std::io::Error::other(e),
            )),
        }
    }

    fn wal(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when nothing was ever written: no vote and no log (initialization is allowed).
    pub fn is_fresh(&self) -> Result<bool, StorageError> {
        let vote = self.vote()?;
        let purged = self.get_meta(KEY_LAST_PURGED, ErrorSubject::Logs, codec::decode_log_id)?;
        Ok(vote.is_none() && purged.is_none() && self.wal().is_empty())
    }

    /// The cluster id stored in this database, if one was (a restored cluster's).
    pub fn stored_cluster_id(&self) -> Result<Option<String>, StorageError> {
        self.get_meta(KEY_CLUSTER_ID, ErrorSubject::Store, codec::decode_str)
    }

    fn get_meta<T>(
        &self,
        key: &[u8],
        subject: ErrorSubject<u64>,
        decode: fn(&[u8]) -> Result<T, CodecError>,
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self
            .meta
            .get(key)
            .map_err(|e| sto_err(subject.clone(), ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        decode(&bytes)
            .map(Some)
            .map_err(|e| sto_err(subject, ErrorVerb::Read, e))
    }

    fn put_meta(
        &self,
        key: &[u8],
        bytes: Vec<u8>,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        self.meta
            .insert(key, bytes)
            .map_err(|e| sto_err(subject, ErrorVerb::Write, e))?;
        Ok(())
    }

    async fn flush(&self, subject: ErrorSubject<u64>) -> Result<(), StorageError> {
        self.flusher
            .flush()
            .await
            .map_err(|e| sto_err(subject, ErrorVerb::Write, std::io::Error::other(e)))
    }

    fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
        codec::decode_entry(bytes)
            .map_err(|e| sto_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.wal().last_log_id()
    }

    /// Entries of `[start, end)` from the segment files, appended to `out`, within the byte
    /// budget.
    fn read_files(
        &self,
        start: u64,
        end: Option<u64>,
        budget: Option<usize>,
        bytes: &mut usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        let wal = self.wal();
        let Some(last) = wal.last_log_id().map(|l| l.index) else {
            return Ok(());
        };
        let end = end.unwrap_or(u64::MAX).min(last.saturating_add(1));
        for index in start..end {
            let read = wal
                .read(index)
                .map_err(|e| sto_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?;
            let Some((_, record)) = read else {
                continue;
            };
            let total = bytes.saturating_add(record.len());
            if budget.is_some_and(|max| total > max) && !out.is_empty() {
                break;
            }
            *bytes = total;
            out.push(Self::decode_entry(index, &record)?);
        }
        Ok(())
    }

    /// The entries of `[start, end)`: from the cache when it holds `start`, then whatever the
    /// cache did not hold from the files (normally nothing: the cache ends at the log's end);
    /// otherwise from the files alone.
    fn read_range(
        &self,
        start: u64,
        end: Option<u64>,
        budget: Option<usize>,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::new();
        let start = start.max(self.first_kept.load(Ordering::Acquire));
        if end.is_some_and(|end| start >= end) {
            return Ok(out);
        }
        let mut bytes = 0usize;
        let read = self.cache().read(start, end, budget, &mut bytes, &mut out);
        match read {
            CacheRead::Hit {
                budget_hit: true, ..
            } => {}
            CacheRead::Hit { next, .. } => {
                if !matches!(end, Some(end) if next >= end) {
                    self.read_files(next, end, budget, &mut bytes, &mut out)?;
                }
            }
            CacheRead::Miss => self.read_files(start, end, budget, &mut bytes, &mut out)?,
        }
        Ok(out)
    }
}

/// Most records kept waiting for their append (beyond, the oldest go: the entry is then
/// encoded again, nothing else changes).
const MAX_RECEIVED_ENTRIES: usize = 8192;
/// Most bytes of records kept waiting.
const MAX_RECEIVED_BYTES: usize = 32 * 1024 * 1024;

/// Storage records that arrived in a version-2 AppendEntries (`rpc_codec`), kept until
/// openraft appends their entries, so the follower stores the bytes it received instead of
/// encoding the decoded entry again. A record is used only for the entry of the same log id (in
/// Raft a log id names one entry), and only a record in the current storage format is kept; a
/// record never used (the entry was already in the log) is dropped when a later index is
/// appended, or by the bounds.
#[derive(Debug, Default)]
pub struct Received {
    records: VecDeque<(LogId, Bytes)>,
    bytes: usize,
}

impl Received {
    /// Keeps the records of one AppendEntries (in log order).
    pub fn offer(&mut self, records: impl IntoIterator<Item = (LogId, Bytes)>) {
        for (id, record) in records {
            if record.first() != Some(&codec::FORMAT_BINARY) {
                continue;
            }
            self.bytes = self.bytes.saturating_add(record.len());
            self.records.push_back((id, record));
        }
        while self.records.len() > MAX_RECEIVED_ENTRIES || self.bytes > MAX_RECEIVED_BYTES {
            self.pop();
        }
    }

    /// The record of the entry `id`, if one arrived; drops the records of lower indexes (and of
    /// other entries at the same index) on the way.
    pub fn take(&mut self, id: &LogId) -> Option<Bytes> {
        while let Some((front, _)) = self.records.front() {
            if front.index < id.index || (front.index == id.index && front != id) {
                self.pop();
            } else {
                break;
            }
        }
        match self.records.front() {
            Some((front, _)) if front == id => self.pop(),
            _ => None,
        }
    }

    /// Number of records waiting.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record waits.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn pop(&mut self) -> Option<Bytes> {
        let (_, record) = self.records.pop_front()?;
        self.bytes = self.bytes.saturating_sub(record.len());
        Some(record)
    }
}

/// Moves a log kept in sled (layout 2) into fresh segment files under `wal_dir`, then marks the
/// database as layout 3 and empties the tree (module docs).
fn import_sled_log(
    db: &sled::Db,
    log: &sled::Tree,
    meta: &sled::Tree,
    wal_dir: &Path,
) -> Result<Wal, String> {
    // Segment files under a layout-2 database are leftovers of an interrupted copy: the tree is
    // the log.
    if wal_dir.exists() {
        std::fs::remove_dir_all(wal_dir).map_err(|e| format!("{}: {e}", wal_dir.display()))?;
    }
    let mut wal = Wal::open(wal_dir).map_err(|e| e.to_string())?;
    let mut copied = 0usize;
    let mut chunk: Vec<(LogId, sled::IVec)> = Vec::with_capacity(IMPORT_BATCH);
    let mut flush_chunk = |wal: &mut Wal, chunk: &mut Vec<(LogId, sled::IVec)>| {
        wal.append(chunk.iter().map(|(id, r)| (*id, &r[..])))
            .map_err(|e: WalError| e.to_string())?;
        copied += chunk.len();
        chunk.clear();
        Ok::<(), String>(())
    };
    for item in log.iter() {
        let (key, value) = item.map_err(|e| e.to_string())?;
        let entry = codec::decode_entry(&value)
            .map_err(|e| format!("log entry {}: {e}", index_of(&key)))?;
        chunk.push((entry.log_id, value));
        if chunk.len() >= IMPORT_BATCH {
            flush_chunk(&mut wal, &mut chunk)?;
        }
    }
    flush_chunk(&mut wal, &mut chunk)?;
    wal.take_pending()
        .sync()
        .map_err(|e| format!("cannot sync the raft log: {e}"))?;
    meta.insert(KEY_FORMAT, &[LAYOUT_WAL])
        .map_err(|e| e.to_string())?;
    db.flush().map_err(|e| e.to_string())?;
    log.clear().map_err(|e| e.to_string())?;
    db.flush().map_err(|e| e.to_string())?;
    if copied > 0 {
        tracing::info!(
            entries = copied,
            dir = %wal_dir.display(),
            "raft log moved from sled into segment files (storage layout {LAYOUT_WAL})"
        );
    }
    Ok(wal)
}

fn index_of(key: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = key.len().min(8);
    buf[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(buf)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => match x.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => x.checked_add(1),
            Bound::Excluded(x) => Some(*x),
            Bound::Unbounded => None,
        };
        self.read_range(start, end, None)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_range(start, Some(end), Some(self.max_append_bytes))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id =
            self.get_meta(KEY_LAST_PURGED, ErrorSubject::Logs, codec::decode_log_id)?;
        // Entries at or below the purge point may still be in the files (a segment is deleted
        // once all its entries are purged): the last log id is never below the purge point.
        let last_log_id = match (self.last_log_id(), last_purged_log_id) {
            (Some(last), Some(purged)) if last.index <= purged.index => Some(purged),
            (last, purged) => last.or(purged),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        // Durable before answering: a vote forgotten after a crash lets this node vote twice in
        // one term, which allows two leaders (`vote_file.rs`: fdatasync, not sled's
        // sync_file_range).
        let (dir, vote) = (self.wal_dir.clone(), *vote);
        tokio::task::spawn_blocking(move || crate::vote_file::write(&dir, &vote))
            .await
            .map_err(|e| {
                sto_err(
                    ErrorSubject::Vote,
                    ErrorVerb::Write,
                    std::io::Error::other(e),
                )
            })?
            .map_err(|e| sto_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.vote()
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: it rides along with the next flush. Losing it only means the
        // node re-learns the commit point from the leader instead of replaying it at start-up.
        self.put_meta(
            KEY_COMMITTED,
            codec::encode_opt_log_id(&committed),
            ErrorSubject::Store,
        )
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let stored = self
            .get_meta(KEY_COMMITTED, ErrorSubject::Store, codec::decode_opt_log_id)?
            .flatten();
        // A leader commits entries its followers hold before its own sync finished (docs/raft.md,
        // "The leader's flush overlaps replication"), and sled may persist that commit point
        // before the log's tail reaches the disk. After a power cut the point can then lie past
        // the last entry this node holds: it is only used to replay entries at start-up, so
        // capping it at the log's end is safe (the leader brings the rest).
        let last = self.wal().last_log_id();
        Ok(match (stored, last) {
            (Some(c), Some(l)) if c.index > l.index => Some(l),
            (c, _) => c,
        })
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut written = Vec::new();
        {
            let mut received = self.received.lock().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                let record = match received.take(&entry.log_id) {
                    Some(record) => record,
                    None => Bytes::from(codec::encode_entry(&entry).map_err(|e| {
                        sto_err(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e)
                    })?),
                };
                written.push((entry, record));
            }
        }
        let written_by = written.last().map(|(e, _)| e.log_id.leader_id.node_id);
        let pending = {
            let mut wal = self.wal();
            wal.append(written.iter().map(|(e, r)| (e.log_id, &r[..])))
                .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
            wal.take_pending()
        };
        {
            // Readable in the files now, so readable in the cache too (replication may send
            // entries before they are durable here; the quorum counts this node only after the
            // sync).
            let mut cache = self.cache();
            for (entry, record) in written {
                cache.insert_with_record(entry, record);
            }
        }
        // One sync for the whole batch, and only then report the entries as durable: the
        // leader counts this node in the quorum as soon as the callback fires.
        let own = written_by.is_some() && written_by == self.overlap_for;
        let pending = if own {
            // Queued now, from this call, so the flusher thread syncs the appends in order;
            // only the wait for the answer runs in a task.
            match self.flusher.queue_files(pending) {
                Ok(answer) => {
                    let outstanding = self.outstanding.clone();
                    outstanding.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let result = answer.wait().await;
                        outstanding.fetch_sub(1, Ordering::SeqCst);
                        callback.log_io_completed(result.map_err(std::io::Error::other));
                    });
                    return Ok(());
                }
                // No flusher thread: sync before returning.
                Err(pending) => pending,
            }
        } else {
            pending
        };
        match self.sync_after_queued(pending).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(msg) => {
                callback.log_io_completed(Err(std::io::Error::other(msg.clone())));
                Err(sto_err(
                    ErrorSubject::Logs,
                    ErrorVerb::Write,
                    std::io::Error::other(msg),
                ))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The cache first: once this returns, no reader may be handed a truncated entry.
        self.cache().truncate_from(log_id.index);
        let pending = {
            let mut wal = self.wal();
            wal.truncate_from(log_id.index)
                .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
            wal.take_pending()
        };
        self.sync_after_queued(pending).await.map_err(|e| {
            sto_err(
                ErrorSubject::Logs,
                ErrorVerb::Delete,
                std::io::Error::other(e),
            )
        })
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first; the segment files wholly below it are deleted only once
        // it is durable (a crash in between leaves entries that are simply ignored, never a hole
        // below last_purged). The flush and the deletion run in the background ([`Purger`]):
        // openraft's core awaits `purge`, and while it waits it neither sends heartbeats nor
        // answers appends.
        self.put_meta(
            KEY_LAST_PURGED,
            codec::encode_log_id(&log_id),
            ErrorSubject::Logs,
        )?;
        self.first_kept
            .fetch_max(log_id.index.saturating_add(1), Ordering::AcqRel);
        self.cache().purge_to(log_id.index);
        let (gone, emptied) = {
            let mut wal = self.wal();
            let gone = wal.purge_to(log_id.index);
            (gone, wal.is_empty())
        };
        if emptied {
            // The next append starts the log past the purge point (an installed snapshot): the
            // point must be durable first, or a crash would reopen a log that starts above it.
            // Rare (snapshot installs), so the core may wait for this flush.
            self.flush(ErrorSubject::Logs).await?;
        }
        self.purger.delete_files(self.flusher.clone(), gone).await;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};
    use std::collections::BTreeMap;
    use varpulis_cluster::Command;

    fn entry(term: u64, index: u64, len: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Command::DeregisterWorker {
                worker_id: format!("{term}-{index}-{}", "x".repeat(len)),
            }),
        }
    }

    /// Opens the database in `dir`, retrying while a just-dropped handle's background threads
    /// still hold sled's lock.
    fn open_db(dir: &std::path::Path) -> sled::Db {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match sled::Config::new().path(dir).open() {
                Ok(db) => return db,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("cannot open sled: {e}"),
            }
        }
    }

    fn open(dir: &std::path::Path) -> (sled::Db, LogStore) {
        let db = open_db(dir);
        let store = LogStore::open(&db, &dir.join(crate::layout::WAL_DIR)).unwrap();
        (db, store)
    }

    fn ids(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    /// The leader's own appends return before their sync and report it through the callback;
    /// a later leader's appends sync before returning; both kinds survive a reopen.
    #[tokio::test]
    async fn own_appends_with_the_overlap_complete_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, store) = open(dir.path());
            // `entry` writes node 1's entries.
            let mut store = store.with_leader_flush_overlap(Some(1));
            for batch in 0..10u64 {
                let own: Vec<Entry> = (batch * 10 + 1..=batch * 10 + 10)
                    .map(|i| entry(1, i, 3))
                    .collect();
                // Readable as soon as `append` returned, durable once the callback said so.
                store.blocking_append(own).await.unwrap();
                assert_eq!(
                    store
                        .try_get_log_entries(batch * 10 + 1..batch * 10 + 11)
                        .await
                        .unwrap()
                        .len(),
                    10
                );
            }
            let theirs = (101..=105).map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(2, 2), i),
                ..entry(2, i, 3)
            });
            store.blocking_append(theirs).await.unwrap();
        }
        let (_db, mut store) = open(dir.path());
        let all = store.try_get_log_entries(1..).await.unwrap();
        assert_eq!(all.len(), 105);
        assert_eq!(all[104].log_id.leader_id.node_id, 2);
    }

    /// A commit point stored past the log's end (a power cut took the log's unsynced tail but
    /// not the commit point) is read back capped at the last entry: start-up replays only
    /// entries the node holds.
    #[tokio::test]
    async fn a_commit_point_past_the_log_end_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, mut store) = open(dir.path());
            store
                .blocking_append((1..=5).map(|i| entry(1, i, 3)))
                .await
                .unwrap();
            store
                .save_committed(Some(LogId::new(CommittedLeaderId::new(1, 1), 9)))
                .await
                .unwrap();
            store.flusher.flush().await.unwrap();
        }
        let (_db, mut store) = open(dir.path());
        assert_eq!(
            store.read_committed().await.unwrap(),
            Some(LogId::new(CommittedLeaderId::new(1, 1), 5))
        );
        store
            .save_committed(Some(LogId::new(CommittedLeaderId::new(1, 1), 3)))
            .await
            .unwrap();
        assert_eq!(
            store.read_committed().await.unwrap(),
            Some(LogId::new(CommittedLeaderId::new(1, 1), 3))
        );
    }

    #[tokio::test]
    async fn a_truncated_entry_is_never_served_and_an_overwrite_is() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, mut store) = open(dir.path());
        store
            .blocking_append((1..=10).map(|i| entry(1, i, 3)))
            .await
            .unwrap();
        assert_eq!(store.try_get_log_entries(1..11).await.unwrap().len(), 10);
        store
            .truncate(LogId::new(CommittedLeaderId::new(1, 1), 6))
            .await
            .unwrap();
        assert_eq!(
            ids(&store.try_get_log_entries(1..).await.unwrap()),
            (1..=5).map(|i| (1, i)).collect::<Vec<_>>()
        );
        assert!(store.try_get_log_entries(6..11).await.unwrap().is_empty());
        assert!(store
            .limited_get_log_entries(6, 11)
            .await
            .unwrap()
            .is_empty());
        // The new leader's entries replace them, in the cache and in sled alike.
        store
            .blocking_append((6..=8).map(|i| entry(2, i, 3)))
            .await
            .unwrap();
        let got = store.try_get_log_entries(4..=8).await.unwrap();
        assert_eq!(ids(&got), vec![(1, 4), (1, 5), (2, 6), (2, 7), (2, 8)]);
        assert_eq!(got[2], entry(2, 6, 3));
        // Purged entries are gone from both too.
        store
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 4))
            .await
            .unwrap();
        store.purges_settled().await;
        assert_eq!(
            ids(&store.try_get_log_entries(0..).await.unwrap()),
            vec![(1, 5), (2, 6), (2, 7), (2, 8)]
        );
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(8));
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(4));
    }

    #[tokio::test]
    async fn a_purge_past_the_log_end_reports_the_purge_point_and_deletes_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, mut store) = open(dir.path());
        store
            .blocking_append((1..=3000).map(|i| entry(1, i, 3)))
            .await
            .unwrap();
        // An installed snapshot ends past the log: everything is purged.
        let upto = LogId::new(CommittedLeaderId::new(2, 1), 5000);
        store.purge(upto).await.unwrap();
        // Not served even before the background deletion reached them.
        assert!(store.try_get_log_entries(0..).await.unwrap().is_empty());
        // Before and after the background deletion, the log state is the purge point.
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(upto));
        assert_eq!(state.last_log_id, Some(upto));
        store.purges_settled().await;
        assert!(store.wal().is_empty());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(upto));
        // A purge below the end deletes exactly the entries up to it, in several batches.
        store
            .blocking_append((5001..=8000).map(|i| entry(2, i, 3)))
            .await
            .unwrap();
        store
            .purge(LogId::new(CommittedLeaderId::new(2, 1), 7500))
            .await
            .unwrap();
        store.purges_settled().await;
        assert_eq!(store.wal().len(), 500);
        let got = store.try_get_log_entries(7501..).await.unwrap();
        assert_eq!(got.first().map(|e| e.log_id.index), Some(7501));
        assert_eq!(got.len(), 500);
    }

    /// A small deterministic generator (no test dependency needed).
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n.max(1)
        }
    }

    #[tokio::test]
    async fn cached_reads_equal_uncached_reads_and_the_log_under_random_operations() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // A small cache (evictions happen) against no cache at all, and a model of the log.
        let (_db1, cached) = open(dirs.0.path());
        let mut cached = cached
            .with_cache_limits(16, 1500)
            .with_max_append_bytes(400);
        let (_db2, plain) = open(dirs.1.path());
        let mut plain = plain.with_cache_limits(0, 0).with_max_append_bytes(400);
        let mut model: BTreeMap<u64, Entry> = BTreeMap::new();
        let (mut term, mut purged) = (1u64, 0u64);
        let mut rng = Lcg(7);
        for _ in 0..400 {
            let last = model.keys().next_back().copied().unwrap_or(purged);
            match rng.below(10) {
                0..=5 => {
                    let n = 1 + rng.below(5);
                    let batch: Vec<Entry> = (last + 1..=last + n)
                        .map(|i| entry(term, i, rng.below(60) as usize))
                        .collect();
                    for e in &batch {
                        model.insert(e.log_id.index, e.clone());
                    }
                    cached.blocking_append(batch.clone()).await.unwrap();
                    plain.blocking_append(batch).await.unwrap();
                }
                6 | 7 if last > purged + 1 => {
                    // A conflict: a new leader's entries overwrite the tail from `at`.
                    let at = purged + 1 + rng.below(last - purged);
                    let id = model[&at].log_id;
                    cached.truncate(id).await.unwrap();
                    plain.truncate(id).await.unwrap();
                    model.retain(|i, _| *i < at);
                    term += 1;
                    let batch: Vec<Entry> = (at..at + 1 + rng.below(3))
                        .map(|i| entry(term, i, rng.below(60) as usize))
                        .collect();
                    for e in &batch {
                        model.insert(e.log_id.index, e.clone());
                    }
                    cached.blocking_append(batch.clone()).await.unwrap();
                    plain.blocking_append(batch).await.unwrap();
                }
                8 if last > purged + 2 => {
                    let upto = purged + 1 + rng.below(last - purged - 1);
                    let id = model[&upto].log_id;
                    cached.purge(id).await.unwrap();
                    plain.purge(id).await.unwrap();
                    cached.purges_settled().await;
                    plain.purges_settled().await;
                    model.retain(|i, _| *i > upto);
                    purged = upto;
                }
                _ => {}
            }
            let last = model.keys().next_back().copied().unwrap_or(purged);
            let start = rng.below(last + 3);
            let end = start + rng.below(30);
            let expected: Vec<Entry> = model.range(start..end).map(|(_, e)| e.clone()).collect();
            assert_eq!(
                cached.try_get_log_entries(start..end).await.unwrap(),
                expected
            );
            assert_eq!(
                plain.try_get_log_entries(start..end).await.unwrap(),
                expected
            );
            let all: Vec<Entry> = model.range(start..).map(|(_, e)| e.clone()).collect();
            assert_eq!(cached.try_get_log_entries(start..).await.unwrap(), all);
            let limited = cached.limited_get_log_entries(start, end).await.unwrap();
            assert_eq!(
                limited,
                plain.limited_get_log_entries(start, end).await.unwrap()
            );
            assert!(expected.starts_with(&limited));
            assert_eq!(limited.is_empty(), expected.is_empty());
        }
    }

    /// `entry`'s record with a space before its JSON body: decodes to the same entry, but is
    /// not what `encode_entry` writes, so it shows which bytes were stored.
    fn spaced_record(e: &Entry) -> Bytes {
        let plain = codec::encode_entry(e).unwrap();
        let mut spaced = plain[..codec::ENTRY_HEADER_LEN].to_vec();
        spaced.push(b' ');
        spaced.extend_from_slice(&plain[codec::ENTRY_HEADER_LEN..]);
        assert_eq!(codec::decode_entry(&spaced).unwrap(), *e);
        Bytes::from(spaced)
    }

    #[tokio::test]
    async fn received_records_are_stored_as_they_arrived_for_their_entry_only() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut store) = open(dir.path());
        let (e1, e2, e3) = (entry(1, 1, 3), entry(1, 2, 3), entry(1, 3, 3));
        let other_term = entry(2, 2, 3);
        store.received().lock().unwrap().offer(vec![
            (e1.log_id, spaced_record(&e1)),
            // Another entry at index 2 (another term): never stored for e2.
            (other_term.log_id, spaced_record(&other_term)),
            // A JSON record is not kept.
            (e3.log_id, Bytes::from(serde_json::to_vec(&e3).unwrap())),
        ]);
        assert_eq!(store.received().lock().unwrap().len(), 2);
        store
            .blocking_append(vec![e1.clone(), e2.clone(), e3.clone()])
            .await
            .unwrap();
        assert!(store.received().lock().unwrap().is_empty());
        drop(db);
        let raw = |i: u64| store.wal().read(i).unwrap().unwrap().1;
        assert_eq!(raw(1), spaced_record(&e1).to_vec(), "stored as received");
        assert_eq!(raw(2), codec::encode_entry(&e2).unwrap(), "encoded here");
        assert_eq!(raw(3), codec::encode_entry(&e3).unwrap(), "encoded here");
        // The cache hands the same records to replication.
        let cache = store.shared_cache();
        assert_eq!(
            cache.lock().unwrap().record(&e1.log_id).unwrap().to_vec(),
            raw(1)
        );
        // Reads decode them to the entries.
        assert_eq!(
            store
                .with_cache_limits(0, 0)
                .try_get_log_entries(1..4)
                .await
                .unwrap(),
            vec![e1, e2, e3]
        );
    }

    #[test]
    fn received_records_are_bounded_and_skipped_past() {
        let mut r = Received::default();
        let ids: Vec<LogId> = (1..=5)
            .map(|i| LogId::new(CommittedLeaderId::new(1, 1), i))
            .collect();
        r.offer(
            ids.iter()
                .map(|id| (*id, Bytes::from(vec![codec::FORMAT_BINARY; 4]))),
        );
        // Asking for index 3 drops 1 and 2 (their entries were in the log already).
        assert!(r.take(&ids[2]).is_some());
        assert_eq!(r.len(), 2);
        // An index below what is kept: nothing, and nothing dropped.
        assert!(r.take(&ids[0]).is_none());
        assert_eq!(r.len(), 2);
        r.offer((0..MAX_RECEIVED_ENTRIES as u64 + 10).map(|i| {
            (
                LogId::new(CommittedLeaderId::new(1, 1), 100 + i),
                Bytes::from_static(&[codec::FORMAT_BINARY]),
            )
        }));
        assert_eq!(r.len(), MAX_RECEIVED_ENTRIES);
    }

    #[tokio::test]
    async fn records_are_written_in_the_binary_format_and_an_unknown_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut store) = open(dir.path());
        store
            .blocking_append((1..=3).map(|i| entry(1, i, 1)))
            .await
            .unwrap();
        store.save_vote(&Vote::new(1, 1)).await.unwrap();
        let meta = db.open_tree(META_TREE).unwrap();
        for i in 1..=3 {
            assert_eq!(
                store.wal().read(i).unwrap().unwrap().1[0],
                codec::FORMAT_BINARY
            );
        }
        // The vote is in its own file now, not in sled.
        assert!(meta.get(KEY_VOTE).unwrap().is_none());
        assert_eq!(
            crate::vote_file::read(&dir.path().join(crate::layout::WAL_DIR)).unwrap(),
            Some(Vote::new(1, 1))
        );
        assert_eq!(
            meta.get(KEY_FORMAT).unwrap().unwrap().as_ref(),
            &[LAYOUT_WAL]
        );
        // A record of an unknown version is an error, not a guess.
        store
            .wal()
            .append([(entry(1, 4, 1).log_id, &[7u8, 0, 0][..])])
            .unwrap();
        let mut reader = store.clone().with_cache_limits(0, 0);
        let err = reader.try_get_log_entries(4..5).await.unwrap_err();
        assert!(err.to_string().contains("format version 7"), "{err}");
    }

    /// A layout-2 database: the log in sled (`records` as given), marker 2.
    fn layout2_db(dir: &std::path::Path, records: &[(u64, Vec<u8>)]) {
        let db = sled::Config::new().path(dir).open().unwrap();
        let log = db.open_tree(LOG_TREE).unwrap();
        for (i, r) in records {
            log.insert(i.to_be_bytes(), r.clone()).unwrap();
        }
        let meta = db.open_tree(META_TREE).unwrap();
        meta.insert(KEY_FORMAT, &[codec::FORMAT_BINARY]).unwrap();
        meta.insert(KEY_VOTE, codec::encode_vote(&Vote::new(3, 1)))
            .unwrap();
        db.flush().unwrap();
    }

    #[tokio::test]
    async fn a_log_in_sled_moves_into_segment_files_once_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<Entry> = (1..=2500).map(|i| entry(1 + i / 1000, i, 5)).collect();
        let mut records: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.log_id.index, codec::encode_entry(e).unwrap()))
            .collect();
        // A JSON record (version 1) is converted on the way.
        records[7].1 = serde_json::to_vec(&entries[7]).unwrap();
        layout2_db(dir.path(), &records);
        // Leftovers of an interrupted earlier copy are not trusted.
        let wal_dir = dir.path().join(crate::layout::WAL_DIR);
        std::fs::create_dir_all(&wal_dir).unwrap();
        std::fs::write(wal_dir.join(format!("{:020}.wal", 1)), b"garbage").unwrap();
        {
            let (db, mut store) = open(dir.path());
            assert_eq!(store.try_get_log_entries(0..).await.unwrap(), entries);
            // The vote of layout 2 is still read from sled, until the next vote.
            assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
            store.save_vote(&Vote::new(5, 1)).await.unwrap();
            assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(5, 1)));
            let meta = db.open_tree(META_TREE).unwrap();
            assert_eq!(
                meta.get(KEY_FORMAT).unwrap().unwrap().as_ref(),
                &[LAYOUT_WAL]
            );
            assert!(db.open_tree(LOG_TREE).unwrap().is_empty());
        }
        // Opened again: layout 3, read from the files (no cache), nothing copied twice.
        let (_db, store) = open(dir.path());
        let mut plain = store.with_cache_limits(0, 0);
        assert_eq!(plain.try_get_log_entries(0..).await.unwrap(), entries);
        assert_eq!(
            plain.get_log_state().await.unwrap().last_log_id,
            Some(entries[2499].log_id)
        );
    }

    #[tokio::test]
    async fn a_newer_layout_is_refused_and_a_hole_below_the_log_is_too() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            let meta = db.open_tree(META_TREE).unwrap();
            meta.insert(KEY_FORMAT, &[LAYOUT_WAL + 1]).unwrap();
            db.flush().unwrap();
            let err = LogStore::open(&db, &dir.path().join("wal")).unwrap_err();
            assert!(err.to_string().contains("newer than this binary"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, mut store) = open(dir.path());
            store
                .blocking_append((5..=9).map(|i| entry(1, i, 1)))
                .await
                .unwrap();
        }
        // Layout 3 without its log directory: refused, not opened as an empty log.
        let moved = dir.path().join("wal-moved");
        std::fs::rename(dir.path().join(crate::layout::WAL_DIR), &moved).unwrap();
        {
            let db = open_db(dir.path());
            let err = LogStore::open(&db, &dir.path().join(crate::layout::WAL_DIR)).unwrap_err();
            assert!(err.to_string().contains("is missing"), "{err}");
        }
        std::fs::rename(&moved, dir.path().join(crate::layout::WAL_DIR)).unwrap();
        // Purged up to 2, but entries 3 and 4 are not there: a hole below index 5.
        let db = open_db(dir.path());
        db.open_tree(META_TREE)
            .unwrap()
            .insert(
                KEY_LAST_PURGED,
                codec::encode_log_id(&LogId::new(CommittedLeaderId::new(1, 1), 2)),
            )
            .unwrap();
        let err = LogStore::open(&db, &dir.path().join(crate::layout::WAL_DIR)).unwrap_err();
        assert!(err.to_string().contains("entries are missing"), "{err}");
    }
}
