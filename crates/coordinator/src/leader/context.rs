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
    /// Heartbeats per second asked of all workers together (0: no cap), see [`Self::grant`].
    pub max_heartbeats_per_second: f64,
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
            max_heartbeats_per_second: config.max_heartbeats_per_second,
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

    /// The lease margin of the configured timeout ([`lease_margin_of`]).
    pub fn lease_margin(&self) -> Duration {
        lease_margin_of(self.heartbeat_timeout)
    }

    /// The lease of the configured timeout ([`lease_of`]), granted while the number of
    /// workers keeps the configured interval ([`Self::grant`]).
    pub fn lease(&self) -> Duration {
        lease_of(self.heartbeat_timeout)
    }

    /// What the leader grants with an answer when `workers` are registered: the configured
    /// interval and timeout while `workers / max_heartbeats_per_second` is no longer than the
    /// interval; beyond, the interval becomes `workers / max_heartbeats_per_second` and the
    /// timeout grows in the same ratio (a worker may still miss the same number of
    /// heartbeats), so the leader's heartbeat load stays at the cap however many workers
    /// register (Nomad's `max_heartbeats_per_second`). Deterministic in `workers`: every
    /// coordinator computes the same grant from the replicated worker count.
    pub fn grant(&self, workers: usize) -> Grant {
        let base = Grant {
            interval: self.heartbeat_interval,
            timeout: self.heartbeat_timeout,
        };
        if self.max_heartbeats_per_second <= 0.0 || self.heartbeat_interval.is_zero() {
            return base;
        }
        let needed = Duration::from_secs_f64(workers as f64 / self.max_heartbeats_per_second);
        if needed <= self.heartbeat_interval {
            return base;
        }
        let ratio = needed.as_secs_f64() / self.heartbeat_interval.as_secs_f64();
        Grant {
            interval: needed,
            timeout: self.heartbeat_timeout.mul_f64(ratio),
        }
    }
    /// [`Self::grant`], and whether it was scaled up from the configured interval.
    pub fn grant_scaled(&self, workers: usize) -> (Grant, bool) {
        let grant = self.grant(workers);
        let scaled = grant.interval > self.heartbeat_interval;
        (grant, scaled)
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

/// The lease margin of `timeout`: a tenth of it, at least 100 ms. It absorbs clock rate drift
/// between leader and worker and the worker's own lateness in noticing its lease ran out
/// (docs/coordinator.md "Leases").
pub fn lease_margin_of(timeout: Duration) -> Duration {
    (timeout / 10).max(Duration::from_millis(100))
}

/// The lease granted with a heartbeat timeout of `timeout`: the timeout minus the margin, so
/// a worker fences itself before the leader may mark it unhealthy.
pub fn lease_of(timeout: Duration) -> Duration {
    timeout.saturating_sub(lease_margin_of(timeout))
}

/// The heartbeat interval and timeout the leader grants with an answer
/// ([`LeaderSettings::grant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// When the worker should heartbeat next (before jitter).
    pub interval: Duration,
    /// How long it may stay silent before the sweep marks it unhealthy.
    pub timeout: Duration,
}

impl Grant {
    /// The lease granted with it ([`lease_of`]).
    pub fn lease(&self) -> Duration {
        lease_of(self.timeout)
    }

    /// The interval handed to a worker: the grant's interval, minus up to 10 % when it was
    /// scaled up (`scaled`), drawn from `seed`, so heartbeats of workers that registered in
    /// one burst spread out over the interval instead of arriving in waves (Nomad jitters its
    /// heartbeat TTLs likewise). Never longer than the interval the timeout was scaled for.
    pub fn jittered_interval(&self, scaled: bool, seed: u64) -> Duration {
        if !scaled {
            return self.interval;
        }
        let tenth = self.interval / 10;
        let nanos = u64::try_from(tenth.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.interval - Duration::from_nanos(splitmix(seed) % nanos)
    }
}

/// A SplitMix64 step: a well-mixed 64-bit value from `seed` (jitter, not cryptography).
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: f64) -> LeaderSettings {
        let config = CoordinatorConfig {
            max_heartbeats_per_second: rate,
            ..CoordinatorConfig::default()
        };
        LeaderSettings::from_config(&config)
    }

    #[test]
    fn small_clusters_keep_the_configured_interval_and_timeout() {
        let s = settings(5000.0);
        let base = Grant {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
        };
        for workers in [0, 1, 3, 1000, 10_000, 25_000] {
            assert_eq!(s.grant_scaled(workers), (base, false), "{workers} workers");
        }
        assert_eq!(base.lease(), Duration::from_millis(13_500));
        // No cap: never scaled.
        assert_eq!(settings(0.0).grant_scaled(1_000_000), (base, false));
    }

    #[test]
    fn large_clusters_heartbeat_at_the_capped_rate_with_a_proportional_timeout() {
        let s = settings(5000.0);
        let (g, scaled) = s.grant_scaled(100_000);
        assert!(scaled);
        assert_eq!(g.interval, Duration::from_secs(20));
        assert_eq!(g.timeout, Duration::from_secs(60));
        assert_eq!(g.lease(), Duration::from_secs(54));
        // The rate the leader sees stays at the cap.
        let rate = 100_000.0 / g.interval.as_secs_f64();
        assert!((rate - 5000.0).abs() < 1e-6);
        let (g, _) = s.grant_scaled(30_000);
        assert_eq!(g.interval, Duration::from_secs(6));
        assert_eq!(g.timeout, Duration::from_secs(18));
        // Monotone in the worker count.
        let mut last = Duration::ZERO;
        for workers in (0..200_000).step_by(997) {
            let g = s.grant(workers);
            assert!(g.timeout >= last);
            assert!(g.timeout >= g.interval * 3 - Duration::from_millis(1));
            last = g.timeout;
        }
    }

    #[test]
    fn jitter_only_shortens_a_scaled_interval_by_at_most_a_tenth() {
        let s = settings(5000.0);
        let (g, scaled) = s.grant_scaled(100_000);
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..10_000u64 {
            let i = g.jittered_interval(scaled, seed);
            assert!(
                i <= g.interval && i >= g.interval - g.interval / 10,
                "{i:?}"
            );
            seen.insert(i.as_millis() / 100);
        }
        assert!(seen.len() > 15, "spread over the tenth: {seen:?}");
        let (small, scaled) = s.grant_scaled(10);
        assert_eq!(
            small.jittered_interval(scaled, 12345),
            Duration::from_secs(5)
        );
    }
}
