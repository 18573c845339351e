//! Stream operators: `.where .select .emit .process .context .from .to`, windows and aggregates,
//! connector and context references.

use super::{literal_type, Checker, Place, Ty, LATER_TIER_OPS, TIER1_OPS, UNSUPPORTED_OPS};
use crate::ast::*;
use crate::builtins::{self, BuiltinKind};
use std::collections::HashMap;

impl<'a> Checker<'a> {
    pub(super) fn check_stream(&mut self, s: &'a StreamDecl) {
        if let Some(t) = &s.ty {
            self.check_type(t);
        }
        match &s.source.kind {
            SourceKind::Timer(args) => self.check_timer(s, args),
            SourceKind::Named { name, alias, .. } => {
                if let (Some(_), Some(alias)) = (self.patterns.get(name.name.as_str()), alias) {
                    if s.steps.is_empty() {
                        self.error_hint(
                            format!(
                                "a pattern source takes no alias: `{}` names its captures itself",
                                name.name
                            ),
                            alias.span,
                            Some(
                                "read the pattern's captures by their names (`alias.field`)".into(),
                            ),
                        );
                    }
                }
                if !s.steps.is_empty() && self.patterns.contains_key(name.name.as_str()) {
                    self.error_hint(
                        "a sequence cannot start with a named pattern",
                        name.span,
                        Some("add the steps to the pattern declaration".into()),
                    );
                }
            }
            _ => {}
        }
        let (captures, kleene): (Vec<String>, Vec<String>) =
            match crate::correlate::stream_pattern(self.program, s) {
                Some(p) => pattern_captures(p),
                None => crate::correlate::sequence_steps(s)
                    .filter(|_| crate::correlate::is_sequence(s))
                    .map(|steps| {
                        let names = steps.iter().map(|st| st.capture.name.clone()).collect();
                        let kleene = steps
                            .iter()
                            .filter(|st| st.all)
                            .map(|st| st.capture.name.clone())
                            .collect();
                        (names, kleene)
                    })
                    .unwrap_or_default(),
            };
        self.stream_captures = captures;
        self.stream_kleene = kleene;
        self.check_correlation(s);
        let mut state = super::tier3::OpState::default();
        for name in crate::correlate::stream_reads(self.program, s) {
            self.warn_undeclared_input(name);
        }
        if let Some(from) = &s.source.from {
            self.check_connector_ref(&from.connector);
            let args: Vec<&Arg> = from.args.iter().collect();
            self.connector_args(&args, "from");
            self.check_connector_binding(&from.connector, "from", &args);
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
                            Some(n) if n.span == a.value.span => {
                                self.warn(
                                    format!(
                                        "this aggregate has no name: its field is `{}`",
                                        n.name
                                    ),
                                    a.span,
                                );
                                self.dup_check(&mut seen, n, "field");
                            }
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
                // Checked with the pattern (`check/seq.rs`).
                OpKind::Within | OpKind::Not | OpKind::On | OpKind::MatchMode => {}
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
                    let first = op.args.iter().find(|a| a.name.is_none());
                    if let Some(ExprKind::Name(conn)) = first.map(|a| &a.value.kind) {
                        self.check_connector_binding(conn, "to", &named);
                    }
                }
                OpKind::Distinct
                | OpKind::Limit
                | OpKind::First
                | OpKind::Print
                | OpKind::Log
                | OpKind::Alert
                | OpKind::Watermark
                | OpKind::AllowedLateness
                | OpKind::WindowPattern => self.tier3_op(s, op, &mut state),
                OpKind::TrendAggregate => self.check_trend_aggregate(s, op),
                _ if op.name.name == "enrich" => self.check_enrich(op),
                _ => {
                    let name = op.name.name.as_str();
                    if let Some((_, why)) = UNSUPPORTED_OPS.iter().find(|(n, _)| *n == name) {
                        self.error(format!("`.{name}` is not supported: {why}"), op.name.span);
                    } else {
                        let hint = self
                            .capped_suggest(name, TIER1_OPS.iter().chain(LATER_TIER_OPS).copied())
                            .map(|h| format!("did you mean `.{h}`?"));
                        self.error_hint(format!("unknown operator `.{name}`"), op.name.span, hint);
                    }
                    // The arguments of an operator the language does not have are not checked:
                    // the operator's error says it all.
                }
            }
        }
    }

    pub(super) fn emit_fields(&mut self, fields: &[&Arg]) {
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
    pub(super) fn window_args(&mut self, op: &StreamOp) {
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
                // The existing product accepts `policy: "watermark"`; time windows here always
                // fire on the watermark (§6.1).
                "policy" => self.warn(
                    "`policy:` is ignored: time windows always fire when the watermark passes their end",
                    n.span,
                ),
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
    pub(super) fn window_size(&mut self, e: &Expr, count_ok: bool, what: &str) -> Option<bool> {
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
    pub(super) fn aggregate_expr(&mut self, e: &Expr) {
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

    pub(super) fn aggregate_call(&mut self, callee: &Ident, args: &[Expr]) {
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
            ("percentile", [a, q]) => {
                self.expr(a, Place::Stream);
                // A fraction in [0, 1], or a percentage in (1, 100].
                let ok = match q.kind {
                    ExprKind::Float(x) => (0.0..=100.0).contains(&x),
                    ExprKind::Int(k) => (0..=100).contains(&k),
                    _ => false,
                };
                if !ok {
                    self.error_hint(
                        "the percentile must be a number literal between 0 and 1 (or a percentage up to 100)",
                        q.span,
                        Some("write `percentile(latency, 0.95)` or `percentile(latency, 95)`".into()),
                    );
                }
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

    pub(super) fn single_positional(&mut self, op: &'a StreamOp) -> Option<&'a Expr> {
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

    pub(super) fn check_context_ref(&mut self, e: &Expr) {
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

    pub(super) fn check_connector_ref(&mut self, n: &Ident) {
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

    pub(super) fn connector_args(&mut self, args: &[&Arg], op: &str) {
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
}

/// The capture names of a pattern and, among them, its Kleene captures (`T+`, `T*`).
pub(super) fn pattern_captures(p: &PatternDecl) -> (Vec<String>, Vec<String>) {
    let items = p.body.captures();
    let names = items.iter().map(|i| i.capture().name.clone()).collect();
    let kleene = items
        .iter()
        .filter(|i| matches!(i.quant, Quantifier::Plus | Quantifier::Star))
        .map(|i| i.capture().name.clone())
        .collect();
    (names, kleene)
}
