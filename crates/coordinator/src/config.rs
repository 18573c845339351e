//! Coordinator configuration: one plain struct, loadable from TOML, overridable by env and flags.
//!
//! Precedence is file < environment < flag (the CLI parses env and flags with clap and overlays
//! what it got on top of [`CoordinatorConfig::from_toml_file`]). Durations are written in seconds
//! (fractions allowed: `heartbeat_timeout = 2.5`). The node id is `node_id` when given, else the
//! 1-based position of the advertise address in `peers`; without peers the node is a Raft group
//! of one (`{1: self}`), so single-node and cluster mode share one code path.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use varpulis_api::nats::Transport;

/// Default body limit of every route (16 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Default of `max_heartbeats_per_second`: up to 25,000 workers keep the configured 5 s
/// interval; beyond that the interval grows so the leader handles at most 5,000 heartbeats/s.
pub const DEFAULT_MAX_HEARTBEATS_PER_SECOND: f64 = 5000.0;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The TOML file is not valid.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// Parser message (with line and column).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Failure detector of the leader's health sweep (see `crate::health::Detector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureDetector {
    /// Unhealthy after `heartbeat_timeout` of silence (the spec's behaviour).
    #[default]
    Timeout,
    /// Phi accrual over each worker's heartbeat intervals, bounded by `heartbeat_timeout`.
    Phi,
}

impl std::str::FromStr for FailureDetector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "timeout" => Ok(FailureDetector::Timeout),
            "phi" | "phi-accrual" | "phi_accrual" => Ok(FailureDetector::Phi),
            other => Err(format!(
                "unknown failure detector `{other}` (timeout or phi)"
            )),
        }
    }
}

/// Everything `varpulis coordinator` needs to run (`Debug` redacts the secrets).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Address the HTTP server binds (API and Raft share it).
    pub bind: String,
    /// Port the HTTP server binds.
    pub port: u16,
    /// Cluster API key: required on every route but health, readiness, Raft metrics and the worker routes.
    pub api_key: Option<String>,
    /// Join token workers must present on register and heartbeat (open when absent).
    pub worker_token: Option<String>,
    /// Peer secret of the Raft RPCs between coordinators (`--peer-secret`); without it the API
    /// key opens them, with a warning at start (docs/security.md).
    pub peer_secret: Option<String>,
    /// TLS files (`tls_cert`, `tls_key`, `tls_ca`, `tls_client_ca`, `tls_peer_name`;
    /// `--tls-*`; docs/security.md, "TLS"): with a certificate and key, HTTPS only; under
    /// mutual TLS a client certificate valid for `tls_peer_name` is a coordinator peer's and
    /// stands in for the peer secret on the Raft RPCs.
    #[serde(flatten)]
    pub tls: varpulis_tls::TlsSettings,
    /// Limits on what enters the Raft log (`[limits]`, `--limit KEY=VALUE`; docs/security.md).
    pub limits: varpulis_cluster::Limits,
    /// Largest accepted jump of a peer's Raft term above this node's (docs/raft.md).
    pub raft_max_term_jump: u64,
    /// Byte budget of one AppendEntries and of one proposal batch.
    pub raft_max_append_bytes: usize,
    /// Size of one snapshot chunk sent to a lagging follower.
    pub raft_snapshot_chunk_bytes: usize,
    /// Largest snapshot this node accepts from a leader.
    pub raft_max_snapshot_bytes: u64,
    /// Build a Raft snapshot (and compact the log) every this many applied entries.
    pub raft_snapshot_logs: u64,
    /// Entries kept in the log below the last snapshot (a follower lagging by fewer catches up
    /// from the log instead of a snapshot).
    pub raft_snapshot_keep_logs: u64,
    /// Interval at which workers are told to heartbeat.
    #[serde(deserialize_with = "secs")]
    pub heartbeat_interval: Duration,
    /// Silence after which the leader marks a worker unhealthy.
    #[serde(deserialize_with = "secs")]
    pub heartbeat_timeout: Duration,
    /// Period of the leader's health sweep.
    #[serde(deserialize_with = "secs")]
    pub sweep_interval: Duration,
    /// Heartbeats per second the leader asks of all workers together (0: no cap). With more
    /// than `max_heartbeats_per_second × heartbeat_interval` workers the interval handed to
    /// workers grows to `workers / max_heartbeats_per_second`, and the timeout with it
    /// (`LeaderSettings::grant`, docs/coordinator.md "Heartbeat rate"). Default 5,000.
    pub max_heartbeats_per_second: f64,
    /// Timeout of every coordinator → worker and follower → leader HTTP call.
    #[serde(deserialize_with = "secs")]
    pub http_client_timeout: Duration,
    /// Period of the leader's reconciler (re-deploys placements that are not running).
    #[serde(deserialize_with = "secs")]
    pub reconcile_interval: Duration,
    /// Period of the leader's checkpoint loop (zero disables checkpoints).
    #[serde(deserialize_with = "secs")]
    pub checkpoint_interval: Duration,
    /// How silent workers are detected: `timeout` (default) or `phi` accrual.
    pub failure_detector: FailureDetector,
    /// Phi threshold of the `phi` detector (default 8.0).
    pub phi_threshold: f64,
    /// Whether the leader moves pipelines off Unhealthy/Dead workers on its own (default true).
    pub auto_failover: bool,
    /// Most rebalance moves in flight at once (default 2); the rest wait for the next round.
    pub rebalance_max_moves: usize,
    /// Most deploy calls to workers in flight at once on the leader (default 4): a group of 300
    /// pipelines is deployed 4 at a time, whatever sent it (create, reconciler, rollout).
    pub deploy_concurrency: usize,
    /// Base URLs of every coordinator of the Raft group, this node included; empty = group of one.
    pub peers: Vec<String>,
    /// This node's Raft id (1-based position in `peers` when absent).
    pub node_id: Option<u64>,
    /// URL other nodes and clients reach this node at (default `http://BIND:PORT`).
    pub advertise_address: Option<String>,
    /// Directory holding the sled files (default `./varpulis-data/node-<id>`).
    pub data_dir: Option<PathBuf>,
    /// Any member of a running group (`--join URL`): start without initializing a group, then
    /// become a learner and a voter through it. Needs an explicit `node_id`; `peers` is ignored.
    pub join: Option<String>,
    /// Raft heartbeat period in milliseconds.
    pub raft_heartbeat_ms: u64,
    /// Lower bound of the Raft election timeout in milliseconds.
    pub raft_election_min_ms: u64,
    /// Upper bound of the Raft election timeout in milliseconds.
    pub raft_election_max_ms: u64,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// Connection timeouts and cap of the listener (`header_read_timeout`, `body_read_timeout`,
    /// `idle_timeout`, `max_connections`; docs/security.md, "Connections").
    #[serde(flatten)]
    pub conns: varpulis_tls::ConnLimits,
    /// Write requests per second per client address without the API key or peer secret
    /// (0: unlimited).
    pub rate_limit_writes: f64,
    /// Write requests a client may send at once (the bucket size).
    pub rate_limit_burst: f64,
    /// Worker requests (register, heartbeat, checkpoint) per second per client address without
    /// the API key (burst: twice as many; 0: unlimited).
    pub rate_limit_workers: f64,
    /// `GET /raft/metrics` per second per client address without the API key (burst: twice as
    /// many; 0: unlimited): each one hashes the state.
    pub rate_limit_metrics: f64,
    /// Whether the leader rebalances pipelines when a worker registers (default true).
    pub auto_rebalance: bool,
    /// MQTT broker shipped to workers in deploys for inter-pipeline routes
    /// (`mqtt://host:port`); a worker's own `--mqtt-url` wins (docs/dataplane.md).
    pub mqtt_url: Option<String>,
    /// Coordinator ↔ worker transport: `http` (default) or `nats` (docs/nats.md).
    pub transport: Transport,
    /// NATS server(s) for `transport = "nats"` (`nats://host:4222`, comma-separated list allowed).
    pub nats_url: Option<String>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".to_string(),
            port: 9100,
            api_key: None,
            worker_token: None,
            peer_secret: None,
            tls: varpulis_tls::TlsSettings::default(),
            limits: varpulis_cluster::Limits::default(),
            raft_max_term_jump: 1_000_000,
            raft_max_append_bytes: 1024 * 1024,
            raft_snapshot_chunk_bytes: 1024 * 1024,
            raft_max_snapshot_bytes: 4 << 30,
            raft_snapshot_logs: 5000,
            raft_snapshot_keep_logs: 1000,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
            sweep_interval: Duration::from_secs(5),
            max_heartbeats_per_second: DEFAULT_MAX_HEARTBEATS_PER_SECOND,
            http_client_timeout: Duration::from_secs(10),
            reconcile_interval: Duration::from_secs(2),
            checkpoint_interval: Duration::from_secs(30),
            failure_detector: FailureDetector::Timeout,
            phi_threshold: 8.0,
            auto_failover: true,
            rebalance_max_moves: 2,
            deploy_concurrency: 4,
            peers: Vec::new(),
            node_id: None,
            advertise_address: None,
            data_dir: None,
            join: None,
            raft_heartbeat_ms: 50,
            raft_election_min_ms: 150,
            raft_election_max_ms: 250,
            body_limit: DEFAULT_BODY_LIMIT,
            conns: varpulis_tls::ConnLimits::default(),
            rate_limit_writes: 100.0,
            rate_limit_burst: 200.0,
            rate_limit_workers: 20000.0,
            rate_limit_metrics: 50.0,
            auto_rebalance: true,
            mqtt_url: None,
            transport: Transport::Http,
            nats_url: None,
        }
    }
}

impl std::fmt::Debug for CoordinatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("CoordinatorConfig")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("api_key", &redact(&self.api_key))
            .field("worker_token", &redact(&self.worker_token))
            .field("peer_secret", &redact(&self.peer_secret))
            .field("tls", &self.tls)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("max_heartbeats_per_second", &self.max_heartbeats_per_second)
            .field("peers", &self.peers)
            .field("node_id", &self.node_id)
            .field("advertise_address", &self.advertise_address)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

// Reads a number of seconds (integer or fraction) into a `Duration`.
use varpulis_tls::secs::deserialize as secs;

/// Parses `"2.5"` or `"5"` (seconds) into a `Duration`; used by the CLI for fractional flags.
pub use varpulis_tls::secs::parse as parse_secs;

/// Strips a trailing `/` so URLs compare equal however they were typed.
pub fn normalize_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

impl CoordinatorConfig {
    /// Reads a TOML file; keys absent from the file keep their defaults.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text (the error is the parser's message).
    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The URL this node announces (`advertise_address`, else `http://BIND:PORT`, or
    /// `https://BIND:PORT` when it serves TLS).
    pub fn advertise_url(&self) -> String {
        match &self.advertise_address {
            Some(url) => normalize_url(url),
            None => format!("{}://{}:{}", self.tls.scheme(), self.bind, self.port),
        }
    }

    /// This node's Raft id: `node_id`, else the 1-based position of the advertise URL in `peers`.
    pub fn resolve_node_id(&self) -> Result<u64, ConfigError> {
        if self.peers.is_empty() || self.join.is_some() {
            return Ok(self.node_id.unwrap_or(1));
        }
        if let Some(id) = self.node_id {
            if id == 0 || id as usize > self.peers.len() {
                return Err(ConfigError::Invalid(format!(
                    "--raft-node-id {id} is outside 1..={} (the positions in --raft-peers)",
                    self.peers.len()
                )));
            }
            return Ok(id);
        }
        let me = self.advertise_url();
        self.peers
            .iter()
            .position(|p| normalize_url(p) == me)
            .map(|i| i as u64 + 1)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "this node's advertise address {me} is not in --raft-peers ({}); \
                     pass --raft-node-id N or --advertise-address URL matching one entry",
                    self.peers.join(",")
                ))
            })
    }

    /// Node id → base URL of every member (this node included).
    pub fn raft_peers(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let id = self.resolve_node_id()?;
        if self.peers.is_empty() || self.join.is_some() {
            return Ok(BTreeMap::from([(id, self.advertise_url())]));
        }
        Ok(self
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u64 + 1, normalize_url(p)))
            .collect())
    }

    /// The sled directory: `data_dir`, else `./varpulis-data/node-<id>`.
    pub fn data_dir_for(&self, node_id: u64) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("./varpulis-data/node-{node_id}")))
    }

    /// Checks ranges and consistency; run before starting the server.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Err(e) = self.tls.validate() {
            return invalid(e.to_string());
        }
        if self.transport == Transport::Nats {
            match self.nats_url.as_deref() {
                None => return invalid("transport `nats` needs a NATS URL (--nats-url)".into()),
                Some(url) => {
                    if let Err(e) = varpulis_api::nats::parse_servers::<async_nats::ServerAddr>(url)
                    {
                        return invalid(format!("invalid NATS configuration: {e}"));
                    }
                }
            }
        }
        if self.bind.trim().is_empty() {
            return invalid("bind address is empty".into());
        }
        if self.heartbeat_interval.is_zero() || self.sweep_interval.is_zero() {
            return invalid("heartbeat interval and sweep interval must be positive".into());
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return invalid(format!(
                "heartbeat timeout ({:?}) must be longer than the heartbeat interval ({:?})",
                self.heartbeat_timeout, self.heartbeat_interval
            ));
        }
        if self.http_client_timeout.is_zero() || self.reconcile_interval.is_zero() {
            return invalid("HTTP client timeout and reconcile interval must be positive".into());
        }
        if !(self.max_heartbeats_per_second.is_finite() && self.max_heartbeats_per_second >= 0.0) {
            return invalid(format!(
                "max heartbeats per second must be a number >= 0 (0: no cap), got {}",
                self.max_heartbeats_per_second
            ));
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.0) {
            return invalid(format!(
                "phi threshold must be a positive number, got {}",
                self.phi_threshold
            ));
        }
        if self.deploy_concurrency == 0 {
            return invalid("deploy_concurrency must be at least 1".into());
        }
        if self.rebalance_max_moves == 0 {
            return invalid("rebalance_max_moves must be at least 1".into());
        }
        if self.raft_heartbeat_ms == 0 || self.raft_election_min_ms <= self.raft_heartbeat_ms {
            return invalid("raft election timeout must be longer than the raft heartbeat".into());
        }
        if self.raft_election_max_ms <= self.raft_election_min_ms {
            return invalid("raft election max must be greater than election min".into());
        }
        if let Some(seed) = &self.join {
            if !(seed.starts_with("http://") || seed.starts_with("https://")) {
                return invalid(format!("--join {seed:?}: expected http://host:port"));
            }
            if self.node_id.is_none() {
                return invalid("--join needs --raft-node-id (an id not used in the group)".into());
            }
        }
        if self.body_limit < 1024 {
            return invalid("body limit must be at least 1024 bytes".into());
        }
        self.conns.validate().map_err(ConfigError::Invalid)?;
        for (name, value) in [
            ("rate_limit_writes", self.rate_limit_writes),
            ("rate_limit_burst", self.rate_limit_burst),
            ("rate_limit_workers", self.rate_limit_workers),
            ("rate_limit_metrics", self.rate_limit_metrics),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return invalid(format!("{name} must be a number >= 0, got {value}"));
            }
        }
        for key in [&self.api_key, &self.worker_token, &self.peer_secret]
            .into_iter()
            .flatten()
        {
            if key.is_empty() {
                return invalid(
                    "api key, worker token and peer secret must not be empty strings".into(),
                );
            }
        }
        if let Err(e) = self.limits.validate() {
            return invalid(e);
        }
        if self.raft_max_term_jump == 0
            || self.raft_max_snapshot_bytes == 0
            || self.raft_snapshot_logs == 0
        {
            return invalid(
                "raft_max_term_jump, raft_max_snapshot_bytes and raft_snapshot_logs must be positive"
                    .into(),
            );
        }
        if self.raft_max_append_bytes < 1024 || self.raft_snapshot_chunk_bytes < 1024 {
            return invalid(
                "raft_max_append_bytes and raft_snapshot_chunk_bytes must be at least 1024".into(),
            );
        }
        for peer in &self.peers {
            if !(peer.starts_with("http://") || peer.starts_with("https://")) {
                return invalid(format!(
                    "raft peer `{peer}` must be an http:// or https:// URL"
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for peer in &self.peers {
            if !seen.insert(normalize_url(peer)) {
                return invalid(format!("raft peer `{peer}` is listed twice"));
            }
        }
        self.resolve_node_id().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let c = CoordinatorConfig::default();
        assert_eq!(c.port, 9100);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(c.heartbeat_timeout, Duration::from_secs(15));
        assert_eq!(c.sweep_interval, Duration::from_secs(5));
        assert_eq!(c.http_client_timeout, Duration::from_secs(10));
        assert_eq!(c.advertise_url(), "http://127.0.0.1:9100");
        c.validate().unwrap();
    }

    #[test]
    fn without_peers_the_node_is_a_group_of_one() {
        let c = CoordinatorConfig::default();
        assert_eq!(c.resolve_node_id().unwrap(), 1);
        assert_eq!(
            c.raft_peers().unwrap(),
            BTreeMap::from([(1, "http://127.0.0.1:9100".to_string())])
        );
    }

    #[test]
    fn node_id_is_found_by_advertise_address() {
        let c = CoordinatorConfig {
            port: 9102,
            peers: vec![
                "http://127.0.0.1:9101".into(),
                "http://127.0.0.1:9102/".into(),
            ],
            ..Default::default()
        };
        assert_eq!(c.resolve_node_id().unwrap(), 2);
        assert_eq!(c.raft_peers().unwrap()[&2], "http://127.0.0.1:9102");
    }

    #[test]
    fn absent_self_is_a_clear_error() {
        let c = CoordinatorConfig {
            port: 9200,
            peers: vec![
                "http://127.0.0.1:9101".into(),
                "http://127.0.0.1:9102".into(),
            ],
            ..Default::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("--raft-node-id"), "{err}");
        let c = CoordinatorConfig {
            node_id: Some(3),
            ..c
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn fractional_seconds_parse() {
        assert_eq!(parse_secs("2.5").unwrap(), Duration::from_millis(2500));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("abc").is_err());
        let c = CoordinatorConfig::from_toml_str("heartbeat_timeout = 2.5\nheartbeat_interval = 1")
            .unwrap();
        assert_eq!(c.heartbeat_timeout, Duration::from_millis(2500));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(1));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(CoordinatorConfig::from_toml_str("prot = 1").is_err());
        let c = CoordinatorConfig::from_toml_str("heartbeat_timeout = 1\nheartbeat_interval = 2")
            .unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn peer_secret_and_limits_come_from_toml() {
        let c = CoordinatorConfig::from_toml_str(
            "peer_secret = \"s\"\n[limits]\nmax_labels = 8\nmax_workers = 50\n",
        )
        .unwrap();
        assert_eq!(c.peer_secret.as_deref(), Some("s"));
        assert_eq!(c.limits.max_labels, 8);
        assert_eq!(c.limits.max_workers, 50);
        assert_eq!(
            c.limits.max_pipelines_per_group,
            varpulis_cluster::Limits::default().max_pipelines_per_group
        );
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("\"s\""));
        assert!(CoordinatorConfig::from_toml_str("[limits]\nmax_lables = 8\n").is_err());
        let zero = CoordinatorConfig::from_toml_str("[limits]\nmax_labels = 0\n").unwrap();
        assert!(zero.validate().is_err());
        let empty = CoordinatorConfig::from_toml_str("peer_secret = \"\"\n").unwrap();
        assert!(empty.validate().is_err());
    }

    #[test]
    fn tls_keys_come_from_toml_and_switch_the_advertise_scheme() {
        let c = CoordinatorConfig::from_toml_str(
            "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_ca = \"ca.pem\"\n\
             tls_client_ca = \"ca.pem\"\ntls_peer_name = \"varpulis-coordinator\"\n",
        )
        .unwrap();
        let tls = &c.tls;
        assert!(tls.mutual());
        assert_eq!(tls.peer_name.as_deref(), Some("varpulis-coordinator"));
        assert!(
            c.advertise_url().starts_with("https://"),
            "{}",
            c.advertise_url()
        );
        assert!(c.validate().is_ok());
        // A certificate without its key is refused before anything starts.
        let half = CoordinatorConfig::from_toml_str("tls_cert = \"c.pem\"\n").unwrap();
        assert!(half.validate().is_err());
        assert!(CoordinatorConfig::default()
            .advertise_url()
            .starts_with("http://"));
    }

    #[test]
    fn sample_raft_cluster_toml_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../raft-cluster.toml");
        let c = CoordinatorConfig::from_toml_file(&path).unwrap();
        assert_eq!(c.peers.len(), 3);
        c.validate().unwrap();
        assert_eq!(c.resolve_node_id().unwrap(), 1);
    }

    #[test]
    fn connection_keys_are_read_from_toml_and_checked() {
        let c = CoordinatorConfig::from_toml_str(
            "header_read_timeout = 2.5\nbody_read_timeout = 30\nidle_timeout = 15\n\
             max_connections = 100\nrate_limit_writes = 0\nrate_limit_burst = 10\n\
             rate_limit_workers = 5\nrate_limit_metrics = 1\n",
        )
        .unwrap();
        c.validate().unwrap();
        let limits = &c.conns;
        assert_eq!(limits.header_read_timeout, Duration::from_millis(2500));
        assert_eq!(limits.idle_timeout, Duration::from_secs(15));
        assert_eq!(limits.max_connections, 100);
        assert_eq!(c.rate_limit_writes, 0.0);
        let zero = CoordinatorConfig::from_toml_str("idle_timeout = 0\n").unwrap();
        assert!(zero.validate().is_err());
        let negative = CoordinatorConfig::from_toml_str("rate_limit_writes = -1\n").unwrap();
        assert!(negative.validate().is_err());
    }
}
