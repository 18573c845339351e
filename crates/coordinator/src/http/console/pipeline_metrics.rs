//! `GET /api/v1/cluster/pipeline-groups/{id}/metrics`: the counters (events in, events out,
//! errors) of every placement of a group, read from the workers that run them.
//!
//! The node answering reads each running placement's `GET /api/v1/pipelines/{id}/metrics` on
//! its worker through the worker client, [`CONCURRENCY`] at a time, each bounded by [`WORKER_TIMEOUT`], and reports a placement it
//! could not read with `unavailable` (not running yet, worker unreachable, ...) instead of
//! failing the whole answer. Counters start at zero when a pipeline is deployed on a worker:
//! after a migration or a rolling update they restart, which clients computing rates must
//! allow for (the console skips a sample whose counter went down or whose pipeline id changed).

use axum::extract::{Path, State};
use axum::Json;
use futures::stream::{self, StreamExt};
use std::time::Duration;
use varpulis_api::console::{GroupMetrics, PlacementMetrics};
use varpulis_cluster::group::PlacementStatus;

use crate::error::ApiError;
use crate::node::AppState;
use crate::transport::worker_client::WorkerRef;

/// Longest wait for one worker's counters.
const WORKER_TIMEOUT: Duration = Duration::from_secs(3);
/// Worker calls in flight at once for one answer (a group may have many placements).
const CONCURRENCY: usize = 32;

/// What is needed to read one placement's counters.
struct Target {
    entry: PlacementMetrics,
    /// The worker and pipeline id, when the placement runs.
    source: Option<(WorkerRef, String)>,
}

fn targets(state: &AppState, id: &str) -> Option<(String, Vec<Target>)> {
    state.read(|s| {
        let group = s.group(id)?;
        let targets = group
            .placements
            .iter()
            .map(|p| {
                let worker = p.worker_id.as_deref().and_then(|w| s.worker(w));
                let source = match (worker, p.pipeline_id.as_deref(), p.status) {
                    (Some(w), Some(pid), PlacementStatus::Running) => {
                        Some((WorkerRef::of(w), pid.to_string()))
                    }
                    _ => None,
                };
                let unavailable = source
                    .is_none()
                    .then(|| format!("placement is {}, not Running", p.status.as_str()));
                Target {
                    entry: PlacementMetrics {
                        pipeline_name: p.pipeline_name.clone(),
                        replica: p.replica,
                        worker_id: p.worker_id.clone().unwrap_or_default(),
                        pipeline_id: p.pipeline_id.clone().unwrap_or_default(),
                        status: p.status.as_str().to_string(),
                        events_in: None,
                        events_out: None,
                        errors: None,
                        unavailable,
                    },
                    source,
                }
            })
            .collect();
        Some((group.name.clone(), targets))
    })
}

async fn read_one(state: &AppState, target: Target) -> PlacementMetrics {
    let mut entry = target.entry;
    let Some((worker, pipeline_id)) = target.source else {
        return entry;
    };
    let answer = tokio::time::timeout(
        WORKER_TIMEOUT,
        state.leader.workers.metrics(&worker, &pipeline_id),
    )
    .await;
    match answer {
        Ok(Ok(m)) => {
            entry.events_in = Some(m.events_in);
            entry.events_out = Some(m.events_out);
            entry.errors = Some(m.errors);
        }
        Ok(Err(e)) => entry.unavailable = Some(e.to_string()),
        Err(_) => {
            entry.unavailable = Some(format!("worker did not answer within {WORKER_TIMEOUT:?}"))
        }
    }
    entry
}

/// `GET /api/v1/cluster/pipeline-groups/{id}/metrics` (any node).
pub async fn group_metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<GroupMetrics>, ApiError> {
    let mut found = targets(&state, &id);
    if found.is_none() && crate::http::proxy::catch_up_with_leader(&state).await {
        found = targets(&state, &id);
    }
    let (name, targets) =
        found.ok_or_else(|| ApiError::NotFound(format!("pipeline group '{id}' not found")))?;
    let placements = stream::iter(targets)
        .map(|t| read_one(&state, t))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    Ok(Json(GroupMetrics {
        group_id: id,
        name,
        placements,
        sampled_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    }))
}
