//! The coordinator's HTTP API, one module per resource.
//!
//! Layering (outermost first): API key (or worker token on the two worker routes) → leader gate
//! (forward writes to the leader, linearizable reads) → handler. `/health` and `/ready` are open.
//! The Raft routes (`/raft/*`) come from `varpulis_raft::router` and carry their own auth.

pub mod connectors;
pub mod events;
pub mod groups;
pub mod health;
pub mod migrations;
pub mod output;
pub mod workers;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use varpulis_api::ErrorBody;

use crate::error::ApiError;
use crate::state::AppState;

const GROUPS: &str = "/api/v1/cluster/pipeline-groups";

/// The API router (without `/raft/*`).
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/cluster/workers", get(workers::list))
        .route(
            "/api/v1/cluster/workers/{id}",
            get(workers::get).delete(workers::delete),
        )
        .route(GROUPS, post(groups::create).get(groups::list))
        .route(
            &format!("{GROUPS}/{{id}}"),
            get(groups::get).delete(groups::delete).put(groups::update),
        )
        .route(&format!("{GROUPS}/{{id}}/inject"), post(groups::inject))
        .route(
            &format!("{GROUPS}/{{id}}/inject-batch"),
            post(groups::inject_batch),
        )
        .route("/api/v1/cluster/topology", get(groups::topology))
        .route(
            "/api/v1/cluster/connectors",
            post(connectors::create).get(connectors::list),
        )
        .route(
            "/api/v1/cluster/connectors/{name}",
            get(connectors::get)
                .put(connectors::update)
                .delete(connectors::delete),
        )
        .route(
            "/api/v1/cluster/workers/{id}/drain",
            post(crate::drain::drain),
        )
        .route(
            "/api/v1/cluster/rebalance",
            post(crate::rebalance::rebalance),
        )
        .route("/api/v1/cluster/migrations", get(migrations::list))
        .route("/api/v1/cluster/events", get(events::stream_events))
        .route(
            &format!("{GROUPS}/{{id}}/output"),
            get(output::stream_group_output),
        )
        .route(&format!("{GROUPS}/{{id}}/rollback"), post(groups::rollback))
        .route(&format!("{GROUPS}/{{id}}/versions"), get(groups::versions))
        .route("/metrics", get(health::metrics))
        .layer(from_fn_with_state(state.clone(), crate::proxy::leader_gate))
        .layer(from_fn_with_state(
            state.clone(),
            crate::auth::require_api_key,
        ));
    // A registration larger than its fields' limits allow is refused before it is parsed
    // (docs/security.md): a 9 MB body must not cost the leader a 9 MB parse.
    let worker_routes = Router::new()
        .route(
            "/api/v1/cluster/workers/register",
            post(workers::register).layer(from_fn_with_state(
                state.clone(),
                crate::body_cap::cap_registration,
            )),
        )
        .route(
            "/api/v1/cluster/workers/{id}/heartbeat",
            post(workers::heartbeat),
        )
        .route(
            "/api/v1/cluster/workers/{id}/checkpoints",
            post(workers::push_checkpoint),
        )
        .layer(from_fn_with_state(state.clone(), crate::proxy::leader_gate))
        .layer(from_fn_with_state(
            state.clone(),
            crate::auth::require_worker_token,
        ));
    let open = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready));
    Router::new()
        .merge(api)
        .merge(worker_routes)
        .merge(open)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(from_fn(json_errors))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Turns the framework's bare error answers (405, 413, ...) into JSON error bodies.
/// A 413 is answered before the body was read: it also says `Connection: close`, so the client
/// does not reuse a connection the server is about to drop (else its next request on it fails).
async fn json_errors(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let status = response.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/plain; version"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::BAD_REQUEST => "bad_request",
        _ => "error",
    };
    let message = status.canonical_reason().unwrap_or("error").to_string();
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = Json(ErrorBody::new(code, message)).into_response();
    let (_, body) = body.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, body)
}
