//! Inter-pipeline routes over MQTT (docs/dataplane.md), carrying out a [`RoutePlan`].
//!
//! Outbound: one publisher client per pipeline (a [`RouteSink`]) sends the output events
//! matching each outbound route to its topic. Inbound: one subscriber per pipeline feeds what
//! arrives on its topics to the pipeline's ingest loop. Publishers and subscribers only share a
//! topic, so a route keeps working when either end migrates to another worker.
//!
//! Wire format: one MQTT message per publish call and route, QoS 1, holding one event or a JSON
//! array of them (at most [`MAX_EVENTS_PER_MESSAGE`]). A publish waits at most
//! `route_publish_timeout` for room in the client's bounded queue, and not at all while the
//! broker is unreachable: events that do not fit are dropped and counted, so the pipeline is
//! never blocked for long.

use super::inbound::{close_flushing, Ack, Inbound};
use super::payload::{decode_route_message, encode_route_message};
use super::plan::routes::{pattern_matches, RoutePlan};
use super::sink::Sink;
use crate::config::{BrokerAddr, ClientTlsFiles};
use crate::counters::Counters;
use crate::engine::Output;
use crate::pipeline::{Feed, Pipeline};
use crate::state::AppState;
use futures::future::BoxFuture;
use rumqttc::{AsyncClient, EventLoop, MqttOptions, Packet, QoS};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use varpulis_api::worker::RouteTopic;

/// Most events packed into one route message.
pub const MAX_EVENTS_PER_MESSAGE: usize = 512;
/// Capacity of rumqttc's request queue of a route publisher (messages).
const REQUEST_QUEUE: usize = 256;
/// QoS 1 messages in flight per connection.
const INFLIGHT: u16 = 512;
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

fn options(
    broker: &BrokerAddr,
    tls: &ClientTlsFiles,
    client_id: String,
    clean: bool,
) -> Result<MqttOptions, String> {
    let mut o = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    o.set_transport(tls.mqtt_transport().map_err(|e| format!("routes: {e}"))?);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    o.set_inflight(INFLIGHT);
    o.set_clean_session(clean);
    if let Some(u) = &broker.username {
        o.set_credentials(u.clone(), broker.password.clone().unwrap_or_default());
    }
    Ok(o)
}

fn short_id(pipeline_id: &str) -> String {
    pipeline_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect()
}

/// The outbound routes of one pipeline: one client shared by all of them.
#[derive(Debug)]
pub struct RouteSink {
    client: AsyncClient,
    routes: Vec<RouteTopic>,
    /// Whether the publisher is connected (else publishes do not wait at all).
    connected: Arc<AtomicBool>,
    timeout: Duration,
}

impl RouteSink {
    /// Queues one message; `false` when it did not fit in time.
    async fn send(&self, topic: &str, payload: Vec<u8>) -> bool {
        if !self.connected.load(Ordering::Relaxed) {
            return self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
                .is_ok();
        }
        let publish = self.client.publish(topic, QoS::AtLeastOnce, false, payload);
        matches!(
            tokio::time::timeout(self.timeout, publish).await,
            Ok(Ok(()))
        )
    }
}

impl Sink for RouteSink {
    fn publish<'a>(&'a self, outputs: &'a [Output], counters: &'a Counters) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for route in &self.routes {
                let matching: Vec<&Output> = outputs
                    .iter()
                    .filter(|o| o.is_output)
                    .filter(|o| {
                        route
                            .event_types
                            .iter()
                            .any(|p| pattern_matches(p, &o.event.event_type))
                    })
                    .collect();
                for chunk in matching.chunks(MAX_EVENTS_PER_MESSAGE) {
                    let n = chunk.len() as u64;
                    if self.send(&route.topic, encode_route_message(chunk)).await {
                        Counters::add(&counters.route_published, n);
                    } else {
                        Counters::add(&counters.route_dropped, n);
                        tracing::debug!(topic = %route.topic, events = n, "route events dropped");
                    }
                }
            }
        })
    }
}

/// Starts the publisher connection of a registered pipeline's outbound routes; returns its
/// sink. Without a broker the pipeline is marked degraded.
pub fn start_outbound(
    state: &AppState,
    pipeline: &Arc<Pipeline>,
    plan: RoutePlan,
) -> Option<Box<dyn Sink>> {
    let broker = match plan.broker {
        Ok(b) => b,
        Err(reason) => {
            pipeline.set_degraded(reason);
            return None;
        }
    };
    if plan.outbound.is_empty() {
        return None;
    }
    let id = format!(
        "vp-{}-route-out-{:08x}",
        short_id(&pipeline.id),
        rand::random::<u32>()
    );
    let options = match options(&broker, &plan.tls, id, true) {
        Ok(o) => o,
        Err(reason) => {
            pipeline.set_degraded(reason);
            return None;
        }
    };
    let (client, eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
    let connected = Arc::new(AtomicBool::new(false));
    let conn = RouteConnection {
        feed: Feed::sinks_of(pipeline),
        client: client.clone(),
        connected: connected.clone(),
        subscriptions: Vec::new(),
        ingest: None,
        manual_acks: false,
    };
    state.tasks.spawn(conn.run(eventloop));
    Some(Box::new(RouteSink {
        client,
        routes: plan.outbound,
        connected,
        timeout: state.config.route_publish_timeout,
    }))
}

/// Starts the subscriber connection of `feed` (the pipeline's inbound routes); inbound events
/// go to `ingest`. Without a broker the pipeline is marked degraded.
pub fn start_inbound(
    state: &AppState,
    pipeline: &Arc<Pipeline>,
    feed: &Arc<Feed>,
    plan: RoutePlan,
    ingest: mpsc::Sender<Inbound>,
) {
    let broker = match plan.broker {
        Ok(b) => b,
        Err(reason) => {
            pipeline.set_degraded(reason);
            return;
        }
    };
    if plan.inbound.is_empty() {
        return;
    }
    // A persistent session keyed by the placement (not the worker) lets the broker keep QoS 1
    // events published while the pipeline migrates. A rolling update does not open a second
    // one: the new version takes this connection over at the hand-over.
    let (id, clean) = match &plan.session {
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
    let options = match options(&broker, &plan.tls, id, clean) {
        // A persistent session acknowledges a message once its events' outputs are out, so
        // the next copy gets again what this one did not finish (docs/dataplane.md).
        Ok(mut o) => {
            o.set_manual_acks(!clean);
            o
        }
        Err(reason) => {
            pipeline.set_degraded(reason);
            return;
        }
    };
    let (client, eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
    pipeline.expect_subscription();
    let mut topics: Vec<String> = plan.inbound.into_iter().map(|r| r.topic).collect();
    topics.sort();
    topics.dedup();
    let conn = RouteConnection {
        feed: feed.clone(),
        client,
        connected: Arc::new(AtomicBool::new(false)),
        subscriptions: topics,
        ingest: Some(ingest),
        manual_acks: !clean,
    };
    state.tasks.spawn(conn.run(eventloop));
}

struct RouteConnection {
    /// Who the connection works for: the pipeline's sinks, or a feed (handed over in updates).
    feed: Arc<Feed>,
    client: AsyncClient,
    connected: Arc<AtomicBool>,
    subscriptions: Vec<String>,
    ingest: Option<mpsc::Sender<Inbound>>,
    /// A persistent session: messages are acknowledged by the ingest loop.
    manual_acks: bool,
}

impl RouteConnection {
    /// Polls the event loop until the pipeline stops: (re)subscribes on every ConnAck, feeds
    /// inbound events to the pipeline (waiting when its channel is full, which stops reading
    /// from the broker), and reconnects with backoff.
    async fn run(self, mut eventloop: EventLoop) {
        let cancel = self.feed.connections.clone();
        let mut backoff = BACKOFF_INITIAL;
        'conn: loop {
            let polled = tokio::select! {
                () = cancel.cancelled() => break,
                r = eventloop.poll() => r,
            };
            match polled {
                Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = BACKOFF_INITIAL;
                    self.connected.store(true, Ordering::Relaxed);
                    self.feed.on_target(Pipeline::clear_degraded);
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
                    self.feed.on_target(Pipeline::subscription_acked);
                }
                Ok(rumqttc::Event::Incoming(Packet::Publish(publish))) => {
                    let Some(tx) = &self.ingest else { continue };
                    match decode_route_message(&publish.payload) {
                        Ok(events) => {
                            let n = events.len() as u64;
                            // The message is settled with its last event.
                            let mut ack = self
                                .manual_acks
                                .then(|| Ack::new(self.client.clone(), publish));
                            let last = events.len().saturating_sub(1);
                            if events.is_empty() {
                                if let Some(ack) = ack.take() {
                                    ack.send();
                                }
                            }
                            for (i, event) in events.into_iter().enumerate() {
                                let ack = if i == last { ack.take() } else { None };
                                // Only a deleted pipeline interrupts: when the sources are
                                // replaced at a hand-over, the ingest loop drains this channel.
                                tokio::select! {
                                    () = self.feed.ingest.cancelled() => break 'conn,
                                    r = tx.send(Inbound { event, ack }) => if r.is_err() { break 'conn },
                                }
                            }
                            self.feed
                                .on_target(|p| Counters::add(&p.counters.route_received, n));
                        }
                        Err(e) => {
                            self.feed
                                .on_target(|p| Counters::add(&p.counters.route_dropped, 1));
                            tracing::debug!(topic = %publish.topic, error = %e, "route message dropped");
                            if self.manual_acks {
                                Ack::new(self.client.clone(), publish).send();
                            }
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
        if self.manual_acks {
            // Write the acknowledgements of what the ingest loop still publishes; what it
            // does not finish stays with the broker for the next copy.
            let RouteConnection {
                feed,
                client,
                ingest,
                ..
            } = self;
            drop(ingest);
            close_flushing(&feed, &client, &mut eventloop).await;
            return;
        }
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    }
}
