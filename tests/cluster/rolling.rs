//! Rolling updates (issue 11): a running count keeps counting across an update while events
//! flow (no event lost or processed twice), a broken or state-incompatible update changes
//! nothing, rollback returns to an earlier spec as a new version, and a leader killed in the
//! middle of an update leaves one consistent version on every coordinator.

use crate::harness::{wait_until, Ensemble, Opts};
use crate::migration::{counter, create_counters, group_view};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The counter with outputs marked by `tag` (same state shape: same variable and stream).
fn tagged_counter(event: &str, tag: i64) -> String {
    counter(event).replace(
        "emit Count(n: count, v: v)",
        &format!("emit Count(n: count, v: {tag})"),
    )
}

async fn put(ens: &Ensemble, via: usize, gid: &str, body: &Value) -> crate::harness::Resp {
    ens.api
        .with_timeout(Duration::from_secs(60))
        .send(
            reqwest::Method::PUT,
            &ens.cluster_url(via, &format!("/pipeline-groups/{gid}")),
            Some((serde_json::to_vec(body).unwrap(), "application/json")),
        )
        .await
        .unwrap()
}

/// Injects one Tick and returns the `Count` output's `(n, v)`.
async fn tick(ens: &Ensemble, via: usize, gid: &str, value: i64) -> (i64, i64) {
    let r = ens
        .api
        .post(
            &ens.cluster_url(via, &format!("/pipeline-groups/{gid}/inject")),
            &json!({"event_type": "Tick", "fields": {"value": value}}),
        )
        .await
        .unwrap();
    assert!(r.ok(), "inject {value}: {} {}", r.status, r.text);
    let out = &r.body["worker_response"]["output_events"][0];
    (
        out["fields"]["n"].as_i64().unwrap(),
        out["fields"]["v"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn rolling_updates_keep_state_lose_nothing_and_roll_back() {
    let ens = Arc::new(Ensemble::start(1, 1, Opts::default()).await);
    let gid = create_counters(&ens, 0, "roll", &[("count", "Tick", "worker-0")]).await;
    for i in 1..=5 {
        assert_eq!(tick(&ens, 0, &gid, i).await.0, i);
    }

    // Events keep flowing (one client, in order) while the update runs.
    let flow = {
        let (ens, gid) = (ens.clone(), gid.clone());
        tokio::spawn(async move {
            let mut outs = Vec::new();
            for i in 6..=400 {
                outs.push(tick(&ens, 0, &gid, i).await);
            }
            outs
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = put(
        &ens,
        0,
        &gid,
        &json!({"pipelines": [
        {"name": "count", "source": tagged_counter("Tick", 2)}]}),
    )
    .await;
    r.expect_ok();
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.body["previous_version"], 1);
    assert_eq!(r.body["state"], "keep");
    assert_eq!(r.body["changed"], json!(["count"]));
    let outs = flow.await.unwrap();
    // Every event counted exactly once, the count continuing across the switch.
    let ns: Vec<i64> = outs.iter().map(|o| o.0).collect();
    assert_eq!(ns, (6..=400).collect::<Vec<_>>());
    let switched = outs.iter().position(|o| o.1 == 2);
    let tail = &outs[switched.expect("the new version answered some events")..];
    assert!(
        tail.iter().all(|o| o.1 == 2),
        "no event went back to the old version"
    );
    let g = group_view(&ens, 0, &gid).await.unwrap();
    assert_eq!(g["version"], 2);
    assert_eq!(g["placements"][0]["epoch"], 2);
    // The old pipeline is stopped once drained: only the new one runs on the worker.
    let worker = &ens.workers[0].url;
    let wapi = ens.api.with_key(Some(&ens.opts.worker_key));
    let me = &wapi;
    let url = format!("{worker}/api/v1/pipelines");
    let url = &url;
    wait_until(
        "old version stopped",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move {
            let list = me.get(url).await.ok()?;
            (list.body["total"] == 1).then_some(())
        },
    )
    .await;

    // A broken update changes nothing.
    let r = put(
        &ens,
        0,
        &gid,
        &json!({"pipelines": [
        {"name": "count", "source": "stream Broken = Tick .where("}]}),
    )
    .await;
    r.expect_error(400);
    assert!(
        r.body["diagnostics"][0]["line"].as_u64().is_some(),
        "{}",
        r.text
    );
    let r = put(
        &ens,
        0,
        &gid,
        &json!({"pipelines": [
        {"name": "nope", "source": counter("Tick")}]}),
    )
    .await;
    r.expect_error(400);
    // A different state shape needs an explicit reset.
    let reshaped = counter("Tick").replace("stream Counted", "stream Renamed");
    let r = put(
        &ens,
        0,
        &gid,
        &json!({"pipelines": [{"name": "count", "source": reshaped}]}),
    )
    .await;
    r.expect_error(409);
    assert_eq!(r.body["code"], "state_incompatible");
    assert!(r.text.contains("Renamed"), "{}", r.text);
    assert_eq!(group_view(&ens, 0, &gid).await.unwrap()["version"], 2);
    assert_eq!(tick(&ens, 0, &gid, 401).await, (401, 2), "state untouched");

    // Rollback to version 1: a new version 3 with v1's spec, state kept.
    let rollback = ens.cluster_url(0, &format!("/pipeline-groups/{gid}/rollback"));
    let r = ens
        .api
        .with_timeout(Duration::from_secs(60))
        .post(&rollback, &json!({}))
        .await
        .unwrap();
    r.expect_ok();
    assert_eq!(r.body["version"], 3);
    assert_eq!(r.body["restores"], 1);
    let (n, v) = tick(&ens, 0, &gid, 7).await;
    assert_eq!((n, v), (402, 7), "old behaviour back, count continues");

    // The reshaped update with an explicit reset starts from zero.
    let r = put(
        &ens,
        0,
        &gid,
        &json!({"state": "reset",
        "pipelines": [{"name": "count", "source": reshaped}]}),
    )
    .await;
    r.expect_ok();
    assert_eq!(r.body["state"], "reset");
    assert_eq!(tick(&ens, 0, &gid, 9).await.0, 1);

    let r = ens
        .api
        .get(&ens.cluster_url(0, &format!("/pipeline-groups/{gid}/versions")))
        .await
        .unwrap();
    r.expect_ok();
    let versions: Vec<u64> = r.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    assert!(r.body["rollout"].is_null());
}

#[tokio::test]
async fn leader_killed_during_an_update_leaves_one_consistent_version() {
    let opts = Opts {
        heartbeat_timeout: 600.0,
        ..Opts::default()
    };
    let mut ens = Ensemble::start(3, 1, opts).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let gid = create_counters(&ens, leader, "roll-kill", &[("count", "Tick", "worker-0")]).await;
    for i in 1..=3 {
        assert_eq!(tick(&ens, leader, &gid, i).await.0, i);
    }
    // Freeze the worker so the update stops half way, on the deploy of the new version.
    ens.workers[0].proc.stop();
    let body = json!({"pipelines": [{"name": "count", "source": tagged_counter("Tick", 5)}]});
    let url = ens.cluster_url(leader, &format!("/pipeline-groups/{gid}"));
    let api = ens.api.with_timeout(Duration::from_secs(30));
    let pending = tokio::spawn(async move {
        api.send(
            reqwest::Method::PUT,
            &url,
            Some((serde_json::to_vec(&body).unwrap(), "application/json")),
        )
        .await
    });
    let follower = ens.others(leader)[0];
    let versions = ens.cluster_url(follower, &format!("/pipeline-groups/{gid}/versions"));
    let me = &ens;
    let versions_ref = &versions;
    wait_until(
        "rollout recorded",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async move {
            let r = me.api.get(versions_ref).await.ok()?;
            r.body["rollout"].is_object().then_some(())
        },
    )
    .await;
    ens.coords[leader].proc.kill();
    ens.workers[0].proc.cont();
    let _ = pending.await;
    let survivors = ens.others(leader);
    let new_leader = ens
        .wait_leader_among(&survivors, Duration::from_secs(20))
        .await;

    // The new leader finishes (or aborts) the rollout; every survivor agrees.
    let me = &ens;
    let gid_ref = &gid;
    let survivors_ref = &survivors;
    let version = wait_until(
        "rollout settled",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            let mut seen = Vec::new();
            for &i in survivors_ref {
                let url = me.cluster_url(i, &format!("/pipeline-groups/{gid_ref}/versions"));
                let r = me.api.get(&url).await.ok()?;
                if !r.body["rollout"].is_null() {
                    return None;
                }
                seen.push(r.body["version"].as_u64()?);
            }
            (seen.iter().all(|v| *v == seen[0])).then_some(seen[0])
        },
    )
    .await;
    assert!(version == 1 || version == 2, "version {version}");
    // The count continues, answered by the version the cluster agrees on.
    let (n, v) = tick(&ens, new_leader, &gid, 42).await;
    assert_eq!(n, 4, "no event lost or doubled");
    assert_eq!(v, if version == 2 { 5 } else { 42 });
}
