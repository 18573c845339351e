//! `/api/v1/cluster/workers`: registration, heartbeats, checkpoint pushes, listing and
//! deregistration.
//!
//! Registration and heartbeats are handled by [`crate::workers`] (the NATS transport calls the
//! same service); these handlers only translate HTTP to calls. Workers push their pipelines'
//! checkpoints to `POST /api/v1/cluster/workers/{id}/checkpoints`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::BTreeMap;
use varpulis_api::cluster::{
    CheckpointPush, CheckpointPushResponse, DeletedResponse, HeartbeatResponse,
    RegisterWorkerRequest, WorkerInfo, WorkerList,
};
use varpulis_api::Page;
use varpulis_cluster::views::{self, WorkerLive};
use varpulis_cluster::Command;

use crate::error::ApiError;
use crate::http::extract::idempotency_key;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::node::AppState;

/// `POST /api/v1/cluster/workers/register`: 201 for a new worker, 200 for a re-registration.
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RegisterWorkerRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let registered = crate::workers::register(&state.leader, req, key).await?;
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(registered.response)).into_response())
}

/// `POST /api/v1/cluster/workers/{id}/heartbeat` (leader; followers forward it). Unknown id → 404.
pub async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let req = crate::workers::parse_heartbeat(&body)?;
    let answer = crate::workers::heartbeat(&state.leader, &id, req).await?;
    Ok(Json(answer))
}

/// `POST /api/v1/cluster/workers/{id}/checkpoints` (worker token, like heartbeats): stores the
/// pushed checkpoint of one of the worker's placements in Raft. 404 when the worker or the
/// pipeline is not placed there, 409 `stale_epoch` when the placement moved on (fencing),
/// 413 over the checkpoint cap.
pub async fn push_checkpoint(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(push): ApiJson<CheckpointPush>,
) -> Result<Json<CheckpointPushResponse>, ApiError> {
    let stored = crate::leader::checkpoint::store_pushed(&state.leader, &id, push).await?;
    Ok(Json(stored))
}

/// The leader's in-memory figures for one worker (none on followers).
fn live(state: &AppState, id: &str) -> Option<WorkerLive> {
    state.leader.liveness.get(id).map(|seen| WorkerLive {
        pipelines_running: seen.pipelines_running,
        events_processed: seen.events_processed,
        last_heartbeat_ms_ago: Some(seen.at.elapsed().as_millis() as u64),
    })
}

/// `GET /api/v1/cluster/workers`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> Json<WorkerList> {
    let all = state.read(|s| {
        let live: BTreeMap<String, WorkerLive> = s
            .workers()
            .filter_map(|w| live(&state, &w.id).map(|l| (w.id.clone(), l)))
            .collect();
        views::worker_views(s, &live)
    });
    let (workers, total, pagination) = page.apply(all);
    Json(WorkerList {
        workers,
        total,
        pagination,
    })
}

/// `GET /api/v1/cluster/workers/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WorkerInfo>, ApiError> {
    let seen = live(&state, &id);
    state
        .read(|s| views::worker_view(s, &id, seen.as_ref()))
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("worker '{id}' not found")))
}

/// `DELETE /api/v1/cluster/workers/{id}`: `{"deleted": true}`; its placements go back to Pending.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<DeletedResponse>, ApiError> {
    let key = idempotency_key(&headers)?;
    state
        .leader
        .store
        .write_keyed(
            Command::DeregisterWorker {
                worker_id: id.clone(),
            },
            key,
        )
        .await?;
    state.leader.liveness.remove(&id);
    state.leader.reconcile.notify_one();
    Ok(Json(DeletedResponse { deleted: true }))
}
