//! Worker registration and heartbeats, whatever carried them.
//!
//! The HTTP routes (`POST /api/v1/cluster/workers/register`, `.../{id}/heartbeat`) and the
//! NATS subjects (`varpulis.cluster.register`, `varpulis.cluster.heartbeat.{id}`) both parse
//! their message and call this service; the answer (or the [`ApiError`]) goes back the way the
//! request came.
//!
//! Registration is a Raft write (followers forward it to the leader). Heartbeats are not: the
//! leader records them in [`crate::health::Liveness`] and proposes `SetWorkerStatus Ready`
//! only when an unhealthy worker comes back. A heartbeat with `draining: true` (graceful
//! shutdown) drains the worker ([`crate::drain`]) and answers `drained` once nothing is left
//! on it. A heartbeat that lists the worker's pipelines lets the leader remove orphans.

use std::collections::BTreeSet;
use std::time::Instant;
use varpulis_api::cluster::{
    HeartbeatRequest, HeartbeatResponse, RegisterWorkerRequest, RegisterWorkerResponse,
    RunningPipeline,
};
use varpulis_cluster::command::RegisterWorker;
use varpulis_cluster::registry::WorkerStatus;
use varpulis_cluster::{ClusterState, Command, Outcome};

use crate::deploy;
use crate::error::ApiError;
use crate::state::{now_ms, AppState};
use crate::transport::worker_client::WorkerRef;

/// A registration's answer, and whether the worker is new (HTTP answers 201 then, else 200).
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The answer body.
    pub response: RegisterWorkerResponse,
    /// The worker id was not registered before.
    pub created: bool,
}

/// Registers (or re-registers) a worker through Raft, wrapped with the idempotency key if any.
pub async fn register(
    state: &AppState,
    req: RegisterWorkerRequest,
    idempotency_key: Option<String>,
) -> Result<Registered, ApiError> {
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
    let outcome = state.write_keyed(command, idempotency_key).await?;
    let created = matches!(outcome, Outcome::WorkerRegistered { created: true, .. });
    state
        .liveness
        .registered(&worker_id, req.capacity.pipelines_running, Instant::now());
    if state.config.auto_rebalance {
        state.rebalance.request();
    }
    state.reconcile.notify_one();
    tracing::info!(worker_id = %worker_id, created, "worker registered");
    Ok(Registered {
        response: RegisterWorkerResponse {
            worker_id,
            status: "registered".to_string(),
            heartbeat_interval_secs: state.config.heartbeat_interval.as_secs().max(1),
        },
        created,
    })
}

/// Parses a heartbeat body (an empty body is a heartbeat with no figures).
pub fn parse_heartbeat(body: &[u8]) -> Result<HeartbeatRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(HeartbeatRequest::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid heartbeat body: {e}")))
}

/// Handles a heartbeat on the leader (another node answers 421, or 503 without a leader).
/// Unknown worker → 404 (the worker registers again).
pub async fn heartbeat(
    state: &AppState,
    id: &str,
    req: HeartbeatRequest,
) -> Result<HeartbeatResponse, ApiError> {
    if !state.raft.is_leader() {
        // Forwarded here but leadership moved on: tell the worker where to go.
        return Err(match state.raft.leader() {
            Some((leader_id, leader_url)) => ApiError::NotLeader {
                leader_id: Some(leader_id),
                leader_url: Some(leader_url),
            },
            None => ApiError::NoLeader,
        });
    }
    let Some(status) = state.read(|s| s.worker(id).map(|w| w.status)) else {
        return Err(ApiError::NotFound(format!(
            "worker '{id}' is not registered"
        )));
    };
    crate::metrics::Metrics::inc(&state.metrics.heartbeats);
    state.liveness.heartbeat(
        id,
        req.events_processed,
        req.pipelines_running,
        Instant::now(),
    );
    if let Some(running) = req.pipelines.as_deref().filter(|r| !r.is_empty()) {
        remove_orphans(state, id, running);
    }
    if req.draining {
        // Also resumes a drain whose migrations failed or were never started.
        let d = crate::drain::drain_worker(state, id).await?;
        let status = if d.without_target > 0 {
            "no_target"
        } else {
            "ok"
        };
        return Ok(HeartbeatResponse {
            status: status.to_string(),
            drained: Some(d.response.removable),
        });
    }
    if status == WorkerStatus::Unhealthy {
        let command = Command::SetWorkerStatus {
            worker_id: id.to_string(),
            status: WorkerStatus::Ready,
            now_ms: now_ms(),
            reason: Some("heartbeat received".to_string()),
        };
        state.write(command).await?;
        tracing::info!(worker_id = %id, "worker is back: ready");
        state.reconcile.notify_one();
    }
    Ok(HeartbeatResponse {
        status: "ok".to_string(),
        drained: None,
    })
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
    tokio::spawn(async move {
        for pipeline_id in orphans {
            if deploy::undeploy(&state, &worker, &pipeline_id).await {
                tracing::info!(worker_id = %worker.id, pipeline_id = %pipeline_id, "removed orphaned pipeline");
            }
        }
    });
}
