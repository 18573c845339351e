//! `.trend_aggregate` against a brute-force enumerator of trends (small random inputs), and
//! exact checkpoint/restore of its state.
//!
//! Program: `A as a -> all B where v >= b.v as b -> C where v != b.v as c .within(W)
//! [.partition_by(k)]`: a trend is `a b1 … bm c` (m ≥ 1, skip-till-any-match) in one partition,
//! with `b1.v >= a.v`, `b(i+1).v >= b(i).v`, `c.v != bm.v`, `c` at most `W` after `a`.

#![allow(clippy::unwrap_used)]

mod common;

use common::{kv_event, run};
use proptest::prelude::*;
use varpulis_runtime::{Engine, EngineOptions, Event, Value};

fn program(within_ms: i64, partitioned: bool) -> String {
    let part = if partitioned { " .partition_by(k)" } else { "" };
    format!(
        "stream T = A as a -> all B where v >= b.v as b -> C where v != b.v as c .within({within_ms}ms){part}\n\
         \x20   .trend_aggregate(n: count_trends(), e: count_events(), nb: count_events(b), s: sum_trends(b.v), lo: min_trends(b.v), hi: max_trends(b.v), m: avg_trends(b.v))\n\
         \x20   .emit(a: a.v, n: n, e: e, nb: nb, s: s, lo: lo, hi: hi, m: m)\n"
    )
}

fn int(e: &Event, f: &str) -> i64 {
    match e.field(f) {
        Some(Value::Int(i)) => *i,
        _ => unreachable!(),
    }
}

/// Every trend starting at each `A`, enumerated; one line per start with at least one trend.
fn brute(events: &[Event], within_ms: i64, partitioned: bool) -> Vec<String> {
    let w = within_ms * 1_000_000;
    let mut out = Vec::new();
    for (i, a) in events.iter().enumerate() {
        if &*a.event_type != "A" {
            continue;
        }
        let deadline = a.timestamp_ns + w;
        let later: Vec<&Event> = events[i + 1..]
            .iter()
            .filter(|e| e.timestamp_ns <= deadline)
            .filter(|e| !partitioned || int(e, "k") == int(a, "k"))
            .collect();
        // Depth-first over the B sequences; each trend is (the Bs' values).
        let mut trends: Vec<Vec<i64>> = Vec::new();
        fn dfs(
            later: &[&Event],
            from: usize,
            prev: i64,
            bs: &mut Vec<i64>,
            out: &mut Vec<Vec<i64>>,
        ) {
            for j in from..later.len() {
                let e = later[j];
                let v = int(e, "v");
                match &*e.event_type {
                    "B" if v >= prev => {
                        bs.push(v);
                        dfs(later, j + 1, v, bs, out);
                        bs.pop();
                    }
                    "C" if !bs.is_empty() && v != prev => out.push(bs.clone()),
                    _ => {}
                }
            }
        }
        dfs(&later, 0, int(a, "v"), &mut Vec::new(), &mut trends);
        if trends.is_empty() {
            continue;
        }
        let n = trends.len() as i64;
        let nb: i64 = trends.iter().map(|t| t.len() as i64).sum();
        let s: i64 = trends.iter().flatten().sum();
        let lo = trends.iter().flatten().min().unwrap();
        let hi = trends.iter().flatten().max().unwrap();
        let fields = serde_json::json!({
            "a": int(a, "v"), "n": n, "e": nb + 2 * n, "nb": nb, "s": s, "lo": lo, "hi": hi,
            "m": s as f64 / nb as f64,
        });
        out.push((deadline, fields));
    }
    out.into_iter().map(|(t, f)| format!("{t} {f}")).collect()
}

fn engine(src: &str) -> Engine {
    match Engine::compile(src, &EngineOptions::default()) {
        Ok(e) => e,
        Err(e) => panic!("{src}\n{}", e.rendered),
    }
}

/// Output lines as `<ns> <fields>` (the brute force's shape).
fn normalize(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            let ts = j["timestamp"].as_str().unwrap();
            let t = chrono_free_ns(ts);
            // The fields as written (re-parsing floats may move them by one ulp).
            let fields = l.split_once("\"fields\":").unwrap().1;
            format!("{t} {}", &fields[..fields.len() - 1])
        })
        .collect()
}

/// `1970-01-01T00:00:01.5Z` → ns (times here stay within the first hour).
fn chrono_free_ns(s: &str) -> i64 {
    let time = &s[11..s.len() - 1];
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut it = hms.split(':').map(|x| x.parse::<i64>().unwrap());
    let (h, m, sec) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let frac_ns = format!("{frac:0<9}")[..9].parse::<i64>().unwrap();
    ((h * 60 + m) * 60 + sec) * 1_000_000_000 + frac_ns
}

fn events_from(steps: &[(usize, i64, i64, i64)]) -> Vec<Event> {
    let mut t = 0i64;
    steps
        .iter()
        .map(|(ty, k, v, dt)| {
            t += dt;
            kv_event(["A", "B", "C", "X"][*ty], *k, *v, t * 1_000_000)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The dynamic-programming aggregation equals enumerating every trend.
    #[test]
    fn trend_aggregates_equal_brute_force(
        steps in prop::collection::vec((0usize..4, 0i64..2, 0i64..4, 0i64..300), 1..16),
        within_ms in 200i64..2_000,
        partitioned in any::<bool>(),
    ) {
        let src = program(within_ms, partitioned);
        let events = events_from(&steps);
        let mut e = engine(&src);
        let got = normalize(&run(&mut e, &events, true));
        prop_assert_eq!(got, brute(&events, within_ms, partitioned), "program:\n{}", src);
        prop_assert_eq!(e.stats().errors, 0);
    }

    /// Checkpoint anywhere + restore into a fresh engine + the rest == an uninterrupted run.
    #[test]
    fn trend_state_restores_exactly(
        steps in prop::collection::vec((0usize..4, 0i64..2, 0i64..4, 0i64..300), 1..30),
        cut in 0usize..30,
        partitioned in any::<bool>(),
    ) {
        let src = program(1_500, partitioned);
        let events = events_from(&steps);
        let cut = cut.min(events.len());
        let mut whole = engine(&src);
        let expected = run(&mut whole, &events, true);
        let mut first = engine(&src);
        let mut got = run(&mut first, &events[..cut], false);
        let bytes = first.checkpoint().unwrap();
        let mut second = engine(&src);
        second.restore(&bytes).unwrap();
        got.extend(run(&mut second, &events[cut..], true));
        prop_assert_eq!(got, expected);
        let mut third = engine(&src);
        third.restore(&bytes).unwrap();
        prop_assert_eq!(third.checkpoint().unwrap(), bytes);
    }
}
