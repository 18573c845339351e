//! Worker registration and heartbeats, whatever carried them.
//!
//! The HTTP routes (`POST /api/v1/cluster/workers/register`, `.../{id}/heartbeat`) and the
//! NATS subjects (`varpulis.cluster.register`, `varpulis.cluster.heartbeat.{id}`) both parse
//! their message and call this service; the answer (or the error) goes back the way the
//! request came.
//!
//! Registration is a Raft write (followers forward it to the leader). Heartbeats are not: the
//! leader records them in [`crate::leader::liveness::Liveness`] and proposes
//! `SetWorkerStatus Ready` only when an unhealthy worker comes back. A heartbeat with
//! `draining: true` (graceful shutdown) drains the worker ([`crate::leader::drain`]) and
//! answers `drained` once nothing is left on it. A heartbeat that lists the worker's pipelines
//! lets the leader remove orphans ([`crate::leader::orphans`]); their ids go back in the answer
//! (`stale_pipelines`) so a fenced worker drops them before it lifts its fence.
//!
//! Every answer carries the coordinators of the ensemble (discovery) and the worker's lease
//! (`lease_ms`, see `LeaderSettings::lease` and docs/coordinator.md "Leases and fencing").

use tokio::time::Instant;
use varpulis_api::cluster::{
    HeartbeatRequest, HeartbeatResponse, RegisterWorkerRequest, RegisterWorkerResponse,
};
use varpulis_cluster::command::RegisterWorker;
use varpulis_cluster::registry::WorkerStatus;
use varpulis_cluster::{Command, Outcome};

use crate::leader::context::LeaderCtx;
use crate::leader::error::LeaderError;

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
    ctx: &LeaderCtx,
    req: RegisterWorkerRequest,
    idempotency_key: Option<String>,
) -> Result<Registered, LeaderError> {
    let worker_id = req.worker_id.clone();
    let command = Command::RegisterWorker(RegisterWorker {
        worker_id: req.worker_id,
        address: crate::config::normalize_url(&req.address),
        api_key: req.api_key,
        cpu_cores: req.capacity.cpu_cores,
        max_pipelines: req.capacity.max_pipelines,
        labels: req.labels,
        now_ms: ctx.now_ms(),
    });
    let outcome = ctx.store.write_keyed(command, idempotency_key).await?;
    let created = matches!(outcome, Outcome::WorkerRegistered { created: true, .. });
    ctx.liveness
        .registered(&worker_id, req.capacity.pipelines_running, Instant::now());
    if ctx.settings.auto_rebalance {
        ctx.rebalance.request();
    }
    ctx.reconcile.notify_one();
    tracing::info!(worker_id = %worker_id, created, "worker registered");
    Ok(Registered {
        response: RegisterWorkerResponse {
            worker_id,
            status: "registered".to_string(),
            heartbeat_interval_secs: ctx.settings.heartbeat_interval.as_secs().max(1),
            coordinators: ctx.store.replica().coordinators(),
            lease_ms: Some(lease_ms(ctx)),
        },
        created,
    })
}

/// Parses a heartbeat body (an empty body is a heartbeat with no figures).
pub fn parse_heartbeat(body: &[u8]) -> Result<HeartbeatRequest, LeaderError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(HeartbeatRequest::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| LeaderError::Invalid(format!("invalid heartbeat body: {e}")))
}

/// Handles a heartbeat on the leader (another node answers where the leader is). Unknown
/// worker → not found (the worker registers again).
pub async fn heartbeat(
    ctx: &LeaderCtx,
    id: &str,
    req: HeartbeatRequest,
) -> Result<HeartbeatResponse, LeaderError> {
    // Forwarded here but leadership moved on: tell the worker where to go.
    ctx.store.ensure_leader()?;
    let Some(status) = ctx.store.read(|s| s.worker(id).map(|w| w.status)) else {
        return Err(LeaderError::NotFound(format!(
            "worker '{id}' is not registered"
        )));
    };
    crate::metrics::Metrics::inc(&ctx.metrics.heartbeats);
    ctx.liveness.heartbeat(
        id,
        req.events_processed,
        req.pipelines_running,
        Instant::now(),
    );
    let stale_pipelines = match req.pipelines.as_deref().filter(|r| !r.is_empty()) {
        Some(running) => crate::leader::orphans::remove_orphans(ctx, id, running),
        None => Vec::new(),
    };
    let coordinators = ctx.store.replica().coordinators();
    if req.draining {
        // Also resumes a drain whose migrations failed or were never started.
        let d = crate::leader::drain::drain_worker(ctx, id).await?;
        let status = if d.without_target > 0 {
            "no_target"
        } else {
            "ok"
        };
        return Ok(HeartbeatResponse {
            status: status.to_string(),
            drained: Some(d.response.removable),
            coordinators,
            lease_ms: Some(lease_ms(ctx)),
            stale_pipelines,
        });
    }
    if status == WorkerStatus::Unhealthy {
        let command = Command::SetWorkerStatus {
            worker_id: id.to_string(),
            status: WorkerStatus::Ready,
            now_ms: ctx.now_ms(),
            reason: Some("heartbeat received".to_string()),
        };
        ctx.store.write(command).await?;
        tracing::info!(worker_id = %id, "worker is back: ready");
        ctx.reconcile.notify_one();
    }
    Ok(HeartbeatResponse {
        status: "ok".to_string(),
        drained: None,
        coordinators,
        lease_ms: Some(lease_ms(ctx)),
        stale_pipelines,
    })
}

/// The lease every answer grants, in milliseconds (`LeaderSettings::lease`). It is granted
/// at the time the leader records the heartbeat in its liveness map, which is what the sweep
/// measures expiry from.
fn lease_ms(ctx: &LeaderCtx) -> u64 {
    u64::try_from(ctx.settings.lease().as_millis()).unwrap_or(u64::MAX)
}
