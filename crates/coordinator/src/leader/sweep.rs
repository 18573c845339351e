//! The leader's health sweep: marks silent workers unhealthy, through Raft.
//!
//! Every `sweep_interval` the leader compares each Ready/Busy worker's last heartbeat (in memory,
//! [`crate::leader::liveness::Liveness`]) with `heartbeat_timeout` and proposes `SetWorkerStatus Unhealthy` for
//! the silent ones, batched into one log entry when there are several. A worker is therefore marked
//! within `heartbeat_timeout + sweep_interval` of its last heartbeat. When a node becomes leader
//! (a new term) every worker first gets one full timeout of grace (last-seen = now), so a leader
//! change never causes a false failover. Followers do nothing and keep no liveness data.
//!
//! A worker is never marked before its lease ran out: lease + margin since the leader last
//! heard from it (`LeaderSettings::lease`), which equals `heartbeat_timeout`; the phi detector
//! can therefore not move pipelines sooner than the timeout would, only confirm it.
//!
//! With `--failure-detector phi` the test is phi accrual over each worker's heartbeat intervals
//! (`--phi-threshold`, default 8.0; [`crate::leader::phi`]), still bounded by `heartbeat_timeout`.

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
            let ids: Vec<String> = ctx
                .store
                .read(|s| s.workers().map(|w| w.id.clone()).collect());
            ctx.liveness
                .grace(ids.iter().map(String::as_str), Instant::now());
            tracing::info!(
                term,
                workers = ids.len(),
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
/// worker the failure detector suspects; returns how many were marked.
pub async fn sweep_once(ctx: &LeaderCtx) -> usize {
    let now = Instant::now();
    let detector = ctx.settings.detector();
    // Judged while walking the state: no copy of every id (a sweep of 100,000 workers every
    // second made 100,000 allocations; docs/benchmarks.md, issue 19).
    let mut suspected = ctx.store.read(|s| {
        ctx.liveness
            .suspected(s.workers().map(|w| w.id.as_str()), now, &detector)
    });
    // Never before the worker's lease has certainly expired (lease + margin since the last
    // grant, on this clock): until then it may still be running its pipelines.
    let held = ctx.settings.lease() + ctx.settings.lease_margin();
    suspected.retain(|id| match ctx.liveness.get(id) {
        Some(seen) => now.saturating_duration_since(seen.at) > held,
        None => true,
    });
    if suspected.is_empty() {
        return 0;
    }
    let timeout = ctx.settings.heartbeat_timeout;
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
        suspected: suspected.into_iter().collect(),
        suspicion,
        ..ctx.view()
    };
    let now_ms = ctx.now_ms();
    let actions = ctx.store.read(|s| plan_sweep(s, &view, now_ms));
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
                ctx.reconcile.notify_one();
            }
            Err(err) => {
                tracing::warn!(
                    workers = workers.len(),
                    "cannot mark silent workers unhealthy: {err}"
                );
            }
        }
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
