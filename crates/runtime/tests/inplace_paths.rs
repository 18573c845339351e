//! The session-10 hot-path shortcuts (issue 22 item 4) against the plain paths they replace, on
//! random inputs with missing, `null`, int, float and string values:
//!
//! * Accumulating windows fold `count()` and bare-field aggregate arguments straight from the
//!   event (no argument list, no closure call): they must equal the same aggregates written
//!   through the stream's alias (`e.v`), which goes through the compiled expressions.
//! * `field <cmp> literal` reads the field in place: it must equal the same comparison through
//!   the alias.
//! * Sequences reuse the capture lists of ended runs and pass over runs waiting for another
//!   event type with a bit test: a partitioned sequence with `.within`, and one with a `.not`
//!   clause reading a not-yet-captured step (which sees a stale capture if a reused list were
//!   not reset), must match a hand-written reference.
//! * A sequence's `.emit` of capture fields is built straight from the captures into reused
//!   field lists (session 11): it must equal the `.emit` operator run on each match, with a
//!   consumer that holds every output and with one that drops each at once. A step filter `field <cmp> literal` is tested in
//!   place: it must pass the same events as the compiled filter.
//! * A window reads its partition key and bare aggregate fields through the last name
//!   allocation it saw and looks partitions up with a key borrowed from the event (session 11):
//!   counts and sums per key and window must equal a hand-written reference, with keys of every
//!   kind (int, string, float, bool, `null`, missing), names shared by all events or not, and
//!   fields moving between positions.
//! * A join's `.emit` of capture fields (session 11) is built straight from the partner events
//!   into reused field lists: it must equal the `.emit` operator run on each joined event, with
//!   a consumer that holds every output and with one that drops each at once.

#![allow(clippy::unwrap_used)]

mod common;

use common::run;
use proptest::prelude::*;
use std::sync::Arc;
use varpulis_runtime::{Engine, EngineOptions, Event, OutputEvent, Value};

fn compile(src: &str) -> Engine {
    Engine::compile(src, &EngineOptions::default()).unwrap()
}

/// A value for field `v`: `None` leaves the field out.
fn value(kind: u8, n: i64) -> Option<Value> {
    match kind % 6 {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(Value::str(&format!("s{n}"))),
        3 => Some(Value::Float(n as f64 / 2.0)),
        _ => Some(Value::Int(n)),
    }
}

/// Events of type A, B or C with key `k` (one of three), a varied `v` and time steps `dt` ms
/// (a negative step makes the event arrive out of order).
fn mixed(steps: &[(usize, usize, u8, i64, i64)]) -> Vec<Event> {
    let mut t = 0i64;
    steps
        .iter()
        .map(|(ty, k, kind, n, dt)| {
            t = (t + dt).max(0);
            let mut fields = vec![("k".into(), Value::str(&format!("k{}", k % 3)))];
            fields.extend(value(*kind, *n).map(|v| (Arc::<str>::from("v"), v)));
            Event::new(["A", "B", "C"][*ty % 3], t * 1_000_000, fields)
        })
        .collect()
}

/// [`mixed`] with `v` before `k` in the events with an odd time step (so a field's position
/// changes from one event to the next); with `shared`, every event's field names are the
/// same two allocations (as a decoder's interned names), else each event has its own.
fn mixed_names(steps: &[(usize, usize, u8, i64, i64)], shared: bool) -> Vec<Event> {
    let (k_name, v_name): (Arc<str>, Arc<str>) = ("k".into(), "v".into());
    let name = |n: &Arc<str>| if shared { n.clone() } else { Arc::from(&**n) };
    let mut t = 0i64;
    steps
        .iter()
        .map(|(ty, k, kind, n, dt)| {
            t = (t + dt).max(0);
            let mut fields = vec![(name(&k_name), Value::str(&format!("k{}", k % 3)))];
            if let Some(v) = value(*kind, *n) {
                let at = if dt % 2 == 0 { 1 } else { 0 };
                fields.insert(at, (name(&v_name), v));
            }
            Event::new(["A", "B", "C"][*ty % 3], t * 1_000_000, fields)
        })
        .collect()
}

fn mixed_steps() -> impl Strategy<Value = Vec<(usize, usize, u8, i64, i64)>> {
    prop::collection::vec(
        (0usize..3, 0usize..3, 0u8..6, -4i64..8, -200i64..400),
        1..150,
    )
}

/// The aggregates every window test computes, over `v` (`x` = how `v` is written).
fn aggregates(x: &str) -> String {
    format!(
        "n: count(), c: count({x}), m: avg({x}), lo: min({x}), hi: max({x}), \
         f: first({x}), l: last({x}), sd: stddev({x}), d: count(distinct({x}))"
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Direct folds (bare `v`) against the compiled argument (`e.v`), tumbling and hopping,
    /// with and without lateness.
    #[test]
    fn direct_window_folds_equal_compiled_arguments(
        window in prop::sample::select(vec![
            ".window(1s)",
            ".window(1s, sliding: 400ms)",
            ".watermark(out_of_order: 300ms) .allowed_lateness(500ms) .window(700ms)",
        ]),
        steps in mixed_steps(),
    ) {
        let direct = format!(
            "stream W = A .partition_by(k) {window} .aggregate({}) .emit()",
            aggregates("v")
        );
        let plain = format!(
            "stream W = A as e .partition_by(k) {window} .aggregate({}) .emit()",
            aggregates("e.v")
        );
        let evs = mixed(&steps);
        prop_assert_eq!(run(&mut compile(&direct), &evs, true), run(&mut compile(&plain), &evs, true));
    }

    /// `v <cmp> literal` in place against `e.v <cmp> literal`.
    #[test]
    fn field_comparisons_equal_the_plain_comparison(
        op in prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]),
        lit in prop::sample::select(vec!["2", "2.5", "-1", "0"]),
        steps in mixed_steps(),
    ) {
        let fast = format!("stream S = A .where(v {op} {lit}) .emit(k: k, v: v)");
        let plain = format!("stream S = A as e .where(e.v {op} {lit}) .emit(k: k, v: v)");
        let evs = mixed(&steps);
        prop_assert_eq!(run(&mut compile(&fast), &evs, true), run(&mut compile(&plain), &evs, true));
    }
}

/// One partial match of the reference sequence `A as a -> B where v >= a.v as b -> C as c`.
struct RefRun {
    key: String,
    start: i64,
    a: i64,
    b: Option<i64>,
}

/// The reference: per event, runs past `within` expire, then the event's partition's runs in
/// creation order may be killed (`kill_c_before_b`: a C while `b` is not captured), advance or
/// match; an A opens a run. Matches as `(k, a, b, c)`.
fn reference(evs: &[Event], within_ns: i64, kill_c_before_b: bool) -> Vec<(String, i64, i64, i64)> {
    let int = |e: &Event| match e.field("v") {
        Some(Value::Int(i)) => *i,
        _ => 0,
    };
    let mut runs: Vec<RefRun> = Vec::new();
    let mut out = Vec::new();
    let mut wm = i64::MIN;
    for e in evs {
        wm = wm.max(e.timestamp_ns);
        runs.retain(|r| r.start + within_ns >= wm);
        let key = match e.field("k") {
            Some(Value::Str(s)) => s.to_string(),
            _ => String::new(),
        };
        let (ty, v) = (&*e.event_type, int(e));
        runs.retain_mut(|r| {
            if r.key != key {
                return true;
            }
            match (ty, r.b) {
                ("C", None) if kill_c_before_b => false,
                ("B", None) if v >= r.a => {
                    r.b = Some(v);
                    true
                }
                ("C", Some(b)) => {
                    out.push((key.clone(), r.a, b, v));
                    false
                }
                _ => true,
            }
        });
        if ty == "A" {
            runs.push(RefRun {
                key,
                start: e.timestamp_ns,
                a: v,
                b: None,
            });
        }
    }
    out
}

/// The engine's matches as `(k, a, b, c)`.
fn matches(engine: &mut Engine, evs: &[Event]) -> Vec<(String, i64, i64, i64)> {
    let mut got = Vec::new();
    let mut out = Vec::new();
    for e in evs {
        out.clear();
        engine.process(e, &mut out).unwrap();
        for o in &out {
            let f = |n: &str| match o.event.field(n) {
                Some(Value::Int(i)) => *i,
                _ => i64::MIN,
            };
            let k = match o.event.field("k") {
                Some(Value::Str(s)) => s.to_string(),
                _ => String::new(),
            };
            got.push((k, f("a"), f("b"), f("c")));
        }
    }
    got
}

/// Int-valued events for the sequence reference (its filter compares ints).
fn int_events(steps: &[(usize, usize, u8, i64, i64)]) -> Vec<Event> {
    let mut t = 0i64;
    steps
        .iter()
        .map(|(ty, k, _, n, dt)| {
            t += dt;
            Event::new(
                ["A", "B", "C"][*ty % 3],
                t * 1_000_000,
                vec![
                    ("k".into(), Value::str(&format!("k{}", k % 3))),
                    ("v".into(), Value::Int(*n)),
                ],
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Reused capture lists and the per-type pass-over against the reference, with expiry.
    #[test]
    fn sequences_with_reused_captures_match_the_reference(
        within_ms in 100i64..3_000,
        kill in any::<bool>(),
        steps in prop::collection::vec((0usize..3, 0usize..3, 0u8..1, 0i64..6, 0i64..400), 1..300),
    ) {
        let not = if kill { " .not(C where b == null)" } else { "" };
        let src = format!(
            "stream S = A as a -> B where v >= a.v as b -> C as c .partition_by(k) \
             .within({within_ms}ms){not} .emit(k: a.k, a: a.v, b: b.v, c: c.v)"
        );
        let evs = int_events(&steps);
        let got = matches(&mut compile(&src), &evs);
        prop_assert_eq!(got, reference(&evs, within_ms * 1_000_000, kill));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A sequence whose only operator after the pattern is an `.emit` of capture fields builds
    /// its output straight from the captures (`operators/capture_emit.rs`) into field lists
    /// reused once their consumer dropped them (session 11, `OutLists`): it must equal the
    /// same `.emit` run as an operator on each match (a `.where(true)` before it keeps the
    /// plain path), with missing, `null`, int, float and string values (so an output's field
    /// layout changes from one to the next), a missing field, fields read out of step order, an
    /// `.emit as` type, a downstream stream reading the matches, two or three steps, and a
    /// consumer that holds every output or drops each at once, and events whose field names
    /// are shared allocations (read through the names seen last) or their own.
    #[test]
    fn capture_emits_equal_the_emit_operator(
        emit_as in any::<bool>(),
        downstream in any::<bool>(),
        hold in any::<bool>(),
        three in any::<bool>(),
        shared in any::<bool>(),
        steps in mixed_steps(),
    ) {
        let ty = if emit_as { " as Out" } else { "" };
        let tail = if downstream { "\nstream T = S .emit()" } else { "" };
        let (pattern, z) = if three {
            ("A as a -> B as b -> C as c", ", z: c.v")
        } else {
            ("A as a -> B as b", "")
        };
        let program = |mid: &str| format!(
            "stream S = {pattern} .partition_by(k) .within(1s){mid} \
             .emit{ty}(y: b.v, k: a.k, x: a.v{z}, w: a.missing){tail}"
        );
        let evs = mixed_names(&steps, shared);
        prop_assert_eq!(
            held_outputs(&mut compile(&program("")), &evs, hold),
            held_outputs(&mut compile(&program(" .where(true)")), &evs, hold)
        );
    }

    /// A step filter `field <cmp> literal` is tested in place before the compiled filter: it
    /// must pass the same events as the general comparison (`v <cmp> literal + 0`, whose right
    /// side is no literal).
    #[test]
    fn step_field_tests_equal_the_plain_filter(
        op in prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]),
        lit in prop::sample::select(vec!["2", "2.5", "-1", "0", "1.0"]),
        steps in mixed_steps(),
    ) {
        let program = |filter: &str| format!(
            "stream S = A as a -> B where {filter} as b -> C as c .partition_by(k) .within(1s) \
             .emit(k: a.k, x: a.v, y: b.v, z: c.v)"
        );
        let evs = mixed(&steps);
        prop_assert_eq!(
            run(&mut compile(&program(&format!("v {op} {lit}"))), &evs, true),
            run(&mut compile(&program(&format!("v {op} {lit} + 0"))), &evs, true)
        );
    }
}

/// Every output of `evs`, of a heartbeat 200 ms past every fourth event (outer joins' pending
/// events expire there too) and of the end of input, as the event's `Debug` text (type, time,
/// fields in order) and its output flag. With `hold`, every output is kept alive until the
/// end (a built output's field list can then never be reused); else each is dropped as soon
/// as it is read.
fn held_outputs(engine: &mut Engine, evs: &[Event], hold: bool) -> Vec<String> {
    let text = |o: &OutputEvent| format!("{:?} {}", o.event, o.is_output);
    let mut held: Vec<OutputEvent> = Vec::new();
    let mut lines = Vec::new();
    let mut out = Vec::new();
    for (i, e) in evs.iter().enumerate() {
        engine.process(e, &mut out).unwrap();
        if i % 4 == 3 {
            engine.heartbeat(e.timestamp_ns + 200_000_000, &mut out);
        }
        if hold {
            held.append(&mut out);
        } else {
            lines.extend(out.drain(..).map(|o| text(&o)));
        }
    }
    engine.finish(&mut out);
    held.append(&mut out);
    lines.extend(held.iter().map(text));
    lines
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// A join whose only operator after the join is an `.emit` of capture fields builds its
    /// outputs straight from the partner events, into field lists reused once their consumer
    /// dropped them (`operators/join.rs`, `OutLists`): they must equal the same `.emit` run as
    /// an operator on each joined event (a `.where(true)` before it keeps the plain path), for
    /// inner and outer joins of two and three inputs, with missing, `null`, int, float and
    /// string values (so an output's field layout changes from one to the next), a missing
    /// field, fields read out of input order, an `.emit as` type, a downstream stream reading
    /// the joined events, heartbeats, a consumer that holds or drops the outputs, and events
    /// whose field names are shared allocations or their own.
    #[test]
    fn join_capture_emits_equal_the_emit_operator(
        kind in prop::sample::select(vec!["join", "left_join", "right_join", "full_join"]),
        three in any::<bool>(),
        emit_as in any::<bool>(),
        downstream in any::<bool>(),
        hold in any::<bool>(),
        window_ms in 1i64..1_500,
        shared in any::<bool>(),
        steps in mixed_steps(),
    ) {
        let ty = if emit_as { " as Out" } else { "" };
        let tail = if downstream { "\nstream T = S .emit()" } else { "" };
        let (inputs, on, z) = if three {
            (", C", " and B.k == C.k", ", z: C.v")
        } else {
            ("", "", "")
        };
        let program = |mid: &str| format!(
            "stream S = {kind}(A, B{inputs}) .on(A.k == B.k{on}) .window({window_ms}ms){mid} \
             .emit{ty}(x: B.v, k: A.k, y: A.v, w: B.missing{z}){tail}"
        );
        let evs = mixed_names(&steps, shared);
        prop_assert_eq!(
            held_outputs(&mut compile(&program("")), &evs, hold),
            held_outputs(&mut compile(&program(" .where(true)")), &evs, hold)
        );
    }
}

/// A partition key of any kind (`None`: the field is left out).
fn any_key(kind: u8, n: i64) -> Option<Value> {
    match kind % 7 {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(Value::Int(n % 3)),
        3 => Some(Value::Float((n % 3) as f64 / 2.0)),
        4 => Some(Value::Bool(n % 2 == 0)),
        _ => Some(Value::str(&format!("k{}", n % 3))),
    }
}

/// Events of type A with key `k` of any kind and an int `v`, in time order; `v` comes first in
/// the events with an odd step; with `shared`, all events hold the same two name allocations.
fn keyed(steps: &[(u8, i64, i64, i64)], shared: bool) -> Vec<Event> {
    let (k_name, v_name): (Arc<str>, Arc<str>) = ("k".into(), "v".into());
    let name = |n: &Arc<str>| if shared { n.clone() } else { Arc::from(&**n) };
    let mut t = 0i64;
    steps
        .iter()
        .map(|(kind, n, v, dt)| {
            t += dt;
            let mut fields: Vec<(Arc<str>, Value)> = Vec::new();
            fields.extend(any_key(*kind, *n).map(|k| (name(&k_name), k)));
            let at = if dt % 2 == 1 { 0 } else { fields.len() };
            fields.insert(at, (name(&v_name), Value::Int(*v)));
            Event::new("A", t * 1_000_000, fields)
        })
        .collect()
}

/// Per (key, window end): how many events and the sum of `v`, as the engine computes them.
fn window_counts(evs: &[Event]) -> Vec<(String, i64, i64, i64)> {
    let mut engine = compile(
        "stream W = A .partition_by(k) .window(1s) .aggregate(n: count(), s: sum(v)) .emit()",
    );
    let mut out = Vec::new();
    for e in evs {
        engine.process(e, &mut out).unwrap();
    }
    engine.finish(&mut out);
    let int = |e: &Event, f: &str| match e.field(f) {
        Some(Value::Int(i)) => *i,
        other => panic!("{f}: {other:?}"),
    };
    let mut rows: Vec<_> = out
        .iter()
        .map(|o| {
            let key = format!("{:?}", o.event.field("k").unwrap_or(&Value::Null));
            (
                key,
                o.event.timestamp_ns,
                int(&o.event, "n"),
                int(&o.event, "s"),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The same by hand: a missing key is `null`; keys of different kinds never share a window.
fn window_reference(evs: &[Event]) -> Vec<(String, i64, i64, i64)> {
    let mut acc: std::collections::BTreeMap<(String, i64), (i64, i64)> = Default::default();
    for e in evs {
        let key = format!("{:?}", e.field("k").unwrap_or(&Value::Null));
        let end = (e.timestamp_ns.div_euclid(1_000_000_000) + 1) * 1_000_000_000;
        let v = match e.field("v") {
            Some(Value::Int(i)) => *i,
            _ => 0,
        };
        let slot = acc.entry((key, end)).or_default();
        slot.0 += 1;
        slot.1 += v;
    }
    acc.into_iter()
        .map(|((k, end), (n, s))| (k, end, n, s))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Window partitions and in-place field reads against the reference.
    #[test]
    fn window_partitions_equal_the_reference(
        steps in prop::collection::vec((0u8..7, 0i64..6, -5i64..20, 0i64..400), 1..200),
        shared in any::<bool>(),
    ) {
        let evs = keyed(&steps, shared);
        prop_assert_eq!(window_counts(&evs), window_reference(&evs));
    }
}
