//! The coordinator's one error type and its mapping to HTTP.
//!
//! Every handler returns `Result<_, ApiError>`; this module is the only place that turns cluster,
//! Raft, validation and transport failures into a status code plus a JSON [`ErrorBody`]
//! (`{"error", "code", ...}`). 503 answers carry `Retry-After` so clients back off during elections.

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use varpulis_api::error::DiagnosticBody;
use varpulis_api::ErrorBody;
use varpulis_raft::WriteError;

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

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
    /// The target of an inject or deploy is not running.
    #[error("{0}")]
    Unavailable(String),
    /// A worker answered with an error or did not answer.
    #[error("{0}")]
    BadGateway(String),
    /// A bug or a fatal Raft/storage error.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidVpl(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Cluster(e) => {
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ApiError::NotLeader { .. } => StatusCode::MISDIRECTED_REQUEST,
            ApiError::NoLeader | ApiError::Timeout | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidVpl(_) => "invalid_vpl",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Cluster(e) => e.code(),
            ApiError::NotLeader { .. } => "not_leader",
            ApiError::NoLeader => "no_leader",
            ApiError::Timeout => "no_quorum",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::BadGateway(_) => "worker_error",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        let mut body = ErrorBody::new(self.code(), self.to_string());
        match self {
            ApiError::InvalidVpl(diagnostics) => body.diagnostics = diagnostics.clone(),
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && !matches!(self, ApiError::NoLeader | ApiError::Timeout) {
            tracing::warn!(code = self.code(), "request failed: {self}");
        }
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
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
            WriteError::Fatal(message) => ApiError::Internal(message),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
                "expected a JSON body with `Content-Type: application/json`".to_string(),
            ),
            _ => ApiError::BadRequest(rejection.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// A JSON body extractor whose rejections are [`ApiError`]s (400/413/415 as JSON).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A query-string extractor whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

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
        assert_eq!(body.code, "not_leader");
        assert_eq!(body.leader_id, Some(2));
        assert_eq!(
            ApiError::from(WriteError::NoLeader).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let response = ApiError::NoLeader.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
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
        assert_eq!(e.code(), "group_exists");
    }
}
