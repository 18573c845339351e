//! Migrations: moving one placement from a worker to another.
//!
//! Lifecycle: `StartMigration` creates it `pending` (no target yet) or `deploying` (target
//! chosen); `ProgressMigration` sets or changes the target (`deploying`); `CompleteMigration`
//! atomically moves the placement (new worker, new pipeline id, epoch + 1, Running) and marks it
//! `completed`; `FailMigration` marks it `failed`. A pending migration is never dropped: it
//! waits until the leader finds a target. At most one active migration exists per placement.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Progress of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationStatus {
    /// Waiting for a target worker.
    Pending,
    /// Target chosen; the leader deploys there.
    Deploying,
    /// Done: the placement moved.
    Completed,
    /// Gave up (the reconciler may start a new one).
    Failed,
}

impl MigrationStatus {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::Pending => "pending",
            MigrationStatus::Deploying => "deploying",
            MigrationStatus::Completed => "completed",
            MigrationStatus::Failed => "failed",
        }
    }

    /// Whether the migration is still in progress.
    pub fn is_active(self) -> bool {
        matches!(self, MigrationStatus::Pending | MigrationStatus::Deploying)
    }
}

impl fmt::Display for MigrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a migration was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationReason {
    /// Its worker became unhealthy or dead.
    WorkerUnhealthy,
    /// Its worker is draining.
    Drain,
    /// Load rebalancing.
    Rebalance,
    /// Asked for by an operator.
    Manual,
}

impl MigrationReason {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationReason::WorkerUnhealthy => "worker_unhealthy",
            MigrationReason::Drain => "drain",
            MigrationReason::Rebalance => "rebalance",
            MigrationReason::Manual => "manual",
        }
    }
}

/// One migration as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// Migration id (chosen by the leader).
    pub id: String,
    /// Group id.
    pub group_id: String,
    /// Pipeline name.
    pub pipeline_name: String,
    /// Replica number.
    pub replica: u32,
    /// Worker the placement leaves (empty if it had none).
    pub from_worker: String,
    /// Target worker, once chosen.
    pub to_worker: Option<String>,
    /// Progress.
    pub status: MigrationStatus,
    /// Why.
    pub reason: MigrationReason,
    /// Placement epoch when it started.
    pub epoch_at_start: u64,
    /// Start time (leader's clock).
    pub started_at_ms: u64,
    /// Last change (leader's clock).
    pub updated_at_ms: u64,
    /// End time.
    pub completed_at_ms: Option<u64>,
    /// Last error.
    pub error: Option<String>,
    /// Whether the new pipeline was restored from a checkpoint.
    pub restored_from_checkpoint: bool,
    /// Start sequence number (orders migrations by start).
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_api() {
        assert_eq!(MigrationStatus::Pending.as_str(), "pending");
        assert_eq!(
            serde_json::to_string(&MigrationStatus::Deploying).unwrap(),
            "\"deploying\""
        );
        assert_eq!(
            MigrationReason::WorkerUnhealthy.as_str(),
            "worker_unhealthy"
        );
        assert_eq!(
            serde_json::to_string(&MigrationReason::Rebalance).unwrap(),
            "\"rebalance\""
        );
        assert!(MigrationStatus::Pending.is_active());
        assert!(MigrationStatus::Deploying.is_active());
        assert!(!MigrationStatus::Completed.is_active());
        assert!(!MigrationStatus::Failed.is_active());
    }
}
