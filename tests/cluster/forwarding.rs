//! Issue 24 item 3: a follower batches concurrent forwards into few leader calls
//! (`POST /raft/forward-batch`), and every client still gets its own answer: its own status and
//! error code (201, 409 `connector_exists`, 400), and read-your-writes on the follower.

use crate::harness::{Ensemble, Opts};
use serde_json::json;
use std::time::Duration;

/// A counter of the follower's Prometheus text.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

fn connector(name: &str) -> serde_json::Value {
    json!({"name": name, "connector_type": "mqtt",
        "params": {"host": "localhost", "port": 1883}, "description": "batched"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_forwards_share_leader_calls_and_keep_their_own_answers() {
    let ens = Ensemble::start(3, 0, Opts::default()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let url = ens.cluster_url(follower, "/connectors");
    // An existing name: every concurrent create of it must answer 409 `connector_exists`.
    ens.api
        .post(&ens.cluster_url(leader, "/connectors"), &connector("taken"))
        .await
        .expect("create")
        .expect_ok();

    let mut tasks = Vec::new();
    for i in 0..96 {
        let (api, url) = (ens.api.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = match i % 3 {
                0 => api.post(&url, &connector(&format!("fresh_{i}"))).await,
                1 => api.post(&url, &connector("taken")).await,
                _ => {
                    api.post_raw(&url, b"{not json".to_vec(), "application/json")
                        .await
                }
            };
            (i, r.expect("answer"))
        }));
    }
    for task in tasks {
        let (i, r) = task.await.expect("client");
        match i % 3 {
            0 => assert_eq!(r.status, 201, "fresh_{i}: {}", r.text),
            1 => {
                assert_eq!(r.status, 409, "duplicate {i}: {}", r.text);
                assert_eq!(r.body["code"], "connector_exists", "{}", r.text);
            }
            _ => {
                assert_eq!(r.status, 400, "malformed {i}: {}", r.text);
                assert_eq!(r.body["code"], "bad_request", "{}", r.text);
            }
        }
    }
    // Read-your-writes: every create is visible on the follower it went through, at once.
    for i in (0..96).step_by(3) {
        let r = ens
            .api
            .get(&ens.cluster_url(follower, &format!("/connectors/fresh_{i}")))
            .await
            .expect("read");
        assert_eq!(r.status, 200, "fresh_{i} not on the follower: {}", r.text);
    }
    let metrics = ens
        .api
        .get(&format!("{}/metrics", ens.coords[follower].url))
        .await
        .expect("metrics");
    let proxied = counter(&metrics.text, "varpulis_coordinator_proxied_requests_total");
    let batches = counter(&metrics.text, "varpulis_coordinator_forward_batches_total");
    eprintln!("follower: {proxied} forwards in {batches} leader calls");
    assert!(proxied >= 96, "{proxied} forwards counted");
    assert!(
        batches > 0 && batches < proxied,
        "{proxied} forwards took {batches} leader calls: not batched"
    );
}
