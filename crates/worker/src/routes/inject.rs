//! `POST /api/v1/pipelines/{id}/events` and `.../events-batch`: events in, outputs out.
//!
//! Events run on the pipeline's engine thread, never on the async reactor. Budgets
//! (docs/worker.md, "Budgets"):
//! - an event that exceeds a budget (steps, memory, `max_outputs_per_event`) is rejected: its
//!   outputs are discarded; a single inject answers 422 `budget_exceeded`, a batch lists it in
//!   `errors` with that code;
//! - a `failed` pipeline refuses events: 422 `pipeline_failed` (a batch that was partly run
//!   lists the refused events with that code);
//! - an answer carries at most `max_outputs_per_response` output events; the others are
//!   published as usual and counted in `outputs_omitted`.
//!
//! Fencing by epoch: events for a coordinator pipeline id (`{placement}-e{epoch}`) that is not
//! here while a newer epoch of the same placement is are refused `409 stale_epoch` (the sender
//! routed them with an outdated placement), not `404`.

use super::{find, Shared};
use crate::engine::{self, Event, Output};
use crate::error::WorkerError;
use crate::event_codec::{decode_batch, WireEvent};
use crate::event_time::{now_ns, parse_rfc3339_ns};
use crate::pipeline::{EventError, FaultKind, Outcome, Pipeline};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use varpulis_api::worker::InputEvent;
use varpulis_runtime::json_out;

/// One failed event of a batch: `{index, error}` plus `code` when it was rejected.
#[derive(Debug, Serialize)]
struct BatchErrorBody {
    index: usize,
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
}

fn code_of(kind: FaultKind) -> Option<&'static str> {
    match kind {
        FaultKind::Runtime => None,
        FaultKind::Budget => Some("budget_exceeded"),
        FaultKind::Refused => Some("pipeline_failed"),
    }
}

fn to_event(ev: &InputEvent, arrival_ns: i64) -> Result<Event, WorkerError> {
    if ev.event_type.is_empty() {
        return Err(WorkerError::BadRequest(
            "`event_type` must not be empty".into(),
        ));
    }
    let ts = event_time(ev.timestamp.as_ref(), arrival_ns)?;
    Ok(Event::from_json(&ev.event_type, &ev.fields, ts))
}

/// A decoded batch event as a runtime event (same checks as [`to_event`]).
fn wire_to_event(ev: WireEvent, arrival_ns: i64) -> Result<Event, WorkerError> {
    if ev.event_type.is_empty() {
        return Err(WorkerError::BadRequest(
            "`event_type` must not be empty".into(),
        ));
    }
    let ts = event_time(ev.timestamp.as_ref(), arrival_ns)?;
    Ok(Event {
        event_type: ev.event_type,
        timestamp_ns: ts,
        fields: Arc::new(ev.fields),
    })
}

/// The event time of an input event: `timestamp` (ns or RFC 3339), else its arrival.
fn event_time(timestamp: Option<&Value>, arrival_ns: i64) -> Result<i64, WorkerError> {
    Ok(match timestamp {
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
    })
}

/// The pipeline events for `id` go to; `409 stale_epoch` when `id` names an older epoch of a
/// placement than a copy running here, else `404` for an unknown id.
fn find_current(state: &AppState, id: &str) -> Result<Arc<Pipeline>, WorkerError> {
    let missing = match find(state, id) {
        Ok(p) => return Ok(p),
        Err(e) => e,
    };
    let Some((key, epoch)) = id
        .rsplit_once("-e")
        .and_then(|(key, e)| Some((key, e.parse::<u64>().ok()?)))
    else {
        return Err(missing);
    };
    let newer = state
        .registry
        .all()
        .into_iter()
        .find(|p| p.placement() == Some(key) && p.epoch.is_some_and(|e| e > epoch));
    match newer {
        Some(p) => Err(WorkerError::StaleEpoch(format!(
            "events for `{id}` (epoch {epoch}) refused: `{}` runs epoch {} of the same placement here",
            p.id,
            p.epoch.unwrap_or_default()
        ))),
        None => Err(missing),
    }
}

/// `POST /api/v1/pipelines/{id}/events`: one event; 422 when it exceeded a budget or the
/// pipeline is failed. The answer (`InjectResponse`: `accepted`, `output_events`, `errors` when
/// some, `outputs_omitted` when not 0) is written straight from the output events.
pub async fn inject(
    State(state): State<Shared>,
    Path(id): Path<String>,
    super::JsonBody(ev): super::JsonBody<InputEvent>,
) -> Result<Response, WorkerError> {
    let started = Instant::now();
    let p = find_current(&state, &id)?;
    let event = to_event(&ev, now_ns())?;
    let keep = state.config.limits.max_outputs_per_response;
    let Outcome {
        outputs,
        omitted,
        errors,
    } = p.process(vec![event], keep).await?;
    state.metrics.inject_latency.observe(started.elapsed());
    if let Some(e) = errors.iter().find(|e| e.kind != FaultKind::Runtime) {
        return Err(rejection(e));
    }
    let errors: Vec<String> = errors.into_iter().map(|e| e.error).collect();
    let body = answer(AnswerHead::Single, &outputs, &errors, omitted)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn rejection(e: &EventError) -> WorkerError {
    match e.kind {
        FaultKind::Refused => WorkerError::PipelineFailed(e.error.clone()),
        _ => WorkerError::BudgetExceeded(e.error.clone()),
    }
}

/// `POST /api/v1/pipelines/{id}/events-batch`: `{events: [...]}`, a bare JSON array, or `.evt`
/// text (`Content-Type: text/plain`). A parse error rejects the whole batch; runtime errors
/// and rejections are reported per event.
pub async fn inject_batch(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, WorkerError> {
    let started = Instant::now();
    let p = find_current(&state, &id)?;
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
    let total = events.len();
    let keep = state.config.limits.max_outputs_per_response;
    // A task of its own: once started, a batch runs to its end even if the caller gives up
    // (a batch is never left half processed by a timeout).
    let outcome = state
        .tasks
        .spawn(async move { p.process(events, keep).await })
        .await
        .map_err(|e| WorkerError::Internal(format!("batch processing failed: {e}")))??;
    state.metrics.inject_latency.observe(started.elapsed());
    let rejected = outcome
        .errors
        .iter()
        .filter(|e| e.kind != FaultKind::Runtime)
        .count();
    let refused = outcome
        .errors
        .iter()
        .filter(|e| e.kind == FaultKind::Refused)
        .count();
    if total > 0 && refused == total {
        if let Some(e) = outcome.errors.first() {
            return Err(rejection(e));
        }
    }
    let errors: Vec<BatchErrorBody> = outcome
        .errors
        .into_iter()
        .map(|e| BatchErrorBody {
            index: e.index,
            code: code_of(e.kind),
            error: e.error,
        })
        .collect();
    let body = answer(
        AnswerHead::Batch(total - rejected),
        &outcome.outputs,
        &errors,
        outcome.omitted,
    )?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// How an inject answer starts: `"accepted": true` (one event) or the count (a batch).
#[derive(Debug, Clone, Copy)]
enum AnswerHead {
    Single,
    Batch(usize),
}

/// An inject answer, written straight from the runtime's output events (`json_out`: the bytes
/// `Output::to_json` would serialize to, no `Value` tree per output) into one buffer:
/// `{"accepted", "output_events", "errors" when some, "outputs_omitted" when not 0}`, the
/// bytes serde wrote for `InjectResponse` / `BatchInjectResponse`.
fn answer<E: Serialize>(
    head: AnswerHead,
    outputs: &[Output],
    errors: &[E],
    omitted: u64,
) -> Result<Vec<u8>, WorkerError> {
    let internal = |e: std::io::Error| WorkerError::Internal(format!("encoding the answer: {e}"));
    let mut w: Vec<u8> = Vec::with_capacity(64 + outputs.len() * 96);
    match head {
        AnswerHead::Single => w.extend_from_slice(b"{\"accepted\":true,\"output_events\":["),
        AnswerHead::Batch(n) => {
            w.extend_from_slice(format!("{{\"accepted\":{n},\"output_events\":[").as_bytes())
        }
    }
    for (i, o) in outputs.iter().enumerate() {
        if i > 0 {
            w.push(b',');
        }
        json_out::write_event(&mut w, &o.event).map_err(internal)?;
    }
    w.push(b']');
    if !errors.is_empty() {
        w.extend_from_slice(b",\"errors\":");
        serde_json::to_writer(&mut w, errors)
            .map_err(|e| WorkerError::Internal(format!("encoding the answer: {e}")))?;
    }
    if omitted != 0 {
        w.extend_from_slice(format!(",\"outputs_omitted\":{omitted}").as_bytes());
    }
    w.push(b'}');
    Ok(w)
}

/// `{"events": [...]}` or a bare array, decoded straight into events (`event_codec`).
fn parse_json_batch(body: &[u8]) -> Result<Vec<Event>, WorkerError> {
    let first = body.iter().find(|c| !c.is_ascii_whitespace()).copied();
    if !matches!(first, Some(b'[' | b'{')) {
        return Err(WorkerError::BadRequest(
            "expected `{\"events\": [...]}` or a JSON array".into(),
        ));
    }
    let input =
        decode_batch(body).map_err(|e| WorkerError::BadRequest(format!("invalid JSON: {e}")))?;
    let arrival = now_ns();
    input
        .into_iter()
        .enumerate()
        .map(|(i, ev)| {
            wire_to_event(ev, arrival)
                .map_err(|e| WorkerError::BadRequest(format!("event {i}: {e}")))
        })
        .collect()
}
