//! NATS connections (VPL.md §9, kind `nats`) on async-nats, carrying out a [`NatsPlan`].
//!
//! ```vpl
//! connector Bus = nats(servers: "nats://127.0.0.1:4222")
//! stream Readings = Reading.from(Bus, topic: "plant.readings.>")
//! stream Hot = Readings .where(temp > 50) .emit(id: id, temp: temp) .to(Bus, topic: "plant.hot")
//! ```
//!
//! One client connection per connector, pipeline and direction (subscriptions apart, so a
//! rolling update can hand them over to the next version); async-nats reconnects by itself
//! (our delay: 0.5 s doubling to 30 s) and re-sends the subscriptions. Payloads are decoded
//! and encoded exactly like MQTT ones (`connectors::payload`).
//!
//! Flow control: each subscription feeds the pipeline's bounded ingest channel, waiting when it
//! is full; `.to` outputs go through a bounded queue (the [`NatsSink`] waits when it is full) to
//! a publisher connection. Core NATS is at-most-once: when a subscription's client-side buffer
//! overflows (slow consumer) the server drops messages; this is logged and marks the pipeline
//! `degraded` until the next successful reconnect.

use super::inbound::Inbound;
use super::payload::{decode_payload, encode_output};
use super::plan::nats::{NatsParams, NatsPlan};
use super::sink::{bound_to, Sink};
use super::stats::ConnectorStats;
use crate::counters::Counters;
use crate::engine::{Event, Output};
use crate::event_time::now_ns;
use crate::pipeline::Pipeline;
use crate::state::AppState;
use async_nats::{Client, Subscriber};
use futures::future::BoxFuture;
use futures::StreamExt;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Capacity of the `.to` publish queue of one connector (publish waits when full).
const PUBLISH_QUEUE: usize = 1024;

/// Where a pipeline's `.to(Conn)` outputs go for one NATS connector.
#[derive(Debug)]
pub struct NatsSink {
    pipeline: String,
    connector: String,
    /// Subject used when the `.to` names none.
    default_subject: Option<String>,
    tx: mpsc::Sender<(String, Vec<u8>)>,
    /// Health (of the connection) and counters: `queued` = waiting in the publish queue,
    /// `events_sent` = handed to the NATS client, `events_given_up` = refused by it.
    stats: Arc<ConnectorStats>,
}

impl Sink for NatsSink {
    fn publish<'a>(&'a self, outputs: &'a [Output], counters: &'a Counters) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let default = self.default_subject.as_deref();
            for (o, subject) in bound_to(outputs, &self.connector, default) {
                ConnectorStats::add(&self.stats.queued, 1);
                if self
                    .tx
                    .send((subject.clone(), encode_output(o)))
                    .await
                    .is_err()
                {
                    self.stats.dequeued(1);
                    ConnectorStats::add(&self.stats.given_up, 1);
                    // The connection is gone: the pipeline is stopping.
                    Counters::add(&counters.errors, 1);
                    tracing::warn!(pipeline = %self.pipeline, %subject, "nats publish queue closed");
                }
            }
        })
    }

    fn status(&self) -> Vec<varpulis_api::worker::ConnectorStatus> {
        vec![self.stats.status()]
    }
}

/// Spawns the connection of `plan`, stopped by `cancel`; its subscriptions feed `ingest`
/// (when given) and report through `health` (the source's health and counters); returns the
/// sink for its `.to` outputs, if any.
pub fn start(
    state: &AppState,
    pipeline: &Arc<Pipeline>,
    plan: NatsPlan,
    ingest: Option<(mpsc::Sender<Inbound>, Arc<ConnectorStats>)>,
    cancel: CancellationToken,
) -> Option<Box<dyn Sink>> {
    let (sink, publish_rx, sink_health) = if plan.sinks.is_empty() {
        (None, None, None)
    } else {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let stats = Arc::new(ConnectorStats::new(&plan.name, "nats"));
        let sink: Box<dyn Sink> = Box::new(NatsSink {
            pipeline: pipeline.id.clone(),
            connector: plan.name.clone(),
            default_subject: plan.params.subject.clone(),
            tx,
            stats: stats.clone(),
        });
        (Some(sink), Some(rx), Some(stats))
    };
    let (ingest, health) = match ingest.filter(|_| !plan.subscriptions.is_empty()) {
        Some((tx, health)) => (Some(tx), Some(health)),
        None => (None, None),
    };
    let conn = Connection {
        name: plan.name,
        params: plan.params,
        pipeline: pipeline.clone(),
        cancel,
        health,
        sink_health,
    };
    state
        .tasks
        .spawn(conn.run(plan.subscriptions, ingest, publish_rx));
    sink
}

struct Connection {
    name: String,
    params: NatsParams,
    pipeline: Arc<Pipeline>,
    cancel: CancellationToken,
    /// The subscriber side's health and counters (`None` without subscriptions).
    health: Option<Arc<ConnectorStats>>,
    /// The publisher side's (`None` without `.to`).
    sink_health: Option<Arc<ConnectorStats>>,
}

impl Connection {
    /// The health entries of this connection (source and sink sides).
    fn healths(&self) -> Vec<Arc<ConnectorStats>> {
        self.health
            .iter()
            .chain(&self.sink_health)
            .cloned()
            .collect()
    }
}

impl Connection {
    /// Connects (retrying in the background), then runs the subscription loop and the publisher
    /// side by side until the pipeline is cancelled.
    async fn run(
        self,
        subscriptions: Vec<(String, String)>,
        ingest: Option<mpsc::Sender<Inbound>>,
        publish_rx: Option<mpsc::Receiver<(String, Vec<u8>)>>,
    ) {
        let weak = Arc::downgrade(&self.pipeline);
        let name = self.name.clone();
        let (source, sink) = (self.health.clone(), self.sink_health.clone());
        let options = self
            .params
            .options(&format!("varpulis-{}", self.pipeline.id))
            .event_callback(move |event| {
                let weak = weak.clone();
                let name = name.clone();
                let (source, sink) = (source.clone(), sink.clone());
                async move { on_event(&weak, &name, source.as_deref(), sink.as_deref(), event) }
            });
        let client = match options.connect(self.params.addrs()).await {
            Ok(c) => c,
            Err(e) => {
                // Only configuration errors end up here (retry_on_initial_connect is set).
                let reason = format!("nats connector `{}`: {e}", self.name);
                tracing::warn!(pipeline = %self.pipeline.id, "{reason}");
                for h in self.healths() {
                    h.set_down(reason.clone());
                }
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
                        if let Some(h) = &self.health {
                            h.set_down(reason.clone());
                        }
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
        ingest: Option<mpsc::Sender<Inbound>>,
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
            if let Some(h) = &self.health {
                ConnectorStats::add(&h.received, 1);
            }
            match decode_payload(&msg.payload, &default_type) {
                Ok((ty, fields)) => {
                    let ev = Event::from_json(&ty, &fields, now_ns());
                    if tx.send(ev.into()).await.is_err() {
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
            let result = client.publish(subject.clone(), payload.into()).await;
            if let Some(h) = &self.sink_health {
                h.dequeued(1);
                let counter = if result.is_ok() { &h.sent } else { &h.given_up };
                ConnectorStats::add(counter, 1);
            }
            if let Err(e) = result {
                self.pipeline.count_dropped();
                tracing::warn!(pipeline = %self.pipeline.id, %subject, error = %e, "nats publish failed");
            }
        }
    }
}

/// Client events: a connect clears `degraded` (and the source's `down`), a disconnect or error
/// sets them.
fn on_event(
    pipeline: &Weak<Pipeline>,
    name: &str,
    source: Option<&ConnectorStats>,
    sink: Option<&ConnectorStats>,
    event: async_nats::Event,
) {
    let Some(p) = pipeline.upgrade() else { return };
    let healths = || source.into_iter().chain(sink);
    let reason = match event {
        async_nats::Event::Connected => {
            tracing::debug!(pipeline = %p.id, connector = %name, "nats connected");
            for h in healths() {
                h.set_ok();
            }
            p.clear_degraded();
            return;
        }
        async_nats::Event::SlowConsumer(_) => {
            // The subscriber's problem only: the publisher side stays healthy.
            let reason = format!("nats connector `{name}`: slow consumer, messages were dropped");
            tracing::warn!(pipeline = %p.id, "{reason}");
            if let Some(h) = source {
                h.set_down(reason.clone());
            }
            p.set_degraded(reason);
            return;
        }
        async_nats::Event::Disconnected
        | async_nats::Event::Closed
        | async_nats::Event::ClientError(_)
        | async_nats::Event::ServerError(_) => format!("nats connector `{name}`: {event}"),
        _ => return,
    };
    tracing::warn!(pipeline = %p.id, "{reason}");
    for h in healths() {
        h.set_down(reason.clone());
    }
    p.set_degraded(reason);
}
