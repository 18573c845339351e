//! [`plan_sweep`]: the health sweep's decision.

use super::{Action, LivenessView};
use crate::command::Command;
use crate::registry::WorkerStatus;
use crate::state::ClusterState;

/// Marks every Ready, Busy or Registering worker the failure detector suspects Unhealthy, in
/// one log entry (a batch when there are several). Draining, Unhealthy and Dead workers are
/// left alone.
pub fn plan_sweep(state: &ClusterState, live: &LivenessView, now_ms: u64) -> Vec<Action> {
    let mut commands: Vec<Command> = state
        .workers()
        .filter(|w| {
            matches!(
                w.status,
                WorkerStatus::Ready | WorkerStatus::Busy | WorkerStatus::Registering
            ) && live.suspected.contains(&w.id)
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
        _ => vec![Action::Propose(Command::Batch(commands))],
    }
}
