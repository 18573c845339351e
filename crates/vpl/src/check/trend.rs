//! `.trend_aggregate(name: f(…), …)` on a `->` sequence with an `all` step (aggregation mode;
//! the definition is in docs/vpl-tier3.md and `runtime/src/operators/trend.rs`).

use super::pattern::captured_names;
use super::Checker;
use crate::ast::*;
use crate::correlate;

/// The aggregate functions of `.trend_aggregate` with what they take.
const TREND_FUNCTIONS: &str =
    "`count_trends()`, `count_events([alias])`, `sum_trends(alias.field)`, `avg_trends(alias.field)`, `min_trends(alias.field)`, `max_trends(alias.field)`";

impl Checker<'_> {
    /// Checks a `.trend_aggregate(…)` operator of stream `s`.
    pub(super) fn check_trend_aggregate(&mut self, s: &StreamDecl, op: &StreamOp) {
        let steps = correlate::sequence_steps(s).filter(|_| {
            correlate::is_sequence(s) && correlate::stream_pattern(self.program, s).is_none()
        });
        let Some(steps) = steps else {
            self.error_hint(
                "`.trend_aggregate` needs a `->` sequence with an `all` step",
                op.name.span,
                Some("write `A as a -> all B as b -> C .within(1m) .trend_aggregate(n: count_trends())`".into()),
            );
            return;
        };
        if !steps.iter().any(|st| st.all) {
            self.error_hint(
                "`.trend_aggregate` needs an `all` step: without one a start has at most one trend",
                op.name.span,
                Some("make a step Kleene with `-> all T`".into()),
            );
        }
        if !s.ops.iter().any(|o| o.kind() == OpKind::Within) {
            self.error_hint(
                "`.trend_aggregate` needs `.within(…)`: each start's result is emitted when it ends",
                op.name.span,
                Some("add `.within(1m)`".into()),
            );
        }
        if s.ops
            .iter()
            .filter(|o| o.kind() == OpKind::TrendAggregate)
            .count()
            > 1
        {
            self.error(
                "a stream can have only one `.trend_aggregate`",
                op.name.span,
            );
        }
        for o in &s.ops {
            let clash = match o.kind() {
                OpKind::Not => Some("`.not(…)`"),
                OpKind::MatchMode => Some("a selection or emission mode"),
                OpKind::Select => Some("`.select`"),
                _ => None,
            };
            if let Some(what) = clash {
                self.error(
                    format!("{what} cannot be combined with `.trend_aggregate` (trends use skip-till-any-match)"),
                    o.name.span,
                );
            }
        }
        // Filters read the trend's first event and its previous event only.
        let names: Vec<&str> = steps.iter().map(|st| st.capture.name.as_str()).collect();
        for (i, st) in steps.iter().enumerate() {
            let Some(f) = st.filter else { continue };
            let mut bases = Vec::new();
            captured_names(f, &mut bases);
            for b in bases {
                let Some(at) = names.iter().position(|n| *n == b.name) else {
                    continue;
                };
                if at != 0 && at != i && at + 1 != i {
                    self.error_hint(
                        format!(
                            "with `.trend_aggregate`, a filter reads the trend's first event (`{}`) and its previous event, not `{}`",
                            names[0], b.name
                        ),
                        b.span,
                        Some("trends are counted without enumerating them, so only adjacent events can be compared".into()),
                    );
                }
            }
        }
        if op.args.is_empty() {
            self.error_hint(
                "`.trend_aggregate` needs at least one aggregate",
                op.span,
                Some(format!("one of {TREND_FUNCTIONS}")),
            );
        }
        for a in &op.args {
            if a.name.is_none() {
                self.error_hint(
                    "`.trend_aggregate` fields need a name",
                    a.value.span,
                    Some("write `n: count_trends()`".into()),
                );
            }
            let ok = match &a.value.kind {
                ExprKind::Call { callee, args, .. } => {
                    match (callee.name.as_str(), args.as_slice()) {
                        ("count_trends", []) => true,
                        ("count_events", []) => true,
                        (
                            "count_events",
                            [Expr {
                                kind: ExprKind::Name(id),
                                ..
                            }],
                        ) => names.contains(&id.name.as_str()),
                        (
                            "sum_trends" | "avg_trends" | "min_trends" | "max_trends",
                            [Expr {
                                kind: ExprKind::Field { base, .. },
                                ..
                            }],
                        ) => {
                            matches!(&base.kind, ExprKind::Name(id) if names.contains(&id.name.as_str()))
                        }
                        _ => false,
                    }
                }
                _ => false,
            };
            if !ok {
                self.error_hint(
                    "not a trend aggregate",
                    a.value.span,
                    Some(format!(
                        "use {TREND_FUNCTIONS}, where `alias` is a step of the sequence"
                    )),
                );
            }
        }
    }
}
