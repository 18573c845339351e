//! `varpulis coordinator`: one node of the coordinator's Raft group.
//!
//! Flags and environment variables overlay the optional `--config` TOML file (file < env < flag);
//! every flag is optional here so that only what the user gave overrides the file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use varpulis_coordinator::config::parse_secs;
use varpulis_coordinator::CoordinatorConfig;

/// Flags of `varpulis coordinator`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Coordinator port [default: 9100]
    #[arg(short, long)]
    port: Option<u16>,
    /// Bind address [default: 127.0.0.1]
    #[arg(long)]
    bind: Option<String>,
    /// API key for authentication
    #[arg(long, env = "VARPULIS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Join token workers must present on register and heartbeat
    #[arg(long, env = "VARPULIS_WORKER_TOKEN", hide_env_values = true)]
    worker_token: Option<String>,
    /// Secret the coordinators present to each other on Raft RPCs (x-varpulis-peer-secret)
    #[arg(long, env = "VARPULIS_PEER_SECRET", hide_env_values = true)]
    peer_secret: Option<String>,
    #[command(flatten)]
    tls: super::tls::ServerTlsArgs,
    /// Under mutual TLS, client certificates valid for this DNS name are coordinator peers (stand in for the peer secret on /raft/*)
    #[arg(long, env = "VARPULIS_TLS_PEER_NAME", value_name = "NAME")]
    tls_peer_name: Option<String>,
    /// Override one limit on what enters the Raft log, e.g. max_labels=32 (repeatable; see docs/security.md)
    #[arg(long = "limit", value_name = "KEY=VALUE")]
    limits: Vec<String>,
    /// Seconds between worker heartbeats [default: 5]
    #[arg(long, value_parser = parse_secs, value_name = "SECS")]
    heartbeat_interval: Option<Duration>,
    /// Seconds of silence before a worker is marked unhealthy [default: 15]
    #[arg(long, value_parser = parse_secs, value_name = "SECS")]
    heartbeat_timeout: Option<Duration>,
    /// Seconds between health sweeps of the leader [default: 5]
    #[arg(long, value_parser = parse_secs, value_name = "SECS")]
    sweep_interval: Option<Duration>,
    /// Heartbeats per second the leader asks of all workers together; past it the heartbeat interval (and timeout) grow with the number of workers (0: no cap) [default: 5000]
    #[arg(long, env = "VARPULIS_MAX_HEARTBEATS_PER_SECOND", value_name = "N")]
    max_heartbeats_per_second: Option<f64>,
    /// Timeout of coordinator → worker calls, in seconds [default: 10]
    #[arg(long, value_parser = parse_secs, value_name = "SECS")]
    http_client_timeout: Option<Duration>,
    /// Seconds between checkpoints of running pipelines (0 disables) [default: 30]
    #[arg(long, value_parser = parse_secs, value_name = "SECS")]
    checkpoint_interval: Option<Duration>,
    /// Rebalance pipelines when a worker joins: true or false [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    auto_rebalance: Option<bool>,
    /// Do not move pipelines off unhealthy workers automatically
    #[arg(long)]
    no_auto_failover: bool,
    /// Failure detector of the health sweep: timeout or phi [default: timeout]
    #[arg(long, value_name = "KIND")]
    failure_detector: Option<varpulis_coordinator::config::FailureDetector>,
    /// Phi-accrual suspicion threshold (with --failure-detector phi) [default: 8.0]
    #[arg(long, value_name = "PHI")]
    phi_threshold: Option<f64>,
    /// Most rebalance moves in flight at once [default: 2]
    #[arg(long, value_name = "N")]
    rebalance_max_moves: Option<usize>,
    /// Most deploy calls to workers in flight at once on the leader [default: 4]
    #[arg(long, value_name = "N")]
    deploy_concurrency: Option<usize>,
    /// Every coordinator of the Raft group, this one included (node ids are 1-based positions)
    #[arg(
        long,
        env = "VARPULIS_RAFT_PEERS",
        value_delimiter = ',',
        value_name = "URL1,URL2,URL3"
    )]
    raft_peers: Option<Vec<String>>,
    /// This node's id (default: its advertise address's position in --raft-peers)
    #[arg(long, env = "VARPULIS_RAFT_NODE_ID", value_name = "N")]
    raft_node_id: Option<u64>,
    /// Kubernetes: find the peers from this headless service's DNS records (ids from pod ordinals)
    #[cfg(feature = "k8s")]
    #[arg(long, env = "VARPULIS_K8S_SERVICE", value_name = "NAME")]
    k8s_service: Option<String>,
    /// Kubernetes: number of coordinator pods [default: the service's address count]
    #[cfg(feature = "k8s")]
    #[arg(long, env = "VARPULIS_K8S_REPLICAS", value_name = "N")]
    k8s_replicas: Option<usize>,
    /// Kubernetes: namespace of the service (appended to the DNS names)
    #[cfg(feature = "k8s")]
    #[arg(long, env = "VARPULIS_K8S_NAMESPACE", value_name = "NS")]
    k8s_namespace: Option<String>,
    /// Run as a Raft node (always true; implied by --raft-peers, kept for compatibility)
    #[arg(long)]
    raft: bool,
    /// URL other nodes and clients reach this node at [default: http://BIND:PORT]
    #[arg(long, value_name = "URL")]
    advertise_address: Option<String>,
    /// Directory of the sled files [default: ./varpulis-data/node-<id>]
    #[arg(long, env = "VARPULIS_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Join the running group of this coordinator URL (needs --raft-node-id; data dir empty or already a member)
    #[arg(long, env = "VARPULIS_JOIN", value_name = "URL")]
    join: Option<String>,
    /// TOML configuration file (see raft-cluster.toml)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Raft heartbeat period in milliseconds [default: 50]
    #[arg(long, value_name = "MS")]
    raft_heartbeat_ms: Option<u64>,
    /// Raft election timeout lower bound in milliseconds [default: 200]
    #[arg(long, value_name = "MS")]
    raft_election_min_ms: Option<u64>,
    /// Raft election timeout upper bound in milliseconds [default: 400]
    #[arg(long, value_name = "MS")]
    raft_election_max_ms: Option<u64>,
    /// Largest accepted request body in bytes [default: 16777216]
    #[arg(long, value_name = "BYTES")]
    body_limit: Option<usize>,
    #[command(flatten)]
    conns: super::conns::ConnArgs,
    /// Write requests per second per client address without the API key (0: unlimited) [default: 100]
    #[arg(long, env = "VARPULIS_RATE_LIMIT_WRITES", value_name = "N")]
    rate_limit_writes: Option<f64>,
    /// Write requests a client may send at once before --rate-limit-writes applies [default: 200]
    #[arg(long, env = "VARPULIS_RATE_LIMIT_BURST", value_name = "N")]
    rate_limit_burst: Option<f64>,
    /// Worker requests (register, heartbeat, checkpoint) per second per client address without the API key (0: unlimited) [default: 1000]
    #[arg(long, env = "VARPULIS_RATE_LIMIT_WORKERS", value_name = "N")]
    rate_limit_workers: Option<f64>,
    /// GET /raft/metrics per second per client address without the API key (0: unlimited) [default: 50]
    #[arg(long, env = "VARPULIS_RATE_LIMIT_METRICS", value_name = "N")]
    rate_limit_metrics: Option<f64>,
    /// Same as --auto-rebalance=false
    #[arg(long)]
    no_auto_rebalance: bool,
    /// MQTT broker for inter-pipeline routes, shipped to workers (e.g. mqtt://host:1883)
    #[arg(long, env = "VARPULIS_MQTT_URL", value_name = "URL")]
    mqtt_url: Option<String>,
    /// Coordinator ↔ worker transport: http or nats [default: http]
    #[arg(long, env = "VARPULIS_TRANSPORT", value_name = "KIND")]
    transport: Option<varpulis_coordinator::config::Transport>,
    /// NATS server(s) for --transport nats (e.g. nats://127.0.0.1:4222)
    #[arg(long, env = "VARPULIS_NATS_URL", value_name = "URL")]
    nats_url: Option<String>,
}

impl Args {
    /// The effective configuration: file (or defaults), then env and flags on top.
    fn into_config(self) -> anyhow::Result<CoordinatorConfig> {
        let mut c = match &self.config {
            Some(path) => CoordinatorConfig::from_toml_file(path)?,
            None => CoordinatorConfig::default(),
        };
        macro_rules! overlay {
            ($($field:ident => $target:ident),* $(,)?) => {
                $(if let Some(v) = self.$field { c.$target = v; })*
            };
        }
        overlay!(
            port => port, bind => bind, heartbeat_interval => heartbeat_interval,
            heartbeat_timeout => heartbeat_timeout, sweep_interval => sweep_interval,
            max_heartbeats_per_second => max_heartbeats_per_second,
            http_client_timeout => http_client_timeout,
            checkpoint_interval => checkpoint_interval, raft_peers => peers,
            auto_rebalance => auto_rebalance, failure_detector => failure_detector,
            phi_threshold => phi_threshold, rebalance_max_moves => rebalance_max_moves,
            deploy_concurrency => deploy_concurrency,
            raft_heartbeat_ms => raft_heartbeat_ms, raft_election_min_ms => raft_election_min_ms,
            raft_election_max_ms => raft_election_max_ms, body_limit => body_limit,
            transport => transport, rate_limit_writes => rate_limit_writes,
            rate_limit_burst => rate_limit_burst, rate_limit_workers => rate_limit_workers,
            rate_limit_metrics => rate_limit_metrics,
        );
        self.conns.overlay(&mut c.conns);
        if self.nats_url.is_some() {
            c.nats_url = self.nats_url.filter(|u| !u.trim().is_empty());
        }
        if self.api_key.is_some() {
            c.api_key = self.api_key.filter(|k| !k.is_empty());
        }
        if self.worker_token.is_some() {
            c.worker_token = self.worker_token.filter(|k| !k.is_empty());
        }
        if self.peer_secret.is_some() {
            c.peer_secret = self.peer_secret.filter(|k| !k.is_empty());
        }
        self.tls.overlay(&mut c.tls);
        if self.tls_peer_name.is_some() {
            c.tls.peer_name = self.tls_peer_name.filter(|n| !n.is_empty());
        }
        for assignment in &self.limits {
            c.limits
                .set(assignment)
                .map_err(|e| anyhow::anyhow!("--limit {e}"))?;
        }
        if self.raft_node_id.is_some() {
            c.node_id = self.raft_node_id;
        }
        if self.advertise_address.is_some() {
            c.advertise_address = self.advertise_address;
        }
        if self.join.is_some() {
            c.join = self.join.filter(|u| !u.trim().is_empty());
        }
        if self.data_dir.is_some() {
            c.data_dir = self.data_dir;
        }
        if self.no_auto_rebalance {
            c.auto_rebalance = false;
        }
        if self.no_auto_failover {
            c.auto_failover = false;
        }
        if self.mqtt_url.is_some() {
            c.mqtt_url = self.mqtt_url.filter(|u| !u.trim().is_empty());
        }
        c.peers.retain(|p| !p.trim().is_empty());
        c.validate()?;
        Ok(c)
    }
}

/// Runs the subcommand until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _log_guard = super::logging::init();
    #[cfg(feature = "k8s")]
    let k8s = args
        .k8s_service
        .clone()
        .map(|service| (service, args.k8s_namespace.clone(), args.k8s_replicas));
    #[cfg_attr(not(feature = "k8s"), allow(unused_mut))]
    let mut config = args.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        #[cfg(feature = "k8s")]
        if let Some((service, namespace, replicas)) = k8s {
            let options = varpulis_coordinator::k8s::K8sOptions {
                service,
                namespace,
                replicas,
                pod_name: std::env::var("HOSTNAME").unwrap_or_default(),
                port: config.port,
                timeout: std::time::Duration::from_secs(300),
            };
            let found = varpulis_coordinator::k8s::discover(&options).await?;
            if config.advertise_address.is_none() {
                config.advertise_address = found.peers.get(found.node_id as usize - 1).cloned();
            }
            config.node_id = Some(found.node_id);
            config.peers = found.peers;
        }
        let address = format!("{}:{}", config.bind, config.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind {address}: {e}"))?;
        varpulis_coordinator::run(config, listener, shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {err}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}
