//! What sequences (`sequence.rs`) and named patterns (`pattern.rs`) share about their partial
//! matches ("runs"): feeding one event to the runs of a partition, filters, the partition key,
//! the match event's `<capture>_<field>` fields and the checkpoint form of a run.
//!
//! The two operators differ in how a run advances (a step index vs. a progress tree) and how it
//! expires; each passes that part in as closures.

use crate::codec::event_from_json;
use crate::compile::{Compiler, ExprFn};
use crate::error::RuntimeError;
use crate::event::Event;
use crate::key::{KeyMap, KeyRef, KeyRepr};
use crate::value::{Fields, Value};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use varpulis_vpl::ast::{self, ExprKind, OpKind};

/// Evaluates a compiled expression on an event with the given alias (captures) event.
pub(crate) type EvalWith<'a> =
    dyn FnMut(&ExprFn, &Event, &Event) -> Result<Value, RuntimeError> + 'a;

/// A match: the event passed on and the captures (alias for the remaining operators).
pub(crate) type Match = (Event, Event);

/// Interned `<capture>_<field>` names by (capture index, field).
pub(crate) type FlatNames = HashMap<(usize, Arc<str>), Arc<str>>;

/// What one event did to one run.
pub(crate) enum Outcome {
    /// The run ignores the event.
    Keep,
    /// The run took the event and waits for more.
    Took,
    /// The run dies.
    Drop,
    /// The run matched (`took`: with this event; else the event broke a `.longest()` group).
    Match {
        /// The run closes with this match.
        close: bool,
        /// The event was taken.
        took: bool,
    },
}

/// A stream-level `.not(T [where c])`: an event of type `ty` passing `filter` kills a run.
pub(crate) struct NotClause {
    pub(crate) ty: Arc<str>,
    pub(crate) filter: Option<ExprFn>,
}

impl NotClause {
    /// Compiles the argument of a `.not(…)` (`None`: not an event type or filter).
    pub(crate) fn compile(c: &mut Compiler, arg: Option<&ast::Expr>) -> Option<NotClause> {
        match arg.map(|a| &a.kind) {
            Some(ExprKind::EventFilter { event, filter }) => Some(NotClause {
                ty: c.intern(&event.name),
                filter: Some(c.expr(filter)),
            }),
            Some(ExprKind::Name(event)) => Some(NotClause {
                ty: c.intern(&event.name),
                filter: None,
            }),
            _ => None,
        }
    }

    /// Whether `ev` kills a run with captures `caps`.
    pub(crate) fn kills(
        &self,
        ev: &Event,
        caps: &Event,
        eval: &mut EvalWith<'_>,
    ) -> Result<bool, RuntimeError> {
        Ok(*self.ty == *ev.event_type && passes(&self.filter, ev, caps, eval)?)
    }
}

/// The match modes of a sequence or pattern stream.
pub(crate) struct Modes {
    /// `.strict()`: a run dies on an event of the pattern's types that it does not take.
    pub(crate) strict: bool,
    /// `.stnm()`: an event goes to at most one run, and opens none if a run took it.
    pub(crate) stnm: bool,
    /// `.longest()` (implied by a trend step, `.increasing`/`.decreasing`, unless `.each()`): a
    /// Kleene group that could take more matches once, when an event of its type breaks it.
    pub(crate) longest: bool,
}

impl Modes {
    /// The modes `ops` set (`trend`: the pattern has a trend step).
    pub(crate) fn of(ops: &[ast::StreamOp], trend: bool) -> Modes {
        let mode = |n: &str| {
            ops.iter()
                .any(|o| o.kind() == OpKind::MatchMode && o.name.name == n)
        };
        Modes {
            strict: mode("strict"),
            stnm: mode("stnm"),
            longest: mode("longest") || (trend && !mode("each")),
        }
    }
}

/// What a match passes on: an event typed with the stream name carrying `<capture>_<field>`
/// fields when something reads them.
pub(crate) struct MatchOut {
    /// The stream name (type of match events).
    pub(crate) result_type: Arc<str>,
    /// Captures of a fresh run: every capture name bound to `null`.
    pub(crate) empty_caps: Event,
    /// Whether matches need their `<capture>_<field>` fields: `Some` when the operators after
    /// the pattern decide it, `None` when it depends on a downstream stream.
    flatten_needed: Option<bool>,
    flatten: bool,
    /// The (shared) field list of match events that carry no fields.
    no_fields: Arc<Fields>,
}

impl MatchOut {
    /// The output of stream `stream` with these captures (`arrays`: Kleene captures read as
    /// arrays) and `flatten_needed` (see `sequence::chain_reads_match`).
    pub(crate) fn new(
        c: &mut Compiler,
        stream: &str,
        captures: &[String],
        arrays: &[String],
        flatten_needed: Option<bool>,
    ) -> MatchOut {
        MatchOut {
            result_type: c.intern(stream),
            empty_caps: empty_captures(c, stream, captures, arrays),
            flatten_needed,
            flatten: flatten_needed.unwrap_or(true),
            no_fields: Arc::new(Vec::new()),
        }
    }

    /// Tells whether another stream consumes this one (known once every stream is compiled);
    /// only then may matches without an `.emit` need their flattened fields.
    pub(crate) fn set_feeds_downstream(&mut self, feeds: bool) {
        self.flatten = self.flatten_needed.unwrap_or(feeds);
    }

    /// The event passed on for a match with captures `caps` at `ts`.
    pub(crate) fn event(&self, flat: &mut FlatNames, caps: &Event, ts: i64) -> Event {
        let fields = if self.flatten {
            Arc::new(flat_fields(flat, caps))
        } else {
            self.no_fields.clone()
        };
        Event {
            event_type: self.result_type.clone(),
            timestamp_ns: ts,
            fields,
        }
    }
}

/// The captures of a fresh run, typed `stream`: every capture name bound to `null`, then an
/// empty list field per Kleene capture read as an array (`arrays`).
fn empty_captures(c: &mut Compiler, stream: &str, captures: &[String], arrays: &[String]) -> Event {
    let mut caps: Fields = captures
        .iter()
        .map(|n| (c.intern(n), Value::Null))
        .collect();
    for a in arrays {
        caps.push((
            c.intern(&super::kleene::list_field(a)),
            Value::Array(Arc::new(Vec::new())),
        ));
    }
    Event {
        event_type: c.intern(stream),
        timestamp_ns: 0,
        fields: Arc::new(caps),
    }
}

/// Whether `ev` passes `filter` (none: it does) with `caps` as captures.
pub(crate) fn passes(
    filter: &Option<ExprFn>,
    ev: &Event,
    caps: &Event,
    eval: &mut EvalWith<'_>,
) -> Result<bool, RuntimeError> {
    match filter {
        Some(f) => Ok(eval(f, ev, caps)?.is_true()),
        None => Ok(true),
    }
}

/// A compiled `.partition_by(name)` of a sequence, pattern or trend stream.
pub(crate) struct PartitionKey {
    /// The name compiled as an expression (the plain path).
    expr: ExprFn,
    /// The name is not a capture or a top-level binding: when the event has that field, the key
    /// is read in place through a cached position (the expression would read the same field
    /// first); otherwise the expression decides.
    field: Option<(Arc<str>, AtomicU32)>,
}

impl PartitionKey {
    /// Compiles the `.partition_by` argument `e` in the stream's pattern scope.
    pub(crate) fn compile(c: &mut Compiler, e: &ast::Expr) -> PartitionKey {
        let field = match &e.kind {
            ExprKind::Name(id)
                if !c.captures.contains(&id.name)
                    && !c.capture_aliases.iter().any(|(a, _)| *a == id.name)
                    && !c.globals.contains_key(&id.name)
                    && c.alias.as_deref() != Some(id.name.as_str()) =>
            {
                Some((c.intern(&id.name), AtomicU32::new(0)))
            }
            _ => None,
        };
        PartitionKey {
            expr: c.expr(e),
            field,
        }
    }
}

/// The partition of `ev` under `.partition_by` (`key`; none: one partition).
pub(crate) fn partition_key(
    key: &Option<PartitionKey>,
    ev: &Event,
    eval: &mut EvalWith<'_>,
) -> Result<KeyRepr, RuntimeError> {
    partition_key_ref(key, ev, eval).map(PartKey::into_owned)
}

/// The partition of an event: borrowed from the event's field when the key is read in place
/// and holds a null, an int or a string (a lookup clones nothing), else owned.
pub(crate) enum PartKey<'e> {
    /// Read from the event's field.
    Ref(KeyRef<'e>),
    /// Computed.
    Owned(KeyRepr),
}

impl PartKey<'_> {
    /// The entry of this key in `map`.
    #[inline]
    pub(crate) fn get<V: Copy>(&self, map: &KeyMap<V>) -> Option<V> {
        match self {
            PartKey::Ref(k) => map.get(k).copied(),
            PartKey::Owned(k) => map.get(k).copied(),
        }
    }

    /// The owned key.
    pub(crate) fn into_owned(self) -> KeyRepr {
        match self {
            PartKey::Ref(k) => k.to_owned_key(),
            PartKey::Owned(k) => k,
        }
    }
}

/// [`partition_key`], borrowed from `ev` where it can be ([`PartKey`]).
#[inline]
pub(crate) fn partition_key_ref<'e>(
    key: &Option<PartitionKey>,
    ev: &'e Event,
    eval: &mut EvalWith<'_>,
) -> Result<PartKey<'e>, RuntimeError> {
    let Some(key) = key else {
        return Ok(PartKey::Ref(KeyRef::Null));
    };
    if let Some((name, slot)) = &key.field {
        if let Some(v) = ev.field_cached(name, slot) {
            return Ok(match KeyRef::of(v) {
                Some(k) => PartKey::Ref(k),
                None => PartKey::Owned(KeyRepr::of(v)),
            });
        }
    }
    Ok(PartKey::Owned(KeyRepr::of(&eval(&key.expr, ev, ev)?)))
}

/// `caps` with capture `slot` standing for `own` (a filter reading its own capture sees the
/// candidate, or the previous item's event, under it).
pub(crate) fn caps_with(caps: &Event, slot: usize, own: Value) -> Event {
    let mut fields = (*caps.fields).clone();
    if let Some(s) = fields.get_mut(slot) {
        s.1 = own;
    }
    Event {
        event_type: caps.event_type.clone(),
        timestamp_ns: caps.timestamp_ns,
        fields: Arc::new(fields),
    }
}

/// Feeds one event to the runs of a partition, in creation order. `step` says what the event
/// does to a run (`may_take` is false under `.stnm()` once a run took the event); `on_match`
/// gets every matching run, `on_close` every run that ends (it may take parts of the run, which
/// is dropped right after). A failing `step` leaves that run
/// and the later ones unchanged and is returned. Returns whether some run took the event.
pub(crate) fn feed<R>(
    runs: &mut Vec<R>,
    stnm: bool,
    mut step: impl FnMut(&mut R, bool) -> Result<Outcome, RuntimeError>,
    mut on_match: impl FnMut(&R),
    mut on_close: impl FnMut(&mut R),
) -> Result<bool, RuntimeError> {
    let mut failure = None;
    let mut taken = false;
    runs.retain_mut(|run| {
        if failure.is_some() {
            return true;
        }
        // `.stnm()`: an event goes to at most one run.
        let may_take = !(stnm && taken);
        match step(run, may_take) {
            Ok(Outcome::Keep) => true,
            Ok(Outcome::Took) => {
                taken = true;
                true
            }
            Ok(Outcome::Drop) => {
                on_close(run);
                false
            }
            Ok(Outcome::Match { close, took }) => {
                taken |= took;
                on_match(run);
                if close {
                    on_close(run);
                }
                !close
            }
            Err(e) => {
                failure = Some(e);
                true
            }
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(taken),
    }
}

/// Closed runs leave stale creation-order entries and empty partitions behind (kept to avoid
/// churn on the hot path); this says when to compact both: once they outnumber the live runs.
pub(crate) fn needs_compaction(order_len: usize, live: usize) -> bool {
    order_len > 2 * live + 64
}

/// The fields of a match event: `<capture>_<field>` for every field of every captured map.
fn flat_fields(flat: &mut FlatNames, caps: &Event) -> Fields {
    let mut fields: Fields = Vec::new();
    for (ci, (cap, v)) in caps.fields.iter().enumerate() {
        let Value::Map(m) = v else { continue };
        for (f, fv) in m.iter() {
            let name = flat
                .entry((ci, f.clone()))
                .or_insert_with(|| Arc::from(format!("{cap}_{f}")))
                .clone();
            fields.push((name, fv.clone()));
        }
    }
    fields
}

// ----- checkpoint -------------------------------------------------------------------------------

/// The runs of every partition with their keys, in creation order (ids ascend).
pub(crate) fn in_creation_order<R, S>(
    parts: &HashMap<KeyRepr, Vec<R>, S>,
    id: impl Fn(&R) -> u64,
) -> Vec<(&KeyRepr, &R)> {
    let mut runs: Vec<(&KeyRepr, &R)> = parts
        .iter()
        .flat_map(|(k, rs)| rs.iter().map(move |r| (k, r)))
        .collect();
    runs.sort_by_key(|(_, r)| id(r));
    runs
}

/// The fields every checkpointed run has: id (`id`), partition (`k`) and start time (`s`).
pub(crate) fn run_head(
    r: &Json,
    err: fn(&str) -> RuntimeError,
) -> Result<(u64, KeyRepr, i64), RuntimeError> {
    let id = r
        .get("id")
        .and_then(Json::as_u64)
        .ok_or_else(|| err("run id"))?;
    let key: KeyRepr = r
        .get("k")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| err("run key"))?;
    let start = r
        .get("s")
        .and_then(Json::as_i64)
        .ok_or_else(|| err("run start"))?;
    Ok((id, key, start))
}

/// A checkpointed run's captures (`c`), renamed to the operator's capture names (`empty`).
pub(crate) fn run_caps(
    r: &Json,
    empty: &Event,
    err: fn(&str) -> RuntimeError,
) -> Result<Event, RuntimeError> {
    let caps = event_from_json(r.get("c").ok_or_else(|| err("captures"))?)?;
    if caps.fields.len() != empty.fields.len() {
        return Err(err("capture count"));
    }
    Ok(Event {
        event_type: empty.event_type.clone(),
        timestamp_ns: caps.timestamp_ns,
        fields: Arc::new(
            empty
                .fields
                .iter()
                .zip(caps.fields.iter())
                .map(|((name, _), (_, v))| (name.clone(), v.clone()))
                .collect(),
        ),
    })
}
