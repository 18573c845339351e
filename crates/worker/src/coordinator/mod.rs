//! The worker's one client of the coordinators, HTTP or NATS behind one type.
//!
//! [`CoordinatorClient::connect`] is the single construction point: it reads the transport,
//! URLs, join token and timeouts from the config (TLS and credentials belong there too). Every
//! call the worker makes — registration, heartbeats, checkpoint pushes, its own drain,
//! deregistration — goes through the client's methods, which pick the transport:
//!
//! - [`http`]: the URL list with fail-over.
//! - [`nats`]: request/reply subjects on a NATS connection (also used by the command server).
//! - [`session`]: the loop that registers (with backoff), heartbeats, pushes checkpoints and
//!   re-registers when a coordinator forgot the worker; the graceful self-drain; deregistration.
//! - [`reports`]: the registration and heartbeat bodies.
//! - [`ws`]: the persistent WebSocket session (a fast failure signal for the coordinators).
//! - [`fence`]: the lease watch (fences the worker when its lease runs out) and lifting the
//!   fence once the leader answers again.
//!
//! Every answer carrying `coordinators` extends the URL list (discovery) and every answer
//! carrying `lease_ms` renews the lease from the time the request was sent.

pub mod fence;
pub mod http;
pub mod nats;
pub mod reports;
pub mod session;
pub mod ws;

use crate::config::Transport;
use crate::error::WorkerError;
use crate::state::AppState;
use reqwest::Method;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use varpulis_api::cluster::{CheckpointPush, HeartbeatResponse, RegisterWorkerResponse};

/// Timeout of the best-effort deregistration at shutdown.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call to the coordinators failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The coordinator does not know this worker (404).
    UnknownWorker,
    /// Every coordinator failed; the last reason.
    Unavailable(String),
    /// The transport has no such call (NATS: deregistration, checkpoint push, self-drain).
    Unsupported,
}

/// How the client reaches the coordinators.
#[derive(Debug)]
enum Link {
    Http(http::HttpLink),
    Nats(nats::NatsLink),
}

/// Talks to the coordinators on behalf of the worker.
#[derive(Debug)]
pub struct CoordinatorClient {
    state: Arc<AppState>,
    link: Link,
    /// Event count of each pipeline at its last accepted checkpoint push.
    pushed: Mutex<HashMap<String, u64>>,
    /// Asks the heartbeat loop for a heartbeat now (the session found the leader while the
    /// worker is fenced: the answer lifts the fence), abandoning one that hangs elsewhere.
    heartbeat_now: tokio::sync::Notify,
    /// The heartbeat interval the coordinator last asked for, in milliseconds (0: none yet).
    asked_interval_ms: std::sync::atomic::AtomicU64,
}

impl CoordinatorClient {
    /// The client the config asks for: NATS with `transport = nats`, HTTP with coordinator
    /// URLs, `None` for a standalone worker.
    pub async fn connect(state: &Arc<AppState>) -> Result<Option<Arc<Self>>, WorkerError> {
        let cfg = &state.config;
        let link = match cfg.transport {
            Transport::Nats => {
                let url = cfg.nats_url.as_deref().ok_or_else(|| {
                    WorkerError::Config("--transport nats needs --nats-url".into())
                })?;
                let link = nats::NatsLink::connect(
                    url,
                    &cfg.worker_id,
                    cfg.api_key.clone(),
                    cfg.worker_token.clone(),
                    cfg.coordinator_timeout,
                    &crate::config::ClientTlsFiles::for_worker(false, &cfg.tls),
                )
                .await
                .map_err(WorkerError::Config)?;
                Link::Nats(link)
            }
            Transport::Http if cfg.coordinators.is_empty() => return Ok(None),
            Transport::Http => Link::Http(
                http::HttpLink::new(
                    cfg.coordinators.clone(),
                    cfg.api_key.clone(),
                    cfg.worker_token.clone(),
                    cfg.coordinator_timeout,
                    &state.client_tls,
                )
                .map_err(WorkerError::Internal)?,
            ),
        };
        Ok(Some(Arc::new(Self {
            state: state.clone(),
            link,
            pushed: Mutex::new(HashMap::new()),
            heartbeat_now: tokio::sync::Notify::new(),
            asked_interval_ms: std::sync::atomic::AtomicU64::new(0),
        })))
    }

    /// The NATS connection, when the transport is NATS (the worker API is served on it too).
    pub fn nats(&self) -> Option<&async_nats::Client> {
        match &self.link {
            Link::Nats(n) => Some(n.client()),
            Link::Http(_) => None,
        }
    }

    /// Which coordinator answered, for logs.
    fn describe(&self, url: String) -> String {
        match self.link {
            Link::Http(_) => url,
            Link::Nats(_) => "nats".to_owned(),
        }
    }

    /// The interval between heartbeats: the one the coordinator asked for in its last answer
    /// (it grows with the size of the cluster, docs/coordinator.md "Heartbeat rate"), never
    /// shorter than this worker's own `heartbeat_interval`.
    pub fn heartbeat_interval(&self) -> Duration {
        let asked = self
            .asked_interval_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        self.state
            .config
            .heartbeat_interval
            .max(Duration::from_millis(asked))
    }

    /// Notes the heartbeat interval an answer asked for.
    fn ask_interval(&self, interval_ms: Option<u64>) {
        if let Some(ms) = interval_ms.filter(|ms| *ms > 0) {
            self.asked_interval_ms
                .store(ms, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Records what an answer tells every worker: the coordinators (discovery) and the lease
    /// (renewed from `sent`, when the request left).
    fn absorb(&self, coordinators: &[String], lease_ms: Option<u64>, sent: Instant) {
        if let Link::Http(h) = &self.link {
            let added = h.learn(coordinators);
            if added > 0 {
                tracing::info!(urls = ?h.urls(), "discovered {added} more coordinator(s)");
            }
        }
        if let Some(ms) = lease_ms {
            // A lease that ran out is a fence, even if the watch has not noticed yet: only a
            // heartbeat answer (with the stale copies) lifts it.
            if self.state.lease.expired_at(Instant::now()) {
                fence::fence(&self.state);
            }
            self.state.lease.renew(sent, Duration::from_millis(ms));
        }
    }

    /// Sends the next calls to `url` first (the coordinator that granted the last lease over
    /// the session: the leader). HTTP only.
    fn prefer(&self, url: &str) {
        if let Link::Http(h) = &self.link {
            h.prefer(url);
        }
    }

    /// The coordinator URLs this client tries (configured, then discovered).
    pub fn coordinator_urls(&self) -> Vec<String> {
        match &self.link {
            Link::Http(h) => h.urls(),
            Link::Nats(_) => Vec::new(),
        }
    }

    /// Registers this worker; returns who accepted.
    pub async fn register(&self) -> Result<String, CallError> {
        let body = reports::registration(&self.state);
        let sent = Instant::now();
        match &self.link {
            Link::Http(h) => {
                let (url, resp) = h
                    .send(http::Call {
                        method: Method::POST,
                        path: "/api/v1/cluster/workers/register".into(),
                        body: Some(&body),
                        timeout: None,
                    })
                    .await?;
                if let Ok(answer) = resp.json::<RegisterWorkerResponse>().await {
                    self.absorb(&answer.coordinators, answer.lease_ms, sent);
                    self.ask_interval(answer.heartbeat_interval_ms);
                }
                Ok(self.describe(url))
            }
            Link::Nats(n) => n.register(&body).await.map(|()| "nats".to_owned()),
        }
    }

    /// One heartbeat (`draining` during a graceful self-drain) and the coordinator's answer.
    pub async fn heartbeat(&self, draining: bool) -> Result<HeartbeatResponse, CallError> {
        let body = reports::heartbeat(&self.state, draining);
        let sent = Instant::now();
        let answer: HeartbeatResponse = match &self.link {
            Link::Http(h) => {
                let id = &self.state.config.worker_id;
                let (_, resp) = h
                    .send(http::Call {
                        method: Method::POST,
                        path: format!("/api/v1/cluster/workers/{id}/heartbeat"),
                        body: Some(&body),
                        timeout: None,
                    })
                    .await?;
                resp.json().await.unwrap_or_default()
            }
            // A draining heartbeat would start a drain the NATS protocol cannot follow.
            Link::Nats(_) if draining => return Err(CallError::Unsupported),
            Link::Nats(n) => {
                let answer = n.heartbeat(&body).await?;
                serde_json::from_value(answer).unwrap_or_default()
            }
        };
        self.absorb(&answer.coordinators, answer.lease_ms, sent);
        self.ask_interval(answer.heartbeat_interval_ms);
        Ok(answer)
    }

    /// Pushes one pipeline checkpoint.
    pub async fn push_checkpoint(&self, body: &CheckpointPush) -> Result<(), CallError> {
        match &self.link {
            Link::Http(h) => {
                let id = &self.state.config.worker_id;
                h.send(http::Call {
                    method: Method::POST,
                    path: format!("/api/v1/cluster/workers/{id}/checkpoints"),
                    body: Some(body),
                    timeout: None,
                })
                .await
                .map(|_| ())
            }
            Link::Nats(_) => Err(CallError::Unsupported),
        }
    }

    /// Deregisters this worker (a short timeout: it runs at shutdown); returns who accepted.
    pub async fn deregister(&self) -> Result<String, CallError> {
        let cfg = &self.state.config;
        match &self.link {
            Link::Http(h) => {
                let call = h.send::<()>(http::Call {
                    method: Method::DELETE,
                    path: format!("/api/v1/cluster/workers/{}", cfg.worker_id),
                    body: None,
                    timeout: Some(DEREGISTER_TIMEOUT),
                });
                match tokio::time::timeout(DEREGISTER_TIMEOUT * 2, call).await {
                    Ok(answer) => answer.map(|(url, _)| url),
                    Err(_) => Err(CallError::Unavailable("timed out".into())),
                }
            }
            Link::Nats(_) => Err(CallError::Unsupported),
        }
    }
}
