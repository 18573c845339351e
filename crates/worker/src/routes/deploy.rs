//! `/api/v1/pipelines` and `/api/v1/pipelines/{id}`: deploy, list, get, delete.

use super::{find, JsonBody, Shared};
use crate::connectors::enrich::HttpEnricher;
use crate::connectors::{self, plan};
use crate::engine::PipelineEngine;
use crate::error::WorkerError;
use crate::pipeline::Pipeline;
use crate::state_dir::StateDir;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use std::sync::Arc;
use varpulis_api::worker::{
    Checkpoint, DeployPipelineRequest, DeployPipelineResponse, PipelineInfo, PipelineList,
};

fn deployed(p: &Pipeline) -> DeployPipelineResponse {
    DeployPipelineResponse {
        id: p.id.clone(),
        name: p.name.clone(),
        status: p.status().0.to_owned(),
    }
}

/// `POST /api/v1/pipelines`: compiles (off the reactor), restores the optional checkpoint,
/// registers the pipeline and starts its connections. Idempotent on `id` with the same source.
pub async fn deploy(
    State(state): State<Shared>,
    JsonBody(req): JsonBody<DeployPipelineRequest>,
) -> Result<(StatusCode, Json<DeployPipelineResponse>), WorkerError> {
    if state.is_draining() {
        return Err(WorkerError::Draining);
    }
    let (status, answer) = deploy_pipeline(&state, req).await?;
    Ok((status, Json(answer)))
}

/// Deploys a pipeline (the `POST /api/v1/pipelines` handler without the draining check; also
/// how the state dir's pipelines are restored at start). With a state dir, the pipeline is
/// recorded there before its connections start, and a stored checkpoint of the same id and
/// source that is ahead of the request's one is restored instead of it.
pub async fn deploy_pipeline(
    state: &Shared,
    req: DeployPipelineRequest,
) -> Result<(StatusCode, DeployPipelineResponse), WorkerError> {
    if req.name.trim().is_empty() {
        return Err(WorkerError::BadRequest("`name` must not be empty".into()));
    }
    if let Some(id) = &req.id {
        if id.trim().is_empty() {
            return Err(WorkerError::BadRequest("`id` must not be empty".into()));
        }
        if let Some(existing) = state.registry.get(id) {
            return same_source(&existing, &req.source);
        }
    }
    refuse_older_epoch(state, req.id.as_deref(), req.epoch)?;
    let worker_mqtt = state.config.mqtt_url.clone();
    let worker_tls = state.config.tls.clone();
    let limits = state.config.limits;
    let store = state.state_dir.clone();
    let enricher = Arc::new(HttpEnricher::new(tokio::runtime::Handle::current()));
    let (pipeline, plan, record) = tokio::task::spawn_blocking(move || {
        let external = req.connectors.keys().cloned().collect();
        let engine =
            PipelineEngine::compile_with(&req.source, external, &limits, Some(enricher.clone()))?;
        enricher.configure(&engine.connectors(), &req.connectors)?;
        let plan = plan::plan(&engine, &req.connectors)?
            .with_routes(plan::routes::plan(
                worker_mqtt.as_deref(),
                req.routes.as_ref(),
                &worker_tls,
            )?)
            .with_enricher(enricher);
        let id = req
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let checkpoint = newest_checkpoint(store.as_deref(), &id, &req)?;
        let record = store.is_some().then(|| DeployPipelineRequest {
            checkpoint: None,
            ..req.clone()
        });
        let pipeline = Pipeline::new(id, req.name, req.source, req.epoch, engine, limits)?;
        if let Some(cp) = &checkpoint {
            let (bytes, events) = super::checkpoint::decode(cp)?;
            pipeline
                .restore_now(&bytes, events)
                .map_err(WorkerError::BadCheckpoint)?;
        }
        Ok::<_, WorkerError>((Arc::new(pipeline), (plan, req.paused), record))
    })
    .await
    .map_err(|e| WorkerError::Internal(format!("deploy failed: {e}")))??;
    if pipeline.epoch.is_some() {
        pipeline.set_lease(state.lease.clone());
    }
    match state
        .registry
        .insert(pipeline.clone(), state.config.max_pipelines as usize)
    {
        Ok(true) => {}
        Ok(false) => {
            pipeline.stop();
            return Err(WorkerError::AtCapacity(state.config.max_pipelines));
        }
        Err(existing) => {
            pipeline.stop();
            return same_source(&existing, &pipeline.source);
        }
    }
    if let Some(record) = record {
        if let Err(e) = record_in_state_dir(state, &pipeline, record).await {
            state.registry.remove(&pipeline.id);
            pipeline.stop();
            return Err(e);
        }
    }
    let (plan, paused) = plan;
    connectors::start(state, &pipeline, plan, paused);
    pipeline
        .wait_subscribed(state.config.route_subscribe_wait)
        .await;
    tracing::info!(id = %pipeline.id, name = %pipeline.name, "pipeline deployed");
    Ok((StatusCode::CREATED, deployed(&pipeline)))
}

/// The checkpoint to restore: the request's, or the state dir's for this id and source when
/// it reflects more events (the same id is the same copy of a placement, so ours is newer).
fn newest_checkpoint(
    store: Option<&StateDir>,
    id: &str,
    req: &DeployPipelineRequest,
) -> Result<Option<Checkpoint>, WorkerError> {
    let Some(store) = store else {
        return Ok(req.checkpoint.clone());
    };
    let local = store.checkpoint_for(id, &req.source).map_err(|e| {
        WorkerError::BadCheckpoint(format!(
            "the state dir's checkpoint of `{id}` cannot be read: {e}"
        ))
    })?;
    Ok(match (local, &req.checkpoint) {
        (Some(local), Some(shipped)) if shipped.events_processed >= local.events_processed => {
            Some(shipped.clone())
        }
        (Some(local), _) => {
            tracing::info!(
                id,
                events_processed = local.events_processed,
                "restoring the state dir's checkpoint"
            );
            Some(local)
        }
        (None, shipped) => shipped.clone(),
    })
}

/// Writes the deploy request to the state dir and forgets older epochs of the same placement.
async fn record_in_state_dir(
    state: &Shared,
    pipeline: &Pipeline,
    record: DeployPipelineRequest,
) -> Result<(), WorkerError> {
    let Some(store) = state.state_dir.clone() else {
        return Ok(());
    };
    let id = pipeline.id.clone();
    tokio::task::spawn_blocking(move || {
        store.save_deploy(&id, &record)?;
        let (Some((key, epoch)), Some(_)) = (placement_of(&id), record.epoch) else {
            return Ok(());
        };
        for other in store.ids()? {
            if placement_of(&other).is_some_and(|(k, e)| k == key && e < epoch) {
                store.remove(&other)?;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|e| WorkerError::Internal(format!("state dir: {e}")))?
    .map_err(|e| {
        WorkerError::Internal(format!(
            "cannot record pipeline `{}` in the state dir: {e}",
            pipeline.id
        ))
    })
}

/// The placement a coordinator pipeline id names (`{name}-{group}-r{replica}`) and its
/// epoch (the `-e{epoch}` suffix).
fn placement_of(id: &str) -> Option<(&str, u64)> {
    let (key, epoch) = id.rsplit_once("-e")?;
    Some((key, epoch.parse().ok()?))
}

/// Refuses a deploy for an older epoch of a placement than a copy running here: it was
/// decided before the placement moved on (fencing by epoch).
fn refuse_older_epoch(
    state: &crate::state::AppState,
    id: Option<&str>,
    epoch: Option<u64>,
) -> Result<(), WorkerError> {
    let (Some(id), Some(epoch)) = (id, epoch) else {
        return Ok(());
    };
    let Some((key, _)) = placement_of(id) else {
        return Ok(());
    };
    let newer = state.registry.all().into_iter().find(|p| {
        p.epoch.is_some_and(|e| e > epoch) && placement_of(&p.id).is_some_and(|(k, _)| k == key)
    });
    match newer {
        Some(p) => Err(WorkerError::StaleEpoch(format!(
            "pipeline `{id}` is for epoch {epoch}; `{}` runs epoch {} of the same placement here",
            p.id,
            p.epoch.unwrap_or_default()
        ))),
        None => Ok(()),
    }
}

fn same_source(
    existing: &Pipeline,
    source: &str,
) -> Result<(StatusCode, DeployPipelineResponse), WorkerError> {
    if existing.source == source {
        Ok((StatusCode::OK, deployed(existing)))
    } else {
        Err(WorkerError::Conflict(existing.id.clone()))
    }
}

/// `GET /api/v1/pipelines`.
pub async fn list(State(state): State<Shared>) -> Json<PipelineList> {
    let pipelines: Vec<PipelineInfo> = state.registry.all().iter().map(|p| p.info()).collect();
    Json(PipelineList {
        total: pipelines.len(),
        pipelines,
    })
}

/// `GET /api/v1/pipelines/{id}`.
pub async fn get_one(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<PipelineInfo>, WorkerError> {
    Ok(Json(find(&state, &id)?.info()))
}

/// `DELETE /api/v1/pipelines/{id}`: stops connectors and forgets the pipeline.
pub async fn delete(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, WorkerError> {
    let p = state
        .remove_pipeline(&id)
        .await
        .ok_or_else(|| WorkerError::PipelineNotFound(id.clone()))?;
    p.stop();
    tracing::info!(id = %p.id, "pipeline deleted");
    Ok(Json(serde_json::json!({"deleted": true, "id": p.id})))
}

#[cfg(test)]
mod tests {
    use super::placement_of;

    #[test]
    fn coordinator_ids_name_their_placement_and_epoch() {
        assert_eq!(
            placement_of("echo-5a9803f5-r0-e12"),
            Some(("echo-5a9803f5-r0", 12))
        );
        assert_eq!(
            placement_of("my-e-name-ab12-r1-e3"),
            Some(("my-e-name-ab12-r1", 3))
        );
        assert_eq!(placement_of("hand-made"), None);
    }
}
