//! Compiler diagnostics: errors and warnings with a position, a message and an optional hint,
//! rendered in the familiar `rustc` style.

use std::fmt::Write as _;

use serde::Serialize;

use crate::source::SourceFile;
use crate::span::Span;
use std::sync::Arc;

/// How serious a diagnostic is. Errors stop a program from loading; warnings never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The program is rejected.
    Error,
    /// The program loads; something looks suspicious.
    Warning,
}

/// One error or warning about a VPL source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}:{}: {}: {}", span.line, span.column, severity_word(*severity), message)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong (one line, no trailing period).
    pub message: String,
    /// Where (line/column of the start plus the byte range).
    pub span: Span,
    /// A cheap suggestion, shown after the caret line (`help: …`).
    pub hint: Option<String>,
    /// The imported file the span points into (`None`: the program's own source).
    pub file: Option<Arc<SourceFile>>,
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            hint: None,
            file: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            message: message.into(),
            span,
            hint: None,
            file: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// 1-based line.
    pub fn line(&self) -> u32 {
        self.span.line
    }

    /// 1-based column (characters).
    pub fn column(&self) -> u32 {
        self.span.column
    }

    /// Renders the diagnostic compiler-style, quoting the offending source line:
    ///
    /// ```text
    /// error: unknown function `foo`
    ///  --> pipeline.vpl:3:12
    ///   |
    /// 3 |     .where(foo(x) > 1)
    ///   |            ^^^ help: did you mean `floor`?
    /// ```
    pub fn render(&self, source: &str, file_name: &str) -> String {
        let (source, file_name) = match &self.file {
            Some(f) => (f.text.as_str(), f.name.as_str()),
            None => (source, file_name),
        };
        let mut out = String::new();
        let line_no = self.span.line.max(1);
        let _ = writeln!(out, "{}: {}", severity_word(self.severity), self.message);
        let num = line_no.to_string();
        let pad = " ".repeat(num.len());
        let _ = writeln!(
            out,
            "{pad}--> {file_name}:{}:{}",
            line_no,
            self.span.column.max(1)
        );
        let line_text = source.lines().nth(line_no as usize - 1);
        match line_text {
            Some(text) => {
                let text = text.strip_suffix('\r').unwrap_or(text);
                let _ = writeln!(out, "{pad} |");
                let _ = writeln!(out, "{num} | {text}");
                let col = self.span.column.max(1) as usize;
                let line_chars = text.chars().count();
                // Width of the caret run: the span's characters on this line, at least one.
                let width = source
                    .get(self.span.start..self.span.end)
                    .map(|s| s.split('\n').next().unwrap_or("").chars().count())
                    .unwrap_or(1)
                    .min(line_chars.saturating_sub(col - 1).max(1))
                    .max(1);
                // Keep tabs so the caret lines up under tab-indented code.
                let lead: String = text
                    .chars()
                    .take(col - 1)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let lead = if lead.chars().count() < col - 1 {
                    format!("{lead}{}", " ".repeat(col - 1 - lead.chars().count()))
                } else {
                    lead
                };
                let _ = write!(out, "{pad} | {lead}{}", "^".repeat(width));
                if let Some(h) = &self.hint {
                    let _ = write!(out, " help: {h}");
                }
                out.push('\n');
            }
            None => {
                if let Some(h) = &self.hint {
                    let _ = writeln!(out, "{pad} = help: {h}");
                }
            }
        }
        out
    }
}

/// Renders every diagnostic, separated by blank lines.
pub fn render_all(source: &str, file_name: &str, diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| d.render(source, file_name))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_compiler_style_with_hint() {
        let src = "stream S = A\n  .emit(x: 1)\n    .where(foo(x) > 1)\n";
        let start = src.find("foo").unwrap_or(0);
        let d = Diagnostic::error("unknown function `foo`", Span::new(start, start + 3, 3, 12))
            .with_hint("did you mean `floor`?");
        let r = d.render(src, "pipeline.vpl");
        let expected = "error: unknown function `foo`\n --> pipeline.vpl:3:12\n  |\n3 |     .where(foo(x) > 1)\n  |            ^^^ help: did you mean `floor`?\n";
        assert_eq!(r, expected);
    }

    #[test]
    fn renders_past_end_without_panicking() {
        let d = Diagnostic::warning("w", Span::new(100, 120, 9, 40)).with_hint("h");
        let r = d.render("abc", "f.vpl");
        assert!(r.starts_with("warning: w\n --> f.vpl:9:40\n"));
        assert!(r.contains("help: h"));
    }
}
