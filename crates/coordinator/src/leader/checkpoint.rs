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
//! source right before moving ([`take_fresh`]).

use varpulis_api::cluster::{CheckpointPush, CheckpointPushResponse};
use varpulis_api::worker::Checkpoint;
use varpulis_cluster::group::PlacementStatus;
use varpulis_cluster::registry::WorkerStatus;
use varpulis_cluster::{ClusterState, Command};

use tokio_util::sync::CancellationToken;

use crate::leader::context::LeaderCtx;
use crate::leader::error::LeaderError;
use crate::transport::worker_client::WorkerRef;

/// One running placement to checkpoint.
#[derive(Debug, Clone)]
struct Source {
    group_id: String,
    pipeline_name: String,
    replica: u32,
    epoch: u64,
    pipeline_id: String,
    worker: WorkerRef,
    stored_events: Option<u64>,
}

fn sources(s: &ClusterState) -> Vec<Source> {
    let mut out = Vec::new();
    for g in s.groups() {
        for p in g
            .placements
            .iter()
            .filter(|p| p.status == PlacementStatus::Running)
        {
            let (Some(worker_id), Some(pipeline_id)) =
                (p.worker_id.as_deref(), p.pipeline_id.as_ref())
            else {
                continue;
            };
            let Some(w) = s
                .worker(worker_id)
                .filter(|w| w.status == WorkerStatus::Ready || w.status == WorkerStatus::Busy)
            else {
                continue;
            };
            out.push(Source {
                group_id: g.id.clone(),
                pipeline_name: p.pipeline_name.clone(),
                replica: p.replica,
                epoch: p.epoch,
                pipeline_id: pipeline_id.clone(),
                worker: WorkerRef::of(w),
                stored_events: p
                    .checkpoint
                    .as_ref()
                    .filter(|c| c.epoch == p.epoch)
                    .map(|c| c.events_processed),
            });
        }
    }
    out
}

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

/// Takes and stores one checkpoint per running placement; returns how many were stored.
pub async fn checkpoint_once(ctx: &LeaderCtx) -> usize {
    let mut stored = 0;
    for src in ctx.store.read(sources) {
        let Some(cp) = fetch(ctx, &src).await else {
            continue;
        };
        if src.stored_events == Some(cp.events_processed) {
            continue;
        }
        let events_processed = cp.events_processed;
        let Ok(data) = serde_json::to_string(&cp) else {
            continue;
        };
        let command = Command::StoreCheckpoint {
            group_id: src.group_id.clone(),
            pipeline_name: src.pipeline_name.clone(),
            replica: src.replica,
            epoch: src.epoch,
            checkpoint: data,
            events_processed,
            taken_at_ms: ctx.now_ms(),
        };
        match ctx.store.write(command).await {
            Ok(_) => stored += 1,
            Err(err) => {
                tracing::debug!(pipeline = %src.pipeline_name, "checkpoint not stored: {err}")
            }
        }
    }
    stored
}

async fn fetch(ctx: &LeaderCtx, src: &Source) -> Option<Checkpoint> {
    match ctx.workers.checkpoint(&src.worker, &src.pipeline_id).await {
        Ok(cp) => Some(cp),
        Err(err) => {
            tracing::debug!(pipeline_id = %src.pipeline_id, "checkpoint refused: {err}");
            None
        }
    }
}

/// Takes a checkpoint of a live placement's pipeline and stores it in Raft at `epoch`, so a new
/// leader restores the same state; returns it (also when storing failed, e.g. over the cap:
/// the migration can still ship it).
pub async fn take_fresh(
    ctx: &LeaderCtx,
    placement: (&str, &str, u32),
    epoch: u64,
    worker: &WorkerRef,
    pipeline_id: &str,
) -> Option<Checkpoint> {
    let (group_id, pipeline_name, replica) = placement;
    let src = Source {
        group_id: group_id.to_string(),
        pipeline_name: pipeline_name.to_string(),
        replica,
        epoch,
        pipeline_id: pipeline_id.to_string(),
        worker: worker.clone(),
        stored_events: None,
    };
    let cp = fetch(ctx, &src).await?;
    if let Ok(data) = serde_json::to_string(&cp) {
        let command = Command::StoreCheckpoint {
            group_id: src.group_id.clone(),
            pipeline_name: src.pipeline_name.clone(),
            replica,
            epoch,
            checkpoint: data,
            events_processed: cp.events_processed,
            taken_at_ms: ctx.now_ms(),
        };
        if let Err(err) = ctx.store.write(command).await {
            tracing::warn!(pipeline = %pipeline_name, "fresh checkpoint not stored: {err}");
        }
    }
    Some(cp)
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
