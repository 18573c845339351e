//! Authentication middleware: the cluster API key and the worker join token.
//!
//! `x-api-key` guards every API route except `/health`, `/ready` and the worker routes
//! (register, heartbeat, checkpoint push); those need `x-worker-token` only when a worker token
//! is configured.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use varpulis_api::{API_KEY_HEADER, WORKER_TOKEN_HEADER};

use crate::auth::{check_worker_token, secret_matches};
use crate::error::ApiError;
use crate::node::AppState;

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
