//! The JSON error body every Varpulis server answers with, and the one table of error codes.
//!
//! [`Code`] names every machine-readable error of the coordinator, the workers and the Raft
//! routes, with its HTTP status: each crate maps its own error type to a `Code` once, and the
//! wire name (`snake_case`) is spelled only here. [`ErrorBody`] serializes `code` as that name,
//! so the JSON is `{"error": "...", "code": "group_exists"}` as before.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $status:literal;)*) => {
        /// A stable, machine-readable error code, with its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The wire name (`group_exists`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// The HTTP status a server answers this code with.
            pub fn status(self) -> u16 {
                match self {
                    $(Code::$variant => $status,)*
                }
            }
        }
    };
}

codes! {
    // ----- input -----
    /// Malformed input: JSON syntax, a missing field, a bad query or header.
    BadRequest = "bad_request", 400;
    /// The VPL of a pipeline does not compile (the body lists the diagnostics).
    InvalidVpl = "invalid_vpl", 400;
    /// A pipeline group spec is invalid.
    InvalidSpec = "invalid_spec", 400;
    /// A worker registration carries bad data.
    InvalidWorker = "invalid_worker", 400;
    /// A connector definition is invalid (or a pipeline names an unknown connector).
    InvalidConnector = "invalid_connector", 400;
    /// A Raft RPC with a term far beyond this node's (a forged or corrupt peer message).
    TermOutOfRange = "term_out_of_range", 400;
    /// A checkpoint could not be decoded or restored.
    BadCheckpoint = "bad_checkpoint", 400;
    /// Missing or wrong API key or worker token.
    Unauthorized = "unauthorized", 401;
    /// A cross-site write from a page that is not a cluster member (the console's guard).
    ForbiddenOrigin = "forbidden_origin", 403;
    /// A Raft RPC from a node that is not a member of this cluster.
    NotAMember = "not_a_member", 403;
    /// Unknown route or id.
    NotFound = "not_found", 404;
    /// No worker with this id.
    WorkerNotFound = "worker_not_found", 404;
    /// No pipeline group with this id or name.
    GroupNotFound = "group_not_found", 404;
    /// The group has no such pipeline replica.
    PlacementNotFound = "placement_not_found", 404;
    /// No connector with this name.
    ConnectorNotFound = "connector_not_found", 404;
    /// No migration with this id.
    MigrationNotFound = "migration_not_found", 404;
    /// The route does not take this method.
    MethodNotAllowed = "method_not_allowed", 405;
    /// The request took longer than the server allows.
    Timeout = "timeout", 408;
    // ----- conflicts -----
    /// Conflicting state (a pipeline id with another source, a membership change in progress).
    Conflict = "conflict", 409;
    /// A pipeline group with this name (or id) exists.
    GroupExists = "group_exists", 409;
    /// A connector with this name exists.
    ConnectorExists = "connector_exists", 409;
    /// A migration with this id exists.
    MigrationExists = "migration_exists", 409;
    /// The worker id is registered with another key and is alive (or the caller is not an
    /// operator allowed to take a dead id over).
    WorkerIdTaken = "worker_id_taken", 409;
    /// The worker status transition is not allowed.
    InvalidTransition = "invalid_transition", 409;
    /// The command was decided against an older placement epoch.
    StaleEpoch = "stale_epoch", 409;
    /// A newer checkpoint is stored already.
    StaleCheckpoint = "stale_checkpoint", 409;
    /// A migration of this placement is in progress.
    MigrationInProgress = "migration_in_progress", 409;
    /// The migration has already completed or failed.
    MigrationFinished = "migration_finished", 409;
    /// The placement is on another worker than the command says.
    WrongWorker = "wrong_worker", 409;
    /// The worker cannot take the placement (or a drain has nowhere to go).
    WorkerUnavailable = "worker_unavailable", 409;
    /// A rolling update does not fit the group's rollout state.
    UpdateConflict = "update_conflict", 409;
    /// A rolling update was aborted; the group keeps its version.
    UpdateAborted = "update_aborted", 409;
    /// The state shape changes; the update needs `"state": "reset"`.
    StateIncompatible = "state_incompatible", 409;
    // ----- limits -----
    /// The body (or a checkpoint) is over the limit.
    PayloadTooLarge = "payload_too_large", 413;
    /// A field, a count or a size is over a configured limit (`limits.*`; a cluster-wide count
    /// such as the number of workers is answered 400).
    LimitExceeded = "limit_exceeded", 413;
    /// The body is of a type the route does not take.
    UnsupportedMediaType = "unsupported_media_type", 415;
    /// The client sent more writes than its rate limit allows (the answer has `Retry-After`).
    TooManyRequests = "too_many_requests", 429;
    /// The leader is known but unreachable from this node (the body names it).
    NotLeader = "not_leader", 421;
    /// One event of a pipeline went over a program budget (steps, memory, outputs): refused.
    BudgetExceeded = "budget_exceeded", 422;
    /// The pipeline failed after repeated budget errors and takes no more events.
    PipelineFailed = "pipeline_failed", 422;
    // ----- server side -----
    /// A bug or a fatal Raft/storage error.
    Internal = "internal", 500;
    /// The server's configuration is unusable.
    Config = "config", 500;
    /// A worker failed the call or did not answer.
    WorkerError = "worker_error", 502;
    /// No leader: an election is in progress or there is no quorum.
    NoLeader = "no_leader", 503;
    /// The write was not committed in time (no quorum, overloaded).
    NoQuorum = "no_quorum", 503;
    /// The target (a pipeline, a rolling update) is not running (yet).
    Unavailable = "unavailable", 503;
    /// No worker can take a pipeline now.
    NoWorkerAvailable = "no_worker_available", 503;
    /// The node serves as many connections as it may; retry shortly.
    Overloaded = "overloaded", 503;
    /// The node cannot serve yet (`/ready`).
    NotReady = "not_ready", 503;
    /// The worker is draining and takes no new pipelines.
    Draining = "draining", 503;
    /// The worker runs as many pipelines as it may.
    AtCapacity = "at_capacity", 503;
    /// The worker has not registered with a coordinator yet (`/ready`).
    NotRegistered = "not_registered", 503;
    /// The pipeline is fenced: its worker could not renew its lease with the leader, so it
    /// takes no events and publishes nothing until the leader answers again.
    Fenced = "fenced", 503;
    /// An error the framework answered without a more specific code.
    Error = "error", 500;
    /// A code this version does not know (read from a newer server).
    Unknown = "unknown", 500;
}

impl Code {
    /// The code named `name`, if this version knows it.
    pub fn parse(name: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == name)
    }

    /// Whether a client may retry the same request later (a 503 answer carries `Retry-After`).
    pub fn is_retryable(self) -> bool {
        self.status() == 503
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    /// An unknown name reads as [`Code::Unknown`], so a client can still show the message of
    /// a newer server.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(Code::parse(&name).unwrap_or(Code::Unknown))
    }
}

/// `{"error": "...", "code": "..."}` plus optional machine-readable details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// Stable machine-readable code.
    pub code: Code,
    /// VPL diagnostics when the error is a compile error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<DiagnosticBody>,
    /// Reasons behind the error, one per line (`state_incompatible`: what changed shape).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// Id of the current leader (only with code `not_leader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<u64>,
    /// API URL of the current leader (only with code `not_leader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_url: Option<String>,
}

impl ErrorBody {
    /// An error with a code and a message and nothing else.
    pub fn new(code: Code, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code,
            diagnostics: Vec::new(),
            details: Vec::new(),
            leader_id: None,
            leader_url: None,
        }
    }

    /// The HTTP status of this error (its code's).
    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

/// One VPL diagnostic as it travels over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticBody {
    /// `error` or `warning`.
    pub severity: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
    /// What went wrong.
    pub message: String,
    /// A hint, when one is cheap to give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The rendered diagnostic with the source line and a caret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rendered: String,
    /// Name of the pipeline whose source it belongs to (coordinator only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for &code in Code::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} is listed twice");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
            assert_eq!(Code::parse(name), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Code>(&json).unwrap(), code);
            assert!((400..600).contains(&code.status()), "{name}");
        }
    }

    #[test]
    fn the_wire_format_is_unchanged() {
        let mut body = ErrorBody::new(Code::NotLeader, "not the leader");
        body.leader_id = Some(2);
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "not the leader", "code": "not_leader", "leader_id": 2})
        );
        assert_eq!(body.status(), 421);
        let read: ErrorBody =
            serde_json::from_str(r#"{"error": "x", "code": "from_the_future"}"#).unwrap();
        assert_eq!(read.code, Code::Unknown);
        assert_eq!(read.code, "unknown");
    }

    #[test]
    fn statuses_follow_the_api_table() {
        assert_eq!(Code::GroupExists.status(), 409);
        assert_eq!(Code::NoQuorum.status(), 503);
        assert!(Code::NoLeader.is_retryable());
        assert!(!Code::BadRequest.is_retryable());
        assert_eq!(Code::WorkerError.status(), 502);
    }
}
