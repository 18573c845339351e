//! Prints figures for a 3-node in-process group over loopback HTTP with real sled fsyncs:
//! sequential write latency, concurrent write throughput (group commit), and the time from a
//! leader shutdown to the first write acknowledged by its successor.
//!
//! `cargo run -p varpulis-raft --example raft_bench [--release]`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use varpulis_cluster::Command;
use varpulis_raft::{RaftConfig, RaftNode, WriteError};

struct Running {
    node: RaftNode,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn leader_of(nodes: &[&RaftNode]) -> RaftNode {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(n) = nodes.iter().find(|n| n.is_leader()) {
            return (*n).clone();
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `BENCH_LOG=info` (a tracing filter) prints the nodes' logs.
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
    let root = tempfile::tempdir()?;
    let mut listeners = BTreeMap::new();
    let mut peers = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        peers.insert(id, format!("http://{}", l.local_addr()?));
        listeners.insert(id, l);
    }
    let mut running = BTreeMap::new();
    for (id, l) in listeners {
        let cfg = RaftConfig::new(id, root.path().join(format!("n{id}")), peers.clone());
        let node = RaftNode::start(cfg).await?;
        let app = varpulis_raft::router(node.clone());
        let (stop, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        running.insert(id, Running { node, stop, server });
    }
    let all: Vec<&RaftNode> = running.values().map(|r| &r.node).collect();
    let leader = leader_of(&all).await;

    // Sequential: one write in flight, each waits for fsync on a majority.
    let n = 300;
    let mut lat = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        leader.write(Command::Noop).await?;
        lat.push(t.elapsed());
    }
    let seq = t0.elapsed();
    lat.sort();
    println!(
        "sequential: {n} writes in {:?} = {:.0} writes/s, p50 {:?}, p99 {:?}",
        seq,
        n as f64 / seq.as_secs_f64(),
        lat[n / 2],
        lat[n * 99 / 100]
    );

    // Concurrent: many writers share each append + fsync.
    for writers in [16usize, 64] {
        let per = 50;
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        let leader = Arc::new(leader.clone());
        for _ in 0..writers {
            let l = leader.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..per {
                    l.write(Command::Noop).await?;
                }
                Ok::<(), WriteError>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let el = t0.elapsed();
        let total = writers * per;
        println!(
            "concurrent ({writers} writers): {total} writes in {el:?} = {:.0} writes/s",
            total as f64 / el.as_secs_f64()
        );
    }

    // Failover: stop the leader, time until the successor acknowledges a write.
    let old = leader.id();
    let r = running
        .remove(&old)
        .ok_or_else(|| anyhow::anyhow!("leader missing"))?;
    let t0 = Instant::now();
    r.node.shutdown().await?;
    let _ = r.stop.send(());
    drop(r.server);
    let rest: Vec<&RaftNode> = running.values().map(|r| &r.node).collect();
    let new_leader = leader_of(&rest).await;
    let elected = t0.elapsed();
    loop {
        match new_leader.write(Command::Noop).await {
            Ok(_) => break,
            Err(WriteError::ForwardToLeader { .. } | WriteError::NoLeader) => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "failover: leader {old} stopped, node {} elected after {elected:?}, first write acked after {:?}",
        new_leader.id(),
        t0.elapsed()
    );
    for (_, r) in running {
        r.node.shutdown().await?;
        let _ = r.stop.send(());
    }
    Ok(())
}
