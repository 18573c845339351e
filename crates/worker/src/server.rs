//! `run(config, listener, shutdown)`: serves the worker API until `shutdown` completes, then
//! drains: stop accepting, write the last local checkpoints (`--state-dir`), stop pipelines and
//! connectors, deregister from the coordinator.

use crate::config::WorkerConfig;
use crate::coordinator::CoordinatorClient;
use crate::error::WorkerError;
use crate::routes;
use crate::state::AppState;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a graceful shutdown waits for the coordinator to move our pipelines away.
const SHUTDOWN_DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// How long shutdown waits for the last checkpoints to reach `--state-dir`.
const STATE_SAVE_DEADLINE: Duration = Duration::from_secs(20);
/// How long shutdown waits for connector tasks to finish.
const TASK_STOP_DEADLINE: Duration = Duration::from_secs(5);

/// Serves the worker API on `listener` until `shutdown` completes (or the process is asked to
/// stop through the state's token), then shuts down cleanly and returns.
pub async fn run(
    config: WorkerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    config.validate()?;
    let state = Arc::new(AppState::try_new(config)?);
    serve(state, listener, shutdown).await
}

/// Like [`run`] with a state built by the caller (lets embedders keep a handle on it).
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    if state.config.tls.serves_tls() && state.server_tls.is_none() {
        return Err(WorkerError::Config(
            "TLS is configured but the state was built without it (use AppState::try_new)".into(),
        ));
    }
    let app = routes::router(state.clone());
    let client = CoordinatorClient::connect(&state).await?;
    // Commands over NATS are subscribed before registering, so none sent after it is missed.
    let commands = match client.as_ref().and_then(|c| c.nats()) {
        Some(nats) => Some(routes::nats::serve(state.clone(), nats.clone(), app.clone()).await?),
        None => None,
    };
    let session = match &client {
        Some(c) => {
            tokio::spawn(crate::coordinator::fence::watch(state.clone()));
            if c.nats().is_none() {
                tokio::spawn(c.clone().hold_session());
            }
            Some(tokio::spawn(c.clone().run()))
        }
        None => {
            state.set_registered(true);
            let restored = crate::persistence::restore_at_start(&state).await;
            if restored > 0 {
                tracing::info!(restored, "pipelines restored from the state dir");
            }
            None
        }
    };
    let saver = tokio::spawn(crate::persistence::run(state.clone()));

    let st = state.clone();
    let drainer = client.clone();
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
        st.start_draining();
        st.shutdown.cancel();
    };
    let reload =
        varpulis_tls::reload::on_sighup(state.server_tls.clone(), state.client_tls.clone())
            .map_err(WorkerError::Io)?;
    let listener = varpulis_tls::AnyListener::new(listener, state.server_tls.clone())
        .map_err(WorkerError::Io)?;
    let options = varpulis_tls::ServeOptions {
        limits: state.config.conns.clone(),
        reserved: reserved_requests(state.config.api_key.clone()),
        placement: None,
    };
    let served = varpulis_tls::serve_with(listener, app, options, stop).await;
    reload.abort();
    // Whatever ended serving, make sure every task sees the shutdown.
    state.start_draining();
    state.shutdown.cancel();
    // The last local checkpoints, before the engines stop.
    if tokio::time::timeout(STATE_SAVE_DEADLINE, saver)
        .await
        .is_err()
    {
        tracing::warn!("the last local checkpoints did not finish in time");
    }

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
    if let Some(task) = commands {
        let _ = task.await;
    }
    if let Some(task) = session {
        let _ = task.await;
    }
    if let Some(client) = client {
        client.leave().await;
    }
    tracing::info!("worker stopped");
    served.map_err(WorkerError::Io)
}

/// Requests served even when client connections are at the cap (docs/security.md,
/// "Connections"): the coordinator's, which carry this worker's key. None without a key.
fn reserved_requests(api_key: Option<String>) -> Option<varpulis_tls::serve::Reserved> {
    let key = api_key?;
    Some(Arc::new(move |req: &axum::extract::Request| {
        req.headers()
            .get(varpulis_api::API_KEY_HEADER)
            .is_some_and(|given| {
                constant_time_eq::constant_time_eq(given.as_bytes(), key.as_bytes())
            })
    }))
}
