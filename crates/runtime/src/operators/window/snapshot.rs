//! Checkpoint of a [`WindowOp`]: the largest event time, and per partition its key, open and
//! fired time windows (their events or accumulators), count buffer and open and fired sessions,
//! with their events encoded exactly. A window's events restore as events even into a stream
//! that now accumulates (both forms fire the same results). A checkpoint taken before sessions were kept by event time (`"q"`/`"l"`) still
//! restores: its buffer becomes one open session.

use super::{Agg, Contents, Part, Session, WinState, WindowOp};
use crate::codec::{decode_value, encode_value, event_json, events_from_json};
use crate::error::RuntimeError;
use crate::key::KeyRepr;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

fn ck_err(msg: &str) -> RuntimeError {
    RuntimeError::Checkpoint(format!("window state: {msg}"))
}

/// Decoded window state, applied only once everything parsed (restore is all-or-nothing).
pub(crate) struct Restored(WinState);

fn buckets_json(b: &BTreeMap<i64, Contents>) -> Json {
    Json::Array(b.iter().map(|(start, c)| c.to_json(*start)).collect())
}

fn buckets_from(aggs: &[Agg], j: Option<&Json>) -> Result<BTreeMap<i64, Contents>, RuntimeError> {
    let mut out = BTreeMap::new();
    let Some(j) = j else {
        return Ok(out);
    };
    for b in j.as_array().ok_or_else(|| ck_err("buckets"))? {
        let start = b
            .get(0)
            .and_then(Json::as_i64)
            .ok_or_else(|| ck_err("start"))?;
        out.insert(start, Contents::from_json(aggs, b)?);
    }
    Ok(out)
}

fn sessions_json(s: &[Session]) -> Json {
    Json::Array(
        s.iter()
            .map(|s| {
                json!([
                    s.first,
                    s.last,
                    s.events.iter().map(event_json).collect::<Vec<_>>()
                ])
            })
            .collect(),
    )
}

fn sessions_from(j: Option<&Json>) -> Result<Vec<Session>, RuntimeError> {
    let mut out = Vec::new();
    let Some(j) = j else {
        return Ok(out);
    };
    for s in j.as_array().ok_or_else(|| ck_err("sessions"))? {
        let first = s
            .get(0)
            .and_then(Json::as_i64)
            .ok_or_else(|| ck_err("session"))?;
        let last = s
            .get(1)
            .and_then(Json::as_i64)
            .ok_or_else(|| ck_err("session"))?;
        out.push(Session {
            first,
            last,
            events: events_from_json(s.get(2))?,
        });
    }
    Ok(out)
}

impl WindowOp {
    /// Serializes the windows of every partition.
    pub(crate) fn snapshot(&self) -> Json {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let parts: Vec<Json> = st
            .parts
            .iter()
            .map(|p| {
                json!({
                    "k": encode_value(&p.key),
                    "b": buckets_json(&p.buckets),
                    "f": buckets_json(&p.fired),
                    "q": p.buf.iter().map(event_json).collect::<Vec<_>>(),
                    "n": p.seen,
                    "s": sessions_json(&p.sessions),
                    "c": sessions_json(&p.closed),
                })
            })
            .collect();
        json!({ "wm": st.max_ts, "due": st.next_due, "parts": parts })
    }

    /// Parses a [`WindowOp::snapshot`]; `None` (no entry) is the empty state.
    pub(crate) fn parse_snapshot(&self, j: Option<&Json>) -> Result<Restored, RuntimeError> {
        let mut st = WinState::default();
        let Some(j) = j else {
            return Ok(Restored(st));
        };
        st.max_ts = match j.get("wm") {
            Some(Json::Null) | None => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| ck_err("watermark"))?),
        };
        st.next_due = j
            .get("due")
            .and_then(Json::as_i64)
            .ok_or_else(|| ck_err("next due"))?;
        for p in j
            .get("parts")
            .and_then(Json::as_array)
            .ok_or_else(|| ck_err("partitions"))?
        {
            let key = decode_value(p.get("k").ok_or_else(|| ck_err("key"))?)?;
            let buf = events_from_json(p.get("q"))?;
            let mut sessions = sessions_from(p.get("s"))?;
            if p.get("s").is_none()
                && p.get("l").is_some()
                && matches!(self.spec, super::Spec::Session { .. })
            {
                // An older checkpoint: the session buffer and its last event time.
                if !buf.is_empty() {
                    let last = p
                        .get("l")
                        .and_then(Json::as_i64)
                        .ok_or_else(|| ck_err("last"))?;
                    let first = buf.iter().map(|e| e.timestamp_ns).min().unwrap_or(last);
                    sessions.push(Session {
                        first,
                        last,
                        events: buf.clone(),
                    });
                }
            }
            let part = Part {
                key: key.clone(),
                buckets: buckets_from(&self.aggs, p.get("b"))?,
                fired: buckets_from(&self.aggs, p.get("f"))?,
                buf: if matches!(self.spec, super::Spec::Session { .. }) {
                    Default::default()
                } else {
                    buf.into()
                },
                seen: p
                    .get("n")
                    .and_then(Json::as_u64)
                    .ok_or_else(|| ck_err("seen"))?,
                sessions,
                closed: sessions_from(p.get("c"))?,
            };
            st.index.insert(KeyRepr::of(&key), st.parts.len());
            st.parts.push(part);
        }
        Ok(Restored(st))
    }

    /// Installs state from [`WindowOp::parse_snapshot`].
    pub(crate) fn install(&self, r: Restored) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = r.0;
    }
}
