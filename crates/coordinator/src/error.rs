//! The coordinator's API error: what a client is answered, whichever transport carried the
//! request.
//!
//! Every handler (HTTP, or the NATS worker subjects) returns `Result<_, ApiError>`; this module
//! is the one place that turns cluster, Raft, leader, validation and worker-call failures into
//! a status plus a JSON [`ErrorBody`] (`{"error", "code", ...}`). The HTTP rendering (with
//! `Retry-After` on 503) is the HTTP layer's `http::error`.

use axum::http::StatusCode;
use varpulis_api::error::DiagnosticBody;
use varpulis_api::{Code, ErrorBody};
use varpulis_raft::WriteError;

use crate::leader::error::LeaderError;

/// A failed request, as the coordinator answers it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input (JSON syntax, missing field, bad query).
    #[error("{0}")]
    BadRequest(String),
    /// The VPL of one or more pipelines does not compile.
    #[error("invalid VPL: {} error(s); nothing was stored", .0.len())]
    InvalidVpl(Vec<DiagnosticBody>),
    /// Missing or wrong API key or worker token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Unknown id or route.
    #[error("{0}")]
    NotFound(String),
    /// Request body over the limit.
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    /// Body of a type the route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The state machine rejected the command.
    #[error(transparent)]
    Cluster(#[from] varpulis_cluster::Error),
    /// A leader is known but this node cannot reach it.
    #[error("not the leader and the leader is unreachable")]
    NotLeader {
        /// Leader id, if known.
        leader_id: Option<u64>,
        /// Leader URL, if known.
        leader_url: Option<String>,
    },
    /// No leader (election or lost quorum).
    #[error("no leader: election in progress or no quorum; retry shortly")]
    NoLeader,
    /// The write was not confirmed in time (quorum lost or overloaded). It may still commit:
    /// the client cannot know, so the message points to `Idempotency-Key`.
    #[error(
        "the write was not confirmed in time (no quorum?): its outcome is unknown, it may still be \
         applied; retry with the same Idempotency-Key header so that it applies at most once"
    )]
    Timeout,
    /// Too many writes wait for a proposal on this node (never proposed): retry shortly.
    #[error("too many writes are waiting on this node (not applied): retry shortly")]
    Overloaded,
    /// The target of an inject or deploy is not running.
    #[error("{0}")]
    Unavailable(String),
    /// A worker answered with an error or did not answer.
    #[error("{0}")]
    BadGateway(String),
    /// A rolling update would carry state into a program whose state shape differs.
    #[error("{message}")]
    StateIncompatible {
        /// What to do about it.
        message: String,
        /// What changed shape, one line each.
        details: Vec<String>,
    },
    /// A rolling update was aborted; the group keeps its version.
    #[error("{0}")]
    UpdateAborted(String),
    /// A bug or a fatal Raft/storage error.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The wire code of this error (the one mapping of the coordinator's errors).
    pub fn code(&self) -> Code {
        match self {
            ApiError::BadRequest(_) => Code::BadRequest,
            ApiError::InvalidVpl(_) => Code::InvalidVpl,
            ApiError::Unauthorized(_) => Code::Unauthorized,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::PayloadTooLarge => Code::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => Code::UnsupportedMediaType,
            ApiError::Cluster(e) => e.code(),
            ApiError::NotLeader { .. } => Code::NotLeader,
            ApiError::NoLeader => Code::NoLeader,
            ApiError::Timeout => Code::NoQuorum,
            ApiError::Overloaded => Code::Overloaded,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::BadGateway(_) => Code::WorkerError,
            ApiError::StateIncompatible { .. } => Code::StateIncompatible,
            ApiError::UpdateAborted(_) => Code::UpdateAborted,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    /// HTTP status of this error (its code's).
    pub fn status(&self) -> StatusCode {
        let status = match self {
            ApiError::Cluster(e) => e.http_status(),
            other => other.code().status(),
        };
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        let mut body = ErrorBody::new(self.code(), self.to_string());
        match self {
            ApiError::InvalidVpl(diagnostics) => body.diagnostics = diagnostics.clone(),
            ApiError::StateIncompatible { details, .. } => body.details = details.clone(),
            ApiError::NotLeader {
                leader_id,
                leader_url,
            } => {
                body.leader_id = *leader_id;
                body.leader_url = leader_url.clone();
            }
            _ => {}
        }
        body
    }
}

impl From<WriteError> for ApiError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::ForwardToLeader {
                leader_id: None, ..
            }
            | WriteError::NoLeader => ApiError::NoLeader,
            WriteError::ForwardToLeader {
                leader_id,
                leader_url,
            } => ApiError::NotLeader {
                leader_id,
                leader_url,
            },
            WriteError::Timeout => ApiError::Timeout,
            WriteError::Overloaded => ApiError::Overloaded,
            WriteError::Fatal(message) => ApiError::Internal(message),
        }
    }
}

impl From<LeaderError> for ApiError {
    fn from(err: LeaderError) -> Self {
        match err {
            LeaderError::Rejected(e) => ApiError::Cluster(e),
            LeaderError::NotCommitted(e) => e.into(),
            LeaderError::NotFound(m) => ApiError::NotFound(m),
            LeaderError::NotRunning(m) => ApiError::Unavailable(m),
            LeaderError::Invalid(m) => ApiError::BadRequest(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_errors_map_to_421_and_503() {
        let e = ApiError::from(WriteError::ForwardToLeader {
            leader_id: Some(2),
            leader_url: Some("http://n2".into()),
        });
        assert_eq!(e.status(), StatusCode::MISDIRECTED_REQUEST);
        let body = e.body();
        assert_eq!(body.code, Code::NotLeader);
        assert_eq!(body.leader_id, Some(2));
        assert_eq!(
            ApiError::from(WriteError::NoLeader).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn a_write_timeout_says_the_outcome_is_unknown() {
        let e = ApiError::from(WriteError::Timeout);
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), "no_quorum");
        let message = e.body().error;
        assert!(message.contains("outcome is unknown"), "{message}");
        assert!(message.contains("Idempotency-Key"), "{message}");
        assert!(!message.contains("did not commit"), "{message}");
    }

    #[test]
    fn cluster_errors_keep_their_status() {
        let e = ApiError::from(varpulis_cluster::Error::DuplicateGroupName("g".into()));
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.code(), Code::GroupExists);
        let e = ApiError::StateIncompatible {
            message: "reset needed".into(),
            details: vec!["p: `stream S` is gone".into()],
        };
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.body().details.len(), 1);
    }
}
