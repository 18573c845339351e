//! Connections (issue 18 item 6): idle connections under a low file-descriptor limit, a
//! slowloris client, per-client rate limits, on coordinators and on a worker.

use crate::common::Writer;
use crate::harness::{free_port, wait_until, Api, Ensemble, NetLayout, Opts, Proc};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs the child with a soft and hard limit of 1,024 open files.
fn low_fd_prefix() -> Vec<String> {
    vec!["prlimit".into(), "--nofile=1024:1024".into(), "--".into()]
}

/// `host:port` of a base URL.
fn authority(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Opens `n` TCP connections to `addr` and keeps them silent.
async fn idle_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => conns.push(stream),
            _ => continue,
        }
    }
    conns
}

/// How many of `conns` the server closed or answered `503` within `wait`.
async fn closed_or_refused(conns: &mut [TcpStream], wait: Duration) -> usize {
    let deadline = Instant::now() + wait;
    let mut count = 0;
    for conn in conns.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 512];
        match tokio::time::timeout(left.max(Duration::from_millis(1)), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => count += 1,
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(
                    text.starts_with("HTTP/1.1 503") && text.contains("overloaded"),
                    "unexpected answer to a silent connection: {text}"
                );
                count += 1;
            }
            Err(_) => {}
        }
    }
    count
}

/// Closes what the server left of `idle` within 5 s, and checks that the connections past the
/// cap were closed or refused.
async fn assert_extra_connections_closed(idle: &mut [TcpStream]) {
    let refused = closed_or_refused(idle, Duration::from_secs(5)).await;
    assert!(
        refused >= idle.len().saturating_sub(600),
        "{refused} of {} idle connections closed or refused",
        idle.len()
    );
}

/// `varpulis server` on a free loopback port with `extra` flags, run under `prefix`
/// (`prlimit …`); returns it and its URL once `/health` answers 200 through `api`.
async fn wrapped_worker(
    prefix: Vec<String>,
    extra: &[&str],
    api: &Api,
    dir: &std::path::Path,
) -> (Proc, String) {
    let port = free_port();
    let mut args: Vec<String> = vec![
        "server".into(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let worker = Proc::spawn_wrapped("worker", prefix, args, dir);
    let url = format!("http://127.0.0.1:{port}");
    wait_until(
        "worker up",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let (api, url) = (api.clone(), url.clone());
            async move {
                matches!(api.get(&format!("{url}/health")).await, Ok(r) if r.status == 200)
                    .then_some(())
            }
        },
    )
    .await;
    (worker, url)
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_under_a_low_fd_limit_do_not_stop_a_coordinator() {
    let net = NetLayout {
        coords: vec![("127.0.0.1".into(), low_fd_prefix())],
        ..NetLayout::default()
    };
    let ens = Ensemble::start_in(3, 0, Opts::default(), &net).await;
    ens.wait_leader(Duration::from_secs(30)).await;
    let node = &ens.coords[0];
    let pid = node.proc.pid().expect("pid");
    let writer = Writer::start(&ens.api, &node.url);
    writer.wait_progress(20, Duration::from_secs(20)).await;

    let mut idle = idle_connections(&authority(&node.url), 1100).await;
    assert!(idle.len() >= 1000, "only {} connections opened", idle.len());

    // The node answers: health, its own writes (forwarded or led), metrics.
    let fresh = Api::new(Some(&ens.opts.api_key)).with_timeout(Duration::from_secs(5));
    for _ in 0..5 {
        let started = Instant::now();
        let health = fresh
            .get(&format!("{}/health", node.url))
            .await
            .expect("/health answers under 1,100 idle connections");
        assert_eq!(health.status, 200, "{}", health.text);
        assert!(started.elapsed() < Duration::from_secs(5));
        let write = fresh
            .post(
                &format!("{}/api/v1/cluster/workers/register", node.url),
                &crate::harness::fake_worker("fresh-client"),
            )
            .await
            .expect("a write through the node answers");
        assert!(write.ok(), "{}: {}", write.status, write.text);
    }
    // The cluster keeps committing through it.
    writer.wait_progress(50, Duration::from_secs(20)).await;
    // Extra connections were closed or refused, and the node stays below its limit.
    assert_extra_connections_closed(&mut idle).await;
    let fds = open_fds(pid);
    assert!(fds < 1000, "{fds} descriptors open");
    drop(idle);
    let stats = writer.finish().await;
    assert!(
        stats.failed.len() <= 2,
        "writes failed: {:?}",
        &stats.failed[..stats.failed.len().min(5)]
    );
    // Still a healthy member of the group.
    let fresh = fresh.with_timeout(Duration::from_secs(5));
    let health = fresh
        .get(&format!("{}/health", node.url))
        .await
        .expect("health");
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn a_slowloris_client_is_cut_and_others_are_served() {
    let opts = Opts {
        coord_extra_args: vec!["--header-read-timeout".into(), "1".into()],
        ..Opts::default()
    };
    let ens = Ensemble::start(1, 0, opts).await;
    ens.wait_leader(Duration::from_secs(30)).await;
    let url = ens.coords[0].url.clone();
    let mut slow = TcpStream::connect(authority(&url)).await.expect("connect");
    let started = Instant::now();
    let head = b"POST /api/v1/cluster/connectors HTTP/1.1\r\nHost: x\r\nX-Padding: ";
    let mut cut = false;
    let mut sent = 0usize;
    while started.elapsed() < Duration::from_secs(20) {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        if slow.write_all(&[byte]).await.is_err() {
            cut = true;
            break;
        }
        sent += 1;
        // Meanwhile the node serves everyone else.
        if sent.is_multiple_of(5) {
            let health = ens.api.get(&format!("{url}/health")).await.expect("health");
            assert_eq!(health.status, 200);
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    assert!(
        cut,
        "a client sending its head byte by byte is disconnected"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cut after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn writes_over_the_rate_get_429_then_recover() {
    let opts = Opts {
        coord_extra_args: vec![
            "--rate-limit-writes".into(),
            "2".into(),
            "--rate-limit-burst".into(),
            "5".into(),
            "--rate-limit-metrics".into(),
            "1".into(),
        ],
        ..Opts::default()
    };
    let ens = Ensemble::start(1, 0, opts).await;
    ens.wait_leader(Duration::from_secs(30)).await;
    let url = ens.coords[0].url.clone();
    let stranger = Api::new(None).with_timeout(Duration::from_secs(5));
    let connector = json!({"name": "c1", "connector_type": "mqtt",
        "params": {"host": "127.0.0.1", "port": 1883}});
    let target = format!("{url}/api/v1/cluster/connectors");
    // The burst passes (to the auth check: 401), then 429 with Retry-After.
    let mut limited = None;
    for i in 0..20 {
        let r = stranger.post(&target, &connector).await.expect("answer");
        if r.status == 429 {
            limited = Some((i, r));
            break;
        }
        assert_eq!(r.status, 401, "{}", r.text);
    }
    let (i, r) = limited.expect("a stranger's writes are rate limited");
    assert!(i >= 5, "the burst of 5 passed first (limited after {i})");
    assert_eq!(r.body["code"], "too_many_requests", "{}", r.text);
    let retry: u64 = r
        .retry_after
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    // The operator (API key) and reads are not limited meanwhile.
    for _ in 0..20 {
        let r = ens
            .api
            .get(&format!("{url}/api/v1/cluster/connectors"))
            .await
            .expect("read");
        assert_eq!(r.status, 200);
    }
    let r = stranger
        .get(&format!("{url}/health"))
        .await
        .expect("health");
    assert_eq!(r.status, 200);
    let r = ens
        .api
        .post(&target, &connector)
        .await
        .expect("operator write");
    assert!(r.ok(), "{}: {}", r.status, r.text);
    // After Retry-After the bucket has a token again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let r = stranger.post(&target, &connector).await.expect("answer");
    assert_eq!(r.status, 401, "recovered: {}", r.text);
    // GET /raft/metrics (a hash of the whole state) is limited for strangers too.
    let mut metrics_limited = false;
    for _ in 0..10 {
        let r = stranger
            .get(&format!("{url}/raft/metrics"))
            .await
            .expect("metrics");
        if r.status == 429 {
            metrics_limited = true;
            break;
        }
        assert_eq!(r.status, 200);
    }
    assert!(
        metrics_limited,
        "strangers' /raft/metrics polling is limited"
    );
    assert!(ens.metrics(0).await.is_some(), "not for the operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_under_a_low_fd_limit_do_not_stop_a_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = "worker-key";
    let api = Api::new(Some(key)).with_timeout(Duration::from_secs(5));
    let (mut worker, url) =
        wrapped_worker(low_fd_prefix(), &["--api-key", key], &api, dir.path()).await;
    let mut idle = idle_connections(&authority(&url), 1100).await;
    assert!(idle.len() >= 1000, "only {} connections opened", idle.len());
    for _ in 0..5 {
        let started = Instant::now();
        let health = api
            .get(&format!("{url}/health"))
            .await
            .expect("worker /health answers under 1,100 idle connections");
        assert_eq!(health.status, 200, "{}", health.text);
        assert!(started.elapsed() < Duration::from_secs(5));
        let pipelines = api
            .get(&format!("{url}/api/v1/pipelines"))
            .await
            .expect("an authenticated call answers");
        assert!(
            pipelines.status < 500,
            "{}: {}",
            pipelines.status,
            pipelines.text
        );
    }
    assert_extra_connections_closed(&mut idle).await;
    let fds = worker.pid().map(open_fds).unwrap_or(0);
    assert!(fds < 1000, "{fds} descriptors open");
    assert!(worker.is_up(), "the worker is still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_out_of_descriptors_keeps_serving_and_recovers() {
    // So few descriptors that accepting fails with EMFILE before the connection cap is reached.
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::new(None).with_timeout(Duration::from_secs(5));
    let prefix = vec!["prlimit".into(), "--nofile=16:16".into(), "--".into()];
    let (mut worker, url) =
        wrapped_worker(prefix, &["--max-connections", "4096"], &api, dir.path()).await;
    // More connections than descriptors; then, with them still open, the node answers.
    let idle = idle_connections(&authority(&url), 200).await;
    assert!(!idle.is_empty());
    let fresh = Api::new(None).with_timeout(Duration::from_secs(10));
    let health = wait_until(
        "health while out of descriptors",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let fresh = fresh.clone();
            let url = url.clone();
            async move {
                fresh
                    .get(&format!("{url}/health"))
                    .await
                    .ok()
                    .filter(|r| r.status == 200)
            }
        },
    )
    .await;
    assert_eq!(health.status, 200);
    assert!(worker.is_up(), "the worker survived EMFILE");
    drop(idle);
    let health = fresh.get(&format!("{url}/health")).await.expect("health");
    assert_eq!(health.status, 200);
    let log = std::fs::read_to_string(dir.path().join("worker.out")).unwrap_or_default()
        + &std::fs::read_to_string(dir.path().join("worker.err")).unwrap_or_default();
    let failures = log.matches("accept failed").count();
    assert!(
        failures >= 1,
        "the test did not run out of descriptors:\n{log}"
    );
    assert!(
        failures <= 2,
        "accept errors are not logged in a loop:\n{log}"
    );
}
