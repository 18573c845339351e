//! Per-key linearizability checker (Wing–Gong search with Lowe's memoisation, as in
//! Porcupine/Knossos) over a register-with-presence model.
//!
//! Each key (one connector name, one worker id, one group name) is a register holding
//! `Option<String>`: absent, or present with a value. Operations are the conditional writes
//! the coordinator exposes (create-if-absent, update-if-present, upsert, delete-if-present)
//! and linearizable reads. Linearizability is compositional (P-compositionality), so
//! checking every key on its own checks the whole history for single-key operations.
//!
//! Operations whose outcome is unknown (timeout, reset, 5xx, 421) never return: they may
//! take effect at any instant after their invocation, or never (placing them after every
//! other operation is the same as "never", since nothing observes the state afterwards).

use std::collections::{BTreeMap, HashSet};

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// Create if absent (`POST`), else fails with "exists" (409).
    Create(String),
    /// Replace if present (`PUT`), else fails with "missing" (404).
    Update(String),
    /// Create or replace (worker registration).
    Upsert(String),
    /// Remove if present (`DELETE`), else fails with "missing" (404).
    Delete,
    /// Linearizable read.
    Read,
}

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// 2xx for a write.
    Ok,
    /// Definite 409: the key was present.
    Exists,
    /// Definite 404: the key was absent.
    Missing,
    /// A read's answer.
    Value(Option<String>),
    /// No answer we can trust: the write may or may not have been applied.
    Unknown,
}

/// One operation of a history on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Client-side identifier (for reports).
    pub id: u64,
    /// Invocation instant (monotonic nanoseconds).
    pub invoke: u64,
    /// Completion instant; `None` when the outcome is unknown (never returns).
    pub ret: Option<u64>,
    /// Request.
    pub input: Input,
    /// Response.
    pub output: Output,
}

/// Applies `input` with observed `output` to `state`; `None` if the model cannot produce it.
pub fn step(state: &Option<String>, input: &Input, output: &Output) -> Option<Option<String>> {
    let unknown = *output == Output::Unknown;
    match (input, state) {
        (Input::Create(v), None) => (unknown || *output == Output::Ok).then(|| Some(v.clone())),
        (Input::Create(_), Some(_)) => {
            (unknown || *output == Output::Exists).then(|| state.clone())
        }
        (Input::Update(v), Some(_)) => (unknown || *output == Output::Ok).then(|| Some(v.clone())),
        (Input::Update(_), None) => (unknown || *output == Output::Missing).then_some(None),
        (Input::Upsert(v), _) => (unknown || *output == Output::Ok).then(|| Some(v.clone())),
        (Input::Delete, Some(_)) => (unknown || *output == Output::Ok).then_some(None),
        (Input::Delete, None) => (unknown || *output == Output::Missing).then_some(None),
        (Input::Read, _) => match output {
            Output::Unknown => Some(state.clone()),
            Output::Value(v) => (v == state).then(|| state.clone()),
            _ => None,
        },
    }
}

/// Value standing for "present with a value nobody ever read".
const UNSEEN: &str = "\u{0}unseen";

/// Simplifies a history without changing its verdict, sorted by invocation:
/// - unknown reads constrain nothing and are dropped;
/// - an unknown update whose value is never read can only make later reads fail (it does
///   not change presence), so the linearization that omits it is always at least as good;
/// - an unknown create or upsert whose value is never read keeps its presence effect, but
///   its value is replaced by one shared marker so equal states merge in the search.
fn reduce(ops: &[Op]) -> Vec<Op> {
    let observed: HashSet<&String> = ops
        .iter()
        .filter_map(|o| match &o.output {
            Output::Value(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    let mut out: Vec<Op> = Vec::new();
    for o in ops {
        let unknown = o.output == Output::Unknown;
        let mut o = o.clone();
        match (&o.input, unknown) {
            (Input::Read, true) => continue,
            (Input::Update(v), true) if !observed.contains(v) => continue,
            (Input::Create(v), true) if !observed.contains(v) => {
                o.input = Input::Create(UNSEEN.to_owned());
            }
            (Input::Upsert(v), true) if !observed.contains(v) => {
                o.input = Input::Upsert(UNSEEN.to_owned());
            }
            _ => {}
        }
        out.push(o);
    }
    out.sort_by_key(|o| (o.invoke, o.ret));
    out
}

/// Result of checking one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists: the history is a violation.
    Violation,
    /// The search budget ran out (reported, not counted as a violation).
    Inconclusive,
}

/// Checks one key's history starting from `initial`, exploring at most `budget` states.
pub fn check_key(initial: Option<String>, ops: &[Op], budget: usize) -> Verdict {
    let ops = reduce(ops);
    let ops: Vec<&Op> = ops.iter().collect();
    let n = ops.len();
    if n == 0 {
        return Verdict::Linearizable;
    }
    let words = n.div_ceil(64);
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    // Depth-first search over (set of linearized ops, state).
    let mut stack: Vec<(Vec<u64>, Option<String>)> = vec![(vec![0; words], initial)];
    let mut explored = 0usize;
    while let Some((done, state)) = stack.pop() {
        let is_done = |i: usize| done[i / 64] & (1u64 << (i % 64)) != 0;
        let remaining: Vec<usize> = (0..n).filter(|&i| !is_done(i)).collect();
        if remaining.is_empty() {
            return Verdict::Linearizable;
        }
        explored += 1;
        if explored > budget {
            return Verdict::Inconclusive;
        }
        // An op may go next only if it was invoked before every pending op's return.
        let horizon = remaining
            .iter()
            .filter_map(|&i| ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        // Candidates in the order they are pushed: unknown ops first, then known ops by
        // descending return, so the depth-first search tries the earliest-returning known
        // op first and an unknown op last (histories of a correct system then need
        // little backtracking).
        // Symmetry: unknown ops with the same input are interchangeable, so only the
        // earliest-invoked remaining one of each group may go next.
        let mut groups_seen: Vec<&Input> = Vec::new();
        let mut candidates: Vec<usize> = Vec::new();
        for &i in &remaining {
            let op = ops[i];
            if op.invoke > horizon {
                continue;
            }
            if op.ret.is_none() {
                if groups_seen.contains(&&op.input) {
                    continue;
                }
                groups_seen.push(&op.input);
            }
            candidates.push(i);
        }
        candidates.sort_by_key(|&i| match ops[i].ret {
            None => (0, u64::MAX - ops[i].invoke),
            Some(r) => (1, u64::MAX - r),
        });
        for i in candidates {
            let op = ops[i];
            if let Some(next) = step(&state, &op.input, &op.output) {
                let mut d = done.clone();
                d[i / 64] |= 1u64 << (i % 64);
                let key = (d, next);
                if seen.insert(key.clone()) {
                    stack.push(key);
                }
            }
        }
    }
    Verdict::Violation
}

/// Checks every key of `history` (all keys start absent); returns the verdict per key.
pub fn check_all(history: &BTreeMap<String, Vec<Op>>, budget: usize) -> BTreeMap<String, Verdict> {
    history
        .iter()
        .map(|(k, ops)| (k.clone(), check_key(None, ops, budget)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: u64, invoke: u64, ret: Option<u64>, input: Input, output: Output) -> Op {
        Op {
            id,
            invoke,
            ret,
            input,
            output,
        }
    }
    fn v(s: &str) -> Option<String> {
        Some(s.to_owned())
    }
    const B: usize = 100_000;

    #[test]
    fn sequential_good_history_is_linearizable() {
        let h = vec![
            op(1, 0, Some(1), Input::Create("a".into()), Output::Ok),
            op(2, 2, Some(3), Input::Read, Output::Value(v("a"))),
            op(3, 4, Some(5), Input::Create("b".into()), Output::Exists),
            op(4, 6, Some(7), Input::Update("c".into()), Output::Ok),
            op(5, 8, Some(9), Input::Read, Output::Value(v("c"))),
            op(6, 10, Some(11), Input::Delete, Output::Ok),
            op(7, 12, Some(13), Input::Delete, Output::Missing),
            op(8, 14, Some(15), Input::Read, Output::Value(None)),
        ];
        assert_eq!(check_key(None, &h, B), Verdict::Linearizable);
    }

    #[test]
    fn lost_acknowledged_write_is_a_violation() {
        let h = vec![
            op(1, 0, Some(1), Input::Create("a".into()), Output::Ok),
            op(2, 2, Some(3), Input::Read, Output::Value(None)),
        ];
        assert_eq!(check_key(None, &h, B), Verdict::Violation);
    }

    #[test]
    fn stale_read_after_update_is_a_violation() {
        let h = vec![
            op(1, 0, Some(1), Input::Create("a".into()), Output::Ok),
            op(2, 2, Some(3), Input::Update("b".into()), Output::Ok),
            op(3, 4, Some(5), Input::Read, Output::Value(v("a"))),
        ];
        assert_eq!(check_key(None, &h, B), Verdict::Violation);
    }

    #[test]
    fn concurrent_operations_may_reorder() {
        // The read overlaps the update, so either value is fine.
        let h = vec![
            op(1, 0, Some(1), Input::Create("a".into()), Output::Ok),
            op(2, 2, Some(6), Input::Update("b".into()), Output::Ok),
            op(3, 3, Some(4), Input::Read, Output::Value(v("b"))),
            op(4, 5, Some(7), Input::Read, Output::Value(v("a"))),
        ];
        // 3 saw b, so the update took effect before 3 returned; 4 starts after that and
        // still sees a: a violation.
        assert_eq!(check_key(None, &h, B), Verdict::Violation);
        let h2 = vec![
            op(1, 0, Some(1), Input::Create("a".into()), Output::Ok),
            op(2, 2, Some(6), Input::Update("b".into()), Output::Ok),
            op(3, 3, Some(5), Input::Read, Output::Value(v("a"))),
            op(4, 4, Some(7), Input::Read, Output::Value(v("b"))),
        ];
        assert_eq!(check_key(None, &h2, B), Verdict::Linearizable);
    }

    #[test]
    fn unknown_write_may_or_may_not_apply() {
        let applied = vec![
            op(1, 0, None, Input::Create("a".into()), Output::Unknown),
            op(2, 5, Some(6), Input::Read, Output::Value(v("a"))),
        ];
        assert_eq!(check_key(None, &applied, B), Verdict::Linearizable);
        let not_applied = vec![
            op(1, 0, None, Input::Create("a".into()), Output::Unknown),
            op(2, 5, Some(6), Input::Read, Output::Value(None)),
        ];
        assert_eq!(check_key(None, &not_applied, B), Verdict::Linearizable);
        // But it cannot apply before it was invoked.
        let too_early = vec![
            op(2, 0, Some(1), Input::Read, Output::Value(v("a"))),
            op(1, 5, None, Input::Create("a".into()), Output::Unknown),
        ];
        assert_eq!(check_key(None, &too_early, B), Verdict::Violation);
    }

    #[test]
    fn definitely_failed_write_must_not_be_visible() {
        // An update that got 404 cannot have written its value.
        let h = vec![
            op(1, 0, Some(1), Input::Update("x".into()), Output::Missing),
            op(2, 2, Some(3), Input::Read, Output::Value(v("x"))),
        ];
        assert_eq!(check_key(None, &h, B), Verdict::Violation);
        // A 409 proves the key existed at some point during the call.
        let h = vec![op(1, 0, Some(1), Input::Create("x".into()), Output::Exists)];
        assert_eq!(check_key(None, &h, B), Verdict::Violation);
    }

    #[test]
    fn upsert_and_delete_model() {
        let h = vec![
            op(1, 0, Some(1), Input::Upsert("a".into()), Output::Ok),
            op(2, 2, Some(3), Input::Upsert("b".into()), Output::Ok),
            op(3, 4, Some(5), Input::Read, Output::Value(v("b"))),
            op(4, 6, Some(7), Input::Delete, Output::Ok),
            op(5, 8, Some(9), Input::Update("c".into()), Output::Missing),
        ];
        assert_eq!(check_key(None, &h, B), Verdict::Linearizable);
        let bad = vec![
            op(1, 0, Some(1), Input::Upsert("a".into()), Output::Ok),
            op(2, 2, Some(3), Input::Delete, Output::Missing),
        ];
        assert_eq!(check_key(None, &bad, B), Verdict::Violation);
    }

    #[test]
    fn many_concurrent_unknowns_stay_within_budget() {
        let mut h: Vec<Op> = (0..12)
            .map(|i| op(i, i, None, Input::Upsert(format!("v{i}")), Output::Unknown))
            .collect();
        h.push(op(99, 100, Some(101), Input::Read, Output::Value(v("v3"))));
        assert_eq!(check_key(None, &h, 1_000_000), Verdict::Linearizable);
        h.push(op(
            100,
            102,
            Some(103),
            Input::Read,
            Output::Value(v("nope")),
        ));
        assert_ne!(check_key(None, &h, 1_000_000), Verdict::Linearizable);
    }

    #[test]
    fn check_all_reports_each_key() {
        let mut m = BTreeMap::new();
        m.insert(
            "good".to_owned(),
            vec![op(1, 0, Some(1), Input::Create("a".into()), Output::Ok)],
        );
        m.insert(
            "bad".to_owned(),
            vec![op(2, 0, Some(1), Input::Read, Output::Value(v("ghost")))],
        );
        let r = check_all(&m, B);
        assert_eq!(r["good"], Verdict::Linearizable);
        assert_eq!(r["bad"], Verdict::Violation);
    }

    /// A random history of a correct register: 6 clients, overlapping calls, linearization
    /// points drawn inside each call, 10% of writes with an unknown outcome.
    fn simulated(seed: u64, n: usize) -> Vec<Op> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut calls = Vec::new();
        let mut clock = [0u64; 6];
        for id in 0..n as u64 {
            let c = rng.gen_range(0..6);
            let invoke = clock[c] + rng.gen_range(1..50);
            let ret = invoke + rng.gen_range(1..200);
            clock[c] = ret;
            let point = rng.gen_range(invoke..ret);
            let input = match rng.gen_range(0..5) {
                0 => Input::Create(format!("v{id}")),
                1 => Input::Update(format!("v{id}")),
                2 => Input::Delete,
                3 => Input::Upsert(format!("v{id}")),
                _ => Input::Read,
            };
            calls.push((point, id, invoke, ret, input));
        }
        calls.sort_by_key(|c| (c.0, c.1));
        let mut state: Option<String> = None;
        let mut out = Vec::new();
        for (_, id, invoke, ret, input) in calls {
            let output = match (&input, &state) {
                (Input::Read, s) => Output::Value(s.clone()),
                (Input::Create(_), Some(_)) => Output::Exists,
                (Input::Update(_) | Input::Delete, None) => Output::Missing,
                _ => Output::Ok,
            };
            let unknown = input != Input::Read && rng.gen_range(0..10) == 0;
            if let Some(next) = step(&state, &input, &output) {
                state = next;
            }
            let (ret, output) = if unknown {
                (None, Output::Unknown)
            } else {
                (Some(ret), output)
            };
            out.push(op(id, invoke, ret, input, output));
        }
        out
    }

    #[test]
    fn simulated_correct_histories_pass_and_corrupted_ones_fail() {
        for seed in 0..4 {
            let h = simulated(seed, 120);
            assert_eq!(
                check_key(None, &h, 300_000),
                Verdict::Linearizable,
                "seed {seed}"
            );
            let mut bad = h.clone();
            let last = bad.len() - 1;
            bad.push(op(
                9999,
                bad[last].invoke + 10_000,
                Some(bad[last].invoke + 10_001),
                Input::Read,
                Output::Value(v("ghost")),
            ));
            assert_ne!(
                check_key(None, &bad, 300_000),
                Verdict::Linearizable,
                "seed {seed}"
            );
        }
    }
}
