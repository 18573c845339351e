//! Outer joins (`left_join`, `right_join`, `full_join`; also `join`) against a naive model:
//! every event kept in plain lists, partners looked up as documented in `docs/vpl-tier3.md`
//! ("Outer joins"): matched pairs as in `join(…)` (the most recent partner with the same key
//! within the window), and for each event of a preserved input that joined nothing, one event at
//! its time + window carrying the partner found then (the most recent one with the key, within
//! the window of the pending event), or nothing.

#![allow(clippy::unwrap_used)]

mod common;

use common::{kv_event, run};
use proptest::prelude::*;
use varpulis_runtime::{Engine, EngineOptions, Event};

const MS: i64 = 1_000_000;

/// Expected outputs (`{"l":…,"r":…}` with the timestamp in ms) for `kind` over in-order events
/// `(input, key, ts_ms)`; `v` of the i-th event is `i`.
fn model(kind: &str, window_ms: i64, events: &[(usize, i64, i64)]) -> Vec<String> {
    let preserved = |i: usize| match kind {
        "left_join" => i == 0,
        "right_join" => i == 1,
        "full_join" => true,
        _ => false,
    };
    // Per input: (key, v, ts) in arrival order; the most recent per key is the last.
    let mut seen: [Vec<(i64, i64, i64)>; 2] = [Vec::new(), Vec::new()];
    // Pending: (input, key, v, ts).
    let mut pending: Vec<(usize, i64, i64, i64)> = Vec::new();
    let mut out = Vec::new();
    let latest = |seen: &[Vec<(i64, i64, i64)>; 2], input: usize, k: i64| {
        seen[input]
            .iter()
            .rev()
            .find(|(kk, _, _)| *kk == k)
            .copied()
    };
    let line = |l: Option<i64>, r: Option<i64>, ts: i64| {
        let mut f = Vec::new();
        if let Some(l) = l {
            f.push(format!("\"l\":{l}"));
        }
        if let Some(r) = r {
            f.push(format!("\"r\":{r}"));
        }
        format!("{ts} {{{}}}", f.join(","))
    };
    let expire = |pending: &mut Vec<(usize, i64, i64, i64)>,
                  seen: &[Vec<(i64, i64, i64)>; 2],
                  out: &mut Vec<String>,
                  wm: Option<i64>| {
        pending.sort_by_key(|p| p.3);
        while let Some(&(input, k, v, ts)) = pending.first() {
            let deadline = ts + window_ms;
            if wm.is_some_and(|wm| deadline >= wm) {
                break;
            }
            pending.remove(0);
            let partner = latest(seen, 1 - input, k)
                .filter(|p| p.2 >= ts - window_ms && p.2 <= deadline)
                .map(|p| p.1);
            let (l, r) = if input == 0 {
                (Some(v), partner)
            } else {
                (partner, Some(v))
            };
            out.push(line(l, r, deadline));
        }
    };
    for (v, &(input, k, ts)) in events.iter().enumerate() {
        let v = v as i64;
        expire(&mut pending, &seen, &mut out, Some(ts));
        seen[input].push((k, v, ts));
        match latest(&seen, 1 - input, k).filter(|p| p.2 >= ts - window_ms) {
            Some(p) => {
                let (l, r) = if input == 0 { (v, p.1) } else { (p.1, v) };
                out.push(line(Some(l), Some(r), ts));
                pending.retain(|q| !(q.0 == 1 - input && q.2 == p.1));
            }
            None if preserved(input) => pending.push((input, k, v, ts)),
            None => {}
        }
    }
    expire(&mut pending, &seen, &mut out, None);
    out.sort();
    out
}

fn engine_lines(kind: &str, window_ms: i64, events: &[(usize, i64, i64)]) -> Vec<String> {
    let src = format!(
        "stream J = {kind}(stream L = A, stream R = B on L.k == R.k) .window({window_ms}ms) \
         .emit(l: L.v, r: R.v)\n"
    );
    let mut e = Engine::compile(&src, &EngineOptions::default()).unwrap();
    let evs: Vec<Event> = events
        .iter()
        .enumerate()
        .map(|(v, &(input, k, ts))| kv_event(["A", "B"][input], k, v as i64, ts * MS))
        .collect();
    let mut lines: Vec<String> = run(&mut e, &evs, true)
        .iter()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            let ts = chrono_ms(j["timestamp"].as_str().unwrap());
            format!("{ts} {}", j["fields"])
        })
        .collect();
    lines.sort();
    lines
}

/// Milliseconds since the epoch of an RFC 3339 time written by the engine (1970, UTC).
fn chrono_ms(s: &str) -> i64 {
    // "1970-01-01T00:01:02.345Z" or without fraction.
    let t = s.trim_end_matches('Z');
    let (date, time) = t.split_once('T').unwrap();
    let day: i64 = date.rsplit('-').next().unwrap().parse().unwrap();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut p = hms.split(':').map(|x| x.parse::<i64>().unwrap());
    let (h, m, sec) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
    let frac_ms: i64 = format!("{:0<3}", frac)[..3].parse().unwrap();
    (((day - 1) * 24 + h) * 60 + m) * 60_000 + sec * 1000 + frac_ms
}

fn events_strategy() -> impl Strategy<Value = Vec<(usize, i64, i64)>> {
    prop::collection::vec((0usize..2, 0i64..3, 1i64..400), 0..40).prop_map(|raw| {
        let mut ts = 0;
        raw.into_iter()
            .map(|(input, k, step)| {
                ts += step;
                (input, k, ts)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn outer_joins_agree_with_a_naive_model(
        kind in prop::sample::select(vec!["join", "left_join", "right_join", "full_join"]),
        window_ms in 100i64..1500,
        events in events_strategy(),
    ) {
        prop_assert_eq!(engine_lines(kind, window_ms, &events), model(kind, window_ms, &events));
    }
}

#[test]
fn the_model_reads_the_engine_timestamps() {
    assert_eq!(chrono_ms("1970-01-01T00:01:02.345Z"), 62_345);
    assert_eq!(chrono_ms("1970-01-02T00:00:00Z"), 86_400_000);
    assert_eq!(chrono_ms("1970-01-01T00:00:00.5Z"), 500);
}
