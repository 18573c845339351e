//! Named pattern declarations (§8): item types, capture names, filters reading only earlier
//! captures, where `NOT` may stand, `within` and `partition by`.

use super::{Checker, Place};
use crate::ast::*;
use std::collections::HashMap;

/// Every `x` of an `x.field` in `e` (like `seq::field_bases`, kept local to stay small).
pub(super) fn captured_names<'e>(e: &'e Expr, out: &mut Vec<&'e Ident>) {
    match &e.kind {
        ExprKind::Field { base, .. } => match &base.kind {
            ExprKind::Name(id) => out.push(id),
            _ => captured_names(base, out),
        },
        ExprKind::Array(items) => items.iter().for_each(|i| captured_names(i, out)),
        ExprKind::Map(entries) => entries.iter().for_each(|m| {
            captured_names(&m.key, out);
            captured_names(&m.value, out);
        }),
        ExprKind::Unary { operand, .. } => captured_names(operand, out),
        ExprKind::Binary { lhs, rhs, .. } => {
            captured_names(lhs, out);
            captured_names(rhs, out);
        }
        ExprKind::Range { start, end, .. } => {
            captured_names(start, out);
            captured_names(end, out);
        }
        ExprKind::Call { args, .. } => args.iter().for_each(|a| captured_names(a, out)),
        ExprKind::Index { base, index } => {
            captured_names(base, out);
            captured_names(index, out);
        }
        ExprKind::If { cond, then, else_ } => {
            captured_names(cond, out);
            captured_names(then, out);
            captured_names(else_, out);
        }
        _ => {}
    }
}

/// Whether a pattern can match without any event (every part optional).
pub fn nullable(p: &PatternExpr) -> bool {
    match &p.kind {
        PatternKind::Item(i) => matches!(i.quant, Quantifier::Star | Quantifier::Optional),
        PatternKind::Not(_) => true,
        PatternKind::Seq(kids) | PatternKind::And(kids) => kids.iter().all(nullable),
        PatternKind::Or(kids) => kids.iter().any(nullable),
    }
}

impl<'a> Checker<'a> {
    pub(super) fn check_pattern(&mut self, p: &'a PatternDecl) {
        let items = p.body.items();
        // Capture names: unique (a `NOT` item captures nothing).
        let mut seen: HashMap<&'a str, Span> = HashMap::new();
        for item in &p.body.captures() {
            let n = item.capture();
            if let Some(prev) = seen.get(n.name.as_str()) {
                let prev = *prev;
                self.error_hint(
                    format!("two pattern items are named `{}`", n.name),
                    n.span,
                    Some(format!(
                        "the other is at line {}; give this item an alias: `{} as {}2`",
                        prev.line,
                        item.event.name,
                        n.name.to_lowercase()
                    )),
                );
            } else {
                seen.insert(&n.name, n.span);
            }
        }
        // Event types.
        for item in &items {
            self.warn_undeclared_input(&item.event);
        }
        // Filters see the candidate's fields (also under the item's own capture name; a Kleene
        // item's own capture is its previous event) and the captures of earlier items.
        let (captures, kleene) = super::stream::pattern_captures(p);
        let saved = (
            std::mem::replace(&mut self.stream_captures, captures),
            std::mem::replace(&mut self.stream_kleene, kleene),
        );
        for (i, item) in items.iter().enumerate() {
            let Some(filter) = &item.filter else { continue };
            self.condition(filter, Place::Stream, "`where` filter");
            let mut bases = Vec::new();
            captured_names(filter, &mut bases);
            for b in bases {
                let caps = p.body.captures();
                let names = |xs: &[&PatternItem]| -> bool {
                    xs.iter().any(|x| {
                        caps.iter().any(|c| std::ptr::eq(*c, *x)) && x.capture().name == b.name
                    })
                };
                let earlier = names(&items[..i]);
                let later = names(&items[i..]);
                if later && !earlier && !self.is_own_capture(item, &b.name) {
                    self.error_hint(
                        format!("`{}` is not captured yet", b.name),
                        b.span,
                        Some("a filter sees the candidate's fields by bare name (or as `own_alias.field`) and earlier items as `alias.field`".into()),
                    );
                }
            }
        }
        (self.stream_captures, self.stream_kleene) = saved;
        self.check_pattern_shape(&p.body, true);
        if nullable(&p.body) {
            self.error_hint(
                "this pattern can match without any event",
                p.body.span,
                Some("make at least one item mandatory (no `*` or `?`)".into()),
            );
        }
        // `within`: durations; several of them bound the whole pattern with the last one.
        for w in &p.within {
            if !matches!(w.kind, ExprKind::Duration(d) if d > 0) {
                self.error_hint(
                    "`within` needs a positive duration literal",
                    w.span,
                    Some("write `within 5m`".into()),
                );
            }
        }
        if let [.., last] = p.within.as_slice() {
            if p.within.len() > 1 {
                self.warn(
                    "several `within` clauses: the last one bounds the whole pattern",
                    last.span,
                );
            }
        }
        if p.within.is_empty() && trailing_not(&p.body) {
            self.error_hint(
                "a pattern that can end in `NOT` needs `within`: the absence is confirmed at the deadline",
                p.body.span,
                Some("add `within 5m` after the pattern".into()),
            );
        }
    }

    /// An item's filter may read its own capture: the candidate (`Tx as t where t.v > 1`), or
    /// for a Kleene item the previously collected event (`all B where v > b.v as b`).
    fn is_own_capture(&self, item: &PatternItem, name: &str) -> bool {
        item.capture().name == name
    }

    /// Where `NOT` may stand: inside a sequence, never alone, without quantifier or alias.
    fn check_pattern_shape(&mut self, p: &'a PatternExpr, top: bool) {
        match &p.kind {
            PatternKind::Item(_) => {}
            PatternKind::Not(item) => {
                if top {
                    self.error_hint(
                        "a pattern cannot be only a `NOT`",
                        p.span,
                        Some("write what must happen first: `SEQ(A as a, NOT B)`".into()),
                    );
                }
                if item.quant != Quantifier::One {
                    self.error("a `NOT` item takes no quantifier", item.span);
                }
                if let Some(alias) = &item.alias {
                    self.error_hint(
                        "a `NOT` item captures nothing",
                        alias.span,
                        Some("remove `as …`".into()),
                    );
                }
            }
            PatternKind::Seq(kids) => {
                if kids.iter().all(|k| matches!(k.kind, PatternKind::Not(_))) {
                    self.error(
                        "a sequence needs at least one item that is not `NOT`",
                        p.span,
                    );
                }
                for k in kids {
                    self.check_pattern_shape(k, false);
                }
            }
            PatternKind::And(kids) | PatternKind::Or(kids) => {
                let what = if matches!(p.kind, PatternKind::And(_)) {
                    "AND"
                } else {
                    "OR"
                };
                for k in kids {
                    if matches!(k.kind, PatternKind::Not(_)) {
                        self.error_hint(
                            format!("`NOT` is only allowed in a sequence, not in `{what}`"),
                            k.span,
                            Some("put the absence in a `SEQ(…)`".into()),
                        );
                    } else {
                        self.check_pattern_shape(k, false);
                    }
                }
            }
        }
        if let PatternKind::Seq(kids) = &p.kind {
            if let Some(last) = kids.last() {
                if let PatternKind::Item(i) = &last.kind {
                    if i.quant == Quantifier::Optional && kids.len() > 1 {
                        self.warn(
                            "a trailing optional item never matches: the pattern is complete before it",
                            i.span,
                        );
                    }
                }
            }
        }
    }
}

/// Whether the pattern can end with an absence (a `NOT` followed only by optional items), so
/// that it completes at the deadline.
pub fn trailing_not(p: &PatternExpr) -> bool {
    match &p.kind {
        PatternKind::Not(_) => true,
        PatternKind::Seq(kids) => {
            for k in kids.iter().rev() {
                if trailing_not(k) {
                    return true;
                }
                if !nullable(k) {
                    return false;
                }
            }
            false
        }
        _ => false,
    }
}
