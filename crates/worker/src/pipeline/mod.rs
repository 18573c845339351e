//! A deployed pipeline: its engine (run on its own thread), counters, status, sinks and
//! sources; plus the registry of pipelines keyed by id.
//!
//! - [`executor`]: the pipeline's engine thread and its bounded command queue.
//! - [`processing`]: running events, with the budgets (output cap, `failed` after repeated
//!   budget errors), chunked so memory stays bounded.
//! - [`checkpoint`]: state out and in.
//! - [`handover`]: the last step of a rolling update.
//! - [`sources`]: the inputs ([`Feed`]) and how a hand-over switches them.
//! - [`registry`]: the pipelines of the worker.
//!
//! Invariants: the engine lock is only taken on a pipeline engine thread (never on the async
//! reactor) and is held only while the engine runs; publishing to sinks happens after it is
//! released. The forward pointer of a hand-over is written only under the engine lock, so
//! processing sees it consistently.

mod checkpoint;
mod executor;
mod handover;
mod processing;
mod registry;
mod sources;

pub use checkpoint::CHECKPOINT_VERSION;
pub use handover::HandedOver;
pub use processing::{Chunk, EventError, FaultKind, Outcome, CHUNK_OUTPUTS};
pub use registry::Registry;
pub use sources::{Feed, SourceSwitch};

use crate::config::PipelineLimits;
use crate::connectors::sink::Sink;
use crate::counters::Counters;
use crate::engine::{Output, PipelineEngine};
use crate::error::WorkerError;
use crate::lease::Lease;
use executor::Executor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use tokio_util::sync::CancellationToken;
use varpulis_api::worker::{ConnectorStatus, PipelineInfo, PipelineMetrics};

/// Output events buffered per live subscriber before it lags.
const OUTPUT_STREAM_CAPACITY: usize = 1024;

/// The engine and what is guarded with it.
#[derive(Debug)]
struct EngineSlot {
    engine: PipelineEngine,
    /// Consecutive events that exceeded a budget.
    budget_streak: u32,
}

#[derive(Debug, Clone, Default)]
struct Status {
    degraded: Option<String>,
    failed: Option<String>,
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
    /// Counters, shared with the sinks and sources.
    pub counters: Counters,
    /// Cancelled when the pipeline is deleted or the worker shuts down.
    pub cancel: CancellationToken,
    /// The engine; a std mutex because processing is CPU-bound and never awaits.
    engine: Mutex<EngineSlot>,
    /// The thread the engine runs on.
    executor: Executor,
    limits: PipelineLimits,
    status: Mutex<Status>,
    /// Output connections, set once when connectors start (after the pipeline exists).
    sinks: OnceLock<Vec<Box<dyn Sink>>>,
    /// Live copy of the output events for `GET .../output` subscribers (routes/output.rs).
    outputs: tokio::sync::broadcast::Sender<Arc<serde_json::Value>>,
    /// Set by a handover (rolling update): events and checkpoints go to this pipeline instead.
    forward: RwLock<Option<Arc<Pipeline>>>,
    /// Source plan and running feed (none while paused).
    sources: Mutex<sources::Sources>,
    /// Acknowledgement of the inbound route subscriptions.
    subscription: sources::Subscription,
    /// The worker's lease, for coordinator-deployed pipelines: fenced while it does not hold.
    lease: OnceLock<Arc<Lease>>,
    /// The fence paused (or kept from starting) this pipeline's sources: lifting it restarts
    /// them.
    fence_paused: AtomicBool,
}

impl Pipeline {
    /// Wraps a compiled engine and starts its thread.
    pub fn new(
        id: String,
        name: String,
        source: String,
        epoch: Option<u64>,
        engine: PipelineEngine,
        limits: PipelineLimits,
    ) -> Result<Self, WorkerError> {
        let tail: Vec<char> = id.chars().filter(char::is_ascii_alphanumeric).collect();
        let thread = format!(
            "vp-{}",
            tail[tail.len().saturating_sub(12)..]
                .iter()
                .collect::<String>()
        );
        let executor = Executor::start(thread, limits.queue_capacity)
            .map_err(|e| WorkerError::Internal(format!("cannot start a pipeline thread: {e}")))?;
        Ok(Self {
            id,
            name,
            source,
            epoch,
            counters: Counters::default(),
            cancel: CancellationToken::new(),
            engine: Mutex::new(EngineSlot {
                engine,
                budget_streak: 0,
            }),
            executor,
            limits,
            status: Mutex::new(Status::default()),
            sinks: OnceLock::new(),
            outputs: tokio::sync::broadcast::channel(OUTPUT_STREAM_CAPACITY).0,
            forward: RwLock::new(None),
            sources: Mutex::new(sources::Sources::default()),
            subscription: sources::Subscription::default(),
            lease: OnceLock::new(),
            fence_paused: AtomicBool::new(false),
        })
    }

    /// The placement a coordinator-deployed pipeline is a copy of: its id without the
    /// `-e{epoch}` suffix (`{name}-{group}-r{replica}`), the same on every worker and at every
    /// epoch. `None` for pipelines deployed by hand.
    pub fn placement(&self) -> Option<&str> {
        let epoch = self.epoch?;
        let (key, suffix) = self.id.rsplit_once("-e")?;
        (suffix.parse::<u64>().ok()? == epoch && !key.is_empty()).then_some(key)
    }

    /// Runs this pipeline under the worker's lease (coordinator-deployed pipelines).
    pub fn set_lease(&self, lease: Arc<Lease>) {
        let _ = self.lease.set(lease);
    }

    /// Whether the pipeline is fenced: it runs under a lease that does not hold now.
    pub fn is_fenced(&self) -> bool {
        self.lease.get().is_some_and(|l| l.is_fenced())
    }

    /// Pauses the sources for a fence (stops the feed; nothing is read any more) and
    /// remembers to restart them when the fence is lifted.
    pub fn pause_for_fence(&self) {
        if self.lease.get().is_none() {
            return;
        }
        if self.has_feed() {
            self.stop_feed();
            self.fence_paused.store(true, Ordering::Release);
        }
    }

    /// Records that the fence kept the sources from starting.
    pub(crate) fn mark_fence_paused(&self) {
        self.fence_paused.store(true, Ordering::Release);
    }

    /// Whether the fence paused the sources (and clears the mark).
    pub fn take_fence_paused(&self) -> bool {
        self.fence_paused.swap(false, Ordering::AcqRel)
    }

    fn lock_engine(&self) -> MutexGuard<'_, EngineSlot> {
        // A panic while processing poisons the lock; the engine state is still the best we have.
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on this pipeline's engine thread, after what is queued there.
    async fn on_engine_thread<R, F>(&self, f: F) -> Result<R, WorkerError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        self.executor.run(f).await.map_err(|_| {
            if self.cancel.is_cancelled() {
                WorkerError::PipelineNotFound(self.id.clone())
            } else {
                WorkerError::Internal(format!("pipeline `{}`: its engine failed", self.id))
            }
        })
    }

    /// The pipeline this one hands its events to, if it was handed over.
    pub fn forward_target(&self) -> Option<Arc<Pipeline>> {
        self.forward
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_forward(&self, to: Option<Arc<Pipeline>>) {
        *self.forward.write().unwrap_or_else(|p| p.into_inner()) = to;
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

    /// Installs the output connections (once).
    pub fn set_sinks(&self, sinks: Vec<Box<dyn Sink>>) {
        let _ = self.sinks.set(sinks);
    }

    /// Publishes outputs through every sink; each takes the outputs bound to it. Waits when a
    /// connection's queue is full; failures are counted, never fatal (VPL.md §9). `false` when
    /// the outputs were discarded because the pipeline is fenced.
    pub async fn publish(&self, outputs: &[Output]) -> bool {
        if outputs.is_empty() {
            return true;
        }
        if self.is_fenced() {
            Counters::add(&self.counters.fenced_dropped, outputs.len() as u64);
            return false;
        }
        for sink in self.sinks.get().map(Vec::as_slice).unwrap_or_default() {
            sink.publish(outputs, &self.counters).await;
        }
        true
    }

    /// One ticket per sink that delivers in the background, covering what it was handed so
    /// far (a Kafka source stores its offsets once they are settled).
    pub fn delivery_tickets(&self) -> Vec<crate::connectors::sink::DeliveryTicket> {
        self.sinks
            .get()
            .map(|s| s.iter().filter_map(|s| s.delivery_ticket()).collect())
            .unwrap_or_default()
    }

    /// Marks the pipeline degraded (a connector failed) with a reason.
    pub fn set_degraded(&self, reason: impl Into<String>) {
        self.lock_status().degraded = Some(reason.into());
    }

    /// Clears a degraded mark.
    pub fn clear_degraded(&self) {
        self.lock_status().degraded = None;
    }

    /// Marks the pipeline failed: it refuses events from now on.
    fn set_failed(&self, reason: String) {
        self.lock_status().failed = Some(reason);
    }

    /// Why the pipeline is failed, if it is.
    pub fn failure(&self) -> Option<String> {
        self.lock_status().failed.clone()
    }

    /// Marks the pipeline stopped, cancels its tasks and its feed (unless it was handed over),
    /// and lets its engine thread end after the commands already queued.
    pub fn stop(&self) {
        self.lock_status().stopped = true;
        self.cancel.cancel();
        self.stop_feed();
        self.executor.close();
    }

    /// Counts a payload that could not be decoded.
    pub fn count_dropped(&self) {
        Counters::add(&self.counters.dropped, 1);
    }

    /// `running`, `degraded`, `failed`, `fenced` or `stopped`, with the reason when degraded,
    /// failed or fenced.
    pub fn status(&self) -> (&'static str, Option<String>) {
        let s = self.lock_status();
        if s.stopped {
            ("stopped", None)
        } else if self.is_fenced() {
            (
                "fenced",
                Some("lease expired: the worker cannot reach the leader".to_owned()),
            )
        } else if let Some(r) = &s.failed {
            ("failed", Some(r.clone()))
        } else if let Some(r) = &s.degraded {
            ("degraded", Some(r.clone()))
        } else if let Some(c) = self.connectors().into_iter().find(|c| c.health != "ok") {
            (
                "degraded",
                Some(format!(
                    "{} connector `{}` is down: {}",
                    c.kind,
                    c.name,
                    c.status_reason.unwrap_or_default()
                )),
            )
        } else {
            ("running", None)
        }
    }

    /// Health and counters of the output connectors that report them, then of the source
    /// connections (`role: "source"`) (docs/connectors.md).
    pub fn connectors(&self) -> Vec<ConnectorStatus> {
        let mut all: Vec<ConnectorStatus> = self
            .sinks
            .get()
            .map(|s| s.iter().flat_map(|s| s.status()).collect())
            .unwrap_or_default();
        all.extend(self.source_statuses());
        all
    }

    /// Events accepted so far.
    pub fn events_in(&self) -> u64 {
        Counters::get(&self.counters.events_in)
    }

    /// The API view.
    pub fn info(&self) -> PipelineInfo {
        let (status, status_reason) = self.status();
        PipelineInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            status: status.to_owned(),
            source: self.source.clone(),
            events_in: self.events_in(),
            events_out: Counters::get(&self.counters.events_out),
            errors: Counters::get(&self.counters.errors),
            status_reason,
            epoch: self.epoch,
            connectors: self.connectors(),
        }
    }

    /// The metrics view.
    pub fn metrics(&self) -> PipelineMetrics {
        PipelineMetrics {
            pipeline_id: self.id.clone(),
            events_in: self.events_in(),
            events_out: Counters::get(&self.counters.events_out),
            errors: Counters::get(&self.counters.errors),
            connectors: self.connectors(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::connectors::plan::Plan;
    use crate::engine::Event;

    const COUNTER: &str = "var count = 0\nfn bump(v: int):\n    count := count + 1\n    emit Count(n: count, v: v)\nstream S = Tick .process(bump(value))\n";

    fn pipeline_with(id: &str, source: &str, limits: PipelineLimits) -> Arc<Pipeline> {
        let engine = PipelineEngine::compile(source, Vec::new(), &limits).unwrap();
        Arc::new(Pipeline::new(id.into(), id.into(), source.into(), None, engine, limits).unwrap())
    }

    fn pipeline(id: &str, with_sources: bool) -> Arc<Pipeline> {
        let p = pipeline_with(id, COUNTER, PipelineLimits::default());
        if with_sources {
            p.set_source_plan(Some(Plan::default()));
        }
        p
    }

    fn event(value: i64) -> Event {
        let fields = serde_json::json!({ "value": value });
        Event::from_json("Tick", fields.as_object().unwrap(), 0)
    }

    /// Runs every event on the calling thread, chunk after chunk.
    fn run_all(
        p: &Arc<Pipeline>,
        events: &[Event],
    ) -> (Vec<Output>, Vec<EventError>, Arc<Pipeline>) {
        let (mut out, mut errors, mut ran) = (Vec::new(), Vec::new(), p.clone());
        let mut start = 0;
        while start < events.len() {
            let (n, r) = p.run_events(&events[start..], start, &mut out, &mut errors);
            start += n;
            ran = r;
        }
        (out, errors, ran)
    }

    fn tick(p: &Arc<Pipeline>, value: i64) -> (Arc<Pipeline>, i64) {
        let (out, errors, ran) = run_all(p, &[event(value)]);
        assert!(errors.is_empty(), "{errors:?}");
        let n = out[0].to_json()["fields"]["n"].as_i64().unwrap();
        (ran, n)
    }

    #[test]
    fn same_sources_are_taken_over_and_survive_the_old_pipeline() {
        let old = pipeline("old", true);
        let feed = Feed::new(&old, Plan::default().signature());
        old.set_feed(feed.clone());
        let new = pipeline("new", true);
        assert!(new.is_paused() && !old.is_paused());
        assert_eq!(tick(&old, 1).1, 1);

        let h = old.handover_now(&new, true).unwrap();
        assert_eq!((h.already, h.sources), (false, SourceSwitch::TakenOver));
        assert!(Arc::ptr_eq(&feed.target().unwrap(), &new));
        assert!(!new.is_paused());
        // An event read by the old feed before the switch is processed once, by the new engine.
        let (ran, n) = tick(&old, 2);
        assert!(Arc::ptr_eq(&ran, &new));
        assert_eq!(n, 2);
        // A repeated hand-over changes nothing.
        assert_eq!(
            old.handover_now(&new, true).unwrap().sources,
            SourceSwitch::Unchanged
        );
        // Handing back (an abort) returns the same feed, state included, and again forward.
        assert_eq!(
            new.handover_now(&old, true).unwrap().sources,
            SourceSwitch::TakenOver
        );
        assert!(Arc::ptr_eq(&feed.target().unwrap(), &old));
        let (ran, n) = tick(&new, 3);
        assert!(Arc::ptr_eq(&ran, &old));
        assert_eq!(n, 3);
        assert_eq!(
            old.handover_now(&new, true).unwrap().sources,
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
        let old = pipeline("old", true);
        let feed = Feed::new(&old, "mqtt A in/#".into());
        old.set_feed(feed.clone());
        let new = pipeline("new", true);
        let switch = old.handover_now(&new, true).unwrap().sources;
        assert_eq!(switch, SourceSwitch::StartNew);
        // The old connections close; what they queued still drains into the new pipeline.
        assert!(feed.connections.is_cancelled() && !feed.ingest.is_cancelled());
        assert!(Arc::ptr_eq(&feed.target().unwrap(), &new));
        assert!(new.is_paused(), "the caller starts the new sources");
    }

    #[test]
    fn a_paused_pipeline_deleted_before_the_switch_leaves_the_old_one_consuming() {
        let old = pipeline("old", true);
        let feed = Feed::new(&old, Plan::default().signature());
        old.set_feed(feed.clone());
        let new = pipeline("new", true);
        new.stop();
        assert!(!feed.connections.is_cancelled());
        assert_eq!(tick(&old, 1).1, 1);
        // A feed installed on a deleted pipeline is stopped at once.
        let late = Feed::new(&new, String::new());
        new.set_feed(late.clone());
        assert!(late.ingest.is_cancelled());
        // Without sources on either side a hand-over switches nothing.
        let (a, b) = (pipeline("a", false), pipeline("b", false));
        assert_eq!(
            a.handover_now(&b, false).unwrap().sources,
            SourceSwitch::Unchanged
        );
        assert!(old.handover_now(&old, true).is_err());
    }

    const SPAM: &str = "fn spam(n: int):\n    var i = 0\n    while i < n:\n        emit Out(i: i)\n        i := i + 1\nstream S = Tick .process(spam(value))\n";

    #[test]
    fn an_event_over_the_output_cap_is_rejected_and_its_outputs_discarded() {
        let limits = PipelineLimits {
            max_outputs_per_event: 10,
            ..PipelineLimits::default()
        };
        let p = pipeline_with("spam", SPAM, limits);
        let (out, errors, _) = run_all(&p, &[event(3), event(11), event(10)]);
        assert_eq!(
            out.len(),
            13,
            "the 11 outputs of the second event are discarded"
        );
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].index, errors[0].kind), (1, FaultKind::Budget));
        assert!(
            errors[0].error.contains("max_outputs_per_event"),
            "{errors:?}"
        );
        assert_eq!(Counters::get(&p.counters.budget_exceeded), 1);
        assert_eq!(p.status().0, "running");
    }

    #[test]
    fn consecutive_budget_errors_mark_the_pipeline_failed() {
        let limits = PipelineLimits {
            step_budget: 1_000,
            fail_after_budget_errors: 3,
            ..PipelineLimits::default()
        };
        let p = pipeline_with("loop", SPAM, limits);
        // Two budget errors, a good event (resets the streak), then three in a row.
        let events: Vec<Event> = [5_000, 5_000, 1, 5_000, 5_000, 5_000, 1, 1]
            .into_iter()
            .map(event)
            .collect();
        let (out, errors, _) = run_all(&p, &events);
        assert_eq!(out.len(), 1, "only the first small event ran through");
        let kinds: Vec<(usize, FaultKind)> = errors.iter().map(|e| (e.index, e.kind)).collect();
        assert_eq!(
            kinds,
            [
                (0, FaultKind::Budget),
                (1, FaultKind::Budget),
                (3, FaultKind::Budget),
                (4, FaultKind::Budget),
                (5, FaultKind::Budget),
                (6, FaultKind::Refused),
                (7, FaultKind::Refused),
            ]
        );
        let (status, reason) = p.status();
        assert_eq!(status, "failed");
        assert!(reason.unwrap().contains("3 consecutive"));
        assert_eq!(Counters::get(&p.counters.refused), 2);
        assert_eq!(p.events_in(), 6);
    }

    #[tokio::test]
    async fn async_processing_runs_on_the_engine_thread_and_caps_the_answer() {
        let p = pipeline_with("async", SPAM, PipelineLimits::default());
        let events: Vec<Event> = (0..4).map(|_| event(CHUNK_OUTPUTS as i64 / 2)).collect();
        let outcome = p.process(events, 100).await.unwrap();
        assert_eq!(outcome.outputs.len(), 100);
        assert_eq!(outcome.omitted, 2 * CHUNK_OUTPUTS as u64 - 100);
        assert!(outcome.errors.is_empty());
        let (bytes, n) = p.checkpoint().await.unwrap();
        assert_eq!(n, 4);
        p.restore(bytes, 9).await.unwrap();
        assert_eq!(p.events_in(), 9);
        p.stop();
        let gone = p.process(vec![event(1)], 10).await.unwrap_err();
        assert!(matches!(gone, WorkerError::PipelineNotFound(_)), "{gone:?}");
    }
}
