//! Registration with retry, heartbeats, re-registration on 404, failover between URLs.

use crate::harness::*;
use std::time::Duration;
use varpulis_worker::WorkerConfig;

const WAIT: Duration = Duration::from_secs(10);

async fn ready(w: &Worker) -> u16 {
    client()
        .get(format!("{}/ready", w.url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_a_coordinator_that_appears_late_then_heartbeats() {
    let port = free_port();
    let w = start_worker(WorkerConfig {
        coordinators: vec![format!("http://127.0.0.1:{port}")],
        worker_token: Some("join-me".into()),
        labels: [("zone".to_owned(), "a".to_owned())].into(),
        ..config()
    })
    .await;
    // Not registered yet: not ready.
    assert_eq!(ready(&w).await, 503);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let coord = FakeCoordinator::default();
    let _stop = coord.serve(port).await;
    assert!(
        wait_for(WAIT, || async { coord.registrations() >= 1 }).await,
        "worker never registered"
    );
    assert!(wait_for(WAIT, || async { ready(&w).await == 200 }).await);
    assert!(
        wait_for(WAIT, || async { coord.heartbeats() >= 2 }).await,
        "no heartbeats"
    );
    {
        let seen = coord.seen.lock().unwrap();
        let reg = &seen.registrations[0];
        assert_eq!(reg["worker_id"], "w-test");
        assert_eq!(reg["address"], w.url.as_str());
        assert_eq!(reg["api_key"], KEY);
        assert_eq!(reg["labels"]["zone"], "a");
        assert_eq!(reg["capacity"]["max_pipelines"], 100);
        assert_eq!(seen.tokens[0].as_deref(), Some("join-me"));
        // The key the id is bound to, on registration and every heartbeat.
        assert!(
            seen.keys.iter().all(|k| k.as_deref() == Some(KEY)),
            "{:?}",
            seen.keys
        );
        assert!(seen.heartbeats[0]["pipelines_running"].is_u64());
    }
    w.shutdown().await;
    assert_eq!(
        coord.deregistrations(),
        ["w-test"],
        "graceful shutdown deregisters"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_registers_at_once_when_the_coordinator_forgets_it() {
    let port = free_port();
    let coord = FakeCoordinator::default();
    let _stop = coord.serve(port).await;
    let w = start_worker(WorkerConfig {
        coordinators: vec![format!("http://127.0.0.1:{port}")],
        ..config()
    })
    .await;
    let id = deploy(
        &w,
        "f",
        "stream Hot = Reading .where(temp > 50) .emit(id: id)",
    )
    .await;
    assert!(wait_for(WAIT, || async { coord.heartbeats() >= 1 }).await);
    coord.forget_all();
    assert!(
        wait_for(WAIT, || async { coord.registrations() >= 2 }).await,
        "no re-registration after 404"
    );
    // Copy out of the lock so no guard lives across the await below.
    let again = coord.seen.lock().unwrap().registrations[1].clone();
    assert_eq!(
        again["running_pipelines"][0]["pipeline_id"],
        id.as_str(),
        "{again}"
    );
    assert_eq!(again["running_pipelines"][0]["name"], "f");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_second_coordinator_when_the_first_dies() {
    let (p1, p2) = (free_port(), free_port());
    let (c1, c2) = (FakeCoordinator::default(), FakeCoordinator::default());
    let stop1 = c1.serve(p1).await;
    let _stop2 = c2.serve(p2).await;
    let w = start_worker(WorkerConfig {
        coordinators: vec![
            format!("http://127.0.0.1:{p1}"),
            format!("http://127.0.0.1:{p2}"),
        ],
        ..config()
    })
    .await;
    assert!(wait_for(WAIT, || async { c1.heartbeats() >= 1 }).await);
    assert_eq!(
        c2.registrations(),
        0,
        "the first URL is used while it answers"
    );
    stop1.send(()).unwrap();
    // The second coordinator does not know the worker: 404 on heartbeat, then registration.
    assert!(
        wait_for(WAIT, || async { c2.heartbeats() >= 1 }).await,
        "no failover"
    );
    assert!(c2.registrations() >= 1);
    w.shutdown().await;
    assert_eq!(c2.deregistrations(), ["w-test"]);
}
