//! `POST /raft/forward-batch`: the leader's side of batched follower forwarding (issue 24 item 3).
//!
//! A follower sends many forwarded client requests in one peer request ([`super::forward_wire`]);
//! the leader runs each through its own API router — the same middleware (API key, worker token,
//! body caps, the leader gate) and handlers as if the client had called the leader directly — all
//! at once, so their writes share Raft batches, and answers every item with its own status,
//! headers and body (a 409 stays a 409). Nothing but the transport changes: an item carries the
//! client's headers plus `x-varpulis-forwarded-by` (and the peer secret), and is judged on them.
//!
//! Access: the batch itself must come from a peer — with a peer secret configured, the request
//! carries it; without one, `x-varpulis-forwarded-by` names another node (as for a single
//! forward, docs/security.md). Anything else is `401 unauthorized` before the body is read.

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::future::Either;
use futures::FutureExt;
use futures::StreamExt;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower::ServiceExt;
use varpulis_api::FORWARDED_BY_HEADER;
use varpulis_raft::PEER_SECRET_HEADER;

use crate::auth::secret_matches;
use crate::error::ApiError;
use crate::http::console::guard::Guard;
use crate::http::forward_wire::{self, WireResponse, CONTENT_TYPE, PATH};
use crate::node::AppState;

/// Most items one batch may hold.
pub const MAX_ITEMS: usize = 1024;
/// Largest answer body of one item that is relayed (writes answer with a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The application the clients' requests run through: the guarded router.
type App = Guard<Router>;

#[derive(Clone)]
struct BatchState {
    node: AppState,
    /// The router *without* the guard: an item is a request the follower's own guard already
    /// let in, and whose answer that guard completes with the same security headers on the way
    /// out (the leader's guard would only add headers that the follower overwrites; it classes
    /// forwarded requests as same-origin, so no CORS and no refusal). The leader gate still
    /// checks that the item comes from a peer.
    inner: Router,
}

/// The node's outermost service: [`PATH`] goes to the batch handler, everything else to `app`
/// (which has no batch route, so batches never nest). A path comparison instead of one more
/// router level in front of every request (issue 24).
#[derive(Clone)]
pub struct Frontend {
    batch: Router,
    app: App,
}

impl Frontend {
    /// Serves [`PATH`] in front of `app` wrapped in the console's [`Guard`]; the items of a
    /// batch are served by `app` itself, without the guard (the follower's guard let them in and
    /// completes their answers).
    pub fn new(app: Router, node: AppState) -> Self {
        let state = BatchState {
            node: node.clone(),
            inner: app.clone(),
        };
        let batch = Router::new().route(PATH, post(handle)).with_state(state);
        Self {
            batch,
            app: Guard::new(node, app),
        }
    }
}

impl tower::Service<Request> for Frontend {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        <Router as tower::Service<Request>>::Future,
        <App as tower::Service<Request>>::Future,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both are always ready (routers are).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.uri().path() == PATH {
            Either::Left(self.batch.call(req))
        } else {
            Either::Right(self.app.call(req))
        }
    }
}

fn from_peer(state: &AppState, req: &Request) -> bool {
    match state.config.peer_secret.as_deref() {
        Some(secret) => secret_matches(
            req.headers()
                .get(PEER_SECRET_HEADER)
                .and_then(|v| v.to_str().ok()),
            secret,
        ),
        None => req
            .headers()
            .get(FORWARDED_BY_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|id| id != state.node_id),
    }
}

/// Largest batch body accepted: a full batch of items at the body limit would be far more than a
/// follower ever sends (it sends items up to [`crate::http::forwarder::BATCHED_ITEM_BYTES`] in
/// batches of about [`crate::http::forwarder::BATCH_BYTES`]).
fn max_batch_bytes(state: &AppState) -> usize {
    state
        .config
        .body_limit
        .max(crate::http::forwarder::BATCH_BYTES)
        .saturating_mul(2)
}

async fn handle(State(batch): State<BatchState>, req: Request) -> Response {
    if !from_peer(&batch.node, &req) {
        return ApiError::Unauthorized("forward batches are accepted from peers only")
            .into_response();
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, max_batch_bytes(&batch.node)).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::PayloadTooLarge.into_response(),
    };
    let items = match forward_wire::decode_requests(&bytes, MAX_ITEMS) {
        Ok(items) => items,
        Err(err) => return ApiError::BadRequest(err.to_string()).into_response(),
    };
    let count = items.len();
    let mut running = futures::stream::FuturesUnordered::new();
    // One ticket per item: the next Raft proposal waits until every item's write is queued (or
    // the item ended without one), so the batch's writes share one log entry
    // ([`varpulis_raft::cork`]).
    let tickets = batch.node.raft.cork_tickets(count);
    for ((index, item), ticket) in items.into_iter().enumerate().zip(tickets) {
        let mut sub = axum::http::Request::builder()
            .method(item.method)
            .uri(item.path_and_query.as_str());
        if let Some(headers) = sub.headers_mut() {
            *headers = item.headers;
        }
        let sub = match sub.body(Body::from(item.body)) {
            Ok(mut sub) => {
                // The connection's facts (client address, a verified peer certificate) are the
                // batch's.
                *sub.extensions_mut() = parts.extensions.clone();
                Ok(sub)
            }
            Err(_) => Err(ApiError::BadRequest("invalid forwarded request URI".into())),
        };
        let inner = batch.inner.clone();
        let item = varpulis_raft::cork::with_ticket(ticket, async move {
            let response = match sub {
                Ok(sub) => match inner.oneshot(sub).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                Err(err) => err.into_response(),
            };
            into_wire(response).await
        });
        running.push(async move {
            // A handler that panics fails its own item, not the batch.
            let answer = std::panic::AssertUnwindSafe(item)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    error_wire(ApiError::Internal(
                        "the forwarded request's handler failed".into(),
                    ))
                });
            Bytes::from(forward_wire::encode_answer_frame(index, &answer))
        });
    }
    // The items run together in one task of their own: they reach the Raft batcher in one pass
    // and wake one task, not one each, when their entry commits (issue 24); the task finishes
    // them even if the follower goes away. Answers go out as they are ready (a slow item does
    // not hold back the others).
    let (answers, mut ready) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        while let Some(frame) = running.next().await {
            // The follower went away: the items still finish (their writes stand).
            let _ = answers.send(frame);
        }
    });
    let running = futures::stream::poll_fn(move |cx| ready.poll_recv(cx))
        .map(Ok::<_, std::convert::Infallible>);
    let head = futures::stream::once(async move {
        Ok::<_, std::convert::Infallible>(Bytes::from(forward_wire::encode_answer_header(count)))
    });
    let mut response = Response::new(Body::from_stream(head.chain(running)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// An error rendered as an item's answer (the JSON body of [`ApiError`]).
fn error_wire(error: ApiError) -> WireResponse {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    WireResponse {
        status: error.status(),
        headers,
        body: serde_json::to_vec(&error.body()).unwrap_or_default().into(),
    }
}

/// The answer of one item as it travels back (its body read in full).
async fn into_wire(response: Response) -> WireResponse {
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, MAX_ANSWER_BYTES).await.unwrap_or_default();
    WireResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}
