//! Worker configuration: a plain struct the CLI fills from flags and environment.
//!
//! A leaf of the crate: nothing here imports another module of the worker. The server never
//! reads the environment itself; `validate()` is called once by `server::run`.

mod connector_tls;
mod duration;
mod mqtt_url;

pub use connector_tls::ClientTlsFiles;

pub use mqtt_url::{parse_mqtt_url, BrokerAddr};
/// Coordinator ↔ worker transport (shared with the coordinator).
pub use varpulis_api::nats::Transport;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A configuration value that would make the server misbehave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Resource limits of every pipeline of this worker (docs/worker.md, "Budgets").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineLimits {
    /// Loop steps (iterations and function calls) one stream may spend on one event.
    pub step_budget: u64,
    /// Most live partial matches one sequence stream keeps.
    pub max_sequence_runs: usize,
    /// Most output events one input event may produce; an event producing more is rejected
    /// (its outputs are discarded).
    pub max_outputs_per_event: usize,
    /// Most output events one inject answer carries; the rest are published but left out of
    /// the answer (`outputs_omitted`).
    pub max_outputs_per_response: usize,
    /// Consecutive budget errors after which a pipeline is marked `failed` and refuses events
    /// (0: never).
    pub fail_after_budget_errors: u32,
    /// Engine commands (event batches, checkpoints, hand-overs) queued per pipeline before
    /// callers wait for room.
    pub queue_capacity: usize,
}

impl Default for PipelineLimits {
    fn default() -> Self {
        Self {
            step_budget: varpulis_runtime::DEFAULT_STEP_BUDGET,
            max_sequence_runs: varpulis_runtime::EngineOptions::default().max_sequence_runs,
            max_outputs_per_event: 100_000,
            max_outputs_per_response: 100_000,
            fail_after_budget_errors: 5,
            queue_capacity: 64,
        }
    }
}

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
    #[serde(with = "varpulis_tls::secs")]
    pub heartbeat_interval: Duration,
    /// Most pipelines this worker accepts.
    pub max_pipelines: u32,
    /// Labels reported at registration (placement constraints).
    pub labels: BTreeMap<String, String>,
    /// Interval of checkpoint pushes to the coordinator (`None`: the coordinator pulls).
    #[serde(with = "duration::opt_secs")]
    pub checkpoint_interval: Option<Duration>,
    /// Directory where each pipeline's deploy request and last checkpoint are kept, so a
    /// restarted worker resumes their state (`--state-dir`; docs/worker.md "Local state").
    pub state_dir: Option<std::path::PathBuf>,
    /// Interval between local checkpoints of pipelines whose state moved (`--state-interval`).
    #[serde(with = "varpulis_tls::secs")]
    pub state_interval: Duration,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// Per-request timeout.
    #[serde(with = "varpulis_tls::secs")]
    pub request_timeout: Duration,
    /// Most requests handled concurrently (others wait).
    pub max_concurrent_requests: usize,
    /// Timeout of each call to a coordinator.
    #[serde(with = "varpulis_tls::secs")]
    pub coordinator_timeout: Duration,
    /// First registration retry delay (doubles up to `registration_backoff_max`).
    #[serde(with = "varpulis_tls::secs")]
    pub registration_backoff_initial: Duration,
    /// Largest registration retry delay.
    #[serde(with = "varpulis_tls::secs")]
    pub registration_backoff_max: Duration,
    /// Capacity of the channel between an MQTT subscription and its pipeline (backpressure).
    pub connector_channel_capacity: usize,
    /// MQTT broker for inter-pipeline routes (`mqtt://host:port`); wins over the one the
    /// coordinator ships in deploys (docs/dataplane.md).
    pub mqtt_url: Option<String>,
    /// Longest wait for room in a route publisher's queue before the events are dropped
    /// (and counted).
    #[serde(with = "varpulis_tls::secs")]
    pub route_publish_timeout: Duration,
    /// Longest time a deploy waits for the broker to acknowledge the pipeline's inbound route
    /// subscriptions before answering (the pipeline runs either way).
    #[serde(with = "varpulis_tls::secs")]
    pub route_subscribe_wait: Duration,
    /// Coordinator transport: `http` (default) or `nats` (docs/nats.md).
    pub transport: Transport,
    /// NATS server(s) for `transport = nats` (`nats://host:4222`, comma-separated list allowed).
    pub nats_url: Option<String>,
    /// Resource limits of every pipeline.
    pub limits: PipelineLimits,
    /// TLS files (`tls_cert`, `tls_key`, `tls_ca`, `tls_client_ca`; `--tls-*`; docs/security.md,
    /// "TLS"): with a certificate and key, HTTPS only (SIGHUP reloads); `tls_ca` is what the
    /// coordinators this worker calls must chain to; with `tls_client_ca`, mutual TLS (the worker
    /// then presents `tls_cert` to coordinators). A peer name is a coordinator setting and refused.
    #[serde(flatten)]
    pub tls: varpulis_tls::TlsSettings,
    /// Connection timeouts and cap of the listener (`header_read_timeout`, `body_read_timeout`,
    /// `idle_timeout`, `max_connections`; docs/security.md, "Connections").
    #[serde(flatten)]
    pub conns: varpulis_tls::ConnLimits,
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
            state_dir: None,
            state_interval: Duration::from_secs(5),
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
            transport: Transport::Http,
            nats_url: None,
            limits: PipelineLimits::default(),
            tls: varpulis_tls::TlsSettings::default(),
            conns: varpulis_tls::ConnLimits::default(),
        }
    }
}

impl WorkerConfig {
    /// Checks values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_owned()));
        self.tls
            .validate()
            .map_err(|e| ConfigError(e.to_string()))?;
        if self.tls.peer_name.is_some() {
            return bad("tls_peer_name is a coordinator setting (it names coordinator peers)");
        }
        self.conns.validate().map_err(ConfigError)?;
        if self.worker_id.trim().is_empty() {
            return bad("worker_id must not be empty");
        }
        if self.heartbeat_interval.is_zero() {
            return bad("heartbeat_interval must be positive");
        }
        if self.max_pipelines == 0 {
            return bad("max_pipelines must be at least 1");
        }
        if self.state_interval.is_zero() {
            return bad("state_interval must be positive");
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
                return Err(ConfigError(format!("`{url}` is not an http(s) URL")));
            }
        }
        self.validate_transport()?;
        if let Some(url) = &self.mqtt_url {
            parse_mqtt_url(url)?;
        }
        if matches!(&self.api_key, Some(k) if k.is_empty()) {
            return bad("api_key must not be empty when set");
        }
        self.limits.validate()
    }

    /// Checks the coordinator transport settings.
    fn validate_transport(&self) -> Result<(), ConfigError> {
        if self.transport == Transport::Http {
            return Ok(());
        }
        let url = self
            .nats_url
            .as_deref()
            .ok_or_else(|| ConfigError("transport `nats` needs a NATS URL (--nats-url)".into()))?;
        varpulis_api::nats::parse_servers::<async_nats::ServerAddr>(url).map_err(ConfigError)?;
        if !varpulis_api::nats::valid_token(&self.worker_id) {
            return Err(ConfigError(format!(
                "worker id `{}` cannot be used in NATS subjects (letters, digits, `-`, `_`)",
                self.worker_id
            )));
        }
        if !self.coordinators.is_empty() {
            return Err(ConfigError(
                "--coordinator is not used with --transport nats (workers find the \
                 coordinators through NATS)"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl PipelineLimits {
    /// Checks that every limit lets at least something through.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            (self.step_budget == 0, "step_budget"),
            (self.max_sequence_runs == 0, "max_sequence_runs"),
            (self.max_outputs_per_event == 0, "max_outputs_per_event"),
            (
                self.max_outputs_per_response == 0,
                "max_outputs_per_response",
            ),
            (self.queue_capacity == 0, "queue_capacity"),
        ];
        match positive.iter().find(|(zero, _)| *zero) {
            Some((_, name)) => Err(ConfigError(format!("{name} must be at least 1"))),
            None => Ok(()),
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

    #[test]
    fn rejects_zero_limits_and_nats_without_url() {
        let c = WorkerConfig {
            limits: PipelineLimits {
                max_outputs_per_event: 0,
                ..PipelineLimits::default()
            },
            ..Default::default()
        };
        let e = c.validate().unwrap_err();
        assert!(e.0.contains("max_outputs_per_event"), "{e}");
        let c = WorkerConfig {
            transport: Transport::Nats,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = WorkerConfig {
            transport: Transport::Nats,
            nats_url: Some("nats://127.0.0.1:4222".into()),
            worker_id: "a.b".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().0.contains("NATS subjects"));
    }

    #[test]
    fn tls_and_connection_keys_keep_their_flat_names() {
        let c: WorkerConfig = serde_json::from_str(
            r#"{"tls_cert": "c.pem", "tls_key": "k.pem", "idle_timeout": 2.5, "max_connections": 9}"#,
        )
        .unwrap();
        assert_eq!(c.tls.cert.as_deref(), Some(std::path::Path::new("c.pem")));
        assert!(c.tls.serves_tls());
        assert_eq!(c.conns.idle_timeout, Duration::from_millis(2500));
        assert_eq!(c.conns.max_connections, 9);
        c.validate().unwrap();
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["tls_key"], "k.pem");
        assert_eq!(back["idle_timeout"], 2.5);
        let peer = WorkerConfig {
            tls: varpulis_tls::TlsSettings {
                peer_name: Some("p".into()),
                ..c.tls.clone()
            },
            ..c
        };
        assert!(peer.validate().is_err());
    }

    #[test]
    fn limits_deserialize_with_defaults() {
        let c: WorkerConfig =
            serde_json::from_str(r#"{"limits": {"max_outputs_per_event": 7}}"#).unwrap();
        assert_eq!(c.limits.max_outputs_per_event, 7);
        assert_eq!(c.limits.step_budget, varpulis_runtime::DEFAULT_STEP_BUDGET);
    }
}
