//! Consume → process → produce on one in-process worker: every hot reading comes out once per
//! input (no loss; a clean run has no duplicates), keyed by the `key:` field, in per-key order;
//! bad payloads are dropped and counted; the sink's counters and health are in the status.

use crate::broker::{send, start_broker};
use crate::harness::{config, deploy, get, metrics_text, start_worker, wait_for};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_filter_produce_keeps_every_event_and_per_key_order() {
    let Some(broker) = start_broker() else { return };
    broker.create_topic("readings", 3).await;
    broker.create_topic("hot", 3).await;
    let w = start_worker(config()).await;
    let src = format!(
        "connector K = kafka(brokers: \"{}\", group_id: \"pipe-test\", linger_ms: 2, keep_alive: 30)\n\
         stream R = Reading.from(K, topic: \"readings\")\n\
         stream Hot = R .where(temp > 50) .emit(sensor: sensor, seq: seq, temp: temp) .to(K, topic: \"hot\", key: sensor)\n",
        broker.addr
    );
    let id = deploy(&w, "kafka-pipe", &src).await;

    let producer = broker.producer();
    const N: i64 = 600;
    for seq in 0..N {
        let sensor = format!("s{}", seq % 4);
        // Every other reading is hot; the payload shapes of VPL.md §9 (top level and `data`).
        let v = if seq % 3 == 0 {
            json!({"type": "Reading", "data": {"sensor": sensor, "seq": seq, "temp": 40 + (seq % 2) * 20}})
        } else {
            json!({"sensor": sensor, "seq": seq, "temp": 40 + (seq % 2) * 20})
        };
        send(&producer, "readings", &sensor, &v).await;
    }
    for bad in ["not json", "[1,2]", "{\"event_type\": 5}"] {
        producer
            .send(
                rdkafka::producer::FutureRecord::<str, str>::to("readings").payload(bad),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let reader = broker.reader("hot");
    let out = reader
        .read_until(Duration::from_secs(60), |r| r.len() as i64 >= N / 2)
        .await;
    assert_eq!(out.len() as i64, N / 2, "hot outputs");
    let mut last: HashMap<String, i64> = HashMap::new();
    for (_, key, v) in &out {
        assert_eq!(v["event_type"], "Hot");
        let sensor = v["sensor"].as_str().unwrap();
        assert_eq!(key.as_deref(), Some(sensor), "record key = `key:` field");
        let seq = v["seq"].as_i64().unwrap();
        assert_eq!(seq % 2, 1, "only hot readings: {v}");
        if let Some(prev) = last.insert(sensor.to_owned(), seq) {
            assert!(seq > prev, "per-key order: {seq} after {prev} for {sensor}");
        }
    }
    // Nothing more than once.
    let extra = reader
        .read_until(Duration::from_millis(1500), |_| false)
        .await;
    assert!(extra.is_empty(), "duplicates in a clean run: {extra:?}");

    let url = format!("{}/api/v1/pipelines/{id}", w.url);
    assert!(
        wait_for(Duration::from_secs(10), || async {
            let (_, b) = get(&url).await;
            b["connectors"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["kind"] == "kafka"))
                .is_some_and(|c| c["events_sent"] == N / 2 && c["queued"] == 0)
        })
        .await,
        "kafka sink counters: {}",
        get(&url).await.1
    );
    let (_, b) = get(&url).await;
    assert_eq!(b["status"], "running", "{b}");
    assert_eq!(b["events_in"], N, "{b}");
    let k = &b["connectors"][0];
    assert_eq!(k["name"], "K");
    assert_eq!(k["health"], "ok");
    assert_eq!(k["events_given_up"], 0);
    // The source side of the same connector: healthy, every record received (the three bad
    // payloads too: they are counted as received, then dropped).
    let src = b["connectors"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["role"] == "source"))
        .cloned()
        .unwrap_or_else(|| panic!("no kafka source in {b}"));
    assert_eq!(src["name"], "K", "{src}");
    assert_eq!(src["kind"], "kafka", "{src}");
    assert_eq!(src["health"], "ok", "{src}");
    assert_eq!(src["events_received"], N + 3, "{src}");
    let metrics = metrics_text(&w).await;
    assert!(
        metrics.contains("varpulis_worker_connector_events_sent_total")
            && metrics.contains("kind=\"kafka\""),
        "{metrics}"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_degrades_the_pipeline() {
    let Some(broker) = start_broker() else { return };
    let addr = broker.addr.clone();
    drop(broker);
    let w = start_worker(config()).await;
    let src = format!(
        "connector K = kafka(brokers: \"{addr}\", message_timeout_ms: 1000)\n\
         stream R = Reading.from(K, topic: \"in\")\n\
         stream Out = R .emit(x: x) .to(K, topic: \"out\")\n"
    );
    let id = deploy(&w, "kafka-down", &src).await;
    let url = format!("{}/api/v1/pipelines/{id}", w.url);
    assert!(
        wait_for(Duration::from_secs(20), || async {
            get(&url).await.1["status"] == "degraded"
        })
        .await,
        "{}",
        get(&url).await.1
    );
    let (_, b) = get(&url).await;
    assert!(
        b["status_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("kafka"),
        "{b}"
    );
    // The source connection is listed down with librdkafka's error.
    assert!(
        wait_for(Duration::from_secs(20), || async {
            get(&url).await.1["connectors"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["role"] == "source"))
                .is_some_and(|c| c["health"] == "down" && c["status_reason"].is_string())
        })
        .await,
        "{}",
        get(&url).await.1
    );
    w.shutdown().await;
}
