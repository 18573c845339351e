//! The replicated state machine: decodes committed entries, applies them to the pure
//! [`ClusterState`], and persists it snapshot-style in sled.
//!
//! Persistence design (snapshot-style): `apply` only changes memory. The state is written to
//! disk when openraft builds a snapshot (`build_snapshot`: serialize, store in the `raft_snapshot`
//! tree, flush) or installs one received from the leader. At start-up the last snapshot is loaded
//! and openraft replays the log after it (it never purges entries above the last snapshot, and the
//! log store keeps the commit index so replay happens at start-up). The state machine therefore
//! never claims more than the disk holds, and there is no partial write to reconcile.
//!
//! Readers see the applied state through a shared [`AppliedState`] (`std::sync::RwLock`: reads
//! are a lock and a borrow), a `watch` of the last applied index, and a broadcast of every applied
//! command with its index.
//!
//! The state sits behind an `Arc`: a reader with long work to do on it (hashing it for
//! `GET /raft/metrics`) takes a reference under the lock and works without holding the lock.
//! `apply` then waits, yielding the consensus thread, until such references are gone before it
//! mutates the state in place ([`wait_for_readers`]); it never blocks the thread behind a slow
//! reader, so heartbeats keep flowing however large the state is.
//!
//! The work proportional to the state's size (serializing it into a snapshot, decoding a
//! received one, writing either to disk) runs on the blocking pool: the consensus runtime has one
//! thread, and a snapshot of a large state built there would stop heartbeats long enough for a
//! follower to start an election. A snapshot is stored by the `snapshot_store` module: its data in
//! a file made durable first, then the metadata naming it in sled (older layouts, with the data
//! inside sled, are still read); what travels to peers and into backups is the JSON state alone.

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use tokio::sync::{broadcast, watch};
use varpulis_api::events::ClusterEvent;
use varpulis_cluster::{ClusterState, CommandResponse, Outcome};

use crate::error::sto_err;
use crate::snapshot_store::{SnapshotStore, StoredSnapshot};
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// Capacity of the applied-events broadcast; slow subscribers see `Lagged` and resync.
const EVENTS_CAPACITY: usize = 4096;

/// The applied state and the index it reflects, read together so a state hash always matches
/// the index it is reported with.
#[derive(Debug, Default)]
pub struct AppliedState {
    /// The cluster state after applying every entry up to `last_applied` (shared with readers
    /// that work on it outside the lock; `apply` waits for them, see the module docs).
    pub state: Arc<ClusterState>,
    /// Index of the last applied entry (`None` before anything was applied).
    pub last_applied: Option<u64>,
}

/// Shared, cheaply readable handle on the applied state.
pub type SharedState = Arc<RwLock<AppliedState>>;

/// One applied command's log index, result and the events it produced (the command itself is
/// not kept: apply moves it into the state, see `apply`).
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedCommand {
    /// Log index of the command.
    pub index: u64,
    /// What applying it returned.
    pub response: CommandResponse,
    /// What it changed, as cluster events (none for a rejection).
    pub events: Vec<ClusterEvent>,
}

/// Something that happened to the applied state, in log order.
#[derive(Debug, Clone, PartialEq)]
pub enum AppliedEvent {
    /// A command was applied (shared: every subscriber gets the same allocation).
    Command(Arc<AppliedCommand>),
    /// The state was replaced by a snapshot ending at `index` (subscribers must re-read it).
    SnapshotInstalled {
        /// Last log index covered by the snapshot.
        index: Option<u64>,
    },
}

/// Locks for reading, ignoring poisoning (the state is only replaced whole or applied by
/// deterministic code; a panic elsewhere must not make reads fail forever).
pub(crate) fn read_lock(s: &RwLock<AppliedState>) -> RwLockReadGuard<'_, AppliedState> {
    s.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock(s: &RwLock<AppliedState>) -> RwLockWriteGuard<'_, AppliedState> {
    s.write().unwrap_or_else(|p| p.into_inner())
}

/// Longest `apply` waits for readers holding a reference to the state before it copies the
/// state instead (a reader that never lets go must not stop the log).
const READER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits, yielding the thread, until no reader holds a reference to the state (then `apply`
/// mutates it in place instead of copying it), or [`READER_PATIENCE`] has passed.
async fn wait_for_readers(shared: &RwLock<AppliedState>) {
    let deadline = tokio::time::Instant::now() + READER_PATIENCE;
    while Arc::strong_count(&read_lock(shared).state) > 1 {
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// The openraft state machine over [`ClusterState`].
pub struct StateMachine {
    shared: SharedState,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    applied_tx: watch::Sender<Option<u64>>,
    events: broadcast::Sender<AppliedEvent>,
    store: SnapshotStore,
    snapshot_seq: u64,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("last_applied", &self.last_applied)
            .finish_non_exhaustive()
    }
}

impl StateMachine {
    /// Opens the state machine of the sled database `db` kept in `raft_dir` (snapshot data
    /// files go to `raft_dir/snapshots`), restoring the last stored snapshot if any. Blocking.
    pub fn open(db: &sled::Db, raft_dir: &std::path::Path) -> Result<Self, StorageError> {
        let store = SnapshotStore::open(db, raft_dir)?;
        let (state, last_applied, last_membership) = match store.load()? {
            Some(snap) => (
                decode_state(&snap.meta, &snap.data)?,
                snap.meta.last_log_id,
                snap.meta.last_membership.clone(),
            ),
            None => (ClusterState::default(), None, StoredMembership::default()),
        };
        let index = last_applied.map(|l| l.index);
        let (applied_tx, _) = watch::channel(index);
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        Ok(Self {
            shared: Arc::new(RwLock::new(AppliedState {
                state: Arc::new(state),
                last_applied: index,
            })),
            last_applied,
            last_membership,
            applied_tx,
            events,
            store,
            snapshot_seq: 0,
        })
    }

    /// The shared applied state (read it with the lock held briefly).
    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }

    /// A receiver of the last applied index.
    pub fn applied_index_watch(&self) -> watch::Receiver<Option<u64>> {
        self.applied_tx.subscribe()
    }

    /// The sender side of the applied-events broadcast (call `subscribe()` on it).
    pub fn events(&self) -> broadcast::Sender<AppliedEvent> {
        self.events.clone()
    }

    fn publish_index(&self) {
        let index = self.last_applied.map(|l| l.index);
        self.applied_tx.send_replace(index);
    }
}

fn decode_state(meta: &SnapshotMeta, data: &[u8]) -> Result<ClusterState, StorageError> {
    serde_json::from_slice(data).map_err(|e| {
        sto_err(
            ErrorSubject::Snapshot(Some(meta.signature())),
            ErrorVerb::Read,
            e,
        )
    })
}

/// The response for entries that carry no command (blank leader entries, membership changes).
fn noop_response() -> CommandResponse {
    CommandResponse::ok(Outcome::Noop)
}

/// Builds a snapshot of the state as it was when openraft asked for the builder.
///
/// The builder holds a reference to that state (taking it is O(1)), and copies it on the blocking
/// pool: a deep copy of a large state made on the consensus runtime's only thread stopped
/// heartbeats for hundreds of milliseconds (measured in session 10: 87–443 ms at over 100,000
/// connectors, on all three nodes at once since they build at the same index, which let the
/// followers' pre-vote win and cost an election under load). `apply` meanwhile waits for the
/// reference to go (yielding the thread, [`wait_for_readers`]), so the state it mutates is never
/// the one being copied.
pub struct SnapshotBuilder {
    state: Option<Arc<ClusterState>>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshot_id: String,
    store: SnapshotStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        };
        let state = self.state.take();
        let sig = meta.signature();
        let t0 = std::time::Instant::now();
        let data = tokio::task::spawn_blocking(move || {
            // Copy, let `apply` go on, then serialize the copy.
            let copy = state.as_deref().cloned().unwrap_or_default();
            drop(state);
            let copied = std::time::Instant::now();
            let data = serde_json::to_vec(&copy);
            tracing::debug!(
                "snapshot: copied in {:?}, serialized in {:?}",
                copied - t0,
                copied.elapsed()
            );
            data
        })
        .await
        .map_err(|e| {
            sto_err(
                ErrorSubject::Snapshot(Some(sig.clone())),
                ErrorVerb::Write,
                std::io::Error::other(e.to_string()),
            )
        })?
        .map_err(|e| sto_err(ErrorSubject::Snapshot(Some(sig)), ErrorVerb::Write, e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        // Durable before openraft learns about it: it purges the log up to this snapshot next.
        let saving = std::time::Instant::now();
        let data = self.store.save(stored, false).await?;
        tracing::debug!(
            bytes = data.len(),
            "snapshot: built in {:?}, stored and flushed in {:?}",
            t0.elapsed(),
            saving.elapsed()
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut applied = Vec::new();
        wait_for_readers(&self.shared).await;
        {
            let mut guard = write_lock(&self.shared);
            for entry in entries {
                self.last_applied = Some(entry.log_id);
                guard.last_applied = Some(entry.log_id.index);
                match entry.payload {
                    EntryPayload::Blank => responses.push(noop_response()),
                    EntryPayload::Normal(cmd) => {
                        // By value: the state keeps what it needs of the command without a copy.
                        // In place unless a reader took a reference since `wait_for_readers`.
                        let outcome = Arc::make_mut(&mut guard.state).apply_owned(cmd);
                        responses.push(outcome.response.clone());
                        applied.push(AppliedEvent::Command(Arc::new(AppliedCommand {
                            index: entry.log_id.index,
                            response: outcome.response,
                            events: outcome.events,
                        })));
                    }
                    EntryPayload::Membership(m) => {
                        self.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        responses.push(noop_response());
                    }
                }
            }
        }
        self.publish_index();
        if self.events.receiver_count() > 0 {
            for ev in applied {
                // No receiver left is fine: events are best-effort notifications.
                let _ = self.events.send(ev);
            }
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        // A reference: the builder copies it on the blocking pool (see [`SnapshotBuilder`]).
        let state = Some(read_lock(&self.shared).state.clone());
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.snapshot_seq),
            None => format!("none-{}", self.snapshot_seq),
        };
        SnapshotBuilder {
            state,
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
            store: self.store.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let decode_meta = meta.clone();
        let (state, data) = tokio::task::spawn_blocking(move || {
            decode_state(&decode_meta, &data).map(|state| (state, data))
        })
        .await
        .map_err(|e| {
            sto_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                std::io::Error::other(e.to_string()),
            )
        })??;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.store.save(stored, true).await?;
        {
            let mut guard = write_lock(&self.shared);
            guard.state = Arc::new(state);
            guard.last_applied = meta.last_log_id.map(|l| l.index);
        }
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.publish_index();
        let _ = self.events.send(AppliedEvent::SnapshotInstalled {
            index: meta.last_log_id.map(|l| l.index),
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let store = self.store.clone();
        let loaded = tokio::task::spawn_blocking(move || store.load())
            .await
            .map_err(|e| {
                sto_err(
                    ErrorSubject::Snapshot(None),
                    ErrorVerb::Read,
                    std::io::Error::other(e.to_string()),
                )
            })??;
        Ok(loaded.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::codec;
    use crate::layout::{KEY_CURRENT, KEY_DATA, KEY_META, SNAPSHOT_TREE};
    use openraft::{CommittedLeaderId, Membership};
    use std::collections::{BTreeMap, BTreeSet};
    use varpulis_cluster::Command;

    fn meta(index: u64) -> SnapshotMeta {
        let membership = Membership::new(vec![BTreeSet::from([1])], None::<BTreeSet<u64>>);
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::new(None, membership),
            snapshot_id: format!("s{index}"),
        }
    }

    fn state_with_worker(id: &str) -> ClusterState {
        let mut state = ClusterState::default();
        let cmd = Command::RegisterWorker(varpulis_cluster::RegisterWorker {
            worker_id: id.into(),
            address: "http://127.0.0.1:1".into(),
            api_key: "k".into(),
            cpu_cores: 1,
            max_pipelines: 1,
            labels: BTreeMap::new(),
            now_ms: 1,
            takeover: None,
        });
        assert!(state.apply(&cmd).response.result.is_ok());
        state
    }

    /// A sled database in `dir` (the raft dir: snapshot files go to `dir/snapshots`).
    fn open_db(dir: &tempfile::TempDir) -> sled::Db {
        sled::Config::new().path(dir.path()).open().unwrap()
    }

    fn data_files(dir: &tempfile::TempDir) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// The data file the stored snapshot names.
    fn named_file(db: &sled::Db) -> codec::DataFileRef {
        let tree = db.open_tree(SNAPSHOT_TREE).unwrap();
        let record = tree.get(KEY_DATA).unwrap().unwrap();
        match codec::decode_snapshot_data(&record).unwrap() {
            codec::SnapshotData::File(file) => file,
            codec::SnapshotData::Inline(_) => panic!("data still inside sled"),
        }
    }

    #[test]
    fn a_snapshot_stored_by_an_older_version_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir);
        let state = state_with_worker("old");
        let legacy = StoredSnapshot {
            meta: meta(7),
            data: serde_json::to_vec(&state).unwrap(),
        };
        let tree = db.open_tree(SNAPSHOT_TREE).unwrap();
        tree.insert(KEY_CURRENT, serde_json::to_vec(&legacy).unwrap())
            .unwrap();
        let sm = StateMachine::open(&db, dir.path()).unwrap();
        assert_eq!(sm.last_applied.map(|l| l.index), Some(7));
        assert!(read_lock(&sm.shared).state.worker("old").is_some());
    }

    /// The layout before the data files: the state inside sled's `data` record (version 2, or
    /// JSON). It still restores, and the next snapshot moves the data to a file.
    #[tokio::test]
    async fn a_snapshot_with_its_data_inside_sled_is_read_and_moved_to_a_file_next_time() {
        for inline in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let db = open_db(&dir);
            let json = serde_json::to_vec(&state_with_worker("in-sled")).unwrap();
            let tree = db.open_tree(SNAPSHOT_TREE).unwrap();
            let mut batch = sled::Batch::default();
            batch.insert(KEY_META, codec::encode_snapshot_meta(&meta(5)).unwrap());
            if inline {
                batch.insert(KEY_DATA, codec::encode_snapshot_data(&json));
            } else {
                batch.insert(KEY_DATA, json.clone());
            }
            tree.apply_batch(batch).unwrap();
            let mut sm = StateMachine::open(&db, dir.path()).unwrap();
            assert_eq!(sm.last_applied.map(|l| l.index), Some(5));
            assert!(read_lock(&sm.shared).state.worker("in-sled").is_some());
            let current = sm.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(current.snapshot.into_inner(), json);
            assert!(data_files(&dir).is_empty());
            // The next snapshot goes to a file.
            let newer = serde_json::to_vec(&state_with_worker("moved")).unwrap();
            sm.install_snapshot(&meta(6), Box::new(Cursor::new(newer.clone())))
                .await
                .unwrap();
            let file = named_file(&db);
            assert_eq!(data_files(&dir), vec![file.name.clone()]);
            drop(sm);
            let reopened = StateMachine::open(&db, dir.path()).unwrap();
            assert!(read_lock(&reopened.shared).state.worker("moved").is_some());
        }
    }

    #[tokio::test]
    async fn snapshots_are_stored_in_a_file_and_only_newer_ones_replace_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir);
        let mut sm = StateMachine::open(&db, dir.path()).unwrap();
        let newer = state_with_worker("new");
        let bytes = serde_json::to_vec(&newer).unwrap();
        sm.install_snapshot(&meta(9), Box::new(Cursor::new(bytes.clone())))
            .await
            .unwrap();
        // The raw JSON in a file; sled holds the metadata and the reference (version 3), no
        // legacy key left.
        let file = named_file(&db);
        assert_eq!(file.len, bytes.len() as u64);
        let on_disk = std::fs::read(dir.path().join("snapshots").join(&file.name)).unwrap();
        assert_eq!(on_disk, bytes);
        let tree = db.open_tree(SNAPSHOT_TREE).unwrap();
        assert_eq!(
            tree.get(KEY_DATA).unwrap().unwrap()[0],
            codec::FORMAT_SNAPSHOT_FILE
        );
        assert_eq!(
            tree.get(KEY_META).unwrap().unwrap()[0],
            codec::FORMAT_BINARY
        );
        assert!(tree.get(KEY_CURRENT).unwrap().is_none());
        // A builder holding an older state does not overwrite the newer snapshot.
        let store = sm.store.clone();
        store
            .save(
                StoredSnapshot {
                    meta: meta(3),
                    data: b"{}".to_vec(),
                },
                false,
            )
            .await
            .unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(9));
        assert_eq!(current.snapshot.into_inner(), bytes);
        assert_eq!(data_files(&dir), vec![file.name]);
        drop(sm);
        let reopened = StateMachine::open(&db, dir.path()).unwrap();
        assert_eq!(reopened.last_applied.map(|l| l.index), Some(9));
        assert!(read_lock(&reopened.shared).state.worker("new").is_some());
    }

    /// A data file lost, cut short or altered (a power loss, a bad copy of the data dir) is
    /// refused at open with an error that says so, never decoded as a state.
    #[tokio::test]
    async fn a_missing_torn_or_altered_data_file_is_refused_at_open() {
        type Damage = fn(&std::path::Path);
        let cases: [(&str, Damage, &str); 4] = [
            (
                "truncated",
                |p| {
                    let len = std::fs::metadata(p).unwrap().len();
                    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                    f.set_len(len / 2).unwrap();
                },
                "is torn",
            ),
            (
                "flipped byte",
                |p| {
                    let mut bytes = std::fs::read(p).unwrap();
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 0x01;
                    std::fs::write(p, bytes).unwrap();
                },
                "SHA-256 does not match",
            ),
            ("empty", |p| std::fs::write(p, b"").unwrap(), "is torn"),
            (
                "missing",
                |p| std::fs::remove_file(p).unwrap(),
                "is missing",
            ),
        ];
        for (what, damage, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let db = open_db(&dir);
            let mut sm = StateMachine::open(&db, dir.path()).unwrap();
            let bytes = serde_json::to_vec(&state_with_worker("w")).unwrap();
            sm.install_snapshot(&meta(4), Box::new(Cursor::new(bytes)))
                .await
                .unwrap();
            drop(sm);
            let file = named_file(&db);
            damage(&dir.path().join("snapshots").join(&file.name));
            let err = StateMachine::open(&db, dir.path()).unwrap_err().to_string();
            assert!(err.contains(expected), "{what}: {err}");
            assert!(err.contains(&file.name), "{what}: names the file: {err}");
        }
    }

    /// Taking the builder copies nothing on the consensus thread; the snapshot is the state
    /// at that moment even when entries are applied before it is built.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_is_the_state_when_the_builder_was_taken() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut sm = StateMachine::open(&db, dir.path()).unwrap();
        let register = |id: &str, index: u64| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::RegisterWorker(
                varpulis_cluster::RegisterWorker {
                    worker_id: id.into(),
                    address: "http://127.0.0.1:1".into(),
                    api_key: "k".into(),
                    cpu_cores: 1,
                    max_pipelines: 1,
                    labels: BTreeMap::new(),
                    now_ms: 1,
                    takeover: None,
                },
            )),
        };
        sm.apply(vec![register("before", 1)]).await.unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        // The builder shares the state: no copy was made on this thread.
        assert_eq!(Arc::strong_count(&read_lock(&sm.shared).state), 2);
        let shared = sm.shared();
        let apply = tokio::spawn(async move {
            sm.apply(vec![register("after", 2)]).await.unwrap();
            sm
        });
        let snap = builder.build_snapshot().await.unwrap();
        let sm = apply.await.unwrap();
        let built: ClusterState = serde_json::from_slice(&snap.snapshot.into_inner()).unwrap();
        assert!(built.worker("before").is_some());
        assert!(built.worker("after").is_none(), "taken before entry 2");
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(1));
        assert!(read_lock(&shared).state.worker("after").is_some());
        drop(sm);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn apply_waits_for_a_reader_without_blocking_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut sm = StateMachine::open(&db, dir.path()).unwrap();
        let shared = sm.shared();
        // A reader working on the state outside the lock (a hash of `GET /raft/metrics`).
        let held = Arc::clone(&read_lock(&shared).state);
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Normal(Command::Noop),
        };
        let apply = tokio::spawn(async move { sm.apply(vec![entry]).await.map(|r| r.len()) });
        // Let `apply` start and meet the reader.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // Stands for the heartbeats sharing the one consensus thread: it runs to its end while
        // `apply` waits. An `apply` that blocked the thread instead would only let it run after
        // giving up on the reader and copying the state, and so would be finished by then.
        let beat = tokio::spawn(async {
            for _ in 0..20 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        });
        beat.await.unwrap();
        assert!(!apply.is_finished(), "apply waits for the reader");
        drop(held);
        assert_eq!(apply.await.unwrap().unwrap(), 1);
        assert_eq!(read_lock(&shared).last_applied, Some(1));
        // Mutated in place: nobody else holds the state now.
        assert_eq!(Arc::strong_count(&read_lock(&shared).state), 1);
    }
}
