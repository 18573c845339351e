//! Exact JSON encodings of values and events, shared by checkpoints and operator snapshots.
//!
//! Values are tagged so that a round trip is exact: `null`, `true/false`, `{"i": int}`,
//! `{"f": f64 bits}`, `{"s": str}`, `{"a": [...]}`, `{"m": [[k, v], ...]}`, `{"t": ns}`,
//! `{"d": ns}`. An event is `{"t": type, "ts": ns, "f": [[name, value], ...]}`.

use crate::error::RuntimeError;
use crate::event::Event;
use crate::value::{Fields, Value};
use serde_json::{json, Value as Json};
use std::sync::Arc;

fn err(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Checkpoint(msg.into())
}

fn codec_err(msg: &str) -> RuntimeError {
    RuntimeError::Checkpoint(format!("event: {msg}"))
}

/// Tagged JSON form of a value.
pub(crate) fn encode_value(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => json!({ "i": i }),
        Value::Float(f) => json!({ "f": f.to_bits() }),
        Value::Str(s) => json!({ "s": &**s }),
        Value::Array(a) => json!({ "a": a.iter().map(encode_value).collect::<Vec<_>>() }),
        Value::Map(m) => {
            json!({ "m": m.iter().map(|(k, v)| json!([&**k, encode_value(v)])).collect::<Vec<_>>() })
        }
        Value::Timestamp(t) => json!({ "t": t }),
        Value::Duration(d) => json!({ "d": d }),
    }
}

/// Inverse of [`encode_value`].
pub(crate) fn decode_value(j: &Json) -> Result<Value, RuntimeError> {
    let bad = || err(format!("bad value {j}"));
    match j {
        Json::Null => Ok(Value::Null),
        Json::Bool(b) => Ok(Value::Bool(*b)),
        Json::Object(o) if o.len() == 1 => {
            let (tag, inner) = o.iter().next().ok_or_else(bad)?;
            match tag.as_str() {
                "i" => inner.as_i64().map(Value::Int).ok_or_else(bad),
                "f" => inner
                    .as_u64()
                    .map(|b| Value::Float(f64::from_bits(b)))
                    .ok_or_else(bad),
                "s" => inner.as_str().map(Value::str).ok_or_else(bad),
                "t" => inner.as_i64().map(Value::Timestamp).ok_or_else(bad),
                "d" => inner.as_i64().map(Value::Duration).ok_or_else(bad),
                "a" => {
                    let items = inner.as_array().ok_or_else(bad)?;
                    Ok(Value::Array(Arc::new(
                        items.iter().map(decode_value).collect::<Result<_, _>>()?,
                    )))
                }
                "m" => {
                    let mut m = Vec::new();
                    for e in inner.as_array().ok_or_else(bad)? {
                        let pair = e.as_array().filter(|p| p.len() == 2).ok_or_else(bad)?;
                        let k = pair[0].as_str().ok_or_else(bad)?;
                        m.push((Arc::from(k), decode_value(&pair[1])?));
                    }
                    Ok(Value::Map(Arc::new(m)))
                }
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

/// A checkpoint's optional integer field (`null` or absent: `None`); `Err(())` when it holds
/// something else (the caller names the field in its error).
pub(crate) fn opt_i64_field(j: &Json, key: &str) -> Result<Option<i64>, ()> {
    match j.get(key) {
        Some(Json::Null) | None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(()),
    }
}

/// A checkpoint's required unsigned integer field.
pub(crate) fn u64_field(j: &Json, key: &str) -> Option<u64> {
    j.get(key).and_then(Json::as_u64)
}

pub(crate) fn event_json(e: &Event) -> serde_json::Value {
    serde_json::json!({
        "t": &*e.event_type,
        "ts": e.timestamp_ns,
        "f": e.fields.iter().map(|(n, v)| serde_json::json!([&**n, encode_value(v)])).collect::<Vec<_>>(),
    })
}

pub(crate) fn event_from_json(j: &serde_json::Value) -> Result<Event, RuntimeError> {
    let t = j
        .get("t")
        .and_then(|v| v.as_str())
        .ok_or_else(|| codec_err("event type"))?;
    let ts = j
        .get("ts")
        .and_then(|v| v.as_i64())
        .ok_or_else(|| codec_err("event time"))?;
    let mut fields: Fields = Vec::new();
    for f in j
        .get("f")
        .and_then(|v| v.as_array())
        .ok_or_else(|| codec_err("event fields"))?
    {
        let name = f
            .get(0)
            .and_then(|v| v.as_str())
            .ok_or_else(|| codec_err("field name"))?;
        let v = decode_value(f.get(1).ok_or_else(|| codec_err("field value"))?)?;
        fields.push((Arc::from(name), v));
    }
    Ok(Event::new(t, ts, fields))
}

/// A list of events encoded with [`event_json`].
pub(crate) fn events_from_json(j: Option<&Json>) -> Result<Vec<Event>, RuntimeError> {
    j.and_then(|v| v.as_array())
        .ok_or_else(|| codec_err("event list"))?
        .iter()
        .map(event_from_json)
        .collect()
}
