//! In-process three-node ensembles: every node is `server::run` on a loopback listener with real
//! Raft and sled; workers are tiny axum apps that answer like `varpulis server`.
//!
//! Waits poll the HTTP API (never fixed sleeps for correctness); bounds are generous because the
//! machine is shared.

#![allow(clippy::unwrap_used)]

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use varpulis_coordinator::CoordinatorConfig;

const KEY: &str = "admin";

struct Node {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

struct Ensemble {
    nodes: Vec<Node>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Ensemble {
    async fn start(n: usize, tweak: impl Fn(&mut CoordinatorConfig)) -> Ensemble {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let urls: Vec<String> = listeners
            .iter()
            .map(|l| format!("http://{}", l.local_addr().unwrap()))
            .collect();
        let mut nodes = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut config = CoordinatorConfig {
                port: listener.local_addr().unwrap().port(),
                peers: urls.clone(),
                node_id: Some(i as u64 + 1),
                data_dir: Some(dir.path().join(format!("node-{}", i + 1))),
                api_key: Some(KEY.to_string()),
                heartbeat_interval: Duration::from_secs(1),
                heartbeat_timeout: Duration::from_secs(2),
                sweep_interval: Duration::from_millis(500),
                reconcile_interval: Duration::from_millis(500),
                http_client_timeout: Duration::from_secs(3),
                ..CoordinatorConfig::default()
            };
            tweak(&mut config);
            let (tx, rx) = oneshot::channel::<()>();
            let task = tokio::spawn(varpulis_coordinator::run(config, listener, async move {
                let _ = rx.await;
            }));
            nodes.push(Node {
                url: urls[i].clone(),
                stop: Some(tx),
                task: Some(task),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        Ensemble {
            nodes,
            http,
            _dir: dir,
        }
    }

    /// Waits until every running node reports the same leader; returns its index.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut seen = Vec::new();
            for node in self.nodes.iter().filter(|n| n.stop.is_some()) {
                let health = self.http.get(format!("{}/health", node.url)).send().await;
                let leader = match health {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["leader_id"].as_u64()),
                    Err(_) => None,
                };
                seen.push(leader);
            }
            if let Some(Some(id)) = seen.first() {
                let idx = (*id - 1) as usize;
                if seen.iter().all(|l| *l == Some(*id)) && self.nodes[idx].stop.is_some() {
                    return idx;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn follower_of(&self, leader: usize) -> usize {
        (0..self.nodes.len())
            .find(|i| *i != leader && self.nodes[*i].stop.is_some())
            .unwrap()
    }

    async fn stop(&mut self, i: usize) {
        if let Some(tx) = self.nodes[i].stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.nodes[i].task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    async fn call(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.nodes[node].url))
            .header("x-api-key", KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, node: usize, path: &str) -> (StatusCode, Value) {
        self.call(node, reqwest::Method::GET, path, None).await
    }

    async fn post(&self, node: usize, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(node, reqwest::Method::POST, path, Some(body))
            .await
    }

    /// Status of a GET without the API key.
    async fn status_without_key(&self, node: usize, path: &str) -> u16 {
        let url = format!("{}{path}", self.nodes[node].url);
        self.http.get(url).send().await.unwrap().status().as_u16()
    }

    async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// A fake worker: records deploys and deletes, answers events with one output event.
#[derive(Clone, Default)]
struct FakeWorker {
    deployed: Arc<Mutex<BTreeMap<String, Value>>>,
    deleted: Arc<Mutex<Vec<String>>>,
}

async fn fake_deploy(
    State(w): State<FakeWorker>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let id = body["id"].as_str().unwrap_or("no-id").to_string();
    w.deployed.lock().unwrap().insert(id.clone(), body.clone());
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "name": body["name"], "status": "running"})),
    )
}

async fn fake_event(Path(id): Path<String>, Json(body): Json<Value>) -> Json<Value> {
    Json(
        json!({"accepted": true, "output_events": [{"event_type": "Out", "fields": {"pipeline": id, "in": body["event_type"]}}]}),
    )
}

async fn fake_checkpoint(Path(id): Path<String>) -> Json<Value> {
    Json(json!({"pipeline_id": id, "events_processed": 7, "version": 1, "state": "saved-state"}))
}

async fn fake_delete(State(w): State<FakeWorker>, Path(id): Path<String>) -> Json<Value> {
    w.deleted.lock().unwrap().push(id);
    Json(json!({"deleted": true}))
}

async fn start_worker() -> (String, FakeWorker, JoinHandle<()>) {
    let worker = FakeWorker::default();
    let app = Router::new()
        .route("/api/v1/pipelines", post(fake_deploy))
        .route("/api/v1/pipelines/{id}", delete(fake_delete))
        .route("/api/v1/pipelines/{id}/events", post(fake_event))
        .route("/api/v1/pipelines/{id}/checkpoint", post(fake_checkpoint))
        .with_state(worker.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, worker, task)
}

/// A registration whose key is the cluster's: this test client sends `KEY` on every call, and a
/// heartbeat must present the key its worker registered with.
fn register_body(id: &str, address: &str) -> Value {
    json!({"worker_id": id, "address": address, "api_key": KEY,
           "capacity": {"cpu_cores": 2, "pipelines_running": 0, "max_pipelines": 10}})
}

/// Heartbeats `id` to `url` every 300 ms until aborted.
fn heartbeat_loop(http: reqwest::Client, url: String, id: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let _ = http
                .post(format!("{url}/api/v1/cluster/workers/{id}/heartbeat"))
                .header("x-api-key", KEY)
                .json(&json!({"events_processed": 1, "pipelines_running": 1}))
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

async fn poll<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn group_spec(name: &str, worker: &str) -> Value {
    json!({
        "name": name,
        "pipelines": [{"name": "pipeline-a", "source": "stream A = EventA .emit(result: \"from-a\")", "worker_affinity": worker}],
        "routes": [{"from_pipeline": "_external", "to_pipeline": "pipeline-a", "event_types": ["EventA*"]}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_proxy_writes_and_serve_the_whole_api() {
    let cluster = Ensemble::start(3, |c| c.body_limit = 256 * 1024).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower_of(leader);
    let (w_url, worker, _w) = start_worker().await;

    // Register through a follower: proxied to the leader, 201 then 200 on re-registration.
    let (status, body) = cluster
        .post(
            follower,
            "/api/v1/cluster/workers/register",
            register_body("worker-0", &w_url),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "registered");
    let (status, _) = cluster
        .post(
            follower,
            "/api/v1/cluster/workers/register",
            register_body("worker-0", &w_url),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, workers) = cluster
        .get(leader, "/api/v1/cluster/workers?consistent=true")
        .await;
    assert_eq!(workers["total"], 1, "{workers}");
    assert!(workers["workers"][0].get("api_key").is_none());

    // Heartbeats through a follower reach the leader; unknown workers get 404.
    let (status, _) = cluster
        .post(
            follower,
            "/api/v1/cluster/workers/worker-0/heartbeat",
            json!({"events_processed": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = cluster
        .post(
            follower,
            "/api/v1/cluster/workers/nobody/heartbeat",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Bad VPL: 400 with line and column, nothing stored.
    let mut bad = group_spec("bad", "worker-0");
    bad["pipelines"][0]["source"] = json!("stream A = EventA\n  .where(x > )");
    let (status, body) = cluster
        .post(follower, "/api/v1/cluster/pipeline-groups", bad)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_vpl");
    let diag = &body["diagnostics"][0];
    assert_eq!(diag["pipeline"], "pipeline-a");
    assert_eq!(diag["line"], 2, "{body}");
    assert!(diag["column"].as_u64().unwrap() > 1, "{body}");
    let (_, groups) = cluster.get(leader, "/api/v1/cluster/pipeline-groups").await;
    assert_eq!(groups["total"], 0);

    // Good group through a follower: deployed on the worker with the worker's key.
    let (status, group) = cluster
        .post(
            follower,
            "/api/v1/cluster/pipeline-groups",
            group_spec("my-group", "worker-0"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert_eq!(group["status"], "running", "{group}");
    assert_eq!(group["placements"][0]["status"], "Running");
    assert_eq!(group["placements"][0]["worker_id"], "worker-0");
    let group_id = group["id"].as_str().unwrap().to_string();
    assert_eq!(worker.deployed.lock().unwrap().len(), 1);

    // Duplicate name: 409 and still one group.
    let (status, body) = cluster
        .post(
            leader,
            "/api/v1/cluster/pipeline-groups",
            group_spec("my-group", "worker-0"),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Inject on a follower: routed from its local state straight to the worker.
    let path = format!("/api/v1/cluster/pipeline-groups/{group_id}/inject");
    let (status, body) = cluster
        .post(
            follower,
            &path,
            json!({"event_type": "EventA_x", "fields": {"x": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["routed_to"], "pipeline-a");
    assert_eq!(body["worker_id"], "worker-0");
    assert_eq!(body["worker_response"]["accepted"], true);

    // Auth and errors.
    let unauthenticated = cluster
        .status_without_key(follower, "/api/v1/cluster/workers")
        .await;
    assert_eq!(unauthenticated, 401);
    assert_eq!(cluster.status_without_key(follower, "/health").await, 200);
    assert_eq!(cluster.status_without_key(follower, "/ready").await, 200);
    let res = cluster
        .http
        .post(format!(
            "{}/api/v1/cluster/pipeline-groups",
            cluster.nodes[leader].url
        ))
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    let (status, _) = cluster
        .get(
            follower,
            &format!("/api/v1/cluster/pipeline-groups/{}", "nope"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Connectors and topology through a follower.
    let connector = json!({"name": "Broker", "connector_type": "mqtt", "params": {"host": "localhost", "port": "1883"}});
    let (status, body) = cluster
        .post(follower, "/api/v1/cluster/connectors", connector)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["params"]["port"], 1883, "port normalised: {body}");

    // A retried write with the same Idempotency-Key applies once and answers like the first time;
    // without the key the same create is a conflict.
    let retried =
        json!({"name": "Other", "connector_type": "mqtt", "params": {"host": "h", "port": 1}});
    for _ in 0..2 {
        let res = cluster
            .http
            .post(format!(
                "{}/api/v1/cluster/connectors",
                cluster.nodes[follower].url
            ))
            .header("x-api-key", KEY)
            .header("idempotency-key", "create-other-1")
            .json(&retried)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 201);
    }
    let (status, _) = cluster
        .post(leader, "/api/v1/cluster/connectors", retried)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Oversized bodies: 413 as JSON, on the leader and through a follower.
    let huge = json!({"name": "x".repeat(300 * 1024), "pipelines": []});
    for node in [leader, follower] {
        let (status, body) = cluster
            .post(node, "/api/v1/cluster/pipeline-groups", huge.clone())
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert_eq!(body["code"], "payload_too_large");
    }

    let (_, topo) = cluster
        .get(follower, "/api/v1/cluster/topology?consistent=true")
        .await;
    assert_eq!(
        topo["groups"][0]["pipelines"][0]["worker_id"], "worker-0",
        "{topo}"
    );

    // Tear down through a follower: the worker sees the DELETE.
    let (status, body) = cluster
        .call(
            follower,
            reqwest::Method::DELETE,
            &format!("/api/v1/cluster/pipeline-groups/{group_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["torn_down"], true);
    assert_eq!(worker.deleted.lock().unwrap().len(), 1);
    let (status, body) = cluster
        .call(
            follower,
            reqwest::Method::DELETE,
            "/api/v1/cluster/workers/worker-0",
            None,
        )
        .await;
    assert_eq!(
        (status, body["deleted"].clone()),
        (StatusCode::OK, json!(true))
    );

    let (_, metrics) = cluster.get(leader, "/metrics").await;
    assert!(metrics
        .as_str()
        .unwrap()
        .contains("varpulis_raft_is_leader 1"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_worker_is_marked_unhealthy_and_its_pipeline_moves() {
    let cluster = Ensemble::start(3, |c| c.checkpoint_interval = Duration::from_millis(300)).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower_of(leader);
    let (url_a, worker_a, _ta) = start_worker().await;
    let (url_b, worker_b, _tb) = start_worker().await;
    for (id, url) in [("w-a", &url_a), ("w-b", &url_b)] {
        let (status, _) = cluster
            .post(
                follower,
                "/api/v1/cluster/workers/register",
                register_body(id, url),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    // w-b heartbeats through a follower; w-a falls silent after registering.
    let beats = heartbeat_loop(
        cluster.http.clone(),
        cluster.nodes[follower].url.clone(),
        "w-b".into(),
    );
    let (status, group) = cluster
        .post(
            leader,
            "/api/v1/cluster/pipeline-groups",
            group_spec("g", "w-a"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert_eq!(group["placements"][0]["worker_id"], "w-a");
    let group_id = group["id"].as_str().unwrap().to_string();

    // Timeout 2 s + sweep 0.5 s: generous bound for a loaded machine.
    poll("w-a unhealthy", Duration::from_secs(20), || async {
        let (_, w) = cluster.get(follower, "/api/v1/cluster/workers/w-a").await;
        w["status"] == "unhealthy"
    })
    .await;
    let (_, w) = cluster.get(follower, "/api/v1/cluster/workers/w-b").await;
    assert_eq!(w["status"], "ready", "the heartbeating worker stays ready");

    // The reconciler migrates the pipeline to w-b.
    poll("pipeline moved to w-b", Duration::from_secs(20), || async {
        let (_, g) = cluster
            .get(
                leader,
                &format!("/api/v1/cluster/pipeline-groups/{group_id}"),
            )
            .await;
        g["placements"][0]["worker_id"] == "w-b" && g["placements"][0]["status"] == "Running"
    })
    .await;
    // The new deploy carries the checkpoint the leader took from w-a while it was healthy.
    let deployed_b: Vec<Value> = worker_b
        .deployed
        .lock()
        .unwrap()
        .values()
        .cloned()
        .collect();
    assert_eq!(deployed_b.len(), 1);
    assert_eq!(
        deployed_b[0]["checkpoint"]["state"], "saved-state",
        "{}",
        deployed_b[0]
    );
    let (_, migrations) = cluster
        .get(follower, "/api/v1/cluster/migrations?consistent=true")
        .await;
    assert_eq!(
        migrations["migrations"][0]["status"], "completed",
        "{migrations}"
    );
    assert_eq!(migrations["migrations"][0]["from_worker"], "w-a");

    // A heartbeat from the unhealthy worker brings it back to ready, and the pipeline it still
    // reports (moved away meanwhile) is deleted from it.
    let old_id = worker_a
        .deployed
        .lock()
        .unwrap()
        .keys()
        .next()
        .cloned()
        .unwrap();
    let beat = json!({"pipelines": [{"pipeline_id": old_id, "name": "g/pipeline-a", "epoch": 1}]});
    let (status, _) = cluster
        .post(follower, "/api/v1/cluster/workers/w-a/heartbeat", beat)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, w) = cluster.get(leader, "/api/v1/cluster/workers/w-a").await;
    assert_eq!(w["status"], "ready");
    poll(
        "orphan deleted from w-a",
        Duration::from_secs(10),
        || async { worker_a.deleted.lock().unwrap().contains(&old_id) },
    )
    .await;
    beats.abort();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_loss_elects_a_new_leader_and_quorum_loss_answers_503() {
    let mut cluster = Ensemble::start(3, |_| {}).await;
    let old = cluster.leader().await;
    let connector = |name: &str| json!({"name": name, "connector_type": "mqtt", "params": {"host": "h", "port": 1883}});
    let (status, body) = cluster
        .post(old, "/api/v1/cluster/connectors", connector("First"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    cluster.stop(old).await;
    let new = cluster.leader().await;
    assert_ne!(new, old);
    let follower = cluster.follower_of(new);
    // Writes continue through either surviving node, and the acknowledged one survived.
    let (status, body) = cluster
        .post(follower, "/api/v1/cluster/connectors", connector("Second"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, list) = cluster
        .get(follower, "/api/v1/cluster/connectors?consistent=true")
        .await;
    assert_eq!(list["total"], 2, "{list}");

    // Lose the quorum: the last node refuses writes with 503 + Retry-After (421 while it still
    // believes in a leader it cannot reach).
    cluster.stop(new).await;
    let last = follower;
    let url = format!("{}/api/v1/cluster/connectors", cluster.nodes[last].url);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = cluster
            .http
            .post(&url)
            .header("x-api-key", KEY)
            .json(&connector("Third"))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let retry_after = res.headers().contains_key("retry-after");
        let body: Value = res.json().await.unwrap();
        assert!(
            status == 503 || status == 421,
            "unexpected {status}: {body}"
        );
        if status == 503 {
            assert!(retry_after);
            break;
        }
        assert_eq!(body["code"], "not_leader");
        assert!(Instant::now() < deadline, "never answered 503");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(cluster.status_without_key(last, "/ready").await, 503);
    cluster.shutdown().await;
}
