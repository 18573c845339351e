//! `/raft/*` against a caller who holds the cluster API key but not the peer secret, and
//! against absurd terms (issue 18, attack 3).
//!
//! Before: with the API key, a forged `/raft/append` to one follower was applied there only
//! (its state hash differed forever), and a vote for term `u64::MAX` moved the cluster to that
//! term, after which the next leader loss made both other nodes panic in openraft.

use crate::common::{
    log_id, raft_state, raw_post, registration_entry, term, vote, wait_converged, Writer,
};
use crate::harness::{fake_worker, wait_until, Ensemble, Opts, ADMIN_KEY, PEER_SECRET};
use serde_json::json;
use std::time::Duration;

const SECRET_HEADER: &str = "x-varpulis-peer-secret";

/// Fake workers stay `ready` for the whole test: no status change races the checks.
fn quiet() -> Opts {
    Opts {
        heartbeat_timeout: 600.0,
        ..Opts::default()
    }
}

async fn register(ens: &Ensemble, via: usize, id: &str) {
    ens.api
        .post(&ens.cluster_url(via, "/workers/register"), &fake_worker(id))
        .await
        .expect("register")
        .expect_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_append_with_the_api_key_is_refused_and_states_stay_identical() {
    let ens = Ensemble::start(3, 0, quiet()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    for i in 0..5 {
        register(&ens, leader, &format!("real-{i}")).await;
    }
    let all = [0, 1, 2];
    wait_converged(&ens, &all, Duration::from_secs(20)).await;
    let leader_id = ens.coords[leader].id;
    let terms: Vec<u64> = futures_terms(&ens).await;

    for &target in &ens.others(leader) {
        let (t, last, _, _) = raft_state(&ens, target).await.expect("metrics");
        let forged = json!({
            "vote": vote(t, leader_id, true),
            "prev_log_id": log_id(t, leader_id, last),
            "entries": [registration_entry(t, leader_id, last + 1, "forged-worker")],
            "leader_commit": log_id(t, leader_id, last + 1),
        });
        let url = &ens.coords[target].url;
        for headers in [
            vec![],
            vec![("x-api-key", ADMIN_KEY)],
            vec![(SECRET_HEADER, "not-the-secret")],
            vec![("x-api-key", ADMIN_KEY), (SECRET_HEADER, "peer-secret-")],
        ] {
            let (status, body) = raw_post(url, "/raft/append", &headers, &forged).await;
            assert_eq!(status, 401, "{headers:?}: {body}");
            assert_eq!(body["code"], "unauthorized", "{body}");
        }
        // With the secret, a sender that is not a member is refused too (and the request did
        // parse: the refusal comes from the membership check, after decoding).
        let stranger = json!({
            "vote": vote(t, 99, true),
            "prev_log_id": log_id(t, leader_id, last),
            "entries": [registration_entry(t, 99, last + 1, "forged-worker")],
            "leader_commit": null,
        });
        let (status, body) = raw_post(
            url,
            "/raft/append",
            &[(SECRET_HEADER, PEER_SECRET)],
            &stranger,
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["code"], "not_a_member", "{body}");
        // Entries with a gap are refused before openraft sees them.
        let gap = json!({
            "vote": vote(t, leader_id, true),
            "prev_log_id": log_id(t, leader_id, last),
            "entries": [registration_entry(t, leader_id, last + 7, "forged-worker")],
            "leader_commit": null,
        });
        let (status, body) =
            raw_post(url, "/raft/append", &[(SECRET_HEADER, PEER_SECRET)], &gap).await;
        assert_eq!(status, 400, "{body}");
    }

    // A real write after the attack: every node holds the same state, without the forged worker.
    register(&ens, leader, "after").await;
    wait_converged(&ens, &all, Duration::from_secs(20)).await;
    for i in all {
        let ids: Vec<String> = ens
            .worker_list(i)
            .await
            .expect("worker list")
            .iter()
            .filter_map(|w| w["id"].as_str().map(str::to_owned))
            .collect();
        assert!(
            !ids.iter().any(|id| id == "forged-worker"),
            "node {i}: {ids:?}"
        );
        assert!(ids.iter().any(|id| id == "after"), "node {i}: {ids:?}");
    }
    assert_eq!(futures_terms(&ens).await, terms, "no election happened");
}

async fn futures_terms(ens: &Ensemble) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..ens.coords.len() {
        out.push(term(ens, i).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_bomb_is_refused_and_a_later_failover_elects_a_leader() {
    let mut ens = Ensemble::start(3, 0, quiet()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    register(&ens, leader, "before").await;
    wait_converged(&ens, &[0, 1, 2], Duration::from_secs(20)).await;
    let terms = futures_terms(&ens).await;
    let base = terms[leader];

    for target in 0..3 {
        let url = &ens.coords[target].url;
        for candidate in 1..=3u64 {
            let bomb = json!({
                "vote": vote(u64::MAX, candidate, false),
                "last_log_id": log_id(u64::MAX, candidate, u64::MAX),
            });
            let (status, body) =
                raw_post(url, "/raft/vote", &[("x-api-key", ADMIN_KEY)], &bomb).await;
            assert_eq!(status, 401, "API key alone: {body}");
            let (status, body) =
                raw_post(url, "/raft/vote", &[(SECRET_HEADER, PEER_SECRET)], &bomb).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["code"], "term_out_of_range", "{body}");
        }
        let append_bomb = json!({
            "vote": vote(u64::MAX, ens.coords[leader].id, true),
            "prev_log_id": null,
            "entries": [],
            "leader_commit": null,
        });
        let (status, body) = raw_post(
            url,
            "/raft/append",
            &[(SECRET_HEADER, PEER_SECRET)],
            &append_bomb,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "term_out_of_range", "{body}");
    }
    assert_eq!(
        futures_terms(&ens).await,
        terms,
        "the cluster kept its term"
    );

    // Lose the leader: the survivors elect a new one at a normal term, without panicking.
    ens.coords[leader].proc.kill();
    let survivors = ens.others(leader);
    let new_leader = ens
        .wait_leader_among(&survivors, Duration::from_secs(20))
        .await;
    let writer = Writer::start(&ens.api, &ens.coords[new_leader].url);
    writer.wait_progress(5, Duration::from_secs(20)).await;
    let stats = writer.finish().await;
    assert!(stats.failed.is_empty(), "{:?}", stats.failed);
    let new_term = term(&ens, new_leader).await;
    assert!(
        new_term > base && new_term < base + 100,
        "term {base} -> {new_term}"
    );
    for &i in &survivors {
        assert!(ens.coords[i].proc.is_up(), "coordinator {} died", i + 1);
        let logs = ens.coords[i].proc.log_tail(400);
        assert!(
            !logs.contains("panicked"),
            "coordinator {} panicked:\n{logs}",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_peer_secret_the_api_key_still_opens_raft_rpcs_with_a_warning() {
    // Existing deployments keep working: no --peer-secret, the API key guards /raft/*.
    let open = Ensemble::start(
        1,
        0,
        Opts {
            peer_secret: None,
            ..quiet()
        },
    )
    .await;
    let url = &open.coords[0].url;
    let stranger = json!({"vote": vote(3, 99, false), "last_log_id": null});
    let (status, body) = raw_post(url, "/raft/vote", &[], &stranger).await;
    assert_eq!(status, 401, "{body}");
    // Past authentication (the refusal is the membership check's).
    let (status, body) = raw_post(url, "/raft/vote", &[("x-api-key", ADMIN_KEY)], &stranger).await;
    assert_eq!(status, 403, "{body}");
    let c = &open.coords[0];
    wait_until(
        "start-up warning about the missing peer secret",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move {
            c.proc
                .log_tail(200)
                .contains("no --peer-secret set")
                .then_some(())
        },
    )
    .await;

    // With a peer secret: the API key no longer opens the peer RPCs, the secret does; admin
    // calls keep taking the API key (and only it); metrics stay open; no warning.
    let closed = Ensemble::start(1, 0, quiet()).await;
    let url = &closed.coords[0].url;
    let (status, _) = raw_post(url, "/raft/vote", &[("x-api-key", ADMIN_KEY)], &stranger).await;
    assert_eq!(status, 401);
    let (status, body) = raw_post(
        url,
        "/raft/vote",
        &[(SECRET_HEADER, PEER_SECRET)],
        &stranger,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let learner = json!({"node_id": 7, "address": "http://127.0.0.1:9"});
    let (status, _) = raw_post(
        url,
        "/raft/add-learner",
        &[(SECRET_HEADER, PEER_SECRET)],
        &learner,
    )
    .await;
    assert_eq!(status, 401, "the peer secret is not an admin credential");
    let r = reqwest::get(format!("{url}/raft/metrics"))
        .await
        .expect("metrics");
    assert_eq!(r.status().as_u16(), 200);
    assert!(!closed.coords[0]
        .proc
        .log_tail(200)
        .contains("no --peer-secret"));
    // Writes work: the node's own Raft traffic carries the secret.
    register(&closed, 0, "w").await;
}
