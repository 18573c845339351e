//! A Kafka pipeline moved to another worker by a migration (a drain of its worker, through the
//! cluster's API) resumes from the consumer group's committed offsets: the group is named after
//! the placement, the same on every worker, and the old copy commits what it finished when it
//! closes (docs/connectors.md, "Kafka"). Nothing is lost, and far fewer records are processed
//! twice than a copy starting over from the topic's start would repeat.

use crate::broker::start_broker;
use crate::procs::{wait_until, Ensemble, Opts};
use crate::{collect_until_all, feed_orders};
use serde_json::{json, Value};
use std::time::Duration;

/// The placement of the group's only pipeline, once it runs on `worker`.
async fn wait_running_on(ens: &Ensemble, gid: &str, worker: &str) {
    wait_until(
        &format!("pipeline running on {worker}"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move {
            let g = ens.group_view(0, gid).await?;
            let p = g["placements"].as_array()?.first()?.clone();
            (p["worker_id"] == worker && p["status"] == "Running").then_some(())
        },
    )
    .await;
}

/// How many pipelines worker `i` runs, asked from the worker itself.
async fn pipelines_on(ens: &Ensemble, i: usize) -> Option<usize> {
    let api = ens.api.with_key(Some(&ens.opts.worker_key));
    let r = api
        .get(&format!("{}/api/v1/pipelines", ens.workers[i].url))
        .await
        .ok()?;
    let body: &Value = &r.body;
    body.as_array()
        .or_else(|| body["pipelines"].as_array())
        .map(Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_moved_by_a_drain_resumes_from_the_committed_offsets() {
    let Some(broker) = start_broker() else { return };
    broker.create_topic("moves-in", 2).await;
    broker.create_topic("moves-out", 2).await;
    let ens = Ensemble::start(1, 2, Opts::default()).await;
    // No group_id: the default names the group after the placement, for every copy.
    let source = format!(
        "connector K = kafka(brokers: \"{}\")\n\
         stream O = Order.from(K, topic: \"moves-in\")\n\
         stream Moved = O .emit(id: id, amount: amount) .to(K, topic: \"moves-out\", key: id)\n",
        broker.addr
    );
    let spec = json!({"name": "kafka-moves", "pipelines": [
        {"name": "orders", "source": source, "worker_affinity": "worker-0"}]});
    let gid = ens.deploy_group(0, &spec).await;
    wait_running_on(&ens, &gid, "worker-0").await;

    const N: usize = 2000;
    let feeder = feed_orders(broker.producer(), "moves-in", "m", N);

    let reader = broker.reader("moves-out");
    let out = reader
        .read_until(Duration::from_secs(60), |r| r.len() >= N / 3)
        .await;
    let before_move = out.len();
    assert!(
        before_move >= N / 3,
        "worker-0 produced {before_move} outputs"
    );

    let r = ens
        .api
        .post(&ens.cluster_url(0, "/workers/worker-0/drain"), &json!({}))
        .await
        .unwrap();
    r.expect_status(200);
    assert_eq!(
        r.body["migrations"][0]["to_worker"], "worker-1",
        "{}",
        r.text
    );
    wait_running_on(&ens, &gid, "worker-1").await;
    feeder.await.unwrap();

    let all = collect_until_all(&reader, out, "id", N, Duration::from_secs(120)).await;
    let duplicates = all.duplicates;
    println!(
        "kafka migration test: {N} inputs, {} outputs, {} distinct, {duplicates} duplicates \
         (drained after {before_move} outputs)",
        all.records.len(),
        all.distinct
    );
    assert_eq!(all.distinct, N, "events lost across the migration");
    // A copy that started over (offsets not committed, or another group) would repeat every
    // output produced before the move.
    assert!(
        duplicates < before_move,
        "{duplicates} duplicates: the new copy did not resume from the committed offsets"
    );
    assert_eq!(pipelines_on(&ens, 0).await, Some(0), "old copy deleted");
    assert_eq!(pipelines_on(&ens, 1).await, Some(1));
}
