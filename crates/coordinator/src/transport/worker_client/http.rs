//! Worker calls over HTTP: the worker's REST API (`docs/worker.md`) with its API key.

use axum::http::header;
use futures::StreamExt;
use std::time::Duration;
use varpulis_api::worker::BatchInjectRequest;
use varpulis_api::API_KEY_HEADER;

use super::call::{Answer, ByteStream, EventBatch, WorkerCall};

/// Largest worker answer the coordinator reads (bytes). A worker's own budgets cap the output
/// of one inject (`budget_exceeded`); this is the coordinator's backstop against a worker (old,
/// misconfigured or hostile) answering with millions of events: the answer is refused with a
/// clear error instead of being held in memory (docs/security.md, "Failing pipelines").
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Reads `response`'s body, refusing one over `max` bytes (announced or streamed).
async fn read_capped(response: reqwest::Response, max: usize) -> Result<axum::body::Bytes, String> {
    let too_large = || {
        format!(
            "the worker's answer is larger than {max} bytes (too many output events for one \
             call?): refused; inject fewer events per call or lower the pipeline's output"
        )
    };
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| format!("answer cut short: {}", error_chain(&e)))?;
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}
use super::{BoxFuture, WorkerClientConfig, WorkerRef, WorkerTransport};

/// The HTTP transport: one pooled `reqwest` client for every worker.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A transport with the timeouts of `config` (each call also sets its own).
    pub fn new(config: &WorkerClientConfig) -> Result<Self, reqwest::Error> {
        let client = config
            .tls
            .reqwest_builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .build()?;
        Ok(HttpTransport { client })
    }

    fn build(&self, worker: &WorkerRef, call: &WorkerCall) -> reqwest::RequestBuilder {
        let base = worker.address.trim_end_matches('/');
        let pipeline = |id: &str, route: &str| format!("{base}/api/v1/pipelines/{id}/{route}");
        let request = match call {
            WorkerCall::Deploy(body) => self
                .client
                .post(format!("{base}/api/v1/pipelines"))
                .json(body),
            WorkerCall::Undeploy { pipeline_id } => self
                .client
                .delete(format!("{base}/api/v1/pipelines/{pipeline_id}")),
            WorkerCall::Inject { pipeline_id, event } => self
                .client
                .post(pipeline(pipeline_id, "events"))
                .json(event),
            WorkerCall::InjectBatch { pipeline_id, batch } => {
                let post = self.client.post(pipeline(pipeline_id, "events-batch"));
                match batch {
                    EventBatch::Json(events) => post.json(&BatchInjectRequest {
                        events: events.clone(),
                    }),
                    EventBatch::Raw { events, .. } => post
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(events.clone()),
                    EventBatch::Evt(text) => post
                        .header(header::CONTENT_TYPE, "text/plain")
                        .body(text.clone()),
                }
            }
            WorkerCall::Checkpoint { pipeline_id } => {
                self.client.post(pipeline(pipeline_id, "checkpoint"))
            }
            WorkerCall::Metrics { pipeline_id } => {
                self.client.get(pipeline(pipeline_id, "metrics"))
            }
            WorkerCall::Handover {
                pipeline_id,
                request,
            } => self
                .client
                .post(pipeline(pipeline_id, "handover"))
                .json(request),
        };
        request.header(API_KEY_HEADER, &worker.api_key)
    }
}

/// `err` and its sources, `: `-separated (reqwest's own message omits the cause).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

impl WorkerTransport for HttpTransport {
    fn send<'a>(
        &'a self,
        worker: &'a WorkerRef,
        call: &'a WorkerCall,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, String>> {
        Box::pin(async move {
            let send = || self.build(worker, call).timeout(timeout).send();
            let sent = match send().await {
                // The connection was never established, so the worker never saw the call:
                // one retry is safe (a stale pooled connection, a full accept queue).
                Err(e) if e.is_connect() => send().await,
                other => other,
            };
            let response = sent.map_err(|e| error_chain(&e))?;
            let status = response.status().as_u16();
            let body = read_capped(response, MAX_ANSWER_BYTES).await?;
            Ok(Answer { status, body })
        })
    }

    fn open_output<'a>(
        &'a self,
        worker: &'a WorkerRef,
        pipeline_id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(u16, ByteStream), String>> {
        Box::pin(async move {
            let url = format!(
                "{}/api/v1/pipelines/{pipeline_id}/output",
                worker.address.trim_end_matches('/')
            );
            let response = self
                .client
                .get(url)
                .header(API_KEY_HEADER, &worker.api_key)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| error_chain(&e))?;
            let status = response.status().as_u16();
            let stream: ByteStream = Box::pin(
                response
                    .bytes_stream()
                    .map(|chunk| chunk.map_err(|e| e.to_string())),
            );
            Ok((status, stream))
        })
    }
}
