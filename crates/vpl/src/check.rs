//! Semantic analysis of a parsed program (§2–§11): name resolution, arities, mutability,
//! operator validation, stream cycles and simple literal type checks.
//!
//! Only certain errors are errors: unknown variable names are legal (they read event fields,
//! §11 name lookup) and undeclared event types are legal (warning only, §4).

use std::collections::HashMap;

use crate::ast::*;
use crate::builtins::{self, BuiltinKind};
use crate::diagnostics::Diagnostic;

#[path = "check_seq.rs"]
mod seq;

/// Options for [`crate::check()`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Connector names provided from outside the program (e.g. registered with the coordinator);
    /// `.from`/`.to` may use them without a `connector` declaration.
    pub external_connectors: Vec<String>,
}

/// A program that passed the checks.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The parsed program.
    pub program: Program,
    /// Non-fatal findings.
    pub warnings: Vec<Diagnostic>,
}

/// Operators of later tiers, rejected with "not supported yet".
const LATER_TIER_OPS: &[&str] = &[
    "distinct",
    "limit",
    "first",
    "print",
    "log",
    "watermark",
    "allowed_lateness",
    "pattern",
    "trend_aggregate",
    "forecast",
    "enrich",
    "score",
];

/// Tier 1 operator names (for did-you-mean).
const TIER1_OPS: &[&str] = &[
    "where",
    "filter",
    "select",
    "emit",
    "process",
    "context",
    "from",
    "to",
    "window",
    "aggregate",
    "partition_by",
    "having",
    "within",
    "not",
    "on",
];

/// Connector kinds named by the spec; only `mqtt` is implemented.
const CONNECTOR_KINDS: &[&str] = &["mqtt", "kafka", "nats", "http", "file"];

/// Parameters of an MQTT connector (§9).
const MQTT_PARAMS: &[&str] = &[
    "host",
    "port",
    "client_id",
    "username",
    "password",
    "qos",
    "topic",
];

/// Diagnostics after which did-you-mean hints are no longer computed.
const SUGGESTION_BUDGET: usize = 100;

/// Built-in type names (§3).
const BASIC_TYPES: &[&str] = &[
    "int",
    "float",
    "bool",
    "str",
    "timestamp",
    "duration",
    "null",
];

/// Runs all semantic checks; returns errors and warnings in no particular order.
pub fn check_program(program: &Program, options: &CheckOptions) -> Vec<Diagnostic> {
    let mut c = Checker::new(program, options);
    c.run();
    c.diags
}

/// A statically known type, inferred from literals only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    Float,
    Str,
    Bool,
    Null,
    Duration,
    Timestamp,
    Array,
    Map,
    Range,
    Unknown,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Int => "int",
            Ty::Float => "float",
            Ty::Str => "str",
            Ty::Bool => "bool",
            Ty::Null => "null",
            Ty::Duration => "duration",
            Ty::Timestamp => "timestamp",
            Ty::Array => "array",
            Ty::Map => "map",
            Ty::Range => "range",
            Ty::Unknown => "unknown",
        }
    }

    fn is_number(self) -> bool {
        matches!(self, Ty::Int | Ty::Float)
    }

    fn known(self) -> bool {
        !matches!(self, Ty::Unknown | Ty::Null)
    }
}

/// What a local name is bound as inside a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    Binding(BindingKind),
    Param,
    LoopVar,
}

/// Where an expression is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Inside a stream operator.
    Stream,
    /// Inside a function body.
    Function,
    /// A top-level binding.
    TopLevel,
}

struct Checker<'a> {
    program: &'a Program,
    options: &'a CheckOptions,
    diags: Vec<Diagnostic>,
    events: HashMap<&'a str, &'a EventDecl>,
    streams: HashMap<&'a str, &'a StreamDecl>,
    fns: HashMap<&'a str, &'a FnDecl>,
    connectors: HashMap<&'a str, &'a ConnectorDecl>,
    contexts: HashMap<&'a str, &'a ContextDecl>,
    /// Top-level bindings declared so far (all of them once items are checked).
    globals: HashMap<&'a str, BindingKind>,
    /// Function-local scopes, innermost last.
    scopes: Vec<HashMap<&'a str, Local>>,
    loop_depth: usize,
}

impl<'a> Checker<'a> {
    fn new(program: &'a Program, options: &'a CheckOptions) -> Self {
        Checker {
            program,
            options,
            diags: Vec::new(),
            events: HashMap::new(),
            streams: HashMap::new(),
            fns: HashMap::new(),
            connectors: HashMap::new(),
            contexts: HashMap::new(),
            globals: HashMap::new(),
            scopes: Vec::new(),
            loop_depth: 0,
        }
    }

    /// Did-you-mean search, skipped once many diagnostics exist (keeps error floods linear).
    fn capped_suggest<'c>(
        &self,
        word: &str,
        candidates: impl IntoIterator<Item = &'c str>,
    ) -> Option<&'c str> {
        if self.diags.len() >= SUGGESTION_BUDGET {
            return None;
        }
        suggest(word, candidates)
    }

    fn error(&mut self, msg: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::error(msg, span));
    }

    fn error_hint(&mut self, msg: impl Into<String>, span: Span, hint: Option<String>) {
        let mut d = Diagnostic::error(msg, span);
        d.hint = hint;
        self.diags.push(d);
    }

    fn warn(&mut self, msg: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::warning(msg, span));
    }

    fn run(&mut self) {
        self.collect_declarations();
        self.check_stream_cycles();
        let program = self.program;
        // Top-level bindings are visible in functions and streams regardless of order (they are
        // evaluated at load time); `:=` at top level still needs an earlier `var`.
        let mut declared_so_far: HashMap<&'a str, BindingKind> = HashMap::new();
        for item in &program.items {
            match item {
                Item::Event(e) => self.check_event(e),
                Item::Connector(c) => self.check_connector(c),
                Item::Context(c) => self.check_context(c),
                Item::Fn(f) => self.check_fn(f),
                Item::Stream(s) => self.check_stream(s),
                Item::Binding(b) => {
                    self.expr(&b.value, Place::TopLevel);
                    declared_so_far.insert(&b.name.name, b.kind);
                }
                Item::Assign(a) => {
                    match declared_so_far.get(a.target.name.as_str()) {
                        Some(BindingKind::Var) => {}
                        Some(kind) => self.assign_to_immutable(a, binding_word(*kind)),
                        None => self.error_hint(
                            format!("cannot assign to `{}`: no `var` with that name is declared before this line", a.target.name),
                            a.target.span,
                            Some(format!("declare it first with `var {} = …`", a.target.name)),
                        ),
                    }
                    self.expr(&a.value, Place::TopLevel);
                }
            }
        }
    }

    fn assign_to_immutable(&mut self, a: &Assign, what: &str) {
        self.error_hint(
            format!(
                "cannot assign to `{}`: it is a {what}, not a `var`",
                a.target.name
            ),
            a.target.span,
            Some(format!(
                "declare it with `var {} = …` to make it mutable",
                a.target.name
            )),
        );
    }

    // ----- namespaces -----------------------------------------------------------------------

    fn collect_declarations(&mut self) {
        let program = self.program;
        // Event types and streams share the type namespace: a stream's outputs are typed by its name.
        let mut types: HashMap<&'a str, Span> = HashMap::new();
        for item in &program.items {
            match item {
                Item::Event(e) => {
                    self.dup_check(&mut types, &e.name, "type");
                    self.events.entry(&e.name.name).or_insert(e);
                }
                Item::Stream(s) => {
                    self.dup_check(&mut types, &s.name, "type");
                    self.streams.entry(&s.name.name).or_insert(s);
                }
                _ => {}
            }
        }
        let mut fns = HashMap::new();
        let mut connectors = HashMap::new();
        let mut contexts = HashMap::new();
        let mut globals = HashMap::new();
        for item in &program.items {
            match item {
                Item::Fn(f) => {
                    self.dup_check(&mut fns, &f.name, "function");
                    self.fns.entry(&f.name.name).or_insert(f);
                }
                Item::Connector(c) => {
                    self.dup_check(&mut connectors, &c.name, "connector");
                    self.connectors.entry(&c.name.name).or_insert(c);
                }
                Item::Context(c) => {
                    self.dup_check(&mut contexts, &c.name, "context");
                    self.contexts.entry(&c.name.name).or_insert(c);
                }
                Item::Binding(b) => {
                    self.dup_check(&mut globals, &b.name, "top-level binding");
                    self.globals.entry(&b.name.name).or_insert(b.kind);
                }
                _ => {}
            }
        }
    }

    fn dup_check(&mut self, seen: &mut HashMap<&'a str, Span>, name: &'a Ident, what: &str) {
        if let Some(first) = seen.get(name.name.as_str()) {
            let first = *first;
            self.error_hint(
                format!("duplicate {what} name `{}`", name.name),
                name.span,
                Some(format!("first declared at line {}", first.line)),
            );
        } else {
            seen.insert(&name.name, name.span);
        }
    }

    /// Reports every cycle among streams (a stream reading, directly or not, its own outputs),
    /// found as back edges of an iterative depth-first search in declaration order.
    fn check_stream_cycles(&mut self) {
        let streams: Vec<&'a StreamDecl> = self.program.streams().collect();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, s) in streams.iter().enumerate() {
            index.entry(s.name.name.as_str()).or_insert(i);
        }
        let edges: Vec<Vec<usize>> = streams
            .iter()
            .map(|s| {
                crate::correlate::stream_inputs(s)
                    .iter()
                    .filter_map(|n| index.get(n.name.as_str()).copied())
                    .collect()
            })
            .collect();
        // 0 = unvisited, 1 = on the DFS stack, 2 = done.
        let mut color = vec![0u8; streams.len()];
        let mut found: Vec<(usize, String)> = Vec::new();
        for root in 0..streams.len() {
            if color[root] != 0 {
                continue;
            }
            color[root] = 1;
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some(top) = stack.last_mut() {
                let node = top.0;
                match edges[node].get(top.1).copied() {
                    Some(succ) => {
                        top.1 += 1;
                        match color[succ] {
                            0 => {
                                color[succ] = 1;
                                stack.push((succ, 0));
                            }
                            1 => {
                                let pos = stack.iter().position(|(n, _)| *n == succ).unwrap_or(0);
                                let mut names: Vec<&str> = stack[pos..]
                                    .iter()
                                    .map(|(n, _)| streams[*n].name.name.as_str())
                                    .collect();
                                names.push(streams[succ].name.name.as_str());
                                found.push((succ, names.join(" -> ")));
                            }
                            _ => {}
                        }
                    }
                    None => {
                        color[node] = 2;
                        stack.pop();
                    }
                }
            }
        }
        for (at, path) in found {
            self.error_hint(
                format!("stream cycle: {path}"),
                streams[at].name.span,
                Some(
                    "a stream cannot consume its own outputs, directly or through other streams"
                        .into(),
                ),
            );
        }
    }

    // ----- declarations ---------------------------------------------------------------------

    fn check_event(&mut self, e: &'a EventDecl) {
        let mut seen = HashMap::new();
        for f in &e.fields {
            self.dup_check(&mut seen, &f.name, "field");
            self.check_type(&f.ty);
        }
        if let Some(base) = &e.extends {
            if !self.events.contains_key(base.name.as_str()) {
                self.error(format!("unknown base event `{}`", base.name), base.span);
            }
        }
    }

    fn check_type(&mut self, t: &TypeExpr) {
        match &t.kind {
            TypeKind::Named(n) => {
                let known = BASIC_TYPES.contains(&n.name.as_str())
                    || self.events.contains_key(n.name.as_str())
                    || self.streams.contains_key(n.name.as_str());
                if !known {
                    let hint = self.capped_suggest(&n.name, BASIC_TYPES.iter().copied());
                    let mut d = Diagnostic::warning(format!("unknown type `{}`", n.name), n.span);
                    d.hint = hint.map(|h| format!("did you mean `{h}`?"));
                    self.diags.push(d);
                }
            }
            TypeKind::Array(t) | TypeKind::Optional(t) | TypeKind::Stream(t) => self.check_type(t),
            TypeKind::Map(k, v) => {
                self.check_type(k);
                self.check_type(v);
            }
            TypeKind::Tuple(ts) => {
                for t in ts {
                    self.check_type(t);
                }
            }
        }
    }

    fn check_connector(&mut self, c: &'a ConnectorDecl) {
        let kind = c.kind.name.as_str();
        if kind == "nats" {
            self.check_nats_connector(c);
            return;
        }
        if kind != "mqtt" {
            if CONNECTOR_KINDS.contains(&kind) {
                self.error(
                    format!(
                        "connector kind `{kind}` is not supported yet (only `mqtt` and `nats`)"
                    ),
                    c.kind.span,
                );
            } else {
                let hint = self
                    .capped_suggest(kind, CONNECTOR_KINDS.iter().copied())
                    .map(|h| format!("did you mean `{h}`?"));
                self.error_hint(
                    format!("unknown connector kind `{kind}`"),
                    c.kind.span,
                    hint,
                );
            }
            return;
        }
        let mut seen = HashMap::new();
        for a in &c.params {
            self.check_param_value(&a.value);
            let Some(name) = &a.name else {
                self.error_hint(
                    "connector parameters need a name",
                    a.span,
                    Some("write `param: value`, e.g. `host: \"localhost\"`".into()),
                );
                continue;
            };
            self.dup_check(&mut seen, name, "parameter");
            if !MQTT_PARAMS.contains(&name.name.as_str()) {
                let hint = self.capped_suggest(&name.name, MQTT_PARAMS.iter().copied());
                let mut d = Diagnostic::warning(
                    format!("unknown MQTT parameter `{}`", name.name),
                    name.span,
                );
                d.hint = hint.map(|h| format!("did you mean `{h}`?"));
                self.diags.push(d);
            }
            let ty = literal_type(&a.value);
            let bad = match name.name.as_str() {
                "port" | "qos" => ty.known() && ty != Ty::Int,
                "host" | "client_id" | "username" | "password" | "topic" => {
                    ty.known() && ty != Ty::Str
                }
                _ => false,
            };
            if bad {
                self.error(
                    format!(
                        "MQTT parameter `{}` has the wrong type ({})",
                        name.name,
                        ty.name()
                    ),
                    a.value.span,
                );
            }
        }
        if !c
            .params
            .iter()
            .any(|a| a.name.as_ref().is_some_and(|n| n.name == "host"))
        {
            self.error_hint(
                format!("MQTT connector `{}` needs a `host`", c.name.name),
                c.span,
                Some("add `host: \"localhost\"`".into()),
            );
        }
    }

    /// A NATS connector (docs/nats.md): named parameters, and a server (`servers`, `url` or
    /// `host`). Other parameters are checked by the worker when it connects.
    fn check_nats_connector(&mut self, c: &'a ConnectorDecl) {
        let mut seen = HashMap::new();
        for a in &c.params {
            self.check_param_value(&a.value);
            match &a.name {
                Some(name) => self.dup_check(&mut seen, name, "parameter"),
                None => self.error_hint(
                    "connector parameters need a name",
                    a.span,
                    Some("write `param: value`, e.g. `servers: \"nats://localhost:4222\"`".into()),
                ),
            }
        }
        let has_server = c.params.iter().any(|a| {
            a.name
                .as_ref()
                .is_some_and(|n| matches!(n.name.as_str(), "servers" | "url" | "host"))
        });
        if !has_server {
            self.error_hint(
                format!("NATS connector `{}` needs `servers`", c.name.name),
                c.span,
                Some("add `servers: \"nats://localhost:4222\"`".into()),
            );
        }
    }

    /// Connector/context parameter values: literals, identifiers and arrays of those (§9).
    fn check_param_value(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Str(_)
            | ExprKind::Bool(_)
            | ExprKind::Null
            | ExprKind::Duration(_)
            | ExprKind::Timestamp(_)
            | ExprKind::Name(_) => {}
            ExprKind::Unary {
                op: UnaryOp::Neg,
                operand,
            } if matches!(operand.kind, ExprKind::Int(_) | ExprKind::Float(_)) => {}
            ExprKind::Array(items) => {
                for i in items {
                    self.check_param_value(i);
                }
            }
            _ => self.error("parameter values must be literals, names or arrays", e.span),
        }
    }

    fn check_context(&mut self, c: &'a ContextDecl) {
        let mut seen = HashMap::new();
        for a in &c.params {
            self.check_param_value(&a.value);
            let Some(name) = &a.name else {
                self.error(
                    "context parameters need a name (e.g. `cores: [2, 3]`)",
                    a.span,
                );
                continue;
            };
            self.dup_check(&mut seen, name, "parameter");
            if name.name == "cores" {
                let ok = match &a.value.kind {
                    ExprKind::Array(items) => items
                        .iter()
                        .all(|i| matches!(i.kind, ExprKind::Int(n) if n >= 0)),
                    _ => false,
                };
                if !ok {
                    self.error(
                        "`cores` must be an array of non-negative integers, e.g. `[2, 3]`",
                        a.value.span,
                    );
                }
            } else {
                self.warn(
                    format!("unknown context parameter `{}`", name.name),
                    name.span,
                );
            }
        }
    }

    fn check_fn(&mut self, f: &'a FnDecl) {
        let mut scope = HashMap::new();
        let mut seen = HashMap::new();
        for p in &f.params {
            self.dup_check(&mut seen, &p.name, "parameter");
            if let Some(t) = &p.ty {
                self.check_type(t);
            }
            scope.insert(p.name.name.as_str(), Local::Param);
        }
        if let Some(t) = &f.ret {
            self.check_type(t);
        }
        self.scopes = vec![scope];
        self.loop_depth = 0;
        self.block(&f.body);
        self.scopes.clear();
    }

    // ----- statements -----------------------------------------------------------------------

    fn block(&mut self, b: &'a Block) {
        self.scopes.push(HashMap::new());
        for s in &b.stmts {
            self.stmt(s);
        }
        self.scopes.pop();
    }

    fn lookup_local(&self, name: &str) -> Option<Local> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    fn declare(&mut self, name: &'a str, l: Local) {
        if let Some(s) = self.scopes.last_mut() {
            s.insert(name, l);
        }
    }

    fn stmt(&mut self, s: &'a Stmt) {
        match &s.kind {
            StmtKind::Binding(b) => {
                if let Some(t) = &b.ty {
                    self.check_type(t);
                }
                self.expr(&b.value, Place::Function);
                self.declare(&b.name.name, Local::Binding(b.kind));
            }
            StmtKind::Assign(a) => {
                self.expr(&a.value, Place::Function);
                let target = a.target.name.as_str();
                match self.lookup_local(target) {
                    Some(Local::Binding(BindingKind::Var)) => {}
                    Some(Local::Binding(k)) => self.assign_to_immutable(a, binding_word(k)),
                    Some(Local::Param) => self.assign_to_immutable(a, "parameter"),
                    Some(Local::LoopVar) => self.assign_to_immutable(a, "loop variable"),
                    None => match self.globals.get(target) {
                        Some(BindingKind::Var) => {}
                        Some(k) => {
                            let k = *k;
                            self.assign_to_immutable(a, binding_word(k));
                        }
                        None => self.error_hint(
                            format!("cannot assign to undeclared variable `{target}`"),
                            a.target.span,
                            Some(format!("declare it with `var {target} = …`")),
                        ),
                    },
                }
            }
            StmtKind::If {
                branches,
                else_body,
            } => {
                for br in branches {
                    self.condition(&br.cond, Place::Function, "`if` condition");
                    self.block(&br.body);
                }
                if let Some(b) = else_body {
                    self.block(b);
                }
            }
            StmtKind::While { cond, body } => {
                self.condition(cond, Place::Function, "`while` condition");
                self.loop_depth += 1;
                self.block(body);
                self.loop_depth -= 1;
            }
            StmtKind::For { var, iter, body } => {
                let t = self.expr(iter, Place::Function);
                if matches!(
                    t,
                    Ty::Float | Ty::Str | Ty::Bool | Ty::Duration | Ty::Timestamp
                ) {
                    self.error(
                        format!(
                            "cannot iterate over a {} (use a range, an array, a map or an int)",
                            t.name()
                        ),
                        iter.span,
                    );
                }
                self.loop_depth += 1;
                self.scopes.push(HashMap::new());
                self.declare(&var.name, Local::LoopVar);
                self.block(body);
                self.scopes.pop();
                self.loop_depth -= 1;
            }
            StmtKind::Break | StmtKind::Continue => {
                if self.loop_depth == 0 {
                    let word = if matches!(s.kind, StmtKind::Break) {
                        "break"
                    } else {
                        "continue"
                    };
                    self.error(format!("`{word}` outside of a loop"), s.span);
                }
            }
            StmtKind::Return(e) => {
                if let Some(e) = e {
                    self.expr(e, Place::Function);
                }
            }
            StmtKind::Emit { event_type, args } => {
                let _ = event_type;
                self.field_args(args, "emit", Place::Function);
            }
            StmtKind::Expr(e) => {
                self.expr(e, Place::Function);
            }
        }
    }

    /// Arguments that produce fields: `name: e` or a bare name; duplicates are errors.
    fn field_args(&mut self, args: &'a [Arg], what: &str, place: Place) {
        let mut seen: HashMap<&'a str, Span> = HashMap::new();
        for a in args {
            self.expr(&a.value, place);
            let name = match (&a.name, &a.value.kind) {
                (Some(n), _) => n,
                (None, ExprKind::Name(n)) => n,
                (None, _) => {
                    self.error_hint(
                        format!("`{what}` fields need a name"),
                        a.span,
                        Some("write `field: expression`".into()),
                    );
                    continue;
                }
            };
            self.dup_check(&mut seen, name, "field");
        }
    }

    fn condition(&mut self, e: &Expr, place: Place, what: &str) {
        let t = self.expr(e, place);
        if t.known() && t != Ty::Bool {
            self.error_hint(
                format!("type mismatch: {what} must be a bool, found {}", t.name()),
                e.span,
                Some("only `true` passes a condition".into()),
            );
        }
    }

    // ----- streams --------------------------------------------------------------------------

    fn check_stream(&mut self, s: &'a StreamDecl) {
        if let Some(t) = &s.ty {
            self.check_type(t);
        }
        match &s.source.kind {
            SourceKind::Named { .. } => {}
            SourceKind::All { .. } | SourceKind::Merge(_) | SourceKind::Join(_) => {}
        }
        self.check_correlation(s);
        for name in crate::correlate::stream_inputs(s) {
            {
                let n = name.name.as_str();
                if !self.events.contains_key(n) && !self.streams.contains_key(n) {
                    let candidates: Vec<&str> = self
                        .events
                        .keys()
                        .chain(self.streams.keys())
                        .copied()
                        .collect();
                    let mut d = Diagnostic::warning(
                        format!("`{n}` is neither a declared event type nor a stream; it is treated as an event type"),
                        name.span,
                    );
                    d.hint = self
                        .capped_suggest(n, candidates)
                        .map(|h| format!("did you mean `{h}`?"));
                    self.diags.push(d);
                }
            }
        }
        if let Some(from) = &s.source.from {
            self.check_connector_ref(&from.connector);
            let args: Vec<&Arg> = from.args.iter().collect();
            self.connector_args(&args, "from");
        }
        let mut context_seen: Option<Span> = None;
        let mut partition_seen: Option<Span> = None;
        let mut window_seen: Option<Span> = None;
        let mut aggregate_seen: Option<Span> = None;
        for op in &s.ops {
            match op.kind() {
                OpKind::Window => {
                    if let Some(prev) = window_seen {
                        self.error_hint(
                            "a stream can have only one `.window`",
                            op.span,
                            Some(format!("`.window` already given at line {}", prev.line)),
                        );
                    }
                    if let Some(prev) = aggregate_seen {
                        self.error_hint(
                            "`.window` must come before `.aggregate`",
                            op.span,
                            Some(format!("`.aggregate` is at line {}", prev.line)),
                        );
                    }
                    window_seen = Some(op.span);
                    self.window_args(op);
                }
                OpKind::Aggregate => {
                    if let Some(prev) = aggregate_seen {
                        self.error_hint(
                            "a stream can have only one `.aggregate`",
                            op.span,
                            Some(format!("`.aggregate` already given at line {}", prev.line)),
                        );
                    }
                    aggregate_seen = Some(op.span);
                    if op.args.is_empty() {
                        self.error_hint(
                            "`.aggregate` needs at least one field",
                            op.span,
                            Some("write `.aggregate(n: count(), mean: avg(x))`".into()),
                        );
                    }
                    let mut seen = HashMap::new();
                    for a in &op.args {
                        match &a.name {
                            Some(n) => self.dup_check(&mut seen, n, "field"),
                            None => self.error_hint(
                                "`.aggregate` fields need a name",
                                a.span,
                                Some("write `alias: count()`".into()),
                            ),
                        }
                        self.aggregate_expr(&a.value);
                    }
                }
                OpKind::PartitionBy => {
                    if let Some(prev) = partition_seen {
                        self.error_hint(
                            "a stream can have only one `.partition_by`",
                            op.span,
                            Some(format!(
                                "`.partition_by` already given at line {}",
                                prev.line
                            )),
                        );
                    }
                    partition_seen = Some(op.span);
                    if let Some(e) = self.single_positional(op) {
                        if !matches!(e.kind, ExprKind::Name(_)) {
                            self.error_hint(
                                "`.partition_by` expects a field name",
                                e.span,
                                Some("write `.partition_by(sensor_id)`".into()),
                            );
                        }
                    }
                }
                OpKind::Having => {
                    if aggregate_seen.is_none() {
                        self.error_hint(
                            "`.having` needs a preceding `.aggregate`",
                            op.span,
                            Some("use `.where` to filter events".into()),
                        );
                    }
                    if let Some(e) = self.single_positional(op) {
                        self.condition(e, Place::Stream, "`.having` argument");
                    }
                }
                // Checked with the pattern (`check_seq.rs`).
                OpKind::Within | OpKind::Not | OpKind::On => {}
                OpKind::Where => {
                    if let Some(e) = self.single_positional(op) {
                        self.condition(e, Place::Stream, &format!("`.{}` argument", op.name.name));
                    }
                }
                OpKind::Select => {
                    if op.args.is_empty() {
                        self.error("`.select` needs at least one field", op.span);
                    }
                    self.field_args(&op.args, "select", Place::Stream);
                }
                OpKind::Emit => {
                    let (ctx, fields): (Vec<&Arg>, Vec<&Arg>) = op
                        .args
                        .iter()
                        .partition(|a| a.name.as_ref().is_some_and(|n| n.name == "context"));
                    for c in ctx {
                        self.check_context_ref(&c.value);
                    }
                    self.emit_fields(&fields);
                }
                OpKind::Process => {
                    if let Some(e) = self.single_positional(op) {
                        match &e.kind {
                            ExprKind::Call {
                                callee,
                                method: false,
                                ..
                            } if self.fns.contains_key(callee.name.as_str()) => {
                                self.expr(e, Place::Stream);
                            }
                            ExprKind::Call { callee, .. }
                                if builtins::lookup(&callee.name).is_some()
                                    && !self.fns.contains_key(callee.name.as_str()) =>
                            {
                                self.error_hint(
                                    format!(
                                        "`.process` needs a user function, `{}` is a built-in",
                                        callee.name
                                    ),
                                    callee.span,
                                    Some(
                                        "declare one with `fn name(…):` whose body uses `emit`"
                                            .into(),
                                    ),
                                );
                            }
                            ExprKind::Call { .. } => {
                                self.expr(e, Place::Stream);
                            }
                            _ => self.error_hint(
                                "`.process` expects a function call",
                                e.span,
                                Some("write `.process(my_fn(field, 42))`".into()),
                            ),
                        }
                    }
                }
                OpKind::Context => {
                    if let Some(prev) = context_seen {
                        self.error_hint(
                            "a stream can run in only one context",
                            op.span,
                            Some(format!("`.context` already given at line {}", prev.line)),
                        );
                    }
                    context_seen = Some(op.span);
                    if let Some(e) = self.single_positional(op) {
                        self.check_context_ref(e);
                    }
                }
                OpKind::From => self.error_hint(
                    "`.from` must directly follow the stream source",
                    op.span,
                    Some("write `stream S = Type.from(Connector, topic: \"…\") …`".into()),
                ),
                OpKind::To => {
                    let mut positional = op.args.iter().filter(|a| a.name.is_none());
                    match positional.next().map(|a| &a.value.kind) {
                        Some(ExprKind::Name(conn)) => self.check_connector_ref(conn),
                        Some(_) | None => self.error_hint(
                            "`.to` needs a connector name first",
                            op.span,
                            Some("write `.to(MyConnector, topic: \"a/b\")`".into()),
                        ),
                    }
                    if let Some(extra) = positional.next() {
                        self.error("`.to` takes one connector and named parameters", extra.span);
                    }
                    let named: Vec<&Arg> = op.args.iter().filter(|a| a.name.is_some()).collect();
                    self.connector_args(&named, "to");
                }
                _ => {
                    let name = op.name.name.as_str();
                    if LATER_TIER_OPS.contains(&name) {
                        self.error(
                            format!("operator `.{name}` is not supported yet"),
                            op.name.span,
                        );
                    } else {
                        let hint = self
                            .capped_suggest(name, TIER1_OPS.iter().chain(LATER_TIER_OPS).copied())
                            .map(|h| format!("did you mean `.{h}`?"));
                        self.error_hint(format!("unknown operator `.{name}`"), op.name.span, hint);
                    }
                    for a in &op.args {
                        match &a.value.kind {
                            // `.not(T where c)`: only the filter is an ordinary expression.
                            ExprKind::EventFilter { filter, .. } if op.kind() == OpKind::Not => {
                                self.condition(filter, Place::Stream, "`where` filter");
                            }
                            _ => {
                                self.expr(&a.value, Place::Stream);
                            }
                        }
                    }
                }
            }
        }
    }

    fn emit_fields(&mut self, fields: &[&Arg]) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for a in fields {
            self.expr(&a.value, Place::Stream);
            match a.field_name() {
                Some(n) => {
                    if let Some(first) = seen.get(n) {
                        let first = *first;
                        self.error_hint(
                            format!("duplicate field name `{n}`"),
                            a.span,
                            Some(format!(
                                "first given at line {}, column {}",
                                first.line, first.column
                            )),
                        );
                    } else {
                        seen.insert(n, a.span);
                    }
                }
                None => self.error_hint(
                    "`emit` fields need a name",
                    a.span,
                    Some("write `field: expression`".into()),
                ),
            }
        }
    }

    /// `.window(10s)`, `.window(1m, sliding: 15s)`, `.window(50)`, `.window(50, sliding: 10)`,
    /// `.window(session: 30s)` (VPL.md §6.1).
    fn window_args(&mut self, op: &StreamOp) {
        const HINT: &str =
            "write `.window(10s)`, `.window(1m, sliding: 15s)`, `.window(50)` or `.window(session: 30s)`";
        let positional: Vec<&Arg> = op.args.iter().filter(|a| a.name.is_none()).collect();
        let mut sliding = None;
        let mut session = None;
        for a in op.args.iter() {
            let Some(n) = &a.name else { continue };
            match n.name.as_str() {
                "sliding" if sliding.is_none() => sliding = Some(&a.value),
                "session" if session.is_none() => session = Some(&a.value),
                "sliding" | "session" => self.error(format!("`{}` given twice", n.name), n.span),
                other => self.error_hint(
                    format!("unknown `.window` parameter `{other}`"),
                    n.span,
                    Some(HINT.into()),
                ),
            }
        }
        if let Some(g) = session {
            if let Some(p) = positional.first() {
                self.error_hint(
                    "a session window takes only `session: <duration>`",
                    p.span,
                    Some(HINT.into()),
                );
            }
            if sliding.is_some() {
                self.error("a session window cannot slide", op.span);
            }
            self.window_size(g, false, "session gap");
            return;
        }
        let size = match positional.as_slice() {
            [] => {
                self.error_hint("`.window` needs a size", op.span, Some(HINT.into()));
                return;
            }
            [a] => &a.value,
            [_, extra, ..] => {
                self.error_hint("`.window` takes one size", extra.span, Some(HINT.into()));
                return;
            }
        };
        let Some(is_count) = self.window_size(size, true, "window size") else {
            return;
        };
        if let Some(sl) = sliding {
            if let Some(slide_count) = self.window_size(sl, true, "slide") {
                if slide_count != is_count {
                    self.error_hint(
                        "the slide must be of the same kind as the window size",
                        sl.span,
                        Some(
                            "a time window slides by a duration, a count window by a count".into(),
                        ),
                    );
                }
            }
        }
    }

    /// Checks one window size: a positive duration, or (if `count_ok`) a positive integer.
    /// Returns whether it is a count.
    fn window_size(&mut self, e: &Expr, count_ok: bool, what: &str) -> Option<bool> {
        match &e.kind {
            ExprKind::Duration(0) => {
                self.error(format!("the {what} must be positive"), e.span);
                None
            }
            ExprKind::Duration(_) => Some(false),
            ExprKind::Int(n) if count_ok => {
                if *n <= 0 {
                    self.error(format!("the {what} must be positive"), e.span);
                    None
                } else {
                    Some(true)
                }
            }
            ExprKind::Unary { operand, .. }
                if matches!(operand.kind, ExprKind::Int(_) | ExprKind::Duration(_)) =>
            {
                self.error(format!("the {what} must be positive"), e.span);
                None
            }
            ExprKind::Name(n) if n.name.starts_with("session") => {
                self.error_hint(
                    format!("`{}` is not a window kind", n.name),
                    e.span,
                    Some("write `.window(session: 30s)`".into()),
                );
                None
            }
            _ => {
                let expect = if count_ok {
                    "a duration literal or a positive integer"
                } else {
                    "a duration literal"
                };
                let hint = if count_ok {
                    "write e.g. `5m`, `30s`, `500ms` or `50`"
                } else {
                    "write e.g. `5m`, `30s` or `500ms`"
                };
                self.error_hint(
                    format!("the {what} must be {expect}"),
                    e.span,
                    Some(hint.into()),
                );
                None
            }
        }
    }

    /// An `.aggregate` field: aggregate calls over per-event expressions, combined by ordinary
    /// expressions (VPL.md §6.2).
    fn aggregate_expr(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Call {
                callee,
                args,
                method,
            } => {
                let name = callee.name.as_str();
                if !self.fns.contains_key(name) && builtins::is_aggregate_call(name, args.len()) {
                    if *method {
                        self.error_hint(
                            format!("aggregate `{name}` cannot use method syntax"),
                            callee.span,
                            Some(format!("write `{name}(…)`")),
                        );
                    }
                    self.aggregate_call(callee, args);
                    return;
                }
                if self.fns.contains_key(name) || builtins::lookup(name).is_some() {
                    if builtins::lookup(name).is_some_and(|b| b.kind == BuiltinKind::Aggregate)
                        && !self.fns.contains_key(name)
                    {
                        // e.g. `distinct(x)` alone or `ema(x)` with a wrong arity.
                        self.error_hint(
                            format!("`{name}` cannot be used like this in `.aggregate`"),
                            callee.span,
                            Some("write `count(distinct(x))` or `ema(x, 10)`".into()),
                        );
                        return;
                    }
                    self.call(callee, args.len(), *method, Place::Stream);
                    for a in args {
                        self.aggregate_expr(a);
                    }
                    return;
                }
                let hint = self
                    .capped_suggest(name, builtins::AGGREGATE_FUNCTIONS.iter().copied())
                    .map(|h| format!("did you mean `{h}`?"));
                self.error_hint(
                    format!("unknown aggregate function `{name}`"),
                    callee.span,
                    hint,
                );
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.aggregate_expr(lhs);
                self.aggregate_expr(rhs);
            }
            ExprKind::Unary { operand, .. } => self.aggregate_expr(operand),
            _ => {
                self.expr(e, Place::Stream);
            }
        }
    }

    fn aggregate_call(&mut self, callee: &Ident, args: &[Expr]) {
        let name = callee.name.as_str();
        match (name, args) {
            ("count", [a]) => {
                if let ExprKind::Call {
                    callee: inner,
                    args: inner_args,
                    ..
                } = &a.kind
                {
                    if inner.name == "distinct" && !self.fns.contains_key("distinct") {
                        match inner_args.as_slice() {
                            [x] => {
                                self.expr(x, Place::Stream);
                            }
                            _ => self.error("`distinct` takes one argument", inner.span),
                        }
                        return;
                    }
                }
                self.expr(a, Place::Stream);
            }
            ("ema", [a, n]) => {
                self.expr(a, Place::Stream);
                if !matches!(n.kind, ExprKind::Int(k) if k > 0) {
                    self.error_hint(
                        "the `ema` period must be a positive integer literal",
                        n.span,
                        Some("write `ema(price, 10)`".into()),
                    );
                }
            }
            (_, args) => {
                for a in args {
                    self.expr(a, Place::Stream);
                }
            }
        }
    }

    fn single_positional(&mut self, op: &'a StreamOp) -> Option<&'a Expr> {
        let name = &op.name.name;
        if let Some(a) = op.args.iter().find(|a| a.name.is_some()) {
            self.error(format!("`.{name}` takes no named arguments"), a.span);
            return None;
        }
        match op.args.as_slice() {
            [a] => Some(&a.value),
            [] => {
                self.error(format!("`.{name}` needs one argument"), op.span);
                None
            }
            [_, extra, ..] => {
                self.error(format!("`.{name}` takes one argument"), extra.span);
                None
            }
        }
    }

    fn check_context_ref(&mut self, e: &Expr) {
        let ExprKind::Name(n) = &e.kind else {
            self.error("expected a context name", e.span);
            return;
        };
        if !self.contexts.contains_key(n.name.as_str()) {
            let hint = self
                .capped_suggest(&n.name, self.contexts.keys().copied())
                .map(|h| format!("did you mean `{h}`?"))
                .unwrap_or_else(|| format!("declare it with `context {}`", n.name));
            self.error_hint(
                format!("undeclared context `{}`", n.name),
                n.span,
                Some(hint),
            );
        }
    }

    fn check_connector_ref(&mut self, n: &Ident) {
        let name = n.name.as_str();
        if self.connectors.contains_key(name)
            || self.options.external_connectors.iter().any(|c| c == name)
        {
            return;
        }
        let candidates: Vec<&str> = self
            .connectors
            .keys()
            .copied()
            .chain(self.options.external_connectors.iter().map(String::as_str))
            .collect();
        let hint = self
            .capped_suggest(name, candidates)
            .map(|h| format!("did you mean `{h}`?"))
            .unwrap_or_else(|| format!("declare it with `connector {name} = mqtt(host: \"…\")`"));
        self.error_hint(format!("unknown connector `{name}`"), n.span, Some(hint));
    }

    fn connector_args(&mut self, args: &[&Arg], op: &str) {
        for a in args {
            if a.name.is_none() {
                self.error(
                    format!("`.{op}` takes one connector and named parameters"),
                    a.span,
                );
            }
            let t = literal_type(&a.value);
            if a.name.as_ref().is_some_and(|n| n.name == "topic") && t.known() && t != Ty::Str {
                self.error(
                    format!("`topic` must be a string, found {}", t.name()),
                    a.value.span,
                );
            }
        }
    }

    // ----- expressions ----------------------------------------------------------------------

    /// Checks an expression and infers its type from literals.
    fn expr(&mut self, e: &Expr, place: Place) -> Ty {
        match &e.kind {
            ExprKind::Int(_) => Ty::Int,
            ExprKind::Float(_) => Ty::Float,
            ExprKind::Str(_) => Ty::Str,
            ExprKind::Bool(_) => Ty::Bool,
            ExprKind::Null => Ty::Null,
            ExprKind::Duration(_) => Ty::Duration,
            ExprKind::Timestamp(_) => Ty::Timestamp,
            ExprKind::Name(_) => Ty::Unknown,
            ExprKind::Array(items) => {
                for i in items {
                    self.expr(i, place);
                }
                Ty::Array
            }
            ExprKind::Map(entries) => {
                for m in entries {
                    self.expr(&m.key, place);
                    self.expr(&m.value, place);
                }
                Ty::Map
            }
            ExprKind::Unary { op, operand } => {
                let t = self.expr(operand, place);
                match op {
                    UnaryOp::Not => {
                        self.expect_bool(t, operand.span, "`not`");
                        Ty::Bool
                    }
                    UnaryOp::Neg => {
                        if t.known() && !matches!(t, Ty::Int | Ty::Float | Ty::Duration) {
                            self.mismatch(format!("cannot negate a {}", t.name()), e.span);
                            Ty::Unknown
                        } else {
                            t
                        }
                    }
                    UnaryOp::BitNot => {
                        if t.known() && t != Ty::Int {
                            self.mismatch(format!("`~` needs an int, found {}", t.name()), e.span);
                        }
                        Ty::Int
                    }
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let l = self.expr(lhs, place);
                let r = self.expr(rhs, place);
                self.binary(*op, l, r, lhs, rhs, e.span)
            }
            ExprKind::Range { start, end, .. } => {
                for b in [start, end] {
                    let t = self.expr(b, place);
                    if t.known() && t != Ty::Int {
                        self.mismatch(
                            format!("range bounds must be ints, found {}", t.name()),
                            b.span,
                        );
                    }
                }
                Ty::Range
            }
            ExprKind::Call {
                callee,
                args,
                method,
            } => {
                for a in args {
                    self.expr(a, place);
                }
                self.call(callee, args.len(), *method, place)
            }
            ExprKind::Field { base, .. } => {
                self.expr(base, place);
                Ty::Unknown
            }
            ExprKind::Index { base, index } => {
                self.expr(base, place);
                self.expr(index, place);
                Ty::Unknown
            }
            ExprKind::Slice { base, start, end } => {
                self.expr(base, place);
                for b in [start, end].into_iter().flatten() {
                    let t = self.expr(b, place);
                    if t.known() && t != Ty::Int {
                        self.mismatch(
                            format!("slice bounds must be ints, found {}", t.name()),
                            b.span,
                        );
                    }
                }
                Ty::Unknown
            }
            ExprKind::If { cond, then, else_ } => {
                let c = self.expr(cond, place);
                self.expect_bool(c, cond.span, "`if` condition");
                let a = self.expr(then, place);
                let b = self.expr(else_, place);
                if a == b {
                    a
                } else {
                    Ty::Unknown
                }
            }
            ExprKind::EventFilter { filter, .. } => {
                self.error_hint(
                    "`Type where condition` is only allowed in `.not(…)`",
                    e.span,
                    Some("write a boolean expression, e.g. `.where(field > 1)`".into()),
                );
                self.expr(filter, place);
                Ty::Unknown
            }
            ExprKind::Lambda { body, .. } => {
                self.error("lambdas are not supported yet (Tier 3)", e.span);
                let _ = body;
                Ty::Unknown
            }
        }
    }

    fn mismatch(&mut self, msg: String, span: Span) {
        self.error(format!("type mismatch: {msg}"), span);
    }

    fn expect_bool(&mut self, t: Ty, span: Span, what: &str) {
        if t.known() && t != Ty::Bool {
            self.mismatch(format!("{what} needs a bool, found {}", t.name()), span);
        }
    }

    fn binary(&mut self, op: BinaryOp, l: Ty, r: Ty, lhs: &Expr, rhs: &Expr, span: Span) -> Ty {
        use BinaryOp::*;
        let both_known = l.known() && r.known();
        let sym = op.symbol();
        match op {
            And | Or => {
                self.expect_bool(l, lhs.span, &format!("`{sym}`"));
                self.expect_bool(r, rhs.span, &format!("`{sym}`"));
                Ty::Bool
            }
            Coalesce => {
                if l == Ty::Null {
                    r
                } else {
                    Ty::Unknown
                }
            }
            Eq | Ne | In | NotIn => Ty::Bool,
            Lt | Le | Gt | Ge => {
                let comparable = (l.is_number() && r.is_number()) || l == r;
                if both_known && !comparable {
                    let mut d = Diagnostic::warning(
                        format!(
                            "comparing {} with {} with `{sym}` always gives null",
                            l.name(),
                            r.name()
                        ),
                        span,
                    );
                    d.hint = Some(
                        "ordering needs two numbers, two strings or two values of the same type"
                            .into(),
                    );
                    self.diags.push(d);
                }
                Ty::Bool
            }
            Add | Sub | Mul | Div | Rem | Pow => {
                if !both_known {
                    return Ty::Unknown;
                }
                let result = match (op, l, r) {
                    (_, Ty::Int, Ty::Int) => Some(Ty::Int),
                    (_, a, b) if a.is_number() && b.is_number() => Some(Ty::Float),
                    (Add, Ty::Str, Ty::Str) => Some(Ty::Str),
                    (Add | Sub, Ty::Duration, Ty::Duration) => Some(Ty::Duration),
                    (Add, Ty::Timestamp, Ty::Duration) | (Add, Ty::Duration, Ty::Timestamp) => {
                        Some(Ty::Timestamp)
                    }
                    (Sub, Ty::Timestamp, Ty::Duration) => Some(Ty::Timestamp),
                    (Sub, Ty::Timestamp, Ty::Timestamp) => Some(Ty::Duration),
                    (Mul, Ty::Duration, Ty::Int) | (Mul, Ty::Int, Ty::Duration) => {
                        Some(Ty::Duration)
                    }
                    (Div, Ty::Duration, Ty::Int) => Some(Ty::Duration),
                    _ => None,
                };
                match result {
                    Some(t) => t,
                    None => {
                        self.mismatch(
                            format!("cannot apply `{sym}` to {} and {}", l.name(), r.name()),
                            span,
                        );
                        Ty::Unknown
                    }
                }
            }
            BitAnd | BitOr | BitXor | Shl | Shr => {
                for (t, s) in [(l, lhs.span), (r, rhs.span)] {
                    if t.known() && t != Ty::Int {
                        self.mismatch(format!("`{sym}` needs ints, found {}", t.name()), s);
                    }
                }
                Ty::Int
            }
        }
    }

    /// Resolves a call: user functions shadow built-ins (§11.2).
    fn call(&mut self, callee: &Ident, argc: usize, method: bool, place: Place) -> Ty {
        let name = callee.name.as_str();
        if let Some(f) = self.fns.get(name) {
            let n = f.params.len();
            if argc > n {
                self.error_hint(
                    format!(
                        "function `{name}` takes {n} argument{}, found {argc}",
                        plural(n)
                    ),
                    callee.span,
                    Some(format!("declared at line {}", f.span.line)),
                );
            } else if argc < n {
                let mut d = Diagnostic::warning(
                    format!("function `{name}` takes {n} argument{}, found {argc}; the missing ones are null", plural(n)),
                    callee.span,
                );
                d.hint = Some(format!("declared at line {}", f.span.line));
                self.diags.push(d);
            }
            return Ty::Unknown;
        }
        if let Some(b) = builtins::lookup(name) {
            if b.kind == BuiltinKind::Aggregate {
                self.error_hint(
                    format!(
                        "`{name}` is an aggregate function; it is only allowed in `.aggregate(…)`"
                    ),
                    callee.span,
                    Some("write `.aggregate(alias: {name}(…))`".into()),
                );
                return Ty::Unknown;
            }
            if !b.accepts(argc) {
                let shown = if method {
                    format!(" (including the receiver before `.{name}`)")
                } else {
                    String::new()
                };
                self.error(
                    format!(
                        "`{name}` takes {} argument{}, found {argc}{shown}",
                        b.arity_text(),
                        plural(b.max_args)
                    ),
                    callee.span,
                );
            }
            return builtin_type(name);
        }
        let _ = place;
        let candidates = self.fns.keys().copied().chain(
            builtins::BUILTINS
                .iter()
                .filter(|b| b.kind != BuiltinKind::Aggregate)
                .map(|b| b.name),
        );
        let hint = self
            .capped_suggest(name, candidates)
            .map(|h| format!("did you mean `{h}`?"));
        self.error_hint(format!("unknown function `{name}`"), callee.span, hint);
        Ty::Unknown
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn binding_word(k: BindingKind) -> &'static str {
    match k {
        BindingKind::Let => "`let` binding",
        BindingKind::Var => "`var`",
        BindingKind::Const => "`const`",
    }
}

/// The result type of a built-in, where fixed.
fn builtin_type(name: &str) -> Ty {
    match name {
        "len" | "floor" | "ceil" | "to_int" => Ty::Int,
        "sqrt" | "log" | "log10" | "exp" | "sin" | "cos" | "tan" | "to_float" | "pow" => Ty::Float,
        "lower" | "upper" | "trim" | "replace" | "substring" | "to_string" | "join" | "type_of" => {
            Ty::Str
        }
        "starts_with" | "ends_with" | "contains" | "is_null" | "is_int" | "is_float"
        | "is_string" | "is_bool" | "is_array" | "is_map" => Ty::Bool,
        "split" | "keys" | "values" | "push" | "reverse" | "sort" | "range" => Ty::Array,
        _ => Ty::Unknown,
    }
}

/// The type of a literal (or `Unknown`).
fn literal_type(e: &Expr) -> Ty {
    match &e.kind {
        ExprKind::Int(_) => Ty::Int,
        ExprKind::Float(_) => Ty::Float,
        ExprKind::Str(_) => Ty::Str,
        ExprKind::Bool(_) => Ty::Bool,
        ExprKind::Null => Ty::Null,
        ExprKind::Duration(_) => Ty::Duration,
        ExprKind::Timestamp(_) => Ty::Timestamp,
        ExprKind::Array(_) => Ty::Array,
        ExprKind::Map(_) => Ty::Map,
        _ => Ty::Unknown,
    }
}

/// The closest candidate to `word` by edit distance, if close enough to be a plausible typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = word.chars().count();
    // Allow one edit for very short names, then about one edit per three characters (min. two).
    let max = if len <= 2 { 1 } else { (len / 3).max(2) };
    candidates
        .into_iter()
        .filter(|c| *c != word && c.chars().count().abs_diff(len) <= max)
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= max)
        // Ties go to the candidate sharing the longest prefix (`foo` -> `floor`, not `cos`).
        .min_by_key(|(d, c)| (*d, std::cmp::Reverse(common_prefix(word, c)), *c))
        .map(|(_, c)| c)
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        match crate::check(src, &CheckOptions::default()) {
            Ok(_) => Vec::new(),
            Err(d) => d.into_iter().map(|d| d.message).collect(),
        }
    }

    fn first_error(src: &str) -> Diagnostic {
        crate::check(src, &CheckOptions::default())
            .err()
            .and_then(|d| d.into_iter().next())
            .unwrap_or_else(|| panic!("expected an error for {src:?}"))
    }

    fn warnings(src: &str) -> Vec<String> {
        match crate::check(src, &CheckOptions::default()) {
            Ok(c) => c.warnings.into_iter().map(|d| d.message).collect(),
            Err(d) => panic!("unexpected errors: {d:#?}"),
        }
    }

    const PRELUDE: &str = "event A:\n    x: int\n";

    fn ok(src: &str) {
        let full = format!("{PRELUDE}{src}");
        let r = crate::check(&full, &CheckOptions::default());
        assert!(r.is_ok(), "{src}: {:#?}", r.err());
    }

    fn err(src: &str) -> Vec<String> {
        errors(&format!("{PRELUDE}{src}"))
    }

    #[test]
    fn unknown_function_suggests_a_builtin() {
        let d = first_error("stream S = A .where(foo(x) > 1)");
        assert_eq!(d.message, "unknown function `foo`");
        assert_eq!(d.hint.as_deref(), Some("did you mean `floor`?"));
        assert_eq!((d.span.line, d.span.column), (1, 21));
        let d = first_error("fn compute(a):\n    return a\nstream S = A .process(compte(x))");
        assert_eq!(d.message, "unknown function `compte`");
        assert_eq!(d.hint.as_deref(), Some("did you mean `compute`?"));
    }

    #[test]
    fn builtin_arity() {
        assert_eq!(
            err("stream S = A .where(substring(\"abc\") == \"a\")"),
            vec!["`substring` takes 2 or 3 arguments, found 1"]
        );
        assert_eq!(
            err("stream S = A .where(\"abc\".len(1) > 1)"),
            vec!["`len` takes 1 argument, found 2 (including the receiver before `.len`)"]
        );
        ok("stream S = A .where(\"abc\".len() > 1 and substring(\"abc\", 1, 2) == \"b\")");
    }

    #[test]
    fn user_function_arity() {
        assert_eq!(
            err("fn f(a, b):\n    return a\nstream S = A .where(f(1, 2, 3) > 0)"),
            vec!["function `f` takes 2 arguments, found 3"]
        );
        let w = warnings("fn f(a, b):\n    return a\nstream S = B .where(f(1) > 0)");
        assert!(w.contains(
            &"function `f` takes 2 arguments, found 1; the missing ones are null".to_string()
        ));
    }

    #[test]
    fn user_functions_shadow_builtins() {
        ok("fn len(a, b):\n    return a\nstream S = A .where(len(1, 2) > 0)");
    }

    #[test]
    fn assignment_needs_a_var() {
        assert_eq!(
            err("fn f(p):\n    let a = 1\n    a := 2\n"),
            vec!["cannot assign to `a`: it is a `let` binding, not a `var`"]
        );
        assert_eq!(
            err("fn f(p):\n    p := 2\n"),
            vec!["cannot assign to `p`: it is a parameter, not a `var`"]
        );
        assert_eq!(
            err("fn f():\n    for i in 3:\n        i := 2\n"),
            vec!["cannot assign to `i`: it is a loop variable, not a `var`"]
        );
        assert_eq!(
            err("fn f():\n    nope := 2\n"),
            vec!["cannot assign to undeclared variable `nope`"]
        );
        assert_eq!(
            err("const k = 1\nk := 2\n"),
            vec!["cannot assign to `k`: it is a `const`, not a `var`"]
        );
        assert_eq!(
            err("v := 2\nvar v = 1\n"),
            vec!["cannot assign to `v`: no `var` with that name is declared before this line"]
        );
        ok("var g = 0\ng := 1\nfn f():\n    var a = 1\n    if a > 0:\n        a := 2\n    g := a\n");
    }

    #[test]
    fn block_scoping_of_bindings() {
        assert_eq!(
            err("fn f():\n    if true:\n        var a = 1\n    a := 2\n"),
            vec!["cannot assign to undeclared variable `a`"]
        );
    }

    #[test]
    fn undeclared_contexts() {
        let d = first_error("context ingest\nstream S = A .context(ingst)");
        assert_eq!(d.message, "undeclared context `ingst`");
        assert_eq!(d.hint.as_deref(), Some("did you mean `ingest`?"));
        assert_eq!(
            err("stream S = A .emit(context: crunch, x: x)"),
            vec!["undeclared context `crunch`"]
        );
        ok("context ingest\ncontext crunch (cores: [2, 3])\nstream S = A .context(ingest) .emit(context: crunch, x: x)");
        assert_eq!(
            err("context a\ncontext b\nstream S = A .context(a) .context(b)"),
            vec!["a stream can run in only one context"]
        );
        assert_eq!(
            err("context c (cores: [\"x\"])"),
            vec!["`cores` must be an array of non-negative integers, e.g. `[2, 3]`"]
        );
    }

    #[test]
    fn unknown_connectors_unless_external() {
        let src = "stream S = A.from(Plant, topic: \"a/#\") .to(Out, topic: \"b\")";
        assert_eq!(
            err(src),
            vec!["unknown connector `Plant`", "unknown connector `Out`"]
        );
        let opts = CheckOptions {
            external_connectors: vec!["Plant".into(), "Out".into()],
        };
        assert!(crate::check(&format!("{PRELUDE}{src}"), &opts).is_ok());
        ok("connector Plant = mqtt(host: \"h\", port: 1883)\nstream S = A.from(Plant, topic: \"a\") .to(Plant)");
    }

    #[test]
    fn connector_declarations() {
        ok("connector N = nats(servers: \"nats://h:4222\")\nstream S = A.from(N, topic: \"a.>\")");
        assert_eq!(
            err("connector N = nats(subject: \"a\")"),
            vec!["NATS connector `N` needs `servers`"]
        );
        assert_eq!(
            err("connector C = mqtt(port: 1883)"),
            vec!["MQTT connector `C` needs a `host`"]
        );
        assert_eq!(
            err("connector C = kafka(host: \"h\")"),
            vec!["connector kind `kafka` is not supported yet (only `mqtt` and `nats`)"]
        );
        assert_eq!(
            err("connector C = mqtt(host: \"h\", port: \"x\")"),
            vec!["MQTT parameter `port` has the wrong type (str)"]
        );
        assert_eq!(
            warnings("connector C = mqtt(host: \"h\", prot: 1)"),
            vec!["unknown MQTT parameter `prot`"]
        );
    }

    #[test]
    fn duplicate_names() {
        assert_eq!(
            err("event A:\n    y: int\n"),
            vec!["duplicate type name `A`"]
        );
        assert_eq!(
            err("stream S = A .emit()\nstream S = A .emit()"),
            vec!["duplicate type name `S`"]
        );
        assert_eq!(
            err("fn f():\n    return 1\nfn f():\n    return 2\n"),
            vec!["duplicate function name `f`"]
        );
        assert_eq!(
            err("context c\ncontext c"),
            vec!["duplicate context name `c`"]
        );
        assert_eq!(
            err("let a = 1\nvar a = 2"),
            vec!["duplicate top-level binding name `a`"]
        );
        assert_eq!(
            err("event E:\n    a: int\n    a: str\n"),
            vec!["duplicate field name `a`"]
        );
        assert_eq!(
            err("fn f(a, a):\n    return a\n"),
            vec!["duplicate parameter name `a`"]
        );
        assert_eq!(
            err("stream S = A .emit(a: 1, a: 2)"),
            vec!["duplicate field name `a`"]
        );
        assert_eq!(
            err("fn f():\n    emit E(a: 1, a: 2)\n"),
            vec!["duplicate field name `a`"]
        );
    }

    #[test]
    fn stream_cycles() {
        assert_eq!(
            err("stream P = Q .emit()\nstream Q = R .emit()\nstream R = P .emit()"),
            vec!["stream cycle: P -> Q -> R -> P"]
        );
        assert_eq!(err("stream S = S .emit()"), vec!["stream cycle: S -> S"]);
        let e = err("stream M = merge(A, N)\nstream N = M .emit()");
        assert!(
            e.contains(&"stream cycle: M -> N -> M".to_string()),
            "{e:?}"
        );
        ok("stream Late = Early .emit()\nstream Early = A .emit()");
    }

    #[test]
    fn unknown_and_unsupported_operators() {
        let d = first_error("stream S = A .wher(x > 1)");
        assert_eq!(d.message, "unknown operator `.wher`");
        assert_eq!(d.hint.as_deref(), Some("did you mean `.where`?"));
        assert_eq!(err("stream S = A .map(x)"), vec!["unknown operator `.map`"]);
        assert_eq!(
            err("stream S = A .within(5m)"),
            vec!["`.within` needs a sequence"]
        );
        assert_eq!(
            err("stream S = merge(A, A)"),
            vec!["duplicate merge input `A`"]
        );
        assert_eq!(
            err("stream S = join(A, B).on(A.k == B.k)"),
            vec!["a join needs `.window(<duration>)`: how old a partner event may be"]
        );
        ok("stream S = all A .within(1s)");
        ok("stream S = A -> A as a2 .emit()");
    }

    #[test]
    fn operator_arguments() {
        assert_eq!(
            err("stream S = A .where()"),
            vec!["`.where` needs one argument"]
        );
        assert_eq!(
            err("stream S = A .where(x, x)"),
            vec!["`.where` takes one argument"]
        );
        assert_eq!(
            err("stream S = A .select(1)"),
            vec!["`select` fields need a name"]
        );
        assert_eq!(
            err("stream S = A .emit(1)"),
            vec!["`emit` fields need a name"]
        );
        assert_eq!(
            err("stream S = A .process(len(x))"),
            vec!["`.process` needs a user function, `len` is a built-in"]
        );
        assert_eq!(
            err("stream S = A .process(x)"),
            vec!["`.process` expects a function call"]
        );
        assert_eq!(
            err("stream S = A .where(x > 1) .from(C)"),
            vec!["`.from` must directly follow the stream source"]
        );
        assert_eq!(
            err("stream S = A .to(\"x\")"),
            vec!["`.to` needs a connector name first"]
        );
        assert_eq!(
            err("stream S = A .emit(n: count())"),
            vec!["`count` is an aggregate function; it is only allowed in `.aggregate(…)`"]
        );
    }

    #[test]
    fn control_flow_outside_loops() {
        assert_eq!(
            err("fn f():\n    break\n"),
            vec!["`break` outside of a loop"]
        );
        assert_eq!(
            err("fn f():\n    continue\n"),
            vec!["`continue` outside of a loop"]
        );
        ok("fn f():\n    while true:\n        if 1 > 0:\n            break\n        continue\n");
    }

    #[test]
    fn type_mismatches() {
        assert_eq!(
            err("stream S = A .where(\"a\" - 1 > 0)"),
            vec!["type mismatch: cannot apply `-` to str and int"]
        );
        assert_eq!(
            err("stream S = A .where(5)"),
            vec!["type mismatch: `.where` argument must be a bool, found int"]
        );
        assert_eq!(
            err("stream S = A .filter(\"yes\")"),
            vec!["type mismatch: `.filter` argument must be a bool, found str"]
        );
        assert_eq!(
            err("fn f():\n    while 1:\n        break\n"),
            vec!["type mismatch: `while` condition must be a bool, found int"]
        );
        assert_eq!(
            err("let a = not 3"),
            vec!["type mismatch: `not` needs a bool, found int"]
        );
        assert_eq!(
            err("let a = -\"x\""),
            vec!["type mismatch: cannot negate a str"]
        );
        assert_eq!(
            err("let a = len(\"x\") + \"y\""),
            vec!["type mismatch: cannot apply `+` to int and str"]
        );
        assert_eq!(
            err("let a = 1.5 | 2"),
            vec!["type mismatch: `|` needs ints, found float"]
        );
        assert_eq!(
            err("fn f():\n    for c in 2.5:\n        break\n"),
            vec!["cannot iterate over a float (use a range, an array, a map or an int)"]
        );
        assert_eq!(
            err("let r = 0..1.5"),
            vec!["type mismatch: range bounds must be ints, found float"]
        );
        ok("let a = \"x\" + \"y\"\nlet b = 1 + 2.5\nlet d = 5s + 2ms\nlet t = @2024-01-01 + 1d\nstream S = A .where(x > 1 and true)");
        assert_eq!(
            warnings("let a = \"x\" < 1"),
            vec!["comparing str with int with `<` always gives null"]
        );
    }

    #[test]
    fn event_filters_outside_not() {
        assert_eq!(
            err("stream S = A .where(B where x > 1)"),
            vec!["`Type where condition` is only allowed in `.not(…)`"]
        );
        assert_eq!(
            err("stream S = A .not(B where x > 1)"),
            vec!["`.not` needs a sequence"]
        );
    }

    #[test]
    fn lambdas_are_rejected_clearly() {
        assert_eq!(
            err("let f = x => x + 1"),
            vec!["lambdas are not supported yet (Tier 3)"]
        );
    }

    #[test]
    fn undeclared_sources_only_warn() {
        let w = warnings("stream S = Undeclared .emit(a: a)");
        assert_eq!(
            w,
            vec!["`Undeclared` is neither a declared event type nor a stream; it is treated as an event type"]
        );
        assert_eq!(
            warnings("stream T = S .emit()\nstream S = X2 .emit()").len(),
            1
        );
    }

    #[test]
    fn unknown_names_are_event_fields_not_errors() {
        ok("fn f():\n    return some_field + 1\nstream S = A .where(whatever > 1 and r.x == 2) .emit(v: f())");
    }

    #[test]
    fn unknown_types_warn() {
        assert_eq!(
            warnings("event E:\n    a: integer\n"),
            vec!["unknown type `integer`"]
        );
    }

    #[test]
    fn remaining_declaration_and_operator_diagnostics() {
        assert_eq!(
            err("event E extends Nope:\n    a: int\n"),
            vec!["unknown base event `Nope`"]
        );
        ok("event E extends A:\n    a: int\n");
        assert_eq!(
            err("stream S = A .select()"),
            vec!["`.select` needs at least one field"]
        );
        assert_eq!(
            err("stream S = A .where(c: x)"),
            vec!["`.where` takes no named arguments"]
        );
        assert_eq!(
            err("connector C = mqtt(\"h\")"),
            vec![
                "MQTT connector `C` needs a `host`",
                "connector parameters need a name"
            ]
        );
        assert_eq!(
            err("connector C = mqtt(host: \"h\", port: 1 + 2)"),
            vec!["parameter values must be literals, names or arrays"]
        );
        assert_eq!(
            err("connector C = mqttt(host: \"h\")"),
            vec!["unknown connector kind `mqttt`"]
        );
        assert_eq!(
            warnings("context c (threads: 2)"),
            vec!["unknown context parameter `threads`"]
        );
        let conn = "connector C = mqtt(host: \"h\")\n";
        assert_eq!(
            err(&format!("{conn}stream S = A .to(C, topic: 5)")),
            vec!["`topic` must be a string, found int"]
        );
        assert_eq!(
            err(&format!("{conn}stream S = A .to(C, C)")),
            vec!["`.to` takes one connector and named parameters"]
        );
        assert_eq!(
            err(&format!("{conn}stream S = A.from(C, \"t\")")),
            vec!["`.from` takes one connector and named parameters"]
        );
    }

    #[test]
    fn errors_are_sorted_and_all_reported() {
        let e = errors(
            "stream S = A .where(nope1())\nstream T = A .where(nope2())\nfn f():\n    break\n",
        );
        assert_eq!(
            e,
            vec![
                "unknown function `nope1`",
                "unknown function `nope2`",
                "`break` outside of a loop"
            ]
        );
    }

    #[test]
    fn tier2_windows_and_aggregates_accepted() {
        ok("stream S = A .window(10s) .aggregate(n: count(), m: avg(x)) .having(n > 1) .emit()");
        ok("stream S = A .partition_by(x) .window(1m, sliding: 15s) .aggregate(k: x, s: sum(x * 2))");
        ok("stream S = A .window(50, sliding: 10) .aggregate(r: max(x) - min(x), d: count(distinct(x)))");
        ok("stream S = A .window(session: 30s) .aggregate(e: ema(x, 5), sd: stddev(x), f: first(x), l: last(x))");
        ok("stream S = A .aggregate(c: count_distinct(x), m: max(x, 3) + count(x))");
        ok("stream S = A .window(100) .emit()");
    }

    #[test]
    fn tier2_misuse_diagnostics() {
        let e = err;
        assert_eq!(
            e("stream S = A .where(stddev(x) > 1)"),
            vec!["`stddev` is an aggregate function; it is only allowed in `.aggregate(…)`"]
        );
        assert_eq!(
            e("stream S = A .aggregate(m: median(x))"),
            vec!["unknown aggregate function `median`"]
        );
        assert_eq!(
            e("stream S = A .having(x > 1)"),
            vec!["`.having` needs a preceding `.aggregate`"]
        );
        assert_eq!(
            e("stream S = A .window(5min)"),
            vec!["invalid duration unit `min`"]
        );
        assert_eq!(
            e("stream S = A .window(x)"),
            vec!["the window size must be a duration literal or a positive integer"]
        );
        assert_eq!(
            e("stream S = A .window(session_x)"),
            vec!["`session_x` is not a window kind"]
        );
        assert_eq!(
            e("stream S = A .window(0s)"),
            vec!["the window size must be positive"]
        );
        assert_eq!(
            e("stream S = A .window(-5)"),
            vec!["the window size must be positive"]
        );
        assert_eq!(
            e("stream S = A .window(10s, sliding: 0s)"),
            vec!["the slide must be positive"]
        );
        assert_eq!(
            e("stream S = A .window(10s, sliding: 3)"),
            vec!["the slide must be of the same kind as the window size"]
        );
        assert_eq!(
            e("stream S = A .window(session: 5)"),
            vec!["the session gap must be a duration literal"]
        );
        assert_eq!(
            e("stream S = A .partition_by(x) .partition_by(x)"),
            vec!["a stream can have only one `.partition_by`"]
        );
        assert_eq!(
            e("stream S = A .aggregate(count())"),
            vec!["`.aggregate` fields need a name"]
        );
        assert_eq!(
            e("stream S = A .aggregate(n: count()) .window(5s)"),
            vec!["`.window` must come before `.aggregate`"]
        );
        assert_eq!(
            e("stream S = A .aggregate(e: ema(x, 0))"),
            vec!["the `ema` period must be a positive integer literal"]
        );
        assert_eq!(e("stream S = A .aggregate(n: count(), n: sum(x))").len(), 1);
    }

    #[test]
    fn tier2_sequences_accepted() {
        ok("stream Takeover = Login as lg\n    -> PasswordReset where account == lg.account as pr\n    -> all Transfer where account == lg.account as tx\n    -> Logout where account == lg.account as lo\n    .within(20m)\n    .not(SupportCall where account == lg.account)\n    .emit(account: lg.account, last_amount: tx.amount)");
        ok("stream S = A as a -> B .partition_by(k) .within(5s) .not(C) .where(a.x > 1) .emit()");
        ok("stream M = merge(A, stream Hi = B .where(x > 1)) .window(1s) .aggregate(n: count())");
        ok("stream J = join(A, stream Bs = B .where(ok)).on(A.k == Bs.k and A.j == Bs.j).window(5m) .emit(a: A.x, b: Bs.y)");
        let w = warnings("stream S = A -> all B");
        assert!(w.iter().any(|m| m.contains("trailing `all`")), "{w:?}");
    }

    #[test]
    fn tier2_sequence_and_join_misuse_diagnostics() {
        let d = first_error("stream S = A as a\n  -> B where x == b.y as b");
        assert_eq!(d.message, "`b` is not captured yet");
        assert_eq!((d.span.line, d.span.column), (2, 19));
        assert_eq!(
            err("stream S = A -> B -> B .emit()"),
            vec!["two sequence steps are named `B`"]
        );
        assert_eq!(
            err("stream S = A -> B .within(5) .within(1s)"),
            vec![
                "the `.within` duration must be a duration literal",
                "a sequence can have only one `.within`"
            ]
        );
        assert_eq!(
            err("stream S = A -> B .not(3)"),
            vec!["`.not` expects an event type, optionally with a filter"]
        );
        assert_eq!(
            err("stream S = A -> B .window(1s) .aggregate(n: count())"),
            vec![
                "`.window` cannot be used on a sequence stream",
                "`.aggregate` cannot be used on a sequence stream"
            ]
        );
        assert_eq!(
            err("stream S = A .on(A.k == B.k)"),
            vec!["`.on` is only allowed on a `join(…)` stream"]
        );
        assert_eq!(
            err("stream J = join(A, B).window(1m)"),
            vec!["a join needs `.on(…)`"]
        );
        assert_eq!(
            err("stream J = join(A, B).on(A.k == C.k).window(1m)"),
            vec!["`C` is not an input of this join"]
        );
        assert_eq!(
            err("stream J = join(A, B).on(A.k == B.k).window(10)"),
            vec!["a join window must be a duration"]
        );
        assert_eq!(
            err("stream J = join(A, B).on(A.k == B.k).window(1m) .aggregate(n: count())"),
            vec!["`.aggregate` cannot be used on a join stream"]
        );
        assert_eq!(
            err("stream J = join(A).on(A.k == A.j).window(1m)"),
            vec![
                "a join needs at least two inputs",
                "a join condition must relate two different inputs"
            ]
        );
        assert_eq!(
            err("stream M = merge(A .emit(), B)"),
            vec!["`.emit` is not allowed on a merge input"]
        );
        assert_eq!(
            err("stream M = merge(A, B) -> C"),
            vec!["a sequence must start with an event type"]
        );
        assert_eq!(
            err("stream S = Late -> Late2 as x .emit()\nstream Late = S .emit()\nstream Late2 = A .emit()"),
            vec!["stream cycle: S -> Late -> S"]
        );
    }
}
