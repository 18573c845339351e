//! [`plan_failed`]: placements whose program the worker reports `failed` (repeated budget
//! errors, docs/worker.md) are recorded `Failed` in the replicated state, with the worker's
//! reason, and from then on neither redeployed nor moved (`Placement::program_failed`).

use varpulis_api::cluster::RunningPipeline;

use crate::command::Command;
use crate::state::ClusterState;

/// A `FailPipeline` for every pipeline `worker_id` reports failed that is the current
/// deployment of one of its placements (same pipeline id and epoch) not yet recorded so.
pub fn plan_failed(
    state: &ClusterState,
    worker_id: &str,
    running: &[RunningPipeline],
) -> Vec<Command> {
    let failed: Vec<&RunningPipeline> = running
        .iter()
        .filter(|r| r.status.as_deref() == Some("failed"))
        .collect();
    if failed.is_empty() {
        return Vec::new();
    }
    state
        .placements_on(worker_id)
        .into_iter()
        .filter(|(_, p)| !p.is_program_failed())
        .filter_map(|(g, p)| {
            let id = p.pipeline_id.as_deref()?;
            let report = failed
                .iter()
                .find(|r| r.pipeline_id == id && r.epoch.is_none_or(|e| e == p.epoch))?;
            Some(Command::FailPipeline {
                group_id: g.id.clone(),
                pipeline_name: p.pipeline_name.clone(),
                replica: p.replica,
                epoch: p.epoch,
                pipeline_id: id.to_string(),
                reason: report
                    .reason
                    .clone()
                    .unwrap_or_else(|| "marked failed by the worker".to_string()),
            })
        })
        .collect()
}
