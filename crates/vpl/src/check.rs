//! Semantic analysis (stub, being written).
use crate::ast::Program;
use crate::Diagnostic;

/// Options for [`crate::check`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Connector names provided from outside the program (e.g. registered with the coordinator);
    /// `.from`/`.to` may use them without a `connector` declaration.
    pub external_connectors: Vec<String>,
}

/// A program that passed the checks.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The parsed program.
    pub program: Program,
    /// Non-fatal findings.
    pub warnings: Vec<Diagnostic>,
}

/// Runs all semantic checks.
pub fn check_program(_program: &Program, _options: &CheckOptions) -> Vec<Diagnostic> {
    Vec::new()
}
