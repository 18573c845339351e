//! What a Kafka connector (VPL.md §9, kind `kafka`) does for one pipeline: its parameters, the
//! `.from` topics and the `.to` streams, checked before anything connects (docs/connectors.md,
//! "Kafka").
//!
//! Client properties: `properties: {"linger.ms": "5"}` entries go to librdkafka as they are
//! and must be valid there (a bad one rejects the deploy); any other parameter the table does
//! not know is tried as a property with `_` read as `.` (`auto_offset_reset` →
//! `auto.offset.reset`) and skipped with a warning when librdkafka does not know it (programs
//! written for the existing product carry parameters we do not use).

use crate::error::WorkerError;
use rdkafka::ClientConfig;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Parameters with a meaning of their own (everything else is a client property).
const KNOWN: &[&str] = &[
    "brokers",
    "url",
    "group_id",
    "topic",
    "client_id",
    "properties",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
];

/// Properties the connector sets itself; `properties` may not override them, since the
/// guarantees of docs/connectors.md rest on them.
const OWNED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.offset.store",
];

/// Connection parameters of one Kafka connector.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaParams {
    /// `host:port,host:port` (`brokers`, a string or an array, else `url`; a `kafka://`
    /// scheme is stripped).
    pub brokers: String,
    /// Consumer group (`group_id`; default `varpulis-{placement or pipeline}-{connector}`).
    pub group_id: Option<String>,
    /// Default topic of `.from` and `.to`.
    pub topic: Option<String>,
    /// Client id (`client_id`; default `varpulis-{pipeline}`).
    pub client_id: Option<String>,
    /// Extra librdkafka properties (checked), applied after the connector's own defaults.
    pub properties: BTreeMap<String, String>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn param_str(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::Array(items) => Some(items.iter().filter_map(text).collect::<Vec<_>>().join(",")),
        v => text(v),
    }
}

/// Whether librdkafka accepts `key = value` as a client property.
pub fn check_property(key: &str, value: &str) -> Result<(), String> {
    ClientConfig::new()
        .set(key, value)
        .create_native_config()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Whether `t` is a valid Kafka topic name (1..=249 of `[A-Za-z0-9._-]`, not `.` or `..`).
pub fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl KafkaParams {
    /// Reads parameters whose values are strings or numbers (`"linger.ms": 5` works).
    pub fn from_map(name: &str, params: &Map<String, Value>) -> Result<Self, WorkerError> {
        let bad = |m: String| WorkerError::Connector(format!("connector `{name}`: {m}"));
        let list = param_str(params, "brokers")
            .or_else(|| param_str(params, "url"))
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| bad("`brokers` (or `url`) is required".into()))?;
        let brokers: Vec<String> = list
            .split(',')
            .map(|b| b.trim())
            .filter(|b| !b.is_empty())
            .map(|b| b.strip_prefix("kafka://").unwrap_or(b).to_owned())
            .collect();
        for b in &brokers {
            let ok = b.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(bad(format!(
                    "bad broker address `{b}` (expected host:port)"
                )));
            }
        }
        let tls = crate::config::ClientTlsFiles::from_params(params).map_err(|e| bad(e.0))?;
        if tls.enabled {
            return Err(bad(
                "TLS is not supported for Kafka connectors by this build (librdkafka is built \
                 without OpenSSL); use a plaintext listener"
                    .into(),
            ));
        }
        let mut properties = BTreeMap::new();
        if let Some(p) = params.get("properties") {
            let Value::Object(map) = p else {
                return Err(bad("`properties` must be a map of strings".into()));
            };
            for (k, v) in map {
                let v = text(v)
                    .ok_or_else(|| bad(format!("property `{k}` must be a string or a number")))?;
                if OWNED.contains(&k.as_str()) {
                    return Err(bad(format!(
                        "property `{k}` is set by the connector (use its parameters)"
                    )));
                }
                check_property(k, &v).map_err(|e| bad(format!("property `{k}`: {e}")))?;
                properties.insert(k.clone(), v);
            }
        }
        for (k, v) in params {
            if KNOWN.contains(&k.as_str()) {
                continue;
            }
            let key = k.replace('_', ".");
            let checked = text(v)
                .ok_or_else(|| "not a string or a number".to_owned())
                .and_then(|v| check_property(&key, &v).map(|()| v));
            match checked {
                Ok(v) if !OWNED.contains(&key.as_str()) => {
                    properties.entry(key).or_insert(v);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    connector = %name,
                    "kafka parameter `{k}` ignored: not a client property ({e})"
                ),
            }
        }
        let topic = param_str(params, "topic").filter(|t| !t.is_empty());
        if let Some(t) = &topic {
            if !valid_topic(t) {
                return Err(bad(format!("bad Kafka topic `{t}`")));
            }
        }
        Ok(Self {
            brokers: brokers.join(","),
            group_id: param_str(params, "group_id").filter(|g| !g.is_empty()),
            topic,
            client_id: param_str(params, "client_id").filter(|c| !c.is_empty()),
            properties,
        })
    }

    fn topic_or_default(
        &self,
        name: &str,
        topic: Option<&str>,
        what: &str,
    ) -> Result<String, WorkerError> {
        let topic = topic
            .map(str::to_owned)
            .or_else(|| self.topic.clone())
            .ok_or_else(|| {
                WorkerError::Connector(format!("connector `{name}`: {what} needs a `topic`"))
            })?;
        if !valid_topic(&topic) {
            return Err(WorkerError::Connector(format!(
                "connector `{name}`: bad Kafka topic `{topic}` for {what}"
            )));
        }
        Ok(topic)
    }
}

/// One Kafka connector's topics and sinks for one pipeline.
pub type KafkaPlan = super::ConnectorPlan<KafkaParams>;

impl super::Params for KafkaParams {
    fn from_map(name: &str, params: &Map<String, Value>) -> Result<Self, WorkerError> {
        KafkaParams::from_map(name, params)
    }

    fn source_topic(&self, name: &str, topic: Option<&str>) -> Result<String, WorkerError> {
        self.topic_or_default(name, topic, "`.from`")
    }

    fn check_sink_topic(&self, name: &str, topic: Option<&str>) -> Result<(), WorkerError> {
        self.topic_or_default(name, topic, "`.to`").map(|_| ())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn brokers_come_from_brokers_or_url() {
        let p = KafkaParams::from_map("K", &map(json!({"brokers": "a:9092, b:9093"}))).unwrap();
        assert_eq!(p.brokers, "a:9092,b:9093");
        let p = KafkaParams::from_map("K", &map(json!({"brokers": ["a:1", "b:2"]}))).unwrap();
        assert_eq!(p.brokers, "a:1,b:2");
        let p = KafkaParams::from_map("K", &map(json!({"url": "kafka://h:9092"}))).unwrap();
        assert_eq!(p.brokers, "h:9092");
        assert!(KafkaParams::from_map("K", &map(json!({}))).is_err());
        assert!(KafkaParams::from_map("K", &map(json!({"brokers": "nohost"}))).is_err());
        assert!(KafkaParams::from_map("K", &map(json!({"brokers": "h:0"}))).is_err());
    }

    #[test]
    fn properties_are_checked_and_unknown_params_passed_when_known_to_the_client() {
        let p = KafkaParams::from_map(
            "K",
            &map(json!({"brokers": "h:1", "properties": {"linger.ms": 5},
                        "auto_offset_reset": "latest", "keep_alive": 30})),
        )
        .unwrap();
        assert_eq!(p.properties["linger.ms"], "5");
        assert_eq!(p.properties["auto.offset.reset"], "latest");
        assert!(!p.properties.contains_key("keep.alive"));
        let e = KafkaParams::from_map(
            "K",
            &map(json!({"brokers": "h:1", "properties": {"no.such.prop": "1"}})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no.such.prop"), "{e}");
        assert!(KafkaParams::from_map(
            "K",
            &map(json!({"brokers": "h:1", "properties": {"group.id": "x"}}))
        )
        .is_err());
    }

    #[test]
    fn topics_are_checked() {
        assert!(valid_topic("orders.v1_x-y"));
        assert!(!valid_topic("a b"));
        assert!(!valid_topic(".."));
        assert!(!valid_topic(""));
        assert!(
            KafkaParams::from_map("K", &map(json!({"brokers": "h:1", "topic": "a/b"}))).is_err()
        );
        assert!(KafkaParams::from_map("K", &map(json!({"brokers": "h:1", "tls": true}))).is_err());
    }
}
