//! The state every handler and background task of a worker shares.

use crate::config::WorkerConfig;
use crate::lease::Lease;
use crate::metrics::WorkerMetrics;
use crate::pipeline::{Pipeline, Registry};
use crate::state_dir::StateDir;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// The lease coordinator-deployed pipelines run under (docs/worker.md).
    pub lease: Arc<Lease>,
    /// HTTPS of the listener (`None`: plain HTTP); reloaded on SIGHUP.
    pub server_tls: Option<Arc<varpulis_tls::ServerTls>>,
    /// TLS of every outbound call (coordinator client, sessions): `--tls-ca`, and the worker's
    /// certificate under mutual TLS.
    pub client_tls: varpulis_tls::ClientTls,
    /// `--state-dir`, opened and locked (`None`: nothing is kept on disk).
    pub state_dir: Option<Arc<StateDir>>,
}

impl AppState {
    /// Fresh state for a validated config, with its TLS files loaded.
    pub fn try_new(config: WorkerConfig) -> Result<Self, crate::error::WorkerError> {
        let settings = config.tls.clone();
        let tls_error =
            |e: varpulis_tls::TlsError| crate::error::WorkerError::Config(e.to_string());
        let server_tls = varpulis_tls::ServerTls::from_settings(&settings).map_err(tls_error)?;
        let client_tls = varpulis_tls::ClientTls::from_settings(
            &settings,
            server_tls.as_ref().map(|s| s.keys()),
        )
        .map_err(tls_error)?;
        let state_dir = match &config.state_dir {
            Some(dir) => Some(Arc::new(StateDir::open(dir).map_err(|e| {
                crate::error::WorkerError::Config(format!("--state-dir {}: {e}", dir.display()))
            })?)),
            None => None,
        };
        let mut state = Self::new(config);
        state.server_tls = server_tls;
        state.client_tls = client_tls;
        state.state_dir = state_dir;
        Ok(state)
    }

    /// Fresh state for a validated config, without TLS (see [`AppState::try_new`]).
    pub fn new(config: WorkerConfig) -> Self {
        Self {
            server_tls: None,
            client_tls: varpulis_tls::ClientTls::none(),
            config,
            registry: Registry::default(),
            metrics: WorkerMetrics::default(),
            draining: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            lease: Arc::new(Lease::default()),
            state_dir: None,
        }
    }

    /// Removes a pipeline from the registry and from the state dir (the caller stops it).
    pub async fn remove_pipeline(&self, id: &str) -> Option<Arc<Pipeline>> {
        let p = self.registry.remove(id)?;
        self.forget_stored(id).await;
        Some(p)
    }

    /// Removes what the state dir holds for `id` (a failure is logged: the entry is then
    /// restored at the next start, like a pipeline deleted while the worker was down).
    pub async fn forget_stored(&self, id: &str) {
        let Some(dir) = self.state_dir.clone() else {
            return;
        };
        let owned = id.to_owned();
        let done = tokio::task::spawn_blocking(move || dir.remove(&owned)).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(id, error = %e, "cannot remove the pipeline from the state dir")
            }
            Err(e) => {
                tracing::error!(id, error = %e, "cannot remove the pipeline from the state dir")
            }
        }
    }

    /// Whether new deploys are refused.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Refuses new deploys from now on (`/ready` answers 503).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether a coordinator accepted the registration (or the worker is standalone).
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }

    /// Records whether the worker is registered.
    pub fn set_registered(&self, registered: bool) {
        self.registered.store(registered, Ordering::Relaxed);
    }
}
