//! Data-plane tests (issue 7): inter-pipeline routes over MQTT between real `varpulis server`
//! processes, with a coordinator shipping the route topics and its `--mqtt-url` in deploys.
//!
//! The broker is the embedded rumqttd (one per test, on a free port), or the external broker
//! named by `VARPULIS_TEST_MQTT_URL` (e.g. `mqtt://127.0.0.1:1883` with mosquitto running).
//! Run: `cargo test -p varpulis --test dataplane`.

#[path = "../cluster/harness.rs"]
mod harness;

mod failover;
mod inject;
mod mandelbrot;
mod routes;

use harness::{free_port, wait_until, Api, Ensemble, Opts, WORKER_KEY};
use rumqttc::{AsyncClient, MqttOptions};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;

/// The broker a test uses.
pub struct Broker {
    /// `mqtt://host:port`.
    pub url: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    _embedded: Option<varpulis_worker::BrokerHandle>,
}

/// `VARPULIS_TEST_MQTT_URL` when set, else a fresh embedded broker. Topics are made unique per
/// test by the group names, so tests can share an external broker.
pub fn broker() -> Broker {
    if let Ok(url) = std::env::var("VARPULIS_TEST_MQTT_URL") {
        if !url.trim().is_empty() {
            let addr = varpulis_worker::config::parse_mqtt_url(&url).expect("mqtt url");
            return Broker {
                url,
                host: addr.host,
                port: addr.port,
                _embedded: None,
            };
        }
    }
    let port = free_port();
    let handle = varpulis_worker::start_embedded_broker(port).expect("embedded broker");
    Broker {
        url: format!("mqtt://127.0.0.1:{port}"),
        host: "127.0.0.1".into(),
        port,
        _embedded: Some(handle),
    }
}

/// Tight timings; the coordinators ship `broker` to workers in deploys.
pub fn opts(broker: &Broker, worker_ids: &[&str]) -> Opts {
    Opts {
        worker_ids: worker_ids.iter().map(|s| s.to_string()).collect(),
        coord_extra_args: vec!["--mqtt-url".into(), broker.url.clone()],
        ..Opts::default()
    }
}

/// A test subscriber collecting the JSON messages of one topic.
pub struct Sub {
    /// Received payloads, in order.
    pub rx: mpsc::UnboundedReceiver<Value>,
    _client: AsyncClient,
}

impl Sub {
    /// Subscribes and returns once the broker acknowledged the subscription.
    pub async fn new(broker: &Broker, topic: &str) -> Sub {
        let mut o = MqttOptions::new(
            format!("test-sub-{}", rand::random::<u32>()),
            broker.host.clone(),
            broker.port,
        );
        o.set_keep_alive(Duration::from_secs(10));
        o.set_max_packet_size(16 << 20, 16 << 20);
        let (client, rx) = harness::mqtt_subscriber(o, 64, topic).await;
        Sub {
            rx,
            _client: client,
        }
    }

    /// Waits for `n` messages (each may hold one event or an array) and returns their events.
    pub async fn events(&mut self, n: usize, timeout: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Value::Array(items))) => out.extend(items),
                Ok(Some(v)) => out.push(v),
                _ => panic!("got {} of {n} events on the topic: {out:?}", out.len()),
            }
        }
        out
    }
}

/// Registers an MQTT connector named `name` pointing at `broker`.
pub async fn register_connector(ens: &Ensemble, broker: &Broker, name: &str) {
    let r = ens
        .api
        .post(
            &ens.cluster_url(0, "/connectors"),
            &json!({"name": name, "connector_type": "mqtt",
                    "params": {"host": broker.host, "port": broker.port}}),
        )
        .await
        .unwrap();
    r.expect_status(201);
}

/// Deploys a group and waits until every placement runs; returns its id.
pub async fn deploy(ens: &Ensemble, spec: &Value) -> String {
    ens.deploy_group(0, spec).await
}

/// `(worker_id, worker_address, pipeline_id)` of a running placement.
pub async fn placement(ens: &Ensemble, gid: &str, pipeline: &str) -> (String, String, String) {
    let r = ens
        .api
        .get(&ens.cluster_url(0, &format!("/pipeline-groups/{gid}")))
        .await
        .unwrap();
    let p = r.body["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pipeline_name"] == pipeline)
        .unwrap_or_else(|| panic!("no placement {pipeline}: {}", r.text))
        .clone();
    let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
    (s("worker_id"), s("worker_address"), s("pipeline_id"))
}

/// `GET {worker}/api/v1/pipelines/{id}` with the worker key (Null when unreachable).
pub async fn worker_pipeline(address: &str, id: &str) -> Value {
    let api = Api::new(Some(WORKER_KEY)).with_timeout(Duration::from_secs(3));
    match api.get(&format!("{address}/api/v1/pipelines/{id}")).await {
        Ok(r) if r.ok() => r.body,
        _ => Value::Null,
    }
}

/// Waits until the pipeline's `events_in` reaches `n` (panics after `timeout`).
pub async fn wait_events_in(address: &str, id: &str, n: u64, timeout: Duration) -> Value {
    wait_until(
        &format!("{id} on {address} to have {n} events in"),
        timeout,
        Duration::from_millis(100),
        || async move {
            let p = worker_pipeline(address, id).await;
            (p["events_in"].as_u64().unwrap_or(0) >= n).then_some(p)
        },
    )
    .await
}

/// Posts `events` to the group's coordinator inject-batch.
pub async fn inject_batch(ens: &Ensemble, gid: &str, events: &[Value]) -> Value {
    let r = ens
        .api
        .post(
            &ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject-batch")),
            &Value::Array(events.to_vec()),
        )
        .await
        .unwrap();
    r.expect_status(200);
    r.body
}

/// A field of an event (flat or nested under `fields`).
pub fn field<'a>(event: &'a Value, name: &str) -> &'a Value {
    harness::event_field(event, name)
}
