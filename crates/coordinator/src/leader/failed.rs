//! Pipelines a worker reports `failed` (its program budgets, docs/worker.md): the leader
//! records their placements `Failed` with the worker's reason
//! (`varpulis_cluster::plan::plan_failed`), in the background, and from then on neither
//! redeploys nor moves them until the group is redeployed or updated.

use varpulis_api::cluster::RunningPipeline;
use varpulis_cluster::plan::plan_failed;

use crate::leader::context::LeaderCtx;

/// Records the failed pipelines `running` lists for `worker_id` (the heartbeat answers at
/// once; a write that loses a race with a move is refused by the epoch fence and retried at
/// the next heartbeat if still relevant).
pub fn record_failed(ctx: &LeaderCtx, worker_id: &str, running: &[RunningPipeline]) {
    let commands = ctx.store.read(|s| plan_failed(s, worker_id, running));
    if commands.is_empty() {
        return;
    }
    let ctx = ctx.clone();
    let worker_id = worker_id.to_string();
    tokio::spawn(async move {
        for command in commands {
            let what = match &command {
                varpulis_cluster::Command::FailPipeline {
                    pipeline_name,
                    replica,
                    reason,
                    ..
                } => format!("{pipeline_name} replica {replica}: {reason}"),
                _ => String::new(),
            };
            match ctx.store.write(command).await {
                Ok(_) => {
                    tracing::warn!(%worker_id, "pipeline failed on its worker, not redeployed: {what}")
                }
                Err(err) => tracing::debug!(%worker_id, "cannot record a failed pipeline: {err}"),
            }
        }
    });
}
