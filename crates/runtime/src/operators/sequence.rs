//! Sequences (VPL.md §7): `A as a -> B where … as b -> all C as c .within(d) .not(N where …)`.
//!
//! A [`SeqOp`] is a small NFA run per started match. Every event of the first step's type passing
//! its filter (`T where c as a -> …`) opens a run; a run waits for its next step and takes the first later event of that type passing
//! the step's filter (other events are skipped). For one event, per run in creation order: an
//! expired run (watermark > start + `within`) is dropped, a matching `.not` clause kills it, then
//! it may advance by one step; finally the event may open a new run. Completed matches of one
//! event are therefore ordered by run creation.
//!
//! * `all T` (Kleene) collects every matching `T` (at least one) and keeps only the most recent
//!   (`alias.field` reads it), so a run's memory is one event per step. If a step follows, that
//!   step's event ends the collection; a trailing `all` yields a match for every newly collected
//!   event and stays open until it expires.
//! * A step's filter reads earlier captures as `alias.field`; its own capture names the candidate
//!   (a Kleene step's: the event it collected last, see `self_ref.rs`).
//! * `.partition_by(k)`: runs live per key and only see events with their key.
//! * Memory: runs expire by `within` (a queue in creation order, so expiry is amortised O(1));
//!   live runs are capped per stream ([`crate::EngineOptions::max_sequence_runs`]); when the cap
//!   is hit the oldest run is dropped, counted and logged.
//!
//! A runtime error in a filter (e.g. a type error) aborts the event for this stream: runs already
//! handled for that event keep their update, the failing and later runs are left unchanged, and
//! no run is opened.
//!
//! A run holds its captures as an [`Event`] whose fields are the capture names, each a map of
//! the captured event's fields (shared, not copied). Compiled filters read `x.f` from it (the
//! evaluation alias). A match passes on as an event typed with the stream name whose fields are
//! `<capture>_<field>`, with the captures as alias for the remaining operators.

use crate::codec::{event_json, opt_i64_field, u64_field};
use crate::compile::{Compiler, ExprFn, FieldTest};
use crate::error::RuntimeError;
use crate::event::Event;
use crate::key::{KeyMap, KeyRepr};
use crate::operators::capture_emit::{CaptureEmit, OutLists};
use crate::operators::kleene;
use crate::operators::runs::{
    self, caps_with, passes, FlatNames, MatchOut, Modes, NotClause, Outcome,
};
use crate::operators::self_ref::{any_child, carries, own_fields, refs_capture, without_own};
use crate::value::{Fields, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use varpulis_vpl::ast::{self, ExprKind, OpKind};
use varpulis_vpl::correlate;

/// Default cap on live runs of one sequence stream (all partitions together).
pub const DEFAULT_MAX_SEQUENCE_RUNS: usize = 100_000;

pub(crate) use crate::operators::runs::{EvalWith, Match};

struct StepCode {
    ty: Arc<str>,
    all: bool,
    filter: Option<ExprFn>,
    /// The filter is `field <cmp> literal` on the candidate (and the step reads no own
    /// capture): tested in place first, `filter` runs only when the event lacks the field.
    test: Option<FieldTest>,
    /// A Kleene step whose filter reads its own capture: the filter for its first event (the
    /// conjuncts reading the capture dropped; `self_ref.rs`), used when the previous step's
    /// event lacks one of `own_fields` (else it stands for the capture).
    first: Option<Option<ExprFn>>,
    /// The fields the filter reads from its own capture.
    own_fields: Vec<Arc<str>>,
    /// A Kleene step read as an array: the captures field holding its events.
    list: Option<usize>,
    /// Another step whose filter reads its own capture: the filter sees the candidate under it.
    reads_self: bool,
}

/// One partial match.
#[derive(Clone)]
struct SeqRun {
    id: u64,
    /// Time of the event that opened the run.
    start: i64,
    /// Next step to match (`1..=steps`).
    pos: usize,
    /// The step before `pos` is a Kleene step that may collect more events.
    kleene: bool,
    /// One field per step: capture name → map of the captured fields (`null` until captured).
    caps: Event,
    /// Events taken by each step (a Kleene step counts every event it collected); empty when
    /// the sequence has no Kleene step (each step before `pos` then took exactly one event).
    counts: Vec<u32>,
}

/// The live runs of one partition, in creation order.
struct SeqPart {
    key: KeyRepr,
    runs: Vec<SeqRun>,
    /// No run started here since the last compaction (an empty slot is freed by the second
    /// compaction that finds it unused, not the first: a key that comes back between two
    /// compactions keeps its slot instead of freeing and re-creating it).
    idle: bool,
}

/// Runs by partition: the key is hashed once per event to find its slot; creation-order
/// entries name the slot, so expiring or closing a run needs no further hashing. A slot whose
/// runs all ended is freed (its key leaves `index`) when a run expires or is dropped from it,
/// or at the next compaction; a freed slot is reused by the next new partition. Run ids are
/// never reused, so a stale creation-order entry naming a reused slot finds no run there.
#[derive(Default)]
struct SeqState {
    watermark: Option<i64>,
    next_id: u64,
    /// Slot of every partition with a slot.
    index: KeyMap<usize>,
    /// Partitions by slot (a free slot has no runs and no `index` entry).
    slots: Vec<SeqPart>,
    /// Free slots.
    free: Vec<usize>,
    /// `(deadline, id, slot)` of runs in creation order; entries of closed runs are skipped.
    order: VecDeque<(i64, u64, usize)>,
    /// Number of live runs (all partitions).
    live: usize,
    /// Runs dropped because the live-run cap was hit.
    dropped: u64,
    /// Interned `<capture>_<field>` names.
    flat: FlatNames,
    /// Capture lists of ended runs that nothing else held, reset to the empty captures: a new
    /// run takes one instead of allocating a list and its `Arc` (at most [`SPARE_CAPS`]).
    spare: Vec<Arc<Fields>>,
    /// The steps taking each recently seen event type (type name, bit set by step).
    types: Vec<(Arc<str>, u64)>,
    /// With an `.emit` of capture fields ([`SeqOp::capture_emit`]): the field lists of the
    /// last output events, each refilled by a later output once its consumer dropped it.
    out_lists: OutLists,
}

/// Most spare capture lists a sequence keeps.
const SPARE_CAPS: usize = 16;

/// Most event type names whose steps a sequence remembers ([`SeqOp::steps_of_type`]).
const TYPE_CACHE: usize = 8;

impl SeqState {
    /// The slot of partition `key`, created (or a free one reused) when absent.
    fn slot_for(&mut self, key: KeyRepr) -> usize {
        if let Some(s) = self.index.get(&key) {
            return *s;
        }
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(p) = self.slots.get_mut(s) {
                    p.key = key.clone();
                }
                s
            }
            None => {
                self.slots.push(SeqPart {
                    key: key.clone(),
                    runs: Vec::new(),
                    idle: false,
                });
                self.slots.len() - 1
            }
        };
        self.index.insert(key, slot);
        slot
    }

    /// Frees `slot` if it has no runs left.
    fn free_if_empty(&mut self, slot: usize) {
        let Some(p) = self.slots.get_mut(slot) else {
            return;
        };
        if p.runs.is_empty() && self.index.get(&p.key) == Some(&slot) {
            self.index.remove(&p.key);
            p.key = KeyRepr::Null;
            self.free.push(slot);
        }
    }

    /// Removes run `id` from `slot` if it is still there; returns whether it was.
    /// The run's capture list is kept as a spare (reset to `empty`) when nothing else holds it.
    fn remove_run(&mut self, slot: usize, id: u64, empty: &Arc<Fields>) -> bool {
        let Some(p) = self.slots.get_mut(slot) else {
            return false;
        };
        let Some(at) = p.runs.iter().position(|r| r.id == id) else {
            return false;
        };
        let run = p.runs.remove(at);
        self.live = self.live.saturating_sub(1);
        self.free_if_empty(slot);
        keep_spare(&mut self.spare, run.caps.fields, empty);
        true
    }

    /// Drops the creation-order entries of closed runs and frees the slots left empty.
    fn compact(&mut self) {
        let slots = &self.slots;
        self.order.retain(|(_, id, s)| {
            slots
                .get(*s)
                .is_some_and(|p| p.runs.iter().any(|r| r.id == *id))
        });
        for s in 0..self.slots.len() {
            let Some(p) = self.slots.get_mut(s) else {
                continue;
            };
            if p.runs.is_empty() && p.idle {
                self.free_if_empty(s);
            } else {
                p.idle = true;
            }
        }
    }
}

/// The pattern operator of a sequence stream.
pub(crate) struct SeqOp {
    steps: Vec<StepCode>,
    nots: Vec<NotClause>,
    /// `.within` in ns.
    within: Option<i64>,
    /// `.strict()`, `.stnm()`, `.longest()` (a trailing Kleene group matches once, when it
    /// breaks).
    modes: Modes,
    key: Option<runs::PartitionKey>,
    max_runs: usize,
    out: MatchOut,
    /// Matches carry `#<capture>` counts (some operator uses `count(capture)`).
    counts: bool,
    /// No step is a Kleene step: runs derive their counts from their position instead of
    /// keeping a list (one allocation less per run).
    derive_counts: bool,
    /// The stream's only operator after the pattern is an `.emit` of capture fields: its
    /// fields and output type, built straight from each match's captures (`capture_emit.rs`).
    emit: Option<(CaptureEmit, Arc<str>)>,
    state: Mutex<SeqState>,
}

impl SeqOp {
    /// Compiles the pattern of sequence stream `s` and switches `c` to its capture names, so the
    /// stream's remaining operators are compiled against them. `None` if `s` is no sequence.
    pub(crate) fn compile(c: &mut Compiler, s: &ast::StreamDecl, max_runs: usize) -> Option<SeqOp> {
        let steps = correlate::sequence_steps(s)?;
        c.enter_pattern(steps.iter().map(|st| st.capture.name.clone()).collect());
        let kleene: Vec<String> = steps
            .iter()
            .filter(|st| st.all)
            .map(|st| st.capture.name.clone())
            .collect();
        let step_filters = steps.iter().filter_map(|st| st.filter);
        let op_args = s.ops.iter().flat_map(|o| o.args.iter().map(|a| &a.value));
        let arrays = kleene::array_captures(step_filters.chain(op_args), &kleene);
        c.array_captures = arrays.clone();
        let captures: Vec<String> = steps.iter().map(|st| st.capture.name.clone()).collect();
        let step_code = steps
            .iter()
            .map(|st| {
                let own = st.capture.name.as_str();
                let reads_own = st.filter.is_some_and(|f| refs_capture(f, own));
                StepCode {
                    list: arrays
                        .iter()
                        .position(|a| st.all && *a == st.capture.name)
                        .map(|k| steps.len() + k),
                    ty: c.intern(&st.event.name),
                    all: st.all,
                    filter: st.filter.map(|f| c.expr(f)),
                    test: st
                        .filter
                        .filter(|_| !st.all && !reads_own)
                        .and_then(|f| c.filter_test(f)),
                    first: match st.filter {
                        Some(f) if st.all && reads_own => {
                            Some(without_own(f, own).map(|f| c.expr(&f)))
                        }
                        _ => None,
                    },
                    reads_self: reads_own && !st.all,
                    own_fields: match st.filter {
                        Some(f) if st.all && reads_own => {
                            own_fields(f, own).iter().map(|n| c.intern(n)).collect()
                        }
                        _ => Vec::new(),
                    },
                }
            })
            .collect();
        let mut nots = Vec::new();
        let mut within = None;
        let mut key = None;
        for op in &s.ops {
            let arg = op.first_positional();
            match (op.kind(), arg.map(|a| &a.kind)) {
                (OpKind::Within, Some(ExprKind::Duration(d))) => {
                    within = Some(i64::try_from(*d).unwrap_or(i64::MAX));
                }
                (OpKind::Not, _) => nots.extend(NotClause::compile(c, arg)),
                (OpKind::PartitionBy, Some(ExprKind::Name(_))) => {
                    key = arg.map(|e| runs::PartitionKey::compile(c, e));
                }
                _ => {}
            }
        }
        let flatten_needed = chain_reads_match(&s.ops, &captures, c);
        let out = MatchOut::new(c, &s.name.name, &captures, &arrays, flatten_needed);
        Some(SeqOp {
            modes: Modes::of(&s.ops, steps.iter().any(|st| st.trend)),
            counts: uses_capture_count(&s.ops, &captures),
            derive_counts: steps.iter().all(|st| !st.all),
            steps: step_code,
            nots,
            within,
            key,
            max_runs: max_runs.max(1),
            out,
            emit: None,
            state: Mutex::new(SeqState::default()),
        })
    }

    /// Builds matches' output straight from their captures with `emit` (output type `ty`):
    /// the stream's only operator after the pattern is that `.emit` (and no stream reads this
    /// one, see [`SeqOp::set_feeds_downstream`]). Matches are then the output events.
    pub(crate) fn set_capture_emit(&mut self, emit: CaptureEmit, ty: Arc<str>) {
        self.emit = emit.resolve(&self.out.empty_caps).map(|e| (e, ty));
    }

    /// The `.emit` built straight from the captures, and its output type, if any.
    pub(crate) fn capture_emit(&self) -> Option<&(CaptureEmit, Arc<str>)> {
        self.emit.as_ref()
    }

    /// Tells the operator whether another stream consumes this one (known once every stream
    /// is compiled); only then may matches without an `.emit` need their flattened fields.
    pub(crate) fn set_feeds_downstream(&mut self, feeds: bool) {
        self.out.set_feeds_downstream(feeds);
        // Another stream reads the matches: they go through the operator chain.
        if feeds {
            self.emit = None;
        }
    }

    /// Bit `k` set: step `k` takes events of type `ty` (steps past 63 are not tracked: their
    /// runs always go through [`SeqOp::step_run`]).
    /// `cache` remembers the answer for the last few type names, compared by pointer (decoders
    /// intern type names).
    fn steps_of_type(&self, cache: &mut Vec<(Arc<str>, u64)>, ty: &Arc<str>) -> u64 {
        if let Some((_, bits)) = cache.iter().find(|(t, _)| Arc::ptr_eq(t, ty)) {
            return *bits;
        }
        let mut bits = 0u64;
        for (k, s) in self.steps.iter().enumerate().take(64) {
            if Arc::ptr_eq(&s.ty, ty) || *s.ty == **ty {
                bits |= 1 << k;
            }
        }
        if cache.len() < TYPE_CACHE {
            cache.push((ty.clone(), bits));
        }
        bits
    }

    /// The list field of step `k` when it is a Kleene step read as an array.
    fn list_of(&self, k: usize) -> Option<usize> {
        self.steps.get(k).and_then(|s| s.list)
    }

    fn deadline(&self, start: i64) -> i64 {
        self.within.map_or(i64::MAX, |d| start.saturating_add(d))
    }

    /// Whether `ev` passes the filter of step `k` (`entering`: as the step's first event).
    #[inline]
    fn passes_step(
        &self,
        k: usize,
        entering: bool,
        ev: &Event,
        caps: &Event,
        eval: &mut EvalWith<'_>,
    ) -> Result<bool, RuntimeError> {
        let Some(s) = self.steps.get(k) else {
            return Ok(false);
        };
        if let Some(v) = s.test.as_ref().and_then(|t| t.value(ev)) {
            return Ok(v.is_true());
        }
        // The value the step's own capture stands for, when it is not the captured one.
        let mut own = None;
        if entering {
            if let Some(first) = &s.first {
                let previous = k
                    .checked_sub(1)
                    .and_then(|p| caps.fields.get(p))
                    .filter(|(_, v)| carries(v, &s.own_fields));
                match previous {
                    Some((_, v)) => own = Some(v.clone()),
                    None => return passes(first, ev, caps, eval),
                }
            }
        }
        if s.reads_self {
            own = Some(Value::Map(ev.fields.clone()));
        }
        if let Some(own) = own {
            return passes(&s.filter, ev, &caps_with(caps, k, own), eval);
        }
        passes(&s.filter, ev, caps, eval)
    }

    /// Applies `ev` to one run: expiry, `.not` clauses, then (when `may_take`) at most one
    /// step; under `.strict()` a run that does not take an event of the sequence's types dies.
    /// `waiting`: the steps taking `ev`'s type ([`SeqOp::steps_of_type`]).
    fn step_run(
        &self,
        run: &mut SeqRun,
        ev: &Event,
        (wm, waiting): (i64, u64),
        may_take: bool,
        eval: &mut EvalWith<'_>,
    ) -> Result<Outcome, RuntimeError> {
        if self.deadline(run.start) < wm {
            return Ok(Outcome::Drop);
        }
        for n in &self.nots {
            if n.kills(ev, &run.caps, eval)? {
                return Ok(Outcome::Drop);
            }
        }
        if may_take {
            if let Some(o) = self.take(run, ev, waiting, eval)? {
                return Ok(o);
            }
        }
        if self.modes.strict && self.steps.iter().any(|s| *s.ty == *ev.event_type) {
            return Ok(Outcome::Drop);
        }
        Ok(Outcome::Keep)
    }

    /// `ev` advances the run by one step or extends its Kleene group (`None`: neither). Under
    /// `.longest()` a trailing Kleene group yields no match per event but one when an event of
    /// its type fails its filter (the group breaks; the run closes).
    fn take(
        &self,
        run: &mut SeqRun,
        ev: &Event,
        waiting: u64,
        eval: &mut EvalWith<'_>,
    ) -> Result<Option<Outcome>, RuntimeError> {
        let n = self.steps.len();
        if let Some(s) = self.steps.get(run.pos) {
            if takes_type(waiting, run.pos, s, ev)
                && self.passes_step(run.pos, true, ev, &run.caps, eval)?
            {
                capture(run, run.pos, ev, self.list_of(run.pos));
                run.kleene = s.all;
                run.pos += 1;
                if run.pos == n && !(s.all && self.modes.longest) {
                    return Ok(Some(Outcome::Match {
                        close: !s.all,
                        took: true,
                    }));
                }
                return Ok(Some(Outcome::Took));
            }
        }
        if run.kleene {
            let k = run.pos - 1;
            if let Some(s) = self.steps.get(k) {
                if takes_type(waiting, k, s, ev) {
                    if self.passes_step(k, false, ev, &run.caps, eval)? {
                        capture(run, k, ev, self.list_of(k));
                        if run.pos == n && !self.modes.longest {
                            return Ok(Some(Outcome::Match {
                                close: false,
                                took: true,
                            }));
                        }
                        return Ok(Some(Outcome::Took));
                    }
                    if run.pos == n && self.modes.longest {
                        return Ok(Some(Outcome::Match {
                            close: true,
                            took: false,
                        }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Feeds one event; appends the completed matches to `matches` in run-creation order.
    pub(crate) fn on_event(
        &self,
        ev: &Event,
        eval: &mut EvalWith<'_>,
        matches: &mut Vec<Match>,
    ) -> Result<(), RuntimeError> {
        let key = runs::partition_key_ref(&self.key, ev, eval)?;
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *guard;
        let ts = ev.timestamp_ns;
        let wm = st.watermark.map_or(ts, |w| w.max(ts));
        st.watermark = Some(wm);
        expire(st, wm, &self.out.empty_caps.fields);
        // The steps of this event's type, found once per event.
        let waiting = self.steps_of_type(&mut st.types, &ev.event_type);

        let mut taken = false;
        let mut slot = key.get(&st.index);
        let SeqState {
            slots,
            live,
            flat,
            spare,
            out_lists,
            ..
        } = &mut *st;
        if let Some(runs) = slot.and_then(|s| slots.get_mut(s)).map(|p| &mut p.runs) {
            let empty = &self.out.empty_caps.fields;
            // Without `.strict()` and `.not`, a live run that waits for another type (and
            // collects no Kleene group) ignores the event: it is passed over with a bit test.
            let quick = !self.modes.strict && self.nots.is_empty();
            taken = runs::feed(
                runs,
                self.modes.stnm,
                |run, may_take| {
                    if quick
                        && !run.kleene
                        && run.pos < 64
                        && waiting & (1u64 << run.pos) == 0
                        && self.deadline(run.start) >= wm
                    {
                        return Ok(Outcome::Keep);
                    }
                    self.step_run(run, ev, (wm, waiting), may_take, eval)
                },
                |run| matches.push(self.matched(flat, out_lists, run, ev)),
                |run| {
                    *live = live.saturating_sub(1);
                    // A matched run's list is shared with its match: taken back by `recycle`.
                    let caps = std::mem::replace(&mut run.caps.fields, empty.clone());
                    keep_spare(spare, caps, empty);
                },
            )?;
        }

        let first = &self.steps[0];
        // `.stnm()`: an event a run took does not open another one.
        if takes_type(waiting, 0, first, ev)
            && !(self.modes.stnm && taken)
            && self.passes_step(0, true, ev, &self.out.empty_caps, eval)?
        {
            if st.live >= self.max_runs {
                self.drop_oldest(st);
                // Dropping may have freed this partition's slot.
                slot = None;
            }
            let id = st.next_id;
            st.next_id += 1;
            let empty = &self.out.empty_caps;
            let caps = match st.spare.pop() {
                Some(fields) => Event {
                    event_type: empty.event_type.clone(),
                    timestamp_ns: empty.timestamp_ns,
                    fields,
                },
                None => empty.clone(),
            };
            let mut run = SeqRun {
                id,
                start: ts,
                pos: 1,
                kleene: first.all,
                caps,
                counts: if self.derive_counts {
                    Vec::new()
                } else {
                    vec![0; self.steps.len()]
                },
            };
            capture(&mut run, 0, ev, self.list_of(0));
            if first.all && self.steps.len() == 1 && !self.modes.longest {
                matches.push(self.matched(&mut st.flat, &mut st.out_lists, &run, ev));
            }
            let slot = match slot {
                Some(s) => s,
                None => st.slot_for(key.into_owned()),
            };
            st.order.push_back((self.deadline(ts), id, slot));
            st.live += 1;
            if let Some(p) = st.slots.get_mut(slot) {
                p.idle = false;
                p.runs.push(run);
            }
            if runs::needs_compaction(st.order.len(), st.live) {
                st.compact();
            }
        }
        Ok(())
    }

    /// Takes back the capture lists of matches handled downstream (`matches`, emptied): a list
    /// nothing else holds any more is reset to the empty captures and kept for a new run.
    pub(crate) fn recycle(&self, matches: &mut Vec<Match>) {
        if matches.is_empty() {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let empty = &self.out.empty_caps.fields;
        for (_, caps) in matches.drain(..) {
            keep_spare(&mut st.spare, caps.fields, empty);
        }
    }

    /// Time reached `now` without an event of this stream (a timer tick): expires the runs
    /// whose `.within` the raised watermark passes.
    pub(crate) fn on_time(&self, now: i64) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let wm = st.watermark.map_or(now, |w| w.max(now));
        st.watermark = Some(wm);
        expire(&mut st, wm, &self.out.empty_caps.fields);
    }

    /// Drops the oldest live run (the live-run cap was hit).
    fn drop_oldest(&self, st: &mut SeqState) {
        while let Some((_, id, slot)) = st.order.pop_front() {
            if !st.remove_run(slot, id, &self.out.empty_caps.fields) {
                continue;
            }
            st.dropped += 1;
            if st.dropped.is_power_of_two() {
                tracing::warn!(
                    stream = %self.out.result_type,
                    cap = self.max_runs,
                    dropped = st.dropped,
                    "sequence live-run cap hit; oldest partial matches dropped"
                );
            }
            return;
        }
    }

    /// The event passed on for a completed match, and its captures. With an `.emit` of
    /// capture fields ([`SeqOp::capture_emit`]) it is the output event itself, built from the
    /// captures, and the captures passed on are the empty ones (nothing reads them).
    fn matched(
        &self,
        flat: &mut FlatNames,
        out_lists: &mut OutLists,
        run: &SeqRun,
        ev: &Event,
    ) -> Match {
        if let Some((emit, ty)) = &self.emit {
            let fields = out_lists.take(emit.len(), |list, seen| {
                emit.fill_from_captures(list, seen, &run.caps);
            });
            let out = Event {
                event_type: ty.clone(),
                timestamp_ns: ev.timestamp_ns,
                fields,
            };
            return (out, self.out.empty_caps.clone());
        }
        let out = self.out.event(flat, &run.caps, ev.timestamp_ns);
        let counts = self.counts.then(|| self.counts_of(run));
        (out, alias_with_counts(&run.caps, counts.as_deref()))
    }

    /// The events each step of `run` took.
    fn counts_of<'r>(&self, run: &'r SeqRun) -> std::borrow::Cow<'r, [u32]> {
        if self.derive_counts {
            let taken = (0..self.steps.len()).map(|k| u32::from(k < run.pos));
            std::borrow::Cow::Owned(taken.collect())
        } else {
            std::borrow::Cow::Borrowed(&run.counts)
        }
    }
}

/// Whether the operators after a pattern read the match event's own fields (bare names,
/// `.emit()`, `.select`, `.process`, `.to` before any `.emit`): `Some(false)` if an `.emit(…)`
/// replaces the event before anything reads it, `None` if nothing decides (then it depends on
/// whether a downstream stream consumes the matches).
pub(crate) fn chain_reads_match(
    ops: &[ast::StreamOp],
    captures: &[String],
    c: &Compiler,
) -> Option<bool> {
    for op in ops {
        let reads = |op: &ast::StreamOp| op.args.iter().any(|a| reads_event(&a.value, captures, c));
        match op.kind() {
            OpKind::Within | OpKind::Not | OpKind::PartitionBy | OpKind::Context => {}
            OpKind::Where | OpKind::Having => {
                if reads(op) {
                    return Some(true);
                }
            }
            OpKind::Emit => {
                let fields = op
                    .args
                    .iter()
                    .filter(|a| a.name.as_ref().is_none_or(|n| n.name != "context"));
                let mut fields = fields.peekable();
                if fields.peek().is_none() {
                    return Some(true);
                }
                return Some(fields.any(|a| reads_event(&a.value, captures, c)));
            }
            _ => return Some(true),
        }
    }
    None
}

/// Whether `e` may read a field of the current event: a bare name that is not a capture (or
/// another name of one, e.g. a join input's type) or a top-level binding, or a call of a user function (its body may read fields by name).
/// Conservative: unknown expression kinds count as reading.
fn reads_event(e: &ast::Expr, captures: &[String], c: &Compiler) -> bool {
    let r = |x: &ast::Expr| reads_event(x, captures, c);
    match &e.kind {
        ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Str(_)
        | ExprKind::Bool(_)
        | ExprKind::Null
        | ExprKind::Duration(_)
        | ExprKind::Timestamp(_) => false,
        ExprKind::Name(id) => {
            !captures.contains(&id.name)
                && !c.capture_aliases.iter().any(|(alias, _)| *alias == id.name)
                && !c.globals.contains_key(&id.name)
        }
        ExprKind::Field { base, .. } => r(base),
        ExprKind::Array(items) => items.iter().any(r),
        ExprKind::Map(entries) => entries.iter().any(|m| r(&m.value) || r(&m.key)),
        ExprKind::Unary { operand, .. } => r(operand),
        ExprKind::Binary { lhs, rhs, .. } => r(lhs) || r(rhs),
        ExprKind::Call { callee, args, .. } => {
            c.fns.contains_key(&callee.name) || args.iter().any(r)
        }
        ExprKind::Index { base, index } => r(base) || r(index),
        ExprKind::If { cond, then, else_ } => r(cond) || r(then) || r(else_),
        _ => true,
    }
}

fn capture(run: &mut SeqRun, step: usize, ev: &Event, list: Option<usize>) {
    if let Some(slot) = Arc::make_mut(&mut run.caps.fields).get_mut(step) {
        slot.1 = Value::Map(ev.fields.clone());
    }
    if let Some(l) = list {
        kleene::push(&mut run.caps, l, ev);
    }
    if let Some(n) = run.counts.get_mut(step) {
        *n = n.saturating_add(1);
    }
}

/// Whether the operators after a pattern use `count(capture)` (then matches carry the counts).
pub(crate) fn uses_capture_count(ops: &[ast::StreamOp], captures: &[String]) -> bool {
    fn walk(e: &ast::Expr, captures: &[String]) -> bool {
        let counts_capture = match &e.kind {
            ExprKind::Call { callee, args, .. } => {
                callee.name == "count"
                    && matches!(args.as_slice(), [a] if matches!(&a.kind, ExprKind::Name(id) if captures.contains(&id.name)))
            }
            _ => false,
        };
        counts_capture || any_child(e, |x| walk(x, captures))
    }
    ops.iter()
        .flat_map(|o| o.args.iter())
        .any(|a| walk(&a.value, captures))
}

/// The captures passed on with a match: one map per capture, then, when `counts` is given, the
/// number of events each capture took as `#<capture>` (read by `count(capture)`).
pub(crate) fn alias_with_counts(caps: &Event, counts: Option<&[u32]>) -> Event {
    let Some(counts) = counts else {
        return caps.clone();
    };
    let mut fields: Fields = caps.fields.as_ref().clone();
    for ((name, _), n) in caps.fields.iter().zip(counts) {
        fields.push((Arc::from(format!("#{name}")), Value::Int(i64::from(*n))));
    }
    Event {
        event_type: caps.event_type.clone(),
        timestamp_ns: caps.timestamp_ns,
        fields: Arc::new(fields),
    }
}

/// Whether step `k` (`s`) takes events of `ev`'s type (`waiting`: the bits of
/// [`SeqOp::steps_of_type`], which covers the first 64 steps).
#[inline]
fn takes_type(waiting: u64, k: usize, s: &StepCode, ev: &Event) -> bool {
    if k < 64 {
        waiting & (1u64 << k) != 0
    } else {
        *s.ty == *ev.event_type
    }
}

/// Keeps a capture list nothing else holds as a spare, reset to the values of `empty` (the
/// empty captures: the captured events are released now). Lists of another length
/// (`#<capture>` counts added) are dropped.
fn keep_spare(spare: &mut Vec<Arc<Fields>>, mut fields: Arc<Fields>, empty: &Arc<Fields>) {
    if spare.len() >= SPARE_CAPS || Arc::ptr_eq(&fields, empty) {
        return;
    }
    if let Some(list) = Arc::get_mut(&mut fields) {
        if list.len() != empty.len() {
            return;
        }
        for (slot, (_, v)) in list.iter_mut().zip(empty.iter()) {
            slot.1 = v.clone();
        }
        spare.push(fields);
    }
}

/// Drops runs whose deadline is before the watermark, oldest first.
fn expire(st: &mut SeqState, wm: i64, empty: &Arc<Fields>) {
    while let Some(&(deadline, id, slot)) = st.order.front() {
        if deadline >= wm {
            break;
        }
        st.order.pop_front();
        st.remove_run(slot, id, empty);
    }
}

// ----- checkpoint -------------------------------------------------------------------------------

fn ck_err(msg: &str) -> RuntimeError {
    RuntimeError::Checkpoint(format!("sequence state: {msg}"))
}

/// Decoded sequence state, applied only once everything parsed (restore is all-or-nothing).
pub(crate) struct Restored(SeqState);

impl SeqOp {
    /// Serializes the live runs (in creation order) and the watermark.
    pub(crate) fn snapshot(&self) -> serde_json::Value {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut live: Vec<(&KeyRepr, &SeqRun)> = st
            .slots
            .iter()
            .flat_map(|p| p.runs.iter().map(move |r| (&p.key, r)))
            .collect();
        live.sort_by_key(|(_, r)| r.id);
        let runs: Vec<serde_json::Value> = live
            .into_iter()
            .map(|(k, r)| {
                serde_json::json!({
                    "id": r.id,
                    "k": serde_json::to_value(k).unwrap_or(serde_json::Value::Null),
                    "s": r.start,
                    "p": r.pos,
                    "kl": r.kleene,
                    "c": event_json(&r.caps),
                    "cn": self.counts_of(r),
                })
            })
            .collect();
        serde_json::json!({
            "wm": st.watermark,
            "next": st.next_id,
            "dropped": st.dropped,
            "runs": runs,
        })
    }

    /// Parses a [`SeqOp::snapshot`]; `None` (no entry) is the empty state.
    pub(crate) fn parse_snapshot(
        &self,
        j: Option<&serde_json::Value>,
    ) -> Result<Restored, RuntimeError> {
        let mut st = SeqState::default();
        let Some(j) = j else {
            return Ok(Restored(st));
        };
        st.watermark = opt_i64_field(j, "wm").map_err(|()| ck_err("watermark"))?;
        st.next_id = u64_field(j, "next").ok_or_else(|| ck_err("next id"))?;
        st.dropped = u64_field(j, "dropped").ok_or_else(|| ck_err("dropped"))?;
        let n = self.steps.len();
        for r in j
            .get("runs")
            .and_then(|v| v.as_array())
            .ok_or_else(|| ck_err("runs"))?
        {
            let (id, key, start) = runs::run_head(r, ck_err)?;
            let pos = r
                .get("p")
                .and_then(|v| v.as_u64())
                .and_then(|p| usize::try_from(p).ok())
                .filter(|p| (1..=n).contains(p))
                .ok_or_else(|| ck_err("run step"))?;
            let kleene = r
                .get("kl")
                .and_then(|v| v.as_bool())
                .ok_or_else(|| ck_err("run kleene"))?;
            let caps = runs::run_caps(r, &self.out.empty_caps, ck_err)?;
            let slot = st.slot_for(key);
            st.order.push_back((self.deadline(start), id, slot));
            st.live += 1;
            // Older checkpoints have no counts: one event per captured step.
            let counts: Vec<u32> = match r.get("cn") {
                Some(c) => serde_json::from_value(c.clone())
                    .ok()
                    .filter(|c: &Vec<u32>| c.len() == n)
                    .ok_or_else(|| ck_err("run counts"))?,
                None => caps
                    .fields
                    .iter()
                    .take(n)
                    .map(|(_, v)| u32::from(!v.is_null()))
                    .collect(),
            };
            let Some(part) = st.slots.get_mut(slot) else {
                return Err(ck_err("run slot"));
            };
            part.runs.push(SeqRun {
                id,
                start,
                pos,
                kleene,
                caps,
                counts: if self.derive_counts {
                    Vec::new()
                } else {
                    counts
                },
            });
        }
        Ok(Restored(st))
    }

    /// Installs state from [`SeqOp::parse_snapshot`].
    pub(crate) fn install(&self, r: Restored) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = r.0;
    }
}
