//! `GET /api/v1/pipelines/{id}/output`: the pipeline's output events, live, as Server-Sent
//! Events.
//!
//! Each output is `event: output` with the event's JSON (`{"event_type", "fields", ...}` as in
//! inject answers) as data. Subscribers read from a bounded broadcast the pipeline writes to
//! without waiting: a subscriber that falls behind gets `event: lagged` with
//! `{"skipped": N}` and continues with the newest events; the pipeline is never slowed down.
//! When the pipeline is deleted the stream sends `event: end` and closes.

use super::Shared;
use crate::error::WorkerError;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

struct Feed {
    rx: broadcast::Receiver<Arc<serde_json::Value>>,
    stopped: CancellationToken,
    done: bool,
}

/// `GET /api/v1/pipelines/{id}/output` (SSE).
pub async fn stream_output(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, WorkerError> {
    let pipeline = state
        .registry
        .get(&id)
        .ok_or_else(|| WorkerError::PipelineNotFound(id.clone()))?;
    let feed = Feed {
        rx: pipeline.subscribe_outputs(),
        stopped: pipeline.cancel.clone(),
        done: false,
    };
    // The stream holds no reference to the pipeline: deleting it ends the stream.
    drop(pipeline);
    let events = stream::unfold(feed, |mut feed| async move {
        if feed.done {
            return None;
        }
        let event = tokio::select! {
            received = feed.rx.recv() => match received {
                Ok(value) => Event::default().event("output").data(value.to_string()),
                Err(broadcast::error::RecvError::Lagged(skipped)) => Event::default()
                    .event("lagged")
                    .data(serde_json::json!({ "skipped": skipped }).to_string()),
                Err(broadcast::error::RecvError::Closed) => {
                    feed.done = true;
                    Event::default().event("end").data("{}")
                }
            },
            _ = feed.stopped.cancelled() => {
                feed.done = true;
                Event::default().event("end").data("{}")
            }
        };
        Some((Ok(event), feed))
    })
    .boxed();
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
