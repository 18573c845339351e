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
//!   client), `retries` (requests librdkafka re-sent, from its statistics every second). A
//!   failed delivery or a client error marks the connector `down`, the next delivery `ok`.
//! - Settling: every record handed is numbered in a [`DeliveryWindow`]; a Kafka source of the
//!   same pipeline stores its offsets only once the outputs of its inputs are settled
//!   ([`Sink::delivery_ticket`]).
//! - Encoding: the egress JSON is written straight from the event (no `serde_json::Value`
//!   tree), the key borrowed from a string field.
//! - Shutdown: when the pipeline stops, the producer is flushed for at most
//!   [`SHUTDOWN_FLUSH`]; what is still queued then is purged and counted as given up.

use super::super::payload::encode_output;
use super::super::plan::kafka::KafkaPlan;
use super::super::sink::{DeliveryTicket, DeliveryWindow, Sink};
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
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use varpulis_runtime::{json_out, Value};

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
    /// Which records are settled (each record's number is its delivery opaque).
    window: Arc<DeliveryWindow>,
}

/// The part of librdkafka's statistics JSON (`statistics.interval.ms`) the sink reads.
#[derive(serde::Deserialize)]
struct RetryStats {
    #[serde(default)]
    brokers: std::collections::HashMap<String, BrokerRetries>,
}

/// One broker connection's requests re-sent (`txretries`).
#[derive(serde::Deserialize)]
struct BrokerRetries {
    #[serde(default)]
    txretries: u64,
}

/// The requests librdkafka re-sent so far over all its broker connections (a produce request
/// retried after a timeout or a retriable broker error), from a statistics report.
fn retries_in(stats_json: &[u8]) -> Option<u64> {
    let s: RetryStats = serde_json::from_slice(stats_json).ok()?;
    Some(s.brokers.values().map(|b| b.txretries).sum())
}

impl ClientContext for SinkContext {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(n) = retries_in(statistics) {
            self.stats.retries.fetch_max(n, Ordering::Relaxed);
        }
    }

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
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, n: usize) {
        self.window.settle(n as u64);
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
    window: Arc<DeliveryWindow>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KafkaSink({})", self.connector)
    }
}

/// The record key of `o` for a binding with `key: field`: the field's text (a string as is,
/// borrowed; another value as JSON).
fn record_key<'a>(o: &'a Output, field: Option<&str>) -> Option<Cow<'a, [u8]>> {
    match o.event.field(field?)? {
        Value::Null => None,
        Value::Str(s) => Some(Cow::Borrowed(s.as_bytes())),
        other => Some(Cow::Owned(other.to_json().to_string().into_bytes())),
    }
}

/// Appends the egress JSON of `o` to `buf`: the bytes of [`encode_output`]
/// (`{"event_type","timestamp",<fields…>}`), written straight from the event by the runtime's
/// JSON writer instead of through a `serde_json::Value` tree. The writer gives
/// `{"event_type":…,"timestamp":"…","fields":{…}}`; the fields object is opened in place. An
/// event with a field named `event_type` or `timestamp` (which the egress shape overwrites)
/// takes [`encode_output`].
fn encode_flat(o: &Output, buf: &mut Vec<u8>) {
    const FIELDS: &[u8] = b",\"fields\":{";
    let ev = &o.event;
    let start = buf.len();
    let clash = ev
        .fields
        .iter()
        .any(|(k, _)| &**k == "event_type" || &**k == "timestamp");
    if !clash && json_out::write_event(buf, ev).is_ok() {
        // Inside a JSON string every `"` follows a `\`: the first `,"fields":{` is the key.
        let at = buf
            .get(start..)
            .and_then(|w| w.windows(FIELDS.len()).position(|x| x == FIELDS));
        if let Some(at) = at.map(|a| start + a) {
            buf.drain(at + 1..at + FIELDS.len());
            buf.pop();
            if ev.fields.is_empty() {
                buf.remove(at);
            }
            return;
        }
    }
    buf.truncate(start);
    buf.extend_from_slice(&encode_output(o));
}

impl KafkaSink {
    /// Hands one record to the producer, waiting while its queue is full.
    async fn produce(&self, topic: &str, key: Option<&[u8]>, payload: &[u8], counters: &Counters) {
        let n = self.window.hand();
        let mut record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, n as usize).payload(payload);
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
                    self.window.settle(n);
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
            let mut payload = Vec::with_capacity(256);
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
                    payload.clear();
                    encode_flat(o, &mut payload);
                    self.produce(topic, key.as_deref(), &payload, counters)
                        .await;
                }
            }
        })
    }

    fn status(&self) -> Vec<varpulis_api::worker::ConnectorStatus> {
        vec![self.stats.status()]
    }

    fn delivery_ticket(&self) -> Option<DeliveryTicket> {
        Some(self.window.ticket())
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
        // Read for the `retries` counter (requests re-sent).
        ("statistics.interval.ms", "1000"),
    ];
    let config = super::config(
        &plan.params,
        &defaults,
        &format!("varpulis-{}", pipeline.id),
    );
    let window = Arc::new(DeliveryWindow::default());
    let context = SinkContext {
        pipeline: pipeline.id.clone(),
        stats: stats.clone(),
        failures: AtomicU64::new(0),
        window: window.clone(),
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
        window,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::engine::Event;
    use std::sync::Arc as A;

    fn output(fields: Vec<(&str, Value)>) -> Output {
        let fields = fields.into_iter().map(|(k, v)| (A::from(k), v)).collect();
        Output {
            event: Event::new("Hot \"x\"", 1_700_000_000_123_456_789, fields),
            is_output: true,
            sinks: Vec::new(),
        }
    }

    #[test]
    fn the_direct_egress_json_is_the_bytes_of_encode_output() {
        let nested = Value::Map(A::new(vec![(A::from("a,\"fields\":{"), Value::Int(1))]));
        let cases = vec![
            output(vec![]),
            output(vec![("id", Value::str("s1")), ("temp", Value::Int(51))]),
            output(vec![
                ("f", Value::Float(2.5)),
                ("nan", Value::Float(f64::NAN)),
                ("esc", Value::str("q\"\\\n,\"fields\":{")),
                (
                    "arr",
                    Value::Array(A::new(vec![Value::Null, Value::Bool(true)])),
                ),
                ("m", nested),
                ("t", Value::Timestamp(5)),
                ("d", Value::Duration(7)),
            ]),
            output(vec![("x", Value::Int(1)), ("x", Value::Int(2))]),
            output(vec![("timestamp", Value::Int(3)), ("y", Value::Int(4))]),
            output(vec![("event_type", Value::str("T"))]),
        ];
        for o in cases {
            let mut buf = b"prefix".to_vec();
            encode_flat(&o, &mut buf);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                format!("prefix{}", String::from_utf8(encode_output(&o)).unwrap())
            );
        }
    }

    #[test]
    fn retries_are_the_requests_resent_over_every_broker() {
        let json = br#"{"name":"p","type":"producer","brokers":{
            "127.0.0.1:9092/bootstrap":{"name":"b","txretries":2,"txerrs":9},
            "127.0.0.1:9092/1":{"txretries":5}},"topics":{}}"#;
        assert_eq!(retries_in(json), Some(7));
        assert_eq!(retries_in(br#"{"name":"p"}"#), Some(0));
        assert_eq!(retries_in(b"not json"), None);
    }

    #[test]
    fn record_keys_are_the_field_text() {
        let o = output(vec![
            ("s", Value::str("k1")),
            ("i", Value::Int(7)),
            ("n", Value::Null),
        ]);
        assert_eq!(record_key(&o, Some("s")).as_deref(), Some(&b"k1"[..]));
        assert_eq!(record_key(&o, Some("i")).as_deref(), Some(&b"7"[..]));
        assert_eq!(record_key(&o, Some("n")), None);
        assert_eq!(record_key(&o, Some("absent")), None);
        assert_eq!(record_key(&o, None), None);
    }
}
