//! Running events through a pipeline's engine, with its budgets.
//!
//! The synchronous core ([`Pipeline::run_events`]) runs on the pipeline's engine thread: it
//! processes events in order under the engine lock, follows a hand-over's forward, enforces
//! the per-event output cap, classifies each failure and tracks consecutive budget errors;
//! after `fail_after_budget_errors` of them the pipeline is marked `failed` and refuses every
//! later event without running it. Each call stops early once its outputs reach
//! [`CHUNK_OUTPUTS`], so memory stays bounded whatever a batch produces.
//!
//! The async side ([`Pipeline::process`], [`Pipeline::process_chunk`]) queues chunks on the
//! engine thread, publishes each chunk's outputs through the sinks of the pipeline that ran
//! it, and keeps at most `keep` outputs for the answer.

use super::Pipeline;
use crate::counters::Counters;
use crate::engine::{Event, EventFault, Output};
use crate::error::WorkerError;
use std::sync::Arc;

/// A chunk of events stops once it produced this many outputs (the rest of the events go in
/// the next chunk, after these outputs were published).
pub const CHUNK_OUTPUTS: usize = 16 * 1024;

/// Why one event of a batch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A stream hit a runtime error (overflow, type error...); the other streams' outputs are
    /// kept (VPL.md §14).
    Runtime,
    /// The event exceeded a budget (steps, memory, outputs per event); all its outputs are
    /// discarded.
    Budget,
    /// The pipeline is `failed`: the event was refused without running.
    Refused,
}

/// A failed event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    /// 0-based index in the batch.
    pub index: usize,
    /// What went wrong.
    pub error: String,
    /// Which kind of failure it was.
    pub kind: FaultKind,
}

/// What one chunk produced.
#[derive(Debug)]
pub struct Chunk {
    /// Events consumed (processed or refused) from the start given.
    pub consumed: usize,
    /// Everything the engine produced (outputs and `.to`-only events).
    pub outputs: Vec<Output>,
    /// Failed events.
    pub errors: Vec<EventError>,
    /// The pipeline whose engine ran the events (a hand-over's target): its sinks publish.
    pub ran: Arc<Pipeline>,
}

/// What a whole batch produced, as an inject answer needs it.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Output events kept for the answer (at most `keep`).
    pub outputs: Vec<Output>,
    /// Output events published but left out of the answer.
    pub omitted: u64,
    /// Failed events.
    pub errors: Vec<EventError>,
}

impl Pipeline {
    /// Runs `events` off the reactor, chunk by chunk, publishing each chunk's outputs through
    /// the sinks of the pipeline that ran it; keeps at most `keep` output events.
    pub async fn process(
        self: &Arc<Self>,
        events: Vec<Event>,
        keep: usize,
    ) -> Result<Outcome, WorkerError> {
        let events: Arc<[Event]> = events.into();
        let mut outcome = Outcome::default();
        let mut start = 0;
        while start < events.len() {
            let chunk = self.process_chunk(events.clone(), start).await?;
            chunk.ran.publish(&chunk.outputs).await;
            for o in chunk.outputs.into_iter().filter(|o| o.is_output) {
                if outcome.outputs.len() < keep {
                    outcome.outputs.push(o);
                } else {
                    outcome.omitted += 1;
                }
            }
            outcome.errors.extend(chunk.errors);
            start += chunk.consumed.max(1);
        }
        if outcome.omitted > 0 {
            Counters::add(&self.counters.outputs_omitted, outcome.omitted);
            tracing::warn!(
                pipeline = %self.id,
                omitted = outcome.omitted,
                "inject answer capped at {keep} output events (max_outputs_per_response)"
            );
        }
        Ok(outcome)
    }

    /// Runs events from `start` on, up to one chunk, on the engine thread of the pipeline that
    /// processes them (this one, or the one a hand-over forwards to). Publishing is the
    /// caller's job.
    pub async fn process_chunk(
        self: &Arc<Self>,
        events: Arc<[Event]>,
        start: usize,
    ) -> Result<Chunk, WorkerError> {
        // `self` runs them (it forwards, and streams to its own subscribers too), on the
        // engine thread of the pipeline that will process them.
        let target = self.processing_target();
        if target.is_fenced() {
            let n = events.len().saturating_sub(start) as u64;
            Counters::add(&target.counters.fenced_dropped, n);
            return Err(WorkerError::Fenced(target.id.clone()));
        }
        let runner = self.clone();
        target
            .on_engine_thread(move || {
                let (mut outputs, mut errors) = (Vec::new(), Vec::new());
                let slice = events.get(start..).unwrap_or_default();
                let (consumed, ran) = runner.run_events(slice, start, &mut outputs, &mut errors);
                Chunk {
                    consumed,
                    outputs,
                    errors,
                    ran,
                }
            })
            .await
    }

    /// The pipeline whose engine runs this one's events now: the end of its forward chain.
    pub(super) fn processing_target(self: &Arc<Self>) -> Arc<Pipeline> {
        let mut p = self.clone();
        // A chain longer than a few links would be a bug; `run_events` follows it anyway.
        for _ in 0..8 {
            match p.forward_target() {
                Some(next) => p = next,
                None => break,
            }
        }
        p
    }

    /// Processes events in order until they are all consumed or the outputs reach
    /// [`CHUNK_OUTPUTS`]; error indexes start at `first_index`. Blocks while the engine runs:
    /// call it on the engine thread. Returns the events consumed and the pipeline that ran
    /// them.
    pub fn run_events(
        self: &Arc<Self>,
        events: &[Event],
        first_index: usize,
        out: &mut Vec<Output>,
        errors: &mut Vec<EventError>,
    ) -> (usize, Arc<Pipeline>) {
        let before = out.len();
        let mut slot = self.lock_engine();
        if let Some(next) = self.forward_target() {
            drop(slot);
            let ran = next.run_events(events, first_index, out, errors);
            self.stream_outputs(&out[before..]);
            return ran;
        }
        if let Some(reason) = self.failure() {
            for index in first_index..first_index + events.len() {
                errors.push(EventError {
                    index,
                    error: reason.clone(),
                    kind: FaultKind::Refused,
                });
            }
            Counters::add(&self.counters.refused, events.len() as u64);
            return (events.len(), self.clone());
        }
        let limits = self.limits;
        let mut consumed = 0;
        let (mut n_errors, mut n_budget) = (0u64, 0u64);
        for ev in events {
            let mark = out.len();
            let fault = match slot.engine.process(ev, out) {
                Ok(()) if out.len() - mark > limits.max_outputs_per_event => Some(EventFault {
                    message: format!(
                        "event `{}` produced {} output events, more than the {} allowed per \
                         event (max_outputs_per_event)",
                        ev.event_type,
                        out.len() - mark,
                        limits.max_outputs_per_event
                    ),
                    budget: true,
                }),
                Ok(()) => None,
                Err(f) => Some(f),
            };
            let index = first_index + consumed;
            consumed += 1;
            match fault {
                None => slot.budget_streak = 0,
                Some(f) if !f.budget => {
                    slot.budget_streak = 0;
                    n_errors += 1;
                    errors.push(EventError {
                        index,
                        error: f.message,
                        kind: FaultKind::Runtime,
                    });
                }
                Some(f) => {
                    out.truncate(mark);
                    n_budget += 1;
                    slot.budget_streak += 1;
                    let error = format!("event rejected: {}", f.message);
                    let threshold = limits.fail_after_budget_errors;
                    let failed = threshold > 0 && slot.budget_streak >= threshold;
                    if failed {
                        self.mark_failed(&error, slot.budget_streak);
                    }
                    errors.push(EventError {
                        index,
                        error,
                        kind: FaultKind::Budget,
                    });
                    if failed {
                        break;
                    }
                }
            }
            if out.len() - before >= CHUNK_OUTPUTS {
                break;
            }
        }
        let stats = slot.engine.stats();
        drop(slot);
        let c = &self.counters;
        c.copy_engine_counts(stats.late_events, stats.timer_ticks, stats.runs_dropped);
        Counters::add(&c.events_in, consumed as u64);
        let produced = out[before..].iter().filter(|o| o.is_output).count();
        Counters::add(&c.events_out, produced as u64);
        Counters::add(&c.errors, n_errors + n_budget);
        Counters::add(&c.budget_exceeded, n_budget);
        self.stream_outputs(&out[before..]);
        (consumed, self.clone())
    }

    /// Delivers the engine's timer ticks due at `now_ns` (wall clock; `timer(…)` sources) on
    /// the engine thread of the pipeline that runs this one's events. Returns the outputs (to
    /// publish through the sinks of the pipeline that ran them, also returned) and when the next
    /// tick is due (`None`: the program has no timers, or the pipeline is gone or failed).
    pub async fn tick(
        self: &Arc<Self>,
        now_ns: i64,
    ) -> Result<(Vec<Output>, Arc<Pipeline>, Option<i64>), WorkerError> {
        let target = self.processing_target();
        let runner = self.clone();
        target
            .on_engine_thread(move || {
                let mut out = Vec::new();
                let ran = runner.processing_target();
                if ran.failure().is_some() {
                    return (out, ran, None);
                }
                let mut slot = ran.lock_engine();
                slot.engine.advance_time(now_ns, &mut out);
                let next = slot.engine.next_timer_deadline();
                let stats = slot.engine.stats();
                drop(slot);
                let c = &ran.counters;
                c.copy_engine_counts(stats.late_events, stats.timer_ticks, stats.runs_dropped);
                let produced = out.iter().filter(|o| o.is_output).count();
                Counters::add(&c.events_out, produced as u64);
                ran.stream_outputs(&out);
                if !Arc::ptr_eq(&ran, &runner) {
                    runner.stream_outputs(&out);
                }
                (out, ran, next)
            })
            .await
    }

    /// When the engine's next timer tick is due (`None` without timers), read on its thread.
    pub async fn next_timer_deadline(self: &Arc<Self>) -> Option<i64> {
        let target = self.processing_target();
        let ran = target.clone();
        target
            .on_engine_thread(move || ran.lock_engine().engine.next_timer_deadline())
            .await
            .ok()
            .flatten()
    }

    /// Marks the pipeline `failed` after `streak` consecutive budget errors (the last one
    /// `last`); it refuses events from now on.
    fn mark_failed(&self, last: &str, streak: u32) {
        let reason = format!(
            "pipeline `{}` failed: {streak} consecutive events exceeded its budgets (last: \
             {last}); it refuses events until it is deployed again",
            self.id
        );
        tracing::warn!(pipeline = %self.id, name = %self.name, "{reason}");
        self.set_failed(reason);
    }
}
