//! NATS cluster transport, worker side (spec/nats-transport.txt).
//!
//! - Registration: request/reply on `varpulis.cluster.register` with the same JSON as the HTTP
//!   route (`worker_id, address, api_key, capacity, labels, running_pipelines`), the join token
//!   in the `x-worker-token` header; retried with the registration backoff (1 s doubling to
//!   30 s, ±20 % jitter) until a coordinator leader answers.
//! - Heartbeats: every `heartbeat_interval` on `varpulis.cluster.heartbeat.{worker_id}` with the
//!   HTTP heartbeat body. They are sent as requests so the leader can answer `404` ("who are
//!   you?"), which makes the worker register again; a missing answer is only logged.
//! - Commands: the worker subscribes to `varpulis.cluster.cmd.{worker_id}.>` and maps each
//!   command onto its own REST route, run in-process through the same router (same validation,
//!   same errors, same API-key check with the `x-api-key` header of the message):
//!
//! | command | payload | route |
//! |---|---|---|
//! | `deploy` | `{name, source, ...}` (the HTTP deploy body) | `POST /api/v1/pipelines` |
//! | `undeploy` | `{pipeline_id}` | `DELETE /api/v1/pipelines/{id}` |
//! | `inject` | `{pipeline_id, event_type, fields}` | `POST .../{id}/events` |
//! | `inject_batch` | `{pipeline_id, events}` (array, or `.evt` text as a string) | `POST .../{id}/events-batch` |
//! | `checkpoint` | `{pipeline_id}` | `POST .../{id}/checkpoint` |
//! | `restore` | `{pipeline_id, checkpoint}` | `POST .../{id}/restore` |
//! | `drain` | `{}` | `POST /api/v1/drain` |
//!
//! Every reply carries the route's JSON answer as payload and its HTTP status code in the
//! `varpulis-status` header.

use crate::coordinator_client::{register_with_backoff, registration};
use crate::error::WorkerError;
use crate::server::AppState;
use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use varpulis_api::{API_KEY_HEADER, WORKER_TOKEN_HEADER};

pub use varpulis_api::nats::{
    command_subject, heartbeat_subject, valid_token, PREFIX, REGISTER_SUBJECT, STATUS_HEADER,
};
/// Largest delay between two reconnect attempts to the NATS server.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Checks the transport settings of a worker config (called by `WorkerConfig::validate`).
pub fn validate(cfg: &crate::config::WorkerConfig) -> Result<(), WorkerError> {
    use crate::transport::Transport;
    match cfg.transport {
        Transport::Http => Ok(()),
        Transport::Nats => {
            let url = cfg.nats_url.as_deref().ok_or_else(|| {
                WorkerError::Config("transport `nats` needs a NATS URL (--nats-url)".into())
            })?;
            parse_servers(url)?;
            if !valid_token(&cfg.worker_id) {
                return Err(WorkerError::Config(format!(
                    "worker id `{}` cannot be used in NATS subjects (letters, digits, `-`, `_`)",
                    cfg.worker_id
                )));
            }
            if !cfg.coordinators.is_empty() {
                return Err(WorkerError::Config(
                    "--coordinator is not used with --transport nats (workers find the \
                     coordinators through NATS)"
                        .into(),
                ));
            }
            Ok(())
        }
    }
}

/// Connects to `url` (comma-separated list allowed), retrying in the background forever.
pub async fn connect(
    url: &str,
    name: &str,
    request_timeout: Duration,
) -> Result<async_nats::Client, WorkerError> {
    let addrs = parse_servers(url)?;
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(request_timeout))
        .reconnect_delay_callback(|n| crate::connectors::nats::backoff(n, RECONNECT_MAX))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("nats transport connected"),
                other => tracing::warn!("nats transport: {other}"),
            }
        })
        .connect(addrs)
        .await
        .map_err(|e| WorkerError::Config(format!("nats: {e}")))
}

/// Parses a comma-separated NATS server list.
pub fn parse_servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, WorkerError> {
    varpulis_api::nats::parse_servers(url).map_err(WorkerError::Config)
}

/// The worker's NATS link: registration, heartbeats and the command subscription.
#[derive(Debug)]
pub struct NatsWorker {
    state: Arc<AppState>,
    client: async_nats::Client,
    router: Router,
}

impl NatsWorker {
    /// Connects to the configured NATS server (in the background) and builds the link.
    pub async fn connect(state: Arc<AppState>, router: Router) -> Result<Self, WorkerError> {
        let url = state
            .config
            .nats_url
            .clone()
            .ok_or_else(|| WorkerError::Config("--transport nats needs --nats-url".into()))?;
        let name = format!("varpulis-worker-{}", state.config.worker_id);
        let client = connect(&url, &name, state.config.coordinator_timeout).await?;
        Ok(Self {
            state,
            client,
            router,
        })
    }

    /// Subscribes to the command subjects, then registers and heartbeats until shutdown.
    pub async fn run(self: Arc<Self>) {
        let subject = format!("{PREFIX}.cmd.{}.>", self.state.config.worker_id);
        let commands = match self.client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%subject, "cannot subscribe to commands: {e}");
                return;
            }
        };
        let serve = self.clone().serve_commands(commands);
        let heartbeat = self.clone().register_and_heartbeat();
        tokio::join!(serve, heartbeat);
        let _ = tokio::time::timeout(Duration::from_millis(500), self.client.flush()).await;
    }

    async fn serve_commands(self: Arc<Self>, mut commands: async_nats::Subscriber) {
        let cancel = self.state.shutdown.clone();
        loop {
            let msg = tokio::select! {
                () = cancel.cancelled() => break,
                m = commands.next() => match m { Some(m) => m, None => break },
            };
            let this = self.clone();
            self.state
                .tasks
                .spawn(async move { this.handle(msg).await });
        }
        let _ = commands.unsubscribe().await;
    }

    /// Runs one command and replies (when the message has a reply subject).
    async fn handle(&self, msg: async_nats::Message) {
        let cmd = msg
            .subject
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        let api_key = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(API_KEY_HEADER))
            .map(|v| v.as_str().to_owned());
        let (status, body) = match to_request(&cmd, &msg.payload, api_key.as_deref()) {
            Ok(req) => self.call(req).await,
            Err(message) => (
                400,
                json!({"error": message, "code": "bad_request"})
                    .to_string()
                    .into_bytes(),
            ),
        };
        tracing::debug!(%cmd, status, "nats command");
        if let Some(reply) = msg.reply {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(STATUS_HEADER, status.to_string().as_str());
            headers.insert("content-type", "application/json");
            if let Err(e) = self
                .client
                .publish_with_headers(reply, headers, body.into())
                .await
            {
                tracing::warn!(%cmd, "cannot reply: {e}");
            }
        }
    }

    async fn call(&self, req: Request<Body>) -> (u16, Vec<u8>) {
        let resp = match self.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status().as_u16();
        match axum::body::to_bytes(resp.into_body(), usize::MAX).await {
            Ok(b) => (status, b.to_vec()),
            Err(e) => (
                500,
                json!({"error": format!("reading the answer: {e}"), "code": "internal"})
                    .to_string()
                    .into_bytes(),
            ),
        }
    }

    fn headers(&self) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        if let Some(t) = &self.state.config.worker_token {
            h.insert(WORKER_TOKEN_HEADER, t.as_str());
        }
        h
    }

    /// Sends a request and returns `(status, payload)`; `None` when nobody answered.
    async fn request(
        &self,
        subject: String,
        body: &impl serde::Serialize,
    ) -> Result<(u16, Value), String> {
        let payload = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let msg = self
            .client
            .request_with_headers(subject, self.headers(), payload.into())
            .await
            .map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
        Ok((reply_status(&msg, &value), value))
    }

    async fn register(&self) -> Result<(), String> {
        let body = registration(&self.state);
        match self.request(REGISTER_SUBJECT.to_owned(), &body).await? {
            (200..=299, _) => Ok(()),
            (status, v) => Err(format!("{status}: {v}")),
        }
    }

    /// `Ok(true)` when the coordinator asked us to register again.
    async fn heartbeat(&self) -> Result<bool, String> {
        let body = crate::coordinator_client::heartbeat(&self.state, false);
        let subject = heartbeat_subject(&self.state.config.worker_id);
        match self.request(subject, &body).await? {
            (200..=299, _) => Ok(false),
            (404, _) => Ok(true),
            (status, v) => Err(format!("{status}: {v}")),
        }
    }

    async fn register_and_heartbeat(self: Arc<Self>) {
        let cancel = self.state.shutdown.clone();
        let cfg = &self.state.config;
        'outer: loop {
            let registered =
                register_with_backoff(&self.state, "nats registration", || self.register());
            if registered.await.is_none() {
                break 'outer;
            }
            tracing::info!(worker_id = %cfg.worker_id, "registered over nats");
            self.state.registered.store(true, Ordering::Relaxed);
            let mut ticker = tokio::time::interval(cfg.heartbeat_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break 'outer,
                    _ = ticker.tick() => {},
                }
                match self.heartbeat().await {
                    Ok(false) => {}
                    Ok(true) => {
                        tracing::warn!("coordinator does not know this worker; re-registering");
                        continue 'outer;
                    }
                    Err(e) => tracing::warn!("nats heartbeat failed: {e}"),
                }
            }
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

fn take_pipeline_id(obj: &mut Map<String, Value>) -> Result<String, String> {
    match obj.remove("pipeline_id") {
        Some(Value::String(id)) if valid_token(&id) => Ok(id),
        Some(Value::String(id)) => Err(format!("bad pipeline_id `{id}`")),
        Some(_) => Err("`pipeline_id` must be a string".into()),
        None => Err("missing field `pipeline_id`".into()),
    }
}

/// Maps a command and its JSON payload onto the worker route that implements it.
pub fn to_request(
    cmd: &str,
    payload: &[u8],
    api_key: Option<&str>,
) -> Result<Request<Body>, String> {
    let parsed: Value = if payload.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(payload).map_err(|e| format!("invalid JSON payload: {e}"))?
    };
    let Value::Object(mut obj) = parsed else {
        return Err("the payload must be a JSON object".into());
    };
    let base = "/api/v1/pipelines";
    let (method, path, body, content_type) = match cmd {
        "deploy" => (
            Method::POST,
            base.to_owned(),
            Value::Object(obj).to_string(),
            "application/json",
        ),
        "undeploy" => {
            let id = take_pipeline_id(&mut obj)?;
            (
                Method::DELETE,
                format!("{base}/{id}"),
                String::new(),
                "application/json",
            )
        }
        "inject" => {
            let id = take_pipeline_id(&mut obj)?;
            (
                Method::POST,
                format!("{base}/{id}/events"),
                Value::Object(obj).to_string(),
                "application/json",
            )
        }
        "inject_batch" => {
            let id = take_pipeline_id(&mut obj)?;
            let path = format!("{base}/{id}/events-batch");
            match obj.remove("events") {
                Some(Value::String(text)) => (Method::POST, path, text, "text/plain"),
                Some(events @ Value::Array(_)) => (
                    Method::POST,
                    path,
                    json!({"events": events}).to_string(),
                    "application/json",
                ),
                _ => return Err("`events` must be an array of events or .evt text".into()),
            }
        }
        "checkpoint" => {
            let id = take_pipeline_id(&mut obj)?;
            (
                Method::POST,
                format!("{base}/{id}/checkpoint"),
                String::new(),
                "application/json",
            )
        }
        "restore" => {
            let id = take_pipeline_id(&mut obj)?;
            let checkpoint = match obj.remove("checkpoint") {
                Some(Value::String(s)) => {
                    serde_json::from_str(&s).map_err(|e| format!("bad checkpoint: {e}"))?
                }
                Some(cp) => cp,
                None => Value::Object(obj),
            };
            (
                Method::POST,
                format!("{base}/{id}/restore"),
                checkpoint.to_string(),
                "application/json",
            )
        }
        "drain" => (
            Method::POST,
            "/api/v1/drain".to_owned(),
            String::new(),
            "application/json",
        ),
        other => return Err(format!("unknown command `{other}`")),
    };
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type);
    if let Some(k) = api_key {
        req = req.header(API_KEY_HEADER, k);
    }
    req.body(Body::from(body)).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands_map_to_routes() {
        let r = to_request(
            "inject",
            br#"{"pipeline_id":"p1","event_type":"A","fields":{}}"#,
            Some("k"),
        )
        .unwrap();
        assert_eq!(
            (r.method(), r.uri().path()),
            (&Method::POST, "/api/v1/pipelines/p1/events")
        );
        assert_eq!(r.headers()[API_KEY_HEADER], "k");
        let r = to_request("undeploy", br#"{"pipeline_id":"p1"}"#, None).unwrap();
        assert_eq!(
            (r.method(), r.uri().path()),
            (&Method::DELETE, "/api/v1/pipelines/p1")
        );
        let r = to_request(
            "inject_batch",
            br#"{"pipeline_id":"p1","events":"A { x: 1 }"}"#,
            None,
        )
        .unwrap();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain");
        let r = to_request("drain", b"", None).unwrap();
        assert_eq!(r.uri().path(), "/api/v1/drain");
        assert!(to_request("inject", br#"{"event_type":"A"}"#, None).is_err());
        assert!(to_request("inject", br#"{"pipeline_id":"../x"}"#, None).is_err());
        assert!(to_request("reboot", b"{}", None).is_err());
        assert!(to_request("deploy", b"[1]", None).is_err());
    }
}
