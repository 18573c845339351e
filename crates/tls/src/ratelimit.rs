//! Per-client token buckets on write routes (issue 18 item 6).
//!
//! A [`RateLimitLayer`] asks a classifier which bucket class a request belongs to (`None`:
//! not limited, e.g. reads or requests with peer credentials) and takes one token from the
//! bucket of that class for the client's address (`ConnectInfo<SocketAddr>`, put there by
//! [`crate::serve`]); IPv6 clients are counted per `/64`, since one host usually owns a
//! whole `/64`. An empty bucket answers `429` `too_many_requests` with `Retry-After`.
//!
//! Memory is bounded: at most `max_clients` buckets are kept; when the table is full, buckets
//! that have refilled completely (the same as no bucket) are dropped, then if needed the least
//! recently used half.
//!
//! Written here rather than taken from `governor`/`tower_governor`: the key is a class plus an
//! address prefix, the classifier needs the server's credentials, the table must stay bounded
//! without a sweeper task, and the answer must be the API's JSON error; that is less code than
//! adapting those crates.

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Default bound of the per-client table.
pub const MAX_CLIENTS: usize = 100_000;

/// One bucket class: `per_second` tokens added per second, at most `burst` kept. A rate of
/// zero turns the class off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second per client.
    pub per_second: f64,
    /// Requests a client may send at once after a quiet period.
    pub burst: f64,
}

impl Rate {
    /// `per_second`, with a burst of `burst` (at least 1).
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst: burst.max(1.0),
        }
    }

    /// Whether the class is turned off (a rate of zero, negative or NaN).
    pub fn is_off(&self) -> bool {
        self.per_second.is_nan() || self.per_second <= 0.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per (class, client), bounded in number.
#[derive(Debug)]
pub struct RateLimiter {
    classes: Vec<Rate>,
    max_clients: usize,
    table: Mutex<HashMap<(usize, IpAddr), Bucket>>,
}

impl RateLimiter {
    /// Buckets of the given classes (indexes into `classes`), at most [`MAX_CLIENTS`] kept.
    pub fn new(classes: Vec<Rate>) -> Self {
        Self::with_capacity(classes, MAX_CLIENTS)
    }

    /// Like [`RateLimiter::new`] with at most `max_clients` buckets kept.
    pub fn with_capacity(classes: Vec<Rate>, max_clients: usize) -> Self {
        Self {
            classes,
            max_clients: max_clients.max(2),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Buckets currently kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no bucket is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, IpAddr), Bucket>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a token of class `class` for `client`; `Err(wait)` when none is left (`wait`:
    /// until the next one).
    pub fn check(&self, class: usize, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.classes.get(class).copied() else {
            return Ok(());
        };
        if rate.is_off() {
            return Ok(());
        }
        let key = (class, client_key(client));
        let mut table = self.lock();
        if table.len() >= self.max_clients && !table.contains_key(&key) {
            self.sweep(&mut table, now);
        }
        let bucket = table.entry(key).or_insert(Bucket {
            tokens: rate.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(rate.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_second,
            ))
        }
    }

    fn sweep(&self, table: &mut HashMap<(usize, IpAddr), Bucket>, now: Instant) {
        let classes = &self.classes;
        table.retain(|(class, _), b| {
            let Some(rate) = classes.get(*class).filter(|r| !r.is_off()) else {
                return false;
            };
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate.per_second < rate.burst
        });
        if table.len() >= self.max_clients {
            let mut lasts: Vec<Instant> = table.values().map(|b| b.last).collect();
            lasts.sort_unstable();
            let cut = lasts[lasts.len() / 2];
            table.retain(|_, b| b.last > cut);
        }
    }
}

/// The address a bucket is kept for: IPv4 as is, IPv6 by its `/64` (IPv4-mapped as IPv4).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Which bucket class a request takes a token from (`None`: not limited).
pub type Classify = Arc<dyn Fn(&Request) -> Option<usize> + Send + Sync>;

/// `429` `too_many_requests` with `Retry-After` (whole seconds, at least 1).
pub fn too_many_requests(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let body = format!(
        r#"{{"error":"too many write requests from this client; retry in {secs} s","code":"too_many_requests"}}"#
    );
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::RETRY_AFTER, secs.to_string()),
        ],
        body,
    )
        .into_response()
}

/// The tower layer: limits the requests `classify` assigns a class to.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<RateLimiter>,
    classify: Classify,
}

impl RateLimitLayer {
    /// A layer taking tokens from `limiter` as `classify` says.
    pub fn new(limiter: Arc<RateLimiter>, classify: Classify) -> Self {
        Self { limiter, classify }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<RateLimiter>,
    classify: Classify,
}

impl<S> tower::Service<Request> for RateLimit<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RateLimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let client = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if let (Some(class), Some(client)) = ((self.classify)(&req), client) {
            if let Err(wait) = self.limiter.check(class, client, Instant::now()) {
                return RateLimitFuture::Refused {
                    response: Some(too_many_requests(wait)),
                };
            }
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        RateLimitFuture::Inner {
            future: inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RateLimit`]: the refusal, or the inner service's answer (no boxing: it
    /// wraps every request of the node).
    #[project = RateLimitProj]
    pub enum RateLimitFuture<F> {
        /// Over the rate: `429`.
        Refused { response: Option<Response> },
        /// Let through.
        Inner { #[pin] future: F },
    }
}

impl<F> Future for RateLimitFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RateLimitProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            RateLimitProj::Inner { future } => future.poll(cx),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_bucket_empties_then_refills_at_its_rate() {
        let limiter = RateLimiter::new(vec![Rate::new(10.0, 5.0)]);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check(0, ip("10.0.0.1"), t0).is_ok());
        }
        let wait = limiter.check(0, ip("10.0.0.1"), t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Another client has its own bucket.
        assert!(limiter.check(0, ip("10.0.0.2"), t0).is_ok());
        // 100 ms later one token is back, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert!(limiter.check(0, ip("10.0.0.1"), t1).is_ok());
        assert!(limiter.check(0, ip("10.0.0.1"), t1).is_err());
    }

    #[test]
    fn ipv6_clients_share_their_64_and_off_classes_never_refuse() {
        let limiter = RateLimiter::new(vec![Rate::new(1.0, 1.0), Rate::new(0.0, 0.0)]);
        let t0 = Instant::now();
        assert!(limiter.check(0, ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(limiter.check(0, ip("2001:db8:1:2::ffff"), t0).is_err());
        assert!(limiter.check(0, ip("2001:db8:1:3::1"), t0).is_ok());
        for _ in 0..100 {
            assert!(limiter.check(1, ip("10.0.0.1"), t0).is_ok());
        }
        assert!(
            limiter.check(7, ip("10.0.0.1"), t0).is_ok(),
            "unknown class"
        );
    }

    #[test]
    fn the_table_stays_bounded_under_many_clients() {
        let limiter = RateLimiter::with_capacity(vec![Rate::new(1.0, 10.0)], 1000);
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(i));
            let _ = limiter.check(0, addr, t0 + Duration::from_micros(u64::from(i)));
        }
        assert!(limiter.len() <= 1000, "{}", limiter.len());
        // A client that is being limited keeps its (empty) bucket across sweeps when recent.
        let hot = ip("192.0.2.1");
        let t1 = t0 + Duration::from_secs(1);
        while limiter.check(0, hot, t1).is_ok() {}
        assert!(limiter.check(0, hot, t1).is_err());
    }

    #[test]
    fn the_answer_is_429_with_retry_after() {
        let r = too_many_requests(Duration::from_millis(1500));
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let r = too_many_requests(Duration::from_millis(10));
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
