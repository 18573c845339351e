//! The worker's REST API (`varpulis server`): what the coordinator and users call.
//!
//! Routes: `POST/GET /api/v1/pipelines`, `GET/DELETE /api/v1/pipelines/{id}`,
//! `POST /api/v1/pipelines/{id}/events`, `.../events-batch`, `.../checkpoint`, `.../restore`,
//! `GET .../metrics`, `POST /api/v1/drain`, `GET /health`, `GET /ready`, `GET /metrics`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `POST /api/v1/pipelines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployPipelineRequest {
    /// Pipeline name (free text; the coordinator uses `<group>/<pipeline>`-style names).
    pub name: String,
    /// VPL source.
    pub source: String,
    /// Connector definitions resolved by the coordinator from its registry, by name.
    /// They are used for `.from(Name, ...)`/`.to(Name, ...)` when the VPL does not declare `Name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connectors: BTreeMap<String, ConnectorParams>,
    /// Optional checkpoint to restore before the first event (migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// Optional id the pipeline must have (the coordinator picks ids so a retried deploy
    /// is idempotent: deploying an id that already runs the same source answers 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Placement epoch assigned by the coordinator (fencing of moved pipelines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Inter-pipeline routes of this pipeline (data plane over MQTT); absent for pipelines
    /// deployed outside a group or by older coordinators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<PipelineRoutes>,
    /// Start without consuming the sources (`.from` subscriptions, inbound routes): the new
    /// version of a rolling update, whose sources start at the hand-over. Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// The MQTT route topics of one pipeline of a group, as shipped in its deploy request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineRoutes {
    /// Routes leaving this pipeline: its output events of matching types are published there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<RouteTopic>,
    /// Routes arriving at this pipeline: it subscribes to these topics and processes what comes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<RouteTopic>,
    /// Broker given to the coordinator (`--mqtt-url`, e.g. `mqtt://host:1883`); the worker's own
    /// `--mqtt-url` takes precedence over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_url: Option<String>,
    /// Identity of the inbound subscription that stays the same when the pipeline migrates
    /// (group, pipeline and replica): used as the MQTT client id of a persistent session, so the
    /// broker keeps QoS 1 route events published while the pipeline moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// One route as one end sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTopic {
    /// The pipeline at the other end (`to_pipeline` of an outbound route, `from_pipeline` of
    /// an inbound one).
    pub pipeline: String,
    /// MQTT topic carrying the route (no wildcards).
    pub topic: String,
    /// Event type patterns (exact, trailing `*`, or `*`).
    #[serde(default)]
    pub event_types: Vec<String>,
}

/// A connector's kind and parameters as shipped to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorParams {
    /// `mqtt` or `nats`.
    pub connector_type: String,
    /// Parameters (`host`, `port`, `client_id`, `topic`, ...); values are strings or numbers.
    #[serde(default)]
    pub params: Map<String, Value>,
}

/// Answer to a deploy: `201 {id, name, status}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployPipelineResponse {
    /// Pipeline id on this worker.
    pub id: String,
    /// Pipeline name.
    pub name: String,
    /// `running` (or `degraded` when a connector failed).
    pub status: String,
}

/// One pipeline as listed by `GET /api/v1/pipelines` and `GET /api/v1/pipelines/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineInfo {
    /// Pipeline id.
    pub id: String,
    /// Pipeline name.
    pub name: String,
    /// `running`, `degraded` or `stopped`.
    pub status: String,
    /// Source text.
    #[serde(default)]
    pub source: String,
    /// Events accepted so far.
    #[serde(default)]
    pub events_in: u64,
    /// Output events produced so far.
    #[serde(default)]
    pub events_out: u64,
    /// Runtime errors counted so far.
    #[serde(default)]
    pub errors: u64,
    /// Why the pipeline is degraded, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Placement epoch given at deploy time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Health and counters of the pipeline's connectors: its output connectors (HTTP, file,
    /// console, Kafka, enrich) and its sources (Kafka, MQTT, NATS; `role: "source"`)
    /// (docs/connectors.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connectors: Vec<ConnectorStatus>,
}

/// One connector of a pipeline, as shown in its status and metrics: an output connector, or
/// (with `role: "source"`) a source the pipeline reads from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorStatus {
    /// Connector name as declared.
    pub name: String,
    /// Kind (`http`, `file`, `console`, `kafka`, `mqtt`, `nats`).
    pub kind: String,
    /// `source` for a connection the pipeline reads from; absent for an output connector.
    /// A connector used by both `.from` and `.to` appears once in each role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// For a source: messages or records received from it (bad payloads included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_received: Option<u64>,
    /// `ok`, or `down` while its last attempt failed (the pipeline is then `degraded`).
    pub health: String,
    /// Why it is down (the last error), when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Events delivered (written, or acknowledged by the server).
    pub events_sent: u64,
    /// Events finally given up after the retries (counted and logged, never silent).
    pub events_given_up: u64,
    /// Events waiting in the connector's bounded queue.
    pub queued: u64,
    /// Requests (HTTP) or writes (file) made, successful or not.
    pub requests: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
    /// For a connector used by `.enrich`: its lookups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrich: Option<EnrichCounts>,
}

/// The `.enrich` lookups through one HTTP connector (docs/connectors.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnrichCounts {
    /// Lookups asked by the engine.
    pub lookups: u64,
    /// Answered from the cache (within `ttl`).
    pub cache_hits: u64,
    /// Answered by the server with fields (events enriched after a request).
    pub fetched: u64,
    /// The server had nothing for the key (404): the event passes on unenriched.
    pub not_found: u64,
    /// No answer within `timeout`: the event passed on unenriched.
    pub timeouts: u64,
    /// Failed requests or unusable answers: the event passed on unenriched.
    pub errors: u64,
    /// Answers held in the cache now.
    pub cached: u64,
}

/// `GET /api/v1/pipelines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineList {
    /// Pipelines on this worker.
    pub pipelines: Vec<PipelineInfo>,
    /// Their number.
    pub total: usize,
}

/// One input event: `{event_type, fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputEvent {
    /// Event type.
    pub event_type: String,
    /// Fields (ordered).
    #[serde(default)]
    pub fields: Map<String, Value>,
    /// Optional event time (RFC 3339 or integer ns since epoch); arrival time otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Value>,
}

/// One output event: `{event_type, timestamp, fields}` (VPL.md §13).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputEvent {
    /// Event type (the stream name, or the `emit` type inside `.process`).
    pub event_type: String,
    /// RFC 3339 event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Fields in emitted order.
    #[serde(default)]
    pub fields: Map<String, Value>,
}

/// `POST /api/v1/pipelines/{id}/events` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectResponse {
    /// Always true on 200.
    pub accepted: bool,
    /// Output events produced by this event, in order.
    pub output_events: Vec<OutputEvent>,
}

/// `POST /api/v1/pipelines/{id}/events-batch` JSON body. A bare JSON array of events is
/// accepted too, and so is `.evt` text with `Content-Type: text/plain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInjectRequest {
    /// Events in order.
    pub events: Vec<InputEvent>,
}

/// `POST /api/v1/pipelines/{id}/events-batch` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInjectResponse {
    /// Number of events accepted.
    pub accepted: usize,
    /// Output events produced by the batch, in order.
    pub output_events: Vec<OutputEvent>,
    /// Per-event runtime errors (event index and message); processing continued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<BatchError>,
}

/// A runtime error on one event of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchError {
    /// 0-based index in the batch.
    pub index: usize,
    /// What went wrong.
    pub error: String,
}

/// Opaque pipeline state: `POST /api/v1/pipelines/{id}/checkpoint` answers with it and
/// `POST /api/v1/pipelines/{id}/restore` takes it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Pipeline id the state was taken from.
    pub pipeline_id: String,
    /// Number of events the pipeline had processed when the state was taken.
    pub events_processed: u64,
    /// Format version of `state`.
    pub version: u32,
    /// The state itself, base64-free JSON-safe encoding chosen by the runtime (a string).
    pub state: String,
}

/// `POST /api/v1/pipelines/{id}/restore` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreResponse {
    /// Always true on 200.
    pub restored: bool,
    /// Events processed according to the restored state.
    pub events_processed: u64,
}

/// `GET /api/v1/pipelines/{id}/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineMetrics {
    /// Pipeline id.
    pub pipeline_id: String,
    /// Events accepted.
    pub events_in: u64,
    /// Output events produced.
    pub events_out: u64,
    /// Runtime errors.
    pub errors: u64,
    /// Output connectors with their counters (see [`PipelineInfo::connectors`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connectors: Vec<ConnectorStatus>,
}

/// `POST /api/v1/drain` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainResponse {
    /// Always true.
    pub draining: bool,
    /// Pipelines still running at the time of the answer.
    pub pipelines_running: usize,
}

/// `GET /health` on every node (workers and coordinators).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `worker` or `coordinator`.
    pub role: String,
    /// `healthy`.
    pub status: String,
    /// Crate version.
    pub version: String,
    /// Coordinator only: `Leader`, `Follower`, `Candidate` or `Learner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_role: Option<String>,
    /// Coordinator only: current leader id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<u64>,
    /// Coordinator only: worker counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkerCounts>,
    /// Worker only: its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Coordinator only: worker sessions (WebSockets) this node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_connections: Option<usize>,
}

/// `workers: {total, ready, unhealthy}` in a coordinator's `/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounts {
    /// All registered workers.
    pub total: usize,
    /// Workers in state Ready.
    pub ready: usize,
    /// Workers in state Unhealthy.
    pub unhealthy: usize,
}

/// `POST /api/v1/pipelines/{id}/handover`: the pipeline hands its traffic (and, with
/// `state: "keep"`, its state) over to another pipeline of the same worker. From then on the
/// old id forwards every event to the new pipeline (rolling updates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverRequest {
    /// Id of the pipeline taking over.
    pub to: String,
    /// `keep` (default) transfers the engine state; `reset` leaves the new pipeline empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// Answer of a handover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverResponse {
    /// Old pipeline id.
    pub from: String,
    /// New pipeline id.
    pub to: String,
    /// Whether the engine state was transferred.
    pub state_transferred: bool,
    /// Events the old pipeline had processed at the handover.
    pub events_processed: u64,
    /// The handover had already happened (retried call).
    pub already: bool,
}
