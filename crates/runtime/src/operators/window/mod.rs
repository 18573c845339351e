//! Windows, aggregates and partitioning (VPL.md §6).
//!
//! One [`WindowOp`] per stream holds everything stateful about `.window`, `.aggregate` and
//! `.partition_by`: per partition key, the open windows and their buffered events. Windows are
//! evicted once they fired and their allowed lateness passed, so memory is bounded by the events
//! of open (and recently fired) windows.
//!
//! * Time windows (tumbling, hopping) are aligned to the Unix epoch and fire, in order of their
//!   end then of partition creation, when the watermark reaches their end. The watermark is the
//!   largest event time the stream has seen, lowered by `.watermark(out_of_order: d)` (§6.4).
//! * Session windows close when the watermark is more than the gap past their last event.
//! * Count windows fire on the event that completes them; incomplete ones never fire.
//! * Lateness (`time.rs`): an event whose window fired less than `.allowed_lateness` ago joins it
//!   and the window fires again with its updated contents; an event too late for every window it
//!   belongs to is dropped and counted.
//! * [`WindowOp::flush`] (end of input) fires every open time and session window.
//!
//! Aggregates (`acc.rs`): every aggregate call of an `.aggregate` field becomes a synthetic field
//! of the window's result, and the field's expression (rewritten to read those synthetic fields)
//! is evaluated on a synthetic event that also carries the partition key. Time windows whose
//! results are only aggregates fold each event into per-aggregate accumulators as it arrives
//! (the event is not kept); other windows keep their events and fold them when firing.

mod acc;
mod snapshot;
mod time;

pub(crate) use time::Lateness;

use crate::compile::{Compiler, ExprFn};
use crate::error::RuntimeError;
use crate::event::fields_seen;
use crate::event::Event;
use crate::key::{KeyMap, KeyRef, KeyRepr};
use crate::value::{Fields, Value};
use acc::Contents;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use varpulis_vpl::ast::{self, ExprKind, OpKind};
use varpulis_vpl::builtins::is_aggregate_call;
use varpulis_vpl::Diagnostic;

/// Most hopping windows one event may belong to (`size / slide`).
const MAX_OVERLAP: i64 = 10_000;

/// Evaluates a compiled expression on an event (provided by the engine).
pub(crate) type Eval<'a> = dyn FnMut(&ExprFn, &Event) -> Result<Value, RuntimeError> + 'a;

/// The shape of a window (VPL.md §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// No `.window`: each event is its own window.
    Each,
    /// Time windows `[k·slide, k·slide + size)` (tumbling when `slide == size`), in ns.
    Time { size: i64, slide: i64 },
    /// Count windows: the last `size` events every `slide` events once `size` are buffered.
    Count { size: usize, slide: usize },
    /// Session windows closed by a gap (ns).
    Session { gap: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggKind {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Stddev,
    Variance,
    Min,
    Max,
    First,
    Last,
    Ema,
    /// `percentile(e, q)`, `median`, `p50`/`p95`/`p99` (the quantile is in `Agg::q`).
    Percentile,
    /// `collect(e)`: the values as an array.
    Collect,
}

struct Agg {
    kind: AggKind,
    /// `None` for `count()`.
    arg: Option<ExprFn>,
    /// The argument is a bare name of an event field: read in place through a cached position
    /// (the compiled `arg` reads the same field, `null` when absent) instead of through a
    /// closure call.
    field: Option<(Arc<str>, AtomicU32)>,
    /// `ema` period.
    period: i64,
    /// Percentile quantile in `[0, 1]`.
    q: f64,
}

/// An open or fired session: its first and last event times and its events.
#[derive(Debug, Clone, Default)]
struct Session {
    first: i64,
    last: i64,
    events: Vec<Event>,
}

/// State of one partition.
#[derive(Default)]
struct Part {
    key: Value,
    /// Open time windows by start.
    buckets: BTreeMap<i64, Contents>,
    /// Fired time windows kept for their allowed lateness, by start.
    fired: BTreeMap<i64, Contents>,
    /// Count windows.
    buf: VecDeque<Event>,
    /// Events seen (count windows).
    seen: u64,
    /// Open sessions, by first event time.
    sessions: Vec<Session>,
    /// Fired sessions kept for their allowed lateness.
    closed: Vec<Session>,
}

struct WinState {
    /// Largest event time seen (`None` before the first event).
    max_ts: Option<i64>,
    parts: Vec<Part>,
    index: KeyMap<usize>,
    /// Earliest watermark at which some window may fire or be evicted (`i64::MAX`: none).
    next_due: i64,
    /// The current event's aggregate arguments (accumulating time windows; reused buffer).
    args: Vec<Value>,
    /// The field names the in-place reads found last (see [`fields_seen`]): slot 0 for the
    /// partition key field, slot `1 + i` for aggregate `i`'s bare field argument.
    seen: Vec<Option<Arc<str>>>,
}

impl Default for WinState {
    fn default() -> Self {
        WinState {
            max_ts: None,
            parts: Vec::new(),
            index: KeyMap::default(),
            next_due: i64::MAX,
            args: Vec::new(),
            seen: Vec::new(),
        }
    }
}

/// A fired batch: its contents, its partition and its result time.
struct Batch {
    part: usize,
    ts: i64,
    contents: Contents,
}

/// The stateful operator of a stream with `.window`, `.aggregate` and/or `.partition_by`.
pub(crate) struct WindowOp {
    spec: Spec,
    /// `.watermark` / `.allowed_lateness` of the stream.
    lateness: Lateness,
    key: Option<(Arc<str>, ExprFn)>,
    /// `.partition_by(f)` naming a field of the event (not a top-level binding): the key is
    /// read in place through a cached position instead of evaluated into a copy.
    key_field: Option<(Arc<str>, AtomicU32)>,
    aggs: Vec<Agg>,
    agg_names: Vec<Arc<str>>,
    /// `None`: no `.aggregate`, fired events continue singly.
    outputs: Option<Vec<(Arc<str>, ExprFn)>>,
    /// `.pattern(name: events => cond)`: the lambda's parameter and body; a fired batch is kept
    /// only when the body is `true` with the parameter bound to the batch's events (as maps).
    batch_filter: Option<(Arc<str>, ExprFn)>,
    /// Time windows fold events into accumulators as they arrive (results are only aggregates).
    accumulate: bool,
    /// Some aggregate is a `sum` (whose fold can fail: windows are checked before any changes).
    has_sum: bool,
    /// Accumulating windows whose aggregates are all `count()` or read a bare event field, none
    /// a `sum`: each event is folded in straight from its fields (no argument list, nothing can
    /// fail half way).
    direct: bool,
    result_type: Arc<str>,
    state: Mutex<WinState>,
}

/// Whether a bare `name` in the stream's window operators reads an event field (not the
/// stream's alias, a top-level binding, a pattern capture or a lambda parameter).
fn plain_field(c: &Compiler, name: &str) -> bool {
    let binding = c.alias.as_deref() == Some(name)
        || c.globals.contains_key(name)
        || !c.captures.is_empty()
        || !c.field_params.is_empty()
        || c.match_names
        || c.is_local(name);
    !binding
}

/// Where the stream's [`WindowOp`] sits: at `.aggregate` if any, else at `.window`.
pub(crate) fn is_site(ops: &[ast::StreamOp], i: usize) -> bool {
    let at = |k: OpKind| ops.iter().position(|o| o.kind() == k);
    at(OpKind::Aggregate)
        .or(at(OpKind::Window))
        .or(at(OpKind::WindowPattern))
        == Some(i)
}

fn duration_or_count(e: &ast::Expr) -> Option<Result<i64, usize>> {
    match &e.kind {
        ExprKind::Duration(d) => i64::try_from(*d).ok().filter(|d| *d > 0).map(Ok),
        ExprKind::Int(n) => usize::try_from(*n).ok().filter(|n| *n > 0).map(Err),
        _ => None,
    }
}

fn spec_of(op: Option<&ast::StreamOp>) -> Option<Spec> {
    let Some(op) = op else {
        return Some(Spec::Each);
    };
    let named = |n: &str| {
        op.args
            .iter()
            .find(|a| a.name.as_ref().is_some_and(|x| x.name == n))
            .map(|a| &a.value)
    };
    if let Some(g) = named("session") {
        return match duration_or_count(g)? {
            Ok(gap) => Some(Spec::Session { gap }),
            Err(_) => None,
        };
    }
    let size = duration_or_count(op.first_positional()?)?;
    let slide = match named("sliding") {
        Some(e) => Some(duration_or_count(e)?),
        None => None,
    };
    match (size, slide) {
        (Ok(size), None) => Some(Spec::Time { size, slide: size }),
        (Ok(size), Some(Ok(slide))) => Some(Spec::Time { size, slide }),
        (Err(size), None) => Some(Spec::Count { size, slide: size }),
        (Err(size), Some(Err(slide))) => Some(Spec::Count { size, slide }),
        _ => None,
    }
}

impl WindowOp {
    /// Compiles the stream's window/aggregate/partition operators (the checker validated them).
    pub(crate) fn compile(
        c: &mut Compiler,
        ops: &[ast::StreamOp],
        stream: &Arc<str>,
        errors: &mut Vec<Diagnostic>,
    ) -> WindowOp {
        let win = ops.iter().find(|o| o.kind() == OpKind::Window);
        let spec = match spec_of(win) {
            Some(Spec::Time { size, slide }) if size / slide > MAX_OVERLAP => {
                if let Some(w) = win {
                    errors.push(Diagnostic::error(
                        format!("a window may overlap at most {MAX_OVERLAP} others (size / slide)"),
                        w.span,
                    ));
                }
                Spec::Each
            }
            Some(s) => s,
            None => {
                if let Some(w) = win {
                    errors.push(Diagnostic::error("invalid `.window` arguments", w.span));
                }
                Spec::Each
            }
        };
        let key = ops
            .iter()
            .find(|o| o.kind() == OpKind::PartitionBy)
            .and_then(|o| o.first_positional())
            .and_then(|e| match &e.kind {
                ExprKind::Name(id) => Some((c.intern(&id.name), c.expr(e))),
                _ => None,
            });
        // A bare name is an event field unless it names the stream's alias or a global.
        let key_field = key
            .as_ref()
            .and_then(|(name, _)| plain_field(c, name).then(|| (name.clone(), AtomicU32::new(0))));
        let batch_filter = ops
            .iter()
            .find(|o| o.kind() == OpKind::WindowPattern)
            .and_then(|o| o.args.first())
            .and_then(|a| match &a.value.kind {
                ExprKind::Lambda { params, body } => {
                    let param = params.first()?;
                    c.field_params.push(param.name.clone());
                    let f = c.expr(body);
                    c.field_params.clear();
                    Some((c.intern(&param.name), f))
                }
                _ => None,
            });
        let lateness = Lateness::of(ops);
        let mut op = WindowOp {
            spec,
            lateness,
            key,
            key_field,
            aggs: Vec::new(),
            agg_names: Vec::new(),
            outputs: None,
            batch_filter,
            accumulate: false,
            has_sum: false,
            direct: false,
            result_type: stream.clone(),
            state: Mutex::new(WinState::default()),
        };
        if let Some(agg) = ops.iter().find(|o| o.kind() == OpKind::Aggregate) {
            let mut outputs = Vec::new();
            for a in &agg.args {
                let Some(name) = &a.name else { continue };
                let rewritten = op.rewrite(c, &a.value);
                outputs.push((c.intern(&name.name), c.expr(&rewritten)));
            }
            op.outputs = Some(outputs);
            op.accumulate = matches!(op.spec, Spec::Time { .. }) && op.batch_filter.is_none();
            op.has_sum = op.aggs.iter().any(|a| a.kind == AggKind::Sum);
            op.direct = op.accumulate
                && !op.has_sum
                && op.aggs.iter().all(|a| a.field.is_some() || a.arg.is_none());
        }
        op
    }

    /// An empty time window.
    fn new_contents(&self) -> Contents {
        if self.accumulate {
            Contents::Accs(self.aggs.iter().map(acc::Acc::new).collect())
        } else {
            Contents::Events(Vec::new())
        }
    }

    /// Replaces aggregate calls in `e` by names of synthetic fields, compiling their arguments.
    fn rewrite(&mut self, c: &mut Compiler, e: &ast::Expr) -> ast::Expr {
        let kind = match &e.kind {
            ExprKind::Call { callee, args, .. } if is_aggregate_call(&callee.name, args.len()) => {
                let (kind, arg) = match (callee.name.as_str(), args.as_slice()) {
                    ("count", []) => (AggKind::Count, None),
                    ("count", [a]) => match &a.kind {
                        ExprKind::Call {
                            callee: inner,
                            args: inner_args,
                            ..
                        } if inner.name == "distinct" && inner_args.len() == 1 => {
                            (AggKind::CountDistinct, inner_args.first())
                        }
                        _ => (AggKind::Count, Some(a)),
                    },
                    ("count_distinct" | "distinct_count", [a]) => (AggKind::CountDistinct, Some(a)),
                    ("percentile" | "median" | "p50" | "p95" | "p99", [a, ..]) => {
                        (AggKind::Percentile, Some(a))
                    }
                    ("collect", [a]) => (AggKind::Collect, Some(a)),
                    ("sum", [a]) => (AggKind::Sum, Some(a)),
                    ("avg", [a]) => (AggKind::Avg, Some(a)),
                    ("stddev", [a]) => (AggKind::Stddev, Some(a)),
                    ("variance", [a]) => (AggKind::Variance, Some(a)),
                    ("min", [a]) => (AggKind::Min, Some(a)),
                    ("max", [a]) => (AggKind::Max, Some(a)),
                    ("first", [a]) => (AggKind::First, Some(a)),
                    ("last", [a]) => (AggKind::Last, Some(a)),
                    (_, [a, _]) => (AggKind::Ema, Some(a)),
                    _ => (AggKind::Count, None),
                };
                let period = match args.get(1).map(|a| &a.kind) {
                    Some(ExprKind::Int(n)) => *n,
                    _ => 1,
                };
                let q = match (callee.name.as_str(), args.get(1).map(|a| &a.kind)) {
                    ("p95", _) => 0.95,
                    ("p99", _) => 0.99,
                    // A fraction, or a percentage above 1 (`percentile(x, 95)`).
                    ("percentile", Some(ExprKind::Float(x))) if *x > 1.0 => (x / 100.0).min(1.0),
                    ("percentile", Some(ExprKind::Float(x))) => x.max(0.0),
                    ("percentile", Some(ExprKind::Int(k))) if *k > 1 => {
                        (*k as f64 / 100.0).min(1.0)
                    }
                    ("percentile", Some(ExprKind::Int(k))) => (*k as f64).max(0.0),
                    _ => 0.5,
                };
                let name = format!("__agg{}", self.aggs.len());
                let field = arg.and_then(|a| match &a.kind {
                    ExprKind::Name(id) if plain_field(c, &id.name) => {
                        Some((c.intern(&id.name), AtomicU32::new(0)))
                    }
                    _ => None,
                });
                self.aggs.push(Agg {
                    kind,
                    arg: arg.map(|a| c.expr(a)),
                    field,
                    period,
                    q,
                });
                self.agg_names.push(c.intern(&name));
                ExprKind::Name(ast::Ident {
                    name,
                    span: callee.span,
                })
            }
            ExprKind::Call {
                callee,
                args,
                method,
            } => ExprKind::Call {
                callee: callee.clone(),
                args: args.iter().map(|a| self.rewrite(c, a)).collect(),
                method: *method,
            },
            ExprKind::Binary { op, lhs, rhs } => ExprKind::Binary {
                op: *op,
                lhs: Box::new(self.rewrite(c, lhs)),
                rhs: Box::new(self.rewrite(c, rhs)),
            },
            ExprKind::Unary { op, operand } => ExprKind::Unary {
                op: *op,
                operand: Box::new(self.rewrite(c, operand)),
            },
            other => other.clone(),
        };
        ast::Expr { kind, span: e.span }
    }

    /// The partition of `key`, created on its first event. Ints, strings and `null` are looked
    /// up borrowed from the event (no key copy); other values through their owned form.
    fn part_index(&self, st: &mut WinState, key: &Value) -> usize {
        let found = match KeyRef::of(key) {
            Some(k) => st.index.get(&k),
            None => st.index.get(&KeyRepr::of(key)),
        };
        if let Some(i) = found {
            return *i;
        }
        let i = st.parts.len();
        st.parts.push(Part {
            key: key.clone(),
            ..Part::default()
        });
        st.index.insert(KeyRepr::of(key), i);
        i
    }

    /// Whether the operator handles late and out-of-order events itself (time and session
    /// windows); otherwise a stream with a `.watermark` orders events in front of it.
    pub(crate) fn handles_lateness(&self) -> bool {
        matches!(self.spec, Spec::Time { .. } | Spec::Session { .. })
    }

    /// Whether its results depend on the order of events (count windows).
    pub(crate) fn order_sensitive(&self) -> bool {
        matches!(self.spec, Spec::Count { .. })
    }

    /// Feeds one event; returns the events to pass downstream (aggregate results or the events
    /// of fired windows), in firing order (`None`: no window fired), and counts in `late` an
    /// event too late for every window it belongs to.
    pub(crate) fn on_event(
        &self,
        ev: &Event,
        eval: &mut Eval<'_>,
        late: &mut u64,
    ) -> Result<Option<Vec<Event>>, RuntimeError> {
        let evaluated = match (&self.key_field, &self.key) {
            (None, Some((_, f))) => Some(eval(f, ev)?),
            _ => None,
        };
        let batches = {
            let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let st = &mut *guard;
            if st.seen.len() != self.aggs.len() + 1 {
                st.seen = vec![None; self.aggs.len() + 1];
            }
            let key = match (&self.key_field, &evaluated) {
                (Some((name, slot)), _) => st
                    .seen
                    .first_mut()
                    .and_then(|seen| fields_seen(&ev.fields, name, slot, seen))
                    .unwrap_or(&Value::Null),
                (None, Some(v)) => v,
                (None, None) => &Value::Null,
            };
            self.add_event(st, ev, key, eval, late)?
        };
        if batches.is_empty() {
            return Ok(None);
        }
        self.results(batches, eval).map(Some)
    }

    /// Adds `ev` (partition `key`) to its windows; returns the batches that fire. An error
    /// (an aggregate argument failing, a `sum` overflowing) leaves every window unchanged.
    fn add_event(
        &self,
        st: &mut WinState,
        ev: &Event,
        key: &Value,
        eval: &mut Eval<'_>,
        late: &mut u64,
    ) -> Result<Vec<Batch>, RuntimeError> {
        if self.accumulate && !self.direct {
            acc::eval_args(&self.aggs, ev, eval, &mut st.args)?;
        }
        let pi = self.part_index(st, key);
        let ts = ev.timestamp_ns;
        let mut batches = Vec::new();
        if let Spec::Time { size, slide } = self.spec {
            let old_wm = st.watermark(self.lateness);
            let w = time::TimeWindows { size, slide };
            let joined = self.time_event(st, pi, ev, w, old_wm, &mut batches)?;
            st.advance(ts, self.lateness);
            if !joined {
                *late += 1;
            }
            let wm = st.watermark(self.lateness);
            if wm.is_none_or(|w| w >= st.next_due) {
                self.fire_time(st, size, wm, &mut batches);
            }
            return Ok(batches);
        }
        let old_wm = st.advance(ts, self.lateness);
        match self.spec {
            Spec::Each => batches.push(Batch {
                part: pi,
                ts,
                contents: Contents::Events(vec![ev.clone()]),
            }),
            Spec::Time { .. } => {}
            Spec::Session { gap } => {
                if !self.session_event(st, pi, ev, gap, old_wm, &mut batches) {
                    *late += 1;
                }
                self.fire_sessions(st, gap, st.watermark(self.lateness), &mut batches);
            }
            Spec::Count { size, slide } => {
                if let Some(p) = st.parts.get_mut(pi) {
                    p.buf.push_back(ev.clone());
                    if p.buf.len() > size {
                        p.buf.pop_front();
                    }
                    p.seen += 1;
                    let over = p.seen.saturating_sub(size as u64);
                    if p.buf.len() == size && over % slide as u64 == 0 {
                        let events: Vec<Event> = if slide == size {
                            p.buf.drain(..).collect()
                        } else {
                            p.buf.iter().cloned().collect()
                        };
                        if slide == size {
                            p.seen = 0;
                        }
                        batches.push(Batch {
                            part: pi,
                            ts,
                            contents: Contents::Events(events),
                        });
                    }
                }
            }
        }
        Ok(batches)
    }

    /// Time moved on to `now` without an event of this stream (a timer tick): fires the windows
    /// the raised watermark closes.
    pub(crate) fn on_time(
        &self,
        now: i64,
        eval: &mut Eval<'_>,
    ) -> Result<Vec<Event>, RuntimeError> {
        let batches = {
            let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let st = &mut *guard;
            if st.max_ts.is_some_and(|m| m >= now) {
                return Ok(Vec::new());
            }
            st.advance(now, self.lateness);
            let mut batches = Vec::new();
            let wm = st.watermark(self.lateness);
            match self.spec {
                Spec::Time { size, .. } => self.fire_time(st, size, wm, &mut batches),
                Spec::Session { gap } => self.fire_sessions(st, gap, wm, &mut batches),
                Spec::Each | Spec::Count { .. } => {}
            }
            batches
        };
        self.results(batches, eval)
    }

    /// End of input: fires every open time and session window.
    pub(crate) fn flush(&self, eval: &mut Eval<'_>) -> Result<Vec<Event>, RuntimeError> {
        let batches = {
            let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let st = &mut *guard;
            let mut batches = Vec::new();
            match self.spec {
                Spec::Time { size, .. } => self.fire_time(st, size, None, &mut batches),
                Spec::Session { gap } => self.fire_sessions(st, gap, None, &mut batches),
                Spec::Each | Spec::Count { .. } => {}
            }
            batches
        };
        self.results(batches, eval)
    }

    fn part_key(&self, part: usize) -> Value {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .parts
            .get(part)
            .map(|p| p.key.clone())
            .unwrap_or_default()
    }

    /// Turns fired batches into the events passed downstream.
    fn results(
        &self,
        mut batches: Vec<Batch>,
        eval: &mut Eval<'_>,
    ) -> Result<Vec<Event>, RuntimeError> {
        if let Some((param, cond)) = &self.batch_filter {
            let mut kept = Vec::with_capacity(batches.len());
            for b in batches {
                let events: Vec<Value> = b
                    .contents
                    .events()
                    .iter()
                    .map(|e| Value::Map(e.fields.clone()))
                    .collect();
                let synth = Event {
                    event_type: self.result_type.clone(),
                    timestamp_ns: b.ts,
                    fields: Arc::new(vec![(param.clone(), Value::Array(Arc::new(events)))]),
                };
                if eval(cond, &synth)?.is_true() {
                    kept.push(b);
                }
            }
            batches = kept;
        }
        let Some(outputs) = &self.outputs else {
            return Ok(batches
                .into_iter()
                .flat_map(|b| b.contents.into_events())
                .collect());
        };
        let mut res = Vec::with_capacity(batches.len());
        for b in batches {
            let key = self
                .key
                .as_ref()
                .map(|(name, _)| (name.clone(), self.part_key(b.part)));
            let mut synth: Fields = Vec::with_capacity(self.aggs.len() + 1);
            if let Some(k) = &key {
                synth.push(k.clone());
            }
            for (i, (agg, name)) in self.aggs.iter().zip(&self.agg_names).enumerate() {
                synth.push((name.clone(), b.contents.aggregate(i, agg, eval)?));
            }
            let synth = Event {
                event_type: self.result_type.clone(),
                timestamp_ns: b.ts,
                fields: Arc::new(synth),
            };
            let mut fields: Fields = Vec::with_capacity(outputs.len() + 1);
            if let Some(k) = key {
                fields.push(k);
            }
            for (name, f) in outputs {
                let v = eval(f, &synth)?;
                match fields.iter_mut().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v,
                    None => fields.push((name.clone(), v)),
                }
            }
            res.push(Event {
                event_type: self.result_type.clone(),
                timestamp_ns: b.ts,
                fields: Arc::new(fields),
            });
        }
        Ok(res)
    }
}
