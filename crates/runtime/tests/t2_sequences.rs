//! Tier 2 sequences, joins and merges beyond the golden cases: arrival-order semantics with
//! out-of-order events, the live-run cap, bounded state over long runs, and exact
//! checkpoint/restore of partial matches and join buffers at any point of a run.

#![allow(clippy::unwrap_used)]

mod common;

use common::{run, SEC};
use proptest::prelude::*;
use varpulis_runtime::{Engine, EngineOptions, Event, Value};

const PROGRAM: &str = r#"
stream Three = A as a -> B where v >= a.v as b -> C as c
    .partition_by(k) .within(5s) .not(N where v == a.v)
    .emit(k: a.k, a: a.v, b: b.v, c: c.v)
stream Kleene = A as a -> all B where k == a.k as b -> C where k == a.k as c
    .within(8s) .emit(a: a.v, last_b: b.v, c: c.v)
stream Trailing = C as c -> all B as b .partition_by(k) .within(3s) .emit()
stream Starts = all A as a -> N as n .partition_by(k) .within(4s) .emit()
stream Unbounded = N as n -> C where v > n.v as c .emit(n: n.v, c: c.v)
stream J = join(A, stream Bs = B .where(v > 2)) .on(A.k == Bs.k) .window(2s)
    .emit(k: k, a: A.v, b: Bs.v)
stream M = merge(A, stream Cs = C .where(v < 5)) .partition_by(k) .window(3s)
    .aggregate(n: count(), s: sum(v)) .emit()
"#;

fn ev(ty: &str, k: i64, v: i64, ts: i64) -> Event {
    common::kv_event(ty, k, v, ts)
}

fn compile_with(src: &str, max_runs: usize) -> Engine {
    let opts = EngineOptions {
        max_sequence_runs: max_runs,
        ..EngineOptions::default()
    };
    Engine::compile(src, &opts).unwrap()
}

#[test]
fn runs_take_later_events_in_arrival_order_even_if_older() {
    let mut e = compile_with(
        "stream P = S as s -> E where id == s.id .within(5s) .emit(id: s.id)",
        10,
    );
    let lines = run(
        &mut e,
        &[
            ev("S", 0, 0, 10 * SEC),
            // Older than the start but later in arrival: still advances the run.
            Event::new("E", 9 * SEC, vec![("id".into(), Value::Null)]),
            ev("S", 0, 0, 10 * SEC),
        ],
        true,
    );
    // `id` is absent on S, so both `s.id` and `id` are null and null == null.
    assert_eq!(lines.len(), 1, "{lines:?}");
}

#[test]
fn live_run_cap_drops_the_oldest_runs() {
    let src = "stream P = A as a -> B as b .emit(a: a.v)";
    let mut e = compile_with(src, 3);
    let mut events: Vec<Event> = (0..5).map(|i| ev("A", 0, i, i * SEC)).collect();
    events.push(ev("B", 0, 0, 6 * SEC));
    let lines = run(&mut e, &events, true);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, a) in lines.iter().zip(2..) {
        assert!(line.contains(&format!(r#""a":{a}"#)), "{line}");
    }
}

#[test]
fn state_stays_bounded_over_long_runs() {
    // 30,000 events, one per ms, each with its own key: no run ever completes and no join ever
    // finds a partner, so only expiry (runs after `within`, join entries after the window) and
    // the live-run cap (the sequence without `within`) keep the state small. Without them the
    // checkpoint would hold 10,000 runs per sequence and 20,000 join entries (several MB).
    let src = r#"
stream Seq = A as a -> B as b -> C as c .partition_by(k) .within(1s) .emit(k: a.k)
stream J = join(A, B) .on(A.k == B.k) .window(1s) .emit(k: k)
stream Open = A as a -> D as d .emit(k: a.k)
"#;
    let mut e = compile_with(src, 200);
    let mut out = Vec::new();
    let mut max_len = 0usize;
    for i in 0..30_000i64 {
        let ty = ["A", "B", "C"][(i % 3) as usize];
        out.clear();
        e.process(&ev(ty, i, i, i * 1_000_000), &mut out).unwrap();
        if i % 3_000 == 2_999 {
            max_len = max_len.max(e.checkpoint().unwrap().len());
        }
    }
    // About 1,000 events per second of event time: a few hundred runs and entries at most.
    assert!(max_len < 400_000, "checkpoint grew to {max_len} bytes");
    assert_eq!(e.stats().events_out, 0);
}

#[test]
fn restore_rejects_corrupt_sequence_state() {
    let src = "stream P = A as a -> B as b .emit(a: a.v)";
    let mut a = compile_with(src, 10);
    run(&mut a, &[ev("A", 0, 1, 0)], false);
    let bytes = a.checkpoint().unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let body = text.split_once('\n').unwrap().1;
    let forged = body.replace(r#""p":1"#, r#""p":7"#);
    assert_ne!(forged, body);
    let digest = {
        use std::fmt::Write;
        let d = <sha2::Sha256 as sha2::Digest>::digest(forged.as_bytes());
        d.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    let forged = format!("VPCK 1 {digest}\n{forged}");
    let mut b = compile_with(src, 10);
    let err = b.restore(forged.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("run step"), "{err}");
    b.restore(&bytes).unwrap();
    assert_eq!(
        run(&mut b, &[ev("B", 0, 0, SEC)], true),
        run(&mut a, &[ev("B", 0, 0, SEC)], true)
    );
}

fn events_from(steps: &[(usize, i64, i64, i64)]) -> Vec<Event> {
    let mut t = 0i64;
    steps
        .iter()
        .map(|(ty, k, v, dt)| {
            // Mostly forward in time, sometimes backwards (late/out of order).
            t += dt - 300;
            ev(["A", "B", "C", "N", "X"][*ty], *k, *v, t.max(0) * 1_000_000)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Checkpoint after any prefix, restore into a fresh engine, feed the rest: the outputs and
    /// counters equal an uninterrupted run, with a cap high enough never to drop runs and one
    /// so low that it drops runs on both sides of the cut.
    #[test]
    fn checkpoint_restore_is_exact(
        steps in prop::collection::vec((0usize..5, 0i64..3, 0i64..6, 0i64..2_000), 1..80),
        cut in 0usize..80,
        small_cap in any::<bool>(),
    ) {
        let events = events_from(&steps);
        let cap = if small_cap { 2 } else { 10_000 };
        let cut = cut.min(events.len());
        let mut whole = compile_with(PROGRAM, cap);
        let expected = run(&mut whole, &events, true);

        let mut first = compile_with(PROGRAM, cap);
        let mut got = run(&mut first, &events[..cut], false);
        let bytes = first.checkpoint().unwrap();
        let mut second = compile_with(PROGRAM, cap);
        second.restore(&bytes).unwrap();
        got.extend(run(&mut second, &events[cut..], true));
        prop_assert_eq!(got, expected);
        prop_assert_eq!(second.stats(), whole.stats());
        // Restoring is idempotent: the restored engine checkpoints to the same bytes.
        let mut third = compile_with(PROGRAM, cap);
        third.restore(&bytes).unwrap();
        prop_assert_eq!(third.checkpoint().unwrap(), bytes);
    }
}

#[test]
fn fraud_example_raises_exactly_the_expected_alert() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fraud");
    let src = std::fs::read_to_string(dir.join("fraud.vpl")).unwrap();
    let events =
        varpulis_runtime::parse_evt(&std::fs::read_to_string(dir.join("events.evt")).unwrap())
            .unwrap();
    let mut e = compile_with(&src, 100);
    let got = run(&mut e, &events, true).join("\n") + "\n";
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::write(dir.join("expected.jsonl"), &got).unwrap();
    }
    let expected = std::fs::read_to_string(dir.join("expected.jsonl")).unwrap();
    assert_eq!(got, expected);
    assert_eq!(e.stats().errors, 0);
}

/// A random sequence program: steps over types A/B/C with aliases s0…, optional Kleene steps,
/// filters reading earlier captures, `.within`, `.not`, `.partition_by`.
fn sequence_program(
    steps: &[(usize, bool, usize)],
    within: Option<i64>,
    not: Option<usize>,
    partitioned: bool,
) -> String {
    let ty = |t: usize| ["A", "B", "C"][t % 3];
    let mut src = format!("stream S = {} as s0", ty(steps[0].0));
    if steps[0].1 {
        src = format!("stream S = all {} as s0", ty(steps[0].0));
    }
    for (i, (t, all, filter)) in steps.iter().enumerate().skip(1) {
        let filter = match filter % 4 {
            0 => String::new(),
            1 => " where v >= s0.v".to_string(),
            2 => format!(" where k == s{}.k", i - 1),
            _ => " where v % 2 == 0".to_string(),
        };
        let all = if *all { "all " } else { "" };
        src.push_str(&format!("\n    -> {all}{}{filter} as s{i}", ty(*t)));
    }
    if let Some(ms) = within {
        src.push_str(&format!("\n    .within({ms}ms)"));
    }
    if let Some(n) = not {
        src.push_str(&format!("\n    .not(N where v == {n})"));
    }
    if partitioned {
        src.push_str("\n    .partition_by(k)");
    }
    src.push_str("\n    .emit()\n");
    src
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random sequence shapes: compile, and checkpoint/restore at any point is exact.
    #[test]
    fn random_sequences_restore_exactly(
        shape in prop::collection::vec((0usize..3, any::<bool>(), 0usize..4), 1..5),
        within in prop::option::of(500i64..4_000),
        not in prop::option::of(0usize..6),
        partitioned in any::<bool>(),
        steps in prop::collection::vec((0usize..5, 0i64..3, 0i64..6, 0i64..1_000), 1..60),
        cut in 0usize..60,
    ) {
        // A single non-Kleene step is not a sequence; make it one.
        let mut shape = shape;
        if shape.len() == 1 {
            shape[0].1 = true;
        }
        let src = sequence_program(&shape, within, not, partitioned);
        let events = events_from(&steps);
        let cut = cut.min(events.len());
        let mut whole = compile_with(&src, 50);
        let expected = run(&mut whole, &events, true);
        let mut first = compile_with(&src, 50);
        let mut got = run(&mut first, &events[..cut], false);
        let bytes = first.checkpoint().unwrap();
        let mut second = compile_with(&src, 50);
        second.restore(&bytes).unwrap();
        got.extend(run(&mut second, &events[cut..], true));
        prop_assert_eq!(got, expected, "program:\n{}", src);
        prop_assert_eq!(whole.stats().errors, 0);
    }
}

/// A deliberately naive model of VPL.md §7 matching for [`sequence_program`] shapes: a plain
/// list of runs, no expiry queue, no cap, no compaction. Returns, per match, its time and the
/// `(k, v)` of every capture.
fn reference_matches(
    shape: &[(usize, bool, usize)],
    within: Option<i64>,
    not: Option<usize>,
    partitioned: bool,
    events: &[Event],
) -> Vec<(i64, Vec<(i64, i64)>)> {
    struct RefRun {
        key: Option<i64>,
        start: i64,
        pos: usize,
        kleene: bool,
        caps: Vec<(i64, i64)>,
    }
    let ty = |t: usize| ["A", "B", "C"][t % 3];
    let int = |e: &Event, f: &str| match e.field(f) {
        Some(Value::Int(i)) => *i,
        _ => unreachable!("test events carry ints"),
    };
    // Step 0 is the source: it has no filter.
    let passes = |step: usize, k: i64, v: i64, caps: &[(i64, i64)]| match shape[step].2 % 4 {
        _ if step == 0 => true,
        0 => true,
        1 => v >= caps[0].1,
        2 => k == caps[step - 1].0,
        _ => v % 2 == 0,
    };
    let n = shape.len();
    let mut runs: Vec<RefRun> = Vec::new();
    let mut wm = i64::MIN;
    let mut out = Vec::new();
    for e in events {
        let (t, k, v, ts) = (&*e.event_type, int(e, "k"), int(e, "v"), e.timestamp_ns);
        // The watermark is the stream's: only events of types it reads advance it.
        let reads = shape.iter().any(|s| ty(s.0) == t) || (not.is_some() && t == "N");
        if !reads {
            continue;
        }
        wm = wm.max(ts);
        let key = partitioned.then_some(k);
        let mut kept = Vec::new();
        for mut r in runs.drain(..) {
            if r.key != key {
                kept.push(r);
                continue;
            }
            if within.is_some_and(|w| r.start + w * 1_000_000 < wm) {
                continue;
            }
            if not.is_some_and(|x| t == "N" && v == x as i64) {
                continue;
            }
            if r.pos < n && ty(shape[r.pos].0) == t && passes(r.pos, k, v, &r.caps) {
                r.caps.push((k, v));
                r.kleene = shape[r.pos].1;
                r.pos += 1;
                if r.pos == n {
                    out.push((ts, r.caps.clone()));
                    if !r.kleene {
                        continue;
                    }
                }
            } else if r.kleene && ty(shape[r.pos - 1].0) == t && passes(r.pos - 1, k, v, &r.caps) {
                let last = r.caps.len() - 1;
                r.caps[last] = (k, v);
                if r.pos == n {
                    out.push((ts, r.caps.clone()));
                }
            }
            kept.push(r);
        }
        runs = kept;
        if ty(shape[0].0) == t {
            let r = RefRun {
                key,
                start: ts,
                pos: 1,
                kleene: shape[0].1,
                caps: vec![(k, v)],
            };
            if r.kleene && n == 1 {
                out.push((ts, r.caps.clone()));
            }
            runs.push(r);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The engine's sequence operator agrees with the naive model on random shapes and events.
    #[test]
    fn sequences_agree_with_a_naive_model(
        shape in prop::collection::vec((0usize..3, any::<bool>(), 0usize..4), 1..5),
        within in prop::option::of(200i64..3_000),
        not in prop::option::of(0usize..6),
        partitioned in any::<bool>(),
        steps in prop::collection::vec((0usize..5, 0i64..3, 0i64..6, 0i64..1_000), 1..80),
    ) {
        let mut shape = shape;
        if shape.len() == 1 {
            shape[0].1 = true;
        }
        let src = sequence_program(&shape, within, not, partitioned);
        let events = events_from(&steps);
        let mut engine = compile_with(&src, 1_000_000);
        let lines = run(&mut engine, &events, true);
        let got: Vec<(i64, Vec<(i64, i64)>)> = lines
            .iter()
            .map(|l| {
                let j: serde_json::Value = serde_json::from_str(l).unwrap();
                let f = &j["fields"];
                let caps = (0..shape.len())
                    .map(|i| {
                        (
                            f[format!("s{i}_k")].as_i64().unwrap(),
                            f[format!("s{i}_v")].as_i64().unwrap(),
                        )
                    })
                    .collect();
                let ts = events
                    .iter()
                    .map(|e| e.timestamp_ns)
                    .find(|t| Value::Timestamp(*t).to_json() == j["timestamp"])
                    .unwrap();
                (ts, caps)
            })
            .collect();
        let expected = reference_matches(&shape, within, not, partitioned, &events);
        prop_assert_eq!(got, expected, "program:\n{}", src);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// With in-order event times, the join agrees with a naive model that keeps every event and
    /// pairs an arrival with the most recent same-key event of the other input within the window.
    #[test]
    fn join_agrees_with_a_naive_model(
        window_ms in 1i64..1_500,
        steps in prop::collection::vec((0usize..3, 0i64..3, 0i64..6, 0i64..600), 1..80),
    ) {
        let src = format!(
            "stream J = join(A, stream Bs = B .where(v > 2)) .on(A.k == Bs.k) .window({window_ms}ms)\n    .emit(k: A.k, a: A.v, b: Bs.v)\n"
        );
        let mut t = 0i64;
        let events: Vec<Event> = steps
            .iter()
            .map(|(ty, k, v, dt)| {
                t += dt;
                ev(["A", "B", "C"][*ty], *k, *v, t * 1_000_000)
            })
            .collect();
        let mut engine = compile_with(&src, 10);
        let got: Vec<(i64, i64, i64)> = run(&mut engine, &events, true)
            .iter()
            .map(|l| {
                let j: serde_json::Value = serde_json::from_str(l).unwrap();
                let f = &j["fields"];
                (f["k"].as_i64().unwrap(), f["a"].as_i64().unwrap(), f["b"].as_i64().unwrap())
            })
            .collect();
        // (is_a, k, v, ts) of every accepted event so far.
        let mut seen: Vec<(bool, i64, i64, i64)> = Vec::new();
        let mut expected = Vec::new();
        for e in &events {
            let (k, v) = match (e.field("k"), e.field("v")) {
                (Some(Value::Int(k)), Some(Value::Int(v))) => (*k, *v),
                _ => unreachable!(),
            };
            let is_a = match &*e.event_type {
                "A" => true,
                "B" if v > 2 => false,
                _ => continue,
            };
            let partner = seen
                .iter()
                .filter(|(a, pk, _, _)| *a != is_a && *pk == k)
                .max_by_key(|(_, _, _, ts)| *ts)
                .filter(|(_, _, _, ts)| *ts >= e.timestamp_ns - window_ms * 1_000_000);
            if let Some((_, _, pv, _)) = partner {
                expected.push(if is_a { (k, v, *pv) } else { (k, *pv, v) });
            }
            seen.push((is_a, k, v, e.timestamp_ns));
        }
        prop_assert_eq!(got, expected);
    }
}
