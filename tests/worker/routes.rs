//! Inter-pipeline routes on the worker alone (no coordinator): deploy requests carrying
//! `routes`, the broker precedence, the wire format on the route topic, and the degraded mark
//! without a broker (docs/dataplane.md).

use crate::harness::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use std::time::Duration;

fn deploy_body(name: &str, source: &str, routes: Value) -> Value {
    json!({"name": name, "source": source, "routes": routes})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_between_two_pipelines_uses_the_worker_broker_over_the_deploy_one() {
    let broker = varpulis_worker::start_embedded_broker(free_port()).unwrap();
    let cfg = varpulis_worker::WorkerConfig {
        mqtt_url: Some(format!("mqtt://127.0.0.1:{}", broker.port())),
        ..config()
    };
    let w = start_worker(cfg).await;
    // The deploy names a broker nobody listens on: the worker's own --mqtt-url must win.
    let dead = format!("mqtt://127.0.0.1:{}", free_port());
    let topic = "varpulis/t/a/b";
    let route =
        |pipeline: &str| json!([{"pipeline": pipeline, "topic": topic, "event_types": ["Ho*"]}]);

    // A probe on the route topic checks the wire format.
    let mut o = MqttOptions::new("route-probe", "127.0.0.1", broker.port());
    o.set_keep_alive(Duration::from_secs(5));
    let (probe, mut probe_loop) = AsyncClient::new(o, 16);
    probe.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = probe_loop.poll().await.unwrap() {
            break;
        }
    }

    let (s, b) = post(
        &format!("{}/api/v1/pipelines", w.url),
        deploy_body(
            "b",
            "stream Seen = Hot .emit(id: id, temp: temp)",
            json!({"inbound": route("a"), "mqtt_url": dead, "session": "vp-test-b-r0"}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let b_id = b["id"].as_str().unwrap().to_owned();
    let (s, a) = post(
        &format!("{}/api/v1/pipelines", w.url),
        deploy_body(
            "a",
            "stream Hot = Reading .where(temp > 50) .emit(id: id, temp: temp)\nstream Cold = Reading .where(temp <= 50) .emit(id: id)",
            json!({"outbound": route("b"), "mqtt_url": dead}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    let a_id = a["id"].as_str().unwrap().to_owned();

    let events: Vec<Value> = (0..10)
        .map(|i| json!({"event_type": "Reading", "fields": {"id": i, "temp": i * 10}, "timestamp": "2026-01-01T00:00:00Z"}))
        .collect();
    let (s, r) = post(
        &format!("{}/api/v1/pipelines/{a_id}/events-batch", w.url),
        json!({ "events": events }),
    )
    .await;
    assert_eq!(s, 200, "{r}");

    // 60..=90 are hot: 4 events, sent as one message (an array) keeping the event time.
    let msg = loop {
        match tokio::time::timeout(Duration::from_secs(10), probe_loop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => break p,
            Ok(Ok(_)) => {}
            other => panic!("no route message: {other:?}"),
        }
    };
    let v: Value = serde_json::from_slice(&msg.payload).unwrap();
    let items = v.as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(items.len(), 4, "{v}");
    assert_eq!(items[0]["event_type"], "Hot");
    assert_eq!(items[0]["timestamp"], "2026-01-01T00:00:00Z");
    assert_eq!(items[0]["fields"], json!({"id": 6, "temp": 60}));

    let url = format!("{}/api/v1/pipelines/{b_id}", w.url);
    let url = &url;
    assert!(
        wait_for(Duration::from_secs(10), || async move {
            get(url).await.1["events_out"] == 4
        })
        .await,
        "{}",
        get(url).await.1
    );
    let (_, info) = get(url).await;
    assert_eq!(info["events_in"], 4, "{info}");
    assert_eq!(info["status"], "running", "{info}");
    let metrics = metrics_text(&w).await;
    let received = metrics
        .lines()
        .find(|l| l.starts_with("varpulis_worker_route_events_received_total") && l.contains(&b_id))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(received.ends_with(" 4"), "{received}");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_without_any_broker_run_degraded_and_bad_topics_are_rejected() {
    let w = start_worker(config()).await;
    let (s, b) = post(
        &format!("{}/api/v1/pipelines", w.url),
        deploy_body(
            "a",
            "stream Hot = Reading .emit(id: id)",
            json!({"outbound": [{"pipeline": "b", "topic": "x/y", "event_types": ["*"]}]}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["status"], "degraded", "{b}");
    let id = b["id"].as_str().unwrap();
    let (_, info) = get(&format!("{}/api/v1/pipelines/{id}", w.url)).await;
    assert!(
        info["status_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("--mqtt-url"),
        "{info}"
    );
    // Injecting still works: the pipeline is never blocked by its routes.
    let (s, r) = post(
        &format!("{}/api/v1/pipelines/{id}/events", w.url),
        json!({"event_type": "Reading", "fields": {"id": 1}}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["output_events"].as_array().unwrap().len(), 1, "{r}");

    let (s, e) = post(
        &format!("{}/api/v1/pipelines", w.url),
        deploy_body(
            "bad",
            "stream Hot = Reading .emit(id: id)",
            json!({"inbound": [{"pipeline": "a", "topic": "x/#", "event_types": ["*"]}]}),
        ),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["code"], "invalid_connector", "{e}");
    w.shutdown().await;
}
