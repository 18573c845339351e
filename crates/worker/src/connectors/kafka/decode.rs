//! Kafka record payloads decoded straight into an [`Event`], without the intermediate
//! `serde_json::Value` tree of [`decode_payload`](super::super::payload::decode_payload): the
//! same rules (VPL.md §9) — type = `event_type`, else `type`, else the source's type; fields =
//! the `data` object if present, else the other top-level keys; integral numbers among the
//! fields become ints — and the same errors, for a fraction of the allocations (one per key,
//! string and container instead of a hash map per object plus a second copy).
//!
//! Field order: the payload's, without `event_type`; a `type` or non-object `data` kept as a
//! field goes last. A repeated key keeps its first position and its last value (as
//! `serde_json` maps do).

use crate::engine::Event;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::sync::Arc;
use varpulis_runtime::value::Fields;
use varpulis_runtime::Value;

/// The names a source saw recently (top-level keys, event types), shared by the events it
/// decodes: a name already held costs a comparison instead of an allocation. At most
/// [`Names::CAPACITY`] are held (the first seen, each at most [`Names::LONGEST`] bytes);
/// others are allocated each time, so hostile payloads with ever-new or huge keys cannot grow
/// it.
#[derive(Debug, Default)]
pub struct Names(Vec<Arc<str>>);

impl Names {
    /// Most names held.
    pub const CAPACITY: usize = 64;
    /// Longest name held, in bytes.
    pub const LONGEST: usize = 128;

    /// The shared name equal to `s` (held from now on if there is room).
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(n) = self.0.iter().find(|n| &***n == s) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(s);
        if self.0.len() < Self::CAPACITY && s.len() <= Self::LONGEST {
            self.0.push(n.clone());
        }
        n
    }
}

/// Decodes one payload into an event of time `timestamp_ns`; `default_type` names payloads
/// that name no type. `names` shares the top-level keys and type names between events.
pub fn decode_record(
    payload: &[u8],
    default_type: &str,
    timestamp_ns: i64,
    names: &mut Names,
) -> Result<Event, String> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let top = TopSeed(names)
        .deserialize(&mut de)
        .map_err(|e| format!("not JSON: {e}"))?;
    de.end().map_err(|e| format!("not JSON: {e}"))?;
    let Some(mut top) = top else {
        return Err("payload is not a JSON object".into());
    };
    dedup(&mut top.rest);
    let named: Option<Arc<str>> = match (top.event_type.take(), top.ty.take()) {
        (Some(Value::Str(t)), other) => {
            if let Some(o) = other {
                top.rest.push((Arc::from("type"), o));
            }
            Some(t)
        }
        (None, Some(Value::Str(t))) => Some(t),
        (Some(_), _) => return Err("`event_type` is not a string".into()),
        (None, Some(other)) => {
            top.rest.push((Arc::from("type"), other));
            None
        }
        (None, None) => None,
    };
    let ty: &str = named.as_deref().unwrap_or(default_type);
    if ty.is_empty() {
        return Err("no event type".into());
    }
    let mut fields = match top.data.take() {
        Some(Value::Map(data)) => Arc::unwrap_or_clone(data),
        Some(other) => {
            top.rest.push((Arc::from("data"), other));
            top.rest
        }
        None => top.rest,
    };
    for (_, v) in &mut fields {
        integral_to_int(v);
    }
    let event_type = match named {
        Some(t) => t,
        None => names.get(ty),
    };
    Ok(Event {
        event_type,
        timestamp_ns,
        fields: Arc::new(fields),
    })
}

/// A top-level float with no fraction (and within ±9e15) becomes an int, as in
/// `decode_payload`.
fn integral_to_int(v: &mut Value) {
    if let Value::Float(f) = *v {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            *v = Value::Int(f as i64);
        }
    }
}

/// Merges repeated keys: the first position, the last value (what a `serde_json` map does).
fn dedup(fields: &mut Fields) {
    let repeated = if fields.len() <= 32 {
        fields
            .iter()
            .enumerate()
            .any(|(i, (k, _))| fields[..i].iter().any(|(j, _)| j == k))
    } else {
        let mut seen = std::collections::HashSet::with_capacity(fields.len());
        !fields.iter().all(|(k, _)| seen.insert(k.clone()))
    };
    if !repeated {
        return;
    }
    let mut at: std::collections::HashMap<Arc<str>, usize> = std::collections::HashMap::new();
    let mut out: Fields = Vec::with_capacity(fields.len());
    for (k, v) in fields.drain(..) {
        match at.get(&k) {
            Some(&i) => {
                if let Some(slot) = out.get_mut(i) {
                    slot.1 = v;
                }
            }
            None => {
                at.insert(k.clone(), out.len());
                out.push((k, v));
            }
        }
    }
    *fields = out;
}

/// The top-level object, with the keys the rules look at set apart.
#[derive(Default)]
struct Top {
    event_type: Option<Value>,
    ty: Option<Value>,
    data: Option<Value>,
    /// The other keys, in order.
    rest: Fields,
}

/// Reads the top level: `Some` for an object, `None` for any other JSON value; its keys and a
/// string `event_type`/`type` come from the names.
struct TopSeed<'n>(&'n mut Names);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Option<Top>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(TopVisitor(self.0))
    }
}

struct TopVisitor<'n>(&'n mut Names);

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Option<Top>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut top = Top::default();
        while let Some(key) = map.next_key::<KeyText<'de>>()? {
            match key.as_str() {
                "event_type" => top.event_type = Some(map.next_value_seed(NameSeed(self.0))?),
                "type" => top.ty = Some(map.next_value_seed(NameSeed(self.0))?),
                "data" => top.data = Some(map.next_value_seed(ValueSeed)?),
                k => {
                    let value = map.next_value_seed(ValueSeed)?;
                    top.rest.push((self.0.get(k), value));
                }
            }
        }
        Ok(Some(top))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(ValueSeed)?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A key, borrowed from the payload when it has no escapes.
struct KeyText<'de>(std::borrow::Cow<'de, str>);

impl KeyText<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(KeyText(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(KeyText(std::borrow::Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(KeyText(std::borrow::Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value as a VPL value (numbers that fit an `i64` become ints, others floats).
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Any JSON value as [`ValueSeed`] reads it, except that a string is taken from the names (an
/// event type repeats from record to record).
struct NameSeed<'n>(&'n mut Names);

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(NameVisitor(self.0))
    }
}

struct NameVisitor<'n>(&'n mut Names);

impl<'de> Visitor<'de> for NameVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(self.0.get(s)))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        ValueVisitor.visit_unit()
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Value, E> {
        ValueVisitor.visit_bool(b)
    }
    fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<Value, E> {
        ValueVisitor.visit_i64(i)
    }
    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<Value, E> {
        ValueVisitor.visit_u64(u)
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Value, E> {
        ValueVisitor.visit_f64(f)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        ValueVisitor.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        ValueVisitor.visit_map(map)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(ValueSeed)? {
            items.push(v);
        }
        Ok(Value::Array(Arc::new(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Fields::new();
        while let Some(key) = map.next_key::<KeyText<'de>>()? {
            let v = map.next_value_seed(ValueSeed)?;
            fields.push((Arc::from(key.as_str()), v));
        }
        dedup(&mut fields);
        Ok(Value::Map(Arc::new(fields)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::super::payload::decode_payload;
    use super::*;

    /// The event `decode_payload` + `Event::from_json` give, fields sorted by name.
    fn reference(payload: &str, default_type: &str) -> Result<(String, Vec<String>), String> {
        let (ty, fields) = decode_payload(payload.as_bytes(), default_type)?;
        let ev = Event::from_json(&ty, &fields, 0);
        Ok((ty, sorted(&ev)))
    }

    fn sorted(ev: &Event) -> Vec<String> {
        let mut f: Vec<String> = ev
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_json()))
            .collect();
        f.sort();
        f
    }

    fn direct(payload: &str, default_type: &str) -> Result<(String, Vec<String>), String> {
        let ev = decode_record(payload.as_bytes(), default_type, 0, &mut Names::default())?;
        Ok((ev.event_type.to_string(), sorted(&ev)))
    }

    #[test]
    fn decodes_like_decode_payload() {
        let cases = [
            r#"{"event_type":"Reading","id":"s1","temp":51}"#,
            r#"{"event_type":"A","type":"kept","x":2.0,"y":2.5,"z":1e3}"#,
            r#"{"type":"B","x":{"n":2.0,"m":[1,2.0,"s",null,true]}}"#,
            r#"{"type":7,"x":1}"#,
            r#"{"x":18446744073709551615,"y":-3,"big":9.5e15}"#,
            r#"{"event_type":"A","data":{"q":3.0,"r":"t"},"ignored":1}"#,
            r#"{"event_type":"A","data":[1,2],"k":"v"}"#,
            r#"{"event_type":"A","x":1,"x":2,"y":{"a":1,"a":"b"}}"#,
            r#"{"event_type":"A","esc\"aped":"v\n\u00e9"}"#,
            r#"{}"#,
            r#"{"event_type":""}"#,
            r#"{"event_type":5}"#,
            r#"[1,2]"#,
            r#""text""#,
            r#"3"#,
            r#"not json"#,
            r#"{"event_type":"A"} trailing"#,
            r#"{"event_type":"A","x":"#,
        ];
        for c in cases {
            for default in ["D", ""] {
                let (r, d) = (reference(c, default), direct(c, default));
                assert_eq!(
                    r.is_ok(),
                    d.is_ok(),
                    "{c} with default {default:?}: {r:?} vs {d:?}"
                );
                if r.is_ok() {
                    assert_eq!(r, d, "{c}");
                }
            }
        }
    }

    #[test]
    fn keeps_the_payload_field_order_and_shares_the_names() {
        let mut names = Names::default();
        let p = br#"{"event_type":"R","b":1,"a":2,"type":"t"}"#;
        let e1 = decode_record(p, "D", 5, &mut names).unwrap();
        let keys: Vec<&str> = e1.fields.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["b", "a", "type"]);
        assert_eq!(e1.timestamp_ns, 5);
        let e2 = decode_record(p, "D", 6, &mut names).unwrap();
        assert!(Arc::ptr_eq(&e1.event_type, &e2.event_type));
        assert!(Arc::ptr_eq(&e1.fields[0].0, &e2.fields[0].0));
        let e3 = decode_record(br#"{"b":3}"#, "D", 7, &mut names).unwrap();
        let e4 = decode_record(br#"{"b":4}"#, "D", 7, &mut names).unwrap();
        assert!(Arc::ptr_eq(&e3.event_type, &e4.event_type));
        assert_eq!(&*e3.event_type, "D");
    }

    #[test]
    fn holds_at_most_its_capacity_of_names() {
        let mut names = Names::default();
        for i in 0..Names::CAPACITY * 3 {
            let p = format!(r#"{{"event_type":"T{i}","k{i}":1}}"#);
            let ev = decode_record(p.as_bytes(), "", 0, &mut names).unwrap();
            assert_eq!(&*ev.event_type, format!("T{i}"));
            assert_eq!(&*ev.fields[0].0, format!("k{i}"));
        }
        assert_eq!(names.0.len(), Names::CAPACITY);
    }
}
