//! Inter-pipeline routes over MQTT (docs/dataplane.md).
//!
//! A deploy may carry [`PipelineRoutes`]: outbound routes (this pipeline's output events whose
//! type matches a pattern are published to the route's topic) and inbound routes (this pipeline
//! subscribes to the topic and processes what arrives). Publishers and subscribers only share a
//! topic, so a route keeps working when either end migrates to another worker.
//!
//! Broker precedence: the worker's own `mqtt_url` (`varpulis server --mqtt-url`), else the one
//! the coordinator ships in the deploy (`varpulis coordinator --mqtt-url`; `varpulis local`
//! passes its embedded broker to both). Without either, the pipeline runs `degraded`.
//!
//! Wire format: one MQTT message per publish call and route, QoS 1, holding either one event
//! `{"event_type", "timestamp", "fields"}` (RFC 3339 event time, kept across the hop) or a JSON
//! array of them (at most [`MAX_EVENTS_PER_MESSAGE`]). A publish waits at most
//! `route_publish_timeout` for room in the client's bounded queue, and not at all while the
//! broker is unreachable: events that do not fit are dropped and counted, so the pipeline task
//! is never blocked for long.

use crate::engine::{Event, Output};
use crate::error::WorkerError;
use crate::pipeline::{Feed, Pipeline};
use crate::server::AppState;
use rumqttc::{AsyncClient, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use varpulis_api::worker::{PipelineRoutes, RouteTopic};

/// Most events packed into one route message.
pub const MAX_EVENTS_PER_MESSAGE: usize = 512;
/// Capacity of rumqttc's request queue of a route publisher (messages).
const REQUEST_QUEUE: usize = 256;
/// QoS 1 messages in flight per connection.
const INFLIGHT: u16 = 512;
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Where the MQTT broker is: parsed from `mqtt://[user[:password]@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP.
    pub host: String,
    /// Port (1883 by default).
    pub port: u16,
    /// User name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
}

/// Parses a broker URL: `mqtt://`, `tcp://` or no scheme; the port defaults to 1883.
pub fn parse_mqtt_url(url: &str) -> Result<BrokerAddr, WorkerError> {
    let bad = |m: &str| WorkerError::Config(format!("mqtt url `{url}`: {m}"));
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => rest,
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "scheme `{scheme}` is not supported (use mqtt://)"
            )))
        }
        None => url,
    };
    let rest = rest.trim_end_matches('/');
    let (creds, hostport) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    let (username, password) = match creds {
        None => (None, None),
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
            None => (Some(c.to_owned()), None),
        },
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad("no host"));
    }
    let port = match port {
        None => 1883,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("bad port"))?,
    };
    Ok(BrokerAddr {
        host,
        port,
        username,
        password,
    })
}

/// Whether `pattern` matches `event_type`: `*` matches all, a trailing `*` a prefix, else exact.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// A pipeline's resolved routes, computed before it is registered so bad input changes nothing.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    /// The broker, or why there is none (the pipeline then runs degraded).
    broker: Result<BrokerAddr, String>,
    outbound: Vec<RouteTopic>,
    inbound: Vec<RouteTopic>,
    session: Option<String>,
}

/// Resolves a deploy's routes; `Ok(None)` when there is nothing to do.
pub fn plan(
    worker_url: Option<&str>,
    routes: Option<&PipelineRoutes>,
) -> Result<Option<RoutePlan>, WorkerError> {
    let Some(r) = routes else { return Ok(None) };
    if r.outbound.is_empty() && r.inbound.is_empty() {
        return Ok(None);
    }
    for t in r.outbound.iter().chain(&r.inbound) {
        if !rumqttc::valid_topic(&t.topic) {
            return Err(WorkerError::Connector(format!(
                "route with `{}`: bad MQTT topic `{}`",
                t.pipeline, t.topic
            )));
        }
    }
    let broker = match (worker_url, r.mqtt_url.as_deref()) {
        (Some(u), _) => Ok(parse_mqtt_url(u)?),
        (None, Some(u)) => {
            Ok(parse_mqtt_url(u).map_err(|e| WorkerError::Connector(format!("routes: {e}")))?)
        }
        (None, None) => Err(
            "routes need an MQTT broker: start the worker or the coordinator with --mqtt-url"
                .to_owned(),
        ),
    };
    Ok(Some(RoutePlan {
        broker,
        outbound: r.outbound.clone(),
        inbound: r.inbound.clone(),
        session: r.session.clone(),
    }))
}

/// Counters and the outbound publisher of one pipeline.
#[derive(Debug, Default)]
pub struct RouteState {
    out: OnceLock<RouteOut>,
    /// Events published to outbound routes.
    pub published: AtomicU64,
    /// Events received from inbound routes.
    pub received: AtomicU64,
    /// Events dropped: publish queue full past the timeout, broker unreachable, or an
    /// undecodable inbound message.
    pub dropped: AtomicU64,
    /// Whether the pipeline has inbound routes (deploy waits for their subscription).
    has_inbound: AtomicBool,
    /// Signalled when the broker acknowledged the inbound subscriptions.
    subscribed: tokio::sync::Notify,
}

/// The outbound side: one client shared by every outbound route of the pipeline.
#[derive(Debug)]
struct RouteOut {
    client: AsyncClient,
    routes: Vec<RouteTopic>,
    connected: Arc<AtomicBool>,
    timeout: Duration,
}

impl RouteState {
    /// Waits (at most `timeout`) until the inbound routes are subscribed, so a group reported
    /// running does not lose the first routed events; returns at once without inbound routes.
    /// Returns whether the subscription is known to be active.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        if !self.has_inbound.load(Ordering::Relaxed) {
            return true;
        }
        tokio::time::timeout(timeout, self.subscribed.notified())
            .await
            .is_ok()
    }

    /// Publishes the output events matching each outbound route. Never waits longer than the
    /// publish timeout per message, and not at all while the broker is unreachable.
    pub async fn publish(&self, outputs: &[Output]) {
        let Some(out) = self.out.get() else { return };
        for route in &out.routes {
            let matching: Vec<Value> = outputs
                .iter()
                .filter(|o| o.is_output)
                .filter(|o| {
                    route
                        .event_types
                        .iter()
                        .any(|p| pattern_matches(p, &o.event.event_type))
                })
                .map(Output::to_json)
                .collect();
            for chunk in matching.chunks(MAX_EVENTS_PER_MESSAGE) {
                let n = chunk.len() as u64;
                let payload = if let [one] = chunk {
                    serde_json::to_vec(one)
                } else {
                    serde_json::to_vec(chunk)
                }
                .unwrap_or_default();
                let sent = if out.connected.load(Ordering::Relaxed) {
                    matches!(
                        tokio::time::timeout(
                            out.timeout,
                            out.client.publish(
                                route.topic.clone(),
                                QoS::AtLeastOnce,
                                false,
                                payload
                            ),
                        )
                        .await,
                        Ok(Ok(()))
                    )
                } else {
                    out.client
                        .try_publish(route.topic.clone(), QoS::AtLeastOnce, false, payload)
                        .is_ok()
                };
                if sent {
                    self.published.fetch_add(n, Ordering::Relaxed);
                } else {
                    self.dropped.fetch_add(n, Ordering::Relaxed);
                    tracing::debug!(topic = %route.topic, events = n, "route events dropped");
                }
            }
        }
    }
}

fn options(broker: &BrokerAddr, client_id: String, clean: bool) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    o.set_inflight(INFLIGHT);
    o.set_clean_session(clean);
    if let Some(u) = &broker.username {
        o.set_credentials(u.clone(), broker.password.clone().unwrap_or_default());
    }
    o
}

fn short_id(pipeline_id: &str) -> String {
    pipeline_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect()
}

impl RoutePlan {
    /// Whether the pipeline needs an ingest channel (it has inbound routes).
    pub fn has_inbound(&self) -> bool {
        !self.inbound.is_empty()
    }

    /// Splits into the outbound-only and the inbound-only plan (each `None` when empty).
    pub fn split(self) -> (Option<RoutePlan>, Option<RoutePlan>) {
        let out = (!self.outbound.is_empty()).then(|| RoutePlan {
            inbound: Vec::new(),
            ..self.clone()
        });
        let inp = (!self.inbound.is_empty()).then(|| RoutePlan {
            outbound: Vec::new(),
            ..self
        });
        (out, inp)
    }

    /// Starts the publisher connection of a registered pipeline (its outbound routes). Without
    /// a broker the pipeline is marked degraded.
    pub fn start_outbound(self, state: &Arc<AppState>, pipeline: &Arc<Pipeline>) {
        let broker = match self.broker {
            Ok(b) => b,
            Err(reason) => {
                pipeline.set_degraded(reason);
                return;
            }
        };
        if self.outbound.is_empty() {
            return;
        }
        let id = format!(
            "vp-{}-route-out-{:08x}",
            short_id(&pipeline.id),
            rand::random::<u32>()
        );
        let (client, eventloop) = AsyncClient::new(options(&broker, id, true), REQUEST_QUEUE);
        let connected = Arc::new(AtomicBool::new(false));
        let out = RouteOut {
            client: client.clone(),
            routes: self.outbound,
            connected: connected.clone(),
            timeout: state.config.route_publish_timeout,
        };
        if pipeline.routes.out.set(out).is_err() {
            tracing::warn!(pipeline = %pipeline.id, "route publisher already set");
        }
        let conn = RouteConnection {
            feed: Feed::sinks_of(pipeline),
            client,
            connected,
            subscriptions: Vec::new(),
            ingest: None,
        };
        state.tasks.spawn(conn.run(eventloop));
    }

    /// Starts the subscriber connection of `feed` (the pipeline's inbound routes); inbound
    /// events go to `ingest`. Without a broker the pipeline is marked degraded.
    pub fn start_inbound(
        self,
        state: &Arc<AppState>,
        pipeline: &Arc<Pipeline>,
        feed: &Arc<Feed>,
        ingest: mpsc::Sender<Event>,
    ) {
        let broker = match self.broker {
            Ok(b) => b,
            Err(reason) => {
                pipeline.set_degraded(reason);
                return;
            }
        };
        if self.inbound.is_empty() {
            return;
        }
        // A persistent session keyed by the placement (not the worker) lets the broker keep
        // QoS 1 events published while the pipeline migrates. A rolling update does not open a
        // second one: the new version takes this connection over at the hand-over.
        let (id, clean) = match &self.session {
            Some(s) => (format!("{s}-route-in"), false),
            None => (
                format!(
                    "vp-{}-route-in-{:08x}",
                    short_id(&pipeline.id),
                    rand::random::<u32>()
                ),
                true,
            ),
        };
        let (client, eventloop) = AsyncClient::new(options(&broker, id, clean), REQUEST_QUEUE);
        pipeline.routes.has_inbound.store(true, Ordering::Relaxed);
        let mut topics: Vec<String> = self.inbound.into_iter().map(|r| r.topic).collect();
        topics.sort();
        topics.dedup();
        let conn = RouteConnection {
            feed: feed.clone(),
            client,
            connected: Arc::new(AtomicBool::new(false)),
            subscriptions: topics,
            ingest: Some(ingest),
        };
        state.tasks.spawn(conn.run(eventloop));
    }
}

struct RouteConnection {
    /// Who the connection works for: the pipeline's sinks, or a feed (handed over in updates).
    feed: Arc<Feed>,
    client: AsyncClient,
    connected: Arc<AtomicBool>,
    subscriptions: Vec<String>,
    ingest: Option<mpsc::Sender<Event>>,
}

impl RouteConnection {
    /// Runs `f` on the pipeline the connection works for now.
    fn on_pipeline(&self, f: impl FnOnce(&Pipeline)) {
        if let Some(p) = self.feed.target() {
            f(&p);
        }
    }

    /// Polls the event loop until the pipeline stops: (re)subscribes on every ConnAck, feeds
    /// inbound events to the pipeline (waiting when its channel is full, which stops reading
    /// from the broker), and reconnects with backoff.
    async fn run(self, mut eventloop: EventLoop) {
        let cancel = self.feed.connections.clone();
        let mut backoff = BACKOFF_INITIAL;
        loop {
            let polled = tokio::select! {
                () = cancel.cancelled() => break,
                r = eventloop.poll() => r,
            };
            match polled {
                Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = BACKOFF_INITIAL;
                    self.connected.store(true, Ordering::Relaxed);
                    self.on_pipeline(Pipeline::clear_degraded);
                    if !self.subscriptions.is_empty() {
                        let filters = self
                            .subscriptions
                            .iter()
                            .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                        if let Err(e) = self.client.try_subscribe_many(filters) {
                            tracing::warn!(error = %e, "route subscribe failed");
                        }
                    }
                }
                Ok(rumqttc::Event::Incoming(Packet::SubAck(_))) => {
                    self.on_pipeline(|p| p.routes.subscribed.notify_one());
                }
                Ok(rumqttc::Event::Incoming(Packet::Publish(publish))) => {
                    let Some(tx) = &self.ingest else { continue };
                    match decode(&publish.payload) {
                        Ok(events) => {
                            let n = events.len() as u64;
                            for ev in events {
                                // Only a deleted pipeline interrupts: when the sources are
                                // replaced at a hand-over, the ingest loop drains this channel.
                                tokio::select! {
                                    () = self.feed.ingest.cancelled() => return,
                                    r = tx.send(ev) => if r.is_err() { return },
                                }
                            }
                            self.on_pipeline(|p| {
                                p.routes.received.fetch_add(n, Ordering::Relaxed);
                            });
                        }
                        Err(e) => {
                            self.on_pipeline(|p| {
                                p.routes.dropped.fetch_add(1, Ordering::Relaxed);
                            });
                            tracing::debug!(topic = %publish.topic, error = %e, "route message dropped");
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.connected.store(false, Ordering::Relaxed);
                    let reason = format!("route broker: {e}");
                    if !self.feed.back_off(reason, &mut backoff, BACKOFF_MAX).await {
                        break;
                    }
                }
            }
        }
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    }
}

/// Decodes a route message: one `{"event_type", "timestamp", "fields"}` object or an array of
/// them. The event time is kept (arrival time when absent or unreadable).
pub fn decode(payload: &[u8]) -> Result<Vec<Event>, String> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let now = crate::engine::now_ns();
    match value {
        Value::Array(items) => items.iter().map(|v| decode_one(v, now)).collect(),
        v @ Value::Object(_) => Ok(vec![decode_one(&v, now)?]),
        _ => Err("route message is neither an object nor an array".into()),
    }
}

fn decode_one(v: &Value, now: i64) -> Result<Event, String> {
    let ty = v
        .get("event_type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("route event without `event_type`")?;
    let ts = match v.get("timestamp") {
        Some(Value::String(s)) => crate::routes::pipelines::parse_rfc3339_ns(s).unwrap_or(now),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(now),
        _ => now,
    };
    let empty = Map::new();
    let fields = match v.get("fields") {
        Some(Value::Object(f)) => f,
        None | Some(Value::Null) => &empty,
        Some(_) => return Err("`fields` is not an object".into()),
    };
    Ok(Event::from_json(ty, fields, ts))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_and_without_scheme_port_and_credentials() {
        let b = parse_mqtt_url("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("127.0.0.1", 1884));
        let b = parse_mqtt_url("broker.local").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("broker.local", 1883));
        let b = parse_mqtt_url("tcp://u:p@h:1/").unwrap();
        assert_eq!(
            (b.username.as_deref(), b.password.as_deref(), b.port),
            (Some("u"), Some("p"), 1)
        );
        let b = parse_mqtt_url("mqtt://[::1]:1885").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 1885));
        assert!(parse_mqtt_url("http://h:1883").is_err());
        assert!(parse_mqtt_url("mqtt://h:notaport").is_err());
        assert!(parse_mqtt_url("mqtt://:1883").is_err());
    }

    #[test]
    fn patterns_follow_the_routing_rules() {
        assert!(pattern_matches("*", "X"));
        assert!(pattern_matches("Temp*", "TempAlerts"));
        assert!(!pattern_matches("Temp*", "PressureAlerts"));
        assert!(pattern_matches("Hot", "Hot"));
        assert!(!pattern_matches("Hot", "Hotter"));
    }

    #[test]
    fn decode_keeps_type_time_and_fields_of_one_or_many() {
        let one = br#"{"event_type":"A","timestamp":"1970-01-01T00:00:06Z","fields":{"x":1.5}}"#;
        let evs = decode(one).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(&*evs[0].event_type, "A");
        assert_eq!(evs[0].timestamp_ns, 6_000_000_000);
        assert_eq!(evs[0].field("x").unwrap().to_json(), serde_json::json!(1.5));
        let many = br#"[{"event_type":"A","fields":{}},{"event_type":"B"}]"#;
        let evs = decode(many).unwrap();
        assert_eq!(
            evs.iter()
                .map(|e| e.event_type.to_string())
                .collect::<Vec<_>>(),
            ["A", "B"]
        );
        assert!(decode(b"[1]").is_err());
        assert!(decode(b"{\"fields\":{}}").is_err());
        assert!(decode(b"nope").is_err());
    }

    #[test]
    fn plan_precedence_worker_url_then_deploy_url_then_degraded() {
        let routes = PipelineRoutes {
            outbound: vec![RouteTopic {
                pipeline: "b".into(),
                topic: "varpulis/g/a/b".into(),
                event_types: vec!["*".into()],
            }],
            mqtt_url: Some("mqtt://coord-broker:1884".into()),
            ..PipelineRoutes::default()
        };
        let p = plan(Some("mqtt://worker-broker"), Some(&routes))
            .unwrap()
            .unwrap();
        assert_eq!(p.broker.unwrap().host, "worker-broker");
        let p = plan(None, Some(&routes)).unwrap().unwrap();
        assert_eq!(p.broker.unwrap().port, 1884);
        let none = PipelineRoutes {
            mqtt_url: None,
            ..routes.clone()
        };
        assert!(plan(None, Some(&none)).unwrap().unwrap().broker.is_err());
        assert!(plan(None, None).unwrap().is_none());
        let bad = PipelineRoutes {
            outbound: vec![RouteTopic {
                pipeline: "b".into(),
                topic: "a/#".into(),
                event_types: vec![],
            }],
            ..routes
        };
        assert!(plan(None, Some(&bad)).is_err());
    }
}
