//! Errors of the Raft layer: [`Error`] for start-up and administration, [`WriteError`] for
//! proposals and linearizable reads (what a coordinator maps to 421/503).

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};

use crate::types::{NodeId, StorageError};

/// Everything that can fail when starting or administrating a Raft node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid (missing self in peers, bad timings, ...).
    #[error("invalid raft configuration: {0}")]
    Config(String),
    /// The sled database could not be opened or written.
    #[error("raft storage: {0}")]
    Storage(Box<StorageError>),
    /// openraft refused to start or stopped.
    #[error("raft: {0}")]
    Raft(String),
    /// A membership change was rejected (in progress already, unknown learner, ...).
    #[error("membership change rejected: {0}")]
    Membership(String),
    /// A proposal failed (membership changes go through the log too).
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(Box::new(e))
    }
}

/// Why a write (or a linearizable read) could not be served by this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// This node is not the leader; the leader is known (`leader_id`) or not.
    #[error("not the leader (leader: {leader_id:?} at {leader_url:?})")]
    ForwardToLeader {
        /// Id of the current leader, if known.
        leader_id: Option<NodeId>,
        /// Base URL of the current leader, if known.
        leader_url: Option<String>,
    },
    /// No leader is known (election in progress or no quorum).
    #[error("no leader: election in progress or no quorum")]
    NoLeader,
    /// The proposal was not committed in time (it may still commit later).
    #[error("timed out waiting for the raft group")]
    Timeout,
    /// The Raft node stopped or its storage failed.
    #[error("raft fatal error: {0}")]
    Fatal(String),
}

/// Wraps a storage failure as an openraft [`StorageError`] with its subject and verb.
pub(crate) fn sto_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    err: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&err)).into()
}
