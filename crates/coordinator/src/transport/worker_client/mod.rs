//! The coordinator's one client for calling workers.
//!
//! Every call the coordinator makes to a worker — deploy, undeploy, checkpoint, inject, rolling
//! hand-over, output streams — goes through [`WorkerClient`]. It holds in one place what such a
//! call needs: the worker's URL and API key ([`WorkerRef`], read from the replicated registry),
//! the timeouts ([`WorkerClientConfig`]), the retry rule (a call whose connection could not be
//! established is sent once more: it never reached the worker) and the choice of transport. A
//! worker that registered over NATS (label [`TRANSPORT_LABEL`]) gets its calls over NATS when
//! this node has a NATS link and NATS carries the call ([`WorkerCall::nats_command`]);
//! everything else goes over HTTP. Call sites never decide "NATS or HTTP".
//!
//! [`WorkerClient::new`] is the single construction point: it takes a [`WorkerClientConfig`]
//! (built from the coordinator's configuration by [`WorkerClientConfig::from_config`]), so
//! transport settings such as TLS belong there. Tests plug in their own [`WorkerTransport`]
//! with [`WorkerClient::with_transport`].

mod call;
mod http;
mod nats;

pub use call::{Answer, ByteStream, EventBatch, WorkerCall};
pub use http::{error_chain, HttpTransport};
pub use nats::NatsTransport;

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use varpulis_api::worker::{
    BatchInjectResponse, Checkpoint, DeployPipelineRequest, DeployPipelineResponse,
    HandoverRequest, HandoverResponse, InjectResponse, InputEvent, PipelineMetrics,
};

use crate::config::CoordinatorConfig;
use crate::transport::nats::link::NatsLink;

/// Label recording that a worker registered over NATS (its calls then go over NATS).
pub const TRANSPORT_LABEL: &str = "varpulis.transport";
/// Longest part of a worker's error answer quoted in an error message.
const MAX_QUOTED: usize = 2000;

/// A boxed future, as the transports return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the client needs to know about one worker, read from the replicated registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRef {
    /// Worker id.
    pub id: String,
    /// Base URL of its REST API.
    pub address: String,
    /// Key the worker expects in `x-api-key`.
    pub api_key: String,
    /// It registered over NATS.
    pub over_nats: bool,
}

impl WorkerRef {
    /// The reference of a registered worker.
    pub fn of(w: &varpulis_cluster::Worker) -> Self {
        WorkerRef {
            id: w.id.clone(),
            address: w.address.clone(),
            api_key: w.api_key.clone(),
            over_nats: w.labels.get(TRANSPORT_LABEL).map(String::as_str) == Some("nats"),
        }
    }

    /// The reference of worker `id` in `state`, if it is registered.
    pub fn find(state: &varpulis_cluster::ClusterState, id: &str) -> Option<Self> {
        state.worker(id).map(Self::of)
    }
}

/// One way of carrying worker calls (HTTP, NATS, or a test double).
pub trait WorkerTransport: Send + Sync + 'static {
    /// Sends `call` to `worker` and waits at most `timeout` for its answer. `Err` says why no
    /// answer came (unreachable, cut short, timed out).
    fn send<'a>(
        &'a self,
        worker: &'a WorkerRef,
        call: &'a WorkerCall,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, String>>;

    /// Opens the output stream of a pipeline (`GET /api/v1/pipelines/{id}/output`, SSE);
    /// returns the status and the body chunks.
    fn open_output<'a>(
        &'a self,
        worker: &'a WorkerRef,
        pipeline_id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(u16, ByteStream), String>> {
        let _ = (worker, pipeline_id, timeout);
        Box::pin(async { Err("this transport carries no output streams".to_string()) })
    }
}

/// Why a worker call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerCallError {
    /// No answer: the worker is unreachable, timed out or cut the answer short.
    #[error("worker '{worker}' unreachable: {message}")]
    Unreachable {
        /// Worker id.
        worker: String,
        /// What happened.
        message: String,
    },
    /// The worker answered with an error status.
    #[error("worker '{worker}' answered {status}: {body}")]
    Refused {
        /// Worker id.
        worker: String,
        /// HTTP status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// The worker answered 2xx with a body that is not what the route returns.
    #[error("worker '{worker}' answered unexpected JSON: {message}")]
    BadAnswer {
        /// Worker id.
        worker: String,
        /// The decoder's message.
        message: String,
    },
}

/// Settings of the worker client.
#[derive(Debug, Clone)]
pub struct WorkerClientConfig {
    /// Timeout of every call (the coordinator's `http_client_timeout`).
    pub timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout of a checkpoint call (shorter: a busy pipeline is checkpointed next round).
    pub checkpoint_timeout: Duration,
    /// Longest an output stream is followed before it is re-opened.
    pub stream_timeout: Duration,
    /// This node's NATS link, when the cluster transport is NATS.
    pub nats: Option<NatsLink>,
    /// TLS of the calls to workers (`--tls-ca`, and the node's certificate under mutual TLS).
    pub tls: varpulis_tls::ClientTls,
}

impl WorkerClientConfig {
    /// The settings the coordinator's configuration implies.
    pub fn from_config(config: &CoordinatorConfig, nats: Option<NatsLink>) -> Self {
        let timeout = config.http_client_timeout;
        WorkerClientConfig {
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(3)),
            checkpoint_timeout: timeout.min(Duration::from_secs(5)),
            stream_timeout: Duration::from_secs(24 * 3600),
            nats,
            tls: varpulis_tls::ClientTls::none(),
        }
    }
}

/// Building the client failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the worker HTTP client: {0}")]
pub struct WorkerClientError(#[from] reqwest::Error);

/// The coordinator's client of every worker (cheap to clone).
#[derive(Clone)]
pub struct WorkerClient {
    http: Arc<dyn WorkerTransport>,
    nats: Option<Arc<dyn WorkerTransport>>,
    config: Arc<WorkerClientConfig>,
}

impl std::fmt::Debug for WorkerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerClient")
            .field("nats", &self.nats.is_some())
            .finish_non_exhaustive()
    }
}

impl WorkerClient {
    /// The client for `config`: HTTP for every worker, NATS too when `config.nats` is set.
    pub fn new(config: WorkerClientConfig) -> Result<Self, WorkerClientError> {
        let http: Arc<dyn WorkerTransport> = Arc::new(HttpTransport::new(&config)?);
        let nats = config
            .nats
            .clone()
            .map(|link| Arc::new(NatsTransport::new(link)) as Arc<dyn WorkerTransport>);
        Ok(WorkerClient {
            http,
            nats,
            config: Arc::new(config),
        })
    }

    /// A client that sends every call through `transport` (tests, simulations).
    pub fn with_transport(transport: Arc<dyn WorkerTransport>, config: WorkerClientConfig) -> Self {
        WorkerClient {
            http: transport,
            nats: None,
            config: Arc::new(config),
        }
    }

    /// The transport that carries `call` to `worker`.
    fn transport_for(&self, worker: &WorkerRef, call: &WorkerCall) -> &dyn WorkerTransport {
        match &self.nats {
            Some(nats) if worker.over_nats && call.nats_command().is_some() => nats.as_ref(),
            _ => self.http.as_ref(),
        }
    }

    fn timeout_for(&self, call: &WorkerCall) -> Duration {
        match call {
            WorkerCall::Checkpoint { .. } => self.config.checkpoint_timeout,
            _ => self.config.timeout,
        }
    }

    /// Sends `call`; a non-2xx answer is a [`WorkerCallError::Refused`].
    async fn request(
        &self,
        worker: &WorkerRef,
        call: &WorkerCall,
    ) -> Result<Answer, WorkerCallError> {
        let answer = self
            .transport_for(worker, call)
            .send(worker, call, self.timeout_for(call))
            .await
            .map_err(|message| WorkerCallError::Unreachable {
                worker: worker.id.clone(),
                message,
            })?;
        if !answer.is_success() {
            return Err(refused(worker, &answer));
        }
        Ok(answer)
    }

    /// Sends `call` and decodes its 2xx answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        worker: &WorkerRef,
        call: &WorkerCall,
    ) -> Result<T, WorkerCallError> {
        let answer = self.request(worker, call).await?;
        serde_json::from_slice(&answer.body).map_err(|e| WorkerCallError::BadAnswer {
            worker: worker.id.clone(),
            message: e.to_string(),
        })
    }

    /// Deploys a pipeline; returns its id on the worker (the requested id when the answer
    /// does not say).
    pub async fn deploy(
        &self,
        worker: &WorkerRef,
        request: &DeployPipelineRequest,
    ) -> Result<String, WorkerCallError> {
        let call = WorkerCall::Deploy(request.clone());
        let answer = self.request(worker, &call).await?;
        match serde_json::from_slice::<DeployPipelineResponse>(&answer.body) {
            Ok(deployed) => Ok(deployed.id),
            Err(e) => request.id.clone().ok_or(WorkerCallError::BadAnswer {
                worker: worker.id.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Deletes a pipeline; an unknown pipeline (404) counts as deleted.
    pub async fn undeploy(
        &self,
        worker: &WorkerRef,
        pipeline_id: &str,
    ) -> Result<(), WorkerCallError> {
        let call = WorkerCall::Undeploy {
            pipeline_id: pipeline_id.to_string(),
        };
        match self.request(worker, &call).await {
            Err(WorkerCallError::Refused { status: 404, .. }) | Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes a checkpoint of a pipeline.
    pub async fn checkpoint(
        &self,
        worker: &WorkerRef,
        pipeline_id: &str,
    ) -> Result<Checkpoint, WorkerCallError> {
        let call = WorkerCall::Checkpoint {
            pipeline_id: pipeline_id.to_string(),
        };
        self.call(worker, &call).await
    }

    /// Sends one event to a pipeline.
    pub async fn inject(
        &self,
        worker: &WorkerRef,
        pipeline_id: &str,
        event: InputEvent,
    ) -> Result<InjectResponse, WorkerCallError> {
        let call = WorkerCall::Inject {
            pipeline_id: pipeline_id.to_string(),
            event,
        };
        self.call(worker, &call).await
    }

    /// Sends a batch of events to a pipeline.
    pub async fn inject_batch(
        &self,
        worker: &WorkerRef,
        pipeline_id: &str,
        batch: EventBatch,
    ) -> Result<BatchInjectResponse, WorkerCallError> {
        let call = WorkerCall::InjectBatch {
            pipeline_id: pipeline_id.to_string(),
            batch,
        };
        self.call(worker, &call).await
    }

    /// Sends a batch of events to a pipeline; returns the worker's 2xx answer as it came
    /// (a `BatchInjectResponse`), for callers that pass its output events on without decoding.
    pub async fn inject_batch_raw(
        &self,
        worker: &WorkerRef,
        pipeline_id: &str,
        batch: EventBatch,
    ) -> Result<Bytes, WorkerCallError> {
        let call = WorkerCall::InjectBatch {
            pipeline_id: pipeline_id.to_string(),
            batch,
        };
        Ok(self.request(worker, &call).await?.body)
    }

    /// Asks pipeline `pipeline_id` to hand its traffic (and state) over (rolling updates).
    pub async fn handover(
        &self,
        worker: &WorkerRef,
        pipeline_id: &str,
        request: HandoverRequest,
    ) -> Result<HandoverResponse, WorkerCallError> {
        let call = WorkerCall::Handover {
            pipeline_id: pipeline_id.to_string(),
            request,
        };
        self.call(worker, &call).await
    }

    /// Reads the counters of a pipeline (over HTTP whatever the worker's transport).
    pub async fn metrics(
        &self,
        worker: &WorkerRef,
        pipeline_id: &str,
    ) -> Result<PipelineMetrics, WorkerCallError> {
        let call = WorkerCall::Metrics {
            pipeline_id: pipeline_id.to_string(),
        };
        self.call(worker, &call).await
    }

    /// Opens the output stream (SSE body chunks) of a pipeline.
    pub async fn output(
        &self,
        worker: &WorkerRef,
        pipeline_id: &str,
    ) -> Result<ByteStream, WorkerCallError> {
        let (status, stream) = self
            .http
            .open_output(worker, pipeline_id, self.config.stream_timeout)
            .await
            .map_err(|message| WorkerCallError::Unreachable {
                worker: worker.id.clone(),
                message,
            })?;
        if !(200..300).contains(&status) {
            return Err(WorkerCallError::Refused {
                worker: worker.id.clone(),
                status,
                body: String::new(),
            });
        }
        Ok(stream)
    }
}

fn refused(worker: &WorkerRef, answer: &Answer) -> WorkerCallError {
    let text = String::from_utf8_lossy(&answer.body);
    let text = match text.char_indices().nth(MAX_QUOTED) {
        Some((i, _)) => &text[..i],
        None => &text,
    };
    WorkerCallError::Refused {
        worker: worker.id.clone(),
        status: answer.status,
        body: text.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use std::sync::Mutex;

    /// Records calls and answers each with a fixed status and body.
    struct Canned {
        status: u16,
        body: &'static str,
        seen: Mutex<Vec<(String, WorkerCall)>>,
    }

    impl WorkerTransport for Canned {
        fn send<'a>(
            &'a self,
            worker: &'a WorkerRef,
            call: &'a WorkerCall,
            _timeout: Duration,
        ) -> BoxFuture<'a, Result<Answer, String>> {
            self.seen
                .lock()
                .unwrap()
                .push((worker.id.clone(), call.clone()));
            let answer = Answer {
                status: self.status,
                body: Bytes::from_static(self.body.as_bytes()),
            };
            Box::pin(async move { Ok(answer) })
        }
    }

    fn client(status: u16, body: &'static str) -> (WorkerClient, Arc<Canned>) {
        let canned = Arc::new(Canned {
            status,
            body,
            seen: Mutex::new(Vec::new()),
        });
        let config = WorkerClientConfig::from_config(&CoordinatorConfig::default(), None);
        (WorkerClient::with_transport(canned.clone(), config), canned)
    }

    fn worker() -> WorkerRef {
        WorkerRef {
            id: "w1".into(),
            address: "http://w1".into(),
            api_key: "k".into(),
            over_nats: false,
        }
    }

    #[tokio::test]
    async fn undeploy_of_an_unknown_pipeline_is_done() {
        let (c, seen) = client(404, r#"{"error":"gone","code":"not_found"}"#);
        assert!(c.undeploy(&worker(), "p").await.is_ok());
        assert_eq!(seen.seen.lock().unwrap().len(), 1);
        let (c, _) = client(500, "boom");
        let err = c.undeploy(&worker(), "p").await.unwrap_err();
        assert_eq!(err.to_string(), "worker 'w1' answered 500: boom");
    }

    #[tokio::test]
    async fn answers_are_decoded_or_reported() {
        let (c, _) = client(200, r#"{"accepted": true, "output_events": []}"#);
        let event = InputEvent {
            event_type: "A".into(),
            fields: Default::default(),
            timestamp: None,
        };
        assert!(
            c.inject(&worker(), "p", event.clone())
                .await
                .unwrap()
                .accepted
        );
        let (c, _) = client(200, "not json");
        let err = c.inject(&worker(), "p", event).await.unwrap_err();
        assert!(matches!(err, WorkerCallError::BadAnswer { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_deploy_answer_without_id_falls_back_to_the_requested_id() {
        let (c, _) = client(201, "");
        let request = DeployPipelineRequest {
            name: "g/p".into(),
            source: "stream A = X".into(),
            connectors: Default::default(),
            checkpoint: None,
            id: Some("p-1".into()),
            epoch: Some(1),
            routes: None,
            paused: false,
        };
        assert_eq!(c.deploy(&worker(), &request).await.unwrap(), "p-1");
    }

    #[test]
    fn only_nats_workers_with_a_link_use_nats() {
        let handover = WorkerCall::Handover {
            pipeline_id: "p".into(),
            request: HandoverRequest {
                to: "q".into(),
                state: None,
            },
        };
        assert_eq!(handover.nats_command(), None);
        assert_eq!(
            WorkerCall::Checkpoint {
                pipeline_id: "p".into()
            }
            .nats_command(),
            Some("checkpoint")
        );
    }
}
