//! `run(config, listener, shutdown)`: serves the worker API until `shutdown` completes, then
//! drains: stop accepting, stop pipelines and connectors, deregister from the coordinator.

use crate::config::WorkerConfig;
use crate::coordinator_client::CoordinatorClient;
use crate::error::WorkerError;
use crate::metrics::WorkerMetrics;
use crate::pipeline::Registry;
use crate::routes;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a graceful shutdown waits for the coordinator to move our pipelines away.
const SHUTDOWN_DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// How long shutdown waits for connector tasks to finish.
const TASK_STOP_DEADLINE: Duration = Duration::from_secs(5);

/// State shared by every handler and background task.
#[derive(Debug)]
pub struct AppState {
    /// Validated configuration.
    pub config: WorkerConfig,
    /// Deployed pipelines.
    pub registry: Registry,
    /// Worker-wide metrics.
    pub metrics: WorkerMetrics,
    /// Set by `POST /api/v1/drain` or at shutdown: no new deploys.
    pub draining: AtomicBool,
    /// Set once a coordinator accepted our registration (or at once when standalone).
    pub registered: AtomicBool,
    /// Cancelled when the worker shuts down; every background task watches it.
    pub shutdown: CancellationToken,
    /// Connector and processing tasks, awaited at shutdown.
    pub tasks: TaskTracker,
}

impl AppState {
    /// Fresh state for a validated config.
    pub fn new(config: WorkerConfig) -> Self {
        Self {
            config,
            registry: Registry::default(),
            metrics: WorkerMetrics::default(),
            draining: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Whether new deploys are refused.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Serves the worker API on `listener` until `shutdown` completes (or the process is asked to
/// stop through the state's token), then shuts down cleanly and returns.
pub async fn run(
    config: WorkerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    config.validate()?;
    let state = Arc::new(AppState::new(config));
    serve(state, listener, shutdown).await
}

/// Like [`run`] with a state built by the caller (lets embedders keep a handle on it).
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let nats = crate::transport::spawn(&state).await?;
    let client = if state.config.coordinators.is_empty() {
        state.registered.store(nats.is_none(), Ordering::Relaxed);
        None
    } else {
        let client = Arc::new(CoordinatorClient::new(state.clone())?);
        let task = tokio::spawn(client.clone().run());
        Some((client, task))
    };

    let app = routes::router(state.clone());
    let st = state.clone();
    let drainer = client.as_ref().map(|(c, _)| c.clone());
    let stop = async move {
        let graceful = tokio::select! {
            () = shutdown => true,
            () = st.shutdown.cancelled() => false,
        };
        if let Some(client) = drainer.filter(|_| graceful) {
            // Still serving: the leader pulls fresh checkpoints from us and deletes the
            // pipelines it moved while we wait.
            tracing::info!("shutting down: asking the coordinator to drain this worker");
            client.drain_self(SHUTDOWN_DRAIN_DEADLINE).await;
        }
        tracing::info!("shutting down: draining");
        st.draining.store(true, Ordering::Relaxed);
        st.shutdown.cancel();
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await;
    // Whatever ended serving, make sure every task sees the shutdown.
    state.draining.store(true, Ordering::Relaxed);
    state.shutdown.cancel();

    for p in state.registry.all() {
        p.stop();
    }
    state.tasks.close();
    if tokio::time::timeout(TASK_STOP_DEADLINE, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("connector tasks did not stop in time");
    }
    if let Some(task) = nats {
        let _ = task.await;
    }
    if let Some((client, task)) = client {
        let _ = task.await;
        client.deregister().await;
    }
    tracing::info!("worker stopped");
    served.map_err(WorkerError::Io)
}
