//! Counters of an engine, restored with a checkpoint.

use serde::{Deserialize, Serialize};

/// Counters of an engine (restored with a checkpoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Input events given to [`Engine::process`].
    pub events_in: u64,
    /// Output events produced.
    pub events_out: u64,
    /// Runtime errors (each aborted one stream's handling of one event).
    pub errors: u64,
    /// Divisions by zero (they yield `null`, §3).
    pub division_by_zero: u64,
    /// Runtime errors that were a budget running out (steps, recursion, value size, memory,
    /// outputs); also counted in `errors`.
    #[serde(default)]
    pub budget_exceeded: u64,
    /// Events dropped because they arrived too late for their windows (or, on a stream with a
    /// `.watermark`, later than the watermark minus the allowed lateness).
    #[serde(default)]
    pub late_events: u64,
    /// Timer ticks delivered (`timer(…)` sources).
    #[serde(default)]
    pub timer_ticks: u64,
    /// Timer ticks skipped because time jumped further than the catch-up limit.
    #[serde(default)]
    pub timer_ticks_skipped: u64,
    /// Partial pattern matches dropped because a stream hit its live-run cap.
    #[serde(default)]
    pub runs_dropped: u64,
}
