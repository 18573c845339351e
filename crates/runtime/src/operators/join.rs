//! Joins and merges of streams (VPL.md §7 "Joins and merge").
//!
//! * [`JoinOp`]: `join(A, B).on(A.k == B.k).window(5m)`. Per input and key only the most recent
//!   event matters (an older one cannot be within the window when a newer one is not), so the
//!   state is one event per (input, key), swept once per window length of watermark progress:
//!   memory is bounded by the keys active within the window. When an event arrives on an input
//!   (type and the input's `.where` filters match) with a non-null key, it replaces the stored
//!   event for its key if it is not older, and if every other input has an event with the same
//!   key no older than `event time - window`, one joined event is produced: fields of all inputs
//!   unprefixed (first input wins on clashes), timestamp of the arriving event, and the inputs as
//!   captures (`A.field`) for the remaining operators. A `null` key never joins. Events older
//!   than watermark - window are swept, so an out-of-order event can miss partners that old.
//! * [`MergeOp`]: `merge(A, stream S = B .where(c))` forwards each event once per input that
//!   accepts it (type and filters).

use super::sequence::{EvalWith, Match};
use crate::codec::{event_from_json, event_json};
use crate::compile::{Compiler, ExprFn};
use crate::error::RuntimeError;
use crate::event::Event;
use crate::key::KeyRepr;
use crate::value::{Fields, Value};
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use varpulis_vpl::ast::{self, ExprKind, OpKind, SubStream};
use varpulis_vpl::correlate::{input_name, join_conditions, join_keys_lenient};

/// How old a partner event may be when a join has no `.window`: one minute.
pub const DEFAULT_JOIN_WINDOW_NS: i64 = 60_000_000_000;

/// One input of a merge or join.
struct Input {
    name: Arc<str>,
    ty: Arc<str>,
    filters: Vec<ExprFn>,
    /// Key fields (join only), each with a cached position.
    key: Vec<(Arc<str>, AtomicU32)>,
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

    /// The key of `ev`, `None` if a part is missing or `null`.
    fn key_of(&self, ev: &Event) -> Option<Vec<KeyRepr>> {
        self.key
            .iter()
            .map(|(f, slot)| match ev.field_cached(f, slot) {
                None | Some(Value::Null) => None,
                Some(v) => Some(KeyRepr::of(v)),
            })
            .collect()
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
            key: Vec::new(),
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

#[derive(Default)]
struct JoinState {
    watermark: Option<i64>,
    /// Watermark at the last sweep of old entries.
    swept: i64,
    /// Per input: key → most recent event.
    latest: Vec<HashMap<Vec<KeyRepr>, Event>>,
}

/// The front operator of a `join(…)` stream.
pub(crate) struct JoinOp {
    inputs: Vec<Input>,
    /// `.window` in ns: how old a partner event may be.
    window: i64,
    result_type: Arc<str>,
    state: Mutex<JoinState>,
}

impl JoinOp {
    /// Compiles a join stream's inputs, keys and window, and switches `c` to the input names as
    /// captures. `None` if the checked program still lacks a usable key or window.
    pub(crate) fn compile(
        c: &mut Compiler,
        s: &ast::StreamDecl,
        inputs: &[SubStream],
    ) -> Option<JoinOp> {
        let names: Vec<&str> = inputs.iter().map(|i| input_name(i).name.as_str()).collect();
        let types: Vec<&str> = inputs.iter().map(|i| i.source.name.as_str()).collect();
        let (keys, _) = join_keys_lenient(&names, &types, &join_conditions(inputs, s)).ok()?;
        // Without `.window`, partners are kept for one minute (the existing product's default).
        let window = match s.ops.iter().find(|o| o.kind() == OpKind::Window) {
            Some(w) => match w.first_positional()?.kind {
                ExprKind::Duration(d) => i64::try_from(d).ok()?,
                _ => return None,
            },
            None => DEFAULT_JOIN_WINDOW_NS,
        };
        c.enter_stream(None);
        let mut compiled = compile_inputs(c, inputs);
        for (input, fields) in compiled.iter_mut().zip(keys) {
            input.key = fields
                .iter()
                .map(|f| (c.intern(f), AtomicU32::new(0)))
                .collect();
        }
        c.enter_pattern(names.iter().map(|n| n.to_string()).collect());
        for (i, t) in types.iter().enumerate() {
            let unique = types.iter().filter(|x| *x == t).count() == 1;
            if unique && !names.contains(t) {
                c.capture_aliases
                    .push((t.to_string(), names[i].to_string()));
            }
        }
        Some(JoinOp {
            state: Mutex::new(JoinState {
                latest: vec![HashMap::new(); compiled.len()],
                ..JoinState::default()
            }),
            inputs: compiled,
            window,
            result_type: c.intern(&s.name.name),
        })
    }

    /// Feeds one event; returns the joined events (one per input that accepted it and found
    /// partners on every other input).
    pub(crate) fn on_event(
        &self,
        ev: &Event,
        eval: &mut EvalWith<'_>,
    ) -> Result<Vec<Match>, RuntimeError> {
        let mut accepted = Vec::new();
        for (i, input) in self.inputs.iter().enumerate() {
            if input.accepts(ev, eval)? {
                if let Some(key) = input.key_of(ev) {
                    accepted.push((i, key));
                }
            }
        }
        let mut out = Vec::new();
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *guard;
        let ts = ev.timestamp_ns;
        self.sweep(st, ts);
        let oldest = ts.saturating_sub(self.window);
        for (i, key) in accepted {
            if let Some(m) = st.latest.get_mut(i) {
                match m.get_mut(&key) {
                    Some(prev) if prev.timestamp_ns > ts => {}
                    Some(prev) => *prev = ev.clone(),
                    None => {
                        m.insert(key.clone(), ev.clone());
                    }
                }
            }
            let mut parts: Vec<&Event> = Vec::with_capacity(self.inputs.len());
            for (j, m) in st.latest.iter().enumerate() {
                if j == i {
                    parts.push(ev);
                    continue;
                }
                match m.get(&key) {
                    Some(p) if p.timestamp_ns >= oldest => parts.push(p),
                    _ => break,
                }
            }
            if parts.len() == self.inputs.len() {
                out.push(self.joined(&parts, ts));
            }
        }
        Ok(out)
    }

    /// Raises the watermark to `ts` and forgets, once per window of progress, partner events too
    /// old to join.
    fn sweep(&self, st: &mut JoinState, ts: i64) {
        let wm = st.watermark.map_or(ts, |w| w.max(ts));
        st.watermark = Some(wm);
        if wm.saturating_sub(st.swept) > self.window {
            let horizon = wm.saturating_sub(self.window);
            for m in &mut st.latest {
                m.retain(|_, e| e.timestamp_ns >= horizon);
            }
            st.swept = wm;
        }
    }

    /// Time reached `now` without an event of this stream (a timer tick).
    pub(crate) fn on_time(&self, now: i64) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.sweep(&mut st, now);
    }

    fn joined(&self, parts: &[&Event], ts: i64) -> Match {
        let mut fields: Fields = Vec::new();
        let mut caps: Fields = Vec::with_capacity(parts.len());
        for (input, p) in self.inputs.iter().zip(parts) {
            for (k, v) in p.fields.iter() {
                if !fields.iter().any(|(n, _)| n == k) {
                    fields.push((k.clone(), v.clone()));
                }
            }
            caps.push((input.name.clone(), Value::Map(p.fields.clone())));
        }
        let ev = Event {
            event_type: self.result_type.clone(),
            timestamp_ns: ts,
            fields: Arc::new(fields),
        };
        let caps = Event {
            event_type: self.result_type.clone(),
            timestamp_ns: ts,
            fields: Arc::new(caps),
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

impl JoinOp {
    /// Serializes the stored events per input (sorted by time, then key, for stable bytes).
    pub(crate) fn snapshot(&self) -> serde_json::Value {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let latest: Vec<serde_json::Value> = st
            .latest
            .iter()
            .map(|m| {
                let mut evs: Vec<(&Vec<KeyRepr>, &Event)> = m.iter().collect();
                evs.sort_by(|a, b| {
                    (a.1.timestamp_ns, format!("{:?}", a.0))
                        .cmp(&(b.1.timestamp_ns, format!("{:?}", b.0)))
                });
                serde_json::Value::Array(evs.into_iter().map(|(_, e)| event_json(e)).collect())
            })
            .collect();
        serde_json::json!({ "wm": st.watermark, "swept": st.swept, "latest": latest })
    }

    /// Parses a [`JoinOp::snapshot`]; `None` (no entry) is the empty state.
    pub(crate) fn parse_snapshot(
        &self,
        j: Option<&serde_json::Value>,
    ) -> Result<Restored, RuntimeError> {
        let mut st = JoinState {
            latest: vec![HashMap::new(); self.inputs.len()],
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
        let lists = j
            .get("latest")
            .and_then(|v| v.as_array())
            .filter(|l| l.len() == self.inputs.len())
            .ok_or_else(|| ck_err("inputs"))?;
        for ((list, input), m) in lists.iter().zip(&self.inputs).zip(&mut st.latest) {
            for e in list.as_array().ok_or_else(|| ck_err("events"))? {
                let ev = event_from_json(e)?;
                let ev = Event {
                    event_type: input.ty.clone(),
                    ..ev
                };
                let key = input.key_of(&ev).ok_or_else(|| ck_err("event key"))?;
                m.insert(key, ev);
            }
        }
        Ok(Restored(st))
    }

    /// Installs state from [`JoinOp::parse_snapshot`].
    pub(crate) fn install(&self, r: Restored) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = r.0;
    }
}
