//! kill -9 of the worker running the downstream pipeline of a route while events flow: after
//! failover the migrated pipeline subscribes to the route on its new worker and keeps receiving
//! events (the publisher does not care where it runs).

use crate::harness::{wait_until, Ensemble};
use crate::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

fn readings(from: u64, n: u64) -> Vec<Value> {
    (from..from + n)
        .map(|i| json!({"event_type": "Reading", "fields": {"id": i, "temp": 100}}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_downstream_worker_route_follows_the_migrated_pipeline() {
    let broker = broker();
    let mut ens = Ensemble::start(1, 3, opts(&broker, &["up", "down", "spare"])).await;
    let group = json!({
        "name": "route-failover",
        "pipelines": [
            {"name": "up", "worker_affinity": "up",
             "source": "stream Hot = Reading .where(temp > 50) .emit(id: id, temp: temp)"},
            {"name": "down", "worker_affinity": "down",
             "source": "stream Seen = Hot .emit(id: id)"}
        ],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "up", "event_types": ["Reading"]},
            {"from_pipeline": "up", "to_pipeline": "down", "event_types": ["Hot"]}
        ]
    });
    let gid = deploy(&ens, &group).await;
    let (w, addr, id) = placement(&ens, &gid, "down").await;
    assert_eq!(w, "down");
    inject_batch(&ens, &gid, &readings(0, 200)).await;
    wait_events_in(&addr, &id, 200, Duration::from_secs(10)).await;

    // Keep events flowing through the kill and the failover.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(200));
    let pump = {
        let (api, stop, sent) = (ens.api.clone(), stop.clone(), sent.clone());
        let url = ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject-batch"));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let from = sent.load(Ordering::Relaxed);
                let r = api.post(&url, &Value::Array(readings(from, 50))).await;
                assert!(r.map(|r| r.ok()).unwrap_or(false), "inject during failover");
                sent.fetch_add(50, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let down = ens.worker_index("down");
    ens.workers[down].proc.kill();

    let (ens_ref, gid_ref) = (&ens, &gid);
    let (new_worker, new_addr, new_id) = wait_until(
        "down migrated to another worker and running",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (ens, gid) = (ens_ref, gid_ref);
            async move {
                let r = ens
                    .api
                    .get(&ens.cluster_url(0, &format!("/pipeline-groups/{gid}")))
                    .await
                    .ok()?;
                let p = r.body["placements"]
                    .as_array()?
                    .iter()
                    .find(|p| p["pipeline_name"] == "down")?
                    .clone();
                let on = p["worker_id"].as_str()?.to_owned();
                (on != "down" && p["status"] == "Running").then(|| {
                    (
                        on,
                        p["worker_address"].as_str().unwrap_or_default().to_owned(),
                        p["pipeline_id"].as_str().unwrap_or_default().to_owned(),
                    )
                })
            }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    pump.await.unwrap();
    let during = sent.load(Ordering::Relaxed) - 200;
    assert!(during > 0);

    // After the failover every new event reaches the migrated pipeline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = worker_pipeline(&new_addr, &new_id).await["events_in"]
        .as_u64()
        .unwrap_or(0);
    let from = sent.load(Ordering::Relaxed);
    inject_batch(&ens, &gid, &readings(from, 300)).await;
    let p = wait_events_in(&new_addr, &new_id, base + 300, Duration::from_secs(15)).await;
    eprintln!(
        "down moved to {new_worker}; {during} events injected during the failover; \
         migrated pipeline had {base} events before the last 300, {} after",
        p["events_in"]
    );
}
