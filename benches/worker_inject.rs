//! Worker inject throughput and latency.
//!
//! Starts a worker in-process on 127.0.0.1:0, deploys a filter pipeline, then measures
//! (1) events/s through `POST .../events-batch` with batches of 1,000 events from several
//! concurrent clients and (2) p50/p99 latency of single-event `POST .../events`.
//! Run: `cargo bench --bench worker_inject` (optionally `-- --secs 5 --clients 4`).

use serde_json::{json, Value};
use std::time::{Duration, Instant};

const FILTER: &str = "stream Hot = Reading .where(temp > 90) .emit(id: id, temp: temp)\n";
const BATCH: usize = 1_000;

#[path = "common/inproc_worker.rs"]
mod inproc_worker;

use inproc_worker::{arg, inject_for, post_json, readings_batch, InProcessWorker};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn bench() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let secs = arg("--secs", 5);
    let clients = arg("--clients", 4) as usize;
    let singles = arg("--singles", 5_000) as usize;

    let worker = InProcessWorker::start().await?;
    let url = worker.url.clone();
    let id = worker.deploy("bench-filter", FILTER).await?;
    let http = reqwest::Client::new();
    let body = readings_batch(BATCH)?;
    let batch_url = format!("{url}/api/v1/pipelines/{id}/events-batch");

    // Warm-up.
    for _ in 0..20 {
        post_json(&http, &batch_url, body.clone()).await?;
    }

    let (total, started) = inject_for(&url, &id, &body, BATCH, secs, clients).await?;
    let elapsed = started.elapsed().as_secs_f64();

    let single_url = format!("{url}/api/v1/pipelines/{id}/events");
    let one = bytes_of(&json!({"event_type": "Reading", "fields": {"id": "s1", "temp": 95}}))?;
    let mut lat = Vec::with_capacity(singles);
    for _ in 0..singles {
        let t = Instant::now();
        post_json(&http, &single_url, one.clone()).await?;
        lat.push(t.elapsed());
    }
    lat.sort();

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("worker_inject: available_parallelism = {cores}");
    println!(
        "  batch inject: {total} events in {elapsed:.2} s with {clients} clients, batches of {BATCH}: {:.0} events/s",
        total as f64 / elapsed
    );
    println!(
        "  single inject ({singles} sequential requests): p50 = {:.0} us, p99 = {:.0} us",
        percentile(&lat, 0.50).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6
    );

    worker.stop().await?;
    Ok(())
}

fn bytes_of(v: &Value) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(v)
}

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("worker_inject: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(bench()) {
        eprintln!("worker_inject: {e}");
        std::process::exit(1);
    }
}
