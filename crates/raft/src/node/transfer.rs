//! Leadership transfer on openraft 0.9's public API (issue 24 item 1; docs/raft.md,
//! "Leadership transfer").
//!
//! openraft 0.9 has no transfer, so the leader does it in four steps:
//!
//! 1. **Pause**: it closes the write gate ([`WriteGate`]): new [`RaftNode::write`] calls wait
//!    at the gate, and the transfer waits until every write already past it has been answered
//!    (committed and applied, or failed). From then on the leader's log does not grow.
//! 2. **Catch up**: it waits until the chosen voter (the most up-to-date one, or `--to N`) has
//!    replicated the leader's whole log (openraft's replication metrics; the leader keeps
//!    sending).
//! 3. **Elect**: it asks that voter (`POST /raft/elect`, a peer RPC) to campaign at once
//!    (`trigger().elect()`), with a higher term and a log at least as long as anyone's. The
//!    other followers refuse the vote (they heard from the leader within their lease), but the
//!    outgoing leader grants it (its own lease, counted from its election, has expired once it
//!    has led for `election_timeout_max`; a younger leader waits that long first): the voter
//!    wins with two votes of three, and the outgoing leader becomes a follower.
//! 4. **Resume**: the gate opens once another node leads (or the transfer failed); writes that
//!    waited answer `not_leader` with the new leader's URL (the coordinator's proxy retries
//!    them there), having never been proposed.
//!
//! No acknowledged write is lost: every acknowledged write is committed, hence in the new
//! leader's log (it holds the whole log of the old one, and Raft's vote check would refuse a
//! shorter log anyway). A transfer that fails (the voter does not answer, is not elected within
//! [`ELECTION_WAIT`]) reopens the gate and reports the error; the leader may then have stepped
//! down anyway (it saw a higher term), which is an ordinary election.

use std::time::{Duration, Instant};

use openraft::ServerState;
use varpulis_api::raft::{ElectRequest, TransferLeaderResponse};

use super::RaftNode;
use crate::error::{Error, WriteError};
use crate::types::NodeId;

/// Longest a transfer waits for the writes already proposed to be answered.
const DRAIN_WAIT: Duration = Duration::from_secs(3);
/// Longest it waits for the chosen voter to replicate the leader's whole log.
const CATCH_UP_WAIT: Duration = Duration::from_secs(3);
/// Longest it waits for another node to lead once the voter was asked to campaign.
const ELECTION_WAIT: Duration = Duration::from_secs(2);
/// Deadline of the `POST /raft/elect` call.
const ELECT_RPC_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest the voter asked to campaign waits for its own metrics to show the log the outgoing
/// leader saw it acknowledge. openraft answers an AppendEntries (the acknowledgement the leader
/// counts) before it publishes the new last index in the node's metrics, so the request can
/// arrive in between: seen once in 40 SIGTERM rounds of `benches/failover`, where the hand-over
/// was refused ("holds the log up to 1573, not 1574") and the leader stopped without one.
const LOG_SETTLE_WAIT: Duration = Duration::from_millis(250);

/// The gate writes pass on a leader: open, except while a transfer hands leadership over.
///
/// Writes hold a read guard from before proposing until they are answered; a transfer takes
/// the write guard, which waits for those writes and holds new ones back (tokio's `RwLock`
/// queues readers behind a waiting writer, so a steady stream of writes cannot starve it).
#[derive(Debug, Default)]
pub(crate) struct WriteGate(tokio::sync::RwLock<()>);

impl WriteGate {
    /// Waits for the gate to be open and holds it open until the guard drops.
    pub(crate) async fn pass(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.0.read().await
    }

    async fn close(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.0.write().await
    }
}

/// When this node last became leader, and in which term (watched from openraft's metrics).
#[derive(Debug, Default)]
pub(crate) struct LeaderSince(std::sync::Mutex<Option<(u64, Instant)>>);

impl LeaderSince {
    fn get(&self) -> Option<(u64, Instant)> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, value: Option<(u64, Instant)>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

/// Follows openraft's server metrics (they change with the vote and state, not with each
/// write) and records when this node becomes leader (until the node stops). Runs on the
/// caller's runtime, not the consensus one.
pub(crate) fn watch_leadership(node: RaftNode) {
    let mut rx = node.inner.raft.server_metrics();
    tokio::spawn(async move {
        loop {
            let leading = {
                let m = rx.borrow_and_update();
                (m.state == ServerState::Leader).then_some(m.vote.leader_id.term)
            };
            match (leading, node.inner.leader_since.get()) {
                (Some(term), Some((since, _))) if since == term => {}
                (Some(term), _) => node.inner.leader_since.set(Some((term, Instant::now()))),
                (None, Some(_)) => node.inner.leader_since.set(None),
                (None, None) => {}
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
}

impl RaftNode {
    /// Hands leadership to voter `to` (or to the most up-to-date voter) and returns once another
    /// node leads. Only the leader can; elsewhere: `not_leader` with the leader's URL. A
    /// single-voter group, or `to` naming this node, answers at once with nothing changed.
    pub async fn transfer_leader(
        &self,
        to: Option<NodeId>,
    ) -> Result<TransferLeaderResponse, Error> {
        let started = Instant::now();
        let me = self.inner.id;
        if !self.is_leader() {
            return Err(Error::Write(self.not_leader()));
        }
        let unchanged = || TransferLeaderResponse {
            previous_leader_id: me,
            leader_id: me,
            leader_url: self.node_url(me),
            elapsed_ms: 0,
        };
        let voters = self.voters();
        let target = match to {
            Some(id) if id == me => return Ok(unchanged()),
            Some(id) if !voters.contains(&id) => {
                return Err(Error::Membership(format!(
                    "node {id} is not a voter of this group (voters: {voters:?})"
                )))
            }
            Some(id) => id,
            None => match self.best_successor() {
                Some(id) => id,
                None if voters.len() <= 1 => return Ok(unchanged()),
                None => {
                    return Err(Error::Membership(
                        "no other voter is reachable: leadership stays here".into(),
                    ))
                }
            },
        };
        let url = self
            .node_url(target)
            .ok_or_else(|| Error::Membership(format!("node {target} has no known address")))?;
        // A leader grants votes only once its own lease (counted from its election) expired.
        let lease = Duration::from_millis(self.inner.config.election_timeout_max_ms + 20);
        if let Some((_, since)) = self.inner.leader_since.get() {
            let young = lease.saturating_sub(since.elapsed());
            if !young.is_zero() {
                tokio::time::sleep(young).await;
            }
        }
        let closed = tokio::time::timeout(DRAIN_WAIT, self.inner.gate.close()).await;
        let Ok(_closed) = closed else {
            return Err(Error::Raft(format!(
                "leadership transfer: writes in progress did not finish within {DRAIN_WAIT:?}"
            )));
        };
        tracing::info!(node_id = me, target, "leadership transfer: writes paused");
        let last = self.wait_replicated(target).await?;
        self.ask_to_campaign(target, &url, last).await?;
        let leader = self.wait_other_leader().await?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            node_id = me,
            new_leader = leader,
            elapsed_ms,
            "leadership transferred"
        );
        Ok(TransferLeaderResponse {
            previous_leader_id: me,
            leader_id: leader,
            leader_url: self.node_url(leader),
            elapsed_ms,
        })
    }

    /// The voter (other than this node, not known to be down) with the highest replicated
    /// log index.
    fn best_successor(&self) -> Option<NodeId> {
        let m = self.inner.raft.metrics().borrow().clone();
        let me = self.inner.id;
        let replication = m.replication.unwrap_or_default();
        m.membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != me && !self.inner.peers.is_down(*id))
            .max_by_key(|id| {
                replication
                    .get(id)
                    .cloned()
                    .flatten()
                    .map(|l| l.index)
                    .unwrap_or(0)
            })
    }

    /// Waits until `target` replicated this leader's whole log; returns its last index.
    async fn wait_replicated(&self, target: NodeId) -> Result<u64, Error> {
        let mut rx = self.inner.raft.metrics();
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            let (last, matched, leading) = {
                let m = rx.borrow_and_update();
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&target).cloned())
                    .flatten()
                    .map(|l| l.index);
                (
                    m.last_log_index.unwrap_or(0),
                    matched,
                    m.state == ServerState::Leader,
                )
            };
            if !leading {
                return Err(Error::Write(self.not_leader()));
            }
            if matched.is_some_and(|i| i >= last) {
                return Ok(last);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::Write(WriteError::Fatal("raft stopped".into()))),
                Err(_) => {
                    return Err(Error::Raft(format!(
                        "leadership transfer: node {target} did not replicate the log up to \
                         {last} within {CATCH_UP_WAIT:?} (replicated: {matched:?})"
                    )))
                }
            }
        }
    }

    /// `POST {url}/raft/elect`: asks `target` to campaign now.
    async fn ask_to_campaign(&self, target: NodeId, url: &str, last: u64) -> Result<(), Error> {
        let request = ElectRequest {
            from: self.inner.id,
            term: self.current_term(),
            last_log_index: last,
        };
        let builder = self
            .inner
            .admin_http
            .post(format!("{}/raft/elect", url.trim_end_matches('/')))
            .json(&request)
            .header(crate::wire::FORMAT_HEADER, crate::wire::WIRE_JSON_STR)
            .timeout(ELECT_RPC_TIMEOUT);
        let answer = self
            .inner
            .credentials
            .sign_peer_request(builder)
            .send()
            .await
            .map_err(|e| Error::Raft(format!("leadership transfer: node {target}: {e}")))?;
        if answer.status().is_success() {
            return Ok(());
        }
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        Err(Error::Raft(format!(
            "leadership transfer: node {target} refused to campaign: HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        )))
    }

    /// Waits until another node leads (as this node sees it); returns its id.
    async fn wait_other_leader(&self) -> Result<NodeId, Error> {
        let mut rx = self.inner.raft.metrics();
        let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
        loop {
            let leader = {
                let m = rx.borrow_and_update();
                m.current_leader.filter(|l| *l != self.inner.id)
            };
            if let Some(leader) = leader {
                return Ok(leader);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::Write(WriteError::Fatal("raft stopped".into()))),
                Err(_) => {
                    return Err(Error::Raft(format!(
                        "leadership transfer: no new leader within {ELECTION_WAIT:?}"
                    )))
                }
            }
        }
    }

    /// Receiver side of a transfer (`POST /raft/elect`): campaigns at once if this node is a
    /// voter whose log reaches the outgoing leader's last index.
    pub async fn campaign_for_transfer(&self, req: &ElectRequest) -> Result<(), Error> {
        let me = self.inner.id;
        if !self.voters().contains(&me) {
            return Err(Error::Membership(format!(
                "node {me} is not a voter: it cannot take leadership over"
            )));
        }
        self.guard_view()
            .check_term(req.term)
            .map_err(|r| Error::Config(r.to_string()))?;
        let mut metrics = self.inner.raft.metrics();
        let deadline = tokio::time::Instant::now() + LOG_SETTLE_WAIT;
        loop {
            let last = metrics.borrow_and_update().last_log_index.unwrap_or(0);
            if last >= req.last_log_index {
                break;
            }
            // Not there yet: the acknowledged entries show up in the metrics shortly, or the
            // log really is shorter and the campaign would fail.
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::Write(WriteError::Fatal("raft stopped".into()))),
                Err(_) => {
                    return Err(Error::Membership(format!(
                        "node {me} holds the log up to {last}, not {}: it would lose the election",
                        req.last_log_index
                    )))
                }
            }
        }
        tracing::info!(
            node_id = me,
            from = req.from,
            "campaigning: leadership handed over"
        );
        self.inner
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Error::Raft(e.to_string()))
    }

    /// `not_leader` with the current leader, or `no_leader`.
    fn not_leader(&self) -> WriteError {
        match self.leader() {
            Some((id, url)) if id != self.inner.id => WriteError::ForwardToLeader {
                leader_id: Some(id),
                leader_url: Some(url),
            },
            _ => WriteError::NoLeader,
        }
    }

    /// Hands leadership over before this node stops (SIGTERM): does nothing unless this node
    /// leads a group of several voters; failures are logged, never fatal (the node stops
    /// anyway and the others elect a leader after their timeout).
    pub async fn hand_over_before_stop(&self) {
        if !self.is_leader() || self.voters().len() <= 1 {
            return;
        }
        let bound = DRAIN_WAIT + CATCH_UP_WAIT + ELECTION_WAIT;
        match tokio::time::timeout(bound, self.transfer_leader(None)).await {
            Ok(Ok(done)) => tracing::info!(
                node_id = self.inner.id,
                new_leader = done.leader_id,
                elapsed_ms = done.elapsed_ms,
                "leadership handed over before stopping"
            ),
            Ok(Err(err)) => tracing::warn!(
                node_id = self.inner.id,
                "no leadership hand-over before stopping: {err}"
            ),
            Err(_) => tracing::warn!(
                node_id = self.inner.id,
                "no leadership hand-over before stopping: timed out"
            ),
        }
    }
}
