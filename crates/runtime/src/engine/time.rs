//! Time without events: timers, heartbeats and the end of input.
//!
//! * **Timers** (`stream T = timer(5s, initial_delay: 1s)`): each produces an event of type
//!   `Timer_T` with the field `timestamp` (ms since the epoch) every period. They are driven by
//!   [`Engine::advance_time`]: `varpulis run` calls it with the event file's times (event-time
//!   ticks), a worker with the wall clock. A timer is anchored by the first call: its first tick
//!   is at that time plus `initial_delay` (default: one period).
//! * **Heartbeats**: before each tick at time `t`, every stateful operator learns that time has
//!   reached `t`, as if an event of time `t` had arrived: windows whose end the watermark passes
//!   fire, sequence runs past `.within` expire, absences (`NOT` at the end of a pattern) whose
//!   deadline passed complete, reorder buffers release what the watermark reaches. So a program
//!   with a timer has windows that close on time in a quiet worker.
//! * [`Engine::finish`] (end of input) fires every open time and session window and releases
//!   every held event; it confirms no absence (where a recording stops says nothing about what
//!   came after).

use super::exec::{emit_built, eval, exec, exec_matches, exec_released, OpCode, Run};
use super::Engine;
use crate::event::{Event, OutputEvent};
use crate::value::Value;
use std::sync::Arc;

/// Most ticks one [`Engine::advance_time`] call delivers; when time jumps further (a worker that
/// was stopped, a file with a long gap), the remaining ticks are skipped and counted.
pub const MAX_TICKS_PER_ADVANCE: u64 = 100_000;

/// A `timer(…)` source.
pub(super) struct TimerCode {
    /// Type of its tick events: `Timer_<Stream>`.
    pub ty: Arc<str>,
    /// Period in ns (> 0).
    pub period: i64,
    /// Delay of the first tick after the anchor, in ns.
    pub delay: i64,
    /// Time of the next tick (`None` until anchored).
    pub next: Option<i64>,
}

/// What a sweep over the stateful operators does.
#[derive(Clone, Copy)]
enum Sweep {
    /// Time reached this instant (ns).
    Time(i64),
    /// End of input.
    Flush,
}

impl Engine {
    /// Delivers every timer tick due at or before `now` (ns since the epoch), in time order (ties
    /// in declaration order), each preceded by a heartbeat at its time; appends what they
    /// produce to `out`. The first call anchors the timers at `now`. Does nothing for a program
    /// without timers.
    pub fn advance_time(&mut self, now: i64, out: &mut Vec<OutputEvent>) {
        if self.timers.is_empty() {
            return;
        }
        for t in &mut self.timers {
            if t.next.is_none() {
                t.next = Some(now.saturating_add(t.delay));
            }
        }
        let mut delivered = 0u64;
        loop {
            let due = self
                .timers
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.next.filter(|d| *d <= now).map(|d| (d, i)))
                .min();
            let Some((at, i)) = due else {
                break;
            };
            if delivered >= MAX_TICKS_PER_ADVANCE {
                for t in &mut self.timers {
                    while let Some(next) = t.next.filter(|d| *d <= now) {
                        let missed = (now - next) / t.period + 1;
                        t.next = Some(next.saturating_add(missed.saturating_mul(t.period)));
                        self.stats.timer_ticks_skipped += missed as u64;
                    }
                }
                tracing::warn!(
                    delivered,
                    "time jumped: timer ticks beyond the catch-up limit were skipped"
                );
                break;
            }
            let Some(t) = self.timers.get_mut(i) else {
                break;
            };
            t.next = Some(at.saturating_add(t.period));
            let tick = Event {
                event_type: t.ty.clone(),
                timestamp_ns: at,
                fields: Arc::new(vec![(
                    Arc::from("timestamp"),
                    Value::Int(at.div_euclid(1_000_000)),
                )]),
            };
            self.heartbeat(at, out);
            self.stats.timer_ticks += 1;
            self.route(&tick, out);
            delivered += 1;
        }
    }

    /// When the next timer tick is due (ns since the epoch): `None` without timers; before the
    /// first [`Engine::advance_time`] (timers not anchored yet) `Some(i64::MIN)`, i.e. now.
    pub fn next_timer_deadline(&self) -> Option<i64> {
        self.timers.iter().map(|t| t.next.unwrap_or(i64::MIN)).min()
    }

    /// Tells every stateful operator that time reached `now` (see the module documentation).
    pub fn heartbeat(&mut self, now: i64, out: &mut Vec<OutputEvent>) {
        self.sweep(Sweep::Time(now), out);
    }

    /// Signals the end of input: fires every open time and session window (count windows that
    /// are incomplete emit nothing) and releases events held by reorder buffers, routing the
    /// results downstream like [`Engine::process`].
    pub fn finish(&mut self, out: &mut Vec<OutputEvent>) {
        // A flushed stream may feed a windowed stream declared before it: repeat until quiet.
        for _ in 0..=self.streams.len() {
            if !self.sweep(Sweep::Flush, out) {
                break;
            }
        }
        self.collect_counters();
    }

    /// Runs `how` over every stateful operator, passing what they produce through the rest of
    /// their stream and routing the results. Returns whether anything was produced.
    fn sweep(&mut self, how: Sweep, out: &mut Vec<OutputEvent>) -> bool {
        let start = out.len();
        let mut tail: Vec<Event> = Vec::new();
        let mut produced_any = false;
        let mut errors = Vec::new();
        for stream in &self.streams {
            for (i, op) in stream.ops.iter().enumerate() {
                if !matches!(
                    op,
                    OpCode::Reorder(_)
                        | OpCode::Window(_)
                        | OpCode::Sequence(_)
                        | OpCode::Join(_)
                        | OpCode::Pattern(_)
                        | OpCode::Trend(_)
                ) {
                    continue;
                }
                let (out_mark, tail_mark) = (out.len(), tail.len());
                self.state.reset_frame();
                self.state.produced = 0;
                let alias = Event::new(&stream.name, 0, Vec::new());
                let mut run = Run {
                    st: &mut self.state,
                    fns: &self.fns,
                    stream,
                    alias: &alias,
                    out,
                    tail: &mut tail,
                };
                let r = match (op, how) {
                    (OpCode::Reorder(r), how) => {
                        let released = match how {
                            Sweep::Time(t) => r.on_time(t),
                            Sweep::Flush => r.flush(),
                        };
                        produced_any |= !released.is_empty();
                        exec_released(&mut run, i, &released)
                    }
                    (OpCode::Window(w), how) => {
                        let fired = match how {
                            Sweep::Time(t) => w.on_time(t, &mut |f, e| eval(&mut run, f, e)),
                            Sweep::Flush => w.flush(&mut |f, e| eval(&mut run, f, e)),
                        };
                        fired.and_then(|fired| {
                            produced_any |= !fired.is_empty();
                            fired
                                .iter()
                                .try_for_each(|e| exec(&mut run, i + 1, e, None))
                        })
                    }
                    (OpCode::Sequence(q), Sweep::Time(t)) => {
                        q.on_time(t);
                        Ok(())
                    }
                    (OpCode::Join(j), how) => {
                        let mut matches = match how {
                            Sweep::Time(t) => j.on_time(t),
                            Sweep::Flush => j.flush(),
                        };
                        produced_any |= !matches.is_empty();
                        if j.capture_emit() {
                            emit_built(&mut run, &mut matches)
                        } else {
                            exec_matches(&mut run, i, &matches)
                        }
                    }
                    (OpCode::Trend(tr), how) => {
                        let results = match how {
                            Sweep::Time(t) => tr.on_time(t),
                            Sweep::Flush => tr.flush(),
                        };
                        produced_any |= !results.is_empty();
                        exec_matches(&mut run, i, &results)
                    }
                    (OpCode::Pattern(p), Sweep::Time(t)) => {
                        let mut dropped = 0;
                        let matches = p.on_time(t, &mut dropped);
                        run.st.runs_dropped += dropped;
                        produced_any |= !matches.is_empty();
                        exec_matches(&mut run, i, &matches)
                    }
                    _ => Ok(()),
                };
                if let Err(error) = r {
                    out.truncate(out_mark);
                    tail.truncate(tail_mark);
                    errors.push((stream.name.to_string(), error));
                }
            }
        }
        for (stream, error) in errors {
            let what = match how {
                Sweep::Time(_) => "(time)",
                Sweep::Flush => "(end of input)",
            };
            self.record_error(stream, what.to_string(), error);
        }
        self.stats.events_out += out[start..].iter().filter(|o| o.is_output).count() as u64;
        for e in tail {
            self.route(&e, out);
        }
        self.collect_counters();
        produced_any
    }
}
