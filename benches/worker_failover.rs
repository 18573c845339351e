//! Worker failover benchmark (issue 6): one coordinator, two workers, a stateful counter
//! pipeline. Each round kills the worker running it with SIGKILL and measures the time until an
//! event injected through the coordinator is processed on the other worker (polled every
//! 20 ms), with the count continuing from the checkpoint. The killed worker is restarted before
//! the next round. Prints p50 / p99 / max per timing profile:
//!
//! - `tight`: heartbeat 1 s, unhealthy after 3 s, sweep 1 s (target p50 < 5 s);
//! - `phi`: the same with `--failure-detector phi` (threshold 8);
//! - `default`: the spec's 5 s / 15 s / sweep 5 s.
//!
//! `WORKER_FAILOVER_ROUNDS` (default 10) sets rounds per profile (the default profile runs a
//! third of them, at least 2); `WORKER_FAILOVER_PROFILES` (default `tight,phi,default`) picks
//! profiles. Run: `cargo bench --bench worker_failover` (timings are dominated by heartbeats,
//! not CPU: `cargo bench --profile dev --bench worker_failover` gives the same figures).

#[path = "../tests/cluster/harness.rs"]
mod harness;

use harness::{Ensemble, Opts};
use serde_json::json;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

const COUNTER: &str = "var count = 0\nfn bump(v: int):\n    count := count + 1\n    \
                       emit Count(n: count, v: v)\nstream Counted = Tick .process(bump(value))\n";

/// Injects one Tick; `(count, worker)` when a worker processed it.
async fn inject(ens: &Ensemble, gid: &str, v: i64) -> Option<(i64, String)> {
    let url = ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject"));
    let api = ens.api.with_timeout(Duration::from_secs(2));
    let r = api
        .post(&url, &json!({"event_type": "Tick", "fields": {"value": v}}))
        .await
        .ok()?;
    if r.status != 200 {
        return None;
    }
    let n = r.body["worker_response"]["output_events"][0]["fields"]["n"].as_i64()?;
    Some((n, r.body["worker_id"].as_str()?.to_owned()))
}

async fn wait_ready(ens: &Ensemble, id: &str) {
    let ids = vec![id.to_owned()];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ens.workers_in_status(&ids, "ready").await {
        assert!(Instant::now() < deadline, "{id} never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn profile(name: &str, opts: Opts, rounds: usize) {
    let mut ens = Ensemble::start(1, 2, opts).await;
    let spec = json!({
        "name": "bench",
        "pipelines": [{"name": "count", "source": COUNTER, "worker_affinity": "worker-0"}],
        "routes": [{"from_pipeline": "_external", "to_pipeline": "count", "event_types": ["Tick"]}]
    });
    let r = ens
        .api
        .post(&ens.cluster_url(0, "/pipeline-groups"), &spec)
        .await
        .expect("create");
    assert_eq!(r.status, 201, "{}", r.text);
    let gid = r.body["id"].as_str().expect("id").to_owned();
    let mut samples = Vec::new();
    let mut v = 0;
    for round in 0..rounds {
        // Some state, then wait until the worker pushed a checkpoint of it.
        let mut host = None;
        let mut last = 0;
        for _ in 0..20 {
            v += 1;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some((n, w)) = inject(&ens, &gid, v).await {
                    last = n;
                    host = Some(w);
                    break;
                }
                assert!(Instant::now() < deadline, "pipeline not answering");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let host = host.expect("host");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let victim = ens.worker_index(&host);
        let started = Instant::now();
        ens.workers[victim].proc.kill();
        let (n, took) = loop {
            v += 1;
            if let Some((n, w)) = inject(&ens, &gid, v).await {
                if w != host {
                    break (n, started.elapsed());
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no failover 120 s after the kill"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(n, last + 1, "count did not continue from the checkpoint");
        println!("{name} round {round:>2}: killed {host}, events processed elsewhere after {took:?} (count {n})");
        samples.push(took);
        ens.workers[victim].proc.restart();
        wait_ready(&ens, &host).await;
    }
    samples.sort();
    println!(
        "{name}: {} rounds, SIGKILL of the worker -> its pipeline processing on another worker: \
         p50 {:?}   p99 {:?}   max {:?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

fn main() {
    let rounds: usize = std::env::var("WORKER_FAILOVER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    let profiles =
        std::env::var("WORKER_FAILOVER_PROFILES").unwrap_or_else(|_| "tight,phi,default".into());
    let push = vec!["--checkpoint-interval".to_owned(), "0.5".to_owned()];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        for p in profiles.split(',').map(str::trim) {
            let tight = Opts {
                worker_extra_args: push.clone(),
                start_timeout: Duration::from_secs(60),
                ..Opts::default()
            };
            match p {
                "tight" => profile("tight (1 s / 3 s)", tight, rounds).await,
                "phi" => {
                    let opts = Opts {
                        coord_extra_args: vec!["--failure-detector".into(), "phi".into()],
                        ..tight
                    };
                    profile("phi (1 s heartbeats, threshold 8)", opts, rounds).await
                }
                "default" => {
                    let opts = Opts {
                        heartbeat_interval: 5.0,
                        heartbeat_timeout: 15.0,
                        sweep_interval: 5.0,
                        ..tight
                    };
                    profile("default (5 s / 15 s)", opts, (rounds / 3).max(2)).await
                }
                other => eprintln!("unknown profile {other} (tight, phi, default)"),
            }
        }
    });
}
