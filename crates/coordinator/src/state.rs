//! The shared handle every handler and background task holds.
//!
//! `AppState` is cheap to clone (one `Arc`). It owns the Raft node, the HTTP client used for
//! worker calls and forwarding, the leader's in-memory liveness map and the metrics.

use axum::http::HeaderMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use varpulis_api::IDEMPOTENCY_KEY_HEADER;
use varpulis_cluster::{ClusterState, Command, Outcome};
use varpulis_raft::RaftNode;

use crate::config::CoordinatorConfig;
use crate::error::ApiError;
use crate::health::Liveness;
use crate::metrics::Metrics;

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// Everything shared by handlers and leader tasks.
pub struct Shared {
    /// Effective configuration.
    pub config: CoordinatorConfig,
    /// This node's Raft id.
    pub node_id: u64,
    /// URL this node announces.
    pub advertise: String,
    /// The Raft node (replicated state, writes).
    pub raft: RaftNode,
    /// Client for follower → leader forwarding (pooled, with the configured timeout).
    pub http: reqwest::Client,
    /// Client for every call to a worker (HTTP or NATS).
    pub workers: crate::transport::worker_client::WorkerClient,
    /// Leader-only: last heartbeat of each worker.
    pub liveness: Liveness,
    /// Leader-only: whether a rebalance is wanted ([`crate::rebalance`]).
    pub rebalance: crate::rebalance::RebalanceState,
    /// Process counters.
    pub metrics: Metrics,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Wakes the reconciler early (after a create, a failed deploy, a status change).
    pub reconcile: tokio::sync::Notify,
    /// This node's cluster event log (`GET /api/v1/cluster/events`).
    pub events: crate::events::EventLog,
    /// NATS link when the cluster transport is NATS (`crate::nats`).
    pub nats: Option<crate::transport::nats::link::NatsLink>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds secrets: only say who this node is.
        f.debug_struct("Shared")
            .field("node_id", &self.node_id)
            .field("advertise", &self.advertise)
            .finish_non_exhaustive()
    }
}

/// Cloneable handle to [`Shared`].
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Milliseconds since the Unix epoch on this node's clock (leader decisions only).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The `Idempotency-Key` header, if present and sane.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be ASCII".into()))?;
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1..={MAX_IDEMPOTENCY_KEY_LEN} characters"
        )));
    }
    Ok(Some(key.to_string()))
}

impl Shared {
    /// Proposes `command` (wrapped with the idempotency key, if any) and returns its outcome.
    pub async fn write_keyed(
        &self,
        command: Command,
        key: Option<String>,
    ) -> Result<Outcome, ApiError> {
        let command = match key {
            Some(key) => command.with_key(key),
            None => command,
        };
        let start = Instant::now();
        let response = self.raft.write(command).await?;
        self.metrics.observe_write(start.elapsed());
        Ok(response.into_result()?)
    }

    /// Proposes `command` and returns its outcome.
    pub async fn write(&self, command: Command) -> Result<Outcome, ApiError> {
        self.write_keyed(command, None).await
    }

    /// On a follower, waits (at most about 2 s) until the local state has applied everything the
    /// leader had applied when asked. Used when a local read misses something a client may just
    /// have written through the leader (read-your-writes for inject). Returns whether it caught up.
    pub async fn catch_up_with_leader(&self) -> bool {
        const PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
        if self.raft.is_leader() {
            return false;
        }
        let Some((_, url)) = self.raft.leader() else {
            return false;
        };
        let asked = self
            .http
            .get(format!("{}/raft/metrics", url.trim_end_matches('/')))
            .timeout(PATIENCE)
            .send()
            .await;
        let Ok(answer) = asked else { return false };
        let Ok(view) = answer.json::<varpulis_api::raft::RaftMetricsView>().await else {
            return false;
        };
        let Some(target) = view.last_applied else {
            return false;
        };
        let mut applied = self.raft.applied_index_watch();
        let wait = async {
            loop {
                if applied.borrow_and_update().is_some_and(|i| i >= target) {
                    return true;
                }
                if applied.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait).await.unwrap_or(false)
    }

    /// Runs `f` on the locally applied state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.raft.read(f)
    }
}
