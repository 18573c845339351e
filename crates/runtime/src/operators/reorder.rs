//! The front of a stream with `.watermark` / `.allowed_lateness` whose operators do not handle
//! late events themselves (VPL.md §6.4; time and session windows do, see `window::time`):
//!
//! * **reorder** (sequences, named patterns, joins, count windows: results depend on order):
//!   events are held until the watermark (largest event time − out-of-order bound) reaches them,
//!   then released in event-time order (ties in arrival order);
//! * **drop-late** (other streams): events pass at once.
//!
//! In both modes an event older than the watermark minus the allowed lateness is dropped and
//! counted; one older than the watermark but within the allowed lateness passes at once (out of
//! order). End of input releases everything held.
//!
//! Held events are bounded: beyond [`MAX_HELD_EVENTS`] per stream (a huge out-of-order bound, or
//! event times far in the future), the earliest held events are released before the watermark
//! reaches them (still in time order among themselves), with a warning; nothing is dropped.

use crate::codec::{event_from_json, event_json};
use crate::error::RuntimeError;
use crate::event::Event;
use crate::operators::window::Lateness;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Most events a reorder front holds; beyond, the earliest are released early.
pub const MAX_HELD_EVENTS: usize = 1_000_000;

#[derive(Default)]
struct ReorderState {
    max_ts: Option<i64>,
    /// Arrival counter (tie-breaker).
    seq: u64,
    /// Held events by (event time, arrival).
    held: BTreeMap<(i64, u64), Event>,
    /// Events released early because too many were held (not checkpointed; for the log).
    forced: u64,
}

/// The lateness front of a stream.
pub(crate) struct ReorderOp {
    lateness: Lateness,
    reorder: bool,
    /// Most events held ([`MAX_HELD_EVENTS`]).
    cap: usize,
    state: Mutex<ReorderState>,
}

fn ck_err(msg: &str) -> RuntimeError {
    RuntimeError::Checkpoint(format!("watermark state: {msg}"))
}

impl ReorderOp {
    /// A front that reorders (`reorder`) or only drops late events.
    pub(crate) fn new(lateness: Lateness, reorder: bool) -> Self {
        ReorderOp {
            lateness,
            reorder,
            cap: MAX_HELD_EVENTS,
            state: Mutex::new(ReorderState::default()),
        }
    }

    fn watermark(&self, st: &ReorderState) -> Option<i64> {
        st.max_ts
            .map(|m| m.saturating_sub(self.lateness.out_of_order))
    }

    /// Takes one event; returns the events released, in order (counts a dropped one in `late`).
    pub(crate) fn on_event(&self, ev: &Event, late: &mut u64) -> Vec<Event> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ts = ev.timestamp_ns;
        if let Some(w) = self.watermark(&st) {
            if ts < w {
                if ts < w.saturating_sub(self.lateness.allowed) {
                    *late += 1;
                    return Vec::new();
                }
                return vec![ev.clone()];
            }
        }
        st.max_ts = Some(st.max_ts.map_or(ts, |m| m.max(ts)));
        if !self.reorder {
            return vec![ev.clone()];
        }
        let seq = st.seq;
        st.seq += 1;
        st.held.insert((ts, seq), ev.clone());
        let mut out = self.release(&mut st);
        while st.held.len() > self.cap {
            let Some(entry) = st.held.first_entry() else {
                break;
            };
            out.push(entry.remove());
            st.forced += 1;
            if st.forced.is_power_of_two() {
                tracing::warn!(
                    held = self.cap,
                    released_early = st.forced,
                    "watermark reorder buffer full: releasing the earliest events before the watermark reaches them"
                );
            }
        }
        out
    }

    /// Time moved on to `now` (a timer tick): releases what the raised watermark reaches.
    pub(crate) fn on_time(&self, now: i64) -> Vec<Event> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.max_ts = Some(st.max_ts.map_or(now, |m| m.max(now)));
        self.release(&mut st)
    }

    /// End of input: releases everything held.
    pub(crate) fn flush(&self) -> Vec<Event> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut st.held).into_values().collect()
    }

    fn release(&self, st: &mut ReorderState) -> Vec<Event> {
        let Some(w) = self.watermark(st) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some(entry) = st.held.first_entry() {
            if entry.key().0 > w {
                break;
            }
            out.push(entry.remove());
        }
        out
    }

    /// The largest event time and the held events.
    pub(crate) fn snapshot(&self) -> Json {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        json!({
            "max": st.max_ts,
            "seq": st.seq,
            "held": st.held.values().map(event_json).collect::<Vec<_>>(),
        })
    }

    /// Parses a [`ReorderOp::snapshot`] (`None`: empty state).
    pub(crate) fn parse_snapshot(&self, j: Option<&Json>) -> Result<ReorderRestored, RuntimeError> {
        let mut st = ReorderState::default();
        if let Some(j) = j {
            st.max_ts = match j.get("max") {
                Some(Json::Null) | None => None,
                Some(v) => Some(v.as_i64().ok_or_else(|| ck_err("max"))?),
            };
            st.seq = j
                .get("seq")
                .and_then(Json::as_u64)
                .ok_or_else(|| ck_err("seq"))?;
            let held = j
                .get("held")
                .and_then(Json::as_array)
                .ok_or_else(|| ck_err("held"))?;
            for (i, e) in held.iter().enumerate() {
                let ev = event_from_json(e)?;
                st.held.insert((ev.timestamp_ns, i as u64), ev);
            }
            st.seq = st.seq.max(held.len() as u64);
        }
        Ok(ReorderRestored(st))
    }

    /// Installs state from [`ReorderOp::parse_snapshot`].
    pub(crate) fn install(&self, r: ReorderRestored) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = r.0;
    }
}

/// Decoded reorder state.
pub(crate) struct ReorderRestored(ReorderState);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn ev(ts: i64) -> Event {
        Event::new("A", ts, vec![("t".into(), Value::Int(ts))])
    }

    #[test]
    fn a_full_buffer_releases_its_earliest_events_in_order() {
        let mut op = ReorderOp::new(
            Lateness {
                out_of_order: 1_000_000,
                allowed: 0,
                declared: true,
            },
            true,
        );
        op.cap = 3;
        let mut late = 0;
        let mut released = Vec::new();
        for ts in [50, 10, 40, 20, 30, 60] {
            released.extend(
                op.on_event(&ev(ts), &mut late)
                    .iter()
                    .map(|e| e.timestamp_ns),
            );
        }
        assert_eq!(released, [10, 20, 30]);
        let rest: Vec<i64> = op.flush().iter().map(|e| e.timestamp_ns).collect();
        assert_eq!(rest, [40, 50, 60]);
        assert_eq!(late, 0);
    }
}
