//! The leader's NATS subscriptions: worker registrations and heartbeats.
//!
//! Replies carry the route's JSON answer, with its HTTP status in the `varpulis-status` header;
//! the join token travels in the `x-worker-token` header, exactly like the HTTP header.

use axum::http::StatusCode;
use futures::StreamExt;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use varpulis_api::cluster::RegisterWorkerRequest;
use varpulis_api::nats::{HEARTBEAT_WILDCARD, PREFIX, REGISTER_SUBJECT, STATUS_HEADER};
use varpulis_api::{API_KEY_HEADER, WORKER_TOKEN_HEADER};

use crate::error::ApiError;
use crate::node::AppState;
use crate::transport::nats::link::NatsLink;
use crate::transport::worker_client::TRANSPORT_LABEL;
use crate::workers;

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
            let (status, body) = handle(&state, &msg).await;
            if let Some(reply) = msg.reply {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(STATUS_HEADER, status.to_string().as_str());
                if let Err(e) = link
                    .client
                    .publish_with_headers(reply, headers, body.into())
                    .await
                {
                    tracing::debug!("cannot reply over nats: {e}");
                }
            }
        });
    }
    let _ = sub.unsubscribe().await;
}

/// Runs one register or heartbeat message through the worker service; returns the HTTP status
/// and JSON body of the answer (an error as `{"error", "code"}`).
async fn handle(state: &AppState, msg: &async_nats::Message) -> (u16, Vec<u8>) {
    let (status, body) = match answer(state, msg).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::debug!(subject = %msg.subject, "nats worker request refused: {e}");
            (e.code().status(), serde_json::to_vec(&e.body()))
        }
    };
    (status, body.unwrap_or_default())
}

async fn answer(
    state: &AppState,
    msg: &async_nats::Message,
) -> Result<(u16, serde_json::Result<Vec<u8>>), ApiError> {
    let header = |name: &str| {
        msg.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let presented = header(WORKER_TOKEN_HEADER);
    crate::auth::check_worker_token(state.config.worker_token.as_deref(), presented.as_deref())?;
    let caller = workers::Caller {
        key: header(API_KEY_HEADER),
        force: false,
    };
    let subject = msg.subject.as_str();
    if subject == REGISTER_SUBJECT {
        let mut req: RegisterWorkerRequest = serde_json::from_slice(&msg.payload)
            .map_err(|e| ApiError::BadRequest(format!("invalid registration: {e}")))?;
        req.labels
            .insert(TRANSPORT_LABEL.to_string(), "nats".to_string());
        let registered = workers::register(
            &state.leader,
            req,
            None,
            &caller,
            state.config.api_key.as_deref(),
        )
        .await?;
        let status = if registered.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return Ok((status.as_u16(), serde_json::to_vec(&registered.response)));
    }
    let worker_id = subject
        .strip_prefix(PREFIX)
        .and_then(|s| s.strip_prefix(".heartbeat."))
        .filter(|id| !id.is_empty() && !id.contains('.'))
        .ok_or_else(|| ApiError::NotFound(format!("no handler for subject `{subject}`")))?;
    let req = workers::parse_heartbeat(&msg.payload)?;
    let answer = workers::heartbeat(&state.leader, worker_id, req, caller.key.as_deref()).await?;
    Ok((StatusCode::OK.as_u16(), serde_json::to_vec(&answer)))
}
