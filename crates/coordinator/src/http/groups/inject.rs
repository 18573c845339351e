//! `POST /api/v1/cluster/pipeline-groups/{id}/inject` and `.../inject-batch`, on any node.
//!
//! Routing reads the local replicated state and the event goes straight to the worker through
//! the worker client. A follower that does not see the group or a running target yet catches up
//! with the leader first, and an inject waits (bounded) for a placement that is being deployed or
//! moved, so internal moves stay invisible to clients.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use varpulis_api::cluster::{GroupInjectBatchResponse, GroupInjectRequest, GroupInjectResponse};
use varpulis_api::worker::{BatchInjectRequest, InputEvent};
use varpulis_cluster::group::PlacementStatus;
use varpulis_cluster::ClusterState;

use crate::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::proxy::catch_up_with_leader;
use crate::metrics::Metrics;
use crate::node::AppState;
use crate::transport::worker_client::{EventBatch, WorkerRef};

/// Where an event of `event_type` goes: the pipeline, its worker and its id there.
struct Route {
    pipeline: String,
    worker: WorkerRef,
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
            Some(Route {
                pipeline: pipeline.clone(),
                worker: WorkerRef::find(s, p.worker_id.as_deref()?)?,
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
    catch_up_with_leader(state).await;
    let Some(pipeline) = state.read(|s| target_pipeline(s, group_id, event_type)) else {
        return state.read(|s| resolve(s, group_id, event_type));
    };
    await_settled(state, group_id, Some(&pipeline)).await;
    state.read(|s| resolve(s, group_id, event_type))
}

/// `POST /api/v1/cluster/pipeline-groups/{id}/inject` (any node).
pub async fn inject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(event): ApiJson<GroupInjectRequest>,
) -> Result<Json<GroupInjectResponse>, ApiError> {
    let route = resolve_fresh(&state, &id, &event.event_type).await?;
    let event = InputEvent {
        event_type: event.event_type,
        fields: event.fields,
        timestamp: None,
    };
    let worker_response = state
        .leader
        .workers
        .inject(&route.worker, &route.pipeline_id, event)
        .await
        .map_err(|e| ApiError::BadGateway(e.to_string()))?;
    Metrics::inc(&state.metrics().injected_events);
    Ok(Json(GroupInjectResponse {
        routed_to: route.pipeline,
        worker_id: route.worker.id,
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
        catch_up_with_leader(&state).await;
        await_settled(&state, &id, None).await;
    }
    // Per target pipeline: the body to send, in first-seen order of pipelines.
    let mut batch_routes = BatchRoutes::default();
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
                    let target = batch_routes.target(&state, &id, event_type)?;
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
            let target = batch_routes.target(&state, &id, &event.event_type)?;
            *counts.entry(target.clone()).or_default() += 1;
            json_parts.entry(target).or_default().push(event);
        }
    }
    let mut output_events = Vec::new();
    let mut accepted = 0;
    let BatchRoutes { routes, order, .. } = batch_routes;
    for pipeline in &order {
        let Some(route) = routes.get(pipeline) else {
            continue;
        };
        let batch = if is_text {
            EventBatch::Evt(text_parts.remove(pipeline).unwrap_or_default())
        } else {
            EventBatch::Json(json_parts.remove(pipeline).unwrap_or_default())
        };
        let answer = state
            .leader
            .workers
            .inject_batch(&route.worker, &route.pipeline_id, batch)
            .await
            .map_err(|e| ApiError::BadGateway(e.to_string()))?;
        accepted += answer.accepted;
        output_events.extend(answer.output_events);
    }
    state
        .metrics()
        .injected_events
        .fetch_add(accepted as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(Json(GroupInjectBatchResponse {
        accepted,
        routed: counts,
        output_events,
    }))
}

/// The routes of one batch: target pipeline per event type (resolved once per type, not per
/// event), the targets' routes, and the targets in first-seen order.
#[derive(Default)]
struct BatchRoutes {
    by_type: HashMap<String, String>,
    routes: BTreeMap<String, Route>,
    order: Vec<String>,
}

impl BatchRoutes {
    /// The pipeline `event_type` goes to (resolved in the replicated state on first use).
    fn target(
        &mut self,
        state: &AppState,
        group_id: &str,
        event_type: &str,
    ) -> Result<String, ApiError> {
        if let Some(p) = self.by_type.get(event_type) {
            return Ok(p.clone());
        }
        let name = route_for(
            state,
            group_id,
            event_type,
            &mut self.routes,
            &mut self.order,
        )?;
        self.by_type.insert(event_type.to_owned(), name.clone());
        Ok(name)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use varpulis_api::cluster::PipelineGroupSpec;
    use varpulis_cluster::Command;

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
            takeover: None,
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
            resolve(&s, "g", "X").map(|r| r.worker.id).ok(),
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
