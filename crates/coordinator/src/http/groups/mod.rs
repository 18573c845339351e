//! `/api/v1/cluster/pipeline-groups` and `/api/v1/cluster/topology`: create, list, get, delete.
//!
//! Create: validate every pipeline's VPL (400 with diagnostics, nothing stored), let the leader
//! choose the group id and the placements, commit `CreateGroup`, deploy each placement and record
//! the results, then answer with the final placements. Delete: commit, then best-effort teardown
//! on the workers (the reconciler does not resurrect deleted groups). Injects are [`inject`],
//! rolling updates [`rollout`].

pub mod batch_wire;
pub mod inject;
pub mod rollout;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::join_all;
use varpulis_api::cluster::{
    PipelineGroupInfo, PipelineGroupList, PipelineGroupSpec, Topology, TornDownResponse,
};
use varpulis_api::Page;
use varpulis_cluster::plan::deploy::pending_deploys;
use varpulis_cluster::{ClusterState, Command, Outcome};

use crate::error::ApiError;
use crate::http::extract::{idempotency_key, ApiJson, ApiQuery};
use crate::leader::executor;
use crate::node::AppState;

/// The view of group `id`, or 404.
pub(crate) fn group_view(state: &AppState, id: &str) -> Result<PipelineGroupInfo, ApiError> {
    state
        .read(|s| {
            s.group(id)
                .map(|g| varpulis_cluster::views::group_info(s, g))
        })
        .ok_or_else(|| ApiError::NotFound(format!("pipeline group '{id}' not found")))
}

/// `POST /api/v1/cluster/pipeline-groups`: 201 with the group and its final placements.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(spec): ApiJson<PipelineGroupSpec>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    check_vpl(&state, &spec)?;
    let ctx = &state.leader;
    let group_id = ctx.new_id();
    let (placements, next_rr_cursor) = state.read(|s| plan(s, &spec))?;
    let command = Command::CreateGroup {
        group_id,
        spec,
        placements,
        next_rr_cursor,
        created_at_ms: ctx.now_ms(),
    };
    let outcome = ctx.store.write_keyed(command, key).await?;
    let Outcome::GroupCreated { group_id, .. } = outcome else {
        return Err(ApiError::Internal(format!(
            "unexpected outcome of create_group: {outcome:?}"
        )));
    };
    let mqtt_url = ctx.settings.mqtt_url.as_deref();
    let jobs = state.read(|s| pending_deploys(s, &group_id, mqtt_url));
    join_all(jobs.iter().map(|job| executor::deploy_and_record(ctx, job))).await;
    ctx.reconcile.notify_one();
    let info = group_view(&state, &group_id)?;
    tracing::info!(group = %info.name, id = %info.id, status = %info.status, "pipeline group created");
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// Placements for a new group, chosen by the leader from its applied state.
fn plan(
    s: &ClusterState,
    spec: &PipelineGroupSpec,
) -> Result<
    (
        Vec<varpulis_cluster::command::PlacementAssignment>,
        Option<u64>,
    ),
    ApiError,
> {
    let plan = varpulis_cluster::placement::plan_group(s, spec)?;
    Ok((plan.assignments, Some(plan.next_rr_cursor)))
}

/// `GET /api/v1/cluster/pipeline-groups`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> Json<PipelineGroupList> {
    let all = state.read(varpulis_cluster::views::group_views);
    let (pipeline_groups, total, pagination) = page.apply(all);
    Json(PipelineGroupList {
        pipeline_groups,
        total,
        pagination,
    })
}

/// `GET /api/v1/cluster/pipeline-groups/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PipelineGroupInfo>, ApiError> {
    group_view(&state, &id).map(Json)
}

/// `DELETE /api/v1/cluster/pipeline-groups/{id}`: `{"torn_down": true}`.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TornDownResponse>, ApiError> {
    let key = idempotency_key(&headers)?;
    // Where the pipelines run, read before the group disappears from the state.
    let running: Vec<(String, String)> = state.read(|s| {
        let Some(group) = s.group(&id) else {
            return Vec::new();
        };
        group
            .placements
            .iter()
            .filter_map(|p| Some((p.worker_id.clone()?, p.pipeline_id.clone()?)))
            .collect()
    });
    state
        .leader
        .store
        .write_keyed(
            Command::DeleteGroup {
                group_id: id.clone(),
            },
            key,
        )
        .await?;
    join_all(
        running
            .iter()
            .map(|(worker, pid)| executor::undeploy(&state.leader, worker, pid)),
    )
    .await;
    tracing::info!(group_id = %id, pipelines = running.len(), "pipeline group torn down");
    Ok(Json(TornDownResponse { torn_down: true }))
}

/// `GET /api/v1/cluster/topology`.
pub async fn topology(State(state): State<AppState>) -> Json<Topology> {
    Json(state.read(varpulis_cluster::views::topology))
}

/// Checks the spec's sizes against the configured limits (cheap, first: docs/security.md),
/// then every pipeline's VPL against the registry's connectors (400 with every diagnostic).
pub(crate) fn check_vpl(state: &AppState, spec: &PipelineGroupSpec) -> Result<(), ApiError> {
    varpulis_cluster::limits::check_group_spec(&state.config.limits, spec)?;
    let connectors: Vec<String> = state.read(|s| s.connectors().map(|c| c.name.clone()).collect());
    crate::validate::check_group(spec, connectors).map_err(ApiError::InvalidVpl)
}
