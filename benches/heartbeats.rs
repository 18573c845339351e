//! Heartbeat benchmark: registers many simulated workers (default 10,000) with a
//! three-coordinator ensemble at the default timings (heartbeat 5 s, unhealthy after 15 s,
//! sweep 5 s), heartbeats them at the 5 s interval for a while, and reports the registration
//! time, the leader's CPU use (from `/proc/<pid>/stat`), how the sweep treats workers that go
//! silent, and the number of false `unhealthy` marks (must be zero).
//!
//! `HEARTBEAT_WORKERS` (default 10000), `HEARTBEAT_SECS` (default 40), `HEARTBEAT_SILENT`
//! (default 100: workers that never heartbeat and must be marked unhealthy).
//! Run: `cargo bench --bench heartbeats`.

#[path = "../tests/cluster/harness.rs"]
mod harness;
#[path = "common/proc_stats.rs"]
mod proc_stats;

use harness::{fake_worker, Ensemble, Opts};

/// The `api_key` every [`fake_worker`] registers with.
const WORKER_FAKE_KEY: &str = "fake";
use proc_stats::{cpu_ticks, env_usize, ticks_per_second};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts workers by status as listed by coordinator `i` (all pages).
async fn status_counts(ens: &Ensemble, i: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut offset = 0;
    loop {
        let url = ens.cluster_url(i, &format!("/workers?limit=1000&offset={offset}"));
        let Ok(r) = ens.api.get(&url).await else {
            break;
        };
        let Some(ws) = r.body["workers"].as_array() else {
            break;
        };
        for w in ws {
            *counts
                .entry(w["status"].as_str().unwrap_or("?").to_owned())
                .or_insert(0) += 1;
        }
        offset += ws.len();
        if ws.is_empty() || r.body["pagination"]["has_more"] != true {
            break;
        }
    }
    counts
}

fn main() {
    let n = env_usize("HEARTBEAT_WORKERS", 10_000);
    let secs = env_usize("HEARTBEAT_SECS", 40);
    let silent = env_usize("HEARTBEAT_SILENT", 100).min(n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let opts = Opts {
            heartbeat_interval: 5.0,
            heartbeat_timeout: 15.0,
            sweep_interval: 5.0,
            start_timeout: Duration::from_secs(60),
            // 10,000 workers plus the silent ones: over the default cap of 10,000 workers
            // (docs/security.md).
            coord_extra_args: vec!["--limit".into(), "max_workers=1000000".into()],
            ..Opts::default()
        };
        let ens = Ensemble::start(3, 0, opts).await;
        let leader = ens.wait_leader(Duration::from_secs(30)).await;
        let pid = ens.coords[leader].proc.pid().expect("leader pid");
        let api = ens.api.with_timeout(Duration::from_secs(30));
        let reg_url = Arc::new(ens.cluster_url(leader, "/workers/register"));

        // Heartbeats: every worker but the `silent` first ones, once per 5 s, spread evenly,
        // each from the moment it is registered, while the registrations go on (so no worker
        // waits 15 s for its first heartbeat when registering everyone takes longer than that).
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let early = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let hb_fail = Arc::new(AtomicU64::new(0));
        let tasks_n = 64usize;
        // How far each registration task got: task `c` registers `c, c + 64, ...` in order, the
        // same ids heartbeat task `c` serves, so `registered[c]` is the first of them not yet
        // registered. A heartbeat goes only to registered workers (a real worker does not
        // heartbeat before it registered, and a 404 spent on one that has not would take a turn
        // from a registered worker, which then looks silent).
        let registered: Arc<Vec<AtomicU64>> =
            Arc::new((0..tasks_n).map(|_| AtomicU64::new(0)).collect());
        let per_task = (n - silent).div_ceil(tasks_n).max(1);
        let period = Duration::from_secs_f64(5.0 / per_task as f64);
        let mut hb_tasks = Vec::new();
        for c in 0..tasks_n {
            // A heartbeat carries the key the worker registered with (`fake_worker`'s): since the
            // trust work a worker id is bound to its key and any other key gets 401.
            let api = api.with_key(Some(WORKER_FAKE_KEY));
            let (sent, hb_fail) = (sent.clone(), hb_fail.clone());
            let (stop, early, registered) = (stop.clone(), early.clone(), registered.clone());
            let mut base = ens.coords[leader].url.clone();
            hb_tasks.push(tokio::spawn(async move {
                let ids: Vec<usize> = (silent..n).filter(|i| i % tasks_n == c).collect();
                if ids.is_empty() {
                    return;
                }
                let mut tick = tokio::time::interval(period);
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let upto = registered[c].load(Ordering::Relaxed) as usize;
                    let eligible = ids.partition_point(|&i| i < upto);
                    if eligible == 0 {
                        continue;
                    }
                    let id = ids[k % eligible];
                    k += 1;
                    let url = format!("{base}/api/v1/cluster/workers/sim-{id:05}/heartbeat");
                    let body = json!({"events_processed": k, "pipelines_running": 0});
                    match api.post(&url, &body).await {
                        Ok(r) if r.ok() => {}
                        Ok(r) if r.status == 404 => {
                            early.fetch_add(1, Ordering::Relaxed);
                        }
                        // Leadership moved: follow it, as a worker does.
                        Ok(r) if r.status == 421 && r.body["leader_url"].is_string() => {
                            hb_fail.fetch_add(1, Ordering::Relaxed);
                            if let Some(url) = r.body["leader_url"].as_str() {
                                base = url.trim_end_matches('/').to_owned();
                            }
                        }
                        other => {
                            if hb_fail.fetch_add(1, Ordering::Relaxed) == 0 {
                                match other {
                                    Ok(r) => eprintln!("first failed heartbeat: {} {}", r.status, r.text),
                                    Err(e) => eprintln!("first failed heartbeat: {e}"),
                                }
                            }
                        }
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        // Registration, 64 at a time.
        let started = Instant::now();
        let cpu0 = cpu_ticks(pid);
        let failures = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for c in 0..64 {
            let (api, url, failures) = (api.clone(), reg_url.clone(), failures.clone());
            let registered = registered.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = c;
                while i < n {
                    match api.post(&url, &fake_worker(&format!("sim-{i:05}"))).await {
                        Ok(r) if r.ok() => {}
                        other => {
                            if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                                match other {
                                    Ok(r) => eprintln!("first failed registration: {} {}", r.status, r.text),
                                    Err(e) => eprintln!("first failed registration: {e}"),
                                }
                            }
                        }
                    }
                    i += 64;
                    registered[c].store(i as u64, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let reg_time = started.elapsed();
        let reg_cpu = (cpu_ticks(pid) - cpu0) as f64 / ticks_per_second();
        println!(
            "registered {n} workers in {reg_time:.2?} ({:.0}/s), {} failures, leader CPU {reg_cpu:.2} s",
            n as f64 / reg_time.as_secs_f64(),
            failures.load(Ordering::Relaxed)
        );

        let hb_started = Instant::now();
        let cpu1 = cpu_ticks(pid);
        let deadline = hb_started + Duration::from_secs(secs as u64);
        // Sample the sweep's view while heartbeats flow.
        // `sim-00000` is the first worker registered (at `started`) and a silent one: poll it
        // every 500 ms to see when the sweep marks it; take full counts every 5 s.
        let mut silent_marked_at = None;
        let mut max_false = 0usize;
        let mut polls = 0u64;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            polls += 1;
            if silent > 0 && silent_marked_at.is_none() {
                let status = ens.worker_status(leader, "sim-00000").await.unwrap_or_default();
                if status != "ready" && !status.is_empty() {
                    silent_marked_at = Some(started.elapsed());
                }
            }
            if polls == 10 {
                polls = 0;
                let counts = status_counts(&ens, leader).await;
                let ready = counts.get("ready").copied().unwrap_or(0);
                let unhealthy = counts.values().sum::<usize>() - ready;
                max_false = max_false.max(unhealthy.saturating_sub(silent));
                println!("  t={:>3.0?} statuses {counts:?}", hb_started.elapsed());
            }
        }
        stop.store(true, Ordering::Relaxed);
        for t in hb_tasks {
            t.await.expect("task");
        }
        let hb_time = hb_started.elapsed().as_secs_f64();
        let hb_cpu = (cpu_ticks(pid) - cpu1) as f64 / ticks_per_second();
        let counts = status_counts(&ens, leader).await;
        let ready = counts.get("ready").copied().unwrap_or(0);
        let unhealthy = counts.values().sum::<usize>() - ready;
        let false_marks = unhealthy.saturating_sub(silent).max(max_false);
        println!(
            "heartbeats: {} sent in {hb_time:.0} s ({:.0}/s), {} failed, {} before their registration; leader CPU {:.1}% of one core",
            sent.load(Ordering::Relaxed),
            sent.load(Ordering::Relaxed) as f64 / hb_time,
            hb_fail.load(Ordering::Relaxed),
            early.load(Ordering::Relaxed),
            100.0 * hb_cpu / hb_time
        );
        match silent_marked_at {
            Some(t) => println!("sweep: the first silent worker was marked unhealthy {t:.1?} after its registration (bound: 15 s timeout + 5 s sweep)"),
            None => println!("sweep: the first silent worker was NOT marked unhealthy during the run"),
        }
        println!("false unhealthy marks among heartbeating workers: {false_marks} (must be 0); final statuses {counts:?}");
        // The leader's own account of its sweeps (GET /metrics, Prometheus text).
        let metrics = ens
            .api
            .get(&format!("{}/metrics", ens.coords[leader].url))
            .await
            .map(|r| r.text)
            .unwrap_or_default();
        let sample = |name: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(name) && !l.starts_with('#'))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        };
        match (
            sample("varpulis_coordinator_sweeps_total"),
            sample("varpulis_coordinator_sweep_last_seconds"),
            sample("varpulis_coordinator_sweep_max_seconds"),
        ) {
            (Some(n), Some(last), Some(max)) => println!(
                "sweep duration on the leader: last {:.2} ms, max {:.2} ms over {n} sweeps",
                last * 1e3,
                max * 1e3
            ),
            _ => println!("sweep duration: not exported by this build"),
        }
    });
}
