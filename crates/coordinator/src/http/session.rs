//! Worker sessions: `GET /api/v1/cluster/workers/{id}/session` (WebSocket) and the hint route
//! `POST /api/v1/cluster/workers/{id}/suspect`.
//!
//! Each worker keeps one session open with some coordinator (any member; GETs are never
//! forwarded), authenticated with its own key in `x-api-key` (the key it registered with) and
//! the join token like heartbeats. The session carries the worker's pings; `/health` reports how
//! many this node holds (`ws_connections`). When a session closes without the node shutting
//! down, the node logs `WebSocket disconnected: <id>` and passes the hint to the leader (a
//! follower posts it to `.../suspect` on the leader), which probes the worker at once
//! ([`crate::leader::suspect`]).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

use crate::error::ApiError;
use crate::node::AppState;

/// `GET /api/v1/cluster/workers/{id}/session`: upgrades to the worker's session. 404 for an
/// unknown worker, 401 when `x-api-key` is not the key it registered with.
pub async fn session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Some(key) = state.read(|s| s.worker(&id).map(|w| w.api_key.clone())) else {
        return Err(ApiError::NotFound(format!(
            "worker '{id}' is not registered"
        )));
    };
    let presented = headers
        .get(varpulis_api::API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !key.is_empty() && !constant_time_eq::constant_time_eq(key.as_bytes(), presented.as_bytes())
    {
        return Err(ApiError::Unauthorized(
            "the session needs the worker's own key",
        ));
    }
    Ok(ws.on_upgrade(move |socket| hold(state, id, socket)))
}

/// Holds one session until it closes, then passes the hint on.
async fn hold(state: AppState, id: String, mut socket: WebSocket) {
    state.sessions.fetch_add(1, Ordering::Relaxed);
    tracing::info!(worker_id = %id, "WebSocket connected: {id}");
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    state.sessions.fetch_sub(1, Ordering::Relaxed);
    if state.shutdown.is_cancelled() {
        return;
    }
    tracing::warn!(worker_id = %id, "WebSocket disconnected: {id}");
    tokio::spawn(hint(state, id));
}

/// Passes a session-loss hint to the leader (this node, or over HTTP).
async fn hint(state: AppState, id: String) {
    if state.leader.store.is_leader() {
        crate::leader::suspect::check(&state.leader, &state.http, &id).await;
        return;
    }
    let Some((_, leader)) = state.raft.leader() else {
        return;
    };
    let mut req = state
        .http
        .post(format!("{leader}/api/v1/cluster/workers/{id}/suspect"));
    if let Some(t) = &state.config.worker_token {
        req = req.header(varpulis_api::WORKER_TOKEN_HEADER, t);
    }
    if let Err(e) = req.send().await {
        tracing::debug!(worker_id = %id, "cannot pass the session hint to the leader: {e}");
    }
}

/// `POST /api/v1/cluster/workers/{id}/suspect` (worker token; forwarded to the leader): probe
/// the worker now; `{"marked": true}` when it was marked unhealthy.
pub async fn suspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let marked = crate::leader::suspect::check(&state.leader, &state.http, &id).await;
    Ok(Json(json!({ "marked": marked })))
}
