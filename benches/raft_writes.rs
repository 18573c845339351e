//! Raft write benchmark: committed writes per second and latency through the leader and
//! through a follower (proxied), with 1, 16 and 64 concurrent clients, on a three-coordinator
//! ensemble on loopback. A write is a worker registration with a distinct id.
//!
//! `RAFT_WRITES_SECS` (default 5) sets the duration of each measurement. `RAFT_HEARTBEAT_MS`,
//! `RAFT_ELECTION_MIN_MS` and `RAFT_ELECTION_MAX_MS` override the product's Raft timings.
//! Run: `cargo bench --bench raft_writes`.

#[path = "../tests/cluster/harness.rs"]
mod harness;

use harness::{fake_worker, Api, Ensemble, Opts};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs `clients` concurrent writers against `url` for `secs`; returns (latencies, errors).
async fn measure(
    api: &Api,
    url: &str,
    tag: &str,
    clients: usize,
    secs: f64,
) -> (Vec<Duration>, usize) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let url = Arc::new(url.to_owned());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (api, url, tag) = (api.clone(), url.clone(), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let body = fake_worker(&format!("{tag}-c{c}-{n}"));
                n += 1;
                let t = Instant::now();
                match api.post(&url, &body).await {
                    Ok(r) if r.ok() => lat.push(t.elapsed()),
                    Ok(r) => {
                        if errors == 0 {
                            eprintln!("  first error of client {c}: {} {}", r.status, r.text);
                        }
                        errors += 1;
                    }
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("  first error of client {c}: {e}");
                        }
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("client task");
        all.extend(lat);
        errors += e;
    }
    all.sort();
    (all, errors)
}

fn main() {
    let secs: f64 = std::env::var("RAFT_WRITES_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let opts = Opts {
            heartbeat_timeout: 3600.0,
            raft_heartbeat_ms: env_u64("RAFT_HEARTBEAT_MS"),
            raft_election_min_ms: env_u64("RAFT_ELECTION_MIN_MS"),
            raft_election_max_ms: env_u64("RAFT_ELECTION_MAX_MS"),
            start_timeout: Duration::from_secs(60),
            // Every write registers a new worker id: lift the default cap of 10,000 workers
            // (docs/security.md) so the bench measures the log, not the limit.
            coord_extra_args: vec!["--limit".into(), "max_workers=100000000".into()],
            ..Opts::default()
        };
        let ens = Ensemble::start(3, 0, opts).await;
        let leader = ens.wait_leader(Duration::from_secs(30)).await;
        let follower = ens.others(leader)[0];
        let api = ens.api.with_timeout(Duration::from_secs(10));
        println!(
            "raft_writes: worker registrations, {secs} s per cell, 3 coordinators on loopback"
        );
        println!(
            "{:<10} {:>8} {:>10} {:>10} {:>10} {:>8}",
            "via", "clients", "writes/s", "p50", "p99", "errors"
        );
        for (via_name, via) in [("leader", leader), ("follower", follower)] {
            let url = ens.cluster_url(via, "/workers/register");
            for clients in [1usize, 16, 64] {
                let tag = format!("{via_name}-{clients}");
                let started = Instant::now();
                let (lat, errors) = measure(&api, &url, &tag, clients, secs).await;
                let rate = lat.len() as f64 / started.elapsed().as_secs_f64();
                println!(
                    "{:<10} {:>8} {:>10.0} {:>10.2?} {:>10.2?} {:>8}",
                    via_name,
                    clients,
                    rate,
                    percentile(&lat, 0.50),
                    percentile(&lat, 0.99),
                    errors
                );
            }
        }
        println!("(target: >= 5,000 writes/s at 64 clients)");
    });
}
