//! `varpulis coordinator --join`: a brand-new coordinator with an empty data dir joins a running
//! three-node group through a follower, becomes a voter with the whole state, and is needed for
//! the quorum once one of the original three is killed; restarting it does not join twice.

use crate::failover::{ids_on, quiet_opts, register_retrying};
use crate::harness::{coordinator_args, free_port, wait_until, Coordinator, Ensemble, Proc};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Voter ids as reported by coordinator `i`.
async fn voters(ens: &Ensemble, i: usize) -> Option<BTreeSet<u64>> {
    let m: Value = ens.metrics(i).await?;
    Some(
        m["membership"]
            .as_array()?
            .iter()
            .filter_map(Value::as_u64)
            .collect(),
    )
}

/// Waits until every coordinator in `among` reports exactly `expected` as voters.
async fn wait_voters(ens: &Ensemble, among: &[usize], expected: &BTreeSet<u64>) {
    wait_until(
        &format!("voters {expected:?} on {among:?}"),
        WAIT,
        Duration::from_millis(100),
        || async move {
            for &i in among {
                if voters(ens, i).await.as_ref() != Some(expected) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fourth_coordinator_joins_takes_part_in_quorum_and_rejoins_idempotently() {
    let mut ens = Ensemble::start(3, 0, quiet_opts()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    for n in 0..5 {
        register_retrying(&ens, leader, &format!("before-join-{n}"), WAIT).await;
    }

    // Node 4: empty data dir, no peer list, joins through a follower (which redirects the
    // admin calls to the leader).
    let follower = ens.others(leader)[0];
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let data_dir = tempfile::Builder::new()
        .prefix("varpulis-coord-")
        .tempdir()
        .expect("tempdir");
    let mut args = coordinator_args(
        &ens.opts,
        port,
        4,
        std::slice::from_ref(&url),
        data_dir.path(),
    );
    args.extend([
        "--raft-node-id".to_owned(),
        "4".to_owned(),
        "--join".to_owned(),
        ens.coords[follower].url.clone(),
    ]);
    let proc = Proc::spawn("coord-4", args, ens.log_dir());
    ens.coords.push(Coordinator {
        id: 4,
        port,
        url,
        data_dir,
        proc,
    });
    let joined = 3;
    let all4: BTreeSet<u64> = [1, 2, 3, 4].into();
    wait_voters(&ens, &[0, 1, 2, joined], &all4).await;

    // The newcomer has the state written before it existed.
    let ens_ref = &ens;
    wait_until(
        "pre-join writes on the new node",
        WAIT,
        Duration::from_millis(100),
        || async move {
            let ids = ids_on(ens_ref, joined).await?;
            (0..5)
                .all(|n| ids.contains(&format!("before-join-{n}")))
                .then_some(())
        },
    )
    .await;

    // Kill one of the original three: with four voters the quorum is three, so every write
    // from now on needs the new node's vote and log.
    let leader = ens.wait_leader(WAIT).await;
    let victim = if leader == joined { 0 } else { leader };
    ens.coords[victim].proc.kill();
    register_retrying(&ens, joined, "after-kill", WAIT).await;
    let survivors: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
    let ens_ref = &ens;
    for &i in &survivors {
        wait_until(
            "write after the kill everywhere",
            WAIT,
            Duration::from_millis(100),
            || async move {
                ids_on(ens_ref, i)
                    .await?
                    .contains("after-kill")
                    .then_some(())
            },
        )
        .await;
    }

    // Restarting the newcomer on its data dir: it is already a voter, nothing changes.
    ens.coords[joined].proc.kill();
    ens.restart_coord(joined);
    ens.wait_ready(joined, WAIT).await;
    wait_voters(&ens, &survivors, &all4).await;
    register_retrying(&ens, joined, "after-restart", WAIT).await;
    assert!(
        ens.coords[joined].proc.is_up(),
        "the restarted node exited:\n{}",
        ens.coords[joined].proc.log_tail(40)
    );
}
