//! Step filters that read their own step's capture.
//!
//! * A Kleene step or item (`all B where v > b.v as b`, `B+ … as b`) compares each candidate with
//!   the event it collected last. Its first event has none: it compares with the event the
//!   previous step or item captured when that one carries every field read ([`own_fields`];
//!   `Reading as r0 -> all Reading where v > up.v as up` rises from `r0`), else it is checked
//!   against the filter without the conjuncts that read the capture ([`without_own`]).
//! * Any other step whose filter reads its own capture (`Transaction as t where t.amount > 5`)
//!   reads the candidate itself under that name.

use varpulis_vpl::ast::{self, ExprKind};

/// Whether `e` reads `name.field`.
pub(crate) fn refs_capture(e: &ast::Expr, name: &str) -> bool {
    match &e.kind {
        ExprKind::Field { base, .. } if matches!(&base.kind, ExprKind::Name(id) if id.name == name) => {
            true
        }
        _ => any_child(e, |x| refs_capture(x, name)),
    }
}

/// Whether `f` holds for a direct subexpression of `e`: a field's base, operands, call
/// arguments, array items, map keys and values, index, branches and range bounds (lambdas and
/// the other kinds: none).
pub(crate) fn any_child(e: &ast::Expr, mut f: impl FnMut(&ast::Expr) -> bool) -> bool {
    match &e.kind {
        ExprKind::Field { base, .. } => f(base),
        ExprKind::Unary { operand, .. } => f(operand),
        ExprKind::Binary { lhs, rhs, .. } => f(lhs) || f(rhs),
        ExprKind::Call { args, .. } => args.iter().any(f),
        ExprKind::Array(items) => items.iter().any(f),
        ExprKind::Map(entries) => entries.iter().any(|m| f(&m.key) || f(&m.value)),
        ExprKind::Index { base, index } => f(base) || f(index),
        ExprKind::If { cond, then, else_ } => f(cond) || f(then) || f(else_),
        ExprKind::Range { start, end, .. } => f(start) || f(end),
        _ => false,
    }
}

/// The conjuncts of `a and b and …`.
fn conjuncts<'e>(e: &'e ast::Expr, out: &mut Vec<&'e ast::Expr>) {
    match &e.kind {
        ExprKind::Binary {
            op: ast::BinaryOp::And,
            lhs,
            rhs,
        } => {
            conjuncts(lhs, out);
            conjuncts(rhs, out);
        }
        _ => out.push(e),
    }
}

/// `a and b and …` of the given conjuncts (`None`: no condition).
fn conjoin(parts: Vec<&ast::Expr>) -> Option<ast::Expr> {
    parts.into_iter().cloned().reduce(|a, b| {
        let span = a.span;
        ast::Expr::new(
            ExprKind::Binary {
                op: ast::BinaryOp::And,
                lhs: Box::new(a),
                rhs: Box::new(b),
            },
            span,
        )
    })
}

/// `f` without its conjuncts that read `own.field` (`None`: nothing left to check).
pub(crate) fn without_own(f: &ast::Expr, own: &str) -> Option<ast::Expr> {
    if !refs_capture(f, own) {
        return Some(f.clone());
    }
    let mut kept: Vec<&ast::Expr> = Vec::new();
    conjuncts(f, &mut kept);
    kept.retain(|c| !refs_capture(c, own));
    conjoin(kept)
}

/// The fields `e` reads as `name.field`, without duplicates.
pub(crate) fn own_fields(e: &ast::Expr, name: &str) -> Vec<String> {
    fn walk(e: &ast::Expr, name: &str, out: &mut Vec<String>) {
        let mut r = |x: &ast::Expr| walk(x, name, out);
        match &e.kind {
            ExprKind::Field { base, name: f, .. } => match &base.kind {
                ExprKind::Name(id) if id.name == name => {
                    if !out.contains(&f.name) {
                        out.push(f.name.clone());
                    }
                }
                _ => r(base),
            },
            ExprKind::Unary { operand, .. } => r(operand),
            ExprKind::Binary { lhs, rhs, .. } => {
                r(lhs);
                r(rhs);
            }
            ExprKind::Call { args, .. } => args.iter().for_each(r),
            ExprKind::Array(items) => items.iter().for_each(r),
            ExprKind::Map(entries) => entries.iter().for_each(|m| {
                r(&m.key);
                r(&m.value);
            }),
            ExprKind::Index { base, index } => {
                r(base);
                r(index);
            }
            ExprKind::If { cond, then, else_ } => {
                r(cond);
                r(then);
                r(else_);
            }
            ExprKind::Range { start, end, .. } => {
                r(start);
                r(end);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(e, name, &mut out);
    out
}

/// Whether a captured value (a map of the event's fields) carries every field in `fields`.
pub(crate) fn carries(captured: &crate::value::Value, fields: &[std::sync::Arc<str>]) -> bool {
    match captured {
        crate::value::Value::Map(m) => fields
            .iter()
            .all(|f| m.iter().any(|(k, v)| k == f && !v.is_null())),
        _ => false,
    }
}
