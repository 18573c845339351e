//! Self-fencing: the lease watch and lifting a fence.
//!
//! [`watch`] sleeps until the lease ends; when it has run out without a renewal the worker
//! fences itself: every coordinator-deployed pipeline pauses its sources (the feed stops, so
//! nothing more is read from the brokers) and publishes nothing (`Pipeline::publish` and the
//! processing path check the lease at the point of use as well). The pipelines show `fenced`
//! in `GET /api/v1/pipelines` and `varpulis_worker_pipelines_fenced` on `/metrics`.
//!
//! The fence is lifted by the first heartbeat answer after the lease was renewed
//! ([`after_heartbeat`]): the pipelines the leader lists as stale (moved away meanwhile, an
//! older epoch) are removed first, then the sources of the others start again. A stale copy
//! therefore never consumes anything after the worker comes back.

use crate::connectors;
use crate::state::AppState;
use std::time::{Duration, Instant};
use varpulis_api::cluster::HeartbeatResponse;

/// Longest sleep of the watch (a renewal moves the end; the watch reads it again).
const WATCH_MAX: Duration = Duration::from_millis(250);

/// Fences the worker whenever its lease runs out, until shutdown.
pub async fn watch(state: std::sync::Arc<AppState>) {
    loop {
        let now = Instant::now();
        let wait = match state.lease.ends_at() {
            _ if state.lease.fence_recorded() => WATCH_MAX,
            Some(end) => end.saturating_duration_since(now).min(WATCH_MAX),
            None => WATCH_MAX,
        };
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {},
        }
        if !state.lease.fence_recorded() && state.lease.expired_at(Instant::now()) {
            fence(&state);
        }
    }
}

/// Fences the worker now: pauses the sources of every coordinator-deployed pipeline.
pub fn fence(state: &AppState) {
    if !state.lease.fence() {
        return;
    }
    let pipelines = state.registry.all();
    for p in &pipelines {
        p.pause_for_fence();
    }
    let fenced = pipelines.iter().filter(|p| p.epoch.is_some()).count();
    tracing::warn!(
        worker_id = %state.config.worker_id,
        pipelines = fenced,
        "lease expired: no answer from the leader; pipelines fenced (sources paused, no output)"
    );
}

/// Applies a heartbeat answer: removes the pipelines it calls stale and, when the worker was
/// fenced and the lease holds again, lifts the fence and restarts the paused sources.
pub fn after_heartbeat(state: &AppState, answer: &HeartbeatResponse) {
    for id in &answer.stale_pipelines {
        if let Some(p) = state.registry.get(id) {
            if p.epoch.is_none() {
                continue;
            }
            if let Some(p) = state.registry.remove(id) {
                p.stop();
                if let Some(dir) = state.state_dir.clone() {
                    let id = id.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = dir.remove(&id) {
                            tracing::error!(pipeline = %id, error = %e, "cannot remove the stale copy from the state dir");
                        }
                    });
                }
                tracing::info!(pipeline = %id, "stale copy removed: the leader places it elsewhere");
            }
        }
    }
    if !state.lease.fence_recorded() || state.lease.expired_at(Instant::now()) {
        return;
    }
    state.lease.lift();
    let mut resumed = 0;
    for p in state.registry.all() {
        if p.take_fence_paused() {
            connectors::start_sources(state, &p);
            resumed += 1;
        }
    }
    tracing::info!(resumed, "lease renewed: fence lifted");
}
