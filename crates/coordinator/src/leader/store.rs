//! The replicated state as this node sees it: reads from the locally applied state, writes
//! proposed through Raft.
//!
//! Everything above this module (leader tasks, handlers) goes through [`Store`], which works
//! over any [`Replica`]: the node's `varpulis_raft::RaftNode` in production, an in-memory
//! replicated log in the deterministic leader tests. Writes are timed into the write-latency
//! histogram of [`Metrics`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use varpulis_cluster::{ClusterState, Command, CommandResponse, Outcome};
use varpulis_raft::{RaftNode, SharedState, WriteError};

use crate::leader::error::LeaderError;
use crate::metrics::Metrics;

/// A boxed future, as replicas return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A member of the replicated group, as the leader logic needs it.
pub trait Replica: Send + Sync + 'static {
    /// The locally applied state (read it with the lock held briefly).
    fn shared_state(&self) -> SharedState;
    /// Proposes `command`; resolves once it is committed and applied on this node.
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<CommandResponse, WriteError>>;
    /// Whether this node leads now.
    fn is_leader(&self) -> bool;
    /// The current leader's id and base URL, if one is known.
    fn leader(&self) -> Option<(u64, String)>;
    /// The current term.
    fn current_term(&self) -> u64;
    /// A feed that fires whenever leadership may have changed (vote, leader or membership).
    fn leadership_changes(&self) -> Box<dyn LeadershipChanges>;
    /// Base URLs of every member of the group (what workers discover); empty when unknown.
    fn coordinators(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether this leader may grant worker leases now: false once it has gone without a
    /// quorum's acknowledgement for long enough that it may have been deposed
    /// (docs/coordinator.md "Leases and fencing", the deposed-leader bound).
    fn may_grant_leases(&self) -> bool {
        self.is_leader()
    }
}

/// Notifications of leadership changes.
pub trait LeadershipChanges: Send {
    /// Waits for the next change; `false` once the replica has stopped.
    fn changed(&mut self) -> BoxFuture<'_, bool>;
}

impl Replica for RaftNode {
    fn shared_state(&self) -> SharedState {
        RaftNode::shared_state(self)
    }

    fn propose(&self, command: Command) -> BoxFuture<'_, Result<CommandResponse, WriteError>> {
        Box::pin(self.write(command))
    }

    fn is_leader(&self) -> bool {
        RaftNode::is_leader(self)
    }

    fn leader(&self) -> Option<(u64, String)> {
        RaftNode::leader(self)
    }

    fn current_term(&self) -> u64 {
        RaftNode::current_term(self)
    }

    fn leadership_changes(&self) -> Box<dyn LeadershipChanges> {
        // Server metrics change only with the vote, the leader or the membership.
        Box::new(ServerMetrics(self.raft().server_metrics()))
    }

    fn coordinators(&self) -> Vec<String> {
        self.metrics_summary().nodes.into_values().collect()
    }

    fn may_grant_leases(&self) -> bool {
        RaftNode::is_leader(self) && !RaftNode::leader_lost_quorum(self)
    }
}

struct ServerMetrics<T>(tokio::sync::watch::Receiver<T>);

impl<T: Send + Sync> LeadershipChanges for ServerMetrics<T> {
    fn changed(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.0.changed().await.is_ok() })
    }
}

/// Reads and writes of the replicated state (cheap to clone).
#[derive(Clone)]
pub struct Store {
    replica: Arc<dyn Replica>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// A store over `replica`, timing writes into `metrics`.
    pub fn new(replica: Arc<dyn Replica>, metrics: Arc<Metrics>) -> Self {
        Store { replica, metrics }
    }

    /// The replica behind the store.
    pub fn replica(&self) -> &dyn Replica {
        self.replica.as_ref()
    }

    /// The locally applied state as of now, shared: for work proportional to the number of
    /// workers (listing, a new leader's grace), done without holding the state lock. Holding
    /// the lock that long would block `apply`, which runs on the consensus runtime's only
    /// thread, and with it Raft's own heartbeats (a cause of elections under load, docs/raft.md
    /// "Elections under CPU load"); with a snapshot out, `apply` waits for it asynchronously
    /// (or copies the state), so drop it soon.
    pub fn snapshot(&self) -> std::sync::Arc<ClusterState> {
        let shared = self.replica.shared_state();
        let guard = shared.read().unwrap_or_else(|p| p.into_inner());
        std::sync::Arc::clone(&guard.state)
    }

    /// Runs `f` on the locally applied state (keep `f` short: it holds the state lock; see
    /// [`Store::snapshot`]).
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        let shared = self.replica.shared_state();
        let guard = shared.read().unwrap_or_else(|p| p.into_inner());
        f(&guard.state)
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        self.replica.is_leader()
    }

    /// Succeeds on the leader; elsewhere the error says where the leader is (or that there is
    /// none), as a write would.
    pub fn ensure_leader(&self) -> Result<(), LeaderError> {
        if self.replica.is_leader() {
            return Ok(());
        }
        Err(LeaderError::NotCommitted(match self.replica.leader() {
            Some((leader_id, leader_url)) => WriteError::ForwardToLeader {
                leader_id: Some(leader_id),
                leader_url: Some(leader_url),
            },
            None => WriteError::NoLeader,
        }))
    }

    /// Proposes `command` (wrapped with the idempotency key, if any) and returns its outcome;
    /// a command the state machine rejected is [`LeaderError::Rejected`].
    pub async fn write_keyed(
        &self,
        command: Command,
        key: Option<String>,
    ) -> Result<Outcome, LeaderError> {
        let command = match key {
            Some(key) => command.with_key(key),
            None => command,
        };
        let start = Instant::now();
        let response = self.replica.propose(command).await?;
        self.metrics.observe_write(start.elapsed());
        Ok(response.into_result()?)
    }

    /// Proposes `command` and returns its outcome.
    pub async fn write(&self, command: Command) -> Result<Outcome, LeaderError> {
        self.write_keyed(command, None).await
    }
}
