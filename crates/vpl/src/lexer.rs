//! Lexer (stub, being written).
