//! Compiler from the checked AST to closure trees.
//!
//! Every name is resolved once, here: function locals and parameters become stack slots,
//! top-level `let/var/const` become global slots, a stream's `as` alias reads the event that
//! entered the stream, and anything else reads a field of the current event through a cached
//! position (see [`Event::field_cached`]). User functions are called by index, so recursion needs
//! no late binding. Evaluation then never looks a name up in a hash map.

use crate::builtins::{self, BuiltinFn};
use crate::error::RuntimeError;
use crate::event::{fields_cached, Event};
use crate::limits::Limits;
use crate::value::{ArithOp, Fields, OpError, Value};
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use varpulis_vpl::ast::{self, BinaryOp, Block, Expr, ExprKind, StmtKind, UnaryOp};
use varpulis_vpl::Diagnostic;

mod lambda;

/// Deepest user-function call nesting (§11).
pub(crate) const MAX_DEPTH: u32 = 256;

/// Most bytes of native stack the engine may use below the point where it was entered. Deeply
/// nested calls through deeply nested expressions could otherwise overflow a 2 MiB thread stack
/// (the default of spawned threads and of tokio's pools) before [`MAX_DEPTH`] calls, and a stack
/// overflow aborts the process. Debug builds use several times more stack per call than release
/// builds, so there the limit can be reached earlier than `MAX_DEPTH`.
pub(crate) const MAX_STACK_BYTES: usize = 1 << 20;

/// An address inside the current stack frame (the stack grows downwards on every platform we
/// run on).
#[inline(never)]
pub(crate) fn stack_addr() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// Mutable evaluation state shared by all closures while one stream handles one event.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Top-level bindings by slot.
    pub globals: Vec<Value>,
    /// Locals of the active function frames.
    pub stack: Vec<Value>,
    /// Start of the current frame in `stack`.
    pub base: usize,
    /// Loop steps and calls used so far for the current (stream, event).
    pub steps: u64,
    /// Bytes of strings and collections built so far for the current (stream, event).
    pub mem: usize,
    /// Events produced so far for the current input event (all streams), against
    /// [`Limits::max_outputs`].
    pub produced: usize,
    /// Budgets per (stream, event).
    pub limits: Limits,
    /// [`stack_addr`] where the engine was entered (see [`MAX_STACK_BYTES`]).
    pub stack_base: usize,
    /// Current call depth.
    pub depth: u32,
    /// Divisions by zero seen (they yield `null`; counted in stats).
    pub div_by_zero: u64,
    /// Whether `emit` statements are allowed (inside `.process`).
    pub in_process: bool,
    /// Events created by `emit` statements during the current `.process`.
    pub emitted: Vec<Event>,
    /// Lines written by `.print` since the engine last handed them out.
    pub printed: Vec<String>,
    /// Late events dropped since the engine last collected the count.
    pub late: u64,
    /// Pattern runs dropped (live-run cap) since the engine last collected the count.
    pub runs_dropped: u64,
    /// A reused buffer for the matches (event, captures) a sequence or join produces for one
    /// event: no list is allocated per event (see `engine::exec`).
    pub match_buf: Vec<(Event, Event)>,
}

impl State {
    /// Resets the per-invocation parts before a stream handles an event.
    pub fn reset_frame(&mut self) {
        self.stack.clear();
        self.base = 0;
        self.steps = 0;
        self.mem = 0;
        self.stack_base = stack_addr();
        self.depth = 0;
        self.in_process = false;
        self.emitted.clear();
    }

    #[inline]
    fn step(&mut self) -> Result<(), RuntimeError> {
        self.steps += 1;
        if self.steps > self.limits.step_budget {
            return Err(RuntimeError::StepBudget(self.limits.step_budget));
        }
        Ok(())
    }

    /// Checks a freshly built string or collection against the size limits and charges it to
    /// the memory budget of the current (stream, event).
    #[inline]
    pub fn charge(&mut self, v: &Value) -> Result<(), RuntimeError> {
        match v {
            Value::Str(_) | Value::Array(_) | Value::Map(_) => {
                let n = self.limits.check_value(v)?;
                self.charge_bytes(n)
            }
            _ => Ok(()),
        }
    }

    /// Charges `n` bytes to the memory budget of the current (stream, event).
    #[inline]
    pub fn charge_bytes(&mut self, n: usize) -> Result<(), RuntimeError> {
        self.mem = self.mem.saturating_add(n);
        if self.mem > self.limits.memory_budget {
            return Err(RuntimeError::MemoryBudget(self.limits.memory_budget));
        }
        Ok(())
    }

    /// Counts one more event produced for the current input event.
    #[inline]
    pub fn produce(&mut self) -> Result<(), RuntimeError> {
        self.produced += 1;
        if self.produced > self.limits.max_outputs {
            return Err(RuntimeError::OutputLimit(self.limits.max_outputs));
        }
        Ok(())
    }

    /// Charges the fields of an event being built (output fields must also be writable as text).
    pub fn charge_fields(&mut self, fields: &Fields) -> Result<(), RuntimeError> {
        for (_, v) in fields {
            if matches!(v, Value::Array(_) | Value::Map(_)) {
                self.limits.check_text(v)?;
            }
        }
        self.charge_bytes(Limits::fields_bytes(fields.len()))
    }
}

/// What one closure sees: the mutable state, the current event, the alias event and the functions.
pub(crate) struct Ctx<'a> {
    /// Mutable state.
    pub st: &'a mut State,
    /// Event whose fields bare names read.
    pub event: &'a Event,
    /// Event bound by `T as a` (the event that entered the stream).
    pub alias: &'a Event,
    /// Compiled user functions.
    pub fns: &'a [FnCode],
}

/// A compiled expression.
pub(crate) type ExprFn = Box<dyn Fn(&mut Ctx<'_>) -> Result<Value, RuntimeError> + Send + Sync>;
/// A compiled statement.
pub(crate) type StmtFn = Box<dyn Fn(&mut Ctx<'_>) -> Result<Flow, RuntimeError> + Send + Sync>;

/// How a statement ended.
pub(crate) enum Flow {
    Next,
    Break,
    Continue,
    Return(Value),
}

/// A compiled user function.
pub(crate) struct FnCode {
    /// Number of parameters (slots `0..params`).
    pub params: usize,
    /// Number of local slots (parameters included).
    pub locals: usize,
    /// Body statements.
    pub body: Vec<StmtFn>,
}

#[derive(Clone, Copy)]
struct LocalVar {
    slot: usize,
    mutable: bool,
}

/// A top-level binding known to the compiler.
#[derive(Clone, Copy)]
pub(crate) struct GlobalVar {
    pub slot: usize,
    pub mutable: bool,
}

/// Compiles expressions and statements, collecting diagnostics instead of stopping.
pub(crate) struct Compiler {
    /// Top-level bindings by name.
    pub globals: HashMap<String, GlobalVar>,
    /// User functions by name → (index, parameter count).
    pub fns: HashMap<String, (usize, usize)>,
    /// Interned names, so events built by the program share name pointers.
    names: HashMap<String, Arc<str>>,
    scopes: Vec<HashMap<String, LocalVar>>,
    next_slot: usize,
    max_slot: usize,
    loop_depth: usize,
    /// `as` alias of the stream being compiled.
    pub alias: Option<String>,
    /// Capture names of a sequence or join stream: `x.f` reads field `f` of the map held in
    /// field `x` of the context's alias event (the captures).
    pub captures: Vec<String>,
    /// Other names of captures: a join input named by its event type (`OrderEvent.id` for
    /// `stream Orders = OrderEvent`), alias → capture.
    pub capture_aliases: Vec<(String, String)>,
    /// Kleene captures read as arrays (`operators::kleene`): a bare name reads the hidden
    /// `@<capture>` field (the collected events) instead of the most recent event.
    pub array_captures: Vec<String>,
    /// Names that read a field of the current event whatever else they could mean: the
    /// parameter of a `.pattern(name: events => …)` lambda, evaluated on a synthetic event.
    pub field_params: Vec<String>,
    /// Compiling the operators after a sequence or pattern: a bare name the match event lacks
    /// reads the first capture that has that field (`user_id` after `partition by user_id`).
    pub match_names: bool,
    /// Errors found.
    pub errors: Vec<Diagnostic>,
}

fn run_block(body: &[StmtFn], cx: &mut Ctx<'_>) -> Result<Flow, RuntimeError> {
    for s in body {
        match s(cx)? {
            Flow::Next => {}
            other => return Ok(other),
        }
    }
    Ok(Flow::Next)
}

/// Runs user function `idx` whose arguments have already been pushed at `base`.
fn call_fn(cx: &mut Ctx<'_>, idx: usize, base: usize) -> Result<Value, RuntimeError> {
    let fns = cx.fns;
    let Some(f) = fns.get(idx) else {
        return Err(RuntimeError::Type("unknown function".into()));
    };
    cx.st.step()?;
    if cx.st.depth >= MAX_DEPTH {
        return Err(RuntimeError::Recursion(MAX_DEPTH));
    }
    if cx.st.stack_base.saturating_sub(stack_addr()) > MAX_STACK_BYTES {
        return Err(RuntimeError::StackLimit(MAX_STACK_BYTES));
    }
    cx.st.stack.truncate(base + f.params);
    cx.st.stack.resize(base + f.locals, Value::Null);
    cx.st.depth += 1;
    let saved = std::mem::replace(&mut cx.st.base, base);
    let r = run_block(&f.body, cx);
    cx.st.base = saved;
    cx.st.depth -= 1;
    cx.st.stack.truncate(base);
    match r? {
        Flow::Return(v) => Ok(v),
        _ => Ok(Value::Null),
    }
}

fn arith(op: ArithOp, a: &Value, b: &Value, st: &mut State) -> Result<Value, RuntimeError> {
    if op == ArithOp::Add {
        // Refuse an oversized concatenation before allocating it.
        match (a, b) {
            (Value::Str(x), Value::Str(y)) => st.limits.check_string(x.len() + y.len())?,
            (Value::Array(x), Value::Array(y)) => st.limits.check_len(x.len() + y.len())?,
            _ => {}
        }
    }
    match a.arith(op, b) {
        Ok(v) => {
            st.charge(&v)?;
            Ok(v)
        }
        Err(OpError::DivisionByZero) => {
            st.div_by_zero += 1;
            Ok(Value::Null)
        }
        Err(e) => Err(e.into()),
    }
}

fn to_arith(op: BinaryOp) -> Option<ArithOp> {
    Some(match op {
        BinaryOp::Add => ArithOp::Add,
        BinaryOp::Sub => ArithOp::Sub,
        BinaryOp::Mul => ArithOp::Mul,
        BinaryOp::Div => ArithOp::Div,
        BinaryOp::Rem => ArithOp::Rem,
        BinaryOp::Pow => ArithOp::Pow,
        BinaryOp::BitAnd => ArithOp::BitAnd,
        BinaryOp::BitOr => ArithOp::BitOr,
        BinaryOp::BitXor => ArithOp::BitXor,
        BinaryOp::Shl => ArithOp::Shl,
        BinaryOp::Shr => ArithOp::Shr,
        _ => return None,
    })
}

/// Converts a literal-only expression (connector params) to JSON; identifiers become strings.
pub(crate) fn literal_json(e: &Expr) -> Option<serde_json::Value> {
    Some(match &e.kind {
        ExprKind::Int(i) => (*i).into(),
        ExprKind::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number)?,
        ExprKind::Str(s) => s.clone().into(),
        ExprKind::Bool(b) => (*b).into(),
        ExprKind::Null => serde_json::Value::Null,
        ExprKind::Duration(d) => (*d).into(),
        ExprKind::Timestamp(t) => (*t).into(),
        ExprKind::Name(id) => id.name.clone().into(),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            operand,
        } => match &operand.kind {
            ExprKind::Int(i) => (-*i).into(),
            ExprKind::Float(f) => {
                serde_json::Number::from_f64(-*f).map(serde_json::Value::Number)?
            }
            _ => return None,
        },
        ExprKind::Array(items) => {
            serde_json::Value::Array(items.iter().map(literal_json).collect::<Option<Vec<_>>>()?)
        }
        // Connector parameters such as `headers: {"authorization": "…"}` (docs/connectors.md).
        ExprKind::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|e| {
                    let key = match &e.key.kind {
                        ExprKind::Str(s) => s.clone(),
                        ExprKind::Name(id) => id.name.clone(),
                        _ => return None,
                    };
                    Some((key, literal_json(&e.value)?))
                })
                .collect::<Option<serde_json::Map<_, _>>>()?,
        ),
        _ => return None,
    })
}

impl Compiler {
    /// A compiler knowing the program's globals and functions.
    pub fn new(globals: HashMap<String, GlobalVar>, fns: HashMap<String, (usize, usize)>) -> Self {
        Compiler {
            globals,
            fns,
            names: HashMap::new(),
            scopes: Vec::new(),
            next_slot: 0,
            max_slot: 0,
            loop_depth: 0,
            alias: None,
            captures: Vec::new(),
            capture_aliases: Vec::new(),
            array_captures: Vec::new(),
            field_params: Vec::new(),
            match_names: false,
            errors: Vec::new(),
        }
    }

    /// Interns a field or type name.
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(a) = self.names.get(name) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(name);
        self.names.insert(name.to_string(), a.clone());
        a
    }

    fn error(&mut self, msg: impl Into<String>, span: ast::Span) {
        self.errors.push(Diagnostic::error(msg, span));
    }

    /// Whether `name` is a local variable or parameter in scope.
    pub(crate) fn is_local(&self, name: &str) -> bool {
        self.lookup_local(name).is_some()
    }

    fn lookup_local(&self, name: &str) -> Option<LocalVar> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    fn declare_local(&mut self, name: &str, mutable: bool) -> usize {
        let slot = self.next_slot;
        self.next_slot += 1;
        self.max_slot = self.max_slot.max(self.next_slot);
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name.to_string(), LocalVar { slot, mutable });
        }
        slot
    }

    /// Compiles a user function body.
    pub fn function(&mut self, f: &ast::FnDecl) -> FnCode {
        self.scopes = vec![HashMap::new()];
        self.next_slot = 0;
        self.max_slot = 0;
        self.loop_depth = 0;
        self.alias = None;
        for p in &f.params {
            self.declare_local(&p.name.name, true);
        }
        let mut body = Vec::with_capacity(f.body.stmts.len());
        let n = f.body.stmts.len();
        for (i, s) in f.body.stmts.iter().enumerate() {
            // The value of a trailing expression statement is the function's result (§11).
            if i + 1 == n {
                if let StmtKind::Expr(e) = &s.kind {
                    let e = self.expr(e);
                    body.push(Box::new(move |cx: &mut Ctx<'_>| Ok(Flow::Return(e(cx)?))) as StmtFn);
                    continue;
                }
            }
            body.push(self.stmt(s));
        }
        let code = FnCode {
            params: f.params.len(),
            locals: self.max_slot,
            body,
        };
        self.scopes.clear();
        code
    }

    /// Prepares for compiling stream-level expressions (no locals).
    pub fn enter_stream(&mut self, alias: Option<String>) {
        self.scopes.clear();
        self.next_slot = 0;
        self.max_slot = 0;
        self.alias = alias;
        self.captures.clear();
        self.capture_aliases.clear();
        self.array_captures.clear();
        self.match_names = false;
    }

    /// Prepares for compiling the expressions of a sequence or join stream, whose alias event
    /// holds one map per capture name.
    pub fn enter_pattern(&mut self, captures: Vec<String>) {
        self.enter_stream(None);
        self.captures = captures;
    }

    /// The capture `name` reads (itself or the capture it is another name of), if any.
    /// The capture `name` reads in the current pattern scope (a capture or another name of
    /// one), unless a local or top-level binding shadows it.
    pub(crate) fn capture_name(&self, name: &str) -> Option<String> {
        self.capture_of(name).map(str::to_string)
    }

    fn capture_of<'n>(&'n self, name: &'n str) -> Option<&'n str> {
        if self.lookup_local(name).is_some() || self.globals.contains_key(name) {
            return None;
        }
        if self.captures.iter().any(|c| c == name) {
            return Some(name);
        }
        self.capture_aliases
            .iter()
            .find(|(a, _)| a == name)
            .map(|(_, c)| c.as_str())
    }

    fn block(&mut self, b: &Block) -> Vec<StmtFn> {
        self.scopes.push(HashMap::new());
        let out = b.stmts.iter().map(|s| self.stmt(s)).collect();
        self.scopes.pop();
        out
    }

    /// Compiles a statement (also used for top-level `:=`).
    pub fn stmt(&mut self, s: &ast::Stmt) -> StmtFn {
        match &s.kind {
            StmtKind::Binding(b) => {
                let value = self.expr(&b.value);
                if self.scopes.is_empty() {
                    return self.global_store(&b.name.name, value, b.name.span, true);
                }
                let slot = self.declare_local(&b.name.name, b.kind == ast::BindingKind::Var);
                Box::new(move |cx| {
                    let v = value(cx)?;
                    let i = cx.st.base + slot;
                    if let Some(dst) = cx.st.stack.get_mut(i) {
                        *dst = v;
                    }
                    Ok(Flow::Next)
                })
            }
            StmtKind::Assign(a) => self.assign(a),
            StmtKind::If {
                branches,
                else_body,
            } => {
                let arms: Vec<(ExprFn, Vec<StmtFn>)> = branches
                    .iter()
                    .map(|br| (self.expr(&br.cond), self.block(&br.body)))
                    .collect();
                let other = else_body
                    .as_ref()
                    .map(|b| self.block(b))
                    .unwrap_or_default();
                Box::new(move |cx| {
                    for (cond, body) in &arms {
                        if cond(cx)?.is_true() {
                            return run_block(body, cx);
                        }
                    }
                    run_block(&other, cx)
                })
            }
            StmtKind::While { cond, body } => {
                let cond = self.expr(cond);
                self.loop_depth += 1;
                let body = self.block(body);
                self.loop_depth -= 1;
                Box::new(move |cx| {
                    while cond(cx)?.is_true() {
                        cx.st.step()?;
                        match run_block(&body, cx)? {
                            Flow::Break => break,
                            Flow::Return(v) => return Ok(Flow::Return(v)),
                            Flow::Next | Flow::Continue => {}
                        }
                    }
                    Ok(Flow::Next)
                })
            }
            StmtKind::For { var, iter, body } => self.for_loop(var, iter, body),
            StmtKind::Break => Box::new(|_| Ok(Flow::Break)),
            StmtKind::Continue => Box::new(|_| Ok(Flow::Continue)),
            StmtKind::Return(e) => match e {
                Some(e) => {
                    let e = self.expr(e);
                    Box::new(move |cx| Ok(Flow::Return(e(cx)?)))
                }
                None => Box::new(|_| Ok(Flow::Return(Value::Null))),
            },
            StmtKind::Emit { event_type, args } => {
                let ty = self.intern(&event_type.name);
                let fields = self.field_list(args, "emit");
                Box::new(move |cx| {
                    if !cx.st.in_process {
                        return Err(RuntimeError::EmitOutsideProcess);
                    }
                    if cx.st.produced + cx.st.emitted.len() >= cx.st.limits.max_outputs {
                        return Err(RuntimeError::OutputLimit(cx.st.limits.max_outputs));
                    }
                    let mut out: Fields = Vec::with_capacity(fields.len());
                    for (name, e) in &fields {
                        let v = e(cx)?;
                        if !v.is_null() {
                            out.push((name.clone(), v));
                        }
                    }
                    cx.st.charge_fields(&out)?;
                    let ev = Event {
                        event_type: ty.clone(),
                        timestamp_ns: cx.event.timestamp_ns,
                        fields: Arc::new(out),
                    };
                    cx.st.emitted.push(ev);
                    Ok(Flow::Next)
                })
            }
            StmtKind::Expr(e) => {
                let e = self.expr(e);
                Box::new(move |cx| {
                    e(cx)?;
                    Ok(Flow::Next)
                })
            }
            _ => {
                self.error("unsupported statement", s.span);
                Box::new(|_| Ok(Flow::Next))
            }
        }
    }

    pub(crate) fn global_store(
        &mut self,
        name: &str,
        value: ExprFn,
        span: ast::Span,
        init: bool,
    ) -> StmtFn {
        match self.globals.get(name).copied() {
            Some(g) if init || g.mutable => Box::new(move |cx| {
                let v = value(cx)?;
                if let Some(dst) = cx.st.globals.get_mut(g.slot) {
                    *dst = v;
                }
                Ok(Flow::Next)
            }),
            _ => {
                self.error(
                    format!("`:=` needs an existing `var`, and `{name}` is not one"),
                    span,
                );
                Box::new(|_| Ok(Flow::Next))
            }
        }
    }

    pub(crate) fn assign(&mut self, a: &ast::Assign) -> StmtFn {
        let value = self.expr(&a.value);
        match self.lookup_local(&a.target.name) {
            Some(l) if l.mutable => {
                let slot = l.slot;
                Box::new(move |cx| {
                    let v = value(cx)?;
                    let i = cx.st.base + slot;
                    if let Some(dst) = cx.st.stack.get_mut(i) {
                        *dst = v;
                    }
                    Ok(Flow::Next)
                })
            }
            Some(_) => {
                self.error(
                    format!("cannot assign to `{}`: it is not a `var`", a.target.name),
                    a.target.span,
                );
                Box::new(|_| Ok(Flow::Next))
            }
            None => self.global_store(&a.target.name, value, a.target.span, false),
        }
    }

    fn for_loop(&mut self, var: &ast::Ident, iter: &Expr, body: &Block) -> StmtFn {
        // Ranges iterate without materializing an array.
        let range = match &iter.kind {
            ExprKind::Range {
                start,
                end,
                inclusive,
            } => Some((self.expr(start), self.expr(end), *inclusive)),
            _ => None,
        };
        let iter_fn = if range.is_none() {
            Some(self.expr(iter))
        } else {
            None
        };
        self.scopes.push(HashMap::new());
        let slot = self.declare_local(&var.name, false);
        self.loop_depth += 1;
        let body = self.block(body);
        self.loop_depth -= 1;
        self.scopes.pop();
        macro_rules! run_body {
            ($cx:ident, $v:expr) => {{
                $cx.st.step()?;
                let i = $cx.st.base + slot;
                if let Some(dst) = $cx.st.stack.get_mut(i) {
                    *dst = $v;
                }
                match run_block(&body, $cx)? {
                    Flow::Break => break,
                    Flow::Return(v) => return Ok(Flow::Return(v)),
                    Flow::Next | Flow::Continue => {}
                }
            }};
        }
        if let Some((lo, hi, inclusive)) = range {
            return Box::new(move |cx| {
                let (l, h) = match (lo(cx)?, hi(cx)?) {
                    (Value::Int(l), Value::Int(h)) => (l, h),
                    (Value::Null, _) | (_, Value::Null) => return Ok(Flow::Next),
                    (a, b) => {
                        return Err(RuntimeError::Type(format!(
                            "range bounds must be ints, got {} and {}",
                            a.type_name(),
                            b.type_name()
                        )))
                    }
                };
                let mut i = l;
                while i < h || (inclusive && i == h) {
                    run_body!(cx, Value::Int(i));
                    if i == i64::MAX {
                        break;
                    }
                    i += 1;
                }
                Ok(Flow::Next)
            });
        }
        let iter_fn = iter_fn.unwrap_or_else(|| Box::new(|_| Ok(Value::Null)));
        Box::new(move |cx| {
            match iter_fn(cx)? {
                Value::Null => {}
                Value::Int(n) => {
                    for i in 0..n {
                        run_body!(cx, Value::Int(i));
                    }
                }
                Value::Array(items) => {
                    for v in items.iter() {
                        run_body!(cx, v.clone());
                    }
                }
                Value::Map(m) => {
                    for (k, v) in m.iter() {
                        run_body!(
                            cx,
                            Value::Array(Arc::new(vec![Value::Str(k.clone()), v.clone()]))
                        );
                    }
                }
                Value::Str(s) => {
                    for c in s.chars() {
                        run_body!(cx, Value::Str(Arc::from(c.to_string())));
                    }
                }
                other => {
                    return Err(RuntimeError::Type(format!(
                        "cannot iterate over a {}",
                        other.type_name()
                    )))
                }
            }
            Ok(Flow::Next)
        })
    }

    /// `name: expr` lists of `.select`, `.emit` and `emit T(…)`; `context:` is skipped.
    pub fn field_list(&mut self, args: &[ast::Arg], what: &str) -> Vec<(Arc<str>, ExprFn)> {
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            if a.name.as_ref().is_some_and(|n| n.name == "context") && what != "select" {
                continue;
            }
            match a.field_name() {
                Some(name) => {
                    let name = self.intern(name);
                    let f = if what == "emit" {
                        self.text(&a.value)
                    } else {
                        self.expr(&a.value)
                    };
                    out.push((name, f));
                }
                None => self.error(
                    format!("`{what}` arguments need a name (`name: expression`)"),
                    a.span,
                ),
            }
        }
        out
    }

    /// Compiles a text argument (`.emit` fields, `.print`, `.log`, `.alert`): a string literal
    /// with `{field}` placeholders renders from the current event and captures
    /// (`template.rs`); anything else is an ordinary expression.
    pub fn text(&mut self, e: &Expr) -> ExprFn {
        if let ExprKind::Str(text) = &e.kind {
            if let Some(t) = crate::template::Template::parse(text) {
                return Box::new(move |cx| {
                    let text = t.render(&cx.event.fields, &cx.alias.fields, &cx.st.limits)?;
                    let v = Value::str(&text);
                    cx.st.charge(&v)?;
                    Ok(v)
                });
            }
        }
        self.expr(e)
    }

    /// Compiles an expression.
    pub fn expr(&mut self, e: &Expr) -> ExprFn {
        match &e.kind {
            ExprKind::Int(i) => constant(Value::Int(*i)),
            ExprKind::Float(f) => constant(Value::Float(*f)),
            ExprKind::Str(s) => constant(Value::str(s)),
            ExprKind::Bool(b) => constant(Value::Bool(*b)),
            ExprKind::Null => constant(Value::Null),
            ExprKind::Duration(d) => {
                constant(Value::Duration(i64::try_from(*d).unwrap_or(i64::MAX)))
            }
            ExprKind::Timestamp(t) => constant(Value::Timestamp(*t)),
            ExprKind::Name(id) => self.name(&id.name),
            ExprKind::Array(items) => {
                let items: Vec<ExprFn> = items.iter().map(|i| self.expr(i)).collect();
                Box::new(move |cx| {
                    let mut v = Vec::with_capacity(items.len());
                    for i in &items {
                        v.push(i(cx)?);
                    }
                    let v = Value::Array(Arc::new(v));
                    cx.st.charge(&v)?;
                    Ok(v)
                })
            }
            ExprKind::Map(entries) => {
                let entries: Vec<(ExprFn, ExprFn)> = entries
                    .iter()
                    .map(|en| {
                        let key = match &en.key.kind {
                            ExprKind::Name(id) => constant(Value::str(&id.name)),
                            _ => self.expr(&en.key),
                        };
                        (key, self.expr(&en.value))
                    })
                    .collect();
                Box::new(move |cx| {
                    let mut m: Fields = Vec::with_capacity(entries.len());
                    for (k, v) in &entries {
                        let key: Arc<str> = match k(cx)? {
                            Value::Str(s) => s,
                            other => Arc::from(other.to_string()),
                        };
                        let val = v(cx)?;
                        match m.iter_mut().find(|(existing, _)| *existing == key) {
                            Some(slot) => slot.1 = val,
                            None => m.push((key, val)),
                        }
                    }
                    let m = Value::Map(Arc::new(m));
                    cx.st.charge(&m)?;
                    Ok(m)
                })
            }
            ExprKind::Unary { op, operand } => {
                let x = self.expr(operand);
                match op {
                    UnaryOp::Neg => Box::new(move |cx| Ok(x(cx)?.neg()?)),
                    UnaryOp::BitNot => Box::new(move |cx| Ok(x(cx)?.bit_not()?)),
                    UnaryOp::Not => Box::new(move |cx| Ok(x(cx)?.not()?)),
                }
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs),
            ExprKind::Range {
                start,
                end,
                inclusive,
            } => {
                let (lo, hi, inc) = (self.expr(start), self.expr(end), *inclusive);
                Box::new(move |cx| match (lo(cx)?, hi(cx)?) {
                    (Value::Int(l), Value::Int(h)) => {
                        let hi = if inc { h.saturating_add(1) } else { h };
                        let v = builtins::range_array(l, hi, &cx.st.limits)?;
                        cx.st.charge(&v)?;
                        Ok(v)
                    }
                    (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
                    (a, b) => Err(RuntimeError::Type(format!(
                        "range bounds must be ints, got {} and {}",
                        a.type_name(),
                        b.type_name()
                    ))),
                })
            }
            ExprKind::Call { callee, args, .. } => self.call(callee, args),
            ExprKind::Field { base, name, .. } => {
                // `x.field` on a capture reads the captured event's field.
                if let ExprKind::Name(id) = &base.kind {
                    if let Some(cap) = self.capture_of(&id.name).map(str::to_string) {
                        let cap = self.intern(&cap);
                        let key = self.intern(&name.name);
                        let (s1, s2) = (AtomicU32::new(0), AtomicU32::new(0));
                        return Box::new(move |cx| {
                            Ok(match cx.alias.field_cached(&cap, &s1) {
                                Some(Value::Map(m)) => {
                                    fields_cached(m, &key, &s2).cloned().unwrap_or(Value::Null)
                                }
                                _ => Value::Null,
                            })
                        });
                    }
                }
                // `a.field` on the stream alias reads the event that entered the stream.
                if let ExprKind::Name(id) = &base.kind {
                    if self.alias.as_deref() == Some(id.name.as_str())
                        && self.lookup_local(&id.name).is_none()
                        && !self.globals.contains_key(&id.name)
                    {
                        return alias_field(self.intern(&name.name), Value::Null);
                    }
                }
                let b = self.expr(base);
                let key = name.name.clone();
                Box::new(move |cx| match b(cx)? {
                    Value::Null => Ok(Value::Null),
                    m @ Value::Map(_) => Ok(m.map_get(&key).cloned().unwrap_or(Value::Null)),
                    other => Err(RuntimeError::Type(format!(
                        "cannot read field `{key}` of a {}",
                        other.type_name()
                    ))),
                })
            }
            ExprKind::Index { base, index } => {
                let (b, i) = (self.expr(base), self.expr(index));
                Box::new(move |cx| {
                    let bv = b(cx)?;
                    Ok(bv.index(&i(cx)?)?)
                })
            }
            ExprKind::Slice { base, start, end } => {
                let b = self.expr(base);
                let s = start
                    .as_ref()
                    .map(|s| self.expr(s))
                    .unwrap_or_else(|| constant(Value::Null));
                let en = end
                    .as_ref()
                    .map(|s| self.expr(s))
                    .unwrap_or_else(|| constant(Value::Null));
                Box::new(move |cx| {
                    let bv = b(cx)?;
                    let (lo, hi) = (s(cx)?, en(cx)?);
                    let v = bv.slice(&lo, &hi)?;
                    cx.st.charge(&v)?;
                    Ok(v)
                })
            }
            ExprKind::If { cond, then, else_ } => {
                let (c, t, f) = (self.expr(cond), self.expr(then), self.expr(else_));
                Box::new(move |cx| if c(cx)?.is_true() { t(cx) } else { f(cx) })
            }
            ExprKind::Lambda { .. } => {
                // The checker only lets lambdas through where a function is expected.
                self.error("a lambda is not a value", e.span);
                constant(Value::Null)
            }
            _ => {
                self.error("unsupported expression", e.span);
                constant(Value::Null)
            }
        }
    }

    fn name(&mut self, name: &str) -> ExprFn {
        if self.field_params.iter().any(|p| p == name) {
            return event_field(self.intern(name));
        }
        if let Some(l) = self.lookup_local(name) {
            let slot = l.slot;
            return Box::new(move |cx| {
                Ok(cx
                    .st
                    .stack
                    .get(cx.st.base + slot)
                    .cloned()
                    .unwrap_or(Value::Null))
            });
        }
        if self.alias.as_deref() == Some(name) {
            return Box::new(|cx| Ok(Value::Map(cx.alias.fields.clone())));
        }
        if let Some(cap) = self.capture_of(name).map(str::to_string) {
            let cap = if self.array_captures.contains(&cap) {
                self.intern(&crate::operators::kleene::list_field(&cap))
            } else {
                self.intern(&cap)
            };
            return alias_field(cap, Value::Null);
        }
        if let Some(g) = self.globals.get(name).copied() {
            return Box::new(move |cx| {
                Ok(cx.st.globals.get(g.slot).cloned().unwrap_or(Value::Null))
            });
        }
        let key = self.intern(name);
        if self.match_names {
            let slot = AtomicU32::new(0);
            return Box::new(move |cx| {
                if let Some(v) = cx.event.field_cached(&key, &slot) {
                    return Ok(v.clone());
                }
                let from_capture = cx.alias.fields.iter().find_map(|(_, cap)| match cap {
                    Value::Map(m) => m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()),
                    _ => None,
                });
                Ok(from_capture.unwrap_or(Value::Null))
            });
        }
        event_field(key)
    }

    /// Whether a bare `name` reads the current event's field first (when the event has it):
    /// the field reads of [`Compiler::name`], as opposed to locals, the alias, captures and
    /// top-level bindings.
    fn reads_event_field(&self, name: &str) -> bool {
        self.field_params.iter().any(|p| p == name)
            || (self.lookup_local(name).is_none()
                && self.alias.as_deref() != Some(name)
                && self.capture_of(name).is_none()
                && !self.globals.contains_key(name))
    }

    /// `field <cmp> literal` (`amount > 50.0`, `k == 3`): compares the event's field in place
    /// (no clone of it, no closure call per operand) when the event has it; otherwise (and for
    /// every other shape) `plain`, the general comparison, decides.
    fn field_cmp(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr, plain: ExprFn) -> ExprFn {
        let Some(t) = self.field_test(op, lhs, rhs) else {
            return plain;
        };
        Box::new(move |cx| match t.value(cx.event) {
            Some(v) => Ok(v),
            None => plain(cx),
        })
    }

    /// The in-place form of `field <cmp> literal` ([`Compiler::field_cmp`]), if `op lhs rhs`
    /// has that shape.
    fn field_test(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> Option<FieldTest> {
        let lit = match &rhs.kind {
            ExprKind::Int(i) => Value::Int(*i),
            ExprKind::Float(f) => Value::Float(*f),
            _ => return None,
        };
        let ExprKind::Name(id) = &lhs.kind else {
            return None;
        };
        if !self.reads_event_field(&id.name) {
            return None;
        }
        let pred: fn(&Value, &Value) -> Value = match op {
            BinaryOp::Eq => |a, b| Value::Bool(a.vpl_eq(b)),
            BinaryOp::Ne => |a, b| Value::Bool(!a.vpl_eq(b)),
            BinaryOp::Lt => |a, b| ordered(a, b, std::cmp::Ordering::is_lt),
            BinaryOp::Le => |a, b| ordered(a, b, std::cmp::Ordering::is_le),
            BinaryOp::Gt => |a, b| ordered(a, b, std::cmp::Ordering::is_gt),
            BinaryOp::Ge => |a, b| ordered(a, b, std::cmp::Ordering::is_ge),
            _ => return None,
        };
        let order: Option<OrderTest> = match op {
            BinaryOp::Lt => Some(std::cmp::Ordering::is_lt),
            BinaryOp::Le => Some(std::cmp::Ordering::is_le),
            BinaryOp::Gt => Some(std::cmp::Ordering::is_gt),
            BinaryOp::Ge => Some(std::cmp::Ordering::is_ge),
            _ => None,
        };
        Some(FieldTest {
            key: self.intern(&id.name),
            slot: AtomicU32::new(0),
            pred,
            float: match (&lit, order) {
                (Value::Float(f), Some(o)) => Some((*f, o)),
                _ => None,
            },
            lit,
        })
    }

    /// A filter `e` that is `field <cmp> literal`, tested in place: the compiled `e` gives
    /// the same value, so a caller may test with it first and run `e` only when it answers
    /// `None` (the event lacks the field).
    pub(crate) fn filter_test(&mut self, e: &Expr) -> Option<FieldTest> {
        match &e.kind {
            ExprKind::Binary { op, lhs, rhs } => self.field_test(*op, lhs, rhs),
            _ => None,
        }
    }

    fn binary(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> ExprFn {
        let plain = self.binary_plain(op, lhs, rhs);
        self.field_cmp(op, lhs, rhs, plain)
    }

    fn binary_plain(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> ExprFn {
        let (l, r) = (self.expr(lhs), self.expr(rhs));
        if let Some(aop) = to_arith(op) {
            return Box::new(move |cx| {
                let a = l(cx)?;
                let b = r(cx)?;
                arith(aop, &a, &b, cx.st)
            });
        }
        macro_rules! cmp {
            ($pred:expr) => {
                Box::new(move |cx| {
                    let a = l(cx)?;
                    let b = r(cx)?;
                    Ok(a.vpl_cmp(&b)
                        .map(|o| Value::Bool($pred(o)))
                        .unwrap_or(Value::Null))
                })
            };
        }
        match op {
            BinaryOp::Eq => Box::new(move |cx| {
                let a = l(cx)?;
                Ok(Value::Bool(a.vpl_eq(&r(cx)?)))
            }),
            BinaryOp::Ne => Box::new(move |cx| {
                let a = l(cx)?;
                Ok(Value::Bool(!a.vpl_eq(&r(cx)?)))
            }),
            BinaryOp::Lt => cmp!(|o: std::cmp::Ordering| o.is_lt()),
            BinaryOp::Le => cmp!(|o: std::cmp::Ordering| o.is_le()),
            BinaryOp::Gt => cmp!(|o: std::cmp::Ordering| o.is_gt()),
            BinaryOp::Ge => cmp!(|o: std::cmp::Ordering| o.is_ge()),
            BinaryOp::In | BinaryOp::NotIn => {
                let negate = op == BinaryOp::NotIn;
                Box::new(move |cx| {
                    let item = l(cx)?;
                    match r(cx)?.contains(&item)? {
                        Value::Bool(b) => Ok(Value::Bool(b != negate)),
                        other => Ok(other),
                    }
                })
            }
            BinaryOp::And => Box::new(move |cx| {
                if !l(cx)?.is_true() {
                    return Ok(Value::Bool(false));
                }
                Ok(Value::Bool(r(cx)?.is_true()))
            }),
            BinaryOp::Or => Box::new(move |cx| {
                if l(cx)?.is_true() {
                    return Ok(Value::Bool(true));
                }
                Ok(Value::Bool(r(cx)?.is_true()))
            }),
            BinaryOp::Coalesce => Box::new(move |cx| match l(cx)? {
                Value::Null => r(cx),
                v => Ok(v),
            }),
            _ => constant(Value::Null),
        }
    }

    fn call(&mut self, callee: &ast::Ident, args: &[Expr]) -> ExprFn {
        // `count(capture)` on a sequence or pattern: the events that capture took.
        if callee.name == "count" && !self.fns.contains_key("count") {
            if let [Expr {
                kind: ExprKind::Name(id),
                ..
            }] = args
            {
                if let Some(cap) = self.capture_of(&id.name).map(str::to_string) {
                    return alias_field(self.intern(&format!("#{cap}")), Value::Int(0));
                }
            }
        }
        if !self.fns.contains_key(&callee.name) {
            if let (Some(at), [arr, f]) = (varpulis_vpl::builtins::lambda_arg(&callee.name), args) {
                if at == 1 {
                    if let ExprKind::Lambda { params, body } = &f.kind {
                        return self.lambda_call(&callee.name, arr, params, body);
                    }
                }
            }
        }
        let compiled: Vec<ExprFn> = args.iter().map(|a| self.expr(a)).collect();
        if let Some(&(idx, _)) = self.fns.get(&callee.name) {
            return Box::new(move |cx| {
                let base = cx.st.stack.len();
                for a in &compiled {
                    let v = a(cx)?;
                    cx.st.stack.push(v);
                }
                call_fn(cx, idx, base)
            });
        }
        let Some(f) = builtins::lookup(&callee.name) else {
            self.error(format!("unknown function `{}`", callee.name), callee.span);
            return constant(Value::Null);
        };
        builtin_call(f, compiled)
    }
}

/// Calls a built-in and charges what it built to the memory budget (builtins check the size
/// limits themselves before allocating).
fn builtin_call(f: BuiltinFn, mut args: Vec<ExprFn>) -> ExprFn {
    fn finish(cx: &mut Ctx<'_>, v: Value) -> Result<Value, RuntimeError> {
        cx.st.charge(&v)?;
        Ok(v)
    }
    match args.len() {
        1 => {
            let a = args.remove(0);
            Box::new(move |cx| {
                let v = f(&[a(cx)?], &cx.st.limits)?;
                finish(cx, v)
            })
        }
        2 => {
            let b = args.remove(1);
            let a = args.remove(0);
            Box::new(move |cx| {
                let x = a(cx)?;
                let v = f(&[x, b(cx)?], &cx.st.limits)?;
                finish(cx, v)
            })
        }
        _ => Box::new(move |cx| {
            let mut vals = Vec::with_capacity(args.len());
            for a in &args {
                vals.push(a(cx)?);
            }
            let v = f(&vals, &cx.st.limits)?;
            finish(cx, v)
        }),
    }
}

/// An ordering test (`Ordering::is_lt`, …).
type OrderTest = fn(std::cmp::Ordering) -> bool;

/// `field <cmp> literal` on the current event, compared in place (no clone of the field, no
/// closure call per operand); see [`Compiler::filter_test`].
pub(crate) struct FieldTest {
    key: Arc<str>,
    slot: AtomicU32,
    pred: fn(&Value, &Value) -> Value,
    lit: Value,
    /// An ordering against a float literal: the literal and the ordering test, applied
    /// straight to a float field (what `pred` computes for it).
    float: Option<(f64, OrderTest)>,
}

impl FieldTest {
    /// The comparison's value on `ev` (`Bool`, or `null` for values without an order), `None`
    /// when `ev` lacks the field (then the general comparison decides).
    #[inline]
    pub(crate) fn value(&self, ev: &Event) -> Option<Value> {
        let v = ev.field_cached(&self.key, &self.slot)?;
        if let (Value::Float(a), Some((b, test))) = (v, self.float) {
            return Some(
                a.partial_cmp(&b)
                    .map_or(Value::Null, |o| Value::Bool(test(o))),
            );
        }
        Some((self.pred)(v, &self.lit))
    }
}

/// `a <cmp> b` as the plain comparison computes it (`null` when the values do not order).
#[inline]
fn ordered(a: &Value, b: &Value, pred: fn(std::cmp::Ordering) -> bool) -> Value {
    a.vpl_cmp(b)
        .map(|o| Value::Bool(pred(o)))
        .unwrap_or(Value::Null)
}

fn constant(v: Value) -> ExprFn {
    Box::new(move |_| Ok(v.clone()))
}

/// Reads field `key` of the current event (position cached; `null` when absent).
fn event_field(key: Arc<str>) -> ExprFn {
    field_read::<false>(key, Value::Null)
}

/// Reads field `key` of the alias event (the stream's `as` event or a pattern's captures;
/// `default` when absent).
fn alias_field(key: Arc<str>, default: Value) -> ExprFn {
    field_read::<true>(key, default)
}

/// Reads field `key` of the alias (`ALIAS`) or the current event through a cached position.
fn field_read<const ALIAS: bool>(key: Arc<str>, default: Value) -> ExprFn {
    let slot = AtomicU32::new(0);
    Box::new(move |cx| {
        let ev = if ALIAS { cx.alias } else { cx.event };
        Ok(ev
            .field_cached(&key, &slot)
            .cloned()
            .unwrap_or_else(|| default.clone()))
    })
}
