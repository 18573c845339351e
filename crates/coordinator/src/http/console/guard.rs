//! The guard around every coordinator answer ([`Guard`], a tower service wrapping the whole
//! application): security headers, CORS for member
//! origins, and no cross-site writes.
//!
//! - Every answer carries `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
//!   `Referrer-Policy: no-referrer`, `Cross-Origin-Opener-Policy: same-origin` and, unless the
//!   handler set its own (the console page does), `Content-Security-Policy: default-src 'none';
//!   frame-ancestors 'none'`.
//! - A browser request from another member's origin ([`super::origin`]) gets CORS headers, and
//!   its preflight is answered here (before authentication: preflights carry no key). Other
//!   origins get no CORS headers, so the browser does not let their scripts read the answer.
//! - A state-changing request (anything but GET, HEAD, OPTIONS) whose `Origin` is neither this
//!   node's nor a member's is refused with 403 `forbidden_origin`: without it, any web page an
//!   operator opens could drive a cluster without an API key through simple form posts.
//!   Requests without `Origin` (curl, the CLI, workers, peers) are not concerned, nor are
//!   requests a member forwarded (that member checked them).

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use varpulis_api::{Code, ErrorBody, FORWARDED_BY_HEADER};

use super::origin::{is_member, is_same_origin, Origin};
use crate::node::AppState;

/// CSP of every answer that does not bring its own: nothing may load, nothing may frame it.
pub const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
/// Headers a console page sends cross-origin.
const ALLOWED_HEADERS: &str = "x-api-key, content-type, last-event-id, idempotency-key";
/// Methods a console page uses cross-origin.
const ALLOWED_METHODS: &str = "GET, POST, PUT, DELETE";
/// How long a browser may cache a preflight answer (seconds).
const PREFLIGHT_MAX_AGE: &str = "600";

/// Where a request comes from, as far as browsers are concerned.
enum Caller {
    /// No `Origin`, the page of this very node, or a request forwarded by a member.
    Local,
    /// Another member's page: CORS headers echo `origin`.
    Member(HeaderValue),
    /// Any other origin (including `null` and unparsable ones).
    Foreign,
}

/// The advertised URLs of every known member, this node included.
pub fn member_urls(state: &AppState) -> Vec<String> {
    let mut urls: Vec<String> = state.raft.metrics_summary().nodes.into_values().collect();
    urls.push(state.advertise.clone());
    urls.extend(state.config.peers.iter().cloned());
    urls.sort();
    urls.dedup();
    urls
}

fn classify(state: &AppState, headers: &HeaderMap) -> Caller {
    let Some(value) = headers.get(header::ORIGIN) else {
        return Caller::Local;
    };
    if headers.contains_key(FORWARDED_BY_HEADER) {
        return Caller::Local;
    }
    let Some(origin) = value.to_str().ok().and_then(Origin::parse) else {
        return Caller::Foreign;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if is_same_origin(&origin, host) {
        return Caller::Local;
    }
    let members = member_urls(state);
    if is_member(&origin, members.iter().map(String::as_str)) {
        Caller::Member(value.clone())
    } else {
        Caller::Foreign
    }
}

fn forbidden_origin() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(ErrorBody::new(
            Code::ForbiddenOrigin,
            "cross-origin request from a page that is not a cluster member",
        )),
    )
        .into_response()
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    headers.insert(name, HeaderValue::from_static(value));
}

fn allow_origin(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// Answers a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
fn preflight(caller: Caller, request: &HeaderMap) -> Response {
    let origin = match caller {
        Caller::Member(origin) => origin,
        Caller::Local => {
            // Same-origin pages never preflight; answer like an unknown route would.
            let mut r = StatusCode::NO_CONTENT.into_response();
            set(r.headers_mut(), header::ALLOW, ALLOWED_METHODS);
            return r;
        }
        Caller::Foreign => return forbidden_origin(),
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    allow_origin(h, origin);
    set(h, header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS);
    set(h, header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS);
    set(h, header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE);
    if request.contains_key("access-control-request-private-network") {
        set(
            h,
            HeaderName::from_static("access-control-allow-private-network"),
            "true",
        );
    }
    response
}

/// The headers [`secure`] adds (name, value), built at compile time.
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
];

/// Adds the security headers every answer carries.
pub fn secure(headers: &mut HeaderMap) {
    // One growth of the map at most, instead of one per header.
    headers.reserve(5);
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, value);
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(headers, header::CONTENT_SECURITY_POLICY, DEFAULT_CSP);
    }
}

/// What the guard decided before the inner service runs: an answer of its own, or the CORS
/// origin to echo on the inner service's answer (if any).
enum Decision {
    Answer(Response),
    Pass(Option<HeaderValue>),
}

fn decide(state: &AppState, req: &mut Request) -> Decision {
    // First of all: nothing below may see a forged `x-varpulis-forwarded-by`.
    crate::http::proxy::strip_untrusted_forward(state, req);
    let caller = classify(state, req.headers());
    let method = req.method();
    if method == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return Decision::Answer(preflight(caller, req.headers()));
    }
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    match caller {
        Caller::Foreign if !safe => Decision::Answer(forbidden_origin()),
        Caller::Member(origin) => Decision::Pass(Some(origin)),
        _ => Decision::Pass(None),
    }
}

fn finish(mut response: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        allow_origin(response.headers_mut(), origin);
    }
    secure(response.headers_mut());
    response
}

/// The guard as a plain tower service around the whole application (see the module doc): no
/// per-request boxing or cloning of a middleware chain (issue 24: every request of the write
/// path goes through it).
#[derive(Clone)]
pub struct Guard<S> {
    state: AppState,
    inner: S,
}

impl<S> Guard<S> {
    /// Guards `inner`.
    pub fn new(state: AppState, inner: S) -> Self {
        Self { state, inner }
    }
}

impl<S> tower::Service<Request> for Guard<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        match decide(&self.state, &mut req) {
            Decision::Answer(response) => GuardFuture::Ready {
                response: Some(finish(response, None)),
            },
            Decision::Pass(origin) => {
                // The usual tower dance: the clone stays, the instance that was ready is used.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                GuardFuture::Inner {
                    future: inner.call(req),
                    origin,
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Guard`].
    #[project = GuardProj]
    pub enum GuardFuture<F> {
        /// The guard answered itself.
        Ready { response: Option<Response> },
        /// The inner service answers; the guard adds its headers.
        Inner { #[pin] future: F, origin: Option<HeaderValue> },
    }
}

impl<F> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            GuardProj::Inner { future, origin } => {
                let Ok(response) = std::task::ready!(future.poll(cx));
                Poll::Ready(Ok(finish(response, origin.take())))
            }
        }
    }
}

/// Turns axum's bare `405 Method Not Allowed` into the JSON error body every route answers with.
pub async fn json_method_errors(response: Response) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let body = serde_json::to_vec(&ErrorBody::new(
        Code::MethodNotAllowed,
        "Method Not Allowed",
    ))
    .unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_gets_the_headers_and_keeps_its_own_csp() {
        let mut h = HeaderMap::new();
        secure(&mut h);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], DEFAULT_CSP);
        let mut page = HeaderMap::new();
        page.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("script-src 'self'"),
        );
        secure(&mut page);
        assert_eq!(page[header::CONTENT_SECURITY_POLICY], "script-src 'self'");
    }

    #[tokio::test]
    async fn bare_405_becomes_json() {
        let bare = (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            "",
        )
            .into_response();
        let r = json_method_errors(bare).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "POST");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "method_not_allowed");
        let ok = json_method_errors(StatusCode::OK.into_response()).await;
        assert_eq!(ok.status(), StatusCode::OK);
    }
}
