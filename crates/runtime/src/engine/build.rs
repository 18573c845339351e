//! `Engine::compile`: from checked source to a runnable engine, in phases.
//!
//! 1. [`Builder::declare`]: top-level names first (functions and globals are visible everywhere,
//!    whatever the order of declarations);
//! 2. [`Builder::functions`]: function bodies;
//! 3. [`Builder::items`]: top-level bindings (their initializers), connectors, contexts;
//! 4. [`Builder::streams`]: each stream's inputs, front operator and operator chain;
//! 5. [`Builder::link`]: which streams feed others, and the cycle check;
//! 6. [`Builder::into_engine`]: the engine, then the top-level bindings evaluated in order.
//!
//! The checker has already validated the program; the errors collected here are the few things
//! it leaves to the runtime (and a safety net), reported with the same rendering.

use super::exec::{OpCode, StreamCode};
use super::time::TimerCode;
use super::{Engine, EngineOptions};
use crate::checkpoint;
use crate::compile::{literal_json, Compiler, Ctx, FnCode, GlobalVar, State, StmtFn};
use crate::error::CompileError;
use crate::event::{ConnectorDecl, Event, SinkBinding, SourceBinding};
use crate::operators::capture_emit::CaptureEmit;
use crate::operators::gate::{DistinctOp, LimitOp, DISTINCT_CAPACITY};
use crate::operators::join::{JoinOp, MergeOp};
use crate::operators::pattern::PatternOp;
use crate::operators::reorder::ReorderOp;
use crate::operators::sequence::SeqOp;
use crate::operators::trend::TrendOp;
use crate::operators::window::{is_site, Lateness, WindowOp};
use crate::stats::EngineStats;
use crate::value::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use varpulis_vpl::ast::{self, ExprKind, Item, OpKind, Program, SourceKind, StreamDecl};
use varpulis_vpl::{correlate, CheckOptions, Diagnostic, ParseOptions};

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
        let parse_opts = ParseOptions {
            file_name: opts.file_name.clone(),
            loader: opts.loader.clone(),
        };
        let checked = varpulis_vpl::check_with(source, &check_opts, &parse_opts).map_err(fail)?;
        let mut b = Builder::new(&checked.program, opts);
        b.declare();
        b.functions();
        b.items();
        b.streams();
        b.link();
        let watermarked = checked
            .program
            .streams()
            .any(|s| Lateness::of(&s.ops).declared);
        match b.into_engine(source) {
            Ok(mut engine) => {
                engine.watermarked = watermarked;
                engine.warnings = checked.warnings;
                Ok(engine)
            }
            Err(mut diags) => {
                varpulis_vpl::attach_files(&mut diags, &checked.imports);
                Err(fail(diags))
            }
        }
    }
}

/// State of one compilation.
struct Builder<'p> {
    program: &'p Program,
    opts: &'p EngineOptions,
    c: Compiler,
    n_globals: usize,
    /// Top-level `var`s (name, slot): what a checkpoint captures.
    vars: Vec<(String, usize)>,
    /// Function declarations, top-level `let f = x => …` lambdas included (as one-statement
    /// functions).
    fn_decls: Vec<ast::FnDecl>,
    fns: Vec<FnCode>,
    /// Top-level initializers in source order.
    inits: Vec<(StmtFn, ast::Span)>,
    connectors: Vec<ConnectorDecl>,
    contexts: HashSet<String>,
    streams: Vec<StreamCode>,
    routes: crate::key::FastMap<String, Vec<usize>>,
    /// The first input of every stream (for the cycle check).
    stream_sources: Vec<String>,
    input_types: Vec<String>,
    sources: Vec<SourceBinding>,
    sinks: Vec<SinkBinding>,
    /// Errors found while compiling window operators (reported with the others).
    window_errors: Vec<Diagnostic>,
    /// `timer(…)` sources.
    timers: Vec<TimerCode>,
}

impl<'p> Builder<'p> {
    fn new(program: &'p Program, opts: &'p EngineOptions) -> Self {
        Builder {
            program,
            opts,
            c: Compiler::new(HashMap::new(), HashMap::new()),
            n_globals: 0,
            vars: Vec::new(),
            fn_decls: Vec::new(),
            fns: Vec::new(),
            inits: Vec::new(),
            connectors: Vec::new(),
            contexts: HashSet::new(),
            streams: Vec::new(),
            routes: Default::default(),
            stream_sources: Vec::new(),
            input_types: Vec::new(),
            sources: Vec::new(),
            sinks: Vec::new(),
            window_errors: Vec::new(),
            timers: Vec::new(),
        }
    }

    /// Phase 1: global slots and the function table.
    fn declare(&mut self) {
        let mut globals: HashMap<String, GlobalVar> = HashMap::new();
        let mut fn_table: HashMap<String, (usize, usize)> = HashMap::new();
        for item in &self.program.items {
            match item {
                Item::Binding(b) => {
                    let mutable = b.kind == ast::BindingKind::Var;
                    let slot = globals
                        .get(&b.name.name)
                        .map(|g| g.slot)
                        .unwrap_or(globals.len());
                    globals.insert(b.name.name.clone(), GlobalVar { slot, mutable });
                    if mutable && !self.vars.iter().any(|(n, _)| n == &b.name.name) {
                        self.vars.push((b.name.name.clone(), slot));
                    }
                }
                Item::Fn(f) => {
                    fn_table.insert(f.name.name.clone(), (self.fn_decls.len(), f.params.len()));
                    self.fn_decls.push(f.clone());
                }
                _ => {}
            }
            if let Item::Binding(ast::Binding {
                name,
                value:
                    ast::Expr {
                        kind: ExprKind::Lambda { params, body },
                        ..
                    },
                span,
                ..
            }) = item
            {
                fn_table.insert(name.name.clone(), (self.fn_decls.len(), params.len()));
                self.fn_decls.push(lambda_fn(name, params, body, *span));
            }
        }
        self.n_globals = globals.values().map(|g| g.slot + 1).max().unwrap_or(0);
        self.c = Compiler::new(globals, fn_table);
    }

    /// Phase 2: function bodies.
    fn functions(&mut self) {
        let decls = std::mem::take(&mut self.fn_decls);
        self.fns = decls.iter().map(|f| self.c.function(f)).collect();
    }

    /// Phase 3: top-level bindings, connectors and contexts.
    fn items(&mut self) {
        for item in &self.program.items {
            match item {
                // A top-level lambda is a function (see `declare`), not a value.
                Item::Binding(b) if matches!(b.value.kind, ExprKind::Lambda { .. }) => {}
                Item::Binding(b) => {
                    self.c.enter_stream(None);
                    let value = self.c.expr(&b.value);
                    let store = self.c.global_store(&b.name.name, value, b.name.span, true);
                    self.inits.push((store, b.span));
                }
                Item::Assign(a) => {
                    self.c.enter_stream(None);
                    let store = self.c.assign(a);
                    self.inits.push((store, a.span));
                }
                Item::Connector(d) => self.connectors.push(ConnectorDecl {
                    name: d.name.name.clone(),
                    kind: d.kind.name.clone(),
                    params: args_json(&d.params),
                }),
                Item::Context(d) => {
                    self.contexts.insert(d.name.name.clone());
                }
                _ => {}
            }
        }
    }

    /// Phase 4: every stream, in declaration order.
    fn streams(&mut self) {
        let known_connectors: HashSet<String> = self
            .connectors
            .iter()
            .map(|d| d.name.clone())
            .chain(self.opts.external_connectors.iter().cloned())
            .collect();
        let stream_names: HashSet<&str> = self
            .program
            .streams()
            .map(|s| s.name.name.as_str())
            .collect();
        for s in self.program.streams() {
            // Every type the stream reads: source inputs, sequence steps, pattern items, `.not`
            // types; a timer stream reads its ticks.
            let mut inputs: Vec<String> = correlate::stream_reads(self.program, s)
                .iter()
                .map(|i| i.name.clone())
                .collect();
            let mut internal: Option<String> = None;
            if let SourceKind::Timer(args) = &s.source.kind {
                let ty = format!("Timer_{}", s.name.name);
                self.timers.push(timer_code(self.c.intern(&ty), args));
                inputs.push(ty.clone());
                internal = Some(ty);
            }
            let src = inputs.first().cloned().unwrap_or_default();
            if let Some(from) = &s.source.from {
                self.check_connector(&known_connectors, &from.connector);
                self.sources.push(SourceBinding {
                    stream: s.name.name.clone(),
                    event_type: src.clone(),
                    connector: from.connector.name.clone(),
                    params: args_json(&from.args),
                });
            }
            let ops = self.stream_ops(s, &src, &known_connectors);
            for input in &inputs {
                self.routes
                    .entry(input.clone())
                    .or_default()
                    .push(self.streams.len());
                if !stream_names.contains(input.as_str())
                    && !self.input_types.contains(input)
                    && internal.as_ref() != Some(input)
                {
                    self.input_types.push(input.clone());
                }
            }
            self.stream_sources.push(src);
            let name = self.c.intern(&s.name.name);
            self.streams.push(StreamCode {
                name,
                ops,
                feeds_downstream: false,
            });
        }
    }

    /// The front operator (sequence, join, merge) and the compiled chain of one stream.
    fn stream_ops(
        &mut self,
        s: &StreamDecl,
        src: &str,
        known_connectors: &HashSet<String>,
    ) -> Vec<OpCode> {
        let alias = match &s.source.kind {
            SourceKind::Named { alias, .. } => alias.as_ref().map(|a| a.name.clone()),
            _ => None,
        };
        let join = matches!(s.source.kind, SourceKind::Join(..));
        self.c.enter_stream(alias);
        let mut ops = Vec::with_capacity(s.ops.len() + 1);
        let front = if let Some(p) = correlate::stream_pattern(self.program, s) {
            Some(OpCode::Pattern(Box::new(PatternOp::compile(
                &mut self.c,
                p,
                s,
                self.opts.max_sequence_runs,
            ))))
        } else if correlate::is_sequence(s)
            && s.ops.iter().any(|o| o.kind() == OpKind::TrendAggregate)
        {
            TrendOp::compile(&mut self.c, s, self.opts.max_sequence_runs)
                .map(|t| OpCode::Trend(Box::new(t)))
        } else if correlate::is_sequence(s) {
            SeqOp::compile(&mut self.c, s, self.opts.max_sequence_runs)
                .map(|q| OpCode::Sequence(Box::new(q)))
        } else {
            match &s.source.kind {
                SourceKind::Join(inputs, kind) => JoinOp::compile(&mut self.c, s, inputs, *kind)
                    .map(|j| OpCode::Join(Box::new(j))),
                SourceKind::Merge(inputs) => Some(OpCode::Merge(Box::new(MergeOp::compile(
                    &mut self.c,
                    inputs,
                )))),
                _ => Some(OpCode::Pass),
            }
        };
        // After a match, a bare name the match lacks reads the captures (`.emit(user: user_id)`).
        self.c.match_names = matches!(
            front,
            Some(OpCode::Sequence(_) | OpCode::Pattern(_) | OpCode::Trend(_))
        );
        match front {
            Some(OpCode::Pass) => {}
            Some(op) => ops.push(op),
            None => self.c.errors.push(Diagnostic::error(
                "this stream source cannot be compiled",
                s.source.span,
            )),
        }
        for (oi, op) in s.ops.iter().enumerate() {
            let later_emit = s.ops[oi + 1..].iter().any(|o| o.kind() == OpKind::Emit);
            if let Some(code) = self.op(s, oi, op, later_emit, join, src, known_connectors) {
                ops.push(code);
            }
        }
        if let Some(front) = lateness_front(&s.ops, &ops) {
            ops.insert(0, front);
        }
        capture_emit(&mut self.c, s, &mut ops);
        ops
    }

    /// One operator of a stream's chain (`None`: nothing to run, e.g. a failed `.to`).
    #[allow(clippy::too_many_arguments)]
    fn op(
        &mut self,
        s: &StreamDecl,
        oi: usize,
        op: &ast::StreamOp,
        later_emit: bool,
        join: bool,
        src: &str,
        known_connectors: &HashSet<String>,
    ) -> Option<OpCode> {
        let c = &mut self.c;
        Some(match op.kind() {
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
                    check_context(c, &self.contexts, ctx);
                }
                let ty = match &op.emit_type {
                    Some(t) => c.intern(&t.name),
                    None => c.intern(&s.name.name),
                };
                OpCode::Emit(c.field_list(&op.args, "emit"), ty)
            }
            OpKind::Distinct => OpCode::Distinct {
                part: partition_key(c, s),
                keys: op.positional().map(|e| c.expr(e)).collect(),
                op: Box::new(DistinctOp::new(DISTINCT_CAPACITY)),
            },
            OpKind::Limit | OpKind::First => {
                let n = match op.first_positional().map(|e| &e.kind) {
                    Some(ExprKind::Int(n)) => u64::try_from(*n).unwrap_or(0),
                    _ => 1,
                };
                OpCode::Limit {
                    part: partition_key(c, s),
                    op: Box::new(LimitOp::new(n)),
                }
            }
            OpKind::Print => OpCode::Print(op.positional().map(|e| text_arg(c, e)).collect()),
            // `.alert(message: "…{field}…", webhook: url)`: logged at INFO (no HTTP client here).
            OpKind::Alert => OpCode::Log {
                level: tracing::Level::INFO,
                message: Some(match op.named("message") {
                    Some(e) => text_arg(c, e),
                    None => {
                        let name = s.name.name.clone();
                        Box::new(move |_| Ok(Value::str(&format!("{name} alert"))))
                    }
                }),
                data: None,
            },
            OpKind::Log => {
                let level = match op.named("level").map(|e| &e.kind) {
                    Some(ExprKind::Str(l)) => log_level(l),
                    Some(ExprKind::Name(l)) => log_level(&l.name),
                    _ => tracing::Level::INFO,
                };
                let message = op
                    .named("message")
                    .or_else(|| op.first_positional())
                    .map(|e| text_arg(c, e));
                let data = op.named("data").map(|e| c.expr(e));
                OpCode::Log {
                    level,
                    message,
                    data,
                }
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
                    Some(e) => check_context(c, &self.contexts, e),
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
                    return None;
                };
                self.check_connector(known_connectors, conn);
                if op.kind() == OpKind::From {
                    self.sources.push(SourceBinding {
                        stream: s.name.name.clone(),
                        event_type: src.to_string(),
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
                    self.sinks.push(sink.clone());
                    OpCode::To(Arc::new(sink))
                }
            }
            // The join's window is its horizon, consumed by the join operator.
            OpKind::Window if join => OpCode::Pass,
            OpKind::Window | OpKind::Aggregate | OpKind::WindowPattern if is_site(&s.ops, oi) => {
                let name: Arc<str> = Arc::from(s.name.name.as_str());
                OpCode::Window(Box::new(WindowOp::compile(
                    c,
                    &s.ops,
                    &name,
                    &mut self.window_errors,
                )))
            }
            OpKind::Window | OpKind::Aggregate | OpKind::PartitionBy => OpCode::Pass,
            OpKind::Having => match op.first_positional() {
                Some(e) => OpCode::Where(c.expr(e)),
                None => OpCode::Pass,
            },
            // Part of the pattern or join, compiled into the front operator.
            OpKind::Within
            | OpKind::Not
            | OpKind::On
            | OpKind::MatchMode
            | OpKind::TrendAggregate => OpCode::Pass,
            // Read by the stream's stateful operator.
            OpKind::Watermark | OpKind::AllowedLateness | OpKind::WindowPattern => OpCode::Pass,
            OpKind::Other if op.name.name == "enrich" => {
                if let Some(conn) = ident_arg(op) {
                    self.check_connector(known_connectors, conn);
                }
                let c = &mut self.c;
                match crate::operators::enrich::compile(c, op, self.opts.enricher.clone()) {
                    Ok((key, e)) => OpCode::Enrich(key, Box::new(e)),
                    Err(d) => {
                        c.errors.push(d);
                        OpCode::Pass
                    }
                }
            }
            _ => {
                c.errors.push(Diagnostic::error(
                    format!("unknown operator `.{}`", op.name.name),
                    op.name.span,
                ));
                OpCode::Pass
            }
        })
    }

    fn check_connector(&mut self, known: &HashSet<String>, conn: &ast::Ident) {
        if !known.contains(&conn.name) {
            self.c.errors.push(Diagnostic::error(
                format!("unknown connector `{}`", conn.name),
                conn.span,
            ));
        }
    }

    /// Phase 5: which streams feed others (their results are re-routed), and the cycle check.
    fn link(&mut self) {
        for st in &mut self.streams {
            st.feeds_downstream = self.routes.contains_key(&*st.name);
            for op in st.ops.iter_mut().take(2) {
                match op {
                    OpCode::Sequence(q) => q.set_feeds_downstream(st.feeds_downstream),
                    OpCode::Pattern(p) => p.set_feeds_downstream(st.feeds_downstream),
                    OpCode::Join(j) => j.set_feeds_downstream(st.feeds_downstream),
                    _ => {}
                }
            }
        }
        if let Some(cycle) = find_cycle(&self.streams, &self.stream_sources) {
            let span = self
                .program
                .streams()
                .find(|s| s.name.name == cycle)
                .map(|s| s.name.span)
                .unwrap_or_default();
            self.c.errors.push(Diagnostic::error(
                format!("stream `{cycle}` is part of a cycle"),
                span,
            ));
        }
    }

    /// Phase 6: the engine, with its top-level bindings evaluated in order.
    fn into_engine(mut self, source: &str) -> Result<Engine, Vec<Diagnostic>> {
        self.c.errors.append(&mut self.window_errors);
        if !self.c.errors.is_empty() {
            return Err(std::mem::take(&mut self.c.errors));
        }
        let mut engine = Engine {
            program_hash: checkpoint::program_hash(source),
            fns: self.fns,
            streams: self.streams,
            routes: self.routes,
            route_cache: Vec::new(),
            state: State {
                globals: vec![Value::Null; self.n_globals],
                limits: self.opts.limits(),
                ..State::default()
            },
            vars: self.vars,
            input_types: self.input_types,
            sources: self.sources,
            sinks: self.sinks,
            connectors: self.connectors,
            stats: EngineStats::default(),
            recent_errors: VecDeque::new(),
            print: self.opts.print,
            timers: self.timers,
            watermarked: false,
            warnings: Vec::new(),
        };
        let empty = Event::new("", 0, Vec::new());
        for (init, span) in &self.inits {
            engine.state.reset_frame();
            let mut cx = Ctx {
                st: &mut engine.state,
                event: &empty,
                alias: &empty,
                fns: &engine.fns,
            };
            if let Err(e) = init(&mut cx) {
                return Err(vec![Diagnostic::error(
                    format!("evaluating this top-level binding failed: {e}"),
                    *span,
                )]);
            }
        }
        engine.stats.division_by_zero = std::mem::take(&mut engine.state.div_by_zero);
        Ok(engine)
    }
}

/// A sequence or join stream whose only operator after the pattern (join) is an `.emit` of
/// capture fields (`.emit(user: l.user, …)`): the sequence (join) builds each match's output
/// straight from the captures (partner events, `operators/capture_emit.rs`); the `.emit`
/// operator stays for the plain path.
fn capture_emit(c: &mut Compiler, s: &StreamDecl, ops: &mut [OpCode]) {
    let Some((first @ (OpCode::Sequence(_) | OpCode::Join(_)), rest)) = ops.split_first_mut()
    else {
        return;
    };
    let mut rest = rest.iter().filter(|o| !matches!(o, OpCode::Pass));
    let (Some(OpCode::Emit(fields, ty)), None) = (rest.next(), rest.next()) else {
        return;
    };
    let mut emits = s.ops.iter().filter(|o| o.kind() == OpKind::Emit);
    let (Some(op), None) = (emits.next(), emits.next()) else {
        return;
    };
    if let Some(emit) = CaptureEmit::compile(c, &op.args) {
        if emit.len() == fields.len() {
            match first {
                OpCode::Sequence(q) => q.set_capture_emit(emit, ty.clone()),
                OpCode::Join(j) => j.set_capture_emit(emit, ty.clone()),
                _ => {}
            }
        }
    }
}

/// The `.watermark` front a stream needs: none without `.watermark`/`.allowed_lateness` or when
/// its window handles lateness itself (time and session windows); a reorder buffer when its
/// results depend on event order (sequences, patterns, joins, count windows); else a filter
/// dropping late events.
fn lateness_front(decl: &[ast::StreamOp], ops: &[OpCode]) -> Option<OpCode> {
    let lateness = Lateness::of(decl);
    if !lateness.declared {
        return None;
    }
    let mut reorder = false;
    for op in ops {
        match op {
            OpCode::Window(w) if w.handles_lateness() => return None,
            OpCode::Window(w) => reorder |= w.order_sensitive(),
            OpCode::Sequence(_) | OpCode::Pattern(_) | OpCode::Join(_) | OpCode::Trend(_) => {
                reorder = true
            }
            _ => {}
        }
    }
    Some(OpCode::Reorder(Box::new(ReorderOp::new(lateness, reorder))))
}

/// A `timer(period[, initial_delay: d])` source (checked: positive period, non-negative delay).
fn timer_code(ty: Arc<str>, args: &[ast::Arg]) -> TimerCode {
    let ns = |e: &ast::Expr| match e.kind {
        ExprKind::Duration(d) => i64::try_from(d).unwrap_or(i64::MAX),
        _ => 0,
    };
    let period = args
        .iter()
        .find(|a| a.name.is_none())
        .map(|a| ns(&a.value))
        .unwrap_or(0)
        .max(1);
    let delay = args
        .iter()
        .find(|a| a.name.as_ref().is_some_and(|n| n.name == "initial_delay"))
        .map(|a| ns(&a.value))
        .unwrap_or(period);
    TimerCode {
        ty,
        period,
        delay,
        next: None,
    }
}

/// `let name = (params) => body` as the function `fn name(params): return body`.
fn lambda_fn(
    name: &ast::Ident,
    params: &[ast::Ident],
    body: &ast::Expr,
    span: ast::Span,
) -> ast::FnDecl {
    ast::FnDecl {
        name: name.clone(),
        params: params
            .iter()
            .map(|p| ast::Param {
                name: p.clone(),
                ty: None,
                span: p.span,
            })
            .collect(),
        ret: None,
        body: ast::Block {
            stmts: vec![ast::Stmt {
                kind: ast::StmtKind::Return(Some(body.clone())),
                span: body.span,
            }],
            span: body.span,
        },
        span,
    }
}

/// The stream's `.partition_by` key as a compiled expression (stateful Tier 3 operators keep
/// their state per partition).
fn partition_key(c: &mut Compiler, s: &StreamDecl) -> Option<crate::compile::ExprFn> {
    s.ops
        .iter()
        .find(|o| o.kind() == OpKind::PartitionBy)
        .and_then(|o| o.first_positional())
        .map(|e| c.expr(e))
}

/// `.log(level: …)` names; the checker accepted only these.
fn log_level(name: &str) -> tracing::Level {
    match name.to_ascii_lowercase().as_str() {
        "trace" => tracing::Level::TRACE,
        "debug" => tracing::Level::DEBUG,
        "warn" | "warning" => tracing::Level::WARN,
        "error" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    }
}

/// Named arguments as JSON literals (connector and `.from`/`.to` parameters).
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

/// A `.print`/`.log`/`.alert` text argument (see `Compiler::text`).
fn text_arg(c: &mut Compiler, e: &ast::Expr) -> crate::compile::ExprFn {
    c.text(e)
}
