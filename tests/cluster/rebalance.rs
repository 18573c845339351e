//! Rebalance (issue 6): a worker joining triggers a rate-limited rebalance (auto, default on);
//! `POST /rebalance` plans and starts moves on demand. Moves carry the state: every counter
//! continues exactly where it was.

use crate::harness::{wait_until, Ensemble, Opts, Resp};
use crate::migration::{create_counters, group_view, heal_opts, inject, migrations, try_inject};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PIPES: [(&str, &str, &str); 4] = [
    ("c0", "Tick0", "worker-0"),
    ("c1", "Tick1", "worker-0"),
    ("c2", "Tick2", "worker-0"),
    ("c3", "Tick3", "worker-0"),
];

/// Placements per worker once every placement runs and no migration is active.
async fn settled_loads(ens: &Ensemble, gid: &str) -> BTreeMap<String, usize> {
    wait_until(
        "rebalance settled",
        Duration::from_secs(40),
        Duration::from_millis(200),
        || async move {
            let active = migrations(ens, 0)
                .await
                .iter()
                .any(|m| m["status"] == "pending" || m["status"] == "deploying");
            let g = group_view(ens, 0, gid).await?;
            let all = g["placements"].as_array()?;
            if active || !all.iter().all(|p| p["status"] == "Running") {
                return None;
            }
            let mut loads = BTreeMap::new();
            for p in all {
                *loads
                    .entry(p["worker_id"].as_str()?.to_owned())
                    .or_insert(0) += 1;
            }
            (loads.len() == 2 && loads.values().all(|n| *n == 2)).then_some(loads)
        },
    )
    .await
}

async fn fill(ens: &Ensemble, gid: &str) {
    for (i, (_, event, _)) in PIPES.iter().enumerate() {
        for v in 0..=i as i64 {
            inject(ens, 0, gid, event, v).await;
        }
    }
}

/// Counts after [`fill`]: pipeline `i` has seen `i + 1` events.
fn filled_counts() -> Vec<i64> {
    (1..=PIPES.len() as i64).collect()
}

/// One more event per pipeline: each count continues from `counts`.
async fn check_counts_continue(ens: &Ensemble, gid: &str, counts: &[i64]) {
    for (i, (_, event, _)) in PIPES.iter().enumerate() {
        assert_eq!(
            inject(ens, 0, gid, event, 9).await,
            counts[i] + 1,
            "{event}"
        );
    }
}

/// `POST /rebalance` on coordinator 0; expects 200.
async fn manual_rebalance(ens: &Ensemble) -> Resp {
    let r = ens
        .api
        .post(&ens.cluster_url(0, "/rebalance"), &json!({}))
        .await
        .unwrap();
    r.expect_status(200);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_worker_gets_half_the_pipelines_with_their_state() {
    let mut ens = Ensemble::start(1, 1, heal_opts()).await;
    let gid = create_counters(&ens, 0, "spread", &PIPES).await;
    fill(&ens, &gid).await;
    ens.add_worker("worker-1");
    // Events keep coming while pipelines move: each inject is answered at once (it waits out a
    // move rather than failing with 503) and each count goes on by exactly one.
    let mut counts = filled_counts();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut during = 0;
    loop {
        for (i, (_, event, _)) in PIPES.iter().enumerate() {
            let n = try_inject(&ens, 0, &gid, event, 5).await;
            assert_eq!(n, Some(counts[i] + 1), "{event} during the rebalance");
            counts[i] += 1;
            during += 1;
        }
        let done = migrations(&ens, 0)
            .await
            .iter()
            .filter(|m| m["reason"] == "rebalance" && m["status"] == "completed")
            .count();
        if done == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the rebalance never finished");
    }
    let loads = settled_loads(&ens, &gid).await;
    eprintln!("loads after the join: {loads:?}, {during} events injected during the moves");
    check_counts_continue(&ens, &gid, &counts).await;
    let all = migrations(&ens, 0).await;
    let moves: Vec<&Value> = all.iter().filter(|m| m["reason"] == "rebalance").collect();
    assert_eq!(moves.len(), 2, "{all:?}");
    assert!(moves.iter().all(|m| m["status"] == "completed"
        && m["to_worker"] == "worker-1"
        && m["restored_from_checkpoint"] == true));
    // Balanced: a manual rebalance has nothing to do.
    let r = manual_rebalance(&ens).await;
    assert_eq!(r.body["moves"], json!([]), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_rebalance_when_auto_is_off_is_rate_limited() {
    let opts = Opts {
        coord_extra_args: vec![
            "--auto-rebalance=false".into(),
            "--rebalance-max-moves".into(),
            "1".into(),
        ],
        ..heal_opts()
    };
    let mut ens = Ensemble::start(1, 1, opts).await;
    let gid = create_counters(&ens, 0, "manual", &PIPES).await;
    fill(&ens, &gid).await;
    ens.add_worker("worker-1");
    ens.wait_workers_in_status(&["worker-1"], "ready", Duration::from_secs(20))
        .await;
    // Auto rebalance is off: nothing moved on the join.
    assert!(migrations(&ens, 0).await.is_empty());
    let r = manual_rebalance(&ens).await;
    let moves = r.body["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 2, "{}", r.text);
    assert_eq!(r.body["started"], 1, "one move at a time: {}", r.text);
    assert!(moves[0]["migration_id"].is_string() && moves[1]["migration_id"].is_null());
    settled_loads(&ens, &gid).await;
    check_counts_continue(&ens, &gid, &filled_counts()).await;
    let all = migrations(&ens, 0).await;
    assert_eq!(
        all.iter().filter(|m| m["reason"] == "rebalance").count(),
        2,
        "{all:?}"
    );
}
