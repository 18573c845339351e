//! Worker identity (issue 18, attack 1): a worker id is bound to the key it registered with.
//!
//! Before: anyone could re-register a live worker id with a new address (injects and deploys,
//! passwords included, then went to the attacker), drain any worker with a heartbeat
//! `{"draining": true}`, and make the coordinator POST to any URL (an address with a path and
//! query). Now another key for a known id is refused (409 `worker_id_taken`), only an operator
//! takes over a dead id, heartbeats need the worker's own key, addresses are
//! `scheme://host:port` and ids are path-safe (400), and a worker deregisters itself at
//! SIGTERM with its own key (it used to get 401 and stay `draining`).

use crate::harness::{fake_worker, wait_until, Api, Ensemble, Opts, ADMIN_KEY, WORKER_KEY};
use serde_json::{json, Value};
use std::time::Duration;

fn registration(id: &str, key: &str, address: &str) -> Value {
    let mut body = fake_worker(id);
    body["api_key"] = json!(key);
    body["address"] = json!(address);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_id_is_bound_to_its_key() {
    let ens = Ensemble::start(3, 1, Opts::default()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let stranger = Api::new(None);
    let register = |i: usize| ens.cluster_url(i, "/workers/register");

    // A live worker's id with another key: refused, through the follower as on the leader.
    let real = ens.workers[0].id.clone();
    let hijack = registration(&real, "attacker-key", "http://127.0.0.1:9");
    for via in [leader, follower] {
        let r = stranger.post(&register(via), &hijack).await.unwrap();
        r.expect_error(409);
        assert_eq!(r.body["code"], "worker_id_taken", "{:?}", r.body);
        assert!(
            !r.text.contains(WORKER_KEY),
            "the answer must not echo the key"
        );
    }
    // Not even an operator takes over a live id.
    let force = format!("{}?force=true", register(leader));
    ens.api
        .post(&force, &hijack)
        .await
        .unwrap()
        .expect_error(409);
    let view_url = ens.cluster_url(leader, &format!("/workers/{real}"));
    let view = ens.api.get(&view_url).await.unwrap();
    view.expect_ok();
    assert_eq!(view.body["address"], ens.workers[0].url.as_str());
    assert!(!view.text.contains(WORKER_KEY), "views never show the key");

    // A stranger cannot drain the worker or heartbeat for it.
    let hb = ens.cluster_url(follower, &format!("/workers/{real}/heartbeat"));
    let drain = json!({"draining": true});
    for key in [None, Some("attacker-key"), Some(ADMIN_KEY)] {
        let r = Api::new(key).post(&hb, &drain).await.unwrap();
        r.expect_error(401);
    }
    assert_eq!(
        ens.worker_status(leader, &real).await.as_deref(),
        Some("ready")
    );
    // Nor push a checkpoint for it.
    let push = ens.cluster_url(leader, &format!("/workers/{real}/checkpoints"));
    let checkpoint = json!({"epoch": 1, "checkpoint": {
        "pipeline_id": "g-p-0", "events_processed": 1, "version": 1, "state": "{}"}});
    stranger
        .post(&push, &checkpoint)
        .await
        .unwrap()
        .expect_error(401);

    // A fake worker registered with its key re-registers with the same key (a restart, a
    // new address), not with another.
    let fake = "fake-identity";
    let first = registration(fake, "k1", "http://127.0.0.1:9");
    stranger
        .post(&register(follower), &first)
        .await
        .unwrap()
        .expect_status(201);
    let moved = registration(fake, "k1", "http://127.0.0.1:10");
    stranger
        .post(&register(leader), &moved)
        .await
        .unwrap()
        .expect_status(200);
    let other = registration(fake, "k2", "http://127.0.0.1:11");
    stranger
        .post(&register(leader), &other)
        .await
        .unwrap()
        .expect_error(409);

    // Once it is dead (no heartbeats: unhealthy after the heartbeat timeout), only an operator
    // takes the id over; the new key then owns it.
    ens.wait_workers_in_status(&[fake], "unhealthy", Duration::from_secs(20))
        .await;
    stranger
        .post(&register(leader), &other)
        .await
        .unwrap()
        .expect_error(409);
    let stranger_force = format!("{}?force=true", register(leader));
    stranger
        .post(&stranger_force, &other)
        .await
        .unwrap()
        .expect_error(401);
    let with_worker_key = Api::new(Some("k2"));
    with_worker_key
        .post(&force, &other)
        .await
        .unwrap()
        .expect_error(401);
    ens.api
        .post(&force, &other)
        .await
        .unwrap()
        .expect_status(200);
    let hb_fake = ens.cluster_url(leader, &format!("/workers/{fake}/heartbeat"));
    Api::new(Some("k1"))
        .post(&hb_fake, &json!({}))
        .await
        .unwrap()
        .expect_error(401);
    with_worker_key
        .post(&hb_fake, &json!({}))
        .await
        .unwrap()
        .expect_ok();
    // The worker deregisters itself with its own key; a stranger cannot.
    let del = ens.cluster_url(follower, &format!("/workers/{fake}"));
    Api::new(Some("k1"))
        .delete(&del)
        .await
        .unwrap()
        .expect_error(401);
    with_worker_key.delete(&del).await.unwrap().expect_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_and_ids_that_could_be_abused_are_refused() {
    let ens = Ensemble::start(1, 0, Opts::default()).await;
    let url = ens.cluster_url(0, "/workers/register");
    let stranger = Api::new(None);
    for address in [
        "http://127.0.0.1:9000/api/v1/cluster/pipeline-groups?x=",
        "http://169.254.169.254/latest/meta-data/",
        "http://user:pass@127.0.0.1:9000",
        "http://127.0.0.1:9000#frag",
        "file:///etc/passwd",
        "http://127.0.0.1:99999",
    ] {
        let r = stranger
            .post(&url, &registration("ssrf", "k", address))
            .await
            .unwrap();
        r.expect_error(400);
        assert_eq!(r.body["code"], "invalid_worker", "{address}: {:?}", r.body);
    }
    for id in ["..", ".", "a/b", "a b", "a?b", "a%2fb", "a#b"] {
        let r = stranger
            .post(&url, &registration(id, "k", "http://127.0.0.1:9"))
            .await
            .unwrap();
        r.expect_error(400);
    }
    let listed = ens.worker_list(0).await.unwrap_or_default();
    assert!(listed.is_empty(), "nothing was registered: {listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_join_token_strangers_cannot_register_and_workers_leave_cleanly() {
    let token = "join-token-for-tests";
    let opts = Opts {
        coord_extra_args: vec!["--worker-token".into(), token.into()],
        worker_extra_args: vec!["--worker-token".into(), token.into()],
        ..Opts::default()
    };
    let mut ens = Ensemble::start(1, 1, opts).await;
    let url = ens.cluster_url(0, "/workers/register");
    let body = registration("intruder", "k", "http://127.0.0.1:9");
    let r = Api::new(None).post(&url, &body).await.unwrap();
    r.expect_error(401);
    // Even the cluster API key is not a join token.
    ens.api.post(&url, &body).await.unwrap().expect_error(401);

    // SIGTERM: the worker drains, then deregisters itself with its own key (not the cluster's)
    // and disappears from the list instead of staying `draining`.
    let id = ens.workers[0].id.clone();
    ens.workers[0].proc.term();
    let (me, id) = (&ens, id.as_str());
    wait_until(
        "the worker deregistered itself",
        Duration::from_secs(30),
        Duration::from_millis(200),
        move || async move {
            let list = me.worker_list(0).await?;
            (!list.iter().any(|w| w["id"] == id)).then_some(())
        },
    )
    .await;
    let log = ens.workers[0].proc.log_tail(50);
    assert!(log.contains("deregistered"), "{log}");
}
