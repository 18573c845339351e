//! Source positions.
//!
//! A [`Span`] is a half-open byte range into the source text plus the 1-based line and column of its
//! first character. Columns count characters (not bytes); a tab is one column. Every AST node and
//! every diagnostic carries one, so errors can always point at `line:column`.

use serde::Serialize;

/// A region of the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte (`end >= start`).
    pub end: usize,
    /// 1-based line of `start`.
    pub line: u32,
    /// 1-based column (in characters) of `start`.
    pub column: u32,
    /// Which source file: 0 is the program itself, `n` the `n`-th imported file (see
    /// [`crate::SourceFile`]). Byte offsets, line and column are within that file.
    pub file: u32,
}

impl Span {
    /// Builds a span from its parts.
    pub fn new(start: usize, end: usize, line: u32, column: u32) -> Self {
        Span {
            start,
            end: end.max(start),
            line,
            column,
            file: 0,
        }
    }

    /// The same position in source file `file`.
    pub fn in_file(mut self, file: u32) -> Span {
        self.file = file;
        self
    }

    /// The smallest span covering `self` and `other` (line/column taken from the earlier one).
    /// Spans of different files do not combine: the result is `self`.
    pub fn to(self, other: Span) -> Span {
        if self.file != other.file {
            return self;
        }
        let (first, _) = if other.start < self.start {
            (other, self)
        } else {
            (self, other)
        };
        Span {
            start: first.start,
            end: self.end.max(other.end),
            line: first.line,
            column: first.column,
            file: self.file,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when the span covers no bytes (e.g. end of input).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}
