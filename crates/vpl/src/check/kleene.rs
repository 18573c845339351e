//! Captures used as values in the operators and filters of a sequence or pattern stream.
//!
//! A Kleene capture (`all T as ts`, `T+ as ts`, `T* as ts`) read as a value is the array of the
//! events it collected (each a map of the event's fields); `ts.field` reads the most recent one
//! (VPL.md §7). Any other capture is one event: indexing, slicing or passing it to an array
//! helper is an error, and so is giving a Kleene capture itself to a numeric helper (its
//! elements are events, not numbers).

use super::Checker;
use crate::ast::*;

/// Array helpers whose first argument must be an array.
const ARRAY_HELPERS: &[&str] = &[
    "len",
    "first",
    "last",
    "filter",
    "map",
    "any",
    "all",
    "flatten",
    "sliding_pairs",
    "reverse",
    "sort",
    "push",
    "pop",
    "sum",
    "avg",
    "variance",
    "min",
    "max",
];

/// Helpers that need numbers inside the array.
const NUMERIC_HELPERS: &[&str] = &["sum", "avg", "variance", "min", "max", "sort"];

impl Checker<'_> {
    /// Whether `name` is a capture of the stream being checked (not shadowed by a local, a
    /// lambda parameter or a top-level binding), and if so whether it is a Kleene capture.
    pub(super) fn capture_kind(&self, name: &str) -> Option<bool> {
        if self.lookup_local(name).is_some()
            || self.lambda_params.iter().any(|p| p == name)
            || self.globals.contains_key(name)
        {
            return None;
        }
        if self.stream_kleene.iter().any(|k| k == name) {
            return Some(true);
        }
        self.stream_captures
            .iter()
            .any(|c| c == name)
            .then_some(false)
    }

    /// Reports a single-event capture used as an array, and a Kleene capture given directly to
    /// a helper that needs numbers.
    pub(super) fn check_capture_use(&mut self, e: &Expr) {
        if self.stream_captures.is_empty() {
            return;
        }
        let (base, what) = match &e.kind {
            ExprKind::Index { base, .. } => (&**base, "indexed".to_string()),
            ExprKind::Slice { base, .. } => (&**base, "sliced".to_string()),
            ExprKind::Call { callee, args, .. }
                if ARRAY_HELPERS.contains(&callee.name.as_str())
                    && !self.fns.contains_key(callee.name.as_str())
                    && (args.len() == 1 || !matches!(callee.name.as_str(), "min" | "max")) =>
            {
                let Some(first) = args.first() else { return };
                if let ExprKind::Name(id) = &first.kind {
                    if self.capture_kind(&id.name) == Some(true)
                        && NUMERIC_HELPERS.contains(&callee.name.as_str())
                    {
                        self.error_hint(
                            format!(
                                "`{}` needs numbers, but `{}` is an array of events",
                                callee.name, id.name
                            ),
                            first.span,
                            Some(format!(
                                "map the events to a field first: `{}(map({}, e => e.field))`",
                                callee.name, id.name
                            )),
                        );
                        return;
                    }
                }
                (first, format!("given to `{}`", callee.name))
            }
            _ => return,
        };
        let ExprKind::Name(id) = &base.kind else {
            return;
        };
        if self.capture_kind(&id.name) == Some(false) {
            self.error_hint(
                format!(
                    "`{}` captures one event and cannot be {what}: only a Kleene capture (`T+`, `T*`, `all T`) is an array of events",
                    id.name
                ),
                base.span,
                Some(format!(
                    "read a field with `{}.field`, or collect events with `all T as {}` / `T+ as {}`",
                    id.name, id.name, id.name
                )),
            );
        }
    }
}
