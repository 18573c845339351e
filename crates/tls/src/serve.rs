//! Serving an axum router on an [`AnyListener`] within the connection limits of issue 18 item 6.
//!
//! Each connection is a hyper HTTP/1 connection (upgrades allowed, for WebSockets) with a
//! watcher that closes it when it breaks a timeout of [`ConnLimits`] while no request is in
//! flight; request bodies are bounded in time ([`crate::body_timeout`]).
//!
//! **The cap.** At most [`Budget::clients`] connections are served normally. A connection past
//! the cap makes the least recently active idle connection close and takes its slot (the
//! accept loop waits up to [`RECLAIM_WAIT`] for it: new connections queue in the kernel's
//! backlog meanwhile); when every connection is busy it is served as an *overflow* connection (at most [`Budget::overflow`]
//! of them, with timeouts of at most [`OVERFLOW_TIMEOUT`]): requests the server marks as
//! reserved (the peers' Raft RPCs, see [`ServeOptions::reserved`]) are served, anything else
//! gets `503` `overloaded` with `Retry-After` and the connection is closed. Past the overflow
//! share a connection is answered the same `503` if the socket takes it at once, and closed.
//!
//! **Accept errors** (out of file descriptors: `EMFILE`, `ENFILE`) make the loop close an idle
//! connection, back off and retry; open connections keep being served. Logged at most once a
//! minute.

use crate::body_timeout::BodyTimeout;
use crate::conns::{
    now_ms, AcceptErrors, Activity, ConnLimits, InFlight, Registered, Registry, Slot, Slots,
    Tracked,
};
use crate::listener::{AnyListener, Conn, VerifiedClientCert};
use crate::placement::{adopt, place, Placed, SharedPlacement};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;

/// How long the accept loop waits for the slot of the idle connection it asked to close.
pub const RECLAIM_WAIT: Duration = Duration::from_millis(500);
/// Longest header-read and idle timeouts of an overflow connection (it must not squat).
pub const OVERFLOW_TIMEOUT: Duration = Duration::from_secs(2);
/// The `Retry-After` of `503 overloaded`, in seconds.
const RETRY_AFTER_SECS: &str = "1";
const OVERLOADED_BODY: &str =
    r#"{"error":"too many open connections on this node; retry shortly","code":"overloaded"}"#;

/// Which requests an overflow connection still serves.
pub type Reserved = Arc<dyn Fn(&Request) -> bool + Send + Sync>;

/// What the loop serves: a cloneable service that answers every request (an axum router, or a
/// router wrapped in hand-written layers). Implemented for every such service.
pub trait AppService:
    tower::Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> AppService for S
where
    S: tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
}

/// How [`serve_with`] serves.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Timeouts and the connection cap.
    pub limits: ConnLimits,
    /// Requests served even past the cap (on overflow connections): the peers' RPCs, so that
    /// consensus never waits behind client connections. `None`: none.
    pub reserved: Option<Reserved>,
    /// Connections served on another runtime, chosen from their first bytes (the peers' Raft
    /// appends on the consensus runtime, [`crate::placement`]). `None`: all served here.
    pub placement: Option<SharedPlacement>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("limits", &self.limits)
            .field("reserved", &self.reserved.is_some())
            .field("placement", &self.placement.is_some())
            .finish()
    }
}

/// Serves `router` on `listener` with the default [`ServeOptions`] until `shutdown` completes.
pub async fn serve(
    listener: AnyListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, router, ServeOptions::default(), shutdown).await
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, closes idle
/// connections and waits for the requests in flight (like `axum::serve(..)
/// .with_graceful_shutdown`). Every request carries `ConnectInfo<SocketAddr>` and, under mutual
/// TLS, the client's [`VerifiedClientCert`].
pub async fn serve_with(
    listener: AnyListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_service_with(listener, router, options, shutdown).await
}

/// [`serve_with`] for any cloneable service (a router wrapped in hand-written layers, issue
/// 24): it is cloned per request (keep its clone cheap: `Arc`s) and called once, without
/// `poll_ready` (the services served here are always ready).
pub async fn serve_service_with<S>(
    mut listener: AnyListener,
    service: S,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    S: AppService,
{
    let budget = options.limits.budget();
    tracing::debug!(
        clients = budget.clients,
        overflow = budget.overflow,
        fd_limit = ?crate::conns::fd_limit(),
        "connection limits"
    );
    let shared = Arc::new(Shared {
        service,
        body_read_timeout: options.limits.body_read_timeout,
        limits: options.limits,
        reserved: options.reserved,
        placement: options.placement,
        registry: Arc::new(Registry::default()),
        clients: Slots::new(budget.clients),
        overflow: Slots::new(budget.overflow),
    });
    let (close_tx, close_rx) = watch::channel(());
    tokio::pin!(shutdown);
    let mut errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((conn, addr)) => {
                errors.succeeded();
                match admit(&shared).await {
                    Some((mode, slot)) => {
                        let activity = Arc::new(Activity::new());
                        // Registered at once: a connection silent before its first bytes can be
                        // reclaimed like any idle one, also while it is being placed.
                        let registered = (mode == Mode::Client)
                            .then(|| shared.registry.insert(activity.clone()));
                        let admitted = Admitted {
                            addr,
                            mode,
                            slot,
                            close: close_rx.clone(),
                            activity,
                            _registered: registered,
                        };
                        tokio::spawn(place_and_serve(shared.clone(), conn, admitted));
                    }
                    None => refuse_now(conn),
                }
            }
            Err(err) => {
                if let Some(pause) = errors.failed(&err) {
                    // Out of descriptors: free one held by an idle client, then retry.
                    shared.registry.reclaim_idle();
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
    drop(listener);
    drop(close_rx);
    close_tx.send_replace(());
    close_tx.closed().await;
    Ok(())
}

/// What every connection of one server shares.
struct Shared<S> {
    service: S,
    /// Bound on reading a request body ([`BodyTimeout`] around each body).
    body_read_timeout: Duration,
    limits: ConnLimits,
    reserved: Option<Reserved>,
    placement: Option<SharedPlacement>,
    registry: Arc<Registry>,
    clients: Arc<Slots>,
    overflow: Arc<Slots>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Within the cap: everything is served.
    Client,
    /// Past the cap: reserved requests only.
    Overflow,
}

/// The slot a new connection gets: a free one; else the one of the idle connection it makes
/// close; else an overflow one; else none.
async fn admit<S>(shared: &Shared<S>) -> Option<(Mode, Slot)> {
    if let Some(slot) = shared.clients.try_take(0) {
        return Some((Mode::Client, slot));
    }
    if shared.registry.reclaim_idle() {
        if let Some(slot) = shared.clients.take_waiting(RECLAIM_WAIT).await {
            return Some((Mode::Client, slot));
        }
    }
    shared
        .overflow
        .try_take(0)
        .map(|slot| (Mode::Overflow, slot))
}

/// Past every budget: `503` if the socket takes it without waiting, then close.
fn refuse_now(conn: Conn) {
    if let Conn::Plain(stream) = &conn {
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             retry-after: {RETRY_AFTER_SECS}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{}",
            OVERLOADED_BODY.len(),
            OVERLOADED_BODY
        );
        let _ = stream.try_write(answer.as_bytes());
    }
}

/// `400` on a connection moved for other requests ([`crate::placement`]), closing it.
fn not_here() -> Response {
    (
        StatusCode::BAD_REQUEST,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONNECTION, "close"),
        ],
        r#"{"error":"this connection carries peer RPCs only; open another one","code":"bad_request"}"#,
    )
        .into_response()
}

/// `503` `overloaded`, closing the connection.
fn overloaded() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::RETRY_AFTER, RETRY_AFTER_SECS),
            (header::CONNECTION, "close"),
        ],
        OVERLOADED_BODY,
    )
        .into_response()
}

/// What the accept loop gives an admitted connection; it goes along to the runtime serving it.
struct Admitted {
    addr: SocketAddr,
    mode: Mode,
    slot: Slot,
    /// Changes when the server shuts down.
    close: watch::Receiver<()>,
    activity: Arc<Activity>,
    /// Its place in the registry of reclaimable connections (client connections only).
    _registered: Option<Registered>,
}

/// Serves `conn` where the server's [`crate::placement::Placement`] says (here without one).
async fn place_and_serve<S>(shared: Arc<Shared<S>>, conn: Conn, admitted: Admitted)
where
    S: AppService,
{
    let Some(placement) = shared.placement.clone() else {
        return serve_conn(shared, conn, admitted, None).await;
    };
    let activity = admitted.activity.clone();
    let mut shutdown = admitted.close.clone();
    // The first bytes are awaited no longer than the head they start (an overflow connection's
    // header timeout is shorter: it must not squat).
    let wait = match admitted.mode {
        Mode::Client => shared.limits.header_read_timeout,
        Mode::Overflow => shared.limits.header_read_timeout.min(OVERFLOW_TIMEOUT),
    };
    let placed = tokio::select! {
        placed = place(conn, &*placement, wait) => placed,
        // Reclaimed for a new connection, or the server is shutting down, before it sent
        // anything: closed (dropped), as hyper closes a connection that has seen no bytes.
        () = activity.close.notified() => return,
        _ = shutdown.changed() => return,
    };
    match placed {
        Placed::Here(conn) => serve_conn(shared, conn, admitted, None).await,
        Placed::There(runtime, std) => {
            runtime.spawn(async move {
                match adopt(std) {
                    Ok(conn) => serve_conn(shared, conn, admitted, Some(placement)).await,
                    Err(err) => {
                        tracing::debug!(addr = %admitted.addr, "cannot serve a moved connection: {err}")
                    }
                }
            });
        }
        Placed::Gone => {}
    }
}

async fn serve_conn<S>(
    shared: Arc<Shared<S>>,
    conn: Conn,
    admitted: Admitted,
    placed: Option<SharedPlacement>,
) where
    S: AppService,
{
    let Admitted {
        addr,
        mode,
        slot,
        mut close,
        activity,
        _registered,
    } = admitted;
    let cert = conn.client_certificate();
    let io = TokioIo::new(Tracked {
        io: conn,
        activity: activity.clone(),
        _slot: slot,
    });
    let service = ConnService {
        shared: shared.clone(),
        addr,
        cert,
        activity: activity.clone(),
        mode,
        placed,
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    let limits = match mode {
        Mode::Client => shared.limits.clone(),
        Mode::Overflow => ConnLimits {
            header_read_timeout: shared.limits.header_read_timeout.min(OVERFLOW_TIMEOUT),
            idle_timeout: shared.limits.idle_timeout.min(OVERFLOW_TIMEOUT),
            ..shared.limits.clone()
        },
    };
    let mut ticker = tokio::time::interval(tick_period(&limits));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%addr, "connection ended: {err}");
                }
                return;
            }
            () = activity.close.notified(), if !closing => {
                // Reclaimed for a new connection.
                if activity.is_idle() {
                    return;
                }
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = close.changed(), if !closing => {
                // The server is shutting down.
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = ticker.tick() => {
                if let Some(why) = activity.expired(&limits, now_ms()) {
                    tracing::debug!(%addr, ?why, "closing the connection: timeout");
                    return;
                }
            }
        }
    }
}

/// How often a connection's timeouts are checked.
fn tick_period(limits: &ConnLimits) -> Duration {
    (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// The router of one connection: adds the connection's facts to each request and tracks the
/// request until its response body is done.
struct ConnService<S> {
    shared: Arc<Shared<S>>,
    addr: SocketAddr,
    cert: Option<VerifiedClientCert>,
    activity: Arc<Activity>,
    mode: Mode,
    /// The placement that moved this connection to the runtime serving it, if one did.
    placed: Option<SharedPlacement>,
}

impl<S> Clone for ConnService<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            addr: self.addr,
            cert: self.cert.clone(),
            activity: self.activity.clone(),
            mode: self.mode,
            placed: self.placed.clone(),
        }
    }
}

impl<S> tower::Service<hyper::Request<hyper::body::Incoming>> for ConnService<S>
where
    S: AppService,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let timeout = self.shared.body_read_timeout;
        let mut req = req.map(|body| Body::new(BodyTimeout::new(timeout, body)));
        req.extensions_mut().insert(ConnectInfo(self.addr));
        if let Some(cert) = &self.cert {
            req.extensions_mut().insert(cert.clone());
        }
        let in_flight = self.activity.request_started();
        let served = match self.mode {
            Mode::Client => true,
            Mode::Overflow => self.shared.reserved.as_ref().is_some_and(|r| r(&req)),
        };
        if !served {
            return Box::pin(std::future::ready(Ok(guarded(overloaded(), in_flight))));
        }
        let placed = self.placed.is_some();
        if self.placed.as_ref().is_some_and(|p| !p.serves(&req)) {
            return Box::pin(std::future::ready(Ok(guarded(not_here(), in_flight))));
        }
        let mut service = self.shared.service.clone();
        Box::pin(async move {
            let mut response = service.call(req).await?;
            if placed
                && matches!(
                    response.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                )
            {
                // No second try on a moved connection ([`crate::placement`]).
                response.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            Ok(guarded(response, in_flight))
        })
    }
}

fn guarded(response: Response, in_flight: InFlight) -> Response {
    response.map(|inner| {
        Body::new(Guarded {
            inner,
            _in_flight: in_flight,
        })
    })
}

/// A response body that keeps its request counted as in flight until it is done.
struct Guarded {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::throwaway::ThrowawayCa;
    use crate::{ClientTls, ServerTls, TlsSettings};
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn start(router: Router, options: ServeOptions) -> SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = AnyListener::new(tcp, None).unwrap();
        tokio::spawn(serve_with(
            listener,
            router,
            options,
            std::future::pending(),
        ));
        addr
    }

    fn small(max: usize) -> ServeOptions {
        ServeOptions {
            limits: ConnLimits {
                max_connections: max,
                header_read_timeout: Duration::from_millis(400),
                idle_timeout: Duration::from_secs(30),
                ..ConnLimits::default()
            },
            reserved: Some(Arc::new(|req: &Request| req.uri().path() == "/peer")),
            placement: None,
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn idle_connections_past_the_cap_make_room_for_new_ones() {
        let router = Router::new().route("/who", get(|| async { "me" }));
        let mut options = small(8);
        options.limits.header_read_timeout = Duration::from_secs(30);
        let addr = start(router, options).await;
        let mut idle = Vec::new();
        for _ in 0..40 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let answer = client()
            .get(format!("http://{addr}/who"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        // The oldest idle connections were closed (EOF) or answered 503.
        let mut first = idle.remove(0);
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), first.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the oldest idle connection is closed");
    }

    #[tokio::test]
    async fn a_request_head_sent_byte_by_byte_is_cut() {
        let router = Router::new().route("/who", get(|| async { "me" }));
        let addr = start(router, small(64)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let mut cut = false;
        for byte in b"GET /who HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
        {
            if slow.write_all(&[*byte]).await.is_err() {
                cut = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !cut {
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
                .await
                .unwrap();
            cut = matches!(n, Ok(0) | Err(_));
        }
        assert!(cut, "the slow client is disconnected");
        assert!(started.elapsed() < Duration::from_secs(8));
    }

    #[tokio::test]
    async fn past_the_cap_only_reserved_requests_are_served() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let hold = gate.clone();
        let router = Router::new()
            .route(
                "/slow",
                get(move || {
                    let hold = hold.clone();
                    async move {
                        hold.notified().await;
                        "done"
                    }
                }),
            )
            .route("/who", get(|| async { "me" }))
            .route("/peer", get(|| async { "peer" }));
        let addr = start(router, small(8)).await;
        // Eight requests in flight: every slot busy, nothing to reclaim.
        let mut busy = Vec::new();
        for _ in 0..8 {
            let c = client();
            busy.push(tokio::spawn(async move {
                c.get(format!("http://{addr}/slow")).send().await
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let refused = client()
            .get(format!("http://{addr}/who"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()["retry-after"], "1");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["code"], "overloaded");
        let peer = client()
            .get(format!("http://{addr}/peer"))
            .send()
            .await
            .unwrap();
        assert_eq!(peer.status(), 200);
        gate.notify_waiters();
        for task in busy {
            assert_eq!(task.await.unwrap().unwrap().status(), 200);
        }
    }

    #[tokio::test]
    async fn a_silent_client_does_not_hold_up_other_handshakes() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ThrowawayCa::new("test CA").unwrap();
        ca.write_cert(&dir.path().join("ca.pem")).unwrap();
        let leaf = ca
            .issue_files(dir.path(), "node", &["localhost", "127.0.0.1"])
            .unwrap();
        let settings = TlsSettings {
            cert: Some(leaf.cert),
            key: Some(leaf.key),
            ..Default::default()
        };
        let server = ServerTls::from_settings(&settings).unwrap().unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = AnyListener::new(tcp, Some(server)).unwrap();
        let router = Router::new().route(
            "/who",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        tokio::spawn(serve(listener, router, std::future::pending()));
        // Connected, never says a word.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let client = ClientTls::new(Some(&dir.path().join("ca.pem")), None)
            .unwrap()
            .reqwest_builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let answer = client
            .get(format!("https://127.0.0.1:{}/who", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        // The remote address reaches the handlers as ConnectInfo.
        assert_eq!(answer.text().await.unwrap(), "127.0.0.1");
        // Clear text gets no HTTP answer.
        let plain = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{}/who", addr.port()))
            .send()
            .await;
        assert!(plain.is_err(), "{plain:?}");
    }
}
