//! Inbound Raft HTTP routes: peer RPCs (`/raft/vote`, `/raft/append`, `/raft/snapshot-chunk`,
//! `/raft/elect` (a leader handing over), and `/raft/snapshot` and `/raft/install-snapshot` for
//! older senders), admin calls (`/raft/add-learner`, `/raft/change-membership`,
//! `/raft/remove-node`, `/raft/transfer-leader`) and `GET /raft/metrics`.
//!
//! Access ([`crate::auth`]): peer RPCs need the peer secret (`x-varpulis-peer-secret`), or the
//! cluster API key when no peer secret is configured, or a peer certificate recognised by the
//! TLS layer; admin calls need the API key; `GET /raft/metrics` is open. Refusals answer `401`
//! before the body is read. Peer requests then pass [`crate::guard`] (absurd terms, strangers,
//! malformed entries: `400`/`403` with codes `term_out_of_range`, `not_a_member`,
//! `bad_request`) before openraft sees them. A peer request naming a body format version this
//! node cannot read ([`crate::wire`]) is refused with `400 bad_request`; every peer answer
//! names its own (`x-varpulis-raft-format`) and the versions this node reads
//! (`x-varpulis-raft-formats: 1,2`). `/raft/vote`, `/raft/append` and `/raft/snapshot-chunk`
//! read JSON (version 1) and binary (version 2, [`crate::rpc_codec`]) bodies and answer in the
//! version of the request; the body is decoded straight from its bytes. Peer RPC answers are
//! openraft's `Result` (JSON, or the binary layout), so remote Raft errors cross the wire
//! intact. Admin calls must reach the leader: a
//! follower answers `421` with `{"code": "not_leader", "leader_id", "leader_url"}` (the
//! coordinator's proxy layer, or the client, retries there), and `503` with `Retry-After` when no
//! leader is known. Errors are [`ErrorBody`]s whose status is their code's
//! (`crate::error` maps each error to its code).

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use varpulis_api::raft::{
    AddLearnerRequest, ChangeMembershipRequest, ElectRequest, RemoveNodeRequest,
    TransferLeaderRequest,
};
use varpulis_api::{Code, ErrorBody};

use crate::auth::{Access, PeerCertificate};
use crate::error::{Error, WriteError};
use crate::guard::Refusal;
use crate::network::{FullSnapshotRequest, SnapshotChunk};
use crate::node::{PreVoteRequest, RaftNode};
use crate::rpc_codec;
use crate::types::{NodeId, Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::wire::{self, WIRE_BINARY};

/// Largest accepted Raft RPC body. Appends are bounded by `max_append_bytes` (one larger entry
/// travels alone) and snapshots travel in chunks, but an older peer sends a whole snapshot in
/// one `POST /raft/snapshot`. Only authenticated peers get past the check to the body.
const MAX_RAFT_BODY: usize = 512 * 1024 * 1024;

/// The `/raft/*` router of `node`; merge it into the coordinator's API router.
pub fn router(node: RaftNode) -> Router {
    let peer = Router::new()
        .route("/raft/vote", post(vote))
        .route("/raft/append", post(append))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/snapshot-chunk", post(snapshot_chunk))
        .route("/raft/install-snapshot", post(install_snapshot_chunk))
        .route("/raft/elect", post(elect))
        .route("/raft/pre-vote", post(pre_vote))
        .route_layer(middleware::from_fn_with_state(node.clone(), wire_format))
        .route_layer(middleware::from_fn_with_state(node.clone(), require_peer))
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY));
    let admin = Router::new()
        .route("/raft/add-learner", post(add_learner))
        .route("/raft/change-membership", post(change_membership))
        .route("/raft/remove-node", post(remove_node))
        .route("/raft/transfer-leader", post(transfer_leader))
        .route_layer(middleware::from_fn_with_state(node.clone(), require_admin));
    Router::new()
        .route("/raft/metrics", get(metrics))
        .merge(peer)
        .merge(admin)
        .with_state(node)
}

async fn require_peer(State(node): State<RaftNode>, req: Request, next: Next) -> Response {
    let certificate = req.extensions().get::<PeerCertificate>();
    if node
        .credentials()
        .allows(Access::Peer, req.headers(), certificate)
    {
        next.run(req).await
    } else {
        let what = if node.credentials().has_peer_secret() {
            "missing or invalid x-varpulis-peer-secret (raft peer RPCs need the peer secret)"
        } else {
            "missing or invalid x-api-key"
        };
        error_response(ErrorBody::new(Code::Unauthorized, what))
    }
}

/// The body format version of a peer request ([`crate::wire`]), set by [`wire_format`].
#[derive(Debug, Clone, Copy)]
struct WireVersion(u8);

/// Refuses a peer request whose body is in a format version this node cannot read
/// ([`crate::wire`]); hands the version to the handler; labels every answer with the version of
/// its body (JSON unless the handler answered in binary) and the versions this node reads.
async fn wire_format(State(node): State<RaftNode>, mut req: Request, next: Next) -> Response {
    let newest = node.config().max_wire_format.min(wire::WIRE_NEWEST);
    let mut response = match wire::check(req.headers(), newest) {
        Ok(version) => {
            req.extensions_mut().insert(WireVersion(version));
            next.run(req).await
        }
        Err(e) => error_response(ErrorBody::new(Code::BadRequest, e.to_string())),
    };
    let headers = response.headers_mut();
    if !headers.contains_key(wire::FORMAT_HEADER) {
        headers.insert(
            wire::FORMAT_HEADER,
            header::HeaderValue::from_static(wire::WIRE_JSON_STR),
        );
    }
    if newest >= WIRE_BINARY {
        headers.insert(
            wire::ACCEPT_HEADER,
            header::HeaderValue::from_static(wire::ACCEPT_BINARY),
        );
    }
    response
}

/// An answer in the request's format: binary (version 2) or JSON.
fn answer<T: serde::Serialize>(version: u8, value: &T, binary: fn(&T) -> Vec<u8>) -> Response {
    if version != WIRE_BINARY {
        return Json(value).into_response();
    }
    let mut response = binary(value).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(wire::CONTENT_TYPE_BINARY),
    );
    headers.insert(
        wire::FORMAT_HEADER,
        header::HeaderValue::from_static(wire::WIRE_BINARY_STR),
    );
    response
}

/// A version-2 body that does not decode.
fn bad_binary(what: &str, e: crate::codec::CodecError) -> Response {
    error_response(ErrorBody::new(
        Code::BadRequest,
        format!("undecodable binary {what} (raft wire format 2): {e}"),
    ))
}

async fn require_admin(State(node): State<RaftNode>, req: Request, next: Next) -> Response {
    if node
        .credentials()
        .allows(Access::Admin, req.headers(), None)
    {
        next.run(req).await
    } else {
        error_response(ErrorBody::new(
            Code::Unauthorized,
            "missing or invalid x-api-key",
        ))
    }
}

/// Milliseconds of the last refusal log line (at most one a second: a flood of forged requests
/// must not flood the log too).
static LAST_REFUSAL_LOG_MS: AtomicU64 = AtomicU64::new(0);

/// Answers a request [`crate::guard`] refused, and logs it (rate-limited).
fn refuse(node: &RaftNode, rpc: &str, refusal: Refusal) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let last = LAST_REFUSAL_LOG_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 1000
        && LAST_REFUSAL_LOG_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            node_id = node.id(),
            rpc,
            "refused a raft request: {refusal}"
        );
    }
    error_response(ErrorBody::new(refusal.code(), refusal.to_string()))
}

/// Refuses a snapshot chunk that would grow the received snapshot beyond the node's cap.
fn snapshot_too_large(node: &RaftNode, end: u64) -> Option<Response> {
    let max = node.config().max_snapshot_bytes;
    (end > max).then(|| {
        error_response(ErrorBody::new(
            Code::PayloadTooLarge,
            format!("snapshot of more than {max} bytes refused (raft max_snapshot_bytes)"),
        ))
    })
}

/// `body` with its code's status; a retryable (503) answer says `Retry-After: 1`.
fn error_response(body: ErrorBody) -> Response {
    let status = StatusCode::from_u16(body.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry = body.code.is_retryable();
    let mut response = (status, Json(body)).into_response();
    if retry {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

fn bad_json(rej: JsonRejection) -> Response {
    error_response(ErrorBody::new(Code::BadRequest, rej.body_text()))
}

/// The HTTP answer of a write failure (421, 503 with `Retry-After`, 500).
pub fn write_error_response(err: &WriteError) -> Response {
    error_response(err.to_body())
}

fn admin_error_response(err: &Error) -> Response {
    error_response(err.to_body())
}

async fn vote(
    State(node): State<RaftNode>,
    Extension(WireVersion(version)): Extension<WireVersion>,
    body: Bytes,
) -> Response {
    let req: VoteRequest<NodeId> = if version == WIRE_BINARY {
        match rpc_codec::decode_vote_request(&body) {
            Ok(req) => req,
            Err(e) => return bad_binary("vote request", e),
        }
    } else {
        match Json::from_bytes(&body) {
            Ok(Json(req)) => req,
            Err(rej) => return bad_json(rej),
        }
    };
    if let Err(refusal) = node.guard_view().check_vote(&req) {
        return refuse(&node, "vote", refusal);
    }
    let answer = node.raft().vote(req).await;
    if answer.as_ref().is_ok_and(|a| a.vote_granted) {
        // Granting a vote restarts this node's silence (pre-vote): the candidate is about to
        // lead, no need to compete with it.
        node.note_contact();
    }
    self::answer(version, &answer, rpc_codec::encode_vote_answer)
}

async fn append(
    State(node): State<RaftNode>,
    Extension(WireVersion(version)): Extension<WireVersion>,
    body: Bytes,
) -> Response {
    let (req, records): (AppendEntriesRequest<TypeConfig>, _) = if version == WIRE_BINARY {
        match rpc_codec::decode_append(&body) {
            Ok(decoded) => (decoded.request, decoded.records),
            Err(e) => return bad_binary("append request", e),
        }
    } else {
        match Json::from_bytes(&body) {
            Ok(Json(req)) => (req, Vec::new()),
            Err(rej) => return bad_json(rej),
        }
    };
    drop(body);
    if let Err(refusal) = node.guard_view().check_append(&req) {
        return refuse(&node, "append", refusal);
    }
    // The log store stores these records as they are when openraft appends their entries.
    node.offer_received(records);
    // Contact with the leader counts from the arrival: a slow flush must not look like silence.
    node.note_append(&req.vote);
    let answer = node.raft().append_entries(req).await;
    if answer
        .as_ref()
        .is_ok_and(|a| !matches!(a, AppendEntriesResponse::HigherVote(_)))
    {
        node.note_contact();
    }
    self::answer(version, &answer, rpc_codec::encode_append_answer)
}

/// Checks and installs one chunk (openraft assembles the chunks of one snapshot id); answers in
/// `version`.
async fn receive_chunk(
    node: &RaftNode,
    req: InstallSnapshotRequest<TypeConfig>,
    version: u8,
) -> Response {
    if let Err(refusal) = node.guard_view().check_snapshot(&req.vote, &req.meta) {
        return refuse(node, "snapshot-chunk", refusal);
    }
    let end = req.offset.saturating_add(req.data.len() as u64);
    if let Some(refused) = snapshot_too_large(node, end) {
        return refused;
    }
    let answer = node.raft().install_snapshot(req).await;
    self::answer(version, &answer, rpc_codec::encode_chunk_answer)
}

async fn snapshot_chunk(
    State(node): State<RaftNode>,
    Extension(WireVersion(version)): Extension<WireVersion>,
    body: Bytes,
) -> Response {
    if version == WIRE_BINARY {
        return match rpc_codec::decode_chunk(&body) {
            Ok(req) => receive_chunk(&node, req, version).await,
            Err(e) => bad_binary("snapshot chunk", e),
        };
    }
    let Json(chunk): Json<SnapshotChunk> = match Json::from_bytes(&body) {
        Ok(b) => b,
        Err(rej) => return bad_json(rej),
    };
    match chunk.decode() {
        Ok(req) => receive_chunk(&node, req, version).await,
        Err(e) => error_response(ErrorBody::new(
            Code::BadRequest,
            format!("snapshot chunk data: {e}"),
        )),
    }
}

async fn install_snapshot_chunk(
    State(node): State<RaftNode>,
    body: Result<Json<InstallSnapshotRequest<TypeConfig>>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(req)) => receive_chunk(&node, req, wire::WIRE_JSON).await,
        Err(rej) => bad_json(rej),
    }
}

async fn snapshot(
    State(node): State<RaftNode>,
    body: Result<Json<FullSnapshotRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(rej) => return bad_json(rej),
    };
    let (vote, meta): (&Vote, &SnapshotMeta) = (&req.vote, &req.meta);
    if let Err(refusal) = node.guard_view().check_snapshot(vote, meta) {
        return refuse(&node, "snapshot", refusal);
    }
    let data = match req.decode_data() {
        Ok(d) => d,
        Err(e) => {
            return error_response(ErrorBody::new(
                Code::BadRequest,
                format!("snapshot data: {e}"),
            ))
        }
    };
    if let Some(refused) = snapshot_too_large(&node, data.len() as u64) {
        return refused;
    }
    let snap = Snapshot {
        meta: req.meta,
        snapshot: Box::new(Cursor::new(data)),
    };
    Json(node.raft().install_full_snapshot(req.vote, snap).await).into_response()
}

async fn add_learner(
    State(node): State<RaftNode>,
    body: Result<Json<AddLearnerRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(rej) => return bad_json(rej),
    };
    if !(req.address.starts_with("http://") || req.address.starts_with("https://")) {
        return error_response(ErrorBody::new(
            Code::BadRequest,
            "address must be an http(s) base URL",
        ));
    }
    match node.add_learner(req.node_id, req.address, req.force).await {
        Ok(()) => view_response(node).await,
        Err(e) => admin_error_response(&e),
    }
}

async fn change_membership(
    State(node): State<RaftNode>,
    body: Result<Json<ChangeMembershipRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(rej) => return bad_json(rej),
    };
    let members: BTreeSet<NodeId> = req.members.into_iter().collect();
    if members.is_empty() {
        return error_response(ErrorBody::new(
            Code::BadRequest,
            "members must not be empty",
        ));
    }
    match node.change_membership(members, req.force).await {
        Ok(()) => view_response(node).await,
        Err(e) => admin_error_response(&e),
    }
}

async fn remove_node(
    State(node): State<RaftNode>,
    body: Result<Json<RemoveNodeRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(rej) => return bad_json(rej),
    };
    match node.remove_node(req.node_id, req.force).await {
        Ok(()) => view_response(node).await,
        Err(e) => admin_error_response(&e),
    }
}

/// `POST /raft/transfer-leader` (admin): hands leadership over ([`RaftNode::transfer_leader`]).
/// An empty body lets the leader choose the voter.
async fn transfer_leader(State(node): State<RaftNode>, body: axum::body::Bytes) -> Response {
    let req: TransferLeaderRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TransferLeaderRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(req) => req,
            Err(e) => {
                return error_response(ErrorBody::new(
                    Code::BadRequest,
                    format!("invalid transfer-leader body: {e}"),
                ))
            }
        }
    };
    match node.transfer_leader(req.to).await {
        Ok(done) => Json(done).into_response(),
        Err(e) => admin_error_response(&e),
    }
}

/// `POST /raft/elect` (peer): the leader hands leadership to this node
/// ([`RaftNode::campaign_for_transfer`]).
async fn elect(
    State(node): State<RaftNode>,
    body: Result<Json<ElectRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(rej) => return bad_json(rej),
    };
    match node.campaign_for_transfer(&req).await {
        Ok(()) => Json(serde_json::json!({"campaigning": true})).into_response(),
        Err(e) => admin_error_response(&e),
    }
}

/// `POST /raft/pre-vote` (peer RPC): would this node vote for the sender now? Changes nothing.
async fn pre_vote(
    State(node): State<RaftNode>,
    body: Result<Json<PreVoteRequest>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(req)) => Json(node.answer_pre_vote(&req)).into_response(),
        Err(rej) => bad_json(rej),
    }
}

async fn metrics(State(node): State<RaftNode>) -> Response {
    view_response(node).await
}

/// The node's metrics view with its state hash. Hashing is proportional to the state (and
/// concurrent callers wait for one computation): it runs on the blocking pool, never on the
/// async workers that also serve the peer RPCs, so anyone polling `GET /raft/metrics` cannot
/// hold up heartbeats.
async fn view_response(node: RaftNode) -> Response {
    match tokio::task::spawn_blocking(move || node.metrics_view()).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => error_response(ErrorBody::new(Code::Internal, format!("metrics task: {e}"))),
    }
}
