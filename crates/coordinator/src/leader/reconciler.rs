//! The leader's reconciler: makes the workers match the desired state held in Raft.
//!
//! Each pass (every `reconcile_interval`, or sooner when woken) runs the phases of
//! `varpulis_cluster::plan::plan_reconcile` in order, planning each on the state the previous
//! one left and carrying its actions out ([`crate::leader::executor`]):
//! 1. failover (when `auto_failover`): a migration (reason `worker_unhealthy`) for every
//!    placement on an Unhealthy or Dead worker; drains: the same for every Draining worker
//!    (reason `drain`);
//! 2. Pending placements and target-less migrations get a worker;
//! 3. every migration with a target is deployed there, then `CompleteMigration` (the placement
//!    moves atomically, epoch + 1) — after 3 failed attempts `FailMigration`, and a later pass
//!    starts a fresh one. When the source worker still answers (drain, rebalance) a fresh
//!    checkpoint is taken from it first (and stored in Raft), and its pipeline is deleted once
//!    the move is complete; otherwise the last stored checkpoint is restored;
//! 4. every placement whose worker is Ready/Busy but which is not Running is deployed;
//! 5. when a rebalance is wanted, one rate-limited round.
//!
//! Deploys back off per decision (1 s doubling to 30 s). Nothing depends on the previous leader
//! having finished: a half-done deploy or migration is simply retried, and the deterministic
//! pipeline id makes a retried deploy idempotent on the worker.

use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use varpulis_cluster::plan::{plan_reconcile_phase, Phase};

use crate::leader::backoff::Backoff;
use crate::leader::context::LeaderCtx;
use crate::leader::executor;

/// Shortest time between two passes started by wake-ups. A pass scans every worker and group,
/// so a burst of wake-ups (thousands of registrations per second) is coalesced into one pass
/// per interval instead of one per request; a deploy starts at most this much later.
const MIN_PASS_SPACING: Duration = Duration::from_millis(100);

/// Runs the reconciler until shutdown.
pub async fn run(ctx: LeaderCtx, shutdown: CancellationToken) {
    let mut backoff = Backoff::default();
    let mut last_pass: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ctx.settings.reconcile_interval) => {}
            _ = ctx.reconcile.notified() => {
                if let Some(wait) = last_pass
                    .map(|at| MIN_PASS_SPACING.saturating_sub(at.elapsed()))
                    .filter(|w| !w.is_zero())
                {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        if !ctx.store.is_leader() {
            backoff = Backoff::default();
            continue;
        }
        last_pass = Some(Instant::now());
        reconcile_once(&ctx, &mut backoff).await;
    }
}

/// One pass of the reconciler; returns how many deploys succeeded.
pub async fn reconcile_once(ctx: &LeaderCtx, backoff: &mut Backoff) -> usize {
    let mut deployed = 0;
    for phase in Phase::ALL {
        let view = ctx.view();
        let now_ms = ctx.now_ms();
        // Planning walks every worker and placement: on a snapshot, outside the state lock
        // (`Store::snapshot`: a long read would stall `apply` and Raft's heartbeats with it).
        let state = ctx.store.snapshot();
        let actions = plan_reconcile_phase(&state, &view, now_ms, phase);
        drop(state);
        if actions.is_empty() {
            continue;
        }
        let report = executor::run(ctx, actions, backoff).await;
        deployed += report.deployed;
        if phase == Phase::Rebalance && !report.started.is_empty() {
            // Their deploys start at the next pass.
            ctx.reconcile.notify_one();
        }
    }
    deployed
}
