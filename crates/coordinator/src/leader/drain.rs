//! Draining a worker: move every pipeline away with a fresh checkpoint, then let it go.
//!
//! `POST /api/v1/cluster/workers/{id}/drain` (admin key; followers forward it) and a worker's
//! own draining heartbeat (graceful shutdown) both end up in [`drain_worker`], which carries out
//! `varpulis_cluster::plan::plan_drain`:
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
use varpulis_cluster::plan::{plan_drain, Action};

use crate::leader::context::LeaderCtx;
use crate::leader::error::LeaderError;
use crate::leader::executor;

/// What [`drain_worker`] did.
#[derive(Debug, Clone)]
pub struct Drained {
    /// The answer for the API.
    pub response: DrainResponse,
    /// Active migrations off the worker that have no target (nothing can take them now).
    pub without_target: usize,
}

/// Marks `worker_id` Draining (if it is not yet) and starts a drain migration for each of its
/// placements without one. Unknown worker → not found; a Dead worker → the state machine's
/// invalid transition.
pub async fn drain_worker(ctx: &LeaderCtx, worker_id: &str) -> Result<Drained, LeaderError> {
    if ctx.store.read(|s| s.worker(worker_id).is_none()) {
        return Err(LeaderError::NotFound(format!(
            "worker '{worker_id}' not found"
        )));
    }
    let view = ctx.view();
    let now_ms = ctx.now_ms();
    let actions = ctx.store.read(|s| plan_drain(s, &view, now_ms, worker_id));
    let mut started = Vec::new();
    for action in actions {
        match action {
            Action::Propose(command) => {
                ctx.store.write(command).await?;
                tracing::info!(worker_id, "worker draining");
            }
            Action::StartMigration { planned, reason } => {
                if let Some(id) = executor::start_migration(ctx, &planned, reason).await {
                    started.push(PlannedMove {
                        migration_id: Some(id),
                        group_id: planned.group_id,
                        pipeline_name: planned.pipeline_name,
                        replica: planned.replica,
                        from_worker: planned.from_worker,
                        to_worker: planned.to_worker,
                    });
                }
            }
            other => tracing::warn!(?other, "unexpected drain action"),
        }
    }
    ctx.reconcile.notify_one();
    let (response, without_target) = ctx.store.read(|s| {
        let response = DrainResponse {
            worker_id: worker_id.to_string(),
            status: s
                .worker(worker_id)
                .map_or("unknown", |w| w.status.as_str())
                .to_string(),
            migrations: started,
            remaining: s.placements_on(worker_id).len(),
            removable: s.is_drained(worker_id),
        };
        let without_target = s
            .active_migrations()
            .iter()
            .filter(|m| m.from_worker == worker_id && m.to_worker.is_none())
            .count();
        (response, without_target)
    });
    Ok(Drained {
        response,
        without_target,
    })
}
