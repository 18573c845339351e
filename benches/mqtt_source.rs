//! MQTT source pipeline end to end (issue 22 item 5): publisher → embedded broker → worker
//! `.from(Bus)` → filter → `.to(Bus)` → broker → subscriber.
//!
//! Starts the embedded rumqttd broker and a worker in this process, deploys
//! `Reading.from(Bus, topic: in) .where(temp > 75) .emit(id, temp) .to(Bus, topic: out)`
//! (QoS 1), subscribes to `out`, publishes `--events` readings (one MQTT message per event,
//! QoS 1, as devices do) and stops the clock when the subscriber has every passing event (half
//! of them). Baseline in the same process: the same filter fed by `events-batch` inject
//! (batches of 1,000, no connectors). The publisher alone (to a topic nobody reads) is timed
//! too, to show what one client can push through the broker.
//! Run: `cargo bench --bench mqtt_source` (optionally `-- --events 200000`).

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/inproc_worker.rs"]
#[allow(dead_code)]
mod inproc_worker;

use inproc_worker::{arg, post_json, BoxError, InProcessWorker};

const FILTER: &str = "stream Hot = Reading .where(temp > 75) .emit(id: id, temp: temp)\n";

fn options(port: u16, name: &str) -> MqttOptions {
    let mut o = MqttOptions::new(
        format!("bench-{name}-{:08x}", rand::random::<u32>()),
        "127.0.0.1",
        port,
    );
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(1000);
    o.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    o
}

/// Reading `i`: temp 51..=100, so every other reading passes `temp > 75`.
fn reading(i: u64) -> Vec<u8> {
    json!({"event_type": "Reading", "id": i, "temp": 51 + i % 50})
        .to_string()
        .into_bytes()
}

/// Drives an event loop in the background; counts the publishes received.
fn drive(mut eventloop: EventLoop, received: Arc<AtomicU64>) -> tokio::sync::oneshot::Receiver<()> {
    let (subacked, on_suback) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut subacked = Some(subacked);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(s) = subacked.take() {
                        let _ = s.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    on_suback
}

/// Publishes readings `from..to` to `topic` at QoS 1; returns once all are queued.
async fn publish_all(
    client: &AsyncClient,
    topic: &str,
    from: u64,
    to: u64,
) -> Result<(), BoxError> {
    for i in from..to {
        client
            .publish(topic, QoS::AtLeastOnce, false, reading(i))
            .await?;
    }
    Ok(())
}

async fn wait_for(counter: &AtomicU64, n: u64, limit: Duration) -> Result<(), BoxError> {
    let deadline = Instant::now() + limit;
    while counter.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {n} events arrived within {limit:?}",
                counter.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn bench() -> Result<(), BoxError> {
    let events = arg("--events", 200_000);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let _broker = varpulis_worker::start_embedded_broker(port)?;
    let worker = InProcessWorker::start().await?;

    // Baseline: the same filter through events-batch, batches of 1,000, 4 clients.
    let plain = worker.deploy("bench-plain", FILTER).await?;
    let http = reqwest::Client::new();
    let batch_url = format!("{}/api/v1/pipelines/{plain}/events-batch", worker.url);
    let bodies: Vec<Vec<u8>> = (0..events.div_ceil(1000))
        .map(|b| {
            let evs: Vec<serde_json::Value> = (b * 1000..((b + 1) * 1000).min(events))
                .map(|i| json!({"event_type": "Reading", "fields": {"id": i, "temp": 51 + i % 50}}))
                .collect();
            serde_json::to_vec(&evs)
        })
        .collect::<Result<_, _>>()?;
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, url, bodies, next) = (
            http.clone(),
            batch_url.clone(),
            bodies.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(body) = bodies.get(i) else {
                    return Ok::<(), BoxError>(());
                };
                post_json(&http, &url, body.clone()).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let baseline = started.elapsed();

    // The MQTT pipeline.
    let source = format!(
        "connector Bus = mqtt(host: \"127.0.0.1\", port: {port}, qos: 1)\n\
         stream Hot = Reading.from(Bus, topic: \"bench/in\") .where(temp > 75) \
         .emit(id: id, temp: temp) .to(Bus, topic: \"bench/out\")\n"
    );
    worker.deploy("bench-mqtt", &source).await?;
    let received = Arc::new(AtomicU64::new(0));
    let (sub, sub_loop) = AsyncClient::new(options(port, "sub"), 4096);
    let subacked = drive(sub_loop, received.clone());
    sub.subscribe("bench/out", QoS::AtLeastOnce).await?;
    subacked.await?;
    let (publisher, pub_loop) = AsyncClient::new(options(port, "pub"), 4096);
    drive(pub_loop, Arc::new(AtomicU64::new(0)));

    // Warm-up: until the pipeline's subscription is live (a passing reading comes out).
    let warm = Instant::now();
    while received.load(Ordering::Relaxed) == 0 {
        if warm.elapsed() > Duration::from_secs(30) {
            return Err("the MQTT pipeline never answered".into());
        }
        publisher
            .publish("bench/in", QoS::AtLeastOnce, false, reading(49))
            .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = received.load(Ordering::Relaxed);

    let started = Instant::now();
    publish_all(&publisher, "bench/in", 0, events).await?;
    let published = started.elapsed();
    let passing = events / 2;
    wait_for(&received, before + passing, Duration::from_secs(300)).await?;
    let end_to_end = started.elapsed();

    // The publisher alone, to a topic nobody subscribes to.
    let started = Instant::now();
    publish_all(&publisher, "bench/nobody", 0, events).await?;
    let publish_only = started.elapsed();

    let rate = |d: Duration| events as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "mqtt_source: {events} readings (one QoS 1 message each), {passing} pass the filter; \
         cores = {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  MQTT source -> filter -> MQTT sink -> subscriber: {:.0} events/s ({:.2} s; published in {:.2} s)",
        rate(end_to_end),
        end_to_end.as_secs_f64(),
        published.as_secs_f64()
    );
    println!(
        "  publisher alone (no subscriber):                  {:.0} messages/s ({:.2} s)",
        rate(publish_only),
        publish_only.as_secs_f64()
    );
    println!(
        "  baseline, events-batch inject (1,000 per batch):   {:.0} events/s ({:.2} s)",
        rate(baseline),
        baseline.as_secs_f64()
    );
    println!(
        "  ratio MQTT pipeline / inject baseline: {:.3}",
        rate(end_to_end) / rate(baseline)
    );
    worker.stop().await?;
    Ok(())
}

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqtt_source: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(bench()) {
        eprintln!("mqtt_source: {e}");
        std::process::exit(1);
    }
}
