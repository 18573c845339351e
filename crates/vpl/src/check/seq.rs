//! Checks of sequences, joins and merges (VPL.md §7): step names and filters, `.within`,
//! `.not`, `.on` join keys, the inputs of `merge`/`join`, and operators that make no sense on
//! such streams. A child module of `check`, so it extends the same `Checker`.

use super::{Checker, Place};
use crate::ast::*;
use crate::correlate::{self, input_name, is_sequence, join_conditions, join_graph_lenient};
use crate::diagnostics::Diagnostic;
use std::collections::HashMap;

/// Every `x` of an `x.field` in `e`.
fn field_bases<'e>(e: &'e Expr, out: &mut Vec<&'e Ident>) {
    match &e.kind {
        ExprKind::Field { base, .. } => {
            if let ExprKind::Name(id) = &base.kind {
                out.push(id);
            } else {
                field_bases(base, out);
            }
        }
        ExprKind::Array(items) => items.iter().for_each(|i| field_bases(i, out)),
        ExprKind::Map(entries) => entries.iter().for_each(|m| {
            field_bases(&m.key, out);
            field_bases(&m.value, out);
        }),
        ExprKind::Unary { operand, .. } => field_bases(operand, out),
        ExprKind::Binary { lhs, rhs, .. } => {
            field_bases(lhs, out);
            field_bases(rhs, out);
        }
        ExprKind::Range { start, end, .. } => {
            field_bases(start, out);
            field_bases(end, out);
        }
        ExprKind::Call { args, .. } => args.iter().for_each(|a| field_bases(a, out)),
        ExprKind::Index { base, index } => {
            field_bases(base, out);
            field_bases(index, out);
        }
        ExprKind::Slice { base, start, end } => {
            field_bases(base, out);
            start.iter().for_each(|s| field_bases(s, out));
            end.iter().for_each(|s| field_bases(s, out));
        }
        ExprKind::If { cond, then, else_ } => {
            field_bases(cond, out);
            field_bases(then, out);
            field_bases(else_, out);
        }
        ExprKind::EventFilter { filter, .. } => field_bases(filter, out),
        _ => {}
    }
}

impl<'a> Checker<'a> {
    /// The `.within` operators of a sequence or pattern stream: durations; several of them are
    /// accepted (the existing product's leniency) with a warning, the last one bounding the whole
    /// pattern. Returns the last one's position.
    pub(super) fn check_withins(&mut self, s: &'a StreamDecl) -> Option<Span> {
        let mut last: Option<Span> = None;
        for op in s.ops.iter().filter(|o| o.kind() == OpKind::Within) {
            if let Some(prev) = last {
                self.diags.push(
                    Diagnostic::warning(
                        "several `.within`: the last one bounds the whole pattern",
                        op.span,
                    )
                    .with_hint(format!("another `.within` is at line {}", prev.line)),
                );
            }
            last = Some(op.span);
            if let Some(e) = self.single_positional(op) {
                self.window_size(e, false, "`.within` duration");
            }
        }
        last
    }

    /// Everything about `->` steps, `all`, `.within`, `.not`, `merge(…)` and `join(…)`.
    pub(super) fn check_correlation(&mut self, s: &'a StreamDecl) {
        let pattern = correlate::stream_pattern(self.program, s).is_some();
        let sequence = is_sequence(s) || pattern;
        let mut join = false;
        match &s.source.kind {
            SourceKind::Merge(inputs) | SourceKind::Join(inputs, _) => {
                join = matches!(s.source.kind, SourceKind::Join(..));
                if let Some(step) = s.steps.first() {
                    self.error_hint(
                        "a sequence must start with an event type",
                        step.span,
                        Some("correlate the merged or joined stream in a downstream stream".into()),
                    );
                }
                self.check_inputs(inputs, join);
                if join {
                    self.check_join(s, inputs);
                }
            }
            _ => {}
        }
        if is_sequence(s) && !join {
            self.check_sequence(s);
        }
        if pattern {
            self.check_withins(s);
        }
        self.check_modes(s, sequence && !join);
        for op in &s.ops {
            match op.kind() {
                OpKind::Within if !sequence => self.error_hint(
                    "`.within` needs a sequence",
                    op.span,
                    Some("write `A as a -> B as b .within(5m)`".into()),
                ),
                OpKind::Not if !sequence => self.error_hint(
                    "`.not` needs a sequence",
                    op.span,
                    Some("write `A as a -> B .not(C where id == a.id)`".into()),
                ),
                OpKind::On if !join => self.error_hint(
                    "`.on` is only allowed on a `join(…)` stream",
                    op.span,
                    Some("filter events with `.where`".into()),
                ),
                OpKind::Window | OpKind::Aggregate | OpKind::Having if sequence => self
                    .error_hint(
                        format!("`.{}` cannot be used on a sequence stream", op.name.name),
                        op.name.span,
                        Some("aggregate the matches in a downstream stream: `stream Stats = Matches .window(…) .aggregate(…)`".into()),
                    ),
                OpKind::Aggregate | OpKind::Having | OpKind::PartitionBy if join => self
                    .error_hint(
                        format!("`.{}` cannot be used on a join stream", op.name.name),
                        op.name.span,
                        Some("aggregate the joined events in a downstream stream".into()),
                    ),
                _ => {}
            }
        }
    }

    pub(super) fn check_inputs(&mut self, inputs: &'a [SubStream], join: bool) {
        let what = if join { "join" } else { "merge" };
        if join && inputs.len() < 2 {
            self.error_hint(
                "a join needs at least two inputs",
                inputs.first().map(|i| i.span).unwrap_or_default(),
                Some("write `join(A, B).on(A.k == B.k).window(5m)`".into()),
            );
        }
        let mut seen: HashMap<&'a str, Span> = HashMap::new();
        for input in inputs {
            let name = input_name(input);
            if let Some(prev) = seen.insert(&name.name, name.span) {
                self.error_hint(
                    format!("duplicate {what} input `{}`", name.name),
                    name.span,
                    Some(format!(
                        "first given at line {}; name one: `stream {}2 = {} .where(…)`",
                        prev.line, name.name, input.source.name
                    )),
                );
            }
            for op in &input.ops {
                match op.kind() {
                    OpKind::Where => {
                        if let Some(e) = self.single_positional(op) {
                            self.condition(e, Place::Stream, "`.where` argument");
                        }
                    }
                    OpKind::On if join => {}
                    _ => self.error_hint(
                        format!("`.{}` is not allowed on a {what} input", op.name.name),
                        op.name.span,
                        Some(if join {
                            "an input takes only `.where(…)` and `.on(…)`".into()
                        } else {
                            "an input takes only `.where(…)`".into()
                        }),
                    ),
                }
            }
        }
    }

    pub(super) fn check_join(&mut self, s: &'a StreamDecl, inputs: &'a [SubStream]) {
        let names: Vec<&str> = inputs.iter().map(|i| input_name(i).name.as_str()).collect();
        let conds = join_conditions(inputs, s);
        for c in &conds {
            self.expr(c, Place::Stream);
        }
        if conds.is_empty() {
            self.error_hint(
                "a join needs `.on(…)`",
                s.source.span,
                Some("write `.on(A.key == B.key)`".into()),
            );
        } else {
            let types: Vec<&str> = inputs.iter().map(|i| i.source.name.as_str()).collect();
            match join_graph_lenient(&names, &types, &conds) {
                Ok((_, warnings)) => {
                    for (span, msg) in warnings {
                        self.warn(msg, span);
                    }
                }
                Err(e) => self.error_hint(e.message, e.span, e.hint),
            }
        }
        let windows: Vec<&StreamOp> = s
            .ops
            .iter()
            .filter(|o| o.kind() == OpKind::Window)
            .collect();
        match windows.first() {
            // Leniency of the existing product: no window means a one-minute horizon.
            None => self.diags.push(
                Diagnostic::warning(
                    "a join without `.window` keeps partner events for 1 minute",
                    s.source.span,
                )
                .with_hint("write `.window(5m)` to choose how old a partner event may be"),
            ),
            Some(w) => {
                if w.args
                    .iter()
                    .any(|a| a.name.as_ref().is_some_and(|n| n.name != "policy"))
                {
                    self.error_hint(
                        "a join window takes only a duration",
                        w.span,
                        Some("write `.window(5m)`".into()),
                    );
                } else if let Some(e) = w.first_positional() {
                    if !matches!(e.kind, ExprKind::Duration(_)) {
                        self.error_hint(
                            "a join window must be a duration",
                            e.span,
                            Some("write `.window(5m)`".into()),
                        );
                    }
                }
            }
        }
    }

    /// Selection modes `.strict() .stnm() .stam()` and emission modes `.each() .longest()
    /// .subsets()` of a sequence or pattern stream: at most one of each kind, no arguments.
    fn check_modes(&mut self, s: &'a StreamDecl, sequence: bool) {
        let mut selection: Option<&StreamOp> = None;
        let mut emission: Option<&StreamOp> = None;
        for op in s.ops.iter().filter(|o| o.kind() == OpKind::MatchMode) {
            let name = op.name.name.as_str();
            if !sequence {
                self.error_hint(
                    format!("`.{name}()` needs a sequence or a named pattern"),
                    op.name.span,
                    Some("write it on a `->` sequence: `A as a -> B as b .stnm()`".into()),
                );
                continue;
            }
            if !op.args.is_empty() {
                self.error(format!("`.{name}()` takes no arguments"), op.span);
            }
            if name == "subsets" {
                self.error_hint(
                    "`.subsets` is not supported: enumerating every subset of a Kleene group (2^n - 1 matches per run) is not available",
                    op.name.span,
                    Some("use the default emission (one match per collected event) or `.longest()`".into()),
                );
            }
            let slot = if matches!(name, "strict" | "stnm" | "stam") {
                &mut selection
            } else {
                &mut emission
            };
            match slot {
                Some(prev) => self.error_hint(
                    format!("`.{name}()` conflicts with `.{}()`", prev.name.name),
                    op.name.span,
                    Some("give at most one selection mode (`.strict()`, `.stnm()`, `.stam()`) and one emission mode (`.each()`, `.longest()`)".into()),
                ),
                None => *slot = Some(op),
            }
        }
    }

    pub(super) fn check_sequence(&mut self, s: &'a StreamDecl) {
        let Some(steps) = correlate::sequence_steps(s) else {
            return;
        };
        let mut names: HashMap<&'a str, Span> = HashMap::new();
        for (i, step) in steps.iter().enumerate() {
            if let Some(prev) = names.insert(&step.capture.name, step.capture.span) {
                self.error_hint(
                    format!("two sequence steps are named `{}`", step.capture.name),
                    step.capture.span,
                    Some(format!(
                        "the other is at line {}; give this step an alias: `-> {} as {}{}`",
                        prev.line,
                        step.event.name,
                        step.capture.name.to_lowercase(),
                        i + 1
                    )),
                );
            }
            if let Some(filter) = step.filter {
                self.condition(filter, Place::Stream, "`where` filter");
                let mut bases = Vec::new();
                field_bases(filter, &mut bases);
                // Its own capture names the candidate (a Kleene step's: its last event).
                for b in bases {
                    let earlier = steps[..=i].iter().any(|p| p.capture.name == b.name);
                    let later = steps[i + 1..].iter().any(|p| p.capture.name == b.name);
                    if later && !earlier {
                        self.error_hint(
                            format!("`{}` is not captured yet", b.name),
                            b.span,
                            Some("a step filter sees the candidate's fields by bare name (or as `own_alias.field`) and earlier steps as `alias.field`".into()),
                        );
                    }
                }
            }
        }
        let within_seen = self.check_withins(s);
        for op in &s.ops {
            match op.kind() {
                OpKind::Within => {}
                OpKind::Not => {
                    if let Some(e) = self.single_positional(op) {
                        match &e.kind {
                            ExprKind::EventFilter { filter, .. } => {
                                self.condition(filter, Place::Stream, "`where` filter");
                            }
                            ExprKind::Name(_) => {}
                            _ => self.error_hint(
                                "`.not` expects an event type, optionally with a filter",
                                e.span,
                                Some("write `.not(Logout where user == a.user)`".into()),
                            ),
                        }
                    }
                }
                _ => {}
            }
        }
        if within_seen.is_none() {
            if let Some(last) = steps.last().filter(|l| l.all) {
                self.warn(
                    "a trailing `all` step without `.within` keeps its runs open until the end of input (bounded only by the live-run cap)",
                    last.span,
                );
            }
        }
    }
}
