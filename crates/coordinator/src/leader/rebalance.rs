//! Rebalancing: even out pipelines across Ready workers with checkpoint transfer, rate-limited.
//!
//! A round carries out `varpulis_cluster::plan::plan_rebalance`: the moves of
//! `varpulis_cluster::placement::rebalance_moves` (Running placements from the most to the
//! least loaded Ready worker until loads differ by at most one), at most `rebalance_max_moves`
//! of them started, and only when no migration of any kind is active. Moves are replicated
//! migrations with reason `rebalance`; the reconciler executes them like drain migrations
//! (fresh checkpoint from the live source, deploy + restore on the target, atomic
//! `CompleteMigration`, source pipeline deleted).
//!
//! A rebalance is wanted after `POST /api/v1/cluster/rebalance` (which also starts the first
//! round at once) and, with `auto_rebalance` (default on), whenever a worker registers. The
//! "wanted" flag is leader memory: a new leader does not resume a rebalance (the moves already
//! started are replicated and complete; a rebalance is an optimisation, not a correctness need).

use varpulis_api::cluster::{PlannedMove, RebalanceResponse};
use varpulis_cluster::placement::{rebalance_moves, PlannedMigration};
use varpulis_cluster::plan::plan_rebalance;

use crate::leader::backoff::Backoff;
use crate::leader::context::LeaderCtx;
use crate::leader::executor;

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

/// One rebalance round; returns every move of the plan, the started ones with their ids.
pub async fn round(ctx: &LeaderCtx) -> RebalanceResponse {
    let view = ctx.view();
    let now_ms = ctx.now_ms();
    let (plan, actions) = ctx
        .store
        .read(|s| (rebalance_moves(s), plan_rebalance(s, &view, now_ms)));
    let report = executor::run(ctx, actions, &mut Backoff::default()).await;
    let mut moves: Vec<PlannedMove> = plan.iter().map(|m| to_move(m, None)).collect();
    for (id, planned) in &report.started {
        if let Some(i) = plan.iter().position(|m| m == planned) {
            moves[i].migration_id = Some(id.clone());
        }
    }
    let started = report.started.len();
    if started > 0 {
        ctx.reconcile.notify_one();
    }
    RebalanceResponse { moves, started }
}
