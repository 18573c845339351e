//! `.trend_aggregate(…)` over a `->` sequence with Kleene steps (aggregation mode).
//!
//! **Definition** (docs/vpl-tier3.md, "Trend aggregation"). Selection strategy:
//! *skip-till-any-match*. A *trend* is a sequence of events `e1 … em` of one partition, in
//! arrival order, that matches the steps in order: `e1` takes step 0, a plain step takes exactly
//! one event, an `all` step one or more; any events may be skipped in between; every `ei`
//! passes its step's filter, in which the step's own capture and the previous step's capture
//! are the trend's previous event `e(i-1)` and step 0's capture is `e1`; `em` takes the last
//! step; `em` is at most `.within` after `e1`. Each event that takes step 0 opens a *run*; the
//! run's result aggregates every trend starting with that event and is emitted once, when the
//! stream's clock passes `start + within` (timestamp: that deadline) or at end of input, if it
//! has at least one trend.
//!
//! The number of trends can be exponential in the number of events, so nothing is enumerated:
//! each event `e` taking step `s` becomes a node whose count is the number of partial trends
//! ending with it — `1` for the start, else the sum of the counts of the earlier nodes it may
//! follow (a node of step `s - 1`, or of `s` for an `all` step, whose event passes the filter).
//! The other aggregates propagate the same way (sums of values weighted by counts; minima and
//! maxima of the values seen on the way). Cost per event: one filter evaluation per node of the
//! run that it may follow.

use crate::codec::{event_from_json, event_json, opt_i64_field, u64_field};
use crate::compile::{Compiler, ExprFn};
use crate::error::RuntimeError;
use crate::event::Event;
use crate::key::KeyRepr;
use crate::operators::runs::{self, EvalWith, Match};
use crate::value::{Fields, Value};
use serde_json::{json, Value as Json};
use std::sync::{Arc, Mutex};
use varpulis_vpl::ast::{self, ExprKind, OpKind};
use varpulis_vpl::correlate;

/// At most this many nodes (events taken) per run; beyond, the run is dropped and counted.
pub(crate) const MAX_NODES_PER_RUN: usize = 10_000;

/// One aggregate of `.trend_aggregate(name: f(…))`.
#[derive(Clone, Copy, PartialEq)]
enum Agg {
    /// `count_trends()`.
    Trends,
    /// `count_events()` / `count_events(alias)`: events in all trends (of that step).
    Events(Option<usize>),
    /// `sum_trends(alias.field)`, `avg_trends`, `min_trends`, `max_trends`.
    Sum(usize, usize),
    Avg(usize, usize),
    Min(usize, usize),
    Max(usize, usize),
}

struct TStep {
    ty: Arc<str>,
    all: bool,
    filter: Option<ExprFn>,
}

/// Per node and aggregate: counts and sums weighted by trend counts, or extrema.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Acc {
    /// Events (of the aggregate's step) over the partial trends, or the weighted sum.
    n: i64,
    sum: f64,
    int: bool,
    ext: Option<f64>,
}

impl Acc {
    fn zero() -> Acc {
        Acc {
            n: 0,
            sum: 0.0,
            int: true,
            ext: None,
        }
    }
}

#[derive(Clone)]
struct Node {
    step: usize,
    ev: Value,
    count: i64,
    accs: Vec<Acc>,
}

#[derive(Clone)]
struct TRun {
    id: u64,
    start: i64,
    key: KeyRepr,
    nodes: Vec<Node>,
    /// Totals over complete trends.
    trends: i64,
    totals: Vec<Acc>,
}

#[derive(Default)]
struct TState {
    clock: Option<i64>,
    next_id: u64,
    /// Live runs in creation order (= deadline order).
    runs: Vec<TRun>,
}

/// The operator of a sequence stream with `.trend_aggregate(…)`.
pub(crate) struct TrendOp {
    steps: Vec<TStep>,
    /// Capture names (one per step), then the previous-event name slots used by filters.
    caps: Vec<Arc<str>>,
    within: i64,
    key: Option<runs::PartitionKey>,
    key_name: Option<Arc<str>>,
    aggs: Vec<(Arc<str>, Agg)>,
    /// Field read by each `Sum/Avg/Min/Max` aggregate.
    fields: Vec<Arc<str>>,
    result_type: Arc<str>,
    max_runs: usize,
    state: Mutex<TState>,
}

fn saturating(a: i64, b: i64) -> i64 {
    a.saturating_add(b)
}

impl TrendOp {
    /// Compiles a checked sequence stream with `.trend_aggregate(…)`; `None` if `s` has none.
    pub(crate) fn compile(c: &mut Compiler, s: &ast::StreamDecl, max_runs: usize) -> Option<Self> {
        let ta = s.ops.iter().find(|o| o.kind() == OpKind::TrendAggregate)?;
        let steps = correlate::sequence_steps(s)?;
        let names: Vec<String> = steps.iter().map(|st| st.capture.name.clone()).collect();
        c.enter_pattern(names.clone());
        let caps: Vec<Arc<str>> = names.iter().map(|n| c.intern(n)).collect();
        let tsteps = steps
            .iter()
            .map(|st| TStep {
                ty: c.intern(&st.event.name),
                all: st.all,
                filter: st.filter.map(|f| c.expr(f)),
            })
            .collect();
        let step_of = |e: &ast::Expr| match &e.kind {
            ExprKind::Name(id) => names.iter().position(|n| *n == id.name),
            _ => None,
        };
        let mut aggs = Vec::new();
        let mut fields = Vec::new();
        for a in &ta.args {
            let Some(name) = &a.name else { continue };
            let ExprKind::Call { callee, args, .. } = &a.value.kind else {
                continue;
            };
            let field_arg = |c: &mut Compiler, fields: &mut Vec<Arc<str>>| match args.first() {
                Some(ast::Expr {
                    kind: ExprKind::Field { base, name, .. },
                    ..
                }) => step_of(base).map(|s| {
                    fields.push(c.intern(&name.name));
                    (s, fields.len() - 1)
                }),
                _ => None,
            };
            let agg = match callee.name.as_str() {
                "count_trends" => Some(Agg::Trends),
                "count_events" => Some(Agg::Events(args.first().and_then(step_of))),
                "sum_trends" => field_arg(c, &mut fields).map(|(s, f)| Agg::Sum(s, f)),
                "avg_trends" => field_arg(c, &mut fields).map(|(s, f)| Agg::Avg(s, f)),
                "min_trends" => field_arg(c, &mut fields).map(|(s, f)| Agg::Min(s, f)),
                "max_trends" => field_arg(c, &mut fields).map(|(s, f)| Agg::Max(s, f)),
                _ => None,
            };
            if let Some(agg) = agg {
                aggs.push((c.intern(&name.name), agg));
            }
        }
        let mut within = i64::MAX;
        let mut key = None;
        let mut key_name = None;
        for op in &s.ops {
            match (op.kind(), op.first_positional().map(|a| &a.kind)) {
                (OpKind::Within, Some(ExprKind::Duration(d))) => {
                    within = i64::try_from(*d).unwrap_or(i64::MAX)
                }
                (OpKind::PartitionBy, Some(ExprKind::Name(id))) => {
                    key_name = Some(c.intern(&id.name));
                    key = op
                        .first_positional()
                        .map(|e| runs::PartitionKey::compile(c, e));
                }
                _ => {}
            }
        }
        Some(TrendOp {
            steps: tsteps,
            caps,
            within,
            key,
            key_name,
            aggs,
            fields,
            result_type: c.intern(&s.name.name),
            max_runs: max_runs.max(1),
            state: Mutex::new(TState::default()),
        })
    }

    /// The captures a filter sees: step 0 = the trend's first event; the candidate's previous
    /// step and its own step = the trend's previous event.
    fn caps_for(&self, first: &Value, prev: &Value, prev_step: usize, step: usize) -> Event {
        let fields: Fields = self
            .caps
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let v = if i == step || i == prev_step {
                    prev.clone()
                } else if i == 0 {
                    first.clone()
                } else {
                    Value::Null
                };
                (name.clone(), v)
            })
            .collect();
        Event {
            event_type: self.result_type.clone(),
            timestamp_ns: 0,
            fields: Arc::new(fields),
        }
    }

    /// The numeric value of aggregate field `f` in node event `ev` (`None`: absent or not a
    /// number); `int` tells whether it is an int.
    fn value_of(&self, ev: &Value, f: usize) -> Option<(f64, bool)> {
        let Value::Map(m) = ev else { return None };
        let name = self.fields.get(f)?;
        match m.iter().find(|(k, _)| k == name).map(|(_, v)| v) {
            Some(Value::Int(i)) => Some((*i as f64, true)),
            Some(Value::Float(x)) => Some((*x, false)),
            _ => None,
        }
    }

    /// A fresh node of `step` for event `ev` with no predecessors (count 0).
    fn node(&self, step: usize, ev: &Event) -> Node {
        Node {
            step,
            ev: Value::Map(ev.fields.clone()),
            count: 0,
            accs: vec![Acc::zero(); self.aggs.len()],
        }
    }

    /// Adds the partial trends of predecessor `p` (or the trend start, `None`) to `n`.
    fn extend(&self, n: &mut Node, p: Option<&Node>) {
        let (pc, paccs) = match p {
            Some(p) => (p.count, Some(&p.accs)),
            None => (1, None),
        };
        n.count = saturating(n.count, pc);
        for (i, (_, agg)) in self.aggs.iter().enumerate() {
            let acc = &mut n.accs[i];
            if let Some(pa) = paccs.map(|a| a[i]) {
                acc.n = saturating(acc.n, pa.n);
                acc.sum += pa.sum;
                acc.int &= pa.int;
                acc.ext = match (acc.ext, pa.ext) {
                    (Some(a), Some(b)) => Some(if matches!(agg, Agg::Min(..)) {
                        a.min(b)
                    } else {
                        a.max(b)
                    }),
                    (a, b) => a.or(b),
                };
            }
            // This node's own event, once per partial trend through it.
            let own = match agg {
                Agg::Trends => None,
                Agg::Events(s) => s.is_none_or(|s| s == n.step).then_some((0.0, true)),
                Agg::Sum(s, f) | Agg::Avg(s, f) | Agg::Min(s, f) | Agg::Max(s, f) => {
                    if *s == n.step {
                        self.value_of(&n.ev, *f)
                    } else {
                        None
                    }
                }
            };
            if let Some((x, int)) = own {
                acc.n = saturating(acc.n, pc);
                acc.sum += x * pc as f64;
                acc.int &= int;
                acc.ext = Some(match (acc.ext, agg) {
                    (Some(a), Agg::Min(..)) => a.min(x),
                    (Some(a), _) => a.max(x),
                    (None, _) => x,
                });
            }
        }
    }

    /// Feeds one event: emits the results of runs whose deadline the clock passes, extends the
    /// runs of its partition, then may open a run.
    pub(crate) fn on_event(
        &self,
        ev: &Event,
        eval: &mut EvalWith<'_>,
        dropped: &mut u64,
    ) -> Result<Vec<Match>, RuntimeError> {
        let key = runs::partition_key(&self.key, ev, eval)?;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let out = self.advance(&mut st, ev.timestamp_ns);
        let last = self.steps.len() - 1;
        let mut overflow = Vec::new();
        for (ri, run) in st.runs.iter_mut().enumerate() {
            if run.key != key {
                continue;
            }
            let first = run.nodes[0].ev.clone();
            let mut fresh = Vec::new();
            // Step 0 is extended only when it is an `all` step (`all A as a -> B`).
            for (s, step) in self.steps.iter().enumerate() {
                if *step.ty != *ev.event_type || (s == 0 && !step.all) {
                    continue;
                }
                let mut n = self.node(s, ev);
                for p in &run.nodes {
                    let follows = p.step + 1 == s || (step.all && p.step == s);
                    if !follows {
                        continue;
                    }
                    let ok = match &step.filter {
                        Some(f) => eval(f, ev, &self.caps_for(&first, &p.ev, p.step, s))?.is_true(),
                        None => true,
                    };
                    if ok {
                        self.extend(&mut n, Some(p));
                    }
                }
                if n.count > 0 {
                    fresh.push(n);
                }
            }
            for n in fresh {
                if n.step == last {
                    run.trends = saturating(run.trends, n.count);
                    for ((t, a), (_, agg)) in run.totals.iter_mut().zip(&n.accs).zip(&self.aggs) {
                        merge_total(t, a, matches!(agg, Agg::Min(..)));
                    }
                }
                run.nodes.push(n);
            }
            if run.nodes.len() > MAX_NODES_PER_RUN {
                overflow.push(ri);
            }
        }
        for ri in overflow.into_iter().rev() {
            st.runs.remove(ri);
            *dropped += 1;
            tracing::warn!(stream = %self.result_type, cap = MAX_NODES_PER_RUN, "trend aggregation run took too many events; dropped");
        }
        // A new run.
        let step0 = &self.steps[0];
        if *step0.ty == *ev.event_type {
            let nothing = self.caps_for(&Value::Null, &Value::Null, usize::MAX, usize::MAX);
            let ok = match &step0.filter {
                Some(f) => eval(f, ev, &nothing)?.is_true(),
                None => true,
            };
            if ok {
                let mut n = self.node(0, ev);
                self.extend(&mut n, None);
                let mut run = TRun {
                    id: st.next_id,
                    start: ev.timestamp_ns,
                    key,
                    nodes: Vec::new(),
                    trends: 0,
                    totals: vec![Acc::zero(); self.aggs.len()],
                };
                st.next_id += 1;
                if last == 0 {
                    run.trends = 1;
                    run.totals.clone_from(&n.accs);
                }
                run.nodes.push(n);
                if st.runs.len() >= self.max_runs {
                    st.runs.remove(0);
                    *dropped += 1;
                    tracing::warn!(stream = %self.result_type, cap = self.max_runs, "trend aggregation live-run cap hit; oldest run dropped");
                }
                st.runs.push(run);
            }
        }
        Ok(out)
    }

    /// Time reached `now` (a timer tick or another event).
    pub(crate) fn on_time(&self, now: i64) -> Vec<Match> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.advance(&mut st, now)
    }

    /// End of input: the result of every live run (by deadline).
    pub(crate) fn flush(&self) -> Vec<Match> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let runs = std::mem::take(&mut st.runs);
        runs.iter().filter_map(|r| self.result(r)).collect()
    }

    fn advance(&self, st: &mut TState, ts: i64) -> Vec<Match> {
        let clock = st.clock.map_or(ts, |c| c.max(ts));
        st.clock = Some(clock);
        let due = st
            .runs
            .iter()
            .take_while(|r| r.start.saturating_add(self.within) < clock)
            .count();
        st.runs
            .drain(..due)
            .collect::<Vec<_>>()
            .iter()
            .filter_map(|r| self.result(r))
            .collect()
    }

    /// The result event of a run (`None` without trends).
    fn result(&self, r: &TRun) -> Option<Match> {
        if r.trends == 0 {
            return None;
        }
        let mut fields: Fields = Vec::new();
        if let (Some(k), Some(first)) = (&self.key_name, r.nodes.first()) {
            if let Value::Map(m) = &first.ev {
                if let Some((_, v)) = m.iter().find(|(n, _)| n == k) {
                    fields.push((k.clone(), v.clone()));
                }
            }
        }
        for ((name, agg), acc) in self.aggs.iter().zip(&r.totals) {
            let v = match agg {
                Agg::Trends => Value::Int(r.trends),
                Agg::Events(_) => Value::Int(acc.n),
                Agg::Sum(..) if acc.int && acc.sum.abs() < 9.0e15 => Value::Int(acc.sum as i64),
                Agg::Sum(..) => Value::Float(acc.sum),
                Agg::Avg(..) if acc.n > 0 => Value::Float(acc.sum / acc.n as f64),
                Agg::Avg(..) => Value::Null,
                Agg::Min(..) | Agg::Max(..) => match acc.ext {
                    Some(x) if acc.int => Value::Int(x as i64),
                    Some(x) => Value::Float(x),
                    None => Value::Null,
                },
            };
            fields.push((name.clone(), v));
        }
        let deadline = r.start.saturating_add(self.within);
        let caps: Fields = self
            .caps
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let v = if i == 0 {
                    r.nodes.first().map(|n| n.ev.clone()).unwrap_or(Value::Null)
                } else {
                    Value::Null
                };
                (n.clone(), v)
            })
            .collect();
        let caps = Event {
            event_type: self.result_type.clone(),
            timestamp_ns: deadline,
            fields: Arc::new(caps),
        };
        let out = Event {
            event_type: self.result_type.clone(),
            timestamp_ns: deadline,
            fields: Arc::new(fields),
        };
        Some((out, caps))
    }
}

/// Adds a complete trend's node accumulator to the run's totals.
fn merge_total(t: &mut Acc, a: &Acc, min: bool) {
    t.n = saturating(t.n, a.n);
    t.sum += a.sum;
    t.int &= a.int;
    t.ext = match (t.ext, a.ext) {
        (Some(x), Some(y)) => Some(if min { x.min(y) } else { x.max(y) }),
        (x, y) => x.or(y),
    };
}

// ----- checkpoint -------------------------------------------------------------------------------

fn ck_err(msg: &str) -> RuntimeError {
    RuntimeError::Checkpoint(format!("trend aggregation state: {msg}"))
}

fn acc_json(a: &Acc) -> Json {
    json!([a.n, a.sum.to_bits(), a.int, a.ext.map(f64::to_bits)])
}

fn acc_from(j: &Json) -> Result<Acc, RuntimeError> {
    let bad = || ck_err("accumulator");
    Ok(Acc {
        n: j.get(0).and_then(Json::as_i64).ok_or_else(bad)?,
        sum: f64::from_bits(j.get(1).and_then(Json::as_u64).ok_or_else(bad)?),
        int: j.get(2).and_then(Json::as_bool).ok_or_else(bad)?,
        ext: match j.get(3) {
            Some(Json::Null) => None,
            Some(v) => Some(f64::from_bits(v.as_u64().ok_or_else(bad)?)),
            None => return Err(bad()),
        },
    })
}

fn accs_from(j: Option<&Json>, n: usize) -> Result<Vec<Acc>, RuntimeError> {
    let items = j
        .and_then(Json::as_array)
        .filter(|a| a.len() == n)
        .ok_or_else(|| ck_err("accumulators"))?;
    items.iter().map(acc_from).collect()
}

/// Decoded state (installed only once everything parsed).
pub(crate) struct TrendRestored(TState);

impl TrendOp {
    /// The clock and the live runs with their nodes.
    pub(crate) fn snapshot(&self) -> Json {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let runs: Vec<Json> = st
            .runs
            .iter()
            .map(|r| {
                let nodes: Vec<Json> = r
                    .nodes
                    .iter()
                    .map(|n| {
                        let fields = match &n.ev {
                            Value::Map(m) => m.as_ref().clone(),
                            _ => Vec::new(),
                        };
                        let ev = Event {
                            event_type: self.result_type.clone(),
                            timestamp_ns: 0,
                            fields: Arc::new(fields),
                        };
                        json!({
                            "st": n.step,
                            "ev": event_json(&ev),
                            "c": n.count,
                            "a": n.accs.iter().map(acc_json).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({
                    "id": r.id,
                    "s": r.start,
                    "k": serde_json::to_value(&r.key).unwrap_or(Json::Null),
                    "t": r.trends,
                    "tot": r.totals.iter().map(acc_json).collect::<Vec<_>>(),
                    "n": nodes,
                })
            })
            .collect();
        json!({"clock": st.clock, "next": st.next_id, "runs": runs})
    }

    /// Parses a [`TrendOp::snapshot`] (`None`: empty state).
    pub(crate) fn parse_snapshot(&self, j: Option<&Json>) -> Result<TrendRestored, RuntimeError> {
        let mut st = TState::default();
        let Some(j) = j else {
            return Ok(TrendRestored(st));
        };
        st.clock = opt_i64_field(j, "clock").map_err(|()| ck_err("clock"))?;
        st.next_id = u64_field(j, "next").ok_or_else(|| ck_err("next id"))?;
        let na = self.aggs.len();
        for r in j
            .get("runs")
            .and_then(Json::as_array)
            .ok_or_else(|| ck_err("runs"))?
        {
            let mut nodes = Vec::new();
            for n in r
                .get("n")
                .and_then(Json::as_array)
                .ok_or_else(|| ck_err("nodes"))?
            {
                let step = n
                    .get("st")
                    .and_then(Json::as_u64)
                    .and_then(|s| usize::try_from(s).ok())
                    .filter(|s| *s < self.steps.len())
                    .ok_or_else(|| ck_err("node step"))?;
                let ev = event_from_json(n.get("ev").ok_or_else(|| ck_err("node event"))?)?;
                nodes.push(Node {
                    step,
                    ev: Value::Map(ev.fields.clone()),
                    count: n
                        .get("c")
                        .and_then(Json::as_i64)
                        .ok_or_else(|| ck_err("node count"))?,
                    accs: accs_from(n.get("a"), na)?,
                });
            }
            if nodes.is_empty() {
                return Err(ck_err("run without nodes"));
            }
            st.runs.push(TRun {
                id: r
                    .get("id")
                    .and_then(Json::as_u64)
                    .ok_or_else(|| ck_err("run id"))?,
                start: r
                    .get("s")
                    .and_then(Json::as_i64)
                    .ok_or_else(|| ck_err("run start"))?,
                key: r
                    .get("k")
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .ok_or_else(|| ck_err("run key"))?,
                nodes,
                trends: r
                    .get("t")
                    .and_then(Json::as_i64)
                    .ok_or_else(|| ck_err("run trends"))?,
                totals: accs_from(r.get("tot"), na)?,
            });
        }
        Ok(TrendRestored(st))
    }

    /// Installs state from [`TrendOp::parse_snapshot`].
    pub(crate) fn install(&self, r: TrendRestored) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = r.0;
    }
}
