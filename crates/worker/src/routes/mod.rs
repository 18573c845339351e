//! The worker API, over HTTP (the router) and over NATS subjects ([`nats`], each command
//! mapped onto its route): deploy and manage pipelines ([`deploy`]), events in and outputs out
//! ([`inject`], [`output`]), state ([`checkpoint`]), rolling updates ([`handover`]) and the
//! worker itself ([`system`]).
//!
//! Layer order (outermost first): JSON error rewriting, body limit, API key ([`middleware`]),
//! timeout + concurrency limit (not on the probes and `/metrics`), handlers.

pub mod checkpoint;
pub mod deploy;
pub mod handover;
pub mod inject;
pub mod middleware;
pub mod nats;
pub mod output;
pub mod system;

use crate::error::WorkerError;
use crate::pipeline::Pipeline;
use crate::state::AppState;
use axum::error_handling::HandleErrorLayer;
use axum::extract::FromRequest;
use axum::http::Method;
use axum::routing::{get, post};
use axum::{BoxError, Router};
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;

/// Shared state as handlers see it.
pub type Shared = Arc<AppState>;

/// `axum::Json` whose rejections become `WorkerError` (JSON body, 400/413/415).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(WorkerError))]
pub struct JsonBody<T>(pub T);

/// The pipeline with this id, or `PipelineNotFound`.
pub fn find(state: &AppState, id: &str) -> Result<Arc<Pipeline>, WorkerError> {
    state
        .registry
        .get(id)
        .ok_or_else(|| WorkerError::PipelineNotFound(id.to_owned()))
}

/// Builds the router.
///
/// `/health`, `/ready` and `/metrics` sit outside the timeout and concurrency limit: they
/// answer even when every request slot waits on a busy pipeline.
pub fn router(state: Shared) -> Router {
    let cfg = &state.config;
    let limited = Router::new()
        .route("/api/v1/pipelines", post(deploy::deploy).get(deploy::list))
        .route(
            "/api/v1/pipelines/{id}",
            get(deploy::get_one).delete(deploy::delete),
        )
        .route("/api/v1/pipelines/{id}/events", post(inject::inject))
        .route(
            "/api/v1/pipelines/{id}/events-batch",
            post(inject::inject_batch),
        )
        .route(
            "/api/v1/pipelines/{id}/checkpoint",
            post(checkpoint::checkpoint),
        )
        .route("/api/v1/pipelines/{id}/restore", post(checkpoint::restore))
        .route("/api/v1/pipelines/{id}/metrics", get(checkpoint::metrics))
        .route("/api/v1/pipelines/{id}/output", get(output::stream_output))
        .route("/api/v1/pipelines/{id}/handover", post(handover::handover))
        .route("/api/v1/drain", post(system::drain))
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: BoxError| async move {
                    if e.is::<tower::timeout::error::Elapsed>() {
                        WorkerError::Timeout
                    } else {
                        WorkerError::Internal(e.to_string())
                    }
                }))
                .timeout(cfg.request_timeout)
                .concurrency_limit(cfg.max_concurrent_requests),
        );
    Router::new()
        .route("/metrics", get(system::prometheus))
        .route("/health", get(system::health))
        .route("/ready", get(system::ready))
        .merge(limited)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::require_api_key,
        ))
        .layer(RequestBodyLimitLayer::new(cfg.body_limit))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::json_errors,
        ))
        .with_state(state)
}

async fn not_found(method: Method, uri: axum::http::Uri) -> WorkerError {
    WorkerError::RouteNotFound(format!("{method} {}", uri.path()))
}
