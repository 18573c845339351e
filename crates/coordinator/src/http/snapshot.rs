//! `GET /api/v1/cluster/snapshot`: an online backup of the replicated state.
//!
//! The answer is a backup file (`varpulis_raft::snapshot_file`: format version, cluster id,
//! applied index, state hash, counts, checksum, the state). It is taken at a linearizable
//! point: the leader confirms its leadership with a quorum and applies everything committed
//! before the request, then copies its state; a follower forwards the request to the leader
//! (like `?consistent=true` reads). Writes keep committing while the file is produced (the
//! state is copied, then serialized on the blocking pool).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use varpulis_api::FORWARDED_BY_HEADER;
use varpulis_raft::snapshot_file::CONTENT_TYPE;
use varpulis_raft::WriteError;

use crate::error::ApiError;
use crate::http::proxy;
use crate::node::AppState;

/// Header of the answer: the applied index the file reflects.
pub const SNAPSHOT_INDEX_HEADER: &str = "x-varpulis-snapshot-index";

/// `GET /api/v1/cluster/snapshot`.
pub async fn get(State(state): State<AppState>, req: Request) -> Response {
    let forwarded = req.headers().contains_key(FORWARDED_BY_HEADER);
    match state.raft.ensure_linearizable().await {
        Ok(()) => {}
        Err(WriteError::ForwardToLeader {
            leader_id: Some(id),
            leader_url: Some(url),
        }) if !forwarded && id != state.node_id => {
            return proxy::forward(&state, req, id, &url).await;
        }
        Err(err) => return ApiError::from(err).into_response(),
    }
    let (index, bytes) = match state.raft.capture_snapshot().await {
        Ok(captured) => captured,
        Err(err) => return ApiError::Internal(err.to_string()).into_response(),
    };
    tracing::info!(
        bytes = bytes.len(),
        applied_index = ?index,
        "snapshot served"
    );
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"varpulis.snapshot\""),
    );
    if let Some(index) = index {
        headers.insert(
            HeaderName::from_static(SNAPSHOT_INDEX_HEADER),
            HeaderValue::from(index),
        );
    }
    response
}
