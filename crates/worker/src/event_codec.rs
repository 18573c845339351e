//! Event JSON without `serde_json::Value` trees (issue 22): the body of `POST .../events-batch`
//! (`{"events": [...]}` or a bare array of `{event_type, fields, timestamp?}`, [`decode_batch`])
//! and inter-pipeline route messages (one such event or an array, [`decode_route`]) are decoded
//! straight into runtime events; answers are written straight from the output events
//! (`varpulis_runtime::json_out`).
//!
//! Decoding gives exactly what `serde_json` into `InputEvent` then `Event::from_json` gave
//! (same fields in the same order, a repeated key keeps its first position and its last value,
//! integers that fit in an i64 stay integers, other numbers are floats, unknown keys are
//! ignored, a repeated `event_type`/`fields`/`timestamp` or a missing `event_type` is an
//! error); `tests` checks it against that path. One difference: serde's derive also took an
//! event written as a positional array (`["T", {...}]`); that undocumented form is refused. The event type and field names of one body are
//! shared between its events instead of allocated per event.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use varpulis_runtime::value::Fields;
use varpulis_runtime::Value;

/// One decoded event of a batch, before its timestamp is resolved.
#[derive(Debug)]
pub struct WireEvent {
    /// Event type (may be empty: the caller rejects that).
    pub event_type: Arc<str>,
    /// Fields in order.
    pub fields: Fields,
    /// `timestamp` as sent (absent: `None`).
    pub timestamp: Option<serde_json::Value>,
}

/// Names shared by the events of one body (bounded: a hostile body cannot grow it past
/// [`MAX_NAMES`] entries; further names are allocated per use).
#[derive(Default)]
struct Names(HashMap<Box<str>, Arc<str>>);

/// Distinct names kept per body at most.
const MAX_NAMES: usize = 1024;

impl Names {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        if self.0.len() < MAX_NAMES {
            self.0.insert(Box::from(s), a.clone());
        }
        a
    }
}

/// Decodes a batch body: a JSON array of events or an object with an `events` array.
pub fn decode_batch(body: &[u8]) -> Result<Vec<WireEvent>, serde_json::Error> {
    let mut names = Names::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let events = BodySeed { names: &mut names }.deserialize(&mut de)?;
    de.end()?;
    Ok(events)
}

/// Decodes a route message (docs/dataplane.md): one `{"event_type", "timestamp", "fields"}`
/// object or an array of them. Unlike a batch body, `"fields": null` reads as no fields (what
/// the tree decoder of route messages accepted).
pub fn decode_route(payload: &[u8]) -> Result<Vec<WireEvent>, serde_json::Error> {
    let mut names = Names::default();
    let mut de = serde_json::Deserializer::from_slice(payload);
    let events = de.deserialize_any(RouteSeed { names: &mut names })?;
    de.end()?;
    Ok(events)
}

struct RouteSeed<'n> {
    names: &'n mut Names,
}

impl<'de> Visitor<'de> for RouteSeed<'_> {
    type Value = Vec<WireEvent>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object or an array of them")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(ev) = seq.next_element_seed(EventSeed {
            names: &mut *self.names,
            null_fields: true,
        })? {
            out.push(ev);
        }
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let one = EventSeed {
            names: self.names,
            null_fields: true,
        }
        .visit_map(map)?;
        Ok(vec![one])
    }
}

/// A string that borrows from the body when it has no escapes. (serde's `borrow`
/// on a `Cow` falls back to an owned copy when it has to unescape).
#[derive(serde::Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

struct BodySeed<'n> {
    names: &'n mut Names,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Vec<WireEvent>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Vec<WireEvent>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`{\"events\": [...]}` or a JSON array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        EventsSeed { names: self.names }.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut events = None;
        while let Some(k) = map.next_key::<Text<'de>>()? {
            if k.0 == "events" {
                if events.is_some() {
                    return Err(de::Error::duplicate_field("events"));
                }
                events = Some(map.next_value_seed(EventsSeed {
                    names: &mut *self.names,
                })?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        events.ok_or_else(|| de::Error::missing_field("events"))
    }
}

struct EventsSeed<'n> {
    names: &'n mut Names,
}

impl<'de> DeserializeSeed<'de> for EventsSeed<'_> {
    type Value = Vec<WireEvent>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_> {
    type Value = Vec<WireEvent>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // A hint from the body is not trusted for more than a modest reservation.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(ev) = seq.next_element_seed(EventSeed {
            names: &mut *self.names,
            null_fields: false,
        })? {
            out.push(ev);
        }
        Ok(out)
    }
}

struct EventSeed<'n> {
    names: &'n mut Names,
    /// `"fields": null` reads as no fields (route messages) instead of an error.
    null_fields: bool,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = WireEvent;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = WireEvent;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct InputEvent")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event_type = None;
        let mut fields = None;
        let mut timestamp = None;
        while let Some(k) = map.next_key::<Text<'de>>()? {
            match &*k.0 {
                "event_type" => {
                    if event_type.is_some() {
                        return Err(de::Error::duplicate_field("event_type"));
                    }
                    let t = map.next_value::<Text<'de>>()?;
                    event_type = Some(self.names.get(&t.0));
                }
                "fields" => {
                    if fields.is_some() {
                        return Err(de::Error::duplicate_field("fields"));
                    }
                    let seed = FieldsSeed {
                        names: Some(&mut *self.names),
                    };
                    fields = Some(if self.null_fields {
                        map.next_value_seed(NullOr(seed))?
                    } else {
                        map.next_value_seed(seed)?
                    });
                }
                "timestamp" => {
                    if timestamp.is_some() {
                        return Err(de::Error::duplicate_field("timestamp"));
                    }
                    // `Option<Value>`: `null` reads as absent.
                    let v = map.next_value::<serde_json::Value>()?;
                    timestamp = Some((!v.is_null()).then_some(v));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(WireEvent {
            event_type: event_type.ok_or_else(|| de::Error::missing_field("event_type"))?,
            fields: fields.unwrap_or_default(),
            timestamp: timestamp.flatten(),
        })
    }
}

/// Objects up to this many keys look repeated keys up linearly.
const LINEAR_KEYS: usize = 32;

/// A JSON object as ordered fields: a repeated key keeps its first position, takes the last
/// value (what `serde_json::Map` with `preserve_order` does). Names are shared through
/// `names` at the top level of an event.
struct FieldsSeed<'n> {
    names: Option<&'n mut Names>,
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = Fields;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = Fields;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        // Positions by name once the object is large (repeated keys stay linear-time).
        let mut index: Option<HashMap<Arc<str>, usize>> = None;
        while let Some(k) = map.next_key::<Text<'de>>()? {
            let v = map.next_value_seed(ValueSeed)?;
            let seen = match &index {
                Some(ix) => ix.get(&*k.0).copied(),
                None => out.iter().position(|(n, _)| **n == *k.0),
            };
            if let Some(slot) = seen.and_then(|i| out.get_mut(i)) {
                slot.1 = v;
                continue;
            }
            if index.is_none() && out.len() >= LINEAR_KEYS {
                index = Some(
                    out.iter()
                        .enumerate()
                        .map(|(i, (n, _))| (n.clone(), i))
                        .collect(),
                );
            }
            let name = match self.names.as_deref_mut() {
                Some(names) => names.get(&k.0),
                None => Arc::from(&*k.0),
            };
            if let Some(ix) = &mut index {
                ix.insert(name.clone(), out.len());
            }
            out.push((name, v));
        }
        Ok(out)
    }
}

/// `null` as no fields, else the fields of an object.
struct NullOr<'n>(FieldsSeed<'n>);

impl<'de> DeserializeSeed<'de> for NullOr<'_> {
    type Value = Fields;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for NullOr<'_> {
    type Value = Fields;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Fields, E> {
        Ok(Fields::new())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Fields, E> {
        Ok(Fields::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Fields, D::Error> {
        self.0.deserialize(d)
    }
}

/// One JSON value as a runtime value (`Value::from_json` of the tree serde_json builds).
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(v as f64),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(ValueSeed)? {
            out.push(v);
        }
        Ok(Value::Array(Arc::new(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        FieldsSeed { names: None }
            .visit_map(map)
            .map(|f| Value::Map(Arc::new(f)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use varpulis_api::worker::{BatchInjectRequest, InputEvent};
    use varpulis_runtime::Event;

    /// The old path: serde_json trees, then `Event::from_json`.
    fn old(body: &[u8]) -> Result<Vec<(String, String, Option<serde_json::Value>)>, String> {
        let first = body.iter().find(|c| !c.is_ascii_whitespace()).copied();
        let input: Vec<InputEvent> = if first == Some(b'[') {
            serde_json::from_slice(body).map_err(|e| e.to_string())?
        } else {
            serde_json::from_slice::<BatchInjectRequest>(body)
                .map_err(|e| e.to_string())?
                .events
        };
        Ok(input
            .iter()
            .map(|ev| {
                let e = Event::from_json(&ev.event_type, &ev.fields, 0);
                (
                    ev.event_type.clone(),
                    format!("{:?}", e.fields),
                    ev.timestamp.clone().filter(|t| !t.is_null()),
                )
            })
            .collect())
    }

    fn new(body: &[u8]) -> Result<Vec<(String, String, Option<serde_json::Value>)>, String> {
        Ok(decode_batch(body)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|w| {
                (
                    w.event_type.to_string(),
                    format!("{:?}", w.fields),
                    w.timestamp,
                )
            })
            .collect())
    }

    fn same(body: &str) -> Result<(), TestCaseError> {
        let (a, b) = (old(body.as_bytes()), new(body.as_bytes()));
        match (&a, &b) {
            (Ok(x), Ok(y)) => prop_assert_eq!(x, y, "{}", body),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "{}: old {:?} new {:?}", body, a, b),
        }
        Ok(())
    }

    #[test]
    fn shapes_and_edge_cases_match_the_tree_path() {
        for body in [
            r#"{"events": [{"event_type": "T", "fields": {"a": 1, "b": 2.5, "c": "x", "d": null, "e": [1, {"k": true}]}}]}"#,
            r#"[{"event_type": "T", "fields": {"a": 1, "a": 2, "b": 3}, "timestamp": 5}]"#,
            r#"[{"event_type": "T", "timestamp": null, "x": {"ignored": 1}}]"#,
            r#"[{"event_type": "T", "fields": {"big": 18446744073709551615, "neg": -9223372036854775808, "e": 1e400}}]"#,
            r#"[{"event_type": "T", "fields": {"s": "\u00e9\n\"q\"", "\u0061": 1}}]"#,
            r#"{"other": 1, "events": []}"#,
            r#"[{"fields": {}}]"#,
            r#"[{"event_type": "T", "event_type": "U"}]"#,
            r#"[{"event_type": 5}]"#,
            r#"[{"event_type": "T", "fields": null}]"#,
            r#"{"events": 3}"#,
            r#"{}"#,
            r#"[] x"#,
            r#"[{"event_type": "T", "timestamp": "2024-01-01T00:00:00Z"}]"#,
        ] {
            same(body).unwrap();
        }
        // Beyond the linear lookup: repeated keys among many.
        let keys: Vec<String> = (0..80).map(|i| format!("\"k{}\": {i}", i % 50)).collect();
        same(&format!(
            "[{{\"event_type\": \"T\", \"fields\": {{{}}}}}]",
            keys.join(", ")
        ))
        .unwrap();
        assert!(decode_batch(br#"{"events": [{"event_type": "T"}]}"#).is_ok());
        assert!(decode_batch(br#"[{"event_type": "T", "fields": {"a": 1}]"#).is_err());
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "(?s).{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::vec(("[ab]{1,2}", inner), 0..4)
                    .prop_map(|kv| { serde_json::Value::Object(kv.into_iter().collect()) }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Random events (repeated keys written out as text): the typed decode equals the tree path.
        #[test]
        fn typed_decode_equals_the_tree_path(
            events in prop::collection::vec((
                "[A-Za-z]{0,3}",
                prop::collection::vec(("[abc]{1,2}", json_value()), 0..5),
                prop::option::of(json_value()),
                any::<bool>(),
            ), 0..4),
        ) {
            let items: Vec<String> = events
                .iter()
                .map(|(ty, fields, ts, extra)| {
                    let fields: Vec<String> = fields
                        .iter()
                        .map(|(k, v)| format!("{}: {v}", serde_json::Value::from(k.as_str())))
                        .collect();
                    let mut s = format!(
                        "{{\"event_type\": {}, \"fields\": {{{}}}",
                        serde_json::Value::from(ty.as_str()),
                        fields.join(", ")
                    );
                    if let Some(t) = ts {
                        s.push_str(&format!(", \"timestamp\": {t}"));
                    }
                    if *extra {
                        s.push_str(", \"zz\": [1, {\"q\": null}]");
                    }
                    s.push('}');
                    s
                })
                .collect();
            same(&format!("[{}]", items.join(",")))?;
            same(&format!("{{\"events\": [{}]}}", items.join(",")))?;
        }
    }
}
