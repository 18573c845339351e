//! Token-level expansions at top level: `import "path" [as alias]` splices the imported file's
//! tokens in place of the statement; a template `for v in a..b:` replaces itself with one copy of
//! its body per value, `{v}` substituted; `config …` blocks (deprecated) are skipped.
//!
//! Both expansions keep every token's original span (file, line, column), so diagnostics about
//! imported or expanded code point at the text the user wrote: a template body error points into
//! the template, an imported file's error into that file.

use super::{Fail, PResult, Parser};
use crate::diagnostics::Diagnostic;
use crate::lexer::{tokenize, tokenize_file, Tok, Token};
use crate::source::SourceFile;
use crate::span::Span;
use std::sync::Arc;

/// Deepest chain of imports (`a` imports `b` imports `c` …).
pub const MAX_IMPORT_DEPTH: usize = 16;
/// Most template iterations a program may expand (all templates together, nested ones counted
/// once per copy).
pub const MAX_TEMPLATE_ITERATIONS: usize = 10_000;
/// Most tokens a program may have after expansion.
const MAX_EXPANDED_TOKENS: usize = 2_000_000;

impl Parser {
    /// `import "path" [as alias]`: loads the file (once per program) and splices its tokens here.
    pub(super) fn import(&mut self) -> PResult<()> {
        let start = self.pos;
        let kw = self.bump();
        let (path, path_span) = match self.peek().clone() {
            Tok::Str(s) => (s, self.bump().span),
            _ => {
                let msg = format!("expected the imported file's path, found {}", self.found());
                return Err(self.error_here(msg));
            }
        };
        if self.eat_word("as") {
            let alias = self.ident("a name after `as`")?;
            self.push(
                Diagnostic::warning(
                    format!(
                        "`as {}` has no effect: the imported declarations keep their own names",
                        alias.name
                    ),
                    alias.span,
                )
                .with_hint("VPL has one namespace per kind of name; remove `as …`"),
            );
        }
        let end = self.pos;
        let Some(loader) = self.loader.clone() else {
            self.push(
                Diagnostic::error(
                    "`import` needs a program read from a file; this program was given as text",
                    kw.span.to(path_span),
                )
                .with_hint(
                    "run `varpulis check`/`run` on the file, or inline the imported declarations",
                ),
            );
            return Err(Fail);
        };
        let from_file = path_span.file;
        let from_name = self.file_label(from_file);
        let (name, text) = match loader.load(&from_name, &path) {
            Ok(x) => x,
            Err(e) => {
                self.push(Diagnostic::error(e, path_span));
                return Err(Fail);
            }
        };
        // The chain of files that led here, the importing file last.
        let mut chain = vec![from_file];
        while let Some(&f) = chain.last() {
            if f == 0 {
                break;
            }
            chain.push(self.import_parent[f as usize - 1]);
        }
        chain.reverse();
        let names: Vec<String> = chain.iter().map(|f| self.file_label(*f)).collect();
        if names.contains(&name) {
            let mut cycle = names[names.iter().position(|n| *n == name).unwrap_or(0)..].to_vec();
            cycle.push(name);
            self.push(
                Diagnostic::error(format!("import cycle: {}", cycle.join(" -> ")), path_span)
                    .with_hint("move the shared declarations into a file that imports nothing"),
            );
            return Err(Fail);
        }
        if chain.len() > MAX_IMPORT_DEPTH {
            self.push(Diagnostic::error(
                format!("imports nested more than {MAX_IMPORT_DEPTH} files deep"),
                path_span,
            ));
            return Err(Fail);
        }
        // Each file is imported once, however many files import it.
        if self.imports.iter().any(|f| f.name == name) {
            return self.splice(start, end, Vec::new());
        }
        let id = self.imports.len() as u32 + 1;
        let (mut toks, mut diags) = tokenize_file(&text, id);
        self.diags.append(&mut diags);
        toks.retain(|t| !matches!(t.kind, Tok::Eof));
        self.texts.push(Arc::from(text.as_str()));
        self.imports.push(Arc::new(SourceFile { name, text }));
        self.import_parent.push(from_file);
        self.splice(start, end, toks)?;
        Ok(())
    }

    /// The name of source file `file` for diagnostics and loader calls.
    fn file_label(&self, file: u32) -> String {
        match file {
            0 => self.file_name.clone(),
            n => self
                .imports
                .get(n as usize - 1)
                .map(|f| f.name.clone())
                .unwrap_or_default(),
        }
    }

    /// Replaces tokens `start..end` by `with` and moves the cursor to the first of them.
    fn splice(&mut self, start: usize, end: usize, with: Vec<Token>) -> PResult<()> {
        if self.toks.len() - (end - start) + with.len() > MAX_EXPANDED_TOKENS {
            let span = self.raw(start).span;
            self.push(Diagnostic::error(
                format!("the program is larger than {MAX_EXPANDED_TOKENS} tokens after imports and templates"),
                span,
            ));
            return Err(Fail);
        }
        self.toks.splice(start..end, with);
        self.pos = start;
        self.stmt_start = start;
        self.spliced = true;
        Ok(())
    }

    /// `config [name] { … }` or `config [name]:` + an indented block: deprecated, skipped with a
    /// warning.
    pub(super) fn config_block(&mut self) -> PResult<()> {
        let kw = self.bump();
        let col = kw.span.column;
        if matches!(self.peek(), Tok::Ident(_)) {
            self.bump();
        }
        match self.peek() {
            Tok::LBrace => {
                let mut depth = 0usize;
                loop {
                    match self.raw(self.pos).kind {
                        Tok::LBrace => depth += 1,
                        Tok::RBrace => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                self.bump();
                                break;
                            }
                        }
                        Tok::Eof => {
                            self.push(Diagnostic::error("unclosed `config` block", kw.span));
                            return Err(Fail);
                        }
                        _ => {}
                    }
                    self.bump();
                }
            }
            Tok::Colon => {
                self.bump();
                loop {
                    let t = self.raw(self.pos);
                    if matches!(t.kind, Tok::Eof) || (t.line_start && t.span.column <= col) {
                        break;
                    }
                    self.bump();
                }
            }
            _ => {
                let msg = format!(
                    "expected `{{` or `:` after `config`, found {}",
                    self.found()
                );
                return Err(self.error_here(msg));
            }
        }
        self.push(
            Diagnostic::warning(
                "`config` blocks are deprecated and ignored",
                self.span_from(kw.span),
            )
            .with_hint("declare connectors with `connector Name = mqtt(…)` and bind them with `.from`/`.to`"),
        );
        Ok(())
    }

    /// A top-level template `for v in a..b:` (or `in [x, y, …]`): its indented body is repeated
    /// once per value with `{v}` replaced by the value, then parsed as top-level declarations.
    pub(super) fn template(&mut self) -> PResult<()> {
        let start = self.pos;
        let kw = self.bump();
        let var = self.ident("a loop variable")?;
        self.expect(&Tok::In, "`in`")?;
        let iter = self.expr()?;
        let values = match template_values(&iter) {
            Ok(v) => v,
            Err(msg) => {
                self.push(
                    Diagnostic::error(msg, iter.span)
                        .with_hint("a template loops over a literal range (`0..4`, `1..=3`) or array (`[\"a\", \"b\"]`)"),
                );
                return Err(Fail);
            }
        };
        self.expect(&Tok::Colon, "`:` after the template header")?;
        let body_start = self.pos;
        let first = self.raw(body_start);
        if matches!(first.kind, Tok::Eof)
            || !first.line_start
            || first.span.column <= kw.span.column
        {
            let span = self.prev_span();
            self.push(
                Diagnostic::error("expected an indented block after `:`", span).with_hint(
                    "put the declarations to repeat on the following lines, indented deeper",
                ),
            );
            return Err(Fail);
        }
        let mut body_end = body_start;
        loop {
            let t = self.raw(body_end);
            if matches!(t.kind, Tok::Eof) || (t.line_start && t.span.column <= kw.span.column) {
                break;
            }
            body_end += 1;
        }
        self.expanded += values.len();
        if self.expanded > MAX_TEMPLATE_ITERATIONS {
            self.push(
                Diagnostic::error(
                    format!(
                        "template `for` loops expand to more than {MAX_TEMPLATE_ITERATIONS} copies"
                    ),
                    kw.span.to(iter.span),
                )
                .with_hint("loop over fewer values, or nest fewer templates"),
            );
            return Err(Fail);
        }
        let body: Vec<Token> = self.toks[body_start..body_end].to_vec();
        let placeholder = format!("{{{}}}", var.name);
        let mut out = Vec::with_capacity(body.len() * values.len());
        for v in &values {
            self.substitute(&body, &placeholder, v, &mut out);
            if out.len() > MAX_EXPANDED_TOKENS {
                break;
            }
        }
        self.splice(start, body_end, out)
    }

    /// Appends `body` with `placeholder` replaced by `value`: every run of byte-adjacent tokens
    /// whose text contains the placeholder is re-lexed after substitution (so `t{i}` becomes the
    /// identifier `t0` and `"s-{i}"` the string `"s-0"`); the new tokens keep the run's position.
    fn substitute(&mut self, body: &[Token], placeholder: &str, value: &str, out: &mut Vec<Token>) {
        let mut i = 0;
        while i < body.len() {
            let mut j = i + 1;
            while j < body.len()
                && body[j].span.file == body[j - 1].span.file
                && body[j].span.start == body[j - 1].span.end
            {
                j += 1;
            }
            let run = &body[i..j];
            let file = run[0].span.file;
            let text = self
                .texts
                .get(file as usize)
                .and_then(|t| t.get(run[0].span.start..run[j - i - 1].span.end))
                .unwrap_or("");
            if !text.contains(placeholder) {
                out.extend_from_slice(run);
                i = j;
                continue;
            }
            let replaced = text.replace(placeholder, value);
            let (toks, diags) = tokenize(&replaced);
            let first = &run[0];
            let last = &run[run.len() - 1];
            let span = Span {
                start: first.span.start,
                end: last.span.end,
                line: first.span.line,
                column: first.span.column,
                file,
            };
            for d in diags {
                self.push(Diagnostic::error(
                    format!("in the template copy for `{value}`: {}", d.message),
                    span,
                ));
            }
            let mut line_start = first.line_start;
            for t in toks.into_iter().filter(|t| !matches!(t.kind, Tok::Eof)) {
                out.push(Token {
                    kind: t.kind,
                    span,
                    line_start,
                    end_line: last.end_line,
                    end_column: last.end_column,
                });
                line_start = false;
            }
            i = j;
        }
    }
}

/// The values of a template loop: a literal int range or an array of literals, as text.
fn template_values(e: &crate::ast::Expr) -> Result<Vec<String>, String> {
    use crate::ast::{ExprKind, UnaryOp};
    fn int(e: &crate::ast::Expr) -> Option<i64> {
        match &e.kind {
            ExprKind::Int(i) => Some(*i),
            ExprKind::Unary {
                op: UnaryOp::Neg,
                operand,
            } => match operand.kind {
                ExprKind::Int(i) => i.checked_neg(),
                _ => None,
            },
            _ => None,
        }
    }
    match &e.kind {
        ExprKind::Range {
            start,
            end,
            inclusive,
        } => {
            let (Some(a), Some(b)) = (int(start), int(end)) else {
                return Err("template range bounds must be integer literals".into());
            };
            let b = if *inclusive { b.saturating_add(1) } else { b };
            let n = b.saturating_sub(a).max(0);
            if n as u128 > MAX_TEMPLATE_ITERATIONS as u128 {
                return Err(format!(
                    "a template loop of {n} iterations exceeds the limit of {MAX_TEMPLATE_ITERATIONS}"
                ));
            }
            Ok((a..b).map(|i| i.to_string()).collect())
        }
        ExprKind::Array(items) => items
            .iter()
            .map(|i| match &i.kind {
                ExprKind::Str(s) => Ok(s.clone()),
                ExprKind::Name(n) => Ok(n.name.clone()),
                ExprKind::Bool(b) => Ok(b.to_string()),
                ExprKind::Float(f) => Ok(f.to_string()),
                _ => int(i)
                    .map(|v| v.to_string())
                    .ok_or_else(|| "template values must be literals".to_string()),
            })
            .collect(),
        ExprKind::Int(n) if *n >= 0 => {
            if *n as u128 > MAX_TEMPLATE_ITERATIONS as u128 {
                return Err(format!(
                    "a template loop of {n} iterations exceeds the limit of {MAX_TEMPLATE_ITERATIONS}"
                ));
            }
            Ok((0..*n).map(|i| i.to_string()).collect())
        }
        _ => Err("a template `for` needs a literal range or array".into()),
    }
}
