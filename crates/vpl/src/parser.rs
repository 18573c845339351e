//! Parser (stub, being written).
use crate::ast::Program;
use crate::Diagnostic;

/// Parses a whole program.
pub fn parse_program(_src: &str) -> (Program, Vec<Diagnostic>) {
    (Program::default(), Vec::new())
}
