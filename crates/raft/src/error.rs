//! Errors of the Raft layer: [`Error`] for start-up and administration, [`WriteError`] for
//! proposals and linearizable reads (what a coordinator maps to 421/503).

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use varpulis_api::error::{Code, ErrorBody};

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

impl Error {
    /// The wire code of this error (admin routes).
    pub fn code(&self) -> Code {
        match self {
            Error::Write(w) => w.code(),
            Error::Membership(_) => Code::Conflict,
            Error::Config(_) => Code::BadRequest,
            Error::Storage(_) | Error::Raft(_) => Code::Internal,
        }
    }

    /// The error as the shared JSON error body.
    pub fn to_body(&self) -> ErrorBody {
        match self {
            Error::Write(w) => w.to_body(),
            other => ErrorBody::new(other.code(), other.to_string()),
        }
    }
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
    /// Too many writes wait for a proposal already ([`crate::batch::MAX_QUEUED`]): retry
    /// shortly (503 `overloaded` with `Retry-After`).
    #[error("too many writes are waiting on this node: retry shortly")]
    Overloaded,
    /// The Raft node stopped or its storage failed.
    #[error("raft fatal error: {0}")]
    Fatal(String),
}

impl WriteError {
    /// The wire code of this error: `not_leader` (421) when a leader is known, `no_leader`
    /// (503) during an election, `no_quorum` (503) when the write did not commit in time.
    pub fn code(&self) -> Code {
        match self {
            WriteError::ForwardToLeader {
                leader_id: Some(_), ..
            } => Code::NotLeader,
            WriteError::ForwardToLeader {
                leader_id: None, ..
            }
            | WriteError::NoLeader => Code::NoLeader,
            WriteError::Timeout => Code::NoQuorum,
            WriteError::Overloaded => Code::Overloaded,
            WriteError::Fatal(_) => Code::Internal,
        }
    }

    /// The error as the shared JSON error body (with the leader's id and URL when known).
    pub fn to_body(&self) -> ErrorBody {
        match self {
            WriteError::ForwardToLeader {
                leader_id: Some(id),
                leader_url,
            } => {
                let mut body = ErrorBody::new(Code::NotLeader, "this node is not the raft leader");
                body.leader_id = Some(*id);
                body.leader_url = leader_url.clone();
                body
            }
            other => ErrorBody::new(other.code(), other.to_string()),
        }
    }
}

/// Wraps a storage failure as an openraft [`StorageError`] with its subject and verb.
pub(crate) fn sto_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    err: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&err)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_map_to_one_code_each() {
        let known = WriteError::ForwardToLeader {
            leader_id: Some(2),
            leader_url: Some("http://n2".into()),
        };
        let body = known.to_body();
        assert_eq!((body.code, body.status()), (Code::NotLeader, 421));
        assert_eq!(body.leader_url.as_deref(), Some("http://n2"));
        assert_eq!(WriteError::NoLeader.code(), Code::NoLeader);
        assert_eq!(WriteError::Timeout.code().status(), 503);
        assert_eq!(Error::Membership("busy".into()).code(), Code::Conflict);
        let shed = WriteError::Overloaded.to_body();
        assert_eq!((shed.code, shed.status()), (Code::Overloaded, 503));
    }
}
