//! Follower → leader forwarding.
//!
//! Writes (and heartbeats, which only the leader tracks) that reach a follower are forwarded to the
//! leader with method, path, query, headers and body preserved, plus `x-varpulis-forwarded-by`; the
//! leader's answer is returned unchanged. A forwarded request is never forwarded again: a node that
//! receives one and is not the leader handles it locally and answers 421 from the Raft error.
//! Leader known but unreachable → 421 `not_leader`; no leader (after a short wait for an election)
//! → 503 with `Retry-After`. Inject routes work on any node and are not forwarded. Reads are local;
//! `?consistent=true` first confirms leadership (`ensure_linearizable`) or is forwarded.
//!
//! `x-varpulis-forwarded-by` is trusted only between peers: with a peer secret configured, the
//! forwarding node also sends `x-varpulis-peer-secret` and a request without it has the header
//! stripped (a client that sets it gets its request handled as any other); without a peer secret,
//! only a value naming another node id counts (docs/security.md).

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::time::{Duration, Instant};
use varpulis_api::{APPLIED_INDEX_HEADER, FORWARDED_BY_HEADER};
use varpulis_raft::{WriteError, PEER_SECRET_HEADER};

use crate::auth::secret_matches;
use crate::error::ApiError;
use crate::http::forward_wire::{self, WireRequest};
use crate::http::forwarder::{self, ForwardFailure};
use crate::metrics::Metrics;
use crate::node::AppState;

/// Headers that belong to one hop and are not copied.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || name == header::HOST || name == header::CONTENT_LENGTH
}

/// Whether the route is served by any node without going through the leader.
fn served_anywhere(path: &str) -> bool {
    path.ends_with("/inject") || path.ends_with("/inject-batch")
}

/// Whether `method` only reads.
fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn wants_consistent(req: &Request) -> bool {
    req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "consistent=true" || kv == "consistent=1")
    })
}

/// Whether `req` was forwarded by a peer (see the module doc); strips an untrusted
/// `x-varpulis-forwarded-by` so that the handler and any further hop never see it.
fn peer_forwarded(state: &AppState, req: &mut Request) -> bool {
    let Some(value) = req.headers().get(FORWARDED_BY_HEADER) else {
        return false;
    };
    let trusted = match state.config.peer_secret.as_deref() {
        Some(secret) => secret_matches(
            req.headers()
                .get(PEER_SECRET_HEADER)
                .and_then(|v| v.to_str().ok()),
            secret,
        ),
        None => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|id| id != state.node_id),
    };
    if !trusted {
        req.headers_mut().remove(FORWARDED_BY_HEADER);
    }
    trusted
}

/// Strips an untrusted `x-varpulis-forwarded-by` from `req`. The console's guard, the
/// outermost service around the whole router (`console::guard::Guard`), calls it first, before
/// anything (its own origin check, the leader gate) looks at the header.
pub fn strip_untrusted_forward(state: &AppState, req: &mut Request) {
    peer_forwarded(state, req);
}

/// Where the leader gate sends a request ([`route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Handled here as it is (a plain read, an inject, a heartbeat on the leader).
    Here,
    /// A write handled here: its answer is stamped with the applied index
    /// ([`with_applied_index`]).
    HereStamped,
    /// Needs the network first ([`gate_slow`]): a linearizable read, or a write on a follower
    /// (`forwarded`: whether a peer forwarded it).
    Elsewhere {
        /// Whether a peer forwarded the request (it is then never forwarded again).
        forwarded: bool,
    },
}

/// The leader gate's decision for `req` (the API routes' gate, `http::gate`, calls it); strips
/// an untrusted `x-varpulis-forwarded-by` first.
pub fn route(state: &AppState, req: &mut Request) -> Route {
    let forwarded = peer_forwarded(state, req);
    if is_read(req.method()) {
        return if wants_consistent(req) {
            Route::Elsewhere { forwarded }
        } else {
            Route::Here
        };
    }
    let path = req.uri().path();
    if served_anywhere(path) {
        return Route::Here;
    }
    if forwarded || state.raft.is_leader() {
        // Heartbeats never go through the log: nothing to wait for on the way back.
        return if path.ends_with("/heartbeat") {
            Route::Here
        } else {
            Route::HereStamped
        };
    }
    Route::Elsewhere { forwarded }
}

/// The leader gate's [`Route::Elsewhere`] case: a `?consistent=true` read confirms leadership
/// (or is forwarded); a write on a follower is forwarded to the leader, or handled here if this
/// node became the leader meanwhile; `run` runs the request here.
pub async fn gate_slow<F, Fut>(state: &AppState, req: Request, forwarded: bool, run: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    if is_read(req.method()) {
        return match state.raft.ensure_linearizable().await {
            Ok(()) => run(req).await,
            Err(WriteError::ForwardToLeader {
                leader_id: Some(id),
                leader_url: Some(url),
            }) if !forwarded && id != state.node_id => forward(state, req, id, &url).await,
            Err(err) => ApiError::from(err).into_response(),
        };
    }
    let stamp = !req.uri().path().ends_with("/heartbeat");
    match wait_for_leader(state).await {
        Some((id, _)) if id == state.node_id => {
            let response = run(req).await;
            if stamp {
                with_applied_index(state, response)
            } else {
                response
            }
        }
        Some((id, url)) => forward(state, req, id, &url).await,
        None => ApiError::NoLeader.into_response(),
    }
}

/// Longest a follower waits to apply a write it proxied before answering anyway.
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(2);

/// Stamps a locally handled write's answer with this node's applied index (see
/// [`APPLIED_INDEX_HEADER`]); the write, when it succeeded, is at or below that index.
pub fn with_applied_index(state: &AppState, mut response: Response) -> Response {
    if !response.status().is_success() {
        return response;
    }
    if let Some(index) = state.applied.current() {
        response.headers_mut().insert(
            HeaderName::from_static(APPLIED_INDEX_HEADER),
            HeaderValue::from(index),
        );
    }
    response
}

/// Waits (bounded) until this node has applied `index`, so that a client reading from the node
/// it wrote through sees its write. On timeout the answer goes out anyway: the write is durable,
/// only this replica is slow. Woken once, when the index is applied ([`crate::http::applied`]).
async fn wait_applied(state: &AppState, index: u64) {
    if !state.applied.wait(index, READ_YOUR_WRITES_WAIT).await {
        tracing::debug!(
            index,
            "proxied write not yet applied locally; answering anyway"
        );
    }
}

/// The current leader, waiting up to four leases (one second by default: a pre-vote after the
/// lease, its retries, the election) for one to be elected.
pub async fn wait_for_leader(state: &AppState) -> Option<(u64, String)> {
    let patience = Duration::from_millis(state.config.raft_election_max_ms.saturating_mul(4));
    let deadline = Instant::now() + patience;
    loop {
        if let Some(leader) = state.raft.leader() {
            return Some(leader);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Forwards `req` to the leader at `leader_url` and returns its answer unchanged.
///
/// Writes up to [`forwarder::BATCHED_ITEM_BYTES`] share leader calls with other concurrent
/// forwards ([`forwarder`]); larger ones and reads go alone. Past [`forwarder::MAX_FORWARDS`]
/// forwards under way, `503 overloaded` at once.
pub async fn forward(state: &AppState, req: Request, leader_id: u64, leader_url: &str) -> Response {
    let not_leader = || ApiError::NotLeader {
        leader_id: Some(leader_id),
        leader_url: Some(leader_url.to_string()),
    };
    let Some(_place) = state.forwarder.admit() else {
        return ApiError::Overloaded.into_response();
    };
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, state.config.body_limit).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::PayloadTooLarge.into_response(),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .to_string();
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        HeaderName::from_static(FORWARDED_BY_HEADER),
        HeaderValue::from(state.node_id),
    );
    headers.remove(PEER_SECRET_HEADER);
    if let Some(secret) = state.config.peer_secret.as_deref() {
        match HeaderValue::from_str(secret) {
            Ok(v) => {
                headers.insert(HeaderName::from_static(PEER_SECRET_HEADER), v);
            }
            Err(_) => tracing::warn!("the peer secret is not a valid header value"),
        }
    }
    Metrics::inc(&state.metrics().proxied_requests);
    let item = WireRequest {
        method: parts.method,
        path_and_query,
        headers,
        body: bytes,
    };
    let batched = state.forwarder.batching()
        && !matches!(item.method, Method::GET | Method::HEAD)
        && forward_wire::request_size(&item) <= forwarder::BATCHED_ITEM_BYTES;
    let answer = if batched {
        state.forwarder.submit(leader_url, item).await
    } else {
        forwarder::send_one(&state.http, leader_url, item).await
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(ForwardFailure::Unreachable(reason)) => {
            Metrics::inc(&state.metrics().proxy_failures);
            tracing::debug!(leader_id, %leader_url, "cannot reach the leader: {reason}");
            return not_leader().into_response();
        }
    };
    let status = answer.status;
    let leader_applied = answer
        .headers
        .get(APPLIED_INDEX_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(index) = leader_applied.filter(|_| status.is_success()) {
        wait_applied(state, index).await;
    }
    let mut out_headers = HeaderMap::new();
    for (name, value) in &answer.headers {
        if !is_hop_by_hop(name) {
            out_headers.append(name.clone(), value.clone());
        }
    }
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}

/// On a follower, waits (at most about 2 s) until the local state has applied everything the
/// leader had applied when asked. Used when a local read misses something a client may just
/// have written through the leader (read-your-writes for inject and output streams). Returns
/// whether it caught up.
pub async fn catch_up_with_leader(state: &AppState) -> bool {
    const PATIENCE: Duration = Duration::from_secs(2);
    if state.raft.is_leader() {
        return false;
    }
    let Some((_, url)) = state.raft.leader() else {
        return false;
    };
    let asked = state
        .http
        .get(format!("{}/raft/metrics", url.trim_end_matches('/')))
        .timeout(PATIENCE)
        .send()
        .await;
    let Ok(answer) = asked else { return false };
    let Ok(view) = answer.json::<varpulis_api::raft::RaftMetricsView>().await else {
        return false;
    };
    let Some(target) = view.last_applied else {
        return false;
    };
    state.applied.wait(target, PATIENCE).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inject_routes_are_not_forwarded() {
        assert!(served_anywhere("/api/v1/cluster/pipeline-groups/x/inject"));
        assert!(served_anywhere(
            "/api/v1/cluster/pipeline-groups/x/inject-batch"
        ));
        assert!(!served_anywhere("/api/v1/cluster/pipeline-groups"));
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        assert!(is_hop_by_hop(&header::HOST));
        assert!(is_hop_by_hop(&header::TRANSFER_ENCODING));
        assert!(!is_hop_by_hop(&HeaderName::from_static("x-api-key")));
    }
}
