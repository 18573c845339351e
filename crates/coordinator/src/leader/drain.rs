//! Draining a worker: move every pipeline away with a fresh checkpoint, then let it go.
//!
//! `POST /api/v1/cluster/workers/{id}/drain` (admin key; followers forward it) and a worker's
//! own draining heartbeat (graceful shutdown, see `varpulis_worker::coordinator_client`) both
//! end up in [`drain_worker`]:
//! 1. the worker is marked **Draining** through Raft (it receives no new placements);
//! 2. one replicated migration (reason `drain`) is started for each of its placements that is
//!    not already moving, with a target chosen by the group's strategy, or none when nothing
//!    can take it (the migration then waits pending; it is never dropped);
//! 3. the reconciler does the rest: it takes a fresh checkpoint from the still-running source,
//!    stores it in Raft, deploys on the target restoring it, completes the migration (routes
//!    follow the placement atomically) and deletes the source pipeline.
//!
//! The reconciler also resumes drains from replicated state alone: after a leader change any
//! Draining worker with a placement that has no active migration gets one. Once nothing is
//! placed on or migrating off the worker, `GET /workers/{id}` shows `"removable": true`.

use varpulis_api::cluster::{DrainResponse, PlannedMove};
use varpulis_cluster::migration::MigrationReason;
use varpulis_cluster::registry::WorkerStatus;
use varpulis_cluster::{placement, Command};

use crate::leader::context::LeaderCtx;
use crate::leader::error::LeaderError;

/// What [`drain_worker`] did.
#[derive(Debug, Clone)]
pub struct Drained {
    /// The answer for the API.
    pub response: DrainResponse,
    /// Active migrations off the worker that have no target (nothing can take them now).
    pub without_target: usize,
}

/// Marks `worker_id` Draining (if it is not yet) and starts a drain migration for each of its
/// placements without one. Unknown worker → 404; a Dead worker → 409 (invalid transition).
pub async fn drain_worker(ctx: &LeaderCtx, worker_id: &str) -> Result<Drained, LeaderError> {
    let status = ctx.store.read(|s| s.worker(worker_id).map(|w| w.status));
    let Some(status) = status else {
        return Err(LeaderError::NotFound(format!(
            "worker '{worker_id}' not found"
        )));
    };
    if status != WorkerStatus::Draining {
        ctx.store
            .write(Command::SetWorkerStatus {
                worker_id: worker_id.to_string(),
                status: WorkerStatus::Draining,
                now_ms: ctx.now_ms(),
                reason: Some("drain requested".to_string()),
            })
            .await?;
        tracing::info!(worker_id, "worker draining");
    }
    let started = start_drain_migrations(ctx, worker_id).await;
    ctx.reconcile.notify_one();
    let response = ctx.store.read(|s| {
        let remaining = s.placements_on(worker_id).len();
        DrainResponse {
            worker_id: worker_id.to_string(),
            status: s
                .worker(worker_id)
                .map_or("unknown", |w| w.status.as_str())
                .to_string(),
            migrations: started,
            remaining,
            removable: s.is_drained(worker_id),
        }
    });
    let without_target = ctx.store.read(|s| {
        s.active_migrations()
            .iter()
            .filter(|m| m.from_worker == worker_id && m.to_worker.is_none())
            .count()
    });
    Ok(Drained {
        response,
        without_target,
    })
}

/// Starts a `drain` migration for every placement of a Draining worker that has none yet;
/// returns the moves started. Used by the drain request and by the reconciler (resume).
pub async fn start_drain_migrations(ctx: &LeaderCtx, worker_id: &str) -> Vec<PlannedMove> {
    let planned = ctx.store.read(|s| placement::plan_failover(s, worker_id));
    let mut started = Vec::new();
    for m in planned {
        let id = ctx.new_id();
        let command = m.to_command(&id, MigrationReason::Drain, ctx.now_ms());
        match ctx.store.write(command).await {
            Ok(_) => {
                tracing::info!(
                    migration = %id, group_id = %m.group_id, pipeline = %m.pipeline_name,
                    from = %m.from_worker, to = ?m.to_worker, "drain migration started"
                );
                started.push(PlannedMove {
                    migration_id: Some(id),
                    group_id: m.group_id,
                    pipeline_name: m.pipeline_name,
                    replica: m.replica,
                    from_worker: m.from_worker,
                    to_worker: m.to_worker,
                });
            }
            Err(err) => {
                tracing::warn!(group_id = %m.group_id, pipeline = %m.pipeline_name, "cannot start drain migration: {err}")
            }
        }
    }
    started
}
