//! Guarantee 4 of DESIGN.md (detection part) in Raft mode: a worker killed with SIGKILL is
//! marked `unhealthy` within heartbeat-timeout + sweep interval (+ slack for a loaded CI
//! machine), on the leader and the followers; restarted, it is `ready` again.

use crate::harness::{fake_worker, wait_until, Ensemble, Opts};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_is_marked_unhealthy_then_ready_again() {
    let opts = Opts::default();
    let bound = Duration::from_secs_f64(opts.heartbeat_timeout + opts.sweep_interval + 5.0);
    let mut ens = Ensemble::start(3, 1, opts).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let id = ens.workers[0].id.clone();

    ens.workers[0].proc.kill();
    let killed_at = Instant::now();
    let (me, wid) = (&ens, id.as_str());
    for i in [leader, ens.others(leader)[0], ens.others(leader)[1]] {
        wait_until(
            &format!("{wid} unhealthy on coordinator {}", i + 1),
            bound.saturating_sub(killed_at.elapsed()),
            Duration::from_millis(100),
            || async move { (me.worker_status(i, wid).await? == "unhealthy").then_some(()) },
        )
        .await;
    }
    eprintln!(
        "worker marked unhealthy everywhere {:?} after SIGKILL",
        killed_at.elapsed()
    );
    let h = ens
        .api
        .get(&format!("{}/health", ens.coords[leader].url))
        .await
        .unwrap();
    assert_eq!(h.body["workers"]["unhealthy"], 1, "{}", h.text);

    ens.workers[0].proc.restart();
    let me = &ens;
    wait_until(
        &format!("{wid} ready again"),
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async move { (me.worker_status(leader, wid).await? == "ready").then_some(()) },
    )
    .await;
    let h = ens
        .api
        .get(&format!("{}/health", ens.coords[leader].url))
        .await
        .unwrap();
    assert_eq!(h.body["workers"]["ready"], 1, "{}", h.text);
    assert_eq!(h.body["workers"]["unhealthy"], 0, "{}", h.text);
}

/// Guarantee 4 (recovery part): once a worker is unhealthy, its pipelines run elsewhere and the
/// group keeps answering injections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_of_a_killed_worker_move_to_a_live_one() {
    let mut ens = Ensemble::start(3, 2, Opts::default()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let group = serde_json::json!({
        "name": "movable",
        "pipelines": [{"name": "counter", "source": "stream Out = Tick .emit(seen: n)",
                       "worker_affinity": "worker-0"}],
        "routes": [{"from_pipeline": "_external", "to_pipeline": "counter", "event_types": ["Tick*"]}]
    });
    let r = ens
        .api
        .post(&ens.cluster_url(follower, "/pipeline-groups"), &group)
        .await
        .unwrap();
    r.expect_status(201);
    let gid = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.body["placements"][0]["worker_id"], "worker-0",
        "{}",
        r.text
    );
    let inject = ens.cluster_url(follower, &format!("/pipeline-groups/{gid}/inject"));
    let tick = serde_json::json!({"event_type": "Tick", "fields": {"n": 1}});
    ens.api
        .post(&inject, &tick)
        .await
        .unwrap()
        .expect_status(200);

    ens.workers[0].proc.kill();
    let me = &ens;
    let (gid_ref, inject_ref, tick_ref) = (&gid, &inject, &tick);
    let moved = wait_until(
        "pipeline running on worker-1",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            let url = me.cluster_url(leader, &format!("/pipeline-groups/{gid_ref}"));
            let r = me.api.get(&url).await.ok()?;
            let p = &r.body["placements"][0];
            (p["worker_id"] == "worker-1" && p["status"] == "Running").then(|| r.body.clone())
        },
    )
    .await;
    eprintln!("placement after the kill: {}", moved["placements"][0]);
    let r = wait_until(
        "injection served by worker-1",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async move {
            let r = me.api.post(inject_ref, tick_ref).await.ok()?;
            (r.status == 200).then_some(r)
        },
    )
    .await;
    assert_eq!(r.body["worker_id"], "worker-1", "{}", r.text);
    let out = r.body["worker_response"]["output_events"]
        .as_array()
        .unwrap();
    assert_eq!(out.len(), 1, "{}", r.text);
    let r = ens
        .api
        .get(&ens.cluster_url(leader, "/migrations"))
        .await
        .unwrap();
    r.expect_status(200);
    let migrations = r.body["migrations"].as_array().unwrap();
    assert!(
        migrations.iter().any(|m| m["from_worker"] == "worker-0"
            && m["to_worker"] == "worker-1"
            && m["reason"] == "worker_unhealthy"),
        "no migration recorded: {}",
        r.text
    );
}

/// `varpulis_coordinator_heartbeats_total` summed over the coordinators (each counts the
/// heartbeats it handled as leader, so the sum holds across a leader change).
async fn heartbeats_total(ens: &Ensemble) -> f64 {
    let mut sum = 0.0;
    for c in &ens.coords {
        let Ok(r) = ens.api.get(&format!("{}/metrics", c.url)).await else {
            continue;
        };
        sum += r
            .text
            .lines()
            .find(|l| l.starts_with("varpulis_coordinator_heartbeats_total"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    sum
}

/// Issue 24 (heartbeat rate): past `--max-heartbeats-per-second × interval` workers the leader
/// asks for a longer interval and a proportionally longer timeout; it marks a silent worker
/// only after the timeout it granted, and a real worker heartbeats at the asked interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_cluster_asks_for_slower_heartbeats_and_workers_follow() {
    // 1 s / 3 s configured, at most 1 heartbeat/s: 4 workers → every 4 s, unhealthy after 12 s.
    let opts = Opts {
        coord_extra_args: vec!["--max-heartbeats-per-second".into(), "1".into()],
        ..Opts::default()
    };
    let mut ens = Ensemble::start(3, 0, opts).await;
    ens.wait_leader(Duration::from_secs(20)).await;
    // A leadership change after the registrations would give every worker a new grace of its
    // timeout (12 s): let the start-up election settle first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let url = ens.cluster_url(leader, "/workers/register");
    let mut last = serde_json::Value::Null;
    for i in 0..4 {
        let r = ens
            .api
            .post(&url, &fake_worker(&format!("silent-{i}")))
            .await
            .unwrap();
        assert!(r.ok(), "{}", r.text);
        last = r.body;
    }
    let registered = Instant::now();
    let interval = last["heartbeat_interval_ms"].as_u64().unwrap();
    assert!((3600..=4000).contains(&interval), "{last}");
    assert_eq!(last["heartbeat_timeout_ms"], 12_000, "{last}");
    assert_eq!(last["lease_ms"], 10_800, "{last}");
    assert_eq!(last["heartbeat_interval_secs"], 4, "{last}");
    // The first one registered alone: its grant was the configured 3 s, but the later ones'
    // are 12 s; after 6 s (3 s + sweep + slack) the first is marked, the last not yet.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        ens.worker_status(leader, "silent-0").await.as_deref(),
        Some("unhealthy")
    );
    assert_eq!(
        ens.worker_status(leader, "silent-3").await.as_deref(),
        Some("ready"),
        "marked before the 12 s it was granted"
    );
    let me = &ens;
    wait_until(
        "silent-3 unhealthy after its 12 s",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async move { (me.worker_status(leader, "silent-3").await? == "unhealthy").then_some(()) },
    )
    .await;
    assert!(registered.elapsed() >= Duration::from_secs(12));

    // A real worker (configured for 1 s heartbeats) follows the asked ~5 s interval.
    ens.add_worker("real");
    let me = &ens;
    wait_until(
        "real ready",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async move { (me.worker_status(leader, "real").await? == "ready").then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = heartbeats_total(&ens).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let sent = heartbeats_total(&ens).await - before;
    eprintln!("real worker: {sent} heartbeats in 12 s at the asked interval");
    assert!(
        (1.0..=4.0).contains(&sent),
        "{sent} heartbeats in 12 s: the worker did not follow the ~4.5-5 s interval"
    );
    assert_eq!(
        ens.worker_status(leader, "real").await.as_deref(),
        Some("ready")
    );
}
