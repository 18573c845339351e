//! The gate in front of the API handlers: the route's credential (API key or worker join
//! token, [`super::auth`]), then the leader gate ([`super::proxy`]: writes forwarded to the
//! leader, `?consistent=true` reads made linearizable), as one hand-written tower service.
//!
//! Every write crosses it (issue 24). On the leader the common case — a write handled here, or
//! a plain read — costs a credential check and a header lookup, and its future is a small
//! enum around the handler's, stamped with the applied index on the way out: no `from_fn`
//! middleware chain boxed and cloned per request. Forwarding and linearizable reads (which
//! wait for the network anyway) take a boxed future.

use axum::extract::Request;
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
