//! [`plan_orphans`]: coordinator-deployed pipelines a worker still runs although nothing
//! accounts for them any more (moved away while the worker was unhealthy, deleted group, a
//! deploy whose placement moved on). Pipelines without an epoch (deployed by hand on the
//! worker) are never touched.

use std::collections::BTreeSet;
use varpulis_api::cluster::RunningPipeline;

use super::deploy::pipeline_id;
use super::Action;
use crate::state::ClusterState;

/// An `Undeploy` for every pipeline of `running` (as `worker_id` reported it) that no current
/// placement, in-flight migration or rolling update accounts for.
pub fn plan_orphans(
    state: &ClusterState,
    worker_id: &str,
    running: &[RunningPipeline],
) -> Vec<Action> {
    let mut expected = BTreeSet::new();
    for (g, p) in state.placements_on(worker_id) {
        expected.insert(pipeline_id(&g.id, &p.pipeline_name, p.replica, p.epoch));
        if let Some(id) = &p.pipeline_id {
            expected.insert(id.clone());
        }
    }
    // Both versions of a rolling update in progress run on purpose.
    for (_, rollout) in state.active_rollouts() {
        for t in rollout.targets.iter().filter(|t| t.worker_id == worker_id) {
            expected.insert(t.old_pipeline_id.clone());
            expected.insert(t.new_pipeline_id.clone());
        }
    }
    for m in state.active_migrations() {
        if m.to_worker.as_deref() != Some(worker_id) {
            continue;
        }
        if let Some(p) = state
            .group(&m.group_id)
            .and_then(|g| g.placement(&m.pipeline_name, m.replica))
        {
            expected.insert(pipeline_id(
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
        .map(|r| Action::Undeploy {
            worker_id: worker_id.to_string(),
            pipeline_id: r.pipeline_id.clone(),
        })
        .collect()
}
