//! The VPL front-end: lexer, parser, AST, semantic checks and diagnostics with line/column.
//!
//! ```
//! let (program, diags) = varpulis_vpl::parse("stream S = A .where(x > 1) .emit(x: x)");
//! assert!(diags.is_empty());
//! assert_eq!(program.streams().count(), 1);
//! ```

#![warn(missing_docs)]

pub mod ast;
pub mod builtins;
pub mod check;
pub mod correlate;
pub mod diagnostics;
pub mod lexer;
pub mod parser;
pub mod suggest;
pub mod span;

pub use check::{CheckOptions, Checked};
pub use diagnostics::{render_all, Diagnostic, Severity};
pub use span::Span;

/// Parses `src` into a program, recovering from errors: every syntax error found is returned (sorted
/// by position) together with the best-effort tree. The program is only meaningful when no
/// diagnostic is an error.
pub fn parse(src: &str) -> (ast::Program, Vec<Diagnostic>) {
    parser::parse_program(src)
}

/// Parses and checks `src`. On success returns the program and its warnings; otherwise every
/// error, sorted by position: all syntax errors when there are any (semantic checks on a partly
/// parsed program would report phantom problems), else all semantic errors.
pub fn check(src: &str, options: &CheckOptions) -> Result<Checked, Vec<Diagnostic>> {
    let (program, mut diags) = parse(src);
    if diags.iter().any(Diagnostic::is_error) {
        diags.retain(Diagnostic::is_error);
        sort_diagnostics(&mut diags);
        return Err(diags);
    }
    let mut more = check::check_program(&program, options);
    more.append(&mut diags);
    sort_diagnostics(&mut more);
    if more.iter().any(Diagnostic::is_error) {
        more.retain(Diagnostic::is_error);
        return Err(more);
    }
    Ok(Checked {
        program,
        warnings: more,
    })
}

/// Sorts diagnostics by position (then message) and drops exact duplicates.
pub fn sort_diagnostics(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| {
        (a.span.start, a.span.end, &a.message).cmp(&(b.span.start, b.span.end, &b.message))
    });
    diags.dedup();
}
