//! The only place that touches `varpulis-runtime`: compile, process, checkpoint, restore,
//! and the program's connector bindings, behind a small surface the rest of the worker uses.
//!
//! TEMPORARY STUB until the runtime crate lands: compiling always fails.

use crate::error::WorkerError;
use serde_json::{Map, Value};

/// An input event ready for the engine.
#[derive(Debug, Clone)]
pub struct Event {
    event_type: String,
    fields: Map<String, Value>,
    timestamp_ns: i64,
}

impl Event {
    /// Builds an event from JSON fields.
    pub fn from_json(event_type: &str, fields: &Map<String, Value>, timestamp_ns: i64) -> Self {
        Self { event_type: event_type.to_owned(), fields: fields.clone(), timestamp_ns }
    }
}

/// A `.from(Connector, topic: ...)` binding of the program.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceBinding {
    /// Connector name.
    pub connector: String,
    /// Topic filter (may contain `+`/`#`).
    pub topic: Option<String>,
    /// Event type given to payloads that name none.
    pub event_type: String,
}

/// A `.to(Connector, topic: ...)` binding of the program.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkBinding {
    /// Output event type routed to this sink.
    pub event_type: String,
    /// Connector name.
    pub connector: String,
    /// Topic override (the connector's `topic` param otherwise).
    pub topic: Option<String>,
}

/// A `connector Name = kind(...)` declaration of the program.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorDecl {
    /// Connector name.
    pub name: String,
    /// Kind (`mqtt`, ...).
    pub kind: String,
    /// Parameters as JSON values.
    pub params: Map<String, Value>,
}

/// One output event with the sinks it goes to.
#[derive(Debug, Clone)]
pub struct Output {
    /// `{"event_type", "timestamp", "fields"}`.
    pub json: Value,
}

/// A compiled pipeline program.
pub struct PipelineEngine {
    _private: (),
}

impl std::fmt::Debug for PipelineEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineEngine").finish_non_exhaustive()
    }
}

impl PipelineEngine {
    /// Compiles a VPL program.
    pub fn compile(_source: &str) -> Result<Self, WorkerError> {
        Err(WorkerError::Internal("runtime not available".into()))
    }

    /// Processes one event, appending outputs.
    pub fn process(&mut self, _event: &Event, _out: &mut Vec<Output>) -> Result<(), String> {
        Ok(())
    }

    /// Serialises the engine state.
    pub fn checkpoint(&self) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }

    /// Replaces the engine state.
    pub fn restore(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }

    /// `.from` bindings.
    pub fn sources(&self) -> Vec<SourceBinding> {
        Vec::new()
    }

    /// `.to` bindings.
    pub fn sinks(&self) -> Vec<SinkBinding> {
        Vec::new()
    }

    /// Connector declarations.
    pub fn connectors(&self) -> Vec<ConnectorDecl> {
        Vec::new()
    }
}

/// Parses `.evt` text into events; the error names the line.
pub fn parse_evt(_text: &str) -> Result<Vec<Event>, String> {
    Err("runtime not available".into())
}

/// Output event type of an output (used to route to sinks).
pub fn output_event_type(o: &Output) -> &str {
    o.json.get("event_type").and_then(Value::as_str).unwrap_or("")
}

/// Nanoseconds since the epoch now (arrival time of events without one).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
