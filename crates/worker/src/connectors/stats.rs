//! Health and counters of one connector of a pipeline: an output connector (HTTP, file, console,
//! Kafka), shared by its sink (which queues) and its task (which delivers), or a source (Kafka,
//! MQTT, NATS), shared by the feed and the connection that reads it. Lock-free counters; the
//! health's reason sits behind a mutex taken only when it changes or is read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use varpulis_api::worker::ConnectorStatus;

/// The counters and health of one connector (output, or a source).
#[derive(Debug)]
pub struct ConnectorStats {
    name: String,
    kind: &'static str,
    /// A source (reads for the pipeline) rather than an output connector.
    source: bool,
    /// Messages or records a source received.
    pub received: AtomicU64,
    /// Events delivered.
    pub sent: AtomicU64,
    /// Events given up after the retries.
    pub given_up: AtomicU64,
    /// Events queued and not yet delivered or given up.
    pub queued: AtomicU64,
    /// Requests or writes made.
    pub requests: AtomicU64,
    /// Failed attempts that were retried.
    pub retries: AtomicU64,
    /// The last error while the connector is down.
    down: Mutex<Option<String>>,
}

impl ConnectorStats {
    /// Fresh counters of connector `name` of `kind`, healthy.
    pub fn new(name: &str, kind: &'static str) -> Self {
        Self::with_role(name, kind, false)
    }

    /// Fresh counters of source connector `name` of `kind`, healthy.
    pub fn source(name: &str, kind: &'static str) -> Self {
        Self::with_role(name, kind, true)
    }

    fn with_role(name: &str, kind: &'static str, source: bool) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            source,
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            given_up: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            down: Mutex::new(None),
        }
    }

    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connector's kind.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Removes `n` from the queued gauge.
    pub fn dequeued(&self, n: u64) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(n))
            });
    }

    /// Marks the connector down with `reason` (its last error).
    pub fn set_down(&self, reason: String) {
        *self.down.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// Marks the connector healthy again.
    pub fn set_ok(&self) {
        let mut d = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_some() {
            *d = None;
        }
    }

    /// Why the connector is down, if it is.
    pub fn down_reason(&self) -> Option<String> {
        self.down.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The API view.
    pub fn status(&self) -> ConnectorStatus {
        let reason = self.down_reason();
        ConnectorStatus {
            name: self.name.clone(),
            kind: self.kind.to_owned(),
            health: if reason.is_some() { "down" } else { "ok" }.to_owned(),
            status_reason: reason,
            role: self.source.then(|| "source".to_owned()),
            events_received: self.source.then(|| self.received.load(Ordering::Relaxed)),
            events_sent: self.sent.load(Ordering::Relaxed),
            events_given_up: self.given_up.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            enrich: None,
        }
    }
}
