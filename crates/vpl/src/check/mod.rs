//! Semantic analysis of a parsed program (§2–§11): name resolution, arities, mutability,
//! operator validation, stream cycles and simple literal type checks.
//!
//! Only certain errors are errors: unknown variable names are legal (they read event fields,
//! §11 name lookup) and undeclared event types are legal (warning only, §4).

use std::collections::HashMap;

use crate::ast::*;
use crate::diagnostics::Diagnostic;

mod connector;
mod decl;
mod expr;
mod kleene;
mod pattern;
mod seq;
mod stmt;
mod stream;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests3;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests_connector;
mod tier3;
mod trend;

pub use crate::suggest::suggest;

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
    /// The files the program imported (spans with `file = n` point into `imports[n - 1]`).
    pub imports: crate::source::Imports,
}

/// Operators of the existing product that this implementation does not offer, with the reason.
const UNSUPPORTED_OPS: &[(&str, &str)] = &[
    (
        "forecast",
        "pattern forecasting needs a learned prediction model that this runtime does not have",
    ),
    (
        "score",
        "ONNX model scoring is not available in this runtime",
    ),
];

/// Operators the language has beyond Tier 1 and 2 (for did-you-mean).
const LATER_TIER_OPS: &[&str] = &[
    "distinct",
    "limit",
    "first",
    "print",
    "log",
    "watermark",
    "allowed_lateness",
    "pattern",
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

/// Diagnostics after which did-you-mean hints are no longer computed.
const SUGGESTION_BUDGET: usize = 100;

use crate::ast::BASIC_TYPES;

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
    patterns: HashMap<&'a str, &'a PatternDecl>,
    type_aliases: HashMap<&'a str, &'a TypeDecl>,
    /// Top-level `let f = x => …` bindings, callable like functions: name → parameter count.
    lambdas: HashMap<&'a str, usize>,
    /// Capture names of the sequence or pattern stream being checked (`count(capture)`).
    stream_captures: Vec<String>,
    /// The Kleene captures among them (arrays of events when read as values).
    stream_kleene: Vec<String>,
    /// Parameters of the lambdas being checked, innermost last (they shadow captures).
    lambda_params: Vec<String>,
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
            patterns: HashMap::new(),
            type_aliases: HashMap::new(),
            lambdas: HashMap::new(),
            stream_captures: Vec::new(),
            stream_kleene: Vec::new(),
            lambda_params: Vec::new(),
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

    /// Warns when an input is neither a declared event type nor a stream (it is read as an
    /// event type), with a did-you-mean hint.
    fn warn_undeclared_input(&mut self, input: &Ident) {
        let n = input.name.as_str();
        if self.events.contains_key(n) || self.streams.contains_key(n) {
            return;
        }
        let candidates: Vec<&str> = self
            .events
            .keys()
            .chain(self.streams.keys())
            .copied()
            .collect();
        let mut d = Diagnostic::warning(
            format!("`{n}` is neither a declared event type nor a stream; it is treated as an event type"),
            input.span,
        );
        d.hint = self
            .capped_suggest(n, candidates)
            .map(|h| format!("did you mean `{h}`?"));
        self.diags.push(d);
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
                Item::Stream(s) => {
                    self.check_stream(s);
                    self.stream_captures.clear();
                    self.stream_kleene.clear();
                }
                Item::Pattern(p) => self.check_pattern(p),
                Item::Type(t) => self.check_type_decl(t),
                Item::Binding(b) => {
                    if let ExprKind::Lambda { params, body } = &b.value.kind {
                        self.lambda(params, body, Place::TopLevel);
                    } else {
                        self.expr(&b.value, Place::TopLevel);
                    }
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

/// The type of a literal (or `Unknown`).
fn literal_type(e: &Expr) -> Ty {
    match &e.kind {
        ExprKind::Array(_) => Ty::Array,
        ExprKind::Map(_) => Ty::Map,
        _ => scalar_literal_type(e).unwrap_or(Ty::Unknown),
    }
}

/// The type of a scalar literal (number, string, boolean, null, duration, timestamp).
fn scalar_literal_type(e: &Expr) -> Option<Ty> {
    Some(match &e.kind {
        ExprKind::Int(_) => Ty::Int,
        ExprKind::Float(_) => Ty::Float,
        ExprKind::Str(_) => Ty::Str,
        ExprKind::Bool(_) => Ty::Bool,
        ExprKind::Null => Ty::Null,
        ExprKind::Duration(_) => Ty::Duration,
        ExprKind::Timestamp(_) => Ty::Timestamp,
        _ => return None,
    })
}
