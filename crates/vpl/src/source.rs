//! Source files of a program: the program itself and the files it imports.
//!
//! `import "path" [as alias]` needs the file system, which the front-end does not touch: the
//! caller passes a [`Loader`] in [`crate::CheckOptions`] (the CLI reads files relative to the
//! importing one; a worker, which only ever receives program text, passes none and imports are
//! errors there). Every span names its file (`Span::file`), so diagnostics point into the
//! imported file, and [`crate::Diagnostic`]s about an imported file carry that file for rendering.

use serde::Serialize;
use std::sync::Arc;

/// One imported source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFile {
    /// The name shown in diagnostics (the path as resolved by the loader).
    pub name: String,
    /// Its text.
    #[serde(skip)]
    pub text: String,
}

/// Reads imported files for `import "path"`.
pub trait Loader: Send + Sync {
    /// Loads `path` as written in an `import` of file `from` (the program's own file name for the
    /// main program). Returns the resolved name (used to detect cycles and repeated imports, and
    /// shown in diagnostics) and the text, or an error message.
    fn load(&self, from: &str, path: &str) -> Result<(String, String), String>;
}

impl std::fmt::Debug for dyn Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Loader")
    }
}

/// A loader reading files relative to the directory of the importing file.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsLoader;

impl Loader for FsLoader {
    fn load(&self, from: &str, path: &str) -> Result<(String, String), String> {
        let base = std::path::Path::new(from)
            .parent()
            .unwrap_or_else(|| std::path::Path::new(""));
        let full = base.join(path);
        let name = full.to_string_lossy().into_owned();
        match std::fs::read_to_string(&full) {
            Ok(text) => Ok((name, text)),
            Err(e) => Err(format!("cannot read `{name}`: {e}")),
        }
    }
}

/// The imported files of a parsed program: file `n` of a span is `files[n - 1]`.
pub type Imports = Vec<Arc<SourceFile>>;
