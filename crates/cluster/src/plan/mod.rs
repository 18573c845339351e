//! The leader's decisions as pure planners: `(&ClusterState, &LivenessView, now) -> Vec<Action>`.
//!
//! Everything the leader does to keep the workers in line with the replicated state is
//! decided here, without I/O: [`plan_reconcile`] (failovers, drains, pending placements,
//! migrations, deploys, rebalance rounds), [`plan_sweep`] (silent workers become unhealthy),
//! [`plan_drain`], [`plan_rebalance`], [`plan_rollout_step`] (one step of a rolling update),
//! [`plan_checkpoints`] and [`plan_orphans`]. The coordinator's executor only carries the
//! [`Action`]s out: it proposes commands, calls workers, and records the results (migration
//! ids are the executor's, since choosing them needs randomness).
//!
//! What the planners know beyond the replicated state is the leader's [`LivenessView`]: which
//! workers the failure detector suspects, whether a rebalance is wanted, and the leader's
//! [`Policy`].

mod checkpoints;
pub mod deploy;
mod drain;
mod failed;
mod orphans;
mod rebalance;
mod reconcile;
mod rollout;
mod sweep;

pub use checkpoints::{plan_checkpoints, CheckpointJob};
pub use deploy::{DeployAt, DeployJob};
pub use drain::plan_drain;
pub use failed::plan_failed;
pub use orphans::plan_orphans;
pub use rebalance::plan_rebalance;
pub use reconcile::{plan_reconcile, plan_reconcile_phase, Phase};
pub use rollout::{plan_rollout_step, RolloutAbort, RolloutFinish, RolloutSwitch, DRAIN_GRACE_MS};
pub use sweep::plan_sweep;

use std::collections::BTreeSet;

use crate::command::Command;
use crate::migration::MigrationReason;
use crate::placement::PlannedMigration;

/// The leader's policy (from its configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Move pipelines off Unhealthy and Dead workers on its own.
    pub auto_failover: bool,
    /// Most rebalance moves started per round.
    pub rebalance_max_moves: usize,
    /// MQTT broker shipped to workers for inter-pipeline routes.
    pub mqtt_url: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            auto_failover: true,
            rebalance_max_moves: 2,
            mqtt_url: None,
        }
    }
}

/// What the leader knows that is not replicated: liveness and its own memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LivenessView {
    /// Workers its failure detector suspects now (silent too long).
    pub suspected: BTreeSet<String>,
    /// Why they are suspected (recorded as the status reason).
    pub suspicion: String,
    /// A rebalance was asked for and no plan has come back empty since.
    pub rebalance_wanted: bool,
    /// The leader's policy.
    pub policy: Policy,
}

/// One thing the leader does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Propose a command; its outcome is all there is.
    Propose(Command),
    /// Start a migration: propose `StartMigration` with a new id.
    StartMigration {
        /// The move.
        planned: PlannedMigration,
        /// Why.
        reason: MigrationReason,
    },
    /// Deploy a placement on its worker, then record `Running` or `Failed` with
    /// `UpdatePlacement` at the job's epoch.
    Deploy(DeployJob),
    /// Carry out a migration that has a target: take a fresh checkpoint from the source when
    /// it is still alive (and store it), deploy on the target restoring the state, then
    /// `CompleteMigration` and remove the source pipeline — or `FailMigration` after repeated
    /// failures.
    Migrate(MigrationJob),
    /// Rolling update, deploying phase: start the new pipelines, hand the old ones over, then
    /// `Switch` (or abort).
    RolloutSwitch(RolloutSwitch),
    /// Rolling update that cannot go on: take hand-overs back, `Abort`, remove the new
    /// pipelines.
    RolloutAbort(RolloutAbort),
    /// Rolling update, draining phase: wait, stop the old pipelines, `Finish`.
    RolloutFinish(RolloutFinish),
    /// Take (and store) the checkpoint of a running placement.
    Checkpoint(CheckpointJob),
    /// Delete a pipeline from a worker (404 counts as done).
    Undeploy {
        /// Worker id.
        worker_id: String,
        /// Pipeline id on the worker.
        pipeline_id: String,
    },
    /// Remember (or forget) that a rebalance is wanted.
    SetRebalanceWanted(bool),
}

/// A migration ready to deploy on its target.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationJob {
    /// Migration id.
    pub migration_id: String,
    /// The deploy on the target, at the placement's next epoch, with the stored checkpoint.
    pub deploy: DeployJob,
    /// The source pipeline, when its worker still answers (drain, rebalance).
    pub source: Option<LiveSource>,
}

/// A placement's pipeline on a worker that still answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSource {
    /// Worker id.
    pub worker_id: String,
    /// Pipeline id on it.
    pub pipeline_id: String,
    /// The placement's epoch (a fresh checkpoint is stored at it).
    pub epoch: u64,
}
