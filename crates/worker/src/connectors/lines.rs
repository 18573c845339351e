//! The shared machinery of the line sinks (`file`, `console`): outputs bound to the connector
//! are encoded as JSON lines into a bounded queue (the sink waits while it is full, so nothing
//! is dropped), and one task per connector writes what is queued in batches on the blocking
//! pool, flushing whenever the queue runs empty. When the pipeline stops (delete, SIGTERM) the
//! task writes everything still queued, then flushes and syncs the target.

use super::sink::{bound_to, Sink};
use super::stats::ConnectorStats;
use crate::counters::Counters;
use crate::engine::Output;
use crate::pipeline::Pipeline;
use crate::state::AppState;
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Lines queued per line sink before `publish` waits.
pub const LINE_QUEUE: usize = 16_384;
/// Lines written per batch on the blocking pool.
const WRITE_BATCH: usize = 4_096;

/// Where a line sink writes: a rotating file, stdout.
pub trait LineTarget: Send + 'static {
    /// Writes `lines` (each without its newline) and flushes.
    fn write_lines(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()>;
    /// Flushes and makes the data durable where that means something (`fsync` for files).
    fn finish(&mut self) -> std::io::Result<()>;
}

/// How an output becomes a line.
pub type Encode = fn(&Output) -> Vec<u8>;

/// A pipeline's `.to(C)` outputs for one line connector.
#[derive(Debug)]
pub struct LineSink {
    pipeline: String,
    connector: String,
    encode: Encode,
    tx: mpsc::Sender<Vec<u8>>,
    stats: Arc<ConnectorStats>,
}

impl Sink for LineSink {
    fn publish<'a>(&'a self, outputs: &'a [Output], counters: &'a Counters) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for (o, _) in bound_to(outputs, &self.connector, Some("")) {
                ConnectorStats::add(&self.stats.queued, 1);
                if self.tx.send((self.encode)(o)).await.is_err() {
                    self.stats.dequeued(1);
                    ConnectorStats::add(&self.stats.given_up, 1);
                    Counters::add(&counters.errors, 1);
                    tracing::warn!(pipeline = %self.pipeline, connector = %self.connector,
                        "line sink stopped: event given up");
                }
            }
        })
    }

    fn status(&self) -> Vec<varpulis_api::worker::ConnectorStatus> {
        vec![self.stats.status()]
    }
}

/// Starts the writer task of line connector `name` (of `kind`) writing to `target`.
pub fn start<T: LineTarget>(
    state: &AppState,
    pipeline: &Arc<Pipeline>,
    name: &str,
    kind: &'static str,
    encode: Encode,
    target: T,
) -> Box<dyn Sink> {
    let stats = Arc::new(ConnectorStats::new(name, kind));
    let (tx, rx) = mpsc::channel(LINE_QUEUE);
    let writer = Writer {
        pipeline: pipeline.id.clone(),
        connector: name.to_owned(),
        stats: stats.clone(),
    };
    state
        .tasks
        .spawn(writer.run(target, rx, pipeline.cancel.clone()));
    Box::new(LineSink {
        pipeline: pipeline.id.clone(),
        connector: name.to_owned(),
        encode,
        tx,
        stats,
    })
}

struct Writer {
    pipeline: String,
    connector: String,
    stats: Arc<ConnectorStats>,
}

impl Writer {
    async fn run<T: LineTarget>(
        self,
        target: T,
        mut rx: mpsc::Receiver<Vec<u8>>,
        cancel: CancellationToken,
    ) {
        let mut target = Some(target);
        loop {
            let first = tokio::select! {
                biased;
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => break,
                },
                _ = cancel.cancelled() => break,
            };
            let mut lines = vec![first];
            while lines.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            target = self.write(target, lines).await;
        }
        // Stopping: everything still queued, then flush and sync.
        rx.close();
        let mut rest = Vec::new();
        while let Some(l) = rx.recv().await {
            rest.push(l);
        }
        if !rest.is_empty() {
            target = self.write(target, rest).await;
        }
        if let Some(mut t) = target {
            let done = tokio::task::spawn_blocking(move || t.finish()).await;
            if let Ok(Err(e)) = done {
                tracing::error!(pipeline = %self.pipeline, connector = %self.connector,
                    error = %e, "line sink: final flush failed");
            }
        }
    }

    /// Writes `lines` on the blocking pool; returns the target (none if the write panicked).
    async fn write<T: LineTarget>(&self, target: Option<T>, lines: Vec<Vec<u8>>) -> Option<T> {
        let n = lines.len() as u64;
        let Some(mut t) = target else {
            self.stats.dequeued(n);
            ConnectorStats::add(&self.stats.given_up, n);
            return None;
        };
        ConnectorStats::add(&self.stats.requests, 1);
        let joined = tokio::task::spawn_blocking(move || {
            let r = t.write_lines(&lines);
            (t, r)
        })
        .await;
        self.stats.dequeued(n);
        match joined {
            Ok((t, Ok(()))) => {
                self.stats.set_ok();
                ConnectorStats::add(&self.stats.sent, n);
                Some(t)
            }
            Ok((t, Err(e))) => {
                self.stats.set_down(format!("write failed: {e}"));
                ConnectorStats::add(&self.stats.given_up, n);
                tracing::error!(pipeline = %self.pipeline, connector = %self.connector,
                    events = n, error = %e, "line sink: write failed, events given up");
                Some(t)
            }
            Err(e) => {
                self.stats.set_down(format!("writer failed: {e}"));
                ConnectorStats::add(&self.stats.given_up, n);
                None
            }
        }
    }
}
