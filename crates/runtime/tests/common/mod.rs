//! Helpers shared by the runtime's integration tests (each test binary uses part of them).

#![allow(dead_code, clippy::unwrap_used)]

use varpulis_runtime::{Engine, Event, Value};

/// One second in nanoseconds (event timestamps).
pub const SEC: i64 = 1_000_000_000;

/// An event of type `ty` at `ts` (ns) with the int fields `k` and `v`.
pub fn kv_event(ty: &str, k: i64, v: i64, ts: i64) -> Event {
    Event::new(
        ty,
        ts,
        vec![("k".into(), Value::Int(k)), ("v".into(), Value::Int(v))],
    )
}

/// Feeds `events` to `engine` (then `finish`es it when asked) and returns every output as a
/// JSON line, in order.
pub fn run(engine: &mut Engine, events: &[Event], finish: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut out = Vec::new();
    for e in events {
        out.clear();
        engine.process(e, &mut out).unwrap();
        lines.extend(out.iter().map(|o| o.to_json().to_string()));
    }
    if finish {
        out.clear();
        engine.finish(&mut out);
        lines.extend(out.iter().map(|o| o.to_json().to_string()));
    }
    lines
}
