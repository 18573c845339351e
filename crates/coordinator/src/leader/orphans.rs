//! Orphaned pipelines: coordinator-deployed pipelines a worker still runs although no placement,
//! migration or rolling update accounts for them any more (moved away while the worker was
//! unhealthy, deleted group, a deploy whose placement moved on). A heartbeat that lists the
//! worker's pipelines lets the leader find them; they are deleted in the background. Pipelines
//! without an epoch (deployed by hand on the worker) are never touched.

use std::collections::BTreeSet;
use varpulis_api::cluster::RunningPipeline;
use varpulis_cluster::ClusterState;

use crate::leader::context::LeaderCtx;
use crate::transport::worker_client::WorkerRef;

/// Pipelines a worker runs that the coordinator deployed (they carry an epoch) but that no current
/// placement or in-flight migration accounts for: left behind by a migration, a deleted group or
/// a deploy whose placement moved on.
pub fn orphans(s: &ClusterState, worker_id: &str, running: &[RunningPipeline]) -> Vec<String> {
    let mut expected = BTreeSet::new();
    for (g, p) in s.placements_on(worker_id) {
        expected.insert(crate::leader::deploy::pipeline_id(
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
    expected.extend(crate::leader::rolling::rollout_pipelines(s, worker_id));
    for m in s.active_migrations() {
        if m.to_worker.as_deref() != Some(worker_id) {
            continue;
        }
        if let Some(p) = s
            .group(&m.group_id)
            .and_then(|g| g.placement(&m.pipeline_name, m.replica))
        {
            expected.insert(crate::leader::deploy::pipeline_id(
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
pub fn remove_orphans(ctx: &LeaderCtx, worker_id: &str, running: &[RunningPipeline]) {
    let found = ctx.store.read(|s| {
        let orphans = orphans(s, worker_id, running);
        WorkerRef::find(s, worker_id).map(|w| (orphans, w))
    });
    let Some((orphans, worker)) = found else {
        return;
    };
    if orphans.is_empty() {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        for pipeline_id in orphans {
            if crate::leader::deploy::undeploy(&ctx, &worker, &pipeline_id).await {
                tracing::info!(worker_id = %worker.id, pipeline_id = %pipeline_id, "removed orphaned pipeline");
            }
        }
    });
}
