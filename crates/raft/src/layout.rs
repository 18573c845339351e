//! Names of the sled trees and keys of a node's Raft database (`<data_dir>/raft`), shared by the
//! log store, the state machine, the format migration and the offline restore. What the values
//! hold is [`crate::codec`]'s business.

/// The log up to storage layout 2: key = index as 8 big-endian bytes, value = one entry. Since
/// layout 3 (`LAYOUT_WAL`) the entries live in segment files (`wal.rs`) and this tree is
/// only read to move an older log there.
pub(crate) const LOG_TREE: &str = "raft_log";
/// Directory of the log's segment files, inside the node's raft directory (layout 3).
pub const WAL_DIR: &str = "wal";
/// Value of [`KEY_FORMAT`] once the log lives in segment files (`log_store.rs`); records
/// are still in [`crate::codec::FORMAT_BINARY`].
pub const LAYOUT_WAL: u8 = 3;
/// Log metadata: vote, commit point, purge point, cluster id, storage format marker.
pub(crate) const META_TREE: &str = "raft_meta";
/// The current snapshot: `meta` and `data` (or the older single `current` key).
pub(crate) const SNAPSHOT_TREE: &str = "raft_snapshot";

/// The vote (in [`META_TREE`]).
pub(crate) const KEY_VOTE: &[u8] = b"vote";
/// The commit point (in [`META_TREE`]).
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
/// The last purged log id (in [`META_TREE`]).
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";
/// The cluster id written by `varpulis snapshot restore`; absent otherwise
/// ([`crate::cluster_id`]).
pub(crate) const KEY_CLUSTER_ID: &[u8] = b"cluster_id";
/// The storage layout of the whole data dir (one byte): absent before issue 24 (JSON records,
/// migrated at open), [`crate::codec::FORMAT_BINARY`] (2: binary records, log in sled), or
/// `LAYOUT_WAL` (3: log in segment files).
pub(crate) const KEY_FORMAT: &[u8] = b"format";

/// Snapshot metadata (in [`SNAPSHOT_TREE`]).
pub(crate) const KEY_META: &[u8] = b"meta";
/// Snapshot data (in [`SNAPSHOT_TREE`]).
pub(crate) const KEY_DATA: &[u8] = b"data";
/// Older layout: `{meta, data}` in one JSON value (read, never written).
pub(crate) const KEY_CURRENT: &[u8] = b"current";
