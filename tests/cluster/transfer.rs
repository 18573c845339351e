//! Leadership transfer (issue 24 item 1, docs/raft.md "Leadership transfer"): on demand through
//! `POST /raft/transfer-leader` and on SIGTERM of the leader, under a steady stream of writes;
//! no acknowledged write is lost and the ensemble converges.

use crate::failover::{quiet_opts, wait_converged};
use crate::harness::{fake_worker, wait_until, Ensemble};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writers registering distinct workers through every coordinator in turn until `stop`; every
/// acknowledged id lands in `acked`. 421/503 and transport errors are retried with a new id.
fn start_writers(
    ens: &Ensemble,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<String>>>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    let api = ens.api.with_timeout(Duration::from_secs(5));
    let n = ens.coords.len();
    (0..6)
        .map(|w| {
            let urls: Vec<String> = (0..n)
                .map(|i| ens.cluster_url(i, "/workers/register"))
                .collect();
            let (api, stop, acked) = (api.clone(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut refused = 0;
                let mut k = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("t-w{w}-{k}");
                    let url = &urls[(w + k) % urls.len()];
                    k += 1;
                    match api.post(url, &fake_worker(&id)).await {
                        Ok(r) if r.ok() => {
                            acked.lock().unwrap().insert(id);
                        }
                        Ok(r) if r.status == 421 || r.status == 503 => refused += 1,
                        Ok(r) => panic!("unexpected answer {}: {}", r.status, r.text),
                        Err(_) => refused += 1,
                    }
                }
                refused
            })
        })
        .collect()
}

async fn transfer(ens: &Ensemble, via: usize, body: Value) -> (u16, Value) {
    let url = format!("{}/raft/transfer-leader", ens.coords[via].url);
    let r = ens
        .api
        .with_timeout(Duration::from_secs(15))
        .post(&url, &body)
        .await
        .expect("transfer-leader answers");
    (r.status, r.body)
}

/// Every worker id coordinator `i` lists, page after page (a page holds at most 1,000).
async fn all_ids(ens: &Ensemble, i: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    loop {
        let url = ens.cluster_url(i, &format!("/workers?limit=1000&offset={}", ids.len()));
        let r = ens.api.get(&url).await.expect("worker list");
        assert!(r.ok(), "worker list: {} {}", r.status, r.text);
        let page = r.body["workers"].as_array().cloned().unwrap_or_default();
        ids.extend(
            page.iter()
                .filter_map(|w| w["id"].as_str().map(str::to_owned)),
        );
        if page.is_empty() || r.body["pagination"]["has_more"] != true {
            return ids;
        }
    }
}

/// Every acknowledged id is listed by every coordinator in `nodes`.
async fn all_acked_everywhere(ens: &Ensemble, nodes: &[usize], acked: &HashSet<String>) {
    for &i in nodes {
        let ids = all_ids(ens, i).await;
        let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains(*id)).collect();
        assert!(
            missing.is_empty(),
            "coordinator {} lost {} acknowledged writes, e.g. {:?}",
            i + 1,
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moves_on_demand_under_writes_without_losing_any() {
    let ens = Ensemble::start(3, 0, quiet_opts()).await;
    let leader = ens.wait_leader(Duration::from_secs(30)).await;
    let follower = ens.others(leader)[0];

    // Refusals: a follower names the leader; an unknown voter; no API key.
    let (status, body) = transfer(&ens, follower, json!({})).await;
    assert_eq!(status, 421, "{body}");
    assert_eq!(body["code"], "not_leader");
    let (status, body) = transfer(&ens, leader, json!({"to": 99})).await;
    assert_eq!(status, 409, "{body}");
    let anonymous = ens.api.with_key(None);
    let url = format!("{}/raft/transfer-leader", ens.coords[leader].url);
    assert_eq!(anonymous.post(&url, &json!({})).await.unwrap().status, 401);
    // Naming the leader itself changes nothing.
    let me = ens.coords[leader].id;
    let (status, body) = transfer(&ens, leader, json!({ "to": me })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["leader_id"].as_u64(), Some(me));

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let writers = start_writers(&ens, stop.clone(), acked.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Let the leader pick the successor.
    let (status, body) = transfer(&ens, leader, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous_leader_id"].as_u64(), Some(me));
    let new_id = body["leader_id"].as_u64().expect("leader_id");
    assert_ne!(new_id, me, "{body}");
    let new_leader = ens.coords.iter().position(|c| c.id == new_id).unwrap();
    let agreed = ens.wait_leader(Duration::from_secs(10)).await;
    assert_eq!(agreed, new_leader);
    tokio::time::sleep(Duration::from_millis(800)).await;

    // And back, naming the target.
    let (status, body) = transfer(&ens, new_leader, json!({ "to": me })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["leader_id"].as_u64(), Some(me), "{body}");
    assert_eq!(ens.wait_leader(Duration::from_secs(10)).await, leader);
    tokio::time::sleep(Duration::from_millis(800)).await;

    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    wait_converged(&ens, &[0, 1, 2], Duration::from_secs(20)).await;
    all_acked_everywhere(&ens, &[0, 1, 2], &acked).await;
    // Two transfers, two leader changes: the group did not hold extra elections.
    let term = ens.metrics(leader).await.unwrap()["current_term"]
        .as_u64()
        .unwrap();
    assert!(
        term <= 5,
        "term {term}: more elections than the two hand-overs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_stopped_with_sigterm_hands_over_first() {
    let mut ens = Ensemble::start(3, 0, quiet_opts()).await;
    let leader = ens.wait_leader(Duration::from_secs(30)).await;
    let survivors = ens.others(leader);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let writers = start_writers(&ens, stop.clone(), acked.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;

    let started = Instant::now();
    ens.coords[leader].proc.term();
    let new_leader = ens
        .wait_leader_among(&survivors, Duration::from_secs(10))
        .await;
    let took = started.elapsed();
    let exited = wait_until(
        "the old leader exits on its own",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let status = ens.coords[leader].proc.exit_status();
            async move { status }
        },
    )
    .await;
    assert!(exited.success(), "exit status {exited:?}");
    let log = ens.coords[leader].proc.log_tail(2000);
    assert!(
        log.contains("leadership handed over before stopping"),
        "no hand-over in the old leader's log (new leader after {took:?}):\n{}",
        ens.coords[leader].proc.log_tail(40)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    wait_converged(&ens, &survivors, Duration::from_secs(20)).await;
    all_acked_everywhere(&ens, &survivors, &acked).await;

    // The stopped node comes back as a follower of the new leader and converges.
    ens.restart_coord(leader);
    ens.wait_ready(leader, Duration::from_secs(30)).await;
    assert_eq!(ens.wait_leader(Duration::from_secs(10)).await, new_leader);
    wait_converged(&ens, &[0, 1, 2], Duration::from_secs(30)).await;
    all_acked_everywhere(&ens, &[leader], &acked).await;
}
