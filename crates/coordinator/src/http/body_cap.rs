//! Body caps tighter than the server-wide body limit, for routes whose input is small by
//! nature: a worker registration is bounded by its fields' limits
//! ([`varpulis_cluster::Limits::registration_body_bytes`]), so a 9 MB registration is refused
//! with `413 limit_exceeded` before its JSON is parsed.
//!
//! The body is read (up to the server-wide limit) before the refusal: answering while the client
//! is still sending would reset its connection instead of giving it the answer.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::node::AppState;

/// Middleware of `POST /api/v1/cluster/workers/register`.
pub async fn cap_registration(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, state.config.body_limit).await {
        Ok(b) => b,
        Err(_) => return ApiError::PayloadTooLarge.into_response(),
    };
    if let Err(refused) =
        varpulis_cluster::limits::check_registration_body(&state.config.limits, bytes.len())
    {
        return ApiError::from(refused).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
