//! Offline restore: builds a fresh data dir for a *new* cluster from a verified backup file
//! (`varpulis snapshot restore FILE --data-dir DIR --raft-node-id N --raft-peers URLS`).
//!
//! The data dir gets exactly what a node has after it compacted its log into a snapshot:
//! - `raft_snapshot`: a reference to the backup's state bytes, which are in a data file of
//!   `raft/snapshots/` synced before the reference is written ([`crate::snapshot_dir`]), with
//!   metadata whose last log id is `(term 0, node 0, applied index)` and whose membership is the
//!   new peer list (all voters), recorded at that same log id;
//! - `raft_meta`: `last_purged` and `committed` at that log id (the log is empty, everything up
//!   to it counts as compacted and committed), and the new cluster id ([`crate::cluster_id`]);
//! - no vote and no log entries.
//!
//! Started normally (same `--raft-node-id`, `--raft-peers`, `--data-dir`), each node loads the
//! state, is not "fresh" (so it does not initialize a group of its own), and sees the new
//! members as voters; an election at term 1 picks a leader, whose first entry follows the
//! restored index. The applied index therefore continues from the backup's, and the state hash
//! at that index is the backup's. Term 0 is used because the new cluster has no history: any
//! term its elections use is above it, as Raft requires of entries after a snapshot.
//!
//! The directory is written next to the target (`.<name>.restoring-<pid>`), flushed, then
//! renamed into place, so a failure leaves no half-built data dir. An existing non-empty target
//! is refused unless `force`; with `force` it is replaced (moved aside, then deleted).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use openraft::{CommittedLeaderId, Membership};

use crate::codec;
use crate::layout::{
    KEY_CLUSTER_ID, KEY_COMMITTED, KEY_DATA, KEY_FORMAT, KEY_LAST_PURGED, KEY_META, META_TREE,
    SNAPSHOT_TREE,
};
use crate::snapshot_dir::SnapshotDir;
use crate::snapshot_file::SnapshotFile;
use crate::types::{BasicNode, LogId, NodeId, SnapshotMeta, StoredMembership};

/// Why a restore did not happen (nothing was changed on disk in any case).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Bad node id or peer list.
    #[error("{0}")]
    Config(String),
    /// The target holds data and `force` was not given.
    #[error("data dir {0} is not empty: refusing to overwrite it (pass --force to replace it)")]
    NotEmpty(PathBuf),
    /// Reading or writing the filesystem failed.
    #[error("{0}")]
    Io(String),
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The new cluster's id.
    pub cluster_id: String,
    /// The index the new cluster resumes from.
    pub applied_index: u64,
    /// The state hash at that index.
    pub state_hash: String,
}

/// Writes a data dir for node `node_id` of the new cluster `peers` holding `file`'s state.
pub fn restore_data_dir(
    file: &SnapshotFile,
    data_dir: &Path,
    node_id: NodeId,
    peers: &BTreeMap<NodeId, String>,
    force: bool,
) -> Result<Restored, RestoreError> {
    check_peers(node_id, peers)?;
    if !force && holds_data(data_dir)? {
        return Err(RestoreError::NotEmpty(data_dir.to_path_buf()));
    }
    let name = data_dir
        .file_name()
        .ok_or_else(|| RestoreError::Config(format!("bad data dir {}", data_dir.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| RestoreError::Io(format!("cannot create {}: {e}", parent.display())))?;
    let pid = std::process::id();
    let staging = parent.join(format!(".{name}.restoring-{pid}"));
    if staging.exists() {
        remove_dir(&staging)?;
    }
    let restored = match write_sled(file, &staging.join("raft"), peers) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if data_dir.exists() {
        // `force` (or an empty dir): move the old one aside first, delete it once the new one
        // is in place.
        let old = parent.join(format!(".{name}.replaced-{pid}"));
        std::fs::rename(data_dir, &old).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staging);
            RestoreError::Io(format!("cannot move {} aside: {e}", data_dir.display()))
        })?;
        std::fs::rename(&staging, data_dir).map_err(|e| {
            let _ = std::fs::rename(&old, data_dir);
            RestoreError::Io(format!("cannot move the restored dir into place: {e}"))
        })?;
        remove_dir(&old)?;
    } else {
        std::fs::rename(&staging, data_dir).map_err(|e| {
            RestoreError::Io(format!("cannot move the restored dir into place: {e}"))
        })?;
    }
    // The rename durable too.
    crate::snapshot_dir::sync_dir(&parent).map_err(|e| RestoreError::Io(e.to_string()))?;
    Ok(restored)
}

fn check_peers(node_id: NodeId, peers: &BTreeMap<NodeId, String>) -> Result<(), RestoreError> {
    if !peers.contains_key(&node_id) {
        return Err(RestoreError::Config(format!(
            "--raft-node-id {node_id} is not a position in --raft-peers (1..={})",
            peers.len()
        )));
    }
    if let Some((id, url)) = peers
        .iter()
        .find(|(_, u)| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(RestoreError::Config(format!(
            "peer {id} has URL {url:?}: expected http://host:port"
        )));
    }
    Ok(())
}

fn holds_data(dir: &Path) -> Result<bool, RestoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(RestoreError::Io(format!(
            "cannot read {}: {e}",
            dir.display()
        ))),
    }
}

fn remove_dir(dir: &Path) -> Result<(), RestoreError> {
    std::fs::remove_dir_all(dir)
        .map_err(|e| RestoreError::Io(format!("cannot remove {}: {e}", dir.display())))
}

fn write_sled(
    file: &SnapshotFile,
    dir: &Path,
    peers: &BTreeMap<NodeId, String>,
) -> Result<Restored, RestoreError> {
    let io = |what: &str, e: &dyn std::fmt::Display| RestoreError::Io(format!("{what}: {e}"));
    let index = file.header.applied_index.unwrap_or(0);
    let log_id = LogId::new(CommittedLeaderId::new(0, 0), index);
    let voters: BTreeSet<NodeId> = peers.keys().copied().collect();
    let nodes: BTreeMap<NodeId, BasicNode> = peers
        .iter()
        .map(|(id, url)| (*id, BasicNode::new(url.trim_end_matches('/'))))
        .collect();
    let membership = Membership::new(vec![voters], nodes);
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
        snapshot_id: format!("restored-{index}"),
    };
    let cluster_id = crate::cluster_id::for_restore(
        &file.header.cluster_id,
        file.header.applied_index,
        &file.header.state_hash,
        peers,
    );
    let db = sled::Config::new()
        .path(dir)
        .open()
        .map_err(|e| io(&format!("cannot create sled at {}", dir.display()), &e))?;
    let snapshots = db
        .open_tree(SNAPSHOT_TREE)
        .map_err(|e| io("cannot open the snapshot tree", &e))?;
    // The data durable in its own file before the record naming it (sled does not sync the
    // separate file it would put a value this large in).
    let data_file = SnapshotDir::open(dir)
        .and_then(|files| files.write(&file.data))
        .map_err(|e| io("cannot write the snapshot data", &e))?;
    let mut batch = sled::Batch::default();
    let meta = codec::encode_snapshot_meta(&meta)
        .map_err(|e| RestoreError::Io(format!("cannot encode: {e}")))?;
    batch.insert(KEY_META, meta);
    batch.insert(KEY_DATA, codec::encode_snapshot_data_ref(&data_file));
    snapshots
        .apply_batch(batch)
        .map_err(|e| io("cannot write the snapshot", &e))?;
    let meta_tree = db
        .open_tree(META_TREE)
        .map_err(|e| io("cannot open the meta tree", &e))?;
    let mut batch = sled::Batch::default();
    batch.insert(KEY_LAST_PURGED, codec::encode_log_id(&log_id));
    batch.insert(KEY_COMMITTED, codec::encode_opt_log_id(&Some(log_id)));
    batch.insert(KEY_CLUSTER_ID, codec::encode_str(&cluster_id));
    batch.insert(KEY_FORMAT, &[codec::FORMAT_BINARY]);
    meta_tree
        .apply_batch(batch)
        .map_err(|e| io("cannot write the log metadata", &e))?;
    db.flush().map_err(|e| io("cannot flush", &e))?;
    drop(db);
    Ok(Restored {
        cluster_id,
        applied_index: index,
        state_hash: file.header.state_hash.clone(),
    })
}
