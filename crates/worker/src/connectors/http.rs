//! The HTTP sink (kind `http`, docs/connectors.md): a pipeline's `.to(H)` outputs POSTed (or
//! PUT, …) as JSON to a URL, one event per request or a JSON array of up to `batch` events.
//!
//! ```vpl
//! connector Alerts = http(url: "http://alerts.local/hook", headers: {"authorization": "Bearer t"},
//!     timeout: 5s, batch: 100)
//! stream Hot = Reading .where(temp > 90) .emit(id: id, temp: temp) .to(Alerts)
//! ```
//!
//! Flow: [`HttpSink::publish`] encodes each bound output (the MQTT egress shape) into a bounded
//! queue of `queue` events, waiting while it is full: that wait is the backpressure that slows
//! the pipeline's sources (or its inject requests) down, and no event is ever dropped to make
//! room. One delivery task per connector takes what is queued (up to `batch` events, without
//! waiting for more) and sends it; requests are therefore in order, one at a time.
//!
//! Failures: a connection error, a timeout, a 5xx, 408 or 429 is retried with exponential
//! backoff (100 ms doubling up to `max_backoff`) up to `retries` times; meanwhile the connector
//! is `down` and the pipeline `degraded`. Events still failing then, or refused with another
//! 4xx (retrying cannot help), are given up: counted (`events_given_up`) and logged. At
//! shutdown the task sends what is queued for at most [`DRAIN_DEADLINE`], then counts the rest
//! as given up.

use super::payload::encode_output;
use super::plan::output::{HttpParams, HTTP_FIRST_BACKOFF};
use super::sink::{bound_to, Sink};
use super::stats::ConnectorStats;
use crate::backoff;
use crate::counters::Counters;
use crate::engine::Output;
use crate::pipeline::Pipeline;
use crate::state::AppState;
use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a stopping connector keeps sending what is queued (the worker waits 5 s for
/// connector tasks at shutdown).
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(4);

/// Where a pipeline's `.to(H)` outputs go for one HTTP connector.
#[derive(Debug)]
pub struct HttpSink {
    pipeline: String,
    connector: String,
    tx: mpsc::Sender<Vec<u8>>,
    stats: Arc<ConnectorStats>,
}

impl Sink for HttpSink {
    fn publish<'a>(&'a self, outputs: &'a [Output], counters: &'a Counters) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for (o, _) in bound_to(outputs, &self.connector, Some("")) {
                ConnectorStats::add(&self.stats.queued, 1);
                if self.tx.send(encode_output(o)).await.is_err() {
                    // The delivery task is gone: the pipeline is stopping.
                    self.stats.dequeued(1);
                    ConnectorStats::add(&self.stats.given_up, 1);
                    Counters::add(&counters.errors, 1);
                    tracing::warn!(pipeline = %self.pipeline, connector = %self.connector,
                        "http sink stopped: event given up");
                }
            }
        })
    }

    fn status(&self) -> Vec<varpulis_api::worker::ConnectorStatus> {
        vec![self.stats.status()]
    }
}

/// Starts the delivery task of HTTP connector `name` for `pipeline`; returns its sink.
pub fn start(
    state: &AppState,
    pipeline: &Arc<Pipeline>,
    name: &str,
    params: HttpParams,
) -> Result<Box<dyn Sink>, String> {
    let client = reqwest::Client::builder()
        .timeout(params.timeout)
        .connect_timeout(params.timeout)
        .build()
        .map_err(|e| format!("http connector `{name}`: cannot build a client: {e}"))?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in &params.headers {
        // Checked when the plan was made.
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    let method = Method::from_bytes(params.method.as_bytes()).unwrap_or(Method::POST);
    let stats = Arc::new(ConnectorStats::new(name, "http"));
    let (tx, rx) = mpsc::channel(params.queue);
    let delivery = Delivery {
        pipeline: pipeline.id.clone(),
        connector: name.to_owned(),
        client,
        method,
        headers,
        params,
        stats: stats.clone(),
    };
    state.tasks.spawn(delivery.run(rx, pipeline.cancel.clone()));
    Ok(Box::new(HttpSink {
        pipeline: pipeline.id.clone(),
        connector: name.to_owned(),
        tx,
        stats,
    }))
}

/// The delivery task's fixed parts.
struct Delivery {
    pipeline: String,
    connector: String,
    client: reqwest::Client,
    method: Method,
    headers: HeaderMap,
    params: HttpParams,
    stats: Arc<ConnectorStats>,
}

/// How one request ended.
enum Attempt {
    Delivered,
    /// Worth retrying (connection error, timeout, 5xx, 408, 429).
    Retry(String),
    /// Retrying cannot help (another 4xx).
    Refused(String),
}

impl Delivery {
    async fn run(self, mut rx: mpsc::Receiver<Vec<u8>>, cancel: CancellationToken) {
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(self.params.batch);
        loop {
            let first = tokio::select! {
                biased;
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => return,
                },
                _ = cancel.cancelled() => break,
            };
            batch.push(first);
            while batch.len() < self.params.batch {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            self.deliver(&mut batch, &cancel, None).await;
        }
        // Stopping: send what is queued, within the deadline.
        rx.close();
        let deadline = Instant::now() + DRAIN_DEADLINE;
        while let Some(item) = rx.recv().await {
            batch.push(item);
            if batch.len() >= self.params.batch {
                self.deliver(&mut batch, &cancel, Some(deadline)).await;
            }
        }
        if !batch.is_empty() {
            self.deliver(&mut batch, &cancel, Some(deadline)).await;
        }
    }

    /// Sends `batch` (emptying it), retrying as documented; gives it up when the retries run
    /// out, when it is refused, or (while stopping) past `deadline`.
    async fn deliver(
        &self,
        batch: &mut Vec<Vec<u8>>,
        cancel: &CancellationToken,
        deadline: Option<Instant>,
    ) {
        let n = batch.len() as u64;
        let body = self.body(batch);
        batch.clear();
        let mut failures = 0u32;
        let outcome = loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Err("shutdown deadline passed".to_owned());
            }
            match self.attempt(body.clone()).await {
                Attempt::Delivered => break Ok(()),
                Attempt::Refused(e) => break Err(e),
                Attempt::Retry(e) => {
                    self.stats.set_down(e.clone());
                    if failures >= self.params.retries {
                        break Err(format!("{e} (after {failures} retries)"));
                    }
                    failures += 1;
                    ConnectorStats::add(&self.stats.retries, 1);
                    let delay = backoff::delay(
                        HTTP_FIRST_BACKOFF,
                        failures as usize,
                        self.params.max_backoff,
                    );
                    let delay = match deadline {
                        Some(d) => delay.min(d.saturating_duration_since(Instant::now())),
                        None => delay,
                    };
                    tracing::debug!(pipeline = %self.pipeline, connector = %self.connector,
                        error = %e, retry = failures, ?delay, "http sink retrying");
                    if deadline.is_none() {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            // Stopping: the drain retries until its deadline.
                            _ = cancel.cancelled() => {}
                        }
                    } else {
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        };
        self.stats.dequeued(n);
        match outcome {
            Ok(()) => {
                self.stats.set_ok();
                ConnectorStats::add(&self.stats.sent, n);
            }
            Err(e) => {
                ConnectorStats::add(&self.stats.given_up, n);
                tracing::error!(pipeline = %self.pipeline, connector = %self.connector,
                    events = n, error = %e, "http sink gave events up");
            }
        }
    }

    /// One event as its JSON object when `batch` is 1, else a JSON array of the events.
    fn body(&self, batch: &[Vec<u8>]) -> Vec<u8> {
        if self.params.batch == 1 {
            if let [one] = batch {
                return one.clone();
            }
        }
        let mut body = Vec::with_capacity(batch.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, b) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b);
        }
        body.push(b']');
        body
    }

    async fn attempt(&self, body: Vec<u8>) -> Attempt {
        ConnectorStats::add(&self.stats.requests, 1);
        let sent = self
            .client
            .request(self.method.clone(), &self.params.url)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await;
        match sent {
            Err(e) => Attempt::Retry(format!("request to {} failed: {e}", self.params.url)),
            Ok(resp) => {
                let status = resp.status();
                // Read the body so the connection can be reused.
                let _ = resp.bytes().await;
                if status.is_success() {
                    Attempt::Delivered
                } else if status.is_server_error()
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status == StatusCode::TOO_MANY_REQUESTS
                {
                    Attempt::Retry(format!("{} answered {status}", self.params.url))
                } else {
                    Attempt::Refused(format!("{} refused the events: {status}", self.params.url))
                }
            }
        }
    }
}
