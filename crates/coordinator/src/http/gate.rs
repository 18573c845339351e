//! The gate in front of the API handlers: the route's credential (API key or worker join
//! token, [`super::auth`]), then the leader gate ([`super::proxy`]: writes forwarded to the
//! leader, `?consistent=true` reads made linearizable), as one hand-written tower service.
//!
//! Every write crosses it (issue 24). On the leader the common case — a write handled here, or
//! a plain read — costs a credential check and a header lookup, and its future is a small
//! enum around the handler's, stamped with the applied index on the way out: no `from_fn`
//! middleware chain boxed and cloned per request. Forwarding and linearizable reads (which
//! wait for the network anyway) take a boxed future.
//!
//! **Oversized bodies.** A request whose `Content-Length` is over the body limit is answered
//! `413 payload_too_large` (with `Connection: close`) only after its body was read and thrown
//! away, up to [`DRAIN_CAP`] bytes past the limit and within the server's body read timeout:
//! answering while the client is still sending makes the kernel reset the connection (unread
//! data at close), and the client then sees a broken pipe instead of the answer. A body larger
//! than the cap gets the answer at once (and may see the reset): reading gigabytes to be polite
//! is not worth it.

use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use varpulis_api::{API_KEY_HEADER, WORKER_TOKEN_HEADER};

use crate::auth::{check_worker_token, secret_matches};
use crate::error::ApiError;
use crate::http::proxy;
use crate::node::AppState;

/// What a route requires before the leader gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The cluster API key (`x-api-key`), when one is configured.
    ApiKey,
    /// The worker join token (`x-worker-token`), when one is configured.
    WorkerToken,
    /// Nothing here (the route checks on its own, e.g. a deregistration).
    Checked,
}

/// The [`tower::Layer`] of [`Gate`].
#[derive(Clone)]
pub struct GateLayer {
    state: AppState,
    credential: Credential,
}

impl GateLayer {
    /// A gate requiring `credential`.
    pub fn new(state: AppState, credential: Credential) -> Self {
        Self { state, credential }
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            state: self.state.clone(),
            credential: self.credential,
            inner,
        }
    }
}

/// See the module doc.
#[derive(Clone)]
pub struct Gate<S> {
    state: AppState,
    credential: Credential,
    inner: S,
}

/// How many bytes past the body limit an oversized body is read (and dropped) before its 413.
pub const DRAIN_CAP: u64 = 64 * 1024 * 1024;

/// The declared length of `req`'s body when it is over `limit`.
fn oversized(req: &Request, limit: usize) -> Option<u64> {
    let declared: u64 = header(req, CONTENT_LENGTH.as_str())?.trim().parse().ok()?;
    (declared > limit as u64).then_some(declared)
}

/// Reads `req`'s body to its end (at most `cap` bytes; a read error or timeout ends it too),
/// then answers `413`.
async fn drain_then_refuse(req: Request, cap: u64) -> Response {
    use futures::StreamExt;
    let mut body = req.into_body().into_data_stream();
    let mut read: u64 = 0;
    while read <= cap {
        match body.next().await {
            Some(Ok(data)) => read += data.len() as u64,
            Some(Err(_)) | None => break,
        }
    }
    ApiError::PayloadTooLarge.into_response()
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

impl<S> Gate<S> {
    fn refused(&self, req: &Request) -> Option<Response> {
        let config = &self.state.config;
        match self.credential {
            Credential::ApiKey => {
                let expected = config.api_key.as_deref()?;
                (!secret_matches(header(req, API_KEY_HEADER), expected)).then(|| {
                    ApiError::Unauthorized("missing or invalid x-api-key header").into_response()
                })
            }
            Credential::WorkerToken => check_worker_token(
                config.worker_token.as_deref(),
                header(req, WORKER_TOKEN_HEADER),
            )
            .err()
            .map(IntoResponse::into_response),
            Credential::Checked => None,
        }
    }
}

impl<S> tower::Service<Request> for Gate<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if let Some(refused) = self.refused(&req) {
            return GateFuture::Ready {
                response: Some(refused),
            };
        }
        let limit = self.state.config.body_limit;
        if let Some(declared) = oversized(&req, limit) {
            let cap = DRAIN_CAP.saturating_add(limit as u64);
            if declared <= cap {
                return GateFuture::Boxed {
                    future: Box::pin(drain_then_refuse(req, cap)),
                };
            }
            return GateFuture::Ready {
                response: Some(ApiError::PayloadTooLarge.into_response()),
            };
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = &self.state;
        match proxy::route(state, &mut req) {
            proxy::Route::Here => GateFuture::Inner {
                future: inner.call(req),
                stamp: None,
            },
            proxy::Route::HereStamped => GateFuture::Inner {
                future: inner.call(req),
                stamp: Some(state.clone()),
            },
            proxy::Route::Elsewhere { forwarded } => {
                let state = state.clone();
                GateFuture::Boxed {
                    future: Box::pin(async move {
                        proxy::gate_slow(&state, req, forwarded, |req| async move {
                            let mut inner = inner;
                            match inner.call(req).await {
                                Ok(response) => response,
                                Err(never) => match never {},
                            }
                        })
                        .await
                    }),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Gate`].
    #[project = GateProj]
    pub enum GateFuture<F> {
        /// Refused by the credential check.
        Ready { response: Option<Response> },
        /// Handled on this node; stamped with the applied index when `stamp` holds the state.
        Inner { #[pin] future: F, stamp: Option<AppState> },
        /// Forwarded, or a linearizable read.
        Boxed { future: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl<F> Future for GateFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GateProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            GateProj::Inner { future, stamp } => {
                let Ok(response) = std::task::ready!(future.poll(cx));
                Poll::Ready(Ok(match stamp.take() {
                    Some(state) => proxy::with_applied_index(&state, response),
                    None => response,
                }))
            }
            GateProj::Boxed { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;

    fn with_length(len: &str, body: Vec<u8>) -> Request {
        Request::builder()
            .method("POST")
            .uri("/api/v1/cluster/pipeline-groups")
            .header(CONTENT_LENGTH, len)
            .body(Body::from(body))
            .unwrap()
    }

    #[test]
    fn only_a_declared_length_over_the_limit_is_oversized() {
        assert_eq!(oversized(&with_length("11", vec![]), 10), Some(11));
        assert_eq!(oversized(&with_length("10", vec![]), 10), None);
        assert_eq!(oversized(&with_length("nope", vec![]), 10), None);
        let chunked = Request::builder().body(Body::empty()).unwrap();
        assert_eq!(oversized(&chunked, 10), None);
    }

    #[tokio::test]
    async fn an_oversized_body_is_read_to_its_end_before_the_413() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let chunks = futures::stream::iter((0..100).map(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 1_000]))
        }));
        let req = Request::builder()
            .header(CONTENT_LENGTH, "100000")
            .body(Body::from_stream(chunks))
            .unwrap();
        let response = drain_then_refuse(req, 1_000_000).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            pulled.load(Ordering::SeqCst),
            100,
            "the whole body was read"
        );
        // A body past the cap stops the reading early, and still gets its answer.
        let response = drain_then_refuse(with_length("100000", vec![0; 100_000]), 10).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
