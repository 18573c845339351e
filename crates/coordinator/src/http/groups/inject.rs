//! `POST /api/v1/cluster/pipeline-groups/{id}/inject` and `.../inject-batch`, on any node.
//!
//! Routing reads the local replicated state and the event goes straight to the worker through
//! the worker client. A follower that does not see the group or a running target yet catches up
//! with the leader first, and an inject waits (bounded) for a placement that is being deployed or
//! moved, so internal moves stay invisible to clients. A batch is regrouped per target pipeline
//! from the bytes the client sent and the workers' outputs are passed back as they wrote them
//! ([`super::batch_wire`], issue 22).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::join_all;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use varpulis_api::cluster::{GroupInjectRequest, GroupInjectResponse};
use varpulis_api::worker::InputEvent;
use varpulis_cluster::group::PlacementStatus;
use varpulis_cluster::ClusterState;

use super::batch_wire::{self, PartBody};
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
///
/// The events are regrouped per target pipeline without being re-encoded: only each event's
/// type is decoded ([`batch_wire`]) and each pipeline gets the bytes the client sent (the whole
/// array or text, untouched, when every event goes to one pipeline). The pipelines are called
/// at the same time; their answers' output events are passed on as the workers wrote them, in
/// the order the pipelines were first routed to.
pub async fn inject_batch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
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
    let mut routes = BatchRoutes::default();
    let parts = if is_text {
        split_evt(&state, &id, &body, &mut routes)?
    } else {
        split_json(&state, &id, &body, &mut routes)?
    };
    let routed: BTreeMap<String, usize> = routes
        .routes
        .iter()
        .zip(&routes.counts)
        .map(|(route, n)| (route.pipeline.clone(), *n))
        .collect();
    let calls = routes.routes.iter().zip(parts).map(|(route, batch)| {
        state
            .leader
            .workers
            .inject_batch_raw(&route.worker, &route.pipeline_id, batch)
    });
    let answers = join_all(calls).await;
    let mut accepted = 0;
    let mut outputs = Vec::with_capacity(answers.len());
    for (route, answer) in routes.routes.iter().zip(answers) {
        let answer = answer.map_err(|e| ApiError::BadGateway(e.to_string()))?;
        let (n, items) = batch_wire::read_answer(&answer).map_err(|e| {
            ApiError::BadGateway(format!(
                "worker '{}' answered unexpected JSON: {e}",
                route.worker.id
            ))
        })?;
        accepted += n;
        outputs.push(items);
    }
    state
        .metrics()
        .injected_events
        .fetch_add(accepted as u64, std::sync::atomic::Ordering::Relaxed);
    let chunks = batch_wire::group_answer(accepted, &routed, outputs)
        .map_err(|e| ApiError::Internal(format!("encoding the answer: {e}")))?;
    let body = Body::from_stream(futures::stream::iter(
        chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A JSON batch split per target pipeline (in `routes` order): each event's type is read, a
/// bad event is a 400 naming its index.
fn split_json(
    state: &AppState,
    group_id: &str,
    body: &Bytes,
    routes: &mut BatchRoutes,
) -> Result<Vec<EventBatch>, ApiError> {
    let batch = batch_wire::split_body(body).map_err(ApiError::BadRequest)?;
    let mut targets = Vec::with_capacity(batch.events.len());
    for (i, raw) in batch.events.iter().enumerate() {
        let ty = batch_wire::event_type(raw)
            .map_err(|e| ApiError::BadRequest(format!("event {i}: {e}")))?;
        targets.push(routes.target(state, group_id, &ty)?);
    }
    if routes.routes.len() == 1 {
        // Every event goes to one pipeline: forward the array as it was sent.
        return Ok(vec![EventBatch::Raw {
            events: body.slice_ref(batch.array.as_bytes()),
            count: targets.len(),
        }]);
    }
    let mut parts: Vec<PartBody> = routes.routes.iter().map(|_| PartBody::default()).collect();
    for (raw, target) in batch.events.iter().zip(targets) {
        if let Some(part) = parts.get_mut(target) {
            part.push(raw);
        }
    }
    Ok(parts
        .into_iter()
        .map(|part| EventBatch::Raw {
            count: part.count(),
            events: part.finish(),
        })
        .collect())
}

/// An `.evt` batch split per target pipeline (in `routes` order). Comments and `BATCH` lines
/// go to every target; the whole text, untouched, when every event goes to one pipeline.
fn split_evt(
    state: &AppState,
    group_id: &str,
    body: &Bytes,
    routes: &mut BatchRoutes,
) -> Result<Vec<EventBatch>, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
    let mut lines: Vec<(&str, Option<usize>)> = Vec::new();
    for line in text.lines() {
        let target = match evt_event_type(line) {
            None => None,
            Some(event_type) => Some(routes.target(state, group_id, event_type)?),
        };
        lines.push((line, target));
    }
    if routes.routes.len() == 1 {
        return Ok(vec![EventBatch::Evt(text.to_owned())]);
    }
    let mut parts: Vec<String> = routes.routes.iter().map(|_| String::new()).collect();
    for (i, part) in parts.iter_mut().enumerate() {
        for (line, target) in &lines {
            if target.is_none_or(|t| t == i) {
                part.push_str(line);
                part.push('\n');
            }
        }
    }
    Ok(parts.into_iter().map(EventBatch::Evt).collect())
}

/// The routes of one batch: the target of each event type (resolved once per type, not per
/// event) as an index into `routes`, the targets in first-seen order, and the events counted
/// per target.
#[derive(Default)]
struct BatchRoutes {
    by_type: HashMap<String, usize>,
    routes: Vec<Route>,
    counts: Vec<usize>,
}

impl BatchRoutes {
    /// The index of the pipeline an event of `event_type` goes to (resolved in the replicated
    /// state on first use); counts the event.
    fn target(
        &mut self,
        state: &AppState,
        group_id: &str,
        event_type: &str,
    ) -> Result<usize, ApiError> {
        let i = match self.by_type.get(event_type) {
            Some(&i) => i,
            None => {
                let route = state.read(|s| resolve(s, group_id, event_type))?;
                let at = self
                    .routes
                    .iter()
                    .position(|r| r.pipeline == route.pipeline);
                let i = match at {
                    Some(i) => i,
                    None => {
                        self.routes.push(route);
                        self.counts.push(0);
                        self.routes.len() - 1
                    }
                };
                self.by_type.insert(event_type.to_owned(), i);
                i
            }
        };
        if let Some(n) = self.counts.get_mut(i) {
            *n += 1;
        }
        Ok(i)
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
}
