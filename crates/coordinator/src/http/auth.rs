//! Authentication middleware: the cluster API key and the worker join token.
//!
//! `x-api-key` guards every API route except `/health`, `/ready` and the worker routes
//! (register, heartbeat, checkpoint push); those need `x-worker-token` only when a worker token
//! is configured. A worker's deregistration takes either the cluster API key or the worker's
//! own key (with the join token when one is configured): [`require_operator_or_worker`].
//! On the API and worker routes the key and token checks run inside the gate service
//! ([`crate::http::gate`]), together with the leader gate.

use axum::extract::{Path, Request, State};
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

/// `DELETE /api/v1/cluster/workers/{id}`: the cluster API key (an operator), or the key worker
/// `id` registered with plus the join token when one is configured (the worker deregistering
/// itself at shutdown). Checked against this node's applied state, before any forwarding.
pub async fn require_operator_or_worker(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
    next: Next,
) -> Response {
    let presented = header(&req, API_KEY_HEADER);
    let operator = match state.config.api_key.as_deref() {
        Some(expected) => secret_matches(presented, expected),
        None => true,
    };
    if operator {
        return next.run(req).await;
    }
    if let Err(e) = check_worker_token(
        state.config.worker_token.as_deref(),
        header(&req, WORKER_TOKEN_HEADER),
    ) {
        return e.into_response();
    }
    let own_key = state.read(|s| {
        s.worker(&id).is_some_and(|w| {
            !w.api_key.is_empty()
                && presented.is_some_and(|p| varpulis_cluster::identity::key_matches(p, &w.api_key))
        })
    });
    if !own_key {
        return ApiError::Unauthorized("missing or invalid x-api-key header").into_response();
    }
    next.run(req).await
}
