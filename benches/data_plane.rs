//! Data-plane benchmark (issue 7): events/s end to end
//!
//! 1. **route**: coordinator inject-batch into `stage1` on one worker, whose output events
//!    cross an MQTT route (embedded broker) to `stage2` on another worker; the clock stops when
//!    `stage2` has received every event.
//! 2. **route, worker ingest**: the same, posting the batches straight to `stage1`'s worker
//!    (`/api/v1/pipelines/{id}/events-batch`), to see the MQTT hop without the coordinator.
//! 3. **inject**: coordinator inject-batch into a single pipeline (no route): the ingest path
//!    alone; then the same batches posted straight to that pipeline's worker, alternated round
//!    by round (`DATA_PLANE_ROUNDS`, default 3; medians), for the coordinator / direct ratio.
//! 4. **direct**: `varpulis run` of both stages in one program over the same events (one
//!    process, no network), for the ratio.
//!
//! Env: `DATA_PLANE_EVENTS` (default 200000), `DATA_PLANE_BATCH` (events per inject-batch,
//! default 5000), `DATA_PLANE_CLIENTS` (concurrent injectors, default 4). The batches are
//! encoded before the clock starts and the answers read as bytes, not decoded, so the bench's
//! own JSON work does not take CPU from the cluster (2 cores).
//! Run: `cargo bench --bench data_plane` (debug figures: `cargo test --bench data_plane`).

#[path = "../tests/cluster/harness.rs"]
mod harness;

use harness::{free_port, wait_until, Api, Ensemble, Opts, ADMIN_KEY, BIN, WORKER_KEY};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STAGE1: &str = "stream Hot = Reading .where(temp > 50) .emit(id: id, temp: temp)";
const STAGE2: &str = "stream Big = Hot .where(temp > 75) .emit(id: id, temp: temp)";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reading `i` has temp 51..=100, so every reading passes stage 1 and half pass stage 2.
fn reading(i: u64) -> Value {
    json!({"event_type": "Reading", "fields": {"id": i, "temp": 51 + i % 50}})
}

/// The JSON bodies of `total` readings in batches of `batch` (encoded before the clock starts,
/// so the figure is not the bench's own encoding).
fn bodies(total: u64, batch: u64) -> Arc<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut from = 0;
    while from < total {
        let events: Vec<Value> = (from..(from + batch).min(total)).map(reading).collect();
        out.push(serde_json::to_vec(&events).expect("encode"));
        from += batch;
    }
    Arc::new(out)
}

/// Posts the bodies from `clients` concurrent tasks over one keep-alive client; answers are
/// read as bytes (not decoded: the bench must not compete with the cluster for CPU by parsing
/// every output event). Returns the elapsed time and the answer bytes read.
async fn pump(url: &str, key: &str, bodies: &Arc<Vec<Vec<u8>>>, clients: u64) -> (Duration, u64) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let next = Arc::new(AtomicU64::new(0));
    let read = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, key, next, read, bodies) = (
            http.clone(),
            url.to_owned(),
            key.to_owned(),
            next.clone(),
            read.clone(),
            bodies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(body) = bodies.get(i) else { break };
                let r = http
                    .post(&url)
                    .header("x-api-key", &key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("inject-batch");
                let status = r.status();
                let answer = r.bytes().await.expect("answer");
                assert!(
                    status.is_success(),
                    "inject-batch failed: {status} {}",
                    String::from_utf8_lossy(&answer)
                );
                read.fetch_add(answer.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("injector");
    }
    (started.elapsed(), read.load(Ordering::Relaxed))
}

async fn deploy(ens: &Ensemble, spec: Value) -> Value {
    let r = ens
        .api
        .post(&ens.cluster_url(0, "/pipeline-groups"), &spec)
        .await
        .expect("deploy");
    assert_eq!(r.status, 201, "{}", r.text);
    let gid = r.body["id"].as_str().expect("id").to_owned();
    let url = ens.cluster_url(0, &format!("/pipeline-groups/{gid}"));
    let (api, url) = (&ens.api, &url);
    wait_until(
        "group running",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move {
            let r = api.get(url).await.ok()?;
            (r.body["status"] == "running").then_some(r.body)
        },
    )
    .await
}

fn placement(group: &Value, name: &str) -> (String, String) {
    let p = group["placements"]
        .as_array()
        .expect("placements")
        .iter()
        .find(|p| p["pipeline_name"] == name)
        .expect("placement");
    (
        p["worker_address"].as_str().unwrap_or_default().to_owned(),
        p["pipeline_id"].as_str().unwrap_or_default().to_owned(),
    )
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn direct_run(total: u64) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = dir.path().join("both.vpl");
    std::fs::write(&program, format!("{STAGE1}\n{STAGE2}\n")).expect("write program");
    let events = dir.path().join("readings.evt");
    let text: String = (0..total)
        .map(|i| format!("Reading {{ id: {i}, temp: {} }}\n", 51 + i % 50))
        .collect();
    std::fs::write(&events, text).expect("write events");
    let started = Instant::now();
    let out = std::process::Command::new(BIN)
        .args(["run"])
        .arg(&program)
        .arg("--events")
        .arg(&events)
        .stdout(std::process::Stdio::null())
        .output()
        .expect("varpulis run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

fn main() {
    let total = env_u64("DATA_PLANE_EVENTS", 200_000);
    let batch = env_u64("DATA_PLANE_BATCH", 5_000).max(1);
    let clients = env_u64("DATA_PLANE_CLIENTS", 4).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let broker_port = free_port();
        let _broker = varpulis_worker::start_embedded_broker(broker_port).expect("broker");
        let opts = Opts {
            worker_ids: vec!["w-a".into(), "w-b".into()],
            coord_extra_args: vec![
                "--mqtt-url".into(),
                format!("mqtt://127.0.0.1:{broker_port}"),
                "--http-client-timeout".into(),
                "60".into(),
            ],
            start_timeout: Duration::from_secs(60),
            ..Opts::default()
        };
        let ens = Ensemble::start(1, 2, opts).await;

        // 1. Two stages across workers over the MQTT route.
        let group = deploy(
            &ens,
            json!({
                "name": "bench-route",
                "pipelines": [
                    {"name": "stage1", "source": STAGE1, "worker_affinity": "w-a"},
                    {"name": "stage2", "source": STAGE2, "worker_affinity": "w-b"}
                ],
                "routes": [
                    {"from_pipeline": "_external", "to_pipeline": "stage1", "event_types": ["Reading"]},
                    {"from_pipeline": "stage1", "to_pipeline": "stage2", "event_types": ["Hot"]}
                ]
            }),
        )
        .await;
        let gid = group["id"].as_str().expect("id").to_owned();
        let (addr2, id2) = placement(&group, "stage2");
        let bodies = bodies(total, batch);
        let url = ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject-batch"));
        let started = Instant::now();
        let (injected, _) = pump(&url, ADMIN_KEY, &bodies, clients).await;
        let worker = Api::new(Some(WORKER_KEY));
        let stage2 = format!("{addr2}/api/v1/pipelines/{id2}");
        let (worker, stage2) = (&worker, &stage2);
        let last = wait_until(
            "stage2 received every event",
            Duration::from_secs(600),
            Duration::from_millis(20),
            || async move {
                let r = worker.get(stage2).await.ok()?;
                let n = r.body["events_in"].as_u64().unwrap_or(0);
                (n >= total).then_some(r.body)
            },
        )
        .await;
        let route_time = started.elapsed();
        assert_eq!(last["events_in"].as_u64(), Some(total), "{last}");

        // 1b. The same route, batches posted straight to stage1's worker.
        let (addr1, id1) = placement(&group, "stage1");
        let url1 = format!("{addr1}/api/v1/pipelines/{id1}/events-batch");
        let started = Instant::now();
        pump(&url1, WORKER_KEY, &bodies, clients).await;
        wait_until(
            "stage2 received the second round",
            Duration::from_secs(600),
            Duration::from_millis(20),
            || async move {
                let r = worker.get(stage2).await.ok()?;
                (r.body["events_in"].as_u64().unwrap_or(0) >= 2 * total).then_some(())
            },
        )
        .await;
        let hop_time = started.elapsed();

        // 2. inject-batch alone, one pipeline, no route: through the coordinator, then the
        //    same batches straight to the worker (same pipeline), back to back.
        let single = deploy(
            &ens,
            json!({
                "name": "bench-inject",
                "pipelines": [{"name": "stage1", "source": STAGE1, "worker_affinity": "w-a"}],
                "routes": [{"from_pipeline": "_external", "to_pipeline": "stage1", "event_types": ["Reading"]}]
            }),
        )
        .await;
        let sid = single["id"].as_str().expect("id").to_owned();
        let url = ens.cluster_url(0, &format!("/pipeline-groups/{sid}/inject-batch"));
        let (addr_s, id_s) = placement(&single, "stage1");
        let direct_url = format!("{addr_s}/api/v1/pipelines/{id_s}/events-batch");
        let (mut via, mut straight) = (Vec::new(), Vec::new());
        let mut answer_bytes = 0;
        for _ in 0..env_u64("DATA_PLANE_ROUNDS", 3).max(1) {
            let (t, n) = pump(&url, ADMIN_KEY, &bodies, clients).await;
            via.push(t);
            answer_bytes = n;
            straight.push(pump(&direct_url, WORKER_KEY, &bodies, clients).await.0);
        }
        via.sort();
        straight.sort();
        let inject_time = via[via.len() / 2];
        let worker_time = straight[straight.len() / 2];

        // 3. Both stages in one process.
        let direct = direct_run(total);

        let (r_route, r_hop, r_inject, r_worker, r_direct) = (
            rate(total, route_time),
            rate(total, hop_time),
            rate(total, inject_time),
            rate(total, worker_time),
            rate(total, direct),
        );
        println!(
            "data_plane: {total} events, batches of {batch}, {clients} clients, cores = {}",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "  route (inject-batch -> stage1 @w-a -> MQTT -> stage2 @w-b): {:.0} events/s \
             ({:.2} s; injection done after {:.2} s)",
            r_route,
            route_time.as_secs_f64(),
            injected.as_secs_f64()
        );
        println!(
            "  route, batches posted to stage1's worker directly:       {:.0} events/s ({:.2} s)",
            r_hop,
            hop_time.as_secs_f64()
        );
        println!(
            "  inject-batch only (stage1), via the coordinator:         {:.0} events/s ({:.2} s, median of {}; answers {} bytes)",
            r_inject,
            inject_time.as_secs_f64(),
            via.len(),
            answer_bytes
        );
        println!(
            "  inject-batch only (stage1), straight to the worker:      {:.0} events/s ({:.2} s, median of {})",
            r_worker,
            worker_time.as_secs_f64(),
            straight.len()
        );
        println!(
            "  coordinator / direct worker: {:.3}",
            r_inject / r_worker
        );
        println!(
            "  direct single process (varpulis run, both stages):       {:.0} events/s ({:.2} s)",
            r_direct,
            direct.as_secs_f64()
        );
        println!(
            "  ratios vs direct: route {:.3}, route via worker {:.3}, inject-batch {:.3}",
            r_route / r_direct,
            r_hop / r_direct,
            r_inject / r_direct
        );
    });
}
