//! NATS connector (VPL.md §9, kind `nats`) on async-nats.
//!
//! ```vpl
//! connector Bus = nats(servers: "nats://127.0.0.1:4222")
//! stream Readings = Reading.from(Bus, topic: "plant.readings.>")
//! stream Hot = Readings .where(temp > 50) .emit(id: id, temp: temp) .to(Bus, topic: "plant.hot")
//! ```
//!
//! `topic` is the NATS subject (`*` and `>` wildcards allowed in `.from`). One client connection
//! per connector, pipeline and direction (subscriptions apart, so a rolling update can hand
//! them over to the next version); async-nats reconnects by itself (our
//! delay: 0.5 s doubling to 30 s) and re-sends the subscriptions. Payloads are decoded and
//! encoded exactly like MQTT ones ([`super::mqtt::decode_payload`]).
//!
//! Flow control: each subscription feeds the pipeline's bounded ingest channel, waiting when it
//! is full; `.to` outputs go through a bounded queue (`publish` waits when it is full) to a
//! publisher connection. Core NATS is at-most-once: when a subscription's
//! client-side buffer overflows (slow consumer) the server drops messages; this is logged and
//! marks the pipeline `degraded` until the next successful reconnect.

use crate::engine::{Event, Output};
use crate::error::WorkerError;
use crate::pipeline::Pipeline;
use crate::server::AppState;
use async_nats::{Client, ConnectOptions, Subscriber};
use futures::StreamExt;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Capacity of the `.to` publish queue of one connector (publish waits when full).
const PUBLISH_QUEUE: usize = 1024;
/// Default NATS port.
pub const DEFAULT_PORT: u16 = 4222;

/// Reconnect delay for attempt `n` (1-based): 0.5 s doubling, at most `max`.
pub fn backoff(attempt: usize, max: Duration) -> Duration {
    let shift = attempt.saturating_sub(1).min(16) as u32;
    BACKOFF_INITIAL.saturating_mul(1u32 << shift).min(max)
}

fn param_str(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            Some(parts.join(","))
        }
        _ => None,
    }
}

/// Whether `s` is a valid NATS subject; `wildcards` allows `*` tokens and a final `>`.
pub fn valid_subject(s: &str, wildcards: bool) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let tokens: Vec<&str> = s.split('.').collect();
    let last = tokens.len() - 1;
    tokens.iter().enumerate().all(|(i, t)| match *t {
        "" => false,
        "*" => wildcards,
        ">" => wildcards && i == last,
        t => !t.contains('*') && !t.contains('>'),
    })
}

/// Connection parameters of one NATS connector.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsParams {
    /// Server URLs (`nats://host:port`, `tls://...`), from `servers`/`url`, else `host`+`port`.
    pub servers: Vec<String>,
    /// User name (with `password`).
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// Connection name shown by the server (`name`, else `varpulis-<pipeline>`).
    pub name: Option<String>,
    /// Default subject (`subject`, else `topic`).
    pub subject: Option<String>,
}

impl NatsParams {
    /// Reads parameters whose values are strings or numbers (`"port": "4222"` works).
    pub fn from_map(name: &str, params: &Map<String, Value>) -> Result<Self, WorkerError> {
        let bad = |m: String| WorkerError::Connector(format!("connector `{name}`: {m}"));
        let servers: Vec<String> = match param_str(params, "servers")
            .or_else(|| param_str(params, "url"))
            .filter(|s| !s.trim().is_empty())
        {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            None => {
                let host = param_str(params, "host")
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad("`servers` (or `url`, or `host`) is required".into()))?;
                let port = match param_str(params, "port") {
                    None => DEFAULT_PORT,
                    Some(p) => p
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad(format!("`port` `{p}` is not a port number")))?,
                };
                vec![format!("nats://{host}:{port}")]
            }
        };
        for s in &servers {
            s.parse::<async_nats::ServerAddr>()
                .map_err(|e| bad(format!("bad server address `{s}`: {e}")))?;
        }
        let subject = param_str(params, "subject").or_else(|| param_str(params, "topic"));
        Ok(Self {
            servers,
            username: param_str(params, "username").or_else(|| param_str(params, "user")),
            password: param_str(params, "password"),
            token: param_str(params, "token"),
            name: param_str(params, "name").or_else(|| param_str(params, "client_id")),
            subject,
        })
    }

    /// Client options: infinite reconnects with our backoff, auth, and `on_event`.
    pub fn options(&self, default_name: &str) -> ConnectOptions {
        let mut o = ConnectOptions::new()
            .name(self.name.clone().unwrap_or_else(|| default_name.to_owned()))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(|n| backoff(n, BACKOFF_MAX));
        if let Some(u) = &self.username {
            o = o.user_and_password(u.clone(), self.password.clone().unwrap_or_default());
        }
        if let Some(t) = &self.token {
            o = o.token(t.clone());
        }
        o
    }

    /// The server list as async-nats addresses (checked in [`Self::from_map`]).
    pub fn addrs(&self) -> Vec<async_nats::ServerAddr> {
        self.servers.iter().filter_map(|s| s.parse().ok()).collect()
    }
}

/// One connector's subscriptions and sinks for one pipeline.
#[derive(Debug, Clone)]
pub struct NatsPlan {
    name: String,
    params: NatsParams,
    /// `(subject, default event type)`.
    subscriptions: Vec<(String, String)>,
    /// Streams whose `.to` uses this connector.
    sinks: Vec<String>,
}

impl NatsPlan {
    /// A plan with no bindings yet.
    pub fn new(name: &str, params: &Map<String, Value>) -> Result<Self, WorkerError> {
        Ok(Self {
            name: name.to_owned(),
            params: NatsParams::from_map(name, params)?,
            subscriptions: Vec::new(),
            sinks: Vec::new(),
        })
    }

    fn subject_or_default(
        &self,
        topic: Option<&str>,
        what: &str,
        wildcards: bool,
    ) -> Result<String, WorkerError> {
        let subject = topic
            .map(str::to_owned)
            .or_else(|| self.params.subject.clone())
            .ok_or_else(|| {
                WorkerError::Connector(format!(
                    "connector `{}`: {what} needs a `topic` (NATS subject)",
                    self.name
                ))
            })?;
        if !valid_subject(&subject, wildcards) {
            return Err(WorkerError::Connector(format!(
                "connector `{}`: bad NATS subject `{subject}` for {what}",
                self.name
            )));
        }
        Ok(subject)
    }

    /// Adds a `.from` binding.
    pub fn add_source(&mut self, topic: Option<&str>, event_type: &str) -> Result<(), WorkerError> {
        let subject = self.subject_or_default(topic, "`.from`", true)?;
        self.subscriptions.push((subject, event_type.to_owned()));
        Ok(())
    }

    /// Adds a `.to` binding.
    pub fn add_sink(&mut self, topic: Option<&str>, stream: &str) -> Result<(), WorkerError> {
        self.subject_or_default(topic, "`.to`", false)?;
        self.sinks.push(stream.to_owned());
        Ok(())
    }

    /// Splits into the sinks-only and the subscriptions-only plan (each `None` when empty):
    /// they run as two connections, so the subscriptions can be handed over on their own.
    pub fn split(self) -> (Option<NatsPlan>, Option<NatsPlan>) {
        let sinks = (!self.sinks.is_empty()).then(|| NatsPlan {
            subscriptions: Vec::new(),
            ..self.clone()
        });
        let sources = (!self.subscriptions.is_empty()).then(|| NatsPlan {
            sinks: Vec::new(),
            ..self
        });
        (sinks, sources)
    }

    /// Spawns the connection task, stopped by `cancel`; subscriptions feed `ingest` (when
    /// given); returns the sink for `.to` outputs, if any.
    pub fn start(
        self,
        state: &Arc<AppState>,
        pipeline: &Arc<Pipeline>,
        ingest: Option<mpsc::Sender<Event>>,
        cancel: CancellationToken,
    ) -> Option<NatsSink> {
        let (sink, publish_rx) = if self.sinks.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
            let sink = NatsSink {
                connector: self.name.clone(),
                default_subject: self.params.subject.clone(),
                tx,
            };
            (Some(sink), Some(rx))
        };
        let ingest = ingest.filter(|_| !self.subscriptions.is_empty());
        let conn = Connection {
            name: self.name,
            params: self.params,
            pipeline: pipeline.clone(),
            cancel,
        };
        state
            .tasks
            .spawn(conn.run(self.subscriptions, ingest, publish_rx));
        sink
    }
}

/// Where a pipeline's `.to(Conn)` outputs go for one NATS connector.
#[derive(Debug, Clone)]
pub struct NatsSink {
    /// Connector name (matches the outputs' sink bindings).
    pub connector: String,
    /// Subject used when the `.to` names none.
    pub default_subject: Option<String>,
    tx: mpsc::Sender<(String, Vec<u8>)>,
}

/// The NATS sinks of one pipeline (empty unless it uses a NATS `.to`).
#[derive(Debug, Default)]
pub struct NatsSinks {
    sinks: OnceLock<Vec<NatsSink>>,
    published: AtomicU64,
}

impl NatsSinks {
    /// Installs the sinks (once).
    pub fn set(&self, sinks: Vec<NatsSink>) {
        let _ = self.sinks.set(sinks);
    }

    /// Messages handed to NATS publishers so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Queues every output bound to a NATS `.to`; waits while a queue is full. Returns how many
    /// could not be queued (the connection is gone: the pipeline is stopping).
    pub async fn publish(&self, pipeline_id: &str, outputs: &[Output]) -> u64 {
        let Some(sinks) = self.sinks.get().filter(|s| !s.is_empty()) else {
            return 0;
        };
        let mut failed = 0;
        for o in outputs {
            for binding in &o.sinks {
                let Some(sink) = sinks.iter().find(|s| s.connector == binding.connector) else {
                    continue;
                };
                let Some(subject) = binding
                    .topic()
                    .map(str::to_owned)
                    .or_else(|| sink.default_subject.clone())
                else {
                    continue;
                };
                let payload = serde_json::to_vec(&o.event.to_flat_json()).unwrap_or_default();
                if sink.tx.send((subject.clone(), payload)).await.is_err() {
                    failed += 1;
                    tracing::warn!(pipeline = %pipeline_id, %subject, "nats publish queue closed");
                } else {
                    self.published.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        failed
    }
}

struct Connection {
    name: String,
    params: NatsParams,
    pipeline: Arc<Pipeline>,
    cancel: CancellationToken,
}

impl Connection {
    /// Connects (retrying in the background), then runs the subscription loop and the publisher
    /// side by side until the pipeline is cancelled.
    async fn run(
        self,
        subscriptions: Vec<(String, String)>,
        ingest: Option<mpsc::Sender<Event>>,
        publish_rx: Option<mpsc::Receiver<(String, Vec<u8>)>>,
    ) {
        let weak = Arc::downgrade(&self.pipeline);
        let name = self.name.clone();
        let options = self
            .params
            .options(&format!("varpulis-{}", self.pipeline.id))
            .event_callback(move |event| {
                let weak = weak.clone();
                let name = name.clone();
                async move { on_event(&weak, &name, event) }
            });
        let client = match options.connect(self.params.addrs()).await {
            Ok(c) => c,
            Err(e) => {
                // Only configuration errors end up here (retry_on_initial_connect is set).
                let reason = format!("nats connector `{}`: {e}", self.name);
                tracing::warn!(pipeline = %self.pipeline.id, "{reason}");
                self.pipeline.set_degraded(reason);
                return;
            }
        };
        let mut subscribers = Vec::new();
        if ingest.is_some() {
            for (subject, ty) in &subscriptions {
                match client.subscribe(subject.clone()).await {
                    Ok(s) => subscribers.push((s, ty.clone())),
                    Err(e) => {
                        let reason =
                            format!("nats connector `{}`: subscribe `{subject}`: {e}", self.name);
                        tracing::warn!(pipeline = %self.pipeline.id, "{reason}");
                        self.pipeline.set_degraded(reason);
                    }
                }
            }
        }
        let receive = self.receive(subscribers, ingest);
        let send = self.send(&client, publish_rx);
        tokio::select! {
            () = self.cancel.cancelled() => {},
            _ = async { tokio::join!(receive, send) } => {},
        }
        // Let queued publishes go out; bounded so shutdown never hangs on a dead server.
        let _ = tokio::time::timeout(Duration::from_millis(500), client.flush()).await;
    }

    async fn receive(
        &self,
        subscribers: Vec<(Subscriber, String)>,
        ingest: Option<mpsc::Sender<Event>>,
    ) {
        let Some(tx) = ingest else { return };
        if subscribers.is_empty() {
            return;
        }
        let mut merged = futures::stream::select_all(
            subscribers
                .into_iter()
                .map(|(s, ty)| s.map(move |m| (m, ty.clone())).boxed()),
        );
        while let Some((msg, default_type)) = merged.next().await {
            match super::mqtt::decode_payload(&msg.payload, &default_type) {
                Ok((ty, fields)) => {
                    let ev = Event::from_json(&ty, &fields, crate::engine::now_ns());
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    self.pipeline.count_dropped();
                    tracing::debug!(subject = %msg.subject, error = %e, "nats payload dropped");
                }
            }
        }
    }

    async fn send(&self, client: &Client, rx: Option<mpsc::Receiver<(String, Vec<u8>)>>) {
        let Some(mut rx) = rx else { return };
        while let Some((subject, payload)) = rx.recv().await {
            if let Err(e) = client.publish(subject.clone(), payload.into()).await {
                self.pipeline.count_dropped();
                tracing::warn!(pipeline = %self.pipeline.id, %subject, error = %e, "nats publish failed");
            }
        }
    }
}

/// Client events: a connect clears `degraded`, a disconnect or error sets it.
fn on_event(pipeline: &Weak<Pipeline>, name: &str, event: async_nats::Event) {
    let Some(p) = pipeline.upgrade() else { return };
    match event {
        async_nats::Event::Connected => {
            tracing::debug!(pipeline = %p.id, connector = %name, "nats connected");
            p.clear_degraded();
        }
        async_nats::Event::SlowConsumer(_) => {
            let reason = format!("nats connector `{name}`: slow consumer, messages were dropped");
            tracing::warn!(pipeline = %p.id, "{reason}");
            p.set_degraded(reason);
        }
        async_nats::Event::Disconnected
        | async_nats::Event::Closed
        | async_nats::Event::ClientError(_)
        | async_nats::Event::ServerError(_) => {
            let reason = format!("nats connector `{name}`: {event}");
            tracing::warn!(pipeline = %p.id, "{reason}");
            p.set_degraded(reason);
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn params_take_servers_url_or_host_port() {
        let p =
            NatsParams::from_map("N", &map(json!({"servers": "nats://a:1,nats://b:2"}))).unwrap();
        assert_eq!(p.servers, vec!["nats://a:1", "nats://b:2"]);
        let p = NatsParams::from_map("N", &map(json!({"host": "h", "port": "4333"}))).unwrap();
        assert_eq!(p.servers, vec!["nats://h:4333"]);
        let p = NatsParams::from_map("N", &map(json!({"host": "h", "subject": "a.b"}))).unwrap();
        assert_eq!(p.servers, vec!["nats://h:4222"]);
        assert_eq!(p.subject.as_deref(), Some("a.b"));
        assert!(NatsParams::from_map("N", &map(json!({}))).is_err());
        assert!(NatsParams::from_map("N", &map(json!({"host": "h", "port": 0}))).is_err());
        assert!(NatsParams::from_map("N", &map(json!({"host": "h", "port": "x"}))).is_err());
    }

    #[test]
    fn subjects_are_checked() {
        assert!(valid_subject("a.b.c", false));
        assert!(valid_subject("a.*.c", true));
        assert!(valid_subject("a.>", true));
        assert!(!valid_subject("a.>", false));
        assert!(!valid_subject("a.>.c", true));
        assert!(!valid_subject("a..b", true));
        assert!(!valid_subject("", true));
        assert!(!valid_subject("a b", true));
        assert!(!valid_subject("a.b*", true));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1, BACKOFF_MAX), Duration::from_millis(500));
        assert_eq!(backoff(2, BACKOFF_MAX), Duration::from_secs(1));
        assert_eq!(backoff(40, BACKOFF_MAX), BACKOFF_MAX);
    }
}
