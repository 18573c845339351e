//! [`plan_rebalance`]: one rate-limited rebalance round.
//!
//! The moves come from `crate::placement::rebalance_moves` (Running placements from the most
//! to the least loaded Ready worker until loads differ by at most one). A round starts at most
//! `rebalance_max_moves` of them, and only when no migration of any kind is active; the next
//! round is planned afresh once they finished. The rebalance stays wanted while moves remain.

use super::{Action, LivenessView};
use crate::migration::MigrationReason;
use crate::placement::rebalance_moves;
use crate::state::ClusterState;

/// One rebalance round: whether a rebalance is still wanted, and the moves to start now.
pub fn plan_rebalance(state: &ClusterState, live: &LivenessView, _now_ms: u64) -> Vec<Action> {
    let moves = rebalance_moves(state);
    if moves.is_empty() {
        return vec![Action::SetRebalanceWanted(false)];
    }
    let mut actions = vec![Action::SetRebalanceWanted(true)];
    if state.active_migrations().is_empty() {
        actions.extend(
            moves
                .into_iter()
                .take(live.policy.rebalance_max_moves)
                .map(|planned| Action::StartMigration {
                    planned,
                    reason: MigrationReason::Rebalance,
                }),
        );
    }
    actions
}
