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

pub mod http;
pub mod nats;
pub mod reports;
pub mod session;

use crate::config::Transport;
use crate::error::WorkerError;
use crate::state::AppState;
use reqwest::Method;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use varpulis_api::cluster::{CheckpointPush, HeartbeatResponse};

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
                    &crate::config::ClientTlsFiles::for_worker(false, &cfg.tls_settings()),
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

    /// Registers this worker; returns who accepted.
    pub async fn register(&self) -> Result<String, CallError> {
        let body = reports::registration(&self.state);
        match &self.link {
            Link::Http(h) => h
                .send(http::Call {
                    method: Method::POST,
                    path: "/api/v1/cluster/workers/register".into(),
                    body: Some(&body),
                    timeout: None,
                })
                .await
                .map(|(url, _)| self.describe(url)),
            Link::Nats(n) => n.register(&body).await.map(|()| "nats".to_owned()),
        }
    }

    /// One heartbeat (`draining` during a graceful self-drain) and the coordinator's answer.
    pub async fn heartbeat(&self, draining: bool) -> Result<HeartbeatResponse, CallError> {
        let body = reports::heartbeat(&self.state, draining);
        match &self.link {
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
                Ok(resp.json().await.unwrap_or_default())
            }
            // A draining heartbeat would start a drain the NATS protocol cannot follow.
            Link::Nats(_) if draining => Err(CallError::Unsupported),
            Link::Nats(n) => {
                let answer = n.heartbeat(&body).await?;
                Ok(serde_json::from_value(answer).unwrap_or_default())
            }
        }
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
