//! The coordinator's REST API under `/api/v1/cluster/`.
//!
//! Shapes follow `shared/spec/cluster-mode.txt` and `tutorial-cluster.txt` field for field;
//! additions (labels, epochs, migrations, connectors) are optional fields a client may ignore.

use crate::pagination::Pagination;
use crate::worker::{InjectResponse, OutputEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Name of the pseudo-pipeline that stands for events injected from outside.
pub const EXTERNAL: &str = "_external";

/// `capacity` of a registering worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCapacity {
    /// CPU cores of the worker's machine.
    #[serde(default)]
    pub cpu_cores: u32,
    /// Pipelines running at registration.
    #[serde(default)]
    pub pipelines_running: u32,
    /// Most pipelines the worker accepts.
    #[serde(default = "default_max_pipelines")]
    pub max_pipelines: u32,
}

fn default_max_pipelines() -> u32 {
    100
}

impl Default for WorkerCapacity {
    fn default() -> Self {
        Self {
            cpu_cores: 1,
            pipelines_running: 0,
            max_pipelines: default_max_pipelines(),
        }
    }
}

/// `POST /api/v1/cluster/workers/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterWorkerRequest {
    /// Stable worker id.
    pub worker_id: String,
    /// Base URL of the worker's REST API.
    pub address: String,
    /// Key the coordinator must send to the worker (never returned by the API).
    #[serde(default)]
    pub api_key: String,
    /// Capacity.
    #[serde(default)]
    pub capacity: WorkerCapacity,
    /// Labels (`zone=a`) used by placement constraints.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Pipelines the worker already runs (sent when re-registering after a coordinator lost it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub running_pipelines: Vec<RunningPipeline>,
}

/// A pipeline a worker reports as running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningPipeline {
    /// Pipeline id on the worker.
    pub pipeline_id: String,
    /// Pipeline name.
    pub name: String,
    /// Placement epoch it was deployed with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// `failed` when the worker marked the pipeline failed (repeated budget errors); absent
    /// while it runs. The leader records a failed placement and does not move it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Answer to a registration: `{"worker_id": "...", "status": "registered"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterWorkerResponse {
    /// The registered id.
    pub worker_id: String,
    /// `registered`.
    pub status: String,
    /// Interval at which the coordinator expects heartbeats.
    #[serde(default)]
    pub heartbeat_interval_secs: u64,
    /// Base URLs of every coordinator of the ensemble (discovery: the worker fails over to
    /// them whatever single URL it was started with). Empty from an older coordinator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coordinators: Vec<String>,
    /// The lease granted with this answer, in milliseconds: the worker's coordinator-deployed
    /// pipelines may run for this long after the request was sent unless a later answer
    /// renews it (docs/worker.md "Leases and fencing"). Absent: no lease (never fenced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// The heartbeat interval in milliseconds (finer than `heartbeat_interval_secs`; it grows
    /// with the number of workers past `--max-heartbeats-per-second`, docs/coordinator.md
    /// "Heartbeat rate"). Workers heartbeat at this interval (never faster than their own
    /// setting). Absent from an older coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Silence after which the leader marks this worker unhealthy, in milliseconds, as granted
    /// with this answer. Absent from an older coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_ms: Option<u64>,
}

/// `POST /api/v1/cluster/workers/{id}/heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Events processed since the worker started.
    #[serde(default)]
    pub events_processed: u64,
    /// Pipelines running now.
    #[serde(default)]
    pub pipelines_running: u32,
    /// Pipelines running now, with ids (lets the reconciler spot orphans and gaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<Vec<RunningPipeline>>,
    /// Set by a worker shutting down gracefully: asks the leader to drain it (move its
    /// pipelines away with fresh checkpoints) before it deregisters.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// `ok`; `no_target` answers a draining heartbeat when some pipeline has nowhere to go.
    pub status: String,
    /// Answer to a draining heartbeat: true once no placement and no active migration is left
    /// on the worker (it may deregister). Absent on ordinary heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained: Option<bool>,
    /// Base URLs of every coordinator of the ensemble (discovery). Empty from an older
    /// coordinator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coordinators: Vec<String>,
    /// The lease renewed by this answer, in milliseconds (see [`RegisterWorkerResponse`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Pipelines the heartbeat listed that the leader does not place on this worker (an
    /// older epoch, a group deleted or moved away): the worker removes them before it lifts
    /// its fence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale_pipelines: Vec<String>,
    /// When to send the next heartbeat, in milliseconds (see
    /// [`RegisterWorkerResponse::heartbeat_interval_ms`]). Absent from an older coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Silence after which the leader marks this worker unhealthy, in milliseconds, as granted
    /// with this answer. Absent from an older coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_ms: Option<u64>,
}

/// One worker in `GET /api/v1/cluster/workers` and `GET /api/v1/cluster/workers/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Worker id.
    pub id: String,
    /// Base URL of its REST API.
    pub address: String,
    /// `registering`, `ready`, `busy`, `unhealthy`, `draining` or `dead`.
    pub status: String,
    /// Pipelines it runs (as last reported).
    pub pipelines_running: u32,
    /// Its capacity.
    pub max_pipelines: u32,
    /// Names of the pipelines placed on it.
    pub assigned_pipelines: Vec<String>,
    /// Events processed as last reported.
    #[serde(default)]
    pub events_processed: u64,
    /// CPU cores.
    #[serde(default)]
    pub cpu_cores: u32,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Milliseconds since the leader last heard from it (leader's view; absent elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_ms_ago: Option<u64>,
    /// True when the worker is `draining` and nothing is placed on or migrating off it any
    /// more: it may be removed (`DELETE`) or stopped. Absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removable: bool,
}

/// `GET /api/v1/cluster/workers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerList {
    /// This page of workers.
    pub workers: Vec<WorkerInfo>,
    /// All workers.
    pub total: usize,
    /// Page description.
    pub pagination: Pagination,
}

/// `DELETE /api/v1/cluster/workers/{id}` answer: `{"deleted": true}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletedResponse {
    /// Always true.
    pub deleted: bool,
}

/// A pipeline inside a group spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineSpec {
    /// Pipeline identifier inside the group (unique there).
    pub name: String,
    /// VPL source; validated before anything is stored.
    pub source: String,
    /// Preferred worker id; placement falls back to the strategy when it is unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_affinity: Option<String>,
    /// Number of copies to run on distinct workers (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Label constraints: the pipeline only runs on workers carrying all of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A routing rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Source pipeline, or `_external` for injected events.
    pub from_pipeline: String,
    /// Destination pipeline name.
    pub to_pipeline: String,
    /// Event type patterns (exact, or a trailing `*`).
    pub event_types: Vec<String>,
    /// MQTT topic carrying the route (generated when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_topic: Option<String>,
}

/// `POST /api/v1/cluster/pipeline-groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineGroupSpec {
    /// Group name (unique in the cluster).
    pub name: String,
    /// Pipelines.
    pub pipelines: Vec<PipelineSpec>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Placement strategy: `round_robin` (default), `least_loaded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
}

/// Where one pipeline (replica) of a group runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementInfo {
    /// Pipeline name in the group.
    pub pipeline_name: String,
    /// Worker id.
    pub worker_id: String,
    /// Worker URL.
    pub worker_address: String,
    /// Pipeline id on the worker (empty until deployed).
    pub pipeline_id: String,
    /// `Pending`, `Deploying`, `Running`, `Failed`, `Migrating` or `Stopped`.
    pub status: String,
    /// Replica number (0-based).
    #[serde(default)]
    pub replica: u32,
    /// Placement epoch (increases each time the placement moves).
    #[serde(default)]
    pub epoch: u64,
    /// Events processed at the newest stored checkpoint (what a migration restores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_events: Option<u64>,
    /// When that checkpoint was stored, ms since epoch (leader's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_at_ms: Option<u64>,
    /// Why the placement is `Failed` (a deploy error, or `pipeline failed on its worker: …`
    /// when the program itself failed: then it is not redeployed until the group is updated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A pipeline group as answered by create, get and list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineGroupInfo {
    /// Group id (UUID).
    pub id: String,
    /// Group name.
    pub name: String,
    /// `deploying`, `running`, `partially_running`, `failed` or `tearing_down`.
    pub status: String,
    /// Number of pipelines in the spec.
    pub pipeline_count: usize,
    /// Placements.
    pub placements: Vec<PlacementInfo>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// The spec as submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PipelineGroupSpec>,
    /// Version number (1 at creation).
    #[serde(default)]
    pub version: u64,
}

/// `GET /api/v1/cluster/pipeline-groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineGroupList {
    /// This page of groups.
    pub pipeline_groups: Vec<PipelineGroupInfo>,
    /// All groups.
    pub total: usize,
    /// Page description.
    pub pagination: Pagination,
}

/// `DELETE /api/v1/cluster/pipeline-groups/{id}` answer: `{"torn_down": true}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TornDownResponse {
    /// Always true.
    pub torn_down: bool,
}

/// `POST /api/v1/cluster/pipeline-groups/{id}/inject` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInjectRequest {
    /// Event type; decides the route.
    pub event_type: String,
    /// Fields.
    #[serde(default)]
    pub fields: Map<String, Value>,
}

/// `POST /api/v1/cluster/pipeline-groups/{id}/inject` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInjectResponse {
    /// Pipeline name the event went to.
    pub routed_to: String,
    /// Worker that ran it.
    pub worker_id: String,
    /// The worker's answer.
    pub worker_response: InjectResponse,
}

/// `POST /api/v1/cluster/pipeline-groups/{id}/inject-batch` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInjectBatchResponse {
    /// Events accepted in all.
    pub accepted: usize,
    /// Events per pipeline they were routed to.
    pub routed: BTreeMap<String, usize>,
    /// Output events in order of the pipelines' answers.
    pub output_events: Vec<OutputEvent>,
}

/// A pipeline as shown in the topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyPipeline {
    /// Pipeline name.
    pub name: String,
    /// Worker id.
    pub worker_id: String,
    /// Worker URL.
    pub worker_address: String,
}

/// A group as shown in the topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyGroup {
    /// Group id.
    pub group_id: String,
    /// Group name.
    pub group_name: String,
    /// Its pipelines.
    pub pipelines: Vec<TopologyPipeline>,
    /// Its routes.
    pub routes: Vec<RouteSpec>,
}

/// `GET /api/v1/cluster/topology`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Every group.
    pub groups: Vec<TopologyGroup>,
}

/// `POST /api/v1/cluster/connectors` and `PUT /api/v1/cluster/connectors/{name}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorSpec {
    /// Identifier (VPL refers to it by this name).
    pub name: String,
    /// `mqtt` or `nats`.
    pub connector_type: String,
    /// Parameters; values may be strings or numbers (`"port": "1883"` and `1883` both work).
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `GET /api/v1/cluster/connectors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorList {
    /// This page.
    pub connectors: Vec<ConnectorSpec>,
    /// All connectors.
    pub total: usize,
    /// Page description.
    pub pagination: Pagination,
}

/// One migration in `GET /api/v1/cluster/migrations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationInfo {
    /// Migration id.
    pub id: String,
    /// Group id.
    pub group_id: String,
    /// Pipeline name.
    pub pipeline_name: String,
    /// Replica number.
    #[serde(default)]
    pub replica: u32,
    /// Worker it leaves.
    pub from_worker: String,
    /// Worker it goes to (absent while pending without a target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_worker: Option<String>,
    /// `pending`, `deploying`, `completed` or `failed`.
    pub status: String,
    /// `worker_unhealthy`, `drain`, `rebalance` or `manual`.
    pub reason: String,
    /// Start time, ms since epoch (leader's clock at proposal).
    pub started_at_ms: u64,
    /// Last change (target chosen, finished), ms since epoch.
    #[serde(default)]
    pub updated_at_ms: u64,
    /// End time, ms since epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at_ms: Option<u64>,
    /// `completed_at_ms - started_at_ms` once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the pipeline was restored from a checkpoint.
    #[serde(default)]
    pub restored_from_checkpoint: bool,
}

/// `GET /api/v1/cluster/migrations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationList {
    /// This page.
    pub migrations: Vec<MigrationInfo>,
    /// All migrations.
    pub total: usize,
    /// Page description.
    pub pagination: Pagination,
}

/// One planned or started move in a drain or rebalance answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedMove {
    /// Migration id once started (absent for a move deferred by the rate limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_id: Option<String>,
    /// Group id.
    pub group_id: String,
    /// Pipeline name.
    pub pipeline_name: String,
    /// Replica number.
    #[serde(default)]
    pub replica: u32,
    /// Worker it leaves.
    pub from_worker: String,
    /// Worker it goes to (absent when no worker can take it: the migration waits pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_worker: Option<String>,
}

/// `POST /api/v1/cluster/workers/{id}/drain` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainResponse {
    /// Worker id.
    pub worker_id: String,
    /// Its status now (`draining`).
    pub status: String,
    /// Migrations started by this request (one per placement not already moving).
    pub migrations: Vec<PlannedMove>,
    /// Placements still on the worker (moving or waiting for a target).
    pub remaining: usize,
    /// True when nothing is left on the worker: it may be removed.
    pub removable: bool,
}

/// `POST /api/v1/cluster/rebalance` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebalanceResponse {
    /// Every move of the plan, in order; the first ones carry the id of their migration.
    pub moves: Vec<PlannedMove>,
    /// Moves started now (the rate limit defers the rest to later rounds).
    pub started: usize,
}

/// `POST /api/v1/cluster/workers/{id}/checkpoints`: a worker pushes the newest state of one
/// of its coordinator-deployed pipelines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointPush {
    /// Placement epoch the pipeline was deployed at (fencing: a stale epoch is refused).
    pub epoch: u64,
    /// The checkpoint, as `POST /api/v1/pipelines/{id}/checkpoint` returns it.
    pub checkpoint: crate::worker::Checkpoint,
}

/// Answer to a checkpoint push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointPushResponse {
    /// Whether it was stored (false when unchanged since the stored one).
    pub stored: bool,
    /// Size of the stored state in bytes.
    pub size: usize,
}

/// New VPL for one pipeline of a group (rolling update).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineUpdate {
    /// Pipeline name in the group.
    pub name: String,
    /// New VPL source.
    pub source: String,
}

/// `PUT /api/v1/cluster/pipeline-groups/{id}`: a rolling update of some pipelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateGroupRequest {
    /// Pipelines whose source changes (the others keep running untouched).
    pub pipelines: Vec<PipelineUpdate>,
    /// `"reset"` starts the new version without the old state; required when the state shape
    /// (stream names and operators) changes. Default: keep the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// `POST /api/v1/cluster/pipeline-groups/{id}/rollback`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// Version to return to (default: the one before the current).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `"reset"` when the state shape differs (as for an update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// Answer of a completed rolling update or rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupUpdateResponse {
    /// Group id.
    pub group_id: String,
    /// Version now running.
    pub version: u64,
    /// Version before the update.
    pub previous_version: u64,
    /// Pipelines whose source changed.
    pub changed: Vec<String>,
    /// `keep` (state carried over) or `reset`.
    pub state: String,
    /// For a rollback: the version whose spec now runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<u64>,
    /// The group after the update.
    pub group: PipelineGroupInfo,
}
