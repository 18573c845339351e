//! Events come out of `apply`: what each accepted command changed, typed, the same on every
//! replica; nothing for rejections and repeated idempotency keys.

mod common;

use common::*;
use varpulis_api::events::{ClusterEvent, WorkerLeft};
use varpulis_cluster::version::{Rollout, RolloutCommand, RolloutStatus, RolloutTarget, StateMode};
use varpulis_cluster::{ClusterState, Command, MigrationReason, WorkerStatus};

fn kinds(events: &[ClusterEvent]) -> Vec<&'static str> {
    events.iter().map(ClusterEvent::kind).collect()
}

#[test]
fn batches_yield_one_event_per_accepted_item_and_never_a_key() {
    let mut s = ClusterState::new();
    let batch = Command::batch(vec![reg("w1"), reg(""), reg("w2")]);
    let applied = s.apply(&batch);
    assert_eq!(kinds(&applied.events), ["worker_joined", "worker_joined"]);
    let json = serde_json::to_string(&applied.events).unwrap();
    assert!(!json.contains("key-w1"), "never leak keys: {json}");
    let again = s.apply(&reg("w1"));
    assert!(matches!(
        &again.events[..],
        [ClusterEvent::WorkerJoined { rejoined: true, .. }]
    ));
}

#[test]
fn status_changes_are_named_by_their_target() {
    let mut s = with_workers(1);
    let status = |to: WorkerStatus| Command::SetWorkerStatus {
        worker_id: "w1".into(),
        status: to,
        now_ms: 2,
        reason: Some("because".into()),
    };
    let cases = [
        (WorkerStatus::Unhealthy, "worker_unhealthy"),
        (WorkerStatus::Ready, "worker_ready"),
        (WorkerStatus::Draining, "worker_status_changed"),
        (WorkerStatus::Dead, "worker_left"),
    ];
    for (to, kind) in cases {
        let applied = s.apply(&status(to));
        assert_eq!(kinds(&applied.events), [kind], "{to}");
    }
    // The same status again changes nothing: no event.
    assert!(s.apply(&status(WorkerStatus::Dead)).events.is_empty());
    let unknown = Command::SetWorkerStatus {
        worker_id: "ghost".into(),
        status: WorkerStatus::Ready,
        now_ms: 3,
        reason: None,
    };
    assert!(s.apply(&unknown).events.is_empty(), "rejections are silent");
    let gone = s.apply(&Command::DeregisterWorker {
        worker_id: "w1".into(),
    });
    assert_eq!(
        gone.events,
        [ClusterEvent::WorkerLeft(WorkerLeft::Deregistered {
            worker_id: "w1".into(),
            reason: "deregistered".into()
        })]
    );
}

#[test]
fn a_repeated_idempotency_key_reports_nothing() {
    let mut s = ClusterState::new();
    let first = s.apply(&reg("w1").with_key("k"));
    assert_eq!(kinds(&first.events), ["worker_joined"]);
    let again = s.apply(&reg("w1").with_key("k"));
    assert_eq!(again.response, first.response);
    assert!(again.events.is_empty());
}

#[test]
fn groups_migrations_and_rollouts_report_each_step() {
    let mut s = with_workers(2);
    let created = s.apply(&create("g", spec("app", &["a"]), &[("a", 0, Some("w1"))]));
    assert!(matches!(
        &created.events[..],
        [ClusterEvent::GroupDeployed {
            version: 1,
            pipelines: 1,
            pending: 0,
            ..
        }]
    ));
    ok(&mut s, running_update("g", "a", 0, 1));
    let start = Command::StartMigration {
        migration_id: "m".into(),
        group_id: "g".into(),
        pipeline_name: "a".into(),
        replica: 0,
        from_worker: "w1".into(),
        to_worker: Some("w2".into()),
        reason: MigrationReason::Rebalance,
        next_rr_cursor: None,
        now_ms: 5,
    };
    let started = s.apply(&start);
    match &started.events[..] {
        [ClusterEvent::MigrationStarted {
            reason, to_worker, ..
        }] => {
            assert_eq!(reason, "rebalance");
            assert_eq!(to_worker.as_deref(), Some("w2"));
        }
        other => panic!("{other:?}"),
    }
    let done = s.apply(&Command::CompleteMigration {
        migration_id: "m".into(),
        pipeline_id: "a-2".into(),
        restored_from_checkpoint: true,
        now_ms: 6,
    });
    assert_eq!(
        done.events,
        [ClusterEvent::MigrationCompleted {
            migration_id: "m".into(),
            epoch: 2,
            restored_from_checkpoint: true
        }]
    );
    let mut new_spec = spec("app", &["a"]);
    new_spec.pipelines[0].source = "stream a = X .emit(v: 2)".into();
    let rollout = Rollout {
        from_version: 1,
        to_version: 2,
        spec: new_spec,
        changed: vec!["a".into()],
        state: StateMode::Keep,
        targets: vec![RolloutTarget {
            pipeline_name: "a".into(),
            replica: 0,
            worker_id: "w2".into(),
            epoch: 2,
            old_pipeline_id: "a-2".into(),
            new_pipeline_id: "a-3".into(),
        }],
        status: RolloutStatus::Deploying,
        restores: None,
        started_at_ms: 7,
    };
    let steps = [
        RolloutCommand::Start {
            group_id: "g".into(),
            rollout: Box::new(rollout),
        },
        RolloutCommand::Switch {
            group_id: "g".into(),
            version: 2,
            now_ms: 8,
        },
        RolloutCommand::Finish {
            group_id: "g".into(),
            version: 2,
        },
    ];
    let mut seen = Vec::new();
    for step in steps {
        seen.extend(s.apply(&Command::Rollout(step)).events);
    }
    assert_eq!(
        kinds(&seen),
        [
            "group_update_started",
            "group_updated",
            "group_update_finished"
        ]
    );
    let deleted = s.apply(&Command::DeleteGroup {
        group_id: "g".into(),
    });
    assert_eq!(kinds(&deleted.events), ["group_deleted"]);
}

#[test]
fn replicas_fed_the_same_log_report_the_same_events() {
    let log = [
        reg("w1"),
        reg("w2"),
        create(
            "g",
            spec("app", &["a", "b"]),
            &[("a", 0, Some("w1")), ("b", 0, None)],
        ),
        Command::SetWorkerStatus {
            worker_id: "w1".into(),
            status: WorkerStatus::Unhealthy,
            now_ms: 3,
            reason: None,
        },
    ];
    let (mut a, mut b) = (ClusterState::new(), ClusterState::new());
    for cmd in &log {
        assert_eq!(a.apply(cmd), b.apply(cmd));
    }
}
