//! The only place that runs `varpulis-runtime`: compile (diagnostics mapped to the API
//! shape, the worker's [`PipelineLimits`] turned into engine options), process with per-event
//! error attribution (budget errors told apart from other runtime errors), checkpoint, restore,
//! and the program's connector bindings in a runtime-neutral form.

use crate::config::PipelineLimits;
use crate::error::WorkerError;
use serde_json::{Map, Value};
use varpulis_api::error::DiagnosticBody;
use varpulis_runtime::{Engine, EngineOptions, RuntimeError};

pub use varpulis_runtime::{Event, OutputEvent as Output};

/// File name used in rendered diagnostics.
const FILE_NAME: &str = "pipeline.vpl";

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
    /// Stream holding the `.to`.
    pub stream: String,
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

/// Why the engine failed on one event: the messages of the streams that failed, and whether
/// one of them ran out of a budget (steps, memory) rather than hitting a program error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFault {
    /// The runtime errors, `; `-separated.
    pub message: String,
    /// Whether a budget was exceeded (the event is then rejected as a whole).
    pub budget: bool,
}

/// Whether a runtime error means the event needed more resources than its pipeline may spend
/// (steps, recursion, stack, value sizes, memory, outputs).
fn is_budget(e: &RuntimeError) -> bool {
    e.is_budget()
}

/// The worker flag behind a budget error, for the operator reading it.
fn flag_hint(e: &RuntimeError) -> &'static str {
    match e {
        RuntimeError::OutputLimit(_) => " (max_outputs_per_event)",
        RuntimeError::StepBudget(_) => " (step_budget)",
        _ => "",
    }
}

/// A compiled pipeline program and its state.
pub struct PipelineEngine {
    inner: Engine,
}

impl std::fmt::Debug for PipelineEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineEngine").finish_non_exhaustive()
    }
}

impl PipelineEngine {
    /// Compiles a VPL program; `external_connectors` are connector names supplied by the
    /// deploy request (the program may use them without declaring them).
    pub fn compile(
        source: &str,
        external_connectors: Vec<String>,
        limits: &PipelineLimits,
    ) -> Result<Self, WorkerError> {
        Self::compile_with(source, external_connectors, limits, None)
    }

    /// [`Self::compile`] with the enricher that resolves the program's `.enrich` lookups
    /// (connectors/enrich.rs).
    pub fn compile_with(
        source: &str,
        external_connectors: Vec<String>,
        limits: &PipelineLimits,
        enricher: Option<std::sync::Arc<dyn varpulis_runtime::operators::enrich::Enricher>>,
    ) -> Result<Self, WorkerError> {
        // Options the worker does not set yet (the runtime grows budgets) keep their defaults.
        #[allow(clippy::needless_update)]
        let opts = EngineOptions {
            external_connectors,
            file_name: FILE_NAME.to_owned(),
            step_budget: limits.step_budget,
            max_sequence_runs: limits.max_sequence_runs,
            // The runtime stops the event at the cap, before holding more outputs.
            max_outputs_per_event: limits.max_outputs_per_event,
            enricher,
            ..EngineOptions::default()
        };
        match Engine::compile(source, &opts) {
            Ok(inner) => Ok(Self { inner }),
            Err(e) => {
                let diagnostics: Vec<DiagnosticBody> = e
                    .diagnostics
                    .iter()
                    .map(|d| DiagnosticBody {
                        severity: if d.is_error() { "error" } else { "warning" }.to_owned(),
                        line: d.line(),
                        column: d.column(),
                        message: d.message.clone(),
                        hint: d.hint.clone(),
                        rendered: d.render(source, FILE_NAME),
                        pipeline: None,
                    })
                    .collect();
                let message = match diagnostics.first() {
                    Some(d) => format!(
                        "invalid VPL: line {}, column {}: {}",
                        d.line, d.column, d.message
                    ),
                    None => format!("invalid VPL: {}", e.rendered),
                };
                Err(WorkerError::InvalidVpl {
                    message,
                    diagnostics,
                })
            }
        }
    }

    /// Processes one event, appending what it produced. Outputs of streams that succeeded are
    /// kept; when some stream failed on this event, `Err` says why.
    pub fn process(&mut self, event: &Event, out: &mut Vec<Output>) -> Result<(), EventFault> {
        let before = self.inner.stats().errors;
        if let Err(e) = self.inner.process(event, out) {
            return Err(EventFault {
                message: format!("{e}{}", flag_hint(&e)),
                budget: is_budget(&e),
            });
        }
        if self.inner.stats().errors > before {
            let records = self.inner.take_errors();
            let budget = records.iter().any(|r| is_budget(&r.error));
            let msgs: Vec<String> = records
                .iter()
                .map(|r| format!("{r}{}", flag_hint(&r.error)))
                .collect();
            return Err(EventFault {
                message: if msgs.is_empty() {
                    "runtime error".to_owned()
                } else {
                    msgs.join("; ")
                },
                budget,
            });
        }
        Ok(())
    }

    /// Delivers the timer ticks due at `now_ns` (wall clock; `timer(…)` sources), appending what
    /// they produce.
    pub fn advance_time(&mut self, now_ns: i64, out: &mut Vec<Output>) {
        self.inner.advance_time(now_ns, out);
    }

    /// When the next timer tick is due (`None` without timers).
    pub fn next_timer_deadline(&self) -> Option<i64> {
        self.inner.next_timer_deadline()
    }

    /// The engine's counters (late events, timer ticks, dropped pattern runs, budgets, …).
    pub fn stats(&self) -> varpulis_runtime::EngineStats {
        self.inner.stats()
    }

    /// Whether the program has `timer(…)` sources.
    pub fn has_timers(&self) -> bool {
        self.inner.has_timers()
    }

    /// Serialises the engine state.
    pub fn checkpoint(&self) -> Result<Vec<u8>, String> {
        self.inner.checkpoint().map_err(|e| e.to_string())
    }

    /// Replaces the engine state (rejects corrupt bytes or another program's state).
    pub fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.inner.restore(state).map_err(|e| e.to_string())
    }

    /// Restores the state of another version of the program (rolling update handover).
    pub fn restore_compatible(&mut self, state: &[u8]) -> Result<(), String> {
        self.inner
            .restore_compatible(state)
            .map_err(|e| e.to_string())
    }

    /// `.from` bindings.
    pub fn sources(&self) -> Vec<SourceBinding> {
        self.inner
            .sources()
            .into_iter()
            .map(|s| SourceBinding {
                topic: s.topic().map(str::to_owned),
                connector: s.connector,
                event_type: s.event_type,
            })
            .collect()
    }

    /// `.to` bindings.
    pub fn sinks(&self) -> Vec<SinkBinding> {
        self.inner
            .sinks()
            .into_iter()
            .map(|s| SinkBinding {
                topic: s.topic().map(str::to_owned),
                connector: s.connector,
                stream: s.stream,
            })
            .collect()
    }

    /// Connector declarations.
    pub fn connectors(&self) -> Vec<ConnectorDecl> {
        self.inner
            .connectors()
            .into_iter()
            .map(|c| ConnectorDecl {
                name: c.name,
                kind: c.kind.to_ascii_lowercase(),
                params: c.params.into_iter().collect(),
            })
            .collect()
    }
}

/// Parses `.evt` text into events; the error names the line.
pub fn parse_evt(text: &str) -> Result<Vec<Event>, String> {
    varpulis_runtime::parse_evt(text).map_err(|e| format!("invalid .evt: {e}"))
}
