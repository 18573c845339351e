//! Streams: sources (`T as a`, `all T`, `merge(…)`, `join(…)`), `->` steps and `.op(…)` chains.

use super::{Fail, PResult, Parser};
use crate::ast::*;
use crate::diagnostics::Diagnostic;
use crate::lexer::Tok;

impl Parser {
    pub(super) fn stream_decl(&mut self) -> PResult<StreamDecl> {
        let kw = self.bump();
        let name = self.ident("a stream name")?;
        let ty = if self.eat(&Tok::Colon) {
            Some(self.type_expr()?)
        } else {
            None
        };
        self.expect(&Tok::Assign, "`=`")?;
        let source = self.source()?;
        let mut decl = StreamDecl {
            span: kw.span,
            name,
            ty,
            source,
            steps: Vec::new(),
            ops: Vec::new(),
        };
        loop {
            match self.peek() {
                Tok::Dot => {
                    let op = self.stream_op()?;
                    if op.kind() == OpKind::From
                        && decl.ops.is_empty()
                        && decl.source.from.is_none()
                    {
                        decl.source.from = Some(self.fold_from(op)?);
                    } else {
                        decl.ops.push(op);
                    }
                }
                Tok::Arrow => {
                    let step = self.seq_step()?;
                    decl.steps.push(step);
                }
                _ => break,
            }
        }
        decl.span = self.span_from(kw.span);
        Ok(decl)
    }

    pub(super) fn source(&mut self) -> PResult<Source> {
        let start = self.cur().span;
        let word = match self.peek() {
            Tok::Ident(w) => w.clone(),
            _ => {
                let msg = format!(
                    "expected a source (event type or stream name), found {}",
                    self.found()
                );
                return Err(self.error_here(msg));
            }
        };
        let next = self.peek_n(1).clone();
        match (word.as_str(), &next) {
            ("timer" | "sequence", Tok::LParen) => {
                let msg = format!("`{word}(…)` sources are not supported yet (Tier 3)");
                return Err(self.error_here(msg));
            }
            ("merge" | "join", Tok::LParen) => {
                self.bump();
                let inputs = self.sub_streams()?;
                let kind = if word == "merge" {
                    SourceKind::Merge(inputs)
                } else {
                    SourceKind::Join(inputs)
                };
                return Ok(Source {
                    kind,
                    from: None,
                    span: self.span_from(start),
                });
            }
            ("all", Tok::Ident(_)) => {
                self.bump();
                let name = self.ident("an event type after `all`")?;
                let alias = if self.eat_word("as") {
                    Some(self.ident("an alias name")?)
                } else {
                    None
                };
                return Ok(Source {
                    kind: SourceKind::All { name, alias },
                    from: None,
                    span: self.span_from(start),
                });
            }
            _ => {}
        }
        let name = self.ident("a source")?;
        let alias = if self.eat_word("as") {
            Some(self.ident("an alias name")?)
        } else {
            None
        };
        Ok(Source {
            kind: SourceKind::Named { name, alias },
            from: None,
            span: self.span_from(start),
        })
    }

    /// `( input, … )` of `merge`/`join`, each `A` or `stream S = A .op(…) …`.
    pub(super) fn sub_streams(&mut self) -> PResult<Vec<SubStream>> {
        self.expect(&Tok::LParen, "`(`")?;
        self.bracketed(|p| {
            let mut inputs = Vec::new();
            while !matches!(p.peek(), Tok::RParen) {
                let start = p.cur().span;
                let name = if p.is_word("stream") && matches!(p.peek_n(1), Tok::Ident(_)) {
                    p.bump();
                    let n = p.ident("a stream name")?;
                    p.expect(&Tok::Assign, "`=`")?;
                    Some(n)
                } else {
                    None
                };
                let source = p.ident("an event type or stream name")?;
                let mut ops = Vec::new();
                while matches!(p.peek(), Tok::Dot) {
                    ops.push(p.stream_op()?);
                }
                inputs.push(SubStream {
                    name,
                    source,
                    ops,
                    span: p.span_from(start),
                });
                if !p.eat(&Tok::Comma) {
                    break;
                }
            }
            p.expect(&Tok::RParen, "`,` or `)`")?;
            Ok(inputs)
        })
    }

    pub(super) fn fold_from(&mut self, op: StreamOp) -> PResult<FromClause> {
        let mut args = op.args.into_iter();
        match args.next() {
            Some(Arg {
                name: None,
                value:
                    Expr {
                        kind: ExprKind::Name(connector),
                        ..
                    },
                ..
            }) => Ok(FromClause {
                connector,
                args: args.collect(),
                span: op.span,
            }),
            _ => {
                self.push(
                    Diagnostic::error("`.from` needs a connector name first", op.span)
                        .with_hint("write `.from(MyConnector, topic: \"a/b\")`"),
                );
                Err(Fail)
            }
        }
    }

    pub(super) fn stream_op(&mut self) -> PResult<StreamOp> {
        let dot = self.bump();
        let name = self.any_word("an operator name after `.`")?;
        if name.name == "emit" && self.is_word("as") {
            return Err(self.error_here("`.emit as T(…)` is not supported yet (Tier 3)"));
        }
        if !matches!(self.peek(), Tok::LParen) {
            let msg = format!(
                "expected `(` after operator `.{}`, found {}",
                name.name,
                self.found()
            );
            return Err(self.error_here(msg));
        }
        let args = self.args()?;
        Ok(StreamOp {
            span: self.span_from(dot.span),
            name,
            args,
        })
    }

    pub(super) fn seq_step(&mut self) -> PResult<SeqStep> {
        let arrow = self.bump();
        let all = matches!(self.peek(), Tok::Ident(w) if w == "all")
            && matches!(self.peek_n(1), Tok::Ident(_));
        if all {
            self.bump();
        }
        let event = self.ident("an event type after `->`")?;
        let filter = if self.eat_word("where") {
            let saved = std::mem::replace(&mut self.stop_at_chain_op, true);
            let e = self.expr();
            self.stop_at_chain_op = saved;
            Some(e?)
        } else {
            None
        };
        let alias = if self.eat_word("as") {
            Some(self.ident("an alias name")?)
        } else {
            None
        };
        Ok(SeqStep {
            span: self.span_from(arrow.span),
            all,
            event,
            filter,
            alias,
        })
    }

    /// `( [name:] expr, … )` with an optional trailing comma.
    pub(super) fn args(&mut self) -> PResult<Vec<Arg>> {
        self.expect(&Tok::LParen, "`(`")?;
        self.bracketed(|p| {
            let mut args = Vec::new();
            while !matches!(p.peek(), Tok::RParen) {
                let start = p.cur().span;
                let name = if p.peek().word().is_some() && matches!(p.peek_n(1), Tok::Colon) {
                    let n = p.any_word("an argument name")?;
                    p.bump(); // ':'
                    Some(n)
                } else {
                    None
                };
                let mut value = p.expr()?;
                // `.not(T where c)`: an event type with a filter (Tier 2).
                if p.is_word("where") {
                    if let ExprKind::Name(event) = &value.kind {
                        let event = event.clone();
                        p.bump();
                        let filter = p.expr()?;
                        let span = value.span.to(filter.span);
                        value = Expr::new(
                            ExprKind::EventFilter {
                                event,
                                filter: Box::new(filter),
                            },
                            span,
                        );
                    }
                }
                args.push(Arg {
                    name,
                    value,
                    span: p.span_from(start),
                });
                if !p.eat(&Tok::Comma) {
                    break;
                }
            }
            if matches!(p.peek(), Tok::Assign) {
                let msg = format!("expected `,` or `)`, found {}", p.found());
                let span = p.cur_span();
                p.push(
                    Diagnostic::error(msg, span)
                        .with_hint("use `==` to compare, or `name: value` for a named argument"),
                );
                return Err(Fail);
            }
            p.expect(&Tok::RParen, "`,` or `)`")?;
            Ok(args)
        })
    }
}
