//! Tier 2 window behaviour beyond the golden cases: late events, many partitions, and exact
//! checkpoint/restore of open windows at any point of a run.

#![allow(clippy::unwrap_used)]

mod common;

use common::{run, SEC};
use proptest::prelude::*;
use varpulis_runtime::{Engine, EngineOptions, Event, Value};

const PROGRAM: &str = r#"
event R:
    k: int
    v: int

stream Tumble = R .partition_by(k) .window(10s) .aggregate(n: count(), s: sum(v), m: avg(v)) .having(n >= 1) .emit()
stream Hop = R .window(10s, sliding: 5s) .aggregate(n: count(), hi: max(v), lo: min(v)) .emit()
stream Count = R .partition_by(k) .window(3, sliding: 2) .aggregate(f: first(v), l: last(v), d: count(distinct(v))) .emit()
stream Session = R .partition_by(k) .window(session: 4s) .aggregate(n: count(), e: ema(v, 3)) .emit()
stream Each = R .partition_by(k) .aggregate(key: k, sd: stddev(v)) .emit()
stream Pass = R .window(7s) .where(v > 5) .emit()
stream Late = R .watermark(out_of_order: 2s) .allowed_lateness(3s) .partition_by(k) .window(5s) .aggregate(d: count(distinct(v)), sd: stddev(v), va: variance(v), e: ema(v, 3), f: first(v), l: last(v)) .emit()
"#;

/// Every aggregate over tumbling and hopping windows with lateness; `{FILTER}` is replaced by
/// nothing (windows accumulate) or by an always-true `.pattern` (windows keep their events).
const ALL_AGGREGATES: &str = r#"
event M:
    k: int
    v: float

stream T = M .watermark(out_of_order: 1s) .allowed_lateness(2s) .partition_by(k) .window(3s) {FILTER} .aggregate(n: count(), c: count(v), s: sum(v), a: avg(v), lo: min(v), hi: max(v), f: first(v), l: last(v), d: count(distinct(v)), sd: stddev(v), va: variance(v), e: ema(v, 4), r: max(v) - min(v), pc: percentile(v, 0.3), md: median(v), co: collect(v)) .emit()
stream H = M .watermark(out_of_order: 1s) .allowed_lateness(1s) .window(4s, sliding: 2s) {FILTER} .aggregate(n: count(), s: sum(v), a: avg(v), l: last(v)) .emit()
"#;

fn ev(k: i64, v: i64, ts: i64) -> Event {
    common::kv_event("R", k, v, ts)
}

fn compile(src: &str) -> Engine {
    Engine::compile(src, &EngineOptions::default()).unwrap()
}

#[test]
fn late_events_for_fired_windows_are_dropped() {
    let mut e = compile("event R:\n    k: int\n    v: int\nstream S = R .window(10s) .aggregate(n: count(), s: sum(v)) .emit()\n");
    let lines = run(
        &mut e,
        &[
            ev(0, 1, SEC),
            ev(0, 2, 12 * SEC),
            ev(0, 100, 3 * SEC),
            ev(0, 4, 15 * SEC),
        ],
        true,
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains(r#""n":1,"s":1"#), "{lines:?}");
    assert!(lines[1].contains(r#""n":2,"s":6"#), "{lines:?}");
}

#[test]
fn an_overflowing_sum_fails_only_its_event() {
    let mut e = compile(
        "event R:\n    k: int\n    v: int\nstream S = R .window(10s) .aggregate(n: count(), s: sum(v)) .emit()\n",
    );
    let lines = run(
        &mut e,
        &[ev(0, i64::MAX, SEC), ev(0, 1, 2 * SEC), ev(0, -5, 3 * SEC)],
        true,
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    let want = format!(r#""n":2,"s":{}"#, i64::MAX - 5);
    assert!(lines[0].contains(&want), "{lines:?}");
    assert_eq!(e.stats().errors, 1);
}

#[test]
fn many_partitions_fire_independently_in_creation_order() {
    let mut e = compile("event R:\n    k: int\n    v: int\nstream S = R .partition_by(k) .window(1s) .aggregate(n: count(), s: sum(v)) .emit()\n");
    let mut events = Vec::new();
    for round in 0..3 {
        for k in 0..1000 {
            events.push(ev(k, k, round * SEC + k * 1000));
        }
    }
    let lines = run(&mut e, &events, true);
    assert_eq!(lines.len(), 3000);
    for (i, l) in lines.iter().take(1000).enumerate() {
        assert!(l.contains(&format!(r#""k":{i},"n":1,"s":{i}}}"#)), "{l}");
    }
}

#[test]
fn restore_rejects_corrupt_window_state_and_keeps_the_old_one() {
    let mut a = compile(PROGRAM);
    run(&mut a, &[ev(1, 1, SEC)], false);
    let bytes = a.checkpoint().unwrap();
    let mut b = compile(PROGRAM);
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 5] ^= 1;
    assert!(b.restore(&bad).is_err());
    b.restore(&bytes).unwrap();
    assert_eq!(run(&mut b, &[], true), run(&mut a, &[], true));
}

/// An `M` event: `v` missing (null) when `None`.
fn m_event(k: i64, v: Option<f64>, ts: i64) -> Event {
    let mut fields = vec![("k".into(), Value::Int(k))];
    if let Some(v) = v {
        fields.push(("v".into(), Value::Float(v)));
    }
    Event::new("M", ts, fields)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Windows folding events into accumulators as they arrive give exactly the results of
    /// windows keeping their events and aggregating when firing, late events and re-firing
    /// included; and a checkpoint of accumulators restores exactly.
    #[test]
    fn accumulating_windows_equal_buffered_windows(
        steps in prop::collection::vec((0i64..3, prop::option::of(-4i64..6), 0i64..2_000), 1..60),
        cut in 0usize..60,
    ) {
        let mut t = 0i64;
        let events: Vec<Event> = steps
            .iter()
            .map(|(k, v, dt)| {
                t += dt - 400;
                m_event(*k, v.map(|v| v as f64 / 2.0), t.max(0) * 1_000_000)
            })
            .collect();
        let acc_src = ALL_AGGREGATES.replace("{FILTER}", "");
        let buf_src = ALL_AGGREGATES.replace("{FILTER}", ".pattern(all: evs => true)");
        let mut buffered = compile(&buf_src);
        let expected = run(&mut buffered, &events, true);
        let cut = cut.min(events.len());
        let mut first = compile(&acc_src);
        let mut got = run(&mut first, &events[..cut], false);
        let bytes = first.checkpoint().unwrap();
        let mut second = compile(&acc_src);
        second.restore(&bytes).unwrap();
        got.extend(run(&mut second, &events[cut..], true));
        prop_assert_eq!(got, expected);
        prop_assert_eq!(second.stats().late_events, buffered.stats().late_events);
    }

    /// Checkpoint after any prefix, restore into a fresh engine, feed the rest: the outputs equal
    /// an uninterrupted run (late and out-of-order events included).
    #[test]
    fn checkpoint_restore_is_exact(
        steps in prop::collection::vec((0i64..4, -3i64..10, 0i64..3_000), 1..60),
        cut in 0usize..60,
    ) {
        let mut t = 0i64;
        let events: Vec<Event> = steps
            .iter()
            .map(|(k, v, dt)| {
                // Mostly forward in time, sometimes backwards (late/out of order).
                t += dt - 500;
                ev(*k, *v, t.max(0) * 1_000_000)
            })
            .collect();
        let cut = cut.min(events.len());
        let mut whole = compile(PROGRAM);
        let expected = run(&mut whole, &events, true);

        let mut first = compile(PROGRAM);
        let mut got = run(&mut first, &events[..cut], false);
        let bytes = first.checkpoint().unwrap();
        let mut second = compile(PROGRAM);
        second.restore(&bytes).unwrap();
        got.extend(run(&mut second, &events[cut..], true));
        prop_assert_eq!(got, expected);
        prop_assert_eq!(second.stats(), whole.stats());
    }
}

#[test]
fn too_many_overlapping_windows_is_a_compile_error() {
    let err = Engine::compile(
        "event R:\n    v: int\nstream S = R .window(1h, sliding: 1ms) .aggregate(n: count())\n",
        &EngineOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.rendered.contains("overlap at most 10000"),
        "{}",
        err.rendered
    );
    assert!(Engine::compile(
        "event R:\n    v: int\nstream S = R .window(1h, sliding: 1s) .aggregate(n: count())\n",
        &EngineOptions::default(),
    )
    .is_ok());
}
