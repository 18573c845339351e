//! Aggregate accumulators (VPL.md §6.2) and what a time window holds.
//!
//! Every aggregate is a fold over the non-null values of its argument, in arrival order: an
//! [`Acc`] is that fold's state. A window whose results are only `.aggregate` fields (no
//! `.pattern` filter, no raw events passed on) keeps one accumulator per aggregate instead of
//! its events ([`Contents::Accs`]): each event's arguments are evaluated when it arrives and
//! folded in, so memory per window is constant (except `count(distinct(…))` and `stddev` /
//! `variance`, whose state grows with the distinct values / the values) and the event is not
//! retained. Other windows keep their events ([`Contents::Events`]) and fold them when firing,
//! with the same [`Acc`] code, so both forms give identical results.

use super::{Agg, AggKind, Eval};
use crate::codec::{decode_value, encode_value, event_json, events_from_json};
use crate::error::RuntimeError;
use crate::event::{fields_seen, Event};
use crate::key::KeyRepr;
use crate::value::{ArithOp, Value};
use serde_json::{json, Value as Json};
use std::collections::HashSet;
use std::sync::Arc;

/// The state of one aggregate's fold.
#[derive(Debug, Clone)]
pub(super) enum Acc {
    /// `count()` / `count(e)`: events / non-null values.
    Count(i64),
    /// `count(distinct(e))` / `count_distinct(e)`.
    Distinct(HashSet<KeyRepr>),
    /// `sum`: ints add as ints (an overflow is an error), floats as floats.
    Sum(Value),
    /// `avg`: how many numbers and their sum.
    Avg(u64, f64),
    /// `stddev` / `variance` / percentiles: the numbers (two-pass sample variance, or sorted
    /// and interpolated, when firing).
    Spread(Vec<f64>),
    /// `collect`: the values.
    Collect(Vec<Value>),
    /// `min` / `max` (by VPL ordering), `first`, `last`.
    Pick(Option<Value>),
    /// `ema(e, period)`.
    Ema(Option<f64>),
}

impl Acc {
    /// The empty fold of `agg`.
    pub(super) fn new(agg: &Agg) -> Acc {
        match agg.kind {
            AggKind::Count => Acc::Count(0),
            AggKind::CountDistinct => Acc::Distinct(HashSet::new()),
            AggKind::Sum => Acc::Sum(Value::Int(0)),
            AggKind::Avg => Acc::Avg(0, 0.0),
            AggKind::Stddev | AggKind::Variance | AggKind::Percentile => Acc::Spread(Vec::new()),
            AggKind::Collect => Acc::Collect(Vec::new()),
            AggKind::Min | AggKind::Max | AggKind::First | AggKind::Last => Acc::Pick(None),
            AggKind::Ema => Acc::Ema(None),
        }
    }

    /// Fails as [`Acc::add`] would, without changing anything (only a `sum` can fail).
    pub(super) fn check(&self, v: &Value) -> Result<(), RuntimeError> {
        if let Acc::Sum(acc) = self {
            if matches!(v, Value::Int(_) | Value::Float(_)) {
                acc.arith(ArithOp::Add, v)?;
            }
        }
        Ok(())
    }

    /// Folds in one non-null argument value given by reference (numbers and counts without a
    /// clone of the value).
    #[inline]
    pub(super) fn add_ref(&mut self, agg: &Agg, v: &Value) -> Result<(), RuntimeError> {
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Avg(n, s) => {
                if let Some(x) = v.as_f64() {
                    *n += 1;
                    *s += x;
                }
            }
            Acc::Spread(xs) => xs.extend(v.as_f64()),
            _ => return self.add(agg, v.clone()),
        }
        Ok(())
    }

    /// Folds in one non-null argument value.
    pub(super) fn add(&mut self, agg: &Agg, v: Value) -> Result<(), RuntimeError> {
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Distinct(set) => {
                set.insert(KeyRepr::of(&v));
            }
            Acc::Sum(acc) => {
                if matches!(v, Value::Int(_) | Value::Float(_)) {
                    *acc = acc.arith(ArithOp::Add, &v)?;
                }
            }
            Acc::Avg(n, s) => {
                if let Some(x) = v.as_f64() {
                    *n += 1;
                    *s += x;
                }
            }
            Acc::Spread(xs) => xs.extend(v.as_f64()),
            Acc::Collect(vs) => vs.push(v),
            Acc::Pick(best) => {
                let replace = match (agg.kind, &*best) {
                    (_, None) | (AggKind::Last, _) => true,
                    (AggKind::Min, Some(b)) => v.vpl_cmp(b) == Some(std::cmp::Ordering::Less),
                    (AggKind::Max, Some(b)) => v.vpl_cmp(b) == Some(std::cmp::Ordering::Greater),
                    _ => false,
                };
                if replace {
                    *best = Some(v);
                }
            }
            Acc::Ema(ema) => {
                if let Some(x) = v.as_f64() {
                    let alpha = 2.0 / (agg.period as f64 + 1.0);
                    *ema = Some(match *ema {
                        None => x,
                        Some(e) => alpha * x + (1.0 - alpha) * e,
                    });
                }
            }
        }
        Ok(())
    }

    /// The aggregate's value (`null` over no values, except counts and sums).
    pub(super) fn value(&self, agg: &Agg) -> Value {
        match self {
            Acc::Count(n) => Value::Int(*n),
            Acc::Distinct(set) => Value::Int(set.len() as i64),
            Acc::Sum(v) => v.clone(),
            Acc::Avg(0, _) => Value::Null,
            Acc::Avg(n, s) => Value::Float(s / *n as f64),
            Acc::Spread(xs) if agg.kind == AggKind::Percentile => percentile(xs, agg.q),
            Acc::Collect(vs) => Value::Array(std::sync::Arc::new(vs.clone())),
            Acc::Spread(xs) => match crate::builtins::sample_variance(xs) {
                None => Value::Null,
                Some(var) if agg.kind == AggKind::Variance => Value::Float(var),
                Some(var) => Value::Float(var.sqrt()),
            },
            Acc::Pick(v) => v.clone().unwrap_or_default(),
            Acc::Ema(e) => e.map(Value::Float).unwrap_or_default(),
        }
    }

    fn to_json(&self) -> Json {
        let bits = |x: &f64| Json::from(x.to_bits());
        match self {
            Acc::Count(n) => json!(n),
            Acc::Distinct(set) => {
                let mut keys: Vec<Json> = set
                    .iter()
                    .filter_map(|k| serde_json::to_value(k).ok())
                    .collect();
                keys.sort_by_cached_key(|k| k.to_string());
                Json::Array(keys)
            }
            Acc::Sum(v) | Acc::Pick(Some(v)) => encode_value(v),
            Acc::Pick(None) | Acc::Ema(None) => Json::Null,
            Acc::Avg(n, s) => json!([n, bits(s)]),
            Acc::Spread(xs) => Json::Array(xs.iter().map(bits).collect()),
            Acc::Collect(vs) => Json::Array(vs.iter().map(encode_value).collect()),
            Acc::Ema(Some(e)) => bits(e),
        }
    }

    fn from_json(agg: &Agg, j: &Json) -> Result<Acc, RuntimeError> {
        let bad = || RuntimeError::Checkpoint(format!("window state: accumulator {j}"));
        let float = |j: &Json| j.as_u64().map(f64::from_bits).ok_or_else(bad);
        Ok(match Acc::new(agg) {
            Acc::Count(_) => Acc::Count(j.as_i64().ok_or_else(bad)?),
            Acc::Distinct(_) => {
                let mut set = HashSet::new();
                for k in j.as_array().ok_or_else(bad)? {
                    set.insert(serde_json::from_value(k.clone()).map_err(|_| bad())?);
                }
                Acc::Distinct(set)
            }
            Acc::Sum(_) => Acc::Sum(decode_value(j)?),
            Acc::Avg(..) => {
                let a = j.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
                let n = a.first().and_then(Json::as_u64).ok_or_else(bad)?;
                Acc::Avg(n, float(a.get(1).ok_or_else(bad)?)?)
            }
            Acc::Spread(_) => Acc::Spread(
                j.as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(float)
                    .collect::<Result<_, _>>()?,
            ),
            Acc::Collect(_) => Acc::Collect(
                j.as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(decode_value)
                    .collect::<Result<_, _>>()?,
            ),
            Acc::Pick(_) if j.is_null() => Acc::Pick(None),
            Acc::Pick(_) => Acc::Pick(Some(decode_value(j)?)),
            Acc::Ema(_) if j.is_null() => Acc::Ema(None),
            Acc::Ema(_) => Acc::Ema(Some(float(j)?)),
        })
    }
}

/// The `q` quantile of `xs` by linear interpolation between the sorted values (`null` if empty;
/// NaNs sort last).
fn percentile(xs: &[f64], q: f64) -> Value {
    if xs.is_empty() {
        return Value::Null;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    match (sorted.get(lo), sorted.get(hi)) {
        (Some(a), Some(b)) => Value::Float(a + (b - a) * (pos - lo as f64)),
        _ => Value::Null,
    }
}

/// The value `agg` folds for event `e` (`count()` counts every event).
#[inline]
fn arg_of(agg: &Agg, e: &Event, eval: &mut Eval<'_>) -> Result<Value, RuntimeError> {
    if let Some((name, slot)) = &agg.field {
        return Ok(e.field_cached(name, slot).cloned().unwrap_or_default());
    }
    match &agg.arg {
        Some(f) => eval(f, e),
        None => Ok(Value::Bool(true)),
    }
}

/// Evaluates every aggregate's argument on `e` into `out` (cleared first).
pub(super) fn eval_args(
    aggs: &[Agg],
    e: &Event,
    eval: &mut Eval<'_>,
    out: &mut Vec<Value>,
) -> Result<(), RuntimeError> {
    out.clear();
    for agg in aggs {
        out.push(arg_of(agg, e, eval)?);
    }
    Ok(())
}

/// Computes one aggregate over a batch of events; `null` arguments are skipped.
pub(super) fn compute(
    agg: &Agg,
    events: &[Event],
    eval: &mut Eval<'_>,
) -> Result<Value, RuntimeError> {
    if agg.arg.is_none() {
        return Ok(Value::Int(events.len() as i64));
    }
    let mut acc = Acc::new(agg);
    for e in events {
        let v = arg_of(agg, e, eval)?;
        if !v.is_null() {
            acc.add(agg, v)?;
        }
    }
    Ok(acc.value(agg))
}

/// What an open or fired time window holds.
#[derive(Debug, Clone)]
pub(super) enum Contents {
    /// Its events, in arrival order.
    Events(Vec<Event>),
    /// One accumulator per aggregate of the stream.
    Accs(Vec<Acc>),
}

impl Contents {
    /// Fails as [`Contents::add`] would with the same argument values, changing nothing.
    pub(super) fn check(&self, args: &[Value]) -> Result<(), RuntimeError> {
        if let Contents::Accs(accs) = self {
            for (acc, v) in accs.iter().zip(args) {
                acc.check(v)?;
            }
        }
        Ok(())
    }

    /// Adds an event, whose aggregate arguments are `args` (used by accumulators only), or,
    /// when `direct`, read from the event (every aggregate is `count()` or reads a field, found
    /// through `seen`, one slot per aggregate: see [`fields_seen`]).
    #[inline]
    pub(super) fn add(
        &mut self,
        aggs: &[Agg],
        ev: &Event,
        args: &[Value],
        direct: bool,
        seen: &mut [Option<Arc<str>>],
    ) -> Result<(), RuntimeError> {
        match self {
            Contents::Events(evs) => evs.push(ev.clone()),
            Contents::Accs(accs) if direct => {
                let mut seen = seen.iter_mut();
                for (acc, agg) in accs.iter_mut().zip(aggs) {
                    let last = seen.next();
                    match &agg.field {
                        Some((name, slot)) => {
                            let found = match last {
                                Some(last) => fields_seen(&ev.fields, name, slot, last),
                                None => ev.field_cached(name, slot),
                            };
                            if let Some(v) = found {
                                if !v.is_null() {
                                    acc.add_ref(agg, v)?;
                                }
                            }
                        }
                        // `count()`: every event.
                        None => acc.add_ref(agg, &Value::Bool(true))?,
                    }
                }
            }
            Contents::Accs(accs) => {
                for ((acc, agg), v) in accs.iter_mut().zip(aggs).zip(args) {
                    if !v.is_null() {
                        acc.add_ref(agg, v)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The batch's events (none for accumulators).
    pub(super) fn events(&self) -> &[Event] {
        match self {
            Contents::Events(evs) => evs,
            Contents::Accs(_) => &[],
        }
    }

    /// Moves the events out (none for accumulators).
    pub(super) fn into_events(self) -> Vec<Event> {
        match self {
            Contents::Events(evs) => evs,
            Contents::Accs(_) => Vec::new(),
        }
    }

    /// The value of aggregate `i`.
    pub(super) fn aggregate(
        &self,
        i: usize,
        agg: &Agg,
        eval: &mut Eval<'_>,
    ) -> Result<Value, RuntimeError> {
        match self {
            Contents::Events(evs) => compute(agg, evs, eval),
            Contents::Accs(accs) => Ok(accs.get(i).map(|a| a.value(agg)).unwrap_or_default()),
        }
    }

    /// Checkpoint form: the events, or `null` and the accumulators (`[events]` / `[null, accs]`
    /// after the window start).
    pub(super) fn to_json(&self, start: i64) -> Json {
        match self {
            Contents::Events(evs) => json!([start, evs.iter().map(event_json).collect::<Vec<_>>()]),
            Contents::Accs(accs) => json!([
                start,
                Json::Null,
                accs.iter().map(Acc::to_json).collect::<Vec<_>>()
            ]),
        }
    }

    /// Inverse of [`Contents::to_json`] (`entry` is the whole `[start, …]` array).
    pub(super) fn from_json(aggs: &[Agg], entry: &Json) -> Result<Contents, RuntimeError> {
        let Some(accs) = entry.get(2) else {
            return Ok(Contents::Events(events_from_json(entry.get(1))?));
        };
        let accs = accs
            .as_array()
            .filter(|a| a.len() == aggs.len())
            .ok_or_else(|| RuntimeError::Checkpoint("window state: accumulators".into()))?;
        Ok(Contents::Accs(
            aggs.iter()
                .zip(accs)
                .map(|(agg, j)| Acc::from_json(agg, j))
                .collect::<Result<_, _>>()?,
        ))
    }
}
