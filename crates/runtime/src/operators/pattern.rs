//! Named patterns (VPL.md §8): `pattern P = SEQ(…) | AND(…) | OR(…) | a -> b …` with `NOT`,
//! quantifiers `+ * ?`, `where`, `as`, `within` and `partition by`, read by `stream S = P …`.
//!
//! **Semantics** (SASE-style, skip-till-next-match, like §7 sequences):
//!
//! * Every event that the pattern's first items can take opens a run (one run per such event).
//! * For one event, per open run of its partition in creation order: a run past its deadline
//!   (`start + within < clock`) expires; an event matching an active `NOT` (or a stream
//!   `.not(…)`) kills the run; otherwise the run takes the event if an item it waits for accepts
//!   it (type and filter; filters read the candidate's fields by bare name and earlier captures
//!   as `alias.field`). Items a run skips (the event fits none of them) are simply ignored.
//! * `SEQ` takes its items in order; the next item wins over another event for a Kleene item
//!   (`+`, `*`) being collected. `AND` takes its items in any order, `OR` commits to the first
//!   item that takes an event. `?` and `*` items may be skipped.
//! * A run whose pattern is complete after taking an event emits a match (timestamp: that event)
//!   and closes, unless a Kleene item could take more: then every further event it takes emits
//!   again (like a trailing `all`). A Kleene capture holds its most recent event; one read as
//!   a value is also the array of its events (`super::kleene`).
//! * `NOT T` between two items kills the run if a `T` arrives in between; at the end it is an
//!   absence: the match completes when the clock passes the deadline (timestamp: the deadline).
//!   A leading `NOT T` rejects a start when a `T` was seen within `within` before it.
//! * The clock is the largest event time the stream has seen (events of every type it reads),
//!   and timer ticks (heartbeats). End of input confirms no absence.
//! * Memory: runs expire at their deadline; live runs are capped per stream
//!   ([`crate::EngineOptions::max_sequence_runs`]): beyond it the oldest run is dropped and
//!   counted (`EngineStats::runs_dropped`).

use super::kleene;
use super::runs::{
    self, caps_with, passes, EvalWith, FlatNames, Match, MatchOut, Modes, NotClause, Outcome,
};
use super::self_ref::{carries, own_fields, refs_capture, without_own};
use super::sequence::{alias_with_counts, chain_reads_match, uses_capture_count};
use crate::codec::{event_json, opt_i64_field, u64_field};
use crate::compile::{Compiler, ExprFn};
use crate::error::RuntimeError;
use crate::event::Event;
use crate::key::{FastMap, KeyRepr};
use crate::value::Value;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use varpulis_vpl::ast::{self, ExprKind, OpKind, PatternDecl, PatternKind, Quantifier};

/// One node of the compiled pattern (nodes are stored in preorder; kids by index).
enum Node {
    Item {
        ty: Arc<str>,
        filter: Option<ExprFn>,
        /// The filter for a Kleene item's first event: without the conjuncts that read the
        /// item's own capture (`all B where v > b.v as b` compares with the previous `b`; the
        /// first one has none).
        first_filter: Option<ExprFn>,
        /// A non-Kleene item whose filter reads its own capture: the filter sees the candidate
        /// under it.
        reads_self: bool,
        /// A Kleene item whose filter reads its own capture: the fields it reads from it, and
        /// the capture of the item before it in its `SEQ` (its first event compares with that
        /// one when it carries those fields, else uses `first_filter`).
        own_fields: Vec<Arc<str>>,
        prev_cap: Option<usize>,
        /// Capture index.
        cap: usize,
        /// A Kleene item read as an array: the captures field holding its events.
        list: Option<usize>,
        min: u32,
        /// `u32::MAX`: unbounded (Kleene).
        max: u32,
    },
    Not {
        ty: Arc<str>,
        filter: Option<ExprFn>,
    },
    Seq(Vec<usize>),
    And(Vec<usize>),
    Or(Vec<usize>),
}

/// One partial match: progress per node (`Item`: events taken; `Seq`: index of the active
/// item; `Or`: chosen item + 1) and the captures.
#[derive(Clone)]
struct PRun {
    id: u64,
    start: i64,
    prog: Vec<u32>,
    /// One field per capture name: map of the captured event's fields (`null` until captured).
    caps: Event,
}

#[derive(Default)]
struct PatState {
    clock: Option<i64>,
    next_id: u64,
    parts: FastMap<KeyRepr, Vec<PRun>>,
    /// Runs with a deadline, by (deadline, id).
    deadlines: BTreeMap<(i64, u64), KeyRepr>,
    /// Live runs in creation order (entries of closed runs are skipped).
    order: VecDeque<u64>,
    /// Partition of every live run.
    live: FastMap<u64, KeyRepr>,
    /// Per partition, the last time a leading `NOT` item matched (one slot per leading `NOT`).
    leading: FastMap<KeyRepr, Vec<Option<i64>>>,
    /// Interned `<capture>_<field>` names.
    flat: FlatNames,
}

/// The operator of a stream reading a named pattern.
pub(crate) struct PatternOp {
    nodes: Vec<Node>,
    root: usize,
    /// Root-level leading `NOT` nodes (checked against history when a run opens).
    leading: Vec<usize>,
    nots: Vec<NotClause>,
    within: Option<i64>,
    key: Option<runs::PartitionKey>,
    max_runs: usize,
    out: MatchOut,
    /// For each capture, its item node (matches carry `#<capture>` counts when `count_captures`).
    capture_nodes: Vec<usize>,
    count_captures: bool,
    /// `.strict()`, `.stnm()`, `.longest()` (a complete run whose Kleene item could take more
    /// matches once, when an event of a Kleene item's type fails to extend it).
    modes: Modes,
    /// Types of the items (`strict`) and of the Kleene items (`longest`).
    item_types: Vec<Arc<str>>,
    kleene_types: Vec<Arc<str>>,
    state: Mutex<PatState>,
}

struct Builder<'c> {
    c: &'c mut Compiler,
    nodes: Vec<Node>,
    captures: Vec<String>,
    /// Kleene captures read as arrays (their list field follows the capture fields).
    arrays: Vec<String>,
}

impl Builder<'_> {
    fn node(&mut self, p: &ast::PatternExpr) -> usize {
        let at = self.nodes.len();
        self.nodes.push(Node::Seq(Vec::new()));
        let node = match &p.kind {
            PatternKind::Item(i) => {
                let cap = self
                    .captures
                    .iter()
                    .position(|c| *c == i.capture().name)
                    .unwrap_or(0);
                let (min, max) = match i.quant {
                    Quantifier::One => (1, 1),
                    Quantifier::Plus => (1, u32::MAX),
                    Quantifier::Star => (0, u32::MAX),
                    Quantifier::Optional => (0, 1),
                };
                let own = i.capture().name.as_str();
                let first = match &i.filter {
                    Some(f) if max == u32::MAX => without_own(f, own),
                    other => other.clone(),
                };
                let own_fields = match &i.filter {
                    Some(f) if max == u32::MAX => own_fields(f, own)
                        .iter()
                        .map(|n| self.c.intern(n))
                        .collect(),
                    _ => Vec::new(),
                };
                Node::Item {
                    ty: self.c.intern(&i.event.name),
                    filter: i.filter.as_ref().map(|f| self.c.expr(f)),
                    first_filter: first.as_ref().map(|f| self.c.expr(f)),
                    reads_self: max != u32::MAX
                        && i.filter.as_ref().is_some_and(|f| refs_capture(f, own)),
                    own_fields,
                    prev_cap: None,
                    cap,
                    list: self
                        .arrays
                        .iter()
                        .position(|a| *a == i.capture().name)
                        .filter(|_| max == u32::MAX)
                        .map(|k| self.captures.len() + k),
                    min,
                    max,
                }
            }
            PatternKind::Not(i) => Node::Not {
                ty: self.c.intern(&i.event.name),
                filter: i.filter.as_ref().map(|f| self.c.expr(f)),
            },
            PatternKind::Seq(kids) => {
                let kids: Vec<usize> = kids.iter().map(|k| self.node(k)).collect();
                for pair in kids.windows(2) {
                    let prev = match &self.nodes[pair[0]] {
                        Node::Item { cap, .. } => Some(*cap),
                        _ => None,
                    };
                    if let Some(Node::Item { prev_cap, .. }) = self.nodes.get_mut(pair[1]) {
                        *prev_cap = prev;
                    }
                }
                Node::Seq(kids)
            }
            PatternKind::And(kids) => Node::And(kids.iter().map(|k| self.node(k)).collect()),
            PatternKind::Or(kids) => Node::Or(kids.iter().map(|k| self.node(k)).collect()),
        };
        self.nodes[at] = node;
        at
    }
}

fn duration_ns(e: &ast::Expr) -> Option<i64> {
    match e.kind {
        ExprKind::Duration(d) => i64::try_from(d).ok(),
        _ => None,
    }
}

impl PatternOp {
    /// Compiles pattern `p` for stream `s` (whose `.within`, `.partition_by` and `.not` apply to
    /// it) and switches `c` to the pattern's capture names for the stream's other operators.
    pub(crate) fn compile(
        c: &mut Compiler,
        p: &PatternDecl,
        s: &ast::StreamDecl,
        max_runs: usize,
    ) -> PatternOp {
        let captures: Vec<String> = p
            .body
            .captures()
            .into_iter()
            .map(|i| i.capture().name.clone())
            .collect();
        c.enter_pattern(captures.clone());
        let kleene: Vec<String> = p
            .body
            .captures()
            .into_iter()
            .filter(|i| matches!(i.quant, Quantifier::Plus | Quantifier::Star))
            .map(|i| i.capture().name.clone())
            .collect();
        let item_filters = p.body.items().into_iter().filter_map(|i| i.filter.as_ref());
        let op_args = s.ops.iter().flat_map(|o| o.args.iter().map(|a| &a.value));
        let arrays = kleene::array_captures(item_filters.chain(op_args), &kleene);
        c.array_captures = arrays.clone();
        let mut b = Builder {
            c,
            nodes: Vec::new(),
            captures: captures.clone(),
            arrays: arrays.clone(),
        };
        let root = b.node(&p.body);
        let nodes = b.nodes;
        let c = b.c;
        let leading = match &nodes[root] {
            Node::Seq(kids) => kids
                .iter()
                .take_while(|k| matches!(nodes[**k], Node::Not { .. }))
                .copied()
                .collect(),
            _ => Vec::new(),
        };
        let mut within = p.within.last().and_then(duration_ns);
        let mut key = p.partition_by.as_ref().map(|k| {
            let e = ast::Expr::new(ExprKind::Name(k.clone()), k.span);
            runs::PartitionKey::compile(c, &e)
        });
        let mut nots = Vec::new();
        for op in &s.ops {
            let arg = op.first_positional();
            match (op.kind(), arg.map(|a| &a.kind)) {
                (OpKind::Within, Some(_)) => {
                    if let Some(d) = arg.and_then(duration_ns) {
                        within = Some(d);
                    }
                }
                (OpKind::PartitionBy, Some(ExprKind::Name(_))) => {
                    key = arg.map(|e| runs::PartitionKey::compile(c, e));
                }
                (OpKind::Not, _) => nots.extend(NotClause::compile(c, arg)),
                _ => {}
            }
        }
        let flatten_needed = chain_reads_match(&s.ops, &captures, c);
        let out = MatchOut::new(c, &s.name.name, &captures, &arrays, flatten_needed);
        let capture_nodes = (0..captures.len())
            .map(|ci| {
                nodes
                    .iter()
                    .position(|n| matches!(n, Node::Item { cap, .. } if *cap == ci))
                    .unwrap_or(0)
            })
            .collect();
        let mut item_types: Vec<Arc<str>> = Vec::new();
        let mut kleene_types: Vec<Arc<str>> = Vec::new();
        for n in &nodes {
            if let Node::Item { ty, max, .. } = n {
                item_types.push(ty.clone());
                if *max == u32::MAX {
                    kleene_types.push(ty.clone());
                }
            }
        }
        let trend = p.body.items().iter().any(|i| i.trend);
        PatternOp {
            modes: Modes::of(&s.ops, trend),
            item_types,
            kleene_types,
            count_captures: uses_capture_count(&s.ops, &captures),
            capture_nodes,
            nodes,
            root,
            leading,
            nots,
            within,
            key,
            max_runs: max_runs.max(1),
            out,
            state: Mutex::new(PatState::default()),
        }
    }

    /// Whether another stream consumes this one (see `SeqOp::set_feeds_downstream`).
    pub(crate) fn set_feeds_downstream(&mut self, feeds: bool) {
        self.out.set_feeds_downstream(feeds);
    }

    fn deadline(&self, start: i64) -> Option<i64> {
        self.within.map(|d| start.saturating_add(d))
    }

    // ----- the matcher ----------------------------------------------------------------------

    /// Whether node `n` can be complete in state `prog` (every item that must match did).
    fn nullable(&self, n: usize, prog: &[u32]) -> bool {
        match &self.nodes[n] {
            Node::Item { min, .. } => prog[n] >= *min,
            Node::Not { .. } => true,
            Node::Seq(kids) => kids[(prog[n] as usize).min(kids.len())..]
                .iter()
                .all(|k| self.nullable(*k, prog)),
            Node::And(kids) => kids.iter().all(|k| self.nullable(*k, prog)),
            Node::Or(kids) => match prog[n] {
                0 => kids.iter().any(|k| self.nullable(*k, prog)),
                c => kids
                    .get(c as usize - 1)
                    .is_some_and(|k| self.nullable(*k, prog)),
            },
        }
    }

    /// Whether a Kleene item of node `n` could still take events (the run stays open).
    fn extendable(&self, n: usize, prog: &[u32]) -> bool {
        match &self.nodes[n] {
            Node::Item { min, max, .. } => *max == u32::MAX && prog[n] >= (*min).max(1),
            Node::Not { .. } => false,
            Node::Seq(kids) => {
                let at = prog[n] as usize;
                let Some(cur) = kids.get(at) else {
                    return false;
                };
                if self.extendable(*cur, prog)
                    && kids[at + 1..].iter().all(|k| self.nullable(*k, prog))
                {
                    return true;
                }
                // A later Kleene item reachable through items that may be skipped (`SEQ(A, B*)`
                // keeps collecting Bs after matching on A).
                if !self.nullable(*cur, prog) {
                    return false;
                }
                for k in &kids[at + 1..] {
                    match &self.nodes[*k] {
                        Node::Item { max, .. } if *max == u32::MAX => return true,
                        Node::Not { .. } => {}
                        _ if self.nullable(*k, prog) => {}
                        _ => return false,
                    }
                }
                false
            }
            Node::And(kids) => kids.iter().any(|k| self.extendable(*k, prog)),
            Node::Or(kids) => match prog[n] {
                0 => false,
                c => kids
                    .get(c as usize - 1)
                    .is_some_and(|k| self.extendable(*k, prog)),
            },
        }
    }

    /// `NOT` nodes guarding the run now (between the last item taken and the next one).
    fn active_nots(&self, n: usize, prog: &[u32], out: &mut Vec<usize>) {
        match &self.nodes[n] {
            Node::Seq(kids) => {
                let at = prog[n] as usize;
                let Some(cur) = kids.get(at) else { return };
                self.active_nots(*cur, prog, out);
                if !self.nullable(*cur, prog) || !self.started(*cur, prog) {
                    return;
                }
                for k in &kids[at + 1..] {
                    match &self.nodes[*k] {
                        Node::Not { .. } => out.push(*k),
                        _ if self.nullable(*k, prog) => {}
                        _ => break,
                    }
                }
            }
            Node::And(kids) => kids.iter().for_each(|k| self.active_nots(*k, prog, out)),
            Node::Or(kids) => {
                if let Some(k) = (prog[n] as usize).checked_sub(1).and_then(|c| kids.get(c)) {
                    self.active_nots(*k, prog, out);
                }
            }
            _ => {}
        }
    }

    /// Whether node `n` took at least one event.
    fn started(&self, n: usize, prog: &[u32]) -> bool {
        match &self.nodes[n] {
            Node::Item { .. } => prog[n] > 0,
            Node::Not { .. } => false,
            Node::Seq(kids) => {
                let at = prog[n] as usize;
                at > 0 || kids.first().is_some_and(|k| self.started(*k, prog))
            }
            Node::And(kids) => kids.iter().any(|k| self.started(*k, prog)),
            Node::Or(_) => prog[n] > 0,
        }
    }

    /// Offers `ev` to node `n`; on success updates `run` and returns true.
    fn offer(
        &self,
        n: usize,
        run: &mut PRun,
        ev: &Event,
        eval: &mut EvalWith<'_>,
    ) -> Result<bool, RuntimeError> {
        match &self.nodes[n] {
            Node::Item {
                ty,
                filter,
                first_filter,
                reads_self,
                own_fields,
                prev_cap,
                cap,
                list,
                max,
                ..
            } => {
                if **ty != *ev.event_type || run.prog[n] >= *max {
                    return Ok(false);
                }
                // What the item's own capture stands for in its filter, when not the captured
                // event: the candidate, or (a Kleene item's first event) the previous item's.
                let mut own = reads_self.then(|| Value::Map(ev.fields.clone()));
                let mut filter = filter;
                if run.prog[n] == 0 && !own_fields.is_empty() {
                    let previous = prev_cap
                        .and_then(|p| run.caps.fields.get(p))
                        .filter(|(_, v)| carries(v, own_fields));
                    match previous {
                        Some((_, v)) => own = Some(v.clone()),
                        None => filter = first_filter,
                    }
                }
                let ok = if let Some(own) = own {
                    passes(filter, ev, &caps_with(&run.caps, *cap, own), eval)?
                } else {
                    passes(filter, ev, &run.caps, eval)?
                };
                if !ok {
                    return Ok(false);
                }
                run.prog[n] += 1;
                if let Some(slot) = Arc::make_mut(&mut run.caps.fields).get_mut(*cap) {
                    slot.1 = Value::Map(ev.fields.clone());
                }
                if let Some(l) = list {
                    kleene::push(&mut run.caps, *l, ev);
                }
                Ok(true)
            }
            Node::Not { .. } => Ok(false),
            Node::Seq(kids) => {
                let at = run.prog[n] as usize;
                // Before the sequence took anything, its items are tried in order; after, the
                // next items win over the current one (which may be a Kleene item collecting).
                let fresh = kids.get(at).is_some_and(|k| !self.started(*k, &run.prog));
                if fresh {
                    if let Some(k) = kids.get(at) {
                        if self.offer(*k, run, ev, eval)? {
                            return Ok(true);
                        }
                    }
                }
                // The next items (an item may be skipped when it can be complete).
                let mut j = at;
                while j + 1 < kids.len() {
                    if !self.nullable(kids[j], &run.prog) {
                        break;
                    }
                    j += 1;
                    if matches!(self.nodes[kids[j]], Node::Not { .. }) {
                        continue;
                    }
                    if self.offer(kids[j], run, ev, eval)? {
                        run.prog[n] = j as u32;
                        return Ok(true);
                    }
                }
                match kids.get(at) {
                    Some(k) if !fresh => self.offer(*k, run, ev, eval),
                    _ => Ok(false),
                }
            }
            Node::And(kids) => {
                for k in kids {
                    if self.offer(*k, run, ev, eval)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Node::Or(kids) => match run.prog[n] {
                0 => {
                    for (i, k) in kids.iter().enumerate() {
                        if self.offer(*k, run, ev, eval)? {
                            run.prog[n] = i as u32 + 1;
                            return Ok(true);
                        }
                    }
                    Ok(false)
                }
                c => match kids.get(c as usize - 1) {
                    Some(k) => self.offer(*k, run, ev, eval),
                    None => Ok(false),
                },
            },
        }
    }

    /// Whether the run, complete, still waits for an absence (an active trailing `NOT`).
    fn awaits_absence(&self, run: &PRun) -> bool {
        let mut nots = Vec::new();
        self.active_nots(self.root, &run.prog, &mut nots);
        !nots.is_empty()
    }

    /// What `ev` does to `run`: killed by a `NOT`, takes the event (maybe completing; only when
    /// `may_take`), or nothing (`.strict()`: then it dies if the event is of an item's type).
    fn step(
        &self,
        run: &mut PRun,
        ev: &Event,
        may_take: bool,
        eval: &mut EvalWith<'_>,
    ) -> Result<Outcome, RuntimeError> {
        for n in &self.nots {
            if n.kills(ev, &run.caps, eval)? {
                return Ok(Outcome::Drop);
            }
        }
        let mut nots = Vec::new();
        self.active_nots(self.root, &run.prog, &mut nots);
        for k in nots {
            if let Node::Not { ty, filter } = &self.nodes[k] {
                if **ty == *ev.event_type && passes(filter, ev, &run.caps, eval)? {
                    return Ok(Outcome::Drop);
                }
            }
        }
        if may_take {
            let complete =
                |run: &PRun| self.nullable(self.root, &run.prog) && !self.awaits_absence(run);
            if self.offer(self.root, run, ev, eval)? {
                if !complete(run) {
                    return Ok(Outcome::Took);
                }
                let more = self.extendable(self.root, &run.prog);
                if more && self.modes.longest {
                    return Ok(Outcome::Took);
                }
                return Ok(Outcome::Match {
                    close: !more,
                    took: true,
                });
            }
            if self.modes.longest
                && self.kleene_types.iter().any(|t| **t == *ev.event_type)
                && complete(run)
                && self.extendable(self.root, &run.prog)
            {
                return Ok(Outcome::Match {
                    close: true,
                    took: false,
                });
            }
        }
        if self.modes.strict && self.item_types.iter().any(|t| **t == *ev.event_type) {
            return Ok(Outcome::Drop);
        }
        Ok(Outcome::Keep)
    }

    // ----- events and time ------------------------------------------------------------------

    /// Feeds one event: completes absences whose deadline the event's time passes, then
    /// advances the runs of its partition, then may open a run. Returns the matches in order
    /// (absences by deadline, then runs by creation) and counts dropped runs in `dropped`.
    pub(crate) fn on_event(
        &self,
        ev: &Event,
        eval: &mut EvalWith<'_>,
        dropped: &mut u64,
    ) -> Result<Vec<Match>, RuntimeError> {
        let key = runs::partition_key(&self.key, ev, eval)?;
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *guard;
        let ts = ev.timestamp_ns;
        let mut matches = self.advance_clock(st, ts);
        // Leading `NOT`s remember when they last matched in this partition.
        for (slot, n) in self.leading.iter().enumerate() {
            if let Node::Not { ty, filter } = &self.nodes[*n] {
                if **ty == *ev.event_type && passes(filter, ev, &self.out.empty_caps, eval)? {
                    let seen = st
                        .leading
                        .entry(key.clone())
                        .or_insert_with(|| vec![None; self.leading.len()]);
                    if let Some(s) = seen.get_mut(slot) {
                        *s = Some(s.map_or(ts, |t| t.max(ts)));
                    }
                }
            }
        }
        let mut taken = false;
        let PatState {
            parts,
            live,
            flat,
            deadlines,
            ..
        } = &mut *st;
        if let Some(runs) = parts.get_mut(&key) {
            taken = runs::feed(
                runs,
                self.modes.stnm,
                |run, may_take| self.step(run, ev, may_take, eval),
                |run| matches.push(self.matched(flat, run, ev.timestamp_ns)),
                |run| close(live, deadlines, self.deadline(run.start), run.id),
            )?;
        }
        // A new run, if the pattern can start with this event (`.stnm()`: one no run took).
        if self.modes.stnm && taken {
            return Ok(matches);
        }
        let mut run = PRun {
            id: st.next_id,
            start: ts,
            prog: vec![0; self.nodes.len()],
            caps: self.out.empty_caps.clone(),
        };
        if !self.offer(self.root, &mut run, ev, eval)? || self.rejected_by_history(st, &key, ts) {
            return Ok(matches);
        }
        st.next_id += 1;
        if self.nullable(self.root, &run.prog) && !self.awaits_absence(&run) {
            let more = self.extendable(self.root, &run.prog);
            if !(more && self.modes.longest) {
                matches.push(self.matched(&mut st.flat, &run, ts));
            }
            if !more {
                return Ok(matches);
            }
        }
        if st.live.len() >= self.max_runs {
            self.drop_oldest(st);
            *dropped += 1;
        }
        if let Some(d) = self.deadline(ts) {
            st.deadlines.insert((d, run.id), key.clone());
        }
        st.order.push_back(run.id);
        st.live.insert(run.id, key.clone());
        st.parts.entry(key).or_default().push(run);
        if runs::needs_compaction(st.order.len(), st.live.len()) {
            let live = &st.live;
            st.order.retain(|id| live.contains_key(id));
            st.parts.retain(|_, runs| !runs.is_empty());
        }
        Ok(matches)
    }

    /// A leading `NOT` matched within `within` before `ts` (or ever, without `within`).
    fn rejected_by_history(&self, st: &PatState, key: &KeyRepr, ts: i64) -> bool {
        let Some(seen) = st.leading.get(key) else {
            return false;
        };
        seen.iter().flatten().any(|t| match self.within {
            Some(d) => *t >= ts.saturating_sub(d),
            None => true,
        })
    }

    /// Time reached `now` without an event of this stream (a timer tick).
    pub(crate) fn on_time(&self, now: i64, _dropped: &mut u64) -> Vec<Match> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.advance_clock(&mut st, now)
    }

    /// Raises the clock to `ts`; expires runs whose deadline it passes, completing those that
    /// only waited for an absence (matches stamped with their deadline, in deadline order).
    fn advance_clock(&self, st: &mut PatState, ts: i64) -> Vec<Match> {
        let clock = st.clock.map_or(ts, |c| c.max(ts));
        st.clock = Some(clock);
        let mut out = Vec::new();
        while let Some(entry) = st.deadlines.first_entry() {
            let (deadline, id) = *entry.key();
            if deadline >= clock {
                break;
            }
            let key = entry.remove();
            st.live.remove(&id);
            let Some(runs) = st.parts.get_mut(&key) else {
                continue;
            };
            let Some(pos) = runs.iter().position(|r| r.id == id) else {
                continue;
            };
            let run = runs.remove(pos);
            if runs.is_empty() {
                st.parts.remove(&key);
            }
            if self.nullable(self.root, &run.prog) && self.awaits_absence(&run) {
                out.push(self.matched(&mut st.flat, &run, deadline));
            }
        }
        out
    }

    /// Drops the oldest live run (the live-run cap was hit).
    fn drop_oldest(&self, st: &mut PatState) {
        while let Some(id) = st.order.pop_front() {
            let Some(key) = st.live.remove(&id) else {
                continue;
            };
            if let Some(runs) = st.parts.get_mut(&key) {
                if let Some(pos) = runs.iter().position(|r| r.id == id) {
                    let run = runs.remove(pos);
                    if let Some(d) = self.deadline(run.start) {
                        st.deadlines.remove(&(d, id));
                    }
                }
                if runs.is_empty() {
                    st.parts.remove(&key);
                }
            }
            tracing::warn!(stream = %self.out.result_type, cap = self.max_runs, "pattern live-run cap hit; oldest partial match dropped");
            return;
        }
    }

    /// The event passed on for a match at `ts`, and its captures.
    fn matched(&self, flat: &mut FlatNames, run: &PRun, ts: i64) -> Match {
        let out = self.out.event(flat, &run.caps, ts);
        if !self.count_captures {
            return (out, run.caps.clone());
        }
        let counts: Vec<u32> = self.capture_nodes.iter().map(|n| run.prog[*n]).collect();
        (out, alias_with_counts(&run.caps, Some(&counts)))
    }
}

fn close(
    live: &mut FastMap<u64, KeyRepr>,
    deadlines: &mut BTreeMap<(i64, u64), KeyRepr>,
    deadline: Option<i64>,
    id: u64,
) {
    live.remove(&id);
    if let Some(d) = deadline {
        deadlines.remove(&(d, id));
    }
}

// ----- checkpoint -------------------------------------------------------------------------------

fn ck_err(msg: &str) -> RuntimeError {
    RuntimeError::Checkpoint(format!("pattern state: {msg}"))
}

/// Decoded pattern state (installed only once everything parsed).
pub(crate) struct PatternRestored(PatState);

impl PatternOp {
    /// The clock, the live runs in creation order and the leading-`NOT` history.
    pub(crate) fn snapshot(&self) -> Json {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let runs: Vec<Json> = runs::in_creation_order(&st.parts, |r| r.id)
            .into_iter()
            .map(|(k, r)| {
                json!({
                    "id": r.id,
                    "k": serde_json::to_value(k).unwrap_or(Json::Null),
                    "s": r.start,
                    "p": r.prog,
                    "c": event_json(&r.caps),
                })
            })
            .collect();
        let mut leading: Vec<(String, Json)> = st
            .leading
            .iter()
            .map(|(k, v)| {
                let kj = serde_json::to_value(k).unwrap_or(Json::Null);
                (kj.to_string(), json!([kj, v]))
            })
            .collect();
        leading.sort_by(|a, b| a.0.cmp(&b.0));
        json!({
            "clock": st.clock,
            "next": st.next_id,
            "runs": runs,
            "leading": leading.into_iter().map(|(_, j)| j).collect::<Vec<_>>(),
        })
    }

    /// Parses a [`PatternOp::snapshot`] (`None`: empty state).
    pub(crate) fn parse_snapshot(&self, j: Option<&Json>) -> Result<PatternRestored, RuntimeError> {
        let mut st = PatState::default();
        let Some(j) = j else {
            return Ok(PatternRestored(st));
        };
        st.clock = opt_i64_field(j, "clock").map_err(|()| ck_err("clock"))?;
        st.next_id = u64_field(j, "next").ok_or_else(|| ck_err("next id"))?;
        for r in j
            .get("runs")
            .and_then(Json::as_array)
            .ok_or_else(|| ck_err("runs"))?
        {
            let (id, key, start) = runs::run_head(r, ck_err)?;
            let prog: Vec<u32> = r
                .get("p")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .filter(|p: &Vec<u32>| p.len() == self.nodes.len())
                .ok_or_else(|| ck_err("run progress"))?;
            self.validate(&prog)?;
            let caps = runs::run_caps(r, &self.out.empty_caps, ck_err)?;
            if let Some(d) = self.deadline(start) {
                st.deadlines.insert((d, id), key.clone());
            }
            st.order.push_back(id);
            st.live.insert(id, key.clone());
            st.parts.entry(key).or_default().push(PRun {
                id,
                start,
                prog,
                caps,
            });
        }
        for e in j
            .get("leading")
            .and_then(Json::as_array)
            .ok_or_else(|| ck_err("leading"))?
        {
            let key: KeyRepr = e
                .get(0)
                .cloned()
                .and_then(|v| serde_json::from_value(v).ok())
                .ok_or_else(|| ck_err("leading key"))?;
            let seen: Vec<Option<i64>> = e
                .get(1)
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .filter(|v: &Vec<Option<i64>>| v.len() == self.leading.len())
                .ok_or_else(|| ck_err("leading times"))?;
            st.leading.insert(key, seen);
        }
        Ok(PatternRestored(st))
    }

    /// Rejects progress values that do not fit the pattern (a forged or foreign checkpoint).
    fn validate(&self, prog: &[u32]) -> Result<(), RuntimeError> {
        for (n, node) in self.nodes.iter().enumerate() {
            let ok = match node {
                Node::Item { max, .. } => prog[n] <= *max,
                Node::Not { .. } => prog[n] == 0,
                Node::Seq(kids) => (prog[n] as usize) < kids.len().max(1),
                Node::And(_) => prog[n] == 0,
                Node::Or(kids) => (prog[n] as usize) <= kids.len(),
            };
            if !ok {
                return Err(ck_err("run progress"));
            }
        }
        Ok(())
    }

    /// Installs state from [`PatternOp::parse_snapshot`].
    pub(crate) fn install(&self, r: PatternRestored) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = r.0;
    }
}
