//! Placement strategies and the leader's pure planning helpers.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;
use varpulis_cluster::placement::{
    plan_failover, plan_group, plan_pending, rebalance_moves, Strategy,
};
use varpulis_cluster::{
    ClusterState, Command, Error, MigrationReason, MigrationStatus, WorkerStatus,
};

fn workers_of(plan: &varpulis_cluster::placement::PlacementPlan) -> Vec<Option<&str>> {
    plan.assignments
        .iter()
        .map(|a| a.worker_id.as_deref())
        .collect()
}

/// Plans and creates group `name`, returning the group id.
fn deploy(
    s: &mut ClusterState,
    name: &str,
    sp: varpulis_api::cluster::PipelineGroupSpec,
) -> String {
    let plan = plan_group(s, &sp).unwrap();
    let id = format!("id-{name}");
    ok(s, plan.to_command(&id, &sp, 1));
    id
}

fn run_all(s: &mut ClusterState) {
    let updates: Vec<Command> = s
        .groups()
        .iter()
        .flat_map(|g| {
            g.placements
                .iter()
                .filter(|p| p.worker_id.is_some())
                .map(|p| running_update(&g.id, &p.pipeline_name, p.replica, p.epoch))
        })
        .collect();
    for u in updates {
        ok(s, u);
    }
}

#[test]
fn strategy_names() {
    assert_eq!(Strategy::parse(None).unwrap(), Strategy::RoundRobin);
    assert_eq!(
        Strategy::parse(Some("round-robin")).unwrap(),
        Strategy::RoundRobin
    );
    assert_eq!(
        Strategy::parse(Some("LEAST_LOADED")).unwrap(),
        Strategy::LeastLoaded
    );
    assert!(matches!(
        Strategy::parse(Some("random")),
        Err(Error::InvalidSpec(_))
    ));
}

#[test]
fn round_robin_alternates_like_the_tutorial() {
    let s = with_workers(2);
    let plan = plan_group(&s, &spec("app", &["p1", "p2", "p3", "p4"])).unwrap();
    assert_eq!(
        workers_of(&plan),
        [Some("w1"), Some("w2"), Some("w1"), Some("w2")]
    );
    assert!(plan.is_complete());
    assert_eq!(plan.next_rr_cursor, 4);
}

#[test]
fn the_round_robin_cursor_is_replicated_so_a_new_leader_continues_it() {
    let mut s = with_workers(3);
    deploy(&mut s, "one", spec("one", &["a"]));
    assert_eq!(s.rr_cursor(), 1);
    // A new leader starts from the replicated state (here: a deserialized copy).
    let follower: ClusterState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    let plan = plan_group(&follower, &spec("two", &["b", "c"])).unwrap();
    assert_eq!(workers_of(&plan), [Some("w2"), Some("w3")]);
}

#[test]
fn least_loaded_picks_the_emptiest_worker() {
    let mut s = with_workers(3);
    deploy(&mut s, "one", spec("one", &["a", "b", "c", "d"]));
    // w1 has 2, w2 and w3 one each.
    let mut sp = spec("two", &["x", "y"]);
    sp.placement = Some("least_loaded".into());
    let plan = plan_group(&s, &sp).unwrap();
    assert_eq!(workers_of(&plan), [Some("w2"), Some("w3")]);
}

#[test]
fn affinity_is_honoured_and_falls_back() {
    let mut s = with_workers(3);
    let mut sp = spec("app", &["a", "b"]);
    sp.pipelines[0].worker_affinity = Some("w3".into());
    sp.pipelines[1].worker_affinity = Some("ghost".into());
    let plan = plan_group(&s, &sp).unwrap();
    assert_eq!(workers_of(&plan), [Some("w3"), Some("w1")]);
    set_status(&mut s, "w3", WorkerStatus::Unhealthy);
    let plan = plan_group(&s, &sp).unwrap();
    assert_eq!(
        workers_of(&plan)[0],
        Some("w1"),
        "unavailable affinity falls back to round-robin"
    );
}

#[test]
fn label_constraints_restrict_workers() {
    let mut s = ClusterState::default();
    ok(&mut s, reg_with("w1", 10, &[("zone", "a")]));
    ok(&mut s, reg_with("w2", 10, &[("zone", "b"), ("gpu", "yes")]));
    let mut sp = spec("app", &["a", "b"]);
    sp.pipelines[0].labels.insert("gpu".into(), "yes".into());
    sp.pipelines[1].labels.insert("zone".into(), "c".into());
    let plan = plan_group(&s, &sp).unwrap();
    assert_eq!(workers_of(&plan), [Some("w2"), None]);
    assert!(
        plan.unplaced[0].reason.contains("zone=c"),
        "{}",
        plan.unplaced[0].reason
    );
}

#[test]
fn replicas_go_to_distinct_workers() {
    let s = with_workers(3);
    let mut sp = spec("app", &["a"]);
    sp.pipelines[0].replicas = Some(3);
    let plan = plan_group(&s, &sp).unwrap();
    assert_eq!(workers_of(&plan), [Some("w1"), Some("w2"), Some("w3")]);
    let s2 = {
        let mut s2 = with_workers(3);
        set_status(&mut s2, "w2", WorkerStatus::Draining);
        s2
    };
    let plan = plan_group(&s2, &sp).unwrap();
    assert_eq!(workers_of(&plan), [Some("w1"), Some("w3"), None]);
    assert!(plan.unplaced[0]
        .reason
        .contains("already runs this pipeline"));
}

#[test]
fn only_ready_workers_with_capacity_are_used() {
    let mut s = ClusterState::default();
    for (id, cap) in [("w1", 1), ("w2", 5), ("w3", 5), ("w4", 5), ("w5", 5)] {
        ok(&mut s, reg_with(id, cap, &[]));
    }
    set_status(&mut s, "w2", WorkerStatus::Busy);
    set_status(&mut s, "w3", WorkerStatus::Unhealthy);
    set_status(&mut s, "w4", WorkerStatus::Draining);
    set_status(&mut s, "w5", WorkerStatus::Unhealthy);
    set_status(&mut s, "w5", WorkerStatus::Dead);
    let sp = spec("app", &["a", "b"]);
    let plan = plan_group(&s, &sp).unwrap();
    assert_eq!(
        workers_of(&plan),
        [Some("w1"), None],
        "w1 holds one pipeline at most"
    );
    let err = plan.no_worker_error().unwrap();
    assert_eq!(err.code().status(), 503);
    assert!(err.to_string().contains("1 of 2"), "{err}");
    // The group is stored with the unplaced slot Pending; the reconciler fills it later.
    let id = deploy(&mut s, "app", sp);
    assert_eq!(
        s.group(&id).unwrap().placement("b", 0).unwrap().worker_id,
        None
    );
    ok(&mut s, reg("w6"));
    let pending = plan_pending(&s);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].worker_id, "w6");
    ok(&mut s, pending[0].to_command(5));
    assert_eq!(
        s.group(&id)
            .unwrap()
            .placement("b", 0)
            .unwrap()
            .worker_id
            .as_deref(),
        Some("w6")
    );
}

#[test]
fn no_workers_at_all_gives_a_clear_reason() {
    let s = ClusterState::default();
    let plan = plan_group(&s, &spec("app", &["a"])).unwrap();
    assert_eq!(plan.unplaced[0].reason, "no worker is ready");
    assert!(
        plan_group(&s, &spec("", &["a"])).is_err(),
        "the spec is validated too"
    );
}

#[test]
fn failover_plans_move_everything_off_a_worker() {
    let mut s = with_workers(3);
    let id = deploy(&mut s, "app", spec("app", &["a", "b", "c", "d"]));
    set_status(&mut s, "w1", WorkerStatus::Unhealthy);
    let plans = plan_failover(&s, "w1");
    assert_eq!(plans.len(), 2);
    for p in &plans {
        assert_eq!(p.from_worker, "w1");
        assert!(matches!(p.to_worker.as_deref(), Some("w2") | Some("w3")));
    }
    for (i, p) in plans.iter().enumerate() {
        ok(
            &mut s,
            p.to_command(&format!("m{i}"), MigrationReason::WorkerUnhealthy, 10),
        );
    }
    assert!(
        plan_failover(&s, "w1").is_empty(),
        "placements already migrating are skipped"
    );
    for i in 0..plans.len() {
        ok(
            &mut s,
            Command::CompleteMigration {
                migration_id: format!("m{i}"),
                pipeline_id: "new".into(),
                restored_from_checkpoint: false,
                now_ms: 11,
            },
        );
    }
    assert!(s.placements_on("w1").is_empty());
    assert_eq!(
        s.group(&id)
            .unwrap()
            .placements
            .iter()
            .filter(|p| p.epoch == 2)
            .count(),
        2
    );
}

#[test]
fn failover_without_a_target_leaves_the_migration_pending_until_one_appears() {
    let mut s = with_workers(1);
    deploy(&mut s, "app", spec("app", &["a"]));
    set_status(&mut s, "w1", WorkerStatus::Unhealthy);
    let plans = plan_failover(&s, "w1");
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].to_worker, None);
    ok(
        &mut s,
        plans[0].to_command("m1", MigrationReason::WorkerUnhealthy, 10),
    );
    assert_eq!(s.migration("m1").unwrap().status, MigrationStatus::Pending);
    assert!(plan_pending(&s).is_empty(), "still no target");
    ok(&mut s, reg("w2"));
    let targets = plan_pending(&s);
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].migration_id.as_deref(), Some("m1"));
    assert_eq!(targets[0].worker_id, "w2");
    ok(&mut s, targets[0].to_command(11));
    assert_eq!(s.migration("m1").unwrap().to_worker.as_deref(), Some("w2"));
}

#[test]
fn failover_respects_replicas_and_labels() {
    let mut s = ClusterState::default();
    ok(&mut s, reg_with("w1", 10, &[("zone", "a")]));
    ok(&mut s, reg_with("w2", 10, &[("zone", "a")]));
    ok(&mut s, reg_with("w3", 10, &[("zone", "b")]));
    ok(&mut s, reg_with("w4", 10, &[("zone", "a")]));
    let mut sp = spec("app", &["a"]);
    sp.pipelines[0].replicas = Some(2);
    sp.pipelines[0].labels.insert("zone".into(), "a".into());
    deploy(&mut s, "app", sp);
    let plans = plan_failover(&s, "w1");
    assert_eq!(plans.len(), 1);
    assert_eq!(
        plans[0].to_worker.as_deref(),
        Some("w4"),
        "not w2 (other replica), not w3 (zone b)"
    );
}

#[test]
fn rebalance_evens_out_running_placements() {
    let mut s = with_workers(1);
    deploy(&mut s, "app", spec("app", &["a", "b", "c", "d", "e", "f"]));
    run_all(&mut s);
    ok(&mut s, reg("w2"));
    ok(&mut s, reg("w3"));
    let plans = rebalance_moves(&s);
    assert_eq!(plans.len(), 4);
    let to_w2 = plans
        .iter()
        .filter(|p| p.to_worker.as_deref() == Some("w2"))
        .count();
    let to_w3 = plans
        .iter()
        .filter(|p| p.to_worker.as_deref() == Some("w3"))
        .count();
    assert_eq!((to_w2, to_w3), (2, 2));
    for (i, p) in plans.iter().enumerate() {
        ok(
            &mut s,
            p.to_command(&format!("r{i}"), MigrationReason::Rebalance, 1),
        );
        ok(
            &mut s,
            Command::CompleteMigration {
                migration_id: format!("r{i}"),
                pipeline_id: "moved".into(),
                restored_from_checkpoint: false,
                now_ms: 2,
            },
        );
    }
    let loads = s.worker_loads();
    assert_eq!(loads.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
    assert!(rebalance_moves(&s).is_empty(), "balanced: nothing to do");
}

#[test]
fn rebalance_needs_two_ready_workers() {
    let mut s = with_workers(1);
    deploy(&mut s, "app", spec("app", &["a", "b"]));
    run_all(&mut s);
    assert!(rebalance_moves(&s).is_empty());
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Strategy;
    use std::collections::{BTreeMap, BTreeSet};
    use varpulis_api::cluster::PipelineGroupSpec;

    #[derive(Debug, Clone)]
    struct W {
        cap: u32,
        status: WorkerStatus,
        zone_a: bool,
    }

    fn worker() -> impl Strategy<Value = W> {
        (
            1..4u32,
            prop::sample::select(vec![
                WorkerStatus::Ready,
                WorkerStatus::Ready,
                WorkerStatus::Busy,
                WorkerStatus::Unhealthy,
                WorkerStatus::Draining,
            ]),
            any::<bool>(),
        )
            .prop_map(|(cap, status, zone_a)| W {
                cap,
                status,
                zone_a,
            })
    }

    fn group_spec() -> impl Strategy<Value = PipelineGroupSpec> {
        prop::collection::vec(
            (1..3u32, any::<bool>(), proptest::option::of(0..6usize)),
            1..5,
        )
        .prop_map(|pipes| {
            let names: Vec<String> = (0..pipes.len()).map(|i| format!("p{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut sp = spec("prop", &refs);
            for (p, (replicas, zone, affinity)) in sp.pipelines.iter_mut().zip(pipes) {
                p.replicas = Some(replicas);
                if zone {
                    p.labels.insert("zone".into(), "a".into());
                }
                p.worker_affinity = affinity.map(|i| format!("w{i}"));
            }
            sp
        })
    }

    proptest! {
        #[test]
        fn plans_follow_the_placement_rules(
            workers in prop::collection::vec(worker(), 2..6),
            existing in 0..4usize,
            sp in group_spec(),
            least_loaded in any::<bool>(),
        ) {
            let mut s = ClusterState::default();
            for (i, w) in workers.iter().enumerate() {
                let labels: &[(&str, &str)] = if w.zone_a { &[("zone", "a")] } else { &[] };
                ok(&mut s, reg_with(&format!("w{i}"), w.cap, labels));
            }
            // Some load before the plan.
            if existing > 0 {
                let names: Vec<String> = (0..existing).map(|i| format!("e{i}")).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                deploy(&mut s, "existing", spec("existing", &refs));
            }
            for (i, w) in workers.iter().enumerate() {
                if w.status == WorkerStatus::Draining || w.status == WorkerStatus::Busy {
                    set_status(&mut s, &format!("w{i}"), w.status);
                } else if w.status == WorkerStatus::Unhealthy {
                    set_status(&mut s, &format!("w{i}"), WorkerStatus::Unhealthy);
                }
            }
            let mut sp = sp;
            if least_loaded {
                sp.placement = Some("least_loaded".into());
            }
            let Ok(plan) = plan_group(&s, &sp) else {
                // Only too many replicas for the registered workers can be refused.
                prop_assert!(sp.pipelines.iter().any(|p| p.replicas.unwrap_or(1) as usize > workers.len()));
                return Ok(());
            };
            let mut loads: BTreeMap<String, u32> =
                s.worker_loads().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let mut per_pipeline: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for a in &plan.assignments {
                let Some(id) = &a.worker_id else { continue };
                let w = s.worker(id).unwrap();
                let p = sp.pipelines.iter().find(|p| p.name == a.pipeline_name).unwrap();
                prop_assert_eq!(w.status, WorkerStatus::Ready);
                prop_assert!(w.matches_labels(&p.labels));
                prop_assert!(per_pipeline.entry(p.name.clone()).or_default().insert(id.clone()), "replicas share {}", id);
                let l = loads.entry(id.clone()).or_insert(0);
                *l += 1;
                prop_assert!(*l <= w.max_pipelines, "{} over capacity", id);
            }
            for u in &plan.unplaced {
                let p = sp.pipelines.iter().find(|p| p.name == u.pipeline_name).unwrap();
                let used = per_pipeline.get(&p.name).cloned().unwrap_or_default();
                for w in s.workers().filter(|w| w.status == WorkerStatus::Ready && w.matches_labels(&p.labels)) {
                    prop_assert!(
                        used.contains(&w.id) || loads.get(&w.id).copied().unwrap_or(0) >= w.max_pipelines,
                        "{} could have taken {} replica {}", w.id, p.name, u.replica
                    );
                }
            }
            // The plan is accepted as is and every assignment survives apply.
            let mut applied = s.clone();
            ok(&mut applied, plan.to_command("gid", &sp, 1));
            let g = applied.group("gid").unwrap();
            for a in &plan.assignments {
                prop_assert_eq!(&g.placement(&a.pipeline_name, a.replica).unwrap().worker_id, &a.worker_id);
            }
        }
    }
}
