//! Expressions: the Pratt parser (§11.1 precedence), primaries, calls, postfix chains, lambdas.

use super::{Bumped, Fail, PResult, Parser};
use crate::ast::*;
use crate::diagnostics::Diagnostic;
use crate::lexer::Tok;

impl Parser {
    /// Parses a full expression (lowest precedence).
    pub(super) fn expr(&mut self) -> PResult<Expr> {
        self.expr_bp(0)
    }

    pub(super) fn expr_bp(&mut self, min_bp: u8) -> PResult<Expr> {
        self.enter()?;
        let r = self.expr_bp_inner(min_bp);
        self.leave();
        r
    }

    pub(super) fn expr_bp_inner(&mut self, min_bp: u8) -> PResult<Expr> {
        // Each operator in a chain deepens the (left-nested) tree by one level; count it against
        // the depth budget so later tree walks cannot overflow the stack either.
        let outer = self.depth;
        let r = self.operator_chain(min_bp);
        self.depth = outer;
        r
    }

    pub(super) fn operator_chain(&mut self, min_bp: u8) -> PResult<Expr> {
        let mut lhs = self.prefix(min_bp)?;
        while let Some((op, lbp, rbp, width)) = self.infix_op() {
            if lbp < min_bp {
                break;
            }
            self.enter()?;
            let doubled = matches!(self.peek(), Tok::Amp | Tok::Pipe) && width == 2;
            let op_span = self.cur_span();
            for _ in 0..width {
                self.bump();
            }
            if doubled {
                let word = if matches!(op, Infix::Bin(BinaryOp::And)) {
                    "and"
                } else {
                    "or"
                };
                self.push(
                    Diagnostic::warning(
                        format!(
                            "`{}` is read as `{word}`",
                            if word == "and" { "&&" } else { "||" }
                        ),
                        op_span,
                    )
                    .with_hint(format!("VPL writes logical operators as words: `{word}`")),
                );
            }
            match op {
                Infix::Range(inclusive) => {
                    let rhs = self.expr_bp(rbp)?;
                    let span = lhs.span.to(rhs.span);
                    lhs = Expr::new(
                        ExprKind::Range {
                            start: Box::new(lhs),
                            end: Box::new(rhs),
                            inclusive,
                        },
                        span,
                    );
                    if matches!(self.infix_op(), Some((Infix::Range(_), ..))) {
                        return Err(self.error_here("ranges cannot be chained; add parentheses"));
                    }
                }
                Infix::Bin(op) => {
                    let rhs = self.expr_bp(rbp)?;
                    let span = lhs.span.to(rhs.span);
                    lhs = Expr::new(
                        ExprKind::Binary {
                            op,
                            lhs: Box::new(lhs),
                            rhs: Box::new(rhs),
                        },
                        span,
                    );
                    if is_comparison(op) {
                        if let Some((Infix::Bin(next), ..)) = self.infix_op() {
                            if is_comparison(next) {
                                let span = self.cur().span;
                                self.push(
                                    Diagnostic::error(
                                        "comparison operators cannot be chained",
                                        span,
                                    )
                                    .with_hint(
                                        "combine comparisons with `and`, e.g. `a < b and b < c`",
                                    ),
                                );
                                return Err(Fail);
                            }
                        }
                    }
                }
            }
        }
        Ok(lhs)
    }

    /// The infix operator at the cursor: (op, left bp, right bp, tokens).
    fn infix_op(&self) -> Option<(Infix, u8, u8, usize)> {
        use BinaryOp::*;
        let bin = |op, l, r| Some((Infix::Bin(op), l, r, 1));
        match self.peek() {
            Tok::DotDot => Some((Infix::Range(false), 2, 3, 1)),
            Tok::DotDotEq => Some((Infix::Range(true), 2, 3, 1)),
            Tok::QuestionQuestion => bin(Coalesce, 4, 5),
            Tok::Or => bin(Or, 6, 7),
            Tok::And => bin(And, 8, 9),
            Tok::EqEq => bin(Eq, 12, 13),
            Tok::NotEq => bin(Ne, 12, 13),
            Tok::Lt => bin(Lt, 12, 13),
            Tok::Le => bin(Le, 12, 13),
            Tok::Gt => bin(Gt, 12, 13),
            Tok::Ge => bin(Ge, 12, 13),
            Tok::In => bin(In, 12, 13),
            Tok::Not if matches!(self.peek_n(1), Tok::In) => Some((Infix::Bin(NotIn), 12, 13, 2)),
            // `&&` / `||`: accepted for `and` / `or` (with a warning), as in C-like languages.
            Tok::Pipe if matches!(self.peek_n(1), Tok::Pipe) => Some((Infix::Bin(Or), 6, 7, 2)),
            Tok::Amp if matches!(self.peek_n(1), Tok::Amp) => Some((Infix::Bin(And), 8, 9, 2)),
            Tok::Pipe => bin(BitOr, 14, 15),
            Tok::Caret => bin(BitXor, 16, 17),
            Tok::Amp => bin(BitAnd, 18, 19),
            Tok::Shl => bin(Shl, 20, 21),
            Tok::Shr => bin(Shr, 20, 21),
            Tok::Plus => bin(Add, 22, 23),
            Tok::Minus => bin(Sub, 22, 23),
            Tok::Star => bin(Mul, 24, 25),
            Tok::Slash => bin(Div, 24, 25),
            Tok::Percent => bin(Rem, 24, 25),
            // right-associative, looser than unary minus
            Tok::StarStar => bin(Pow, 26, 26),
            _ => None,
        }
    }

    pub(super) fn prefix(&mut self, min_bp: u8) -> PResult<Expr> {
        let start = self.cur().span;
        match self.peek() {
            Tok::Not => {
                self.bump();
                let operand = self.expr_bp(12)?;
                let span = start.to(operand.span);
                Ok(Expr::new(
                    ExprKind::Unary {
                        op: UnaryOp::Not,
                        operand: Box::new(operand),
                    },
                    span,
                ))
            }
            Tok::Minus | Tok::Tilde => {
                let op = if matches!(self.peek(), Tok::Minus) {
                    UnaryOp::Neg
                } else {
                    UnaryOp::BitNot
                };
                self.bump();
                let operand = self.expr_bp(28)?;
                let span = start.to(operand.span);
                Ok(Expr::new(
                    ExprKind::Unary {
                        op,
                        operand: Box::new(operand),
                    },
                    span,
                ))
            }
            Tok::Ident(_) if matches!(self.peek_n(1), Tok::FatArrow) => {
                let param = self.ident("a parameter")?;
                self.lambda_body(vec![param], start, min_bp)
            }
            Tok::LParen if self.is_lambda_params() => {
                self.bump();
                let params = self.comma_list("`)`", |p| p.ident("a parameter"))?;
                self.lambda_body(params, start, min_bp)
            }
            _ => {
                let e = self.primary()?;
                self.postfix(e)
            }
        }
    }

    pub(super) fn lambda_body(
        &mut self,
        params: Vec<Ident>,
        start: Span,
        min_bp: u8,
    ) -> PResult<Expr> {
        self.expect(&Tok::FatArrow, "`=>`")?;
        if min_bp > 0 {
            let span = self.prev_span();
            self.push(
                Diagnostic::error("a lambda must be parenthesized here", span)
                    .with_hint("write `(x => e)`"),
            );
            return Err(Fail);
        }
        let body = self.expr_bp(0)?;
        let span = start.to(body.span);
        Ok(Expr::new(
            ExprKind::Lambda {
                params,
                body: Box::new(body),
            },
            span,
        ))
    }

    /// Looks ahead for `( ident, … ) =>`.
    pub(super) fn is_lambda_params(&self) -> bool {
        let mut k = 1;
        loop {
            match self.peek_n(k) {
                Tok::RParen => return matches!(self.peek_n(k + 1), Tok::FatArrow),
                Tok::Ident(_) => {}
                _ => return false,
            }
            k += 1;
            match self.peek_n(k) {
                Tok::Comma => k += 1,
                Tok::RParen => return matches!(self.peek_n(k + 1), Tok::FatArrow),
                _ => return false,
            }
            if k > 64 {
                return false;
            }
        }
    }

    pub(super) fn primary(&mut self) -> PResult<Expr> {
        let t = Bumped {
            span: self.cur().span,
        };
        let lit = |k| Ok(Expr::new(k, t.span));
        match self.peek().clone() {
            Tok::Int(i) => {
                self.bump();
                lit(ExprKind::Int(i))
            }
            Tok::Float(f) => {
                self.bump();
                lit(ExprKind::Float(f))
            }
            Tok::Str(s) => {
                self.bump();
                lit(ExprKind::Str(s))
            }
            Tok::Duration(d) => {
                self.bump();
                lit(ExprKind::Duration(d))
            }
            Tok::Timestamp(ts) => {
                self.bump();
                lit(ExprKind::Timestamp(ts))
            }
            Tok::True => {
                self.bump();
                lit(ExprKind::Bool(true))
            }
            Tok::False => {
                self.bump();
                lit(ExprKind::Bool(false))
            }
            Tok::Null => {
                self.bump();
                lit(ExprKind::Null)
            }
            Tok::Ident(name) => {
                self.bump();
                let id = Ident::new(name, t.span);
                if matches!(self.peek(), Tok::LParen) {
                    let args = self.call_args()?;
                    let span = self.span_from(t.span);
                    Ok(Expr::new(
                        ExprKind::Call {
                            callee: id,
                            args,
                            method: false,
                        },
                        span,
                    ))
                } else {
                    Ok(Expr::new(ExprKind::Name(id), t.span))
                }
            }
            Tok::LParen => {
                self.bump();
                let inner = self.bracketed(|p| {
                    let e = p.expr()?;
                    p.expect(&Tok::RParen, "`)`")?;
                    Ok(e)
                })?;
                // Keep the parenthesized span so diagnostics cover the whole group.
                Ok(Expr::new(inner.kind, self.span_from(t.span)))
            }
            Tok::LBracket => {
                self.bump();
                let items = self.bracketed(|p| {
                    let mut items = Vec::new();
                    while !matches!(p.peek(), Tok::RBracket) {
                        items.push(p.expr()?);
                        if !p.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    p.expect(&Tok::RBracket, "`,` or `]`")?;
                    Ok(items)
                })?;
                Ok(Expr::new(ExprKind::Array(items), self.span_from(t.span)))
            }
            Tok::LBrace => {
                self.bump();
                let entries = self.bracketed(|p| {
                    let mut entries = Vec::new();
                    while !matches!(p.peek(), Tok::RBrace) {
                        let key = match p.peek().clone() {
                            Tok::Ident(k) if matches!(p.peek_n(1), Tok::Colon) => {
                                let kt = p.bump();
                                Expr::new(ExprKind::Str(k), kt.span)
                            }
                            _ => p.expr()?,
                        };
                        p.expect(&Tok::Colon, "`:` after the map key")?;
                        let value = p.expr()?;
                        entries.push(MapEntry { key, value });
                        if !p.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    p.expect(&Tok::RBrace, "`,` or `}`")?;
                    Ok(entries)
                })?;
                Ok(Expr::new(ExprKind::Map(entries), self.span_from(t.span)))
            }
            Tok::If => {
                self.bump();
                let cond = self.expr()?;
                if !self.eat(&Tok::Then) {
                    let msg = format!("expected `then`, found {}", self.found());
                    let span = self.cur_span();
                    self.push(
                        Diagnostic::error(msg, span)
                            .with_hint("conditional expressions read `if c then a else b`"),
                    );
                    return Err(Fail);
                }
                let then = self.expr()?;
                self.expect(&Tok::Else, "`else`")?;
                let else_ = self.expr()?;
                let span = self.span_from(t.span);
                Ok(Expr::new(
                    ExprKind::If {
                        cond: Box::new(cond),
                        then: Box::new(then),
                        else_: Box::new(else_),
                    },
                    span,
                ))
            }
            Tok::Is => Err(self.error_here("`is` is reserved; use `==`")),
            _ => {
                let msg = format!("expected an expression, found {}", self.found());
                Err(self.error_here(msg))
            }
        }
    }

    pub(super) fn call_args(&mut self) -> PResult<Vec<Expr>> {
        self.expect(&Tok::LParen, "`(`")?;
        self.bracketed(|p| {
            p.comma_list("`,` or `)`", |p| {
                if p.peek().word().is_some() && matches!(p.peek_n(1), Tok::Colon) {
                    let span = p.cur().span;
                    p.push(
                        Diagnostic::error("function calls take positional arguments only", span)
                            .with_hint("remove the `name:` prefix"),
                    );
                    return Err(Fail);
                }
                p.expr()
            })
        })
    }

    pub(super) fn postfix(&mut self, e: Expr) -> PResult<Expr> {
        let outer = self.depth;
        let r = self.postfix_chain(e);
        self.depth = outer;
        r
    }

    pub(super) fn postfix_chain(&mut self, mut e: Expr) -> PResult<Expr> {
        let start = e.span;
        loop {
            if matches!(self.peek(), Tok::Dot | Tok::QuestionDot | Tok::LBracket) {
                self.enter()?;
            }
            match self.peek() {
                Tok::Dot | Tok::QuestionDot => {
                    let optional = matches!(self.peek(), Tok::QuestionDot);
                    let is_call =
                        self.peek_n(1).word().is_some() && matches!(self.peek_n(2), Tok::LParen);
                    if is_call && self.stop_at_chain_op && !optional {
                        break; // `.name(` at chain level starts a stream operator
                    }
                    self.bump();
                    let name = self.any_word("a field name after `.`")?;
                    if is_call {
                        if optional {
                            let span = name.span;
                            self.push(
                                Diagnostic::error("`?.` cannot call a function", span)
                                    .with_hint("use `.` for method calls"),
                            );
                            return Err(Fail);
                        }
                        let mut args = vec![e];
                        args.extend(self.call_args()?);
                        e = Expr::new(
                            ExprKind::Call {
                                callee: name,
                                args,
                                method: true,
                            },
                            self.span_from(start),
                        );
                    } else {
                        e = Expr::new(
                            ExprKind::Field {
                                base: Box::new(e),
                                name,
                                optional,
                            },
                            self.span_from(start),
                        );
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    e = self.bracketed(|p| p.index_or_slice(e, start))?;
                }
                Tok::LParen => {
                    let span = self.cur().span;
                    self.push(
                        Diagnostic::error("only named functions can be called", span)
                            .with_hint("call a function by name, e.g. `f(x)`"),
                    );
                    return Err(Fail);
                }
                _ => break,
            }
        }
        Ok(e)
    }

    /// After `[`: `i]`, `a:b]`, `:b]`, `a:]` or `:]`.
    pub(super) fn index_or_slice(&mut self, base: Expr, start: Span) -> PResult<Expr> {
        let first = if matches!(self.peek(), Tok::Colon) {
            None
        } else {
            Some(self.expr()?)
        };
        if self.eat(&Tok::Colon) {
            let end = if matches!(self.peek(), Tok::RBracket) {
                None
            } else {
                Some(Box::new(self.expr()?))
            };
            self.expect(&Tok::RBracket, "`]`")?;
            return Ok(Expr::new(
                ExprKind::Slice {
                    base: Box::new(base),
                    start: first.map(Box::new),
                    end,
                },
                self.span_from(start),
            ));
        }
        self.expect(&Tok::RBracket, "`]` or `:`")?;
        match first {
            Some(index) => Ok(Expr::new(
                ExprKind::Index {
                    base: Box::new(base),
                    index: Box::new(index),
                },
                self.span_from(start),
            )),
            None => Err(self.error_here("expected an index")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Infix {
    Bin(BinaryOp),
    Range(bool),
}

fn is_comparison(op: BinaryOp) -> bool {
    use BinaryOp::*;
    matches!(op, Eq | Ne | Lt | Le | Gt | Ge | In | NotIn)
}
