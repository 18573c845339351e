//! The Varpulis VPL runtime: compiles a checked VPL program into closure trees and runs it over
//! events (VPL.md Tier 1).
//!
//! ```
//! use varpulis_runtime::{Engine, EngineOptions, evt};
//! let src = "stream Hot = Reading .where(temp > 80.0) .emit(id: id, temp: temp)";
//! let mut engine = Engine::compile(src, &EngineOptions::default()).unwrap();
//! let mut out = Vec::new();
//! for e in evt::parse_evt("Reading { id: 1, temp: 91.5 }\nReading { id: 2, temp: 20.0 }").unwrap() {
//!     engine.process(&e, &mut out).unwrap();
//! }
//! assert_eq!(out.len(), 1);
//! assert_eq!(out[0].to_json()["fields"]["temp"], 91.5);
//! ```
//!
//! Modules, from the bottom up: [`value`] (values and operators), [`event`] (events, outputs,
//! connector bindings), [`error`], [`limits`] (per-event budgets), `key` (hashable keys), `codec`
//! (exact JSON of values and events), [`stats`], [`checkpoint`] (state bytes), `builtins`
//! (scalar built-ins), `compile` (AST → closures), [`operators`] (windows, sequences, joins),
//! [`engine`] (compile phases, routing, execution), [`evt`] (event files), [`evt_fast`] (its
//! fast line parser), [`evt_scan`] (byte-level line reader and one-pass scanner of the common
//! line shape), [`evt_stream`] (streaming replay with a bounded reorder window), [`evt_pipe`]
//! (the replay's reading and parsing on a thread of its own), [`json_out`] (output lines written without building JSON trees).

mod builtins;
pub mod checkpoint;
mod codec;
mod compile;
pub mod engine;
pub mod error;
pub mod event;
pub mod evt;
#[cfg(test)]
mod evt_alphabet;
pub mod evt_fast;
pub mod evt_pipe;
pub mod evt_scan;
pub mod evt_stream;
pub mod json_out;
mod key;
pub mod limits;
pub mod operators;
pub mod stats;
mod template;
pub mod value;

pub use engine::{Engine, EngineOptions, ErrorRecord, PrintTarget};
pub use error::{CompileError, RuntimeError};
pub use event::{ConnectorDecl, Event, OutputEvent, SinkBinding, SourceBinding};
pub use evt::{parse_evt, EvtError};
pub use limits::{Limits, DEFAULT_STEP_BUDGET};
pub use stats::EngineStats;
pub use value::Value;
