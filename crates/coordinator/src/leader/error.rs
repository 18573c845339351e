//! What can go wrong in the leader's work, named by fault (the API maps it to a wire code in
//! the API error).

use varpulis_raft::WriteError;

/// A failed leader operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LeaderError {
    /// The state machine rejected the command (unknown id, conflict, stale epoch, ...).
    #[error(transparent)]
    Rejected(#[from] varpulis_cluster::Error),
    /// The command was not committed (not the leader, no quorum, stopped).
    #[error(transparent)]
    NotCommitted(#[from] WriteError),
    /// A worker or group the operation names is not registered.
    #[error("{0}")]
    NotFound(String),
    /// What the operation needs is not running (yet); retrying later may work.
    #[error("{0}")]
    NotRunning(String),
    /// The operation's input is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// Why a rolling update did not complete.
#[derive(Debug, Clone, PartialEq)]
pub enum DriveError {
    /// It was aborted: the group keeps its version.
    Aborted(String),
    /// This node could not finish it (lost leadership, no quorum); the leader's loop resumes it.
    Interrupted(LeaderError),
}
