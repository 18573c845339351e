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
        removable: false,
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
    let mut info = worker_info(w, assigned, live);
    info.removable = state.is_drained(id);
    Some(info)
}

/// Every worker, sorted by id.
pub fn worker_views(state: &ClusterState, live: &BTreeMap<String, WorkerLive>) -> Vec<WorkerInfo> {
    worker_views_of(state, state.workers(), live)
}

/// The views of `workers` only (one page of a listing: a page of 100 out of 100,000 workers
/// costs a page, not the whole list).
pub fn worker_views_of<'a>(
    state: &ClusterState,
    workers: impl Iterator<Item = &'a Worker>,
    live: &BTreeMap<String, WorkerLive>,
) -> Vec<WorkerInfo> {
    let mut assigned = state.assigned_pipelines();
    workers
        .map(|w| {
            let mut info = worker_info(
                w,
                assigned.remove(w.id.as_str()).unwrap_or_default(),
                live.get(&w.id),
            );
            info.removable = state.is_drained(&w.id);
            info
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
        checkpoint_events: p.checkpoint.as_ref().map(|c| c.events_processed),
        checkpoint_at_ms: p.checkpoint.as_ref().map(|c| c.taken_at_ms),
        error: p.error.clone(),
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
        updated_at_ms: m.updated_at_ms,
        completed_at_ms: m.completed_at_ms,
        duration_ms: m
            .completed_at_ms
            .map(|end| end.saturating_sub(m.started_at_ms)),
        error: m.error.clone(),
        restored_from_checkpoint: m.restored_from_checkpoint,
    }
}

/// Every migration kept, in start order.
pub fn migration_views(state: &ClusterState) -> Vec<MigrationInfo> {
    state.migrations().into_iter().map(migration_info).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, PlacementAssignment, RegisterWorker};
    use crate::group::PlacementStatus;
    use crate::migration::MigrationReason;
    use varpulis_api::cluster::{PipelineGroupSpec, PipelineSpec, RouteSpec, EXTERNAL};

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        for id in ["w1", "w2"] {
            let r = s.apply(&Command::RegisterWorker(RegisterWorker {
                worker_id: id.into(),
                address: format!("http://{id}:9000"),
                api_key: "super-secret-key".into(),
                cpu_cores: 8,
                max_pipelines: 100,
                labels: Default::default(),
                now_ms: 1,
                takeover: None,
            }));
            assert!(r.is_ok());
        }
        let pipe = |n: &str| PipelineSpec {
            name: n.into(),
            source: "stream A = X .emit(v: 1)".into(),
            worker_affinity: None,
            replicas: None,
            labels: Default::default(),
        };
        let spec = PipelineGroupSpec {
            name: "app".into(),
            pipelines: vec![pipe("a"), pipe("b")],
            routes: vec![RouteSpec {
                from_pipeline: EXTERNAL.into(),
                to_pipeline: "a".into(),
                event_types: vec!["A*".into()],
                mqtt_topic: None,
            }],
            placement: None,
        };
        let assign = |p: &str, w: Option<&str>| PlacementAssignment {
            pipeline_name: p.into(),
            replica: 0,
            worker_id: w.map(str::to_string),
        };
        let r = s.apply(&Command::CreateGroup {
            group_id: "g1".into(),
            spec,
            placements: vec![assign("a", Some("w1")), assign("b", None)],
            next_rr_cursor: None,
            created_at_ms: 2,
        });
        assert!(r.is_ok());
        let r = s.apply(&Command::UpdatePlacement {
            group_id: "g1".into(),
            pipeline_name: "a".into(),
            replica: 0,
            epoch: 1,
            worker_id: None,
            pipeline_id: Some("pid-a".into()),
            status: PlacementStatus::Running,
            error: None,
        });
        assert!(r.is_ok());
        s
    }

    #[test]
    fn worker_views_never_expose_the_api_key() {
        let s = state();
        let views = worker_views(&s, &BTreeMap::new());
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].id, "w1");
        assert_eq!(views[0].status, "ready");
        assert_eq!(views[0].assigned_pipelines, ["a"]);
        assert_eq!(views[0].pipelines_running, 1);
        assert_eq!(views[1].assigned_pipelines, Vec::<String>::new());
        let json = serde_json::to_string(&views).unwrap();
        assert!(!json.contains("super-secret-key"));
        assert!(!json.contains("api_key"));
    }

    #[test]
    fn live_figures_override_placement_counts() {
        let s = state();
        let live = WorkerLive {
            pipelines_running: 3,
            events_processed: 99,
            last_heartbeat_ms_ago: Some(120),
        };
        let v = worker_view(&s, "w1", Some(&live)).unwrap();
        assert_eq!(v.pipelines_running, 3);
        assert_eq!(v.events_processed, 99);
        assert_eq!(v.last_heartbeat_ms_ago, Some(120));
        assert_eq!(v.cpu_cores, 8);
        assert!(worker_view(&s, "ghost", None).is_none());
    }

    #[test]
    fn group_views_show_placements_and_status() {
        let s = state();
        let g = group_info(&s, s.group("g1").unwrap());
        assert_eq!(g.id, "g1");
        assert_eq!(g.status, "deploying");
        assert_eq!(g.pipeline_count, 2);
        assert_eq!(g.version, 1);
        let a = &g.placements[0];
        assert_eq!(
            (a.worker_id.as_str(), a.worker_address.as_str()),
            ("w1", "http://w1:9000")
        );
        assert_eq!(
            (a.pipeline_id.as_str(), a.status.as_str(), a.epoch),
            ("pid-a", "Running", 1)
        );
        let b = &g.placements[1];
        assert_eq!((b.worker_id.as_str(), b.status.as_str()), ("", "Pending"));
        assert_eq!(
            g.routes[0].mqtt_topic.as_deref(),
            Some("varpulis/app/_external/a")
        );
        assert_eq!(group_views(&s).len(), 1);
    }

    #[test]
    fn topology_lists_placed_pipelines_only() {
        let s = state();
        let t = topology(&s);
        assert_eq!(t.groups.len(), 1);
        assert_eq!(t.groups[0].group_name, "app");
        assert_eq!(t.groups[0].pipelines.len(), 1);
        assert_eq!(t.groups[0].pipelines[0].worker_address, "http://w1:9000");
        assert_eq!(t.groups[0].routes.len(), 1);
    }

    #[test]
    fn migration_views_use_api_names() {
        let mut s = state();
        let r = s.apply(&Command::StartMigration {
            migration_id: "m1".into(),
            group_id: "g1".into(),
            pipeline_name: "a".into(),
            replica: 0,
            from_worker: "w1".into(),
            to_worker: Some("w2".into()),
            reason: MigrationReason::Drain,
            next_rr_cursor: None,
            now_ms: 5,
        });
        assert!(r.is_ok());
        let v = migration_views(&s);
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].status.as_str(), v[0].reason.as_str()),
            ("deploying", "drain")
        );
        assert_eq!(v[0].to_worker.as_deref(), Some("w2"));
        assert_eq!(v[0].started_at_ms, 5);
        assert_eq!(v[0].completed_at_ms, None);
    }
}
