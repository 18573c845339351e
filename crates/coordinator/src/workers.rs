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
//!
//! Identity ([`varpulis_cluster::identity`], docs/security.md): a worker id is bound to the key
//! it registered with. Heartbeats, checkpoint pushes and the worker's own deregistration must
//! present that key (`x-api-key`, [`authorize_worker`]); a registration of a known id with
//! another key is refused (409 `worker_id_taken`) unless an operator takes over a dead id.

use tokio::time::Instant;
use varpulis_api::cluster::{
    HeartbeatRequest, HeartbeatResponse, RegisterWorkerRequest, RegisterWorkerResponse,
};
use varpulis_cluster::command::RegisterWorker;
use varpulis_cluster::registry::WorkerStatus;
use varpulis_cluster::{Command, Outcome};

use crate::auth::secret_matches;
use crate::error::ApiError;
use crate::leader::context::{Grant, LeaderCtx};
use crate::leader::error::LeaderError;

/// The credentials a worker route was called with.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The `x-api-key` presented (the worker's own key, or the cluster API key).
    pub key: Option<String>,
    /// `?force=true` on a registration: an operator takes over an unhealthy or dead id.
    pub force: bool,
}

impl Caller {
    /// Whether the caller holds the cluster API key (anyone does when none is configured:
    /// then every operator route is open too).
    pub fn is_operator(&self, cluster_key: Option<&str>) -> bool {
        match cluster_key {
            Some(expected) => secret_matches(self.key.as_deref(), expected),
            None => true,
        }
    }
}

/// Checks that `presented` is the key worker `id` registered with (no check for a worker that
/// registered without a key: it has no identity to protect). Unknown id → not found.
pub fn authorize_worker(
    ctx: &LeaderCtx,
    id: &str,
    presented: Option<&str>,
) -> Result<(), ApiError> {
    let verdict = ctx.store.read(|s| {
        s.worker(id).map(|w| {
            w.api_key.is_empty()
                || presented.is_some_and(|p| varpulis_cluster::identity::key_matches(p, &w.api_key))
        })
    });
    match verdict {
        None => Err(ApiError::NotFound(format!(
            "worker '{id}' is not registered"
        ))),
        Some(true) => Ok(()),
        Some(false) => Err(ApiError::Unauthorized(
            "missing or wrong x-api-key: this worker id is bound to the key it registered with",
        )),
    }
}

/// A registration's answer, and whether the worker is new (HTTP answers 201 then, else 200).
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The answer body.
    pub response: RegisterWorkerResponse,
    /// The worker id was not registered before.
    pub created: bool,
}

/// Registers (or re-registers) a worker through Raft, wrapped with the idempotency key if any.
///
/// The id and the address are checked strictly first (400); a known id with another key is
/// refused (409 `worker_id_taken`) unless `caller` is an operator forcing the takeover of an
/// id that is not alive. The state machine checks the binding again when it applies the
/// command, so two racing registrations cannot both bind the id.
pub async fn register(
    ctx: &LeaderCtx,
    req: RegisterWorkerRequest,
    idempotency_key: Option<String>,
    caller: &Caller,
    cluster_key: Option<&str>,
) -> Result<Registered, ApiError> {
    use varpulis_cluster::identity;
    identity::check_worker_id(&req.worker_id)?;
    identity::check_address(&req.address)?;
    if caller.force && !caller.is_operator(cluster_key) {
        return Err(ApiError::Unauthorized(
            "?force=true (taking over a worker id) needs the cluster API key in x-api-key",
        ));
    }
    let worker_id = req.worker_id.clone();
    let command = RegisterWorker {
        worker_id: req.worker_id,
        address: crate::config::normalize_url(&req.address),
        api_key: req.api_key,
        cpu_cores: req.capacity.cpu_cores,
        max_pipelines: req.capacity.max_pipelines,
        labels: req.labels,
        now_ms: ctx.now_ms(),
        takeover: Some(caller.force),
    };
    // Refuse before proposing: a refused takeover must not reach the log.
    ctx.store
        .read(|s| match s.worker(&command.worker_id) {
            Some(w) => identity::check_rebinding(w, &command),
            None => Ok(()),
        })
        .map_err(LeaderError::from)?;
    let taken_over = caller.force
        && ctx.store.read(|s| {
            s.worker(&command.worker_id)
                .is_some_and(|w| !identity::key_matches(&command.api_key, &w.api_key))
        });
    let command = Command::RegisterWorker(command);
    let outcome = ctx.store.write_keyed(command, idempotency_key).await?;
    let created = matches!(outcome, Outcome::WorkerRegistered { created: true, .. });
    let (grant, scaled) = current_grant(ctx);
    ctx.liveness.registered(
        &worker_id,
        req.capacity.pipelines_running,
        Instant::now(),
        grant.timeout,
    );
    if ctx.settings.auto_rebalance {
        ctx.rebalance.request();
    }
    ctx.reconcile.notify_one();
    if taken_over {
        tracing::warn!(worker_id = %worker_id, "worker id taken over by an operator (new key)");
    }
    tracing::info!(worker_id = %worker_id, created, "worker registered");
    let interval = grant.jittered_interval(scaled, jitter_seed(&worker_id));
    Ok(Registered {
        response: RegisterWorkerResponse {
            worker_id,
            status: "registered".to_string(),
            heartbeat_interval_secs: interval.as_secs_f64().ceil().max(1.0) as u64,
            coordinators: ctx.store.replica().coordinators(),
            lease_ms: lease_ms_of(ctx, &grant),
            heartbeat_interval_ms: Some(millis(interval)),
            heartbeat_timeout_ms: Some(millis(grant.timeout)),
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

/// Handles a heartbeat on the leader (another node answers where the leader is). Unknown
/// worker → not found (the worker registers again); a key other than the worker's → 401 (a
/// stranger cannot drain a worker or keep a dead one alive).
///
/// The hot path of a large cluster (docs/coordinator.md "Heartbeat rate"): one read of the
/// replicated state (key, status, worker count), one shard lock of the liveness map, no Raft
/// write unless the worker comes back from Unhealthy or drains.
pub async fn heartbeat(
    ctx: &LeaderCtx,
    id: &str,
    req: HeartbeatRequest,
    presented_key: Option<&str>,
) -> Result<HeartbeatResponse, ApiError> {
    // Forwarded here but leadership moved on: tell the worker where to go.
    ctx.store.ensure_leader()?;
    // A leader without its quorum may be deposed already: no lease from here, and a 503 sends
    // the worker on to the other coordinators (the new leader).
    if !ctx.store.replica().may_grant_leases() {
        return Err(ApiError::Timeout);
    }
    let (verdict, workers) = ctx.store.read(|s| {
        let verdict = s.worker(id).map(|w| {
            let allowed = w.api_key.is_empty()
                || presented_key
                    .is_some_and(|p| varpulis_cluster::identity::key_matches(p, &w.api_key));
            (allowed, w.status)
        });
        (verdict, s.worker_count())
    });
    let status =
        match verdict {
            None => {
                return Err(ApiError::NotFound(format!(
                    "worker '{id}' is not registered"
                )))
            }
            Some((false, _)) => return Err(ApiError::Unauthorized(
                "missing or wrong x-api-key: this worker id is bound to the key it registered with",
            )),
            Some((true, status)) => status,
        };
    let (grant, scaled) = ctx.settings.grant_scaled(workers);
    crate::metrics::Metrics::inc(&ctx.metrics.heartbeats);
    ctx.liveness.heartbeat(
        id,
        req.events_processed,
        req.pipelines_running,
        Instant::now(),
        grant.timeout,
    );
    let stale_pipelines = match req.pipelines.as_deref().filter(|r| !r.is_empty()) {
        Some(running) => {
            crate::leader::failed::record_failed(ctx, id, running);
            crate::leader::orphans::remove_orphans(ctx, id, running)
        }
        None => Vec::new(),
    };
    let coordinators = ctx.store.replica().coordinators();
    let lease_ms = Some(millis(grant.lease()));
    let heartbeat_interval_ms = Some(millis(
        grant.jittered_interval(scaled, jitter_seed(id) ^ req.events_processed),
    ));
    let heartbeat_timeout_ms = Some(millis(grant.timeout));
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
            lease_ms,
            stale_pipelines,
            heartbeat_interval_ms,
            heartbeat_timeout_ms,
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
        lease_ms,
        stale_pipelines,
        heartbeat_interval_ms,
        heartbeat_timeout_ms,
    })
}

/// The grant in force for the number of workers registered now, and whether it was scaled
/// up from the configured interval ([`crate::leader::context::LeaderSettings::grant`]).
pub fn current_grant(ctx: &LeaderCtx) -> (Grant, bool) {
    let workers = ctx.store.read(|s| s.worker_count());
    ctx.settings.grant_scaled(workers)
}

/// The lease every answer grants, in milliseconds (the current [`Grant`]'s). It is granted
/// at the time the leader records the sign of life in its liveness map, which is what the
/// sweep measures expiry from. None from a leader that lost its quorum (it may be deposed
/// already): the worker's lease then runs out unless the new leader renews it.
pub fn lease_ms(ctx: &LeaderCtx) -> Option<u64> {
    lease_ms_of(ctx, &current_grant(ctx).0)
}

/// [`lease_ms`] of `grant`.
pub fn lease_ms_of(ctx: &LeaderCtx, grant: &Grant) -> Option<u64> {
    ctx.store
        .replica()
        .may_grant_leases()
        .then(|| millis(grant.lease()))
}

/// Milliseconds of `d`, saturating.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A per-worker, per-call seed of the interval jitter.
fn jitter_seed(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    hasher.finish() ^ u64::from(nanos)
}
