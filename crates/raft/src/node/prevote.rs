//! Pre-vote: the only way a follower starts an election (issue 24 item 2; docs/raft.md,
//! "Elections: pre-vote").
//!
//! openraft 0.9 has no pre-vote, and its own election timer would make a node that was cut off
//! raise its term again and again; when it comes back, that term deposes a healthy leader. So its
//! timer is off (`enable_elect: false`) and this module's elector decides instead:
//!
//! 1. Every voter records when it last heard from a leader ([`LeaderContact`]: an AppendEntries
//!    of the leader it follows, or a vote it granted).
//! 2. A voter that has heard nothing for a randomized silence `T` in
//!    `[lease + heartbeat, lease + heartbeat + (election_timeout_max - election_timeout_min))`
//!    (`lease` = `election_timeout_max`) asks every other voter `POST /raft/pre-vote`: "have you
//!    heard from a leader within the lease, and is my log at least as up to date as yours?".
//!    Nothing is persisted and no term changes.
//! 3. With a majority of yes (its own included) it calls `trigger().elect()`; the real vote
//!    follows, and succeeds because the voters that said yes are out of their lease too. A voter
//!    that said yes holds its own pre-vote back for two heartbeats, so that two survivors do not
//!    split the vote.
//!
//! A node cut off from the others never gets a majority, so its term stays where it was and it
//! rejoins as a follower. A peer that does not know the route (an older version during a rolling
//! upgrade, 404) counts as a yes: the older node elects with its own timer anyway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::ServerState;
use serde::{Deserialize, Serialize};

use super::{Inner, RaftNode};
use crate::types::NodeId;

/// How often the elector looks at the silence.
const TICK: Duration = Duration::from_millis(10);

/// `POST /raft/pre-vote` (peer RPC): may the sender start an election?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteRequest {
    /// The asking node.
    pub from: NodeId,
    /// Its current term (information; no term changes hands).
    pub term: u64,
    /// Its last log id as `(term, index)`, `None` for an empty log.
    pub last_log: Option<(u64, u64)>,
}

/// The answer to a [`PreVoteRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteResponse {
    /// Whether the receiver would vote for the sender now.
    pub granted: bool,
    /// Why not, or `"granted"`.
    pub reason: String,
}

/// When this node last heard from a leader (milliseconds since the node started).
#[derive(Debug)]
pub(crate) struct LeaderContact {
    start: Instant,
    last_ms: AtomicU64,
    /// Until when this node lets a candidate it said yes to campaign before it asks itself.
    yield_until_ms: AtomicU64,
    /// The claim (last log id, node id) of the last candidate it said yes to.
    yielded_to: std::sync::Mutex<Option<Claim>>,
}

/// What decides between two voters that won their pre-votes at the same moment: the longer
/// log, then the lower id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    last_log: Option<(u64, u64)>,
    id: NodeId,
}

impl Claim {
    /// Whether `self` should campaign before `other`.
    fn beats(&self, other: &Claim) -> bool {
        (self.last_log, std::cmp::Reverse(self.id)) > (other.last_log, std::cmp::Reverse(other.id))
    }
}

impl Default for LeaderContact {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            yield_until_ms: AtomicU64::new(0),
            yielded_to: std::sync::Mutex::new(None),
        }
    }
}

impl LeaderContact {
    /// Records contact now.
    pub(crate) fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Holds this node's own pre-vote back for `pause`: it said yes to `to`.
    pub(crate) fn yield_for(&self, pause: Duration, to: Claim) {
        let until = self.start.elapsed().as_millis() as u64 + pause.as_millis() as u64;
        self.yield_until_ms.fetch_max(until, Ordering::Relaxed);
        *self.yielded_to.lock().unwrap_or_else(|p| p.into_inner()) = Some(to);
    }

    /// The candidate this node currently yields to, if any.
    fn yielding_to(&self) -> Option<Claim> {
        if !self.yielding() {
            return None;
        }
        *self.yielded_to.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node holds its own pre-vote back.
    pub(crate) fn yielding(&self) -> bool {
        (self.start.elapsed().as_millis() as u64) < self.yield_until_ms.load(Ordering::Relaxed)
    }

    /// Time since the last contact.
    pub(crate) fn silence(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The elector's timings, derived from the Raft configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreVoteTimings {
    /// A voter that heard from a leader within this refuses a pre-vote (openraft refuses a
    /// vote within the same lease: `election_timeout_max`).
    pub lease: Duration,
    /// Shortest silence before asking.
    pub min_silence: Duration,
    /// Width of the random range above `min_silence`.
    pub spread: Duration,
    /// Pause after a refused round before the next one (two heartbeats).
    pub retry: Duration,
}

impl PreVoteTimings {
    /// Timings of a node configured with these openraft timings (milliseconds).
    pub fn new(heartbeat_ms: u64, election_min_ms: u64, election_max_ms: u64) -> Self {
        Self {
            lease: Duration::from_millis(election_max_ms),
            min_silence: Duration::from_millis(election_max_ms + heartbeat_ms),
            spread: Duration::from_millis(election_max_ms.saturating_sub(election_min_ms).max(1)),
            retry: Duration::from_millis(heartbeat_ms.saturating_mul(2).max(20)),
        }
    }

    /// A silence in `[min_silence, min_silence + spread)` drawn from `seed`.
    fn silence(&self, seed: &mut u64) -> Duration {
        // xorshift64: enough to keep two followers from asking at the same moment.
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let spread = self.spread.as_millis().max(1) as u64;
        self.min_silence + Duration::from_millis(*seed % spread)
    }
}

impl RaftNode {
    /// The pre-vote timings in force.
    pub fn pre_vote_timings(&self) -> PreVoteTimings {
        let c = &self.inner.config;
        PreVoteTimings::new(
            c.heartbeat_interval_ms,
            c.election_timeout_min_ms,
            c.election_timeout_max_ms,
        )
    }

    /// Notes an AppendEntries that arrived carrying `vote` (the sender's): it counts as
    /// contact with the leader when it is the committed leader vote this node follows.
    pub(crate) fn note_append(&self, vote: &crate::types::Vote) {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        if vote.is_committed() && *vote >= m.vote {
            self.inner.contact.touch();
        }
    }

    /// Notes contact with a leader (an accepted append, a granted vote).
    pub(crate) fn note_contact(&self) {
        self.inner.contact.touch();
    }

    /// This node's last log id as `(term, index)`.
    fn last_log(&self) -> Option<(u64, u64)> {
        self.inner
            .raft
            .data_metrics()
            .borrow()
            .last_log
            .map(|id| (id.leader_id.term, id.index))
    }

    /// Receiver side of `POST /raft/pre-vote`.
    pub fn answer_pre_vote(&self, req: &PreVoteRequest) -> PreVoteResponse {
        let lease = self.pre_vote_timings().lease;
        let refuse = |reason: String| PreVoteResponse {
            granted: false,
            reason,
        };
        let (state, quorum_ack) = {
            let m = self.inner.raft.metrics();
            let m = m.borrow();
            (m.state, m.millis_since_quorum_ack)
        };
        if state == ServerState::Leader {
            if quorum_ack.is_some_and(|ms| ms < lease.as_millis() as u64) {
                return refuse(format!(
                    "node {} leads with a quorum heard {}ms ago",
                    self.inner.id,
                    quorum_ack.unwrap_or(0)
                ));
            }
        } else {
            // A tick of margin: openraft starts its lease when it has processed an append, a
            // little after this node noted its arrival.
            let silence = self.inner.contact.silence();
            if silence < lease + TICK {
                return refuse(format!(
                    "node {} heard from a leader {}ms ago (lease {}ms)",
                    self.inner.id,
                    silence.as_millis(),
                    lease.as_millis()
                ));
            }
        }
        let mine = self.last_log();
        if req.last_log < mine {
            return refuse(format!(
                "node {}'s log {mine:?} is ahead of node {}'s {:?}",
                self.inner.id, req.from, req.last_log
            ));
        }
        // Two survivors that both said yes to each other would split the vote: let the asker
        // campaign first (it does within a round trip; if it fails, this node asks after the
        // pause).
        self.inner.contact.yield_for(
            self.pre_vote_timings().retry,
            Claim {
                last_log: req.last_log,
                id: req.from,
            },
        );
        PreVoteResponse {
            granted: true,
            reason: "granted".into(),
        }
    }

    /// Asks `url` for a pre-vote; `None` when it did not answer.
    async fn ask_pre_vote(
        &self,
        url: &str,
        req: &PreVoteRequest,
        timeout: Duration,
    ) -> Option<bool> {
        let builder = self
            .inner
            .admin_http
            .post(format!("{}/raft/pre-vote", url.trim_end_matches('/')))
            .json(req)
            .timeout(timeout);
        let answer = self
            .inner
            .credentials
            .sign_peer_request(builder)
            .send()
            .await
            .ok()?;
        if answer.status() == reqwest::StatusCode::NOT_FOUND {
            // An older version without pre-vote: it elects with its own timer; do not let it
            // block this node's election either.
            return Some(true);
        }
        if !answer.status().is_success() {
            return None;
        }
        let answer: PreVoteResponse = answer.json().await.ok()?;
        if !answer.granted {
            tracing::debug!(
                node_id = self.inner.id,
                "pre-vote refused: {}",
                answer.reason
            );
        }
        Some(answer.granted)
    }

    /// One pre-vote round; true when a majority of the voters said yes.
    async fn pre_vote_round(&self, voters: &[(NodeId, String)], timeout: Duration) -> bool {
        let req = PreVoteRequest {
            from: self.inner.id,
            term: self.current_term(),
            last_log: self.last_log(),
        };
        let mut asks = tokio::task::JoinSet::new();
        for (_, url) in voters.iter().filter(|(id, _)| *id != self.inner.id) {
            let (node, url, req) = (self.clone(), url.clone(), req.clone());
            asks.spawn(async move { node.ask_pre_vote(&url, &req, timeout).await });
        }
        let mut yes = 1;
        while let Some(answer) = asks.join_next().await {
            if matches!(answer, Ok(Some(true))) {
                yes += 1;
            }
        }
        yes * 2 > voters.len()
    }
}

/// Starts the elector of `node` on the caller's runtime; it stops with the node.
pub(crate) fn spawn_elector(node: &RaftNode) {
    let weak: Weak<Inner> = Arc::downgrade(&node.inner);
    let timings = node.pre_vote_timings();
    let mut seed = (node.inner.id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64))
        | 1;
    let stopped = node.inner.raft.metrics();
    tokio::spawn(async move {
        let mut wait = timings.silence(&mut seed);
        let mut retry_at = Instant::now();
        let mut reported_gap = false;
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            // Stops with the node: its handle dropped, or openraft shut down.
            if stopped.has_changed().is_err() {
                return;
            }
            let Some(inner) = weak.upgrade() else { return };
            let node = RaftNode { inner };
            let (state, voters, running) = {
                let m = node.inner.raft.metrics();
                let m = m.borrow();
                let voters: Vec<(NodeId, String)> = m
                    .membership_config
                    .membership()
                    .voter_ids()
                    .map(|id| {
                        let url = m
                            .membership_config
                            .membership()
                            .get_node(&id)
                            .map(|n| n.addr.clone())
                            .unwrap_or_default();
                        (id, url)
                    })
                    .collect();
                (m.state, voters, m.running_state.is_ok())
            };
            if !running {
                return;
            }
            if state == ServerState::Leader || !voters.iter().any(|(id, _)| *id == node.inner.id) {
                // A leader (or a learner) does not campaign; once it steps down it waits a
                // whole silence first.
                node.inner.contact.touch();
                continue;
            }
            // Diagnostic (debug level): a leader silent for three heartbeats, once per gap.
            let silence = node.inner.contact.silence();
            if silence > timings.retry * 3 / 2 && !reported_gap {
                reported_gap = true;
                tracing::debug!(silence_ms = silence.as_millis() as u64, "leader gap");
            } else if silence < timings.retry / 2 {
                reported_gap = false;
            }
            if node.inner.contact.silence() < wait
                || Instant::now() < retry_at
                || node.inner.contact.yielding()
            {
                continue;
            }
            if node.pre_vote_round(&voters, timings.lease).await {
                // Said yes to another voter meanwhile (both reached their silence together):
                // only the better claim campaigns, or the two would split the vote.
                let mine = Claim {
                    last_log: node.last_log(),
                    id: node.inner.id,
                };
                if let Some(other) = node.inner.contact.yielding_to() {
                    if other.id != mine.id && other.beats(&mine) {
                        retry_at = Instant::now() + timings.retry;
                        continue;
                    }
                }
                tracing::info!(
                    node_id = node.inner.id,
                    silence_ms = node.inner.contact.silence().as_millis() as u64,
                    "pre-vote won: campaigning"
                );
                if let Err(e) = node.inner.raft.trigger().elect().await {
                    tracing::warn!(node_id = node.inner.id, "cannot campaign: {e}");
                }
                // The next attempt (if this election fails) after another full silence; a
                // vote granted or an append from the new leader restarts it anyway.
                node.inner.contact.touch();
                wait = timings.silence(&mut seed);
            } else {
                // Refused (a peer still hears from a leader or is ahead) or unanswered: asking
                // costs nothing persistent, so ask again soon.
                retry_at = Instant::now() + timings.retry;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_silence_starts_after_the_lease_and_a_heartbeat() {
        let t = PreVoteTimings::new(50, 150, 250);
        assert_eq!(t.lease, Duration::from_millis(250));
        let mut seed = 7;
        for _ in 0..1000 {
            let s = t.silence(&mut seed);
            assert!(
                s >= Duration::from_millis(300) && s < Duration::from_millis(400),
                "{s:?}"
            );
        }
    }

    #[test]
    fn of_two_simultaneous_candidates_exactly_one_goes_first() {
        let a = Claim {
            last_log: Some((3, 10)),
            id: 1,
        };
        let b = Claim {
            last_log: Some((3, 10)),
            id: 2,
        };
        let longer = Claim {
            last_log: Some((3, 11)),
            id: 3,
        };
        assert!(a.beats(&b) && !b.beats(&a), "equal logs: the lower id");
        assert!(
            longer.beats(&a) && !a.beats(&longer),
            "the longer log first"
        );
        let later_term = Claim {
            last_log: Some((4, 1)),
            id: 3,
        };
        assert!(later_term.beats(&longer), "a later term beats a longer log");
    }

    #[test]
    fn contact_resets_the_silence() {
        let c = LeaderContact::default();
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.silence() >= Duration::from_millis(20));
        c.touch();
        assert!(c.silence() < Duration::from_millis(20));
    }
}
