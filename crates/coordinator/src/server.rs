//! Starting and stopping a coordinator node.
//!
//! [`run`] takes a validated config, an already-bound listener and a shutdown future (mini-redis
//! style, so tests bind `127.0.0.1:0` first and learn the port). It starts the Raft node (sled
//! under `data_dir`, default `./varpulis-data/node-<id>`), serves the API and `/raft/*` on the same
//! listener, spawns the leader-only loops (health sweep, reconciler) and the leader watcher, and on
//! shutdown hands leadership over when this node leads (SIGTERM: a planned stop), then stops
//! accepting requests, cancels the loops and shuts Raft down (flushing sled).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use varpulis_raft::{RaftConfig, RaftNode};

use crate::config::CoordinatorConfig;
use crate::events::EventLog;
use crate::leader::context::{LeaderCtx, LeaderSettings};
use crate::leader::store::Store;
use crate::leader::{checkpoint, reconciler, rolling, sweep};
use crate::metrics::Metrics;
use crate::node::{AppState, Shared};
use crate::transport::worker_client::{WorkerClient, WorkerClientConfig};

/// Time given to in-flight requests and background loops after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs a coordinator node until `shutdown` completes.
pub async fn run(
    mut config: CoordinatorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    // The advertise default is `http://BIND:PORT`: use the port actually bound (port 0 in tests).
    config.port = local.port();
    config.validate()?;
    let node_id = config.resolve_node_id()?;
    let peers = config.raft_peers()?;
    let advertise = config.advertise_url();
    let data_dir = config.data_dir_for(node_id);
    // TLS: the server side (HTTPS only when a certificate is given) and the one client-side
    // configuration every outbound client of this node uses (peers, leader proxy, workers).
    let tls_settings = config.tls.clone();
    let server_tls = varpulis_tls::ServerTls::from_settings(&tls_settings)?;
    let client_tls = varpulis_tls::ClientTls::from_settings(
        &tls_settings,
        server_tls.as_ref().map(|s| s.keys()),
    )?;
    let created = !data_dir.exists();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", data_dir.display()))?;
    if created {
        // It holds the replicated state, secrets included (docs/security.md): owner only. A
        // directory the operator made keeps its mode; `<data-dir>/raft` is private either way.
        varpulis_raft::private_dir::make_dir_private(&data_dir)
            .map_err(|e| anyhow::anyhow!("cannot restrict data dir {}: {e}", data_dir.display()))?;
    }

    let mut raft_config = RaftConfig::new(node_id, data_dir.clone(), peers.clone());
    raft_config.api_key = config.api_key.clone();
    raft_config.peer_secret = config.peer_secret.clone();
    raft_config.limits = config.limits.clone();
    raft_config.max_term_jump = config.raft_max_term_jump;
    raft_config.max_append_bytes = config.raft_max_append_bytes;
    raft_config.snapshot_chunk_bytes = config.raft_snapshot_chunk_bytes;
    raft_config.max_snapshot_bytes = config.raft_max_snapshot_bytes;
    raft_config.snapshot_logs_since_last = config.raft_snapshot_logs;
    raft_config.max_in_snapshot_log_to_keep = config.raft_snapshot_keep_logs;
    raft_config.heartbeat_interval_ms = config.raft_heartbeat_ms;
    raft_config.election_timeout_min_ms = config.raft_election_min_ms;
    raft_config.election_timeout_max_ms = config.raft_election_max_ms;
    // A joining node must not found a group of its own: it is added by the existing one.
    raft_config.auto_initialize = config.join.is_none();
    raft_config.tls = client_tls.clone();
    let raft = RaftNode::start(raft_config).await?;
    let http = client_tls
        .reqwest_builder()
        .timeout(config.http_client_timeout)
        .connect_timeout(config.http_client_timeout.min(Duration::from_secs(3)))
        .build()?;
    let nats = crate::transport::nats::link::connect(&config, node_id).await?;
    let mut worker_client = WorkerClientConfig::from_config(&config, nats.clone());
    worker_client.tls = client_tls.clone();
    let workers = WorkerClient::new(worker_client)?;
    let metrics = Arc::new(Metrics::default());
    let store = Store::new(Arc::new(raft.clone()), metrics.clone());
    let leader = LeaderCtx::new(
        store,
        workers,
        metrics.clone(),
        LeaderSettings::from_config(&config),
    );
    let token = CancellationToken::new();
    let state = AppState(Arc::new(Shared {
        config: config.clone(),
        node_id,
        advertise: advertise.clone(),
        raft: raft.clone(),
        forwarder: crate::http::forwarder::Forwarder::start(
            metrics.clone(),
            http.clone(),
            node_id,
            config.peer_secret.as_deref(),
        ),
        applied: crate::http::applied::AppliedWaiters::start(raft.applied_index_watch()),
        http,
        leader: leader.clone(),
        shutdown: token.clone(),
        events: Arc::new(EventLog::default()),
        nats,
        sessions: Default::default(),
        client_tls,
    }));

    print_banner(&config, node_id, &advertise, &peers, &data_dir);
    if let Some(warning) = raft.credentials().startup_warning() {
        tracing::warn!("{warning}");
    }
    if config.worker_token.is_none() {
        tracing::warn!(
            "no --worker-token set: any process that can reach this node may register a new worker \
             id (known ids stay bound to their keys; set VARPULIS_WORKER_TOKEN to require a join \
             token)"
        );
    }

    let raft_routes = crate::tls::peer_certificates(
        varpulis_raft::router(raft.clone()),
        config.tls.peer_name.clone(),
    );
    let app = crate::http::router(state.clone()).merge(raft_routes);
    // The console's guard is the outermost layer and strips an untrusted forwarded-by header
    // first (`proxy::strip_untrusted_forward`).
    let app = crate::http::console::attach(app, state.clone());
    // The console's guard around everything but the batch route, whose items run through the
    // router above (`forward_batch::Frontend`).
    let app = crate::http::forward_batch::Frontend::new(app, state.clone());
    // Outermost: a client over its rate is refused before anything reads its body. The layers
    // around the router are plain services (no per-route boxing, issue 24).
    let app = match crate::http::edge::rate_limit(&config) {
        Some(layer) => tower::util::Either::Left(tower::Layer::layer(&layer, app)),
        None => tower::util::Either::Right(app),
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(sweep::run(leader.clone(), token.clone()));
    tasks.spawn(reconciler::run(leader.clone(), token.clone()));
    tasks.spawn(rolling::run(leader.clone(), token.clone()));
    tasks.spawn(checkpoint::run(leader, token.clone()));
    tasks.spawn(watch_leader(state.clone()));
    tasks.spawn(crate::events::run(
        raft.clone(),
        state.events.clone(),
        token.clone(),
    ));
    tasks.spawn(crate::transport::nats::server::run(state.clone()));

    let join_failed = Arc::new(std::sync::Mutex::new(None));
    if let Some(seed) = config.join.clone() {
        tasks.spawn(join(state.clone(), seed, join_failed.clone()));
    }

    tracing::info!(node_id, %advertise, %local, "coordinator listening");
    let reload = varpulis_tls::reload::on_sighup(server_tls.clone(), state.client_tls.clone())?;
    let listener = varpulis_tls::AnyListener::new(listener, server_tls)?;
    let stop = token.clone();
    let options = varpulis_tls::ServeOptions {
        limits: config.conns.clone(),
        reserved: Some(crate::http::edge::reserved(&config)),
        placement: raft.rpc_placement(),
    };
    let handing_over = raft.clone();
    let serve = varpulis_tls::serve_service_with(listener, app, options, async move {
        tokio::select! {
            // A leader asked to stop hands leadership over first, while this listener still
            // serves: the new leader's vote request must reach it (docs/raft.md).
            _ = shutdown => handing_over.hand_over_before_stop().await,
            _ = stop.cancelled() => {}
        }
    });
    let signal = token.clone();
    let served = tokio::select! {
        result = serve => result.map_err(anyhow::Error::from),
        // Connections kept alive by peers must not hold the node up forever.
        _ = async { signal.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => Ok(()),
    };
    token.cancel();
    reload.abort();
    tracing::info!(node_id, "coordinator stopping");
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    if let Err(err) = raft.shutdown().await {
        tracing::warn!(node_id, "raft shutdown: {err}");
    }
    let failed = join_failed.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(message) = failed {
        return Err(anyhow::anyhow!(message));
    }
    served
}

/// `--join`: makes this node a voter of the group `seed` belongs to (see
/// [`varpulis_raft::join`]). Nothing to do when the local log already lists this node as a
/// voter (a restart after a join). A refusal that retrying cannot fix (bad key, id taken)
/// stops the node with that error.
async fn join(state: AppState, seed: String, failed: Arc<std::sync::Mutex<Option<String>>>) {
    if state
        .raft
        .metrics_summary()
        .membership
        .contains(&state.node_id)
    {
        tracing::info!(
            node_id = state.node_id,
            "already a voter: not joining again"
        );
        return;
    }
    let request = varpulis_raft::JoinRequest {
        node_id: state.node_id,
        address: state.advertise.clone(),
        seed,
        api_key: state.config.api_key.clone(),
        peer_secret: state.config.peer_secret.clone(),
        tls: state.client_tls.clone(),
    };
    let token = state.shutdown.clone();
    match varpulis_raft::join_group(&request, token.cancelled()).await {
        Ok(joined) => tracing::info!(node_id = state.node_id, ?joined, "join complete"),
        Err(_) if token.is_cancelled() => {}
        Err(err) => {
            tracing::error!(node_id = state.node_id, "cannot join the group: {err}");
            *failed.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(format!("cannot join the group: {err}"));
            token.cancel();
        }
    }
}

/// Counts leader changes seen by this node (for `/metrics`) and logs them, until shutdown.
/// Watches the server metrics, which do not change with each write.
async fn watch_leader(state: AppState) {
    let mut rx = state.raft.server_metrics();
    let mut last = rx.borrow().current_leader;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let leader = rx.borrow().current_leader;
        if leader != last {
            if leader.is_some() {
                Metrics::inc(&state.metrics().leader_changes);
            }
            tracing::info!(node_id = state.node_id, ?leader, "raft leader changed");
            last = leader;
        }
    }
}

fn print_banner(
    config: &CoordinatorConfig,
    node_id: u64,
    advertise: &str,
    peers: &std::collections::BTreeMap<u64, String>,
    data_dir: &std::path::Path,
) {
    let auth = if config.api_key.is_some() {
        "enabled (API key required)"
    } else {
        "disabled (no API key)"
    };
    let token = if config.worker_token.is_some() {
        "required"
    } else {
        "not required"
    };
    let peers_auth = match (&config.peer_secret, &config.api_key) {
        (Some(_), _) => "peer secret required",
        (None, Some(_)) => "API key (no peer secret set)",
        (None, None) => "open (no peer secret, no API key)",
    };
    let peers: Vec<String> = peers
        .iter()
        .map(|(id, url)| format!("{id}={url}"))
        .collect();
    println!("Varpulis Coordinator");
    println!("=======================");
    println!("Console:   {advertise}/ui/");
    println!("API:       {advertise}/api/v1/cluster/");
    println!("Auth:      {auth}");
    println!("Workers:   join token {token}");
    println!("Node:      {node_id}");
    println!("Peers:     {}", peers.join(", "));
    println!("Raft RPCs: {peers_auth}");
    println!("TLS:       {}", tls_banner(config));
    println!("Data dir:  {}", data_dir.display());
}

fn tls_banner(config: &CoordinatorConfig) -> String {
    let settings = &config.tls;
    if !settings.serves_tls() {
        return "off (plain HTTP)".to_string();
    }
    let mut text = "HTTPS".to_string();
    if settings.mutual() {
        text.push_str(", client certificates required (mutual TLS)");
    }
    if let Some(name) = &settings.peer_name {
        text.push_str(&format!(", peer certificates named {name} open /raft/*"));
    }
    text
}
