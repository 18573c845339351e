//! The NATS transport to the coordinators (spec/nats-transport.txt): request/reply on
//! `varpulis.cluster.register` and `varpulis.cluster.heartbeat.{worker_id}` with the HTTP
//! bodies, the worker's API key in `x-api-key` and the join token in `x-worker-token` headers,
//! the HTTP status of each reply in its
//! `varpulis-status` header. The same connection carries the worker API commands
//! (`routes::nats`).
//!
//! The NATS protocol has no subject for deregistration, checkpoint pushes or a worker's own
//! drain request: those calls answer [`CallError::Unsupported`] without sending anything.

use super::CallError;
use serde_json::Value;
use std::time::Duration;
use varpulis_api::nats::{heartbeat_subject, REGISTER_SUBJECT, STATUS_HEADER};

/// First reconnect delay to the NATS server.
const RECONNECT_INITIAL: Duration = Duration::from_millis(500);

/// One worker's NATS link to its coordinators.
#[derive(Debug)]
pub struct NatsLink {
    client: async_nats::Client,
    worker_id: String,
    api_key: Option<String>,
    worker_token: Option<String>,
}

impl NatsLink {
    /// Connects to `url` (comma-separated list allowed); the connection is retried in the
    /// background forever, so this returns at once.
    pub async fn connect(
        url: &str,
        worker_id: &str,
        api_key: Option<String>,
        worker_token: Option<String>,
        request_timeout: Duration,
        tls: &crate::config::ClientTlsFiles,
    ) -> Result<Self, String> {
        let addrs = varpulis_api::nats::parse_servers::<async_nats::ServerAddr>(url)?;
        let options = tls.nats_options(async_nats::ConnectOptions::new());
        let client = varpulis_api::nats::connect(
            options,
            format!("varpulis-worker-{worker_id}"),
            addrs,
            request_timeout,
            RECONNECT_INITIAL,
        )
        .await
        .map_err(|e| format!("nats: {e}"))?;
        Ok(Self {
            client,
            worker_id: worker_id.to_owned(),
            api_key,
            worker_token,
        })
    }

    /// The connection (shared with the command subscription).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Sends a request and returns the reply's status and JSON payload (`null` when it is
    /// not JSON).
    async fn request(
        &self,
        subject: String,
        body: &impl serde::Serialize,
    ) -> Result<(u16, Value), CallError> {
        let payload =
            serde_json::to_vec(body).map_err(|e| CallError::Unavailable(e.to_string()))?;
        let mut headers = async_nats::HeaderMap::new();
        if let Some(k) = &self.api_key {
            headers.insert(varpulis_api::API_KEY_HEADER, k.as_str());
        }
        if let Some(t) = &self.worker_token {
            headers.insert(varpulis_api::WORKER_TOKEN_HEADER, t.as_str());
        }
        let msg = self
            .client
            .request_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| CallError::Unavailable(format!("nats: {e}")))?;
        let value: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
        Ok((reply_status(&msg, &value), value))
    }

    /// Registration; `Ok` on a 2xx reply.
    pub async fn register(&self, body: &impl serde::Serialize) -> Result<(), CallError> {
        match self.request(REGISTER_SUBJECT.to_owned(), body).await? {
            (200..=299, _) => Ok(()),
            (status, v) => Err(CallError::Unavailable(format!("{status}: {v}"))),
        }
    }

    /// A heartbeat; the reply's JSON on a 2xx, `UnknownWorker` on a 404.
    pub async fn heartbeat(&self, body: &impl serde::Serialize) -> Result<Value, CallError> {
        match self
            .request(heartbeat_subject(&self.worker_id), body)
            .await?
        {
            (200..=299, v) => Ok(v),
            (404, _) => Err(CallError::UnknownWorker),
            (status, v) => Err(CallError::Unavailable(format!("{status}: {v}"))),
        }
    }
}

/// The HTTP status of a reply: the `varpulis-status` header, else 200 unless the payload is an
/// `{"error": ...}` object (500).
pub fn reply_status(msg: &async_nats::Message, payload: &Value) -> u16 {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(STATUS_HEADER))
        .and_then(|v| v.as_str().parse::<u16>().ok())
        .unwrap_or(if payload.get("error").is_some() {
            500
        } else {
            200
        })
}
