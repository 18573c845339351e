//! The NATS connector on one standalone worker: `.from` a subject, `.to` another, round trip
//! through a real nats-server; a connector whose server is down marks the pipeline degraded.

use crate::harness::{free_port, wait_until, Api, Proc};
use crate::{next_message, start_nats};
use serde_json::{json, Value};
use std::time::Duration;

const KEY: &str = "worker-secret";

fn start_worker(logs: &std::path::Path) -> (Proc, String) {
    let port = free_port();
    let args = vec![
        "server".to_owned(),
        "--port".into(),
        port.to_string(),
        "--api-key".into(),
        KEY.into(),
        "--worker-id".into(),
        "nats-solo".into(),
    ];
    (
        Proc::spawn("worker", args, logs),
        format!("http://127.0.0.1:{port}"),
    )
}

async fn deploy(api: &Api, base: &str, source: &str) -> String {
    let url = format!("{base}/api/v1/pipelines");
    let body = json!({"name": "nats-pipe", "source": source});
    let r = wait_until(
        "worker up",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async { api.post(&url, &body).await.ok() },
    )
    .await;
    r.expect_status(201);
    r.body["id"].as_str().expect("pipeline id").to_owned()
}

async fn status(api: &Api, base: &str, id: &str) -> Value {
    api.get(&format!("{base}/api/v1/pipelines/{id}"))
        .await
        .expect("pipeline info")
        .body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_from_and_to_round_trip_on_one_worker() {
    let Some(nats) = start_nats() else { return };
    let logs = tempfile::tempdir().unwrap();
    let (_worker, base) = start_worker(logs.path());
    let api = Api::new(Some(KEY));
    let source = format!(
        "connector Bus = nats(servers: \"{}\")\n\
         stream Readings = Reading.from(Bus, topic: \"plant.readings.>\")\n\
         stream Hot = Readings .where(temp > 50) .emit(id: id, temp: temp) .to(Bus, topic: \"plant.hot\")\n",
        nats.url
    );
    let id = deploy(&api, &base, &source).await;

    let client = async_nats::connect(&nats.url).await.unwrap();
    let mut hot = client.subscribe("plant.hot").await.unwrap();
    client.flush().await.unwrap();

    // The worker subscribes in the background: publish until the first output shows up.
    let mut ready = false;
    for _ in 0..100 {
        let warm = json!({"event_type": "Reading", "id": "warm-up", "temp": 99});
        client
            .publish("plant.readings.p1", warm.to_string().into())
            .await
            .unwrap();
        if next_message(&mut hot, Duration::from_millis(200))
            .await
            .is_some()
        {
            ready = true;
            break;
        }
    }
    assert!(ready, "no output on plant.hot after 20 s");

    // A cold reading is filtered out, a hot one comes back with the .to payload shape; the
    // type comes from the source when the payload names none, fields from `data`.
    let cold = json!({"event_type": "Reading", "id": "cold", "temp": 10});
    let real = json!({"data": {"id": "real", "temp": 75}});
    for payload in [cold, real] {
        client
            .publish("plant.readings.p2", payload.to_string().into())
            .await
            .unwrap();
    }
    // Events injected over REST reach the NATS sink too.
    let r = api
        .post(
            &format!("{base}/api/v1/pipelines/{id}/events"),
            &json!({"event_type": "Reading", "fields": {"id": "rest", "temp": 80}}),
        )
        .await
        .unwrap();
    r.expect_status(200);
    assert_eq!(
        r.body["output_events"][0]["fields"]["id"], "rest",
        "{}",
        r.text
    );

    let mut seen = Vec::new();
    while !(seen.contains(&"real".to_owned()) && seen.contains(&"rest".to_owned())) {
        let msg = next_message(&mut hot, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("missing outputs, got {seen:?}"));
        let v: Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(v["event_type"], "Hot", "{v}");
        assert!(v["timestamp"].is_string(), "{v}");
        let who = v["id"].as_str().unwrap().to_owned();
        assert_ne!(who, "cold", "a filtered reading was published: {v}");
        if who == "real" {
            assert_eq!(v["temp"], 75, "{v}");
            assert!(v["temp"].is_i64(), "{v}");
        }
        seen.push(who);
    }

    // Undecodable payloads are dropped without hurting the pipeline.
    client
        .publish("plant.readings.p3", "not json".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let info = status(&api, &base, &id).await;
    assert_eq!(info["status"], "running", "{info}");
    assert!(info["events_in"].as_u64().unwrap() >= 3, "{info}");
    // Both sides of the connector are listed, healthy, with their counters.
    let entry = |source: bool| {
        info["connectors"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["kind"] == "nats" && (c["role"] == "source") == source)
            })
            .cloned()
            .unwrap_or_else(|| panic!("no nats entry (source: {source}) in {info}"))
    };
    let (src, sink) = (entry(true), entry(false));
    assert_eq!(src["health"], "ok", "{src}");
    assert!(src["events_received"].as_u64().unwrap_or(0) >= 3, "{src}");
    assert_eq!(sink["health"], "ok", "{sink}");
    assert!(sink["events_sent"].as_u64().unwrap_or(0) >= 2, "{sink}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_connector_with_server_down_marks_pipeline_degraded() {
    let Some(nats) = start_nats() else { return };
    // A port nobody listens on (the server above only proves the binary exists).
    let dead = format!("nats://127.0.0.1:{}", free_port());
    drop(nats);
    let logs = tempfile::tempdir().unwrap();
    let (_worker, base) = start_worker(logs.path());
    let api = Api::new(Some(KEY));
    let source = format!(
        "connector Bus = nats(servers: \"{dead}\")\n\
         stream Readings = Reading.from(Bus, topic: \"in\")\n"
    );
    let id = deploy(&api, &base, &source).await;
    let info = wait_until(
        "pipeline degraded",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let info = status(&api, &base, &id).await;
            (info["status"] == "degraded").then_some(info)
        },
    )
    .await;
    let reason = info["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("nats connector `Bus`"), "{info}");
    let src = &info["connectors"][0];
    assert_eq!(src["role"], "source", "{info}");
    assert_eq!(src["health"], "down", "{info}");
}
