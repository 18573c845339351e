//! Outbound Raft RPCs over HTTP (reqwest): `POST {addr}/raft/append`, `/raft/vote` and
//! `/raft/snapshot-chunk`, signed with this node's [`Credentials`], in the body format version
//! the peer reads ([`crate::wire`]: version 2, binary ([`crate::rpc_codec`]), once the peer's
//! answers advertised it; version 1, JSON, until then and for older peers).
//!
//! **Transport.** One [`reqwest::Client`] (connection pool, `TCP_NODELAY`, HTTP/1.1 keep-alive)
//! is shared by every peer connection: each replication stream sends one request at a time, so it
//! reuses one pooled connection per peer (checked with `ss` during the bench, docs/raft.md
//! "Network"). What every request to a peer shares is built once per peer (`Peer`): the parsed
//! URLs, the signed header map; a request is those, its body (moved, not copied) and its
//! deadline. The leader's entries travel as the records it stored (the entry cache keeps them),
//! not encoded again for each follower.
//!
//! Failures are mapped so openraft backs off where it should: connection failures and non-2xx
//! answers are `Unreachable` (openraft sleeps before retrying), timeouts are `Timeout`,
//! undecodable answers are `Network`, and an error returned by the remote Raft is a
//! `RemoteError`. An answer whose vote is absurdly far ahead ([`crate::guard::check_answer_vote`])
//! is a `Network` error: a member we call (a learner an operator added, say) cannot move us to
//! term `u64::MAX`.
//!
//! **Deadlines that follow the payload.** openraft gives every AppendEntries one heartbeat
//! interval (50 ms by default) and drops the call when it runs out, so an append that needs
//! longer (a large entry, a slow link, a busy follower) would be cut off and re-sent forever.
//! Here an append that carries entries runs as its own task, with a timeout of
//! `rpc_timeout + bytes / min_throughput` ([`NetworkFactory::payload_timeout`]). When openraft
//! gives up on the call and retries the same range (same vote and `prev_log_id`, a range at
//! least as long), the retry waits for the task already running instead of starting over, and
//! answers `PartialSuccess` when the running task carried fewer entries than the retry asks
//! for. Meanwhile each retry sends the follower an empty append (a keepalive, what openraft's
//! own heartbeat sends), so its election timer does not expire while a long transfer runs.
//! How many entries one append carries is bounded in bytes by the log reader
//! ([`crate::log_store`]), not only by openraft's entry count.
//!
//! **Chunked snapshots.** A snapshot is sent with openraft's chunked transport, one
//! `POST /raft/snapshot-chunk` per `snapshot_chunk_bytes` (raw bytes in version 2, base64 in
//! JSON in version 1), each chunk under its own deadline, so a large snapshot never has to fit
//! one timeout.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::snapshot_transport::{Chunked, SnapshotTransport};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::auth::Credentials;
pub use crate::auth::API_KEY_HEADER;
use crate::auth::PEER_SECRET_HEADER;
use crate::codec::CodecError;
use crate::entry_cache::SharedCache;
use crate::guard::check_answer_vote;
use crate::rpc_codec::{self, AppendAnswer, ChunkAnswer, VoteAnswer};
use crate::types::{BasicNode, LogId, NodeId, Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::wire::{self, WIRE_BINARY, WIRE_JSON};

/// Largest answer body read from a peer (answers are small).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Body of `POST /raft/snapshot`: a whole snapshot in one request (accepted from older nodes;
/// this version sends chunks).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FullSnapshotRequest {
    /// The leader's vote (the receiver rejects snapshots from stale leaders).
    pub vote: Vote,
    /// Snapshot metadata.
    pub meta: SnapshotMeta,
    /// The snapshot bytes, base64-encoded.
    pub data: String,
}

impl FullSnapshotRequest {
    /// Decodes the snapshot bytes.
    pub fn decode_data(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.data)
    }
}

/// Body of `POST /raft/snapshot-chunk` in version 1: one chunk of a snapshot (openraft's
/// `InstallSnapshotRequest` with the bytes in base64 instead of a JSON array of numbers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The leader's vote.
    pub vote: Vote,
    /// Metadata of the snapshot the chunk belongs to.
    pub meta: SnapshotMeta,
    /// Byte offset of this chunk in the snapshot.
    pub offset: u64,
    /// The chunk's bytes, base64-encoded.
    pub data: String,
    /// Whether this is the last chunk.
    pub done: bool,
}

impl SnapshotChunk {
    /// The chunk of `req`, encoded.
    pub fn encode(req: &InstallSnapshotRequest<TypeConfig>) -> Self {
        Self {
            vote: req.vote,
            meta: req.meta.clone(),
            offset: req.offset,
            data: base64::engine::general_purpose::STANDARD.encode(&req.data),
            done: req.done,
        }
    }

    /// Decodes the chunk into openraft's request.
    pub fn decode(self) -> Result<InstallSnapshotRequest<TypeConfig>, base64::DecodeError> {
        let data = base64::engine::general_purpose::STANDARD.decode(&self.data)?;
        Ok(InstallSnapshotRequest {
            vote: self.vote,
            meta: self.meta,
            offset: self.offset,
            data,
            done: self.done,
        })
    }
}

/// How outbound RPCs are timed and signed.
#[derive(Clone, Debug)]
pub struct NetworkSettings {
    /// Secrets sent to peers.
    pub credentials: Credentials,
    /// Base deadline of an RPC (vote, heartbeat, the fixed part of an append or a chunk).
    pub rpc_timeout: Duration,
    /// Upper bound of one snapshot chunk's exchange.
    pub snapshot_timeout: Duration,
    /// Slowest transfer rate still considered healthy: an RPC of `n` bytes gets
    /// `rpc_timeout + n / min_throughput` seconds.
    pub min_throughput_bytes_per_sec: u64,
    /// Largest accepted jump of the term in a peer's answer.
    pub max_term_jump: u64,
    /// TLS of the peer RPCs.
    pub tls: varpulis_tls::ClientTls,
    /// Newest body format version sent to peers ([`crate::wire::WIRE_NEWEST`]; 1 keeps every
    /// RPC in JSON, as a binary older than version 2 does).
    pub max_wire_format: u8,
}

/// The body format version to send to each peer, learnt from its answers.
type PeerFormats = Arc<Mutex<HashMap<NodeId, Arc<AtomicU8>>>>;

/// Creates one [`Network`] per peer, all sharing one HTTP client.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    client: reqwest::Client,
    settings: NetworkSettings,
    id: NodeId,
    /// Headers every peer request carries (the secrets), built once.
    signed: HeaderMap,
    /// Peers' reachability, for log lines once per transition ([`crate::peer_log`]).
    peers: Arc<crate::peer_log::PeerLog>,
    /// The format each peer reads, shared by every connection to it.
    formats: PeerFormats,
    /// The leader's recent entries with their stored records (sent as they are).
    records: Option<SharedCache>,
}

impl NetworkFactory {
    /// A factory for node `id`.
    pub fn new(id: NodeId, settings: NetworkSettings) -> Result<Self, reqwest::Error> {
        let client = settings
            .tls
            .reqwest_builder()
            .connect_timeout(settings.rpc_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true)
            .build()?;
        let signed = signed_headers(&settings.credentials);
        Ok(Self {
            client,
            settings,
            id,
            signed,
            peers: Default::default(),
            formats: Default::default(),
            records: None,
        })
    }

    /// The same factory sending entries found in `cache` as their stored records.
    pub fn with_records(mut self, cache: SharedCache) -> Self {
        self.records = Some(cache);
        self
    }

    /// Peers' reachability as this node's RPCs see it (shared by every peer connection).
    pub fn peers(&self) -> Arc<crate::peer_log::PeerLog> {
        self.peers.clone()
    }

    /// The body format version this node currently sends to `target` (1 until the peer
    /// advertised version 2).
    pub fn format_for(&self, target: NodeId) -> u8 {
        self.formats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&target)
            .map_or(WIRE_JSON, |f| f.load(Ordering::Relaxed))
    }

    /// The deadline of an RPC carrying `bytes`: the base RPC timeout plus the time the payload
    /// takes at the minimum healthy throughput.
    pub fn payload_timeout(&self, bytes: usize) -> Duration {
        let rate = self.settings.min_throughput_bytes_per_sec.max(1);
        let transfer = Duration::from_secs_f64(bytes as f64 / rate as f64);
        self.settings.rpc_timeout.saturating_add(transfer)
    }

    fn format_cell(&self, target: NodeId) -> Arc<AtomicU8> {
        self.formats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(target)
            .or_insert_with(|| Arc::new(AtomicU8::new(WIRE_JSON)))
            .clone()
    }
}

/// The secrets as a header map (values that are not valid header text are left out: the peer
/// then refuses the request with 401, which names the header).
fn signed_headers(credentials: &Credentials) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let (secret, key) = credentials.peer_headers();
    if let Some(v) = secret.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(PEER_SECRET_HEADER, v);
    }
    if let Some(v) = key.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(API_KEY_HEADER, v);
    }
    headers
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        let base = node.addr.trim_end_matches('/').to_string();
        let url = |path: &str| {
            let text = format!("{base}{path}");
            reqwest::Url::parse(&text).map_err(|e| format!("peer {target} address {text}: {e}"))
        };
        let urls = (|| {
            Ok::<_, String>([
                url("/raft/append")?,
                url("/raft/vote")?,
                url("/raft/snapshot-chunk")?,
            ])
        })();
        let peer = Arc::new(Peer {
            client: self.client.clone(),
            signed: self.signed.clone(),
            urls,
            format: self.format_cell(target),
            newest: self.settings.max_wire_format.min(wire::WIRE_NEWEST),
        });
        Network {
            factory: self.clone(),
            target,
            base,
            peer,
            inflight: None,
            keepalive: None,
        }
    }
}

/// What every request to one peer shares.
#[derive(Debug)]
struct Peer {
    client: reqwest::Client,
    /// The secrets, built once.
    signed: HeaderMap,
    /// `/raft/append`, `/raft/vote`, `/raft/snapshot-chunk` (or why the address is not a URL).
    urls: Result<[reqwest::Url; 3], String>,
    /// The body format to send; follows the peer's answers.
    format: Arc<AtomicU8>,
    /// Newest format this node sends.
    newest: u8,
}

/// Which peer route a request goes to.
#[derive(Debug, Clone, Copy)]
enum Route {
    Append = 0,
    Vote = 1,
    Chunk = 2,
}

impl Peer {
    /// The format to send now.
    fn format(&self) -> u8 {
        self.format.load(Ordering::Relaxed).min(self.newest)
    }

    /// Sends `body` (in `version`) and returns the answer's format version and body (at most
    /// [`MAX_ANSWER_BYTES`]); learns from the answer which version the peer reads.
    async fn exchange(
        &self,
        route: Route,
        version: u8,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u8, Vec<u8>), Failure> {
        let url = match &self.urls {
            Ok(urls) => urls[route as usize].clone(),
            Err(e) => return Err(Failure::Unreachable(e.clone())),
        };
        let mut req = reqwest::Request::new(reqwest::Method::POST, url);
        let mut headers = self.signed.clone();
        let (content_type, format) = if version == WIRE_BINARY {
            (wire::CONTENT_TYPE_BINARY, wire::WIRE_BINARY_STR)
        } else {
            ("application/json", wire::WIRE_JSON_STR)
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(wire::FORMAT_HEADER, HeaderValue::from_static(format));
        *req.headers_mut() = headers;
        *req.body_mut() = Some(body.into());
        *req.timeout_mut() = Some(timeout);
        let path = || req_path(route);
        let mut resp = self.client.execute(req).await.map_err(|e| {
            if e.is_timeout() {
                Failure::Timeout(timeout)
            } else {
                Failure::Unreachable(format!("POST {}: {e}", path()))
            }
        })?;
        // Whatever the status, the answer says which formats the peer reads now (an older
        // binary, or one downgraded at the same address, says nothing: back to JSON).
        let reads_binary = self.newest >= WIRE_BINARY && wire::advertises_binary(resp.headers());
        self.format.store(
            if reads_binary { WIRE_BINARY } else { WIRE_JSON },
            Ordering::Relaxed,
        );
        let status = resp.status();
        let answer_format = wire::check(resp.headers(), self.newest);
        let mut bytes = Vec::with_capacity(
            resp.content_length()
                .map_or(256, |n| (n as usize).min(MAX_ANSWER_BYTES)),
        );
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Err(Failure::Network(format!(
                            "POST {}: answer larger than {MAX_ANSWER_BYTES} bytes",
                            path()
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(Failure::Timeout(timeout)),
                Err(e) => return Err(Failure::Network(format!("POST {}: {e}", path()))),
            }
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(Failure::Unreachable(format!(
                "POST {}: HTTP {status}: {}",
                path(),
                text.chars().take(200).collect::<String>()
            )));
        }
        // An answer in a body format this node does not know is refused, not guessed at.
        let answer_format =
            answer_format.map_err(|e| Failure::Network(format!("POST {}: {e}", path())))?;
        Ok((answer_format, bytes))
    }
}

fn req_path(route: Route) -> &'static str {
    match route {
        Route::Append => "/raft/append",
        Route::Vote => "/raft/vote",
        Route::Chunk => "/raft/snapshot-chunk",
    }
}

/// Decodes an answer in `version`: JSON, or the binary layout `binary` reads.
fn decode_answer<T: DeserializeOwned>(
    route: Route,
    version: u8,
    bytes: &[u8],
    binary: fn(&[u8]) -> Result<T, CodecError>,
) -> Result<T, Failure> {
    let decoded = if version == WIRE_BINARY {
        binary(bytes).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    };
    decoded
        .map_err(|e| Failure::Network(format!("POST {}: undecodable answer: {e}", req_path(route))))
}

/// An append that outlives openraft's deadline: what it carries and its running task.
struct InFlight {
    vote: Vote,
    prev: Option<LogId>,
    last: Option<LogId>,
    task: JoinHandle<Result<AppendResult, Failure>>,
}

/// The connection to one peer.
pub struct Network {
    factory: NetworkFactory,
    target: NodeId,
    base: String,
    peer: Arc<Peer>,
    /// The append (with entries) currently running, if any.
    inflight: Option<InFlight>,
    /// The keepalive sent while `inflight` runs long, if any.
    keepalive: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("target", &self.target)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // A replication stream that ends (leader change, node removed) takes its transfers along.
        if let Some(f) = self.inflight.take() {
            f.task.abort();
        }
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
    }
}

/// How one exchange failed, before mapping to openraft's error types.
#[derive(Debug)]
enum Failure {
    Timeout(Duration),
    Unreachable(String),
    Network(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

type AppendResult = AppendAnswer;

/// Encodes an append in `version` (entries found in `records` go as their stored records).
fn encode_append(
    rpc: &AppendEntriesRequest<TypeConfig>,
    version: u8,
    records: Option<&SharedCache>,
) -> Result<Vec<u8>, Failure> {
    let encoded = if version == WIRE_BINARY {
        match records {
            Some(cache) => {
                let cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                rpc_codec::encode_append(rpc, |e| cache.record(&e.log_id))
            }
            None => rpc_codec::encode_append(rpc, |_| None),
        }
    } else {
        serde_json::to_vec(rpc)
    };
    encoded.map_err(|e| Failure::Network(format!("cannot encode the append: {e}")))
}

/// Sends one append and decodes its answer.
async fn send_append(
    peer: Arc<Peer>,
    version: u8,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<AppendResult, Failure> {
    let (format, bytes) = peer.exchange(Route::Append, version, body, timeout).await?;
    decode_answer(
        Route::Append,
        format,
        &bytes,
        rpc_codec::decode_append_answer,
    )
}

impl Network {
    fn timeout_err(&self, action: RPCTypes, timeout: Duration) -> Timeout<NodeId> {
        Timeout {
            action,
            id: self.factory.id,
            target: self.target,
            timeout,
        }
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        failure: Failure,
        action: RPCTypes,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        match failure {
            Failure::Timeout(t) => RPCError::Timeout(self.timeout_err(action, t)),
            Failure::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Message(m))),
            Failure::Network(m) => RPCError::Network(NetworkError::new(&Message(m))),
        }
    }

    fn remote<T, E: std::error::Error>(
        &self,
        res: Result<Result<T, RaftError<NodeId, E>>, Failure>,
        action: RPCTypes,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let peers = &self.factory.peers;
        match res {
            Ok(Ok(v)) => {
                peers.succeeded(self.target, &self.base);
                Ok(v)
            }
            Ok(Err(remote)) => {
                peers.succeeded(self.target, &self.base);
                Err(RPCError::RemoteError(RemoteError::new(self.target, remote)))
            }
            Err(f) => {
                let error = match &f {
                    Failure::Timeout(t) => format!("no answer within {t:?}"),
                    Failure::Unreachable(m) | Failure::Network(m) => m.clone(),
                };
                peers.failed(self.target, &self.base, &error);
                Err(self.rpc_error(f, action))
            }
        }
    }

    /// Refuses an answer whose vote is absurdly far above the vote we sent.
    fn sane_answer(&self, sent: &Vote, answered: &Vote) -> Result<(), Failure> {
        check_answer_vote(sent, answered, self.factory.settings.max_term_jump)
            .map_err(|r| Failure::Network(format!("peer {} answered: {r}", self.target)))
    }

    fn short_timeout(&self, option: &RPCOption) -> Duration {
        self.factory.settings.rpc_timeout.min(option.hard_ttl())
    }

    /// Starts the detached task of an append with entries.
    fn spawn_append(&self, rpc: &AppendEntriesRequest<TypeConfig>) -> Result<InFlight, Failure> {
        let version = self.peer.format();
        let body = encode_append(rpc, version, self.factory.records.as_ref())?;
        let timeout = self.factory.payload_timeout(body.len());
        let task = tokio::spawn(send_append(self.peer.clone(), version, body, timeout));
        Ok(InFlight {
            vote: rpc.vote,
            prev: rpc.prev_log_id,
            last: rpc.entries.last().map(|e| e.log_id),
            task,
        })
    }

    /// An empty append with the same vote, `prev_log_id` and commit point (what openraft's own
    /// heartbeat sends): keeps the follower's election timer from expiring while a long append
    /// runs. At most one at a time; its answer is not needed (the running append brings the
    /// same news).
    fn send_keepalive(&mut self, rpc: &AppendEntriesRequest<TypeConfig>) {
        if self.keepalive.as_ref().is_some_and(|k| !k.is_finished()) {
            return;
        }
        let beat: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
            vote: rpc.vote,
            prev_log_id: rpc.prev_log_id,
            entries: Vec::new(),
            leader_commit: rpc.leader_commit,
        };
        let version = self.peer.format();
        let Ok(body) = encode_append(&beat, version, None) else {
            return;
        };
        let timeout = self.factory.settings.rpc_timeout;
        let peer = self.peer.clone();
        self.keepalive = Some(tokio::spawn(async move {
            let _: Result<AppendResult, Failure> = send_append(peer, version, body, timeout).await;
        }));
    }

    /// Sends an append with entries, or joins the one already running for the same range.
    async fn append_detached(
        &mut self,
        rpc: &AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendResult, Failure> {
        let last = rpc.entries.last().map(|e| e.log_id);
        let joins = self
            .inflight
            .as_ref()
            .is_some_and(|f| f.vote == rpc.vote && f.prev == rpc.prev_log_id && f.last <= last);
        if joins {
            // openraft gave up on the previous call and asks again: let the running transfer
            // finish, and keep the follower from starting an election meanwhile.
            self.send_keepalive(rpc);
        } else {
            if let Some(old) = self.inflight.take() {
                old.task.abort();
            }
            self.inflight = Some(self.spawn_append(rpc)?);
        }
        let Some(flight) = self.inflight.as_mut() else {
            return Err(Failure::Network("append task missing".into()));
        };
        // If openraft's deadline drops this future here, the task keeps running and the next
        // call for the same range picks its answer up.
        let joined = (&mut flight.task).await;
        let carried = flight.last;
        self.inflight = None;
        let resp = match joined {
            Ok(Ok(Ok(resp))) => resp,
            Ok(Ok(Err(remote))) => return Ok(Err(remote)),
            Ok(Err(failure)) => return Err(failure),
            Err(e) => return Err(Failure::Network(format!("append task ended: {e}"))),
        };
        if let AppendEntriesResponse::HigherVote(v) = &resp {
            self.sane_answer(&rpc.vote, v)?;
        }
        Ok(Ok(match resp {
            AppendEntriesResponse::Success if carried < last => {
                AppendEntriesResponse::PartialSuccess(carried)
            }
            other => other,
        }))
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        if rpc.entries.is_empty() {
            // A heartbeat: small, and openraft sends the next one soon anyway.
            let timeout = self.short_timeout(&option);
            let version = self.peer.format();
            let res = match encode_append(&rpc, version, None) {
                Ok(body) => send_append(self.peer.clone(), version, body, timeout).await,
                Err(e) => Err(e),
            };
            let res = match res {
                Ok(Ok(AppendEntriesResponse::HigherVote(v))) => self
                    .sane_answer(&rpc.vote, &v)
                    .map(|()| Ok(AppendEntriesResponse::HigherVote(v))),
                other => other,
            };
            return self.remote(res, RPCTypes::AppendEntries);
        }
        let res = self.append_detached(&rpc).await;
        self.remote(res, RPCTypes::AppendEntries)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        // One chunk of `full_snapshot` (openraft's chunked transport calls this).
        let version = self.peer.format();
        let body = if version == WIRE_BINARY {
            rpc_codec::encode_chunk(&rpc)
        } else {
            serde_json::to_vec(&SnapshotChunk::encode(&rpc))
        };
        let res: Result<ChunkAnswer, Failure> = match body {
            Ok(body) => {
                let timeout = self
                    .factory
                    .payload_timeout(body.len())
                    .min(option.hard_ttl())
                    .min(self.factory.settings.snapshot_timeout);
                match self
                    .peer
                    .exchange(Route::Chunk, version, body, timeout)
                    .await
                {
                    Ok((format, bytes)) => {
                        decode_answer(Route::Chunk, format, &bytes, rpc_codec::decode_chunk_answer)
                    }
                    Err(f) => Err(f),
                }
            }
            Err(e) => Err(Failure::Network(format!("cannot encode the chunk: {e}"))),
        };
        let res = match res {
            Ok(Ok(resp)) => self.sane_answer(&rpc.vote, &resp.vote).map(|()| Ok(resp)),
            other => other,
        };
        self.remote(res, RPCTypes::InstallSnapshot)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let timeout = self.short_timeout(&option);
        let version = self.peer.format();
        let body = if version == WIRE_BINARY {
            Ok(rpc_codec::encode_vote_request(&rpc))
        } else {
            serde_json::to_vec(&rpc)
                .map_err(|e| Failure::Network(format!("cannot encode the vote: {e}")))
        };
        let res: Result<VoteAnswer, Failure> = match body {
            Ok(body) => match self
                .peer
                .exchange(Route::Vote, version, body, timeout)
                .await
            {
                Ok((format, bytes)) => {
                    decode_answer(Route::Vote, format, &bytes, rpc_codec::decode_vote_answer)
                }
                Err(f) => Err(f),
            },
            Err(f) => Err(f),
        };
        let res = match res {
            Ok(Ok(resp)) => self.sane_answer(&rpc.vote, &resp.vote).map(|()| Ok(resp)),
            other => other,
        };
        self.remote(res, RPCTypes::Vote)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        // openraft's chunked transport: `install_snapshot` per chunk, each under its own deadline,
        // retried a few times on transient failures.
        Chunked::send_snapshot(self, vote, snapshot, cancel, option).await
    }

    fn backoff(&self) -> Backoff {
        // Retry an unreachable peer much faster than openraft's 500 ms default: a restarted node
        // must catch up before a second failure could make it campaign with a stale log (see
        // docs/raft.md); ten connection attempts a second to a dead peer cost nothing.
        Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::auth::PEER_SECRET_HEADER;
    use axum::body::Bytes;
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::Router;
    use openraft::{CommittedLeaderId, EntryPayload};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::net::TcpListener;
    use varpulis_cluster::Command;

    async fn serve(app: Router) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        url
    }

    fn settings(rpc_timeout: Duration) -> NetworkSettings {
        NetworkSettings {
            credentials: Credentials::new(Some("peer".into()), Some("k".into())),
            rpc_timeout,
            snapshot_timeout: Duration::from_secs(5),
            min_throughput_bytes_per_sec: 1024 * 1024,
            max_term_jump: 1000,
            tls: varpulis_tls::ClientTls::none(),
            max_wire_format: wire::WIRE_NEWEST,
        }
    }

    async fn client(url: &str, rpc_timeout: Duration) -> Network {
        let mut factory = NetworkFactory::new(1, settings(rpc_timeout)).unwrap();
        factory.new_client(2, &BasicNode::new(url)).await
    }

    async fn vote_to(
        url: &str,
        rpc_timeout: Duration,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId>> {
        let mut net = client(url, rpc_timeout).await;
        let req = VoteRequest::new(Vote::new(1, 1), None);
        net.vote(req, RPCOption::new(Duration::from_secs(5)))
            .await
            .unwrap_err()
    }

    fn entries(n: u64, bytes: usize) -> Vec<crate::types::Entry> {
        (1..=n)
            .map(|i| crate::types::Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                payload: EntryPayload::Normal(Command::DeleteConnector {
                    name: "x".repeat(bytes),
                }),
            })
            .collect()
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let err = vote_to(&url, Duration::from_secs(1)).await;
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn rejected_key_is_unreachable_so_openraft_backs_off() {
        let url =
            serve(Router::new().route("/raft/vote", post(|| async { StatusCode::UNAUTHORIZED })))
                .await;
        let err = vote_to(&url, Duration::from_secs(1)).await;
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn slow_peer_is_a_timeout() {
        let url = serve(Router::new().route(
            "/raft/vote",
            post(|| async {
                // A peer that hangs: longer than the RPC timeout below.
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        ))
        .await;
        let err = vote_to(&url, Duration::from_millis(100)).await;
        assert!(matches!(err, RPCError::Timeout(_)), "{err:?}");
    }

    #[tokio::test]
    async fn undecodable_answer_is_a_network_error() {
        let url = serve(Router::new().route("/raft/vote", post(|| async { "not json" }))).await;
        let err = vote_to(&url, Duration::from_secs(1)).await;
        assert!(matches!(err, RPCError::Network(_)), "{err:?}");
    }

    #[tokio::test]
    async fn an_absurd_vote_in_an_answer_is_a_network_error() {
        let url = serve(Router::new().route(
            "/raft/vote",
            post(|| async {
                let resp: Result<VoteResponse<NodeId>, RaftError<NodeId>> = Ok(VoteResponse {
                    vote: Vote::new(u64::MAX, 2),
                    vote_granted: false,
                    last_log_id: None,
                });
                axum::Json(resp)
            }),
        ))
        .await;
        let err = vote_to(&url, Duration::from_secs(1)).await;
        assert!(matches!(err, RPCError::Network(_)), "{err:?}");
    }

    #[tokio::test]
    async fn sends_the_peer_secret_and_the_api_key() {
        let url = serve(Router::new().route(
            "/raft/vote",
            post(|headers: axum::http::HeaderMap| async move {
                let secret = headers.get(PEER_SECRET_HEADER).map(|v| v.as_bytes()) == Some(b"peer");
                let key = headers.get(API_KEY_HEADER).map(|v| v.as_bytes()) == Some(b"k");
                let status = if secret && key {
                    StatusCode::IM_A_TEAPOT
                } else {
                    StatusCode::UNAUTHORIZED
                };
                (status, "")
            }),
        ))
        .await;
        let err = vote_to(&url, Duration::from_secs(1)).await;
        assert!(err.to_string().contains("418"), "{err}");
    }

    /// A peer that reads format 2 gets it once its answers advertised it; when it stops
    /// advertising (an older binary at the same address), one refused request later it gets
    /// JSON again.
    #[tokio::test]
    async fn binary_goes_only_to_a_peer_that_advertised_it() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let old = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, o) = (seen.clone(), old.clone());
        let url = serve(Router::new().route(
            "/raft/vote",
            post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let (s, o) = (s.clone(), o.clone());
                async move {
                    use axum::response::IntoResponse;
                    let v = headers
                        .get(wire::FORMAT_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_string();
                    s.lock().unwrap().push(v.clone());
                    if o.load(Ordering::SeqCst) {
                        // What a binary older than format 2 answers.
                        if v == "2" {
                            return (StatusCode::BAD_REQUEST, "format version \"2\"")
                                .into_response();
                        }
                        let req: VoteRequest<NodeId> = serde_json::from_slice(&body).unwrap();
                        let answer: VoteAnswer = Ok(VoteResponse {
                            vote: req.vote,
                            vote_granted: true,
                            last_log_id: None,
                        });
                        return axum::Json(answer).into_response();
                    }
                    let req: VoteRequest<NodeId> = if v == "2" {
                        rpc_codec::decode_vote_request(&body).unwrap()
                    } else {
                        serde_json::from_slice(&body).unwrap()
                    };
                    let answer: VoteAnswer = Ok(VoteResponse {
                        vote: req.vote,
                        vote_granted: true,
                        last_log_id: None,
                    });
                    let mut resp = if v == "2" {
                        let mut r = rpc_codec::encode_vote_answer(&answer).into_response();
                        r.headers_mut().insert(
                            wire::FORMAT_HEADER,
                            HeaderValue::from_static(wire::WIRE_BINARY_STR),
                        );
                        r
                    } else {
                        axum::Json(answer).into_response()
                    };
                    resp.headers_mut().insert(
                        wire::ACCEPT_HEADER,
                        HeaderValue::from_static(wire::ACCEPT_BINARY),
                    );
                    resp
                }
            }),
        ))
        .await;
        let mut factory = NetworkFactory::new(1, settings(Duration::from_secs(1))).unwrap();
        let mut net = factory.new_client(2, &BasicNode::new(&url)).await;
        let vote = || VoteRequest::new(Vote::new(1, 1), None);
        let opt = || RPCOption::new(Duration::from_secs(5));
        assert_eq!(factory.format_for(2), WIRE_JSON);
        assert!(net.vote(vote(), opt()).await.unwrap().vote_granted);
        assert_eq!(factory.format_for(2), WIRE_BINARY);
        assert!(net.vote(vote(), opt()).await.unwrap().vote_granted);
        old.store(true, Ordering::SeqCst);
        let err = net.vote(vote(), opt()).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
        assert_eq!(factory.format_for(2), WIRE_JSON);
        assert!(net.vote(vote(), opt()).await.unwrap().vote_granted);
        assert_eq!(*seen.lock().unwrap(), vec!["1", "2", "2", "1"]);

        // A node pinned to JSON never sends version 2, whatever the peer advertises.
        old.store(false, Ordering::SeqCst);
        let mut pinned = settings(Duration::from_secs(1));
        pinned.max_wire_format = WIRE_JSON;
        let mut factory = NetworkFactory::new(1, pinned).unwrap();
        let mut net = factory.new_client(2, &BasicNode::new(&url)).await;
        for _ in 0..2 {
            assert!(net.vote(vote(), opt()).await.unwrap().vote_granted);
        }
        assert_eq!(seen.lock().unwrap()[4..], ["1", "1"]);
    }

    #[test]
    fn deadlines_grow_with_the_payload() {
        let f = NetworkFactory::new(1, settings(Duration::from_secs(1))).unwrap();
        assert_eq!(f.payload_timeout(0), Duration::from_secs(1));
        assert_eq!(f.payload_timeout(4 * 1024 * 1024), Duration::from_secs(5));
    }

    /// A follower that needs longer than openraft's deadline to answer an append: the retries
    /// join the running transfer (one request reaches the follower, not one per retry), a
    /// longer retry gets a partial success, and keepalives reach it meanwhile.
    #[tokio::test]
    async fn a_slow_append_survives_openraft_deadlines_and_is_sent_once() {
        let appends = Arc::new(AtomicUsize::new(0));
        let beats = Arc::new(AtomicUsize::new(0));
        let (a, b) = (appends.clone(), beats.clone());
        let url = serve(Router::new().route(
            "/raft/append",
            post(
                move |axum::Json(req): axum::Json<AppendEntriesRequest<TypeConfig>>| {
                    let (a, b) = (a.clone(), b.clone());
                    async move {
                        if req.entries.is_empty() {
                            b.fetch_add(1, Ordering::SeqCst);
                        } else {
                            a.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(400)).await;
                        }
                        let resp: AppendResult = Ok(AppendEntriesResponse::Success);
                        axum::Json(resp)
                    }
                },
            ),
        ))
        .await;
        let mut net = client(&url, Duration::from_secs(2)).await;
        let vote = Vote::new_committed(1, 1);
        let first: Vec<_> = entries(3, 10);
        let rpc = |entries: Vec<crate::types::Entry>| AppendEntriesRequest {
            vote,
            prev_log_id: None,
            entries,
            leader_commit: None,
        };
        let ttl = Duration::from_millis(50);
        let mut answer = None;
        for attempt in 0..40 {
            // Later retries ask for more entries than the running transfer carries.
            let n = if attempt == 0 { 3 } else { 5 };
            let req = rpc(if n == 3 {
                first.clone()
            } else {
                entries(5, 10)
            });
            match tokio::time::timeout(ttl, net.append_entries(req, RPCOption::new(ttl))).await {
                Ok(res) => {
                    answer = Some(res.unwrap());
                    break;
                }
                Err(_) => continue,
            }
        }
        let answer = answer.expect("the append completed");
        assert_eq!(
            answer,
            AppendEntriesResponse::PartialSuccess(Some(first[2].log_id))
        );
        assert_eq!(appends.load(Ordering::SeqCst), 1, "sent once");
        assert!(
            beats.load(Ordering::SeqCst) >= 1,
            "keepalives while waiting"
        );
    }

    #[tokio::test]
    async fn a_different_range_replaces_the_running_append() {
        let appends = Arc::new(AtomicUsize::new(0));
        let a = appends.clone();
        let url = serve(Router::new().route(
            "/raft/append",
            post(
                move |axum::Json(req): axum::Json<AppendEntriesRequest<TypeConfig>>| {
                    let a = a.clone();
                    async move {
                        if !req.entries.is_empty() {
                            a.fetch_add(1, Ordering::SeqCst);
                            if req.prev_log_id.is_none() {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            }
                        }
                        let resp: AppendResult = Ok(AppendEntriesResponse::Success);
                        axum::Json(resp)
                    }
                },
            ),
        ))
        .await;
        let mut net = client(&url, Duration::from_secs(10)).await;
        let vote = Vote::new_committed(1, 1);
        let all = entries(4, 10);
        let ttl = Duration::from_millis(50);
        let stuck = AppendEntriesRequest {
            vote,
            prev_log_id: None,
            entries: all.clone(),
            leader_commit: None,
        };
        let r = tokio::time::timeout(ttl, net.append_entries(stuck, RPCOption::new(ttl))).await;
        assert!(r.is_err(), "the first append is still running");
        let moved = AppendEntriesRequest {
            vote,
            prev_log_id: Some(all[1].log_id),
            entries: all[2..].to_vec(),
            leader_commit: None,
        };
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            net.append_entries(moved, RPCOption::new(ttl)),
        )
        .await
        .expect("the new range is sent at once")
        .unwrap();
        assert_eq!(r, AppendEntriesResponse::Success);
        assert_eq!(appends.load(Ordering::SeqCst), 2);
    }
}
