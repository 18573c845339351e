//! Output events as JSON lines written straight into a byte buffer or writer, without building a
//! `serde_json::Value` tree: the same bytes as `serde_json::to_writer(&ev.to_json())`
//! (`{"event_type":…,"timestamp":…,"fields":{…}}`, fields in order, floats as serde_json prints
//! them (`zmij`, integers with `itoa`), non-finite floats `null`, timestamps RFC 3339, durations
//! in ns). Events or maps whose keys repeat take the `to_json` path, which keeps the last value
//! at the first position.

use crate::event::Event;
use crate::value::{write_rfc3339, Value, RFC3339_MAX};
use std::cell::Cell;
use std::io::{self, Write};
use std::sync::Arc;

/// Writes `ev` as one JSON object (no newline).
pub fn write_event(w: &mut impl Write, ev: &Event) -> io::Result<()> {
    if has_duplicates(&ev.fields) {
        return serde_json::to_writer(w, &ev.to_json()).map_err(io::Error::other);
    }
    w.write_all(b"{\"event_type\":")?;
    write_str(w, &ev.event_type)?;
    w.write_all(b",\"timestamp\":\"")?;
    write_timestamp(w, ev.timestamp_ns)?;
    w.write_all(b"\",\"fields\":")?;
    write_fields(w, &ev.fields)?;
    w.write_all(b"}")
}

fn has_duplicates(fields: &[(Arc<str>, Value)]) -> bool {
    if fields.len() > 64 {
        let mut seen = std::collections::HashSet::with_capacity(fields.len());
        return !fields.iter().all(|(k, _)| seen.insert(&**k));
    }
    fields
        .iter()
        .enumerate()
        .any(|(i, (k, _))| fields[..i].iter().any(|(j, _)| j == k))
}

fn write_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    // What serde_json escapes: `"`, `\\` and control characters below 0x20.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        w.write_all(b"\"")?;
        w.write_all(s.as_bytes())?;
        return w.write_all(b"\"");
    }
    serde_json::to_writer(w, s).map_err(io::Error::other)
}

/// Length of `YYYY-MM-DDTHH:MM:SS`, the part of a timestamp shared by a whole second.
const SECOND_PREFIX: usize = 19;

thread_local! {
    /// The last second written and its text: consecutive outputs mostly share it.
    static LAST_SECOND: Cell<(i64, [u8; SECOND_PREFIX])> = const { Cell::new((i64::MIN, [0; SECOND_PREFIX])) };
}

/// Writes `ns` as `write_rfc3339` does; the date and time of day are reused from the previous
/// call on this thread when in the same second.
fn write_timestamp(w: &mut impl Write, ns: i64) -> io::Result<()> {
    let mut buf = [0u8; RFC3339_MAX];
    let second = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let (last, prefix) = LAST_SECOND.get();
    if last != second {
        let n = write_rfc3339(ns, &mut buf);
        if n > SECOND_PREFIX {
            let mut p = [0u8; SECOND_PREFIX];
            p.copy_from_slice(&buf[..SECOND_PREFIX]);
            LAST_SECOND.set((second, p));
        }
        return w.write_all(buf.get(..n).unwrap_or_default());
    }
    buf[..SECOND_PREFIX].copy_from_slice(&prefix);
    let mut n = SECOND_PREFIX;
    if frac != 0 {
        buf[n] = b'.';
        let (mut v, width) = if frac % 1_000_000 == 0 {
            (frac / 1_000_000, 3)
        } else if frac % 1_000 == 0 {
            (frac / 1_000, 6)
        } else {
            (frac, 9)
        };
        for i in (0..width).rev() {
            buf[n + 1 + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        n += 1 + width;
    }
    buf[n] = b'Z';
    w.write_all(buf.get(..n + 1).unwrap_or_default())
}

fn write_map(w: &mut impl Write, fields: &[(Arc<str>, Value)]) -> io::Result<()> {
    if has_duplicates(fields) {
        let v = Value::Map(Arc::new(fields.to_vec())).to_json();
        return serde_json::to_writer(w, &v).map_err(io::Error::other);
    }
    write_fields(w, fields)
}

/// `{"k":v,…}` for keys known to be distinct.
fn write_fields(w: &mut impl Write, fields: &[(Arc<str>, Value)]) -> io::Result<()> {
    w.write_all(b"{")?;
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        write_str(w, k)?;
        w.write_all(b":")?;
        write_value(w, v)?;
    }
    w.write_all(b"}")
}

fn write_value(w: &mut impl Write, v: &Value) -> io::Result<()> {
    match v {
        Value::Null => w.write_all(b"null"),
        Value::Bool(true) => w.write_all(b"true"),
        Value::Bool(false) => w.write_all(b"false"),
        Value::Int(i) => w.write_all(itoa::Buffer::new().format(*i).as_bytes()),
        // What serde_json prints for a finite f64 (it uses zmij the same way).
        Value::Float(f) if f.is_finite() => {
            w.write_all(zmij::Buffer::new().format_finite(*f).as_bytes())
        }
        Value::Float(_) => w.write_all(b"null"),
        Value::Str(s) => write_str(w, s),
        Value::Array(items) => {
            w.write_all(b"[")?;
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                write_value(w, x)?;
            }
            w.write_all(b"]")
        }
        Value::Map(m) => write_map(w, m),
        Value::Timestamp(t) => {
            w.write_all(b"\"")?;
            write_timestamp(w, *t)?;
            w.write_all(b"\"")
        }
        Value::Duration(d) => w.write_all(itoa::Buffer::new().format(*d).as_bytes()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            prop_oneof![
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(2.0),
                Just(-0.0),
                Just(1e300)
            ]
            .prop_map(Value::Float),
            "(?s).{0,8}".prop_map(|s: String| Value::Str(Arc::from(s))),
            any::<i64>().prop_map(Value::Timestamp),
            any::<i64>().prop_map(Value::Duration),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| Value::Array(Arc::new(v))),
                prop::collection::vec(("[ab\"\\\\]{1,2}", inner), 0..4).prop_map(|kv| {
                    Value::Map(Arc::new(
                        kv.into_iter()
                            .map(|(k, v)| (Arc::from(k.as_str()), v))
                            .collect(),
                    ))
                }),
            ]
        })
    }

    proptest! {
        /// Timestamps written in a row (the second reused) read as `write_rfc3339` writes them.
        #[test]
        fn timestamps_in_a_row_match_the_full_formatter(
            start in any::<i64>(),
            steps in prop::collection::vec(
                prop_oneof![Just(0i64), 0i64..1_000, 0i64..2_000_000_000, Just(1_000_000)],
                1..20,
            ),
        ) {
            let mut ns = start;
            for step in steps {
                ns = ns.saturating_add(step);
                let mut fast = Vec::new();
                write_timestamp(&mut fast, ns).unwrap();
                let mut buf = [0u8; RFC3339_MAX];
                let n = write_rfc3339(ns, &mut buf);
                prop_assert_eq!(&fast[..], &buf[..n], "{}", ns);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The direct writer gives the bytes of `serde_json::to_writer(&ev.to_json())`.
        #[test]
        fn same_bytes_as_the_json_tree(
            ty in "[A-Za-z\"\\\\é]{1,6}",
            ts in any::<i64>(),
            fields in prop::collection::vec(("[abc\"\\n]{1,2}", value()), 0..5),
        ) {
            let ev = Event {
                event_type: Arc::from(ty.as_str()),
                timestamp_ns: ts,
                fields: Arc::new(fields.into_iter().map(|(k, v)| (Arc::from(k.as_str()), v)).collect()),
            };
            let mut fast = Vec::new();
            write_event(&mut fast, &ev).unwrap();
            let slow = serde_json::to_vec(&ev.to_json()).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow));
        }
    }
}
