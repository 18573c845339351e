//! The leader's health sweep: marks silent workers unhealthy, through Raft.
//!
//! Every `sweep_interval` the leader compares each Ready/Busy worker's last heartbeat (in memory,
//! [`crate::health::Liveness`]) with `heartbeat_timeout` and proposes `SetWorkerStatus Unhealthy` for
//! the silent ones, batched into one log entry when there are several. A worker is therefore marked
//! within `heartbeat_timeout + sweep_interval` of its last heartbeat. When a node becomes leader
//! (a new term) every worker first gets one full timeout of grace (last-seen = now), so a leader
//! change never causes a false failover. Followers do nothing and keep no liveness data.
//!
//! With `--failure-detector phi` the test is phi accrual over each worker's heartbeat intervals
//! (`--phi-threshold`, default 8.0; [`crate::phi`]), still bounded by `heartbeat_timeout`.

use std::time::Instant;
use tokio::time::MissedTickBehavior;
use varpulis_cluster::registry::WorkerStatus;
use varpulis_cluster::Command;

use crate::config::FailureDetector;
use crate::health::Detector;
use crate::phi::PhiConfig;
use crate::state::{now_ms, AppState};

/// The detector the configuration selects.
pub fn detector(config: &crate::config::CoordinatorConfig) -> Detector {
    match config.failure_detector {
        FailureDetector::Timeout => Detector::Timeout(config.heartbeat_timeout),
        FailureDetector::Phi => Detector::Phi {
            config: PhiConfig::for_interval(config.phi_threshold, config.heartbeat_interval),
            timeout: config.heartbeat_timeout,
        },
    }
}

/// Runs the sweep until shutdown.
///
/// Leadership changes are watched directly (openraft's server metrics, which change only with
/// the vote, the leader or the membership), so the new leader's grace starts at its election,
/// not at its next sweep tick: a silent worker is then marked within one heartbeat-timeout plus
/// one sweep interval of the election, the same bound as in steady state.
pub async fn run(state: AppState) {
    let mut ticker = tokio::time::interval(state.config.sweep_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut server = state.raft.raft().server_metrics();
    let mut leading_term: Option<u64> = None;
    loop {
        let tick = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = ticker.tick() => true,
            changed = server.changed() => {
                if changed.is_err() {
                    // Raft has shut down.
                    return;
                }
                false
            }
        };
        if !state.raft.is_leader() {
            if leading_term.take().is_some() {
                state.liveness.clear();
            }
            continue;
        }
        let term = state.raft.current_term();
        if leading_term != Some(term) {
            let ids: Vec<String> = state.read(|s| s.workers().map(|w| w.id.clone()).collect());
            state
                .liveness
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
        sweep_once(&state).await;
        state.metrics.observe_sweep(started.elapsed());
    }
}

/// One sweep: proposes Unhealthy for every Ready/Busy worker silent longer than the timeout.
pub async fn sweep_once(state: &AppState) -> usize {
    let candidates: Vec<String> = state.read(|s| {
        s.workers()
            .filter(|w| {
                matches!(
                    w.status,
                    WorkerStatus::Ready | WorkerStatus::Busy | WorkerStatus::Registering
                )
            })
            .map(|w| w.id.clone())
            .collect()
    });
    let timeout = state.config.heartbeat_timeout;
    let stale = state.liveness.suspected(
        candidates.iter().map(String::as_str),
        Instant::now(),
        &detector(&state.config),
    );
    if stale.is_empty() {
        return 0;
    }
    let now = now_ms();
    let reason = match state.config.failure_detector {
        FailureDetector::Timeout => {
            format!("no heartbeat for more than {:.1} s", timeout.as_secs_f64())
        }
        FailureDetector::Phi => format!(
            "phi-accrual suspicion above {} (or silent for more than {:.1} s)",
            state.config.phi_threshold,
            timeout.as_secs_f64()
        ),
    };
    let mut commands: Vec<Command> = stale
        .iter()
        .map(|id| Command::SetWorkerStatus {
            worker_id: id.clone(),
            status: WorkerStatus::Unhealthy,
            now_ms: now,
            reason: Some(reason.clone()),
        })
        .collect();
    let command = if commands.len() == 1 {
        commands.remove(0)
    } else {
        Command::Batch(commands)
    };
    match state.write(command).await {
        Ok(_) => {
            for id in &stale {
                tracing::warn!(worker_id = %id, "{reason}: marked unhealthy");
            }
            state.reconcile.notify_one();
            stale.len()
        }
        Err(err) => {
            tracing::warn!(
                workers = stale.len(),
                "cannot mark silent workers unhealthy: {err}"
            );
            0
        }
    }
}

/// Counts leader changes seen by this node (for `/metrics`) and logs them, until shutdown.
pub async fn watch_leader(state: AppState) {
    let mut rx = state.raft.metrics();
    let mut last = rx.borrow().current_leader;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let leader = rx.borrow().current_leader;
        if leader != last {
            if leader.is_some() {
                crate::metrics::Metrics::inc(&state.metrics.leader_changes);
            }
            tracing::info!(node_id = state.node_id, ?leader, "raft leader changed");
            last = leader;
        }
    }
}
