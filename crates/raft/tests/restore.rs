//! Backup and restore in one process: a snapshot taken from a running 3-node group under writes
//! is restored into three fresh data dirs of a *new* group (other addresses), which elects a
//! leader, reports the snapshot's state hash, and keeps accepting writes.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use varpulis_api::cluster::ConnectorSpec;
use varpulis_cluster::Command;
use varpulis_raft::restore::{restore_data_dir, RestoreError};
use varpulis_raft::snapshot_file;
use varpulis_raft::{RaftConfig, RaftNode};

const WAIT: Duration = Duration::from_secs(30);

fn connector(name: &str) -> Command {
    Command::CreateConnector {
        spec: ConnectorSpec {
            name: name.into(),
            connector_type: "mqtt".into(),
            params: serde_json::Map::from_iter([("host".to_string(), "localhost".into())]),
            description: None,
        },
    }
}

/// Starts one node per id of `peers` (data in `root/node<id>`), serving on the listeners.
async fn group(
    root: &Path,
    listeners: BTreeMap<u64, TcpListener>,
    peers: &BTreeMap<u64, String>,
) -> Vec<RaftNode> {
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        let mut cfg = RaftConfig::new(id, root.join(format!("node{id}")), peers.clone());
        // Compact often, so the source group's log no longer starts at 1.
        cfg.snapshot_logs_since_last = 20;
        cfg.max_in_snapshot_log_to_keep = 5;
        let node = RaftNode::start(cfg).await.unwrap();
        let app = varpulis_raft::router(node.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        nodes.push(node);
    }
    nodes
}

async fn listeners(n: u64) -> (BTreeMap<u64, TcpListener>, BTreeMap<u64, String>) {
    let mut ls = BTreeMap::new();
    let mut peers = BTreeMap::new();
    for id in 1..=n {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, format!("http://{}", l.local_addr().unwrap()));
        ls.insert(id, l);
    }
    (ls, peers)
}

async fn leader_of(nodes: &[RaftNode]) -> RaftNode {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(n) = nodes.iter().find(|n| n.is_leader()) {
            return n.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `cmd` through whichever node leads, retrying while leadership settles (a first
/// election can be followed by a second one at start-up).
async fn write_ok(nodes: &[RaftNode], cmd: Command) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leader = leader_of(nodes).await;
        match leader.write(cmd.clone()).await {
            Ok(resp) => {
                assert!(resp.is_ok(), "{resp:?}");
                return;
            }
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "write failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_under_writes_restores_into_a_new_group_with_its_exact_state() {
    let root = tempfile::tempdir().unwrap();
    let (ls, peers) = listeners(3).await;
    let source = group(&root.path().join("old"), ls, &peers).await;
    for i in 0..60 {
        write_ok(&source, connector(&format!("c{i}"))).await;
    }
    let leader = leader_of(&source).await;
    // Writes keep committing while the snapshot is taken.
    let writer = {
        let leader = leader.clone();
        tokio::spawn(async move {
            for i in 60..120 {
                let _ = leader.write(connector(&format!("c{i}"))).await;
            }
        })
    };
    leader.ensure_linearizable().await.unwrap();
    let (captured_at, bytes) = leader.capture_snapshot().await.unwrap();
    writer.await.unwrap();
    let file = snapshot_file::decode(&bytes).unwrap();
    let index = file.header.applied_index.unwrap();
    assert_eq!(captured_at, Some(index));
    assert!(index >= 60, "{index}");
    assert_eq!(file.header.cluster_id, leader.cluster_id());
    assert!(file.header.counts.connectors >= 60);
    assert!(
        leader.metrics_view().snapshot_index.is_some(),
        "source compacted"
    );
    // The source moved on: its state is no longer the snapshot's.
    assert_ne!(leader.metrics_view().state_hash, file.header.state_hash);

    // Restore into three dirs for a new group at other addresses.
    let (ls, new_peers) = listeners(3).await;
    let new_root = root.path().join("new");
    let mut ids = BTreeSet::new();
    for id in 1..=3u64 {
        let r = restore_data_dir(
            &file,
            &new_root.join(format!("node{id}")),
            id,
            &new_peers,
            false,
        )
        .unwrap();
        assert_eq!(r.applied_index, index);
        ids.insert(r.cluster_id);
        // The state is in its own (synced) data file, byte for byte the backup's, not in sled.
        let files: Vec<_> = std::fs::read_dir(new_root.join(format!("node{id}/raft/snapshots")))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(std::fs::read(&files[0]).unwrap(), file.data);
    }
    assert_eq!(
        ids.len(),
        1,
        "every node of the new cluster has the same id"
    );
    // An existing dir is not overwritten without force.
    let again = restore_data_dir(&file, &new_root.join("node1"), 1, &new_peers, false);
    assert!(matches!(again, Err(RestoreError::NotEmpty(_))), "{again:?}");
    restore_data_dir(&file, &new_root.join("node1"), 1, &new_peers, true).unwrap();
    assert!(restore_data_dir(&file, &new_root.join("x"), 4, &new_peers, false).is_err());

    let restored = group(&new_root, ls, &new_peers).await;
    leader_of(&restored).await;
    for n in &restored {
        assert!(n.cluster_id() != leader.cluster_id());
        let view = n.metrics_view();
        assert!(view.last_applied >= Some(index), "{view:?}");
        // Only the new leader's blank entry follows the restored index: same state.
        assert_eq!(view.state_hash, file.header.state_hash, "node {}", n.id());
        assert_eq!(view.membership, vec![1, 2, 3]);
        assert_eq!(
            n.read(|s| s.connectors().count()),
            file.header.counts.connectors
        );
    }
    // The new group commits writes and converges.
    write_ok(&restored, connector("after")).await;
    let target = leader_of(&restored).await.metrics_view().last_applied;
    for n in &restored {
        n.raft()
            .wait(Some(WAIT))
            .applied_index_at_least(target, "catch up")
            .await
            .unwrap();
        assert!(n.read(|s| s.connectors().any(|c| c.name == "after")));
    }
    for n in source.iter().chain(&restored) {
        n.shutdown().await.unwrap();
    }
}
