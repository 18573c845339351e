//! Deterministic tests of the leader's behaviour: worker failover, drain, rebalance and
//! rolling updates driven through the real planners and executor, over an in-memory
//! replicated log and fake workers, on paused tokio time. Seeded: the same seed gives the same
//! worker calls and the same final state, which `runs_are_reproducible` checks.

#![allow(clippy::unwrap_used)]

mod sim;

use sim::{all_running, spec, Sim};
use varpulis_api::events::ClusterEvent;
use varpulis_cluster::version::StateMode;
use varpulis_cluster::{Command, MigrationStatus, PlacementStatus, WorkerStatus};
use varpulis_coordinator::leader::error::DriveError;
use varpulis_coordinator::leader::{drain, rebalance, rolling};

/// Where a pipeline runs: (worker, pipeline id, epoch).
fn placement_of(sim: &Sim, group: &str, pipeline: &str) -> (String, String, u64) {
    sim.read(|s| {
        let p = s
            .group(group)
            .unwrap()
            .placement(pipeline, 0)
            .unwrap()
            .clone();
        (
            p.worker_id.unwrap(),
            p.pipeline_id.unwrap_or_default(),
            p.epoch,
        )
    })
}

/// A three-worker cluster running group `app` (pipelines a, b, c) with some processed events
/// checkpointed.
async fn running_cluster(seed: u64, nodes: usize) -> (Sim, String) {
    let sim = Sim::new(nodes, seed);
    for w in ["w1", "w2", "w3"] {
        sim.add_worker(w).await;
    }
    let group = sim.create_group(spec("app", &["a", "b", "c"])).await;
    assert!(sim.run_until(10, all_running).await, "the group never ran");
    for p in ["a", "b", "c"] {
        let (worker, pipeline_id, _) = placement_of(&sim, &group, p);
        sim.workers.process(&worker, &pipeline_id, 10);
    }
    sim.tick().await; // the checkpoint loop stores the new counts
    (sim, group)
}

#[tokio::test(start_paused = true)]
async fn a_dead_workers_pipeline_is_restored_elsewhere_from_its_checkpoint() {
    let (sim, group) = running_cluster(7, 1).await;
    let (dead, _, epoch) = placement_of(&sim, &group, "a");
    sim.workers.kill(&dead);
    let moved = sim
        .run_until(20, |s| {
            let p = s.group(&group).unwrap().placement("a", 0).unwrap();
            p.worker_id.as_deref() != Some(dead.as_str()) && p.status == PlacementStatus::Running
        })
        .await;
    assert!(moved, "a never left {dead}");
    assert_eq!(
        sim.read(|s| s.worker(&dead).unwrap().status),
        WorkerStatus::Unhealthy
    );
    let (to, pipeline_id, new_epoch) = placement_of(&sim, &group, "a");
    assert_eq!(new_epoch, epoch + 1);
    let restored = &sim.workers.pipelines(&to)[&pipeline_id];
    assert_eq!(restored.events, 10, "restored from the stored checkpoint");
    let migration = sim.read(|s| s.migrations()[0].clone());
    assert_eq!(migration.status, MigrationStatus::Completed);
    assert!(migration.restored_from_checkpoint);
    let kinds: Vec<&str> = sim.raft.events(0).iter().map(ClusterEvent::kind).collect();
    let tail: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| k.starts_with("migration") || *k == "worker_unhealthy")
        .collect();
    assert_eq!(
        tail,
        [
            "worker_unhealthy",
            "migration_started",
            "migration_completed"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_drain_moves_live_state_and_frees_the_worker() {
    let (sim, group) = running_cluster(11, 1).await;
    let (leaving, old_id, _) = placement_of(&sim, &group, "b");
    // More events after the last stored checkpoint: only a fresh one carries them.
    sim.workers.process(&leaving, &old_id, 5);
    let drained = drain::drain_worker(sim.leader(), &leaving).await.unwrap();
    assert_eq!(drained.response.status, "draining");
    assert!(!drained.response.migrations.is_empty());
    let free = sim.run_until(20, |s| s.is_drained(&leaving)).await;
    assert!(free, "{leaving} never drained");
    assert!(sim.workers.pipelines(&leaving).is_empty(), "source removed");
    let (to, pipeline_id, _) = placement_of(&sim, &group, "b");
    assert_ne!(to, leaving);
    assert_eq!(sim.workers.pipelines(&to)[&pipeline_id].events, 15);
    // Nothing is placed on a draining worker afterwards.
    sim.create_group(spec("more", &["x", "y", "z"])).await;
    assert!(sim.read(|s| s.placements_on(&leaving).is_empty()));
}

#[tokio::test(start_paused = true)]
async fn a_joining_worker_gets_its_share_one_move_at_a_time() {
    let sim = Sim::new(1, 3);
    sim.add_worker("w1").await;
    let group = sim.create_group(spec("app", &["a", "b", "c", "d"])).await;
    assert!(sim.run_until(10, all_running).await);
    sim.add_worker("w2").await; // auto-rebalance is on: a rebalance is now wanted
    let mut most_active = 0;
    for _ in 0..30 {
        sim.tick().await;
        most_active = most_active.max(sim.read(|s| s.active_migrations().len()));
    }
    let loads = sim.read(|s| {
        let loads = s.worker_loads();
        (loads["w1"], loads["w2"])
    });
    assert_eq!(loads, (2, 2));
    assert!(
        most_active <= 1,
        "rebalance_max_moves = 1, saw {most_active}"
    );
    assert!(sim.read(all_running));
    // Balanced: another round plans nothing and forgets the wish.
    let answer = rebalance::round(sim.leader()).await;
    assert!(answer.moves.is_empty());
    assert!(!sim.leader().rebalance.is_wanted());
    let _ = group;
}

async fn start_update(sim: &Sim, group: &str, source: &str) -> Result<u64, DriveError> {
    let ctx = sim.leader();
    let mut new_spec = sim.read(|s| s.group(group).unwrap().spec.clone());
    new_spec.pipelines[0].source = source.to_string();
    let now = ctx.now_ms();
    let rollout = sim
        .read(|s| {
            rolling::plan(
                s,
                group,
                new_spec,
                vec!["a".into()],
                StateMode::Keep,
                None,
                now,
            )
        })
        .unwrap();
    ctx.store
        .write(Command::Rollout(
            varpulis_cluster::version::RolloutCommand::Start {
                group_id: group.to_string(),
                rollout: Box::new(rollout),
            },
        ))
        .await
        .unwrap();
    rolling::drive(ctx, group).await
}

#[tokio::test(start_paused = true)]
async fn a_rolling_update_hands_state_over_and_stops_the_old_version() {
    let (sim, group) = running_cluster(5, 1).await;
    let (worker, old_id, epoch) = placement_of(&sim, &group, "a");
    let version = start_update(&sim, &group, "stream a = X .emit(v: 2)")
        .await
        .unwrap();
    assert_eq!(version, 2);
    let (same_worker, new_id, new_epoch) = placement_of(&sim, &group, "a");
    assert_eq!(
        (same_worker.as_str(), new_epoch),
        (worker.as_str(), epoch + 1)
    );
    let pipelines = sim.workers.pipelines(&worker);
    assert!(!pipelines.contains_key(&old_id), "old version stopped");
    let new = &pipelines[&new_id];
    assert_eq!(new.events, 10, "state handed over");
    assert!(!new.paused, "the new version consumes its sources");
    assert_eq!(new.source, "stream a = X .emit(v: 2)");
    assert!(sim.read(|s| s.active_rollouts().is_empty()));
}

#[tokio::test(start_paused = true)]
async fn a_failed_hand_over_aborts_and_changes_nothing() {
    let (sim, group) = running_cluster(9, 1).await;
    let before = sim.read(|s| s.group(&group).unwrap().clone());
    let (worker, _, _) = placement_of(&sim, &group, "a");
    sim.workers.fail_handovers(true);
    let result = start_update(&sim, &group, "stream a = X .emit(v: 3)").await;
    assert!(matches!(result, Err(DriveError::Aborted(_))), "{result:?}");
    assert_eq!(sim.read(|s| s.group(&group).unwrap().clone()), before);
    let versions = sim.read(|s| s.group_versions(&group).cloned()).unwrap();
    assert!(versions.rollout.is_none());
    assert!(versions.last_error.unwrap().contains("hand-over failure"));
    // Only the old pipelines are left on the worker.
    let on_worker = sim.workers.pipelines(&worker);
    assert!(on_worker.values().all(|p| !p.paused), "{on_worker:?}");
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_finishes_what_the_old_one_started() {
    let (sim, group) = running_cluster(13, 3).await;
    let (dead, _, _) = placement_of(&sim, &group, "c");
    sim.workers.kill(&dead);
    // Node 0 marks the worker and starts the migration, but cannot deploy it before it
    // loses leadership.
    sim.workers.fail_deploys(1.0);
    assert!(
        sim.run_until(10, |s| !s.active_migrations().is_empty())
            .await
    );
    let started = sim.read(|s| s.active_migrations()[0].id.clone());
    assert!(started.starts_with("n0-"), "{started}");
    sim.raft.elect(1);
    sim.workers.fail_deploys(0.0);
    assert!(
        sim.run_until(20, |s| {
            let p = s.group(&group).unwrap().placement("c", 0).unwrap();
            p.worker_id.as_deref() != Some(dead.as_str()) && p.status == PlacementStatus::Running
        })
        .await
    );
    sim.assert_replicas_agree();
    let finished = sim.read(|s| s.migration(&started).unwrap().status);
    assert_eq!(
        finished,
        MigrationStatus::Completed,
        "node 1 completed node 0's migration"
    );
    assert_eq!(
        sim.raft.events(0),
        sim.raft.events(2),
        "same log, same events"
    );
}

#[tokio::test(start_paused = true)]
async fn flaky_deploys_are_retried_until_the_migration_completes() {
    let (sim, group) = running_cluster(21, 1).await;
    sim.workers.fail_deploys(0.5);
    let (dead, _, _) = placement_of(&sim, &group, "a");
    sim.workers.kill(&dead);
    let done = sim
        .run_until(120, |s| {
            let p = s.group(&group).unwrap().placement("a", 0).unwrap();
            p.worker_id.as_deref() != Some(dead.as_str()) && p.status == PlacementStatus::Running
        })
        .await;
    assert!(done, "calls: {:#?}", sim.workers.calls());
    sim.assert_replicas_agree();
}

/// Runs a failover with flaky deploys; returns the worker calls and the final state hash.
async fn scripted_run(seed: u64) -> (Vec<String>, String) {
    let (sim, group) = running_cluster(seed, 3).await;
    sim.workers.fail_deploys(0.3);
    let (dead, _, _) = placement_of(&sim, &group, "b");
    sim.workers.kill(&dead);
    for _ in 0..40 {
        sim.tick().await;
    }
    sim.assert_replicas_agree();
    (sim.workers.calls(), sim.raft.hashes()[0].clone())
}

#[tokio::test(start_paused = true)]
async fn runs_are_reproducible() {
    let first = scripted_run(42).await;
    let second = scripted_run(42).await;
    assert_eq!(first.0, second.0, "same seed, same worker calls");
    assert_eq!(first.1, second.1, "same seed, same state");
}

#[tokio::test(start_paused = true)]
async fn a_leader_without_its_quorum_grants_no_lease() {
    use varpulis_api::cluster::HeartbeatRequest;
    use varpulis_coordinator::workers;
    let sim = Sim::new(3, 5);
    sim.add_worker("w1").await;
    let heartbeat = || {
        workers::heartbeat(
            sim.leader(),
            "w1",
            HeartbeatRequest::default(),
            Some("key-w1"),
        )
    };
    assert!(heartbeat().await.unwrap().lease_ms.is_some());
    // Deposed without knowing it yet: still `is_leader`, but no lease and a 503 that sends the
    // worker on to the other coordinators.
    sim.raft.lose_quorum(true);
    assert!(sim.leader().store.is_leader());
    let refused = heartbeat().await.unwrap_err();
    assert_eq!(refused.code(), "no_quorum");
    assert_eq!(workers::lease_ms(sim.leader()), None);
    sim.raft.lose_quorum(false);
    assert!(heartbeat().await.unwrap().lease_ms.is_some());
}
