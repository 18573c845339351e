//! Replicated commands and their responses.
//!
//! Every decision that needs a clock, randomness or a placement choice is made by the leader
//! before proposing and travels inside the command (`now_ms`, ids, `worker_id`s, the new
//! round-robin cursor). Applying a command is therefore deterministic.
//!
//! Envelopes:
//! - [`Command::Batch`] applies its items in order, each on its own (not atomic), and answers
//!   [`Outcome::Batch`] with one response per item. Batches do not nest.
//! - [`Command::Idempotent`] carries a client key: the first time the key is seen the inner
//!   command is applied and its response (success or error) remembered; a repeated key returns
//!   that original response without applying anything. The last
//!   `IDEMPOTENCY_CAPACITY` (10,000) keys are kept (FIFO).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use varpulis_api::cluster::{ConnectorSpec, PipelineGroupSpec};

use crate::error::Error;
use crate::group::PlacementStatus;
use crate::migration::{MigrationReason, MigrationStatus};
use crate::registry::WorkerStatus;

/// A worker registration (also used for re-registration of a known id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterWorker {
    /// Stable id.
    pub worker_id: String,
    /// Base URL of its REST API (`http://` or `https://`).
    pub address: String,
    /// Key the coordinator must send to it.
    pub api_key: String,
    /// CPU cores.
    pub cpu_cores: u32,
    /// Most pipelines it accepts.
    pub max_pipelines: u32,
    /// Labels for placement constraints.
    pub labels: BTreeMap<String, String>,
    /// Leader's clock.
    pub now_ms: u64,
    /// How the key binding of a known id is checked (the `identity` module): `None` (commands
    /// written before worker identity existed) replaces the key as before; `Some(false)`
    /// refuses another key ([`crate::Error::WorkerIdTaken`]); `Some(true)` is an operator's
    /// takeover, allowed only while the id is not alive (unhealthy or dead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover: Option<bool>,
}

impl RegisterWorker {
    /// The command for a registration request received at `now_ms` (leader's clock).
    pub fn from_request(req: &varpulis_api::cluster::RegisterWorkerRequest, now_ms: u64) -> Self {
        RegisterWorker {
            worker_id: req.worker_id.clone(),
            address: req.address.clone(),
            api_key: req.api_key.clone(),
            cpu_cores: req.capacity.cpu_cores,
            max_pipelines: req.capacity.max_pipelines,
            labels: req.labels.clone(),
            now_ms,
            takeover: Some(false),
        }
    }
}

/// Where the leader placed one pipeline replica of a new group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementAssignment {
    /// Pipeline name.
    pub pipeline_name: String,
    /// Replica number.
    pub replica: u32,
    /// Chosen worker; `None` leaves it Pending.
    pub worker_id: Option<String>,
}

/// A replicated command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Does nothing (leader no-ops, tests).
    Noop,
    /// Registers a worker, or updates a known one (address, key, capacity, labels) and brings
    /// it back to Ready from Registering, Unhealthy or Dead. Its placements are kept.
    RegisterWorker(RegisterWorker),
    /// Removes a worker; its placements become Pending without a worker (epoch + 1).
    DeregisterWorker {
        /// Worker id.
        worker_id: String,
    },
    /// Changes a worker's status, following the transition table in [`crate::registry`].
    SetWorkerStatus {
        /// Worker id.
        worker_id: String,
        /// New status.
        status: WorkerStatus,
        /// Leader's clock.
        now_ms: u64,
        /// Why (shown to operators).
        reason: Option<String>,
    },
    /// Creates a pipeline group with placements chosen by the leader
    /// (`placement::plan_group`). Missing or unusable assignments are stored Pending.
    CreateGroup {
        /// Group id (UUID chosen by the leader).
        group_id: String,
        /// The spec (VPL already validated by the coordinator).
        spec: PipelineGroupSpec,
        /// Chosen placements.
        placements: Vec<PlacementAssignment>,
        /// Round-robin cursor after planning (stored so a new leader continues it).
        next_rr_cursor: Option<u64>,
        /// Leader's clock.
        created_at_ms: u64,
    },
    /// Deletes a group (the leader tears its pipelines down on the workers).
    DeleteGroup {
        /// Group id.
        group_id: String,
    },
    /// Records deployment progress of one placement, or assigns a Pending one to a worker.
    /// Rejected when `epoch` is not the placement's current epoch (fencing). Naming a
    /// different `worker_id` moves the placement (epoch + 1).
    UpdatePlacement {
        /// Group id.
        group_id: String,
        /// Pipeline name.
        pipeline_name: String,
        /// Replica number.
        replica: u32,
        /// Epoch the leader decided against.
        epoch: u64,
        /// New worker (moves the placement when it differs).
        worker_id: Option<String>,
        /// Pipeline id on the worker.
        pipeline_id: Option<String>,
        /// New status.
        status: PlacementStatus,
        /// Error to record (cleared when `None`).
        error: Option<String>,
    },
    /// Records that a placement's program failed on its worker (the worker reported the
    /// pipeline `failed`, e.g. after repeated budget errors): status `Failed` with `reason`,
    /// never redeployed nor moved until the group is redeployed or updated. Refused (stale
    /// epoch) when the placement moved since, ignored when it no longer runs that pipeline id.
    FailPipeline {
        /// Group id.
        group_id: String,
        /// Pipeline name.
        pipeline_name: String,
        /// Replica number.
        replica: u32,
        /// Epoch of the placement the worker runs.
        epoch: u64,
        /// Pipeline id on the worker.
        pipeline_id: String,
        /// Why it failed (the worker's reason).
        reason: String,
    },
    /// Creates a connector; 409 if the name exists.
    CreateConnector {
        /// The connector.
        spec: ConnectorSpec,
    },
    /// Replaces a connector; 404 if it does not exist.
    UpdateConnector {
        /// The connector.
        spec: ConnectorSpec,
    },
    /// Creates or replaces a connector.
    PutConnector {
        /// The connector.
        spec: ConnectorSpec,
    },
    /// Deletes a connector.
    DeleteConnector {
        /// Connector name.
        name: String,
    },
    /// Starts moving a placement away from `from_worker`.
    StartMigration {
        /// Migration id (chosen by the leader).
        migration_id: String,
        /// Group id.
        group_id: String,
        /// Pipeline name.
        pipeline_name: String,
        /// Replica number.
        replica: u32,
        /// Worker the placement is on now (empty if it has none).
        from_worker: String,
        /// Target, when one is available.
        to_worker: Option<String>,
        /// Why.
        reason: MigrationReason,
        /// Round-robin cursor after choosing the target.
        next_rr_cursor: Option<u64>,
        /// Leader's clock.
        now_ms: u64,
    },
    /// Sets (or changes) the target of an active migration.
    ProgressMigration {
        /// Migration id.
        migration_id: String,
        /// Target worker.
        to_worker: String,
        /// Round-robin cursor after choosing the target.
        next_rr_cursor: Option<u64>,
        /// Leader's clock.
        now_ms: u64,
    },
    /// Completes a migration: the placement moves to the target atomically.
    CompleteMigration {
        /// Migration id.
        migration_id: String,
        /// Pipeline id on the target worker.
        pipeline_id: String,
        /// Whether it was restored from the stored checkpoint.
        restored_from_checkpoint: bool,
        /// Leader's clock.
        now_ms: u64,
    },
    /// Marks a migration failed; the placement becomes Failed on its current worker.
    FailMigration {
        /// Migration id.
        migration_id: String,
        /// What went wrong.
        error: String,
        /// Leader's clock.
        now_ms: u64,
    },
    /// Stores the newest checkpoint of a placement (size-capped).
    StoreCheckpoint {
        /// Group id.
        group_id: String,
        /// Pipeline name.
        pipeline_name: String,
        /// Replica number.
        replica: u32,
        /// Epoch of the placement that produced it (must be current).
        epoch: u64,
        /// Opaque state.
        checkpoint: String,
        /// Events processed at the checkpoint.
        events_processed: u64,
        /// When it was taken (leader's clock).
        taken_at_ms: u64,
    },
    /// One step of a rolling update ([`crate::version`]).
    Rollout(crate::version::RolloutCommand),
    /// Applies commands in order, each on its own; answers one response per item.
    ///
    /// Shared (`Arc`): a log entry holding a batch is read once per replication stream and once
    /// for the apply, and each read is a clone; the items are not copied for it (issue 24). The
    /// JSON form is that of a plain list. Build one with [`Command::batch`].
    Batch(Arc<Vec<Command>>),
    /// Applies `command` once per `key`; repeats answer the original response.
    Idempotent {
        /// Client-chosen key.
        key: String,
        /// The command.
        command: Box<Command>,
    },
}

impl Command {
    /// A [`Command::Batch`] of `items`.
    pub fn batch(items: Vec<Command>) -> Command {
        Command::Batch(Arc::new(items))
    }

    /// Short name of the command (for logs and metrics).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Noop => "noop",
            Command::RegisterWorker(_) => "register_worker",
            Command::DeregisterWorker { .. } => "deregister_worker",
            Command::SetWorkerStatus { .. } => "set_worker_status",
            Command::CreateGroup { .. } => "create_group",
            Command::DeleteGroup { .. } => "delete_group",
            Command::UpdatePlacement { .. } => "update_placement",
            Command::FailPipeline { .. } => "fail_pipeline",
            Command::CreateConnector { .. } => "create_connector",
            Command::UpdateConnector { .. } => "update_connector",
            Command::PutConnector { .. } => "put_connector",
            Command::DeleteConnector { .. } => "delete_connector",
            Command::StartMigration { .. } => "start_migration",
            Command::ProgressMigration { .. } => "progress_migration",
            Command::CompleteMigration { .. } => "complete_migration",
            Command::FailMigration { .. } => "fail_migration",
            Command::StoreCheckpoint { .. } => "store_checkpoint",
            Command::Rollout(_) => "rollout",
            Command::Batch(_) => "batch",
            Command::Idempotent { .. } => "idempotent",
        }
    }

    /// Wraps `self` with an idempotency key.
    pub fn with_key(self, key: impl Into<String>) -> Command {
        Command::Idempotent {
            key: key.into(),
            command: Box::new(self),
        }
    }
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing to report.
    Noop,
    /// A worker was registered (`created`) or re-registered.
    WorkerRegistered {
        /// Worker id.
        worker_id: String,
        /// Whether the id was new.
        created: bool,
        /// Its status after registration.
        status: WorkerStatus,
    },
    /// A worker was removed.
    WorkerDeregistered {
        /// Worker id.
        worker_id: String,
        /// Placements left Pending by the removal.
        orphaned_placements: usize,
    },
    /// A worker's status was set.
    WorkerStatusChanged {
        /// Worker id.
        worker_id: String,
        /// Previous status.
        from: WorkerStatus,
        /// New status.
        to: WorkerStatus,
    },
    /// A group was created.
    GroupCreated {
        /// Group id.
        group_id: String,
        /// Placements stored without a worker.
        pending: usize,
    },
    /// A group was deleted.
    GroupDeleted {
        /// Group id.
        group_id: String,
        /// Its name.
        name: String,
    },
    /// A placement was updated.
    PlacementUpdated {
        /// Group id.
        group_id: String,
        /// Pipeline name.
        pipeline_name: String,
        /// Replica number.
        replica: u32,
        /// Epoch after the update.
        epoch: u64,
    },
    /// A connector was created or replaced.
    ConnectorSaved {
        /// The stored (normalised) connector, shared with the state (serialized as the spec).
        spec: Arc<ConnectorSpec>,
        /// Whether it was new.
        created: bool,
    },
    /// A connector was deleted.
    ConnectorDeleted {
        /// Its name.
        name: String,
    },
    /// A migration changed.
    MigrationUpdated {
        /// Migration id.
        migration_id: String,
        /// Its status now.
        status: MigrationStatus,
        /// Placement epoch now.
        epoch: u64,
    },
    /// A checkpoint was stored.
    CheckpointStored {
        /// Group id.
        group_id: String,
        /// Pipeline name.
        pipeline_name: String,
        /// Replica number.
        replica: u32,
        /// Its size in bytes.
        size: usize,
    },
    /// A rolling update took a step (`started`, `switched`, `finished`, `aborted`).
    RolloutUpdated {
        /// Group id.
        group_id: String,
        /// The rollout's target version.
        version: u64,
        /// The step taken.
        step: String,
    },
    /// One response per item of a batch.
    Batch(Vec<CommandResponse>),
}

/// The result of applying one command: what it did, or why it changed nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResponse {
    /// Success or the rejection.
    pub result: Result<Outcome, Error>,
}

impl CommandResponse {
    /// A success.
    pub fn ok(outcome: Outcome) -> Self {
        CommandResponse {
            result: Ok(outcome),
        }
    }

    /// A rejection.
    pub fn err(error: Error) -> Self {
        CommandResponse { result: Err(error) }
    }

    /// Whether the command was applied.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }

    /// The rejection, if any.
    pub fn error(&self) -> Option<&Error> {
        self.result.as_ref().err()
    }

    /// The result, by value.
    pub fn into_result(self) -> Result<Outcome, Error> {
        self.result
    }
}

impl From<Result<Outcome, Error>> for CommandResponse {
    fn from(result: Result<Outcome, Error>) -> Self {
        CommandResponse { result }
    }
}
