//! Raft views and admin calls exposed by coordinators under `/raft/`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `GET /raft/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaftMetricsView {
    /// This node's id.
    pub id: u64,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: String,
    /// Current term.
    pub current_term: u64,
    /// Current leader, if known.
    pub current_leader: Option<u64>,
    /// Last applied log index.
    pub last_applied: Option<u64>,
    /// Last log index.
    pub last_log_index: Option<u64>,
    /// Voter ids.
    pub membership: Vec<u64>,
    /// Learner ids.
    #[serde(default)]
    pub learners: Vec<u64>,
    /// Node id -> API URL of every known node.
    #[serde(default)]
    pub nodes: BTreeMap<u64, String>,
    /// Hash of the applied state (equal on nodes that applied the same index).
    pub state_hash: String,
    /// Index of the last snapshot, if any.
    #[serde(default)]
    pub snapshot_index: Option<u64>,
    /// Version of the node's binary (as `/health` reports it); absent from older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Bytes the node's Raft storage (sled: log, vote, state snapshot) takes on disk; absent
    /// when it cannot be measured or from older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_size_bytes: Option<u64>,
    /// Id of the cluster (the same on every member; a restored cluster has a new one); absent
    /// from older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// `POST /raft/add-learner`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddLearnerRequest {
    /// New node id.
    pub node_id: u64,
    /// Its URL.
    pub address: String,
    /// Skip the check that something answers at `address`.
    #[serde(default)]
    pub force: bool,
}

/// `POST /raft/change-membership`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeMembershipRequest {
    /// The complete new voter set; voters left out leave the membership entirely.
    pub members: Vec<u64>,
    /// Skip the safety checks (new voters caught up, a reachable majority left).
    #[serde(default)]
    pub force: bool,
}

/// `POST /raft/remove-node`: removes a voter or a learner from the membership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoveNodeRequest {
    /// The node to remove.
    pub node_id: u64,
    /// Remove it even if the remaining voters would have no reachable majority.
    #[serde(default)]
    pub force: bool,
}

/// `POST /raft/transfer-leader` (admin): hands leadership to another voter. An empty body (or
/// `{}`) lets the leader pick the most up-to-date voter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferLeaderRequest {
    /// The voter to hand leadership to; absent: the most up-to-date voter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// Answer of `POST /raft/transfer-leader`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferLeaderResponse {
    /// The node that led when the call arrived.
    pub previous_leader_id: u64,
    /// The node that leads now.
    pub leader_id: u64,
    /// Its base URL.
    pub leader_url: Option<String>,
    /// Milliseconds from the call to the new leader's election.
    pub elapsed_ms: u64,
}

/// `POST /raft/elect` (peer RPC, sent by a leader handing over): the receiver campaigns at once
/// if its log holds at least `last_log_index` (so it can win and no acknowledged entry is lost).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElectRequest {
    /// The sender's (the outgoing leader's) id.
    pub from: u64,
    /// The sender's term.
    pub term: u64,
    /// The sender's last log index: the receiver's log must reach it.
    pub last_log_index: u64,
}
