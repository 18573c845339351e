//! [`RaftNode`]: the running Raft member of the coordinator group, and its [`RaftConfig`].
//!
//! Start-up opens sled under `data_dir`, restores the state machine from its last snapshot, builds
//! openraft, and, when the node has never voted nor logged anything, initializes the group with
//! every configured peer as a voter. Every node of a fresh cluster proposes the same membership
//! as the same first entry (log id term 0, index 0), so it does not matter which node starts first
//! or whether several initialize concurrently; a restarted node is not fresh and skips it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, Fatal, ForwardToLeader, InitializeError, RaftError,
};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use tokio::sync::{broadcast, watch};
use varpulis_api::raft::RaftMetricsView;
use varpulis_cluster::{ClusterState, Command, CommandResponse};

use varpulis_cluster::Limits;

use crate::auth::Credentials;
use crate::batch::{self, Batcher};
use crate::cork::Cork;
use crate::error::{Error, WriteError};
use crate::guard::{LocalView, DEFAULT_MAX_TERM_JUMP};
use crate::log_store::{LogStore, Received, DEFAULT_MAX_APPEND_BYTES};
use crate::network::{NetworkFactory, NetworkSettings};
use crate::state_machine::{read_lock, AppliedEvent, SharedState, StateMachine};
use crate::types::{BasicNode, NodeId, Raft, RaftMetrics, RaftServerMetrics};

mod prevote;
mod transfer;
use prevote::LeaderContact;
pub use prevote::{PreVoteRequest, PreVoteResponse, PreVoteTimings};
use transfer::{LeaderSince, WriteGate};

/// Upper bound of an admin call (`add_learner` waits for the learner to catch up).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a new voter to catch up before a promotion is refused.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(10);
/// Entries a member may trail the leader's log by and still count as caught up.
pub const READY_LAG: u64 = 64;

/// Configuration of one Raft member.
#[derive(Clone)]
pub struct RaftConfig {
    /// This node's id (must be a key of `peers`).
    pub node_id: NodeId,
    /// Directory holding the sled database (`<data_dir>/raft`).
    pub data_dir: PathBuf,
    /// Every voter of a fresh group, this node included: id -> base URL (`http://host:port`).
    pub peers: BTreeMap<NodeId, String>,
    /// Cluster API key: required on the admin routes (add-learner, change-membership), and on
    /// the peer RPCs too when no `peer_secret` is set. Sent on outbound RPCs.
    pub api_key: Option<String>,
    /// Peer secret (`--peer-secret`): required on the peer RPCs (vote, append, snapshots) in
    /// the `x-varpulis-peer-secret` header, where the API key then no longer opens them.
    /// Sent on outbound RPCs. See [`crate::auth`].
    pub peer_secret: Option<String>,
    /// Largest accepted jump of a peer's term above ours ([`crate::guard`]). Default 1,000,000.
    pub max_term_jump: u64,
    /// Byte budget of one AppendEntries and of one proposal batch. Default 1 MiB.
    pub max_append_bytes: usize,
    /// Size of one snapshot chunk on the wire (before base64). Default 1 MiB.
    pub snapshot_chunk_bytes: usize,
    /// Largest snapshot this node accepts from a leader (chunks beyond are refused). Default
    /// 4 GiB.
    pub max_snapshot_bytes: u64,
    /// Slowest peer transfer rate still considered healthy: an RPC of `n` bytes may take
    /// `rpc_timeout + n / rate`. Default 1 MiB/s.
    pub min_throughput_bytes_per_sec: u64,
    /// Limits on what enters the log, checked by [`RaftNode::write`] before proposing.
    pub limits: Limits,
    /// Leader heartbeat period (also openraft's AppendEntries timeout). Default 50 ms.
    pub heartbeat_interval_ms: u64,
    /// With `election_timeout_max_ms`, sets the spread of the pre-vote silence (docs/raft.md,
    /// "Elections: pre-vote"). Default 150 ms.
    pub election_timeout_min_ms: u64,
    /// The leader lease: a voter that heard from a leader within it refuses (pre-)votes; a
    /// follower asks for a pre-vote after `max + heartbeat + rand(max - min)` of silence.
    /// Default 250 ms.
    pub election_timeout_max_ms: u64,
    /// Upper bound of a vote/append HTTP exchange (openraft may impose a shorter one). Default 1 s.
    pub rpc_timeout_ms: u64,
    /// Upper bound of one snapshot chunk's exchange (the whole transfer has no deadline: each
    /// chunk has its own). Default 30 s.
    pub snapshot_timeout_ms: u64,
    /// Build a snapshot (and compact the log) after this many applied entries. Default 5000.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log below the last snapshot, so slightly lagging followers catch up
    /// from the log instead of a snapshot. Default 1000.
    pub max_in_snapshot_log_to_keep: u64,
    /// How long `write` waits for its command to commit and apply. Default 5 s.
    pub write_timeout_ms: u64,
    /// Initialize the group with `peers` when this node's storage is fresh. Default true; a node
    /// that joins an existing group as a learner (`add_learner`) sets it to false, otherwise it
    /// would start a group of its own.
    pub auto_initialize: bool,
    /// TLS of the outbound peer RPCs (`https://` peers: CA to verify them, client certificate
    /// under mutual TLS). Default: reqwest's defaults.
    pub tls: varpulis_tls::ClientTls,
    /// Newest peer RPC body format this node reads and sends ([`crate::wire`]). Default
    /// [`crate::wire::WIRE_NEWEST`] (2, binary, negotiated per peer); 1 makes the node behave as
    /// a binary older than format 2 (JSON only, version 2 refused, not advertised): for mixed-
    /// version tests, or to pin JSON while debugging.
    pub max_wire_format: u8,
}

impl std::fmt::Debug for RaftConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The api key is never printed.
        f.debug_struct("RaftConfig")
            .field("node_id", &self.node_id)
            .field("data_dir", &self.data_dir)
            .field("peers", &self.peers)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "peer_secret",
                &self.peer_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("max_term_jump", &self.max_term_jump)
            .field("max_append_bytes", &self.max_append_bytes)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("election_timeout_min_ms", &self.election_timeout_min_ms)
            .field("election_timeout_max_ms", &self.election_timeout_max_ms)
            .field("rpc_timeout_ms", &self.rpc_timeout_ms)
            .field("snapshot_logs_since_last", &self.snapshot_logs_since_last)
            .field("max_wire_format", &self.max_wire_format)
            .finish_non_exhaustive()
    }
}

impl RaftConfig {
    /// A configuration with default timings.
    pub fn new(
        node_id: NodeId,
        data_dir: impl Into<PathBuf>,
        peers: BTreeMap<NodeId, String>,
    ) -> Self {
        Self {
            node_id,
            data_dir: data_dir.into(),
            peers,
            api_key: None,
            peer_secret: None,
            max_term_jump: DEFAULT_MAX_TERM_JUMP,
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
            snapshot_chunk_bytes: 1024 * 1024,
            max_snapshot_bytes: 4 << 30,
            min_throughput_bytes_per_sec: 1024 * 1024,
            limits: Limits::default(),
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 250,
            rpc_timeout_ms: 1000,
            snapshot_timeout_ms: 30_000,
            snapshot_logs_since_last: 5000,
            max_in_snapshot_log_to_keep: 1000,
            write_timeout_ms: 5000,
            auto_initialize: true,
            tls: varpulis_tls::ClientTls::none(),
            max_wire_format: crate::wire::WIRE_NEWEST,
        }
    }

    /// A single-node group: this node is the only voter.
    pub fn single(node_id: NodeId, data_dir: impl Into<PathBuf>, url: impl Into<String>) -> Self {
        Self::new(node_id, data_dir, BTreeMap::from([(node_id, url.into())]))
    }

    /// Checks the peers and timings, and builds the openraft configuration.
    pub fn validate(&self) -> Result<Config, Error> {
        if !self.peers.contains_key(&self.node_id) {
            return Err(Error::Config(format!(
                "node id {} is not in the peer list {:?}",
                self.node_id,
                self.peers.keys().collect::<Vec<_>>()
            )));
        }
        if let Some((id, url)) = self
            .peers
            .iter()
            .find(|(_, u)| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(Error::Config(format!(
                "peer {id} has URL {url:?}: expected http://host:port"
            )));
        }
        if self.snapshot_logs_since_last == 0 {
            return Err(Error::Config(
                "snapshot_logs_since_last must be at least 1".into(),
            ));
        }
        if self.max_term_jump == 0 {
            return Err(Error::Config("max_term_jump must be at least 1".into()));
        }
        if self.max_append_bytes < 1024 || self.snapshot_chunk_bytes < 1024 {
            return Err(Error::Config(
                "max_append_bytes and snapshot_chunk_bytes must be at least 1024".into(),
            ));
        }
        if self.min_throughput_bytes_per_sec == 0 || self.max_snapshot_bytes == 0 {
            return Err(Error::Config(
                "min_throughput_bytes_per_sec and max_snapshot_bytes must be positive".into(),
            ));
        }
        self.limits.validate().map_err(Error::Config)?;
        if [&self.api_key, &self.peer_secret]
            .into_iter()
            .flatten()
            .any(|s| s.is_empty())
        {
            return Err(Error::Config(
                "api_key and peer_secret must not be empty strings".into(),
            ));
        }
        Config {
            cluster_name: "varpulis".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.snapshot_timeout_ms,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            enable_heartbeat: true,
            // Elections start from the pre-vote elector only ([`prevote`]): openraft's timer
            // would let a node that was cut off raise its term and depose a healthy leader.
            enable_elect: false,
            enable_tick: true,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Config(e.to_string()))
    }
}

/// The dedicated Tokio runtime that runs this node's consensus tasks (openraft's core,
/// replication streams, state-machine worker, the proposal batcher and their RPC clients).
struct ConsensusRuntime(Option<tokio::runtime::Runtime>);

impl ConsensusRuntime {
    fn new(node_id: NodeId) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(CONSENSUS_THREADS)
            .thread_name(format!("raft-{node_id}"))
            .enable_all()
            .build()
            .map_err(|e| Error::Raft(format!("cannot start the consensus runtime: {e}")))?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle().clone(),
            // Only `drop` takes the runtime out.
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for ConsensusRuntime {
    fn drop(&mut self) {
        // The last handle may be dropped inside async code, where a blocking shutdown panics.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Worker threads of the consensus runtime.
const CONSENSUS_THREADS: usize = 1;

/// Environment switch (`off`) that serves the peers' Raft RPCs on the HTTP runtime, as before
/// [`RaftNode::rpc_placement`]. A diagnostic for A/B measurements, not a tuning knob.
pub const PLACEMENT_ENV: &str = "VARPULIS_RAFT_RPC_PLACEMENT";

/// Whether the diagnostic environment switch `name` is set to `off` (or `0`, `false`).
fn switched_off(name: &str) -> bool {
    matches!(
        std::env::var(name).ok().as_deref().map(str::trim),
        Some("off" | "0" | "false")
    )
}

/// Environment switch (`off`): the leader's appends sync before returning, as before the
/// overlap of the leader's flush with replication (docs/raft.md). A diagnostic for A/B
/// measurements, not a tuning knob.
pub const LEADER_FLUSH_OVERLAP_ENV: &str = "VARPULIS_RAFT_LEADER_FLUSH_OVERLAP";

struct Inner {
    id: NodeId,
    raft: Raft,
    batcher: Batcher,
    /// Tickets of forwarded batches being queued ([`crate::cork`]).
    cork: Cork,
    /// Declared after `raft` and `batcher` so they drop first.
    runtime: ConsensusRuntime,
    /// Whether peers' RPC connections are served on `runtime` ([`RaftNode::rpc_placement`]).
    place_rpcs: bool,
    shared: SharedState,
    applied_rx: watch::Receiver<Option<u64>>,
    events: broadcast::Sender<AppliedEvent>,
    db: sled::Db,
    /// The log store's background purges ([`RaftNode::shutdown`] waits for them).
    purger: crate::purger::Purger,
    config: RaftConfig,
    /// Secrets required from callers and sent to peers.
    credentials: Credentials,
    /// Peers' reachability as seen by this node's RPCs (membership safety checks).
    peers: Arc<crate::peer_log::PeerLog>,
    /// `(applied index, state hash)` of the last `metrics_view`: hashing serializes the whole
    /// state, and the state only changes when the applied index does.
    hash_cache: std::sync::Mutex<Option<(Option<u64>, String)>>,
    /// The cluster id ([`crate::cluster_id`]): stored by a restore, else derived from `peers`.
    cluster_id: String,
    /// Writes pass it; a leadership transfer closes it ([`transfer`]).
    gate: WriteGate,
    /// When this node last became leader ([`transfer`]: a young leader's lease).
    leader_since: LeaderSince,
    /// HTTP client of the transfer's `POST /raft/elect` and of `POST /raft/pre-vote` (TLS as
    /// for the peer RPCs).
    admin_http: reqwest::Client,
    /// When this node last heard from a leader ([`prevote`]).
    contact: LeaderContact,
    /// Records of the last version-2 AppendEntries, for the log store ([`Received`]).
    received: Arc<std::sync::Mutex<Received>>,
    /// The outbound RPC factory (a clone sharing the peers' negotiated formats).
    outbound: NetworkFactory,
    /// Held by each membership call on this node ([`RaftNode::change_membership`]).
    membership_serial: tokio::sync::Mutex<()>,
}

/// Cloneable handle on a running Raft member.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl RaftNode {
    /// Opens storage, starts openraft and initializes the group if this node is fresh.
    pub async fn start(config: RaftConfig) -> Result<RaftNode, Error> {
        let raft_config = Arc::new(config.validate()?);
        let dir = config.data_dir.join("raft");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Config(format!("cannot create data dir {}: {e}", dir.display())))?;
        // Opening sled reads its files (recovery scan): keep it off the async workers.
        let open_dir = dir.clone();
        let db = tokio::task::spawn_blocking(move || sled::Config::new().path(open_dir).open())
            .await
            .map_err(|e| Error::Raft(format!("sled open task: {e}")))?
            .map_err(|e| Error::Config(format!("cannot open sled at {}: {e}", dir.display())))?;
        // The state holds secrets in clear (connector params, worker keys): owner only.
        crate::private_dir::make_private(&dir).map_err(|e| {
            Error::Config(format!(
                "cannot restrict {} to its owner: {e}",
                dir.display()
            ))
        })?;

        let overlap = !switched_off(LEADER_FLUSH_OVERLAP_ENV);
        let log_store = LogStore::open(&db, &dir.join(crate::layout::WAL_DIR))?
            .with_max_append_bytes(config.max_append_bytes)
            .with_leader_flush_overlap(overlap.then_some(config.node_id));
        let purger = log_store.purger();
        let fresh = log_store.is_fresh()?;
        let cluster_id = match log_store.stored_cluster_id()? {
            Some(id) => id,
            None => crate::cluster_id::from_peers(&config.peers),
        };
        // Reads (and checks) the snapshot data file: megabytes for a large state, off the async
        // workers too.
        let (sm_db, sm_dir) = (db.clone(), dir.clone());
        let sm = tokio::task::spawn_blocking(move || StateMachine::open(&sm_db, &sm_dir))
            .await
            .map_err(|e| Error::Raft(format!("state machine open task: {e}")))??;
        let shared = sm.shared();
        let applied_rx = sm.applied_index_watch();
        let events = sm.events();

        let credentials = Credentials::new(config.peer_secret.clone(), config.api_key.clone());
        let network = NetworkFactory::new(
            config.node_id,
            NetworkSettings {
                credentials: credentials.clone(),
                rpc_timeout: Duration::from_millis(config.rpc_timeout_ms.max(1)),
                snapshot_timeout: Duration::from_millis(config.snapshot_timeout_ms.max(1)),
                min_throughput_bytes_per_sec: config.min_throughput_bytes_per_sec,
                max_term_jump: config.max_term_jump,
                tls: config.tls.clone(),
                max_wire_format: config.max_wire_format,
            },
        )
        .map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?
        .with_records(log_store.shared_cache());
        let received = log_store.received();
        let outbound = network.clone();
        let peers = network.peers();

        // Consensus runs on its own runtime: its core, replication and state-machine tasks must
        // not queue behind hundreds of HTTP handler tasks on the caller's workers, or every
        // commit waits for them (measured: p50 write latency doubled under 64 clients).
        let runtime = ConsensusRuntime::new(config.node_id)?;
        let handle = runtime.handle();
        let node_id = config.node_id;
        let raft = handle
            .spawn(async move { Raft::new(node_id, raft_config, network, log_store, sm).await })
            .await
            .map_err(|e| Error::Raft(format!("raft start task: {e}")))?
            .map_err(|e| Error::Raft(e.to_string()))?;

        if fresh && config.auto_initialize {
            let members: BTreeMap<NodeId, BasicNode> = config
                .peers
                .iter()
                .map(|(id, url)| (*id, BasicNode::new(url.trim_end_matches('/'))))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(node_id = config.node_id, "raft group initialized"),
                Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                    tracing::debug!(error = %e, "raft already initialized");
                }
                Err(e) => return Err(Error::Raft(e.to_string())),
            }
        }

        let cork = Cork::default();
        let batcher = {
            let _on_consensus_runtime = handle.enter();
            Batcher::spawn(raft.clone(), config.max_append_bytes, cork.clone())
        };
        let admin_http = config
            .tls
            .reqwest_builder()
            .connect_timeout(Duration::from_millis(config.rpc_timeout_ms.max(1)))
            .build()
            .map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
        let node = RaftNode {
            inner: Arc::new(Inner {
                id: config.node_id,
                batcher,
                cork,
                runtime,
                place_rpcs: !switched_off(PLACEMENT_ENV),
                raft,
                shared,
                applied_rx,
                events,
                db,
                purger,
                config,
                credentials,
                peers,
                hash_cache: std::sync::Mutex::new(None),
                cluster_id,
                gate: WriteGate::default(),
                leader_since: LeaderSince::default(),
                admin_http,
                contact: LeaderContact::default(),
                received,
                outbound,
                membership_serial: tokio::sync::Mutex::new(()),
            }),
        };
        transfer::watch_leadership(node.clone());
        prevote::spawn_elector(&node);
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The cluster id ([`crate::cluster_id`]).
    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster_id
    }

    /// A backup file ([`crate::snapshot_file`]) of the locally applied state, as it is now.
    ///
    /// Call [`RaftNode::ensure_linearizable`] first for a linearizable point (the coordinator's
    /// `GET /api/v1/cluster/snapshot` does). The state is copied under the read lock with its
    /// index (so `apply` waits at most for the copy), then serialized and checksummed on the
    /// blocking pool; writes keep committing meanwhile. Returns the applied index the file
    /// reflects, and the file.
    pub async fn capture_snapshot(&self) -> Result<(Option<u64>, Vec<u8>), Error> {
        let (index, state) = {
            let guard = read_lock(&self.inner.shared);
            (guard.last_applied, Arc::clone(&guard.state))
        };
        let copy = ClusterState::clone(&state);
        drop(state);
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let info = crate::snapshot_file::CaptureInfo {
            cluster_id: self.inner.cluster_id.clone(),
            applied_index: index,
            membership: crate::snapshot_file::SourceMembership {
                voters: membership.voter_ids().collect(),
                learners: membership.learner_ids().collect(),
                nodes: membership
                    .nodes()
                    .map(|(id, n)| (*id, n.addr.clone()))
                    .collect(),
            },
            node_id: self.inner.id,
        };
        tokio::task::spawn_blocking(move || crate::snapshot_file::encode(&copy, info))
            .await
            .map_err(|e| Error::Raft(format!("snapshot task: {e}")))?
            .map(|bytes| (index, bytes))
            .map_err(|e| Error::Raft(e.to_string()))
    }

    /// `n` tickets for the items of one forwarded batch: while they are out, the next proposal
    /// waits for their writes ([`crate::cork`]; run each item in [`crate::cork::with_ticket`]).
    pub fn cork_tickets(&self, n: usize) -> Vec<crate::cork::Ticket> {
        self.inner.cork.tickets(n)
    }

    /// The placement that serves peers' Raft RPC connections on the consensus runtime
    /// ([`crate::peer_conn`], issue 24), for the listener (`varpulis_tls::ServeOptions`);
    /// `None` when [`PLACEMENT_ENV`] is `off` (a diagnostic for A/B measurements,
    /// docs/raft.md).
    pub fn rpc_placement(&self) -> Option<varpulis_tls::placement::SharedPlacement> {
        self.inner.place_rpcs.then(|| {
            crate::peer_conn::PeerRpcPlacement::shared(
                self.inner.runtime.handle(),
                self.inner.credentials.clone(),
            )
        })
    }

    /// The configuration the node was started with.
    pub fn config(&self) -> &RaftConfig {
        &self.inner.config
    }

    /// The underlying openraft handle (tests, triggers, advanced waits).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Proposes `cmd` and waits until it is committed and applied here (on the leader).
    ///
    /// The command is first checked against the configured [`Limits`]
    /// ([`varpulis_cluster::limits::enforce`]): a command over a limit is not proposed and
    /// answers `Ok` with its `limit_exceeded` error, like a command the state machine rejects.
    ///
    /// Concurrent writes share log entries (see [`crate::batch`]): each caller still gets its
    /// own command's response, after the entry holding it is durable on a quorum.
    pub async fn write(&self, mut cmd: Command) -> Result<CommandResponse, WriteError> {
        let limits = &self.inner.config.limits;
        // Sizes first, without the state lock (they may serialize a large spec).
        let checked = varpulis_cluster::limits::check_sizes(limits, &mut cmd)
            .and_then(|()| self.read(|s| varpulis_cluster::limits::check_counts(limits, s, &cmd)));
        if let Err(refused) = checked {
            return Ok(CommandResponse::err(refused));
        }
        let timeout = Duration::from_millis(self.inner.config.write_timeout_ms);
        let proposed = async {
            // Held until the write is answered: a leadership transfer waits for it ([`transfer`]).
            let _gate = self.inner.gate.pass().await;
            if batch::is_batch(&cmd) {
                return Ok(self.inner.raft.client_write(cmd).await.map(|r| r.data));
            }
            let submitted = self.inner.batcher.submit(cmd);
            // Queued (or refused): this task's forwarded-batch ticket, if any, is back.
            crate::cork::queued();
            match submitted {
                Ok(rx) => Ok(rx
                    .await
                    .unwrap_or_else(|_| Err(RaftError::Fatal(Fatal::Stopped)))),
                Err(batch::Refused::Stopped) => Ok(Err(RaftError::Fatal(Fatal::Stopped))),
                // Shed the load instead of queueing without bound (issue 24 item 6).
                Err(batch::Refused::Full) => Err(WriteError::Overloaded),
            }
        };
        match tokio::time::timeout(timeout, proposed).await {
            Err(_) => Err(WriteError::Timeout),
            Ok(Err(refused)) => Err(refused),
            Ok(Ok(Ok(resp))) => Ok(resp),
            Ok(Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))))) => {
                Err(self.forward(&f))
            }
            Ok(Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))))) => {
                Err(WriteError::Fatal(e.to_string()))
            }
            Ok(Ok(Err(RaftError::Fatal(e)))) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    fn forward(&self, f: &ForwardToLeader<NodeId, BasicNode>) -> WriteError {
        match f.leader_id {
            // No leader, or this node itself while it is not (yet) able to serve: nobody to
            // forward to, the caller retries later.
            None => WriteError::NoLeader,
            Some(id) if id == self.inner.id => WriteError::NoLeader,
            Some(id) => WriteError::ForwardToLeader {
                leader_id: Some(id),
                leader_url: f
                    .leader_node
                    .as_ref()
                    .map(|n| n.addr.clone())
                    .or_else(|| self.node_url(id)),
            },
        }
    }

    fn node_url(&self, id: NodeId) -> Option<String> {
        let m = self.inner.raft.metrics();
        let from_membership = m
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone());
        from_membership.or_else(|| self.inner.config.peers.get(&id).cloned())
    }

    /// Runs `f` on the locally applied state (may lag the leader; see `ensure_linearizable`).
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        let guard = read_lock(&self.inner.shared);
        f(&guard.state)
    }

    /// The locally applied state and the index it reflects.
    pub fn shared_state(&self) -> SharedState {
        self.inner.shared.clone()
    }

    /// Confirms leadership with a quorum and waits until everything committed before the call is
    /// applied locally; a `read` afterwards is linearizable. Only the leader can do it.
    pub async fn ensure_linearizable(&self) -> Result<(), WriteError> {
        let timeout = Duration::from_millis(self.inner.config.write_timeout_ms);
        match tokio::time::timeout(timeout, self.inner.raft.ensure_linearizable()).await {
            Err(_) => Err(WriteError::Timeout),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(self.forward(&f))
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                Err(WriteError::NoLeader)
            }
            Ok(Err(RaftError::Fatal(e))) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    /// The current leader's id and base URL, if one is known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let id = self.inner.raft.metrics().borrow().current_leader?;
        self.node_url(id).map(|url| (id, url))
    }

    /// True when this node is the leader.
    pub fn is_leader(&self) -> bool {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.id)
    }

    /// Waits until a leader is known (or `timeout` elapses).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<(NodeId, String)> {
        let mut rx = self.inner.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return self.leader(),
            }
        }
    }

    /// openraft's metrics watch. It changes with every log append, commit and apply: a task
    /// that only follows leadership should watch [`RaftNode::server_metrics`] instead, or it
    /// wakes on every write.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.inner.raft.metrics()
    }

    /// openraft's server metrics watch: changes only with the vote, the server state, the
    /// leader or the membership (not with each write).
    pub fn server_metrics(&self) -> watch::Receiver<RaftServerMetrics> {
        self.inner.raft.server_metrics()
    }

    /// A watch of the last applied log index.
    pub fn applied_index_watch(&self) -> watch::Receiver<Option<u64>> {
        self.inner.applied_rx.clone()
    }

    /// Subscribes to applied commands (and snapshot installs), in log order.
    pub fn subscribe_applied(&self) -> broadcast::Receiver<AppliedEvent> {
        self.inner.events.subscribe()
    }

    /// The `GET /raft/metrics` view of this node, with the hash of the applied state.
    ///
    /// Hashing serializes the whole state (cached per applied index): use
    /// [`RaftNode::metrics_summary`] on paths that run often.
    pub fn metrics_view(&self) -> RaftMetricsView {
        self.view(true)
    }

    /// [`RaftNode::metrics_view`] without the state hash (`state_hash` is empty): cheap at
    /// any state size, for health checks, readiness probes and the leader's periodic tasks.
    pub fn metrics_summary(&self) -> RaftMetricsView {
        self.view(false)
    }

    /// Bytes of Raft storage on this node's disk: sled, the log's segment files (their
    /// preallocated zeros included) and the snapshot files; walks the files, so call it off the
    /// async workers.
    pub fn data_size_bytes(&self) -> Option<u64> {
        let raft_dir = self.inner.config.data_dir.join("raft");
        let files = |dir: std::path::PathBuf| -> u64 {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok()?.metadata().ok())
                        .filter(|m| m.is_file())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0)
        };
        let sled = self.inner.db.size_on_disk().ok()?;
        Some(
            sled + files(raft_dir.join(crate::layout::WAL_DIR))
                + files(raft_dir.join(crate::snapshot_dir::DIR_NAME)),
        )
    }

    /// Whether this node leads but has not heard from a quorum of voters for longer than
    /// [`RaftNode::quorum_loss_after`]: a partitioned leader keeps its role in openraft until
    /// it hears of a higher term, so readiness must not trust the role alone. A single-voter
    /// cluster always has its quorum; a leader without an acknowledgement yet is not judged.
    pub fn leader_lost_quorum(&self) -> bool {
        let m = self.inner.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return false;
        }
        if m.membership_config.membership().voter_ids().count() <= 1 {
            return false;
        }
        m.millis_since_quorum_ack
            .is_some_and(|ms| ms > self.quorum_loss_after().as_millis() as u64)
    }

    /// How long a leader may go without a quorum's acknowledgement before it counts as having
    /// lost its quorum: twice the maximum election timeout, at least one second (acks lag
    /// under heavy load; a follower that stops hearing from the leader starts an election
    /// after one election timeout).
    pub fn quorum_loss_after(&self) -> Duration {
        Duration::from_millis((self.inner.config.election_timeout_max_ms * 2).max(1000))
    }

    /// This node's current Raft term.
    pub fn current_term(&self) -> u64 {
        self.inner.raft.metrics().borrow().current_term
    }

    fn view(&self, with_hash: bool) -> RaftMetricsView {
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let (last_applied, state_hash) = if with_hash {
            self.applied_hash()
        } else {
            (read_lock(&self.inner.shared).last_applied, String::new())
        };
        let state = match m.state {
            ServerState::Leader => "Leader",
            ServerState::Follower => "Follower",
            ServerState::Candidate => "Candidate",
            ServerState::Learner => "Learner",
            ServerState::Shutdown => "Shutdown",
        };
        RaftMetricsView {
            id: self.inner.id,
            state: state.to_string(),
            current_term: m.current_term,
            current_leader: m.current_leader,
            last_applied,
            last_log_index: m.last_log_index,
            membership: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            nodes: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
            state_hash,
            snapshot_index: m.snapshot.map(|l| l.index),
            version: Some(varpulis_api::VERSION.to_string()),
            // Measuring walks sled's files: only the full view (`GET /raft/metrics`) pays it.
            data_size_bytes: if with_hash {
                self.inner.db.size_on_disk().ok()
            } else {
                None
            },
            cluster_id: Some(self.inner.cluster_id.clone()),
        }
    }

    /// The last applied index and the hash of the state at that index (cached per index).
    ///
    /// The state is taken by reference under the read lock, copied, and the copy hashed:
    /// `apply` takes the write lock on the consensus runtime's only thread, and hashing a large
    /// state while holding the lock would stall heartbeats (anyone may poll
    /// `GET /raft/metrics`). `apply` waits for the reference to go while the copy is made,
    /// yielding that thread (see [`crate::state_machine`]). Concurrent callers share one
    /// computation (they wait on the cache and find it filled).
    pub fn applied_hash(&self) -> (Option<u64>, String) {
        // Never wait for the cache (a computation may be running) while holding the state lock.
        let current = read_lock(&self.inner.shared).last_applied;
        if let Some(hit) = self.cached_hash(current) {
            return hit;
        }
        let (index, state) = {
            let guard = read_lock(&self.inner.shared);
            (guard.last_applied, Arc::clone(&guard.state))
        };
        let mut cache = self
            .inner
            .hash_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((cached, hash)) = cache.as_ref() {
            if *cached == index {
                return (index, hash.clone());
            }
        }
        // Copy, let go of the shared state (so `apply` waits at most for the copy, which is
        // much cheaper than serializing and hashing), then hash the copy.
        let copy = ClusterState::clone(&state);
        drop(state);
        let hash = copy.state_hash();
        *cache = Some((index, hash.clone()));
        (index, hash)
    }

    fn cached_hash(&self, index: Option<u64>) -> Option<(Option<u64>, String)> {
        let cache = self
            .inner
            .hash_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match cache.as_ref() {
            Some((cached, hash)) if *cached == index => Some((index, hash.clone())),
            _ => None,
        }
    }

    /// Adds a learner (it receives the log but does not vote); waits until it caught up.
    ///
    /// Unless `force`, the address must accept connections first: a typo must not put a
    /// phantom member into the membership (docs/operations.md, "Adding and removing a
    /// coordinator").
    pub async fn add_learner(
        &self,
        node_id: NodeId,
        address: String,
        force: bool,
    ) -> Result<(), Error> {
        if !force {
            probe(&address).await?;
        }
        let node = BasicNode::new(address.trim_end_matches('/'));
        // The learner is in the membership once the change commits; the wait for it to catch
        // up is bounded so an unreachable address does not hang the caller.
        // A change still committing (e.g. the first membership right after start) is waited out.
        self.retry_in_progress(|| self.inner.raft.add_learner(node_id, node.clone(), true))
            .await
    }

    /// Replaces the voter set with `members`; voters left out leave the membership entirely (in
    /// two steps, as [`RaftNode::remove_node`] does); learners stay.
    ///
    /// Unless `force`: a new voter must be a learner that has caught up with the leader's log
    /// (waited for up to [`CATCH_UP_WAIT`]), and the new voter set must keep a majority of
    /// members this node can reach. A change proposed while a previous one is still
    /// committing (openraft's `InProgress`, e.g. right after a removal that moved leadership) is
    /// retried until [`ADMIN_TIMEOUT`] instead of failing: the caller asked for a target
    /// membership, not for a race with the last one.
    pub async fn change_membership(
        &self,
        members: BTreeSet<NodeId>,
        force: bool,
    ) -> Result<(), Error> {
        let voters = self.voters();
        if !force && self.is_leader() {
            for &new in members.difference(&voters) {
                self.wait_caught_up(new).await?;
            }
            self.check_live_majority(&members)?;
        }
        let dropped: BTreeSet<NodeId> = voters.difference(&members).copied().collect();
        self.propose_membership(members.into(), true).await?;
        self.drop_learners(dropped).await
    }

    /// Removes `node` from the membership, voter or learner. Idempotent: removing a node that is
    /// not a member changes nothing. Unless `force`, removing a voter must leave a majority of
    /// the remaining voters reachable from this node, and the last voter cannot be removed.
    ///
    /// A voter is removed in two steps: it becomes a learner (so it receives the configuration
    /// that no longer counts it and never campaigns again, even if its process keeps running),
    /// then, once it has that entry (or after [`CATCH_UP_WAIT`] if it does not answer), it
    /// leaves the membership. When this node removes itself it stops leading after the first
    /// step and answers with the node still a learner; ask again (the CLI does) and the new
    /// leader finishes.
    pub async fn remove_node(&self, node: NodeId, force: bool) -> Result<(), Error> {
        let voters = self.voters();
        if voters.contains(&node) {
            let rest: BTreeSet<NodeId> = voters.iter().copied().filter(|n| *n != node).collect();
            if rest.is_empty() {
                return Err(Error::Membership(format!(
                    "node {node} is the last voter: a cluster cannot remove its last voter"
                )));
            }
            if !force && self.is_leader() {
                self.check_live_majority(&rest)?;
            }
            self.propose_membership(rest.into(), true).await?;
            return self.drop_learners([node].into_iter().collect()).await;
        }
        self.drop_learners([node].into_iter().collect()).await
    }

    /// Removes the learners among `nodes` from the membership, each once it has replicated
    /// the leader's log (waited for up to [`CATCH_UP_WAIT`]). Does nothing for nodes that are
    /// not learners; refuses (421/503) when this node does not lead.
    async fn drop_learners(&self, nodes: BTreeSet<NodeId>) -> Result<(), Error> {
        let learners: BTreeSet<NodeId> = {
            let m = self.inner.raft.metrics().borrow().clone();
            let learners = m.membership_config.membership().learner_ids().collect();
            learners
        };
        let nodes: BTreeSet<NodeId> = nodes.intersection(&learners).copied().collect();
        if nodes.is_empty() {
            return Ok(());
        }
        self.refuse_unless_leader()?;
        for &n in &nodes {
            // A dead node never catches up: remove it anyway (at once when it is known down).
            if !self.inner.peers.is_down(n) {
                let _ = self.wait_caught_up(n).await;
            }
        }
        self.propose_membership(ChangeMembers::RemoveNodes(nodes), false)
            .await
    }

    fn voters(&self) -> BTreeSet<NodeId> {
        let m = self.inner.raft.metrics().borrow().clone();
        let voters = m.membership_config.membership().voter_ids().collect();
        voters
    }

    /// Waits until `node` replicated the leader's log up to [`READY_LAG`] entries (leader only).
    async fn wait_caught_up(&self, node: NodeId) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            let m = self.inner.raft.metrics().borrow().clone();
            let last = m.last_log_index.unwrap_or(0);
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&node).cloned())
                .flatten()
                .map(|l| l.index);
            if matched.is_some_and(|i| i.saturating_add(READY_LAG) >= last) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let known = m.membership_config.membership().get_node(&node).is_some();
                return Err(Error::Membership(if known {
                    format!(
                        "node {node} has not caught up with the log (replicated up to {},                          leader at {last}): it stays a learner; check that it runs and is                          reachable, then promote it (or pass force)",
                        matched.map_or_else(|| "nothing".to_string(), |i| i.to_string())
                    )
                } else {
                    format!("node {node} is not a member: add it as a learner first")
                }));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Refuses a voter set in which fewer than a majority are reachable from this node (this
    /// node counts as reachable; a peer counts once an RPC to it failed and none succeeded
    /// since, see [`crate::peer_log`]).
    fn check_live_majority(&self, voters: &BTreeSet<NodeId>) -> Result<(), Error> {
        let down: Vec<NodeId> = voters
            .iter()
            .copied()
            .filter(|n| *n != self.inner.id && self.inner.peers.is_down(*n))
            .collect();
        let live = voters.len() - down.len();
        if live * 2 > voters.len() {
            return Ok(());
        }
        Err(Error::Membership(format!(
            "refused: of the voters {voters:?}, {down:?} do not answer; the change would leave              no reachable majority (the cluster could not commit anything). Bring them back              first, or pass force"
        )))
    }

    async fn propose_membership(
        &self,
        change: ChangeMembers<NodeId, BasicNode>,
        retain: bool,
    ) -> Result<(), Error> {
        self.retry_in_progress(|| self.inner.raft.change_membership(change.clone(), retain))
            .await
    }

    /// Runs a membership call again while openraft refuses it as `InProgress` (a previous change
    /// still committing), until [`ADMIN_TIMEOUT`]; the caller asked for a target membership, not
    /// for a race with the last change.
    async fn retry_in_progress<T, F, Fut>(&self, mut call: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<
            Output = Result<T, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>,
        >,
    {
        let deadline = tokio::time::Instant::now() + ADMIN_TIMEOUT;
        loop {
            // One membership call at a time per node, each checked against the state the
            // previous one left (see `refuse_unless_leader`).
            let serial = self.inner.membership_serial.lock().await;
            self.refuse_unless_leader()?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let res = tokio::time::timeout(left, call()).await;
            drop(serial);
            let res = match res {
                Ok(res) => res,
                Err(_) => return Err(Error::Write(WriteError::Timeout)),
            };
            let in_progress = matches!(
                &res,
                Err(RaftError::APIError(
                    ClientWriteError::ChangeMembershipError(
                        openraft::error::ChangeMembershipError::InProgress(_)
                    )
                ))
            );
            if in_progress && tokio::time::Instant::now() + Duration::from_millis(100) < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            return self.admin_result(res);
        }
    }

    /// Refuses a membership change unless this node leads and is a member (voter or learner)
    /// of its own effective membership. A leader whose removal from the membership has been
    /// appended keeps leading until a later heartbeat tick after the removal applied, and
    /// openraft 0.9 cannot append another membership entry in that window (a debug assertion
    /// stops its core). The caller gets `421` naming the leader when another node is known to
    /// lead, else `503` with `Retry-After`, and retries there (the CLI does).
    fn refuse_unless_leader(&self) -> Result<(), Error> {
        let m = self.inner.raft.metrics().borrow().clone();
        let me = self.inner.id;
        let member = m
            .membership_config
            .membership()
            .nodes()
            .any(|(id, _)| *id == me);
        if member && m.state == ServerState::Leader && m.current_leader == Some(me) {
            return Ok(());
        }
        Err(Error::Write(match m.current_leader {
            Some(leader) if leader != me => WriteError::ForwardToLeader {
                leader_id: Some(leader),
                leader_url: self.node_url(leader),
            },
            _ => WriteError::NoLeader,
        }))
    }

    fn admin_result<T>(
        &self,
        res: Result<T, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>,
    ) -> Result<(), Error> {
        match res {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Error::Write(self.forward(&f)))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(Error::Membership(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(Error::Write(WriteError::Fatal(e.to_string()))),
        }
    }

    /// The secrets this node requires from callers and sends to its peers.
    pub fn credentials(&self) -> &Credentials {
        &self.inner.credentials
    }

    /// The peer RPC body format version this node sends to `peer` now ([`crate::wire`]: 1,
    /// JSON, until that peer's answers advertised 2).
    pub fn wire_format_to(&self, peer: NodeId) -> u8 {
        self.inner.outbound.format_for(peer)
    }

    /// Hands the storage records of a version-2 AppendEntries to the log store, which stores
    /// them as they are when openraft appends their entries ([`Received`]).
    pub fn offer_received(&self, records: Vec<(crate::types::LogId, axum::body::Bytes)>) {
        if records.is_empty() {
            return;
        }
        self.inner
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .offer(records);
    }

    /// What [`crate::guard`] needs to judge a peer request: the current term, the members this
    /// node knows, the configured bound.
    pub fn guard_view(&self) -> LocalView {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        LocalView {
            current_term: m.current_term,
            members: m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect(),
            max_term_jump: self.inner.config.max_term_jump,
        }
    }

    /// Stops openraft, waits for the log purges still deleting, and flushes sled. Idempotent.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(|e| Error::Raft(format!("shutdown: {e}")))?;
        // A purge still deleting holds the database: let it finish, so that the node's data
        // dir can be opened again as soon as this returns.
        self.inner.purger.settled().await;
        self.inner
            .db
            .flush_async()
            .await
            .map_err(|e| Error::Raft(format!("flush on shutdown: {e}")))?;
        Ok(())
    }
}

/// Checks that `address` (an http(s) base URL) accepts TCP connections within 3 s.
async fn probe(address: &str) -> Result<(), Error> {
    let url = reqwest::Url::parse(address)
        .map_err(|e| Error::Config(format!("bad address `{address}`: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| Error::Config(format!("bad address `{address}`: no host")))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Error::Config(format!("bad address `{address}`: no port")))?;
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Config(format!(
            "nothing answers at {address}: {e} (start the node first, or pass force)"
        ))),
        Err(_) => Err(Error::Config(format!(
            "nothing answers at {address} within 3 s (start the node first, or pass force)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers() -> BTreeMap<NodeId, String> {
        BTreeMap::from([
            (1, "http://127.0.0.1:9100".to_string()),
            (2, "http://127.0.0.1:9101".to_string()),
        ])
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = RaftConfig::new(1, "/tmp/x", peers());
        let rc = cfg.validate().map_err(|e| e.to_string());
        assert!(rc.is_ok(), "{rc:?}");
        if let Ok(rc) = rc {
            assert_eq!(rc.heartbeat_interval, 50);
            assert_eq!(rc.snapshot_policy, SnapshotPolicy::LogsSinceLast(5000));
        }
    }

    #[test]
    fn self_must_be_a_peer() {
        let cfg = RaftConfig::new(3, "/tmp/x", peers());
        assert!(matches!(cfg.validate(), Err(Error::Config(_))));
    }

    #[test]
    fn peer_urls_need_a_scheme() {
        let mut p = peers();
        p.insert(2, "127.0.0.1:9101".into());
        assert!(matches!(
            RaftConfig::new(1, "/tmp/x", p).validate(),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn election_timeout_must_exceed_heartbeat() {
        let mut cfg = RaftConfig::new(1, "/tmp/x", peers());
        cfg.election_timeout_min_ms = 50;
        assert!(matches!(cfg.validate(), Err(Error::Config(_))));
    }

    #[test]
    fn debug_redacts_the_secrets() {
        let mut cfg = RaftConfig::new(1, "/tmp/x", peers());
        cfg.api_key = Some("topsecret".into());
        cfg.peer_secret = Some("peersecret".into());
        let text = format!("{cfg:?}");
        assert!(
            !text.contains("topsecret") && !text.contains("peersecret"),
            "{text}"
        );
    }

    #[test]
    fn byte_budgets_and_bounds_are_validated() {
        let mut cfg = RaftConfig::new(1, "/tmp/x", peers());
        cfg.max_append_bytes = 10;
        assert!(matches!(cfg.validate(), Err(Error::Config(_))));
        let mut cfg = RaftConfig::new(1, "/tmp/x", peers());
        cfg.max_term_jump = 0;
        assert!(matches!(cfg.validate(), Err(Error::Config(_))));
        let mut cfg = RaftConfig::new(1, "/tmp/x", peers());
        cfg.peer_secret = Some(String::new());
        assert!(matches!(cfg.validate(), Err(Error::Config(_))));
        let mut cfg = RaftConfig::new(1, "/tmp/x", peers());
        cfg.limits.max_labels = 0;
        assert!(matches!(cfg.validate(), Err(Error::Config(_))));
        let mut cfg = RaftConfig::new(1, "/tmp/x", peers());
        cfg.snapshot_chunk_bytes = 64 * 1024;
        let rc = cfg.validate().map_err(|e| e.to_string());
        assert_eq!(rc.map(|c| c.snapshot_max_chunk_size), Ok(64 * 1024));
    }
}
