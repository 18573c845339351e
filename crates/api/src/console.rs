//! Routes added with the web console (`/ui/`), usable by any client: VPL validation without
//! deploying (`POST /api/v1/cluster/validate`) and the per-pipeline counters of a group
//! (`GET /api/v1/cluster/pipeline-groups/{id}/metrics`).

use crate::error::DiagnosticBody;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/cluster/validate`: one VPL program to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateRequest {
    /// VPL source.
    pub source: String,
    /// Pipeline name the diagnostics are reported for (and the file name in `rendered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
}

/// Answer of `POST /api/v1/cluster/validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidateResponse {
    /// True when the program would be accepted by a group create or update.
    pub valid: bool,
    /// Every error (when invalid) or every warning (when valid), sorted by position.
    pub diagnostics: Vec<DiagnosticBody>,
}

/// Counters of one placement (pipeline replica) as its worker reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementMetrics {
    /// Pipeline name in the group.
    pub pipeline_name: String,
    /// Replica number (0-based).
    pub replica: u32,
    /// Worker it runs on (empty while it has none).
    pub worker_id: String,
    /// Pipeline id on the worker (empty until deployed).
    pub pipeline_id: String,
    /// Placement status (`Running`, `Deploying`, `Migrating`, ...).
    pub status: String,
    /// Events accepted by the pipeline since it was deployed on this worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_in: Option<u64>,
    /// Output events produced since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_out: Option<u64>,
    /// Runtime errors since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    /// Why the counters are missing (not running, worker unreachable, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// `GET /api/v1/cluster/pipeline-groups/{id}/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMetrics {
    /// Group id.
    pub group_id: String,
    /// Group name.
    pub name: String,
    /// One entry per placement, in the group's placement order.
    pub placements: Vec<PlacementMetrics>,
    /// When the counters were read, ms since epoch (this node's clock).
    pub sampled_at_ms: u64,
}
