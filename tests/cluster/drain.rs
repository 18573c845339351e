//! Drain (issue 6): `POST /workers/{id}/drain` moves every pipeline away with a fresh
//! checkpoint (the count continues exactly), the worker becomes removable, a drain with nowhere
//! to go answers 409 and its migration waits pending until a worker joins; a worker stopped
//! with SIGTERM drains itself before deregistering.

use crate::harness::{wait_until, Ensemble};
use crate::migration::{
    create_counters, heal_opts, inject, migrations, pipelines_on_worker, wait_placed,
};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_moves_pipelines_with_their_state_and_waits_for_a_target() {
    let mut ens = Ensemble::start(1, 2, heal_opts()).await;
    let gid = create_counters(&ens, 0, "drained", &[("count", "Tick", "worker-0")]).await;
    for v in 0..5 {
        assert_eq!(inject(&ens, 0, &gid, "Tick", v).await, v + 1);
    }

    let r = ens
        .api
        .post(&ens.cluster_url(0, "/workers/nobody/drain"), &json!({}))
        .await
        .unwrap();
    r.expect_error(404);

    let r = ens
        .api
        .post(&ens.cluster_url(0, "/workers/worker-0/drain"), &json!({}))
        .await
        .unwrap();
    r.expect_status(200);
    assert_eq!(r.body["status"], "draining", "{}", r.text);
    assert_eq!(
        r.body["migrations"][0]["to_worker"], "worker-1",
        "{}",
        r.text
    );

    wait_placed(&ens, 0, &gid, "count", "worker-1").await;
    // A fresh checkpoint was taken at the move: not one event lost, none counted twice.
    assert_eq!(inject(&ens, 0, &gid, "Tick", 6).await, 6);
    let me = &ens;
    let w0 = wait_until(
        "worker-0 removable",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move {
            let r = me
                .api
                .get(&me.cluster_url(0, "/workers/worker-0"))
                .await
                .ok()?;
            (r.body["removable"] == true).then_some(r.body)
        },
    )
    .await;
    assert_eq!(w0["status"], "draining");
    assert_eq!(w0["assigned_pipelines"], json!([]));
    assert!(
        pipelines_on_worker(&ens, 0).await.unwrap().is_empty(),
        "source copy deleted"
    );
    assert_eq!(pipelines_on_worker(&ens, 1).await.unwrap().len(), 1);

    // worker-1 cannot drain anywhere (worker-0 is draining): 409, migration pending, kept.
    let r = ens
        .api
        .post(&ens.cluster_url(0, "/workers/worker-1/drain"), &json!({}))
        .await
        .unwrap();
    r.expect_error(409);
    let all = migrations(&ens, 0).await;
    assert!(
        all.iter().any(|m| m["from_worker"] == "worker-1"
            && m["status"] == "pending"
            && m["reason"] == "drain"),
        "{all:?}"
    );
    // A worker joins: the pending drain completes there, with the state.
    ens.add_worker("worker-2");
    wait_placed(&ens, 0, &gid, "count", "worker-2").await;
    assert_eq!(inject(&ens, 0, &gid, "Tick", 7).await, 7);
    let all = migrations(&ens, 0).await;
    let drains: Vec<_> = all.iter().filter(|m| m["reason"] == "drain").collect();
    assert_eq!(drains.len(), 2, "{all:?}");
    assert!(drains.iter().all(|m| m["status"] == "completed"
        && m["restored_from_checkpoint"] == true
        && m["duration_ms"].is_u64()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_worker_drains_itself_before_leaving() {
    let mut ens = Ensemble::start(1, 2, heal_opts()).await;
    let gid = create_counters(&ens, 0, "leaving", &[("count", "Tick", "worker-0")]).await;
    for v in 0..3 {
        inject(&ens, 0, &gid, "Tick", v).await;
    }
    ens.workers[0].proc.term();
    wait_placed(&ens, 0, &gid, "count", "worker-1").await;
    assert_eq!(inject(&ens, 0, &gid, "Tick", 4).await, 4);
    let me = &mut ens;
    let exited = wait_until(
        "worker-0 exits",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let status = me.workers[0].proc.exit_status();
            async move { status }
        },
    )
    .await;
    assert!(exited.success(), "worker-0 exit: {exited:?}");
    // It deregisters when its key is accepted by the coordinator; here (distinct worker and
    // admin keys) the DELETE is refused and it stays listed as a removable draining worker.
    let r = ens
        .api
        .get(&ens.cluster_url(0, "/workers/worker-0"))
        .await
        .unwrap();
    assert!(
        r.status == 404 || (r.body["status"] == "draining" && r.body["removable"] == true),
        "{}",
        r.text
    );
    let all = migrations(&ens, 0).await;
    assert!(
        all.iter()
            .any(|m| m["reason"] == "drain" && m["status"] == "completed"),
        "{all:?}"
    );
}
