//! An in-memory replicated log standing in for the Raft group: every node keeps its own
//! `ClusterState`; a proposal on the leader is appended to the log and applied on every
//! replica in order (so replicas stay byte-identical, which the tests check), and any other
//! node refuses it the way `RaftNode` does (`ForwardToLeader`). Leadership moves when a test
//! says so, bumping the term.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;
use varpulis_api::events::ClusterEvent;
use varpulis_cluster::{ClusterState, Command, CommandResponse};
use varpulis_coordinator::leader::store::{BoxFuture, LeadershipChanges, Replica};
use varpulis_raft::{AppliedState, SharedState, WriteError};

/// The whole simulated group.
pub struct SimRaft {
    replicas: Vec<SharedState>,
    leader: Mutex<usize>,
    term: Mutex<u64>,
    log: Mutex<Vec<Command>>,
    /// Events of every applied entry, as each replica produced them.
    events: Mutex<Vec<Vec<ClusterEvent>>>,
    changes: watch::Sender<u64>,
    /// The leader has not heard from a quorum for too long (it may be deposed).
    quorum_lost: AtomicBool,
}

impl SimRaft {
    /// `nodes` replicas, node 0 leading in term 1.
    pub fn new(nodes: usize) -> Arc<SimRaft> {
        Arc::new(SimRaft {
            replicas: (0..nodes)
                .map(|_| Arc::new(RwLock::new(AppliedState::default())))
                .collect(),
            leader: Mutex::new(0),
            term: Mutex::new(1),
            log: Mutex::new(Vec::new()),
            events: Mutex::new(vec![Vec::new(); nodes]),
            changes: watch::channel(1).0,
            quorum_lost: AtomicBool::new(false),
        })
    }

    /// Cuts the leader from its quorum (`true`) or restores it, without a new election yet.
    pub fn lose_quorum(&self, lost: bool) {
        self.quorum_lost.store(lost, Ordering::SeqCst);
    }

    /// The replica of node `id` as a [`Replica`].
    pub fn node(self: &Arc<Self>, id: usize) -> Arc<dyn Replica> {
        Arc::new(SimNode {
            id,
            raft: self.clone(),
        })
    }

    /// Moves leadership to `id` (a new term).
    pub fn elect(&self, id: usize) {
        *self.leader.lock().unwrap() = id;
        let mut term = self.term.lock().unwrap();
        *term += 1;
        self.changes.send_replace(*term);
    }

    /// The current leader.
    pub fn leader(&self) -> usize {
        *self.leader.lock().unwrap()
    }

    /// Entries committed so far.
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Hash of every replica's state (equal when the replicas agree).
    pub fn hashes(&self) -> Vec<String> {
        self.replicas
            .iter()
            .map(|r| r.read().unwrap().state.state_hash())
            .collect()
    }

    /// The events node `id` produced, in log order.
    pub fn events(&self, id: usize) -> Vec<ClusterEvent> {
        self.events.lock().unwrap()[id].clone()
    }

    fn propose(&self, id: usize, command: Command) -> Result<CommandResponse, WriteError> {
        let leader = self.leader();
        if leader != id {
            return Err(WriteError::ForwardToLeader {
                leader_id: Some(leader as u64 + 1),
                leader_url: Some(format!("sim://node-{}", leader + 1)),
            });
        }
        let mut log = self.log.lock().unwrap();
        log.push(command.clone());
        let index = log.len() as u64;
        let mut events = self.events.lock().unwrap();
        let mut response = None;
        for (node, replica) in self.replicas.iter().enumerate() {
            let mut applied = replica.write().unwrap();
            let outcome = std::sync::Arc::make_mut(&mut applied.state).apply(&command);
            applied.last_applied = Some(index);
            events[node].extend(outcome.events);
            if node == id {
                response = Some(outcome.response);
            }
        }
        response.ok_or(WriteError::Fatal("no such node".into()))
    }
}

struct SimNode {
    id: usize,
    raft: Arc<SimRaft>,
}

impl Replica for SimNode {
    fn shared_state(&self) -> SharedState {
        self.raft.replicas[self.id].clone()
    }

    fn propose(&self, command: Command) -> BoxFuture<'_, Result<CommandResponse, WriteError>> {
        Box::pin(async move {
            // A commit is never instantaneous: other tasks get a turn, deterministically.
            tokio::task::yield_now().await;
            self.raft.propose(self.id, command)
        })
    }

    fn is_leader(&self) -> bool {
        self.raft.leader() == self.id
    }

    fn leader(&self) -> Option<(u64, String)> {
        let leader = self.raft.leader();
        Some((leader as u64 + 1, format!("sim://node-{}", leader + 1)))
    }

    fn current_term(&self) -> u64 {
        *self.raft.term.lock().unwrap()
    }

    fn leadership_changes(&self) -> Box<dyn LeadershipChanges> {
        Box::new(Changes(self.raft.changes.subscribe()))
    }

    fn may_grant_leases(&self) -> bool {
        self.is_leader() && !self.raft.quorum_lost.load(Ordering::SeqCst)
    }
}

struct Changes(watch::Receiver<u64>);

impl LeadershipChanges for Changes {
    fn changed(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.0.changed().await.is_ok() })
    }
}

/// A read of node `id`'s state.
pub fn read<R>(replica: &dyn Replica, f: impl FnOnce(&ClusterState) -> R) -> R {
    let shared = replica.shared_state();
    let guard = shared.read().unwrap();
    f(&guard.state)
}
