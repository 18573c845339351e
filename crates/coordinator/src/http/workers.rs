//! `/api/v1/cluster/workers`: registration, heartbeats, checkpoint pushes, listing and
//! deregistration.
//!
//! Registration and heartbeats are handled by [`crate::workers`] (the NATS transport calls the
//! same service); these handlers only translate HTTP to calls. Workers push their pipelines'
//! checkpoints to `POST /api/v1/cluster/workers/{id}/checkpoints`.
//!
//! Identity: heartbeats, checkpoint pushes and deregistrations of a worker id need the key it
//! registered with in `x-api-key` (a deregistration may use the cluster API key instead: the
//! operator's); `?force=true` on a registration with the cluster API key takes over an id that
//! is unhealthy or dead ([`crate::workers`]).

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
use crate::workers::Caller;

/// The query of a registration.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterQuery {
    /// An operator (cluster API key) takes over an unhealthy or dead id with a new key.
    #[serde(default)]
    pub force: bool,
}

/// The `x-api-key` header, if any.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get(varpulis_api::API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `POST /api/v1/cluster/workers/register`: 201 for a new worker, 200 for a re-registration.
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<RegisterQuery>,
    ApiJson(req): ApiJson<RegisterWorkerRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let caller = Caller {
        key: presented_key(&headers),
        force: query.force,
    };
    let cluster_key = state.config.api_key.as_deref();
    let registered =
        crate::workers::register(&state.leader, req, key, &caller, cluster_key).await?;
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
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let req = crate::workers::parse_heartbeat(&body)?;
    let presented = presented_key(&headers);
    let answer = crate::workers::heartbeat(&state.leader, &id, req, presented.as_deref()).await?;
    Ok(Json(answer))
}

/// `POST /api/v1/cluster/workers/{id}/checkpoints` (worker token, like heartbeats): stores the
/// pushed checkpoint of one of the worker's placements in Raft. 404 when the worker or the
/// pipeline is not placed there, 409 `stale_epoch` when the placement moved on (fencing),
/// 413 over the checkpoint cap, 401 without the worker's key.
pub async fn push_checkpoint(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(push): ApiJson<CheckpointPush>,
) -> Result<Json<CheckpointPushResponse>, ApiError> {
    crate::workers::authorize_worker(&state.leader, &id, presented_key(&headers).as_deref())?;
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
    // Outside the state lock, and only the page: with 100,000 workers building every view
    // takes long enough to hold up `apply`, and Raft's heartbeats with it
    // ([`crate::leader::store::Store::snapshot`]).
    let s = state.leader.store.snapshot();
    let total = s.worker_count();
    let (limit, offset) = (page.limit(), page.offset());
    let listed: Vec<_> = s.workers().skip(offset).take(limit).collect();
    let live: BTreeMap<String, WorkerLive> = listed
        .iter()
        .filter_map(|w| live(&state, &w.id).map(|l| (w.id.clone(), l)))
        .collect();
    let workers = views::worker_views_of(&s, listed.into_iter(), &live);
    drop(s);
    let pagination = varpulis_api::Pagination {
        limit,
        offset,
        has_more: offset.saturating_add(workers.len()) < total,
    };
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
/// Called by an operator (cluster API key) or by the worker itself (its own key, and the join
/// token when one is configured): `http::auth::require_operator_or_worker`.
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
