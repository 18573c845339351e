//! Expressions: literal type inference, operator type checks, calls of built-in and user functions.

use super::{plural, Checker, Place, Ty};
use crate::ast::*;
use crate::builtins::{self, BuiltinKind};
use crate::diagnostics::Diagnostic;

impl<'a> Checker<'a> {
    /// Checks an expression and infers its type from literals.
    pub(super) fn expr(&mut self, e: &Expr, place: Place) -> Ty {
        self.check_capture_use(e);
        match &e.kind {
            ExprKind::Int(_) => Ty::Int,
            ExprKind::Float(_) => Ty::Float,
            ExprKind::Str(_) => Ty::Str,
            ExprKind::Bool(_) => Ty::Bool,
            ExprKind::Null => Ty::Null,
            ExprKind::Duration(_) => Ty::Duration,
            ExprKind::Timestamp(_) => Ty::Timestamp,
            ExprKind::Name(id) if self.capture_kind(&id.name) == Some(true) => Ty::Array,
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
            } if callee.name == "count"
                && !self.fns.contains_key("count")
                && matches!(args.as_slice(), [Expr { kind: ExprKind::Name(id), .. }] if self.stream_captures.contains(&id.name)) =>
            {
                // `count(capture)`: the events a sequence step or pattern item took.
                let _ = method;
                Ty::Int
            }
            ExprKind::Call {
                callee,
                args,
                method,
            } => {
                let lambda_at = if self.fns.contains_key(callee.name.as_str()) {
                    None
                } else {
                    builtins::lambda_arg(&callee.name)
                };
                for (i, a) in args.iter().enumerate() {
                    if Some(i) == lambda_at {
                        self.lambda_argument(callee, a, place);
                    } else {
                        self.expr(a, place);
                    }
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
            ExprKind::Lambda { params, body } => {
                self.error_hint(
                    "a lambda can only be passed to `filter`, `map`, `any` or `all`, given to `.pattern(…)`, or bound at top level",
                    e.span,
                    Some("write `filter(xs, x => x > 0)` or `let double = x => x * 2`".into()),
                );
                self.lambda(params, body, place);
                Ty::Unknown
            }
        }
    }

    pub(super) fn mismatch(&mut self, msg: String, span: Span) {
        self.error(format!("type mismatch: {msg}"), span);
    }

    pub(super) fn expect_bool(&mut self, t: Ty, span: Span, what: &str) {
        if t.known() && t != Ty::Bool {
            self.mismatch(format!("{what} needs a bool, found {}", t.name()), span);
        }
    }

    pub(super) fn binary(
        &mut self,
        op: BinaryOp,
        l: Ty,
        r: Ty,
        lhs: &Expr,
        rhs: &Expr,
        span: Span,
    ) -> Ty {
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
    pub(super) fn call(&mut self, callee: &Ident, argc: usize, method: bool, place: Place) -> Ty {
        let name = callee.name.as_str();
        if let Some(&n) = self.lambdas.get(name) {
            if argc != n {
                self.error(
                    format!("`{name}` takes {n} argument{}, found {argc}", plural(n)),
                    callee.span,
                );
            }
            return Ty::Unknown;
        }
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
        "split" | "keys" | "values" | "push" | "reverse" | "sort" | "range" | "filter" | "map"
        | "flatten" | "sliding_pairs" => Ty::Array,
        "any" | "all" => Ty::Bool,
        "variance" => Ty::Float,
        _ => Ty::Unknown,
    }
}
