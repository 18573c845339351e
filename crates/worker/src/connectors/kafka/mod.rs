//! Kafka connections (VPL.md §9, kind `kafka`) on rdkafka (librdkafka built from its vendored
//! source), carrying out a [`KafkaPlan`](super::plan::kafka::KafkaPlan).
//!
//! ```vpl
//! connector K = kafka(brokers: "k1:9092,k2:9092", group_id: "fraud")
//! stream Orders = Order.from(K, topic: "orders")
//! stream Big = Orders .where(amount > 1000) .emit(id: id, amount: amount) .to(K, topic: "big", key: id)
//! ```
//!
//! - [`source`]: a `.from` consumes as a member of a consumer group, in batches; a record's
//!   offset is stored only once its event ran and its outputs were published and delivered
//!   ([`KafkaAck`], one store per batch), and stored offsets are committed every second and
//!   when the source closes: at-least-once, per-partition order.
//! - [`sink`]: `.to` produces the egress JSON with `acks=all`, idempotence and librdkafka's
//!   retries, through its bounded queue (publishing waits when it is full); deliveries,
//!   give-ups and re-sent requests are counted and shown with the connector's health, and each
//!   record's settling is tracked for the source's acknowledgements.
//!
//! - [`decode`]: record payloads straight into events (VPL.md §9 rules, no JSON tree).
//!
//! docs/connectors.md ("Kafka") has the parameters, guarantees and metrics.

pub mod decode;
pub mod sink;
pub mod source;

pub use source::KafkaAck;

use rdkafka::config::RDKafkaLogLevel;

/// Routes a librdkafka log line to `tracing` (the worker's log), under the connector's name.
fn log(connector: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(connector = %connector, "librdkafka {fac}: {message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(connector = %connector, "librdkafka {fac}: {message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(connector = %connector, "librdkafka {fac}: {message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(connector = %connector, "librdkafka {fac}: {message}")
        }
    }
}

/// The client configuration every Kafka client of connector `params` starts from: brokers,
/// client id, then the connector's extra properties (over the role's defaults, which the
/// caller sets first and `properties` may override).
fn config(
    params: &super::plan::kafka::KafkaParams,
    defaults: &[(&str, &str)],
    client_id: &str,
) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &params.brokers)
        .set(
            "client.id",
            params.client_id.as_deref().unwrap_or(client_id),
        )
        .set("log_level", "6");
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in &params.properties {
        c.set(k, v);
    }
    c
}
