//! Byte-level reading of event files for the replay (`evt_stream`):
//!
//! * [`LineReader`] hands out the lines of a reader as byte slices of one reused buffer (the
//!   newline found with `memchr`, no `String` per line and no UTF-8 pass over the whole line).
//! * [`scan_line`] parses the most common line shape, `[@<n>[ms]] Type { name: value, … }` with
//!   numbers, `"…"` strings without escapes, `true`/`false`/`null`/`nil`, in one pass over the
//!   bytes, straight into a recycled field list. Anything else (blank and comment lines,
//!   `BATCH`, JSON lines, other units or value shapes, non-ASCII outside strings) returns `None`
//!   and goes to the general parser (`evt::LineParser`), so both always give the same event
//!   (proptest `scan_agrees_with_the_general_parser`).

use crate::event::Event;
use crate::evt_fast::Names;
use crate::value::Value;
use std::io::{self, Read};
use std::sync::Arc;

/// Size of the input buffer (it grows only to hold a longer line).
pub const READ_BUFFER: usize = 1 << 20;

/// The lines of a reader, each a slice of one reused buffer.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes from `start` already searched for a newline in vain.
    scanned: usize,
    /// The end of the next line when `line_ready` found it already.
    newline: Option<usize>,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    /// A reader with a [`READ_BUFFER`] buffer.
    pub fn new(inner: R) -> Self {
        Self::with_capacity(READ_BUFFER, inner)
    }

    /// A reader with a buffer of `capacity` bytes (at least 1).
    pub fn with_capacity(capacity: usize, inner: R) -> Self {
        LineReader {
            inner,
            buf: vec![0; capacity.max(1)],
            start: 0,
            end: 0,
            scanned: 0,
            newline: None,
            eof: false,
        }
    }

    /// Whether the next line can be handed out without reading (a read may wait on a pipe).
    /// The newline found is kept for [`LineReader::next_line`].
    pub fn line_ready(&mut self) -> bool {
        if self.eof || self.newline.is_some() {
            return true;
        }
        let from = self.start + self.scanned;
        match memchr::memchr(b'\n', &self.buf[from..self.end]) {
            Some(i) => {
                self.newline = Some(from + i);
                true
            }
            None => {
                self.scanned = self.end - self.start;
                false
            }
        }
    }

    /// The next line without its `\n` (`Ok(None)`: end of input; a last line without `\n`
    /// counts). A line longer than the buffer grows it.
    pub fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            let from = self.start + self.scanned;
            let found = match self.newline.take() {
                Some(e) => Some(e),
                None => memchr::memchr(b'\n', &self.buf[from..self.end]).map(|i| from + i),
            };
            if let Some(e) = found {
                let s = self.start;
                self.start = e + 1;
                self.scanned = 0;
                return Ok(Some(&self.buf[s..e]));
            }
            self.scanned = self.end - self.start;
            if self.eof {
                if self.start == self.end {
                    return Ok(None);
                }
                let s = self.start;
                self.start = self.end;
                self.scanned = 0;
                return Ok(Some(&self.buf[s..self.end]));
            }
            self.fill()?;
        }
    }

    /// Moves the unread bytes to the front and reads more after them.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whitespace the scanner skips: a subset of what the general parser trims, so a line with any
/// other whitespace goes to the general parser.
#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

#[inline]
fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Bytes of `line` from `i` on while they are spaces: the first other position.
#[inline]
fn skip_space(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && is_space(line[i]) {
        i += 1;
    }
    i
}

/// Whether `b` may follow a value: a space, `,`, `}` or the end.
#[inline]
fn ends_value(b: Option<&u8>) -> bool {
    matches!(b, None | Some(b' ' | b'\t' | b'\r' | b',' | b'}'))
}

/// Parses one line of the common shape (see the module doc) with `batch_ms` as the offset when
/// it has no `@` prefix; `None` for anything else (the general parser decides, also about
/// errors).
pub fn scan_line(line: &[u8], batch_ms: i64, names: &mut Names) -> Option<Event> {
    let mut end = line.len();
    while end > 0 && is_space(line[end - 1]) {
        end -= 1;
    }
    let line = &line[..end];
    let mut i = skip_space(line, 0);
    let prefixed = line.get(i) == Some(&b'@');
    let offset_ms = if prefixed {
        i += 1;
        let digits = i;
        let mut ms: i64 = 0;
        while let Some(d) = line.get(i).filter(|b| b.is_ascii_digit()) {
            ms = ms.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
            i += 1;
        }
        if i == digits {
            return None;
        }
        if line[i..].starts_with(b"ms") {
            i += 2;
        }
        // A space must end the offset (`s`, `m`, `.5` … are for the general parser).
        if !line.get(i).is_some_and(|b| is_space(*b)) {
            return None;
        }
        i = skip_space(line, i);
        ms
    } else {
        batch_ms
    };
    let ts = offset_ms.checked_mul(1_000_000)?;
    let name_start = i;
    while i < line.len() && is_ident(line[i]) {
        i += 1;
    }
    let name = &line[name_start..i];
    // `BATCH …` without an offset is a directive.
    if name.is_empty() || name[0].is_ascii_digit() || (name == b"BATCH" && !prefixed) {
        return None;
    }
    i = skip_space(line, i);
    if line.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_space(line, i + 1);
    // A recycled event keeps its type and names in place: a line of the same shape only
    // overwrites the values (no name lookup, no reference-count traffic on the names).
    let mut event = match names.spare() {
        Some(e) => e,
        None => Event {
            event_type: names.nth(0, std::str::from_utf8(name).ok()?),
            timestamp_ns: ts,
            fields: Arc::new(Vec::with_capacity(8)),
        },
    };
    // Recycled lists are held by nothing else: no copy (`make_mut` copies a shared list).
    let fields = Arc::make_mut(&mut event.fields);
    let mut index = 0;
    if line.get(i) != Some(&b'}') {
        loop {
            let key_start = i;
            while i < line.len() && is_ident(line[i]) {
                i += 1;
            }
            let key = &line[key_start..i];
            if key.is_empty()
                || key[0].is_ascii_digit()
                || matches!(key, b"true" | b"false" | b"null" | b"nil")
            {
                return None;
            }
            i = skip_space(line, i);
            if line.get(i) != Some(&b':') {
                return None;
            }
            i = skip_space(line, i + 1);
            let value = match *line.get(i)? {
                b'"' => {
                    let rest = &line[i + 1..];
                    let close = memchr::memchr(b'"', rest)?;
                    let text = &rest[..close];
                    if memchr::memchr(b'\\', text).is_some() {
                        return None;
                    }
                    i += close + 2;
                    Value::Str(names.value_bytes(text)?)
                }
                b'-' | b'0'..=b'9' => {
                    let (v, next) = number(line, i)?;
                    i = next;
                    v
                }
                b't' if line[i..].starts_with(b"true") => {
                    i += 4;
                    Value::Bool(true)
                }
                b'f' if line[i..].starts_with(b"false") => {
                    i += 5;
                    Value::Bool(false)
                }
                b'n' if line[i..].starts_with(b"null") => {
                    i += 4;
                    Value::Null
                }
                b'n' if line[i..].starts_with(b"nil") => {
                    i += 3;
                    Value::Null
                }
                _ => return None,
            };
            if !ends_value(line.get(i)) {
                return None;
            }
            match fields.get_mut(index) {
                Some(slot) if slot.0.as_bytes() == key => slot.1 = value,
                slot => {
                    // Identifiers are ASCII: this cannot fail.
                    let key = names.nth(index + 1, std::str::from_utf8(key).ok()?);
                    match slot {
                        Some(slot) => *slot = (key, value),
                        None => fields.push((key, value)),
                    }
                }
            }
            index += 1;
            i = skip_space(line, i);
            match line.get(i) {
                Some(b',') => {
                    i = skip_space(line, i + 1);
                    // A trailing comma.
                    if line.get(i) == Some(&b'}') {
                        break;
                    }
                }
                Some(b'}') => break,
                _ => return None,
            }
        }
    }
    fields.truncate(index);
    // At the closing `}`: only an optional `;` may follow.
    i = skip_space(line, i + 1);
    if line.get(i) == Some(&b';') {
        i += 1;
    }
    if i != line.len() {
        return None;
    }
    if event.event_type.as_bytes() != name {
        event.event_type = names.nth(0, std::str::from_utf8(name).ok()?);
    }
    event.timestamp_ns = ts;
    Some(event)
}

/// `-?[0-9]+` (an i64) or `-?[0-9]+.[0-9]+` (an f64, read like the general parser) at `i`,
/// followed by a space, `,`, `}` or the end; the value and the position after it.
///
/// A decimal of at most 15 digits is read in the same pass (Clinger's fast path): its digits
/// form an integer below 2^53 and its scale a power of ten, both exact in an f64, so one IEEE
/// division rounds correctly, as `str::parse::<f64>` does (proptest
/// `short_decimals_match_the_std_parser`); longer ones go through `str::parse`.
#[inline]
fn number(line: &[u8], mut i: usize) -> Option<(Value, usize)> {
    let start = i;
    let negative = line[i] == b'-';
    if negative {
        i += 1;
    }
    let digits = i;
    // Accumulated negatively so that i64::MIN fits.
    let mut n: i64 = 0;
    let mut fits = true;
    while let Some(d) = line.get(i).filter(|b| b.is_ascii_digit()) {
        if fits {
            match n
                .checked_mul(10)
                .and_then(|n| n.checked_sub(i64::from(d - b'0')))
            {
                Some(m) => n = m,
                None => fits = false,
            }
        }
        i += 1;
    }
    if i == digits {
        return None;
    }
    if line.get(i) == Some(&b'.') {
        let int_digits = i - digits;
        i += 1;
        let frac = i;
        // Only used with 15 digits at most in all (no wrap then).
        let mut m = n.unsigned_abs();
        while let Some(d) = line.get(i).filter(|b| b.is_ascii_digit()) {
            m = m.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            i += 1;
        }
        if i == frac || !ends_value(line.get(i)) {
            return None;
        }
        let scale = i - frac;
        if int_digits + scale <= 15 {
            let f = m as f64 / POW10.get(scale)?;
            return Some((Value::Float(if negative { -f } else { f }), i));
        }
        let text = std::str::from_utf8(&line[start..i]).ok()?;
        return Some((Value::Float(text.parse::<f64>().ok()?), i));
    }
    // Integers beyond i64 are floats in the general parser.
    if !fits || !ends_value(line.get(i)) {
        return None;
    }
    let v = if negative { n } else { n.checked_neg()? };
    Some((Value::Int(v), i))
}

/// Powers of ten exactly representable as an f64.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::evt::LineParser;
    use crate::evt_alphabet::piece;
    use proptest::prelude::*;

    /// The general parser's event for `line` (after `BATCH batch_ms`), or its error.
    fn general(line: &str, batch_ms: i64) -> Result<Option<Event>, String> {
        let mut p = LineParser::default();
        p.line(&format!("BATCH {batch_ms}"), 1, None).unwrap();
        p.line(line, 2, None).map_err(|e| e.message)
    }

    fn same(line: &str) -> Result<(), TestCaseError> {
        let mut names = Names::default();
        if let Some(fast) = scan_line(line.as_bytes(), 3, &mut names) {
            let slow = general(line, 3)
                .map_err(|e| TestCaseError::fail(format!("{line}: scanned, general failed: {e}")))?
                .ok_or_else(|| TestCaseError::fail(format!("{line}: scanned, general: none")))?;
            prop_assert_eq!(&*fast.event_type, &*slow.event_type, "{}", line);
            prop_assert_eq!(fast.timestamp_ns, slow.timestamp_ns, "{}", line);
            prop_assert_eq!(
                format!("{:?}", fast.fields),
                format!("{:?}", slow.fields),
                "{}",
                line
            );
        }
        Ok(())
    }

    #[test]
    fn common_lines_are_scanned() {
        let mut n = Names::default();
        let e = scan_line(
            b"@12ms SensorReading { sensor_id: \"S0042\", temperature: 51.25, humidity: -40, ok: true, z: null };\r",
            0,
            &mut n,
        )
        .unwrap();
        assert_eq!(&*e.event_type, "SensorReading");
        assert_eq!(e.timestamp_ns, 12_000_000);
        assert_eq!(e.fields.len(), 5);
        assert!(matches!(e.field("temperature"), Some(Value::Float(f)) if *f == 51.25));
        assert!(matches!(e.field("humidity"), Some(Value::Int(-40))));
        assert!(matches!(e.field("sensor_id"), Some(Value::Str(s)) if &**s == "S0042"));
        let e = scan_line(b"T{}", 7, &mut n).unwrap();
        assert_eq!(e.timestamp_ns, 7_000_000);
        assert!(e.fields.is_empty());
        assert!(scan_line(b"@5 T { a: 1, }", 0, &mut n).is_some());
        assert!(scan_line(b"@5ms BATCH { a: 1 }", 0, &mut n).is_some());
        for other in [
            "",
            "# comment",
            "BATCH 5",
            "BATCH {a: 1}",
            "{\"event_type\": \"T\"}",
            "@5s T { a: 1 }",
            "@1.5 T { a: 1 }",
            "T(1, 2)",
            "T { a: [1, 2] }",
            "T { a: 'x' }",
            "T { a: \"x\\n\" }",
            "T { \"k\": 1 }",
            "T { a: 1,, b: 2 }",
            "T { , }",
            "T { a }",
            "T { a: hello }",
            "T { a: 1e5 }",
            "T { a: 99999999999999999999 }",
            "T { true: 1 }",
            "Tä { a: 1 }",
            "T { a: 1 } x",
            "@99999999999999 T {}",
        ] {
            assert!(scan_line(other.as_bytes(), 0, &mut n).is_none(), "{other}");
        }
    }

    #[test]
    fn the_line_reader_splits_lines_across_refills() {
        let text = "a\n\nlonger line than the buffer\r\nlast";
        let mut r = LineReader::with_capacity(4, text.as_bytes());
        let mut lines = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            lines.push(String::from_utf8(l.to_vec()).unwrap());
        }
        assert_eq!(lines, ["a", "", "longer line than the buffer\r", "last"]);
        assert!(r.line_ready());
    }

    proptest! {
        /// Decimals read in one pass give what `str::parse::<f64>` gives, to the bit.
        #[test]
        fn short_decimals_match_the_std_parser(
            sign in prop_oneof![Just(""), Just("-")],
            int in "[0-9]{1,17}",
            frac in "[0-9]{1,17}",
        ) {
            let text = format!("{sign}{int}.{frac}");
            let std = text.parse::<f64>().unwrap();
            let (v, end) = number(text.as_bytes(), 0).unwrap();
            prop_assert_eq!(end, text.len());
            match v {
                Value::Float(f) => prop_assert_eq!(f.to_bits(), std.to_bits(), "{}", text),
                other => prop_assert!(false, "{}: {:?}", text, other),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Random text in and around the common shape: whenever the scanner accepts a line,
        /// the general parser gives the same event.
        #[test]
        fn scan_agrees_with_the_general_parser(
            head in prop::collection::vec(piece(), 0..4),
            parts in prop::collection::vec(piece(), 0..24),
        ) {
            same(&format!("{}T {{{}}}", head.concat(), parts.concat()))?;
            same(&format!("@{} T{{ {} }};", head.concat(), parts.concat()))?;
            same(&format!("{}{}", head.concat(), parts.concat()))?;
        }

        /// Lines scanned one after another into recycled events (names and values of an
        /// earlier line still in place) give the general parser's events.
        #[test]
        fn recycled_events_are_overwritten_correctly(
            lines in prop::collection::vec((
                prop_oneof![Just("R"), Just("Q"), Just("Reading")],
                prop::collection::vec((
                    prop_oneof![Just("a"), Just("b"), Just("sensor_id"), Just("t")],
                    prop_oneof![
                        (0i64..100).prop_map(|i| i.to_string()),
                        Just("-2.50".to_string()),
                        Just("\"S0001\"".to_string()),
                        Just("\"S0002\"".to_string()),
                        Just("true".to_string()),
                        Just("null".to_string()),
                    ],
                ), 0..5),
                any::<bool>(),
            ), 1..40),
        ) {
            let mut names = Names::default();
            for (ty, fields, keep) in lines {
                let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                let line = format!("@1ms {ty} {{ {} }}", body.join(", "));
                let fast = scan_line(line.as_bytes(), 0, &mut names);
                prop_assert!(fast.is_some(), "{}", line);
                let fast = fast.unwrap();
                let slow = general(&line, 0).unwrap().unwrap();
                prop_assert_eq!(&*fast.event_type, &*slow.event_type);
                prop_assert_eq!(format!("{:?}", fast.fields), format!("{:?}", slow.fields));
                // Sometimes still held elsewhere when handed back: then it is not reused.
                let held = keep.then(|| fast.clone());
                names.recycle(fast);
                drop(held);
            }
        }

        /// Well-formed lines of the common shape are scanned, identically.
        #[test]
        fn well_formed_lines_are_scanned(
            offset in prop::option::of(0i64..1_000_000_000),
            fields in prop::collection::vec((
                "[a-z_][a-z0-9_]{0,8}",
                prop_oneof![
                    any::<i64>().prop_map(|i| i.to_string()),
                    any::<f64>()
                        .prop_filter("finite", |f| f.is_finite())
                        .prop_map(|f| format!("{f:?}"))
                        .prop_filter("no exponent", |s| !s.contains('e')),
                    "[a-zA-Z0-9 ,:;.!?é{}'-]{0,12}".prop_map(|s| format!("\"{s}\"")),
                    Just("false".to_string()),
                    Just("null".to_string()),
                ],
            ), 0..6),
        ) {
            let body: Vec<String> = fields
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "true" | "false" | "null" | "nil"))
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let prefix = offset.map(|o| format!("@{o}ms ")).unwrap_or_default();
            let line = format!("{prefix}Reading {{ {} }}", body.join(", "));
            let mut names = Names::default();
            prop_assert!(scan_line(line.as_bytes(), 0, &mut names).is_some(), "{}", line);
            same(&line)?;
        }
    }
}
