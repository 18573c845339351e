//! Rolling update of an MQTT-fed stateful pipeline (issue 11): while a publisher sends numbered
//! QoS-1 messages, a keep-state update replaces the pipeline. Every message must be counted
//! exactly once across the switch (no gap, no duplicate) and the count must continue from the
//! old version's state.

use crate::harness::{free_port, wait_until, Ensemble, Opts};
use crate::migration::group_view;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages published while the update runs.
const N: i64 = 600;

/// A counter fed by MQTT `topic_in`, publishing `Count(n, v, ver)` to `topic_out`.
fn mqtt_counter(port: u16, prefix: &str, ver: i64) -> String {
    format!(
        "connector Bus = mqtt(host: \"127.0.0.1\", port: {port}, qos: 1)\n\
         var count = 0\n\
         fn bump(v: int):\n    count := count + 1\n    emit Count(n: count, v: v, ver: {ver})\n\
         stream Counted = Tick.from(Bus, topic: \"{prefix}/in\") .process(bump(value)) .to(Bus, topic: \"{prefix}/out\")\n"
    )
}

fn client(port: u16, name: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(
        format!("{name}-{:08x}", rand::random::<u32>()),
        "127.0.0.1",
        port,
    );
    o.set_keep_alive(Duration::from_secs(10));
    o.set_inflight(100);
    AsyncClient::new(o, 256)
}

/// Subscribes to `topic`; returns once the broker acknowledged, with the received payloads.
async fn subscribe(port: u16, topic: &str) -> (AsyncClient, mpsc::UnboundedReceiver<Value>) {
    let (c, mut el) = client(port, "live-sub");
    c.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ack = Some(ack_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(a) = ack.take() {
                        let _ = a.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ack_rx)
        .await
        .expect("subscription acknowledged")
        .unwrap();
    (c, rx)
}

/// A publisher whose event loop runs in the background.
fn publisher(port: u16) -> AsyncClient {
    let (c, mut el) = client(port, "live-pub");
    tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    c
}

async fn publish(c: &AsyncClient, topic: &str, value: i64) {
    c.publish(
        topic,
        QoS::AtLeastOnce,
        false,
        json!({"value": value}).to_string(),
    )
    .await
    .unwrap();
}

/// `(n, v, ver)` of an output payload (flat or under `fields`).
fn count_of(v: &Value) -> (i64, i64, i64) {
    let f = |k: &str| {
        crate::harness::event_field(v, k)
            .as_i64()
            .unwrap_or_else(|| panic!("no `{k}` in {v}"))
    };
    (f("n"), f("v"), f("ver"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_fed_pipeline_counts_every_message_once_across_a_rolling_update() {
    let port = free_port();
    let _broker = varpulis_worker::start_embedded_broker(port).expect("embedded broker");
    let prefix = format!("live-mqtt-{:08x}", rand::random::<u32>());
    let ens = Ensemble::start(1, 1, Opts::default()).await;
    let (_sub, mut outs) = subscribe(port, &format!("{prefix}/out")).await;
    let spec = json!({"name": "live-mqtt", "pipelines": [
        {"name": "count", "source": mqtt_counter(port, &prefix, 1), "worker_affinity": "worker-0"}]});
    let r = ens
        .api
        .post(&ens.cluster_url(0, "/pipeline-groups"), &spec)
        .await
        .unwrap();
    r.expect_status(201);
    let gid = r.body["id"].as_str().unwrap().to_owned();
    let me = &ens;
    let gid_ref = &gid;
    wait_until(
        "group running",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async move {
            let g = group_view(me, 0, gid_ref).await?;
            (g["status"] == "running").then_some(())
        },
    )
    .await;

    // Probe with value 0 until the pipeline is subscribed; the probes it counted shift `n`.
    let topic_in = format!("{prefix}/in");
    let pubc = publisher(port);
    let probed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            publish(&pubc, &topic_in, 0).await;
            if let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(300), outs.recv()).await
            {
                return v;
            }
        }
    })
    .await
    .expect("the pipeline never answered a probe");
    let mut probes = vec![count_of(&probed)];
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(700), outs.recv()).await {
        probes.push(count_of(&v));
    }
    let k = probes.len() as i64;
    assert!(probes.iter().all(|&(_, v, ver)| v == 0 && ver == 1), "{probes:?}");

    // Numbered messages flow while the update runs.
    let flow = {
        let (pubc, topic_in) = (pubc.clone(), topic_in.clone());
        tokio::spawn(async move {
            for i in 1..=N {
                publish(&pubc, &topic_in, i).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = ens
        .api
        .with_timeout(Duration::from_secs(60))
        .send(
            reqwest::Method::PUT,
            &ens.cluster_url(0, &format!("/pipeline-groups/{gid}")),
            Some((
                serde_json::to_vec(&json!({"pipelines": [
                    {"name": "count", "source": mqtt_counter(port, &prefix, 2)}]}))
                .unwrap(),
                "application/json",
            )),
        )
        .await
        .unwrap();
    r.expect_ok();
    assert_eq!(r.body["version"], 2, "{}", r.text);
    assert_eq!(r.body["state"], "keep", "{}", r.text);
    flow.await.unwrap();

    // Collect until every number arrived and nothing more comes for a while.
    let mut got: Vec<(i64, i64, i64)> = Vec::new();
    loop {
        let wait = if got.iter().filter(|o| o.1 > 0).count() as i64 >= N {
            Duration::from_millis(1500)
        } else {
            Duration::from_secs(20)
        };
        match tokio::time::timeout(wait, outs.recv()).await {
            Ok(Some(v)) => got.push(count_of(&v)),
            _ => break,
        }
    }
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for o in &got {
        *seen.entry(o.1).or_default() += 1;
    }
    let dups: Vec<i64> = seen.iter().filter(|(_, c)| **c > 1).map(|(v, _)| *v).collect();
    let missing: Vec<i64> = (1..=N).filter(|v| !seen.contains_key(v)).collect();
    assert!(
        dups.is_empty() && missing.is_empty(),
        "{} outputs; duplicated {dups:?}; missing {missing:?}\n{}",
        got.len(),
        ens.all_logs(30)
    );
    assert!(got.iter().all(|o| o.1 >= 1), "late probe outputs: {got:?}");
    // The count continues from the old state: message v is the (k + v)-th counted.
    let off: Vec<&(i64, i64, i64)> = got.iter().filter(|o| o.0 != k + o.1).collect();
    assert!(off.is_empty(), "counts off (k = {k}): {off:?}");
    // Both versions answered, and the old one never after the new one.
    let mut by_v = got.clone();
    by_v.sort_by_key(|o| o.1);
    let first_new = by_v.iter().position(|o| o.2 == 2);
    let first_new = first_new.expect("the new version processed some messages");
    assert!(first_new > 0, "the old version processed none: update too early");
    assert!(
        by_v[first_new..].iter().all(|o| o.2 == 2),
        "the old version processed a message after the switch"
    );
    let g = group_view(&ens, 0, &gid).await.unwrap();
    assert_eq!(g["version"], 2);
}
