//! Connection limits of the HTTP servers (issue 18 item 6): the timeouts, the cap on open
//! connections (sized from the process's file-descriptor limit), and the registry of open
//! connections that finds an idle one to close when the cap is reached.
//!
//! Every served connection has an [`Activity`]: when bytes last moved, whether a request is in
//! flight, when the head of the next request started to arrive. `varpulis_tls::serve` checks it every
//! tick and closes a connection that broke a timeout while no request was in flight; the
//! [`Registry`] closes the least recently active idle connection when a new one needs its slot
//! (as nginx reuses keep-alive connections when it runs out of them).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Default of [`ConnLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ConnLimits::body_read_timeout`].
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`ConnLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most TLS handshakes in progress at once (fewer under a low file-descriptor limit, see
/// [`Budget`]); past it the accept loop waits (new connections queue in the kernel's backlog),
/// so a flood of silent clients cannot pile up tasks and descriptors.
pub const MAX_PENDING_HANDSHAKES: usize = 512;
/// Default of [`ConnLimits::max_connections`] (before the file-descriptor clamp).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// The connection limits of one server.
///
/// In a configuration file (flattened into the coordinator's and the worker's) the keys are the
/// field names, durations in (fractional) seconds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ConnLimits {
    /// A new connection must deliver its first request head within this time; a kept-alive
    /// connection, the rest of a request head within this time of its first byte (slowloris).
    #[serde(with = "crate::secs")]
    pub header_read_timeout: Duration,
    /// A request body must deliver its next frame within this time (`body_timeout`).
    #[serde(with = "crate::secs")]
    pub body_read_timeout: Duration,
    /// A kept-alive connection with no request in flight and no byte moving is closed after
    /// this time.
    #[serde(with = "crate::secs")]
    pub idle_timeout: Duration,
    /// Most client connections served at once; clamped to half the file-descriptor limit
    /// (see [`ConnLimits::budget`]).
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ConnLimits {
    /// Refuses zero values (a zero timeout would close every connection).
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be above zero"));
            }
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        Ok(())
    }

    /// The connection budget under this process's file-descriptor limit.
    pub fn budget(&self) -> Budget {
        Budget::new(self.max_connections, fd_limit())
    }
}

/// How many connections a server holds at once, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Client connections served normally.
    pub clients: usize,
    /// Connections accepted past `clients`: they serve reserved requests (peers) and answer
    /// `503 overloaded` to the rest.
    pub overflow: usize,
    /// TLS handshakes in progress at once.
    pub handshakes: usize,
}

impl Budget {
    /// The budget for `max_connections` under a file-descriptor limit of `fd_limit`: client
    /// connections take at most half the descriptors (the rest is for the overflow share,
    /// handshakes, outbound peer and worker sockets, sled files and logs).
    pub fn new(max_connections: usize, fd_limit: Option<u64>) -> Self {
        let by_fds = fd_limit.map_or(usize::MAX, |n| usize::try_from(n / 2).unwrap_or(usize::MAX));
        let clients = max_connections.min(by_fds).max(8);
        Self {
            clients,
            overflow: (clients / 16).clamp(8, 256),
            handshakes: (clients / 4).clamp(8, MAX_PENDING_HANDSHAKES),
        }
    }
}

/// The soft `RLIMIT_NOFILE` of this process (`None` when unlimited or unknown: not Linux).
///
/// Read from `/proc/self/limits` (no `unsafe` `getrlimit` call in this workspace).
pub fn fd_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_fd_limit(&text)
}

fn parse_fd_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Milliseconds since the first call (never 0, so 0 can mean "unset").
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

/// What one connection is doing, shared by its I/O, its service and the registry.
#[derive(Debug)]
pub(crate) struct Activity {
    accepted_ms: u64,
    last_active_ms: AtomicU64,
    /// When the first byte of the next request head arrived (0: none yet).
    head_started_ms: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    closing: AtomicBool,
    /// Signalled when the registry reclaims this connection.
    pub(crate) close: Notify,
}

/// Why a connection is closed by its watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No (complete) request head in time.
    Header,
    /// Kept alive without a request for too long.
    Idle,
}

impl Activity {
    pub(crate) fn new() -> Self {
        let now = now_ms();
        Self {
            accepted_ms: now,
            last_active_ms: AtomicU64::new(now),
            head_started_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        }
    }

    fn touched(&self, read: bool) {
        let now = now_ms();
        self.last_active_ms.store(now, Ordering::Relaxed);
        if read && self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ =
                self.head_started_ms
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// A request head was parsed: the request is in flight until its response body is dropped.
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(0, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Whether no request is in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// The timeout this connection broke, if any (only while no request is in flight).
    pub(crate) fn expired(&self, limits: &ConnLimits, now: u64) -> Option<Expired> {
        if !self.is_idle() {
            return None;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let head = self.head_started_ms.load(Ordering::Relaxed);
        if self.requests.load(Ordering::Relaxed) == 0 {
            // The first request head, counted from the accept.
            return (now.saturating_sub(self.accepted_ms) > ms(limits.header_read_timeout))
                .then_some(Expired::Header);
        }
        if head != 0 {
            return (now.saturating_sub(head) > ms(limits.header_read_timeout))
                .then_some(Expired::Header);
        }
        let last = self.last_active_ms.load(Ordering::Relaxed);
        (now.saturating_sub(last) > ms(limits.idle_timeout)).then_some(Expired::Idle)
    }
}

/// Marks a request in flight until dropped (with the response body).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_active_ms.store(now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open client connections that may be reclaimed when the cap is reached.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Registry {
    /// Registers `activity` until the returned guard is dropped.
    pub(crate) fn insert(self: &Arc<Self>, activity: Arc<Activity>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, activity);
        Registered {
            registry: self.clone(),
            id,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the least recently active connection with no request in flight (the first
    /// accepted among equals) to close; false when every connection is busy.
    pub(crate) fn reclaim_idle(&self) -> bool {
        let conns = self.lock();
        // Ties (same millisecond) go to the connection accepted first: ids grow with accepts.
        let oldest = conns
            .iter()
            .filter(|(_, a)| a.is_idle() && !a.closing.load(Ordering::Relaxed))
            .min_by_key(|(id, a)| (a.last_active_ms.load(Ordering::Relaxed), **id))
            .map(|(_, a)| a);
        match oldest {
            Some(activity) => {
                activity.closing.store(true, Ordering::Relaxed);
                activity.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from the [`Registry`] when dropped.
#[derive(Debug)]
pub(crate) struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// A count of open connections of one kind, with its limit.
#[derive(Debug)]
pub(crate) struct Slots {
    open: AtomicUsize,
    limit: usize,
    freed: Notify,
}

impl Slots {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            limit,
            freed: Notify::new(),
        })
    }

    /// A slot, waiting up to `wait` for one to be given back.
    pub(crate) async fn take_waiting(self: &Arc<Self>, wait: Duration) -> Option<Slot> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.try_take(0) {
                return Some(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// A slot if fewer than `limit + extra` are taken.
    pub(crate) fn try_take(self: &Arc<Self>, extra: usize) -> Option<Slot> {
        let max = self.limit + extra;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

/// One taken slot, given back when dropped (with the socket).
#[derive(Debug)]
pub(crate) struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

/// A connection's I/O: records activity, and holds the connection's slot for as long as the
/// socket is open, an upgraded (WebSocket) connection included.
pub(crate) struct Tracked<Io> {
    pub(crate) io: Io,
    pub(crate) activity: Arc<Activity>,
    pub(crate) _slot: Slot,
}

impl<Io: AsyncRead + Unpin> AsyncRead for Tracked<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touched(true);
        }
        polled
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Tracked<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touched(false);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touched(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Logs accept failures at most once per [`ACCEPT_LOG_PERIOD`] (with the count since) and
/// says how long to back off.
#[derive(Debug, Default)]
pub(crate) struct AcceptErrors {
    /// Consecutive failures (the back-off grows with them).
    streak: u64,
    /// Failures since the last log line.
    unlogged: u64,
    last_log: Option<Instant>,
}

/// Shortest interval between two "accept failed" log lines.
pub const ACCEPT_LOG_PERIOD: Duration = Duration::from_secs(60);

impl AcceptErrors {
    /// An accept failed: whether it concerns only that connection (retry at once), otherwise
    /// the back-off before the next attempt (out of descriptors, memory, ...).
    pub(crate) fn failed(&mut self, err: &io::Error) -> Option<Duration> {
        use io::ErrorKind::*;
        if matches!(
            err.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
        ) {
            return None;
        }
        self.streak += 1;
        self.unlogged += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= ACCEPT_LOG_PERIOD)
        {
            tracing::warn!(
                "accept failed: {err}; closing idle connections, backing off and serving the \
                 open ones ({} failures since the last report, logged at most once a minute)",
                self.unlogged
            );
            self.last_log = Some(Instant::now());
            self.unlogged = 0;
        }
        let exp = self.streak.min(6) as u32;
        Some(Duration::from_millis(10 * 2u64.pow(exp)).min(Duration::from_millis(500)))
    }

    /// An accept succeeded.
    pub(crate) fn succeeded(&mut self) {
        self.streak = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_half_the_descriptors_free() {
        let b = Budget::new(4096, Some(1024));
        assert_eq!(b.clients, 512);
        assert_eq!(b.overflow, 32);
        assert!(b.clients + b.overflow + b.handshakes < 1024);
        assert_eq!(Budget::new(4096, None).clients, 4096);
        assert_eq!(Budget::new(100, Some(1 << 20)).clients, 100);
    }

    #[test]
    fn the_fd_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_fd_limit(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_fd_limit(unlimited), None);
        if cfg!(target_os = "linux") {
            assert!(fd_limit().is_some());
        }
    }

    #[test]
    fn timeouts_apply_only_between_requests() {
        let limits = ConnLimits {
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(1000),
            ..ConnLimits::default()
        };
        let a = Arc::new(Activity::new());
        let t0 = now_ms();
        assert_eq!(a.expired(&limits, t0 + 50), None);
        // No first request head in time.
        assert_eq!(a.expired(&limits, t0 + 200), Some(Expired::Header));
        let req = a.request_started();
        assert_eq!(a.expired(&limits, t0 + 5000), None, "in flight");
        drop(req);
        let t1 = now_ms();
        assert_eq!(
            a.expired(&limits, t1 + 500),
            None,
            "idle, within the idle timeout"
        );
        assert_eq!(a.expired(&limits, t1 + 1500), Some(Expired::Idle));
        // A head that started to arrive must complete within the header timeout.
        a.touched(true);
        let t2 = now_ms();
        assert_eq!(a.expired(&limits, t2 + 200), Some(Expired::Header));
    }

    #[test]
    fn accept_errors_back_off_and_are_not_logged_in_a_loop() {
        let mut errors = AcceptErrors::default();
        let emfile = io::Error::from_raw_os_error(24);
        let first = errors.failed(&emfile).unwrap();
        let second = errors.failed(&emfile).unwrap();
        assert!(second > first);
        assert!(errors.last_log.is_some());
        assert_eq!(
            errors.unlogged, 1,
            "the second failure waits for the next report"
        );
        errors.succeeded();
        assert_eq!(
            errors.failed(&emfile),
            Some(first),
            "the back-off starts over"
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(errors.failed(&reset), None);
    }

    #[test]
    fn slots_are_counted_until_dropped() {
        let slots = Slots::new(2);
        let a = slots.try_take(0).unwrap();
        let _b = slots.try_take(0).unwrap();
        assert!(slots.try_take(0).is_none());
        let c = slots.try_take(1).unwrap();
        assert!(slots.try_take(1).is_none());
        drop(a);
        drop(c);
        assert!(slots.try_take(0).is_some());
    }

    #[test]
    fn the_registry_reclaims_the_least_recently_active_idle_connection() {
        let registry = Arc::new(Registry::default());
        let old = Arc::new(Activity::new());
        std::thread::sleep(Duration::from_millis(5));
        let busy = Arc::new(Activity::new());
        let recent = Arc::new(Activity::new());
        busy.last_active_ms.store(0, Ordering::Relaxed);
        let _g1 = registry.insert(old.clone());
        let _g2 = registry.insert(busy.clone());
        let _g3 = registry.insert(recent.clone());
        let _req = busy.request_started();
        assert!(registry.reclaim_idle());
        assert!(old.closing.load(Ordering::Relaxed));
        assert!(registry.reclaim_idle());
        assert!(recent.closing.load(Ordering::Relaxed));
        assert!(!registry.reclaim_idle(), "the busy one is never reclaimed");
        assert!(!busy.closing.load(Ordering::Relaxed));
    }
}
