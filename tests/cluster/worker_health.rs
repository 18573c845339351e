//! Guarantee 4 of DESIGN.md (detection part) in Raft mode: a worker killed with SIGKILL is
//! marked `unhealthy` within heartbeat-timeout + sweep interval (+ slack for a loaded CI
//! machine), on the leader and the followers; restarted, it is `ready` again.

use crate::harness::{wait_until, Ensemble, Opts};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_is_marked_unhealthy_then_ready_again() {
    let opts = Opts::default();
    let bound = Duration::from_secs_f64(opts.heartbeat_timeout + opts.sweep_interval + 5.0);
    let mut ens = Ensemble::start(3, 1, opts).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let id = ens.workers[0].id.clone();

    ens.workers[0].proc.kill();
    let killed_at = Instant::now();
    let (me, wid) = (&ens, id.as_str());
    for i in [leader, ens.others(leader)[0], ens.others(leader)[1]] {
        wait_until(
            &format!("{wid} unhealthy on coordinator {}", i + 1),
            bound.saturating_sub(killed_at.elapsed()),
            Duration::from_millis(100),
            || async move { (me.worker_status(i, wid).await? == "unhealthy").then_some(()) },
        )
        .await;
    }
    eprintln!(
        "worker marked unhealthy everywhere {:?} after SIGKILL",
        killed_at.elapsed()
    );
    let h = ens
        .api
        .get(&format!("{}/health", ens.coords[leader].url))
        .await
        .unwrap();
    assert_eq!(h.body["workers"]["unhealthy"], 1, "{}", h.text);

    ens.workers[0].proc.restart();
    let me = &ens;
    wait_until(
        &format!("{wid} ready again"),
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async move { (me.worker_status(leader, wid).await? == "ready").then_some(()) },
    )
    .await;
    let h = ens
        .api
        .get(&format!("{}/health", ens.coords[leader].url))
        .await
        .unwrap();
    assert_eq!(h.body["workers"]["ready"], 1, "{}", h.text);
    assert_eq!(h.body["workers"]["unhealthy"], 0, "{}", h.text);
}
