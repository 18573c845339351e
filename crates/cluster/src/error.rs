//! Errors of the cluster state machine.
//!
//! A rejected command never fails the Raft log: `apply` turns the error into a
//! [`CommandResponse`](crate::CommandResponse) and leaves the state unchanged. The error is
//! serializable so it travels through the log's response channel and over HTTP intact;
//! [`Error::code`] is the one place that maps it to the wire (the code carries the status).

use serde::{Deserialize, Serialize};
use varpulis_api::error::{Code, ErrorBody};

/// Why a command was rejected (or a placement could not be planned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Error {
    /// The command itself is malformed (empty id, nested batch, ...).
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    /// A worker registration carries bad data.
    #[error("invalid worker registration: {0}")]
    InvalidWorker(String),
    /// A pipeline group spec is invalid.
    #[error("invalid pipeline group spec: {0}")]
    InvalidSpec(String),
    /// A connector definition is invalid.
    #[error("invalid connector: {0}")]
    InvalidConnector(String),
    /// No worker with this id is registered.
    #[error("worker '{0}' not found")]
    UnknownWorker(String),
    /// The worker id is bound to another key (the `identity` module).
    #[error("{0}")]
    WorkerIdTaken(String),
    /// No pipeline group with this id (or name) exists.
    #[error("pipeline group '{0}' not found")]
    UnknownGroup(String),
    /// The group has no such pipeline replica.
    #[error("pipeline '{pipeline}' replica {replica} not found in group '{group}'")]
    UnknownPlacement {
        /// Group id.
        group: String,
        /// Pipeline name.
        pipeline: String,
        /// Replica number.
        replica: u32,
    },
    /// No connector with this name exists.
    #[error("connector '{0}' not found")]
    UnknownConnector(String),
    /// No migration with this id exists.
    #[error("migration '{0}' not found")]
    UnknownMigration(String),
    /// A group with this name already exists.
    #[error("a pipeline group named '{0}' already exists")]
    DuplicateGroupName(String),
    /// A group with this id already exists.
    #[error("a pipeline group with id '{0}' already exists")]
    DuplicateGroupId(String),
    /// A connector with this name already exists.
    #[error("connector '{0}' already exists")]
    DuplicateConnector(String),
    /// A migration with this id already exists.
    #[error("migration '{0}' already exists")]
    DuplicateMigration(String),
    /// The worker status transition is not in the transition table.
    #[error("worker '{worker}' cannot go from {from} to {to}")]
    InvalidTransition {
        /// Worker id.
        worker: String,
        /// Current status.
        from: String,
        /// Requested status.
        to: String,
    },
    /// The command was decided against an older placement epoch (fencing).
    #[error(
        "stale epoch for '{pipeline}' replica {replica} of group '{group}': \
         command has {given}, placement is at {current}"
    )]
    StaleEpoch {
        /// Group id.
        group: String,
        /// Pipeline name.
        pipeline: String,
        /// Replica number.
        replica: u32,
        /// Epoch the placement has now.
        current: u64,
        /// Epoch the command carried.
        given: u64,
    },
    /// A newer checkpoint is already stored for this placement.
    #[error("a newer checkpoint (taken at {stored_ms} ms) is already stored")]
    StaleCheckpoint {
        /// `taken_at_ms` of the stored checkpoint.
        stored_ms: u64,
    },
    /// A rolling update step does not fit the group's rollout state (one already runs, the
    /// version moved on, ...).
    #[error("rolling update conflict: {0}")]
    RolloutConflict(String),
    /// A migration for this placement is already in progress.
    #[error("migration '{0}' is already in progress for this placement")]
    MigrationInProgress(String),
    /// The migration has already completed or failed.
    #[error("migration '{id}' is already {status}")]
    MigrationFinished {
        /// Migration id.
        id: String,
        /// Its terminal status.
        status: String,
    },
    /// The command names a worker that is not where the placement is.
    #[error("placement is on worker '{actual}', not '{expected}'")]
    WrongWorker {
        /// Worker named by the command.
        expected: String,
        /// Worker the placement is on (empty when unassigned).
        actual: String,
    },
    /// The worker cannot take this placement (status, capacity, replica already there).
    #[error("worker '{worker}' cannot take the placement: {reason}")]
    WorkerUnavailable {
        /// Worker id.
        worker: String,
        /// Why.
        reason: String,
    },
    /// Placement found no eligible worker.
    #[error("no worker available: {0}")]
    NoWorkerAvailable(String),
    /// A field, a collection or a cluster-wide count is over its configured limit
    /// (the `limits` module); checked before proposing, so nothing was stored.
    #[error("{what} is {actual}, over the limit of {max} ({limit})")]
    LimitExceeded {
        /// The limit's configuration key (`limits.max_labels`, ...).
        limit: String,
        /// What was measured.
        what: String,
        /// Its size or count.
        actual: u64,
        /// The limit.
        max: u64,
        /// Whether the request itself is too large (413) or the cluster is full (400).
        scope: LimitScope,
    },
    /// A checkpoint is larger than the configured cap.
    #[error("checkpoint of {size} bytes exceeds the limit of {max} bytes")]
    CheckpointTooLarge {
        /// Size of the rejected checkpoint.
        size: usize,
        /// The cap.
        max: usize,
    },
}

/// What a [`Error::LimitExceeded`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// A field or a count inside the request (answered 413).
    Request,
    /// A cluster-wide count: workers, groups, connectors (answered 400).
    Cluster,
}

impl Error {
    /// The wire code of this error (its HTTP status is `code().status()`).
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidCommand(_) => Code::BadRequest,
            Error::InvalidWorker(_) => Code::InvalidWorker,
            Error::InvalidSpec(_) => Code::InvalidSpec,
            Error::InvalidConnector(_) => Code::InvalidConnector,
            Error::UnknownWorker(_) => Code::WorkerNotFound,
            Error::WorkerIdTaken(_) => Code::WorkerIdTaken,
            Error::UnknownGroup(_) => Code::GroupNotFound,
            Error::UnknownPlacement { .. } => Code::PlacementNotFound,
            Error::UnknownConnector(_) => Code::ConnectorNotFound,
            Error::UnknownMigration(_) => Code::MigrationNotFound,
            Error::DuplicateGroupName(_) | Error::DuplicateGroupId(_) => Code::GroupExists,
            Error::DuplicateConnector(_) => Code::ConnectorExists,
            Error::DuplicateMigration(_) => Code::MigrationExists,
            Error::InvalidTransition { .. } => Code::InvalidTransition,
            Error::StaleEpoch { .. } => Code::StaleEpoch,
            Error::StaleCheckpoint { .. } => Code::StaleCheckpoint,
            Error::MigrationInProgress(_) => Code::MigrationInProgress,
            Error::RolloutConflict(_) => Code::UpdateConflict,
            Error::MigrationFinished { .. } => Code::MigrationFinished,
            Error::WrongWorker { .. } => Code::WrongWorker,
            Error::WorkerUnavailable { .. } => Code::WorkerUnavailable,
            Error::NoWorkerAvailable(_) => Code::NoWorkerAvailable,
            Error::CheckpointTooLarge { .. } => Code::PayloadTooLarge,
            Error::LimitExceeded { .. } => Code::LimitExceeded,
        }
    }

    /// HTTP status a server answers with: the code's, except that a cluster-wide limit
    /// (workers, groups, connectors) is a 400, not a 413 (the request itself is not too large).
    pub fn http_status(&self) -> u16 {
        match self {
            Error::LimitExceeded {
                scope: LimitScope::Cluster,
                ..
            } => 400,
            other => other.code().status(),
        }
    }

    /// The error as the shared JSON error body.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_are_stable() {
        let cases = [
            (Error::InvalidSpec("x".into()), "invalid_spec", 400),
            (Error::UnknownWorker("w".into()), "worker_not_found", 404),
            (Error::DuplicateGroupName("g".into()), "group_exists", 409),
            (
                Error::CheckpointTooLarge { size: 2, max: 1 },
                "payload_too_large",
                413,
            ),
            (
                Error::NoWorkerAvailable("none".into()),
                "no_worker_available",
                503,
            ),
        ];
        for (err, code, status) in cases {
            assert_eq!(err.code(), code);
            assert_eq!(err.code().status(), status);
            assert_eq!(err.to_body().code, code);
        }
    }

    #[test]
    fn error_round_trips_through_json() {
        let err = Error::StaleEpoch {
            group: "g".into(),
            pipeline: "p".into(),
            replica: 1,
            current: 3,
            given: 2,
        };
        let json = serde_json::to_string(&err).unwrap();
        let back: Error = serde_json::from_str(&json).unwrap();
        assert_eq!(back, err);
        assert!(err.to_string().contains("command has 2"));
    }
}
