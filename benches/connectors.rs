//! Output connector throughput (docs/connectors.md, figures in docs/benchmarks.md).
//!
//! Starts a worker in-process on 127.0.0.1:0 and a local axum target, deploys
//! `Reading .emit(...) .to(H)` with `http(batch: 500)` (every event passes), posts batches of
//! 1,000 events from several clients for `--secs`, then waits until the target has received
//! every event. Figure: events delivered per second, from the first inject to the last
//! delivery, and its ratio to the same pipeline without the sink (the inject baseline). The
//! same run with a `file(...)` sink follows.
//! Run: `cargo bench --bench connectors` (optionally `-- --secs 5 --clients 4 --batch 500`).

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INJECT_BATCH: usize = 1_000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn receive(State(n): State<Arc<AtomicU64>>, body: Bytes) -> &'static str {
    let count = match serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&body) {
        Ok(items) => items.len() as u64,
        Err(_) => 1,
    };
    n.fetch_add(count, Ordering::Relaxed);
    "ok"
}

/// Injects for `secs` from `clients` clients; returns (events injected, start instant).
async fn inject(
    url: &str,
    id: &str,
    secs: u64,
    clients: usize,
) -> Result<(u64, Instant), BoxError> {
    let events: Vec<Value> = (0..INJECT_BATCH)
        .map(|i| json!({"event_type": "Reading", "fields": {"id": format!("s{}", i % 50), "temp": (i % 100) as i64}}))
        .collect();
    let body = Bytes::from(serde_json::to_vec(&json!({ "events": events }))?);
    let batch_url = format!("{url}/api/v1/pipelines/{id}/events-batch");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, body, batch_url) = (reqwest::Client::new(), body.clone(), batch_url.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while Instant::now() < deadline {
                let r = http
                    .post(&batch_url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                if !r.status().is_success() {
                    return Err(format!("inject answered {}", r.status()).into());
                }
                let _ = r.bytes().await?;
                sent += INJECT_BATCH as u64;
            }
            Ok::<u64, BoxError>(sent)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total, started))
}

async fn deploy(url: &str, source: &str) -> Result<String, BoxError> {
    let deployed: Value = reqwest::Client::new()
        .post(format!("{url}/api/v1/pipelines"))
        .json(&json!({"name": "bench", "source": source}))
        .send()
        .await?
        .json()
        .await?;
    Ok(deployed["id"].as_str().ok_or("deploy failed")?.to_owned())
}

async fn bench() -> Result<(), BoxError> {
    let secs = arg("--secs", 5);
    let clients = arg("--clients", 4) as usize;
    let batch = arg("--batch", 500);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cfg = varpulis_worker::WorkerConfig {
        worker_id: "bench".into(),
        ..Default::default()
    };
    let server = tokio::spawn(varpulis_worker::run(cfg, listener, async move {
        let _ = stopped.await;
    }));
    let received = Arc::new(AtomicU64::new(0));
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let target_url = format!("http://{}/in", target.local_addr()?);
    let app = Router::new()
        .route("/in", post(receive))
        .with_state(received.clone());
    tokio::spawn(async move {
        let _ = axum::serve(target, app).await;
    });

    // Baseline: the same pipeline without a sink.
    let base_id = deploy(&url, "stream Out = Reading .emit(id: id, temp: temp)\n").await?;
    let (n, started) = inject(&url, &base_id, secs, clients).await?;
    let baseline = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "baseline (no sink): {n} events in {:.2}s = {baseline:.0} events/s",
        started.elapsed().as_secs_f64()
    );

    let src = format!(
        "connector H = http(url: \"{target_url}\", batch: {batch})\n\
         stream Out = Reading .emit(id: id, temp: temp) .to(H)\n"
    );
    let id = deploy(&url, &src).await?;
    let (n, started) = inject(&url, &id, secs, clients).await?;
    while received.load(Ordering::Relaxed) < n {
        if started.elapsed() > Duration::from_secs(secs * 20 + 60) {
            return Err(format!(
                "only {} of {n} events arrived",
                received.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let rate = n as f64 / took;
    println!(
        "http sink batch {batch}: {n} events delivered in {took:.2}s = {rate:.0} events/s ({:.2} x baseline)",
        rate / baseline
    );

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.jsonl");
    let src = format!(
        "connector F = file(path: \"{}\", rotate_bytes: 100000000)\n\
         stream Out = Reading .emit(id: id, temp: temp) .to(F)\n",
        path.display()
    );
    let fid = deploy(&url, &src).await?;
    let (n, started) = inject(&url, &fid, secs, clients).await?;
    let http = reqwest::Client::new();
    loop {
        let info: Value = http
            .get(format!("{url}/api/v1/pipelines/{fid}"))
            .send()
            .await?
            .json()
            .await?;
        if info["connectors"][0]["events_sent"].as_u64() >= Some(n) {
            break;
        }
        if started.elapsed() > Duration::from_secs(secs * 20 + 60) {
            return Err("the file sink did not catch up".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let rate = n as f64 / took;
    println!(
        "file sink: {n} events written in {took:.2}s = {rate:.0} events/s ({:.2} x baseline)",
        rate / baseline
    );

    let _ = stop.send(());
    let _ = server.await;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}
