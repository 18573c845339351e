//! The worker's HTTP surface: route table, API-key check, JSON errors for every failure.
//!
//! Layer order (outermost first): JSON error rewriting, body limit, timeout + concurrency
//! limit, API key, handlers.

mod handover;
mod output;
pub(crate) mod pipelines;
mod system;

use crate::error::WorkerError;
use crate::server::AppState;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Router};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;

/// Shared state as handlers see it.
pub type Shared = Arc<AppState>;

/// `axum::Json` whose rejections become `WorkerError` (JSON body, 400/413/415).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(WorkerError))]
pub struct JsonBody<T>(pub T);

/// Builds the router.
pub fn router(state: Shared) -> Router {
    let cfg = &state.config;
    let api = Router::new()
        .route(
            "/api/v1/pipelines",
            post(pipelines::deploy).get(pipelines::list),
        )
        .route(
            "/api/v1/pipelines/{id}",
            get(pipelines::get_one).delete(pipelines::delete),
        )
        .route("/api/v1/pipelines/{id}/events", post(pipelines::inject))
        .route(
            "/api/v1/pipelines/{id}/events-batch",
            post(pipelines::inject_batch),
        )
        .route(
            "/api/v1/pipelines/{id}/checkpoint",
            post(pipelines::checkpoint),
        )
        .route("/api/v1/pipelines/{id}/restore", post(pipelines::restore))
        .route("/api/v1/pipelines/{id}/metrics", get(pipelines::metrics))
        .route("/api/v1/pipelines/{id}/output", get(output::stream_output))
        .route("/api/v1/pipelines/{id}/handover", post(handover::handover))
        .route("/api/v1/drain", post(system::drain))
        .route("/metrics", get(system::prometheus))
        .route("/health", get(system::health))
        .route("/ready", get(system::ready))
        .fallback(not_found);
    api.layer(middleware::from_fn_with_state(
        state.clone(),
        require_api_key,
    ))
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
    )
    .layer(RequestBodyLimitLayer::new(cfg.body_limit))
    .layer(axum::extract::DefaultBodyLimit::disable())
    .layer(middleware::from_fn_with_state(state.clone(), json_errors))
    .with_state(state)
}

async fn not_found(method: Method, uri: axum::http::Uri) -> WorkerError {
    WorkerError::RouteNotFound(format!("{method} {}", uri.path()))
}

/// Rejects requests without the right `x-api-key` (except `/health` and `/ready`).
async fn require_api_key(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let Some(expected) = state.config.api_key.as_deref() else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == "/health" || path == "/ready" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(varpulis_api::API_KEY_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if constant_time_eq::constant_time_eq(given, expected.as_bytes()) {
        next.run(req).await
    } else {
        WorkerError::Unauthorized.into_response()
    }
}

/// Turns every non-JSON error answer (405 from the router, 413 from the body limit, ...)
/// into an `ErrorBody`, and counts error answers. A 413 also says `Connection: close`: it is
/// answered before the body was read, and a client reusing that connection would fail.
async fn json_errors(State(state): State<Shared>, req: Request, next: Next) -> Response {
    with_close_on_413(json_error_body(&state, req, next).await)
}

async fn json_error_body(state: &Shared, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    state.metrics.request_errors.fetch_add(1, Ordering::Relaxed);
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let err = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            WorkerError::PayloadTooLarge(format!("limit is {} bytes", state.config.body_limit))
        }
        StatusCode::NOT_FOUND => WorkerError::RouteNotFound(format!("{method} {path}")),
        StatusCode::METHOD_NOT_ALLOWED => {
            let mut r = (
                status,
                axum::Json(varpulis_api::ErrorBody::new(
                    varpulis_api::Code::MethodNotAllowed,
                    format!("method {method} not allowed on {path}"),
                )),
            )
                .into_response();
            if let Some(allow) = resp.headers().get(header::ALLOW) {
                r.headers_mut().insert(header::ALLOW, allow.clone());
            }
            return r;
        }
        StatusCode::REQUEST_TIMEOUT => WorkerError::Timeout,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            WorkerError::UnsupportedMediaType("unsupported content type".into())
        }
        s if s.is_client_error() => {
            WorkerError::BadRequest(s.canonical_reason().unwrap_or("bad request").into())
        }
        s => WorkerError::Internal(s.canonical_reason().unwrap_or("error").into()),
    };
    let mut r = err.into_response();
    *r.status_mut() = status;
    r
}

/// Adds `Connection: close` to a 413 answer.
fn with_close_on_413(mut resp: Response) -> Response {
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        resp.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    resp
}
