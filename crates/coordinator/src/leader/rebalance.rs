//! Rebalancing: even out pipelines across Ready workers with checkpoint transfer, rate-limited.
//!
//! A plan comes from the pure `varpulis_cluster::placement::plan_rebalance` (moves of Running
//! placements from the most to the least loaded Ready worker until loads differ by at most
//! one). Moves are replicated migrations with reason `rebalance`; the reconciler executes them
//! like drain migrations (fresh checkpoint from the live source, deploy + restore on the
//! target, atomic `CompleteMigration`, source pipeline deleted).
//!
//! Rate limit: a *round* starts at most `rebalance_max_moves` moves, and only when no
//! migration of any kind is active; the next round is planned afresh once they finished. A
//! rebalance is wanted after `POST /api/v1/cluster/rebalance` (which also starts the first
//! round at once) and, with `auto_rebalance` (default on), whenever a worker registers. The
//! "wanted" flag is leader memory: a new leader does not resume a rebalance (the moves already
//! started are replicated and complete; a rebalance is an optimisation, not a correctness need).

use varpulis_api::cluster::{PlannedMove, RebalanceResponse};
use varpulis_cluster::migration::MigrationReason;
use varpulis_cluster::placement::{self, PlannedMigration};

use crate::leader::context::LeaderCtx;

fn to_move(m: &PlannedMigration, id: Option<String>) -> PlannedMove {
    PlannedMove {
        migration_id: id,
        group_id: m.group_id.clone(),
        pipeline_name: m.pipeline_name.clone(),
        replica: m.replica,
        from_worker: m.from_worker.clone(),
        to_worker: m.to_worker.clone(),
    }
}

/// Plans a rebalance and, when no migration is active, starts up to `rebalance_max_moves` of
/// its moves. Keeps the rebalance wanted while moves remain. Returns every move of the plan.
pub async fn round(ctx: &LeaderCtx) -> RebalanceResponse {
    let (plan, busy) = ctx.store.read(|s| {
        (
            placement::plan_rebalance(s),
            !s.active_migrations().is_empty(),
        )
    });
    if plan.is_empty() {
        ctx.rebalance.set(false);
        return RebalanceResponse {
            moves: Vec::new(),
            started: 0,
        };
    }
    ctx.rebalance.set(true);
    let mut moves: Vec<PlannedMove> = plan.iter().map(|m| to_move(m, None)).collect();
    if busy {
        return RebalanceResponse { moves, started: 0 };
    }
    let mut started = 0;
    for (i, m) in plan
        .iter()
        .enumerate()
        .take(ctx.settings.rebalance_max_moves)
    {
        let id = ctx.new_id();
        match ctx
            .store
            .write(m.to_command(&id, MigrationReason::Rebalance, ctx.now_ms()))
            .await
        {
            Ok(_) => {
                tracing::info!(
                    migration = %id, group_id = %m.group_id, pipeline = %m.pipeline_name,
                    from = %m.from_worker, to = ?m.to_worker, "rebalance move started"
                );
                moves[i].migration_id = Some(id);
                started += 1;
            }
            Err(err) => tracing::warn!(
                group_id = %m.group_id, pipeline = %m.pipeline_name, "cannot start rebalance move: {err}"
            ),
        }
    }
    if started > 0 {
        ctx.reconcile.notify_one();
    }
    RebalanceResponse { moves, started }
}
