//! MQTT connections (VPL.md §9) on rumqttc, carrying out an [`MqttPlan`].
//!
//! Each connector uses up to two connections: a subscriber feeding the pipeline's bounded
//! ingest channel and a publisher for `.to` outputs (an [`MqttSink`]). Keeping them apart
//! avoids a cycle where the event loop waits on a full ingest channel while the ingest loop
//! waits on a full publish queue that only that same event loop drains. Both reconnect with
//! exponential backoff.
//!
//! Client ids: `client_id` (or `varpulis`) + the pipeline id + the role, so two pipelines, two
//! versions of one pipeline, or the two roles never share an id. In a rolling update the new
//! version does not open a subscriber of its own: it takes the old version's subscriber over at
//! the hand-over (a [`Feed`]), so only one client ever consumes the topic.
//!
//! The subscriber of a pipeline placed by a coordinator, at QoS ≥ 1, is a *persistent session*
//! instead ([`session_id`]): its client id names the placement and the connector, not the worker
//! or the epoch, `clean_session` is off and messages are acknowledged by hand once their outputs
//! are published ([`super::inbound`]). While no copy is connected (between the old holder's
//! fence and the new holder's subscription) the broker queues the topic for the placement, and
//! the next copy resumes from the first message the previous one did not finish: nothing is lost
//! at the lease edge. Two copies can never consume at once through it either: a broker hands a
//! client id to one connection at a time.

use super::inbound::{close_flushing, Ack, Inbound};
use super::payload::{decode_payload, encode_output};
use super::plan::mqtt::MqttPlan;
use super::sink::{bound_to, Sink};
use super::stats::ConnectorStats;
use crate::counters::Counters;
use crate::engine::{Event, Output};
use crate::event_time::now_ns;
use crate::pipeline::{Feed, Pipeline};
use crate::state::AppState;
use futures::future::BoxFuture;
use rumqttc::{AsyncClient, EventLoop, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Capacity of rumqttc's request queue: `publish().await` waits when it is full.
const REQUEST_QUEUE: usize = 1024;
/// Capacity of a persistent subscriber's request queue, which holds its acknowledgements: more
/// than the messages a broker lets a client hold unacknowledged (1,024 for the embedded one, 20
/// for mosquitto's default), so an acknowledgement is never refused for room.
const ACK_QUEUE: usize = 8192;
/// Longest a subscriber that is being replaced waits for its UNSUBACKs.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// FNV-1a, 64 bits: a stable digest (the same on every worker and release) for client ids.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The client id of the persistent subscriber session of `connector` for `pipeline`'s
/// placement: `{client_id or "vp"}-{digest of placement and connector}-in`, the same for every
/// copy of the placement whatever its worker or epoch. `None` (a clean session of its own) for
/// a pipeline deployed by hand or a QoS 0 subscription, which the broker would not keep.
pub fn session_id(plan: &MqttPlan, pipeline: &Pipeline) -> Option<String> {
    if plan.params.qos == QoS::AtMostOnce {
        return None;
    }
    let placement = pipeline.placement()?;
    let base = plan.params.client_id.as_deref().unwrap_or("vp");
    Some(format!(
        "{base}-{:016x}-in",
        fnv1a(&[placement, &plan.name])
    ))
}

fn options(plan: &MqttPlan, pipeline_id: &str, role: &str, session: Option<&str>) -> MqttOptions {
    // The end of the id: placement ids differ there by epoch (`...-r0-e2`).
    let alnum: Vec<char> = pipeline_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let short: String = alnum[alnum.len().saturating_sub(16)..].iter().collect();
    // Suffixing keeps two pipelines (or two roles) from kicking each other off the broker.
    let id = match (session, &plan.params.client_id) {
        (Some(session), _) => session.to_owned(),
        (None, Some(base)) => format!("{base}-{short}-{role}"),
        (None, None) => format!("varpulis-{short}-{role}-{:08x}", rand::random::<u32>()),
    };
    let mut o = MqttOptions::new(id, plan.params.host.clone(), plan.params.port);
    if session.is_some() {
        o.set_clean_session(false);
        o.set_manual_acks(true);
    }
    // The files were read when the plan was made; a failure here (a file removed since) falls
    // back to no connection at all rather than clear text.
    match plan.params.tls.mqtt_transport() {
        Ok(transport) => {
            o.set_transport(transport);
        }
        Err(e) => {
            tracing::error!("connector TLS: {}", e.0);
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Simple {
                    ca: Vec::new(),
                    alpn: None,
                    client_auth: None,
                },
            ));
        }
    }
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    if let Some(u) = &plan.params.username {
        o.set_credentials(u.clone(), plan.params.password.clone().unwrap_or_default());
    }
    o
}

/// Where a pipeline's `.to(Conn)` outputs go for one MQTT connector.
#[derive(Debug)]
pub struct MqttSink {
    pipeline: String,
    connector: String,
    /// The connector's default topic, used when the `.to` names none.
    default_topic: Option<String>,
    qos: QoS,
    /// `publish().await` waits when the client's queue is full (backpressure).
    client: AsyncClient,
    /// Health (of the publisher connection) and counters: `events_sent` = handed to the
    /// client (it retransmits QoS ≥ 1 until the broker acknowledges), `events_given_up` =
    /// refused by the client.
    stats: Arc<ConnectorStats>,
}

impl Sink for MqttSink {
    fn publish<'a>(&'a self, outputs: &'a [Output], counters: &'a Counters) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let default = self.default_topic.as_deref();
            for (o, topic) in bound_to(outputs, &self.connector, default) {
                let payload = encode_output(o);
                ConnectorStats::add(&self.stats.requests, 1);
                match self
                    .client
                    .publish(topic.clone(), self.qos, false, payload)
                    .await
                {
                    Ok(()) => ConnectorStats::add(&self.stats.sent, 1),
                    Err(e) => {
                        ConnectorStats::add(&self.stats.given_up, 1);
                        Counters::add(&counters.errors, 1);
                        tracing::warn!(pipeline = %self.pipeline, %topic, error = %e, "publish failed");
                    }
                }
            }
        })
    }

    fn status(&self) -> Vec<varpulis_api::worker::ConnectorStatus> {
        vec![self.stats.status()]
    }
}

/// Spawns the publisher connection of `plan`, if it has sinks; returns its sink.
pub fn start_sink(
    state: &AppState,
    pipeline: &Arc<Pipeline>,
    plan: &MqttPlan,
) -> Option<Box<dyn Sink>> {
    if plan.sinks.is_empty() {
        return None;
    }
    let (client, eventloop) =
        AsyncClient::new(options(plan, &pipeline.id, "out", None), REQUEST_QUEUE);
    let stats = Arc::new(ConnectorStats::new(&plan.name, "mqtt"));
    let conn = Connection {
        name: plan.name.clone(),
        feed: Feed::sinks_of(pipeline),
        client: client.clone(),
        health: Some(stats.clone()),
    };
    state
        .tasks
        .spawn(conn.run(eventloop, Vec::new(), plan.params.qos, None));
    Some(Box::new(MqttSink {
        pipeline: pipeline.id.clone(),
        connector: plan.name.clone(),
        default_topic: plan.params.topic.clone(),
        qos: plan.params.qos,
        client,
        stats,
    }))
}

/// Spawns the subscriber connection of `feed` (nothing without subscriptions); incoming
/// publishes go to `ingest`. A placed pipeline's QoS ≥ 1 subscriber resumes the placement's
/// persistent session ([`session_id`]).
pub fn start_source(
    state: &AppState,
    feed: &Arc<Feed>,
    plan: MqttPlan,
    ingest: mpsc::Sender<Inbound>,
) {
    if plan.subscriptions.is_empty() {
        return;
    }
    let target = feed.target();
    let id = target.as_ref().map(|p| p.id.clone()).unwrap_or_default();
    let session = target.as_ref().and_then(|p| session_id(&plan, p));
    let queue = if session.is_some() {
        ACK_QUEUE
    } else {
        REQUEST_QUEUE
    };
    let (client, eventloop) =
        AsyncClient::new(options(&plan, &id, "in", session.as_deref()), queue);
    if let Some(session) = &session {
        tracing::debug!(pipeline = %id, %session, "mqtt source resumes its placement's session");
    }
    let conn = Connection {
        name: plan.name.clone(),
        feed: feed.clone(),
        client,
        health: Some(feed.source_health(&plan.name, "mqtt")),
    };
    let persistent = session.is_some();
    state.tasks.spawn(conn.run(
        eventloop,
        plan.subscriptions,
        plan.params.qos,
        Some((ingest, persistent)),
    ));
}

/// One MQTT connection working for a feed (subscriber) or a pipeline's sinks (publisher).
struct Connection {
    name: String,
    feed: Arc<Feed>,
    client: AsyncClient,
    /// The connection's health and counters (a subscriber's source entry, or the publisher's
    /// sink entry).
    health: Option<Arc<ConnectorStats>>,
}

impl Connection {
    /// Polls the event loop until cancelled: (re)subscribes on every ConnAck, decodes incoming
    /// publishes into the ingest channel (waiting when it is full), and backs off on errors.
    ///
    /// A subscriber whose feed closes while its pipeline lives on (sources replaced at a
    /// hand-over) closes gracefully: it unsubscribes and keeps passing on what the broker sent
    /// until every UNSUBACK arrived (at most [`CLOSE_DEADLINE`]), so no message the client
    /// acknowledged is left behind. A deleted pipeline (`feed.ingest`) stops it at once; a
    /// persistent session then still writes the acknowledgements of what the ingest loop
    /// published ([`close_flushing`]) and never unsubscribes (the broker keeps the topic for
    /// the placement's next copy).
    ///
    /// `ingest` is the channel to the ingest loop and whether messages are acknowledged by hand
    /// (a persistent session).
    async fn run(
        self,
        mut eventloop: EventLoop,
        subscriptions: Vec<(String, String)>,
        qos: QoS,
        ingest: Option<(mpsc::Sender<Inbound>, bool)>,
    ) {
        let manual_acks = ingest.as_ref().is_some_and(|(_, m)| *m);
        let ingest = ingest.map(|(tx, _)| tx);
        let cancel = self.feed.connections.clone();
        let hard = self.feed.ingest.clone();
        let mut backoff = BACKOFF_INITIAL;
        // While closing: UNSUBACKs still expected, and the deadline.
        let mut closing: Option<(usize, tokio::time::Instant)> = None;
        let mut stopped = false;
        loop {
            let deadline = closing.map(|c| c.1);
            let polled = tokio::select! {
                // A stop (fence, delete) cancels both tokens: it must win over the graceful
                // close, which unsubscribes (a persistent session would then forget the topic
                // and lose what arrives until the next copy subscribes).
                biased;
                () = hard.cancelled() => {
                    stopped = true;
                    break;
                }
                () = cancel.cancelled(), if closing.is_none() && !hard.is_cancelled() => {
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
                    self.feed.on_target(Pipeline::clear_degraded);
                    if let Some(h) = &self.health {
                        h.set_ok();
                    }
                    tracing::debug!(connector = %self.name, "mqtt connected");
                    for (filter, _) in &subscriptions {
                        if let Err(e) = self.client.try_subscribe(filter.clone(), qos) {
                            tracing::warn!(connector = %self.name, error = %e, "subscribe failed");
                        }
                    }
                }
                Ok(rumqttc::Event::Incoming(Packet::Publish(publish))) => {
                    let Some(tx) = &ingest else { continue };
                    if let Some(h) = &self.health {
                        ConnectorStats::add(&h.received, 1);
                    }
                    let default_type = subscriptions
                        .iter()
                        .find(|(f, _)| rumqttc::matches(&publish.topic, f))
                        .or(subscriptions.first())
                        .map(|(_, t)| t.as_str())
                        .unwrap_or_default();
                    match decode_payload(&publish.payload, default_type) {
                        Ok((ty, fields)) => {
                            let event = Event::from_json(&ty, &fields, now_ns());
                            let ack = manual_acks.then(|| Ack::new(self.client.clone(), publish));
                            // Not interrupted when only the connection is closed (sources
                            // replaced at a hand-over): the ingest loop drains this channel.
                            tokio::select! {
                                () = hard.cancelled() => {
                                    stopped = true;
                                    break;
                                }
                                r = tx.send(Inbound { event, ack }) => if r.is_err() { break },
                            }
                        }
                        Err(e) => {
                            self.feed.on_target(Pipeline::count_dropped);
                            tracing::debug!(topic = %publish.topic, error = %e, "payload dropped");
                            // Nothing will ever process it: settled.
                            if manual_acks {
                                Ack::new(self.client.clone(), publish).send();
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let reason = format!("mqtt connector `{}`: {e}", self.name);
                    if let Some(h) = &self.health {
                        h.set_down(reason.clone());
                    }
                    if !self.feed.back_off(reason, &mut backoff, BACKOFF_MAX).await {
                        break;
                    }
                }
            }
        }
        if stopped && manual_acks {
            drop(ingest);
            close_flushing(&self.feed, &self.client, &mut eventloop).await;
            return;
        }
        let _ = self.client.try_disconnect();
        // Let the DISCONNECT go out; bounded so shutdown never hangs on a dead broker.
        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    }
}
