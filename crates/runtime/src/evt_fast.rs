//! The fast path of the `.evt` line parser for the common shape `Type { name: value, … }` whose
//! values are numbers, `"…"` strings without escapes, booleans, `null` or bare words (no arrays,
//! no single quotes, no brackets). Anything else returns `None` and goes to the general parser
//! (`evt::parse_event_line`), so both always give the same event (proptest in `tests`).
//!
//! It scans the line once, with no intermediate vectors, and interns type names, field names and
//! short string values ([`Names`]) so that a replay does not allocate them per event.

use crate::event::Event;
use crate::evt::parse_value;
use crate::value::{Fields, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Interned type names, field names and short string values (bounded).
#[derive(Default)]
pub struct Names {
    names: HashMap<Box<str>, Arc<str>, FastHash>,
    /// Short string values: a direct-mapped cache (one slot per hash, a miss replaces the slot).
    values: ValueCache,
    /// The names of the previous line, in order: consecutive lines mostly repeat them.
    last: Vec<Arc<str>>,
    /// Events handed back ([`Names::recycle`]) with their type and field list still in place,
    /// reused for new events: a line of the same shape only overwrites the values.
    spare: Vec<Event>,
}

/// Slots of the value cache (a power of two).
const VALUE_SLOTS: usize = 4096;

/// A direct-mapped cache of short string values: no probing, no stored keys besides the value.
#[derive(Default)]
struct ValueCache {
    slots: Vec<Option<Arc<str>>>,
}

impl ValueCache {
    fn get(&mut self, s: &[u8]) -> Option<Arc<str>> {
        if self.slots.is_empty() {
            self.slots = vec![None; VALUE_SLOTS];
        }
        let slot = self.slots.get_mut(slot_of(s))?;
        match slot {
            Some(a) if a.as_bytes() == s => Some(a.clone()),
            _ => {
                let a: Arc<str> = Arc::from(std::str::from_utf8(s).ok()?);
                *slot = Some(a.clone());
                Some(a)
            }
        }
    }
}

/// The cache slot of `s`: its first and last (up to) eight bytes and its length, mixed.
#[inline]
fn slot_of(s: &[u8]) -> usize {
    let mut head = [0u8; 8];
    let mut tail = [0u8; 8];
    let n = s.len().min(8);
    head[..n].copy_from_slice(&s[..n]);
    tail[..n].copy_from_slice(&s[s.len() - n..]);
    let h = (u64::from_le_bytes(head) ^ u64::from_le_bytes(tail).rotate_left(29) ^ s.len() as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 52) as usize & (VALUE_SLOTS - 1)
}

/// Field lists kept for reuse at most: a few batches of events in flight between the reader
/// thread and the engine (`evt_pipe`); events held by a reorder window are not recycled until
/// processed.
const MAX_SPARE: usize = 2048;
/// Field lists with more room than this are not kept.
const MAX_SPARE_CAPACITY: usize = 64;

/// FNV-1a: short keys, no denial-of-service concern (the file is the user's own input, and the
/// maps are bounded).
#[derive(Default, Clone, Copy)]
struct FastHash;

struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl std::hash::BuildHasher for FastHash {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

/// At most this many distinct names and short values are interned (beyond, they are allocated).
const MAX_INTERNED: usize = 4096;
/// String values up to this many bytes are interned.
const MAX_INTERNED_VALUE: usize = 32;

fn intern(map: &mut HashMap<Box<str>, Arc<str>, FastHash>, s: &str) -> Arc<str> {
    if let Some(a) = map.get(s) {
        return a.clone();
    }
    let a: Arc<str> = Arc::from(s);
    if map.len() < MAX_INTERNED {
        map.insert(Box::from(s), a.clone());
    }
    a
}

impl Names {
    /// A type or field name.
    pub fn name(&mut self, s: &str) -> Arc<str> {
        intern(&mut self.names, s)
    }

    /// The previous line's `i`-th name when it equals `s`.
    #[inline]
    pub(crate) fn repeated(&self, i: usize, s: &str) -> Option<Arc<str>> {
        self.last.get(i).filter(|a| ***a == *s).cloned()
    }

    /// The `i`-th name of this line (0: the type): the previous line's when equal.
    pub(crate) fn nth(&mut self, i: usize, s: &str) -> Arc<str> {
        if let Some(a) = self.last.get(i) {
            if **a == *s {
                return a.clone();
            }
        }
        let a = self.name(s);
        if i < self.last.len() {
            self.last[i] = a.clone();
        } else if i == self.last.len() && i < 64 {
            self.last.push(a.clone());
        }
        a
    }

    /// Takes back a processed event when nothing else holds its field list, so the next event
    /// parsed reuses it: the allocation, its reference count, and the names in place (a line of
    /// the same shape overwrites only the values). Lists holding arrays or maps are emptied
    /// first, so spare lists never pin large values.
    ///
    /// Only reads here (the counts, the values): the list was just read by the engine thread,
    /// and the one write that takes it over (`Arc::make_mut`) happens when it is reused.
    pub fn recycle(&mut self, event: Event) {
        if self.spare.len() >= MAX_SPARE
            || Arc::strong_count(&event.fields) != 1
            || Arc::weak_count(&event.fields) != 0
            || event.fields.capacity() > MAX_SPARE_CAPACITY
            || event
                .fields
                .iter()
                .any(|(_, v)| matches!(v, Value::Array(_) | Value::Map(_)))
        {
            return;
        }
        self.spare.push(event);
    }

    /// A recycled event (type and fields of an earlier one, still in place, its field list
    /// held by nothing else) when there is one.
    #[inline]
    pub(crate) fn spare(&mut self) -> Option<Event> {
        self.spare.pop()
    }

    /// An empty field list: a recycled one when there is one.
    pub(crate) fn fields(&mut self) -> Arc<Fields> {
        match self.spare.pop() {
            Some(mut e) => {
                Arc::make_mut(&mut e.fields).clear();
                e.fields
            }
            None => Arc::new(Vec::with_capacity(8)),
        }
    }

    /// A string value (shared with an equal recent one when short).
    pub fn value(&mut self, s: &str) -> Arc<str> {
        if s.len() > MAX_INTERNED_VALUE {
            return Arc::from(s);
        }
        self.values
            .get(s.as_bytes())
            .unwrap_or_else(|| Arc::from(s))
    }

    /// The string value of UTF-8 bytes `s` (`None`: not UTF-8), shared like [`Names::value`].
    #[inline]
    pub(crate) fn value_bytes(&mut self, s: &[u8]) -> Option<Arc<str>> {
        if s.len() > MAX_INTERNED_VALUE {
            return std::str::from_utf8(s).ok().map(Arc::from);
        }
        self.values.get(s)
    }
}

fn is_ident(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Parses `body` (a line without its offset prefix) when it has the common shape; `None`
/// otherwise (the general parser decides, also about errors).
pub fn parse_named(body: &str, ts: i64, names: &mut Names) -> Option<Event> {
    // Only ASCII outside string values keeps the whitespace and identifier rules simple.
    let body = body.strip_suffix(';').map(str::trim_end).unwrap_or(body);
    let b = body.as_bytes();
    let name_end = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))?;
    if name_end == 0 || b[0].is_ascii_digit() || !b[name_end].is_ascii() {
        return None;
    }
    let mut i = name_end;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    if b.get(i) != Some(&b'{') || b.last() != Some(&b'}') || i + 1 > b.len() - 1 {
        return None;
    }
    let inner = &body[i + 1..b.len() - 1];
    let ib = inner.as_bytes();
    let mut list = names.fields();
    // Recycled lists are unique and empty; `None` cannot happen, but the general parser would
    // still give the right event.
    let fields = Arc::get_mut(&mut list)?;
    fields.clear();
    let mut pos = 0;
    let mut index = 0;
    loop {
        // One item: up to the next `,` outside a `"…"` string.
        let start = pos;
        let mut in_str = false;
        let mut colon = None;
        while pos < ib.len() {
            let c = ib[pos];
            if in_str {
                match c {
                    b'"' => in_str = false,
                    b'\\' => return None,
                    _ => {}
                }
            } else {
                match c {
                    b'"' => in_str = true,
                    b',' => break,
                    b':' if colon.is_none() => colon = Some(pos),
                    b'[' | b']' | b'(' | b')' | b'{' | b'}' | b'\'' => return None,
                    c if !c.is_ascii() => return None,
                    _ => {}
                }
            }
            pos += 1;
        }
        if in_str {
            return None;
        }
        let item = &inner[start..pos];
        let last = pos >= ib.len();
        let Some(colon) = colon else {
            // No `:`: `Type {}` or a trailing comma after at least one field when blank;
            // anything else is for the general parser (it reports the empty field).
            if item.trim().is_empty() && last && (index > 0 || fields.is_empty() && start == 0) {
                break;
            }
            return None;
        };
        let colon = colon - start;
        let key = item[..colon].trim();
        // The previous line's name at this position was checked already.
        let key = match names.repeated(index + 1, key) {
            Some(a) => a,
            None => {
                if !is_ident(key) || matches!(key, "true" | "false" | "null" | "nil") {
                    return None;
                }
                names.nth(index + 1, key)
            }
        };
        let vt = item[colon + 1..].trim();
        let value = if let Some(rest) = vt.strip_prefix('"') {
            let s = rest.strip_suffix('"')?;
            if s.contains('"') {
                return None;
            }
            Value::Str(names.value(s))
        } else if vt.contains('"') {
            return None;
        } else if let Some(v) = plain_value(vt) {
            v
        } else {
            match parse_value(vt).ok()? {
                Value::Str(s) => Value::Str(names.value(&s)),
                v => v,
            }
        };
        fields.push((key, value));
        index += 1;
        if last {
            break;
        }
        pos += 1;
    }
    Some(Event {
        event_type: names.nth(0, &body[..name_end]),
        timestamp_ns: ts,
        fields: list,
    })
}

/// The common bare values, decided without the general value parser: `true`, `false`,
/// `null`/`nil`, decimal integers (`-?[0-9]+` that fit in an i64) and decimals
/// (`-?[0-9]+.[0-9]+`), exactly as `evt::parse_value` reads them; `None` for anything else.
fn plain_value(t: &str) -> Option<Value> {
    match t {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        "null" | "nil" => return Some(Value::Null),
        _ => {}
    }
    let b = t.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let int_len = digits.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len == 0 {
        return None;
    }
    match digits.get(int_len) {
        None => t.parse::<i64>().ok().map(Value::Int),
        Some(b'.') => {
            let frac = digits.get(int_len + 1..)?;
            if !frac.is_empty() && frac.iter().all(u8::is_ascii_digit) {
                t.parse::<f64>().ok().map(Value::Float)
            } else {
                None
            }
        }
        Some(_) => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::evt::parse_event_line;
    use crate::evt_alphabet::piece;
    use proptest::prelude::*;

    fn same(body: &str) -> Result<(), TestCaseError> {
        let mut names = Names::default();
        let slow = parse_event_line(body, 7);
        if let Some(fast) = parse_named(body, 7, &mut names) {
            let slow = slow.map_err(|e| {
                TestCaseError::fail(format!("{body}: fast parsed, general failed: {e}"))
            })?;
            prop_assert_eq!(&*fast.event_type, &*slow.event_type, "{}", body);
            prop_assert_eq!(fast.timestamp_ns, slow.timestamp_ns);
            prop_assert_eq!(fast.to_json(), slow.to_json(), "{}", body);
            // `to_json` merges duplicate keys: compare the field lists too.
            let names_f: Vec<&str> = fast.fields.iter().map(|(k, _)| &**k).collect();
            let names_s: Vec<&str> = slow.fields.iter().map(|(k, _)| &**k).collect();
            prop_assert_eq!(names_f, names_s, "{}", body);
        }
        Ok(())
    }

    #[test]
    fn common_shapes_take_the_fast_path() {
        let mut n = Names::default();
        let e = parse_named(
            "SensorReading { sensor_id: \"S0001\", temperature: 51.25, humidity: 40, ok: true, z: null, w: hello there };",
            5,
            &mut n,
        )
        .unwrap();
        assert_eq!(&*e.event_type, "SensorReading");
        assert_eq!(e.fields.len(), 6);
        assert!(matches!(e.field("temperature"), Some(Value::Float(f)) if *f == 51.25));
        assert!(matches!(e.field("humidity"), Some(Value::Int(40))));
        assert!(matches!(e.field("w"), Some(Value::Str(s)) if &**s == "hello there"));
        assert!(parse_named("E {}", 0, &mut n).is_some());
        assert!(parse_named("T { a: 1, }", 0, &mut n).is_some());
        // Shapes for the general parser.
        for other in [
            "T(1, 2)",
            "T { a: [1, 2] }",
            "T { a: 'x' }",
            "T { a: \"x\\n\" }",
            "T { \"k\": 1 }",
            "T { a: 1,, b: 2 }",
            "T { , }",
            "T { a }",
            "Tä { a: 1 }",
        ] {
            assert!(parse_named(other, 0, &mut n).is_none(), "{other}");
        }
    }

    #[test]
    fn recycled_field_lists_give_the_same_events() {
        let mut n = Names::default();
        let line = "R { a: 1, b: \"x\", c: 2.5 }";
        let first = parse_named(line, 1, &mut n).unwrap();
        let json = first.to_json();
        let held = first.clone();
        // Still shared: not taken.
        n.recycle(first);
        assert!(n.spare.is_empty());
        n.recycle(held);
        assert_eq!(n.spare.len(), 1);
        let again = parse_named("R { z: 9 }", 2, &mut n).unwrap();
        assert!(n.spare.is_empty());
        assert_eq!(again.fields.len(), 1);
        n.recycle(again);
        assert_eq!(parse_named(line, 1, &mut n).unwrap().to_json(), json);
    }

    proptest! {
        /// The bare-value shortcut reads what the general value parser reads.
        #[test]
        fn plain_values_match_the_general_parser(
            t in "-?[0-9]{0,21}(\\.[0-9]{0,4})?[a-z.]?|true|false|null|nil|-|\\.5|\\+1|1e5",
        ) {
            if let Some(v) = plain_value(&t) {
                let g = parse_value(&t).unwrap();
                prop_assert_eq!(format!("{v:?}"), format!("{g:?}"), "{}", t);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random text after `T {`: whenever the fast path accepts, it agrees with the
        /// general parser.
        #[test]
        fn fast_path_agrees_with_the_general_parser(parts in prop::collection::vec(piece(), 0..24)) {
            same(&format!("T {{{}}}", parts.concat()))?;
            same(&format!("T{{ {} }};", parts.concat()))?;
        }

        /// Well-formed lines of the common shape are parsed by the fast path, identically.
        #[test]
        fn well_formed_lines_take_the_fast_path(
            fields in prop::collection::vec((
                "[a-z_][a-z0-9_]{0,8}",
                prop_oneof![
                    any::<i64>().prop_map(|i| i.to_string()),
                    any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
                    "[a-zA-Z0-9 ,:;.!?-]{0,12}".prop_map(|s| format!("\"{s}\"")),
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
            let line = format!("Reading {{ {} }}", body.join(", "));
            let mut names = Names::default();
            prop_assert!(parse_named(&line, 0, &mut names).is_some(), "{}", line);
            same(&line)?;
        }
    }
}
