//! Time and session windows under a watermark, with allowed lateness (VPL.md §6.1, §6.4).
//!
//! * The **watermark** is the largest event time the stream has seen, minus
//!   `.watermark(out_of_order: d)` (0 without it). It is shared by all partitions.
//! * A time window `[s, e)` **fires** once the watermark reaches `e`; a session once the watermark
//!   is more than the gap past its last event.
//! * An event whose window already fired joins it if the window fired less than
//!   `.allowed_lateness(l)` ago (watermark < end + l): the window **fires again** at once with its
//!   updated contents. Fired windows are kept (with their events) only for that long.
//! * An event that joins no window (every window it belongs to fired more than `l` ago) is
//!   **late**: dropped and counted in `EngineStats::late_events`.
//! * Sessions merge by event time: an event within the gap of one or more sessions (open, or
//!   fired but within lateness) joins and merges them; a merged session that had fired and is
//!   still past its deadline fires again.

use super::{Batch, Contents, Session, WinState, WindowOp};
use crate::error::RuntimeError;
use crate::event::Event;
use varpulis_vpl::ast::{self, ExprKind, OpKind};

/// A stream's `.watermark(out_of_order: d)` and `.allowed_lateness(l)`, in ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Lateness {
    /// How far the watermark trails the largest event time.
    pub out_of_order: i64,
    /// How long a fired window still accepts (and re-fires on) late events.
    pub allowed: i64,
    /// `.watermark` or `.allowed_lateness` was written: late events are dropped and counted
    /// before order-sensitive or stateless operators too.
    pub declared: bool,
}

fn duration(e: Option<&ast::Expr>) -> i64 {
    match e.map(|e| &e.kind) {
        Some(ExprKind::Duration(d)) => i64::try_from(*d).unwrap_or(i64::MAX),
        _ => 0,
    }
}

impl Lateness {
    /// Reads the stream's `.watermark` and `.allowed_lateness` (validated by the checker).
    pub(crate) fn of(ops: &[ast::StreamOp]) -> Lateness {
        let mut l = Lateness::default();
        for op in ops {
            match op.kind() {
                OpKind::Watermark => {
                    l.declared = true;
                    l.out_of_order =
                        duration(op.named("out_of_order").or_else(|| op.first_positional()));
                }
                OpKind::AllowedLateness => {
                    l.declared = true;
                    l.allowed = duration(op.first_positional());
                }
                _ => {}
            }
        }
        l
    }
}

impl WinState {
    /// The watermark (`None` before the first event).
    pub(super) fn watermark(&self, l: Lateness) -> Option<i64> {
        self.max_ts.map(|m| m.saturating_sub(l.out_of_order))
    }

    /// Raises the largest event time to `ts`; returns the watermark before.
    pub(super) fn advance(&mut self, ts: i64, l: Lateness) -> Option<i64> {
        let old = self.watermark(l);
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        old
    }
}

/// The time windows of a stream: `[k·slide, k·slide + size)` for every integer `k` (ns).
#[derive(Debug, Clone, Copy)]
pub(super) struct TimeWindows {
    pub size: i64,
    pub slide: i64,
}

impl TimeWindows {
    /// The starts of the windows containing `ts`, in increasing order.
    fn starts(self, ts: i64) -> impl Iterator<Item = i64> {
        let last = ts.div_euclid(self.slide);
        let first = if self.size == self.slide {
            // Tumbling: exactly one window.
            last
        } else {
            ts.saturating_sub(self.size)
                .div_euclid(self.slide)
                .saturating_add(1)
        };
        (first..=last).map(move |k| k.saturating_mul(self.slide))
    }
}

impl WindowOp {
    /// Adds an event to the time windows containing it (its aggregate arguments are in
    /// `st.args` when the windows accumulate). Windows that fired within the allowed lateness
    /// take it and fire again (into `out`). Returns whether the event joined any window; an
    /// error (a `sum` overflowing) is returned before any window changed.
    pub(super) fn time_event(
        &self,
        st: &mut WinState,
        pi: usize,
        ev: &Event,
        w: TimeWindows,
        old_wm: Option<i64>,
        out: &mut Vec<Batch>,
    ) -> Result<bool, RuntimeError> {
        let ts = ev.timestamp_ns;
        let allowed = self.lateness.allowed;
        // `Some(true)`: the window fired but still takes late events; `Some(false)`: open.
        let takes = |start: i64| {
            let end = start.saturating_add(w.size);
            match old_wm {
                Some(wm) if end <= wm => (end.saturating_add(allowed) > wm).then_some(true),
                _ => Some(false),
            }
        };
        let Some(p) = st.parts.get_mut(pi) else {
            return Ok(false);
        };
        let args = &st.args;
        let seen = st.seen.get_mut(1..).unwrap_or_default();
        if self.accumulate && self.has_sum {
            for start in w.starts(ts) {
                let window = match takes(start) {
                    Some(true) => p.fired.get(&start),
                    Some(false) => p.buckets.get(&start),
                    None => None,
                };
                if let Some(c) = window {
                    c.check(args)?;
                }
            }
        }
        let mut joined = false;
        for start in w.starts(ts) {
            let end = start.saturating_add(w.size);
            match takes(start) {
                None => {}
                Some(true) => {
                    let c = p.fired.entry(start).or_insert_with(|| self.new_contents());
                    c.add(&self.aggs, ev, args, self.direct, seen)?;
                    out.push(Batch {
                        part: pi,
                        ts: end,
                        contents: c.clone(),
                    });
                    st.next_due = st.next_due.min(end.saturating_add(allowed));
                    joined = true;
                }
                Some(false) => {
                    p.buckets
                        .entry(start)
                        .or_insert_with(|| self.new_contents())
                        .add(&self.aggs, ev, args, self.direct, seen)?;
                    st.next_due = st.next_due.min(end);
                    joined = true;
                }
            }
        }
        Ok(joined)
    }

    /// Fires time windows whose end is `<= wm` (all if `wm` is `None`) and forgets fired windows
    /// whose lateness has passed.
    pub(super) fn fire_time(
        &self,
        st: &mut WinState,
        size: i64,
        wm: Option<i64>,
        out: &mut Vec<Batch>,
    ) {
        if wm.is_some_and(|w| w < st.next_due) {
            return;
        }
        let allowed = self.lateness.allowed;
        let mut due: Vec<(i64, usize, Contents)> = Vec::new();
        let mut next_due = i64::MAX;
        for (pi, p) in st.parts.iter_mut().enumerate() {
            while let Some(entry) = p.buckets.first_entry() {
                let end = entry.key().saturating_add(size);
                if wm.is_some_and(|w| end > w) {
                    next_due = next_due.min(end);
                    break;
                }
                let (start, contents) = entry.remove_entry();
                if allowed > 0 && wm.is_some() {
                    p.fired.insert(start, contents.clone());
                }
                due.push((end, pi, contents));
            }
            match wm {
                None => p.fired.clear(),
                Some(w) => {
                    p.fired
                        .retain(|start, _| start.saturating_add(size).saturating_add(allowed) > w);
                    if let Some(start) = p.fired.keys().next() {
                        next_due = next_due.min(start.saturating_add(size).saturating_add(allowed));
                    }
                }
            }
        }
        st.next_due = next_due;
        due.sort_by_key(|(end, pi, _)| (*end, *pi));
        out.extend(
            due.into_iter()
                .map(|(ts, part, contents)| Batch { part, ts, contents }),
        );
    }

    /// Adds an event to the sessions of its partition (merging every session it is within `gap`
    /// of). Returns whether the event joined a session.
    pub(super) fn session_event(
        &self,
        st: &mut WinState,
        pi: usize,
        ev: &Event,
        gap: i64,
        old_wm: Option<i64>,
        out: &mut Vec<Batch>,
    ) -> bool {
        let ts = ev.timestamp_ns;
        let allowed = self.lateness.allowed;
        let Some(p) = st.parts.get_mut(pi) else {
            return false;
        };
        let touches =
            |s: &Session| ts.saturating_sub(s.last) <= gap && s.first.saturating_sub(ts) <= gap;
        let mut merged = Session {
            first: ts,
            last: ts,
            events: Vec::new(),
        };
        let mut was_closed = false;
        let take = |list: &mut Vec<Session>, merged: &mut Session| -> bool {
            let mut any = false;
            let mut i = 0;
            while i < list.len() {
                if touches(&list[i]) {
                    let s = list.remove(i);
                    merged.first = merged.first.min(s.first);
                    merged.last = merged.last.max(s.last);
                    merged.events.extend(s.events);
                    any = true;
                } else {
                    i += 1;
                }
            }
            any
        };
        take(&mut p.sessions, &mut merged);
        was_closed |= take(&mut p.closed, &mut merged);
        let joined_existing = !merged.events.is_empty();
        merged.events.push(ev.clone());
        let deadline = merged.last.saturating_add(gap);
        let passed = old_wm.is_some_and(|w| deadline < w);
        if !passed {
            st.next_due = st.next_due.min(deadline);
            p.sessions.push(merged);
            return true;
        }
        // Its deadline has passed: it fires at once if within the allowed lateness.
        let within = old_wm.is_some_and(|w| deadline.saturating_add(allowed) >= w);
        if !within && !was_closed && !joined_existing {
            return false;
        }
        out.push(Batch {
            part: pi,
            ts: merged.last,
            contents: Contents::Events(merged.events.clone()),
        });
        if allowed > 0 {
            st.next_due = st.next_due.min(deadline.saturating_add(allowed));
            p.closed.push(merged);
        }
        true
    }

    /// Fires sessions whose last event is more than `gap` before `wm` (all if `None`) and forgets
    /// fired sessions whose lateness has passed.
    pub(super) fn fire_sessions(
        &self,
        st: &mut WinState,
        gap: i64,
        wm: Option<i64>,
        out: &mut Vec<Batch>,
    ) {
        if wm.is_some_and(|w| w <= st.next_due) {
            return;
        }
        let allowed = self.lateness.allowed;
        let mut due: Vec<(i64, usize, Vec<Event>)> = Vec::new();
        let mut next_due = i64::MAX;
        for (pi, p) in st.parts.iter_mut().enumerate() {
            let mut i = 0;
            while i < p.sessions.len() {
                let deadline = p.sessions[i].last.saturating_add(gap);
                if wm.is_some_and(|w| deadline >= w) {
                    next_due = next_due.min(deadline);
                    i += 1;
                    continue;
                }
                let s = p.sessions.remove(i);
                due.push((s.last, pi, s.events.clone()));
                if allowed > 0 && wm.is_some() {
                    p.closed.push(s);
                }
            }
            match wm {
                None => p.closed.clear(),
                Some(w) => {
                    p.closed
                        .retain(|s| s.last.saturating_add(gap).saturating_add(allowed) >= w);
                    for s in &p.closed {
                        next_due = next_due.min(s.last.saturating_add(gap).saturating_add(allowed));
                    }
                }
            }
        }
        st.next_due = next_due;
        due.sort_by_key(|(ts, pi, _)| (*ts, *pi));
        out.extend(due.into_iter().map(|(ts, part, events)| Batch {
            part,
            ts,
            contents: Contents::Events(events),
        }));
    }
}
