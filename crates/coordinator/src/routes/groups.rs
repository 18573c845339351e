//! `/api/v1/cluster/pipeline-groups` and `/api/v1/cluster/topology`.
//!
//! Create: validate every pipeline's VPL (400 with diagnostics, nothing stored), let the leader
//! choose the group id and the placements, commit `CreateGroup`, deploy each placement and record
//! the results, then answer with the final placements. Delete: commit, then best-effort teardown on
//! the workers (the reconciler does not resurrect deleted groups). Inject works on any node: routing
//! reads the local replicated state and the event goes straight to the worker.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::join_all;
use std::collections::BTreeMap;
use std::time::Duration;
use varpulis_api::cluster::{
    GroupInjectBatchResponse, GroupInjectRequest, GroupInjectResponse, PipelineGroupInfo,
    PipelineGroupList, PipelineGroupSpec, Topology, TornDownResponse,
};
use varpulis_api::worker::{BatchInjectRequest, BatchInjectResponse, InjectResponse, InputEvent};
use varpulis_api::{Page, API_KEY_HEADER};
use varpulis_cluster::group::PlacementStatus;
use varpulis_cluster::{ClusterState, Command, Outcome};

use crate::deploy;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::metrics::Metrics;
use crate::rolling::DriveError;
use crate::state::{idempotency_key, now_ms, AppState};
use varpulis_api::cluster::{GroupUpdateResponse, RollbackRequest, UpdateGroupRequest};
use varpulis_cluster::version::{RolloutCommand, StateMode};

fn group_view(state: &AppState, id: &str) -> Result<PipelineGroupInfo, ApiError> {
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
    // Sizes first (cheap), before the VPL check and placement (docs/security.md).
    varpulis_cluster::limits::check_group_spec(&state.config.limits, &spec)?;
    let connectors: Vec<String> = state.read(|s| s.connectors().map(|c| c.name.clone()).collect());
    crate::validate::check_group(&spec, connectors).map_err(ApiError::InvalidVpl)?;
    let group_id = uuid::Uuid::new_v4().to_string();
    let (placements, next_rr_cursor) = state.read(|s| plan(s, &spec))?;
    let command = Command::CreateGroup {
        group_id,
        spec,
        placements,
        next_rr_cursor,
        created_at_ms: now_ms(),
    };
    let outcome = state.write_keyed(command, key).await?;
    let Outcome::GroupCreated { group_id, .. } = outcome else {
        return Err(ApiError::Internal(format!(
            "unexpected outcome of create_group: {outcome:?}"
        )));
    };
    let targets = state.read(|s| deploy::pending_targets(s, &group_id));
    join_all(targets.iter().map(|t| deploy::deploy_and_record(&state, t))).await;
    state.reconcile.notify_one();
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
    let running: Vec<(String, String, String)> = state.read(|s| {
        let Some(group) = s.group(&id) else {
            return Vec::new();
        };
        group
            .placements
            .iter()
            .filter_map(|p| {
                let worker = s.worker(p.worker_id.as_deref()?)?;
                Some((
                    worker.address.clone(),
                    worker.api_key.clone(),
                    p.pipeline_id.clone()?,
                ))
            })
            .collect()
    });
    state
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
            .map(|(address, api_key, pid)| deploy::undeploy(&state, address, api_key, pid)),
    )
    .await;
    tracing::info!(group_id = %id, pipelines = running.len(), "pipeline group torn down");
    Ok(Json(TornDownResponse { torn_down: true }))
}

/// `GET /api/v1/cluster/topology`.
pub async fn topology(State(state): State<AppState>) -> Json<Topology> {
    Json(state.read(varpulis_cluster::views::topology))
}

/// Where an event of `event_type` goes: (pipeline name, worker id, worker URL, worker key, pipeline id).
struct Route {
    pipeline: String,
    worker_id: String,
    address: String,
    api_key: String,
    pipeline_id: String,
}

fn resolve(s: &ClusterState, group_id: &str, event_type: &str) -> Result<Route, ApiError> {
    let group = s
        .group(group_id)
        .ok_or_else(|| ApiError::NotFound(format!("pipeline group '{group_id}' not found")))?;
    let pipeline = varpulis_cluster::routing::route(group, event_type)
        .ok_or_else(|| ApiError::BadRequest(format!("no route for event type '{event_type}'")))?
        .to_string();
    let running = group
        .placements
        .iter()
        .filter(|p| p.pipeline_name == pipeline && p.status == PlacementStatus::Running)
        .find_map(|p| {
            let worker = s.worker(p.worker_id.as_deref()?)?;
            Some(Route {
                pipeline: pipeline.clone(),
                worker_id: worker.id.clone(),
                address: worker.address.clone(),
                api_key: worker.api_key.clone(),
                pipeline_id: p.pipeline_id.clone()?,
            })
        });
    running.ok_or_else(|| {
        ApiError::Unavailable(format!(
            "pipeline '{pipeline}' is not running on any worker yet"
        ))
    })
}

/// How long an inject waits for a pipeline that is being deployed or moved to another worker
/// before answering 503. A rebalance move or a migration takes tens of milliseconds; a deploy at
/// most the worker call timeout. Waiting keeps those internal moves invisible to clients.
const SETTLE_PATIENCE: Duration = Duration::from_secs(10);

/// Whether `pipeline` of the group (every pipeline when `None`) has a placement on its way to
/// running: being deployed, or moving to a chosen worker. A move still waiting for a target (no
/// worker can take it) is not: waiting for it would only delay the 503.
fn in_transit(s: &ClusterState, group_id: &str, pipeline: Option<&str>) -> bool {
    let Some(g) = s.group(group_id) else {
        return false;
    };
    g.placements.iter().any(|p| {
        pipeline.is_none_or(|name| p.pipeline_name == name)
            && match p.status {
                PlacementStatus::Deploying => true,
                PlacementStatus::Migrating => s
                    .active_migration_for(group_id, &p.pipeline_name, p.replica)
                    .is_some_and(|m| m.to_worker.is_some()),
                _ => false,
            }
    })
}

/// The pipeline an event of `event_type` is routed to, if the group and a route exist.
fn target_pipeline(s: &ClusterState, group_id: &str, event_type: &str) -> Option<String> {
    let group = s.group(group_id)?;
    varpulis_cluster::routing::route(group, event_type).map(str::to_owned)
}

/// Waits (at most [`SETTLE_PATIENCE`]) until no placement of the group (or only of `pipeline`,
/// when given) is being deployed or moved, following the locally applied state.
async fn await_settled(state: &AppState, group_id: &str, pipeline: Option<&str>) {
    let mut applied = state.raft.applied_index_watch();
    let settled = async {
        loop {
            applied.borrow_and_update();
            if !state.read(|s| in_transit(s, group_id, pipeline)) {
                return;
            }
            if applied.changed().await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(SETTLE_PATIENCE, settled).await;
}

/// [`resolve`], retried when this follower's state may simply lag behind a write the client just
/// made (unknown group, placement not running yet: it catches up with the leader first), and
/// when the target pipeline is being deployed or moved (it waits for that to finish).
async fn resolve_fresh(
    state: &AppState,
    group_id: &str,
    event_type: &str,
) -> Result<Route, ApiError> {
    match state.read(|s| resolve(s, group_id, event_type)) {
        Err(ApiError::NotFound(_) | ApiError::Unavailable(_)) => {}
        other => return other,
    }
    state.catch_up_with_leader().await;
    let Some(pipeline) = state.read(|s| target_pipeline(s, group_id, event_type)) else {
        return state.read(|s| resolve(s, group_id, event_type));
    };
    await_settled(state, group_id, Some(&pipeline)).await;
    state.read(|s| resolve(s, group_id, event_type))
}

async fn post_worker(
    state: &AppState,
    route: &Route,
    path: &str,
    body: reqwest::Body,
    content_type: &str,
) -> Result<Bytes, ApiError> {
    let bytes = body.as_bytes().unwrap_or_default();
    let ids = (
        route.worker_id.as_str(),
        route.api_key.as_str(),
        route.pipeline_id.as_str(),
    );
    if let Some(answer) = crate::nats::post_pipeline(state, ids, path, bytes, content_type).await {
        return answer;
    }
    let url = format!(
        "{}/api/v1/pipelines/{}/{path}",
        route.address.trim_end_matches('/'),
        route.pipeline_id
    );
    let answer = state
        .http
        .post(&url)
        .header(API_KEY_HEADER, &route.api_key)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            ApiError::BadGateway(format!("worker '{}' unreachable: {e}", route.worker_id))
        })?;
    let status = answer.status();
    let bytes = answer.bytes().await.map_err(|e| {
        ApiError::BadGateway(format!(
            "worker '{}' answer cut short: {e}",
            route.worker_id
        ))
    })?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        return Err(ApiError::BadGateway(format!(
            "worker '{}' answered {status}: {}",
            route.worker_id,
            text.trim()
        )));
    }
    Ok(bytes)
}

/// `POST /api/v1/cluster/pipeline-groups/{id}/inject` (any node).
pub async fn inject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(event): ApiJson<GroupInjectRequest>,
) -> Result<Json<GroupInjectResponse>, ApiError> {
    let route = resolve_fresh(&state, &id, &event.event_type).await?;
    let body = serde_json::to_vec(&InputEvent {
        event_type: event.event_type,
        fields: event.fields,
        timestamp: None,
    })
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let bytes = post_worker(&state, &route, "events", body.into(), "application/json").await?;
    let worker_response: InjectResponse = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::BadGateway(format!(
            "worker '{}' answered unexpected JSON: {e}",
            route.worker_id
        ))
    })?;
    Metrics::inc(&state.metrics.injected_events);
    Ok(Json(GroupInjectResponse {
        routed_to: route.pipeline,
        worker_id: route.worker_id,
        worker_response,
    }))
}

/// `POST /api/v1/cluster/pipeline-groups/{id}/inject-batch` (any node): a JSON array,
/// `{"events": [...]}`, or `.evt` text with `Content-Type: text/plain`.
pub async fn inject_batch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<GroupInjectBatchResponse>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let is_text = content_type.starts_with("text/plain");
    if !is_text && !content_type.starts_with("application/json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "inject-batch takes application/json or text/plain (.evt), not {content_type}"
        )));
    }
    // A follower may lag behind a create or a move the client just made through the leader, and
    // a pipeline may be on its way to another worker: wait for both rather than fail.
    let settled = state.read(|s| {
        s.group(&id).is_some_and(|g| {
            g.placements
                .iter()
                .all(|p| p.status == PlacementStatus::Running)
        })
    });
    if !settled {
        state.catch_up_with_leader().await;
        await_settled(&state, &id, None).await;
    }
    // Per target pipeline: the body to send, in first-seen order of pipelines.
    let mut order: Vec<String> = Vec::new();
    let mut routes: BTreeMap<String, Route> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut json_parts: BTreeMap<String, Vec<InputEvent>> = BTreeMap::new();
    let mut text_parts: BTreeMap<String, String> = BTreeMap::new();
    let mut shared_lines = String::new();
    if is_text {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
        for line in text.lines() {
            match evt_event_type(line) {
                None => {
                    // Comments and BATCH lines apply to every target.
                    shared_lines.push_str(line);
                    shared_lines.push('\n');
                    for part in text_parts.values_mut() {
                        part.push_str(line);
                        part.push('\n');
                    }
                }
                Some(event_type) => {
                    let target = route_for(&state, &id, event_type, &mut routes, &mut order)?;
                    *counts.entry(target.clone()).or_default() += 1;
                    let part = text_parts
                        .entry(target)
                        .or_insert_with(|| shared_lines.clone());
                    part.push_str(line);
                    part.push('\n');
                }
            }
        }
    } else {
        let events = parse_json_events(&body)?;
        for event in events {
            let target = route_for(&state, &id, &event.event_type, &mut routes, &mut order)?;
            *counts.entry(target.clone()).or_default() += 1;
            json_parts.entry(target).or_default().push(event);
        }
    }
    let mut output_events = Vec::new();
    let mut accepted = 0;
    for pipeline in &order {
        let Some(route) = routes.get(pipeline) else {
            continue;
        };
        let bytes = if is_text {
            let text = text_parts.remove(pipeline).unwrap_or_default();
            post_worker(&state, route, "events-batch", text.into(), "text/plain").await?
        } else {
            let events = json_parts.remove(pipeline).unwrap_or_default();
            let body = serde_json::to_vec(&BatchInjectRequest { events })
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            post_worker(
                &state,
                route,
                "events-batch",
                body.into(),
                "application/json",
            )
            .await?
        };
        let answer: BatchInjectResponse = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::BadGateway(format!(
                "worker '{}' answered unexpected JSON: {e}",
                route.worker_id
            ))
        })?;
        accepted += answer.accepted;
        output_events.extend(answer.output_events);
    }
    state
        .metrics
        .injected_events
        .fetch_add(accepted as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(Json(GroupInjectBatchResponse {
        accepted,
        routed: counts,
        output_events,
    }))
}

fn route_for(
    state: &AppState,
    group_id: &str,
    event_type: &str,
    routes: &mut BTreeMap<String, Route>,
    order: &mut Vec<String>,
) -> Result<String, ApiError> {
    let route = state.read(|s| resolve(s, group_id, event_type))?;
    let name = route.pipeline.clone();
    if !routes.contains_key(&name) {
        order.push(name.clone());
        routes.insert(name.clone(), route);
    }
    Ok(name)
}

/// A JSON batch: a bare array of events or `{"events": [...]}`.
fn parse_json_events(body: &[u8]) -> Result<Vec<InputEvent>, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Batch {
        Bare(Vec<InputEvent>),
        Wrapped(BatchInjectRequest),
    }
    match serde_json::from_slice::<Batch>(body) {
        Ok(Batch::Bare(events)) => Ok(events),
        Ok(Batch::Wrapped(req)) => Ok(req.events),
        Err(e) => Err(ApiError::BadRequest(format!(
            "expected a JSON array of events or {{\"events\": [...]}}: {e}"
        ))),
    }
}

/// The event type of an `.evt` line (`[@offset ]Type { ... }`), `None` for comments, blanks and `BATCH`.
fn evt_event_type(line: &str) -> Option<&str> {
    let mut rest = line.trim();
    if rest.is_empty()
        || rest.starts_with('#')
        || rest.starts_with("//")
        || rest.starts_with("BATCH")
    {
        return None;
    }
    if let Some(after) = rest.strip_prefix('@') {
        rest = after
            .split_once(char::is_whitespace)
            .map(|(_, r)| r.trim_start())
            .unwrap_or("");
    }
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let name = &rest[..end];
    (!name.is_empty()).then_some(name)
}

// ----- rolling updates (crate::rolling) -----

/// An error answer with a specific code (for outcomes `ApiError` has no variant for).
fn coded_error(status: StatusCode, code: &str, message: String, details: Vec<String>) -> Response {
    let mut body = serde_json::json!({"error": message, "code": code});
    if !details.is_empty() {
        body["details"] = serde_json::json!(details);
    }
    (status, Json(body)).into_response()
}

/// Validates, plans and runs a rolling update of `group_id` to `spec`; the answer of
/// `PUT .../{id}` and `POST .../{id}/rollback`.
async fn roll(
    state: &AppState,
    group_id: &str,
    spec: PipelineGroupSpec,
    state_mode: Option<StateMode>,
    restores: Option<u64>,
) -> Result<Response, ApiError> {
    varpulis_cluster::limits::check_group_spec(&state.config.limits, &spec)?;
    let connectors: Vec<String> = state.read(|s| s.connectors().map(|c| c.name.clone()).collect());
    crate::validate::check_group(&spec, connectors).map_err(ApiError::InvalidVpl)?;
    let current = state
        .read(|s| s.group(group_id).map(|g| g.spec.clone()))
        .ok_or_else(|| ApiError::NotFound(format!("pipeline group '{group_id}' not found")))?;
    let mut changed = Vec::new();
    let mut why = Vec::new();
    for (old, new) in current.pipelines.iter().zip(&spec.pipelines) {
        if old.source != new.source {
            changed.push(old.name.clone());
            why.extend(crate::rolling::incompatibilities(
                &old.name,
                &old.source,
                &new.source,
            ));
        }
    }
    if changed.is_empty() {
        return Err(ApiError::BadRequest(
            "the update changes no pipeline source".into(),
        ));
    }
    let mode = match state_mode {
        Some(m) => m,
        None if why.is_empty() => StateMode::Keep,
        None => {
            return Ok(coded_error(
                StatusCode::CONFLICT,
                "state_incompatible",
                "the state shape changes (streams, operators or variables); \
                 send \"state\": \"reset\" to start the new version without the old state"
                    .into(),
                why,
            ))
        }
    };
    if mode == StateMode::Keep && !why.is_empty() {
        return Ok(coded_error(
            StatusCode::CONFLICT,
            "state_incompatible",
            "the old state cannot continue in the new version; use \"state\": \"reset\"".into(),
            why,
        ));
    }
    let previous_version = state.read(|s| s.group(group_id).map(|g| g.version).unwrap_or(0));
    let rollout =
        state.read(|s| crate::rolling::plan(s, group_id, spec, changed.clone(), mode, restores))?;
    state
        .write(Command::Rollout(RolloutCommand::Start {
            group_id: group_id.to_string(),
            rollout: Box::new(rollout),
        }))
        .await?;
    match crate::rolling::drive(state, group_id).await {
        Ok(version) => {
            let group = group_view(state, group_id)?;
            tracing::info!(%group_id, version, "pipeline group updated");
            Ok(Json(GroupUpdateResponse {
                group_id: group_id.to_string(),
                version,
                previous_version,
                changed,
                state: mode.as_str().to_string(),
                restores,
                group,
            })
            .into_response())
        }
        Err(DriveError::Aborted(error)) => Ok(coded_error(
            StatusCode::CONFLICT,
            "update_aborted",
            format!("rolling update aborted, the group keeps version {previous_version}: {error}"),
            Vec::new(),
        )),
        Err(DriveError::Interrupted(e)) => Err(e),
    }
}

/// `PUT /api/v1/cluster/pipeline-groups/{id}`: rolling update of some pipelines' VPL.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateGroupRequest>,
) -> Result<Response, ApiError> {
    let mode = crate::rolling::parse_state(req.state.as_deref())?;
    let mut spec = state
        .read(|s| s.group(&id).map(|g| g.spec.clone()))
        .ok_or_else(|| ApiError::NotFound(format!("pipeline group '{id}' not found")))?;
    if req.pipelines.is_empty() {
        return Err(ApiError::BadRequest("`pipelines` must not be empty".into()));
    }
    for update in &req.pipelines {
        let Some(p) = spec.pipelines.iter_mut().find(|p| p.name == update.name) else {
            return Err(ApiError::BadRequest(format!(
                "the group has no pipeline named '{}'",
                update.name
            )));
        };
        p.source.clone_from(&update.source);
    }
    roll(&state, &id, spec, mode, None).await
}

/// `POST /api/v1/cluster/pipeline-groups/{id}/rollback`: rolling update back to the spec of
/// an earlier version (default: the previous one), recorded as a new version.
pub async fn rollback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid rollback request: {e}")))?
    };
    let mode = crate::rolling::parse_state(req.state.as_deref())?;
    let (version, history) = state
        .read(|s| {
            s.group(&id).map(|g| {
                let history = s
                    .group_versions(&id)
                    .map(|v| v.history.clone())
                    .unwrap_or_default();
                (g.version, history)
            })
        })
        .ok_or_else(|| ApiError::NotFound(format!("pipeline group '{id}' not found")))?;
    let wanted = req.version.unwrap_or(version.saturating_sub(1));
    if wanted == version {
        return Err(ApiError::BadRequest(format!(
            "version {version} is already running"
        )));
    }
    let Some(record) = history.iter().find(|r| r.version == wanted) else {
        return Err(ApiError::NotFound(format!(
            "version {wanted} of group '{id}' is not in its history"
        )));
    };
    roll(&state, &id, record.spec.clone(), mode, Some(wanted)).await
}

/// `GET /api/v1/cluster/pipeline-groups/{id}/versions`: current version, history (oldest
/// first) and the rolling update in progress, if any.
pub async fn versions(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .read(|s| {
            let g = s.group(&id)?;
            let v = s.group_versions(&id);
            let history: Vec<serde_json::Value> = match v {
                Some(v) => v.history.iter().map(|r| serde_json::json!(r)).collect(),
                None => vec![serde_json::json!({
                    "version": g.version, "spec": g.spec, "changed": [], "state": null,
                    "restores": null, "at_ms": g.created_at_ms
                })],
            };
            Some(Json(serde_json::json!({
                "group_id": g.id,
                "version": g.version,
                "history": history,
                "rollout": v.and_then(|v| v.rollout.as_ref()),
                "last_error": v.and_then(|v| v.last_error.as_ref()),
            })))
        })
        .ok_or_else(|| ApiError::NotFound(format!("pipeline group '{id}' not found")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evt_lines_give_their_event_type() {
        assert_eq!(evt_event_type("EventA { x: 1 }"), Some("EventA"));
        assert_eq!(evt_event_type("@200ms Temp{v: 2};"), Some("Temp"));
        assert_eq!(evt_event_type("BATCH 100"), None);
        assert_eq!(evt_event_type("# comment"), None);
        assert_eq!(evt_event_type("   "), None);
    }

    fn apply(s: &mut ClusterState, cmd: Command) {
        let name = cmd.name();
        assert!(s.apply(&cmd).into_result().is_ok(), "{name}");
    }

    fn register(id: &str) -> Command {
        Command::RegisterWorker(varpulis_cluster::RegisterWorker {
            worker_id: id.into(),
            address: format!("http://{id}:9000"),
            api_key: "k".into(),
            cpu_cores: 2,
            max_pipelines: 10,
            labels: Default::default(),
            now_ms: 1,
        })
    }

    /// A group `g` with pipeline `p` running on `w1`, and workers `w1`, `w2`.
    fn running_group() -> ClusterState {
        let mut s = ClusterState::default();
        apply(&mut s, register("w1"));
        apply(&mut s, register("w2"));
        let spec: PipelineGroupSpec = serde_json::from_value(serde_json::json!({
            "name": "g", "pipelines": [{"name": "p", "source": "stream P = X .emit(v: 1)"}]
        }))
        .unwrap();
        apply(
            &mut s,
            Command::CreateGroup {
                group_id: "g".into(),
                spec,
                placements: vec![varpulis_cluster::PlacementAssignment {
                    pipeline_name: "p".into(),
                    replica: 0,
                    worker_id: Some("w1".into()),
                }],
                next_rr_cursor: None,
                created_at_ms: 2,
            },
        );
        let epoch = s.group("g").unwrap().placements[0].epoch;
        let update = |status, pipeline_id: Option<&str>| Command::UpdatePlacement {
            group_id: "g".into(),
            pipeline_name: "p".into(),
            replica: 0,
            epoch,
            worker_id: Some("w1".into()),
            pipeline_id: pipeline_id.map(str::to_owned),
            status,
            error: None,
        };
        apply(&mut s, update(PlacementStatus::Deploying, None));
        assert!(in_transit(&s, "g", Some("p")), "deploying");
        apply(&mut s, update(PlacementStatus::Running, Some("p-1")));
        s
    }

    #[test]
    fn only_deploys_and_moves_with_a_target_are_waited_for() {
        let mut s = running_group();
        assert!(!in_transit(&s, "g", Some("p")));
        assert!(!in_transit(&s, "nope", None));
        // A move with no target yet (no worker can take it): not worth waiting for.
        apply(
            &mut s,
            Command::StartMigration {
                migration_id: "m".into(),
                group_id: "g".into(),
                pipeline_name: "p".into(),
                replica: 0,
                from_worker: "w1".into(),
                to_worker: None,
                reason: varpulis_cluster::MigrationReason::Drain,
                next_rr_cursor: None,
                now_ms: 3,
            },
        );
        assert!(!in_transit(&s, "g", Some("p")));
        assert!(resolve(&s, "g", "X").is_err());
        // Once it has a target, injects wait for it; other pipelines are not concerned.
        apply(
            &mut s,
            Command::ProgressMigration {
                migration_id: "m".into(),
                to_worker: "w2".into(),
                next_rr_cursor: None,
                now_ms: 4,
            },
        );
        assert!(in_transit(&s, "g", Some("p")));
        assert!(in_transit(&s, "g", None));
        assert!(!in_transit(&s, "g", Some("other")));
        apply(
            &mut s,
            Command::CompleteMigration {
                migration_id: "m".into(),
                pipeline_id: "p-2".into(),
                restored_from_checkpoint: false,
                now_ms: 5,
            },
        );
        assert!(!in_transit(&s, "g", None));
        assert_eq!(
            resolve(&s, "g", "X").map(|r| r.worker_id).ok(),
            Some("w2".into())
        );
    }

    #[test]
    fn json_batches_take_both_shapes() {
        let bare = parse_json_events(br#"[{"event_type":"A","fields":{"x":1}}]"#).unwrap();
        assert_eq!(bare.len(), 1);
        let wrapped =
            parse_json_events(br#"{"events":[{"event_type":"A"},{"event_type":"B"}]}"#).unwrap();
        assert_eq!(wrapped.len(), 2);
        assert!(parse_json_events(b"{").is_err());
    }
}
