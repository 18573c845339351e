//! A Tier 3 program in a worker (issue 21): deployed through the coordinator, fed over MQTT in
//! arrival order, with a named pattern whose absence completes on time, a watermarked window that
//! closes on time, and a wall-clock timer whose ticks drive both in a quiet worker.

use crate::harness::{event_field, free_port, mqtt_subscriber, Ensemble, Opts};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::mpsc;

fn program(port: u16, prefix: &str) -> String {
    format!(
        "connector Bus = mqtt(host: \"127.0.0.1\", port: {port}, qos: 1)\n\
         stream ReqIn = Req.from(Bus, topic: \"{prefix}/req\")\n\
         stream AckIn = Ack.from(Bus, topic: \"{prefix}/ack\")\n\
         pattern NoAck = SEQ(Req as r, NOT Ack where id == r.id) within 800ms partition by id\n\
         stream Miss = NoAck .emit(id: r.id) .to(Bus, topic: \"{prefix}/miss\")\n\
         stream Counts = Req .watermark(out_of_order: 100ms) .window(500ms)\n    \
             .aggregate(n: count()) .emit() .to(Bus, topic: \"{prefix}/win\")\n\
         stream Beat = timer(200ms) .where(false) .emit(at: timestamp)\n"
    )
}

fn options(port: u16, name: &str) -> MqttOptions {
    let mut o = MqttOptions::new(
        format!("{name}-{:08x}", rand::random::<u32>()),
        "127.0.0.1",
        port,
    );
    o.set_keep_alive(Duration::from_secs(10));
    o
}

fn publisher(port: u16) -> AsyncClient {
    let (c, mut el) = AsyncClient::new(options(port, "t3-pub"), 256);
    tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    c
}

async fn send(c: &AsyncClient, topic: &str, id: &str) {
    c.publish(
        topic,
        QoS::AtLeastOnce,
        false,
        json!({ "id": id }).to_string(),
    )
    .await
    .unwrap();
}

/// The `id`s of the misses received within `window`.
async fn misses_within(
    rx: &mut mpsc::UnboundedReceiver<Value>,
    window: Duration,
) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(v)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if let Some(id) = event_field(&v, "id").as_str() {
            ids.insert(id.to_string());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absences_and_windows_complete_on_time_in_a_worker_fed_over_mqtt() {
    let port = free_port();
    let _broker = varpulis_worker::start_embedded_broker(port).expect("embedded broker");
    let prefix = format!("t3-{:08x}", rand::random::<u32>());
    let ens = Ensemble::start(1, 1, Opts::default()).await;
    let (_s1, mut misses) =
        mqtt_subscriber(options(port, "t3-miss"), 256, &format!("{prefix}/miss")).await;
    let (_s2, mut windows) =
        mqtt_subscriber(options(port, "t3-win"), 256, &format!("{prefix}/win")).await;
    let spec = json!({"name": "tier3", "pipelines": [
        {"name": "t3", "source": program(port, &prefix), "worker_affinity": "worker-0"}]});
    ens.deploy_group(0, &spec).await;

    let (req, ack) = (format!("{prefix}/req"), format!("{prefix}/ack"));
    let pubc = publisher(port);
    // Probe until the pipeline is subscribed: an unacknowledged request comes back as a miss
    // about 800 ms later, with no other event to move time on (the timer's ticks do).
    let probe = tokio::time::timeout(Duration::from_secs(30), async {
        let mut k = 0;
        loop {
            k += 1;
            send(&pubc, &req, &format!("probe-{k}")).await;
            if let Ok(Some(v)) =
                tokio::time::timeout(Duration::from_millis(1_500), misses.recv()).await
            {
                return v;
            }
        }
    })
    .await
    .expect("an unacknowledged request never came back as a miss");
    assert!(
        event_field(&probe, "id")
            .as_str()
            .unwrap()
            .starts_with("probe-"),
        "{probe}"
    );
    // Let the probes still in flight come back.
    misses_within(&mut misses, Duration::from_millis(1_500)).await;

    // `a` is acknowledged in time, `b` is not.
    send(&pubc, &req, "a").await;
    send(&pubc, &req, "b").await;
    send(&pubc, &ack, "a").await;
    let got = misses_within(&mut misses, Duration::from_millis(3_000)).await;
    assert_eq!(got, BTreeSet::from(["b".to_string()]), "{got:?}");

    // The watermarked window over requests closed on time and counted them.
    let mut total = 0;
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(200), windows.recv()).await {
        total += event_field(&v, "n").as_i64().unwrap_or(0);
    }
    assert!(total >= 3, "windows counted {total} requests");

    // The engine's counters are worker metrics: the timer ticked.
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", ens.workers[0].url))
        .header("x-api-key", &ens.opts.worker_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ticks: u64 = text
        .lines()
        .find(|l| l.starts_with("varpulis_worker_timer_ticks_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(ticks >= 5, "timer ticks: {ticks}\n{text}");
    assert!(
        text.contains("varpulis_worker_late_events_total{"),
        "{text}"
    );
}
