//! [`plan_sweep`]: the health sweep's decision.

use super::{Action, LivenessView};
use crate::command::Command;
use crate::registry::WorkerStatus;
use crate::state::ClusterState;

/// Marks every Ready, Busy or Registering worker the failure detector suspects Unhealthy, in
/// one log entry (a batch when there are several). Draining, Unhealthy and Dead workers are
/// left alone.
pub fn plan_sweep(state: &ClusterState, live: &LivenessView, now_ms: u64) -> Vec<Action> {
    // Walks the suspects, not every worker: a sweep of 100,000 workers costs what its
    // suspects do (same order as the worker list: both are sorted by id).
    let mut commands: Vec<Command> = live
        .suspected
        .iter()
        .filter_map(|id| state.worker(id))
        .filter(|w| {
            matches!(
                w.status,
                WorkerStatus::Ready | WorkerStatus::Busy | WorkerStatus::Registering
            )
        })
        .map(|w| Command::SetWorkerStatus {
            worker_id: w.id.clone(),
            status: WorkerStatus::Unhealthy,
            now_ms,
            reason: Some(live.suspicion.clone()),
        })
        .collect();
    match commands.len() {
        0 => Vec::new(),
        1 => vec![Action::Propose(commands.remove(0))],
        _ => vec![Action::Propose(Command::batch(commands))],
    }
}
