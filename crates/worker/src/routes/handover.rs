//! `POST /api/v1/pipelines/{id}/handover`: the last step of a rolling update on a worker.
//!
//! The coordinator deploys the new version next to the old one, then asks the old pipeline to
//! hand over: its state moves into the new pipeline (unless `state: "reset"`) and from then on
//! the old id forwards every event and checkpoint to the new pipeline, so clients and routes
//! still using the old id lose nothing until they switch. Repeating a handover is a no-op.
//!
//! Sources switch at the same point: the new pipeline is deployed `paused` (no source
//! connection) and takes the old pipeline's feed over — the same MQTT clients, inbound-route
//! sessions and queued messages — when its sources are the same; otherwise the old sources are
//! closed (what they already queued is forwarded) and the new ones start here.
//! The hand-over itself runs on the old pipeline's engine thread (pipeline/handover.rs).

use super::{find, JsonBody, Shared};
use crate::error::WorkerError;
use crate::pipeline::SourceSwitch;
use axum::extract::{Path, State};
use axum::Json;
use varpulis_api::worker::{HandoverRequest, HandoverResponse};

/// Longest the new sources wait for the replaced ones to close (an MQTT subscriber waits up to
/// 2 s for its UNSUBACKs).
const REPLACE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `POST /api/v1/pipelines/{id}/handover`.
pub async fn handover(
    State(state): State<Shared>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<HandoverRequest>,
) -> Result<Json<HandoverResponse>, WorkerError> {
    let keep = match req.state.as_deref() {
        None | Some("keep") => true,
        Some("reset") => false,
        Some(other) => {
            return Err(WorkerError::BadRequest(format!(
                "state must be \"keep\" or \"reset\", not \"{other}\""
            )))
        }
    };
    let from = find(&state, &id)?;
    let to = find(&state, &req.to)?;
    // A task of its own: a caller that gives up cannot leave a half-done switch (state moved
    // but the new sources never started).
    let done = {
        let (state, from, to) = (state.clone(), from.clone(), to.clone());
        state.clone().tasks.spawn(async move {
            let done = from.handover_to(&to, keep).await?;
            // The new copy ticks its timers from now on (it did not while paused).
            crate::connectors::timers::start(&state, &to);
            if done.sources == SourceSwitch::StartNew {
                state.clone().tasks.spawn(async move {
                    // After the old subscriptions closed: the two never read the same message.
                    to.wait_replaced(REPLACE_WAIT).await;
                    // Unless it was deleted or handed back (an abort) meanwhile.
                    if !to.cancel.is_cancelled() && to.forward_target().is_none() {
                        crate::connectors::start_sources(&state, &to);
                    }
                });
            }
            Ok::<_, WorkerError>(done)
        })
    };
    let done = done
        .await
        .map_err(|e| WorkerError::Internal(format!("hand-over failed: {e}")))??;
    let sources = done.sources;
    let already = done.already;
    // The old id only forwards now: restarted on its own it would be a second copy.
    state.forget_stored(&from.id).await;
    tracing::info!(from = %from.id, to = %to.id, keep, already, ?sources, "pipeline handed over");
    Ok(Json(HandoverResponse {
        from: from.id.clone(),
        to: to.id.clone(),
        state_transferred: keep && !already,
        events_processed: done.events_processed,
        already,
    }))
}
