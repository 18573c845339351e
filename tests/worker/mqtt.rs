//! MQTT in -> pipeline -> MQTT out through the embedded broker.

use crate::harness::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Publishes `payload` to `topic` every 200 ms until a message arrives on `out_topic`.
async fn publish_until_alert(
    port: u16,
    topic: &str,
    payload: Value,
    out_topic: &str,
    bad_first: bool,
) -> Value {
    let mut opts = MqttOptions::new(format!("probe-{}", free_port()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    client.subscribe(out_topic, QoS::AtLeastOnce).await.unwrap();
    let started = Instant::now();
    let mut next_publish = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no alert on {out_topic}"
        );
        if Instant::now() >= next_publish {
            if bad_first {
                client
                    .publish(topic, QoS::AtLeastOnce, false, b"not json".to_vec())
                    .await
                    .unwrap();
            }
            client
                .publish(
                    topic,
                    QoS::AtLeastOnce,
                    false,
                    serde_json::to_vec(&payload).unwrap(),
                )
                .await
                .unwrap();
            next_publish = Instant::now() + Duration::from_millis(200);
        }
        if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
            tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await
        {
            if p.topic == out_topic {
                return serde_json::from_slice(&p.payload).unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_events_flow_through_the_pipeline_and_back_out() {
    let broker = varpulis_worker::start_embedded_broker(free_port()).unwrap();
    let w = start_worker(config()).await;
    let source = format!(
        "connector Plant = mqtt(host: \"127.0.0.1\", port: {}, client_id: \"vp-test\")\n\
         stream Readings = PumpReading.from(Plant, topic: \"plant/pumps/#\")\n\
         stream Alerts = Readings .where(rpm > 3000) .emit(pump: pump, rpm: rpm)\n    .to(Plant, topic: \"plant/alerts\")\n",
        broker.port()
    );
    let id = deploy(&w, "mqtt", &source).await;
    let alert = publish_until_alert(
        broker.port(),
        "plant/pumps/7",
        json!({"pump": "P7", "rpm": 3500.0}),
        "plant/alerts",
        true,
    )
    .await;
    assert_eq!(alert["event_type"], "Alerts");
    assert_eq!(alert["pump"], "P7");
    assert_eq!(alert["rpm"], json!(3500));
    assert!(
        alert["rpm"].is_i64(),
        "integral numbers become int: {alert}"
    );
    assert!(alert["timestamp"].is_string());
    let text = metrics_text(&w).await;
    let dropped = text
        .lines()
        .find(|l| l.starts_with("varpulis_worker_payloads_dropped_total") && l.contains(&id))
        .unwrap();
    assert!(
        !dropped.ends_with(" 0"),
        "bad payloads are counted: {dropped}"
    );
    let (_, info) = get(&format!("{}/api/v1/pipelines/{id}", w.url)).await;
    assert_eq!(info["status"], "running", "{info}");
    // The source connection is listed with its health and what it received (the bad
    // payloads too).
    let src = info["connectors"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["role"] == "source"))
        .cloned()
        .unwrap_or_else(|| panic!("no source connector in {info}"));
    assert_eq!(src["name"], "Plant", "{src}");
    assert_eq!(src["kind"], "mqtt", "{src}");
    assert_eq!(src["health"], "ok", "{src}");
    assert!(src["events_received"].as_u64().unwrap_or(0) >= 2, "{src}");
    // And so is the publisher side of the same connector, with what it published.
    let sink = info["connectors"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["kind"] == "mqtt" && c["role"].is_null())
        })
        .cloned()
        .unwrap_or_else(|| panic!("no mqtt output connector in {info}"));
    assert_eq!(sink["name"], "Plant", "{sink}");
    assert_eq!(sink["health"], "ok", "{sink}");
    assert!(sink["events_sent"].as_u64().unwrap_or(0) >= 1, "{sink}");
    assert_eq!(sink["events_given_up"], 0, "{sink}");
    let up = format!(
        "varpulis_worker_connector_up{{pipeline=\"{id}\",connector=\"Plant\",kind=\"mqtt\",role=\"source\"}} 1"
    );
    assert!(text.lines().any(|l| l == up), "{up} missing from:\n{text}");
    assert!(
        text.lines().any(|l| l.starts_with(&format!(
            "varpulis_worker_connector_events_received_total{{pipeline=\"{id}\",connector=\"Plant\""
        ))),
        "{text}"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_can_come_from_the_deploy_request() {
    let broker = varpulis_worker::start_embedded_broker(free_port()).unwrap();
    let w = start_worker(config()).await;
    let source = "stream In = Reading.from(Bus, topic: \"in/+\")\n\
                  stream Out = In .where(v > 1) .emit(v: v) .to(Bus)\n";
    let (s, b) = post(
        &format!("{}/api/v1/pipelines", w.url),
        json!({"name": "ext", "source": source, "connectors": {"Bus": {"connector_type": "mqtt",
            "params": {"host": "127.0.0.1", "port": broker.port().to_string(), "topic": "out/default"}}}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let alert = publish_until_alert(
        broker.port(),
        "in/x",
        json!({"data": {"v": 2}}),
        "out/default",
        false,
    )
    .await;
    assert_eq!(alert["event_type"], "Out");
    assert_eq!(alert["v"], 2);
    // An unknown connector is a 400 that deploys nothing.
    let (s, b) = post(
        &format!("{}/api/v1/pipelines", w.url),
        json!({"name": "x", "source": source}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_degrades_the_pipeline_not_the_worker() {
    let w = start_worker(config()).await;
    let source = format!(
        "connector Dead = mqtt(host: \"127.0.0.1\", port: {})\nstream In = Reading.from(Dead, topic: \"t\")\n",
        free_port()
    );
    let id = deploy(&w, "dead", &source).await;
    let url = format!("{}/api/v1/pipelines/{id}", w.url);
    assert!(
        wait_for(Duration::from_secs(10), || async {
            get(&url).await.1["status"] == "degraded"
        })
        .await
    );
    let (_, info) = get(&url).await;
    assert!(
        info["status_reason"].as_str().unwrap().contains("Dead"),
        "{info}"
    );
    // The source connection itself is shown down, with the error, in the status and metrics.
    let src = &info["connectors"][0];
    assert_eq!(src["name"], "Dead", "{info}");
    assert_eq!(src["role"], "source", "{info}");
    assert_eq!(src["health"], "down", "{info}");
    assert!(
        src["status_reason"].as_str().unwrap_or("").contains("Dead"),
        "{info}"
    );
    let text = metrics_text(&w).await;
    let up = format!(
        "varpulis_worker_connector_up{{pipeline=\"{id}\",connector=\"Dead\",kind=\"mqtt\",role=\"source\"}} 0"
    );
    assert!(text.lines().any(|l| l == up), "{up} missing from:\n{text}");
    let h = client()
        .get(format!("{}/health", w.url))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status().as_u16(), 200);
    w.shutdown().await;
}
