//! Self-healing helpers of the state machine: `least_connections` placement, drained workers,
//! drain plans and migration timings in the views.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;
use varpulis_cluster::placement::{plan_failover, plan_group, Strategy};
use varpulis_cluster::views;
use varpulis_cluster::{ClusterState, Command, MigrationReason, WorkerStatus};

fn run(s: &mut ClusterState, group: &str, pipeline: &str) {
    let epoch = s
        .group(group)
        .unwrap()
        .placement(pipeline, 0)
        .unwrap()
        .epoch;
    ok(s, running_update(group, pipeline, 0, epoch));
}

#[test]
fn least_connections_parses_and_rejects_unknown_names() {
    assert_eq!(
        Strategy::parse(Some("least_connections")).unwrap(),
        Strategy::LeastConnections
    );
    assert_eq!(
        Strategy::parse(Some("Least-Connections")).unwrap(),
        Strategy::LeastConnections
    );
    let err = Strategy::parse(Some("fewest")).unwrap_err().to_string();
    assert!(err.contains("least_connections"), "{err}");
}

#[test]
fn least_connections_counts_inbound_migrations() {
    // w1 runs a and b; w3 runs nothing but a migration of b is heading there; w2 runs c.
    let mut s = with_workers(3);
    ok(
        &mut s,
        create(
            "g",
            spec("g", &["a", "b", "c"]),
            &[
                ("a", 0, Some("w1")),
                ("b", 0, Some("w1")),
                ("c", 0, Some("w2")),
            ],
        ),
    );
    for p in ["a", "b", "c"] {
        run(&mut s, "g", p);
    }
    ok(
        &mut s,
        Command::StartMigration {
            migration_id: "m1".into(),
            group_id: "g".into(),
            pipeline_name: "b".into(),
            replica: 0,
            from_worker: "w1".into(),
            to_worker: Some("w3".into()),
            reason: MigrationReason::Rebalance,
            next_rr_cursor: None,
            now_ms: 5,
        },
    );
    // Loads (placements): w1 2, w2 1, w3 0. Connections: w1 2, w2 1, w3 0 + 1 inbound.
    let mut sp = spec("next", &["x"]);
    sp.placement = Some("least_loaded".into());
    assert_eq!(
        plan_group(&s, &sp).unwrap().assignments[0]
            .worker_id
            .as_deref(),
        Some("w3"),
        "least_loaded ignores the migration in flight"
    );
    sp.placement = Some("least_connections".into());
    assert_eq!(
        plan_group(&s, &sp).unwrap().assignments[0]
            .worker_id
            .as_deref(),
        Some("w2"),
        "least_connections breaks the w2/w3 tie by id after counting the inbound move"
    );
    // Within one plan the picks accumulate: x → w2, y → w3 (both at 1+... then ties by id).
    let mut sp = spec("two", &["x", "y", "z"]);
    sp.placement = Some("least_connections".into());
    let picks: Vec<_> = plan_group(&s, &sp)
        .unwrap()
        .assignments
        .iter()
        .map(|a| a.worker_id.clone().unwrap())
        .collect();
    assert_eq!(picks, ["w2", "w3", "w1"]);
}

#[test]
fn a_draining_worker_is_removable_only_once_everything_moved() {
    let mut s = with_workers(2);
    ok(
        &mut s,
        create("g", spec("g", &["a"]), &[("a", 0, Some("w1"))]),
    );
    run(&mut s, "g", "a");
    assert!(!s.is_drained("w1"), "a ready worker is not drained");
    set_status(&mut s, "w1", WorkerStatus::Draining);
    assert!(!s.is_drained("w1"), "a placement is still on it");
    assert!(!s.is_drained("nobody"));

    // The drain plan moves `a` to w2 (a draining worker is never a target).
    let plans = plan_failover(&s, "w1");
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].to_worker.as_deref(), Some("w2"));
    ok(
        &mut s,
        plans[0].to_command("d1", MigrationReason::Drain, 10),
    );
    assert!(!s.is_drained("w1"), "the migration is still active");
    let view = views::worker_view(&s, "w1", None).unwrap();
    assert!(!view.removable);
    ok(
        &mut s,
        Command::CompleteMigration {
            migration_id: "d1".into(),
            pipeline_id: "pid-a-2".into(),
            restored_from_checkpoint: true,
            now_ms: 250,
        },
    );
    assert!(s.is_drained("w1"));
    let view = views::worker_view(&s, "w1", None).unwrap();
    assert!(view.removable);
    assert_eq!(view.status, "draining");
    assert!(view.assigned_pipelines.is_empty());
    let all = views::worker_views(&s, &Default::default());
    assert!(all[0].removable && !all[1].removable);

    let m = &views::migration_views(&s)[0];
    assert_eq!(m.reason, "drain");
    assert_eq!(m.status, "completed");
    assert_eq!(m.started_at_ms, 10);
    assert_eq!(m.updated_at_ms, 250);
    assert_eq!(m.completed_at_ms, Some(250));
    assert_eq!(m.duration_ms, Some(240));
    assert!(m.restored_from_checkpoint);
}

#[test]
fn a_drain_with_no_target_waits_pending() {
    let mut s = with_workers(1);
    ok(
        &mut s,
        create("g", spec("g", &["a"]), &[("a", 0, Some("w1"))]),
    );
    run(&mut s, "g", "a");
    set_status(&mut s, "w1", WorkerStatus::Draining);
    let plans = plan_failover(&s, "w1");
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].to_worker, None);
    ok(
        &mut s,
        plans[0].to_command("d1", MigrationReason::Drain, 10),
    );
    let m = &views::migration_views(&s)[0];
    assert_eq!((m.status.as_str(), m.duration_ms), ("pending", None));
    assert!(!s.is_drained("w1"));
    // A second plan does not duplicate the active migration.
    assert!(plan_failover(&s, "w1").is_empty());
}
