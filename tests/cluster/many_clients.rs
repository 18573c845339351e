//! Issue 24 item 6: 1,000 concurrent keep-alive clients through one follower and through the
//! leader, without errors or timeouts, and the proxy's bounded forwarding (docs/raft.md,
//! "Follower forwarding").

use crate::harness::{fake_worker, Api, Ensemble, Opts, ADMIN_KEY};
use std::time::{Duration, Instant};

const CLIENTS: usize = 1000;
const WRITES_PER_CLIENT: usize = 3;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(idx.min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// 1,000 clients, each with its own connection pool (so its own keep-alive connection), half
/// on the leader and half on a follower, each writing a few times: every write answers 2xx
/// within the clients' timeout, and the follower's writes are there when read back from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_keep_alive_clients_through_a_follower_and_the_leader() {
    let ens = Ensemble::start(3, 0, Opts::default()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        let node = if c % 2 == 0 { leader } else { follower };
        let url = ens.cluster_url(node, "/workers/register");
        // Each client its own pool: 1,000 connections, kept alive between its writes.
        let api = Api::new(Some(ADMIN_KEY)).with_timeout(Duration::from_secs(60));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            for n in 0..WRITES_PER_CLIENT {
                let t = Instant::now();
                match api
                    .post(&url, &fake_worker(&format!("many-c{c}-{n}")))
                    .await
                {
                    Ok(r) if r.ok() => latencies.push(t.elapsed()),
                    Ok(r) => errors.push(format!("{} {}", r.status, r.text)),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (node, latencies, errors)
        }));
    }
    let mut by_node: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut errors = Vec::new();
    for task in tasks {
        let (node, latencies, errs) = task.await.expect("client task");
        by_node[usize::from(node != leader)].extend(latencies);
        errors.extend(errs);
    }
    let elapsed = started.elapsed();
    for (name, lat) in ["leader", "follower"].into_iter().zip(by_node.iter_mut()) {
        lat.sort();
        eprintln!(
            "{CLIENTS} clients: via {name}: {} writes, p50 {:?}, p99 {:?}, max {:?}",
            lat.len(),
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            lat.last().copied().unwrap_or_default()
        );
    }
    eprintln!(
        "{CLIENTS} clients: {} writes in {elapsed:?}",
        CLIENTS * WRITES_PER_CLIENT
    );
    assert!(
        errors.is_empty(),
        "{} of {} writes failed; first: {:?}",
        errors.len(),
        CLIENTS * WRITES_PER_CLIENT,
        errors.first()
    );
    // Read-your-writes through the follower: its own writes are applied there.
    for c in [1usize, CLIENTS / 2 + 1, CLIENTS - 1] {
        let id = format!("many-c{c}-{}", WRITES_PER_CLIENT - 1);
        let r = ens
            .api
            .get(&ens.cluster_url(follower, &format!("/workers/{id}")))
            .await
            .expect("get worker");
        assert!(
            r.ok(),
            "{id} missing on the follower it was written through: {}",
            r.status
        );
    }
}
