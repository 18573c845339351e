//! The `.from` side of a Kafka connector: one consumer-group member per connector and feed.
//!
//! Records are decoded like MQTT payloads (VPL.md §9; a bad payload is counted as dropped) and
//! handed to the feed's ingest loop in the order the consumer returns them (per-partition
//! order). Each carries a [`KafkaAck`]: the ingest loop sends it once the event ran and its
//! outputs were published, which *stores* the record's offset; librdkafka commits the stored
//! offsets every `auto.commit.interval.ms` (1 s), on a rebalance and when the source closes
//! (`enable.auto.offset.store=false`). A record whose event was never finished (worker killed,
//! pipeline fenced or moved) is therefore consumed again by the group member that gets its
//! partition: at-least-once. A dropped (bad) payload stores nothing; the next good record of
//! its partition covers it.
//!
//! Closing (the feed stops: pipeline deleted, fenced, moved): the source stops reading, waits
//! for the ingest loop to finish its batch (at most [`ACK_FLUSH_DEADLINE`]), commits what was
//! stored and leaves the group, so the partitions move to the other members at once.

use super::super::inbound::{Ack, Inbound, ACK_FLUSH_DEADLINE};
use super::super::payload::decode_payload;
use super::super::plan::kafka::KafkaPlan;
use crate::engine::Event;
use crate::event_time::now_ns;
use crate::pipeline::Feed;
use crate::state::AppState;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::ClientContext;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Pause after a consumer error before reading again (librdkafka reconnects by itself).
const ERROR_PAUSE: Duration = Duration::from_millis(200);

/// The consumer of one source.
type KafkaConsumer = StreamConsumer<SourceContext>;

/// Routes librdkafka's logs, errors and rebalances to the worker's log and the feed's
/// pipeline status.
struct SourceContext {
    connector: String,
    feed: Arc<Feed>,
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        super::log(&self.connector, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = format!("kafka connector `{}`: {error}: {reason}", self.connector);
        tracing::warn!("{reason}");
        self.feed.on_target(|p| p.set_degraded(reason));
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let what = match rebalance {
            Rebalance::Assign(tpl) => format!("assigned {} partition(s)", tpl.count()),
            Rebalance::Revoke(tpl) => format!("revoked {} partition(s)", tpl.count()),
            Rebalance::Error(e) => format!("rebalance error: {e}"),
        };
        tracing::info!(connector = %self.connector, "kafka consumer group: {what}");
    }
}

/// Acknowledges one consumed record: stores its offset for the next commit.
pub struct KafkaAck {
    consumer: Arc<KafkaConsumer>,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
}

impl std::fmt::Debug for KafkaAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KafkaAck({}/{}@{})",
            self.topic, self.partition, self.offset
        )
    }
}

impl KafkaAck {
    /// Stores the offset after this record (committed with the next commit). A partition
    /// revoked meanwhile refuses it: its new owner consumes the record again.
    pub fn send(self) {
        if let Err(e) = self
            .consumer
            .store_offset(&self.topic, self.partition, self.offset)
        {
            tracing::debug!(ack = ?self, error = %e, "kafka offset not stored");
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
    let defaults = [
        ("group.id", group.as_str()),
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", "1000"),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "1000"),
    ];
    let mut config = super::config(&plan.params, &defaults, &format!("varpulis-{pipeline_id}"));
    config.set("enable.auto.offset.store", "false");
    let context = SourceContext {
        connector: plan.name.clone(),
        feed: feed.clone(),
    };
    let consumer: KafkaConsumer = match config.create_with_context(context) {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("kafka connector `{}`: {e}", plan.name);
            tracing::error!(pipeline = %pipeline_id, "{reason}");
            feed.on_target(|p| p.set_degraded(reason));
            return;
        }
    };
    let topics: Vec<&str> = plan.subscriptions.iter().map(|(t, _)| t.as_str()).collect();
    if let Err(e) = consumer.subscribe(&topics) {
        let reason = format!("kafka connector `{}`: subscribe: {e}", plan.name);
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
        plan.name,
        types,
        ingest,
    ));
}

/// One record, copied out of the consumer's buffer.
struct Record {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
}

async fn run(
    consumer: Arc<KafkaConsumer>,
    feed: Arc<Feed>,
    name: String,
    types: HashMap<Arc<str>, String>,
    tx: mpsc::Sender<Inbound>,
) {
    let mut failing = false;
    loop {
        let received = tokio::select! {
            () = feed.connections.cancelled() => break,
            r = consumer.recv() => r.map(|m| Record {
                topic: types
                    .get_key_value(m.topic())
                    .map(|(k, _)| k.clone())
                    .unwrap_or_else(|| Arc::from(m.topic())),
                partition: m.partition(),
                offset: m.offset(),
                payload: m.payload().unwrap_or_default().to_vec(),
            }),
        };
        let record = match received {
            Ok(r) => r,
            Err(e) => {
                failing = true;
                let reason = format!("kafka connector `{name}`: {e}");
                tracing::warn!("{reason}");
                feed.on_target(|p| p.set_degraded(reason));
                tokio::select! {
                    () = feed.connections.cancelled() => break,
                    () = tokio::time::sleep(ERROR_PAUSE) => continue,
                }
            }
        };
        if failing {
            failing = false;
            feed.on_target(|p| p.clear_degraded());
        }
        let default_type = types.get(&record.topic).map_or("", String::as_str);
        let event = match decode_payload(&record.payload, default_type) {
            Ok((ty, fields)) => Event::from_json(&ty, &fields, now_ns()),
            Err(e) => {
                feed.on_target(|p| p.count_dropped());
                tracing::debug!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %e, "kafka payload dropped");
                continue;
            }
        };
        let inbound = Inbound {
            event,
            ack: Some(Ack::Kafka(KafkaAck {
                consumer: consumer.clone(),
                topic: record.topic,
                partition: record.partition,
                offset: record.offset,
            })),
        };
        tokio::select! {
            () = feed.connections.cancelled() => break,
            sent = tx.send(inbound) => if sent.is_err() { break },
        }
    }
    drop(tx);
    close(consumer, &feed, &name).await;
}

/// Waits for the ingest loop to store the offsets of what it published (bounded), then
/// commits them and leaves the group, on the blocking pool (both wait on the broker).
async fn close(consumer: Arc<KafkaConsumer>, feed: &Feed, name: &str) {
    let _ = tokio::time::timeout(ACK_FLUSH_DEADLINE, feed.done.cancelled()).await;
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
