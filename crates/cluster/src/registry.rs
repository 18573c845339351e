//! The worker registry: who the workers are and which lifecycle state each is in.
//!
//! Heartbeats are not replicated; only registrations, deregistrations and state *changes*
//! go through the log. The transition table ([`WorkerStatus::can_transition_to`]) is:
//!
//! | from \ to   | Ready | Busy | Unhealthy | Draining | Dead |
//! |-------------|-------|------|-----------|----------|------|
//! | Registering | yes   | yes  | yes       | yes      | yes  |
//! | Ready       | =     | yes  | yes       | yes      | no   |
//! | Busy        | yes   | =    | yes       | yes      | no   |
//! | Unhealthy   | yes   | no   | =         | yes      | yes  |
//! | Draining    | no    | no   | yes       | =        | yes  |
//! | Dead        | no    | no   | no        | no       | =    |
//!
//! `=` (same status) is accepted as a no-op. A Dead (or Unhealthy) worker comes back to
//! Ready by re-registering, which also keeps its placements. Nothing moves to Registering.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use crate::error::Error;

/// Longest accepted worker id, in bytes.
pub const MAX_WORKER_ID_LEN: usize = 256;

/// Lifecycle state of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Connecting (transient; registration normally goes straight to Ready).
    Registering,
    /// Available for placements.
    Ready,
    /// At capacity; keeps its placements but takes no new ones.
    Busy,
    /// Missed heartbeats; its placements are migrated away.
    Unhealthy,
    /// Shutting down gracefully; takes no new placements.
    Draining,
    /// Gone; kept in the registry until deregistered or re-registered.
    Dead,
}

impl WorkerStatus {
    /// Every status, in declaration order.
    pub const ALL: [WorkerStatus; 6] = [
        WorkerStatus::Registering,
        WorkerStatus::Ready,
        WorkerStatus::Busy,
        WorkerStatus::Unhealthy,
        WorkerStatus::Draining,
        WorkerStatus::Dead,
    ];

    /// The lowercase name used by the API (`ready`, `unhealthy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Registering => "registering",
            WorkerStatus::Ready => "ready",
            WorkerStatus::Busy => "busy",
            WorkerStatus::Unhealthy => "unhealthy",
            WorkerStatus::Draining => "draining",
            WorkerStatus::Dead => "dead",
        }
    }

    /// Parses the API name (case-insensitive).
    pub fn parse(s: &str) -> Option<WorkerStatus> {
        WorkerStatus::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether `SetWorkerStatus` may move a worker from `self` to `to` (see the module table).
    pub fn can_transition_to(self, to: WorkerStatus) -> bool {
        use WorkerStatus::*;
        if self == to {
            return true;
        }
        match (self, to) {
            (_, Registering) => false,
            (Registering, _) => true,
            (Ready, Busy) | (Busy, Ready) => true,
            (Ready | Busy | Unhealthy | Draining, Unhealthy) => true,
            (Ready | Busy | Unhealthy, Draining) => true,
            (Unhealthy, Ready) => true,
            (Unhealthy | Draining, Dead) => true,
            _ => false,
        }
    }

    /// Whether new placements may go to a worker in this state.
    pub fn accepts_placements(self) -> bool {
        self == WorkerStatus::Ready
    }

    /// Whether placements on a worker in this state should be moved elsewhere.
    pub fn needs_failover(self) -> bool {
        matches!(self, WorkerStatus::Unhealthy | WorkerStatus::Dead)
    }
}

impl fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registered worker as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// Stable id chosen by the worker.
    pub id: String,
    /// Base URL of its REST API.
    pub address: String,
    /// Key the coordinator sends to the worker. Never shown by the API views.
    pub api_key: String,
    /// CPU cores reported at registration.
    pub cpu_cores: u32,
    /// Most pipelines it accepts.
    pub max_pipelines: u32,
    /// Labels used by placement constraints.
    pub labels: BTreeMap<String, String>,
    /// Current lifecycle state.
    pub status: WorkerStatus,
    /// Why it is in that state (set by `SetWorkerStatus`).
    pub status_reason: Option<String>,
    /// First registration time (leader's clock).
    pub registered_at_ms: u64,
    /// Last registration or status change time (leader's clock).
    pub status_changed_at_ms: u64,
    /// How many times it registered (1 at first registration).
    pub registrations: u64,
}

impl Worker {
    /// Whether every `required` label is carried by this worker with the same value.
    pub fn matches_labels(&self, required: &BTreeMap<String, String>) -> bool {
        required.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

/// Validates the fields of a registration (id and address).
pub(crate) fn validate_registration(worker_id: &str, address: &str) -> Result<(), Error> {
    if worker_id.trim().is_empty() {
        return Err(Error::InvalidWorker("worker_id must not be empty".into()));
    }
    if worker_id.len() > MAX_WORKER_ID_LEN {
        return Err(Error::InvalidWorker(format!(
            "worker_id is longer than {MAX_WORKER_ID_LEN} bytes"
        )));
    }
    if worker_id.chars().any(|c| c.is_control() || c == '/') {
        return Err(Error::InvalidWorker(
            "worker_id must not contain '/' or control characters".into(),
        ));
    }
    let lower = address.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(Error::InvalidWorker(format!(
            "address '{address}' must be an http:// or https:// URL"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkerStatus::*;

    #[test]
    fn transition_table_matches_the_documentation() {
        let allowed = |from: WorkerStatus, to: WorkerStatus| from.can_transition_to(to);
        assert!(allowed(Registering, Ready));
        assert!(allowed(Ready, Busy));
        assert!(allowed(Busy, Ready));
        assert!(allowed(Ready, Unhealthy));
        assert!(allowed(Busy, Unhealthy));
        assert!(allowed(Draining, Unhealthy));
        assert!(allowed(Unhealthy, Ready));
        assert!(allowed(Ready, Draining));
        assert!(allowed(Unhealthy, Draining));
        assert!(allowed(Draining, Dead));
        assert!(allowed(Unhealthy, Dead));
        assert!(!allowed(Ready, Dead));
        assert!(!allowed(Busy, Dead));
        assert!(!allowed(Unhealthy, Busy));
        assert!(!allowed(Draining, Ready));
        assert!(!allowed(Dead, Ready));
        assert!(!allowed(Dead, Unhealthy));
        assert!(!allowed(Dead, Draining));
        for st in WorkerStatus::ALL {
            assert!(allowed(st, st), "{st} -> {st} is a no-op");
            if st != Registering {
                assert!(!allowed(st, Registering));
            }
        }
    }

    #[test]
    fn status_names_round_trip() {
        for st in WorkerStatus::ALL {
            assert_eq!(WorkerStatus::parse(st.as_str()), Some(st));
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
        }
        assert_eq!(WorkerStatus::parse("READY"), Some(Ready));
        assert_eq!(WorkerStatus::parse("nope"), None);
    }

    #[test]
    fn registration_validation_rejects_bad_ids_and_addresses() {
        assert!(validate_registration("w1", "http://127.0.0.1:9000").is_ok());
        assert!(validate_registration("w1", "https://host").is_ok());
        assert!(validate_registration("", "http://h").is_err());
        assert!(validate_registration("  ", "http://h").is_err());
        assert!(validate_registration("a/b", "http://h").is_err());
        assert!(validate_registration(&"x".repeat(300), "http://h").is_err());
        assert!(validate_registration("w1", "").is_err());
        assert!(validate_registration("w1", "ftp://h").is_err());
        assert!(validate_registration("w1", "http://").is_err());
    }

    #[test]
    fn label_matching_requires_every_label() {
        let w = Worker {
            id: "w".into(),
            address: "http://h".into(),
            api_key: String::new(),
            cpu_cores: 1,
            max_pipelines: 1,
            labels: [
                ("zone".to_string(), "a".to_string()),
                ("gpu".into(), "yes".into()),
            ]
            .into_iter()
            .collect(),
            status: Ready,
            status_reason: None,
            registered_at_ms: 0,
            status_changed_at_ms: 0,
            registrations: 1,
        };
        let mut req = BTreeMap::new();
        assert!(w.matches_labels(&req));
        req.insert("zone".to_string(), "a".to_string());
        assert!(w.matches_labels(&req));
        req.insert("gpu".to_string(), "no".to_string());
        assert!(!w.matches_labels(&req));
    }
}
