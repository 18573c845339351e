//! Multi-node Raft groups in one process: each node is an axum server on a loopback port, the
//! nodes talk over real HTTP. Waits use openraft's `wait()` or metrics polling, never bare sleeps.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use varpulis_cluster::Command;
use varpulis_raft::{RaftConfig, RaftNode, WriteError};

const WAIT: Duration = Duration::from_secs(30);

struct TestNode {
    node: RaftNode,
    id: u64,
    url: String,
    dir: PathBuf,
    stop_tx: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

async fn bind_any() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

async fn bind_url(url: &str) -> TcpListener {
    let addr = url.trim_start_matches("http://").to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match TcpListener::bind(&addr).await {
            Ok(l) => return l,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("rebind {addr}: {e}, retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot rebind {addr}: {e}"),
        }
    }
}

/// Starts node `id` serving on `listener`; retries while a previous instance still holds sled.
async fn start(id: u64, listener: TcpListener, cfg: RaftConfig) -> TestNode {
    let deadline = tokio::time::Instant::now() + WAIT;
    let node = loop {
        match RaftNode::start(cfg.clone()).await {
            Ok(n) => break n,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("start node {id}: {e}, retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("node {id} did not start: {e}"),
        }
    };
    let app = varpulis_raft::router(node.clone());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
    });
    TestNode {
        url: cfg.peers[&id].clone(),
        node,
        id,
        dir: cfg.data_dir.clone(),
        stop_tx: Some(stop_tx),
        server: Some(server),
    }
}

impl TestNode {
    async fn stop(mut self) -> (u64, String, PathBuf) {
        self.node.shutdown().await.unwrap();
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(WAIT, server)
                .await
                .expect("server stops")
                .unwrap();
        }
        (self.id, self.url, self.dir)
    }
}

fn config(id: u64, dir: &Path, peers: &BTreeMap<u64, String>) -> RaftConfig {
    RaftConfig::new(id, dir.join(format!("node{id}")), peers.clone())
}

/// Binds `n` listeners first, then starts the nodes in the given order.
async fn cluster(
    root: &Path,
    order: &[u64],
    tweak: impl Fn(&mut RaftConfig),
) -> (Vec<TestNode>, BTreeMap<u64, String>) {
    let mut listeners = BTreeMap::new();
    let mut peers = BTreeMap::new();
    for id in 1..=order.len() as u64 {
        let (l, url) = bind_any().await;
        listeners.insert(id, l);
        peers.insert(id, url);
    }
    let mut nodes = Vec::new();
    for id in order {
        let mut cfg = config(*id, root, &peers);
        tweak(&mut cfg);
        let l = listeners.remove(id).unwrap();
        nodes.push(start(*id, l, cfg).await);
    }
    nodes.sort_by_key(|n| n.id);
    (nodes, peers)
}

/// Waits until every node reports the same leader and that leader says it leads.
async fn agreed_leader(nodes: &[&TestNode]) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leaders: BTreeSet<Option<u64>> =
            nodes.iter().map(|n| n.node.leader().map(|l| l.0)).collect();
        if let [Some(id)] = leaders.iter().copied().collect::<Vec<_>>()[..] {
            if nodes.iter().any(|n| n.id == id && n.node.is_leader()) {
                return id;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed leader: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn by_id(nodes: &[TestNode], id: u64) -> &TestNode {
    nodes.iter().find(|n| n.id == id).unwrap()
}

async fn write_n(node: &RaftNode, n: usize) {
    for _ in 0..n {
        node.write(Command::Noop).await.unwrap();
    }
}

/// Waits until every node applied the leader's last applied index, then checks the hashes.
async fn assert_converged(nodes: &[&TestNode], leader: &RaftNode) {
    let target = leader.metrics_view().last_applied;
    for n in nodes {
        n.node
            .raft()
            .wait(Some(WAIT))
            .applied_index_at_least(target, "catch up")
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let views: Vec<_> = nodes.iter().map(|n| n.node.metrics_view()).collect();
        let applied: BTreeSet<_> = views.iter().map(|v| v.last_applied).collect();
        let hashes: BTreeSet<_> = views.iter().map(|v| v.state_hash.clone()).collect();
        if applied.len() == 1 && hashes.len() == 1 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not converged: {applied:?} {hashes:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_forward_fail_over_and_recover() {
    let root = tempfile::tempdir().unwrap();
    // Started in reverse order: whichever comes first, they form one group by themselves.
    let (mut nodes, peers) = cluster(root.path(), &[3, 1, 2], |_| {}).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let leader_id = agreed_leader(&refs).await;
    let leader = by_id(&nodes, leader_id).node.clone();
    assert_eq!(leader.metrics_view().membership, vec![1, 2, 3]);

    write_n(&leader, 20).await;
    assert_converged(&refs, &leader).await;
    let hash_before = leader.metrics_view().state_hash;

    // A write to a follower names the leader and its URL.
    let follower = nodes.iter().find(|n| n.id != leader_id).unwrap();
    match follower.node.write(Command::Noop).await {
        Err(WriteError::ForwardToLeader {
            leader_id: Some(id),
            leader_url: Some(url),
        }) => {
            assert_eq!(id, leader_id);
            assert_eq!(url, peers[&leader_id]);
        }
        other => panic!("expected ForwardToLeader, got {other:?}"),
    }
    assert!(matches!(
        follower.node.ensure_linearizable().await,
        Err(WriteError::ForwardToLeader { .. })
    ));
    leader.ensure_linearizable().await.unwrap();
    assert_eq!(leader.read(|s| s.state_hash()), hash_before);

    // Shut the leader down: the two others elect a new one and writes continue.
    let pos = nodes.iter().position(|n| n.id == leader_id).unwrap();
    // Every handle must be gone before the same sled dir can be opened again in this process.
    drop(leader);
    let (old_id, old_url, old_dir) = nodes.remove(pos).stop().await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let new_leader_id = agreed_leader(&refs).await;
    assert_ne!(new_leader_id, old_id);
    let new_leader = by_id(&nodes, new_leader_id).node.clone();
    write_n(&new_leader, 10).await;
    assert_converged(&refs, &new_leader).await;

    // Restart the old leader on the same dir and port: it recovers its state and rejoins.
    let listener = bind_url(&old_url).await;
    let cfg = RaftConfig::new(old_id, old_dir, peers.clone());
    let restarted = start(old_id, listener, cfg).await;
    // Recovered from its own disk before hearing from anyone: at least the 20 first writes.
    restarted
        .node
        .raft()
        .wait(Some(WAIT))
        .applied_index_at_least(Some(20), "local replay")
        .await
        .unwrap();
    nodes.push(restarted);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    write_n(&new_leader, 5).await;
    assert_converged(&refs, &new_leader).await;
    assert_eq!(agreed_leader(&refs).await, new_leader_id);

    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wiped_node_catches_up_via_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, peers) = cluster(root.path(), &[1, 2, 3], |c| {
        c.snapshot_logs_since_last = 10;
        c.max_in_snapshot_log_to_keep = 0;
    })
    .await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let leader_id = agreed_leader(&refs).await;
    let leader = by_id(&nodes, leader_id).node.clone();

    // Stop a follower and wipe its data dir.
    let victim_id = nodes.iter().find(|n| n.id != leader_id).unwrap().id;
    let pos = nodes.iter().position(|n| n.id == victim_id).unwrap();
    let (_, victim_url, victim_dir) = nodes.remove(pos).stop().await;
    std::fs::remove_dir_all(&victim_dir).unwrap();

    // Enough writes for several snapshots; the leader purges its log behind them.
    write_n(&leader, 45).await;
    leader.raft().trigger().snapshot().await.unwrap();
    let m = leader
        .raft()
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some(), "log purged")
        .await
        .unwrap();
    let purged = m.purged.unwrap().index;
    assert!(purged > 0);

    let listener = bind_url(&victim_url).await;
    let mut cfg = RaftConfig::new(victim_id, victim_dir, peers.clone());
    cfg.snapshot_logs_since_last = 10;
    cfg.max_in_snapshot_log_to_keep = 0;
    let back = start(victim_id, listener, cfg).await;
    nodes.push(back);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert_converged(&refs, &leader).await;
    let view = by_id(&nodes, victim_id).node.metrics_view();
    // The purged entries can only have come from a snapshot.
    assert!(view.snapshot_index.unwrap_or(0) >= purged, "{view:?}");

    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_group_leads_itself_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    let (l, url) = bind_any().await;
    let cfg = RaftConfig::single(1, root.path().join("n1"), url.clone());
    let node = start(1, l, cfg.clone()).await;
    assert_eq!(agreed_leader(&[&node]).await, 1);
    let mut events = node.node.subscribe_applied();
    let mut applied = node.node.applied_index_watch();
    write_n(&node.node, 7).await;
    // Every applied command is announced once, in log order, and the index watch follows.
    let mut last = 0;
    for _ in 0..7 {
        match events.recv().await.unwrap() {
            varpulis_raft::AppliedEvent::Command(c) => {
                assert!(c.index > last, "{} after {last}", c.index);
                assert!(
                    c.events.is_empty(),
                    "a noop changes nothing: {:?}",
                    c.events
                );
                assert!(c.response.is_ok());
                last = c.index;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(*applied.borrow_and_update(), Some(last));
    let before = node.node.metrics_view();
    assert_ne!(
        before.state_hash,
        varpulis_cluster::ClusterState::default().state_hash()
    );
    node.stop().await;

    let node = start(1, bind_url(&url).await, cfg).await;
    assert_eq!(agreed_leader(&[&node]).await, 1);
    node.node
        .raft()
        .wait(Some(WAIT))
        .applied_index_at_least(before.last_applied, "replayed")
        .await
        .unwrap();
    // Only a blank leader entry was added since: the state is the one from before the restart.
    assert_eq!(node.node.metrics_view().state_hash, before.state_hash);
    write_n(&node.node, 1).await;
    assert_ne!(node.node.metrics_view().state_hash, before.state_hash);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_key_guards_raft_routes_and_learner_joins() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, _peers) = cluster(root.path(), &[1, 2, 3], |c| {
        c.api_key = Some("s3cret".into());
    })
    .await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let leader_id = agreed_leader(&refs).await;
    let leader = by_id(&nodes, leader_id);
    write_n(&leader.node, 3).await;

    let http = reqwest::Client::new();
    // Metrics are open.
    let m: varpulis_api::raft::RaftMetricsView = http
        .get(format!("{}/raft/metrics", leader.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m.state, "Leader");
    assert_eq!(m.membership, vec![1, 2, 3]);
    // RPC and admin routes need the key.
    for path in [
        "/raft/vote",
        "/raft/append",
        "/raft/snapshot",
        "/raft/add-learner",
    ] {
        let r = http
            .post(format!("{}{path}", leader.url))
            .header("x-api-key", "wrong")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body: varpulis_api::ErrorBody = r.json().await.unwrap();
        assert_eq!(body.code, "unauthorized");
    }

    // A fourth node joins as a learner, then becomes a voter.
    let (l4, url4) = bind_any().await;
    let mut cfg4 = RaftConfig::single(4, root.path().join("node4"), url4.clone());
    cfg4.api_key = Some("s3cret".into());
    cfg4.auto_initialize = false;
    let n4 = start(4, l4, cfg4).await;

    // Admin calls on a follower answer 421 with the leader's URL.
    let follower = nodes.iter().find(|n| n.id != leader_id).unwrap();
    let r = http
        .post(format!("{}/raft/add-learner", follower.url))
        .header("x-api-key", "s3cret")
        .json(&varpulis_api::raft::AddLearnerRequest {
            node_id: 4,
            address: url4.clone(),
            force: false,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let body: varpulis_api::ErrorBody = r.json().await.unwrap();
    assert_eq!(body.code, "not_leader");
    assert_eq!(body.leader_url.as_deref(), Some(leader.url.as_str()));

    let r = http
        .post(format!("{}/raft/add-learner", leader.url))
        .header("x-api-key", "s3cret")
        .json(&varpulis_api::raft::AddLearnerRequest {
            node_id: 4,
            address: url4.clone(),
            force: false,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = http
        .post(format!("{}/raft/change-membership", leader.url))
        .header("x-api-key", "s3cret")
        .json(&varpulis_api::raft::ChangeMembershipRequest {
            members: vec![1, 2, 3, 4],
            force: false,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let m: varpulis_api::raft::RaftMetricsView = r.json().await.unwrap();
    assert_eq!(m.membership, vec![1, 2, 3, 4]);
    assert_eq!(m.nodes.get(&4), Some(&url4));

    let mut all = nodes;
    all.push(n4);
    let refs: Vec<&TestNode> = all.iter().collect();
    let leader_node = by_id(&all, leader_id).node.clone();
    write_n(&leader_node, 2).await;
    assert_converged(&refs, &leader_node).await;
    for n in all {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_without_quorum_refuses_writes() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, _peers) = cluster(root.path(), &[1, 2, 3], |c| {
        c.write_timeout_ms = 1500;
    })
    .await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let leader_id = agreed_leader(&refs).await;
    let leader = by_id(&nodes, leader_id).node.clone();
    write_n(&leader, 3).await;
    let committed = leader.metrics_view().last_applied;

    // Lose both followers: the old leader is a minority of one.
    let followers: Vec<u64> = nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != leader_id)
        .collect();
    for id in followers {
        let pos = nodes.iter().position(|n| n.id == id).unwrap();
        nodes.remove(pos).stop().await;
    }
    let res = leader.write(Command::Noop).await;
    assert!(
        matches!(res, Err(WriteError::Timeout | WriteError::NoLeader)),
        "{res:?}"
    );
    assert!(leader.ensure_linearizable().await.is_err());
    // Nothing uncommitted was applied.
    assert_eq!(leader.metrics_view().last_applied, committed);
    drop(leader);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_log_entries_and_get_their_own_answers() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, _) = cluster(root.path(), &[1, 2, 3], |_| {}).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let leader_id = agreed_leader(&refs).await;
    let leader = by_id(&nodes, leader_id).node.clone();
    let before = leader.metrics_view().last_log_index.unwrap_or(0);

    let writers = 64;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let node = leader.clone();
        tasks.push(tokio::spawn(async move {
            let cmd = Command::RegisterWorker(varpulis_cluster::RegisterWorker {
                worker_id: format!("w{i}"),
                address: format!("http://127.0.0.1:{}", 20000 + i),
                api_key: "k".into(),
                cpu_cores: 1,
                max_pipelines: 1,
                labels: BTreeMap::new(),
                now_ms: 1,
                takeover: None,
            });
            // Every other write carries an idempotency key: keyed commands batch too.
            let cmd = if i % 2 == 0 {
                cmd.with_key(format!("key-{i}"))
            } else {
                cmd
            };
            (i, node.write(cmd).await.unwrap())
        }));
    }
    for t in tasks {
        let (i, resp) = t.await.unwrap();
        match resp.into_result().unwrap() {
            varpulis_cluster::Outcome::WorkerRegistered {
                worker_id, created, ..
            } => {
                assert_eq!(worker_id, format!("w{i}"));
                assert!(created);
            }
            other => panic!("write {i} got {other:?}"),
        }
    }
    // A caller's own batch is proposed as is (batches do not nest) and answered whole.
    let own = leader
        .write(Command::batch(vec![Command::Noop, Command::Noop]))
        .await
        .unwrap();
    assert!(matches!(
        own.into_result().unwrap(),
        varpulis_cluster::Outcome::Batch(items) if items.len() == 2
    ));
    let after = leader.metrics_view().last_log_index.unwrap_or(0);
    assert!(
        after - before < writers as u64,
        "{writers} concurrent writes took {} log entries: nothing was batched",
        after - before
    );
    assert_eq!(leader.read(|s| s.worker_count()), writers as usize);
    assert_converged(&refs, &leader).await;
    for n in nodes {
        n.stop().await;
    }
}

/// A connector whose params weigh about `kb` KiB in the log.
fn heavy_connector(name: &str, kb: usize) -> Command {
    let mut params = serde_json::Map::new();
    params.insert("host".into(), "localhost".into());
    for i in 0..kb.div_ceil(10) {
        params.insert(format!("p{i}"), "x".repeat(10 * 1024).into());
    }
    Command::CreateConnector {
        spec: varpulis_api::cluster::ConnectorSpec {
            name: name.into(),
            connector_type: "mqtt".into(),
            params,
            description: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peer_secret_guards_peer_rpcs_but_not_admin_calls() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, _peers) = cluster(root.path(), &[1, 2, 3], |c| {
        c.api_key = Some("s3cret".into());
        c.peer_secret = Some("peer-s3cret".into());
    })
    .await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let leader_id = agreed_leader(&refs).await;
    let leader = by_id(&nodes, leader_id).node.clone();
    // The group replicates with the secret on its own traffic.
    write_n(&leader, 5).await;
    assert_converged(&refs, &leader).await;

    let http = reqwest::Client::new();
    let follower = nodes.iter().find(|n| n.id != leader_id).unwrap();
    let vote = serde_json::json!({
        "vote": {"leader_id": {"term": 1, "node_id": 42}, "committed": false},
        "last_log_id": null
    });
    for (header, value, status) in [
        ("x-api-key", "s3cret", 401),
        ("x-varpulis-peer-secret", "wrong", 401),
        // Past authentication, refused by the guard (node 42 is not a member).
        ("x-varpulis-peer-secret", "peer-s3cret", 403),
    ] {
        let r = http
            .post(format!("{}/raft/vote", follower.url))
            .header(header, value)
            .json(&vote)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{header}: {value}");
    }
    // Admin calls take the API key, not the peer secret.
    let change = varpulis_api::raft::ChangeMembershipRequest {
        members: vec![1, 2, 3],
        force: false,
    };
    let leader_url = &by_id(&nodes, leader_id).url;
    let r = http
        .post(format!("{leader_url}/raft/change-membership"))
        .header("x-varpulis-peer-secret", "peer-s3cret")
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(format!("{leader_url}/raft/change-membership"))
        .header("x-api-key", "s3cret")
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    drop(leader);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_writes_travel_in_byte_bounded_entries_and_chunked_snapshots() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap())
            .try_init();
    }
    let root = tempfile::tempdir().unwrap();
    let tweak = |c: &mut RaftConfig| {
        c.max_append_bytes = 64 * 1024;
        c.snapshot_chunk_bytes = 16 * 1024;
        c.snapshot_logs_since_last = 20;
        c.max_in_snapshot_log_to_keep = 0;
    };
    let (mut nodes, peers) = cluster(root.path(), &[1, 2, 3], tweak).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let leader_id = agreed_leader(&refs).await;
    let leader = by_id(&nodes, leader_id).node.clone();

    // A follower goes away; it will need a snapshot of a state of about 2 MB.
    let victim_id = nodes.iter().find(|n| n.id != leader_id).unwrap().id;
    let pos = nodes.iter().position(|n| n.id == victim_id).unwrap();
    let (_, victim_url, victim_dir) = nodes.remove(pos).stop().await;
    std::fs::remove_dir_all(&victim_dir).unwrap();

    // 40 concurrent writes of about 50 KiB: a batch never exceeds the 64 KiB budget, so each
    // takes its own entry (unbounded batching would have merged them into a few).
    let before = leader.metrics_view().last_log_index.unwrap_or(0);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let node = leader.clone();
        tasks.push(tokio::spawn(async move {
            node.write(heavy_connector(&format!("c{i}"), 50))
                .await
                .unwrap()
                .into_result()
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = leader.metrics_view().last_log_index.unwrap_or(0);
    assert!(
        after - before >= 40,
        "{} entries for 40 writes",
        after - before
    );
    leader.raft().trigger().snapshot().await.unwrap();
    leader
        .raft()
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some_and(|p| p.index > before), "log purged")
        .await
        .unwrap();

    // The wiped follower gets the 2 MB snapshot in 16 KiB chunks, then the log.
    let listener = bind_url(&victim_url).await;
    let mut cfg = RaftConfig::new(victim_id, victim_dir, peers.clone());
    tweak(&mut cfg);
    nodes.push(start(victim_id, listener, cfg).await);
    write_n(&leader, 3).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert_converged(&refs, &leader).await;
    assert_eq!(
        by_id(&nodes, victim_id)
            .node
            .read(|s| s.connectors().count()),
        40
    );
    drop(leader);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_over_the_limits_are_answered_without_being_proposed() {
    let root = tempfile::tempdir().unwrap();
    let (l, url) = bind_any().await;
    let mut cfg = RaftConfig::single(1, root.path().join("n1"), url);
    cfg.limits.max_connectors = 2;
    let node = start(1, l, cfg).await;
    agreed_leader(&[&node]).await;
    write_n(&node.node, 1).await;
    let before = node.node.metrics_view().last_log_index;

    let mut labels = BTreeMap::new();
    labels.insert("blob".to_string(), "x".repeat(9 * 1024 * 1024));
    let big = Command::RegisterWorker(varpulis_cluster::RegisterWorker {
        worker_id: "big".into(),
        address: "http://127.0.0.1:1".into(),
        api_key: "k".into(),
        cpu_cores: 1,
        max_pipelines: 1,
        labels,
        now_ms: 1,
        takeover: None,
    });
    let err = node
        .node
        .write(big)
        .await
        .unwrap()
        .into_result()
        .unwrap_err();
    assert_eq!(
        (err.code().as_str(), err.http_status()),
        ("limit_exceeded", 413)
    );
    for i in 0..2 {
        node.node
            .write(heavy_connector(&format!("c{i}"), 1))
            .await
            .unwrap()
            .into_result()
            .unwrap();
    }
    let err = node
        .node
        .write(heavy_connector("c2", 1).with_key("k"))
        .await
        .unwrap()
        .into_result()
        .unwrap_err();
    assert_eq!(
        (err.code().as_str(), err.http_status()),
        ("limit_exceeded", 400)
    );
    // Two connectors were written; nothing else entered the log.
    let after = node.node.metrics_view().last_log_index;
    assert_eq!(after.map(|a| a - before.unwrap_or(0)), Some(2));
    node.stop().await;
}

/// Peer RPC wire format 2 in a rolling upgrade (issue 24 item 5): node 3 behaves as a binary
/// older than format 2 (`max_wire_format = 1`: JSON only, version 2 refused and never
/// advertised). The ensemble commits under a new-binary leader, which talks binary to the other
/// new node and JSON to the old one, and under the old node as leader; all converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_ensemble_with_a_json_only_node_keeps_committing() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, _) = cluster(root.path(), &[1, 2, 3], |cfg| {
        if cfg.node_id == 3 {
            cfg.max_wire_format = 1;
        }
    })
    .await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let mut leader_id = agreed_leader(&refs).await;
    if leader_id == 3 {
        by_id(&nodes, 3)
            .node
            .transfer_leader(Some(1))
            .await
            .unwrap();
        leader_id = agreed_leader(&refs).await;
    }
    let leader = &by_id(&nodes, leader_id).node;
    write_n(leader, 20).await;
    assert_converged(&refs, leader).await;
    let other_new = if leader_id == 1 { 2 } else { 1 };
    assert_eq!(leader.wire_format_to(other_new), 2, "new nodes talk binary");
    assert_eq!(leader.wire_format_to(3), 1, "the old node gets JSON");

    // The old node leads: JSON to everyone, and the new nodes read it.
    leader.transfer_leader(Some(3)).await.unwrap();
    assert_eq!(agreed_leader(&refs).await, 3);
    let old = &by_id(&nodes, 3).node;
    write_n(old, 20).await;
    assert_converged(&refs, old).await;
    assert_eq!(old.wire_format_to(1), 1);
    assert_eq!(old.wire_format_to(2), 1);

    // And back to a new node, whose concurrent writes travel in batch entries.
    old.transfer_leader(Some(2)).await.unwrap();
    assert_eq!(agreed_leader(&refs).await, 2);
    let new = by_id(&nodes, 2).node.clone();
    let writes: Vec<_> = (0..40)
        .map(|_| {
            let n = new.clone();
            tokio::spawn(async move { n.write(Command::Noop).await })
        })
        .collect();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    assert_converged(&refs, &new).await;
    assert_eq!(new.wire_format_to(1), 2);
    assert_eq!(new.wire_format_to(3), 1);
    for n in nodes {
        n.stop().await;
    }
}

/// A voter asked to campaign for a hand-over (`POST /raft/elect`) waits briefly for its own log
/// to show what the outgoing leader saw it acknowledge (openraft answers an AppendEntries before
/// it publishes the new last index), and still refuses when its log stays shorter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_voter_asked_to_campaign_waits_for_its_log_and_refuses_a_shorter_one() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, _) = cluster(root.path(), &[1, 2, 3], |_| {}).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let leader_id = agreed_leader(&refs).await;
    let leader = by_id(&nodes, leader_id).node.clone();
    write_n(&leader, 5).await;
    assert_converged(&refs, &leader).await;
    let voter_id = if leader_id == 1 { 2 } else { 1 };
    let voter = by_id(&nodes, voter_id).node.clone();
    let view = leader.metrics_view();
    let last = view.last_log_index.unwrap();
    let asked = |last_log_index| varpulis_api::raft::ElectRequest {
        from: leader_id,
        term: view.current_term,
        last_log_index,
    };

    // A log that never gets there: refused after the bounded wait.
    let started = std::time::Instant::now();
    let err = voter
        .campaign_for_transfer(&asked(last + 1000))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("would lose the election"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!voter.is_leader());

    // The next entry, written while the voter waits: it campaigns once its log holds it.
    let campaign = tokio::spawn({
        let voter = voter.clone();
        let req = asked(last + 1);
        async move { voter.campaign_for_transfer(&req).await }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!campaign.is_finished(), "the voter waits for the entry");
    leader.write(Command::Noop).await.unwrap();
    campaign.await.unwrap().unwrap();
    for n in nodes {
        n.stop().await;
    }
}
