//! Guarantees 1 and 2 of DESIGN.md: a write acknowledged before a `kill -9` of the leader is
//! on every survivor, the survivors elect a new leader and accept writes, and the killed node,
//! restarted on its data dir, converges to the same state hash.

use crate::harness::{fake_worker, wait_until, Ensemble, Opts};
use std::collections::HashSet;
use std::time::Duration;

/// Options where fake workers (which never heartbeat) stay `ready` for the whole test, so
/// no state transition races the convergence check.
pub fn quiet_opts() -> Opts {
    Opts {
        heartbeat_timeout: 600.0,
        ..Opts::default()
    }
}

/// Ids listed by coordinator `i`, or None if it does not answer.
pub async fn ids_on(ens: &Ensemble, i: usize) -> Option<HashSet<String>> {
    let list = ens.worker_list(i).await?;
    Some(
        list.iter()
            .filter_map(|w| w["id"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// Registers a fake worker through coordinator `via`, retrying (bounded) while the cluster
/// answers 421/503 or the connection fails (an election is in progress).
pub async fn register_retrying(ens: &Ensemble, via: usize, id: &str, timeout: Duration) {
    let url = ens.cluster_url(via, "/workers/register");
    let body = fake_worker(id);
    let (url, body) = (&url, &body);
    let api = ens.api.with_timeout(Duration::from_secs(5));
    let api = &api;
    wait_until(
        &format!("write {id} through coordinator {}", via + 1),
        timeout,
        Duration::from_millis(50),
        || async move {
            match api.post(url, body).await {
                Ok(r) if r.ok() => Some(()),
                Ok(r)
                    if r.status == 421 || r.status == 503 || r.status == 502 || r.status == 504 =>
                {
                    None
                }
                Ok(r) => panic!("unexpected answer {}: {}", r.status, r.text),
                Err(_) => None,
            }
        },
    )
    .await
}

pub use crate::harness::wait_converged;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_keeps_acked_writes_and_restarted_node_converges() {
    let mut ens = Ensemble::start(3, 0, quiet_opts()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let old_term = ens.metrics(leader).await.unwrap()["current_term"]
        .as_u64()
        .unwrap();

    // Acknowledged writes, half through the leader, half proxied by a follower.
    let mut acked = HashSet::new();
    for n in 0..20 {
        let via = if n % 2 == 0 { leader } else { follower };
        let id = format!("acked-{n:02}");
        let r = ens
            .api
            .post(
                &ens.cluster_url(via, "/workers/register"),
                &fake_worker(&id),
            )
            .await
            .unwrap();
        r.expect_ok();
        acked.insert(id);
    }

    // kill -9 the leader right after the last acknowledgement.
    ens.coords[leader].proc.kill();
    let survivors = ens.others(leader);
    let new_leader = ens
        .wait_leader_among(&survivors, Duration::from_secs(20))
        .await;
    assert_ne!(new_leader, leader);
    let new_term = ens.metrics(new_leader).await.unwrap()["current_term"]
        .as_u64()
        .unwrap();
    assert!(
        new_term > old_term,
        "term did not advance: {old_term} -> {new_term}"
    );

    for &s in &survivors {
        let (me, acked) = (&ens, &acked);
        wait_until(
            &format!("acked writes on survivor {}", s + 1),
            Duration::from_secs(10),
            Duration::from_millis(100),
            || async move {
                let ids = ids_on(me, s).await?;
                acked.is_subset(&ids).then_some(())
            },
        )
        .await;
    }

    // The next write through a survivor that is not the leader succeeds (proxied).
    let other = survivors
        .iter()
        .copied()
        .find(|&s| s != new_leader)
        .unwrap();
    register_retrying(&ens, other, "after-failover", Duration::from_secs(15)).await;
    acked.insert("after-failover".into());

    // Restart the killed node on its data dir: it converges.
    ens.restart_coord(leader);
    ens.wait_ready(leader, Duration::from_secs(30)).await;
    let all = [0, 1, 2];
    let (applied, hash) = wait_converged(&ens, &all, Duration::from_secs(30)).await;
    assert!(!hash.is_empty());
    assert!(applied > 0);
    let ids = ids_on(&ens, leader).await.unwrap();
    assert!(
        acked.is_subset(&ids),
        "restarted node misses writes: {:?}",
        acked.difference(&ids)
    );
}
