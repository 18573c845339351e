//! A pipeline's inputs (MQTT `.from`, NATS subscriptions, inbound routes): the source plan it
//! was deployed with and the running [`Feed`] (the source connections and the ingest loop they
//! fill).
//!
//! A pipeline deployed `paused` (the new version of a rolling update) has no feed until the
//! hand-over, which moves the old pipeline's feed over (same connections, same broker
//! sessions, same queued messages) when the sources are the same, or else closes the old
//! sources and tells the caller to start the new ones ([`SourceSwitch`]).

use super::Pipeline;
use crate::connectors::plan::Plan;
use crate::connectors::stats::ConnectorStats;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The source connections of a pipeline and the ingest loop they feed. It outlives the
/// pipeline that started it when a rolling update hands it over to the next version.
#[derive(Debug)]
pub struct Feed {
    /// The pipeline the events go to (weak: the registry owns pipelines).
    target: RwLock<Weak<Pipeline>>,
    /// Closes the connections (an MQTT subscriber gracefully while `ingest` lives: it passes
    /// on what the broker already sent); the ingest loop then drains the queue and ends.
    pub connections: CancellationToken,
    /// Stops the ingest loop at once (its pipeline is deleted).
    pub ingest: CancellationToken,
    /// What the sources are (connectors, topics, sessions): a new version takes the feed over
    /// only when its own sources are the same.
    pub signature: String,
    /// Cancelled when the ingest loop ended (every connection closed, the queue drained).
    pub done: CancellationToken,
    /// Health and counters of each source connection (shown under the pipeline's
    /// `connectors` with `role: "source"`); they move with the feed at a hand-over.
    health: Mutex<Vec<Arc<ConnectorStats>>>,
}

impl Feed {
    /// A feed of `target`'s sources with fresh cancellation tokens.
    pub fn new(target: &Arc<Pipeline>, signature: String) -> Arc<Self> {
        Arc::new(Self {
            target: RwLock::new(Arc::downgrade(target)),
            connections: CancellationToken::new(),
            ingest: CancellationToken::new(),
            signature,
            done: CancellationToken::new(),
            health: Mutex::default(),
        })
    }

    /// The owner of output-side connections: stops with the pipeline, never handed over.
    pub fn sinks_of(pipeline: &Arc<Pipeline>) -> Arc<Self> {
        Arc::new(Self {
            target: RwLock::new(Arc::downgrade(pipeline)),
            connections: pipeline.cancel.clone(),
            ingest: pipeline.cancel.clone(),
            signature: String::new(),
            done: CancellationToken::new(),
            health: Mutex::default(),
        })
    }

    /// The pipeline events go to now, while it exists.
    pub fn target(&self) -> Option<Arc<Pipeline>> {
        self.target
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
    }

    /// The health and counters of source connector `name` of `kind` (created healthy the
    /// first time a connection of the feed asks for it).
    pub fn source_health(&self, name: &str, kind: &'static str) -> Arc<ConnectorStats> {
        let mut all = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = all.iter().find(|h| h.name() == name && h.kind() == kind) {
            return h.clone();
        }
        let h = Arc::new(ConnectorStats::source(name, kind));
        all.push(h.clone());
        h
    }

    /// The API view of the feed's source connections.
    pub fn source_statuses(&self) -> Vec<varpulis_api::worker::ConnectorStatus> {
        let all = self.health.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().map(|h| h.status()).collect()
    }

    /// Runs `f` on the pipeline the feed works for now (after a hand-over, the new one).
    pub fn on_target(&self, f: impl FnOnce(&Pipeline)) {
        if let Some(p) = self.target() {
            f(&p);
        }
    }

    /// A connection of this feed failed: logs `reason`, marks the target pipeline degraded
    /// with it and waits `backoff` (doubled afterwards, up to `max`). `false` when the
    /// connections closed while waiting.
    pub async fn back_off(&self, reason: String, backoff: &mut Duration, max: Duration) -> bool {
        tracing::warn!("{reason}; retrying in {backoff:?}");
        self.on_target(|p| p.set_degraded(reason));
        tokio::select! {
            () = self.connections.cancelled() => return false,
            () = tokio::time::sleep(*backoff) => {},
        }
        *backoff = (*backoff * 2).min(max);
        true
    }

    fn retarget(&self, to: &Arc<Pipeline>) {
        *self.target.write().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(to);
    }

    fn stop(&self) {
        self.connections.cancel();
        self.ingest.cancel();
    }
}

/// What a hand-over did with the sources of the two pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceSwitch {
    /// Nothing to do: no sources, or the target consumes by itself already.
    Unchanged,
    /// The target took the old pipeline's feed over (same sources).
    TakenOver,
    /// The target's sources differ: the old ones are closing (what they received still
    /// reaches the target) and the caller must start the target's own once they are gone
    /// ([`Pipeline::wait_replaced`], then `connectors::start_sources`).
    StartNew,
}

/// A pipeline's sources: the plan (kept to start them later) and the running feed.
#[derive(Debug, Default)]
pub(super) struct Sources {
    plan: Option<Plan>,
    signature: String,
    feed: Option<Arc<Feed>>,
    /// The previous version's feed being closed, to wait for before starting `plan`.
    replacing: Option<Arc<Feed>>,
}

/// Whether the broker acknowledged a pipeline's inbound route subscriptions (a deploy waits
/// for it, so a group reported running does not lose the first routed events).
#[derive(Debug, Default)]
pub(super) struct Subscription {
    expected: AtomicBool,
    acked: tokio::sync::Notify,
}

impl Pipeline {
    fn lock_sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the pipeline's sources (a sources-only plan; `None` without sources) and their
    /// signature; they start with `connectors::start_sources`.
    pub fn set_source_plan(&self, plan: Option<Plan>) {
        let mut s = self.lock_sources();
        s.signature = plan.as_ref().map(Plan::signature).unwrap_or_default();
        s.plan = plan;
    }

    /// A copy of the source plan and its signature, if the pipeline has sources.
    pub fn source_plan(&self) -> Option<(Plan, String)> {
        let s = self.lock_sources();
        s.plan.clone().map(|p| (p, s.signature.clone()))
    }

    /// Installs the running feed; stops it at once when the pipeline was deleted meanwhile.
    pub fn set_feed(&self, feed: Arc<Feed>) {
        let mut s = self.lock_sources();
        if self.cancel.is_cancelled() {
            feed.stop();
            return;
        }
        if let Some(old) = s.feed.replace(feed) {
            old.stop();
        }
    }

    /// The API view of the running feed's source connections (none without a feed).
    pub(super) fn source_statuses(&self) -> Vec<varpulis_api::worker::ConnectorStatus> {
        let feed = self.lock_sources().feed.clone();
        feed.map(|f| f.source_statuses()).unwrap_or_default()
    }

    /// Whether a feed runs.
    pub(super) fn has_feed(&self) -> bool {
        self.lock_sources().feed.is_some()
    }

    /// Stops the feed unless it was handed over (called when the pipeline stops).
    pub(super) fn stop_feed(&self) {
        if let Some(feed) = self.lock_sources().feed.take() {
            feed.stop();
        }
    }

    /// Waits (at most `timeout`) until the sources this pipeline replaces at a hand-over are
    /// closed and drained, so its own never overlap them (no message read twice).
    pub async fn wait_replaced(&self, timeout: Duration) {
        let replacing = self.lock_sources().replacing.take();
        if let Some(old) = replacing {
            if tokio::time::timeout(timeout, old.done.cancelled())
                .await
                .is_err()
            {
                tracing::warn!(pipeline = %self.id, "replaced sources still open; starting anyway");
            }
        }
    }

    /// Whether the pipeline has sources that are not consumed yet (deployed paused).
    pub fn is_paused(&self) -> bool {
        let s = self.lock_sources();
        s.plan.is_some() && s.feed.is_none()
    }

    /// Moves or replaces the sources at a hand-over to `to` (called under both engine locks).
    pub(super) fn switch_sources(&self, to: &Arc<Pipeline>) -> SourceSwitch {
        let mut from = self.lock_sources();
        let mut target = to.lock_sources();
        if target.feed.is_some() {
            // Deployed unpaused (an older coordinator): it consumes by itself already.
            return SourceSwitch::Unchanged;
        }
        let start = if target.plan.is_some() {
            SourceSwitch::StartNew
        } else {
            SourceSwitch::Unchanged
        };
        match from.feed.take() {
            Some(feed) if target.plan.is_some() && feed.signature == target.signature => {
                feed.retarget(to);
                target.feed = Some(feed);
                SourceSwitch::TakenOver
            }
            Some(feed) => {
                // What the old connections received still reaches the target, then they end.
                feed.retarget(to);
                feed.connections.cancel();
                target.replacing = Some(feed);
                start
            }
            None => start,
        }
    }

    /// The pipeline has inbound routes: a deploy waits for their subscription.
    pub fn expect_subscription(&self) {
        self.subscription.expected.store(true, Ordering::Relaxed);
    }

    /// The broker acknowledged the inbound route subscriptions.
    pub fn subscription_acked(&self) {
        self.subscription.acked.notify_one();
    }

    /// Waits (at most `timeout`) until the inbound routes are subscribed; returns at once
    /// without inbound routes. Returns whether the subscription is known to be active.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        if !self.subscription.expected.load(Ordering::Relaxed) {
            return true;
        }
        tokio::time::timeout(timeout, self.subscription.acked.notified())
            .await
            .is_ok()
    }
}
