//! [`LeaderCtx`]: the handle every leader task works with.
//!
//! It holds only what leader work needs — the replicated [`Store`], the [`WorkerClient`], the
//! leader's in-memory knowledge (liveness, "rebalance wanted"), the reconciler's wake-up, the
//! clock and id source used for decisions, and the [`LeaderSettings`] — not the HTTP server's
//! state (keys, proxy client, event log). The clock and the id source are injected so the
//! deterministic leader tests run on paused time with reproducible ids.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use varpulis_cluster::plan::{LivenessView, Policy};

use crate::config::{CoordinatorConfig, FailureDetector};
use crate::leader::liveness::{Detector, Liveness};
use crate::leader::phi::PhiConfig;
use crate::leader::store::Store;
use crate::metrics::Metrics;
use crate::transport::worker_client::WorkerClient;

/// The leader's clock: milliseconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;
/// The leader's source of new ids (migrations, groups).
pub type IdSource = Arc<dyn Fn() -> String + Send + Sync>;

/// Milliseconds since the Unix epoch on this node's clock.
pub fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Leader memory of the rebalancer: whether a rebalance is wanted (see the `rebalance` module).
#[derive(Debug, Default)]
pub struct RebalanceState {
    wanted: AtomicBool,
}

impl RebalanceState {
    /// Asks for a rebalance at the reconciler's next pass.
    pub fn request(&self) {
        self.set(true);
    }

    /// Whether a rebalance is wanted.
    pub fn is_wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// Sets or clears the wish.
    pub fn set(&self, wanted: bool) {
        self.wanted.store(wanted, Ordering::Relaxed);
    }
}

/// The part of the configuration leader tasks use (no secrets).
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderSettings {
    /// Interval at which workers are told to heartbeat.
    pub heartbeat_interval: Duration,
    /// Silence after which a worker is unhealthy.
    pub heartbeat_timeout: Duration,
    /// Period of the health sweep.
    pub sweep_interval: Duration,
    /// Period of the reconciler.
    pub reconcile_interval: Duration,
    /// Period of the checkpoint loop (zero disables it).
    pub checkpoint_interval: Duration,
    /// Failure detector of the sweep.
    pub failure_detector: FailureDetector,
    /// Threshold of the phi detector.
    pub phi_threshold: f64,
    /// Move pipelines off Unhealthy/Dead workers.
    pub auto_failover: bool,
    /// Rebalance when a worker registers.
    pub auto_rebalance: bool,
    /// Rebalance moves per round.
    pub rebalance_max_moves: usize,
    /// Deploy calls in flight at once.
    pub deploy_concurrency: usize,
    /// MQTT broker shipped to workers for inter-pipeline routes.
    pub mqtt_url: Option<String>,
}

impl LeaderSettings {
    /// The settings of `config`.
    pub fn from_config(config: &CoordinatorConfig) -> Self {
        LeaderSettings {
            heartbeat_interval: config.heartbeat_interval,
            heartbeat_timeout: config.heartbeat_timeout,
            sweep_interval: config.sweep_interval,
            reconcile_interval: config.reconcile_interval,
            checkpoint_interval: config.checkpoint_interval,
            failure_detector: config.failure_detector,
            phi_threshold: config.phi_threshold,
            auto_failover: config.auto_failover,
            auto_rebalance: config.auto_rebalance,
            rebalance_max_moves: config.rebalance_max_moves,
            deploy_concurrency: config.deploy_concurrency,
            mqtt_url: config.mqtt_url.clone(),
        }
    }

    /// The leader policy the planners apply.
    pub fn policy(&self) -> Policy {
        Policy {
            auto_failover: self.auto_failover,
            rebalance_max_moves: self.rebalance_max_moves,
            mqtt_url: self.mqtt_url.clone(),
        }
    }

    /// The lease margin: a tenth of the heartbeat timeout, at least 100 ms. It absorbs clock
    /// rate drift between leader and worker and the worker's own lateness in noticing its
    /// lease ran out (docs/coordinator.md "Leases").
    pub fn lease_margin(&self) -> Duration {
        (self.heartbeat_timeout / 10).max(Duration::from_millis(100))
    }

    /// The lease granted with every registration and heartbeat answer: the heartbeat timeout
    /// minus the margin, so a worker fences itself before the leader may mark it unhealthy.
    pub fn lease(&self) -> Duration {
        self.heartbeat_timeout.saturating_sub(self.lease_margin())
    }

    /// The failure detector these settings select.
    pub fn detector(&self) -> Detector {
        match self.failure_detector {
            FailureDetector::Timeout => Detector::Timeout(self.heartbeat_timeout),
            FailureDetector::Phi => Detector::Phi {
                config: PhiConfig::for_interval(self.phi_threshold, self.heartbeat_interval),
                timeout: self.heartbeat_timeout,
            },
        }
    }
}

/// The handle of leader tasks (cheap to clone).
#[derive(Clone)]
pub struct LeaderCtx {
    /// Reads and writes of the replicated state.
    pub store: Store,
    /// Calls to workers.
    pub workers: WorkerClient,
    /// Last heartbeat of each worker (leader memory).
    pub liveness: Arc<Liveness>,
    /// Whether a rebalance is wanted (leader memory).
    pub rebalance: Arc<RebalanceState>,
    /// Wakes the reconciler early.
    pub reconcile: Arc<Notify>,
    /// Process counters.
    pub metrics: Arc<Metrics>,
    /// Timings and policies.
    pub settings: Arc<LeaderSettings>,
    clock: Clock,
    ids: IdSource,
    /// Groups whose rolling update a task of this node is driving.
    driving: Arc<Mutex<BTreeSet<String>>>,
    /// Bounds the deploy calls in flight (`deploy_concurrency`): a large group must not open
    /// hundreds of requests (and their bodies) at once.
    pub deploys: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for LeaderCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderCtx")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl LeaderCtx {
    /// A handle over `store` and `workers`, with the system clock and random (v4 UUID) ids.
    pub fn new(
        store: Store,
        workers: WorkerClient,
        metrics: Arc<Metrics>,
        settings: LeaderSettings,
    ) -> Self {
        LeaderCtx {
            store,
            workers,
            liveness: Arc::default(),
            rebalance: Arc::default(),
            reconcile: Arc::default(),
            metrics,
            deploys: Arc::new(tokio::sync::Semaphore::new(
                settings.deploy_concurrency.max(1),
            )),
            settings: Arc::new(settings),
            clock: Arc::new(system_now_ms),
            ids: Arc::new(|| uuid::Uuid::new_v4().to_string()),
            driving: Arc::default(),
        }
    }

    /// The same handle with another clock and id source (deterministic tests).
    pub fn with_clock_and_ids(mut self, clock: Clock, ids: IdSource) -> Self {
        self.clock = clock;
        self.ids = ids;
        self
    }

    /// Now, on the leader's clock (decisions only: it goes into commands).
    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// A new unique id.
    pub fn new_id(&self) -> String {
        (self.ids)()
    }

    /// What the planners may know beyond the replicated state (suspicions are the sweep's own).
    pub fn view(&self) -> LivenessView {
        LivenessView {
            suspected: Default::default(),
            suspicion: String::new(),
            rebalance_wanted: self.rebalance.is_wanted(),
            policy: self.settings.policy(),
        }
    }

    /// Marks the rollout of `group_id` as driven here; `false` when it already is.
    pub(crate) fn start_driving(&self, group_id: &str) -> bool {
        self.driving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group_id.to_string())
    }

    /// Whether the rollout of `group_id` is driven here.
    pub(crate) fn is_driving(&self, group_id: &str) -> bool {
        self.driving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(group_id)
    }

    /// Ends [`LeaderCtx::start_driving`].
    pub(crate) fn stop_driving(&self, group_id: &str) {
        self.driving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(group_id);
    }
}
