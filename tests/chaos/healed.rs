//! A follower cut off from its peers and then healed must not depose a healthy leader
//! (issue 24 item 2, pre-vote; docs/raft.md "Elections: pre-vote").
//!
//! While cut off, the follower hears from no leader and keeps asking for pre-votes; none is
//! answered, so it never raises its term. After the heal, the leader and the term are the
//! ones from before the cut, on every node, and writes keep flowing. Without pre-vote the
//! follower's own election timer raised its term many times over, and the first exchange
//! after the heal made the leader step down.

use crate::harness::{fake_worker, Ensemble, NetLayout, Opts};
use crate::netns;
use std::time::Duration;

/// The term and leader id every answering coordinator reports, if they agree.
async fn agreed_term_and_leader(ens: &Ensemble) -> Option<(u64, u64)> {
    let mut seen = None;
    for i in 0..ens.coords.len() {
        let m = ens.metrics(i).await?;
        let pair = (m["current_term"].as_u64()?, m["current_leader"].as_u64()?);
        match seen {
            None => seen = Some(pair),
            Some(p) if p == pair => {}
            Some(_) => return None,
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healed_follower_does_not_depose_the_leader() {
    netns::cleanup_stale();
    let net = match netns::probe().and_then(|()| netns::Net::setup(3)) {
        Ok(net) => net,
        Err(why) => {
            eprintln!("SKIPPED: network namespaces unavailable: {why}");
            return;
        }
    };
    let layout = NetLayout {
        coords: (0..3)
            .map(|i| (net.nodes[i].addr.clone(), net.exec_prefix(i)))
            .collect(),
        worker_host: Some(net.host_addr.clone()),
        ..NetLayout::default()
    };
    // The product's Raft timings (heartbeat 50 ms, lease 250 ms): the cut lasts more than ten
    // pre-vote silences.
    let ens = Ensemble::start_in(3, 0, Opts::default(), &layout).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let register = |id: &str| {
        let (api, url, body) = (
            ens.api.clone(),
            ens.cluster_url(leader, "/workers/register"),
            fake_worker(id),
        );
        async move { api.post(&url, &body).await }
    };
    register("before-cut").await.expect("write").expect_ok();
    let before =
        crate::harness::try_wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            agreed_term_and_leader(&ens)
        })
        .await
        .expect("all three agree on a term and a leader");

    net.split_off(follower).expect("cut the follower off");
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The majority side kept its leader and its term, and commits.
    register("during-cut").await.expect("write").expect_ok();
    let leader_side = ens.metrics(leader).await.expect("leader metrics");
    assert_eq!(leader_side["current_term"].as_u64(), Some(before.0));
    let cut_side = ens.metrics(follower).await;
    if let Some(m) = &cut_side {
        assert_eq!(
            m["current_term"].as_u64(),
            Some(before.0),
            "the cut-off follower raised its term: {m}"
        );
    }
    net.unsplit(follower).expect("heal");

    // Give the healed follower every chance to disrupt: several silences, then check.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after =
        crate::harness::try_wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            agreed_term_and_leader(&ens)
        })
        .await
        .expect("all three agree on a term and a leader after the heal");
    assert_eq!(
        after, before,
        "the healed follower changed the term or the leader (before {before:?}, after {after:?})"
    );
    register("after-heal").await.expect("write").expect_ok();
    drop(ens);
    drop(net);
}
