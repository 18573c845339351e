//! The cluster event stream: what happened to workers, groups, migrations and leadership.
//!
//! Events are derived deterministically from the commands this node's state machine applies
//! (and their outcomes), so every node — leader or follower — produces the same events with
//! the same ids for the same log. An event's id is its Raft log index, plus a sub-index when
//! one entry yields several events (a batch): `"42"`, `"42.1"`, `"42.2"`. Rejected commands
//! yield nothing.
//!
//! `leader_changed` is not in the log: each node emits it when its own Raft metrics show a new
//! leader, with the id of the position it was noticed at (`"<last index>.<n>"`, `n >= 1`), so
//! its id is local to the node.
//!
//! A bounded ring ([`RING_CAPACITY`] events) answers `since` resumes. Events older than the
//! ring, or lost because this node installed a snapshot or started after them, are behind the
//! ring's `floor`: a client resuming from before it first gets a `reset` event.

use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use varpulis_cluster::registry::WorkerStatus;
use varpulis_cluster::version::RolloutCommand;
use varpulis_cluster::{Command, CommandResponse, Outcome};
use varpulis_raft::AppliedEvent;

use tokio_util::sync::CancellationToken;
use varpulis_raft::RaftNode;

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

/// One cluster event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterEvent {
    /// Position (serialized as `"42"` / `"42.1"`).
    #[serde(serialize_with = "id_string")]
    pub id: EventId,
    /// Kind: `worker_joined`, `worker_ready`, `worker_unhealthy`, `worker_left`,
    /// `worker_status_changed`, `group_deployed`, `group_update_started`, `group_updated`,
    /// `group_update_finished`, `group_update_aborted`, `group_deleted`, `migration_started`,
    /// `migration_completed`, `migration_failed`, `leader_changed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Details (ids, names, statuses).
    pub data: Value,
}

fn id_string<S: serde::Serializer>(id: &EventId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// Events derived from one applied command and its response, in order.
pub fn derive(cmd: &Command, resp: &CommandResponse) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    derive_into(cmd, resp, &mut out);
    out
}

fn ev(out: &mut Vec<(String, Value)>, kind: &str, data: Value) {
    out.push((kind.to_string(), data));
}

fn derive_into(cmd: &Command, resp: &CommandResponse, out: &mut Vec<(String, Value)>) {
    let Ok(outcome) = &resp.result else {
        return;
    };
    match (cmd, outcome) {
        (Command::Batch(items), Outcome::Batch(responses)) => {
            for (c, r) in items.iter().zip(responses) {
                derive_into(c, r, out);
            }
        }
        (Command::Idempotent { command, .. }, _) => derive_into(command, resp, out),
        (
            Command::RegisterWorker(r),
            Outcome::WorkerRegistered {
                created, status, ..
            },
        ) => ev(
            out,
            "worker_joined",
            json!({"worker_id": r.worker_id, "address": r.address, "rejoined": !created,
                   "status": status.to_string()}),
        ),
        (Command::DeregisterWorker { worker_id }, Outcome::WorkerDeregistered { .. }) => ev(
            out,
            "worker_left",
            json!({"worker_id": worker_id, "reason": "deregistered"}),
        ),
        (
            Command::SetWorkerStatus { reason, .. },
            Outcome::WorkerStatusChanged {
                worker_id,
                from,
                to,
            },
        ) if from != to => {
            let kind = match to {
                WorkerStatus::Ready => "worker_ready",
                WorkerStatus::Unhealthy => "worker_unhealthy",
                WorkerStatus::Dead => "worker_left",
                _ => "worker_status_changed",
            };
            ev(
                out,
                kind,
                json!({"worker_id": worker_id, "from": from.to_string(), "to": to.to_string(),
                       "reason": reason}),
            )
        }
        (Command::CreateGroup { spec, .. }, Outcome::GroupCreated { group_id, pending }) => ev(
            out,
            "group_deployed",
            json!({"group_id": group_id, "name": spec.name, "version": 1,
                   "pipelines": spec.pipelines.len(), "pending": pending}),
        ),
        (Command::DeleteGroup { .. }, Outcome::GroupDeleted { group_id, name }) => ev(
            out,
            "group_deleted",
            json!({"group_id": group_id, "name": name}),
        ),
        (
            Command::StartMigration {
                group_id,
                pipeline_name,
                replica,
                from_worker,
                to_worker,
                reason,
                ..
            },
            Outcome::MigrationUpdated { migration_id, .. },
        ) => ev(
            out,
            "migration_started",
            json!({"migration_id": migration_id, "group_id": group_id, "pipeline": pipeline_name,
                   "replica": replica, "from_worker": from_worker, "to_worker": to_worker,
                   "reason": reason}),
        ),
        (
            Command::CompleteMigration {
                restored_from_checkpoint,
                ..
            },
            Outcome::MigrationUpdated {
                migration_id,
                epoch,
                ..
            },
        ) => ev(
            out,
            "migration_completed",
            json!({"migration_id": migration_id, "epoch": epoch,
                   "restored_from_checkpoint": restored_from_checkpoint}),
        ),
        (Command::FailMigration { error, .. }, Outcome::MigrationUpdated { migration_id, .. }) => {
            ev(
                out,
                "migration_failed",
                json!({"migration_id": migration_id, "error": error}),
            )
        }
        (
            Command::Rollout(step),
            Outcome::RolloutUpdated {
                group_id, version, ..
            },
        ) => {
            let (kind, mut data) = match step {
                RolloutCommand::Start { rollout, .. } => (
                    "group_update_started",
                    json!({"from_version": rollout.from_version, "changed": rollout.changed,
                           "state": rollout.state.as_str(), "restores": rollout.restores}),
                ),
                RolloutCommand::Switch { .. } => ("group_updated", json!({})),
                RolloutCommand::Finish { .. } => ("group_update_finished", json!({})),
                RolloutCommand::Abort { error, .. } => {
                    ("group_update_aborted", json!({"error": error}))
                }
            };
            if let Value::Object(map) = &mut data {
                map.insert("group_id".into(), json!(group_id));
                map.insert("version".into(), json!(version));
            }
            ev(out, kind, data)
        }
        _ => {}
    }
}

/// What a subscriber gets: whether it missed events, the backlog, and the live feed.
pub struct Subscription {
    /// The requested position is older than the ring: events were missed.
    pub reset: Option<Value>,
    /// Events after the requested position, oldest first.
    pub backlog: Vec<Arc<ClusterEvent>>,
    /// Every event pushed after the backlog was taken.
    pub live: broadcast::Receiver<Arc<ClusterEvent>>,
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<Arc<ClusterEvent>>,
    /// Events at or before this position may be missing from the ring.
    floor: EventId,
    /// Position of the last event pushed (or the floor).
    last: EventId,
}

/// The node's event log: bounded ring plus live broadcast.
#[derive(Debug)]
pub struct EventLog {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<ClusterEvent>>,
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

    fn push_locked(&self, ring: &mut Ring, event: ClusterEvent) {
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
    pub fn push_entry(&self, index: u64, events: Vec<(String, Value)>) {
        let mut ring = self.lock();
        if index <= ring.last.index {
            return;
        }
        for (sub, (kind, data)) in events.into_iter().enumerate() {
            let id = EventId {
                index,
                sub: u32::try_from(sub).unwrap_or(u32::MAX),
            };
            self.push_locked(&mut ring, ClusterEvent { id, kind, data });
        }
    }

    /// Records a node-local event after the last recorded position.
    pub fn push_local(&self, kind: &str, data: Value) {
        let mut ring = self.lock();
        let id = EventId {
            index: ring.last.index,
            sub: ring.last.sub.saturating_add(1).max(1),
        };
        self.push_locked(
            &mut ring,
            ClusterEvent {
                id,
                kind: kind.to_string(),
                data,
            },
        );
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
    let mut metrics = raft.metrics();
    let mut leader = metrics.borrow().current_leader;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = applied.recv() => match received {
                Ok(AppliedEvent::Command(c)) => {
                    log.push_entry(c.index, derive(&c.command, &c.response));
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
                    (m.current_leader, m.current_term)
                };
                if now != leader && now.is_some() {
                    let mut data = Map::new();
                    data.insert("leader_id".into(), json!(now));
                    data.insert("previous_leader_id".into(), json!(leader));
                    data.insert("term".into(), json!(term));
                    data.insert("observed_by".into(), json!(node_id));
                    log.push_local("leader_changed", Value::Object(data));
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
    use varpulis_cluster::RegisterWorker;

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

    fn register(id: &str) -> Command {
        Command::RegisterWorker(RegisterWorker {
            worker_id: id.into(),
            address: format!("http://{id}"),
            api_key: "secret".into(),
            cpu_cores: 1,
            max_pipelines: 4,
            labels: Default::default(),
            now_ms: 1,
        })
    }

    #[test]
    fn batches_yield_one_event_per_accepted_item() {
        let mut s = varpulis_cluster::ClusterState::new();
        let batch = Command::Batch(vec![register("w1"), register(""), register("w2")]);
        let resp = s.apply(&batch);
        let events = derive(&batch, &resp);
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["worker_joined", "worker_joined"]);
        assert_eq!(events[1].1["worker_id"], "w2");
        assert!(
            !events[0].1.to_string().contains("secret"),
            "never leak keys"
        );
        let again = s.apply(&register("w1"));
        assert_eq!(derive(&register("w1"), &again)[0].1["rejoined"], true);
    }

    #[test]
    fn status_changes_are_named_and_rejections_are_silent() {
        let mut s = varpulis_cluster::ClusterState::new();
        s.apply(&register("w1"));
        let down = Command::SetWorkerStatus {
            worker_id: "w1".into(),
            status: WorkerStatus::Unhealthy,
            now_ms: 2,
            reason: Some("silent".into()),
        };
        let resp = s.apply(&down);
        assert_eq!(derive(&down, &resp)[0].0, "worker_unhealthy");
        let unknown = Command::SetWorkerStatus {
            worker_id: "ghost".into(),
            status: WorkerStatus::Ready,
            now_ms: 3,
            reason: None,
        };
        let resp = s.apply(&unknown);
        assert!(derive(&unknown, &resp).is_empty());
    }

    fn kinds(events: &[Arc<ClusterEvent>]) -> Vec<String> {
        events.iter().map(|e| e.id.to_string()).collect()
    }

    #[test]
    fn ring_resumes_after_an_id_and_signals_dropped_events() {
        let log = EventLog::with_capacity(3);
        log.reset_to(2);
        log.push_entry(3, vec![("a".into(), json!({}))]);
        log.push_entry(4, vec![("b".into(), json!({})), ("c".into(), json!({}))]);
        log.push_local("leader_changed", json!({}));
        // Replays of already recorded entries are ignored.
        log.push_entry(4, vec![("dup".into(), json!({}))]);
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
        log.push_entry(1, vec![("a".into(), json!({}))]);
        let mut sub = log.subscribe(EventId::parse("0"));
        assert_eq!(kinds(&sub.backlog), ["1"]);
        log.push_entry(2, vec![("b".into(), json!({}))]);
        let next = sub.live.recv().await.unwrap();
        assert_eq!(next.id.to_string(), "2");
        assert_eq!(next.kind, "b");
    }
}
