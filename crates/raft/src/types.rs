//! The openraft type configuration of the coordinator group.
//!
//! The log carries [`Command`]s, applying one yields a [`CommandResponse`]; nodes are identified by
//! `u64` ids and described by a [`BasicNode`] whose `addr` is the node's base URL (for example
//! `http://127.0.0.1:9100`): the REST API and the Raft RPCs share that one port.

use std::io::Cursor;

pub use openraft::BasicNode;
use varpulis_cluster::{Command, CommandResponse};

openraft::declare_raft_types!(
    /// openraft type configuration: `D = Command`, `R = CommandResponse`, `NodeId = u64`,
    /// `Node = BasicNode`, snapshots are in-memory byte buffers.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A node id (1-based position in the peer list by convention).
pub type NodeId = u64;
/// A log id of this configuration.
pub type LogId = openraft::LogId<NodeId>;
/// A log entry of this configuration.
pub type Entry = openraft::Entry<TypeConfig>;
/// A vote of this configuration.
pub type Vote = openraft::Vote<NodeId>;
/// Snapshot metadata of this configuration.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
/// A snapshot of this configuration.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// Membership as stored with its log id.
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
/// Storage error of this configuration.
pub type StorageError = openraft::StorageError<NodeId>;
/// The openraft handle of this configuration.
pub type Raft = openraft::Raft<TypeConfig>;
/// Metrics published by the openraft core.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, BasicNode>;
/// openraft's server metrics (vote, state, leader, membership) with our types.
pub type RaftServerMetrics = openraft::metrics::RaftServerMetrics<NodeId, BasicNode>;
