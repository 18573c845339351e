//! Shared helpers: in-process workers, a fake coordinator, HTTP shortcuts, polling.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete as delete_route, post as post_route};
use axum::{Json, Router};
use serde_json::Value;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use varpulis_worker::WorkerConfig;

pub const KEY: &str = "test-key";

/// A worker running in this process.
pub struct Worker {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), varpulis_worker::WorkerError>>>,
}

impl Worker {
    /// Asks the worker to shut down and waits until `run` returned.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// Default test config: API key set, fast heartbeats and backoff.
pub fn config() -> WorkerConfig {
    WorkerConfig {
        api_key: Some(KEY.into()),
        worker_id: "w-test".into(),
        heartbeat_interval: Duration::from_millis(200),
        registration_backoff_initial: Duration::from_millis(100),
        registration_backoff_max: Duration::from_millis(400),
        coordinator_timeout: Duration::from_secs(2),
        ..WorkerConfig::default()
    }
}

pub async fn start_worker(mut cfg: WorkerConfig) -> Worker {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cfg.port = addr.port();
    cfg.advertise_address = format!("http://{addr}");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(varpulis_worker::run(cfg, listener, async move {
        let _ = rx.await;
    }));
    Worker {
        url: format!("http://{addr}"),
        stop: Some(tx),
        task: Some(task),
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// `(status, JSON body)` of a request with the test key.
pub async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.header("x-api-key", KEY).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, body)
}

pub async fn post(url: &str, body: Value) -> (u16, Value) {
    call(client().post(url).json(&body)).await
}

pub async fn get(url: &str) -> (u16, Value) {
    call(client().get(url)).await
}

/// The worker's Prometheus text (`GET /metrics` with the test key).
pub async fn metrics_text(w: &Worker) -> String {
    let resp = client()
        .get(format!("{}/metrics", w.url))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    resp.text().await.unwrap()
}

/// Deploys and returns the pipeline id (asserting 201).
pub async fn deploy(w: &Worker, name: &str, source: &str) -> String {
    let (s, b) = post(
        &format!("{}/api/v1/pipelines", w.url),
        serde_json::json!({"name": name, "source": source}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a fake coordinator saw.
#[derive(Default)]
pub struct Seen {
    pub known: HashSet<String>,
    pub registrations: Vec<Value>,
    pub heartbeats: Vec<Value>,
    pub deregistrations: Vec<String>,
    pub tokens: Vec<Option<String>>,
    /// `x-api-key` of each registration and heartbeat, in arrival order.
    pub keys: Vec<Option<String>>,
}

/// A minimal coordinator: register, heartbeat (404 for unknown workers), delete.
#[derive(Clone, Default)]
pub struct FakeCoordinator {
    pub seen: Arc<Mutex<Seen>>,
}

impl FakeCoordinator {
    pub fn registrations(&self) -> usize {
        self.seen.lock().unwrap().registrations.len()
    }
    pub fn heartbeats(&self) -> usize {
        self.seen.lock().unwrap().heartbeats.len()
    }
    pub fn deregistrations(&self) -> Vec<String> {
        self.seen.lock().unwrap().deregistrations.clone()
    }
    /// Forgets every worker (as a coordinator that lost its state).
    pub fn forget_all(&self) {
        self.seen.lock().unwrap().known.clear();
    }

    /// Serves on `port` until the returned sender fires (or is dropped).
    pub async fn serve(&self, port: u16) -> oneshot::Sender<()> {
        let app = Router::new()
            .route("/api/v1/cluster/workers/register", post_route(register))
            .route(
                "/api/v1/cluster/workers/{id}/heartbeat",
                post_route(heartbeat),
            )
            .route("/api/v1/cluster/workers/{id}", delete_route(deregister))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        tx
    }
}

async fn register(
    State(c): State<FakeCoordinator>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let mut s = c.seen.lock().unwrap();
    let id = body["worker_id"].as_str().unwrap_or_default().to_owned();
    s.known.insert(id.clone());
    s.tokens.push(
        headers
            .get("x-worker-token")
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    s.keys.push(api_key(&headers));
    s.registrations.push(body);
    Json(serde_json::json!({"worker_id": id, "status": "registered"}))
}

fn api_key(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-api-key")
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn heartbeat(
    State(c): State<FakeCoordinator>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut s = c.seen.lock().unwrap();
    s.keys.push(api_key(&headers));
    if !s.known.contains(&id) {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "unknown worker", "code": "not_found"})),
        );
    }
    s.heartbeats.push(body);
    (StatusCode::OK, Json(serde_json::json!({"status": "ok"})))
}

async fn deregister(State(c): State<FakeCoordinator>, Path(id): Path<String>) -> Json<Value> {
    let mut s = c.seen.lock().unwrap();
    s.known.remove(&id);
    s.deregistrations.push(id);
    Json(serde_json::json!({"deleted": true}))
}
