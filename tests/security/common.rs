//! Helpers shared by the security tests: raw Raft requests, metrics readers, a background
//! writer that records every answer.

use crate::harness::{fake_worker, wait_until, Api, Ensemble};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A Raft vote as openraft serializes it.
pub fn vote(term: u64, node_id: u64, committed: bool) -> Value {
    json!({"leader_id": {"term": term, "node_id": node_id}, "committed": committed})
}

/// A Raft log id as openraft serializes it.
pub fn log_id(term: u64, node_id: u64, index: u64) -> Value {
    json!({"leader_id": {"term": term, "node_id": node_id}, "index": index})
}

/// A log entry carrying a worker registration (the forged command).
pub fn registration_entry(term: u64, leader: u64, index: u64, worker_id: &str) -> Value {
    json!({
        "log_id": log_id(term, leader, index),
        "payload": {"Normal": {"register_worker": {
            "worker_id": worker_id,
            "address": "http://127.0.0.1:9",
            "api_key": "forged",
            "cpu_cores": 1,
            "max_pipelines": 1,
            "labels": {},
            "now_ms": 1
        }}}
    })
}

/// `POST {url}{path}` with `body` and the given extra headers.
pub async fn raw_post(
    url: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("{url}{path}"))
        .timeout(Duration::from_secs(10))
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("raft route answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `(current_term, last_log_index, last_applied, state_hash)` of coordinator `i`.
pub async fn raft_state(ens: &Ensemble, i: usize) -> Option<(u64, u64, u64, String)> {
    let m = ens.metrics(i).await?;
    Some((
        m["current_term"].as_u64()?,
        m["last_log_index"].as_u64().unwrap_or(0),
        m["last_applied"].as_u64().unwrap_or(0),
        m["state_hash"].as_str()?.to_owned(),
    ))
}

/// The current term of coordinator `i`.
pub async fn term(ens: &Ensemble, i: usize) -> u64 {
    ens.metrics(i).await.expect("metrics")["current_term"]
        .as_u64()
        .expect("current_term")
}

pub use crate::harness::wait_converged;

/// What a [`Writer`] saw.
#[derive(Debug, Default, Clone)]
pub struct WriteStats {
    /// 2xx answers.
    pub ok: u64,
    /// Every other answer or transport error, with a sample.
    pub failed: Vec<String>,
    /// Slowest acknowledged write.
    pub slowest: Duration,
}

/// Small writes (re-registrations of 50 fake workers) in a loop through one coordinator until
/// stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    stats: Arc<Mutex<WriteStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Starts writing through `url` (a coordinator's base URL) with `api`.
    pub fn start(api: &Api, url: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let stats = Arc::new(Mutex::new(WriteStats::default()));
        let api = api.with_timeout(Duration::from_secs(10));
        let url = format!("{url}/api/v1/cluster/workers/register");
        let (s, c, st) = (stop.clone(), count.clone(), stats.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                n += 1;
                let body = fake_worker(&format!("load-{}", n % 50));
                let started = std::time::Instant::now();
                let r = api.post(&url, &body).await;
                let mut stats = st.lock().unwrap_or_else(|e| e.into_inner());
                match r {
                    Ok(r) if r.ok() => {
                        stats.ok += 1;
                        stats.slowest = stats.slowest.max(started.elapsed());
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => stats.failed.push(format!("{}: {}", r.status, r.text)),
                    Err(e) => stats.failed.push(format!("transport: {e}")),
                }
            }
        });
        Self {
            stop,
            count,
            stats,
            task,
        }
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until at least `more` further writes are acknowledged (or panics after `timeout`).
    pub async fn wait_progress(&self, more: u64, timeout: Duration) {
        let target = self.acked() + more;
        wait_until(
            &format!("{more} more acknowledged writes"),
            timeout,
            Duration::from_millis(20),
            || async move { (self.acked() >= target).then_some(()) },
        )
        .await;
    }

    /// Stops the loop and returns what it saw.
    pub async fn finish(self) -> WriteStats {
        self.stop.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.clone()
    }
}
