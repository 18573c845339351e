//! Registration with, heartbeats to, and deregistration from the coordinators.
//!
//! The URL list is tried in turn: a connect error, a 5xx or a 421 moves to the next URL.
//! Registration retries with exponential backoff (1 s doubling to 30 s, ±20 % jitter). A 404
//! on a heartbeat means the coordinator lost us: re-register at once, reporting the pipelines
//! that run here.
//!
//! Extension point: periodic checkpoint push (`WorkerConfig::checkpoint_interval`) belongs in
//! the heartbeat loop of [`CoordinatorClient::run`]; it is not implemented yet.

use crate::error::WorkerError;
use crate::server::AppState;
use rand::Rng;
use reqwest::StatusCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use varpulis_api::cluster::{
    HeartbeatRequest, RegisterWorkerRequest, RunningPipeline, WorkerCapacity,
};

/// Timeout of the best-effort deregistration at shutdown.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// Why one call to the coordinators failed.
#[derive(Debug)]
enum CallError {
    /// The coordinator does not know this worker (404 on heartbeat).
    UnknownWorker,
    /// Every URL failed; the last reason.
    Unavailable(String),
}

/// Talks to the configured coordinators on behalf of the worker.
#[derive(Debug)]
pub struct CoordinatorClient {
    state: Arc<AppState>,
    http: reqwest::Client,
    /// Index of the URL that answered last (the next call starts there).
    current: AtomicUsize,
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
        })
    }

    fn urls(&self) -> &[String] {
        &self.state.config.coordinators
    }

    fn running(&self) -> Vec<RunningPipeline> {
        self.state
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
            let mut delay = cfg.registration_backoff_initial;
            loop {
                match self.register().await {
                    Ok(url) => {
                        tracing::info!(coordinator = %url, worker_id = %cfg.worker_id, "registered");
                        self.state.registered.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => {
                        let jittered = delay.mul_f64(rand::thread_rng().gen_range(0.8..1.2));
                        tracing::warn!("registration failed ({e:?}); retrying in {jittered:?}");
                        tokio::select! {
                            () = cancel.cancelled() => break 'outer,
                            () = tokio::time::sleep(jittered) => {},
                        }
                        delay = (delay * 2).min(cfg.registration_backoff_max);
                    }
                }
            }
            let mut ticker = tokio::time::interval(cfg.heartbeat_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break 'outer,
                    _ = ticker.tick() => {},
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
        let cfg = &self.state.config;
        let running = self.running();
        let body = RegisterWorkerRequest {
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
        };
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
        let running = self.running();
        let events_processed = self
            .state
            .registry
            .all()
            .iter()
            .map(|p| p.events_in())
            .sum();
        let body = HeartbeatRequest {
            events_processed,
            pipelines_running: running.len() as u32,
            pipelines: Some(running),
        };
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
