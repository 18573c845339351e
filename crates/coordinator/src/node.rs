//! The node's shared handle: what the HTTP handlers and the node-level tasks hold.
//!
//! `AppState` is cheap to clone (one `Arc`). It owns the configuration, the Raft node, the HTTP
//! client used to forward requests to the leader, the node's event log, the NATS link and the
//! [`LeaderCtx`] (store, worker client, leader memory) that the leader tasks get on their own.

use std::ops::Deref;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use varpulis_cluster::ClusterState;
use varpulis_raft::RaftNode;

use crate::config::CoordinatorConfig;
use crate::events::EventLog;
use crate::leader::context::LeaderCtx;
use crate::metrics::Metrics;
use crate::transport::nats::link::NatsLink;

/// Everything shared by handlers and node-level tasks.
pub struct Shared {
    /// Effective configuration.
    pub config: CoordinatorConfig,
    /// This node's Raft id.
    pub node_id: u64,
    /// URL this node announces.
    pub advertise: String,
    /// The Raft node (metrics, linearizable reads, leader lookup).
    pub raft: RaftNode,
    /// Client for follower → leader forwarding (pooled, with the configured timeout).
    pub http: reqwest::Client,
    /// Batches this follower's forwards to the leader and bounds how many are under way.
    pub forwarder: crate::http::forwarder::Forwarder,
    /// Proxied writes waiting until this node applied them (read-your-writes).
    pub applied: crate::http::applied::AppliedWaiters,
    /// The leader tasks' handle: store, worker client, liveness, settings.
    pub leader: LeaderCtx,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// This node's cluster event log (`GET /api/v1/cluster/events`).
    pub events: Arc<EventLog>,
    /// NATS link when the cluster transport is NATS (`crate::transport::nats`).
    pub nats: Option<NatsLink>,
    /// Worker sessions this node holds (`ws_connections` on `/health`).
    pub sessions: std::sync::atomic::AtomicUsize,
    /// TLS of this node's outbound calls (also used by the join and by later clients).
    pub client_tls: varpulis_tls::ClientTls,
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

impl Shared {
    /// Runs `f` on the locally applied state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.leader.store.read(f)
    }

    /// Process counters.
    pub fn metrics(&self) -> &Metrics {
        &self.leader.metrics
    }
}
