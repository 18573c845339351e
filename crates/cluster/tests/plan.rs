//! The leader's planners: what they decide from a given state, without any I/O.

mod common;

use common::*;
use varpulis_api::cluster::RunningPipeline;
use varpulis_cluster::plan::{
    plan_drain, plan_orphans, plan_rebalance, plan_reconcile, plan_reconcile_phase,
    plan_rollout_step, plan_sweep, Action, LivenessView, Phase,
};
use varpulis_cluster::version::{Rollout, RolloutCommand, RolloutStatus, RolloutTarget, StateMode};
use varpulis_cluster::{ClusterState, Command, MigrationReason, PlacementStatus, WorkerStatus};

fn live() -> LivenessView {
    LivenessView::default()
}

/// Workers w1..w3; group `g` with pipelines a (on w1) and b (on w2), both running.
fn running() -> ClusterState {
    let mut s = with_workers(3);
    ok(
        &mut s,
        create(
            "g",
            spec("app", &["a", "b"]),
            &[("a", 0, Some("w1")), ("b", 0, Some("w2"))],
        ),
    );
    ok(&mut s, running_update("g", "a", 0, 1));
    ok(&mut s, running_update("g", "b", 0, 1));
    s
}

fn starts(actions: &[Action]) -> Vec<(String, MigrationReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartMigration { planned, reason } => {
                Some((planned.pipeline_name.clone(), *reason))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_steady_cluster_needs_nothing() {
    assert!(plan_reconcile(&running(), &live(), 10).is_empty());
}

#[test]
fn placements_leave_unhealthy_workers_unless_failover_is_off() {
    let mut s = running();
    set_status(&mut s, "w1", WorkerStatus::Unhealthy);
    let actions = plan_reconcile_phase(&s, &live(), 10, Phase::Failover);
    assert_eq!(
        starts(&actions),
        [("a".into(), MigrationReason::WorkerUnhealthy)]
    );
    let Action::StartMigration { planned, .. } = &actions[0] else {
        unreachable!()
    };
    assert_eq!(planned.from_worker, "w1");
    assert_ne!(planned.to_worker.as_deref(), Some("w1"));
    let mut off = live();
    off.policy.auto_failover = false;
    assert!(plan_reconcile_phase(&s, &off, 10, Phase::Failover).is_empty());
}

#[test]
fn a_draining_worker_is_emptied_by_the_reconciler_too() {
    let mut s = running();
    set_status(&mut s, "w2", WorkerStatus::Draining);
    let actions = plan_reconcile_phase(&s, &live(), 10, Phase::Drain);
    assert_eq!(starts(&actions), [("b".into(), MigrationReason::Drain)]);
}

#[test]
fn migrations_with_a_target_are_deployed_at_the_next_epoch_from_a_live_source() {
    let mut s = running();
    ok(
        &mut s,
        Command::StartMigration {
            migration_id: "m".into(),
            group_id: "g".into(),
            pipeline_name: "a".into(),
            replica: 0,
            from_worker: "w1".into(),
            to_worker: Some("w3".into()),
            reason: MigrationReason::Rebalance,
            next_rr_cursor: None,
            now_ms: 5,
        },
    );
    let actions = plan_reconcile_phase(&s, &live(), 10, Phase::Migrate);
    let [Action::Migrate(job)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(job.migration_id, "m");
    assert_eq!((job.deploy.worker_id.as_str(), job.deploy.epoch), ("w3", 2));
    assert_eq!(
        job.deploy.request.id.as_deref(),
        Some(job.deploy.pipeline_id().as_str())
    );
    let source = job.source.as_ref().unwrap();
    assert_eq!((source.worker_id.as_str(), source.epoch), ("w1", 1));
    // A dead source cannot give a fresh checkpoint: the stored one is shipped.
    set_status(&mut s, "w1", WorkerStatus::Unhealthy);
    let actions = plan_reconcile_phase(&s, &live(), 10, Phase::Migrate);
    let [Action::Migrate(job)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert!(job.source.is_none());
}

#[test]
fn pending_placements_get_a_worker_then_a_deploy() {
    let mut s = with_workers(1);
    ok(&mut s, create("g", spec("app", &["a"]), &[("a", 0, None)]));
    let assign = plan_reconcile_phase(&s, &live(), 10, Phase::Assign);
    let [Action::Propose(cmd)] = &assign[..] else {
        panic!("{assign:?}")
    };
    ok(&mut s, cmd.clone());
    let deploys = plan_reconcile_phase(&s, &live(), 10, Phase::Deploy);
    let [Action::Deploy(job)] = &deploys[..] else {
        panic!("{deploys:?}")
    };
    assert_eq!(job.worker_id, "w1");
    assert!(!job.request.paused);
    // Not on a worker that cannot run it.
    set_status(&mut s, "w1", WorkerStatus::Unhealthy);
    assert!(plan_reconcile_phase(&s, &live(), 10, Phase::Deploy).is_empty());
}

#[test]
fn rebalance_rounds_are_rate_limited_and_end_when_balanced() {
    let mut s = with_workers(2);
    let names = ["a", "b", "c", "d"];
    let placements: Vec<_> = names.iter().map(|p| (*p, 0, Some("w1"))).collect();
    ok(&mut s, create("g", spec("app", &names), &placements));
    for p in names {
        ok(&mut s, running_update("g", p, 0, 1));
    }
    let mut view = live();
    view.policy.rebalance_max_moves = 1;
    let actions = plan_rebalance(&s, &view, 10);
    assert_eq!(actions[0], Action::SetRebalanceWanted(true));
    assert_eq!(starts(&actions).len(), 1, "one move per round");
    // The reconciler plans rounds only while one is wanted.
    assert!(plan_reconcile_phase(&s, &view, 10, Phase::Rebalance).is_empty());
    view.rebalance_wanted = true;
    assert_eq!(
        plan_reconcile_phase(&s, &view, 10, Phase::Rebalance),
        actions
    );
    let balanced = running();
    assert_eq!(
        plan_rebalance(&balanced, &view, 10),
        [Action::SetRebalanceWanted(false)]
    );
}

#[test]
fn a_drain_marks_the_worker_then_moves_its_pipelines() {
    let s = running();
    assert!(plan_drain(&s, &live(), 10, "ghost").is_empty());
    let actions = plan_drain(&s, &live(), 10, "w1");
    assert!(matches!(
        &actions[0],
        Action::Propose(Command::SetWorkerStatus {
            status: WorkerStatus::Draining,
            ..
        })
    ));
    assert_eq!(starts(&actions), [("a".into(), MigrationReason::Drain)]);
    let mut draining = s.clone();
    set_status(&mut draining, "w1", WorkerStatus::Draining);
    assert_eq!(plan_drain(&draining, &live(), 10, "w1").len(), 1);
}

#[test]
fn the_sweep_marks_suspected_workers_in_one_entry() {
    let mut s = running();
    let mut view = live();
    view.suspicion = "silent".into();
    view.suspected = ["w1".to_string()].into_iter().collect();
    let actions = plan_sweep(&s, &view, 10);
    assert!(matches!(
        &actions[..],
        [Action::Propose(Command::SetWorkerStatus {
            status: WorkerStatus::Unhealthy,
            ..
        })]
    ));
    view.suspected.insert("w2".into());
    assert!(matches!(
        &plan_sweep(&s, &view, 10)[..],
        [Action::Propose(Command::Batch(items))] if items.len() == 2
    ));
    // A draining worker is not the sweep's business.
    set_status(&mut s, "w1", WorkerStatus::Draining);
    set_status(&mut s, "w2", WorkerStatus::Draining);
    assert!(plan_sweep(&s, &view, 10).is_empty());
}

fn start_rollout(s: &mut ClusterState, new_pipeline_id: &str) {
    let mut new_spec = spec("app", &["a", "b"]);
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
            worker_id: "w1".into(),
            epoch: 1,
            old_pipeline_id: "pid-a".into(),
            new_pipeline_id: new_pipeline_id.into(),
        }],
        status: RolloutStatus::Deploying,
        restores: None,
        started_at_ms: 5,
    };
    ok(
        s,
        Command::Rollout(RolloutCommand::Start {
            group_id: "g".into(),
            rollout: Box::new(rollout),
        }),
    );
}

#[test]
fn a_rollout_deploys_paused_then_switches_then_finishes() {
    let mut s = running();
    assert!(plan_rollout_step(&s, &live(), 10, "g").is_empty());
    let next = varpulis_cluster::plan::deploy::pipeline_id("g", "a", 0, 2);
    start_rollout(&mut s, &next);
    let actions = plan_rollout_step(&s, &live(), 10, "g");
    let [Action::RolloutSwitch(step)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert!(step.keep_state);
    assert_eq!(step.deploys.len(), 1);
    let deploy = &step.deploys[0];
    assert!(deploy.request.paused);
    assert_eq!(deploy.request.source, "stream a = X .emit(v: 2)");
    assert!(
        deploy.request.checkpoint.is_none(),
        "state moves by hand-over"
    );
    ok(&mut s, step.switch.clone());
    let actions = plan_rollout_step(&s, &live(), 10, "g");
    let [Action::RolloutFinish(finish)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(finish.stop, [("w1".to_string(), "pid-a".to_string())]);
    ok(&mut s, finish.command());
    assert!(plan_rollout_step(&s, &live(), 10, "g").is_empty());
}

#[test]
fn a_rollout_whose_target_moved_is_aborted() {
    let mut s = running();
    start_rollout(&mut s, "not-the-planned-id");
    let actions = plan_rollout_step(&s, &live(), 10, "g");
    let [Action::RolloutAbort(abort)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert!(abort.error.contains("moved"), "{}", abort.error);
    assert!(abort.hand_back.is_empty());
    assert_eq!(abort.remove.len(), 1);
    ok(&mut s, abort.command());
    assert_eq!(s.group("g").unwrap().version, 1);
}

#[test]
fn only_unaccounted_coordinator_pipelines_are_orphans() {
    let s = running();
    let reported = |id: &str, epoch: Option<u64>| RunningPipeline {
        pipeline_id: id.into(),
        name: id.into(),
        epoch,
        status: None,
        reason: None,
    };
    let running_on_w1 = [
        reported("pid-a", Some(1)),
        reported("left-behind", Some(3)),
        reported("by-hand", None),
    ];
    let actions = plan_orphans(&s, "w1", &running_on_w1);
    assert_eq!(
        actions,
        [Action::Undeploy {
            worker_id: "w1".into(),
            pipeline_id: "left-behind".into()
        }]
    );
    assert_eq!(
        s.group("g").unwrap().placement("a", 0).unwrap().status,
        PlacementStatus::Running
    );
}

fn failed_report(id: &str, epoch: Option<u64>) -> RunningPipeline {
    RunningPipeline {
        pipeline_id: id.into(),
        name: id.into(),
        epoch,
        status: Some("failed".into()),
        reason: Some("step budget exceeded 5 times in a row".into()),
    }
}

#[test]
fn a_pipeline_the_worker_reports_failed_is_recorded_once() {
    let mut s = running();
    let healthy = RunningPipeline {
        status: None,
        reason: None,
        ..failed_report("pid-b", Some(1))
    };
    // Only the failed report of the placement's current deployment counts.
    let reports = [
        failed_report("pid-a", Some(1)),
        failed_report("pid-a", Some(7)),
        failed_report("by-hand", None),
        healthy,
    ];
    let commands = varpulis_cluster::plan::plan_failed(&s, "w1", &reports);
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert!(varpulis_cluster::plan::plan_failed(&s, "w2", &reports).is_empty());
    for c in commands {
        ok(&mut s, c);
    }
    let g = s.group("g").unwrap();
    let a = g.placement("a", 0).unwrap();
    assert_eq!(a.status, PlacementStatus::Failed);
    assert!(a.is_program_failed());
    assert!(a.error.as_deref().unwrap().contains("step budget exceeded"));
    assert_eq!(
        a.worker_id.as_deref(),
        Some("w1"),
        "it stays where it failed"
    );
    // Already recorded: nothing more to do at the next heartbeat.
    assert!(varpulis_cluster::plan::plan_failed(&s, "w1", &reports).is_empty());
}

#[test]
fn a_failed_program_is_neither_redeployed_nor_moved_until_the_group_is_updated() {
    let mut s = running();
    for c in varpulis_cluster::plan::plan_failed(&s, "w1", &[failed_report("pid-a", Some(1))]) {
        ok(&mut s, c);
    }
    // Not redeployed on its (healthy) worker.
    let deploys = plan_reconcile_phase(&s, &live(), 10, Phase::Deploy);
    assert!(deploys.is_empty(), "{deploys:?}");
    // Its worker turns unhealthy (the toxic program's doing): b is not on it, a is not moved.
    set_status(&mut s, "w1", WorkerStatus::Unhealthy);
    assert!(starts(&plan_reconcile_phase(&s, &live(), 10, Phase::Failover)).is_empty());
    set_status(&mut s, "w1", WorkerStatus::Ready);
    // A failed *deploy* is still retried.
    ok(
        &mut s,
        Command::UpdatePlacement {
            group_id: "g".into(),
            pipeline_name: "b".into(),
            replica: 0,
            epoch: 1,
            worker_id: None,
            pipeline_id: None,
            status: PlacementStatus::Failed,
            error: Some("connection refused".into()),
        },
    );
    let deploys = plan_reconcile_phase(&s, &live(), 10, Phase::Deploy);
    let names: Vec<String> = deploys
        .iter()
        .filter_map(|a| match a {
            Action::Deploy(job) => Some(job.pipeline_name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["b"]);
    // An update of the placement (the user redeploys) starts it again.
    ok(
        &mut s,
        Command::UpdatePlacement {
            group_id: "g".into(),
            pipeline_name: "a".into(),
            replica: 0,
            epoch: 1,
            worker_id: None,
            pipeline_id: None,
            status: PlacementStatus::Pending,
            error: None,
        },
    );
    assert!(
        !s.group("g")
            .unwrap()
            .placement("a", 0)
            .unwrap()
            .program_failed
    );
}

#[test]
fn a_placement_pinned_by_labels_is_not_moved_where_they_do_not_match() {
    let mut s = ClusterState::default();
    ok(&mut s, reg_with("w1", 10, &[("zone", "a")]));
    ok(&mut s, reg_with("w2", 10, &[("zone", "b")]));
    let mut group = spec("app", &["a"]);
    group.pipelines[0]
        .labels
        .insert("zone".to_string(), "a".to_string());
    ok(&mut s, create("g", group, &[("a", 0, Some("w1"))]));
    ok(&mut s, running_update("g", "a", 0, 1));
    set_status(&mut s, "w1", WorkerStatus::Unhealthy);
    let actions = plan_reconcile_phase(&s, &live(), 10, Phase::Failover);
    let [Action::StartMigration { planned, .. }] = actions.as_slice() else {
        panic!("{actions:?}");
    };
    assert_eq!(
        planned.to_worker, None,
        "no other eligible worker: it waits unplaced"
    );
}

#[test]
fn a_failed_program_whose_worker_leaves_stays_failed_and_unplaced() {
    let mut s = running();
    for c in varpulis_cluster::plan::plan_failed(&s, "w1", &[failed_report("pid-a", Some(1))]) {
        ok(&mut s, c);
    }
    ok(
        &mut s,
        Command::DeregisterWorker {
            worker_id: "w1".into(),
        },
    );
    let a = s.group("g").unwrap().placement("a", 0).unwrap().clone();
    assert_eq!(a.status, PlacementStatus::Failed);
    assert_eq!(a.worker_id, None);
    assert!(a.is_program_failed());
    assert!(plan_reconcile_phase(&s, &live(), 10, Phase::Assign).is_empty());
    assert!(plan_reconcile_phase(&s, &live(), 10, Phase::Deploy).is_empty());
}
