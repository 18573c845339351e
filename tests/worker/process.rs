//! The real `varpulis server` binary: flags, banner, SIGTERM drains and deregisters.

use crate::harness::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_binary_cleanly_and_deregisters() {
    let coord_port = free_port();
    let coord = FakeCoordinator::default();
    let _stop = coord.serve(coord_port).await;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_varpulis"))
        .args([
            "server",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--worker-id",
            "proc-1",
        ])
        .args([
            "--coordinator",
            &format!("http://127.0.0.1:{coord_port}"),
            "--heartbeat-interval",
            "0.2",
        ])
        .args(["--label", "zone=b", "--max-pipelines", "7"])
        .env("VARPULIS_API_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ok = wait_for(Duration::from_secs(20), || async {
        coord.heartbeats() >= 1
    })
    .await;
    if !ok {
        let _ = child.kill();
        panic!("the binary never registered");
    }
    {
        let seen = coord.seen.lock().unwrap();
        let reg = &seen.registrations[0];
        assert_eq!(reg["worker_id"], "proc-1");
        assert_eq!(reg["address"], format!("http://127.0.0.1:{port}"));
        assert_eq!(reg["labels"]["zone"], "b");
        assert_eq!(reg["capacity"]["max_pipelines"], 7);
    }
    let (s, _) = get(&format!("http://127.0.0.1:{port}/api/v1/pipelines")).await;
    assert_eq!(s, 200);

    // Signal our own child by pid.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("did not exit after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(coord.deregistrations(), ["proc-1"]);
}
