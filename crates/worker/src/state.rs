//! The state every handler and background task of a worker shares.

use crate::config::WorkerConfig;
use crate::lease::Lease;
use crate::metrics::WorkerMetrics;
use crate::pipeline::Registry;
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
}

impl AppState {
    /// Fresh state for a validated config, with its TLS files loaded.
    pub fn try_new(config: WorkerConfig) -> Result<Self, crate::error::WorkerError> {
        let settings = config.tls_settings();
        let tls_error =
            |e: varpulis_tls::TlsError| crate::error::WorkerError::Config(e.to_string());
        let server_tls = varpulis_tls::ServerTls::from_settings(&settings).map_err(tls_error)?;
        let client_tls = varpulis_tls::ClientTls::from_settings(
            &settings,
            server_tls.as_ref().map(|s| s.keys()),
        )
        .map_err(tls_error)?;
        let mut state = Self::new(config);
        state.server_tls = server_tls;
        state.client_tls = client_tls;
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
