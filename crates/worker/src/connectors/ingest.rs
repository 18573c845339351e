//! The ingest loop of a [`Feed`]: takes what the source connections decoded from the bounded
//! channel, in batches of up to [`INGEST_BATCH`], runs them on the target pipeline's engine
//! thread and publishes the outputs through the pipeline that processed them (the feed's
//! target may change at a hand-over). Then, and only if the outputs were really published, it
//! acknowledges the inputs that carry an [`Ack`](super::inbound::Ack): an input whose outputs
//! were discarded (fenced) or never produced (pipeline stopped) stays with the broker.

use super::inbound::{Ack, Inbound};
use crate::engine::Event;
use crate::pipeline::Feed;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Most events the ingest loop hands to the engine at once. Each batch is one round trip to
/// the engine thread and one publish: on a loaded machine every round trip waits for the
/// scheduler, so a backlog (a Kafka source reading a topic behind) moves in large batches; a
/// quiet source still hands over what it has at once.
pub const INGEST_BATCH: usize = 1024;

/// Runs until the feed's ingest is cancelled, its channel closes (every connection ended), or
/// its pipeline is gone; then marks the feed done.
pub async fn ingest_loop(feed: Arc<Feed>, rx: mpsc::Receiver<Inbound>) {
    run(&feed, rx).await;
    feed.done.cancel();
}

async fn run(feed: &Feed, mut rx: mpsc::Receiver<Inbound>) {
    let mut batch: Vec<Inbound> = Vec::with_capacity(INGEST_BATCH);
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
        let (events, mut acks): (Vec<Event>, Vec<Option<Ack>>) = std::mem::take(&mut batch)
            .into_iter()
            .map(|i| (i.event, i.ack))
            .unzip();
        let events: Arc<[Event]> = events.into();
        let mut start = 0;
        while start < events.len() {
            let chunk = match p.process_chunk(events.clone(), start).await {
                Ok(chunk) => chunk,
                Err(e) => {
                    // Fenced, or the pipeline stopped under us (deleted after a hand-over):
                    // skip, unacknowledged.
                    tracing::debug!(pipeline = %p.id, error = %e, "ingest batch not processed");
                    break;
                }
            };
            let end = (start + chunk.consumed.max(1)).min(events.len());
            for e in &chunk.errors {
                tracing::debug!(pipeline = %chunk.ran.id, error = %e.error, "event rejected by the engine");
            }
            // Not interrupted when only the feed stops (a fence): the outputs under way are
            // published and their inputs acknowledged, so the next copy does not repeat them.
            let published = tokio::select! {
                // Its pipeline is gone (deleted after a hand-over): skip, the feed goes on.
                () = chunk.ran.cancel.cancelled() => None,
                published = chunk.ran.publish(&chunk.outputs) => Some(published),
            };
            match published {
                // Fenced: the rest would be refused too; nothing is acknowledged.
                Some(false) => break,
                Some(true) => {
                    for ack in acks.get_mut(start..end).unwrap_or_default() {
                        if let Some(ack) = ack.take() {
                            ack.send();
                        }
                    }
                }
                None => {}
            }
            start = end;
        }
        batch = Vec::with_capacity(INGEST_BATCH);
    }
}
