//! Inbound Raft HTTP routes: peer RPCs (`/raft/vote`, `/raft/append`, `/raft/snapshot`,
//! `/raft/install-snapshot`), admin calls (`/raft/add-learner`, `/raft/change-membership`) and
//! `GET /raft/metrics`.
//!
//! Every route except `GET /raft/metrics` requires the cluster key (`x-api-key`, compared in
//! constant time) when one is configured. Peer RPC answers are the JSON-encoded openraft
//! `Result`, so remote Raft errors cross the wire intact. Admin calls must reach the leader: a
//! follower answers `421` with `{"code": "not_leader", "leader_id", "leader_url"}` (the
//! coordinator's proxy layer, or the client, retries there), and `503` with `Retry-After` when no
//! leader is known.

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
use varpulis_api::ErrorBody;

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
        error_response(
            StatusCode::UNAUTHORIZED,
            ErrorBody::new("unauthorized", "missing or invalid x-api-key"),
        )
    }
}

fn error_response(status: StatusCode, body: ErrorBody) -> Response {
    (status, Json(body)).into_response()
}

fn bad_json(rej: JsonRejection) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        ErrorBody::new("bad_request", rej.body_text()),
    )
}

/// Maps a write failure to the HTTP answer the cluster API uses (421, 503, 500).
pub fn write_error_response(err: &WriteError) -> Response {
    match err {
        WriteError::ForwardToLeader {
            leader_id,
            leader_url,
        } => {
            let mut body = ErrorBody::new("not_leader", "this node is not the raft leader");
            body.leader_id = *leader_id;
            body.leader_url = leader_url.clone();
            error_response(StatusCode::MISDIRECTED_REQUEST, body)
        }
        WriteError::NoLeader | WriteError::Timeout => {
            let mut resp = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody::new("no_leader", err.to_string()),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            resp
        }
        WriteError::Fatal(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorBody::new("internal", err.to_string()),
        ),
    }
}

fn admin_error_response(err: &Error) -> Response {
    match err {
        Error::Write(w) => write_error_response(w),
        Error::Membership(_) => error_response(
            StatusCode::CONFLICT,
            ErrorBody::new("conflict", err.to_string()),
        ),
        Error::Config(_) => error_response(
            StatusCode::BAD_REQUEST,
            ErrorBody::new("bad_request", err.to_string()),
        ),
        Error::Storage(_) | Error::Raft(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorBody::new("internal", err.to_string()),
        ),
    }
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
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorBody::new("bad_request", format!("snapshot data: {e}")),
            )
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
        return error_response(
            StatusCode::BAD_REQUEST,
            ErrorBody::new("bad_request", "address must be an http(s) base URL"),
        );
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
        return error_response(
            StatusCode::BAD_REQUEST,
            ErrorBody::new("bad_request", "members must not be empty"),
        );
    }
    match node.change_membership(members).await {
        Ok(()) => Json(node.metrics_view()).into_response(),
        Err(e) => admin_error_response(&e),
    }
}

async fn metrics(State(node): State<RaftNode>) -> Response {
    Json(node.metrics_view()).into_response()
}
