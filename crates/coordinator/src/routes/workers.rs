//! `/api/v1/cluster/workers`: registration, heartbeats, listing and deregistration.
//!
//! Registration is a Raft write (forwarded to the leader by the proxy). Heartbeats are not: the
//! leader records them in [`crate::health::Liveness`] and proposes `SetWorkerStatus Ready` only when
//! an unhealthy worker comes back. A heartbeat with `draining: true` (graceful shutdown) drains
//! the worker ([`crate::drain`]) and answers `drained` once nothing is left on it. Workers push
//! their pipelines' checkpoints to `POST /api/v1/cluster/workers/{id}/checkpoints`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use varpulis_api::cluster::{
    CheckpointPush, CheckpointPushResponse, DeletedResponse, HeartbeatRequest, HeartbeatResponse,
    RegisterWorkerRequest, RegisterWorkerResponse, RunningPipeline, WorkerInfo, WorkerList,
};
use varpulis_api::Page;
use varpulis_cluster::command::RegisterWorker;
use varpulis_cluster::registry::WorkerStatus;
use varpulis_cluster::views::{self, WorkerLive};
use varpulis_cluster::{ClusterState, Command, Outcome};

use crate::deploy;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::{idempotency_key, now_ms, AppState};
use crate::transport::worker_client::WorkerRef;

/// `POST /api/v1/cluster/workers/register`: 201 for a new worker, 200 for a re-registration.
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RegisterWorkerRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let worker_id = req.worker_id.clone();
    let command = Command::RegisterWorker(RegisterWorker {
        worker_id: req.worker_id,
        address: crate::config::normalize_url(&req.address),
        api_key: req.api_key,
        cpu_cores: req.capacity.cpu_cores,
        max_pipelines: req.capacity.max_pipelines,
        labels: req.labels,
        now_ms: now_ms(),
    });
    let outcome = state.write_keyed(command, key).await?;
    let created = matches!(outcome, Outcome::WorkerRegistered { created: true, .. });
    state
        .liveness
        .registered(&worker_id, req.capacity.pipelines_running, Instant::now());
    if state.config.auto_rebalance {
        state.rebalance.request();
    }
    state.reconcile.notify_one();
    tracing::info!(worker_id = %worker_id, created, "worker registered");
    let body = RegisterWorkerResponse {
        worker_id,
        status: "registered".to_string(),
        heartbeat_interval_secs: state.config.heartbeat_interval.as_secs().max(1),
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

/// `POST /api/v1/cluster/workers/{id}/heartbeat` (leader; followers forward it). Unknown id → 404.
pub async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let req: HeartbeatRequest = if body.iter().all(u8::is_ascii_whitespace) {
        HeartbeatRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid heartbeat body: {e}")))?
    };
    if !state.raft.is_leader() {
        // Forwarded here but leadership moved on: tell the worker where to go.
        let (leader_id, leader_url) = state
            .raft
            .leader()
            .map_or((None, None), |(i, u)| (Some(i), Some(u)));
        return Err(if leader_id.is_some() {
            ApiError::NotLeader {
                leader_id,
                leader_url,
            }
        } else {
            ApiError::NoLeader
        });
    }
    let status = state.read(|s| s.worker(&id).map(|w| w.status));
    let Some(status) = status else {
        return Err(ApiError::NotFound(format!(
            "worker '{id}' is not registered"
        )));
    };
    crate::metrics::Metrics::inc(&state.metrics.heartbeats);
    state.liveness.heartbeat(
        &id,
        req.events_processed,
        req.pipelines_running,
        Instant::now(),
    );
    if let Some(running) = req.pipelines.as_deref().filter(|r| !r.is_empty()) {
        remove_orphans(&state, &id, running);
    }
    if req.draining {
        // Also resumes a drain whose migrations failed or were never started.
        let d = crate::drain::drain_worker(&state, &id).await?;
        let status = if d.without_target > 0 {
            "no_target"
        } else {
            "ok"
        };
        return Ok(Json(HeartbeatResponse {
            status: status.to_string(),
            drained: Some(d.response.removable),
        }));
    }
    if status == WorkerStatus::Unhealthy {
        let command = Command::SetWorkerStatus {
            worker_id: id.clone(),
            status: WorkerStatus::Ready,
            now_ms: now_ms(),
            reason: Some("heartbeat received".to_string()),
        };
        state.write(command).await?;
        tracing::info!(worker_id = %id, "worker is back: ready");
        state.reconcile.notify_one();
    }
    Ok(Json(HeartbeatResponse {
        status: "ok".to_string(),
        drained: None,
    }))
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
    crate::checkpoint::store_pushed(&state, &id, push)
        .await
        .map(Json)
}

/// Pipelines a worker runs that the coordinator deployed (they carry an epoch) but that no current
/// placement or in-flight migration accounts for: left behind by a migration, a deleted group or
/// a deploy whose placement moved on.
pub fn orphans(s: &ClusterState, worker_id: &str, running: &[RunningPipeline]) -> Vec<String> {
    let mut expected = BTreeSet::new();
    for (g, p) in s.placements_on(worker_id) {
        expected.insert(deploy::pipeline_id(
            &g.id,
            &p.pipeline_name,
            p.replica,
            p.epoch,
        ));
        if let Some(id) = &p.pipeline_id {
            expected.insert(id.clone());
        }
    }
    // Both versions of a rolling update in progress run on purpose.
    expected.extend(crate::rolling::rollout_pipelines(s, worker_id));
    for m in s.active_migrations() {
        if m.to_worker.as_deref() != Some(worker_id) {
            continue;
        }
        if let Some(p) = s
            .group(&m.group_id)
            .and_then(|g| g.placement(&m.pipeline_name, m.replica))
        {
            expected.insert(deploy::pipeline_id(
                &m.group_id,
                &m.pipeline_name,
                m.replica,
                p.epoch + 1,
            ));
        }
    }
    running
        .iter()
        .filter(|r| r.epoch.is_some() && !expected.contains(&r.pipeline_id))
        .map(|r| r.pipeline_id.clone())
        .collect()
}

/// Deletes orphaned pipelines from a worker in the background (the heartbeat answers at once).
fn remove_orphans(state: &AppState, worker_id: &str, running: &[RunningPipeline]) {
    let found = state.read(|s| {
        let orphans = orphans(s, worker_id, running);
        WorkerRef::find(s, worker_id).map(|w| (orphans, w))
    });
    let Some((orphans, worker)) = found else {
        return;
    };
    if orphans.is_empty() {
        return;
    }
    let state = state.clone();
    let worker_id = worker_id.to_string();
    tokio::spawn(async move {
        for pipeline_id in orphans {
            if deploy::undeploy(&state, &worker, &pipeline_id).await {
                tracing::info!(worker_id = %worker_id, pipeline_id = %pipeline_id, "removed orphaned pipeline");
            }
        }
    });
}

/// The leader's in-memory figures for one worker (none on followers).
fn live(state: &AppState, id: &str) -> Option<WorkerLive> {
    state.liveness.get(id).map(|seen| WorkerLive {
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
        .write_keyed(
            Command::DeregisterWorker {
                worker_id: id.clone(),
            },
            key,
        )
        .await?;
    state.liveness.remove(&id);
    state.reconcile.notify_one();
    Ok(Json(DeletedResponse { deleted: true }))
}
