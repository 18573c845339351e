//! The leader's checkpoint loop: keeps the newest state of every running pipeline in Raft.
//!
//! Every `checkpoint_interval` the leader asks each Running placement's worker for a checkpoint
//! (`POST {worker}/api/v1/pipelines/{id}/checkpoint`) and stores it with `StoreCheckpoint` at the
//! placement's epoch (size-capped by the state machine). When the placement later migrates, the
//! reconciler ships that checkpoint to the new worker, so the pipeline resumes from it. A pipeline
//! whose event count did not change since its stored checkpoint is skipped, so idle clusters add
//! nothing to the log.

use std::time::Duration;
use varpulis_api::worker::Checkpoint;
use varpulis_api::API_KEY_HEADER;
use varpulis_cluster::group::PlacementStatus;
use varpulis_cluster::registry::WorkerStatus;
use varpulis_cluster::{ClusterState, Command};

use crate::state::{now_ms, AppState};

/// One running placement to checkpoint.
#[derive(Debug, Clone)]
struct Source {
    group_id: String,
    pipeline_name: String,
    replica: u32,
    epoch: u64,
    pipeline_id: String,
    address: String,
    api_key: String,
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
                address: w.address.clone(),
                api_key: w.api_key.clone(),
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
pub async fn run(state: AppState) {
    let interval = state.config.checkpoint_interval;
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if state.raft.is_leader() {
            checkpoint_once(&state).await;
        }
    }
}

/// Takes and stores one checkpoint per running placement; returns how many were stored.
pub async fn checkpoint_once(state: &AppState) -> usize {
    let mut stored = 0;
    for src in state.read(sources) {
        let Some(cp) = fetch(state, &src).await else {
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
            taken_at_ms: now_ms(),
        };
        match state.write(command).await {
            Ok(_) => stored += 1,
            Err(err) => {
                tracing::debug!(pipeline = %src.pipeline_name, "checkpoint not stored: {err}")
            }
        }
    }
    stored
}

async fn fetch(state: &AppState, src: &Source) -> Option<Checkpoint> {
    if let Some((link, worker_id)) = crate::nats::link_for_address(state, &src.address) {
        return crate::nats::checkpoint(&link, &worker_id, &src.api_key, &src.pipeline_id).await;
    }
    let url = format!(
        "{}/api/v1/pipelines/{}/checkpoint",
        src.address.trim_end_matches('/'),
        src.pipeline_id
    );
    let answer = state
        .http
        .post(&url)
        .header(API_KEY_HEADER, &src.api_key)
        .timeout(state.config.http_client_timeout.min(Duration::from_secs(5)))
        .send()
        .await
        .ok()?;
    if !answer.status().is_success() {
        tracing::debug!(%url, status = %answer.status(), "checkpoint refused");
        return None;
    }
    answer.json::<Checkpoint>().await.ok()
}
