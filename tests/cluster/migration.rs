//! Failover with state (issue 6): a stateful running count survives `kill -9` of its worker
//! (it resumes from the checkpoint the worker pushed, not from zero), a frozen worker that
//! comes back runs no duplicate, and a migration left half done by a killed leader is finished
//! by the next one. Helpers here are shared with `drain.rs` and `rebalance.rs`.

use crate::harness::{wait_until, Ensemble, Opts};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running count of `event` events: each one emits `Count(n)` with the count so far.
pub fn counter(event: &str) -> String {
    format!(
        "var count = 0\nfn bump(v: int):\n    count := count + 1\n    emit Count(n: count, v: v)\n\
         stream Counted = {event} .process(bump(value))\n"
    )
}

/// Options with fast failure detection, workers pushing checkpoints every 0.3 s.
pub fn heal_opts() -> Opts {
    Opts {
        worker_extra_args: vec!["--checkpoint-interval".into(), "0.3".into()],
        ..Opts::default()
    }
}

/// Creates a group of one counter pipeline per `(name, event, affinity)`, routed by event type;
/// returns the group id.
pub async fn create_counters(
    ens: &Ensemble,
    via: usize,
    group: &str,
    pipes: &[(&str, &str, &str)],
) -> String {
    let pipelines: Vec<Value> = pipes
        .iter()
        .map(|(name, event, affinity)| {
            json!({"name": name, "source": counter(event), "worker_affinity": affinity})
        })
        .collect();
    let routes: Vec<Value> = pipes
        .iter()
        .map(|(name, event, _)| {
            json!({"from_pipeline": "_external", "to_pipeline": name, "event_types": [event]})
        })
        .collect();
    let spec = json!({"name": group, "pipelines": pipelines, "routes": routes});
    let gid = ens.create_group(via, &spec).await;
    let me = ens;
    let gid_ref = &gid;
    wait_until(
        "every placement running",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async move {
            let g = group_view(me, via, gid_ref).await?;
            let all = g["placements"].as_array()?;
            all.iter().all(|p| p["status"] == "Running").then_some(())
        },
    )
    .await;
    gid
}

/// `GET /pipeline-groups/{gid}` through coordinator `via`.
pub async fn group_view(ens: &Ensemble, via: usize, gid: &str) -> Option<Value> {
    ens.group_view(via, gid).await
}

/// Waits (10 s at most) until the stored checkpoint of `pipeline`, seen through `via`, holds at
/// least `n` events; returns its event count.
pub async fn wait_checkpoint(ens: &Ensemble, via: usize, gid: &str, pipeline: &str, n: u64) -> u64 {
    wait_until(
        &format!("checkpoint of {n} events stored"),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move {
            let view = group_view(ens, via, gid).await?;
            let stored = placement(&view, pipeline)["checkpoint_events"].as_u64()?;
            (stored >= n).then_some(stored)
        },
    )
    .await
}

/// The placement of `pipeline` in the group view.
pub fn placement<'a>(group: &'a Value, pipeline: &str) -> &'a Value {
    group["placements"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["pipeline_name"] == pipeline))
        .unwrap_or(&Value::Null)
}

/// Injects one `event` through coordinator `via`; the count it produced, or None on any error
/// (503 while the placement moves, 502 when its worker is gone).
pub async fn try_inject(
    ens: &Ensemble,
    via: usize,
    gid: &str,
    event: &str,
    value: i64,
) -> Option<i64> {
    let url = ens.cluster_url(via, &format!("/pipeline-groups/{gid}/inject"));
    let api = ens.api.with_timeout(Duration::from_secs(3));
    let r = api
        .post(
            &url,
            &json!({"event_type": event, "fields": {"value": value}}),
        )
        .await
        .ok()?;
    if r.status != 200 {
        return None;
    }
    r.body["worker_response"]["output_events"]
        .as_array()?
        .last()?["fields"]["n"]
        .as_i64()
}

/// Injects one event, retrying (bounded) while the placement moves; returns the count.
pub async fn inject(ens: &Ensemble, via: usize, gid: &str, event: &str, value: i64) -> i64 {
    wait_until(
        &format!("{event} accepted"),
        Duration::from_secs(20),
        Duration::from_millis(100),
        || try_inject(ens, via, gid, event, value),
    )
    .await
}

/// Names of the pipelines running on worker `i`, asked from the worker itself.
pub async fn pipelines_on_worker(ens: &Ensemble, i: usize) -> Option<Vec<String>> {
    let api = ens.api.with_key(Some(&ens.opts.worker_key));
    let r = api
        .get(&format!("{}/api/v1/pipelines", ens.workers[i].url))
        .await
        .ok()?;
    if !r.ok() {
        return None;
    }
    Some(
        r.body["pipelines"]
            .as_array()?
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// `GET /migrations` through coordinator `via`.
pub async fn migrations(ens: &Ensemble, via: usize) -> Vec<Value> {
    let r = ens
        .api
        .get(&ens.cluster_url(via, "/migrations"))
        .await
        .unwrap();
    r.expect_status(200);
    r.body["migrations"].as_array().cloned().unwrap_or_default()
}

/// Waits until `pipeline` runs on worker `worker_id` (placement Running there).
pub async fn wait_placed(
    ens: &Ensemble,
    via: usize,
    gid: &str,
    pipeline: &str,
    worker_id: &str,
) -> Value {
    wait_until(
        &format!("{pipeline} running on {worker_id}"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move {
            let g = group_view(ens, via, gid).await?;
            let p = placement(&g, pipeline);
            (p["worker_id"] == worker_id && p["status"] == "Running").then(|| p.clone())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_count_resumes_from_its_checkpoint_and_restart_runs_no_duplicate() {
    let mut ens = Ensemble::start(1, 2, heal_opts()).await;
    let gid = create_counters(&ens, 0, "stateful", &[("count", "Tick", "worker-0")]).await;
    for v in 0..10 {
        assert_eq!(inject(&ens, 0, &gid, "Tick", v).await, v + 1);
    }
    // The worker pushed a checkpoint with all ten events.
    wait_checkpoint(&ens, 0, &gid, "count", 10).await;

    // Events keep flowing while the worker is killed.
    let seen: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let flow = {
        let url = ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject"));
        let api = ens.api.with_timeout(Duration::from_secs(2));
        let (seen, stop) = (seen.clone(), stop.clone());
        tokio::spawn(async move {
            let mut v = 100;
            while !stop.load(Ordering::Relaxed) {
                v += 1;
                let event = json!({"event_type": "Tick", "fields": {"value": v}});
                if let Ok(r) = api.post(&url, &event).await {
                    let n = r.body["worker_response"]["output_events"][0]["fields"]["n"].as_i64();
                    if let (200, Some(n)) = (r.status, n) {
                        let worker = r.body["worker_id"].as_str().unwrap_or("").to_owned();
                        seen.lock().unwrap().push((n, worker));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Waits until the flow got `n` answers from worker `w`.
    let wait_served = |w: &'static str, n: usize, timeout: Duration| {
        let seen = seen.clone();
        async move {
            wait_until(
                &format!("flow served by {w}"),
                timeout,
                Duration::from_millis(50),
                || {
                    let k = seen.lock().unwrap().iter().filter(|(_, x)| x == w).count();
                    async move { (k >= n).then_some(()) }
                },
            )
            .await
        }
    };
    wait_served("worker-0", 3, Duration::from_secs(10)).await;
    ens.workers[0].proc.kill();
    wait_placed(&ens, 0, &gid, "count", "worker-1").await;
    wait_served("worker-1", 5, Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    flow.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let acked_before_kill = seen
        .iter()
        .filter(|(_, w)| w == "worker-0")
        .map(|(n, _)| *n)
        .max()
        .unwrap_or(10);
    let after: Vec<i64> = seen
        .iter()
        .filter(|(_, w)| w == "worker-1")
        .map(|(n, _)| *n)
        .collect();
    assert!(!after.is_empty(), "no event served by worker-1: {seen:?}");
    let resumed_at = after[0];
    assert!(
        resumed_at > 10 && resumed_at <= acked_before_kill + 1,
        "count restarted at {resumed_at}, expected within (10, {}]: {seen:?}",
        acked_before_kill + 1
    );
    assert!(
        after.windows(2).all(|w| w[1] == w[0] + 1),
        "gap or reset after the move: {after:?}"
    );
    eprintln!("acked {acked_before_kill} before the kill, resumed at {resumed_at} on worker-1");

    let all = migrations(&ens, 0).await;
    let m = all
        .iter()
        .find(|m| m["from_worker"] == "worker-0")
        .expect("migration recorded");
    assert_eq!(m["reason"], "worker_unhealthy");
    assert_eq!(m["status"], "completed");
    assert_eq!(m["restored_from_checkpoint"], true);
    assert!(m["duration_ms"].as_u64().is_some(), "{m}");

    // The dead worker comes back empty and registers again: the pipeline runs exactly once.
    ens.workers[0].proc.restart();
    ens.wait_workers_in_status(&["worker-0"], "ready", Duration::from_secs(20))
        .await;
    let n = inject(&ens, 0, &gid, "Tick", 1).await;
    assert_eq!(n, after[after.len() - 1] + 1);
    let on0 = pipelines_on_worker(&ens, 0).await.unwrap();
    let on1 = pipelines_on_worker(&ens, 1).await.unwrap();
    assert_eq!(
        on0.len() + on1.len(),
        1,
        "worker-0 {on0:?}, worker-1 {on1:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_that_comes_back_runs_no_duplicate() {
    let mut ens = Ensemble::start(1, 2, heal_opts()).await;
    let gid = create_counters(&ens, 0, "frozen", &[("count", "Tick", "worker-0")]).await;
    for v in 0..5 {
        inject(&ens, 0, &gid, "Tick", v).await;
    }
    assert_eq!(wait_checkpoint(&ens, 0, &gid, "count", 5).await, 5);
    // SIGSTOP: the worker keeps its pipeline in memory but stops answering.
    ens.workers[0].proc.stop();
    wait_placed(&ens, 0, &gid, "count", "worker-1").await;
    assert_eq!(
        inject(&ens, 0, &gid, "Tick", 6).await,
        6,
        "restored from the 5-event checkpoint"
    );
    ens.workers[0].proc.cont();
    // Its next heartbeat lists the old pipeline (epoch 1): the leader deletes the orphan.
    let me = &ens;
    wait_until(
        "old copy removed from worker-0",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async move {
            let on0 = pipelines_on_worker(me, 0).await?;
            on0.is_empty().then_some(())
        },
    )
    .await;
    assert_eq!(pipelines_on_worker(&ens, 1).await.unwrap().len(), 1);
    assert_eq!(inject(&ens, 0, &gid, "Tick", 7).await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_mid_migration_new_leader_completes_it() {
    let mut ens = Ensemble::start(3, 1, heal_opts()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let gid = create_counters(&ens, leader, "orphaned", &[("count", "Tick", "worker-0")]).await;
    for v in 0..4 {
        inject(&ens, leader, &gid, "Tick", v).await;
    }
    assert_eq!(wait_checkpoint(&ens, leader, &gid, "count", 4).await, 4);
    // The only worker dies: the migration starts but has nowhere to go (pending).
    ens.workers[0].proc.kill();
    let me = &ens;
    let pending = wait_until(
        "pending migration",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async move {
            let all = migrations(me, leader).await;
            all.into_iter().find(|m| m["status"] == "pending")
        },
    )
    .await;
    let id = pending["id"].as_str().unwrap().to_owned();
    // Kill the leader in the middle of it; a new worker then joins the new leader's cluster.
    ens.coords[leader].proc.kill();
    let survivors = ens.others(leader);
    let new_leader = ens
        .wait_leader_among(&survivors, Duration::from_secs(20))
        .await;
    ens.add_worker("worker-new");
    wait_placed(&ens, new_leader, &gid, "count", "worker-new").await;
    let all = migrations(&ens, new_leader).await;
    let m = all
        .iter()
        .find(|m| m["id"] == id.as_str())
        .expect("same migration");
    assert_eq!(m["status"], "completed", "{m}");
    assert_eq!(m["to_worker"], "worker-new");
    assert_eq!(m["restored_from_checkpoint"], true);
    assert_eq!(inject(&ens, new_leader, &gid, "Tick", 5).await, 5);
}
