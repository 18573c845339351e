//! Deploys (issue 18, attack 5): a deploy ships only the connectors its pipeline uses, with
//! their real values (answers show them redacted), and a large group is deployed a few calls
//! at a time with leader memory in proportion to the request. And (attack 4, coordinator side)
//! a worker answering an inject with millions of output events is refused, not buffered.
//!
//! The worker is a recording fake served by this test process (axum): it answers every deploy
//! 201 and keeps the bodies it received.

use crate::harness::{Ensemble, Opts};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Recorder {
    bodies: Arc<Mutex<Vec<Value>>>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

async fn deploy(
    State(r): State<Recorder>,
    Json(body): Json<Value>,
) -> (axum::http::StatusCode, Json<Value>) {
    let now = r.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    r.most_in_flight.fetch_max(now, Ordering::SeqCst);
    // Slow enough that unbounded deploys would pile up.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let id = body["id"].as_str().unwrap_or("p").to_owned();
    let name = body["name"].clone();
    r.bodies.lock().unwrap().push(body);
    r.in_flight.fetch_sub(1, Ordering::SeqCst);
    (
        axum::http::StatusCode::CREATED,
        Json(json!({"id": id, "name": name, "status": "running"})),
    )
}

/// An inject answered with about 20 MB of output events (a worker without output budgets).
async fn flood() -> String {
    let event = r#"{"event_type":"Out","fields":{"v":1}},"#;
    let mut body = String::from(r#"{"accepted":true,"output_events":["#);
    body.push_str(&event.repeat(20 * 1024 * 1024 / event.len()));
    body.push_str(r#"{"event_type":"Out","fields":{"v":1}}]}"#);
    body
}

/// Serves a recording fake worker on 127.0.0.1; returns its URL and recorder.
async fn fake_worker() -> (String, Recorder) {
    let rec = Recorder::default();
    let app = Router::new()
        .route("/api/v1/pipelines", post(deploy))
        .route("/api/v1/pipelines/{id}/events", post(flood))
        .with_state(rec.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rec)
}

async fn register(ens: &Ensemble, id: &str, url: &str, max: u32) {
    let body = json!({"worker_id": id, "address": url, "api_key": "fake-key",
                      "capacity": {"cpu_cores": 1, "pipelines_running": 0, "max_pipelines": max}});
    ens.api
        .post(&ens.cluster_url(0, "/workers/register"), &body)
        .await
        .unwrap()
        .expect_status(201);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_connectors_a_pipeline_uses_are_shipped() {
    let ens = Ensemble::start(1, 0, Opts::default()).await;
    let (url, rec) = fake_worker().await;
    register(&ens, "recorder", &url, 10).await;
    let connectors = ens.cluster_url(0, "/connectors");
    for (name, password) in [("UsedBroker", "used-pw-1"), ("OtherBroker", "other-pw-2")] {
        let spec = json!({"name": name, "connector_type": "mqtt",
                          "params": {"host": "127.0.0.1", "port": 1883, "password": password}});
        ens.api
            .post(&connectors, &spec)
            .await
            .unwrap()
            .expect_status(201);
    }
    // A client edits what it read (the password shows as <redacted>) and puts it back.
    let read = ens
        .api
        .get(&format!("{connectors}/UsedBroker"))
        .await
        .unwrap();
    let mut edited = read.body.clone();
    edited["description"] = json!("edited");
    let put = ens
        .api
        .send(
            reqwest::Method::PUT,
            &format!("{connectors}/UsedBroker"),
            Some((serde_json::to_vec(&edited).unwrap(), "application/json")),
        )
        .await
        .unwrap();
    put.expect_ok();

    let spec = json!({"name": "uses_one", "pipelines": [{"name": "p",
        "source": "stream S = A.from(UsedBroker, topic: \"in\")\n  .emit(v: 1)"}]});
    ens.deploy_group(0, &spec).await;
    let bodies = rec.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let shipped = bodies[0]["connectors"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        shipped.keys().collect::<Vec<_>>(),
        vec!["UsedBroker"],
        "only the connector the program names"
    );
    assert_eq!(
        shipped["UsedBroker"]["params"]["password"], "used-pw-1",
        "the worker gets the real value, kept through the redacted round trip"
    );
    assert!(!bodies[0].to_string().contains("other-pw-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_pipeline_group_deploys_a_few_at_a_time_in_bounded_memory() {
    let opts = Opts {
        coord_extra_args: vec![
            "--limit".into(),
            "max_pipelines_per_group=300".into(),
            "--deploy-concurrency".into(),
            "4".into(),
        ],
        ..Opts::default()
    };
    let ens = Ensemble::start(1, 0, opts).await;
    let (url, rec) = fake_worker().await;
    register(&ens, "recorder", &url, 1000).await;
    let pipelines: Vec<Value> = (0..300)
        .map(|i| json!({"name": format!("p{i}"), "source": format!("stream S{i} = A{i}\n  .emit(v: {i})")}))
        .collect();
    let spec = json!({"name": "big", "pipelines": pipelines});
    let request_bytes = spec.to_string().len();
    let pid = ens.coords[0].proc.pid().expect("coordinator pid");
    let before = rss_kib(pid);
    let started = std::time::Instant::now();
    ens.api
        .with_timeout(Duration::from_secs(120))
        .post(&ens.cluster_url(0, "/pipeline-groups"), &spec)
        .await
        .unwrap()
        .expect_status(201);
    let after = rss_kib(pid);
    let most = rec.most_in_flight.load(Ordering::SeqCst);
    println!(
        "300-pipeline deploy: request {request_bytes} B, leader RSS {before} KiB -> {after} KiB \
         (+{} KiB), {} deploys, at most {most} in flight, {:?}",
        after.saturating_sub(before),
        rec.bodies.lock().unwrap().len(),
        started.elapsed()
    );
    assert!(
        most <= 4,
        "at most --deploy-concurrency deploys in flight, saw {most}"
    );
    assert_eq!(rec.bodies.lock().unwrap().len(), 300);
    assert!(
        after.saturating_sub(before) < 200 * 1024,
        "leader RSS grew by {} KiB for a {request_bytes} B request",
        after.saturating_sub(before)
    );

    // 10,000 pipelines: refused by the limits before anything is parsed as VPL or proposed.
    let huge: Vec<Value> = (0..10_000)
        .map(|i| json!({"name": format!("p{i}"), "source": "stream S = A .emit(v: 1)"}))
        .collect();
    let r = ens
        .api
        .post(
            &ens.cluster_url(0, "/pipeline-groups"),
            &json!({"name": "huge", "pipelines": huge}),
        )
        .await
        .unwrap();
    r.expect_error(413);
    assert_eq!(r.body["code"], "limit_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_output_events_is_refused_not_buffered() {
    let ens = Ensemble::start(1, 0, Opts::default()).await;
    let (url, _rec) = fake_worker().await;
    register(&ens, "flooder", &url, 10).await;
    let spec = json!({"name": "flood", "pipelines": [{"name": "p",
        "source": "stream S = EventA\n  .emit(v: 1)"}]});
    let gid = ens.deploy_group(0, &spec).await;
    let pid = ens.coords[0].proc.pid().expect("coordinator pid");
    let before = rss_kib(pid);
    let r = ens
        .api
        .post(
            &ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject")),
            &json!({"event_type": "EventA", "fields": {"x": 1}}),
        )
        .await
        .unwrap();
    let after = rss_kib(pid);
    r.expect_error(502);
    assert!(r.text.contains("larger than"), "{}", r.text);
    println!(
        "20 MB inject answer: refused, leader RSS {before} KiB -> {after} KiB (+{} KiB)",
        after.saturating_sub(before)
    );
    let health = ens.api.get(&format!("{}/health", ens.coords[0].url)).await;
    health.unwrap().expect_ok();
}
