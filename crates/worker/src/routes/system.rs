//! `/health`, `/ready`, `/metrics` and `POST /api/v1/drain`.

use super::Shared;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use varpulis_api::worker::{DrainResponse, HealthResponse};
use varpulis_api::{Code, ErrorBody};

/// `GET /health`: always 200 while the process serves.
pub async fn health(State(state): State<Shared>) -> Json<HealthResponse> {
    Json(HealthResponse {
        role: "worker".to_owned(),
        status: "healthy".to_owned(),
        version: varpulis_api::VERSION.to_owned(),
        raft_role: None,
        leader_id: None,
        workers: None,
        worker_id: Some(state.config.worker_id.clone()),
        ws_connections: None,
    })
}

/// `GET /ready`: 200 once registered with a coordinator (at once when standalone), 503 otherwise
/// and while draining.
pub async fn ready(State(state): State<Shared>) -> Response {
    if state.is_draining() {
        let body = ErrorBody::new(Code::Draining, "worker is draining");
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    if state.is_registered() {
        Json(serde_json::json!({"status": "ready", "worker_id": state.config.worker_id}))
            .into_response()
    } else {
        let body = ErrorBody::new(Code::NotRegistered, "not yet registered with a coordinator");
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn prometheus(State(state): State<Shared>) -> Response {
    let mut text = state.metrics.render(&state.registry.all());
    let fenced = u8::from(state.lease.fence_recorded() || state.lease.is_fenced());
    text.push_str(&format!(
        "# TYPE varpulis_worker_fenced gauge\nvarpulis_worker_fenced {fenced}\n\
         # TYPE varpulis_worker_fences_total counter\nvarpulis_worker_fences_total {}\n\
         # TYPE varpulis_worker_lease_session_renewals_total counter\n\
         varpulis_worker_lease_session_renewals_total {}\n",
        state.lease.fence_count(),
        state.lease.session_renewals()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `POST /api/v1/drain`: stop accepting deploys; running pipelines keep running.
pub async fn drain(State(state): State<Shared>) -> Json<DrainResponse> {
    state.start_draining();
    tracing::info!("drain requested: no new deploys");
    Json(DrainResponse {
        draining: true,
        pipelines_running: state.registry.len(),
    })
}
