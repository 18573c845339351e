//! Patterns built from patterns: `pattern Login2 = FailedLogins -> LoginOk within 5m`, where
//! `FailedLogins` is another `pattern` declaration, reads as that pattern's body in place of the
//! item (the existing product composes patterns this way).
//!
//! An item names a pattern when its type is a declared pattern and no event type of that name is
//! declared. Such an item takes no quantifier, filter or alias (error); `NOT` of a pattern is an
//! error; a pattern using itself (directly or not) is an error at the item; the used pattern's
//! `within` / `partition by` do not apply inside the other (warning). Expansion stops with an
//! error beyond [`MAX_COMPOSED_ITEMS`] items in one pattern (nested references can double the
//! size at each level).
//!
//! A stream sequence whose source or steps name a pattern (`stream S = Takeover -> Transfer as t
//! .within(1m)`) becomes a stream reading an anonymous pattern `S#pattern` made of its steps
//! (`all T` is `T+`), expanded the same way; its `.within`, `.partition_by` and `.not` apply.

use crate::ast::*;
use crate::diagnostics::Diagnostic;
use std::collections::HashMap;

/// Most items one pattern may have once the patterns it uses are expanded.
pub const MAX_COMPOSED_ITEMS: usize = 10_000;

/// Replaces items naming other patterns by their bodies, in every pattern declaration.
pub(super) fn expand_pattern_refs(program: &mut Program, diags: &mut Vec<Diagnostic>) {
    let mut bodies: HashMap<String, PatternDecl> = HashMap::new();
    let mut events = std::collections::HashSet::new();
    for item in &program.items {
        match item {
            Item::Pattern(p) => {
                bodies
                    .entry(p.name.name.clone())
                    .or_insert_with(|| p.clone());
            }
            Item::Event(e) => {
                events.insert(e.name.name.clone());
            }
            _ => {}
        }
    }
    bodies.retain(|name, _| !events.contains(name));
    if bodies.is_empty() {
        return;
    }
    sequences_over_patterns(program, &bodies);
    for item in &mut program.items {
        if let Item::Pattern(p) = item {
            let mut x = Expander {
                bodies: &bodies,
                stack: vec![p.name.name.clone()],
                items: 0,
                diags,
                failed: false,
            };
            let body = x.expand(&p.body);
            if !x.failed {
                p.body = body;
            }
        }
    }
}

struct Expander<'a> {
    bodies: &'a HashMap<String, PatternDecl>,
    /// Patterns being expanded (cycle detection).
    stack: Vec<String>,
    items: usize,
    diags: &'a mut Vec<Diagnostic>,
    failed: bool,
}

impl Expander<'_> {
    fn error(&mut self, msg: String, span: Span) {
        self.diags.push(Diagnostic::error(msg, span));
        self.failed = true;
    }

    fn expand(&mut self, e: &PatternExpr) -> PatternExpr {
        let kind = match &e.kind {
            PatternKind::Item(item) => return self.item(item, e),
            PatternKind::Not(item) => {
                if self.bodies.contains_key(&item.event.name) {
                    let msg = format!(
                        "`NOT` needs an event type: `{}` is a pattern",
                        item.event.name
                    );
                    self.error(msg, item.event.span);
                }
                self.items += 1;
                PatternKind::Not(item.clone())
            }
            PatternKind::Seq(kids) => {
                PatternKind::Seq(kids.iter().map(|k| self.expand(k)).collect())
            }
            PatternKind::And(kids) => {
                PatternKind::And(kids.iter().map(|k| self.expand(k)).collect())
            }
            PatternKind::Or(kids) => PatternKind::Or(kids.iter().map(|k| self.expand(k)).collect()),
        };
        PatternExpr { kind, span: e.span }
    }

    fn item(&mut self, item: &PatternItem, whole: &PatternExpr) -> PatternExpr {
        self.items += 1;
        if self.items > MAX_COMPOSED_ITEMS {
            if self.items == MAX_COMPOSED_ITEMS + 1 {
                self.error(
                    format!("this pattern has more than {MAX_COMPOSED_ITEMS} items once the patterns it uses are expanded"),
                    item.span,
                );
            }
            return whole.clone();
        }
        let name = &item.event.name;
        let Some(used) = self.bodies.get(name) else {
            return whole.clone();
        };
        if self.stack.iter().any(|s| s == name) {
            let msg = format!("pattern `{name}` uses itself");
            self.error(msg, item.event.span);
            return whole.clone();
        }
        if item.quant != Quantifier::One
            || item.filter.is_some()
            || item.alias.is_some()
            || item.trend
        {
            let msg =
                format!("pattern `{name}` used as an item takes no quantifier, filter or alias");
            self.error(msg, item.span);
            return whole.clone();
        }
        if !used.within.is_empty() || used.partition_by.is_some() {
            self.diags.push(Diagnostic::warning(
                format!("the `within` / `partition by` of pattern `{name}` do not apply where it is used"),
                item.span,
            ));
        }
        self.stack.push(name.clone());
        let body = self.expand(&used.body);
        self.stack.pop();
        body
    }
}

/// Turns sequence streams that use a pattern as a step into streams over `S#pattern`.
fn sequences_over_patterns(program: &mut Program, bodies: &HashMap<String, PatternDecl>) {
    let mut i = 0;
    while i < program.items.len() {
        let Item::Stream(s) = &mut program.items[i] else {
            i += 1;
            continue;
        };
        let Some(src) = s.source.kind.event_source() else {
            i += 1;
            continue;
        };
        let first = PatternItem {
            event: src.name.clone(),
            quant: if src.all {
                Quantifier::Plus
            } else {
                Quantifier::One
            },
            filter: src.filter.cloned(),
            alias: src.alias.cloned(),
            trend: src.trend,
            span: s.source.span,
        };
        let uses_pattern = bodies.contains_key(&first.event.name)
            || s.steps.iter().any(|st| bodies.contains_key(&st.event.name));
        if s.steps.is_empty() || !uses_pattern {
            i += 1;
            continue;
        }
        let mut items = vec![PatternExpr {
            span: first.span,
            kind: PatternKind::Item(first),
        }];
        for st in std::mem::take(&mut s.steps) {
            items.push(PatternExpr {
                span: st.span,
                kind: PatternKind::Item(PatternItem {
                    event: st.event,
                    quant: if st.all {
                        Quantifier::Plus
                    } else {
                        Quantifier::One
                    },
                    filter: st.filter,
                    alias: st.alias,
                    trend: st.trend,
                    span: st.span,
                }),
            });
        }
        let span = items
            .first()
            .map(|f| f.span)
            .unwrap_or(s.source.span)
            .to(items.last().map(|l| l.span).unwrap_or(s.source.span));
        let name = Ident::new(format!("{}#pattern", s.name.name), span);
        s.source.kind = SourceKind::Named {
            name: name.clone(),
            alias: None,
            filter: None,
        };
        let decl = PatternDecl {
            name,
            body: PatternExpr {
                kind: PatternKind::Seq(items),
                span,
            },
            within: Vec::new(),
            partition_by: None,
            span,
        };
        program.items.insert(i, Item::Pattern(decl));
        i += 2;
    }
}
