//! Running one stream's operator chain on one event.
//!
//! [`exec`] runs operators `i..` of a stream on one event, depth-first: each operator passes the
//! events it produces to the next. Output entries (`.emit`, `.process` results, `.to`-only
//! publications) are appended to the run's output list; events reaching the end of a stream that
//! feeds others go to the run's tail, to be routed breadth-first by the engine.

use crate::compile::{Ctx, ExprFn, FnCode, State};
use crate::error::RuntimeError;
use crate::event::{Event, OutputEvent, SinkBinding};
use crate::key::{KeyRepr, ValueKey};
use crate::operators::gate::{DistinctOp, LimitOp};
use crate::operators::join::{JoinOp, MergeOp};
use crate::operators::pattern::PatternOp;
use crate::operators::reorder::ReorderOp;
use crate::operators::sequence::{Match, SeqOp};
use crate::operators::trend::TrendOp;
use crate::operators::window::WindowOp;
use crate::value::{Fields, Value};
use std::sync::Arc;

/// One compiled operator.
pub(super) enum OpCode {
    Where(ExprFn),
    Select(Vec<(Arc<str>, ExprFn)>),
    /// `.emit(…)` with its fields (none: copy all) and output type (`.emit as T`; else the stream).
    Emit(Vec<(Arc<str>, ExprFn)>, Arc<str>),
    /// `.distinct(e, …)`: the stream's partition key, the key expressions (none: every field).
    Distinct {
        part: Option<ExprFn>,
        keys: Vec<ExprFn>,
        op: Box<DistinctOp>,
    },
    /// `.limit(n)` / `.first()`.
    Limit {
        part: Option<ExprFn>,
        op: Box<LimitOp>,
    },
    /// `.print(e, …)`: one line of side output per event.
    Print(Vec<ExprFn>),
    /// `.log(level:, message:, data:)`: one `tracing` event per event.
    Log {
        level: tracing::Level,
        message: Option<ExprFn>,
        data: Option<ExprFn>,
    },
    /// `outputs`: the created events are output events (no `.emit` follows in the chain).
    Process {
        call: ExprFn,
        outputs: bool,
    },
    To(Arc<SinkBinding>),
    /// `.enrich(H, key: e, …)`: the key expression and the lookup (operators/enrich.rs).
    Enrich(ExprFn, Box<crate::operators::enrich::EnrichOp>),
    /// `.window` / `.aggregate` / `.partition_by` state of the stream (Tier 2).
    Window(Box<WindowOp>),
    /// Sequence pattern (`->`, `all`, `.within`, `.not`); always the stream's first operator.
    Sequence(Box<SeqOp>),
    /// `join(…)` source; always the stream's first operator.
    Join(Box<JoinOp>),
    /// A sequence with `.trend_aggregate(…)`; the stream's first operator.
    Trend(Box<TrendOp>),
    /// A named pattern source (§8); the stream's first operator (after a reorder front).
    Pattern(Box<PatternOp>),
    /// The `.watermark` front of a stream whose operators need ordered events (or only late
    /// events dropped); always the stream's first operator.
    Reorder(Box<ReorderOp>),
    /// `merge(…)` source; always the stream's first operator.
    Merge(Box<MergeOp>),
    Pass,
}

/// A compiled stream.
pub(super) struct StreamCode {
    /// The stream's name (the type of its results).
    pub name: Arc<str>,
    /// The operator chain.
    pub ops: Vec<OpCode>,
    /// Some stream consumes this one, so its results must be re-routed.
    pub feeds_downstream: bool,
}

/// Everything one stream invocation needs besides the event.
pub(super) struct Run<'a> {
    /// Evaluation state.
    pub st: &'a mut State,
    /// Compiled user functions.
    pub fns: &'a [FnCode],
    /// The stream being run.
    pub stream: &'a StreamCode,
    /// The event bound by `T as a` (or a pattern's captures).
    pub alias: &'a Event,
    /// Output entries of the current input event.
    pub out: &'a mut Vec<OutputEvent>,
    /// Results of streams that feed others, to be routed.
    pub tail: &'a mut Vec<Event>,
}

impl Run<'_> {
    /// The same run (state, stream, outputs) with another alias.
    pub(super) fn with_alias<'b>(&'b mut self, alias: &'b Event) -> Run<'b> {
        Run {
            st: &mut *self.st,
            fns: self.fns,
            stream: self.stream,
            alias,
            out: &mut *self.out,
            tail: &mut *self.tail,
        }
    }
}

pub(super) fn eval(run: &mut Run<'_>, f: &ExprFn, ev: &Event) -> Result<Value, RuntimeError> {
    let alias = run.alias;
    eval_with(run, f, ev, alias)
}

fn eval_with(
    run: &mut Run<'_>,
    f: &ExprFn,
    ev: &Event,
    alias: &Event,
) -> Result<Value, RuntimeError> {
    let mut cx = Ctx {
        st: run.st,
        event: ev,
        alias,
        fns: run.fns,
    };
    f(&mut cx)
}

/// Runs operators `i + 1..` on each event a `.watermark` released, each its own alias.
pub(super) fn exec_released(
    run: &mut Run<'_>,
    i: usize,
    released: &[Event],
) -> Result<(), RuntimeError> {
    released
        .iter()
        .try_for_each(|e| exec(&mut run.with_alias(e), i + 1, e, None))
}

/// Runs operators `i + 1..` on each match, with the match's captures as alias.
pub(super) fn exec_matches(
    run: &mut Run<'_>,
    i: usize,
    matches: &[Match],
) -> Result<(), RuntimeError> {
    for (m, caps) in matches {
        exec(&mut run.with_alias(caps), i + 1, m, None)?;
    }
    Ok(())
}

/// Outputs the matches of a sequence or join whose only operator after the pattern (join) is
/// an `.emit` of capture fields (`matches`, drained): each match is the output event, built from
/// its captures by the operator; limits and order are those of running that `.emit` on each
/// match.
pub(super) fn emit_built(run: &mut Run<'_>, matches: &mut Vec<Match>) -> Result<(), RuntimeError> {
    for (event, _) in matches.drain(..) {
        run.st.charge_fields(&event.fields)?;
        run.st.produce()?;
        run.out.push(OutputEvent {
            event,
            is_output: true,
            sinks: Vec::new(),
        });
    }
    Ok(())
}

fn build(
    run: &mut Run<'_>,
    fields: &[(Arc<str>, ExprFn)],
    ev: &Event,
    keep_null: bool,
) -> Result<Fields, RuntimeError> {
    let mut out: Fields = Vec::with_capacity(fields.len());
    for (name, f) in fields {
        let v = eval(run, f, ev)?;
        if keep_null || !v.is_null() {
            out.push((name.clone(), v));
        }
    }
    run.st.charge_fields(&out)?;
    Ok(out)
}

/// Runs operators `i..` of the stream on `ev`; `out_idx` is the output entry of `ev`, if any.
pub(super) fn exec(
    run: &mut Run<'_>,
    i: usize,
    ev: &Event,
    out_idx: Option<usize>,
) -> Result<(), RuntimeError> {
    let stream = run.stream;
    let Some(op) = stream.ops.get(i) else {
        if stream.feeds_downstream {
            run.st.produce()?;
            run.tail.push(ev.retyped(&stream.name));
        }
        return Ok(());
    };
    match op {
        OpCode::Where(f) => {
            if eval(run, f, ev)?.is_true() {
                exec(run, i + 1, ev, out_idx)?;
            }
            Ok(())
        }
        OpCode::Select(fields) => {
            let fields = build(run, fields, ev, true)?;
            let next = Event {
                event_type: ev.event_type.clone(),
                timestamp_ns: ev.timestamp_ns,
                fields: Arc::new(fields),
            };
            exec(run, i + 1, &next, None)
        }
        OpCode::Emit(fields, ty) => {
            let next = if fields.is_empty() {
                // `.emit()` copies every field; output events never carry null fields.
                if ev.fields.iter().any(|(_, v)| v.is_null()) {
                    let kept: Fields = ev
                        .fields
                        .iter()
                        .filter(|(_, v)| !v.is_null())
                        .cloned()
                        .collect();
                    Event {
                        event_type: ty.clone(),
                        timestamp_ns: ev.timestamp_ns,
                        fields: Arc::new(kept),
                    }
                } else {
                    ev.retyped(ty)
                }
            } else {
                let fields = build(run, fields, ev, false)?;
                Event {
                    event_type: ty.clone(),
                    timestamp_ns: ev.timestamp_ns,
                    fields: Arc::new(fields),
                }
            };
            run.st.produce()?;
            if i + 1 == stream.ops.len() && !stream.feeds_downstream {
                // Nothing reads the event after it is output: move it, no clone.
                run.out.push(OutputEvent {
                    event: next,
                    is_output: true,
                    sinks: Vec::new(),
                });
                return Ok(());
            }
            run.out.push(OutputEvent {
                event: next.clone(),
                is_output: true,
                sinks: Vec::new(),
            });
            let idx = run.out.len() - 1;
            exec(run, i + 1, &next, Some(idx))
        }
        OpCode::Process { call, outputs } => {
            run.st.in_process = true;
            run.st.emitted.clear();
            let r = eval(run, call, ev);
            run.st.in_process = false;
            r?;
            let created = std::mem::take(&mut run.st.emitted);
            for e in &created {
                let idx = if *outputs {
                    run.st.produce()?;
                    run.out.push(OutputEvent {
                        event: e.clone(),
                        is_output: true,
                        sinks: Vec::new(),
                    });
                    Some(run.out.len() - 1)
                } else {
                    None
                };
                exec(run, i + 1, e, idx)?;
            }
            Ok(())
        }
        OpCode::To(sink) => {
            let idx = match out_idx {
                Some(idx) => {
                    if let Some(o) = run.out.get_mut(idx) {
                        o.sinks.push(sink.clone());
                    }
                    idx
                }
                None => {
                    run.st.produce()?;
                    run.out.push(OutputEvent {
                        event: ev.clone(),
                        is_output: false,
                        sinks: vec![sink.clone()],
                    });
                    run.out.len() - 1
                }
            };
            exec(run, i + 1, ev, Some(idx))
        }
        OpCode::Window(w) => {
            let mut late = 0;
            let fired = w.on_event(ev, &mut |f, e| eval(run, f, e), &mut late);
            run.st.late += late;
            let Some(fired) = fired? else {
                return Ok(());
            };
            for e in &fired {
                exec(run, i + 1, e, None)?;
            }
            Ok(())
        }
        OpCode::Sequence(q) => {
            let mut matches = take_match_buf(run);
            let r = q.on_event(ev, &mut |f, e, a| eval_with(run, f, e, a), &mut matches);
            if matches.is_empty() {
                // Nothing to run or take back: the buffer goes straight back.
                if run.st.match_buf.capacity() == 0 {
                    // The buffer left there is an empty one without allocation: nothing to drop.
                    std::mem::forget(std::mem::replace(&mut run.st.match_buf, matches));
                }
                return r;
            }
            let r = r.and_then(|()| {
                if q.capture_emit().is_some() {
                    emit_built(run, &mut matches)
                } else {
                    exec_matches(run, i, &matches)
                }
            });
            q.recycle(&mut matches);
            return_match_buf(run, matches);
            r
        }
        OpCode::Pattern(p) => {
            let mut dropped = 0;
            let matches = p.on_event(ev, &mut |f, e, a| eval_with(run, f, e, a), &mut dropped);
            run.st.runs_dropped += dropped;
            exec_matches(run, i, &matches?)
        }
        OpCode::Trend(t) => {
            let mut dropped = 0;
            let results = t.on_event(ev, &mut |f, e, a| eval_with(run, f, e, a), &mut dropped);
            run.st.runs_dropped += dropped;
            exec_matches(run, i, &results?)
        }
        OpCode::Reorder(r) => {
            let mut late = 0;
            let released = r.on_event(ev, &mut late);
            run.st.late += late;
            exec_released(run, i, &released)
        }
        OpCode::Join(j) => {
            let mut matches = take_match_buf(run);
            let r = j.on_event(ev, &mut |f, e, a| eval_with(run, f, e, a), &mut matches);
            let r = r.and_then(|()| {
                if j.capture_emit() {
                    emit_built(run, &mut matches)
                } else {
                    exec_matches(run, i, &matches)
                }
            });
            j.recycle(&mut matches);
            return_match_buf(run, matches);
            r
        }
        OpCode::Merge(m) => {
            let n = m.accepts(ev, &mut |f, e, a| eval_with(run, f, e, a))?;
            for _ in 0..n {
                exec(run, i + 1, ev, None)?;
            }
            Ok(())
        }
        OpCode::Distinct { part, keys, op } => {
            let part = partition(run, part, ev)?;
            let key = if keys.is_empty() {
                ValueKey::of_fields(&ev.fields)
            } else if let [k] = keys.as_slice() {
                ValueKey::of(&eval(run, k, ev)?)
            } else {
                let mut parts = Vec::with_capacity(keys.len());
                for k in keys {
                    parts.push(ValueKey::of(&eval(run, k, ev)?));
                }
                ValueKey::List(parts)
            };
            if op.admit(part, key) {
                exec(run, i + 1, ev, out_idx)?;
            }
            Ok(())
        }
        OpCode::Limit { part, op } => {
            let part = partition(run, part, ev)?;
            if op.admit(part) {
                exec(run, i + 1, ev, out_idx)?;
            }
            Ok(())
        }
        OpCode::Print(args) => {
            let line = print_line(run, &stream.name, args, ev)?;
            run.st.printed.push(line);
            exec(run, i + 1, ev, out_idx)
        }
        OpCode::Log {
            level,
            message,
            data,
        } => {
            let message = match message {
                Some(m) => eval(run, m, ev)?.to_string(),
                None => format!("{} event", stream.name),
            };
            let data = match data {
                Some(d) => {
                    let v = eval(run, d, ev)?;
                    run.st.limits.check_text(&v)?;
                    v.to_json().to_string()
                }
                None => Value::Map(ev.fields.clone()).to_json().to_string(),
            };
            log_event(*level, &stream.name, &message, &data);
            exec(run, i + 1, ev, out_idx)
        }
        OpCode::Enrich(key, op) => {
            let key = eval(run, key, ev)?;
            match op.merged(&key, &ev.fields) {
                Some(fields) => {
                    let next = Event {
                        event_type: ev.event_type.clone(),
                        timestamp_ns: ev.timestamp_ns,
                        fields: Arc::new(fields),
                    };
                    exec(run, i + 1, &next, None)
                }
                None => exec(run, i + 1, ev, out_idx),
            }
        }
        OpCode::Pass => exec(run, i + 1, ev, out_idx),
    }
}

/// Most matches a kept match buffer may have room for; a larger one (an event that completed
/// many runs) is released rather than held.
const MATCH_BUF_KEEP: usize = 256;

/// The evaluation state's empty match buffer (a fresh one when it is in use further up).
fn take_match_buf(run: &mut Run<'_>) -> Vec<Match> {
    std::mem::take(&mut run.st.match_buf)
}

/// Empties `buf` and gives it back to the evaluation state for the next event.
fn return_match_buf(run: &mut Run<'_>, mut buf: Vec<Match>) {
    buf.clear();
    if buf.capacity() <= MATCH_BUF_KEEP && run.st.match_buf.capacity() == 0 {
        run.st.match_buf = buf;
    }
}

/// The partition of `ev` for `.distinct`/`.limit` (`Null` without `.partition_by`).
fn partition(
    run: &mut Run<'_>,
    part: &Option<ExprFn>,
    ev: &Event,
) -> Result<KeyRepr, RuntimeError> {
    Ok(match part {
        Some(f) => KeyRepr::of(&eval(run, f, ev)?),
        None => KeyRepr::Null,
    })
}

/// `.print(…)`: `[Stream] v1 v2 …` (strings unquoted, other values as text; without arguments
/// the event's fields as JSON). Newlines are escaped so that one print is one line, and the line
/// never starts with `{` (JSON output lines do).
fn print_line(
    run: &mut Run<'_>,
    stream: &str,
    args: &[ExprFn],
    ev: &Event,
) -> Result<String, RuntimeError> {
    let mut line = format!("[{stream}]");
    if args.is_empty() {
        line.push(' ');
        line.push_str(&Value::Map(ev.fields.clone()).to_json().to_string());
    }
    for a in args {
        let v = eval(run, a, ev)?;
        let n = run.st.limits.check_text(&v)?;
        run.st
            .limits
            .check_string(line.len().saturating_add(n).saturating_add(1))?;
        line.push(' ');
        line.push_str(&v.to_string());
    }
    run.st.limits.check_string(line.len())?;
    Ok(line.replace('\n', "\\n").replace('\r', "\\r"))
}

/// Writes one `.log` record through `tracing` (target `vpl`).
fn log_event(level: tracing::Level, stream: &str, message: &str, data: &str) {
    match level {
        tracing::Level::TRACE => tracing::trace!(target: "vpl", stream, data, "{message}"),
        tracing::Level::DEBUG => tracing::debug!(target: "vpl", stream, data, "{message}"),
        tracing::Level::INFO => tracing::info!(target: "vpl", stream, data, "{message}"),
        tracing::Level::WARN => tracing::warn!(target: "vpl", stream, data, "{message}"),
        tracing::Level::ERROR => tracing::error!(target: "vpl", stream, data, "{message}"),
    }
}
