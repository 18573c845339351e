//! `GET /api/v1/cluster/pipeline-groups/{id}/output`: the output events of every pipeline of a
//! group, merged into one Server-Sent Events stream.
//!
//! Served by any node: for each placement of the group (from the local replicated state) the
//! node follows the worker's `GET /api/v1/pipelines/{id}/output` stream and relays its events
//! as `event: output` with `{"pipeline", "replica", "worker_id", "event"}` (and the workers'
//! `lagged` notices the same way). When a worker stream ends — the pipeline moved, was
//! replaced by a rolling update, or its worker failed — the placement is looked up again and
//! followed wherever it runs now. Outputs produced while a placement is being re-followed are
//! not replayed: this is a live view, not a durable log.

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use varpulis_cluster::group::PlacementStatus;

use crate::error::ApiError;
use crate::node::AppState;
use crate::transport::worker_client::WorkerRef;

/// Events buffered between the worker streams and a slow client; beyond it the relays wait
/// (they only read from workers, so no pipeline is slowed down: the workers drop instead).
const MERGE_BUFFER: usize = 1024;
/// Pause before following a placement again after its stream ended or failed.
const REFOLLOW_DELAY: Duration = Duration::from_millis(300);
/// Where one placement's output stream is right now.
struct Source {
    worker: WorkerRef,
    pipeline_id: String,
}

fn locate(state: &AppState, group_id: &str, pipeline: &str, replica: u32) -> Option<Source> {
    state.read(|s| {
        let p = s.group(group_id)?.placement(pipeline, replica)?;
        if p.status != PlacementStatus::Running {
            return None;
        }
        Some(Source {
            worker: WorkerRef::find(s, p.worker_id.as_deref()?)?,
            pipeline_id: p.pipeline_id.clone()?,
        })
    })
}

/// Follows one placement until the client goes away or the group is deleted.
async fn relay(
    state: AppState,
    group_id: String,
    pipeline: String,
    replica: u32,
    tx: mpsc::Sender<Event>,
) {
    while !tx.is_closed() && !state.shutdown.is_cancelled() {
        if state.read(|s| s.group(&group_id).is_none()) {
            return;
        }
        if let Some(source) = locate(&state, &group_id, &pipeline, replica) {
            follow(&state, &source, &pipeline, replica, &tx).await;
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(REFOLLOW_DELAY) => {}
        }
    }
}

/// Reads one worker SSE stream and relays its events; returns when it ends or fails.
async fn follow(
    state: &AppState,
    source: &Source,
    pipeline: &str,
    replica: u32,
    tx: &mpsc::Sender<Event>,
) {
    let request = state
        .leader
        .workers
        .output(&source.worker, &source.pipeline_id);
    let response = tokio::select! {
        _ = tx.closed() => return,
        r = request => r,
    };
    let Ok(mut body) = response else { return };
    let mut buffer = String::new();
    loop {
        let chunk = tokio::select! {
            _ = tx.closed() => return,
            c = body.next() => c,
        };
        let Some(Ok(chunk)) = chunk else { return };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some((kind, data)) = parse_block(&block) else {
                continue;
            };
            if kind == "end" {
                return;
            }
            let payload = json!({
                "pipeline": pipeline,
                "replica": replica,
                "worker_id": source.worker.id,
                "event": serde_json::from_str::<Value>(&data).unwrap_or(Value::String(data)),
            });
            let event = Event::default().event(kind).data(payload.to_string());
            if tx.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// The `event:` name (default `message`) and joined `data:` lines of one SSE block; `None` for
/// comments and keep-alives.
pub fn parse_block(block: &str) -> Option<(String, String)> {
    let mut kind = None;
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            kind = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() {
        return None;
    }
    Some((kind.unwrap_or_else(|| "message".into()), data.join("\n")))
}

/// `GET /api/v1/cluster/pipeline-groups/{id}/output` (SSE, any node).
pub async fn stream_group_output(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut placements: Option<Vec<(String, u32)>> = state.read(|s| {
        s.group(&id).map(|g| {
            g.placements
                .iter()
                .map(|p| (p.pipeline_name.clone(), p.replica))
                .collect()
        })
    });
    if placements.is_none() && crate::http::proxy::catch_up_with_leader(&state).await {
        placements = state.read(|s| {
            s.group(&id).map(|g| {
                g.placements
                    .iter()
                    .map(|p| (p.pipeline_name.clone(), p.replica))
                    .collect()
            })
        });
    }
    let placements =
        placements.ok_or_else(|| ApiError::NotFound(format!("pipeline group '{id}' not found")))?;
    let (tx, rx) = mpsc::channel(MERGE_BUFFER);
    for (pipeline, replica) in placements {
        tokio::spawn(relay(
            state.clone(),
            id.clone(),
            pipeline,
            replica,
            tx.clone(),
        ));
    }
    drop(tx);
    let shutdown = state.shutdown.clone();
    let events = stream::unfold((rx, shutdown), |(mut rx, shutdown)| async move {
        tokio::select! {
            _ = shutdown.cancelled() => None,
            e = rx.recv() => e.map(|e| (Ok(e), (rx, shutdown))),
        }
    })
    .boxed();
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_parse_into_name_and_data() {
        assert_eq!(
            parse_block("event: output\ndata: {\"a\":1}\n\n"),
            Some(("output".into(), "{\"a\":1}".into()))
        );
        assert_eq!(
            parse_block("data: x\ndata: y\n\n"),
            Some(("message".into(), "x\ny".into()))
        );
        assert_eq!(parse_block(": keep-alive\n\n"), None);
    }
}
