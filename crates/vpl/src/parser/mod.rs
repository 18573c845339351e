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
use crate::source::{Imports, Loader};
use std::sync::Arc;

mod compose;
mod decl;
mod expand;
mod expr;
mod pattern;
mod stmt;
mod stream;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

/// Deepest nesting of expressions and blocks accepted.
pub const MAX_DEPTH: usize = 100;

/// Most diagnostics reported for one source; beyond this, parsing output is noise.
const MAX_DIAGNOSTICS: usize = 100;

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

/// Statement words that do not start a declaration.
const CONTROL_WORDS: &[&str] = &[
    "elif", "for", "while", "break", "continue", "return", "emit",
];

/// Statement words: keywords only at the start of a statement (§1), declarations first.
pub fn statement_words() -> impl Iterator<Item = &'static str> {
    DECLARATION_WORDS.iter().chain(CONTROL_WORDS).copied()
}

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
/// syntactic) in source order. `import` is an error here (no loader).
pub fn parse_program(src: &str) -> (Program, Vec<Diagnostic>) {
    let (program, diags, _) = parse_with(src, &ParseOptions::default());
    (program, diags)
}

/// How to parse a program that may import files.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// The program's own file name (imports are resolved relative to it).
    pub file_name: String,
    /// Reads imported files; `None`: `import` is an error.
    pub loader: Option<Arc<dyn Loader>>,
}

/// Parses a program and the files it imports (spliced in place of each `import`), expanding
/// top-level template `for` loops. Returns the tree, every diagnostic (those about an imported
/// file carry it) and the imported files.
pub fn parse_with(src: &str, opts: &ParseOptions) -> (Program, Vec<Diagnostic>, Imports) {
    let (tokens, lex_diags) = tokenize(src);
    let mut p = Parser {
        toks: tokens,
        pos: 0,
        diags: Vec::new(),
        fence: None,
        stmt_start: 0,
        depth: 0,
        stop_at_chain_op: false,
        texts: vec![Arc::from(src)],
        file_name: opts.file_name.clone(),
        loader: opts.loader.clone(),
        imports: Vec::new(),
        import_parent: Vec::new(),
        expanded: 0,
        spliced: false,
        extra_items: Vec::new(),
    };
    let mut program = p.program();
    compose::expand_pattern_refs(&mut program, &mut p.diags);
    let mut diags = lex_diags;
    diags.append(&mut p.diags);
    crate::sort_diagnostics(&mut diags);
    diags.truncate(MAX_DIAGNOSTICS);
    crate::attach_files(&mut diags, &p.imports);
    (program, diags, p.imports)
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
    /// Text of every source file by file id (0: the program).
    texts: Vec<Arc<str>>,
    /// The program's file name.
    file_name: String,
    /// Reads imported files.
    loader: Option<Arc<dyn Loader>>,
    /// Imported files (file id `n` is `imports[n - 1]`).
    imports: Imports,
    /// The file that imported file `n` (`import_parent[n - 1]`).
    import_parent: Vec<u32>,
    /// Template iterations expanded so far (capped).
    expanded: usize,
    /// An import or template just replaced its tokens: the cursor is at the new tokens (not stuck).
    spliced: bool,
    /// Items produced alongside the current one (the pattern of a stream written with pattern
    /// syntax), emitted before it.
    extra_items: Vec<Item>,
}

impl Parser {
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
            return Span::new(p.span.end, p.span.end, p.end_line, p.end_column)
                .in_file(p.span.file);
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

    /// Items up to a `)` (left in place), separated by commas, a trailing comma allowed.
    fn comma_items<T>(&mut self, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let mut items = Vec::new();
        while !matches!(self.peek(), Tok::RParen) {
            items.push(item(self)?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(items)
    }

    /// [`Parser::comma_items`] and the closing `)` (`expected` names what else could come).
    fn comma_list<T>(
        &mut self,
        expected: &str,
        item: impl FnMut(&mut Self) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        let items = self.comma_items(item)?;
        self.expect(&Tok::RParen, expected)?;
        Ok(items)
    }

    fn program(&mut self) -> Program {
        let mut items = Vec::new();
        while !matches!(self.cur().kind, Tok::Eof) {
            let start = self.pos;
            self.stmt_start = start;
            match self.item() {
                Ok(Some(item)) => {
                    items.append(&mut self.extra_items);
                    items.push(item);
                }
                Ok(None) => {}
                Err(Fail) => {
                    self.extra_items.clear();
                    self.sync_top(start);
                }
            }
            if self.pos == start && !std::mem::take(&mut self.spliced) {
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
            "pattern" if matches!(self.peek_n(1), Tok::Ident(_)) => {
                Ok(Some(Item::Pattern(self.pattern_decl()?)))
            }
            "type" if matches!(self.peek_n(1), Tok::Ident(_)) => {
                Ok(Some(Item::Type(self.type_decl()?)))
            }
            "import" if matches!(self.peek_n(1), Tok::Str(_)) => {
                self.import()?;
                Ok(None)
            }
            "config" => {
                self.config_block()?;
                Ok(None)
            }
            "for" if matches!(self.peek_n(1), Tok::Ident(_)) => {
                self.template()?;
                Ok(None)
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
                if let Some(s) = crate::suggest::suggest(&word, statement_words()) {
                    d = d.with_hint(format!("did you mean `{s}`?"));
                }
                self.push(d);
                Err(Fail)
            }
        }
    }
}
