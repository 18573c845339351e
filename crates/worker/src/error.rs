//! The worker's error type and its single mapping to HTTP status + `ErrorBody`.
//!
//! Below everything but `config`: every other module reports its faults as a [`WorkerError`].

use crate::config::ConfigError;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use varpulis_api::error::DiagnosticBody;
use varpulis_api::{Code, ErrorBody};

/// Everything that can go wrong in the worker, each variant naming its fault.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Invalid configuration (startup only).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Missing or wrong `x-api-key`.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// The request body is not acceptable (malformed JSON, bad field, bad `.evt` line).
    #[error("{0}")]
    BadRequest(String),
    /// The VPL source does not compile.
    #[error("{message}")]
    InvalidVpl {
        /// Summary (first diagnostic, rendered).
        message: String,
        /// Every diagnostic with line and column.
        diagnostics: Vec<DiagnosticBody>,
    },
    /// A connector named by the program is neither declared nor supplied.
    #[error("{0}")]
    Connector(String),
    /// A checkpoint could not be decoded or restored.
    #[error("bad checkpoint: {0}")]
    BadCheckpoint(String),
    /// No pipeline with this id.
    #[error("pipeline `{0}` not found")]
    PipelineNotFound(String),
    /// Unknown route.
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// A pipeline with this id already runs a different source.
    #[error("pipeline `{0}` already exists with a different source")]
    Conflict(String),
    /// The body is larger than the configured limit.
    #[error("request body too large: {0}")]
    PayloadTooLarge(String),
    /// Wrong `Content-Type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The worker is draining and accepts no new pipelines.
    #[error("worker is draining")]
    Draining,
    /// The pipeline is fenced: the worker's lease with the leader ran out (docs/worker.md
    /// "Leases and fencing").
    #[error("pipeline `{0}` is fenced: this worker cannot renew its lease with the leader")]
    Fenced(String),
    /// A command for an older placement epoch than the one running here.
    #[error("{0}")]
    StaleEpoch(String),
    /// `max_pipelines` reached.
    #[error("worker is at capacity ({0} pipelines)")]
    AtCapacity(u32),
    /// The request took longer than the configured timeout.
    #[error("request timed out")]
    Timeout,
    /// An event needed more than a budget of its pipeline allows (steps, memory, outputs);
    /// its outputs are discarded.
    #[error("{0}")]
    BudgetExceeded(String),
    /// The pipeline exceeded its budgets too often in a row and refuses events until it is
    /// deployed again.
    #[error("{0}")]
    PipelineFailed(String),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
    /// Socket-level failure while serving.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl WorkerError {
    /// HTTP status and stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, Code) {
        match self {
            Self::Config(_) => (StatusCode::INTERNAL_SERVER_ERROR, Code::Config),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, Code::Unauthorized),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, Code::BadRequest),
            Self::InvalidVpl { .. } => (StatusCode::BAD_REQUEST, Code::InvalidVpl),
            Self::Connector(_) => (StatusCode::BAD_REQUEST, Code::InvalidConnector),
            Self::BadCheckpoint(_) => (StatusCode::BAD_REQUEST, Code::BadCheckpoint),
            Self::PipelineNotFound(_) | Self::RouteNotFound(_) => {
                (StatusCode::NOT_FOUND, Code::NotFound)
            }
            Self::Conflict(_) => (StatusCode::CONFLICT, Code::Conflict),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, Code::PayloadTooLarge),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::UnsupportedMediaType,
            ),
            Self::Draining => (StatusCode::SERVICE_UNAVAILABLE, Code::Draining),
            Self::Fenced(_) => (StatusCode::SERVICE_UNAVAILABLE, Code::Fenced),
            Self::StaleEpoch(_) => (StatusCode::CONFLICT, Code::StaleEpoch),
            Self::AtCapacity(_) => (StatusCode::SERVICE_UNAVAILABLE, Code::AtCapacity),
            Self::Timeout => (StatusCode::REQUEST_TIMEOUT, Code::Timeout),
            Self::BudgetExceeded(_) => (StatusCode::UNPROCESSABLE_ENTITY, Code::BudgetExceeded),
            Self::PipelineFailed(_) => (StatusCode::UNPROCESSABLE_ENTITY, Code::PipelineFailed),
            Self::Internal(_) | Self::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, Code::Internal),
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        let (_, code) = self.status_and_code();
        let mut body = ErrorBody::new(code, self.to_string());
        if let Self::InvalidVpl { diagnostics, .. } = self {
            body.diagnostics = diagnostics.clone();
        }
        body
    }
}

impl IntoResponse for WorkerError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        (status, Json(self.body())).into_response()
    }
}

impl From<ConfigError> for WorkerError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e.0)
    }
}

impl From<JsonRejection> for WorkerError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => Self::BadRequest(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => Self::BadRequest(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                Self::UnsupportedMediaType("expected `Content-Type: application/json`".to_owned())
            }
            JsonRejection::BytesRejection(e) => from_bytes_rejection(e.status(), e.body_text()),
            other => Self::BadRequest(other.body_text()),
        }
    }
}

impl From<BytesRejection> for WorkerError {
    fn from(r: BytesRejection) -> Self {
        from_bytes_rejection(r.status(), r.body_text())
    }
}

fn from_bytes_rejection(status: StatusCode, text: String) -> WorkerError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        WorkerError::PayloadTooLarge(text)
    } else {
        WorkerError::BadRequest(text)
    }
}
