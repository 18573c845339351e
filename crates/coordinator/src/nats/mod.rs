//! NATS cluster transport, coordinator side (spec/nats-transport.txt, docs/nats.md).
//!
//! Selected with `--transport nats --nats-url URL`. Every node connects to NATS; the HTTP API
//! stays fully available (users keep using it, followers keep proxying writes).
//!
//! - The **leader** subscribes to `varpulis.cluster.register` (request/reply) and
//!   `varpulis.cluster.heartbeat.>`, and feeds each message to the very handlers behind
//!   `POST /api/v1/cluster/workers/register` and `.../{id}/heartbeat` (same validation, same
//!   Raft writes, same liveness bookkeeping). It drops the subscriptions when it loses
//!   leadership, so a worker's request always reaches the node that can act on it; while there
//!   is no leader the worker sees "no responders" and retries.
//! - A worker that registered over NATS is marked with the label `varpulis.transport=nats`
//!   (replicated with its registration), so any node, including a new leader, sends that
//!   worker's commands (deploy, undeploy, inject, inject_batch, checkpoint) as requests on
//!   `varpulis.cluster.cmd.{worker_id}.{cmd}`. Workers registered over HTTP keep being called
//!   over HTTP, so both kinds can share a cluster.
//!
//! Replies carry the worker route's JSON answer, with its HTTP status in the `varpulis-status`
//! header; the join token travels in the `x-worker-token` header and the worker's API key in
//! `x-api-key`, exactly like the HTTP headers.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use varpulis_api::cluster::RegisterWorkerRequest;
use varpulis_api::{API_KEY_HEADER, WORKER_TOKEN_HEADER};

use crate::error::ApiJson;
use crate::state::AppState;

pub use varpulis_api::nats::{
    command_subject, Transport, HEARTBEAT_WILDCARD, PREFIX, REGISTER_SUBJECT, STATUS_HEADER,
};

/// Label recording that a worker registered over NATS (its commands go over NATS).
pub const TRANSPORT_LABEL: &str = "varpulis.transport";
/// How often a node checks whether it gained or lost leadership.
const LEADER_POLL: Duration = Duration::from_millis(200);
/// Largest delay between two reconnect attempts to the NATS server.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// A transport problem (the caller turns it into its own error type).
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The configuration names no usable NATS server.
    #[error("invalid NATS configuration: {0}")]
    Config(String),
    /// The request could not be sent or got no answer.
    #[error("worker '{worker_id}' unreachable over NATS: {message}")]
    Unreachable {
        /// Worker id.
        worker_id: String,
        /// async-nats' message.
        message: String,
    },
}

/// This node's NATS connection.
#[derive(Debug, Clone)]
pub struct NatsLink {
    /// The client (cheap to clone; reconnects by itself).
    pub client: async_nats::Client,
    /// Timeout of each command request.
    pub timeout: Duration,
}

/// Parses a comma-separated NATS server list.
pub fn parse_servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, NatsError> {
    varpulis_api::nats::parse_servers(url).map_err(NatsError::Config)
}

/// Connects (retrying in the background forever) when the config selects NATS.
pub async fn connect(
    config: &crate::config::CoordinatorConfig,
    node_id: u64,
) -> Result<Option<NatsLink>, NatsError> {
    if config.transport != Transport::Nats {
        return Ok(None);
    }
    let url = config
        .nats_url
        .as_deref()
        .ok_or_else(|| NatsError::Config("--transport nats needs --nats-url".into()))?;
    let addrs = parse_servers(url)?;
    let client = async_nats::ConnectOptions::new()
        .name(format!("varpulis-coordinator-{node_id}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(config.http_client_timeout))
        .reconnect_delay_callback(|n| {
            let shift = n.saturating_sub(1).min(16) as u32;
            Duration::from_millis(250)
                .saturating_mul(1u32 << shift)
                .min(RECONNECT_MAX)
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("nats transport connected"),
                other => tracing::warn!("nats transport: {other}"),
            }
        })
        .connect(addrs)
        .await
        .map_err(|e| NatsError::Config(e.to_string()))?;
    Ok(Some(NatsLink {
        client,
        timeout: config.http_client_timeout,
    }))
}

/// The NATS link to use for `worker_id`, if this node has one and the worker registered over
/// NATS.
pub fn link_for(state: &AppState, worker_id: &str) -> Option<NatsLink> {
    let link = state.nats.as_ref()?;
    let nats = state.read(|s| {
        s.worker(worker_id)
            .is_some_and(|w| w.labels.get(TRANSPORT_LABEL).map(String::as_str) == Some("nats"))
    });
    nats.then(|| link.clone())
}

/// Like [`link_for`], for callers that only know the worker's address.
pub fn link_for_address(state: &AppState, address: &str) -> Option<(NatsLink, String)> {
    let link = state.nats.as_ref()?;
    let worker_id = state.read(|s| {
        s.workers()
            .find(|w| {
                w.address == address
                    && w.labels.get(TRANSPORT_LABEL).map(String::as_str) == Some("nats")
            })
            .map(|w| w.id.clone())
    })?;
    Some((link.clone(), worker_id))
}

/// Sends `cmd` with a JSON payload to a worker; returns the HTTP status and body of its answer.
pub async fn command(
    link: &NatsLink,
    worker_id: &str,
    api_key: &str,
    cmd: &str,
    payload: Vec<u8>,
) -> Result<(u16, Bytes), NatsError> {
    let mut headers = async_nats::HeaderMap::new();
    if !api_key.is_empty() {
        headers.insert(API_KEY_HEADER, api_key);
    }
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(payload.into())
        .timeout(Some(link.timeout));
    let msg = link
        .client
        .send_request(command_subject(worker_id, cmd), request)
        .await
        .map_err(|e| NatsError::Unreachable {
            worker_id: worker_id.to_string(),
            message: e.to_string(),
        })?;
    let status = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(STATUS_HEADER))
        .and_then(|v| v.as_str().parse::<u16>().ok())
        .unwrap_or(200);
    Ok((status, msg.payload))
}

fn truncate(text: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(text);
    match text.char_indices().nth(max) {
        Some((i, _)) => text[..i].to_string(),
        None => text.into_owned(),
    }
}

/// `deploy` over NATS (the HTTP deploy body); returns the worker's pipeline id or a message.
pub async fn deploy(
    link: &NatsLink,
    t: &crate::deploy::Target,
    body: &varpulis_api::worker::DeployPipelineRequest,
) -> Result<String, String> {
    let payload = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let (status, answer) = command(link, &t.worker_id, &t.api_key, "deploy", payload)
        .await
        .map_err(|e| e.to_string())?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "worker {} answered {status}: {}",
            t.worker_id,
            truncate(&answer, 500)
        ));
    }
    match serde_json::from_slice::<varpulis_api::worker::DeployPipelineResponse>(&answer) {
        Ok(deployed) => Ok(deployed.id),
        Err(_) => Ok(t.pipeline_id()),
    }
}

/// `undeploy` over NATS; a 404 counts as done.
pub async fn undeploy(link: &NatsLink, worker_id: &str, api_key: &str, pipeline_id: &str) -> bool {
    let payload = json!({ "pipeline_id": pipeline_id })
        .to_string()
        .into_bytes();
    match command(link, worker_id, api_key, "undeploy", payload).await {
        Ok((status, _)) => (200..300).contains(&status) || status == 404,
        Err(e) => {
            tracing::debug!(%worker_id, %pipeline_id, "undeploy failed: {e}");
            false
        }
    }
}

/// A pipeline route of the worker API (`events`, `events-batch`, `checkpoint`, `restore`) as the
/// matching NATS command; returns the status and body of the answer.
pub async fn pipeline_call(
    link: &NatsLink,
    worker_id: &str,
    api_key: &str,
    pipeline_id: &str,
    path: &str,
    body: &[u8],
    content_type: &str,
) -> Result<(u16, Bytes), NatsError> {
    let bad = |message: String| NatsError::Unreachable {
        worker_id: worker_id.to_string(),
        message,
    };
    let parsed = |body: &[u8]| -> Result<Value, NatsError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))
    };
    let (cmd, payload) = match path {
        "events" => ("inject", parsed(body)?),
        "events-batch" if content_type.starts_with("text/plain") => (
            "inject_batch",
            json!({ "events": String::from_utf8_lossy(body) }),
        ),
        "events-batch" => {
            let events = match parsed(body)? {
                Value::Object(mut o) => o.remove("events").unwrap_or(Value::Null),
                other => other,
            };
            ("inject_batch", json!({ "events": events }))
        }
        "checkpoint" => ("checkpoint", json!({})),
        "restore" => ("restore", json!({ "checkpoint": parsed(body)? })),
        other => return Err(bad(format!("no NATS command for `{other}`"))),
    };
    command(
        link,
        worker_id,
        api_key,
        cmd,
        pipeline_payload(pipeline_id, payload),
    )
    .await
}

/// The worker route `path` of pipeline `ids.2` on worker `ids.0` (key `ids.1`) over NATS, when
/// that worker registered over NATS; `None` means "use HTTP". Errors as the HTTP path gives them.
pub async fn post_pipeline(
    state: &AppState,
    ids: (&str, &str, &str),
    path: &str,
    body: &[u8],
    content_type: &str,
) -> Option<Result<Bytes, crate::error::ApiError>> {
    use crate::error::ApiError;
    let (worker_id, api_key, pipeline_id) = ids;
    let link = link_for(state, worker_id)?;
    let answer = pipeline_call(
        &link,
        worker_id,
        api_key,
        pipeline_id,
        path,
        body,
        content_type,
    )
    .await
    .map_err(|e| ApiError::BadGateway(e.to_string()));
    Some(answer.and_then(|(status, bytes)| {
        if (200..300).contains(&status) {
            Ok(bytes)
        } else {
            Err(ApiError::BadGateway(format!(
                "worker '{worker_id}' answered {status}: {}",
                truncate(&bytes, 2000).trim()
            )))
        }
    }))
}

/// `checkpoint` over NATS; `None` when refused or unreachable.
pub async fn checkpoint(
    link: &NatsLink,
    worker_id: &str,
    api_key: &str,
    pipeline_id: &str,
) -> Option<varpulis_api::worker::Checkpoint> {
    match pipeline_call(
        link,
        worker_id,
        api_key,
        pipeline_id,
        "checkpoint",
        b"",
        "application/json",
    )
    .await
    {
        Ok((200..=299, body)) => serde_json::from_slice(&body).ok(),
        Ok((status, _)) => {
            tracing::debug!(%worker_id, %pipeline_id, status, "checkpoint refused");
            None
        }
        Err(e) => {
            tracing::debug!(%worker_id, %pipeline_id, "checkpoint failed: {e}");
            None
        }
    }
}

/// Runs until shutdown: subscribes to registrations and heartbeats while this node leads.
pub async fn run(state: AppState) {
    let Some(link) = state.nats.clone() else {
        return;
    };
    let mut serving: Option<tokio_util::sync::CancellationToken> = None;
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
    stop: tokio_util::sync::CancellationToken,
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
    stop: tokio_util::sync::CancellationToken,
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

/// Payload of a pipeline command: `{pipeline_id, ...fields}`.
pub fn pipeline_payload(pipeline_id: &str, mut body: Value) -> Vec<u8> {
    if let Value::Object(obj) = &mut body {
        obj.insert("pipeline_id".into(), Value::String(pipeline_id.to_string()));
    }
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_payloads() {
        let p = pipeline_payload("p-1", json!({"event_type": "A"}));
        let v: Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v, json!({"event_type": "A", "pipeline_id": "p-1"}));
        assert!(parse_servers("nats://127.0.0.1:4222, nats://h:1").is_ok());
        assert!(parse_servers(" , ").is_err());
    }
}
