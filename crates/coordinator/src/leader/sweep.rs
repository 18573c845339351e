//! The leader's health sweep: marks silent workers unhealthy, through Raft.
//!
//! Every sign of life grants a worker a deadline in the leader's memory
//! ([`crate::leader::liveness::Liveness`]): `now + timeout`, the timeout of the grant in force
//! (`LeaderSettings::grant`: `heartbeat_timeout`, longer past `--max-heartbeats-per-second`).
//! Every `sweep_interval` the leader takes out the workers whose deadline has passed — a
//! deadline-ordered wheel, so the sweep's cost is O(expired), not O(workers) — and proposes
//! `SetWorkerStatus Unhealthy` for the Ready/Busy ones among them, batched into one log entry
//! when there are several. A worker is therefore marked within its timeout plus one sweep
//! interval of its last heartbeat. When a node becomes leader (a new term) every worker first
//! gets one full timeout of grace (last-seen = now), so a leader change never causes a false
//! failover. Followers do nothing and keep no liveness data.
//!
//! The deadline is also the end of the worker's lease plus its margin (the lease granted with
//! an answer is the timeout minus the margin), so a worker is never marked before its lease
//! certainly ran out. For the same reason the phi detector (`--failure-detector phi`) cannot
//! mark anyone sooner than the timeout; it only words the reason.

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use varpulis_cluster::plan::{plan_sweep, Action, LivenessView};
use varpulis_cluster::Command;

use crate::config::FailureDetector;
use crate::leader::context::LeaderCtx;

/// Runs the sweep until shutdown.
///
/// Leadership changes are watched directly (openraft's server metrics, which change only with
/// the vote, the leader or the membership), so the new leader's grace starts at its election,
/// not at its next sweep tick: a silent worker is then marked within one heartbeat-timeout plus
/// one sweep interval of the election, the same bound as in steady state.
pub async fn run(ctx: LeaderCtx, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(ctx.settings.sweep_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut leadership = ctx.store.replica().leadership_changes();
    let mut leading_term: Option<u64> = None;
    loop {
        let tick = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => true,
            changed = leadership.changed() => {
                if !changed {
                    // Raft has shut down.
                    return;
                }
                false
            }
        };
        if !ctx.store.is_leader() {
            if leading_term.take().is_some() {
                ctx.liveness.clear();
            }
            continue;
        }
        let term = ctx.store.replica().current_term();
        if leading_term != Some(term) {
            // Outside the state lock: 100,000 workers take a while.
            let state = ctx.store.snapshot();
            // The grant for the replicated worker count: the one the previous leader gave.
            let grant = ctx.settings.grant(state.worker_count());
            ctx.liveness.grace(
                state.workers().map(|w| w.id.as_str()),
                Instant::now(),
                grant.timeout,
            );
            let ids = state.worker_count();
            drop(state);
            tracing::info!(
                term,
                workers = ids,
                grace_secs = grant.timeout.as_secs_f64(),
                "leading: every worker gets a heartbeat-timeout of grace"
            );
            leading_term = Some(term);
            continue;
        }
        if !tick {
            continue;
        }
        let started = Instant::now();
        sweep_once(&ctx).await;
        ctx.metrics.observe_sweep(started.elapsed());
    }
}

/// One sweep: proposes Unhealthy (`varpulis_cluster::plan::plan_sweep`) for every Ready/Busy
/// worker whose deadline has passed; returns how many were marked.
pub async fn sweep_once(ctx: &LeaderCtx) -> usize {
    let now = Instant::now();
    // Workers this leader has not heard of yet (registered through another leader, or applied
    // after the grace) get a grace period; deregistered ones are forgotten. Free while the
    // counts agree.
    let count = ctx.store.read(|s| s.worker_count());
    if count != ctx.liveness.len() {
        let grant = ctx.settings.grant(count);
        let state = ctx.store.snapshot();
        ctx.liveness.sync(
            state.workers().map(|w| w.id.as_str()),
            state.worker_count(),
            now,
            grant.timeout,
        );
    }
    let expired = ctx.liveness.expired(now);
    if expired.is_empty() {
        ctx.metrics.observe_sweep_scan(now.elapsed());
        return 0;
    }
    let timeout = ctx.settings.grant(count).timeout;
    let suspicion = match ctx.settings.failure_detector {
        FailureDetector::Timeout => {
            format!("no heartbeat for more than {:.1} s", timeout.as_secs_f64())
        }
        FailureDetector::Phi => format!(
            "phi-accrual suspicion above {} (or silent for more than {:.1} s)",
            ctx.settings.phi_threshold,
            timeout.as_secs_f64()
        ),
    };
    let view = LivenessView {
        suspected: expired.iter().cloned().collect(),
        suspicion,
        ..ctx.view()
    };
    let now_ms = ctx.now_ms();
    let actions = ctx.store.read(|s| plan_sweep(s, &view, now_ms));
    ctx.metrics.observe_sweep_scan(now.elapsed());
    let mut proposed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut marked = 0;
    for action in actions {
        let Action::Propose(command) = action else {
            continue;
        };
        let workers: Vec<String> = match &command {
            Command::Batch(items) => items.iter().filter_map(worker_of).collect(),
            single => worker_of(single).into_iter().collect(),
        };
        match ctx.store.write(command).await {
            Ok(_) => {
                for id in &workers {
                    tracing::warn!(worker_id = %id, "{}: marked unhealthy", view.suspicion);
                }
                marked += workers.len();
                proposed.extend(workers);
                ctx.reconcile.notify_one();
            }
            Err(err) => {
                tracing::warn!(
                    workers = workers.len(),
                    "cannot mark silent workers unhealthy: {err}"
                );
                // Looked at again at the next sweep.
                for id in &workers {
                    ctx.liveness.requeue(id, now);
                }
                proposed.extend(workers);
            }
        }
    }
    // Expired but not eligible for a mark now (draining, already unhealthy or dead): looked
    // at again a timeout later, in case their status changes without a sign of life.
    for id in expired.iter().filter(|id| !proposed.contains(*id)) {
        ctx.liveness.requeue(id, now + timeout);
    }
    marked
}

/// The worker a `SetWorkerStatus` is about.
fn worker_of(command: &Command) -> Option<String> {
    match command {
        Command::SetWorkerStatus { worker_id, .. } => Some(worker_id.clone()),
        _ => None,
    }
}
