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
pub mod shape;
pub mod source;
pub mod span;
pub mod suggest;

pub use check::{CheckOptions, Checked};
pub use diagnostics::{render_all, Diagnostic, Severity};
pub use parser::ParseOptions;
pub use source::{FsLoader, Loader, SourceFile};
pub use span::Span;

/// Parses `src` into a program, recovering from errors: every syntax error found is returned (sorted
/// by position) together with the best-effort tree. The program is only meaningful when no
/// diagnostic is an error.
pub fn parse(src: &str) -> (ast::Program, Vec<Diagnostic>) {
    parser::parse_program(src)
}

/// Parses and checks `src`. On success returns the program and its warnings; otherwise every
/// error, sorted by position: all syntax errors when there are any (semantic checks on a partly
/// parsed program would report phantom problems), else all semantic errors. Diagnostics about an
/// imported file carry that file (see [`Diagnostic::file`]).
pub fn check(src: &str, options: &CheckOptions) -> Result<Checked, Vec<Diagnostic>> {
    check_with(src, options, &parser::ParseOptions::default())
}

/// Like [`check`], for a program read from a file: `parse.file_name` names it and
/// `parse.loader` reads the files it imports.
pub fn check_with(
    src: &str,
    options: &CheckOptions,
    parse: &parser::ParseOptions,
) -> Result<Checked, Vec<Diagnostic>> {
    let (program, mut diags, imports) = parser::parse_with(src, parse);
    if diags.iter().any(Diagnostic::is_error) {
        diags.retain(Diagnostic::is_error);
        sort_diagnostics(&mut diags);
        return Err(diags);
    }
    let mut more = check::check_program(&program, options);
    attach_files(&mut more, &imports);
    more.append(&mut diags);
    sort_diagnostics(&mut more);
    if more.iter().any(Diagnostic::is_error) {
        more.retain(Diagnostic::is_error);
        return Err(more);
    }
    Ok(Checked {
        program,
        warnings: more,
        imports,
    })
}

/// Points every diagnostic about an imported file at that file (for rendering).
pub fn attach_files(diags: &mut [Diagnostic], imports: &source::Imports) {
    for d in diags {
        if d.span.file > 0 && d.file.is_none() {
            d.file = imports.get(d.span.file as usize - 1).cloned();
        }
    }
}

/// Sorts diagnostics by position (then message) and drops exact duplicates.
pub fn sort_diagnostics(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| {
        (a.span.file, a.span.start, a.span.end, &a.message).cmp(&(
            b.span.file,
            b.span.start,
            b.span.end,
            &b.message,
        ))
    });
    diags.dedup();
}
