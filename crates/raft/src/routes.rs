//! Inbound Raft HTTP routes: peer RPCs (`/raft/vote`, `/raft/append`, `/raft/snapshot`,
//! `/raft/install-snapshot`), admin calls (`/raft/add-learner`, `/raft/change-membership`) and
//! `GET /raft/metrics`.
//!
//! Every route except `GET /raft/metrics` requires the cluster key (`x-api-key`, compared in
//! constant time) when one is configured. Peer RPC answers are the JSON-encoded openraft
//! `Result`, so remote Raft errors cross the wire intact. Admin calls must reach the leader: a
//! follower answers `421` with `{"code": "not_leader", "leader_id", "leader_url"}` (the
//! coordinator's proxy layer, or the client, retries there), and `503` with `Retry-After` when no
//! leader is known. Errors are [`ErrorBody`]s whose status is their code's
//! (`crate::error` maps each error to its code).

use std::collections::BTreeSet;
use std::io::Cursor;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use varpulis_api::raft::{AddLearnerRequest, ChangeMembershipRequest};
use varpulis_api::{Code, ErrorBody};

use crate::error::{Error, WriteError};
use crate::network::FullSnapshotRequest;
use crate::node::RaftNode;
use crate::types::{NodeId, Snapshot, TypeConfig};

/// Largest accepted Raft RPC body (append batches and whole snapshots travel as one request).
const MAX_RAFT_BODY: usize = 512 * 1024 * 1024;

/// The `/raft/*` router of `node`; merge it into the coordinator's API router.
pub fn router(node: RaftNode) -> Router {
    let protected = Router::new()
        .route("/raft/vote", post(vote))
        .route("/raft/append", post(append))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/install-snapshot", post(install_snapshot_chunk))
        .route("/raft/add-learner", post(add_learner))
        .route("/raft/change-membership", post(change_membership))
        .route_layer(middleware::from_fn_with_state(node.clone(), require_key))
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY));
    Router::new()
        .route("/raft/metrics", get(metrics))
        .merge(protected)
        .with_state(node)
}

async fn require_key(State(node): State<RaftNode>, req: Request, next: Next) -> Response {
    if node.authorized(req.headers()) {
        next.run(req).await
    } else {
        error_response(ErrorBody::new(
            Code::Unauthorized,
            "missing or invalid x-api-key",
        ))
    }
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

async fn vote(State(node): State<RaftNode>, Json(req): Json<VoteRequest<NodeId>>) -> Response {
    Json(node.raft().vote(req).await).into_response()
}

async fn append(
    State(node): State<RaftNode>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    Json(node.raft().append_entries(req).await).into_response()
}

async fn install_snapshot_chunk(
    State(node): State<RaftNode>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    Json(node.raft().install_snapshot(req).await).into_response()
}

async fn snapshot(State(node): State<RaftNode>, Json(req): Json<FullSnapshotRequest>) -> Response {
    let data = match req.decode_data() {
        Ok(d) => d,
        Err(e) => {
            return error_response(ErrorBody::new(
                Code::BadRequest,
                format!("snapshot data: {e}"),
            ))
        }
    };
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
    match node.add_learner(req.node_id, req.address).await {
        Ok(()) => Json(node.metrics_view()).into_response(),
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
    match node.change_membership(members).await {
        Ok(()) => Json(node.metrics_view()).into_response(),
        Err(e) => admin_error_response(&e),
    }
}

async fn metrics(State(node): State<RaftNode>) -> Response {
    Json(node.metrics_view()).into_response()
}
