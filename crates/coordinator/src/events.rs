//! The cluster event stream: what happened to workers, groups, migrations and leadership.
//!
//! Events come out of the state machine: applying a command returns the typed
//! `varpulis_api::events::ClusterEvent`s it produced (`varpulis_cluster::ClusterState::apply`),
//! so every node — leader or follower — produces the same events with the same ids for the
//! same log. An event's id is its Raft log index, plus a sub-index when one entry yields
//! several events (a batch): `"42"`, `"42.1"`, `"42.2"`. Rejected commands, and repeats of an
//! idempotency key, yield nothing.
//!
//! `leader_changed` is not in the log: each node emits it when its own Raft metrics show a new
//! leader, with the id of the position it was noticed at (`"<last index>.<n>"`, `n >= 1`), so
//! its id is local to the node.
//!
//! A bounded ring ([`RING_CAPACITY`] events) answers `since` resumes. Events older than the
//! ring, or lost because this node installed a snapshot or started after them, are behind the
//! ring's `floor`: a client resuming from before it first gets a `reset` event.

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use varpulis_api::events::{ClusterEvent, EventRecord};
use varpulis_raft::{AppliedEvent, RaftNode};

/// Events kept for `since` resumes.
pub const RING_CAPACITY: usize = 4096;
/// Capacity of the live broadcast (a slower subscriber resumes from the ring).
const LIVE_CAPACITY: usize = 1024;

/// Position of an event: Raft log index and sub-index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EventId {
    /// Raft log index.
    pub index: u64,
    /// Sub-index within the entry (0 for the first event of an entry).
    pub sub: u32,
}

impl EventId {
    /// Parses `"42"` or `"42.3"`.
    pub fn parse(text: &str) -> Option<EventId> {
        let text = text.trim();
        let (index, sub) = match text.split_once('.') {
            Some((i, s)) => (i.parse().ok()?, s.parse().ok()?),
            None => (text.parse().ok()?, 0),
        };
        Some(EventId { index, sub })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sub == 0 {
            write!(f, "{}", self.index)
        } else {
            write!(f, "{}.{}", self.index, self.sub)
        }
    }
}

/// One cluster event with its position in this node's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// Position.
    pub id: EventId,
    /// The event.
    pub event: ClusterEvent,
}

impl LoggedEvent {
    /// The event as it goes on the wire: `{"id", "type", "data"}`.
    pub fn record(&self) -> EventRecord {
        EventRecord {
            id: self.id.to_string(),
            event: self.event.clone(),
        }
    }
}

/// What a subscriber gets: whether it missed events, the backlog, and the live feed.
pub struct Subscription {
    /// The requested position is older than the ring: events were missed.
    pub reset: Option<Value>,
    /// Events after the requested position, oldest first.
    pub backlog: Vec<Arc<LoggedEvent>>,
    /// Every event pushed after the backlog was taken.
    pub live: broadcast::Receiver<Arc<LoggedEvent>>,
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<Arc<LoggedEvent>>,
    /// Events at or before this position may be missing from the ring.
    floor: EventId,
    /// Position of the last event pushed (or the floor).
    last: EventId,
}

/// The node's event log: bounded ring plus live broadcast.
#[derive(Debug)]
pub struct EventLog {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<LoggedEvent>>,
    capacity: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::with_capacity(RING_CAPACITY)
    }
}

impl EventLog {
    /// An empty log keeping `capacity` events.
    pub fn with_capacity(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        EventLog {
            ring: Mutex::new(Ring::default()),
            live,
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything up to `index` (start-up, snapshot installed, lost notifications).
    pub fn reset_to(&self, index: u64) {
        let mut ring = self.lock();
        ring.events.clear();
        let pos = EventId {
            index,
            sub: u32::MAX,
        };
        ring.floor = ring.floor.max(pos);
        ring.last = ring.last.max(pos);
    }

    fn push_locked(&self, ring: &mut Ring, event: LoggedEvent) {
        let event = Arc::new(event);
        ring.last = event.id;
        ring.events.push_back(event.clone());
        while ring.events.len() > self.capacity {
            if let Some(old) = ring.events.pop_front() {
                ring.floor = old.id;
            }
        }
        // No live subscriber is fine.
        let _ = self.live.send(event);
    }

    /// Records the events of log entry `index` (ignored when at or below what is recorded).
    pub fn push_entry(&self, index: u64, events: &[ClusterEvent]) {
        let mut ring = self.lock();
        if index <= ring.last.index {
            return;
        }
        for (sub, event) in events.iter().enumerate() {
            let id = EventId {
                index,
                sub: u32::try_from(sub).unwrap_or(u32::MAX),
            };
            let event = event.clone();
            self.push_locked(&mut ring, LoggedEvent { id, event });
        }
    }

    /// Records a node-local event after the last recorded position.
    pub fn push_local(&self, event: ClusterEvent) {
        let mut ring = self.lock();
        let id = EventId {
            index: ring.last.index,
            sub: ring.last.sub.saturating_add(1).max(1),
        };
        self.push_locked(&mut ring, LoggedEvent { id, event });
    }

    /// Subscribes; with `since`, also returns every recorded event after it (and a reset
    /// notice when events after it may have been dropped).
    pub fn subscribe(&self, since: Option<EventId>) -> Subscription {
        let ring = self.lock();
        let live = self.live.subscribe();
        let Some(since) = since else {
            return Subscription {
                reset: None,
                backlog: Vec::new(),
                live,
            };
        };
        let reset = (since < ring.floor).then(|| {
            json!({"since": since.to_string(),
                   "oldest": ring.events.front().map(|e| e.id.to_string()),
                   "reason": "events after the requested id are no longer kept on this node"})
        });
        let backlog = ring
            .events
            .iter()
            .filter(|e| e.id > since)
            .cloned()
            .collect();
        Subscription {
            reset,
            backlog,
            live,
        }
    }
}

/// Feeds the node's event log from its state machine and Raft metrics until shutdown.
pub async fn run(raft: RaftNode, log: Arc<EventLog>, shutdown: CancellationToken) {
    let node_id = raft.id();
    let mut applied = raft.subscribe_applied();
    // Whatever was applied before we listened is behind the floor.
    let applied_index = raft.applied_index_watch();
    let start = applied_index.borrow().unwrap_or(0);
    log.reset_to(start);
    // Server metrics: leader changes only, not every write.
    let mut metrics = raft.server_metrics();
    let mut leader = metrics.borrow().current_leader;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = applied.recv() => match received {
                Ok(AppliedEvent::Command(c)) => {
                    log.push_entry(c.index, &c.events);
                }
                Ok(AppliedEvent::SnapshotInstalled { index }) => {
                    log.reset_to(index.unwrap_or(0));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let now = applied_index.borrow().unwrap_or(0);
                    tracing::warn!(index = now, "event stream lagged behind the state machine");
                    log.reset_to(now);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let (now, term) = {
                    let m = metrics.borrow_and_update();
                    (m.current_leader, m.vote.leader_id.term)
                };
                if now != leader && now.is_some() {
                    log.push_local(ClusterEvent::LeaderChanged {
                        leader_id: now,
                        previous_leader_id: leader,
                        term,
                        observed_by: node_id,
                    });
                }
                if now.is_some() {
                    leader = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse() {
        for text in ["0", "42", "42.3"] {
            assert_eq!(EventId::parse(text).unwrap().to_string(), text);
        }
        assert!(EventId::parse("x").is_none());
        assert!(EventId::parse("4.").is_none());
        assert!(EventId::parse("4.2") > EventId::parse("4"));
        assert!(EventId::parse("5") > EventId::parse("4.9"));
    }

    fn kinds(events: &[Arc<LoggedEvent>]) -> Vec<String> {
        events.iter().map(|e| e.id.to_string()).collect()
    }

    fn event(n: u64) -> ClusterEvent {
        ClusterEvent::GroupUpdated {
            group_id: "g".into(),
            version: n,
        }
    }

    #[test]
    fn ring_resumes_after_an_id_and_signals_dropped_events() {
        let log = EventLog::with_capacity(3);
        log.reset_to(2);
        log.push_entry(3, &[event(1)]);
        log.push_entry(4, &[event(2), event(3)]);
        log.push_local(event(4));
        // Replays of already recorded entries are ignored.
        log.push_entry(4, &[event(5)]);
        let sub = log.subscribe(EventId::parse("4"));
        assert!(sub.reset.is_none());
        assert_eq!(kinds(&sub.backlog), ["4.1", "4.2"]);
        // "3" was evicted by the capacity of 3: resuming before it needs a reset.
        let sub = log.subscribe(EventId::parse("2"));
        assert!(sub.reset.is_some());
        assert_eq!(kinds(&sub.backlog), ["4", "4.1", "4.2"]);
        let sub = log.subscribe(None);
        assert!(sub.backlog.is_empty() && sub.reset.is_none());
    }

    #[tokio::test]
    async fn live_subscribers_get_what_follows_their_backlog() {
        let log = EventLog::default();
        log.push_entry(1, &[event(1)]);
        let mut sub = log.subscribe(EventId::parse("0"));
        assert_eq!(kinds(&sub.backlog), ["1"]);
        log.push_entry(2, &[event(2)]);
        let next = sub.live.recv().await.unwrap();
        assert_eq!(next.id.to_string(), "2");
        assert_eq!(next.event, event(2));
        let record = serde_json::to_value(next.record()).unwrap();
        assert_eq!(record["id"], "2");
        assert_eq!(record["type"], "group_updated");
    }
}
