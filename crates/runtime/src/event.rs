//! Events, output events and connector bindings.
//!
//! An [`Event`] is cheap to clone: its type name and field list are reference-counted, so re-typing
//! an event for a downstream stream or passing it through `.to` never copies its fields. Fields keep
//! their order; compiled expressions find a field through a per-site cached slot (see
//! [`Event::field_cached`]), so the hot path is an index plus a pointer/length comparison.

use crate::value::{format_rfc3339, Fields, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// One event: a type, an event time and ordered fields.
#[derive(Debug, Clone)]
pub struct Event {
    /// Event type (for derived events: the producing stream's name).
    pub event_type: Arc<str>,
    /// Event time, ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// Ordered fields, shared between clones.
    pub fields: Arc<Fields>,
}

impl Event {
    /// Builds an event from owned parts.
    pub fn new(event_type: &str, timestamp_ns: i64, fields: Fields) -> Event {
        Event {
            event_type: Arc::from(event_type),
            timestamp_ns,
            fields: Arc::new(fields),
        }
    }

    /// Builds an event from a JSON object (integral numbers become int).
    pub fn from_json(
        event_type: &str,
        fields: &serde_json::Map<String, serde_json::Value>,
        timestamp_ns: i64,
    ) -> Event {
        let fields = fields
            .iter()
            .map(|(k, v)| (Arc::from(k.as_str()), Value::from_json(v)))
            .collect();
        Event::new(event_type, timestamp_ns, fields)
    }

    /// Looks a field up by name (linear: events are small).
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v)
    }

    /// Looks a field up using `slot` as a cache of its last position; updates the cache on a miss.
    #[inline]
    pub fn field_cached(&self, name: &Arc<str>, slot: &AtomicU32) -> Option<&Value> {
        fields_cached(&self.fields, name, slot)
    }

    /// Same event (shared fields) under another type name.
    pub fn retyped(&self, event_type: &Arc<str>) -> Event {
        Event {
            event_type: event_type.clone(),
            timestamp_ns: self.timestamp_ns,
            fields: self.fields.clone(),
        }
    }

    /// `{"event_type", "timestamp", "fields"}` (§13 output format).
    pub fn to_json(&self) -> serde_json::Value {
        let mut fields = serde_json::Map::with_capacity(self.fields.len());
        for (k, v) in self.fields.iter() {
            fields.insert(k.to_string(), v.to_json());
        }
        let mut obj = serde_json::Map::with_capacity(3);
        obj.insert(
            "event_type".into(),
            serde_json::Value::String(self.event_type.to_string()),
        );
        obj.insert(
            "timestamp".into(),
            serde_json::Value::String(format_rfc3339(self.timestamp_ns)),
        );
        obj.insert("fields".into(), serde_json::Value::Object(fields));
        serde_json::Value::Object(obj)
    }

    /// The MQTT egress shape (§9): `{"event_type", "timestamp", <fields…>}`.
    pub fn to_flat_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::with_capacity(self.fields.len() + 2);
        obj.insert(
            "event_type".into(),
            serde_json::Value::String(self.event_type.to_string()),
        );
        obj.insert(
            "timestamp".into(),
            serde_json::Value::String(format_rfc3339(self.timestamp_ns)),
        );
        for (k, v) in self.fields.iter() {
            obj.insert(k.to_string(), v.to_json());
        }
        serde_json::Value::Object(obj)
    }
}

/// A connector declared in the program: `connector Name = kind(params…)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorDecl {
    /// Connector name.
    pub name: String,
    /// Kind (`mqtt`, `kafka`, …).
    pub kind: String,
    /// Parameters in written order (literals; identifiers become strings).
    pub params: Vec<(String, serde_json::Value)>,
}

/// `T.from(Conn, topic: "…", …)` on a stream source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceBinding {
    /// Stream that declares the source.
    pub stream: String,
    /// Event type the stream consumes.
    pub event_type: String,
    /// Connector name.
    pub connector: String,
    /// Named parameters (`topic`, …).
    pub params: Vec<(String, serde_json::Value)>,
}

impl SourceBinding {
    /// The `topic:` parameter, when given as a string.
    pub fn topic(&self) -> Option<&str> {
        param_str(&self.params, "topic")
    }
}

/// `.to(Conn[, topic: "…"])` in a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkBinding {
    /// Stream that holds the `.to`.
    pub stream: String,
    /// Connector name.
    pub connector: String,
    /// Named parameters (`topic`, …).
    pub params: Vec<(String, serde_json::Value)>,
}

impl SinkBinding {
    /// The `topic:` parameter, when given as a string.
    pub fn topic(&self) -> Option<&str> {
        param_str(&self.params, "topic")
    }
}

fn param_str<'a>(params: &'a [(String, serde_json::Value)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_str())
}

/// An event the program produced, with the sinks it must be published to.
#[derive(Debug, Clone)]
pub struct OutputEvent {
    /// The event (type = stream name for `.emit`, `T` for `emit T(…)` in `.process`).
    pub event: Event,
    /// Whether this is an output event (console / `output_events`). `false` means it only
    /// exists to be published by a `.to` placed before any `.emit` in its stream.
    pub is_output: bool,
    /// `.to` sinks that received this event, in chain order.
    pub sinks: Vec<Arc<SinkBinding>>,
}

impl OutputEvent {
    /// `{"event_type", "timestamp", "fields"}`.
    pub fn to_json(&self) -> serde_json::Value {
        self.event.to_json()
    }

    /// The first `.to` sink this event goes to, if any.
    pub fn sink(&self) -> Option<&SinkBinding> {
        self.sinks.first().map(|s| &**s)
    }

    /// Every `.to` sink this event goes to.
    pub fn sinks(&self) -> impl Iterator<Item = &SinkBinding> {
        self.sinks.iter().map(|s| &**s)
    }
}

/// Looks `name` up in `fields`, trying the position cached in `slot` first (see
/// [`Event::field_cached`]); also used for captured events held as maps.
pub(crate) fn fields_cached<'f>(
    fields: &'f Fields,
    name: &Arc<str>,
    slot: &AtomicU32,
) -> Option<&'f Value> {
    let i = slot.load(Ordering::Relaxed) as usize;
    if let Some((k, v)) = fields.get(i) {
        if Arc::ptr_eq(k, name) || **k == **name {
            return Some(v);
        }
    }
    let pos = fields
        .iter()
        .position(|(k, _)| Arc::ptr_eq(k, name) || **k == **name)?;
    slot.store(pos as u32, Ordering::Relaxed);
    fields.get(pos).map(|(_, v)| v)
}

/// [`fields_cached`] that also remembers in `seen` the name (the event's own `Arc`, equal to
/// `name`) it found last: a later event holding that very allocation at the cached position is
/// read by one pointer comparison instead of comparing the texts (decoders and generators share
/// one name allocation across events, distinct from the program's interned name). Holding the
/// name keeps this sound: its allocation cannot be reused for another text while held.
#[inline]
pub(crate) fn fields_seen<'f>(
    fields: &'f Fields,
    name: &Arc<str>,
    slot: &AtomicU32,
    seen: &mut Option<Arc<str>>,
) -> Option<&'f Value> {
    let i = slot.load(Ordering::Relaxed) as usize;
    if let (Some((k, v)), Some(s)) = (fields.get(i), seen.as_ref()) {
        if Arc::ptr_eq(k, s) {
            return Some(v);
        }
    }
    let v = fields_cached(fields, name, slot)?;
    if let Some((k, _)) = fields.get(slot.load(Ordering::Relaxed) as usize) {
        if **k == **name && !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, k)) {
            *seen = Some(k.clone());
        }
    }
    Some(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cached_field_lookup_follows_position_changes() {
        let name: Arc<str> = Arc::from("b");
        let slot = AtomicU32::new(0);
        let e1 = Event::new(
            "T",
            0,
            vec![
                (Arc::from("a"), Value::Int(1)),
                (Arc::from("b"), Value::Int(2)),
            ],
        );
        assert!(matches!(e1.field_cached(&name, &slot), Some(Value::Int(2))));
        assert_eq!(slot.load(Ordering::Relaxed), 1);
        let e2 = Event::new("T", 0, vec![(Arc::from("b"), Value::Int(3))]);
        assert!(matches!(e2.field_cached(&name, &slot), Some(Value::Int(3))));
        assert!(e2.field_cached(&Arc::from("zz"), &slot).is_none());
    }

    #[test]
    fn output_json_shape() {
        let e = Event::new(
            "Hot",
            6_000_000_000,
            vec![(Arc::from("temp"), Value::Float(91.5))],
        );
        assert_eq!(
            e.to_json().to_string(),
            r#"{"event_type":"Hot","timestamp":"1970-01-01T00:00:06Z","fields":{"temp":91.5}}"#
        );
    }
}
