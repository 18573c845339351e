//! What the in-process worker benchmarks share: a worker on 127.0.0.1:0 in this process, a
//! deploy, a batch of `Reading` events, batch injection from several clients until a deadline,
//! and the `--name value` arguments they take.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Error of a benchmark step.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The number after `name` on the command line (`-- --secs 5`), or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `{"events": [...]}` with `n` `Reading{id: "s<i % 50>", temp: i % 100}` events.
pub fn readings_batch(n: usize) -> Result<Vec<u8>, serde_json::Error> {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"event_type": "Reading", "fields": {"id": format!("s{}", i % 50), "temp": (i % 100) as i64}}))
        .collect();
    serde_json::to_vec(&json!({ "events": events }))
}

/// Posts one JSON body; an error unless the answer is 2xx (its body is read).
pub async fn post_json(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(), BoxError> {
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(format!("inject answered {}", resp.status()).into());
    }
    resp.bytes().await?;
    Ok(())
}

/// Posts `body` (a batch of `per_batch` events) to pipeline `id` for `secs` from `clients`
/// clients at once; returns the events injected and when injection started.
pub async fn inject_for(
    url: &str,
    id: &str,
    body: &[u8],
    per_batch: usize,
    secs: u64,
    clients: usize,
) -> Result<(u64, Instant), BoxError> {
    let batch_url = format!("{url}/api/v1/pipelines/{id}/events-batch");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, body, batch_url) = (reqwest::Client::new(), body.to_vec(), batch_url.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while Instant::now() < deadline {
                post_json(&http, &batch_url, body.clone()).await?;
                sent += per_batch as u64;
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

/// A worker (`worker_id` "bench", default configuration) served in this process.
pub struct InProcessWorker {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), varpulis_worker::WorkerError>>,
}

impl InProcessWorker {
    /// Binds 127.0.0.1:0 and serves the worker there.
    pub async fn start() -> Result<Self, BoxError> {
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
        Ok(Self { url, stop, server })
    }

    /// Deploys pipeline `name` with `source`; returns its id.
    pub async fn deploy(&self, name: &str, source: &str) -> Result<String, BoxError> {
        let deployed: Value = reqwest::Client::new()
            .post(format!("{}/api/v1/pipelines", self.url))
            .json(&json!({"name": name, "source": source}))
            .send()
            .await?
            .json()
            .await?;
        Ok(deployed["id"].as_str().ok_or("deploy failed")?.to_owned())
    }

    /// Stops the worker and waits for it.
    pub async fn stop(self) -> Result<(), BoxError> {
        let _ = self.stop.send(());
        self.server.await??;
        Ok(())
    }
}
