//! The engine: a compiled program plus its state, fed one event at a time.
//!
//! Execution model (VPL.md §5): an input event of type `T` goes to every stream whose source is
//! `T`, in declaration order. Each stream runs its operator chain depth-first; every event that
//! reaches the end of stream `S` is re-typed `S` and queued, and queued events are routed the same
//! way, breadth-first, until the queue is empty. Contexts (§10) are validated but the engine runs
//! single-threaded: contexts only change interleaving between streams, never the set of outputs,
//! so a deterministic sequential order is a valid schedule.
//!
//! A runtime error while stream `S` handles an event (overflow, step budget, recursion, type
//! error, `emit` outside `.process`) discards what `S` produced for that event, is logged with the
//! stream name and counted, and processing continues with the next stream.

mod build;
mod exec;
mod time;

use crate::checkpoint;
use crate::compile::{FnCode, State};
use crate::error::RuntimeError;
use crate::event::{ConnectorDecl, Event, OutputEvent, SinkBinding, SourceBinding};
use crate::limits::{self, Limits};
use crate::stats::EngineStats;
use crate::value::Value;
use exec::{exec, OpCode, Run, StreamCode};
use std::collections::VecDeque;
use std::sync::Arc;

/// Key of the timers' state in a checkpoint's `operators` object (not a `<stream>#<i>` key).
const TIMERS_KEY: &str = "#timers";

/// How many recent runtime errors the engine keeps for [`Engine::take_errors`].
const RECENT_ERRORS: usize = 100;

/// Most event types kept in the engine's route cache.
const ROUTE_CACHE: usize = 16;

/// Where [`Engine::streams_of`] found the streams of an event type.
enum Targets {
    /// This entry of the route cache.
    Cached(usize),
    /// Only in the routes map (the cache is full).
    Map,
}

/// Options for [`Engine::compile`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Loop steps (iterations and user-function calls) one stream may spend on one event
    /// (default [`limits::DEFAULT_STEP_BUDGET`]).
    pub step_budget: u64,
    /// Largest string a program may build, in bytes.
    pub max_string_bytes: usize,
    /// Largest array or map a program may build, in elements.
    pub max_collection_len: usize,
    /// Bytes of strings and collections one stream may build while handling one event.
    pub memory_budget: usize,
    /// Events one input event may produce in total (outputs, publications, `emit` statements and
    /// events routed downstream); beyond it the producing stream fails on that event.
    pub max_outputs_per_event: usize,
    /// Connector names provided from outside the program (coordinator registry).
    pub external_connectors: Vec<String>,
    /// File name used when rendering diagnostics.
    pub file_name: String,
    /// Most live partial matches one sequence stream keeps (all partitions together); when
    /// hit, the oldest run is dropped and the drop is logged (VPL.md §7).
    pub max_sequence_runs: usize,
    /// Where `.print` lines go.
    pub print: PrintTarget,
    /// Reads the files the program imports (`import "path"`); without one, `import` is an
    /// error (a program deployed as text).
    pub loader: Option<std::sync::Arc<dyn varpulis_vpl::Loader>>,
    /// Resolves `.enrich` lookups (docs/connectors.md); without one, `.enrich` passes events
    /// on unenriched.
    pub enricher: Option<std::sync::Arc<dyn crate::operators::enrich::Enricher>>,
}

/// Where the side output of `.print` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrintTarget {
    /// Written to the process's standard output as soon as the event is handled (a worker).
    #[default]
    Stdout,
    /// Kept until [`Engine::take_printed`] (e.g. `varpulis run`, which interleaves them with
    /// the JSON output lines in order).
    Buffer,
    /// Dropped.
    Discard,
}

impl EngineOptions {
    /// The per-(stream, event) budgets these options set.
    pub fn limits(&self) -> Limits {
        Limits {
            step_budget: self.step_budget,
            max_string_bytes: self.max_string_bytes,
            max_collection_len: self.max_collection_len,
            memory_budget: self.memory_budget,
            max_outputs: self.max_outputs_per_event,
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            step_budget: limits::DEFAULT_STEP_BUDGET,
            max_string_bytes: limits::DEFAULT_MAX_STRING_BYTES,
            max_collection_len: limits::DEFAULT_MAX_COLLECTION_LEN,
            memory_budget: limits::DEFAULT_MEMORY_BUDGET,
            max_outputs_per_event: limits::DEFAULT_MAX_OUTPUTS,
            external_connectors: Vec::new(),
            file_name: "pipeline.vpl".to_string(),
            max_sequence_runs: crate::operators::sequence::DEFAULT_MAX_SEQUENCE_RUNS,
            print: PrintTarget::Stdout,
            loader: None,
            enricher: None,
        }
    }
}

/// A runtime error as recorded by the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRecord {
    /// Stream whose handling of the event was aborted.
    pub stream: String,
    /// Type of the event being handled.
    pub event_type: String,
    /// The error.
    pub error: RuntimeError,
}

impl std::fmt::Display for ErrorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stream `{}` on `{}` event: {}",
            self.stream, self.event_type, self.error
        )
    }
}

/// A compiled program and its state.
pub struct Engine {
    program_hash: String,
    fns: Vec<FnCode>,
    streams: Vec<StreamCode>,
    /// Streams reading each event type, in declaration order (looked up once per event).
    routes: crate::key::FastMap<String, Vec<usize>>,
    /// The streams of the last few event types routed, found by pointer (decoders intern
    /// type names, so the usual lookup is one pointer comparison, no hashing); see
    /// [`Engine::streams_of`].
    route_cache: Vec<(Arc<str>, Vec<usize>)>,
    state: State,
    /// Top-level `var`s (name, global slot): what a checkpoint captures.
    vars: Vec<(String, usize)>,
    input_types: Vec<String>,
    sources: Vec<SourceBinding>,
    sinks: Vec<SinkBinding>,
    connectors: Vec<ConnectorDecl>,
    stats: EngineStats,
    recent_errors: VecDeque<ErrorRecord>,
    /// Where `.print` lines go.
    print: PrintTarget,
    /// `timer(…)` sources.
    timers: Vec<time::TimerCode>,
    /// Some stream declares `.watermark` or `.allowed_lateness`: the program expects events in
    /// arrival order, event times possibly going backwards.
    watermarked: bool,
    /// The compiler's warnings (the program loads anyway).
    warnings: Vec<varpulis_vpl::Diagnostic>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field(
                "streams",
                &self.streams.iter().map(|s| &*s.name).collect::<Vec<_>>(),
            )
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Routes one input event through the program, appending produced events to `out` (output
    /// events and `.to`-only publications, in emission order). Per-stream runtime errors are
    /// counted and logged (see [`Engine::take_errors`]), not returned: the call only fails for
    /// faults of the engine itself, which this version does not have.
    pub fn process(
        &mut self,
        event: &Event,
        out: &mut Vec<OutputEvent>,
    ) -> Result<(), RuntimeError> {
        self.stats.events_in += 1;
        self.route(event, out);
        Ok(())
    }

    /// Runs `event` through every stream that reads its type, then the events those streams
    /// produce for downstream streams, breadth-first.
    fn route(&mut self, event: &Event, out: &mut Vec<OutputEvent>) {
        self.state.produced = 0;
        let start = out.len();
        // Created only when a stream fed another (most events reach one stream and stop).
        let mut queue: Option<VecDeque<Event>> = None;
        let mut tail: Vec<Event> = Vec::new();
        let mut current = std::borrow::Cow::Borrowed(event);
        let mut errors = Vec::new();
        loop {
            let targets = match self.streams_of(&current.event_type) {
                Some(Targets::Cached(c)) => self.route_cache.get(c).map(|(_, t)| t),
                Some(Targets::Map) => self.routes.get(&*current.event_type),
                None => None,
            };
            if let Some(targets) = targets {
                for &si in targets {
                    let Some(stream) = self.streams.get(si) else {
                        continue;
                    };
                    let (out_mark, tail_mark) = (out.len(), tail.len());
                    let produced_mark = self.state.produced;
                    self.state.reset_frame();
                    let mut run = Run {
                        st: &mut self.state,
                        fns: &self.fns,
                        stream,
                        alias: &current,
                        out,
                        tail: &mut tail,
                    };
                    if let Err(error) = exec(&mut run, 0, &current, None) {
                        out.truncate(out_mark);
                        tail.truncate(tail_mark);
                        self.state.produced = produced_mark;
                        errors.push((
                            stream.name.to_string(),
                            current.event_type.to_string(),
                            error,
                        ));
                    }
                }
            }
            if !tail.is_empty() {
                queue
                    .get_or_insert_with(VecDeque::new)
                    .extend(tail.drain(..));
            }
            match queue.as_mut().and_then(VecDeque::pop_front) {
                Some(next) => current = std::borrow::Cow::Owned(next),
                None => break,
            }
        }
        if !errors.is_empty() {
            for (stream, event_type, error) in errors {
                self.record_error(stream, event_type, error);
            }
        }
        if out.len() > start {
            self.stats.events_out += out[start..].iter().filter(|o| o.is_output).count() as u64;
        }
        self.collect_counters();
    }

    /// Where the streams of event type `ty` are (`None`: no stream reads it): its `route_cache`
    /// entry, found by pointer, then by content; else `routes`, caching the type while the cache
    /// has room for [`ROUTE_CACHE`] types (types without streams are never cached, so hostile
    /// type names cannot grow it, and past the cap nothing is evicted or copied per event).
    fn streams_of(&mut self, ty: &Arc<str>) -> Option<Targets> {
        if let Some(i) = self
            .route_cache
            .iter()
            .position(|(t, _)| Arc::ptr_eq(t, ty))
        {
            return Some(Targets::Cached(i));
        }
        if let Some(i) = self.route_cache.iter().position(|(t, _)| **t == **ty) {
            return Some(Targets::Cached(i));
        }
        let targets = self.routes.get(&**ty)?;
        if self.route_cache.len() >= ROUTE_CACHE {
            return Some(Targets::Map);
        }
        self.route_cache.push((ty.clone(), targets.clone()));
        Some(Targets::Cached(self.route_cache.len() - 1))
    }

    /// Moves the counters operators keep in the evaluation state into the stats.
    #[inline]
    fn collect_counters(&mut self) {
        self.stats.division_by_zero += std::mem::take(&mut self.state.div_by_zero);
        self.stats.late_events += std::mem::take(&mut self.state.late);
        self.stats.runs_dropped += std::mem::take(&mut self.state.runs_dropped);
        if !self.state.printed.is_empty() {
            self.flush_printed();
        }
    }

    /// Counts, logs and keeps a runtime error of `stream` on an event of type `event_type`.
    fn record_error(&mut self, stream: String, event_type: String, error: RuntimeError) {
        self.stats.errors += 1;
        if error.is_budget() {
            self.stats.budget_exceeded += 1;
        }
        tracing::warn!(%stream, %event_type, %error, "runtime error; event skipped by this stream");
        if self.recent_errors.len() == RECENT_ERRORS {
            self.recent_errors.pop_front();
        }
        self.recent_errors.push_back(ErrorRecord {
            stream,
            event_type,
            error,
        });
    }

    /// Serializes the engine state (top-level `var`s and counters) as versioned, checksummed bytes.
    pub fn checkpoint(&self) -> Result<Vec<u8>, RuntimeError> {
        let vars = self
            .vars
            .iter()
            .map(|(name, slot)| {
                (
                    name.clone(),
                    self.state.globals.get(*slot).cloned().unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>();
        let mut operators = serde_json::Map::new();
        for stream in &self.streams {
            for (i, op) in stream.ops.iter().enumerate() {
                let snap = match op {
                    OpCode::Reorder(r) => r.snapshot(),
                    OpCode::Pattern(p) => p.snapshot(),
                    OpCode::Distinct { op, .. } => op.snapshot(),
                    OpCode::Limit { op, .. } => op.snapshot(),
                    OpCode::Window(w) => w.snapshot(),
                    OpCode::Sequence(q) => q.snapshot(),
                    OpCode::Trend(t) => t.snapshot(),
                    OpCode::Join(j) => j.snapshot(),
                    _ => continue,
                };
                operators.insert(format!("{}#{i}", stream.name), snap);
            }
        }
        if !self.timers.is_empty() {
            // When each timer ticks next (`null`: not anchored yet), by tick type.
            let timers: serde_json::Map<String, serde_json::Value> = self
                .timers
                .iter()
                .map(|t| (t.ty.to_string(), serde_json::json!(t.next)))
                .collect();
            operators.insert(TIMERS_KEY.into(), serde_json::Value::Object(timers));
        }
        checkpoint::encode_with_operators(
            &self.program_hash,
            &self.stats,
            &vars,
            serde_json::Value::Object(operators),
        )
    }

    /// Restores state produced by [`Engine::checkpoint`] of an engine compiled from the same
    /// source. Corrupt bytes or a checkpoint of another program are rejected and change nothing.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), RuntimeError> {
        self.restore_checked(bytes, true)
    }

    /// Restores a checkpoint taken by ANOTHER version of the program (a rolling update whose
    /// state shape is unchanged): state is matched by `var` name and by stream name and
    /// operator position instead of by the program hash. A missing `var` or an operator state
    /// that does not parse is rejected and changes nothing.
    pub fn restore_compatible(&mut self, bytes: &[u8]) -> Result<(), RuntimeError> {
        self.restore_checked(bytes, false)
    }

    fn restore_checked(&mut self, bytes: &[u8], same_program: bool) -> Result<(), RuntimeError> {
        let cp = checkpoint::decode(bytes)?;
        if same_program && cp.program_sha256 != self.program_hash {
            return Err(RuntimeError::Checkpoint(
                "checkpoint belongs to a different program".into(),
            ));
        }
        let mut updates = Vec::with_capacity(self.vars.len());
        for (name, slot) in &self.vars {
            let v = cp
                .vars
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    RuntimeError::Checkpoint(format!("checkpoint lacks `var {name}`"))
                })?;
            updates.push((*slot, v));
        }
        let mut installs: Vec<Box<dyn FnOnce() + '_>> = Vec::new();
        for stream in &self.streams {
            for (i, op) in stream.ops.iter().enumerate() {
                let j = cp.operators.get(format!("{}#{i}", stream.name));
                match op {
                    OpCode::Reorder(r) => {
                        let x = r.parse_snapshot(j)?;
                        installs.push(Box::new(move || r.install(x)));
                    }
                    OpCode::Pattern(p) => {
                        let x = p.parse_snapshot(j)?;
                        installs.push(Box::new(move || p.install(x)));
                    }
                    OpCode::Distinct { op, .. } => {
                        let r = op.parse_snapshot(j)?;
                        installs.push(Box::new(move || op.install(r)));
                    }
                    OpCode::Limit { op, .. } => {
                        let r = op.parse_snapshot(j)?;
                        installs.push(Box::new(move || op.install(r)));
                    }
                    OpCode::Window(w) => {
                        let r = w.parse_snapshot(j)?;
                        installs.push(Box::new(move || w.install(r)));
                    }
                    OpCode::Sequence(q) => {
                        let r = q.parse_snapshot(j)?;
                        installs.push(Box::new(move || q.install(r)));
                    }
                    OpCode::Trend(t) => {
                        let r = t.parse_snapshot(j)?;
                        installs.push(Box::new(move || t.install(r)));
                    }
                    OpCode::Join(jo) => {
                        let r = jo.parse_snapshot(j)?;
                        installs.push(Box::new(move || jo.install(r)));
                    }
                    _ => {}
                }
            }
        }
        let mut timer_next = Vec::with_capacity(self.timers.len());
        for t in &self.timers {
            let next = match cp.operators.get(TIMERS_KEY).and_then(|j| j.get(&*t.ty)) {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(
                    v.as_i64()
                        .ok_or_else(|| RuntimeError::Checkpoint("timer state: next tick".into()))?,
                ),
            };
            timer_next.push(next);
        }
        for install in installs {
            install();
        }
        for (t, next) in self.timers.iter_mut().zip(timer_next) {
            t.next = next;
        }
        for (slot, v) in updates {
            if let Some(dst) = self.state.globals.get_mut(slot) {
                *dst = v;
            }
        }
        self.stats = cp.stats;
        Ok(())
    }

    /// Event types the program consumes (stream sources that are not streams), in first-use order.
    pub fn input_types(&self) -> Vec<String> {
        self.input_types.clone()
    }

    /// `.from(…)` bindings.
    pub fn sources(&self) -> Vec<SourceBinding> {
        self.sources.clone()
    }

    /// `.to(…)` bindings.
    pub fn sinks(&self) -> Vec<SinkBinding> {
        self.sinks.clone()
    }

    /// Declared connectors.
    pub fn connectors(&self) -> Vec<ConnectorDecl> {
        self.connectors.clone()
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Hands out the `.print` lines written since the last call (with [`PrintTarget::Buffer`]).
    pub fn take_printed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.state.printed)
    }

    /// Sends `.print` lines to their target (stdout or nowhere; a buffer keeps them).
    fn flush_printed(&mut self) {
        match self.print {
            PrintTarget::Buffer => {}
            PrintTarget::Discard => self.state.printed.clear(),
            PrintTarget::Stdout => {
                if self.state.printed.is_empty() {
                    return;
                }
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                for line in self.state.printed.drain(..) {
                    // A closed stdout must not fail the pipeline.
                    let _ = writeln!(out, "{line}");
                }
            }
        }
    }

    /// Whether some stream declares `.watermark` or `.allowed_lateness` (`varpulis run` then
    /// replays an event file in file order, as recorded arrivals).
    pub fn uses_watermark(&self) -> bool {
        self.watermarked
    }

    /// Whether the program has `timer(…)` sources (a worker must then call
    /// [`Engine::advance_time`] periodically).
    pub fn has_timers(&self) -> bool {
        !self.timers.is_empty()
    }

    /// The compiler's warnings (deprecations, leniencies, suspicious code).
    pub fn warnings(&self) -> &[varpulis_vpl::Diagnostic] {
        &self.warnings
    }

    /// Drains the most recent runtime errors (at most 100 are kept).
    pub fn take_errors(&mut self) -> Vec<ErrorRecord> {
        self.recent_errors.drain(..).collect()
    }

    /// Current value of a top-level binding (for tests and introspection).
    pub fn global(&self, name: &str) -> Option<Value> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, slot)| self.state.globals.get(*slot).cloned())
    }
}
