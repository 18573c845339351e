//! Named patterns against a naive model, and exact checkpoint/restore of every Tier 3 operator.
//!
//! The model implements VPL.md §8 for sequence patterns (`SEQ` of items with quantifiers
//! `+ ? *`, filters over earlier captures, one `NOT` anywhere, `within`, `partition by`) with
//! plain lists: no progress vectors, no deadline index, no run cap. Kleene items (`+ *`) are
//! also read as arrays (`len(s0)` in filters, `map(s1, e => [e.k, e.v])` in the output).

#![allow(clippy::unwrap_used)]

mod common;

use common::{kv_event, run};
use proptest::prelude::*;
use varpulis_runtime::{Engine, EngineOptions, Event, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Q {
    One,
    Plus,
    Opt,
    Star,
}

/// One positive item: type index, quantifier, filter kind.
#[derive(Debug, Clone)]
struct Item {
    ty: usize,
    q: Q,
    filter: usize,
}

#[derive(Debug, Clone)]
struct Shape {
    items: Vec<Item>,
    /// `NOT N where v == x` inserted before positive item `at` (`at == items.len()`: trailing).
    not: Option<(usize, i64)>,
    within_ms: Option<i64>,
    partitioned: bool,
}

const TYPES: [&str; 3] = ["A", "B", "C"];

fn quant(q: Q) -> &'static str {
    match q {
        Q::One => "",
        Q::Plus => "+",
        Q::Opt => "?",
        Q::Star => "*",
    }
}

fn kleene(q: Q) -> bool {
    matches!(q, Q::Plus | Q::Star)
}

/// The filter of item `i` (none for the first item).
fn filter_src(s: &Shape, i: usize) -> Option<String> {
    if i == 0 {
        return None;
    }
    match s.items[i].filter % 5 {
        0 => None,
        1 => Some("v >= s0.v".into()),
        2 => Some(format!("k == s{}.k", i - 1)),
        3 => Some("v % 2 == 0".into()),
        // The first item's events as an array (only when it is a Kleene item).
        _ if kleene(s.items[0].q) => Some("len(s0) >= 2".into()),
        _ => None,
    }
}

fn program(s: &Shape) -> String {
    let mut parts = Vec::new();
    for (i, it) in s.items.iter().enumerate() {
        if s.not.is_some_and(|(at, _)| at == i) {
            parts.push(format!(
                "NOT N where v == {}",
                s.not.map(|n| n.1).unwrap_or(0)
            ));
        }
        let mut item = format!("{}{}", TYPES[it.ty], quant(it.q));
        if let Some(f) = filter_src(s, i) {
            item.push_str(&format!(" where {f}"));
        }
        item.push_str(&format!(" as s{i}"));
        parts.push(item);
    }
    if s.not.is_some_and(|(at, _)| at == s.items.len()) {
        parts.push(format!(
            "NOT N where v == {}",
            s.not.map(|n| n.1).unwrap_or(0)
        ));
    }
    let mut src = format!("pattern P = SEQ({})", parts.join(", "));
    if let Some(ms) = s.within_ms {
        src.push_str(&format!(" within {ms}ms"));
    }
    if s.partitioned {
        src.push_str(" partition by k");
    }
    if s.items.iter().any(|i| kleene(i.q)) {
        // Explicit fields (the same as `.emit()`'s) plus every Kleene capture as an array.
        let mut fields = Vec::new();
        for (i, it) in s.items.iter().enumerate() {
            fields.push(format!("s{i}_k: s{i}.k, s{i}_v: s{i}.v"));
            if kleene(it.q) {
                fields.push(format!("l{i}: map(s{i}, e => [e.k, e.v])"));
            }
        }
        src.push_str(&format!("\nstream S = P .emit({})\n", fields.join(", ")));
    } else {
        src.push_str("\nstream S = P .emit()\n");
    }
    src
}

/// A match: its time, the `(k, v)` captured (last) by every positive item, and the events of
/// every Kleene item (empty for other items).
type MatchRow = (i64, Vec<Option<(i64, i64)>>, Vec<Vec<(i64, i64)>>);

/// A run of the model.
#[derive(Clone)]
struct MRun {
    key: Option<i64>,
    start: i64,
    /// Index of the positive item taken last.
    at: usize,
    counts: Vec<u32>,
    caps: Vec<Option<(i64, i64)>>,
    lists: Vec<Vec<(i64, i64)>>,
}

impl MRun {
    fn take(&mut self, s: &Shape, j: usize, k: i64, v: i64) {
        self.counts[j] += 1;
        self.caps[j] = Some((k, v));
        if kleene(s.items[j].q) {
            self.lists[j].push((k, v));
        }
    }

    fn row(&self, ts: i64) -> MatchRow {
        (ts, self.caps.clone(), self.lists.clone())
    }
}

/// The naive model: matches as (time, captures of every positive item).
fn model(s: &Shape, events: &[Event]) -> Vec<MatchRow> {
    let n = s.items.len();
    let min = |i: usize| matches!(s.items[i].q, Q::One | Q::Plus) as u32;
    let max = |i: usize| {
        if matches!(s.items[i].q, Q::Plus | Q::Star) {
            u32::MAX
        } else {
            1
        }
    };
    let int = |e: &Event, f: &str| match e.field(f) {
        Some(Value::Int(i)) => *i,
        _ => unreachable!(),
    };
    let passes = |i: usize, k: i64, v: i64, r: &MRun| -> bool {
        let caps = &r.caps;
        match filter_src(s, i).as_deref() {
            None => true,
            Some("v >= s0.v") => caps[0].is_some_and(|c| v >= c.1),
            Some("v % 2 == 0") => v % 2 == 0,
            Some("len(s0) >= 2") => r.lists[0].len() >= 2,
            Some(_) => caps[i - 1].is_some_and(|c| k == c.0),
        }
    };
    // The NOT sits between positive items `at - 1` and `at`.
    let not_before = s.not.map(|n| n.0);
    let not_value = s.not.map(|n| n.1);
    // Positive items after `from` reachable by skipping optional ones, in order.
    let reachable = |from: usize, counts: &[u32]| -> Vec<usize> {
        let mut out = Vec::new();
        if counts[from] < min(from) {
            return out;
        }
        for j in from + 1..n {
            out.push(j);
            if min(j) > 0 {
                break;
            }
        }
        out
    };
    let complete = |r: &MRun| r.counts[r.at] >= min(r.at) && (r.at + 1..n).all(|j| min(j) == 0);
    // The NOT guards the gap after `at` when it lies before the next mandatory item.
    let not_active = |r: &MRun| -> bool {
        let Some(b) = not_before else { return false };
        if r.counts[r.at] < min(r.at) || b <= r.at {
            return false;
        }
        (r.at + 1..b).all(|j| min(j) == 0)
    };
    // A complete run with an active NOT (only optional items after it) completes at the deadline.
    let awaits = |r: &MRun| not_active(r);
    let extendable = |r: &MRun| -> bool {
        if max(r.at) == u32::MAX && complete(r) {
            return true;
        }
        if r.counts[r.at] < min(r.at) {
            return false;
        }
        for j in r.at + 1..n {
            if max(j) == u32::MAX {
                return true;
            }
            if min(j) > 0 {
                return false;
            }
        }
        false
    };
    let mut runs: Vec<MRun> = Vec::new();
    let mut leading: std::collections::HashMap<Option<i64>, i64> = Default::default();
    let mut clock = i64::MIN;
    let mut out = Vec::new();
    for e in events {
        let (t, k, v, ts) = (&*e.event_type, int(e, "k"), int(e, "v"), e.timestamp_ns);
        let reads = s.items.iter().any(|i| TYPES[i.ty] == t) || (s.not.is_some() && t == "N");
        if !reads {
            continue;
        }
        clock = clock.max(ts);
        let key = s.partitioned.then_some(k);
        // Deadlines passed: expire, completing absences (by deadline, then creation).
        if let Some(w) = s.within_ms.map(|ms| ms * 1_000_000) {
            let mut due: Vec<(i64, usize)> = runs
                .iter()
                .enumerate()
                .filter(|(_, r)| r.start + w < clock)
                .map(|(i, r)| (r.start + w, i))
                .collect();
            due.sort();
            for (d, i) in &due {
                let r = &runs[*i];
                if complete(r) && awaits(r) {
                    out.push(r.row(*d));
                }
            }
            let gone: Vec<usize> = due.iter().map(|(_, i)| *i).collect();
            let mut i = 0;
            runs.retain(|_| {
                i += 1;
                !gone.contains(&(i - 1))
            });
        }
        // A leading NOT remembers its last time in the partition.
        if not_before == Some(0) && t == "N" && Some(v) == not_value {
            let e = leading.entry(key).or_insert(ts);
            *e = (*e).max(ts);
        }
        let mut kept = Vec::new();
        for mut r in runs.drain(..) {
            if r.key != key {
                kept.push(r);
                continue;
            }
            if not_active(&r) && t == "N" && Some(v) == not_value {
                continue;
            }
            let mut took = false;
            for j in reachable(r.at, &r.counts) {
                if TYPES[s.items[j].ty] == t && passes(j, k, v, &r) {
                    r.at = j;
                    r.take(s, j, k, v);
                    took = true;
                    break;
                }
            }
            if !took
                && TYPES[s.items[r.at].ty] == t
                && r.counts[r.at] < max(r.at)
                && passes(r.at, k, v, &r)
            {
                let at = r.at;
                r.take(s, at, k, v);
                took = true;
            }
            if took && complete(&r) && !awaits(&r) {
                out.push(r.row(ts));
                if !extendable(&r) {
                    continue;
                }
            }
            kept.push(r);
        }
        runs = kept;
        // A new run: the first item, or a later one when the earlier ones are optional.
        let mut firsts = Vec::new();
        for j in 0..n {
            firsts.push(j);
            if min(j) > 0 {
                break;
            }
        }
        let blocked = not_before == Some(0)
            && leading.get(&key).is_some_and(|l| match s.within_ms {
                Some(ms) => *l >= ts - ms * 1_000_000,
                None => true,
            });
        for j in firsts {
            let mut r = MRun {
                key,
                start: ts,
                at: j,
                counts: vec![0; n],
                caps: vec![None; n],
                lists: vec![Vec::new(); n],
            };
            if TYPES[s.items[j].ty] == t && passes(j, k, v, &r) {
                if blocked {
                    break;
                }
                r.take(s, j, k, v);
                if complete(&r) && !awaits(&r) {
                    out.push(r.row(ts));
                    if !extendable(&r) {
                        break;
                    }
                }
                runs.push(r);
                break;
            }
        }
    }
    out
}

fn shapes() -> impl Strategy<Value = Shape> {
    let item = (0usize..3, 0usize..4, 0usize..5).prop_map(|(ty, q, filter)| Item {
        ty,
        q: [Q::One, Q::Plus, Q::Opt, Q::Star][q],
        filter,
    });
    (
        prop::collection::vec(item, 1..4),
        prop::option::of((0usize..4, 0i64..6)),
        prop::option::of(300i64..3_000),
        any::<bool>(),
    )
        .prop_map(|(mut items, not, within_ms, partitioned)| {
            // At least one mandatory item; the first item mandatory keeps runs meaningful.
            if items.iter().all(|i| matches!(i.q, Q::Opt | Q::Star)) {
                items[0].q = Q::One;
            }
            let not = not.map(|(at, v)| (at.min(items.len()), v));
            let mut within_ms = within_ms;
            // A NOT followed only by optional items can end the pattern: it needs `within`.
            let can_end = not
                .is_some_and(|(at, _)| items[at..].iter().all(|i| matches!(i.q, Q::Opt | Q::Star)));
            if can_end && within_ms.is_none() {
                within_ms = Some(1_000);
            }
            // A NOT must not be the only thing before nothing: keep shapes the checker accepts.
            Shape {
                items,
                not,
                within_ms,
                partitioned,
            }
        })
}

fn events_from(steps: &[(usize, i64, i64, i64)]) -> Vec<Event> {
    let mut t = 0i64;
    steps
        .iter()
        .map(|(ty, k, v, dt)| {
            t += dt;
            kv_event(["A", "B", "C", "N", "X"][*ty], *k, *v, t * 1_000_000)
        })
        .collect()
}

fn engine(src: &str) -> Engine {
    let opts = EngineOptions {
        max_sequence_runs: 1_000_000,
        ..EngineOptions::default()
    };
    match Engine::compile(src, &opts) {
        Ok(e) => e,
        Err(e) => panic!("{src}\n{}", e.rendered),
    }
}

fn parse_matches(lines: &[String], n: usize) -> Vec<MatchRow> {
    lines
        .iter()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            let f = &j["fields"];
            let caps = (0..n)
                .map(|i| {
                    f[format!("s{i}_k")]
                        .as_i64()
                        .map(|k| (k, f[format!("s{i}_v")].as_i64().unwrap()))
                })
                .collect();
            let lists = (0..n)
                .map(|i| match f[format!("l{i}")].as_array() {
                    Some(items) => items
                        .iter()
                        .map(|kv| (kv[0].as_i64().unwrap(), kv[1].as_i64().unwrap()))
                        .collect(),
                    None => Vec::new(),
                })
                .collect();
            let ts = j["timestamp"].as_str().unwrap().to_string();
            (parse_ts(&ts), caps, lists)
        })
        .collect()
}

/// `1970-01-01T00:00:01.500Z` → ns.
fn parse_ts(s: &str) -> i64 {
    let time = &s[11..s.len() - 1];
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut it = hms.split(':').map(|x| x.parse::<i64>().unwrap());
    let (h, m, sec) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let frac_ns = format!("{frac:0<9}")[..9].parse::<i64>().unwrap();
    ((h * 60 + m) * 60 + sec) * 1_000_000_000 + frac_ns
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    /// The engine's pattern operator agrees with the naive model on random shapes and events.
    #[test]
    fn patterns_agree_with_a_naive_model(
        shape in shapes(),
        steps in prop::collection::vec((0usize..5, 0i64..3, 0i64..6, 0i64..700), 1..70),
    ) {
        let src = program(&shape);
        let events = events_from(&steps);
        let mut e = engine(&src);
        let got = parse_matches(&run(&mut e, &events, true), shape.items.len());
        let expected = model(&shape, &events);
        prop_assert_eq!(got, expected, "program:\n{}", src);
        prop_assert_eq!(e.stats().errors, 0);
    }

    /// Checkpoint at any point + restore into a fresh engine + the rest == an uninterrupted run.
    #[test]
    fn patterns_restore_exactly(
        shape in shapes(),
        steps in prop::collection::vec((0usize..5, 0i64..3, 0i64..6, 0i64..700), 1..60),
        cut in 0usize..60,
    ) {
        let src = program(&shape);
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
        prop_assert_eq!(got, expected, "program:\n{}", src);
        let mut third = engine(&src);
        third.restore(&bytes).unwrap();
        prop_assert_eq!(third.checkpoint().unwrap(), bytes);
    }
}

/// Every stateful Tier 3 operator in one program.
const TIER3: &str = r#"
stream D = A .partition_by(k) .distinct(v) .emit(k: k, v: v)
stream L = B .partition_by(k) .limit(2) .emit(k: k, v: v)
stream Tw = A .watermark(out_of_order: 300ms) .allowed_lateness(500ms) .partition_by(k)
    .window(1s) .aggregate(n: count(), s: sum(v), md: median(v), co: collect(v)) .emit()
stream Ss = B .watermark(out_of_order: 200ms) .allowed_lateness(400ms)
    .window(session: 300ms) .aggregate(n: count(), hi: max(v)) .emit()
stream Cw = C .watermark(out_of_order: 250ms) .window(3) .aggregate(f: first(v), l: last(v)) .emit()
stream Sq = A as a -> C where k == a.k as c .within(2s) .watermark(out_of_order: 100ms)
    .emit(a: a.v, c: c.v)
pattern Abs = SEQ(A as a, NOT N where k == a.k) within 800ms partition by k
stream Ab = Abs .emit(k: a.k, v: a.v)
stream J = join(A, C) .on(A.k == C.k) .emit(a: A.v, c: C.v)
stream T = timer(700ms) .emit(at: timestamp)
stream P = A .print(v) .first() .emit(v: v)
stream Jc = join(A, B, C) .on(A.k == B.k and B.v == C.v) .window(1s) .emit(a: A.v, b: B.v, c: C.k)
stream Mo = A as a -> all B where k == a.k as b -> C .within(1s) .stnm() .emit(n: count(b))
stream Lo = A as a -> all A.increasing(v) as up .within(1s) .stnm() .emit(n: count(up), top: up.v)
stream St = B as b -> C as c .within(1s) .strict() .emit(b: b.v, c: c.v)
stream Lj = left_join(A, C) .on(A.k == C.k) .window(600ms) .emit(a: A.v, c: C.v)
stream Ka = A as a -> all B where k == a.k and len(bs) < 3 as bs -> C .within(1s)
    .emit(vs: map(bs, b => b.v), first: bs[0].v, n: count(bs))
stream Fj = full_join(stream X = A, stream Y = B on X.k == Y.k) .window(400ms) .emit(x: X.v, y: Y.v)
"#;

/// Runs events in the given (arrival) order, driving timers with the largest time seen.
fn run_timed(e: &mut Engine, events: &[Event], finish: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut out = Vec::new();
    let mut clock = 0;
    for ev in events {
        out.clear();
        clock = ev.timestamp_ns.max(clock);
        e.advance_time(clock, &mut out);
        e.process(ev, &mut out).unwrap();
        lines.extend(out.iter().map(|o| o.to_json().to_string()));
    }
    if finish {
        out.clear();
        e.finish(&mut out);
        lines.extend(out.iter().map(|o| o.to_json().to_string()));
    }
    lines
}

fn tier3_engine() -> Engine {
    let opts = EngineOptions {
        print: varpulis_runtime::PrintTarget::Discard,
        max_sequence_runs: 40,
        ..EngineOptions::default()
    };
    Engine::compile(TIER3, &opts).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Checkpoint anywhere in a run with late and out-of-order events, restore into a fresh
    /// engine, feed the rest: outputs and counters equal an uninterrupted run, and restoring is
    /// idempotent.
    #[test]
    fn tier3_operators_restore_exactly(
        steps in prop::collection::vec((0usize..5, 0i64..3, 0i64..6, 0i64..400), 1..90),
        cut in 0usize..90,
    ) {
        let mut t = 0i64;
        let events: Vec<Event> = steps
            .iter()
            .map(|(ty, k, v, dt)| {
                // Mostly forward in time, sometimes backwards (late, out of order).
                t += dt - 120;
                kv_event(["A", "B", "C", "N", "X"][*ty], *k, *v, t.max(0) * 1_000_000)
            })
            .collect();
        let cut = cut.min(events.len());
        let mut whole = tier3_engine();
        let expected = run_timed(&mut whole, &events, true);
        let mut first = tier3_engine();
        let mut got = run_timed(&mut first, &events[..cut], false);
        let bytes = first.checkpoint().unwrap();
        let mut second = tier3_engine();
        second.restore(&bytes).unwrap();
        got.extend(run_timed(&mut second, &events[cut..], true));
        prop_assert_eq!(got, expected);
        prop_assert_eq!(second.stats(), whole.stats());
        let mut third = tier3_engine();
        third.restore(&bytes).unwrap();
        prop_assert_eq!(third.checkpoint().unwrap(), bytes);
    }
}
