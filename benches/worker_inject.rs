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

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn bench() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let secs = arg("--secs", 5);
    let clients = arg("--clients", 4) as usize;
    let singles = arg("--singles", 5_000) as usize;

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

    let http = reqwest::Client::new();
    let deployed: Value = http
        .post(format!("{url}/api/v1/pipelines"))
        .json(&json!({"name": "bench-filter", "source": FILTER}))
        .send()
        .await?
        .json()
        .await?;
    let id = deployed["id"].as_str().ok_or("deploy failed")?.to_owned();

    let events: Vec<Value> = (0..BATCH)
        .map(|i| json!({"event_type": "Reading", "fields": {"id": format!("s{}", i % 50), "temp": (i % 100) as i64}}))
        .collect();
    let body = bytes_of(&json!({ "events": events }))?;
    let batch_url = format!("{url}/api/v1/pipelines/{id}/events-batch");

    // Warm-up.
    for _ in 0..20 {
        post_batch(&http, &batch_url, body.clone()).await?;
    }

    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, batch_url, body) = (http.clone(), batch_url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < deadline {
                if post_batch(&http, &batch_url, body.clone()).await.is_err() {
                    break;
                }
                n += BATCH;
            }
            n
        }));
    }
    let mut total = 0usize;
    for t in tasks {
        total += t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();

    let single_url = format!("{url}/api/v1/pipelines/{id}/events");
    let one = bytes_of(&json!({"event_type": "Reading", "fields": {"id": "s1", "temp": 95}}))?;
    let mut lat = Vec::with_capacity(singles);
    for _ in 0..singles {
        let t = Instant::now();
        let resp = http
            .post(&single_url)
            .header("content-type", "application/json")
            .body(one.clone())
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(format!("single inject: {}", resp.status()).into());
        }
        resp.bytes().await?;
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

    let _ = stop.send(());
    server.await??;
    Ok(())
}

fn bytes_of(v: &Value) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(v)
}

async fn post_batch(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(format!("batch inject: {}", resp.status()).into());
    }
    resp.bytes().await?;
    Ok(())
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
