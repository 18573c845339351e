//! Registration with, heartbeats to, and deregistration from the coordinators.
//!
//! The URL list is tried in turn: a connect error, a 5xx or a 421 moves to the next URL.
//! Registration retries with exponential backoff (1 s doubling to 30 s, ±20 % jitter). A 404
//! on a heartbeat means the coordinator lost us: re-register at once, reporting the pipelines
//! that run here.
//!
//! With `WorkerConfig::checkpoint_interval` set, the heartbeat loop also pushes the checkpoint
//! of every coordinator-deployed pipeline whose event count moved to
//! `POST /api/v1/cluster/workers/{id}/checkpoints` (the coordinator stores the newest one in
//! Raft). At graceful shutdown [`CoordinatorClient::drain_self`] asks the leader to drain this
//! worker (heartbeats with `draining: true`) and waits, bounded, until it is empty.

use crate::error::WorkerError;
use crate::server::AppState;
use rand::Rng;
use reqwest::StatusCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use varpulis_api::cluster::{
    CheckpointPush, HeartbeatRequest, HeartbeatResponse, RegisterWorkerRequest, RunningPipeline,
    WorkerCapacity,
};
use varpulis_api::worker::Checkpoint;

/// Timeout of the best-effort deregistration at shutdown.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between draining heartbeats while waiting for the drain to finish.
const DRAIN_POLL: Duration = Duration::from_millis(250);
/// `Checkpoint::version` of pushed checkpoints (the worker API's checkpoint format).
const PUSHED_CHECKPOINT_VERSION: u32 = 1;

/// Why one call to the coordinators failed.
#[derive(Debug)]
enum CallError {
    /// The coordinator does not know this worker (404 on heartbeat).
    UnknownWorker,
    /// Every URL failed; the last reason.
    Unavailable(String),
}

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

/// Heartbeat `status` of a drain that cannot place every pipeline.
const DRAIN_NO_TARGET: &str = "no_target";

/// Talks to the configured coordinators on behalf of the worker.
#[derive(Debug)]
pub struct CoordinatorClient {
    state: Arc<AppState>,
    http: reqwest::Client,
    /// Index of the URL that answered last (the next call starts there).
    current: AtomicUsize,
    /// Event count of each pipeline at its last accepted checkpoint push.
    pushed: Mutex<HashMap<String, u64>>,
}

/// The pipelines running on this worker, as reported to the coordinators.
fn running(state: &AppState) -> Vec<RunningPipeline> {
    state
        .registry
        .all()
        .iter()
        .map(|p| RunningPipeline {
            pipeline_id: p.id.clone(),
            name: p.name.clone(),
            epoch: p.epoch,
        })
        .collect()
}

/// The registration body (HTTP route and NATS subject alike): identity, capacity, labels and
/// the pipelines running here.
pub(crate) fn registration(state: &AppState) -> RegisterWorkerRequest {
    let cfg = &state.config;
    let running = running(state);
    RegisterWorkerRequest {
        worker_id: cfg.worker_id.clone(),
        address: cfg.advertise_address.clone(),
        api_key: cfg.api_key.clone().unwrap_or_default(),
        capacity: WorkerCapacity {
            cpu_cores: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            pipelines_running: running.len() as u32,
            max_pipelines: cfg.max_pipelines,
        },
        labels: cfg.labels.clone(),
        running_pipelines: running,
    }
}

/// The heartbeat body (HTTP route and NATS subject alike): events processed and the pipelines
/// running here; `draining` during a graceful self-drain.
pub(crate) fn heartbeat(state: &AppState, draining: bool) -> HeartbeatRequest {
    let running = running(state);
    HeartbeatRequest {
        events_processed: state.registry.all().iter().map(|p| p.events_in()).sum(),
        pipelines_running: running.len() as u32,
        pipelines: Some(running),
        draining,
    }
}

/// Calls `register` until it succeeds, waiting between attempts with the registration backoff
/// of the config (`registration_backoff_initial` doubling up to `registration_backoff_max`,
/// ±20 % jitter); `what` names the attempt in the warnings. `None` when the worker shuts down
/// first. Used by the HTTP client and the NATS transport.
pub(crate) async fn register_with_backoff<T, F, Fut>(
    state: &AppState,
    what: &str,
    mut register: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let cfg = &state.config;
    let mut delay = cfg.registration_backoff_initial;
    loop {
        match register().await {
            Ok(v) => return Some(v),
            Err(e) => {
                let jittered = delay.mul_f64(rand::thread_rng().gen_range(0.8..1.2));
                tracing::warn!("{what} failed ({e}); retrying in {jittered:?}");
                tokio::select! {
                    () = state.shutdown.cancelled() => return None,
                    () = tokio::time::sleep(jittered) => {},
                }
                delay = (delay * 2).min(cfg.registration_backoff_max);
            }
        }
    }
}

impl CoordinatorClient {
    /// A client for the state's configured coordinators.
    pub fn new(state: Arc<AppState>) -> Result<Self, WorkerError> {
        let http = reqwest::Client::builder()
            .timeout(state.config.coordinator_timeout)
            .connect_timeout(state.config.coordinator_timeout)
            .build()
            .map_err(|e| WorkerError::Internal(format!("HTTP client: {e}")))?;
        Ok(Self {
            state,
            http,
            current: AtomicUsize::new(0),
            pushed: Mutex::new(HashMap::new()),
        })
    }

    fn urls(&self) -> &[String] {
        &self.state.config.coordinators
    }

    fn with_token(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.state.config.worker_token {
            Some(t) => req.header(varpulis_api::WORKER_TOKEN_HEADER, t),
            None => req,
        }
    }

    /// Registers, then heartbeats until the worker shuts down.
    pub async fn run(self: Arc<Self>) {
        let cancel = self.state.shutdown.clone();
        let cfg = &self.state.config;
        'outer: loop {
            let registered = register_with_backoff(&self.state, "registration", || async {
                self.register().await.map_err(|e| format!("{e:?}"))
            });
            let Some(url) = registered.await else {
                break 'outer;
            };
            tracing::info!(coordinator = %url, worker_id = %cfg.worker_id, "registered");
            self.state.registered.store(true, Ordering::Relaxed);
            let mut ticker = tokio::time::interval(cfg.heartbeat_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            let mut pushes =
                tokio::time::interval(cfg.checkpoint_interval.unwrap_or(Duration::from_secs(3600)));
            pushes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            pushes.tick().await;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break 'outer,
                    _ = ticker.tick() => {},
                    _ = pushes.tick(), if cfg.checkpoint_interval.is_some() => {
                        self.push_checkpoints().await;
                        continue;
                    }
                }
                match self.heartbeat().await {
                    Ok(()) => {}
                    Err(CallError::UnknownWorker) => {
                        tracing::warn!("coordinator does not know this worker; re-registering");
                        continue 'outer;
                    }
                    Err(CallError::Unavailable(e)) => tracing::warn!("heartbeat failed: {e}"),
                }
            }
        }
    }

    /// Tries each URL in turn starting at the current one; returns the URL that accepted.
    async fn register(&self) -> Result<String, CallError> {
        let body = registration(&self.state);
        self.each_url(|base| {
            let req = self
                .http
                .post(format!("{base}/api/v1/cluster/workers/register"))
                .json(&body);
            self.with_token(req)
        })
        .await
    }

    async fn heartbeat(&self) -> Result<(), CallError> {
        let body = heartbeat(&self.state, false);
        let id = &self.state.config.worker_id;
        self.each_url(|base| {
            let req = self
                .http
                .post(format!("{base}/api/v1/cluster/workers/{id}/heartbeat"))
                .json(&body);
            self.with_token(req)
        })
        .await
        .map(|_| ())
    }

    /// Sends the request to each URL in turn, starting at the current one, until one answers
    /// 2xx (success), 404 (`UnknownWorker`) or a non-retryable 4xx.
    async fn each_url(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<String, CallError> {
        let urls = self.urls();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::from("no coordinator configured");
        for i in 0..urls.len() {
            let idx = (start + i) % urls.len();
            let base = urls[idx].trim_end_matches('/');
            match build(base).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        self.current.store(idx, Ordering::Relaxed);
                        return Ok(base.to_owned());
                    }
                    if status == StatusCode::NOT_FOUND {
                        self.current.store(idx, Ordering::Relaxed);
                        return Err(CallError::UnknownWorker);
                    }
                    let text = resp.text().await.unwrap_or_default();
                    last = format!("{base}: {status} {text}");
                    // 5xx and 421 (not leader) mean "try another one"; so do other 4xx
                    // (e.g. a wrong token on one node), after which we back off.
                }
                Err(e) => last = format!("{base}: {e}"),
            }
        }
        Err(CallError::Unavailable(last))
    }

    /// Pushes the checkpoint of every coordinator-deployed pipeline (it has an epoch) whose
    /// event count changed since its last accepted push. Failures are logged and retried at the
    /// next tick (the coordinator's own pull remains the fallback).
    async fn push_checkpoints(&self) {
        use base64::Engine as _;
        let id = &self.state.config.worker_id;
        for p in self.state.registry.all() {
            let Some(epoch) = p.epoch else { continue };
            let events = p.events_in();
            if self.pushed_events(&p.id) == Some(events) {
                continue;
            }
            let (bytes, events_processed) = match p.checkpoint() {
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
            let pushed = self
                .each_url(|base| {
                    let req = self
                        .http
                        .post(format!("{base}/api/v1/cluster/workers/{id}/checkpoints"))
                        .json(&body);
                    self.with_token(req)
                })
                .await;
            match pushed {
                Ok(_) => self.set_pushed_events(&p.id, events),
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
        let mut pushed = self
            .pushed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let live: std::collections::HashSet<String> = self
            .state
            .registry
            .all()
            .iter()
            .map(|p| p.id.clone())
            .collect();
        pushed.retain(|id, _| live.contains(id));
        pushed.insert(pipeline_id.to_owned(), events);
    }

    /// Graceful shutdown: asks the leader to drain this worker (its pipelines move away with
    /// fresh checkpoints) and waits until it reports the worker empty, at most `deadline`.
    /// Gives up early when no coordinator answers or the worker is unknown. Returns whether
    /// the drain completed.
    pub async fn drain_self(&self, deadline: Duration) -> bool {
        let started = tokio::time::Instant::now();
        let mut failures = 0;
        while started.elapsed() < deadline {
            match self.drain_heartbeat().await {
                Ok(DrainState::Drained) => {
                    tracing::info!(waited = ?started.elapsed(), "drained: every pipeline moved away");
                    return true;
                }
                Ok(DrainState::NoTarget) => {
                    tracing::warn!("no other worker can take our pipelines; leaving them pending");
                    return false;
                }
                Ok(DrainState::Unsupported) => return false,
                Ok(DrainState::Moving) => failures = 0,
                Err(CallError::UnknownWorker) => return false,
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

    /// One heartbeat with `draining: true`, and what the leader answered.
    async fn drain_heartbeat(&self) -> Result<DrainState, CallError> {
        let body = heartbeat(&self.state, true);
        let id = &self.state.config.worker_id;
        let urls = self.urls();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::from("no coordinator configured");
        for i in 0..urls.len() {
            let base = urls[(start + i) % urls.len()].trim_end_matches('/');
            let req = self
                .http
                .post(format!("{base}/api/v1/cluster/workers/{id}/heartbeat"))
                .json(&body);
            match self.with_token(req).send().await {
                Ok(resp) if resp.status().is_success() => {
                    let answer: HeartbeatResponse = resp.json().await.unwrap_or_default();
                    return Ok(match answer.drained {
                        Some(true) => DrainState::Drained,
                        _ if answer.status == DRAIN_NO_TARGET => DrainState::NoTarget,
                        Some(false) => DrainState::Moving,
                        None => DrainState::Unsupported,
                    });
                }
                Ok(resp) if resp.status() == StatusCode::NOT_FOUND => {
                    return Err(CallError::UnknownWorker)
                }
                Ok(resp) => last = format!("{base}: {}", resp.status()),
                Err(e) => last = format!("{base}: {e}"),
            }
        }
        Err(CallError::Unavailable(last))
    }

    /// Best-effort `DELETE /api/v1/cluster/workers/{id}` with a short timeout.
    pub async fn deregister(&self) {
        let cfg = &self.state.config;
        let id = &cfg.worker_id;
        let attempt = self.each_url(|base| {
            let mut req = self
                .http
                .delete(format!("{base}/api/v1/cluster/workers/{id}"))
                .timeout(DEREGISTER_TIMEOUT);
            if let Some(k) = &cfg.api_key {
                req = req.header(varpulis_api::API_KEY_HEADER, k);
            }
            self.with_token(req)
        });
        match tokio::time::timeout(DEREGISTER_TIMEOUT * 2, attempt).await {
            Ok(Ok(url)) => tracing::info!(coordinator = %url, "deregistered"),
            Ok(Err(CallError::UnknownWorker)) => {
                tracing::info!("coordinator already forgot this worker")
            }
            Ok(Err(CallError::Unavailable(e))) => tracing::warn!("deregistration failed: {e}"),
            Err(_) => tracing::warn!("deregistration timed out"),
        }
    }
}
