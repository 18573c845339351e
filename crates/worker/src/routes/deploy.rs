//! `/api/v1/pipelines` and `/api/v1/pipelines/{id}`: deploy, list, get, delete.

use super::{find, JsonBody, Shared};
use crate::connectors::enrich::HttpEnricher;
use crate::connectors::{self, plan};
use crate::engine::PipelineEngine;
use crate::error::WorkerError;
use crate::pipeline::Pipeline;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use std::sync::Arc;
use varpulis_api::worker::{
    DeployPipelineRequest, DeployPipelineResponse, PipelineInfo, PipelineList,
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
    refuse_older_epoch(&state, req.id.as_deref(), req.epoch)?;
    let worker_mqtt = state.config.mqtt_url.clone();
    let worker_tls = state.config.tls_settings();
    let limits = state.config.limits;
    let enricher = Arc::new(HttpEnricher::new(tokio::runtime::Handle::current()));
    let (pipeline, plan) = tokio::task::spawn_blocking(move || {
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
        let pipeline = Pipeline::new(id, req.name, req.source, req.epoch, engine, limits)?;
        if let Some(cp) = &req.checkpoint {
            let (bytes, events) = super::checkpoint::decode(cp)?;
            pipeline
                .restore_now(&bytes, events)
                .map_err(WorkerError::BadCheckpoint)?;
        }
        Ok::<_, WorkerError>((Arc::new(pipeline), (plan, req.paused)))
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
    let (plan, paused) = plan;
    connectors::start(&state, &pipeline, plan, paused);
    pipeline
        .wait_subscribed(state.config.route_subscribe_wait)
        .await;
    tracing::info!(id = %pipeline.id, name = %pipeline.name, "pipeline deployed");
    Ok((StatusCode::CREATED, Json(deployed(&pipeline))))
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
) -> Result<(StatusCode, Json<DeployPipelineResponse>), WorkerError> {
    if existing.source == source {
        Ok((StatusCode::OK, Json(deployed(existing))))
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
        .registry
        .remove(&id)
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
