//! The leader's NATS subscriptions: worker registrations and heartbeats.
//!
//! Replies carry the route's JSON answer, with its HTTP status in the `varpulis-status` header;
//! the join token travels in the `x-worker-token` header, exactly like the HTTP header.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use varpulis_api::cluster::RegisterWorkerRequest;
use varpulis_api::nats::{HEARTBEAT_WILDCARD, PREFIX, REGISTER_SUBJECT, STATUS_HEADER};
use varpulis_api::WORKER_TOKEN_HEADER;

use crate::error::ApiJson;
use crate::state::AppState;
use crate::transport::nats::link::NatsLink;
use crate::transport::worker_client::TRANSPORT_LABEL;

/// How often a node checks whether it gained or lost leadership.
const LEADER_POLL: Duration = Duration::from_millis(200);

/// Runs until shutdown: subscribes to registrations and heartbeats while this node leads.
pub async fn run(state: AppState) {
    let Some(link) = state.nats.clone() else {
        return;
    };
    let mut serving: Option<CancellationToken> = None;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = tokio::time::sleep(LEADER_POLL) => {}
        }
        let leader = state.raft.is_leader();
        match (&serving, leader) {
            (None, true) => {
                let stop = state.shutdown.child_token();
                match subscribe(&state, &link, stop.clone()).await {
                    Ok(()) => {
                        tracing::info!("leader: serving worker registrations over nats");
                        serving = Some(stop);
                    }
                    Err(e) => tracing::warn!("cannot subscribe to worker subjects: {e}"),
                }
            }
            (Some(stop), false) => {
                tracing::info!("no longer leader: leaving the nats worker subjects");
                stop.cancel();
                serving = None;
            }
            _ => {}
        }
    }
    if let Some(stop) = serving {
        stop.cancel();
    }
}

async fn subscribe(
    state: &AppState,
    link: &NatsLink,
    stop: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let register = link.client.subscribe(REGISTER_SUBJECT).await?;
    let heartbeats = link.client.subscribe(HEARTBEAT_WILDCARD).await?;
    tokio::spawn(serve(state.clone(), link.clone(), register, stop.clone()));
    tokio::spawn(serve(state.clone(), link.clone(), heartbeats, stop));
    Ok(())
}

async fn serve(
    state: AppState,
    link: NatsLink,
    mut sub: async_nats::Subscriber,
    stop: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            m = sub.next() => match m { Some(m) => m, None => break },
        };
        let state = state.clone();
        let link = link.clone();
        tokio::spawn(async move {
            let response = handle(&state, &msg).await;
            if let Some(reply) = msg.reply {
                let status = response.status().as_u16();
                let body = axum::body::to_bytes(response.into_body(), 1024 * 1024)
                    .await
                    .unwrap_or_default();
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(STATUS_HEADER, status.to_string().as_str());
                if let Err(e) = link.client.publish_with_headers(reply, headers, body).await {
                    tracing::debug!("cannot reply over nats: {e}");
                }
            }
        });
    }
    let _ = sub.unsubscribe().await;
}

fn error_response(status: axum::http::StatusCode, code: &str, message: String) -> Response {
    (status, axum::Json(json!({"error": message, "code": code}))).into_response()
}

/// Runs one register or heartbeat message through the HTTP handlers.
async fn handle(state: &AppState, msg: &async_nats::Message) -> Response {
    use axum::http::StatusCode;
    if let Some(expected) = state.config.worker_token.as_deref() {
        let presented = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(WORKER_TOKEN_HEADER))
            .map(|v| v.as_str());
        if !crate::auth::secret_matches(presented, expected) {
            return error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong worker token".into(),
            );
        }
    }
    let subject = msg.subject.as_str();
    if subject == REGISTER_SUBJECT {
        let mut req: RegisterWorkerRequest = match serde_json::from_slice(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("invalid registration: {e}"),
                )
            }
        };
        req.labels
            .insert(TRANSPORT_LABEL.to_string(), "nats".to_string());
        return crate::routes::workers::register(
            State(state.clone()),
            HeaderMap::new(),
            ApiJson(req),
        )
        .await
        .into_response();
    }
    let Some(worker_id) = subject
        .strip_prefix(PREFIX)
        .and_then(|s| s.strip_prefix(".heartbeat."))
        .filter(|id| !id.is_empty() && !id.contains('.'))
    else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no handler for subject `{subject}`"),
        );
    };
    crate::routes::workers::heartbeat(
        State(state.clone()),
        Path(worker_id.to_string()),
        Bytes::copy_from_slice(&msg.payload),
    )
    .await
    .into_response()
}
