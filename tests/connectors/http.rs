//! The HTTP sink: retries, batches, backpressure from a slow target, a target that is down
//! for a while, give-ups, per-connector status and metrics.

use crate::harness::*;
use crate::target::{self, Behaviour, Target};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `events` `Reading{id: i}` for `i` in `range`.
fn readings(range: std::ops::Range<usize>) -> Value {
    Value::Array(
        range
            .map(|i| json!({"event_type": "Reading", "fields": {"id": i, "temp": 90}}))
            .collect(),
    )
}

fn program(params: &str) -> String {
    format!(
        "connector H = http({params})\n\
         stream Hot = Reading .where(temp > 50) .emit(id: id, temp: temp) .to(H)\n"
    )
}

/// A target answering after `delay_ms`, a worker, and its `hot` pipeline sending to the target
/// with the connector parameters `params(target URL)`; the target's stop handle must be kept.
async fn delayed_target_pipeline(
    delay_ms: u64,
    params: impl FnOnce(&str) -> String,
) -> (Target, tokio::sync::oneshot::Sender<()>, Worker, String) {
    let (t, url, stop) = target::start(Behaviour {
        delay: Duration::from_millis(delay_ms),
        ..Behaviour::default()
    })
    .await;
    let w = start_worker(config()).await;
    let id = deploy(&w, "hot", &program(&params(&url))).await;
    (t, stop, w, id)
}

async fn inject(w: &Worker, id: &str, events: Value) -> Value {
    let (s, b) = post(
        &format!("{}/api/v1/pipelines/{id}/events-batch", w.url),
        events,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b
}

async fn info(w: &Worker, id: &str) -> Value {
    let (s, b) = get(&format!("{}/api/v1/pipelines/{id}", w.url)).await;
    assert_eq!(s, 200, "{b}");
    b
}

fn ids(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["id"].as_u64().unwrap()).collect()
}

async fn wait_delivered(t: &Target, n: usize, secs: u64) -> bool {
    wait_for(Duration::from_secs(secs), || async {
        t.delivered().len() >= n
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_retried_until_delivered_in_order() {
    let (t, url, _stop) = target::start(Behaviour {
        fail_first: 3,
        ..Behaviour::default()
    })
    .await;
    let w = start_worker(config()).await;
    let src = program(&format!(
        "url: \"{url}/hook\", method: \"PUT\", headers: {{\"authorization\": \"Bearer t0k\", \"x-n\": 7}}, \
         max_backoff: 50ms"
    ));
    let id = deploy(&w, "hot", &src).await;
    for i in 0..5 {
        inject(&w, &id, readings(i..i + 1)).await;
    }
    assert!(wait_delivered(&t, 5, 20).await, "{:?}", t.requests());
    let delivered = t.delivered();
    assert_eq!(ids(&delivered), [0, 1, 2, 3, 4]);
    // One JSON object per request (batch 1), the egress shape of VPL.md §9.
    assert_eq!(delivered[0]["event_type"], "Hot");
    assert_eq!(delivered[0]["temp"], 90);
    assert!(delivered[0]["timestamp"].is_string());
    let reqs = t.requests();
    assert_eq!(reqs.len(), 8, "3 failures then 5 deliveries");
    assert!(reqs.iter().all(|r| r.method == "PUT"));
    assert!(reqs
        .iter()
        .all(|r| r.headers["authorization"] == "Bearer t0k"
            && r.headers["x-n"] == "7"
            && r.headers["content-type"] == "application/json"));
    let i = info(&w, &id).await;
    assert_eq!(i["status"], "running", "{i}");
    let c = &i["connectors"][0];
    assert_eq!(
        (c["name"].as_str(), c["kind"].as_str(), c["health"].as_str()),
        (Some("H"), Some("http"), Some("ok"))
    );
    assert_eq!(c["events_sent"], 5);
    assert_eq!(c["retries"], 3);
    assert_eq!(c["requests"], 8);
    assert_eq!(c["events_given_up"], 0);
    assert_eq!(c["queued"], 0);
    let m = metrics_text(&w).await;
    assert!(m.contains(&format!(
        "varpulis_worker_connector_events_sent_total{{pipeline=\"{id}\",connector=\"H\",kind=\"http\"}} 5"
    )), "{m}");
    assert!(m.contains(&format!(
        "varpulis_worker_connector_up{{pipeline=\"{id}\",connector=\"H\",kind=\"http\"}} 1"
    )));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_json_arrays_of_at_most_batch_events() {
    let (t, _stop, w, id) =
        delayed_target_pipeline(20, |url| format!("url: \"{url}/in\", batch: 50")).await;
    for k in 0..4 {
        inject(&w, &id, readings(k * 100..(k + 1) * 100)).await;
    }
    assert!(wait_delivered(&t, 400, 20).await);
    assert_eq!(ids(&t.delivered()), (0..400).collect::<Vec<u64>>());
    for r in t.requests() {
        let n = r
            .body
            .as_array()
            .expect("a batch connector always sends arrays")
            .len();
        assert!((1..=50).contains(&n), "{n}");
    }
    // Requests were sent while later events queued: fewer requests than events.
    assert!(t.requests().len() < 400);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_applies_backpressure_and_loses_nothing() {
    let (t, _stop, w, id) =
        delayed_target_pipeline(100, |url| format!("url: \"{url}/slow\", queue: 5")).await;
    let started = Instant::now();
    inject(&w, &id, readings(0..30)).await;
    let waited = started.elapsed();
    // 30 events, 5 queued, one in flight, 100 ms per request: the inject had to wait for
    // about 24 requests.
    assert!(
        waited >= Duration::from_millis(2000),
        "inject returned after {waited:?}"
    );
    let c = &info(&w, &id).await["connectors"][0];
    assert!(c["queued"].as_u64().unwrap() <= 6, "{c}");
    assert!(wait_delivered(&t, 30, 20).await);
    assert_eq!(ids(&t.delivered()), (0..30).collect::<Vec<u64>>());
    assert_eq!(info(&w, &id).await["connectors"][0]["events_given_up"], 0);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_down_for_a_while_gets_everything_once_back() {
    // Reserve a port, then let the target listen on it only later.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let w = start_worker(config()).await;
    let id = deploy(
        &w,
        "hot",
        &program(&format!(
            "url: \"{url}/x\", batch: 4, retries: 1000, max_backoff: 200ms"
        )),
    )
    .await;
    inject(&w, &id, readings(0..10)).await;
    let degraded = wait_for(Duration::from_secs(10), || async {
        let i = info(&w, &id).await;
        i["status"] == "degraded" && i["connectors"][0]["health"] == "down"
    })
    .await;
    let i = info(&w, &id).await;
    assert!(degraded, "{i}");
    assert!(
        i["status_reason"]
            .as_str()
            .unwrap()
            .contains("http connector `H` is down"),
        "{i}"
    );
    assert_eq!(i["connectors"][0]["queued"], 10, "{i}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let t = Target::new(Behaviour::default());
    let _stop = t.serve(listener);
    assert!(wait_delivered(&t, 10, 20).await);
    assert_eq!(ids(&t.delivered()), (0..10).collect::<Vec<u64>>());
    let back = wait_for(Duration::from_secs(5), || async {
        info(&w, &id).await["status"] == "running"
    })
    .await;
    let i = info(&w, &id).await;
    assert!(back, "{i}");
    assert_eq!(i["connectors"][0]["events_given_up"], 0);
    assert!(i["connectors"][0]["retries"].as_u64().unwrap() >= 2, "{i}");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_given_up_after_the_retries_and_counted() {
    let (t, url, _stop) = target::start(Behaviour {
        always: Some(500),
        ..Behaviour::default()
    })
    .await;
    let (t400, url400, _stop400) = target::start(Behaviour {
        always: Some(400),
        ..Behaviour::default()
    })
    .await;
    let w = start_worker(config()).await;
    let src = format!(
        "connector H = http(url: \"{url}/x\", retries: 2, max_backoff: 20ms)\n\
         connector Bad = http(url: \"{url400}/x\", retries: 5)\n\
         stream Hot = Reading .emit(id: id) .to(H) .to(Bad)\n"
    );
    let id = deploy(&w, "hot", &src).await;
    inject(&w, &id, readings(0..3)).await;
    let done = wait_for(Duration::from_secs(10), || async {
        let i = info(&w, &id).await;
        let c = i["connectors"].as_array().unwrap().clone();
        c.iter().all(|c| c["events_given_up"] == 3)
    })
    .await;
    let i = info(&w, &id).await;
    assert!(done, "{i}");
    // 500: the first try and 2 retries per event; 400: refused at once, never retried.
    assert_eq!(t.requests().len(), 9);
    assert_eq!(t400.requests().len(), 3);
    let c: Vec<&Value> = i["connectors"].as_array().unwrap().iter().collect();
    let h = c.iter().find(|c| c["name"] == "H").unwrap();
    let bad = c.iter().find(|c| c["name"] == "Bad").unwrap();
    assert_eq!(
        (h["retries"].as_u64(), bad["retries"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(h["health"], "down");
    assert_eq!(i["status"], "degraded");
    let m = metrics_text(&w).await;
    assert!(m.contains(&format!(
        "varpulis_worker_connector_events_given_up_total{{pipeline=\"{id}\",connector=\"H\",kind=\"http\"}} 3"
    )), "{m}");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_params_reject_the_deploy() {
    let w = start_worker(config()).await;
    for (src, msg) in [
        (
            "connector H = http(url: \"ftp://x\")\nstream S = A .emit(a: a) .to(H)",
            "http:// or https://",
        ),
        (
            "connector H = http(url: \"http://x\")\nstream S = A.from(H)",
            "can only be written to",
        ),
    ] {
        let (s, b) = post(
            &format!("{}/api/v1/pipelines", w.url),
            json!({"name": "bad", "source": src}),
        )
        .await;
        assert_eq!(s, 400, "{b}");
        assert!(b["error"].as_str().unwrap().contains(msg), "{b}");
    }
    // Supplied through the deploy's `connectors` map, with string durations.
    let (t, url, _stop) = target::start(Behaviour::default()).await;
    let (s, b) = post(
        &format!("{}/api/v1/pipelines", w.url),
        json!({"name": "ext", "source": "stream S = A .emit(a: a) .to(Ext)",
               "connectors": {"Ext": {"connector_type": "http",
                   "params": {"url": format!("{url}/e"), "timeout": "2s", "batch": "2"}}}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap();
    inject(&w, id, json!([{"event_type": "A", "fields": {"a": 1}}])).await;
    assert!(wait_delivered(&t, 1, 10).await);
    assert_eq!(t.delivered()[0]["a"], 1);
    w.shutdown().await;
}
