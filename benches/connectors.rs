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
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/inproc_worker.rs"]
mod inproc_worker;

use inproc_worker::{arg, inject_for, readings_batch, BoxError, InProcessWorker};

const INJECT_BATCH: usize = 1_000;

async fn receive(State(n): State<Arc<AtomicU64>>, body: Bytes) -> &'static str {
    let count = match serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&body) {
        Ok(items) => items.len() as u64,
        Err(_) => 1,
    };
    n.fetch_add(count, Ordering::Relaxed);
    "ok"
}

/// Injects batches of 1,000 readings for `secs` from `clients` clients; returns (events
/// injected, start instant).
async fn inject(
    url: &str,
    id: &str,
    secs: u64,
    clients: usize,
) -> Result<(u64, Instant), BoxError> {
    let body = readings_batch(INJECT_BATCH)?;
    inject_for(url, id, &body, INJECT_BATCH, secs, clients).await
}

async fn bench() -> Result<(), BoxError> {
    let secs = arg("--secs", 5);
    let clients = arg("--clients", 4) as usize;
    let batch = arg("--batch", 500);

    let worker = InProcessWorker::start().await?;
    let url = worker.url.clone();
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
    let base_id = worker
        .deploy("bench", "stream Out = Reading .emit(id: id, temp: temp)\n")
        .await?;
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
    let id = worker.deploy("bench", &src).await?;
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
    let fid = worker.deploy("bench", &src).await?;
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

    let _ = worker.stop().await;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}
