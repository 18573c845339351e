//! Blocks and statements: the layout rule (fences), `if/elif/else`, loops, `emit`, `return`.

use super::{Fail, PResult, Parser};
use crate::ast::*;
use crate::diagnostics::Diagnostic;
use crate::lexer::Tok;

impl Parser {
    pub(super) fn block(&mut self, opener_col: u32) -> PResult<Block> {
        let start = self.cur().span;
        let mut stmts = Vec::new();
        let ok = self.block_with(opener_col, |p| {
            let s = p.stmt()?;
            stmts.push(s);
            Ok(())
        });
        if !ok {
            return Err(Fail);
        }
        Ok(Block {
            stmts,
            span: self.span_from(start),
        })
    }

    /// Parses the indented lines after an opener in column `opener_col`, calling `line` once per
    /// line. Returns false when no block was found at all.
    pub(super) fn block_with(
        &mut self,
        opener_col: u32,
        mut line: impl FnMut(&mut Self) -> PResult<()>,
    ) -> bool {
        let first = self.cur().clone();
        if matches!(first.kind, Tok::Eof) || !first.line_start || first.span.column <= opener_col {
            let span = if first.line_start || matches!(first.kind, Tok::Eof) {
                self.prev_span()
            } else {
                first.span
            };
            let msg = if first.line_start || matches!(first.kind, Tok::Eof) {
                "expected an indented block after `:`".to_string()
            } else {
                format!(
                    "expected a new line after `:`, found {}",
                    first.kind.describe()
                )
            };
            self.push(
                Diagnostic::error(msg, span)
                    .with_hint("put the body on the following lines, indented deeper"),
            );
            return false;
        }
        if self.enter().is_err() {
            self.skip_block(opener_col);
            return false;
        }
        let body_col = first.span.column;
        let saved_fence = self.fence.replace(body_col);
        let saved_stop = std::mem::replace(&mut self.stop_at_chain_op, false);
        loop {
            let t = self.cur();
            if matches!(t.kind, Tok::Eof) {
                break;
            }
            let col = t.span.column;
            if t.line_start && col <= opener_col {
                break;
            }
            if t.line_start && col != body_col {
                let span = t.span;
                self.push(
                    Diagnostic::error(
                        format!("inconsistent indentation: expected column {body_col}, found column {col}"),
                        span,
                    )
                    .with_hint("indent every line of a block by the same amount"),
                );
            }
            let start = self.pos;
            self.stmt_start = start;
            match line(self) {
                Ok(()) => {
                    if !self.at_end() {
                        let msg = format!("expected end of line, found {}", self.found());
                        let mut d = Diagnostic::error(msg, self.cur_span());
                        if matches!(self.peek(), Tok::Assign) {
                            d = d.with_hint(
                                "use `:=` to assign to a `var`, or `let name = …` to declare",
                            );
                        }
                        self.push(d);
                        self.sync_line(start);
                    }
                }
                Err(Fail) => self.sync_line(start),
            }
            if self.pos == start {
                self.bump();
                self.sync_line(start);
            }
        }
        self.fence = saved_fence;
        self.stop_at_chain_op = saved_stop;
        self.leave();
        true
    }

    /// Skips the rest of the current block line (to the next token at or left of the fence).
    pub(super) fn sync_line(&mut self, start: usize) {
        self.stmt_start = start;
        while !(matches!(self.cur().kind, Tok::Eof) || (self.pos > start && self.fenced(self.pos)))
        {
            self.bump();
        }
    }

    /// Skips every line indented deeper than `opener_col`.
    pub(super) fn skip_block(&mut self, opener_col: u32) {
        loop {
            let t = self.cur();
            if matches!(t.kind, Tok::Eof) || (t.line_start && t.span.column <= opener_col) {
                return;
            }
            self.bump();
        }
    }

    pub(super) fn stmt(&mut self) -> PResult<Stmt> {
        let start = self.cur().span;
        let col = start.column;
        let kind = match self.peek().clone() {
            Tok::If if self.if_is_expression() => StmtKind::Expr(self.expr()?),
            Tok::If => self.if_stmt(col)?,
            Tok::Ident(_) if matches!(self.peek_n(1), Tok::ColonEq) => {
                StmtKind::Assign(self.assign()?)
            }
            Tok::Ident(w) => match w.as_str() {
                "let" | "var" | "const" => StmtKind::Binding(self.binding()?),
                "while" => {
                    self.bump();
                    let cond = self.expr()?;
                    self.expect(&Tok::Colon, "`:` after the `while` condition")?;
                    let body = self.block(col)?;
                    StmtKind::While { cond, body }
                }
                "for" => {
                    self.bump();
                    let var = self.ident("a loop variable")?;
                    self.expect(&Tok::In, "`in`")?;
                    let iter = self.expr()?;
                    self.expect(&Tok::Colon, "`:` after the `for` header")?;
                    let body = self.block(col)?;
                    StmtKind::For { var, iter, body }
                }
                "break" => {
                    self.bump();
                    StmtKind::Break
                }
                "continue" => {
                    self.bump();
                    StmtKind::Continue
                }
                "return" => {
                    self.bump();
                    if self.at_end() {
                        StmtKind::Return(None)
                    } else {
                        StmtKind::Return(Some(self.expr()?))
                    }
                }
                "emit" => {
                    self.bump();
                    let event_type = self.ident("an event type after `emit`")?;
                    let args = if matches!(self.peek(), Tok::LParen) {
                        self.args()?
                    } else {
                        Vec::new()
                    };
                    StmtKind::Emit { event_type, args }
                }
                "elif" => {
                    return Err(self.error_here("`elif` without a matching `if`"));
                }
                "stream" | "event" | "connector" | "context" | "fn" | "pattern" | "type"
                | "import" | "config"
                    if matches!(self.peek_n(1), Tok::Ident(_)) =>
                {
                    let msg = format!("`{w}` declarations are only allowed at top level");
                    return Err(self.error_here(msg));
                }
                _ => StmtKind::Expr(self.expr()?),
            },
            Tok::Else => {
                return Err(self.error_here("`else` without a matching `if`"));
            }
            _ => StmtKind::Expr(self.expr()?),
        };
        Ok(Stmt {
            kind,
            span: self.span_from(start),
        })
    }

    /// True when the `if` at the cursor is a conditional expression (`if c then a else b`):
    /// `then` comes before any `:` outside brackets on the statement.
    pub(super) fn if_is_expression(&self) -> bool {
        let mut depth = 0usize;
        let mut at = self.pos + 1;
        loop {
            if self.fenced(at) {
                return false;
            }
            match &self.raw(at).kind {
                Tok::Eof => return false,
                Tok::LParen | Tok::LBracket | Tok::LBrace => depth += 1,
                Tok::RParen | Tok::RBracket | Tok::RBrace => depth = depth.saturating_sub(1),
                Tok::Then if depth == 0 => return true,
                Tok::Colon if depth == 0 => return false,
                _ => {}
            }
            at += 1;
        }
    }

    pub(super) fn if_stmt(&mut self, col: u32) -> PResult<StmtKind> {
        let mut branches = Vec::new();
        let mut else_body = None;
        let first = self.bump();
        let cond = self.expr()?;
        self.expect(&Tok::Colon, "`:` after the `if` condition")?;
        let body = self.block(col)?;
        branches.push(IfBranch {
            cond,
            body,
            span: self.span_from(first.span),
        });
        loop {
            // `elif`/`else` sit at the same column as the `if`, i.e. behind the fence.
            let t = self.cur().clone();
            if !(t.line_start && t.span.column == col) {
                break;
            }
            let is_elif = matches!(&t.kind, Tok::Ident(w) if w == "elif");
            let is_else = matches!(t.kind, Tok::Else);
            if !is_elif && !is_else {
                break;
            }
            self.stmt_start = self.pos;
            self.bump();
            if is_elif {
                let cond = self.expr()?;
                self.expect(&Tok::Colon, "`:` after the `elif` condition")?;
                let body = self.block(col)?;
                branches.push(IfBranch {
                    cond,
                    body,
                    span: self.span_from(t.span),
                });
            } else {
                self.expect(&Tok::Colon, "`:` after `else`")?;
                else_body = Some(self.block(col)?);
                break;
            }
        }
        Ok(StmtKind::If {
            branches,
            else_body,
        })
    }
}
