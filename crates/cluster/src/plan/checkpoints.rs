//! [`plan_checkpoints`]: which running pipelines the leader's checkpoint loop asks for their
//! state.

use super::Action;
use crate::group::PlacementStatus;
use crate::registry::WorkerStatus;
use crate::state::ClusterState;

/// One running placement to checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointJob {
    /// Group id.
    pub group_id: String,
    /// Pipeline name.
    pub pipeline_name: String,
    /// Replica number.
    pub replica: u32,
    /// The placement's epoch (the checkpoint is stored at it: fencing).
    pub epoch: u64,
    /// Worker id.
    pub worker_id: String,
    /// Pipeline id on the worker.
    pub pipeline_id: String,
    /// Events processed at the stored checkpoint of this epoch: an unchanged count is not
    /// stored again (idle clusters add nothing to the log).
    pub stored_events: Option<u64>,
}

/// A checkpoint of every Running placement whose worker is Ready or Busy.
pub fn plan_checkpoints(state: &ClusterState) -> Vec<Action> {
    let mut out = Vec::new();
    for g in state.groups() {
        for p in g
            .placements
            .iter()
            .filter(|p| p.status == PlacementStatus::Running)
        {
            let (Some(worker_id), Some(pipeline_id)) =
                (p.worker_id.as_deref(), p.pipeline_id.as_ref())
            else {
                continue;
            };
            let alive = state
                .worker(worker_id)
                .is_some_and(|w| matches!(w.status, WorkerStatus::Ready | WorkerStatus::Busy));
            if !alive {
                continue;
            }
            out.push(Action::Checkpoint(CheckpointJob {
                group_id: g.id.clone(),
                pipeline_name: p.pipeline_name.clone(),
                replica: p.replica,
                epoch: p.epoch,
                worker_id: worker_id.to_string(),
                pipeline_id: pipeline_id.clone(),
                stored_events: p
                    .checkpoint
                    .as_ref()
                    .filter(|c| c.epoch == p.epoch)
                    .map(|c| c.events_processed),
            }));
        }
    }
    out
}
