//! Lexer: turns source text into [`Token`]s with spans (§1).
//!
//! * Whitespace and comments (`#`, `//` to end of line, `/* … */` not nested) are skipped; newlines
//!   are not tokens. Instead every token records whether it is the first on its line
//!   ([`Token::line_start`]) and its column, which is all the parser's layout rule needs.
//! * Only the words reserved everywhere (`and or not in is if then else true false null`) become
//!   keyword tokens, and only as whole words. Statement words (`stream`, `let`, `emit`, …) are
//!   plain [`Tok::Ident`]s; the parser treats them as keywords at the start of a statement.
//! * Literals are decoded here: integers (i64), floats, strings (escapes), durations (ns) and
//!   timestamps (ns since the Unix epoch, UTC).
//! * Errors never stop the lexer: a diagnostic is recorded and lexing resumes after the bad text.
//!   The token list always ends with exactly one [`Tok::Eof`].

use crate::diagnostics::Diagnostic;
use crate::span::Span;

/// Token kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An identifier (including statement words such as `stream` or `let`).
    Ident(String),
    /// Integer literal.
    Int(i64),
    /// Float literal.
    Float(f64),
    /// String literal, escapes decoded.
    Str(String),
    /// Duration literal in nanoseconds.
    Duration(u64),
    /// Timestamp literal in nanoseconds since the Unix epoch.
    Timestamp(i64),
    /// `and`.
    And,
    /// `or`.
    Or,
    /// `not`.
    Not,
    /// `in`.
    In,
    /// `is` (reserved, unused).
    Is,
    /// `if`.
    If,
    /// `then`.
    Then,
    /// `else`.
    Else,
    /// `true`.
    True,
    /// `false`.
    False,
    /// `null`.
    Null,
    /// `+`.
    Plus,
    /// `-`.
    Minus,
    /// `*`.
    Star,
    /// `/`.
    Slash,
    /// `%`.
    Percent,
    /// `**`.
    StarStar,
    /// `==`.
    EqEq,
    /// `!=`.
    NotEq,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `&`.
    Amp,
    /// `|`.
    Pipe,
    /// `^`.
    Caret,
    /// `~`.
    Tilde,
    /// `<<`.
    Shl,
    /// `>>`.
    Shr,
    /// `=`.
    Assign,
    /// `:=`.
    ColonEq,
    /// `->`.
    Arrow,
    /// `=>`.
    FatArrow,
    /// `.`.
    Dot,
    /// `?.`.
    QuestionDot,
    /// `??`.
    QuestionQuestion,
    /// `?` (optional type suffix).
    Question,
    /// `..`.
    DotDot,
    /// `..=`.
    DotDotEq,
    /// `:`.
    Colon,
    /// `,`.
    Comma,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `[`.
    LBracket,
    /// `]`.
    RBracket,
    /// `{`.
    LBrace,
    /// `}`.
    RBrace,
    /// End of input.
    Eof,
}

impl Tok {
    /// A short description for "expected …, found …" messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(i) => format!("integer `{i}`"),
            Tok::Float(f) => format!("number `{f}`"),
            Tok::Str(_) => "a string".to_string(),
            Tok::Duration(_) => "a duration".to_string(),
            Tok::Timestamp(_) => "a timestamp".to_string(),
            Tok::Eof => "end of input".to_string(),
            other => format!("`{}`", other.symbol()),
        }
    }

    /// The source text of a keyword or operator token (empty for literals).
    pub fn symbol(&self) -> &'static str {
        match self {
            Tok::And => "and",
            Tok::Or => "or",
            Tok::Not => "not",
            Tok::In => "in",
            Tok::Is => "is",
            Tok::If => "if",
            Tok::Then => "then",
            Tok::Else => "else",
            Tok::True => "true",
            Tok::False => "false",
            Tok::Null => "null",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::StarStar => "**",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Amp => "&",
            Tok::Pipe => "|",
            Tok::Caret => "^",
            Tok::Tilde => "~",
            Tok::Shl => "<<",
            Tok::Shr => ">>",
            Tok::Assign => "=",
            Tok::ColonEq => ":=",
            Tok::Arrow => "->",
            Tok::FatArrow => "=>",
            Tok::Dot => ".",
            Tok::QuestionDot => "?.",
            Tok::QuestionQuestion => "??",
            Tok::Question => "?",
            Tok::DotDot => "..",
            Tok::DotDotEq => "..=",
            Tok::Colon => ":",
            Tok::Comma => ",",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            _ => "",
        }
    }

    /// The word of an identifier or reserved-word token (used after `.` and for argument names).
    pub fn word(&self) -> Option<&str> {
        match self {
            Tok::Ident(s) => Some(s),
            Tok::And
            | Tok::Or
            | Tok::Not
            | Tok::In
            | Tok::Is
            | Tok::If
            | Tok::Then
            | Tok::Else
            | Tok::True
            | Tok::False
            | Tok::Null => Some(self.symbol()),
            _ => None,
        }
    }
}

/// A token with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The kind (with decoded literal value).
    pub kind: Tok,
    /// Where it was written.
    pub span: Span,
    /// True when no other token precedes it on its line.
    pub line_start: bool,
    /// 1-based line just after the token's last character.
    pub end_line: u32,
    /// 1-based column just after the token's last character.
    pub end_column: u32,
}

/// Words reserved everywhere (§1).
fn reserved(word: &str) -> Option<Tok> {
    Some(match word {
        "and" => Tok::And,
        "or" => Tok::Or,
        "not" => Tok::Not,
        "in" => Tok::In,
        "is" => Tok::Is,
        "if" => Tok::If,
        "then" => Tok::Then,
        "else" => Tok::Else,
        "true" => Tok::True,
        "false" => Tok::False,
        "null" => Tok::Null,
        _ => return None,
    })
}

/// Splits `src` into tokens. Never fails: problems become diagnostics.
pub fn tokenize(src: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    tokenize_file(src, 0)
}

/// Like [`tokenize`], with every span (of tokens and diagnostics) in source file `file`.
pub fn tokenize_file(src: &str, file: u32) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut lx = Lexer {
        src,
        file,
        bytes: src.as_bytes(),
        pos: 0,
        line: 1,
        col: 1,
        line_has_token: false,
        tokens: Vec::new(),
        diags: Vec::new(),
    };
    lx.run();
    (lx.tokens, lx.diags)
}

struct Lexer<'a> {
    src: &'a str,
    file: u32,
    bytes: &'a [u8],
    pos: usize,
    line: u32,
    col: u32,
    line_has_token: bool,
    tokens: Vec<Token>,
    diags: Vec<Diagnostic>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Lexer<'_> {
    fn peek_at(&self, off: usize) -> Option<u8> {
        self.bytes.get(self.pos + off).copied()
    }

    /// Advances one character (whole UTF-8 sequence), keeping line and column.
    fn advance(&mut self) {
        let Some(&b) = self.bytes.get(self.pos) else {
            return;
        };
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
            self.line_has_token = false;
            self.pos += 1;
            return;
        }
        let width = self.src[self.pos..]
            .chars()
            .next()
            .map(char::len_utf8)
            .unwrap_or(1);
        self.pos += width;
        self.col += 1;
    }

    fn advance_n(&mut self, n: usize) {
        for _ in 0..n {
            self.advance();
        }
    }

    fn here(&self) -> (usize, u32, u32) {
        (self.pos, self.line, self.col)
    }

    fn span_from(&self, start: (usize, u32, u32)) -> Span {
        Span::new(start.0, self.pos, start.1, start.2).in_file(self.file)
    }

    fn push(&mut self, kind: Tok, start: (usize, u32, u32)) {
        let span = self.span_from(start);
        self.tokens.push(Token {
            kind,
            span,
            line_start: !self.line_has_token,
            end_line: self.line,
            end_column: self.col,
        });
        self.line_has_token = true;
    }

    fn error(&mut self, msg: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::error(msg, span));
    }

    fn run(&mut self) {
        while self.pos < self.bytes.len() {
            let b = self.bytes[self.pos];
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.advance(),
                b'#' => self.skip_line(),
                b'/' if self.peek_at(1) == Some(b'/') => self.skip_line(),
                b'/' if self.peek_at(1) == Some(b'*') => self.skip_block_comment(),
                b'"' => self.string(b'"'),
                b'\'' => self.string(b'\''),
                b'@' => self.timestamp(),
                b'0'..=b'9' => self.number(),
                _ if is_ident_start(b) => self.word(),
                _ => self.operator(),
            }
        }
        let start = self.here();
        self.push(Tok::Eof, start);
    }

    fn skip_line(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if b == b'\n' {
                break;
            }
            self.advance();
        }
    }

    fn skip_block_comment(&mut self) {
        let start = self.here();
        self.advance_n(2);
        loop {
            match self.peek_at(0) {
                None => {
                    let span = Span::new(start.0, start.0 + 2, start.1, start.2).in_file(self.file);
                    self.diags.push(
                        Diagnostic::error("unterminated block comment", span)
                            .with_hint("close it with `*/`"),
                    );
                    return;
                }
                Some(b'*') if self.peek_at(1) == Some(b'/') => {
                    self.advance_n(2);
                    return;
                }
                Some(_) => self.advance(),
            }
        }
    }

    fn word(&mut self) {
        let start = self.here();
        while self.peek_at(0).is_some_and(is_ident_char) {
            self.advance();
        }
        let text = &self.src[start.0..self.pos];
        let kind = reserved(text).unwrap_or_else(|| Tok::Ident(text.to_string()));
        self.push(kind, start);
    }

    fn operator(&mut self) {
        let start = self.here();
        let b0 = self.bytes[self.pos];
        let b1 = self.peek_at(1);
        let b2 = self.peek_at(2);
        let (kind, len) = match (b0, b1) {
            (b'*', Some(b'*')) => (Tok::StarStar, 2),
            (b'=', Some(b'=')) => (Tok::EqEq, 2),
            (b'=', Some(b'>')) => (Tok::FatArrow, 2),
            (b'!', Some(b'=')) => (Tok::NotEq, 2),
            (b'<', Some(b'=')) => (Tok::Le, 2),
            (b'<', Some(b'<')) => (Tok::Shl, 2),
            (b'>', Some(b'=')) => (Tok::Ge, 2),
            (b'>', Some(b'>')) => (Tok::Shr, 2),
            (b':', Some(b'=')) => (Tok::ColonEq, 2),
            (b'-', Some(b'>')) => (Tok::Arrow, 2),
            (b'?', Some(b'.')) => (Tok::QuestionDot, 2),
            (b'?', Some(b'?')) => (Tok::QuestionQuestion, 2),
            (b'.', Some(b'.')) if b2 == Some(b'=') => (Tok::DotDotEq, 3),
            (b'.', Some(b'.')) => (Tok::DotDot, 2),
            (b'+', _) => (Tok::Plus, 1),
            (b'-', _) => (Tok::Minus, 1),
            (b'*', _) => (Tok::Star, 1),
            (b'/', _) => (Tok::Slash, 1),
            (b'%', _) => (Tok::Percent, 1),
            (b'<', _) => (Tok::Lt, 1),
            (b'>', _) => (Tok::Gt, 1),
            (b'&', _) => (Tok::Amp, 1),
            (b'|', _) => (Tok::Pipe, 1),
            (b'^', _) => (Tok::Caret, 1),
            (b'~', _) => (Tok::Tilde, 1),
            (b'=', _) => (Tok::Assign, 1),
            (b'.', _) => (Tok::Dot, 1),
            (b'?', _) => (Tok::Question, 1),
            (b':', _) => (Tok::Colon, 1),
            (b',', _) => (Tok::Comma, 1),
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b'[', _) => (Tok::LBracket, 1),
            (b']', _) => (Tok::RBracket, 1),
            (b'{', _) => (Tok::LBrace, 1),
            (b'}', _) => (Tok::RBrace, 1),
            _ => {
                self.advance();
                let span = self.span_from(start);
                let ch = self.src[start.0..self.pos].chars().next().unwrap_or('?');
                let d = match ch {
                    '!' => Diagnostic::error("unexpected character `!`", span)
                        .with_hint("use `not` for negation"),
                    ';' => Diagnostic::error("unexpected character `;`", span)
                        .with_hint("statements end at the end of the line"),
                    c if c.is_control() => {
                        Diagnostic::error(format!("unexpected character {:?}", c), span)
                    }
                    c => Diagnostic::error(format!("unexpected character `{c}`"), span),
                };
                self.diags.push(d);
                return;
            }
        };
        self.advance_n(len);
        self.push(kind, start);
    }

    fn number(&mut self) {
        let start = self.here();
        while self.peek_at(0).is_some_and(|b| b.is_ascii_digit()) {
            self.advance();
        }
        let int_end = self.pos;
        let mut is_float = false;
        // Fraction: a dot followed by a digit (so `0..5` and `1.abs()` stay integers).
        if self.peek_at(0) == Some(b'.') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
            is_float = true;
            self.advance();
            while self.peek_at(0).is_some_and(|b| b.is_ascii_digit()) {
                self.advance();
            }
        }
        // Exponent: e/E, optional sign, at least one digit.
        if matches!(self.peek_at(0), Some(b'e' | b'E')) {
            let signed = matches!(self.peek_at(1), Some(b'+' | b'-'));
            let digit_at = if signed { 2 } else { 1 };
            if self.peek_at(digit_at).is_some_and(|b| b.is_ascii_digit()) {
                is_float = true;
                self.advance_n(digit_at);
                while self.peek_at(0).is_some_and(|b| b.is_ascii_digit()) {
                    self.advance();
                }
            }
        }
        // Suffix: a duration unit for integers, nothing otherwise.
        let suffix_start = self.pos;
        while self.peek_at(0).is_some_and(is_ident_char) {
            self.advance();
        }
        let suffix = &self.src[suffix_start..self.pos];
        let text = &self.src[start.0..suffix_start];
        let span = self.span_from(start);
        if !suffix.is_empty() {
            if is_float {
                self.diags.push(
                    Diagnostic::error(format!("invalid suffix `{suffix}` on number"), span)
                        .with_hint("durations take an integer: write `1500ms` rather than `1.5s`"),
                );
                self.push(Tok::Duration(0), start);
                return;
            }
            let unit: Option<u64> = match suffix {
                "ns" => Some(1),
                "us" => Some(1_000),
                "ms" => Some(1_000_000),
                "s" => Some(1_000_000_000),
                "m" => Some(60_000_000_000),
                "h" => Some(3_600_000_000_000),
                "d" => Some(86_400_000_000_000),
                _ => None,
            };
            let Some(unit) = unit else {
                let hint = match suffix {
                    "min" | "mins" | "minute" | "minutes" => "use `m` for minutes, e.g. `5m`",
                    "sec" | "secs" | "second" | "seconds" => "use `s` for seconds, e.g. `5s`",
                    _ => "duration units are `ns us ms s m h d`",
                };
                self.diags.push(
                    Diagnostic::error(format!("invalid duration unit `{suffix}`"), span)
                        .with_hint(hint),
                );
                self.push(Tok::Duration(0), start);
                return;
            };
            let value = text.parse::<u64>().ok().and_then(|n| n.checked_mul(unit));
            match value {
                Some(v) => self.push(Tok::Duration(v), start),
                None => {
                    self.error("duration literal too large", span);
                    self.push(Tok::Duration(0), start);
                }
            }
            return;
        }
        if is_float {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => self.push(Tok::Float(f), start),
                _ => {
                    self.error("float literal out of range", span);
                    self.push(Tok::Float(0.0), start);
                }
            }
        } else {
            debug_assert_eq!(int_end, suffix_start);
            match text.parse::<i64>() {
                Ok(i) => self.push(Tok::Int(i), start),
                Err(_) => {
                    self.diags.push(
                        Diagnostic::error("integer literal too large for a 64-bit integer", span)
                            .with_hint("the largest integer is 9223372036854775807"),
                    );
                    self.push(Tok::Int(0), start);
                }
            }
        }
    }

    /// A string literal: `"…"`, or `'…'` (the existing product's spelling; `\'` is an escape
    /// there only).
    fn string(&mut self, quote: u8) {
        let start = self.here();
        self.advance(); // opening quote
        let mut value = String::new();
        loop {
            let Some(b) = self.peek_at(0) else {
                let span = Span::new(start.0, start.0 + 1, start.1, start.2).in_file(self.file);
                self.diags.push(
                    Diagnostic::error("unterminated string", span)
                        .with_hint(format!("close it with `{}`", quote as char)),
                );
                self.push(Tok::Str(value), start);
                return;
            };
            match b {
                _ if b == quote => {
                    self.advance();
                    self.push(Tok::Str(value), start);
                    return;
                }
                b'\\' if quote == b'\'' && self.peek_at(1) == Some(b'\'') => {
                    self.advance();
                    self.advance();
                    value.push('\'');
                }
                b'\\' => self.escape(&mut value),
                _ => {
                    let ch_start = self.pos;
                    self.advance();
                    value.push_str(&self.src[ch_start..self.pos]);
                }
            }
        }
    }

    /// Decodes one escape sequence at the cursor (which is on the backslash).
    fn escape(&mut self, out: &mut String) {
        let start = self.here();
        self.advance();
        let Some(b) = self.peek_at(0) else {
            return; // the unterminated string is reported by the caller
        };
        let simple = match b {
            b'"' => Some('"'),
            b'\\' => Some('\\'),
            b'n' => Some('\n'),
            b't' => Some('\t'),
            b'r' => Some('\r'),
            b'0' => Some('\0'),
            _ => None,
        };
        if let Some(c) = simple {
            self.advance();
            out.push(c);
            return;
        }
        if b == b'u' {
            self.advance();
            if self.peek_at(0) != Some(b'{') {
                let span = self.span_from(start);
                self.diags.push(
                    Diagnostic::error("invalid unicode escape", span)
                        .with_hint("write `\\u{hex}`, e.g. `\\u{e9}`"),
                );
                return;
            }
            self.advance();
            let hex_start = self.pos;
            while self.peek_at(0).is_some_and(|b| b.is_ascii_hexdigit()) {
                self.advance();
            }
            let hex = &self.src[hex_start..self.pos];
            let closed = self.peek_at(0) == Some(b'}');
            if closed {
                self.advance();
            }
            let span = self.span_from(start);
            let ch = if closed && !hex.is_empty() && hex.len() <= 6 {
                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
            } else {
                None
            };
            match ch {
                Some(c) => out.push(c),
                None => self
                    .diags
                    .push(Diagnostic::error("invalid unicode escape", span).with_hint(
                        "write `\\u{hex}` with 1 to 6 hex digits of a valid code point",
                    )),
            }
            return;
        }
        // Unknown escape: report it and keep the character.
        let ch_start = self.pos;
        if b != b'\n' {
            self.advance();
        }
        let span = self.span_from(start);
        let shown = &self.src[ch_start..self.pos];
        self.diags.push(
            Diagnostic::error(format!("unknown escape `\\{shown}`"), span)
                .with_hint("valid escapes are \\\" \\\\ \\n \\t \\r \\0 \\u{hex}"),
        );
        out.push_str(shown);
    }

    fn timestamp(&mut self) {
        let start = self.here();
        self.advance(); // '@'
                        // A dot belongs to the timestamp only before a digit (fractional seconds), so
                        // `@2024-03-01..@2024-03-02` lexes as a range.
        while self.peek_at(0).is_some_and(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b':' | b'+')
                || (b == b'.' && self.peek_at(1).is_some_and(|n| n.is_ascii_digit()))
        }) {
            self.advance();
        }
        let text = &self.src[start.0 + 1..self.pos];
        let span = self.span_from(start);
        match parse_timestamp(text) {
            Some(ns) => self.push(Tok::Timestamp(ns), start),
            None => {
                self.diags.push(
                    Diagnostic::error(format!("invalid timestamp `@{text}`"), span).with_hint(
                        "write `@2024-03-01`, `@2024-03-01T12:30:00Z` or `@2024-03-01T12:30:00+02:00`",
                    ),
                );
                self.push(Tok::Timestamp(0), start);
            }
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn fixed_digits(s: &str, n: usize) -> Option<i64> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Parses the text after `@`: `YYYY-MM-DD[THH:MM[:SS[.frac]][Z|±HH:MM]]` into ns since the epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let date = text.get(..10)?;
    let y = fixed_digits(date.get(0..4)?, 4)?;
    let m = fixed_digits(date.get(5..7)?, 2)?;
    let d = fixed_digits(date.get(8..10)?, 2)?;
    if date.as_bytes().get(4) != Some(&b'-') || date.as_bytes().get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    let mut frac_ns: i64 = 0;
    let rest = text.get(10..)?;
    if !rest.is_empty() {
        let rest = rest.strip_prefix('T')?;
        let hh = fixed_digits(rest.get(0..2)?, 2)?;
        if rest.as_bytes().get(2) != Some(&b':') {
            return None;
        }
        let mm = fixed_digits(rest.get(3..5)?, 2)?;
        let mut tail = rest.get(5..)?;
        let mut ss = 0;
        if let Some(t) = tail.strip_prefix(':') {
            ss = fixed_digits(t.get(0..2)?, 2)?;
            tail = t.get(2..)?;
            if let Some(t) = tail.strip_prefix('.') {
                let digits = t.bytes().take_while(u8::is_ascii_digit).count();
                if digits == 0 || digits > 9 {
                    return None;
                }
                let f: i64 = t.get(..digits)?.parse().ok()?;
                frac_ns = f * 10_i64.pow(9 - digits as u32);
                tail = t.get(digits..)?;
            }
        }
        if hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        secs += hh * 3600 + mm * 60 + ss;
        match tail {
            "" | "Z" => {}
            _ => {
                let sign = match tail.as_bytes().first()? {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let oh = fixed_digits(tail.get(1..3)?, 2)?;
                if tail.as_bytes().get(3) != Some(&b':') {
                    return None;
                }
                let om = fixed_digits(tail.get(4..6)?, 2)?;
                if tail.len() != 6 || oh > 23 || om > 59 {
                    return None;
                }
                // Local time = UTC + offset, so UTC = local - offset.
                secs -= sign * (oh * 3600 + om * 60);
            }
        }
    }
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        let (toks, diags) = tokenize(src);
        assert!(diags.is_empty(), "{diags:?}");
        toks.into_iter().map(|t| t.kind).collect()
    }

    fn errors(src: &str) -> Vec<String> {
        tokenize(src).1.into_iter().map(|d| d.message).collect()
    }

    fn id(s: &str) -> Tok {
        Tok::Ident(s.to_string())
    }

    #[test]
    fn keywords_are_whole_words_only() {
        assert_eq!(
            kinds("notes order_id format true_count breakdown not in"),
            vec![
                id("notes"),
                id("order_id"),
                id("format"),
                id("true_count"),
                id("breakdown"),
                Tok::Not,
                Tok::In,
                Tok::Eof
            ]
        );
        // statement words are identifiers for the lexer
        assert_eq!(
            kinds("stream from"),
            vec![id("stream"), id("from"), Tok::Eof]
        );
    }

    #[test]
    fn comments_of_all_three_kinds_are_skipped() {
        assert_eq!(
            kinds("a # x\nb // y\nc /* z\n w */ d"),
            vec![id("a"), id("b"), id("c"), id("d"), Tok::Eof]
        );
        assert_eq!(
            errors("a /* never closed"),
            vec!["unterminated block comment"]
        );
    }

    #[test]
    fn numbers_ints_floats_and_exponents() {
        assert_eq!(
            kinds("42 1.5 2.0e-3 1e6 0..5 1.abs"),
            vec![
                Tok::Int(42),
                Tok::Float(1.5),
                Tok::Float(2.0e-3),
                Tok::Float(1e6),
                Tok::Int(0),
                Tok::DotDot,
                Tok::Int(5),
                Tok::Int(1),
                Tok::Dot,
                id("abs"),
                Tok::Eof
            ]
        );
        assert_eq!(
            kinds("9223372036854775807"),
            vec![Tok::Int(i64::MAX), Tok::Eof]
        );
        assert_eq!(
            errors("9223372036854775808"),
            vec!["integer literal too large for a 64-bit integer"]
        );
    }

    #[test]
    fn durations_in_nanoseconds() {
        assert_eq!(
            kinds("10ms 5s 1m 2h 1d 100us 3ns"),
            vec![
                Tok::Duration(10_000_000),
                Tok::Duration(5_000_000_000),
                Tok::Duration(60_000_000_000),
                Tok::Duration(7_200_000_000_000),
                Tok::Duration(86_400_000_000_000),
                Tok::Duration(100_000),
                Tok::Duration(3),
                Tok::Eof
            ]
        );
        assert_eq!(errors("5min"), vec!["invalid duration unit `min`"]);
        assert_eq!(errors("1.5s"), vec!["invalid suffix `s` on number"]);
        assert_eq!(
            errors("99999999999999999d"),
            vec!["duration literal too large"]
        );
    }

    #[test]
    fn strings_decode_escapes() {
        assert_eq!(
            kinds(r#""a\"b\\c\nd\te\rf\0g\u{e9}\u{1F600}""#),
            vec![
                Tok::Str("a\"b\\c\nd\te\rf\0g\u{e9}\u{1F600}".to_string()),
                Tok::Eof
            ]
        );
        assert_eq!(kinds("\"héllo\""), vec![Tok::Str("héllo".into()), Tok::Eof]);
        assert_eq!(errors(r#""\q""#), vec!["unknown escape `\\q`"]);
        assert_eq!(errors(r#""\u{110000}""#), vec!["invalid unicode escape"]);
        assert_eq!(errors(r#""\u{}""#), vec!["invalid unicode escape"]);
        assert_eq!(errors("\"abc"), vec!["unterminated string"]);
        // Single quotes (the existing product's spelling): `\'` only there.
        assert_eq!(
            kinds(r#"'it\'s "x"\n'"#),
            vec![Tok::Str("it's \"x\"\n".into()), Tok::Eof]
        );
        assert_eq!(errors(r#""\'""#), vec!["unknown escape `\\'`"]);
        assert_eq!(errors("'abc"), vec!["unterminated string"]);
    }

    #[test]
    fn timestamps_with_offsets() {
        let day = 19_783_i64; // 2024-03-01
        let ns = |s: i64| s * 1_000_000_000;
        assert_eq!(
            kinds("@2024-03-01"),
            vec![Tok::Timestamp(ns(day * 86_400)), Tok::Eof]
        );
        let t = day * 86_400 + 12 * 3600 + 30 * 60;
        assert_eq!(
            kinds("@2024-03-01T12:30:00Z"),
            vec![Tok::Timestamp(ns(t)), Tok::Eof]
        );
        assert_eq!(
            kinds("@2024-03-01T12:30:00+02:00"),
            vec![Tok::Timestamp(ns(t - 7200)), Tok::Eof]
        );
        assert_eq!(
            kinds("@2024-03-01T12:30:00-05:00"),
            vec![Tok::Timestamp(ns(t + 5 * 3600)), Tok::Eof]
        );
        assert_eq!(
            kinds("@1970-01-01T00:00:00.5Z"),
            vec![Tok::Timestamp(500_000_000), Tok::Eof]
        );
        assert_eq!(
            kinds("@1970-01-01..@1970-01-02"),
            vec![
                Tok::Timestamp(0),
                Tok::DotDot,
                Tok::Timestamp(86_400_000_000_000),
                Tok::Eof
            ]
        );
        assert_eq!(
            errors("@2024-02-30"),
            vec!["invalid timestamp `@2024-02-30`"]
        );
        assert_eq!(errors("@yesterday"), vec!["invalid timestamp `@yesterday`"]);
    }

    #[test]
    fn all_operators_longest_match() {
        let src = "+ - * / % ** == != < <= > >= & | ^ ~ << >> = := -> => . ?. ?? .. ..= : , ( ) [ ] { } ?";
        let expected = vec![
            Tok::Plus,
            Tok::Minus,
            Tok::Star,
            Tok::Slash,
            Tok::Percent,
            Tok::StarStar,
            Tok::EqEq,
            Tok::NotEq,
            Tok::Lt,
            Tok::Le,
            Tok::Gt,
            Tok::Ge,
            Tok::Amp,
            Tok::Pipe,
            Tok::Caret,
            Tok::Tilde,
            Tok::Shl,
            Tok::Shr,
            Tok::Assign,
            Tok::ColonEq,
            Tok::Arrow,
            Tok::FatArrow,
            Tok::Dot,
            Tok::QuestionDot,
            Tok::QuestionQuestion,
            Tok::DotDot,
            Tok::DotDotEq,
            Tok::Colon,
            Tok::Comma,
            Tok::LParen,
            Tok::RParen,
            Tok::LBracket,
            Tok::RBracket,
            Tok::LBrace,
            Tok::RBrace,
            Tok::Question,
            Tok::Eof,
        ];
        assert_eq!(kinds(src), expected);
        assert_eq!(
            kinds("a**-b"),
            vec![id("a"), Tok::StarStar, Tok::Minus, id("b"), Tok::Eof]
        );
    }

    #[test]
    fn spans_carry_line_and_character_column() {
        let (toks, _) = tokenize("é = 1\n  \"ü\" x\n\tz");
        // `é` is not an identifier character
        let (toks2, diags) = tokenize("a\n  \"ü\" x\n\tz");
        assert_eq!(diags.len(), 0);
        let x = &toks2[2];
        assert_eq!((x.span.line, x.span.column, x.line_start), (2, 7, false));
        let z = &toks2[3];
        assert_eq!((z.span.line, z.span.column, z.line_start), (3, 2, true));
        assert_eq!(&"a\n  \"ü\" x\n\tz"[x.span.start..x.span.end], "x");
        assert!(toks.iter().any(|t| t.kind == Tok::Assign));
    }

    #[test]
    fn bad_characters_are_reported_and_skipped() {
        let (toks, diags) = tokenize("a ! b ; c");
        assert_eq!(toks.len(), 4);
        assert_eq!(diags.len(), 2);
        assert_eq!(diags[0].hint.as_deref(), Some("use `not` for negation"));
    }
}
