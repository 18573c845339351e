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
//!
//! The session also renews the worker's lease ([`varpulis_api::session::SessionMessage`]): the
//! worker sends `{"type":"renew","seq":N}` four times per lease (every 4 s by default); the leader records it as a sign of
//! life (`Liveness::renewed`, which the sweep measures from) and answers
//! `{"type":"lease","seq":N,"lease_ms":L}`; a follower answers `not_leader` with the leader's
//! URL so the worker moves its session there.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use varpulis_api::session::SessionMessage;
use varpulis_cluster::registry::WorkerStatus;

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
                Some(Ok(Message::Text(text))) => {
                    let Some(answer) = answer(&state, &id, text.as_str()) else {
                        continue;
                    };
                    let Ok(body) = serde_json::to_string(&answer) else {
                        continue;
                    };
                    if socket.send(Message::Text(body.into())).await.is_err() {
                        break;
                    }
                }
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

/// The answer to one text message of worker `id`'s session (`None`: not a request; an unknown
/// or malformed message is ignored, so newer workers can talk to older coordinators).
fn answer(state: &AppState, id: &str, text: &str) -> Option<SessionMessage> {
    let SessionMessage::Renew { seq } = serde_json::from_str(text).ok()? else {
        return None;
    };
    let ctx = &state.leader;
    if !ctx.store.is_leader() {
        let leader = state.raft.leader().map(|(_, url)| url);
        return Some(SessionMessage::NotLeader { seq, leader });
    }
    // A leader cut off from its quorum may already be deposed: it grants nothing (the bound
    // on a deposed leader's grants, docs/coordinator.md "Leases and fencing").
    let (grant, _) = crate::workers::current_grant(ctx);
    let Some(lease_ms) = crate::workers::lease_ms_of(ctx, &grant) else {
        return Some(SessionMessage::Refused {
            seq,
            reason: "this leader lost its quorum".to_owned(),
        });
    };
    let status = ctx.store.read(|s| s.worker(id).map(|w| w.status));
    match status {
        Some(WorkerStatus::Ready | WorkerStatus::Busy | WorkerStatus::Draining) => {}
        other => {
            let reason = match other {
                Some(status) => format!("worker is {status:?}; heartbeat to be readmitted"),
                None => "worker is not registered".to_owned(),
            };
            return Some(SessionMessage::Refused { seq, reason });
        }
    }
    // Recorded before the answer leaves, as for a heartbeat: the worker counts the lease from
    // when it sent the renewal, which is earlier still.
    ctx.liveness
        .renewed(id, tokio::time::Instant::now(), grant.timeout);
    Some(SessionMessage::Lease { seq, lease_ms })
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
