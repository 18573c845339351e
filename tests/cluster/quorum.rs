//! Guarantee 3 of DESIGN.md from outside: a node that lost its quorum refuses writes
//! (503, or 421 when it still knows an unreachable leader) but keeps serving reads; once the
//! quorum is back, writes succeed again.

use crate::failover::{ids_on, quiet_opts, register_retrying};
use crate::harness::{fake_worker, wait_until, Ensemble};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_refuses_writes_but_serves_reads() {
    let mut ens = Ensemble::start(3, 0, quiet_opts()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let r = ens
        .api
        .post(
            &ens.cluster_url(leader, "/workers/register"),
            &fake_worker("before"),
        )
        .await
        .unwrap();
    r.expect_ok();

    let followers = ens.others(leader);
    for &f in &followers {
        ens.coords[f].proc.kill();
    }

    // Writes on the lone node are refused with a JSON error (bounded: a leader may first try
    // to commit before giving up).
    let api = ens.api.with_timeout(Duration::from_secs(20));
    let url = ens.cluster_url(leader, "/workers/register");
    let body = fake_worker("during-minority");
    let (api_ref, url_ref, body_ref) = (&api, &url, &body);
    let refused = wait_until(
        "write refused without quorum",
        Duration::from_secs(45),
        Duration::from_millis(200),
        || async move {
            match api_ref.post(url_ref, body_ref).await {
                Ok(r) if r.status == 503 || r.status == 421 => Some(r),
                Ok(r) if r.ok() => panic!("write acknowledged without a quorum: {}", r.text),
                Ok(r) => panic!("unexpected answer {}: {}", r.status, r.text),
                Err(_) => None,
            }
        },
    )
    .await;
    refused.expect_error(refused.status);
    if refused.status == 503 {
        assert!(
            refused.retry_after.is_some(),
            "503 without Retry-After: {}",
            refused.text
        );
    } else {
        assert_eq!(refused.body["code"], "not_leader", "{}", refused.text);
    }

    // Reads are still served locally.
    let r = ens
        .api
        .get(&ens.cluster_url(leader, "/workers"))
        .await
        .unwrap();
    r.expect_status(200);
    let ids = ids_on(&ens, leader).await.unwrap();
    assert!(ids.contains("before"), "{ids:?}");
    let h = ens
        .api
        .get(&format!("{}/health", ens.coords[leader].url))
        .await
        .unwrap();
    h.expect_status(200);

    // Quorum back: writes succeed again through the node that was alone.
    for &f in &followers {
        ens.restart_coord(f);
    }
    ens.wait_leader(Duration::from_secs(30)).await;
    register_retrying(&ens, leader, "after-quorum", Duration::from_secs(20)).await;
    let ids = ids_on(&ens, leader).await.unwrap();
    assert!(
        ids.contains("before") && ids.contains("after-quorum"),
        "{ids:?}"
    );
}

/// A frozen leader (SIGSTOP) is replaced; when it resumes it follows the new leader and the
/// cluster converges: no write is lost and no second leader appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_leader_is_replaced_and_follows_after_resume() {
    let mut ens = Ensemble::start(3, 0, quiet_opts()).await;
    let old = ens.wait_leader(Duration::from_secs(20)).await;
    let r = ens
        .api
        .post(
            &ens.cluster_url(old, "/workers/register"),
            &fake_worker("pre-freeze"),
        )
        .await
        .unwrap();
    r.expect_ok();

    ens.coords[old].proc.stop();
    let others = ens.others(old);
    let new = ens
        .wait_leader_among(&others, Duration::from_secs(20))
        .await;
    assert_ne!(new, old);
    register_retrying(&ens, others[0], "while-frozen", Duration::from_secs(15)).await;

    ens.coords[old].proc.cont();
    // It may lead again later, but only through an election: all three agree on one leader.
    ens.wait_leader(Duration::from_secs(20)).await;
    crate::failover::wait_converged(&ens, &[0, 1, 2], Duration::from_secs(20)).await;
    let ids = ids_on(&ens, old).await.unwrap();
    assert!(
        ids.contains("pre-freeze") && ids.contains("while-frozen"),
        "{ids:?}"
    );
    // Writes through the resumed node are proxied to the new leader.
    register_retrying(&ens, old, "after-resume", Duration::from_secs(15)).await;
}

/// Issue 23 item 4: a leader whose two followers were stopped keeps the `Leader` role in
/// openraft, but `/ready` stops answering 200 within a few election timeouts (it has not heard
/// from a quorum), and says why; `/health` still answers (the process is alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_quorum_is_not_ready() {
    let mut ens = Ensemble::start(3, 0, quiet_opts()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    ens.wait_ready(leader, Duration::from_secs(20)).await;
    for f in ens.others(leader) {
        ens.coords[f].proc.kill();
    }
    let started = std::time::Instant::now();
    let url = format!("{}/ready", ens.coords[leader].url);
    let (api, url_ref) = (&ens.api, &url);
    let not_ready = wait_until(
        "/ready 503 on the leader that lost its quorum",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move {
            match api.get(url_ref).await {
                Ok(r) if r.status == 503 => Some(r),
                _ => None,
            }
        },
    )
    .await;
    eprintln!("not ready after {:?}", started.elapsed());
    assert_eq!(not_ready.body["code"], "not_ready", "{}", not_ready.text);
    assert_eq!(not_ready.body["ready"], false, "{}", not_ready.text);
    assert_eq!(not_ready.body["quorum"], false, "{}", not_ready.text);
    let health = ens
        .api
        .get(&format!("{}/health", ens.coords[leader].url))
        .await
        .expect("health");
    assert_eq!(health.status, 200, "{}", health.text);
}
