//! Figures for the state machine's hot paths (prints; no assertions).
//!
//! `cargo bench -p varpulis-cluster --bench apply`

use std::hint::black_box;
use std::time::Instant;
use varpulis_api::cluster::{PipelineGroupSpec, PipelineSpec};
use varpulis_cluster::placement::plan_group;
use varpulis_cluster::{ClusterState, Command, RegisterWorker};

fn reg(i: usize) -> Command {
    Command::RegisterWorker(RegisterWorker {
        worker_id: format!("worker-{i:05}"),
        address: format!("http://10.0.{}.{}:9000", i / 256, i % 256),
        api_key: "key".into(),
        cpu_cores: 8,
        max_pipelines: 100,
        labels: Default::default(),
        now_ms: 1,
        takeover: None,
    })
}

fn spec(i: usize) -> PipelineGroupSpec {
    PipelineGroupSpec {
        name: format!("group-{i}"),
        pipelines: (0..4)
            .map(|p| PipelineSpec {
                name: format!("p{p}"),
                source: "stream A = X .emit(v: 1)".into(),
                worker_affinity: None,
                replicas: None,
                labels: Default::default(),
            })
            .collect(),
        routes: vec![],
        placement: None,
    }
}

/// A connector create as the `raft_writes` bench sends it (distinct names sharing a long prefix).
fn connector(i: usize) -> Command {
    let params = serde_json::json!({"host": "localhost", "port": 1883});
    Command::CreateConnector {
        spec: varpulis_api::cluster::ConnectorSpec {
            name: format!("bench_connector_c{i:03}_{i:08}"),
            connector_type: "mqtt".into(),
            params: params.as_object().cloned().unwrap_or_default(),
            description: None,
        },
    }
}

/// Connector creates by reference (`apply`, copies the spec) and by value (`apply_owned`,
/// moves it: the replicated apply loop's path), alternated in rounds; each round starts from
/// an empty state and applies `n` distinct creates. Building the commands is not timed.
fn connector_saves(n: usize) {
    for round in 0..2 {
        let cmds: Vec<Command> = (0..n).map(connector).collect();
        let mut s = ClusterState::default();
        let t = Instant::now();
        for c in &cmds {
            black_box(s.apply(c));
        }
        per_op(
            &format!("connector create by reference (round {round})"),
            n,
            t,
        );
        drop(s);
        let mut s = ClusterState::default();
        let t = Instant::now();
        for c in cmds {
            black_box(s.apply_owned(c));
        }
        per_op(&format!("connector create by value (round {round})"), n, t);
    }
}

fn per_op(label: &str, n: usize, start: Instant) {
    let el = start.elapsed();
    println!(
        "{label:<44} {n:>6} ops  {:>9.3} ms total  {:>8.2} us/op",
        el.as_secs_f64() * 1e3,
        el.as_secs_f64() * 1e6 / n as f64
    );
}

fn main() {
    const N: usize = 10_000;
    connector_saves(100_000);
    let cmds: Vec<Command> = (0..N).map(reg).collect();

    let mut s = ClusterState::default();
    let t = Instant::now();
    for c in &cmds {
        black_box(s.apply(c));
    }
    per_op("register one by one", N, t);

    let batch = Command::batch(cmds.clone());
    let mut b = ClusterState::default();
    let t = Instant::now();
    black_box(b.apply(&batch));
    per_op("register as one Batch", N, t);

    let t = Instant::now();
    for c in &cmds {
        black_box(s.apply(c));
    }
    per_op("re-register known workers", N, t);

    let t = Instant::now();
    let wire: Vec<Vec<u8>> = cmds
        .iter()
        .map(|c| serde_json::to_vec(c).unwrap_or_default())
        .collect();
    let decoded: Vec<Command> = wire
        .iter()
        .filter_map(|w| serde_json::from_slice(w).ok())
        .collect();
    per_op("encode+decode a registration (JSON)", decoded.len(), t);

    const G: usize = 200;
    let t = Instant::now();
    for i in 0..G {
        let sp = spec(i);
        if let Ok(plan) = plan_group(&s, &sp) {
            black_box(s.apply(&plan.to_command(&format!("g{i}"), &sp, 1)));
        }
    }
    per_op("plan + create a 4-pipeline group (10k workers)", G, t);

    let t = Instant::now();
    let hash = s.state_hash();
    per_op("state_hash (10k workers, 200 groups)", 1, t);
    let bytes = serde_json::to_vec(&s).map(|v| v.len()).unwrap_or(0);
    println!(
        "state size: {} KiB as JSON, hash {}",
        bytes / 1024,
        &hash[..16]
    );

    let t = Instant::now();
    let restored: Option<ClusterState> = serde_json::to_vec(&s)
        .ok()
        .and_then(|v| serde_json::from_slice(&v).ok());
    per_op("snapshot round trip (serialize + deserialize)", 1, t);
    println!(
        "restored hash equal: {}",
        restored.map(|r| r.state_hash() == hash).unwrap_or(false)
    );
}
