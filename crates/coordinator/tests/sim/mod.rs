//! A deterministic leader harness: the coordinator's real leader code (planners, executor,
//! reconciler, sweep, drain, rebalance, rolling updates, registration and heartbeats) over an
//! in-memory replicated log ([`raft::SimRaft`]) and fake workers ([`workers::FakeWorkers`])
//! behind the real `WorkerClient`, on paused tokio time. Ids and faults come from a seed, so a
//! run is reproducible: the same seed gives the same calls and the same final state.

#![allow(dead_code, clippy::unwrap_used)]

pub mod raft;
pub mod workers;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use varpulis_api::cluster::{HeartbeatRequest, PipelineGroupSpec, RegisterWorkerRequest};
use varpulis_cluster::placement::plan_group;
use varpulis_cluster::plan::deploy::pending_deploys;
use varpulis_cluster::{ClusterState, PlacementStatus};
use varpulis_coordinator::leader::backoff::Backoff;
use varpulis_coordinator::leader::context::{LeaderCtx, LeaderSettings};
use varpulis_coordinator::leader::store::Store;
use varpulis_coordinator::leader::{checkpoint, executor, reconciler, sweep};
use varpulis_coordinator::metrics::Metrics;
use varpulis_coordinator::transport::worker_client::{WorkerClient, WorkerClientConfig};
use varpulis_coordinator::CoordinatorConfig;

use raft::SimRaft;
use workers::FakeWorkers;

/// Heartbeat interval of the simulated workers.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// One simulated cluster.
pub struct Sim {
    /// The replicated log.
    pub raft: Arc<SimRaft>,
    /// The workers.
    pub workers: Arc<FakeWorkers>,
    /// Each coordinator node's leader handle.
    pub nodes: Vec<LeaderCtx>,
    /// Each node's reconciler backoff.
    backoff: Vec<Mutex<Backoff>>,
}

impl Sim {
    /// `nodes` coordinators (node 0 leads), no workers; faults and ids from `seed`.
    pub fn new(nodes: usize, seed: u64) -> Sim {
        let raft = SimRaft::new(nodes);
        let workers = Arc::new(FakeWorkers::new(seed));
        let config = CoordinatorConfig {
            heartbeat_interval: HEARTBEAT,
            heartbeat_timeout: Duration::from_secs(3),
            sweep_interval: Duration::from_secs(1),
            reconcile_interval: Duration::from_secs(1),
            rebalance_max_moves: 1,
            ..CoordinatorConfig::default()
        };
        let start = tokio::time::Instant::now();
        let nodes = (0..nodes)
            .map(|id| {
                let metrics = Arc::new(Metrics::default());
                let store = Store::new(raft.node(id), metrics.clone());
                let client = WorkerClient::with_transport(
                    workers.clone(),
                    WorkerClientConfig::from_config(&config, None),
                );
                let next = Arc::new(AtomicU64::new(0));
                LeaderCtx::new(store, client, metrics, LeaderSettings::from_config(&config))
                    .with_clock_and_ids(
                        Arc::new(move || 1_700_000_000_000 + start.elapsed().as_millis() as u64),
                        Arc::new(move || format!("n{id}-{}", next.fetch_add(1, Ordering::Relaxed))),
                    )
            })
            .collect::<Vec<_>>();
        let backoff = nodes
            .iter()
            .map(|_| Mutex::new(Backoff::default()))
            .collect();
        Sim {
            raft,
            workers,
            nodes,
            backoff,
        }
    }

    /// The leading node's handle.
    pub fn leader(&self) -> &LeaderCtx {
        &self.nodes[self.raft.leader()]
    }

    /// Reads the leader's state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.leader().store.read(f)
    }

    /// Starts worker `id` and registers it.
    pub async fn add_worker(&self, id: &str) {
        self.workers.start(id);
        let req = RegisterWorkerRequest {
            worker_id: id.to_string(),
            address: format!("http://{id}:9000"),
            api_key: format!("key-{id}"),
            capacity: Default::default(),
            labels: Default::default(),
            running_pipelines: Vec::new(),
        };
        let caller = varpulis_coordinator::workers::Caller::default();
        varpulis_coordinator::workers::register(self.leader(), req, None, &caller, None)
            .await
            .unwrap();
    }

    /// Every live worker heartbeats to the leader.
    pub async fn heartbeats(&self) {
        let ids: Vec<String> = self.read(|s| s.workers().map(|w| w.id.clone()).collect());
        for id in ids.iter().filter(|id| self.workers.alive(id)) {
            varpulis_coordinator::workers::heartbeat(
                self.leader(),
                id,
                HeartbeatRequest::default(),
                Some(&format!("key-{id}")),
            )
            .await
            .unwrap();
        }
    }

    /// Creates a group the way the create handler does: plan, commit, deploy, record.
    pub async fn create_group(&self, spec: PipelineGroupSpec) -> String {
        let ctx = self.leader();
        let id = ctx.new_id();
        let plan = ctx.store.read(|s| plan_group(s, &spec)).unwrap();
        ctx.store
            .write(plan.to_command(&id, &spec, ctx.now_ms()))
            .await
            .unwrap();
        let jobs = ctx.store.read(|s| pending_deploys(s, &id, None));
        for job in &jobs {
            executor::deploy_and_record(ctx, job).await;
        }
        id
    }

    /// One leader tick: time moves by a heartbeat interval, live workers heartbeat, the
    /// leader sweeps, checkpoints and reconciles.
    pub async fn tick(&self) {
        tokio::time::advance(HEARTBEAT).await;
        self.heartbeats().await;
        let leader = self.raft.leader();
        let ctx = &self.nodes[leader];
        sweep::sweep_once(ctx).await;
        checkpoint::checkpoint_once(ctx).await;
        let mut backoff = self.backoff[leader].lock().await;
        reconciler::reconcile_once(ctx, &mut backoff).await;
    }

    /// Ticks until `done` holds on the leader's state (at most `ticks` times).
    pub async fn run_until(&self, ticks: usize, done: impl Fn(&ClusterState) -> bool) -> bool {
        for _ in 0..ticks {
            if self.read(&done) {
                return true;
            }
            self.tick().await;
        }
        self.read(&done)
    }

    /// Every replica holds the same state.
    pub fn assert_replicas_agree(&self) {
        let hashes = self.raft.hashes();
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    }
}

/// A group spec: pipelines `names`, one replica each.
pub fn spec(name: &str, names: &[&str]) -> PipelineGroupSpec {
    let pipelines: Vec<serde_json::Value> = names
        .iter()
        .map(|n| serde_json::json!({"name": n, "source": format!("stream {n} = X .emit(v: 1)")}))
        .collect();
    serde_json::from_value(serde_json::json!({"name": name, "pipelines": pipelines})).unwrap()
}

/// Whether every placement of every group runs.
pub fn all_running(s: &ClusterState) -> bool {
    s.groups().iter().all(|g| {
        g.placements
            .iter()
            .all(|p| p.status == PlacementStatus::Running)
    })
}
