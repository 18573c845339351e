//! Joins and merges of streams (VPL.md §7 "Joins and merge").
//!
//! * [`JoinOp`]: `join(A, B).on(A.k == B.k).window(5m)`. The `.on` conditions form classes of
//!   equal fields ([`JoinGraph`]). Each input keeps, per key it is looked up by (its fields for
//!   the classes it shares with a neighbouring input), only its most recent event: an older one
//!   cannot be within the window when a newer one is not. State is swept once per window length
//!   of watermark progress, so memory is bounded by the keys active within the window. When an
//!   event arrives on an input (type and the input's `.where` filters match), it is stored under
//!   each of its non-null keys unless a newer event is stored there, then partners are looked up
//!   from it input by input (breadth-first over inputs sharing a class, in input order): each
//!   the most recent event with the same shared-key values, no older than `event time - window`.
//!   When every input has a partner (and, for chained keys, every class holds one value), one
//!   joined event is produced: fields of all inputs unprefixed (first input wins on clashes),
//!   timestamp of the arriving event, and the inputs as captures (`A.field`). With one key shared
//!   by all inputs (VPL.md §7) this is "every other input has an event with the same key"; with
//!   chained keys (`A.c == B.id and A.p == C.p`) partners are found pairwise along the chain. A
//!   `null` key never joins. Events older than watermark - window are swept, so an out-of-order
//!   event can miss partners that old.
//! * Outer joins (`left_join`, `right_join`, `full_join`; [`JoinKind`]): the same matching, and
//!   every event of a preserved input (the first, the last, every input) that has been in no
//!   joined event when the watermark passes its time + window (no partner can join it any more)
//!   produces one joined event at that deadline: its own fields, the partners found along the
//!   keys at that moment, `null` (absent fields, an empty capture) for the rest. End of input
//!   emits every such pending event.
//! * [`MergeOp`]: `merge(A, stream S = B .where(c))` forwards each event once per input that
//!   accepts it (type and filters).

use super::capture_emit::{CaptureEmit, OutLists};
use super::sequence::{EvalWith, Match};
use crate::codec::{event_from_json, event_json};
use crate::compile::{Compiler, ExprFn};
use crate::error::RuntimeError;
use crate::event::Event;
use crate::key::{FastMap, KeyRepr};
use crate::value::{Fields, Value};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use varpulis_vpl::ast::{self, ExprKind, JoinKind, OpKind, SubStream};
use varpulis_vpl::correlate::{input_name, join_conditions, join_graph_lenient, JoinGraph};

/// Most events of preserved inputs an outer join keeps waiting for partners; beyond, the
/// earliest produce their null-filled joined event early (with a warning).
pub const MAX_PENDING_EVENTS: usize = 1_000_000;

/// How old a partner event may be when a join has no `.window`: one minute.
pub const DEFAULT_JOIN_WINDOW_NS: i64 = 60_000_000_000;

/// One input of a merge or join.
struct Input {
    name: Arc<str>,
    ty: Arc<str>,
    filters: Vec<ExprFn>,
}

/// Key fields, each with a cached position.
type KeyFields = Vec<(Arc<str>, AtomicU32)>;

/// The key an index stores an event under: one value (a single `.on` field, the usual case,
/// without a list allocated per event) or several. Every index has a fixed arity, so the two
/// forms never meet in one map.
#[derive(Clone, PartialEq, Eq, Hash)]
enum JoinKey {
    One(KeyRepr),
    Many(Vec<KeyRepr>),
}

impl std::fmt::Debug for JoinKey {
    /// Formats as the list of parts in both forms (checkpoints order entries by this text).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinKey::One(k) => f.debug_list().entry(k).finish(),
            JoinKey::Many(ks) => ks.fmt(f),
        }
    }
}

/// The key of `ev` by `fields`, `None` if a part is missing or `null`.
fn key_of(fields: &KeyFields, ev: &Event) -> Option<JoinKey> {
    let part = |(f, slot): &(Arc<str>, AtomicU32)| match ev.field_cached(f, slot) {
        None | Some(Value::Null) => None,
        Some(v) => Some(KeyRepr::of(v)),
    };
    match fields.as_slice() {
        [one] => part(one).map(JoinKey::One),
        _ => fields
            .iter()
            .map(part)
            .collect::<Option<_>>()
            .map(JoinKey::Many),
    }
}

fn key_fields(c: &mut Compiler, g: &JoinGraph, classes: &[usize], input: usize) -> KeyFields {
    classes
        .iter()
        .filter_map(|k| g.field(*k, input))
        .map(|f| (c.intern(f), AtomicU32::new(0)))
        .collect()
}

/// The events of one joined result, one per input (`None`: no event from that input), held
/// inline for joins of up to four inputs (no allocation per joined event).
enum Parts<'a> {
    Inline([Option<&'a Event>; 4], usize),
    Heap(Vec<Option<&'a Event>>),
}

impl<'a> Parts<'a> {
    /// `n` empty slots.
    fn new(n: usize) -> Parts<'a> {
        if n <= 4 {
            Parts::Inline([None; 4], n)
        } else {
            Parts::Heap(vec![None; n])
        }
    }

    fn as_slice(&self) -> &[Option<&'a Event>] {
        match self {
            Parts::Inline(a, n) => a.get(..*n).unwrap_or_default(),
            Parts::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Option<&'a Event>] {
        match self {
            Parts::Inline(a, n) => a.get_mut(..*n).unwrap_or_default(),
            Parts::Heap(v) => v,
        }
    }
}

/// The `(input, field)` terms of one class of equal fields.
type ClassTerms = Vec<(usize, Arc<str>, AtomicU32)>;

/// A lookup from one input to a neighbour sharing classes with it.
struct Edge {
    to: usize,
    /// Which index of `to` holds the key.
    index: usize,
    /// The key's fields on the `from` side.
    from_fields: KeyFields,
}

impl Input {
    fn accepts(&self, ev: &Event, eval: &mut EvalWith<'_>) -> Result<bool, RuntimeError> {
        if *self.ty != *ev.event_type {
            return Ok(false);
        }
        for f in &self.filters {
            if !eval(f, ev, ev)?.is_true() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn compile_inputs(c: &mut Compiler, inputs: &[SubStream]) -> Vec<Input> {
    inputs
        .iter()
        .map(|i| Input {
            name: c.intern(&input_name(i).name),
            ty: c.intern(&i.source.name),
            filters: i
                .ops
                .iter()
                .filter(|o| o.kind() == OpKind::Where)
                .filter_map(|o| o.first_positional())
                .map(|e| c.expr(e))
                .collect(),
        })
        .collect()
}

/// The stateless front operator of a `merge(…)` stream.
pub(crate) struct MergeOp {
    inputs: Vec<Input>,
}

impl MergeOp {
    /// Compiles the inputs (their filters read the candidate event by bare name).
    pub(crate) fn compile(c: &mut Compiler, inputs: &[SubStream]) -> MergeOp {
        c.enter_stream(None);
        MergeOp {
            inputs: compile_inputs(c, inputs),
        }
    }

    /// How many inputs accept `ev` (it is forwarded that many times).
    pub(crate) fn accepts(
        &self,
        ev: &Event,
        eval: &mut EvalWith<'_>,
    ) -> Result<usize, RuntimeError> {
        let mut n = 0;
        for i in &self.inputs {
            if i.accepts(ev, eval)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Per input, per index: key → most recent event.
type Latest = Vec<Vec<FastMap<JoinKey, Event>>>;

#[derive(Default)]
struct JoinState {
    watermark: Option<i64>,
    /// Watermark at the last sweep of old entries.
    swept: i64,
    /// Per input, per index: key → most recent event.
    latest: Latest,
    /// Outer joins: events of preserved inputs in no joined event yet, by (deadline, arrival).
    pending: BTreeMap<(i64, u64), (usize, Event)>,
    /// `pending` entries by input and the address of their fields (shared with `latest`'s
    /// copies).
    pending_by_ptr: HashMap<(usize, usize), (i64, u64)>,
    /// Arrival counter for `pending`.
    seq: u64,
    /// Pending events that produced their null-filled event early (for the log).
    forced: u64,
    /// Emptied capture lists of earlier joined events, refilled by the next ones instead of
    /// allocating (see [`JoinOp::recycle`]).
    spare_caps: Vec<Arc<Fields>>,
    /// With an `.emit` of capture fields ([`JoinOp::capture_emit`]): the field lists of the
    /// last output events, each refilled by a later output once its consumer dropped it.
    out_lists: OutLists,
}

/// Most emptied capture lists a join keeps for reuse.
const SPARE_CAPS: usize = 8;

/// Identity of an event's stored copies: they share one field list.
fn ptr_of(ev: &Event) -> usize {
    Arc::as_ptr(&ev.fields) as *const u8 as usize
}

impl JoinState {
    fn add_pending(&mut self, input: usize, ev: &Event, deadline: i64) {
        let k = (deadline, self.seq);
        self.seq += 1;
        self.pending_by_ptr.insert((input, ptr_of(ev)), k);
        self.pending.insert(k, (input, ev.clone()));
    }

    /// `ev` is in a joined event as input `input`: it no longer waits for a null-filled one.
    fn matched(&mut self, input: usize, ev: &Event) {
        if let Some(k) = self.pending_by_ptr.remove(&(input, ptr_of(ev))) {
            self.pending.remove(&k);
        }
    }

    /// Removes and returns the pending events whose deadline is before `wm` (all with `None`).
    fn expired(&mut self, wm: Option<i64>) -> Vec<(i64, usize, Event)> {
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            let (deadline, _) = *entry.key();
            if wm.is_some_and(|wm| deadline >= wm) {
                break;
            }
            let (input, ev) = entry.remove();
            self.pending_by_ptr.remove(&(input, ptr_of(&ev)));
            out.push((deadline, input, ev));
        }
        out
    }
}

/// The front operator of a `join(…)` stream.
pub(crate) struct JoinOp {
    inputs: Vec<Input>,
    /// Per input, its indexes: the key fields of each (one index per distinct set of classes
    /// it shares with a neighbour).
    indexes: Vec<Vec<KeyFields>>,
    /// Per input, its lookups to the inputs it shares classes with, in input order.
    edges: Vec<Vec<Edge>>,
    /// Chained keys: every class's `(input, field)` terms, checked to hold one value.
    classes: Option<Vec<ClassTerms>>,
    /// `.window` in ns: how old a partner event may be.
    window: i64,
    /// Per input: whether it is preserved (outer joins).
    preserved: Vec<bool>,
    result_type: Arc<str>,
    /// Whether the operators after the join read the joined event's own (unprefixed) fields:
    /// `Some` when the stream's chain decides it, `None` when it depends on a downstream stream
    /// (see `sequence::chain_reads_match`).
    flatten_needed: Option<bool>,
    /// Joined events carry the union of their inputs' fields; when nothing reads them, only the
    /// captures (`Input.field`) are built.
    flatten: bool,
    /// The (shared) field list of joined events that carry no fields.
    no_fields: Arc<Fields>,
    /// The stream's only operator after the join is an `.emit` of capture fields (and no
    /// stream reads this one): its fields and output type, built straight from the partner
    /// events (`capture_emit.rs`); joined events are then the output events.
    emit: Option<(CaptureEmit, Arc<str>)>,
    /// The captures passed with output events built by `emit` (nothing reads them).
    empty_caps: Event,
    state: Mutex<JoinState>,
}

impl JoinOp {
    /// Compiles a join stream's inputs, keys and window, and switches `c` to the input names as
    /// captures. `None` if the checked program still lacks a usable key or window.
    pub(crate) fn compile(
        c: &mut Compiler,
        s: &ast::StreamDecl,
        inputs: &[SubStream],
        kind: JoinKind,
    ) -> Option<JoinOp> {
        let names: Vec<&str> = inputs.iter().map(|i| input_name(i).name.as_str()).collect();
        let types: Vec<&str> = inputs.iter().map(|i| i.source.name.as_str()).collect();
        let (graph, _) = join_graph_lenient(&names, &types, &join_conditions(inputs, s)).ok()?;
        // Without `.window`, partners are kept for one minute (the existing product's default).
        let window = match s.ops.iter().find(|o| o.kind() == OpKind::Window) {
            Some(w) => match w.first_positional()?.kind {
                ExprKind::Duration(d) => i64::try_from(d).ok()?,
                _ => return None,
            },
            None => DEFAULT_JOIN_WINDOW_NS,
        };
        c.enter_stream(None);
        let compiled = compile_inputs(c, inputs);
        let n = compiled.len();
        // Indexes per input, by the class sets it shares with each neighbour.
        let mut index_classes: Vec<Vec<Vec<usize>>> = vec![Vec::new(); n];
        let mut edges: Vec<Vec<Edge>> = (0..n).map(|_| Vec::new()).collect();
        for (from, out) in edges.iter_mut().enumerate() {
            for to in (0..n).filter(|t| *t != from) {
                let shared = graph.shared(from, to);
                if shared.is_empty() {
                    continue;
                }
                let list = &mut index_classes[to];
                let index = match list.iter().position(|cl| *cl == shared) {
                    Some(x) => x,
                    None => {
                        list.push(shared.clone());
                        list.len() - 1
                    }
                };
                out.push(Edge {
                    to,
                    index,
                    from_fields: key_fields(c, &graph, &shared, from),
                });
            }
        }
        let indexes: Vec<Vec<KeyFields>> = index_classes
            .iter()
            .enumerate()
            .map(|(i, sets)| sets.iter().map(|cl| key_fields(c, &graph, cl, i)).collect())
            .collect();
        let classes = (!graph.single_key(n)).then(|| {
            graph
                .classes
                .iter()
                .map(|cl| {
                    cl.iter()
                        .map(|(i, f)| (*i, c.intern(f), AtomicU32::new(0)))
                        .collect()
                })
                .collect()
        });
        let captures: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        c.enter_pattern(captures.clone());
        for (i, t) in types.iter().enumerate() {
            let unique = types.iter().filter(|x| *x == t).count() == 1;
            if unique && !names.contains(t) {
                c.capture_aliases
                    .push((t.to_string(), names[i].to_string()));
            }
        }
        // `.on` and `.window` belong to the join itself; what follows decides whether joined
        // events need their unprefixed fields.
        let chain: Vec<ast::StreamOp> = s
            .ops
            .iter()
            .filter(|o| !matches!(o.kind(), OpKind::On | OpKind::Window))
            .cloned()
            .collect();
        let flatten_needed = super::sequence::chain_reads_match(&chain, &captures, c);
        let no_fields: Arc<Fields> = Arc::new(Vec::new());
        let result_type = c.intern(&s.name.name);
        Some(JoinOp {
            flatten_needed,
            flatten: flatten_needed.unwrap_or(true),
            emit: None,
            empty_caps: Event {
                event_type: result_type.clone(),
                timestamp_ns: 0,
                fields: no_fields.clone(),
            },
            no_fields,
            state: Mutex::new(JoinState {
                latest: indexes
                    .iter()
                    .map(|ix| vec![FastMap::default(); ix.len()])
                    .collect(),
                ..JoinState::default()
            }),
            preserved: (0..n).map(|i| kind.preserves(i, n)).collect(),
            inputs: compiled,
            indexes,
            edges,
            classes,
            window,
            result_type,
        })
    }

    /// Tells the operator whether another stream consumes this one (known once every stream
    /// is compiled); only then may joined events without an `.emit` need their fields.
    pub(crate) fn set_feeds_downstream(&mut self, feeds: bool) {
        self.flatten = self.flatten_needed.unwrap_or(feeds);
        // Another stream reads the joined events: they go through the operator chain.
        if feeds {
            self.emit = None;
        }
    }

    /// Builds joined events as the output of `emit` (output type `ty`), read straight from the
    /// partner events: the stream's only operator after the join is that `.emit` (and no
    /// stream reads this one, see [`JoinOp::set_feeds_downstream`]). Unchanged if a read names
    /// no input.
    pub(crate) fn set_capture_emit(&mut self, emit: CaptureEmit, ty: Arc<str>) {
        let names = self.inputs.iter().map(|i| &*i.name);
        if let Some(emit) = emit.resolve_names(names) {
            self.emit = Some((emit, ty));
        }
    }

    /// Whether joined events are output events built by an `.emit` of capture fields
    /// ([`JoinOp::set_capture_emit`]).
    pub(crate) fn capture_emit(&self) -> bool {
        self.emit.is_some()
    }

    /// Feeds one event; appends to `out` the joined events (one per input that accepted it and
    /// found partners on every other input).
    pub(crate) fn on_event(
        &self,
        ev: &Event,
        eval: &mut EvalWith<'_>,
        out: &mut Vec<Match>,
    ) -> Result<(), RuntimeError> {
        // The inputs accepting `ev` (all filters run before any state changes): a bit set for
        // the first 64 inputs, a list beyond (allocated only for such joins).
        let mut accepted_mask = 0u64;
        let mut accepted_more = Vec::new();
        for (i, input) in self.inputs.iter().enumerate() {
            if input.accepts(ev, eval)? {
                if i < 64 {
                    accepted_mask |= 1u64 << i;
                } else {
                    accepted_more.push(i);
                }
            }
        }
        let accepted = (0..self.inputs.len().min(64))
            .filter(|i| accepted_mask & (1u64 << i) != 0)
            .chain(accepted_more);
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *guard;
        let ts = ev.timestamp_ns;
        self.sweep(st, ts, out);
        for i in accepted {
            if let (Some(ix), Some(maps)) = (self.indexes.get(i), st.latest.get_mut(i)) {
                for (fields, m) in ix.iter().zip(maps.iter_mut()) {
                    let Some(key) = key_of(fields, ev) else {
                        continue;
                    };
                    match m.get_mut(&key) {
                        Some(prev) if prev.timestamp_ns > ts => {}
                        Some(prev) => *prev = ev.clone(),
                        None => {
                            m.insert(key, ev.clone());
                        }
                    }
                }
            }
            // Output events built by `emit` carry no capture list.
            let mut spare = if self.emit.is_none() {
                st.spare_caps.pop()
            } else {
                None
            };
            match self.partners(&st.latest, i, ev) {
                Some(parts) => {
                    let parts = parts.as_slice();
                    let m = self.joined_partial(parts, ts, spare.take(), &mut st.out_lists);
                    let done: Vec<(usize, Event)> = if st.pending.is_empty() {
                        Vec::new()
                    } else {
                        parts
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| self.preserved.get(*j) == Some(&true))
                            .filter_map(|(j, p)| p.map(|p| (j, p.clone())))
                            .collect()
                    };
                    for (j, p) in &done {
                        st.matched(*j, p);
                    }
                    out.push(m);
                }
                None if self.preserved.get(i) == Some(&true) => {
                    // The stored copy (if it is the most recent for a key) shares `ev`'s fields.
                    let stored = self.stored_copy(st, i, ev).unwrap_or_else(|| ev.clone());
                    st.add_pending(i, &stored, ts.saturating_add(self.window));
                    while st.pending.len() > MAX_PENDING_EVENTS {
                        let Some(((deadline, _), (j, early))) = st.pending.pop_first() else {
                            break;
                        };
                        st.pending_by_ptr.remove(&(j, ptr_of(&early)));
                        out.push(self.unmatched(
                            &st.latest,
                            &mut st.out_lists,
                            j,
                            &early,
                            deadline,
                        ));
                        st.forced += 1;
                        if st.forced.is_power_of_two() {
                            tracing::warn!(
                                pending = MAX_PENDING_EVENTS,
                                emitted_early = st.forced,
                                "outer join: too many events wait for partners; the earliest are emitted without them"
                            );
                        }
                    }
                }
                None => {}
            }
            if let Some(caps) = spare {
                st.spare_caps.push(caps);
            }
        }
        Ok(())
    }

    /// Takes back the capture lists of joined events handled downstream (`matches`, emptied):
    /// a list nothing else holds any more is cleared and kept for the next joined event.
    pub(crate) fn recycle(&self, matches: &mut Vec<Match>) {
        if matches.is_empty() {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (_, caps) in matches.drain(..) {
            let mut fields = caps.fields;
            if st.spare_caps.len() < SPARE_CAPS {
                if let Some(list) = Arc::get_mut(&mut fields) {
                    list.clear();
                    st.spare_caps.push(fields);
                }
            }
        }
    }

    /// `ev`'s copy stored in input `i`'s indexes, if any.
    fn stored_copy(&self, st: &JoinState, i: usize, ev: &Event) -> Option<Event> {
        let ix = self.indexes.get(i)?;
        let maps = st.latest.get(i)?;
        ix.iter().zip(maps).find_map(|(fields, m)| {
            let stored = m.get(&key_of(fields, ev)?)?;
            Arc::ptr_eq(&stored.fields, &ev.fields).then(|| stored.clone())
        })
    }

    /// Appends a null-filled joined event for every pending event whose deadline the watermark
    /// passed.
    fn expire(&self, st: &mut JoinState, out: &mut Vec<Match>) {
        if st.pending.is_empty() {
            return;
        }
        for (deadline, i, ev) in st.expired(st.watermark) {
            out.push(self.unmatched(&st.latest, &mut st.out_lists, i, &ev, deadline));
        }
    }

    /// The joined event of a preserved event without a full set of partners: the partners found
    /// along the keys now, nothing for the others.
    fn unmatched(
        &self,
        latest: &Latest,
        out_lists: &mut OutLists,
        i: usize,
        ev: &Event,
        at: i64,
    ) -> Match {
        let oldest = ev.timestamp_ns.saturating_sub(self.window);
        let mut chosen: Vec<Option<&Event>> = vec![None; self.inputs.len()];
        if let Some(c) = chosen.get_mut(i) {
            *c = Some(ev);
        }
        let mut queue = std::collections::VecDeque::from([i]);
        while let Some(u) = queue.pop_front() {
            let Some(Some(from)) = chosen.get(u).copied() else {
                continue;
            };
            for e in self.edges.get(u).into_iter().flatten() {
                if chosen.get(e.to).is_some_and(|c| c.is_some()) {
                    continue;
                }
                let found = key_of(&e.from_fields, from).and_then(|key| {
                    latest
                        .get(e.to)?
                        .get(e.index)?
                        .get(&key)
                        .filter(|p| p.timestamp_ns >= oldest && p.timestamp_ns <= at)
                });
                if let (Some(p), Some(c)) = (found, chosen.get_mut(e.to)) {
                    *c = Some(p);
                    queue.push_back(e.to);
                }
            }
        }
        self.joined_partial(&chosen, at, None, out_lists)
    }

    /// The partner events of `ev` arriving on input `i`, one per input (`ev` itself for `i`;
    /// every entry is `Some`), found breadth-first along the shared keys; `None` when some input
    /// has none.
    fn partners<'s>(&self, latest: &'s Latest, i: usize, ev: &'s Event) -> Option<Parts<'s>> {
        let oldest = ev.timestamp_ns.saturating_sub(self.window);
        let mut parts = Parts::new(self.inputs.len());
        let chosen = parts.as_mut_slice();
        *chosen.get_mut(i)? = Some(ev);
        let mut missing = self.inputs.len() - 1;
        // Breadth-first: `queue[head..]` waits; nothing is queued once every input has a
        // partner (a two-input join never allocates the queue).
        let mut queue: Vec<usize> = Vec::new();
        let mut head = 0;
        let mut u = i;
        loop {
            let from = (*chosen.get(u)?)?;
            for e in self.edges.get(u)? {
                if chosen.get(e.to)?.is_some() {
                    continue;
                }
                let key = key_of(&e.from_fields, from)?;
                let p = latest.get(e.to)?.get(e.index)?.get(&key)?;
                if p.timestamp_ns < oldest {
                    return None;
                }
                *chosen.get_mut(e.to)? = Some(p);
                missing -= 1;
                if missing > 0 {
                    queue.push(e.to);
                }
            }
            if missing == 0 {
                break;
            }
            match queue.get(head) {
                Some(next) => {
                    u = *next;
                    head += 1;
                }
                None => return None,
            }
        }
        if let Some(classes) = &self.classes {
            for class in classes {
                let mut value: Option<KeyRepr> = None;
                for (input, f, slot) in class {
                    let v = match (*parts.as_slice().get(*input)?)?.field_cached(f, slot) {
                        None | Some(Value::Null) => return None,
                        Some(v) => KeyRepr::of(v),
                    };
                    match &value {
                        Some(x) if *x != v => return None,
                        Some(_) => {}
                        None => value = Some(v),
                    }
                }
            }
        }
        Some(parts)
    }

    /// Raises the watermark to `ts`, appends the null-filled joined events of outer joins whose
    /// deadline it passed (their partners still stored), and forgets, once per window of
    /// progress, partner events too old to join.
    fn sweep(&self, st: &mut JoinState, ts: i64, out: &mut Vec<Match>) {
        let wm = st.watermark.map_or(ts, |w| w.max(ts));
        st.watermark = Some(wm);
        self.expire(st, out);
        if wm.saturating_sub(st.swept) > self.window {
            let horizon = wm.saturating_sub(self.window);
            for m in st.latest.iter_mut().flatten() {
                m.retain(|_, e| e.timestamp_ns >= horizon);
            }
            st.swept = wm;
        }
    }

    /// Time reached `now` without an event of this stream (a timer tick): returns the
    /// null-filled joined events of outer joins whose deadline passed.
    pub(crate) fn on_time(&self, now: i64) -> Vec<Match> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        self.sweep(&mut st, now, &mut out);
        out
    }

    /// End of input: the null-filled joined events of every pending event of an outer join.
    pub(crate) fn flush(&self) -> Vec<Match> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *guard;
        let mut out = Vec::new();
        for (deadline, i, ev) in st.expired(None) {
            out.push(self.unmatched(&st.latest, &mut st.out_lists, i, &ev, deadline));
        }
        out
    }

    /// A joined event from the inputs' events; a missing input adds no fields and a `null`
    /// capture (so `Input.field` reads `null` and `Input == null` holds). The joined event's
    /// own fields are only built when something reads them (`flatten`). With an `.emit` of
    /// capture fields ([`JoinOp::capture_emit`]) it is the output event itself, its field list
    /// from `out_lists`, and the captures passed on are the empty ones (nothing reads them).
    fn joined_partial(
        &self,
        parts: &[Option<&Event>],
        ts: i64,
        spare: Option<Arc<Fields>>,
        out_lists: &mut OutLists,
    ) -> Match {
        if let Some((emit, ty)) = &self.emit {
            // The `.emit` of capture fields, read straight from the inputs' events.
            let fields = out_lists.take(emit.len(), |list, seen| {
                emit.fill(list, seen, |at| {
                    parts.get(at).copied().flatten().map(|p| &*p.fields)
                });
            });
            let ev = Event {
                event_type: ty.clone(),
                timestamp_ns: ts,
                fields,
            };
            return (ev, self.empty_caps.clone());
        }
        let fields = if self.flatten {
            let mut fields: Fields =
                Vec::with_capacity(parts.iter().flatten().map(|p| p.fields.len()).sum());
            for p in parts.iter().flatten() {
                for (k, v) in p.fields.iter() {
                    if !fields.iter().any(|(n, _)| Arc::ptr_eq(n, k) || n == k) {
                        fields.push((k.clone(), v.clone()));
                    }
                }
            }
            Arc::new(fields)
        } else {
            self.no_fields.clone()
        };
        // An emptied list from an earlier joined event (see `recycle`), else a new one.
        let mut caps = spare.unwrap_or_else(|| Arc::new(Vec::with_capacity(parts.len())));
        // Spare lists are held by nothing else: this never copies.
        let list = Arc::make_mut(&mut caps);
        list.clear();
        for (input, p) in self.inputs.iter().zip(parts) {
            let cap = match p {
                Some(p) => Value::Map(p.fields.clone()),
                None => Value::Null,
            };
            list.push((input.name.clone(), cap));
        }
        let ev = Event {
            event_type: self.result_type.clone(),
            timestamp_ns: ts,
            fields,
        };
        let caps = Event {
            event_type: self.result_type.clone(),
            timestamp_ns: ts,
            fields: caps,
        };
        (ev, caps)
    }
}

// ----- checkpoint -------------------------------------------------------------------------------

fn ck_err(msg: &str) -> RuntimeError {
    RuntimeError::Checkpoint(format!("join state: {msg}"))
}

/// Decoded join state, applied only once everything parsed (restore is all-or-nothing).
pub(crate) struct Restored(JoinState);

/// One index's events, sorted by time then key for stable bytes.
fn index_json(m: &FastMap<JoinKey, Event>) -> serde_json::Value {
    let mut evs: Vec<(&JoinKey, &Event)> = m.iter().collect();
    evs.sort_by(|a, b| {
        (a.1.timestamp_ns, format!("{:?}", a.0)).cmp(&(b.1.timestamp_ns, format!("{:?}", b.0)))
    });
    serde_json::Value::Array(evs.into_iter().map(|(_, e)| event_json(e)).collect())
}

impl JoinOp {
    /// Serializes the stored events per input and index.
    pub(crate) fn snapshot(&self) -> serde_json::Value {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let latest: Vec<serde_json::Value> = st
            .latest
            .iter()
            .map(|maps| serde_json::Value::Array(maps.iter().map(index_json).collect()))
            .collect();
        let pending: Vec<serde_json::Value> = st
            .pending
            .iter()
            .map(|((deadline, _), (input, ev))| {
                serde_json::json!([input, deadline, event_json(ev)])
            })
            .collect();
        let mut j = serde_json::json!({ "wm": st.watermark, "swept": st.swept, "indexes": latest });
        if !pending.is_empty() {
            j["pending"] = serde_json::Value::Array(pending);
        }
        j
    }

    /// Parses a [`JoinOp::snapshot`]; `None` (no entry) is the empty state. A checkpoint taken
    /// before inputs had several indexes (`"latest"`: one event list per input) restores into
    /// inputs with one index.
    pub(crate) fn parse_snapshot(
        &self,
        j: Option<&serde_json::Value>,
    ) -> Result<Restored, RuntimeError> {
        let mut st = JoinState {
            latest: self
                .indexes
                .iter()
                .map(|ix| vec![FastMap::default(); ix.len()])
                .collect(),
            ..JoinState::default()
        };
        let Some(j) = j else {
            return Ok(Restored(st));
        };
        st.watermark = match j.get("wm") {
            Some(serde_json::Value::Null) | None => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| ck_err("watermark"))?),
        };
        st.swept = j
            .get("swept")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| ck_err("sweep"))?;
        let per_input: Vec<Vec<&serde_json::Value>> = match (j.get("indexes"), j.get("latest")) {
            (Some(ix), _) => ix
                .as_array()
                .ok_or_else(|| ck_err("inputs"))?
                .iter()
                .map(|l| l.as_array().map(|a| a.iter().collect()))
                .collect::<Option<_>>()
                .ok_or_else(|| ck_err("indexes"))?,
            (None, Some(old)) => old
                .as_array()
                .ok_or_else(|| ck_err("inputs"))?
                .iter()
                .map(|l| vec![l])
                .collect(),
            (None, None) => return Err(ck_err("inputs")),
        };
        if per_input.len() != self.inputs.len() {
            return Err(ck_err("inputs"));
        }
        for (i, lists) in per_input.iter().enumerate() {
            let (Some(input), Some(ix), Some(maps)) = (
                self.inputs.get(i),
                self.indexes.get(i),
                st.latest.get_mut(i),
            ) else {
                return Err(ck_err("inputs"));
            };
            if lists.len() != ix.len() {
                return Err(ck_err("indexes"));
            }
            for ((list, fields), m) in lists.iter().zip(ix).zip(maps.iter_mut()) {
                for e in list.as_array().ok_or_else(|| ck_err("events"))? {
                    let ev = event_from_json(e)?;
                    let ev = Event {
                        event_type: input.ty.clone(),
                        ..ev
                    };
                    let key = key_of(fields, &ev).ok_or_else(|| ck_err("event key"))?;
                    m.insert(key, ev);
                }
            }
        }
        // Outer joins' pending events, sharing their fields with their stored copies.
        if let Some(list) = j.get("pending") {
            for entry in list.as_array().ok_or_else(|| ck_err("pending"))? {
                let (Some(input), Some(deadline), Some(e)) = (
                    entry.get(0).and_then(|v| v.as_u64()),
                    entry.get(1).and_then(|v| v.as_i64()),
                    entry.get(2),
                ) else {
                    return Err(ck_err("pending event"));
                };
                let input = usize::try_from(input).map_err(|_| ck_err("pending input"))?;
                let ty = match self.inputs.get(input) {
                    Some(i) if self.preserved.get(input) == Some(&true) => i.ty.clone(),
                    _ => return Err(ck_err("pending input")),
                };
                let mut ev = Event {
                    event_type: ty,
                    ..event_from_json(e)?
                };
                if let (Some(ix), Some(maps)) = (self.indexes.get(input), st.latest.get_mut(input))
                {
                    for (fields, m) in ix.iter().zip(maps.iter_mut()) {
                        let Some(stored) = key_of(fields, &ev).and_then(|k| m.get_mut(&k)) else {
                            continue;
                        };
                        if stored.timestamp_ns == ev.timestamp_ns
                            && event_json(stored) == event_json(&ev)
                        {
                            ev = stored.clone();
                        }
                    }
                }
                st.add_pending(input, &ev, deadline);
            }
        }
        Ok(Restored(st))
    }

    /// Installs state from [`JoinOp::parse_snapshot`].
    pub(crate) fn install(&self, r: Restored) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = r.0;
    }
}
