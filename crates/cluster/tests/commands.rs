//! One test per command outcome and per rejection of the cluster state machine.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::json;
use varpulis_api::cluster::EXTERNAL;
use varpulis_cluster::{
    ClusterState, Command, Error, MigrationReason, MigrationStatus, Outcome, PlacementStatus,
    WorkerStatus, IDEMPOTENCY_CAPACITY, MAX_CHECKPOINT_BYTES,
};

fn set_status(id: &str, status: WorkerStatus) -> Command {
    Command::SetWorkerStatus {
        worker_id: id.into(),
        status,
        now_ms: 5_000,
        reason: Some("test".into()),
    }
}

fn update(
    group: &str,
    pipeline: &str,
    epoch: u64,
    worker: Option<&str>,
    status: PlacementStatus,
) -> Command {
    Command::UpdatePlacement {
        group_id: group.into(),
        pipeline_name: pipeline.into(),
        replica: 0,
        epoch,
        worker_id: worker.map(str::to_string),
        pipeline_id: Some("pid-1".into()),
        status,
        error: None,
    }
}

fn start(id: &str, group: &str, pipeline: &str, from: &str, to: Option<&str>) -> Command {
    Command::StartMigration {
        migration_id: id.into(),
        group_id: group.into(),
        pipeline_name: pipeline.into(),
        replica: 0,
        from_worker: from.into(),
        to_worker: to.map(str::to_string),
        reason: MigrationReason::WorkerUnhealthy,
        next_rr_cursor: None,
        now_ms: 10_000,
    }
}

fn complete(id: &str) -> Command {
    Command::CompleteMigration {
        migration_id: id.into(),
        pipeline_id: "pid-new".into(),
        restored_from_checkpoint: true,
        now_ms: 11_000,
    }
}

fn checkpoint(epoch: u64, data: &str, taken_at_ms: u64) -> Command {
    Command::StoreCheckpoint {
        group_id: "g1".into(),
        pipeline_name: "a".into(),
        replica: 0,
        epoch,
        checkpoint: data.into(),
        events_processed: 42,
        taken_at_ms,
    }
}

/// Two workers and group `g1` (`app`: pipelines a on w1, b on w2).
fn with_group() -> ClusterState {
    let mut s = with_workers(2);
    ok(
        &mut s,
        create(
            "g1",
            spec("app", &["a", "b"]),
            &[("a", 0, Some("w1")), ("b", 0, Some("w2"))],
        ),
    );
    s
}

// ----- workers -----

#[test]
fn registering_a_new_worker_makes_it_ready() {
    let mut s = ClusterState::default();
    let out = ok(&mut s, reg_with("w1", 8, &[("zone", "a")]));
    assert_eq!(
        out,
        Outcome::WorkerRegistered {
            worker_id: "w1".into(),
            created: true,
            status: WorkerStatus::Ready
        }
    );
    let w = s.worker("w1").unwrap();
    assert_eq!(w.status, WorkerStatus::Ready);
    assert_eq!(w.max_pipelines, 8);
    assert_eq!(w.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(w.api_key, "key-w1");
    assert_eq!(s.worker_count(), 1);
}

#[test]
fn re_registration_updates_and_revives_but_keeps_placements() {
    let mut s = with_group();
    ok(&mut s, set_status("w1", WorkerStatus::Unhealthy));
    ok(&mut s, set_status("w1", WorkerStatus::Dead));
    let mut again = reg_with("w1", 50, &[]);
    if let Command::RegisterWorker(r) = &mut again {
        r.address = "http://new-host:9000".into();
    }
    let out = ok(&mut s, again);
    assert_eq!(
        out,
        Outcome::WorkerRegistered {
            worker_id: "w1".into(),
            created: false,
            status: WorkerStatus::Ready
        }
    );
    let w = s.worker("w1").unwrap();
    assert_eq!(w.address, "http://new-host:9000");
    assert_eq!(w.max_pipelines, 50);
    assert_eq!(w.registrations, 2);
    assert_eq!(
        s.placements_on("w1").len(),
        1,
        "placements survive re-registration"
    );

    ok(&mut s, set_status("w2", WorkerStatus::Busy));
    ok(&mut s, reg("w2"));
    assert_eq!(
        s.worker("w2").unwrap().status,
        WorkerStatus::Busy,
        "Busy is kept"
    );
    ok(&mut s, set_status("w2", WorkerStatus::Draining));
    ok(&mut s, reg("w2"));
    assert_eq!(
        s.worker("w2").unwrap().status,
        WorkerStatus::Draining,
        "Draining is kept"
    );
}

#[test]
fn registration_rejections() {
    let mut s = ClusterState::default();
    let mut bad = |f: &dyn Fn(&mut varpulis_cluster::RegisterWorker)| {
        let mut cmd = reg("w1");
        if let Command::RegisterWorker(r) = &mut cmd {
            f(r);
        }
        rejected(&mut s, cmd)
    };
    assert!(
        matches!(bad(&|r| r.worker_id = String::new()), Error::InvalidWorker(m) if m.contains("empty"))
    );
    assert!(
        matches!(bad(&|r| r.address = "localhost:9000".into()), Error::InvalidWorker(m) if m.contains("http"))
    );
    assert!(
        matches!(bad(&|r| r.max_pipelines = 0), Error::InvalidWorker(m) if m.contains("max_pipelines"))
    );
    assert!(matches!(
        bad(&|r| { r.labels.insert(String::new(), "x".into()); }),
        Error::InvalidWorker(m) if m.contains("label")
    ));
    let e = bad(&|r| r.worker_id = "a/b".into());
    assert_eq!(e.code().status(), 400);
}

#[test]
fn deregistering_orphans_placements_with_a_new_epoch() {
    let mut s = with_group();
    let out = ok(
        &mut s,
        Command::DeregisterWorker {
            worker_id: "w1".into(),
        },
    );
    assert_eq!(
        out,
        Outcome::WorkerDeregistered {
            worker_id: "w1".into(),
            orphaned_placements: 1
        }
    );
    assert!(s.worker("w1").is_none());
    let p = s.group("g1").unwrap().placement("a", 0).unwrap();
    assert_eq!(p.worker_id, None);
    assert_eq!(p.status, PlacementStatus::Pending);
    assert_eq!(p.epoch, 2);
}

#[test]
fn deregistering_an_unknown_worker_is_404() {
    let mut s = with_workers(1);
    let e = rejected(
        &mut s,
        Command::DeregisterWorker {
            worker_id: "ghost".into(),
        },
    );
    assert_eq!(e, Error::UnknownWorker("ghost".into()));
    assert_eq!(e.code().status(), 404);
}

#[test]
fn status_transitions_follow_the_table() {
    let mut s = with_workers(1);
    let out = ok(&mut s, set_status("w1", WorkerStatus::Busy));
    assert_eq!(
        out,
        Outcome::WorkerStatusChanged {
            worker_id: "w1".into(),
            from: WorkerStatus::Ready,
            to: WorkerStatus::Busy
        }
    );
    for next in [
        WorkerStatus::Ready,
        WorkerStatus::Unhealthy,
        WorkerStatus::Ready,
        WorkerStatus::Draining,
    ] {
        ok(&mut s, set_status("w1", next));
    }
    let w = s.worker("w1").unwrap();
    assert_eq!(w.status, WorkerStatus::Draining);
    assert_eq!(w.status_reason.as_deref(), Some("test"));
    assert_eq!(w.status_changed_at_ms, 5_000);
    // Same status: accepted, nothing changes.
    ok(&mut s, set_status("w1", WorkerStatus::Draining));
    ok(&mut s, set_status("w1", WorkerStatus::Dead));
    assert_eq!(s.worker("w1").unwrap().status, WorkerStatus::Dead);
}

#[test]
fn invalid_transitions_and_unknown_workers_are_rejected() {
    let mut s = with_workers(1);
    let e = rejected(&mut s, set_status("w1", WorkerStatus::Dead));
    assert_eq!(e.code(), "invalid_transition");
    assert_eq!(e.code().status(), 409);
    assert!(e.to_string().contains("ready to dead"), "{e}");
    rejected(&mut s, set_status("w1", WorkerStatus::Registering));
    ok(&mut s, set_status("w1", WorkerStatus::Draining));
    rejected(&mut s, set_status("w1", WorkerStatus::Ready));
    let e = rejected(&mut s, set_status("ghost", WorkerStatus::Ready));
    assert_eq!(e, Error::UnknownWorker("ghost".into()));
}

#[test]
fn worker_counts_cover_every_status() {
    let mut s = with_workers(3);
    ok(&mut s, set_status("w2", WorkerStatus::Unhealthy));
    let counts = s.worker_counts();
    assert_eq!(counts[&WorkerStatus::Ready], 2);
    assert_eq!(counts[&WorkerStatus::Unhealthy], 1);
    assert_eq!(counts[&WorkerStatus::Dead], 0);
    assert_eq!(
        s.workers().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["w1", "w2", "w3"]
    );
}

#[test]
fn a_batch_registers_ten_thousand_workers_in_one_command() {
    let mut s = ClusterState::default();
    let batch = Command::batch((0..10_000).map(|i| reg(&format!("w{i:05}"))).collect());
    let Outcome::Batch(responses) = ok(&mut s, batch) else {
        panic!("not a batch outcome")
    };
    assert_eq!(responses.len(), 10_000);
    assert!(responses.iter().all(|r| r.is_ok()));
    assert_eq!(s.worker_count(), 10_000);
    assert_eq!(s.applied(), 1);
}

#[test]
fn batch_items_succeed_or_fail_on_their_own_and_do_not_nest() {
    let mut s = ClusterState::default();
    let batch = Command::batch(vec![
        reg("w1"),
        Command::DeregisterWorker {
            worker_id: "ghost".into(),
        },
        Command::batch(vec![reg("w2")]),
        reg("w3"),
    ]);
    let Outcome::Batch(r) = ok(&mut s, batch) else {
        panic!("not a batch outcome")
    };
    assert!(r[0].is_ok());
    assert_eq!(r[1].error(), Some(&Error::UnknownWorker("ghost".into())));
    assert!(matches!(r[2].error(), Some(Error::InvalidCommand(m)) if m.contains("nested")));
    assert!(r[3].is_ok());
    assert!(s.worker("w2").is_none());
    assert_eq!(s.worker_count(), 2);
}

// ----- groups -----

#[test]
fn creating_a_group_stores_placements_routes_and_order() {
    let mut s = with_group();
    let g = s.group("g1").unwrap();
    assert_eq!(g.name, "app");
    assert_eq!(g.version, 1);
    assert_eq!(g.placements.len(), 2);
    assert_eq!(
        g.placement("a", 0).unwrap().worker_id.as_deref(),
        Some("w1")
    );
    assert_eq!(g.placement("a", 0).unwrap().epoch, 1);
    assert_eq!(
        g.placement("a", 0).unwrap().status,
        PlacementStatus::Pending
    );
    assert_eq!(
        g.routes[0].mqtt_topic.as_deref(),
        Some("varpulis/app/_external/a")
    );
    let out = ok(&mut s, create("g0", spec("other", &["x"]), &[]));
    assert_eq!(
        out,
        Outcome::GroupCreated {
            group_id: "g0".into(),
            pending: 1
        }
    );
    let names: Vec<&str> = s.groups().iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["app", "other"], "creation order, not id order");
    assert_eq!(s.find_group("other").unwrap().id, "g0");
    assert_eq!(s.find_group("g1").unwrap().name, "app");
}

#[test]
fn duplicate_group_names_and_ids_are_409() {
    let mut s = with_group();
    let e = rejected(&mut s, create("g2", spec("app", &["a"]), &[]));
    assert_eq!(e, Error::DuplicateGroupName("app".into()));
    assert_eq!(e.code().status(), 409);
    let e = rejected(&mut s, create("g1", spec("new", &["a"]), &[]));
    assert_eq!(e, Error::DuplicateGroupId("g1".into()));
    let e = rejected(&mut s, create(" ", spec("new", &["a"]), &[]));
    assert_eq!(e.code().status(), 400);
}

#[test]
fn invalid_group_specs_are_400() {
    let mut s = with_workers(2);
    let mut bad = spec("app", &["a", "b"]);
    bad.routes.push(route(EXTERNAL, "ghost", &["X"]));
    assert!(
        matches!(rejected(&mut s, create("g", bad, &[])), Error::InvalidSpec(m) if m.contains("ghost"))
    );
    let mut bad = spec("app", &["a"]);
    bad.pipelines.push(pipe("a"));
    assert!(
        matches!(rejected(&mut s, create("g", bad, &[])), Error::InvalidSpec(m) if m.contains("duplicate"))
    );
    let mut bad = spec("app", &["a"]);
    bad.pipelines[0].replicas = Some(3);
    let e = rejected(&mut s, create("g", bad, &[]));
    assert!(
        matches!(&e, Error::InvalidSpec(m) if m.contains("3 replicas")),
        "{e}"
    );
    assert_eq!(e.code().status(), 400);
    let mut bad = spec("app", &["a"]);
    bad.pipelines.clear();
    bad.routes.clear();
    rejected(&mut s, create("g", bad, &[]));
}

#[test]
fn malformed_assignments_are_400() {
    let mut s = with_workers(2);
    let e = rejected(
        &mut s,
        create("g", spec("app", &["a"]), &[("zzz", 0, Some("w1"))]),
    );
    assert!(matches!(e, Error::InvalidCommand(m) if m.contains("zzz")));
    let e = rejected(
        &mut s,
        create("g", spec("app", &["a"]), &[("a", 1, Some("w1"))]),
    );
    assert!(matches!(e, Error::InvalidCommand(m) if m.contains("replica 1")));
    let e = rejected(
        &mut s,
        create(
            "g",
            spec("app", &["a"]),
            &[("a", 0, Some("w1")), ("a", 0, Some("w2"))],
        ),
    );
    assert!(matches!(e, Error::InvalidCommand(m) if m.contains("twice")));
}

#[test]
fn unusable_assignments_degrade_to_pending() {
    let mut s = with_workers(3);
    ok(&mut s, set_status("w3", WorkerStatus::Unhealthy));
    let mut sp = spec("app", &["a", "b", "c"]);
    sp.pipelines[0].replicas = Some(2);
    let out = ok(
        &mut s,
        create(
            "g",
            sp,
            &[
                ("a", 0, Some("w1")),
                ("a", 1, Some("w1")),
                ("b", 0, Some("ghost")),
                ("c", 0, Some("w3")),
            ],
        ),
    );
    assert_eq!(
        out,
        Outcome::GroupCreated {
            group_id: "g".into(),
            pending: 3
        }
    );
    let g = s.group("g").unwrap();
    assert_eq!(
        g.placement("a", 0).unwrap().worker_id.as_deref(),
        Some("w1")
    );
    assert_eq!(
        g.placement("a", 1).unwrap().worker_id,
        None,
        "replicas never share a worker"
    );
    assert_eq!(g.placement("b", 0).unwrap().worker_id, None);
    assert_eq!(g.placement("c", 0).unwrap().worker_id, None);
}

#[test]
fn deleting_a_group_removes_it_and_fails_its_migrations() {
    let mut s = with_group();
    ok(&mut s, start("m1", "g1", "a", "w1", None));
    let out = ok(
        &mut s,
        Command::DeleteGroup {
            group_id: "g1".into(),
        },
    );
    assert_eq!(
        out,
        Outcome::GroupDeleted {
            group_id: "g1".into(),
            name: "app".into()
        }
    );
    assert!(s.group("g1").is_none());
    assert_eq!(s.migration("m1").unwrap().status, MigrationStatus::Failed);
    assert!(s.placements_on("w1").is_empty());
    // The name is free again.
    ok(&mut s, create("g2", spec("app", &["a"]), &[]));
}

#[test]
fn deleting_an_unknown_group_is_404() {
    let mut s = with_group();
    let e = rejected(
        &mut s,
        Command::DeleteGroup {
            group_id: "nope".into(),
        },
    );
    assert_eq!(e, Error::UnknownGroup("nope".into()));
    assert_eq!(e.code().status(), 404);
}

// ----- placements -----

#[test]
fn placement_updates_record_progress_without_changing_the_epoch() {
    let mut s = with_group();
    let out = ok(&mut s, update("g1", "a", 1, None, PlacementStatus::Running));
    assert_eq!(
        out,
        Outcome::PlacementUpdated {
            group_id: "g1".into(),
            pipeline_name: "a".into(),
            replica: 0,
            epoch: 1
        }
    );
    let p = s.group("g1").unwrap().placement("a", 0).unwrap();
    assert_eq!(p.status, PlacementStatus::Running);
    assert_eq!(p.pipeline_id.as_deref(), Some("pid-1"));
    // Naming the same worker is not a move.
    ok(
        &mut s,
        update("g1", "a", 1, Some("w1"), PlacementStatus::Running),
    );
    assert_eq!(s.group("g1").unwrap().placement("a", 0).unwrap().epoch, 1);
}

#[test]
fn moving_a_placement_bumps_its_epoch_and_fences_old_commands() {
    let mut s = with_workers(3);
    ok(
        &mut s,
        create("g1", spec("app", &["a"]), &[("a", 0, Some("w1"))]),
    );
    let out = ok(
        &mut s,
        update("g1", "a", 1, Some("w3"), PlacementStatus::Deploying),
    );
    assert!(matches!(out, Outcome::PlacementUpdated { epoch: 2, .. }));
    let e = rejected(&mut s, update("g1", "a", 1, None, PlacementStatus::Running));
    assert_eq!(
        e,
        Error::StaleEpoch {
            group: "g1".into(),
            pipeline: "a".into(),
            replica: 0,
            current: 2,
            given: 1
        }
    );
    assert_eq!(e.code().status(), 409);
    ok(&mut s, update("g1", "a", 2, None, PlacementStatus::Running));
}

#[test]
fn placement_moves_to_bad_workers_are_rejected() {
    let mut s = with_workers(3);
    let mut sp = spec("app", &["a"]);
    sp.pipelines[0].replicas = Some(2);
    ok(
        &mut s,
        create("g1", sp, &[("a", 0, Some("w1")), ("a", 1, Some("w2"))]),
    );
    let e = rejected(
        &mut s,
        update("g1", "a", 1, Some("ghost"), PlacementStatus::Pending),
    );
    assert_eq!(e, Error::UnknownWorker("ghost".into()));
    let e = rejected(
        &mut s,
        update("g1", "a", 1, Some("w2"), PlacementStatus::Pending),
    );
    assert!(
        matches!(&e, Error::WorkerUnavailable { reason, .. } if reason.contains("another replica")),
        "{e}"
    );
    ok(&mut s, set_status("w3", WorkerStatus::Unhealthy));
    let e = rejected(
        &mut s,
        update("g1", "a", 1, Some("w3"), PlacementStatus::Pending),
    );
    assert!(matches!(e, Error::WorkerUnavailable { .. }));
    let e = rejected(
        &mut s,
        update("nope", "a", 1, None, PlacementStatus::Running),
    );
    assert_eq!(e, Error::UnknownGroup("nope".into()));
    let e = rejected(
        &mut s,
        update("g1", "zzz", 1, None, PlacementStatus::Running),
    );
    assert_eq!(e.code(), "placement_not_found");
}

#[test]
fn placements_cannot_be_moved_while_migrating() {
    let mut s = with_workers(3);
    ok(
        &mut s,
        create("g1", spec("app", &["a"]), &[("a", 0, Some("w1"))]),
    );
    ok(&mut s, start("m1", "g1", "a", "w1", None));
    let e = rejected(
        &mut s,
        update("g1", "a", 1, Some("w3"), PlacementStatus::Pending),
    );
    assert_eq!(e, Error::MigrationInProgress("m1".into()));
}

#[test]
fn a_pending_placement_is_assigned_by_an_update() {
    let mut s = with_workers(1);
    ok(&mut s, create("g1", spec("app", &["a"]), &[]));
    let e = rejected(&mut s, update("g1", "a", 1, None, PlacementStatus::Running));
    assert!(matches!(e, Error::InvalidCommand(m) if m.contains("no worker")));
    ok(&mut s, update("g1", "a", 1, None, PlacementStatus::Failed));
    let out = ok(
        &mut s,
        update("g1", "a", 1, Some("w1"), PlacementStatus::Deploying),
    );
    assert!(matches!(out, Outcome::PlacementUpdated { epoch: 2, .. }));
    assert_eq!(s.placements_on("w1").len(), 1);
}

// ----- connectors -----

#[test]
fn connector_create_update_put_delete() {
    let mut s = ClusterState::default();
    let out = ok(
        &mut s,
        Command::CreateConnector {
            spec: connector(
                "MqttOut",
                "mqtt",
                json!({"host": "localhost", "port": "1883"}),
            ),
        },
    );
    let Outcome::ConnectorSaved { spec, created } = out else {
        panic!("wrong outcome")
    };
    assert!(created);
    assert_eq!(spec.params["port"], json!(1883));
    assert_eq!(s.connector("MqttOut").unwrap().params["port"], json!(1883));

    let e = rejected(
        &mut s,
        Command::CreateConnector {
            spec: connector("MqttOut", "mqtt", json!({"host": "h"})),
        },
    );
    assert_eq!(e, Error::DuplicateConnector("MqttOut".into()));
    assert_eq!(e.code().status(), 409);

    ok(
        &mut s,
        Command::UpdateConnector {
            spec: connector("MqttOut", "mqtt", json!({"host": "other"})),
        },
    );
    assert_eq!(
        s.connector("MqttOut").unwrap().params["host"],
        json!("other")
    );
    let e = rejected(
        &mut s,
        Command::UpdateConnector {
            spec: connector("Nope", "mqtt", json!({"host": "h"})),
        },
    );
    assert_eq!(e, Error::UnknownConnector("Nope".into()));

    let out = ok(
        &mut s,
        Command::PutConnector {
            spec: connector("Nats1", "nats", json!({})),
        },
    );
    assert!(matches!(out, Outcome::ConnectorSaved { created: true, .. }));
    let out = ok(
        &mut s,
        Command::PutConnector {
            spec: connector("Nats1", "nats", json!({"port": 4222})),
        },
    );
    assert!(matches!(
        out,
        Outcome::ConnectorSaved { created: false, .. }
    ));
    assert_eq!(s.connectors().count(), 2);

    ok(
        &mut s,
        Command::DeleteConnector {
            name: "Nats1".into(),
        },
    );
    let e = rejected(
        &mut s,
        Command::DeleteConnector {
            name: "Nats1".into(),
        },
    );
    assert_eq!(e.code().status(), 404);
}

#[test]
fn invalid_connectors_are_400_with_clear_messages() {
    let mut s = ClusterState::default();
    for (c, needle) in [
        (
            connector("my-conn", "mqtt", json!({"host": "h"})),
            "identifier",
        ),
        (connector("c", "kafka", json!({})), "not supported"),
        (connector("c", "mqtt", json!({"port": 1883})), "host"),
        (
            connector("c", "mqtt", json!({"host": "h", "port": "abc"})),
            "port",
        ),
        (
            connector("c", "mqtt", json!({"host": "h", "port": 70000})),
            "65535",
        ),
    ] {
        let e = rejected(&mut s, Command::CreateConnector { spec: c });
        assert_eq!(e.code().status(), 400);
        assert!(e.to_string().contains(needle), "{e} lacks {needle}");
    }
}

// ----- migrations -----

#[test]
fn a_migration_moves_the_placement_atomically() {
    let mut s = with_group();
    ok(&mut s, reg("w3"));
    ok(&mut s, update("g1", "a", 1, None, PlacementStatus::Running));
    let out = ok(&mut s, start("m1", "g1", "a", "w1", None));
    assert_eq!(
        out,
        Outcome::MigrationUpdated {
            migration_id: "m1".into(),
            status: MigrationStatus::Pending,
            epoch: 1
        }
    );
    assert_eq!(
        s.group("g1").unwrap().placement("a", 0).unwrap().status,
        PlacementStatus::Migrating
    );
    assert_eq!(s.active_migrations().len(), 1);

    ok(
        &mut s,
        Command::ProgressMigration {
            migration_id: "m1".into(),
            to_worker: "w3".into(),
            next_rr_cursor: Some(7),
            now_ms: 10_500,
        },
    );
    assert_eq!(
        s.migration("m1").unwrap().status,
        MigrationStatus::Deploying
    );
    assert_eq!(s.rr_cursor(), 7);

    let out = ok(&mut s, complete("m1"));
    assert_eq!(
        out,
        Outcome::MigrationUpdated {
            migration_id: "m1".into(),
            status: MigrationStatus::Completed,
            epoch: 2
        }
    );
    let p = s.group("g1").unwrap().placement("a", 0).unwrap();
    assert_eq!(p.worker_id.as_deref(), Some("w3"));
    assert_eq!(p.pipeline_id.as_deref(), Some("pid-new"));
    assert_eq!(p.status, PlacementStatus::Running);
    assert_eq!(p.epoch, 2);
    let m = s.migration("m1").unwrap();
    assert_eq!(m.completed_at_ms, Some(11_000));
    assert!(m.restored_from_checkpoint);
    assert!(s.active_migrations().is_empty());
    // Routes name pipelines, so they follow the move.
    let g = s.group("g1").unwrap();
    assert_eq!(varpulis_cluster::routing::route(g, "Anything"), Some("a"));
}

#[test]
fn a_migration_with_a_target_starts_deploying() {
    let mut s = with_group();
    ok(&mut s, reg("w3"));
    let out = ok(&mut s, start("m1", "g1", "a", "w1", Some("w3")));
    assert!(matches!(
        out,
        Outcome::MigrationUpdated {
            status: MigrationStatus::Deploying,
            ..
        }
    ));
    ok(&mut s, complete("m1"));
    assert_eq!(s.placements_on("w3").len(), 1);
}

#[test]
fn migration_start_rejections() {
    let mut s = with_group();
    ok(&mut s, reg("w3"));
    ok(&mut s, start("m1", "g1", "a", "w1", None));
    assert_eq!(
        rejected(&mut s, start("m1", "g1", "b", "w2", None)),
        Error::DuplicateMigration("m1".into())
    );
    assert_eq!(
        rejected(&mut s, start("m2", "g1", "a", "w1", None)),
        Error::MigrationInProgress("m1".into())
    );
    assert_eq!(
        rejected(&mut s, start("m2", "nope", "b", "w2", None)),
        Error::UnknownGroup("nope".into())
    );
    assert_eq!(
        rejected(&mut s, start("m2", "g1", "zzz", "w2", None))
            .code()
            .status(),
        404
    );
    let e = rejected(&mut s, start("m2", "g1", "b", "w1", None));
    assert_eq!(
        e,
        Error::WrongWorker {
            expected: "w1".into(),
            actual: "w2".into()
        }
    );
    let e = rejected(&mut s, start("m2", "g1", "b", "w2", Some("w2")));
    assert!(matches!(e, Error::WorkerUnavailable { .. }));
    let e = rejected(&mut s, start("m2", "g1", "b", "w2", Some("ghost")));
    assert_eq!(e, Error::UnknownWorker("ghost".into()));
    ok(&mut s, set_status("w3", WorkerStatus::Draining));
    let e = rejected(&mut s, start("m2", "g1", "b", "w2", Some("w3")));
    assert!(matches!(e, Error::WorkerUnavailable { reason, .. } if reason.contains("draining")));
    let e = rejected(&mut s, start("", "g1", "b", "w2", None));
    assert_eq!(e.code().status(), 400);
}

#[test]
fn migration_progress_and_completion_rejections() {
    let mut s = with_group();
    ok(&mut s, start("m1", "g1", "a", "w1", None));
    let e = rejected(&mut s, complete("m1"));
    assert!(matches!(e, Error::InvalidCommand(m) if m.contains("no target")));
    let e = rejected(&mut s, complete("ghost"));
    assert_eq!(e, Error::UnknownMigration("ghost".into()));
    let progress = |to: &str| Command::ProgressMigration {
        migration_id: "m1".into(),
        to_worker: to.into(),
        next_rr_cursor: None,
        now_ms: 1,
    };
    assert!(matches!(
        rejected(&mut s, progress("w1")),
        Error::WorkerUnavailable { .. }
    ));
    assert_eq!(
        rejected(&mut s, progress("ghost")),
        Error::UnknownWorker("ghost".into())
    );
    ok(&mut s, progress("w2"));
    let mut empty = complete("m1");
    if let Command::CompleteMigration { pipeline_id, .. } = &mut empty {
        pipeline_id.clear();
    }
    assert_eq!(rejected(&mut s, empty).code().status(), 400);
    ok(&mut s, complete("m1"));
    let e = rejected(&mut s, complete("m1"));
    assert_eq!(
        e,
        Error::MigrationFinished {
            id: "m1".into(),
            status: "completed".into()
        }
    );
    assert_eq!(
        rejected(&mut s, progress("w2")).code(),
        "migration_finished"
    );
}

#[test]
fn a_failed_migration_marks_the_placement_failed() {
    let mut s = with_group();
    ok(&mut s, start("m1", "g1", "a", "w1", Some("w2")));
    let out = ok(
        &mut s,
        Command::FailMigration {
            migration_id: "m1".into(),
            error: "deploy refused".into(),
            now_ms: 12_000,
        },
    );
    assert!(matches!(
        out,
        Outcome::MigrationUpdated {
            status: MigrationStatus::Failed,
            epoch: 1,
            ..
        }
    ));
    let p = s.group("g1").unwrap().placement("a", 0).unwrap();
    assert_eq!(p.status, PlacementStatus::Failed);
    assert_eq!(p.worker_id.as_deref(), Some("w1"));
    assert_eq!(
        s.migration("m1").unwrap().error.as_deref(),
        Some("deploy refused")
    );
    let e = rejected(
        &mut s,
        Command::FailMigration {
            migration_id: "m1".into(),
            error: "x".into(),
            now_ms: 1,
        },
    );
    assert_eq!(e.code(), "migration_finished");
    let e = rejected(
        &mut s,
        Command::FailMigration {
            migration_id: "zz".into(),
            error: "x".into(),
            now_ms: 1,
        },
    );
    assert_eq!(e.code().status(), 404);
    // A new attempt may start after a failure.
    ok(&mut s, start("m2", "g1", "a", "w1", None));
}

#[test]
fn pending_migrations_are_never_dropped() {
    let mut s = with_group();
    ok(&mut s, reg("w3"));
    ok(&mut s, start("m1", "g1", "a", "w1", Some("w3")));
    // The target disappears: the migration waits for another one.
    ok(
        &mut s,
        Command::DeregisterWorker {
            worker_id: "w3".into(),
        },
    );
    let m = s.migration("m1").unwrap();
    assert_eq!(m.status, MigrationStatus::Pending);
    assert_eq!(m.to_worker, None);
    // The source disappears too: still pending, the placement waits without a worker.
    ok(
        &mut s,
        Command::DeregisterWorker {
            worker_id: "w1".into(),
        },
    );
    assert_eq!(s.migration("m1").unwrap().status, MigrationStatus::Pending);
    ok(&mut s, reg("w4"));
    ok(
        &mut s,
        Command::ProgressMigration {
            migration_id: "m1".into(),
            to_worker: "w4".into(),
            next_rr_cursor: None,
            now_ms: 1,
        },
    );
    ok(&mut s, complete("m1"));
    assert_eq!(
        s.group("g1")
            .unwrap()
            .placement("a", 0)
            .unwrap()
            .worker_id
            .as_deref(),
        Some("w4")
    );
}

// ----- checkpoints -----

#[test]
fn only_the_newest_checkpoint_is_kept() {
    let mut s = with_group();
    let out = ok(&mut s, checkpoint(1, "state-1", 100));
    assert_eq!(
        out,
        Outcome::CheckpointStored {
            group_id: "g1".into(),
            pipeline_name: "a".into(),
            replica: 0,
            size: 7
        }
    );
    ok(&mut s, checkpoint(1, "state-2", 200));
    let cp = s
        .group("g1")
        .unwrap()
        .placement("a", 0)
        .unwrap()
        .checkpoint
        .clone()
        .unwrap();
    assert_eq!(cp.data, "state-2");
    assert_eq!(cp.events_processed, 42);
    let e = rejected(&mut s, checkpoint(1, "older", 150));
    assert_eq!(e, Error::StaleCheckpoint { stored_ms: 200 });
    assert_eq!(e.code().status(), 409);
}

#[test]
fn checkpoint_rejections() {
    let mut s = with_group();
    let big = "x".repeat(MAX_CHECKPOINT_BYTES + 1);
    let e = rejected(&mut s, checkpoint(1, &big, 1));
    assert_eq!(
        e,
        Error::CheckpointTooLarge {
            size: MAX_CHECKPOINT_BYTES + 1,
            max: MAX_CHECKPOINT_BYTES
        }
    );
    assert_eq!(e.code().status(), 413);
    ok(&mut s, checkpoint(1, &"x".repeat(MAX_CHECKPOINT_BYTES), 1));
    assert_eq!(
        rejected(&mut s, checkpoint(2, "s", 5)).code(),
        "stale_epoch"
    );
    let mut unknown = checkpoint(1, "s", 5);
    if let Command::StoreCheckpoint { replica, .. } = &mut unknown {
        *replica = 3;
    }
    assert_eq!(rejected(&mut s, unknown).code().status(), 404);
}

#[test]
fn a_checkpoint_survives_the_migration_it_restores() {
    let mut s = with_group();
    ok(&mut s, checkpoint(1, "snap", 100));
    ok(&mut s, start("m1", "g1", "a", "w1", Some("w2")));
    let mut sp = spec("solo", &["z"]);
    sp.routes.clear();
    ok(&mut s, create("g9", sp, &[]));
    ok(&mut s, complete("m1"));
    let p = s.group("g1").unwrap().placement("a", 0).unwrap();
    assert_eq!(p.checkpoint.as_ref().map(|c| c.data.as_str()), Some("snap"));
    // The old worker's epoch is fenced now.
    assert_eq!(
        rejected(&mut s, checkpoint(1, "late", 300)).code(),
        "stale_epoch"
    );
    ok(&mut s, checkpoint(2, "new", 50));
}

// ----- idempotency -----

#[test]
fn a_repeated_key_returns_the_original_response_without_reapplying() {
    let mut s = with_workers(1);
    let cmd = create("g1", spec("app", &["a"]), &[("a", 0, Some("w1"))]).with_key("req-1");
    let first = s.apply(&cmd).response;
    assert!(first.is_ok());
    let hash = s.state_hash();
    let again = s.apply(&cmd);
    assert_eq!(again.response, first, "original response, not a 409");
    assert!(again.events.is_empty(), "nothing happened again");
    assert_eq!(s.group_count(), 1);
    assert_ne!(s.state_hash(), hash, "only the applied counter moved");
    assert_eq!(s.idempotent_response("req-1"), Some(&first));
    // Another key is applied normally (and conflicts).
    let other = create("g2", spec("app", &["a"]), &[]).with_key("req-2");
    assert_eq!(
        s.apply(&other).error(),
        Some(&Error::DuplicateGroupName("app".into()))
    );
}

#[test]
fn errors_are_remembered_too() {
    let mut s = ClusterState::default();
    let cmd = Command::DeregisterWorker {
        worker_id: "w1".into(),
    }
    .with_key("k");
    let first = s.apply(&cmd).response;
    assert!(!first.is_ok());
    ok(&mut s, reg("w1"));
    assert_eq!(s.apply(&cmd).response, first);
    assert!(s.worker("w1").is_some(), "not re-applied");
}

#[test]
fn bad_keys_and_nested_keys_are_rejected() {
    let mut s = ClusterState::default();
    let e = s.apply(&reg("w1").with_key("")).into_result().unwrap_err();
    assert_eq!(e.code().status(), 400);
    let e = s
        .apply(&reg("w1").with_key("k".repeat(300)))
        .into_result()
        .unwrap_err();
    assert_eq!(e.code().status(), 400);
    let e = s
        .apply(&reg("w1").with_key("a").with_key("b"))
        .into_result()
        .unwrap_err();
    assert!(matches!(e, Error::InvalidCommand(m) if m.contains("nested")));
    assert_eq!(s.worker_count(), 0);
}

#[test]
fn keys_inside_a_batch_are_honoured() {
    let mut s = ClusterState::default();
    let batch = Command::batch(vec![reg("w1").with_key("a"), reg("w2").with_key("a")]);
    let Outcome::Batch(r) = ok(&mut s, batch) else {
        panic!("not a batch outcome")
    };
    assert_eq!(r[0], r[1]);
    assert!(s.worker("w2").is_none());
}

#[test]
fn the_idempotency_table_forgets_the_oldest_keys_first() {
    let mut s = ClusterState::default();
    let first = Command::DeregisterWorker {
        worker_id: "w0".into(),
    }
    .with_key("k0");
    assert!(!s.apply(&first).is_ok());
    let batch = Command::batch(
        (1..=IDEMPOTENCY_CAPACITY)
            .map(|i| Command::Noop.with_key(format!("k{i}")))
            .collect(),
    );
    ok(&mut s, batch);
    assert!(s.idempotent_response("k0").is_none());
    assert!(s.idempotent_response("k1").is_some());
    assert!(s
        .idempotent_response(&format!("k{IDEMPOTENCY_CAPACITY}"))
        .is_some());
    ok(&mut s, reg("w0"));
    assert!(s.apply(&first).is_ok(), "a forgotten key is applied again");
}

// ----- hashing -----

#[test]
fn equal_histories_hash_equal_and_round_trip() {
    let a = with_group();
    let b = with_group();
    assert_eq!(a.state_hash(), b.state_hash());
    assert_eq!(a.state_hash().len(), 64);
    let json = serde_json::to_string(&a).unwrap();
    let back: ClusterState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
    assert_eq!(back.state_hash(), a.state_hash());
    let mut c = a.clone();
    ok(&mut c, reg("w9"));
    assert_ne!(c.state_hash(), a.state_hash());
}

#[test]
fn commands_and_responses_round_trip_through_json() {
    let mut s = with_group();
    let cmds = vec![
        reg("w5"),
        start("m1", "g1", "a", "w1", Some("w2")),
        complete("m1"),
        checkpoint(2, "cp", 1),
        Command::batch(vec![Command::Noop.with_key("x")]),
    ];
    for cmd in cmds {
        let json = serde_json::to_string(&cmd).unwrap();
        let back: Command = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cmd);
        let resp = s.apply(&cmd).response;
        let json = serde_json::to_string(&resp).unwrap();
        let back: varpulis_cluster::CommandResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(back, resp);
    }
}
