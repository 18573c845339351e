//! A deployed pipeline: its engine behind a `std::sync::Mutex`, counters, status and the
//! handles of its connector tasks; plus the registry of pipelines keyed by id.
//!
//! Invariant: the engine lock is held only while the engine runs (CPU-bound, no `.await`
//! inside); publishing to sinks happens after the lock is released.
//!
//! A pipeline's inputs (MQTT `.from`, NATS subscriptions, inbound routes) run as a [`Feed`]:
//! the source connections and the ingest loop they fill. A pipeline deployed `paused` (the new
//! version of a rolling update) has none until the hand-over, which moves the old pipeline's
//! feed over (same connections, same broker sessions, same queued messages) when the sources
//! are the same, or else closes the old sources and tells the caller to start the new ones.

use crate::engine::{Event, Output, PipelineEngine};
use rumqttc::{AsyncClient, QoS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use varpulis_api::worker::{BatchError, PipelineInfo, PipelineMetrics};

/// Output events buffered per live subscriber before it lags.
const OUTPUT_STREAM_CAPACITY: usize = 1024;

/// A connector `.to` outputs are published through.
#[derive(Debug, Clone)]
pub struct SinkRoute {
    /// Connector name (matches `SinkBinding::connector` of the outputs).
    pub connector: String,
    /// The connector's default topic, used when the `.to` names none.
    pub default_topic: Option<String>,
    /// QoS of the publish.
    pub qos: QoS,
    /// The connector's client; `publish().await` waits when its queue is full (backpressure).
    pub client: AsyncClient,
}

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
        })
    }

    /// The pipeline events go to now, while it exists.
    pub fn target(&self) -> Option<Arc<Pipeline>> {
        self.target
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
    }

    /// A connection of this feed failed: logs `reason`, marks the target pipeline degraded
    /// with it and waits `backoff` (doubled afterwards, up to `max`). `false` when the
    /// connections closed while waiting.
    pub async fn back_off(&self, reason: String, backoff: &mut Duration, max: Duration) -> bool {
        tracing::warn!("{reason}; retrying in {backoff:?}");
        if let Some(p) = self.target() {
            p.set_degraded(reason);
        }
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
struct Sources {
    plan: Option<crate::connectors::Plan>,
    signature: String,
    feed: Option<Arc<Feed>>,
    /// The previous version's feed being closed, to wait for before starting `plan`.
    replacing: Option<Arc<Feed>>,
}

#[derive(Debug, Clone, Default)]
struct Status {
    degraded: Option<String>,
    stopped: bool,
}

/// One running pipeline.
#[derive(Debug)]
pub struct Pipeline {
    /// Id on this worker.
    pub id: String,
    /// Name given at deploy.
    pub name: String,
    /// VPL source as deployed (idempotent redeploys compare it).
    pub source: String,
    /// Placement epoch from the coordinator.
    pub epoch: Option<u64>,
    /// The engine; std mutex because processing is CPU-bound and never awaits.
    engine: Mutex<PipelineEngine>,
    events_in: AtomicU64,
    events_out: AtomicU64,
    errors: AtomicU64,
    /// Payloads from connectors that could not be decoded.
    dropped: AtomicU64,
    status: Mutex<Status>,
    /// Sink routes, set once when connectors start (after the pipeline exists).
    sinks: OnceLock<Vec<SinkRoute>>,
    /// Cancelled when the pipeline is deleted or the worker shuts down.
    pub cancel: CancellationToken,
    /// Inter-pipeline routes: outbound publisher and counters.
    pub routes: crate::dataplane::RouteState,
    /// NATS `.to` sinks (connectors/nats.rs).
    pub nats: crate::connectors::nats::NatsSinks,
    /// Live copy of the output events for `GET .../output` subscribers (routes/output.rs).
    outputs: tokio::sync::broadcast::Sender<Arc<serde_json::Value>>,
    /// Set by a handover (rolling update): events and checkpoints go to this pipeline instead.
    /// Written only while the engine lock is held, so `process` sees it consistently.
    forward: RwLock<Option<Arc<Pipeline>>>,
    /// Source plan and running feed (none while paused).
    sources: Mutex<Sources>,
}

impl Pipeline {
    /// Wraps a compiled engine.
    pub fn new(
        id: String,
        name: String,
        source: String,
        epoch: Option<u64>,
        engine: PipelineEngine,
    ) -> Self {
        Self {
            id,
            name,
            source,
            epoch,
            engine: Mutex::new(engine),
            events_in: AtomicU64::new(0),
            events_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            status: Mutex::new(Status::default()),
            sinks: OnceLock::new(),
            cancel: CancellationToken::new(),
            routes: crate::dataplane::RouteState::default(),
            nats: crate::connectors::nats::NatsSinks::default(),
            outputs: tokio::sync::broadcast::channel(OUTPUT_STREAM_CAPACITY).0,
            forward: RwLock::new(None),
            sources: Mutex::new(Sources::default()),
        }
    }

    fn lock_sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the pipeline's sources (a sources-only plan; `None` without sources) and their
    /// signature; they start with [`crate::connectors::start_sources`].
    pub fn set_source_plan(&self, plan: Option<crate::connectors::Plan>, signature: String) {
        let mut s = self.lock_sources();
        s.plan = plan;
        s.signature = signature;
    }

    /// A copy of the source plan, if the pipeline has sources.
    pub fn source_plan(&self) -> Option<(crate::connectors::Plan, String)> {
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

    /// Waits (at most `timeout`) until the sources this pipeline replaces at a hand-over are
    /// closed and drained, so its own never overlap them (no message read twice).
    pub async fn wait_replaced(&self, timeout: std::time::Duration) {
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
    fn switch_sources(&self, to: &Arc<Pipeline>) -> SourceSwitch {
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

    /// The pipeline this one hands its events to, if it was handed over.
    pub fn forward_target(&self) -> Option<Arc<Pipeline>> {
        self.forward
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Subscribes to the live output events (JSON, as in inject answers).
    pub fn subscribe_outputs(&self) -> tokio::sync::broadcast::Receiver<Arc<serde_json::Value>> {
        self.outputs.subscribe()
    }

    /// Copies outputs to the live subscribers; never blocks (a slow subscriber lags instead).
    fn stream_outputs(&self, outputs: &[Output]) {
        if self.outputs.receiver_count() == 0 {
            return;
        }
        for o in outputs.iter().filter(|o| o.is_output) {
            let _ = self.outputs.send(Arc::new(o.to_json()));
        }
    }

    /// Hands this pipeline over to `to` (rolling update): under both engine locks, optionally
    /// moves the engine state and event count into `to`, makes this pipeline forward every
    /// later event and checkpoint to `to`, and switches the sources ([`SourceSwitch`]): the
    /// old pipeline stops consuming and the new one starts at that point, so no input is
    /// processed by both or by neither. Returns `(events processed, already handed over,
    /// what happened to the sources)`.
    pub fn handover_to(
        &self,
        to: &Arc<Pipeline>,
        keep_state: bool,
    ) -> Result<(u64, bool, SourceSwitch), String> {
        if std::ptr::eq(self, Arc::as_ptr(to)) {
            return Err("a pipeline cannot hand over to itself".into());
        }
        let engine = self.lock_engine();
        if let Some(current) = self.forward_target() {
            return if Arc::ptr_eq(&current, to) {
                Ok((
                    self.events_in.load(Ordering::Relaxed),
                    true,
                    SourceSwitch::Unchanged,
                ))
            } else {
                Err(format!("already handed over to '{}'", current.id))
            };
        }
        let processed = self.events_in.load(Ordering::Relaxed);
        let switch = {
            let mut target = to.lock_engine();
            if keep_state {
                let state = engine.checkpoint()?;
                target.restore_compatible(&state)?;
                to.events_in.store(processed, Ordering::Relaxed);
            }
            // A reverse handover (rollback of a half-done update) takes the traffic back.
            *to.forward.write().unwrap_or_else(|p| p.into_inner()) = None;
            *self.forward.write().unwrap_or_else(|p| p.into_inner()) = Some(to.clone());
            self.switch_sources(to)
        };
        drop(engine);
        Ok((processed, false, switch))
    }

    fn lock_engine(&self) -> std::sync::MutexGuard<'_, PipelineEngine> {
        // A panic while processing poisons the lock; the engine state is still the best we have.
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers the engine's timer ticks due at `now_ns` (wall clock), like [`Pipeline::process_in`]
    /// for the outputs they produce; returns the pipeline that ran them (a hand-over may forward).
    pub fn tick_in(self: &Arc<Self>, now_ns: i64, out: &mut Vec<Output>) -> Arc<Pipeline> {
        let before = out.len();
        let mut engine = self.lock_engine();
        if let Some(next) = self.forward_target() {
            drop(engine);
            return next.tick_in(now_ns, out);
        }
        engine.advance_time(now_ns, out);
        drop(engine);
        let produced = out[before..].iter().filter(|o| o.is_output).count();
        self.events_out
            .fetch_add(produced as u64, Ordering::Relaxed);
        self.stream_outputs(&out[before..]);
        self.clone()
    }

    /// The engine's own counters (of the pipeline that runs the events after a hand-over).
    pub fn engine_stats(&self) -> varpulis_runtime::EngineStats {
        if let Some(next) = self.forward_target() {
            return next.engine_stats();
        }
        self.lock_engine().stats()
    }

    /// When the engine's next timer tick is due (`None` without timers).
    pub fn next_timer_deadline(&self) -> Option<i64> {
        self.lock_engine().next_timer_deadline()
    }

    /// Runs events through the engine under one lock hold; runtime errors are collected
    /// per event (index in `events`) and processing continues.
    pub fn process(&self, events: &[Event], out: &mut Vec<Output>, errors: &mut Vec<BatchError>) {
        let _ = self.run(events, out, errors);
    }

    /// Like [`Pipeline::process`], and returns the pipeline whose engine ran the events (the
    /// one a hand-over forwarded them to, if any): its sinks publish the outputs.
    pub fn process_in(
        self: &Arc<Self>,
        events: &[Event],
        out: &mut Vec<Output>,
        errors: &mut Vec<BatchError>,
    ) -> Arc<Pipeline> {
        self.run(events, out, errors)
            .unwrap_or_else(|| self.clone())
    }

    /// Processes here, or forwards; returns the pipeline that processed when it is not `self`.
    fn run(
        &self,
        events: &[Event],
        out: &mut Vec<Output>,
        errors: &mut Vec<BatchError>,
    ) -> Option<Arc<Pipeline>> {
        let before = out.len();
        let mut n_err = 0u64;
        {
            let mut engine = self.lock_engine();
            if let Some(next) = self.forward_target() {
                drop(engine);
                let deeper = next.run(events, out, errors);
                self.stream_outputs(&out[before..]);
                return Some(deeper.unwrap_or(next));
            }
            for (index, ev) in events.iter().enumerate() {
                if let Err(error) = engine.process(ev, out) {
                    n_err += 1;
                    errors.push(BatchError { index, error });
                }
            }
        }
        self.events_in
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let produced = out[before..].iter().filter(|o| o.is_output).count();
        self.events_out
            .fetch_add(produced as u64, Ordering::Relaxed);
        if n_err > 0 {
            self.errors.fetch_add(n_err, Ordering::Relaxed);
        }
        self.stream_outputs(&out[before..]);
        None
    }

    /// Publishes outputs to their `.to` sinks. Waits when a connector queue is full; a publish
    /// error is logged and counted (VPL.md §9: not fatal).
    pub async fn publish(&self, outputs: &[Output]) {
        self.routes.publish(outputs).await;
        let nats_failed = self.nats.publish(&self.id, outputs).await;
        self.errors.fetch_add(nats_failed, Ordering::Relaxed);
        let Some(routes) = self.sinks.get() else {
            return;
        };
        if routes.is_empty() {
            return;
        }
        for o in outputs {
            for binding in o.sinks() {
                let Some(route) = routes.iter().find(|r| r.connector == binding.connector) else {
                    continue;
                };
                let Some(topic) = binding
                    .topic()
                    .map(str::to_owned)
                    .or_else(|| route.default_topic.clone())
                else {
                    continue;
                };
                let payload = serde_json::to_vec(&o.event.to_flat_json()).unwrap_or_default();
                if let Err(e) = route
                    .client
                    .publish(topic.clone(), route.qos, false, payload)
                    .await
                {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(pipeline = %self.id, %topic, error = %e, "publish failed");
                }
            }
        }
    }

    /// Installs the sink routes (once).
    pub fn set_sinks(&self, sinks: Vec<SinkRoute>) {
        let _ = self.sinks.set(sinks);
    }

    /// Serialises the engine state.
    pub fn checkpoint(&self) -> Result<(Vec<u8>, u64), String> {
        if let Some(next) = self.forward_target() {
            return next.checkpoint();
        }
        let engine = self.lock_engine();
        let bytes = engine.checkpoint()?;
        Ok((bytes, self.events_in.load(Ordering::Relaxed)))
    }

    /// Replaces the engine state and the processed-events counter.
    pub fn restore(&self, state: &[u8], events_processed: u64) -> Result<(), String> {
        if let Some(next) = self.forward_target() {
            return next.restore(state, events_processed);
        }
        self.lock_engine().restore(state)?;
        self.events_in.store(events_processed, Ordering::Relaxed);
        Ok(())
    }

    /// Marks the pipeline degraded (a connector failed) with a reason.
    pub fn set_degraded(&self, reason: impl Into<String>) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.degraded = Some(reason.into());
    }

    /// Clears a degraded mark.
    pub fn clear_degraded(&self) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .degraded = None;
    }

    /// Marks the pipeline stopped and cancels its tasks, and its feed unless it was handed over.
    pub fn stop(&self) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stopped = true;
        let mut sources = self.lock_sources();
        self.cancel.cancel();
        if let Some(feed) = sources.feed.take() {
            feed.stop();
        }
    }

    /// Counts a payload that could not be decoded.
    pub fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// `running`, `degraded` or `stopped`, with the reason when degraded.
    pub fn status(&self) -> (&'static str, Option<String>) {
        let s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if s.stopped {
            ("stopped", None)
        } else if let Some(r) = &s.degraded {
            ("degraded", Some(r.clone()))
        } else {
            ("running", None)
        }
    }

    /// Events accepted so far.
    pub fn events_in(&self) -> u64 {
        self.events_in.load(Ordering::Relaxed)
    }

    /// `(events_in, events_out, errors, dropped)`.
    pub fn counters(&self) -> (u64, u64, u64, u64) {
        (
            self.events_in.load(Ordering::Relaxed),
            self.events_out.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }

    /// The API view.
    pub fn info(&self) -> PipelineInfo {
        let (status, status_reason) = self.status();
        let (events_in, events_out, errors, _) = self.counters();
        PipelineInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            status: status.to_owned(),
            source: self.source.clone(),
            events_in,
            events_out,
            errors,
            status_reason,
            epoch: self.epoch,
        }
    }

    /// The metrics view.
    pub fn metrics(&self) -> PipelineMetrics {
        let (events_in, events_out, errors, _) = self.counters();
        PipelineMetrics {
            pipeline_id: self.id.clone(),
            events_in,
            events_out,
            errors,
        }
    }
}

/// All pipelines of this worker, by id. The lock is held only to clone an `Arc` out.
#[derive(Debug, Default)]
pub struct Registry {
    inner: RwLock<HashMap<String, Arc<Pipeline>>>,
}

impl Registry {
    /// The pipeline with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Pipeline>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Inserts unless the id is taken (returns the existing pipeline) or `max` pipelines
    /// already run (returns `Ok(false)`).
    pub fn insert(&self, p: Arc<Pipeline>, max: usize) -> Result<bool, Arc<Pipeline>> {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(&p.id) {
            return Err(existing.clone());
        }
        if map.len() >= max {
            return Ok(false);
        }
        map.insert(p.id.clone(), p);
        Ok(true)
    }

    /// Removes and returns the pipeline.
    pub fn remove(&self, id: &str) -> Option<Arc<Pipeline>> {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Every pipeline, sorted by name then id.
    pub fn all(&self) -> Vec<Arc<Pipeline>> {
        let mut v: Vec<_> = self
            .inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        v
    }

    /// Number of pipelines.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::connectors::Plan;

    const COUNTER: &str = "var count = 0\nfn bump(v: int):\n    count := count + 1\n    emit Count(n: count, v: v)\nstream S = Tick .process(bump(value))\n";

    fn pipeline(id: &str, signature: Option<&str>) -> Arc<Pipeline> {
        let engine = PipelineEngine::compile(COUNTER, Vec::new()).unwrap();
        let p = Arc::new(Pipeline::new(
            id.into(),
            id.into(),
            COUNTER.into(),
            None,
            engine,
        ));
        if let Some(sig) = signature {
            p.set_source_plan(Some(Plan::default()), sig.into());
        }
        p
    }

    fn tick(p: &Arc<Pipeline>, value: i64) -> (Arc<Pipeline>, i64) {
        let ev = Event::from_json(
            "Tick",
            serde_json::json!({"value": value}).as_object().unwrap(),
            0,
        );
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let ran = p.process_in(&[ev], &mut out, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let n = out[0].to_json()["fields"]["n"].as_i64().unwrap();
        (ran, n)
    }

    #[test]
    fn same_sources_are_taken_over_and_survive_the_old_pipeline() {
        let old = pipeline("old", Some("mqtt A in/#"));
        let feed = Feed::new(&old, "mqtt A in/#".into());
        old.set_feed(feed.clone());
        let new = pipeline("new", Some("mqtt A in/#"));
        assert!(new.is_paused() && !old.is_paused());
        assert_eq!(tick(&old, 1).1, 1);

        let (_, already, switch) = old.handover_to(&new, true).unwrap();
        assert_eq!((already, switch), (false, SourceSwitch::TakenOver));
        assert!(Arc::ptr_eq(&feed.target().unwrap(), &new));
        assert!(!new.is_paused());
        // An event read by the old feed before the switch is processed once, by the new engine.
        let (ran, n) = tick(&old, 2);
        assert!(Arc::ptr_eq(&ran, &new));
        assert_eq!(n, 2);
        // A repeated hand-over changes nothing.
        assert_eq!(
            old.handover_to(&new, true).unwrap().2,
            SourceSwitch::Unchanged
        );
        // Handing back (an abort) returns the same feed, state included, and again forward.
        assert_eq!(
            new.handover_to(&old, true).unwrap().2,
            SourceSwitch::TakenOver
        );
        assert!(Arc::ptr_eq(&feed.target().unwrap(), &old));
        let (ran, n) = tick(&new, 3);
        assert!(Arc::ptr_eq(&ran, &old));
        assert_eq!(n, 3);
        assert_eq!(
            old.handover_to(&new, true).unwrap().2,
            SourceSwitch::TakenOver
        );
        // Deleting the old pipeline keeps the feed; deleting its owner stops it.
        old.stop();
        assert!(!feed.connections.is_cancelled() && !feed.ingest.is_cancelled());
        new.stop();
        assert!(feed.connections.is_cancelled() && feed.ingest.is_cancelled());
    }

    #[test]
    fn changed_sources_close_the_old_ones_and_start_the_new() {
        let old = pipeline("old", Some("mqtt A in/#"));
        let feed = Feed::new(&old, "mqtt A in/#".into());
        old.set_feed(feed.clone());
        let new = pipeline("new", Some("mqtt A other/#"));
        let switch = old.handover_to(&new, true).unwrap().2;
        assert_eq!(switch, SourceSwitch::StartNew);
        // The old connections close; what they queued still drains into the new pipeline.
        assert!(feed.connections.is_cancelled() && !feed.ingest.is_cancelled());
        assert!(Arc::ptr_eq(&feed.target().unwrap(), &new));
        assert!(new.is_paused(), "the caller starts the new sources");
    }

    #[test]
    fn a_paused_pipeline_deleted_before_the_switch_leaves_the_old_one_consuming() {
        let old = pipeline("old", Some("mqtt A in/#"));
        let feed = Feed::new(&old, "mqtt A in/#".into());
        old.set_feed(feed.clone());
        let new = pipeline("new", Some("mqtt A in/#"));
        new.stop();
        assert!(!feed.connections.is_cancelled());
        assert_eq!(tick(&old, 1).1, 1);
        // A feed installed on a deleted pipeline is stopped at once.
        let late = Feed::new(&new, String::new());
        new.set_feed(late.clone());
        assert!(late.ingest.is_cancelled());
        // Without sources on either side a hand-over switches nothing.
        let (a, b) = (pipeline("a", None), pipeline("b", None));
        assert_eq!(a.handover_to(&b, false).unwrap().2, SourceSwitch::Unchanged);
        assert!(old.handover_to(&old, true).is_err());
    }
}
