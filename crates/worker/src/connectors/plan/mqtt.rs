//! What an MQTT connector (VPL.md §9) does for one pipeline: its parameters, the `.from`
//! subscriptions and the `.to` streams, checked before anything connects.

use crate::error::WorkerError;
use rumqttc::QoS;
use serde_json::{Map, Value};

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
    /// TLS (`tls`, `tls_ca`, `tls_cert`, `tls_key`; port 8883 by default with TLS).
    pub tls: crate::config::ClientTlsFiles,
}

/// A parameter as a string, whether it was given as a string, a number or a boolean.
pub fn param_str(params: &Map<String, Value>, key: &str) -> Option<String> {
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
        let tls = crate::config::ClientTlsFiles::from_params(params).map_err(|e| bad(e.0))?;
        let port = match param_str(params, "port") {
            None if tls.enabled => 8883,
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
            tls,
        })
    }
}

/// One MQTT connector's subscriptions and sinks for one pipeline.
pub type MqttPlan = super::ConnectorPlan<MqttParams>;

impl MqttParams {
    fn topic_or_default(
        &self,
        name: &str,
        topic: Option<&str>,
        what: &str,
    ) -> Result<String, WorkerError> {
        topic
            .map(str::to_owned)
            .or_else(|| self.topic.clone())
            .ok_or_else(|| {
                WorkerError::Connector(format!("connector `{name}`: {what} needs a `topic`"))
            })
    }
}

impl super::Params for MqttParams {
    fn from_map(name: &str, params: &Map<String, Value>) -> Result<Self, WorkerError> {
        MqttParams::from_map(name, params)
    }

    fn source_topic(&self, name: &str, topic: Option<&str>) -> Result<String, WorkerError> {
        let topic = self.topic_or_default(name, topic, "`.from`")?;
        if !rumqttc::valid_filter(&topic) {
            return Err(WorkerError::Connector(format!(
                "connector `{name}`: bad topic filter `{topic}`"
            )));
        }
        Ok(topic)
    }

    fn check_sink_topic(&self, name: &str, topic: Option<&str>) -> Result<(), WorkerError> {
        let topic = self.topic_or_default(name, topic, "`.to`")?;
        if !rumqttc::valid_topic(&topic) {
            return Err(WorkerError::Connector(format!(
                "connector `{name}`: bad publish topic `{topic}`"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn bindings_need_a_valid_topic() {
        let m = json!({"host":"h"}).as_object().unwrap().clone();
        let mut p = MqttPlan::new("C", &m).unwrap();
        assert!(p.add_source(None, "T").is_err());
        assert!(p.add_source(Some("a/#/b"), "T").is_err());
        p.add_source(Some("a/#"), "T").unwrap();
        assert!(p.add_sink(Some("a/+"), "S").is_err());
        p.add_sink(Some("out"), "S").unwrap();
        let (sinks, sources) = p.split();
        assert_eq!(sinks.unwrap().subscriptions.len(), 0);
        assert_eq!(sources.unwrap().sinks.len(), 0);
    }
}
