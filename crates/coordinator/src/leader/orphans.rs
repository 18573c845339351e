//! Orphaned pipelines: a heartbeat that lists the worker's pipelines lets the leader delete
//! the coordinator-deployed ones nothing accounts for any more
//! (`varpulis_cluster::plan::plan_orphans`), in the background.

use varpulis_api::cluster::RunningPipeline;
use varpulis_cluster::plan::{plan_orphans, Action};

use crate::leader::context::LeaderCtx;
use crate::leader::executor;

/// Deletes orphaned pipelines from a worker in the background (the heartbeat answers at once);
/// returns their ids (the worker removes them itself too, before it lifts a fence).
pub fn remove_orphans(
    ctx: &LeaderCtx,
    worker_id: &str,
    running: &[RunningPipeline],
) -> Vec<String> {
    let actions = ctx.store.read(|s| plan_orphans(s, worker_id, running));
    let ids: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Undeploy { pipeline_id, .. } => Some(pipeline_id.clone()),
            _ => None,
        })
        .collect();
    if actions.is_empty() {
        return ids;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        for action in actions {
            if let Action::Undeploy {
                worker_id,
                pipeline_id,
            } = action
            {
                if executor::undeploy(&ctx, &worker_id, &pipeline_id).await {
                    tracing::info!(%worker_id, %pipeline_id, "removed orphaned pipeline");
                }
            }
        }
    });
    ids
}
