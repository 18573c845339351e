//! The file sink (rotation, flush on SIGTERM through the real binary) and the console sink.

use crate::harness::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn readings(range: std::ops::Range<usize>) -> Value {
    Value::Array(
        range
            .map(|i| json!({"event_type": "Reading", "fields": {"id": i, "pad": "xxxxxxxxxx"}}))
            .collect(),
    )
}

/// Every line of `path` and its rotations, oldest first.
fn all_lines(path: &Path) -> Vec<Value> {
    let mut files = Vec::new();
    let mut n = 1;
    loop {
        let p = format!("{}.{n}", path.display());
        if !Path::new(&p).exists() {
            break;
        }
        files.push(p);
        n += 1;
    }
    files.reverse();
    files.push(path.display().to_string());
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_appends_json_lines_and_rotates_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, "{\"event_type\":\"Old\",\"n\":0}\n").unwrap();
    let w = start_worker(config()).await;
    let src = format!(
        "connector F = file(path: \"{}\", rotate_bytes: 2000)\n\
         stream Out = Reading .emit(id: id, pad: pad) .to(F)\n",
        path.display()
    );
    let id = deploy(&w, "file", &src).await;
    let (s, b) = post(
        &format!("{}/api/v1/pipelines/{id}/events-batch", w.url),
        readings(0..200),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let written = wait_for(Duration::from_secs(10), || async {
        let (_, i) = get(&format!("{}/api/v1/pipelines/{id}", w.url)).await;
        i["connectors"][0]["events_sent"] == 200
    })
    .await;
    assert!(written);
    let lines = all_lines(&path);
    assert_eq!(lines.len(), 201);
    assert_eq!(
        lines[0]["event_type"], "Old",
        "appended to the existing file"
    );
    let ids: Vec<u64> = lines[1..]
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (0..200).collect::<Vec<u64>>());
    assert_eq!(lines[1]["event_type"], "Out");
    assert!(lines[1]["timestamp"].is_string());
    assert!(
        Path::new(&format!("{}.2", path.display())).exists(),
        "rotated more than once"
    );
    for n in 1..=2 {
        let len = std::fs::metadata(format!("{}.{n}", path.display()))
            .unwrap()
            .len();
        assert!(len <= 2000, "{len}");
    }
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_file_degrades_the_pipeline() {
    let w = start_worker(config()).await;
    let src = "connector F = file(path: \"/nonexistent-dir/x/out.jsonl\")\n\
               stream Out = Reading .emit(id: id) .to(F)\n";
    let id = deploy(&w, "file", src).await;
    let (_, i) = get(&format!("{}/api/v1/pipelines/{id}", w.url)).await;
    assert_eq!(i["status"], "degraded", "{i}");
    assert!(
        i["status_reason"].as_str().unwrap().contains("cannot open"),
        "{i}"
    );
    w.shutdown().await;
}

/// Starts the real binary on a free port with stdout piped.
fn spawn_server() -> (std::process::Child, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_varpulis"))
        .args(["server", "--port", &port.to_string(), "--bind", "127.0.0.1"])
        .env("VARPULIS_API_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

async fn sigterm_and_wait(child: &mut std::process::Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{st:?}");
            return;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("did not exit after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_console_sinks_are_flushed_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let (mut child, url) = spawn_server();
    // Read stdout as it comes: a full pipe would block the console sink.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let reader =
        std::thread::spawn(move || stdout.lines().map_while(Result::ok).collect::<Vec<_>>());
    let up = wait_for(Duration::from_secs(20), || async {
        client().get(format!("{url}/health")).send().await.is_ok()
    })
    .await;
    assert!(up);
    let src = format!(
        "connector F = file(path: \"{}\")\nconnector C = console()\n\
         stream Out = Reading .emit(id: id) .to(F) .to(C)\n",
        path.display()
    );
    let (s, b) = post(
        &format!("{url}/api/v1/pipelines"),
        json!({"name": "f", "source": src}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    for k in 0..5 {
        let (s, b) = post(
            &format!("{url}/api/v1/pipelines/{id}/events-batch"),
            readings(k * 2000..(k + 1) * 2000),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    // At once: whatever is still queued must be written before the process exits.
    sigterm_and_wait(&mut child).await;
    let lines = all_lines(&path);
    assert_eq!(lines.len(), 10_000);
    assert_eq!(lines[9_999]["id"], 9_999);
    let console: Vec<Value> = reader
        .join()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event_type"] == "Out")
        .collect();
    assert_eq!(console.len(), 10_000);
    // The console shape is that of `varpulis run` (VPL.md §13).
    assert_eq!(console[0]["fields"]["id"], 0);
    assert_eq!(console[9_999]["fields"]["id"], 9_999);
}
