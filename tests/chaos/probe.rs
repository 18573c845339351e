//! The data-plane probe of a chaos run (issue 20): one MQTT echo pipeline placed on the real
//! workers, a numbered flow through it for the whole run, and a sampler of every worker's
//! running set.
//!
//! Invariants, checked at the end ([`Probe::finish`]):
//! - **one copy**: no sample ever shows the probe pipeline `running` on two workers at once
//!   (every worker's `GET /api/v1/pipelines` every [`SAMPLE_EVERY`]);
//! - **nothing lost**: every input from the first one that came out to the last one sent
//!   comes out at least once (a copy killed with `kill -9` may leave inputs it had published
//!   but not yet acknowledged to be delivered again: duplicates are counted, not violations).
//!
//! The probe pipeline carries the label `chaos=real`, which only the real workers have (the
//! chaos clients' fake registrations never get it).

use crate::harness::{event_field, mqtt_subscriber, Api, Ensemble};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Interval of the running-set samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Interval of the probe's inputs.
const SEND_EVERY: Duration = Duration::from_millis(20);
/// The probe group and its pipeline as the workers name it.
const GROUP: &str = "chaos-probe";
const PIPELINE: &str = "chaos-probe/echo";
/// Longest wait at the end for the outputs to catch up with the inputs.
const CATCH_UP: Duration = Duration::from_secs(45);

/// The label only real workers carry (`--label chaos=real`).
pub const WORKER_LABEL: &str = "chaos=real";

/// Samples (seconds since start) that saw two copies running, with the workers.
type Overlaps = Arc<Mutex<Vec<(f64, Vec<String>)>>>;

/// A running probe.
pub struct Probe {
    _broker: varpulis_worker::BrokerHandle,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    outputs: tokio::sync::mpsc::UnboundedReceiver<Value>,
    _collector: AsyncClient,
    publisher: tokio::task::JoinHandle<()>,
    sampler: tokio::task::JoinHandle<()>,
    samples: Arc<AtomicU64>,
    /// Samples (seconds since start) that saw two copies running.
    overlaps: Overlaps,
    /// Which worker ran the probe at each change (seconds since start).
    holders: Arc<Mutex<Vec<(f64, String)>>>,
}

fn mqtt_options(addr: SocketAddr, name: &str) -> MqttOptions {
    let mut o = MqttOptions::new(
        format!("{name}-{:08x}", rand::random::<u32>()),
        addr.ip().to_string(),
        addr.port(),
    );
    o.set_keep_alive(Duration::from_secs(10));
    o.set_inflight(100);
    o
}

/// Whether worker `url` runs the probe now (`None`: no answer).
async fn runs_probe(api: &Api, url: &str) -> Option<bool> {
    let r = api.get(&format!("{url}/api/v1/pipelines")).await.ok()?;
    let list = r.body["pipelines"].as_array()?;
    Some(
        list.iter()
            .any(|p| p["name"] == PIPELINE && p["status"] == "running"),
    )
}

impl Probe {
    /// Starts the broker on `host`, deploys the probe group and starts the flow and the
    /// sampler.
    pub async fn start(ens: &Ensemble, host: &str, t0: Instant) -> Self {
        let port = std::net::TcpListener::bind((host, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port for the probe broker");
        let addr: SocketAddr = format!("{host}:{port}").parse().expect("broker address");
        let broker =
            varpulis_worker::start_embedded_broker_at(addr, None).expect("probe MQTT broker");
        let (collector, outputs) =
            mqtt_subscriber(mqtt_options(addr, "chaos-out"), 1024, "chaos-probe/out").await;
        let (label_key, label_value) = WORKER_LABEL.split_once('=').unwrap_or(("chaos", "real"));
        let source = format!(
            "connector Bus = mqtt(host: \"{host}\", port: {port}, qos: 1)\n\
             stream Echo = Tick.from(Bus, topic: \"chaos-probe/in\") .emit(v: value) \
             .to(Bus, topic: \"chaos-probe/out\")\n"
        );
        let spec = json!({"name": GROUP, "pipelines": [
            {"name": "echo", "source": source, "labels": {label_key: label_value}}]});
        ens.deploy_group(0, &spec).await;

        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (pubc, mut el) = AsyncClient::new(mqtt_options(addr, "chaos-in"), 1024);
        tokio::spawn(async move {
            loop {
                if el.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let publisher = {
            let (stop, sent) = (stop.clone(), sent.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let payload = json!({"value": i}).to_string();
                    let _ = pubc
                        .publish("chaos-probe/in", QoS::AtLeastOnce, false, payload)
                        .await;
                    sent.store(i, Ordering::SeqCst);
                    tokio::time::sleep(SEND_EVERY).await;
                }
            })
        };

        let samples = Arc::new(AtomicU64::new(0));
        let overlaps: Overlaps = Arc::default();
        let holders: Arc<Mutex<Vec<(f64, String)>>> = Arc::default();
        let sampler = {
            let workers: Vec<(String, String)> = ens
                .workers
                .iter()
                .map(|w| (w.id.clone(), w.url.clone()))
                .collect();
            let api = ens
                .api
                .with_key(Some(&ens.opts.worker_key))
                .with_timeout(Duration::from_millis(500));
            let (stop, samples, overlaps, holders) = (
                stop.clone(),
                samples.clone(),
                overlaps.clone(),
                holders.clone(),
            );
            tokio::spawn(async move {
                let mut last = String::new();
                while !stop.load(Ordering::SeqCst) {
                    let mut running = Vec::new();
                    for (id, url) in &workers {
                        if runs_probe(&api, url).await == Some(true) {
                            running.push(id.clone());
                        }
                    }
                    samples.fetch_add(1, Ordering::SeqCst);
                    let at = t0.elapsed().as_secs_f64();
                    if running.len() > 1 {
                        overlaps
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((at, running.clone()));
                    }
                    let now = running.join("+");
                    if now != last {
                        holders.lock().unwrap_or_else(|e| e.into_inner()).push((
                            at,
                            if now.is_empty() {
                                "-".into()
                            } else {
                                now.clone()
                            },
                        ));
                        last = now;
                    }
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            })
        };
        eprintln!("chaos: probe pipeline {PIPELINE} deployed, MQTT broker {addr}");
        Self {
            _broker: broker,
            stop,
            sent,
            outputs,
            _collector: collector,
            publisher,
            sampler,
            samples,
            overlaps,
            holders,
        }
    }

    /// Stops the flow, waits (bounded) for the outputs to catch up, checks the invariants;
    /// returns the report section and pushes violations.
    pub async fn finish(mut self, ens: &Ensemble, violations: &mut Vec<String>) -> Value {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.publisher.await;
        let _ = self.sampler.await;
        let last = self.sent.load(Ordering::SeqCst) as i64;
        let mut seen: BTreeMap<i64, u64> = BTreeMap::new();
        let deadline = Instant::now() + CATCH_UP;
        let started = Instant::now();
        while Instant::now() < deadline && !seen.contains_key(&last) {
            match tokio::time::timeout(Duration::from_millis(500), self.outputs.recv()).await {
                Ok(Some(v)) => {
                    if let Some(n) = event_field(&v, "v").as_i64() {
                        *seen.entry(n).or_default() += 1;
                    }
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
        // What is still in flight.
        while let Ok(Some(v)) =
            tokio::time::timeout(Duration::from_millis(500), self.outputs.recv()).await
        {
            if let Some(n) = event_field(&v, "v").as_i64() {
                *seen.entry(n).or_default() += 1;
            }
        }
        let caught_up_ms = started.elapsed().as_millis() as u64;
        let first = seen.keys().next().copied().unwrap_or(1);
        let lost: Vec<i64> = (first..=last).filter(|v| !seen.contains_key(v)).collect();
        let duplicates: u64 = seen.values().map(|c| c.saturating_sub(1)).sum();
        let overlaps = self
            .overlaps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let holders = self
            .holders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if seen.is_empty() {
            violations.push("probe: no output at all".into());
        }
        if !lost.is_empty() {
            eprintln!(
                "chaos: probe lost inputs; worker logs:\n{}",
                ens.all_logs(300)
            );
            violations.push(format!(
                "probe: {} of inputs {first}..={last} lost (first {:?}, last {:?})",
                lost.len(),
                lost.first(),
                lost.last()
            ));
        }
        for (at, on) in &overlaps {
            violations.push(format!(
                "probe: pipeline running on {} workers at once at t={at:.1}s: {on:?}",
                on.len()
            ));
        }
        json!({
            "sent": last,
            "first_output": first,
            "distinct_outputs": seen.len(),
            "lost": lost.len(),
            "duplicates": duplicates,
            "catch_up_ms": caught_up_ms,
            "samples": self.samples.load(Ordering::SeqCst),
            "two_copies_samples": overlaps.len(),
            "holders": holders
                .iter()
                .map(|(at, w)| format!("{at:.1}s:{w}"))
                .collect::<Vec<_>>(),
        })
    }
}
