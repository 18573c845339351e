//! `GET /api/v1/cluster/events`: the cluster event stream as Server-Sent Events.
//!
//! Served by every node from its own event log ([`crate::events`]). `?since=ID` (or the
//! `Last-Event-ID` header, which wins) resumes after that id; without either the stream starts
//! with what happens next. Each event is `id: <id>`, `event: <type>`, `data: <JSON>` where the
//! JSON is `{"id", "type", "data"}`. A resume from before what the node still holds starts with
//! `event: reset`. A subscriber too slow for the live feed is resumed from the ring, and gets a
//! `reset` only if the ring moved past it too.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::events::{EventId, EventLog, LoggedEvent};
use crate::node::AppState;

/// Query of the event stream.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Resume after this event id (`42` or `42.1`).
    pub since: Option<String>,
}

fn sse_event(e: &LoggedEvent) -> Event {
    let data = serde_json::to_string(&e.record()).unwrap_or_else(|_| "{}".to_string());
    Event::default()
        .id(e.id.to_string())
        .event(e.event.kind())
        .data(data)
}

fn reset_event(detail: &serde_json::Value) -> Event {
    Event::default().event("reset").data(detail.to_string())
}

struct Feed {
    state: AppState,
    pending: VecDeque<Event>,
    live: broadcast::Receiver<Arc<LoggedEvent>>,
    last: Option<EventId>,
}

impl Feed {
    fn resubscribe(&mut self, log: &EventLog) {
        let sub = log.subscribe(Some(self.last.unwrap_or_default()));
        if let Some(detail) = &sub.reset {
            self.pending.push_back(reset_event(detail));
        }
        for e in &sub.backlog {
            self.pending.push_back(sse_event(e));
            self.last = Some(e.id);
        }
        self.live = sub.live;
    }
}

/// `GET /api/v1/cluster/events` (SSE).
pub async fn stream_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let from_header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let since = match from_header.or(query.since.as_deref()) {
        Some(text) => Some(EventId::parse(text).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "since must be an event id like 42 or 42.1, not '{text}'"
            ))
        })?),
        None => None,
    };
    let sub = state.events.subscribe(since);
    let mut pending = VecDeque::new();
    if let Some(detail) = &sub.reset {
        pending.push_back(reset_event(detail));
    }
    let mut last = since;
    for e in &sub.backlog {
        pending.push_back(sse_event(e));
        last = Some(e.id);
    }
    let feed = Feed {
        state: state.clone(),
        pending,
        live: sub.live,
        last,
    };
    let events = stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(event) = feed.pending.pop_front() {
                return Some((Ok(event), feed));
            }
            tokio::select! {
                _ = feed.state.shutdown.cancelled() => return None,
                received = feed.live.recv() => match received {
                    Ok(e) => {
                        if feed.last.is_some_and(|l| e.id <= l) {
                            continue;
                        }
                        feed.last = Some(e.id);
                        return Some((Ok(sse_event(&e)), feed));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let state = feed.state.clone();
                        feed.resubscribe(&state.events);
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    })
    .boxed();
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
