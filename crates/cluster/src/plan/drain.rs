//! [`plan_drain`]: moving every pipeline off a worker that is to leave.

use super::{Action, LivenessView};
use crate::command::Command;
use crate::migration::MigrationReason;
use crate::placement::plan_failover;
use crate::registry::WorkerStatus;
use crate::state::ClusterState;

/// Drains `worker_id`: marks it Draining (so it gets no new placements) unless it is, then
/// starts a `drain` migration for each of its placements that has none, with a target chosen
/// by the group's strategy (or none: the migration waits pending, it is never dropped).
/// Nothing for an unknown worker.
pub fn plan_drain(
    state: &ClusterState,
    _live: &LivenessView,
    now_ms: u64,
    worker_id: &str,
) -> Vec<Action> {
    let Some(worker) = state.worker(worker_id) else {
        return Vec::new();
    };
    let mut actions = Vec::new();
    if worker.status != WorkerStatus::Draining {
        actions.push(Action::Propose(Command::SetWorkerStatus {
            worker_id: worker_id.to_string(),
            status: WorkerStatus::Draining,
            now_ms,
            reason: Some("drain requested".to_string()),
        }));
    }
    actions.extend(plan_failover(state, worker_id).into_iter().map(|planned| {
        Action::StartMigration {
            planned,
            reason: MigrationReason::Drain,
        }
    }));
    actions
}
