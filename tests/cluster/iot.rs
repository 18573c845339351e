//! The IoT example of tutorial part 9 (temperature and pressure alerts), on a single-node
//! coordinator (a Raft group of one, the default without `--raft-peers`) with two workers.

use crate::harness::{event_field, Ensemble, Opts};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iot_alerts_are_routed_and_carry_their_fields() {
    let opts = Opts {
        worker_ids: vec!["temp-worker".into(), "pressure-worker".into()],
        ..Opts::default()
    };
    let ens = Ensemble::start(1, 2, opts).await;
    let api = &ens.api;
    let group = json!({
        "name": "iot-monitoring",
        "pipelines": [
            {"name": "temp-alerts",
             "source": "stream TempAlerts = TemperatureReading .where(temperature > 100) .emit(alert_type: \"HIGH_TEMP\", sensor_id: sensor_id, temperature: temperature)",
             "worker_affinity": "temp-worker"},
            {"name": "pressure-alerts",
             "source": "stream PressureAlerts = PressureReading .where(pressure > 200) .emit(alert_type: \"HIGH_PRESSURE\", sensor_id: sensor_id, pressure: pressure)",
             "worker_affinity": "pressure-worker"}
        ],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "temp-alerts", "event_types": ["Temperature*"]},
            {"from_pipeline": "_external", "to_pipeline": "pressure-alerts", "event_types": ["Pressure*"]}
        ]
    });
    let gid = ens.create_group(0, &group).await;
    let inject = ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject"));

    let r = api
        .post(&inject, &json!({"event_type": "TemperatureReading", "fields": {"sensor_id": "T1", "temperature": 105.5}}))
        .await
        .unwrap();
    r.expect_status(200);
    assert_eq!(r.body["routed_to"], "temp-alerts", "{}", r.text);
    assert_eq!(r.body["worker_id"], "temp-worker", "{}", r.text);
    let out = r.body["worker_response"]["output_events"]
        .as_array()
        .unwrap();
    assert_eq!(out.len(), 1, "{}", r.text);
    assert_eq!(out[0]["event_type"], "TempAlerts", "{}", r.text);
    assert_eq!(
        event_field(&out[0], "alert_type"),
        "HIGH_TEMP",
        "{}",
        r.text
    );
    assert_eq!(event_field(&out[0], "sensor_id"), "T1", "{}", r.text);
    assert_eq!(event_field(&out[0], "temperature"), 105.5, "{}", r.text);

    let r = api
        .post(&inject, &json!({"event_type": "PressureReading", "fields": {"sensor_id": "P1", "pressure": 250.0}}))
        .await
        .unwrap();
    r.expect_status(200);
    assert_eq!(r.body["routed_to"], "pressure-alerts", "{}", r.text);
    assert_eq!(r.body["worker_id"], "pressure-worker", "{}", r.text);
    let out = r.body["worker_response"]["output_events"]
        .as_array()
        .unwrap();
    assert_eq!(out.len(), 1, "{}", r.text);
    assert_eq!(out[0]["event_type"], "PressureAlerts", "{}", r.text);
    assert_eq!(
        event_field(&out[0], "alert_type"),
        "HIGH_PRESSURE",
        "{}",
        r.text
    );
    assert_eq!(event_field(&out[0], "sensor_id"), "P1", "{}", r.text);
    assert_eq!(event_field(&out[0], "pressure"), 250.0, "{}", r.text);

    // Below the thresholds: accepted, no alert.
    for (ty, fields) in [
        (
            "TemperatureReading",
            json!({"sensor_id": "T2", "temperature": 20.0}),
        ),
        (
            "PressureReading",
            json!({"sensor_id": "P2", "pressure": 100.0}),
        ),
    ] {
        let r = api
            .post(&inject, &json!({"event_type": ty, "fields": fields}))
            .await
            .unwrap();
        r.expect_status(200);
        assert_eq!(r.body["worker_response"]["accepted"], true, "{}", r.text);
        assert_eq!(
            r.body["worker_response"]["output_events"],
            json!([]),
            "{}",
            r.text
        );
    }

    let r = api.get(&ens.cluster_url(0, "/topology")).await.unwrap();
    r.expect_status(200);
    let pipelines = r.body["groups"][0]["pipelines"].as_array().unwrap();
    for (name, worker) in [
        ("temp-alerts", "temp-worker"),
        ("pressure-alerts", "pressure-worker"),
    ] {
        let p = pipelines.iter().find(|p| p["name"] == name).expect(name);
        assert_eq!(p["worker_id"], worker, "{p}");
    }
}
