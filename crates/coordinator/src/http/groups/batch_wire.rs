//! The bytes of a group inject-batch (issue 22 item 6): a JSON body is split into its events'
//! raw bytes and only each event's `event_type` is decoded (with a shape check, so a bad event
//! is still a `400` naming its index); the events of a target pipeline are forwarded as the
//! bytes the client sent; the workers' answers are spliced into the group answer without
//! decoding their output events.
//!
//! Checked here, as the old typed decode (`InputEvent`) did: the body is an array or
//! `{"events": [...]}`; each event is an object with a string `event_type` (not empty),
//! `fields` an object when present, none of those three keys twice. The worker checks the rest
//! (timestamps) as it always did.

use axum::body::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// The events of a JSON batch body.
#[derive(Debug)]
pub struct RawBatch<'a> {
    /// The `[...]` array of events, as sent (a slice of the body).
    pub array: &'a str,
    /// Each event's bytes, in order.
    pub events: Vec<&'a RawValue>,
}

const SHAPE: &str = "expected a JSON array of events or {\"events\": [...]}";

/// Splits a JSON batch body (a bare array or `{"events": [...]}`) into its events.
pub fn split_body(body: &[u8]) -> Result<RawBatch<'_>, String> {
    #[derive(serde::Deserialize)]
    struct Wrapped<'a> {
        #[serde(borrow)]
        events: &'a RawValue,
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let array = match text.trim_start().as_bytes().first() {
        Some(b'[') => text.trim(),
        Some(b'{') => serde_json::from_str::<Wrapped>(text)
            .map_err(|e| format!("{SHAPE}: {e}"))?
            .events
            .get(),
        _ => return Err(SHAPE.to_string()),
    };
    let events: Vec<&RawValue> =
        serde_json::from_str(array).map_err(|e| format!("{SHAPE}: {e}"))?;
    Ok(RawBatch { array, events })
}

/// The event type of one event of a batch, after checking its shape (see the module doc).
pub fn event_type(event: &RawValue) -> Result<Cow<'_, str>, String> {
    let mut de = serde_json::Deserializer::from_str(event.get());
    let ty = de.deserialize_map(HeadVisitor).map_err(|e| e.to_string())?;
    if ty.is_empty() {
        return Err("`event_type` must not be empty".into());
    }
    Ok(ty)
}

/// A string that borrows from the input when it has no escapes. (serde's `borrow`
/// on a `Cow` falls back to an owned copy when it has to unescape).
#[derive(serde::Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// Accepts a JSON object (whatever it holds) and nothing else.
struct AnyObject;

impl<'de> de::Deserialize<'de> for AnyObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyObject, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyObject)
            }
        }
        d.deserialize_map(V)
    }
}

struct HeadVisitor;

impl<'de> Visitor<'de> for HeadVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object `{\"event_type\", \"fields\", \"timestamp\"?}`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event_type: Option<Cow<'de, str>> = None;
        let (mut fields, mut timestamp) = (false, false);
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key.0 {
                "event_type" => {
                    if event_type.is_some() {
                        return Err(de::Error::duplicate_field("event_type"));
                    }
                    event_type = Some(map.next_value::<Text<'de>>()?.0);
                }
                "fields" => {
                    if fields {
                        return Err(de::Error::duplicate_field("fields"));
                    }
                    fields = true;
                    map.next_value::<AnyObject>()?;
                }
                "timestamp" => {
                    if timestamp {
                        return Err(de::Error::duplicate_field("timestamp"));
                    }
                    timestamp = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        event_type.ok_or_else(|| de::Error::missing_field("event_type"))
    }
}

/// The events of one target pipeline, written as a JSON array of the events' original bytes.
#[derive(Debug, Default)]
pub struct PartBody {
    buf: Vec<u8>,
    count: usize,
}

impl PartBody {
    /// Appends one event.
    pub fn push(&mut self, event: &RawValue) {
        self.buf.push(if self.count == 0 { b'[' } else { b',' });
        self.buf.extend_from_slice(event.get().as_bytes());
        self.count += 1;
    }

    /// Events appended.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The array's bytes.
    pub fn finish(mut self) -> Bytes {
        if self.count == 0 {
            self.buf.push(b'[');
        }
        self.buf.push(b']');
        Bytes::from(self.buf)
    }
}

/// What the coordinator reads of a worker's batch answer: the accepted count and the
/// `output_events` array, left as the worker wrote it.
#[derive(serde::Deserialize)]
struct WorkerAnswer<'a> {
    accepted: usize,
    #[serde(borrow)]
    output_events: &'a RawValue,
}

/// A worker's 2xx batch answer: events accepted and the items of its `output_events` array
/// (the bytes between the brackets, a slice of `body`; empty without outputs).
pub fn read_answer(body: &Bytes) -> Result<(usize, Bytes), String> {
    let answer: WorkerAnswer<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let raw = answer.output_events.get();
    let inner = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| "`output_events` is not an array".to_string())?
        .trim();
    Ok((answer.accepted, body.slice_ref(inner.as_bytes())))
}

/// The group answer `{"accepted", "routed", "output_events"}` (`GroupInjectBatchResponse`) as
/// body chunks: the workers' output items are passed on as they are, not copied.
pub fn group_answer(
    accepted: usize,
    routed: &BTreeMap<String, usize>,
    outputs: Vec<Bytes>,
) -> Result<Vec<Bytes>, serde_json::Error> {
    let mut head = format!("{{\"accepted\":{accepted},\"routed\":").into_bytes();
    serde_json::to_writer(&mut head, routed)?;
    head.extend_from_slice(b",\"output_events\":[");
    let mut chunks = Vec::with_capacity(2 * outputs.len() + 2);
    chunks.push(Bytes::from(head));
    let mut first = true;
    for items in outputs.into_iter().filter(|b| !b.is_empty()) {
        if !first {
            chunks.push(Bytes::from_static(b","));
        }
        first = false;
        chunks.push(items);
    }
    chunks.push(Bytes::from_static(b"]}"));
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use varpulis_api::cluster::GroupInjectBatchResponse;
    use varpulis_api::worker::{BatchInjectRequest, InputEvent};

    /// The old path: typed events (`InputEvent`), bare array or wrapped.
    fn old(body: &[u8]) -> Result<Vec<InputEvent>, String> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Batch {
            Bare(Vec<InputEvent>),
            Wrapped(BatchInjectRequest),
        }
        match serde_json::from_slice::<Batch>(body).map_err(|e| e.to_string())? {
            Batch::Bare(events) => Ok(events),
            Batch::Wrapped(req) => Ok(req.events),
        }
    }

    /// The new path: raw events and their types, the events decoded back for comparison.
    fn new(body: &[u8]) -> Result<Vec<InputEvent>, String> {
        let batch = split_body(body)?;
        batch
            .events
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let ty = event_type(raw).map_err(|e| format!("event {i}: {e}"))?;
                let ev: InputEvent = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
                assert_eq!(ev.event_type, ty);
                Ok(ev)
            })
            .collect()
    }

    fn same(body: &str) -> Result<(), TestCaseError> {
        let (a, b) = (old(body.as_bytes()), new(body.as_bytes()));
        match (&a, &b) {
            (Ok(x), Ok(y)) => prop_assert_eq!(x, y, "{}", body),
            // The new path refuses an empty type up front (the worker refused it before).
            (Ok(x), Err(e)) if x.iter().any(|e| e.event_type.is_empty()) => {
                prop_assert!(e.contains("must not be empty"), "{}", e)
            }
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "{}: old {:?} new {:?}", body, a, b),
        }
        Ok(())
    }

    #[test]
    fn shapes_and_bad_events_match_the_typed_path() {
        for body in [
            r#"[{"event_type": "T", "fields": {"a": 1, "b": [1, {"k": true}]}}]"#,
            r#" {"events": [{"event_type": "T"}, {"event_type": "U", "timestamp": 5}]} "#,
            r#"{"other": 1, "events": []}"#,
            r#"[{"event_type": "T", "timestamp": null, "x": {"ignored": 1}}]"#,
            r#"[{"event_type": "T\u00e9", "fields": {}}]"#,
            r#"[{"fields": {}}]"#,
            r#"[{"event_type": "T", "event_type": "U"}]"#,
            r#"[{"event_type": "T", "fields": {}, "fields": {}}]"#,
            r#"[{"event_type": 5}]"#,
            r#"[{"event_type": "T", "fields": null}]"#,
            r#"[{"event_type": "T", "fields": [1]}]"#,
            r#"[{"event_type": ""}]"#,
            r#"{"events": 3}"#,
            r#"{"events": [], "events": []}"#,
            r#"{}"#,
            r#"[] x"#,
            r#"[{"event_type": "T"},]"#,
            r#"[{"event_type": "T"} {"event_type": "U"}]"#,
            "nope",
            "",
        ] {
            same(body).unwrap();
        }
        // An event given as a positional array is refused (the worker refuses it too).
        assert!(new(br#"[["T", {}]]"#).is_err());
    }

    #[test]
    fn bad_events_name_their_index() {
        let body = br#"[{"event_type": "A"}, {"event_type": "B", "fields": 3}]"#;
        let err = new(body).unwrap_err();
        assert!(err.starts_with("event 1: invalid type"), "{err}");
    }

    #[test]
    fn parts_hold_the_original_bytes() {
        let body = br#"{"events": [ {"event_type":"A","fields":{"x": 1.50}} ,{"event_type":"B"}]}"#;
        let batch = split_body(body).unwrap();
        assert_eq!(
            batch.array,
            r#"[ {"event_type":"A","fields":{"x": 1.50}} ,{"event_type":"B"}]"#
        );
        let mut part = PartBody::default();
        for e in &batch.events {
            part.push(e);
        }
        assert_eq!(part.count(), 2);
        assert_eq!(
            &part.finish()[..],
            br#"[{"event_type":"A","fields":{"x": 1.50}},{"event_type":"B"}]"#
        );
        assert_eq!(&PartBody::default().finish()[..], b"[]");
    }

    #[test]
    fn answers_are_spliced_into_the_group_answer() {
        let a = Bytes::from_static(
            br#"{"accepted":2,"output_events":[{"event_type":"X","timestamp":"2026-01-01T00:00:00Z","fields":{"v":1}}],"errors":[]}"#,
        );
        let b = Bytes::from_static(br#"{"accepted": 1, "output_events": [ ]}"#);
        let c = Bytes::from_static(
            br#"{"output_events":[{"event_type":"Y","timestamp":"2026-01-01T00:00:01Z","fields":{}}],"accepted":0}"#,
        );
        let mut accepted = 0;
        let mut outputs = Vec::new();
        for body in [&a, &b, &c] {
            let (n, items) = read_answer(body).unwrap();
            accepted += n;
            outputs.push(items);
        }
        let routed = BTreeMap::from([("p".to_string(), 2), ("q".to_string(), 1)]);
        let body: Vec<u8> = group_answer(accepted, &routed, outputs).unwrap().concat();
        let parsed: GroupInjectBatchResponse = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed.accepted, 3);
        assert_eq!(parsed.routed, routed);
        let types: Vec<&str> = parsed
            .output_events
            .iter()
            .map(|o| o.event_type.as_str())
            .collect();
        assert_eq!(types, ["X", "Y"]);
        assert!(read_answer(&Bytes::from_static(br#"{"accepted":1,"output_events":{}}"#)).is_err());
        assert!(read_answer(&Bytes::from_static(b"not json")).is_err());
        let empty: Vec<u8> = group_answer(0, &BTreeMap::new(), vec![]).unwrap().concat();
        assert_eq!(empty, br#"{"accepted":0,"routed":{},"output_events":[]}"#);
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "(?s).{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
                prop::collection::vec(("[ab]{1,2}", inner), 0..3)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Random events, some malformed (a non-object `fields`, a missing or non-string
        /// type): the split path accepts and refuses what the typed path did, and forwards
        /// events that decode to the same `InputEvent`s.
        #[test]
        fn split_equals_the_typed_path(
            events in prop::collection::vec((
                prop::option::of(json_value()),
                prop::option::of(json_value()),
                prop::option::of(json_value()),
                any::<bool>(),
            ), 0..4),
            wrapped in any::<bool>(),
        ) {
            let items: Vec<String> = events
                .iter()
                .map(|(ty, fields, ts, typed)| {
                    let mut obj = serde_json::Map::new();
                    match (ty, typed) {
                        (Some(t), false) => { obj.insert("event_type".into(), t.clone()); }
                        (Some(t), true) => {
                            obj.insert("event_type".into(), serde_json::Value::from(t.to_string()));
                        }
                        (None, _) => {}
                    }
                    if let Some(f) = fields {
                        obj.insert("fields".into(), f.clone());
                    }
                    if let Some(t) = ts {
                        obj.insert("timestamp".into(), t.clone());
                    }
                    serde_json::Value::Object(obj).to_string()
                })
                .collect();
            let array = format!("[{}]", items.join(","));
            if wrapped {
                same(&format!("{{\"events\": {array}}}"))?;
            } else {
                same(&array)?;
            }
        }
    }
}
