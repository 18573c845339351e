//! The persistent store of the current snapshot: its metadata and a reference to its data in
//! sled (`raft_snapshot` tree, keys `meta` and `data`, written in one batch and flushed), the
//! data itself in a file of `<raft dir>/snapshots/` ([`crate::snapshot_dir`]).
//!
//! Saving a snapshot, in this order: the data file is written and made durable (temporary file,
//! `sync_all`, rename, directory fsync); then the batch naming it (with its length and SHA-256)
//! is applied and flushed; then the files it supersedes are removed. A crash at any point leaves
//! the previous snapshot readable (a file no record names is removed at the next open), and
//! openraft only learns of the snapshot (and purges the log below it) once all of it is on disk.
//!
//! Older layouts are still read: the data inside the `data` record (format versions 1 and 2,
//! [`crate::codec`]), or one `current` key holding `{meta, data}` as JSON. They are replaced by
//! the file layout at the next snapshot.

use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::storage::SnapshotSignature;
use openraft::{ErrorSubject, ErrorVerb};
use serde::{Deserialize, Serialize};

use crate::codec::{self, SnapshotData};
use crate::error::sto_err;
use crate::layout::{KEY_CURRENT, KEY_DATA, KEY_META, SNAPSHOT_TREE};
use crate::snapshot_dir::SnapshotDir;
use crate::types::{SnapshotMeta, StorageError};

/// A snapshot: metadata plus the JSON-encoded `ClusterState` (also the oldest stored layout,
/// the `current` key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    /// openraft's metadata of the snapshot.
    pub(crate) meta: SnapshotMeta,
    /// The JSON state.
    pub(crate) data: Vec<u8>,
}

/// Persistent store of the current snapshot (see the module docs).
#[derive(Clone)]
pub(crate) struct SnapshotStore {
    db: sled::Db,
    tree: sled::Tree,
    files: Arc<SnapshotDir>,
    /// Serializes writers so an older built snapshot never overwrites a newer installed one.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Held for reading while a reader goes from the record to the open file, for writing while
    /// superseded files are removed: a reader never finds its file gone.
    removal: Arc<RwLock<()>>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    sto_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e)
}

impl SnapshotStore {
    /// Opens the store of the sled database `db` kept in `raft_dir`; removes the temporary and
    /// superseded data files a crash left (blocking).
    pub(crate) fn open(db: &sled::Db, raft_dir: &Path) -> Result<Self, StorageError> {
        let tree = db.open_tree(SNAPSHOT_TREE).map_err(read_err)?;
        let files = SnapshotDir::open(raft_dir).map_err(read_err)?;
        let store = Self {
            db: db.clone(),
            tree,
            files: Arc::new(files),
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            removal: Arc::new(RwLock::new(())),
        };
        let keep = store.current_file()?;
        let removed = store
            .files
            .remove_except(keep.as_deref())
            .map_err(read_err)?;
        if removed > 0 {
            tracing::info!(removed, "removed snapshot data files no snapshot names");
        }
        Ok(store)
    }

    /// The name of the data file the stored snapshot uses, if it uses one.
    fn current_file(&self) -> Result<Option<String>, StorageError> {
        let Some(data) = self.tree.get(KEY_DATA).map_err(read_err)? else {
            return Ok(None);
        };
        Ok(
            match codec::decode_snapshot_data(&data).map_err(read_err)? {
                SnapshotData::File(file) => Some(file.name),
                SnapshotData::Inline(_) => None,
            },
        )
    }

    /// The stored snapshot's metadata, without its data.
    pub(crate) fn load_meta(&self) -> Result<Option<SnapshotMeta>, StorageError> {
        if let Some(bytes) = self.tree.get(KEY_META).map_err(read_err)? {
            return codec::decode_snapshot_meta(&bytes)
                .map(Some)
                .map_err(read_err);
        }
        Ok(self.load_legacy()?.map(|s| s.meta))
    }

    /// The stored snapshot, its data file checked (blocking: run it off the consensus runtime
    /// for large states).
    pub(crate) fn load(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let _no_removal = self.removal.read().unwrap_or_else(|p| p.into_inner());
        let meta = self.tree.get(KEY_META).map_err(read_err)?;
        let data = self.tree.get(KEY_DATA).map_err(read_err)?;
        let (Some(meta), Some(data)) = (meta, data) else {
            return self.load_legacy();
        };
        let meta = codec::decode_snapshot_meta(&meta).map_err(read_err)?;
        let data = match codec::decode_snapshot_data(&data).map_err(read_err)? {
            SnapshotData::Inline(json) => json.to_vec(),
            SnapshotData::File(file) => self.files.read(&file).map_err(|e| {
                sto_err(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Read,
                    e,
                )
            })?,
        };
        Ok(Some(StoredSnapshot { meta, data }))
    }

    fn load_legacy(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let Some(bytes) = self.tree.get(KEY_CURRENT).map_err(read_err)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(read_err)
    }

    /// Stores `snap` durably (see the module docs); unless `force`, skips it when a newer
    /// snapshot is stored. Gives the data back.
    pub(crate) async fn save(
        &self,
        snap: StoredSnapshot,
        force: bool,
    ) -> Result<Vec<u8>, StorageError> {
        let _guard = self.write_lock.lock().await;
        let sig: Option<SnapshotSignature<u64>> = Some(snap.meta.signature());
        let write_err = |e: &dyn std::fmt::Display| {
            sto_err(
                ErrorSubject::Snapshot(sig.clone()),
                ErrorVerb::Write,
                std::io::Error::other(e.to_string()),
            )
        };
        if !force {
            if let Some(cur) = self.load_meta()? {
                if cur.last_log_id >= snap.meta.last_log_id {
                    return Ok(snap.data);
                }
            }
        }
        let meta = codec::encode_snapshot_meta(&snap.meta).map_err(|e| write_err(&e))?;
        let store = self.clone();
        // Writing megabytes is work proportional to the state: not on the consensus runtime.
        let (name, data) = tokio::task::spawn_blocking(move || {
            let file = store.files.write(&snap.data).map_err(|e| e.to_string())?;
            let mut batch = sled::Batch::default();
            batch.insert(KEY_META, meta);
            batch.insert(KEY_DATA, codec::encode_snapshot_data_ref(&file));
            batch.remove(KEY_CURRENT);
            if let Err(e) = store.tree.apply_batch(batch) {
                // Never named: remove it now (or at the next open).
                let _ = store.files.remove(&file.name);
                return Err(e.to_string());
            }
            Ok((file.name, snap.data))
        })
        .await
        .map_err(|e| write_err(&e))?
        .map_err(|e| write_err(&e))?;
        self.db.flush_async().await.map_err(|e| write_err(&e))?;
        // The new record is durable: the files it supersedes can go.
        let store = self.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let _no_reader = store.removal.write().unwrap_or_else(|p| p.into_inner());
            store.files.remove_except(Some(&name))
        })
        .await;
        match removed {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove a superseded snapshot file"),
            Err(e) => tracing::warn!(error = %e, "snapshot file removal task failed"),
        }
        Ok(data)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::types::{LogId, StoredMembership};
    use openraft::{CommittedLeaderId, Membership};
    use std::collections::BTreeSet;

    fn snap(index: u64, data: &[u8]) -> StoredSnapshot {
        let membership = Membership::new(vec![BTreeSet::from([1])], None::<BTreeSet<u64>>);
        StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
                last_membership: StoredMembership::new(None, membership),
                snapshot_id: format!("s{index}"),
            },
            data: data.to_vec(),
        }
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join(crate::snapshot_dir::DIR_NAME))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn superseded_files_are_removed_once_a_newer_snapshot_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let store = SnapshotStore::open(&db, dir.path()).unwrap();
        store.save(snap(1, b"[1]"), false).await.unwrap();
        let first = files_in(dir.path());
        assert_eq!(first.len(), 1);
        store.save(snap(2, b"[2]"), false).await.unwrap();
        store.save(snap(3, b"[3]"), true).await.unwrap();
        let left = files_in(dir.path());
        assert_eq!(left.len(), 1, "{left:?}");
        assert_ne!(left, first);
        let loaded = store.load().unwrap().unwrap();
        assert_eq!(loaded.data, b"[3]");
        assert_eq!(store.current_file().unwrap().as_deref(), Some(&*left[0]));
    }

    /// What a crash leaves in the directory: a temporary file (a write cut short) and a
    /// complete file no record names (a crash between the rename and the record's flush). Both
    /// go at the next open; the named file stays.
    #[tokio::test]
    async fn stray_temporary_and_unnamed_files_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let store = SnapshotStore::open(&db, dir.path()).unwrap();
        store.save(snap(1, b"[1]"), false).await.unwrap();
        let named = files_in(dir.path());
        let files = dir.path().join(crate::snapshot_dir::DIR_NAME);
        std::fs::write(files.join("snapshot-7.json.tmp"), b"[7, half").unwrap();
        std::fs::write(files.join("snapshot-8.json"), b"[8]").unwrap();
        std::fs::write(files.join("README"), b"not ours").unwrap();
        drop(store);
        let store = SnapshotStore::open(&db, dir.path()).unwrap();
        let mut expected = named.clone();
        expected.insert(0, "README".to_owned());
        assert_eq!(files_in(dir.path()), expected);
        assert_eq!(store.load().unwrap().unwrap().data, b"[1]");
        // Numbering continues above the removed files: a new file never reuses a name.
        store.save(snap(2, b"[2]"), false).await.unwrap();
        let left = files_in(dir.path());
        assert_eq!(
            left,
            vec!["README".to_owned(), "snapshot-9.json".to_owned()]
        );
    }
}
