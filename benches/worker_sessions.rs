//! Worker sessions benchmark (issue 20): what holding many worker WebSocket sessions costs the
//! leader. One coordinator; `SESSIONS_WORKERS` (default 10,000) simulated workers register, then
//! the leader's CPU (utime + stime from `/proc/<pid>/stat`) is measured for `SESSIONS_SECS`
//! (default 10) without sessions, then again with one session per worker, each pinging once a
//! second and asking for a lease renewal (`{"type":"renew"}`, answered `{"type":"lease"}`) every
//! `SESSIONS_RENEW_SECS` (default 4: what `varpulis server` does with the default 13.5 s lease). Prints both figures, the difference per session, the leases granted
//! per second and the `ws_connections` the coordinator reports.
//! Run: `cargo bench --profile dev --bench worker_sessions` (or `cargo bench` for release).

#[path = "../tests/cluster/harness.rs"]
mod harness;
#[path = "common/proc_stats.rs"]
mod proc_stats;

use futures::{SinkExt, StreamExt};
use harness::{fake_worker, Ensemble, Opts};
use proc_stats::{cpu_ticks, env_usize, ticks_per_second};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// Leader CPU seconds per second over `secs`.
async fn cpu_over(pid: u32, secs: u64) -> f64 {
    let c0 = cpu_ticks(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (cpu_ticks(pid) - c0) as f64 / ticks_per_second() / t0.elapsed().as_secs_f64()
}

/// Opens worker `id`'s session on `base`, pings and renews every second until `stop`; counts
/// the leases granted in `leases`.
async fn session(
    base: String,
    id: String,
    stop: Arc<AtomicBool>,
    open: Arc<AtomicU64>,
    leases: Arc<AtomicU64>,
    renew_every: u64,
) {
    let url = format!(
        "{}/api/v1/cluster/workers/{id}/session",
        base.replacen("http://", "ws://", 1)
    );
    // A burst of connects can overflow the listen backlog: retry a few times.
    let mut ws = None;
    for _ in 0..10 {
        let Ok(mut req) = url.as_str().into_client_request() else {
            return;
        };
        req.headers_mut()
            .insert("x-api-key", HeaderValue::from_static("fake"));
        if let Ok((s, _)) = tokio_tungstenite::connect_async(req).await {
            ws = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(mut ws) = ws else {
        return;
    };
    open.fetch_add(1, Ordering::Relaxed);
    let mut ping = tokio::time::interval(Duration::from_secs(1));
    let mut seq = 0u64;
    let mut ticks = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = ping.tick() => {
                if ws.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
                ticks += 1;
                if ticks.is_multiple_of(renew_every) {
                    seq += 1;
                    let renew = format!(r#"{{"type":"renew","seq":{seq}}}"#);
                    if ws.send(Message::Text(renew.into())).await.is_err() {
                        break;
                    }
                }
            }
            msg = ws.next() => match msg {
                None | Some(Err(_)) => break,
                Some(Ok(Message::Text(t))) if t.as_str().contains(r#""type":"lease""#) => {
                    leases.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
            },
        }
    }
    open.fetch_sub(1, Ordering::Relaxed);
}

fn main() {
    let n = env_usize("SESSIONS_WORKERS", 10_000);
    let secs = env_usize("SESSIONS_SECS", 10) as u64;
    let renew_every = (env_usize("SESSIONS_RENEW_SECS", 4) as u64).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let opts = Opts {
            // Simulated workers never heartbeat: keep the sweep out of the figures.
            heartbeat_interval: 5.0,
            heartbeat_timeout: 3600.0,
            sweep_interval: 5.0,
            start_timeout: Duration::from_secs(60),
            ..Opts::default()
        };
        let ens = Ensemble::start(1, 0, opts).await;
        let pid = ens.coords[0].proc.pid().expect("pid");
        let api = ens.api.with_timeout(Duration::from_secs(30));
        let reg = Arc::new(ens.cluster_url(0, "/workers/register"));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..64 {
            let (api, reg) = (api.clone(), reg.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = c;
                while i < n {
                    let _ = api.post(&reg, &fake_worker(&format!("s-{i:05}"))).await;
                    i += 64;
                }
            }));
        }
        for t in tasks {
            t.await.expect("register task");
        }
        println!("registered {n} workers in {:.2?}", started.elapsed());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = cpu_over(pid, secs).await;

        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicU64::new(0));
        let leases = Arc::new(AtomicU64::new(0));
        let opening = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
            for &i in chunk {
                tokio::spawn(session(
                    ens.coords[0].url.clone(),
                    format!("s-{i:05}"),
                    stop.clone(),
                    open.clone(),
                    leases.clone(),
                    renew_every,
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while open.load(Ordering::Relaxed) < n as u64 && opening.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "opened {} sessions in {:.2?}",
            open.load(Ordering::Relaxed),
            opening.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leases_before = leases.load(Ordering::Relaxed);
        let measuring = Instant::now();
        let held = cpu_over(pid, secs).await;
        let lease_rate = (leases.load(Ordering::Relaxed) - leases_before) as f64
            / measuring.elapsed().as_secs_f64();
        let health = ens
            .api
            .get(&format!("{}/health", ens.coords[0].url))
            .await
            .expect("health");
        let reported = health.body["ws_connections"].as_u64().unwrap_or(0);
        println!(
            "leader CPU: {idle:.3} s/s with {n} registered workers and no session; \
             {held:.3} s/s holding {reported} sessions pinging every second and renewing every \
             {renew_every} s \
             ({lease_rate:.0} leases granted/s; +{:.3} s/s, {:.1} µs/s per session)",
            held - idle,
            (held - idle) / (reported.max(1) as f64) * 1e6
        );
        stop.store(true, Ordering::Relaxed);
    });
}
