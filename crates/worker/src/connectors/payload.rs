//! Event payloads on the wire of the connectors.
//!
//! - MQTT and NATS messages (VPL.md §9): a JSON object; type = `event_type`, else `type`, else
//!   the source's type; fields = the `data` object, else the other keys; integral numbers
//!   become ints. Published outputs are `{"event_type", "timestamp", <fields...>}`.
//! - Inter-pipeline route messages (docs/dataplane.md): one `{"event_type", "timestamp",
//!   "fields"}` object or a JSON array of them; the event time is kept across the hop.

use crate::engine::{Event, Output};
use crate::event_codec::decode_route;
use crate::event_time::{now_ns, parse_rfc3339_ns};
use serde_json::{Map, Number, Value};
use std::sync::Arc;
use varpulis_runtime::json_out;

/// Decodes a payload (VPL.md §9): type = `event_type`, else `type`, else `default_type`;
/// fields = the `data` object if present, else the other top-level keys; integral numbers
/// become ints.
pub fn decode_payload(
    payload: &[u8],
    default_type: &str,
) -> Result<(String, Map<String, Value>), String> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("payload is not a JSON object".into());
    };
    let ty = match (obj.remove("event_type"), obj.remove("type")) {
        (Some(Value::String(t)), other) => {
            if let Some(o) = other {
                obj.insert("type".to_owned(), o);
            }
            t
        }
        (None, Some(Value::String(t))) => t,
        (Some(_), _) => return Err("`event_type` is not a string".into()),
        (None, Some(other)) => {
            obj.insert("type".to_owned(), other);
            default_type.to_owned()
        }
        (None, None) => default_type.to_owned(),
    };
    if ty.is_empty() {
        return Err("no event type".into());
    }
    let mut fields = match obj.remove("data") {
        Some(Value::Object(data)) => data,
        Some(other) => {
            obj.insert("data".to_owned(), other);
            obj
        }
        None => obj,
    };
    for v in fields.values_mut() {
        integral_to_int(v);
    }
    Ok((ty, fields))
}

fn integral_to_int(v: &mut Value) {
    if let Value::Number(n) = v {
        if n.is_f64() {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *v = Value::Number(Number::from(f as i64));
                }
            }
        }
    }
}

/// An output as MQTT and NATS sinks publish it: `{"event_type", "timestamp", <fields...>}`.
pub fn encode_output(o: &Output) -> Vec<u8> {
    serde_json::to_vec(&o.event.to_flat_json()).unwrap_or_default()
}

/// A route message of `outputs`: one event object, or an array when there are several,
/// written straight from the output events (`json_out`: the bytes `Output::to_json` would
/// serialize to, without the `Value` tree).
pub fn encode_route_message(outputs: &[&Output]) -> Vec<u8> {
    let mut w = Vec::with_capacity(2 + outputs.len() * 96);
    let written = match outputs {
        [one] => json_out::write_event(&mut w, &one.event),
        many => write_array(&mut w, many),
    };
    match written {
        Ok(()) => w,
        Err(_) => Vec::new(),
    }
}

fn write_array(w: &mut Vec<u8>, outputs: &[&Output]) -> std::io::Result<()> {
    w.push(b'[');
    for (i, o) in outputs.iter().enumerate() {
        if i > 0 {
            w.push(b',');
        }
        json_out::write_event(w, &o.event)?;
    }
    w.push(b']');
    Ok(())
}

/// Decodes a route message: one `{"event_type", "timestamp", "fields"}` object or an array of
/// them, straight into events (`event_codec`, no `Value` tree). The event time is kept
/// (arrival time when absent or unreadable).
pub fn decode_route_message(payload: &[u8]) -> Result<Vec<Event>, String> {
    let wire = decode_route(payload).map_err(|e| format!("not a route message: {e}"))?;
    let now = now_ns();
    wire.into_iter()
        .map(|w| {
            if w.event_type.is_empty() {
                return Err("route event without `event_type`".to_string());
            }
            let ts = match &w.timestamp {
                Some(Value::String(s)) => parse_rfc3339_ns(s).unwrap_or(now),
                Some(Value::Number(n)) => n.as_i64().unwrap_or(now),
                _ => now,
            };
            Ok(Event {
                event_type: w.event_type,
                timestamp_ns: ts,
                fields: Arc::new(w.fields),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_uses_event_type_then_type_then_default() {
        let (t, f) = decode_payload(br#"{"event_type":"A","x":1}"#, "D").unwrap();
        assert_eq!(
            (t.as_str(), f),
            ("A", json!({"x":1}).as_object().unwrap().clone())
        );
        let (t, _) = decode_payload(br#"{"type":"B","x":1}"#, "D").unwrap();
        assert_eq!(t, "B");
        let (t, f) = decode_payload(br#"{"x":2.0}"#, "D").unwrap();
        assert_eq!(t, "D");
        assert_eq!(f["x"], json!(2));
        assert!(f["x"].is_i64());
    }

    #[test]
    fn decode_prefers_data_object_and_rejects_garbage() {
        let (_, f) =
            decode_payload(br#"{"event_type":"A","data":{"y":"z"},"ignored":1}"#, "D").unwrap();
        assert_eq!(Value::Object(f), json!({"y":"z"}));
        assert!(decode_payload(b"not json", "D").is_err());
        assert!(decode_payload(b"[1,2]", "D").is_err());
    }

    #[test]
    fn route_messages_keep_type_time_and_fields_of_one_or_many() {
        let one = br#"{"event_type":"A","timestamp":"1970-01-01T00:00:06Z","fields":{"x":1.5}}"#;
        let evs = decode_route_message(one).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(&*evs[0].event_type, "A");
        assert_eq!(evs[0].timestamp_ns, 6_000_000_000);
        assert_eq!(evs[0].field("x").unwrap().to_json(), json!(1.5));
        let many = br#"[{"event_type":"A","fields":{}},{"event_type":"B"}]"#;
        let evs = decode_route_message(many).unwrap();
        assert_eq!(
            evs.iter()
                .map(|e| e.event_type.to_string())
                .collect::<Vec<_>>(),
            ["A", "B"]
        );
        assert!(decode_route_message(b"[1]").is_err());
        assert!(decode_route_message(b"{\"fields\":{}}").is_err());
        assert!(decode_route_message(b"nope").is_err());
        assert!(decode_route_message(br#"{"event_type":""}"#).is_err());
        let null_fields = decode_route_message(br#"{"event_type":"A","fields":null}"#).unwrap();
        assert!(null_fields[0].fields.is_empty());
    }

    /// The tree decoder route messages used before `event_codec` (the oracle).
    fn decode_with_trees(payload: &[u8]) -> Result<Vec<Event>, String> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        let one = |v: &Value| -> Result<Event, String> {
            let ty = v
                .get("event_type")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .ok_or("no type")?;
            let ts = match v.get("timestamp") {
                Some(Value::String(s)) => parse_rfc3339_ns(s).unwrap_or(0),
                Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
                _ => 0,
            };
            let empty = Map::new();
            let fields = match v.get("fields") {
                Some(Value::Object(f)) => f,
                None | Some(Value::Null) => &empty,
                Some(_) => return Err("fields".into()),
            };
            Ok(Event::from_json(ty, fields, ts))
        };
        match &value {
            Value::Array(items) => items.iter().map(one).collect(),
            Value::Object(_) => Ok(vec![one(&value)?]),
            _ => Err("shape".into()),
        }
    }

    fn output(ty: &str, ts: i64, fields: &Value) -> Output {
        let fields = fields.as_object().cloned().unwrap_or_default();
        Output {
            event: Event::from_json(ty, &fields, ts),
            is_output: true,
            sinks: Vec::new(),
        }
    }

    /// What a route carries: type, time and fields of each event, as text.
    fn summary(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| format!("{} {} {:?}", e.event_type, e.timestamp_ns, e.fields))
            .collect()
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "(?s).{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::vec(("[ab]{1,2}", inner), 0..3)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Output events through a route message and back: the typed encoder and decoder give
        /// what the tree encoder (`Output::to_json`) and decoder gave.
        #[test]
        fn route_messages_round_trip_like_the_tree_path(
            events in proptest::collection::vec((
                "[A-Z][a-z]{0,3}",
                0i64..4_000_000_000_000_000_000,
                proptest::collection::vec(("[abc]{1,2}", json_value()), 0..4),
            ), 1..5),
        ) {
            let outputs: Vec<Output> = events
                .iter()
                .map(|(ty, ts, fields)| {
                    output(ty, *ts, &Value::Object(fields.iter().cloned().collect()))
                })
                .collect();
            let refs: Vec<&Output> = outputs.iter().collect();
            let bytes = encode_route_message(&refs);
            let trees: Vec<Value> = outputs.iter().map(Output::to_json).collect();
            let old_bytes = match trees.as_slice() {
                [one] => serde_json::to_vec(one).unwrap(),
                many => serde_json::to_vec(many).unwrap(),
            };
            proptest::prop_assert_eq!(&bytes, &old_bytes);
            let new = decode_route_message(&bytes).unwrap();
            let old = decode_with_trees(&old_bytes).unwrap();
            proptest::prop_assert_eq!(summary(&new), summary(&old));
        }
    }
}
