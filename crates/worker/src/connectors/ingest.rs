//! The ingest loop of a [`Feed`]: takes what the source connections decoded from the bounded
//! channel, in batches of up to [`INGEST_BATCH`], runs them on the target pipeline's engine
//! thread and publishes the outputs through the pipeline that processed them (the feed's
//! target may change at a hand-over).

use crate::engine::Event;
use crate::pipeline::Feed;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Most events the ingest loop hands to the engine at once.
pub const INGEST_BATCH: usize = 256;

/// Runs until the feed's ingest is cancelled, its channel closes (every connection ended), or
/// its pipeline is gone; then marks the feed done.
pub async fn ingest_loop(feed: Arc<Feed>, rx: mpsc::Receiver<Event>) {
    run(&feed, rx).await;
    feed.done.cancel();
}

async fn run(feed: &Feed, mut rx: mpsc::Receiver<Event>) {
    let mut batch = Vec::with_capacity(INGEST_BATCH);
    loop {
        let first = tokio::select! {
            () = feed.ingest.cancelled() => break,
            ev = rx.recv() => match ev { Some(ev) => ev, None => break },
        };
        batch.push(first);
        while batch.len() < INGEST_BATCH {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        let Some(p) = feed.target() else { break };
        let events: Arc<[Event]> = std::mem::take(&mut batch).into();
        let mut start = 0;
        while start < events.len() {
            let chunk = match p.process_chunk(events.clone(), start).await {
                Ok(chunk) => chunk,
                Err(e) => {
                    // The pipeline stopped under us (deleted after a hand-over): skip.
                    tracing::debug!(pipeline = %p.id, error = %e, "ingest batch not processed");
                    break;
                }
            };
            start += chunk.consumed.max(1);
            for e in &chunk.errors {
                tracing::debug!(pipeline = %chunk.ran.id, error = %e.error, "event rejected by the engine");
            }
            tokio::select! {
                () = feed.ingest.cancelled() => return,
                // Its pipeline is gone (deleted after a hand-over): skip, the feed goes on.
                () = chunk.ran.cancel.cancelled() => {},
                () = chunk.ran.publish(&chunk.outputs) => {},
            }
        }
        batch = Vec::with_capacity(INGEST_BATCH);
    }
}
