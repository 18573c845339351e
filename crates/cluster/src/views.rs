//! Conversions from the replicated state to the API DTOs of `varpulis_api::cluster`.
//!
//! A worker's `api_key` is never copied into a view. Figures that come from heartbeats (not
//! replicated) are passed in as [`WorkerLive`] by the leader; without them a view reports the
//! number of placements as `pipelines_running`.

use std::collections::BTreeMap;
use varpulis_api::cluster::{
    MigrationInfo, PipelineGroupInfo, PlacementInfo, Topology, TopologyGroup, TopologyPipeline,
    WorkerInfo,
};

use crate::group::{Group, Placement};
use crate::migration::Migration;
use crate::registry::Worker;
use crate::state::ClusterState;

/// Heartbeat figures the leader keeps in memory for one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerLive {
    /// Pipelines running, as last reported.
    pub pipelines_running: u32,
    /// Events processed, as last reported.
    pub events_processed: u64,
    /// Milliseconds since the last heartbeat.
    pub last_heartbeat_ms_ago: Option<u64>,
}

/// The view of one worker given its assigned pipeline names.
pub fn worker_info(w: &Worker, assigned: Vec<String>, live: Option<&WorkerLive>) -> WorkerInfo {
    let placed = u32::try_from(assigned.len()).unwrap_or(u32::MAX);
    WorkerInfo {
        id: w.id.clone(),
        address: w.address.clone(),
        status: w.status.as_str().to_string(),
        pipelines_running: live.map_or(placed, |l| l.pipelines_running),
        max_pipelines: w.max_pipelines,
        assigned_pipelines: assigned,
        events_processed: live.map_or(0, |l| l.events_processed),
        cpu_cores: w.cpu_cores,
        labels: w.labels.clone(),
        last_heartbeat_ms_ago: live.and_then(|l| l.last_heartbeat_ms_ago),
    }
}

/// The view of one worker by id.
pub fn worker_view(
    state: &ClusterState,
    id: &str,
    live: Option<&WorkerLive>,
) -> Option<WorkerInfo> {
    let w = state.worker(id)?;
    let assigned = state
        .placements_on(id)
        .into_iter()
        .map(|(_, p)| p.pipeline_name.clone())
        .collect();
    Some(worker_info(w, assigned, live))
}

/// Every worker, sorted by id.
pub fn worker_views(state: &ClusterState, live: &BTreeMap<String, WorkerLive>) -> Vec<WorkerInfo> {
    let mut assigned = state.assigned_pipelines();
    state
        .workers()
        .map(|w| {
            worker_info(
                w,
                assigned.remove(w.id.as_str()).unwrap_or_default(),
                live.get(&w.id),
            )
        })
        .collect()
}

/// The view of one placement.
pub fn placement_info(state: &ClusterState, p: &Placement) -> PlacementInfo {
    let worker = p.worker_id.as_deref().and_then(|id| state.worker(id));
    PlacementInfo {
        pipeline_name: p.pipeline_name.clone(),
        worker_id: p.worker_id.clone().unwrap_or_default(),
        worker_address: worker.map(|w| w.address.clone()).unwrap_or_default(),
        pipeline_id: p.pipeline_id.clone().unwrap_or_default(),
        status: p.status.as_str().to_string(),
        replica: p.replica,
        epoch: p.epoch,
    }
}

/// The view of one group.
pub fn group_info(state: &ClusterState, g: &Group) -> PipelineGroupInfo {
    PipelineGroupInfo {
        id: g.id.clone(),
        name: g.name.clone(),
        status: g.status().as_str().to_string(),
        pipeline_count: g.spec.pipelines.len(),
        placements: g
            .placements
            .iter()
            .map(|p| placement_info(state, p))
            .collect(),
        routes: g.routes.clone(),
        spec: Some(g.spec.clone()),
        version: g.version,
    }
}

/// Every group, in creation order.
pub fn group_views(state: &ClusterState) -> Vec<PipelineGroupInfo> {
    state
        .groups()
        .into_iter()
        .map(|g| group_info(state, g))
        .collect()
}

/// The cluster topology: each group's placed pipelines and routes.
pub fn topology(state: &ClusterState) -> Topology {
    let groups = state
        .groups()
        .into_iter()
        .map(|g| TopologyGroup {
            group_id: g.id.clone(),
            group_name: g.name.clone(),
            pipelines: g
                .placements
                .iter()
                .filter_map(|p| {
                    let worker_id = p.worker_id.clone()?;
                    Some(TopologyPipeline {
                        name: p.pipeline_name.clone(),
                        worker_address: state
                            .worker(&worker_id)
                            .map(|w| w.address.clone())
                            .unwrap_or_default(),
                        worker_id,
                    })
                })
                .collect(),
            routes: g.routes.clone(),
        })
        .collect();
    Topology { groups }
}

/// The view of one migration.
pub fn migration_info(m: &Migration) -> MigrationInfo {
    MigrationInfo {
        id: m.id.clone(),
        group_id: m.group_id.clone(),
        pipeline_name: m.pipeline_name.clone(),
        replica: m.replica,
        from_worker: m.from_worker.clone(),
        to_worker: m.to_worker.clone(),
        status: m.status.as_str().to_string(),
        reason: m.reason.as_str().to_string(),
        started_at_ms: m.started_at_ms,
        completed_at_ms: m.completed_at_ms,
        error: m.error.clone(),
        restored_from_checkpoint: m.restored_from_checkpoint,
    }
}

/// Every migration kept, in start order.
pub fn migration_views(state: &ClusterState) -> Vec<MigrationInfo> {
    state.migrations().into_iter().map(migration_info).collect()
}
