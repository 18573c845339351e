//! A toxic program deployed through the coordinator (issue 18 item 4, coordinator side): the
//! worker marks it failed after repeated budget errors, stays healthy, and the leader records
//! the placement `Failed` without redeploying it or moving it to the other worker; the other
//! pipelines keep running.

use crate::harness::{wait_until, Api, Ensemble, Opts};
use serde_json::{json, Value};
use std::time::Duration;

/// Spins until the step budget stops it, on every event.
const SPIN: &str = "fn spin(v: int):\n    var i = 0\n    while true:\n        i := i + 1\n    emit Never(v: v)\nstream S = Tick .process(spin(value))\n";

const FILTER: &str = "stream Hot = Reading .where(temp > 50) .emit(temp: temp)";

fn placement<'a>(group: &'a Value, name: &str) -> &'a Value {
    group["placements"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["pipeline_name"] == name))
        .unwrap_or_else(|| panic!("no placement {name} in {group}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toxic_pipeline_ends_failed_in_place_and_the_rest_keeps_running() {
    let opts = Opts {
        worker_extra_args: vec![
            "--step-budget".into(),
            "200000".into(),
            "--fail-after-budget-errors".into(),
            "2".into(),
        ],
        ..Opts::default()
    };
    let ens = Ensemble::start(3, 2, opts).await;
    let leader = ens.wait_leader(Duration::from_secs(30)).await;
    let spec = json!({
        "name": "toxic-app",
        "pipelines": [
            {"name": "spin", "source": SPIN, "worker_affinity": "worker-0"},
            {"name": "hot", "source": FILTER, "worker_affinity": "worker-0"},
            // Keeps the loads balanced (no rebalance moves the toxic one before it fails).
            {"name": "cool", "source": "stream Cool = Reading .where(temp < 0) .emit(temp: temp)",
             "worker_affinity": "worker-1"},
        ],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "spin", "event_types": ["Tick"]},
            {"from_pipeline": "_external", "to_pipeline": "hot", "event_types": ["Reading"]}
        ]
    });
    let gid = ens.deploy_group(leader, &spec).await;
    let inject = ens.cluster_url(leader, &format!("/pipeline-groups/{gid}/inject"));
    let before = ens.group_view(leader, &gid).await.expect("group");
    assert_eq!(placement(&before, "spin")["worker_id"], "worker-0");
    let epoch = placement(&before, "spin")["epoch"].clone();

    // Budget errors until the worker marks the pipeline failed.
    for value in 0..4 {
        let r = ens
            .api
            .post(
                &inject,
                &json!({"event_type": "Tick", "fields": {"value": value}}),
            )
            .await
            .expect("inject answers");
        assert!(r.status >= 400, "a spinning event is refused: {}", r.text);
    }
    let group = wait_until(
        "the toxic placement recorded Failed",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let g = ens.group_view(leader, &gid).await?;
            (placement(&g, "spin")["status"] == "Failed").then_some(g)
        },
    )
    .await;
    let spin = placement(&group, "spin");
    assert!(
        spin["error"]
            .as_str()
            .is_some_and(|e| e.contains("pipeline failed on its worker")),
        "{spin}"
    );
    assert_eq!(spin["worker_id"], "worker-0");

    // Several heartbeats and reconciler passes later: still failed, still there, same epoch;
    // the worker stays healthy and the other pipeline keeps answering.
    let worker_api = Api::new(Some(&ens.opts.worker_key)).with_timeout(Duration::from_secs(5));
    for _ in 0..10 {
        let health = worker_api
            .get(&format!("{}/health", ens.workers[0].url))
            .await
            .expect("worker /health answers");
        assert_eq!(health.status, 200);
        let r = ens
            .api
            .post(
                &inject,
                &json!({"event_type": "Reading", "fields": {"temp": 70}}),
            )
            .await
            .expect("inject");
        assert_eq!(r.status, 200, "{}", r.text);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let group = ens.group_view(leader, &gid).await.expect("group");
    let spin = placement(&group, "spin");
    assert_eq!(spin["status"], "Failed", "{group}");
    assert_eq!(spin["worker_id"], "worker-0", "not moved: {group}");
    assert_eq!(spin["epoch"], epoch, "not moved: {group}");
    assert_eq!(placement(&group, "hot")["status"], "Running", "{group}");
    let workers = ens
        .api
        .get(&ens.cluster_url(leader, "/workers"))
        .await
        .expect("workers");
    let w0 = workers.body["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["id"] == "worker-0"));
    let w0 = w0.unwrap_or_else(|| panic!("worker-0 listed: {}", workers.text));
    assert_eq!(
        w0["status"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("ready"),
        "{w0}"
    );
    // Nothing was deployed on the other worker.
    let other = worker_api
        .get(&format!("{}/api/v1/pipelines", ens.workers[1].url))
        .await
        .expect("pipelines of worker-1");
    assert!(other.text.contains("cool"), "{}", other.text);
    assert!(
        !other.text.contains("spin"),
        "the toxic pipeline reached the other worker: {}",
        other.text
    );

    // A rolling update of the group with a fixed program starts it again, on the same worker.
    let fixed = "stream S = Tick .emit(v: value)";
    let update = ens
        .api
        .send(
            reqwest::Method::PUT,
            &ens.cluster_url(leader, &format!("/pipeline-groups/{gid}")),
            Some((
                serde_json::to_vec(&json!({
                    "pipelines": [{"name": "spin", "source": fixed}],
                    "state": "reset"
                }))
                .expect("json"),
                "application/json",
            )),
        )
        .await
        .expect("update answers");
    assert!(update.ok(), "{}: {}", update.status, update.text);
    let group = ens.group_view(leader, &gid).await.expect("group");
    let spin = placement(&group, "spin");
    assert_eq!(spin["status"], "Running", "{group}");
    assert_eq!(spin["worker_id"], "worker-0", "{group}");
    let r = ens
        .api
        .post(
            &inject,
            &json!({"event_type": "Tick", "fields": {"value": 7}}),
        )
        .await
        .expect("inject");
    assert_eq!(r.status, 200, "{}", r.text);
}
