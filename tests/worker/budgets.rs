//! Toxic programs against a worker (issue 18 item 4): the reactor stays free while a pipeline
//! spins, outputs are capped per event and per answer, and a pipeline that keeps exceeding its
//! budgets is marked `failed`, never the process.

use crate::harness::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use varpulis_worker::{PipelineLimits, WorkerConfig};

/// Spins until the step budget stops it, on every event.
const SPIN: &str = "fn spin(v: int):\n    var i = 0\n    while true:\n        i := i + 1\n    emit Never(v: v)\nstream S = Tick .process(spin(value))\n";

/// Emits `value` output events per input event.
const SPAM: &str = "fn spam(n: int):\n    var i = 0\n    while i < n:\n        emit Out(i: i)\n        i := i + 1\nstream S = Tick .process(spam(value))\n";

const FILTER: &str = "stream Hot = Reading .where(temp > 50) .emit(temp: temp)";

fn tick(value: i64) -> Value {
    json!({"event_type": "Tick", "fields": {"value": value}})
}

fn limits(f: impl FnOnce(&mut PipelineLimits)) -> WorkerConfig {
    let mut cfg = config();
    f(&mut cfg.limits);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_pipelines_spin_through_their_step_budget() {
    let w = start_worker(limits(|l| {
        l.step_budget = 1_500_000;
        l.fail_after_budget_errors = 0;
    }))
    .await;
    let spin = deploy(&w, "spin", SPIN).await;
    let hot = deploy(&w, "hot", FILTER).await;
    let base = format!("{}/api/v1/pipelines", w.url);

    // Time one spinning event alone, then keep both engine threads and more busy for a while.
    let started = Instant::now();
    let (s, b) = post(&format!("{base}/{spin}/events"), tick(1)).await;
    let one = started.elapsed();
    assert_eq!(
        (s, b["code"].as_str()),
        (422, Some("budget_exceeded")),
        "{b}"
    );
    assert!(b["error"].as_str().unwrap().contains("step budget"), "{b}");

    let spinners: Vec<_> = (0..4)
        .map(|i| {
            let url = format!("{base}/{spin}/events");
            tokio::spawn(async move { post(&url, tick(i)).await })
        })
        .collect();
    let c = client();
    let mut worst = Duration::ZERO;
    let watch = Instant::now();
    while watch.elapsed() < (one * 3).max(Duration::from_secs(1)) {
        let t = Instant::now();
        let resp = c.get(format!("{}/health", w.url)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        worst = worst.max(t.elapsed());
        // Another pipeline is not held up by the spinning one either.
        let t = Instant::now();
        let (s, b) = post(
            &format!("{base}/{hot}/events"),
            json!({"event_type": "Reading", "fields": {"temp": 70}}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["output_events"].as_array().unwrap().len(), 1, "{b}");
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("one spinning event: {one:?}; slowest other request meanwhile: {worst:?}");
    assert!(
        worst < Duration::from_secs(1),
        "a request waited {worst:?} while a pipeline spun ({one:?} per event)"
    );
    for s in spinners {
        let (status, b) = s.await.unwrap();
        assert_eq!(
            (status, b["code"].as_str()),
            (422, Some("budget_exceeded")),
            "{b}"
        );
    }
    let (_, info) = get(&format!("{base}/{spin}")).await;
    assert_eq!(
        info["status"], "running",
        "fail_after_budget_errors = 0 never fails it"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_answer_when_every_request_slot_waits_on_a_busy_pipeline() {
    let w = start_worker(WorkerConfig {
        max_concurrent_requests: 2,
        ..limits(|l| {
            l.step_budget = 1_500_000;
            l.fail_after_budget_errors = 0;
        })
    })
    .await;
    let spin = deploy(&w, "spin", SPIN).await;
    let url = format!("{}/api/v1/pipelines/{spin}/events", w.url);
    let spinners: Vec<_> = (0..5)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { post(&url, tick(i)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = client();
    for path in ["/health", "/ready", "/metrics"] {
        let t = Instant::now();
        let resp = c
            .get(format!("{}{path}", w.url))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{path} took {:?}",
            t.elapsed()
        );
    }
    let resp = c.get(format!("{}/metrics", w.url)).send().await.unwrap();
    assert_eq!(resp.status(), 401, "/metrics still needs the key");
    for s in spinners {
        let (status, b) = s.await.unwrap();
        assert_eq!(status, 422, "{b}");
    }
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_budget_errors_mark_the_pipeline_failed() {
    let w = start_worker(limits(|l| {
        l.step_budget = 200_000;
        l.fail_after_budget_errors = 3;
    }))
    .await;
    let spin = deploy(&w, "spin", SPIN).await;
    let hot = deploy(&w, "hot", FILTER).await;
    let base = format!("{}/api/v1/pipelines", w.url);
    for _ in 0..3 {
        let (s, b) = post(&format!("{base}/{spin}/events"), tick(1)).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (422, Some("budget_exceeded")),
            "{b}"
        );
    }
    let (_, info) = get(&format!("{base}/{spin}")).await;
    assert_eq!(info["status"], "failed", "{info}");
    let reason = info["status_reason"].as_str().unwrap();
    assert!(reason.contains("3 consecutive"), "{reason}");

    // Refused at once, single and batch, without running.
    let started = Instant::now();
    let (s, b) = post(&format!("{base}/{spin}/events"), tick(1)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (422, Some("pipeline_failed")),
        "{b}"
    );
    let (s, b) = post(
        &format!("{base}/{spin}/events-batch"),
        json!([tick(1), tick(2)]),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (422, Some("pipeline_failed")),
        "{b}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Its state can still be taken away (a coordinator may move it elsewhere, or not).
    let (s, _) = post(&format!("{base}/{spin}/checkpoint"), json!({})).await;
    assert_eq!(s, 200);

    let metrics = metrics_text(&w).await;
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && (!l.contains('{') || l.contains(&spin)))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
            .to_owned()
    };
    assert!(line("varpulis_worker_budget_exceeded_total").ends_with(" 3"));
    assert!(line("varpulis_worker_events_refused_total").ends_with(" 3"));
    assert!(line("varpulis_worker_pipelines_failed").ends_with(" 1"));
    assert!(line("varpulis_worker_pipelines_running").ends_with(" 1"));

    // The other pipeline never noticed; a redeploy starts afresh.
    let (s, _) = post(
        &format!("{base}/{hot}/events"),
        json!({"event_type": "Reading", "fields": {"temp": 70}}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(client().delete(format!("{base}/{spin}"))).await;
    assert_eq!(s, 200);
    let again = deploy(&w, "spin", SPIN).await;
    let (_, info) = get(&format!("{base}/{again}")).await;
    assert_eq!(info["status"], "running");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_capped_per_event_and_per_answer() {
    let w = start_worker(limits(|l| {
        l.max_outputs_per_event = 500;
        l.max_outputs_per_response = 1_000;
    }))
    .await;
    let spam = deploy(&w, "spam", SPAM).await;
    let base = format!("{}/api/v1/pipelines", w.url);

    // One event over the per-event cap: refused, nothing published.
    let (s, b) = post(&format!("{base}/{spam}/events"), tick(501)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (422, Some("budget_exceeded")),
        "{b}"
    );
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("max_outputs_per_event"),
        "{b}"
    );
    let (s, b) = post(&format!("{base}/{spam}/events"), tick(500)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["output_events"].as_array().unwrap().len(), 500);
    assert!(b.get("outputs_omitted").is_none(), "{b}");

    // A batch: its answer carries the first 1,000 outputs; the rejected event is listed.
    let batch = json!([tick(400), tick(600), tick(400), tick(400), tick(3)]);
    let (s, b) = post(&format!("{base}/{spam}/events-batch"), batch).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["accepted"], 4, "{b}");
    assert_eq!(b["output_events"].as_array().unwrap().len(), 1_000);
    assert_eq!(b["outputs_omitted"], 203, "{b}");
    assert_eq!(b["errors"][0]["index"], 1, "{b}");
    assert_eq!(b["errors"][0]["code"], "budget_exceeded", "{b}");
    let (_, m) = get(&format!("{base}/{spam}/metrics")).await;
    assert_eq!(m["events_in"], 7, "{m}");
    assert_eq!(m["events_out"], 1_703, "{m}");
    w.shutdown().await;
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_outputs_from_one_inject_are_refused_with_bounded_memory() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_varpulis"))
        .args([
            "server",
            "--port",
            &port.to_string(),
            "--worker-id",
            "toxic",
        ])
        .env("VARPULIS_API_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let up = wait_for(Duration::from_secs(20), || async {
        client()
            .get(format!("{url}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    if !up {
        let _ = child.kill();
        panic!("the worker did not start");
    }
    let (s, b) = post(
        &format!("{url}/api/v1/pipelines"),
        json!({"name": "spam", "source": SPAM}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let before = peak_rss_kib(child.id());

    let resp = client()
        .post(format!("{url}/api/v1/pipelines/{id}/events"))
        .header("x-api-key", KEY)
        .json(&tick(1_000_000))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let after = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 422, "{text}");
    assert!(
        text.len() < 4096,
        "a refusal is small: {} bytes",
        text.len()
    );
    let b: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(b["code"], "budget_exceeded", "{b}");
    // Without caps the answer alone was 161 MB and the worker grew by 1.4 GB.
    let grew_mib = after.saturating_sub(before) / 1024;
    eprintln!("peak RSS before {before} KiB, after {after} KiB (+{grew_mib} MiB)");
    assert!(grew_mib < 512, "the worker grew by {grew_mib} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxic_events_from_mqtt_fail_the_pipeline_not_the_worker() {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    let broker = varpulis_worker::start_embedded_broker(free_port()).unwrap();
    let w = start_worker(limits(|l| {
        l.step_budget = 200_000;
        l.fail_after_budget_errors = 3;
    }))
    .await;
    let source = format!(
        "connector Plant = mqtt(host: \"127.0.0.1\", port: {}, client_id: \"vp-toxic\")\n\
         {}stream S = Tick.from(Plant, topic: \"ticks\") .process(spin(value))\n",
        broker.port(),
        SPIN.lines()
            .filter(|l| !l.starts_with("stream"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let id = deploy(&w, "toxic", &source).await;
    let url = format!("{}/api/v1/pipelines/{id}", w.url);
    let mut opts = MqttOptions::new(
        format!("feeder-{}", free_port()),
        "127.0.0.1",
        broker.port(),
    );
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let failed = wait_for(Duration::from_secs(30), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let payload = serde_json::to_vec(&json!({"value": 1})).unwrap();
            let _ = client
                .publish("ticks", QoS::AtLeastOnce, false, payload)
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            get(&url).await.1["status"] == "failed"
        }
    })
    .await;
    assert!(
        failed,
        "the pipeline was never marked failed: {}",
        get(&url).await.1
    );
    // More toxic input is refused without running; the worker serves on.
    for _ in 0..5 {
        let payload = serde_json::to_vec(&json!({"value": 2})).unwrap();
        client
            .publish("ticks", QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    let refused = wait_for(Duration::from_secs(10), || async {
        metrics_text(&w).await.lines().any(|l| {
            l.starts_with("varpulis_worker_events_refused_total")
                && l.contains(&id)
                && !l.ends_with(" 0")
        })
    })
    .await;
    assert!(refused, "{}", metrics_text(&w).await);
    assert_eq!(health_status(&w).await, 200);
    w.shutdown().await;
}

/// The status of `GET /health`.
async fn health_status(w: &Worker) -> u16 {
    client()
        .get(format!("{}/health", w.url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
