//! The engine's hot-path shortcuts (issue 22 item 4) against the plain paths they replace, on
//! random inputs: the same programs must produce the same outputs either way.
//!
//! * A join whose chain reads only captures (`Order.id`) does not build the joined event's
//!   own fields; a chain that reads a bare field name (forcing the union of fields) must give
//!   the same outputs, and so must a downstream stream reading the joined fields.
//! * Single-field join keys are stored without a list; a two-field key whose second field is
//!   always equal must join exactly like the single-field key.
//! * Partition and join keys compare shared strings by pointer: events whose key strings share
//!   one allocation must behave exactly like events with a fresh string per event.
//! * Windowed aggregates read their partition key by reference.
//! * Sequence runs live in partition slots (one hash per event, slots freed and reused): a
//!   partitioned sequence matches exactly like the unpartitioned one whose steps compare keys,
//!   also under a live-run cap.

#![allow(clippy::unwrap_used)]

mod common;

use common::run;
use proptest::prelude::*;
use std::sync::Arc;
use varpulis_runtime::{Engine, EngineOptions, Event, Value};

fn compile(src: &str) -> Engine {
    Engine::compile(src, &EngineOptions::default()).unwrap()
}

/// Events of type A, B or C with a string key `k` (one of four), an int `v` and `g = 0`; key
/// strings are shared between events when `shared`, else allocated per event.
fn events(steps: &[(usize, usize, i64, i64)], shared: bool) -> Vec<Event> {
    let keys: Vec<Arc<str>> = (0..4).map(|i| Arc::from(format!("key{i}"))).collect();
    let mut t = 0i64;
    steps
        .iter()
        .map(|(ty, k, v, dt)| {
            t += dt;
            let key = if shared {
                keys[*k % 4].clone()
            } else {
                Arc::from(format!("key{}", k % 4))
            };
            Event::new(
                ["A", "B", "C"][*ty % 3],
                t * 1_000_000,
                vec![
                    ("k".into(), Value::Str(key)),
                    ("v".into(), Value::Int(*v)),
                    ("g".into(), Value::Int(0)),
                ],
            )
        })
        .collect()
}

fn steps() -> impl Strategy<Value = Vec<(usize, usize, i64, i64)>> {
    prop::collection::vec((0usize..3, 0usize..4, 0i64..6, 0i64..400), 1..120)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Captures-only joins (no joined fields built) against the same join forced to build them.
    #[test]
    fn lazy_join_fields_equal_the_flattened_join(window_ms in 1i64..1_500, steps in steps()) {
        let join = format!("join(A, stream Bs = B .where(v > 1)) .on(A.k == Bs.k) .window({window_ms}ms)");
        let lazy = format!("stream J = {join} .emit(k: A.k, a: A.v, b: Bs.v)");
        // A bare name in the chain reads the joined event's own fields.
        let flat = format!("stream J = {join} .where(true or v == null) .emit(k: A.k, a: A.v, b: Bs.v)");
        let evs = events(&steps, true);
        let got = run(&mut compile(&lazy), &evs, true);
        let want = run(&mut compile(&flat), &evs, true);
        prop_assert_eq!(got, want);
    }

    /// A join without `.emit` feeding another stream: the downstream stream reads the joined
    /// event's fields (union, first input wins), so they are built.
    #[test]
    fn joins_feeding_a_stream_carry_their_fields(steps in steps()) {
        let src = "stream J = join(A, B) .on(A.k == B.k) .window(1s)\n\
                   stream D = J .emit(k: k, v: v, g: g)";
        let flat = "stream J = join(A, B) .on(A.k == B.k) .window(1s) .where(true or v == null)\n\
                    stream D = J .emit(k: k, v: v, g: g)";
        let evs = events(&steps, true);
        let got: Vec<String> = run(&mut compile(src), &evs, true)
            .into_iter()
            .filter(|l| l.contains("\"event_type\":\"D\""))
            .collect();
        let want: Vec<String> = run(&mut compile(flat), &evs, true)
            .into_iter()
            .filter(|l| l.contains("\"event_type\":\"D\""))
            .collect();
        // Every joined event has `k` and `v` (from A, the first input).
        for l in &got {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            prop_assert!(j["fields"]["k"].is_string() && j["fields"]["v"].is_i64(), "{}", l);
        }
        prop_assert_eq!(got, want);
    }

    /// A two-field key whose second part always matches joins like the one-field key.
    #[test]
    fn multi_field_join_keys_equal_single_field_keys(window_ms in 1i64..1_500, steps in steps()) {
        let one = format!("stream J = join(A, B) .on(A.k == B.k) .window({window_ms}ms) .emit(a: A.v, b: B.v, k: B.k)");
        let two = format!("stream J = join(A, B) .on(A.k == B.k and A.g == B.g) .window({window_ms}ms) .emit(a: A.v, b: B.v, k: B.k)");
        let evs = events(&steps, false);
        prop_assert_eq!(run(&mut compile(&one), &evs, true), run(&mut compile(&two), &evs, true));
    }

    /// Shared key strings (pointer-equal) behave exactly like per-event copies, for windows,
    /// sequences and joins.
    #[test]
    fn shared_and_copied_key_strings_give_the_same_outputs(steps in steps()) {
        let src = "stream W = A .partition_by(k) .window(1s) .aggregate(n: count(), s: sum(v), m: avg(v)) .emit()\n\
                   stream S = A as a -> B where v >= a.v as b -> C as c .partition_by(k) .within(2s)\n    \
                       .emit(k: a.k, a: a.v, b: b.v, c: c.v)\n\
                   stream J = join(A, C) .on(A.k == C.k) .window(500ms) .emit(k: A.k, a: A.v, c: C.v)";
        let shared = run(&mut compile(src), &events(&steps, true), true);
        let copied = run(&mut compile(src), &events(&steps, false), true);
        prop_assert_eq!(shared, copied);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A partitioned sequence against the unpartitioned one whose later steps require the first
    /// step's key, with expiry (`within`), slot reuse and, under `cap`, dropped runs.
    #[test]
    fn partition_slots_match_like_key_filters(
        within_ms in 100i64..2_000,
        cap in prop::option::of(1usize..6),
        steps in prop::collection::vec((0usize..3, 0usize..4, 0i64..6, 0i64..400), 1..300),
    ) {
        let parted = format!("stream S = A as a -> B where v >= a.v as b -> C as c \
            .partition_by(k) .within({within_ms}ms) .emit(k: a.k, a: a.v, b: b.v, c: c.v)");
        let filtered = format!("stream S = A as a -> B where k == a.k and v >= a.v as b \
            -> C where k == a.k as c .within({within_ms}ms) .emit(k: a.k, a: a.v, b: b.v, c: c.v)");
        let opts = EngineOptions {
            max_sequence_runs: cap.unwrap_or(EngineOptions::default().max_sequence_runs),
            ..EngineOptions::default()
        };
        let evs = events(&steps, false);
        let mut a = Engine::compile(&parted, &opts).unwrap();
        let mut b = Engine::compile(&filtered, &opts).unwrap();
        prop_assert_eq!(run(&mut a, &evs, true), run(&mut b, &evs, true));
    }
}

/// More event types than the route cache holds, interleaved with types no stream reads and with
/// type names allocated per event: every event reaches exactly its stream.
#[test]
fn routing_past_the_route_cache_reaches_every_stream() {
    let src: String = (0..24)
        .map(|i| format!("stream S{i} = T{i} .emit(v: v)\n"))
        .collect();
    let mut engine = compile(&src);
    let mut evs = Vec::new();
    for round in 0..3i64 {
        for i in 0..30 {
            let fields = vec![("v".into(), Value::Int(round * 100 + i))];
            evs.push(Event::new(&format!("T{i}"), round * 1_000 + i, fields));
        }
    }
    let lines = run(&mut engine, &evs, true);
    assert_eq!(lines.len(), 3 * 24, "{lines:?}");
    for (line, (round, i)) in lines
        .iter()
        .zip((0..3i64).flat_map(|round| (0..24).map(move |i| (round, i))))
    {
        assert!(line.contains(&format!("\"event_type\":\"S{i}\"")), "{line}");
        assert!(
            line.contains(&format!("\"v\":{}", round * 100 + i)),
            "{line}"
        );
    }
}

/// A windowed aggregate partitioned by a field some events lack or hold `null` in: those events
/// form the `null` partition, as before.
#[test]
fn missing_and_null_partition_keys_share_one_partition() {
    let src = "stream W = A .partition_by(k) .window(1s) .aggregate(n: count()) .emit()";
    let evs = vec![
        Event::new("A", 0, vec![("v".into(), Value::Int(1))]),
        Event::new(
            "A",
            1_000,
            vec![("k".into(), Value::Null), ("v".into(), Value::Int(2))],
        ),
        Event::new(
            "A",
            2_000,
            vec![("k".into(), Value::str("x")), ("v".into(), Value::Int(3))],
        ),
    ];
    let lines = run(&mut compile(src), &evs, true);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("\"n\":2"), "{lines:?}");
    assert!(
        lines[1].contains("\"k\":\"x\"") && lines[1].contains("\"n\":1"),
        "{lines:?}"
    );
}

/// Sequences without a Kleene step derive `count(capture)` from the run's position instead of
/// keeping counts per run: every captured step took exactly one event, also after a checkpoint
/// taken mid-run is restored.
#[test]
fn capture_counts_without_kleene_steps_are_one_per_step() {
    let src = "stream S = A as a -> B as b -> C as c .partition_by(k) .within(5s)\n    \
               .emit(k: a.k, na: count(a), nb: count(b), nc: count(c))";
    let evs = events(
        &[
            (0, 0, 1, 10),
            (0, 1, 1, 10),
            (1, 0, 2, 10),
            (1, 1, 2, 10),
            (0, 0, 3, 10),
            (2, 0, 4, 10),
            (2, 1, 4, 10),
        ],
        true,
    );
    let mut whole = compile(src);
    let expected = run(&mut whole, &evs, true);
    assert_eq!(expected.len(), 2, "{expected:?}");
    for l in &expected {
        assert!(
            l.contains("\"na\":1") && l.contains("\"nb\":1") && l.contains("\"nc\":1"),
            "{l}"
        );
    }
    // Checkpoint after the two B events (runs waiting at their last step), restore, go on.
    let mut first = compile(src);
    let mut got = run(&mut first, &evs[..4], false);
    let bytes = first.checkpoint().unwrap();
    let mut second = compile(src);
    second.restore(&bytes).unwrap();
    got.extend(run(&mut second, &evs[4..], true));
    assert_eq!(got, expected);
}
