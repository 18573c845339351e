//! Authentication middleware: the cluster API key and the worker join token.
//!
//! `x-api-key` guards every API route except `/health`, `/ready` and the two worker routes
//! (register, heartbeat); those need `x-worker-token` only when a worker token is configured.
//! Secrets are compared in constant time and never logged.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use varpulis_api::{API_KEY_HEADER, WORKER_TOKEN_HEADER};

use crate::error::ApiError;
use crate::state::AppState;

/// Whether `presented` equals `expected`, in time independent of where they differ.
pub fn secret_matches(presented: Option<&str>, expected: &str) -> bool {
    match presented {
        Some(p) => constant_time_eq::constant_time_eq(p.as_bytes(), expected.as_bytes()),
        None => false,
    }
}

/// Checks a presented worker join token against the configured one (no-op when none is
/// configured). The HTTP middleware and the NATS transport both call it.
pub fn check_worker_token(expected: Option<&str>, presented: Option<&str>) -> Result<(), ApiError> {
    match expected {
        Some(expected) if !secret_matches(presented, expected) => Err(ApiError::Unauthorized(
            "missing or invalid x-worker-token header",
        )),
        _ => Ok(()),
    }
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Rejects requests without the configured API key (no-op when none is configured).
pub async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(expected) = state.config.api_key.as_deref() {
        if !secret_matches(header(&req, API_KEY_HEADER), expected) {
            return ApiError::Unauthorized("missing or invalid x-api-key header").into_response();
        }
    }
    next.run(req).await
}

/// Rejects worker requests without the configured join token (no-op when none is configured).
pub async fn require_worker_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    match check_worker_token(
        state.config.worker_token.as_deref(),
        header(&req, WORKER_TOKEN_HEADER),
    ) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(secret_matches(Some("admin"), "admin"));
        assert!(!secret_matches(Some("admin2"), "admin"));
        assert!(!secret_matches(Some("Admin"), "admin"));
        assert!(!secret_matches(None, "admin"));
    }
}
