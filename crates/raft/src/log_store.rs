//! sled-backed Raft log storage (openraft `storage-v2` [`RaftLogStorage`]).
//!
//! Layout (two trees of the node's sled database):
//! - `raft_log`: one entry per key, the key is the log index as 8 big-endian bytes (so sled's
//!   lexicographic order is the index order), the value is the JSON-encoded [`Entry`].
//! - `raft_meta`: `vote`, `committed`, `last_purged` and, in a restored data dir, `cluster_id`
//!   (JSON).
//!
//! Durability: `save_vote` and `append` flush the database (`flush_async`) before answering or
//! before calling `log_io_completed`: a lost vote could let a node vote twice in a term (two
//! leaders) and a lost acknowledged entry could lose a committed write. An `append` call writes
//! its whole batch with one sled batch and one flush, so group commit comes for free when
//! openraft hands over several entries. `purge` records the purge point before deleting entries,
//! so a crash in between leaves extra entries, never a hole.
//!
//! Replication reads through [`RaftLogReader::limited_get_log_entries`], which stops once the
//! entries read reach `max_append_bytes` (their stored JSON size, which is what travels): one
//! AppendEntries then carries a bounded number of bytes, not only openraft's bounded number of
//! entries (at least one entry, however large, so replication always progresses).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::sto_err;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOG_TREE: &str = "raft_log";
pub(crate) const META_TREE: &str = "raft_meta";
const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";
/// The cluster id written by `varpulis snapshot restore` (JSON string); absent otherwise
/// ([`crate::cluster_id`]).
pub(crate) const KEY_CLUSTER_ID: &[u8] = b"cluster_id";

/// The Raft log in sled. Cheap to clone: clones share the same trees (the clone is also the
/// log reader used by replication tasks).
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// Byte budget of one replication read (one AppendEntries).
    max_append_bytes: usize,
}

/// Default byte budget of one AppendEntries (`RaftConfig::max_append_bytes`).
pub const DEFAULT_MAX_APPEND_BYTES: usize = 1024 * 1024;

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the log trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, StorageError> {
        let log = db
            .open_tree(LOG_TREE)
            .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let meta = db
            .open_tree(META_TREE)
            .map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
        Ok(Self {
            db: db.clone(),
            log,
            meta,
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
        })
    }

    /// The same store whose replication reads stop at `bytes` (at least one entry).
    pub fn with_max_append_bytes(mut self, bytes: usize) -> Self {
        self.max_append_bytes = bytes.max(1);
        self
    }

    /// True when nothing was ever written: no vote and no log (initialization is allowed).
    pub fn is_fresh(&self) -> Result<bool, StorageError> {
        let vote: Option<Vote> = self.get_meta(KEY_VOTE, ErrorSubject::Vote)?;
        let purged: Option<LogId> = self.get_meta(KEY_LAST_PURGED, ErrorSubject::Logs)?;
        Ok(vote.is_none() && purged.is_none() && self.log.is_empty())
    }

    /// The cluster id stored in this database, if one was (a restored cluster's).
    pub fn stored_cluster_id(&self) -> Result<Option<String>, StorageError> {
        self.get_meta(KEY_CLUSTER_ID, ErrorSubject::Store)
    }

    fn get_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<u64>,
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self
            .meta
            .get(key)
            .map_err(|e| sto_err(subject.clone(), ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| sto_err(subject, ErrorVerb::Read, e))
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| sto_err(subject.clone(), ErrorVerb::Write, e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| sto_err(subject, ErrorVerb::Write, e))?;
        Ok(())
    }

    async fn flush(&self, subject: ErrorSubject<u64>) -> Result<(), StorageError> {
        self.db
            .flush_async()
            .await
            .map_err(|e| sto_err(subject, ErrorVerb::Write, e))?;
        Ok(())
    }

    fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
        serde_json::from_slice(bytes)
            .map_err(|e| sto_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let Some((key, value)) = self
            .log
            .last()
            .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        let entry = Self::decode_entry(index_of(&key), &value)?;
        Ok(Some(entry.log_id))
    }

    /// Removes every entry whose index is in `[from, to)` (`to = None`: to the end).
    fn remove_range(&self, from: u64, to: Option<u64>) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        let iter = match to {
            Some(to) => self.log.range(from.to_be_bytes()..to.to_be_bytes()),
            None => self.log.range(from.to_be_bytes()..),
        };
        for item in iter {
            let (key, _) = item.map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
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
        let mut out = Vec::new();
        for item in self.log.range(start.to_be_bytes()..) {
            let (key, value) = item.map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let index = index_of(&key);
            if end.is_some_and(|end| index >= end) {
                break;
            }
            out.push(Self::decode_entry(index, &value)?);
        }
        Ok(out)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let mut bytes = 0usize;
        for item in self.log.range(start.to_be_bytes()..end.to_be_bytes()) {
            let (key, value) = item.map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            bytes = bytes.saturating_add(value.len());
            if !out.is_empty() && bytes > self.max_append_bytes {
                break;
            }
            out.push(Self::decode_entry(index_of(&key), &value)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> =
            self.get_meta(KEY_LAST_PURGED, ErrorSubject::Logs)?;
        let last_log_id = self.last_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, ErrorSubject::Vote)?;
        // Flush before answering: a vote forgotten after a crash lets this node vote twice in
        // one term, which allows two leaders.
        self.flush(ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(KEY_VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: it rides along with the next flush. Losing it only means the
        // node re-learns the commit point from the leader instead of replaying it at start-up.
        self.put_meta(KEY_COMMITTED, &committed, ErrorSubject::Store)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_meta::<Option<LogId>>(KEY_COMMITTED, ErrorSubject::Store)?
            .flatten())
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| sto_err(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        // One flush for the whole batch, and only then report the entries as durable: the
        // leader counts this node in the quorum as soon as the callback fires.
        let res = self.db.flush_async().await;
        match res {
            Ok(_) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                callback.log_io_completed(Err(std::io::Error::other(msg)));
                Err(sto_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.remove_range(log_id.index, None)?;
        self.flush(ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first (and make it durable): a crash after it but before the
        // deletion leaves entries that are simply ignored, never a hole below last_purged.
        self.put_meta(KEY_LAST_PURGED, &log_id, ErrorSubject::Logs)?;
        self.flush(ErrorSubject::Logs).await?;
        self.remove_range(0, log_id.index.checked_add(1))?;
        Ok(())
    }
}
