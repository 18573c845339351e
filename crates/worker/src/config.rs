//! Worker configuration: a plain struct the CLI fills from flags and environment.
//!
//! The server never reads the environment itself; `validate()` is called once by `server::run`.

use crate::error::WorkerError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything `varpulis server` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Address the listener is bound to (informational: the caller binds the listener).
    pub bind: String,
    /// Port the listener is bound to (informational, like `bind`).
    pub port: u16,
    /// Key every request except `/health` and `/ready` must carry in `x-api-key`.
    pub api_key: Option<String>,
    /// Coordinator base URLs, tried in turn; empty means standalone.
    pub coordinators: Vec<String>,
    /// Stable worker id reported to coordinators.
    pub worker_id: String,
    /// Base URL coordinators use to reach this worker.
    pub advertise_address: String,
    /// Join token presented to coordinators in `x-worker-token`.
    pub worker_token: Option<String>,
    /// Interval between heartbeats.
    #[serde(with = "secs")]
    pub heartbeat_interval: Duration,
    /// Most pipelines this worker accepts.
    pub max_pipelines: u32,
    /// Labels reported at registration (placement constraints).
    pub labels: BTreeMap<String, String>,
    /// Periodic checkpoint interval (extension point: pushing checkpoints to the coordinator
    /// is not implemented yet; `None` disables it).
    #[serde(with = "opt_secs")]
    pub checkpoint_interval: Option<Duration>,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// Per-request timeout.
    #[serde(with = "secs")]
    pub request_timeout: Duration,
    /// Most requests handled concurrently (others wait).
    pub max_concurrent_requests: usize,
    /// Timeout of each call to a coordinator.
    #[serde(with = "secs")]
    pub coordinator_timeout: Duration,
    /// First registration retry delay (doubles up to `registration_backoff_max`).
    #[serde(with = "secs")]
    pub registration_backoff_initial: Duration,
    /// Largest registration retry delay.
    #[serde(with = "secs")]
    pub registration_backoff_max: Duration,
    /// Capacity of the channel between an MQTT subscription and its pipeline (backpressure).
    pub connector_channel_capacity: usize,
    /// MQTT broker for inter-pipeline routes (`mqtt://host:port`); wins over the one the
    /// coordinator ships in deploys (docs/dataplane.md).
    pub mqtt_url: Option<String>,
    /// Longest wait for room in a route publisher's queue before the events are dropped
    /// (and counted).
    #[serde(with = "secs")]
    pub route_publish_timeout: Duration,
    /// Longest time a deploy waits for the broker to acknowledge the pipeline's inbound route
    /// subscriptions before answering (the pipeline runs either way).
    #[serde(with = "secs")]
    pub route_subscribe_wait: Duration,
    /// Coordinator transport: `http` (default) or `nats` (docs/nats.md).
    pub transport: crate::transport::Transport,
    /// NATS server(s) for `transport = nats` (`nats://host:4222`, comma-separated list allowed).
    pub nats_url: Option<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".to_owned(),
            port: 9000,
            api_key: None,
            coordinators: Vec::new(),
            worker_id: "worker".to_owned(),
            advertise_address: "http://127.0.0.1:9000".to_owned(),
            worker_token: None,
            heartbeat_interval: Duration::from_secs(5),
            max_pipelines: 100,
            labels: BTreeMap::new(),
            checkpoint_interval: None,
            body_limit: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 1024,
            coordinator_timeout: Duration::from_secs(10),
            registration_backoff_initial: Duration::from_secs(1),
            registration_backoff_max: Duration::from_secs(30),
            connector_channel_capacity: 1024,
            mqtt_url: None,
            route_publish_timeout: Duration::from_secs(1),
            route_subscribe_wait: Duration::from_secs(2),
            transport: crate::transport::Transport::Http,
            nats_url: None,
        }
    }
}

impl WorkerConfig {
    /// Checks values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), WorkerError> {
        let bad = |m: &str| Err(WorkerError::Config(m.to_owned()));
        if self.worker_id.trim().is_empty() {
            return bad("worker_id must not be empty");
        }
        if self.heartbeat_interval.is_zero() {
            return bad("heartbeat_interval must be positive");
        }
        if self.max_pipelines == 0 {
            return bad("max_pipelines must be at least 1");
        }
        if self.body_limit == 0 {
            return bad("body_limit must be positive");
        }
        if self.max_concurrent_requests == 0 {
            return bad("max_concurrent_requests must be at least 1");
        }
        if self.connector_channel_capacity == 0 {
            return bad("connector_channel_capacity must be at least 1");
        }
        if self.registration_backoff_initial.is_zero()
            || self.registration_backoff_max < self.registration_backoff_initial
        {
            return bad("registration backoff must be positive and initial <= max");
        }
        for url in self
            .coordinators
            .iter()
            .chain(std::iter::once(&self.advertise_address))
        {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(WorkerError::Config(format!(
                    "`{url}` is not an http(s) URL"
                )));
            }
        }
        crate::transport::nats::validate(self)?;
        if let Some(url) = &self.mqtt_url {
            crate::dataplane::parse_mqtt_url(url)?;
        }
        if matches!(&self.api_key, Some(k) if k.is_empty()) {
            return bad("api_key must not be empty when set");
        }
        Ok(())
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            Some(v) => Duration::try_from_secs_f64(v)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        WorkerConfig::default().validate().unwrap();
    }

    #[test]
    fn rejects_bad_coordinator_url_and_zero_interval() {
        let c = WorkerConfig {
            coordinators: vec!["localhost:9100".into()],
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = WorkerConfig {
            heartbeat_interval: Duration::ZERO,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
