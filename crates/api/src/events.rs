//! The cluster event stream (`GET /api/v1/cluster/events`): typed events.
//!
//! The replicated state machine produces them as it applies commands (every node the same
//! events for the same log); `leader_changed` is each node's own observation. On the wire an
//! event is `{"id": "42.1", "type": "<kind>", "data": {...}}` ([`EventRecord`]).

use serde::{Deserialize, Serialize};

/// Who a worker status change concerns and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatusChange {
    /// Worker id.
    pub worker_id: String,
    /// Previous status (`ready`, `unhealthy`, ...).
    pub from: String,
    /// New status.
    pub to: String,
    /// Why (absent when the command gave no reason).
    pub reason: Option<String>,
}

/// A worker left the cluster: deregistered, or declared dead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkerLeft {
    /// Its status became `dead`.
    Dead(WorkerStatusChange),
    /// It was deregistered (`reason` is `deregistered`).
    Deregistered {
        /// Worker id.
        worker_id: String,
        /// `deregistered`.
        reason: String,
    },
}

/// One cluster event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ClusterEvent {
    /// A worker registered (`rejoined` when its id was known).
    WorkerJoined {
        /// Worker id.
        worker_id: String,
        /// Its address.
        address: String,
        /// The id was registered before.
        rejoined: bool,
        /// Its status after registration.
        status: String,
    },
    /// A worker became ready again.
    WorkerReady(WorkerStatusChange),
    /// A worker was marked unhealthy.
    WorkerUnhealthy(WorkerStatusChange),
    /// A worker was deregistered or declared dead.
    WorkerLeft(WorkerLeft),
    /// Any other worker status change (busy, draining).
    WorkerStatusChanged(WorkerStatusChange),
    /// A pipeline group was created.
    GroupDeployed {
        /// Group id.
        group_id: String,
        /// Group name.
        name: String,
        /// Its version (1).
        version: u64,
        /// Pipelines in the spec.
        pipelines: usize,
        /// Placements stored without a worker.
        pending: usize,
    },
    /// A rolling update started.
    GroupUpdateStarted {
        /// Version before the update.
        from_version: u64,
        /// Pipelines whose source changes.
        changed: Vec<String>,
        /// `keep` or `reset`.
        state: String,
        /// For a rollback: the version whose spec returns.
        restores: Option<u64>,
        /// Group id.
        group_id: String,
        /// Version the update goes to.
        version: u64,
    },
    /// A rolling update switched the group to its new version.
    GroupUpdated {
        /// Group id.
        group_id: String,
        /// The new version.
        version: u64,
    },
    /// A rolling update stopped the old pipelines and ended.
    GroupUpdateFinished {
        /// Group id.
        group_id: String,
        /// The version now running.
        version: u64,
    },
    /// A rolling update was aborted; the group keeps its version.
    GroupUpdateAborted {
        /// Why.
        error: String,
        /// Group id.
        group_id: String,
        /// The version the update was going to.
        version: u64,
    },
    /// A pipeline group was deleted.
    GroupDeleted {
        /// Group id.
        group_id: String,
        /// Group name.
        name: String,
    },
    /// A placement started moving to another worker.
    MigrationStarted {
        /// Migration id.
        migration_id: String,
        /// Group id.
        group_id: String,
        /// Pipeline name.
        pipeline: String,
        /// Replica number.
        replica: u32,
        /// Worker it leaves.
        from_worker: String,
        /// Worker it goes to (absent while no worker can take it).
        to_worker: Option<String>,
        /// `worker_unhealthy`, `drain`, `rebalance` or `manual`.
        reason: String,
    },
    /// A migration completed: the placement runs on its new worker.
    MigrationCompleted {
        /// Migration id.
        migration_id: String,
        /// The placement's epoch now.
        epoch: u64,
        /// It was restored from a checkpoint.
        restored_from_checkpoint: bool,
    },
    /// A migration failed.
    MigrationFailed {
        /// Migration id.
        migration_id: String,
        /// What went wrong.
        error: String,
    },
    /// This node saw a new leader (not replicated: each node reports its own observation).
    LeaderChanged {
        /// The new leader.
        leader_id: Option<u64>,
        /// The previous one.
        previous_leader_id: Option<u64>,
        /// The term.
        term: u64,
        /// The node that saw it.
        observed_by: u64,
    },
}

impl ClusterEvent {
    /// The event's type name (`worker_joined`, ...), as in its `type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterEvent::WorkerJoined { .. } => "worker_joined",
            ClusterEvent::WorkerReady(_) => "worker_ready",
            ClusterEvent::WorkerUnhealthy(_) => "worker_unhealthy",
            ClusterEvent::WorkerLeft(_) => "worker_left",
            ClusterEvent::WorkerStatusChanged(_) => "worker_status_changed",
            ClusterEvent::GroupDeployed { .. } => "group_deployed",
            ClusterEvent::GroupUpdateStarted { .. } => "group_update_started",
            ClusterEvent::GroupUpdated { .. } => "group_updated",
            ClusterEvent::GroupUpdateFinished { .. } => "group_update_finished",
            ClusterEvent::GroupUpdateAborted { .. } => "group_update_aborted",
            ClusterEvent::GroupDeleted { .. } => "group_deleted",
            ClusterEvent::MigrationStarted { .. } => "migration_started",
            ClusterEvent::MigrationCompleted { .. } => "migration_completed",
            ClusterEvent::MigrationFailed { .. } => "migration_failed",
            ClusterEvent::LeaderChanged { .. } => "leader_changed",
        }
    }
}

/// An event with its position in the stream: `{"id", "type", "data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// `"<log index>"` or `"<log index>.<n>"`.
    pub id: String,
    /// The event.
    #[serde(flatten)]
    pub event: ClusterEvent,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change() -> WorkerStatusChange {
        WorkerStatusChange {
            worker_id: "w1".into(),
            from: "ready".into(),
            to: "dead".into(),
            reason: None,
        }
    }

    #[test]
    fn records_serialize_as_id_type_data() {
        let record = EventRecord {
            id: "42.1".into(),
            event: ClusterEvent::MigrationFailed {
                migration_id: "m".into(),
                error: "boom".into(),
            },
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(
            text,
            r#"{"id":"42.1","type":"migration_failed","data":{"migration_id":"m","error":"boom"}}"#
        );
        let back: EventRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn both_shapes_of_worker_left_keep_their_fields() {
        let dead = ClusterEvent::WorkerLeft(WorkerLeft::Dead(change()));
        assert_eq!(
            serde_json::to_value(&dead).unwrap()["data"],
            json!({"worker_id": "w1", "from": "ready", "to": "dead", "reason": null})
        );
        let gone = ClusterEvent::WorkerLeft(WorkerLeft::Deregistered {
            worker_id: "w1".into(),
            reason: "deregistered".into(),
        });
        assert_eq!(
            serde_json::to_value(&gone).unwrap()["data"],
            json!({"worker_id": "w1", "reason": "deregistered"})
        );
        for e in [dead, gone] {
            let back: ClusterEvent =
                serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn kind_is_the_serialized_type() {
        let events = [
            ClusterEvent::WorkerReady(change()),
            ClusterEvent::WorkerUnhealthy(change()),
            ClusterEvent::WorkerStatusChanged(change()),
            ClusterEvent::GroupUpdated {
                group_id: "g".into(),
                version: 2,
            },
            ClusterEvent::LeaderChanged {
                leader_id: Some(1),
                previous_leader_id: None,
                term: 3,
                observed_by: 2,
            },
        ];
        for e in events {
            assert_eq!(serde_json::to_value(&e).unwrap()["type"], e.kind());
        }
    }
}
