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
//! Modules: [`value`] (values and operators), [`event`] (events, outputs, connector bindings),
//! [`evt`] (event files), `compile` (AST → closures), [`engine`] (routing, execution, state),
//! [`checkpoint`] (state bytes), `builtins` (scalar built-ins), [`error`].

mod builtins;
pub mod checkpoint;
mod compile;
pub mod engine;
pub mod error;
pub mod event;
pub mod evt;
mod join;
pub mod limits;
pub mod sequence;
pub mod value;
mod window;

pub use engine::{Engine, EngineOptions, EngineStats, ErrorRecord};
pub use limits::{Limits, DEFAULT_STEP_BUDGET};
pub use error::{CompileError, RuntimeError};
pub use event::{ConnectorDecl, Event, OutputEvent, SinkBinding, SourceBinding};
pub use evt::{parse_evt, EvtError};
pub use value::Value;
