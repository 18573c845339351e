//! [`plan_reconcile`]: what the leader's reconciler does to make the workers match the
//! replicated state.
//!
//! A pass runs the [`Phase`]s in order; the executor plans each phase on the state as it is
//! after the previous one (so a migration started by `Failover` is carried out by `Migrate` in
//! the same pass). [`plan_reconcile`] plans every phase on one state, for tests and tools.

use super::deploy::{deploy_job, pending_deploys, DeployAt};
use super::{Action, LiveSource, LivenessView, MigrationJob};
use crate::migration::{MigrationReason, MigrationStatus};
use crate::placement::{plan_failover, plan_pending};
use crate::registry::WorkerStatus;
use crate::state::ClusterState;

/// One phase of a reconcile pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// With `auto_failover`: a migration (reason `worker_unhealthy`) for every placement on an
    /// Unhealthy or Dead worker that has none.
    Failover,
    /// A `drain` migration for every placement of a Draining worker that has none (drains
    /// started under a previous leader, drain migrations that failed).
    Drain,
    /// Workers for Pending placements and targets for target-less migrations.
    Assign,
    /// Every migration with a target is carried out.
    Migrate,
    /// Every placement on a Ready or Busy worker that is not running is (re)deployed.
    Deploy,
    /// When a rebalance is wanted: one rate-limited round ([`super::plan_rebalance`]).
    Rebalance,
}

impl Phase {
    /// Every phase, in the order of a pass.
    pub const ALL: [Phase; 6] = [
        Phase::Failover,
        Phase::Drain,
        Phase::Assign,
        Phase::Migrate,
        Phase::Deploy,
        Phase::Rebalance,
    ];
}

/// Every phase of a reconcile pass planned on `state`.
pub fn plan_reconcile(state: &ClusterState, live: &LivenessView, now_ms: u64) -> Vec<Action> {
    Phase::ALL
        .into_iter()
        .flat_map(|phase| plan_reconcile_phase(state, live, now_ms, phase))
        .collect()
}

/// The actions of one phase of a reconcile pass.
pub fn plan_reconcile_phase(
    state: &ClusterState,
    live: &LivenessView,
    now_ms: u64,
    phase: Phase,
) -> Vec<Action> {
    match phase {
        Phase::Failover if live.policy.auto_failover => moves_off(
            state,
            |s| s.needs_failover(),
            MigrationReason::WorkerUnhealthy,
        ),
        Phase::Failover => Vec::new(),
        Phase::Drain => moves_off(
            state,
            |s| s == WorkerStatus::Draining,
            MigrationReason::Drain,
        ),
        Phase::Assign => plan_pending(state)
            .iter()
            .map(|a| Action::Propose(a.to_command(now_ms)))
            .collect(),
        Phase::Migrate => migrations(state, live),
        Phase::Deploy => state
            .groups()
            .into_iter()
            .flat_map(|g| pending_deploys(state, &g.id, live.policy.mqtt_url.as_deref()))
            .filter(|job| {
                state
                    .worker(&job.worker_id)
                    .is_some_and(|w| matches!(w.status, WorkerStatus::Ready | WorkerStatus::Busy))
            })
            .map(Action::Deploy)
            .collect(),
        Phase::Rebalance if live.rebalance_wanted => super::plan_rebalance(state, live, now_ms),
        Phase::Rebalance => Vec::new(),
    }
}

/// A migration for every placement without one on the workers whose status `leaves` selects.
///
/// Only workers that hold a placement can have something to move: they are found through the
/// groups' placements (in id order, as before), not by walking every registered worker. The
/// reconciler runs this on every pass (woken by every registration), and a cluster may have
/// far more workers than placements: walking 100,000 workers twice per pass was a tenth of
/// the leader's CPU under a registration burst (docs/benchmarks.md, issue 19).
fn moves_off(
    state: &ClusterState,
    leaves: impl Fn(WorkerStatus) -> bool,
    reason: MigrationReason,
) -> Vec<Action> {
    let holders: std::collections::BTreeSet<&str> = state
        .groups()
        .into_iter()
        .flat_map(|g| g.placements.iter().filter_map(|p| p.worker_id.as_deref()))
        .collect();
    holders
        .into_iter()
        .filter_map(|id| state.worker(id))
        .filter(|w| leaves(w.status))
        .flat_map(|w| plan_failover(state, &w.id))
        .map(|planned| Action::StartMigration { planned, reason })
        .collect()
}

/// Every migration that has a target, as a job (deploy on the target at the next epoch with
/// the stored checkpoint; the source when its worker still answers).
fn migrations(state: &ClusterState, live: &LivenessView) -> Vec<Action> {
    state
        .active_migrations()
        .into_iter()
        .filter(|m| m.status == MigrationStatus::Deploying)
        .filter_map(|m| {
            let to = m.to_worker.as_deref()?;
            let placement = state
                .group(&m.group_id)?
                .placement(&m.pipeline_name, m.replica)?;
            let at = DeployAt {
                worker_id: to,
                epoch: placement.epoch.saturating_add(1),
                paused: false,
            };
            let deploy = deploy_job(
                state,
                (&m.group_id, &m.pipeline_name, m.replica),
                at,
                None,
                live.policy.mqtt_url.as_deref(),
            )?;
            let source = placement
                .worker_id
                .as_deref()
                .and_then(|w| state.worker(w))
                .filter(|w| {
                    matches!(
                        w.status,
                        WorkerStatus::Ready | WorkerStatus::Busy | WorkerStatus::Draining
                    )
                })
                .zip(placement.pipeline_id.clone())
                .map(|(w, pipeline_id)| LiveSource {
                    worker_id: w.id.clone(),
                    pipeline_id,
                    epoch: placement.epoch,
                });
            Some(Action::Migrate(MigrationJob {
                migration_id: m.id.clone(),
                deploy,
                source,
            }))
        })
        .collect()
}
