//! `/api/v1/pipelines/...`: deploy, list, get, delete, inject, checkpoint, restore, metrics.

use super::{JsonBody, Shared};
use crate::connectors;
use crate::engine::{self, now_ns, Event, Output, PipelineEngine};
use crate::error::WorkerError;
use crate::pipeline::Pipeline;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use varpulis_api::worker::{
    BatchError, BatchInjectRequest, Checkpoint, DeployPipelineRequest, DeployPipelineResponse,
    InputEvent, PipelineInfo, PipelineList, PipelineMetrics, RestoreResponse,
};

/// Batches at least this large are processed on the blocking pool.
const BLOCKING_BATCH: usize = 4096;

/// Format version of `Checkpoint::state` (base64 of the runtime's bytes).
const CHECKPOINT_VERSION: u32 = 1;

fn find(state: &Shared, id: &str) -> Result<Arc<Pipeline>, WorkerError> {
    state
        .registry
        .get(id)
        .ok_or_else(|| WorkerError::PipelineNotFound(id.to_owned()))
}

fn deployed(p: &Pipeline) -> DeployPipelineResponse {
    DeployPipelineResponse {
        id: p.id.clone(),
        name: p.name.clone(),
        status: p.status().0.to_owned(),
    }
}

/// `POST /api/v1/pipelines`.
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
    let engine = PipelineEngine::compile(&req.source, req.connectors.keys().cloned().collect())?;
    let plan = connectors::plan(&engine, &req.connectors)?.with_routes(crate::dataplane::plan(
        state.config.mqtt_url.as_deref(),
        req.routes.as_ref(),
    )?);
    let id = req
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let pipeline = Arc::new(Pipeline::new(
        id,
        req.name.clone(),
        req.source.clone(),
        req.epoch,
        engine,
    ));
    if let Some(cp) = &req.checkpoint {
        restore_into(&pipeline, cp)?;
    }
    match state
        .registry
        .insert(pipeline.clone(), state.config.max_pipelines as usize)
    {
        Ok(true) => {}
        Ok(false) => return Err(WorkerError::AtCapacity(state.config.max_pipelines)),
        Err(existing) => return same_source(&existing, &req.source),
    }
    connectors::start(&state, &pipeline, plan, req.paused);
    crate::timers::start(&state, &pipeline);
    pipeline
        .routes
        .wait_subscribed(state.config.route_subscribe_wait)
        .await;
    tracing::info!(id = %pipeline.id, name = %pipeline.name, "pipeline deployed");
    Ok((StatusCode::CREATED, Json(deployed(&pipeline))))
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

fn to_event(ev: &InputEvent, arrival_ns: i64) -> Result<Event, WorkerError> {
    if ev.event_type.is_empty() {
        return Err(WorkerError::BadRequest(
            "`event_type` must not be empty".into(),
        ));
    }
    let ts = match &ev.timestamp {
        None | Some(Value::Null) => arrival_ns,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            WorkerError::BadRequest("`timestamp` must be an integer (ns since epoch)".into())
        })?,
        Some(Value::String(s)) => parse_rfc3339_ns(s)
            .ok_or_else(|| WorkerError::BadRequest(format!("`timestamp` `{s}` is not RFC 3339")))?,
        Some(_) => {
            return Err(WorkerError::BadRequest(
                "`timestamp` must be a string or an integer".into(),
            ))
        }
    };
    Ok(Event::from_json(&ev.event_type, &ev.fields, ts))
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` into ns since the epoch.
pub fn parse_rfc3339_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(start..i.min(start + 9))?;
        if digits.is_empty() {
            return None;
        }
        frac_ns = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
    }
    let offset_s = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (tz.get(1..3)?.parse::<i64>().ok()? * 3600
                + tz.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// `InjectResponse` with outputs kept as the runtime's JSON (no re-encoding).
#[derive(Debug, Serialize)]
pub struct InjectBody {
    accepted: bool,
    output_events: Vec<Value>,
    /// Runtime errors of streams that failed on this event (the others' outputs are kept).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
}

/// `BatchInjectResponse` with outputs kept as the runtime's JSON.
#[derive(Debug, Serialize)]
pub struct BatchBody {
    accepted: usize,
    output_events: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<BatchError>,
}

fn into_json(outputs: &[Output]) -> Vec<Value> {
    outputs
        .iter()
        .filter(|o| o.is_output)
        .map(Output::to_json)
        .collect()
}

/// `POST /api/v1/pipelines/{id}/events`: one event; 400 if the engine rejects it.
pub async fn inject(
    State(state): State<Shared>,
    Path(id): Path<String>,
    JsonBody(ev): JsonBody<InputEvent>,
) -> Result<Json<InjectBody>, WorkerError> {
    let started = Instant::now();
    let p = find(&state, &id)?;
    let event = to_event(&ev, now_ns())?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    // After a hand-over the new version ran the event: its sinks publish the outputs.
    let ran = p.process_in(std::slice::from_ref(&event), &mut out, &mut errors);
    ran.publish(&out).await;
    state.metrics.inject_latency.observe(started.elapsed());
    let errors = errors.into_iter().map(|e| e.error).collect();
    Ok(Json(InjectBody {
        accepted: true,
        output_events: into_json(&out),
        errors,
    }))
}

/// `POST /api/v1/pipelines/{id}/events-batch`: `{events: [...]}`, a bare JSON array, or `.evt`
/// text (`Content-Type: text/plain`). A parse error rejects the whole batch; runtime errors
/// are reported per event.
pub async fn inject_batch(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<BatchBody>, WorkerError> {
    let started = Instant::now();
    let p = find(&state, &id)?;
    let body = body?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let events = match mime.as_str() {
        "application/json" => parse_json_batch(&body)?,
        "text/plain" | "text/x-evt" => {
            let text = std::str::from_utf8(&body)
                .map_err(|e| WorkerError::BadRequest(format!("body is not UTF-8: {e}")))?;
            engine::parse_evt(text).map_err(WorkerError::BadRequest)?
        }
        _ => {
            return Err(WorkerError::UnsupportedMediaType(format!(
                "expected `application/json` or `text/plain` (.evt), got `{ctype}`"
            )))
        }
    };
    let accepted = events.len();
    let (out, errors, ran) = if accepted >= BLOCKING_BATCH {
        // Large batches run on the blocking pool so they do not stall the async workers.
        let p = p.clone();
        tokio::task::spawn_blocking(move || {
            let (mut out, mut errors) = (Vec::new(), Vec::new());
            let ran = p.process_in(&events, &mut out, &mut errors);
            (out, errors, ran)
        })
        .await
        .map_err(|e| WorkerError::Internal(format!("batch processing failed: {e}")))?
    } else {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let ran = p.process_in(&events, &mut out, &mut errors);
        (out, errors, ran)
    };
    ran.publish(&out).await;
    state.metrics.inject_latency.observe(started.elapsed());
    Ok(Json(BatchBody {
        accepted,
        output_events: into_json(&out),
        errors,
    }))
}

fn parse_json_batch(body: &[u8]) -> Result<Vec<Event>, WorkerError> {
    let first = body.iter().find(|c| !c.is_ascii_whitespace()).copied();
    let input: Vec<InputEvent> = match first {
        Some(b'[') => serde_json::from_slice(body)
            .map_err(|e| WorkerError::BadRequest(format!("invalid JSON: {e}")))?,
        Some(b'{') => {
            serde_json::from_slice::<BatchInjectRequest>(body)
                .map_err(|e| WorkerError::BadRequest(format!("invalid JSON: {e}")))?
                .events
        }
        _ => {
            return Err(WorkerError::BadRequest(
                "expected `{\"events\": [...]}` or a JSON array".into(),
            ))
        }
    };
    let arrival = now_ns();
    input
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            to_event(ev, arrival).map_err(|e| WorkerError::BadRequest(format!("event {i}: {e}")))
        })
        .collect()
}

/// `POST /api/v1/pipelines/{id}/checkpoint`.
pub async fn checkpoint(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Checkpoint>, WorkerError> {
    let p = find(&state, &id)?;
    let (bytes, events_processed) = p.checkpoint().map_err(WorkerError::Internal)?;
    Ok(Json(Checkpoint {
        pipeline_id: p.id.clone(),
        events_processed,
        version: CHECKPOINT_VERSION,
        state: base64::engine::general_purpose::STANDARD.encode(bytes),
    }))
}

fn restore_into(p: &Pipeline, cp: &Checkpoint) -> Result<(), WorkerError> {
    if cp.version != CHECKPOINT_VERSION {
        return Err(WorkerError::BadCheckpoint(format!(
            "version {} is not supported (expected {CHECKPOINT_VERSION})",
            cp.version
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cp.state.as_bytes())
        .map_err(|e| WorkerError::BadCheckpoint(format!("state is not base64: {e}")))?;
    p.restore(&bytes, cp.events_processed)
        .map_err(WorkerError::BadCheckpoint)
}

/// `POST /api/v1/pipelines/{id}/restore`.
pub async fn restore(
    State(state): State<Shared>,
    Path(id): Path<String>,
    JsonBody(cp): JsonBody<Checkpoint>,
) -> Result<Json<RestoreResponse>, WorkerError> {
    let p = find(&state, &id)?;
    restore_into(&p, &cp)?;
    tracing::info!(id = %p.id, from = %cp.pipeline_id, "pipeline restored");
    Ok(Json(RestoreResponse {
        restored: true,
        events_processed: p.events_in(),
    }))
}

/// `GET /api/v1/pipelines/{id}/metrics`.
pub async fn metrics(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<PipelineMetrics>, WorkerError> {
    Ok(Json(find(&state, &id)?.metrics()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse_rfc3339_ns;

    #[test]
    fn rfc3339_parses_utc_offsets_and_fractions() {
        assert_eq!(
            parse_rfc3339_ns("1970-01-01T00:00:06Z"),
            Some(6_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("1970-01-01T01:00:00.5+01:00"),
            Some(500_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000_000_000)
        );
        assert_eq!(parse_rfc3339_ns("yesterday"), None);
    }
}
