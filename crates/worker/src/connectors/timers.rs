//! Wall-clock ticks for programs with `timer(…)` sources (VPL Tier 3).
//!
//! One task per such pipeline sleeps until the engine's next tick is due (at most
//! [`MAX_SLEEP`]), delivers the due ticks with the current time on the pipeline's engine thread
//! and publishes what they produce like the outputs of connector events. Each tick is also a
//! heartbeat for the program's windows, sequences and patterns (docs/vpl-tier3.md), so they
//! close on time in a quiet worker. The task stops with the pipeline (or when it fails).
//!
//! Ticks are due-based, so two tasks ticking the same engine (the old and the new copy during a
//! rolling update's hand-over, which forwards to the new engine) deliver each tick once. A
//! paused pipeline (the new version of a rolling update) does not tick until its hand-over.

use crate::event_time::now_ns;
use crate::pipeline::Pipeline;
use crate::state::AppState;
use std::sync::Arc;
use std::time::Duration;

/// Longest sleep between two looks at the next deadline (a restore may move it).
pub const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Starts the tick task of `pipeline`; it ends at once when the program has no timers.
pub fn start(state: &AppState, pipeline: &Arc<Pipeline>) {
    state.tasks.spawn(run(pipeline.clone()));
}

async fn run(pipeline: Arc<Pipeline>) {
    let mut next = pipeline.next_timer_deadline().await;
    while let Some(due) = next {
        let wait = Duration::from_nanos(u64::try_from(due.saturating_sub(now_ns())).unwrap_or(0));
        tokio::select! {
            () = pipeline.cancel.cancelled() => break,
            () = tokio::time::sleep(wait.min(MAX_SLEEP)) => {},
        }
        let (out, ran, after) = match pipeline.tick(now_ns()).await {
            Ok(ticked) => ticked,
            Err(_) => break,
        };
        next = after;
        if !out.is_empty() {
            tokio::select! {
                () = pipeline.cancel.cancelled() => break,
                _ = ran.publish(&out) => {},
            }
        }
    }
}
