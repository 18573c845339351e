//! The counters of one pipeline, shared by its engine runs, its sinks and its sources and
//! rendered on `/metrics`. Lock-free; every field only grows (the engine copies only between
//! restores).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one pipeline.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events the engine processed.
    pub events_in: AtomicU64,
    /// Output events produced.
    pub events_out: AtomicU64,
    /// Runtime errors, failed publishes.
    pub errors: AtomicU64,
    /// Connector payloads that could not be decoded.
    pub dropped: AtomicU64,
    /// Events rejected because they exceeded a budget (steps, memory, outputs per event).
    pub budget_exceeded: AtomicU64,
    /// Events refused without running, because the pipeline is `failed`.
    pub refused: AtomicU64,
    /// Outputs published but left out of inject answers (`max_outputs_per_response`).
    pub outputs_omitted: AtomicU64,
    /// Events published to outbound routes.
    pub route_published: AtomicU64,
    /// Events received from inbound routes.
    pub route_received: AtomicU64,
    /// Route events dropped: publish queue full past the timeout, broker unreachable, or an
    /// undecodable inbound message.
    pub route_dropped: AtomicU64,
    /// Events the engine dropped as too late for their windows (a copy of the engine's count).
    pub late_events: AtomicU64,
    /// Timer ticks the engine delivered (a copy of the engine's count).
    pub timer_ticks: AtomicU64,
    /// Partial pattern matches dropped at the live-run cap (a copy of the engine's count).
    pub pattern_runs_dropped: AtomicU64,
    /// Events and outputs discarded because the pipeline was fenced (lease expired).
    pub fenced_dropped: AtomicU64,
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Copies the engine's own counts (late events, timer ticks, dropped pattern runs), read
    /// on the engine thread so that `/metrics` never takes the engine lock.
    pub fn copy_engine_counts(&self, late_events: u64, timer_ticks: u64, runs_dropped: u64) {
        self.late_events.store(late_events, Ordering::Relaxed);
        self.timer_ticks.store(timer_ticks, Ordering::Relaxed);
        self.pattern_runs_dropped
            .store(runs_dropped, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
