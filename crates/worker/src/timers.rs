//! Wall-clock ticks for programs with `timer(…)` sources (VPL Tier 3).
//!
//! One task per such pipeline sleeps until the engine's next tick is due (at most
//! [`MAX_SLEEP`]), delivers the due ticks with the current time and publishes what they produce
//! like the outputs of connector events. Each tick is also a heartbeat for the program's windows,
//! sequences and patterns (docs/vpl-tier3.md), so they close on time in a quiet worker. The task
//! stops with the pipeline.

use crate::engine::now_ns;
use crate::pipeline::Pipeline;
use crate::server::AppState;
use std::sync::Arc;
use std::time::Duration;

/// Longest sleep between two looks at the next deadline (a restore may move it).
pub const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Starts the tick task of `pipeline` when its program has timers.
pub fn start(state: &Arc<AppState>, pipeline: &Arc<Pipeline>) {
    if pipeline.next_timer_deadline().is_none() {
        return;
    }
    state.tasks.spawn(run(pipeline.clone()));
}

async fn run(pipeline: Arc<Pipeline>) {
    let mut out = Vec::new();
    loop {
        let now = now_ns();
        let wait = match pipeline.next_timer_deadline() {
            None => break,
            Some(due) => Duration::from_nanos(u64::try_from(due.saturating_sub(now)).unwrap_or(0)),
        };
        tokio::select! {
            () = pipeline.cancel.cancelled() => break,
            () = tokio::time::sleep(wait.min(MAX_SLEEP)) => {},
        }
        let ran = pipeline.tick_in(now_ns(), &mut out);
        if !out.is_empty() {
            tokio::select! {
                () = pipeline.cancel.cancelled() => break,
                () = ran.publish(&out) => {},
            }
            out.clear();
        }
    }
}
