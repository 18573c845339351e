//! Declarations: `let/var/const`, `:=`, types, `event`, `connector`, `context`, `fn`.

use super::{Fail, PResult, Parser};
use crate::ast::*;
use crate::diagnostics::Diagnostic;
use crate::lexer::Tok;

fn binding_kind(word: &str) -> Option<BindingKind> {
    match word {
        "let" => Some(BindingKind::Let),
        "var" => Some(BindingKind::Var),
        "const" => Some(BindingKind::Const),
        _ => None,
    }
}

impl Parser {
    /// `type Name = T`.
    pub(super) fn type_decl(&mut self) -> PResult<TypeDecl> {
        let kw = self.bump();
        let name = self.ident("a type name")?;
        self.expect(&Tok::Assign, "`=`")?;
        let ty = self.type_expr()?;
        Ok(TypeDecl {
            span: self.span_from(kw.span),
            name,
            ty,
        })
    }

    pub(super) fn assign(&mut self) -> PResult<Assign> {
        let target = self.ident("a variable name")?;
        self.expect(&Tok::ColonEq, "`:=`")?;
        let value = self.expr()?;
        Ok(Assign {
            span: self.span_from(target.span),
            target,
            value,
        })
    }

    pub(super) fn binding(&mut self) -> PResult<Binding> {
        let kind = self
            .peek()
            .word()
            .and_then(binding_kind)
            .unwrap_or(BindingKind::Let);
        let kw = self.bump();
        let name = self.ident("a name")?;
        let ty = if self.eat(&Tok::Colon) {
            Some(self.type_expr()?)
        } else {
            None
        };
        if matches!(self.peek(), Tok::ColonEq) {
            let span = self.cur().span;
            self.push(
                Diagnostic::error("expected `=`, found `:=`", span)
                    .with_hint("declarations use `=`; `:=` assigns to an existing `var`"),
            );
            return Err(Fail);
        }
        self.expect(&Tok::Assign, "`=`")?;
        let value = self.expr()?;
        Ok(Binding {
            kind,
            span: self.span_from(kw.span),
            name,
            ty,
            value,
        })
    }

    /// A type annotation.
    pub(super) fn type_expr(&mut self) -> PResult<TypeExpr> {
        self.enter()?;
        let r = self.type_expr_inner();
        self.leave();
        r
    }

    pub(super) fn type_expr_inner(&mut self) -> PResult<TypeExpr> {
        let start = self.cur().span;
        let kind = match self.peek().clone() {
            Tok::LBracket => {
                self.bump();
                let inner = self.bracketed(|p| {
                    let t = p.type_expr()?;
                    p.expect(&Tok::RBracket, "`]`")?;
                    Ok(t)
                })?;
                TypeKind::Array(Box::new(inner))
            }
            Tok::LBrace => {
                self.bump();
                self.bracketed(|p| {
                    let k = p.type_expr()?;
                    p.expect(&Tok::Colon, "`:`")?;
                    let v = p.type_expr()?;
                    let record_key = match &k.kind {
                        TypeKind::Named(n) => {
                            let lower = n.name.starts_with(|c: char| c.is_ascii_lowercase());
                            (lower && !BASIC_TYPES.contains(&n.name.as_str())).then(|| n.clone())
                        }
                        _ => None,
                    };
                    match record_key {
                        Some(first) if matches!(p.peek(), Tok::Comma | Tok::RBrace) => {
                            let mut fields = vec![(first, v)];
                            while p.eat(&Tok::Comma) {
                                if matches!(p.peek(), Tok::RBrace) {
                                    break;
                                }
                                let name = p.any_word("a field name")?;
                                p.expect(&Tok::Colon, "`:`")?;
                                fields.push((name, p.type_expr()?));
                            }
                            p.expect(&Tok::RBrace, "`}`")?;
                            Ok(TypeKind::Record(fields))
                        }
                        _ => {
                            p.expect(&Tok::RBrace, "`}`")?;
                            Ok(TypeKind::Map(Box::new(k), Box::new(v)))
                        }
                    }
                })?
            }
            Tok::LParen => {
                self.bump();
                let items = self.bracketed(|p| p.comma_list("`)`", |p| p.type_expr()))?;
                TypeKind::Tuple(items)
            }
            Tok::Null => {
                let t = self.bump();
                TypeKind::Named(Ident::new("null", t.span))
            }
            Tok::Ident(name) => {
                let t = self.bump();
                if name == "Stream" && matches!(self.peek(), Tok::Lt) {
                    self.bump();
                    let inner = self.type_expr()?;
                    self.expect(&Tok::Gt, "`>`")?;
                    TypeKind::Stream(Box::new(inner))
                } else {
                    TypeKind::Named(Ident::new(name, t.span))
                }
            }
            _ => {
                let msg = format!("expected a type, found {}", self.found());
                return Err(self.error_here(msg));
            }
        };
        let mut ty = TypeExpr {
            kind,
            span: self.span_from(start),
        };
        while matches!(self.peek(), Tok::Question) {
            self.bump();
            ty = TypeExpr {
                kind: TypeKind::Optional(Box::new(ty)),
                span: self.span_from(start),
            };
        }
        Ok(ty)
    }

    pub(super) fn event_decl(&mut self) -> PResult<EventDecl> {
        let kw = self.bump();
        let name = self.ident("an event name")?;
        let extends = if self.eat_word("extends") {
            Some(self.ident("a base event name")?)
        } else {
            None
        };
        let mut fields = Vec::new();
        if self.eat(&Tok::Colon) {
            let opener_col = kw.span.column;
            self.block_with(opener_col, |p| {
                let name = p.ident("a field name")?;
                p.expect(&Tok::Colon, "`:` after the field name")?;
                let ty = p.type_expr()?;
                fields.push(FieldDecl {
                    span: p.span_from(name.span),
                    name,
                    ty,
                });
                Ok(())
            });
        }
        Ok(EventDecl {
            span: self.span_from(kw.span),
            name,
            extends,
            fields,
        })
    }

    pub(super) fn connector_decl(&mut self) -> PResult<ConnectorDecl> {
        let kw = self.bump();
        let name = self.ident("a connector name")?;
        self.expect(&Tok::Assign, "`=`")?;
        let kind = self.ident("a connector kind (e.g. `mqtt`)")?;
        let params = if matches!(self.peek(), Tok::LParen) {
            self.args()?
        } else {
            Vec::new()
        };
        Ok(ConnectorDecl {
            span: self.span_from(kw.span),
            name,
            kind,
            params,
        })
    }

    pub(super) fn context_decl(&mut self) -> PResult<ContextDecl> {
        let kw = self.bump();
        let name = self.ident("a context name")?;
        let params = if matches!(self.peek(), Tok::LParen) {
            self.args()?
        } else {
            Vec::new()
        };
        Ok(ContextDecl {
            span: self.span_from(kw.span),
            name,
            params,
        })
    }

    pub(super) fn fn_decl(&mut self) -> PResult<FnDecl> {
        let kw = self.bump();
        let name = self.ident("a function name")?;
        self.expect(&Tok::LParen, "`(`")?;
        let params = self.bracketed(|p| {
            p.comma_list("`)` or `,`", |p| {
                let pname = p.ident("a parameter name")?;
                let ty = if p.eat(&Tok::Colon) {
                    Some(p.type_expr()?)
                } else {
                    None
                };
                Ok(Param {
                    span: p.span_from(pname.span),
                    name: pname,
                    ty,
                })
            })
        })?;
        let ret = if self.eat(&Tok::Arrow) {
            Some(self.type_expr()?)
        } else {
            None
        };
        self.expect(&Tok::Colon, "`:` to open the function body")?;
        let body = self.block(kw.span.column)?;
        Ok(FnDecl {
            span: self.span_from(kw.span),
            name,
            params,
            ret,
            body,
        })
    }
}
