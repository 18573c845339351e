//! Tier 3 stream operators and sources: `.distinct .limit .first .print .log`, `.watermark`,
//! `.allowed_lateness`, `.pattern(name: events => e)`, `timer(…)` sources, and lambdas.

use super::{Checker, Place, Ty};
use crate::ast::*;
use crate::diagnostics::Diagnostic;
use std::collections::HashMap;

/// Log levels accepted by `.log(level: …)`.
pub const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "warning", "error"];

/// What earlier operators of the stream being checked declared.
#[derive(Debug, Default)]
pub(super) struct OpState {
    watermark: Option<Span>,
    lateness: Option<Span>,
}

/// A positive (or, with `zero_ok`, non-negative) duration literal, else `Err(message)`.
fn duration_literal(e: &Expr, zero_ok: bool) -> Result<u64, &'static str> {
    match e.kind {
        ExprKind::Duration(d) if d > 0 || zero_ok => Ok(d),
        ExprKind::Duration(_) => Err("must be positive"),
        _ => Err("must be a duration literal (e.g. `5s`, `500ms`)"),
    }
}

impl<'a> Checker<'a> {
    /// One Tier 3 operator of stream `s`.
    pub(super) fn tier3_op(&mut self, s: &'a StreamDecl, op: &'a StreamOp, st: &mut OpState) {
        let name = op.name.name.as_str();
        match op.kind() {
            OpKind::Distinct => {
                if let Some(a) = op.args.iter().find(|a| a.name.is_some()) {
                    self.error(format!("`.{name}` takes no named arguments"), a.span);
                }
                for a in &op.args {
                    self.expr(&a.value, Place::Stream);
                }
            }
            OpKind::First => {
                if let Some(a) = op.args.first() {
                    self.error_hint(
                        "`.first()` takes no arguments",
                        a.span,
                        Some("write `.limit(n)` to pass the first n events".into()),
                    );
                }
            }
            OpKind::Limit => {
                if let Some(e) = self.single_positional(op) {
                    if !matches!(e.kind, ExprKind::Int(n) if n >= 0) {
                        self.error_hint(
                            "`.limit` needs a non-negative integer literal",
                            e.span,
                            Some("write `.limit(10)`".into()),
                        );
                    }
                }
            }
            OpKind::Print => {
                if let Some(a) = op.args.iter().find(|a| a.name.is_some()) {
                    self.error_hint(
                        "`.print` takes values to print, not named arguments",
                        a.span,
                        Some("write `.print(\"alert\", id, temp)`".into()),
                    );
                }
                for a in &op.args {
                    self.expr(&a.value, Place::Stream);
                }
            }
            OpKind::Log => self.log_args(op),
            OpKind::Alert => self.alert_args(op),
            OpKind::Watermark => {
                if let Some(prev) = st.watermark {
                    self.error_hint(
                        "a stream can have only one `.watermark`",
                        op.span,
                        Some(format!("`.watermark` already given at line {}", prev.line)),
                    );
                }
                st.watermark = Some(op.span);
                let mut bound = None;
                for a in &op.args {
                    match a.name.as_ref().map(|n| n.name.as_str()) {
                        None | Some("out_of_order") if bound.is_none() => bound = Some(&a.value),
                        Some(other) => self.error_hint(
                            format!("unknown `.watermark` parameter `{other}`"),
                            a.span,
                            Some("write `.watermark(out_of_order: 5s)`".into()),
                        ),
                        None => self.error("`.watermark` takes one duration", a.span),
                    }
                }
                match bound {
                    None => self.error_hint(
                        "`.watermark` needs the out-of-order bound",
                        op.span,
                        Some("write `.watermark(out_of_order: 5s)`".into()),
                    ),
                    Some(e) => {
                        if let Err(why) = duration_literal(e, true) {
                            self.error(format!("the out-of-order bound {why}"), e.span);
                        }
                    }
                }
            }
            OpKind::AllowedLateness => {
                if let Some(prev) = st.lateness {
                    self.error_hint(
                        "a stream can have only one `.allowed_lateness`",
                        op.span,
                        Some(format!(
                            "`.allowed_lateness` already given at line {}",
                            prev.line
                        )),
                    );
                }
                st.lateness = Some(op.span);
                if let Some(e) = self.single_positional(op) {
                    if let Err(why) = duration_literal(e, true) {
                        self.error(format!("the allowed lateness {why}"), e.span);
                    }
                }
                let count_window = s.ops.iter().any(|o| {
                    o.kind() == OpKind::Window
                        && o.first_positional()
                            .is_some_and(|e| matches!(e.kind, ExprKind::Int(_)))
                });
                if count_window {
                    self.warn(
                        "`.allowed_lateness` has no effect on a count window: late events are dropped",
                        op.span,
                    );
                }
            }
            OpKind::WindowPattern => self.window_pattern(s, op),
            _ => {}
        }
    }

    /// `.log(level: "warn", message: "…", data: expr)` (a first positional argument is the
    /// message).
    /// `.alert(message: "…", webhook: "url")`: both optional; the alert is logged.
    fn alert_args(&mut self, op: &'a StreamOp) {
        let mut seen: HashMap<&'a str, Span> = HashMap::new();
        for a in &op.args {
            let Some(n) = &a.name else {
                self.error_hint(
                    "`.alert` takes named parameters",
                    a.span,
                    Some("write `.alert(message: \"High temp: {temperature}\")`".into()),
                );
                continue;
            };
            self.dup_check(&mut seen, n, "parameter");
            match n.name.as_str() {
                "message" => {
                    self.expr(&a.value, Place::Stream);
                }
                "webhook" => {
                    if !matches!(a.value.kind, ExprKind::Str(_)) {
                        self.error("the webhook must be a string literal (a URL)", a.value.span);
                    }
                    self.warn(
                        "webhooks are not sent by this runtime: the alert is logged (target `vpl`, level info)",
                        n.span,
                    );
                }
                other => self.error_hint(
                    format!("unknown `.alert` parameter `{other}`"),
                    n.span,
                    Some("`.alert` takes `message:` and `webhook:`".into()),
                ),
            }
        }
    }

    fn log_args(&mut self, op: &'a StreamOp) {
        let mut seen: HashMap<&'a str, Span> = HashMap::new();
        let mut positional = 0;
        for a in &op.args {
            let Some(n) = &a.name else {
                positional += 1;
                if positional > 1 {
                    self.error_hint(
                        "`.log` takes one positional argument (the message)",
                        a.span,
                        Some("write `.log(level: \"warn\", message: \"…\", data: value)`".into()),
                    );
                }
                self.expr(&a.value, Place::Stream);
                continue;
            };
            self.dup_check(&mut seen, n, "parameter");
            match n.name.as_str() {
                "level" => {
                    let level = match &a.value.kind {
                        ExprKind::Str(s) => Some(s.as_str()),
                        ExprKind::Name(id) => Some(id.name.as_str()),
                        _ => None,
                    };
                    match level {
                        Some(l) if LOG_LEVELS.contains(&l.to_ascii_lowercase().as_str()) => {}
                        _ => self.error_hint(
                            "unknown log level",
                            a.value.span,
                            Some(
                                "use \"trace\", \"debug\", \"info\", \"warn\" or \"error\"".into(),
                            ),
                        ),
                    }
                }
                "message" | "data" => {
                    self.expr(&a.value, Place::Stream);
                }
                other => self.error_hint(
                    format!("unknown `.log` parameter `{other}`"),
                    n.span,
                    Some("`.log` takes `level:`, `message:` and `data:`".into()),
                ),
            }
        }
        if positional > 0 && seen.contains_key("message") {
            self.error("`.log` message given twice", op.span);
        }
    }

    /// `.pattern(name: events => condition)`: keeps or drops each fired window as a whole.
    fn window_pattern(&mut self, s: &'a StreamDecl, op: &'a StreamOp) {
        const HINT: &str = "write `.pattern(rising: events => events[-1].v > events[0].v)`";
        let here = s.ops.iter().position(|o| std::ptr::eq(o, op)).unwrap_or(0);
        if let Some(agg) = s.ops[..here].iter().find(|o| o.kind() == OpKind::Aggregate) {
            self.error_hint(
                "`.pattern` must come before `.aggregate`",
                op.span,
                Some(format!("`.aggregate` is at line {}", agg.span.line)),
            );
        }
        if crate::correlate::is_sequence(s)
            || crate::correlate::stream_pattern(self.program, s).is_some()
        {
            self.error_hint(
                "`.pattern(…)` filters windows; a sequence stream has none",
                op.span,
                Some("use a `pattern` declaration or `->` steps for sequences".into()),
            );
        }
        match op.args.as_slice() {
            [Arg {
                name: Some(_),
                value:
                    Expr {
                        kind: ExprKind::Lambda { params, body },
                        ..
                    },
                ..
            }] => {
                if params.len() != 1 {
                    self.error_hint(
                        "the `.pattern` lambda takes one parameter: the window's events",
                        op.span,
                        Some(HINT.into()),
                    );
                }
                let t = self.lambda(params, body, Place::Stream);
                if t.known() && t != Ty::Bool {
                    self.error(
                        format!(
                            "type mismatch: a `.pattern` condition must be a bool, found {}",
                            t.name()
                        ),
                        body.span,
                    );
                }
            }
            _ => self.error_hint(
                "`.pattern` takes one named lambda over the window's events",
                op.span,
                Some(HINT.into()),
            ),
        }
    }

    /// `timer(period[, initial_delay: d])`.
    pub(super) fn check_timer(&mut self, s: &'a StreamDecl, args: &'a [Arg]) {
        const HINT: &str = "write `timer(5s)` or `timer(1m, initial_delay: 10s)`";
        let mut period = None;
        for a in args {
            match a.name.as_ref().map(|n| n.name.as_str()) {
                None if period.is_none() => period = Some(&a.value),
                None => self.error_hint("`timer` takes one period", a.span, Some(HINT.into())),
                Some("initial_delay") => {
                    if let Err(why) = duration_literal(&a.value, true) {
                        self.error(format!("the initial delay {why}"), a.value.span);
                    }
                }
                Some(other) => self.error_hint(
                    format!("unknown `timer` parameter `{other}`"),
                    a.span,
                    Some(HINT.into()),
                ),
            }
        }
        match period {
            None => self.error_hint("`timer` needs a period", s.source.span, Some(HINT.into())),
            Some(p) => {
                if let Err(why) = duration_literal(p, false) {
                    self.error(format!("the timer period {why}"), p.span);
                }
            }
        }
        if !s.steps.is_empty() {
            self.error("a timer cannot start a sequence", s.source.span);
        }
    }

    /// Checks a lambda's body (its parameters are plain names there); returns the body's type.
    pub(super) fn lambda(&mut self, params: &[Ident], body: &Expr, place: Place) -> Ty {
        for (i, p) in params.iter().enumerate() {
            if params[..i].iter().any(|q| q.name == p.name) {
                self.error(format!("duplicate parameter name `{}`", p.name), p.span);
            }
        }
        let depth = self.lambda_params.len();
        self.lambda_params
            .extend(params.iter().map(|p| p.name.clone()));
        let t = self.expr(body, place);
        self.lambda_params.truncate(depth);
        t
    }

    /// Checks a call's argument that must be a lambda (`filter(xs, x => …)`).
    pub(super) fn lambda_argument(&mut self, callee: &Ident, arg: &Expr, place: Place) {
        match &arg.kind {
            ExprKind::Lambda { params, body } => {
                if params.is_empty() || params.len() > 2 {
                    self.error_hint(
                        format!(
                            "the function given to `{}` takes one parameter (or two for pairs)",
                            callee.name
                        ),
                        arg.span,
                        Some(format!("write `{}(xs, x => …)`", callee.name)),
                    );
                }
                self.lambda(params, body, place);
            }
            _ => {
                self.expr(arg, place);
                self.diags.push(
                    Diagnostic::error(
                        format!("`{}` needs a function as its second argument", callee.name),
                        arg.span,
                    )
                    .with_hint(format!("write `{}(xs, x => …)`", callee.name)),
                );
            }
        }
    }
}
