//! A worker's session with its coordinators, the same over every transport.
//!
//! Registration retries with exponential backoff (`registration_backoff_initial` doubling to
//! `registration_backoff_max`, ±20 % jitter) until accepted; then a heartbeat every
//! `heartbeat_interval` or the longer interval the coordinator asks for in its answers
//! (`heartbeat_interval_ms`: large clusters heartbeat less often), and at once when the worker session asks for one (a fenced worker's
//! session reached the leader: the answer lifts the fence; a heartbeat hanging on an
//! unreachable coordinator meanwhile is abandoned). A "who are you?" answer (404) means the
//! coordinator lost us:
//! re-register at once, reporting the pipelines that run here.
//!
//! With `checkpoint_interval` set, the loop also pushes the checkpoint of every
//! coordinator-deployed pipeline whose event count moved (the coordinator keeps the newest in
//! Raft; its own pull remains the fallback). At graceful shutdown
//! [`CoordinatorClient::drain_self`] asks the leader to drain this worker (heartbeats with
//! `draining: true`) and waits, bounded, until it is empty.

use super::{CallError, CoordinatorClient};
use base64::Engine as _;
use rand::Rng;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use varpulis_api::cluster::{CheckpointPush, HeartbeatResponse};
use varpulis_api::worker::Checkpoint;

/// Pause between draining heartbeats while waiting for the drain to finish.
const DRAIN_POLL: Duration = Duration::from_millis(250);
/// `Checkpoint::version` of pushed checkpoints (the worker API's checkpoint format).
const PUSHED_CHECKPOINT_VERSION: u32 = 1;
/// Heartbeat `status` of a drain that cannot place every pipeline.
const DRAIN_NO_TARGET: &str = "no_target";

/// The leader's answer to a draining heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DrainState {
    /// Nothing left on this worker.
    Drained,
    /// Pipelines are moving away.
    Moving,
    /// Some pipeline has nowhere to go (its migration waits pending at the coordinator).
    NoTarget,
    /// The coordinator does not drain workers (no `drained` in its answer).
    Unsupported,
}

impl DrainState {
    fn of(answer: &HeartbeatResponse) -> Self {
        match answer.drained {
            Some(true) => Self::Drained,
            _ if answer.status == DRAIN_NO_TARGET => Self::NoTarget,
            Some(false) => Self::Moving,
            None => Self::Unsupported,
        }
    }
}

impl CoordinatorClient {
    /// Registers, then heartbeats (and pushes checkpoints) until the worker shuts down.
    pub async fn run(self: Arc<Self>) {
        let cancel = self.state.shutdown.clone();
        let cfg = &self.state.config;
        'session: loop {
            let Some(by) = self.register_with_backoff().await else {
                break 'session;
            };
            tracing::info!(coordinator = %by, worker_id = %cfg.worker_id, "registered");
            self.state.set_registered(true);
            // The coordinator may ask for a longer interval (a large cluster): followed from
            // the next tick on.
            let mut every = self.heartbeat_interval();
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            let mut pushes =
                tokio::time::interval(cfg.checkpoint_interval.unwrap_or(Duration::from_secs(3600)));
            pushes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            pushes.tick().await;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break 'session,
                    _ = ticker.tick() => {},
                    () = self.heartbeat_now.notified() => {},
                    _ = pushes.tick(), if cfg.checkpoint_interval.is_some() => {
                        self.push_checkpoints().await;
                        continue;
                    }
                }
                // A heartbeat hanging on an unreachable coordinator is abandoned when the
                // session asks for one now (it found the leader): sent again, to the leader.
                let answer = loop {
                    tokio::select! {
                        () = cancel.cancelled() => break 'session,
                        r = self.heartbeat(false) => break r,
                        () = self.heartbeat_now.notified() => {}
                    }
                };
                if self.heartbeat_interval() != every {
                    every = self.heartbeat_interval();
                    tracing::debug!(?every, "heartbeat interval set by the coordinator");
                    ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
                match answer {
                    Ok(answer) => super::fence::after_heartbeat(&self.state, &answer),
                    Err(CallError::UnknownWorker) => {
                        tracing::warn!("coordinator does not know this worker; re-registering");
                        continue 'session;
                    }
                    Err(e) => tracing::warn!("heartbeat failed: {e:?}"),
                }
            }
        }
    }

    /// Registers until accepted, waiting between attempts with the registration backoff.
    /// `None` when the worker shuts down first.
    async fn register_with_backoff(&self) -> Option<String> {
        let cfg = &self.state.config;
        let mut delay = cfg.registration_backoff_initial;
        loop {
            match self.register().await {
                Ok(by) => return Some(by),
                Err(e) => {
                    let jittered = delay.mul_f64(rand::thread_rng().gen_range(0.8..1.2));
                    tracing::warn!("registration failed ({e:?}); retrying in {jittered:?}");
                    tokio::select! {
                        () = self.state.shutdown.cancelled() => return None,
                        () = tokio::time::sleep(jittered) => {},
                    }
                    delay = (delay * 2).min(cfg.registration_backoff_max);
                }
            }
        }
    }

    /// Pushes the checkpoint of every coordinator-deployed pipeline (it has an epoch) whose
    /// event count changed since its last accepted push. Failures are logged and retried at the
    /// next tick.
    async fn push_checkpoints(&self) {
        for p in self.state.registry.all() {
            let Some(epoch) = p.epoch else { continue };
            let events = p.events_in();
            if self.pushed_events(&p.id) == Some(events) {
                continue;
            }
            let (bytes, events_processed) = match p.checkpoint().await {
                Ok(cp) => cp,
                Err(e) => {
                    tracing::debug!(pipeline = %p.id, "no checkpoint to push: {e}");
                    continue;
                }
            };
            let body = CheckpointPush {
                epoch,
                checkpoint: Checkpoint {
                    pipeline_id: p.id.clone(),
                    events_processed,
                    version: PUSHED_CHECKPOINT_VERSION,
                    state: base64::engine::general_purpose::STANDARD.encode(bytes),
                },
            };
            match self.push_checkpoint(&body).await {
                Ok(()) => self.set_pushed_events(&p.id, events),
                Err(e) => tracing::debug!(pipeline = %p.id, "checkpoint push failed: {e:?}"),
            }
        }
    }

    fn pushed_events(&self, pipeline_id: &str) -> Option<u64> {
        self.pushed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(pipeline_id)
            .copied()
    }

    fn set_pushed_events(&self, pipeline_id: &str, events: u64) {
        let live: HashSet<String> = self
            .state
            .registry
            .all()
            .iter()
            .map(|p| p.id.clone())
            .collect();
        let mut pushed = self
            .pushed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pushed.retain(|id, _| live.contains(id));
        pushed.insert(pipeline_id.to_owned(), events);
    }

    /// Graceful shutdown: asks the leader to drain this worker (its pipelines move away with
    /// fresh checkpoints) and waits until it reports the worker empty, at most `deadline`.
    /// Gives up early when no coordinator answers, the worker is unknown, or the transport
    /// cannot drain. Returns whether the drain completed.
    pub async fn drain_self(&self, deadline: Duration) -> bool {
        let started = tokio::time::Instant::now();
        let mut failures = 0;
        while started.elapsed() < deadline {
            match self.heartbeat(true).await.map(|a| DrainState::of(&a)) {
                Ok(DrainState::Drained) => {
                    tracing::info!(waited = ?started.elapsed(), "drained: every pipeline moved away");
                    return true;
                }
                Ok(DrainState::NoTarget) => {
                    tracing::warn!("no other worker can take our pipelines; leaving them pending");
                    return false;
                }
                Ok(DrainState::Unsupported)
                | Err(CallError::UnknownWorker)
                | Err(CallError::Unsupported) => return false,
                Ok(DrainState::Moving) => failures = 0,
                Err(CallError::Unavailable(e)) => {
                    failures += 1;
                    tracing::warn!("drain request failed: {e}");
                    if failures >= 3 {
                        return false;
                    }
                }
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        tracing::warn!(?deadline, "drain did not complete in time; leaving anyway");
        false
    }

    /// Best-effort deregistration at shutdown; the outcome is logged.
    pub async fn leave(&self) {
        match self.deregister().await {
            Ok(by) => tracing::info!(coordinator = %by, "deregistered"),
            Err(CallError::UnknownWorker) => {
                tracing::info!("coordinator already forgot this worker")
            }
            Err(CallError::Unsupported) => {}
            Err(CallError::Unavailable(e)) => tracing::warn!("deregistration failed: {e}"),
        }
    }
}
