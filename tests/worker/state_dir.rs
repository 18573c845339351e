//! `--state-dir`: a worker restarted with the same directory resumes its pipelines' state
//! (issue 23 item 6; docs/worker.md "Local state").

use crate::harness::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every third reading fires one aggregate of the three: the state between fires is what a
/// restart must not lose.
const COUNTER: &str =
    "stream Sums = Reading .window(3) .aggregate(n: count(), total: sum(v)) .emit()";

fn spawn_worker(port: u16, dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_varpulis"))
        .args(["server", "--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--state-dir")
        .arg(dir)
        .args(["--state-interval", "0.1"])
        .env("VARPULIS_API_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn wait_up(child: &mut Child, url: &str) {
    let ok = wait_for(Duration::from_secs(20), || async {
        client().get(format!("{url}/health")).send().await.is_ok()
    })
    .await;
    if !ok {
        let _ = child.kill();
        panic!("the worker never answered");
    }
}

fn signal(child: &Child, sig: &str) {
    let done = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(done.success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the worker did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Injects one reading and returns the output events.
async fn reading(url: &str, id: &str, v: i64) -> Vec<Value> {
    let (s, b) = post(
        &format!("{url}/api/v1/pipelines/{id}/events"),
        json!({"event_type": "Reading", "fields": {"v": v}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["output_events"].as_array().cloned().unwrap_or_default()
}

fn sums(outputs: &[Value]) -> Vec<(i64, i64)> {
    outputs
        .iter()
        .map(|o| {
            (
                o["fields"]["n"].as_i64().unwrap_or(-1),
                o["fields"]["total"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_worker_restarted_with_its_state_dir_resumes_its_pipelines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");

    let mut w = spawn_worker(port, &dir);
    wait_up(&mut w, &url).await;
    for (id, name) in [("counter", "sums"), ("other", "other")] {
        let (s, b) = post(
            &format!("{url}/api/v1/pipelines"),
            json!({"id": id, "name": name, "source": COUNTER}),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    assert!(reading(&url, "counter", 1).await.is_empty());
    assert!(reading(&url, "counter", 2).await.is_empty());

    // A second worker on the same directory is refused while the first runs.
    let second = Command::new(env!("CARGO_BIN_EXE_varpulis"))
        .args(["server", "--port", &free_port().to_string()])
        .arg("--state-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use"), "{err}");

    // A clean stop writes the last checkpoints: nothing is lost.
    signal(&w, "-TERM");
    assert!(wait_exit(&mut w).success());
    let mut w = spawn_worker(port, &dir);
    wait_up(&mut w, &url).await;
    let (s, b) = get(&format!("{url}/api/v1/pipelines/counter")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["events_in"], 2, "{b}");
    assert_eq!(b["status"], "running", "{b}");
    assert_eq!(sums(&reading(&url, "counter", 3).await), [(3, 6)]);

    // A crash loses at most the last interval: wait for a local checkpoint, then kill -9.
    assert!(reading(&url, "counter", 10).await.is_empty());
    assert!(reading(&url, "counter", 20).await.is_empty());
    let saved = wait_for(Duration::from_secs(10), || async {
        let text = client()
            .get(format!("{url}/metrics"))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let cp: String = std::fs::read_to_string(dir.join("pipelines/counter/checkpoint.json"))
            .unwrap_or_default();
        text.contains("varpulis_worker_local_checkpoints_total")
            && serde_json::from_str::<Value>(&cp).is_ok_and(|c| c["events_processed"] == 5)
    })
    .await;
    assert!(saved, "no local checkpoint of 5 events");
    signal(&w, "-KILL");
    wait_exit(&mut w);
    let mut w = spawn_worker(port, &dir);
    wait_up(&mut w, &url).await;
    assert_eq!(sums(&reading(&url, "counter", 30).await), [(3, 60)]);

    // Files are private; a deleted pipeline stays deleted; an unreadable entry is skipped,
    // not fatal.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("pipelines/counter/checkpoint.json")), 0o600);
    }
    let (s, _) = call(
        client()
            .delete(format!("{url}/api/v1/pipelines/other"))
            .header("x-api-key", KEY),
    )
    .await;
    assert_eq!(s, 200);
    signal(&w, "-TERM");
    assert!(wait_exit(&mut w).success());
    std::fs::write(
        dir.join("pipelines/counter/checkpoint.json"),
        b"{\"truncated",
    )
    .unwrap();
    let mut w = spawn_worker(port, &dir);
    wait_up(&mut w, &url).await;
    let (s, b) = get(&format!("{url}/api/v1/pipelines")).await;
    assert_eq!(s, 200);
    assert_eq!(b["total"], 0, "{b}");
    assert!(
        dir.join("pipelines/counter/checkpoint.json").exists(),
        "an unreadable entry is left for the operator"
    );
    signal(&w, "-TERM");
    assert!(wait_exit(&mut w).success());
    let mut stderr = String::new();
    use std::io::Read;
    w.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("checkpoint.json"),
        "the skipped entry is named in the log: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_coordinators_the_leader_decides_and_a_redeploy_resumes_the_local_state() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.state_dir = Some(tmp.path().to_owned());
    cfg.state_interval = Duration::from_millis(100);
    let w = start_worker(cfg.clone()).await;
    let body = json!({"id": "sums-g1-r0", "name": "sums", "source": COUNTER});
    let (s, b) = post(&format!("{}/api/v1/pipelines", w.url), body.clone()).await;
    assert_eq!(s, 201, "{b}");
    assert!(reading(&w.url, "sums-g1-r0", 4).await.is_empty());
    assert!(reading(&w.url, "sums-g1-r0", 5).await.is_empty());
    w.shutdown().await;

    // Started again under a coordinator: nothing starts on its own.
    let coord_port = free_port();
    let coord = FakeCoordinator::default();
    let _stop = coord.serve(coord_port).await;
    cfg.coordinators = vec![format!("http://127.0.0.1:{coord_port}")];
    let w = start_worker(cfg).await;
    assert!(
        wait_for(Duration::from_secs(10), || async {
            coord.registrations() >= 1
        })
        .await
    );
    let (_, b) = get(&format!("{}/api/v1/pipelines", w.url)).await;
    assert_eq!(b["total"], 0, "{b}");
    // The leader deploys the same id again without a checkpoint: the local one is ahead.
    let (s, b) = post(&format!("{}/api/v1/pipelines", w.url), body).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(sums(&reading(&w.url, "sums-g1-r0", 6).await), [(3, 15)]);
    w.shutdown().await;
}
