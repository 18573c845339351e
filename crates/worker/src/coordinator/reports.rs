//! What the worker tells the coordinators about itself, whatever the transport: the
//! registration and heartbeat bodies.

use crate::state::AppState;
use varpulis_api::cluster::{
    HeartbeatRequest, RegisterWorkerRequest, RunningPipeline, WorkerCapacity,
};

/// The pipelines running on this worker.
fn running(state: &AppState) -> Vec<RunningPipeline> {
    state
        .registry
        .all()
        .iter()
        .map(|p| {
            let (status, reason) = match p.status() {
                ("failed", reason) => (Some("failed".to_owned()), reason),
                _ => (None, None),
            };
            RunningPipeline {
                pipeline_id: p.id.clone(),
                name: p.name.clone(),
                epoch: p.epoch,
                status,
                reason,
            }
        })
        .collect()
}

/// The registration body: identity, capacity, labels and the pipelines running here.
pub fn registration(state: &AppState) -> RegisterWorkerRequest {
    let cfg = &state.config;
    let running = running(state);
    RegisterWorkerRequest {
        worker_id: cfg.worker_id.clone(),
        address: cfg.advertise_address.clone(),
        api_key: cfg.api_key.clone().unwrap_or_default(),
        capacity: WorkerCapacity {
            cpu_cores: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            pipelines_running: running.len() as u32,
            max_pipelines: cfg.max_pipelines,
        },
        labels: cfg.labels.clone(),
        running_pipelines: running,
    }
}

/// The heartbeat body: events processed and the pipelines running here; `draining` during a
/// graceful self-drain.
pub fn heartbeat(state: &AppState, draining: bool) -> HeartbeatRequest {
    let running = running(state);
    HeartbeatRequest {
        events_processed: state.registry.all().iter().map(|p| p.events_in()).sum(),
        pipelines_running: running.len() as u32,
        pipelines: Some(running),
        draining,
    }
}
