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
        let mut decl = if self.inline_pattern_ahead() {
            // `stream S = A+ -> NOT B …`: pattern syntax; the stream reads an anonymous pattern
            // (`S#pattern`) declared with it.
            let start = self.cur().span;
            let saved = std::mem::replace(&mut self.stop_at_chain_op, true);
            let mut within = Vec::new();
            let body = self.pattern_infix(&mut within);
            self.stop_at_chain_op = saved;
            let body = body?;
            // `within d` / `partition by k` after the pattern, as in a `pattern` declaration.
            let partition_by = self.pattern_tail(&mut within, false)?;
            let span = self.span_from(start);
            let pname = Ident::new(format!("{}#pattern", name.name), span);
            self.extra_items.push(Item::Pattern(PatternDecl {
                name: pname.clone(),
                body,
                within,
                partition_by,
                span,
            }));
            StreamDecl {
                span: kw.span,
                name,
                ty,
                source: Source {
                    kind: SourceKind::Named {
                        name: pname,
                        alias: None,
                        filter: None,
                    },
                    from: None,
                    span,
                },
                steps: Vec::new(),
                ops: Vec::new(),
            }
        } else if self.is_word("sequence") && matches!(self.peek_n(1), Tok::LParen) {
            let (source, steps, ops) = self.sequence_source()?;
            StreamDecl {
                span: kw.span,
                name,
                ty,
                source,
                steps,
                ops,
            }
        } else {
            let source = self.source()?;
            StreamDecl {
                span: kw.span,
                name,
                ty,
                source,
                steps: Vec::new(),
                ops: Vec::new(),
            }
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
                // `A as a -> B as b within 5m partition by k`: the pattern-declaration spelling
                // of `.within(5m)` / `.partition_by(k)` after sequence steps.
                Tok::Ident(w) if w == "within" && !decl.steps.is_empty() => {
                    let kw = self.bump();
                    let d = self.pattern_duration()?;
                    decl.ops.push(keyword_op("within", kw.span, d));
                }
                Tok::Ident(w)
                    if w == "partition"
                        && !decl.steps.is_empty()
                        && matches!(self.peek_n(1), Tok::Ident(b) if b == "by") =>
                {
                    let kw = self.bump();
                    self.bump();
                    let key = self.ident("a field name after `partition by`")?;
                    let e = Expr::new(ExprKind::Name(key.clone()), key.span);
                    decl.ops.push(keyword_op("partition_by", kw.span, e));
                }
                _ => break,
            }
        }
        // An inline pattern's `.within(d)` bounds the pattern (as `within d` would).
        if let Some(Item::Pattern(p)) = self.extra_items.last_mut() {
            if let SourceKind::Named { name, .. } = &decl.source.kind {
                if name.name == p.name.name {
                    decl.ops.retain(|op| {
                        if op.kind() != OpKind::Within {
                            return true;
                        }
                        match op.first_positional() {
                            Some(d) => {
                                p.within.push(d.clone());
                                false
                            }
                            None => true,
                        }
                    });
                }
            }
        }
        if decl.steps.is_empty() {
            // `T where c [as a]` without steps: the filter is the stream's first `.where(c)`.
            if let SourceKind::Named { filter, .. } = &mut decl.source.kind {
                if let Some(cond) = filter.take() {
                    let span = cond.span;
                    decl.ops.insert(
                        0,
                        StreamOp {
                            name: Ident::new("where", span),
                            args: vec![Arg {
                                name: None,
                                span,
                                value: *cond,
                            }],
                            emit_type: None,
                            unparsed: false,
                            span,
                        },
                    );
                }
            }
        }
        decl.span = self.span_from(kw.span);
        Ok(decl)
    }

    /// `sequence(a: A, b: B where c .within(d), …)`: the explicit spelling of
    /// `A as a -> B where c as b … .within(d)` (Tier 3); returns the source, the steps and the
    /// `.within` operators written on items.
    fn sequence_source(&mut self) -> PResult<(Source, Vec<SeqStep>, Vec<StreamOp>)> {
        let start = self.cur().span;
        self.bump();
        self.bump();
        let items = self.bracketed(|p| {
            p.comma_list("`,` or `)`", |p| {
                let item_start = p.cur().span;
                let alias = p.ident("a step name (`name: EventType`)")?;
                p.expect(&Tok::Colon, "`:` after the step name")?;
                let all = p.is_word("all") && matches!(p.peek_n(1), Tok::Ident(_));
                if all {
                    p.bump();
                }
                let event = p.ident("an event type")?;
                let filter = p.where_before_chain()?;
                let trend = false;
                let mut ops = Vec::new();
                while matches!(p.peek(), Tok::Dot) {
                    ops.push(p.stream_op()?);
                }
                Ok((
                    SeqStep {
                        all,
                        event,
                        filter,
                        trend,
                        alias: Some(alias),
                        span: p.span_from(item_start),
                    },
                    ops,
                ))
            })
        })?;
        let span = self.span_from(start);
        let mut steps = Vec::new();
        let mut ops = Vec::new();
        let mut source = None;
        for (step, step_ops) in items {
            if source.is_none() {
                let filter = step.filter.map(Box::new);
                let kind = if step.all {
                    SourceKind::All {
                        name: step.event,
                        alias: step.alias,
                        filter,
                        trend: step.trend,
                    }
                } else {
                    SourceKind::Named {
                        name: step.event,
                        alias: step.alias,
                        filter,
                    }
                };
                source = Some(Source {
                    kind,
                    from: None,
                    span: step.span,
                });
            } else {
                steps.push(step);
            }
            ops.extend(step_ops);
        }
        let Some(mut source) = source else {
            self.push(Diagnostic::error(
                "a sequence needs at least one step",
                span,
            ));
            return Err(Fail);
        };
        source.span = span;
        Ok((source, steps, ops))
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
            ("timer", Tok::LParen) => {
                self.bump();
                let args = self.args()?;
                return Ok(Source {
                    kind: SourceKind::Timer(args),
                    from: None,
                    span: self.span_from(start),
                });
            }
            ("left_join" | "right_join" | "full_join", Tok::LParen) => {
                // The existing product's outer joins: a join whose preserved inputs also
                // produce an output without partners.
                self.bump();
                let kind = match word.as_str() {
                    "left_join" => JoinKind::Left,
                    "right_join" => JoinKind::Right,
                    _ => JoinKind::Full,
                };
                let inputs = self.sub_streams()?;
                return Ok(Source {
                    kind: SourceKind::Join(inputs, kind),
                    from: None,
                    span: self.span_from(start),
                });
            }
            ("merge" | "join", Tok::LParen) => {
                self.bump();
                let inputs = self.sub_streams()?;
                let kind = if word == "merge" {
                    SourceKind::Merge(inputs)
                } else {
                    SourceKind::Join(inputs, JoinKind::Inner)
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
                let trend = self.trend_call()?;
                let (filter, alias) = self.step_filter_alias()?;
                let trend_used = trend.is_some();
                let filter = with_trend(filter, trend, alias.as_ref().unwrap_or(&name));
                return Ok(Source {
                    kind: SourceKind::All {
                        name,
                        alias,
                        filter: filter.map(Box::new),
                        trend: trend_used,
                    },
                    from: None,
                    span: self.span_from(start),
                });
            }
            _ => {}
        }
        let name = self.ident("a source")?;
        let (filter, alias) = self.step_filter_alias()?;
        Ok(Source {
            kind: SourceKind::Named {
                name,
                alias,
                filter: filter.map(Box::new),
            },
            from: None,
            span: self.span_from(start),
        })
    }

    /// `.increasing(f)` / `.decreasing(f)` right after a Kleene step's event type: the field and
    /// whether it rises.
    pub(super) fn trend_call(&mut self) -> PResult<Option<(Expr, bool)>> {
        let rising = match (self.peek(), self.peek_n(1), self.peek_n(2)) {
            (Tok::Dot, Tok::Ident(w), Tok::LParen) if w == "increasing" => true,
            (Tok::Dot, Tok::Ident(w), Tok::LParen) if w == "decreasing" => false,
            _ => return Ok(None),
        };
        self.bump();
        let name = self.bump();
        let args = self.args()?;
        match args.as_slice() {
            [Arg {
                name: None, value, ..
            }] if matches!(value.kind, ExprKind::Name(_)) => Ok(Some((value.clone(), rising))),
            _ => {
                let span = name.span;
                self.push(
                    Diagnostic::error(
                        format!(
                            "`.{}` expects one field name",
                            if rising { "increasing" } else { "decreasing" }
                        ),
                        span,
                    )
                    .with_hint("write `all Reading.increasing(temperature) as up`"),
                );
                Err(Fail)
            }
        }
    }

    /// `[where c]` whose condition ends before a `.op(…)` of the operator chain.
    fn where_before_chain(&mut self) -> PResult<Option<Expr>> {
        if !self.eat_word("where") {
            return Ok(None);
        }
        let saved = std::mem::replace(&mut self.stop_at_chain_op, true);
        let e = self.expr();
        self.stop_at_chain_op = saved;
        e.map(Some)
    }

    /// `[where c] [as a]` after a source or step's event type (`as a where c` is accepted too,
    /// as the existing product does).
    fn step_filter_alias(&mut self) -> PResult<(Option<Expr>, Option<Ident>)> {
        let mut alias = if self.eat_word("as") {
            Some(self.ident("an alias name")?)
        } else {
            None
        };
        let filter = self.where_before_chain()?;
        if alias.is_none() && self.eat_word("as") {
            alias = Some(self.ident("an alias name")?);
        }
        Ok((filter, alias))
    }

    /// `( input, … )` of `merge`/`join`, each `A` or `stream S = A .op(…) …`.
    pub(super) fn sub_streams(&mut self) -> PResult<Vec<SubStream>> {
        self.expect(&Tok::LParen, "`(`")?;
        self.bracketed(|p| {
            p.comma_list("`,` or `)`", |p| {
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
                loop {
                    if matches!(p.peek(), Tok::Dot) {
                        ops.push(p.stream_op()?);
                    } else if p.is_word("on") {
                        // `stream C = Customer on O.id == C.order_id`: the existing product's
                        // spelling of `.on(…)` inside a join input.
                        let kw = p.bump();
                        let cond = p.expr()?;
                        let span = kw.span.to(cond.span);
                        ops.push(StreamOp {
                            name: Ident::new("on", kw.span),
                            args: vec![Arg {
                                name: None,
                                span: cond.span,
                                value: cond,
                            }],
                            emit_type: None,
                            unparsed: false,
                            span,
                        });
                    } else {
                        break;
                    }
                }
                Ok(SubStream {
                    name,
                    source,
                    ops,
                    span: p.span_from(start),
                })
            })
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
        let mut emit_type = None;
        if name.name == "emit" && self.eat_word("as") {
            emit_type = Some(self.ident("the output event type after `.emit as`")?);
            if !matches!(self.peek(), Tok::LParen) {
                // `.emit as T` without arguments copies every field, like `.emit()`.
                return Ok(StreamOp {
                    span: self.span_from(dot.span),
                    name,
                    args: Vec::new(),
                    emit_type,
                    unparsed: false,
                });
            }
        }
        if !matches!(self.peek(), Tok::LParen) {
            let msg = format!(
                "expected `(` after operator `.{}`, found {}",
                name.name,
                self.found()
            );
            return Err(self.error_here(msg));
        }
        // A known operator's arguments must parse. An operator the language does not have
        // (`.order_by(price desc)`, `.fork(…)`): its arguments may not even be expressions. Keep
        // them if they parse; otherwise skip to the closing parenthesis, so the checker reports
        // the unknown operator, not a syntax error.
        let kind = OpKind::from_name(&name.name);
        let (at, n_diags) = (self.pos, self.diags.len());
        let parsed = if kind != OpKind::Other {
            Some(self.args()?)
        } else {
            self.args().ok()
        };
        if let Some(mut args) = parsed {
            if kind == OpKind::Aggregate {
                name_aggregates(&mut args);
            }
            return Ok(StreamOp {
                span: self.span_from(dot.span),
                name,
                args,
                emit_type,
                unparsed: false,
            });
        }
        self.diags.truncate(n_diags);
        self.pos = at;
        self.skip_parens()?;
        Ok(StreamOp {
            span: self.span_from(dot.span),
            name,
            args: Vec::new(),
            emit_type,
            unparsed: true,
        })
    }

    /// Skips a balanced `( … )` group at the cursor.
    fn skip_parens(&mut self) -> PResult<()> {
        let open = self.cur().span;
        let mut depth = 0usize;
        loop {
            match self.raw(self.pos).kind {
                Tok::LParen | Tok::LBracket | Tok::LBrace => depth += 1,
                Tok::RParen | Tok::RBracket | Tok::RBrace => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.bump();
                        return Ok(());
                    }
                }
                Tok::Eof => {
                    self.push(Diagnostic::error("unclosed `(`", open));
                    return Err(Fail);
                }
                _ => {}
            }
            self.bump();
        }
    }

    pub(super) fn seq_step(&mut self) -> PResult<SeqStep> {
        let arrow = self.bump();
        let all = matches!(self.peek(), Tok::Ident(w) if w == "all")
            && matches!(self.peek_n(1), Tok::Ident(_));
        if all {
            self.bump();
        }
        let event = self.ident("an event type after `->`")?;
        let trend = if all { self.trend_call()? } else { None };
        let (filter, alias) = self.step_filter_alias()?;
        let trend_used = trend.is_some();
        let filter = with_trend(filter, trend, alias.as_ref().unwrap_or(&event));
        Ok(SeqStep {
            span: self.span_from(arrow.span),
            all,
            event,
            filter,
            alias,
            trend: trend_used,
        })
    }

    /// `( [name:] expr, … )` with an optional trailing comma.
    pub(super) fn args(&mut self) -> PResult<Vec<Arg>> {
        self.expect(&Tok::LParen, "`(`")?;
        self.bracketed(|p| {
            let args = p.comma_items(|p| {
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
                Ok(Arg {
                    name,
                    value,
                    span: p.span_from(start),
                })
            })?;
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

/// Adds `.increasing(f)` / `.decreasing(f)` to a Kleene step's filter as `f > own.f` /
/// `f < own.f` (its own capture is the event it collected last).
pub(super) fn with_trend(
    filter: Option<Expr>,
    trend: Option<(Expr, bool)>,
    own: &Ident,
) -> Option<Expr> {
    let Some((field, rising)) = trend else {
        return filter;
    };
    let ExprKind::Name(f) = &field.kind else {
        return filter;
    };
    let span = field.span;
    let previous = Expr::new(
        ExprKind::Field {
            base: Box::new(Expr::new(ExprKind::Name(own.clone()), span)),
            name: f.clone(),
            optional: false,
        },
        span,
    );
    let cmp = Expr::new(
        ExprKind::Binary {
            op: if rising { BinaryOp::Gt } else { BinaryOp::Lt },
            lhs: Box::new(field.clone()),
            rhs: Box::new(previous),
        },
        span,
    );
    Some(match filter {
        None => cmp,
        Some(c) => {
            let span = c.span;
            Expr::new(
                ExprKind::Binary {
                    op: BinaryOp::And,
                    lhs: Box::new(cmp),
                    rhs: Box::new(c),
                },
                span,
            )
        }
    })
}

/// `.aggregate(sum(volume), count())` (the existing product's unnamed aggregates): each call gets
/// a field name from its function and a bare-field first argument, `sum_volume`, `count`
/// (`count(distinct(x))`: `count_distinct_x`). The name's span is the call's, so the checker can
/// tell it was not written.
fn name_aggregates(args: &mut [Arg]) {
    fn derive(e: &Expr) -> Option<String> {
        match &e.kind {
            ExprKind::Name(id) => Some(id.name.clone()),
            ExprKind::Call { callee, args, .. } => match args.first() {
                None => Some(callee.name.clone()),
                Some(a) => Some(format!("{}_{}", callee.name, derive(a)?)),
            },
            _ => None,
        }
    }
    for a in args.iter_mut().filter(|a| a.name.is_none()) {
        if matches!(a.value.kind, ExprKind::Call { .. }) {
            if let Some(n) = derive(&a.value) {
                a.name = Some(Ident::new(n, a.value.span));
            }
        }
    }
}

/// A stream operator written as a keyword clause (`within 5m`, `partition by k`).
fn keyword_op(name: &str, kw: Span, value: Expr) -> StreamOp {
    let span = kw.to(value.span);
    StreamOp {
        name: Ident::new(name, kw),
        args: vec![Arg {
            name: None,
            span: value.span,
            value,
        }],
        emit_type: None,
        unparsed: false,
        span,
    }
}
