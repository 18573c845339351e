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

use crate::checkpoint;
use crate::compile::{literal_json, Compiler, Ctx, ExprFn, FnCode, GlobalVar, State, StmtFn};
use crate::error::{CompileError, RuntimeError};
use crate::event::{ConnectorDecl, Event, OutputEvent, SinkBinding, SourceBinding};
use crate::join::{JoinOp, MergeOp};
use crate::limits::{self, Limits};
use crate::sequence::SeqOp;
use crate::value::{Fields, Value};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use varpulis_vpl::ast::{self, ExprKind, Item, OpKind, SourceKind};
use varpulis_vpl::{correlate, CheckOptions, Diagnostic};

/// How many recent runtime errors the engine keeps for [`Engine::take_errors`].
const RECENT_ERRORS: usize = 100;

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
            max_sequence_runs: crate::sequence::DEFAULT_MAX_SEQUENCE_RUNS,
        }
    }
}

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

/// One compiled operator.
enum OpCode {
    Where(ExprFn),
    Select(Vec<(Arc<str>, ExprFn)>),
    Emit(Vec<(Arc<str>, ExprFn)>),
    /// `outputs`: the created events are output events (no `.emit` follows in the chain).
    Process {
        call: ExprFn,
        outputs: bool,
    },
    To(Arc<SinkBinding>),
    /// `.window` / `.aggregate` / `.partition_by` state of the stream (Tier 2).
    Window(Box<crate::window::WindowOp>),
    /// Sequence pattern (`->`, `all`, `.within`, `.not`); always the stream's first operator.
    Sequence(Box<SeqOp>),
    /// `join(…)` source; always the stream's first operator.
    Join(Box<JoinOp>),
    /// `merge(…)` source; always the stream's first operator.
    Merge(Box<MergeOp>),
    Pass,
}

struct StreamCode {
    name: Arc<str>,
    ops: Vec<OpCode>,
    /// Some stream consumes this one, so its results must be re-routed.
    feeds_downstream: bool,
}

/// A compiled program and its state.
pub struct Engine {
    program_hash: String,
    fns: Vec<FnCode>,
    streams: Vec<StreamCode>,
    routes: HashMap<String, Vec<usize>>,
    state: State,
    /// Top-level `var`s (name, global slot): what a checkpoint captures.
    vars: Vec<(String, usize)>,
    input_types: Vec<String>,
    sources: Vec<SourceBinding>,
    sinks: Vec<SinkBinding>,
    connectors: Vec<ConnectorDecl>,
    stats: EngineStats,
    recent_errors: VecDeque<ErrorRecord>,
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

/// Everything one stream invocation needs besides the event.
struct Run<'a> {
    st: &'a mut State,
    fns: &'a [FnCode],
    stream: &'a StreamCode,
    alias: &'a Event,
    out: &'a mut Vec<OutputEvent>,
    tail: &'a mut Vec<Event>,
}

fn eval(run: &mut Run<'_>, f: &ExprFn, ev: &Event) -> Result<Value, RuntimeError> {
    let mut cx = Ctx {
        st: run.st,
        event: ev,
        alias: run.alias,
        fns: run.fns,
    };
    f(&mut cx)
}

fn eval_with(
    run: &mut Run<'_>,
    f: &ExprFn,
    ev: &Event,
    alias: &Event,
) -> Result<Value, RuntimeError> {
    let mut cx = Ctx {
        st: run.st,
        event: ev,
        alias,
        fns: run.fns,
    };
    f(&mut cx)
}

/// Runs operators `i + 1..` on each match, with the match's captures as alias.
fn exec_matches(
    run: &mut Run<'_>,
    i: usize,
    matches: &[crate::sequence::Match],
) -> Result<(), RuntimeError> {
    for (m, caps) in matches {
        let mut sub = Run {
            st: &mut *run.st,
            fns: run.fns,
            stream: run.stream,
            alias: caps,
            out: &mut *run.out,
            tail: &mut *run.tail,
        };
        exec(&mut sub, i + 1, m, None)?;
    }
    Ok(())
}

fn build(
    run: &mut Run<'_>,
    fields: &[(Arc<str>, ExprFn)],
    ev: &Event,
    keep_null: bool,
) -> Result<Fields, RuntimeError> {
    let mut out: Fields = Vec::with_capacity(fields.len());
    for (name, f) in fields {
        let v = eval(run, f, ev)?;
        if keep_null || !v.is_null() {
            out.push((name.clone(), v));
        }
    }
    run.st.charge_fields(&out)?;
    Ok(out)
}

/// Runs operators `i..` of the stream on `ev`; `out_idx` is the output entry of `ev`, if any.
fn exec(
    run: &mut Run<'_>,
    i: usize,
    ev: &Event,
    out_idx: Option<usize>,
) -> Result<(), RuntimeError> {
    let stream = run.stream;
    let Some(op) = stream.ops.get(i) else {
        if stream.feeds_downstream {
            run.st.produce()?;
            run.tail.push(ev.retyped(&stream.name));
        }
        return Ok(());
    };
    match op {
        OpCode::Where(f) => {
            if eval(run, f, ev)?.is_true() {
                exec(run, i + 1, ev, out_idx)?;
            }
            Ok(())
        }
        OpCode::Select(fields) => {
            let fields = build(run, fields, ev, true)?;
            let next = Event {
                event_type: ev.event_type.clone(),
                timestamp_ns: ev.timestamp_ns,
                fields: Arc::new(fields),
            };
            exec(run, i + 1, &next, None)
        }
        OpCode::Emit(fields) => {
            let next = if fields.is_empty() {
                // `.emit()` copies every field; output events never carry null fields.
                if ev.fields.iter().any(|(_, v)| v.is_null()) {
                    let kept: Fields = ev
                        .fields
                        .iter()
                        .filter(|(_, v)| !v.is_null())
                        .cloned()
                        .collect();
                    Event {
                        event_type: stream.name.clone(),
                        timestamp_ns: ev.timestamp_ns,
                        fields: Arc::new(kept),
                    }
                } else {
                    ev.retyped(&stream.name)
                }
            } else {
                let fields = build(run, fields, ev, false)?;
                Event {
                    event_type: stream.name.clone(),
                    timestamp_ns: ev.timestamp_ns,
                    fields: Arc::new(fields),
                }
            };
            run.st.produce()?;
            run.out.push(OutputEvent {
                event: next.clone(),
                is_output: true,
                sinks: Vec::new(),
            });
            let idx = run.out.len() - 1;
            exec(run, i + 1, &next, Some(idx))
        }
        OpCode::Process { call, outputs } => {
            run.st.in_process = true;
            run.st.emitted.clear();
            let r = eval(run, call, ev);
            run.st.in_process = false;
            r?;
            let created = std::mem::take(&mut run.st.emitted);
            for e in &created {
                let idx = if *outputs {
                    run.st.produce()?;
                    run.out.push(OutputEvent {
                        event: e.clone(),
                        is_output: true,
                        sinks: Vec::new(),
                    });
                    Some(run.out.len() - 1)
                } else {
                    None
                };
                exec(run, i + 1, e, idx)?;
            }
            Ok(())
        }
        OpCode::To(sink) => {
            let idx = match out_idx {
                Some(idx) => {
                    if let Some(o) = run.out.get_mut(idx) {
                        o.sinks.push(sink.clone());
                    }
                    idx
                }
                None => {
                    run.st.produce()?;
                    run.out.push(OutputEvent {
                        event: ev.clone(),
                        is_output: false,
                        sinks: vec![sink.clone()],
                    });
                    run.out.len() - 1
                }
            };
            exec(run, i + 1, ev, Some(idx))
        }
        OpCode::Window(w) => {
            let fired = w.on_event(ev, &mut |f, e| eval(run, f, e))?;
            for e in &fired {
                exec(run, i + 1, e, None)?;
            }
            Ok(())
        }
        OpCode::Sequence(q) => {
            let matches = q.on_event(ev, &mut |f, e, a| eval_with(run, f, e, a))?;
            exec_matches(run, i, &matches)
        }
        OpCode::Join(j) => {
            let matches = j.on_event(ev, &mut |f, e, a| eval_with(run, f, e, a))?;
            exec_matches(run, i, &matches)
        }
        OpCode::Merge(m) => {
            let n = m.accepts(ev, &mut |f, e, a| eval_with(run, f, e, a))?;
            for _ in 0..n {
                exec(run, i + 1, ev, None)?;
            }
            Ok(())
        }
        OpCode::Pass => exec(run, i + 1, ev, out_idx),
    }
}

fn args_json(args: &[ast::Arg]) -> Vec<(String, serde_json::Value)> {
    args.iter()
        .filter_map(|a| {
            let name = a.name.as_ref()?;
            Some((
                name.name.clone(),
                literal_json(&a.value).unwrap_or(serde_json::Value::Null),
            ))
        })
        .collect()
}

fn ident_arg(op: &ast::StreamOp) -> Option<&ast::Ident> {
    match &op.first_positional()?.kind {
        ExprKind::Name(id) => Some(id),
        _ => None,
    }
}

impl Engine {
    /// Parses, checks and compiles `source`, then evaluates its top-level bindings in order.
    pub fn compile(source: &str, opts: &EngineOptions) -> Result<Engine, CompileError> {
        let fail = |mut diagnostics: Vec<Diagnostic>| {
            varpulis_vpl::sort_diagnostics(&mut diagnostics);
            let rendered = varpulis_vpl::render_all(source, &opts.file_name, &diagnostics);
            CompileError {
                diagnostics,
                rendered,
            }
        };
        let check_opts = CheckOptions {
            external_connectors: opts.external_connectors.clone(),
        };
        let checked = varpulis_vpl::check(source, &check_opts).map_err(fail)?;
        let program = checked.program;

        // Names first: functions and globals are visible everywhere, whatever the order.
        let mut globals: HashMap<String, GlobalVar> = HashMap::new();
        let mut vars = Vec::new();
        let mut fn_table: HashMap<String, (usize, usize)> = HashMap::new();
        let mut fn_decls = Vec::new();
        for item in &program.items {
            match item {
                Item::Binding(b) => {
                    let mutable = b.kind == ast::BindingKind::Var;
                    let slot = globals
                        .get(&b.name.name)
                        .map(|g| g.slot)
                        .unwrap_or(globals.len());
                    globals.insert(b.name.name.clone(), GlobalVar { slot, mutable });
                    if mutable && !vars.iter().any(|(n, _)| n == &b.name.name) {
                        vars.push((b.name.name.clone(), slot));
                    }
                }
                Item::Fn(f) => {
                    fn_table.insert(f.name.name.clone(), (fn_decls.len(), f.params.len()));
                    fn_decls.push(f);
                }
                _ => {}
            }
        }
        let n_globals = globals.values().map(|g| g.slot + 1).max().unwrap_or(0);
        let mut c = Compiler::new(globals, fn_table);
        let mut window_errors: Vec<Diagnostic> = Vec::new();
        let fns: Vec<FnCode> = fn_decls.iter().map(|f| c.function(f)).collect();

        let mut inits: Vec<(StmtFn, ast::Span)> = Vec::new();
        let mut connectors = Vec::new();
        let mut contexts: HashSet<String> = HashSet::new();
        for item in &program.items {
            match item {
                Item::Binding(b) => {
                    c.enter_stream(None);
                    let value = c.expr(&b.value);
                    inits.push((
                        c.global_store(&b.name.name, value, b.name.span, true),
                        b.span,
                    ));
                }
                Item::Assign(a) => {
                    c.enter_stream(None);
                    inits.push((c.assign(a), a.span));
                }
                Item::Connector(d) => connectors.push(ConnectorDecl {
                    name: d.name.name.clone(),
                    kind: d.kind.name.clone(),
                    params: args_json(&d.params),
                }),
                Item::Context(d) => {
                    contexts.insert(d.name.name.clone());
                }
                _ => {}
            }
        }
        let known_connectors: HashSet<String> = connectors
            .iter()
            .map(|d| d.name.clone())
            .chain(opts.external_connectors.iter().cloned())
            .collect();
        let stream_names: HashSet<&str> = program.streams().map(|s| s.name.name.as_str()).collect();

        let mut streams = Vec::new();
        let mut routes: HashMap<String, Vec<usize>> = HashMap::new();
        let mut stream_sources: Vec<String> = Vec::new();
        let mut input_types: Vec<String> = Vec::new();
        let mut sources = Vec::new();
        let mut sinks = Vec::new();
        for s in program.streams() {
            // Every type the stream reads: source inputs, sequence steps, `.not` types.
            let inputs: Vec<String> = correlate::stream_inputs(s)
                .iter()
                .map(|i| i.name.clone())
                .collect();
            let src = inputs.first().cloned().unwrap_or_default();
            let alias = match &s.source.kind {
                SourceKind::Named { alias, .. } => alias.as_ref().map(|a| a.name.clone()),
                _ => None,
            };
            let sequence = correlate::is_sequence(s);
            let join = matches!(s.source.kind, SourceKind::Join(_));
            if let Some(from) = &s.source.from {
                if !known_connectors.contains(&from.connector.name) {
                    c.errors.push(Diagnostic::error(
                        format!("unknown connector `{}`", from.connector.name),
                        from.connector.span,
                    ));
                }
                sources.push(SourceBinding {
                    stream: s.name.name.clone(),
                    event_type: src.clone(),
                    connector: from.connector.name.clone(),
                    params: args_json(&from.args),
                });
            }
            c.enter_stream(alias);
            let mut ops = Vec::with_capacity(s.ops.len() + 1);
            let front = if sequence {
                SeqOp::compile(&mut c, s, opts.max_sequence_runs)
                    .map(|q| OpCode::Sequence(Box::new(q)))
            } else {
                match &s.source.kind {
                    SourceKind::Join(inputs) => {
                        JoinOp::compile(&mut c, s, inputs).map(|j| OpCode::Join(Box::new(j)))
                    }
                    SourceKind::Merge(inputs) => {
                        Some(OpCode::Merge(Box::new(MergeOp::compile(&mut c, inputs))))
                    }
                    _ => Some(OpCode::Pass),
                }
            };
            match front {
                Some(OpCode::Pass) => {}
                Some(op) => ops.push(op),
                None => c.errors.push(Diagnostic::error(
                    "this stream source cannot be compiled",
                    s.source.span,
                )),
            }
            for (oi, op) in s.ops.iter().enumerate() {
                let later_emit = s.ops[oi + 1..].iter().any(|o| o.kind() == OpKind::Emit);
                let code = match op.kind() {
                    OpKind::Where => match op.first_positional() {
                        Some(e) => OpCode::Where(c.expr(e)),
                        None => {
                            c.errors
                                .push(Diagnostic::error("`.where` needs a condition", op.span));
                            OpCode::Pass
                        }
                    },
                    OpKind::Select => OpCode::Select(c.field_list(&op.args, "select")),
                    OpKind::Emit => {
                        if let Some(ctx) = op.named("context") {
                            check_context(&mut c, &contexts, ctx);
                        }
                        OpCode::Emit(c.field_list(&op.args, "emit"))
                    }
                    OpKind::Process => match op.first_positional() {
                        Some(e) => OpCode::Process {
                            call: c.expr(e),
                            outputs: !later_emit,
                        },
                        None => {
                            c.errors.push(Diagnostic::error(
                                "`.process` needs a function call",
                                op.span,
                            ));
                            OpCode::Pass
                        }
                    },
                    OpKind::Context => {
                        match op.first_positional() {
                            Some(e) => check_context(&mut c, &contexts, e),
                            None => c.errors.push(Diagnostic::error(
                                "`.context` needs a context name",
                                op.span,
                            )),
                        }
                        OpCode::Pass
                    }
                    OpKind::From | OpKind::To => {
                        let Some(conn) = ident_arg(op) else {
                            c.errors.push(Diagnostic::error(
                                format!("`.{}` needs a connector name", op.name.name),
                                op.span,
                            ));
                            continue;
                        };
                        if !known_connectors.contains(&conn.name) {
                            c.errors.push(Diagnostic::error(
                                format!("unknown connector `{}`", conn.name),
                                conn.span,
                            ));
                        }
                        if op.kind() == OpKind::From {
                            sources.push(SourceBinding {
                                stream: s.name.name.clone(),
                                event_type: src.clone(),
                                connector: conn.name.clone(),
                                params: args_json(&op.args),
                            });
                            OpCode::Pass
                        } else {
                            let sink = SinkBinding {
                                stream: s.name.name.clone(),
                                connector: conn.name.clone(),
                                params: args_json(&op.args),
                            };
                            sinks.push(sink.clone());
                            OpCode::To(Arc::new(sink))
                        }
                    }
                    // The join's window is its horizon, consumed by the join operator.
                    OpKind::Window if join => OpCode::Pass,
                    OpKind::Window | OpKind::Aggregate if crate::window::is_site(&s.ops, oi) => {
                        let name: Arc<str> = Arc::from(s.name.name.as_str());
                        OpCode::Window(Box::new(crate::window::WindowOp::compile(
                            &mut c,
                            &s.ops,
                            &name,
                            &mut window_errors,
                        )))
                    }
                    OpKind::Window | OpKind::Aggregate | OpKind::PartitionBy => OpCode::Pass,
                    OpKind::Having => match op.first_positional() {
                        Some(e) => OpCode::Where(c.expr(e)),
                        None => OpCode::Pass,
                    },
                    // Part of the pattern or join, compiled into the front operator.
                    OpKind::Within | OpKind::Not | OpKind::On => OpCode::Pass,
                    _ => {
                        c.errors.push(Diagnostic::error(
                            format!("unknown operator `.{}`", op.name.name),
                            op.name.span,
                        ));
                        OpCode::Pass
                    }
                };
                ops.push(code);
            }
            for input in &inputs {
                routes.entry(input.clone()).or_default().push(streams.len());
                if !stream_names.contains(input.as_str()) && !input_types.contains(input) {
                    input_types.push(input.clone());
                }
            }
            stream_sources.push(src);
            streams.push(StreamCode {
                name: c.intern(&s.name.name),
                ops,
                feeds_downstream: false,
            });
        }
        for st in &mut streams {
            st.feeds_downstream = routes.contains_key(&*st.name);
            if let Some(OpCode::Sequence(q)) = st.ops.first_mut() {
                q.set_feeds_downstream(st.feeds_downstream);
            }
        }
        if let Some(cycle) = find_cycle(&streams, &stream_sources) {
            let span = program
                .streams()
                .find(|s| s.name.name == cycle)
                .map(|s| s.name.span)
                .unwrap_or_default();
            c.errors.push(Diagnostic::error(
                format!("stream `{cycle}` is part of a cycle"),
                span,
            ));
        }
        c.errors.append(&mut window_errors);
        if !c.errors.is_empty() {
            return Err(fail(std::mem::take(&mut c.errors)));
        }

        let mut engine = Engine {
            program_hash: checkpoint::program_hash(source),
            fns,
            streams,
            routes,
            state: State {
                globals: vec![Value::Null; n_globals],
                limits: opts.limits(),
                ..State::default()
            },
            vars,
            input_types,
            sources,
            sinks,
            connectors,
            stats: EngineStats::default(),
            recent_errors: VecDeque::new(),
        };
        let empty = Event::new("", 0, Vec::new());
        for (init, span) in &inits {
            engine.state.reset_frame();
            let mut cx = Ctx {
                st: &mut engine.state,
                event: &empty,
                alias: &empty,
                fns: &engine.fns,
            };
            if let Err(e) = init(&mut cx) {
                return Err(fail(vec![Diagnostic::error(
                    format!("evaluating this top-level binding failed: {e}"),
                    *span,
                )]));
            }
        }
        engine.stats.division_by_zero = std::mem::take(&mut engine.state.div_by_zero);
        Ok(engine)
    }

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
        self.state.produced = 0;
        let start = out.len();
        let mut queue: VecDeque<Event> = VecDeque::new();
        let mut tail: Vec<Event> = Vec::new();
        let mut current = std::borrow::Cow::Borrowed(event);
        loop {
            if let Some(targets) = self.routes.get(&*current.event_type) {
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
                        self.stats.errors += 1;
                        if error.is_budget() {
                            self.stats.budget_exceeded += 1;
                        }
                        tracing::warn!(stream = %stream.name, event_type = %current.event_type, %error, "runtime error; event skipped by this stream");
                        if self.recent_errors.len() == RECENT_ERRORS {
                            self.recent_errors.pop_front();
                        }
                        self.recent_errors.push_back(ErrorRecord {
                            stream: stream.name.to_string(),
                            event_type: current.event_type.to_string(),
                            error,
                        });
                    }
                }
            }
            queue.extend(tail.drain(..));
            match queue.pop_front() {
                Some(next) => current = std::borrow::Cow::Owned(next),
                None => break,
            }
        }
        self.stats.events_out += out[start..].iter().filter(|o| o.is_output).count() as u64;
        self.stats.division_by_zero += std::mem::take(&mut self.state.div_by_zero);
        Ok(())
    }

    /// Signals the end of input: fires every open time and session window (count windows that
    /// are incomplete emit nothing), routing the results downstream like [`Engine::process`].
    pub fn finish(&mut self, out: &mut Vec<OutputEvent>) {
        // A flushed stream may feed a windowed stream declared before it: repeat until quiet.
        for _ in 0..=self.streams.len() {
            let start = out.len();
            let mut tail: Vec<Event> = Vec::new();
            let mut fired_any = false;
            for stream in &self.streams {
                for (i, op) in stream.ops.iter().enumerate() {
                    let OpCode::Window(w) = op else { continue };
                    let (out_mark, tail_mark) = (out.len(), tail.len());
                    self.state.reset_frame();
                    self.state.produced = 0;
                    let alias = Event::new(&stream.name, 0, Vec::new());
                    let mut run = Run {
                        st: &mut self.state,
                        fns: &self.fns,
                        stream,
                        alias: &alias,
                        out,
                        tail: &mut tail,
                    };
                    let r = w.flush(&mut |f, e| eval(&mut run, f, e)).and_then(|fired| {
                        fired_any |= !fired.is_empty();
                        fired
                            .iter()
                            .try_for_each(|e| exec(&mut run, i + 1, e, None))
                    });
                    if let Err(error) = r {
                        out.truncate(out_mark);
                        tail.truncate(tail_mark);
                        self.stats.errors += 1;
                        if error.is_budget() {
                            self.stats.budget_exceeded += 1;
                        }
                        tracing::warn!(stream = %stream.name, %error, "runtime error while flushing windows");
                    }
                }
            }
            self.stats.events_out += out[start..].iter().filter(|o| o.is_output).count() as u64;
            for e in tail {
                if self.process(&e, out).is_ok() {
                    self.stats.events_in = self.stats.events_in.saturating_sub(1);
                }
            }
            if !fired_any {
                break;
            }
        }
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
                    OpCode::Window(w) => w.snapshot(),
                    OpCode::Sequence(q) => q.snapshot(),
                    OpCode::Join(j) => j.snapshot(),
                    _ => continue,
                };
                operators.insert(format!("{}#{i}", stream.name), snap);
            }
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
                    OpCode::Window(w) => {
                        let r = w.parse_snapshot(j)?;
                        installs.push(Box::new(move || w.install(r)));
                    }
                    OpCode::Sequence(q) => {
                        let r = q.parse_snapshot(j)?;
                        installs.push(Box::new(move || q.install(r)));
                    }
                    OpCode::Join(jo) => {
                        let r = jo.parse_snapshot(j)?;
                        installs.push(Box::new(move || jo.install(r)));
                    }
                    _ => {}
                }
            }
        }
        for install in installs {
            install();
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

fn check_context(c: &mut Compiler, contexts: &HashSet<String>, e: &ast::Expr) {
    match &e.kind {
        ExprKind::Name(id) if contexts.contains(&id.name) => {}
        ExprKind::Name(id) => c.errors.push(Diagnostic::error(
            format!("undeclared context `{}`", id.name),
            id.span,
        )),
        _ => c
            .errors
            .push(Diagnostic::error("expected a context name", e.span)),
    }
}

/// A stream that (transitively) consumes itself, if any.
fn find_cycle(streams: &[StreamCode], sources: &[String]) -> Option<String> {
    let index: HashMap<&str, usize> = streams
        .iter()
        .enumerate()
        .map(|(i, s)| (&*s.name, i))
        .collect();
    for (start, s) in streams.iter().enumerate() {
        let mut cur = sources
            .get(start)
            .and_then(|src| index.get(src.as_str()).copied());
        let mut hops = 0;
        while let Some(i) = cur {
            if i == start {
                return Some(s.name.to_string());
            }
            hops += 1;
            if hops > streams.len() {
                break;
            }
            cur = sources
                .get(i)
                .and_then(|src| index.get(src.as_str()).copied());
        }
    }
    None
}
