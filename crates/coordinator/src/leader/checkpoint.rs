//! The leader's checkpoint loop: keeps the newest state of every running pipeline in Raft.
//!
//! Every `checkpoint_interval` the leader asks each Running placement's worker for a checkpoint
//! (`POST {worker}/api/v1/pipelines/{id}/checkpoint`) and stores it with `StoreCheckpoint` at the
//! placement's epoch (size-capped by the state machine). When the placement later migrates, the
//! reconciler ships that checkpoint to the new worker, so the pipeline resumes from it. A pipeline
//! whose event count did not change since its stored checkpoint is skipped, so idle clusters add
//! nothing to the log.
//!
//! Workers may also **push** checkpoints (`varpulis server --checkpoint-interval`):
//! `POST /api/v1/cluster/workers/{id}/checkpoints` `{epoch, checkpoint}` → [`store_pushed`], same
//! `StoreCheckpoint` (newest only, epoch-fenced, size-capped). The pull loop stays as a fallback
//! for workers that do not push. Drains and rebalances take a fresh checkpoint from the live
//! source right before moving (`executor::take_fresh`).

use tokio_util::sync::CancellationToken;
use varpulis_api::cluster::{CheckpointPush, CheckpointPushResponse};
use varpulis_cluster::plan::{plan_checkpoints, Action};
use varpulis_cluster::Command;

use crate::leader::context::LeaderCtx;
use crate::leader::error::LeaderError;
use crate::leader::executor;

/// Runs the loop until shutdown (does nothing when the interval is zero).
pub async fn run(ctx: LeaderCtx, shutdown: CancellationToken) {
    let interval = ctx.settings.checkpoint_interval;
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if ctx.store.is_leader() {
            checkpoint_once(&ctx).await;
        }
    }
}

/// Takes and stores one checkpoint per running placement (`plan_checkpoints`); returns how
/// many were stored.
pub async fn checkpoint_once(ctx: &LeaderCtx) -> usize {
    let mut stored = 0;
    for action in ctx.store.read(plan_checkpoints) {
        if let Action::Checkpoint(job) = action {
            stored += usize::from(executor::checkpoint(ctx, &job).await);
        }
    }
    stored
}

/// Stores a checkpoint pushed by `worker_id` for one of its placements (see the module docs).
pub async fn store_pushed(
    ctx: &LeaderCtx,
    worker_id: &str,
    push: CheckpointPush,
) -> Result<CheckpointPushResponse, LeaderError> {
    let pipeline_id = push.checkpoint.pipeline_id.clone();
    let found = ctx.store.read(|s| {
        s.worker(worker_id)?;
        let found = s.placements_on(worker_id).into_iter().find_map(|(g, p)| {
            (p.pipeline_id.as_deref() == Some(pipeline_id.as_str())).then(|| {
                let unchanged = p.checkpoint.as_ref().is_some_and(|c| {
                    c.epoch == push.epoch && c.events_processed == push.checkpoint.events_processed
                });
                (g.id.clone(), p.pipeline_name.clone(), p.replica, unchanged)
            })
        });
        Some(found)
    });
    let Some(found) = found else {
        return Err(LeaderError::NotFound(format!(
            "worker '{worker_id}' is not registered"
        )));
    };
    let Some((group_id, pipeline_name, replica, unchanged)) = found else {
        return Err(LeaderError::NotFound(format!(
            "pipeline '{pipeline_id}' is not placed on worker '{worker_id}'"
        )));
    };
    let data = serde_json::to_string(&push.checkpoint)
        .map_err(|e| LeaderError::Invalid(format!("checkpoint: {e}")))?;
    let size = data.len();
    if unchanged {
        return Ok(CheckpointPushResponse {
            stored: false,
            size,
        });
    }
    let command = Command::StoreCheckpoint {
        group_id,
        pipeline_name,
        replica,
        epoch: push.epoch,
        checkpoint: data,
        events_processed: push.checkpoint.events_processed,
        taken_at_ms: ctx.now_ms(),
    };
    ctx.store.write(command).await?;
    Ok(CheckpointPushResponse { stored: true, size })
}
