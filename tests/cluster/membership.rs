//! Membership changes against a leader that just removed itself (docs/raft.md, "Membership"):
//! the removed node refuses further changes with 503 (or names the new leader with 421) until
//! the caller reaches the new leader, its Raft core keeps running, and it can be added back.

use crate::failover::{quiet_opts, register_retrying};
use crate::harness::{wait_until, Ensemble};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// Voters and learners as reported by coordinator `i`.
async fn members(ens: &Ensemble, i: usize) -> Option<(BTreeSet<u64>, BTreeSet<u64>)> {
    let m: Value = ens.metrics(i).await?;
    let ids = |key: &str| -> Option<BTreeSet<u64>> {
        Some(
            m[key]
                .as_array()?
                .iter()
                .filter_map(Value::as_u64)
                .collect(),
        )
    };
    Some((ids("membership")?, ids("learners")?))
}

/// Posts `body` to `path` on every coordinator in turn until one answers 2xx.
async fn admin_anywhere(ens: &Ensemble, path: &str, body: &Value) -> Value {
    let api = ens.api.with_timeout(Duration::from_secs(30));
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        for c in &ens.coords {
            match api.post(&format!("{}{path}", c.url), body).await {
                Ok(r) if r.ok() => return r.body,
                Ok(r) => last = format!("{}: {} {}", c.url, r.status, r.text),
                Err(e) => last = format!("{}: {e}", c.url),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut views = String::new();
    for i in 0..ens.coords.len() {
        views.push_str(&format!("\n{i}: {:?}", ens.metrics(i).await));
    }
    panic!("{path} never succeeded; last answer: {last}; metrics:{views}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_leader_refuses_membership_changes_and_can_be_added_back() {
    let ens = Ensemble::start(3, 0, quiet_opts()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let id = ens.coords[leader].id;
    let url = ens.coords[leader].url.clone();
    let api = ens.api.with_timeout(Duration::from_secs(30));

    // The leader removes itself: it answers once it is a learner and no longer leads.
    let r = api
        .post(
            &format!("{url}/raft/remove-node"),
            &json!({ "node_id": id, "force": false }),
        )
        .await
        .expect("remove-node answers");
    assert!(r.ok(), "remove-node: {} {}", r.status, r.text);

    // At once, hammer the removed node with membership changes. Each answer is a success
    // (served by the new leader behind a proxy), a 421 naming the leader or a 503 to retry:
    // never a crash of the node's Raft core.
    let others: Vec<u64> = ens
        .coords
        .iter()
        .map(|c| c.id)
        .filter(|&n| n != id)
        .collect();
    let changes = [
        (
            "/raft/remove-node",
            json!({ "node_id": id, "force": false }),
        ),
        (
            "/raft/add-learner",
            json!({ "node_id": id, "address": url, "force": true }),
        ),
        (
            "/raft/change-membership",
            json!({ "members": others, "force": false }),
        ),
    ];
    let hammer = Instant::now();
    let mut statuses = BTreeSet::new();
    while hammer.elapsed() < Duration::from_secs(2) {
        for (path, body) in &changes {
            let r = api
                .post(&format!("{url}{path}"), body)
                .await
                .expect("the removed node keeps answering");
            assert!(
                r.ok() || r.status == 421 || r.status == 503 || r.status == 409,
                "{path}: {} {}",
                r.status,
                r.text
            );
            assert!(
                !r.text.contains("fatal"),
                "{path}: the Raft core stopped: {}",
                r.text
            );
            statuses.insert(r.status);
        }
    }

    // Back to a clean three-voter membership through whoever leads now.
    admin_anywhere(
        &ens,
        "/raft/add-learner",
        &json!({ "node_id": id, "address": url, "force": false }),
    )
    .await;
    let all: BTreeSet<u64> = ens.coords.iter().map(|c| c.id).collect();
    let voters: Vec<u64> = all.iter().copied().collect();
    admin_anywhere(
        &ens,
        "/raft/change-membership",
        &json!({ "members": voters, "force": false }),
    )
    .await;
    let ens_ref = &ens;
    let all_ref = &all;
    for i in 0..ens.coords.len() {
        wait_until(
            &format!("coordinator {i} sees voters {all:?} and no learner (statuses {statuses:?})"),
            WAIT,
            Duration::from_millis(100),
            || async move {
                let (v, l) = members(ens_ref, i).await?;
                (v == *all_ref && l.is_empty()).then_some(())
            },
        )
        .await;
    }
    // The node that was removed and re-added takes writes again (its core is alive).
    register_retrying(&ens, leader, "after-readd", WAIT).await;
}
