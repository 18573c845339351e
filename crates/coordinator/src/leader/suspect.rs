//! The session-loss hint: a worker's WebSocket session closed, so the leader checks that worker
//! at once instead of waiting for the heartbeat timeout.
//!
//! The check probes the worker's `GET /health` (each attempt bounded by [`PROBE_TIMEOUT`];
//! up to three attempts while the answer is unclear):
//! - it answers: the worker lives (its session reconnects); nothing happens;
//! - the connection is **refused**: the host answers but no process listens, so nothing of
//!   that worker can run any more; it is marked unhealthy now (`plan_sweep`) and its pipelines
//!   move at the reconciler's next pass, without waiting for its lease;
//! - anything else (a timeout, a partition): the worker may still be running behind a cut, so
//!   the ordinary sweep decides once its lease has expired (docs/coordinator.md).

use std::time::Duration;
use varpulis_cluster::plan::{plan_sweep, Action, LivenessView};
use varpulis_cluster::registry::WorkerStatus;

use crate::leader::context::LeaderCtx;

/// Longest wait for the probe of a suspected worker.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Pauses before each probe attempt (an unclear answer is asked again).
const PROBE_RETRIES: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(150),
    Duration::from_millis(400),
];

/// What the probe of a worker found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/health` answered.
    Alive,
    /// Nothing listens at its address: the process is gone.
    Refused,
    /// No answer in time, or another failure: unknown.
    Unknown,
}

/// Probes `address` (`GET {address}/health`).
pub async fn probe(http: &reqwest::Client, address: &str) -> Probe {
    let url = format!("{}/health", address.trim_end_matches('/'));
    match http.get(url).timeout(PROBE_TIMEOUT).send().await {
        Ok(_) => Probe::Alive,
        Err(e) if refused(&e) => Probe::Refused,
        Err(_) => Probe::Unknown,
    }
}

fn refused(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = err.source();
    }
    // Some connectors wrap the OS error without exposing it as a source.
    e.is_connect() && format!("{e:?}").contains("ConnectionRefused")
}

/// On the leader: probes worker `id` after its session closed and marks it unhealthy when its
/// process is gone. Returns whether it was marked.
pub async fn check(ctx: &LeaderCtx, http: &reqwest::Client, id: &str) -> bool {
    if !ctx.store.is_leader() {
        return false;
    }
    let Some((address, status)) = ctx
        .store
        .read(|s| s.worker(id).map(|w| (w.address.clone(), w.status)))
    else {
        return false;
    };
    if !matches!(status, WorkerStatus::Ready | WorkerStatus::Busy) {
        return false;
    }
    // The session may close before the dying process's listener does (sockets close one by
    // one at exit): an unclear answer is asked again a little later.
    let mut found = Probe::Unknown;
    for pause in PROBE_RETRIES {
        tokio::time::sleep(pause).await;
        found = probe(http, &address).await;
        if found != Probe::Unknown {
            break;
        }
    }
    tracing::info!(worker_id = %id, ?found, "session lost: probed the worker");
    if found != Probe::Refused {
        return false;
    }
    let view = LivenessView {
        suspected: [id.to_string()].into_iter().collect(),
        suspicion: "session closed and nothing listens at its address".to_string(),
        ..ctx.view()
    };
    let now_ms = ctx.now_ms();
    let actions = ctx.store.read(|s| plan_sweep(s, &view, now_ms));
    let mut marked = false;
    for action in actions {
        let Action::Propose(command) = action else {
            continue;
        };
        match ctx.store.write(command).await {
            Ok(_) => marked = true,
            Err(e) => tracing::warn!(worker_id = %id, "cannot mark the worker unhealthy: {e}"),
        }
    }
    if marked {
        tracing::warn!(worker_id = %id, "session closed and process gone: marked unhealthy");
        ctx.reconcile.notify_one();
    }
    marked
}
