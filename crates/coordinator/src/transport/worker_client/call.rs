//! The calls the coordinator makes to a worker, as typed requests, and the raw answers the
//! transports bring back.
//!
//! A [`WorkerCall`] names one route of the worker API (`docs/worker.md`); each transport maps
//! it onto its own wire form (HTTP method and path, or NATS command subject and payload).

use axum::body::Bytes;
use std::pin::Pin;
use varpulis_api::worker::{DeployPipelineRequest, HandoverRequest, InputEvent};

/// One request to a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerCall {
    /// `POST /api/v1/pipelines` (NATS `deploy`).
    Deploy(DeployPipelineRequest),
    /// `DELETE /api/v1/pipelines/{id}` (NATS `undeploy`).
    Undeploy {
        /// Pipeline id on the worker.
        pipeline_id: String,
    },
    /// `POST /api/v1/pipelines/{id}/events` (NATS `inject`).
    Inject {
        /// Pipeline id on the worker.
        pipeline_id: String,
        /// The event.
        event: InputEvent,
    },
    /// `POST /api/v1/pipelines/{id}/events-batch` (NATS `inject_batch`).
    InjectBatch {
        /// Pipeline id on the worker.
        pipeline_id: String,
        /// The events.
        batch: EventBatch,
    },
    /// `POST /api/v1/pipelines/{id}/checkpoint` (NATS `checkpoint`).
    Checkpoint {
        /// Pipeline id on the worker.
        pipeline_id: String,
    },
    /// `GET /api/v1/pipelines/{id}/metrics` (HTTP only: NATS has no such command).
    Metrics {
        /// Pipeline id on the worker.
        pipeline_id: String,
    },
    /// `POST /api/v1/pipelines/{id}/handover` (HTTP only: NATS has no such command).
    Handover {
        /// Pipeline id handing over.
        pipeline_id: String,
        /// Who takes over, and what happens to the state.
        request: HandoverRequest,
    },
}

/// The events of a batch inject, in the form the client sent them.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBatch {
    /// JSON events.
    Json(Vec<InputEvent>),
    /// A JSON array of events as the client sent them (forwarded without re-encoding).
    Raw {
        /// The array's bytes.
        events: Bytes,
        /// How many events it holds.
        count: usize,
    },
    /// `.evt` text (sent as `text/plain`).
    Evt(String),
}

impl EventBatch {
    /// Events in the batch (`.evt` text: its lines that are neither blank nor comments).
    pub fn len(&self) -> usize {
        match self {
            EventBatch::Json(events) => events.len(),
            EventBatch::Raw { count, .. } => *count,
            EventBatch::Evt(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("//"))
                .filter(|l| !l.starts_with("BATCH"))
                .count(),
        }
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl WorkerCall {
    /// The pipeline the call is about (`None` for a deploy, which names it in its body).
    pub fn pipeline_id(&self) -> Option<&str> {
        match self {
            WorkerCall::Deploy(_) => None,
            WorkerCall::Undeploy { pipeline_id }
            | WorkerCall::Inject { pipeline_id, .. }
            | WorkerCall::InjectBatch { pipeline_id, .. }
            | WorkerCall::Checkpoint { pipeline_id }
            | WorkerCall::Metrics { pipeline_id }
            | WorkerCall::Handover { pipeline_id, .. } => Some(pipeline_id),
        }
    }

    /// The NATS command carrying this call (`varpulis.cluster.cmd.{worker}.{command}`), or
    /// `None` when only HTTP carries it.
    pub fn nats_command(&self) -> Option<&'static str> {
        match self {
            WorkerCall::Deploy(_) => Some("deploy"),
            WorkerCall::Undeploy { .. } => Some("undeploy"),
            WorkerCall::Inject { .. } => Some("inject"),
            WorkerCall::InjectBatch { .. } => Some("inject_batch"),
            WorkerCall::Checkpoint { .. } => Some("checkpoint"),
            WorkerCall::Handover { .. } | WorkerCall::Metrics { .. } => None,
        }
    }
}

/// A worker's answer: the HTTP status (NATS replies carry it in a header) and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes (JSON for every route the coordinator calls).
    pub body: Bytes,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A stream of body chunks (an SSE stream of a worker).
pub type ByteStream = Pin<Box<dyn futures::Stream<Item = Result<Bytes, String>> + Send>>;
