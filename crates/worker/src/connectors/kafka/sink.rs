//! The `.to` side of a Kafka connector: one idempotent producer per connector and pipeline.
//!
//! Each output bound to the connector is produced as the egress JSON of VPL.md §9
//! (`{"event_type", "timestamp", <fields…>}`) to the binding's `topic` (else the connector's),
//! keyed by the text of the binding's `key:` field when given (a string as is, another value as
//! JSON; no key, or a `null` field, lets the partitioner spread the records).
//!
//! - Delivery: `acks=all` (every in-sync replica), `enable.idempotence=true` (retries neither
//!   duplicate nor reorder within a partition), librdkafka retrying until
//!   `message.timeout.ms` (5 min).
//! - Backpressure: librdkafka's queue (`queue.buffering.max.messages`, 100,000) is the bound;
//!   when it is full, publishing waits (the ingest loop stops reading its source).
//! - Counted ([`ConnectorStats`]): `events_sent` (acknowledged by the broker), `events_given_up`
//!   (delivery failed for good: timed out, refused, purged at shutdown; logged at ERROR),
//!   `queued` (handed to the client, not yet settled), `requests` (records handed to the
//!   client). A failed delivery or a client error marks the connector `down`, the next
//!   delivery `ok`.
//! - Shutdown: when the pipeline stops, the producer is flushed for at most
//!   [`SHUTDOWN_FLUSH`]; what is still queued then is purged and counted as given up.

use super::super::payload::encode_output;
use super::super::plan::kafka::KafkaPlan;
use super::super::sink::Sink;
use super::super::stats::ConnectorStats;
use crate::counters::Counters;
use crate::engine::Output;
use crate::pipeline::Pipeline;
use crate::state::AppState;
use futures::future::BoxFuture;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest the producer is flushed for when its pipeline stops.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(4);
/// Pause before offering a record again to a full queue.
const FULL_PAUSE: Duration = Duration::from_millis(1);

/// Counts deliveries and routes librdkafka's logs and errors.
struct SinkContext {
    pipeline: String,
    stats: Arc<ConnectorStats>,
    /// Give-ups so far (the first and every 1,000th is logged, so an outage does not flood).
    failures: AtomicU64,
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        super::log(self.stats.name(), level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = format!("{error}: {reason}");
        tracing::warn!(pipeline = %self.pipeline, connector = %self.stats.name(), "kafka producer: {reason}");
        self.stats.set_down(reason);
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        self.stats.dequeued(1);
        match result {
            Ok(_) => {
                ConnectorStats::add(&self.stats.sent, 1);
                self.stats.set_ok();
            }
            Err((e, _)) => {
                ConnectorStats::add(&self.stats.given_up, 1);
                let n = self.failures.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(1000) {
                    tracing::error!(
                        pipeline = %self.pipeline,
                        connector = %self.stats.name(),
                        error = %e,
                        given_up = n + 1,
                        "kafka record given up"
                    );
                }
                self.stats.set_down(format!("delivery failed: {e}"));
            }
        }
    }
}

type KafkaProducer = ThreadedProducer<SinkContext>;

/// Where a pipeline's `.to(K)` outputs go for one Kafka connector.
pub struct KafkaSink {
    connector: String,
    default_topic: Option<String>,
    producer: Arc<KafkaProducer>,
    stats: Arc<ConnectorStats>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KafkaSink({})", self.connector)
    }
}

/// The record key of `o` for a binding with `key: field`: the field's text.
fn record_key(o: &Output, field: Option<&str>) -> Option<Vec<u8>> {
    let v = o.event.field(field?)?.to_json();
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

impl KafkaSink {
    /// Hands one record to the producer, waiting while its queue is full.
    async fn produce(&self, topic: &str, key: Option<&[u8]>, payload: &[u8], counters: &Counters) {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    ConnectorStats::add(&self.stats.requests, 1);
                    ConnectorStats::add(&self.stats.queued, 1);
                    return;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(FULL_PAUSE).await;
                }
                Err((e, _)) => {
                    // Refused by the client itself (too large, unknown topic…): final.
                    ConnectorStats::add(&self.stats.given_up, 1);
                    Counters::add(&counters.errors, 1);
                    tracing::error!(connector = %self.connector, %topic, error = %e, "kafka record given up");
                    self.stats.set_down(format!("produce to `{topic}`: {e}"));
                    return;
                }
            }
        }
    }
}

impl Sink for KafkaSink {
    fn publish<'a>(&'a self, outputs: &'a [Output], counters: &'a Counters) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for o in outputs {
                for b in o.sinks().filter(|b| b.connector == self.connector) {
                    let Some(topic) = b.topic().or(self.default_topic.as_deref()) else {
                        continue;
                    };
                    let field = b
                        .params
                        .iter()
                        .find(|(k, _)| k == "key")
                        .and_then(|(_, v)| v.as_str());
                    let key = record_key(o, field);
                    self.produce(topic, key.as_deref(), &encode_output(o), counters)
                        .await;
                }
            }
        })
    }

    fn status(&self) -> Vec<varpulis_api::worker::ConnectorStatus> {
        vec![self.stats.status()]
    }
}

/// Creates the producer of `plan`'s `.to` outputs for `pipeline` (flushed when it stops).
pub fn start(
    state: &AppState,
    pipeline: &Arc<Pipeline>,
    plan: &KafkaPlan,
) -> Result<Box<dyn Sink>, String> {
    let stats = Arc::new(ConnectorStats::new(&plan.name, "kafka"));
    let defaults = [
        ("acks", "all"),
        ("enable.idempotence", "true"),
        ("linger.ms", "5"),
        ("message.timeout.ms", "300000"),
    ];
    let config = super::config(
        &plan.params,
        &defaults,
        &format!("varpulis-{}", pipeline.id),
    );
    let context = SinkContext {
        pipeline: pipeline.id.clone(),
        stats: stats.clone(),
        failures: AtomicU64::new(0),
    };
    let producer: KafkaProducer = config
        .create_with_context(context)
        .map_err(|e| format!("kafka connector `{}`: {e}", plan.name))?;
    let producer = Arc::new(producer);
    let flushing = producer.clone();
    let cancel = pipeline.cancel.clone();
    let name = plan.name.clone();
    state.tasks.spawn(async move {
        cancel.cancelled().await;
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = flushing.flush(SHUTDOWN_FLUSH) {
                tracing::warn!(connector = %name, error = %e, "kafka producer not flushed at shutdown; the rest is given up");
            }
        })
        .await;
    });
    Ok(Box::new(KafkaSink {
        connector: plan.name.clone(),
        default_topic: plan.params.topic.clone(),
        producer,
        stats,
    }))
}
