//! `.evt` event files (VPL.md §13).
//!
//! Each non-blank, non-comment line is one event: `Type { name: value, … }`, positional
//! `Type(v1, v2)` (fields `field_0`, `field_1`, …) or a JSON object. `BATCH <ms>` sets the offset
//! of the following lines; an `@<n>[ms|s|m]` prefix sets it for one line. Event time is the Unix
//! epoch plus the offset, and events are returned stably sorted by offset. Any unparsable line
//! aborts loading with its line number.

use crate::event::Event;
use crate::value::{Fields, Value};
use std::sync::Arc;

/// A line of an event file that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct EvtError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses an event file into events sorted by offset (ties keep file order).
pub fn parse_evt(text: &str) -> Result<Vec<Event>, EvtError> {
    let mut events = parse_evt_in_file_order(text)?;
    events.sort_by_key(|e| e.timestamp_ns);
    Ok(events)
}

/// Parses an event file keeping the events in file order: a recording of arrival order, where
/// event times (offsets) may go backwards (used for programs with `.watermark`).
pub fn parse_evt_in_file_order(text: &str) -> Result<Vec<Event>, EvtError> {
    let mut lines = LineParser::default();
    let mut events: Vec<Event> = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        if let Some(event) = lines.line(raw, idx + 1, None)? {
            events.push(event);
        }
    }
    Ok(events)
}

/// A fast parser tried before the general one: event text and offset → the same event as the
/// general parser, or `None`.
pub(crate) type FastPath<'a> = dyn FnMut(&str, i64) -> Option<Event> + 'a;

/// The state of an event file between lines: the `BATCH` offset.
#[derive(Debug, Default)]
pub(crate) struct LineParser {
    batch_ms: i64,
}

impl LineParser {
    /// The offset (ms) of lines without an `@` prefix: the last `BATCH`.
    pub(crate) fn batch_ms(&self) -> i64 {
        self.batch_ms
    }

    /// Parses line `line_no` (1-based): `None` for blank, comment and `BATCH` lines. `fast`
    /// is tried first on the event text and offset (`evt_fast::parse_named` in a replay; it
    /// must give the same event as the general parser or `None`).
    pub(crate) fn line(
        &mut self,
        raw: &str,
        line_no: usize,
        fast: Option<&mut FastPath<'_>>,
    ) -> Result<Option<Event>, EvtError> {
        let err = |message: String| EvtError {
            line: line_no,
            message,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            return Ok(None);
        }
        if let Some(rest) = strip_word(line, "BATCH") {
            let ms = rest.trim().parse::<i64>().map_err(|_| {
                err(format!(
                    "`BATCH` needs an integer offset in ms, got `{}`",
                    rest.trim()
                ))
            })?;
            if ms < 0 {
                return Err(err("`BATCH` offset must not be negative".into()));
            }
            self.batch_ms = ms;
            return Ok(None);
        }
        let (offset_ms, body) = if let Some(rest) = line.strip_prefix('@') {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let ms = parse_offset(&rest[..end]).map_err(err)?;
            (ms, rest[end..].trim())
        } else {
            (self.batch_ms, line)
        };
        if body.is_empty() {
            return Err(err("offset prefix without an event".into()));
        }
        let ts = offset_ms
            .checked_mul(1_000_000)
            .ok_or_else(|| err("offset out of range".into()))?;
        if let Some(fast) = fast {
            if let Some(event) = fast(body, ts) {
                return Ok(Some(event));
            }
        }
        parse_event_line(body, ts).map(Some).map_err(err)
    }
}

/// `BATCH 500` → Some(" 500"); keyword must be a whole word.
fn strip_word<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(word)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest)
}

/// `10s`, `500ms`, `5`, `2m`, `1.5s` → milliseconds.
fn parse_offset(s: &str) -> Result<i64, String> {
    let (num, factor) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (s, 1.0)
    };
    let bad = || format!("bad offset `@{s}` (expected e.g. `@10s`, `@500ms`, `@5`)");
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    if let Ok(i) = num.parse::<i64>() {
        return i.checked_mul(factor as i64).ok_or_else(bad);
    }
    let f = num.parse::<f64>().map_err(|_| bad())? * factor;
    if !f.is_finite() || f > i64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok(f.round() as i64)
}

/// One event line without its offset prefix.
pub(crate) fn parse_event_line(body: &str, ts: i64) -> Result<Event, String> {
    if body.starts_with('{') {
        return parse_json_line(body, ts);
    }
    let body = body.strip_suffix(';').map(str::trim_end).unwrap_or(body);
    let name_end = body
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let name = &body[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("expected an event type name, found `{body}`"));
    }
    let rest = body[name_end..].trim_start();
    let (open, close, named) = match rest.chars().next() {
        Some('{') => ('{', '}', true),
        Some('(') => ('(', ')', false),
        _ => return Err(format!("expected `{{` or `(` after event type `{name}`")),
    };
    let inner = rest[open.len_utf8()..]
        .strip_suffix(close)
        .ok_or_else(|| format!("missing closing `{close}` for event `{name}`"))?;
    let items = split_top(inner, ',')?;
    let mut fields: Fields = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item = item.trim();
        if item.is_empty() {
            if i + 1 == items.len() && i > 0 {
                continue; // trailing comma
            }
            if items.len() == 1 {
                break; // `Type {}` / `Type()`
            }
            return Err("empty field".into());
        }
        if named {
            let parts = split_top(item, ':')?;
            if parts.len() < 2 {
                return Err(format!("expected `name: value`, found `{item}`"));
            }
            let key_text = parts[0].trim();
            let key = match parse_value(key_text)? {
                Value::Str(s) => s,
                _ => return Err(format!("bad field name `{key_text}`")),
            };
            let value_text = item[parts[0].len() + 1..].trim();
            fields.push((key, parse_value(value_text)?));
        } else {
            fields.push((Arc::from(format!("field_{i}")), parse_value(item)?));
        }
    }
    Ok(Event {
        event_type: Arc::from(name),
        timestamp_ns: ts,
        fields: Arc::new(fields),
    })
}

/// `{"event_type": "T", "data": {…}}` or the flat MQTT shape (§9).
fn parse_json_line(body: &str, ts: i64) -> Result<Event, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v.as_object().ok_or("JSON line must be an object")?;
    event_from_json_object(obj, None, ts)
}

/// Decodes a JSON event object: type = `event_type`, else `type`, else `default_type`; fields = the
/// `data` object if present, else the other top-level keys. Shared with connectors (§9).
pub fn event_from_json_object(
    obj: &serde_json::Map<String, serde_json::Value>,
    default_type: Option<&str>,
    ts: i64,
) -> Result<Event, String> {
    let ty = obj
        .get("event_type")
        .and_then(|v| v.as_str())
        .or_else(|| obj.get("type").and_then(|v| v.as_str()))
        .or(default_type)
        .ok_or("JSON event has no `event_type` (or `type`)")?;
    if let Some(data) = obj.get("data") {
        let data = data.as_object().ok_or("`data` must be an object")?;
        return Ok(Event::from_json(ty, data, ts));
    }
    let fields = obj
        .iter()
        .filter(|(k, _)| {
            k.as_str() != "event_type" && k.as_str() != "type" && k.as_str() != "timestamp"
        })
        .map(|(k, v)| (Arc::from(k.as_str()), Value::from_json(v)))
        .collect();
    Ok(Event::new(ty, ts, fields))
}

/// Splits on `sep` outside quotes and brackets.
fn split_top(s: &str, sep: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth: i32 = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth -= 1,
            _ if c == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced `{c}`"));
        }
    }
    if quote.is_some() {
        return Err("unterminated string".into());
    }
    if depth != 0 {
        return Err("unbalanced brackets".into());
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// One value: literal, quoted string, nested array, or bare string.
pub(crate) fn parse_value(text: &str) -> Result<Value, String> {
    let t = text.trim();
    match t {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        "null" | "nil" => return Ok(Value::Null),
        _ => {}
    }
    if let Some(q) = t.chars().next().filter(|c| *c == '"' || *c == '\'') {
        return parse_quoted(t, q).map(|s| Value::Str(Arc::from(s)));
    }
    if let Some(inner) = t.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("missing `]` in `{t}`"))?;
        if inner.trim().is_empty() {
            return Ok(Value::Array(Arc::new(Vec::new())));
        }
        let items = split_top(inner, ',')?;
        let values = items
            .iter()
            .map(|i| parse_value(i))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Value::Array(Arc::new(values)));
    }
    let numeric_start =
        t.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.');
    if numeric_start
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        if let Ok(i) = t.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        if t.bytes().any(|b| b.is_ascii_digit()) {
            if let Ok(f) = t.parse::<f64>() {
                return Ok(Value::Float(f));
            }
        }
    }
    Ok(Value::str(t))
}

/// A `"…"` or `'…'` string spanning the whole of `t`, with `\n \t \" \' \\` escapes.
fn parse_quoted(t: &str, q: char) -> Result<String, String> {
    let mut out = String::with_capacity(t.len());
    let mut chars = t.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        if c == q {
            if i + c.len_utf8() != t.len() {
                return Err(format!("unexpected text after string in `{t}`"));
            }
            return Ok(out);
        }
        if c == '\\' {
            match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('"') => out.push('"'),
                Some('\'') => out.push('\''),
                Some('\\') => out.push('\\'),
                Some(other) => return Err(format!("unknown escape `\\{other}`")),
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Err("unterminated string".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn f<'a>(e: &'a Event, k: &str) -> &'a Value {
        e.field(k).unwrap_or(&Value::Null)
    }

    #[test]
    fn spec_example_parses_and_sorts() {
        let text =
            "PumpReading { pump: \"P1\", rpm: 1200 }\nBATCH 5000\n@6s PumpReading(\"P3\", 0)\n\
                    {\"event_type\": \"PumpReading\", \"data\": {\"pump\": \"P4\", \"rpm\": 0}}\n";
        let evs = parse_evt(text).unwrap();
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].timestamp_ns, 0);
        assert_eq!(evs[1].timestamp_ns, 5_000_000_000);
        assert!(matches!(f(&evs[1], "pump"), Value::Str(s) if &**s == "P4"));
        assert_eq!(evs[2].timestamp_ns, 6_000_000_000);
        assert!(matches!(f(&evs[2], "field_0"), Value::Str(s) if &**s == "P3"));
        assert!(matches!(f(&evs[2], "field_1"), Value::Int(0)));
    }

    #[test]
    fn values_strings_and_arrays() {
        let evs = parse_evt(
            "T { a: 'x, y', b: [1, [2.5, \"q\"]], c: hello world, d: nil, e: \"a\\n\\\"b\" };",
        )
        .unwrap();
        let e = &evs[0];
        assert!(matches!(f(e, "a"), Value::Str(s) if &**s == "x, y"));
        assert!(matches!(f(e, "b"), Value::Array(a) if a.len() == 2));
        assert!(matches!(f(e, "c"), Value::Str(s) if &**s == "hello world"));
        assert!(matches!(f(e, "d"), Value::Null));
        assert!(matches!(f(e, "e"), Value::Str(s) if &**s == "a\n\"b"));
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse_evt("# c\nT {a: 1}\nT {a: \"open}\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(parse_evt("\n@x T{}").unwrap_err().line, 2);
        assert_eq!(parse_evt("BATCH soon").unwrap_err().line, 1);
        assert_eq!(parse_evt("{\"data\": {}}").unwrap_err().line, 1);
    }

    #[test]
    fn flat_json_and_empty_events() {
        let evs = parse_evt("@500ms {\"type\": \"T\", \"v\": 2}\n@1m E {}\nP()").unwrap();
        assert_eq!(evs[0].fields.len(), 0);
        assert_eq!(&*evs[1].event_type, "T");
        assert_eq!(evs[1].timestamp_ns, 500_000_000);
        assert_eq!(evs[2].timestamp_ns, 60_000_000_000);
    }
}
