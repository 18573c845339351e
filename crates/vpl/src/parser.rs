//! Recursive-descent parser with a Pratt expression parser (§1 layout, §2 structure, §11.1
//! precedence).
//!
//! **Layout.** The lexer marks the first token of every line. A block (after a line ending in `:`
//! that starts with `fn if elif else for while event`) consists of the following lines indented
//! deeper than the opener; its statements start at the column of its first line. While parsing a
//! statement of a block, a token that starts a line at or left of that column acts as the end of
//! the statement (the *fence*); lines indented deeper continue the statement. Inside brackets the
//! fence is lifted, so argument lists may span lines freely. At top level there is no fence:
//! newlines are whitespace and a declaration ends where the grammar cannot extend it.
//!
//! **Recovery.** Errors are collected, never thrown. A failed top-level item skips to the next
//! token that starts a line in column 1; a failed statement skips to the next line of its block.
//!
//! **Robustness.** Every token access is bounds-checked (the token list ends with `Eof` and the
//! cursor never passes it), and nesting deeper than [`MAX_DEPTH`] is a diagnostic, not a stack
//! overflow.

use crate::ast::*;
use crate::diagnostics::Diagnostic;
use crate::lexer::{tokenize, Tok, Token};

/// Deepest nesting of expressions and blocks accepted.
pub const MAX_DEPTH: usize = 100;

/// Most diagnostics reported for one source; beyond this, parsing output is noise.
const MAX_DIAGNOSTICS: usize = 100;

/// Statement words: keywords only at the start of a statement (§1).
pub const STATEMENT_WORDS: &[&str] = &[
    "stream",
    "event",
    "type",
    "connector",
    "context",
    "pattern",
    "fn",
    "let",
    "var",
    "const",
    "config",
    "import",
    "elif",
    "for",
    "while",
    "break",
    "continue",
    "return",
    "emit",
];

/// Words that start a top-level declaration (used for the column-1 recovery fence).
const DECLARATION_WORDS: &[&str] = &[
    "stream",
    "event",
    "type",
    "connector",
    "context",
    "pattern",
    "fn",
    "let",
    "var",
    "const",
    "config",
    "import",
];

/// What [`Parser::bump`] returns: the consumed token's span (cheap to copy).
#[derive(Debug, Clone, Copy)]
struct Bumped {
    span: Span,
}

/// Marker for a failed parse; the diagnostic has already been recorded.
#[derive(Debug)]
struct Fail;

type PResult<T> = Result<T, Fail>;

/// Parses a whole program, returning the best-effort tree and every diagnostic (lexical and
/// syntactic) in source order.
pub fn parse_program(src: &str) -> (Program, Vec<Diagnostic>) {
    let (tokens, lex_diags) = tokenize(src);
    let mut p = Parser {
        toks: tokens,
        pos: 0,
        diags: Vec::new(),
        fence: None,
        stmt_start: 0,
        depth: 0,
        stop_at_chain_op: false,
    };
    let program = p.program();
    let mut diags = lex_diags;
    diags.append(&mut p.diags);
    crate::sort_diagnostics(&mut diags);
    diags.truncate(MAX_DIAGNOSTICS);
    (program, diags)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    diags: Vec<Diagnostic>,
    /// Column at or left of which a line-starting token ends the current statement.
    fence: Option<u32>,
    /// Index of the first token of the statement being parsed (exempt from the fence).
    stmt_start: usize,
    /// Current nesting depth (expressions and blocks).
    depth: usize,
    /// In a sequence-step filter at chain level: `.name(` ends the expression.
    stop_at_chain_op: bool,
}

fn binding_kind(word: &str) -> Option<BindingKind> {
    match word {
        "let" => Some(BindingKind::Let),
        "var" => Some(BindingKind::Var),
        "const" => Some(BindingKind::Const),
        _ => None,
    }
}

impl Parser {
    // ----- token access ---------------------------------------------------------------------

    fn raw(&self, at: usize) -> &Token {
        let last = self.toks.len().saturating_sub(1);
        // The lexer always emits Eof, so the list is never empty.
        &self.toks[at.min(last)]
    }

    /// True when the token at `at` is cut off by the layout fence.
    ///
    /// Besides the block fence, a declaration keyword followed by a name at the start of a line in
    /// column 1 always ends the current item, even inside unclosed brackets, so one missing `)`
    /// does not swallow the rest of the program.
    fn fenced(&self, at: usize) -> bool {
        if at <= self.stmt_start {
            return false;
        }
        let t = self.raw(at);
        if !t.line_start {
            return false;
        }
        if let Some(col) = self.fence {
            if t.span.column <= col {
                return true;
            }
        }
        t.span.column == 1
            && matches!(&t.kind, Tok::Ident(w) if DECLARATION_WORDS.contains(&w.as_str()))
            && matches!(self.raw(at + 1).kind, Tok::Ident(_))
    }

    /// The current token kind as the grammar sees it (`Eof` at the fence).
    fn peek(&self) -> &Tok {
        self.peek_n(0)
    }

    fn peek_n(&self, n: usize) -> &Tok {
        // A fence between here and the looked-at token hides it.
        for k in 0..=n {
            if self.fenced(self.pos + k) {
                return &Tok::Eof;
            }
        }
        &self.raw(self.pos + n).kind
    }

    fn cur(&self) -> &Token {
        self.raw(self.pos)
    }

    fn at_end(&self) -> bool {
        matches!(self.peek(), Tok::Eof)
    }

    /// Consumes the current token (never moving past `Eof`) and returns its span.
    fn bump(&mut self) -> Bumped {
        let span = self.raw(self.pos).span;
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        Bumped { span }
    }

    /// Span of the previously consumed token.
    fn prev_span(&self) -> Span {
        self.raw(self.pos.saturating_sub(1)).span
    }

    fn span_from(&self, start: Span) -> Span {
        let end = self.prev_span();
        if end.end < start.start {
            start
        } else {
            start.to(end)
        }
    }

    fn eat(&mut self, kind: &Tok) -> bool {
        if self.peek() == kind {
            self.bump();
            true
        } else {
            false
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w == word)
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.is_word(word) {
            self.bump();
            true
        } else {
            false
        }
    }

    // ----- diagnostics ----------------------------------------------------------------------

    fn error_here(&mut self, msg: impl Into<String>) -> Fail {
        let span = self.cur_span();
        self.push(Diagnostic::error(msg, span));
        Fail
    }

    fn push(&mut self, d: Diagnostic) {
        if self.diags.len() < MAX_DIAGNOSTICS {
            self.diags.push(d);
        }
    }

    /// Span of the current token as the grammar sees it (end of the previous line at the fence).
    fn cur_span(&self) -> Span {
        if self.at_end() && self.pos > 0 && !matches!(self.cur().kind, Tok::Eof) {
            // Point just after the previous token rather than at the next line.
            let p = self.raw(self.pos - 1);
            return Span::new(p.span.end, p.span.end, p.end_line, p.end_column);
        }
        self.cur().span
    }

    fn found(&self) -> String {
        if self.at_end() && !matches!(self.cur().kind, Tok::Eof) {
            "end of line".to_string()
        } else {
            self.cur().kind.describe()
        }
    }

    fn expect(&mut self, kind: &Tok, what: &str) -> PResult<Span> {
        if self.peek() == kind {
            Ok(self.bump().span)
        } else {
            let msg = format!("expected {what}, found {}", self.found());
            Err(self.error_here(msg))
        }
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        if let Tok::Ident(name) = self.peek() {
            let name = name.clone();
            let t = self.bump();
            Ok(Ident::new(name, t.span))
        } else {
            let msg = format!("expected {what}, found {}", self.found());
            let mut d = Diagnostic::error(msg, self.cur_span());
            if let Some(w) = self.peek().word() {
                d = d.with_hint(format!("`{w}` is a reserved word"));
            }
            self.push(d);
            Err(Fail)
        }
    }

    /// Any word (identifier or reserved word), e.g. after `.`.
    fn any_word(&mut self, what: &str) -> PResult<Ident> {
        if let Some(w) = self.peek().word() {
            let w = w.to_string();
            let t = self.bump();
            Ok(Ident::new(w, t.span))
        } else {
            let msg = format!("expected {what}, found {}", self.found());
            Err(self.error_here(msg))
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let span = self.cur().span;
            self.depth -= 1;
            self.push(
                Diagnostic::error(format!("nesting deeper than {MAX_DEPTH} levels"), span)
                    .with_hint("split the expression or move code into a function"),
            );
            return Err(Fail);
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Runs `f` with the layout fence lifted (inside brackets).
    fn bracketed<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        let fence = self.fence.take();
        let stop = std::mem::replace(&mut self.stop_at_chain_op, false);
        let r = f(self);
        self.fence = fence;
        self.stop_at_chain_op = stop;
        r
    }

    // ----- program and items ----------------------------------------------------------------

    fn program(&mut self) -> Program {
        let mut items = Vec::new();
        while !matches!(self.cur().kind, Tok::Eof) {
            let start = self.pos;
            self.stmt_start = start;
            match self.item() {
                Ok(Some(item)) => {
                    items.push(item);
                }
                Ok(None) => {}
                Err(Fail) => self.sync_top(start),
            }
            if self.pos == start {
                // Guarantee progress even if an item consumed nothing.
                self.bump();
                self.sync_top(start);
            }
        }
        Program { items }
    }

    /// Skips to the next token that starts a line in column 1 (after `start`).
    fn sync_top(&mut self, start: usize) {
        loop {
            let t = self.cur();
            if matches!(t.kind, Tok::Eof) {
                return;
            }
            if self.pos > start && t.line_start && t.span.column == 1 {
                return;
            }
            self.bump();
        }
    }

    fn item(&mut self) -> PResult<Option<Item>> {
        let start = self.cur().span;
        let word = match self.peek() {
            Tok::Ident(w) => w.clone(),
            _ => {
                let msg = format!(
                    "expected a declaration (`stream`, `event`, `fn`, `let`, …), found {}",
                    self.found()
                );
                return Err(self.error_here(msg));
            }
        };
        if matches!(self.peek_n(1), Tok::ColonEq) {
            return Ok(Some(Item::Assign(self.assign()?)));
        }
        match word.as_str() {
            "stream" => Ok(Some(Item::Stream(self.stream_decl()?))),
            "event" => Ok(Some(Item::Event(self.event_decl()?))),
            "connector" => Ok(Some(Item::Connector(self.connector_decl()?))),
            "context" => Ok(Some(Item::Context(self.context_decl()?))),
            "fn" => Ok(Some(Item::Fn(self.fn_decl()?))),
            "let" | "var" | "const" => Ok(Some(Item::Binding(self.binding()?))),
            "type" | "pattern" | "import" | "config" => {
                let msg = format!("`{word}` declarations are not supported yet (Tier 3)");
                Err(self.error_here(msg))
            }
            "if" | "elif" | "for" | "while" | "break" | "continue" | "return" | "emit" => {
                let span = self.cur().span;
                self.push(
                    Diagnostic::error(format!("`{word}` is only allowed inside a function"), span)
                        .with_hint(
                            "wrap the statements in `fn name():` and call it from `.process()`",
                        ),
                );
                Err(Fail)
            }
            _ => {
                let msg = format!(
                    "expected a declaration (`stream`, `event`, `fn`, `let`, …), found `{word}`"
                );
                let mut d = Diagnostic::error(msg, start);
                if let Some(s) = crate::check::suggest(&word, STATEMENT_WORDS.iter().copied()) {
                    d = d.with_hint(format!("did you mean `{s}`?"));
                }
                self.push(d);
                Err(Fail)
            }
        }
    }

    fn assign(&mut self) -> PResult<Assign> {
        let target = self.ident("a variable name")?;
        self.expect(&Tok::ColonEq, "`:=`")?;
        let value = self.expr()?;
        Ok(Assign {
            span: self.span_from(target.span),
            target,
            value,
        })
    }

    fn binding(&mut self) -> PResult<Binding> {
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

    fn type_expr(&mut self) -> PResult<TypeExpr> {
        self.enter()?;
        let r = self.type_expr_inner();
        self.leave();
        r
    }

    fn type_expr_inner(&mut self) -> PResult<TypeExpr> {
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
                let (k, v) = self.bracketed(|p| {
                    let k = p.type_expr()?;
                    p.expect(&Tok::Colon, "`:`")?;
                    let v = p.type_expr()?;
                    p.expect(&Tok::RBrace, "`}`")?;
                    Ok((k, v))
                })?;
                TypeKind::Map(Box::new(k), Box::new(v))
            }
            Tok::LParen => {
                self.bump();
                let items = self.bracketed(|p| {
                    let mut items = Vec::new();
                    while !matches!(p.peek(), Tok::RParen) {
                        items.push(p.type_expr()?);
                        if !p.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    p.expect(&Tok::RParen, "`)`")?;
                    Ok(items)
                })?;
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

    fn event_decl(&mut self) -> PResult<EventDecl> {
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

    fn connector_decl(&mut self) -> PResult<ConnectorDecl> {
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

    fn context_decl(&mut self) -> PResult<ContextDecl> {
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

    fn fn_decl(&mut self) -> PResult<FnDecl> {
        let kw = self.bump();
        let name = self.ident("a function name")?;
        self.expect(&Tok::LParen, "`(`")?;
        let params = self.bracketed(|p| {
            let mut params = Vec::new();
            while !matches!(p.peek(), Tok::RParen) {
                let pname = p.ident("a parameter name")?;
                let ty = if p.eat(&Tok::Colon) {
                    Some(p.type_expr()?)
                } else {
                    None
                };
                params.push(Param {
                    span: p.span_from(pname.span),
                    name: pname,
                    ty,
                });
                if !p.eat(&Tok::Comma) {
                    break;
                }
            }
            p.expect(&Tok::RParen, "`)` or `,`")?;
            Ok(params)
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

    // ----- streams --------------------------------------------------------------------------

    fn stream_decl(&mut self) -> PResult<StreamDecl> {
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

    fn source(&mut self) -> PResult<Source> {
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
    fn sub_streams(&mut self) -> PResult<Vec<SubStream>> {
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

    fn fold_from(&mut self, op: StreamOp) -> PResult<FromClause> {
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

    fn stream_op(&mut self) -> PResult<StreamOp> {
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

    fn seq_step(&mut self) -> PResult<SeqStep> {
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
    fn args(&mut self) -> PResult<Vec<Arg>> {
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

    // ----- blocks and statements ------------------------------------------------------------

    fn block(&mut self, opener_col: u32) -> PResult<Block> {
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
    fn block_with(
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
    fn sync_line(&mut self, start: usize) {
        self.stmt_start = start;
        while !(matches!(self.cur().kind, Tok::Eof) || (self.pos > start && self.fenced(self.pos)))
        {
            self.bump();
        }
    }

    /// Skips every line indented deeper than `opener_col`.
    fn skip_block(&mut self, opener_col: u32) {
        loop {
            let t = self.cur();
            if matches!(t.kind, Tok::Eof) || (t.line_start && t.span.column <= opener_col) {
                return;
            }
            self.bump();
        }
    }

    fn stmt(&mut self) -> PResult<Stmt> {
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
    fn if_is_expression(&self) -> bool {
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

    fn if_stmt(&mut self, col: u32) -> PResult<StmtKind> {
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

    // ----- expressions ----------------------------------------------------------------------

    /// Parses a full expression (lowest precedence).
    fn expr(&mut self) -> PResult<Expr> {
        self.expr_bp(0)
    }

    fn expr_bp(&mut self, min_bp: u8) -> PResult<Expr> {
        self.enter()?;
        let r = self.expr_bp_inner(min_bp);
        self.leave();
        r
    }

    fn expr_bp_inner(&mut self, min_bp: u8) -> PResult<Expr> {
        // Each operator in a chain deepens the (left-nested) tree by one level; count it against
        // the depth budget so later tree walks cannot overflow the stack either.
        let outer = self.depth;
        let r = self.operator_chain(min_bp);
        self.depth = outer;
        r
    }

    fn operator_chain(&mut self, min_bp: u8) -> PResult<Expr> {
        let mut lhs = self.prefix(min_bp)?;
        while let Some((op, lbp, rbp, width)) = self.infix_op() {
            if lbp < min_bp {
                break;
            }
            self.enter()?;
            for _ in 0..width {
                self.bump();
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

    fn prefix(&mut self, min_bp: u8) -> PResult<Expr> {
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
                let mut params = Vec::new();
                while !matches!(self.peek(), Tok::RParen) {
                    params.push(self.ident("a parameter")?);
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                self.expect(&Tok::RParen, "`)`")?;
                self.lambda_body(params, start, min_bp)
            }
            _ => {
                let e = self.primary()?;
                self.postfix(e)
            }
        }
    }

    fn lambda_body(&mut self, params: Vec<Ident>, start: Span, min_bp: u8) -> PResult<Expr> {
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
    fn is_lambda_params(&self) -> bool {
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

    fn primary(&mut self) -> PResult<Expr> {
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

    fn call_args(&mut self) -> PResult<Vec<Expr>> {
        self.expect(&Tok::LParen, "`(`")?;
        self.bracketed(|p| {
            let mut args = Vec::new();
            while !matches!(p.peek(), Tok::RParen) {
                if p.peek().word().is_some() && matches!(p.peek_n(1), Tok::Colon) {
                    let span = p.cur().span;
                    p.push(
                        Diagnostic::error("function calls take positional arguments only", span)
                            .with_hint("remove the `name:` prefix"),
                    );
                    return Err(Fail);
                }
                args.push(p.expr()?);
                if !p.eat(&Tok::Comma) {
                    break;
                }
            }
            p.expect(&Tok::RParen, "`,` or `)`")?;
            Ok(args)
        })
    }

    fn postfix(&mut self, e: Expr) -> PResult<Expr> {
        let outer = self.depth;
        let r = self.postfix_chain(e);
        self.depth = outer;
        r
    }

    fn postfix_chain(&mut self, mut e: Expr) -> PResult<Expr> {
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
    fn index_or_slice(&mut self, base: Expr, start: Span) -> PResult<Expr> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Renders an expression as a fully parenthesized S-expression.
    fn sx(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Int(i) => i.to_string(),
            ExprKind::Float(f) => format!("{f:?}"),
            ExprKind::Str(s) => format!("{s:?}"),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Null => "null".into(),
            ExprKind::Duration(d) => format!("{d}ns"),
            ExprKind::Timestamp(t) => format!("@{t}"),
            ExprKind::Name(n) => n.name.clone(),
            ExprKind::Array(items) => {
                format!("[{}]", items.iter().map(sx).collect::<Vec<_>>().join(" "))
            }
            ExprKind::Map(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|m| format!("{}:{}", sx(&m.key), sx(&m.value)))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            ExprKind::Unary { op, operand } => {
                let o = match op {
                    UnaryOp::Neg => "neg",
                    UnaryOp::BitNot => "~",
                    UnaryOp::Not => "not",
                };
                format!("({o} {})", sx(operand))
            }
            ExprKind::Binary { op, lhs, rhs } => {
                format!("({} {} {})", op.symbol(), sx(lhs), sx(rhs))
            }
            ExprKind::Range {
                start,
                end,
                inclusive,
            } => format!(
                "({} {} {})",
                if *inclusive { "..=" } else { ".." },
                sx(start),
                sx(end)
            ),
            ExprKind::Call {
                callee,
                args,
                method,
            } => format!(
                "({}{} {})",
                if *method { "." } else { "" },
                callee.name,
                args.iter().map(sx).collect::<Vec<_>>().join(" ")
            ),
            ExprKind::Field {
                base,
                name,
                optional,
            } => format!(
                "({} {} {})",
                if *optional { "?." } else { "." },
                sx(base),
                name.name
            ),
            ExprKind::Index { base, index } => format!("(idx {} {})", sx(base), sx(index)),
            ExprKind::Slice { base, start, end } => format!(
                "(slice {} {} {})",
                sx(base),
                start.as_ref().map(|e| sx(e)).unwrap_or("_".into()),
                end.as_ref().map(|e| sx(e)).unwrap_or("_".into())
            ),
            ExprKind::If { cond, then, else_ } => {
                format!("(if {} {} {})", sx(cond), sx(then), sx(else_))
            }
            ExprKind::EventFilter { event, filter } => {
                format!("({} where {})", event.name, sx(filter))
            }
            ExprKind::Lambda { params, body } => format!(
                "(fn {} {})",
                params
                    .iter()
                    .map(|p| p.name.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                sx(body)
            ),
        }
    }

    fn parse_ok(src: &str) -> Program {
        let (p, d) = parse_program(src);
        assert!(d.is_empty(), "unexpected diagnostics for {src:?}: {d:#?}");
        p
    }

    /// Parses `let x = <src>` and renders the value.
    fn e(src: &str) -> String {
        let p = parse_ok(&format!("let x = {src}"));
        match &p.items[0] {
            Item::Binding(b) => sx(&b.value),
            other => panic!("not a binding: {other:?}"),
        }
    }

    fn errs(src: &str) -> Vec<String> {
        parse_program(src)
            .1
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn precedence_table() {
        assert_eq!(e("1 + 2 * 3"), "(+ 1 (* 2 3))");
        assert_eq!(e("1 - 2 - 3"), "(- (- 1 2) 3)");
        assert_eq!(e("-2 ** 2"), "(** (neg 2) 2)");
        assert_eq!(e("2 ** 3 ** 2"), "(** 2 (** 3 2))");
        assert_eq!(e("2 ** -1"), "(** 2 (neg 1))");
        assert_eq!(e("a * b ** c"), "(* a (** b c))");
        assert_eq!(e("a or b and c"), "(or a (and b c))");
        assert_eq!(e("not a and b"), "(and (not a) b)");
        assert_eq!(e("not a == b"), "(not (== a b))");
        assert_eq!(e("a ?? b or c"), "(?? a (or b c))");
        assert_eq!(e("a | b ^ c & d"), "(| a (^ b (& c d)))");
        assert_eq!(e("a << 1 + 2"), "(<< a (+ 1 2))");
        assert_eq!(e("a & b == c"), "(== (& a b) c)");
        assert_eq!(e("1 + 2 .. 3 * 4"), "(.. (+ 1 2) (* 3 4))");
        assert_eq!(e("0..=n"), "(..= 0 n)");
        assert_eq!(
            e("x in [1, 2] and y not in m"),
            "(and (in x [1 2]) (not in y m))"
        );
        assert_eq!(e("~a % 3 / b"), "(/ (% (~ a) 3) b)");
        assert_eq!(
            e("a >= 1 and b != 2 or c <= 3"),
            "(or (and (>= a 1) (!= b 2)) (<= c 3))"
        );
        assert_eq!(e("a > b >> 2"), "(> a (>> b 2))");
    }

    #[test]
    fn comparisons_are_non_associative() {
        assert_eq!(
            errs("let x = a < b < c"),
            vec!["comparison operators cannot be chained"]
        );
        assert_eq!(
            errs("let x = a == b != c"),
            vec!["comparison operators cannot be chained"]
        );
        assert_eq!(
            errs("let x = 0..1..2"),
            vec!["ranges cannot be chained; add parentheses"]
        );
    }

    #[test]
    fn postfix_calls_fields_indexes_slices() {
        assert_eq!(e("f(a, b)"), "(f a b)");
        assert_eq!(e("xs.len()"), "(.len xs)");
        assert_eq!(
            e("s.replace(\"a\", \"b\").upper()"),
            "(.upper (.replace s \"a\" \"b\"))"
        );
        assert_eq!(e("a.b?.c"), "(?. (. a b) c)");
        assert_eq!(e("a[0][-1]"), "(idx (idx a 0) (neg 1))");
        assert_eq!(e("a[1:2]"), "(slice a 1 2)");
        assert_eq!(e("a[:2]"), "(slice a _ 2)");
        assert_eq!(e("a[1:]"), "(slice a 1 _)");
        assert_eq!(e("-a.b"), "(neg (. a b))");
        assert_eq!(e("r.in"), "(. r in)");
    }

    #[test]
    fn literals_and_primaries() {
        assert_eq!(e("[1, 2.5, \"s\", true, null,]"), "[1 2.5 \"s\" true null]");
        assert_eq!(e("{\"k\": 1, k2: v}"), "{\"k\":1 \"k2\":v}");
        assert_eq!(e("{}"), "{}");
        assert_eq!(
            e("if a > 1 then \"x\" else \"y\""),
            "(if (> a 1) \"x\" \"y\")"
        );
        assert_eq!(e("5s"), "5000000000ns");
        assert_eq!(e("@1970-01-01T00:00:01Z"), "@1000000000");
        assert_eq!(e("(1 + 2) * 3"), "(* (+ 1 2) 3)");
        assert_eq!(e("x => x + 1"), "(fn x (+ x 1))");
        assert_eq!(e("(a, b) => a * b"), "(fn a,b (* a b))");
    }

    #[test]
    fn keyword_prefixed_identifiers_are_names() {
        assert_eq!(
            e("notify_level + allocation"),
            "(+ notify_level allocation)"
        );
        assert_eq!(
            e("notes and true_count or breakdown"),
            "(or (and notes true_count) breakdown)"
        );
        assert_eq!(e("format == order_id"), "(== format order_id)");
        let p = parse_ok("stream S = A .where(type == \"x\" and from > 1 and in_flight)");
        assert_eq!(p.streams().count(), 1);
        let p = parse_ok("fn f():\n    var breakdown = 1\n    breakdown := 2\n    letter := 3\n");
        assert_eq!(p.functions().next().map(|f| f.body.stmts.len()), Some(3));
    }

    #[test]
    fn stream_declarations() {
        let p = parse_ok(
            "stream Hot: Stream<PumpReading> = PumpReading as r .where(r.inlet_temp > 80.0)\n    .emit(pump: pump, temp: inlet_temp, level: \"high\")\n    .to(Plant, topic: \"a/b\")",
        );
        let s = p.streams().next().unwrap();
        assert_eq!(s.name.name, "Hot");
        assert!(matches!(
            &s.ty,
            Some(TypeExpr {
                kind: TypeKind::Stream(_),
                ..
            })
        ));
        match &s.source.kind {
            SourceKind::Named { name, alias } => {
                assert_eq!(name.name, "PumpReading");
                assert_eq!(alias.as_ref().map(|a| a.name.as_str()), Some("r"));
            }
            other => panic!("{other:?}"),
        }
        let kinds: Vec<OpKind> = s.ops.iter().map(StreamOp::kind).collect();
        assert_eq!(kinds, vec![OpKind::Where, OpKind::Emit, OpKind::To]);
        let emit = &s.ops[1];
        assert_eq!(emit.args.len(), 3);
        assert_eq!(emit.args[2].field_name(), Some("level"));
        assert!(
            matches!(emit.named("level").map(|e| &e.kind), Some(ExprKind::Str(s)) if s == "high")
        );
        assert_eq!(s.ops[2].named("topic").map(sx), Some("\"a/b\"".into()));
    }

    #[test]
    fn from_is_folded_into_the_source() {
        let p = parse_ok("stream R = PumpReading.from(Plant, topic: \"plant/#\") .where(rpm > 0)");
        let s = p.streams().next().unwrap();
        let from = s.source.from.as_ref().unwrap();
        assert_eq!(from.connector.name, "Plant");
        assert_eq!(from.args[0].name.as_ref().unwrap().name, "topic");
        assert_eq!(s.ops.len(), 1);
    }

    #[test]
    fn sequence_steps_stop_at_chain_operators() {
        let p = parse_ok(
            "stream T = Login as lg\n    -> PasswordReset where account == lg.account as pr\n    -> all Transfer where account == lg.account as tx\n    .within(20m)\n    .emit(account: lg.account)",
        );
        let s = p.streams().next().unwrap();
        assert_eq!(s.steps.len(), 2);
        assert!(s.steps[1].all);
        assert_eq!(s.steps[1].alias.as_ref().unwrap().name, "tx");
        assert_eq!(
            s.steps[0].filter.as_ref().map(sx),
            Some("(== account (. lg account))".into())
        );
        assert_eq!(s.ops.len(), 2);
    }

    #[test]
    fn tier2_sources_and_not_filters_parse() {
        let p = parse_ok(
            "stream M = merge(A, stream Hot = B .where(t > 1))\nstream J = join(A, B) .on(A.k == B.k) .window(5m)\nstream K = all Transfer as tx -> Logout .not(SupportCall where account == tx.account)",
        );
        let kinds: Vec<_> = p.streams().map(|s| &s.source.kind).collect();
        let SourceKind::Merge(inputs) = kinds[0] else {
            panic!("{:?}", kinds[0])
        };
        assert_eq!(inputs.len(), 2);
        assert_eq!(
            inputs[1].name.as_ref().map(|n| n.name.as_str()),
            Some("Hot")
        );
        assert_eq!(inputs[1].ops.len(), 1);
        assert!(matches!(kinds[1], SourceKind::Join(i) if i.len() == 2));
        assert_eq!(
            p.streams().nth(1).map(|s| s.ops[0].kind()),
            Some(OpKind::On)
        );
        assert!(
            matches!(kinds[2], SourceKind::All { name, alias: Some(_) } if name.name == "Transfer")
        );
        let not = p
            .streams()
            .nth(2)
            .and_then(|s| s.ops[0].first_positional().cloned());
        assert!(
            matches!(not.map(|e| e.kind), Some(ExprKind::EventFilter { event, .. }) if event.name == "SupportCall")
        );
    }

    #[test]
    fn declarations() {
        let p = parse_ok(
            "event PumpReading:\n    pump: str\n    rpm: int\n    tags: [str]\n    m: {str: float}\n    note: str?\nconnector Plant = mqtt(host: \"b\", port: 1883)\ncontext ingest\ncontext crunch (cores: [2, 3])\nlet a = 1\nvar b = 2\nconst c: int = 3\nb := b + 1\n",
        );
        let ev = p.events().next().unwrap();
        assert_eq!(ev.fields.len(), 5);
        assert!(matches!(ev.fields[4].ty.kind, TypeKind::Optional(_)));
        assert!(matches!(ev.fields[3].ty.kind, TypeKind::Map(..)));
        let c = p.connectors().next().unwrap();
        assert_eq!((c.kind.name.as_str(), c.params.len()), ("mqtt", 2));
        let ctx: Vec<_> = p
            .contexts()
            .map(|c| (c.name.name.clone(), c.params.len()))
            .collect();
        assert_eq!(
            ctx,
            vec![("ingest".to_string(), 0), ("crunch".to_string(), 1)]
        );
        assert_eq!(p.items.len(), 8);
        assert!(matches!(&p.items[7], Item::Assign(a) if a.target.name == "b"));
        assert!(
            matches!(&p.items[6], Item::Binding(b) if b.kind == BindingKind::Const && b.ty.is_some())
        );
    }

    #[test]
    fn statements_and_layout() {
        let src = "fn f(n: int, xs) -> int:\n    var t = 0\n    for i in 0..n:\n        if i % 2 == 0:\n            continue\n        elif i > 10:\n            break\n        else:\n            t := t +\n                i\n    while t > 100:\n        t := t - 1\n    for x in xs:\n        emit Out(x: x,\n    y: 2)\n    return t\nfn g():\n    return\nlet after = 1\n";
        let p = parse_ok(src);
        let f = p.function("f").unwrap();
        assert!(p.function("nope").is_none());
        assert_eq!(f.params.len(), 2);
        assert!(f.params[1].ty.is_none());
        assert!(f.ret.is_some());
        let kinds: Vec<&str> = f
            .body
            .stmts
            .iter()
            .map(|s| match &s.kind {
                StmtKind::Binding(_) => "let",
                StmtKind::For { .. } => "for",
                StmtKind::While { .. } => "while",
                StmtKind::Return(Some(_)) => "return",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, vec!["let", "for", "while", "for", "return"]);
        let StmtKind::For { body, .. } = &f.body.stmts[1].kind else {
            panic!()
        };
        let StmtKind::If {
            branches,
            else_body,
        } = &body.stmts[0].kind
        else {
            panic!()
        };
        assert_eq!(branches.len(), 2);
        let else_body = else_body.as_ref().unwrap();
        // the continuation line (deeper indentation) belongs to the assignment
        assert!(
            matches!(&else_body.stmts[0].kind, StmtKind::Assign(a) if sx(&a.value) == "(+ t i)")
        );
        let g = p.functions().nth(1).unwrap();
        assert!(matches!(g.body.stmts[0].kind, StmtKind::Return(None)));
        assert_eq!(p.items.len(), 3);
    }

    #[test]
    fn conditional_expression_as_a_statement() {
        let p = parse_ok("fn pick(a):\n    if a > f(1, [2]) then \"x\" else \"y\"\n    if a:\n        return 1\n");
        let f = p.functions().next().unwrap();
        assert!(
            matches!(&f.body.stmts[0].kind, StmtKind::Expr(e) if matches!(e.kind, ExprKind::If { .. }))
        );
        assert!(matches!(&f.body.stmts[1].kind, StmtKind::If { .. }));
    }

    #[test]
    fn multiline_chains_at_top_level() {
        let p =
            parse_ok("stream S = A\n.where(x > 1)\n        .emit(\n  x: x)\nstream T = S .emit()");
        assert_eq!(
            p.streams().map(|s| s.ops.len()).collect::<Vec<_>>(),
            vec![2, 1]
        );
    }

    #[test]
    fn statements_end_at_line_end_in_blocks() {
        // `return` without a value must not swallow the next line
        let p = parse_ok("fn f(x):\n    if x:\n        return\n    -x\n");
        let f = p.functions().next().unwrap();
        assert_eq!(f.body.stmts.len(), 2);
        assert!(matches!(&f.body.stmts[1].kind, StmtKind::Expr(e) if sx(e) == "(neg x)"));
    }

    #[test]
    fn errors_recover_to_the_next_declaration() {
        let d = parse_program(
            "stream A = X .where(\nstream B = Y .emit(v: 1 +)\nlet ok = 1\nstream C = Z .emit(v: ))\n",
        )
        .1;
        let lines: Vec<u32> = d.iter().map(|d| d.span.line).collect();
        assert_eq!(lines, vec![1, 2, 4], "{d:#?}");
    }

    #[test]
    fn errors_in_blocks_recover_per_line() {
        let (p, d) =
            parse_program("fn f():\n    let = 1\n    let y = 2\n    x := )\n    return y\n");
        assert_eq!(d.len(), 2, "{d:#?}");
        assert_eq!(d[0].span.line, 2);
        assert_eq!(d[1].span.line, 4);
        assert_eq!(p.functions().next().map(|f| f.body.stmts.len()), Some(2));
    }

    #[test]
    fn layout_errors() {
        assert_eq!(
            errs("fn f():\nlet x = 1\n"),
            vec!["expected an indented block after `:`"]
        );
        assert_eq!(
            errs("fn f(): return 1\n"),
            vec!["expected a new line after `:`, found `return`"]
        );
        assert_eq!(
            errs("fn f():\n    let x = 1\n  let y = 2\n"),
            vec!["inconsistent indentation: expected column 5, found column 3"]
        );
        assert_eq!(
            errs("fn f():\n    return 1 2\n"),
            vec!["expected end of line, found integer `2`"]
        );
    }

    #[test]
    fn hints_for_equals_sign_mistakes() {
        let d = parse_program("stream S = A .where(x = 1)").1;
        assert_eq!(d[0].message, "expected `,` or `)`, found `=`");
        assert_eq!(
            d[0].hint.as_deref(),
            Some("use `==` to compare, or `name: value` for a named argument")
        );
        let d = parse_program("fn f():\n    x = 1\n").1;
        assert_eq!(d[0].message, "expected end of line, found `=`");
        assert!(d[0].hint.as_deref().is_some_and(|h| h.contains(":=")));
    }

    #[test]
    fn misplaced_statements() {
        assert_eq!(
            errs("emit X(a: 1)"),
            vec!["`emit` is only allowed inside a function"]
        );
        assert_eq!(
            errs("return 1"),
            vec!["`return` is only allowed inside a function"]
        );
        assert_eq!(
            errs("break"),
            vec!["`break` is only allowed inside a function"]
        );
        assert_eq!(
            errs("fn f():\n    else:\n        x\n"),
            vec!["`else` without a matching `if`"]
        );
        assert_eq!(
            errs("stram S = A"),
            vec!["expected a declaration (`stream`, `event`, `fn`, `let`, …), found `stram`"]
        );
        let d = parse_program("stram S = A").1;
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `stream`?"));
        assert_eq!(
            errs("pattern P = SEQ(A)"),
            vec!["`pattern` declarations are not supported yet (Tier 3)"]
        );
    }

    #[test]
    fn deep_nesting_is_a_diagnostic_not_a_crash() {
        let src = format!("let x = {}1{}", "(".repeat(5000), ")".repeat(5000));
        let d = errs(&src);
        assert_eq!(d, vec![format!("nesting deeper than {MAX_DEPTH} levels")]);
        let src = format!("let x = {}1", "-".repeat(5000));
        assert_eq!(errs(&src).len(), 1);
        let mut src = String::from("fn f():\n");
        for i in 1..300 {
            src.push_str(&" ".repeat(i * 2));
            src.push_str("if x:\n");
        }
        assert!(!errs(&src).is_empty());
    }

    #[test]
    fn spans_point_at_the_problem() {
        let (_, d) = parse_program("stream S = A\n    .where(x > )");
        assert_eq!((d[0].span.line, d[0].span.column), (2, 16));
        assert_eq!(d[0].message, "expected an expression, found `)`");
    }
}
