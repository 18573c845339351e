//! Kleene captures as arrays (VPL.md §7/§8).
//!
//! A Kleene capture (`all T as ts` in a sequence, `T+ as ts` / `T* as ts` in a pattern) read as
//! `ts.field` is its most recent event (VPL.md §7). Read as a value (`len(ts)`, `ts[0]`,
//! `ts[-1].price`, `ts[1:3]`, `map(ts, t => t.price)`, `.emit(all: ts)`), it is the array of the
//! events it collected, oldest first, each a map of the event's fields.
//!
//! Only captures the program reads as a value keep their events (others keep just the last
//! one): the array lives in the captures event under the hidden field `@<capture>`, after the
//! capture fields, so it is checkpointed with the run. One capture keeps at most
//! [`MAX_CAPTURED_EVENTS`] events per run; beyond, the oldest are forgotten (the array holds the
//! most recent ones, `count(ts)` still counts all of them) and a warning is logged once.

use crate::event::Event;
use crate::value::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use varpulis_vpl::ast::{self, ExprKind};

/// At most this many events are kept in one Kleene capture of one run.
pub(crate) const MAX_CAPTURED_EVENTS: usize = 10_000;

static TRUNCATION_LOGGED: AtomicBool = AtomicBool::new(false);

/// The hidden field that holds the events of Kleene capture `cap`.
pub(crate) fn list_field(cap: &str) -> String {
    format!("@{cap}")
}

/// The Kleene captures among `kleene` that some expression of `exprs` reads as a value: a bare
/// name that is not the base of `cap.field` and not the argument of `count(cap)`. A name bound
/// by a lambda parameter of the same name is not the capture.
pub(crate) fn array_captures<'e>(
    exprs: impl IntoIterator<Item = &'e ast::Expr>,
    kleene: &[String],
) -> Vec<String> {
    let mut used = Vec::new();
    for e in exprs {
        walk(e, kleene, &[], &mut used);
    }
    kleene
        .iter()
        .filter(|k| used.contains(k))
        .cloned()
        .collect()
}

fn walk(e: &ast::Expr, kleene: &[String], bound: &[String], used: &mut Vec<String>) {
    let mut r = |x: &ast::Expr| walk(x, kleene, bound, used);
    match &e.kind {
        ExprKind::Name(id) if kleene.contains(&id.name) && !bound.contains(&id.name) => {
            used.push(id.name.clone());
        }
        // `cap.field` reads the most recent event; a field of anything else may hold a capture.
        ExprKind::Field { base, .. } if !matches!(base.kind, ExprKind::Name(_)) => r(base),
        ExprKind::Call { callee, args, .. } => {
            let count_of_name = callee.name == "count"
                && matches!(args.as_slice(), [a] if matches!(a.kind, ExprKind::Name(_)));
            if !count_of_name {
                args.iter().for_each(r);
            }
        }
        ExprKind::Lambda { params, body } => {
            let mut inner: Vec<String> = bound.to_vec();
            inner.extend(params.iter().map(|p| p.name.clone()));
            walk(body, kleene, &inner, used);
        }
        ExprKind::Array(items) => items.iter().for_each(r),
        ExprKind::Map(entries) => entries.iter().for_each(|m| {
            r(&m.key);
            r(&m.value);
        }),
        ExprKind::Unary { operand, .. } => r(operand),
        ExprKind::Binary { lhs, rhs, .. } => {
            r(lhs);
            r(rhs);
        }
        ExprKind::Range { start, end, .. } => {
            r(start);
            r(end);
        }
        ExprKind::Index { base, index } => {
            r(base);
            r(index);
        }
        ExprKind::Slice { base, start, end } => {
            r(base);
            if let Some(s) = start {
                r(s);
            }
            if let Some(s) = end {
                r(s);
            }
        }
        ExprKind::If { cond, then, else_ } => {
            r(cond);
            r(then);
            r(else_);
        }
        ExprKind::EventFilter { filter, .. } => r(filter),
        _ => {}
    }
}

/// Appends `ev` (as a map of its fields) to the array in field `slot` of `caps`.
pub(crate) fn push(caps: &mut Event, slot: usize, ev: &Event) {
    let Some((_, v)) = Arc::make_mut(&mut caps.fields).get_mut(slot) else {
        return;
    };
    if !matches!(v, Value::Array(_)) {
        *v = Value::Array(Arc::new(Vec::new()));
    }
    if let Value::Array(items) = v {
        let items = Arc::make_mut(items);
        if items.len() >= MAX_CAPTURED_EVENTS {
            items.remove(0);
            if !TRUNCATION_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    cap = MAX_CAPTURED_EVENTS,
                    "a Kleene capture collected more events than it keeps; its array holds the most recent ones"
                );
            }
        }
        items.push(Value::Map(ev.fields.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_expr(src: &str) -> ast::Expr {
        let prog = format!("stream S = A .where({src})");
        let (p, d) = varpulis_vpl::parse(&prog);
        assert!(d.is_empty(), "{d:?}");
        let s = p.streams().next().cloned().expect("stream");
        s.ops[0].args[0].value.clone()
    }

    #[test]
    fn finds_captures_read_as_values() {
        let k = vec!["bs".to_string(), "cs".to_string()];
        let uses = |src: &str| array_captures([&parse_expr(src)], &k);
        assert_eq!(uses("bs.price > 1"), Vec::<String>::new());
        assert_eq!(uses("count(bs) > 1"), Vec::<String>::new());
        assert_eq!(uses("len(bs) > 1"), vec!["bs"]);
        assert_eq!(uses("bs[0].price > cs.price"), vec!["bs"]);
        assert_eq!(uses("any(cs, bs => bs.v > 1)"), vec!["cs"]);
        assert_eq!(
            uses("sum(map(bs[1:], b => b.v)) > len(cs)"),
            vec!["bs", "cs"]
        );
    }
}
