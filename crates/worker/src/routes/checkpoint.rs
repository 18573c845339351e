//! `POST /api/v1/pipelines/{id}/checkpoint`, `.../restore` and `GET .../metrics`.
//!
//! `Checkpoint::state` is the base64 of the runtime's checksummed state bytes, format
//! version [`CHECKPOINT_VERSION`].

use super::{find, JsonBody, Shared};
use crate::error::WorkerError;
use axum::extract::{Path, State};
use axum::Json;
use base64::Engine as _;
use varpulis_api::worker::{Checkpoint, PipelineMetrics, RestoreResponse};

pub use crate::pipeline::CHECKPOINT_VERSION;

/// The state bytes and event count of a checkpoint (`BadCheckpoint` when it cannot be read).
pub fn decode(cp: &Checkpoint) -> Result<(Vec<u8>, u64), WorkerError> {
    if cp.version != CHECKPOINT_VERSION {
        return Err(WorkerError::BadCheckpoint(format!(
            "version {} is not supported (expected {CHECKPOINT_VERSION})",
            cp.version
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cp.state.as_bytes())
        .map_err(|e| WorkerError::BadCheckpoint(format!("state is not base64: {e}")))?;
    Ok((bytes, cp.events_processed))
}

/// `POST /api/v1/pipelines/{id}/checkpoint`.
pub async fn checkpoint(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Checkpoint>, WorkerError> {
    Ok(Json(find(&state, &id)?.checkpoint_record().await?))
}

/// `POST /api/v1/pipelines/{id}/restore`.
pub async fn restore(
    State(state): State<Shared>,
    Path(id): Path<String>,
    JsonBody(cp): JsonBody<Checkpoint>,
) -> Result<Json<RestoreResponse>, WorkerError> {
    let p = find(&state, &id)?;
    let (bytes, events) = decode(&cp)?;
    p.restore(bytes, events).await?;
    tracing::info!(id = %p.id, from = %cp.pipeline_id, "pipeline restored");
    Ok(Json(RestoreResponse {
        restored: true,
        events_processed: p.events_in(),
    }))
}

/// `GET /api/v1/pipelines/{id}/metrics`.
pub async fn metrics(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<PipelineMetrics>, WorkerError> {
    Ok(Json(find(&state, &id)?.metrics()))
}
