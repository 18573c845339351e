//! The `.from` side of a Kafka connector: one consumer-group member per connector and feed.
//!
//! Records are read in batches (what the consumer already fetched, up to [`SOURCE_BATCH`]),
//! decoded like MQTT payloads (VPL.md §9; a bad payload is counted as dropped) and handed to the
//! feed's ingest loop in the order the consumer returns them (per-partition order). The last
//! event of a batch carries a [`KafkaAck`] for the whole batch: the ingest loop sends it once
//! the event ran and its outputs were published; the offsets are then *stored* (one call per
//! batch) as soon as the outputs the pipeline's Kafka sinks had been handed by then are
//! delivered (or given up). librdkafka commits the stored offsets every
//! `auto.commit.interval.ms` (1 s), on a rebalance and when the source closes
//! (`enable.auto.offset.store=false`). A record whose event was never finished, or whose
//! outputs were not yet delivered (worker killed, pipeline fenced or moved), is therefore
//! consumed again by the group member that gets its partition: at-least-once. A dropped (bad)
//! payload is covered by the acknowledgement of its batch (or of the next one with an event).
//!
//! Closing (the feed stops: pipeline deleted, fenced, moved): the source stops reading, waits
//! for the ingest loop to finish its batch (at most [`ACK_FLUSH_DEADLINE`]) and for the
//! deliveries of its outputs (at most 5 s), commits what was stored and leaves the group, so
//! the partitions move to the other members at once.

use super::super::inbound::{Ack, Inbound, ACK_FLUSH_DEADLINE};
use super::super::plan::kafka::KafkaPlan;
use super::super::sink::DeliveryTicket;
use super::super::stats::ConnectorStats;
use super::decode::{decode_record, Names};
use crate::event_time::now_ns;
use crate::pipeline::Feed;
use crate::state::AppState;
use futures::{FutureExt, StreamExt};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Pause after a consumer error before reading again (librdkafka reconnects by itself).
const ERROR_PAUSE: Duration = Duration::from_millis(200);
/// Most records read from the consumer before their events go to the ingest loop (one offset
/// store per partition per batch).
pub const SOURCE_BATCH: usize = 1024;
/// Most events handed to the ingest loop under one reservation of its channel (its batch).
const HAND_OVER_CHUNK: usize = super::super::ingest::INGEST_BATCH;
/// How often offsets waiting for the delivery of their outputs are looked at while no record
/// comes (and while closing).
const STORE_POLL: Duration = Duration::from_millis(20);
/// Longest a closing source waits for the outputs of what it acknowledged to be delivered
/// (the sink's own shutdown flush is 4 s) before committing.
const DELIVERY_WAIT: Duration = Duration::from_secs(5);
/// Longest a revoke of partitions waits for the deliveries of acknowledged outputs (it holds
/// up the consumer's poll, and so the source, meanwhile).
const REVOKE_WAIT: Duration = Duration::from_millis(500);

/// The consumer of one source.
type KafkaConsumer = StreamConsumer<SourceContext>;

/// Routes librdkafka's logs, errors and rebalances to the worker's log and the feed's
/// pipeline status.
struct SourceContext {
    connector: String,
    feed: Arc<Feed>,
    /// Offsets acknowledged and waiting for deliveries (stored before partitions are revoked).
    stores: Arc<Stores>,
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        super::log(&self.connector, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = format!("kafka connector `{}`: {error}: {reason}", self.connector);
        tracing::warn!("{reason}");
        self.feed
            .source_health(&self.connector, "kafka")
            .set_down(reason.clone());
        self.feed.on_target(|p| p.set_degraded(reason));
    }
}

impl ConsumerContext for SourceContext {
    /// Before partitions are revoked (librdkafka then commits what is stored): waits, at most
    /// [`REVOKE_WAIT`], for the deliveries of the outputs already acknowledged and stores their
    /// offsets, so the next owner does not process those records again.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Revoke(_)) {
            return;
        }
        let started = std::time::Instant::now();
        loop {
            self.stores.store_settled(consumer);
            if self.stores.is_empty() || started.elapsed() >= REVOKE_WAIT {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let what = match rebalance {
            Rebalance::Assign(tpl) => format!("assigned {} partition(s)", tpl.count()),
            Rebalance::Revoke(tpl) => format!("revoked {} partition(s)", tpl.count()),
            Rebalance::Error(e) => format!("rebalance error: {e}"),
        };
        tracing::info!(connector = %self.connector, "kafka consumer group: {what}");
    }
}

/// Acknowledges the records of one batch: once the batch's last event ran and its outputs were
/// published (the ingest loop runs events in order, so this covers the whole batch), and once
/// the outputs the pipeline's Kafka sinks had been handed by then are delivered, stores per
/// partition the offset after the last record, for the next commit.
pub struct KafkaAck {
    consumer: Arc<KafkaConsumer>,
    feed: Arc<Feed>,
    stores: Arc<Stores>,
    /// Per partition: the next offset to consume.
    offsets: Vec<(Arc<str>, i32, i64)>,
}

impl std::fmt::Debug for KafkaAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KafkaAck({:?})", self.offsets)
    }
}

impl KafkaAck {
    /// Queues the offsets behind the deliveries of the outputs published so far, and stores
    /// what is settled. A partition revoked meanwhile refuses its offset: its new owner
    /// consumes those records again.
    pub fn send(self) {
        let tickets = self
            .feed
            .target()
            .map(|p| p.delivery_tickets())
            .unwrap_or_default();
        self.stores.push(Pending {
            tickets,
            offsets: self.offsets,
        });
        self.stores.store_settled(self.consumer.as_ref());
    }
}

/// Acknowledged offsets waiting for the delivery of their outputs.
struct Pending {
    tickets: Vec<DeliveryTicket>,
    offsets: Vec<(Arc<str>, i32, i64)>,
}

/// A source's acknowledged batches whose outputs are not all delivered yet, oldest first (the
/// ingest loop acknowledges in input order, and each sink's tickets in handing order).
#[derive(Default)]
struct Stores(Mutex<VecDeque<Pending>>);

impl Stores {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, p: Pending) {
        self.lock().push_back(p);
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Stores the offsets of the oldest batches whose outputs are all settled, in one call.
    fn store_settled(&self, consumer: &impl Consumer<SourceContext>) {
        let mut ready: Vec<(Arc<str>, i32, i64)> = Vec::new();
        {
            let mut q = self.lock();
            while q
                .front()
                .is_some_and(|p| p.tickets.iter().all(DeliveryTicket::is_settled))
            {
                let Some(p) = q.pop_front() else { break };
                for (t, part, next) in p.offsets {
                    match ready.iter_mut().find(|(rt, rp, _)| *rp == part && *rt == t) {
                        Some(r) => r.2 = r.2.max(next),
                        None => ready.push((t, part, next)),
                    }
                }
            }
        }
        if ready.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(ready.len());
        for (topic, partition, next) in &ready {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::debug!(?ready, error = %e, "kafka offset not stored");
                return;
            }
        }
        if let Err(e) = consumer.store_offsets(&tpl) {
            tracing::debug!(?ready, error = %e, "kafka offsets not (all) stored");
        }
    }
}

/// The consumer group of `plan` for the feed's pipeline: `group_id`, else one named after the
/// placement (the same for every copy of a coordinator-placed pipeline, so a moved copy
/// resumes from the committed offsets) or the pipeline id, and the connector.
pub fn group_id(plan: &KafkaPlan, feed: &Feed) -> String {
    if let Some(g) = &plan.params.group_id {
        return g.clone();
    }
    let owner = feed
        .target()
        .map(|p| p.placement().unwrap_or(&p.id).to_owned())
        .unwrap_or_default();
    format!("varpulis-{owner}-{}", plan.name)
}

/// Starts the consumer of `plan`'s `.from` topics for `feed`, feeding `ingest`. A client that
/// cannot be created marks the pipeline `degraded`.
pub fn start(state: &AppState, feed: &Arc<Feed>, plan: KafkaPlan, ingest: mpsc::Sender<Inbound>) {
    if plan.subscriptions.is_empty() {
        return;
    }
    let pipeline_id = feed.target().map(|p| p.id.clone()).unwrap_or_default();
    let group = group_id(&plan, feed);
    // Listed (healthy) from the start, under the pipeline's `connectors`.
    let health = feed.source_health(&plan.name, "kafka");
    let defaults = [
        ("group.id", group.as_str()),
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", "1000"),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "1000"),
        // librdkafka 2.x postpones a partition's next fetch by this much once its prefetch
        // queue passed `queued.min.messages` (default 1000 ms): at a sustained 100k events/s
        // the consumer then idles a second every time it gets ahead, which capped the
        // pipeline at ~94k events/s. 10 ms keeps it fed (≈ 360k events/s, docs/benchmarks.md).
        ("fetch.queue.backoff.ms", "10"),
    ];
    let mut config = super::config(&plan.params, &defaults, &format!("varpulis-{pipeline_id}"));
    config.set("enable.auto.offset.store", "false");
    let stores = Arc::new(Stores::default());
    let context = SourceContext {
        connector: plan.name.clone(),
        feed: feed.clone(),
        stores: stores.clone(),
    };
    let consumer: KafkaConsumer = match config.create_with_context(context) {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("kafka connector `{}`: {e}", plan.name);
            tracing::error!(pipeline = %pipeline_id, "{reason}");
            health.set_down(reason.clone());
            feed.on_target(|p| p.set_degraded(reason));
            return;
        }
    };
    let topics: Vec<&str> = plan.subscriptions.iter().map(|(t, _)| t.as_str()).collect();
    if let Err(e) = consumer.subscribe(&topics) {
        let reason = format!("kafka connector `{}`: subscribe: {e}", plan.name);
        health.set_down(reason.clone());
        feed.on_target(|p| p.set_degraded(reason));
        return;
    }
    tracing::info!(pipeline = %pipeline_id, connector = %plan.name, %group, ?topics, "kafka source started");
    let types: HashMap<Arc<str>, String> = plan
        .subscriptions
        .iter()
        .map(|(t, ty)| (Arc::from(t.as_str()), ty.clone()))
        .collect();
    state.tasks.spawn(run(
        Arc::new(consumer),
        feed.clone(),
        stores,
        plan.name,
        types,
        ingest,
    ));
}

/// Per partition, the offset after the last record read and not yet covered by an
/// acknowledgement (records of a batch that were all bad payloads carry over to the next).
#[derive(Default)]
struct Marks(Vec<(Arc<str>, i32, i64)>);

impl Marks {
    /// Notes that the record at `offset` of `topic`/`partition` was read.
    fn note(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let next = offset + 1;
        match self
            .0
            .iter_mut()
            .find(|(t, p, _)| *p == partition && Arc::ptr_eq(t, topic))
        {
            Some(m) => m.2 = m.2.max(next),
            None => self.0.push((topic.clone(), partition, next)),
        }
    }
}

/// Reads records in batches of up to [`SOURCE_BATCH`] (what the consumer already holds, without
/// waiting for more), decodes them in place and hands their events to the ingest loop. Only the
/// last event of a batch carries an acknowledgement, covering every partition the batch read.
async fn run(
    consumer: Arc<KafkaConsumer>,
    feed: Arc<Feed>,
    stores: Arc<Stores>,
    name: String,
    types: HashMap<Arc<str>, String>,
    tx: mpsc::Sender<Inbound>,
) {
    read(&consumer, &feed, &stores, &name, &types, &tx).await;
    drop(tx);
    close(consumer, &feed, &stores, &name).await;
}

async fn read(
    consumer: &Arc<KafkaConsumer>,
    feed: &Arc<Feed>,
    stores: &Arc<Stores>,
    name: &str,
    types: &HashMap<Arc<str>, String>,
    tx: &mpsc::Sender<Inbound>,
) {
    let mut stream = consumer.stream();
    let mut failing = false;
    let mut marks = Marks::default();
    let mut batch: Vec<Inbound> = Vec::with_capacity(SOURCE_BATCH);
    let mut names = Names::default();
    let health = feed.source_health(name, "kafka");
    loop {
        stores.store_settled(consumer.as_ref());
        let waiting = !stores.is_empty();
        let mut next = tokio::select! {
            () = feed.connections.cancelled() => return,
            m = stream.next() => m,
            // Offsets waiting for deliveries are stored even while no record comes.
            () = tokio::time::sleep(STORE_POLL), if waiting => continue,
        };
        let mut taken = 0;
        // The records of a batch arrived together: one arrival time for all.
        let arrived = now_ns();
        loop {
            match next {
                Some(Ok(m)) => {
                    if failing {
                        failing = false;
                        health.set_ok();
                        feed.on_target(|p| p.clear_degraded());
                    }
                    taken += 1;
                    let topic = types
                        .get_key_value(m.topic())
                        .map(|(k, _)| k.clone())
                        .unwrap_or_else(|| Arc::from(m.topic()));
                    marks.note(&topic, m.partition(), m.offset());
                    let default_type = types.get(&topic).map_or("", String::as_str);
                    let payload = m.payload().unwrap_or_default();
                    match decode_record(payload, default_type, arrived, &mut names) {
                        Ok(event) => batch.push(Inbound { event, ack: None }),
                        Err(e) => {
                            feed.on_target(|p| p.count_dropped());
                            tracing::debug!(%topic, partition = m.partition(), offset = m.offset(), error = %e, "kafka payload dropped");
                        }
                    }
                }
                Some(Err(e)) => {
                    failing = true;
                    let reason = format!("kafka connector `{name}`: {e}");
                    tracing::warn!("{reason}");
                    health.set_down(reason.clone());
                    feed.on_target(|p| p.set_degraded(reason));
                    if taken == 0 {
                        tokio::select! {
                            () = feed.connections.cancelled() => return,
                            () = tokio::time::sleep(ERROR_PAUSE) => {}
                        }
                    }
                    break;
                }
                // A consumer's stream never ends.
                None => return,
            }
            if taken >= SOURCE_BATCH {
                break;
            }
            match stream.next().now_or_never() {
                Some(m) => next = m,
                None => break,
            }
        }
        if taken > 0 {
            ConnectorStats::add(&health.received, taken as u64);
            // Records flow again after a client error reported by librdkafka's callback.
            if health.down_reason().is_some() {
                health.set_ok();
                feed.on_target(|p| p.clear_degraded());
            }
        }
        if let Some(last) = batch.last_mut() {
            last.ack = Some(Ack::Kafka(KafkaAck {
                consumer: consumer.clone(),
                feed: feed.clone(),
                stores: stores.clone(),
                offsets: std::mem::take(&mut marks.0),
            }));
        }
        if !hand_over(&mut batch, feed, tx).await {
            return;
        }
    }
}

/// Sends the batch's events to the ingest loop in order, reserving room for up to
/// [`HAND_OVER_CHUNK`] at a time (one wait and one wake-up per chunk instead of per event).
/// False when the feed stopped or the ingest loop is gone.
async fn hand_over(batch: &mut Vec<Inbound>, feed: &Feed, tx: &mpsc::Sender<Inbound>) -> bool {
    let mut events = batch.drain(..);
    loop {
        let n = events.len().min(HAND_OVER_CHUNK).min(tx.max_capacity());
        if n == 0 {
            return true;
        }
        let permits = tokio::select! {
            () = feed.connections.cancelled() => return false,
            p = tx.reserve_many(n) => match p { Ok(p) => p, Err(_) => return false },
        };
        for (permit, inbound) in permits.zip(events.by_ref()) {
            permit.send(inbound);
        }
    }
}

/// Waits for the ingest loop to acknowledge what it published (bounded), then for the outputs
/// of those inputs to be delivered (bounded) while storing their offsets, then commits and
/// leaves the group, on the blocking pool (both wait on the broker).
async fn close(consumer: Arc<KafkaConsumer>, feed: &Feed, stores: &Stores, name: &str) {
    let _ = tokio::time::timeout(ACK_FLUSH_DEADLINE, feed.done.cancelled()).await;
    let _ = tokio::time::timeout(DELIVERY_WAIT, async {
        loop {
            stores.store_settled(consumer.as_ref());
            if stores.is_empty() {
                break;
            }
            tokio::time::sleep(STORE_POLL).await;
        }
    })
    .await;
    if !stores.is_empty() {
        tracing::warn!(connector = %name, "kafka source closing before its outputs were delivered: their inputs will be consumed again");
    }
    let name = name.to_owned();
    let closing = tokio::task::spawn_blocking(move || {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::debug!(connector = %name, "kafka offsets committed at close"),
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(connector = %name, error = %e, "kafka offsets not committed at close")
            }
        }
        // Leaves the group (the last reference: acknowledgements still queued hold others).
        drop(consumer);
    });
    let _ = closing.await;
}
