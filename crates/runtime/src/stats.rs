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
}
