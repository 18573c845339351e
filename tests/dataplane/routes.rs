//! Routes between pipelines on different workers: the tutorial's IoT example with alerts
//! read back from MQTT, and a two-stage route with exact counts.

use crate::harness::Ensemble;
use crate::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iot_readings_filtered_on_one_worker_alert_on_another_and_reach_mqtt() {
    let broker = broker();
    let ens = Ensemble::start(1, 2, opts(&broker, &["temp-worker", "alert-worker"])).await;
    register_connector(&ens, &broker, "Broker").await;
    let mut alerts = Sub::new(&broker, "iot-e2e/alerts").await;
    let group = json!({
        "name": "iot-e2e",
        "pipelines": [
            {"name": "temp-filter", "worker_affinity": "temp-worker",
             "source": "stream TempAlerts = TemperatureReading .where(temperature > 100) .emit(alert_type: \"HIGH_TEMP\", sensor_id: sensor_id, temperature: temperature)"},
            {"name": "alerting", "worker_affinity": "alert-worker",
             "source": "stream Alerts = TempAlerts .emit(alert_type: alert_type, sensor_id: sensor_id, temperature: temperature) .to(Broker, topic: \"iot-e2e/alerts\")"}
        ],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "temp-filter", "event_types": ["Temperature*"]},
            {"from_pipeline": "temp-filter", "to_pipeline": "alerting", "event_types": ["TempAlerts"]}
        ]
    });
    let gid = deploy(&ens, &group).await;
    let (filter_worker, ..) = placement(&ens, &gid, "temp-filter").await;
    let (alert_worker, alert_addr, alert_id) = placement(&ens, &gid, "alerting").await;
    assert_eq!(filter_worker, "temp-worker");
    assert_eq!(alert_worker, "alert-worker");

    let readings = [("T1", 105.5), ("T2", 20.0), ("T3", 150.25), ("T4", 99.9)];
    let events: Vec<Value> = readings
        .iter()
        .map(|(s, t)| json!({"event_type": "TemperatureReading", "fields": {"sensor_id": s, "temperature": t}}))
        .collect();
    let answer = inject_batch(&ens, &gid, &events).await;
    let direct = answer["output_events"].as_array().unwrap();
    assert_eq!(direct.len(), 2, "{answer}");

    let got = alerts.events(2, Duration::from_secs(15)).await;
    let seen: Vec<(String, f64, String)> = got
        .iter()
        .map(|e| {
            (
                field(e, "sensor_id").as_str().unwrap().to_owned(),
                field(e, "temperature").as_f64().unwrap(),
                field(e, "alert_type").as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("T1".to_owned(), 105.5, "HIGH_TEMP".to_owned()),
            ("T3".to_owned(), 150.25, "HIGH_TEMP".to_owned())
        ],
        "{got:?}"
    );
    assert_eq!(got[0]["event_type"], "Alerts");
    let p = wait_events_in(&alert_addr, &alert_id, 2, Duration::from_secs(5)).await;
    assert_eq!(p["events_in"], 2, "{p}");
    assert_eq!(p["events_out"], 2, "{p}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), alerts.rx.recv())
            .await
            .is_err(),
        "no extra alert"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stage_route_across_workers_delivers_exact_counts() {
    let broker = broker();
    let ens = Ensemble::start(1, 2, opts(&broker, &["w-a", "w-b"])).await;
    let group = json!({
        "name": "two-stage",
        "pipelines": [
            {"name": "stage1", "worker_affinity": "w-a",
             "source": "stream Hot = Reading .where(temp > 50) .emit(id: id, temp: temp)\nstream Cold = Reading .where(temp <= 50) .emit(id: id)"},
            {"name": "stage2", "worker_affinity": "w-b",
             "source": "stream Big = Hot .where(temp > 75) .emit(id: id, temp: temp)"}
        ],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "stage1", "event_types": ["Reading"]},
            {"from_pipeline": "stage1", "to_pipeline": "stage2", "event_types": ["Ho*"]}
        ]
    });
    let gid = deploy(&ens, &group).await;
    let (w1, a1, id1) = placement(&ens, &gid, "stage1").await;
    let (w2, a2, id2) = placement(&ens, &gid, "stage2").await;
    assert_ne!(w1, w2, "stages on different workers");

    // 3,000 readings with temp = i % 100: 49 of every 100 are Hot (51..=99 -> 49 values
    // above 50), 24 of those are Big (76..=99).
    let total = 3000u64;
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"event_type": "Reading", "fields": {"id": i, "temp": i % 100}}))
            .collect();
        inject_batch(&ens, &gid, &events).await;
    }
    let hot = total / 100 * 49;
    let big = total / 100 * 24;
    let p1 = wait_events_in(&a1, &id1, total, Duration::from_secs(10)).await;
    assert_eq!(p1["events_out"], total, "{p1}"); // Hot + Cold
    let p2 = wait_events_in(&a2, &id2, hot, Duration::from_secs(20)).await;
    // Settle, then check nothing extra arrived (Cold is not routed) and the counts are exact.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p2 = {
        let again = worker_pipeline(&a2, &id2).await;
        if again.is_null() {
            p2
        } else {
            again
        }
    };
    assert_eq!(p2["events_in"], hot, "{p2}");
    assert_eq!(p2["events_out"], big, "{p2}");
    let metrics = crate::harness::Api::new(Some(crate::harness::WORKER_KEY))
        .get(&format!("{a1}/metrics"))
        .await
        .unwrap()
        .text;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("varpulis_worker_route_events_published_total") && l.contains(&id1))
        .unwrap_or_else(|| panic!("no route metric:\n{metrics}"));
    assert!(line.ends_with(&format!(" {hot}")), "{line}");
}
