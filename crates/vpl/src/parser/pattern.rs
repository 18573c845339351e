//! `pattern Name = …` declarations (§8), in both spellings real programs use:
//!
//! * combinators: `SEQ(A as a, NOT B where id == a.id)`, `AND(A, B)`, `OR(A, B)`, nested freely;
//! * arrows: `A as a -> all B where v > a.v as b -> NOT C within 5m`.
//!
//! An item is `[all] [NOT] T[+|*|?] [where c | [c]] [as a] [within d]`; the declaration ends with
//! optional `within d` and `partition by k` (also `.within(d)` / `.partition_by(k)`), in any
//! order. Per-item `within` clauses are kept in order (the checker warns: the last one bounds the
//! whole pattern).

use super::{Fail, PResult, Parser};
use crate::ast::*;
use crate::diagnostics::Diagnostic;
use crate::lexer::Tok;

impl Parser {
    /// `pattern Name = body [within d] [partition by k]`.
    pub(super) fn pattern_decl(&mut self) -> PResult<PatternDecl> {
        let kw = self.bump();
        let name = self.ident("a pattern name")?;
        self.expect(&Tok::Assign, "`=`")?;
        let mut within = Vec::new();
        let body = self.pattern_infix(&mut within)?;
        let partition_by = self.pattern_tail(&mut within, true)?;
        Ok(PatternDecl {
            span: self.span_from(kw.span),
            name,
            body,
            within,
            partition_by,
        })
    }

    /// The clauses after a pattern body: `within d` and `partition by k` in any order, with
    /// `dotted` also `.within(d)` / `.partition_by(k)` (a stream's inline pattern leaves `.` to
    /// its operator chain). `within` durations are pushed to `within`; returns the key.
    pub(super) fn pattern_tail(
        &mut self,
        within: &mut Vec<Expr>,
        dotted: bool,
    ) -> PResult<Option<Ident>> {
        let mut partition_by = None;
        loop {
            if self.is_word("within") {
                self.bump();
                within.push(self.pattern_duration()?);
            } else if self.is_word("partition")
                && matches!(self.peek_n(1), Tok::Ident(w) if w == "by")
            {
                self.bump();
                self.bump();
                partition_by = Some(self.ident("a field name after `partition by`")?);
            } else if dotted
                && matches!(self.peek(), Tok::Dot)
                && matches!(self.peek_n(1), Tok::Ident(w) if w == "within" || w == "partition_by")
            {
                self.bump();
                let word = self.ident("`within` or `partition_by`")?;
                self.expect(&Tok::LParen, "`(`")?;
                if word.name == "within" {
                    let d = self.bracketed(|p| p.expr())?;
                    within.push(d);
                } else {
                    partition_by = Some(self.bracketed(|p| p.ident("a field name"))?);
                }
                self.expect(&Tok::RParen, "`)`")?;
            } else {
                return Ok(partition_by);
            }
        }
    }

    /// `seq (AND seq)* (OR …)*`: infix `AND` / `OR` between sequences (`(A -> B) AND C`), `AND`
    /// binding tighter than `OR` and `->` tighter than both.
    pub(super) fn pattern_infix(&mut self, within: &mut Vec<Expr>) -> PResult<PatternExpr> {
        self.enter()?;
        let r = self.pattern_or(within);
        self.leave();
        r
    }

    fn pattern_or(&mut self, within: &mut Vec<Expr>) -> PResult<PatternExpr> {
        let first = self.pattern_and(within)?;
        if !self.is_word("OR") {
            return Ok(first);
        }
        let start = first.span;
        let mut kids = vec![first];
        while self.eat_word("OR") {
            kids.push(self.pattern_and(within)?);
        }
        Ok(PatternExpr {
            kind: PatternKind::Or(kids),
            span: self.span_from(start),
        })
    }

    fn pattern_and(&mut self, within: &mut Vec<Expr>) -> PResult<PatternExpr> {
        let first = self.pattern_arrows(within)?;
        if !self.is_word("AND") {
            return Ok(first);
        }
        let start = first.span;
        let mut kids = vec![first];
        while self.eat_word("AND") {
            kids.push(self.pattern_arrows(within)?);
        }
        Ok(PatternExpr {
            kind: PatternKind::And(kids),
            span: self.span_from(start),
        })
    }

    /// Whether the stream source at the cursor is written with pattern syntax: an item with a
    /// quantifier (`A+`, `B*`, `C?`) or a bracket filter (`A[x > 1]`), `NOT`, `AND`, `OR`, `SEQ`
    /// or a parenthesised group at an item position.
    pub(super) fn inline_pattern_ahead(&self) -> bool {
        let mut k = 0;
        let mut depth = 0i32;
        let mut item_pos = true;
        while k < 2_000 {
            let t = self.peek_n(k);
            match t {
                Tok::Eof => return false,
                Tok::LParen | Tok::LBracket | Tok::LBrace => {
                    if depth == 0 && item_pos && matches!(t, Tok::LParen) {
                        return true;
                    }
                    depth += 1;
                    item_pos = false;
                }
                Tok::RParen | Tok::RBracket | Tok::RBrace => {
                    depth -= 1;
                    if depth < 0 {
                        return false;
                    }
                }
                Tok::Dot
                    if depth == 0
                        && matches!(self.peek_n(k + 1), Tok::Ident(_))
                        && matches!(self.peek_n(k + 2), Tok::LParen) =>
                {
                    return false;
                }
                Tok::Arrow if depth == 0 => {
                    item_pos = true;
                    k += 1;
                    continue;
                }
                Tok::Not if depth == 0 && item_pos => return true,
                Tok::Ident(w) if depth == 0 && item_pos => {
                    if w == "all" && matches!(self.peek_n(k + 1), Tok::Ident(_)) {
                        k += 1;
                        continue;
                    }
                    if matches!(w.as_str(), "NOT" | "AND" | "OR" | "SEQ") {
                        return true;
                    }
                    match self.peek_n(k + 1) {
                        Tok::LBracket => return true,
                        Tok::Plus | Tok::Star | Tok::Question => {
                            let after = self.peek_n(k + 2);
                            let ends = match after {
                                Tok::Arrow | Tok::Comma | Tok::RParen | Tok::Eof | Tok::Dot => true,
                                Tok::Ident(x) => matches!(x.as_str(), "as" | "where" | "within"),
                                _ => false,
                            };
                            if ends {
                                return true;
                            }
                        }
                        _ => {}
                    }
                    item_pos = false;
                }
                Tok::Ident(w) if depth == 0 && (w == "AND" || w == "OR") => return true,
                _ => {
                    if depth == 0 {
                        item_pos = false;
                    }
                }
            }
            k += 1;
        }
        false
    }

    /// `unit (-> unit)*`: one unit, or a sequence of them.
    fn pattern_arrows(&mut self, within: &mut Vec<Expr>) -> PResult<PatternExpr> {
        self.enter()?;
        let r = self.pattern_arrows_inner(within);
        self.leave();
        r
    }

    fn pattern_arrows_inner(&mut self, within: &mut Vec<Expr>) -> PResult<PatternExpr> {
        let first = self.pattern_unit(within)?;
        if !matches!(self.peek(), Tok::Arrow) {
            return Ok(first);
        }
        let start = first.span;
        let mut kids = vec![first];
        while self.eat(&Tok::Arrow) {
            kids.push(self.pattern_unit(within)?);
        }
        Ok(PatternExpr {
            kind: PatternKind::Seq(kids),
            span: self.span_from(start),
        })
    }

    /// `SEQ(…)`, `AND(…)`, `OR(…)`, `( … )`, `NOT item`, `all item` or an item.
    fn pattern_unit(&mut self, within: &mut Vec<Expr>) -> PResult<PatternExpr> {
        let start = self.cur().span;
        let combinator = match self.peek() {
            Tok::Ident(w) if matches!(self.peek_n(1), Tok::LParen) => match w.as_str() {
                "SEQ" => Some(0),
                "AND" => Some(1),
                "OR" => Some(2),
                _ => None,
            },
            _ => None,
        };
        if let Some(which) = combinator {
            self.bump();
            self.bump();
            let kids =
                self.bracketed(|p| p.comma_list("`,` or `)`", |p| p.pattern_infix(within)))?;
            if kids.is_empty() {
                self.push(Diagnostic::error(
                    "a pattern combinator needs at least one item",
                    self.span_from(start),
                ));
                return Err(Fail);
            }
            let kind = match which {
                0 => PatternKind::Seq(kids),
                1 => PatternKind::And(kids),
                _ => PatternKind::Or(kids),
            };
            return Ok(PatternExpr {
                kind,
                span: self.span_from(start),
            });
        }
        let negated = matches!(self.peek(), Tok::Not) || self.is_word("NOT");
        if negated {
            self.bump();
            let parens = self.eat(&Tok::LParen);
            let item = if parens {
                let item = self.bracketed(|p| p.pattern_item(false, within))?;
                self.expect(&Tok::RParen, "`)`")?;
                // `NOT(B) where …` / `NOT(B) as …`: the clauses may follow the parentheses.
                self.pattern_item_tail(item, within)?
            } else {
                self.pattern_item(false, within)?
            };
            return Ok(PatternExpr {
                kind: PatternKind::Not(item),
                span: self.span_from(start),
            });
        }
        if matches!(self.peek(), Tok::LParen) {
            self.bump();
            let inner = self.bracketed(|p| {
                let e = p.pattern_infix(within)?;
                p.expect(&Tok::RParen, "`)`")?;
                Ok(e)
            })?;
            return Ok(inner);
        }
        let all = self.is_word("all") && matches!(self.peek_n(1), Tok::Ident(_));
        if all {
            self.bump();
        }
        let item = self.pattern_item(all, within)?;
        Ok(PatternExpr {
            span: item.span,
            kind: PatternKind::Item(item),
        })
    }

    /// `T[+|*|?] [where c | [c]] [as a] [within d]`.
    fn pattern_item(&mut self, all: bool, within: &mut Vec<Expr>) -> PResult<PatternItem> {
        let start = self.cur().span;
        if all && self.is_word("NOT") {
            return Err(self.error_here("`all` and `NOT` cannot be combined"));
        }
        let event = self.ident("an event type in the pattern")?;
        let item = PatternItem {
            event,
            quant: if all {
                Quantifier::Plus
            } else {
                Quantifier::One
            },
            filter: None,
            alias: None,
            trend: false,
            span: start,
        };
        self.pattern_item_tail(item, within)
    }

    /// The clauses after an item's type: `[c]`, quantifier, `where`, `as`, `within`.
    fn pattern_item_tail(
        &mut self,
        mut item: PatternItem,
        within: &mut Vec<Expr>,
    ) -> PResult<PatternItem> {
        let start = item.span;
        if matches!(self.peek(), Tok::LBracket) && item.filter.is_none() {
            self.bump();
            let f = self.bracketed(|p| {
                let e = p.expr()?;
                p.expect(&Tok::RBracket, "`]`")?;
                Ok(e)
            })?;
            item.filter = Some(f);
        }
        let quant = match self.peek() {
            Tok::Plus => Some(Quantifier::Plus),
            Tok::Star => Some(Quantifier::Star),
            Tok::Question => Some(Quantifier::Optional),
            _ => None,
        };
        if let Some(q) = quant {
            let span = self.bump().span;
            if item.quant != Quantifier::One {
                self.push(Diagnostic::error(
                    "an item takes one quantifier (`all` is `+`)",
                    span,
                ));
                return Err(Fail);
            }
            item.quant = q;
        }
        let kleene = matches!(item.quant, Quantifier::Plus | Quantifier::Star);
        let trend = if kleene { self.trend_call()? } else { None };
        loop {
            if self.is_word("where") && item.filter.is_none() {
                self.bump();
                item.filter = Some(self.expr()?);
            } else if self.is_word("as") && item.alias.is_none() {
                self.bump();
                item.alias = Some(self.ident("an alias name")?);
            } else if self.is_word("within") && matches!(self.peek_n(1), Tok::Duration(_)) {
                self.bump();
                within.push(self.pattern_duration()?);
            } else {
                break;
            }
        }
        if trend.is_some() {
            item.trend = true;
            let own = item.capture().clone();
            item.filter = super::stream::with_trend(item.filter.take(), trend, &own);
        }
        item.span = self.span_from(start);
        Ok(item)
    }

    /// The duration after `within` (an expression; the checker wants a duration literal).
    pub(super) fn pattern_duration(&mut self) -> PResult<Expr> {
        if matches!(self.peek(), Tok::LParen) {
            self.bump();
            let e = self.bracketed(|p| p.expr())?;
            self.expect(&Tok::RParen, "`)`")?;
            return Ok(e);
        }
        // `within 5m .emit()`: `.emit(` starts a stream operator, it is no method call on `5m`.
        let saved = std::mem::replace(&mut self.stop_at_chain_op, true);
        let e = self.expr_bp(30);
        self.stop_at_chain_op = saved;
        e
    }
}
