//! Heartbeat benchmark: registers many simulated workers (default 10,000) with a
//! three-coordinator ensemble at the default timings (heartbeat 5 s, unhealthy after 15 s,
//! sweep 5 s, at most 5,000 heartbeats/s: past 25,000 workers the coordinators ask for a longer
//! interval), heartbeats each at the interval its last answer asked for (as a worker does), and
//! reports the registration time, the leader's CPU use (from `/proc/<pid>/stat`), how the sweep
//! treats workers that go silent, and the number of false `unhealthy` marks (must be zero).
//!
//! `HEARTBEAT_WORKERS` (default 10000), `HEARTBEAT_SECS` (default 40), `HEARTBEAT_SILENT`
//! (default 100: workers that never heartbeat and must be marked unhealthy),
//! `HEARTBEAT_REG_CLIENTS` (default 256: registrations in flight, workers starting together),
//! `HEARTBEAT_MAX_RATE` (the coordinators' `--max-heartbeats-per-second`, default theirs).
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
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Worker counts by status from the leader's `GET /health` (cheap: no listing).
async fn health_counts(ens: &Ensemble, i: usize) -> Option<(u64, u64, u64)> {
    let r = ens
        .api
        .get(&format!("{}/health", ens.coords[i].url))
        .await
        .ok()?;
    let w = &r.body["workers"];
    Some((
        w["total"].as_u64()?,
        w["ready"].as_u64()?,
        w["unhealthy"].as_u64()?,
    ))
}

/// The current Raft term as coordinator `i` sees it.
async fn raft_term(ens: &Ensemble, i: usize) -> Option<u64> {
    let r = ens
        .api
        .get(&format!("{}/raft/metrics", ens.coords[i].url))
        .await
        .ok()?;
    r.body["current_term"].as_u64()
}

/// Each heartbeat task's schedule: (when due, worker index), earliest first.
type Schedule = Mutex<BinaryHeap<Reverse<(Instant, usize)>>>;

/// Milliseconds from an answer's `heartbeat_interval_ms`, else the 5 s default.
fn asked_interval(body: &serde_json::Value) -> Duration {
    Duration::from_millis(body["heartbeat_interval_ms"].as_u64().unwrap_or(5000))
}

fn main() {
    let n = env_usize("HEARTBEAT_WORKERS", 10_000);
    let secs = env_usize("HEARTBEAT_SECS", 40);
    let silent = env_usize("HEARTBEAT_SILENT", 100).min(n);
    let reg_clients = env_usize("HEARTBEAT_REG_CLIENTS", 256).max(1);
    let max_rate = std::env::var("HEARTBEAT_MAX_RATE").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut coord_extra_args: Vec<String> =
            // Over the default cap of 10,000 workers (docs/security.md).
            vec!["--limit".into(), "max_workers=1000000".into()];
        if let Some(rate) = &max_rate {
            coord_extra_args.extend(["--max-heartbeats-per-second".into(), rate.clone()]);
        }
        let opts = Opts {
            heartbeat_interval: 5.0,
            heartbeat_timeout: 15.0,
            sweep_interval: 5.0,
            start_timeout: Duration::from_secs(60),
            coord_extra_args,
            ..Opts::default()
        };
        let ens = Ensemble::start(3, 0, opts).await;
        let leader = ens.wait_leader(Duration::from_secs(30)).await;
        let pid = ens.coords[leader].proc.pid().expect("leader pid");
        let api = ens.api.with_timeout(Duration::from_secs(30));
        let reg_url = Arc::new(ens.cluster_url(leader, "/workers/register"));

        // Heartbeats: every worker but the `silent` first ones, from the moment it is
        // registered, each at the interval its last answer asked for. 64 tasks share the
        // workers (worker `i` belongs to task `i % 64`); each keeps its workers in a schedule
        // ordered by due time and records how late it sends (a client that falls behind would
        // make workers look silent: its lateness is printed).
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let hb_fail = Arc::new(AtomicU64::new(0));
        let max_late_ms = Arc::new(AtomicU64::new(0));
        let max_interval_ms = Arc::new(AtomicU64::new(0));
        let tasks_n = 64usize;
        let schedules: Arc<Vec<Schedule>> =
            Arc::new((0..tasks_n).map(|_| Mutex::new(BinaryHeap::new())).collect());
        let mut hb_tasks = Vec::new();
        for c in 0..tasks_n {
            // A heartbeat carries the key the worker registered with (`fake_worker`'s): since the
            // trust work a worker id is bound to its key and any other key gets 401.
            let api = api.with_key(Some(WORKER_FAKE_KEY));
            let (sent, hb_fail, stop) = (sent.clone(), hb_fail.clone(), stop.clone());
            let (max_late_ms, max_interval_ms) = (max_late_ms.clone(), max_interval_ms.clone());
            let schedules = schedules.clone();
            let mut base = ens.coords[leader].url.clone();
            hb_tasks.push(tokio::spawn(async move {
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    // `Ok(worker)` due now, or `Err(how long to wait)`.
                    let next = {
                        let mut q = schedules[c].lock().unwrap_or_else(|p| p.into_inner());
                        match q.peek() {
                            Some(Reverse((due, _))) if *due <= now => {
                                q.pop().map(|Reverse(item)| item).ok_or(Duration::ZERO)
                            }
                            Some(Reverse((due, _))) => {
                                Err((*due - now).min(Duration::from_millis(50)))
                            }
                            None => Err(Duration::from_millis(50)),
                        }
                    };
                    let (due, id) = match next {
                        Ok(item) => item,
                        Err(wait) => {
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    };
                    let late = now.saturating_duration_since(due).as_millis() as u64;
                    max_late_ms.fetch_max(late, Ordering::Relaxed);
                    k += 1;
                    let url = format!("{base}/api/v1/cluster/workers/sim-{id:05}/heartbeat");
                    let body = json!({"events_processed": k, "pipelines_running": 0});
                    // A failed heartbeat is retried after a second, as a worker's next tick.
                    let mut again = Duration::from_secs(1);
                    match api.post(&url, &body).await {
                        Ok(r) if r.ok() => {
                            again = asked_interval(&r.body);
                            max_interval_ms.fetch_max(again.as_millis() as u64, Ordering::Relaxed);
                        }
                        // Leadership moved: follow it, as a worker does.
                        Ok(r) if r.status == 421 && r.body["leader_url"].is_string() => {
                            hb_fail.fetch_add(1, Ordering::Relaxed);
                            if let Some(url) = r.body["leader_url"].as_str() {
                                base = url.trim_end_matches('/').to_owned();
                            }
                            again = Duration::ZERO;
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
                    schedules[c]
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Reverse((Instant::now() + again, id)));
                }
            }));
        }
        // False marks are watched for the whole run (registration included): the leader's
        // counts every second, non-ready workers beyond the silent ones.
        let term0 = raft_term(&ens, leader).await;
        let max_false = Arc::new(AtomicU64::new(0));
        let monitor = {
            let (stop, max_false) = (stop.clone(), max_false.clone());
            let (api, url) = (ens.api.clone(), format!("{}/health", ens.coords[leader].url));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    if let Ok(r) = api.get(&url).await {
                        let w = &r.body["workers"];
                        if let (Some(total), Some(ready)) = (w["total"].as_u64(), w["ready"].as_u64()) {
                            let extra = (total - ready).saturating_sub(silent as u64);
                            max_false.fetch_max(extra, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        // Registration, `reg_clients` at a time; a registered worker joins its heartbeat
        // task's schedule at the interval the answer asked for.
        let started = Instant::now();
        let cpu0 = cpu_ticks(pid);
        let failures = Arc::new(AtomicU64::new(0));
        let next_id = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..reg_clients {
            let (api, url, failures) = (api.clone(), reg_url.clone(), failures.clone());
            let (next_id, schedules) = (next_id.clone(), schedules.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next_id.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= n {
                        break;
                    }
                    match api.post(&url, &fake_worker(&format!("sim-{i:05}"))).await {
                        Ok(r) if r.ok() => {
                            if i >= silent {
                                schedules[i % tasks_n]
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(Reverse((Instant::now() + asked_interval(&r.body), i)));
                            }
                        }
                        other => {
                            if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                                match other {
                                    Ok(r) => eprintln!("first failed registration: {} {}", r.status, r.text),
                                    Err(e) => eprintln!("first failed registration: {e}"),
                                }
                            }
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let reg_time = started.elapsed();
        let reg_cpu = (cpu_ticks(pid) - cpu0) as f64 / ticks_per_second();
        println!(
            "registered {n} workers in {reg_time:.2?} ({:.0}/s, {reg_clients} in flight), {} failures, leader CPU {reg_cpu:.2} s",
            n as f64 / reg_time.as_secs_f64(),
            failures.load(Ordering::Relaxed)
        );

        let hb_started = Instant::now();
        let sent0 = sent.load(Ordering::Relaxed);
        let cpu1 = cpu_ticks(pid);
        let deadline = hb_started + Duration::from_secs(secs as u64);
        // Watch the leader's counts every second while heartbeats flow; poll `sim-00000` (the
        // first worker registered, a silent one) to see when the sweep marks it.
        let mut silent_marked_at = None;
        let mut ticks = 0u64;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            ticks += 1;
            if silent > 0 && silent_marked_at.is_none() {
                let status = ens.worker_status(leader, "sim-00000").await.unwrap_or_default();
                if status != "ready" && !status.is_empty() {
                    silent_marked_at = Some(started.elapsed());
                }
            }
            if let Some((total, ready, _)) = health_counts(&ens, leader).await {
                let not_ready = total - ready;
                if ticks.is_multiple_of(5) {
                    println!(
                        "  t={:>3.0?} total {total} ready {ready} not ready {not_ready}",
                        hb_started.elapsed()
                    );
                }
            }
        }
        // Final counts while the heartbeats still flow (a full listing of 100,000 workers after
        // they stopped would outlast the deadlines of the earliest ones and count them).
        let final_counts = health_counts(&ens, leader).await;
        stop.store(true, Ordering::Relaxed);
        for t in hb_tasks {
            t.await.expect("task");
        }
        monitor.await.expect("monitor");
        let max_false = max_false.load(Ordering::Relaxed);
        let hb_time = hb_started.elapsed().as_secs_f64();
        let hb_cpu = (cpu_ticks(pid) - cpu1) as f64 / ticks_per_second();
        let (total, ready, unhealthy) = final_counts.unwrap_or_default();
        let false_marks = ((total - ready).saturating_sub(silent as u64)).max(max_false);
        let hb_sent = sent.load(Ordering::Relaxed) - sent0;
        println!(
            "heartbeats: {hb_sent} sent in {hb_time:.0} s ({:.0}/s) after registration, {} failed in the whole run; interval asked up to {} ms; client lateness max {} ms; leader CPU {:.1}% of one core",
            hb_sent as f64 / hb_time,
            hb_fail.load(Ordering::Relaxed),
            max_interval_ms.load(Ordering::Relaxed),
            max_late_ms.load(Ordering::Relaxed),
            100.0 * hb_cpu / hb_time
        );
        match silent_marked_at {
            Some(t) => println!("sweep: the first silent worker was marked unhealthy {t:.1?} after the registrations began (bound: its granted timeout + 5 s sweep)"),
            None => println!("sweep: the first silent worker was NOT marked unhealthy during the run"),
        }
        println!("false unhealthy marks among heartbeating workers: {false_marks} (must be 0, watched every second for the whole run); final: {total} workers, {ready} ready, {unhealthy} unhealthy");
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
        if let (Some(last), Some(max)) = (
            sample("varpulis_coordinator_sweep_scan_last_seconds"),
            sample("varpulis_coordinator_sweep_scan_max_seconds"),
        ) {
            println!(
                "sweep search for expired workers (before the Raft write of the marks): last {:.3} ms, max {:.3} ms",
                last * 1e3,
                max * 1e3
            );
        }
        // Elections during the run: the leader's term moves with each one.
        println!(
            "raft: term {term0:?} at the start, {:?} at the end (each election adds at least one)",
            raft_term(&ens, leader).await
        );
    });
}
