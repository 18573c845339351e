//! MQTT connector (VPL.md §9) on rumqttc.
//!
//! Each connector uses up to two connections: a subscriber feeding the pipeline's bounded
//! ingest channel and a publisher for `.to` outputs. Keeping them apart avoids a cycle where
//! the event loop waits on a full ingest channel while the ingest loop waits on a full publish
//! queue that only that same event loop drains. Both reconnect with exponential backoff.
//!
//! Client ids: `client_id` (or `varpulis`) + the pipeline id + the role, so two pipelines, two
//! versions of one pipeline, or the two roles never share an id. In a rolling update the new
//! version does not open a subscriber of its own: it takes the old version's subscriber over at
//! the hand-over (a [`Feed`]), so only one client ever consumes the topic.

use crate::engine::Event;
use crate::error::WorkerError;
use crate::pipeline::{Feed, Pipeline, SinkRoute};
use crate::server::AppState;
use rumqttc::{AsyncClient, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{Map, Number, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Capacity of rumqttc's request queue: `publish().await` waits when it is full.
const REQUEST_QUEUE: usize = 1024;
/// Longest a subscriber that is being replaced waits for its UNSUBACKs.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Connection parameters of one MQTT connector.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttParams {
    /// Broker host (required).
    pub host: String,
    /// Broker port (1883).
    pub port: u16,
    /// Client id prefix (generated when absent).
    pub client_id: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// QoS for subscriptions and publishes (0).
    pub qos: QoS,
    /// Default topic.
    pub topic: Option<String>,
}

fn param_str(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl MqttParams {
    /// Reads parameters whose values are strings or numbers (`"port": "1883"` works).
    pub fn from_map(name: &str, params: &Map<String, Value>) -> Result<Self, WorkerError> {
        let bad = |m: String| WorkerError::Connector(format!("connector `{name}`: {m}"));
        let host = param_str(params, "host")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("`host` is required".into()))?;
        let port = match param_str(params, "port") {
            None => 1883,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad(format!("`port` `{p}` is not a port number")))?,
        };
        let qos = match param_str(params, "qos").as_deref() {
            None | Some("0") => QoS::AtMostOnce,
            Some("1") => QoS::AtLeastOnce,
            Some("2") => QoS::ExactlyOnce,
            Some(q) => return Err(bad(format!("`qos` `{q}` must be 0, 1 or 2"))),
        };
        Ok(Self {
            host,
            port,
            client_id: param_str(params, "client_id"),
            username: param_str(params, "username"),
            password: param_str(params, "password"),
            qos,
            topic: param_str(params, "topic"),
        })
    }
}

/// One connector's subscriptions and sinks for one pipeline.
#[derive(Debug, Clone)]
pub struct MqttPlan {
    name: String,
    params: MqttParams,
    /// `(topic filter, default event type)`.
    subscriptions: Vec<(String, String)>,
    /// Streams whose `.to` uses this connector.
    sinks: Vec<String>,
}

impl MqttPlan {
    /// A plan with no bindings yet.
    pub fn new(name: &str, params: &Map<String, Value>) -> Result<Self, WorkerError> {
        Ok(Self {
            name: name.to_owned(),
            params: MqttParams::from_map(name, params)?,
            subscriptions: Vec::new(),
            sinks: Vec::new(),
        })
    }

    fn topic_or_default(&self, topic: Option<&str>, what: &str) -> Result<String, WorkerError> {
        topic
            .map(str::to_owned)
            .or_else(|| self.params.topic.clone())
            .ok_or_else(|| {
                WorkerError::Connector(format!("connector `{}`: {what} needs a `topic`", self.name))
            })
    }

    /// Adds a `.from` binding.
    pub fn add_source(&mut self, topic: Option<&str>, event_type: &str) -> Result<(), WorkerError> {
        let topic = self.topic_or_default(topic, "`.from`")?;
        if !rumqttc::valid_filter(&topic) {
            return Err(WorkerError::Connector(format!(
                "connector `{}`: bad topic filter `{topic}`",
                self.name
            )));
        }
        self.subscriptions.push((topic, event_type.to_owned()));
        Ok(())
    }

    /// Adds a `.to` binding.
    pub fn add_sink(&mut self, topic: Option<&str>, stream: &str) -> Result<(), WorkerError> {
        let topic = self.topic_or_default(topic, "`.to`")?;
        if !rumqttc::valid_topic(&topic) {
            return Err(WorkerError::Connector(format!(
                "connector `{}`: bad publish topic `{topic}`",
                self.name
            )));
        }
        self.sinks.push(stream.to_owned());
        Ok(())
    }

    /// Splits into the sinks-only and the subscriptions-only plan (each `None` when empty).
    pub fn split(self) -> (Option<MqttPlan>, Option<MqttPlan>) {
        let sinks = (!self.sinks.is_empty()).then(|| MqttPlan {
            subscriptions: Vec::new(),
            ..self.clone()
        });
        let sources = (!self.subscriptions.is_empty()).then(|| MqttPlan {
            sinks: Vec::new(),
            ..self
        });
        (sinks, sources)
    }

    fn options(&self, pipeline_id: &str, role: &str) -> MqttOptions {
        // The end of the id: placement ids differ there by epoch (`...-r0-e2`).
        let alnum: Vec<char> = pipeline_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let short: String = alnum[alnum.len().saturating_sub(16)..].iter().collect();
        // Suffixing keeps two pipelines (or two roles) from kicking each other off the broker.
        let id = match &self.params.client_id {
            Some(base) => format!("{base}-{short}-{role}"),
            None => format!("varpulis-{short}-{role}-{:08x}", rand::random::<u32>()),
        };
        let mut o = MqttOptions::new(id, self.params.host.clone(), self.params.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
        if let Some(u) = &self.params.username {
            o.set_credentials(u.clone(), self.params.password.clone().unwrap_or_default());
        }
        o
    }

    /// Spawns the publisher connection, if the plan has sinks; returns its sink route.
    pub fn start_sinks(
        &self,
        state: &Arc<AppState>,
        pipeline: &Arc<Pipeline>,
    ) -> Option<SinkRoute> {
        if self.sinks.is_empty() {
            return None;
        }
        let (client, eventloop) =
            AsyncClient::new(self.options(&pipeline.id, "out"), REQUEST_QUEUE);
        let route = SinkRoute {
            connector: self.name.clone(),
            default_topic: self.params.topic.clone(),
            qos: self.params.qos,
            client: client.clone(),
        };
        let conn = Connection {
            name: self.name.clone(),
            feed: Feed::sinks_of(pipeline),
            client,
        };
        state
            .tasks
            .spawn(conn.run(eventloop, Vec::new(), self.params.qos, None));
        Some(route)
    }

    /// Spawns the subscriber connection of `feed` (nothing without subscriptions); incoming
    /// publishes go to `ingest`.
    pub fn start_sources(
        self,
        state: &Arc<AppState>,
        feed: &Arc<Feed>,
        ingest: mpsc::Sender<Event>,
    ) {
        if self.subscriptions.is_empty() {
            return;
        }
        let id = feed.target().map(|p| p.id.clone()).unwrap_or_default();
        let (client, eventloop) = AsyncClient::new(self.options(&id, "in"), REQUEST_QUEUE);
        let conn = Connection {
            name: self.name.clone(),
            feed: feed.clone(),
            client,
        };
        state
            .tasks
            .spawn(conn.run(eventloop, self.subscriptions, self.params.qos, Some(ingest)));
    }
}

/// One MQTT connection working for a feed (subscriber) or a pipeline's sinks (publisher).
struct Connection {
    name: String,
    feed: Arc<Feed>,
    client: AsyncClient,
}

impl Connection {
    /// Runs `f` on the pipeline the connection works for now (after a hand-over, the new one).
    fn on_pipeline(&self, f: impl FnOnce(&Pipeline)) {
        if let Some(p) = self.feed.target() {
            f(&p);
        }
    }

    /// Polls the event loop until cancelled: (re)subscribes on every ConnAck, decodes incoming
    /// publishes into the ingest channel (waiting when it is full), and backs off on errors.
    ///
    /// A subscriber whose feed closes while its pipeline lives on (sources replaced at a
    /// hand-over) closes gracefully: it unsubscribes and keeps passing on what the broker sent
    /// until every UNSUBACK arrived (at most [`CLOSE_DEADLINE`]), so no message the client
    /// acknowledged is left behind. A deleted pipeline (`feed.ingest`) stops it at once.
    async fn run(
        self,
        mut eventloop: EventLoop,
        subscriptions: Vec<(String, String)>,
        qos: QoS,
        ingest: Option<mpsc::Sender<Event>>,
    ) {
        let cancel = self.feed.connections.clone();
        let hard = self.feed.ingest.clone();
        let mut backoff = BACKOFF_INITIAL;
        // While closing: UNSUBACKs still expected, and the deadline.
        let mut closing: Option<(usize, tokio::time::Instant)> = None;
        loop {
            let deadline = closing.map(|c| c.1);
            let polled = tokio::select! {
                () = hard.cancelled() => break,
                () = cancel.cancelled(), if closing.is_none() => {
                    if ingest.is_none() || subscriptions.is_empty() {
                        break;
                    }
                    for (filter, _) in &subscriptions {
                        if self.client.try_unsubscribe(filter.clone()).is_err() {
                            break;
                        }
                    }
                    let until = tokio::time::Instant::now() + CLOSE_DEADLINE;
                    closing = Some((subscriptions.len(), until));
                    continue;
                }
                () = sleep_until(deadline) => break,
                r = eventloop.poll() => r,
            };
            match polled {
                Ok(rumqttc::Event::Incoming(Packet::UnsubAck(_))) => {
                    if let Some((pending, _)) = &mut closing {
                        *pending = pending.saturating_sub(1);
                        if *pending == 0 {
                            break;
                        }
                    }
                }
                // Reconnected or failed while closing: the clean session has nothing more.
                Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) | Err(_) if closing.is_some() => {
                    break
                }
                Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = BACKOFF_INITIAL;
                    self.on_pipeline(Pipeline::clear_degraded);
                    tracing::debug!(connector = %self.name, "mqtt connected");
                    for (filter, _) in &subscriptions {
                        if let Err(e) = self.client.try_subscribe(filter.clone(), qos) {
                            tracing::warn!(connector = %self.name, error = %e, "subscribe failed");
                        }
                    }
                }
                Ok(rumqttc::Event::Incoming(Packet::Publish(publish))) => {
                    let Some(tx) = &ingest else { continue };
                    let default_type = subscriptions
                        .iter()
                        .find(|(f, _)| rumqttc::matches(&publish.topic, f))
                        .or(subscriptions.first())
                        .map(|(_, t)| t.as_str())
                        .unwrap_or_default();
                    match decode_payload(&publish.payload, default_type) {
                        Ok((ty, fields)) => {
                            let ev = Event::from_json(&ty, &fields, crate::engine::now_ns());
                            // Not interrupted when only the connection is closed (sources
                            // replaced at a hand-over): the ingest loop drains this channel.
                            tokio::select! {
                                () = hard.cancelled() => break,
                                r = tx.send(ev) => if r.is_err() { break },
                            }
                        }
                        Err(e) => {
                            self.on_pipeline(Pipeline::count_dropped);
                            tracing::debug!(topic = %publish.topic, error = %e, "payload dropped");
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let reason = format!("mqtt connector `{}`: {e}", self.name);
                    if !self.feed.back_off(reason, &mut backoff, BACKOFF_MAX).await {
                        break;
                    }
                }
            }
        }
        let _ = self.client.try_disconnect();
        // Let the DISCONNECT go out; bounded so shutdown never hangs on a dead broker.
        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    }
}

/// Decodes a payload (VPL.md §9): type = `event_type`, else `type`, else `default_type`;
/// fields = the `data` object if present, else the other top-level keys; integral numbers
/// become ints.
pub fn decode_payload(
    payload: &[u8],
    default_type: &str,
) -> Result<(String, Map<String, Value>), String> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("payload is not a JSON object".into());
    };
    let ty = match (obj.remove("event_type"), obj.remove("type")) {
        (Some(Value::String(t)), other) => {
            if let Some(o) = other {
                obj.insert("type".to_owned(), o);
            }
            t
        }
        (None, Some(Value::String(t))) => t,
        (Some(_), _) => return Err("`event_type` is not a string".into()),
        (None, Some(other)) => {
            obj.insert("type".to_owned(), other);
            default_type.to_owned()
        }
        (None, None) => default_type.to_owned(),
    };
    if ty.is_empty() {
        return Err("no event type".into());
    }
    let mut fields = match obj.remove("data") {
        Some(Value::Object(data)) => data,
        Some(other) => {
            obj.insert("data".to_owned(), other);
            obj
        }
        None => obj,
    };
    for v in fields.values_mut() {
        integral_to_int(v);
    }
    Ok((ty, fields))
}

fn integral_to_int(v: &mut Value) {
    if let Value::Number(n) = v {
        if n.is_f64() {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *v = Value::Number(Number::from(f as i64));
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_uses_event_type_then_type_then_default() {
        let (t, f) = decode_payload(br#"{"event_type":"A","x":1}"#, "D").unwrap();
        assert_eq!(
            (t.as_str(), f),
            ("A", json!({"x":1}).as_object().unwrap().clone())
        );
        let (t, _) = decode_payload(br#"{"type":"B","x":1}"#, "D").unwrap();
        assert_eq!(t, "B");
        let (t, f) = decode_payload(br#"{"x":2.0}"#, "D").unwrap();
        assert_eq!(t, "D");
        assert_eq!(f["x"], json!(2));
        assert!(f["x"].is_i64());
    }

    #[test]
    fn decode_prefers_data_object_and_rejects_garbage() {
        let (_, f) =
            decode_payload(br#"{"event_type":"A","data":{"y":"z"},"ignored":1}"#, "D").unwrap();
        assert_eq!(Value::Object(f), json!({"y":"z"}));
        assert!(decode_payload(b"not json", "D").is_err());
        assert!(decode_payload(b"[1,2]", "D").is_err());
    }

    #[test]
    fn params_accept_strings_and_numbers() {
        let m = json!({"host":"h","port":"1884","qos":1})
            .as_object()
            .unwrap()
            .clone();
        let p = MqttParams::from_map("C", &m).unwrap();
        assert_eq!((p.port, p.qos), (1884, QoS::AtLeastOnce));
        let m = json!({"port":1883}).as_object().unwrap().clone();
        assert!(MqttParams::from_map("C", &m).is_err());
    }
}
